/* fuzz_cron: cron expressions (domain/cron.c): the parser over arbitrary text, and for every
 * expression it accepts, cron_next() checked against a slow reference.
 *
 * The input is the expression, up to the first NUL; 8 more bytes after a NUL, if present, are one
 * more instant to search from (any int64_t), besides a few fixed ones and two picked by a hash of
 * the input.
 *
 * The one idea: the reference decomposes times with glibc's gmtime_r(), which shares nothing with
 * cron.c's calendar arithmetic, and checks each field against the masks. With it, each answer of
 * cron_next(after) is proved to be the first match, not merely a match: it is after `after`, on a
 * minute boundary and matches; no minute from `after` up to it matches (scanned minute by minute
 * for up to two days, then day by day, which suffices because every hour and minute mask is
 * non-empty); and an answer of -1 is checked the same way over the five years it covers. A
 * refusal must be ERR_VALIDATION with a short, printable message. A failed check traps. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domain/cron.h"

#define MIN_US INT64_C(60000000)
#define DAY_US (INT64_C(86400) * 1000000)
#define HORIZON_DAYS 1827 /* as cron.c: the day of `after` and the 1827 after it */
#define SCAN_MINUTES (2 * 1440)

static int64_t fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool bit(uint64_t mask, int v) { return v >= 0 && v < 64 && ((mask >> v) & 1); }

