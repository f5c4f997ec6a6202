/* objects_s3: the object store on S3 or any S3-compatible server (MinIO, AWS), over libcurl.
 *
 * Requests are path-style (ENDPOINT/BUCKET/KEY), so any server and any bucket name work without
 * DNS per bucket. Each is signed here with SigV4 (sigv4.c) and carries x-amz-content-sha256, the
 * SHA-256 of its body: a file is hashed first and then streamed from disk, never held in memory.
 * Objects above OBJECTS_MULTIPART_MIN go up as a multipart upload, aborted if any step fails.
 *
 * The one idea is s3_call: one request, attempted up to ATTEMPTS times with exponential backoff
 * and jitter when the network fails or the server answers 5xx, re-signed at each attempt (the
 * signature covers the time), with a body that can be replayed from its start. Everything else is
 * what to send and how to read the answer. Calls borrow a curl easy handle from a small pool, so
 * connections (and TLS sessions) are reused between calls; any thread may call. */
#define _GNU_SOURCE /* strcasecmp, strncasecmp, pread */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/util.h"
#include "objects.h"
#include "sigv4.h"

#define CONNECT_TIMEOUT_MS 5000
#define REQUEST_TIMEOUT_MS 120000  /* a request's whole exchange, plus BODY_MS_PER_MIB of its body */
#define BODY_MS_PER_MIB 4000       /* so an upload may go as slowly as 256 KiB/s */
#define STALL_BYTES_PER_S 1024     /* slower than this for STALL_S seconds: the connection is dead */
#define STALL_S 20
#define ATTEMPTS 3
#define BACKOFF_MS 200             /* before the second attempt; doubled for each next one */
#define POOL_MAX 8                 /* idle curl handles kept */
#define ERROR_BODY_MAX (64u << 10)
#define XML_BODY_MAX (16u << 20)   /* a ListObjectsV2 page or a multipart answer */
#define MAX_PARTS 10000            /* S3's limit on parts in one upload */
#define HASH_CHUNK (256u << 10)

typedef struct s3 {
    objects_t base;
    char *origin, *host;               /* S3_ENDPOINT's scheme://host[:port] and its Host header */
    char *base_path;                   /* S3_ENDPOINT's path, without a trailing '/' (mostly "") */
    char *public_origin, *public_host; /* S3_PUBLIC_URL's, or the endpoint's */
    char *bucket, *region, *access_key_id, *secret_access_key;
    pthread_mutex_t mu; /* guards the pool */
    CURL *idle[POOL_MAX];
    int nidle;
} s3_t;

/* A request body: `len` bytes from `off` in memory (`data`) or in the file `fd`. */
typedef struct body {
    const char *data;
    int fd;
    int64_t off, len;
    int64_t pos; /* handed to curl in this attempt */
} body_t;

typedef struct call {
    /* the request */
    const char *op;  /* "put", "get", ...: for messages */
    const char *method;
    const char *key; /* NULL: the bucket */
    const sigv4_pair_t *query;
    size_t nquery;
    body_t *body;              /* NULL: none */
    const char *content_type;  /* NULL: none */
    buf_t *out;                /* a 2xx answer's body is appended here (NULL: dropped) */
    size_t out_max;            /* 0: no bound */
    bool ok_404;               /* a 404 is a success (delete, head) */
    /* the answer */
    CURL *curl;
    long status;
    size_t out_start;
    bool too_big;
    buf_t err_body;
    char etag[256];
    int64_t length; /* Content-Length of the answer; -1 when not given */
    char payload_hash[65];
    char curl_err[CURL_ERROR_SIZE];
} call_t;

static const objects_ops_t s3_ops;

static s3_t *s3_of(objects_t *o) { return (s3_t *)o; }

/* ---------------------------------------------------------------- curl handles */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static CURL *handle_get(s3_t *s)
{
    CURL *h = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->nidle > 0)
        h = s->idle[--s->nidle];
    pthread_mutex_unlock(&s->mu);
    return h ? h : curl_easy_init();
}

