/* hnsw: see hnsw.h. Hierarchical Navigable Small World graphs (Malkov & Yashunin, "Efficient and
 * robust approximate nearest neighbor search using HNSW graphs", 2016/2018) for cosine similarity.
 * Written here because Debian has no ANN library with a C API (hnswlib is C++ headers; faiss's
 * static library lacks its C API); pgvector serves the PostgreSQL backend.
 *
 * The one idea: every vector is stored L2-normalised, so similarity is a dot product, and the
 * graph is the paper's: a node draws its top layer from a seeded RNG (floor(-ln U / ln M)), is
 * found by a search with ef_construction candidates on each of its layers and linked to
 * neighbours picked by the paper's heuristic (algorithm 4: a candidate is kept if it is closer to
 * the new node than to every neighbour kept so far, and, keepPrunedConnections, the list is
 * filled up with the best of the others), at most M links per node on the upper layers and
 * M0 = 2M on layer 0; a neighbour whose list overflows is pruned with the same heuristic. As in
 * pgvector, a new node takes up to M0 neighbours on layer 0 (hnswlib takes M, without filling):
 * the denser layer 0 gains recall at a given ef (0.96 against 0.93 at ef=40 in bench/hnsw.sh)
 * for about twice the build time, at about the same queries/s for a given recall. A search
 * descends greedily through the upper layers and runs a best-first search with a candidate list
 * of ef on layer 0.
 *
 * Deleted nodes keep their vector and links and go on routing; they are never results. A search
 * counts as results only live nodes that `accept` takes, and it keeps expanding until its list
 * holds ef of them (ef >= k). The exact-scan rule: when the layer-0 search ends with fewer than ef
 * such nodes -- the reachable graph ran out, or it evaluated more than max(nodes / 4, 256)
 * vectors without filling the list (a selective filter, many deletions, ef above the live count)
 * -- the answer is instead an exact scan over every live accepted vector. So a search the graph
 * cannot serve is answered exactly, and no search returns fewer than min(k, live accepted).
 *
 * Storage: vectors in one contiguous, 64-byte aligned array (a row of `stride` floats per node);
 * layer-0 links in one flat array of (1 + M0) uint32 per node (count, then node indices); upper
 * layers in one small array per node that has them. Ids map to node indices through an
 * open-addressing table. Scratch state (a visited set by generation counter, the two heaps) lives
 * in per-index pooled blocks, one per search in flight, so concurrent searches share nothing but
 * the read lock. The index owns everything it allocates; hnsw_free releases it.
 *
 * File format (version 1, little-endian):
 *   "HRTHHNSW"  u32 version  u32 dim  u32 M  u32 ef_construction  u64 rng state
 *   u32 nodes  u32 live  u32 entry (0xffffffff when empty)  u32 top level          (48 bytes)
 *   nodes x { i64 id, u8 level, u8 deleted }
 *   nodes x dim f32 (normalised)
 *   nodes x levels 0..level x { u32 count, count x u32 node }
 *   u64 FNV-1a (64-bit) of every byte before it (zlib's CRC-32 is not linked; FNV is a loop)
 * A load checks every count and index against the header and the file size before it allocates or
 * uses them, so a damaged or hostile file is an error, never an out-of-bounds access. */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include "hnsw.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HNSW_MAX_DIM 65536
#define HNSW_MAX_M 128 /* M0 = 2M: a layer-0 list fits the stack */
#define HNSW_MAX_EFC 65536
#define HNSW_MAX_LEVEL 31
#define HNSW_MAX_NODES (UINT32_MAX - 1)
#define HNSW_NONE UINT32_MAX
#define HNSW_MIN_BUDGET 256 /* evaluations a search may spend before the exact-scan rule applies */

#define FILE_MAGIC "HRTHHNSW"
#define FILE_VERSION 1u
#define FILE_HEADER 48
#define FILE_NODE 10 /* i64 id, u8 level, u8 deleted */
#define IO_BUF (1u << 16)

typedef struct cand {
    float sim;
    uint32_t node;
} cand_t;

/* A binary max-heap on `sim`. The result heap stores -sim so that its top is the worst result. */
typedef struct heap {
    cand_t *a;
    uint32_t n, cap;
} heap_t;

/* One search's (or one insertion's) working memory; pooled by the index, used by one thread at a
 * time. */
typedef struct scratch {
    struct scratch *next;
    uint16_t *marks; /* visited when marks[node] == gen */
    uint32_t nmarks;
    uint16_t gen;
    heap_t cand;     /* candidates, best first; capacity >= nodes */
    heap_t res;      /* results, worst first (key -sim) */
    cand_t *tmp;     /* sorted results, the next layer's entry points */
    uint32_t ntmp;
    float *q;        /* the normalised query */
} scratch_t;

typedef struct filter {
    bool (*accept)(void *arg, int64_t id);
    void *arg;
} filter_t;

typedef float (*dot_fn)(const float *a, const float *b, int n);

struct hnsw {
    pthread_rwlock_t lock; /* searches and saves shared; add and remove exclusive */
    int dim, m, m0, efc;
    double ml; /* 1 / ln M */
    uint64_t rng;
    dot_fn dot;

    uint32_t n, cap, live; /* nodes (deleted ones too), allocated slots, live nodes */
    size_t stride;         /* floats per row of vecs: dim rounded up to 16 */
    float *vecs;
    int64_t *ids;
    uint8_t *level;
    uint8_t *deleted;
    uint32_t *links0; /* cap x (1 + m0) */
    uint32_t **upper; /* cap; level x (1 + m) for nodes above layer 0, else NULL */
    uint32_t entry;   /* a node on the top layer, or HNSW_NONE */
    int top;          /* the top layer */

