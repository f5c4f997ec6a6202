/* test_cron: cron expressions: what parses into which bitmasks (lists, ranges, steps, names,
 * macros, 7 as Sunday), the exact message of every kind of refusal, and cron_next() against times
 * worked out by hand: month ends, leap days, the turn of the year, the day-of-month OR
 * day-of-week rule, and expressions that never fire.
 *
 * The one idea: expected times are written as civil UTC dates and turned into unix time by glibc's
 * timegm(), which shares nothing with cron.c's own calendar arithmetic; a few are also pinned as
 * literal numbers, so the helper itself is checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "domain/cron.h"

#define MIN_US INT64_C(60000000)
#define BITS(lo, hi) ((~UINT64_C(0) >> (63 - (hi))) & (~UINT64_C(0) << (lo))) /* bits lo..hi */

/* Unix microseconds of a UTC date and time. */
static int64_t at(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * 1000000;
}

static cron_t parse_ok(const char *expr)
{
    cron_t c;
    err_t e;
    err_clear(&e);
    if (!cron_parse(expr, &c, &e))
        fail_msg("'%s' was refused: %s", expr, e.message);
    assert_int_equal(e.code, ERR_NONE);
    return c;
}

static int64_t next_of(const char *expr, int64_t after)
{
    cron_t c = parse_ok(expr);
    return cron_next(&c, after);
}

#define expect_next(expr, after, want) assert_int_equal(next_of(expr, after), want)

static void assert_same(const cron_t *a, const cron_t *b)
{
    assert_int_equal(a->minute, b->minute);
    assert_int_equal(a->hour, b->hour);
    assert_int_equal(a->dom, b->dom);
    assert_int_equal(a->month, b->month);
    assert_int_equal(a->dow, b->dow);
    assert_int_equal(a->dom_star, b->dom_star);
    assert_int_equal(a->dow_star, b->dow_star);
}

static void test_the_helper(void **state)
{
    (void)state;
    assert_int_equal(at(1970, 1, 1, 0, 0), 0);
    assert_int_equal(at(2028, 2, 29, 0, 0), INT64_C(1835395200) * 1000000);
    assert_int_equal(at(2025, 1, 1, 0, 0), INT64_C(1735689600) * 1000000);
    assert_int_equal(at(2000, 2, 29, 0, 0), INT64_C(951782400) * 1000000);
}

