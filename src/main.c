/* main: `hearth <command>` dispatch. Everything a command needs is set up by the command itself. */
#include <stdio.h>
#include <string.h>

#include "cmd/commands.h"

static int usage(FILE *to)
{
    fprintf(to, "usage: hearth <command> [options]\n\n"
                "commands:\n"
                "  serve [--listen HOST:PORT] [--demo]   serve the HTTP API (applies pending migrations)\n"
                "  migrate                               apply pending database migrations\n"
                "  import FILE --format ames|sacramento|json [--source NAME]\n"
                "                                        import listings (idempotent)\n"
                "  worker [--queues high,default,low] [--concurrency N]\n"
                "                                        run background jobs\n"
                "  train [--activate] [--rounds N] [--folds K] [--seed S]\n"
                "                                        train the price model (a new version)\n"
                "  model list | model activate VERSION  the price model's versions\n"
                "  model-serve [--listen HOST:PORT]      serve image features over HTTP (MODEL_SERVICE_URL of\n"
                "                                        serve and worker; default 127.0.0.1:8001)\n"
                "  objects gc [--dry-run]                remove stored objects nothing refers to\n"
                "  routes                                list the HTTP routes\n"
                "  user create --email E --role buyer|agent|admin [--full-name N] [--password P]\n"
                "                                        create an account (password on stdin without --password)\n"
                "  version                               print the version\n\n"
                "configuration is read from the environment; see README.md\n");
    return to == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(argc - 1, argv + 1);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(argc - 1, argv + 1);
    if (strcmp(cmd, "routes") == 0)
        return cmd_routes(argc - 1, argv + 1);
    if (strcmp(cmd, "user") == 0)
        return cmd_user(argc - 1, argv + 1);
    if (strcmp(cmd, "worker") == 0)
        return cmd_worker(argc - 1, argv + 1);
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "model") == 0)
        return cmd_model(argc - 1, argv + 1);
    if (strcmp(cmd, "model-serve") == 0)
        return cmd_model_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "objects") == 0)
        return cmd_objects(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("hearth %s\n", HEARTH_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return usage(stdout);
    fprintf(stderr, "hearth: unknown command '%s'\n", cmd);
    return usage(stderr);
}
