/* test_import: the importer end to end into a temporary SQLite store: the fixture CSVs and JSON,
 * the derived fields of a row, idempotent re-import, rejected rows with their line numbers, and the
 * commute-time estimate on known points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "domain/import.h"
#include "infra/store.h"

typedef struct fixture {
    char dir[64], path[128];
    store_t *s;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/hearth-test-import-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/db.sqlite", f->dir);
    err_t e;
    err_clear(&e);
    f->s = store_sqlite_open(f->path, 2, &e);
    if (!f->s) {
        fprintf(stderr, "store_sqlite_open: %s\n", e.message);
        return -1;
    }
    if (f->s->ops->migrate(f->s, &e) < 0) {
        fprintf(stderr, "migrate: %s\n", e.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    f->s->ops->close(f->s);
    char p[160];
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static char *read_fixture(const char *name, size_t *len)
{
    const char *dir = getenv("HEARTH_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fixtures", name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *d = malloc((size_t)n + 1);
    assert_int_equal(fread(d, 1, (size_t)n, fp), (size_t)n);
    d[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return d;
}

static int64_t count_rows(store_t *s)
{
    err_t e;
    err_clear(&e);
    store_conn_t *c = s->ops->acquire(s, 1000, &e);
    assert_non_null(c);
    int64_t n = -1;
    assert_true(s->ops->property_count(c, &n, &e));
    s->ops->release(s, c);
    return n;
}

/* One column of the row (source, external_id), read straight from the database file. */
static char *column(fixture_t *f, const char *col, const char *source, const char *ext)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM properties WHERE source = ? AND external_id = ?", col);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, ext, -1, SQLITE_STATIC);
    char *out = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

static void assert_column(fixture_t *f, const char *col, const char *source, const char *ext, const char *want)
{
    char *got = column(f, col, source, ext);
    if (!want) {
        if (got)
            fail_msg("%s of %s/%s: want NULL, got %s", col, source, ext, got);
        return;
    }
    if (!got)
        fail_msg("%s of %s/%s: want %s, got NULL", col, source, ext, want);
    if (strcmp(got, want) != 0)
        fail_msg("%s of %s/%s: want \"%s\", got \"%s\"", col, source, ext, want, got);
    free(got);
}

static void test_commute_minutes(void **state)
{
    (void)state;
    /* at the centre: only the fixed 3 minutes */
    assert_int_equal(commute_minutes(IMPORT_AMES_CENTRE_LAT, IMPORT_AMES_CENTRE_LON, IMPORT_AMES_CENTRE_LAT,
                                     IMPORT_AMES_CENTRE_LON), 3);
    /* Ames row 1 (North Ames): 3.105 km -> 3.105 * 1.3 / 40 * 60 = 6.06 -> 6, + 3 */
    assert_int_equal(commute_minutes(42.054035, -93.619754, IMPORT_AMES_CENTRE_LAT, IMPORT_AMES_CENTRE_LON), 9);
    /* Sacramento row 1: 7.98 km -> 15.6 -> 16, + 3 */
    assert_int_equal(commute_minutes(38.631913, -121.434879, IMPORT_SACRAMENTO_CENTRE_LAT,
                                     IMPORT_SACRAMENTO_CENTRE_LON), 19);
    /* the Iowa State Capitol in Des Moines to Ames City Hall: 48.9 km -> 95.3 -> 95, + 3 */
    assert_int_equal(commute_minutes(41.5868, -93.6250, IMPORT_AMES_CENTRE_LAT, IMPORT_AMES_CENTRE_LON), 98);
    /* symmetric */
    assert_int_equal(commute_minutes(IMPORT_AMES_CENTRE_LAT, IMPORT_AMES_CENTRE_LON, 41.5868, -93.6250), 98);
}

