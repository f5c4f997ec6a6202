/* sigv4: AWS Signature Version 4 (HMAC-SHA256), the signing S3 and S3-compatible servers ask for.
 *
 * Two forms: an Authorization header for a request (sigv4_authorization) and a presigned URL whose
 * query string carries the signature (sigv4_presign). The steps in between (canonical request,
 * string to sign, signing key) are exposed so the tests can check each against AWS's published
 * examples.
 *
 * Paths are given decoded ("/bucket/a b.jpg") and encoded here the way S3 expects: each byte
 * outside A-Z a-z 0-9 - . _ ~ as %XX, '/' kept, encoded once and never normalized (S3 does not
 * remove "." or ".." segments or merge slashes). Query names and values are given decoded too and
 * encoded with '/' included. Callers build their URLs from sigv4_uri_encode and
 * sigv4_canonical_query, so that the URL sent is the one signed. */
#ifndef HEARTH_SIGV4_H
#define HEARTH_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "../base/buf.h"

#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SIGV4_MAX_EXPIRES 604800 /* seven days: the longest a presigned URL may live */

/* A header or a query parameter. */
typedef struct sigv4_pair {
    const char *name, *value;
} sigv4_pair_t;

typedef struct sigv4_creds {
    const char *access_key_id, *secret_access_key;
    const char *region;  /* "us-east-1" */
    const char *service; /* "s3" */
} sigv4_creds_t;

typedef struct sigv4_request {
    const char *method;            /* "GET", "PUT", ... */
    const char *path;              /* decoded, starting with '/' */
    const sigv4_pair_t *query;     /* decoded names and values, any order */
    size_t nquery;
    const sigv4_pair_t *headers;   /* every header to sign, Host and X-Amz-Date included; any order
                                    * and case; a name given twice is signed as "v1,v2" */
    size_t nheaders;
    const char *payload_hash;      /* lowercase hex SHA-256 of the body, or SIGV4_UNSIGNED_PAYLOAD */
    const char *amz_date;          /* "20150830T123600Z", the value of X-Amz-Date */
} sigv4_request_t;

/* out: 64 lowercase hex digits and a NUL. */
void sigv4_sha256_hex(const void *p, size_t n, char out[65]);
void sigv4_hex(const unsigned char *p, size_t n, char *out); /* 2n digits and a NUL */
/* "YYYYMMDDTHHMMSSZ" (UTC) for t. */
void sigv4_amz_date(time_t t, char out[17]);

/* Appends s[0..n) percent-encoded; '/' is kept as it is when keep_slash. */
void sigv4_uri_encode(buf_t *out, const char *s, size_t n, bool keep_slash);
/* Appends "a=1&b=2": names and values encoded, sorted by name, then value. */
void sigv4_canonical_query(buf_t *out, const sigv4_pair_t *q, size_t n);

/* The three steps, each appended to `out`. The string to sign's scope date is the first eight
 * characters of amz_date. */
void sigv4_canonical_request(buf_t *out, const sigv4_request_t *r);
void sigv4_string_to_sign(buf_t *out, const char *amz_date, const sigv4_creds_t *c, const char *creq,
                          size_t creq_len);
bool sigv4_signing_key(const sigv4_creds_t *c, const char *amz_date, unsigned char key[32]);

/* Appends "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
 * SignedHeaders=..., Signature=...". False only if OpenSSL fails. */
bool sigv4_authorization(buf_t *out, const sigv4_request_t *r, const sigv4_creds_t *c);

/* Appends a presigned GET URL: origin ("https://host[:port]", no trailing '/'), then the encoded
 * path, then the X-Amz-* query with X-Amz-SignedHeaders=host and UNSIGNED-PAYLOAD. `host` is the
 * Host header the client will send (the origin's host, with the port unless it is the scheme's
 * default). expires_s is clamped to 1..SIGV4_MAX_EXPIRES. */
bool sigv4_presign(buf_t *out, const char *origin, const char *host, const char *path, int64_t expires_s,
                   const char *amz_date, const sigv4_creds_t *c);

#endif
