/* txgroup: group commit for short write transactions (store.h: store_tx_group).
 *
 * Callers that arrive while a group transaction is running queue up; when it ends, one of them
 * (the leader) takes every queued call, runs them one after another on its connection inside one
 * transaction, commits once and hands each caller its outcome. On PostgreSQL that is one WAL flush
 * (and two round trips) for the whole group instead of one per call; on SQLite one write-lock
 * hand-over and one set of WAL frames for the pages the calls share (a job row, its outbox event
 * and its audit entry sit on the same few pages as the previous call's).
 *
 * A call that fails rolls the group back; then every call of the group runs again in a transaction
 * of its own, so each caller sees the outcome it would have had alone (a unique-key conflict in one
 * never costs another its write). A commit that fails is every member's failure, as it would be
 * alone: nothing of the group was saved. Nobody waits for company: a caller that finds no group
 * running leads at once, so a lone caller pays nothing but a mutex. */
#include <pthread.h>
#include <stdlib.h>

#include "store.h"

#define GROUP_MAX 64 /* calls in one transaction */

typedef struct member {
    store_tx_fn fn;
    void *arg;
    err_t *e;
    bool ok, done;
    struct member *next;
} member_t;

struct txgroup {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    member_t *head, **tail; /* queued calls */
    bool leading;           /* a leader is running a group */
};

txgroup_t *txgroup_new(void)
{
    txgroup_t *g = calloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->tail = &g->head;
    return g;
}

void txgroup_free(txgroup_t *g)
{
    if (!g)
        return;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* fn alone, in a transaction of its own */
static bool run_alone(store_conn_t *c, member_t *m)
{
    err_clear(m->e);
    return c->store->ops->begin(c, m->e) && store_finish(c, m->fn(c, m->arg, m->e), m->e);
}

/* Runs a batch on the leader's connection. Every caller holds one: a leader that had to wait for
 * the pool while the members waiting on it hold connections could wait for ever. */
static void run_group(store_t *s, store_conn_t *c, member_t **batch, int n)
{
    err_t e;
    err_clear(&e);
    if (n == 1) {
        batch[0]->ok = run_alone(c, batch[0]);
    } else if (!s->ops->begin(c, &e)) {
        for (int i = 0; i < n; i++) {
            *batch[i]->e = e;
            batch[i]->ok = false;
        }
    } else {
        int failed = -1;
        for (int i = 0; i < n && failed < 0; i++) {
            err_clear(batch[i]->e);
            if (!batch[i]->fn(c, batch[i]->arg, batch[i]->e))
                failed = i;
        }
        if (failed < 0) {
            bool ok = s->ops->end(c, true, &e);
            for (int i = 0; i < n; i++) {
                batch[i]->ok = ok;
                if (!ok)
                    *batch[i]->e = e;
            }
        } else {
            err_t ignore;
            err_clear(&ignore);
            s->ops->end(c, false, &ignore);
            for (int i = 0; i < n; i++)
                batch[i]->ok = run_alone(c, batch[i]);
        }
    }
}

bool store_tx_group(store_t *s, store_conn_t *held, store_tx_fn fn, void *arg, err_t *e)
{
    txgroup_t *g = s->group;
    member_t me = {.fn = fn, .arg = arg, .e = e};
    pthread_mutex_lock(&g->mu);
    *g->tail = &me;
    g->tail = &me.next;
    while (!me.done) {
        if (g->leading) {
            pthread_cond_wait(&g->cv, &g->mu);
            continue;
        }
        g->leading = true;
        member_t *batch[GROUP_MAX];
        int n = 0;
        while (g->head && n < GROUP_MAX) {
            batch[n++] = g->head;
            g->head = g->head->next;
        }
        if (!g->head)
            g->tail = &g->head;
        pthread_mutex_unlock(&g->mu);
        run_group(s, held, batch, n);
        pthread_mutex_lock(&g->mu);
        for (int i = 0; i < n; i++)
            batch[i]->done = true;
        g->leading = false;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return me.ok;
}
