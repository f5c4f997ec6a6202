/* pool: slots lent out under a mutex with a bounded wait; see pool.h. */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

void pool_init(pool_t *p, int size)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    p->size = size;
    p->in_use = 0;
    p->busy = calloc((size_t)size, sizeof *p->busy);
    if (!p->busy)
        abort();
    p->acquires = p->waits = p->timeouts = 0;
}

void pool_destroy(pool_t *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->busy);
    p->busy = NULL;
}

int pool_acquire(pool_t *p, int timeout_ms, err_t *e)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L)
        deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&p->mu);
    p->acquires++;
    bool waited = false;
    while (p->in_use == p->size) {
        if (!waited)
            p->waits++, waited = true;
        if (pthread_cond_timedwait(&p->cv, &p->mu, &deadline) == ETIMEDOUT && p->in_use == p->size) {
            p->timeouts++;
            pthread_mutex_unlock(&p->mu);
            err_set(e, ERR_UNAVAILABLE, "all database connections are busy, try again");
            return -1;
        }
    }
    int slot = 0;
    while (p->busy[slot])
        slot++;
    p->busy[slot] = true;
    p->in_use++;
    pthread_mutex_unlock(&p->mu);
    return slot;
}

void pool_release(pool_t *p, int slot)
{
    pthread_mutex_lock(&p->mu);
    p->busy[slot] = false;
    p->in_use--;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void pool_stats(pool_t *p, store_stats_t *out)
{
    pthread_mutex_lock(&p->mu);
    out->pool_size = p->size;
    out->in_use = p->in_use;
    out->acquires = p->acquires;
    out->waits = p->waits;
    out->timeouts = p->timeouts;
    pthread_mutex_unlock(&p->mu);
}
