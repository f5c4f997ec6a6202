/* recommend: preferences, scores and reasons (see recommend.h; the formulas are explained in
 * docs/recommendations.md).
 *
 * The one idea: every criterion is a monotone function onto 0..1000 (thousandths), rounded once,
 * and everything shown to the buyer (the breakdown, the total, the reasons) is derived from those
 * same numbers, so what is explained is exactly what was ranked. */
#include "recommend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"

const char *const rec_criterion_names[RC__COUNT] = {
    [RC_BUDGET] = "budget", [RC_BEDROOMS] = "bedrooms", [RC_COMMUTE] = "commute",
    [RC_SCHOOL] = "school", [RC_AMENITIES] = "amenities", [RC_VALUE] = "value",
};

/* Budget first: a home the buyer can afford comfortably matters most; then whether the price is
 * fair (value) and whether it has what they asked for. Bedrooms are a hard constraint already, so
 * their score only separates nothing from something; it weighs little. */
const int rec_weights[RC__COUNT] = {
    [RC_BUDGET] = 30, [RC_BEDROOMS] = 5, [RC_COMMUTE] = 15, [RC_SCHOOL] = 10, [RC_AMENITIES] = 20, [RC_VALUE] = 20,
};

#define PREF_NAMES "budget, location, min_bedrooms, max_commute_time, min_school_rating, preferred_amenities"

/* Preferences ------------------------------------------------------------------------------------ */

/* An integer JSON value (or a real that is a whole number) within lo..hi. */
static bool json_int_in(json_t *v, int lo, int hi, int *out)
{
    double d;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < lo || x > hi)
            return false;
        *out = (int)x;
        return true;
    }
    if (!json_is_real(v))
        return false;
    d = json_real_value(v);
    if (d != floor(d) || d < lo || d > hi)
        return false;
    *out = (int)d;
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void read_budget(json_t *v, rec_prefs_t *p, err_t *e)
{
    int64_t cents = 0;
    int r;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        r = x > MONEY_MAX_CENTS / 100 ? -2 : (cents = (int64_t)x * 100, 0);
        if (x < 0)
            r = 0, cents = -1;
    } else if (json_is_real(v)) {
        r = money_from_double(json_real_value(v), &cents);
    } else {
        err_field(e, "budget", "must be a number of dollars");
        return;
    }
    if (r == 0 && cents <= 0)
        err_field(e, "budget", "must be > 0");
    else if (r != 0)
        err_field(e, "budget", "must be a number of dollars with at most two decimals, at most 1000000000000");
    else
        p->budget_cents = cents, p->set |= RP_BIT(RP_BUDGET);
}

static void read_location(json_t *v, rec_prefs_t *p, arena_t *a, err_t *e)
{
    if (!json_is_string(v)) {
        err_field(e, "location", "must be a string");
        return;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (strlen(s) != n) {
        err_field(e, "location", "must not contain NUL characters");
        return;
    }
    while (n && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n > REC_MAX_LOCATION) {
        err_field(e, "location", "must be 1 to %d bytes of text", REC_MAX_LOCATION);
        return;
    }
    p->location = arena_strndup(a, s, n);
    p->set |= RP_BIT(RP_LOCATION);
}

static void read_amenities(json_t *v, rec_prefs_t *p, arena_t *a, err_t *e)
{
    if (!json_is_array(v)) {
        err_field(e, "preferred_amenities", "must be an array of strings");
        return;
    }
    size_t n = json_array_size(v);
    if (n > REC_MAX_AMENITIES) {
        err_field(e, "preferred_amenities", "must have at most %d items", REC_MAX_AMENITIES);
        return;
    }
    const char **out = arena_alloc(a, (n ? n : 1) * sizeof *out);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(v, i);
        char slug[64];
        if (!json_is_string(it)) {
            err_field(e, "preferred_amenities", "must be an array of strings");
            return;
        }
        if (json_string_length(it) > 60 || strlen(json_string_value(it)) != json_string_length(it) ||
            !amenity_slug(json_string_value(it), slug, sizeof slug)) {
            err_field(e, "preferred_amenities", "items must be names of 1 to 60 letters, digits or spaces");
            return;
        }
        bool dup = false;
        for (int j = 0; j < k && !dup; j++)
            dup = strcmp(out[j], slug) == 0;
        if (!dup)
            out[k++] = arena_strdup(a, slug);
    }
    if (k == 0)
        return; /* an empty list states nothing */
    qsort(out, (size_t)k, sizeof *out, cmp_str);
    p->amenities = out;
    p->namenities = k;
    p->set |= RP_BIT(RP_AMENITIES);
}

