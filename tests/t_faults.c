/* t_faults: every error path a scenario reaches, run (SQLite's habit). Built
 * only by `make test-faults` (inside `make test`): the library with the
 * FAULT() hooks of src/fault.h compiled in, under ASan and UBSan.
 *
 * Scenarios: boot (engine_boot + engine_stop), a served conversation, a
 * session's two turns, a cancel mid-stream, a drain mid-stream; the served
 * ones over real TLS on loopback with libtsclient, whose own calls are
 * exempt (fault_exempt), so only the server's calls count and fail. The
 * engine is booted once and each run is a fork()ed child (the CPU backend
 * with one thread, so nothing is lost in the fork).
 *
 * For each scenario: one run counts the calls of each kind (allocation, file
 * read, mmap, TLS call, socket call) it makes; then, for every kind and every
 * N from 1 to that count (plus a margin: thread timing moves counts), a run
 * fails call N. Each run must end in a clean error (boot or serve_start
 * refused with a message, an ERROR frame, the connection closed) or a served
 * result, and then: no crash, no hang (alarm), no ASan/LSan report (the child
 * exits non-zero), every request one terminal frame at most (exactly one
 * unless the connection died), and after the server stops, every request
 * slot and KV block of the engine free (no lost request).
 *
 * argv[1] = "full" never samples; by default a kind with more than
 * T_FAULTS_MAX_N calls is sampled evenly, and the output says so.
 * "trace SCENARIO KIND N" (0-based scenario and kind numbers) runs that one
 * case and prints the stack of the call that fails. */
#include "t.h"
#include "tutil.h"

#include "../boot/certs.c"
#include "fault.h"
#include "serve.h"
#include "tsclient.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TS_FAULTS
#error "t_faults needs the TS_FAULTS build: make test-faults"
#endif

#ifndef T_FAULTS_MAX_N
#define T_FAULTS_MAX_N 400
#endif
#define MARGIN 3 /* runs past the counted calls: timing moves the count a little */

enum scen { S_BOOT, S_CONV, S_SESSION, S_CANCEL, S_DRAIN, S_N };
static const char *const scen_names[S_N] = {"boot", "conversation", "session turn", "cancel", "drain"};

/* What a child tells the parent through a pipe before it exits. */
enum outcome { O_SERVED, O_CLEAN_ERROR, O_BAD };
struct report {
	uint64_t count[FAULT_KINDS];
	int fired;
	int outcome;
	char msg[240];
};

static struct cfg cf;
static struct engine en;
static char dir_certs[300];
static int booted;

/* ------------------------------------------------------------ the child */

static struct report rep;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (rep.outcome != O_BAD)
		vsnprintf(rep.msg, sizeof(rep.msg), fmt, ap);
	va_end(ap);
	rep.outcome = O_BAD;
}

