/* multipart: multipart/form-data request bodies (file uploads): split into named parts that point
 * into a body held in memory (multipart_parse), or parsed as they arrive, in pieces of any size,
 * handing each part's bytes on as they come (multipart_stream_*: uploads too large to hold). Both
 * accept exactly the same bodies (tests/fuzz/fuzz_multipart.c checks it). */
#ifndef HEARTH_MULTIPART_H
#define HEARTH_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/arena.h"
#include "../base/error.h"

#define MULTIPART_MAX_PARTS 40 /* the model service's batch takes up to 32 images */

typedef struct multipart_part {
    const char *name, *filename, *content_type; /* filename and content_type may be NULL */
    const char *data;                           /* into the body; not NUL-terminated */
    size_t len;
} multipart_part_t;

typedef struct multipart {
    multipart_part_t parts[MULTIPART_MAX_PARTS];
    int n;
} multipart_t;

/* 415 when `content_type` is not multipart/form-data, 400 when the body is malformed. */
bool multipart_parse(const char *content_type, const char *body, size_t len, arena_t *a, multipart_t *out, err_t *e);
const multipart_part_t *multipart_get(const multipart_t *m, const char *name);

/* What a stream hands on: a part begins (name, and filename and content_type or NULL, valid
 * during the call), its bytes in pieces, its end. A callback that returns false stops the parse
 * with its error in `e`. */
typedef struct multipart_sink {
    bool (*part)(void *arg, const char *name, const char *filename, const char *content_type, err_t *e);
    bool (*data)(void *arg, const char *p, size_t n, err_t *e);
    bool (*end)(void *arg, err_t *e);
} multipart_sink_t;

#define MULTIPART_HEADERS_MAX 16384 /* a part's header block, bytes (streams only) */

typedef struct multipart_stream multipart_stream_t;

/* NULL with 415/400 in `e` as multipart_parse. */
multipart_stream_t *multipart_stream_new(const char *content_type, const multipart_sink_t *sink, void *arg, err_t *e);
bool multipart_stream_feed(multipart_stream_t *s, const char *p, size_t n, err_t *e);
/* The body has ended: false (400) unless its closing delimiter was seen. */
bool multipart_stream_finish(multipart_stream_t *s, err_t *e);
void multipart_stream_free(multipart_stream_t *s);

#endif
