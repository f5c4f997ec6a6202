/* imageindex: see imageindex.h. One table of the indexed images (id, listing, hash, embedding) in
 * arrays addressed through an open-addressing map from id to slot; the BK-tree and the HNSW graph
 * hold ids. A removed image leaves its slot marked dead (the map forgets it); the graph skips ids
 * the map does not know. The table is rebuilt from the database at start (a thousand images read
 * per statement), the graph loaded from its file when that file knows the same images. */
#include "imageindex.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../infra/bktree.h"
#include "../infra/hnsw.h"
#include "imageproc.h"

#define SYNC_EVERY_US 200000
#define SYNC_BATCH 1000
/* processed_at is stamped before its transaction commits, and transactions commit out of order: a
 * sync reads again this far behind the last time it read, and skips the images it has */
#define SYNC_LOOKBACK_US 60000000
#define SAVE_EVERY 1000     /* images added between saves of the graph */
#define EXACT_SHARE 0.05    /* a filter keeping less than this share of the images: exact scan */
#define HNSW_M 16
#define HNSW_EF_BUILD 200
#define HNSW_EF_SEARCH 64

static struct {
    pthread_rwlock_t lock; /* the table and the tree; the graph locks itself */
    pthread_mutex_t sync_mu;
    bool open;
    char path[1200];   /* the graph's file */
    int64_t *ids, *props;
    uint64_t *hashes;
    float *vecs;       /* IMAGEPROC_DIM per slot */
    bool *dead;
    size_t n, cap, live;
    int64_t *map_keys; /* id -> slot + 1 (0: empty), open addressing, power-of-two size */
    size_t *map_vals, map_cap;
    bktree_t *tree;
    hnsw_t *graph;
    int64_t synced_at, synced_id; /* the last (processed_at, id) read */
    int64_t graph_at, graph_id;   /* the loaded graph holds every image up to this (processed_at, id) */
    int64_t last_sync_us;
    _Atomic size_t unsaved; /* added to the graph since its last save */
} ix = {.lock = PTHREAD_RWLOCK_INITIALIZER, .sync_mu = PTHREAD_MUTEX_INITIALIZER};

static size_t map_slot(int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (ix.map_cap - 1);
}

static size_t *map_find(int64_t id)
{
    if (!ix.map_cap)
        return NULL;
    for (size_t i = map_slot(id);; i = (i + 1) & (ix.map_cap - 1)) {
        if (ix.map_vals[i] == 0)
            return NULL;
        if (ix.map_keys[i] == id)
            return &ix.map_vals[i];
    }
}

static void map_put(int64_t id, size_t slot);

static void map_grow(void)
{
    int64_t *keys = ix.map_keys;
    size_t *vals = ix.map_vals, cap = ix.map_cap;
    ix.map_cap = cap ? cap * 2 : 1024;
    ix.map_keys = calloc(ix.map_cap, sizeof *ix.map_keys);
    ix.map_vals = calloc(ix.map_cap, sizeof *ix.map_vals);
    for (size_t i = 0; i < cap; i++)
        if (vals[i])
            map_put(keys[i], vals[i] - 1);
    free(keys);
    free(vals);
}

static void map_put(int64_t id, size_t slot)
{
    if ((ix.live + 1) * 2 > ix.map_cap)
        map_grow();
    size_t i = map_slot(id);
    while (ix.map_vals[i] && ix.map_keys[i] != id)
        i = (i + 1) & (ix.map_cap - 1);
    ix.map_keys[i] = id;
    ix.map_vals[i] = slot + 1;
}

/* Removal with backward shifting, so that no tombstones accumulate. */
static void map_del(int64_t id)
{
    size_t *v = map_find(id);
    if (!v)
        return;
    size_t i = (size_t)(v - ix.map_vals);
    ix.map_vals[i] = 0;
    for (size_t j = (i + 1) & (ix.map_cap - 1); ix.map_vals[j]; j = (j + 1) & (ix.map_cap - 1)) {
        size_t home = map_slot(ix.map_keys[j]);
        /* j's entry may move to i when i lies cyclically in [home, j) */
        bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            ix.map_keys[i] = ix.map_keys[j];
            ix.map_vals[i] = ix.map_vals[j];
            ix.map_vals[j] = 0;
            i = j;
        }
    }
}

static const float *vec_of(size_t slot) { return ix.vecs + slot * IMAGEPROC_DIM; }

