/* ml: the price model over HTTP. POST /api/ml/predict-price takes a property's fields (and,
 * optionally, its source `features`) and answers the model's estimate with its prediction
 * interval; `{"items": [...]}` asks for up to 1,000 at once. GET /api/ml/model-info describes the
 * active model. Both are public; without a trained model they answer 503. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../domain/pricing.h"
#include "app.h"

#define BATCH_MAX 1000

/* fields without which the model has nothing to go on */
static const property_field_t required[] = {PF_SIZE_SQFT, PF_BEDROOMS, PF_BATHROOMS};

/* Reads one item into `p`; its problems become details of `e`, each field named `prefix`field. */
static bool read_item(json_t *obj, const char *prefix, property_t *p, arena_t *a, err_t *e)
{
    err_t ie;
    err_clear(&ie);
    property_init(p);
    uint64_t present = 0;
    if (!json_is_object(obj)) {
        err_field(e, *prefix ? prefix : "body", "must be a JSON object");
        return false;
    }
    /* `market` (ames, sacramento) is ours, not a property field */
    json_t *market = json_object_get(obj, "market");
    int mk = -1;
    for (int m = 0; m < MARKET__COUNT && market; m++)
        if (json_is_string(market) && strcmp(json_string_value(market), market_names[m]) == 0)
            mk = m;
    if (market && mk < 0)
        err_field(&ie, "market", "must be ames or sacramento");
    json_t *fields = json_deep_copy(obj);
    json_object_del(fields, "market");
    bool typed = property_from_json(fields, p, &present, a, &ie);
    json_decref(fields);
    if (typed || ie.ndetails > 0)
        property_check(p, present, false, &ie);
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const char *name = property_field_names[required[i]];
        bool named = false;
        for (int k = 0; k < ie.ndetails; k++)
            named |= strcmp(ie.details[k].field, name) == 0;
        if (!named && !(p->set & PF_BIT(required[i])))
            err_field(&ie, name, "is required");
    }
    if (mk >= 0)
        p->source = market_names[mk];
    if (ie.code == ERR_NONE)
        return true;
    if (ie.ndetails == 0)
        err_field(e, *prefix ? prefix : "body", "%s", ie.message);
    for (int i = 0; i < ie.ndetails; i++)
        err_field(e, arena_printf(a, "%s%s", prefix, ie.details[i].field), "%s", ie.details[i].message);
    return false;
}

static void write_estimate(jw_t *w, const price_estimate_t *est)
{
    jw_obj_begin(w);
    jw_key(w, "predicted_price");
    jw_money(w, (int64_t)(est->price * 100 + 0.5));
    jw_kint(w, "model_version", est->version);
    jw_kstr(w, "market", market_names[est->market]);
    jw_key(w, "interval");
    jw_obj_begin(w);
    jw_key(w, "low");
    jw_money(w, (int64_t)(est->low * 100 + 0.5));
    jw_key(w, "high");
    jw_money(w, (int64_t)(est->high * 100 + 0.5));
    jw_key(w, "coverage");
    jw_double(w, 0.9);
    jw_obj_end(w);
    jw_obj_end(w);
}

void ml_predict_price(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    json_t *body = http_json_body(req, &e);
    if (!body) {
        http_res_error(req, res, &e);
        return;
    }
    json_t *items = json_is_object(body) ? json_object_get(body, "items") : NULL;
    bool batch = items != NULL;
    size_t n = batch ? json_array_size(items) : 1;
    if (batch && (!json_is_array(items) || n == 0 || n > BATCH_MAX || json_object_size(body) != 1)) {
        err_field(&e, "items", json_object_size(body) != 1 ? "must be the only field of a batch"
                                                           : "must be an array of 1 to 1000 properties");
        json_decref(body);
        http_res_error(req, res, &e);
        return;
    }
    property_t *props = arena_alloc(req->arena, n * sizeof *props);
    for (size_t i = 0; i < n; i++)
        read_item(batch ? json_array_get(items, i) : body, batch ? arena_printf(req->arena, "items[%zu].", i) : "",
                  &props[i], req->arena, &e);
    json_decref(body);
    if (e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    price_estimate_t *est = arena_alloc(req->arena, n * sizeof *est);
    for (size_t i = 0; i < n; i++)
        if (!pricing_predict(&props[i], &est[i], &e)) {
            http_res_error(req, res, &e);
            return;
        }
    jw_t w;
    http_res_json(res, 200, &w);
    if (!batch) {
        write_estimate(&w, &est[0]);
        return;
    }
    jw_obj_begin(&w);
    jw_key(&w, "items");
    jw_arr_begin(&w);
    for (size_t i = 0; i < n; i++)
        write_estimate(&w, &est[i]);
    jw_arr_end(&w);
    jw_obj_end(&w);
}

void ml_model_info(http_request_t *req, http_response_t *res)
{
    err_t e;
    err_clear(&e);
    buf_t out;
    buf_init(&out);
    jw_t probe;
    jw_init(&probe, &out);
    if (!pricing_info_json(&probe, &e)) {
        buf_free(&out);
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_raw(&w, out.data, out.len);
    buf_free(&out);
}
