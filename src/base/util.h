/* util: small pure helpers shared by every layer: clocks, randomness, strict number parsing,
 * exact money, UTF-8 validation, percent-decoding and base64url. None of them allocate except
 * where an arena is passed. */
#ifndef HEARTH_UTIL_H
#define HEARTH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

int64_t time_now_us(void);   /* wall clock, microseconds since the Unix epoch */
uint64_t time_mono_ns(void); /* monotonic clock */

void rand_bytes(void *p, size_t n); /* cryptographic (getrandom) */
uint64_t rand_fast(void);           /* per-thread xorshift, seeded from rand_bytes */
void rand_hex_id(char *out, size_t nbytes); /* 2*nbytes hex chars + NUL, from rand_fast: ids, never secrets */

/* Strict parsers: the whole string must be the number, no spaces, no overflow. */
bool parse_i64(const char *s, int64_t *out);
bool parse_f64(const char *s, double *out); /* finite decimal only: no inf, nan or hex */

/* Money. money_parse reads a decimal string of dollars ("1234", "1234.5", "1234.56"):
 * returns 0 on success, -1 when it is not a number, -2 when it has more than two decimals or is
 * out of range. money_from_double does the same for a JSON number already read as a double. */
int money_parse(const char *s, int64_t *cents);
int money_from_double(double v, int64_t *cents);
#define MONEY_MAX_CENTS 100000000000000LL /* one trillion dollars */

bool utf8_valid(const char *s, size_t n);

/* Percent-decode (and '+' as space when `plus`) into a new arena string; false on a bad escape,
 * an encoded NUL or invalid UTF-8 in the result. */
bool url_decode(arena_t *a, const char *s, size_t n, bool plus, char **out, size_t *outlen);

size_t b64url_encode(const void *in, size_t n, char *out); /* out needs 4*ceil(n/3)+1 */
/* returns decoded length, or -1 on bad input; out needs 3*n/4+3 bytes */
long b64url_decode(const char *in, size_t n, void *out);

/* FNV-1a over n bytes, with the high bits folded in: for hash tables and short stable names. */
uint64_t hash_fnv1a(const void *p, size_t n);

bool str_ieq(const char *a, const char *b);
bool str_nieq(const char *a, size_t an, const char *b); /* a[0..an) equals NUL-terminated b, ASCII case-insensitive */

#endif
