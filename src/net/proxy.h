/* proxy: which client a request comes from when hearth sits behind reverse proxies. The
 * X-Forwarded-For header is believed only when the peer is in HEARTH_TRUSTED_PROXIES, and then only
 * up to the first address that is not itself a trusted proxy, read from the right: everything left
 * of that is whatever the client chose to send. */
#ifndef HEARTH_PROXY_H
#define HEARTH_PROXY_H

#include "../base/cidr.h"
#include "http.h"

/* Sets req->peer and req->peer_loopback to the client behind the trusted proxies, if any. */
void proxy_resolve_client(http_request_t *req, const cidr_t *nets, int n);

#endif
