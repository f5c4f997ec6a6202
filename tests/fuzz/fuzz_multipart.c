/* fuzz_multipart: the multipart/form-data parser (net/multipart.c) on arbitrary bodies and
 * Content-Type values.
 *
 * The one idea: beyond "no crash", check what the parser promises: every part it returns lies
 * inside the body, parts come in body order without overlapping, each has a name, and a body the
 * fuzzer builds from named parts around a known boundary is parsed back to exactly those parts.
 * And the stream parser, fed the same body in pieces of sizes drawn from the input, accepts
 * exactly what multipart_parse accepts and hands on the same parts. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "net/multipart.h"

/* What the stream handed on, to compare with multipart_parse's parts. */
typedef struct seen {
    int n;
    char names[MULTIPART_MAX_PARTS][64];
    bool has_filename[MULTIPART_MAX_PARTS];
    buf_t data[MULTIPART_MAX_PARTS];
    bool open;
} seen_t;

static bool on_part(void *arg, const char *name, const char *filename, const char *type, err_t *e)
{
    (void)type, (void)e;
    seen_t *s = arg;
    if (s->open || s->n == MULTIPART_MAX_PARTS)
        __builtin_trap(); /* a part begins only after the last one ended; never more than the limit */
    snprintf(s->names[s->n], sizeof s->names[0], "%s", name);
    s->has_filename[s->n] = filename != NULL;
    buf_init(&s->data[s->n]);
    s->n++;
    s->open = true;
    return true;
}

static bool on_data(void *arg, const char *p, size_t n, err_t *e)
{
    (void)e;
    seen_t *s = arg;
    if (!s->open || n == 0)
        __builtin_trap();
    buf_append(&s->data[s->n - 1], p, n);
    return true;
}

static bool on_end(void *arg, err_t *e)
{
    (void)e;
    seen_t *s = arg;
    if (!s->open)
        __builtin_trap();
    s->open = false;
    return true;
}

/* Streams body in pieces whose sizes come from `seed`, and checks the outcome against the
 * in-memory parse (ok, m). */
static void stream_same(const char *ct, const char *body, size_t len, uint32_t seed, bool ok, const multipart_t *m)
{
    static const multipart_sink_t sink = {on_part, on_data, on_end};
    seen_t s = {0};
    err_t e;
    err_clear(&e);
    multipart_stream_t *st = multipart_stream_new(ct, &sink, &s, &e);
    bool sok = st != NULL;
    for (size_t at = 0; sok && at < len;) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = 1 + (seed >> 16) % 97;
        if (piece > len - at)
            piece = len - at;
        sok = multipart_stream_feed(st, body + at, piece, &e);
        at += piece;
    }
    sok = sok && multipart_stream_finish(st, &e);
    multipart_stream_free(st);
    if (sok != ok)
        __builtin_trap();
    if (ok) {
        if (s.n != m->n)
            __builtin_trap();
        for (int i = 0; i < s.n; i++)
            if (strncmp(s.names[i], m->parts[i].name, sizeof s.names[0] - 1) != 0 ||
                s.has_filename[i] != (m->parts[i].filename != NULL) || s.data[i].len != m->parts[i].len ||
                (s.data[i].len && memcmp(s.data[i].data, m->parts[i].data, s.data[i].len) != 0))
                __builtin_trap();
    }
    for (int i = 0; i < s.n; i++)
        buf_free(&s.data[i]);
}

static void check_parts(const multipart_t *m, const char *body, size_t len)
{
    const char *prev_end = body;
    for (int i = 0; i < m->n; i++) {
        const multipart_part_t *p = &m->parts[i];
        if (!p->name || p->data < prev_end || p->data + p->len > body + len)
            __builtin_trap();
        prev_end = p->data + p->len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    arena_t a;
    arena_init(&a);
    err_t e;
    multipart_t m;
    if (data[0] & 1) {
        /* free form: the first line is the Content-Type, the rest the body */
        const uint8_t *nl = memchr(data + 1, '\n', size - 1);
        size_t ctlen = nl ? (size_t)(nl - data - 1) : size - 1;
        char *ct = arena_strndup(&a, (const char *)data + 1, ctlen);
        const char *body = nl ? (const char *)nl + 1 : "";
        size_t blen = nl ? size - (size_t)(nl + 1 - data) : 0;
        err_clear(&e);
        bool ok = multipart_parse(ct, body, blen, &a, &m, &e);
        if (ok)
            check_parts(&m, body, blen);
        if (blen < MULTIPART_HEADERS_MAX) /* a stream refuses longer header blocks */
            stream_same(ct, body, blen, (uint32_t)size * 2654435761u, ok, &m);
    } else {
        /* built: up to 4 parts whose contents come from the input, none containing the boundary */
        static const char boundary[] = "fuzzBOUNDARY0123456789";
        char body[8192];
        size_t used = 0, pos = 1;
        const char *names[] = {"file", "format", "source", "x"};
        size_t lens[4];
        const uint8_t *contents[4];
        int n = (int)(data[0] >> 1) % 5;
        for (int i = 0; i < n; i++) {
            size_t l = pos < size ? data[pos] % 64 : 0;
            pos++;
            if (pos + l > size)
                l = size > pos ? size - pos : 0;
            contents[i] = data + pos;
            lens[i] = l;
            pos += l;
            used += (size_t)snprintf(body + used, sizeof body - used,
                                     "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n", boundary, names[i]);
            memcpy(body + used, contents[i], l);
            used += l;
            memcpy(body + used, "\r\n", 2);
            used += 2;
        }
        used += (size_t)snprintf(body + used, sizeof body - used, "--%s--\r\n", boundary);
        err_clear(&e);
        bool contains = false; /* a content holding "\r\n--boundary" would end its part early */
        for (int i = 0; i < n; i++)
            contains |= memmem(contents[i], lens[i], "--fuzzBOUNDARY", 14) != NULL;
        bool ok = multipart_parse("multipart/form-data; boundary=fuzzBOUNDARY0123456789", body, used, &a, &m, &e);
        if (!contains) {
            if (!ok || m.n != n)
                __builtin_trap();
            for (int i = 0; i < n; i++)
                if (strcmp(m.parts[i].name, names[i]) != 0 || m.parts[i].len != lens[i] ||
                    memcmp(m.parts[i].data, contents[i], lens[i]) != 0)
                    __builtin_trap();
        }
        if (ok)
            check_parts(&m, body, used);
        stream_same("multipart/form-data; boundary=fuzzBOUNDARY0123456789", body, used, data[0], ok, &m);
    }
    arena_free(&a);
    return 0;
}
