/* t_log: line format, level filtering, the sink, truncation, one write per
 * line under threads, progress output (non-TTY through the sink, TTY
 * through a pseudo-terminal), and rate-limited repeats (a driven clock, the
 * per-site macro, threads racing on one site). The test includes log.c to
 * drive the rate limit's clock. */
#include <fcntl.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "../src/log.c"
#include "base.h"
#include "t.h"

/* ------------------------------------------------------------ capture */

#define CAP_LINES 16
static char cap[CAP_LINES][4096];
static int cap_n;

static void cap_sink(const char *line, void *ctx)
{
	int *calls = ctx;
	(*calls)++;
	if (cap_n < CAP_LINES)
		snprintf(cap[cap_n++], sizeof(cap[0]), "%s", line);
}

static void cap_reset(void)
{
	cap_n = 0;
	memset(cap, 0, sizeof(cap));
}

/* "2026-11-27T21:50:03.123Z " within a few seconds of now. */
static int time_ok(const char *l)
{
	struct tm tm = {0};
	int ms = -1;
	if (strlen(l) < 25 || l[4] != '-' || l[7] != '-' || l[10] != 'T' || l[13] != ':' ||
	    l[16] != ':' || l[19] != '.' || l[23] != 'Z' || l[24] != ' ')
		return 0;
	if (sscanf(l, "%4d-%2d-%2dT%2d:%2d:%2d.%3d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
		   &tm.tm_min, &tm.tm_sec, &ms) != 7 || ms < 0 || ms > 999)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	long d = (long)(timegm(&tm) - time(NULL));
	return d >= -5 && d <= 5;
}

/* ------------------------------------------------------------ tests */

static void test_format_and_levels(void)
{
	int calls = 0;
	log_set_sink(cap_sink, &calls);
	cap_reset();

	T_CHECK(log_get_level() == LOG_INFO, "default level %d", log_get_level());
	log_info("stage=weights ms=%d gb=%.1f", 812, 15.0);
	T_CHECK(cap_n == 1, "lines %d", cap_n);
	T_CHECK(time_ok(cap[0]), "time prefix of \"%s\"", cap[0]);
	T_CHECK(strcmp(cap[0] + 25, "INFO stage=weights ms=812 gb=15.0\n") == 0, "\"%s\"", cap[0]);

	cap_reset();
	log_debug("hidden=1");
	T_CHECK(cap_n == 0, "debug below the default level was written");
	log_set_level(LOG_DEBUG);
	log_debug("shown=1");
	T_CHECK(cap_n == 1 && strcmp(cap[0] + 25, "DEBUG shown=1\n") == 0, "\"%s\"", cap[0]);

	cap_reset();
	log_set_level(LOG_WARN);
	T_CHECK(log_get_level() == LOG_WARN, "get after set");
	log_debug("a=1");
	log_info("b=2");
	log_warn("c=3");
	log_error("d=4");
	T_CHECK(cap_n == 2, "warn level kept %d lines", cap_n);
	T_CHECK(strcmp(cap[0] + 25, "WARN c=3\n") == 0, "\"%s\"", cap[0]);
	T_CHECK(strcmp(cap[1] + 25, "ERROR d=4\n") == 0, "\"%s\"", cap[1]);

	cap_reset();
	log_set_level(LOG_OFF);
	log_error("e=5");
	log_msg(LOG_OFF, "f=6");
	T_CHECK(cap_n == 0, "off still wrote %d lines", cap_n);

	log_set_level(LOG_DEBUG);
	cap_reset();
	log_msg(LOG_OFF, "g=7"); /* OFF is a threshold, never a message level */
	T_CHECK(cap_n == 0, "a LOG_OFF message was written");
	log_set_level(LOG_INFO);

	/* Newlines inside a message never split the line. */
	cap_reset();
	log_info("a=1\nb=2\r\n");
	T_CHECK(cap_n == 1 && strcmp(cap[0] + 25, "INFO a=1 b=2\n") == 0, "\"%s\"", cap[0]);

	/* A long line is cut, marked, and still ends with one '\n'. */
	static char big[10000];
	memset(big, 'x', sizeof(big) - 1);
	cap_reset();
	log_info("k=%s", big);
	size_t n = strlen(cap[0]);
	T_CHECK(cap_n == 1 && n > 1000 && n < 4096, "long line length %zu", n);
	T_CHECK(n >= 4 && strcmp(cap[0] + n - 4, "...\n") == 0, "long line end");
	T_CHECK(strchr(cap[0], '\n') == cap[0] + n - 1, "one newline, at the end");

	/* The sink is called once per line. */
	T_CHECK(calls == 6, "sink calls %d", calls);
	log_set_sink(NULL, NULL);
}

