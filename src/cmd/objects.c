/* objects: `hearth objects gc [--dry-run]` finds the objects nothing refers to and removes them:
 * an original (originals/...) without a positive count in object_refs, a photo's variant
 * (images/ID/...) whose image row is gone. Such orphans are what a crash leaves between a
 * transaction and the object store (an upload that failed after storing its bytes, a listing
 * deleted just before its photos' objects were released). Other keys are left alone and counted.
 * An original whose count row is 0 is removed in the same transaction as the row, as the
 * `image.delete_objects` job does, so an upload counting it meanwhile keeps it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/util.h"
#include "../domain/images.h"
#include "commands.h"

typedef struct gc {
    store_conn_t *c;
    objects_t *o;
    bool dry_run;
    int64_t scanned, removed, bytes, other, failed;
    char **keys;
    int64_t *sizes;
    size_t n, cap;
} gc_t;

static void collect(void *arg, const char *key, int64_t size)
{
    gc_t *g = arg;
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 1024;
        g->keys = realloc(g->keys, g->cap * sizeof *g->keys);
        g->sizes = realloc(g->sizes, g->cap * sizeof *g->sizes);
    }
    g->keys[g->n] = strdup(key);
    g->sizes[g->n++] = size;
}

/* Whether `key` is an orphan (*is), removed unless this is a dry run; an original's count row
 * (at 0) goes in the transaction that deletes its bytes. */
static bool orphan(gc_t *g, const char *key, bool *is_orphan, err_t *e)
{
    arena_t a;
    arena_init(&a);
    store_rows_t r;
    bool ok, is = false;
    *is_orphan = false;
    if (strncmp(key, "originals/", 10) == 0) {
        /* a count row at 0 is made for an original without one, so that the row is what an
         * upload counting it meanwhile waits on (its lock), as with the deletion job */
        const char *v[] = {key, store_num(&a, time_now_us())};
        ok = g->c->store->ops->begin(g->c, e);
        if (ok && g->dry_run) { /* an orphan is an original without a positive count */
            ok = store_query(g->c, "SELECT 1 FROM object_refs WHERE key = $1 AND refs > 0", 1, &key, &a, &r, e);
            is = ok && r.nrows == 0;
        } else if (ok) {
            ok = store_query(g->c,
                             "INSERT INTO object_refs (key, refs, size_bytes, created_at)"
                             " VALUES ($1, 0, 0, CAST($2 AS BIGINT)) ON CONFLICT (key) DO NOTHING",
                             2, v, &a, &r, e) &&
                 store_query(g->c, "DELETE FROM object_refs WHERE key = $1 AND refs <= 0 RETURNING key", 1, &key, &a,
                             &r, e);
            is = ok && r.nrows == 1;
        }
        if (ok && is && !g->dry_run)
            ok = objects_delete(g->o, key, e);
        ok = store_finish(g->c, ok, e);
    } else {
        long long id = 0;
        char rest[64];
        if (sscanf(key, "images/%lld/%63s", &id, rest) != 2 || id <= 0) {
            g->other++;
            arena_free(&a);
            return true;
        }
        const char *v[] = {store_num(&a, id)};
        ok = store_query(g->c, "SELECT 1 FROM images WHERE id = CAST($1 AS BIGINT)", 1, v, &a, &r, e);
        is = ok && r.nrows == 0;
        if (ok && is && !g->dry_run)
            ok = objects_delete(g->o, key, e);
    }
    *is_orphan = ok && is;
    arena_free(&a);
    return ok;
}

int cmd_objects(int argc, char **argv)
{
    bool dry_run = false;
    if (argc < 2 || strcmp(argv[1], "gc") != 0) {
        fprintf(stderr, "usage: hearth objects gc [--dry-run]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = true;
        } else {
            fprintf(stderr, "usage: hearth objects gc [--dry-run]\n");
            return 2;
        }
    }
    config_t cfg;
    if (!cmd_load_config(&cfg))
        return 2;
    store_t *s = cmd_open_store(&cfg);
    if (!s)
        return 1;
    err_t e;
    err_clear(&e);
    gc_t g = {.dry_run = dry_run};
    int status = 1;
    if (!(g.o = objects_open(&cfg, &e)) || !(g.c = s->ops->acquire(s, 5000, &e))) {
        fprintf(stderr, "hearth objects gc: %s\n", e.message);
        goto done;
    }
    if (!objects_list(g.o, "", collect, &g, &e)) {
        fprintf(stderr, "hearth objects gc: listing the store: %s\n", e.message);
        goto done;
    }
    for (size_t i = 0; i < g.n; i++) {
        bool is;
        err_clear(&e);
        g.scanned++;
        if (!orphan(&g, g.keys[i], &is, &e)) {
            fprintf(stderr, "hearth objects gc: %s: %s\n", g.keys[i], e.message);
            g.failed++;
            continue;
        }
        if (is) {
            g.removed++;
            g.bytes += g.sizes[i];
            printf("%s %s (%lld bytes)\n", dry_run ? "orphan" : "removed", g.keys[i], (long long)g.sizes[i]);
        }
    }
    printf("objects gc: %lld object(s) looked at, %lld orphan(s) %s (%lld bytes), %lld not hearth's, %lld failed\n",
           (long long)g.scanned, (long long)g.removed, dry_run ? "found, none removed (dry run)" : "removed",
           (long long)g.bytes, (long long)g.other, (long long)g.failed);
    status = g.failed ? 1 : 0;
done:
    for (size_t i = 0; i < g.n; i++)
        free(g.keys[i]);
    free(g.keys);
    free(g.sizes);
    if (g.c)
        s->ops->release(s, g.c);
    objects_close(g.o);
    s->ops->close(s);
    return status;
}
