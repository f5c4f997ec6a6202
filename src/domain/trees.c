/* trees: see trees.h.
 *
 * Why written here: XGBoost's C API predicts through a DMatrix, made for each call (a model with
 * categorical features needs the feature types on it), and a booster is not documented as safe
 * for concurrent prediction, so a single price estimate cost 150-400 µs and one at a time per
 * model. The saved model is plain data: arrays of children, split features, thresholds, default
 * directions and, for categorical splits, the categories that go right. Walking those arrays is a
 * few microseconds a row, needs no lock, and gives XGBoost's numbers: training checks every saved
 * model against XGBoost's own predictions on the training rows (pricing.c).
 *
 * XGBoost's decision rules, followed exactly: a missing value (NaN) takes the node's default
 * child; a numeric split goes left when value < threshold; a categorical split goes right when the
 * value is one of the node's categories and left otherwise (also for a negative or non-integral
 * value, or one beyond the largest category). A leaf's value is in `split_conditions`. The output
 * is base_score plus the sum of one leaf per tree, accumulated in float as XGBoost does. */
#include "trees.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 12 bytes, and a node's children next to each other (right = left + 1, nodes renumbered
 * breadth first at load): the 1,200 trees of a price model stay within a core's L2 cache. */
typedef struct node {
    union {
        float cond;    /* numeric split: threshold; leaf: value */
        uint32_t cats; /* categorical split: offset of its bit set in trees_t.bits */
    };
    int32_t left;    /* absolute index of the left child; the right one follows it */
    int16_t feature; /* -1: leaf */
    uint8_t flags;   /* NODE_DEFAULT_LEFT, NODE_CATEGORICAL */
    uint8_t nwords;  /* categorical: 64-bit words of the bit set */
} node_t;

#define NODE_DEFAULT_LEFT 1
#define NODE_CATEGORICAL 2
#define MAX_WORDS 255 /* categories up to 16,319 */

struct trees {
    int nfeatures, ntrees, depth; /* depth: of the deepest tree */
    float base;
    int32_t *roots;
    node_t *nodes;
    uint64_t *bits;
};

static int32_t int_at(json_t *arr, size_t i) { return (int32_t)json_integer_value(json_array_get(arr, i)); }

static float float_at(json_t *arr, size_t i)
{
    json_t *v = json_array_get(arr, i);
    return json_is_number(v) ? (float)json_number_value(v) : NAN;
}

static trees_t *fail(trees_t *t, json_t *root, err_t *e, const char *why, const char *path)
{
    err_set(e, ERR_UNAVAILABLE, "%s: %s", path, why);
    trees_free(t);
    json_decref(root);
    return NULL;
}

