/* t_tsclient: libtsclient against a scripted fake server, no engine.
 *
 * The fake server is a thread with a TCP listener on 127.0.0.1, a TLS server
 * session (src/tls.h, dev certificates from certs_make) over a non-blocking
 * socket, and src/proto.h for the frames. Its script:
 *   HELLO -> WELCOME (initial_credit 4)
 *   SUBMIT A (max_tokens 10) -> ten tokens in frames of 2, never beyond the
 *     credit granted, waiting for CREDIT -> DONE LENGTH
 *   SUBMIT B -> one TOKENS, then it expects CANCEL B -> DONE CANCELLED
 *   STATS -> two pairs; PING -> PONG
 *   SUBMIT C -> ERROR BUSY (retryable); GOAWAY; then EOF (close_notify).
 * Checked: connect and WELCOME's fields, event order, credit replenishment
 * (the server would stall without it), cancel, stats, ping, a request's
 * ERROR, GOAWAY, local refusal of a bad SUBMIT, errors that name the server
 * or the file, and the percentile math of tsctl bench.
 */
#include "../boot/certs.c"

#include "t.h"
#include "tls.h"
#include "tsclient.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <poll.h>

static char dir[64];
static char path_buf[8][256];
static int path_i;
static const char *path_in(const char *file)
{
	char *p = path_buf[path_i++ % 8];
	snprintf(p, 256, "%s/%s", dir, file);
	return p;
}

/* ------------------------------------------------------------ the fake server */

struct fake {
	int lfd, fd;
	uint16_t port;
	struct tls_config cfg;
	struct tls_session s;
	struct proto_reader rd;
	uint8_t rbuf[PROTO_MAX_FRAME / 16], in[16384];
	size_t in_pos, in_len;
	/* What it saw. */
	int ok; /* the script ran to its end */
	char fail[2048];
	uint32_t credit; /* request A's credit left */
	int n_credit_frames, n_credit_tokens, max_ahead, cancel_seen, stats_seen, ping_seen, eof;
	uint32_t id_a, id_b;
	uint64_t ping_value;
};

/* tls.h: callbacks must not block (they run under its mutex), so the fake
 * server's socket is non-blocking and it polls. */
static int fk_send(void *ctx, const uint8_t *p, size_t n)
{
	ssize_t r = send(*(int *)ctx, p, n, MSG_NOSIGNAL);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -1;
	return (int)r;
}

static int fk_recv(void *ctx, uint8_t *p, size_t n)
{
	ssize_t r = recv(*(int *)ctx, p, n, 0);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -1;
	return (int)r;
}

/* Waits until the socket is ready for what s wants; 0, or -1 after 5 s. */
static int fk_wait(struct fake *f)
{
	struct pollfd pfd = {.fd = f->fd, .events = tls_want(&f->s) == TLS_WANT_WRITE ? POLLOUT : POLLIN};
	return poll(&pfd, 1, 5000) == 1 ? 0 : -1;
}

static int fk_write(struct fake *f, const uint8_t *p, int n)
{
	int off = 0;
	if (n < 0)
		return -1;
	while (off < n) {
		int w = tls_write(&f->s, p + off, (size_t)(n - off));
		if (w == TLS_AGAIN && fk_wait(f) == 0)
			continue;
		if (w < 0)
			return -1;
		off += w;
	}
	return 0;
}

/* The next frame: 1, or 0 at EOF, or -1. Payload copied to pl (cap 4096). */
static int fk_read(struct fake *f, struct proto_hdr *h, uint8_t *pl)
{
	for (;;) {
		while (f->in_pos < f->in_len) {
			struct proto_frame fr;
			struct ts_err e = {0};
			size_t used = 0;
			int rc = proto_reader_feed(&f->rd, f->in + f->in_pos, f->in_len - f->in_pos, &used, &fr, &e);
			f->in_pos += used;
			if (rc < 0) {
				snprintf(f->fail, sizeof(f->fail), "reader: %s", e.msg);
				return -1;
			}
			if (rc == PROTO_FRAME) {
				*h = fr.h;
				if (fr.h.length > 4096)
					return -1;
				if (fr.h.length)
					memcpy(pl, fr.payload, fr.h.length);
				return 1;
			}
		}
		int r = tls_read(&f->s, f->in, sizeof(f->in));
		if (r == TLS_AGAIN && fk_wait(f) == 0)
			continue;
		if (r == 0)
			return 0;
		if (r < 0) {
			snprintf(f->fail, sizeof(f->fail), "tls_read: %s", f->s.err.msg);
			return -1;
		}
		f->in_pos = 0;
		f->in_len = (size_t)r;
	}
}

