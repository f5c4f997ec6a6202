/* fuzz_query: the query string of GET /api/properties: percent-decoding (url_decode), splitting
 * (http_query_parse), every filter's validation (properties_read_query) and the keyset cursor.
 *
 * The one idea: beyond "no crash", check the properties the API promises: a decoded string is
 * never longer than its input, holds no NUL and is valid UTF-8; and whenever a query is accepted,
 * a cursor encoded for its sort decodes again (for the same sort) to exactly the value and id it
 * was made from, whatever those are. A mismatch traps. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/app.h"
#include "base/arena.h"
#include "base/util.h"
#include "domain/property.h"
#include "net/http.h"

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void check_decoded(const char *in, size_t n, const char *out, size_t outlen)
{
    if (outlen > n || strlen(out) != outlen || !utf8_valid(out, outlen))
        __builtin_trap();
    (void)in;
}

/* Encode a cursor for `pq`'s sort from a property whose values come from `h`, decode it, compare. */
static void cursor_round_trip(const property_query_t *pq, uint64_t h)
{
    static const int64_t extremes[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX};
    property_t p;
    property_init(&p);
    p.id = (int64_t)(h >> 1) ? (int64_t)(h >> 1) : 1; /* ids are positive */
    p.price_cents = (int64_t)(h % MONEY_MAX_CENTS);
    p.size_sqft = (int)(h % 1000001);
    p.bedrooms = (int)(h % 101);
    p.year_built = 1600 + (int)(h % 500);
    if (h & 1)
        p.set |= PF_BIT(PF_YEAR_BUILT);
    p.created_at = (h & 2) ? extremes[(h >> 2) % 6] : (int64_t)h;

    char cur[160];
    property_cursor_encode(pq, &p, cur, sizeof cur);
    if (!cur[0])
        __builtin_trap(); /* 160 bytes is what properties_list gives it */
    property_query_t back = *pq;
    back.has_cursor = false;
    if (!property_cursor_decode(&back, cur))
        __builtin_trap();
    if (!back.has_cursor || back.cursor_id != p.id ||
        back.cursor_value != property_sort_value(&p, pq->sort, pq->desc))
        __builtin_trap();
    /* and the cursor is bound to its sort: the other direction refuses it */
    property_query_t other = *pq;
    other.desc = !pq->desc;
    if (property_cursor_decode(&other, cur))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    arena_t arena;
    arena_init(&arena);

    /* url_decode directly, both flavours (callers hand it C strings: stop at the first NUL) */
    size_t slen = strlen(s);
    for (int plus = 0; plus < 2; plus++) {
        char *out;
        size_t outlen;
        if (url_decode(&arena, s, slen, plus, &out, &outlen))
            check_decoded(s, slen, out, outlen);
    }

    http_request_t req;
    memset(&req, 0, sizeof req);
    req.arena = &arena;
    req.query = s;

    /* the splitter alone */
    err_t e;
    err_clear(&e);
    http_query_t q;
    if (http_query_parse(&req, &q, &e)) {
        if (q.n < 0 || q.n > 64 || e.code != ERR_NONE)
            __builtin_trap();
        for (int i = 0; i < q.n; i++) {
            if (!q.names[i] || !q.values[i] || !utf8_valid(q.names[i], strlen(q.names[i])) ||
                !utf8_valid(q.values[i], strlen(q.values[i])))
                __builtin_trap();
            if (http_query_get(&q, q.names[i]) == NULL)
                __builtin_trap();
        }
    } else if (e.code != ERR_BAD_REQUEST) {
        __builtin_trap();
    }

    /* the search parameters */
    err_clear(&e);
    property_query_t pq;
    bool ok = properties_read_query(&req, &pq, &e);
    if (!ok && e.code != ERR_BAD_REQUEST)
        __builtin_trap(); /* false is always a 400 */
    if (ok && e.code != ERR_NONE && (e.code != ERR_VALIDATION || e.ndetails == 0))
        __builtin_trap(); /* true with an error is always a 422 with details */
    if (ok && e.code == ERR_NONE) {
        if (pq.limit < 1 || pq.limit > 100 || pq.sort < 0 || pq.sort >= SORT__COUNT || pq.ntypes > QUERY_MAX_TYPES ||
            pq.namenities > QUERY_MAX_AMENITIES)
            __builtin_trap();
        if (pq.has_cursor && pq.cursor_id <= 0)
            __builtin_trap();
        cursor_round_trip(&pq, fnv1a(data, size));
        cursor_round_trip(&pq, ~fnv1a(data, size));
    }

    /* the cursor parser on its own, against every sort */
    if (size <= 200) {
        for (int sort = 0; sort < SORT__COUNT; sort++) {
            property_query_t cq;
            memset(&cq, 0, sizeof cq);
            cq.sort = (property_sort_t)sort;
            cq.desc = sort & 1;
            if (property_cursor_decode(&cq, s) && (!cq.has_cursor || cq.cursor_id <= 0))
                __builtin_trap();
        }
    }

    arena_free(&arena);
    free(s);
    return 0;
}
