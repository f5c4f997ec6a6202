/* error: the table from error codes to HTTP statuses and the documented code strings. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int status;
    const char *name;
} table[ERR__COUNT] = {
    [ERR_NONE] = {200, "ok"},
    [ERR_BAD_REQUEST] = {400, "bad_request"},
    [ERR_UNAUTHORIZED] = {401, "unauthorized"},
    [ERR_FORBIDDEN] = {403, "forbidden"},
    [ERR_NOT_FOUND] = {404, "not_found"},
    [ERR_METHOD_NOT_ALLOWED] = {405, "method_not_allowed"},
    [ERR_REQUEST_TIMEOUT] = {408, "request_timeout"},
    [ERR_CONFLICT] = {409, "conflict"},
    [ERR_PRECONDITION] = {412, "precondition_failed"},
    [ERR_PAYLOAD_TOO_LARGE] = {413, "payload_too_large"},
    [ERR_URI_TOO_LONG] = {414, "uri_too_long"},
    [ERR_UNSUPPORTED_MEDIA] = {415, "unsupported_media_type"},
    [ERR_VALIDATION] = {422, "validation_failed"},
    [ERR_RATE_LIMITED] = {429, "rate_limited"},
    [ERR_HEADERS_TOO_LARGE] = {431, "headers_too_large"},
    [ERR_INTERNAL] = {500, "internal"},
    [ERR_UNAVAILABLE] = {503, "unavailable"},
};

void err_clear(err_t *e)
{
    e->code = ERR_NONE;
    e->message[0] = '\0';
    e->ndetails = 0;
}

bool err_set(err_t *e, err_code_t code, const char *fmt, ...)
{
    e->code = code;
    if (code != ERR_VALIDATION)
        e->ndetails = 0; /* field details belong to a 422 only */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

void err_field(err_t *e, const char *field, const char *fmt, ...)
{
    if (e->code == ERR_NONE) {
        e->code = ERR_VALIDATION;
        snprintf(e->message, sizeof e->message, "the request has invalid fields");
    }
    if (e->ndetails >= ERR_MAX_DETAILS)
        return;
    err_detail_t *d = &e->details[e->ndetails++];
    snprintf(d->field, sizeof d->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
}

int err_http_status(err_code_t code) { return code < ERR__COUNT ? table[code].status : 500; }

const char *err_code_name(err_code_t code) { return code < ERR__COUNT ? table[code].name : "internal"; }