    int64_t *map_keys; /* id -> live node: linear probing, HNSW_NONE marks an empty slot */
    uint32_t *map_vals;
    size_t map_cap; /* a power of two, or 0 */

    pthread_mutex_t pool_lock;
    scratch_t *pool;
};

/* ------------------------------------------------------------------ dot product */

/* Four 8-wide accumulators in GCC/Clang vector extensions: SSE2 on a baseline x86-64 build, NEON
 * on arm64, AVX2 + FMA in the clone below when the CPU has them. The summation order is fixed, so a
 * given machine always gives the same similarity for the same pair. */
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias)); /* any float pointer */

static inline __attribute__((always_inline)) float dot_body(const float *restrict a, const float *restrict b, int n)
{
    v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 += *(const v8f_u *)(a + i) * *(const v8f_u *)(b + i);
        s1 += *(const v8f_u *)(a + i + 8) * *(const v8f_u *)(b + i + 8);
        s2 += *(const v8f_u *)(a + i + 16) * *(const v8f_u *)(b + i + 16);
        s3 += *(const v8f_u *)(a + i + 24) * *(const v8f_u *)(b + i + 24);
    }
    for (; i + 8 <= n; i += 8)
        s0 += *(const v8f_u *)(a + i) * *(const v8f_u *)(b + i);
    v8f s = (s0 + s1) + (s2 + s3);
    float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

static float dot_generic(const float *a, const float *b, int n) { return dot_body(a, b, n); }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n)
{
    return dot_body(a, b, n);
}
#endif

static dot_fn dot_pick(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return dot_avx2;
#endif
    return dot_generic;
}

/* ------------------------------------------------------------------ small helpers */

static inline const float *vec_of(const hnsw_t *h, uint32_t node) { return h->vecs + (size_t)node * h->stride; }

static inline uint32_t *links_of(const hnsw_t *h, uint32_t node, int lc)
{
    if (lc == 0)
        return h->links0 + (size_t)node * (size_t)(1 + h->m0);
    return h->upper[node] + (size_t)(lc - 1) * (size_t)(1 + h->m);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* floor(-ln U * mL) with U uniform in (0, 1]: the paper's exponentially decaying layer. */
static int random_level(hnsw_t *h)
{
    double u = (double)((splitmix64(&h->rng) >> 11) + 1) * 0x1.0p-53;
    double l = -log(u) * h->ml;
    return l >= HNSW_MAX_LEVEL ? HNSW_MAX_LEVEL : (int)l;
}

/* 1 / |v|, or 0 when v is zero or not finite. */
static float inv_norm(const float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    if (!(s > 0) || !isfinite(s))
        return 0;
    return (float)(1.0 / sqrt(s));
}

static void heap_push(heap_t *hp, float key, uint32_t node)
{
    uint32_t i = hp->n++;
    while (i) {
        uint32_t p = (i - 1) / 2;
        if (hp->a[p].sim >= key)
            break;
        hp->a[i] = hp->a[p];
        i = p;
    }
    hp->a[i] = (cand_t){key, node};
}

static void heap_sift_down(heap_t *hp, cand_t x)
{
    uint32_t i = 0, n = hp->n;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && hp->a[c + 1].sim > hp->a[c].sim)
            c++;
        if (x.sim >= hp->a[c].sim)
            break;
        hp->a[i] = hp->a[c];
        i = c;
    }
    hp->a[i] = x;
}

static cand_t heap_pop(heap_t *hp)
{
    cand_t top = hp->a[0];
    cand_t last = hp->a[--hp->n];
    if (hp->n)
        heap_sift_down(hp, last);
    return top;
}

static void heap_replace_top(heap_t *hp, float key, uint32_t node) { heap_sift_down(hp, (cand_t){key, node}); }

/* Empties the result heap into out[], best first; returns how many. */
static uint32_t results_sorted(heap_t *res, cand_t *out)
{
    uint32_t n = res->n;
    for (uint32_t i = n; i-- > 0;) {
        cand_t c = heap_pop(res);
        out[i] = (cand_t){-c.sim, c.node};
    }
    return n;
}

static int cand_cmp_desc(const void *pa, const void *pb)
{
    const cand_t *a = pa, *b = pb;
    if (a->sim != b->sim)
        return a->sim > b->sim ? -1 : 1;
    return (a->node > b->node) - (a->node < b->node);
}

/* ------------------------------------------------------------------ id map */

static inline size_t map_slot(int64_t id, size_t mask)
{
    uint64_t z = (uint64_t)id;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (size_t)(z ^ (z >> 31)) & mask;
}

static uint32_t map_find(const hnsw_t *h, int64_t id)
{
    if (!h->map_cap)
        return HNSW_NONE;
    size_t mask = h->map_cap - 1;
    for (size_t i = map_slot(id, mask);; i = (i + 1) & mask) {
        if (h->map_vals[i] == HNSW_NONE)
            return HNSW_NONE;
        if (h->map_keys[i] == id)
            return h->map_vals[i];
    }
}

/* Sets id -> node; room must have been reserved. */
static void map_set(hnsw_t *h, int64_t id, uint32_t node)
{
    size_t mask = h->map_cap - 1;
    size_t i = map_slot(id, mask);
    while (h->map_vals[i] != HNSW_NONE && h->map_keys[i] != id)
        i = (i + 1) & mask;
    h->map_keys[i] = id;
    h->map_vals[i] = node;
}

