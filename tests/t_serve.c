/* t_serve: the server end to end over real TLS and sockets, CPU backend,
 * llama3-mini, with a minimal blocking client written here.
 * (1) 8 connections x 8 concurrent requests give the tokens of the same
 *     requests sent one at a time (credit topped up as the client reads);
 * (2) a kept session's second turn reports the first turn as cached;
 * (3) cancel mid-stream and disconnect mid-stream: every KV block returns
 *     (STATS) and the other stream on the connection is unaffected;
 * (4) malformed frames get the ERROR and close (or not) PROTOCOL.md says,
 *     and the server keeps serving;
 * (5) a client certificate from another CA is refused in the handshake;
 * (6) queue overflow gets BUSY (retryable); every request one terminal frame;
 *     a request out of credit pauses in the engine (nothing generated) while
 *     another runs, and resumes on CREDIT; without CREDIT it ends STALLED;
 * (7) a drain: GOAWAY, SUBMIT answered DRAINING, every live request exactly
 *     one terminal frame, then the server closes and its threads exit;
 * (8) the serving threads made no allocation from ready to their exit
 *     through all of the above (ts_alloc_serving_count);
 * (9) a reader that stops reading: windows full, events held in the ring,
 *     then every token arrives (test_slow_reader). */
#include "t.h"
#include "tutil.h"

#include "../boot/certs.c"
#include "proto.h"
#include "serve.h"
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ------------------------------------------------------------ client */

struct cl {
	int fd;
	struct tls_session s;
	struct proto_reader rd;
	uint8_t rbuf[1 << 18];
	uint8_t in[16384];
	size_t in_off, in_len;
	struct proto_welcome w;
	uint8_t wbuf[4096];
	int eof;
};

/* tls.c holds one process-wide lock around the callbacks, which the server's
 * thread shares with us: the client's socket is non-blocking and we wait
 * in poll(), outside the lock. */
static int c_send(void *ctx, const uint8_t *p, size_t n)
{
	struct cl *c = ctx;
	ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
	if (w < 0)
		return errno == EAGAIN ? TLS_WANT_IO : -E_IO;
	return (int)w;
}

static int c_recv(void *ctx, uint8_t *p, size_t n)
{
	struct cl *c = ctx;
	ssize_t r = recv(c->fd, p, n, 0);
	if (r < 0)
		return errno == EAGAIN ? TLS_WANT_IO : -E_IO;
	return (int)r;
}

/* Waits (20 s at most) for what the last TLS_AGAIN wanted; 0 or -1. */
static int c_wait(struct cl *c)
{
	struct pollfd p = {.fd = c->fd, .events = tls_want(&c->s) == TLS_WANT_WRITE ? POLLOUT : POLLIN};
	return poll(&p, 1, 20000) == 1 ? 0 : -1;
}

static int port;
static int cl_rcvbuf; /* SO_RCVBUF of the next cl_open, 0: the system's */
static struct tls_config tc_ok, tc_other;

static int cl_raw(struct cl *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		int w = tls_write(&c->s, b, n);
		if (w == TLS_AGAIN) {
			if (c_wait(c) < 0)
				return -1;
			continue;
		}
		if (w < 0)
			return w;
		b += w, n -= (size_t)w;
	}
	return 0;
}

/* Next frame: 1, or 0 at end of stream / error. */
static int cl_next(struct cl *c, struct proto_frame *f)
{
	for (;;) {
		if (c->in_off < c->in_len) {
			struct ts_err e = {0};
			size_t used = 0;
			int r = proto_reader_feed(&c->rd, c->in + c->in_off, c->in_len - c->in_off, &used, f, &e);
			c->in_off += used;
			if (r < 0)
				return 0;
			if (r == PROTO_FRAME)
				return 1;
		}
		int n = tls_read(&c->s, c->in, sizeof(c->in));
		if (n == TLS_AGAIN) {
			if (c_wait(c) < 0) {
				c->eof = 1;
				return 0;
			}
			continue;
		}
		if (n <= 0) {
			c->eof = 1;
			return 0;
		}
		c->in_off = 0, c->in_len = (size_t)n;
	}
}

/* Connects, handshakes, HELLO/WELCOME (hello = 0) or stops after TLS. 0 or -1. */
static int cl_open(struct cl *c, const struct tls_config *tc, int hello)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cl_rcvbuf)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &cl_rcvbuf, sizeof(cl_rcvbuf));
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	if (tls_session_init(&c->s, tc, c_send, c_recv, c) < 0)
		return -1;
	proto_reader_init(&c->rd, c->rbuf, sizeof(c->rbuf));
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	int hs;
	while ((hs = tls_handshake(&c->s)) == TLS_AGAIN)
		if (c_wait(c) < 0)
			return -1;
	if (hs != 0)
		return -1;
	if (!hello)
		return 0;
	uint8_t b[512];
	struct proto_hello h = {.n_versions = 1, .versions = {1}, .max_frame = 1u << 18, .client = {"t_serve", 7}};
	int n = proto_encode_hello(b, sizeof(b), &h);
	if (cl_raw(c, b, (size_t)n) < 0)
		return -1;
	struct proto_frame f;
	struct ts_err e = {0};
	if (!cl_next(c, &f) || f.h.type != PROTO_WELCOME || f.h.length > sizeof(c->wbuf))
		return -1;
	memcpy(c->wbuf, f.payload, f.h.length);
	if (proto_decode_welcome(c->wbuf, f.h.length, f.h.flags, &c->w, &e) < 0)
		return -1;
	proto_reader_limit(&c->rd, c->w.lim.max_frame, (uint8_t)c->w.version);
	return 0;
}

