/* images: the listing photo routes (domain/images.h).
 *
 *   POST   /api/properties/{id}/images   upload (multipart `file`; the listing's agent or an admin)
 *   GET    /api/properties/{id}/images   a listing's images
 *   GET    /api/images/{id}              one image, with its near-duplicates
 *   GET    /api/images/{id}/content      ?variant=thumb|medium|original|raw
 *   GET    /api/images/{id}/similar      ?limit= and the listing filters city, min_price, max_price
 *   DELETE /api/images/{id}              (the listing's agent or an admin)
 *   POST   /api/search/images            query by an uploaded image (multipart `file`), same filters
 *
 * Uploads arrive through net/upload.c (ROUTE_UPLOAD): the file is already in a temporary file,
 * hashed, its first bytes kept. Refusals, in order: the type the magic bytes say (415), the size
 * (413, while the body arrives), the header (422 when it does not parse), the pixel count from the
 * header (422 above 50 megapixels: nothing is decoded). Images of active listings are public;
 * others only to the listing's agent and admins; `raw` (the untouched original, metadata and all)
 * only to them. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/util.h"
#include "../domain/imageindex.h"
#include "../domain/images.h"
#include "../infra/modelclient.h"
#include "../net/upload.h"
#include "app.h"

#define SIMILAR_MAX 100
#define PRESIGN_TTL_S 300

/* The listing `id` and whether `actor` may change it (its agent, an admin). */
static bool listing_of(store_conn_t *c, int64_t id, arena_t *a, property_t *p, err_t *e)
{
    return c->store->ops->property_get(c, id, a, p, e);
}

static bool may_change(const actor_t *actor, const property_t *p)
{
    return actor->known && (actor->user.role == ROLE_ADMIN || (p->owner_id && p->owner_id == actor->user.id));
}

/* Images of an active listing are for everyone; of any other, for its agent and admins. */
static bool may_see(const actor_t *actor, const property_t *p, err_t *e)
{
    if ((p->status && strcmp(p->status, "active") == 0) || may_change(actor, p))
        return true;
    return err_set(e, ERR_NOT_FOUND, "no image with this id"); /* not to be told apart from none */
}

/* The uploaded `file`: checked type, size and pixels; its first IMAGE_HEADER_BYTES read for the
 * header. */
static bool read_upload(http_request_t *req, const upload_file_t **file, img_type_t *type, err_t *e)
{
    *file = upload_file(req->upload, "file");
    if (!*file) {
        err_field(e, "file", "is required (a multipart part named file)");
        return false;
    }
    if ((*file)->size == 0) {
        err_field(e, "file", "is empty");
        return false;
    }
    *type = imageproc_sniff((*file)->head, (*file)->head_len);
    if (*type == IMG_NONE)
        return err_set(e, ERR_UNSUPPORTED_MEDIA, "the file must be a JPEG, PNG or WebP image (by its content)");
    size_t n = (*file)->size < IMAGE_HEADER_BYTES ? (size_t)(*file)->size : IMAGE_HEADER_BYTES;
    char *head = malloc(n);
    int fd = (*file)->path ? open((*file)->path, O_RDONLY | O_CLOEXEC) : -1;
    ssize_t got = fd >= 0 ? pread(fd, head, n, 0) : -1;
    if (fd >= 0)
        close(fd);
    int w = 0, h = 0;
    bool ok = got == (ssize_t)n;
    if (!ok)
        err_set(e, ERR_INTERNAL, "cannot read the uploaded file back");
    else if (!imageproc_header(*type, head, n, &w, &h, e)) {
        char why[sizeof e->message];
        snprintf(why, sizeof why, "%s", e->message);
        ok = err_set(e, ERR_VALIDATION, "the image's header does not parse: %s", why);
    }
    else if ((long long)w * h > IMAGEPROC_MAX_PIXELS)
        ok = err_set(e, ERR_VALIDATION, "the image is %dx%d, %lld pixels: more than %lld", w, h, (long long)w * h,
                     (long long)IMAGEPROC_MAX_PIXELS);
    free(head);
    return ok;
}

void images_upload(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_AGENT | ROLE_ADMIN, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    int64_t pid;
    property_t p;
    const upload_file_t *file = NULL;
    img_type_t type = IMG_NONE;
    bool ok = http_param_id(req, "id", &pid, &e) && listing_of(c, pid, req->arena, &p, &e);
    if (ok && !may_change(&actor, &p))
        ok = err_set(&e, ERR_FORBIDDEN, "only the listing's agent or an admin may add images to it");
    ok = ok && read_upload(req, &file, &type, &e);
    image_t img;
    job_t job;
    if (ok) {
        store_audit_t audit = auth_audit_entry(req, &actor, "image.create", "image", NULL);
        image_upload_t in = {.property_id = pid, .created_by = actor.user.id, .type = type, .path = file->path,
                             .filename = file->filename, .sha256 = file->sha256, .size = file->size, .audit = &audit};
        audit.resource_ref = &img.id;
        ok = image_create(c, &in, req->arena, &img, &job, &e);
    }
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 202, &w);
    jw_obj_begin(&w);
    jw_key(&w, "image");
    image_write_json(&w, &img);
    jw_key(&w, "job");
    job_write_json(&w, &job);
    jw_obj_end(&w);
    http_res_header(res, "Location", "/api/images/%lld", (long long)img.id);
}

