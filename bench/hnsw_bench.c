/* bench/hnsw_bench.c [--pg CONNINFO] [options]: recall@10 against queries/s of hearth's HNSW
 * (src/infra/hnsw.c, in-process) and, with --pg, of pgvector's HNSW in PostgreSQL, on the same
 * vectors, for bench/hnsw.sh. Built by that script against the build's libhearth_core.a.
 *
 * Data (all from one splitmix64 stream seeded with --seed, Gaussians by Box-Muller): --clusters
 * centres drawn uniformly on the unit sphere (a standard normal vector, normalised); --n base
 * points and then --q held-out queries, each from a centre picked uniformly at random plus
 * N(0, sigma^2) on every coordinate, normalised. The exact top 10 of every query comes from a
 * brute-force scan (two threads; not timed against anything).
 *
 * hearth: hnsw_new(dim, M, ef_construction), --n hnsw_add calls on one thread (timed, VmRSS before
 * and after), hnsw_save and hnsw_load timed (the loaded index must answer as the built one), then
 * for each ef of --efs one untimed warm-up pass and 1,000 sequential hnsw_search(k=10, ef) calls.
 * pgvector: a table (id bigint, v vector(dim)) loaded with COPY ... (FORMAT binary), CREATE INDEX
 * ... USING hnsw (v vector_cosine_ops) WITH (m, ef_construction) timed, index and table sizes,
 * then for each ef `SET hnsw.ef_search` and the prepared statement
 * `SELECT id FROM hnsw_bench ORDER BY v <=> $1 LIMIT 10` (the vector as a binary parameter), one
 * connection, one query at a time. Both sides run one warm-up pass at the middle ef first.
 *
 * Prints machine-readable lines (key=value) that hnsw.sh reads:
 *   data ..., truth ..., hearth_build ..., hearth ef=.. recall=.. qps=.., pg_build ..., pg ef=.. ... */
#define _GNU_SOURCE
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "infra/hnsw.h"

#define K 10
#define MAX_EFS 16

typedef struct opts {
    int n, q, dim, clusters, m, efc;
    double sigma;
    uint64_t seed;
    int efs[MAX_EFS], nefs;
    const char *pg, *dir;
} opts_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* Stops the program: "hnsw_bench: what" or "hnsw_bench: what: detail". */
static void die(const char *what, const char *detail)
{
    fprintf(stderr, "hnsw_bench: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* ------------------------------------------------------------------ data */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)((rng_next(s) >> 11) + 1) * 0x1.0p-53; }

static double gauss(uint64_t *s) { return sqrt(-2 * log(uniform01(s))) * cos(6.283185307179586 * uniform01(s)); }

static void normalise(float *v, int dim)
{
    double n = 0;
    for (int i = 0; i < dim; i++)
        n += (double)v[i] * v[i];
    n = sqrt(n);
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / n);
}

/* centres, then n base points, then q queries */
static void make_data(const opts_t *o, float *base, float *queries)
{
    uint64_t s = o->seed;
    float *centres = malloc((size_t)o->clusters * (size_t)o->dim * sizeof *centres);
    if (!centres)
        die("out of memory", NULL);
    for (int c = 0; c < o->clusters; c++) {
        float *v = centres + (size_t)c * o->dim;
        for (int i = 0; i < o->dim; i++)
            v[i] = (float)gauss(&s);
        normalise(v, o->dim);
    }
    for (int p = 0; p < o->n + o->q; p++) {
        float *v = p < o->n ? base + (size_t)p * o->dim : queries + (size_t)(p - o->n) * o->dim;
        const float *c = centres + (size_t)(rng_next(&s) % (uint64_t)o->clusters) * o->dim;
        for (int i = 0; i < o->dim; i++)
            v[i] = (float)(c[i] + o->sigma * gauss(&s));
        normalise(v, o->dim);
    }
    free(centres);
}

/* ------------------------------------------------------------------ exact answers */

typedef float v8f __attribute__((vector_size(32)));

static float dot(const float *a, const float *b, int n)
{
    v8f s0 = {0}, s1 = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        v8f a0, a1, b0, b1;
        memcpy(&a0, a + i, 32);
        memcpy(&a1, a + i + 8, 32);
        memcpy(&b0, b + i, 32);
        memcpy(&b1, b + i + 8, 32);
        s0 += a0 * b0;
        s1 += a1 * b1;
    }
    v8f s = s0 + s1;
    float r = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

typedef struct truth_job {
    const opts_t *o;
    const float *base, *queries;
    int64_t *truth;
    int from, to;
} truth_job_t;

static void *truth_main(void *p)
{
    truth_job_t *j = p;
    const opts_t *o = j->o;
    for (int qi = j->from; qi < j->to; qi++) {
        const float *q = j->queries + (size_t)qi * o->dim;
        float best[K];
        int64_t *ids = j->truth + (size_t)qi * K;
        int got = 0;
        for (int i = 0; i < o->n; i++) {
            float s = dot(q, j->base + (size_t)i * o->dim, o->dim);
            if (got == K && s <= best[K - 1])
                continue;
            int k = got < K ? got++ : K - 1;
            while (k > 0 && best[k - 1] < s) {
                best[k] = best[k - 1];
                ids[k] = ids[k - 1];
                k--;
            }
            best[k] = s;
            ids[k] = i;
        }
    }
    return NULL;
}

static void exact_top10(const opts_t *o, const float *base, const float *queries, int64_t *truth)
{
    pthread_t th[2];
    truth_job_t jobs[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] = (truth_job_t){o, base, queries, truth, o->q * t / 2, o->q * (t + 1) / 2};
        if (pthread_create(&th[t], NULL, truth_main, &jobs[t]) != 0)
            die("pthread_create failed", NULL);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
}

static int hits(const int64_t *got, int n, const int64_t *truth)
{
    int h = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < K; j++)
            if (got[i] == truth[j]) {
                h++;
                break;
            }
    return h;
}

