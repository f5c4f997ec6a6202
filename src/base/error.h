/* error: errors are values. A function that can fail takes an err_t* and returns false (or a
 * negative status); the API layer turns the err_t into the documented JSON error body. */
#ifndef HEARTH_ERROR_H
#define HEARTH_ERROR_H

#include <stdbool.h>

typedef enum err_code {
    ERR_NONE = 0,
    ERR_BAD_REQUEST,        /* 400 */
    ERR_UNAUTHORIZED,       /* 401 */
    ERR_FORBIDDEN,          /* 403 */
    ERR_NOT_FOUND,          /* 404 */
    ERR_METHOD_NOT_ALLOWED, /* 405 */
    ERR_REQUEST_TIMEOUT,    /* 408 */
    ERR_CONFLICT,           /* 409 */
    ERR_PRECONDITION,       /* 412 */
    ERR_PAYLOAD_TOO_LARGE,  /* 413 */
    ERR_URI_TOO_LONG,       /* 414 */
    ERR_UNSUPPORTED_MEDIA,  /* 415 */
    ERR_VALIDATION,         /* 422 */
    ERR_RATE_LIMITED,       /* 429 */
    ERR_HEADERS_TOO_LARGE,  /* 431 */
    ERR_INTERNAL,           /* 500 */
    ERR_UNAVAILABLE,        /* 503 */
    ERR__COUNT
} err_code_t;

#define ERR_MAX_DETAILS 32

typedef struct err_detail {
    char field[64];
    char message[160];
} err_detail_t;

typedef struct err {
    err_code_t code;
    char message[256];
    int ndetails;
    err_detail_t details[ERR_MAX_DETAILS];
} err_t;

void err_clear(err_t *e);
/* Set code and message; returns false so callers can `return err_set(...)`. */
bool err_set(err_t *e, err_code_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Add a per-field detail (422 validation); sets the code to ERR_VALIDATION if none is set. */
void err_field(err_t *e, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_http_status(err_code_t code);
const char *err_code_name(err_code_t code);

#endif
