/* multipart: multipart/form-data bodies (RFC 7578), held in memory or arriving in pieces.
 *
 * Written here because Debian has no small C library for it (libmicrohttpd's post processor is
 * tied to its own server). multipart_parse works on one buffer (bounded by HEARTH_MAX_BODY) and
 * never copies part contents: each part points into the body. The stream parser follows the same
 * grammar over pieces of any size, keeping only what may still be the start of a delimiter (or a
 * part's header block) between calls. */
#include "multipart.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../base/buf.h"
#include "../base/util.h"

/* The boundary parameter of a Content-Type value, into `out` (at most 70 characters, RFC 2046). */
static bool boundary_of(const char *ct, char *out, size_t size)
{
    const char *p = ct;
    while ((p = strchr(p, ';'))) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) != 0)
            continue;
        p += 9;
        size_t n;
        if (*p == '"') {
            p++;
            const char *q = strchr(p, '"');
            if (!q)
                return false;
            n = (size_t)(q - p);
        } else {
            n = strcspn(p, "; \t");
        }
        if (n == 0 || n > 70 || n + 1 > size)
            return false;
        memcpy(out, p, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

static const char *find(const char *hay, size_t hn, const char *needle, size_t nn)
{
    if (nn == 0 || hn < nn)
        return NULL;
    const char *end = hay + hn - nn;
    for (const char *p = hay; p <= end; p++) {
        p = memchr(p, needle[0], (size_t)(end - p) + 1);
        if (!p)
            return NULL;
        if (memcmp(p, needle, nn) == 0)
            return p;
    }
    return NULL;
}

/* A parameter (name="value") of a Content-Disposition value, into the arena; NULL when absent. */
static const char *disposition_param(const char *v, size_t n, const char *name, arena_t *a)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 1 < n; i++) {
        bool at_start = i == 0 || v[i - 1] == ';' || v[i - 1] == ' ' || v[i - 1] == '\t';
        if (!at_start || strncasecmp(v + i, name, nl) != 0 || v[i + nl] != '=')
            continue;
        const char *p = v + i + nl + 1, *end = v + n;
        if (p < end && *p == '"') {
            const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
            if (!q)
                return NULL;
            return arena_strndup(a, p + 1, (size_t)(q - p - 1));
        }
        const char *q = p;
        while (q < end && *q != ';' && *q != ' ' && *q != '\t')
            q++;
        return arena_strndup(a, p, (size_t)(q - p));
    }
    return NULL;
}

bool multipart_parse(const char *content_type, const char *body, size_t len, arena_t *a, multipart_t *out, err_t *e)
{
    memset(out, 0, sizeof *out);
    char boundary[80], delim[90];
    if (!content_type || strncasecmp(content_type, "multipart/form-data", 19) != 0)
        return err_set(e, ERR_UNSUPPORTED_MEDIA, "the body must be multipart/form-data");
    if (!boundary_of(content_type, boundary, sizeof boundary))
        return err_set(e, ERR_BAD_REQUEST, "multipart/form-data needs a boundary parameter (1 to 70 characters)");
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    /* the first delimiter: at the start, or after a preamble ending in CRLF */
    const char *p = len >= (size_t)dl && memcmp(body, delim, (size_t)dl) == 0 ? body : NULL;
    if (!p) {
        char crlf_delim[96];
        int cl = snprintf(crlf_delim, sizeof crlf_delim, "\r\n%s", delim);
        p = find(body, len, crlf_delim, (size_t)cl);
        if (!p)
            return err_set(e, ERR_BAD_REQUEST, "multipart body without its boundary");
        p += 2;
    }
    const char *end = body + len;
    char next[96];
    int nl = snprintf(next, sizeof next, "\r\n%s", delim);
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return true; /* the closing delimiter; an epilogue after it is ignored */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++; /* transport padding */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return err_set(e, ERR_BAD_REQUEST, "malformed multipart delimiter line");
        p += 2;
        /* headers end at a blank line; a part without header lines starts with it */
        const char *hend = end - p >= 2 && p[0] == '\r' && p[1] == '\n' ? p - 2 : find(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!hend)
            return err_set(e, ERR_BAD_REQUEST, "a multipart part without the end of its headers");
        const char *content = hend + 4;
        const char *cend = find(content, (size_t)(end - content), next, (size_t)nl);
        if (!cend)
            return err_set(e, ERR_BAD_REQUEST, "a multipart part without a closing boundary");
        if (out->n == MULTIPART_MAX_PARTS)
            return err_set(e, ERR_BAD_REQUEST, "more than %d multipart parts", MULTIPART_MAX_PARTS);
        multipart_part_t *part = &out->parts[out->n];
        memset(part, 0, sizeof *part);
        /* header lines between p and hend */
        for (const char *h = p; h < hend;) {
            const char *eol = find(h, (size_t)(hend - h), "\r\n", 2);
            const char *lend = eol ? eol : hend;
            const char *colon = memchr(h, ':', (size_t)(lend - h));
            if (colon && (size_t)(colon - h) == 19 && strncasecmp(h, "Content-Disposition", 19) == 0) {
                const char *v = colon + 1;
                size_t vn = (size_t)(lend - v);
                part->name = disposition_param(v, vn, "name", a);
                part->filename = disposition_param(v, vn, "filename", a);
            } else if (colon && (size_t)(colon - h) == 12 && strncasecmp(h, "Content-Type", 12) == 0) {
                const char *v = colon + 1;
                while (v < lend && (*v == ' ' || *v == '\t'))
                    v++;
                part->content_type = arena_strndup(a, v, (size_t)(lend - v));
            }
            h = eol ? eol + 2 : hend;
        }
        if (!part->name)
            return err_set(e, ERR_BAD_REQUEST, "a multipart part without Content-Disposition: form-data; name=...");
        part->data = content;
        part->len = (size_t)(cend - content);
        out->n++;
        p = cend + 2;
    }
}

