/* images: listing photos. An upload stores its original in the object store under a key named by
 * its content (originals/SHA256.EXT: the same bytes uploaded twice are stored once, counted in
 * object_refs), and queues an `image.process` job in the same transaction as the image row and
 * its outbox event. The job decodes it (imageproc.h), writes the variants (images/ID/thumb.jpg,
 * medium.jpg, and original.EXT without metadata), records the features, and looks up the image's
 * near-duplicates through the in-process index (imageindex.h). Deleting an image releases its
 * original and queues an `image.delete_objects` job for the objects nothing refers to any more.
 *
 * The object store and the index are process-wide, opened by images_setup (serve and worker). */
#ifndef HEARTH_IMAGES_H
#define HEARTH_IMAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/config.h"
#include "../base/jw.h"
#include "../infra/objects.h"
#include "../infra/store.h"
#include "imageproc.h"
#include "queue.h"

#define IMAGE_MAX_BYTES (20LL << 20) /* an upload's largest size: 20 MB */
#define IMAGE_HEADER_BYTES (1 << 20) /* read for the header check: the dimensions are in it */

typedef struct image {
    int64_t id, property_id;
    const char *status, *error, *filename, *content_type, *sha256;
    const char *original_key, *public_key, *medium_key, *thumb_key; /* the last three NULL until ready */
    int64_t size_bytes;
    int width, height; /* 0 until ready */
    bool processed;
    uint64_t phash;
    const char *colors, *labels; /* JSON arrays, or NULL */
    double brightness, sharpness;
    bool too_dark, blurry;
    int64_t job_id, created_by, created_at, updated_at, processed_at;
} image_t;

/* Opens the object store the configuration names, starts libvips, loads the index from
 * DATA_DIR/index (rebuilding it from the database when missing) and registers the job handlers.
 * Once per process, before the workers start. */
bool images_setup(const config_t *cfg, store_t *s, void (*listings_changed)(void), err_t *e);
void images_shutdown(void);
objects_t *images_objects(void);

/* A new image of `property_id` from the uploaded file at `path` (already checked: type, size,
 * pixels). Stores the original (unless stored already), then, in one transaction on `c`: its
 * reference, the image row, its job and its event. */
typedef struct image_upload {
    int64_t property_id, created_by;
    img_type_t type;
    const char *path, *filename, *sha256; /* the file, its name as sent (or NULL), its SHA-256 hex */
    int64_t size;
    const store_audit_t *audit; /* written with the image row, or NULL */
} image_upload_t;
bool image_create(store_conn_t *c, const image_upload_t *in, arena_t *a, image_t *out, job_t *job, err_t *e);

bool image_get(store_conn_t *c, int64_t id, arena_t *a, image_t *out, err_t *e);
/* A listing's images, newest first, after `before_id` (0: from the newest). */
bool image_list(store_conn_t *c, int64_t property_id, int64_t before_id, int limit, arena_t *a, image_t **items, int *n,
                bool *more, err_t *e);
/* Removes the image and releases its objects (a job deletes those nothing refers to); `audit`
 * (or NULL) is written in the same transaction. */
bool image_delete(store_conn_t *c, const image_t *img, const store_audit_t *audit, err_t *e);

/* A listing's images' objects, read before the listing is deleted (its images go with it, their
 * counts with them), and a job for them after. An image added in between, or a crash before the
 * job is queued, leaves objects nothing refers to, which `hearth objects gc` removes. */
typedef struct image_objects {
    int64_t *ids;
    const char **keys; /* 4 an image: original, public, medium, thumb (NULL where none) */
    int n;
} image_objects_t;
bool image_listing_objects(store_conn_t *c, int64_t property_id, arena_t *a, image_objects_t *out, err_t *e);
bool image_release_objects(store_conn_t *c, const image_objects_t *o, err_t *e);

/* The image as the API shows it; `urls`: its content URLs under /api/images/ID/content.
 * image_write_fields leaves the object open, for the caller to add to and close. */
void image_write_json(jw_t *w, const image_t *img);
void image_write_fields(jw_t *w, const image_t *img);
/* Writes "duplicates": [{"image_id", "property_id", "distance", "similarity"}] of `id`. */
bool image_write_duplicates(store_conn_t *c, int64_t id, arena_t *a, jw_t *w, err_t *e);

/* Similar photos: the k ready photos of active listings most similar to `q` (cosine), best first,
 * not `exclude`, within the filter. On PostgreSQL with pgvector, its HNSW index answers (iterative
 * scans keep filtered queries whole); otherwise the in-process index (imageindex.h). */
typedef struct image_filter {
    const char *city;            /* NULL: any */
    bool has_min, has_max;
    int64_t min_cents, max_cents;
} image_filter_t;
typedef struct image_hit {
    int64_t id, property_id;
    float similarity;
} image_hit_t;
bool image_similar(store_conn_t *c, const float *q, int k, int64_t exclude, const image_filter_t *f, arena_t *a,
                    image_hit_t *out, int *n, err_t *e);
/* Whether similar photos are searched in PostgreSQL (pgvector). */
bool images_pgvector(void);

/* Rows (images with property ids) matching `ids`, in that order, skipping ids no longer there. */
bool image_get_many(store_conn_t *c, const int64_t *ids, int n, arena_t *a, image_t *out, int *found, err_t *e);

#endif
