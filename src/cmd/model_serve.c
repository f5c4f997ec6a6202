/* model_serve: `hearth model-serve [--listen ADDR]`: the model service, which computes a photo's
 * features (domain/imageproc.h) for `serve` and `worker` processes that set MODEL_SERVICE_URL
 * (infra/modelclient.h is their client, and the wire format). It takes what the CLIP service it
 * replaces took: GET /health, POST /extract-features (one multipart `file`) and POST
 * /extract-features-batch (up to MODEL_BATCH_MAX `file` parts, answered in order, a bad image
 * failing only its own item), plus GET /metrics.
 *
 * The one idea: it is hearth's own HTTP server (limits, timeouts, request ids, access log,
 * graceful shutdown) with a route table of its own and nothing else: no store, no tokens, no
 * cache, so it starts in milliseconds and any number of instances can run behind a load balancer.
 * It has no authentication: listen on loopback or a private network only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"
#include "../domain/imageproc.h"
#include "../infra/modelclient.h"
#include "../net/metrics.h"
#include "../net/multipart.h"
#include "../net/router.h"
#include "../net/server.h"
#include "commands.h"

#define MODEL_BATCH_MAX 32
#define MODEL_SERVE_MAX_BODY (64 * 1024 * 1024) /* a batch's whole body, at least */
#define MODEL_SERVE_LISTEN "127.0.0.1:8001"

static _Atomic unsigned long long images_ok, images_refused;

static int usage(void)
{
    fprintf(stderr, "usage: hearth model-serve [--listen HOST:PORT]   (default " MODEL_SERVE_LISTEN ")\n");
    return 2;
}

/* Handlers ----------------------------------------------------------------------------------------*/

static void ms_health(http_request_t *req, http_response_t *res)
{
    (void)req;
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_kstr(&w, "status", "ok");
    jw_kstr(&w, "model", MODEL_NAME);
    jw_kint(&w, "dim", IMAGEPROC_DIM);
    jw_obj_end(&w);
    http_res_header(res, "Cache-Control", "no-store");
}

static void ms_metrics(http_request_t *req, http_response_t *res)
{
    if (!g_config.metrics_public && !req->peer_loopback) {
        http_res_errorf(req, res, ERR_FORBIDDEN, "metrics are served to loopback clients only (HEARTH_METRICS_PUBLIC)");
        return;
    }
    res->status = 200;
    res->content_type = "text/plain; version=0.0.4; charset=utf-8";
    metrics_render(&res->body);
    buf_printf(&res->body,
               "# HELP hearth_model_images_total Images this model service was sent, by outcome: ok (features "
               "computed) or refused (413, 415, 422 or an internal error).\n"
               "# TYPE hearth_model_images_total counter\n"
               "hearth_model_images_total{outcome=\"ok\"} %llu\nhearth_model_images_total{outcome=\"refused\"} %llu\n",
               (unsigned long long)images_ok, (unsigned long long)images_refused);
}

/* The features of one `file` part, with the service's limits. */
static bool extract_part(const http_request_t *req, const multipart_part_t *p, image_features_t *f, err_t *e)
{
    bool ok;
    if (p->len == 0) {
        ok = err_set(e, ERR_VALIDATION, "the file is empty");
    } else if (p->len > MODEL_MAX_IMAGE) {
        ok = err_set(e, ERR_PAYLOAD_TOO_LARGE, "the image is %zu bytes, more than %d MiB", p->len,
                     MODEL_MAX_IMAGE / (1024 * 1024));
    } else {
        ok = model_extract_local(p->data, p->len, f, e);
        bool finite = !ok || (isfinite(f->brightness) && isfinite(f->sharpness));
        for (int i = 0; ok && i < IMAGEPROC_DIM; i++)
            finite = finite && isfinite(f->embedding[i]);
        if (!finite) /* the wire format has no way to say it, and clients would refuse it */
            ok = err_set(e, ERR_INTERNAL, "imageproc gave a feature that is not a finite number");
    }
    if (!ok && e->code == ERR_INTERNAL) { /* the client is told "internal error"; the log says what */
        buf_t fields;
        buf_init(&fields);
        buf_puts(&fields, "\"error\":");
        json_escape(&fields, e->message, strlen(e->message));
        log_line(LOG_ERROR, req->request_id, "model-serve: extraction failed", buf_cstr(&fields));
        buf_free(&fields);
    }
    if (ok)
        images_ok++;
    else
        images_refused++;
    return ok;
}

