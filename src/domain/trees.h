/* trees: evaluates a tree ensemble saved by XGBoost (its JSON model format, gbtree booster,
 * regression) without XGBoost. See trees.c for why. */
#ifndef HEARTH_TREES_H
#define HEARTH_TREES_H

#include <stdbool.h>

#include "../base/error.h"

typedef struct trees trees_t;

/* Loads the model file `path` (XGBoost JSON). ERR_UNAVAILABLE with the reason when it is not a
 * model this evaluator understands. */
trees_t *trees_load(const char *path, err_t *e);
void trees_free(trees_t *t);
int trees_features(const trees_t *t); /* the number of features a row has */
/* The model's output for one row of trees_features(t) values (NAN: missing); thread-safe. */
double trees_predict(const trees_t *t, const float *row);

#endif
