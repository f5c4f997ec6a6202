/* schedule: see schedule.h. The thread sleeps until the earliest next tick (waking at least every
 * second to notice a stop), enqueues the jobs that are due, and computes their next ticks. */
#include "schedule.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/util.h"
#include "queue.h"
#include "worker.h"

static bool parse_one(const char *item, schedule_t *s, bool *off, char *why, size_t whylen)
{
    memset(s, 0, sizeof *s);
    *off = false;
    while (*item == ' ' || *item == '\t')
        item++;
    const char *eq = strchr(item, '=');
    size_t nl = eq ? (size_t)(eq - item) : 0;
    if (!eq || nl == 0 || nl >= sizeof s->name) {
        snprintf(why, whylen, "\"%.60s\": expected NAME=CRON [TYPE [PAYLOAD]]", item);
        return false;
    }
    memcpy(s->name, item, nl);
    for (size_t i = 0; i < nl; i++)
        if (!((s->name[i] >= 'a' && s->name[i] <= 'z') || (s->name[i] >= '0' && s->name[i] <= '9') ||
              s->name[i] == '-' || s->name[i] == '_' || s->name[i] == '.')) {
            snprintf(why, whylen, "schedule name \"%s\": use a-z, 0-9, '-', '_', '.'", s->name);
            return false;
        }
    const char *p = eq + 1;
    while (*p == ' ')
        p++;
    if (strcmp(p, "off") == 0) {
        *off = true;
        return true;
    }
    /* the expression: one @macro token, or five fields */
    const char *q = p;
    int fields = *p == '@' ? 1 : 5;
    for (int f = 0; f < fields; f++) {
        while (*q == ' ' || *q == '\t')
            q++;
        if (!*q) {
            snprintf(why, whylen, "schedule %s: the cron expression needs five fields", s->name);
            return false;
        }
        q += strcspn(q, " \t");
    }
    size_t el = (size_t)(q - p);
    if (el >= sizeof s->expr) {
        snprintf(why, whylen, "schedule %s: the cron expression is too long", s->name);
        return false;
    }
    memcpy(s->expr, p, el);
    err_t e;
    err_clear(&e);
    if (!cron_parse(s->expr, &s->cron, &e)) {
        snprintf(why, whylen, "schedule %s: %s", s->name, e.message);
        return false;
    }
    while (*q == ' ' || *q == '\t')
        q++;
    size_t tl = strcspn(q, " \t");
    if (tl >= sizeof s->type) {
        snprintf(why, whylen, "schedule %s: the job type is too long", s->name);
        return false;
    }
    memcpy(s->type, tl ? q : s->name, tl ? tl : strlen(s->name));
    q += tl;
    while (*q == ' ' || *q == '\t')
        q++;
    snprintf(s->payload, sizeof s->payload, "%s", *q ? q : "{}");
    json_t *j = json_loads(s->payload, 0, NULL);
    bool object = json_is_object(j);
    json_decref(j);
    if (!object || strlen(q) >= sizeof s->payload) {
        snprintf(why, whylen, "schedule %s: the payload must be a JSON object (at most 511 bytes)", s->name);
        return false;
    }
    return true;
}

static bool parse_into(const char *spec, schedule_t *out, int *n, char *why, size_t whylen)
{
    char *copy = strdup(spec), *save = NULL;
    bool ok = true;
    for (char *item = strtok_r(copy, ";", &save); ok && item; item = strtok_r(NULL, ";", &save)) {
        if (strspn(item, " \t") == strlen(item))
            continue;
        schedule_t s;
        bool off;
        if (!(ok = parse_one(item, &s, &off, why, whylen)))
            break;
        int at = -1;
        for (int i = 0; i < *n; i++)
            if (strcmp(out[i].name, s.name) == 0)
                at = i;
        if (off) {
            if (at >= 0)
                memmove(&out[at], &out[at + 1], (size_t)(*n - at - 1) * sizeof *out), (*n)--;
        } else if (at >= 0) {
            out[at] = s;
        } else if (*n == SCHEDULE_MAX) {
            snprintf(why, whylen, "at most %d schedules", SCHEDULE_MAX);
            ok = false;
        } else {
            out[(*n)++] = s;
        }
    }
    free(copy);
    return ok;
}

