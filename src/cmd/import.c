/* cmd/import: `hearth import FILE --format ames|sacramento|json [--source NAME]`.
 *
 * Reads FILE, upserts its rows through import_run (domain/import.c), prints each rejected row as
 * `line N: message` on stderr and one summary line on stdout. Exit status: 0 when the file was
 * processed (rejected rows included), 1 on a fatal error (unreadable file, store error), 2 on a
 * usage or configuration error. Imported rows belong to no user (owner_id 0, the system). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../base/config.h"
#include "../base/error.h"
#include "../domain/account.h"
#include "../domain/import.h"
#include "../infra/redis.h"
#include "../net/respcache.h"
#include "../infra/store.h"
#include "commands.h"

#define IMPORT_MAX_FILE (1024L * 1024 * 1024) /* 1 GiB: far above any real listing file */

static int import_usage(const char *why)
{
    if (why)
        fprintf(stderr, "hearth import: %s\n", why);
    fprintf(stderr, "usage: hearth import FILE --format ames|sacramento|json [--source NAME]\n");
    return 2;
}

/* Reads the whole file into a malloc'd NUL-terminated buffer; NULL with `e` set on failure. */
static char *import_read_file(const char *path, size_t *len, err_t *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(e, ERR_NOT_FOUND, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set(e, ERR_BAD_REQUEST, "%s is not a regular file", path);
        fclose(f);
        return NULL;
    }
    if (st.st_size > IMPORT_MAX_FILE) {
        err_set(e, ERR_PAYLOAD_TOO_LARGE, "%s is larger than %ld bytes", path, IMPORT_MAX_FILE);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *data = malloc(n + 1);
    if (!data) {
        err_set(e, ERR_INTERNAL, "out of memory reading %s", path);
        fclose(f);
        return NULL;
    }
    size_t got = fread(data, 1, n, f);
    bool failed = ferror(f) || got != n;
    fclose(f);
    if (failed) {
        err_set(e, ERR_INTERNAL, "cannot read %s", path);
        free(data);
        return NULL;
    }
    data[n] = '\0';
    *len = n;
    return data;
}

/* Instances sharing a Redis cache see the imported rows at once: bump the shared generation. */
static void invalidate_shared_cache(const config_t *cfg)
{
    err_t e;
    err_clear(&e);
    redis_pool_t *redis = redis_open(cfg->redis_url, 1, 250, &e);
    if (!redis)
        return;
    respcache_setup(NULL, NULL, 0, redis, cfg->database_url);
    bool told = false;
    for (int attempt = 0; attempt < 3 && !told; attempt++) {
        if (attempt) {
            struct timespec pause = {0, 200 * 1000000L};
            nanosleep(&pause, NULL);
        }
        told = respcache_invalidate();
    }
    if (!told)
        fprintf(stderr, "hearth import: Redis did not answer; other instances' caches show the new rows "
                        "within HEARTH_CACHE_TTL_MS\n");
    respcache_setup(NULL, NULL, 0, NULL, NULL);
    redis_close(redis);
}

int cmd_import(int argc, char **argv)
{
    const char *file = NULL, *format = NULL, *source = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--format") == 0 || strcmp(a, "--source") == 0) {
            if (i + 1 >= argc)
                return import_usage("a value is missing after an option");
            if (a[2] == 'f')
                format = argv[++i];
            else
                source = argv[++i];
        } else if (strncmp(a, "--format=", 9) == 0) {
            format = a + 9;
        } else if (strncmp(a, "--source=", 9) == 0) {
            source = a + 9;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            import_usage(NULL);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            char why[160];
            snprintf(why, sizeof why, "unknown option %.100s", a);
            return import_usage(why);
        } else if (!file) {
            file = a;
        } else {
            return import_usage("only one FILE may be given");
        }
    }
    if (!file)
        return import_usage("FILE is required");
    import_format_t fmt;
    if (!format)
        return import_usage("--format is required");
    if (!import_format_parse(format, &fmt))
        return import_usage("--format must be ames, sacramento or json");
    if (source && (!*source || strlen(source) > 64))
        return import_usage("--source must be 1 to 64 characters");

    if (!cmd_load_config(&g_config))
        return 2;
    err_t e;
    err_clear(&e);
    size_t len = 0;
    char *data = import_read_file(file, &len, &e);
    if (!data) {
        fprintf(stderr, "hearth import: %s\n", e.message);
        return 1;
    }
    store_t *s = cmd_open_store(&g_config);
    if (!s) {
        free(data);
        return 1;
    }
    int status = 0;
    import_report_t *rep = malloc(sizeof *rep);
    if (!rep) {
        fprintf(stderr, "hearth import: out of memory\n");
        status = 1;
    } else {
        int64_t owner = 0; /* rows belong to the system account */
        bool ok = account_system_id(s, &owner, &e) && import_run(s, data, len, fmt, source, owner, NULL, rep, &e);
        for (int i = 0; i < rep->nrejections; i++)
            fprintf(stderr, "line %d: %s\n", rep->rejections[i].line, rep->rejections[i].message);
        if (rep->rejected > rep->nrejections)
            fprintf(stderr, "... and %lld more rejected rows\n", (long long)(rep->rejected - rep->nrejections));
        if (!ok) {
            fprintf(stderr, "hearth import: %s: %s\n", file, e.message);
            status = 1;
        }
        if ((rep->inserted || rep->updated) && g_config.redis_url)
            invalidate_shared_cache(&g_config);
        /* after a fatal error the counts are of the batches committed before it */
        printf(ok ? "imported %s: inserted %lld, updated %lld, unchanged %lld, rejected %lld\n"
                  : "import of %s stopped: inserted %lld, updated %lld, unchanged %lld, rejected %lld\n",
               file, (long long)rep->inserted, (long long)rep->updated,
               (long long)rep->unchanged, (long long)rep->rejected);
    }
    free(rep);
    s->ops->close(s);
    free(data);
    return status;
}
