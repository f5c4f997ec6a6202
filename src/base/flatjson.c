/* flatjson: see flatjson.h.
 *
 * Why written here: the price model reads a listing's source row (`features`, the 74 columns of
 * an Ames sale as one JSON object) on every estimate, and jansson's json_loads — a tree of
 * allocated values and a hash table, then a lookup per column — cost more than evaluating the
 * 1,200 trees. The rows hearth stores are flat objects of plain ASCII, so a reader of exactly that
 * shape is a short loop over the text. It takes only what it is sure of and says 0 for anything
 * else, for the caller to hand to jansson: the reader must never accept what jansson would refuse
 * or read a value differently, which tests/fuzz/fuzz_flatjson.c checks against jansson. */
#include "flatjson.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INT_DIGITS 18 /* jansson refuses integers beyond 64 bits: leave long ones to it */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* A string's body after its opening quote: plain printable ASCII up to the closing quote; NULL
 * for anything else (an escape, a control character, a byte above 0x7F, the end). */
static const char *string_end(const char *p)
{
    for (;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p;
        if (c < 0x20 || c == '\\' || c > 0x7e)
            return NULL;
    }
}

/* A JSON number (RFC 8259 grammar) at p; NULL if there is none. *integer: no fraction, no exponent. */
static const char *number_end(const char *p, bool *integer, int *digits)
{
    *integer = true;
    *digits = 0;
    if (*p == '-')
        p++;
    if (*p == '0') {
        p++;
        (*digits)++;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9') {
            p++;
            (*digits)++;
        }
    } else {
        return NULL;
    }
    if (*p == '.') {
        *integer = false;
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        *integer = false;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

int flatjson_scan(const char *text, flat_fn fn, void *arg)
{
    const char *p = skip_ws(text);
    if (*p++ != '{')
        return 0;
    p = skip_ws(p);
    if (*p == '}')
        return *skip_ws(p + 1) == '\0';
    for (;;) {
        if (*p++ != '"')
            return 0;
        const char *key = p;
        if (!(p = string_end(p)))
            return 0;
        size_t keylen = (size_t)(p - key);
        p = skip_ws(p + 1);
        if (*p++ != ':')
            return 0;
        p = skip_ws(p);
        if (*p == '"') {
            const char *v = ++p;
            if (!(p = string_end(p)))
                return 0;
            fn(arg, key, keylen, FLAT_STRING, v, (size_t)(p - v), 0);
            p++;
        } else if (strncmp(p, "null", 4) == 0) {
            fn(arg, key, keylen, FLAT_NULL, NULL, 0, 0);
            p += 4;
        } else if (strncmp(p, "true", 4) == 0) {
            fn(arg, key, keylen, FLAT_TRUE, NULL, 0, 0);
            p += 4;
        } else if (strncmp(p, "false", 5) == 0) {
            fn(arg, key, keylen, FLAT_FALSE, NULL, 0, 0);
            p += 5;
        } else {
            bool integer;
            int digits;
            const char *end = number_end(p, &integer, &digits);
            if (!end || (integer && digits > MAX_INT_DIGITS))
                return 0;
            double x = strtod(p, NULL);
            if (!isfinite(x))
                return 0; /* jansson: "real number overflow" */
            fn(arg, key, keylen, FLAT_NUMBER, NULL, 0, x);
            p = end;
        }
        p = skip_ws(p);
        if (*p == '}')
            return *skip_ws(p + 1) == '\0';
        if (*p++ != ',')
            return 0;
        p = skip_ws(p);
    }
}
