/* images: see images.h.
 *
 * Originals are counted, not owned: an upload first counts its reference (object_refs, its own
 * transaction), then stores the bytes, then commits the image row with its job and event; a
 * failure after the count takes it back. The row gives the count back when it goes, by a trigger
 * (migrations 0006: whatever deletes it, the image route or its listing's cascade), or when its
 * processing finds it undecodable (status failed). The `image.delete_objects` job deletes an
 * original only inside a transaction that removes its count row while the count is 0, so an upload
 * of the same bytes either counts first (the job then leaves them) or stores them again after. */
#include "images.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/util.h"
#include "../infra/modelclient.h"
#include "account.h"
#include "imageindex.h"
#include "worker.h"

#define IMAGE_COLUMNS                                                                                          \
    "id, property_id, status, error, filename, content_type, sha256, original_key, public_key, medium_key, "  \
    "thumb_key, size_bytes, width, height, phash, colors, labels, brightness, sharpness, too_dark, blurry, " \
    "job_id, created_by, created_at, updated_at, processed_at"
#define MAX_DUPLICATES 100

static objects_t *objects;
static void (*changed)(void); /* listings changed (image_urls): the response cache forgets them */
static bool model_service;    /* MODEL_SERVICE_URL is set: features come from the model client */
static bool pgvector;         /* PostgreSQL with pgvector: embeddings in images.embedding_v too */

bool images_pgvector(void) { return pgvector; }

/* pgvector's text form of an embedding, "[f,f,...]". */
static const char *vector_text(const float *v, arena_t *a)
{
    buf_t b;
    buf_init(&b);
    buf_putc(&b, '[');
    for (int i = 0; i < IMAGEPROC_DIM; i++)
        buf_printf(&b, "%s%.9g", i ? "," : "", (double)v[i]);
    buf_putc(&b, ']');
    const char *out = arena_strndup(a, b.data, b.len);
    buf_free(&b);
    return out;
}

objects_t *images_objects(void) { return objects; }

static void image_read(const store_rows_t *r, int row, image_t *m)
{
    memset(m, 0, sizeof *m);
    m->id = store_cell_i64(r, row, 0);
    m->property_id = store_cell_i64(r, row, 1);
    m->status = store_cell(r, row, 2);
    m->error = store_cell(r, row, 3);
    m->filename = store_cell(r, row, 4);
    m->content_type = store_cell(r, row, 5);
    m->sha256 = store_cell(r, row, 6);
    m->original_key = store_cell(r, row, 7);
    m->public_key = store_cell(r, row, 8);
    m->medium_key = store_cell(r, row, 9);
    m->thumb_key = store_cell(r, row, 10);
    m->size_bytes = store_cell_i64(r, row, 11);
    m->width = (int)store_cell_i64(r, row, 12);
    m->height = (int)store_cell_i64(r, row, 13);
    m->processed = store_cell(r, row, 14) != NULL;
    m->phash = (uint64_t)store_cell_i64(r, row, 14);
    m->colors = store_cell(r, row, 15);
    m->labels = store_cell(r, row, 16);
    m->brightness = store_cell(r, row, 17) ? strtod(store_cell(r, row, 17), NULL) : 0;
    m->sharpness = store_cell(r, row, 18) ? strtod(store_cell(r, row, 18), NULL) : 0;
    m->too_dark = store_cell_i64(r, row, 19) != 0;
    m->blurry = store_cell_i64(r, row, 20) != 0;
    m->job_id = store_cell_i64(r, row, 21);
    m->created_by = store_cell_i64(r, row, 22);
    m->created_at = store_cell_i64(r, row, 23);
    m->updated_at = store_cell_i64(r, row, 24);
    m->processed_at = store_cell_i64(r, row, 25);
}

static img_type_t type_of(const char *content_type)
{
    if (!content_type)
        return IMG_NONE;
    for (img_type_t t = IMG_JPEG; t <= IMG_WEBP; t++)
        if (strcmp(content_type, imageproc_mime(t)) == 0)
            return t;
    return IMG_NONE;
}

/* Reads -------------------------------------------------------------------------------------------- */

