/* train: `hearth train [--activate] [--rounds N] [--folds K] [--seed S]` trains the price model
 * (one XGBoost regressor per market, pricing.c) on the stored properties, prints each market's
 * cross-validated metrics and saves a new version; `hearth model list` and `hearth model activate
 * VERSION` show and switch versions (running servers pick the active one up within a second). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/buf.h"
#include "../domain/pricing.h"
#include "commands.h"

static int train_usage(void)
{
    fprintf(stderr, "usage: hearth train [--activate] [--rounds N] [--folds K] [--seed S]\n");
    return 2;
}

static bool parse_num(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || *end || n < lo || n > hi) {
        fprintf(stderr, "hearth train: %s must be a whole number from %ld to %ld\n", flag, lo, hi);
        return false;
    }
    *out = n;
    return true;
}

int cmd_train(int argc, char **argv)
{
    train_options_t o = {.folds = 5, .seed = 42};
    for (int i = 1; i < argc; i++) {
        long n;
        if (strcmp(argv[i], "--activate") == 0) {
            o.activate = true;
        } else if (strcmp(argv[i], "--rounds") == 0) {
            if (!parse_num("--rounds", i + 1 < argc ? argv[++i] : NULL, 1, 100000, &n))
                return 2;
            o.rounds = (int)n;
        } else if (strcmp(argv[i], "--folds") == 0) {
            if (!parse_num("--folds", i + 1 < argc ? argv[++i] : NULL, 2, 20, &n))
                return 2;
            o.folds = (int)n;
        } else if (strcmp(argv[i], "--seed") == 0) {
            if (!parse_num("--seed", i + 1 < argc ? argv[++i] : NULL, 0, 2147483646L, &n))
                return 2;
            o.seed = (uint64_t)n;
        } else {
            fprintf(stderr, "hearth train: unknown option '%s'\n", argv[i]);
            return train_usage();
        }
    }
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg))
        return 2;
    store_t *s = cmd_open_store(cfg);
    if (!s)
        return 1;
    err_t e;
    err_clear(&e);
    int version = 0;
    market_metrics_t m[MARKET__COUNT];
    bool ok = pricing_train(s, cfg->data_dir, &o, &version, m, &e);
    s->ops->close(s);
    if (!ok) {
        fprintf(stderr, "hearth train: %s\n", e.message);
        return 1;
    }
    printf("model version %d (%d-fold cross-validation, seed %llu)%s\n", version, o.folds,
           (unsigned long long)o.seed, o.activate ? ", active" : "");
    for (int k = 0; k < MARKET__COUNT; k++)
        if (m[k].rows)
            printf("%-11s rows %5d  rmsle %.4f  rmse %10.2f  mae %10.2f  r2 %.4f\n", market_names[k], m[k].rows,
                   m[k].rmsle, m[k].rmse, m[k].mae, m[k].r2);
    return 0;
}

static int model_usage(void)
{
    fprintf(stderr, "usage: hearth model list | hearth model activate VERSION\n");
    return 2;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2)
        return model_usage();
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg))
        return 2;
    err_t e;
    err_clear(&e);
    if (strcmp(argv[1], "list") == 0 && argc == 2) {
        buf_t out;
        buf_init(&out);
        jw_t w;
        jw_init(&w, &out);
        bool ok = pricing_list(cfg->data_dir, &w, &e);
        if (ok)
            printf("%s\n", buf_cstr(&out));
        buf_free(&out);
        return ok ? 0 : 1;
    }
    if (strcmp(argv[1], "activate") == 0 && argc == 3) {
        const char *v = argv[2][0] == 'v' ? argv[2] + 1 : argv[2];
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1) {
            fprintf(stderr, "hearth model activate: VERSION must be a version number (see hearth model list)\n");
            return 2;
        }
        if (!pricing_activate(cfg->data_dir, (int)n, &e)) {
            fprintf(stderr, "hearth model activate: %s\n", e.message);
            return 1;
        }
        printf("model version %ld is active\n", n);
        return 0;
    }
    return model_usage();
}
