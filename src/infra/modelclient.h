/* modelclient: a photo's features (domain/imageproc.h) for the API and the job runners, from the
 * model service (`hearth model-serve`, at MODEL_SERVICE_URL) when it answers, and computed in this
 * process when it does not, so that callers always get features.
 *
 * One call (model_extract) is one POST {url}/extract-features, retried up to MODEL_RETRIES times
 * with exponential backoff and jitter, every attempt inside one deadline for the whole call
 * (HEARTH_MODEL_TIMEOUT_MS). The reply is checked (the model's name, 256 finite floats of unit
 * norm, a 64-bit hash, sizes within bounds) before it is believed. A circuit breaker
 * (infra/breaker.h) counts calls, not attempts: MODEL_BREAKER_THRESHOLD failed calls in a row
 * open it for HEARTH_MODEL_BREAKER_OPEN_MS, during which calls go straight to the in-process
 * extraction; then one probe call decides. The service's verdict on an image (415: not JPEG, PNG
 * or WebP; 422: does not decode, too many pixels) is the caller's answer, and a success for the
 * breaker: the service is healthy, the image is not.
 *
 * The wire format of the features (model_features_write / model_features_read) lives here too, so
 * that the service that writes it and the client that reads it cannot drift apart. */
#ifndef HEARTH_MODELCLIENT_H
#define HEARTH_MODELCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/buf.h"
#include "../base/config.h"
#include "../base/error.h"
#include "../base/jw.h"
#include "../domain/imageproc.h"

#define MODEL_NAME "hearth-visual-v1"           /* the descriptor imageproc computes */
#define MODEL_MAX_IMAGE (20 * 1024 * 1024)      /* the service takes images up to this size (413 beyond) */
#define MODEL_RETRIES 3                         /* attempts after the first, within the deadline */
#define MODEL_BREAKER_THRESHOLD 5               /* failed calls in a row that open the breaker */
#define MODEL_NORM_TOLERANCE 1e-3               /* |norm - 1| of an embedding the client accepts */

typedef struct modelclient modelclient_t;

typedef enum { MODEL_SOURCE_SERVICE, MODEL_SOURCE_FALLBACK } model_source_t;

/* The process's client: opened by `serve` and `worker` at start-up, before any thread that uses it,
 * and closed after they have stopped (its owner is that command). NULL (or a client without a
 * URL) means in-process extraction only. */
extern modelclient_t *g_model;

/* A client for cfg->model_service_url (NULL: in-process only) with cfg->model_timeout_ms and
 * cfg->model_breaker_open_ms. NULL with `e` set when libcurl cannot be set up. */
modelclient_t *modelclient_open(const config_t *cfg, err_t *e);
void modelclient_close(modelclient_t *m);

/* Features of the image in img[0..len): from the service when there is one, its breaker lets the
 * call through and it answers in time; in-process otherwise (`m` may be NULL). false with `e`
 * set when the image itself is refused: ERR_UNSUPPORTED_MEDIA (not JPEG, PNG or WebP) or
 * ERR_VALIDATION (does not decode, more than IMAGEPROC_MAX_PIXELS). Labels in `out` are static
 * strings. Any thread; blocks for at most the deadline plus the in-process extraction. */
bool model_extract(modelclient_t *m, const void *img, size_t len, image_features_t *out, err_t *e);
/* The same, saying where the features came from. */
bool model_extract_source(modelclient_t *m, const void *img, size_t len, image_features_t *out, model_source_t *src,
                          err_t *e);
/* The in-process extraction alone, with the service's checks: the type sniffed, the pixel count
 * read from the header before anything is decoded. (What the service runs for each image.) */
bool model_extract_local(const void *img, size_t len, image_features_t *out, err_t *e);
const char *model_source_name(model_source_t s); /* "service", "fallback" */

/* "disabled" (no URL), or the breaker's state: "closed", "open", "half_open". */
const char *modelclient_state(modelclient_t *m);
/* Prometheus text: hearth_model_service_enabled, hearth_model_breaker_state (0 closed, 1 open,
 * 2 half-open), hearth_model_calls_total{outcome="ok|failed|fallback"},
 * hearth_model_attempts_total, hearth_model_breaker_opens_total. `m` may be NULL. */
void modelclient_render_metrics(modelclient_t *m, buf_t *out);

/* The wire format. model_features_write writes the members of a features object (the caller opens
 * and closes it, and may add its own members): model, embedding, dimension, phash (16 hex digits),
 * labels, width, height, colors ("#rrggbb"), brightness, sharpness, too_dark, blurry.
 * model_features_read checks and reads such an object; ERR_INTERNAL with the reason when it is not
 * one (wrong model or dimension, a number that is not finite, a norm off by more than
 * MODEL_NORM_TOLERANCE, a field missing or out of range). */
void model_features_write(jw_t *w, const image_features_t *f);
bool model_features_read(const char *json, size_t len, image_features_t *out, err_t *e);

#endif
