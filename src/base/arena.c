/* arena: bump allocation in chained blocks; see arena.h. The first block is kept across resets so
 * a keep-alive connection serving small requests allocates nothing after its first request. */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK 8192

struct arena_block {
    arena_block_t *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

void arena_init(arena_t *a) { a->head = NULL, a->total = 0; }

static arena_block_t *block_new(size_t cap, arena_block_t *next)
{
    arena_block_t *b = malloc(sizeof(*b) + cap);
    if (!b)
        abort();
    b->next = next;
    b->used = 0;
    b->cap = cap;
    return b;
}

void *arena_alloc(arena_t *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        if (a->head && n > ARENA_BLOCK) {
            /* a large allocation gets its own block behind the current one, so the
             * current block's free space is not wasted */
            arena_block_t *big = block_new(cap, a->head->next);
            a->head->next = big;
            big->used = n;
            a->total += n;
            return big->mem;
        }
        a->head = block_new(cap, a->head);
    }
    void *p = a->head->mem + a->head->used;
    a->head->used += n;
    a->total += n;
    return p;
}

void *arena_zalloc(arena_t *a, size_t n)
{
    void *p = arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(arena_t *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(arena_t *a, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = arena_alloc(a, n < 0 ? 1 : (size_t)n + 1);
    if (n < 0)
        p[0] = '\0';
    else
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void arena_reset(arena_t *a)
{
    if (!a->head)
        return;
    arena_block_t *keep = a->head;
    /* keep the oldest standard-size block: walk to the tail */
    arena_block_t *b = a->head, *prev = NULL;
    while (b->next)
        prev = b, b = b->next;
    keep = b;
    if (prev)
        prev->next = NULL;
    for (arena_block_t *p = a->head; p && p != keep;) {
        arena_block_t *n = p->next;
        free(p);
        p = n;
    }
    keep->next = NULL;
    keep->used = 0;
    a->head = keep;
    a->total = 0;
}

void arena_free(arena_t *a)
{
    for (arena_block_t *b = a->head; b;) {
        arena_block_t *n = b->next;
        free(b);
        b = n;
    }
    arena_init(a);
}
