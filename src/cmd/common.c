/* common: start-up steps every command shares: configuration, logging, the store. */
#include <stdio.h>

#include "../base/log.h"
#include "commands.h"

bool cmd_load_config(config_t *cfg)
{
    char why[512];
    if (!config_load(cfg, why, sizeof why)) {
        fprintf(stderr, "hearth: %s\n", why);
        return false;
    }
    log_setup(cfg->log_level, cfg->log_json);
    return true;
}

store_t *cmd_open_store(const config_t *cfg)
{
    err_t e;
    err_clear(&e);
    store_t *s = store_open(cfg, &e);
    if (!s) {
        fprintf(stderr, "hearth: %s\n", e.message);
        return NULL;
    }
    if (s->ops->migrate(s, &e) < 0) {
        fprintf(stderr, "hearth: migrations failed: %s\n", e.message);
        s->ops->close(s);
        return NULL;
    }
    return s;
}
