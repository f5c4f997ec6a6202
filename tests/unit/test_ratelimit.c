/* test_ratelimit: the GCRA arithmetic of the rate limiter at chosen instants (the memory
 * backend's take_at), its key cap and expiry, and the parsing of HEARTH_RATE_LIMITS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/config.h"
#include "infra/ratelimit.h"

#define SEC 1000000000ull
#define MS 1000000ull
#define T0 (1000 * SEC) /* an arbitrary monotonic start */

static bool take(ratelimit_t *rl, const char *key, const ratelimit_rule_t *r, uint64_t now, ratelimit_result_t *out)
{
    return ratelimit_memory_take_at(rl, key, strlen(key), r, now, out);
}

static void test_burst_then_refused(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_memory_open(1000);
    ratelimit_rule_t r = {.limit = 5, .period_ms = 60000, .burst = 5}; /* one every 12 s */
    ratelimit_result_t out;
    for (int i = 0; i < 5; i++) {
        assert_true(take(rl, "a", &r, T0, &out));
        assert_int_equal(out.limit, 5);
        assert_int_equal(out.remaining, 4 - i);
        assert_int_equal(out.retry_after_ms, 0);
        assert_int_equal(out.reset_after_ms, 12000 * (i + 1));
    }
    assert_false(take(rl, "a", &r, T0, &out));
    assert_int_equal(out.remaining, 0);
    assert_int_equal(out.retry_after_ms, 12000);
    assert_int_equal(out.reset_after_ms, 60000);
    /* refusals cost nothing: still 12 s to wait */
    assert_false(take(rl, "a", &r, T0, &out));
    assert_int_equal(out.retry_after_ms, 12000);
    /* 5 s later, 7 s to wait */
    assert_false(take(rl, "a", &r, T0 + 5 * SEC, &out));
    assert_int_equal(out.retry_after_ms, 7000);
    assert_int_equal(out.reset_after_ms, 55000);
    /* at 12 s exactly one more is allowed, leaving nothing */
    assert_true(take(rl, "a", &r, T0 + 12 * SEC, &out));
    assert_int_equal(out.remaining, 0);
    assert_int_equal(out.reset_after_ms, 60000);
    assert_false(take(rl, "a", &r, T0 + 12 * SEC, &out));
    /* another key has its own budget */
    assert_true(take(rl, "b", &r, T0, &out));
    assert_int_equal(out.remaining, 4);
    /* after a full period the budget is full again */
    assert_true(take(rl, "a", &r, T0 + 72 * SEC, &out));
    assert_int_equal(out.remaining, 4);
    rl->ops->close(rl);
}

static void test_burst_smaller_than_limit(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_memory_open(1000);
    ratelimit_rule_t r = {.limit = 60, .period_ms = 60000, .burst = 10}; /* one a second, 10 at once */
    ratelimit_result_t out;
    for (int i = 0; i < 10; i++)
        assert_true(take(rl, "k", &r, T0, &out));
    assert_int_equal(out.remaining, 0);
    assert_int_equal(out.reset_after_ms, 10000);
    assert_false(take(rl, "k", &r, T0, &out));
    assert_int_equal(out.retry_after_ms, 1000);
    /* a steady one a second goes through forever */
    for (int i = 1; i <= 100; i++)
        assert_true(take(rl, "k", &r, T0 + (uint64_t)i * SEC, &out));
    /* half a second too early is refused, with 500 ms to wait */
    assert_false(take(rl, "k", &r, T0 + 100 * SEC + 500 * MS, &out));
    assert_int_equal(out.retry_after_ms, 500);
    rl->ops->close(rl);
}

static void test_rounding_up(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_memory_open(1000);
    ratelimit_rule_t r = {.limit = 3, .period_ms = 1000, .burst = 1}; /* 333,333,333 ns apart */
    ratelimit_result_t out;
    assert_true(take(rl, "k", &r, T0, &out));
    assert_int_equal(out.reset_after_ms, 334);
    assert_false(take(rl, "k", &r, T0 + 1, &out));
    assert_int_equal(out.retry_after_ms, 334); /* 333,333,332 ns rounds up */
    assert_true(take(rl, "k", &r, T0 + 333333333, &out));
    rl->ops->close(rl);
}

