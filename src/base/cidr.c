/* cidr: see cidr.h. */
#include "cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool cidr_parse_addr(const char *s, int *family, uint8_t *addr)
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

bool cidr_parse_list(const char *list, cidr_t *nets, int *n, char *why, size_t whylen)
{
    *n = 0;
    char *copy = strdup(list), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (*n == CIDR_MAX_LIST) {
            snprintf(why, whylen, "at most %d entries", CIDR_MAX_LIST);
            ok = false;
            break;
        }
        cidr_t *net = &nets[*n];
        memset(net, 0, sizeof *net);
        char *slash = strchr(tok, '/');
        if (slash)
            *slash = '\0';
        if (!cidr_parse_addr(tok, &net->family, net->addr)) {
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

static bool in_net(const cidr_t *net, int family, const uint8_t *addr)
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

bool cidr_list_contains(const cidr_t *nets, int n, int family, const uint8_t *addr)
{
    for (int i = 0; i < n; i++)
        if (in_net(&nets[i], family, addr))
            return true;
    return false;
}

bool cidr_is_loopback(int family, const uint8_t *a)
{
    static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return family == AF_INET ? a[0] == 127 : memcmp(a, v6lo, 16) == 0;
}