/* Removes id (there); backward-shift deletion keeps every probe chain unbroken. */
static void map_del(hnsw_t *h, int64_t id)
{
    size_t mask = h->map_cap - 1;
    size_t i = map_slot(id, mask);
    while (h->map_keys[i] != id || h->map_vals[i] == HNSW_NONE)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        if (h->map_vals[j] == HNSW_NONE)
            break;
        size_t home = map_slot(h->map_keys[j], mask);
        /* j's entry may move to the hole at i unless its home lies cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            h->map_keys[i] = h->map_keys[j];
            h->map_vals[i] = h->map_vals[j];
            i = j;
        }
    }
    h->map_vals[i] = HNSW_NONE;
}

/* Room for `count` ids at a load of at most one half. */
static bool map_reserve(hnsw_t *h, size_t count)
{
    if (count * 2 <= h->map_cap)
        return true;
    size_t cap = h->map_cap ? h->map_cap : 16;
    while (cap < count * 2)
        cap *= 2;
    int64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return false;
    }
    memset(vals, 0xff, cap * sizeof *vals);
    int64_t *old_keys = h->map_keys;
    uint32_t *old_vals = h->map_vals;
    size_t old_cap = h->map_cap;
    h->map_keys = keys;
    h->map_vals = vals;
    h->map_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old_vals[i] != HNSW_NONE)
            map_set(h, old_keys[i], old_vals[i]);
    free(old_keys);
    free(old_vals);
    return true;
}

/* ------------------------------------------------------------------ node storage */

/* Room for `need` nodes. On failure nothing the index uses has changed. */
static bool nodes_reserve(hnsw_t *h, uint32_t need)
{
    if (need <= h->cap)
        return true;
    if (need > HNSW_MAX_NODES)
        return false;
    uint64_t want = h->cap ? (uint64_t)h->cap * 2 : 16;
    if (want < need)
        want = need;
    if (want > HNSW_MAX_NODES)
        want = HNSW_MAX_NODES;
    uint32_t cap = (uint32_t)want;

    void *vecs = NULL;
    if (posix_memalign(&vecs, 64, (size_t)cap * h->stride * sizeof(float)) != 0)
        return false;
    /* each realloc leaves the old block valid until it succeeds; a grown block is harmless */
    int64_t *ids = realloc(h->ids, (size_t)cap * sizeof *ids);
    if (ids)
        h->ids = ids;
    uint8_t *level = ids ? realloc(h->level, cap) : NULL;
    if (level)
        h->level = level;
    uint8_t *deleted = level ? realloc(h->deleted, cap) : NULL;
    if (deleted)
        h->deleted = deleted;
    uint32_t *links0 = deleted ? realloc(h->links0, (size_t)cap * (size_t)(1 + h->m0) * sizeof *links0) : NULL;
    if (links0)
        h->links0 = links0;
    uint32_t **upper = links0 ? realloc(h->upper, (size_t)cap * sizeof *upper) : NULL;
    if (!upper) {
        free(vecs);
        return false;
    }
    h->upper = upper;
    if (h->n)
        memcpy(vecs, h->vecs, (size_t)h->n * h->stride * sizeof(float));
    free(h->vecs);
    h->vecs = vecs;
    h->cap = cap;
    return true;
}

static hnsw_t *hnsw_alloc(int dim, int m, int ef_construction, uint64_t seed)
{
    hnsw_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0) {
        free(h);
        return NULL;
    }
#ifdef __GLIBC__
    /* glibc's default lets a steady stream of searches starve an add */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    int rc = pthread_rwlock_init(&h->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0) {
        free(h);
        return NULL;
    }
    if (pthread_mutex_init(&h->pool_lock, NULL) != 0) {
        pthread_rwlock_destroy(&h->lock);
        free(h);
        return NULL;
    }
    h->dim = dim;
    h->m = m;
    h->m0 = 2 * m;
    h->efc = ef_construction < m ? m : ef_construction;
    h->ml = 1.0 / log((double)m);
    h->rng = seed;
    h->dot = dot_pick();
    h->stride = ((size_t)dim + 15) & ~(size_t)15;
    h->entry = HNSW_NONE;
    return h;
}

hnsw_t *hnsw_new(int dim, int m, int ef_construction, uint64_t seed)
{
    if (dim < 1 || dim > HNSW_MAX_DIM || m < 2 || m > HNSW_MAX_M || ef_construction < 1 ||
        ef_construction > HNSW_MAX_EFC)
        return NULL;
    return hnsw_alloc(dim, m, ef_construction, seed);
}

static void scratch_free(scratch_t *s)
{
    free(s->marks);
    free(s->cand.a);
    free(s->res.a);
    free(s->tmp);
    free(s->q);
    free(s);
}