bool image_get(store_conn_t *c, int64_t id, arena_t *a, image_t *out, err_t *e)
{
    const char *v[] = {store_num(a, id)};
    store_rows_t r;
    if (!store_query(c, "SELECT " IMAGE_COLUMNS " FROM images WHERE id = CAST($1 AS BIGINT)", 1, v, a, &r, e))
        return false;
    if (r.nrows == 0)
        return err_set(e, ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    image_read(&r, 0, out);
    return true;
}

bool image_list(store_conn_t *c, int64_t property_id, int64_t before_id, int limit, arena_t *a, image_t **items, int *n,
                bool *more, err_t *e)
{
    const char *v[] = {store_num(a, property_id), store_num(a, before_id > 0 ? before_id : INT64_MAX),
                       store_num(a, limit + 1)};
    store_rows_t r;
    if (!store_query(c,
                     "SELECT " IMAGE_COLUMNS " FROM images WHERE property_id = CAST($1 AS BIGINT)"
                     " AND id < CAST($2 AS BIGINT) ORDER BY id DESC LIMIT CAST($3 AS BIGINT)",
                     3, v, a, &r, e))
        return false;
    *more = r.nrows > limit;
    *n = *more ? limit : r.nrows;
    *items = arena_zalloc(a, sizeof **items * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++)
        image_read(&r, i, &(*items)[i]);
    return true;
}

bool image_get_many(store_conn_t *c, const int64_t *ids, int n, arena_t *a, image_t *out, int *found, err_t *e)
{
    *found = 0;
    if (n == 0)
        return true;
    buf_t sql;
    buf_init(&sql);
    buf_puts(&sql, "SELECT " IMAGE_COLUMNS " FROM images WHERE id IN (");
    const char **v = arena_alloc(a, sizeof *v * (size_t)n);
    for (int i = 0; i < n; i++) {
        buf_printf(&sql, "%sCAST($%d AS BIGINT)", i ? ", " : "", i + 1);
        v[i] = store_num(a, ids[i]);
    }
    buf_puts(&sql, ")");
    store_rows_t r;
    bool ok = store_query(c, buf_cstr(&sql), n, v, a, &r, e);
    buf_free(&sql);
    if (!ok)
        return false;
    for (int i = 0; i < n; i++) /* in the order asked */
        for (int k = 0; k < r.nrows; k++)
            if (store_cell_i64(&r, k, 0) == ids[i]) {
                image_read(&r, k, &out[(*found)++]);
                break;
            }
    return true;
}

static void write_url(jw_t *w, const char *key, const image_t *m, const char *variant, bool present)
{
    jw_key(w, key);
    if (!present) {
        jw_null(w);
        return;
    }
    char url[96];
    snprintf(url, sizeof url, "/api/images/%lld/content?variant=%s", (long long)m->id, variant);
    jw_str(w, url);
}

void image_write_json(jw_t *w, const image_t *m)
{
    image_write_fields(w, m);
    jw_obj_end(w);
}

void image_write_fields(jw_t *w, const image_t *m)
{
    bool ready = strcmp(m->status, "ready") == 0;
    jw_obj_begin(w);
    jw_kint(w, "id", m->id);
    jw_kint(w, "property_id", m->property_id);
    jw_kstr(w, "status", m->status);
    jw_kstr(w, "error", m->error);
    jw_kstr(w, "filename", m->filename);
    jw_kstr(w, "content_type", m->content_type);
    jw_kint(w, "size_bytes", m->size_bytes);
    jw_kstr(w, "sha256", m->sha256);
    jw_key(w, "width");
    if (ready)
        jw_int(w, m->width);
    else
        jw_null(w);
    jw_key(w, "height");
    if (ready)
        jw_int(w, m->height);
    else
        jw_null(w);
    jw_key(w, "urls");
    jw_obj_begin(w);
    write_url(w, "thumb", m, "thumb", ready);
    write_url(w, "medium", m, "medium", ready);
    write_url(w, "original", m, "original", ready);
    jw_obj_end(w);
    jw_key(w, "phash");
    if (m->processed) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)m->phash);
        jw_str(w, hex);
    } else {
        jw_null(w);
    }
    jw_key(w, "colors");
    if (m->colors)
        jw_raw(w, m->colors, strlen(m->colors));
    else
        jw_null(w);
    jw_key(w, "labels");
    if (m->labels)
        jw_raw(w, m->labels, strlen(m->labels));
    else
        jw_null(w);
    jw_key(w, "quality");
    if (ready) {
        jw_obj_begin(w);
        jw_key(w, "brightness");
        jw_double(w, m->brightness);
        jw_key(w, "sharpness");
        jw_double(w, m->sharpness);
        jw_key(w, "too_dark");
        jw_bool(w, m->too_dark);
        jw_key(w, "blurry");
        jw_bool(w, m->blurry);
        jw_obj_end(w);
    } else {
        jw_null(w);
    }
    jw_kint(w, "job_id", m->job_id);
    jw_key(w, "created_at");
    jw_time(w, m->created_at);
    jw_key(w, "updated_at");
    jw_time(w, m->updated_at);
    jw_key(w, "processed_at");
    if (m->processed_at)
        jw_time(w, m->processed_at);
    else
        jw_null(w);
}

bool image_write_duplicates(store_conn_t *c, int64_t id, arena_t *a, jw_t *w, err_t *e)
{
    const char *v[] = {store_num(a, id)};
    store_rows_t r;
    if (!store_query(c,
                     "SELECT d.duplicate_id, i.property_id, d.distance, d.similarity FROM image_duplicates d"
                     " JOIN images i ON i.id = d.duplicate_id WHERE d.image_id = CAST($1 AS BIGINT)"
                     " ORDER BY d.distance, d.duplicate_id",
                     1, v, a, &r, e))
        return false;
    jw_key(w, "duplicates");
    jw_arr_begin(w);
    for (int i = 0; i < r.nrows; i++) {
        jw_obj_begin(w);
        jw_kint(w, "image_id", store_cell_i64(&r, i, 0));
        jw_kint(w, "property_id", store_cell_i64(&r, i, 1));
        jw_kint(w, "distance", store_cell_i64(&r, i, 2));
        jw_key(w, "similarity");
        jw_double(w, strtod(store_cell(&r, i, 3), NULL));
        jw_obj_end(w);
    }
    jw_arr_end(w);
    return true;
}

/* Writes -------------------------------------------------------------------------------------------- */

