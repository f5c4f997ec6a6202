/* breaker: the circuit breaker's state machine; see breaker.h. Every transition bumps the
 * generation, so a permission granted before it can no longer move the state. */
#include "breaker.h"

#include <time.h>

static int64_t mono_ms(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void breaker_init(breaker_t *b, int threshold, int64_t open_ms, breaker_clock_t clock, void *clock_arg)
{
    *b = (breaker_t){0};
    pthread_mutex_init(&b->mu, NULL);
    b->threshold = threshold < 1 ? 1 : threshold;
    b->open_ms = open_ms < 1 ? 1 : open_ms;
    b->clock = clock ? clock : mono_ms;
    b->clock_arg = clock_arg;
    b->state = BREAKER_CLOSED;
}

void breaker_destroy(breaker_t *b) { pthread_mutex_destroy(&b->mu); }

static void trip(breaker_t *b, int64_t now)
{
    b->state = BREAKER_OPEN;
    b->opened_at_ms = now;
    b->generation++;
    b->opens++;
}

/* HALF_OPEN with a new probe: an older probe that never reported can no longer decide */
static void start_probe(breaker_t *b, int64_t now, breaker_ticket_t *t)
{
    b->state = BREAKER_HALF_OPEN;
    b->probe_started_ms = now;
    b->generation++;
    t->probe = true;
}

bool breaker_allow(breaker_t *b, breaker_ticket_t *t)
{
    pthread_mutex_lock(&b->mu);
    int64_t now = b->clock(b->clock_arg);
    bool ok = true;
    t->probe = false;
    switch (b->state) {
    case BREAKER_CLOSED:
        break;
    case BREAKER_OPEN:
        if (now - b->opened_at_ms < b->open_ms)
            ok = false;
        else
            start_probe(b, now, t); /* the first caller after the open period */
        break;
    case BREAKER_HALF_OPEN:
        if (now - b->probe_started_ms < b->open_ms)
            ok = false; /* the probe is out */
        else
            start_probe(b, now, t); /* the probe never reported: its slot has expired */
        break;
    }
    if (ok) {
        b->allowed++;
        t->generation = b->generation;
    } else {
        b->rejected++;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void breaker_record(breaker_t *b, const breaker_ticket_t *t, bool success)
{
    pthread_mutex_lock(&b->mu);
    int64_t now = b->clock(b->clock_arg);
    if (success)
        b->successes++;
    else
        b->failures++;
    if (t->generation == b->generation) {
        if (b->state == BREAKER_CLOSED) {
            if (success)
                b->failures_in_row = 0;
            else if (++b->failures_in_row >= b->threshold)
                trip(b, now);
        } else if (b->state == BREAKER_HALF_OPEN && t->probe) {
            if (success) {
                b->state = BREAKER_CLOSED;
                b->failures_in_row = 0;
                b->generation++;
            } else {
                trip(b, now);
            }
        }
    }
    pthread_mutex_unlock(&b->mu);
}

static breaker_state_t visible_state(const breaker_t *b, int64_t now)
{
    if (b->state == BREAKER_OPEN && now - b->opened_at_ms >= b->open_ms)
        return BREAKER_HALF_OPEN; /* the next call is the probe */
    return b->state;
}

void breaker_stats(breaker_t *b, breaker_stats_t *out)
{
    pthread_mutex_lock(&b->mu);
    out->state = visible_state(b, b->clock(b->clock_arg));
    out->consecutive_failures = b->failures_in_row;
    out->allowed = b->allowed;
    out->rejected = b->rejected;
    out->successes = b->successes;
    out->failures = b->failures;
    out->opens = b->opens;
    pthread_mutex_unlock(&b->mu);
}

breaker_state_t breaker_state(breaker_t *b)
{
    breaker_stats_t s;
    breaker_stats(b, &s);
    return s.state;
}

const char *breaker_state_name(breaker_state_t s)
{
    switch (s) {
    case BREAKER_CLOSED: return "closed";
    case BREAKER_OPEN: return "open";
    case BREAKER_HALF_OPEN: return "half_open";
    }
    return "closed";
}
