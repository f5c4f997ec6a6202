/* proxy: which client a request comes from when hearth sits behind reverse proxies. The
 * X-Forwarded-For header is believed only when the peer is in HEARTH_TRUSTED_PROXIES, and then only
 * up to the first address that is not itself a trusted proxy, read from the right: everything left
 * of that is whatever the client chose to send. */
#ifndef HEARTH_PROXY_H
#define HEARTH_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

typedef struct proxy_net {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
} proxy_net_t;

#define PROXY_MAX_NETS 32

/* Parses "10.0.0.1, 192.168.0.0/16, ::1" into nets; false with `why` on a bad entry. */
bool proxy_parse(const char *list, proxy_net_t *nets, int *n, char *why, size_t whylen);
/* Sets req->peer and req->peer_loopback to the client behind the trusted proxies, if any. */
void proxy_resolve_client(http_request_t *req, const proxy_net_t *nets, int n);

#endif