/* The request's `file` parts, at most `max`; false with a 4xx in `e`. */
static bool read_files(http_request_t *req, multipart_t *m, const multipart_part_t **files, int max, int *n, err_t *e)
{
    *n = 0;
    if (!multipart_parse(http_header(req, "Content-Type"), req->body, req->body_len, req->arena, m, e))
        return false;
    for (int i = 0; i < m->n; i++) {
        if (strcmp(m->parts[i].name, "file") != 0)
            continue; /* other fields are ignored */
        if (*n == max) {
            if (max == 1)
                err_field(e, "file", "one image a request; POST /extract-features-batch takes up to %d",
                          MODEL_BATCH_MAX);
            else
                err_field(e, "file", "at most %d images a batch", max);
            return false;
        }
        files[(*n)++] = &m->parts[i];
    }
    if (*n == 0) {
        err_field(e, "file", "is required (a multipart part named file, with a JPEG, PNG or WebP image)");
        return false;
    }
    return true;
}

static void ms_extract(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    multipart_t m;
    const multipart_part_t *file = NULL;
    int n;
    image_features_t f;
    if (!read_files(req, &m, &file, 1, &n, &e) || !extract_part(req, file, &f, &e)) {
        if (e.code == ERR_VALIDATION && e.ndetails == 0)
            err_field(&e, "file", "%s", e.message);
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    model_features_write(&w, &f);
    jw_obj_end(&w);
}

/* An item's error, as http_res_error writes a whole response's. */
static void write_item_error(jw_t *w, const http_request_t *req, const err_t *e)
{
    jw_obj_begin(w);
    jw_key(w, "error");
    jw_obj_begin(w);
    jw_kstr(w, "code", err_code_name(e->code));
    jw_kstr(w, "message", e->code == ERR_INTERNAL ? "internal error" : e->message);
    if (e->ndetails) {
        jw_key(w, "details");
        jw_arr_begin(w);
        for (int i = 0; i < e->ndetails; i++) {
            jw_obj_begin(w);
            jw_kstr(w, "field", e->details[i].field);
            jw_kstr(w, "message", e->details[i].message);
            jw_obj_end(w);
        }
        jw_arr_end(w);
    }
    jw_kstr(w, "request_id", req->request_id);
    jw_obj_end(w);
    jw_obj_end(w);
}

static void ms_extract_batch(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    multipart_t m;
    const multipart_part_t *files[MODEL_BATCH_MAX];
    int n;
    if (!read_files(req, &m, files, MODEL_BATCH_MAX, &n, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0; i < n; i++) {
        image_features_t f;
        err_t ie;
        err_clear(&ie);
        if (extract_part(req, files[i], &f, &ie)) {
            jw_obj_begin(&w);
            model_features_write(&w, &f);
            jw_obj_end(&w);
        } else {
            write_item_error(&w, req, &ie);
        }
    }
    jw_arr_end(&w);
    jw_obj_end(&w);
}

static route_t model_routes[] = {
    {METHOD_GET, "/health", ms_health, ROUTE_ON_LOOP | ROUTE_NO_RATELIMIT, 0, NULL},
    {METHOD_GET, "/metrics", ms_metrics, ROUTE_ON_LOOP | ROUTE_NO_RATELIMIT, 1, NULL},
    {METHOD_POST, "/extract-features", ms_extract, 0, 2, NULL},
    {METHOD_POST, "/extract-features-batch", ms_extract_batch, 0, 3, NULL},
    {0, NULL, NULL, 0, 0, NULL},
};

int cmd_model_serve(int argc, char **argv)
{
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg))
        return 2;
    char why[512];
    const char *listen = MODEL_SERVE_LISTEN; /* not HEARTH_LISTEN: that is the API's address */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen = argv[++i];
        else
            return usage();
    }
    if (!config_set_listen(cfg, listen, why, sizeof why)) {
        fprintf(stderr, "hearth: --listen: %s\n", why);
        return 2;
    }
    if (cfg->max_body < MODEL_SERVE_MAX_BODY)
        cfg->max_body = MODEL_SERVE_MAX_BODY;
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%d", cfg->workers);
    setenv("UV_THREADPOOL_SIZE", nthreads, 1); /* read once, at the pool's first use */
    err_t e;
    err_clear(&e);
    if (!imageproc_init(&e)) {
        fprintf(stderr, "hearth: %s\n", e.message);
        return 1;
    }
    /* hearth's server, with this table and none of the API's request steps */
    router_use(model_routes);
    app_precheck = NULL;
    app_worker_check = NULL;
    log_info("model-serve: %s (%d dimensions) on %s:%d", MODEL_NAME, IMAGEPROC_DIM, cfg->listen_host, cfg->listen_port);
    bool ok = server_run(cfg, &e);
    if (!ok)
        fprintf(stderr, "hearth: %s\n", e.message);
    return ok ? 0 : 1;
}
