/* objects_fs: the object store as files under one directory ($HEARTH_DATA_DIR/objects).
 *
 * A key is a relative path below the root; every call resolves it against a descriptor of the
 * root opened once (openat and friends), so the process's working directory never matters.
 *
 * The one idea is the atomic write: an object is written to a temporary file in its own directory,
 * fsynced, renamed over the final name and the directory fsynced, so a reader (or a crash) sees the
 * old object or the new one, never a part. Temporary names ("~" + random hex + ".tmp") contain a
 * character no key may hold, so they can never be mistaken for an object; list skips them, and
 * removes any that a crash left behind for more than a day. Deleting the last object of a
 * directory removes the empty directories above it; a write that loses that race retries. */
#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW, fdopendir */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/util.h"
#include "objects.h"

#define COPY_CHUNK (256u << 10)
#define STALE_TMP_S (24 * 3600) /* a temporary file older than this is a crash's leftover */
#define WRITE_ATTEMPTS 3        /* a concurrent delete may remove the directory a write is in */

typedef struct fs_objects {
    objects_t base;
    char *root;  /* absolute, without a trailing '/' */
    int rootfd;  /* O_DIRECTORY; every key is resolved against it */
} fs_objects_t;

static const objects_ops_t fs_ops;

/* What to write: `len` bytes at `data`, or (fd >= 0) the whole file `fd`. */
typedef struct source {
    const char *data;
    size_t len;
    int fd;
} source_t;

static fs_objects_t *fs_of(objects_t *o) { return (fs_objects_t *)o; }

static bool sys_err(err_t *e, const char *op, const char *key, int errnum)
{
    return err_set(e, errnum == ENOSPC || errnum == EDQUOT ? ERR_UNAVAILABLE : ERR_INTERNAL, "objects: %s %s: %s", op,
                   key, strerror(errnum));
}

static bool is_tmp_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] == '~' && n > 4 && strcmp(name + n - 4, ".tmp") == 0;
}

static bool fsync_dir(int at, const char *rel)
{
    int fd = openat(at, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

/* Creates the directories of `key` (all but its last segment) below the root; a directory made
 * here is made durable by an fsync of its parent. */
static bool make_dirs(fs_objects_t *fs, const char *key, err_t *e)
{
    char path[OBJECTS_KEY_MAX + 1];
    snprintf(path, sizeof path, "%s", key);
    char *slash = strrchr(path, '/');
    if (!slash)
        return true;
    *slash = '\0';
    for (char *p = path;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdirat(fs->rootfd, path, 0700) == 0) {
            char *parent_end = strrchr(path, '/');
            if (parent_end)
                *parent_end = '\0';
            bool ok = fsync_dir(fs->rootfd, parent_end ? path : ".");
            if (parent_end)
                *parent_end = '/';
            if (!ok)
                return sys_err(e, "put", key, errno);
        } else if (errno != EEXIST) {
            return errno == ENOTDIR ? err_set(e, ERR_CONFLICT, "objects: put %s: a leading part of the key is an "
                                                                "object", key)
                                    : sys_err(e, "put", key, errno);
        }
        *p = saved;
        if (saved == '\0')
            return true;
    }
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool copy_source(int out, const source_t *src)
{
    if (src->fd < 0)
        return write_all(out, src->data, src->len);
    char *chunk = malloc(COPY_CHUNK);
    if (!chunk)
        abort();
    bool ok = lseek(src->fd, 0, SEEK_SET) == 0;
    while (ok) {
        ssize_t r = read(src->fd, chunk, COPY_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ok = r == 0;
            break;
        }
        ok = write_all(out, chunk, (size_t)r);
    }
    int saved = errno;
    free(chunk);
    errno = saved;
    return ok;
}

/* One attempt at the atomic write. Returns 1 on success, 0 on failure (e set), -1 when the
 * directory vanished under it (a concurrent delete pruned it) and the caller should try again. */
static int write_once(fs_objects_t *fs, const char *key, const source_t *src, err_t *e)
{
    if (!make_dirs(fs, key, e))
        return 0;
    const char *slash = strrchr(key, '/');
    char dir[OBJECTS_KEY_MAX + 1];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - key) : 1, slash ? key : ".");
    const char *base = slash ? slash + 1 : key;
    int dfd = openat(fs->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        if (errno == ENOTDIR)
            return err_set(e, ERR_CONFLICT, "objects: put %s: a leading part of the key is an object", key);
        return errno == ENOENT ? -1 : sys_err(e, "put", key, errno);
    }
    char tmp[32] = "~";
    int fd = -1;
    for (int i = 0; i < 8 && fd < 0; i++) {
        rand_hex_id(tmp + 1, 8);
        strcat(tmp, ".tmp");
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int err = errno;
        close(dfd);
        return err == ENOENT ? -1 : sys_err(e, "put", key, err);
    }
    int err = 0;
    errno = 0;
    if (!copy_source(fd, src) || fsync(fd) != 0)
        err = errno ? errno : EIO;
    if (close(fd) != 0 && !err)
        err = errno;
    if (!err && renameat(dfd, tmp, dfd, base) != 0)
        err = errno;
    if (err) {
        unlinkat(dfd, tmp, 0);
        close(dfd);
        if (err == EISDIR || err == ENOTEMPTY || err == EEXIST)
            return err_set(e, ERR_CONFLICT, "objects: put %s: the key is a prefix of other objects", key);
        return sys_err(e, "put", key, err);
    }
    if (fsync(dfd) != 0)
        err = errno;
    close(dfd);
    return err ? sys_err(e, "put", key, err) : 1;
}

