/* commands: the entry points of `hearth <command>`, one per file in src/cmd/, dispatched by main.c.
 * Each returns the process exit status: 0 success, 1 failure, 2 usage or configuration error. */
#ifndef HEARTH_COMMANDS_H
#define HEARTH_COMMANDS_H

#include "../base/config.h"
#include "../infra/store.h"

/* hearth serve [--listen ADDR] [--demo] */
int cmd_serve(int argc, char **argv);
/* hearth migrate */
int cmd_migrate(int argc, char **argv);
/* hearth import FILE --format ames|sacramento|json [--source NAME] (argv[0] is "import") */
int cmd_import(int argc, char **argv);
/* hearth routes: the router's table, one "METHOD /pattern" a line */
int cmd_routes(int argc, char **argv);
/* hearth user create --email E --role R [--full-name N] [--password P] (argv[0] is "user") */
int cmd_user(int argc, char **argv);
/* hearth worker [--queues high,default,low] [--concurrency N] */
int cmd_worker(int argc, char **argv);

/* hearth train [--activate] [--rounds N] [--folds K] [--seed S] */
int cmd_train(int argc, char **argv);
/* hearth model list | hearth model activate VERSION */
int cmd_model(int argc, char **argv);
/* hearth model-serve [--listen ADDR]: the model service (image features over HTTP) */
int cmd_model_serve(int argc, char **argv);
/* hearth objects gc [--dry-run]: remove the objects nothing refers to */
int cmd_objects(int argc, char **argv);

/* Shared start-up: load the configuration (flags already applied by the caller come after) and set
 * up logging; prints the one-line reason and returns false on a bad value. */
bool cmd_load_config(config_t *cfg);
/* Opens the configured store and applies pending migrations; prints the reason on failure. */
store_t *cmd_open_store(const config_t *cfg);

#endif
