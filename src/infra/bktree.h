/* bktree: a BK-tree of 64-bit hashes under the Hamming distance, for finding every hash within a
 * radius of a query without comparing it to all of them (near-duplicate photos by perceptual
 * hash). Several ids may share a hash. Not thread-safe: the owner locks. Out of memory aborts
 * (as buf.h). */
#ifndef HEARTH_BKTREE_H
#define HEARTH_BKTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bktree bktree_t;

bktree_t *bktree_new(void);
void bktree_free(bktree_t *t);
size_t bktree_count(const bktree_t *t);
void bktree_add(bktree_t *t, uint64_t hash, int64_t id); /* a pair that is there is not added twice */
bool bktree_remove(bktree_t *t, uint64_t hash, int64_t id); /* false when (hash, id) is not there */
/* Calls fn (if not NULL) for every (id, hash) at distance <= radius from `hash`, in no particular
 * order; returns how many. fn must not change the tree. */
int bktree_query(const bktree_t *t, uint64_t hash, int radius, void (*fn)(void *arg, int64_t id, uint64_t hash, int dist),
                 void *arg);

#endif
