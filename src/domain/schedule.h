/* schedule: recurring jobs (like Celery Beat): each schedule names a cron expression (cron.h) and a
 * job type; at every tick one job is enqueued, however many instances run the scheduler.
 *
 * The one idea: the tick's job carries the idempotency key "cron:NAME:TICK" (TICK in unix
 * microseconds), which is unique in the jobs table, so the first instance to enqueue it wins and
 * every other finds it there: exactly one job per tick, with no lock and no leader. A tick missed
 * while no instance ran is not made up; the next one comes as usual. */
#ifndef HEARTH_SCHEDULE_H
#define HEARTH_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>

#include "../infra/store.h"
#include "cron.h"

#define SCHEDULE_MAX 32
#define SCHEDULE_DEFAULTS "prune=17 * * * * prune" /* hourly, at minute 17 */

typedef struct schedule {
    char name[64], expr[128], type[64];
    char payload[512]; /* a JSON object */
    cron_t cron;
} schedule_t;

/* "NAME=CRON [TYPE [PAYLOAD]];..." (CRON is five fields or an @macro; TYPE defaults to NAME,
 * PAYLOAD to {}) appended to `out` after SCHEDULE_DEFAULTS; a later schedule of the same name
 * replaces an earlier one, and "NAME=off" removes it. false with the reason in `why`. */
bool schedule_parse_list(const char *spec, schedule_t *out, int *n, char *why, size_t whylen);

/* Enqueues `s`'s job for `tick` unless some instance already has: *enqueued says which. */
bool schedule_fire(store_t *st, const schedule_t *s, int64_t tick, bool *enqueued, err_t *e);

typedef struct scheduler scheduler_t;

/* A thread that enqueues each schedule's job at its ticks. */
scheduler_t *scheduler_start(store_t *s, const schedule_t *list, int n, err_t *e);
void scheduler_stop(scheduler_t *sc);

#endif