/* Adds `delta` to the count of `key` (creating it at 1), in a transaction of its own. */
static bool count_ref(store_conn_t *c, const char *key, int delta, int64_t size, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {key, store_num(&a, size), store_num(&a, time_now_us()), store_num(&a, delta)};
    store_rows_t r;
    bool ok = c->store->ops->begin(c, e) &&
              store_finish(c,
                           delta > 0 ? store_query(c,
                                                   "INSERT INTO object_refs (key, refs, size_bytes, created_at)"
                                                   " VALUES ($1, 1, CAST($2 AS BIGINT), CAST($3 AS BIGINT))"
                                                   " ON CONFLICT (key) DO UPDATE SET refs = object_refs.refs + 1",
                                                   3, v, &a, &r, e)
                                     : store_query(c,
                                                   "UPDATE object_refs SET refs = refs + CAST($2 AS INTEGER)"
                                                   " WHERE key = $1 AND refs > 0",
                                                   2, (const char *[]){key, v[3]}, &a, &r, e),
                           e);
    arena_free(&a);
    return ok;
}

/* The image's listing: image_urls become its processed images' content URLs (medium variant). */
static bool refresh_urls(store_conn_t *c, int64_t property_id, arena_t *a, err_t *e)
{
    const char *v[] = {store_num(a, property_id), store_num(a, time_now_us())};
    store_rows_t r;
    if (!store_query(c, "SELECT id FROM images WHERE property_id = CAST($1 AS BIGINT) AND status = 'ready' ORDER BY id",
                     1, v, a, &r, e))
        return false;
    buf_t urls;
    buf_init(&urls);
    buf_putc(&urls, '[');
    for (int i = 0; i < r.nrows; i++)
        buf_printf(&urls, "%s\"/api/images/%s/content?variant=medium\"", i ? "," : "", store_cell(&r, i, 0));
    buf_putc(&urls, ']');
    const char *u[] = {v[0], buf_cstr(&urls), v[1]};
    store_rows_t ur;
    bool ok = store_query(c,
                          "UPDATE properties SET image_urls = $2, version = version + 1, updated_at = CAST($3 AS BIGINT)"
                          " WHERE id = CAST($1 AS BIGINT)",
                          3, u, a, &ur, e);
    buf_free(&urls);
    return ok;
}

static bool property_event(store_conn_t *c, int64_t property_id, const char *type, int64_t image_id, const char *status,
                           arena_t *a, err_t *e)
{
    store_event_t ev = {.channel = arena_printf(a, "property:%lld", (long long)property_id), .type = type,
                        .data = arena_printf(a, "{\"id\":%lld,\"image_id\":%lld,\"status\":\"%s\"}", (long long)property_id,
                                             (long long)image_id, status)};
    return store_event_write(c, &ev, e);
}

bool image_create(store_conn_t *c, const image_upload_t *in, arena_t *a, image_t *out, job_t *job, err_t *e)
{
    const char *key = arena_printf(a, "originals/%s.%s", in->sha256, imageproc_ext(in->type));
    if (!count_ref(c, key, +1, in->size, e))
        return false;
    if (!objects_put_file(objects, key, in->path, imageproc_mime(in->type), e)) {
        err_t ignore;
        err_clear(&ignore);
        count_ref(c, key, -1, 0, &ignore);
        return false;
    }
    int64_t now = time_now_us();
    const char *v[] = {store_num(a, in->property_id), in->filename, imageproc_mime(in->type), store_num(a, in->size),
                       in->sha256, key, in->created_by ? store_num(a, in->created_by) : NULL, store_num(a, now)};
    store_rows_t r;
    bool ok = c->store->ops->begin(c, e);
    ok = ok && store_query(c,
                           "INSERT INTO images (property_id, status, filename, content_type, size_bytes, sha256,"
                           " original_key, created_by, created_at, updated_at) VALUES (CAST($1 AS BIGINT), 'queued',"
                           " $2, $3, CAST($4 AS BIGINT), $5, $6, CAST($7 AS BIGINT), CAST($8 AS BIGINT),"
                           " CAST($8 AS BIGINT)) RETURNING " IMAGE_COLUMNS,
                           8, v, a, &r, e);
    if (ok) {
        image_read(&r, 0, out);
        char payload[64];
        snprintf(payload, sizeof payload, "{\"image_id\":%lld}", (long long)out->id);
        job_spec_t spec = {.type = "image.process", .payload = payload, .max_attempts = 3, .created_by = in->created_by};
        bool existed;
        ok = queue_enqueue(c, &spec, a, job, &existed, e);
    }
    if (ok) {
        const char *u[] = {store_num(a, out->id), store_num(a, job->id)};
        store_rows_t ur;
        out->job_id = job->id;
        ok = store_query(c, "UPDATE images SET job_id = CAST($2 AS BIGINT) WHERE id = CAST($1 AS BIGINT)", 2, u, a, &ur, e) &&
             property_event(c, in->property_id, "image_uploaded", out->id, "queued", a, e) &&
             (!in->audit || account_audit(c, in->audit, e));
    }
    if (!store_finish(c, ok, e)) {
        err_t ignore;
        err_clear(&ignore);
        count_ref(c, key, -1, 0, &ignore); /* the bytes stay for gc or the next upload of them */
        return false;
    }
    worker_wake();
    return true;
}

