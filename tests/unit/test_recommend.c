/* test_recommend: the scoring rules of domain/recommend.c without HTTP. The properties a buyer
 * relies on are checked over many generated homes and preference sets: a lower price never lowers
 * a score (so a home over budget never outranks one within it, all else equal), a wanted amenity a
 * home has never lowers its score, a better estimate never lowers it, the bound used to skip
 * pricing is never below the real score, the total is the weighted mean of the breakdown, and each
 * reason states the numbers its criterion was scored from. Also the preferences' validation and
 * canonical JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/arena.h"
#include "base/jw.h"
#include "domain/recommend.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int pick(int lo, int hi) { return lo + (int)(next() % (uint64_t)(hi - lo + 1)); }

static const char *const AMENITIES[] = {"garage", "pool", "fireplace", "central_air",
                                        "basement", "deck", "porch", "garden"};
#define NAMEN 8

/* A random active home; strings and lists in `a`. */
static void random_home(property_t *h, arena_t *a)
{
    property_init(h);
    h->id = pick(1, 100000);
    h->status = "active";
    h->price_cents = (int64_t)pick(5000, 900000) * 100 + pick(0, 99);
    h->bedrooms = pick(0, 6);
    h->set = PF_BIT(PF_PRICE) | PF_BIT(PF_BEDROOMS);
    if (pick(0, 3)) {
        h->commute_time = pick(1, 120);
        h->set |= PF_BIT(PF_COMMUTE_TIME);
    }
    if (pick(0, 2) == 0) {
        h->school_rating = pick(0, 100) / 10.0;
        h->set |= PF_BIT(PF_SCHOOL_RATING);
    }
    h->amenities = arena_alloc(a, NAMEN * sizeof *h->amenities);
    for (int i = 0; i < NAMEN; i++)
        if (pick(0, 1))
            h->amenities[h->namenities++] = AMENITIES[i];
}

static void random_prefs(rec_prefs_t *p, arena_t *a)
{
    memset(p, 0, sizeof *p);
    do {
        if (pick(0, 1))
            p->set |= RP_BIT(RP_BUDGET), p->budget_cents = (int64_t)pick(50000, 1000000) * 100;
        if (pick(0, 1))
            p->set |= RP_BIT(RP_MIN_BEDROOMS), p->min_bedrooms = pick(0, 5);
        if (pick(0, 1))
            p->set |= RP_BIT(RP_MAX_COMMUTE), p->max_commute_time = pick(1, 90);
        if (pick(0, 1))
            p->set |= RP_BIT(RP_MIN_SCHOOL), p->min_school_rating = pick(0, 100) / 10.0;
        if (pick(0, 1)) {
            p->amenities = arena_alloc(a, NAMEN * sizeof *p->amenities);
            for (int i = 0; i < NAMEN; i++)
                if (pick(0, 2) == 0)
                    p->amenities[p->namenities++] = AMENITIES[i];
            if (p->namenities)
                p->set |= RP_BIT(RP_AMENITIES);
        }
    } while (!p->set);
}

static int64_t random_estimate(const property_t *h)
{
    return pick(0, 4) == 0 ? 0 : h->price_cents * pick(70, 130) / 100 + 1;
}

static void test_lower_price_never_lowers_score(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < 20000; i++) {
        rec_prefs_t p;
        property_t h, cheaper;
        random_prefs(&p, &a);
        random_home(&h, &a);
        int64_t est = random_estimate(&h);
        cheaper = h;
        cheaper.price_cents = h.price_cents - pick(1, 5000000);
        if (cheaper.price_cents < 0)
            cheaper.price_cents = 0;
        rec_score_t s, sc;
        rec_score(&p, &h, est, &s);
        rec_score(&p, &cheaper, est, &sc);
        assert_true(sc.score >= s.score);
        assert_true(sc.milli[RC_BUDGET] >= s.milli[RC_BUDGET]);
        assert_true(sc.milli[RC_VALUE] >= s.milli[RC_VALUE]);
        assert_true(rec_compare(&sc, &cheaper, &s, &h) <= 0); /* never ranked after the dearer twin */
        arena_reset(&a);
    }
    arena_free(&a);
}