bool rec_prefs_from_json(json_t *obj, rec_prefs_t *p, int *limit, arena_t *a, err_t *e)
{
    memset(p, 0, sizeof *p);
    if (!json_is_object(obj))
        return err_set(e, ERR_VALIDATION, "the preferences must be a JSON object");
    int before = e->ndetails;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        int x;
        bool known = true;
        if (strcmp(key, "limit") == 0 && limit) {
            if (!json_is_null(v) && !json_int_in(v, 1, REC_LIMIT_MAX, limit))
                err_field(e, "limit", "must be an integer from 1 to %d", REC_LIMIT_MAX);
            continue;
        }
        if (strcmp(key, "budget") == 0) {
            if (!json_is_null(v))
                read_budget(v, p, e);
        } else if (strcmp(key, "location") == 0) {
            if (!json_is_null(v))
                read_location(v, p, a, e);
        } else if (strcmp(key, "min_bedrooms") == 0) {
            if (json_is_null(v))
                ;
            else if (!json_int_in(v, 0, 20, &x))
                err_field(e, key, "must be an integer from 0 to 20");
            else
                p->min_bedrooms = x, p->set |= RP_BIT(RP_MIN_BEDROOMS);
        } else if (strcmp(key, "max_commute_time") == 0) {
            if (json_is_null(v))
                ;
            else if (!json_int_in(v, 1, 300, &x))
                err_field(e, key, "must be an integer number of minutes from 1 to 300");
            else
                p->max_commute_time = x, p->set |= RP_BIT(RP_MAX_COMMUTE);
        } else if (strcmp(key, "min_school_rating") == 0) {
            if (json_is_null(v))
                ;
            else if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 10)
                err_field(e, key, "must be a number from 0 to 10");
            else
                p->min_school_rating = json_number_value(v), p->set |= RP_BIT(RP_MIN_SCHOOL);
        } else if (strcmp(key, "preferred_amenities") == 0) {
            if (!json_is_null(v))
                read_amenities(v, p, a, e);
        } else {
            known = false;
        }
        if (!known)
            err_field(e, key, "is not a preference (use %s%s)", PREF_NAMES, limit ? " or limit" : "");
    }
    if (e->ndetails > before || e->code != ERR_NONE)
        return false;
    if (p->set == 0) {
        err_field(e, "preferences", "give at least one of " PREF_NAMES);
        return false;
    }
    return true;
}

void rec_prefs_write_json(jw_t *w, const rec_prefs_t *p)
{
    jw_obj_begin(w);
    if (p->set & RP_BIT(RP_BUDGET)) {
        jw_key(w, "budget");
        jw_money(w, p->budget_cents);
    }
    if (p->set & RP_BIT(RP_LOCATION))
        jw_kstr(w, "location", p->location);
    if (p->set & RP_BIT(RP_MIN_BEDROOMS))
        jw_kint(w, "min_bedrooms", p->min_bedrooms);
    if (p->set & RP_BIT(RP_MAX_COMMUTE))
        jw_kint(w, "max_commute_time", p->max_commute_time);
    if (p->set & RP_BIT(RP_MIN_SCHOOL)) {
        jw_key(w, "min_school_rating");
        jw_double(w, p->min_school_rating);
    }
    if (p->set & RP_BIT(RP_AMENITIES)) {
        jw_key(w, "preferred_amenities");
        jw_arr_begin(w);
        for (int i = 0; i < p->namenities; i++)
            jw_str(w, p->amenities[i]);
        jw_arr_end(w);
    }
    jw_obj_end(w);
}

/* Scores ----------------------------------------------------------------------------------------- */

bool rec_passes(const rec_prefs_t *p, const property_t *h)
{
    if (!h->status || strcmp(h->status, "active") != 0)
        return false;
    if ((p->set & RP_BIT(RP_BUDGET)) && h->price_cents > p->budget_cents)
        return false;
    if ((p->set & RP_BIT(RP_MIN_BEDROOMS)) && h->bedrooms < p->min_bedrooms)
        return false;
    return true;
}

/* round(num / den) for num >= 0, den > 0: monotone in num */
static int64_t div_round(int64_t num, int64_t den) { return (num + den / 2) / den; }

static int clamp_milli(int64_t v) { return v < 0 ? 0 : v > 1000 ? 1000 : (int)v; }

/* Within budget: 0.8, plus up to 0.2 for the share of the budget left over (a home at half the
 * budget scores 0.9). Over it (never a candidate, but the function stays monotone): from 0.8 down
 * to 0 at 10 % over. */
static int budget_milli(int64_t budget, int64_t price)
{
    if (price <= budget)
        return clamp_milli(800 + div_round(200 * (budget - price), budget));
    return clamp_milli(800 - div_round(8000 * (price - budget), budget));
}