static void cl_close(struct cl *c)
{
	tls_session_free(&c->s);
	close(c->fd);
}

struct job {
	int32_t prompt[64];
	int n_prompt, max_tokens, samp;
	uint64_t sid;
	uint32_t flags;
	/* results */
	int32_t out[512];
	int n_out, n_terms, n_done, err;
	int credit_used; /* tokens read since the last CREDIT */
	int no_credit;   /* never send CREDIT */
	struct proto_done d;
	uint32_t done_flags;
};

static void job_params(int i, struct samp_params *p)
{
	samp_params_default(p);
	p->seed = 77u + (uint64_t)i;
	if (i % 3 == 1)
		p->temperature = 0.8f, p->top_p = 0.9f;
	else if (i % 3 == 2)
		p->temperature = 1.0f, p->top_k = 20, p->repetition_penalty = 1.2f;
}

static int cl_submit(struct cl *c, uint32_t rid, const struct job *j)
{
	uint8_t b[1024];
	struct proto_submit_args a = {.flags = j->flags | PROTO_SUBMIT_IGNORE_EOS, .max_tokens = (uint32_t)j->max_tokens,
				      .priority = 1, .session_id = j->sid, .prompt = j->prompt,
				      .n_prompt = (uint32_t)j->n_prompt};
	job_params(j->samp, &a.samp);
	int n = proto_encode_submit(b, sizeof(b), rid, &a);
	return n < 0 ? n : cl_raw(c, b, (size_t)n);
}

static void cl_credit(struct cl *c, uint32_t rid, uint32_t n)
{
	uint8_t b[64];
	int k = proto_encode_credit(b, sizeof(b), rid, n);
	cl_raw(c, b, (size_t)k);
}

/* Handles one frame for jobs[rid - 1]; returns its type, 0 at end of stream. */
static int cl_pump(struct cl *c, struct job *jobs, int n_jobs)
{
	struct proto_frame f;
	struct ts_err e = {0};
	if (!cl_next(c, &f))
		return 0;
	uint32_t rid = f.h.request_id;
	struct job *j = rid >= 1 && rid <= (uint32_t)n_jobs ? &jobs[rid - 1] : NULL;
	if (f.h.type == PROTO_TOKENS && j) {
		struct proto_tokens t;
		T_CHECK(proto_decode_tokens(f.payload, f.h.length, f.h.flags, &c->w.lim, &t, &e) == 0, "%s", e.msg);
		for (uint32_t i = 0; i < t.ids.n; i++)
			if (j->n_out < 512)
				j->out[j->n_out++] = (int32_t)proto_u32s_at(&t.ids, i);
		T_CHECK(j->n_terms == 0, "TOKENS after the terminal frame of %u", rid);
		j->credit_used += (int)t.ids.n;
		if (j->credit_used >= (int)c->w.initial_credit && !j->no_credit) {
			cl_credit(c, rid, (uint32_t)j->credit_used);
			j->credit_used = 0;
		}
	} else if (f.h.type == PROTO_DONE && j) {
		T_CHECK(proto_decode_done(f.payload, f.h.length, f.h.flags, &c->w.lim, &j->d, &e) == 0, "%s", e.msg);
		j->done_flags = f.h.flags;
		j->n_terms++, j->n_done++;
	} else if (f.h.type == PROTO_ERROR) {
		struct proto_error er;
		T_CHECK(proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e) == 0, "%s", e.msg);
		if (j) {
			j->err = (int)er.code;
			j->n_terms++;
		}
	}
	return f.h.type;
}

static int all_ended(const struct job *jobs, int n)
{
	for (int i = 0; i < n; i++)
		if (!jobs[i].n_terms)
			return 0;
	return 1;
}

/* STATS: the value of key (or ~0). */
static uint64_t cl_stat(struct cl *c, uint32_t key)
{
	uint8_t b[64];
	int n = proto_encode_stats_req(b, sizeof(b));
	cl_raw(c, b, (size_t)n);
	struct proto_frame f;
	struct ts_err e = {0};
	while (cl_next(c, &f)) {
		if (f.h.type != PROTO_STATS)
			continue;
		struct proto_stats s;
		if (proto_decode_stats(f.payload, f.h.length, f.h.flags, &s, &e) < 0)
			return ~0ull;
		for (uint32_t i = 0; i < s.n; i++) {
			struct proto_stat kv;
			proto_stats_at(&s, i, &kv);
			if (kv.key == key)
				return kv.value;
		}
		return ~0ull;
	}
	return ~0ull;
}

/* Polls STATS until every KV block is free and nothing runs (2 s at most). */
static int blocks_back(struct cl *c)
{
	for (int i = 0; i < 200; i++) {
		uint64_t fr = cl_stat(c, PROTO_STAT_KV_BLOCKS_FREE), all = cl_stat(c, PROTO_STAT_KV_BLOCKS);
		uint64_t run = cl_stat(c, PROTO_STAT_REQUESTS_RUNNING) + cl_stat(c, PROTO_STAT_REQUESTS_QUEUED);
		if (fr == all && run == 0)
			return 1;
		usleep(10000);
	}
	return 0;
}