static void test_over_budget_never_outranks(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < 20000; i++) {
        rec_prefs_t p;
        random_prefs(&p, &a);
        p.set |= RP_BIT(RP_BUDGET);
        p.budget_cents = (int64_t)pick(50000, 1000000) * 100;
        property_t within, over;
        random_home(&within, &a);
        within.price_cents = p.budget_cents - pick(0, 4000000);
        if (within.price_cents < 0)
            within.price_cents = 0;
        over = within;
        over.id = within.id + 1;
        over.price_cents = p.budget_cents + pick(1, 20000000);
        int64_t est = random_estimate(&within);
        rec_score_t sw, so;
        rec_score(&p, &within, est, &sw);
        rec_score(&p, &over, est, &so);
        assert_true(sw.score >= so.score);
        assert_true(rec_compare(&sw, &within, &so, &over) < 0);
        assert_false(rec_passes(&p, &over)); /* and it is not even a candidate */
        if (p.set & RP_BIT(RP_MIN_BEDROOMS))
            within.bedrooms = p.min_bedrooms;
        assert_true(rec_passes(&p, &within));
        arena_reset(&a);
    }
    /* at the budget 0.8, a cent over it no more; 10 % over it nothing */
    rec_prefs_t p = {.set = RP_BIT(RP_BUDGET), .budget_cents = 10000000};
    property_t h;
    property_init(&h);
    h.status = "active";
    rec_score_t s;
    h.price_cents = 10000000;
    rec_score(&p, &h, 0, &s);
    assert_int_equal(s.milli[RC_BUDGET], 800);
    h.price_cents = 10000001;
    rec_score(&p, &h, 0, &s);
    assert_true(s.milli[RC_BUDGET] <= 800);
    h.price_cents = 11000000;
    rec_score(&p, &h, 0, &s);
    assert_int_equal(s.milli[RC_BUDGET], 0);
    h.price_cents = 5000000;
    rec_score(&p, &h, 0, &s);
    assert_int_equal(s.milli[RC_BUDGET], 900);
    arena_free(&a);
}

static void test_wanted_amenity_never_lowers_score(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < 20000; i++) {
        rec_prefs_t p;
        property_t h;
        random_prefs(&p, &a);
        random_home(&h, &a);
        if (h.namenities == 0)
            continue;
        /* one amenity the home has that the buyer does not ask for yet */
        const char *add = NULL;
        for (int k = 0; k < h.namenities && !add; k++) {
            bool wanted = false;
            for (int j = 0; j < p.namenities; j++)
                wanted |= strcmp(p.amenities[j], h.amenities[k]) == 0;
            if (!wanted)
                add = h.amenities[k];
        }
        if (!add)
            continue;
        int64_t est = random_estimate(&h);
        rec_score_t before, after;
        rec_score(&p, &h, est, &before);
        rec_prefs_t more = p;
        more.amenities = arena_alloc(&a, (size_t)(p.namenities + 1) * sizeof *more.amenities);
        if (p.namenities)
            memcpy(more.amenities, p.amenities, (size_t)p.namenities * sizeof *more.amenities);
        more.amenities[more.namenities++] = add;
        more.set |= RP_BIT(RP_AMENITIES);
        rec_score(&more, &h, est, &after);
        assert_true(after.score >= before.score);
        assert_true(after.milli[RC_AMENITIES] >= before.milli[RC_AMENITIES]);
        assert_int_equal(after.amenities_have, before.amenities_have + 1);
        arena_reset(&a);
    }
    arena_free(&a);
}

static void test_estimate_and_bound(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < 20000; i++) {
        rec_prefs_t p;
        property_t h;
        random_prefs(&p, &a);
        random_home(&h, &a);
        int64_t est = random_estimate(&h);
        rec_score_t s, higher;
        rec_score(&p, &h, est, &s);
        rec_score(&p, &h, est + pick(1, 10000000), &higher);
        if (est > 0) /* a home worth more than thought never scores less */
            assert_true(higher.score >= s.score);
        assert_true(rec_score_bound(&p, &h) >= s.score);
        assert_true(rec_score_bound(&p, &h) >= higher.score);
        arena_reset(&a);
    }
    arena_free(&a);
}