/* The next frame that is not a CREDIT; CREDITs for A add to its credit. */
static int fk_next(struct fake *f, struct proto_hdr *h, uint8_t *pl)
{
	for (;;) {
		int r = fk_read(f, h, pl);
		if (r <= 0 || h->type != PROTO_CREDIT)
			return r;
		uint32_t t = 0;
		struct ts_err e = {0};
		if (proto_decode_credit(pl, h->length, h->flags, &t, &e) < 0)
			return -1;
		f->n_credit_frames++;
		f->n_credit_tokens += (int)t;
		if (h->request_id == f->id_a)
			f->credit += t;
	}
}

static const struct proto_limits fk_lim = {
    .max_frame = 65536,
    .vocab = 1000,
    .max_seq_len = 256,
    .max_tokens = 100,
    .max_stop_ids = 8,
};

#define FK_EXPECT(cond, ...)                                                                                           \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			snprintf(f->fail, sizeof(f->fail), __VA_ARGS__);                                               \
			goto out;                                                                                      \
		}                                                                                                      \
	} while (0)

static void *fake_thread(void *arg)
{
	struct fake *f = arg;
	static uint8_t pl[4096], ob[65536];
	struct proto_hdr h;
	struct ts_err e = {0};
	int r;

	f->fd = accept(f->lfd, NULL, NULL);
	FK_EXPECT(f->fd >= 0, "accept: %s", strerror(errno));
	fcntl(f->fd, F_SETFL, O_NONBLOCK);
	FK_EXPECT(tls_session_init(&f->s, &f->cfg, fk_send, fk_recv, &f->fd) == 0, "tls init");
	while ((r = tls_handshake(&f->s)) == TLS_AGAIN)
		if (fk_wait(f) < 0)
			break;
	FK_EXPECT(r == 0, "handshake: %d %s", r, f->s.err.msg);
	proto_reader_init(&f->rd, f->rbuf, sizeof(f->rbuf));

	/* HELLO -> WELCOME */
	FK_EXPECT(fk_read(f, &h, pl) == 1 && h.type == PROTO_HELLO, "no HELLO");
	struct proto_hello hello;
	FK_EXPECT(proto_decode_hello(pl, h.length, h.flags, &hello, &e) == 0, "HELLO: %s", e.msg);
	struct proto_welcome w = {.version = 1,
	                          .max_requests = 8,
	                          .initial_credit = 4,
	                          .credit_timeout_ms = 5000,
	                          .ping_interval_ms = 30000,
	                          .idle_timeout_ms = 75000,
	                          .lim = fk_lim,
	                          .model = {"fake-model", 10},
	                          .arch = {"LlamaForCausalLM", 16},
	                          .checkpoint = {"abc123", 6},
	                          .server = {"fake 0", 6}};
	w.lim.max_frame = TS_MIN(hello.max_frame, fk_lim.max_frame);
	FK_EXPECT(fk_write(f, ob, proto_encode_welcome(ob, sizeof(ob), &w)) == 0, "WELCOME");
	proto_reader_limit(&f->rd, w.lim.max_frame, 1);

	/* SUBMIT A: ten tokens, two per frame, within credit. */
	struct proto_submit sub;
	FK_EXPECT(fk_next(f, &h, pl) == 1 && h.type == PROTO_SUBMIT, "no SUBMIT A (type %u)", h.type);
	FK_EXPECT(proto_decode_submit(pl, h.length, h.flags, &w.lim, &sub, &e) == 0, "SUBMIT A: %s", e.msg);
	FK_EXPECT(sub.max_tokens == 10 && sub.prompt.n == 3 && sub.samp.seed == 42 && sub.priority == 1,
	          "SUBMIT A fields");
	FK_EXPECT(sub.flags == (PROTO_SUBMIT_HAS_SESSION | PROTO_SUBMIT_KEEP_SESSION) && sub.session_id == 77,
	          "SUBMIT A session flags %u", sub.flags);
	f->id_a = h.request_id;
	f->credit = w.initial_credit;
	for (int sent = 0; sent < 10;) {
		while (f->credit < 2) {
			/* Wait for CREDIT: any other frame here is a failure. */
			r = fk_read(f, &h, pl);
			FK_EXPECT(r == 1 && h.type == PROTO_CREDIT && h.request_id == f->id_a,
			          "stalled at %d tokens: no CREDIT (r %d type %u)", sent, r, h.type);
			uint32_t t = 0;
			FK_EXPECT(proto_decode_credit(pl, h.length, h.flags, &t, &e) == 0, "CREDIT: %s", e.msg);
			f->credit += t;
			f->n_credit_frames++;
			f->n_credit_tokens += (int)t;
		}
		int32_t ids[2] = {100 + sent, 101 + sent};
		struct proto_tokens_args ta = {.ids = ids, .n = 2};
		FK_EXPECT(fk_write(f, ob, proto_encode_tokens(ob, sizeof(ob), f->id_a, &ta)) == 0, "TOKENS");
		f->credit -= 2;
		sent += 2;
	}
	struct proto_done d = {.finish = PROTO_FINISH_LENGTH,
	                       .n_prompt = 3,
	                       .n_cached = 1,
	                       .n_generated = 10,
	                       .queue_us = 5,
	                       .ttft_us = 1000,
	                       .decode_us = 9000};
	FK_EXPECT(fk_write(f, ob, proto_encode_done(ob, sizeof(ob), f->id_a, &d)) == 0, "DONE A");

	/* SUBMIT B, one token, then CANCEL. */
	FK_EXPECT(fk_next(f, &h, pl) == 1 && h.type == PROTO_SUBMIT, "no SUBMIT B (type %u)", h.type);
	f->id_b = h.request_id;
	int32_t one = 7;
	struct proto_tokens_args tb = {.ids = &one, .n = 1};
	FK_EXPECT(fk_write(f, ob, proto_encode_tokens(ob, sizeof(ob), f->id_b, &tb)) == 0, "TOKENS B");
	FK_EXPECT(fk_next(f, &h, pl) == 1 && h.type == PROTO_CANCEL && h.request_id == f->id_b, "no CANCEL B (type %u)",
	          h.type);
	f->cancel_seen = 1;
	struct proto_done dc = {.finish = PROTO_FINISH_CANCELLED, .n_prompt = 2, .n_generated = 1};
	FK_EXPECT(fk_write(f, ob, proto_encode_done(ob, sizeof(ob), f->id_b, &dc)) == 0, "DONE B");

	/* STATS, PING. */
	FK_EXPECT(fk_next(f, &h, pl) == 1 && h.type == PROTO_STATS, "no STATS (type %u)", h.type);
	f->stats_seen = 1;
	struct proto_stat kv[2] = {{PROTO_STAT_UPTIME_MS, 1234}, {PROTO_STAT_GENERATED_TOKENS, 11}};
	FK_EXPECT(fk_write(f, ob, proto_encode_stats(ob, sizeof(ob), kv, 2)) == 0, "STATS reply");
	FK_EXPECT(fk_next(f, &h, pl) == 1 && h.type == PROTO_PING, "no PING (type %u)", h.type);
	FK_EXPECT(proto_decode_ping(pl, h.length, h.flags, &f->ping_value, &e) == 0, "PING: %s", e.msg);
	f->ping_seen = 1;
	FK_EXPECT(fk_write(f, ob, proto_encode_pong(ob, sizeof(ob), f->ping_value)) == 0, "PONG");

	/* SUBMIT C -> ERROR BUSY (its terminal frame); then GOAWAY. */
	FK_EXPECT(fk_next(f, &h, pl) == 1 && h.type == PROTO_SUBMIT, "no SUBMIT C (type %u)", h.type);
	FK_EXPECT(fk_write(f, ob, proto_encode_error(ob, sizeof(ob), h.request_id, PROTO_ERR_BUSY, "queue full")) == 0,
	          "ERROR C");
	FK_EXPECT(fk_write(f, ob, proto_encode_goaway(ob, sizeof(ob), 250, "restart")) == 0, "GOAWAY");

	/* The client closes. */
	f->eof = fk_next(f, &h, pl) == 0;
	f->ok = 1;
out:
	tls_session_free(&f->s);
	if (f->fd >= 0)
		close(f->fd);
	return NULL;
}

