/* config: environment parsing and validation; see config.h. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

config_t g_config;

static bool fail(char *why, size_t n, const char *var, const char *expected, const char *got)
{
    snprintf(why, n, "%s=%s: expected %s", var, got, expected);
    return false;
}

static bool env_int(const char *var, int def, int lo, int hi, int *out, char *why, size_t n)
{
    const char *v = getenv(var);
    if (!v || !*v) {
        *out = def;
        return true;
    }
    int64_t x;
    if (!parse_i64(v, &x) || x < lo || x > hi) {
        char exp[96];
        snprintf(exp, sizeof exp, "an integer from %d to %d", lo, hi);
        return fail(why, n, var, exp, v);
    }
    *out = (int)x;
    return true;
}

static const char *env_str(const char *var)
{
    const char *v = getenv(var);
    return v && *v ? v : NULL;
}

/* "1048576", "512k", "10M", "1G" */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned long long mul = 1;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': mul = 1024ull; break;
        case 'm': mul = 1024ull * 1024; break;
        case 'g': mul = 1024ull * 1024 * 1024; break;
        default: return false;
        }
        end++;
        if (tolower((unsigned char)*end) == 'b')
            end++;
        if (*end)
            return false;
    }
    if (v == 0 || v > (1ull << 40) / mul)
        return false;
    *out = (size_t)(v * mul);
    return true;
}

bool config_set_listen(config_t *c, const char *value, char *why, size_t whylen)
{
    const char *colon = strrchr(value, ':');
    if (!colon)
        return fail(why, whylen, "HEARTH_LISTEN", "HOST:PORT (for example 127.0.0.1:8080)", value);
    const char *host = value;
    size_t hlen = (size_t)(colon - value);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']')
        host++, hlen -= 2;
    if (hlen >= sizeof c->listen_host)
        return fail(why, whylen, "HEARTH_LISTEN", "a shorter host name", value);
    int64_t port;
    if (!parse_i64(colon + 1, &port) || port < 0 || port > 65535)
        return fail(why, whylen, "HEARTH_LISTEN", "HOST:PORT with a port from 0 to 65535", value);
    if (hlen == 0)
        snprintf(c->listen_host, sizeof c->listen_host, "0.0.0.0");
    else
        snprintf(c->listen_host, sizeof c->listen_host, "%.*s", (int)hlen, host);
    c->listen_port = (int)port;
    return true;
}

/* "min", "5s", "10minutes", "1h": the period of a rate limit in milliseconds */
static bool parse_period(const char *s, size_t len, int64_t *ms)
{
    int64_t k = 0;
    size_t i = 0;
    while (i < len && isdigit((unsigned char)s[i])) {
        k = k * 10 + (s[i] - '0');
        if (k > 1000000)
            return false;
        i++;
    }
    if (i == 0)
        k = 1;
    if (k < 1)
        return false;
    static const struct { const char *name; int64_t ms; } units[] = {
        {"s", 1000}, {"sec", 1000}, {"second", 1000}, {"seconds", 1000},
        {"m", 60000}, {"min", 60000}, {"minute", 60000}, {"minutes", 60000},
        {"h", 3600000}, {"hour", 3600000}, {"hours", 3600000},
    };
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++)
        if (strlen(units[u].name) == len - i && strncmp(s + i, units[u].name, len - i) == 0) {
            *ms = k * units[u].ms;
            return true;
        }
    return false;
}

/* digits only, 1..max */
static bool parse_count(const char *s, size_t len, int64_t max, int64_t *out)
{
    if (len == 0 || len > 12)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > max)
        return false;
    *out = v;
    return true;
}

#define RATE_MAX_COUNT 1000000000 /* requests per period, and burst */
#define RATE_MAX_PERIOD_MS (24 * 3600000LL)

