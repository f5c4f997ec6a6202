/* config: the process configuration, read once at start-up from the environment (12-factor) and
 * overridden by command-line flags. Every value is validated before anything starts; a bad value
 * is reported as one line naming the variable and what was expected. Read-only after load. */
#ifndef HEARTH_CONFIG_H
#define HEARTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"
#include "cidr.h"

#define CONFIG_MAX_ORIGINS 32
#define CONFIG_MAX_RATE_CLASSES 16

/* One entry of HEARTH_RATE_LIMITS: `limit` requests per `period_ms` for the route class `cls`, at
 * most `burst` at once (default: limit). */
typedef struct config_rate_rule {
    char cls[32];
    int64_t limit, period_ms, burst;
} config_rate_rule_t;

typedef struct config {
    char listen_host[256];
    int listen_port;
    char data_dir[1024];
    char database_url[2048];
    const char *redis_url, *s3_endpoint, *s3_bucket, *s3_region, *s3_access_key_id,
        *s3_secret_access_key, *s3_public_url, *model_service_url, *jwt_secret, *rate_limits,
        *trusted_proxies;
    int threads;         /* event loops (HEARTH_THREADS, default: cores) */
    int workers;         /* blocking-handler pool threads (HEARTH_WORKERS) */
    int db_pool;         /* store connections (HEARTH_DB_POOL, default: workers) */
    log_level_t log_level;
    bool log_json;
    int ncors;           /* 0: CORS off */
    bool cors_any;       /* "*" */
    char *cors_origins[CONFIG_MAX_ORIGINS];
    size_t max_body;     /* HEARTH_MAX_BODY bytes */
    bool metrics_public; /* HEARTH_METRICS_PUBLIC=1: /metrics open to all (else loopback only) */
    int header_timeout_ms, body_timeout_ms, idle_timeout_ms, shutdown_timeout_ms;
    int max_connections;
    int cache_mb;     /* HEARTH_CACHE_MB: in-process response cache budget, 0 = off */
    int cache_ttl_ms; /* HEARTH_CACHE_TTL_MS */
    int cache_near_mb; /* HEARTH_CACHE_NEAR_MB: with Redis, the in-process near cache, 0 = off */
    cidr_t proxies[CIDR_MAX_LIST]; /* HEARTH_TRUSTED_PROXIES */
    int nproxies;
    config_rate_rule_t rate_rules[CONFIG_MAX_RATE_CLASSES]; /* HEARTH_RATE_LIMITS; none: no rate limiting */
    int nrate_rules;
    bool rate_limit_redis_down_deny; /* HEARTH_RATE_LIMIT_REDIS_DOWN=deny: refuse while Redis is down (default allow) */
    int access_token_ttl_s;  /* HEARTH_ACCESS_TOKEN_TTL */
    int refresh_token_ttl_s; /* HEARTH_REFRESH_TOKEN_TTL */
    int argon2_ops, argon2_mem_kb; /* HEARTH_ARGON2_OPS, HEARTH_ARGON2_MEM_KB: password hashing cost */
    config_rate_rule_t login_rules[CONFIG_MAX_RATE_CLASSES]; /* HEARTH_LOGIN_LIMITS: classes "account", "address" */
    int nlogin_rules;
    int job_workers;  /* HEARTH_JOB_WORKERS: job runner threads inside `serve` (0: none) */
    int job_lease_ms; /* HEARTH_JOB_LEASE_MS */
    bool test_jobs;   /* HEARTH_TEST_JOBS=1: the test.* job types (tests only) */
    const char *schedules; /* HEARTH_SCHEDULES: recurring jobs (domain/schedule.h), checked by serve */
    int model_timeout_ms;      /* HEARTH_MODEL_TIMEOUT_MS: one call to the model service, retries included */
    int model_breaker_open_ms; /* HEARTH_MODEL_BREAKER_OPEN_MS: how long its breaker stays open */
} config_t;

extern config_t g_config;

/* Load from the environment. On failure writes one line into `why` and returns false. */
bool config_load(config_t *c, char *why, size_t whylen);
/* Parse "host:port" (or ":port", or "[v6]:port") into the config. */
bool config_set_listen(config_t *c, const char *value, char *why, size_t whylen);
/* Parse "CLASS=N/PERIOD[:BURST],..." (HEARTH_RATE_LIMITS); on failure `reason` says what is wrong. */
bool config_parse_rate_limits(const char *value, config_rate_rule_t *rules, int *n, char *reason, size_t reasonlen);
bool config_is_sqlite(const config_t *c);
const char *config_sqlite_path(const config_t *c); /* the file path of a sqlite:// URL */

#endif