static void clean(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void clean(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (rep.outcome == O_SERVED) {
		rep.outcome = O_CLEAN_ERROR;
		vsnprintf(rep.msg, sizeof(rep.msg), fmt, ap);
	}
	va_end(ap);
}

static int scen_boot(void)
{
	struct ts_err e = {0};
	static struct engine b;
	if (engine_boot(&b, &cf, &e) < 0) {
		if (!e.msg[0])
			bad("boot failed without a message");
		else
			clean("boot: %.200s", e.msg);
		return 0;
	}
	engine_stop(&b);
	return 0;
}

#define MAX_RQ 4
struct rq_state {
	uint32_t id;
	int terms, tokens;
};

/* Polls until every request in rs has its terminal frame (or the connection
 * dies). Calls on_tokens after each TOKENS event. 0, or -1 on a hang. */
static int wait_terms(struct tsc *c, struct rq_state *rs, int n, void (*on_tokens)(struct tsc *, struct rq_state *))
{
	for (;;) {
		int all = 1;
		for (int i = 0; i < n; i++)
			all &= rs[i].terms > 0;
		if (all)
			return 0;
		struct tsc_event ev;
		int r = tsc_poll(c, 8000, &ev);
		if (r < 0) {
			clean("connection closed: %.200s", c->err.msg);
			return 0;
		}
		if (r == 0) {
			bad("no event for 8 s (hang)");
			return -1;
		}
		for (int i = 0; i < n; i++) {
			if (ev.req_id != rs[i].id)
				continue;
			if (ev.type == TSC_EV_TOKENS) {
				if (rs[i].terms)
					bad("TOKENS after the terminal frame");
				rs[i].tokens += (int)ev.n_ids;
				if (on_tokens)
					on_tokens(c, &rs[i]);
			} else if (ev.type == TSC_EV_DONE || ev.type == TSC_EV_ERROR) {
				rs[i].terms++;
				if (rs[i].terms > 1)
					bad("request %u: %d terminal frames", rs[i].id, rs[i].terms);
				if (ev.type == TSC_EV_ERROR)
					clean("ERROR %u: %.200s", ev.code, ev.msg);
			}
		}
		if (ev.type == TSC_EV_ERROR && ev.req_id == 0) {
			clean("connection ERROR %u: %.200s", ev.code, ev.msg);
			return 0;
		}
	}
}

static struct serve *sv_live;
static int drained;

static void cancel_first(struct tsc *c, struct rq_state *r)
{
	if (r->tokens > 0 && !r->terms)
		tsc_cancel(c, r->id);
}

static void drain_first(struct tsc *c, struct rq_state *r)
{
	if (!drained) {
		serve_drain(sv_live, 50);
		drained = 1;
	}
}

static int submit(struct tsc *c, struct rq_state *r, const int32_t *prompt, uint32_t n, uint32_t max_tokens,
                  uint64_t sid, int keep)
{
	struct tsc_request q = {.prompt = prompt,
	                        .n_prompt = n,
	                        .max_tokens = max_tokens,
	                        .ignore_eos = 1,
	                        .session_id = sid,
	                        .keep_session = keep};
	samp_params_default(&q.samp);
	memset(r, 0, sizeof(*r));
	int rc = tsc_submit(c, &q, &r->id);
	if (rc < 0) {
		clean("submit: %.200s", c->err.msg);
		r->terms = 1; /* never sent */
	}
	return rc;
}

static void scen_served(enum scen s)
{
	struct ts_err e = {0};
	struct serve_opts so = {
	    .listen = "127.0.0.1:0", .max_conns = 4, .max_requests = 4, .initial_credit = 4, .credit_timeout_ms = 5000};
	struct serve *sv = NULL;
	if (serve_start(&sv, &en, &so, &e) < 0) {
		if (!e.msg[0])
			bad("serve_start failed without a message");
		else
			clean("serve_start: %.200s", e.msg);
		return;
	}
	sv_live = sv;
	char where[64], ca[400], crt[400], key[400];
	snprintf(where, sizeof(where), "127.0.0.1:%d", serve_port(sv));
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir_certs);
	snprintf(crt, sizeof(crt), "%s/client.crt", dir_certs);
	snprintf(key, sizeof(key), "%s/client.key", dir_certs);
	struct tsc_tls tt = {.ca = ca, .cert = crt, .key = key, .server_name = "localhost"};
	static struct tsc c;
	fault_exempt(1);
	if (tsc_connect(&c, where, &tt, &e) < 0) {
		clean("connect: %.200s", e.msg);
	} else {
		static const int32_t p1[] = {1, 2, 3, 4, 5, 6, 7, 8};
		struct rq_state rs[2];
		switch (s) {
		case S_CONV:
			if (submit(&c, &rs[0], p1, 8, 6, 0, 0) == 0)
				wait_terms(&c, rs, 1, NULL);
			break;
		case S_SESSION:
			if (submit(&c, &rs[0], p1, 8, 4, 0x77, 1) == 0 && wait_terms(&c, rs, 1, NULL) == 0 && !c.dead) {
				static const int32_t p2[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 10};
				if (submit(&c, &rs[1], p2, 13, 4, 0x77, 0) == 0)
					wait_terms(&c, rs + 1, 1, NULL);
			}
			break;
		case S_CANCEL:
			if (submit(&c, &rs[0], p1, 8, 200, 0, 0) == 0)
				wait_terms(&c, rs, 1, cancel_first);
			break;
		case S_DRAIN:
			if (submit(&c, &rs[0], p1, 8, 400, 0, 0) == 0)
				wait_terms(&c, rs, 1, drain_first);
			break;
		case S_BOOT:
		case S_N:
			break;
		}
		tsc_close(&c);
	}
	fault_exempt(0);
	serve_drain(sv, 200);
	serve_wait(sv);
	/* Nothing may be left in the engine: no request lost, no block or slot leaked. */
	struct sched *sc = &en.s;
	sched_expire(sc, ts_now() + 1e9);
	if (sc->n_free != sc->n_slots || sc->kv.n_free != sc->kv.n_blocks || sched_busy(sc))
		bad("after the server stopped: %d/%d request slots free, %d/%d KV blocks free, %d busy", sc->n_free,
		    sc->n_slots, sc->kv.n_free, sc->kv.n_blocks, sched_busy(sc));
}