static void handle_put(s3_t *s, CURL *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->nidle < POOL_MAX) {
        s->idle[s->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ---------------------------------------------------------------- bodies */

static size_t body_read(char *dst, size_t size, size_t nitems, void *arg)
{
    body_t *b = arg;
    size_t n = size * nitems;
    if ((int64_t)n > b->len - b->pos)
        n = (size_t)(b->len - b->pos);
    if (n == 0)
        return 0;
    if (b->data) {
        memcpy(dst, b->data + b->off + b->pos, n);
    } else {
        ssize_t r;
        do
            r = pread(b->fd, dst, n, (off_t)(b->off + b->pos));
        while (r < 0 && errno == EINTR);
        if (r <= 0)
            return CURL_READFUNC_ABORT; /* an error, or the file shrank under us */
        n = (size_t)r;
    }
    b->pos += (int64_t)n;
    return n;
}

static int body_seek(void *arg, curl_off_t offset, int origin)
{
    body_t *b = arg;
    if (origin != SEEK_SET || offset < 0 || offset > b->len)
        return CURL_SEEKFUNC_FAIL;
    b->pos = offset;
    return CURL_SEEKFUNC_OK;
}

/* The body's SHA-256 in hex; a file is read once for it, before it is sent. */
static bool body_hash(const body_t *b, char out[65])
{
    if (b->data) {
        sigv4_sha256_hex(b->data + b->off, (size_t)b->len, out);
        return true;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char *chunk = malloc(HASH_CHUNK);
    bool ok = ctx && chunk && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int64_t done = 0; ok && done < b->len;) {
        size_t want = b->len - done < HASH_CHUNK ? (size_t)(b->len - done) : HASH_CHUNK;
        ssize_t r = pread(b->fd, chunk, want, (off_t)(b->off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            errno = EIO; /* the file is shorter than it was */
        ok = r > 0 && EVP_DigestUpdate(ctx, chunk, (size_t)r);
        done += r;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
    if (ok)
        sigv4_hex(md, 32, out);
    int saved = errno;
    free(chunk);
    EVP_MD_CTX_free(ctx);
    errno = saved;
    return ok;
}

/* ---------------------------------------------------------------- answers */

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    call_t *c = arg;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        if (!c->out)
            return n;
        if (c->out_max && c->out->len - c->out_start + n > c->out_max) {
            c->too_big = true;
            return 0; /* ends the transfer with CURLE_WRITE_ERROR */
        }
        buf_append(c->out, p, n);
    } else if (c->err_body.len < ERROR_BODY_MAX) {
        size_t room = ERROR_BODY_MAX - c->err_body.len;
        buf_append(&c->err_body, p, n < room ? n : room);
    }
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    call_t *c = arg;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(p, "ETag:", 5) == 0) {
        const char *v = p + 5, *end = p + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        snprintf(c->etag, sizeof c->etag, "%.*s", (int)(end - v), v);
    }
    return n;
}

/* Decodes the five XML entities and numeric character references of s[0..n) into `out`. */
static void xml_unescape(buf_t *out, const char *s, size_t n)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '&') {
            buf_putc(out, s[i]);
            continue;
        }
        bool done = false;
        for (size_t k = 0; k < sizeof named / sizeof named[0] && !done; k++) {
            size_t len = strlen(named[k].name);
            if (n - i - 1 >= len && memcmp(s + i + 1, named[k].name, len) == 0) {
                buf_putc(out, named[k].c);
                i += len;
                done = true;
            }
        }
        if (!done && i + 2 < n && s[i + 1] == '#') {
            bool hex = s[i + 2] == 'x';
            char *end;
            unsigned long cp = strtoul(s + i + 2 + hex, &end, hex ? 16 : 10);
            if (end < s + n && *end == ';' && end > s + i + 2 + hex && cp > 0 && cp <= 0x10FFFF) {
                unsigned char u[4];
                int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                if (len == 1) {
                    u[0] = (unsigned char)cp;
                } else {
                    for (int j = len - 1; j > 0; j--, cp >>= 6)
                        u[j] = (unsigned char)(0x80 | (cp & 0x3F));
                    u[0] = (unsigned char)((0xF00u >> len) | cp);
                }
                buf_append(out, u, (size_t)len);
                i = (size_t)(end - s);
                done = true;
            }
        }
        if (!done)
            buf_putc(out, '&');
    }
}

