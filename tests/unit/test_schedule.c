/* test_schedule: HEARTH_SCHEDULES parsing (defaults, replacing and removing a schedule, every kind
 * of error) and the one-job-per-tick rule: two schedulers (instances) firing the same tick on one
 * database enqueue one job between them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "domain/queue.h"
#include "domain/schedule.h"
#include "infra/store.h"

static void defaults_and_overrides(void **state)
{
    (void)state;
    schedule_t s[SCHEDULE_MAX];
    int n;
    char why[300];
    assert_true(schedule_parse_list(NULL, s, &n, why, sizeof why));
    assert_int_equal(n, 1);
    assert_string_equal(s[0].name, "prune");
    assert_string_equal(s[0].type, "prune");
    assert_string_equal(s[0].payload, "{}");
    assert_true(schedule_parse_list("nightly=30 2 * * * import {\"upload_id\": 1, \"format\": \"ames\"}; prune=@daily;", s, &n,
                                    why, sizeof why));
    assert_int_equal(n, 2);
    assert_string_equal(s[0].name, "prune");
    assert_string_equal(s[0].expr, "@daily");
    assert_string_equal(s[1].name, "nightly");
    assert_string_equal(s[1].expr, "30 2 * * *");
    assert_string_equal(s[1].type, "import");
    assert_string_equal(s[1].payload, "{\"upload_id\": 1, \"format\": \"ames\"}");
    assert_true(schedule_parse_list("prune=off;probe=*/5 * * * * noop", s, &n, why, sizeof why));
    assert_int_equal(n, 1);
    assert_string_equal(s[0].name, "probe");
    assert_string_equal(s[0].type, "noop");
}

static void errors(void **state)
{
    (void)state;
    const char *bad[] = {"noequals", "=* * * * *", "Bad Name=* * * * *", "x=* * *", "x=61 * * * *",
                         "x=* * * * * noop [1]", "x=* * * * * noop {", "x=@reboot"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        schedule_t s[SCHEDULE_MAX];
        int n;
        char why[300] = "";
        assert_false(schedule_parse_list(bad[i], s, &n, why, sizeof why));
        assert_true(strlen(why) > 0);
    }
}

static void one_job_per_tick(void **state)
{
    (void)state;
    char dir[] = "/tmp/hearth-test-schedule-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/db.sqlite", dir);
    err_t e;
    err_clear(&e);
    store_t *a = store_sqlite_open(path, 2, &e), *b = NULL;
    assert_non_null(a);
    assert_true(a->ops->migrate(a, &e) >= 0);
    b = store_sqlite_open(path, 2, &e); /* a second instance on the same database */
    assert_non_null(b);
    schedule_t s[SCHEDULE_MAX];
    int n;
    char why[300];
    assert_true(schedule_parse_list("probe=* * * * * noop", s, &n, why, sizeof why));
    bool first, second, third;
    assert_true(schedule_fire(a, &s[1], 1700000040000000LL, &first, &e));
    assert_true(schedule_fire(b, &s[1], 1700000040000000LL, &second, &e));
    assert_true(schedule_fire(b, &s[1], 1700000100000000LL, &third, &e)); /* the next tick */
    assert_true(first);
    assert_false(second);
    assert_true(third);
    store_conn_t *c = a->ops->acquire(a, 1000, &e);
    arena_t ar;
    arena_init(&ar);
    store_rows_t r;
    assert_true(a->ops->query(c, "SELECT count(*) FROM jobs WHERE type = 'noop'", 0, NULL, &ar, &r, &e));
    assert_string_equal(store_cell(&r, 0, 0), "2");
    arena_free(&ar);
    a->ops->release(a, c);
    a->ops->close(a);
    b->ops->close(b);
    char p[160];
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffixes[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_overrides),
        cmocka_unit_test(errors),
        cmocka_unit_test(one_job_per_tick),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
