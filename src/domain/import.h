/* import: loads listings from a data file into the store: the Ames and Sacramento CSVs of the demo
 * data set, and JSON (an array of property objects, or one object per line).
 *
 * Every row becomes a property_t through documented derivations (docs/data.md), is checked by
 * property_check exactly as an API create is, and is upserted by (source, external_id) in batches
 * of IMPORT_BATCH rows per transaction, so a re-import updates rows and never duplicates them.
 * A row that does not parse or fails the check is reported with its line and skipped. */
#ifndef HEARTH_IMPORT_H
#define HEARTH_IMPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/error.h"
#include "../infra/store.h"

typedef enum import_format { IMPORT_AMES, IMPORT_SACRAMENTO, IMPORT_JSON } import_format_t;

#define IMPORT_BATCH 500          /* rows per transaction */
#define IMPORT_MAX_REJECTIONS 100 /* rejections kept with their message; the rest are only counted */

typedef struct import_rejection {
    int line; /* 1-based line in the file where the row starts */
    char message[240];
} import_rejection_t;

typedef struct import_report {
    int64_t inserted, updated, unchanged, rejected;
    int nrejections; /* <= IMPORT_MAX_REJECTIONS; `rejected` may be larger */
    import_rejection_t rejections[IMPORT_MAX_REJECTIONS];
} import_report_t;

/* City centres that commute_time is measured to. */
#define IMPORT_AMES_CENTRE_LAT 42.0262        /* Ames City Hall */
#define IMPORT_AMES_CENTRE_LON (-93.6167)
#define IMPORT_SACRAMENTO_CENTRE_LAT 38.5766  /* California State Capitol */
#define IMPORT_SACRAMENTO_CENTRE_LON (-121.4934)

bool import_format_parse(const char *s, import_format_t *out); /* "ames", "sacramento", "json" */
const char *import_format_name(import_format_t f);
void import_report_init(import_report_t *rep);

/* Estimated driving minutes from (lat, lon) to a city centre: great-circle (haversine) distance in
 * km, times 1.3 for the detour of real roads, at 40 km/h average urban speed, rounded, plus 3
 * minutes to park and start. An estimate, documented as such in docs/data.md. */
int commute_minutes(double lat, double lon, double centre_lat, double centre_lon);

/* Imports `data` (len bytes) in format `fmt`. `source_name` (may be NULL) replaces the default
 * source ("ames", "sacramento"; for json it is the default for rows without their own `source`,
 * else "json"). Rows are owned by `owner_id` (0: none). `rep` is reset, then filled. Returns false
 * only on a fatal error (unreadable header, malformed JSON array, store failure); rows upserted
 * before a store failure stay committed and are counted in `rep`. */
/* Called after each batch is written with the rows handled so far; returning false stops the import
 * (it then fails with ERR_UNAVAILABLE, "stopped"; the batches written stay written). */
typedef struct import_progress {
    bool (*fn)(void *arg, int64_t rows_done);
    void *arg;
} import_progress_t;

bool import_run(store_t *s, const char *data, size_t len, import_format_t fmt, const char *source_name,
                int64_t owner_id, const import_progress_t *progress, import_report_t *rep, err_t *e);

/* Imports the demo data set embedded in the binary (data/demo/ames.csv and sacramento.csv).
 * Rejections are prefixed with the file name. */
bool import_demo(store_t *s, int64_t owner_id, import_report_t *rep, err_t *e);

#endif
