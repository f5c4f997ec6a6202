/* jw: a streaming JSON writer into a buf.
 *
 * Responses are written with this rather than built as jansson trees: it is faster on the search
 * path, and it writes money exactly (integer cents as "199999.99"), which jansson's double output
 * cannot. The writer tracks only whether a comma is due; callers nest objects and arrays by hand. */
#ifndef HEARTH_JW_H
#define HEARTH_JW_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

typedef struct jw {
    buf_t *out;
    int depth;
    uint64_t need_comma; /* bit d set: the next value at depth d needs a leading comma */
} jw_t;

void jw_init(jw_t *w, buf_t *out);
void jw_obj_begin(jw_t *w);
void jw_obj_end(jw_t *w);
void jw_arr_begin(jw_t *w);
void jw_arr_end(jw_t *w);
void jw_key(jw_t *w, const char *key);
void jw_str(jw_t *w, const char *s);
void jw_strn(jw_t *w, const char *s, size_t n);
void jw_int(jw_t *w, int64_t v);
void jw_double(jw_t *w, double v); /* shortest form that round-trips */
void jw_money(jw_t *w, int64_t cents);
void jw_bool(jw_t *w, bool v);
void jw_null(jw_t *w);
void jw_raw(jw_t *w, const char *json, size_t n); /* an already-encoded JSON value */
void jw_time(jw_t *w, int64_t unix_us);           /* RFC 3339 UTC string */

/* key/value shorthands */
void jw_kstr(jw_t *w, const char *key, const char *s); /* NULL writes null */
void jw_kint(jw_t *w, const char *key, int64_t v);

/* Escape `s` as a JSON string (with quotes) onto `out`. */
void json_escape(buf_t *out, const char *s, size_t n);

#endif