/* Runs scenario s in a child with call n of kind k failing (n = 0: none). */
static int run_child(enum scen s, enum fault_kind k, uint64_t n, struct report *out)
{
	int fds[2];
	if (pipe(fds) < 0)
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(fds[0]);
		alarm(40);
		memset(&rep, 0, sizeof(rep));
		fault_arm(k, n);
		if (s == S_BOOT)
			scen_boot();
		else
			scen_served(s);
		for (int i = 0; i < FAULT_KINDS; i++)
			rep.count[i] = fault_count((enum fault_kind)i);
		rep.fired = fault_fired();
		fault_arm(k, 0);
		if (write(fds[1], &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
			_exit(3);
		close(fds[1]);
		exit(0); /* LeakSanitizer checks here */
	}
	close(fds[1]);
	memset(out, 0, sizeof(*out));
	ssize_t got = read(fds[0], out, sizeof(*out));
	close(fds[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st)) {
		out->outcome = O_BAD;
		snprintf(out->msg, sizeof(out->msg), "killed by signal %d%s", WTERMSIG(st),
		         WTERMSIG(st) == SIGALRM ? " (hang)" : "");
	} else if (WEXITSTATUS(st) != 0) {
		out->outcome = O_BAD;
		snprintf(out->msg, sizeof(out->msg), "exit status %d (a sanitizer report: see stderr)",
		         WEXITSTATUS(st));
	} else if (got != (ssize_t)sizeof(*out)) {
		out->outcome = O_BAD;
		snprintf(out->msg, sizeof(out->msg), "no report from the child");
	}
	return 0;
}

/* ------------------------------------------------------------ the parent */

static int full;

static void scenario(enum scen s)
{
	struct report r0;
	run_child(s, FAULT_ALLOC, 0, &r0);
	/* a drain may cancel its request (ERROR CANCELLED): that is its served result */
	T_CHECK(r0.outcome == O_SERVED || (s == S_DRAIN && r0.outcome == O_CLEAN_ERROR), "%s without faults: %s",
	        scen_names[s], r0.msg);
	for (int k = 0; k < FAULT_KINDS; k++) {
		uint64_t total = r0.count[k] + (r0.count[k] ? MARGIN : 0);
		uint64_t step = !full && total > T_FAULTS_MAX_N ? (total + T_FAULTS_MAX_N - 1) / T_FAULTS_MAX_N : 1;
		int runs = 0, reached = 0, served = 0, errors = 0, broken = 0;
		char served_at[200] = "";
		double t0 = ts_now();
		for (uint64_t n = 1; n <= total; n += step) {
			struct report r;
			run_child(s, (enum fault_kind)k, n, &r);
			runs++;
			reached += r.fired;
			if (r.outcome == O_BAD) {
				if (broken++ < 3)
					fprintf(stderr, "FAIL %s, %s call %llu failing: %s\n", scen_names[s],
					        fault_name((enum fault_kind)k), (unsigned long long)n, r.msg);
			} else if (r.fired) {
				served += r.outcome == O_SERVED;
				if (r.outcome == O_SERVED && s == S_BOOT && strlen(served_at) < 150)
					snprintf(served_at + strlen(served_at), sizeof(served_at) - strlen(served_at),
					         " %llu", (unsigned long long)n);
				errors += r.outcome == O_CLEAN_ERROR;
			}
		}
		T_CHECK(broken == 0, "%s, %s: %d of %d runs broken", scen_names[s], fault_name((enum fault_kind)k),
		        broken, runs);
		printf("#> %-12s %-6s calls %4llu: %s, %3d runs, %3d reached the fault: %3d served, %3d clean errors, "
		       "%d broken (%.1f s)\n",
		       scen_names[s], fault_name((enum fault_kind)k), (unsigned long long)r0.count[k],
		       step == 1 ? "every N" : "sampled", runs, reached, served, errors, broken, ts_now() - t0);
		if (served_at[0]) /* boot went on without what failed: optional, or a lost error? */
			printf("#>   booted although %s call N failed, N =%s\n", fault_name((enum fault_kind)k),
			       served_at);
		if (step > 1)
			printf("#>   sampled: every %llu-th N of %llu\n", (unsigned long long)step,
			       (unsigned long long)total);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	full = argc > 1 && strcmp(argv[1], "full") == 0;
	struct ts_err e = {0};
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *ck = "build-faults/ckpt/llama3-mini";
	char cmd[600];
	snprintf(
	    cmd, sizeof(cmd),
	    "rm -rf %s && mkdir -p build-faults/ckpt && build/tests/gen_ckpt --preset llama3-mini --tokenizer --out %s "
	    ">/dev/null",
	    ck, ck);
	if (system(cmd) != 0) {
		fprintf(stderr, "t_faults: %s failed (make test builds build/tests/gen_ckpt)\n", cmd);
		return 1;
	}
	snprintf(dir_certs, sizeof(dir_certs), "build-faults/certs");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir_certs);
	T_CHECK(system(cmd) == 0, "rm certs");
	T_CHECK(certs_make(dir_certs, 2, "localhost", &e) == 0, "certs: %s", e.msg);

	t_cfg(&cf, ck);
	cf.device.cpu_threads = 1; /* no worker thread: the engine survives fork() */
	cf.engine.kv_block_tokens = 16;
	cf.log.level = LOG_OFF;
	log_set_level(LOG_OFF);
	snprintf(cf.server.tls_cert, sizeof(cf.server.tls_cert), "%s/server.crt", dir_certs);
	snprintf(cf.server.tls_key, sizeof(cf.server.tls_key), "%s/server.key", dir_certs);
	snprintf(cf.server.tls_ca, sizeof(cf.server.tls_ca), "%s/ca.crt", dir_certs);

	if (argc == 5 && strcmp(argv[1], "trace") == 0) {
		struct report r;
		fault_trace(1);
		if (atoi(argv[2]) != S_BOOT && engine_boot(&en, &cf, &e) < 0)
			return 1;
		run_child((enum scen)atoi(argv[2]), (enum fault_kind)atoi(argv[3]), strtoull(argv[4], NULL, 10), &r);
		printf("outcome %d fired %d: %s\n", r.outcome, r.fired, r.msg);
		return 0;
	}
	double t0 = ts_now();
	scenario(S_BOOT);
	if (engine_boot(&en, &cf, &e) < 0) {
		fprintf(stderr, "boot: %s\n", e.msg);
		return 1;
	}
	booted = 1;
	for (int s = S_CONV; s < S_N; s++)
		scenario((enum scen)s);
	engine_stop(&en);
	printf("#> t_faults: %.1f s in all\n", ts_now() - t0);
	return T_DONE();
}