/* The text of the first <tag>...</tag> in s[0..n), still escaped; false when there is none. */
static bool xml_find(const char *s, size_t n, const char *tag, const char **val, size_t *len)
{
    char open[64], close[64];
    int ol = snprintf(open, sizeof open, "<%s>", tag), cl = snprintf(close, sizeof close, "</%s>", tag);
    const char *a = memmem(s, n, open, (size_t)ol);
    if (!a)
        return false;
    a += ol;
    const char *b = memmem(a, (size_t)(s + n - a), close, (size_t)cl);
    if (!b)
        return false;
    *val = a;
    *len = (size_t)(b - a);
    return true;
}

/* The unescaped text of <tag> in s[0..n), into `out` (reset first); false when there is none. */
static bool xml_text(const char *s, size_t n, const char *tag, buf_t *out)
{
    const char *v;
    size_t len;
    buf_reset(out);
    if (!xml_find(s, n, tag, &v, &len))
        return false;
    xml_unescape(out, v, len);
    buf_reserve(out, 0); /* a C string even when the text is empty */
    out->data[out->len] = '\0';
    return true;
}

static void xml_escape(buf_t *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': buf_puts(out, "&amp;"); break;
        case '<': buf_puts(out, "&lt;"); break;
        case '>': buf_puts(out, "&gt;"); break;
        default: buf_putc(out, *s);
        }
    }
}

/* ---------------------------------------------------------------- requests */

static void add_header(struct curl_slist **list, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_header(struct curl_slist **list, const char *fmt, ...)
{
    buf_t line;
    buf_init(&line);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&line, fmt, ap);
    va_end(ap);
    struct curl_slist *l = curl_slist_append(*list, line.data);
    buf_free(&line);
    if (!l)
        abort(); /* out of memory, as buf does */
    *list = l;
}

/* "/BASE/BUCKET[/KEY]", decoded: what is signed and (encoded) sent. */
static void object_path(const s3_t *s, const char *key, buf_t *out)
{
    buf_printf(out, "%s/%s", s->base_path, s->bucket);
    if (key)
        buf_printf(out, "/%s", key);
}

static int64_t timeout_ms(const call_t *c)
{
    int64_t mib = c->body ? c->body->len >> 20 : 0;
    return REQUEST_TIMEOUT_MS + mib * BODY_MS_PER_MIB;
}

static void set_method(CURL *h, call_t *c)
{
    if (c->body) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body->len);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, body_read);
        curl_easy_setopt(h, CURLOPT_READDATA, c->body);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, body_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, c->body);
        if (strcmp(c->method, "PUT") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    } else if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(c->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    }
}

/* The request's headers, signed for now: Host, x-amz-content-sha256, x-amz-date, Content-Type
 * (when there is one) and Authorization over them. False only if OpenSSL fails. */
static bool signed_headers(const s3_t *s, const call_t *c, const char *path, struct curl_slist **out)
{
    char date[17];
    sigv4_amz_date(time(NULL), date);
    const sigv4_pair_t h[4] = {{"Host", s->host},
                               {"x-amz-content-sha256", c->payload_hash},
                               {"x-amz-date", date},
                               {"Content-Type", c->content_type}};
    sigv4_request_t r = {.method = c->method, .path = path, .query = c->query, .nquery = c->nquery,
                         .headers = h, .nheaders = c->content_type ? 4 : 3, .payload_hash = c->payload_hash,
                         .amz_date = date};
    sigv4_creds_t creds = {s->access_key_id, s->secret_access_key, s->region, "s3"};
    buf_t auth;
    buf_init(&auth);
    bool ok = sigv4_authorization(&auth, &r, &creds);
    if (ok) {
        add_header(out, "Host: %s", s->host);
        add_header(out, "x-amz-content-sha256: %s", c->payload_hash);
        add_header(out, "x-amz-date: %s", date);
        add_header(out, "Authorization: %s", auth.data);
        add_header(out, "Expect:"); /* no 100-continue round trip */
        if (c->content_type)
            add_header(out, "Content-Type: %s", c->content_type);
    }
    buf_free(&auth);
    return ok;
}

