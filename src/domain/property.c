/* property: what a valid listing is, how it is read from JSON and written as JSON.
 *
 * Reading is two steps so the importer can share the rules: property_from_json() checks JSON types
 * and copies values, property_check() checks ranges and enums. Both collect every problem as a
 * per-field detail, so one 422 tells the client everything that is wrong at once. */
#include "property.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../base/util.h"

const char *const property_field_names[PF__COUNT] = {
    [PF_TITLE] = "title", [PF_DESCRIPTION] = "description", [PF_PRICE] = "price",
    [PF_LOCATION] = "location", [PF_CITY] = "city", [PF_STATE] = "state", [PF_ZIP] = "zip",
    [PF_LATITUDE] = "latitude", [PF_LONGITUDE] = "longitude", [PF_BEDROOMS] = "bedrooms",
    [PF_BATHROOMS] = "bathrooms", [PF_SIZE_SQFT] = "size_sqft", [PF_LOT_SIZE_SQFT] = "lot_size_sqft",
    [PF_YEAR_BUILT] = "year_built", [PF_AMENITIES] = "amenities", [PF_IMAGE_URLS] = "image_urls",
    [PF_SCHOOL_RATING] = "school_rating", [PF_COMMUTE_TIME] = "commute_time",
    [PF_PROPERTY_TYPE] = "property_type", [PF_STATUS] = "status", [PF_FEATURES] = "features",
    [PF_SOURCE] = "source", [PF_EXTERNAL_ID] = "external_id",
};

const char *const property_types[] = {"single_family", "condo", "townhouse", "multi_family", "land", "other", NULL};
const char *const property_statuses[] = {"active", "pending", "sold", "off_market", NULL};
const char *const property_sort_names[SORT__COUNT] = {
    [SORT_CREATED_AT] = "created_at", [SORT_PRICE] = "price", [SORT_SIZE_SQFT] = "size_sqft",
    [SORT_BEDROOMS] = "bedrooms", [SORT_YEAR_BUILT] = "year_built",
};

#define MAX_LIST 50        /* amenities, image_urls */
#define MAX_FEATURES 65536 /* bytes of the features object as JSON */

void property_init(property_t *p) { memset(p, 0, sizeof *p); }

bool enum_valid(const char *const *values, const char *v)
{
    for (; *values; values++)
        if (strcmp(*values, v) == 0)
            return true;
    return false;
}

bool amenity_slug(const char *in, char *out, size_t outlen)
{
    size_t j = 0;
    bool sep = false;
    for (const unsigned char *s = (const unsigned char *)in; *s && j + 1 < outlen; s++) {
        if (isalnum(*s)) {
            if (sep && j > 0)
                out[j++] = '_';
            sep = false;
            if (j + 1 < outlen)
                out[j++] = (char)tolower(*s);
        } else {
            sep = true;
        }
    }
    out[j] = '\0';
    return j > 0;
}

static const char *read_string(json_t *v, const char *field, arena_t *a, err_t *e)
{
    if (!json_is_string(v)) {
        err_field(e, field, "must be a string");
        return NULL;
    }
    return arena_strndup(a, json_string_value(v), json_string_length(v));
}

static bool read_int(json_t *v, const char *field, int *out, err_t *e)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < -2000000000 || x > 2000000000) {
            err_field(e, field, "is out of range");
            return false;
        }
        *out = (int)x;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 2e9) {
            *out = (int)d;
            return true;
        }
    }
    err_field(e, field, "must be an integer");
    return false;
}

static bool read_number(json_t *v, const char *field, double *out, err_t *e)
{
    if (!json_is_number(v)) {
        err_field(e, field, "must be a number");
        return false;
    }
    *out = json_number_value(v);
    return true;
}