/* ------------------------------------------------------------------ hearth */

/* One pass of every query at ef; recall@10 and queries/s. */
static void hearth_pass(hnsw_t *h, const opts_t *o, const float *queries, const int64_t *truth, int ef,
                        double *recall, double *qps)
{
    long total = 0;
    double t0 = now_s();
    for (int qi = 0; qi < o->q; qi++) {
        int64_t ids[K];
        float sims[K];
        int got = hnsw_search(h, queries + (size_t)qi * o->dim, K, ef, NULL, NULL, ids, sims);
        if (got < 0)
            die("hnsw_search: out of memory", NULL);
        total += hits(ids, got, truth + (size_t)qi * K);
    }
    double dt = now_s() - t0;
    *recall = (double)total / ((double)o->q * K);
    *qps = o->q / dt;
}

static void run_hearth(const opts_t *o, const float *base, const float *queries, const int64_t *truth)
{
    long rss0 = rss_kb();
    hnsw_t *h = hnsw_new(o->dim, o->m, o->efc, o->seed);
    if (!h)
        die("hnsw_new failed", NULL);
    double t0 = now_s();
    for (int i = 0; i < o->n; i++)
        if (!hnsw_add(h, i, base + (size_t)i * o->dim))
            die("hnsw_add failed", NULL);
    double build = now_s() - t0;
    long rss1 = rss_kb();

    /* save and load, and the loaded index answers as the built one */
    char path[1024];
    snprintf(path, sizeof path, "%s/bench.hnsw", o->dir);
    err_t e;
    err_clear(&e);
    t0 = now_s();
    if (!hnsw_save(h, path, &e))
        die(e.message, NULL);
    double save = now_s() - t0;
    FILE *f = fopen(path, "rb");
    long fsize = -1;
    if (f && fseek(f, 0, SEEK_END) == 0)
        fsize = ftell(f);
    if (f)
        fclose(f);
    t0 = now_s();
    hnsw_t *g = hnsw_load(path, &e);
    double load = now_s() - t0;
    if (!g)
        die(e.message, NULL);
    for (int qi = 0; qi < 50 && qi < o->q; qi++) {
        int64_t a[K], b[K];
        int na = hnsw_search(h, queries + (size_t)qi * o->dim, K, 40, NULL, NULL, a, NULL);
        int nb = hnsw_search(g, queries + (size_t)qi * o->dim, K, 40, NULL, NULL, b, NULL);
        if (na != nb || memcmp(a, b, sizeof(int64_t) * (size_t)na) != 0)
            die("the loaded index answers differently", NULL);
    }
    hnsw_free(g);
    unlink(path);
    printf("hearth_build secs=%.2f rss_mb=%.1f file_mb=%.1f save_s=%.2f load_s=%.2f\n", build,
           (double)(rss1 - rss0) / 1024, (double)fsize / 1048576, save, load);
    fflush(stdout);

    double r, qps;
    hearth_pass(h, o, queries, truth, o->efs[o->nefs / 2], &r, &qps); /* warm-up */
    for (int i = 0; i < o->nefs; i++) {
        hearth_pass(h, o, queries, truth, o->efs[i], &r, &qps);
        printf("hearth ef=%d recall=%.4f qps=%.0f us=%.1f\n", o->efs[i], r, qps, 1e6 / qps);
        fflush(stdout);
    }
    hnsw_free(h);
}

