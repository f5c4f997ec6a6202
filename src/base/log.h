/* log: one JSON object per line on stderr (or key=value text with HEARTH_LOG_FORMAT=text), with
 * ts, level, msg and request_id where there is one. Each line is one write(2), so lines from many
 * threads never interleave. */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

#include <stdbool.h>

typedef enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

void log_setup(log_level_t level, bool json);
bool log_enabled(log_level_t level);
/* `fields` is NULL or a fragment of JSON object members ("\"k\":1,\"s\":\"x\"") added to the line. */
void log_line(log_level_t level, const char *request_id, const char *msg, const char *fields);
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool log_level_parse(const char *s, log_level_t *out);

#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
