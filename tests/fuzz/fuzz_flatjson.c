/* fuzz_flatjson: the flat-object reader (base/flatjson.c) against jansson, over arbitrary bytes.
 *
 * The one idea: flatjson may decline anything (0: the caller falls back to jansson), but what it
 * accepts, jansson must accept too, as an object with exactly the members flatjson reported (the
 * last of a repeated key winning, as in jansson), each with the same value. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/flatjson.h"

static void collect(void *arg, const char *key, size_t keylen, flat_kind_t kind, const char *str, size_t len,
                    double num)
{
    json_t *obj = arg;
    char *k = strndup(key, keylen);
    json_t *v = kind == FLAT_STRING ? json_stringn(str, len)
                : kind == FLAT_NUMBER ? json_real(num)
                : kind == FLAT_TRUE   ? json_true()
                : kind == FLAT_FALSE  ? json_false()
                                      : json_null();
    if (!v)
        __builtin_trap(); /* a string jansson cannot hold: flatjson let something through */
    json_object_set_new(obj, k, v);
    free(k);
}

static double number_of(json_t *v) { return json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    json_t *got = json_object();
    if (flatjson_scan(text, collect, got) == 1) {
        json_t *want = json_loads(text, 0, NULL);
        if (!json_is_object(want) || json_object_size(want) != json_object_size(got))
            __builtin_trap();
        const char *k;
        json_t *v;
        json_object_foreach(got, k, v)
        {
            json_t *w = json_object_get(want, k);
            if (!w)
                __builtin_trap();
            if (json_is_real(v)) {
                if (!json_is_number(w) || number_of(w) != json_real_value(v))
                    __builtin_trap();
            } else if (!json_equal(v, w)) {
                __builtin_trap();
            }
        }
        json_decref(want);
    }
    json_decref(got);
    free(text);
    return 0;
}
