/* import: data files -> property rows -> property_upsert_batch; see import.h.
 *
 * The one idea: each format only maps one row into a property_t (strings in the importer's
 * arena); everything after that is shared: property_check (the same rules as an API create), a
 * batch of IMPORT_BATCH rows upserted in one transaction keyed by (source, external_id), then the
 * arena is reset. Every derived field is documented next to its code and in docs/data.md. */
#include "import.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "../base/embed.h"
#include "../base/jw.h"
#include "../base/util.h"
#include "csv.h"
#include "property.h"

#define IMPORT_ACQUIRE_MS 10000

typedef struct importer {
    store_t *s;
    const char *source_name; /* NULL: the format's default */
    int64_t owner_id;
    const import_progress_t *progress; /* may be NULL */
    import_report_t *rep;
    arena_t arena; /* the strings of the rows in the current batch; reset after each batch */
    property_t *rows;
    int lines[IMPORT_BATCH]; /* the source line of each row in the batch */
    int nrows;
    upsert_result_t results[IMPORT_BATCH];
} importer_t;

/* Report helpers -------------------------------------------------------------------------------*/

void import_report_init(import_report_t *rep) { memset(rep, 0, sizeof *rep); }

static void import_reject(importer_t *im, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void import_reject(importer_t *im, int line, const char *fmt, ...)
{
    import_report_t *rep = im->rep;
    rep->rejected++;
    if (rep->nrejections >= IMPORT_MAX_REJECTIONS)
        return;
    import_rejection_t *r = &rep->rejections[rep->nrejections++];
    r->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

/* "price: must be > 0; size_sqft: is required", or the error's message when it has no details. */
static void import_reject_err(importer_t *im, int line, const err_t *err)
{
    char msg[sizeof im->rep->rejections[0].message];
    size_t n = 0;
    msg[0] = '\0';
    if (err->ndetails == 0)
        snprintf(msg, sizeof msg, "%.*s", (int)sizeof msg - 1, err->message[0] ? err->message : "invalid row");
    for (int i = 0; i < err->ndetails && n < sizeof msg - 1; i++) {
        int w = snprintf(msg + n, sizeof msg - n, "%s%s: %s", i ? "; " : "", err->details[i].field,
                         err->details[i].message);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    import_reject(im, line, "%s", msg);
}

bool import_format_parse(const char *s, import_format_t *out)
{
    static const struct { const char *name; import_format_t f; } formats[] = {
        {"ames", IMPORT_AMES}, {"sacramento", IMPORT_SACRAMENTO}, {"json", IMPORT_JSON}};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (s && strcmp(s, formats[i].name) == 0) {
            *out = formats[i].f;
            return true;
        }
    return false;
}

const char *import_format_name(import_format_t f)
{
    switch (f) {
    case IMPORT_AMES: return "ames";
    case IMPORT_SACRAMENTO: return "sacramento";
    case IMPORT_JSON: return "json";
    }
    return "?";
}

/* Derivation: commute time ---------------------------------------------------------------------*/

int commute_minutes(double lat, double lon, double centre_lat, double centre_lon)
{
    const double R = 6371.0; /* mean Earth radius, km */
    const double rad = M_PI / 180.0;
    double dlat = (centre_lat - lat) * rad, dlon = (centre_lon - lon) * rad;
    double h = sin(dlat / 2) * sin(dlat / 2) + cos(lat * rad) * cos(centre_lat * rad) * sin(dlon / 2) * sin(dlon / 2);
    if (h > 1)
        h = 1;
    double km = 2 * R * asin(sqrt(h));
    /* 1.3: roads are longer than the straight line; 40 km/h: average urban driving speed;
     * +3: getting to the car and parking */
    return (int)lround(km * 1.3 / 40.0 * 60.0) + 3;
}

/* Batching -------------------------------------------------------------------------------------*/

static bool import_flush(importer_t *im, err_t *e)
{
    if (im->nrows == 0)
        return true;
    store_conn_t *c = im->s->ops->acquire(im->s, IMPORT_ACQUIRE_MS, e);
    if (!c)
        return false;
    bool ok = im->s->ops->property_upsert_batch(c, im->rows, im->nrows, im->results, e);
    im->s->ops->release(im->s, c);
    if (!ok)
        return false;
    for (int i = 0; i < im->nrows; i++) {
        switch (im->results[i]) {
        case UPSERT_INSERTED: im->rep->inserted++; break;
        case UPSERT_UPDATED: im->rep->updated++; break;
        case UPSERT_UNCHANGED: im->rep->unchanged++; break;
        case UPSERT_FOREIGN:
            import_reject(im, im->lines[i], "source %s, external_id %s belongs to a listing of another owner", im->rows[i].source,
                          im->rows[i].external_id);
            break;
        }
    }
    im->nrows = 0;
    arena_reset(&im->arena);
    const import_report_t *r = im->rep;
    if (im->progress && !im->progress->fn(im->progress->arg, r->inserted + r->updated + r->unchanged + r->rejected))
        return err_set(e, ERR_UNAVAILABLE, "stopped");
    return true;
}

/* Check one mapped row (present: the fields it names) and queue it; flushes a full batch. */
static bool import_add(importer_t *im, int line, property_t *p, uint64_t present, err_t *e)
{
    p->owner_id = im->owner_id;
    err_t err;
    err_clear(&err);
    if (!property_check(p, present, true, &err)) {
        import_reject_err(im, line, &err);
        return true;
    }
    im->lines[im->nrows] = line;
    im->rows[im->nrows++] = *p;
    if (im->nrows == IMPORT_BATCH)
        return import_flush(im, e);
    return true;
}

/* CSV helpers ----------------------------------------------------------------------------------*/

/* A column's value as a number: a row error (message in `why`) when it is not one. */
static bool col_f64(const csv_t *c, int col, const char *name, double *out, char *why, size_t whylen)
{
    if (parse_f64(c->fields[col], out))
        return true;
    snprintf(why, whylen, "%s: \"%.40s\" is not a number", name, c->fields[col]);
    return false;
}

static bool col_int(const csv_t *c, int col, const char *name, int *out, char *why, size_t whylen)
{
    double v;
    if (!parse_f64(c->fields[col], &v) || v != floor(v) || v < -2147483648.0 || v > 2147483647.0) {
        snprintf(why, whylen, "%s: \"%.40s\" is not a whole number", name, c->fields[col]);
        return false;
    }
    *out = (int)v;
    return true;
}

static bool col_money(const csv_t *c, int col, const char *name, int64_t *cents, char *why, size_t whylen)
{
    if (money_parse(c->fields[col], cents) == 0)
        return true;
    snprintf(why, whylen, "%s: \"%.40s\" is not an amount of dollars", name, c->fields[col]);
    return false;
}

/* Is s (the whole of it) a number in JSON's grammar? Then it can be written into JSON verbatim. */
static bool json_number_text(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (isdigit((unsigned char)*p))
        while (isdigit((unsigned char)*p))
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

/* Derivation: features = the raw CSV row as a JSON object, column name -> value. An unquoted value
 * that is a JSON number is written as a number, an unquoted NA (R's missing value) as null, and
 * everything else (every quoted value) as a string. */
static const char *csv_row_json(importer_t *im, const csv_t *c, char **header, int nheader, buf_t *tmp)
{
    buf_reset(tmp);
    jw_t w;
    jw_init(&w, tmp);
    jw_obj_begin(&w);
    for (int i = 0; i < c->nfields && i < nheader; i++) {
        jw_key(&w, header[i]);
        if (!c->quoted[i] && json_number_text(c->fields[i]))
            jw_raw(&w, c->fields[i], c->lens[i]);
        else if (!c->quoted[i] && strcmp(c->fields[i], "NA") == 0)
            jw_null(&w);
        else
            jw_strn(&w, c->fields[i], c->lens[i]);
    }
    jw_obj_end(&w);
    return arena_strndup(&im->arena, tmp->data, tmp->len);
}

/* "North_Ames" -> "North Ames" (arena copy). */
static char *humanise(arena_t *a, const char *s)
{
    char *out = arena_strdup(a, s);
    for (char *p = out; *p; p++)
        if (*p == '_')
            *p = ' ';
    return out;
}

/* "EL_DORADO_HILLS" or "EL DORADO HILLS" -> "El Dorado Hills" (arena copy). */
static char *title_case(arena_t *a, const char *s)
{
    char *out = arena_strdup(a, s);
    bool start = true;
    for (char *p = out; *p; p++) {
        if (*p == '_' || *p == ' ' || *p == '-') {
            if (*p == '_')
                *p = ' ';
            start = true;
        } else {
            *p = (char)(start ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
            start = false;
        }
    }
    return out;
}

/* 31770 -> "31,770" */
static void thousands(char *out, size_t n, long v)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%ld", v < 0 ? -v : v);
    size_t len = strlen(digits), o = 0;
    if (v < 0 && o + 1 < n)
        out[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && o + 1 < n)
            out[o++] = ',';
        if (o + 1 < n)
            out[o++] = digits[i];
    }
    out[o] = '\0';
}

typedef bool (*row_mapper_t)(importer_t *im, const csv_t *c, const int *col, int rowno, property_t *p,
                             char *why, size_t whylen);

/* The CSV driver shared by ames and sacramento: header, then map, check and queue each row.
 * `rowno` is the 1-based data row number (the header is not counted): the external_id. */
static bool import_csv(importer_t *im, const char *data, size_t len, const char *const *colnames, int ncols,
                       row_mapper_t map, const char *source, err_t *e)
{
    csv_t c;
    csv_init(&c, data, len);
    buf_t tmp;
    buf_init(&tmp);
    arena_t hdr; /* the header's names, for the features object; lives for the whole import */
    arena_init(&hdr);
    char **header = NULL;
    int nheader = 0, col[32]; /* col[k]: the index of colnames[k] in the header */
    bool ok = false;
    if (ncols > (int)(sizeof col / sizeof col[0])) {
        err_set(e, ERR_INTERNAL, "too many columns for the CSV driver");
        goto done;
    }

    csv_status_t st = csv_next(&c, e);
    if (st != CSV_RECORD) {
        if (st == CSV_END)
            err_set(e, ERR_BAD_REQUEST, "the file is empty: expected a header row");
        goto done;
    }
    nheader = c.nfields;
    header = arena_alloc(&hdr, sizeof(char *) * (size_t)nheader);
    for (int i = 0; i < nheader; i++)
        header[i] = arena_strndup(&hdr, c.fields[i], c.lens[i]);
    for (int k = 0; k < ncols; k++)
        if ((col[k] = csv_find(&c, colnames[k])) < 0) {
            err_set(e, ERR_BAD_REQUEST, "line %d: the header has no column \"%s\"", c.line, colnames[k]);
            goto done;
        }

    int rowno = 0;
    for (;;) {
        err_t rowerr;
        err_clear(&rowerr);
        st = csv_next(&c, &rowerr);
        if (st == CSV_END)
            break;
        rowno++;
        if (st == CSV_FATAL) {
            *e = rowerr;
            goto done;
        }
        if (st == CSV_BAD) {
            import_reject(im, c.line, "%s", rowerr.message);
            continue;
        }
        if (c.nfields != nheader) {
            import_reject(im, c.line, "%d fields where the header has %d", c.nfields, nheader);
            continue;
        }
        property_t p;
        property_init(&p);
        char why[200];
        if (!map(im, &c, col, rowno, &p, why, sizeof why)) {
            import_reject(im, c.line, "%s", why);
            continue;
        }
        p.source = im->source_name ? im->source_name : source;
        p.external_id = arena_printf(&im->arena, "%d", rowno);
        p.features = csv_row_json(im, &c, header, nheader, &tmp);
        p.set |= PF_BIT(PF_SOURCE) | PF_BIT(PF_EXTERNAL_ID) | PF_BIT(PF_FEATURES);
        if (!import_add(im, c.line, &p, p.set, e))
            goto done;
    }
    ok = import_flush(im, e);
done:
    csv_free(&c);
    buf_free(&tmp);
    arena_free(&hdr);
    return ok;
}

/* Ames, Iowa ------------------------------------------------------------------------------------*/

enum {
    A_NEIGHBORHOOD, A_BLDG_TYPE, A_HOUSE_STYLE, A_OVERALL_COND, A_YEAR_BUILT, A_YEAR_REMOD, A_LOT_AREA,
    A_TOTAL_BSMT_SF, A_CENTRAL_AIR, A_GR_LIV_AREA, A_FULL_BATH, A_HALF_BATH, A_BEDROOM, A_FIREPLACES,
    A_GARAGE_CARS, A_WOOD_DECK, A_OPEN_PORCH, A_ENCLOSED_PORCH, A_THREE_SEASON, A_SCREEN_PORCH, A_POOL_AREA,
    A_YEAR_SOLD, A_SALE_PRICE, A_LONGITUDE, A_LATITUDE, A__COUNT
};
static const char *const ames_columns[A__COUNT] = {
    "Neighborhood", "Bldg_Type", "House_Style", "Overall_Cond", "Year_Built", "Year_Remod_Add", "Lot_Area",
    "Total_Bsmt_SF", "Central_Air", "Gr_Liv_Area", "Full_Bath", "Half_Bath", "Bedroom_AbvGr", "Fireplaces",
    "Garage_Cars", "Wood_Deck_SF", "Open_Porch_SF", "Enclosed_Porch", "Three_season_porch", "Screen_Porch",
    "Pool_Area", "Year_Sold", "Sale_Price", "Longitude", "Latitude"};

/* House_Style as words for the title. */
static const char *ames_style(arena_t *a, const char *style)
{
    static const struct { const char *code, *words; } styles[] = {
        {"One_Story", "One Story"},
        {"Two_Story", "Two Story"},
        {"One_and_Half_Fin", "1.5 Story"},
        {"One_and_Half_Unf", "1.5 Story (unfinished upper)"},
        {"Two_and_Half_Fin", "2.5 Story"},
        {"Two_and_Half_Unf", "2.5 Story (unfinished upper)"},
        {"SLvl", "Split Level"},
        {"SFoyer", "Split Foyer"},
    };
    for (size_t i = 0; i < sizeof styles / sizeof styles[0]; i++)
        if (strcmp(style, styles[i].code) == 0)
            return styles[i].words;
    return humanise(a, style);
}

/* Bldg_Type -> property_type; NULL when unknown (the row is rejected). */
static const char *ames_type(const char *bldg)
{
    if (strcmp(bldg, "OneFam") == 0)
        return "single_family";
    if (strcmp(bldg, "TwnhsE") == 0 || strcmp(bldg, "Twnhs") == 0)
        return "townhouse";
    if (strcmp(bldg, "Duplex") == 0 || strcmp(bldg, "TwoFmCon") == 0)
        return "multi_family";
    return NULL;
}

static bool ames_row(importer_t *im, const csv_t *c, const int *col, int rowno, property_t *p, char *why,
                     size_t whylen)
{
    (void)rowno;
    arena_t *a = &im->arena;
    int v[A__COUNT] = {0};
    /* the whole-number columns */
    static const int ints[] = {A_YEAR_BUILT, A_YEAR_REMOD, A_LOT_AREA, A_TOTAL_BSMT_SF, A_GR_LIV_AREA,
                               A_FULL_BATH, A_HALF_BATH, A_BEDROOM, A_FIREPLACES, A_GARAGE_CARS, A_WOOD_DECK,
                               A_OPEN_PORCH, A_ENCLOSED_PORCH, A_THREE_SEASON, A_SCREEN_PORCH, A_POOL_AREA,
                               A_YEAR_SOLD};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!col_int(c, col[ints[i]], ames_columns[ints[i]], &v[ints[i]], why, whylen))
            return false;
    if (!col_money(c, col[A_SALE_PRICE], "Sale_Price", &p->price_cents, why, whylen) ||
        !col_f64(c, col[A_LATITUDE], "Latitude", &p->latitude, why, whylen) ||
        !col_f64(c, col[A_LONGITUDE], "Longitude", &p->longitude, why, whylen))
        return false;
    const char *bldg = c->fields[col[A_BLDG_TYPE]];
    p->property_type = ames_type(bldg);
    if (!p->property_type) {
        snprintf(why, whylen, "Bldg_Type: \"%.40s\" is not a known building type", bldg);
        return false;
    }

    p->bedrooms = v[A_BEDROOM];                                 /* Bedroom_AbvGr */
    p->bathrooms = v[A_FULL_BATH] + v[A_HALF_BATH] / 2.0;       /* Full_Bath + Half_Bath/2 */
    p->size_sqft = v[A_GR_LIV_AREA];                            /* above-grade living area */
    p->lot_size_sqft = v[A_LOT_AREA];
    p->year_built = v[A_YEAR_BUILT];
    p->city = "Ames";
    p->state = "IA"; /* zip: none in the data */
    p->status = "active"; /* the sales are history; the demo catalogue lists them as active */
    p->commute_time = commute_minutes(p->latitude, p->longitude, IMPORT_AMES_CENTRE_LAT, IMPORT_AMES_CENTRE_LON);

    const char *hood = humanise(a, c->fields[col[A_NEIGHBORHOOD]]);
    p->location = arena_printf(a, "%s, Ames, IA", hood);
    const char *style = ames_style(a, c->fields[col[A_HOUSE_STYLE]]);
    p->title = p->bedrooms > 0 ? arena_printf(a, "%d-bed %s in %s", p->bedrooms, style, hood)
                               : arena_printf(a, "%s in %s", style, hood);

    /* amenities, each from the column that shows it */
    const char **am = arena_alloc(a, sizeof(char *) * 7);
    int n = 0;
    if (v[A_GARAGE_CARS] > 0)
        am[n++] = "garage";
    if (v[A_POOL_AREA] > 0)
        am[n++] = "pool";
    if (v[A_FIREPLACES] > 0)
        am[n++] = "fireplace";
    if (strcmp(c->fields[col[A_CENTRAL_AIR]], "Y") == 0)
        am[n++] = "central_air";
    if (v[A_WOOD_DECK] > 0)
        am[n++] = "deck";
    if (v[A_TOTAL_BSMT_SF] > 0)
        am[n++] = "basement";
    if (v[A_OPEN_PORCH] + v[A_ENCLOSED_PORCH] + v[A_THREE_SEASON] + v[A_SCREEN_PORCH] > 0)
        am[n++] = "porch";
    p->amenities = am;
    p->namenities = n;

    /* description: only what the columns say */
    char living[32], lot[32], garage[48], remod[40];
    thousands(living, sizeof living, v[A_GR_LIV_AREA]);
    thousands(lot, sizeof lot, v[A_LOT_AREA]);
    if (v[A_GARAGE_CARS] > 0)
        snprintf(garage, sizeof garage, ", with a %d-car garage", v[A_GARAGE_CARS]);
    else
        snprintf(garage, sizeof garage, ", with no garage");
    remod[0] = '\0';
    /* Year_Remod_Add equals Year_Built when there was no remodel; a one-year gap is common in the
     * data and most likely the year the build was finished, so it is not called a remodel */
    if (v[A_YEAR_REMOD] > v[A_YEAR_BUILT] + 1)
        snprintf(remod, sizeof remod, " (remodelled %d)", v[A_YEAR_REMOD]);
    char *cond = humanise(a, c->fields[col[A_OVERALL_COND]]);
    for (char *q = cond; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    p->description = arena_printf(a,
                                  "Built in %d%s, %s sq ft of living space on a %s sq ft lot%s. "
                                  "Overall condition: %s; last sold in %d.",
                                  v[A_YEAR_BUILT], remod, living, lot, garage, cond, v[A_YEAR_SOLD]);

    p->set |= PF_BIT(PF_TITLE) | PF_BIT(PF_DESCRIPTION) | PF_BIT(PF_PRICE) | PF_BIT(PF_LOCATION) |
              PF_BIT(PF_CITY) | PF_BIT(PF_STATE) | PF_BIT(PF_LATITUDE) | PF_BIT(PF_LONGITUDE) |
              PF_BIT(PF_BEDROOMS) | PF_BIT(PF_BATHROOMS) | PF_BIT(PF_SIZE_SQFT) | PF_BIT(PF_LOT_SIZE_SQFT) |
              PF_BIT(PF_YEAR_BUILT) | PF_BIT(PF_AMENITIES) | PF_BIT(PF_COMMUTE_TIME) |
              PF_BIT(PF_PROPERTY_TYPE) | PF_BIT(PF_STATUS);
    return true;
}

/* Sacramento, California ------------------------------------------------------------------------*/

enum { S_CITY, S_ZIP, S_BEDS, S_BATHS, S_SQFT, S_TYPE, S_PRICE, S_LATITUDE, S_LONGITUDE, S__COUNT };
static const char *const sacramento_columns[S__COUNT] = {"city", "zip", "beds", "baths", "sqft",
                                                         "type", "price", "latitude", "longitude"};

static bool sacramento_row(importer_t *im, const csv_t *c, const int *col, int rowno, property_t *p, char *why,
                           size_t whylen)
{
    (void)rowno;
    arena_t *a = &im->arena;
    if (!col_int(c, col[S_BEDS], "beds", &p->bedrooms, why, whylen) ||
        !col_f64(c, col[S_BATHS], "baths", &p->bathrooms, why, whylen) ||
        !col_int(c, col[S_SQFT], "sqft", &p->size_sqft, why, whylen) ||
        !col_money(c, col[S_PRICE], "price", &p->price_cents, why, whylen) ||
        !col_f64(c, col[S_LATITUDE], "latitude", &p->latitude, why, whylen) ||
        !col_f64(c, col[S_LONGITUDE], "longitude", &p->longitude, why, whylen))
        return false;

    /* type: Residential, Condo, Multi-Family (written Multi_Family in the R export) */
    const char *type = c->fields[col[S_TYPE]], *type_words, *noun;
    if (strcmp(type, "Residential") == 0)
        p->property_type = "single_family", type_words = "Residential", noun = "residential property";
    else if (strcmp(type, "Condo") == 0)
        p->property_type = "condo", type_words = "Condo", noun = "condo";
    else if (strcmp(type, "Multi-Family") == 0 || strcmp(type, "Multi_Family") == 0)
        p->property_type = "multi_family", type_words = "Multi-Family", noun = "multi-family property";
    else {
        snprintf(why, whylen, "type: \"%.40s\" is not Residential, Condo or Multi-Family", type);
        return false;
    }

    p->city = title_case(a, c->fields[col[S_CITY]]); /* "EL_DORADO_HILLS" -> "El Dorado Hills" */
    p->state = "CA";
    const char *zip = c->fields[col[S_ZIP]];
    if (zip[0] == 'z' || zip[0] == 'Z') /* "z95838" -> "95838" */
        zip++;
    if (*zip) {
        p->zip = arena_strdup(a, zip);
        p->set |= PF_BIT(PF_ZIP);
    }
    p->location = p->zip ? arena_printf(a, "%s, CA %s", p->city, p->zip) : arena_printf(a, "%s, CA", p->city);
    p->title = arena_printf(a, "%d-bed %s in %s", p->bedrooms, type_words, p->city);
    char sqft[32];
    thousands(sqft, sizeof sqft, p->size_sqft);
    p->description = arena_printf(a, "A %d-bed, %g-bath, %s sq ft %s in %s, from the Sacramento "
                                     "Bee's record of 2008 sales.",
                                  p->bedrooms, p->bathrooms, sqft, noun, p->city);
    p->status = "active";
    p->commute_time = commute_minutes(p->latitude, p->longitude, IMPORT_SACRAMENTO_CENTRE_LAT,
                                      IMPORT_SACRAMENTO_CENTRE_LON);
    p->amenities = NULL; /* the data says nothing about them */
    p->namenities = 0;
    p->set |= PF_BIT(PF_TITLE) | PF_BIT(PF_DESCRIPTION) | PF_BIT(PF_PRICE) | PF_BIT(PF_LOCATION) |
              PF_BIT(PF_CITY) | PF_BIT(PF_STATE) | PF_BIT(PF_LATITUDE) | PF_BIT(PF_LONGITUDE) |
              PF_BIT(PF_BEDROOMS) | PF_BIT(PF_BATHROOMS) | PF_BIT(PF_SIZE_SQFT) | PF_BIT(PF_COMMUTE_TIME) |
              PF_BIT(PF_PROPERTY_TYPE) | PF_BIT(PF_STATUS);
    return true;
}

/* JSON: an array of objects, or one object per line (NDJSON) ----------------------------------*/

static size_t skip_ws(const char *d, size_t len, size_t pos, int *line)
{
    while (pos < len && (d[pos] == ' ' || d[pos] == '\t' || d[pos] == '\r' || d[pos] == '\n')) {
        if (d[pos] == '\n')
            (*line)++;
        pos++;
    }
    return pos;
}

static void import_json_row(importer_t *im, json_t *v, int line, err_t *e, bool *fatal)
{
    if (!json_is_object(v)) {
        import_reject(im, line, "not a JSON object");
        return;
    }
    property_t p;
    property_init(&p);
    uint64_t present = 0;
    err_t err;
    err_clear(&err);
    if (!property_from_json(v, &p, &present, &im->arena, &err)) {
        import_reject_err(im, line, &err);
        return;
    }
    if (!(p.set & PF_BIT(PF_EXTERNAL_ID)) || !p.external_id) {
        import_reject(im, line, "external_id: is required for import (re-imports are matched by source and external_id)");
        return;
    }
    /* source: the row's own, else --source, else "json" */
    if (!(p.set & PF_BIT(PF_SOURCE)) || !p.source) {
        p.source = im->source_name ? im->source_name : "json";
        p.set |= PF_BIT(PF_SOURCE);
        present |= PF_BIT(PF_SOURCE);
    }
    if (!import_add(im, line, &p, present, e))
        *fatal = true;
}

static bool import_json(importer_t *im, const char *data, size_t len, err_t *e)
{
    int line = 1;
    size_t pos = skip_ws(data, len, 0, &line);
    if (pos < len && data[pos] != '[' && data[pos] != '{')
        return err_set(e, ERR_BAD_REQUEST, "line %d: not JSON: expected an array of objects or one object per line",
                       line);
    bool array = pos < len && data[pos] == '[';
    bool fatal = false;
    if (array)
        pos = skip_ws(data, len, pos + 1, &line);
    if (array && pos < len && data[pos] == ']') { /* [] */
        pos = skip_ws(data, len, pos + 1, &line);
        array = false;
        if (pos < len)
            return err_set(e, ERR_BAD_REQUEST, "line %d: text after the end of the array", line);
    }
    while (pos < len) {
        int row_line = line;
        json_error_t je;
        /* parse one value and stop after it; je.position is then the bytes read */
        json_t *v = json_loadb(data + pos, len - pos, JSON_DISABLE_EOF_CHECK, &je);
        if (!v) {
            int at = row_line + (je.line > 0 ? je.line - 1 : 0);
            if (array)
                return err_set(e, ERR_BAD_REQUEST, "line %d: %s", at, je.text);
            /* NDJSON: reject this line, go on with the next */
            import_reject(im, row_line, "not valid JSON: %s", je.text);
            const char *nl = memchr(data + pos, '\n', len - pos);
            pos = nl ? (size_t)(nl - data) : len;
            pos = skip_ws(data, len, pos, &line);
            continue;
        }
        size_t used = (size_t)je.position;
        if (used == 0 || used > len - pos)
            used = len - pos; /* defensive: never loop in place */
        for (size_t i = pos; i < pos + used; i++)
            if (data[i] == '\n')
                line++;
        pos += used;
        import_json_row(im, v, row_line, e, &fatal);
        json_decref(v);
        if (fatal)
            return false;
        pos = skip_ws(data, len, pos, &line);
        if (array) {
            if (pos < len && data[pos] == ',') {
                pos = skip_ws(data, len, pos + 1, &line);
                if (pos >= len || data[pos] == ']')
                    return err_set(e, ERR_BAD_REQUEST, "line %d: expected a value after ','", line);
                continue;
            }
            if (pos < len && data[pos] == ']') {
                pos = skip_ws(data, len, pos + 1, &line);
                if (pos < len)
                    return err_set(e, ERR_BAD_REQUEST, "line %d: text after the end of the array", line);
                break;
            }
            return err_set(e, ERR_BAD_REQUEST, "line %d: expected ',' or ']' in the array", line);
        }
    }
    return import_flush(im, e);
}

/* Entry points ---------------------------------------------------------------------------------*/

static bool import_run_into(store_t *s, const char *data, size_t len, import_format_t fmt, const char *source_name,
                            int64_t owner_id, const import_progress_t *progress, import_report_t *rep, err_t *e)
{
    importer_t *im = calloc(1, sizeof *im);
    property_t *rows = calloc(IMPORT_BATCH, sizeof *rows);
    if (!im || !rows) {
        free(im);
        free(rows);
        return err_set(e, ERR_INTERNAL, "out of memory");
    }
    im->s = s;
    im->source_name = source_name && *source_name ? source_name : NULL;
    im->owner_id = owner_id;
    im->progress = progress;
    im->rep = rep;
    im->rows = rows;
    arena_init(&im->arena);
    bool ok = false;
    switch (fmt) {
    case IMPORT_AMES:
        ok = import_csv(im, data, len, ames_columns, A__COUNT, ames_row, "ames", e);
        break;
    case IMPORT_SACRAMENTO:
        ok = import_csv(im, data, len, sacramento_columns, S__COUNT, sacramento_row, "sacramento", e);
        break;
    case IMPORT_JSON:
        ok = import_json(im, data, len, e);
        break;
    }
    arena_free(&im->arena);
    free(rows);
    free(im);
    return ok;
}

bool import_run(store_t *s, const char *data, size_t len, import_format_t fmt, const char *source_name,
                int64_t owner_id, const import_progress_t *progress, import_report_t *rep, err_t *e)
{
    import_report_init(rep);
    bool ok = import_run_into(s, data, len, fmt, source_name, owner_id, progress, rep, e);
    if (rep->inserted || rep->updated)
        s->ops->optimize(s); /* the planner's statistics follow the new rows */
    return ok;
}

/* "msg" -> "prefix: msg" in place, truncated to the buffer. */
static void prefix_message(char *msg, size_t size, const char *prefix)
{
    size_t plen = strlen(prefix) + 2, mlen = strlen(msg);
    if (plen >= size)
        return;
    if (mlen > size - 1 - plen)
        mlen = size - 1 - plen;
    memmove(msg + plen, msg, mlen);
    memcpy(msg, prefix, plen - 2);
    memcpy(msg + plen - 2, ": ", 2);
    msg[plen + mlen] = '\0';
}

bool import_demo(store_t *s, int64_t owner_id, import_report_t *rep, err_t *e)
{
    static const struct { const char *file; import_format_t fmt; } demo[] = {
        {"data/demo/ames.csv", IMPORT_AMES}, {"data/demo/sacramento.csv", IMPORT_SACRAMENTO}};
    import_report_init(rep);
    for (size_t i = 0; i < sizeof demo / sizeof demo[0]; i++) {
        const embed_file_t *f = embed_find(demo[i].file);
        if (!f)
            return err_set(e, ERR_INTERNAL, "%s is not embedded in this binary", demo[i].file);
        int first = rep->nrejections;
        const char *name = demo[i].file + strlen("data/demo/");
        if (!import_run_into(s, f->start, (size_t)(f->end - f->start), demo[i].fmt, NULL, owner_id, NULL, rep, e)) {
            prefix_message(e->message, sizeof e->message, name);
            return false;
        }
        for (int r = first; r < rep->nrejections; r++) /* name the file in its rejections */
            prefix_message(rep->rejections[r].message, sizeof rep->rejections[r].message, name);
    }
    s->ops->optimize(s);
    return true;
}
