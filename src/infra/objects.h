/* objects: the object store (DESIGN.md), a flat key space of immutable blobs.
 *
 * Two backends behind one interface, chosen by the configuration: the filesystem under
 * $HEARTH_DATA_DIR/objects (the embedded default) and S3 when S3_ENDPOINT is set (S3_BUCKET,
 * S3_REGION, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY; any S3-compatible server: AWS, MinIO).
 *
 * Keys are relative paths of [A-Za-z0-9._-] segments separated by '/', at most 512 bytes, never
 * empty segments, "." or ".."; objects_key_valid says so, and every call refuses other keys
 * (ERR_VALIDATION), so a key can never name anything outside the store.
 *
 * Filesystem writes are atomic (temp file in the same directory, fsync, rename, fsync of the
 * directory): a reader sees the whole object or none. S3 calls have timeouts and are retried with
 * backoff on 5xx and network errors; objects above OBJECTS_MULTIPART_MIN go up as a multipart
 * upload. Functions are safe to call from any thread. */
#ifndef HEARTH_OBJECTS_H
#define HEARTH_OBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "../base/config.h"
#include "../base/error.h"

#define OBJECTS_MULTIPART_MIN (8u << 20) /* S3: larger objects go up in parts of this size */

typedef struct objects objects_t;

/* The backend the configuration names; NULL with `e` set when it cannot be used (S3 settings
 * incomplete, the directory not writable). */
objects_t *objects_open(const config_t *cfg, err_t *e);
void objects_close(objects_t *o);
const char *objects_backend(const objects_t *o); /* "fs" or "s3" */

bool objects_key_valid(const char *key);

/* Stores `len` bytes under `key`, replacing what was there. content_type (NULL: none) is kept by
 * S3 and served with the object; the filesystem does not keep it. The filesystem cannot hold both
 * "a" and "a/b" (ERR_CONFLICT); S3 can. */
bool objects_put(objects_t *o, const char *key, const void *data, size_t len, const char *content_type, err_t *e);
/* The same from a file (streamed, never read whole into memory). */
bool objects_put_file(objects_t *o, const char *key, const char *path, const char *content_type, err_t *e);
/* Reads the whole object into `out` (appended); ERR_NOT_FOUND when there is none. */
bool objects_get(objects_t *o, const char *key, buf_t *out, err_t *e);
/* Whether the object exists, and its size (false and 0 when not; true is returned either way). */
bool objects_head(objects_t *o, const char *key, bool *exists, int64_t *size, err_t *e);
/* Removes the object; removing one that is not there succeeds. */
bool objects_delete(objects_t *o, const char *key, err_t *e);
/* Calls fn for every object whose key starts with `prefix` ("" for all), in no promised order;
 * names in the store that are not valid keys are not objects and are skipped. */
bool objects_list(objects_t *o, const char *prefix, void (*fn)(void *arg, const char *key, int64_t size), void *arg,
                  err_t *e);

/* S3: a presigned GET URL valid for ttl_s seconds (1 s to 7 days; SigV4 query signing;
 * S3_PUBLIC_URL, when set, replaces the endpoint's scheme://host[:port] in it and is the host signed
 * for), allocated in `a`. Makes no request: the object need not exist. Filesystem (or an invalid
 * key): NULL (hearth streams the file). */
const char *objects_presign_get(objects_t *o, const char *key, int ttl_s, arena_t *a);
/* Filesystem: the object's path, for streaming it (allocated in `a`). S3: NULL. */
const char *objects_local_path(objects_t *o, const char *key, arena_t *a);

/* ---- Backends. The functions above check the key (and the prefix: key characters and '/', at
 * most OBJECTS_KEY_MAX bytes) and then call these; a backend never sees a key that is not valid. */
#define OBJECTS_KEY_MAX 512
#define OBJECTS_TYPE_MAX 255 /* a content type: printable ASCII, at most this long */

typedef void (*objects_list_fn)(void *arg, const char *key, int64_t size);

typedef struct objects_ops {
    const char *name;
    bool (*put)(objects_t *o, const char *key, const void *data, size_t len, const char *content_type, err_t *e);
    bool (*put_file)(objects_t *o, const char *key, const char *path, const char *content_type, err_t *e);
    bool (*get)(objects_t *o, const char *key, buf_t *out, err_t *e);
    bool (*head)(objects_t *o, const char *key, bool *exists, int64_t *size, err_t *e);
    bool (*del)(objects_t *o, const char *key, err_t *e);
    bool (*list)(objects_t *o, const char *prefix, objects_list_fn fn, void *arg, err_t *e);
    const char *(*presign_get)(objects_t *o, const char *key, int ttl_s, arena_t *a); /* NULL: none */
    const char *(*local_path)(objects_t *o, const char *key, arena_t *a);            /* NULL: none */
    void (*close)(objects_t *o);
} objects_ops_t;

struct objects {
    const objects_ops_t *ops;
};

/* The filesystem backend rooted at `root` (created, mode 0700, when missing). */
objects_t *objects_fs_open(const char *root, err_t *e);
/* The S3 backend for cfg->s3_*; makes no request (an unreachable server shows at the first call). */
objects_t *objects_s3_open(const config_t *cfg, err_t *e);

#endif
