/* bktree: see bktree.h. A Burkhard-Keller tree under the Hamming distance of 64-bit hashes.
 * Written here: it is some two hundred lines, and no Debian library offers one with a C API.
 *
 * The one idea: every child hangs under its parent at its distance from the parent, so by the
 * triangle inequality a query at distance d from a node, with radius r, needs only the children
 * whose edge lies in [d - r, d + r]. Children are a sibling list sorted by edge, so a query walks a
 * node's children until the edge passes d + r.
 *
 * Nodes live in one array (indices, never pointers: the array grows), node 0 is the root. A node
 * holds one hash and the ids that share it: the first id inline, more in an array. Removing the
 * last id of a node leaves the node in place as a routing node (its hash still orders the tree;
 * adding the hash again revives it), so removal never reshapes the tree. The tree owns its nodes;
 * out of memory aborts, as buf.h does. */
#include "bktree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BK_NONE UINT32_MAX

typedef struct bk_node {
    uint64_t hash;
    uint32_t child;   /* first child (the smallest edge), or BK_NONE */
    uint32_t sibling; /* next child of the same parent (a larger edge), or BK_NONE */
    uint32_t nids;    /* ids with this hash; 0 for a routing node */
    uint32_t cap;     /* 0: the one id is inline; else `many` holds up to cap */
    union {
        int64_t one;
        int64_t *many;
    } ids;
    uint8_t edge; /* distance to the parent (1..64); 0 for the root */
} bk_node_t;

struct bktree {
    bk_node_t *nodes;
    uint32_t n, cap;
    size_t count; /* (hash, id) pairs */
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "bktree: out of memory (%zu bytes)\n", n);
        abort();
    }
    return q;
}

static inline int hamming(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }

static inline int64_t *ids_of(bk_node_t *nd) { return nd->cap ? nd->ids.many : &nd->ids.one; }
static inline const int64_t *cids_of(const bk_node_t *nd) { return nd->cap ? nd->ids.many : &nd->ids.one; }

bktree_t *bktree_new(void)
{
    bktree_t *t = calloc(1, sizeof *t);
    if (!t) {
        fprintf(stderr, "bktree: out of memory\n");
        abort();
    }
    return t;
}

void bktree_free(bktree_t *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->n; i++)
        if (t->nodes[i].cap)
            free(t->nodes[i].ids.many);
    free(t->nodes);
    free(t);
}

size_t bktree_count(const bktree_t *t) { return t->count; }

static uint32_t node_new(bktree_t *t, uint64_t hash, uint8_t edge)
{
    if (t->n == t->cap) {
        if (t->cap >= BK_NONE / 2) {
            fprintf(stderr, "bktree: too many nodes\n");
            abort();
        }
        t->cap = t->cap ? t->cap * 2 : 64;
        t->nodes = xrealloc(t->nodes, (size_t)t->cap * sizeof *t->nodes);
    }
    uint32_t i = t->n++;
    t->nodes[i] = (bk_node_t){.hash = hash, .child = BK_NONE, .sibling = BK_NONE, .edge = edge};
    return i;
}

/* Adds id to node i's ids unless it is there. */
static void node_add_id(bktree_t *t, uint32_t i, int64_t id)
{
    bk_node_t *nd = &t->nodes[i];
    int64_t *ids = ids_of(nd);
    for (uint32_t k = 0; k < nd->nids; k++)
        if (ids[k] == id)
            return;
    if (nd->nids == 0 && nd->cap == 0) {
        nd->ids.one = id;
    } else {
        if (nd->cap == 0) { /* inline -> array */
            int64_t first = nd->ids.one;
            nd->ids.many = xrealloc(NULL, 4 * sizeof(int64_t));
            nd->ids.many[0] = first;
            nd->cap = 4;
        } else if (nd->nids == nd->cap) {
            if (nd->cap > UINT32_MAX / 2) {
                fprintf(stderr, "bktree: too many ids for one hash\n");
                abort();
            }
            nd->cap *= 2;
            nd->ids.many = xrealloc(nd->ids.many, (size_t)nd->cap * sizeof(int64_t));
        }
        nd->ids.many[nd->nids] = id;
    }
    nd->nids++;
    t->count++;
}

