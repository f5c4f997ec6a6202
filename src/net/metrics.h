/* metrics: process-wide counters for /metrics, updated with relaxed atomics from every loop
 * thread. Requests are counted by route, method and status; latency is a histogram by route. */
#ifndef HEARTH_METRICS_H
#define HEARTH_METRICS_H

#include <stdint.h>

#include "../base/buf.h"
#include "http.h"

#define METRICS_MAX_ROUTES 64

void metrics_request(int route_index, http_method_t method, int status, uint64_t duration_ns);
void metrics_connections_add(int delta);
void metrics_in_flight_add(int delta);
/* Appends the Prometheus text exposition of everything counted so far. */
void metrics_render(buf_t *out);

#endif
