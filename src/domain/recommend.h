/* recommend: what a buyer's preferences are and how well a home meets them. Pure logic, no store
 * and no HTTP, so that the rules can be tested alone (tests/unit/test_recommend.c); the route
 * (api/recommendations.c) finds the candidates, asks the price model and keeps the best.
 *
 * Preferences split in two kinds. Hard constraints decide whether a home is a candidate at all:
 * it is listed (status active), costs at most the budget, has at least min_bedrooms and its
 * location contains the location text. Soft criteria score every candidate from 0 to 1: budget,
 * bedrooms, commute, school, amenities (each only when the buyer stated it) and value (always:
 * the list price against the model's estimate, neutral without a model). The score is the
 * weighted mean of the criteria that apply. docs/recommendations.md has the formulas.
 *
 * Scores are kept in thousandths (integers), rounded once per criterion; the total is the weighted
 * mean of those rounded numbers, so a client can recompute it from the breakdown, and equal
 * displayed scores are equal for the ranking too. Every function here is monotone in the way the
 * tests check: a lower price never lowers a score, a wanted amenity that a home has never lowers
 * it. */
#ifndef HEARTH_RECOMMEND_H
#define HEARTH_RECOMMEND_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/error.h"
#include "../base/jw.h"
#include "property.h"

#define REC_MAX_AMENITIES 50
#define REC_MAX_LOCATION 200 /* bytes */
#define REC_LIMIT_DEFAULT 3
#define REC_LIMIT_MAX 50

/* The preferences given (bits of rec_prefs_t.set). */
enum { RP_BUDGET, RP_LOCATION, RP_MIN_BEDROOMS, RP_MAX_COMMUTE, RP_MIN_SCHOOL, RP_AMENITIES };
#define RP_BIT(f) (1u << (f))

typedef struct rec_prefs {
    unsigned set;
    int64_t budget_cents;     /* > 0 */
    const char *location;     /* 1..REC_MAX_LOCATION bytes */
    int min_bedrooms;         /* 0..20 */
    int max_commute_time;     /* minutes, 1..300 */
    double min_school_rating; /* 0..10 */
    const char **amenities;   /* slugs (amenity_slug), unique, sorted */
    int namenities;           /* 1..REC_MAX_AMENITIES when RP_AMENITIES is set */
} rec_prefs_t;

/* Reads preferences from a JSON object (strings copied into `a`). `limit` NULL: a "limit" key is
 * an unknown field; otherwise it is read into *limit (1..REC_LIMIT_MAX, left alone when absent).
 * null values count as not given. Every problem becomes a detail in `e` (ERR_VALIDATION); false
 * when there is any. */
bool rec_prefs_from_json(json_t *obj, rec_prefs_t *p, int *limit, arena_t *a, err_t *e);
/* The canonical JSON of `p`: fixed key order, only the preferences given, amenities sorted. Two
 * preference sets that mean the same write the same bytes (the cache key and the stored form). */
void rec_prefs_write_json(jw_t *w, const rec_prefs_t *p);

/* The criteria of a score, in the order of the breakdown and of the reasons. */
typedef enum rec_criterion {
    RC_BUDGET, RC_BEDROOMS, RC_COMMUTE, RC_SCHOOL, RC_AMENITIES, RC_VALUE, RC__COUNT
} rec_criterion_t;

extern const char *const rec_criterion_names[RC__COUNT]; /* "budget", "bedrooms", ... */
extern const int rec_weights[RC__COUNT];                 /* relative weights (they sum to 100) */

typedef struct rec_score {
    unsigned applies;           /* 1u << criterion, for each criterion that counts */
    int milli[RC__COUNT];       /* each criterion's score in thousandths, 0..1000 */
    int score;                  /* the weighted mean, in thousandths */
    int64_t predicted_cents;    /* the model's estimate; 0: none */
    int amenities_have;         /* wanted amenities the home has */
} rec_score_t;

/* The hard constraints that can be checked on the row (status active, price <= budget, bedrooms
 * >= min_bedrooms); the location text is matched by the store's search, as GET /api/properties
 * matches it. */
bool rec_passes(const rec_prefs_t *p, const property_t *h);
/* What the scores read of a home, in a compact form (the in-process snapshot of
 * api/recommendations.c keeps homes so): rec_score(p, h, ...) is rec_score_home(p, rec_home_of(p, h), ...). */
typedef struct rec_home {
    int64_t price_cents;
    int bedrooms;
    bool has_commute, has_school;
    int commute_time;
    double school_rating;
    int amenities_have; /* how many of p's wanted amenities the home has */
} rec_home_t;
void rec_home_of(const rec_prefs_t *p, const property_t *h, rec_home_t *out);
void rec_score_home(const rec_prefs_t *p, const rec_home_t *h, int64_t predicted_cents, rec_score_t *out);

/* Scores `h`. predicted_cents <= 0: the model has no estimate (value is neutral, 0.5). */
void rec_score(const rec_prefs_t *p, const property_t *h, int64_t predicted_cents, rec_score_t *out);
/* The highest score `h` can reach whatever the model says (value at its best): a home whose bound
 * is below the worst of the best N so far need not be priced. */
int rec_score_bound(const rec_prefs_t *p, const property_t *h);
/* The ranking: score descending, then price ascending, then id ascending (<0: a before b). */
int rec_compare(const rec_score_t *sa, const property_t *a, const rec_score_t *sb, const property_t *b);

/* The reasons for a score, one per criterion that applies, in criterion order, each derived from
 * the numbers the breakdown was computed from ("$12,400 under your budget", "4 of 5 wanted
 * amenities", "priced 8% below its estimated value", ...). Strings live in `a`; returns how many
 * (at most RC__COUNT). */
int rec_reasons(const rec_prefs_t *p, const property_t *h, const rec_score_t *s, arena_t *a, const char **out);

/* "$12,400" or "$12,400.50": whole dollars with thousands separators, cents only when not zero. */
void rec_format_dollars(int64_t cents, char *out, size_t outlen);

#endif
