/* test_bktree: the BK-tree (infra/bktree.c) against brute force. For random hashes, clustered
 * ones (a few bits flipped from a few bases, as perceptual hashes of near-duplicates are) and
 * every radius 0..16 (and 64, and a negative one), a query reports exactly the (id, hash) pairs a
 * scan of all pairs finds, each once and with its true distance; several ids per hash; a pair
 * added twice is there once; removals (of single ids, of every id of a hash, of pairs never
 * added) leave exactly the remaining pairs, and a hash emptied and added again is found again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infra/bktree.h"

typedef struct pair {
    uint64_t hash;
    int64_t id;
    bool live;
} pair_t;

typedef struct hit {
    int64_t id;
    uint64_t hash;
    int dist;
} hit_t;

typedef struct hits {
    hit_t *a;
    int n, cap;
} hits_t;

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void collect(void *arg, int64_t id, uint64_t hash, int dist)
{
    hits_t *h = arg;
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->a = realloc(h->a, (size_t)h->cap * sizeof *h->a);
        assert_non_null(h->a);
    }
    h->a[h->n++] = (hit_t){id, hash, dist};
}

static int hit_cmp(const void *pa, const void *pb)
{
    const hit_t *a = pa, *b = pb;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return (a->hash > b->hash) - (a->hash < b->hash);
}

/* The tree's answer equals the scan's, pair for pair. */
static void check_query(const bktree_t *t, const pair_t *pairs, int n, uint64_t q, int radius)
{
    hits_t got = {0}, want = {0};
    int count = bktree_query(t, q, radius, collect, &got);
    assert_int_equal(count, got.n);
    assert_int_equal(bktree_query(t, q, radius, NULL, NULL), count); /* fn is optional */
    for (int i = 0; i < n; i++) {
        int d = __builtin_popcountll(pairs[i].hash ^ q);
        if (pairs[i].live && d <= radius)
            collect(&want, pairs[i].id, pairs[i].hash, d);
    }
    assert_int_equal(got.n, want.n);
    if (got.n) {
        qsort(got.a, (size_t)got.n, sizeof *got.a, hit_cmp);
        qsort(want.a, (size_t)want.n, sizeof *want.a, hit_cmp);
    }
    for (int i = 0; i < got.n; i++) {
        assert_int_equal(got.a[i].id, want.a[i].id);
        assert_true(got.a[i].hash == want.a[i].hash);
        assert_int_equal(got.a[i].dist, want.a[i].dist);
    }
    free(got.a);
    free(want.a);
}

static size_t live_count(const pair_t *pairs, int n)
{
    size_t c = 0;
    for (int i = 0; i < n; i++)
        c += pairs[i].live;
    return c;
}

/* A hash near one of `nbases` bases: up to `flips` random bits flipped. */
static uint64_t near_hash(uint64_t *s, const uint64_t *bases, int nbases, int flips)
{
    uint64_t h = bases[next(s) % (uint64_t)nbases];
    int k = (int)(next(s) % (uint64_t)(flips + 1));
    for (int i = 0; i < k; i++)
        h ^= 1ull << (next(s) % 64);
    return h;
}

static void all_radii(const bktree_t *t, const pair_t *pairs, int n, uint64_t *s, const uint64_t *bases, int nbases,
                      int queries)
{
    for (int i = 0; i < queries; i++) {
        uint64_t q = i % 2 ? next(s) : near_hash(s, bases, nbases, 12);
        if (i % 5 == 0 && n)
            q = pairs[next(s) % (uint64_t)n].hash; /* a hash that is there */
        for (int r = 0; r <= 16; r++)
            check_query(t, pairs, n, q, r);
    }
}

static void empty_tree(void **state)
{
    bktree_t *t = bktree_new();
    assert_int_equal(bktree_count(t), 0);
    assert_int_equal(bktree_query(t, 0, 64, NULL, NULL), 0);
    assert_false(bktree_remove(t, 0, 1));
    bktree_add(t, 0xffull, 7);
    assert_int_equal(bktree_query(t, 0, 7, NULL, NULL), 0);
    assert_int_equal(bktree_query(t, 0, 8, NULL, NULL), 1);
    assert_int_equal(bktree_query(t, 0xffull, -1, NULL, NULL), 0); /* a negative radius finds nothing */
    bktree_free(t);
    bktree_free(NULL);
}