static void set_options(CURL *h, call_t *c, const char *url, struct curl_slist *headers)
{
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "hearth/" HEARTH_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms(c));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long)STALL_BYTES_PER_S);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)STALL_S);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    set_method(h, c);
}

/* Forgets what a failed attempt received and sent. */
static void reset_answer(call_t *c, CURL *h)
{
    c->curl = h;
    c->status = 0;
    c->length = -1;
    c->etag[0] = '\0';
    c->curl_err[0] = '\0';
    c->too_big = false;
    buf_reset(&c->err_body);
    if (c->out) {
        c->out->len = c->out_start;
        if (c->out->data)
            c->out->data[c->out_start] = '\0';
    }
    if (c->body)
        c->body->pos = 0;
}

/* One attempt: sign for now, send, wait for the whole answer. */
static CURLcode attempt(s3_t *s, call_t *c, CURL *h)
{
    buf_t path, url;
    buf_init(&path);
    buf_init(&url);
    object_path(s, c->key, &path);
    buf_puts(&url, s->origin);
    sigv4_uri_encode(&url, path.data, path.len, true);
    if (c->nquery) {
        buf_putc(&url, '?');
        sigv4_canonical_query(&url, c->query, c->nquery);
    }
    CURLcode rc = CURLE_OUT_OF_MEMORY;
    struct curl_slist *headers = NULL;
    if (signed_headers(s, c, path.data, &headers)) {
        set_options(h, c, url.data, headers);
        reset_answer(c, h);
        rc = curl_easy_perform(h);
        curl_off_t length = -1;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
        curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
        c->length = (int64_t)length;
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL); /* the list is freed below; the handle is pooled */
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    }
    curl_slist_free_all(headers);
    buf_free(&url);
    buf_free(&path);
    return rc;
}

static bool transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

/* Sleeps before attempt `next` (2, 3, ...): BACKOFF_MS doubled each time, of which a random half
 * is taken off so that many callers failing together do not retry together. */
static void backoff(int next)
{
    int64_t ms = (int64_t)BACKOFF_MS << (next - 2);
    ms = ms / 2 + (int64_t)(rand_fast() % (uint64_t)(ms / 2 + 1));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *call_name(const call_t *c) { return c->key ? c->key : "(bucket)"; }

/* The err_t for an answer that is not 2xx. */
static bool status_error(const s3_t *s, const call_t *c, err_t *e)
{
    buf_t code, msg;
    buf_init(&code);
    buf_init(&msg);
    xml_text(c->err_body.data ? c->err_body.data : "", c->err_body.len, "Code", &code);
    xml_text(c->err_body.data ? c->err_body.data : "", c->err_body.len, "Message", &msg);
    const char *scode = code.len ? code.data : "", *smsg = msg.len ? msg.data : "";
    err_code_t ec = c->status >= 500 ? ERR_UNAVAILABLE : ERR_INTERNAL;
    if (c->status == 404 && strcmp(scode, "NoSuchBucket") != 0 && strcmp(c->method, "GET") == 0 && c->key)
        ec = ERR_NOT_FOUND;
    if (strcmp(scode, "NoSuchBucket") == 0)
        err_set(e, ec, "objects: %s %s: bucket %s does not exist (HTTP %ld)", c->op, call_name(c), s->bucket,
                c->status);
    else if (ec == ERR_NOT_FOUND)
        err_set(e, ec, "objects: no object %s", c->key);
    else
        err_set(e, ec, "objects: %s %s: HTTP %ld%s%s%s%.120s", c->op, call_name(c), c->status, *scode ? " " : "", scode,
                *smsg ? ": " : "", smsg);
    buf_free(&code);
    buf_free(&msg);
    return false;
}

/* Sends the request, retrying on network errors and 5xx; true on a 2xx answer (or a 404 when
 * c->ok_404). Otherwise `e` names the operation, the key and the status or the network error. */
static bool s3_call(s3_t *s, call_t *c, err_t *e)
{
    if (c->body && !body_hash(c->body, c->payload_hash))
        return err_set(e, ERR_INTERNAL, "objects: %s %s: cannot read the body: %s", c->op, call_name(c),
                       strerror(errno));
    if (!c->body)
        snprintf(c->payload_hash, sizeof c->payload_hash, "%s", SIGV4_EMPTY_SHA256);
    c->out_start = c->out ? c->out->len : 0;
    buf_init(&c->err_body);
    CURL *h = handle_get(s);
    if (!h)
        return err_set(e, ERR_INTERNAL, "objects: %s %s: curl_easy_init failed", c->op, call_name(c));
    CURLcode rc = CURLE_OK;
    int n = 0;
    for (n = 1; n <= ATTEMPTS; n++) {
        if (n > 1)
            backoff(n);
        rc = attempt(s, c, h);
        if (rc == CURLE_OK ? c->status < 500 : !transient(rc))
            break;
    }
    n = n > ATTEMPTS ? ATTEMPTS : n;
    handle_put(s, h);
    bool ok = false;
    if (rc != CURLE_OK) {
        if (c->too_big)
            err_set(e, ERR_INTERNAL, "objects: %s %s: the answer is larger than %zu bytes", c->op, call_name(c),
                    c->out_max);
        else
            err_set(e, transient(rc) ? ERR_UNAVAILABLE : ERR_INTERNAL, "objects: %s %s: %s (%d attempt%s)", c->op,
                    call_name(c), c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc), n, n == 1 ? "" : "s");
    } else if ((c->status >= 200 && c->status < 300) || (c->status == 404 && c->ok_404)) {
        ok = true;
    } else {
        status_error(s, c, e);
    }
    buf_free(&c->err_body);
    return ok;
}