bool schedule_parse_list(const char *spec, schedule_t *out, int *n, char *why, size_t whylen)
{
    *n = 0;
    return parse_into(SCHEDULE_DEFAULTS, out, n, why, whylen) && (!spec || parse_into(spec, out, n, why, whylen));
}

struct scheduler {
    store_t *store;
    schedule_t list[SCHEDULE_MAX];
    int64_t next[SCHEDULE_MAX];
    int n;
    pthread_t thread;
    _Atomic bool stop;
};

bool schedule_fire(store_t *st, const schedule_t *s, int64_t tick, bool *enqueued, err_t *e)
{
    *enqueued = false;
    char key[128];
    snprintf(key, sizeof key, "cron:%s:%lld", s->name, (long long)tick);
    arena_t a;
    arena_init(&a);
    job_t job;
    bool existed = false;
    job_spec_t spec = {.type = s->type, .payload = s->payload, .idempotency_key = key, .queue = "low"};
    store_conn_t *c = st->ops->acquire(st, 5000, e);
    bool ok = c && st->ops->begin(c, e);
    if (ok) {
        ok = queue_enqueue(c, &spec, &a, &job, &existed, e);
        if (!ok && e->code == ERR_CONFLICT) { /* another instance enqueued it between our look and insert */
            store_finish(c, false, e);
            err_clear(e);
            ok = true, existed = true;
        } else {
            ok = store_finish(c, ok, e);
        }
    }
    if (c)
        st->ops->release(st, c);
    if (ok && !existed) {
        *enqueued = true;
        log_info("schedule %s: enqueued job %lld (%s)", s->name, (long long)job.id, s->type);
    }
    arena_free(&a);
    return ok;
}

/* Enqueues the tick's job, once across every instance (its idempotency key). */
static void fire(scheduler_t *sc, const schedule_t *s, int64_t tick)
{
    if (!worker_has_handler(s->type)) {
        log_warn("schedule %s: no job type \"%s\"; tick skipped", s->name, s->type);
        return;
    }
    err_t e;
    err_clear(&e);
    bool enqueued = false;
    if (!schedule_fire(sc->store, s, tick, &enqueued, &e))
        log_warn("schedule %s: enqueueing its job failed: %s", s->name, e.message);
    else if (enqueued)
        worker_wake();
}

static void *scheduler_main(void *arg)
{
    scheduler_t *sc = arg;
    while (!atomic_load(&sc->stop)) {
        int64_t now = time_now_us(), soonest = 0;
        for (int i = 0; i < sc->n; i++) {
            if (sc->next[i] > 0 && sc->next[i] <= now) {
                fire(sc, &sc->list[i], sc->next[i]);
                sc->next[i] = cron_next(&sc->list[i].cron, now);
            }
            if (sc->next[i] > 0 && (!soonest || sc->next[i] < soonest))
                soonest = sc->next[i];
        }
        int64_t wait = soonest ? soonest - time_now_us() : 1000000;
        usleep((useconds_t)(wait < 1000 ? 1000 : wait > 1000000 ? 1000000 : wait));
    }
    return NULL;
}

scheduler_t *scheduler_start(store_t *s, const schedule_t *list, int n, err_t *e)
{
    scheduler_t *sc = calloc(1, sizeof *sc);
    sc->store = s;
    sc->n = n;
    int64_t now = time_now_us();
    for (int i = 0; i < n; i++) {
        sc->list[i] = list[i];
        sc->next[i] = cron_next(&list[i].cron, now);
    }
    if (pthread_create(&sc->thread, NULL, scheduler_main, sc) != 0) {
        free(sc);
        err_set(e, ERR_INTERNAL, "could not start the scheduler");
        return NULL;
    }
    return sc;
}

void scheduler_stop(scheduler_t *sc)
{
    if (!sc)
        return;
    atomic_store(&sc->stop, true);
    pthread_join(sc->thread, NULL);
    free(sc);
}
