/* soak: `make soak` (SOAK_S seconds, default in the Makefile). Boots
 * build/tokenspeed serve on a tiny CPU model and drives it over loopback TLS
 * with a mixed load for the given time: plain generations, agent sessions
 * (kept turns, then a last turn that ends the session), cancels mid-stream,
 * disconnect storms (connections closed with requests streaming), 3x
 * overload bursts (3 x (max_running + max_queue) submits at once: BUSY for
 * the excess) and idle floods (raw TCP connections that never send a byte,
 * sometimes more than max_conns).
 *
 * Before (after a warm-up: every action once, then the full load for a
 * quarter of the time, 10 s at most) and after the load it reads the
 * server's STATS (KV blocks free, requests running, queued, sessions parked,
 * connections) and its VmRSS from /proc: blocks, requests and connection
 * slots must be identical, and RSS must stay flat from ready on: neither
 * after the warm-up, nor at its peak during the load, nor at the end may it
 * pass its value at ready by more than SOAK_RSS_SLACK_KB (serve takes its
 * connection, request and TLS memory at boot). Every request must get
 * exactly one terminal frame (unless its connection was closed by us or
 * died), and the server must exit 0 on SIGTERM (drain).
 *
 * Usage: soak [seconds] [threads]; prints "# soak: pass=N fail=M".
 * tests/t_soak.c is the same program for `make test`: SOAK_DEFAULT_S seconds. */
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tsclient.h"

#ifndef SOAK_DEFAULT_S
#define SOAK_DEFAULT_S 60
#define SOAK_NAME      "soak.c"
#endif
#ifndef SOAK_RSS_SLACK_KB
#define SOAK_RSS_SLACK_KB 4096
#endif

#define MAX_RUNNING 8
#define MAX_QUEUE   16
#define DIR_SOAK    "build/soak"

static int port;
static pid_t server;
static double deadline;
static struct tsc_tls tt;
static char where[64];
static int vocab = 256;

static _Atomic uint64_t n_req, n_done, n_err, n_busy, n_cut, n_bad, n_connect_fail, n_flood, n_actions[6];
static _Atomic int overload_on;

#define BAD(...)                                                                                                       \
	do {                                                                                                           \
		n_bad++;                                                                                               \
		fprintf(stderr, "soak: " __VA_ARGS__);                                                                 \
	} while (0)

/* ------------------------------------------------------------ helpers */

static uint64_t rnd_next(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

static long rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* The server's mappings (/proc/PID/smaps): where RSS grew, when it did. */
struct maps {
	int n;
	unsigned long start[4096], kb[4096];
	long rss[4096];
	char name[4096][48];
};

static void maps_read(pid_t pid, struct maps *m)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	FILE *f = fopen(path, "r");
	m->n = 0;
	while (f && fgets(line, sizeof(line), f) && m->n < 4096) {
		unsigned long a, b;
		long kb;
		char perm[8], nm[256] = "";
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255s", &a, &b, perm, nm) >= 3 && strchr(line, '-') < strchr(line, ' ')) {
			m->start[m->n] = a;
			m->kb[m->n] = (b - a) >> 10;
			m->rss[m->n] = 0;
			snprintf(m->name[m->n], sizeof(m->name[0]), "%s", nm[0] ? nm : "[anon]");
			m->n++;
		} else if (m->n && sscanf(line, "Rss: %ld kB", &kb) == 1) {
			m->rss[m->n - 1] = kb;
		}
	}
	if (f)
		fclose(f);
}

/* Prints the mappings whose RSS grew by more than 256 kB from a to b. */
static void maps_diff(const struct maps *a, const struct maps *b)
{
	for (int i = 0; i < b->n; i++) {
		long was = 0;
		for (int k = 0; k < a->n; k++)
			if (a->start[k] == b->start[i])
				was = a->rss[k];
		if (b->rss[i] - was > 256)
			fprintf(stderr, "soak: mapping %lx (%lu kB) %s: Rss %ld -> %ld kB\n", b->start[i], b->kb[i], b->name[i],
				was, b->rss[i]);
	}
}

struct snap {
	uint64_t blocks, blocks_free, running, queued, parked, conns, accepted, rejected, done, cancelled, failed;
};

