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

void jw_int(jw_t *w, int64_t v)
{
    sep(w);
    buf_printf(w->out, "%lld", (long long)v);
}

void jw_double(jw_t *w, double v)
{
    sep(w);
    if (!isfinite(v)) {
        buf_puts(w->out, "null");
        return;
    }
    char tmp[32];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    buf_puts(w->out, tmp);
}

void jw_money(jw_t *w, int64_t cents)
{
    sep(w);
    uint64_t a = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    if (a % 100 == 0)
        buf_printf(w->out, "%s%llu", cents < 0 ? "-" : "", (unsigned long long)(a / 100));
    else if (a % 10 == 0)
        buf_printf(w->out, "%s%llu.%llu", cents < 0 ? "-" : "", (unsigned long long)(a / 100),
                   (unsigned long long)(a % 100 / 10));
    else
        buf_printf(w->out, "%s%llu.%02llu", cents < 0 ? "-" : "", (unsigned long long)(a / 100),
                   (unsigned long long)(a % 100));
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
    time_t secs = (time_t)(unix_us / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char tmp[48];
    size_t n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tmp + n, sizeof tmp - n, ".%06lldZ", (long long)(unix_us % 1000000));
    buf_putc(w->out, '"');
    buf_puts(w->out, tmp);
    buf_putc(w->out, '"');
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
