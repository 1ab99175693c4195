/* log.c — see log.h. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int al_log_level = AL_LOG_INFO;
_Thread_local int al_log_shard = -1;

static const char *const level_names[] = {"trace", "debug", "info", "warn", "error", "off"};
static const char *const level_tags[] = {"TRACE", "DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};

void al_log_set_level(int level)
{
    if (level < AL_LOG_TRACE) level = AL_LOG_TRACE;
    if (level > AL_LOG_OFF) level = AL_LOG_OFF;
    __atomic_store_n(&al_log_level, level, __ATOMIC_RELAXED);
}

int al_log_level_parse(const char *name)
{
    for (int i = 0; i <= AL_LOG_OFF; i++)
        if (strcasecmp(name, level_names[i]) == 0) return i;
    if (strcasecmp(name, "warning") == 0) return AL_LOG_WARN;
    return -1;
}

const char *al_log_level_name(int level)
{
    if (level < 0 || level > AL_LOG_OFF) return "?";
    return level_names[level];
}

void al_log_write(int level, const char *subsys, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_tags[level < 0 ? 0 : level % 6]);
    if (al_log_shard >= 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "[shard %d] ", al_log_shard);
    n += snprintf(line + n, sizeof(line) - (size_t)n, "%s: ", subsys ? subsys : "-");
    va_list ap;
    va_start(ap, fmt);
    if (n < (int)sizeof(line)) n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