void bktree_add(bktree_t *t, uint64_t hash, int64_t id)
{
    if (t->n == 0) {
        node_add_id(t, node_new(t, hash, 0), id);
        return;
    }
    uint32_t cur = 0;
    for (;;) {
        int d = hamming(t->nodes[cur].hash, hash);
        if (d == 0) {
            node_add_id(t, cur, id);
            return;
        }
        /* the child at edge d, or the place in the sorted sibling list where it goes */
        uint32_t prev = BK_NONE, c = t->nodes[cur].child;
        while (c != BK_NONE && t->nodes[c].edge < d) {
            prev = c;
            c = t->nodes[c].sibling;
        }
        if (c != BK_NONE && t->nodes[c].edge == d) {
            cur = c;
            continue;
        }
        uint32_t nw = node_new(t, hash, (uint8_t)d); /* may move t->nodes */
        t->nodes[nw].sibling = c;
        if (prev == BK_NONE)
            t->nodes[cur].child = nw;
        else
            t->nodes[prev].sibling = nw;
        node_add_id(t, nw, id);
        return;
    }
}

bool bktree_remove(bktree_t *t, uint64_t hash, int64_t id)
{
    uint32_t cur = t->n ? 0 : BK_NONE;
    while (cur != BK_NONE) {
        int d = hamming(t->nodes[cur].hash, hash);
        if (d == 0)
            break;
        uint32_t c = t->nodes[cur].child;
        while (c != BK_NONE && t->nodes[c].edge < d)
            c = t->nodes[c].sibling;
        cur = c != BK_NONE && t->nodes[c].edge == d ? c : BK_NONE;
    }
    if (cur == BK_NONE)
        return false;
    bk_node_t *nd = &t->nodes[cur];
    int64_t *ids = ids_of(nd);
    for (uint32_t k = 0; k < nd->nids; k++)
        if (ids[k] == id) {
            ids[k] = ids[--nd->nids]; /* order of ids is not kept */
            if (nd->nids == 0 && nd->cap) {
                free(nd->ids.many);
                nd->ids.many = NULL;
                nd->cap = 0;
            }
            t->count--;
            return true;
        }
    return false;
}

int bktree_query(const bktree_t *t, uint64_t hash, int radius, void (*fn)(void *arg, int64_t id, uint64_t hash, int dist),
                 void *arg)
{
    if (t->n == 0 || radius < 0)
        return 0;
    /* depth-first with an explicit stack: a tree can be deeper than the C stack would like */
    uint32_t local[256], *stack = local;
    size_t sp = 0, cap = sizeof local / sizeof local[0];
    int found = 0;
    stack[sp++] = 0;
    while (sp) {
        const bk_node_t *nd = &t->nodes[stack[--sp]];
        int d = hamming(nd->hash, hash);
        if (d <= radius && nd->nids) {
            const int64_t *ids = cids_of(nd);
            for (uint32_t k = 0; k < nd->nids; k++) {
                if (fn)
                    fn(arg, ids[k], nd->hash, d);
                found++;
            }
        }
        for (uint32_t c = nd->child; c != BK_NONE; c = t->nodes[c].sibling) {
            int edge = t->nodes[c].edge;
            if (edge < d - radius)
                continue;
            if (edge > d + radius)
                break;
            if (sp == cap) {
                cap *= 2;
                if (stack == local) {
                    stack = xrealloc(NULL, cap * sizeof *stack);
                    memcpy(stack, local, sizeof local);
                } else {
                    stack = xrealloc(stack, cap * sizeof *stack);
                }
            }
            stack[sp++] = c;
        }
    }
    if (stack != local)
        free(stack);
    return found;
}