/* A job that deletes objects `keys` (originals only when nothing counts them). */
static bool enqueue_deletion(store_conn_t *c, const char *const *keys, int n, arena_t *a, err_t *e)
{
    jw_t w;
    buf_t p;
    buf_init(&p);
    jw_init(&w, &p);
    jw_obj_begin(&w);
    jw_key(&w, "keys");
    jw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        if (keys[i])
            jw_str(&w, keys[i]);
    jw_arr_end(&w);
    jw_obj_end(&w);
    job_spec_t spec = {.type = "image.delete_objects", .payload = buf_cstr(&p), .max_attempts = 10};
    job_t job;
    bool existed;
    bool ok = queue_enqueue(c, &spec, a, &job, &existed, e);
    buf_free(&p);
    return ok;
}

bool image_delete(store_conn_t *c, const image_t *m, const store_audit_t *audit, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {store_num(&a, m->id)};
    store_rows_t r;
    const char *keys[] = {m->original_key, m->public_key, m->medium_key, m->thumb_key};
    /* the row's trigger gives up its original's count (migrations 0006); a row already gone (a
     * concurrent delete) is a 404 and changes nothing */
    bool ok = c->store->ops->begin(c, e) &&
              store_finish(c,
                           store_query(c, "DELETE FROM images WHERE id = CAST($1 AS BIGINT) RETURNING id", 1, v, &a, &r, e) &&
                               (r.nrows == 1 || err_set(e, ERR_NOT_FOUND, "no image with id %lld", (long long)m->id)) &&
                               enqueue_deletion(c, keys, 4, &a, e) && refresh_urls(c, m->property_id, &a, e) &&
                               property_event(c, m->property_id, "image_deleted", m->id, "deleted", &a, e) &&
                               (!audit || account_audit(c, audit, e)),
                           e);
    arena_free(&a);
    if (ok) {
        imageindex_remove(m->id);
        worker_wake();
        if (changed)
            changed();
    }
    return ok;
}

bool image_listing_objects(store_conn_t *c, int64_t property_id, arena_t *a, image_objects_t *out, err_t *e)
{
    const char *v[] = {store_num(a, property_id)};
    store_rows_t r;
    if (!store_query(c,
                     "SELECT id, original_key, public_key, medium_key, thumb_key FROM images"
                     " WHERE property_id = CAST($1 AS BIGINT)",
                     1, v, a, &r, e))
        return false;
    out->n = r.nrows;
    out->ids = arena_alloc(a, sizeof *out->ids * (size_t)(r.nrows + 1));
    out->keys = arena_alloc(a, sizeof *out->keys * (size_t)(4 * r.nrows + 1));
    for (int i = 0; i < r.nrows; i++) {
        out->ids[i] = store_cell_i64(&r, i, 0);
        for (int k = 0; k < 4; k++)
            out->keys[4 * i + k] = store_cell(&r, i, 1 + k);
    }
    return true;
}

bool image_release_objects(store_conn_t *c, const image_objects_t *o, err_t *e)
{
    if (o->n == 0)
        return true;
    arena_t a;
    arena_init(&a);
    /* the counts went down with the rows (their trigger); what is left is the job */
    bool ok = c->store->ops->begin(c, e) && store_finish(c, enqueue_deletion(c, o->keys, 4 * o->n, &a, e), e);
    arena_free(&a);
    if (ok) {
        for (int i = 0; i < o->n; i++)
            imageindex_remove(o->ids[i]);
        worker_wake();
    }
    return ok;
}

/* Jobs ---------------------------------------------------------------------------------------------- */

static job_outcome_t fail(char *error, size_t errlen, job_outcome_t o, const char *why)
{
    snprintf(error, errlen, "%s", why);
    return o;
}

/* The image failed to decode: its row says why, and its original is released. */
static bool mark_failed(store_conn_t *c, const image_t *m, const char *why, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {store_num(&a, m->id), why, store_num(&a, time_now_us())};
    store_rows_t r;
    const char *keys[] = {m->original_key};
    bool ok = c->store->ops->begin(c, e) &&
              store_finish(c,
                           store_query(c,
                                       "UPDATE images SET status = 'failed', error = $2, updated_at = CAST($3 AS BIGINT)"
                                       " WHERE id = CAST($1 AS BIGINT)",
                                       3, v, &a, &r, e) &&
                               store_query(c, "UPDATE object_refs SET refs = refs - 1 WHERE key = $1 AND refs > 0", 1,
                                           &m->original_key, &a, &r, e) &&
                               enqueue_deletion(c, keys, 1, &a, e) &&
                               property_event(c, m->property_id, "image_processed", m->id, "failed", &a, e),
                           e);
    arena_free(&a);
    return ok;
}

static void json_colors(buf_t *out, const image_features_t *f)
{
    buf_putc(out, '[');
    for (int i = 0; i < f->ncolors; i++)
        buf_printf(out, "%s\"#%06x\"", i ? "," : "", (unsigned)f->colors[i] & 0xffffff);
    buf_putc(out, ']');
}

static void json_labels(buf_t *out, const image_features_t *f)
{
    jw_t w;
    jw_init(&w, out);
    jw_arr_begin(&w);
    for (int i = 0; i < f->nlabels; i++)
        jw_str(&w, f->labels[i]);
    jw_arr_end(&w);
}

