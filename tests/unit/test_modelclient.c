/* test_modelclient: the model service's client (infra/modelclient.c) against a scripted HTTP
 * server on a thread of this test: the wire format reads back exactly what was written and
 * refuses replies that break its promises (model, dimension, finite unit-norm floats, hash,
 * sizes); transient failures (503) are retried and then succeed; a verdict on the image (422) is
 * the answer and not a failure; a 404 is not retried; a service that hangs costs the caller no
 * more than the deadline before the in-process fallback answers; the breaker counts calls (of four
 * attempts each), opens after five failed ones, stops calling while open, and closes on a good
 * probe; without a URL (or a client) the features are computed in-process. */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "base/util.h"
#include "infra/modelclient.h"

/* A scripted server ---------------------------------------------------------------------------*/

typedef enum { ACT_REPLY, ACT_HANG } act_t;

typedef struct fake {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    act_t act; /* what the next request gets */
    int status;
    char body[8192];
    int fail_first; /* the first N requests get 503 */
    int requests;
    int hung[64];
    int nhung;
    atomic_bool stop;
} fake_t;

/* Reads one request (head and Content-Length body) without keeping the body. */
static bool read_request(int fd)
{
    char buf[65536];
    size_t have = 0;
    bool head = false;
    long left = 0; /* body bytes still to come, once the head is in */
    while (!head || left > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 3000) <= 0)
            return false;
        ssize_t n = read(fd, head ? buf : buf + have, head ? sizeof buf : sizeof buf - have);
        if (n <= 0)
            return false;
        if (head) {
            left -= n;
            continue;
        }
        have += (size_t)n;
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        if (!end) {
            if (have == sizeof buf)
                return false;
            continue;
        }
        head = true;
        long cl = 0;
        for (char *h = buf; h < end;) {
            char *eol = memmem(h, (size_t)(end + 2 - h), "\r\n", 2);
            if (strncasecmp(h, "Content-Length:", 15) == 0)
                cl = strtol(h + 15, NULL, 10);
            h = eol + 2;
        }
        left = cl - (long)(buf + have - (end + 4));
    }
    return true;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return; /* the client went away: nothing to do about it here */
        p += w;
        n -= (size_t)w;
    }
}

static void *fake_run(void *arg)
{
    fake_t *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            continue;
        if (!read_request(c)) {
            close(c);
            continue;
        }
        pthread_mutex_lock(&f->mu);
        f->requests++;
        act_t act = f->act;
        int status = f->status;
        char body[sizeof f->body];
        memcpy(body, f->body, sizeof body);
        if (f->fail_first > 0) {
            f->fail_first--;
            act = ACT_REPLY;
            status = 503;
            snprintf(body, sizeof body, "{\"error\":{\"code\":\"unavailable\",\"message\":\"busy\"}}");
        }
        if (act == ACT_HANG && f->nhung < 64) {
            f->hung[f->nhung++] = c; /* never answered; closed at teardown */
            pthread_mutex_unlock(&f->mu);
            continue;
        }
        pthread_mutex_unlock(&f->mu);
        char head[256];
        int hn = snprintf(head, sizeof head,
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n",
                          status, strlen(body));
        write_all(c, head, (size_t)hn);
        write_all(c, body, strlen(body));
        close(c);
    }
    return NULL;
}

static fake_t *fake_start(void)
{
    fake_t *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(f->fd, 64) != 0 ||
        getsockname(f->fd, (struct sockaddr *)&a, &len) != 0)
        fail_msg("cannot listen");
    f->port = ntohs(a.sin_port);
    f->act = ACT_REPLY;
    f->status = 200;
    atomic_init(&f->stop, false);
    pthread_create(&f->th, NULL, fake_run, f);
    return f;
}