void images_list(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    int64_t pid, before = 0;
    int limit = 20, n = 0;
    bool more = false;
    property_t p;
    image_t *items = NULL;
    http_query_t q;
    bool ok = http_param_id(req, "id", &pid, &e) && http_query_parse(req, &q, &e) && api_read_limit(&q, &limit, &e);
    const char *cur = ok ? http_query_get(&q, "cursor") : NULL;
    ok = ok && (!cur || !*cur || api_read_cursor(cur, "images", &before, &e)) && e.code == ERR_NONE &&
         listing_of(c, pid, req->arena, &p, &e) && may_see(&actor, &p, &e) &&
         image_list(c, pid, before, limit, req->arena, &items, &n, &more, &e);
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0; i < n; i++)
        image_write_json(&w, &items[i]);
    jw_arr_end(&w);
    api_write_cursor(&w, "images", more, n ? items[n - 1].id : 0);
    jw_obj_end(&w);
}

/* The image of the route's {id} that the caller may see, and its listing. */
static bool visible_image(http_request_t *req, store_conn_t *c, const actor_t *actor, image_t *img, property_t *p,
                          err_t *e)
{
    int64_t id;
    if (!http_param_id(req, "id", &id, e) || !image_get(c, id, req->arena, img, e))
        return false;
    if (!listing_of(c, img->property_id, req->arena, p, e))
        return err_set(e, ERR_NOT_FOUND, "no image with id %lld", (long long)id);
    return may_see(actor, p, e);
}

void images_get(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    image_t img;
    property_t p;
    bool ok = visible_image(req, c, &actor, &img, &p, &e);
    if (ok) { /* the image's fields, then its duplicates, in one object */
        jw_t w;
        http_res_json(res, 200, &w);
        image_write_fields(&w, &img);
        ok = image_write_duplicates(c, img.id, req->arena, &w, &e);
        jw_obj_end(&w);
    }
    app_store_done(c);
    if (!ok)
        http_res_error(req, res, &e); /* replaces whatever was written */
}

void images_content(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    image_t img;
    property_t p;
    http_query_t q;
    bool ok = http_query_parse(req, &q, &e) && visible_image(req, c, &actor, &img, &p, &e);
    app_store_done(c);
    const char *variant = ok ? http_query_get(&q, "variant") : NULL;
    const char *key = NULL, *type = "image/jpeg";
    if (ok) {
        if (!variant || strcmp(variant, "medium") == 0)
            key = img.medium_key;
        else if (strcmp(variant, "thumb") == 0)
            key = img.thumb_key;
        else if (strcmp(variant, "original") == 0)
            key = img.public_key, type = img.content_type;
        else if (strcmp(variant, "raw") == 0 && may_change(&actor, &p))
            key = img.original_key, type = img.content_type;
        else if (strcmp(variant, "raw") == 0)
            ok = err_set(&e, ERR_FORBIDDEN, "the untouched original is for the listing's agent and admins");
        else {
            err_field(&e, "variant", "must be thumb, medium, original or raw");
            ok = false;
        }
        if (ok && !key)
            ok = err_set(&e, ERR_CONFLICT, "the image is %s: it has no %s yet", img.status, variant ? variant : "medium");
    }
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    const char *url = objects_presign_get(images_objects(), key, PRESIGN_TTL_S, req->arena);
    if (url) { /* S3: the client fetches it from there */
        res->status = 302;
        http_res_header(res, "Location", "%s", url);
        http_res_header(res, "Cache-Control", "private, max-age=%d", PRESIGN_TTL_S / 2);
        return;
    }
    /* the filesystem store: the file itself, sent in pieces as the client takes them */
    const char *path = objects_local_path(images_objects(), key, req->arena);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        err_set(&e, ERR_UNAVAILABLE, "the image's %s is not in the store right now", variant ? variant : "medium");
        http_res_error(req, res, &e);
        return;
    }
    http_res_file(res, 200, type, fd, st.st_size);
    /* the variants of an id never change; the raw original, and any photo of a listing that is
     * not active, are not for shared caches */
    bool public = strcmp(variant ? variant : "", "raw") != 0 && p.status && strcmp(p.status, "active") == 0;
    http_res_header(res, "Cache-Control", "%s", public ? "public, max-age=86400" : "private, no-store");
}

void images_delete(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_AGENT | ROLE_ADMIN, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    image_t img;
    property_t p;
    bool ok = visible_image(req, c, &actor, &img, &p, &e);
    if (ok && !may_change(&actor, &p))
        ok = err_set(&e, ERR_FORBIDDEN, "only the listing's agent or an admin may delete its images");
    if (ok) {
        store_audit_t audit = auth_audit_entry(req, &actor, "image.delete", "image", arena_printf(req->arena, "%lld", (long long)img.id));
        ok = image_delete(c, &img, &audit, &e);
    }
    app_store_done(c);
    if (!ok) {
        http_res_error(req, res, &e);
        return;
    }
    res->status = 204;
}