/* ------------------------------------------------------------------ pgvector */

static void pg_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fprintf(stderr, "hnsw_bench: %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

static char *pg_value(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1) {
        fprintf(stderr, "hnsw_bench: %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    char *v = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static void put_be16(char *p, uint16_t v)
{
    p[0] = (char)(v >> 8);
    p[1] = (char)v;
}

static void put_be32(char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (char)(v >> (24 - 8 * i));
}

/* pgvector's binary form: int16 dim, int16 unused, dim x float4, all big-endian. */
static void vector_binary(char *p, const float *v, int dim)
{
    put_be16(p, (uint16_t)dim);
    put_be16(p + 2, 0);
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_be32(p + 4 + 4 * i, u);
    }
}

static void pg_copy(PGconn *c, const opts_t *o, const float *base)
{
    PGresult *r = PQexec(c, "COPY hnsw_bench (id, v) FROM STDIN (FORMAT binary)");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
        fprintf(stderr, "hnsw_bench: COPY: %s", PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
    size_t vlen = 4 + 4 * (size_t)o->dim, row = 2 + 4 + 8 + 4 + vlen;
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + row);
    if (!buf)
        die("out of memory", NULL);
    static const char header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0"; /* signature, flags, extension */
    memcpy(buf, header, 19);
    len = 19;
    for (int i = 0; i < o->n; i++) {
        char *p = buf + len;
        put_be16(p, 2);
        put_be32(p + 2, 8);
        put_be32(p + 6, 0);
        put_be32(p + 10, (uint32_t)i);
        put_be32(p + 14, (uint32_t)vlen);
        vector_binary(p + 18, base + (size_t)i * o->dim, o->dim);
        len += row;
        if (len >= cap) {
            if (PQputCopyData(c, buf, (int)len) != 1)
                die("COPY", PQerrorMessage(c));
            len = 0;
        }
    }
    put_be16(buf + len, 0xffff); /* the trailer */
    len += 2;
    if (PQputCopyData(c, buf, (int)len) != 1 || PQputCopyEnd(c, NULL) != 1)
        die("COPY", PQerrorMessage(c));
    free(buf);
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            die("COPY", PQerrorMessage(c));
        PQclear(r);
    }
}

static void pg_pass(PGconn *c, const opts_t *o, const char *qbin, const int64_t *truth, double *recall, double *qps)
{
    int vlen = 4 + 4 * o->dim, fmt = 1;
    long total = 0;
    double t0 = now_s();
    for (int qi = 0; qi < o->q; qi++) {
        const char *val = qbin + (size_t)qi * (size_t)vlen;
        PGresult *r = PQexecPrepared(c, "knn", 1, &val, &vlen, &fmt, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            die("query", PQerrorMessage(c));
        int64_t ids[K];
        int got = PQntuples(r) < K ? PQntuples(r) : K;
        for (int i = 0; i < got; i++)
            ids[i] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        PQclear(r);
        total += hits(ids, got, truth + (size_t)qi * K);
    }
    double dt = now_s() - t0;
    *recall = (double)total / ((double)o->q * K);
    *qps = o->q / dt;
}

static void run_pg(const opts_t *o, const float *base, const float *queries, const int64_t *truth)
{
    PGconn *c = PQconnectdb(o->pg);
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    pg_ok(c, "SET client_min_messages = warning");
    pg_ok(c, "SET jit = off"); /* the plan costs far less than jit_above_cost anyway */
    char *ver = pg_value(c, "SELECT extversion FROM pg_extension WHERE extname = 'vector'");
    char *srv = pg_value(c, "SHOW server_version");
    char *sb = pg_value(c, "SHOW shared_buffers");
    char *mpw = pg_value(c, "SHOW max_parallel_maintenance_workers");
    pg_ok(c, "DROP TABLE IF EXISTS hnsw_bench");
    char sql[512];
    snprintf(sql, sizeof sql, "CREATE TABLE hnsw_bench (id bigint NOT NULL, v vector(%d) NOT NULL)", o->dim);
    pg_ok(c, sql);
    double t0 = now_s();
    pg_copy(c, o, base);
    double copy = now_s() - t0;
    pg_ok(c, "VACUUM ANALYZE hnsw_bench");
    pg_ok(c, "SET maintenance_work_mem = '2GB'");
    snprintf(sql, sizeof sql,
             "CREATE INDEX hnsw_bench_v ON hnsw_bench USING hnsw (v vector_cosine_ops) WITH (m = %d, "
             "ef_construction = %d)",
             o->m, o->efc);
    t0 = now_s();
    pg_ok(c, sql);
    double build = now_s() - t0;
    char *isize = pg_value(c, "SELECT pg_relation_size('hnsw_bench_v')");
    char *tsize = pg_value(c, "SELECT pg_table_size('hnsw_bench')");
    PGresult *pr = PQexec(c, "CREATE EXTENSION IF NOT EXISTS pg_prewarm");
    bool prewarm = PQresultStatus(pr) == PGRES_COMMAND_OK;
    PQclear(pr);
    if (prewarm) {
        pg_ok(c, "SELECT pg_prewarm('hnsw_bench_v')");
        pg_ok(c, "SELECT pg_prewarm('hnsw_bench')");
    }
    printf("pg_build version=%s server=%s shared_buffers=%s parallel_workers=%s copy_s=%.2f secs=%.2f "
           "index_mb=%.1f table_mb=%.1f prewarm=%s\n",
           ver, srv, sb, mpw, copy, build, atof(isize) / 1048576, atof(tsize) / 1048576, prewarm ? "yes" : "no");
    fflush(stdout);
    free(ver);
    free(srv);
    free(sb);
    free(mpw);
    free(isize);
    free(tsize);

    /* queries as binary parameters */
    char *oid_s = pg_value(c, "SELECT 'vector'::regtype::oid");
    Oid oid = (Oid)strtoul(oid_s, NULL, 10);
    free(oid_s);
    int vlen = 4 + 4 * o->dim, fmt = 1;
    char *qbin = malloc((size_t)o->q * (size_t)vlen);
    if (!qbin)
        die("out of memory", NULL);
    for (int qi = 0; qi < o->q; qi++)
        vector_binary(qbin + (size_t)qi * (size_t)vlen, queries + (size_t)qi * o->dim, o->dim);
    const char *knn = "SELECT id FROM hnsw_bench ORDER BY v <=> $1 LIMIT 10";
    PGresult *r = PQprepare(c, "knn", knn, 1, &oid);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("prepare", PQerrorMessage(c));
    PQclear(r);
    /* the plan: it must be the index */
    snprintf(sql, sizeof sql, "EXPLAIN (COSTS OFF) %s", knn);
    r = PQexecParams(c, sql, 1, &oid, (const char *const *)&qbin, &vlen, &fmt, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("explain", PQerrorMessage(c));
    printf("pg_plan");
    bool index = false;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *line = PQgetvalue(r, i, 0);
        printf("%s%s", i ? " | " : " ", line + strspn(line, " ->"));
        index = index || strstr(line, "hnsw_bench_v") != NULL;
    }
    printf("\n");
    PQclear(r);
    if (!index)
        die("the plan does not use the HNSW index", NULL);
    /* the round trip alone: a prepared SELECT 1 */
    r = PQprepare(c, "one", "SELECT 1", 0, NULL);
    PQclear(r);
    t0 = now_s();
    for (int i = 0; i < 2000; i++)
        PQclear(PQexecPrepared(c, "one", 0, NULL, NULL, NULL, 0));
    printf("pg_roundtrip us=%.1f\n", (now_s() - t0) / 2000 * 1e6);
    fflush(stdout);

    double rec, qps;
    snprintf(sql, sizeof sql, "SET hnsw.ef_search = %d", o->efs[o->nefs / 2]);
    pg_ok(c, sql);
    pg_pass(c, o, qbin, truth, &rec, &qps); /* warm-up */
    for (int i = 0; i < o->nefs; i++) {
        if (o->efs[i] > 1000) /* pgvector's limit */
            continue;
        snprintf(sql, sizeof sql, "SET hnsw.ef_search = %d", o->efs[i]);
        pg_ok(c, sql);
        pg_pass(c, o, qbin, truth, &rec, &qps);
        printf("pg ef=%d recall=%.4f qps=%.0f us=%.1f\n", o->efs[i], rec, qps, 1e6 / qps);
        fflush(stdout);
    }
    pg_ok(c, "DROP TABLE hnsw_bench");
    free(qbin);
    PQfinish(c);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    opts_t o = {.n = 100000, .q = 1000, .dim = 256, .clusters = 100, .m = 16, .efc = 200, .sigma = 0.05,
                .seed = 42, .efs = {10, 20, 40, 80, 160, 320, 640}, .nefs = 7, .dir = "/tmp"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            die(a, "needs a value");
        i++;
        if (!strcmp(a, "--n"))
            o.n = atoi(v);
        else if (!strcmp(a, "--q"))
            o.q = atoi(v);
        else if (!strcmp(a, "--dim"))
            o.dim = atoi(v);
        else if (!strcmp(a, "--clusters"))
            o.clusters = atoi(v);
        else if (!strcmp(a, "--sigma"))
            o.sigma = atof(v);
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--m"))
            o.m = atoi(v);
        else if (!strcmp(a, "--efc"))
            o.efc = atoi(v);
        else if (!strcmp(a, "--pg"))
            o.pg = v;
        else if (!strcmp(a, "--dir"))
            o.dir = v;
        else if (!strcmp(a, "--efs")) {
            char *copy = strdup(v), *save = NULL;
            o.nefs = 0;
            for (char *t = strtok_r(copy, ",", &save); t && o.nefs < MAX_EFS; t = strtok_r(NULL, ",", &save))
                o.efs[o.nefs++] = atoi(t);
            free(copy);
        } else
            die("unknown option", a);
    }
    if (o.n < K || o.q < 1 || o.dim < 1 || o.clusters < 1 || o.nefs < 1)
        die("bad options", NULL);

    float *base = malloc((size_t)o.n * (size_t)o.dim * sizeof *base);
    float *queries = malloc((size_t)o.q * (size_t)o.dim * sizeof *queries);
    int64_t *truth = malloc((size_t)o.q * K * sizeof *truth);
    if (!base || !queries || !truth)
        die("out of memory", NULL);
    double t0 = now_s();
    make_data(&o, base, queries);
    double gen = now_s() - t0;
    t0 = now_s();
    exact_top10(&o, base, queries, truth);
    printf("data n=%d q=%d dim=%d clusters=%d sigma=%g seed=%llu gen_s=%.2f truth_s=%.2f\n", o.n, o.q, o.dim,
           o.clusters, o.sigma, (unsigned long long)o.seed, gen, now_s() - t0);
    fflush(stdout);

    run_hearth(&o, base, queries, truth);
    if (o.pg)
        run_pg(&o, base, queries, truth);
    free(base);
    free(queries);
    free(truth);
    return 0;
}
