/* recommendations: POST /api/preferences (a stored preference session), GET /api/recommendations
 * (a session's best homes) and POST /api/recommendations (preferences inline). The rules live in
 * domain/recommend.c; this file finds the candidates, prices them and keeps the best.
 *
 * The listings are scored from an in-process snapshot (compact arrays of every active listing with
 * the model's estimate, built from the store once per listing generation and model version, see
 * "The snapshot" below): every candidate is scored in memory and only the N winners are read back
 * from the store, whole, for the answer (a winner whose row moved on makes the store answer
 * instead). The store path (find_best) remains for what the snapshot cannot answer exactly: rank by
 * bounds first, price later, over a scan of the candidates in the store. Answers are cached per
 * canonical preference set and limit, under the response cache's generation (bumped by every
 * listing write, here or on another instance) and the model version of their estimates.
 * docs/recommendations.md has the design, the memory and the staleness guarantees. */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../domain/pricing.h"
#include "../domain/recommend.h"
#include "../infra/cache.h"
#include "../net/respcache.h"
#include "app.h"

#define PAGE_FIRST 100
#define PAGE_MAX 1600
#define SESSION_ID_BYTES 16 /* 32 hex digits */
#define CACHE_MAX_MB 16
#define ESTIMATES_MB 16
#define ESTIMATE_TTL_MS 86400000 /* a day: entries are never stale, only perhaps unused */

/* Two caches, in process, made on first use and kept for the life of the process:
 * - answers: whole response bodies, per canonical preference set and limit, under the response
 *   cache's generation (shared through Redis when there is one) and the model version; off when
 *   HEARTH_CACHE_MB or HEARTH_CACHE_TTL_MS is 0.
 * - estimates: the model's estimate per (listing id, listing version, model version). A listing's
 *   row and a model version never change under the same numbers, so an entry is never stale (it is
 *   dropped a day after it was made, or when evicted); a prediction costs a few hundred
 *   microseconds, a lookup well under one. */
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static cache_t *answers, *estimates;
static int answers_ttl_ms;

static void cache_init(void)
{
    estimates = cache_memory_open((size_t)ESTIMATES_MB * 1024 * 1024);
    const config_t *cfg = g_app.cfg;
    if (!cfg || cfg->cache_mb <= 0 || cfg->cache_ttl_ms <= 0)
        return;
    int mb = cfg->cache_mb < CACHE_MAX_MB ? cfg->cache_mb : CACHE_MAX_MB;
    answers = cache_memory_open((size_t)mb * 1024 * 1024);
    answers_ttl_ms = cfg->cache_ttl_ms;
}

/* The best N ------------------------------------------------------------------------------------- */

typedef struct pick {
    property_t p; /* a copy in the list's arena, without features */
    rec_score_t s;
} pick_t;

typedef struct best {
    pick_t *items;
    int n, cap;
    arena_t arena; /* the copies; remade when the dropped ones pile up */
    int copies;
} best_t;

static const char *dup_str(arena_t *a, const char *s) { return s ? arena_strdup(a, s) : NULL; }

static const char **dup_list(arena_t *a, const char *const *l, int n)
{
    if (!l || n <= 0)
        return NULL;
    const char **out = arena_alloc(a, (size_t)n * sizeof *out);
    for (int i = 0; i < n; i++)
        out[i] = dup_str(a, l[i]);
    return out;
}

static void property_copy(property_t *d, const property_t *s, arena_t *a)
{
    *d = *s;
    d->title = dup_str(a, s->title);
    d->description = dup_str(a, s->description);
    d->location = dup_str(a, s->location);
    d->city = dup_str(a, s->city);
    d->state = dup_str(a, s->state);
    d->zip = dup_str(a, s->zip);
    d->amenities = dup_list(a, s->amenities, s->namenities);
    d->image_urls = dup_list(a, s->image_urls, s->nimage_urls);
    d->property_type = dup_str(a, s->property_type);
    d->status = dup_str(a, s->status);
    d->features = NULL;
    d->set &= ~PF_BIT(PF_FEATURES);
    d->source = dup_str(a, s->source);
    d->external_id = dup_str(a, s->external_id);
}

static void best_offer(best_t *b, const property_t *h, const rec_score_t *s)
{
    if (b->n == b->cap && rec_compare(s, h, &b->items[b->n - 1].s, &b->items[b->n - 1].p) >= 0)
        return;
    int at = b->n < b->cap ? b->n : b->cap - 1;
    while (at > 0 && rec_compare(s, h, &b->items[at - 1].s, &b->items[at - 1].p) < 0) {
        b->items[at] = b->items[at - 1];
        at--;
    }
    property_copy(&b->items[at].p, h, &b->arena);
    b->items[at].s = *s;
    if (b->n < b->cap)
        b->n++;
    if (++b->copies > 4 * b->cap + 32) { /* keep only the copies still listed */
        arena_t fresh;
        arena_init(&fresh);
        for (int i = 0; i < b->n; i++)
            property_copy(&b->items[i].p, &b->items[i].p, &fresh);
        arena_free(&b->arena);
        b->arena = fresh;
        b->copies = b->n;
    }
}

/* Candidates ------------------------------------------------------------------------------------- */

/* A candidate as the scan leaves it: enough to order it and to read it again. */
typedef struct cand {
    int64_t id, price_cents;
    int bound; /* the best score it can reach (with a model: at the best value; without: its score) */
} cand_t;

typedef struct cands {
    cand_t *v; /* malloc'd; the caller frees it */
    int n, cap;
} cands_t;

static void cands_push(cands_t *cs, const property_t *h, int bound)
{
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 1024;
        cand_t *v = realloc(cs->v, (size_t)cs->cap * sizeof *v);
        if (!v)
            abort(); /* as buf and arena do on out-of-memory */
        cs->v = v;
    }
    cs->v[cs->n++] = (cand_t){h->id, h->price_cents, bound};
}

static void estimate_key(const property_t *h, int model, char *key, size_t *klen)
{
    *klen = (size_t)snprintf(key, 64, "%lld|%lld|%d", (long long)h->id, (long long)h->version, model);
}

