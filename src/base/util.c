/* util: see util.h. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

int64_t time_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t time_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rand_bytes(void *p, size_t n)
{
    unsigned char *c = p;
    while (n > 0) {
        ssize_t r = getrandom(c, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* no entropy source: nothing safe to do */
        }
        c += r;
        n -= (size_t)r;
    }
}

uint64_t rand_fast(void)
{
    static _Thread_local uint64_t s;
    if (!s) {
        while (!s)
            rand_bytes(&s, sizeof s);
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

void rand_hex_id(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i += 8) {
        uint64_t r = rand_fast();
        for (size_t j = 0; j < 8 && i + j < nbytes; j++, r >>= 8) {
            out[2 * (i + j)] = hex[(r >> 4) & 15];
            out[2 * (i + j) + 1] = hex[r & 15];
        }
    }
    out[2 * nbytes] = '\0';
}

bool parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool parse_f64(const char *s, double *out)
{
    if (!s || !*s)
        return false;
    /* only [-+]digits[.digits][e[-+]digits]: strtod alone also takes inf, nan and hex */
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    bool digits = false;
    while (isdigit((unsigned char)*p))
        p++, digits = true;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++, digits = true;
    }
    if (!digits)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return false;
    errno = 0;
    double v = strtod(s, NULL);
    if (errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

int money_parse(const char *s, int64_t *cents)
{
    const char *p = s;
    bool neg = false;
    if (*p == '-')
        neg = true, p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    int64_t whole = 0;
    bool overflow = false;
    while (isdigit((unsigned char)*p)) {
        if (whole > MONEY_MAX_CENTS / 10)
            overflow = true;
        else
            whole = whole * 10 + (*p - '0');
        p++;
    }
    int64_t frac = 0;
    int nfrac = 0;
    bool extra = false; /* a non-zero third decimal or beyond */
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (nfrac < 2)
                frac = frac * 10 + (*p - '0'), nfrac++;
            else if (*p != '0')
                extra = true;
        }
    }
    if (*p)
        return -1;
    if (extra || overflow || whole > MONEY_MAX_CENTS / 100)
        return -2;
    if (nfrac == 1)
        frac *= 10;
    int64_t v = whole * 100 + frac;
    *cents = neg ? -v : v;
    return 0;
}

int money_from_double(double v, int64_t *cents)
{
    if (!isfinite(v))
        return -1;
    if (fabs(v) > (double)(MONEY_MAX_CENTS / 100))
        return -2;
    /* the value has at most two decimals exactly when printing it with two decimals and reading
     * that back gives the same double */
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.2f", v);
    if (strtod(tmp, NULL) != v)
        return -2;
    return money_parse(tmp, cents);
}

bool utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07;
        else
            return false;
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool url_decode(arena_t *a, const char *s, size_t n, bool plus, char **out, size_t *outlen)
{
    char *d = arena_alloc(a, n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
            if (h < 0 || l < 0)
                return false;
            c = (char)(h * 16 + l);
            if (c == '\0')
                return false;
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        d[j++] = c;
    }
    d[j] = '\0';
    if (!utf8_valid(d, j))
        return false;
    *out = d;
    if (outlen)
        *outlen = j;
    return true;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t b64url_encode(const void *in, size_t n, char *out)
{
    const unsigned char *p = in;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[j++] = b64url[(v >> 18) & 63];
        out[j++] = b64url[(v >> 12) & 63];
        if (i + 1 < n)
            out[j++] = b64url[(v >> 6) & 63];
        if (i + 2 < n)
            out[j++] = b64url[v & 63];
    }
    out[j] = '\0';
    return j;
}

long b64url_decode(const char *in, size_t n, void *out)
{
    unsigned char *o = out;
    uint32_t acc = 0;
    int bits = 0;
    long j = 0;
    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *c = memchr(b64url, in[i], 64);
        if (!c || !in[i])
            return -1;
        acc = (acc << 6) | (uint32_t)(c - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[j++] = (unsigned char)(acc >> bits);
        }
    }
    /* leftover bits must be zero, so every value has one encoding */
    if (bits && (acc & ((1u << bits) - 1)))
        return -1;
    return j;
}

uint64_t hash_fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

bool str_ieq(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

bool str_nieq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    return an == bn && strncasecmp(a, b, an) == 0;
}
