/* hnsw: an in-process approximate nearest-neighbour index (Hierarchical Navigable Small World
 * graphs, Malkov & Yashunin) over L2-normalised float vectors of one dimension, by cosine
 * similarity. Written here: Debian has no ANN library with a C API (DESIGN.md).
 *
 * Ids are the caller's (image ids). Adding an id that is there replaces its vector; removing one
 * marks it deleted (it still routes searches, it is never returned) until the index is rebuilt
 * (a replaced vector stays behind the same way). Vectors are normalised on the way in, so the
 * similarity is the cosine whatever the caller's scale.
 * Searches run concurrently; adds and removes take the index exclusively (a rwlock inside).
 * The caller owns the index (hnsw_free). */
#ifndef HEARTH_HNSW_H
#define HEARTH_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/error.h"

typedef struct hnsw hnsw_t;

/* M: links per node (16; 2..128), ef_construction: the candidate list while building (200).
 * The same seed and the same adds give the same graph. NULL on a bad parameter or no memory. */
hnsw_t *hnsw_new(int dim, int m, int ef_construction, uint64_t seed);
void hnsw_free(hnsw_t *h);
int hnsw_dim(const hnsw_t *h);
size_t hnsw_count(const hnsw_t *h); /* live (not deleted) vectors */

/* false (and no change) for a zero or non-finite vector, or when out of memory. */
bool hnsw_add(hnsw_t *h, int64_t id, const float *vec);
bool hnsw_remove(hnsw_t *h, int64_t id); /* false when the id is not there */

/* Up to k nearest live vectors to q, best first, into ids and sims (cosine similarity; sims may be
 * NULL); returns how many (0 for a zero query, -1 when out of memory). ef: the candidate list
 * (raised to k). With `accept`, only ids it accepts count, and the search widens until it has k of
 * them or has seen every vector: selective filters stay correct. The rule (hnsw.c): when the
 * graph search cannot fill its list of ef live accepted vectors within a bounded effort, the
 * answer is an exact scan over the live accepted vectors. `accept` runs under the index's read
 * lock, possibly from several threads at once: it must not call into this index. */
int hnsw_search(hnsw_t *h, const float *q, int k, int ef, bool (*accept)(void *arg, int64_t id), void *arg,
                int64_t *ids, float *sims);

/* Persistence: save writes a temp file beside `path`, fsyncs it and renames it over `path`
 * (searches go on meanwhile; adds wait). load checks everything it reads: NULL with `e` set
 * (ERR_NOT_FOUND when there is no file, ERR_INTERNAL for a damaged or foreign one). */
bool hnsw_save(hnsw_t *h, const char *path, err_t *e);
hnsw_t *hnsw_load(const char *path, err_t *e);

#endif
