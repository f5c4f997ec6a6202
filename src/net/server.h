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
/* Called on the main thread when SIGTERM or SIGINT arrives, before the connections drain (serve:
 * its job runners stop claiming at once). Set before server_run. */
void server_on_stop(void (*fn)(void *arg), void *arg);

/* Hands an event (`json`, the event document) to every open event stream and WebSocket following
 * `channel` on every loop (following "jobs" takes every "job:*" channel). `id` (> 0) lets a
 * connection drop an event it has already had (relays may publish one twice); `owner_id` (0: any)
 * limits who may see it to that user and admins. Any thread; a no-op when the server is not
 * running. */
void server_publish(const char *channel, int64_t id, const char *type, const char *json, size_t len, int64_t owner_id);
/* Closes every open event stream and WebSocket (events may have been missed: the clients come back
 * and catch up). Any thread. */
void server_close_streams(void);

#endif
