/* log: leveled one-line logs and boot progress bars.
 *
 * Every line is formatted into a stack buffer and leaves in one write(2), so
 * lines from different threads never interleave and logging never allocates.
 * A line is "<UTC time with ms> <LEVEL> <msg>\n"; a message that does not fit
 * is cut (ending in "...") and still ends with '\n'; newlines inside a message
 * become spaces so one call is always one line.
 *
 * The sink (tests only) receives exactly the bytes stderr would get, '\n'
 * included. Set it before other threads log. No libm: rates are plain
 * division.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base.h"

#define LOG_LINE_MAX 2048 /* bytes of one line, '\n' included */

static _Atomic int log_level = LOG_INFO;
static void (*log_sink_fn)(const char *line, void *ctx);
static void *log_sink_ctx;

static const char *const log_level_names[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};
static const char *const log_level_words[] = {"debug", "info", "warn", "error", "off"};

/* ------------------------------------------------------------ level */

void log_set_level(enum log_level l)
{
	if (l > LOG_OFF)
		l = LOG_OFF;
	atomic_store_explicit(&log_level, (int)l, memory_order_relaxed);
}

enum log_level log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; s && i < TS_ARRAY_LEN(log_level_words); i++) {
		if (strcmp(s, log_level_words[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -E_INVAL;
}

static int log_enabled(enum log_level l)
{
	return l < LOG_OFF && (int)l >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void log_set_sink(void (*fn)(const char *line, void *ctx), void *ctx)
{
	log_sink_fn = fn;
	log_sink_ctx = ctx;
}

/* ------------------------------------------------------------ output */

/* One write(2) for the whole buffer; a partial write (pipe full, signal) is
 * finished rather than dropped. */
static void log_emit(const char *buf, size_t n)
{
	if (log_sink_fn) {
		log_sink_fn(buf, log_sink_ctx);
		return;
	}
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		n -= (size_t)w;
	}
}

/* "2026-11-27T21:50:03.123Z "; returns bytes written (always 25). */
static int log_time(char *buf, size_t n)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	return snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ ", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			(int)(ts.tv_nsec / 1000000));
}

static void log_vline(enum log_level l, const char *fmt, va_list ap)
{
	char buf[LOG_LINE_MAX];
	size_t cap = sizeof(buf) - 1; /* room kept for the '\n' */
	int h = log_time(buf, cap);
	h += snprintf(buf + h, cap - (size_t)h, "%s ", log_level_names[l]);
	int m = vsnprintf(buf + h, cap - (size_t)h, fmt, ap);
	if (m < 0)
		m = 0;
	size_t n = (size_t)h + (size_t)m;
	if (n >= cap) { /* cut: mark it so a reader knows */
		n = cap - 1;
		memcpy(buf + n - 3, "...", 3);
	}
	while (n > (size_t)h && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	for (size_t i = (size_t)h; i < n; i++)
		if (buf[i] == '\n' || buf[i] == '\r')
			buf[i] = ' ';
	buf[n++] = '\n';
	buf[n] = '\0';
	log_emit(buf, n);
}

void log_msg(enum log_level l, const char *fmt, ...)
{
	if (!log_enabled(l))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vline(l, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ rate limits */

/* The caller that moves next_ms forward writes; everyone else counts. now_ms
 * is a parameter so the test can drive the clock. */
static void log_rl_vmsg_at(struct log_rl *rl, uint32_t interval_ms, int64_t now_ms, enum log_level l,
			   const char *fmt, va_list ap)
{
	int64_t next = atomic_load_explicit(&rl->next_ms, memory_order_relaxed);
	if (now_ms < next || !atomic_compare_exchange_strong_explicit(&rl->next_ms, &next, now_ms + interval_ms,
								      memory_order_relaxed, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&rl->suppressed, 1, memory_order_relaxed);
		return;
	}
	uint64_t n = atomic_exchange_explicit(&rl->suppressed, 0, memory_order_relaxed);
	if (n == 0) {
		log_vline(l, fmt, ap);
		return;
	}
	char msg[LOG_LINE_MAX - 96]; /* the count survives a message cut to fit */
	if (vsnprintf(msg, sizeof(msg), fmt, ap) >= (int)sizeof(msg))
		memcpy(msg + sizeof(msg) - 4, "...", 4); /* cut: marked as log_vline marks it */
	log_msg(l, "%s (%llu similar suppressed)", msg, (unsigned long long)n);
}

void log_rl_msg(struct log_rl *rl, uint32_t interval_ms, enum log_level l, const char *fmt, ...)
{
	if (!log_enabled(l))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_rl_vmsg_at(rl, interval_ms, (int64_t)(ts_now() * 1e3), l, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ progress */

#define PROGRESS_BAR 20

/* Last permille drawn on the terminal, so a caller reporting every tensor
 * redraws at most 1000 times. Boot thread only. */
static int progress_last = -1;

void log_progress(const char *what, uint64_t done, uint64_t total, double elapsed_s)
{
	if (!log_enabled(LOG_INFO))
		return;
	if (done > total)
		done = total;
	double gbps = elapsed_s > 0 ? (double)done / elapsed_s / 1e9 : 0.0;
	int finished = done == total;

	if (log_sink_fn || !isatty(STDERR_FILENO)) {
		if (finished)
			log_msg(LOG_INFO, "%s done=%llu total=%llu s=%.3f gbps=%.3f", what,
				(unsigned long long)done, (unsigned long long)total, elapsed_s, gbps);
		return;
	}

	int permille = total ? (int)(done * 1000 / total) : 1000;
	if (!finished && permille == progress_last)
		return;
	progress_last = finished ? -1 : permille;

	char bar[PROGRESS_BAR + 1];
	int fill = permille * PROGRESS_BAR / 1000;
	for (int i = 0; i < PROGRESS_BAR; i++)
		bar[i] = i < fill ? '#' : ' ';
	bar[PROGRESS_BAR] = '\0';
	double left_s = gbps > 0 ? (double)(total - done) / (gbps * 1e9) : 0.0;

	char buf[512];
	int n = snprintf(buf, sizeof(buf) - 1, "\r%.64s [%s] %3d%% %.1f/%.1f GB %.1f GB/s eta %.1fs\033[K%s",
			 what, bar, permille / 10, (double)done / 1e9, (double)total / 1e9, gbps,
			 left_s, finished ? "\n" : "");
	if (n < 0)
		return;
	log_emit(buf, TS_MIN((size_t)n, sizeof(buf) - 2));
}