static void fake_stop(fake_t *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
    for (int i = 0; i < f->nhung; i++)
        close(f->hung[i]);
    close(f->fd);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void fake_set(fake_t *f, act_t act, int status, const char *body)
{
    pthread_mutex_lock(&f->mu);
    f->act = act;
    f->status = status;
    snprintf(f->body, sizeof f->body, "%s", body ? body : "");
    pthread_mutex_unlock(&f->mu);
}

static int fake_requests(fake_t *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->requests;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/* Fixtures ------------------------------------------------------------------------------------*/

static void sample_features(image_features_t *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < IMAGEPROC_DIM; i++)
        f->embedding[i] = (i % 2 ? 1.0f : -1.0f) / 16.0f; /* 256 x (1/16)^2 = 1 */
    f->phash = 0x0123456789abcdefULL;
    f->width = 640;
    f->height = 427;
    f->labels[0] = "landscape";
    f->labels[1] = "blue";
    f->nlabels = 2;
    f->colors[0] = 0x112233;
    f->colors[1] = 0xffffff;
    f->ncolors = 2;
    f->brightness = 100.5;
    f->sharpness = 321.25;
    f->blurry = true;
}

static char *features_json(const image_features_t *f)
{
    buf_t b;
    buf_init(&b);
    jw_t w;
    jw_init(&w, &b);
    jw_obj_begin(&w);
    model_features_write(&w, f);
    jw_obj_end(&w);
    return buf_cstr(&b); /* the caller frees */
}

static char *read_fixture(const char *name, size_t *len)
{
    const char *dir = getenv("HEARTH_FIXTURES");
    char path[1024];
    snprintf(path, sizeof path, "%s/model/%s", dir ? dir : "tests/fixtures", name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *p = malloc((size_t)n);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return p;
}

/* Bytes that sniff as PNG, so the client asks the service, but do not decode. */
static const char fake_png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR-not-really";

static modelclient_t *client_for(fake_t *f, int timeout_ms, int open_ms)
{
    char url[64]; /* the client keeps a copy */
    config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f ? f->port : 1);
    cfg.model_service_url = f ? url : NULL;
    cfg.model_timeout_ms = timeout_ms;
    cfg.model_breaker_open_ms = open_ms;
    err_t e;
    err_clear(&e);
    modelclient_t *m = modelclient_open(&cfg, &e);
    assert_non_null(m);
    return m;
}

static unsigned long long metric(modelclient_t *m, const char *line_prefix)
{
    buf_t b;
    buf_init(&b);
    modelclient_render_metrics(m, &b);
    char want[128];
    snprintf(want, sizeof want, "\n%s", line_prefix); /* a sample line, not its # HELP */
    const char *p = strstr(buf_cstr(&b), want);
    unsigned long long v = p ? strtoull(p + strlen(want), NULL, 10) : ~0ull;
    buf_free(&b);
    return v;
}

static int64_t ms_since(uint64_t t0) { return (int64_t)((time_mono_ns() - t0) / 1000000u); }

/* Tests ---------------------------------------------------------------------------------------*/

static void wire_format_round_trips(void **state)
{
    (void)state;
    image_features_t a, b;
    sample_features(&a);
    char *json = features_json(&a);
    err_t e;
    err_clear(&e);
    assert_true(model_features_read(json, strlen(json), &b, &e));
    assert_memory_equal(a.embedding, b.embedding, sizeof a.embedding);
    assert_int_equal(a.phash, b.phash);
    assert_int_equal(b.width, 640);
    assert_int_equal(b.height, 427);
    assert_int_equal(b.nlabels, 2);
    assert_string_equal(b.labels[0], "landscape");
    assert_string_equal(b.labels[1], "blue");
    assert_int_equal(b.ncolors, 2);
    assert_int_equal(b.colors[0], 0x112233);
    assert_int_equal(b.colors[1], 0xffffff);
    assert_true(b.brightness == 100.5 && b.sharpness == 321.25 && b.blurry && !b.too_dark);
    /* a label read twice is the same static string */
    image_features_t c;
    assert_true(model_features_read(json, strlen(json), &c, &e));
    assert_ptr_equal(b.labels[0], c.labels[0]);
    free(json);
}

/* The reply with `from` replaced by `to` must be refused. */
static void refused(const char *json, const char *from, const char *to)
{
    const char *at = strstr(json, from);
    if (!at)
        fail_msg("%s not in the reply", from);
    buf_t b;
    buf_init(&b);
    buf_append(&b, json, (size_t)(at - json));
    buf_puts(&b, to);
    buf_puts(&b, at + strlen(from));
    image_features_t f;
    err_t e;
    err_clear(&e);
    if (model_features_read(b.data, b.len, &f, &e))
        fail_msg("accepted with %s -> %s", from, to);
    assert_int_equal(e.code, ERR_INTERNAL);
    assert_true(e.message[0] != '\0');
    buf_free(&b);
}

static void bad_replies_are_refused(void **state)
{
    (void)state;
    image_features_t a;
    sample_features(&a);
    char *json = features_json(&a);
    refused(json, "\"hearth-visual-v1\"", "\"clip-vit-b32\"");
    refused(json, "\"dimension\":256", "\"dimension\":512");
    refused(json, "\"embedding\":[-0.0625,", "\"embedding\":["); /* 255 numbers */
    refused(json, "\"embedding\":[-0.0625,", "\"embedding\":[-0.5,");  /* not unit norm */
    refused(json, "\"embedding\":[-0.0625,", "\"embedding\":[\"x\","); /* not a number */
    refused(json, "\"embedding\":[-0.0625,", "\"embedding\":[1e300,"); /* not a float */
    refused(json, "0123456789abcdef", "0123456789abcde");
    refused(json, "0123456789abcdef", "0123456789abcdeg");
    refused(json, "\"width\":640", "\"width\":0");
    refused(json, "\"width\":640", "\"width\":200000"); /* 200000 x 427 pixels */
    refused(json, "\"labels\":[", "\"labels\":[7,");
    refused(json, "#112233", "#11223g");
    refused(json, "\"brightness\":100.5", "\"brightness\":300");
    refused(json, "\"blurry\":true", "\"blurry\":1");
    refused(json, ",\"sharpness\":321.25", "");
    refused(json, "{", "[");
    free(json);
}

static void transient_failures_are_retried(void **state)
{
    (void)state;
    fake_t *f = fake_start();
    image_features_t want, got;
    sample_features(&want);
    char *json = features_json(&want);
    fake_set(f, ACT_REPLY, 200, json);
    pthread_mutex_lock(&f->mu);
    f->fail_first = 2; /* 503, 503, then the features */
    pthread_mutex_unlock(&f->mu);
    modelclient_t *m = client_for(f, 2000, 30000);
    model_source_t src = MODEL_SOURCE_FALLBACK;
    err_t e;
    err_clear(&e);
    assert_true(model_extract_source(m, fake_png, sizeof fake_png, &got, &src, &e));
    assert_int_equal(src, MODEL_SOURCE_SERVICE);
    assert_memory_equal(got.embedding, want.embedding, sizeof want.embedding);
    assert_int_equal(fake_requests(f), 3);
    assert_int_equal(metric(m, "hearth_model_attempts_total "), 3);
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"ok\"} "), 1);
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"failed\"} "), 0);
    assert_string_equal(modelclient_state(m), "closed");
    modelclient_close(m);
    fake_stop(f);
    free(json);
}