/* The listing filters of the query: city, min_price, max_price (dollars), and limit. */
static bool read_filter(http_request_t *req, int *limit, image_filter_t *f, err_t *e)
{
    property_query_t pq;
    if (!properties_read_query(req, &pq, e) || e->code != ERR_NONE)
        return false;
    uint64_t others = pq.set & ~(QF_BIT(QF_CITY) | QF_BIT(QF_MIN_PRICE) | QF_BIT(QF_MAX_PRICE));
    http_query_t q;
    if (!http_query_parse(req, &q, e))
        return false;
    if (others || pq.has_cursor || http_query_get(&q, "sort") || http_query_get(&q, "cursor"))
        return err_set(e, ERR_VALIDATION, "only city, min_price, max_price and limit apply to photo searches");
    *limit = pq.limit;
    *f = (image_filter_t){.city = pq.city, .has_min = (pq.set & QF_BIT(QF_MIN_PRICE)) != 0,
                          .has_max = (pq.set & QF_BIT(QF_MAX_PRICE)) != 0, .min_cents = pq.min_price,
                          .max_cents = pq.max_price};
    return true;
}

/* {"items": [{"image", "property_id", "similarity"}]} for the hits, read back from the store. */
static bool write_hits(http_request_t *req, http_response_t *res, store_conn_t *c, const image_hit_t *hits, int n,
                       err_t *e)
{
    int64_t *ids = arena_alloc(req->arena, sizeof *ids * (size_t)(n + 1));
    image_t *imgs = arena_alloc(req->arena, sizeof *imgs * (size_t)(n + 1));
    for (int i = 0; i < n; i++)
        ids[i] = hits[i].id;
    int found;
    if (!image_get_many(c, ids, n, req->arena, imgs, &found, e))
        return false;
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (int i = 0, k = 0; i < n && k < found; i++) {
        if (imgs[k].id != hits[i].id)
            continue; /* deleted since it was indexed */
        jw_obj_begin(&w);
        jw_key(&w, "image");
        image_write_json(&w, &imgs[k]);
        jw_kint(&w, "property_id", imgs[k].property_id);
        jw_key(&w, "similarity");
        jw_double(&w, hits[i].similarity);
        jw_obj_end(&w);
        k++;
    }
    jw_arr_end(&w);
    jw_obj_end(&w);
    return true;
}

static void similar_to(http_request_t *req, http_response_t *res, store_conn_t *c, const float *q, int64_t exclude)
{
    err_t e;
    err_clear(&e);
    int limit = 20, n = 0;
    image_filter_t f;
    bool ok = read_filter(req, &limit, &f, &e);
    if (ok) {
        image_hit_t *hits = arena_alloc(req->arena, sizeof *hits * (size_t)limit);
        ok = image_similar(c, q, limit, exclude, &f, req->arena, hits, &n, &e) && write_hits(req, res, c, hits, n, &e);
    }
    app_store_done(c);
    if (!ok)
        http_res_error(req, res, &e);
}

void images_similar(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    image_t img;
    property_t p;
    float q[IMAGEPROC_DIM];
    store_rows_t r;
    bool ok = visible_image(req, c, &actor, &img, &p, &e);
    if (ok && strcmp(img.status, "ready") != 0)
        ok = err_set(&e, ERR_CONFLICT, "the image is %s: it has no features yet", img.status);
    if (ok) {
        const char *v[] = {store_num(req->arena, img.id)};
        ok = store_query(c, "SELECT embedding FROM images WHERE id = CAST($1 AS BIGINT)", 1, v, req->arena, &r, &e);
        if (ok && (r.nrows != 1 || !imageindex_embedding_decode(store_cell(&r, 0, 0), q)))
            ok = err_set(&e, ERR_INTERNAL, "the image's embedding is unreadable");
    }
    if (!ok) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    similar_to(req, res, c, q, img.id);
}

void images_search(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, 0, &actor);
    if (!c)
        return;
    err_t e;
    err_clear(&e);
    const upload_file_t *file = NULL;
    img_type_t type = IMG_NONE;
    image_features_t *f = arena_alloc(req->arena, sizeof *f);
    buf_t bytes;
    buf_init(&bytes);
    bool ok = read_upload(req, &file, &type, &e);
    if (ok) {
        int fd = open(file->path, O_RDONLY | O_CLOEXEC);
        buf_reserve(&bytes, (size_t)file->size);
        ssize_t got = fd >= 0 ? pread(fd, bytes.data, (size_t)file->size, 0) : -1;
        if (fd >= 0)
            close(fd);
        ok = got == file->size || err_set(&e, ERR_INTERNAL, "cannot read the uploaded file back");
        bytes.len = ok ? (size_t)got : 0;
    }
    ok = ok && model_extract(g_model, bytes.data, bytes.len, f, &e); /* the model service, or this process */
    buf_free(&bytes);
    if (!ok) {
        app_store_done(c);
        http_res_error(req, res, &e);
        return;
    }
    similar_to(req, res, c, f->embedding, 0);
}
