/* pricing: see pricing.h. Training, versions on disk, and the loaded model.
 *
 * Layout under $HEARTH_DATA_DIR/models/: one directory per version (v1, v2, ...) holding
 * meta.json (version, trained_at, and per market: rows, cross-validated metrics, the feature list
 * with each categorical column's categories, feature importance, the interval half-width) and one
 * XGBoost JSON model per market (ames.json, sacramento.json); `active` names the active version.
 * A version is written into a temporary directory and renamed into place, `active` through a
 * temporary file and rename, so a reader never sees half of either.
 *
 * The loaded model is a reference-counted set (one booster per market) that predictions borrow;
 * a prediction checks `active` at most once a second and a new version replaces the set for the
 * next callers while current ones finish on the old. XGBoost trains; predictions walk the saved
 * trees with trees.c (no lock, a few microseconds), which training checks against XGBoost. */
#define _GNU_SOURCE /* qsort_r */
#include "pricing.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xgboost/c_api.h>

#include "../base/buf.h"
#include "../base/flatjson.h"
#include "../base/log.h"
#include "../base/util.h"
#include "../infra/store.h"
#include "trees.h"

const char *const market_names[MARKET__COUNT] = {"ames", "sacramento"};

/* The listing fields every property has, first in every market's feature vector. */
#define CORE 7
static const char *const core_names[CORE] = {"size_sqft", "bedrooms",  "bathrooms", "year_built",
                                             "lot_size_sqft", "latitude", "longitude"};

/* Source columns that are not features: the price itself, and the columns the core fields are
 * read from at import (the same value twice adds nothing). */
static const char *const excluded_ames[] = {"Sale_Price", "Longitude", "Latitude", "Gr_Liv_Area", "Year_Built",
                                            "Lot_Area", "Bedroom_AbvGr", NULL};
static const char *const excluded_sacramento[] = {"price", "latitude", "longitude", "beds", "baths", "sqft", NULL};
static const char *const *const excluded[MARKET__COUNT] = {excluded_ames, excluded_sacramento};

#define MIN_ROWS 30       /* fewer rows in a market: no model for it */
#define INTERVAL 0.90     /* coverage of the prediction interval */
#define RELOAD_CHECK_US 1000000

market_t pricing_market_of(const property_t *p)
{
    for (int m = 0; m < MARKET__COUNT; m++)
        if (p->source && strcmp(p->source, market_names[m]) == 0)
            return (market_t)m;
    if (p->state && strcasecmp(p->state, "CA") == 0)
        return MARKET_SACRAMENTO;
    return MARKET_AMES;
}

/* Feature columns ----------------------------------------------------------------------------- */

typedef struct column {
    char *name;
    bool categorical;
    int ncats;
    char **cats; /* sorted: a category's code is its index */
} column_t;

typedef struct columns {
    int n;
    column_t *col;
    int *by_name; /* column indexes sorted by name (for scan_features); NULL until columns_index */
} columns_t;

static void columns_free(columns_t *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->col[i].name);
        for (int k = 0; k < c->col[i].ncats; k++)
            free(c->col[i].cats[k]);
        free(c->col[i].cats);
    }
    free(c->col);
    free(c->by_name);
    c->col = NULL;
    c->by_name = NULL;
    c->n = 0;
}

static int by_name_cmp(const void *a, const void *b, void *cols)
{
    const columns_t *c = cols;
    return strcmp(c->col[*(const int *)a].name, c->col[*(const int *)b].name);
}

static void columns_index(columns_t *c)
{
    c->by_name = malloc((size_t)(c->n ? c->n : 1) * sizeof *c->by_name);
    for (int i = 0; i < c->n; i++)
        c->by_name[i] = i;
    qsort_r(c->by_name, (size_t)c->n, sizeof *c->by_name, by_name_cmp, c);
}

/* strcmp of the NUL-terminated `a` with the n bytes at `b` */
static int cmp_n(const char *a, const char *b, size_t n)
{
    int r = strncmp(a, b, n);
    return r ? r : (unsigned char)a[n];
}

