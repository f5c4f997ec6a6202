/* modelclient: the model service's client; see modelclient.h.
 *
 * The one idea: a call has one deadline, and everything the call does (connecting, sending,
 * waiting, backing off between attempts) is cut to fit what is left of it; whatever happens, the
 * caller then gets features, from the in-process extraction if need be. libcurl easy handles are
 * kept in a small pool so that connections to the service are reused across calls and threads. */
#include "modelclient.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "../base/util.h"
#include "breaker.h"

#define POOL_MAX 16               /* idle curl handles kept; more are made and freed as needed */
#define REPLY_MAX (64 * 1024)     /* a features reply is about 3 KiB */
#define MIN_ATTEMPT_MS 20         /* an attempt needs at least this much of the deadline left */
#define BACKOFF_BASE_MS 50        /* before retry i: between half and all of BASE << i */
#define LABEL_MAX 48
#define LABELS_DISTINCT 64        /* distinct labels the client will ever intern */

modelclient_t *g_model;

struct modelclient {
    char *extract_url; /* NULL: in-process only */
    int timeout_ms;    /* the whole call */
    int attempt_ms;    /* one attempt, at most */
    breaker_t breaker;
    pthread_mutex_t mu; /* idle[] */
    CURL *idle[POOL_MAX];
    int nidle;
    _Atomic uint64_t ok, failed, fallback, attempts;
};

static int64_t now_ms(void) { return (int64_t)(time_mono_ns() / 1000000u); }

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

modelclient_t *modelclient_open(const config_t *cfg, err_t *e)
{
    modelclient_t *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(e, ERR_INTERNAL, "out of memory");
        return NULL;
    }
    m->timeout_ms = cfg->model_timeout_ms > 0 ? cfg->model_timeout_ms : 2000;
    /* half the deadline: a hung attempt leaves time for one more (a dead service fails at once,
     * leaving time for every retry) */
    m->attempt_ms = m->timeout_ms / 2 > MIN_ATTEMPT_MS ? m->timeout_ms / 2 : MIN_ATTEMPT_MS;
    breaker_init(&m->breaker, MODEL_BREAKER_THRESHOLD,
                 cfg->model_breaker_open_ms > 0 ? cfg->model_breaker_open_ms : 30000, NULL, NULL);
    pthread_mutex_init(&m->mu, NULL);
    if (cfg->model_service_url) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            err_set(e, ERR_INTERNAL, "MODEL_SERVICE_URL: libcurl could not be initialised");
            pthread_mutex_destroy(&m->mu);
            breaker_destroy(&m->breaker);
            free(m);
            return NULL;
        }
        size_t n = strlen(cfg->model_service_url);
        while (n > 0 && cfg->model_service_url[n - 1] == '/')
            n--;
        static const char path[] = "/extract-features";
        m->extract_url = malloc(n + sizeof path);
        if (!m->extract_url) {
            curl_global_cleanup();
            pthread_mutex_destroy(&m->mu);
            breaker_destroy(&m->breaker);
            free(m);
            err_set(e, ERR_INTERNAL, "out of memory");
            return NULL;
        }
        memcpy(m->extract_url, cfg->model_service_url, n);
        memcpy(m->extract_url + n, path, sizeof path);
        log_info("model: features from %s (deadline %d ms a call, %d retries, breaker opens for %lld ms "
                 "after %d failed calls); in-process when it cannot answer",
                 m->extract_url, m->timeout_ms, MODEL_RETRIES, (long long)m->breaker.open_ms,
                 MODEL_BREAKER_THRESHOLD);
    }
    return m;
}

void modelclient_close(modelclient_t *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->nidle; i++)
        curl_easy_cleanup(m->idle[i]);
    if (m->extract_url) {
        free(m->extract_url);
        curl_global_cleanup();
    }
    pthread_mutex_destroy(&m->mu);
    breaker_destroy(&m->breaker);
    free(m);
}

/* The handle pool ------------------------------------------------------------------------------*/

