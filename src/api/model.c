/* model: POST /api/ml/extract-features, an admin's check of the image-features path. It runs the
 * model client (infra/modelclient.h) exactly as image uploads and jobs do, on one uploaded `file`,
 * and answers the features with where they came from ("source": "service" when the model service
 * answered, "fallback" when they were computed in this process) and the client's state
 * ("model_service": "disabled", "closed", "open" or "half_open"). */
#include <string.h>

#include "../infra/modelclient.h"
#include "../net/multipart.h"
#include "app.h"

void ml_extract_features(http_request_t *req, http_response_t *res)
{
    actor_t actor;
    store_conn_t *c = app_store_as(req, res, ROLE_ADMIN, &actor);
    if (!c)
        return;
    app_store_done(c); /* the extraction may take a while: the connection is not needed for it */
    err_t e;
    err_clear(&e);
    multipart_t m;
    const multipart_part_t *file = NULL;
    if (multipart_parse(http_header(req, "Content-Type"), req->body, req->body_len, req->arena, &m, &e)) {
        file = multipart_get(&m, "file");
        if (!file)
            err_field(&e, "file", "is required (a multipart part named file, with a JPEG, PNG or WebP image)");
        else if (file->len == 0)
            err_field(&e, "file", "is empty");
    }
    image_features_t f;
    model_source_t source = MODEL_SOURCE_FALLBACK;
    if (e.code == ERR_NONE && !model_extract_source(g_model, file->data, file->len, &f, &source, &e) &&
        e.code == ERR_VALIDATION && e.ndetails == 0)
        err_field(&e, "file", "%s", e.message);
    if (e.code != ERR_NONE) {
        http_res_error(req, res, &e);
        return;
    }
    jw_t w;
    http_res_json(res, 200, &w);
    jw_obj_begin(&w);
    model_features_write(&w, &f);
    jw_kstr(&w, "source", model_source_name(source));
    jw_kstr(&w, "model_service", modelclient_state(g_model));
    jw_obj_end(&w);
    http_res_header(res, "Cache-Control", "no-store");
}
