/* property: the listing, the heart of the catalogue. This module owns what a valid property is
 * (field types, ranges, enums), how it reads from a JSON body and how it is written as JSON; the
 * store only persists what this module has accepted.
 *
 * Optional numeric fields carry a bit in `set` (PF_*); optional strings are NULL when absent.
 * Strings and arrays of a property read from a request or the store live in that request's arena. */
#ifndef HEARTH_PROPERTY_H
#define HEARTH_PROPERTY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/error.h"
#include "../base/jw.h"

typedef enum property_field {
    PF_TITLE, PF_DESCRIPTION, PF_PRICE, PF_LOCATION, PF_CITY, PF_STATE, PF_ZIP,
    PF_LATITUDE, PF_LONGITUDE, PF_BEDROOMS, PF_BATHROOMS, PF_SIZE_SQFT, PF_LOT_SIZE_SQFT,
    PF_YEAR_BUILT, PF_AMENITIES, PF_IMAGE_URLS, PF_SCHOOL_RATING, PF_COMMUTE_TIME,
    PF_PROPERTY_TYPE, PF_STATUS, PF_FEATURES, PF_SOURCE, PF_EXTERNAL_ID,
    PF__COUNT
} property_field_t;

#define PF_BIT(f) (1ull << (f))
/* fields a new property must have */
#define PF_REQUIRED (PF_BIT(PF_TITLE) | PF_BIT(PF_PRICE) | PF_BIT(PF_LOCATION) | PF_BIT(PF_BEDROOMS) | \
                     PF_BIT(PF_BATHROOMS) | PF_BIT(PF_SIZE_SQFT))

typedef struct property {
    int64_t id;
    uint64_t set; /* PF_BIT(f) for every field that has a value (not null) */
    const char *title, *description, *location, *city, *state, *zip;
    int64_t price_cents;
    double latitude, longitude;
    int bedrooms;
    double bathrooms; /* halves allowed: full + half/2 */
    int size_sqft, lot_size_sqft, year_built, commute_time;
    double school_rating;
    const char **amenities;
    int namenities;
    const char **image_urls;
    int nimage_urls;
    const char *property_type, *status;
    const char *features; /* JSON object text, or NULL */
    const char *source, *external_id;
    int64_t owner_id; /* 0: none */
    int64_t version;
    int64_t created_at, updated_at; /* unix microseconds */
} property_t;

extern const char *const property_field_names[PF__COUNT];
extern const char *const property_types[];    /* NULL-terminated */
extern const char *const property_statuses[]; /* NULL-terminated */

void property_init(property_t *p);
/* Read fields present in `obj` into `p` (strings copied into `a`), setting `*present` to the
 * fields named in the body (null included). Type errors and unknown fields become details in `e`.
 * Read-only fields (id, version, owner_id, created_at, updated_at) are ignored. */
bool property_from_json(json_t *obj, property_t *p, uint64_t *present, arena_t *a, err_t *e);
/* Check every rule on the fields in `present`: ranges, lengths, enums; `creating` also requires
 * PF_REQUIRED and fills defaults (property_type, status). Adds details to `e`. */
bool property_check(property_t *p, uint64_t present, bool creating, err_t *e);
/* Apply `changes` (fields in `present`) onto `p`. */
void property_merge(property_t *p, const property_t *changes, uint64_t present);
/* Normalise one amenity into a slug ("Central Air" -> "central_air"); false if nothing remains. */
bool amenity_slug(const char *in, char *out, size_t outlen);

/* `with_features` false leaves the `features` key out (list items: the bulk of a row, read it with
 * GET /api/properties/{id}). */
void property_write_json(jw_t *w, const property_t *p, bool with_features);
bool enum_valid(const char *const *values, const char *v);

/* Search ---------------------------------------------------------------------------------------*/

typedef enum property_sort {
    SORT_CREATED_AT, SORT_PRICE, SORT_SIZE_SQFT, SORT_BEDROOMS, SORT_YEAR_BUILT, SORT__COUNT
} property_sort_t;

extern const char *const property_sort_names[SORT__COUNT];

#define QUERY_MAX_AMENITIES 16
#define QUERY_MAX_TYPES 8

typedef struct property_query {
    uint64_t set; /* QF_BIT(f) for each filter given */
    int64_t min_price, max_price;
    int min_bedrooms, min_size_sqft, max_size_sqft, max_commute_time;
    double min_bathrooms, min_school_rating;
    const char *city, *location, *q, *status;
    const char *types[QUERY_MAX_TYPES];
    int ntypes;
    const char *amenities[QUERY_MAX_AMENITIES];
    int namenities;
    property_sort_t sort;
    bool desc;
    int limit;
    bool has_cursor;
    int64_t cursor_value, cursor_id; /* the sort value and id of the last row of the previous page */
} property_query_t;

enum {
    QF_MIN_PRICE, QF_MAX_PRICE, QF_MIN_BEDROOMS, QF_MIN_BATHROOMS, QF_MIN_SIZE, QF_MAX_SIZE,
    QF_CITY, QF_LOCATION, QF_TYPE, QF_AMENITIES, QF_MAX_COMMUTE, QF_MIN_SCHOOL, QF_Q, QF_STATUS
};
#define QF_BIT(f) (1ull << (f))

typedef struct property_page {
    property_t *items;
    int n;
    bool has_more;
} property_page_t;

/* The value a row sorts by (year_built: nulls last in both directions). */
int64_t property_sort_value(const property_t *p, property_sort_t sort, bool desc);
/* Opaque keyset cursor: encodes sort key, direction, value and id. */
void property_cursor_encode(const property_query_t *q, const property_t *last, char *out, size_t outlen);
bool property_cursor_decode(property_query_t *q, const char *s);

#endif