static void test_expired_keys_are_dropped(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_memory_open(16 * 64);
    ratelimit_rule_t r = {.limit = 1, .period_ms = 1000, .burst = 1};
    ratelimit_result_t out;
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "client-%d", i);
        assert_true(take(rl, key, &r, T0, &out));
    }
    ratelimit_stats_t st;
    rl->ops->stats(rl, &st);
    assert_int_equal(st.keys, 200);
    /* long after, each call drops expired keys from its shard */
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof key, "later-%d", i);
        assert_true(take(rl, key, &r, T0 + 10 * SEC, &out));
    }
    rl->ops->stats(rl, &st);
    assert_int_equal(st.keys, 400);
    assert_int_equal(st.evictions, 0);
    rl->ops->close(rl);
}

static void test_key_cap_evicts_oldest_tat(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_memory_open(16); /* one key per shard */
    ratelimit_rule_t r = {.limit = 1, .period_ms = 60000, .burst = 1};
    ratelimit_result_t out;
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "client-%d", i);
        assert_true(take(rl, key, &r, T0 + (uint64_t)i * MS, &out));
    }
    ratelimit_stats_t st;
    rl->ops->stats(rl, &st);
    assert_true(st.keys <= 16);
    assert_int_equal(st.max_keys, 16);
    assert_int_equal(st.evictions, 1000 - st.keys);
    /* the newest key of all is still remembered */
    assert_false(take(rl, "client-999", &r, T0 + 999 * MS, &out));
    rl->ops->close(rl);
}

static void test_heap_order_under_churn(void **state)
{
    (void)state;
    /* many keys with different rates in few shards: refusals and allowances must match a model */
    ratelimit_t *rl = ratelimit_memory_open(100000);
    ratelimit_rule_t fast = {.limit = 10, .period_ms = 1000, .burst = 2}, slow = {.limit = 1, .period_ms = 5000, .burst = 1};
    uint64_t model[64] = {0};
    ratelimit_result_t out;
    char key[16];
    uint64_t now = T0;
    unsigned seed = 7;
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % 64);
        now += (seed >> 8) % (50 * MS);
        const ratelimit_rule_t *r = k % 2 ? &slow : &fast;
        snprintf(key, sizeof key, "k%d", k);
        ratelimit_result_t want;
        uint64_t tat = ratelimit_gcra(model[k], now, r, &want);
        assert_int_equal(take(rl, key, r, now, &out), want.allowed);
        assert_int_equal(out.remaining, want.remaining);
        assert_int_equal(out.retry_after_ms, want.retry_after_ms);
        model[k] = tat;
    }
    rl->ops->close(rl);
}

static void test_parse_rate_limits(void **state)
{
    (void)state;
    config_rate_rule_t rules[CONFIG_MAX_RATE_CLASSES];
    int n;
    char why[256];
    assert_true(config_parse_rate_limits("read=600/min, write=60/min:10,auth=10/minute", rules, &n, why, sizeof why));
    assert_int_equal(n, 3);
    assert_string_equal(rules[0].cls, "read");
    assert_int_equal(rules[0].limit, 600);
    assert_int_equal(rules[0].period_ms, 60000);
    assert_int_equal(rules[0].burst, 600);
    assert_string_equal(rules[1].cls, "write");
    assert_int_equal(rules[1].burst, 10);
    assert_int_equal(rules[2].period_ms, 60000);
    assert_true(config_parse_rate_limits("read=2/1s,write=5/10sec,x=1/h,y=3/2hours,z=1/second", rules, &n, why, sizeof why));
    assert_int_equal(n, 5);
    assert_int_equal(rules[0].period_ms, 1000);
    assert_int_equal(rules[1].period_ms, 10000);
    assert_int_equal(rules[2].period_ms, 3600000);
    assert_int_equal(rules[3].period_ms, 7200000);
    assert_int_equal(rules[4].period_ms, 1000);
    const char *bad[] = {"read", "read=", "read=5", "read=5/", "read=5/fortnight", "read=0/min", "read=-1/min",
                         "read=5/min:0", "read=5/min:x", "=5/min", "Read=5/min", "read=5/min,read=1/s", "read=5/0s",
                         "read=5/25h", ",", "read=1/h:100000", "read=5.5/min"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        if (config_parse_rate_limits(bad[i], rules, &n, why, sizeof why))
            fail_msg("accepted %s", bad[i]);
        assert_true(why[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refused),
        cmocka_unit_test(test_burst_smaller_than_limit),
        cmocka_unit_test(test_rounding_up),
        cmocka_unit_test(test_expired_keys_are_dropped),
        cmocka_unit_test(test_key_cap_evicts_oldest_tat),
        cmocka_unit_test(test_heap_order_under_churn),
        cmocka_unit_test(test_parse_rate_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