void hnsw_free(hnsw_t *h)
{
    if (!h)
        return;
    for (scratch_t *s = h->pool, *next; s; s = next) {
        next = s->next;
        scratch_free(s);
    }
    if (h->upper)
        for (uint32_t i = 0; i < h->n; i++)
            free(h->upper[i]);
    free(h->upper);
    free(h->links0);
    free(h->vecs);
    free(h->ids);
    free(h->level);
    free(h->deleted);
    free(h->map_keys);
    free(h->map_vals);
    pthread_mutex_destroy(&h->pool_lock);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

int hnsw_dim(const hnsw_t *h) { return h->dim; }

size_t hnsw_count(const hnsw_t *h)
{
    hnsw_t *w = (hnsw_t *)h; /* the lock is the only thing touched */
    pthread_rwlock_rdlock(&w->lock);
    size_t n = h->live;
    pthread_rwlock_unlock(&w->lock);
    return n;
}

/* ------------------------------------------------------------------ scratch pool */

static bool cands_reserve(cand_t **a, uint32_t *cap, uint32_t need)
{
    if (need <= *cap)
        return true;
    cand_t *na = realloc(*a, (size_t)need * sizeof *na);
    if (!na)
        return false;
    *a = na;
    *cap = need;
    return true;
}

/* A scratch block sized for the index as it is (the caller holds the lock) and a result list of
 * `nres`; NULL when out of memory. A block keeps what it grew to (about 10 bytes a node) until the
 * index is freed. */
static scratch_t *scratch_get(hnsw_t *h, uint32_t nres)
{
    pthread_mutex_lock(&h->pool_lock);
    scratch_t *s = h->pool;
    if (s)
        h->pool = s->next;
    pthread_mutex_unlock(&h->pool_lock);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->q = malloc((size_t)h->dim * sizeof *s->q);
        if (!s->q) {
            free(s);
            return NULL;
        }
    }
    uint32_t nodes = h->cap + 1;
    bool ok = true;
    if (s->nmarks < nodes) {
        free(s->marks);
        s->marks = calloc(nodes, sizeof *s->marks);
        s->nmarks = s->marks ? nodes : 0;
        s->gen = 0;
        ok = s->marks != NULL;
    }
    uint32_t ntmp = nres + 1 > (uint32_t)h->m0 + 1 ? nres + 1 : (uint32_t)h->m0 + 1;
    ok = ok && cands_reserve(&s->cand.a, &s->cand.cap, nodes) && cands_reserve(&s->res.a, &s->res.cap, nres + 1) &&
         cands_reserve(&s->tmp, &s->ntmp, ntmp);
    if (!ok) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

static void scratch_put(hnsw_t *h, scratch_t *s)
{
    pthread_mutex_lock(&h->pool_lock);
    s->next = h->pool;
    h->pool = s;
    pthread_mutex_unlock(&h->pool_lock);
}

static void scratch_next_gen(scratch_t *s)
{
    if (++s->gen == 0) {
        memset(s->marks, 0, (size_t)s->nmarks * sizeof *s->marks);
        s->gen = 1;
    }
}

/* ------------------------------------------------------------------ search */

/* Greedy walk on layer lc (the upper layers): move to a better neighbour while there is one. */
static cand_t greedy(const hnsw_t *h, const float *q, cand_t cur, int lc)
{
    for (bool moved = true; moved;) {
        moved = false;
        const uint32_t *l = links_of(h, cur.node, lc);
        for (uint32_t j = 1; j <= l[0]; j++) {
            float sim = h->dot(q, vec_of(h, l[j]), h->dim);
            if (sim > cur.sim) {
                cur = (cand_t){sim, l[j]};
                moved = true;
            }
        }
    }
    return cur;
}

static inline bool eligible(const hnsw_t *h, const filter_t *f, uint32_t v)
{
    if (!f)
        return true; /* building: every node, deleted or not, is a possible neighbour */
    return !h->deleted[v] && (!f->accept || f->accept(f->arg, h->ids[v]));
}

/* Best-first search of layer lc (the paper's algorithm 2) from the nent entry points in s->tmp,
 * whose similarities are known. Leaves up to ef eligible nodes in s->res. Every node reached is a
 * candidate for routing; only eligible ones are results, so the search goes on until it has ef of
 * them, the graph runs out, or it has made `budget` evaluations without filling its list. */
static void search_layer(const hnsw_t *h, scratch_t *s, const float *q, int lc, uint32_t ef, const filter_t *f,
                         uint64_t budget, uint32_t nent)
{
    scratch_next_gen(s);
    uint16_t gen = s->gen;
    heap_t *cand = &s->cand, *res = &s->res;
    cand->n = res->n = 0;
    for (uint32_t i = 0; i < nent; i++) {
        cand_t e = s->tmp[i];
        s->marks[e.node] = gen;
        heap_push(cand, e.sim, e.node);
        if (eligible(h, f, e.node)) {
            if (res->n < ef)
                heap_push(res, -e.sim, e.node);
            else if (e.sim > -res->a[0].sim)
                heap_replace_top(res, -e.sim, e.node);
        }
    }
    uint64_t evals = nent;
    uint32_t todo[2 * HNSW_MAX_M];
    while (cand->n) {
        if (res->n == ef && cand->a[0].sim < -res->a[0].sim)
            break; /* the best candidate is worse than the worst result */
        cand_t c = heap_pop(cand);
        const uint32_t *l = links_of(h, c.node, lc);
        uint32_t nt = 0;
        for (uint32_t j = 1; j <= l[0]; j++) {
            uint32_t v = l[j];
            if (s->marks[v] == gen)
                continue;
            s->marks[v] = gen;
            __builtin_prefetch(vec_of(h, v));
            todo[nt++] = v;
        }
        for (uint32_t t = 0; t < nt; t++) {
            uint32_t v = todo[t];
            if (t + 1 < nt) { /* the rest of the next vector while this one is read (~6% a search) */
                const char *nv = (const char *)vec_of(h, todo[t + 1]);
                for (size_t off = 64; off < (size_t)h->dim * sizeof(float); off += 64)
                    __builtin_prefetch(nv + off);
            }
            float sim = h->dot(q, vec_of(h, v), h->dim);
            if (res->n < ef || sim > -res->a[0].sim) {
                heap_push(cand, sim, v);
                if (eligible(h, f, v)) {
                    if (res->n < ef)
                        heap_push(res, -sim, v);
                    else
                        heap_replace_top(res, -sim, v);
                }
            }
        }
        evals += nt;
        if (res->n < ef && evals > budget)
            return;
    }
}

/* The top k live accepted nodes by an exact scan, into s->res. */
static void exact_scan(const hnsw_t *h, scratch_t *s, const float *q, uint32_t k, const filter_t *f)
{
    heap_t *res = &s->res;
    res->n = 0;
    for (uint32_t v = 0; v < h->n; v++) {
        if (h->deleted[v])
            continue;
        float sim = h->dot(q, vec_of(h, v), h->dim);
        if (res->n == k && sim <= -res->a[0].sim)
            continue; /* not good enough: spare the filter a call */
        if (f->accept && !f->accept(f->arg, h->ids[v]))
            continue;
        if (res->n < k)
            heap_push(res, -sim, v);
        else
            heap_replace_top(res, -sim, v);
    }
}

int hnsw_search(hnsw_t *h, const float *q, int k, int ef, bool (*accept)(void *arg, int64_t id), void *arg,
                int64_t *ids, float *sims)
{
    if (!h || !q || !ids || k <= 0)
        return 0;
    float inv = inv_norm(q, h->dim);
    if (inv == 0)
        return 0;
    pthread_rwlock_rdlock(&h->lock);
    if (h->live == 0) {
        pthread_rwlock_unlock(&h->lock);
        return 0;
    }
    uint32_t want = (uint32_t)(ef > k ? ef : k);
    uint32_t nres = want < h->n ? want : h->n;
    scratch_t *s = scratch_get(h, nres);
    if (!s) {
        pthread_rwlock_unlock(&h->lock);
        return -1;
    }
    for (int i = 0; i < h->dim; i++)
        s->q[i] = q[i] * inv;

    cand_t cur = {h->dot(s->q, vec_of(h, h->entry), h->dim), h->entry};
    for (int lc = h->top; lc > 0; lc--)
        cur = greedy(h, s->q, cur, lc);
    s->tmp[0] = cur;
    filter_t f = {accept, arg};
    uint64_t budget = h->n / 4 > HNSW_MIN_BUDGET ? h->n / 4 : HNSW_MIN_BUDGET;
    search_layer(h, s, s->q, 0, want, &f, budget, 1);
    if (s->res.n < want)
        exact_scan(h, s, s->q, (uint32_t)k < h->n ? (uint32_t)k : h->n, &f);
    uint32_t got = results_sorted(&s->res, s->tmp);
    if (got > (uint32_t)k)
        got = (uint32_t)k;
    for (uint32_t i = 0; i < got; i++) {
        ids[i] = h->ids[s->tmp[i].node];
        if (sims)
            sims[i] = s->tmp[i].sim;
    }
    scratch_put(h, s);
    pthread_rwlock_unlock(&h->lock);
    return (int)got;
}

/* ------------------------------------------------------------------ insertion */

/* The paper's algorithm 4 with keepPrunedConnections (as pgvector builds), without extending
 * the candidates: c[0..nc) sorted best first by similarity to the base node; a candidate is kept
 * if it is more similar to the base than to every one kept so far; the list is then filled up to
 * `max` with the pruned ones, best first. Returns how many (<= max) went to out. */
static uint32_t select_neighbours(const hnsw_t *h, const cand_t *c, uint32_t nc, uint32_t max, cand_t *out)
{
    if (nc <= max) { /* all of them would be kept or filled in */
        memcpy(out, c, (size_t)nc * sizeof *c);
        return nc;
    }
    cand_t pruned[2 * HNSW_MAX_M];
    uint32_t n = 0, np = 0;
    for (uint32_t i = 0; i < nc && n < max; i++) {
        const float *ve = vec_of(h, c[i].node);
        bool good = true;
        for (uint32_t j = 0; j < n && good; j++)
            good = h->dot(ve, vec_of(h, out[j].node), h->dim) <= c[i].sim;
        if (good)
            out[n++] = c[i];
        else if (np < max)
            pruned[np++] = c[i];
    }
    for (uint32_t i = 0; i < np && n < max; i++)
        out[n++] = pruned[i];
    return n;
}

/* Adds the link e -> x on layer lc; a full list is pruned with the heuristic. */
static void connect(hnsw_t *h, uint32_t e, uint32_t x, float sim, int lc)
{
    uint32_t *l = links_of(h, e, lc);
    uint32_t max = (uint32_t)(lc ? h->m : h->m0);
    if (l[0] < max) {
        l[1 + l[0]++] = x;
        return;
    }
    cand_t c[2 * HNSW_MAX_M + 1], kept[2 * HNSW_MAX_M];
    const float *ve = vec_of(h, e);
    uint32_t nc = 0;
    for (uint32_t j = 1; j <= l[0]; j++)
        c[nc++] = (cand_t){h->dot(ve, vec_of(h, l[j]), h->dim), l[j]};
    c[nc++] = (cand_t){sim, x};
    qsort(c, nc, sizeof *c, cand_cmp_desc);
    uint32_t n = select_neighbours(h, c, nc, max, kept);
    l[0] = n;
    for (uint32_t j = 0; j < n; j++)
        l[1 + j] = kept[j].node;
}

/* Links node x (stored, not yet reachable) into the graph: the paper's algorithm 1. */
static void link_node(hnsw_t *h, scratch_t *s, uint32_t x)
{
    int lx = h->level[x];
    if (h->entry == HNSW_NONE) {
        h->entry = x;
        h->top = lx;
        return;
    }
    const float *q = vec_of(h, x);
    cand_t cur = {h->dot(q, vec_of(h, h->entry), h->dim), h->entry};
    for (int lc = h->top; lc > lx; lc--)
        cur = greedy(h, q, cur, lc);
    s->tmp[0] = cur;
    uint32_t nent = 1;
    cand_t sel[2 * HNSW_MAX_M];
    for (int lc = lx < h->top ? lx : h->top; lc >= 0; lc--) {
        search_layer(h, s, q, lc, (uint32_t)h->efc, NULL, UINT64_MAX, nent);
        nent = results_sorted(&s->res, s->tmp); /* also the next layer's entry points */
        uint32_t n = select_neighbours(h, s->tmp, nent, (uint32_t)(lc ? h->m : h->m0), sel);
        uint32_t *l = links_of(h, x, lc);
        l[0] = n;
        for (uint32_t j = 0; j < n; j++)
            l[1 + j] = sel[j].node;
        for (uint32_t j = 0; j < n; j++)
            connect(h, sel[j].node, x, sel[j].sim, lc);
    }
    if (lx > h->top) {
        h->top = lx;
        h->entry = x;
    }
}

bool hnsw_add(hnsw_t *h, int64_t id, const float *vec)
{
    if (!h || !vec)
        return false;
    float inv = inv_norm(vec, h->dim);
    if (inv == 0)
        return false;
    pthread_rwlock_wrlock(&h->lock);
    uint32_t old = map_find(h, id);
    if (old != HNSW_NONE) {
        const float *v = vec_of(h, old);
        int i = 0;
        while (i < h->dim && v[i] == vec[i] * inv)
            i++;
        if (i == h->dim) { /* the same vector: nothing to do */
            pthread_rwlock_unlock(&h->lock);
            return true;
        }
    }
    /* everything that can fail comes before the first change */
    uint32_t *up = NULL;
    scratch_t *s = NULL;
    int lx = 0;
    bool ok = h->n < HNSW_MAX_NODES && nodes_reserve(h, h->n + 1) && map_reserve(h, (size_t)h->live + 1);
    if (ok) {
        lx = random_level(h);
        if (lx > 0) {
            up = calloc((size_t)lx * (size_t)(1 + h->m), sizeof *up);
            ok = up != NULL;
        }
    }
    if (ok) {
        s = scratch_get(h, (uint32_t)h->efc);
        ok = s != NULL;
    }
    if (!ok) {
        free(up);
        pthread_rwlock_unlock(&h->lock);
        return false;
    }
    if (old != HNSW_NONE) { /* replaced: the old node keeps routing */
        h->deleted[old] = 1;
        h->live--;
    }
    uint32_t x = h->n++;
    float *v = h->vecs + (size_t)x * h->stride;
    for (int i = 0; i < h->dim; i++)
        v[i] = vec[i] * inv;
    for (size_t i = (size_t)h->dim; i < h->stride; i++)
        v[i] = 0;
    h->ids[x] = id;
    h->level[x] = (uint8_t)lx;
    h->deleted[x] = 0;
    h->links0[(size_t)x * (size_t)(1 + h->m0)] = 0;
    h->upper[x] = up;
    map_set(h, id, x);
    h->live++;
    link_node(h, s, x);
    scratch_put(h, s);
    pthread_rwlock_unlock(&h->lock);
    return true;
}

bool hnsw_remove(hnsw_t *h, int64_t id)
{
    if (!h)
        return false;
    pthread_rwlock_wrlock(&h->lock);
    uint32_t node = map_find(h, id);
    if (node != HNSW_NONE) {
        map_del(h, id);
        h->deleted[node] = 1;
        h->live--;
    }
    pthread_rwlock_unlock(&h->lock);
    return node != HNSW_NONE;
}

/* ------------------------------------------------------------------ persistence */

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_OFFSET 0xcbf29ce484222325ull

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

/* Floats and u32 arrays are little-endian on disk: byte-swapped in place on a big-endian host. */
static void le32_array(void *p, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    uint32_t *u = p;
    for (size_t i = 0; i < n; i++)
        u[i] = __builtin_bswap32(u[i]);
#else
    (void)p;
    (void)n;
#endif
}

typedef struct writer {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t hash;
    int err; /* errno of the first failure */
} writer_t;

static void w_flush(writer_t *w)
{
    size_t off = 0;
    while (!w->err && off < w->len) {
        ssize_t r = write(w->fd, w->buf + off, w->len - off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            w->err = r < 0 ? errno : EIO;
        else
            off += (size_t)r;
    }
    w->len = 0;
}

static void w_bytes(writer_t *w, const void *p, size_t n)
{
    const uint8_t *b = p;
    w->hash = fnv1a(w->hash, b, n);
    while (n && !w->err) {
        size_t room = IO_BUF - w->len, take = n < room ? n : room;
        memcpy(w->buf + w->len, b, take);
        w->len += take;
        b += take;
        n -= take;
        if (w->len == IO_BUF)
            w_flush(w);
    }
}

/* u32 / f32 values in little-endian order. */
static void w_le32s(writer_t *w, const void *p, size_t n)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    const uint32_t *u = p;
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4];
        put_u32(b, u[i]);
        w_bytes(w, b, 4);
    }
