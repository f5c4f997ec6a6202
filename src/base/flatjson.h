/* flatjson: reads a flat JSON object (keys to strings, numbers, booleans or null) in place,
 * without building a tree. See flatjson.c. */
#ifndef HEARTH_FLATJSON_H
#define HEARTH_FLATJSON_H

#include <stddef.h>

typedef enum { FLAT_STRING, FLAT_NUMBER, FLAT_TRUE, FLAT_FALSE, FLAT_NULL } flat_kind_t;

/* Called once per member, in order: the key's bytes (no quotes), the kind, for FLAT_STRING the
 * string's bytes (no quotes), for FLAT_NUMBER its value. */
typedef void (*flat_fn)(void *arg, const char *key, size_t keylen, flat_kind_t kind, const char *str,
                        size_t len, double num);

/* 1: `text` is one flat JSON object and fn was called for each member; 0: it is something this
 * reader does not take (an escape sequence, a byte above 0x7F, a nested value, a number jansson
 * would refuse, bad syntax) — parse it with jansson, which also says what is wrong. fn may have
 * been called for some members before a 0. */
int flatjson_scan(const char *text, flat_fn fn, void *arg);

#endif
