/* cron: parsing five-field cron expressions into bitmasks, and finding the next time one fires;
 * see cron.h for the syntax.
 *
 * The one idea: cron_next() keeps the candidate time as a civil date (year, month, day, hour,
 * minute, plus its day number since 1970 for the weekday) and always moves it forward to the start
 * of the next unit that could match: a month outside the mask jumps to the 1st of the next month
 * in it, a day that does not match to the next midnight, and within a matching day the hour and
 * minute are the next set bits of their masks. The civil-date arithmetic is Howard Hinnant's
 * days_from_civil / civil_from_days (proleptic Gregorian, UTC), so nothing depends on TZ, libc's
 * time functions, or the range of time_t. */
#include "cron.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "../base/util.h"

#define US_PER_MIN INT64_C(60000000)
#define HORIZON_DAYS 1827 /* five years, two of them leap */

typedef struct field_spec {
    const char *name;
    int lo, hi;
    const char *const *names; /* three-letter names of lo, lo+1, ...; NULL: numbers only */
    int nnames;
} field_spec_t;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, F__COUNT };

static const field_spec_t fields[F__COUNT] = {
    [F_MINUTE] = {"minute", 0, 59, NULL, 0},
    [F_HOUR] = {"hour", 0, 23, NULL, 0},
    [F_DOM] = {"day of month", 1, 31, NULL, 0},
    [F_MONTH] = {"month", 1, 12, month_names, 12},
    [F_DOW] = {"day of week", 0, 7, dow_names, 7},
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

#define ECHO_MAX 12 /* at most this much of the input is quoted back in a message */

static bool unexpected(const field_spec_t *f, char c, err_t *e)
{
    if (c > ' ' && c < 0x7f)
        return err_set(e, ERR_VALIDATION, "%s: unexpected '%c'", f->name, c);
    return err_set(e, ERR_VALIDATION, "%s: unexpected byte 0x%02x", f->name, (unsigned char)c);
}

/* A run of digits at s[*i], saturating at 9999 (every field's bound is far below). */
static int read_digits(const char *s, size_t n, size_t *i)
{
    int v = 0;
    for (; *i < n && is_digit(s[*i]); (*i)++)
        if (v < 10000)
            v = v * 10 + (s[*i] - '0');
    return v > 9999 ? 9999 : v;
}

/* One value at s[*i]: a number in the field's range or, where the field has them, a name. `what`
 * names the value for the message when there is none ("a value", "the end of the range"). */
static bool read_value(const field_spec_t *f, const char *s, size_t n, size_t *i, const char *what, int *out,
                       bool *named, err_t *e)
{
    size_t start = *i;
    *named = false;
    if (*i < n && is_digit(s[*i])) {
        int v = read_digits(s, n, i);
        int len = (int)(*i - start);
        if (v < f->lo || v > f->hi)
            return err_set(e, ERR_VALIDATION, "%s: %.*s%s is out of range %d-%d", f->name,
                           len > ECHO_MAX ? ECHO_MAX : len, s + start, len > ECHO_MAX ? "..." : "", f->lo, f->hi);
        *out = v;
        return true;
    }
    if (*i < n && is_alpha(s[*i])) {
        while (*i < n && is_alpha(s[*i]))
            (*i)++;
        int len = (int)(*i - start);
        int shown = len > ECHO_MAX ? ECHO_MAX : len;
        const char *more = len > ECHO_MAX ? "..." : "";
        if (!f->names)
            return err_set(e, ERR_VALIDATION, "%s: '%.*s%s' is not a number", f->name, shown, s + start, more);
        for (int k = 0; k < f->nnames; k++) {
            if (len == 3 && strncasecmp(s + start, f->names[k], 3) == 0) {
                *out = f->lo + k;
                *named = true;
                return true;
            }
        }
        return err_set(e, ERR_VALIDATION, "%s: unknown name '%.*s%s'", f->name, shown, s + start, more);
    }
    if (*i >= n)
        return err_set(e, ERR_VALIDATION, "%s: %s is missing", f->name, what);
    return unexpected(f, s[*i], e);
}

/* One list item (s, n) of field f, added to *mask. */
static bool parse_item(const field_spec_t *f, const char *s, size_t n, uint64_t *mask, err_t *e)
{
    if (n == 0)
        return err_set(e, ERR_VALIDATION, "%s: empty list item", f->name);
    size_t i = 0;
    int a, b;
    bool single = false, named;
    if (s[0] == '*') {
        a = f->lo, b = f->hi;
        i = 1;
    } else {
        if (!read_value(f, s, n, &i, "a value", &a, &named, e))
            return false;
        b = a;
        single = true;
        if (i < n && s[i] == '-') {
            i++;
            if (!read_value(f, s, n, &i, "the end of the range", &b, &named, e))
                return false;
            if (f == &fields[F_DOW] && named && b == 0)
                b = 7; /* "fri-sun" */
            if (b < a)
                return err_set(e, ERR_VALIDATION, "%s: range %.*s%s runs backwards", f->name,
                               (int)(i > 2 * ECHO_MAX ? 2 * ECHO_MAX : i), s, i > 2 * ECHO_MAX ? "..." : "");
            single = false;
        }
    }
    int step = 1;
    if (i < n && s[i] == '/') {
        i++;
        if (i >= n)
            return err_set(e, ERR_VALIDATION, "%s: the step after '/' is missing", f->name);
        if (!is_digit(s[i]))
            return err_set(e, ERR_VALIDATION, "%s: the step after '/' must be a number", f->name);
        size_t start = i;
        step = read_digits(s, n, &i);
        int len = (int)(i - start);
        if (step < 1 || step > f->hi)
            return err_set(e, ERR_VALIDATION, "%s: step %.*s%s is out of range 1-%d", f->name,
                           len > ECHO_MAX ? ECHO_MAX : len, s + start, len > ECHO_MAX ? "..." : "", f->hi);
        if (single)
            b = f->hi; /* N/S: from N to the end of the field */
    }
    if (i < n)
        return unexpected(f, s[i], e);
    for (int v = a; v <= b; v += step)
        *mask |= UINT64_C(1) << v;
    return true;
}

/* One whole field (s, n): a comma-separated list. */
static bool parse_field(const field_spec_t *f, const char *s, size_t n, uint64_t *mask, err_t *e)
{
    *mask = 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == ',') {
            if (!parse_item(f, s + start, i - start, mask, e))
                return false;
            start = i + 1;
        }
    }
    return true;
}