/* The estimate of `h` under model version `model` (> 0) when it is in the cache. */
static bool estimate_known(const property_t *h, int model, int64_t *cents)
{
    if (model <= 0)
        return false;
    char key[64];
    size_t klen;
    estimate_key(h, model, key, &klen);
    buf_t v;
    buf_init(&v);
    bool hit = estimates->ops->get(estimates, key, klen, &v) && v.len == sizeof *cents;
    if (hit)
        memcpy(cents, v.data, sizeof *cents);
    buf_free(&v);
    return hit;
}

/* The model's estimate for `h` in cents; 0 when it has none (no model, or none for its market).
 * `model`: the version (> 0: cached under it), -1 a model of unknown version (not cached). */
static int64_t estimate_cents(const property_t *h, int model)
{
    int64_t cents = 0;
    if (estimate_known(h, model, &cents))
        return cents;
    price_estimate_t est;
    err_t e;
    err_clear(&e);
    if (pricing_predict(h, &est, &e) && isfinite(est.price) && est.price > 0 &&
        est.price <= (double)(MONEY_MAX_CENTS / 100))
        cents = llround(est.price * 100.0);
    else if (e.code != ERR_NONE && e.code != ERR_UNAVAILABLE)
        return 0; /* a failure for this listing alone: not remembered */
    /* the model may have changed meanwhile: remember only what `model` said */
    bool same = cents ? est.version == model : pricing_version() == model;
    if (model > 0 && same) {
        char key[64];
        size_t klen;
        estimate_key(h, model, key, &klen);
        estimates->ops->put(estimates, key, klen, &cents, sizeof cents, ESTIMATE_TTL_MS);
    }
    return cents;
}

/* Phase one: every active listing that meets the hard constraints, in (price, id) order, with the
 * bound of its score. Only the list columns are read, a page at a time (pages grow from 100 to
 * 1,600 rows: each page of a location search looks the text up in the trigram index again). */
static bool scan(store_conn_t *c, const rec_prefs_t *p, int model, cands_t *cs, err_t *e)
{
    property_query_t q;
    memset(&q, 0, sizeof q);
    q.set = QF_BIT(QF_STATUS);
    q.status = "active";
    if (p->set & RP_BIT(RP_BUDGET))
        q.set |= QF_BIT(QF_MAX_PRICE), q.max_price = p->budget_cents;
    if (p->set & RP_BIT(RP_MIN_BEDROOMS))
        q.set |= QF_BIT(QF_MIN_BEDROOMS), q.min_bedrooms = p->min_bedrooms;
    if (p->set & RP_BIT(RP_LOCATION))
        q.set |= QF_BIT(QF_LOCATION), q.location = p->location;
    q.sort = SORT_PRICE; /* the ranking's tie-break order: an equal score never displaces an earlier row */
    q.desc = false;
    q.limit = PAGE_FIRST;
    arena_t page;
    arena_init(&page);
    bool ok = true;
    for (;;) {
        property_page_t pg;
        if (!(ok = c->store->ops->property_search(c, &q, &page, &pg, e)))
            break;
        for (int i = 0; i < pg.n; i++) {
            const property_t *h = &pg.items[i];
            if (!rec_passes(p, h))
                continue;
            rec_score_t s;
            int64_t est;
            if (!model || estimate_known(h, model, &est)) { /* the score itself is known */
                rec_score(p, h, model ? est : 0, &s);
                cands_push(cs, h, s.score);
            } else {
                cands_push(cs, h, rec_score_bound(p, h));
            }
        }
        if (!pg.has_more || pg.n == 0)
            break;
        const property_t *last = &pg.items[pg.n - 1];
        q.has_cursor = true;
        q.cursor_value = property_sort_value(last, SORT_PRICE, false);
        q.cursor_id = last->id;
        q.limit = q.limit * 2 > PAGE_MAX ? PAGE_MAX : q.limit * 2;
        arena_reset(&page);
    }
    arena_free(&page);
    return ok;
}

/* Whether a candidate at its best could still enter the list (ties: the cheaper, then the lower id). */
static bool may_enter(const best_t *b, const cand_t *k)
{
    if (b->n < b->cap)
        return true;
    const pick_t *w = &b->items[b->n - 1];
    if (k->bound != w->s.score)
        return k->bound > w->s.score;
    if (k->price_cents != w->p.price_cents)
        return k->price_cents < w->p.price_cents;
    return k->id < w->p.id;
}

/* The best b->cap homes for `p`. Phase one scans (above); phase two reads the candidates again in
 * the order of their bounds, best first, whole (with features: the model's input), prices and
 * scores each, and stops at the first whose bound cannot enter the list: none after it can. */
static bool find_best(store_conn_t *c, const rec_prefs_t *p, int model, best_t *b, err_t *e)
{
    cands_t cs = {0};
    if (!scan(c, p, model, &cs, e)) {
        free(cs.v);
        return false;
    }
    /* a stable counting sort by bound, descending: each bound's candidates stay in (price, id) order */
    int start[1002] = {0};
    for (int i = 0; i < cs.n; i++)
        start[1000 - cs.v[i].bound + 1]++;
    for (int k = 1; k <= 1001; k++)
        start[k] += start[k - 1];
    cand_t *order = malloc((size_t)(cs.n ? cs.n : 1) * sizeof *order);
    if (!order)
        abort();
    for (int i = 0; i < cs.n; i++)
        order[start[1000 - cs.v[i].bound]++] = cs.v[i];
    free(cs.v);
    arena_t one;
    arena_init(&one);
    bool ok = true;
    for (int i = 0; i < cs.n && may_enter(b, &order[i]); i++) {
        property_t h;
        err_t ge;
        err_clear(&ge);
        if (!c->store->ops->property_get(c, order[i].id, &one, &h, &ge)) {
            if (ge.code == ERR_NOT_FOUND)
                continue; /* deleted since the scan */
            *e = ge;
            ok = false;
            break;
        }
        if (rec_passes(p, &h)) { /* else changed since the scan */
            rec_score_t s;
            rec_score(p, &h, model ? estimate_cents(&h, model) : 0, &s);
            best_offer(b, &h, &s);
        }
        arena_reset(&one);
    }
    arena_free(&one);
    free(order);
    return ok;
}