static bool fs_write(fs_objects_t *fs, const char *key, const source_t *src, err_t *e)
{
    for (int attempt = 1;; attempt++) {
        int r = write_once(fs, key, src, e);
        if (r >= 0)
            return r == 1;
        if (attempt == WRITE_ATTEMPTS)
            return sys_err(e, "put", key, ENOENT);
    }
}

static bool fs_put(objects_t *o, const char *key, const void *data, size_t len, const char *content_type, err_t *e)
{
    source_t src = {data, len, -1};
    return fs_write(fs_of(o), key, &src, e);
}

static bool fs_put_file(objects_t *o, const char *key, const char *path, const char *content_type, err_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, ERR_INTERNAL, "objects: put %s: cannot read %s: %s", key, path, strerror(errno));
    source_t src = {NULL, 0, fd};
    bool ok = fs_write(fs_of(o), key, &src, e);
    close(fd);
    return ok;
}

static bool fs_get(objects_t *o, const char *key, buf_t *out, err_t *e)
{
    fs_objects_t *fs = fs_of(o);
    int fd = openat(fs->rootfd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
            return err_set(e, ERR_NOT_FOUND, "objects: no object %s", key);
        return sys_err(e, "get", key, errno);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return sys_err(e, "get", key, err);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_NOT_FOUND, "objects: no object %s", key);
    }
    /* Objects are replaced by rename, never written in place: the size is the size. */
    size_t start = out->len, left = (size_t)st.st_size;
    buf_reserve(out, left);
    while (left > 0) {
        ssize_t r = read(fd, out->data + out->len, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int err = r < 0 ? errno : EIO;
            close(fd);
            out->len = start;
            out->data[start] = '\0';
            return sys_err(e, "get", key, err);
        }
        out->len += (size_t)r;
        left -= (size_t)r;
    }
    out->data[out->len] = '\0';
    close(fd);
    return true;
}

static bool fs_head(objects_t *o, const char *key, bool *exists, int64_t *size, err_t *e)
{
    struct stat st;
    if (fstatat(fs_of(o)->rootfd, key, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return true;
        return sys_err(e, "head", key, errno);
    }
    if (S_ISREG(st.st_mode)) {
        *exists = true;
        *size = (int64_t)st.st_size;
    }
    return true;
}

/* Removes the now empty directories above `key`, deepest first, stopping at the first that is
 * not empty. */
static void prune_dirs(fs_objects_t *fs, const char *key)
{
    char path[OBJECTS_KEY_MAX + 1];
    snprintf(path, sizeof path, "%s", key);
    for (char *slash; (slash = strrchr(path, '/'));) {
        *slash = '\0';
        if (unlinkat(fs->rootfd, path, AT_REMOVEDIR) != 0)
            return;
    }
}

static bool fs_del(objects_t *o, const char *key, err_t *e)
{
    fs_objects_t *fs = fs_of(o);
    if (unlinkat(fs->rootfd, key, 0) != 0) {
        if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
            return true;
        return sys_err(e, "delete", key, errno);
    }
    const char *slash = strrchr(key, '/');
    char dir[OBJECTS_KEY_MAX + 1];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - key) : 1, slash ? key : ".");
    if (!fsync_dir(fs->rootfd, dir) && errno != ENOENT)
        return sys_err(e, "delete", key, errno);
    prune_dirs(fs, key);
    return true;
}

/* ---------------------------------------------------------------- list */

typedef struct walk {
    fs_objects_t *fs;
    const char *prefix;
    size_t prefix_len;
    objects_list_fn fn;
    void *arg;
    time_t now;
    err_t *e;
} walk_t;

/* Whether the directory `dir` (a key prefix without the trailing '/') can hold keys that start
 * with the prefix: one of "dir/" and the prefix starts the other. */