static int stats(struct snap *s)
{
	struct tsc c;
	struct ts_err e = {0};
	if (tsc_connect(&c, where, &tt, &e) < 0)
		return -1;
	int ok = -1;
	if (tsc_stats(&c) == 0) {
		struct tsc_event ev;
		while (tsc_poll(&c, 5000, &ev) == 1) {
			if (ev.type != TSC_EV_STATS)
				continue;
			for (uint32_t i = 0; i < ev.n_stats; i++) {
				uint64_t v = ev.stats[i].value;
				switch (ev.stats[i].key) {
				case PROTO_STAT_KV_BLOCKS:
					s->blocks = v;
					break;
				case PROTO_STAT_KV_BLOCKS_FREE:
					s->blocks_free = v;
					break;
				case PROTO_STAT_REQUESTS_RUNNING:
					s->running = v;
					break;
				case PROTO_STAT_REQUESTS_QUEUED:
					s->queued = v;
					break;
				case PROTO_STAT_SESSIONS_PARKED:
					s->parked = v;
					break;
				case PROTO_STAT_CONNECTIONS:
					s->conns = v;
					break;
				case PROTO_STAT_REQUESTS_ACCEPTED:
					s->accepted = v;
					break;
				case PROTO_STAT_REQUESTS_REJECTED:
					s->rejected = v;
					break;
				case PROTO_STAT_REQUESTS_DONE:
					s->done = v;
					break;
				case PROTO_STAT_REQUESTS_CANCELLED:
					s->cancelled = v;
					break;
				case PROTO_STAT_REQUESTS_FAILED:
					s->failed = v;
					break;
				}
			}
			ok = 0;
			break;
		}
	}
	tsc_close(&c);
	return ok;
}

/* Settled: nothing running, queued or parked, every block free, only the
 * STATS connection open. Waits up to 15 s. */
static int settle(struct snap *s)
{
	for (int i = 0; i < 150; i++) {
		if (stats(s) == 0 && s->running == 0 && s->queued == 0 && s->parked == 0 &&
		    s->blocks_free == s->blocks && s->conns == 1)
			return 0;
		usleep(100000);
	}
	return -1;
}

/* ------------------------------------------------------------ requests */

#define MAXQ 64
struct rq {
	uint32_t id;
	int terms, tokens, busy;
	int32_t out[64];
	int n_out;
};

static int submit(struct tsc *c, struct rq *r, const int32_t *p, int n, int max_tokens, uint64_t sid, int keep,
                  uint64_t seed)
{
	struct tsc_request q = {.prompt = p,
	                        .n_prompt = (uint32_t)n,
	                        .max_tokens = (uint32_t)max_tokens,
	                        .ignore_eos = 1,
	                        .session_id = sid,
	                        .keep_session = keep};
	samp_params_default(&q.samp);
	q.samp.temperature = 0.8f, q.samp.seed = seed;
	memset(r, 0, sizeof(*r));
	int rc = tsc_submit(c, &q, &r->id);
	if (rc == 0)
		n_req++;
	else
		r->terms = 1; /* never sent */
	return rc;
}

/* Reads until every rq has its terminal frame; on_first (if set) runs once
 * when any TOKENS arrive. -1 when the connection died or hung. */
static int wait_all(struct tsc *c, struct rq *rs, int n, void (*on_first)(struct tsc *, struct rq *))
{
	int fired = 0;
	for (;;) {
		int all = 1;
		for (int i = 0; i < n; i++)
			all &= rs[i].terms > 0;
		if (all)
			return 0;
		struct tsc_event ev;
		int r = tsc_poll(c, 20000, &ev);
		if (r <= 0) {
			if (r == 0)
				BAD("no event for 20 s\n");
			n_cut++;
			return -1;
		}
		for (int i = 0; i < n; i++) {
			struct rq *q = &rs[i];
			if (ev.req_id != q->id)
				continue;
			if (ev.type == TSC_EV_TOKENS) {
				if (q->terms)
					BAD("TOKENS after the terminal frame\n");
				for (uint32_t k = 0; k < ev.n_ids && q->n_out < 64; k++)
					q->out[q->n_out++] = ev.ids[k];
				q->tokens += (int)ev.n_ids;
				if (on_first && !fired) {
					fired = 1;
					on_first(c, q);
				}
			} else if (ev.type == TSC_EV_DONE || ev.type == TSC_EV_ERROR) {
				if (++q->terms > 1)
					BAD("request %u got %d terminal frames\n", q->id, q->terms);
				if (ev.type == TSC_EV_DONE)
					n_done++;
				else if (ev.code == PROTO_ERR_BUSY) {
					n_busy++;
					q->busy = 1;
				} else
					n_err++;
			}
		}
	}
}