static void test_score_is_weighted_mean_of_breakdown(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < 5000; i++) {
        rec_prefs_t p;
        property_t h;
        random_prefs(&p, &a);
        random_home(&h, &a);
        rec_score_t s;
        rec_score(&p, &h, random_estimate(&h), &s);
        double num = 0, den = 0;
        for (int c = 0; c < RC__COUNT; c++) {
            bool stated = (c == RC_BUDGET && (p.set & RP_BIT(RP_BUDGET))) ||
                          (c == RC_BEDROOMS && (p.set & RP_BIT(RP_MIN_BEDROOMS))) ||
                          (c == RC_COMMUTE && (p.set & RP_BIT(RP_MAX_COMMUTE))) ||
                          (c == RC_SCHOOL && (p.set & RP_BIT(RP_MIN_SCHOOL))) ||
                          (c == RC_AMENITIES && (p.set & RP_BIT(RP_AMENITIES))) || c == RC_VALUE;
            assert_int_equal(!!(s.applies & (1u << c)), stated);
            if (!stated)
                continue;
            assert_true(s.milli[c] >= 0 && s.milli[c] <= 1000);
            num += rec_weights[c] * s.milli[c];
            den += rec_weights[c];
        }
        assert_int_equal(s.score, (int)(num / den + 0.5));
        arena_reset(&a);
    }
    arena_free(&a);
}

/* The snapshot of api/recommendations.c scores a compact home (rec_home_t) with its amenities
 * counted by number: the same numbers as rec_score of the full listing, whatever the home. */
static void test_compact_home_scores_the_same(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    for (int i = 0; i < 20000; i++) {
        rec_prefs_t p;
        property_t h;
        random_prefs(&p, &a);
        random_home(&h, &a);
        int64_t est = random_estimate(&h);
        rec_score_t full, compact;
        rec_score(&p, &h, est, &full);
        /* as the snapshot keeps it: the flags and values, and the count of wanted amenities */
        rec_home_t home = {.price_cents = h.price_cents,
                           .bedrooms = h.bedrooms,
                           .has_commute = (h.set & PF_BIT(PF_COMMUTE_TIME)) != 0,
                           .commute_time = h.commute_time,
                           .has_school = (h.set & PF_BIT(PF_SCHOOL_RATING)) != 0,
                           .school_rating = h.school_rating};
        for (int w = 0; w < p.namenities && (p.set & RP_BIT(RP_AMENITIES)); w++)
            for (int k = 0; k < h.namenities; k++)
                if (strcmp(p.amenities[w], h.amenities[k]) == 0) {
                    home.amenities_have++;
                    break;
                }
        rec_score_home(&p, &home, est, &compact);
        assert_memory_equal(&full, &compact, sizeof full);
        rec_home_t of;
        rec_home_of(&p, &h, &of);
        assert_int_equal(of.amenities_have, home.amenities_have);
        arena_reset(&a);
    }
    arena_free(&a);
}

static void test_unknown_is_neutral(void **state)
{
    (void)state;
    rec_prefs_t p = {.set = RP_BIT(RP_MAX_COMMUTE) | RP_BIT(RP_MIN_SCHOOL), .max_commute_time = 30,
                     .min_school_rating = 7};
    property_t h;
    property_init(&h);
    h.status = "active";
    h.price_cents = 10000000;
    rec_score_t s;
    rec_score(&p, &h, 0, &s);
    assert_int_equal(s.milli[RC_COMMUTE], 500);
    assert_int_equal(s.milli[RC_SCHOOL], 500);
    assert_int_equal(s.milli[RC_VALUE], 500);
    assert_int_equal(s.predicted_cents, 0);
    h.set |= PF_BIT(PF_COMMUTE_TIME) | PF_BIT(PF_SCHOOL_RATING);
    h.commute_time = 45; /* 15 over 30: half */
    h.school_rating = 7;
    rec_score(&p, &h, 12500000, &s); /* priced 20 % below the estimate: full value */
    assert_int_equal(s.milli[RC_COMMUTE], 500);
    assert_int_equal(s.milli[RC_SCHOOL], 1000);
    assert_int_equal(s.milli[RC_VALUE], 1000);
    h.commute_time = 30;
    rec_score(&p, &h, 10000000, &s); /* at the estimate: neutral value */
    assert_int_equal(s.milli[RC_COMMUTE], 1000);
    assert_int_equal(s.milli[RC_VALUE], 500);
}