static void test_format_parse(void **state)
{
    (void)state;
    import_format_t f;
    assert_true(import_format_parse("ames", &f));
    assert_int_equal(f, IMPORT_AMES);
    assert_true(import_format_parse("sacramento", &f));
    assert_int_equal(f, IMPORT_SACRAMENTO);
    assert_true(import_format_parse("json", &f));
    assert_int_equal(f, IMPORT_JSON);
    assert_false(import_format_parse("xml", &f));
    assert_false(import_format_parse(NULL, &f));
}

static void test_ames(void **state)
{
    fixture_t *f = *state;
    size_t len;
    char *data = read_fixture("ames_small.csv", &len);
    import_report_t *rep = malloc(sizeof *rep);
    err_t e;
    err_clear(&e);
    assert_true(import_run(f->s, data, len, IMPORT_AMES, NULL, 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 40);
    assert_int_equal(rep->updated + rep->unchanged + rep->rejected, 0);
    assert_int_equal(count_rows(f->s), 40);

    /* row 1: North_Ames, One_Story, 3 bedrooms, 1 full + 0 half baths, 2-car garage, 2 fireplaces,
     * Central_Air Y, 210 sq ft deck, 1080 sq ft basement, 62 sq ft open porch, no pool */
    assert_column(f, "title", "ames", "1", "3-bed One Story in North Ames");
    assert_column(f, "location", "ames", "1", "North Ames, Ames, IA");
    assert_column(f, "city", "ames", "1", "Ames");
    assert_column(f, "state", "ames", "1", "IA");
    assert_column(f, "zip", "ames", "1", NULL);
    assert_column(f, "bathrooms", "ames", "1", "1.0");
    assert_column(f, "bedrooms", "ames", "1", "3");
    assert_column(f, "size_sqft", "ames", "1", "1656");
    assert_column(f, "lot_size_sqft", "ames", "1", "31770");
    assert_column(f, "year_built", "ames", "1", "1960");
    assert_column(f, "price_cents", "ames", "1", "21500000");
    assert_column(f, "property_type", "ames", "1", "single_family");
    assert_column(f, "status", "ames", "1", "active");
    assert_column(f, "commute_time", "ames", "1", "9");
    assert_column(f, "school_rating", "ames", "1", NULL);
    assert_column(f, "amenities", "ames", "1", "[\"garage\",\"fireplace\",\"central_air\",\"deck\",\"basement\",\"porch\"]");
    assert_column(f, "json_extract(features, '$.Gr_Liv_Area')", "ames", "1", "1656");
    assert_column(f, "json_type(features, '$.Gr_Liv_Area')", "ames", "1", "integer");
    assert_column(f, "json_extract(features, '$.Sale_Type')", "ames", "1", "WD ");
    assert_column(f, "json_extract(features, '$.Latitude')", "ames", "1", "42.054035");
    char *desc = column(f, "description", "ames", "1");
    assert_non_null(desc);
    assert_non_null(strstr(desc, "Built in 1960"));
    assert_non_null(strstr(desc, "1,656 sq ft"));
    assert_non_null(strstr(desc, "2-car garage"));
    free(desc);
    /* row 2: one screened porch, no fireplace; 40: the last row */
    assert_column(f, "amenities", "ames", "2", "[\"garage\",\"central_air\",\"deck\",\"basement\",\"porch\"]");
    char *t40 = column(f, "title", "ames", "40");
    assert_non_null(t40);
    free(t40);

    /* again: nothing new, nothing duplicated */
    assert_true(import_run(f->s, data, len, IMPORT_AMES, NULL, 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 0);
    assert_int_equal(rep->unchanged + rep->updated, 40);
    assert_int_equal(rep->unchanged, 40);
    assert_int_equal(count_rows(f->s), 40);

    /* a changed price updates that row only */
    char *p = strstr(data, ",215000,");
    assert_non_null(p);
    memcpy(p, ",215001,", 8);
    assert_true(import_run(f->s, data, len, IMPORT_AMES, NULL, 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 0);
    assert_int_equal(rep->updated, 1);
    assert_int_equal(rep->unchanged, 39);
    assert_column(f, "price_cents", "ames", "1", "21500100");
    assert_int_equal(count_rows(f->s), 40);
    free(rep);
    free(data);
}

static void test_sacramento(void **state)
{
    fixture_t *f = *state;
    size_t len;
    char *data = read_fixture("sacramento_small.csv", &len);
    import_report_t *rep = malloc(sizeof *rep);
    err_t e;
    err_clear(&e);
    assert_true(import_run(f->s, data, len, IMPORT_SACRAMENTO, NULL, 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 40);
    assert_int_equal(rep->rejected, 0);
    assert_column(f, "title", "sacramento", "1", "2-bed Residential in Sacramento");
    assert_column(f, "city", "sacramento", "1", "Sacramento");
    assert_column(f, "zip", "sacramento", "1", "95838");
    assert_column(f, "location", "sacramento", "1", "Sacramento, CA 95838");
    assert_column(f, "commute_time", "sacramento", "1", "19");
    assert_column(f, "amenities", "sacramento", "1", "[]");
    assert_column(f, "json_extract(features, '$.zip')", "sacramento", "1", "z95838");

    /* --source: the same rows under another source are other rows */
    assert_true(import_run(f->s, data, len, IMPORT_SACRAMENTO, "sac-2008", 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 40);
    assert_int_equal(count_rows(f->s), 80);
    free(rep);
    free(data);
}

static void test_rejections(void **state)
{
    fixture_t *f = *state;
    /* real rows of sacramento.csv (rows 1-4), with the sqft of row 2 set to 0, the price of row 3
     * to text and a field dropped from row 4; then a multi-word city */
    const char *csv =
        "\"city\",\"zip\",\"beds\",\"baths\",\"sqft\",\"type\",\"price\",\"latitude\",\"longitude\"\n"
        "\"SACRAMENTO\",\"z95838\",2,1,836,\"Residential\",59222,38.631913,-121.434879\n"
        "\"SACRAMENTO\",\"z95823\",3,1,0,\"Residential\",68212,38.478902,-121.431028\n"
        "\"SACRAMENTO\",\"z95815\",2,1,796,\"Residential\",abc,38.618305,-121.443839\n"
        "\"SACRAMENTO\",\"z95815\",2,1,852,\"Residential\",69307,38.616835\n"
        "\"EL_DORADO_HILLS\",\"z95762\",3,2,1500,\"Multi_Family\",300000,38.68,-121.08\n";
    import_report_t *rep = malloc(sizeof *rep);
    err_t e;
    err_clear(&e);
    assert_true(import_run(f->s, csv, strlen(csv), IMPORT_SACRAMENTO, NULL, 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 2);
    assert_int_equal(rep->rejected, 3);
    assert_int_equal(rep->nrejections, 3);
    assert_int_equal(rep->rejections[0].line, 3);
    assert_non_null(strstr(rep->rejections[0].message, "size_sqft"));
    assert_int_equal(rep->rejections[1].line, 4);
    assert_non_null(strstr(rep->rejections[1].message, "price"));
    assert_int_equal(rep->rejections[2].line, 5);
    assert_non_null(strstr(rep->rejections[2].message, "fields"));
    assert_column(f, "city", "sacramento", "5", "El Dorado Hills");
    assert_column(f, "title", "sacramento", "5", "3-bed Multi-Family in El Dorado Hills");
    assert_column(f, "property_type", "sacramento", "5", "multi_family");

    /* a broken file is a fatal error, not a rejection */
    const char *broken = "city,zip,beds,baths,sqft,type,price,latitude,longitude\n\"SACRA,z1\n";
    assert_false(import_run(f->s, broken, strlen(broken), IMPORT_SACRAMENTO, NULL, 0, NULL, rep, &e));
    assert_non_null(strstr(e.message, "line 2"));
    err_clear(&e);
    const char *nohdr = "\"city\",\"zip\"\n\"X\",\"z1\"\n";
    assert_false(import_run(f->s, nohdr, strlen(nohdr), IMPORT_SACRAMENTO, NULL, 0, NULL, rep, &e));
    assert_non_null(strstr(e.message, "beds"));
    free(rep);
}

static void test_json(void **state)
{
    fixture_t *f = *state;
    size_t len;
    char *data = read_fixture("properties.json", &len);
    import_report_t *rep = malloc(sizeof *rep);
    err_t e;
    err_clear(&e);
    assert_true(import_run(f->s, data, len, IMPORT_JSON, NULL, 7, NULL, rep, &e));
    assert_int_equal(rep->inserted, 5);
    assert_int_equal(rep->rejected, 1);
    assert_int_equal(rep->rejections[0].line, 20);
    assert_non_null(strstr(rep->rejections[0].message, "price"));
    assert_column(f, "title", "json", "fx-1", "Bright 2-bed condo near the park");
    assert_column(f, "amenities", "json", "fx-1", "[\"central_air\",\"pool\"]");
    assert_column(f, "owner_id", "json", "fx-1", "7");
    assert_column(f, "price_cents", "json", "fx-2", "34950050");
    assert_column(f, "status", "agent-feed", "fx-3", "pending");
    assert_int_equal(count_rows(f->s), 5);

    assert_true(import_run(f->s, data, len, IMPORT_JSON, NULL, 7, NULL, rep, &e));
    assert_int_equal(rep->inserted, 0);
    assert_int_equal(rep->unchanged + rep->updated, 5);
    assert_int_equal(count_rows(f->s), 5);

    /* NDJSON: a line without external_id and a line that is not JSON are rejected by line */
    const char *nd = "{\"external_id\":\"n1\",\"title\":\"A\",\"price\":1,\"location\":\"L\",\"bedrooms\":1,"
                     "\"bathrooms\":1,\"size_sqft\":10}\n"
                     "{\"title\":\"B\",\"price\":1,\"location\":\"L\",\"bedrooms\":1,\"bathrooms\":1,\"size_sqft\":10}\n"
                     "{not json\n"
                     "\n"
                     "{\"external_id\":\"n2\",\"title\":\"C\",\"price\":2,\"location\":\"L\",\"bedrooms\":1,"
                     "\"bathrooms\":1,\"size_sqft\":10,\"unknown_field\":1}\n"
                     "{\"external_id\":\"n3\",\"title\":\"D\",\"price\":3,\"location\":\"L\",\"bedrooms\":1,"
                     "\"bathrooms\":1,\"size_sqft\":10}";
    assert_true(import_run(f->s, nd, strlen(nd), IMPORT_JSON, "feed", 0, NULL, rep, &e));
    assert_int_equal(rep->inserted, 2);
    assert_int_equal(rep->rejected, 3);
    assert_int_equal(rep->rejections[0].line, 2);
    assert_non_null(strstr(rep->rejections[0].message, "external_id"));
    assert_int_equal(rep->rejections[1].line, 3);
    assert_int_equal(rep->rejections[2].line, 5);
    assert_non_null(strstr(rep->rejections[2].message, "unknown_field"));
    assert_column(f, "title", "feed", "n3", "D");

    /* a malformed array is fatal */
    const char *bad = "[{\"external_id\":\"z\"} {}]";
    assert_false(import_run(f->s, bad, strlen(bad), IMPORT_JSON, NULL, 0, NULL, rep, &e));
    err_clear(&e);
    const char *csv = "a,b\n1,2\n";
    assert_false(import_run(f->s, csv, strlen(csv), IMPORT_JSON, NULL, 0, NULL, rep, &e));
    assert_non_null(strstr(e.message, "not JSON"));
    err_clear(&e);
    assert_true(import_run(f->s, " [ ] ", 5, IMPORT_JSON, NULL, 0, NULL, rep, &e));
    assert_int_equal(rep->inserted + rep->rejected, 0);
    free(rep);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commute_minutes),
        cmocka_unit_test(test_format_parse),
        cmocka_unit_test_setup_teardown(test_ames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sacramento, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