static const struct {
    const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"},  {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"}, {"@hourly", "0 * * * *"},
};

static bool parse_macro(const char *p, cron_t *out, err_t *e)
{
    size_t n = 0;
    while (p[n] && !is_space(p[n]))
        n++;
    const char *rest = p + n;
    while (is_space(*rest))
        rest++;
    for (size_t k = 0; k < sizeof macros / sizeof macros[0]; k++) {
        if (str_nieq(p, n, macros[k].name)) {
            if (*rest)
                return err_set(e, ERR_VALIDATION, "%s stands alone: nothing may follow it", macros[k].name);
            return cron_parse(macros[k].expr, out, e);
        }
    }
    if (str_nieq(p, n, "@reboot"))
        return err_set(e, ERR_VALIDATION, "@reboot is not supported: a schedule needs times");
    bool plain = n >= 2 && n <= 1 + ECHO_MAX;
    for (size_t i = 1; plain && i < n; i++)
        plain = is_alpha(p[i]) || is_digit(p[i]);
    if (plain)
        return err_set(e, ERR_VALIDATION,
                       "unknown macro %.*s: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight"
                       " or @hourly",
                       (int)n, p);
    return err_set(e, ERR_VALIDATION,
                   "unknown macro: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly");
}

bool cron_parse(const char *expr, cron_t *out, err_t *e)
{
    if (!expr)
        expr = "";
    if (strnlen(expr, CRON_MAX_LEN + 1) > CRON_MAX_LEN)
        return err_set(e, ERR_VALIDATION, "the expression is longer than %d characters", CRON_MAX_LEN);
    const char *p = expr;
    while (is_space(*p))
        p++;
    if (!*p)
        return err_set(e, ERR_VALIDATION, "the expression is empty");
    if (*p == '@')
        return parse_macro(p, out, e);

    const char *tok[F__COUNT];
    size_t len[F__COUNT];
    int nf = 0;
    while (*p) {
        const char *start = p;
        while (*p && !is_space(*p))
            p++;
        if (nf < F__COUNT) {
            tok[nf] = start;
            len[nf] = (size_t)(p - start);
        }
        nf++;
        while (is_space(*p))
            p++;
    }
    if (nf != F__COUNT)
        return err_set(e, ERR_VALIDATION,
                       "expected 5 fields (minute hour day-of-month month day-of-week), got %d", nf);

    cron_t c;
    memset(&c, 0, sizeof c);
    uint64_t *masks[F__COUNT] = {&c.minute, &c.hour, &c.dom, &c.month, &c.dow};
    for (int k = 0; k < F__COUNT; k++)
        if (!parse_field(&fields[k], tok[k], len[k], masks[k], e))
            return false;
    if (c.dow & (UINT64_C(1) << 7))
        c.dow = (c.dow | 1) & ~(UINT64_C(1) << 7); /* 7 is Sunday too */
    c.dom_star = tok[F_DOM][0] == '*';
    c.dow_star = tok[F_DOW][0] == '*';
    *out = c;
    return true;
}