static void test_level_parse(void)
{
	static const char *const words[] = {"debug", "info", "warn", "error", "off"};
	for (int i = 0; i < 5; i++) {
		enum log_level l = LOG_ERROR;
		T_CHECK(log_level_parse(words[i], &l) == 0 && (int)l == i, "%s -> %d", words[i], (int)l);
	}
	enum log_level l = LOG_WARN;
	T_CHECK(log_level_parse("verbose", &l) == -E_INVAL, "verbose accepted");
	T_CHECK(log_level_parse("", &l) == -E_INVAL, "empty accepted");
	T_CHECK(log_level_parse("INFO ", &l) == -E_INVAL, "'INFO ' accepted");
	T_CHECK(log_level_parse(NULL, &l) == -E_INVAL, "NULL accepted");
	T_CHECK(l == LOG_WARN, "failed parse changed out");
}

static void test_progress_not_tty(void)
{
	int calls = 0;
	log_set_sink(cap_sink, &calls);
	cap_reset();
	uint64_t total = UINT64_C(15000000000);
	log_progress("weights", 0, total, 0.0);
	log_progress("weights", total / 2, total, 2.5);
	log_progress("weights", total - 1, total, 4.9);
	T_CHECK(cap_n == 0, "progress before the end wrote %d lines", cap_n);
	log_progress("weights", total, total, 5.0);
	T_CHECK(cap_n == 1, "lines at the end %d", cap_n);
	T_CHECK(time_ok(cap[0]), "time of \"%s\"", cap[0]);
	T_CHECK(strcmp(cap[0] + 25, "INFO weights done=15000000000 total=15000000000 s=5.000 gbps=3.000\n") == 0,
		"\"%s\"", cap[0]);

	cap_reset();
	log_progress("empty", 0, 0, 0.0); /* nothing to do is done at once; no division by zero */
	T_CHECK(cap_n == 1 && strstr(cap[0], "INFO empty done=0 total=0 s=0.000 gbps=0.000\n"), "\"%s\"",
		cap[0]);

	cap_reset();
	log_set_level(LOG_WARN);
	log_progress("weights", total, total, 5.0);
	T_CHECK(cap_n == 0, "progress written at level warn");
	log_set_level(LOG_INFO);
	log_set_sink(NULL, NULL);
}

/* ------------------------------------------------------------ stderr */

#define N_THREADS 4
#define N_PER 500

static int spam(void *arg)
{
	long id = (long)(intptr_t)arg;
	for (int i = 0; i < N_PER; i++)
		log_info("thread=%ld i=%d pad=%s", id, i, "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz");
	return 0;
}

