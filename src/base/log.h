/*
 * log.h — leveled logging to stderr. The level is checked before anything is formatted, so a
 * disabled debug line costs one load and a compare. Safe to call from any thread: each line is
 * formatted into a local buffer and written with a single write(2).
 *
 * Lines look like: 2026-11-23T04:15:48.123Z INFO  [shard 1] storage: message
 */
#ifndef AL_LOG_H
#define AL_LOG_H

#include "base/base.h"

enum al_log_level { AL_LOG_TRACE, AL_LOG_DEBUG, AL_LOG_INFO, AL_LOG_WARN, AL_LOG_ERROR, AL_LOG_OFF };

extern int al_log_level; /* current threshold; change with al_log_set_level */

/* The calling thread's shard id shown in log lines (-1: not a shard thread). */
extern _Thread_local int al_log_shard;

void al_log_set_level(int level);
/* Parses "trace|debug|info|warn|error|off"; returns the level or -1. */
int al_log_level_parse(const char *name);
const char *al_log_level_name(int level);

AL_PRINTF(3, 4) void al_log_write(int level, const char *subsys, const char *fmt, ...);

#define AL_LOG(level, subsys, ...)                                                               \
    do {                                                                                         \
        if ((level) >= al_log_level) al_log_write((level), (subsys), __VA_ARGS__);               \
    } while (0)

#define log_trace(subsys, ...) AL_LOG(AL_LOG_TRACE, subsys, __VA_ARGS__)
#define log_debug(subsys, ...) AL_LOG(AL_LOG_DEBUG, subsys, __VA_ARGS__)
#define log_info(subsys, ...)  AL_LOG(AL_LOG_INFO, subsys, __VA_ARGS__)
#define log_warn(subsys, ...)  AL_LOG(AL_LOG_WARN, subsys, __VA_ARGS__)
#define log_error(subsys, ...) AL_LOG(AL_LOG_ERROR, subsys, __VA_ARGS__)

#endif
