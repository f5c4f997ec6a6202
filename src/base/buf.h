/* buf: a growable byte buffer, the one way bytes are assembled in hearth.
 *
 * A buf owns its memory (malloc). Appends never fail silently: on allocation failure the process
 * aborts, as SQLite and Redis do for out-of-memory; the bounds that matter to clients (body size,
 * header size) are checked by the callers before they append. */
#ifndef HEARTH_BUF_H
#define HEARTH_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

void buf_init(buf_t *b);
void buf_free(buf_t *b);
void buf_reset(buf_t *b);                 /* len = 0, memory kept */
void buf_reserve(buf_t *b, size_t extra); /* room for `extra` more bytes plus a NUL */
void buf_append(buf_t *b, const void *p, size_t n);
void buf_puts(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void buf_consume(buf_t *b, size_t n); /* drop the first n bytes */
char *buf_cstr(buf_t *b);             /* NUL-terminated view of the contents */

/* One byte: inline, for the JSON writer's inner loops. */
static inline void buf_putc(buf_t *b, char c)
{
    if (b->len + 2 > b->cap)
        buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

#endif