/* The snapshot -----------------------------------------------------------------------------------
 *
 * Every active listing, as the scores read it, in compact arrays built from the store: 64 bytes a
 * home in (price, id) order, 4 more for the index by id, 4 per amenity, plus the distinct
 * location texts (lower-cased) and amenity names once each. A snapshot is made for one listing
 * generation (respcache_generation) and one model version (pricing_version), is never changed once
 * made (but for its `stale` mark), and is reference counted: a request holds the one it started
 * with while another thread builds the next. */

#define SNAP_PAGE 2000
#define SNAP_FEATURES_CHUNK 250 /* ids per feature query */
#define SNAP_MAX_AGE_MS 10000   /* then rebuilt by one request while the others use it */
#define SNAP_RETRY_MS 1000      /* after a failed build, the store answers for this long */
enum { SH_COMMUTE = 1, SH_SCHOOL = 2, SH_DROP = 4 };

typedef struct snap_home {
    int64_t id, version, price_cents, predicted_cents; /* predicted 0: no estimate */
    double school_rating;
    int32_t bedrooms, commute_time;
    uint32_t loc;      /* index in locs */
    uint32_t amen_off; /* first of its amenity ids in amen_ids */
    uint16_t namen, flags;
} snap_home_t;

typedef struct snap {
    int refs; /* under snap_mu */
    bool stale; /* a listing read back differed from its copy here: not used again */
    uint64_t gen;
    int model; /* the version of every estimate here (0: none; -1: mixed, the model changed meanwhile) */
    uint64_t started_ns, built_ns; /* when its build started (it saw every write before) and ended */
    snap_home_t *homes; /* active listings, (price, id) order */
    int n;
    uint32_t *by_id; /* indexes in homes, id order */
    uint32_t *amen_ids; /* per home, distinct, into amen_names */
    size_t namen_ids;
    const char **amen_names; /* sorted (strcmp) */
    int nnames;
    const char **locs; /* ASCII-lower-cased location texts */
    int nlocs;
    bool exotic; /* some location is not plain ASCII: location matches are the store's to make */
    size_t bytes;
    arena_t strings;
} snap_t;

static pthread_mutex_t snap_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t snap_cv = PTHREAD_COND_INITIALIZER;
static snap_t *snap_cur; /* holds one reference */
static bool snap_building;
static uint64_t snap_failed_ns; /* when the last build failed (0: it did not); under snap_mu */

static void snap_free(snap_t *s)
{
    if (!s)
        return;
    free(s->homes);
    free(s->by_id);
    free(s->amen_ids);
    free(s->amen_names);
    free(s->locs);
    arena_free(&s->strings);
    free(s);
}

static void snap_release(snap_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&snap_mu);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&snap_mu);
    if (last)
        snap_free(s);
}

/* A string table for interning while building: open addressing, FNV-1a. */
typedef struct intern {
    const char **keys;
    uint32_t *vals;
    size_t cap, n;
    const char **list; /* by value */
    size_t listcap;
} intern_t;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort(); /* as buf and arena do on out-of-memory */
    return q;
}

static uint32_t intern_get(intern_t *t, const char *k, arena_t *a)
{
    if (2 * (t->n + 1) > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        const char **keys = calloc(cap, sizeof *keys);
        uint32_t *vals = calloc(cap, sizeof *vals);
        if (!keys || !vals)
            abort();
        for (size_t i = 0; i < t->cap; i++)
            if (t->keys[i]) {
                size_t j = fnv(t->keys[i]) & (cap - 1);
                while (keys[j])
                    j = (j + 1) & (cap - 1);
                keys[j] = t->keys[i], vals[j] = t->vals[i];
            }
        free(t->keys);
        free(t->vals);
        t->keys = keys, t->vals = vals, t->cap = cap;
    }
    size_t j = fnv(k) & (t->cap - 1);
    while (t->keys[j]) {
        if (strcmp(t->keys[j], k) == 0)
            return t->vals[j];
        j = (j + 1) & (t->cap - 1);
    }
    const char *copy = arena_strdup(a, k);
    if (t->n == t->listcap) {
        t->listcap = t->listcap ? t->listcap * 2 : 64;
        t->list = xrealloc(t->list, t->listcap * sizeof *t->list);
    }
    t->keys[j] = copy;
    t->vals[j] = (uint32_t)t->n;
    t->list[t->n] = copy;
    return (uint32_t)t->n++;
}

static void intern_free(intern_t *t)
{
    free(t->keys);
    free(t->vals);
    free(t->list);
}