static int ping_ok(struct cl *c)
{
	uint8_t b[64];
	int n = proto_encode_ping(b, sizeof(b), 0x1234);
	if (cl_raw(c, b, (size_t)n) < 0)
		return 0;
	struct proto_frame f;
	while (cl_next(c, &f))
		if (f.h.type == PROTO_PONG)
			return proto_get_u64(f.payload) == 0x1234;
	return 0;
}

/* ------------------------------------------------------------ tests */

static uint64_t rng = 7;
static uint32_t rnd(uint32_t n)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rng >> 33) % n;
}

#define NJ 64
static struct job ref[NJ], con[NJ];

static void make_jobs(struct job *js, int vocab)
{
	for (int i = 0; i < NJ; i++) {
		struct job *j = &js[i];
		memset(j, 0, sizeof(*j));
		j->n_prompt = 3 + (int)rnd(30);
		for (int k = 0; k < j->n_prompt; k++)
			j->prompt[k] = (int32_t)rnd((uint32_t)vocab);
		j->max_tokens = 4 + (int)rnd(13);
		j->samp = i;
	}
}

static void test_concurrent(void)
{
	struct cl c0;
	T_CHECK(cl_open(&c0, &tc_ok, 1) == 0, "connect");
	T_CHECK(c0.w.arch.len > 0 && c0.w.lim.vocab > 0 && c0.w.initial_credit == 4, "welcome");
	rng = 7;
	make_jobs(ref, (int)c0.w.lim.vocab);
	for (int i = 0; i < NJ; i++) { /* the reference: one at a time */
		cl_submit(&c0, (uint32_t)i + 1, &ref[i]);
		while (!ref[i].n_terms && cl_pump(&c0, ref, NJ))
			;
		T_CHECK(ref[i].n_done == 1 && ref[i].n_out == ref[i].max_tokens, "ref %d: done=%d out=%d err=%d", i,
			ref[i].n_done, ref[i].n_out, ref[i].err);
	}
	cl_close(&c0);
	double t0 = ts_now();

	static struct cl cs[8];
	memcpy(con, ref, sizeof(con));
	for (int i = 0; i < NJ; i++)
		con[i].n_out = con[i].n_terms = con[i].n_done = con[i].err = con[i].credit_used = 0;
	for (int k = 0; k < 8; k++)
		T_CHECK(cl_open(&cs[k], &tc_ok, 1) == 0, "connect %d", k);
	for (int i = 0; i < NJ; i++) /* connection i % 8, request id i + 1 */
		cl_submit(&cs[i % 8], (uint32_t)i + 1, &con[i]);
	/* read the 8 connections round-robin, so credit keeps flowing on each */
	for (int guard = 0; guard < 1000000 && !all_ended(con, NJ); guard++) {
		struct pollfd pf[8];
		for (int k = 0; k < 8; k++)
			pf[k] = (struct pollfd){.fd = cs[k].fd, .events = POLLIN};
		int buffered = 0;
		for (int k = 0; k < 8; k++)
			buffered |= cs[k].in_off < cs[k].in_len || tls_pending(&cs[k].s) > 0;
		poll(pf, 8, buffered ? 0 : 1000);
		for (int k = 0; k < 8; k++) {
			int open = 0;
			for (int i = k; i < NJ; i += 8)
				open |= !con[i].n_terms;
			if (open && (pf[k].revents || cs[k].in_off < cs[k].in_len || tls_pending(&cs[k].s)))
				cl_pump(&cs[k], con, NJ);
		}
	}
	fprintf(stderr, "64 streams over 8 connections: %.2f s\n", ts_now() - t0);
	int same = 0;
	for (int i = 0; i < NJ; i++) {
		int ok = con[i].n_terms == 1 && con[i].n_done == 1 && con[i].n_out == ref[i].n_out &&
			 !memcmp(con[i].out, ref[i].out, (size_t)ref[i].n_out * 4) &&
			 con[i].d.n_generated == (uint32_t)ref[i].n_out;
		same += ok;
		if (!ok)
			fprintf(stderr, "job %d: terms=%d out=%d ref=%d err=%d\n", i, con[i].n_terms, con[i].n_out,
				ref[i].n_out, con[i].err);
	}
	T_CHECK(same == NJ, "%d of %d concurrent streams equal their sequential reference", same, NJ);
	T_CHECK(blocks_back(&cs[0]), "blocks back after the concurrent run");
	uint64_t gen = 0;
	for (int i = 0; i < NJ; i++)
		gen += 2 * (uint64_t)ref[i].n_out;
	T_CHECK(cl_stat(&cs[0], PROTO_STAT_REQUESTS_ACCEPTED) == 2 * NJ, "STATS accepted");
	T_CHECK(cl_stat(&cs[0], PROTO_STAT_REQUESTS_DONE) == 2 * NJ, "STATS done");
	T_CHECK(cl_stat(&cs[0], PROTO_STAT_GENERATED_TOKENS) == gen, "STATS generated");
	T_CHECK(cl_stat(&cs[0], PROTO_STAT_CONNECTIONS) == 8, "STATS connections");
	T_CHECK(cl_stat(&cs[0], PROTO_STAT_STEPS) > 0 && cl_stat(&cs[0], PROTO_STAT_FRAMES_IN) > 2 * NJ, "STATS steps, frames");
	/* every transition of the request FSM is counted in STATS (keys 1000 + 8 * from + to) */
	for (int st = 0; st < REQ_STATE_N; st++)
		T_CHECK(!strcmp(proto_req_state_name(st), req_state_name((enum req_state)st)),
			"PROTOCOL.md state %d is %s, the scheduler's is %s", st, proto_req_state_name(st),
			req_state_name((enum req_state)st));
	uint64_t q2p = cl_stat(&cs[0], PROTO_STAT_TRANS + 8 * REQ_QUEUED + REQ_PREFILL);
	uint64_t p2d = cl_stat(&cs[0], PROTO_STAT_TRANS + 8 * REQ_PREFILL + REQ_DECODE);
	uint64_t d2x = cl_stat(&cs[0], PROTO_STAT_TRANS + 8 * REQ_DECODE + REQ_DONE);
	T_CHECK(q2p >= (uint64_t)(2 * NJ) && p2d >= (uint64_t)(2 * NJ) && d2x >= (uint64_t)(2 * NJ),
		"STATS transitions: QUEUED->PREFILL %llu, PREFILL->DECODE %llu, DECODE->DONE %llu (want >= %d each)",
		(unsigned long long)q2p, (unsigned long long)p2d, (unsigned long long)d2x, 2 * NJ);
	T_CHECK(cl_stat(&cs[0], PROTO_STAT_TRANS + 8 * REQ_DONE + REQ_QUEUED) == 0, "an illegal transition was counted");
	for (int k = 0; k < 8; k++)
		cl_close(&cs[k]);
}