trees_t *trees_load(const char *path, err_t *e)
{
    json_error_t je;
    /* XGBoost writes NaN thresholds of categorical nodes as the bare word NaN, which is not JSON:
     * read the file and turn them into null first */
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(e, ERR_UNAVAILABLE, "%s: cannot open", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = len > 0 ? malloc((size_t)len + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
    fclose(f);
    if (!text || got != (size_t)len) {
        free(text);
        err_set(e, ERR_UNAVAILABLE, "%s: cannot read", path);
        return NULL;
    }
    text[len] = '\0';
    for (char *p = text; (p = strstr(p, "NaN"));) { /* a token, not part of a string */
        bool token = p > text && strchr("[,: \n", p[-1]) && strchr("],\n ", p[3]);
        if (token)
            memcpy(p, "0  ", 3); /* a categorical node's threshold: never read */
        p += 3;
    }
    json_t *root = json_loads(text, 0, &je);
    free(text);
    if (!root) {
        err_set(e, ERR_UNAVAILABLE, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    trees_t *t = calloc(1, sizeof *t);
    json_t *learner = json_object_get(root, "learner");
    json_t *param = json_object_get(learner, "learner_model_param");
    json_t *booster = json_object_get(learner, "gradient_booster");
    json_t *trees = json_object_get(json_object_get(booster, "model"), "trees");
    const char *name = json_string_value(json_object_get(booster, "name"));
    if (!param || !json_is_array(trees) || !name || strcmp(name, "gbtree") != 0)
        return fail(t, root, e, "not an XGBoost gbtree model", path);
    if (atoi(json_string_value(json_object_get(param, "num_class")) ?: "0") > 1 ||
        atoi(json_string_value(json_object_get(param, "num_target")) ?: "1") > 1)
        return fail(t, root, e, "a model of more than one output", path);
    t->base = strtof(json_string_value(json_object_get(param, "base_score")) ?: "0", NULL);
    t->nfeatures = atoi(json_string_value(json_object_get(param, "num_feature")) ?: "0");
    t->ntrees = (int)json_array_size(trees);
    size_t total = 0, words = 0;
    for (int k = 0; k < t->ntrees; k++) {
        json_t *tr = json_array_get(trees, (size_t)k);
        total += json_array_size(json_object_get(tr, "left_children"));
        json_t *sizes = json_object_get(tr, "categories_sizes"), *cats = json_object_get(tr, "categories"),
               *segs = json_object_get(tr, "categories_segments");
        for (size_t c = 0; c < json_array_size(sizes); c++) {
            int32_t max = 0, seg = int_at(segs, c), n = int_at(sizes, c);
            for (int32_t j = 0; j < n; j++)
                if (int_at(cats, (size_t)(seg + j)) > max)
                    max = int_at(cats, (size_t)(seg + j));
            words += (size_t)max / 64 + 1;
        }
    }
    t->roots = calloc((size_t)t->ntrees + 1, sizeof *t->roots);
    t->nodes = calloc(total + 1, sizeof *t->nodes);
    t->bits = calloc(words + 1, sizeof *t->bits);
    size_t at = 0, wat = 0;
    for (int k = 0; k < t->ntrees; k++) {
        json_t *tr = json_array_get(trees, (size_t)k);
        json_t *left = json_object_get(tr, "left_children"), *right = json_object_get(tr, "right_children"),
               *feat = json_object_get(tr, "split_indices"), *cond = json_object_get(tr, "split_conditions"),
               *dl = json_object_get(tr, "default_left"), *type = json_object_get(tr, "split_type");
        size_t n = json_array_size(left);
        if (json_array_size(right) != n || json_array_size(feat) != n || json_array_size(cond) != n ||
            json_array_size(dl) != n || n == 0)
            return fail(t, root, e, "a tree's arrays disagree in length", path);
        /* the categorical nodes' bit sets, by original node id */
        json_t *cnodes = json_object_get(tr, "categories_nodes"), *cats = json_object_get(tr, "categories"),
               *segs = json_object_get(tr, "categories_segments"), *sizes = json_object_get(tr, "categories_sizes");
        int32_t *cat_of = malloc(n * sizeof *cat_of), *cat_words = malloc(n * sizeof *cat_words),
                *order = malloc(n * sizeof *order), *newid = malloc(n * sizeof *newid);
        for (size_t i = 0; i < n; i++)
            cat_of[i] = -1;
        const char *bad = json_array_size(cnodes) != json_array_size(sizes) ||
                                  json_array_size(cnodes) != json_array_size(segs)
                              ? "the categorical split arrays disagree in length" /* the bit sets were sized by them */
                              : NULL;
        for (size_t c = 0; c < json_array_size(cnodes) && !bad; c++) {
            int32_t nid = int_at(cnodes, c), seg = int_at(segs, c), cnt = int_at(sizes, c), max = 0;
            if (nid < 0 || nid >= (int32_t)n) {
                bad = "a categorical node out of range";
                break;
            }
            for (int32_t j = 0; j < cnt; j++)
                if (int_at(cats, (size_t)(seg + j)) > max)
                    max = int_at(cats, (size_t)(seg + j));
            if (max / 64 + 1 > MAX_WORDS) {
                bad = "a categorical split over too many categories";
                break;
            }
            cat_of[nid] = (int32_t)wat;
            cat_words[nid] = max / 64 + 1;
            for (int32_t j = 0; j < cnt; j++) {
                int32_t v = int_at(cats, (size_t)(seg + j));
                if (v >= 0)
                    t->bits[wat + (size_t)v / 64] |= 1ULL << (v % 64);
            }
            wat += (size_t)max / 64 + 1;
        }
        /* breadth first from the root: a node's two children get consecutive new numbers */
        size_t head = 0, tail = 0, level_end = 1;
        int depth = 0;
        for (size_t i = 0; i < n; i++)
            newid[i] = -1;
        order[tail++] = 0;
        newid[0] = 0;
        while (head < tail && !bad) {
            if (head == level_end) { /* breadth first: the next level starts here */
                depth++;
                level_end = tail;
            }
            int32_t i = order[head++];
            int32_t l = int_at(left, (size_t)i), r = int_at(right, (size_t)i);
            if (l < 0)
                continue;
            if (l >= (int32_t)n || r < 0 || r >= (int32_t)n || newid[l] >= 0 || newid[r] >= 0) {
                bad = "a child index out of range or reused";
                break;
            }
            newid[l] = (int32_t)tail;
            order[tail++] = l;
            newid[r] = (int32_t)tail;
            order[tail++] = r;
        }
        t->roots[k] = (int32_t)at;
        if (depth > t->depth)
            t->depth = depth;
        for (size_t q = 0; q < tail && !bad; q++) {
            int32_t i = order[q];
            node_t *nd = &t->nodes[at + q];
            int32_t l = int_at(left, (size_t)i);
            if (l < 0) {
                nd->cond = float_at(cond, (size_t)i);
                nd->feature = -1;
                continue;
            }
            int32_t fi = int_at(feat, (size_t)i);
            if (fi < 0 || fi >= t->nfeatures || fi > INT16_MAX) {
                bad = "a split feature out of range";
                break;
            }
            nd->feature = (int16_t)fi;
            nd->left = (int32_t)at + newid[l];
            nd->flags = int_at(dl, (size_t)i) ? NODE_DEFAULT_LEFT : 0;
            if (json_array_size(type) == n && int_at(type, (size_t)i) == 1) {
                if (cat_of[i] < 0) {
                    bad = "a categorical split without categories";
                    break;
                }
                nd->flags |= NODE_CATEGORICAL;
                nd->cats = (uint32_t)cat_of[i];
                nd->nwords = (uint8_t)cat_words[i];
            } else {
                nd->cond = float_at(cond, (size_t)i);
            }
        }
        free(cat_of);
        free(cat_words);
        free(order);
        free(newid);
        if (bad)
            return fail(t, root, e, bad, path);
        at += tail; /* nodes not reachable from the root (deleted ones) are left out */
    }
    json_decref(root);
    return t;
}

void trees_free(trees_t *t)
{
    if (!t)
        return;
    free(t->roots);
    free(t->nodes);
    free(t->bits);
    free(t);
}

int trees_features(const trees_t *t) { return t->nfeatures; }

static inline const node_t *step(const trees_t *t, const node_t *nd, const float *row)
{
    float v = row[nd->feature];
    int32_t next;
    if (isnan(v)) {
        next = nd->left + !(nd->flags & NODE_DEFAULT_LEFT);
    } else if (nd->flags & NODE_CATEGORICAL) {
        bool in = v >= 0 && v < (float)nd->nwords * 64 && v == floorf(v) &&
                  (t->bits[nd->cats + (uint32_t)v / 64] >> ((uint32_t)v % 64) & 1);
        next = nd->left + in;
    } else {
        next = nd->left + !(v < nd->cond);
    }
    return &t->nodes[next];
}

/* Trees are walked LANES at a time, a level of each in turn: the walks do not depend on one
 * another, so the processor overlaps their memory reads instead of waiting on each in turn. The
 * leaves are added in tree order, as XGBoost does. */
#define LANES 8

double trees_predict(const trees_t *t, const float *row)
{
    float sum = t->base;
    int k = 0;
    for (; k + LANES <= t->ntrees; k += LANES) {
        const node_t *nd[LANES];
        for (int j = 0; j < LANES; j++)
            nd[j] = &t->nodes[t->roots[k + j]];
        for (int d = 0; d < t->depth; d++)
            for (int j = 0; j < LANES; j++)
                if (nd[j]->feature >= 0)
                    nd[j] = step(t, nd[j], row);
        for (int j = 0; j < LANES; j++)
            sum += nd[j]->cond;
    }
    for (; k < t->ntrees; k++) {
        const node_t *nd = &t->nodes[t->roots[k]];
        while (nd->feature >= 0)
            nd = step(t, nd, row);
        sum += nd->cond;
    }
    return sum;
}