static int fake_listen(struct fake *f)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(f->lfd, 4) < 0 ||
	    getsockname(f->lfd, (struct sockaddr *)&a, &al) < 0)
		return -1;
	f->port = ntohs(a.sin_port);
	return 0;
}

/* ------------------------------------------------------------ the client against it */

static void test_conversation(void)
{
	static struct fake f;
	struct ts_err e = {0};
	pthread_t th;
	memset(&f, 0, sizeof(f));
	f.fd = -1;
	T_CHECK(tls_config_server(&f.cfg, path_in("server.crt"), path_in("server.key"), path_in("ca.crt"), &e) == 0,
	        "server config: %s", e.msg);
	T_CHECK(fake_listen(&f) == 0, "listen: %s", strerror(errno));
	T_CHECK(pthread_create(&th, NULL, fake_thread, &f) == 0, "pthread_create");

	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", f.port);
	struct tsc_tls tl = {path_in("ca.crt"), path_in("client.crt"), path_in("client.key"), "localhost", NULL, NULL};
	static struct tsc c;
	int rc = tsc_connect(&c, hp, &tl, &e);
	T_CHECK(rc == 0, "connect: %s / fake: %s", e.msg, f.fail);
	if (rc < 0) {
		shutdown(f.lfd, SHUT_RDWR);
		pthread_join(th, NULL);
		return;
	}
	T_CHECK(c.version == 1 && c.max_requests == 8 && c.initial_credit == 4, "welcome %u %u %u", c.version,
	        c.max_requests, c.initial_credit);
	T_CHECK(c.lim.vocab == 1000 && c.lim.max_seq_len == 256 && c.lim.max_frame == 65536, "limits");
	T_CHECK(strcmp(c.model, "fake-model") == 0 && strcmp(c.arch, "LlamaForCausalLM") == 0 &&
	            strcmp(c.checkpoint, "abc123") == 0 && strcmp(c.server, "fake 0") == 0,
	        "identity %s %s %s %s", c.model, c.arch, c.checkpoint, c.server);

	/* A bad SUBMIT is refused here, naming the field; the connection lives on. */
	int32_t bad[2] = {5, 5000};
	struct tsc_request rq = {.prompt = bad, .n_prompt = 2, .max_tokens = 4};
	samp_params_default(&rq.samp);
	uint32_t id = 0;
	rc = tsc_submit(&c, &rq, &id);
	T_CHECK(rc == -E_INVAL, "token 5000 >= vocab 1000 accepted: %d", rc);
	T_HAS(c.err.msg, "127.0.0.1");
	T_HAS(c.err.msg, "vocab");
	T_CHECK(!c.dead && c.n_live == 0, "a refused submit killed the connection");

	/* A: ten tokens in order, then DONE; credit flows. */
	int32_t prompt[3] = {1, 2, 3};
	rq = (struct tsc_request){
	    .prompt = prompt, .n_prompt = 3, .max_tokens = 10, .priority = 1, .session_id = 77, .keep_session = 1};
	samp_params_default(&rq.samp);
	rq.samp.seed = 42;
	uint32_t id_a = 0;
	T_CHECK(tsc_submit(&c, &rq, &id_a) == 0 && id_a != 0, "submit A: %s", c.err.msg);
	int32_t got[16];
	int n_got = 0, n_ev = 0, order_ok = 1, done = 0;
	struct tsc_event ev;
	while (!done && (rc = tsc_poll(&c, 5000, &ev)) == 1) {
		n_ev++;
		if (ev.req_id != id_a)
			order_ok = 0;
		if (ev.type == TSC_EV_TOKENS) {
			for (uint32_t i = 0; i < ev.n_ids && n_got < 16; i++)
				got[n_got++] = ev.ids[i];
		} else if (ev.type == TSC_EV_DONE) {
			done = 1;
			T_CHECK(ev.done.finish == PROTO_FINISH_LENGTH && ev.done.n_generated == 10 &&
			            ev.done.n_cached == 1 && ev.done.ttft_us == 1000 && ev.done.decode_us == 9000,
			        "DONE fields");
		} else
			order_ok = 0;
	}
	T_CHECK(done, "no DONE for A: rc %d %s / fake: %s", rc, c.err.msg, f.fail);
	T_CHECK(order_ok && n_ev == 6, "events: %d, order ok %d", n_ev, order_ok);
	T_CHECK(n_got == 10, "tokens: %d", n_got);
	int seq = 1;
	for (int i = 0; i < n_got; i++)
		seq &= got[i] == 100 + i;
	T_CHECK(seq, "token ids out of order");
	T_CHECK(c.n_live == 0, "A still live");
	T_CHECK(c.n_credit_tokens == 10 && c.n_credit_frames == 5, "credit sent: %llu tokens in %llu frames",
	        (unsigned long long)c.n_credit_tokens, (unsigned long long)c.n_credit_frames);

	/* B: cancel after submit -> TOKENS may come, then DONE CANCELLED. */
	uint32_t id_b = 0;
	rq.session_id = 0;
	rq.keep_session = 0;
	T_CHECK(tsc_submit(&c, &rq, &id_b) == 0 && id_b != id_a, "submit B: %s", c.err.msg);
	rc = tsc_poll(&c, 5000, &ev);
	T_CHECK(rc == 1 && ev.type == TSC_EV_TOKENS && ev.req_id == id_b && ev.n_ids == 1 && ev.ids[0] == 7,
	        "B's token: rc %d type %d", rc, ev.type);
	T_CHECK(tsc_cancel(&c, id_b) == 0, "cancel: %s", c.err.msg);
	rc = tsc_poll(&c, 5000, &ev);
	T_CHECK(rc == 1 && ev.type == TSC_EV_DONE && ev.req_id == id_b && ev.done.finish == PROTO_FINISH_CANCELLED,
	        "B's DONE: rc %d type %d finish %u", rc, ev.type, ev.done.finish);
	T_CHECK(tsc_cancel(&c, id_b) == 0, "a CANCEL after DONE is a no-op");

	/* STATS and PING. */
	T_CHECK(tsc_stats(&c) == 0, "stats");
	rc = tsc_poll(&c, 5000, &ev);
	T_CHECK(rc == 1 && ev.type == TSC_EV_STATS && ev.n_stats == 2 && ev.stats[0].key == PROTO_STAT_UPTIME_MS &&
	            ev.stats[0].value == 1234 && ev.stats[1].value == 11,
	        "STATS event: rc %d type %d", rc, ev.type);
	T_CHECK(tsc_ping(&c, 0x1122334455667788ull) == 0, "ping");
	rc = tsc_poll(&c, 5000, &ev);
	T_CHECK(rc == 1 && ev.type == TSC_EV_PONG && ev.pong == 0x1122334455667788ull, "PONG: rc %d", rc);
	/* C: refused with a retryable ERROR, then the server drains. */
	uint32_t id_c = 0;
	T_CHECK(tsc_submit(&c, &rq, &id_c) == 0, "submit C: %s", c.err.msg);
	rc = tsc_poll(&c, 5000, &ev);
	T_CHECK(rc == 1 && ev.type == TSC_EV_ERROR && ev.req_id == id_c && ev.code == PROTO_ERR_BUSY && ev.retryable,
	        "C's ERROR: rc %d type %d code %u", rc, ev.type, ev.code);
	T_HAS(ev.msg, "queue full");
	T_CHECK(c.n_live == 0 && !c.dead, "an ERROR for a request ends only that request");
	rc = tsc_poll(&c, 5000, &ev);
	T_CHECK(rc == 1 && ev.type == TSC_EV_GOAWAY && ev.drain_ms == 250, "GOAWAY: rc %d type %d", rc, ev.type);
	T_HAS(ev.msg, "restart");
	T_CHECK(tsc_submit(&c, &rq, &id_c) == -E_BUSY, "submit after GOAWAY accepted");
	T_HAS(c.err.msg, "GOAWAY");

	/* Nothing more: a short poll times out. */
	T_CHECK(tsc_poll(&c, 50, &ev) == 0, "spurious event");
	T_CHECK(tsc_poll(&c, 0, &ev) == 0, "spurious event (timeout 0)");
	tsc_close(&c);

	pthread_join(th, NULL);
	T_CHECK(f.ok, "fake server: %s", f.fail);
	T_CHECK(f.cancel_seen && f.stats_seen && f.ping_seen && f.eof,
	        "fake server saw cancel %d stats %d ping %d eof %d", f.cancel_seen, f.stats_seen, f.ping_seen, f.eof);
	T_CHECK(f.n_credit_tokens == 10, "server got %d credit tokens", f.n_credit_tokens);
	close(f.lfd);
	tls_config_free(&f.cfg);
}