static void test_reasons_state_the_numbers(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    const char *want[] = {"garage", "pool", "fireplace", "central_air", "deck"};
    rec_prefs_t p = {.set = RP_BIT(RP_BUDGET) | RP_BIT(RP_MIN_BEDROOMS) | RP_BIT(RP_MAX_COMMUTE) |
                            RP_BIT(RP_MIN_SCHOOL) | RP_BIT(RP_AMENITIES),
                     .budget_cents = 25000000, .min_bedrooms = 3, .max_commute_time = 30,
                     .min_school_rating = 8, .amenities = want, .namenities = 5};
    const char *has[] = {"garage", "fireplace", "central_air", "deck", "porch"};
    property_t h;
    property_init(&h);
    h.id = 7;
    h.status = "active";
    h.price_cents = 23760000;
    h.bedrooms = 4;
    h.set = PF_BIT(PF_COMMUTE_TIME) | PF_BIT(PF_SCHOOL_RATING);
    h.commute_time = 22;
    h.school_rating = 8.5;
    h.amenities = has;
    h.namenities = 5;
    rec_score_t s;
    rec_score(&p, &h, 25826087, &s); /* the list price is 8 % below the estimate */
    const char *r[RC__COUNT];
    int n = rec_reasons(&p, &h, &s, &a, r);
    assert_int_equal(n, 6);
    assert_string_equal(r[0], "$12,400 under your budget");
    assert_string_equal(r[1], "4 bedrooms, at least your 3");
    assert_string_equal(r[2], "22 min commute, within your 30");
    assert_string_equal(r[3], "school rating 8.5");
    assert_string_equal(r[4], "4 of 5 wanted amenities (missing: pool)");
    assert_string_equal(r[5], "priced 8% below its estimated value ($258,260.87)");
    assert_int_equal(s.amenities_have, 4);
    assert_int_equal(s.milli[RC_AMENITIES], 800);

    h.set = 0; /* unknowns, and a price above the estimate */
    h.price_cents = 25000050;
    rec_score(&p, &h, 20000000, &s);
    n = rec_reasons(&p, &h, &s, &a, r);
    assert_string_equal(r[0], "$0.50 over your budget");
    assert_string_equal(r[2], "commute time unknown");
    assert_string_equal(r[3], "school rating unknown");
    assert_string_equal(r[5], "priced 25% above its estimated value ($200,000)");
    rec_score(&p, &h, 0, &s);
    n = rec_reasons(&p, &h, &s, &a, r);
    assert_string_equal(r[5], "no price estimate available");
    arena_free(&a);
}

