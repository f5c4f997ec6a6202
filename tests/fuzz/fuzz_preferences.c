/* fuzz_preferences: a buyer's preferences as POST /api/preferences and /api/recommendations read
 * them: jansson, then rec_prefs_from_json, then the canonical form rec_prefs_write_json, then a
 * score of a fixed home.
 *
 * The one idea: whatever the reader accepts, its canonical JSON must read back into preferences
 * that write the very same bytes (the canonical form is the cache key and the stored session, so
 * it must be a fixed point), must stay within the documented bounds, and must score a home to a
 * number from 0 to 1000 with reasons for it. Any disagreement traps. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/jw.h"
#include "domain/recommend.h"

static void canonical(const rec_prefs_t *p, buf_t *out)
{
    jw_t w;
    buf_init(out);
    jw_init(&w, out);
    rec_prefs_write_json(&w, p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = json_loadb((const char *)data, size, 0, NULL);
    if (!obj)
        return 0;
    arena_t a;
    arena_init(&a);
    rec_prefs_t p;
    int limit = REC_LIMIT_DEFAULT;
    err_t e;
    err_clear(&e);
    bool ok = rec_prefs_from_json(obj, &p, &limit, &a, &e);
    json_decref(obj);
    if (!ok) {
        if (e.code == ERR_NONE)
            __builtin_trap(); /* refused without saying why */
        arena_free(&a);
        return 0;
    }
    if (limit < 1 || limit > REC_LIMIT_MAX || !p.set)
        __builtin_trap();
    if ((p.set & RP_BIT(RP_AMENITIES)) && (p.namenities < 1 || p.namenities > REC_MAX_AMENITIES))
        __builtin_trap();
    for (int i = 1; (p.set & RP_BIT(RP_AMENITIES)) && i < p.namenities; i++)
        if (strcmp(p.amenities[i - 1], p.amenities[i]) >= 0)
            __builtin_trap(); /* not sorted and unique */
    buf_t once, twice;
    canonical(&p, &once);
    json_t *back = json_loads(buf_cstr(&once), 0, NULL);
    if (!back)
        __builtin_trap(); /* the canonical form is not JSON */
    rec_prefs_t q;
    err_clear(&e);
    if (!rec_prefs_from_json(back, &q, NULL, &a, &e))
        __builtin_trap(); /* the canonical form is refused */
    json_decref(back);
    canonical(&q, &twice);
    if (once.len != twice.len || memcmp(once.data, twice.data, once.len) != 0)
        __builtin_trap(); /* not a fixed point */

    property_t h;
    property_init(&h);
    h.id = 1;
    h.price_cents = 25000000;
    h.bedrooms = 3;
    h.commute_time = 20;
    h.school_rating = 7;
    h.location = "North Ames, Ames, IA";
    h.city = "Ames";
    h.status = "active";
    static const char *amen[] = {"garage", "fireplace"};
    h.amenities = amen;
    h.namenities = 2;
    h.set |= PF_BIT(PF_PRICE) | PF_BIT(PF_BEDROOMS) | PF_BIT(PF_COMMUTE_TIME) | PF_BIT(PF_SCHOOL_RATING) |
             PF_BIT(PF_LOCATION) | PF_BIT(PF_CITY) | PF_BIT(PF_AMENITIES) | PF_BIT(PF_STATUS);
    rec_score_t s;
    rec_score(&p, &h, 24000000, &s);
    if (s.score < 0 || s.score > 1000)
        __builtin_trap();
    for (int c = 0; c < RC__COUNT; c++)
        if ((s.applies & (1u << c)) && (s.milli[c] < 0 || s.milli[c] > 1000))
            __builtin_trap();
    const char *reasons[RC__COUNT];
    int n = rec_reasons(&p, &h, &s, &a, reasons);
    if (n < 0 || n > RC__COUNT)
        __builtin_trap();
    for (int i = 0; i < n; i++)
        if (!reasons[i] || !reasons[i][0])
            __builtin_trap();
    buf_free(&once);
    buf_free(&twice);
    arena_free(&a);
    return 0;
}