static int conn(struct tsc *c)
{
	struct ts_err e = {0};
	for (int i = 0; i < 50; i++) {
		if (tsc_connect(c, where, &tt, &e) == 0)
			return 0;
		n_connect_fail++;
		usleep(100000);
	}
	fprintf(stderr, "soak: cannot connect for 5 s: %s\n", e.msg);
	n_bad++;
	return -1;
}

static void cancel_it(struct tsc *c, struct rq *r)
{
	tsc_cancel(c, r->id);
}

/* ------------------------------------------------------------ actions */

enum act { A_GEN, A_SESSION, A_CANCEL, A_STORM, A_OVERLOAD, A_N };

static void prompt_fill(uint64_t *s, int32_t *p, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (int32_t)(rnd_next(s) % (uint64_t)vocab);
}

static void act_gen(uint64_t *s)
{
	struct tsc c;
	if (conn(&c) < 0)
		return;
	struct rq rs[3];
	int32_t p[40];
	int n = 1 + (int)(rnd_next(s) % 3);
	for (int i = 0; i < n; i++) {
		int len = 4 + (int)(rnd_next(s) % 36);
		prompt_fill(s, p, len);
		submit(&c, &rs[i], p, len, 4 + (int)(rnd_next(s) % 28), 0, 0, rnd_next(s));
	}
	wait_all(&c, rs, n, NULL);
	tsc_close(&c);
}

static void act_session(uint64_t *s, uint64_t sid)
{
	struct tsc c;
	if (conn(&c) < 0)
		return;
	int32_t conv[400];
	int n = 6 + (int)(rnd_next(s) % 20);
	prompt_fill(s, conv, n);
	for (int turn = 0; turn < 3; turn++) {
		struct rq r;
		int last = turn == 2;
		if (submit(&c, &r, conv, n, 8, sid, !last, rnd_next(s)) < 0 || wait_all(&c, &r, 1, NULL) < 0)
			break;
		if (r.busy)
			break;
		for (int k = 0; k < r.n_out && n < 380; k++)
			conv[n++] = r.out[k];
		prompt_fill(s, conv + n, 3);
		n += 3;
	}
	/* a kept turn whose follow-up failed: end the session so its KV returns */
	struct rq r;
	if (!c.dead && submit(&c, &r, conv, n, 1, sid, 0, 1) == 0)
		wait_all(&c, &r, 1, NULL);
	tsc_close(&c);
}

static void act_cancel(uint64_t *s)
{
	struct tsc c;
	if (conn(&c) < 0)
		return;
	struct rq r;
	int32_t p[16];
	prompt_fill(s, p, 16);
	if (submit(&c, &r, p, 16, 200, 0, 0, rnd_next(s)) == 0)
		wait_all(&c, &r, 1, cancel_it);
	tsc_close(&c);
}

/* Six connections, two streaming requests each, all closed at once. */
static void act_storm(uint64_t *s)
{
	struct tsc c[6];
	int ok[6] = {0};
	for (int i = 0; i < 6; i++) {
		ok[i] = conn(&c[i]) == 0;
		for (int k = 0; ok[i] && k < 2; k++) {
			struct rq r;
			int32_t p[12];
			prompt_fill(s, p, 12);
			submit(&c[i], &r, p, 12, 100, 0, 0, rnd_next(s));
		}
	}
	struct tsc_event ev;
	for (int i = 0; i < 6; i++)
		if (ok[i])
			tsc_poll(&c[i], 2000, &ev); /* the first tokens are on their way */
	for (int i = 0; i < 6; i++)
		if (ok[i])
			tsc_close(&c[i]);
}

