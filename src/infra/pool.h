/* pool: the bounded set of connections a store backend lends out. The pool only hands out slot
 * numbers, under a mutex, with a wait bounded on the monotonic clock (a clock step cannot stretch
 * it) and the counters /metrics reports; the connections in the slots are the backend's. */
#ifndef HEARTH_POOL_H
#define HEARTH_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/error.h"
#include "store.h"

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int size, in_use;
    bool *busy;
    uint64_t acquires, waits, timeouts;
} pool_t;

void pool_init(pool_t *p, int size);
void pool_destroy(pool_t *p);
/* A free slot, waiting up to timeout_ms for one; -1 with ERR_UNAVAILABLE when none came. */
int pool_acquire(pool_t *p, int timeout_ms, err_t *e);
void pool_release(pool_t *p, int slot);
void pool_stats(pool_t *p, store_stats_t *out);

#endif
