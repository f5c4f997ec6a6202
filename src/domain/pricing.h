/* pricing: the price model. One XGBoost regressor per market (Ames, Sacramento: different source
 * columns) trained on log(price) from the stored properties, saved as a numbered version under
 * $HEARTH_DATA_DIR/models/, and loaded by every process; the active version can be switched while
 * servers run (they pick it up within a second).
 *
 * A property's feature vector has two parts: the listing fields every property has (size,
 * bedrooms, bathrooms, year built, lot size, latitude, longitude) and its market's source columns
 * from `features` (the raw CSV row). Absent values are missing to the model, which handles them;
 * categorical source columns are coded by the category list saved with the model (an unseen
 * category is missing). docs/pricing.md lists the features and encodings. */
#ifndef HEARTH_PRICING_H
#define HEARTH_PRICING_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/error.h"
#include "../base/jw.h"
#include "property.h"

typedef struct store store_t;

typedef enum { MARKET_AMES, MARKET_SACRAMENTO, MARKET__COUNT } market_t;
extern const char *const market_names[MARKET__COUNT]; /* "ames", "sacramento" */

/* The market of a property: its `source` when that names one, else Sacramento for listings in
 * California, else Ames. */
market_t pricing_market_of(const property_t *p);

typedef struct train_options {
    int folds;  /* cross-validation folds (default 5) */
    int rounds; /* boosting rounds (default: HEARTH_MODEL_ROUNDS or 1200) */
    uint64_t seed;
    bool activate; /* make the new version the active one */
    bool quiet;    /* no progress lines on stderr */
} train_options_t;

typedef struct market_metrics {
    int rows;
    double rmse, mae, r2, rmsle; /* cross-validated: rmse, mae in dollars; rmsle = RMSE of log(price) */
} market_metrics_t;

/* Trains every market that has rows, writes version N+1 under data_dir/models/ and (with
 * `activate`, or when no version is active yet) activates it. Fills *version and the metrics of
 * each market (rows 0: the market had too few rows and has no model). */
bool pricing_train(store_t *s, const char *data_dir, const train_options_t *o, int *version,
                   market_metrics_t metrics[MARKET__COUNT], err_t *e);

/* Model versions on disk, newest first: writes [{"version", "trained_at", "active", "markets": {...}}]. */
bool pricing_list(const char *data_dir, jw_t *w, err_t *e);
/* Makes `version` the active one (ERR_NOT_FOUND when there is no such version). */
bool pricing_activate(const char *data_dir, int version, err_t *e);

/* The process-wide model: loads the active version of data_dir (if any) and keeps watching it.
 * pricing_close frees it. Without a trained model, predictions answer ERR_UNAVAILABLE. */
bool pricing_open(const char *data_dir, err_t *e);
void pricing_close(void);
bool pricing_ready(void); /* a model is loaded */
int pricing_version(void); /* the loaded model's version; 0: none */

typedef struct price_estimate {
    double price;     /* dollars */
    double low, high; /* the prediction interval (90%, split-conformal from held-out residuals) */
    int version;
    market_t market;
} price_estimate_t;

/* The model's estimate for `p` (its listing fields and, when set, its `features`). Thread-safe;
 * needs no store. ERR_UNAVAILABLE when no model is loaded. */
bool pricing_predict(const property_t *p, price_estimate_t *out, err_t *e);

/* GET /api/ml/model-info's document (the Ames model's metrics at the top level, every market's
 * under "markets"). ERR_UNAVAILABLE when no model is loaded. */
bool pricing_info_json(jw_t *w, err_t *e);

#endif