static void test_session(void)
{
	struct cl c;
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect");
	static struct job j[2];
	memset(j, 0, sizeof(j));
	j[0].n_prompt = 40;
	for (int k = 0; k < 40; k++)
		j[0].prompt[k] = 100 + k;
	j[0].max_tokens = 8;
	j[0].sid = 0xabcdef12345ull;
	j[0].flags = PROTO_SUBMIT_HAS_SESSION | PROTO_SUBMIT_KEEP_SESSION;
	cl_submit(&c, 1, &j[0]);
	while (!j[0].n_terms && cl_pump(&c, j, 2))
		;
	T_CHECK(j[0].n_done == 1 && (j[0].done_flags & PROTO_DONE_SESSION_KEPT), "turn 1 kept (err %d)", j[0].err);
	/* turn 2: the whole conversation plus 5 new tokens */
	j[1] = j[0];
	j[1].n_out = j[1].n_terms = j[1].n_done = 0;
	memcpy(j[1].prompt + 40, j[0].out, 8 * 4);
	for (int k = 0; k < 5; k++)
		j[1].prompt[48 + k] = 500 + k;
	j[1].n_prompt = 53;
	j[1].flags = PROTO_SUBMIT_HAS_SESSION; /* not kept: the session ends with this turn */
	cl_submit(&c, 2, &j[1]);
	while (!j[1].n_terms && cl_pump(&c, j, 2))
		;
	T_CHECK(j[1].n_done == 1, "turn 2 done (err %d)", j[1].err);
	T_CHECK(j[1].d.n_prompt == 53 && j[1].d.n_cached >= 47 && j[1].d.n_prompt - j[1].d.n_cached <= 6,
		"turn 2: n_prompt=%u n_cached=%u (want >= 47: only the new tokens prefilled)", j[1].d.n_prompt,
		j[1].d.n_cached);
	T_CHECK(!(j[1].done_flags & PROTO_DONE_SESSION_KEPT), "turn 2 not kept");
	T_CHECK(blocks_back(&c), "blocks back after the session");
	cl_close(&c);
}

static void put_hdr(uint8_t *p, uint32_t len, uint16_t magic, uint8_t ver, uint8_t type, uint32_t flags, uint32_t rid);

static void test_cancel(void)
{
	struct cl c, d;
	static struct job j[2], k[1];
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect");
	T_CHECK(cl_open(&d, &tc_ok, 1) == 0, "connect");
	memset(j, 0, sizeof(j));
	memset(k, 0, sizeof(k));
	j[0] = ref[5], j[1] = ref[6];
	j[0].max_tokens = 400, j[0].n_out = j[0].n_terms = j[0].n_done = 0;
	j[1].n_out = j[1].n_terms = j[1].n_done = j[1].credit_used = 0;
	k[0] = ref[7];
	k[0].max_tokens = 400, k[0].n_out = k[0].n_terms = 0;
	cl_submit(&c, 1, &j[0]);
	cl_submit(&c, 2, &j[1]);
	cl_submit(&d, 1, &k[0]);
	while (j[0].n_out == 0 && cl_pump(&c, j, 2))
		;
	uint8_t b[64];
	int n = proto_encode_cancel(b, sizeof(b), 1);
	cl_raw(&c, b, (size_t)n);
	while (k[0].n_out == 0 && cl_pump(&d, k, 1))
		;
	cl_close(&d); /* disconnect mid-stream */
	while (!all_ended(j, 2) && cl_pump(&c, j, 2))
		;
	T_CHECK(j[0].n_terms == 1 && j[0].n_done == 1 && j[0].d.finish == PROTO_FINISH_CANCELLED,
		"cancelled: terms=%d finish=%u", j[0].n_terms, j[0].d.finish);
	T_CHECK(j[0].n_out < 400 && j[0].d.n_generated == (uint32_t)j[0].n_out, "cancel stopped it (%d tokens)",
		j[0].n_out);
	T_CHECK(j[1].n_done == 1 && j[1].n_out == ref[6].n_out && !memcmp(j[1].out, ref[6].out, (size_t)ref[6].n_out * 4),
		"the other stream is unaffected");
	T_CHECK(blocks_back(&c), "every block returns after cancel and disconnect");
	/* an unknown type naming a live request ends it: that ERROR is terminal */
	j[0] = ref[9];
	j[0].max_tokens = 400, j[0].n_out = j[0].n_terms = j[0].n_done = j[0].err = j[0].credit_used = 0;
	cl_submit(&c, 1, &j[0]);
	while (j[0].n_out == 0 && cl_pump(&c, j, 1))
		;
	put_hdr(b, 0, PROTO_MAGIC, 1, 200, 0, 1);
	cl_raw(&c, b, 16);
	while (!j[0].n_terms && cl_pump(&c, j, 1))
		;
	T_CHECK(j[0].err == PROTO_ERR_UNKNOWN_TYPE && j[0].n_out < 400, "unknown type ends the live request (%d)", j[0].err);
	T_CHECK(blocks_back(&c), "its blocks come back"); /* and cl_pump saw no TOKENS after the ERROR */
	T_CHECK(ping_ok(&c), "connection still serves");
	cl_close(&c);
}