static const char **read_string_list(json_t *v, const char *field, bool slug, int *count, arena_t *a, err_t *e)
{
    if (!json_is_array(v)) {
        err_field(e, field, "must be an array of strings");
        return NULL;
    }
    size_t n = json_array_size(v);
    if (n > MAX_LIST) {
        err_field(e, field, "must have at most %d items", MAX_LIST);
        return NULL;
    }
    const char **out = arena_alloc(a, (n ? n : 1) * sizeof *out);
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(v, i);
        if (!json_is_string(it)) {
            err_field(e, field, "must be an array of strings");
            return NULL;
        }
        const char *s = json_string_value(it);
        if (slug) {
            char tmp[64];
            if (json_string_length(it) > 60 || !amenity_slug(s, tmp, sizeof tmp)) {
                err_field(e, field, "items must be names of 1 to 60 letters, digits or spaces");
                return NULL;
            }
            bool dup = false;
            for (int j = 0; j < k; j++)
                dup |= strcmp(out[j], tmp) == 0;
            if (!dup)
                out[k++] = arena_strdup(a, tmp);
        } else {
            out[k++] = arena_strndup(a, s, json_string_length(it));
        }
    }
    *count = k;
    return out;
}

bool property_from_json(json_t *obj, property_t *p, uint64_t *present, arena_t *a, err_t *e)
{
    if (!json_is_object(obj)) {
        err_set(e, ERR_VALIDATION, "the body must be a JSON object");
        return false;
    }
    const char *key;
    json_t *v;
    *present = 0;
    json_object_foreach(obj, key, v)
    {
        int f;
        for (f = 0; f < PF__COUNT; f++)
            if (strcmp(key, property_field_names[f]) == 0)
                break;
        if (f == PF__COUNT) {
            if (strcmp(key, "id") && strcmp(key, "version") && strcmp(key, "owner_id") &&
                strcmp(key, "created_at") && strcmp(key, "updated_at"))
                err_field(e, key, "is not a property field");
            continue;
        }
        *present |= PF_BIT(f);
        if (json_is_null(v))
            continue; /* null: the field is cleared (or missing, for a required one) */
        bool ok = true;
        switch ((property_field_t)f) {
        case PF_TITLE: ok = (p->title = read_string(v, key, a, e)) != NULL; break;
        case PF_DESCRIPTION: ok = (p->description = read_string(v, key, a, e)) != NULL; break;
        case PF_LOCATION: ok = (p->location = read_string(v, key, a, e)) != NULL; break;
        case PF_CITY: ok = (p->city = read_string(v, key, a, e)) != NULL; break;
        case PF_STATE: ok = (p->state = read_string(v, key, a, e)) != NULL; break;
        case PF_ZIP: ok = (p->zip = read_string(v, key, a, e)) != NULL; break;
        case PF_PROPERTY_TYPE: ok = (p->property_type = read_string(v, key, a, e)) != NULL; break;
        case PF_STATUS: ok = (p->status = read_string(v, key, a, e)) != NULL; break;
        case PF_SOURCE: ok = (p->source = read_string(v, key, a, e)) != NULL; break;
        case PF_EXTERNAL_ID: ok = (p->external_id = read_string(v, key, a, e)) != NULL; break;
        case PF_PRICE: {
            if (!json_is_number(v)) {
                err_field(e, key, "must be a number of dollars");
                ok = false;
                break;
            }
            int r = json_is_integer(v) ? (json_integer_value(v) > MONEY_MAX_CENTS / 100 ||
                                                  json_integer_value(v) < -MONEY_MAX_CENTS / 100
                                              ? -2
                                              : (p->price_cents = (int64_t)json_integer_value(v) * 100, 0))
                                       : money_from_double(json_real_value(v), &p->price_cents);
            if (r != 0) {
                err_field(e, key, r == -2 ? "must have at most two decimals and be at most 1000000000000"
                                          : "must be a number of dollars");
                ok = false;
            }
            break;
        }
        case PF_LATITUDE: ok = read_number(v, key, &p->latitude, e); break;
        case PF_LONGITUDE: ok = read_number(v, key, &p->longitude, e); break;
        case PF_BATHROOMS: ok = read_number(v, key, &p->bathrooms, e); break;
        case PF_SCHOOL_RATING: ok = read_number(v, key, &p->school_rating, e); break;
        case PF_BEDROOMS: ok = read_int(v, key, &p->bedrooms, e); break;
        case PF_SIZE_SQFT: ok = read_int(v, key, &p->size_sqft, e); break;
        case PF_LOT_SIZE_SQFT: ok = read_int(v, key, &p->lot_size_sqft, e); break;
        case PF_YEAR_BUILT: ok = read_int(v, key, &p->year_built, e); break;
        case PF_COMMUTE_TIME: ok = read_int(v, key, &p->commute_time, e); break;
        case PF_AMENITIES: ok = (p->amenities = read_string_list(v, key, true, &p->namenities, a, e)) != NULL; break;
        case PF_IMAGE_URLS: ok = (p->image_urls = read_string_list(v, key, false, &p->nimage_urls, a, e)) != NULL; break;
        case PF_FEATURES:
            if (!json_is_object(v)) {
                err_field(e, key, "must be an object");
                ok = false;
            } else {
                char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
                if (!s || strlen(s) > MAX_FEATURES) {
                    err_field(e, key, "must be at most %d bytes of JSON", MAX_FEATURES);
                    ok = false;
                } else {
                    p->features = arena_strdup(a, s);
                }
                free(s);
            }
            break;
        case PF__COUNT: break;
        }
        if (ok)
            p->set |= PF_BIT(f);
    }
    return e->code == ERR_NONE;
}