/* The processed image's row, its duplicates (both ways) and its listing's URLs, in one transaction. */
static bool record(store_conn_t *c, const image_t *m, const image_features_t *f, const char *const keys[3],
                   const imageindex_hit_t *dups, int ndups, err_t *e)
{
    arena_t a;
    arena_init(&a);
    buf_t colors, labels;
    buf_init(&colors);
    buf_init(&labels);
    json_colors(&colors, f);
    json_labels(&labels, f);
    char *emb = arena_alloc(&a, IMAGEPROC_EMBEDDING_HEX);
    imageindex_embedding_encode(f->embedding, emb);
    int64_t now = time_now_us();
    const char *v[] = {store_num(&a, m->id), keys[0], keys[1], keys[2], store_num(&a, f->width), store_num(&a, f->height),
                       store_num(&a, (int64_t)f->phash), emb, buf_cstr(&colors), buf_cstr(&labels),
                       arena_printf(&a, "%.6g", f->brightness), arena_printf(&a, "%.6g", f->sharpness),
                       f->too_dark ? "1" : "0", f->blurry ? "1" : "0", store_num(&a, now)};
    store_rows_t r;
    bool ok = c->store->ops->begin(c, e) &&
              store_query(c,
                          "UPDATE images SET status = 'ready', error = NULL, public_key = $2, medium_key = $3,"
                          " thumb_key = $4, width = CAST($5 AS INTEGER), height = CAST($6 AS INTEGER),"
                          " phash = CAST($7 AS BIGINT), embedding = $8, colors = $9, labels = $10,"
                          " brightness = CAST($11 AS DOUBLE PRECISION), sharpness = CAST($12 AS DOUBLE PRECISION),"
                          " too_dark = CAST($13 AS INTEGER), blurry = CAST($14 AS INTEGER),"
                          " processed_at = CAST($15 AS BIGINT), updated_at = CAST($15 AS BIGINT)"
                          " WHERE id = CAST($1 AS BIGINT) RETURNING id",
                          15, v, &a, &r, e) &&
              (r.nrows == 1 || err_set(e, ERR_NOT_FOUND, "the image was deleted while it was processed")) &&
              store_query(c,
                          "DELETE FROM image_duplicates WHERE image_id = CAST($1 AS BIGINT) OR duplicate_id = CAST($1 AS BIGINT)",
                          1, v, &a, &r, e) &&
              (!pgvector || store_query(c,
                                        "UPDATE images SET embedding_v = CAST($2 AS vector),"
                                        " phash_bits = CAST(CAST($3 AS BIGINT) AS bit(64)) WHERE id = CAST($1 AS BIGINT)",
                                        3, (const char *[]){v[0], vector_text(f->embedding, &a), v[6]}, &a, &r, e));
    for (int i = 0; ok && i < ndups; i++) {
        const char *d[] = {v[0], store_num(&a, dups[i].id), store_num(&a, dups[i].distance),
                           arena_printf(&a, "%.6f", dups[i].similarity)};
        /* the other image may have been deleted since the index saw it */
        ok = store_query(c,
                         "INSERT INTO image_duplicates (image_id, duplicate_id, distance, similarity)"
                         " SELECT CAST($1 AS BIGINT), CAST($2 AS BIGINT), CAST($3 AS INTEGER), CAST($4 AS DOUBLE PRECISION)"
                         " WHERE EXISTS (SELECT 1 FROM images WHERE id = CAST($2 AS BIGINT))"
                         " UNION ALL SELECT CAST($2 AS BIGINT), CAST($1 AS BIGINT), CAST($3 AS INTEGER),"
                         " CAST($4 AS DOUBLE PRECISION) WHERE EXISTS (SELECT 1 FROM images WHERE id = CAST($2 AS BIGINT))",
                         4, d, &a, &r, e);
    }
    ok = ok && refresh_urls(c, m->property_id, &a, e) &&
         property_event(c, m->property_id, "image_processed", m->id, "ready", &a, e);
    ok = store_finish(c, ok, e);
    buf_free(&colors);
    buf_free(&labels);
    arena_free(&a);
    return ok;
}

/* Stores one variant; false with `e` set. */
static bool put_variant(const char *key, const buf_t *b, const char *type, err_t *e)
{
    return objects_put(objects, key, b->data, b->len, type, e);
}

/* PostgreSQL with pgvector: the candidates from the Hamming HNSW index on images.phash_bits, nearest
 * first, kept while within IMAGEPROC_DUP_RADIUS and when imageproc_near_duplicate says so. */
static bool pg_duplicates(store_conn_t *c, int64_t self, const image_features_t *f, imageindex_hit_t *out, int max,
                          int *n, err_t *e)
{
    arena_t a;
    arena_init(&a);
    const char *v[] = {store_num(&a, (int64_t)f->phash), store_num(&a, self), store_num(&a, max)};
    store_rows_t r, set;
    bool ok = store_query(c, "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', false),"
                             " set_config('hnsw.ef_search', '100', false)",
                          0, NULL, &a, &set, e) &&
              store_query(c,
                          "SELECT id, property_id, phash, embedding FROM images WHERE phash_bits IS NOT NULL"
                          " AND status = 'ready' AND id <> CAST($2 AS BIGINT)"
                          " ORDER BY phash_bits <~> CAST(CAST($1 AS BIGINT) AS bit(64)) LIMIT CAST($3 AS INTEGER)",
                          3, v, &a, &r, e);
    image_features_t *cand = calloc(1, sizeof *cand);
    *n = 0;
    for (int i = 0; ok && i < r.nrows && *n < max; i++) {
        cand->phash = (uint64_t)store_cell_i64(&r, i, 2);
        int dist = imageproc_hamming(f->phash, cand->phash);
        if (dist > IMAGEPROC_DUP_RADIUS || !imageindex_embedding_decode(store_cell(&r, i, 3), cand->embedding) ||
            !imageproc_near_duplicate(f, cand))
            continue; /* the relaxed order of an iterative scan: read them all */
        out[(*n)++] = (imageindex_hit_t){.id = store_cell_i64(&r, i, 0), .property_id = store_cell_i64(&r, i, 1),
                                         .distance = dist,
                                         .similarity = imageproc_similarity(f->embedding, cand->embedding)};
    }
    free(cand);
    arena_free(&a);
    return ok;
}

