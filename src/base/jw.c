/* jw: streaming JSON writer; see jw.h. */
#include "jw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void jw_init(jw_t *w, buf_t *out) { w->out = out, w->depth = 0, w->need_comma = 0; }

static void sep(jw_t *w)
{
    uint64_t bit = 1ull << (w->depth & 63);
    if (w->need_comma & bit)
        buf_putc(w->out, ',');
    w->need_comma |= bit;
}

static void open(jw_t *w, char c)
{
    sep(w);
    buf_putc(w->out, c);
    w->depth++;
    w->need_comma &= ~(1ull << (w->depth & 63));
}

static void close_(jw_t *w, char c)
{
    w->depth--;
    buf_putc(w->out, c);
}

void jw_obj_begin(jw_t *w) { open(w, '{'); }
void jw_obj_end(jw_t *w) { close_(w, '}'); }
void jw_arr_begin(jw_t *w) { open(w, '['); }
void jw_arr_end(jw_t *w) { close_(w, ']'); }

void json_escape(buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(out, n + 2);
    buf_putc(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        buf_append(out, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': buf_puts(out, "\\\""); break;
        case '\\': buf_puts(out, "\\\\"); break;
        case '\n': buf_puts(out, "\\n"); break;
        case '\r': buf_puts(out, "\\r"); break;
        case '\t': buf_puts(out, "\\t"); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 6);
        }
        }
    }
    buf_append(out, s + run, n - run);
    buf_putc(out, '"');
}

void jw_key(jw_t *w, const char *key)
{
    sep(w);
    json_escape(w->out, key, strlen(key));
    buf_putc(w->out, ':');
    /* the value that follows must not write a comma; its own sep() sets the flag again */
    w->need_comma &= ~(1ull << (w->depth & 63));
}

void jw_strn(jw_t *w, const char *s, size_t n)
{
    sep(w);
    json_escape(w->out, s, n);
}

void jw_str(jw_t *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_strn(w, s, strlen(s));
}

/* Decimal digits of v into the end of tmp; returns the first digit. */
static char *u64_digits(uint64_t v, char *end)
{
    char *p = end;
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    return p;
}

static void put_i64(buf_t *out, int64_t v)
{
    char tmp[24], *end = tmp + sizeof tmp;
    char *p = u64_digits(v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, end);
    if (v < 0)
        *--p = '-';
    buf_append(out, p, (size_t)(end - p));
}

void jw_int(jw_t *w, int64_t v)
{
    sep(w);
    put_i64(w->out, v);
}

void jw_double(jw_t *w, double v)
{
    sep(w);
    if (!isfinite(v)) {
        buf_puts(w->out, "null");
        return;
    }
    if (fabs(v) < 1e15 && v == (double)(int64_t)v) { /* whole numbers, the common case */
        put_i64(w->out, (int64_t)v);
        return;
    }
    /* up to six decimals (coordinates, ratings): the integer of v * 10^6 over 10^6 is, like
     * strtod of its decimal form, the double nearest that rational, so it reads back as v */
    if (fabs(v) < 1e9) {
        double scaled = v * 1e6;
        int64_t r = (int64_t)(scaled < 0 ? scaled - 0.5 : scaled + 0.5);
        if ((double)r / 1e6 == v) {
            uint64_t a = r < 0 ? (uint64_t)0 - (uint64_t)r : (uint64_t)r;
            char tmp[40], *end = tmp + sizeof tmp, *p = end;
            unsigned frac = (unsigned)(a % 1000000);
            int digits = 6;
            while (frac && frac % 10 == 0)
                frac /= 10, digits--;
            if (frac) {
                for (int i = 0; i < digits; i++, frac /= 10)
                    *--p = (char)('0' + frac % 10);
                *--p = '.';
            }
            p = u64_digits(a / 1000000, p);
            if (r < 0)
                *--p = '-';
            buf_append(w->out, p, (size_t)(end - p));
            return;
        }
    }
    /* otherwise the shorter of 15 or 17 significant digits that reads back as the same double */
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof tmp, "%.17g", v);
    buf_puts(w->out, tmp);
}

void jw_money(jw_t *w, int64_t cents)
{
    sep(w);
    uint64_t a = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    char tmp[32], *end = tmp + sizeof tmp, *p = end;
    unsigned frac = (unsigned)(a % 100);
    if (frac % 10)
        *--p = (char)('0' + frac % 10);
    if (frac) {
        *--p = (char)('0' + frac / 10);
        *--p = '.';
    }
    p = u64_digits(a / 100, p);
    if (cents < 0)
        *--p = '-';
    buf_append(w->out, p, (size_t)(end - p));
}

void jw_bool(jw_t *w, bool v)
{
    sep(w);
    buf_puts(w->out, v ? "true" : "false");
}

void jw_null(jw_t *w)
{
    sep(w);
    buf_puts(w->out, "null");
}

void jw_raw(jw_t *w, const char *json, size_t n)
{
    sep(w);
    buf_append(w->out, json, n);
}

void jw_time(jw_t *w, int64_t unix_us)
{
    sep(w);
    int64_t secs = unix_us / 1000000, us = unix_us % 1000000;
    if (us < 0)
        us += 1000000, secs--;
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    /* "YYYY-MM-DDTHH:MM:SS.ffffffZ", written by hand: strftime and printf dominate a list otherwise */
    char s[32];
    int year = tm.tm_year + 1900;
    int fields[] = {tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
    const char seps[] = "-T::";
    char *p = s;
    *p++ = '"';
    for (int i = 3; i >= 0; i--, year /= 10)
        p[i] = (char)('0' + year % 10);
    p += 4;
    *p++ = '-';
    for (int i = 0; i < 5; i++) {
        *p++ = (char)('0' + fields[i] / 10);
        *p++ = (char)('0' + fields[i] % 10);
        if (i < 4)
            *p++ = seps[i];
    }
    *p++ = '.';
    for (int i = 5; i >= 0; i--, us /= 10)
        p[i] = (char)('0' + us % 10);
    p += 6;
    *p++ = 'Z';
    *p++ = '"';
    buf_append(w->out, s, (size_t)(p - s));
}

void jw_kstr(jw_t *w, const char *key, const char *s)
{
    jw_key(w, key);
    jw_str(w, s);
}

void jw_kint(jw_t *w, const char *key, int64_t v)
{
    jw_key(w, key);
    jw_int(w, v);
}
