/* log: leveled, one-line key=value logs, and boot progress bars.
 *
 * Owns: the log level, the sink (stderr by default; tests may capture), line
 * formatting. Does not: decide anything.
 * Threads: log_* may be called from any thread; a line is written with one
 * write(2) so lines from different threads do not interleave.
 * Format: "<ISO time> <LEVEL> <msg>" where msg is key=value pairs by habit:
 *   2026-11-27T21:50:03.123Z INFO stage=weights ms=812 gb=15.0
 */
#ifndef TS_LOG_H
#define TS_LOG_H

#include <stdint.h>
#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

void log_set_level(enum log_level l);
enum log_level log_get_level(void);
int log_level_parse(const char *s, enum log_level *out); /* "debug" ... "off"; 0 or -E_INVAL */

void log_msg(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Progress bar on stderr when it is a terminal, else one line at the end. */
void log_progress(const char *what, uint64_t done, uint64_t total, double elapsed_s);

/* Tests: send lines to fn instead of stderr (NULL restores stderr). */
void log_set_sink(void (*fn)(const char *line, void *ctx), void *ctx);

#endif