static job_outcome_t job_process(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    json_t *p = json_loads(job->payload, 0, NULL);
    int64_t id = json_is_integer(json_object_get(p, "image_id")) ? json_integer_value(json_object_get(p, "image_id")) : 0;
    json_decref(p);
    if (id <= 0)
        return fail(error, errlen, JOB_FAIL, "the payload has no image_id");
    store_t *s = job_store(ctx);
    err_t e;
    err_clear(&e);
    arena_t a;
    arena_init(&a);
    image_t m;
    buf_t orig, thumb, medium, pub;
    buf_init(&orig);
    buf_init(&thumb);
    buf_init(&medium);
    buf_init(&pub);
    image_features_t *f = calloc(1, sizeof *f);
    imageindex_hit_t *dups = calloc(MAX_DUPLICATES, sizeof *dups);
    job_outcome_t out = JOB_RETRY;
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    if (!c) {
        out = fail(error, errlen, JOB_RETRY, e.message);
        goto done;
    }
    if (!image_get(c, id, &a, &m, &e)) {
        out = fail(error, errlen, e.code == ERR_NOT_FOUND ? JOB_FAIL : JOB_RETRY, e.message);
        goto done;
    }
    img_type_t t = type_of(m.content_type);
    job_progress(ctx, 5, "reading the original");
    s->ops->release(s, c); /* no connection held while decoding */
    c = NULL;
    if (!objects_get(objects, m.original_key, &orig, &e)) {
        out = fail(error, errlen, JOB_RETRY, e.message);
        goto done;
    }
    job_progress(ctx, 20, "decoding");
    /* the variants are made here; the features come from the model service when there is one
     * (model_extract falls back to this process when it cannot answer) */
    bool decoded = imageproc_process(t, orig.data, orig.len, f, &thumb, &medium, &e) &&
                   imageproc_public_original(t, orig.data, orig.len, &pub, &e) &&
                   (!model_service || model_extract(g_model, orig.data, orig.len, f, &e));
    if (!decoded && e.code == ERR_VALIDATION) {
        char why[300];
        snprintf(why, sizeof why, "the image could not be decoded: %s", e.message);
        err_t me;
        err_clear(&me);
        c = s->ops->acquire(s, 5000, &me);
        if (!c || !mark_failed(c, &m, why, &me)) {
            out = fail(error, errlen, JOB_RETRY, me.message);
            goto done;
        }
        worker_wake();
        out = fail(error, errlen, JOB_FAIL, why);
        goto done;
    }
    if (!decoded) {
        out = fail(error, errlen, JOB_RETRY, e.message);
        goto done;
    }
    job_progress(ctx, 60, "storing the variants");
    const char *keys[3] = {arena_printf(&a, "images/%lld/original.%s", (long long)m.id, imageproc_ext(t)),
                           arena_printf(&a, "images/%lld/medium.jpg", (long long)m.id),
                           arena_printf(&a, "images/%lld/thumb.jpg", (long long)m.id)};
    if (!put_variant(keys[0], &pub, imageproc_mime(t), &e) || !put_variant(keys[1], &medium, "image/jpeg", &e) ||
        !put_variant(keys[2], &thumb, "image/jpeg", &e)) {
        out = fail(error, errlen, JOB_RETRY, e.message);
        goto done;
    }
    job_progress(ctx, 80, "looking for duplicates");
    c = s->ops->acquire(s, 5000, &e);
    int ndups = 0;
    if (!c || !(pgvector ? pg_duplicates(c, m.id, f, dups, MAX_DUPLICATES, &ndups, &e)
                         : imageindex_sync(c, true, &e) &&
                               (ndups = imageindex_duplicates(m.id, f->phash, f->embedding, dups, MAX_DUPLICATES), true))) {
        out = fail(error, errlen, JOB_RETRY, e.message);
        goto done;
    }
    if (!record(c, &m, f, keys, dups, ndups, &e)) {
        if (e.code == ERR_NOT_FOUND) { /* deleted meanwhile: its variants go too */
            err_t de;
            for (int i = 0; i < 3; i++)
                err_clear(&de), objects_delete(objects, keys[i], &de);
        }
        out = fail(error, errlen, e.code == ERR_NOT_FOUND ? JOB_FAIL : JOB_RETRY, e.message);
        goto done;
    }
    if (!pgvector) /* with pgvector the database is the index */
        imageindex_add(m.id, m.property_id, f->phash, f->embedding);
    if (changed)
        changed();
    buf_printf(result, "{\"image_id\":%lld,\"width\":%d,\"height\":%d,\"duplicates\":%d}", (long long)m.id, f->width,
               f->height, ndups);
    out = JOB_DONE;
done:
    if (c)
        s->ops->release(s, c);
    free(f);
    free(dups);
    buf_free(&orig);
    buf_free(&thumb);
    buf_free(&medium);
    buf_free(&pub);
    arena_free(&a);
    return out;
}