static void test_format_dollars(void **state)
{
    (void)state;
    char out[48];
    struct { int64_t cents; const char *text; } cases[] = {
        {0, "$0"}, {1, "$0.01"}, {100, "$1"}, {99999, "$999.99"}, {100000, "$1,000"}, {1240000, "$12,400"},
        {123456789, "$1,234,567.89"}, {-50, "-$0.50"}, {100000000000000LL, "$1,000,000,000,000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rec_format_dollars(cases[i].cents, out, sizeof out);
        assert_string_equal(out, cases[i].text);
    }
}

/* Parses `text` as preferences; returns the canonical JSON (or NULL) and leaves the error in *e. */
static const char *parse(const char *text, int *limit, err_t *e, arena_t *a)
{
    err_clear(e);
    json_t *doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    rec_prefs_t p;
    bool ok = rec_prefs_from_json(doc, &p, limit, a, e);
    json_decref(doc);
    if (!ok)
        return NULL;
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    rec_prefs_write_json(&w, &p);
    const char *out = arena_strdup(a, buf_cstr(&b));
    buf_free(&b);
    return out;
}

static void assert_field(const err_t *e, const char *field)
{
    assert_int_equal(e->code, ERR_VALIDATION);
    for (int i = 0; i < e->ndetails; i++)
        if (strcmp(e->details[i].field, field) == 0)
            return;
    fail_msg("no detail for %s", field);
}

static void test_preferences(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    err_t e;
    int limit = 3;
    const char *c = parse("{\"preferred_amenities\":[\"Pool\",\"central air\",\"pool\"],\"min_school_rating\":7.5,"
                          "\"budget\":250000.5,\"location\":\"  Ames \",\"max_commute_time\":30,\"min_bedrooms\":3.0}",
                          NULL, &e, &a);
    assert_non_null(c);
    assert_string_equal(c, "{\"budget\":250000.5,\"location\":\"Ames\",\"min_bedrooms\":3,\"max_commute_time\":30,"
                           "\"min_school_rating\":7.5,\"preferred_amenities\":[\"central_air\",\"pool\"]}");
    assert_string_equal(parse("{\"budget\":100,\"min_bedrooms\":null}", NULL, &e, &a), "{\"budget\":100}");
    assert_non_null(parse("{\"budget\":100,\"limit\":50}", &limit, &e, &a));
    assert_int_equal(limit, 50);

    struct { const char *text; const char *field; } bad[] = {
        {"{}", "preferences"},
        {"{\"preferred_amenities\":[]}", "preferences"},
        {"{\"budget\":\"100\"}", "budget"},
        {"{\"budget\":0}", "budget"},
        {"{\"budget\":-1}", "budget"},
        {"{\"budget\":1.234}", "budget"},
        {"{\"budget\":1e300}", "budget"},
        {"{\"budget\":true}", "budget"},
        {"{\"location\":3}", "location"},
        {"{\"location\":\"  \"}", "location"},
        {"{\"min_bedrooms\":21}", "min_bedrooms"},
        {"{\"min_bedrooms\":2.5}", "min_bedrooms"},
        {"{\"min_bedrooms\":\"3\"}", "min_bedrooms"},
        {"{\"max_commute_time\":0}", "max_commute_time"},
        {"{\"max_commute_time\":301}", "max_commute_time"},
        {"{\"min_school_rating\":10.5}", "min_school_rating"},
        {"{\"min_school_rating\":-1}", "min_school_rating"},
        {"{\"preferred_amenities\":\"pool\"}", "preferred_amenities"},
        {"{\"preferred_amenities\":[\"pool\",2]}", "preferred_amenities"},
        {"{\"preferred_amenities\":[\"!!!\"]}", "preferred_amenities"},
        {"{\"budget\":100,\"colour\":\"red\"}", "colour"},
        {"{\"budget\":100,\"limit\":3}", "limit"}, /* no limit here: an unknown field */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(parse(bad[i].text, NULL, &e, &a));
        assert_field(&e, bad[i].field);
    }
    assert_null(parse("{\"budget\":100,\"limit\":0}", &limit, &e, &a));
    assert_field(&e, "limit");
    assert_null(parse("{\"budget\":100,\"limit\":51}", &limit, &e, &a));
    assert_field(&e, "limit");
    /* 51 wanted amenities are too many */
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "{\"preferred_amenities\":[");
    for (int i = 0; i < 51; i++)
        buf_printf(&b, "%s\"a%d\"", i ? "," : "", i);
    buf_puts(&b, "]}");
    assert_null(parse(buf_cstr(&b), NULL, &e, &a));
    assert_field(&e, "preferred_amenities");
    buf_free(&b);
    /* not an object */
    err_clear(&e);
    rec_prefs_t p;
    json_t *arr = json_array();
    assert_false(rec_prefs_from_json(arr, &p, NULL, &a, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    json_decref(arr);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lower_price_never_lowers_score),
        cmocka_unit_test(test_over_budget_never_outranks),
        cmocka_unit_test(test_wanted_amenity_never_lowers_score),
        cmocka_unit_test(test_estimate_and_bound),
        cmocka_unit_test(test_score_is_weighted_mean_of_breakdown),
        cmocka_unit_test(test_compact_home_scores_the_same),
        cmocka_unit_test(test_unknown_is_neutral),
        cmocka_unit_test(test_reasons_state_the_numbers),
        cmocka_unit_test(test_format_dollars),
        cmocka_unit_test(test_preferences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