/* ---------------------------------------------------------------- put */

static bool put_single(s3_t *s, const char *key, body_t *b, const char *content_type, err_t *e)
{
    call_t c = {.op = "put", .method = "PUT", .key = key, .body = b,
                .content_type = content_type ? content_type : "application/octet-stream"};
    return s3_call(s, &c, e);
}

static bool multipart_create(s3_t *s, const char *key, const char *content_type, buf_t *upload_id, err_t *e)
{
    buf_t answer;
    buf_init(&answer);
    const sigv4_pair_t q[] = {{"uploads", ""}};
    call_t c = {.op = "multipart upload", .method = "POST", .key = key, .query = q, .nquery = 1,
                .content_type = content_type ? content_type : "application/octet-stream", .out = &answer,
                .out_max = XML_BODY_MAX};
    bool ok = s3_call(s, &c, e);
    if (ok && (!xml_text(answer.data ? answer.data : "", answer.len, "UploadId", upload_id) || upload_id->len == 0))
        ok = err_set(e, ERR_INTERNAL, "objects: multipart upload %s: no UploadId in the answer", key);
    buf_free(&answer);
    return ok;
}

static bool multipart_complete(s3_t *s, const char *key, const char *upload_id, buf_t *parts, err_t *e)
{
    buf_t xml, answer, code;
    buf_init(&xml);
    buf_init(&answer);
    buf_init(&code);
    buf_printf(&xml, "<CompleteMultipartUpload>%s</CompleteMultipartUpload>", parts->data ? parts->data : "");
    body_t b = {.data = xml.data, .fd = -1, .len = (int64_t)xml.len};
    const sigv4_pair_t q[] = {{"uploadId", upload_id}};
    call_t c = {.op = "multipart upload", .method = "POST", .key = key, .query = q, .nquery = 1, .body = &b,
                .content_type = "application/xml", .out = &answer, .out_max = XML_BODY_MAX};
    bool ok = s3_call(s, &c, e);
    /* S3 may answer 200 and still fail, with an <Error> in the body. */
    if (ok && answer.data && memmem(answer.data, answer.len, "<Error>", 7)) {
        xml_text(answer.data, answer.len, "Code", &code);
        ok = err_set(e, ERR_UNAVAILABLE, "objects: multipart upload %s: completion failed: %s", key,
                     code.len ? code.data : "unknown error");
    }
    buf_free(&code);
    buf_free(&answer);
    buf_free(&xml);
    return ok;
}

static void multipart_abort(s3_t *s, const char *key, const char *upload_id)
{
    err_t ignore;
    err_clear(&ignore);
    const sigv4_pair_t q[] = {{"uploadId", upload_id}};
    call_t c = {.op = "multipart abort", .method = "DELETE", .key = key, .query = q, .nquery = 1, .ok_404 = true};
    s3_call(s, &c, &ignore);
}

