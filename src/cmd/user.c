/* user: `hearth user create --email E --role R [--full-name N] [--password P]`, which bootstraps the
 * first admin (and any account) from the command line. Without --password the password is read from
 * standard input (its first line), so it need not appear in the process list or shell history. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../domain/account.h"
#include "commands.h"

static int usage(void)
{
    fprintf(stderr, "usage: hearth user create --email EMAIL --role buyer|agent|admin [--full-name NAME] "
                    "[--password PASSWORD | password on standard input]\n");
    return 2;
}

int cmd_user(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "create") != 0)
        return usage();
    const char *email = NULL, *role = NULL, *name = NULL, *password = NULL;
    for (int i = 2; i < argc; i++) {
        const char **dest = strcmp(argv[i], "--email") == 0       ? &email
                            : strcmp(argv[i], "--role") == 0      ? &role
                            : strcmp(argv[i], "--full-name") == 0 ? &name
                            : strcmp(argv[i], "--password") == 0  ? &password
                                                                  : NULL;
        if (!dest || i + 1 >= argc) {
            fprintf(stderr, "hearth user create: unknown or incomplete option '%s'\n", argv[i]);
            return usage();
        }
        *dest = argv[++i];
    }
    if (!email || !role)
        return usage();
    char line[256];
    if (!password) {
        if (!fgets(line, sizeof line, stdin)) {
            fprintf(stderr, "hearth user create: no --password and nothing on standard input\n");
            return 2;
        }
        line[strcspn(line, "\r\n")] = '\0';
        password = line;
    }
    arena_t a;
    arena_init(&a);
    err_t e;
    err_clear(&e);
    user_input_t in = {.full_name = name ? name : email, .password = password, .role = role_parse(role), .active = 1};
    if (!in.role)
        err_field(&e, "role", "must be one of buyer, agent, admin");
    account_check_email(email, &in.email, &a, &e);
    account_check_password(password, &e);
    account_check_name(in.full_name, &e);
    if (e.code != ERR_NONE) {
        for (int i = 0; i < e.ndetails; i++)
            fprintf(stderr, "hearth user create: --%s %s\n", strcmp(e.details[i].field, "full_name") == 0 ? "full-name" : e.details[i].field,
                    e.details[i].message);
        arena_free(&a);
        return 2;
    }
    config_t *cfg = &g_config;
    if (!cmd_load_config(cfg)) {
        arena_free(&a);
        return 2;
    }
    store_t *s = cmd_open_store(cfg);
    if (!s) {
        arena_free(&a);
        return 1;
    }
    user_t u;
    store_audit_t audit = {.action = "user.create", .resource_type = "user", .ip = "cli"};
    bool ok = account_setup(cfg->argon2_ops, cfg->argon2_mem_kb) || err_set(&e, ERR_INTERNAL, "password hashing does not work at this cost");
    ok = ok && account_create(s, &in, &audit, &a, &u, &e);
    s->ops->close(s);
    int status = 0;
    if (ok) {
        printf("created user %lld (%s, %s)\n", (long long)u.id, u.email, role_name(u.role));
    } else {
        fprintf(stderr, "hearth: %s\n", e.message);
        status = 1;
    }
    sodium_memzero(line, sizeof line);
    arena_free(&a);
    return status;
}