struct bad {
	const char *what;
	uint8_t hdr[16 + 8];
	size_t n;
	int hello;         /* send after HELLO */
	uint32_t want;     /* ERROR code */
	uint32_t want_rid;
	int closes;
};

static void put_hdr(uint8_t *p, uint32_t len, uint16_t magic, uint8_t ver, uint8_t type, uint32_t flags, uint32_t rid)
{
	struct proto_hdr h = {len, magic, ver, type, flags, rid};
	proto_hdr_encode(p, &h);
}

/* Sends raw bytes and reads the answer: the ERROR code and id, and whether
 * the server closed afterwards (checked with a PING). */
static void expect(const char *what, int hello, const uint8_t *p, size_t n, uint32_t code, uint32_t rid, int closes)
{
	struct cl c;
	if (cl_open(&c, &tc_ok, hello) < 0) {
		T_CHECK(0, "%s: connect", what);
		return;
	}
	cl_raw(&c, p, n);
	struct proto_frame f;
	struct ts_err e = {0};
	int got = cl_next(&c, &f);
	T_CHECK(got && f.h.type == PROTO_ERROR, "%s: an ERROR (got type %d)", what, got ? f.h.type : -1);
	if (got && f.h.type == PROTO_ERROR) {
		struct proto_error er;
		proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e);
		T_CHECK(er.code == code && f.h.request_id == rid, "%s: code %u id %u, want %u id %u", what, er.code,
			f.h.request_id, code, rid);
	}
	if (closes) {
		T_CHECK(!cl_next(&c, &f), "%s: the server closes", what);
	} else {
		T_CHECK(ping_ok(&c), "%s: the connection stays open", what);
	}
	cl_close(&c);
}

static void test_malformed(void)
{
	uint8_t b[1024];
	put_hdr(b, 0, 0x1111, 1, PROTO_PING, 0, 0);
	expect("bad magic", 1, b, 16, PROTO_ERR_BAD_FRAME, 0, 1);
	put_hdr(b, 1u << 20, PROTO_MAGIC, 1, PROTO_SUBMIT, 0, 1);
	expect("oversize", 1, b, 16, PROTO_ERR_FRAME_TOO_LARGE, 0, 1);
	put_hdr(b, 0, PROTO_MAGIC, 2, PROTO_PING, 0, 0);
	expect("bad version", 1, b, 16, PROTO_ERR_UNSUPPORTED_VERSION, 0, 1);
	put_hdr(b, 4, PROTO_MAGIC, 1, 13, 0, 5);
	memset(b + 16, 0, 4);
	expect("unknown type", 1, b, 20, PROTO_ERR_UNKNOWN_TYPE, 5, 0);
	put_hdr(b, 0, PROTO_MAGIC, 1, PROTO_STATS, 0, 0);
	expect("frame before HELLO", 0, b, 16, PROTO_ERR_PROTOCOL, 0, 1);
	put_hdr(b, 0, PROTO_MAGIC, 1, PROTO_CANCEL, 0, 0);
	expect("CANCEL with id 0", 1, b, 16, PROTO_ERR_PROTOCOL, 0, 1);
	put_hdr(b, 4, PROTO_MAGIC, 1, PROTO_CREDIT, 0, 9);
	proto_put_u32(b + 16, 0);
	expect("CREDIT 0", 1, b, 20, PROTO_ERR_BAD_FIELD, 9, 0);
	put_hdr(b, 4, PROTO_MAGIC, 1, PROTO_PING, 0, 0);
	expect("short PING", 1, b, 20, PROTO_ERR_PROTOCOL, 0, 1);
	{ /* SUBMIT with a token id >= vocab, and one with NaN temperature */
		struct proto_submit_args a = {.max_tokens = 4, .priority = 1};
		int32_t pr[2] = {1, 0x7fffffff};
		samp_params_default(&a.samp);
		a.prompt = pr, a.n_prompt = 2;
		int n = proto_encode_submit(b, sizeof(b), 3, &a);
		expect("token id >= vocab", 1, b, (size_t)n, PROTO_ERR_BAD_FIELD, 3, 0);
		pr[1] = 2;
		a.samp.temperature = 0.0f / 0.0f;
		n = proto_encode_submit(b, sizeof(b), 4, &a);
		expect("NaN temperature", 1, b, (size_t)n, PROTO_ERR_BAD_FIELD, 4, 0);
		a.samp.temperature = 0;
		n = proto_encode_submit(b, sizeof(b), 4, &a);
		b[n++] = 0; /* trailing byte */
		proto_put_u32(b, proto_get_u32(b) + 1);
		expect("trailing byte", 1, b, (size_t)n, PROTO_ERR_BAD_FIELD, 4, 0);
		/* this model has no tokenizer and the server computes no logprobs */
		a.flags = PROTO_SUBMIT_WANT_LOGPROBS;
		n = proto_encode_submit(b, sizeof(b), 5, &a);
		expect("WANT_LOGPROBS", 1, b, (size_t)n, PROTO_ERR_UNSUPPORTED, 5, 0);
		a.flags = PROTO_SUBMIT_WANT_TEXT;
		n = proto_encode_submit(b, sizeof(b), 6, &a);
		expect("WANT_TEXT without a tokenizer", 1, b, (size_t)n, PROTO_ERR_UNSUPPORTED, 6, 0);
	}
	{ /* truncated: half a header, then gone */
		struct cl c;
		T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect");
		put_hdr(b, 0, PROTO_MAGIC, 1, PROTO_PING, 0, 0);
		cl_raw(&c, b, 7);
		cl_close(&c);
	}
	struct cl c;
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0 && ping_ok(&c), "the server still serves a new connection");
	T_CHECK(cl_stat(&c, PROTO_STAT_PROTOCOL_ERRORS) >= 5, "PROTOCOL_ERRORS counted");
	cl_close(&c);
}