/* 3 x (max_running + max_queue) submits at once over three connections. */
static void act_overload(uint64_t *s)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&overload_on, &expect, 1)) {
		act_gen(s); /* one burst at a time */
		return;
	}
	enum { PER = MAX_RUNNING + MAX_QUEUE };
	static struct rq rs[3][PER];
	struct tsc c[3];
	int ok[3];
	for (int i = 0; i < 3; i++) {
		ok[i] = conn(&c[i]) == 0;
		for (int k = 0; ok[i] && k < PER; k++) {
			int32_t p[8];
			prompt_fill(s, p, 8);
			submit(&c[i], &rs[i][k], p, 8, 6, 0, 0, rnd_next(s));
		}
	}
	for (int i = 0; i < 3; i++)
		if (ok[i]) {
			wait_all(&c[i], rs[i], PER, NULL);
			tsc_close(&c[i]);
		}
	atomic_store(&overload_on, 0);
}

static void act(uint64_t *s, int a, uint64_t sid)
{
	n_actions[a]++;
	switch ((enum act)a) {
	case A_GEN:
		act_gen(s);
		break;
	case A_SESSION:
		act_session(s, sid);
		break;
	case A_CANCEL:
		act_cancel(s);
		break;
	case A_STORM:
		act_storm(s);
		break;
	case A_OVERLOAD:
		act_overload(s);
		break;
	case A_N:
		break;
	}
}

static void *worker(void *arg)
{
	uint64_t s = 0x5eed0000u + (uint64_t)(intptr_t)arg, sid = ((uint64_t)(intptr_t)arg + 1) << 32;
	while (ts_now() < deadline) {
		uint64_t x = rnd_next(&s) % 100;
		int a = x < 40 ? A_GEN : x < 60 ? A_SESSION : x < 75 ? A_CANCEL : x < 90 ? A_STORM : A_OVERLOAD;
		act(&s, a, ++sid);
	}
	return NULL;
}

/* Idle floods: raw TCP connections that never send, held a while; every
 * fourth round more than max_conns (the excess is refused). */
static int flood_round(int n, double hold_s)
{
	int fds[128], k = 0;
	for (int i = 0; i < n && i < 128; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			fds[k++] = fd;
		else if (fd >= 0)
			close(fd);
	}
	n_flood += (uint64_t)k;
	usleep((useconds_t)(hold_s * 1e6));
	for (int i = 0; i < k; i++)
		close(fds[i]);
	return k;
}

static void *flooder(void *arg)
{
	for (int round = 0; ts_now() < deadline; round++) {
		flood_round(round % 4 == 3 ? 80 : 40, 1.0);
		usleep(1500000);
	}
	return NULL;
}

/* ------------------------------------------------------------ setup */

static int sh(const char *cmd)
{
	int rc = system(cmd);
	if (rc != 0)
		fprintf(stderr, "soak: `%s` failed\n", cmd);
	return rc;
}

