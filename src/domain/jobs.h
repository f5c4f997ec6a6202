/* jobs: hearth's job types, registered with the worker runtime; see jobs.c for each one. */
#ifndef HEARTH_JOBS_H
#define HEARTH_JOBS_H

#include <stdbool.h>

#include "worker.h"

/* Registers every job type (and, with `test_handlers`, the test.* types: HEARTH_TEST_JOBS=1).
 * `listings_changed` (may be NULL) is called after a job inserted or updated listings, so that
 * response caches drop what they hold. */
void jobs_register(const char *data_dir, bool test_handlers, void (*listings_changed)(void));

#endif
