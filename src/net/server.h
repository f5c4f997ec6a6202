/* server: the HTTP/1.1 server. One libuv event loop per thread, each with its own SO_REUSEPORT
 * listener, so the kernel spreads connections across loops and no lock is shared on the hot path.
 * A request whose route may block is handed to libuv's worker pool and its response is written
 * back on the loop that owns the connection. */
#ifndef HEARTH_SERVER_H
#define HEARTH_SERVER_H

#include "../base/config.h"
#include "../base/error.h"

/* Serves until SIGTERM or SIGINT, then stops accepting, lets in-flight requests finish within
 * cfg->shutdown_timeout_ms, and returns. false when it cannot listen. */
bool server_run(const config_t *cfg, err_t *e);

/* Hands an event to every open event stream of `channel` on every loop (a stream of "jobs" takes
 * every "job:*" channel). `frame` is the text written to the stream as it is; `id` (> 0) lets a
 * stream drop an event it has already had (relays may publish one twice). Any thread; a no-op
 * when the server is not running. */
void server_publish(const char *channel, int64_t id, const char *frame, size_t len);

#endif
