/* fuzz_multipart: the multipart/form-data parser (net/multipart.c) on arbitrary bodies and
 * Content-Type values.
 *
 * The one idea: beyond "no crash", check what the parser promises: every part it returns lies
 * inside the body, parts come in body order without overlapping, each has a name, and a body the
 * fuzzer builds from named parts around a known boundary is parsed back to exactly those parts. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "net/multipart.h"

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
        if (multipart_parse(ct, body, blen, &a, &m, &e))
            check_parts(&m, body, blen);
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
    }
    arena_free(&a);
    return 0;
}