/* A port free now (the config wants a fixed one). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), p = 0;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &al) == 0)
		p = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

static int start_server(void)
{
	char cwd[512], ini[4096];
	if (!getcwd(cwd, sizeof(cwd)))
		return -1;
	if (sh("rm -rf " DIR_SOAK " && mkdir -p " DIR_SOAK) ||
	    sh("build/tests/gen_ckpt --preset llama3-mini --tokenizer --out " DIR_SOAK "/model >/dev/null") ||
	    sh("build/tokenspeed certs " DIR_SOAK "/certs >/dev/null 2>&1"))
		return -1;
	/* every client here is 127.0.0.1: max_conns_per_peer (t_flood tests it)
	 * would refuse the legitimate clients behind the idle floods */
	snprintf(ini, sizeof(ini),
	         "[model]\npath = %s/" DIR_SOAK "/model\n[engine]\nmax_seq_len = 512\nmax_batch_tokens = 128\n"
	         "max_running = %d\nmax_queue = %d\nkv_block_tokens = 16\nkv_tokens = 2048\n[device]\nbackend = cpu\n"
	         "cpu_threads = 2\n[server]\nlisten = 127.0.0.1:%d\nmax_conns_per_peer = 64\ntls_cert = %s/" DIR_SOAK "/certs/server.crt\n"
	         "tls_key = %s/" DIR_SOAK "/certs/server.key\ntls_ca = %s/" DIR_SOAK
	         "/certs/ca.crt\n[log]\nlevel = info\n",
	         cwd, MAX_RUNNING, MAX_QUEUE, free_port(), cwd, cwd, cwd);
	FILE *f = fopen(DIR_SOAK "/soak.ini", "w");
	if (!f || fputs(ini, f) < 0 || fclose(f) != 0)
		return -1;
	server = fork();
	if (server == 0) {
		int fd = open(DIR_SOAK "/server.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		dup2(fd, 1);
		execl("build/tokenspeed", "tokenspeed", "serve", "--config", DIR_SOAK "/soak.ini", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 300 && !port; i++) { /* the log says the port */
		usleep(100000);
		size_t n;
		char *log = t_slurp(DIR_SOAK "/server.log", &n);
		const char *p = log ? strstr(log, "listening port=") : NULL;
		if (p)
			port = atoi(p + 15);
		free(log);
	}
	return port ? 0 : -1;
}

/* threads workers and the flooder for secs seconds; samples the server's
 * RSS every 250 ms into *peak and every 10 s into series. */
static void run_load(int threads, double secs, long *peak, char *series)
{
	double t0 = ts_now();
	deadline = t0 + secs;
	pthread_t th[32], fl;
	if (threads > 32)
		threads = 32;
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	pthread_create(&fl, NULL, flooder, NULL);
	for (int tick = 1; ts_now() < deadline; tick++) {
		usleep(250000);
		long r = rss_kb(server);
		if (peak && r > *peak)
			*peak = r;
		if (series && tick % 40 == 0 && strlen(series) < 1000) /* every 10 s */
			snprintf(series + strlen(series), 1024 - strlen(series), " %.0fs:%ld", ts_now() - t0, r);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	pthread_join(fl, NULL);
}

static int count_lines(const char *needle, uint64_t *suppressed)
{
	size_t n;
	char *log = t_slurp(DIR_SOAK "/server.log", &n);
	int k = 0;
	*suppressed = 0;
	for (char *p = log; p && (p = strstr(p, needle)) != NULL; p++) {
		k++;
		char *eol = strchr(p, '\n'), *q = strstr(p, " similar suppressed)");
		if (q && (!eol || q < eol)) {
			while (q > p && q[-1] >= '0' && q[-1] <= '9')
				q--;
			*suppressed += strtoull(q, NULL, 10);
		}
	}
	free(log);
	return k;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : SOAK_DEFAULT_S;
	int threads = argc > 2 ? atoi(argv[2]) : 6;
	signal(SIGPIPE, SIG_IGN);
	T_CHECK(start_server() == 0, "server up (see " DIR_SOAK "/server.log)");
	if (!port)
		return T_DONE();
	snprintf(where, sizeof(where), "127.0.0.1:%d", port);
	tt = (struct tsc_tls){.ca = DIR_SOAK "/certs/ca.crt",
	                      .cert = DIR_SOAK "/certs/client.crt",
	                      .key = DIR_SOAK "/certs/client.key",
	                      .server_name = "localhost"};
	{
		struct tsc c;
		struct ts_err e = {0};
		if (tsc_connect(&c, where, &tt, &e) == 0) {
			vocab = (int)c.lim.vocab;
			tsc_close(&c);
		}
	}

	/* RSS at ready, then a warm-up: every action once, one flood over
	 * max_conns, then the full load for warm_s */
	long rss_ready = rss_kb(server);
	static struct maps m_ready, m_end;
	maps_read(server, &m_ready);
	uint64_t s = 1;
	deadline = ts_now() + 1e9;
	for (int a = 0; a < A_N; a++)
		act(&s, a, 1);
	flood_round(80, 0.5);
	double warm_s = secs / 4 < 10 ? secs / 4 : 10;
	run_load(threads, warm_s, NULL, NULL);
	struct snap b0 = {0}, b1 = {0};
	T_CHECK(settle(&b0) == 0,
	        "settled after warm-up: running %llu queued %llu parked %llu blocks %llu/%llu conns %llu",
	        (unsigned long long)b0.running, (unsigned long long)b0.queued, (unsigned long long)b0.parked,
	        (unsigned long long)b0.blocks_free, (unsigned long long)b0.blocks, (unsigned long long)b0.conns);
	long rss0 = rss_kb(server), rss_peak = rss0;
	uint64_t req0 = n_req;

	double t0 = ts_now();
	char series[1024] = "";
	run_load(threads, secs, &rss_peak, series);
	double dt = ts_now() - t0;

	T_CHECK(settle(&b1) == 0,
	        "settled after the soak: running %llu queued %llu parked %llu blocks %llu/%llu conns %llu",
	        (unsigned long long)b1.running, (unsigned long long)b1.queued, (unsigned long long)b1.parked,
	        (unsigned long long)b1.blocks_free, (unsigned long long)b1.blocks, (unsigned long long)b1.conns);
	long rss1 = rss_kb(server);
	T_CHECK(b1.blocks_free == b0.blocks_free && b1.blocks == b0.blocks && b1.conns == b0.conns,
	        "blocks and connection slots identical before and after");
	T_CHECK(b1.accepted == b1.done + b1.cancelled + b1.failed,
	        "the server's requests: %llu accepted = %llu done + %llu cancelled + %llu failed",
	        (unsigned long long)b1.accepted, (unsigned long long)b1.done, (unsigned long long)b1.cancelled,
	        (unsigned long long)b1.failed);
	T_CHECK(n_bad == 0, "%llu protocol violations (terminal frames, hangs)", (unsigned long long)n_bad);
	T_CHECK(rss1 - rss0 <= SOAK_RSS_SLACK_KB, "RSS grew %ld kB after the warm-up (slack %d kB)", rss1 - rss0,
	        SOAK_RSS_SLACK_KB);
	maps_read(server, &m_end);
	maps_diff(&m_ready, &m_end);
	T_CHECK(rss0 - rss_ready <= SOAK_RSS_SLACK_KB && rss_peak - rss_ready <= SOAK_RSS_SLACK_KB &&
	            rss1 - rss_ready <= SOAK_RSS_SLACK_KB,
	        "RSS not flat from ready: %ld kB at ready, %ld after the warm-up, peak %ld, %ld at the end (slack %d kB)",
	        rss_ready, rss0, rss_peak, rss1, SOAK_RSS_SLACK_KB);
	uint64_t sup = 0;
	int refused = count_lines("connection refused", &sup);

	kill(server, SIGTERM);
	int st = 0;
	waitpid(server, &st, 0);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit on SIGTERM: status %d", st);

	printf(
	    "#> soak: %.0f s, %d threads: %llu requests (%llu done, %llu BUSY, %llu other errors, %llu on connections "
	    "we cut), actions gen %llu session %llu cancel %llu storm %llu overload %llu; %llu idle flood "
	    "connections, %llu client connects retried\n",
	    dt, threads, (unsigned long long)(n_req - req0), (unsigned long long)n_done, (unsigned long long)n_busy,
	    (unsigned long long)n_err, (unsigned long long)n_cut, (unsigned long long)n_actions[A_GEN],
	    (unsigned long long)n_actions[A_SESSION], (unsigned long long)n_actions[A_CANCEL],
	    (unsigned long long)n_actions[A_STORM], (unsigned long long)n_actions[A_OVERLOAD],
	    (unsigned long long)n_flood, (unsigned long long)n_connect_fail);
	printf("#> soak: before/after: KV blocks free %llu/%llu -> %llu/%llu, connections %llu -> %llu, server VmRSS "
	       "%ld kB at ready, %ld kB after a %.0f s warm-up, %ld kB after the soak (peak %ld kB); \"connection "
	       "refused\" log lines %d (+%llu suppressed)\n",
	       (unsigned long long)b0.blocks_free, (unsigned long long)b0.blocks, (unsigned long long)b1.blocks_free,
	       (unsigned long long)b1.blocks, (unsigned long long)b0.conns, (unsigned long long)b1.conns, rss_ready,
	       rss0, warm_s, rss1, rss_peak, refused, (unsigned long long)sup);
	printf("#> soak: server STATS after: %llu accepted = %llu done + %llu cancelled + %llu failed; %llu rejected\n",
	       (unsigned long long)b1.accepted, (unsigned long long)b1.done, (unsigned long long)b1.cancelled,
	       (unsigned long long)b1.failed, (unsigned long long)b1.rejected);
	printf("#> soak: server VmRSS kB every 10 s:%s\n", series);
	return t_done(SOAK_NAME);
}