/* Parts of OBJECTS_MULTIPART_MIN bytes, or larger (in whole MiB) when that would make more than
 * S3's 10,000 parts. */
static int64_t part_size(int64_t total)
{
    int64_t part = OBJECTS_MULTIPART_MIN;
    if ((total + part - 1) / part > MAX_PARTS)
        part = (((total + MAX_PARTS - 1) / MAX_PARTS) + (1 << 20) - 1) & ~(int64_t)((1 << 20) - 1);
    return part;
}

static bool put_multipart(s3_t *s, const char *key, const body_t *whole, const char *content_type, err_t *e)
{
    buf_t upload_id, parts;
    buf_init(&upload_id);
    buf_init(&parts);
    if (!multipart_create(s, key, content_type, &upload_id, e)) {
        buf_free(&upload_id);
        return false;
    }
    int64_t size = part_size(whole->len);
    bool ok = true;
    for (int64_t off = 0, n = 1; ok && off < whole->len; off += size, n++) {
        body_t b = {.data = whole->data, .fd = whole->fd, .off = whole->off + off,
                    .len = whole->len - off < size ? whole->len - off : size};
        char number[24];
        snprintf(number, sizeof number, "%lld", (long long)n);
        const sigv4_pair_t q[] = {{"partNumber", number}, {"uploadId", upload_id.data}};
        call_t c = {.op = "multipart upload", .method = "PUT", .key = key, .query = q, .nquery = 2, .body = &b};
        ok = s3_call(s, &c, e);
        if (ok && !c.etag[0])
            ok = err_set(e, ERR_INTERNAL, "objects: multipart upload %s: no ETag for part %lld", key, (long long)n);
        if (ok) {
            buf_printf(&parts, "<Part><PartNumber>%lld</PartNumber><ETag>", (long long)n);
            xml_escape(&parts, c.etag);
            buf_puts(&parts, "</ETag></Part>");
        }
    }
    ok = ok && multipart_complete(s, key, upload_id.data, &parts, e);
    if (!ok)
        multipart_abort(s, key, upload_id.data);
    buf_free(&parts);
    buf_free(&upload_id);
    return ok;
}

static bool put_body(s3_t *s, const char *key, body_t *b, const char *content_type, err_t *e)
{
    if (b->len > (int64_t)OBJECTS_MULTIPART_MIN)
        return put_multipart(s, key, b, content_type, e);
    return put_single(s, key, b, content_type, e);
}

static bool s3_put(objects_t *o, const char *key, const void *data, size_t len, const char *content_type, err_t *e)
{
    body_t b = {.data = len ? data : "", .fd = -1, .len = (int64_t)len};
    return put_body(s3_of(o), key, &b, content_type, e);
}

static bool s3_put_file(objects_t *o, const char *key, const char *path, const char *content_type, err_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return err_set(e, ERR_INTERNAL, "objects: put %s: cannot read %s: %s", key, path, strerror(err));
    }
    body_t b = {.fd = fd, .len = (int64_t)st.st_size};
    bool ok = put_body(s3_of(o), key, &b, content_type, e);
    close(fd);
    return ok;
}

/* ---------------------------------------------------------------- get, head, delete */

static bool s3_get(objects_t *o, const char *key, buf_t *out, err_t *e)
{
    call_t c = {.op = "get", .method = "GET", .key = key, .out = out};
    return s3_call(s3_of(o), &c, e);
}

static bool s3_head(objects_t *o, const char *key, bool *exists, int64_t *size, err_t *e)
{
    call_t c = {.op = "head", .method = "HEAD", .key = key, .ok_404 = true};
    if (!s3_call(s3_of(o), &c, e))
        return false;
    if (c.status != 404) {
        *exists = true;
        *size = c.length > 0 ? c.length : 0;
    }
    return true;
}

static bool s3_del(objects_t *o, const char *key, err_t *e)
{
    call_t c = {.op = "delete", .method = "DELETE", .key = key, .ok_404 = true};
    return s3_call(s3_of(o), &c, e);
}

/* ---------------------------------------------------------------- list */

