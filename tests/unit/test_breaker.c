/* test_breaker: the circuit breaker's state machine (infra/breaker.c) on an injected clock: five
 * failed calls in a row open it and only then; while open every call is refused; after the open
 * period exactly one probe goes out; its success closes the breaker and its failure opens it again
 * for a full period; outcomes of calls allowed before a transition change nothing; a probe that
 * never reports does not wedge the breaker; and the counters stay consistent under threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "infra/breaker.h"

#define THRESHOLD 5
#define OPEN_MS 30000

static int64_t fake_now;
static int64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now;
}

static int setup(void **state)
{
    breaker_t *b = test_malloc(sizeof *b);
    fake_now = 1000000;
    breaker_init(b, THRESHOLD, OPEN_MS, fake_clock, NULL);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    breaker_destroy(*state);
    test_free(*state);
    return 0;
}

/* One call through the breaker: false when it was refused. */
static bool call(breaker_t *b, bool success)
{
    breaker_ticket_t t;
    if (!breaker_allow(b, &t))
        return false;
    breaker_record(b, &t, success);
    return true;
}

static void trip(breaker_t *b)
{
    for (int i = 0; i < THRESHOLD; i++)
        assert_true(call(b, false));
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
}

static void five_failures_open_it(void **state)
{
    breaker_t *b = *state;
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    for (int i = 0; i < THRESHOLD - 1; i++) {
        assert_true(call(b, false));
        assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    }
    assert_true(call(b, false));
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_stats_t s;
    breaker_stats(b, &s);
    assert_int_equal(s.opens, 1);
    assert_int_equal(s.failures, THRESHOLD);
    assert_int_equal(s.allowed, THRESHOLD);
    assert_int_equal(s.rejected, 0);
}

static void a_success_resets_the_count(void **state)
{
    breaker_t *b = *state;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < THRESHOLD - 1; i++)
            assert_true(call(b, false));
        assert_true(call(b, true));
    }
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    breaker_stats_t s;
    breaker_stats(b, &s);
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.opens, 0);
}

static void calls_are_refused_while_open(void **state)
{
    breaker_t *b = *state;
    trip(b);
    for (int i = 0; i < 100; i++) {
        fake_now += (OPEN_MS - 1) / 100;
        breaker_ticket_t t;
        assert_false(breaker_allow(b, &t));
    }
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_stats_t s;
    breaker_stats(b, &s);
    assert_int_equal(s.rejected, 100);
    assert_int_equal(s.allowed, THRESHOLD);
}

static void one_probe_after_the_period(void **state)
{
    breaker_t *b = *state;
    trip(b);
    fake_now += OPEN_MS - 1;
    breaker_ticket_t t;
    assert_false(breaker_allow(b, &t));
    fake_now += 1;
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN); /* the next call is the probe */
    breaker_ticket_t probe;
    assert_true(breaker_allow(b, &probe));
    assert_true(probe.probe);
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    for (int i = 0; i < 10; i++) { /* only one probe at a time */
        fake_now += 10;
        assert_false(breaker_allow(b, &t));
    }
    breaker_record(b, &probe, true);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
}

static void probe_success_closes(void **state)
{
    breaker_t *b = *state;
    trip(b);
    fake_now += OPEN_MS;
    assert_true(call(b, true));
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    for (int i = 0; i < 20; i++)
        assert_true(call(b, true));
    /* closed again means a fresh count: four failures do not open it */
    for (int i = 0; i < THRESHOLD - 1; i++)
        assert_true(call(b, false));
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    assert_true(call(b, false));
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
}

static void probe_failure_reopens(void **state)
{
    breaker_t *b = *state;
    trip(b);
    fake_now += OPEN_MS;
    assert_true(call(b, false)); /* the probe fails */
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    breaker_ticket_t t;
    fake_now += OPEN_MS - 1; /* a full period again, from the probe's failure */
    assert_false(breaker_allow(b, &t));
    fake_now += 1;
    assert_true(breaker_allow(b, &t));
    assert_true(t.probe);
    breaker_record(b, &t, true);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    breaker_stats_t s;
    breaker_stats(b, &s);
    assert_int_equal(s.opens, 2);
}

static void stale_outcomes_change_nothing(void **state)
{
    breaker_t *b = *state;
    /* a slow call allowed while closed reports after the breaker opened: it neither closes it nor
     * counts towards anything */
    breaker_ticket_t slow;
    assert_true(breaker_allow(b, &slow));
    trip(b);
    breaker_record(b, &slow, true);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
    /* and one reporting while the probe is out does not decide for it */
    breaker_ticket_t slow2;
    fake_now += OPEN_MS;
    breaker_ticket_t probe;
    assert_true(breaker_allow(b, &probe));
    breaker_record(b, &slow, true);
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    breaker_record(b, &probe, true);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
    /* failures allowed before a close do not count after it */
    assert_true(breaker_allow(b, &slow2));
    trip(b);
    fake_now += OPEN_MS;
    assert_true(call(b, true));
    for (int i = 0; i < THRESHOLD; i++)
        breaker_record(b, &slow2, false);
    assert_int_equal(breaker_state(b), BREAKER_CLOSED);
}

static void a_lost_probe_expires(void **state)
{
    breaker_t *b = *state;
    trip(b);
    fake_now += OPEN_MS;
    breaker_ticket_t lost, t;
    assert_true(breaker_allow(b, &lost)); /* never reports */
    fake_now += OPEN_MS - 1;
    assert_false(breaker_allow(b, &t));
    fake_now += 1;
    breaker_ticket_t probe;
    assert_true(breaker_allow(b, &probe));
    assert_true(probe.probe);
    breaker_record(b, &lost, true); /* too late: the slot went to another probe */
    assert_int_equal(breaker_state(b), BREAKER_HALF_OPEN);
    breaker_record(b, &probe, false);
    assert_int_equal(breaker_state(b), BREAKER_OPEN);
}

static void state_names(void **state)
{
    (void)state;
    assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
    assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
}

/* Threads on the real clock: every allowed call is reported once, so the counters add up. */
static void *hammer(void *arg)
{
    breaker_t *b = arg;
    for (int i = 0; i < 20000; i++) {
        breaker_ticket_t t;
        if (breaker_allow(b, &t))
            breaker_record(b, &t, i % 7 != 0);
    }
    return NULL;
}

static void counters_add_up_under_threads(void **state)
{
    (void)state;
    breaker_t b;
    breaker_init(&b, THRESHOLD, 1, NULL, NULL);
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &b), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    breaker_stats_t s;
    breaker_stats(&b, &s);
    assert_int_equal(s.allowed + s.rejected, 8 * 20000);
    assert_int_equal(s.successes + s.failures, s.allowed);
    breaker_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(five_failures_open_it, setup, teardown),
        cmocka_unit_test_setup_teardown(a_success_resets_the_count, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_are_refused_while_open, setup, teardown),
        cmocka_unit_test_setup_teardown(one_probe_after_the_period, setup, teardown),
        cmocka_unit_test_setup_teardown(probe_success_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(probe_failure_reopens, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_outcomes_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_lost_probe_expires, setup, teardown),
        cmocka_unit_test(state_names),
        cmocka_unit_test(counters_add_up_under_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
