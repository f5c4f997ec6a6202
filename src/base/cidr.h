/* cidr: IP networks ("10.0.0.0/8", "::1") and whether an address is in one; used by the
 * configuration (HEARTH_TRUSTED_PROXIES) and the server's client-address logic. */
#ifndef HEARTH_CIDR_H
#define HEARTH_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
} cidr_t;

#define CIDR_MAX_LIST 32

/* Parses "10.0.0.1, 192.168.0.0/16, ::1"; false with `why` on a bad entry. */
bool cidr_parse_list(const char *list, cidr_t *nets, int *n, char *why, size_t whylen);
/* A textual IPv4 or IPv6 address into family and bytes. */
bool cidr_parse_addr(const char *s, int *family, uint8_t *addr);
bool cidr_list_contains(const cidr_t *nets, int n, int family, const uint8_t *addr);
bool cidr_is_loopback(int family, const uint8_t *addr);

#endif