/* Calls fn for each <Contents> of one ListObjectsV2 page whose key is a valid key. */
static void list_page(const char *xml, size_t n, objects_list_fn fn, void *arg, buf_t *key, buf_t *size)
{
    const char *p = xml, *end = xml + n;
    const char *v;
    size_t len;
    while (xml_find(p, (size_t)(end - p), "Contents", &v, &len)) {
        int64_t sz = 0;
        if (xml_text(v, len, "Key", key) && objects_key_valid(key->data)) {
            if (xml_text(v, len, "Size", size))
                parse_i64(size->data, &sz);
            fn(arg, key->data, sz);
        }
        p = v + len;
    }
}

static bool s3_list(objects_t *o, const char *prefix, objects_list_fn fn, void *arg, err_t *e)
{
    s3_t *s = s3_of(o);
    buf_t page, token, next, truncated, key, size;
    buf_init(&page);
    buf_init(&token);
    buf_init(&next);
    buf_init(&truncated);
    buf_init(&key);
    buf_init(&size);
    bool ok = true, more = true;
    while (ok && more) {
        sigv4_pair_t q[4] = {{"list-type", "2"}, {"max-keys", "1000"}, {"prefix", prefix}};
        size_t nq = 3;
        if (token.len)
            q[nq++] = (sigv4_pair_t){"continuation-token", token.data};
        buf_reset(&page);
        call_t c = {.op = "list", .method = "GET", .query = q, .nquery = nq, .out = &page, .out_max = XML_BODY_MAX};
        ok = s3_call(s, &c, e);
        if (!ok)
            break;
        const char *xml = page.data ? page.data : "";
        list_page(xml, page.len, fn, arg, &key, &size);
        more = xml_text(xml, page.len, "IsTruncated", &truncated) && strcmp(truncated.data, "true") == 0;
        if (more && (!xml_text(xml, page.len, "NextContinuationToken", &next) || next.len == 0 ||
                     (token.len && strcmp(token.data, next.data) == 0)))
            ok = err_set(e, ERR_INTERNAL, "objects: list %s: a truncated page without a new continuation token",
                         prefix);
        if (more && ok) {
            buf_reset(&token);
            buf_append(&token, next.data, next.len);
        }
    }
    buf_free(&page);
    buf_free(&token);
    buf_free(&next);
    buf_free(&truncated);
    buf_free(&key);
    buf_free(&size);
    return ok;
}

/* ---------------------------------------------------------------- presign */

static const char *s3_presign_get(objects_t *o, const char *key, int ttl_s, arena_t *a)
{
    s3_t *s = s3_of(o);
    buf_t path, url;
    buf_init(&path);
    buf_init(&url);
    object_path(s, key, &path);
    char date[17];
    sigv4_amz_date(time(NULL), date);
    sigv4_creds_t creds = {s->access_key_id, s->secret_access_key, s->region, "s3"};
    const char *result = NULL;
    if (sigv4_presign(&url, s->public_origin, s->public_host, path.data, ttl_s, date, &creds))
        result = arena_strndup(a, url.data, url.len);
    buf_free(&url);
    buf_free(&path);
    return result;
}

/* ---------------------------------------------------------------- open and close */

static void s3_close(objects_t *o)
{
    s3_t *s = s3_of(o);
    if (!s)
        return;
    for (int i = 0; i < s->nidle; i++)
        curl_easy_cleanup(s->idle[i]);
    pthread_mutex_destroy(&s->mu);
    free(s->origin);
    free(s->host);
    free(s->base_path);
    free(s->public_origin);
    free(s->public_host);
    free(s->bucket);
    free(s->region);
    free(s->access_key_id);
    free(s->secret_access_key);
    free(s);
}

static const objects_ops_t s3_ops = {
    .name = "s3",
    .put = s3_put,
    .put_file = s3_put_file,
    .get = s3_get,
    .head = s3_head,
    .del = s3_del,
    .list = s3_list,
    .presign_get = s3_presign_get,
    .local_path = NULL,
    .close = s3_close,
};

static char *dup_n(const char *s, size_t n)
{
    char *p = strndup(s, n);
    if (!p)
        abort();
    return p;
}

/* Splits "http[s]://host[:port][/path]" into its origin, the Host header clients send for it (no
 * port when it is the scheme's default) and the path without trailing slashes. */
