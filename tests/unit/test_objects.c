/* test_objects: the object store. The same suite runs on the filesystem backend (a temporary
 * directory) and, when HEARTH_TEST_S3 names an S3 endpoint (scripts/services.sh starts one, with
 * HEARTH_TEST_S3_BUCKET), on the S3 backend: put, replace, get, head, delete, list by prefix, files
 * streamed in, and every call refusing keys that could escape the store ("../x", "/abs", "a//b",
 * "a/./b", empty, too long, non-ASCII). The filesystem backend also: no temporary file left
 * behind by a success or a failure, empty directories removed, a crash's temporary files cleaned
 * by list, readers never seeing half an object while it is replaced. S3 also: a multipart upload
 * of a 20 MB file and of 9 MB from memory, a presigned GET fetched with libcurl (also through
 * S3_PUBLIC_URL). Configuration errors and an unreachable endpoint (retries, then a clear error)
 * are checked without a server. */
#define _GNU_SOURCE /* nftw */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/util.h"
#include "infra/objects.h"
#include "infra/sigv4.h"

typedef struct fixture {
    char dir[64];
    char root[96];
    objects_t *o;
    char prefix[48]; /* every key of the run starts with it (S3: the bucket may hold other runs) */
    arena_t a;
} fixture_t;

/* ---------------------------------------------------------------- helpers */

static const char *k(fixture_t *f, const char *key) { return arena_printf(&f->a, "%s%s", f->prefix, key); }

static void put_str(fixture_t *f, const char *key, const char *s)
{
    err_t e;
    err_clear(&e);
    if (!objects_put(f->o, k(f, key), s, strlen(s), "text/plain", &e))
        fail_msg("put %s: %s", key, e.message);
}

static void expect_content(fixture_t *f, const char *key, const void *want, size_t n)
{
    err_t e;
    err_clear(&e);
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "kept:"); /* get appends */
    if (!objects_get(f->o, k(f, key), &b, &e))
        fail_msg("get %s: %s", key, e.message);
    assert_int_equal(b.len, 5 + n);
    assert_memory_equal(b.data, "kept:", 5);
    if (n)
        assert_memory_equal(b.data + 5, want, n);
    buf_free(&b);
}

static void expect_missing(fixture_t *f, const char *key)
{
    err_t e;
    err_clear(&e);
    buf_t b;
    buf_init(&b);
    assert_false(objects_get(f->o, k(f, key), &b, &e));
    assert_int_equal(e.code, ERR_NOT_FOUND);
    assert_int_equal(b.len, 0);
    bool exists = true;
    int64_t size = 7;
    err_clear(&e);
    assert_true(objects_head(f->o, k(f, key), &exists, &size, &e));
    assert_false(exists);
    assert_int_equal(size, 0);
    buf_free(&b);
}

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static void fill_random(void *p, size_t n)
{
    uint64_t *w = p;
    for (size_t i = 0; i < n / 8; i++)
        w[i] = rand_fast();
    for (size_t i = n / 8 * 8; i < n; i++)
        ((unsigned char *)p)[i] = (unsigned char)rand_fast();
}

typedef struct listing {
    int n;
    char *keys[64];
    int64_t sizes[64];
} listing_t;

static void collect(void *arg, const char *key, int64_t size)
{
    listing_t *l = arg;
    if (l->n < 64) {
        l->keys[l->n] = strdup(key);
        l->sizes[l->n++] = size;
    }
}

static int64_t listed_size(const listing_t *l, const char *key) /* -1: not listed */
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->keys[i], key) == 0)
            return l->sizes[i];
    return -1;
}

static void listing_free(listing_t *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->keys[i]);
    l->n = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int tmp_entries;
static int count_tmp(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag;
    if (path[ftw->base] == '~')
        tmp_entries++;
    return 0;
}

/* Temporary files anywhere under the root. */
static int temp_files(fixture_t *f)
{
    tmp_entries = 0;
    nftw(f->root, count_tmp, 16, FTW_PHYS);
    return tmp_entries;
}

/* ---------------------------------------------------------------- fixtures */

static int fs_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/hearth-test-objects-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    /* through objects_open, as the server opens it: $HEARTH_DATA_DIR/objects */
    config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", f->dir);
    snprintf(f->root, sizeof f->root, "%s/objects", f->dir);
    err_t e;
    err_clear(&e);
    if (!(f->o = objects_open(&cfg, &e))) {
        fprintf(stderr, "objects_open: %s\n", e.message);
        return -1;
    }
    arena_init(&f->a);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return 0;
    objects_close(f->o);
    arena_free(&f->a);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void s3_config(config_t *cfg, const char *endpoint, const char *bucket)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->s3_endpoint = endpoint;
    cfg->s3_bucket = bucket;
    cfg->s3_region = getenv("S3_REGION");
    cfg->s3_access_key_id = getenv("S3_ACCESS_KEY_ID") ? getenv("S3_ACCESS_KEY_ID") : "S3RVER";
    cfg->s3_secret_access_key = getenv("S3_SECRET_ACCESS_KEY") ? getenv("S3_SECRET_ACCESS_KEY") : "S3RVER";
}