static bool dir_matches(const walk_t *w, const char *dir, size_t n)
{
    size_t m = n < w->prefix_len ? n : w->prefix_len;
    if (strncmp(dir, w->prefix, m) != 0)
        return false;
    return w->prefix_len <= n || w->prefix[n] == '/';
}

/* The names in directory `rel` ("" for the root), NUL-separated, into `names`. */
static bool read_names(walk_t *w, const char *rel, buf_t *names, bool *gone)
{
    int fd = openat(w->fs->rootfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        *gone = errno == ENOENT || errno == ENOTDIR;
        return *gone || sys_err(w->e, "list", *rel ? rel : "/", errno);
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return sys_err(w->e, "list", *rel ? rel : "/", errno);
    }
    struct dirent *de;
    while ((errno = 0, de = readdir(d)))
        buf_append(names, de->d_name, strlen(de->d_name) + 1);
    int err = errno;
    closedir(d);
    return err == 0 || sys_err(w->e, "list", *rel ? rel : "/", err);
}

static bool walk_dir(walk_t *w, buf_t *path)
{
    buf_t names;
    buf_init(&names);
    bool gone = false;
    bool ok = read_names(w, path->len ? path->data : "", &names, &gone);
    size_t base = path->len;
    for (size_t off = 0; ok && !gone && off < names.len; off += strlen(names.data + off) + 1) {
        const char *name = names.data + off;
        path->len = base;
        if (base)
            buf_putc(path, '/');
        buf_puts(path, name);
        struct stat st;
        if (fstatat(w->fs->rootfd, path->data, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* removed meanwhile */
        if (is_tmp_name(name)) {
            if (S_ISREG(st.st_mode) && w->now - st.st_mtime > STALE_TMP_S)
                unlinkat(w->fs->rootfd, path->data, 0);
            continue;
        }
        if (!objects_key_valid(name) || path->len > OBJECTS_KEY_MAX)
            continue; /* not ours */
        if (S_ISDIR(st.st_mode) && dir_matches(w, path->data, path->len))
            ok = walk_dir(w, path);
        else if (S_ISREG(st.st_mode) && strncmp(path->data, w->prefix, w->prefix_len) == 0)
            w->fn(w->arg, path->data, (int64_t)st.st_size);
    }
    path->len = base;
    if (path->data)
        path->data[base] = '\0';
    buf_free(&names);
    return ok;
}

static bool fs_list(objects_t *o, const char *prefix, objects_list_fn fn, void *arg, err_t *e)
{
    walk_t w = {fs_of(o), prefix, strlen(prefix), fn, arg, time(NULL), e};
    buf_t path;
    buf_init(&path);
    bool ok = walk_dir(&w, &path);
    buf_free(&path);
    return ok;
}

static const char *fs_local_path(objects_t *o, const char *key, arena_t *a)
{
    return arena_printf(a, "%s/%s", fs_of(o)->root, key);
}

static void fs_close(objects_t *o)
{
    fs_objects_t *fs = fs_of(o);
    close(fs->rootfd);
    free(fs->root);
    free(fs);
}

static const objects_ops_t fs_ops = {
    .name = "fs",
    .put = fs_put,
    .put_file = fs_put_file,
    .get = fs_get,
    .head = fs_head,
    .del = fs_del,
    .list = fs_list,
    .presign_get = NULL,
    .local_path = fs_local_path,
    .close = fs_close,
};

/* ---------------------------------------------------------------- open */

static bool mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return false;
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return false;
        *p = saved;
        if (!saved)
            return true;
    }
}

/* A file created and removed in the root: the directory is writable, and says so now rather than
 * at the first upload. */
static bool probe_writable(int rootfd)
{
    char name[32] = "~";
    rand_hex_id(name + 1, 8);
    strcat(name, ".tmp");
    int fd = openat(rootfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    close(fd);
    unlinkat(rootfd, name, 0);
    return true;
}

objects_t *objects_fs_open(const char *root, err_t *e)
{
    char abs[PATH_MAX];
    if (!root || !*root) {
        err_set(e, ERR_INTERNAL, "objects: no directory given");
        return NULL;
    }
    if (!mkdir_p(root) || !realpath(root, abs)) {
        err_set(e, ERR_INTERNAL, "objects: cannot create %s: %s", root, strerror(errno));
        return NULL;
    }
    int fd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || !probe_writable(fd)) {
        err_set(e, ERR_INTERNAL, "objects: %s is not a writable directory: %s", abs, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    fs_objects_t *fs = calloc(1, sizeof *fs);
    char *copy = strdup(abs);
    if (!fs || !copy)
        abort();
    fs->base.ops = &fs_ops;
    fs->root = copy;
    fs->rootfd = fd;
    return &fs->base;
}