#else
    w_bytes(w, p, n * 4);
#endif
}

static void write_index(const hnsw_t *h, writer_t *w)
{
    uint8_t hd[FILE_HEADER];
    memcpy(hd, FILE_MAGIC, 8);
    put_u32(hd + 8, FILE_VERSION);
    put_u32(hd + 12, (uint32_t)h->dim);
    put_u32(hd + 16, (uint32_t)h->m);
    put_u32(hd + 20, (uint32_t)h->efc);
    put_u64(hd + 24, h->rng);
    put_u32(hd + 32, h->n);
    put_u32(hd + 36, h->live);
    put_u32(hd + 40, h->entry);
    put_u32(hd + 44, (uint32_t)h->top);
    w_bytes(w, hd, sizeof hd);
    for (uint32_t i = 0; i < h->n; i++) {
        uint8_t rec[FILE_NODE];
        put_u64(rec, (uint64_t)h->ids[i]);
        rec[8] = h->level[i];
        rec[9] = h->deleted[i];
        w_bytes(w, rec, sizeof rec);
    }
    for (uint32_t i = 0; i < h->n; i++)
        w_le32s(w, vec_of(h, i), (size_t)h->dim);
    for (uint32_t i = 0; i < h->n; i++)
        for (int lc = 0; lc <= h->level[i]; lc++) {
            const uint32_t *l = links_of(h, i, lc);
            w_le32s(w, l, 1 + (size_t)l[0]);
        }
    uint8_t tr[8];
    put_u64(tr, w->hash);
    w_bytes(w, tr, sizeof tr);
    w_flush(w);
}