/* Under the write lock. */
static void table_add(int64_t id, int64_t prop, uint64_t hash, const float *v)
{
    size_t *known = map_find(id);
    if (known) { /* processed again: the new features replace the old */
        size_t s = *known - 1;
        bktree_remove(ix.tree, ix.hashes[s], id);
        ix.dead[s] = true;
        map_del(id);
        ix.live--;
    }
    if (ix.n == ix.cap) {
        ix.cap = ix.cap ? ix.cap * 2 : 1024;
        ix.ids = realloc(ix.ids, ix.cap * sizeof *ix.ids);
        ix.props = realloc(ix.props, ix.cap * sizeof *ix.props);
        ix.hashes = realloc(ix.hashes, ix.cap * sizeof *ix.hashes);
        ix.dead = realloc(ix.dead, ix.cap * sizeof *ix.dead);
        ix.vecs = realloc(ix.vecs, ix.cap * IMAGEPROC_DIM * sizeof *ix.vecs);
    }
    size_t s = ix.n++;
    ix.ids[s] = id;
    ix.props[s] = prop;
    ix.hashes[s] = hash;
    ix.dead[s] = false;
    memcpy(ix.vecs + s * IMAGEPROC_DIM, v, IMAGEPROC_DIM * sizeof *v);
    map_put(id, s);
    ix.live++;
    bktree_add(ix.tree, hash, id);
}

bool imageindex_open(const char *data_dir, err_t *e)
{
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/index", data_dir);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return err_set(e, ERR_INTERNAL, "cannot create %s: %s", dir, strerror(errno));
    snprintf(ix.path, sizeof ix.path, "%s/images.hnsw", dir);
    ix.tree = bktree_new();
    err_t le;
    err_clear(&le);
    struct stat st;
    if (stat(ix.path, &st) == 0 && !(ix.graph = hnsw_load(ix.path, &le)))
        log_warn("image index: %s; rebuilding it from the database", le.message);
    if (ix.graph && hnsw_dim(ix.graph) != IMAGEPROC_DIM) {
        hnsw_free(ix.graph);
        ix.graph = NULL;
    }
    char mark[1220];
    snprintf(mark, sizeof mark, "%s.mark", ix.path);
    FILE *f = ix.graph ? fopen(mark, "r") : NULL;
    long long at = 0, id = 0;
    if (f && fscanf(f, "%lld %lld", &at, &id) == 2) {
        ix.graph_at = at;
        ix.graph_id = id;
    }
    if (f)
        fclose(f);
    ix.open = true;
    return true;
}

/* The graph, and beside it the last image it is known to hold every image up to. */
static void save_graph(void)
{
    err_t e;
    err_clear(&e);
    ix.unsaved = 0;
    if (!ix.graph)
        return;
    if (!hnsw_save(ix.graph, ix.path, &e)) {
        log_warn("image index: saving %s failed: %s", ix.path, e.message);
        return;
    }
    char mark[1220], tmp[1230];
    snprintf(mark, sizeof mark, "%s.mark", ix.path);
    snprintf(tmp, sizeof tmp, "%s.tmp", mark);
    FILE *f = fopen(tmp, "w");
    /* what the graph surely holds: every image up to the lookback behind the last sync */
    long long at = ix.synced_at > SYNC_LOOKBACK_US ? ix.synced_at - SYNC_LOOKBACK_US : 0;
    if (f && fprintf(f, "%lld 0\n", at) > 0 && fclose(f) == 0)
        rename(tmp, mark);
    else if (f)
        fclose(f);
}

void imageindex_close(void)
{
    if (!ix.open)
        return;
    pthread_rwlock_wrlock(&ix.lock);
    save_graph();
    hnsw_free(ix.graph);
    bktree_free(ix.tree);
    free(ix.ids);
    free(ix.props);
    free(ix.hashes);
    free(ix.dead);
    free(ix.vecs);
    free(ix.map_keys);
    free(ix.map_vals);
    ix.ids = ix.props = ix.map_keys = NULL;
    ix.hashes = NULL;
    ix.vecs = NULL;
    ix.dead = NULL;
    ix.map_vals = NULL;
    ix.n = ix.cap = ix.live = ix.map_cap = 0;
    ix.graph = NULL;
    ix.tree = NULL;
    ix.open = false;
    ix.synced_at = ix.synced_id = ix.last_sync_us = 0;
    pthread_rwlock_unlock(&ix.lock);
}

/* `fresh`: only when the table does not have the image yet (a sync reading again behind its
 * cursor). Returns whether the graph is due to be saved: the caller saves it holding sync_mu (the
 * mark is the sync's) and not the table's lock (the graph locks itself). */
