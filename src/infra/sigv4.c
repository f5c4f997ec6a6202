/* sigv4: AWS Signature Version 4, on OpenSSL's SHA-256 and HMAC; see sigv4.h.
 *
 * Why it is written here rather than left to libcurl's CURLOPT_AWS_SIGV4: presigned URLs need a
 * signer anyway (libcurl only signs requests it sends), and the signer of Debian's curl 7.88 signs
 * every payload as empty and sends no x-amz-content-sha256 header, which S3 and MinIO refuse for
 * any request with a body. The algorithm is short and AWS publishes test vectors for it
 * (tests/unit/test_sigv4.c checks them).
 *
 * The one idea: everything signed is a canonical form, built once here and used both to sign and
 * (by the callers) to build the URL, so what is sent is always what was signed. */
#define _GNU_SOURCE /* strcasecmp in qsort's comparator, gmtime_r */
#include "sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALGORITHM "AWS4-HMAC-SHA256"

void sigv4_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL) || len != 32)
        abort(); /* SHA-256 cannot fail short of OpenSSL being unusable, as malloc failing is for buf */
    sigv4_hex(md, 32, out);
}

void sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

void sigv4_uri_encode(buf_t *out, const char *s, size_t n, bool keep_slash)
{
    static const char digits[] = "0123456789ABCDEF";
    buf_reserve(out, 3 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            out->data[out->len++] = (char)c;
        } else {
            out->data[out->len++] = '%';
            out->data[out->len++] = digits[c >> 4];
            out->data[out->len++] = digits[c & 15];
        }
    }
    out->data[out->len] = '\0';
}

/* ---------------------------------------------------------------- canonical query */

typedef struct encoded_pair {
    size_t name, value; /* offsets into the scratch buffer, each NUL-terminated */
} encoded_pair_t;

static int cmp_encoded(const void *a, const void *b, void *arg)
{
    const char *base = arg;
    const encoded_pair_t *x = a, *y = b;
    int c = strcmp(base + x->name, base + y->name);
    return c ? c : strcmp(base + x->value, base + y->value);
}

void sigv4_canonical_query(buf_t *out, const sigv4_pair_t *q, size_t n)
{
    if (n == 0)
        return;
    buf_t scratch;
    buf_init(&scratch);
    encoded_pair_t *pairs = calloc(n, sizeof *pairs);
    if (!pairs)
        abort();
    for (size_t i = 0; i < n; i++) {
        pairs[i].name = scratch.len;
        sigv4_uri_encode(&scratch, q[i].name, strlen(q[i].name), false);
        buf_putc(&scratch, '\0');
        pairs[i].value = scratch.len;
        sigv4_uri_encode(&scratch, q[i].value ? q[i].value : "", q[i].value ? strlen(q[i].value) : 0, false);
        buf_putc(&scratch, '\0');
    }
    qsort_r(pairs, n, sizeof *pairs, cmp_encoded, scratch.data);
    for (size_t i = 0; i < n; i++)
        buf_printf(out, "%s%s=%s", i ? "&" : "", scratch.data + pairs[i].name, scratch.data + pairs[i].value);
    free(pairs);
    buf_free(&scratch);
}

/* ---------------------------------------------------------------- canonical headers */

typedef struct indexed_header {
    const sigv4_pair_t *h;
    size_t index; /* the order given: a name given twice keeps its values in that order */
} indexed_header_t;

static int cmp_header(const void *a, const void *b)
{
    const indexed_header_t *x = a, *y = b;
    int c = strcasecmp(x->h->name, y->h->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static void put_lower(buf_t *out, const char *s)
{
    for (; *s; s++)
        buf_putc(out, (char)((*s >= 'A' && *s <= 'Z') ? *s + 32 : *s));
}

/* The value without leading and trailing blanks, runs of blanks inside made one space. */
static void put_trimmed(buf_t *out, const char *v)
{
    bool pending = false;
    for (; *v == ' ' || *v == '\t'; v++)
        ;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            pending = true;
            continue;
        }
        if (pending)
            buf_putc(out, ' ');
        pending = false;
        buf_putc(out, *v);
    }
}

/* Appends the canonical headers ("name:value\n" each) to `lines` and "a;b;c" to `names`. */
static void canonical_headers(buf_t *lines, buf_t *names, const sigv4_pair_t *h, size_t n)
{
    if (n == 0)
        return;
    indexed_header_t *sorted = calloc(n, sizeof *sorted);
    if (!sorted)
        abort();
    for (size_t i = 0; i < n; i++)
        sorted[i] = (indexed_header_t){&h[i], i};
    qsort(sorted, n, sizeof *sorted, cmp_header);
    for (size_t i = 0; i < n; i++) {
        bool same = i > 0 && strcasecmp(sorted[i].h->name, sorted[i - 1].h->name) == 0;
        if (same) {
            buf_putc(lines, ',');
        } else {
            if (i > 0) {
                buf_putc(lines, '\n');
                buf_putc(names, ';');
            }
            put_lower(lines, sorted[i].h->name);
            buf_putc(lines, ':');
            put_lower(names, sorted[i].h->name);
        }
        put_trimmed(lines, sorted[i].h->value ? sorted[i].h->value : "");
    }
    buf_putc(lines, '\n');
    free(sorted);
}