static void test_other_ca(void)
{
	struct cl c;
	int ok = cl_open(&c, &tc_other, 1) == 0;
	T_CHECK(!ok, "a client certificate from another CA is refused");
	cl_close(&c);
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0 && ping_ok(&c), "and the server keeps serving");
	cl_close(&c);
}

/* A client that never grants more credit: ERROR STALLED after
 * credit_timeout_ms, its blocks come back. */
static void test_stall(void)
{
	struct cl c;
	static struct job j[1];
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect");
	j[0] = ref[3];
	j[0].max_tokens = 60, j[0].n_out = j[0].n_terms = j[0].n_done = j[0].err = 0;
	cl_submit(&c, 1, &j[0]);
	struct proto_frame f;
	double t0 = ts_now();
	while (!j[0].n_terms && cl_next(&c, &f)) { /* read without granting credit */
		if (f.h.type == PROTO_TOKENS)
			j[0].n_out += (int)proto_get_u32(f.payload);
		else if (f.h.type == PROTO_ERROR) {
			j[0].n_terms++;
			j[0].err = (int)proto_get_u32(f.payload);
		} else if (f.h.type == PROTO_DONE)
			j[0].n_terms++;
	}
	double dt = ts_now() - t0;
	T_CHECK(j[0].err == PROTO_ERR_STALLED && j[0].n_out == (int)c.w.initial_credit, "STALLED after %d tokens (err %d)",
		j[0].n_out, j[0].err);
	T_CHECK(dt * 1e3 >= c.w.credit_timeout_ms * 0.9 && dt < 10, "after credit_timeout_ms (%.2f s)", dt);
	T_CHECK(blocks_back(&c), "blocks back after STALLED");
	cl_close(&c);
}

/* A client that stops granting credit on one request: the engine pauses it
 * (its generated count stops at initial_credit while the other request runs
 * to its end), and resumes it when CREDIT comes. */
static void test_throttle(void)
{
	struct cl c;
	static struct job j[2];
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect");
	uint64_t g0 = cl_stat(&c, PROTO_STAT_GENERATED_TOKENS);
	j[0] = ref[5];
	j[0].no_credit = 1, j[0].max_tokens = 40, j[0].n_out = j[0].n_terms = j[0].n_done = j[0].err = 0;
	j[1] = ref[6];
	j[1].max_tokens = 30, j[1].n_out = j[1].n_terms = j[1].n_done = j[1].err = j[1].credit_used = 0;
	cl_submit(&c, 1, &j[0]);
	cl_submit(&c, 2, &j[1]);
	while (!j[1].n_terms && cl_pump(&c, j, 2))
		;
	T_CHECK(j[1].n_done == 1 && j[1].n_out == 30, "the other request runs to its end (%d tokens)", j[1].n_out);
	uint64_t g1 = cl_stat(&c, PROTO_STAT_GENERATED_TOKENS);
	usleep(300000);
	uint64_t g2 = cl_stat(&c, PROTO_STAT_GENERATED_TOKENS);
	uint64_t run = cl_stat(&c, PROTO_STAT_REQUESTS_RUNNING);
	T_CHECK(g1 - g0 == 30 + c.w.initial_credit && g2 == g1 && run == 0,
		"paused at its credit: generated %llu then %llu (want %u + 30, then no more), running %llu",
		(unsigned long long)(g1 - g0), (unsigned long long)(g2 - g0), c.w.initial_credit,
		(unsigned long long)run);
	T_CHECK(j[0].n_out == (int)c.w.initial_credit && !j[0].n_terms, "held request: %d tokens, %d terminal",
		j[0].n_out, j[0].n_terms);
	cl_credit(&c, 1, 100);
	while (!j[0].n_terms && cl_pump(&c, j, 2))
		;
	T_CHECK(j[0].n_done == 1 && j[0].n_out == 40, "resumed after CREDIT: %d tokens, err %d", j[0].n_out, j[0].err);
	T_CHECK(blocks_back(&c), "blocks back after the throttled request");
	cl_close(&c);
}

