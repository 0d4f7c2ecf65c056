/* log: leveled, one-line key=value logs, and boot progress bars.
 *
 * Owns: the log level, the sink (stderr by default; tests may capture), line
 * formatting, rate limits for repeated events. Does not: decide anything.
 * Threads: log_* may be called from any thread; a line is written with one
 * write(2) so lines from different threads do not interleave.
 * Format: "<ISO time> <LEVEL> <msg>" where msg is key=value pairs by habit:
 *   2026-11-27T21:50:03.123Z INFO stage=weights ms=812 gb=15.0
 */
#ifndef TS_LOG_H
#define TS_LOG_H

#include <stdatomic.h>
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

/* Rate-limited repeats: for an event that can happen many times a second
 * (refused connections, failed handshakes). Each call site owns one struct
 * log_rl (log_rl() below declares a static one). A line is written when
 * interval_ms has passed since the last one written there; the calls dropped
 * in between are counted and the next line written ends with
 * "(N similar suppressed)". A burst that stops is reported by its first line;
 * its count waits for the next event at that site.
 * Threads: any; the state is atomic and exactly one caller per interval
 * writes. Calls below the log level neither write nor count. */
struct log_rl {
	_Atomic int64_t next_ms;     /* monotonic ms before which lines are suppressed */
	_Atomic uint64_t suppressed; /* calls dropped since the last line written */
};

void log_rl_msg(struct log_rl *rl, uint32_t interval_ms, enum log_level l, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
#define log_rl(interval_ms, level, ...)                                          \
	do {                                                                      \
		static struct log_rl log_rl_site_;                                \
		log_rl_msg(&log_rl_site_, (interval_ms), (level), __VA_ARGS__); \
	} while (0)

/* Progress bar on stderr when it is a terminal, else one line at the end. */
void log_progress(const char *what, uint64_t done, uint64_t total, double elapsed_s);

/* Tests: send lines to fn instead of stderr (NULL restores stderr). */
void log_set_sink(void (*fn)(const char *line, void *ctx), void *ctx);

#endif
