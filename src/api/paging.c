/* paging: the list routes' shared query parts: `limit` (1..100, default 20) and the opaque keyset
 * cursor "v1|<kind>|<id>" in base64url (users, audit, jobs; listings have their own, property.c). */
#include <stdio.h>
#include <string.h>

#include "../base/util.h"
#include "app.h"

/* Opaque cursors: "v1|<kind>|<id>" in base64url. */
void api_write_cursor(jw_t *w, const char *kind, bool more, int64_t id)
{
    jw_key(w, "next_cursor");
    if (!more) {
        jw_null(w);
        return;
    }
    char raw[64], enc[96];
    int n = snprintf(raw, sizeof raw, "v1|%s|%lld", kind, (long long)id);
    b64url_encode(raw, (size_t)n, enc);
    jw_str(w, enc);
}

bool api_read_cursor(const char *s, const char *kind, int64_t *id, err_t *e)
{
    char raw[96];
    size_t n = strlen(s);
    long len = n < 100 ? b64url_decode(s, n, raw) : -1;
    char prefix[32];
    int pl = snprintf(prefix, sizeof prefix, "v1|%s|", kind);
    if (len <= pl || len >= (long)sizeof raw)
        return err_set(e, ERR_BAD_REQUEST, "cursor is not valid");
    raw[len] = '\0';
    if (memcmp(raw, prefix, (size_t)pl) != 0 || !parse_i64(raw + pl, id) || *id < 0)
        return err_set(e, ERR_BAD_REQUEST, "cursor is not valid");
    return true;
}

bool api_read_limit(const http_query_t *q, int *limit, err_t *e)
{
    const char *v = http_query_get(q, "limit");
    *limit = 20;
    if (!v || !*v)
        return true;
    int64_t x;
    if (!parse_i64(v, &x))
        return err_set(e, ERR_BAD_REQUEST, "limit must be an integer, got \"%.40s\"", v);
    if (x < 1 || x > 100)
        err_field(e, "limit", "must be from 1 to 100");
    *limit = (int)x;
    return true;
}