const multipart_part_t *multipart_get(const multipart_t *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->parts[i].name, name) == 0)
            return &m->parts[i];
    return NULL;
}

/* The stream parser --------------------------------------------------------------------------
 * The body is read as if it began with CRLF, so that every delimiter, the first included, is
 * CRLF "--" boundary: the first is then at the start of the body or after a preamble ending in
 * CRLF, as multipart_parse has it. */

typedef enum { MS_PREAMBLE, MS_AFTER_DELIM, MS_PADDING, MS_HEADERS, MS_BODY, MS_DONE } ms_state_t;

struct multipart_stream {
    ms_state_t state;
    char delim[96]; /* CRLF "--" boundary */
    size_t dl;
    buf_t in;   /* what is not yet consumed; in.data[pos..len) */
    size_t pos;
    int parts;
    const multipart_sink_t *sink;
    void *arg;
    arena_t scratch; /* a part's header values, during its `part` call */
};

multipart_stream_t *multipart_stream_new(const char *content_type, const multipart_sink_t *sink, void *arg, err_t *e)
{
    char boundary[80];
    if (!content_type || strncasecmp(content_type, "multipart/form-data", 19) != 0) {
        err_set(e, ERR_UNSUPPORTED_MEDIA, "the body must be multipart/form-data");
        return NULL;
    }
    if (!boundary_of(content_type, boundary, sizeof boundary)) {
        err_set(e, ERR_BAD_REQUEST, "multipart/form-data needs a boundary parameter (1 to 70 characters)");
        return NULL;
    }
    multipart_stream_t *s = calloc(1, sizeof *s);
    s->dl = (size_t)snprintf(s->delim, sizeof s->delim, "\r\n--%s", boundary);
    s->sink = sink;
    s->arg = arg;
    buf_init(&s->in);
    buf_append(&s->in, "\r\n", 2);
    arena_init(&s->scratch);
    return s;
}

void multipart_stream_free(multipart_stream_t *s)
{
    if (!s)
        return;
    buf_free(&s->in);
    arena_free(&s->scratch);
    free(s);
}

/* The header block [h, hend) of a part: its name, filename and type to the sink. */
static bool stream_part(multipart_stream_t *s, const char *h, const char *hend, err_t *e)
{
    if (s->parts == MULTIPART_MAX_PARTS)
        return err_set(e, ERR_BAD_REQUEST, "more than %d multipart parts", MULTIPART_MAX_PARTS);
    s->parts++;
    arena_reset(&s->scratch);
    const char *name = NULL, *filename = NULL, *type = NULL;
    while (h < hend) {
        const char *eol = find(h, (size_t)(hend - h), "\r\n", 2);
        const char *lend = eol ? eol : hend;
        const char *colon = memchr(h, ':', (size_t)(lend - h));
        if (colon && (size_t)(colon - h) == 19 && strncasecmp(h, "Content-Disposition", 19) == 0) {
            name = disposition_param(colon + 1, (size_t)(lend - colon - 1), "name", &s->scratch);
            filename = disposition_param(colon + 1, (size_t)(lend - colon - 1), "filename", &s->scratch);
        } else if (colon && (size_t)(colon - h) == 12 && strncasecmp(h, "Content-Type", 12) == 0) {
            const char *v = colon + 1;
            while (v < lend && (*v == ' ' || *v == '\t'))
                v++;
            type = arena_strndup(&s->scratch, v, (size_t)(lend - v));
        }
        h = eol ? eol + 2 : hend;
    }
    if (!name)
        return err_set(e, ERR_BAD_REQUEST, "a multipart part without Content-Disposition: form-data; name=...");
    return s->sink->part(s->arg, name, filename, type, e);
}

