/* bench/ml_predict.c DATA_DIR [N] [ROWS]: in-process latency of pricing_predict() (no HTTP), for
 * bench/ml.sh. Loads the active model of DATA_DIR with pricing_open, reads ROWS real properties
 * (default 400, every k-th row of DATA_DIR/hearth.db's properties so both markets are covered) with
 * their listing fields and source `features`, then:
 *   - N (default 20000) single predictions, cycling over the rows, each timed on its own
 *     (CLOCK_MONOTONIC) after 1,000 untimed warm-up calls: p50 / p99 / max in microseconds;
 *   - the same for rows without `features` (the listing-fields-only model), as INFO;
 *   - batches of 1,000 (pricing_predict in a loop): ms per batch, best and median of 10.
 * Prints machine-readable lines "single_full p50=.. p99=.. max=.. n=..", "single_basic ...",
 * "batch1000 best_ms=.. median_ms=..".
 * Built by bench/ml.sh against build/libhearth_core.a (no CMake change). */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain/pricing.h"
#include "domain/property.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? strdup((const char *)t) : NULL;
}

static double pct(const double *sorted, int n, double q)
{
    int i = (int)(q * n + 0.5) - 1;
    return sorted[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void single(const char *label, property_t *props, int nrows, int n)
{
    double *lat = malloc((size_t)n * sizeof *lat);
    price_estimate_t est;
    err_t e;
    for (int i = 0; i < 1000; i++) { /* warm-up */
        err_clear(&e);
        if (!pricing_predict(&props[i % nrows], &est, &e)) {
            fprintf(stderr, "ml_predict: %s\n", e.message);
            exit(1);
        }
    }
    for (int i = 0; i < n; i++) {
        err_clear(&e);
        double t0 = now_us();
        bool ok = pricing_predict(&props[i % nrows], &est, &e);
        lat[i] = now_us() - t0;
        if (!ok) {
            fprintf(stderr, "ml_predict: %s\n", e.message);
            exit(1);
        }
    }
    qsort(lat, (size_t)n, sizeof *lat, dbl_cmp);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += lat[i];
    printf("%s p50=%.1f p99=%.1f max=%.1f mean=%.1f n=%d\n", label, pct(lat, n, 0.50), pct(lat, n, 0.99),
           lat[n - 1], sum / n, n);
    free(lat);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [N] [ROWS]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 20000, want = argc > 3 ? atoi(argv[3]) : 400;
    if (n < 100 || want < 1) {
        fprintf(stderr, "ml_predict: N must be >= 100 and ROWS >= 1\n");
        return 2;
    }
    err_t e;
    err_clear(&e);
    if (!pricing_open(dir, &e) || !pricing_ready()) {
        fprintf(stderr, "ml_predict: no model in %s (%s)\n", dir, e.message);
        return 1;
    }

    char path[1200];
    snprintf(path, sizeof path, "%s/hearth.db", dir);
    sqlite3 *db;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "ml_predict: %s: %s\n", path, sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_stmt *st;
    int total = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM properties", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        total = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    int step = total / want > 1 ? total / want : 1;
    const char *sql = "SELECT source, state, size_sqft, bedrooms, bathrooms, year_built, lot_size_sqft, latitude,"
                      " longitude, features FROM properties WHERE (id % ?) = 0 ORDER BY id LIMIT ?";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ml_predict: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_bind_int(st, 1, step);
    sqlite3_bind_int(st, 2, want);
    property_t *full = calloc((size_t)want, sizeof *full), *basic = calloc((size_t)want, sizeof *basic);
    int nrows = 0, per_market[MARKET__COUNT] = {0};
    while (nrows < want && sqlite3_step(st) == SQLITE_ROW) {
        property_t *p = &full[nrows];
        property_init(p);
        p->set = 0;
        p->source = dup_col(st, 0);
        p->state = dup_col(st, 1);
#define INT_COL(col, field, bit)                         \
    if (sqlite3_column_type(st, col) != SQLITE_NULL) {   \
        p->field = sqlite3_column_int(st, col);          \
        p->set |= PF_BIT(bit);                           \
    }
#define DBL_COL(col, field, bit)                         \
    if (sqlite3_column_type(st, col) != SQLITE_NULL) {   \
        p->field = sqlite3_column_double(st, col);       \
        p->set |= PF_BIT(bit);                           \
    }
        INT_COL(2, size_sqft, PF_SIZE_SQFT)
        INT_COL(3, bedrooms, PF_BEDROOMS)
        DBL_COL(4, bathrooms, PF_BATHROOMS)
        INT_COL(5, year_built, PF_YEAR_BUILT)
        INT_COL(6, lot_size_sqft, PF_LOT_SIZE_SQFT)
        DBL_COL(7, latitude, PF_LATITUDE)
        DBL_COL(8, longitude, PF_LONGITUDE)
#undef INT_COL
#undef DBL_COL
        p->features = dup_col(st, 9);
        if (p->features)
            p->set |= PF_BIT(PF_FEATURES);
        basic[nrows] = *p;
        basic[nrows].features = NULL;
        basic[nrows].set &= ~PF_BIT(PF_FEATURES);
        per_market[pricing_market_of(p)]++;
        nrows++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (nrows == 0) {
        fprintf(stderr, "ml_predict: no properties in %s\n", path);
        return 1;
    }
    printf("rows %d (ames %d, sacramento %d; every %d-th of %d)\n", nrows, per_market[MARKET_AMES],
           per_market[MARKET_SACRAMENTO], step, total);

    single("single_full", full, nrows, n);
    single("single_basic", basic, nrows, n);

    /* batches of 1,000 */
    double ms[10];
    price_estimate_t est;
    for (int b = 0; b < 10; b++) {
        double t0 = now_us();
        for (int i = 0; i < 1000; i++) {
            err_clear(&e);
            if (!pricing_predict(&full[(b * 1000 + i) % nrows], &est, &e)) {
                fprintf(stderr, "ml_predict: %s\n", e.message);
                return 1;
            }
        }
        ms[b] = (now_us() - t0) / 1000.0;
    }
    qsort(ms, 10, sizeof *ms, dbl_cmp);
    printf("batch1000 best_ms=%.2f median_ms=%.2f\n", ms[0], (ms[4] + ms[5]) / 2);
    pricing_close();
    return 0;
}