/* With no sink, lines go to fd 2 in one write each: threads never interleave. */
static void test_stderr_threads(void)
{
	char path[] = "/tmp/t_log.XXXXXX";
	int fd = mkstemp(path);
	T_CHECK(fd >= 0, "mkstemp");
	if (fd < 0)
		return;
	unlink(path);
	fflush(stderr);
	int saved = dup(2);
	dup2(fd, 2);
	thrd_t th[N_THREADS];
	for (long i = 0; i < N_THREADS; i++)
		T_CHECK(thrd_create(&th[i], spam, (void *)(intptr_t)i) == thrd_success, "thread %ld", i);
	for (int i = 0; i < N_THREADS; i++)
		thrd_join(th[i], NULL);
	dup2(saved, 2);
	close(saved);

	off_t size = lseek(fd, 0, SEEK_END);
	char *buf = malloc((size_t)size + 1);
	T_CHECK(buf && pread(fd, buf, (size_t)size, 0) == size, "read back %lld bytes", (long long)size);
	close(fd);
	if (!buf)
		return;
	buf[size] = '\0';
	int lines = 0, good = 0, count[N_THREADS] = {0};
	for (char *l = buf, *nl; *l; l = nl + 1) {
		nl = strchr(l, '\n');
		if (!nl)
			break;
		*nl = '\0';
		lines++;
		long id;
		int i, used = 0;
		if (time_ok(l) && sscanf(l + 25, "INFO thread=%ld i=%d pad=%*s%n", &id, &i, &used) == 2 &&
		    used > 0 && l[25 + used] == '\0' && id >= 0 && id < N_THREADS &&
		    i == count[id]) {
			count[id]++;
			good++;
		}
	}
	T_CHECK(lines == N_THREADS * N_PER, "lines %d", lines);
	T_CHECK(good == N_THREADS * N_PER, "well-formed, in-order lines %d of %d", good, lines);
	free(buf);
}

/* On a terminal: one redrawn line with a bar, ending in '\n' when done. */
static void test_progress_tty(void)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) {
		printf("# t_log: no pseudo-terminal here, TTY progress not checked\n");
		if (m >= 0)
			close(m);
		return;
	}
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	T_CHECK(s >= 0, "open pty slave");
	if (s < 0) {
		close(m);
		return;
	}
	fflush(stderr);
	int saved = dup(2);
	dup2(s, 2);
	uint64_t total = UINT64_C(15000000000);
	log_progress("weights", total * 45 / 100, total, 2.0);
	log_progress("weights", total * 45 / 100, total, 2.1); /* same permille: no redraw */
	log_progress("weights", total, total, 5.0);
	dup2(saved, 2);
	close(saved);

	char buf[2048];
	size_t n = 0;
	int fl = fcntl(m, F_GETFL);
	fcntl(m, F_SETFL, fl | O_NONBLOCK);
	for (int tries = 0; tries < 100 && n < sizeof(buf) - 1; tries++) {
		ssize_t r = read(m, buf + n, sizeof(buf) - 1 - n);
		if (r > 0)
			n += (size_t)r;
		else if (n && tries > 10)
			break;
		else
			usleep(1000);
	}
	buf[n] = '\0';
	T_HAS(buf, "\rweights [#########           ]  45% 6.8/15.0 GB 3.4 GB/s eta 2.4s");
	T_HAS(buf, "\rweights [####################] 100% 15.0/15.0 GB 3.0 GB/s eta 0.0s");
	T_CHECK(n > 0 && buf[n - 1] == '\n', "no newline at the end");
	int draws = 0;
	for (char *p = buf; (p = strchr(p, '\r')) != NULL; p++)
		if (p[1] == 'w')
			draws++;
	T_CHECK(draws == 2, "draws %d (a repeat of the same permille must not redraw)", draws);
	close(s);
	close(m);
}

/* ------------------------------------------------------------ rate limits */