bool config_parse_rate_limits(const char *value, config_rate_rule_t *rules, int *n, char *reason, size_t rlen)
{
    *n = 0;
    const char *p = value;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        p = *end ? end + 1 : end;
        if (a == b)
            continue;
        int len = (int)(b - a);
        const char *eq = memchr(a, '=', (size_t)(b - a));
        const char *slash = eq ? memchr(eq, '/', (size_t)(b - eq)) : NULL;
        if (!eq || !slash) {
            snprintf(reason, rlen, "\"%.*s\" is not CLASS=N/PERIOD[:BURST]", len, a);
            return false;
        }
        const char *colon = memchr(slash, ':', (size_t)(b - slash));
        config_rate_rule_t r;
        memset(&r, 0, sizeof r);
        size_t clen = (size_t)(eq - a);
        while (clen && isspace((unsigned char)a[clen - 1]))
            clen--;
        bool name_ok = clen > 0 && clen < sizeof r.cls;
        for (size_t i = 0; name_ok && i < clen; i++)
            name_ok = islower((unsigned char)a[i]) || isdigit((unsigned char)a[i]) || a[i] == '_' || a[i] == '-';
        if (!name_ok) {
            snprintf(reason, rlen, "\"%.*s\": a class is 1 to 31 of a-z, 0-9, _ and -", len, a);
            return false;
        }
        memcpy(r.cls, a, clen);
        const char *num = eq + 1;
        while (num < slash && isspace((unsigned char)*num))
            num++;
        const char *pend = colon ? colon : b;
        if (!parse_count(num, (size_t)(slash - num), RATE_MAX_COUNT, &r.limit)) {
            snprintf(reason, rlen, "\"%.*s\": N must be a whole number from 1 to %d", len, a, RATE_MAX_COUNT);
            return false;
        }
        if (!parse_period(slash + 1, (size_t)(pend - slash - 1), &r.period_ms) || r.period_ms > RATE_MAX_PERIOD_MS) {
            snprintf(reason, rlen, "\"%.*s\": PERIOD must be s, min or h, optionally after a number (30s, 5min), at most 24h",
                     len, a);
            return false;
        }
        r.burst = r.limit;
        if (colon && !parse_count(colon + 1, (size_t)(b - colon - 1), RATE_MAX_COUNT, &r.burst)) {
            snprintf(reason, rlen, "\"%.*s\": BURST must be a whole number from 1 to %d", len, a, RATE_MAX_COUNT);
            return false;
        }
        /* the tolerance burst x (period / N) must stay within a day, so the arithmetic cannot overflow */
        uint64_t t_ns = (uint64_t)r.period_ms * 1000000u / (uint64_t)r.limit;
        if (t_ns == 0 || (uint64_t)r.burst > (uint64_t)RATE_MAX_PERIOD_MS * 1000000u / t_ns) {
            snprintf(reason, rlen, "\"%.*s\": BURST x PERIOD / N must be at most 24h", len, a);
            return false;
        }
        for (int i = 0; i < *n; i++)
            if (strcmp(rules[i].cls, r.cls) == 0) {
                snprintf(reason, rlen, "class %s is given twice", r.cls);
                return false;
            }
        if (*n == CONFIG_MAX_RATE_CLASSES) {
            snprintf(reason, rlen, "at most %d classes", CONFIG_MAX_RATE_CLASSES);
            return false;
        }
        rules[(*n)++] = r;
    }
    if (*n == 0) {
        snprintf(reason, rlen, "no CLASS=N/PERIOD entry");
        return false;
    }
    return true;
}

bool config_is_sqlite(const config_t *c) { return strncmp(c->database_url, "sqlite://", 9) == 0; }

const char *config_sqlite_path(const config_t *c)
{
    /* sqlite:///abs/path -> /abs/path ; sqlite://rel/path -> rel/path */
    return c->database_url + 9;
}