static void a_verdict_is_the_answer(void **state)
{
    (void)state;
    fake_t *f = fake_start();
    fake_set(f, ACT_REPLY, 422,
             "{\"error\":{\"code\":\"validation_failed\",\"message\":\"the image does not decode\"}}");
    modelclient_t *m = client_for(f, 2000, 30000);
    image_features_t got;
    model_source_t src = MODEL_SOURCE_FALLBACK;
    err_t e;
    err_clear(&e);
    for (int i = 0; i < 8; i++) { /* more than the threshold: a bad image is not a failing service */
        assert_false(model_extract_source(m, fake_png, sizeof fake_png, &got, &src, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        assert_string_equal(e.message, "the image does not decode");
        assert_int_equal(src, MODEL_SOURCE_SERVICE);
    }
    assert_int_equal(fake_requests(f), 8);
    assert_string_equal(modelclient_state(m), "closed");
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"ok\"} "), 8);
    modelclient_close(m);
    fake_stop(f);
}

static void a_404_is_not_retried(void **state)
{
    (void)state;
    fake_t *f = fake_start();
    fake_set(f, ACT_REPLY, 404, "{\"error\":{\"code\":\"not_found\",\"message\":\"no route\"}}");
    modelclient_t *m = client_for(f, 2000, 30000);
    size_t len;
    char *img = read_fixture("coins.png", &len);
    image_features_t got;
    model_source_t src = MODEL_SOURCE_SERVICE;
    err_t e;
    err_clear(&e);
    assert_true(model_extract_source(m, img, len, &got, &src, &e));
    assert_int_equal(src, MODEL_SOURCE_FALLBACK);
    assert_int_equal(got.width, 384);
    assert_int_equal(got.height, 303);
    assert_int_equal(fake_requests(f), 1);
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"failed\"} "), 1);
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"fallback\"} "), 1);
    free(img);
    modelclient_close(m);
    fake_stop(f);
}

static void a_hung_service_costs_no_more_than_the_deadline(void **state)
{
    (void)state;
    fake_t *f = fake_start();
    fake_set(f, ACT_HANG, 0, NULL);
    modelclient_t *m = client_for(f, 400, 30000);
    size_t len;
    char *img = read_fixture("rocket.jpg", &len);
    image_features_t local, got;
    err_t e;
    err_clear(&e);
    uint64_t t0 = time_mono_ns();
    assert_true(model_extract_local(img, len, &local, &e));
    int64_t local_ms = ms_since(t0);
    t0 = time_mono_ns();
    model_source_t src = MODEL_SOURCE_SERVICE;
    assert_true(model_extract_source(m, img, len, &got, &src, &e));
    int64_t took = ms_since(t0);
    assert_int_equal(src, MODEL_SOURCE_FALLBACK);
    assert_memory_equal(got.embedding, local.embedding, sizeof local.embedding);
    if (took > 400 + 2 * local_ms + 500) /* scheduling slack: ctest runs tests side by side */
        fail_msg("the call took %lld ms: deadline 400 ms, the local extraction %lld ms", (long long)took,
                 (long long)local_ms);
    assert_true(took >= 350); /* it did wait for the service */
    int n = fake_requests(f); /* two attempts of 200 ms fit, with a backoff between (one, on a starved machine) */
    assert_true(n >= 1 && n <= 2);
    free(img);
    modelclient_close(m);
    fake_stop(f);
}