static void test_parse_fields(void **state)
{
    (void)state;
    cron_t c = parse_ok("* * * * *");
    assert_int_equal(c.minute, BITS(0, 59));
    assert_int_equal(c.hour, BITS(0, 23));
    assert_int_equal(c.dom, BITS(1, 31));
    assert_int_equal(c.month, BITS(1, 12));
    assert_int_equal(c.dow, BITS(0, 6)); /* 0-7 with 7 folded into 0 */
    assert_true(c.dom_star);
    assert_true(c.dow_star);

    c = parse_ok("5 4 3 2 1");
    assert_int_equal(c.minute, 1u << 5);
    assert_int_equal(c.hour, 1u << 4);
    assert_int_equal(c.dom, 1u << 3);
    assert_int_equal(c.month, 1u << 2);
    assert_int_equal(c.dow, 1u << 1);
    assert_false(c.dom_star);
    assert_false(c.dow_star);

    c = parse_ok("*/15 0-23/6 1-31/10 */5 */2");
    assert_int_equal(c.minute, (1u << 0) | (1u << 15) | (1u << 30) | (UINT64_C(1) << 45));
    assert_int_equal(c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    assert_int_equal(c.dom, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    assert_int_equal(c.month, (1u << 1) | (1u << 6) | (1u << 11));
    assert_int_equal(c.dow, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 6));
    assert_false(c.dom_star); /* 1-31/10 is restricted, even though it could be all days */
    assert_true(c.dow_star);  /* begins with '*' */
    assert_false(parse_ok("* * 1-31 * *").dom_star);
    assert_true(parse_ok("* * */1 * *").dom_star);

    c = parse_ok("5-20/5 10/4 3/14 11/1 1/2");
    assert_int_equal(c.minute, (1u << 5) | (1u << 10) | (1u << 15) | (1u << 20));
    assert_int_equal(c.hour, (1u << 10) | (1u << 14) | (1u << 18) | (1u << 22)); /* N/S: N to the max */
    assert_int_equal(c.dom, (1u << 3) | (1u << 17) | (1u << 31));
    assert_int_equal(c.month, (1u << 11) | (1u << 12));
    assert_int_equal(c.dow, (1u << 1) | (1u << 3) | (1u << 5) | (1u << 0)); /* 7 is Sunday */

    c = parse_ok("0,1,2,58-59 1,1,1 31,1 12,1 0,7");
    assert_int_equal(c.minute, BITS(0, 2) | BITS(58, 59));
    assert_int_equal(c.hour, 1u << 1);
    assert_int_equal(c.dom, (1u << 1) | (1u << 31));
    assert_int_equal(c.month, (1u << 1) | (1u << 12));
    assert_int_equal(c.dow, 1u); /* 0 and 7 are the same day */
    assert_int_equal(parse_ok("0 0 * * 7").dow, 1u);
    assert_int_equal(parse_ok("0 0 * * 5-7").dow, (1u << 5) | (1u << 6) | 1u);
    assert_int_equal(parse_ok("05 007 * * *").minute, 1u << 5);
    assert_int_equal(parse_ok("*/59 * * * *").minute, (1u << 0) | (UINT64_C(1) << 59));
    assert_int_equal(parse_ok("59 * * * *").minute, UINT64_C(1) << 59);
}

static void test_parse_names(void **state)
{
    (void)state;
    cron_t c = parse_ok("0 0 * JAN-mar,Dec Mon-FRI");
    assert_int_equal(c.month, BITS(1, 3) | (1u << 12));
    assert_int_equal(c.dow, BITS(1, 5));
    c = parse_ok("0 0 * jun/3 sat,sun");
    assert_int_equal(c.month, (1u << 6) | (1u << 9) | (1u << 12));
    assert_int_equal(c.dow, (1u << 6) | 1u);
    assert_int_equal(parse_ok("0 0 * * fri-sun").dow, (1u << 5) | (1u << 6) | 1u); /* sun ends a range as 7 */
    assert_int_equal(parse_ok("0 0 * * sun-tue").dow, BITS(0, 2));                /* and starts one as 0 */
    assert_int_equal(parse_ok("0 0 * * mon-sun/2").dow, (1u << 1) | (1u << 3) | (1u << 5) | 1u);
    assert_int_equal(parse_ok("0 0 * 2-apr 1-wed").month, BITS(2, 4)); /* numbers and names mix */
    assert_int_equal(parse_ok("0 0 * * thu").dow, 1u << 4);
}

static void test_parse_macros_and_spacing(void **state)
{
    (void)state;
    static const struct {
        const char *macro, *expr;
    } cases[] = {
        {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"},  {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},  {"@DAILY", "0 0 * * *"},    {"  @Weekly \t", "0 0 * * 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cron_t a = parse_ok(cases[i].macro), b = parse_ok(cases[i].expr);
        assert_same(&a, &b);
    }
    cron_t a = parse_ok("  0\t0  1 \t 1   *  "), b = parse_ok("0 0 1 1 *");
    assert_same(&a, &b);
    a = parse_ok("0 0 * * 0\n");
    b = parse_ok("@weekly");
    assert_same(&a, &b);
}

/* `expr` is refused with ERR_VALIDATION and exactly `want`. */
static void refused(const char *expr, const char *want)
{
    cron_t c;
    unsigned char before[sizeof c];
    memset(&c, 0x5a, sizeof c);
    memset(before, 0x5a, sizeof before);
    err_t e;
    err_clear(&e);
    if (cron_parse(expr, &c, &e))
        fail_msg("'%s' was accepted, want \"%s\"", expr, want);
    if (e.code != ERR_VALIDATION || strcmp(e.message, want) != 0)
        fail_msg("'%s': got %s \"%s\", want \"%s\"", expr, err_code_name(e.code), e.message, want);
    assert_true(strlen(e.message) <= 200);
    assert_memory_equal(&c, before, sizeof c); /* *out untouched */
}

static void test_parse_errors(void **state)
{
    (void)state;
    /* the shape */
    refused(NULL, "the expression is empty");
    refused("", "the expression is empty");
    refused(" \t ", "the expression is empty");
    refused("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4");
    refused("0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6");
    refused("*", "expected 5 fields (minute hour day-of-month month day-of-week), got 1");
    /* out of range, in every field */
    refused("60 * * * *", "minute: 60 is out of range 0-59");
    refused("* 24 * * *", "hour: 24 is out of range 0-23");
    refused("* * 0 * *", "day of month: 0 is out of range 1-31");
    refused("* * 32 * *", "day of month: 32 is out of range 1-31");
    refused("* * * 0 *", "month: 0 is out of range 1-12");
    refused("* * * 13 *", "month: 13 is out of range 1-12");
    refused("* * * * 8", "day of week: 8 is out of range 0-7");
    refused("0-60 * * * *", "minute: 60 is out of range 0-59");
    refused("* 1,2,99 * * *", "hour: 99 is out of range 0-23");
    refused("99999999999999999999 * * * *", "minute: 999999999999... is out of range 0-59");
    /* ranges */
    refused("5-2 * * * *", "minute: range 5-2 runs backwards");
    refused("* * * * fri-mon", "day of week: range fri-mon runs backwards");
    refused("* * * dec-jan *", "month: range dec-jan runs backwards");
    refused("1- * * * *", "minute: the end of the range is missing");
    refused("-1 * * * *", "minute: unexpected '-'");
    refused("1-2-3 * * * *", "minute: unexpected '-'");
    refused("*-5 * * * *", "minute: unexpected '-'");
    /* steps */
    refused("*/0 * * * *", "minute: step 0 is out of range 1-59");
    refused("*/60 * * * *", "minute: step 60 is out of range 1-59");
    refused("* */24 * * *", "hour: step 24 is out of range 1-23");
    refused("* * * * */8", "day of week: step 8 is out of range 1-7");
    refused("*/ * * * *", "minute: the step after '/' is missing");
    refused("*/x * * * *", "minute: the step after '/' must be a number");
    refused("* * * * */mon", "day of week: the step after '/' must be a number");
    refused("1/2/3 * * * *", "minute: unexpected '/'");
    refused("/5 * * * *", "minute: unexpected '/'");
    /* lists */
    refused("1,,2 * * * *", "minute: empty list item");
    refused("1, * * * *", "minute: empty list item");
    refused(",1 * * * *", "minute: empty list item");
    refused("* * * * ,", "day of week: empty list item");
    /* names */
    refused("* * * foo *", "month: unknown name 'foo'");
    refused("* * * * monday", "day of week: unknown name 'monday'");
    refused("* * * * jan", "day of week: unknown name 'jan'");
    refused("* * * mon *", "month: unknown name 'mon'");
    refused("* mon * * *", "hour: 'mon' is not a number");
    refused("a * * * *", "minute: 'a' is not a number");
    refused("* * * * abcdefghijklmnopq", "day of week: unknown name 'abcdefghijkl...'");
    /* stray characters */
    refused("5a * * * *", "minute: unexpected 'a'");
    refused("** * * * *", "minute: unexpected '*'");
    refused("? * * * *", "minute: unexpected '?'");
    refused("L * * * *", "minute: 'L' is not a number");
    refused("* * 15W * *", "day of month: unexpected 'W'");
    refused("1\xc3\xa9 * * * *", "minute: unexpected byte 0xc3");
    refused("* * * * 1\x01", "day of week: unexpected byte 0x01");
    /* macros */
    refused("@reboot", "@reboot is not supported: a schedule needs times");
    refused("@daily 0", "@daily stands alone: nothing may follow it");
    refused("@often",
            "unknown macro @often: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly");
    refused("@", "unknown macro: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly");
    refused("@\xff", "unknown macro: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly");
    refused("0 0 * * * @daily", "expected 5 fields (minute hour day-of-month month day-of-week), got 6");
    /* length */
    char big[CRON_MAX_LEN + 2];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "* * * * *", 9);
    refused(big, "the expression is longer than 1000 characters");
    big[CRON_MAX_LEN] = '\0'; /* exactly at the limit: fine */
    parse_ok(big);
}

static void test_next_basics(void **state)
{
    (void)state;
    int64_t t = at(2024, 1, 1, 0, 0);
    /* strictly after, on a minute boundary */
    expect_next("* * * * *", t, t + MIN_US);
    expect_next("* * * * *", t - 1, t);
    expect_next("* * * * *", t + 1, t + MIN_US);
    expect_next("* * * * *", t + MIN_US - 1, t + MIN_US);
    expect_next("0 0 * * *", t, at(2024, 1, 2, 0, 0));
    /* steps */
    expect_next("*/15 * * * *", at(2024, 5, 5, 10, 7), at(2024, 5, 5, 10, 15));
    expect_next("*/15 * * * *", at(2024, 5, 5, 10, 15), at(2024, 5, 5, 10, 30));
    expect_next("*/15 * * * *", at(2024, 5, 5, 10, 45), at(2024, 5, 5, 11, 0));
    expect_next("*/15 * * * *", at(2023, 12, 31, 23, 50), at(2024, 1, 1, 0, 0));
    expect_next("0 9-17/4 * * *", at(2024, 5, 5, 13, 30), at(2024, 5, 5, 17, 0));
    expect_next("0 9-17/4 * * *", at(2024, 5, 5, 17, 0), at(2024, 5, 6, 9, 0));
    expect_next("10/20 * * * *", at(2024, 5, 5, 8, 51), at(2024, 5, 5, 9, 10));
    expect_next("30 2 * * *", at(2024, 5, 5, 2, 30), at(2024, 5, 6, 2, 30));
    expect_next("30 2 * * *", at(2024, 5, 5, 2, 29) + 59999999, at(2024, 5, 5, 2, 30));
    /* a later hour with no minute left in this one */
    expect_next("5 */2 * * *", at(2024, 5, 5, 10, 6), at(2024, 5, 5, 12, 5));
    expect_next("5,55 3,4 * * *", at(2024, 5, 5, 3, 56), at(2024, 5, 5, 4, 5));
    expect_next("5,55 3,4 * * *", at(2024, 5, 5, 4, 56), at(2024, 5, 6, 3, 5));
}

static void test_next_month_ends_and_years(void **state)
{
    (void)state;
    /* the 31st skips the short months */
    expect_next("0 0 31 * *", at(2024, 4, 15, 0, 0), at(2024, 5, 31, 0, 0));
    expect_next("0 0 31 * *", at(2024, 5, 31, 0, 0), at(2024, 7, 31, 0, 0));
    expect_next("0 0 31 * *", at(2024, 8, 31, 0, 0), at(2024, 10, 31, 0, 0));
    expect_next("0 12 30 * *", at(2023, 1, 30, 12, 0), at(2023, 3, 30, 12, 0)); /* no Feb 30 */
    expect_next("0 0 29 * *", at(2023, 1, 30, 0, 0), at(2023, 3, 29, 0, 0));   /* 2023 is not leap */
    expect_next("0 0 29 * *", at(2024, 1, 30, 0, 0), at(2024, 2, 29, 0, 0));   /* 2024 is */
    /* leap days */
    expect_next("0 0 29 2 *", at(2024, 3, 1, 0, 0), at(2028, 2, 29, 0, 0));
    expect_next("0 0 29 2 *", at(2028, 2, 28, 23, 59), at(2028, 2, 29, 0, 0));
    expect_next("0 0 29 2 *", at(1999, 1, 1, 0, 0), at(2000, 2, 29, 0, 0)); /* 2000 is leap */
    expect_next("0 0 29 2 *", at(2096, 3, 1, 0, 0), -1);                     /* 2100 is not: 2104 is too far */
    expect_next("0 0 29 2 *", at(2096, 2, 28, 0, 0), at(2096, 2, 29, 0, 0));
    expect_next("59 23 28-29 2 *", at(2028, 2, 28, 23, 59), at(2028, 2, 29, 23, 59));
    expect_next("59 23 28-29 2 *", at(2027, 2, 28, 23, 59), at(2028, 2, 28, 23, 59));
    expect_next("0 0 * 2 *", at(2023, 2, 28, 0, 0), at(2024, 2, 1, 0, 0));
    /* the turn of the year */
    expect_next("59 23 31 12 *", at(2024, 12, 31, 23, 59), at(2025, 12, 31, 23, 59));
    expect_next("59 23 31 12 *", at(2024, 12, 31, 23, 58), at(2024, 12, 31, 23, 59));
    expect_next("0 0 1 1 *", at(2024, 12, 31, 23, 59) + 30000000, at(2025, 1, 1, 0, 0));
    expect_next("* * * * *", at(2024, 12, 31, 23, 59), at(2025, 1, 1, 0, 0));
    expect_next("0 0 1 1 *", at(2024, 6, 15, 0, 0), at(2025, 1, 1, 0, 0));
    expect_next("0 0 * 1 *", at(2024, 1, 31, 0, 0), at(2025, 1, 1, 0, 0));
    expect_next("0 0 1 3 *", at(2024, 2, 29, 23, 59), at(2024, 3, 1, 0, 0));
}

static void test_next_day_rule(void **state)
{
    (void)state;
    /* both restricted: the 13th OR a Friday (2024-09-01 is a Sunday; the 13th is a Friday) */
    expect_next("0 0 13 * 5", at(2024, 9, 1, 0, 0), at(2024, 9, 6, 0, 0));
    expect_next("0 0 13 * 5", at(2024, 9, 6, 0, 0), at(2024, 9, 13, 0, 0));
    expect_next("0 0 13 * 5", at(2024, 9, 13, 0, 0), at(2024, 9, 20, 0, 0));
    expect_next("0 0 13 * mon", at(2024, 9, 10, 0, 0), at(2024, 9, 13, 0, 0)); /* the 13th before Monday 16th */
    expect_next("0 0 13 * mon", at(2024, 9, 13, 0, 0), at(2024, 9, 16, 0, 0));
    expect_next("0 0 1,15 * 3", at(2024, 9, 11, 0, 0), at(2024, 9, 15, 0, 0)); /* Wed 11th, then the 15th */
    expect_next("0 0 1,15 * 3", at(2024, 9, 15, 0, 0), at(2024, 9, 18, 0, 0));
    /* a day of month that never comes still lets the weekday fire (Feb 2024 starts on a Thursday) */
    expect_next("0 0 31 2 mon", at(2024, 1, 1, 0, 0), at(2024, 2, 5, 0, 0));
    expect_next("0 0 30 2 mon", at(2024, 2, 26, 0, 0), at(2025, 2, 3, 0, 0));
    /* one unrestricted: AND */
    expect_next("0 0 * * 1", at(2024, 9, 10, 0, 0), at(2024, 9, 16, 0, 0));
    expect_next("0 0 13 * *", at(2024, 9, 10, 0, 0), at(2024, 9, 13, 0, 0));
    /* a field beginning with '*' counts as unrestricted (Vixie): odd days that are Mondays */
    expect_next("0 0 */2 * 1", at(2024, 9, 10, 0, 0), at(2024, 9, 23, 0, 0));
    expect_next("0 0 1-31/2 * 1", at(2024, 9, 10, 0, 0), at(2024, 9, 11, 0, 0)); /* not '*': OR */
    /* a 13th that is a Sunday or a Friday: the weekday (0 and 5) begins with '*', so AND (in 2024
     * Friday 13 September, Sunday 13 October, Friday 13 December) */
    expect_next("0 0 13 * */5", at(2024, 9, 1, 0, 0), at(2024, 9, 13, 0, 0));
    expect_next("0 0 13 * */5", at(2024, 9, 13, 0, 0), at(2024, 10, 13, 0, 0));
    expect_next("0 0 13 * */5", at(2024, 10, 13, 0, 0), at(2024, 12, 13, 0, 0));
    /* weekdays */
    expect_next("30 8 * * mon-fri", at(2024, 9, 13, 9, 0), at(2024, 9, 16, 8, 30));
    expect_next("30 8 * * mon-fri", at(2024, 9, 16, 8, 0), at(2024, 9, 16, 8, 30));
    expect_next("0 0 * * 7", at(2024, 9, 11, 0, 0), at(2024, 9, 15, 0, 0));
    expect_next("0 0 * * 0", at(2024, 9, 11, 0, 0), at(2024, 9, 15, 0, 0));
    expect_next("0 0 * * sat,sun", at(2024, 9, 15, 0, 0), at(2024, 9, 21, 0, 0));
    expect_next("0 0 * * fri-sun", at(2024, 9, 15, 0, 0), at(2024, 9, 20, 0, 0));
    /* months by name */
    expect_next("0 0 1 jan,jul *", at(2024, 2, 1, 0, 0), at(2024, 7, 1, 0, 0));
    expect_next("0 0 1 jan,jul *", at(2024, 7, 1, 0, 0), at(2025, 1, 1, 0, 0));
    expect_next("15 6 10-12 Nov-Dec/1 *", at(2024, 11, 12, 6, 15), at(2024, 12, 10, 6, 15));
}

static void test_next_macros(void **state)
{
    (void)state;
    expect_next("@hourly", at(2024, 9, 11, 10, 0), at(2024, 9, 11, 11, 0));
    expect_next("@hourly", at(2024, 9, 11, 23, 30), at(2024, 9, 12, 0, 0));
    expect_next("@daily", at(2024, 9, 11, 10, 0), at(2024, 9, 12, 0, 0));
    expect_next("@midnight", at(2024, 2, 28, 10, 0), at(2024, 2, 29, 0, 0));
    expect_next("@weekly", at(2024, 9, 11, 0, 0), at(2024, 9, 15, 0, 0)); /* Wednesday to Sunday */
    expect_next("@weekly", at(2024, 9, 15, 0, 0), at(2024, 9, 22, 0, 0));
    expect_next("@monthly", at(2024, 12, 15, 0, 0), at(2025, 1, 1, 0, 0));
    expect_next("@monthly", at(2024, 1, 31, 0, 0), at(2024, 2, 1, 0, 0));
    expect_next("@yearly", at(2024, 1, 1, 0, 0), at(2025, 1, 1, 0, 0));
    expect_next("@annually", at(2023, 12, 31, 23, 59), at(2024, 1, 1, 0, 0));
}

static void test_next_never_and_extremes(void **state)
{
    (void)state;
    int64_t t = at(2024, 1, 1, 0, 0);
    expect_next("0 0 30 2 *", t, -1);
    expect_next("0 0 31 2 *", t, -1);
    expect_next("0 0 31 4,6,9,11 *", t, -1);
    expect_next("* * 30,31 feb *", t, -1);
    /* before 1970 */
    expect_next("* * * * *", -1, 0);
    expect_next("* * * * *", -MIN_US - 1, -MIN_US);
    expect_next("* * * * *", -MIN_US, 0);
    expect_next("0 0 1 1 *", at(1969, 6, 1, 0, 0), 0);
    expect_next("0 0 29 2 *", at(1900, 1, 1, 0, 0), at(1904, 2, 29, 0, 0)); /* 1900 is not leap */
    expect_next("0 0 * * 4", at(1969, 12, 30, 12, 0), at(1970, 1, 1, 0, 0)); /* a Thursday */
    expect_next("0 0 * * 3", at(1969, 12, 30, 12, 0), at(1969, 12, 31, 0, 0));
    /* the ends of int64_t */
    cron_t c = parse_ok("* * * * *");
    assert_int_equal(cron_next(&c, INT64_MAX), -1);
    int64_t top = (INT64_MAX / MIN_US) * MIN_US; /* the last minute boundary an int64_t holds */
    assert_int_equal(cron_next(&c, top), -1);
    assert_int_equal(cron_next(&c, top - 1), top);
    assert_int_equal(cron_next(&c, top - MIN_US), top);
    int64_t low = cron_next(&c, INT64_MIN);
    assert_true(low > INT64_MIN && low % MIN_US == 0 && low - INT64_MIN <= MIN_US);
    /* a zeroed cron_t (not from cron_parse) never fires */
    cron_t zero;
    memset(&zero, 0, sizeof zero);
    assert_int_equal(cron_next(&zero, t), -1);
}

/* A walk through 2025 with "every 7 hours on the 5th, the 6th and Tuesdays": each step moves
 * forward, and the number of steps is worked out by hand: the 24 days that are a 5th or a 6th, plus
 * the 52 Tuesdays (2025 begins on a Wednesday), less the two that are both (Tuesday 6 May and
 * Tuesday 5 August), each at 0:00, 7:00, 14:00 and 21:00. */
static void test_next_walk(void **state)
{
    (void)state;
    cron_t c = parse_ok("0 */7 5,6 * tue");
    int64_t t = at(2025, 1, 1, 0, 0) - 1, end = at(2026, 1, 1, 0, 0);
    int n = 0;
    for (;;) {
        int64_t nx = cron_next(&c, t);
        assert_true(nx > t);
        if (nx >= end)
            break;
        n++;
        t = nx;
    }
    assert_int_equal(n, (24 + 52 - 2) * 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_helper),
        cmocka_unit_test(test_parse_fields),
        cmocka_unit_test(test_parse_names),
        cmocka_unit_test(test_parse_macros_and_spacing),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_next_basics),
        cmocka_unit_test(test_next_month_ends_and_years),
        cmocka_unit_test(test_next_day_rule),
        cmocka_unit_test(test_next_macros),
        cmocka_unit_test(test_next_never_and_extremes),
        cmocka_unit_test(test_next_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
