/* proxy: trusted-proxy matching and the client address; see proxy.h. */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_addr(const char *s, int *family, uint8_t *addr)
{
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, addr) == 1) {
        *family = AF_INET6;
        return true;
    }
    return false;
}

bool proxy_parse(const char *list, proxy_net_t *nets, int *n, char *why, size_t whylen)
{
    *n = 0;
    char *copy = strdup(list), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (*n == PROXY_MAX_NETS) {
            snprintf(why, whylen, "at most %d entries", PROXY_MAX_NETS);
            ok = false;
            break;
        }
        proxy_net_t *net = &nets[*n];
        memset(net, 0, sizeof *net);
        char *slash = strchr(tok, '/');
        if (slash)
            *slash = '\0';
        if (!parse_addr(tok, &net->family, net->addr)) {
            snprintf(why, whylen, "'%s' is not an IP address or CIDR network", tok);
            ok = false;
            break;
        }
        int max = net->family == AF_INET ? 32 : 128;
        net->prefix = max;
        if (slash) {
            char *end;
            long p = strtol(slash + 1, &end, 10);
            if (*end || end == slash + 1 || p < 0 || p > max) {
                snprintf(why, whylen, "'%s/%s' has a bad prefix length", tok, slash + 1);
                ok = false;
                break;
            }
            net->prefix = (int)p;
        }
        (*n)++;
    }
    free(copy);
    return ok;
}

static bool in_net(const proxy_net_t *net, int family, const uint8_t *addr)
{
    if (net->family != family)
        return false;
    int full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, addr, (size_t)full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((net->addr[full] & mask) != (addr[full] & mask))
            return false;
    }
    return true;
}

static bool trusted(const proxy_net_t *nets, int n, int family, const uint8_t *addr)
{
    for (int i = 0; i < n; i++)
        if (in_net(&nets[i], family, addr))
            return true;
    return false;
}

static bool is_loopback(int family, const uint8_t *a)
{
    static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return family == AF_INET ? a[0] == 127 : memcmp(a, v6lo, 16) == 0;
}

void proxy_resolve_client(http_request_t *req, const proxy_net_t *nets, int n)
{
    int family;
    uint8_t addr[16];
    if (n == 0 || !parse_addr(req->peer, &family, addr) || !trusted(nets, n, family, addr))
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
        if (len == 0 || len >= sizeof tmp || (memcpy(tmp, a, len), tmp[len] = '\0', !parse_addr(tmp, &family, addr))) {
            /* not an address: nothing further left can be believed; treat it as the (unknown) client */
            snprintf(req->peer, sizeof req->peer, "unknown");
            req->peer_loopback = false;
            return;
        }
        snprintf(req->peer, sizeof req->peer, "%s", tmp);
        req->peer_loopback = is_loopback(family, addr);
        if (!trusted(nets, n, family, addr))
            return;
        end = start > xff ? start - 1 : xff;
    }
}