static void canonical_request(buf_t *out, buf_t *signed_names, const sigv4_request_t *r)
{
    buf_printf(out, "%s\n", r->method);
    sigv4_uri_encode(out, r->path, strlen(r->path), true);
    buf_putc(out, '\n');
    sigv4_canonical_query(out, r->query, r->nquery);
    buf_putc(out, '\n');
    canonical_headers(out, signed_names, r->headers, r->nheaders);
    buf_printf(out, "\n%s\n%s", signed_names->len ? signed_names->data : "", r->payload_hash);
}

void sigv4_canonical_request(buf_t *out, const sigv4_request_t *r)
{
    buf_t names;
    buf_init(&names);
    canonical_request(out, &names, r);
    buf_free(&names);
}

/* ---------------------------------------------------------------- signing */

static void put_scope(buf_t *out, const char *amz_date, const sigv4_creds_t *c)
{
    buf_printf(out, "%.8s/%s/%s/aws4_request", amz_date, c->region, c->service);
}

void sigv4_string_to_sign(buf_t *out, const char *amz_date, const sigv4_creds_t *c, const char *creq,
                          size_t creq_len)
{
    char hash[65];
    sigv4_sha256_hex(creq, creq_len, hash);
    buf_printf(out, ALGORITHM "\n%s\n", amz_date);
    put_scope(out, amz_date, c);
    buf_printf(out, "\n%s", hash);
}

static bool hmac(const void *key, size_t keylen, const void *msg, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, (int)keylen, msg, n, out, &len) && len == 32;
}

bool sigv4_signing_key(const sigv4_creds_t *c, const char *amz_date, unsigned char key[32])
{
    buf_t secret;
    buf_init(&secret);
    buf_printf(&secret, "AWS4%s", c->secret_access_key);
    unsigned char k[32];
    bool ok = hmac(secret.data, secret.len, amz_date, 8, k) &&
              hmac(k, 32, c->region, strlen(c->region), k) &&
              hmac(k, 32, c->service, strlen(c->service), k) &&
              hmac(k, 32, "aws4_request", 12, key);
    OPENSSL_cleanse(secret.data, secret.len);
    OPENSSL_cleanse(k, sizeof k);
    buf_free(&secret);
    return ok;
}

/* The hex signature of a canonical request. */
static bool signature(const sigv4_creds_t *c, const char *amz_date, const buf_t *creq, char out[65])
{
    buf_t sts;
    buf_init(&sts);
    sigv4_string_to_sign(&sts, amz_date, c, creq->data, creq->len);
    unsigned char key[32], sig[32];
    bool ok = sigv4_signing_key(c, amz_date, key) && hmac(key, 32, sts.data, sts.len, sig);
    if (ok)
        sigv4_hex(sig, 32, out);
    OPENSSL_cleanse(key, sizeof key);
    buf_free(&sts);
    return ok;
}

bool sigv4_authorization(buf_t *out, const sigv4_request_t *r, const sigv4_creds_t *c)
{
    buf_t creq, names;
    buf_init(&creq);
    buf_init(&names);
    canonical_request(&creq, &names, r);
    char sig[65];
    bool ok = signature(c, r->amz_date, &creq, sig);
    if (ok) {
        buf_printf(out, ALGORITHM " Credential=%s/", c->access_key_id);
        put_scope(out, r->amz_date, c);
        buf_printf(out, ", SignedHeaders=%s, Signature=%s", names.len ? names.data : "", sig);
    }
    buf_free(&names);
    buf_free(&creq);
    return ok;
}

bool sigv4_presign(buf_t *out, const char *origin, const char *host, const char *path, int64_t expires_s,
                   const char *amz_date, const sigv4_creds_t *c)
{
    if (expires_s < 1)
        expires_s = 1;
    if (expires_s > SIGV4_MAX_EXPIRES)
        expires_s = SIGV4_MAX_EXPIRES;
    buf_t credential, creq;
    buf_init(&credential);
    buf_init(&creq);
    buf_printf(&credential, "%s/", c->access_key_id);
    put_scope(&credential, amz_date, c);
    char expires[24];
    snprintf(expires, sizeof expires, "%lld", (long long)expires_s);
    const sigv4_pair_t query[] = {
        {"X-Amz-Algorithm", ALGORITHM}, {"X-Amz-Credential", credential.data}, {"X-Amz-Date", amz_date},
        {"X-Amz-Expires", expires},     {"X-Amz-SignedHeaders", "host"},
    };
    const sigv4_pair_t headers[] = {{"host", host}};
    sigv4_request_t r = {.method = "GET", .path = path, .query = query, .nquery = 5, .headers = headers,
                         .nheaders = 1, .payload_hash = SIGV4_UNSIGNED_PAYLOAD, .amz_date = amz_date};
    sigv4_canonical_request(&creq, &r);
    char sig[65];
    bool ok = signature(c, amz_date, &creq, sig);
    if (ok) {
        buf_puts(out, origin);
        sigv4_uri_encode(out, path, strlen(path), true);
        buf_putc(out, '?');
        sigv4_canonical_query(out, query, 5);
        buf_printf(out, "&X-Amz-Signature=%s", sig);
    }
    buf_free(&creq);
    buf_free(&credential);
    return ok;
}
