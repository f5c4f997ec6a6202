/* metrics: see metrics.h. Route index -1 (no route matched) is kept in the last slot. */
#include "metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "router.h"

static const int statuses[] = {100, 200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 408, 409,
                               412, 413, 414, 415, 422, 429, 431, 500, 503};
#define NSTATUS ((int)(sizeof statuses / sizeof statuses[0]) + 1) /* + "other" */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS ((int)(sizeof buckets / sizeof buckets[0]))

static _Atomic uint64_t requests[METRICS_MAX_ROUTES + 1][METHOD__COUNT][NSTATUS];
static _Atomic uint64_t hist[METRICS_MAX_ROUTES + 1][NBUCKETS + 1]; /* last: +Inf */
static _Atomic uint64_t hist_sum_ns[METRICS_MAX_ROUTES + 1];
static _Atomic int64_t connections, in_flight;
static _Atomic uint64_t connections_total;

static int status_slot(int status)
{
    for (int i = 0; i < NSTATUS - 1; i++)
        if (statuses[i] == status)
            return i;
    return NSTATUS - 1;
}

void metrics_request(int route_index, http_method_t method, int status, uint64_t duration_ns)
{
    int r = route_index < 0 || route_index >= METRICS_MAX_ROUTES ? METRICS_MAX_ROUTES : route_index;
    atomic_fetch_add_explicit(&requests[r][method][status_slot(status)], 1, memory_order_relaxed);
    double s = (double)duration_ns / 1e9;
    int b = 0;
    while (b < NBUCKETS && s > buckets[b])
        b++;
    atomic_fetch_add_explicit(&hist[r][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist_sum_ns[r], duration_ns, memory_order_relaxed);
}

void metrics_connections_add(int delta)
{
    atomic_fetch_add_explicit(&connections, delta, memory_order_relaxed);
    if (delta > 0)
        atomic_fetch_add_explicit(&connections_total, (uint64_t)delta, memory_order_relaxed);
}

void metrics_in_flight_add(int delta) { atomic_fetch_add_explicit(&in_flight, delta, memory_order_relaxed); }

static const char *route_label(int r) { return r == METRICS_MAX_ROUTES ? "unmatched" : router_table()[r].pattern; }

void metrics_render(buf_t *out)
{
    int nroutes = router_count();
    buf_puts(out, "# HELP hearth_http_requests_total HTTP requests answered, by route, method and status.\n"
                  "# TYPE hearth_http_requests_total counter\n");
    for (int r = 0; r <= METRICS_MAX_ROUTES; r++) {
        if (r >= nroutes && r != METRICS_MAX_ROUTES)
            continue;
        for (int m = 0; m < METHOD__COUNT; m++)
            for (int s = 0; s < NSTATUS; s++) {
                uint64_t v = atomic_load_explicit(&requests[r][m][s], memory_order_relaxed);
                if (!v)
                    continue;
                if (s == NSTATUS - 1)
                    buf_printf(out, "hearth_http_requests_total{route=\"%s\",method=\"%s\",status=\"other\"} %llu\n",
                               route_label(r), http_method_names[m], (unsigned long long)v);
                else
                    buf_printf(out, "hearth_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                               route_label(r), http_method_names[m], statuses[s], (unsigned long long)v);
            }
    }
    buf_puts(out, "# HELP hearth_http_request_duration_seconds Time from the first byte of a request to its response being written.\n"
                  "# TYPE hearth_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= METRICS_MAX_ROUTES; r++) {
        if (r >= nroutes && r != METRICS_MAX_ROUTES)
            continue;
        uint64_t cum = 0;
        for (int b = 0; b <= NBUCKETS; b++)
            cum += atomic_load_explicit(&hist[r][b], memory_order_relaxed);
        if (!cum)
            continue;
        cum = 0;
        for (int b = 0; b < NBUCKETS; b++) {
            cum += atomic_load_explicit(&hist[r][b], memory_order_relaxed);
            buf_printf(out, "hearth_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", route_label(r),
                       buckets[b], (unsigned long long)cum);
        }
        cum += atomic_load_explicit(&hist[r][NBUCKETS], memory_order_relaxed);
        buf_printf(out, "hearth_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", route_label(r),
                   (unsigned long long)cum);
        buf_printf(out, "hearth_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_label(r),
                   (double)atomic_load_explicit(&hist_sum_ns[r], memory_order_relaxed) / 1e9);
        buf_printf(out, "hearth_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_label(r),
                   (unsigned long long)cum);
    }
    buf_printf(out,
               "# HELP hearth_http_in_flight Requests being handled now.\n# TYPE hearth_http_in_flight gauge\n"
               "hearth_http_in_flight %lld\n"
               "# HELP hearth_http_connections Open client connections.\n# TYPE hearth_http_connections gauge\n"
               "hearth_http_connections %lld\n"
               "# HELP hearth_http_connections_total Client connections accepted.\n# TYPE hearth_http_connections_total counter\n"
               "hearth_http_connections_total %llu\n",
               (long long)atomic_load(&in_flight), (long long)atomic_load(&connections),
               (unsigned long long)atomic_load(&connections_total));
}