static bool add(int64_t id, int64_t property_id, uint64_t phash, const float *embedding, bool to_graph, bool fresh)
{
    pthread_rwlock_wrlock(&ix.lock);
    if (!ix.open || (fresh && map_find(id))) {
        pthread_rwlock_unlock(&ix.lock);
        return false;
    }
    table_add(id, property_id, phash, embedding);
    bool save = false;
    if (to_graph) {
        if (!ix.graph)
            ix.graph = hnsw_new(IMAGEPROC_DIM, HNSW_M, HNSW_EF_BUILD, 42);
        hnsw_add(ix.graph, id, embedding);
        save = ++ix.unsaved >= SAVE_EVERY;
    }
    pthread_rwlock_unlock(&ix.lock);
    return save;
}

void imageindex_add(int64_t id, int64_t property_id, uint64_t phash, const float *embedding)
{
    if (!add(id, property_id, phash, embedding, true, false))
        return;
    pthread_mutex_lock(&ix.sync_mu);
    save_graph();
    pthread_mutex_unlock(&ix.sync_mu);
}

void imageindex_remove(int64_t id)
{
    pthread_rwlock_wrlock(&ix.lock);
    size_t *v = ix.open ? map_find(id) : NULL;
    if (v) {
        size_t s = *v - 1;
        bktree_remove(ix.tree, ix.hashes[s], id);
        ix.dead[s] = true;
        map_del(id);
        ix.live--;
        hnsw_remove(ix.graph, id);
    }
    pthread_rwlock_unlock(&ix.lock);
}

size_t imageindex_count(void)
{
    pthread_rwlock_rdlock(&ix.lock);
    size_t n = ix.live;
    pthread_rwlock_unlock(&ix.lock);
    return n;
}

bool imageindex_sync(store_conn_t *c, bool force, err_t *e)
{
    pthread_mutex_lock(&ix.sync_mu);
    int64_t now = time_now_us();
    if (!ix.open || (!force && now - ix.last_sync_us < SYNC_EVERY_US)) {
        pthread_mutex_unlock(&ix.sync_mu);
        return true;
    }
    bool ok = true;
    arena_t a;
    arena_init(&a);
    int64_t from_at = ix.synced_at > SYNC_LOOKBACK_US ? ix.synced_at - SYNC_LOOKBACK_US : 0, from_id = 0;
    bool save = false;
    for (;;) {
        arena_reset(&a);
        const char *v[] = {store_num(&a, from_at), store_num(&a, from_id)};
        store_rows_t r;
        ok = store_query(c,
                         "SELECT id, property_id, phash, embedding, processed_at FROM images"
                         " WHERE processed_at IS NOT NULL AND status = 'ready' AND (processed_at > CAST($1 AS BIGINT)"
                         " OR (processed_at = CAST($1 AS BIGINT) AND id > CAST($2 AS BIGINT)))"
                         " ORDER BY processed_at, id LIMIT 1000",
                         2, v, &a, &r, e);
        if (!ok)
            break;
        for (int i = 0; i < r.nrows; i++) {
            int64_t at = store_cell_i64(&r, i, 4), id = store_cell_i64(&r, i, 0);
            from_at = at;
            from_id = id;
            if (at > ix.synced_at || (at == ix.synced_at && id > ix.synced_id)) {
                ix.synced_at = at;
                ix.synced_id = id;
            }
            float vec[IMAGEPROC_DIM];
            if (!imageindex_embedding_decode(store_cell(&r, i, 3), vec))
                continue; /* not an embedding this build reads */
            /* the graph from the file holds the images up to its mark already */
            bool known = at < ix.graph_at || (at == ix.graph_at && id <= ix.graph_id);
            save |= add(id, store_cell_i64(&r, i, 1), (uint64_t)store_cell_i64(&r, i, 2), vec, !known, true);
        }
        if (r.nrows < SYNC_BATCH)
            break;
    }
    arena_free(&a);
    if (ok)
        ix.last_sync_us = now;
    if (save)
        save_graph();
    pthread_mutex_unlock(&ix.sync_mu);
    return ok;
}

typedef struct dup_arg {
    int64_t self;
    image_features_t probe, cand;
    imageindex_hit_t *out;
    int n, max;
} dup_arg_t;

static void dup_candidate(void *arg, int64_t id, uint64_t hash, int dist)
{
    dup_arg_t *d = arg;
    size_t *v = map_find(id);
    if (id == d->self || !v || d->n == d->max)
        return;
    size_t s = *v - 1;
    d->cand.phash = hash;
    memcpy(d->cand.embedding, vec_of(s), sizeof d->cand.embedding);
    if (!imageproc_near_duplicate(&d->probe, &d->cand))
        return;
    d->out[d->n++] = (imageindex_hit_t){.id = id, .property_id = ix.props[s], .distance = dist,
                                        .similarity = imageproc_similarity(d->probe.embedding, d->cand.embedding)};
}