static int count_amenities(const rec_prefs_t *p, const property_t *h)
{
    int have = 0;
    for (int i = 0; i < p->namenities; i++)
        for (int j = 0; j < h->namenities; j++)
            if (h->amenities[j] && strcmp(p->amenities[i], h->amenities[j]) == 0) {
                have++;
                break;
            }
    return have;
}

/* value_milli < 0: computed from predicted_cents */
static void score_with(const rec_prefs_t *p, const rec_home_t *h, int64_t predicted_cents, int value_milli,
                       rec_score_t *s)
{
    memset(s, 0, sizeof *s);
    if (p->set & RP_BIT(RP_BUDGET)) {
        s->applies |= 1u << RC_BUDGET;
        s->milli[RC_BUDGET] = budget_milli(p->budget_cents, h->price_cents);
    }
    if (p->set & RP_BIT(RP_MIN_BEDROOMS)) {
        s->applies |= 1u << RC_BEDROOMS;
        int m = p->min_bedrooms, b = h->bedrooms < 0 ? 0 : h->bedrooms;
        s->milli[RC_BEDROOMS] = b >= m ? 1000 : clamp_milli(div_round(1000LL * b, m));
    }
    if (p->set & RP_BIT(RP_MAX_COMMUTE)) {
        s->applies |= 1u << RC_COMMUTE;
        int max = p->max_commute_time, c = h->commute_time;
        if (!h->has_commute)
            s->milli[RC_COMMUTE] = 500; /* unknown: neutral */
        else if (c <= max)
            s->milli[RC_COMMUTE] = 1000;
        else /* one minute over costs 1/max: zero at twice the limit */
            s->milli[RC_COMMUTE] = c - max >= max ? 0 : clamp_milli(1000 - div_round(1000LL * (c - max), max));
    }
    if (p->set & RP_BIT(RP_MIN_SCHOOL)) {
        s->applies |= 1u << RC_SCHOOL;
        double m = p->min_school_rating, r = h->school_rating;
        if (!h->has_school)
            s->milli[RC_SCHOOL] = 500; /* unknown: neutral (DESIGN.md) */
        else if (r >= m || m <= 0)
            s->milli[RC_SCHOOL] = 1000;
        else
            s->milli[RC_SCHOOL] = clamp_milli(lround(1000.0 * (r < 0 ? 0 : r) / m));
    }
    if (p->set & RP_BIT(RP_AMENITIES)) {
        s->applies |= 1u << RC_AMENITIES;
        s->amenities_have = h->amenities_have;
        s->milli[RC_AMENITIES] = clamp_milli(div_round(1000LL * s->amenities_have, p->namenities));
    }
    s->applies |= 1u << RC_VALUE;
    if (value_milli >= 0) {
        s->milli[RC_VALUE] = value_milli;
    } else if (predicted_cents > 0) {
        s->predicted_cents = predicted_cents;
        /* 0.5 at the estimate, 1 at 20 % below it, 0 at 20 % above */
        double d = (double)(predicted_cents - h->price_cents) / (double)predicted_cents;
        s->milli[RC_VALUE] = d >= 0.2 ? 1000 : d <= -0.2 ? 0 : clamp_milli(lround(500.0 + 2500.0 * d));
    } else {
        s->milli[RC_VALUE] = 500; /* no model: neutral */
    }
    int64_t num = 0, den = 0;
    for (int c = 0; c < RC__COUNT; c++)
        if (s->applies & (1u << c)) {
            num += (int64_t)rec_weights[c] * s->milli[c];
            den += rec_weights[c];
        }
    s->score = (int)div_round(num, den);
}

void rec_home_of(const rec_prefs_t *p, const property_t *h, rec_home_t *out)
{
    out->price_cents = h->price_cents;
    out->bedrooms = h->bedrooms;
    out->has_commute = (h->set & PF_BIT(PF_COMMUTE_TIME)) != 0;
    out->commute_time = h->commute_time;
    out->has_school = (h->set & PF_BIT(PF_SCHOOL_RATING)) != 0;
    out->school_rating = h->school_rating;
    out->amenities_have = (p->set & RP_BIT(RP_AMENITIES)) ? count_amenities(p, h) : 0;
}

void rec_score_home(const rec_prefs_t *p, const rec_home_t *h, int64_t predicted_cents, rec_score_t *out)
{
    score_with(p, h, predicted_cents, -1, out);
}

void rec_score(const rec_prefs_t *p, const property_t *h, int64_t predicted_cents, rec_score_t *out)
{
    rec_home_t home;
    rec_home_of(p, h, &home);
    score_with(p, &home, predicted_cents, -1, out);
}

int rec_score_bound(const rec_prefs_t *p, const property_t *h)
{
    rec_home_t home;
    rec_home_of(p, h, &home);
    rec_score_t s;
    score_with(p, &home, 0, 1000, &s);
    return s.score;
}