static void test_busy(void)
{
	static struct cl c[2];
	static struct job j[2][64];
	for (int k = 0; k < 2; k++) {
		T_CHECK(cl_open(&c[k], &tc_ok, 1) == 0, "connect");
		for (int i = 0; i < 64; i++) {
			j[k][i] = ref[i];
			j[k][i].max_tokens = 2, j[k][i].n_out = j[k][i].n_terms = j[k][i].n_done = 0;
			j[k][i].err = 0;
		}
	}
	for (int i = 0; i < 64; i++)
		for (int k = 0; k < 2; k++)
			cl_submit(&c[k], (uint32_t)i + 1, &j[k][i]);
	int busy = 0, done = 0, bad = 0;
	for (int k = 0; k < 2; k++) {
		while (!all_ended(j[k], 64) && cl_pump(&c[k], j[k], 64))
			;
		for (int i = 0; i < 64; i++) {
			busy += j[k][i].err == PROTO_ERR_BUSY;
			done += j[k][i].n_done;
			bad += j[k][i].n_terms != 1;
		}
	}
	T_CHECK(busy > 0 && done > 0 && busy + done == 128 && !bad, "busy=%d done=%d bad=%d", busy, done, bad);
	for (int k = 0; k < 2; k++)
		cl_close(&c[k]);
}

static void test_drain(struct serve *sv)
{
	struct cl c;
	static struct job j[6];
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect");
	for (int i = 0; i < 4; i++) {
		j[i] = ref[i];
		j[i].max_tokens = 30, j[i].n_out = j[i].n_terms = j[i].n_done = j[i].err = j[i].credit_used = 0;
		cl_submit(&c, (uint32_t)i + 1, &j[i]);
	}
	j[5] = ref[8]; /* no credit after the first tokens: still live at the drain deadline */
	j[5].no_credit = 1, j[5].max_tokens = 450, j[5].n_out = j[5].n_terms = j[5].n_done = j[5].err = j[5].credit_used = 0;
	cl_submit(&c, 6, &j[5]);
	while (j[0].n_out == 0 && cl_pump(&c, j, 6))
		;
	serve_drain(sv, 2000); /* < credit_timeout_ms */
	int goaway = 0, t;
	while ((t = cl_pump(&c, j, 6)) != 0) {
		if (t == PROTO_GOAWAY && !goaway) {
			goaway = 1;
			j[4] = ref[9];
			j[4].n_terms = j[4].n_out = 0;
			cl_submit(&c, 5, &j[4]);
		}
	}
	T_CHECK(goaway, "GOAWAY");
	for (int i = 0; i < 4; i++)
		T_CHECK(j[i].n_terms == 1 && j[i].n_done == 1 && j[i].n_out == 30, "in-flight %d: terms=%d out=%d", i,
			j[i].n_terms, j[i].n_out);
	T_CHECK(j[5].n_terms == 1 && j[5].err == PROTO_ERR_CANCELLED,
		"long request: one terminal (done=%d err=%d after %d tokens)", j[5].n_done, j[5].err, j[5].n_out);
	T_CHECK(j[4].n_terms == 1 && j[4].err == PROTO_ERR_DRAINING, "SUBMIT after GOAWAY: DRAINING (%d)", j[4].err);
	T_CHECK(c.eof, "the server closed the connection");
	cl_close(&c);
	serve_wait(sv);
	T_CHECK(1, "threads joined");
}

/* (9) a client that stops reading: with output_limit_bytes at 1 byte and a
 * small send and receive buffers its output blocks, each request's window of unsent
 * tokens fills and the rest waits in the connection's event ring
 * (serve_stash_count); once it reads again every token arrives, the same as
 * a reader that never paused gets, and each DONE counts them all. */
