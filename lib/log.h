/* log.h - one line per event, logfmt or JSON, level-filtered.
 *
 * Callers pass a message and logfmt-style key=value pairs already formatted
 * ("topic=%s partition=%d"); in JSON mode the pairs go into a "kv" string so
 * a line is always one valid JSON object. Writes are one write(2) each, so
 * lines from several threads never interleave. */
#ifndef SB_LOG_H
#define SB_LOG_H

#include "util.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Reads "debug|info|warn|error" and "logfmt|json"; false if unknown. */
bool log_setup(const char *level, const char *format, const char *program) SB_NODISCARD;
void log_msg(enum log_level lvl, const char *msg, const char *kvfmt, ...) SB_PRINTF(3, 4);
bool log_enabled(enum log_level lvl);
/* The trace id (32 hex) of the request or job this thread works on now;
 * every line it logs until the next call carries trace_id=<id> first.
 * NULL or "" clears it. */
void log_set_trace(const char *trace_id);
/* The trace id set on this thread ("" none). */
const char *log_get_trace(void);
/* Copies it into out (a caller keeping it for another thread or later). */
void log_copy_trace(char out[33]);

#define log_debug(msg, ...) log_msg(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)

/* For a warning that can come thousands of times a second (a flood of
 * connections): due at most once per period_ms; *skipped says how many
 * were passed over since the last one logged. Not locked: one per thread
 * that uses it. */
struct log_every {
    int64_t at_ms; /* monotonic; 0 = never logged */
    int64_t skipped;
};
bool log_every_due(struct log_every *e, int64_t period_ms, int64_t *skipped);

/* Start-up failure: log and exit(1). Only before the process serves. */
_Noreturn void die(const char *msg, const char *kvfmt, ...) SB_PRINTF(2, 3);

#endif