static void the_breaker_counts_calls_and_recovers(void **state)
{
    (void)state;
    fake_t *f = fake_start();
    fake_set(f, ACT_REPLY, 503, "{\"error\":{\"code\":\"unavailable\",\"message\":\"down\"}}");
    modelclient_t *m = client_for(f, 2000, 1000);
    size_t len;
    char *img = read_fixture("coins.png", &len);
    image_features_t got;
    model_source_t src;
    err_t e;
    err_clear(&e);
    for (int i = 0; i < MODEL_BREAKER_THRESHOLD; i++) {
        assert_string_equal(modelclient_state(m), "closed");
        assert_true(model_extract_source(m, img, len, &got, &src, &e));
        assert_int_equal(src, MODEL_SOURCE_FALLBACK);
    }
    /* five calls of four attempts each: the breaker counted calls */
    assert_int_equal(fake_requests(f), MODEL_BREAKER_THRESHOLD * (1 + MODEL_RETRIES));
    assert_string_equal(modelclient_state(m), "open");
    assert_int_equal(metric(m, "hearth_model_breaker_state "), 1);
    /* while open: no call at all */
    uint64_t t0 = time_mono_ns();
    assert_true(model_extract_source(m, img, len, &got, &src, &e));
    assert_int_equal(src, MODEL_SOURCE_FALLBACK);
    assert_int_equal(fake_requests(f), MODEL_BREAKER_THRESHOLD * (1 + MODEL_RETRIES));
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"failed\"} "), MODEL_BREAKER_THRESHOLD);
    assert_int_equal(metric(m, "hearth_model_calls_total{outcome=\"fallback\"} "), MODEL_BREAKER_THRESHOLD + 1);
    /* the service comes back; after the open period one probe closes the breaker */
    image_features_t want;
    sample_features(&want);
    char *json = features_json(&want);
    fake_set(f, ACT_REPLY, 200, json);
    while (ms_since(t0) < 1020)
        usleep(10000);
    assert_string_equal(modelclient_state(m), "half_open");
    assert_int_equal(metric(m, "hearth_model_breaker_state "), 2);
    assert_true(model_extract_source(m, img, len, &got, &src, &e));
    assert_int_equal(src, MODEL_SOURCE_SERVICE);
    assert_string_equal(modelclient_state(m), "closed");
    assert_int_equal(metric(m, "hearth_model_breaker_opens_total "), 1);
    free(json);
    free(img);
    modelclient_close(m);
    fake_stop(f);
}

static void without_a_service_features_are_local(void **state)
{
    (void)state;
    modelclient_t *m = client_for(NULL, 2000, 30000);
    assert_string_equal(modelclient_state(m), "disabled");
    assert_string_equal(modelclient_state(NULL), "disabled");
    size_t len;
    char *img = read_fixture("chelsea.webp", &len);
    image_features_t a, b;
    model_source_t src = MODEL_SOURCE_SERVICE;
    err_t e;
    err_clear(&e);
    assert_true(model_extract_source(m, img, len, &a, &src, &e));
    assert_int_equal(src, MODEL_SOURCE_FALLBACK);
    assert_int_equal(a.width, 451);
    assert_int_equal(a.height, 300);
    assert_true(model_extract(NULL, img, len, &b, &e));
    assert_memory_equal(a.embedding, b.embedding, sizeof a.embedding);
    assert_int_equal(metric(m, "hearth_model_service_enabled "), 0);
    /* the type is checked before anything else */
    assert_false(model_extract(m, "GIF89a not supported", 20, &a, &e));
    assert_int_equal(e.code, ERR_UNSUPPORTED_MEDIA);
    err_clear(&e);
    assert_false(model_extract(m, fake_png, sizeof fake_png, &a, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    free(img);
    modelclient_close(m);
}

int main(void)
{
    log_setup(LOG_ERROR, true); /* the client's warnings are expected here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wire_format_round_trips),
        cmocka_unit_test(bad_replies_are_refused),
        cmocka_unit_test(transient_failures_are_retried),
        cmocka_unit_test(a_verdict_is_the_answer),
        cmocka_unit_test(a_404_is_not_retried),
        cmocka_unit_test(a_hung_service_costs_no_more_than_the_deadline),
        cmocka_unit_test(the_breaker_counts_calls_and_recovers),
        cmocka_unit_test(without_a_service_features_are_local),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