static void check_text(err_t *e, const char *field, const char *s, size_t min, size_t max)
{
    size_t n = strlen(s);
    if (n < min || n > max) {
        if (min)
            err_field(e, field, "must be %zu to %zu bytes long", min, max);
        else
            err_field(e, field, "must be at most %zu bytes long", max);
        return;
    }
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c < 0x20 && *c != '\n' && *c != '\t' && *c != '\r') {
            err_field(e, field, "must not contain control characters");
            return;
        }
}

static bool is_http_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) && strlen(s) <= 2048 &&
           !strpbrk(s, " \t\r\n\"<>");
}

static bool has_detail(const err_t *e, property_field_t f)
{
    for (int i = 0; i < e->ndetails; i++)
        if (strcmp(e->details[i].field, property_field_names[f]) == 0)
            return true;
    return false;
}

bool property_check(property_t *p, uint64_t present, bool creating, err_t *e)
{
    int before = e->ndetails;
    if (creating) {
        for (int f = 0; f < PF__COUNT; f++)
            if ((PF_REQUIRED & PF_BIT(f)) && !(p->set & PF_BIT(f)) && !(present & PF_BIT(f)))
                err_field(e, property_field_names[f], "is required");
            else if ((PF_REQUIRED & PF_BIT(f)) && !(p->set & PF_BIT(f)) && (present & PF_BIT(f)) && !has_detail(e, f))
                err_field(e, property_field_names[f], "may not be null");
        if (!(p->set & PF_BIT(PF_PROPERTY_TYPE)))
            p->property_type = "single_family", p->set |= PF_BIT(PF_PROPERTY_TYPE);
        if (!(p->set & PF_BIT(PF_STATUS)))
            p->status = "active", p->set |= PF_BIT(PF_STATUS);
        present |= PF_REQUIRED;
    } else {
        /* a PATCH may not null a required field */
        for (int f = 0; f < PF__COUNT; f++)
            if ((present & PF_BIT(f)) && !(p->set & PF_BIT(f)) &&
                ((PF_REQUIRED | PF_BIT(PF_PROPERTY_TYPE) | PF_BIT(PF_STATUS)) & PF_BIT(f)))
                err_field(e, property_field_names[f], "may not be null");
    }
#define HAS(f) ((present & PF_BIT(f)) && (p->set & PF_BIT(f)))
    int year = 0;
    {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        year = tm.tm_year + 1900;
    }
    if (HAS(PF_TITLE))
        check_text(e, "title", p->title, 1, 200);
    if (HAS(PF_DESCRIPTION))
        check_text(e, "description", p->description, 0, 5000);
    if (HAS(PF_LOCATION))
        check_text(e, "location", p->location, 1, 255);
    if (HAS(PF_CITY))
        check_text(e, "city", p->city, 1, 100);
    if (HAS(PF_STATE))
        check_text(e, "state", p->state, 1, 50);
    if (HAS(PF_ZIP))
        check_text(e, "zip", p->zip, 1, 20);
    if (HAS(PF_SOURCE))
        check_text(e, "source", p->source, 1, 64);
    if (HAS(PF_EXTERNAL_ID))
        check_text(e, "external_id", p->external_id, 1, 128);
    if (HAS(PF_PRICE) && p->price_cents <= 0)
        err_field(e, "price", "must be > 0");
    if (HAS(PF_BEDROOMS) && (p->bedrooms < 0 || p->bedrooms > 100))
        err_field(e, "bedrooms", "must be from 0 to 100");
    if (HAS(PF_BATHROOMS) && (!(p->bathrooms >= 0 && p->bathrooms <= 100) || p->bathrooms * 2 != floor(p->bathrooms * 2)))
        err_field(e, "bathrooms", "must be from 0 to 100 in steps of 0.5");
    if (HAS(PF_SIZE_SQFT) && (p->size_sqft <= 0 || p->size_sqft > 1000000))
        err_field(e, "size_sqft", "must be > 0 and at most 1000000");
    if (HAS(PF_LOT_SIZE_SQFT) && (p->lot_size_sqft < 0 || p->lot_size_sqft > 1000000000))
        err_field(e, "lot_size_sqft", "must be from 0 to 1000000000");
    if (HAS(PF_YEAR_BUILT) && (p->year_built < 1600 || p->year_built > year + 5))
        err_field(e, "year_built", "must be from 1600 to %d", year + 5);
    if (HAS(PF_COMMUTE_TIME) && (p->commute_time < 0 || p->commute_time > 1440))
        err_field(e, "commute_time", "must be from 0 to 1440 minutes");
    if (HAS(PF_SCHOOL_RATING) && (!(p->school_rating >= 0 && p->school_rating <= 10) ||
                                  fabs(p->school_rating * 10 - round(p->school_rating * 10)) > 1e-9))
        err_field(e, "school_rating", "must be from 0 to 10 with at most one decimal");
    if (HAS(PF_LATITUDE) && !(p->latitude >= -90 && p->latitude <= 90))
        err_field(e, "latitude", "must be from -90 to 90");
    if (HAS(PF_LONGITUDE) && !(p->longitude >= -180 && p->longitude <= 180))
        err_field(e, "longitude", "must be from -180 to 180");
    if (HAS(PF_PROPERTY_TYPE) && !enum_valid(property_types, p->property_type))
        err_field(e, "property_type", "must be one of single_family, condo, townhouse, multi_family, land, other");
    if (HAS(PF_STATUS) && !enum_valid(property_statuses, p->status))
        err_field(e, "status", "must be one of active, pending, sold, off_market");
    if (HAS(PF_IMAGE_URLS))
        for (int i = 0; i < p->nimage_urls; i++)
            if (!is_http_url(p->image_urls[i])) {
                err_field(e, "image_urls", "items must be http or https URLs");
                break;
            }
#undef HAS
    bool has_source = p->set & PF_BIT(PF_SOURCE), has_ext = p->set & PF_BIT(PF_EXTERNAL_ID);
    if (has_source != has_ext)
        err_field(e, (p->set & PF_BIT(PF_SOURCE)) ? "external_id" : "source", "is required with %s",
                  (p->set & PF_BIT(PF_SOURCE)) ? "source" : "external_id");
    return e->ndetails == before && e->code == ERR_NONE;
}