/* fsync of the directory holding path, so that the rename is durable. */
static int fsync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return rc;
}

bool hnsw_save(hnsw_t *h, const char *path, err_t *e)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    uint8_t *buf = malloc(IO_BUF);
    if (!tmp || !buf) {
        free(tmp);
        free(buf);
        return err_set(e, ERR_INTERNAL, "hnsw: out of memory saving %s", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        free(tmp);
        free(buf);
        return err_set(e, ERR_INTERNAL, "hnsw: cannot create a file beside %s: %s", path, strerror(err));
    }
    writer_t w = {.fd = fd, .buf = buf, .hash = FNV_OFFSET};
    pthread_rwlock_rdlock(&h->lock);
    write_index(h, &w);
    pthread_rwlock_unlock(&h->lock);
    free(buf);
    int err = w.err;
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (!err && rename(tmp, path) != 0)
        err = errno;
    if (err) {
        unlink(tmp);
        free(tmp);
        return err_set(e, ERR_INTERNAL, "hnsw: cannot write %s: %s", path, strerror(err));
    }
    free(tmp);
    if ((err = fsync_dir(path)) != 0)
        return err_set(e, ERR_INTERNAL, "hnsw: cannot sync the directory of %s: %s", path, strerror(err));
    return true;
}

typedef struct reader {
    int fd;
    uint8_t *buf;
    size_t pos, len;
    uint64_t hash;
    bool eof;
    int err; /* errno of a failed read */
} reader_t;

