/* test_cache: the in-process cache: values come back as stored, expiry, the byte budget, and the
 * segmented LRU keeping entries that are asked for again through a scan of one-off keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "infra/cache.h"

static bool get(cache_t *c, const char *k, buf_t *out)
{
    buf_reset(out);
    return c->ops->get(c, k, strlen(k), out);
}

static void put(cache_t *c, const char *k, const char *v, int ttl)
{
    c->ops->put(c, k, strlen(k), v, strlen(v), ttl);
}

static void test_round_trip_and_expiry(void **state)
{
    (void)state;
    cache_t *c = cache_memory_open(1 << 20);
    buf_t b;
    buf_init(&b);
    put(c, "a", "alpha", 60000);
    assert_true(get(c, "a", &b));
    assert_string_equal(buf_cstr(&b), "alpha");
    put(c, "a", "again", 60000); /* replaces */
    assert_true(get(c, "a", &b));
    assert_string_equal(buf_cstr(&b), "again");
    assert_false(get(c, "missing", &b));
    put(c, "short", "lived", 1);
    usleep(5000);
    assert_false(get(c, "short", &b));
    buf_free(&b);
    c->ops->close(c);
}

static void test_budget_is_kept(void **state)
{
    (void)state;
    cache_t *c = cache_memory_open(256 * 1024);
    char key[32], val[512];
    memset(val, 'x', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put(c, key, val, 60000);
    }
    cache_stats_t st;
    c->ops->stats(c, &st);
    assert_true(st.bytes <= 256 * 1024);
    assert_true(st.evictions > 0);
    c->ops->close(c);
}

static void test_scan_does_not_flush_hot_entries(void **state)
{
    (void)state;
    cache_t *c = cache_memory_open(16 * 64 * 1024); /* 64 KiB a shard */
    buf_t b;
    buf_init(&b);
    char key[32], val[200];
    memset(val, 'v', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    for (int i = 0; i < 200; i++) { /* hot keys, each read once more: protected */
        snprintf(key, sizeof key, "hot%d", i);
        put(c, key, val, 60000);
        assert_true(get(c, key, &b));
    }
    for (int i = 0; i < 20000; i++) { /* a scan of one-off keys, far more than fits */
        snprintf(key, sizeof key, "scan%d", i);
        put(c, key, val, 60000);
    }
    int kept = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "hot%d", i);
        kept += get(c, key, &b);
    }
    assert_int_equal(kept, 200);
    buf_free(&b);
    c->ops->close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_and_expiry),
        cmocka_unit_test(test_budget_is_kept),
        cmocka_unit_test(test_scan_does_not_flush_hot_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