/* The reference, for one calendar day (days since 1970-01-01): month and the day rule. */
static bool ref_day(const cron_t *c, int64_t day)
{
    time_t s = (time_t)(day * 86400);
    struct tm tm;
    if (!gmtime_r(&s, &tm))
        __builtin_trap();
    bool dom = bit(c->dom, tm.tm_mday), dow = bit(c->dow, tm.tm_wday);
    bool day_ok = (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
    return bit(c->month, tm.tm_mon + 1) && day_ok;
}

/* The reference for a whole instant: a minute boundary whose every field matches. */
static bool ref_match(const cron_t *c, int64_t us)
{
    if (us % MIN_US != 0)
        return false;
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    if (!gmtime_r(&s, &tm))
        __builtin_trap();
    bool dom = bit(c->dom, tm.tm_mday), dow = bit(c->dow, tm.tm_wday);
    bool day_ok = (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
    return tm.tm_sec == 0 && bit(c->minute, tm.tm_min) && bit(c->hour, tm.tm_hour) &&
           bit(c->month, tm.tm_mon + 1) && day_ok;
}

/* Minute number m (since the epoch) matches; the day's verdict is cached in *cday / *cok. */
static bool ref_minute(const cron_t *c, int64_t m, int64_t *cday, bool *cok)
{
    int64_t day = fdiv(m, 1440);
    int mod = (int)(m - day * 1440);
    if (day != *cday) {
        *cday = day;
        *cok = ref_day(c, day);
    }
    return *cok && bit(c->hour, mod / 60) && bit(c->minute, mod % 60);
}

/* No minute in [from, to) matches: minute by minute for the first SCAN_MINUTES and the last
 * day, day by day in between. */
static void check_none(const cron_t *c, int64_t from, int64_t to)
{
    int64_t cday = INT64_MIN;
    bool cok = false;
    int64_t m = from;
    for (; m < to && m - from < SCAN_MINUTES; m++)
        if (ref_minute(c, m, &cday, &cok))
            __builtin_trap();
    if (m >= to)
        return;
    /* whole days strictly between m's day and to's day: not one may pass the day rule */
    int64_t d0 = fdiv(m, 1440), d1 = fdiv(to, 1440);
    for (; m < to && fdiv(m, 1440) == d0; m++)
        if (ref_minute(c, m, &cday, &cok))
            __builtin_trap();
    for (int64_t d = d0 + 1; d < d1; d++)
        if (ref_day(c, d))
            __builtin_trap();
    for (m = d1 * 1440 > m ? d1 * 1440 : m; m < to; m++)
        if (ref_minute(c, m, &cday, &cok))
            __builtin_trap();
}

/* Checks cron_next(c, after) in full; returns it. */
static int64_t check_next(const cron_t *c, int64_t after)
{
    int64_t r = cron_next(c, after);
    int64_t first = fdiv(after, MIN_US) + 1;      /* the first candidate minute */
    int64_t last_day = fdiv(after, DAY_US) + HORIZON_DAYS;
    int64_t max_minute = INT64_MAX / MIN_US;      /* the last one an int64_t holds */
    if (r == -1) {
        /* nothing on any day the search covers (or, at the very end of int64_t, that fits) */
        int64_t end = (last_day + 1) * 1440;
        if (end > max_minute + 1)
            end = max_minute + 1;
        check_none(c, first, end);
        return r;
    }
    if (r <= after || r % MIN_US != 0 || !ref_match(c, r))
        __builtin_trap();
    if (fdiv(r, DAY_US) > last_day)
        __builtin_trap(); /* beyond the five years */
    check_none(c, first, r / MIN_US);
    /* the answer does not depend on where in the gap the search starts */
    if (cron_next(c, r - 1) != r)
        __builtin_trap();
    if (r >= INT64_MIN + MIN_US && r - MIN_US >= after && cron_next(c, r - MIN_US) != r)
        __builtin_trap();
    return r;
}

/* Appends mask bits lo..hi as a list ("1,5,7") to out. */
static size_t put_list(char *out, size_t at, uint64_t mask, int lo, int hi)
{
    bool firstv = true;
    for (int v = lo; v <= hi; v++) {
        if (!bit(mask, v))
            continue;
        at += (size_t)sprintf(out + at, "%s%d", firstv ? "" : ",", v);
        firstv = false;
    }
    out[at++] = ' ';
    out[at] = '\0';
    return at;
}

static void check_parsed(const cron_t *c)
{
    /* every mask non-empty and inside its field */
    if (!c->minute || (c->minute >> 60) || !c->hour || (c->hour >> 24) || !c->dom || (c->dom & 1) ||
        (c->dom >> 32) || !c->month || (c->month & 1) || (c->month >> 13) || !c->dow || (c->dow >> 7))
        __builtin_trap();
    /* the masks written out as plain lists parse back to the same masks */
    char canon[512];
    size_t at = 0;
    at = put_list(canon, at, c->minute, 0, 59);
    at = put_list(canon, at, c->hour, 0, 23);
    at = put_list(canon, at, c->dom, 1, 31);
    at = put_list(canon, at, c->month, 1, 12);
    put_list(canon, at, c->dow, 0, 6);
    cron_t back;
    err_t e;
    err_clear(&e);
    if (!cron_parse(canon, &back, &e) || back.minute != c->minute || back.hour != c->hour || back.dom != c->dom ||
        back.month != c->month || back.dow != c->dow || back.dom_star || back.dow_star)
        __builtin_trap();
}

static void check_refusal(const err_t *e)
{
    size_t n = strlen(e->message);
    if (e->code != ERR_VALIDATION || n == 0 || n > 200)
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        if (e->message[i] < ' ' || e->message[i] > '~')
            __builtin_trap(); /* printable ASCII: it goes into a JSON error body */
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    size_t slen = strlen(s);

    cron_t c;
    err_t e;
    err_clear(&e);
    if (!cron_parse(s, &c, &e)) {
        check_refusal(&e);
        free(s);
        return 0;
    }
    if (e.code != ERR_NONE)
        __builtin_trap();
    check_parsed(&c);

    /* instants to search from: fixed ones, two from the hash, one from the input */
    int64_t afters[8];
    int n = 0;
    afters[n++] = INT64_C(1709164770) * 1000000; /* 2024-02-28 23:59:30 */
    afters[n++] = -1;                            /* the last microsecond of 1969 */
    afters[n++] = INT64_C(4107456000) * 1000000; /* 2100-02-28 00:00: not a leap year */
    uint64_t h = fnv1a(data, size);
    for (int k = 0; k < 2; k++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        /* 1900 to 2300, on a minute boundary half the time */
        int64_t secs = -INT64_C(2208988800) + (int64_t)((h >> 11) % UINT64_C(12622780800));
        int64_t us = secs * 1000000 + ((h & 1) ? 0 : (int64_t)((h >> 1) % 60000000));
        afters[n++] = (h & 2) ? us - us % MIN_US : us;
    }
    if (size >= slen + 1 + 8) {
        int64_t raw;
        memcpy(&raw, data + slen + 1, 8);
        afters[n++] = raw;
    }
    for (int k = 0; k < n; k++) {
        /* and a second step from the first answer */
        int64_t r = check_next(&c, afters[k]);
        if (r != -1)
            check_next(&c, r);
    }
    free(s);
    return 0;
}
