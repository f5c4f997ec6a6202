/* arena: a region allocator. A request owns one; everything the request allocates lives until
 * arena_reset()/arena_free(), so handlers never free piecemeal and cannot leak. */
#ifndef HEARTH_ARENA_H
#define HEARTH_ARENA_H

#include <stddef.h>

typedef struct arena_block arena_block_t;

typedef struct arena {
    arena_block_t *head; /* current block; older blocks are chained behind it */
    size_t total;        /* bytes handed out since the last reset */
} arena_t;

void arena_init(arena_t *a);
void *arena_alloc(arena_t *a, size_t n); /* 16-byte aligned, never NULL (aborts on OOM) */
void *arena_zalloc(arena_t *a, size_t n);
char *arena_strndup(arena_t *a, const char *s, size_t n);
char *arena_strdup(arena_t *a, const char *s);
char *arena_printf(arena_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_reset(arena_t *a); /* frees all but the first block, which is kept for reuse */
void arena_free(arena_t *a);

#endif