/* Reads exactly n bytes (hashed when `hash`); false at the end of the file or on an error. */
static bool r_bytes(reader_t *r, void *dst, size_t n, bool hash)
{
    uint8_t *d = dst;
    while (n) {
        if (r->pos == r->len) {
            if (r->eof || r->err)
                return false;
            ssize_t got = read(r->fd, r->buf, IO_BUF);
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                r->err = errno;
                return false;
            }
            if (got == 0) {
                r->eof = true;
                return false;
            }
            r->pos = 0;
            r->len = (size_t)got;
        }
        size_t take = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(d, r->buf + r->pos, take);
        if (hash)
            r->hash = fnv1a(r->hash, d, take);
        r->pos += take;
        d += take;
        n -= take;
    }
    return true;
}

/* True when nothing is left to read. */
static bool r_at_end(reader_t *r)
{
    uint8_t b;
    return !r_bytes(r, &b, 1, false) && r->eof && !r->err;
}

/* The body of hnsw_load; h is the index being filled (the caller frees it on failure). */
static bool read_index(reader_t *r, uint64_t size, const char *path, hnsw_t **out, err_t *e)
{
#define BAD(...) (err_set(e, ERR_INTERNAL, "hnsw: %s: " __VA_ARGS__), false)
#define READ(dst, n) \
    if (!r_bytes(r, (dst), (n), true)) \
        return r->err ? err_set(e, ERR_INTERNAL, "hnsw: %s: %s", path, strerror(r->err)) : BAD("truncated", path)
    uint8_t hd[FILE_HEADER];
    READ(hd, sizeof hd);
    if (memcmp(hd, FILE_MAGIC, 8) != 0)
        return BAD("not an index file (bad magic)", path);
    uint32_t version = get_u32(hd + 8), dim = get_u32(hd + 12), m = get_u32(hd + 16), efc = get_u32(hd + 20);
    uint64_t rng = get_u64(hd + 24);
    uint32_t n = get_u32(hd + 32), live = get_u32(hd + 36), entry = get_u32(hd + 40), top = get_u32(hd + 44);
    if (version != FILE_VERSION)
        return BAD("unsupported version %u", path, version);
    if (dim < 1 || dim > HNSW_MAX_DIM || m < 2 || m > HNSW_MAX_M || efc < 1 || efc > HNSW_MAX_EFC)
        return BAD("bad parameters (dim %u, M %u, ef_construction %u)", path, dim, m, efc);
    if (n > HNSW_MAX_NODES || live > n || top > HNSW_MAX_LEVEL ||
        (n == 0 ? entry != HNSW_NONE || top != 0 : entry >= n))
        return BAD("bad counts (nodes %u, live %u, entry %u, top %u)", path, n, live, entry, top);
    /* every node needs its record, its vector and a link count on layer 0: check the size before
     * allocating anything for them (all in 64 bits: no overflow) */
    uint64_t fixed = FILE_HEADER + (uint64_t)n * (FILE_NODE + 4ull * dim) + 8;
    if (fixed + 4ull * n > size)
        return BAD("%u nodes of dimension %u do not fit in %llu bytes", path, n, dim, (unsigned long long)size);

    hnsw_t *h = hnsw_alloc((int)dim, (int)m, (int)efc, rng);
    if (!h)
        return err_set(e, ERR_INTERNAL, "hnsw: out of memory loading %s", path);
    *out = h;
    if (n) {
        if (!nodes_reserve(h, n) || !map_reserve(h, live))
            return err_set(e, ERR_INTERNAL, "hnsw: out of memory loading %s", path);
        memset(h->upper, 0, (size_t)h->cap * sizeof *h->upper);
    }

    uint64_t links_min = 0; /* bytes of link counts the levels call for */
    uint32_t nlive = 0, maxlevel = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t rec[FILE_NODE];
        READ(rec, sizeof rec);
        int64_t id = (int64_t)get_u64(rec);
        uint8_t lv = rec[8], del = rec[9];
        if (lv > HNSW_MAX_LEVEL || del > 1)
            return BAD("node %u: bad level %u or flag %u", path, i, lv, del);
        h->ids[i] = id;
        h->level[i] = lv;
        h->deleted[i] = del;
        h->links0[(size_t)i * (size_t)(1 + h->m0)] = 0;
        h->n = i + 1; /* from here hnsw_free owns upper[i] */
        links_min += 4ull * (lv + 1u);
        if (lv > maxlevel)
            maxlevel = lv;
        if (!del) {
            if (++nlive > live)
                return BAD("more live nodes than the %u counted", path, live);
            if (map_find(h, id) != HNSW_NONE)
                return BAD("id %lld appears twice", path, (long long)id);
            map_set(h, id, i);
        }
    }
    if (nlive != live)
        return BAD("%u live nodes, %u counted", path, nlive, live);
    if (n && (h->level[entry] != top || maxlevel != top))
        return BAD("entry node %u is not on the top layer %u", path, entry, top);
    if (fixed + links_min > size)
        return BAD("the link lists do not fit in %llu bytes", path, (unsigned long long)size);
    h->live = live;
    h->entry = n ? entry : HNSW_NONE;
    h->top = (int)top;
    for (uint32_t i = 0; i < n; i++)
        if (h->level[i] > 0) {
            h->upper[i] = malloc((size_t)h->level[i] * (size_t)(1 + h->m) * sizeof(uint32_t));
            if (!h->upper[i])
                return err_set(e, ERR_INTERNAL, "hnsw: out of memory loading %s", path);
        }

    for (uint32_t i = 0; i < n; i++) {
        float *v = h->vecs + (size_t)i * h->stride;
        READ(v, (size_t)dim * 4);
        le32_array(v, dim);
        for (size_t j = dim; j < h->stride; j++)
            v[j] = 0;
        double s = 0;
        for (uint32_t j = 0; j < dim; j++)
            s += (double)v[j] * v[j];
        if (!isfinite(s) || fabs(s - 1) > 1e-3)
            return BAD("node %u: the vector is not normalised", path, i);
    }

    for (uint32_t i = 0; i < n; i++)
        for (int lc = 0; lc <= h->level[i]; lc++) {
            uint32_t *l = links_of(h, i, lc);
            uint32_t max = (uint32_t)(lc ? h->m : h->m0);
            READ(l, 4);
            le32_array(l, 1);
            if (l[0] > max)
                return BAD("node %u layer %d: %u links (at most %u)", path, i, lc, l[0], max);
            READ(l + 1, (size_t)l[0] * 4);
            le32_array(l + 1, l[0]);
            for (uint32_t j = 1; j <= l[0]; j++)
                if (l[j] >= n || l[j] == i || h->level[l[j]] < lc)
                    return BAD("node %u layer %d: link to %u", path, i, lc, l[j]);
        }

    uint8_t tr[8];
    uint64_t want = r->hash;
    if (!r_bytes(r, tr, 8, false))
        return r->err ? err_set(e, ERR_INTERNAL, "hnsw: %s: %s", path, strerror(r->err)) : BAD("truncated", path);
    if (get_u64(tr) != want)
        return BAD("checksum mismatch", path);
    if (!r_at_end(r))
        return r->err ? err_set(e, ERR_INTERNAL, "hnsw: %s: %s", path, strerror(r->err))
                      : BAD("bytes after the checksum", path);
    return true;
#undef READ
#undef BAD
}

hnsw_t *hnsw_load(const char *path, err_t *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        err_set(e, err == ENOENT ? ERR_NOT_FOUND : ERR_INTERNAL, "hnsw: cannot open %s: %s", path, strerror(err));
        return NULL;
    }
    struct stat st;
    errno = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        const char *why = errno ? strerror(errno) : "not a regular file";
        err_set(e, ERR_INTERNAL, "hnsw: %s: %s", path, why);
        close(fd);
        return NULL;
    }
    reader_t r = {.fd = fd, .buf = malloc(IO_BUF), .hash = FNV_OFFSET};
    hnsw_t *h = NULL;
    bool ok = r.buf ? read_index(&r, (uint64_t)st.st_size, path, &h, e)
                    : err_set(e, ERR_INTERNAL, "hnsw: out of memory loading %s", path);
    free(r.buf);
    close(fd);
    if (!ok) {
        hnsw_free(h);
        return NULL;
    }
    return h;
}
