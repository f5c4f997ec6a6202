/* imageindex: the in-process indexes over processed images: an HNSW graph of their embeddings
 * (similar photos) and a BK-tree of their perceptual hashes (near-duplicates), with each image's
 * listing for filters. Every process that needs them (serve for searches, workers for duplicates)
 * keeps its own, filled from the database: imageindex_sync reads the images processed since its
 * last look. The graph is saved under DATA_DIR/index (at shutdown and after every thousand images)
 * and loaded at start; without the file it is rebuilt from the database. Images deleted elsewhere
 * may linger in another process's index until its restart: callers read their results back from
 * the database, which drops them. Thread-safe. */
#ifndef HEARTH_IMAGEINDEX_H
#define HEARTH_IMAGEINDEX_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/error.h"
#include "../infra/store.h"
#include "imageproc.h"

bool imageindex_open(const char *data_dir, err_t *e);
void imageindex_close(void); /* saves the graph */

/* Brings the index up to date with the database (at most every 200 ms unless `force`). */
bool imageindex_sync(store_conn_t *c, bool force, err_t *e);
void imageindex_add(int64_t id, int64_t property_id, uint64_t phash, const float *embedding);
void imageindex_remove(int64_t id);
size_t imageindex_count(void);

typedef struct imageindex_hit {
    int64_t id, property_id;
    int distance;     /* bits between the hashes (duplicates) */
    float similarity; /* cosine of the embeddings */
} imageindex_hit_t;

/* The near-duplicates of an image (hash and embedding), not itself: candidates within
 * IMAGEPROC_DUP_RADIUS bits from the BK-tree, kept when imageproc_near_duplicate says so. */
int imageindex_duplicates(int64_t self, uint64_t phash, const float *embedding, imageindex_hit_t *out, int max);

/* The k images most similar to `q`, best first, not `exclude` (0: none); with `props` (n >= 0),
 * only images of those listings: below a share of the index it scans them exactly, above it asks
 * the graph with the filter. */
int imageindex_similar(const float *q, int k, int64_t exclude, const int64_t *props, int nprops, imageindex_hit_t *out);

/* Embeddings as stored (images.embedding): IMAGEPROC_DIM float32s as lowercase hex, little-endian.
 * `out` needs IMAGEPROC_EMBEDDING_HEX bytes. decode: false on anything else. */
#define IMAGEPROC_EMBEDDING_HEX (IMAGEPROC_DIM * 8 + 1)
void imageindex_embedding_encode(const float *v, char *out);
bool imageindex_embedding_decode(const char *s, float *v);

#endif
