/* breaker: a circuit breaker in front of a remote dependency, shared by every thread that calls it.
 *
 * It counts calls, not attempts: a caller asks breaker_allow before a call (with all its retries)
 * and reports the call's outcome once with breaker_record. `threshold` failed calls in a row open
 * it; while open, calls are refused at once (the caller takes its fallback) for `open_ms`; then the
 * first caller gets the one half-open probe while everyone else is still refused; the probe's
 * success closes the breaker, its failure opens it again for another `open_ms`.
 *
 * Each permission carries the breaker's generation, which changes at every transition: an outcome
 * reported for a call that was allowed before the last transition (a slow call still in flight when
 * the breaker opened, or a probe that outlived its slot) is counted but changes no state. A probe
 * that never reports (its thread died) does not wedge the breaker: its slot expires after open_ms.
 *
 * The clock is injectable so that tests can move time. Thread-safe (one mutex; the calls it guards
 * take milliseconds, the breaker nanoseconds). */
#ifndef HEARTH_BREAKER_H
#define HEARTH_BREAKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 } breaker_state_t;

/* A clock in milliseconds, monotonic; NULL in breaker_init means CLOCK_MONOTONIC. */
typedef int64_t (*breaker_clock_t)(void *arg);

typedef struct breaker_ticket {
    uint64_t generation;
    bool probe; /* this call is the half-open probe */
} breaker_ticket_t;

typedef struct breaker_stats {
    breaker_state_t state; /* as callers see it now: OPEN becomes HALF_OPEN once open_ms has passed */
    int consecutive_failures;
    uint64_t allowed, rejected, successes, failures, opens;
} breaker_stats_t;

typedef struct breaker {
    pthread_mutex_t mu;
    int threshold;
    int64_t open_ms;
    breaker_clock_t clock;
    void *clock_arg;
    breaker_state_t state;
    int failures_in_row;
    int64_t opened_at_ms;      /* OPEN: when it opened */
    int64_t probe_started_ms;  /* HALF_OPEN: when the probe was let through */
    uint64_t generation;
    uint64_t allowed, rejected, successes, failures, opens;
} breaker_t;

/* threshold >= 1 failed calls in a row open it for open_ms >= 1. `clock` NULL: the monotonic clock. */
void breaker_init(breaker_t *b, int threshold, int64_t open_ms, breaker_clock_t clock, void *clock_arg);
void breaker_destroy(breaker_t *b);

/* May a call go out now? true with `t` filled (report its outcome with breaker_record); false when
 * the breaker is open, or half-open with its probe already out. */
bool breaker_allow(breaker_t *b, breaker_ticket_t *t);
/* The outcome of a call breaker_allow let through. */
void breaker_record(breaker_t *b, const breaker_ticket_t *t, bool success);

void breaker_stats(breaker_t *b, breaker_stats_t *out);
breaker_state_t breaker_state(breaker_t *b);
const char *breaker_state_name(breaker_state_t s); /* "closed", "open", "half_open" */

#endif
