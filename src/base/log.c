/* log: structured logging; see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "jw.h"

static log_level_t min_level = LOG_INFO;
static bool as_json = true;
static const char *names[] = {"debug", "info", "warn", "error"};

void log_setup(log_level_t level, bool json) { min_level = level, as_json = json; }

bool log_enabled(log_level_t level) { return level >= min_level; }

bool log_level_parse(const char *s, log_level_t *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (log_level_t)i;
            return true;
        }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return true;
    }
    return false;
}

void log_line(log_level_t level, const char *request_id, const char *msg, const char *fields)
{
    if (level < min_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long)(tv.tv_usec / 1000));

    buf_t b;
    buf_init(&b);
    if (as_json) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, names[level]);
        json_escape(&b, msg, strlen(msg));
        if (request_id) {
            buf_puts(&b, ",\"request_id\":");
            json_escape(&b, request_id, strlen(request_id));
        }
        if (fields && *fields) {
            buf_putc(&b, ',');
            buf_puts(&b, fields);
        }
        buf_puts(&b, "}\n");
    } else {
        buf_printf(&b, "%s %-5s %s", ts, names[level], msg);
        if (request_id)
            buf_printf(&b, " request_id=%s", request_id);
        if (fields && *fields)
            buf_printf(&b, " %s", fields);
        buf_putc(&b, '\n');
    }
    ssize_t w = write(STDERR_FILENO, b.data, b.len);
    (void)w;
    buf_free(&b);
}

void log_msg(log_level_t level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_line(level, NULL, msg, NULL);
}
