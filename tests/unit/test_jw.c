/* test_jw: the JSON writer: exact money, numbers that read back as the same double, RFC 3339
 * times, escaping and commas between values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/jw.h"
#include "base/util.h"

static char *write_one(void (*fn)(jw_t *, void *), void *arg)
{
    static char out[256];
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    fn(&w, arg);
    snprintf(out, sizeof out, "%s", buf_cstr(&b));
    buf_free(&b);
    return out;
}

static void money(jw_t *w, void *arg) { jw_money(w, *(int64_t *)arg); }
static void dbl(jw_t *w, void *arg) { jw_double(w, *(double *)arg); }
static void tm_(jw_t *w, void *arg) { jw_time(w, *(int64_t *)arg); }

static void test_money_exact(void **state)
{
    (void)state;
    struct { int64_t cents; const char *text; } cases[] = {
        {19999999, "199999.99"}, {25000050, "250000.5"}, {100, "1"}, {1, "0.01"}, {10, "0.1"},
        {0, "0"}, {-150, "-1.5"}, {MONEY_MAX_CENTS, "1000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(write_one(money, &cases[i].cents), cases[i].text);
}

static void test_double_round_trips(void **state)
{
    (void)state;
    double vs[] = {42.054035, -93.619754, 2.5, 0.1, 1e-7, 123456789.123, -0.000001, 3.14159265358979,
                   1e20, -121.434879, 0.5, 1.0 / 3.0, 5e-324, 1.7976931348623157e308, -0.0, 3.44444e+119, -1e300};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        const char *s = write_one(dbl, &vs[i]);
        assert_true(strtod(s, NULL) == vs[i]);
    }
    double lat = 42.054035, two = 2;
    assert_string_equal(write_one(dbl, &lat), "42.054035");
    assert_string_equal(write_one(dbl, &two), "2");
}

static void test_time_rfc3339(void **state)
{
    (void)state;
    int64_t t = 1700000000123456LL; /* 2023-11-14T22:13:20.123456Z */
    assert_string_equal(write_one(tm_, &t), "\"2023-11-14T22:13:20.123456Z\"");
    int64_t epoch = 0;
    assert_string_equal(write_one(tm_, &epoch), "\"1970-01-01T00:00:00.000000Z\"");
}

static void test_structure_and_escaping(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    jw_obj_begin(&w);
    jw_kstr(&w, "a", "q\"\\\n\x01");
    jw_key(&w, "list");
    jw_arr_begin(&w);
    jw_int(&w, -5);
    jw_null(&w);
    jw_bool(&w, true);
    jw_arr_end(&w);
    jw_kstr(&w, "n", NULL);
    jw_obj_end(&w);
    assert_string_equal(buf_cstr(&b), "{\"a\":\"q\\\"\\\\\\n\\u0001\",\"list\":[-5,null,true],\"n\":null}");
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_money_exact),
        cmocka_unit_test(test_double_round_trips),
        cmocka_unit_test(test_time_rfc3339),
        cmocka_unit_test(test_structure_and_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
