/* multipart: multipart/form-data bodies (RFC 7578) already held in memory, split into their parts.
 *
 * Written here because Debian has no small C library for it (libmicrohttpd's post processor is
 * tied to its own server); the body is bounded by HEARTH_MAX_BODY before it gets here, so the
 * parser works on one buffer and never copies part contents: each part points into the body. */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

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