/* Deletes objects: variants at once, an original only when its count row goes at 0 in the same
 * transaction (an upload counting it meanwhile keeps it). */
static job_outcome_t job_delete_objects(job_ctx_t *ctx, const job_t *job, buf_t *result, char *error, size_t errlen)
{
    json_t *p = json_loads(job->payload, 0, NULL);
    json_t *keys = json_object_get(p, "keys");
    store_t *s = job_store(ctx);
    int deleted = 0;
    job_outcome_t out = JOB_DONE;
    err_t e;
    err_clear(&e);
    for (size_t i = 0; i < json_array_size(keys) && out == JOB_DONE; i++) {
        const char *key = json_string_value(json_array_get(keys, i));
        if (!key || !objects_key_valid(key))
            continue;
        if (strncmp(key, "originals/", 10) != 0) {
            if (!objects_delete(objects, key, &e))
                out = fail(error, errlen, JOB_RETRY, e.message);
            deleted += out == JOB_DONE;
            continue;
        }
        store_conn_t *c = s->ops->acquire(s, 5000, &e);
        arena_t a;
        arena_init(&a);
        const char *v[] = {key};
        store_rows_t r;
        bool ok = c && c->store->ops->begin(c, &e) &&
                  store_query(c, "DELETE FROM object_refs WHERE key = $1 AND refs = 0 RETURNING key", 1, v, &a, &r, &e);
        bool gone = ok && r.nrows == 1;
        ok = ok && (!gone || objects_delete(objects, key, &e));
        if (c) {
            ok = store_finish(c, ok, &e);
            s->ops->release(s, c);
        }
        arena_free(&a);
        if (!ok)
            out = fail(error, errlen, JOB_RETRY, e.message);
        deleted += gone && ok;
    }
    json_decref(p);
    if (out == JOB_DONE)
        buf_printf(result, "{\"deleted\":%d}", deleted);
    return out;
}

/* PostgreSQL: pgvector's columns and HNSW indexes for the embeddings (cosine) and the hashes
 * (Hamming, on bit(64)), when the extension can be had
 * (made here rather than in a migration: the PostgreSQL backend works without pgvector, and gains
 * it when an administrator installs it), and the embeddings of photos processed before. */