/* The S3 fixture: NULL state (the tests skip) without HEARTH_TEST_S3. */
static int s3_setup(void **state)
{
    *state = NULL;
    const char *endpoint = getenv("HEARTH_TEST_S3");
    if (!endpoint || !*endpoint)
        return 0;
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/hearth-test-objects-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    config_t cfg;
    s3_config(&cfg, endpoint, getenv("HEARTH_TEST_S3_BUCKET") ? getenv("HEARTH_TEST_S3_BUCKET") : "hearth");
    err_t e;
    err_clear(&e);
    if (!(f->o = objects_open(&cfg, &e))) {
        fprintf(stderr, "objects_open: %s\n", e.message);
        return -1;
    }
    char id[17];
    rand_hex_id(id, 8);
    snprintf(f->prefix, sizeof f->prefix, "test-%s/", id);
    arena_init(&f->a);
    *state = f;
    return 0;
}

#define NEED_S3(f)                                                                                                     \
    do {                                                                                                               \
        if (!(f))                                                                                                      \
            skip();                                                                                                    \
    } while (0)

/* ---------------------------------------------------------------- the suite of both backends */

static void put_get_replace_delete(fixture_t *f)
{
    err_t e;
    err_clear(&e);
    put_str(f, "props/7/photo.jpg", "first version");
    expect_content(f, "props/7/photo.jpg", "first version", 13);
    put_str(f, "props/7/photo.jpg", "v2");
    expect_content(f, "props/7/photo.jpg", "v2", 2);
    bool exists = false;
    int64_t size = -1;
    assert_true(objects_head(f->o, k(f, "props/7/photo.jpg"), &exists, &size, &e));
    assert_true(exists);
    assert_int_equal(size, 2);
    expect_missing(f, "props/7/other.jpg");
    expect_missing(f, "props/8/photo.jpg");
    assert_true(objects_delete(f->o, k(f, "props/7/photo.jpg"), &e));
    expect_missing(f, "props/7/photo.jpg");
    assert_true(objects_delete(f->o, k(f, "props/7/photo.jpg"), &e)); /* not there: still fine */
    assert_true(objects_delete(f->o, k(f, "never/was"), &e));
    /* an empty object and a binary one */
    assert_true(objects_put(f->o, k(f, "empty"), "", 0, NULL, &e));
    expect_content(f, "empty", "", 0);
    assert_true(objects_head(f->o, k(f, "empty"), &exists, &size, &e));
    assert_true(exists);
    assert_int_equal(size, 0);
    unsigned char bin[4096];
    fill_random(bin, sizeof bin);
    bin[0] = 0;
    assert_true(objects_put(f->o, k(f, "bin.dat"), bin, sizeof bin, "application/octet-stream", &e));
    expect_content(f, "bin.dat", bin, sizeof bin);
    assert_true(objects_delete(f->o, k(f, "empty"), &e));
    assert_true(objects_delete(f->o, k(f, "bin.dat"), &e));
    /* a content type is one header value: no line breaks, no control characters */
    assert_false(objects_put(f->o, k(f, "typed"), "x", 1, "text/plain\r\nX-Injected: 1", &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    assert_false(objects_put(f->o, k(f, "typed"), "x", 1, "", &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    expect_missing(f, "typed");
}

static void put_file_streams(fixture_t *f)
{
    size_t n = (3u << 20) + 17;
    char *data = malloc(n);
    fill_random(data, n);
    char path[128];
    snprintf(path, sizeof path, "%s/upload.bin", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    err_t e;
    err_clear(&e);
    if (!objects_put_file(f->o, k(f, "files/upload.bin"), path, "application/octet-stream", &e))
        fail_msg("put_file: %s", e.message);
    expect_content(f, "files/upload.bin", data, n);
    assert_false(objects_put_file(f->o, k(f, "files/none"), "/nonexistent/file", NULL, &e));
    assert_int_equal(e.code, ERR_INTERNAL);
    assert_non_null(strstr(e.message, "/nonexistent/file"));
    assert_true(objects_delete(f->o, k(f, "files/upload.bin"), &e));
    unlink(path);
    free(data);
}

static void list_by_prefix(fixture_t *f)
{
    put_str(f, "list/a", "1");
    put_str(f, "list/b/c", "22");
    put_str(f, "list/b/d", "333");
    put_str(f, "listing", "4444");
    put_str(f, "other/e", "55555");
    err_t e;
    err_clear(&e);
    listing_t l = {0};
    assert_true(objects_list(f->o, k(f, "list/"), collect, &l, &e));
    assert_int_equal(l.n, 3);
    assert_int_equal(listed_size(&l, k(f, "list/a")), 1);
    assert_int_equal(listed_size(&l, k(f, "list/b/c")), 2);
    assert_int_equal(listed_size(&l, k(f, "list/b/d")), 3);
    listing_free(&l);
    assert_true(objects_list(f->o, k(f, "list"), collect, &l, &e)); /* a prefix need not end at a '/' */
    assert_int_equal(l.n, 4);
    assert_int_equal(listed_size(&l, k(f, "listing")), 4);
    listing_free(&l);
    assert_true(objects_list(f->o, k(f, "list/b/c"), collect, &l, &e));
    assert_int_equal(l.n, 1);
    listing_free(&l);
    assert_true(objects_list(f->o, k(f, "nothing/"), collect, &l, &e));
    assert_int_equal(l.n, 0);
    assert_true(objects_list(f->o, f->prefix, collect, &l, &e)); /* "" on the filesystem: everything */
    assert_int_equal(l.n, 5);
    listing_free(&l);
    assert_false(objects_list(f->o, "/list", collect, &l, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    assert_false(objects_list(f->o, "li st", collect, &l, &e));
    assert_int_equal(e.code, ERR_VALIDATION);
    const char *keys[] = {"list/a", "list/b/c", "list/b/d", "listing", "other/e"};
    for (int i = 0; i < 5; i++)
        assert_true(objects_delete(f->o, k(f, keys[i]), &e));
    assert_true(objects_list(f->o, f->prefix, collect, &l, &e));
    assert_int_equal(l.n, 0);
}

static void bad_keys_refused(fixture_t *f)
{
    char too_long[OBJECTS_KEY_MAX + 2];
    memset(too_long, 'a', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    const char *bad[] = {"../x", "a/../../x", "..", ".", "/abs", "a//b", "a/./b", "a/", "", "caf\xc3\xa9", "a b",
                         "a\\b", "a\nb", "a?b", "%2e%2e/x", "a:b", "~x.tmp", too_long};
    buf_t b;
    buf_init(&b);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err_t e;
        err_clear(&e);
        bool exists = true;
        int64_t size = 1;
        if (objects_key_valid(bad[i]))
            fail_msg("key \"%s\" accepted", bad[i]);
        assert_false(objects_put(f->o, bad[i], "x", 1, NULL, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        err_clear(&e);
        assert_false(objects_put_file(f->o, bad[i], "/etc/hostname", NULL, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        err_clear(&e);
        assert_false(objects_get(f->o, bad[i], &b, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        err_clear(&e);
        assert_false(objects_head(f->o, bad[i], &exists, &size, &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        assert_false(exists);
        err_clear(&e);
        assert_false(objects_delete(f->o, bad[i], &e));
        assert_int_equal(e.code, ERR_VALIDATION);
        assert_null(objects_presign_get(f->o, bad[i], 60, &f->a));
        assert_null(objects_local_path(f->o, bad[i], &f->a));
    }
    err_t e;
    assert_false(objects_get(f->o, NULL, &b, &e));
    assert_int_equal(b.len, 0);
    too_long[OBJECTS_KEY_MAX] = '\0'; /* exactly the limit */
    assert_true(objects_key_valid(too_long));
    assert_true(objects_key_valid("a"));
    assert_true(objects_key_valid("images/12/ab-CD_9.thumb.webp"));
    assert_true(objects_key_valid("...a/b.."));
    buf_free(&b);
}

/* ---------------------------------------------------------------- filesystem */

static void fs_basics(void **state)
{
    fixture_t *f = *state;
    assert_string_equal(objects_backend(f->o), "fs");
    put_get_replace_delete(f);
    assert_int_equal(temp_files(f), 0);
}

static void fs_put_file(void **state) { put_file_streams(*state); }
static void fs_list(void **state) { list_by_prefix(*state); }
static void fs_bad_keys(void **state)
{
    fixture_t *f = *state;
    bad_keys_refused(f);
    struct stat st;
    char outside[128];
    snprintf(outside, sizeof outside, "%s/x", f->dir); /* where "../x" would have gone */
    assert_int_equal(stat(outside, &st), -1);
}

static void fs_layout_and_paths(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    put_str(f, "a/b/c.txt", "abc");
    const char *path = objects_local_path(f->o, "a/b/c.txt", &f->a);
    assert_non_null(path);
    assert_string_equal(path, arena_printf(&f->a, "%s/a/b/c.txt", f->root));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 3);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_null(objects_presign_get(f->o, "a/b/c.txt", 60, &f->a));
    /* a key cannot be both an object and a directory of others */
    assert_false(objects_put(f->o, "a/b/c.txt/d", "x", 1, NULL, &e));
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_non_null(strstr(e.message, "a/b/c.txt/d"));
    err_clear(&e);
    assert_false(objects_put(f->o, "a/b", "x", 1, NULL, &e));
    assert_int_equal(e.code, ERR_CONFLICT);
    assert_int_equal(temp_files(f), 0); /* the failed writes left nothing */
    expect_missing(f, "a/b");
    /* deleting the last object removes the directories it emptied */
    put_str(f, "a/keep", "k");
    assert_true(objects_delete(f->o, "a/b/c.txt", &e));
    assert_int_equal(stat(arena_printf(&f->a, "%s/a/b", f->root), &st), -1);
    assert_int_equal(stat(arena_printf(&f->a, "%s/a", f->root), &st), 0);
    assert_true(objects_delete(f->o, "a/keep", &e));
    assert_int_equal(stat(arena_printf(&f->a, "%s/a", f->root), &st), -1);
    assert_int_equal(stat(f->root, &st), 0);
}

static void fs_stale_temp_files(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    put_str(f, "d/obj", "x");
    const char *old = arena_printf(&f->a, "%s/d/~0123456789abcdef.tmp", f->root);
    const char *fresh = arena_printf(&f->a, "%s/d/~fedcba9876543210.tmp", f->root);
    const char *foreign = arena_printf(&f->a, "%s/d/not a key", f->root);
    const char *paths[] = {old, fresh, foreign};
    for (int i = 0; i < 3; i++) {
        int fd = open(paths[i], O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        close(fd);
    }
    struct timespec times[2] = {{time(NULL) - 3 * 86400, 0}, {time(NULL) - 3 * 86400, 0}};
    assert_int_equal(utimensat(AT_FDCWD, old, times, 0), 0);
    listing_t l = {0};
    assert_true(objects_list(f->o, "", collect, &l, &e));
    assert_int_equal(l.n, 1); /* neither temporary nor foreign names are objects */
    assert_string_equal(l.keys[0], "d/obj");
    listing_free(&l);
    struct stat st;
    assert_int_equal(stat(old, &st), -1);   /* a crash's leftover: removed */
    assert_int_equal(stat(fresh, &st), 0);  /* maybe a write in progress: kept */
    assert_int_equal(stat(foreign, &st), 0); /* not ours: untouched */
    unlink(fresh);
    unlink(foreign);
    assert_true(objects_delete(f->o, "d/obj", &e));
}

/* Readers while a writer replaces an object: each read is one whole version. */
typedef struct race {
    fixture_t *f;
    _Atomic bool stop;
    _Atomic int torn, reads;
} race_t;

#define BIG_LEN (256u << 10)

static void *reader(void *arg)
{
    race_t *r = arg;
    buf_t b;
    buf_init(&b);
    while (!atomic_load(&r->stop)) {
        err_t e;
        buf_reset(&b);
        if (!objects_get(r->f->o, "race/obj", &b, &e)) {
            atomic_fetch_add(&r->torn, 1);
            continue;
        }
        bool whole = (b.len == 5 && memcmp(b.data, "small", 5) == 0) || b.len == BIG_LEN;
        for (size_t i = 0; whole && b.len == BIG_LEN && i < BIG_LEN; i++)
            whole = b.data[i] == 'B';
        if (!whole)
            atomic_fetch_add(&r->torn, 1);
        atomic_fetch_add(&r->reads, 1);
    }
    buf_free(&b);
    return NULL;
}

static void fs_atomic_replace(void **state)
{
    fixture_t *f = *state;
    err_t e;
    err_clear(&e);
    char *big = malloc(BIG_LEN);
    memset(big, 'B', BIG_LEN);
    assert_true(objects_put(f->o, "race/obj", "small", 5, NULL, &e));
    race_t r = {.f = f};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, &r), 0);
    for (int i = 0; i < 60; i++) {
        if (!(i % 2 ? objects_put(f->o, "race/obj", "small", 5, NULL, &e)
                    : objects_put(f->o, "race/obj", big, BIG_LEN, NULL, &e)))
            fail_msg("put: %s", e.message);
    }
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.torn), 0);
    assert_true(atomic_load(&r.reads) > 0);
    assert_int_equal(temp_files(f), 0);
    assert_true(objects_delete(f->o, "race/obj", &e));
    free(big);
}

static void fs_open_errors(void **state)
{
    (void)state;
    err_t e;
    err_clear(&e);
    assert_null(objects_fs_open("/proc/hearth-objects", &e));
    assert_non_null(strstr(e.message, "/proc/hearth-objects"));
    err_clear(&e);
    assert_null(objects_fs_open("/etc/hostname/objects", &e)); /* under a file */
    assert_non_null(strstr(e.message, "/etc/hostname/objects"));
}

/* ---------------------------------------------------------------- S3 */

static void s3_basics(void **state)
{
    fixture_t *f = *state;
    NEED_S3(f);
    assert_string_equal(objects_backend(f->o), "s3");
    assert_null(objects_local_path(f->o, k(f, "x"), &f->a));
    put_get_replace_delete(f);
}

static void s3_put_file(void **state)
{
    NEED_S3(*state);
    put_file_streams(*state);
}

static void s3_list(void **state)
{
    NEED_S3(*state);
    list_by_prefix(*state);
}

static void s3_bad_keys(void **state)
{
    NEED_S3(*state);
    bad_keys_refused(*state);
}

static void s3_multipart(void **state)
{
    fixture_t *f = *state;
    NEED_S3(f);
    size_t n = 20u << 20;
    char *data = malloc(n);
    fill_random(data, n);
    char path[128];
    snprintf(path, sizeof path, "%s/big.bin", f->dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
    err_t e;
    err_clear(&e);
    if (!objects_put_file(f->o, k(f, "big/file.bin"), path, "application/octet-stream", &e))
        fail_msg("multipart put_file: %s", e.message);
    bool exists = false;
    int64_t size = 0;
    assert_true(objects_head(f->o, k(f, "big/file.bin"), &exists, &size, &e));
    assert_true(exists);
    assert_int_equal(size, (int64_t)n);
    expect_content(f, "big/file.bin", data, n);
    /* from memory, just above the threshold: two parts, the second small */
    size_t m = OBJECTS_MULTIPART_MIN + 1000;
    if (!objects_put(f->o, k(f, "big/mem.bin"), data, m, NULL, &e))
        fail_msg("multipart put: %s", e.message);
    expect_content(f, "big/mem.bin", data, m);
    assert_true(objects_delete(f->o, k(f, "big/file.bin"), &e));
    assert_true(objects_delete(f->o, k(f, "big/mem.bin"), &e));
    unlink(path);
    free(data);
}

static size_t to_buf(char *p, size_t size, size_t n, void *arg)
{
    buf_append(arg, p, size * n);
    return size * n;
}

/* Fetches url with libcurl, as a browser would; returns the status. */
static long fetch(const char *url, buf_t *out, char *type, size_t typelen)
{
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_buf);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    long status = 0;
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    if (type)
        snprintf(type, typelen, "%s", ct ? ct : "");
    curl_easy_cleanup(h);
    return status;
}

static void s3_presigned_get(void **state)
{
    fixture_t *f = *state;
    NEED_S3(f);
    put_str(f, "shared/photo.jpg", "the bytes");
    const char *url = objects_presign_get(f->o, k(f, "shared/photo.jpg"), 300, &f->a);
    assert_non_null(url);
    const char *endpoint = getenv("HEARTH_TEST_S3");
    assert_true(starts_with(url, endpoint));
    assert_non_null(strstr(url, "X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature="));
    buf_t b;
    buf_init(&b);
    char type[64];
    assert_int_equal(fetch(url, &b, type, sizeof type), 200);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "the bytes", 9);
    assert_string_equal(type, "text/plain"); /* kept from the put */

    /* S3_PUBLIC_URL: the same server under the name clients use ("localhost" for 127.0.0.1) */
    const char *at = strstr(endpoint, "127.0.0.1");
    if (at) {
        const char *public_url = arena_printf(&f->a, "%.*slocalhost%s", (int)(at - endpoint), endpoint, at + 9);
        config_t cfg;
        s3_config(&cfg, endpoint, getenv("HEARTH_TEST_S3_BUCKET") ? getenv("HEARTH_TEST_S3_BUCKET") : "hearth");
        cfg.s3_public_url = public_url;
        err_t e;
        err_clear(&e);
        objects_t *o = objects_open(&cfg, &e);
        assert_non_null(o);
        url = objects_presign_get(o, k(f, "shared/photo.jpg"), 60, &f->a);
        assert_true(starts_with(url, public_url));
        buf_reset(&b);
        assert_int_equal(fetch(url, &b, NULL, 0), 200);
        assert_int_equal(b.len, 9);
        objects_close(o);
    }
    err_t e;
    assert_true(objects_delete(f->o, k(f, "shared/photo.jpg"), &e));
    buf_free(&b);
}

static void s3_missing_bucket(void **state)
{
    fixture_t *f = *state;
    NEED_S3(f);
    config_t cfg;
    s3_config(&cfg, getenv("HEARTH_TEST_S3"), "no-such-bucket-here");
    err_t e;
    err_clear(&e);
    objects_t *o = objects_open(&cfg, &e);
    assert_non_null(o);
    assert_false(objects_put(o, "k", "x", 1, NULL, &e));
    assert_int_not_equal(e.code, ERR_NOT_FOUND);
    assert_non_null(strstr(e.message, "no-such-bucket-here"));
    objects_close(o);
}

/* Without a server: configuration errors, and an endpoint nobody listens on. */
static void s3_configuration(void **state)
{
    (void)state;
    config_t cfg;
    err_t e;
    s3_config(&cfg, "http://127.0.0.1:9", NULL);
    err_clear(&e);
    assert_null(objects_open(&cfg, &e));
    assert_non_null(strstr(e.message, "S3_BUCKET"));
    s3_config(&cfg, "http://127.0.0.1:9", "Bad/Bucket");
    assert_null(objects_open(&cfg, &e));
    assert_non_null(strstr(e.message, "S3_BUCKET"));
    s3_config(&cfg, "http://127.0.0.1:9", "bucket");
    cfg.s3_secret_access_key = NULL;
    assert_null(objects_open(&cfg, &e));
    assert_non_null(strstr(e.message, "S3_SECRET_ACCESS_KEY"));
    s3_config(&cfg, "ftp://127.0.0.1:9", "bucket");
    assert_null(objects_open(&cfg, &e));
    assert_non_null(strstr(e.message, "S3_ENDPOINT"));
    s3_config(&cfg, "http://127.0.0.1:9/", "bucket");
    cfg.s3_public_url = "https://cdn.example.com/files";
    assert_null(objects_open(&cfg, &e));
    assert_non_null(strstr(e.message, "S3_PUBLIC_URL"));

    /* the region defaults to us-east-1; S3_PUBLIC_URL's default port is not part of the host */
    cfg.s3_public_url = "https://cdn.example.com:443/";
    objects_t *o = objects_open(&cfg, &e);
    assert_non_null(o);
    assert_string_equal(objects_backend(o), "s3");
    arena_t a;
    arena_init(&a);
    const char *url = objects_presign_get(o, "p/1.jpg", 60, &a);
    assert_non_null(url);
    assert_true(starts_with(url, "https://cdn.example.com:443/bucket/p/1.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&"));
    assert_non_null(strstr(url, "%2Fus-east-1%2Fs3%2Faws4_request"));
    assert_null(objects_presign_get(o, "../etc/passwd", 60, &a));

    /* nobody listens: three attempts, then ERR_UNAVAILABLE naming the key */
    err_clear(&e);
    assert_false(objects_put(o, "p/1.jpg", "x", 1, NULL, &e));
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    assert_non_null(strstr(e.message, "p/1.jpg"));
    assert_non_null(strstr(e.message, "3 attempts"));
    bool exists = true;
    int64_t size = 0;
    assert_false(objects_head(o, "p/1.jpg", &exists, &size, &e));
    assert_false(exists);
    objects_close(o);
    arena_free(&a);
}

/* ---------------------------------------------------------------- a scripted S3 stand-in */

/* Answers each request with the next of `answers` (the last repeats), one connection each. */
typedef struct fake {
    int fd, port;
    pthread_t thread;
    const char *answers[8];
    int nanswers;
    _Atomic int requests;
    char first[8192];     /* the first request: headers and the start of the body */
    char lines[16][160];  /* the request line of each of the first 16 */
} fake_t;

/* Reads one request: its head and the start of its body into req (NUL-terminated), the rest of
 * the body (Content-Length) read and dropped. */
static void fake_read(int c, char *req, size_t cap)
{
    size_t n = 0;
    char *end = NULL;
    while (!end && n < cap - 1) {
        ssize_t r = read(c, req + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        req[n] = '\0';
        end = strstr(req, "\r\n\r\n");
    }
    if (!end)
        return;
    char *cl = strcasestr(req, "\r\ncontent-length:");
    size_t total = (size_t)(end + 4 - req) + (size_t)(cl && cl < end ? strtol(cl + 17, NULL, 10) : 0);
    while (n < total && n < cap - 1) { /* as much of the body as fits */
        size_t want = (total < cap - 1 ? total : cap - 1) - n;
        ssize_t r = read(c, req + n, want);
        if (r <= 0)
            return;
        n += (size_t)r;
        req[n] = '\0';
    }
    char drop[65536];
    while (n < total) {
        ssize_t r = read(c, drop, total - n < sizeof drop ? total - n : sizeof drop);
        if (r <= 0)
            return;
        n += (size_t)r;
    }
}

static void *fake_serve(void *arg)
{
    fake_t *f = arg;
    for (;;) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char req[8192];
        req[0] = '\0';
        fake_read(c, req, sizeof req);
        int i = atomic_load(&f->requests); /* one server thread: recorded, then counted */
        if (i == 0)
            memcpy(f->first, req, sizeof req);
        if (i < 16)
            snprintf(f->lines[i], sizeof f->lines[i], "%.*s", (int)strcspn(req, "\r"), req);
        atomic_store(&f->requests, i + 1);
        const char *a = f->answers[i < f->nanswers ? i : f->nanswers - 1];
        ssize_t w = write(c, a, strlen(a));
        (void)w;
        close(c);
    }
}

static void fake_start(fake_t *f)
{
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->fd, 16), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&sa, &len), 0);
    f->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(fake_t *f)
{
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->fd);
}

static objects_t *fake_store(fake_t *f, arena_t *a)
{
    config_t cfg;
    s3_config(&cfg, arena_printf(a, "http://127.0.0.1:%d/base/", f->port), "bucket");
    cfg.s3_access_key_id = "AKID";
    cfg.s3_secret_access_key = "secret";
    err_t e;
    err_clear(&e);
    objects_t *o = objects_open(&cfg, &e);
    assert_non_null(o);
    return o;
}

static const char *answer(arena_t *a, const char *status, const char *body)
{
    return arena_printf(a, "HTTP/1.1 %s\r\nContent-Type: application/xml\r\nConnection: close\r\n"
                           "Content-Length: %zu\r\n\r\n%s", status, strlen(body), body);
}

/* What a PUT sends: the path-style URL, the Host it signed, the body's SHA-256, no Expect; and a
 * 503 retried until it succeeds. */
static void s3_request_and_retries(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    fake_t f = {.nanswers = 3};
    f.answers[0] =
        answer(&a, "503 Slow Down", "<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>");
    f.answers[1] = f.answers[0];
    f.answers[2] = answer(&a, "200 OK", "");
    fake_start(&f);
    objects_t *o = fake_store(&f, &a);
    err_t e;
    err_clear(&e);
    if (!objects_put(o, "p/1.jpg", "hello world", 11, "image/jpeg", &e))
        fail_msg("put: %s", e.message);
    assert_int_equal(atomic_load(&f.requests), 3);
    char sha[65];
    sigv4_sha256_hex("hello world", 11, sha);
    assert_true(starts_with(f.first, "PUT /base/bucket/p/1.jpg HTTP/1.1\r\n"));
    assert_non_null(strstr(f.first, arena_printf(&a, "\r\nHost: 127.0.0.1:%d\r\n", f.port)));
    assert_non_null(strstr(f.first, arena_printf(&a, "\r\nx-amz-content-sha256: %s\r\n", sha)));
    assert_non_null(strstr(f.first, "\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKID/"));
    assert_non_null(strstr(f.first, "/us-east-1/s3/aws4_request, SignedHeaders=content-type;host;"
                                    "x-amz-content-sha256;x-amz-date, Signature="));
    assert_non_null(strstr(f.first, "\r\nContent-Type: image/jpeg\r\n"));
    assert_null(strcasestr(f.first, "\r\nExpect:"));
    assert_non_null(strstr(f.first, "\r\n\r\nhello world"));
    objects_close(o);
    fake_stop(&f);
    arena_free(&a);
}

/* Answers that are not 2xx: each becomes an err_t naming the key and what the server said. */
static void s3_error_answers(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    fake_t f = {.nanswers = 1};
    f.answers[0] = answer(&a, "503 Slow Down", "<Error><Code>SlowDown</Code></Error>");
    fake_start(&f);
    objects_t *o = fake_store(&f, &a);
    err_t e;
    err_clear(&e);
    assert_false(objects_put(o, "p/2.jpg", "x", 1, NULL, &e)); /* 5xx three times */
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    assert_int_equal(atomic_load(&f.requests), 3);
    assert_string_equal(e.message, "objects: put p/2.jpg: HTTP 503 SlowDown");

    f.answers[0] = answer(&a, "403 Forbidden", "<Error><Code>AccessDenied</Code><Message>Access &amp; Denied</Message>"
                                               "</Error>");
    atomic_store(&f.requests, 0);
    assert_false(objects_put(o, "p/3.jpg", "x", 1, NULL, &e)); /* 4xx: not retried */
    assert_int_equal(atomic_load(&f.requests), 1);
    assert_int_equal(e.code, ERR_INTERNAL);
    assert_string_equal(e.message, "objects: put p/3.jpg: HTTP 403 AccessDenied: Access & Denied");

    f.answers[0] = answer(&a, "404 Not Found", "<Error><Code>NoSuchKey</Code></Error>");
    buf_t b;
    buf_init(&b);
    assert_false(objects_get(o, "p/4.jpg", &b, &e));
    assert_int_equal(e.code, ERR_NOT_FOUND);
    assert_non_null(strstr(e.message, "p/4.jpg"));
    assert_int_equal(b.len, 0);
    assert_true(objects_delete(o, "p/4.jpg", &e)); /* not there: fine */

    f.answers[0] = answer(&a, "404 Not Found", "<Error><Code>NoSuchBucket</Code></Error>");
    assert_false(objects_put(o, "p/5.jpg", "x", 1, NULL, &e));
    assert_int_equal(e.code, ERR_INTERNAL);
    assert_non_null(strstr(e.message, "bucket bucket does not exist"));
    buf_free(&b);
    objects_close(o);
    fake_stop(&f);
    arena_free(&a);
}

/* ListObjectsV2 pages: keys XML-escaped, a continuation token followed, invalid keys skipped. */
static void s3_list_pages(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    fake_t f = {.nanswers = 2};
    f.answers[0] = answer(&a, "200 OK",
                          "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                          "<Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"
                          "<IsTruncated>true</IsTruncated><Contents><Key>p/a&#x2e;jpg</Key><Size>12</Size></Contents>"
                          "<Contents><Key>p/b &amp; c</Key><Size>1</Size></Contents>"
                          "<NextContinuationToken>tok/en+=</NextContinuationToken></ListBucketResult>");
    f.answers[1] = answer(&a, "200 OK",
                          "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>p/c/d</Key>"
                          "<LastModified>2024-01-01T00:00:00.000Z</LastModified><Size>345</Size></Contents>"
                          "</ListBucketResult>");
    fake_start(&f);
    objects_t *o = fake_store(&f, &a);
    err_t e;
    err_clear(&e);
    listing_t l = {0};
    if (!objects_list(o, "p/", collect, &l, &e))
        fail_msg("list: %s", e.message);
    assert_int_equal(atomic_load(&f.requests), 2);
    assert_int_equal(l.n, 2);
    assert_int_equal(listed_size(&l, "p/a.jpg"), 12);
    assert_int_equal(listed_size(&l, "p/c/d"), 345);
    listing_free(&l);
    assert_true(starts_with(f.first, "GET /base/bucket?list-type=2&max-keys=1000&prefix=p%2F HTTP/1.1\r\n"));

    /* a truncated page without a token would loop for ever: an error instead */
    atomic_store(&f.requests, 0);
    f.answers[0] = answer(&a, "200 OK", "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>");
    f.nanswers = 1;
    assert_false(objects_list(o, "p/", collect, &l, &e));
    assert_int_equal(e.code, ERR_INTERNAL);
    objects_close(o);
    fake_stop(&f);
    arena_free(&a);
}

/* A part that cannot be uploaded: the upload is aborted, and the error is the part's. */
static void s3_multipart_aborted(void **state)
{
    (void)state;
    arena_t a;
    arena_init(&a);
    fake_t f = {.nanswers = 5};
    f.answers[0] = answer(&a, "200 OK", "<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>big</Key>"
                                        "<UploadId>up/1+2</UploadId></InitiateMultipartUploadResult>");
    f.answers[1] = answer(&a, "500 Internal Error", "<Error><Code>InternalError</Code></Error>");
    f.answers[2] = f.answers[1];
    f.answers[3] = f.answers[1];
    f.answers[4] = answer(&a, "204 No Content", "");
    fake_start(&f);
    objects_t *o = fake_store(&f, &a);
    size_t n = OBJECTS_MULTIPART_MIN + 1;
    char *data = calloc(1, n);
    err_t e;
    err_clear(&e);
    assert_false(objects_put(o, "big", data, n, NULL, &e));
    assert_int_equal(e.code, ERR_UNAVAILABLE);
    assert_string_equal(e.message, "objects: multipart upload big: HTTP 500 InternalError");
    assert_int_equal(atomic_load(&f.requests), 5);
    assert_string_equal(f.lines[0], "POST /base/bucket/big?uploads= HTTP/1.1");
    assert_string_equal(f.lines[1], "PUT /base/bucket/big?partNumber=1&uploadId=up%2F1%2B2 HTTP/1.1");
    assert_string_equal(f.lines[3], f.lines[1]);
    assert_string_equal(f.lines[4], "DELETE /base/bucket/big?uploadId=up%2F1%2B2 HTTP/1.1");
    free(data);
    objects_close(o);
    fake_stop(&f);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fs_basics, fs_setup, teardown),
        cmocka_unit_test_setup_teardown(fs_put_file, fs_setup, teardown),
        cmocka_unit_test_setup_teardown(fs_list, fs_setup, teardown),
        cmocka_unit_test_setup_teardown(fs_bad_keys, fs_setup, teardown),
        cmocka_unit_test_setup_teardown(fs_layout_and_paths, fs_setup, teardown),
        cmocka_unit_test_setup_teardown(fs_stale_temp_files, fs_setup, teardown),
        cmocka_unit_test_setup_teardown(fs_atomic_replace, fs_setup, teardown),
        cmocka_unit_test(fs_open_errors),
        cmocka_unit_test(s3_configuration),
        cmocka_unit_test(s3_request_and_retries),
        cmocka_unit_test(s3_error_answers),
        cmocka_unit_test(s3_list_pages),
        cmocka_unit_test(s3_multipart_aborted),
        cmocka_unit_test_setup_teardown(s3_basics, s3_setup, teardown),
        cmocka_unit_test_setup_teardown(s3_put_file, s3_setup, teardown),
        cmocka_unit_test_setup_teardown(s3_list, s3_setup, teardown),
        cmocka_unit_test_setup_teardown(s3_bad_keys, s3_setup, teardown),
        cmocka_unit_test_setup_teardown(s3_multipart, s3_setup, teardown),
        cmocka_unit_test_setup_teardown(s3_presigned_get, s3_setup, teardown),
        cmocka_unit_test_setup_teardown(s3_missing_bucket, s3_setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
