/* upload: a multipart/form-data request body taken in as it arrives (multipart_stream), for the
 * routes that accept files too large to hold in memory (ROUTE_UPLOAD). Each file part goes to a
 * temporary file of its own (closed when the part ends), hashed (SHA-256) and with its first bytes
 * kept for sniffing; other parts are small text fields held in memory. The server feeds it from
 * the event loop, so it only writes (no reads, no fsync); the handler reads what it needs on a
 * worker, and the temporary files are removed when the request is done (upload_free). */
#ifndef HEARTH_UPLOAD_H
#define HEARTH_UPLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/error.h"

#define UPLOAD_HEAD 64          /* first bytes of a file kept in memory */
#define UPLOAD_FIELD_MAX 4096   /* a text field's largest size */

typedef struct upload_file {
    const char *name, *filename, *content_type; /* filename, content_type: NULL when not given */
    const char *path;   /* the temporary file; NULL when discarded */
    int64_t size;
    char sha256[65];    /* hex, when the part is complete */
    unsigned char head[UPLOAD_HEAD];
    size_t head_len;
} upload_file_t;

typedef struct upload upload_t;

/* `dir`: where temporary files go (NULL: file contents are counted and hashed but not kept). A
 * file part larger than max_file bytes stops the upload with 413, more than max_files file parts
 * with 400. 415/400 in `e` as multipart_parse. */
upload_t *upload_new(const char *dir, const char *content_type, int64_t max_file, int max_files, err_t *e);
bool upload_feed(upload_t *u, const char *p, size_t n, err_t *e);
/* The body has ended: false (400) unless the multipart body was whole. */
bool upload_finish(upload_t *u, err_t *e);
/* Removes the temporary files and frees everything. */
void upload_free(upload_t *u);

/* The (first) file part named `name`; NULL when there is none. */
const upload_file_t *upload_file(const upload_t *u, const char *name);
/* A text field's value (NUL-terminated, `len` without it); NULL when absent. */
const char *upload_field(const upload_t *u, const char *name, size_t *len);

#endif