/* Consumes what it can of in[pos..len); false on an error. */
static bool stream_run(multipart_stream_t *s, err_t *e)
{
    for (;;) {
        const char *p = s->in.data + s->pos;
        size_t n = s->in.len - s->pos;
        switch (s->state) {
        case MS_PREAMBLE: {
            const char *d = find(p, n, s->delim, s->dl);
            if (!d) { /* keep what may be the start of the delimiter */
                if (n >= s->dl)
                    s->pos += n - (s->dl - 1);
                return true;
            }
            s->pos += (size_t)(d - p) + s->dl;
            s->state = MS_AFTER_DELIM;
            break;
        }
        case MS_AFTER_DELIM:
            if (n < 2)
                return true;
            if (p[0] == '-' && p[1] == '-') {
                s->state = MS_DONE; /* the closing delimiter; an epilogue after it is ignored */
                break;
            }
            s->state = MS_PADDING;
            break;
        case MS_PADDING: { /* transport padding, consumed as it comes (it is not bounded), then CRLF */
            size_t i = 0;
            while (i < n && (p[i] == ' ' || p[i] == '\t'))
                i++;
            s->pos += i;
            if (n - i < 2)
                return true;
            if (p[i] != '\r' || p[i + 1] != '\n')
                return err_set(e, ERR_BAD_REQUEST, "malformed multipart delimiter line");
            s->pos += 2;
            s->state = MS_HEADERS;
            break;
        }
        case MS_HEADERS: {
            if (n < 2)
                return true;
            /* a part without header lines starts with the blank line: it has no name */
            const char *hend = p[0] == '\r' && p[1] == '\n' ? p - 2 : find(p, n, "\r\n\r\n", 4);
            if (!hend) {
                if (n > MULTIPART_HEADERS_MAX)
                    return err_set(e, ERR_BAD_REQUEST, "a multipart part's headers are larger than %d bytes",
                                   MULTIPART_HEADERS_MAX);
                return true;
            }
            if (!stream_part(s, p, hend, e))
                return false;
            s->pos += (size_t)(hend + 4 - p);
            s->state = MS_BODY;
            break;
        }
        case MS_BODY: {
            const char *d = find(p, n, s->delim, s->dl);
            size_t take = d ? (size_t)(d - p) : n >= s->dl ? n - (s->dl - 1) : 0;
            if (take > 0 && !s->sink->data(s->arg, p, take, e))
                return false;
            s->pos += take;
            if (!d)
                return true;
            if (!s->sink->end(s->arg, e))
                return false;
            s->pos += s->dl;
            s->state = MS_AFTER_DELIM;
            break;
        }
        case MS_DONE:
            s->pos = s->in.len;
            return true;
        }
    }
}

bool multipart_stream_feed(multipart_stream_t *s, const char *p, size_t n, err_t *e)
{
    if (s->state == MS_DONE)
        return true;
    /* drop what was consumed, then append: what is kept is at most a header block or a partial
     * delimiter, so the move is short */
    if (s->pos > 0) {
        memmove(s->in.data, s->in.data + s->pos, s->in.len - s->pos);
        s->in.len -= s->pos;
        s->pos = 0;
    }
    buf_append(&s->in, p, n);
    return stream_run(s, e);
}

bool multipart_stream_finish(multipart_stream_t *s, err_t *e)
{
    if (s->state == MS_DONE)
        return true;
    switch (s->state) {
    case MS_PREAMBLE:
        return err_set(e, ERR_BAD_REQUEST, "multipart body without its boundary");
    case MS_HEADERS:
        return err_set(e, ERR_BAD_REQUEST, "a multipart part without the end of its headers");
    case MS_BODY:
        return err_set(e, ERR_BAD_REQUEST, "a multipart part without a closing boundary");
    default:
        return err_set(e, ERR_BAD_REQUEST, "malformed multipart delimiter line");
    }
}
