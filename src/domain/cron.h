/* cron: five-field cron expressions for recurring job schedules, and the next time one fires.
 *
 * The one idea: an expression is parsed once into one bitmask per field (bit n set: value n
 * matches), and the next firing time is found by walking the calendar from the coarsest field to
 * the finest: a month that does not match is skipped whole, then a day, then an hour, and within a
 * matching hour the next minute is the next set bit. So finding the next time costs at most a few
 * thousand cheap steps however far away it is, never a scan of every minute.
 *
 * Syntax (Vixie cron / cronie): "minute hour day-of-month month day-of-week", fields separated by
 * spaces or tabs, each a comma-separated list of `*`, `N`, `A-B`, `*` or `A-B` followed by `/S`
 * (every S-th value of the range), or `N/S` (from N to the field's maximum, every S-th). Months
 * may be written jan-dec and weekdays sun-sat, in any case; weekday 0 and 7 are both Sunday, and
 * `sun` at the end of a range means 7 (so `fri-sun` works). A whole expression may instead be one
 * of @yearly (@annually), @monthly, @weekly, @daily (@midnight) or @hourly.
 *
 * Day of month and day of week follow Vixie cron: when both are restricted, a day matches if
 * EITHER does ("0 0 13 * fri" runs on every 13th and on every Friday). A field counts as
 * unrestricted when it begins with `*`, as in Vixie cron: a day of month of `*` stepped by 2 with a
 * day of week of `mon` runs on odd-numbered days that are Mondays, not on both. All times are UTC. */
#ifndef HEARTH_CRON_H
#define HEARTH_CRON_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/error.h"

#define CRON_MAX_LEN 1000 /* a longer expression is refused */

typedef struct cron {
    uint64_t minute; /* bits 0-59 */
    uint64_t hour;   /* bits 0-23 */
    uint64_t dom;    /* bits 1-31 */
    uint64_t month;  /* bits 1-12 */
    uint64_t dow;    /* bits 0-6, 0 = Sunday (a 7 in the expression is stored as 0) */
    bool dom_star, dow_star; /* the field began with `*`: the day rule is AND, not OR */
} cron_t;

/* Parses `expr` into *out. On a bad expression: false, ERR_VALIDATION, and a message of at most
 * 200 characters naming the field and the problem ("hour: 24 is out of range 0-23"). */
bool cron_parse(const char *expr, cron_t *out, err_t *e);

/* The first minute boundary strictly after `after_us` (unix microseconds, UTC) that `c` matches,
 * in unix microseconds. -1 when there is none within five years: none on the day of `after_us` or
 * the 1827 days after it (as for "0 0 30 2 *"; also "0 0 29 2 *" from 2096-03-01, as 2100 is not a
 * leap year), or when it would not fit in an int64_t. */
int64_t cron_next(const cron_t *c, int64_t after_us);

#endif
