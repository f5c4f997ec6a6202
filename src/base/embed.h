/* embed: files compiled into the binary (migrations, docs/openapi.json, the demo data set), looked
 * up by their path in the repository. The table is written by cmake/embed.cmake. */
#ifndef HEARTH_EMBED_H
#define HEARTH_EMBED_H

#include <stddef.h>

typedef struct embed_file {
    const char *name; /* "migrations/sqlite/0001_properties.sql" */
    const char *start, *end; /* the bytes; *end is a NUL */
} embed_file_t;

extern const embed_file_t embed_table[]; /* ends with a zeroed entry */

/* NULL when there is no such file. */
const embed_file_t *embed_find(const char *name);

#endif
