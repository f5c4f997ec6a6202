/* migrate: `hearth migrate` applies pending schema migrations; `hearth routes` lists the router. */
#include <stdio.h>

#include "../net/router.h"
#include "commands.h"

int cmd_migrate(int argc, char **argv)
{
    (void)argc, (void)argv;
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg))
        return 2;
    store_t *s = cmd_open_store(cfg);
    if (!s)
        return 1;
    printf("migrations are up to date (%s)\n", s->ops->name);
    s->ops->close(s);
    return 0;
}

int cmd_routes(int argc, char **argv)
{
    (void)argc, (void)argv;
    for (route_t *r = app_routes; r->pattern; r++)
        printf("%s %s\n", http_method_names[r->method], r->pattern);
    return 0;
}