static bool ascii_only(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

static char ascii_lower(char ch) { return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch; }

/* The model's estimate for `h` in cents (0: none). `model` > 0: the version expected; an estimate
 * by another version sets *mixed. */
static int64_t predict_cents(const property_t *h, int model, bool *mixed)
{
    price_estimate_t est;
    err_t e;
    err_clear(&e);
    if (pricing_predict(h, &est, &e) && isfinite(est.price) && est.price > 0 &&
        est.price <= (double)(MONEY_MAX_CENTS / 100)) {
        if (est.version != model)
            *mixed = true;
        return llround(est.price * 100.0);
    }
    if (e.code == ERR_UNAVAILABLE && pricing_version() == model)
        return 0; /* the model has no market for this listing: no estimate, nothing changed */
    if (e.code == ERR_UNAVAILABLE || (e.code == ERR_NONE && est.version != model))
        *mixed = true; /* the model went away or changed meanwhile */
    return 0;
}

typedef struct builder {
    snap_t *s;
    int cap;
    intern_t locs, amens;
    uint32_t *amen_ids;
    size_t namen_ids, amen_cap;
    const snap_t *old; /* estimates are taken from it when it has the same model */
    int model;
    bool mixed;
    int predicted, reused;
} builder_t;

static const snap_home_t *snap_find(const snap_t *s, int64_t id)
{
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (s->homes[s->by_id[mid]].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->homes[s->by_id[lo]].id == id ? &s->homes[s->by_id[lo]] : NULL;
}

/* Fills a home from a row (its estimate is filled later); false when it is not a candidate at all. */
static bool builder_home(builder_t *b, snap_home_t *d, const property_t *h)
{
    memset(d, 0, sizeof *d);
    if (!h->status || strcmp(h->status, "active") != 0)
        return false;
    d->id = h->id;
    d->version = h->version;
    d->price_cents = h->price_cents;
    d->bedrooms = h->bedrooms;
    if (h->set & PF_BIT(PF_COMMUTE_TIME))
        d->flags |= SH_COMMUTE, d->commute_time = h->commute_time;
    if (h->set & PF_BIT(PF_SCHOOL_RATING))
        d->flags |= SH_SCHOOL, d->school_rating = h->school_rating;
    char lower[REC_MAX_LOCATION * 4 + 64], *heap = NULL, *l = lower;
    const char *loc = h->location ? h->location : "";
    size_t len = strlen(loc);
    if (len >= sizeof lower)
        l = heap = xrealloc(NULL, len + 1);
    for (size_t i = 0; i <= len; i++)
        l[i] = ascii_lower(loc[i]);
    if (!ascii_only(l))
        b->s->exotic = true;
    d->loc = intern_get(&b->locs, l, &b->s->strings);
    free(heap);
    d->amen_off = (uint32_t)b->namen_ids;
    for (int i = 0; i < h->namenities; i++) {
        if (!h->amenities[i])
            continue;
        uint32_t id = intern_get(&b->amens, h->amenities[i], &b->s->strings);
        bool dup = false;
        for (size_t k = d->amen_off; k < b->namen_ids && !dup; k++)
            dup = b->amen_ids[k] == id;
        if (dup || d->namen == UINT16_MAX)
            continue;
        if (b->namen_ids == b->amen_cap) {
            b->amen_cap = b->amen_cap ? b->amen_cap * 2 : 4096;
            b->amen_ids = xrealloc(b->amen_ids, b->amen_cap * sizeof *b->amen_ids);
        }
        b->amen_ids[b->namen_ids++] = id;
        d->namen++;
    }
    return true;
}

static bool estimate_known(const property_t *h, int model, int64_t *cents);

/* Estimates for the homes of one page that have none yet: their `features` (the model's input,
 * which the search leaves out) are read in chunks by id, and a row that changed since the page
 * was read is read again whole. */
static bool builder_predict(builder_t *b, store_conn_t *c, property_t *rows, const int *homes, int n, arena_t *a,
                            err_t *e)
{
    for (int at = 0; at < n; at += SNAP_FEATURES_CHUNK) {
        int k = n - at < SNAP_FEATURES_CHUNK ? n - at : SNAP_FEATURES_CHUNK;
        buf_t sql;
        buf_init(&sql);
        buf_puts(&sql, "SELECT id, version, features FROM properties WHERE id IN (");
        const char **vals = arena_alloc(a, (size_t)k * sizeof *vals);
        for (int i = 0; i < k; i++) {
            buf_printf(&sql, "%sCAST($%d AS BIGINT)", i ? ", " : "", i + 1);
            vals[i] = store_num(a, rows[at + i].id);
        }
        buf_puts(&sql, ")");
        store_rows_t r;
        bool ok = store_query(c, buf_cstr(&sql), k, vals, a, &r, e);
        buf_free(&sql);
        if (!ok)
            return false;
        for (int i = 0; i < k; i++) {
            property_t *h = &rows[at + i];
            snap_home_t *d = &b->s->homes[homes[at + i]];
            int found = -1;
            for (int j = 0; j < r.nrows && found < 0; j++) /* k is small and rows come mostly in order */
                if (store_cell_i64(&r, (j + i) % r.nrows, 0) == h->id)
                    found = (j + i) % r.nrows;
            if (found >= 0 && store_cell_i64(&r, found, 1) == h->version) {
                h->features = store_cell(&r, found, 2);
                if (h->features)
                    h->set |= PF_BIT(PF_FEATURES);
            } else { /* changed or deleted since the page was read: read it again */
                property_t fresh;
                err_t ge;
                err_clear(&ge);
                if (!c->store->ops->property_get(c, h->id, a, &fresh, &ge)) {
                    if (ge.code != ERR_NOT_FOUND) {
                        *e = ge;
                        return false;
                    }
                    d->flags |= SH_DROP;
                    continue;
                }
                if (!builder_home(b, d, &fresh)) {
                    d->flags |= SH_DROP;
                    continue;
                }
                *h = fresh;
            }
            d->predicted_cents = predict_cents(h, b->model, &b->mixed);
            b->predicted++;
        }
    }
    return true;
}

static int cmp_price_id(const void *x, const void *y)
{
    const snap_home_t *a = x, *b = y;
    if (a->price_cents != b->price_cents)
        return a->price_cents < b->price_cents ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}
static int cmp_by_id(const void *x, const void *y, void *homes)
{
    const snap_home_t *h = homes;
    int64_t a = h[*(const uint32_t *)x].id, b = h[*(const uint32_t *)y].id;
    return a < b ? -1 : a > b;
}
static int cmp_str(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

/* Builds the snapshot of generation `gen` and model version `model` (read before the store is),
 * taking the estimates it can from `old`. NULL with `e` set on a store error. Runs with no lock
 * held: requests go on meanwhile. */
static snap_t *snap_build(store_conn_t *c, uint64_t gen, int model, const snap_t *old, err_t *e)
{
    uint64_t t0 = time_mono_ns();
    builder_t b = {0};
    b.s = calloc(1, sizeof *b.s);
    if (!b.s)
        abort();
    arena_init(&b.s->strings);
    b.s->gen = gen;
    b.model = model;
    b.old = old && old->model == model && model > 0 ? old : NULL;
    property_query_t q;
    memset(&q, 0, sizeof q);
    q.set = QF_BIT(QF_STATUS);
    q.status = "active";
    q.sort = SORT_CREATED_AT; /* a key no update changes: no row is seen twice while writes go on */
    q.limit = SNAP_PAGE;
    arena_t page;
    arena_init(&page);
    int *todo = malloc(SNAP_PAGE * sizeof *todo);
    property_t *todo_rows = malloc(SNAP_PAGE * sizeof *todo_rows);
    if (!todo || !todo_rows)
        abort();
    bool ok = true;
    for (;;) {
        property_page_t pg;
        if (!(ok = c->store->ops->property_search(c, &q, &page, &pg, e)))
            break;
        if (b.s->n + pg.n > b.cap) {
            b.cap = b.cap ? b.cap * 2 : SNAP_PAGE;
            while (b.cap < b.s->n + pg.n)
                b.cap *= 2;
            b.s->homes = xrealloc(b.s->homes, (size_t)b.cap * sizeof *b.s->homes);
        }
        int ntodo = 0;
        for (int i = 0; i < pg.n; i++) {
            const property_t *h = &pg.items[i];
            snap_home_t *d = &b.s->homes[b.s->n];
            if (!builder_home(&b, d, h))
                continue;
            b.s->n++;
            if (model <= 0)
                continue; /* no model: no estimates */
            const snap_home_t *prev = b.old ? snap_find(b.old, h->id) : NULL;
            int64_t cents;
            if (prev && prev->version == h->version) {
                d->predicted_cents = prev->predicted_cents, b.reused++;
            } else if (estimate_known(h, model, &cents)) {
                d->predicted_cents = cents, b.reused++;
            } else {
                todo[ntodo] = b.s->n - 1;
                todo_rows[ntodo++] = *h;
            }
        }
        if (ntodo && !(ok = builder_predict(&b, c, todo_rows, todo, ntodo, &page, e)))
            break;
        if (!pg.has_more || pg.n == 0)
            break;
        const property_t *last = &pg.items[pg.n - 1];
        q.has_cursor = true;
        q.cursor_value = property_sort_value(last, SORT_CREATED_AT, false);
        q.cursor_id = last->id;
        arena_reset(&page);
    }
    arena_free(&page);
    free(todo);
    free(todo_rows);
    snap_t *s = b.s;
    if (!ok) {
        intern_free(&b.locs);
        intern_free(&b.amens);
        free(b.amen_ids);
        snap_free(s);
        return NULL;
    }
    int n = 0; /* drop the rows found gone or no longer active */
    for (int i = 0; i < s->n; i++)
        if (!(s->homes[i].flags & SH_DROP))
            s->homes[n++] = s->homes[i];
    s->n = n;
    if (n > 0)
        qsort(s->homes, (size_t)n, sizeof *s->homes, cmp_price_id);
    s->by_id = xrealloc(NULL, (size_t)(n > 0 ? n : 1) * sizeof *s->by_id);
    for (int i = 0; i < n; i++)
        s->by_id[i] = (uint32_t)i;
    if (n > 0)
        qsort_r(s->by_id, (size_t)n, sizeof *s->by_id, cmp_by_id, s->homes);
    for (int i = 1; i < n; i++)
        if (s->homes[s->by_id[i]].id == s->homes[s->by_id[i - 1]].id)
            s->stale = true; /* cannot happen with the created_at order; never serve it if it did */
    /* amenity names sorted, so that a wanted one is found by bisection; ids renumbered */
    s->nnames = (int)b.amens.n;
    s->amen_names = xrealloc(NULL, (b.amens.n ? b.amens.n : 1) * sizeof *s->amen_names);
    if (b.amens.n) {
        memcpy(s->amen_names, b.amens.list, b.amens.n * sizeof *s->amen_names);
        qsort(s->amen_names, b.amens.n, sizeof *s->amen_names, cmp_str);
    }
    uint32_t *renum = xrealloc(NULL, (b.amens.n ? b.amens.n : 1) * sizeof *renum);
    for (int i = 0; i < s->nnames; i++)
        renum[intern_get(&b.amens, s->amen_names[i], &s->strings)] = (uint32_t)i;
    for (size_t i = 0; i < b.namen_ids; i++)
        b.amen_ids[i] = renum[b.amen_ids[i]];
    free(renum);
    s->amen_ids = b.amen_ids;
    s->namen_ids = b.namen_ids;
    s->nlocs = (int)b.locs.n;
    s->locs = xrealloc(NULL, (b.locs.n ? b.locs.n : 1) * sizeof *s->locs);
    if (b.locs.n)
        memcpy(s->locs, b.locs.list, b.locs.n * sizeof *s->locs);
    intern_free(&b.locs);
    intern_free(&b.amens);
    s->model = b.mixed ? -1 : model;
    s->started_ns = t0;
    s->built_ns = time_mono_ns();
    s->bytes = (size_t)n * (sizeof *s->homes + sizeof *s->by_id) + s->namen_ids * sizeof *s->amen_ids +
               (size_t)(s->nnames + s->nlocs) * sizeof(char *);
    s->refs = 1;
    log_info("recommendations: snapshot of %d active listings (generation %llu, model %d) built in %.0f ms: "
             "%d estimated, %d reused, %.1f MB",
             n, (unsigned long long)gen, s->model, (double)(s->built_ns - t0) / 1e6, b.predicted, b.reused,
             (double)s->bytes / (1024.0 * 1024.0));
    return s;
}

/* Installs `n` (NULL: the build failed) and wakes the waiters. */
static void snap_finish(snap_t *n)
{
    pthread_mutex_lock(&snap_mu);
    snap_t *prev = NULL;
    if (n) {
        prev = snap_cur;
        snap_cur = n;
        n->refs++; /* the caller's and snap_cur's */
    }
    snap_building = false;
    snap_failed_ns = n ? 0 : time_mono_ns();
    pthread_cond_broadcast(&snap_cv);
    bool last = prev && --prev->refs == 0;
    pthread_mutex_unlock(&snap_mu);
    if (last)
        snap_free(prev);
}

/* A snapshot of the listings as they are at generation *gen (read here) for model `model`, with a
 * reference for the caller; NULL when there is none to be had (the generation is unknown, or the
 * build failed: the store answers). One thread builds at a time. A snapshot of the current
 * generation is used at once, even of another model version or older than SNAP_MAX_AGE_MS (this
 * thread then builds the next one first, the others keep using it); one of an older generation
 * (listings changed since) is never used: the caller waits for the build. */
static snap_t *snap_acquire(store_conn_t *c, int model, uint64_t *gen)
{
    /* a snapshot whose build started after this request arrived has every write this request
     * could know of (a write bumps the generation after it commits), whatever writes came since:
     * under a steady stream of writes a waiter takes the next build instead of waiting for one
     * that ends before the next write */
    uint64_t arrived = time_mono_ns();
    for (;;) {
        uint64_t g = respcache_generation();
        if (!g)
            return NULL;
        *gen = g;
        pthread_mutex_lock(&snap_mu);
        snap_t *s = snap_cur, *old = NULL;
        if (s && !s->stale && (s->gen >= g || s->started_ns >= arrived)) {
            bool renew = s->gen < g || s->model != model ||
                         time_mono_ns() - s->built_ns > (uint64_t)SNAP_MAX_AGE_MS * 1000000;
            s->refs++;
            if (s->gen < g)
                *gen = s->gen; /* answers cached under the generation the snapshot saw */
            if (!renew || snap_building || snap_failed_ns + (uint64_t)SNAP_RETRY_MS * 1000000 > time_mono_ns()) {
                pthread_mutex_unlock(&snap_mu);
                return s;
            }
            old = s;
        } else if (snap_building) {
            pthread_cond_wait(&snap_cv, &snap_mu);
            bool failed = snap_failed_ns >= arrived; /* a build that this request waited for failed */
            pthread_mutex_unlock(&snap_mu);
            if (failed)
                return NULL; /* the store answers; the next build is tried after SNAP_RETRY_MS */
            continue;
        } else if (snap_failed_ns + (uint64_t)SNAP_RETRY_MS * 1000000 > time_mono_ns()) {
            pthread_mutex_unlock(&snap_mu);
            return NULL; /* a build failed a moment ago: the store answers meanwhile */
        } else if (s) {
            old = s;
            s->refs++;
        }
        snap_building = true;
        pthread_mutex_unlock(&snap_mu);
        err_t e;
        err_clear(&e);
        snap_t *n = snap_build(c, g, model, old, &e);
        if (!n)
            log_warn("recommendations: the listing snapshot could not be built: %s", e.message);
        snap_finish(n);
        if (n) {
            snap_release(old);
            return n;
        }
        pthread_mutex_lock(&snap_mu);
        bool usable = old && old->gen >= g && !old->stale;
        pthread_mutex_unlock(&snap_mu);
        if (usable)
            return old; /* still current for the listings */
        snap_release(old);
        return NULL;
    }
}

/* Scoring over a snapshot ------------------------------------------------------------------------- */

typedef struct top {
    int idx;
    rec_score_t s;
} top_t;

/* Whether the lower-cased `hay` contains `needle` (lower-cased). */
static bool contains(const char *hay, const char *needle, size_t nlen)
{
    for (const char *h = hay; (h = strchr(h, needle[0])) != NULL; h++)
        if (strncmp(h, needle, nlen) == 0)
            return true;
    return false;
}

/* The best `limit` candidates of `s` for `p` into top[] (best first); returns how many. Every
 * candidate is scored; the list is kept sorted and, as homes come in (price, id) order, a later
 * home with the same score never displaces an earlier one. */
static int snap_best(const snap_t *s, const rec_prefs_t *p, int limit, top_t *top, arena_t *a)
{
    int n = s->n;
    if (p->set & RP_BIT(RP_BUDGET)) { /* the homes within budget are a prefix */
        int lo = 0, hi = s->n;
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (s->homes[mid].price_cents <= p->budget_cents)
                lo = mid + 1;
            else
                hi = mid;
        }
        n = lo;
    }
    unsigned char *loc_ok = NULL;
    if (p->set & RP_BIT(RP_LOCATION)) {
        size_t len = strlen(p->location);
        char *needle = arena_alloc(a, len + 1);
        for (size_t i = 0; i <= len; i++)
            needle[i] = ascii_lower(p->location[i]);
        loc_ok = arena_alloc(a, (size_t)(s->nlocs ? s->nlocs : 1));
        for (int i = 0; i < s->nlocs; i++)
            loc_ok[i] = contains(s->locs[i], needle, len);
    }
    unsigned char *want = NULL;
    if (p->set & RP_BIT(RP_AMENITIES)) {
        want = arena_zalloc(a, (size_t)(s->nnames ? s->nnames : 1));
        for (int i = 0; i < p->namenities; i++) {
            const char **hit = bsearch(&p->amenities[i], s->amen_names, (size_t)s->nnames, sizeof *s->amen_names, cmp_str);
            if (hit)
                want[hit - s->amen_names] = 1;
        }
    }
    bool beds = p->set & RP_BIT(RP_MIN_BEDROOMS);
    int ntop = 0;
    for (int i = 0; i < n; i++) {
        const snap_home_t *h = &s->homes[i];
        if ((beds && h->bedrooms < p->min_bedrooms) || (loc_ok && !loc_ok[h->loc]))
            continue;
        rec_home_t home = {.price_cents = h->price_cents,
                           .bedrooms = h->bedrooms,
                           .has_commute = h->flags & SH_COMMUTE,
                           .commute_time = h->commute_time,
                           .has_school = h->flags & SH_SCHOOL,
                           .school_rating = h->school_rating};
        if (want)
            for (int k = 0; k < h->namen; k++)
                home.amenities_have += want[s->amen_ids[h->amen_off + k]];
        rec_score_t sc;
        rec_score_home(p, &home, h->predicted_cents, &sc);
        if (ntop == limit && sc.score <= top[ntop - 1].s.score)
            continue; /* ties go to the cheaper, then lower id: the one already kept */
        int at = ntop < limit ? ntop++ : limit - 1;
        while (at > 0 && top[at - 1].s.score < sc.score) {
            top[at] = top[at - 1];
            at--;
        }
        top[at].idx = i;
        top[at].s = sc;
    }
    return ntop;
}

/* The best homes from the snapshot, each read back whole from the store for the answer. false when
 * a winner's row is not the one in the snapshot (changed or deleted by a write whose generation
 * this process has not seen yet): the snapshot is marked stale and the store answers instead. */
static bool snap_answer(snap_t *s, store_conn_t *c, const rec_prefs_t *p, best_t *b, arena_t *a, bool *stale,
                        err_t *e)
{
    top_t *top = arena_alloc(a, (size_t)b->cap * sizeof *top);
    int n = snap_best(s, p, b->cap, top, a);
    arena_t one;
    arena_init(&one);
    bool ok = true;
    for (int i = 0; i < n && ok && !*stale; i++) {
        const snap_home_t *k = &s->homes[top[i].idx];
        property_t h;
        err_t ge;
        err_clear(&ge);
        if (!c->store->ops->property_get(c, k->id, &one, &h, &ge)) {
            if (ge.code == ERR_NOT_FOUND)
                *stale = true;
            else
                *e = ge, ok = false;
        } else if (h.version != k->version || !rec_passes(p, &h)) {
            *stale = true;
        } else {
            rec_score_t sc;
            rec_score(p, &h, k->predicted_cents, &sc);
            if (sc.score != top[i].s.score)
                *stale = true; /* cannot be, with the same version; never answer it if it were */
            else
                best_offer(b, &h, &sc);
        }
        arena_reset(&one);
    }
    arena_free(&one);
    if (*stale) {
        pthread_mutex_lock(&snap_mu);
        s->stale = true;
        pthread_mutex_unlock(&snap_mu);
    }
    return ok;
}

static void write_answer(jw_t *w, const rec_prefs_t *p, const best_t *b, arena_t *a)
{
    jw_obj_begin(w);
    jw_key(w, "items");
    jw_arr_begin(w);
    for (int i = 0; i < b->n; i++) {
        const pick_t *k = &b->items[i];
        jw_obj_begin(w);
        jw_key(w, "property");
        property_write_json(w, &k->p, false);
        jw_key(w, "score");
        jw_double(w, k->s.score / 1000.0);
        jw_key(w, "breakdown");
        jw_obj_begin(w);
        for (int cr = 0; cr < RC__COUNT; cr++)
            if (k->s.applies & (1u << cr)) {
                jw_key(w, rec_criterion_names[cr]);
                jw_double(w, k->s.milli[cr] / 1000.0);
            }
        jw_obj_end(w);
        jw_key(w, "predicted_price");
        if (k->s.predicted_cents > 0)
            jw_money(w, k->s.predicted_cents);
        else
            jw_null(w);
        jw_key(w, "reasons");
        jw_arr_begin(w);
        const char *reasons[RC__COUNT];
        int nr = rec_reasons(p, &k->p, &k->s, a, reasons);
        for (int r = 0; r < nr; r++)
            jw_str(w, reasons[r]);
        jw_arr_end(w);
        jw_obj_end(w);
    }
    jw_arr_end(w);
    jw_obj_end(w);
}

/* Answers with the best `limit` homes for `p`, from the cache when it can; releases `c`. */
static void answer(http_request_t *req, http_response_t *res, store_conn_t *c, const rec_prefs_t *p, int limit)
{
    pthread_once(&cache_once, cache_init);
    int version = pricing_version();
    jw_t w;
    if (answers) {
        uint64_t gen = respcache_generation();
        buf_t key, hit;
        buf_init(&key);
        buf_init(&hit);
        if (gen) {
            jw_t kw;
            buf_printf(&key, "rec|%llu|%d|%d|", (unsigned long long)gen, version, limit);
            jw_init(&kw, &key);
            rec_prefs_write_json(&kw, p);
        }
        bool found = key.len && answers->ops->get(answers, key.data, key.len, &hit);
        buf_free(&key);
        if (found) {
            app_store_done(c);
            http_res_json(res, 200, &w);
            buf_append(&res->body, hit.data, hit.len);
            buf_free(&hit);
            return;
        }
        buf_free(&hit);
    }
    err_t e;
    err_clear(&e);
    best_t b = {.cap = limit};
    b.items = arena_alloc(req->arena, (size_t)limit * sizeof *b.items);
    arena_init(&b.arena);
    /* The snapshot answers unless the location text is not plain ASCII on either side (then only
     * the store's own matching is exact) or a winner turns out to have changed. */
    uint64_t gen = 0;
    int made_by = version; /* the model version of the estimates in the answer; < 0: not cached */
    bool ok, stale = false;
    snap_t *s = NULL;
    if (!(p->set & RP_BIT(RP_LOCATION)) || ascii_only(p->location))
        s = snap_acquire(c, version, &gen);
    bool exotic = s && s->exotic && (p->set & RP_BIT(RP_LOCATION)); /* the store matches locations */
    if (s && !exotic) {
        made_by = s->model;
        ok = snap_answer(s, c, p, &b, req->arena, &stale, &e);
        if (stale) { /* start again from the store */
            arena_free(&b.arena);
            b = (best_t){.cap = limit, .items = b.items};
            arena_init(&b.arena);
        }
    }
    if (!s || exotic || stale) {
        if (!gen)
            gen = respcache_generation();
        made_by = version;
        ok = find_best(c, p, version, &b, &e);
    }
    snap_release(s);
    app_store_done(c);
    if (ok) {
        http_res_json(res, 200, &w);
        buf_reserve(&res->body, (size_t)b.n * 2000);
        write_answer(&w, p, &b, req->arena);
        if (answers && gen && made_by >= 0) {
            buf_t key;
            buf_init(&key);
            jw_t kw;
            buf_printf(&key, "rec|%llu|%d|%d|", (unsigned long long)gen, made_by, limit);
            jw_init(&kw, &key);
            rec_prefs_write_json(&kw, p);
            answers->ops->put(answers, key.data, key.len, res->body.data, res->body.len, answers_ttl_ms);
            buf_free(&key);
        }
    } else {
        http_res_error(req, res, &e);
    }
    arena_free(&b.arena);
}

/* Sessions --------------------------------------------------------------------------------------- */

static bool session_id_valid(const char *s)
{
    if (strlen(s) != 2 * SESSION_ID_BYTES)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* The body of POST /api/preferences or /api/recommendations as preferences (and a limit when
 * `limit` is given); false with the error written. */
static bool read_body(http_request_t *req, http_response_t *res, rec_prefs_t *p, int *limit)
{
    err_t e;
    err_clear(&e);
    json_t *body = http_json_body(req, &e);
    if (!body) {
        http_res_error(req, res, &e);
        return false;
    }
    bool ok = rec_prefs_from_json(body, p, limit, req->arena, &e);
    json_decref(body);
    if (!ok) {
        if (e.code == ERR_NONE)
            e.code = ERR_VALIDATION;
        http_res_error(req, res, &e);
    }
    return ok;
}

void preferences_create(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor); /* anyone; a token, when sent, must be valid */
    if (!c)
        return;
    rec_prefs_t p;
    if (!read_body(req, res, &p, NULL)) {
        app_store_done(c);
        return;
    }
    buf_t canon;
    buf_init(&canon);
    jw_t cw;
    jw_init(&cw, &canon);
    rec_prefs_write_json(&cw, &p);
    err_t e;
    err_clear(&e);
    char id[2 * SESSION_ID_BYTES + 1];
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) { /* a taken id: 2^-128; still, draw again */
        unsigned char raw[SESSION_ID_BYTES];
        rand_bytes(raw, sizeof raw);
        for (int i = 0; i < SESSION_ID_BYTES; i++)
            snprintf(id + 2 * i, 3, "%02x", raw[i]);
        const char *vals[4] = {id, buf_cstr(&canon), actor.known ? store_num(req->arena, actor.user.id) : NULL,
                               store_num(req->arena, time_now_us())};
        store_rows_t rows;
        err_clear(&e);
        ok = store_query(c,
                         "INSERT INTO preference_sessions (id, preferences, user_id, created_at)"
                         " VALUES ($1, $2, CAST($3 AS BIGINT), CAST($4 AS BIGINT))",
                         4, vals, req->arena, &rows, &e);
        if (!ok && e.code != ERR_CONFLICT)
            break;
    }
    app_store_done(c);
    if (!ok) {
        buf_free(&canon);
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 201, &w);
    jw_obj_begin(&w);
    jw_kstr(&w, "session_id", id);
    jw_key(&w, "preferences");
    jw_raw(&w, canon.data, canon.len);
    jw_obj_end(&w);
    buf_free(&canon);
    http_res_header(res, "Location", "/api/recommendations?session_id=%s", id);
}

void recommendations_get(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    http_query_t q;
    if (!http_query_parse(req, &q, &e)) {
        http_res_error(req, res, &e);
        return;
    }
    int limit = REC_LIMIT_DEFAULT;
    const char *v = http_query_get(&q, "limit");
    if (v) {
        int64_t x;
        if (!parse_i64(v, &x)) {
            http_res_errorf(req, res, ERR_BAD_REQUEST, "limit must be an integer, got \"%.40s\"", v);
            return;
        }
        if (x < 1 || x > REC_LIMIT_MAX)
            err_field(&e, "limit", "must be from 1 to %d", REC_LIMIT_MAX);
        else
            limit = (int)x;
    }
    const char *sid = http_query_get(&q, "session_id");
    if (!sid || !*sid)
        err_field(&e, "session_id", "is required: the session_id POST /api/preferences returned");
    if (e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    store_rows_t rows = {0};
    if (session_id_valid(sid)) {
        const char *vals[1] = {sid};
        if (!store_query(c, "SELECT preferences, user_id FROM preference_sessions WHERE id = $1", 1, vals,
                         req->arena, &rows, &e)) {
            app_store_done(c);
            http_res_error(req, res, &e);
            return;
        }
    }
    if (rows.nrows == 0) {
        app_store_done(c);
        http_res_errorf(req, res, ERR_NOT_FOUND, "no such preference session");
        return;
    }
    int64_t owner = store_cell_i64(&rows, 0, 1);
    if (owner && !(actor.known && (actor.user.id == owner || actor.user.role == ROLE_ADMIN))) {
        app_store_done(c);
        if (actor.known) {
            http_res_errorf(req, res, ERR_FORBIDDEN, "this preference session belongs to another user");
        } else {
            http_res_errorf(req, res, ERR_UNAUTHORIZED,
                            "this preference session belongs to a user: send their access token");
            http_res_header(res, "WWW-Authenticate", "Bearer");
        }
        return;
    }
    const char *stored = store_cell(&rows, 0, 0);
    json_t *doc = stored ? json_loads(stored, 0, NULL) : NULL;
    rec_prefs_t p;
    bool ok = doc && rec_prefs_from_json(doc, &p, NULL, req->arena, &e);
    json_decref(doc);
    if (!ok) {
        app_store_done(c);
        log_error("recommendations: preference session %s holds preferences that no longer read: %s", sid,
                  e.ndetails ? e.details[0].message : "not JSON");
        http_res_errorf(req, res, ERR_INTERNAL, "internal error");
        return;
    }
    answer(req, res, c, &p, limit);
}

void recommendations_post(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    rec_prefs_t p;
    int limit = REC_LIMIT_DEFAULT;
    if (!read_body(req, res, &p, &limit)) {
        app_store_done(c);
        return;
    }
    answer(req, res, c, &p, limit);
}
