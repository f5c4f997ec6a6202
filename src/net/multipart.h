/* multipart: multipart/form-data request bodies (file uploads) split into named parts that point
 * into the body. */
#ifndef HEARTH_MULTIPART_H
#define HEARTH_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/arena.h"
#include "../base/error.h"

#define MULTIPART_MAX_PARTS 16

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

#endif
