/* csv: an RFC 4180 reader over a memory buffer; see csv.h for why it is hand-written.
 *
 * The one idea: a record is parsed in a single forward pass into one buffer of NUL-terminated
 * fields (offsets first, pointers fixed up at the end because the buffer may move), so a record
 * costs no allocation once the buffer has grown to the widest row. */
#include "csv.h"

#include <string.h>

void csv_init(csv_t *c, const char *data, size_t len)
{
    memset(c, 0, sizeof *c);
    c->data = data;
    c->len = len;
    c->cur_line = 1;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0)
        c->pos = 3;
    buf_init(&c->store);
}

void csv_free(csv_t *c) { buf_free(&c->store); }

/* Consume a line ending at pos (CRLF, LF or a lone CR); true if there was one. */
static bool csv_eol(csv_t *c)
{
    if (c->pos >= c->len)
        return false;
    char ch = c->data[c->pos];
    if (ch == '\n') {
        c->pos++;
        c->cur_line++;
        return true;
    }
    if (ch == '\r') {
        c->pos++;
        if (c->pos < c->len && c->data[c->pos] == '\n')
            c->pos++;
        c->cur_line++;
        return true;
    }
    return false;
}

/* After a bad record: skip to the start of the next record, honouring quotes so that a quoted
 * newline is not taken for the record's end (`inq`: we stand inside a quoted field). False if the
 * input ended inside a quote. */
static bool csv_skip_record(csv_t *c, bool inq)
{
    while (c->pos < c->len) {
        char ch = c->data[c->pos];
        if (ch == '"') {
            inq = !inq; /* "" toggles twice: still right */
            c->pos++;
        } else if (!inq && (ch == '\n' || ch == '\r')) {
            csv_eol(c);
            return true;
        } else {
            if (ch == '\n' || (ch == '\r' && !(c->pos + 1 < c->len && c->data[c->pos + 1] == '\n')))
                c->cur_line++;
            c->pos++;
        }
    }
    return !inq;
}

static csv_status_t csv_bad(csv_t *c, err_t *e, const char *why, bool inq)
{
    err_set(e, ERR_VALIDATION, "line %d: %s", c->line, why);
    if (!csv_skip_record(c, inq)) {
        err_set(e, ERR_BAD_REQUEST, "line %d: %s, then an unterminated quoted field", c->line, why);
        return CSV_FATAL;
    }
    return CSV_BAD;
}

csv_status_t csv_next(csv_t *c, err_t *e)
{
    /* skip blank lines */
    while (c->pos < c->len && csv_eol(c))
        ;
    c->nfields = 0;
    if (c->pos >= c->len)
        return CSV_END;
    c->line = c->cur_line;
    buf_reset(&c->store);

    for (;;) { /* one field per iteration */
        if (c->nfields >= CSV_MAX_FIELDS)
            return csv_bad(c, e, "too many fields", false);
        int f = c->nfields++;
        c->offs[f] = c->store.len;
        c->quoted[f] = false;
        size_t start = c->store.len;

        if (c->pos < c->len && c->data[c->pos] == '"') {
            c->quoted[f] = true;
            int qline = c->cur_line;
            c->pos++;
            for (;;) {
                if (c->pos >= c->len) {
                    err_set(e, ERR_BAD_REQUEST, "line %d: unterminated quoted field", qline);
                    return CSV_FATAL;
                }
                /* copy the run up to the next quote in one go */
                const char *q = memchr(c->data + c->pos, '"', c->len - c->pos);
                size_t run = q ? (size_t)(q - (c->data + c->pos)) : c->len - c->pos;
                if (c->store.len - start + run > CSV_MAX_FIELD_LEN)
                    return csv_bad(c, e, "field too long", true);
                for (size_t i = 0; i < run; i++) {
                    char ch = c->data[c->pos + i];
                    if (ch == '\n' || (ch == '\r' && !(c->pos + i + 1 < c->len && c->data[c->pos + i + 1] == '\n')))
                        c->cur_line++;
                }
                buf_append(&c->store, c->data + c->pos, run);
                c->pos += run;
                if (!q)
                    continue; /* reports the unterminated field above */
                c->pos++;     /* the quote */
                if (c->pos < c->len && c->data[c->pos] == '"') {
                    buf_putc(&c->store, '"');
                    c->pos++;
                    continue;
                }
                break; /* closing quote */
            }
            if (c->pos < c->len && c->data[c->pos] != ',' && c->data[c->pos] != '\n' && c->data[c->pos] != '\r')
                return csv_bad(c, e, "unexpected text after a closing quote", false);
        } else {
            size_t end = c->pos;
            while (end < c->len && c->data[end] != ',' && c->data[end] != '\n' && c->data[end] != '\r')
                end++;
            if (end - c->pos > CSV_MAX_FIELD_LEN)
                return csv_bad(c, e, "field too long", false);
            buf_append(&c->store, c->data + c->pos, end - c->pos);
            c->pos = end;
        }
        c->lens[f] = c->store.len - start;
        buf_putc(&c->store, '\0');

        if (c->pos < c->len && c->data[c->pos] == ',') {
            c->pos++;
            continue;
        }
        csv_eol(c); /* or the end of the input */
        break;
    }
    for (int i = 0; i < c->nfields; i++)
        c->fields[i] = c->store.data + c->offs[i];
    return CSV_RECORD;
}

int csv_find(const csv_t *c, const char *name)
{
    for (int i = 0; i < c->nfields; i++)
        if (strcmp(c->fields[i], name) == 0)
            return i;
    return -1;
}
