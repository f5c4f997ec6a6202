/* upload: see upload.h. A part with a filename (or named "file") is a file; anything else a text
 * field of at most UPLOAD_FIELD_MAX bytes. */
#include "upload.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/buf.h"
#include "multipart.h"

typedef struct part {
    upload_file_t f;
    bool is_file;
    int fd;
    EVP_MD_CTX *md;
    buf_t text; /* a field's value */
} part_t;

struct upload {
    multipart_stream_t *ms;
    char *dir;
    int64_t max_file;
    int max_files, files;
    part_t parts[MULTIPART_MAX_PARTS];
    int n;
    bool failed;
};

static bool on_part(void *arg, const char *name, const char *filename, const char *type, err_t *e)
{
    upload_t *u = arg;
    part_t *p = &u->parts[u->n++]; /* multipart_stream allows no more than MULTIPART_MAX_PARTS */
    memset(p, 0, sizeof *p);
    p->fd = -1;
    p->f.name = strdup(name);
    p->f.filename = filename ? strdup(filename) : NULL;
    p->f.content_type = type ? strdup(type) : NULL;
    p->is_file = filename != NULL || strcmp(name, "file") == 0;
    buf_init(&p->text);
    if (!p->is_file)
        return true;
    if (++u->files > u->max_files)
        return err_set(e, ERR_BAD_REQUEST, "at most %d file part(s) in this request", u->max_files);
    p->md = EVP_MD_CTX_new();
    if (!p->md || EVP_DigestInit_ex(p->md, EVP_sha256(), NULL) != 1)
        return err_set(e, ERR_INTERNAL, "out of memory hashing an upload");
    if (!u->dir)
        return true;
    char *path = malloc(strlen(u->dir) + 32);
    sprintf(path, "%s/upload-XXXXXX", u->dir);
    p->fd = mkstemp(path);
    if (p->fd < 0) {
        free(path);
        return err_set(e, ERR_INTERNAL, "cannot store an upload in %s: %s", u->dir, strerror(errno));
    }
    p->f.path = path;
    return true;
}

static bool on_data(void *arg, const char *d, size_t n, err_t *e)
{
    upload_t *u = arg;
    part_t *p = &u->parts[u->n - 1];
    if (!p->is_file) {
        if (p->text.len + n > UPLOAD_FIELD_MAX)
            return err_set(e, ERR_BAD_REQUEST, "the multipart field \"%s\" is larger than %d bytes", p->f.name,
                           UPLOAD_FIELD_MAX);
        buf_append(&p->text, d, n);
        return true;
    }
    if (p->f.size + (int64_t)n > u->max_file)
        return err_set(e, ERR_PAYLOAD_TOO_LARGE, "the file is larger than %lld bytes", (long long)u->max_file);
    if (p->f.head_len < UPLOAD_HEAD) {
        size_t k = UPLOAD_HEAD - p->f.head_len < n ? UPLOAD_HEAD - p->f.head_len : n;
        memcpy(p->f.head + p->f.head_len, d, k);
        p->f.head_len += k;
    }
    p->f.size += (int64_t)n;
    EVP_DigestUpdate(p->md, d, n);
    for (size_t done = 0; p->fd >= 0 && done < n;) {
        ssize_t w = write(p->fd, d + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return err_set(e, ERR_UNAVAILABLE, "cannot store an upload: %s", w < 0 ? strerror(errno) : "disk full");
        done += (size_t)w;
    }
    return true;
}

static bool on_end(void *arg, err_t *e)
{
    upload_t *u = arg;
    part_t *p = &u->parts[u->n - 1];
    (void)e;
    if (p->is_file) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(p->md, md, &len);
        for (unsigned int i = 0; i < len && i < 32; i++)
            sprintf(p->f.sha256 + 2 * i, "%02x", md[i]);
        if (p->fd >= 0) /* complete: read back by path */
            close(p->fd);
        p->fd = -1;
    }
    return true;
}

static const multipart_sink_t sink = {on_part, on_data, on_end};

upload_t *upload_new(const char *dir, const char *content_type, int64_t max_file, int max_files, err_t *e)
{
    upload_t *u = calloc(1, sizeof *u);
    u->dir = dir ? strdup(dir) : NULL;
    u->max_file = max_file;
    u->max_files = max_files;
    if (!(u->ms = multipart_stream_new(content_type, &sink, u, e))) {
        upload_free(u);
        return NULL;
    }
    return u;
}

bool upload_feed(upload_t *u, const char *p, size_t n, err_t *e)
{
    if (u->failed)
        return false;
    u->failed = !multipart_stream_feed(u->ms, p, n, e);
    return !u->failed;
}

bool upload_finish(upload_t *u, err_t *e)
{
    return !u->failed && multipart_stream_finish(u->ms, e);
}

void upload_free(upload_t *u)
{
    if (!u)
        return;
    for (int i = 0; i < u->n; i++) {
        part_t *p = &u->parts[i];
        if (p->fd >= 0)
            close(p->fd);
        if (p->f.path) {
            unlink(p->f.path);
            free((char *)p->f.path);
        }
        EVP_MD_CTX_free(p->md);
        buf_free(&p->text);
        free((char *)p->f.name);
        free((char *)p->f.filename);
        free((char *)p->f.content_type);
    }
    multipart_stream_free(u->ms);
    free(u->dir);
    free(u);
}

const upload_file_t *upload_file(const upload_t *u, const char *name)
{
    for (int i = 0; u && i < u->n; i++)
        if (u->parts[i].is_file && strcmp(u->parts[i].f.name, name) == 0)
            return &u->parts[i].f;
    return NULL;
}

const char *upload_field(const upload_t *u, const char *name, size_t *len)
{
    for (int i = 0; u && i < u->n; i++)
        if (!u->parts[i].is_file && strcmp(u->parts[i].f.name, name) == 0) {
            if (len)
                *len = u->parts[i].text.len;
            return buf_cstr((buf_t *)&u->parts[i].text);
        }
    return NULL;
}