static void random_hashes_match_brute_force(void **state)
{
    enum { N = 3000 };
    uint64_t s = 1;
    pair_t *pairs = calloc(N, sizeof *pairs);
    bktree_t *t = bktree_new();
    for (int i = 0; i < N; i++) {
        pairs[i] = (pair_t){next(&s), i, true};
        bktree_add(t, pairs[i].hash, pairs[i].id);
    }
    assert_int_equal(bktree_count(t), N);
    all_radii(t, pairs, N, &s, &pairs[0].hash, 1, 40);
    check_query(t, pairs, N, next(&s), 64); /* everything */
    check_query(t, pairs, N, next(&s), 100);
    bktree_free(t);
    free(pairs);
}

static void clustered_hashes_and_duplicates(void **state)
{
    enum { N = 6000, BASES = 40 };
    uint64_t s = 2, bases[BASES];
    for (int i = 0; i < BASES; i++)
        bases[i] = next(&s);
    pair_t *pairs = calloc(N + 100, sizeof *pairs);
    bktree_t *t = bktree_new();
    int n = 0;
    for (int i = 0; i < N; i++) {
        /* one in eight shares the hash of an earlier pair (same photo, another listing) */
        uint64_t h = i > 0 && i % 8 == 0 ? pairs[next(&s) % (uint64_t)n].hash : near_hash(&s, bases, BASES, 10);
        pairs[n] = (pair_t){h, i, true};
        bktree_add(t, h, i);
        n++;
    }
    /* pairs added again are there once */
    for (int i = 0; i < 100; i++) {
        const pair_t *p = &pairs[next(&s) % (uint64_t)n];
        bktree_add(t, p->hash, p->id);
    }
    assert_int_equal(bktree_count(t), (size_t)n);
    /* many ids on one hash */
    for (int i = 0; i < 100; i++) {
        pairs[n] = (pair_t){bases[0], 100000 + i, true};
        bktree_add(t, bases[0], 100000 + i);
        n++;
    }
    assert_int_equal(bktree_count(t), (size_t)n);
    all_radii(t, pairs, n, &s, bases, BASES, 60);
    bktree_free(t);
    free(pairs);
}

static void removals_match_brute_force(void **state)
{
    enum { N = 5000, BASES = 30 };
    uint64_t s = 3, bases[BASES];
    for (int i = 0; i < BASES; i++)
        bases[i] = next(&s);
    pair_t *pairs = calloc(N, sizeof *pairs);
    bktree_t *t = bktree_new();
    for (int i = 0; i < N; i++) {
        uint64_t h = i % 4 == 0 && i ? pairs[i - 1].hash : near_hash(&s, bases, BASES, 8);
        pairs[i] = (pair_t){h, i, true};
        bktree_add(t, h, i);
    }
    /* a third of the pairs, the root's among them */
    for (int i = 0; i < N; i += 3) {
        assert_true(bktree_remove(t, pairs[i].hash, pairs[i].id));
        pairs[i].live = false;
    }
    assert_int_equal(bktree_count(t), live_count(pairs, N));
    /* what is not there */
    assert_false(bktree_remove(t, pairs[0].hash, pairs[0].id));             /* removed already */
    assert_false(bktree_remove(t, pairs[1].hash, 999999));                  /* the hash, not the id */
    assert_false(bktree_remove(t, pairs[1].hash ^ (1ull << 63) ^ 1, 1));    /* neither */
    assert_int_equal(bktree_count(t), live_count(pairs, N));
    all_radii(t, pairs, N, &s, bases, BASES, 40);
    /* every id of some hashes gone, then some of them back */
    for (int i = 0; i < N; i++)
        if (pairs[i].live && pairs[i].hash % 5 == 0) {
            assert_true(bktree_remove(t, pairs[i].hash, pairs[i].id));
            pairs[i].live = false;
        }
    all_radii(t, pairs, N, &s, bases, BASES, 20);
    for (int i = 0; i < N; i += 2)
        if (!pairs[i].live) {
            bktree_add(t, pairs[i].hash, pairs[i].id);
            pairs[i].live = true;
        }
    assert_int_equal(bktree_count(t), live_count(pairs, N));
    all_radii(t, pairs, N, &s, bases, BASES, 40);
    /* and all of them */
    for (int i = 0; i < N; i++)
        if (pairs[i].live) {
            assert_true(bktree_remove(t, pairs[i].hash, pairs[i].id));
            pairs[i].live = false;
        }
    assert_int_equal(bktree_count(t), 0);
    assert_int_equal(bktree_query(t, bases[0], 64, NULL, NULL), 0);
    bktree_add(t, bases[1], 5);
    assert_int_equal(bktree_query(t, bases[1], 0, NULL, NULL), 1);
    bktree_free(t);
    free(pairs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_tree),
        cmocka_unit_test(random_hashes_match_brute_force),
        cmocka_unit_test(clustered_hashes_and_duplicates),
        cmocka_unit_test(removals_match_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