static int column_by_name(const columns_t *c, const char *name, size_t n)
{
    int lo = 0, hi = c->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, r = cmp_n(c->col[c->by_name[mid]].name, name, n);
        if (r == 0)
            return c->by_name[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

static int cat_code_n(const column_t *c, const char *v, size_t n)
{
    int lo = 0, hi = c->ncats - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, r = cmp_n(c->cats[mid], v, n);
        if (r == 0)
            return mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

typedef struct scan_arg {
    const columns_t *cols;
    float *row;
    int found;
} scan_arg_t;

static void scan_member(void *arg, const char *key, size_t keylen, flat_kind_t kind, const char *str, size_t len,
                        double num)
{
    scan_arg_t *a = arg;
    int col = column_by_name(a->cols, key, keylen);
    if (col < 0)
        return; /* not one of the model's columns */
    a->found++;
    const column_t *c = &a->cols->col[col];
    float x = NAN; /* the last of a repeated key wins, as in jansson */
    if (c->categorical && kind == FLAT_STRING) {
        int code = cat_code_n(c, str, len);
        x = code >= 0 ? (float)code : NAN;
    } else if (!c->categorical && kind == FLAT_NUMBER) {
        x = (float)num;
    }
    a->row[CORE + col] = x;
}

/* The source columns of row[] from the stored text of a source row (base/flatjson.c: the rows
 * imports store are flat objects, read in place much faster than through a jansson tree). 1:
 * read, *found members; 0: flatjson declined: the caller parses with jansson. */
static int scan_features(const columns_t *cols, const char *text, float *row, int *found)
{
    for (int i = 0; i < cols->n; i++)
        row[CORE + i] = NAN;
    scan_arg_t a = {cols, row, 0};
    int r = flatjson_scan(text, scan_member, &a);
    *found = a.found;
    return r;
}

static int cat_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cat_code(const column_t *c, const char *v) { return cat_code_n(c, v, strlen(v)); }

static bool is_excluded(market_t m, const char *name)
{
    for (const char *const *x = excluded[m]; *x; x++)
        if (strcmp(*x, name) == 0)
            return true;
    return false;
}

/* Fills row[0..CORE) from the listing fields of `p` (NaN: missing). */
static void core_row(const property_t *p, float *row)
{
    float nan = NAN;
    row[0] = p->set & PF_BIT(PF_SIZE_SQFT) ? (float)p->size_sqft : nan;
    row[1] = p->set & PF_BIT(PF_BEDROOMS) ? (float)p->bedrooms : nan;
    row[2] = p->set & PF_BIT(PF_BATHROOMS) ? (float)p->bathrooms : nan;
    row[3] = p->set & PF_BIT(PF_YEAR_BUILT) ? (float)p->year_built : nan;
    row[4] = p->set & PF_BIT(PF_LOT_SIZE_SQFT) ? (float)p->lot_size_sqft : nan;
    row[5] = p->set & PF_BIT(PF_LATITUDE) ? (float)p->latitude : nan;
    row[6] = p->set & PF_BIT(PF_LONGITUDE) ? (float)p->longitude : nan;
}

/* Fills row[0..CORE+cols->n) for `p` (NaN: missing); `features` is p's parsed source row or NULL. */
static void feature_row(const columns_t *cols, const property_t *p, json_t *features, float *row)
{
    float nan = NAN;
    core_row(p, row);
    for (int i = 0; i < cols->n; i++) {
        const column_t *c = &cols->col[i];
        json_t *v = features ? json_object_get(features, c->name) : NULL;
        float x = nan;
        if (c->categorical && json_is_string(v)) {
            int code = cat_code(c, json_string_value(v));
            x = code >= 0 ? (float)code : nan;
        } else if (!c->categorical && json_is_number(v)) {
            x = (float)json_number_value(v);
        }
        row[CORE + i] = x;
    }
}

/* Training data ------------------------------------------------------------------------------- */

typedef struct dataset {
    int n;
    property_t *props;
    json_t **features; /* parsed, one per row (may be NULL) */
    double *label;     /* log(price in dollars) */
} dataset_t;

static void dataset_free(dataset_t *d)
{
    for (int i = 0; i < d->n; i++)
        json_decref(d->features[i]);
    free(d->props);
    free(d->features);
    free(d->label);
    memset(d, 0, sizeof *d);
}

static bool load_rows(store_t *s, market_t m, arena_t *a, dataset_t *d, err_t *e)
{
    store_conn_t *c = s->ops->acquire(s, 10000, e);
    if (!c)
        return false;
    const char *v[] = {market_names[m]};
    store_rows_t r;
    bool ok = store_query(c,
                          "SELECT price_cents, size_sqft, bedrooms, bathrooms, year_built, lot_size_sqft, latitude,"
                          " longitude, features FROM properties WHERE source = $1 ORDER BY id",
                          1, v, a, &r, e);
    s->ops->release(s, c);
    if (!ok)
        return false;
    d->n = r.nrows;
    d->props = calloc((size_t)r.nrows + 1, sizeof *d->props);
    d->features = calloc((size_t)r.nrows + 1, sizeof *d->features);
    d->label = calloc((size_t)r.nrows + 1, sizeof *d->label);
    for (int i = 0; i < r.nrows; i++) {
        property_t *p = &d->props[i];
        property_init(p);
        p->set = 0;
        d->label[i] = log((double)store_cell_i64(&r, i, 0) / 100.0);
        const char *x;
#define CELL_INT(col, field, bit)            \
    if ((x = store_cell(&r, i, col))) {      \
        p->field = (int)strtol(x, NULL, 10); \
        p->set |= PF_BIT(bit);               \
    }
#define CELL_DBL(col, field, bit)       \
    if ((x = store_cell(&r, i, col))) { \
        p->field = strtod(x, NULL);     \
        p->set |= PF_BIT(bit);          \
    }
        CELL_INT(1, size_sqft, PF_SIZE_SQFT)
        CELL_INT(2, bedrooms, PF_BEDROOMS)
        CELL_DBL(3, bathrooms, PF_BATHROOMS)
        CELL_INT(4, year_built, PF_YEAR_BUILT)
        CELL_INT(5, lot_size_sqft, PF_LOT_SIZE_SQFT)
        CELL_DBL(6, latitude, PF_LATITUDE)
        CELL_DBL(7, longitude, PF_LONGITUDE)
#undef CELL_INT
#undef CELL_DBL
        x = store_cell(&r, i, 8);
        d->features[i] = x ? json_loads(x, 0, NULL) : NULL;
        p->features = x; /* the text, in `a`: scan_features is checked against the parsed tree */
    }
    return true;
}

/* The source columns of a market: every key of the rows' feature objects (first-seen order, which
 * is the CSV's), less the excluded ones; categorical when any value is a string. */
static void discover_columns(market_t m, const dataset_t *d, columns_t *cols)
{
    json_t *seen = json_object(); /* name -> index in cols */
    for (int i = 0; i < d->n; i++) {
        const char *k;
        json_t *v;
        json_object_foreach(d->features[i], k, v)
        {
            if (is_excluded(m, k))
                continue;
            json_t *idx = json_object_get(seen, k);
            int at;
            if (!idx) {
                at = cols->n++;
                cols->col = realloc(cols->col, (size_t)cols->n * sizeof *cols->col);
                cols->col[at] = (column_t){.name = strdup(k)};
                json_object_set_new(seen, k, json_integer(at));
            } else {
                at = (int)json_integer_value(idx);
            }
            if (json_is_string(v))
                cols->col[at].categorical = true;
        }
    }
    /* the categories of each categorical column, sorted and unique */
    for (int c = 0; c < cols->n; c++) {
        column_t *col = &cols->col[c];
        if (!col->categorical)
            continue;
        char **all = malloc((size_t)d->n * sizeof *all);
        int n = 0;
        for (int i = 0; i < d->n; i++) {
            json_t *v = d->features[i] ? json_object_get(d->features[i], col->name) : NULL;
            if (json_is_string(v))
                all[n++] = (char *)json_string_value(v);
        }
        qsort(all, (size_t)n, sizeof *all, cat_cmp);
        col->cats = malloc((size_t)(n ? n : 1) * sizeof *col->cats);
        for (int i = 0; i < n; i++)
            if (i == 0 || strcmp(all[i], all[i - 1]) != 0)
                col->cats[col->ncats++] = strdup(all[i]);
        free(all);
    }
    json_decref(seen);
}

/* XGBoost -------------------------------------------------------------------------------------- */

static bool xgb_ok(int rc, const char *what, err_t *e)
{
    if (rc == 0)
        return true;
    return err_set(e, ERR_INTERNAL, "xgboost: %s: %s", what, XGBGetLastError());
}

static bool dmatrix(const columns_t *cols, const float *data, int nrows, const float *labels, DMatrixHandle *out,
                    err_t *e)
{
    int ncol = CORE + cols->n;
    if (!xgb_ok(XGDMatrixCreateFromMat(data, (bst_ulong)nrows, (bst_ulong)ncol, NAN, out), "DMatrix", e))
        return false;
    const char **names = malloc((size_t)ncol * sizeof *names);
    const char **types = malloc((size_t)ncol * sizeof *types);
    for (int i = 0; i < ncol; i++) {
        names[i] = i < CORE ? core_names[i] : cols->col[i - CORE].name;
        types[i] = i >= CORE && cols->col[i - CORE].categorical ? "c" : "q";
    }
    bool ok = xgb_ok(XGDMatrixSetStrFeatureInfo(*out, "feature_name", names, (bst_ulong)ncol), "feature names", e) &&
              xgb_ok(XGDMatrixSetStrFeatureInfo(*out, "feature_type", types, (bst_ulong)ncol), "feature types", e) &&
              (!labels || xgb_ok(XGDMatrixSetFloatInfo(*out, "label", labels, (bst_ulong)nrows), "labels", e));
    free(names);
    free(types);
    if (!ok)
        XGDMatrixFree(*out);
    return ok;
}

/* The training parameters: documented in docs/pricing.md. */
static bool booster_new(DMatrixHandle train, double base, uint64_t seed, BoosterHandle *out, err_t *e)
{
    if (!xgb_ok(XGBoosterCreate(&train, 1, out), "booster", e))
        return false;
    char seedtxt[24], basetxt[32];
    snprintf(seedtxt, sizeof seedtxt, "%llu", (unsigned long long)(seed % 2147483647ULL));
    snprintf(basetxt, sizeof basetxt, "%.9g", base); /* XGBoost 1.7 starts from 0.5 otherwise */
    const char *params[][2] = {
        {"objective", "reg:squarederror"}, {"tree_method", "hist"}, {"eta", "0.03"},
        {"max_depth", "4"},               {"min_child_weight", "2"}, {"subsample", "0.7"},
        {"colsample_bytree", "0.5"},       {"lambda", "1"},           {"max_cat_to_onehot", "1"},
        {"max_bin", "256"},                {"nthread", "1"},          {"seed", seedtxt},
        {"verbosity", "0"},                {"base_score", basetxt},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (!xgb_ok(XGBoosterSetParam(*out, params[i][0], params[i][1]), params[i][0], e)) {
            XGBoosterFree(*out);
            return false;
        }
    return true;
}

/* `labels`: the n training labels, whose mean the boosting starts from */
static bool fit(DMatrixHandle train, const float *labels, int n, int rounds, uint64_t seed, BoosterHandle *out,
                err_t *e)
{
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += labels[i];
    if (!booster_new(train, n ? mean / n : 0, seed, out, e))
        return false;
    for (int it = 0; it < rounds; it++)
        if (!xgb_ok(XGBoosterUpdateOneIter(*out, it, train), "training", e)) {
            XGBoosterFree(*out);
            return false;
        }
    return true;
}

static bool predict_matrix(BoosterHandle b, DMatrixHandle m, int n, double *out, err_t *e)
{
    const bst_ulong *shape;
    bst_ulong dim;
    const float *res;
    if (!xgb_ok(XGBoosterPredictFromDMatrix(b, m, "{\"type\": 0, \"training\": false, \"iteration_begin\": 0,"
                                                 " \"iteration_end\": 0, \"strict_shape\": false}",
                                            &shape, &dim, &res),
                "prediction", e))
        return false;
    for (int i = 0; i < n; i++)
        out[i] = res[i];
    return true;
}

/* Serving predicts with trees.c, not XGBoost: the saved model must give XGBoost's own predictions
 * on every training row, or the training fails. */
static bool check_trees(BoosterHandle b, const columns_t *cols, const float *x, int n, const char *path, err_t *e)
{
    trees_t *t = trees_load(path, e);
    if (!t)
        return false;
    int ncol = CORE + cols->n;
    DMatrixHandle m;
    double *want = malloc((size_t)n * sizeof *want);
    bool ok = (trees_features(t) == ncol ||
               err_set(e, ERR_INTERNAL, "%s: %d features, %d expected", path, trees_features(t), ncol)) &&
              dmatrix(cols, x, n, NULL, &m, e);
    if (ok) {
        ok = predict_matrix(b, m, n, want, e);
        XGDMatrixFree(m);
    }
    for (int i = 0; ok && i < n; i++) {
        double got = trees_predict(t, x + (size_t)i * (size_t)ncol);
        if (fabs(got - want[i]) > 1e-4 * (1 + fabs(want[i])))
            ok = err_set(e, ERR_INTERNAL, "%s: row %d: the tree walk gives %.6f, XGBoost %.6f", path, i, got, want[i]);
    }
    free(want);
    trees_free(t);
    return ok;
}

/* Cross-validation ---------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* fold[i] of each row: a Fisher-Yates shuffle of 0..n-1 driven by splitmix64(seed), then the row
 * at shuffled position k is in fold k % folds (bench/peer_sklearn does the same). */
static void assign_folds(int n, int folds, uint64_t seed, int *fold)
{
    int *perm = malloc((size_t)n * sizeof *perm);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    uint64_t state = seed;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(splitmix64(&state) % (uint64_t)(i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int k = 0; k < n; k++)
        fold[perm[k]] = k % folds;
    free(perm);
}

static void fold_metrics(const double *y_log, const double *p_log, const int *idx, int n, market_metrics_t *m)
{
    double mean = 0;
    for (int i = 0; i < n; i++)
        mean += exp(y_log[idx[i]]);
    mean /= n;
    double se = 0, ae = 0, sle = 0, tot = 0;
    for (int i = 0; i < n; i++) {
        double y = exp(y_log[idx[i]]), p = exp(p_log[idx[i]]);
        se += (y - p) * (y - p);
        ae += fabs(y - p);
        tot += (y - mean) * (y - mean);
        double dl = log1p(y) - log1p(p);
        sle += dl * dl;
    }
    m->rmse = sqrt(se / n);
    m->mae = ae / n;
    m->r2 = tot > 0 ? 1 - se / tot : 0;
    m->rmsle = sqrt(sle / n);
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Meta and files ------------------------------------------------------------------------------ */

static void models_dir(const char *data_dir, char *out, size_t n) { snprintf(out, n, "%s/models", data_dir); }

static int active_version(const char *data_dir)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/models/active", data_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int v = 0;
    if (fscanf(f, "v%d", &v) != 1)
        v = 0;
    fclose(f);
    return v;
}

static int newest_version(const char *data_dir)
{
    char dir[1100];
    models_dir(data_dir, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int max = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        int v;
        char rest;
        if (sscanf(de->d_name, "v%d%c", &v, &rest) == 1 && v > max)
            max = v;
    }
    closedir(d);
    return max;
}

bool pricing_activate(const char *data_dir, int version, err_t *e)
{
    char path[1200], tmp[1250];
    snprintf(path, sizeof path, "%s/models/v%d/meta.json", data_dir, version);
    if (access(path, R_OK) != 0)
        return err_set(e, ERR_NOT_FOUND, "no model version %d", version);
    snprintf(path, sizeof path, "%s/models/active", data_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return err_set(e, ERR_INTERNAL, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "v%d\n", version);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return err_set(e, ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
    }
    return true;
}

static void write_metrics(json_t *o, const market_metrics_t *m)
{
    json_object_set_new(o, "rmse", json_real(round(m->rmse * 100) / 100));
    json_object_set_new(o, "mae", json_real(round(m->mae * 100) / 100));
    json_object_set_new(o, "r2", json_real(round(m->r2 * 10000) / 10000));
    json_object_set_new(o, "rmsle", json_real(round(m->rmsle * 100000) / 100000));
}

/* Trains one variant of a market's model on `d` with the source columns `cols` (none: the basic
 * model of the listing fields alone): cross-validation, the interval, the final fit saved as
 * DIR/FILE.json; its description goes into `meta`. */
static bool train_variant(market_t mk, const dataset_t *d, const columns_t *colsp, const train_options_t *o,
                          const char *dir, const char *file, json_t *meta, market_metrics_t *metrics, err_t *e)
{
    const columns_t cols = *colsp;
    bool ok = true;
    int ncol = CORE + cols.n, n = d->n;
    float *x = malloc((size_t)n * (size_t)ncol * sizeof *x);
    float *y = malloc((size_t)n * sizeof *y);
    for (int i = 0; i < n; i++) {
        feature_row(&cols, &d->props[i], cols.n ? d->features[i] : NULL, x + (size_t)i * (size_t)ncol);
        y[i] = (float)d->label[i];
    }
    if (cols.n) { /* serving reads the source row with scan_features: it must see what jansson sees */
        columns_t indexed = cols;
        columns_index(&indexed);
        float *scanned = malloc((size_t)ncol * sizeof *scanned);
        for (int i = 0; i < n && ok; i++) {
            int found;
            const float *want = x + (size_t)i * (size_t)ncol;
            core_row(&d->props[i], scanned);
            if (d->props[i].features && scan_features(&indexed, d->props[i].features, scanned, &found) == 1)
                for (int k = 0; k < ncol && ok; k++)
                    if (!(scanned[k] == want[k] || (isnan(scanned[k]) && isnan(want[k]))))
                        ok = err_set(e, ERR_INTERNAL, "%s row %d: the source-row scanner reads %s as %g, not %g",
                                     market_names[mk], i, k < CORE ? core_names[k] : cols.col[k - CORE].name,
                                     scanned[k], want[k]);
        }
        free(scanned);
        free(indexed.by_name);
    }
    int *fold = malloc((size_t)n * sizeof *fold);
    assign_folds(n, o->folds, o->seed, fold);
    double *pred = calloc((size_t)n, sizeof *pred);
    float *xs = malloc((size_t)n * (size_t)ncol * sizeof *xs);
    float *ys = malloc((size_t)n * sizeof *ys);
    int *idx = malloc((size_t)n * sizeof *idx);
    market_metrics_t sum = {0};
    for (int f = 0; f < o->folds && ok; f++) {
        int nt = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] != f) {
                memcpy(xs + (size_t)nt * (size_t)ncol, x + (size_t)i * (size_t)ncol, (size_t)ncol * sizeof *x);
                ys[nt++] = y[i];
            }
        DMatrixHandle train, test;
        BoosterHandle b;
        ok = dmatrix(&cols, xs, nt, ys, &train, e);
        if (!ok)
            break;
        ok = fit(train, ys, nt, o->rounds, o->seed + (uint64_t)f, &b, e);
        XGDMatrixFree(train);
        if (!ok)
            break;
        int nh = 0;
        for (int i = 0; i < n; i++)
            if (fold[i] == f) {
                memcpy(xs + (size_t)nh * (size_t)ncol, x + (size_t)i * (size_t)ncol, (size_t)ncol * sizeof *x);
                idx[nh++] = i;
            }
        double *ph = malloc((size_t)nh * sizeof *ph);
        ok = dmatrix(&cols, xs, nh, NULL, &test, e);
        if (ok) {
            ok = predict_matrix(b, test, nh, ph, e);
            XGDMatrixFree(test);
        }
        if (ok) {
            for (int k = 0; k < nh; k++)
                pred[idx[k]] = ph[k];
            market_metrics_t fm;
            fold_metrics(d->label, pred, idx, nh, &fm);
            sum.rmse += fm.rmse;
            sum.mae += fm.mae;
            sum.r2 += fm.r2;
            sum.rmsle += fm.rmsle;
            if (!o->quiet)
                fprintf(stderr, "train: %s%s fold %d/%d: rmsle %.4f, rmse %.0f, r2 %.4f\n", market_names[mk],
                        cols.n ? "" : " (listing fields only)", f + 1, o->folds, fm.rmsle, fm.rmse, fm.r2);
        }
        free(ph);
        XGBoosterFree(b);
    }
    if (ok) {
        metrics->rows = n;
        metrics->rmse = sum.rmse / o->folds;
        metrics->mae = sum.mae / o->folds;
        metrics->r2 = sum.r2 / o->folds;
        metrics->rmsle = sum.rmsle / o->folds;
    }
    /* split-conformal interval: the INTERVAL quantile of the held-out |log residuals| */
    double *res = malloc((size_t)n * sizeof *res);
    for (int i = 0; i < n; i++)
        res[i] = fabs(d->label[i] - pred[i]);
    qsort(res, (size_t)n, sizeof *res, dbl_cmp);
    int qi = (int)ceil((n + 1) * INTERVAL) - 1;
    double halfwidth = res[qi < 0 ? 0 : qi >= n ? n - 1 : qi];
    free(res);

    /* the final fit on every row */
    DMatrixHandle all;
    BoosterHandle b = NULL;
    json_t *importance = json_object();
    if (ok && (ok = dmatrix(&cols, x, n, y, &all, e))) {
        ok = fit(all, y, n, o->rounds, o->seed, &b, e);
        XGDMatrixFree(all);
    }
    if (ok) {
        char path[1300];
        snprintf(path, sizeof path, "%s/%s.json", dir, file);
        ok = xgb_ok(XGBoosterSaveModel(b, path), "saving the model", e) && check_trees(b, &cols, x, n, path, e);
        bst_ulong nf, dim;
        const char **names;
        const bst_ulong *shape;
        const float *scores;
        if (ok && XGBoosterFeatureScore(b, "{\"importance_type\": \"total_gain\"}", &nf, &names, &dim, &shape,
                                        &scores) != 0)
            log_warn("train: feature importance: %s", XGBGetLastError());
        else if (ok) {
            double total = 0;
            for (bst_ulong i = 0; i < nf; i++)
                total += scores[i];
            for (bst_ulong i = 0; i < nf; i++) { /* names come back as f<index> */
                int k = names[i][0] == 'f' ? atoi(names[i] + 1) : -1;
                const char *name = k < 0 || k >= ncol ? names[i] : k < CORE ? core_names[k] : cols.col[k - CORE].name;
                double share = scores[i] / (total > 0 ? total : 1);
                json_object_set_new(importance, name, json_real(round(share * 1e4) / 1e4));
            }
        }
        XGBoosterFree(b);
    }
    if (ok) {
        json_t *mm = meta, *met = json_object(), *feats = json_array();
        json_object_set_new(mm, "rows", json_integer(n));
        write_metrics(met, metrics);
        json_object_set_new(mm, "metrics", met);
        for (int i = 0; i < ncol; i++) {
            json_t *fd = json_object();
            json_object_set_new(fd, "name", json_string(i < CORE ? core_names[i] : cols.col[i - CORE].name));
            bool cat = i >= CORE && cols.col[i - CORE].categorical;
            json_object_set_new(fd, "type", json_string(cat ? "categorical" : "numeric"));
            json_object_set_new(fd, "source", json_string(i < CORE ? "listing" : "features"));
            if (cat) {
                json_t *cats = json_array();
                for (int k = 0; k < cols.col[i - CORE].ncats; k++)
                    json_array_append_new(cats, json_string(cols.col[i - CORE].cats[k]));
                json_object_set_new(fd, "categories", cats);
            }
            json_array_append_new(feats, fd);
        }
        json_object_set_new(mm, "features", feats);
        json_object_set_new(mm, "feature_importance", json_incref(importance));
        json_object_set_new(mm, "interval_log_halfwidth", json_real(halfwidth));
        json_object_set_new(mm, "interval_coverage", json_real(INTERVAL));
        json_object_set_new(mm, "folds", json_integer(o->folds));
        json_object_set_new(mm, "rounds", json_integer(o->rounds));
        json_object_set_new(mm, "seed", json_integer((json_int_t)o->seed));
    }
    json_decref(importance);
    free(x);
    free(y);
    free(xs);
    free(ys);
    free(idx);
    free(fold);
    free(pred);
    return ok;
}

/* Trains a market's two models: with its source columns (`features`), and on the listing fields
 * alone (used for a property that comes without source features: a missing value the full model
 * never saw in training would follow an arbitrary branch). */
static bool train_market(store_t *s, market_t mk, const train_options_t *o, const char *dir, json_t *markets,
                         market_metrics_t *metrics, err_t *e)
{
    arena_t a;
    arena_init(&a);
    dataset_t d = {0};
    columns_t cols = {0}, none = {0};
    memset(metrics, 0, sizeof *metrics);
    bool ok = load_rows(s, mk, &a, &d, e);
    if (ok && d.n >= MIN_ROWS) {
        discover_columns(mk, &d, &cols);
        json_t *full = json_object(), *basic = json_object();
        market_metrics_t bm;
        char file[64];
        snprintf(file, sizeof file, "%s-basic", market_names[mk]);
        ok = train_variant(mk, &d, &cols, o, dir, market_names[mk], full, metrics, e) &&
             train_variant(mk, &d, &none, o, dir, file, basic, &bm, e);
        if (ok) {
            json_object_set_new(full, "basic", basic);
            json_object_set_new(markets, market_names[mk], full);
        } else {
            json_decref(full);
            json_decref(basic);
        }
    } else if (ok && !o->quiet) {
        fprintf(stderr, "train: %s: %d rows, too few for a model (%d needed); skipped\n", market_names[mk], d.n,
                MIN_ROWS);
    }
    columns_free(&cols);
    dataset_free(&d);
    arena_free(&a);
    return ok;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char path[1600];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    closedir(d);
    rmdir(dir);
}

bool pricing_train(store_t *s, const char *data_dir, const train_options_t *opt, int *version,
                   market_metrics_t metrics[MARKET__COUNT], err_t *e)
{
    train_options_t o = *opt;
    if (o.folds < 2)
        o.folds = 5;
    if (o.rounds <= 0) {
        const char *r = getenv("HEARTH_MODEL_ROUNDS");
        o.rounds = r && atoi(r) > 0 ? atoi(r) : 1200;
    }
    char dir[1100], tmp[1200];
    models_dir(data_dir, dir, sizeof dir);
    if (mkdir(data_dir, 0755) != 0 && errno != EEXIST)
        return err_set(e, ERR_INTERNAL, "cannot create %s: %s", data_dir, strerror(errno));
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return err_set(e, ERR_INTERNAL, "cannot create %s: %s", dir, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s/.train-%d-%llx", dir, (int)getpid(), (unsigned long long)rand_fast());
    if (mkdir(tmp, 0755) != 0)
        return err_set(e, ERR_INTERNAL, "cannot create %s: %s", tmp, strerror(errno));
    json_t *markets = json_object();
    bool ok = true, any = false;
    for (int m = 0; m < MARKET__COUNT && ok; m++) {
        ok = train_market(s, (market_t)m, &o, tmp, markets, &metrics[m], e);
        any |= ok && metrics[m].rows > 0;
    }
    if (ok && !any)
        ok = err_set(e, ERR_VALIDATION, "no market has the %d rows a model needs (import data first)", MIN_ROWS);
    /* the version: one more than the newest; a concurrent training that took it makes us retry */
    int v = 0;
    for (int tries = 0; ok && tries < 10; tries++) {
        v = newest_version(data_dir) + 1;
        json_t *meta = json_object();
        json_object_set_new(meta, "version", json_integer(v));
        json_object_set_new(meta, "trained_at", json_integer((json_int_t)time_now_us()));
        json_object_set_new(meta, "markets", json_incref(markets));
        char path[1300];
        snprintf(path, sizeof path, "%s/meta.json", tmp);
        ok = json_dump_file(meta, path, JSON_INDENT(2) | JSON_SORT_KEYS) == 0;
        json_decref(meta);
        if (!ok) {
            err_set(e, ERR_INTERNAL, "cannot write %s", path);
            break;
        }
        char final[1200];
        snprintf(final, sizeof final, "%s/v%d", dir, v);
        if (rename(tmp, final) == 0)
            break;
        if (errno != EEXIST && errno != ENOTEMPTY) {
            ok = err_set(e, ERR_INTERNAL, "cannot create %s: %s", final, strerror(errno));
            break;
        }
        v = 0;
    }
    json_decref(markets);
    if (!ok || !v) {
        remove_dir(tmp);
        return ok ? err_set(e, ERR_CONFLICT, "could not take a version number") : false;
    }
    *version = v;
    if (o.activate || active_version(data_dir) == 0)
        return pricing_activate(data_dir, v, e);
    return true;
}

bool pricing_list(const char *data_dir, jw_t *w, err_t *e)
{
    (void)e;
    int active = active_version(data_dir), newest = newest_version(data_dir);
    jw_arr_begin(w);
    for (int v = newest; v >= 1; v--) {
        char path[1300];
        snprintf(path, sizeof path, "%s/models/v%d/meta.json", data_dir, v);
        json_t *meta = json_load_file(path, 0, NULL);
        if (!meta)
            continue;
        jw_obj_begin(w);
        jw_kint(w, "version", v);
        jw_key(w, "trained_at");
        jw_time(w, (int64_t)json_integer_value(json_object_get(meta, "trained_at")));
        jw_key(w, "active");
        jw_bool(w, v == active);
        jw_key(w, "markets");
        jw_obj_begin(w);
        const char *k;
        json_t *mm;
        json_object_foreach(json_object_get(meta, "markets"), k, mm)
        {
            jw_key(w, k);
            jw_obj_begin(w);
            jw_kint(w, "rows", json_integer_value(json_object_get(mm, "rows")));
            char *met = json_dumps(json_object_get(mm, "metrics"), JSON_COMPACT | JSON_REAL_PRECISION(10));
            jw_key(w, "metrics");
            jw_raw(w, met, strlen(met));
            free(met);
            jw_obj_end(w);
        }
        jw_obj_end(w);
        jw_obj_end(w);
        json_decref(meta);
    }
    jw_arr_end(w);
    return true;
}

/* The loaded model ----------------------------------------------------------------------------- */

typedef struct market_model {
    bool present;
    trees_t *full, *basic; /* with the source columns; the listing fields alone */
    columns_t cols;
    double halfwidth, basic_halfwidth;
} market_model_t;

typedef struct model_set {
    _Atomic int refs;
    int version;
    json_t *meta;
    market_model_t m[MARKET__COUNT];
} model_set_t;

static struct {
    pthread_mutex_t mu; /* current, checked_us */
    model_set_t *current;
    int64_t checked_us;
    char data_dir[1024];
    bool open;
} model = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void set_release(model_set_t *ms)
{
    if (!ms || atomic_fetch_sub(&ms->refs, 1) != 1)
        return;
    for (int m = 0; m < MARKET__COUNT; m++)
        if (ms->m[m].present) {
            trees_free(ms->m[m].full);
            trees_free(ms->m[m].basic);
            columns_free(&ms->m[m].cols);
        }
    json_decref(ms->meta);
    free(ms);
}

static model_set_t *set_load(const char *data_dir, int v, err_t *e)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/models/v%d/meta.json", data_dir, v);
    json_error_t je;
    json_t *meta = json_load_file(path, 0, &je);
    if (!meta) {
        err_set(e, ERR_UNAVAILABLE, "model version %d: %s: %s", v, path, je.text);
        return NULL;
    }
    model_set_t *ms = calloc(1, sizeof *ms);
    atomic_init(&ms->refs, 1);
    ms->version = v;
    ms->meta = meta;
    json_t *markets = json_object_get(meta, "markets");
    for (int m = 0; m < MARKET__COUNT; m++) {
        json_t *mm = json_object_get(markets, market_names[m]);
        if (!mm)
            continue;
        market_model_t *mod = &ms->m[m];
        json_t *feats = json_object_get(mm, "features");
        size_t nf = json_array_size(feats);
        if (nf < CORE) {
            err_set(e, ERR_UNAVAILABLE, "model version %d: %s has no feature list", v, market_names[m]);
            set_release(ms);
            return NULL;
        }
        mod->cols.n = (int)(nf - CORE);
        mod->cols.col = calloc(nf - CORE + 1, sizeof *mod->cols.col);
        for (size_t i = CORE; i < nf; i++) {
            json_t *fd = json_array_get(feats, i);
            column_t *c = &mod->cols.col[i - CORE];
            c->name = strdup(json_string_value(json_object_get(fd, "name")) ?: "");
            json_t *cats = json_object_get(fd, "categories");
            c->categorical = cats != NULL;
            c->cats = calloc(json_array_size(cats) + 1, sizeof *c->cats);
            for (size_t k = 0; k < json_array_size(cats); k++)
                c->cats[c->ncats++] = strdup(json_string_value(json_array_get(cats, k)) ?: "");
        }
        columns_index(&mod->cols);
        mod->halfwidth = json_real_value(json_object_get(mm, "interval_log_halfwidth"));
        mod->basic_halfwidth = json_real_value(json_object_get(json_object_get(mm, "basic"), "interval_log_halfwidth"));
        char basic[1300];
        snprintf(path, sizeof path, "%s/models/v%d/%s.json", data_dir, v, market_names[m]);
        snprintf(basic, sizeof basic, "%s/models/v%d/%s-basic.json", data_dir, v, market_names[m]);
        mod->full = trees_load(path, e);
        mod->basic = mod->full ? trees_load(basic, e) : NULL;
        if (!mod->basic || trees_features(mod->full) != CORE + mod->cols.n || trees_features(mod->basic) != CORE) {
            if (mod->basic)
                err_set(e, ERR_UNAVAILABLE, "model version %d: %s: feature counts disagree with meta.json", v,
                        market_names[m]);
            trees_free(mod->full);
            trees_free(mod->basic);
            columns_free(&mod->cols);
            set_release(ms);
            return NULL;
        }
        mod->present = true;
    }
    return ms;
}

/* Loads the active version when it is not the one loaded; at most once a second unless `force`. */
static void refresh(bool force)
{
    int64_t now = time_now_us();
    pthread_mutex_lock(&model.mu);
    if (!model.open || (!force && now - model.checked_us < RELOAD_CHECK_US)) {
        pthread_mutex_unlock(&model.mu);
        return;
    }
    model.checked_us = now;
    int loaded = model.current ? model.current->version : 0;
    pthread_mutex_unlock(&model.mu);
    int want = active_version(model.data_dir);
    if (!want || want == loaded)
        return;
    err_t e;
    err_clear(&e);
    model_set_t *ms = set_load(model.data_dir, want, &e);
    if (!ms) {
        log_warn("pricing: %s", e.message);
        return;
    }
    pthread_mutex_lock(&model.mu);
    model_set_t *old = model.current;
    /* else another thread loaded a version meanwhile, having read `active` later: keep that one */
    bool take = (old ? old->version : 0) == loaded;
    if (take)
        model.current = ms;
    pthread_mutex_unlock(&model.mu);
    set_release(take ? old : ms);
    if (take)
        log_info("pricing: model version %d loaded", want);
}

static model_set_t *set_borrow(void)
{
    refresh(false);
    pthread_mutex_lock(&model.mu);
    model_set_t *ms = model.current;
    if (ms)
        atomic_fetch_add(&ms->refs, 1);
    pthread_mutex_unlock(&model.mu);
    return ms;
}

bool pricing_open(const char *data_dir, err_t *e)
{
    (void)e;
    pthread_mutex_lock(&model.mu);
    snprintf(model.data_dir, sizeof model.data_dir, "%s", data_dir);
    model.open = true;
    pthread_mutex_unlock(&model.mu);
    refresh(true);
    return true;
}

void pricing_close(void)
{
    pthread_mutex_lock(&model.mu);
    model_set_t *ms = model.current;
    model.current = NULL;
    model.open = false;
    pthread_mutex_unlock(&model.mu);
    set_release(ms);
}

bool pricing_ready(void)
{
    model_set_t *ms = set_borrow();
    bool ok = ms != NULL;
    set_release(ms);
    return ok;
}

int pricing_version(void)
{
    model_set_t *ms = set_borrow();
    int v = ms ? ms->version : 0;
    set_release(ms);
    return v;
}

bool pricing_predict(const property_t *p, price_estimate_t *out, err_t *e)
{
    model_set_t *ms = set_borrow();
    if (!ms)
        return err_set(e, ERR_UNAVAILABLE, "no price model is trained yet (hearth train)");
    market_t mk = pricing_market_of(p);
    market_model_t *mod = &ms->m[mk];
    if (!mod->present) {
        set_release(ms);
        return err_set(e, ERR_UNAVAILABLE, "the active price model has no %s market", market_names[mk]);
    }
    /* the source row: scanned in place (the common case), else parsed by jansson */
    float row[CORE + 256], *rowp = row;
    int nfull = CORE + mod->cols.n, found = 0;
    if (nfull > (int)(sizeof row / sizeof row[0]))
        rowp = malloc((size_t)nfull * sizeof *rowp);
    core_row(p, rowp);
    int scanned = p->features ? scan_features(&mod->cols, p->features, rowp, &found) : 1;
    if (!scanned) {
        json_t *features = json_loads(p->features, 0, NULL);
        found = 0;
        for (int i = 0; json_is_object(features) && i < mod->cols.n; i++)
            found += json_object_get(features, mod->cols.col[i].name) != NULL;
        if (found)
            feature_row(&mod->cols, p, features, rowp);
        json_decref(features);
    }
    bool full = found > 0; /* without any of the model's source columns: the basic model */
    double y = trees_predict(full ? mod->full : mod->basic, rowp);
    bool ok = isfinite(y) || err_set(e, ERR_INTERNAL, "the price model gave no number");
    if (rowp != row)
        free(rowp);
    double halfwidth = full ? mod->halfwidth : mod->basic_halfwidth;
    if (ok) {
        out->price = round(exp(y) * 100) / 100;
        out->low = round(exp(y - halfwidth) * 100) / 100;
        out->high = round(exp(y + halfwidth) * 100) / 100;
        out->version = ms->version;
        out->market = mk;
    }
    set_release(ms);
    return ok;
}

bool pricing_info_json(jw_t *w, err_t *e)
{
    model_set_t *ms = set_borrow();
    if (!ms)
        return err_set(e, ERR_UNAVAILABLE, "no price model is trained yet (hearth train)");
    json_t *markets = json_object_get(ms->meta, "markets");
    json_t *top = json_object_get(markets, "ames");
    if (!top) { /* no Ames model: the first market there is */
        const char *k;
        json_t *v;
        json_object_foreach(markets, k, v)
        {
            top = v;
            break;
        }
    }
    jw_obj_begin(w);
    jw_kint(w, "version", ms->version);
    jw_key(w, "trained_at");
    jw_time(w, (int64_t)json_integer_value(json_object_get(ms->meta, "trained_at")));
    jw_kint(w, "rows", json_integer_value(json_object_get(top, "rows")));
    const char *keys[] = {"metrics", "features", "feature_importance"};
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(top, keys[i]);
        if (strcmp(keys[i], "features") == 0) { /* the names; categories stay in `markets` */
            jw_key(w, "features");
            jw_arr_begin(w);
            for (size_t k = 0; k < json_array_size(v); k++)
                jw_str(w, json_string_value(json_object_get(json_array_get(v, k), "name")));
            jw_arr_end(w);
            continue;
        }
        char *txt = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) : NULL;
        jw_key(w, keys[i]);
        if (txt)
            jw_raw(w, txt, strlen(txt));
        else
            jw_null(w);
        free(txt);
    }
    char *all = json_dumps(markets, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    jw_key(w, "markets");
    jw_raw(w, all, strlen(all));
    free(all);
    jw_obj_end(w);
    set_release(ms);
    return true;
}