static CURL *handle_take(modelclient_t *m)
{
    CURL *h = NULL;
    pthread_mutex_lock(&m->mu);
    if (m->nidle > 0)
        h = m->idle[--m->nidle];
    pthread_mutex_unlock(&m->mu);
    return h ? h : curl_easy_init();
}

static void handle_give(modelclient_t *m, CURL *h)
{
    /* options go back to their defaults; the live connection and DNS cache stay with the handle */
    curl_easy_reset(h);
    pthread_mutex_lock(&m->mu);
    if (m->nidle < POOL_MAX) {
        m->idle[m->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    if (h)
        curl_easy_cleanup(h);
}

/* One attempt ----------------------------------------------------------------------------------*/

typedef enum {
    ATTEMPT_OK,      /* features in `out` */
    ATTEMPT_VERDICT, /* the service refused the image (415, 422): `e` is the caller's answer */
    ATTEMPT_RETRY,   /* transient: connection, timeout, 408, 429, 5xx */
    ATTEMPT_FAIL,    /* not worth repeating: a bad reply, a 4xx that says we are misconfigured */
} attempt_t;

typedef struct upload_src {
    const char *p;
    size_t len, pos;
} upload_src_t;

static size_t src_read(char *buf, size_t size, size_t nitems, void *arg)
{
    upload_src_t *s = arg;
    size_t n = size * nitems, left = s->len - s->pos;
    if (n > left)
        n = left;
    memcpy(buf, s->p + s->pos, n);
    s->pos += n;
    return n;
}

static int src_seek(void *arg, curl_off_t offset, int origin)
{
    upload_src_t *s = arg;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > s->len)
        return CURL_SEEKFUNC_FAIL;
    s->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

typedef struct reply {
    buf_t body;
    bool too_big;
} reply_t;

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    reply_t *r = arg;
    size_t n = size * nmemb;
    if (r->body.len + n > REPLY_MAX) {
        r->too_big = true;
        return 0; /* aborts the transfer */
    }
    buf_append(&r->body, p, n);
    return n;
}

/* The message of an error reply ({"error":{"message":...}}), or a generic one. */
static void reply_error(const reply_t *r, long status, err_code_t code, err_t *e)
{
    json_t *doc = r->body.len ? json_loadb(r->body.data, r->body.len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    if (msg)
        err_set(e, code, "%s", msg);
    else
        err_set(e, code, "the model service answered %ld", status);
    json_decref(doc);
}

static attempt_t attempt(modelclient_t *m, CURL *h, img_type_t type, const void *img, size_t len, int64_t timeout_ms,
                         image_features_t *out, err_t *e)
{
    reply_t r = {.too_big = false};
    buf_init(&r.body);
    upload_src_t src = {.p = img, .len = len};
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    struct curl_slist *more = hdrs ? curl_slist_append(hdrs, "Accept: application/json") : NULL;
    curl_mime *mime = curl_mime_init(h);
    curl_mimepart *part = mime ? curl_mime_addpart(mime) : NULL;
    attempt_t res = ATTEMPT_FAIL;
    if (!more || !part || curl_mime_name(part, "file") != CURLE_OK ||
        curl_mime_filename(part, "image") != CURLE_OK || curl_mime_type(part, imageproc_mime(type)) != CURLE_OK ||
        curl_mime_data_cb(part, (curl_off_t)len, src_read, src_seek, NULL, &src) != CURLE_OK) {
        err_set(e, ERR_INTERNAL, "out of memory building the request");
        goto done;
    }
    hdrs = more;
    curl_easy_setopt(h, CURLOPT_URL, m->extract_url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "hearth/" HEARTH_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        if (r.too_big) {
            err_set(e, ERR_UNAVAILABLE, "the model service's reply is larger than %d bytes", REPLY_MAX);
        } else {
            err_set(e, ERR_UNAVAILABLE, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
            res = ATTEMPT_RETRY;
        }
        goto done;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200) {
        err_t pe;
        err_clear(&pe);
        if (model_features_read(r.body.data ? r.body.data : "", r.body.len, out, &pe)) {
            res = ATTEMPT_OK;
        } else {
            err_set(e, ERR_UNAVAILABLE, "a bad reply from the model service: %s", pe.message);
        }
    } else if (status == 415 || status == 422) {
        reply_error(&r, status, status == 415 ? ERR_UNSUPPORTED_MEDIA : ERR_VALIDATION, e);
        res = ATTEMPT_VERDICT;
    } else {
        reply_error(&r, status, ERR_UNAVAILABLE, e);
        char msg[sizeof e->message];
        snprintf(msg, sizeof msg, "%s", e->message);
        err_set(e, ERR_UNAVAILABLE, "HTTP %ld: %s", status, msg);
        res = status == 408 || status == 429 || status >= 500 ? ATTEMPT_RETRY : ATTEMPT_FAIL;
    }
done:
    curl_mime_free(mime);
    curl_slist_free_all(hdrs);
    buf_free(&r.body);
    return res;
}

/* The call: attempts with backoff, all within the deadline. ATTEMPT_OK, ATTEMPT_VERDICT, or
 * ATTEMPT_FAIL (the call failed; `e` says why). */
static attempt_t call_service(modelclient_t *m, img_type_t type, const void *img, size_t len, image_features_t *out,
                              int *attempts, err_t *e)
{
    int64_t deadline = now_ms() + m->timeout_ms;
    CURL *h = handle_take(m);
    if (!h) {
        err_set(e, ERR_UNAVAILABLE, "curl_easy_init failed");
        return ATTEMPT_FAIL;
    }
    attempt_t res = ATTEMPT_FAIL;
    *attempts = 0;
    for (int i = 0; i <= MODEL_RETRIES; i++) {
        int64_t left = deadline - now_ms();
        if (left < MIN_ATTEMPT_MS) {
            if (i == 0)
                err_set(e, ERR_UNAVAILABLE, "no time left for an attempt");
            break;
        }
        (*attempts)++;
        atomic_fetch_add_explicit(&m->attempts, 1, memory_order_relaxed);
        res = attempt(m, h, type, img, len, left < m->attempt_ms ? left : m->attempt_ms, out, e);
        if (res != ATTEMPT_RETRY || i == MODEL_RETRIES)
            break;
        int64_t base = (int64_t)BACKOFF_BASE_MS << i;
        int64_t wait = base / 2 + (int64_t)(rand_fast() % (uint64_t)(base / 2 + 1));
        if (deadline - now_ms() - wait < MIN_ATTEMPT_MS)
            break; /* no room for another attempt after the wait */
        sleep_ms(wait);
    }
    handle_give(m, h);
    return res == ATTEMPT_RETRY ? ATTEMPT_FAIL : res;
}

/* In-process ------------------------------------------------------------------------------------*/

bool model_extract_local(const void *img, size_t len, image_features_t *out, err_t *e)
{
    img_type_t t = imageproc_sniff(img, len);
    if (t == IMG_NONE)
        return err_set(e, ERR_UNSUPPORTED_MEDIA, "the image must be JPEG, PNG or WebP");
    int w = 0, h = 0;
    if (!imageproc_header(t, img, len, &w, &h, e))
        return false;
    if ((long long)w * h > IMAGEPROC_MAX_PIXELS)
        return err_set(e, ERR_VALIDATION, "the image is %dx%d, more than %lld megapixels", w, h,
                       IMAGEPROC_MAX_PIXELS / 1000000);
    return imageproc_process(t, img, len, out, NULL, NULL, e);
}

const char *model_source_name(model_source_t s) { return s == MODEL_SOURCE_SERVICE ? "service" : "fallback"; }

static bool fall_back(modelclient_t *m, const void *img, size_t len, image_features_t *out, model_source_t *src,
                      err_t *e)
{
    if (m && m->extract_url)
        atomic_fetch_add_explicit(&m->fallback, 1, memory_order_relaxed);
    if (src)
        *src = MODEL_SOURCE_FALLBACK;
    return model_extract_local(img, len, out, e);
}

bool model_extract_source(modelclient_t *m, const void *img, size_t len, image_features_t *out, model_source_t *src,
                          err_t *e)
{
    img_type_t type = imageproc_sniff(img, len);
    /* nothing to ask the service about: no service, an image it would refuse for its size, or a
     * type that is refused either way (the in-process path says so) */
    if (!m || !m->extract_url || len > MODEL_MAX_IMAGE || type == IMG_NONE) {
        if (src)
            *src = MODEL_SOURCE_FALLBACK;
        return model_extract_local(img, len, out, e);
    }
    breaker_ticket_t ticket;
    if (!breaker_allow(&m->breaker, &ticket))
        return fall_back(m, img, len, out, src, e); /* open: no call at all */
    breaker_stats_t st;
    breaker_stats(&m->breaker, &st);
    uint64_t opens_before = st.opens;
    int64_t t0 = now_ms();
    int attempts = 0;
    err_t ce;
    err_clear(&ce);
    attempt_t r = call_service(m, type, img, len, out, &attempts, &ce);
    breaker_record(&m->breaker, &ticket, r != ATTEMPT_FAIL);
    if (r != ATTEMPT_FAIL) {
        atomic_fetch_add_explicit(&m->ok, 1, memory_order_relaxed);
        if (ticket.probe)
            log_info("model: the model service answers again; breaker closed");
        if (src)
            *src = MODEL_SOURCE_SERVICE;
        if (r == ATTEMPT_VERDICT) {
            *e = ce;
            return false;
        }
        return true;
    }
    atomic_fetch_add_explicit(&m->failed, 1, memory_order_relaxed);
    breaker_stats(&m->breaker, &st);
    log_warn("model: extract-features failed after %d attempt(s) in %lld ms: %s; features computed in-process",
             attempts, (long long)(now_ms() - t0), ce.message);
    if (st.opens != opens_before)
        log_warn("model: breaker open for %lld ms after %s; every call is answered in-process meanwhile",
                 (long long)m->breaker.open_ms,
                 ticket.probe ? "the probe call failed" : "failed calls in a row");
    return fall_back(m, img, len, out, src, e);
}

bool model_extract(modelclient_t *m, const void *img, size_t len, image_features_t *out, err_t *e)
{
    return model_extract_source(m, img, len, out, NULL, e);
}

/* State and metrics ----------------------------------------------------------------------------*/

const char *modelclient_state(modelclient_t *m)
{
    if (!m || !m->extract_url)
        return "disabled";
    return breaker_state_name(breaker_state(&m->breaker));
}

void modelclient_render_metrics(modelclient_t *m, buf_t *out)
{
    bool on = m && m->extract_url;
    breaker_stats_t st = {.state = BREAKER_CLOSED};
    if (on)
        breaker_stats(&m->breaker, &st);
    buf_printf(out,
               "# HELP hearth_model_service_enabled 1 when features come from a model service (MODEL_SERVICE_URL).\n"
               "# TYPE hearth_model_service_enabled gauge\nhearth_model_service_enabled %d\n"
               "# HELP hearth_model_breaker_state The model service's circuit breaker: 0 closed, 1 open, 2 half-open.\n"
               "# TYPE hearth_model_breaker_state gauge\nhearth_model_breaker_state %d\n"
               "# HELP hearth_model_calls_total Calls to the model service: ok (it answered), failed (it did not, "
               "in time), "
               "fallback (features computed in-process instead: a failed call or an open breaker).\n"
               "# TYPE hearth_model_calls_total counter\n"
               "hearth_model_calls_total{outcome=\"ok\"} %llu\n"
               "hearth_model_calls_total{outcome=\"failed\"} %llu\n"
               "hearth_model_calls_total{outcome=\"fallback\"} %llu\n"
               "# HELP hearth_model_attempts_total HTTP requests to the model service, retries included.\n"
               "# TYPE hearth_model_attempts_total counter\nhearth_model_attempts_total %llu\n"
               "# HELP hearth_model_breaker_opens_total Times the model service's breaker opened.\n"
               "# TYPE hearth_model_breaker_opens_total counter\nhearth_model_breaker_opens_total %llu\n",
               on ? 1 : 0, (int)st.state,
               on ? (unsigned long long)atomic_load(&m->ok) : 0ull,
               on ? (unsigned long long)atomic_load(&m->failed) : 0ull,
               on ? (unsigned long long)atomic_load(&m->fallback) : 0ull,
               on ? (unsigned long long)atomic_load(&m->attempts) : 0ull, (unsigned long long)st.opens);
}

/* The wire format -------------------------------------------------------------------------------*/

void model_features_write(jw_t *w, const image_features_t *f)
{
    char num[40];
    jw_kstr(w, "model", MODEL_NAME);
    jw_key(w, "embedding");
    jw_arr_begin(w);
    for (int i = 0; i < IMAGEPROC_DIM; i++) {
        /* nine significant digits read back as the same float */
        int n = snprintf(num, sizeof num, "%.9g", (double)f->embedding[i]);
        jw_raw(w, num, (size_t)n);
    }
    jw_arr_end(w);
    jw_kint(w, "dimension", IMAGEPROC_DIM);
    snprintf(num, sizeof num, "%016" PRIx64, f->phash);
    jw_kstr(w, "phash", num);
    jw_key(w, "labels");
    jw_arr_begin(w);
    for (int i = 0; i < f->nlabels && i < IMAGEPROC_MAX_LABELS; i++)
        jw_str(w, f->labels[i]);
    jw_arr_end(w);
    jw_kint(w, "width", f->width);
    jw_kint(w, "height", f->height);
    jw_key(w, "colors");
    jw_arr_begin(w);
    for (int i = 0; i < f->ncolors && i < IMAGEPROC_MAX_COLORS; i++) {
        snprintf(num, sizeof num, "#%06" PRIx32, f->colors[i] & 0xffffffu);
        jw_str(w, num);
    }
    jw_arr_end(w);
    jw_key(w, "brightness");
    jw_double(w, f->brightness);
    jw_key(w, "sharpness");
    jw_double(w, f->sharpness);
    jw_key(w, "too_dark");
    jw_bool(w, f->too_dark);
    jw_key(w, "blurry");
    jw_bool(w, f->blurry);
}

/* Labels read from replies become static strings, as imageproc's own are: each distinct one is
 * copied once into this table, which lives as long as the process. */
static pthread_mutex_t labels_mu = PTHREAD_MUTEX_INITIALIZER;
static char labels[LABELS_DISTINCT][LABEL_MAX + 1];
static int nlabels;

static const char *label_intern(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LABEL_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return NULL;
    const char *found = NULL;
    pthread_mutex_lock(&labels_mu);
    for (int i = 0; i < nlabels && !found; i++)
        if (strcmp(labels[i], s) == 0)
            found = labels[i];
    if (!found && nlabels < LABELS_DISTINCT) {
        memcpy(labels[nlabels], s, n + 1);
        found = labels[nlabels++];
    }
    pthread_mutex_unlock(&labels_mu);
    return found;
}

static bool read_int(json_t *doc, const char *key, long long lo, long long hi, long long *out, err_t *e)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return err_set(e, ERR_INTERNAL, "%s must be an integer from %lld to %lld", key, lo, hi);
    *out = json_integer_value(v);
    return true;
}

static bool read_num(json_t *doc, const char *key, double lo, double hi, double *out, err_t *e)
{
    json_t *v = json_object_get(doc, key);
    double x = json_number_value(v);
    if (!json_is_number(v) || !isfinite(x) || x < lo || x > hi)
        return err_set(e, ERR_INTERNAL, "%s must be a number from %g to %g", key, lo, hi);
    *out = x;
    return true;
}

static bool read_bool(json_t *doc, const char *key, bool *out, err_t *e)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_boolean(v))
        return err_set(e, ERR_INTERNAL, "%s must be true or false", key);
    *out = json_is_true(v);
    return true;
}