bool config_load(config_t *c, char *why, size_t n)
{
    memset(c, 0, sizeof *c);
    const char *v;

    if (!config_set_listen(c, env_str("HEARTH_LISTEN") ? env_str("HEARTH_LISTEN") : "127.0.0.1:8080", why, n))
        return false;

    v = env_str("HEARTH_DATA_DIR");
    snprintf(c->data_dir, sizeof c->data_dir, "%s", v ? v : "./var");

    v = env_str("DATABASE_URL");
    if (v) {
        if (strncmp(v, "sqlite://", 9) != 0 && strncmp(v, "postgres://", 11) != 0 &&
            strncmp(v, "postgresql://", 13) != 0)
            return fail(why, n, "DATABASE_URL", "sqlite:///PATH or postgres://...", v);
        if (strncmp(v, "sqlite://", 9) == 0 && !v[9])
            return fail(why, n, "DATABASE_URL", "sqlite:///PATH with a file path", v);
        if (strlen(v) >= sizeof c->database_url)
            return fail(why, n, "DATABASE_URL", "a shorter URL", "...");
        snprintf(c->database_url, sizeof c->database_url, "%s", v);
    } else {
        snprintf(c->database_url, sizeof c->database_url, "sqlite://%s/hearth.db", c->data_dir);
    }

    c->redis_url = env_str("REDIS_URL");
    if (c->redis_url && strncmp(c->redis_url, "redis://", 8) != 0)
        return fail(why, n, "REDIS_URL", "redis://[:PASSWORD@]HOST[:PORT][/DB] (TLS is not supported)", c->redis_url);
    c->s3_endpoint = env_str("S3_ENDPOINT");
    if (c->s3_endpoint && strncmp(c->s3_endpoint, "http://", 7) != 0 && strncmp(c->s3_endpoint, "https://", 8) != 0)
        return fail(why, n, "S3_ENDPOINT", "an http:// or https:// URL", c->s3_endpoint);
    c->s3_bucket = env_str("S3_BUCKET");
    c->s3_region = env_str("S3_REGION");
    c->s3_access_key_id = env_str("S3_ACCESS_KEY_ID");
    c->s3_secret_access_key = env_str("S3_SECRET_ACCESS_KEY");
    c->s3_public_url = env_str("S3_PUBLIC_URL");
    c->model_service_url = env_str("MODEL_SERVICE_URL");
    if (c->model_service_url && strncmp(c->model_service_url, "http://", 7) != 0 &&
        strncmp(c->model_service_url, "https://", 8) != 0)
        return fail(why, n, "MODEL_SERVICE_URL", "an http:// or https:// URL", c->model_service_url);
    c->jwt_secret = env_str("HEARTH_JWT_SECRET");
    if (c->jwt_secret && strlen(c->jwt_secret) < 32)
        return fail(why, n, "HEARTH_JWT_SECRET", "at least 32 characters", "(hidden)");
    c->rate_limits = env_str("HEARTH_RATE_LIMITS");
    if (c->rate_limits) {
        char reason[200], exp[320];
        if (!config_parse_rate_limits(c->rate_limits, c->rate_rules, &c->nrate_rules, reason, sizeof reason)) {
            snprintf(exp, sizeof exp, "CLASS=N/PERIOD[:BURST],... such as read=600/min,write=60/min:10 (%s)", reason);
            return fail(why, n, "HEARTH_RATE_LIMITS", exp, c->rate_limits);
        }
    }
    v = env_str("HEARTH_LOGIN_LIMITS");
    {
        const char *spec = v ? v : "account=10/min:10,address=60/min:30";
        char reason[200], exp[320];
        bool ok = config_parse_rate_limits(spec, c->login_rules, &c->nlogin_rules, reason, sizeof reason);
        for (int i = 0; ok && i < c->nlogin_rules; i++)
            if (strcmp(c->login_rules[i].cls, "account") && strcmp(c->login_rules[i].cls, "address")) {
                snprintf(reason, sizeof reason, "unknown class \"%s\"", c->login_rules[i].cls);
                ok = false;
            }
        if (!ok) {
            snprintf(exp, sizeof exp, "account=N/PERIOD[:BURST],address=N/PERIOD[:BURST] (%s)", reason);
            return fail(why, n, "HEARTH_LOGIN_LIMITS", exp, spec);
        }
    }
    v = env_str("HEARTH_RATE_LIMIT_REDIS_DOWN");
    if (v) {
        if (strcmp(v, "allow") == 0)
            c->rate_limit_redis_down_deny = false;
        else if (strcmp(v, "deny") == 0)
            c->rate_limit_redis_down_deny = true;
        else
            return fail(why, n, "HEARTH_RATE_LIMIT_REDIS_DOWN", "allow or deny", v);
    }
    c->trusted_proxies = env_str("HEARTH_TRUSTED_PROXIES");
    if (c->trusted_proxies) {
        char reason[160];
        if (!cidr_parse_list(c->trusted_proxies, c->proxies, &c->nproxies, reason, sizeof reason))
            return fail(why, n, "HEARTH_TRUSTED_PROXIES", "a comma-separated list of IP addresses or CIDR networks", reason);
    }

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (!env_int("HEARTH_THREADS", (int)cores, 1, 256, &c->threads, why, n))
        return false;
    int defworkers = (int)(cores * 2 < 4 ? 4 : cores * 2);
    if (!env_int("HEARTH_WORKERS", defworkers, 1, 1024, &c->workers, why, n))
        return false;
    if (!env_int("HEARTH_DB_POOL", c->workers, 1, 1024, &c->db_pool, why, n))
        return false;

    c->log_level = LOG_INFO;
    v = env_str("HEARTH_LOG_LEVEL");
    if (v && !log_level_parse(v, &c->log_level))
        return fail(why, n, "HEARTH_LOG_LEVEL", "one of debug, info, warn, error", v);
    c->log_json = true;
    v = env_str("HEARTH_LOG_FORMAT");
    if (v) {
        if (strcmp(v, "json") == 0)
            c->log_json = true;
        else if (strcmp(v, "text") == 0)
            c->log_json = false;
        else
            return fail(why, n, "HEARTH_LOG_FORMAT", "json or text", v);
    }

    v = env_str("HEARTH_CORS_ORIGINS");
    if (v) {
        char *copy = strdup(v), *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            size_t len = strlen(tok);
            while (len && tok[len - 1] == ' ')
                tok[--len] = '\0';
            if (!len)
                continue;
            if (strcmp(tok, "*") == 0) {
                c->cors_any = true;
                continue;
            }
            if ((strncmp(tok, "http://", 7) != 0 && strncmp(tok, "https://", 8) != 0) || tok[len - 1] == '/') {
                free(copy);
                return fail(why, n, "HEARTH_CORS_ORIGINS", "a comma-separated list of origins like https://example.com, or *", v);
            }
            if (c->ncors == CONFIG_MAX_ORIGINS) {
                free(copy);
                return fail(why, n, "HEARTH_CORS_ORIGINS", "at most 32 origins", v);
            }
            c->cors_origins[c->ncors++] = strdup(tok);
        }
        free(copy);
    }

    c->max_body = 1024 * 1024;
    v = env_str("HEARTH_MAX_BODY");
    if (v && !parse_size(v, &c->max_body))
        return fail(why, n, "HEARTH_MAX_BODY", "a size in bytes, optionally with k, M or G (for example 1M)", v);

    c->schedules = env_str("HEARTH_SCHEDULES");
    v = env_str("HEARTH_TEST_JOBS");
    if (v) {
        if (strcmp(v, "1") != 0 && strcmp(v, "0") != 0)
            return fail(why, n, "HEARTH_TEST_JOBS", "1 or 0", v);
        c->test_jobs = strcmp(v, "1") == 0;
    }

    v = env_str("HEARTH_METRICS_PUBLIC");
    if (v) {
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
            c->metrics_public = true;
        else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
            c->metrics_public = false;
        else
            return fail(why, n, "HEARTH_METRICS_PUBLIC", "1 or 0", v);
    }

    if (!env_int("HEARTH_HEADER_TIMEOUT_MS", 10000, 10, 3600000, &c->header_timeout_ms, why, n) ||
        !env_int("HEARTH_BODY_TIMEOUT_MS", 30000, 10, 3600000, &c->body_timeout_ms, why, n) ||
        !env_int("HEARTH_IDLE_TIMEOUT_MS", 60000, 10, 3600000, &c->idle_timeout_ms, why, n) ||
        !env_int("HEARTH_SHUTDOWN_TIMEOUT_MS", 10000, 0, 3600000, &c->shutdown_timeout_ms, why, n) ||
        !env_int("HEARTH_MAX_CONNECTIONS", 20000, 1, 1000000, &c->max_connections, why, n) ||
        !env_int("HEARTH_CACHE_MB", 64, 0, 65536, &c->cache_mb, why, n) ||
        !env_int("HEARTH_CACHE_TTL_MS", 2000, 0, 86400000, &c->cache_ttl_ms, why, n) ||
        !env_int("HEARTH_CACHE_NEAR_MB", 16, 0, 65536, &c->cache_near_mb, why, n) ||
        !env_int("HEARTH_ACCESS_TOKEN_TTL", 900, 10, 86400, &c->access_token_ttl_s, why, n) ||
        !env_int("HEARTH_REFRESH_TOKEN_TTL", 2592000, 60, 31536000, &c->refresh_token_ttl_s, why, n) ||
        !env_int("HEARTH_ARGON2_OPS", 2, 1, 10, &c->argon2_ops, why, n) ||
        !env_int("HEARTH_ARGON2_MEM_KB", 65536, 64, 1048576, &c->argon2_mem_kb, why, n) ||
        !env_int("HEARTH_JOB_WORKERS", 2, 0, 256, &c->job_workers, why, n) ||
        !env_int("HEARTH_JOB_LEASE_MS", 30000, 300, 3600000, &c->job_lease_ms, why, n) ||
        !env_int("HEARTH_MODEL_TIMEOUT_MS", 2000, 50, 600000, &c->model_timeout_ms, why, n) ||
        !env_int("HEARTH_MODEL_BREAKER_OPEN_MS", 30000, 100, 3600000, &c->model_breaker_open_ms, why, n))
        return false;
    return true;
}
