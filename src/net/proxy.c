/* proxy: the client address behind trusted proxies; see proxy.h. */
#include "proxy.h"

#include <stdio.h>
#include <string.h>

void proxy_resolve_client(http_request_t *req, const cidr_t *nets, int n)
{
    int family;
    uint8_t addr[16];
    if (n == 0 || !cidr_parse_addr(req->peer, &family, addr) || !cidr_list_contains(nets, n, family, addr))
        return;
    const char *xff = http_header(req, "X-Forwarded-For");
    if (!xff)
        return;
    /* walk the list from the right; the first address that is not a trusted proxy is the client */
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        char tmp[64];
        size_t len = (size_t)(b - a);
        if (len == 0 || len >= sizeof tmp || (memcpy(tmp, a, len), tmp[len] = '\0', !cidr_parse_addr(tmp, &family, addr))) {
            /* not an address: nothing further left can be believed; treat it as the (unknown) client */
            snprintf(req->peer, sizeof req->peer, "unknown");
            req->peer_loopback = false;
            return;
        }
        snprintf(req->peer, sizeof req->peer, "%s", tmp);
        req->peer_loopback = cidr_is_loopback(family, addr);
        if (!cidr_list_contains(nets, n, family, addr))
            return;
        end = start > xff ? start - 1 : xff;
    }
}