static bool read_hex(const char *s, size_t digits, uint64_t *out)
{
    if (!s || strlen(s) != digits)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

static bool read_features(json_t *doc, image_features_t *f, err_t *e)
{
    memset(f, 0, sizeof *f);
    if (!json_is_object(doc))
        return err_set(e, ERR_INTERNAL, "not a JSON object");
    const char *model = json_string_value(json_object_get(doc, "model"));
    if (!model || strcmp(model, MODEL_NAME) != 0)
        return err_set(e, ERR_INTERNAL, "model is %s, expected %s", model ? model : "missing", MODEL_NAME);
    long long dim, width, height;
    if (!read_int(doc, "dimension", IMAGEPROC_DIM, IMAGEPROC_DIM, &dim, e))
        return false;
    json_t *emb = json_object_get(doc, "embedding");
    if (!json_is_array(emb) || json_array_size(emb) != IMAGEPROC_DIM)
        return err_set(e, ERR_INTERNAL, "embedding must be an array of %d numbers", IMAGEPROC_DIM);
    double sum = 0;
    for (size_t i = 0; i < IMAGEPROC_DIM; i++) {
        json_t *v = json_array_get(emb, i);
        double d = json_number_value(v);
        if (!json_is_number(v) || !isfinite(d) || fabs(d) > 1.0 + MODEL_NORM_TOLERANCE)
            return err_set(e, ERR_INTERNAL, "embedding[%zu] is not a number from -1 to 1", i);
        f->embedding[i] = (float)d;
        sum += (double)f->embedding[i] * f->embedding[i];
    }
    if (fabs(sqrt(sum) - 1.0) > MODEL_NORM_TOLERANCE)
        return err_set(e, ERR_INTERNAL, "the embedding's norm is %g, not 1", sqrt(sum));
    if (!read_hex(json_string_value(json_object_get(doc, "phash")), 16, &f->phash))
        return err_set(e, ERR_INTERNAL, "phash must be 16 hex digits");
    if (!read_int(doc, "width", 1, IMAGEPROC_MAX_PIXELS, &width, e) ||
        !read_int(doc, "height", 1, IMAGEPROC_MAX_PIXELS, &height, e))
        return false;
    if (width * height > IMAGEPROC_MAX_PIXELS)
        return err_set(e, ERR_INTERNAL, "%lldx%lld is more than %lld pixels", width, height, IMAGEPROC_MAX_PIXELS);
    f->width = (int)width;
    f->height = (int)height;
    json_t *labs = json_object_get(doc, "labels");
    if (!json_is_array(labs) || json_array_size(labs) > IMAGEPROC_MAX_LABELS)
        return err_set(e, ERR_INTERNAL, "labels must be an array of at most %d strings", IMAGEPROC_MAX_LABELS);
    for (size_t i = 0; i < json_array_size(labs); i++) {
        const char *s = json_string_value(json_array_get(labs, i));
        const char *l = s ? label_intern(s) : NULL;
        if (!l)
            return err_set(e, ERR_INTERNAL, "labels[%zu] is not a label (1 to %d printable characters, at most %d "
                           "distinct)", i, LABEL_MAX, LABELS_DISTINCT);
        f->labels[f->nlabels++] = l;
    }
    json_t *cols = json_object_get(doc, "colors");
    if (!json_is_array(cols) || json_array_size(cols) > IMAGEPROC_MAX_COLORS)
        return err_set(e, ERR_INTERNAL, "colors must be an array of at most %d strings", IMAGEPROC_MAX_COLORS);
    for (size_t i = 0; i < json_array_size(cols); i++) {
        const char *s = json_string_value(json_array_get(cols, i));
        uint64_t rgb;
        if (!s || s[0] != '#' || !read_hex(s + 1, 6, &rgb))
            return err_set(e, ERR_INTERNAL, "colors[%zu] must be #rrggbb", i);
        f->colors[f->ncolors++] = (uint32_t)rgb;
    }
    return read_num(doc, "brightness", 0, 255, &f->brightness, e) &&
           read_num(doc, "sharpness", 0, 1e12, &f->sharpness, e) && read_bool(doc, "too_dark", &f->too_dark, e) &&
           read_bool(doc, "blurry", &f->blurry, e);
}

bool model_features_read(const char *json, size_t len, image_features_t *out, err_t *e)
{
    json_error_t je;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc)
        return err_set(e, ERR_INTERNAL, "not JSON: %s", je.text);
    bool ok = read_features(doc, out, e);
    json_decref(doc);
    return ok;
}