/* Errors name the server or the file. */
static void test_errors(void)
{
	struct ts_err e = {0};
	struct tsc c;
	struct tsc_tls tl = {path_in("ca.crt"), path_in("client.crt"), path_in("client.key"), "localhost", NULL, NULL};

	/* A port nobody listens on. */
	struct fake f = {0};
	T_CHECK(fake_listen(&f) == 0, "listen");
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", f.port);
	close(f.lfd);
	int rc = tsc_connect(&c, hp, &tl, &e);
	T_CHECK(rc == -E_IO, "connect to a closed port: %d", rc);
	T_HAS(e.msg, hp);
	T_HAS(e.msg, "refused");

	/* A missing CA file. */
	struct tsc_tls bad = tl;
	bad.ca = "/nonexistent/ca.crt";
	rc = tsc_connect(&c, hp, &bad, &e);
	T_CHECK(rc < 0, "missing CA accepted");
	T_HAS(e.msg, "/nonexistent/ca.crt");

	/* Not HOST:PORT. */
	rc = tsc_connect(&c, "localhost", &tl, &e);
	T_CHECK(rc == -E_INVAL, "no port accepted: %d", rc);
	T_HAS(e.msg, "HOST:PORT");
}

/* ------------------------------------------------------------ percentiles */

static void test_percentile(void)
{
	double one[1] = {7};
	double v[5] = {1, 2, 3, 4, 5};
	double w[4] = {10, 20, 30, 40};
	T_CHECK(tsc_percentile(NULL, 0, 50) == 0, "empty");
	T_CHECK(tsc_percentile(one, 1, 99) == 7, "one");
	T_CHECK(tsc_percentile(v, 5, 50) == 3, "p50 of 1..5");
	T_CHECK(tsc_percentile(v, 5, 0) == 1 && tsc_percentile(v, 5, 100) == 5, "ends");
	T_CHECK(fabs(tsc_percentile(v, 5, 90) - 4.6) < 1e-12, "p90 of 1..5: %g", tsc_percentile(v, 5, 90));
	T_CHECK(fabs(tsc_percentile(v, 5, 99) - 4.96) < 1e-12, "p99 of 1..5: %g", tsc_percentile(v, 5, 99));
	T_CHECK(fabs(tsc_percentile(w, 4, 50) - 25) < 1e-12, "p50 of 10..40: %g", tsc_percentile(w, 4, 50));
	T_CHECK(fabs(tsc_percentile(w, 4, 90) - 37) < 1e-12, "p90 of 10..40: %g", tsc_percentile(w, 4, 90));
}

int main(void)
{
	struct ts_err e = {0};
	snprintf(dir, sizeof(dir), "/tmp/t_tsclient.XXXXXX");
	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	rmdir(dir); /* certs_make creates it */
	T_CHECK(certs_make(dir, 30, NULL, &e) == 0, "certs: %s", e.msg);
	test_percentile();
	test_conversation();
	test_errors();
	for (size_t i = 0; i < TS_ARRAY_LEN(certs_files); i++)
		unlink(path_in(certs_files[i]));
	rmdir(dir);
	return T_DONE();
}
