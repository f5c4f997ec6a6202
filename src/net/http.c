/* http: request readers and response writers shared by every handler; see http.h. */
#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../base/util.h"
#include "router.h"

const char *const http_method_names[METHOD__COUNT] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"};

http_method_t http_method_from(const char *name, size_t len)
{
    for (int m = 0; m < METHOD_OTHER; m++)
        if (strlen(http_method_names[m]) == len && memcmp(http_method_names[m], name, len) == 0)
            return (http_method_t)m;
    return METHOD_OTHER;
}

const char *http_header(const http_request_t *req, const char *name)
{
    for (int i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

const char *http_param(const http_request_t *req, const char *name)
{
    for (int i = 0; i < req->nparams; i++)
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    return NULL;
}

bool http_param_id(const http_request_t *req, const char *name, int64_t *out, err_t *e)
{
    const char *v = http_param(req, name);
    int64_t id;
    if (!v || !parse_i64(v, &id) || id <= 0 || v[0] == '+' || (v[0] == '0'))
        return err_set(e, ERR_NOT_FOUND, "no such resource: %s", req->path);
    *out = id;
    return true;
}

static const char *json_problem(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_premature_end_of_input:
        return "the body ends before the JSON value does";
    case json_error_end_of_input_expected:
        return "text after the JSON value";
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return "a NUL character (\\u0000) is not allowed";
    case json_error_duplicate_key:
        return "a key appears twice in one object";
    case json_error_numeric_overflow:
        return "a number is out of range";
    case json_error_stack_overflow:
        return "nested too deeply";
    case json_error_out_of_memory:
        return "too large";
    default:
        return "invalid syntax";
    }
}

json_t *http_json_body(const http_request_t *req, err_t *e)
{
    const char *ct = http_header(req, "Content-Type");
    size_t n = ct ? strcspn(ct, ";") : 0;
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (!ct || !str_nieq(ct, n, "application/json")) {
        err_set(e, ERR_UNSUPPORTED_MEDIA, "the body must be JSON (Content-Type: application/json)");
        return NULL;
    }
    if (req->body_len == 0) {
        err_set(e, ERR_BAD_REQUEST, "the body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
        /* in words of our own: jansson's text quotes the body ("near '...'"), which may hold a password */
        err_set(e, ERR_BAD_REQUEST, "malformed JSON at line %d, column %d: %s", je.line, je.column, json_problem(&je));
        return NULL;
    }
    return v;
}

bool http_query_parse(const http_request_t *req, http_query_t *q, err_t *e)
{
    q->n = 0;
    const char *s = req->query;
    while (s && *s) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        if (len) {
            const char *eq = memchr(s, '=', len);
            size_t nlen = eq ? (size_t)(eq - s) : len;
            char *name, *value;
            if (!url_decode(req->arena, s, nlen, true, &name, NULL) ||
                !url_decode(req->arena, eq ? eq + 1 : "", eq ? len - nlen - 1 : 0, true, &value, NULL))
                return err_set(e, ERR_BAD_REQUEST, "the query string has bad percent-encoding or invalid UTF-8");
            if (q->n == 64)
                return err_set(e, ERR_BAD_REQUEST, "the query string has more than 64 parameters");
            q->names[q->n] = name;
            q->values[q->n++] = value;
        }
        s = amp ? amp + 1 : NULL;
    }
    return true;
}

const char *http_query_get(const http_query_t *q, const char *name)
{
    for (int i = q->n - 1; i >= 0; i--)
        if (strcmp(q->names[i], name) == 0)
            return q->values[i];
    return NULL;
}

void http_res_header(http_response_t *res, const char *name, const char *fmt, ...)
{
    buf_puts(&res->headers, name);
    buf_puts(&res->headers, ": ");
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&res->headers, fmt, ap);
    va_end(ap);
    buf_puts(&res->headers, "\r\n");
}

void http_res_json(http_response_t *res, int status, jw_t *w)
{
    res->status = status;
    res->content_type = "application/json";
    buf_reset(&res->body);
    jw_init(w, &res->body);
}

void http_res_text(http_response_t *res, int status, const char *content_type, const char *body, size_t len)
{
    res->status = status;
    res->content_type = content_type;
    buf_reset(&res->body);
    buf_append(&res->body, body, len);
}

void http_res_file(http_response_t *res, int status, const char *content_type, int fd, int64_t size)
{
    res->status = status;
    res->content_type = content_type;
    buf_reset(&res->body);
    res->has_file = true;
    res->file_fd = fd;
    res->file_size = size;
}

void http_res_error(const http_request_t *req, http_response_t *res, const err_t *e)
{
    jw_t w;
    int status = err_http_status(e->code);
    http_res_json(res, status, &w);
    jw_obj_begin(&w);
    jw_key(&w, "error");
    jw_obj_begin(&w);
    jw_kstr(&w, "code", err_code_name(e->code));
    const char *msg = e->message[0] ? e->message : http_status_reason(status);
    if (e->code == ERR_INTERNAL)
        msg = "internal error"; /* never leak internals */
    jw_kstr(&w, "message", msg);
    if (e->ndetails) {
        jw_key(&w, "details");
        jw_arr_begin(&w);
        for (int i = 0; i < e->ndetails; i++) {
            jw_obj_begin(&w);
            jw_kstr(&w, "field", e->details[i].field);
            jw_kstr(&w, "message", e->details[i].message);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
    }
    jw_kstr(&w, "request_id", req->request_id);
    jw_obj_end(&w);
    jw_obj_end(&w);
    if (status == 503 || status == 429)
        http_res_header(res, "Retry-After", "1");
}

void http_res_errorf(const http_request_t *req, http_response_t *res, err_code_t code, const char *fmt, ...)
{
    err_t e;
    err_clear(&e);
    e.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    http_res_error(req, res, &e);
}

const char *http_status_reason(int s)
{
    switch (s) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}