void property_merge(property_t *p, const property_t *c, uint64_t present)
{
    for (int f = 0; f < PF__COUNT; f++) {
        if (!(present & PF_BIT(f)))
            continue;
        uint64_t bit = PF_BIT(f);
        p->set = (p->set & ~bit) | (c->set & bit);
        switch ((property_field_t)f) {
        case PF_TITLE: p->title = c->title; break;
        case PF_DESCRIPTION: p->description = c->description; break;
        case PF_PRICE: p->price_cents = c->price_cents; break;
        case PF_LOCATION: p->location = c->location; break;
        case PF_CITY: p->city = c->city; break;
        case PF_STATE: p->state = c->state; break;
        case PF_ZIP: p->zip = c->zip; break;
        case PF_LATITUDE: p->latitude = c->latitude; break;
        case PF_LONGITUDE: p->longitude = c->longitude; break;
        case PF_BEDROOMS: p->bedrooms = c->bedrooms; break;
        case PF_BATHROOMS: p->bathrooms = c->bathrooms; break;
        case PF_SIZE_SQFT: p->size_sqft = c->size_sqft; break;
        case PF_LOT_SIZE_SQFT: p->lot_size_sqft = c->lot_size_sqft; break;
        case PF_YEAR_BUILT: p->year_built = c->year_built; break;
        case PF_AMENITIES: p->amenities = c->amenities, p->namenities = c->namenities; break;
        case PF_IMAGE_URLS: p->image_urls = c->image_urls, p->nimage_urls = c->nimage_urls; break;
        case PF_SCHOOL_RATING: p->school_rating = c->school_rating; break;
        case PF_COMMUTE_TIME: p->commute_time = c->commute_time; break;
        case PF_PROPERTY_TYPE: p->property_type = c->property_type; break;
        case PF_STATUS: p->status = c->status; break;
        case PF_FEATURES: p->features = c->features; break;
        case PF_SOURCE: p->source = c->source; break;
        case PF_EXTERNAL_ID: p->external_id = c->external_id; break;
        case PF__COUNT: break;
        }
        if (!(c->set & bit)) {
            /* cleared: drop the list contents too */
            if (f == PF_AMENITIES)
                p->amenities = NULL, p->namenities = 0;
            if (f == PF_IMAGE_URLS)
                p->image_urls = NULL, p->nimage_urls = 0;
        }
    }
}

