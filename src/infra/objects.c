/* objects: picks the backend the configuration names, and guards the key space for both.
 *
 * Every public call checks its key here before a backend sees it, so the filesystem backend can
 * join a key to its root and the S3 backend can put it in a URL without either having to think
 * about "..", absolute paths, empty segments or bytes that would need escaping. */
#include "objects.h"

#include <stdio.h>
#include <string.h>

static bool key_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

bool objects_key_valid(const char *key)
{
    if (!key || !*key)
        return false;
    size_t n = strlen(key);
    if (n > OBJECTS_KEY_MAX)
        return false;
    const char *seg = key;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || key[i] == '/') {
            size_t len = (size_t)(key + i - seg);
            if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            seg = key + i + 1;
        } else if (!key_char((unsigned char)key[i])) {
            return false;
        }
    }
    return true;
}

/* A list prefix is the start of a key: "" or key characters and '/', not starting with '/'. */
static bool prefix_valid(const char *prefix)
{
    size_t n = strlen(prefix);
    if (n > OBJECTS_KEY_MAX || prefix[0] == '/')
        return false;
    for (size_t i = 0; i < n; i++)
        if (prefix[i] != '/' && !key_char((unsigned char)prefix[i]))
            return false;
    return true;
}

static bool check_key(const char *key, err_t *e)
{
    if (objects_key_valid(key))
        return true;
    return err_set(e, ERR_VALIDATION, "objects: invalid key \"%.64s%s\": expected '/'-separated segments of "
                                      "A-Z a-z 0-9 . _ -, at most %d bytes",
                   key ? key : "", key && strlen(key) > 64 ? "..." : "", OBJECTS_KEY_MAX);
}

/* A Content-Type goes into a request header (S3): printable ASCII only, so a value from a client can
 * never add a header of its own. NULL means none. */
static bool check_type(const char *key, const char *content_type, err_t *e)
{
    if (!content_type)
        return true;
    size_t n = strlen(content_type);
    bool ok = n > 0 && n <= OBJECTS_TYPE_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = content_type[i] >= 0x20 && content_type[i] < 0x7f;
    return ok || err_set(e, ERR_VALIDATION, "objects: put %s: invalid content type", key);
}

objects_t *objects_open(const config_t *cfg, err_t *e)
{
    if (cfg->s3_endpoint && *cfg->s3_endpoint)
        return objects_s3_open(cfg, e);
    char root[sizeof cfg->data_dir + 16];
    snprintf(root, sizeof root, "%s/objects", cfg->data_dir);
    return objects_fs_open(root, e);
}

void objects_close(objects_t *o)
{
    if (o)
        o->ops->close(o);
}

const char *objects_backend(const objects_t *o) { return o->ops->name; }

bool objects_put(objects_t *o, const char *key, const void *data, size_t len, const char *content_type, err_t *e)
{
    return check_key(key, e) && check_type(key, content_type, e) && o->ops->put(o, key, data, len, content_type, e);
}

bool objects_put_file(objects_t *o, const char *key, const char *path, const char *content_type, err_t *e)
{
    return check_key(key, e) && check_type(key, content_type, e) && o->ops->put_file(o, key, path, content_type, e);
}

bool objects_get(objects_t *o, const char *key, buf_t *out, err_t *e)
{
    return check_key(key, e) && o->ops->get(o, key, out, e);
}

bool objects_head(objects_t *o, const char *key, bool *exists, int64_t *size, err_t *e)
{
    *exists = false;
    *size = 0;
    return check_key(key, e) && o->ops->head(o, key, exists, size, e);
}

bool objects_delete(objects_t *o, const char *key, err_t *e) { return check_key(key, e) && o->ops->del(o, key, e); }

bool objects_list(objects_t *o, const char *prefix, void (*fn)(void *arg, const char *key, int64_t size), void *arg,
                  err_t *e)
{
    if (!prefix)
        prefix = "";
    if (!prefix_valid(prefix))
        return err_set(e, ERR_VALIDATION, "objects: invalid list prefix \"%.64s\"", prefix);
    return o->ops->list(o, prefix, fn, arg, e);
}

const char *objects_presign_get(objects_t *o, const char *key, int ttl_s, arena_t *a)
{
    if (!objects_key_valid(key) || !o->ops->presign_get)
        return NULL;
    return o->ops->presign_get(o, key, ttl_s, a);
}

const char *objects_local_path(objects_t *o, const char *key, arena_t *a)
{
    if (!objects_key_valid(key) || !o->ops->local_path)
        return NULL;
    return o->ops->local_path(o, key, a);
}