/* --- civil dates (proleptic Gregorian, day 0 = 1970-01-01) --- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;                                         /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;       /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;                 /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11], from March */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* The lowest set bit of `mask` at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask &= ~UINT64_C(0) << from;
    return mask ? __builtin_ctzll(mask) : -1;
}

static bool day_matches(const cron_t *c, int dom, int dow)
{
    bool a = (c->dom >> dom) & 1, b = (c->dow >> dow) & 1;
    return (c->dom_star || c->dow_star) ? a && b : a || b;
}

int64_t cron_next(const cron_t *c, int64_t after_us)
{
    if (!c->minute || !c->hour || !c->dom || !c->month || !c->dow)
        return -1; /* not from cron_parse */
    int64_t first = floor_div(after_us, US_PER_MIN) + 1; /* minutes since the epoch */
    int64_t day = floor_div(first, 1440);
    int64_t last = floor_div(after_us, US_PER_MIN * 1440) + HORIZON_DAYS;
    int h = (int)(first - day * 1440) / 60, mi = (int)(first - day * 1440) % 60;
    int64_t y;
    int mo, d;
    civil_from_days(day, &y, &mo, &d);

    while (day <= last) {
        if (!((c->month >> mo) & 1)) {
            /* to the 1st of the next month in the mask */
            int nm = next_bit(c->month, mo + 1);
            if (nm < 0)
                y++, nm = next_bit(c->month, 1);
            mo = nm, d = 1, h = 0, mi = 0;
            day = days_from_civil(y, mo, d);
            continue;
        }
        int64_t dow = day % 7;
        if (day_matches(c, d, (int)((dow + 11) % 7))) { /* day 0 was a Thursday */
            int nh = next_bit(c->hour, h);
            if (nh >= 0) {
                if (nh != h)
                    h = nh, mi = 0;
                int nmi = next_bit(c->minute, mi);
                if (nmi >= 0) {
                    int64_t minute = day * 1440 + h * 60 + nmi;
                    if (minute > INT64_MAX / US_PER_MIN)
                        return -1;
                    return minute * US_PER_MIN;
                }
                nh = next_bit(c->hour, h + 1);
                if (nh >= 0) {
                    h = nh, mi = 0;
                    continue;
                }
            }
        }
        /* to the next midnight */
        day++, h = 0, mi = 0;
        if (++d > days_in_month(y, mo)) {
            d = 1;
            if (++mo > 12)
                mo = 1, y++;
        }
    }
    return -1;
}