int imageindex_duplicates(int64_t self, uint64_t phash, const float *embedding, imageindex_hit_t *out, int max)
{
    dup_arg_t *d = calloc(1, sizeof *d);
    d->self = self;
    d->probe.phash = phash;
    memcpy(d->probe.embedding, embedding, sizeof d->probe.embedding);
    d->out = out;
    d->max = max;
    pthread_rwlock_rdlock(&ix.lock);
    if (ix.open)
        bktree_query(ix.tree, phash, IMAGEPROC_DUP_RADIUS, dup_candidate, d);
    pthread_rwlock_unlock(&ix.lock);
    int n = d->n;
    free(d);
    return n;
}

typedef struct filter {
    const int64_t *props; /* sorted */
    int nprops;
    int64_t exclude;
} filter_t;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static bool allowed(const filter_t *f, size_t slot)
{
    if (ix.ids[slot] == f->exclude || ix.dead[slot])
        return false;
    if (f->nprops < 0)
        return true;
    return f->nprops > 0 && bsearch(&ix.props[slot], f->props, (size_t)f->nprops, sizeof *f->props, cmp_i64);
}

static bool accept_id(void *arg, int64_t id)
{
    size_t *v = map_find(id);
    return v && allowed(arg, *v - 1);
}

/* Exact: every allowed image compared, the k best kept by insertion into a sorted array. */
static int scan(const float *q, int k, const filter_t *f, imageindex_hit_t *out)
{
    int n = 0;
    for (size_t s = 0; s < ix.n; s++) {
        if (!allowed(f, s))
            continue;
        float sim = imageproc_similarity(q, vec_of(s));
        if (n == k && sim <= out[k - 1].similarity)
            continue;
        int i = n < k ? n++ : k - 1;
        while (i > 0 && out[i - 1].similarity < sim) {
            out[i] = out[i - 1];
            i--;
        }
        out[i] = (imageindex_hit_t){.id = ix.ids[s], .property_id = ix.props[s], .similarity = sim};
    }
    return n;
}

int imageindex_similar(const float *q, int k, int64_t exclude, const int64_t *props, int nprops, imageindex_hit_t *out)
{
    if (k <= 0)
        return 0;
    int64_t *sorted = NULL;
    if (nprops > 0) {
        sorted = malloc((size_t)nprops * sizeof *sorted);
        memcpy(sorted, props, (size_t)nprops * sizeof *sorted);
        qsort(sorted, (size_t)nprops, sizeof *sorted, cmp_i64);
    }
    filter_t f = {.props = sorted, .nprops = nprops, .exclude = exclude};
    int n = 0;
    pthread_rwlock_rdlock(&ix.lock);
    if (ix.open && ix.live > 0) {
        bool selective = nprops >= 0 && (double)nprops < EXACT_SHARE * (double)ix.live;
        if (selective || !ix.graph) {
            n = scan(q, k, &f, out);
        } else {
            int64_t *ids = malloc((size_t)k * sizeof *ids);
            float *sims = malloc((size_t)k * sizeof *sims);
            n = hnsw_search(ix.graph, q, k, k > HNSW_EF_SEARCH ? k : HNSW_EF_SEARCH, accept_id, &f, ids, sims);
            for (int i = 0; i < n; i++) {
                size_t *v = map_find(ids[i]);
                out[i] = (imageindex_hit_t){.id = ids[i], .property_id = v ? ix.props[*v - 1] : 0, .similarity = sims[i]};
            }
            free(ids);
            free(sims);
        }
    }
    pthread_rwlock_unlock(&ix.lock);
    free(sorted);
    return n;
}

void imageindex_embedding_encode(const float *v, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = (const unsigned char *)v; /* little-endian hosts only (x86-64, arm64) */
    for (size_t i = 0; i < IMAGEPROC_DIM * sizeof(float); i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * IMAGEPROC_DIM * sizeof(float)] = '\0';
}

static int nibble(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool imageindex_embedding_decode(const char *s, float *v)
{
    if (!s || strlen(s) != 2 * IMAGEPROC_DIM * sizeof(float))
        return false;
    unsigned char *b = (unsigned char *)v;
    for (size_t i = 0; i < IMAGEPROC_DIM * sizeof(float); i++) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}