int rec_compare(const rec_score_t *sa, const property_t *a, const rec_score_t *sb, const property_t *b)
{
    if (sa->score != sb->score)
        return sa->score > sb->score ? -1 : 1;
    if (a->price_cents != b->price_cents)
        return a->price_cents < b->price_cents ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id ? 1 : 0;
}

/* Reasons ---------------------------------------------------------------------------------------- */

void rec_format_dollars(int64_t cents, char *out, size_t outlen)
{
    bool neg = cents < 0;
    uint64_t v = neg ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    uint64_t dollars = v / 100, rest = v % 100;
    char digits[32], grouped[48];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)dollars), k = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            grouped[k++] = ',';
        grouped[k++] = digits[i];
    }
    grouped[k] = '\0';
    if (rest)
        snprintf(out, outlen, "%s$%s.%02llu", neg ? "-" : "", grouped, (unsigned long long)rest);
    else
        snprintf(out, outlen, "%s$%s", neg ? "-" : "", grouped);
}

/* "central_air" -> "central air" */
static void amenity_words(const char *slug, buf_t *b)
{
    for (; *slug; slug++)
        buf_putc(b, *slug == '_' ? ' ' : *slug);
}

int rec_reasons(const rec_prefs_t *p, const property_t *h, const rec_score_t *s, arena_t *a, const char **out)
{
    int n = 0;
    char money[48];
    if (s->applies & (1u << RC_BUDGET)) {
        int64_t left = p->budget_cents - h->price_cents;
        rec_format_dollars(left < 0 ? -left : left, money, sizeof money);
        out[n++] = left > 0 ? arena_printf(a, "%s under your budget", money)
                 : left < 0 ? arena_printf(a, "%s over your budget", money)
                            : arena_strdup(a, "exactly your budget");
    }
    if (s->applies & (1u << RC_BEDROOMS))
        out[n++] = arena_printf(a, "%d bedroom%s, %s %d", h->bedrooms, h->bedrooms == 1 ? "" : "s",
                                h->bedrooms >= p->min_bedrooms ? "at least your" : "fewer than your", p->min_bedrooms);
    if (s->applies & (1u << RC_COMMUTE)) {
        int max = p->max_commute_time, c = h->commute_time;
        if (!(h->set & PF_BIT(PF_COMMUTE_TIME)))
            out[n++] = arena_strdup(a, "commute time unknown");
        else if (c <= max)
            out[n++] = arena_printf(a, "%d min commute, within your %d", c, max);
        else
            out[n++] = arena_printf(a, "%d min commute, %d over your %d", c, c - max, max);
    }
    if (s->applies & (1u << RC_SCHOOL)) {
        if (!(h->set & PF_BIT(PF_SCHOOL_RATING)))
            out[n++] = arena_strdup(a, "school rating unknown");
        else if (h->school_rating >= p->min_school_rating)
            out[n++] = arena_printf(a, "school rating %g", h->school_rating);
        else
            out[n++] = arena_printf(a, "school rating %g, below your %g", h->school_rating, p->min_school_rating);
    }
    if (s->applies & (1u << RC_AMENITIES)) {
        buf_t b;
        buf_init(&b);
        buf_printf(&b, "%d of %d wanted amenit%s", s->amenities_have, p->namenities, p->namenities == 1 ? "y" : "ies");
        int missing = 0;
        for (int i = 0; i < p->namenities; i++) {
            bool has = false;
            for (int j = 0; j < h->namenities && !has; j++)
                has = h->amenities[j] && strcmp(p->amenities[i], h->amenities[j]) == 0;
            if (has)
                continue;
            if (missing < 3) {
                buf_puts(&b, missing ? ", " : " (missing: ");
                amenity_words(p->amenities[i], &b);
            }
            missing++;
        }
        if (missing > 3)
            buf_printf(&b, " and %d more", missing - 3);
        if (missing)
            buf_putc(&b, ')');
        out[n++] = arena_strdup(a, buf_cstr(&b));
        buf_free(&b);
    }
    if (s->applies & (1u << RC_VALUE)) {
        if (s->predicted_cents <= 0) {
            out[n++] = arena_strdup(a, "no price estimate available");
        } else {
            double d = (double)(s->predicted_cents - h->price_cents) / (double)s->predicted_cents;
            long pct = lround(fabs(d) * 100.0);
            rec_format_dollars(s->predicted_cents, money, sizeof money);
            out[n++] = pct == 0 ? arena_printf(a, "priced at its estimated value (%s)", money)
                                : arena_printf(a, "priced %ld%% %s its estimated value (%s)", pct,
                                               d > 0 ? "below" : "above", money);
        }
    }
    return n;
}
