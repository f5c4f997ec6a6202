/* csv: a small RFC 4180 reader that streams records out of a memory buffer.
 *
 * Hand-written rather than Debian's libcsv: libcsv is a push/callback API (a callback per field and
 * per record, state carried through a void*), which for the ~100 lines needed here costs more glue
 * than it saves, and it does not report the line a record starts on, which import errors need.
 *
 * One record at a time: csv_next() fills `fields` (NUL-terminated, unescaped, valid until the next
 * call) and `line`, the 1-based line the record starts on (quoted newlines count). Field count and
 * field length are bounded; a record over a bound is skipped and reported, not a crash. */
#ifndef HEARTH_CSV_H
#define HEARTH_CSV_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/buf.h"
#include "../base/error.h"

#define CSV_MAX_FIELDS 256
#define CSV_MAX_FIELD_LEN 65536

typedef enum csv_status {
    CSV_RECORD = 1,   /* a record is in fields[] */
    CSV_END = 0,      /* no more input */
    CSV_BAD = -1,     /* this record broke a rule (too many fields, field too long, text after a
                       * closing quote); it was skipped, `e` says why; reading may continue */
    CSV_FATAL = -2,   /* the input cannot be read further (unterminated quote) */
} csv_status_t;

typedef struct csv {
    const char *data;
    size_t len, pos;
    int cur_line; /* line at `pos` */
    /* the current record */
    int line;
    int nfields;
    const char *fields[CSV_MAX_FIELDS];
    size_t lens[CSV_MAX_FIELDS];
    bool quoted[CSV_MAX_FIELDS]; /* the field was written in quotes (tells "12" from 12) */
    /* storage for the unescaped fields; owned by the reader, freed by csv_free */
    buf_t store;
    size_t offs[CSV_MAX_FIELDS];
} csv_t;

void csv_init(csv_t *c, const char *data, size_t len); /* skips a UTF-8 BOM */
void csv_free(csv_t *c);
/* Reads the next record. Blank lines are skipped. */
csv_status_t csv_next(csv_t *c, err_t *e);
/* Index of the field equal to `name` in the current record (the header), or -1. */
int csv_find(const csv_t *c, const char *name);

#endif