static bool parse_url(const char *url, char **origin, char **host, char **path)
{
    size_t scheme = strncmp(url, "http://", 7) == 0 ? 7 : strncmp(url, "https://", 8) == 0 ? 8 : 0;
    if (!scheme)
        return false;
    const char *auth = url + scheme;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0 || memchr(auth, '@', alen) || auth[alen] == '?' || auth[alen] == '#')
        return false;
    const char *rest = auth + alen;
    if (strpbrk(rest, "?#%"))
        return false;
    size_t plen = strlen(rest);
    while (plen > 0 && rest[plen - 1] == '/')
        plen--;
    const char *dflt = scheme == 7 ? ":80" : ":443";
    size_t hlen = alen, dlen = strlen(dflt);
    if (alen > dlen && strncmp(auth + alen - dlen, dflt, dlen) == 0)
        hlen -= dlen;
    *origin = dup_n(url, scheme + alen);
    *host = dup_n(auth, hlen);
    *path = dup_n(rest, plen);
    return true;
}

static bool bucket_valid(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= 'A' && b[i] <= 'Z') || (b[i] >= '0' && b[i] <= '9') ||
              b[i] == '.' || b[i] == '-' || b[i] == '_'))
            return false;
    return true;
}

static bool set(const char *v) { return v && *v; }

/* The settings that are required, or have a form; each error names its variable. */
static bool check_settings(const config_t *cfg, err_t *e)
{
    if (!set(cfg->s3_bucket))
        return err_set(e, ERR_INTERNAL, "S3_BUCKET: required when S3_ENDPOINT is set");
    if (!bucket_valid(cfg->s3_bucket))
        return err_set(e, ERR_INTERNAL, "S3_BUCKET: expected a bucket name: 3 to 63 letters, digits, '.', '-' or "
                                         "'_', got %s", cfg->s3_bucket);
    if (!set(cfg->s3_access_key_id))
        return err_set(e, ERR_INTERNAL, "S3_ACCESS_KEY_ID: required when S3_ENDPOINT is set");
    if (!set(cfg->s3_secret_access_key))
        return err_set(e, ERR_INTERNAL, "S3_SECRET_ACCESS_KEY: required when S3_ENDPOINT is set");
    return true;
}

/* The endpoint's origin, Host and path, and the origin and Host of presigned URLs. */
static bool set_urls(s3_t *s, const config_t *cfg, err_t *e)
{
    if (!parse_url(cfg->s3_endpoint, &s->origin, &s->host, &s->base_path))
        return err_set(e, ERR_INTERNAL, "S3_ENDPOINT: expected http[s]://host[:port][/path] without a query, got %s",
                       cfg->s3_endpoint);
    if (!set(cfg->s3_public_url)) {
        s->public_origin = dup_n(s->origin, strlen(s->origin));
        s->public_host = dup_n(s->host, strlen(s->host));
        return true;
    }
    char *path = NULL;
    bool ok = parse_url(cfg->s3_public_url, &s->public_origin, &s->public_host, &path) && !*path;
    free(path);
    return ok || err_set(e, ERR_INTERNAL, "S3_PUBLIC_URL: expected http[s]://host[:port] without a path, got %s",
                         cfg->s3_public_url);
}

objects_t *objects_s3_open(const config_t *cfg, err_t *e)
{
    if (!check_settings(cfg, e))
        return NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        err_set(e, ERR_INTERNAL, "objects: curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    s3_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->base.ops = &s3_ops;
    pthread_mutex_init(&s->mu, NULL);
    if (!set_urls(s, cfg, e)) {
        s3_close(&s->base);
        return NULL;
    }
    const char *region = set(cfg->s3_region) ? cfg->s3_region : "us-east-1";
    s->bucket = dup_n(cfg->s3_bucket, strlen(cfg->s3_bucket));
    s->region = dup_n(region, strlen(region));
    s->access_key_id = dup_n(cfg->s3_access_key_id, strlen(cfg->s3_access_key_id));
    s->secret_access_key = dup_n(cfg->s3_secret_access_key, strlen(cfg->s3_secret_access_key));
    return &s->base;
}