static void ensure_pgvector(store_t *s)
{
    if (strcmp(s->ops->name, "postgres") != 0)
        return;
    err_t e;
    err_clear(&e);
    arena_t a;
    arena_init(&a);
    store_rows_t r;
    store_conn_t *c = s->ops->acquire(s, 5000, &e);
    bool ok = c && store_query(c, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'", 0, NULL, &a, &r, &e) &&
              r.nrows == 1;
    if (ok) /* twice: two processes starting together may race on CREATE EXTENSION */
        for (int attempt = 0; attempt < 2; attempt++) {
            err_clear(&e);
            ok = c->store->ops->begin(c, &e) &&
                 store_finish(c,
                              store_query(c, "CREATE EXTENSION IF NOT EXISTS vector", 0, NULL, &a, &r, &e) &&
                                  store_query(c, "ALTER TABLE images ADD COLUMN IF NOT EXISTS embedding_v vector(256)", 0,
                                              NULL, &a, &r, &e) &&
                                  store_query(c,
                                              "CREATE INDEX IF NOT EXISTS images_embedding_v ON images USING hnsw"
                                              " (embedding_v vector_cosine_ops) WITH (m = 16, ef_construction = 200)",
                                              0, NULL, &a, &r, &e) &&
                                  store_query(c, "ALTER TABLE images ADD COLUMN IF NOT EXISTS phash_bits bit(64)", 0, NULL,
                                              &a, &r, &e) &&
                                  store_query(c,
                                              "CREATE INDEX IF NOT EXISTS images_phash_bits ON images USING hnsw"
                                              " (phash_bits bit_hamming_ops)",
                                              0, NULL, &a, &r, &e) &&
                                  store_query(c,
                                              "UPDATE images SET phash_bits = CAST(phash AS bit(64))"
                                              " WHERE phash IS NOT NULL AND phash_bits IS NULL",
                                              0, NULL, &a, &r, &e),
                              &e);
            if (ok)
                break;
        }
    for (bool more = ok; more;) { /* photos processed before: their embeddings, 500 at a time */
        arena_reset(&a);
        ok = store_query(c,
                         "SELECT id, embedding FROM images WHERE embedding IS NOT NULL AND embedding_v IS NULL"
                         " ORDER BY id LIMIT 500",
                         0, NULL, &a, &r, &e);
        more = ok && r.nrows == 500;
        for (int i = 0; ok && i < r.nrows; i++) {
            float v[IMAGEPROC_DIM];
            store_rows_t u;
            if (imageindex_embedding_decode(store_cell(&r, i, 1), v))
                ok = store_query(c, "UPDATE images SET embedding_v = CAST($2 AS vector) WHERE id = CAST($1 AS BIGINT)",
                                 2, (const char *[]){store_cell(&r, i, 0), vector_text(v, &a)}, &a, &u, &e);
        }
    }
    if (c)
        s->ops->release(s, c);
    arena_free(&a);
    pgvector = ok;
    if (!ok)
        log_info("images: pgvector is not available here (%s); similar photos are searched in process",
                 e.code ? e.message : "no extension \"vector\"");
}

/* The filter as SQL over properties p (after `WHERE`), its values appended to v from *nv. */
static void filter_sql(buf_t *sql, const image_filter_t *f, const char **v, int *nv, arena_t *a)
{
    buf_puts(sql, "p.status = 'active'");
    if (f->city) {
        v[(*nv)++] = f->city;
        buf_printf(sql, " AND lower(p.city) = lower($%d)", *nv);
    }
    if (f->has_min) {
        v[(*nv)++] = store_num(a, f->min_cents);
        buf_printf(sql, " AND p.price_cents >= CAST($%d AS BIGINT)", *nv);
    }
    if (f->has_max) {
        v[(*nv)++] = store_num(a, f->max_cents);
        buf_printf(sql, " AND p.price_cents <= CAST($%d AS BIGINT)", *nv);
    }
}

bool image_similar(store_conn_t *c, const float *q, int k, int64_t exclude, const image_filter_t *f, arena_t *a,
                    image_hit_t *out, int *n, err_t *e)
{
    *n = 0;
    const char *v[8];
    int nv = 0;
    buf_t sql;
    buf_init(&sql);
    store_rows_t r;
    bool ok;
    if (pgvector) {
        /* iterative scans (pgvector 0.8): the index is read on until the filter has kept k rows */
        v[nv++] = vector_text(q, a);
        v[nv++] = store_num(a, exclude);
        v[nv++] = store_num(a, k);
        buf_puts(&sql, "SELECT id, property_id, 1 - d FROM (SELECT i.id, i.property_id, i.embedding_v <=> CAST($1 AS vector) AS d"
                       " FROM images i JOIN properties p ON p.id = i.property_id WHERE i.embedding_v IS NOT NULL"
                       " AND i.status = 'ready' AND i.id <> CAST($2 AS BIGINT) AND ");
        filter_sql(&sql, f, v, &nv, a);
        buf_puts(&sql, " ORDER BY i.embedding_v <=> CAST($1 AS vector) LIMIT CAST($3 AS INTEGER)) s ORDER BY d, id");
        store_rows_t set;
        ok = store_query(c, "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', false),"
                            " set_config('hnsw.ef_search', '64', false)",
                         0, NULL, a, &set, e) &&
             store_query(c, buf_cstr(&sql), nv, v, a, &r, e);
        for (int i = 0; ok && i < r.nrows; i++)
            out[(*n)++] = (image_hit_t){.id = store_cell_i64(&r, i, 0), .property_id = store_cell_i64(&r, i, 1),
                                        .similarity = strtof(store_cell(&r, i, 2), NULL)};
        buf_free(&sql);
        return ok;
    }
    /* in process: the listings the filter keeps (those with photos), then the index */
    buf_puts(&sql, "SELECT p.id FROM properties p WHERE ");
    filter_sql(&sql, f, v, &nv, a);
    buf_puts(&sql, " AND p.id IN (SELECT property_id FROM images WHERE status = 'ready')");
    ok = imageindex_sync(c, false, e) && store_query(c, buf_cstr(&sql), nv, v, a, &r, e);
    buf_free(&sql);
    if (!ok)
        return false;
    int64_t *props = arena_alloc(a, sizeof *props * (size_t)(r.nrows + 1));
    for (int i = 0; i < r.nrows; i++)
        props[i] = store_cell_i64(&r, i, 0);
    imageindex_hit_t *hits = arena_alloc(a, sizeof *hits * (size_t)k);
    int got = imageindex_similar(q, k, exclude, props, r.nrows, hits);
    for (int i = 0; i < got; i++)
        out[(*n)++] = (image_hit_t){.id = hits[i].id, .property_id = hits[i].property_id, .similarity = hits[i].similarity};
    return true;
}

/* Upload files a crash left in `dir` (upload-*), older than a day: a live request's are younger. */
static void sweep_uploads(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    time_t now = time(NULL);
    struct dirent *ent;
    while ((ent = readdir(d))) {
        struct stat st;
        if (strncmp(ent->d_name, "upload-", 7) == 0 && fstatat(dirfd(d), ent->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISREG(st.st_mode) && now - st.st_mtime > 86400)
            unlinkat(dirfd(d), ent->d_name, 0);
    }
    closedir(d);
}

bool images_setup(const config_t *cfg, store_t *s, void (*listings_changed)(void), err_t *e)
{
    changed = listings_changed;
    model_service = cfg->model_service_url != NULL;
    char tmp[sizeof cfg->data_dir + 8];
    snprintf(tmp, sizeof tmp, "%s/tmp", cfg->data_dir);
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return err_set(e, ERR_INTERNAL, "cannot create %s: %s", tmp, strerror(errno));
    sweep_uploads(tmp);
    if (!imageproc_init(e) || !(objects = objects_open(cfg, e)) || !imageindex_open(cfg->data_dir, e))
        return false;
    ensure_pgvector(s);
    store_conn_t *c = pgvector ? NULL : s->ops->acquire(s, 5000, e);
    bool ok = pgvector || (c && imageindex_sync(c, true, e)); /* with pgvector the database is the index */
    if (c)
        s->ops->release(s, c);
    if (!ok)
        return false;
    worker_register("image.process", job_process);
    worker_register("image.delete_objects", job_delete_objects);
    log_info("images: object store %s; similar photos searched %s (%zu photo(s) indexed in process)",
             objects_backend(objects), pgvector ? "by pgvector" : "in process", imageindex_count());
    return true;
}

void images_shutdown(void)
{
    imageindex_close();
    objects_close(objects);
    objects = NULL;
}