static void test_slow_reader(struct engine *en)
{
	struct serve *sv = NULL;
	struct ts_err e = {0};
	struct serve_opts so = {.listen = "127.0.0.1:0", .initial_credit = 100000, .credit_timeout_ms = 20000,
				.out_limit_bytes = 1, .sndbuf = 4096};
	if (serve_start(&sv, en, &so, &e) < 0) {
		T_CHECK(0, "serve: %s", e.msg);
		return;
	}
	port = serve_port(sv);
	enum { N = 8, MAXT = 400 }; /* 3200 tokens: past what the sockets hold, within the windows and the ring */
	static struct job slow[N], fast[N];
	for (int i = 0; i < N; i++) {
		slow[i] = ref[i];
		slow[i].max_tokens = MAXT, slow[i].samp = 0, slow[i].no_credit = 1;
		slow[i].n_out = slow[i].n_terms = slow[i].n_done = slow[i].err = slow[i].credit_used = 0;
		fast[i] = slow[i];
	}
	struct cl c, d;
	cl_rcvbuf = 2048;
	T_CHECK(cl_open(&c, &tc_ok, 1) == 0, "connect (slow)");
	cl_rcvbuf = 0;
	for (int i = 0; i < N; i++)
		cl_submit(&c, (uint32_t)i + 1, &slow[i]);
	double t0 = ts_now();
	while (serve_stash_count(sv) == 0 && ts_now() - t0 < 20) /* not reading */
		usleep(10000);
	uint64_t stashed = serve_stash_count(sv);
	while (!all_ended(slow, N) && cl_pump(&c, slow, N))
		;
	T_CHECK(cl_open(&d, &tc_ok, 1) == 0, "connect (fast)");
	for (int i = 0; i < N; i++)
		cl_submit(&d, (uint32_t)i + 1, &fast[i]);
	while (!all_ended(fast, N) && cl_pump(&d, fast, N))
		;
	int bad = 0;
	for (int i = 0; i < N; i++)
		bad += slow[i].n_done != 1 || slow[i].n_out != MAXT || (int)slow[i].d.n_generated != MAXT ||
		       fast[i].n_out != MAXT || memcmp(slow[i].out, fast[i].out, MAXT * sizeof(int32_t)) != 0;
	T_CHECK(stashed > 0 && bad == 0,
		"a reader that paused: its requests' windows filled (%llu events waited) and %d of %d requests came "
		"back whole (request 1: %d tokens, DONE n_generated %u)",
		(unsigned long long)stashed, N - bad, N, slow[0].n_out, slow[0].d.n_generated);
	printf("#> t_serve: a reader that paused (output limit 1 byte, SO_SNDBUF 4096, SO_RCVBUF 2048): %llu events waited for a "
	       "full window, then %d x %d tokens came back whole\n",
	       (unsigned long long)serve_stash_count(sv), N, MAXT);
	cl_close(&c);
	cl_close(&d);
	serve_drain(sv, 1000);
	serve_wait(sv);
}

int main(void)
{
	static struct engine en;
	struct ts_err e = {0};
	const char *dir = t_ckpt("llama3-mini");
	char tmpl[] = "/tmp/t_serve.XXXXXX", a[512], o[512], p1[600], p2[600], p3[600];
	T_CHECK(mkdtemp(tmpl) != NULL, "mkdtemp");
	snprintf(a, sizeof(a), "%s/a", tmpl);
	snprintf(o, sizeof(o), "%s/other", tmpl);
	T_CHECK(certs_make(a, 2, "localhost", &e) == 0, "certs: %s", e.msg);
	T_CHECK(certs_make(o, 2, "localhost", &e) == 0, "certs: %s", e.msg);

	struct cfg c;
	t_cfg(&c, dir);
	c.engine.kv_block_tokens = 16;
	if (engine_boot(&en, &c, &e) < 0) {
		fprintf(stderr, "boot: %s\n", e.msg);
		return 1;
	}
	struct serve *sv = NULL;
	struct serve_opts so = {.listen = "127.0.0.1:0", .initial_credit = 4, .credit_timeout_ms = 4000};
	T_CHECK(serve_start(&sv, &en, &so, &e) < 0 && strstr(e.msg, "tls_cert"), "no certificates: refused (%s)",
		e.msg);
	snprintf(en.cfg.server.tls_cert, sizeof(en.cfg.server.tls_cert), "%s/server.crt", a);
	snprintf(en.cfg.server.tls_key, sizeof(en.cfg.server.tls_key), "%s/server.key", a);
	snprintf(en.cfg.server.tls_ca, sizeof(en.cfg.server.tls_ca), "%s/ca.crt", a);
	if (serve_start(&sv, &en, &so, &e) < 0) {
		fprintf(stderr, "serve: %s\n", e.msg);
		return 1;
	}
	port = serve_port(sv);
	uint64_t allocs0 = ts_alloc_serving_count(); /* the serving threads' allocations: none from ready on */
	snprintf(p1, sizeof(p1), "%s/client.crt", a);
	snprintf(p2, sizeof(p2), "%s/client.key", a);
	snprintf(p3, sizeof(p3), "%s/ca.crt", a);
	T_CHECK(tls_config_client(&tc_ok, p1, p2, p3, "localhost", &e) == 0, "client tls: %s", e.msg);
	snprintf(p1, sizeof(p1), "%s/client.crt", o);
	snprintf(p2, sizeof(p2), "%s/client.key", o);
	T_CHECK(tls_config_client(&tc_other, p1, p2, p3, "localhost", &e) == 0, "client tls: %s", e.msg);

	double t0 = ts_now();
	test_concurrent();
	fprintf(stderr, "concurrent %.1fs\n", ts_now() - t0);
	test_malformed();
	test_other_ca();
	test_session();
	test_cancel();
	test_busy();
	test_throttle();
	test_stall();
	fprintf(stderr, "all but drain %.1fs\n", ts_now() - t0);
	test_drain(sv);
	T_CHECK(ts_alloc_serving_count() == allocs0,
		"the network and engine threads allocated %llu times from ready to their exit (every test above)",
		(unsigned long long)(ts_alloc_serving_count() - allocs0));
	test_slow_reader(&en);

	tls_config_free(&tc_ok);
	tls_config_free(&tc_other);
	engine_stop(&en);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpl);
	T_CHECK(system(cmd) == 0, "cleanup");
	return T_DONE();
}