static void rl_at(struct log_rl *rl, int64_t now_ms, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void rl_at(struct log_rl *rl, int64_t now_ms, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_rl_vmsg_at(rl, 1000, now_ms, LOG_WARN, fmt, ap);
	va_end(ap);
}

static void test_rate_limit_clock(void)
{
	int calls = 0;
	struct log_rl rl = {0};
	log_set_sink(cap_sink, &calls);
	cap_reset();
	rl_at(&rl, 5000, "serve: connection refused: %s", "max_conns connections open");
	for (int i = 0; i < 199; i++) /* 199 more in the same second */
		rl_at(&rl, 5001 + i, "serve: connection refused: %s", "max_conns connections open");
	T_CHECK(calls == 1, "a burst of 200 in one interval writes one line, not %d", calls);
	T_CHECK(cap_n == 1 && strstr(cap[0], "WARN serve: connection refused: max_conns connections open\n") &&
			!strstr(cap[0], "suppressed"),
		"the first line as it came: %s", cap[0]);
	rl_at(&rl, 6000, "serve: connection refused: %s", "again");
	T_CHECK(calls == 2 && strstr(cap[1], "WARN serve: connection refused: again (199 similar suppressed)\n"),
		"the next interval's line counts the suppressed: %s", cap[1]);
	rl_at(&rl, 6999, "x");
	rl_at(&rl, 9000, "y");
	T_CHECK(calls == 3 && strstr(cap[2], "WARN y (1 similar suppressed)\n"), "a later line: %s", cap[2]);
	rl_at(&rl, 20000, "z");
	T_CHECK(calls == 4 && strstr(cap[3], "WARN z\n"), "nothing suppressed, no count: %s", cap[3]);

	/* a message as long as a line still carries its count */
	char big[3000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	rl_at(&rl, 20001, "%s", big);
	rl_at(&rl, 30000, "%s", big);
	T_CHECK(calls == 5 && strstr(cap[4], "aaa... (1 similar suppressed)\n") != NULL,
		"a long message keeps its count: ...%s", cap[4] + strlen(cap[4]) - 40);

	/* below the level: neither written nor counted */
	log_set_level(LOG_ERROR);
	struct log_rl quiet = {0};
	for (int i = 0; i < 10; i++)
		log_rl_msg(&quiet, 1000, LOG_WARN, "quiet %d", i);
	log_set_level(LOG_INFO);
	T_CHECK(calls == 5 && atomic_load(&quiet.suppressed) == 0, "filtered calls: %d lines, %llu counted", calls - 5,
		(unsigned long long)atomic_load(&quiet.suppressed));

	/* the macro: one state per call site */
	cap_reset();
	calls = 0;
	for (int i = 0; i < 100; i++) {
		log_rl(60000, LOG_WARN, "site a %d", i);
		log_rl(60000, LOG_WARN, "site b %d", i);
	}
	T_CHECK(calls == 2 && strstr(cap[0], "site a 0") && strstr(cap[1], "site b 0"), "two sites, two lines (%d)",
		calls);
	log_set_sink(NULL, NULL);
}

#define RL_THREADS 4
#define RL_PER 1000
static struct log_rl rl_shared;

static int rl_spam(void *arg)
{
	for (int i = 0; i < RL_PER; i++)
		log_rl_msg(&rl_shared, 60000, LOG_WARN, "refused %d", i);
	return 0;
}

static void test_rate_limit_threads(void)
{
	int calls = 0;
	log_set_sink(cap_sink, &calls);
	cap_reset();
	thrd_t th[RL_THREADS];
	for (long i = 0; i < RL_THREADS; i++)
		T_CHECK(thrd_create(&th[i], rl_spam, NULL) == thrd_success, "thread %ld", i);
	for (int i = 0; i < RL_THREADS; i++)
		thrd_join(th[i], NULL);
	log_set_sink(NULL, NULL);
	uint64_t sup = atomic_load(&rl_shared.suppressed);
	T_CHECK(calls == 1 && sup == RL_THREADS * RL_PER - 1, "%d threads x %d calls: %d lines, %llu suppressed",
		RL_THREADS, RL_PER, calls, (unsigned long long)sup);
}

int main(void)
{
	test_format_and_levels();
	test_level_parse();
	test_progress_not_tty();
	test_stderr_threads();
	test_progress_tty();
	test_rate_limit_clock();
	test_rate_limit_threads();
	return T_DONE();
}