static void kstr_opt(jw_t *w, const char *key, const property_t *p, property_field_t f, const char *v)
{
    jw_key(w, key);
    if (p->set & PF_BIT(f))
        jw_str(w, v);
    else
        jw_null(w);
}

static void kint_opt(jw_t *w, const char *key, const property_t *p, property_field_t f, int64_t v)
{
    jw_key(w, key);
    if (p->set & PF_BIT(f))
        jw_int(w, v);
    else
        jw_null(w);
}

static void knum_opt(jw_t *w, const char *key, const property_t *p, property_field_t f, double v)
{
    jw_key(w, key);
    if (p->set & PF_BIT(f))
        jw_double(w, v);
    else
        jw_null(w);
}

static void klist(jw_t *w, const char *key, const char **items, int n)
{
    jw_key(w, key);
    jw_arr_begin(w);
    for (int i = 0; i < n; i++)
        jw_str(w, items[i]);
    jw_arr_end(w);
}

void property_write_json(jw_t *w, const property_t *p, bool with_features)
{
    jw_obj_begin(w);
    jw_kint(w, "id", p->id);
    jw_kstr(w, "title", p->title);
    kstr_opt(w, "description", p, PF_DESCRIPTION, p->description);
    jw_key(w, "price");
    jw_money(w, p->price_cents);
    jw_kstr(w, "location", p->location);
    kstr_opt(w, "city", p, PF_CITY, p->city);
    kstr_opt(w, "state", p, PF_STATE, p->state);
    kstr_opt(w, "zip", p, PF_ZIP, p->zip);
    knum_opt(w, "latitude", p, PF_LATITUDE, p->latitude);
    knum_opt(w, "longitude", p, PF_LONGITUDE, p->longitude);
    jw_kint(w, "bedrooms", p->bedrooms);
    jw_key(w, "bathrooms");
    jw_double(w, p->bathrooms);
    jw_kint(w, "size_sqft", p->size_sqft);
    kint_opt(w, "lot_size_sqft", p, PF_LOT_SIZE_SQFT, p->lot_size_sqft);
    kint_opt(w, "year_built", p, PF_YEAR_BUILT, p->year_built);
    klist(w, "amenities", p->amenities, p->namenities);
    klist(w, "image_urls", p->image_urls, p->nimage_urls);
    knum_opt(w, "school_rating", p, PF_SCHOOL_RATING, p->school_rating);
    kint_opt(w, "commute_time", p, PF_COMMUTE_TIME, p->commute_time);
    jw_kstr(w, "property_type", p->property_type);
    jw_kstr(w, "status", p->status);
    if (with_features) {
        jw_key(w, "features");
        if (p->features)
            jw_raw(w, p->features, strlen(p->features));
        else
            jw_null(w);
    }
    kstr_opt(w, "source", p, PF_SOURCE, p->source);
    kstr_opt(w, "external_id", p, PF_EXTERNAL_ID, p->external_id);
    jw_key(w, "owner_id");
    if (p->owner_id)
        jw_int(w, p->owner_id);
    else
        jw_null(w);
    jw_kint(w, "version", p->version);
    jw_key(w, "created_at");
    jw_time(w, p->created_at);
    jw_key(w, "updated_at");
    jw_time(w, p->updated_at);
    jw_obj_end(w);
}

int64_t property_sort_value(const property_t *p, property_sort_t sort, bool desc)
{
    switch (sort) {
    case SORT_PRICE: return p->price_cents;
    case SORT_SIZE_SQFT: return p->size_sqft;
    case SORT_BEDROOMS: return p->bedrooms;
    case SORT_YEAR_BUILT:
        if (!(p->set & PF_BIT(PF_YEAR_BUILT)))
            return desc ? -1 : 99999; /* nulls last either way; matches the store's index expressions */
        return p->year_built;
    case SORT_CREATED_AT:
    default: return p->created_at;
    }
}

void property_cursor_encode(const property_query_t *q, const property_t *last, char *out, size_t outlen)
{
    char raw[96];
    int n = snprintf(raw, sizeof raw, "v1|%s|%c|%lld|%lld", property_sort_names[q->sort], q->desc ? 'd' : 'a',
                     (long long)property_sort_value(last, q->sort, q->desc), (long long)last->id);
    if (outlen < (size_t)(n / 3 + 1) * 4 + 1) {
        out[0] = '\0';
        return;
    }
    b64url_encode(raw, (size_t)n, out);
}

bool property_cursor_decode(property_query_t *q, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 120)
        return false;
    char raw[100];
    long m = b64url_decode(s, n, raw);
    if (m <= 0 || m >= (long)sizeof raw)
        return false;
    raw[m] = '\0';
    /* v1|KEY|a-or-d|VALUE|ID, the numbers strictly (an out-of-range one is refused, not clamped) */
    if (strlen(raw) != (size_t)m)
        return false; /* an embedded NUL */
    char *part[5], *t = raw;
    for (int i = 0; i < 5; i++) {
        part[i] = t;
        char *bar = strchr(t, '|');
        if (i == 4 && bar)
            return false; /* more than five parts */
        if (i < 4) {
            if (!bar)
                return false;
            *bar = '\0';
            t = bar + 1;
        }
    }
    int64_t value, id;
    if (strcmp(part[0], "v1") != 0 || strlen(part[2]) != 1 || !parse_i64(part[3], &value) || !parse_i64(part[4], &id))
        return false;
    char dir = part[2][0];
    if (strcmp(part[1], property_sort_names[q->sort]) != 0 || dir != (q->desc ? 'd' : 'a') || id <= 0)
        return false;
    q->has_cursor = true;
    q->cursor_value = value;
    q->cursor_id = id;
    return true;
}
