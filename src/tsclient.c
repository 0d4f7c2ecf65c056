/* tsclient: the client side of the TokenSpeed protocol. See tsclient.h. */
#include "tsclient.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define TSC_IN_BYTES  (64u << 10)
#define TSC_OUT_BYTES (64u << 10)

/* ---------------------------------------------------------------- errors */

/* Marks the connection dead (first reason wins) and returns -code. */
static int tsc_fail(struct tsc *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int tsc_fail(struct tsc *c, int code, const char *fmt, ...)
{
	if (!c->dead) {
		char m[900];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(m, sizeof(m), fmt, ap);
		va_end(ap);
		ts_errf(&c->err, code, "%s: %s", c->where, m);
		c->dead = 1;
	}
	return -code;
}

static int tsc_dead(struct tsc *c)
{
	return c->dead ? -E_IO : 0;
}

static void str_copy(char *dst, size_t cap, const struct proto_str *s)
{
	size_t n = s->len < cap - 1 ? s->len : cap - 1;
	memcpy(dst, s->s, n);
	dst[n] = 0;
}

/* ---------------------------------------------------------------- transport */

static int tsc_send_cb(void *ctx, const uint8_t *p, size_t n)
{
	struct tsc *c = ctx;
	ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
	if (w >= 0)
		return (int)w;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return TLS_WANT_IO;
	return -E_IO;
}

static int tsc_recv_cb(void *ctx, uint8_t *p, size_t n)
{
	struct tsc *c = ctx;
	ssize_t r = recv(c->fd, p, n, 0);
	if (r >= 0)
		return (int)r;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return TLS_WANT_IO;
	return -E_IO;
}

/* Waits for the socket: events POLLIN/POLLOUT. 1 ready, 0 timeout, < 0 dead. */
static int tsc_wait(struct tsc *c, short events, int timeout_ms)
{
	struct pollfd pfd = {.fd = c->fd, .events = events};
	int r;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return tsc_fail(c, E_IO, "poll: %s", strerror(errno));
	return r > 0;
}

/* Splits "host:port" / "[v6]:port". */
static int split_host_port(const char *hp, char *host, size_t host_cap, char *port, size_t port_cap, struct ts_err *e)
{
	const char *colon = strrchr(hp, ':');
	const char *h = hp;
	size_t hl;
	if (!colon || !colon[1])
		return ts_errf(e, E_INVAL, "server address \"%s\": expected HOST:PORT, e.g. localhost:7070", hp);
	hl = (size_t)(colon - hp);
	if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= host_cap || strlen(colon + 1) >= port_cap)
		return ts_errf(e, E_INVAL, "server address \"%s\": expected HOST:PORT, e.g. localhost:7070", hp);
	memcpy(host, h, hl);
	host[hl] = 0;
	snprintf(port, port_cap, "%s", colon + 1);
	return 0;
}

static int tcp_connect(struct tsc *c, const char *host, const char *port, double deadline)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
	int rc = getaddrinfo(host, port, &hints, &res);
	char why[256] = "no address";
	if (rc != 0)
		return tsc_fail(c, E_IO, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
	for (ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			snprintf(why, sizeof(why), "socket: %s", strerror(errno));
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			snprintf(why, sizeof(why), "%s", strerror(errno));
			close(fd);
			continue;
		}
		c->fd = fd;
		int left = (int)((deadline - ts_now()) * 1e3);
		int w = tsc_wait(c, POLLOUT, left > 0 ? left : 0);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (w < 0) {
			freeaddrinfo(res);
			return w;
		}
		if (w == 0)
			snprintf(why, sizeof(why), "timed out after %d ms", TSC_CONNECT_MS);
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0)
			snprintf(why, sizeof(why), "%s", strerror(soerr ? soerr : errno));
		else {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			freeaddrinfo(res);
			return 0;
		}
		close(fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	return tsc_fail(c, E_IO, "cannot connect: %s (is `tokenspeed serve` running there?)", why);
}

/* Hands queued output to TLS until it blocks. 0 or < 0 (dead). */
static int tsc_flush(struct tsc *c)
{
	while (c->out_pos < c->out_len) {
		size_t n = c->out_again ? c->out_again : c->out_len - c->out_pos;
		int w = tls_write(&c->tls, c->out + c->out_pos, n);
		if (w == TLS_AGAIN) {
			c->out_again = n;
			return 0;
		}
		if (w < 0)
			return tsc_fail(c, -w, "TLS write: %s", c->tls.err.msg);
		c->out_again = 0;
		c->out_pos += (size_t)w;
	}
	c->out_pos = c->out_len = 0;
	return 0;
}

/* Room for n more bytes at the end of the output buffer. */
static uint8_t *tsc_out_room(struct tsc *c, size_t n)
{
	if (c->out_pos > 0 && !c->out_again) {
		memmove(c->out, c->out + c->out_pos, c->out_len - c->out_pos);
		c->out_len -= c->out_pos;
		c->out_pos = 0;
	}
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : TSC_OUT_BYTES;
		while (cap < c->out_len + n)
			cap *= 2;
		uint8_t *p = ts_realloc(c->out, cap);
		if (!p)
			return NULL;
		c->out = p;
		c->out_cap = cap;
	}
	return c->out + c->out_len;
}

/* Queues one encoded frame of n bytes (n < 0: the encoder's error, passed on). */
static int tsc_queue(struct tsc *c, const uint8_t *frame, int n)
{
	uint8_t *dst;
	if (n < 0)
		return n;
	if (!(dst = tsc_out_room(c, (size_t)n)))
		return -E_NOMEM;
	memcpy(dst, frame, (size_t)n);
	c->out_len += (size_t)n;
	return 0;
}

/* ---------------------------------------------------------------- requests */

static struct tsc_slot *slot_find(struct tsc *c, uint32_t id)
{
	struct tsc_slot *s;
	if (id == 0 || !c->slots)
		return NULL;
	s = &c->slots[id & c->slot_mask];
	return s->id == id ? s : NULL;
}

static void slot_end(struct tsc *c, uint32_t id)
{
	struct tsc_slot *s = slot_find(c, id);
	if (s) {
		s->id = 0;
		c->n_live--;
	}
}

/* ---------------------------------------------------------------- frames in */

/* Turns one frame into an event. 1: *ev filled; 0: consumed silently; < 0 dead. */
static int tsc_frame(struct tsc *c, const struct proto_frame *f, struct tsc_event *ev)
{
	struct ts_err e = {0};
	uint32_t code = 0;
	const uint8_t *p = f->payload;
	uint32_t len = f->h.length;
	int rc;

	memset(ev, 0, sizeof(*ev));
	ev->t = ts_now();
	ev->req_id = f->h.request_id;
	if (proto_hdr_check(&f->h, PROTO_TO_CLIENT, &code, &e) < 0)
		return tsc_fail(c, E_FORMAT, "the server sent a bad frame: %s", e.msg);
	if (!c->open && f->h.type != PROTO_WELCOME && f->h.type != PROTO_ERROR)
		return tsc_fail(c, E_FORMAT, "the server sent %s before WELCOME", proto_type_name(f->h.type));

	switch ((enum proto_type)f->h.type) {
	case PROTO_WELCOME: {
		struct proto_welcome w;
		if (c->open)
			return tsc_fail(c, E_FORMAT, "the server sent a second WELCOME");
		if ((rc = proto_decode_welcome(p, len, f->h.flags, &w, &e)) < 0)
			return tsc_fail(c, E_FORMAT, "bad WELCOME: %s", e.msg);
		if (w.version < PROTO_VERSION_MIN || w.version > PROTO_VERSION)
			return tsc_fail(c, E_UNSUPPORTED, "the server chose protocol version %u; we speak %u..%u",
			                w.version, PROTO_VERSION_MIN, PROTO_VERSION);
		if (w.lim.max_frame > TSC_MAX_FRAME)
			return tsc_fail(c, E_FORMAT, "WELCOME's max_frame %u is above ours (%u)", w.lim.max_frame,
			                TSC_MAX_FRAME);
		c->version = w.version;
		c->max_requests = w.max_requests;
		c->initial_credit = w.initial_credit;
		c->credit_timeout_ms = w.credit_timeout_ms;
		c->ping_interval_ms = w.ping_interval_ms;
		c->idle_timeout_ms = w.idle_timeout_ms;
		c->welcome_flags = f->h.flags;
		c->lim = w.lim;
		str_copy(c->model, sizeof(c->model), &w.model);
		str_copy(c->arch, sizeof(c->arch), &w.arch);
		str_copy(c->checkpoint, sizeof(c->checkpoint), &w.checkpoint);
		str_copy(c->server, sizeof(c->server), &w.server);
		c->credit_step = TS_MAX(1u, c->initial_credit / 2);
		c->open = 1;
		ev->type = TSC_EV_WELCOME;
		return 1;
	}
	case PROTO_TOKENS: {
		struct proto_tokens t;
		struct tsc_slot *s = slot_find(c, f->h.request_id);
		if ((rc = proto_decode_tokens(p, len, f->h.flags, &c->lim, &t, &e)) < 0)
			return tsc_fail(c, E_FORMAT, "bad TOKENS for request %u: %s", f->h.request_id, e.msg);
		if (!s)
			return tsc_fail(c, E_FORMAT, "TOKENS for request %u, which is not live", f->h.request_id);
		proto_u32s_copy(&t.ids, c->ev_ids);
		ev->type = TSC_EV_TOKENS;
		ev->ids = c->ev_ids;
		ev->n_ids = t.ids.n;
		ev->text = (f->h.flags & PROTO_TOKENS_HAS_TEXT) ? t.text.s : NULL;
		ev->n_text = (f->h.flags & PROTO_TOKENS_HAS_TEXT) ? t.text.len : 0;
		s->received += t.ids.n;
		s->unacked += t.ids.n;
		if (s->unacked >= c->credit_step) {
			uint8_t fr[32];
			rc = tsc_queue(c, fr, proto_encode_credit(fr, sizeof(fr), s->id, s->unacked));
			if (rc < 0)
				return tsc_fail(c, -rc, "cannot queue CREDIT");
			c->n_credit_frames++;
			c->n_credit_tokens += s->unacked;
			s->unacked = 0;
		}
		return 1;
	}
	case PROTO_DONE:
		if ((rc = proto_decode_done(p, len, f->h.flags, &c->lim, &ev->done, &e)) < 0)
			return tsc_fail(c, E_FORMAT, "bad DONE for request %u: %s", f->h.request_id, e.msg);
		if (!slot_find(c, f->h.request_id))
			return tsc_fail(c, E_FORMAT, "DONE for request %u, which is not live", f->h.request_id);
		slot_end(c, f->h.request_id);
		ev->type = TSC_EV_DONE;
		return 1;
	case PROTO_ERROR: {
		struct proto_error er;
		const struct proto_err_info *info;
		if ((rc = proto_decode_error(p, len, f->h.flags, &er, &e)) < 0)
			return tsc_fail(c, E_FORMAT, "bad ERROR: %s", e.msg);
		ev->type = TSC_EV_ERROR;
		ev->code = er.code;
		ev->retryable = er.retryable;
		str_copy(ev->msg, sizeof(ev->msg), &er.msg);
		info = proto_err_info(er.code);
		if (f->h.request_id) {
			slot_end(c, f->h.request_id);
			return 1;
		}
		/* The connection's: before WELCOME, or one that closes, is fatal. */
		if (!c->open || (info && info->closes))
			tsc_fail(c, E_IO, "the server closed the connection: ERROR %s: %s", info ? info->name : "?",
			         ev->msg);
		return 1;
	}
	case PROTO_PING: {
		uint64_t v;
		if (proto_decode_ping(p, len, f->h.flags, &v, &e) < 0)
			return tsc_fail(c, E_FORMAT, "bad PING: %s", e.msg);
		uint8_t fr[32];
		rc = tsc_queue(c, fr, proto_encode_pong(fr, sizeof(fr), v));
		return rc < 0 ? tsc_fail(c, -rc, "cannot queue PONG") : 0;
	}
	case PROTO_PONG:
		if (proto_decode_ping(p, len, f->h.flags, &ev->pong, &e) < 0)
			return tsc_fail(c, E_FORMAT, "bad PONG: %s", e.msg);
		ev->type = TSC_EV_PONG;
		return 1;
	case PROTO_STATS: {
		struct proto_stats st;
		if (proto_decode_stats(p, len, f->h.flags, &st, &e) < 0)
			return tsc_fail(c, E_FORMAT, "bad STATS: %s", e.msg);
		for (uint32_t i = 0; i < st.n; i++)
			proto_stats_at(&st, i, &c->ev_stats[i]);
		ev->type = TSC_EV_STATS;
		ev->stats = c->ev_stats;
		ev->n_stats = st.n;
		return 1;
	}
	case PROTO_GOAWAY: {
		struct proto_goaway g;
		if (proto_decode_goaway(p, len, f->h.flags, &g, &e) < 0)
			return tsc_fail(c, E_FORMAT, "bad GOAWAY: %s", e.msg);
		c->goaway = 1;
		ev->type = TSC_EV_GOAWAY;
		ev->drain_ms = g.drain_ms;
		str_copy(ev->msg, sizeof(ev->msg), &g.msg);
		return 1;
	}
	case PROTO_HELLO:
	case PROTO_SUBMIT:
	case PROTO_CANCEL:
	case PROTO_CREDIT:
	case PROTO_TYPE_END:
		break;
	}
	return tsc_fail(c, E_FORMAT, "the server sent a %s frame, which a client never receives",
	                proto_type_name(f->h.type));
}

/* Frames from the buffered plaintext. 1 event, 0 input exhausted, < 0 dead. */
static int tsc_drain_input(struct tsc *c, struct tsc_event *ev)
{
	while (c->in_pos < c->in_len) {
		struct proto_frame f;
		struct ts_err e = {0};
		size_t used = 0;
		int rc = proto_reader_feed(&c->rd, c->in + c->in_pos, c->in_len - c->in_pos, &used, &f, &e);
		c->in_pos += used;
		if (rc < 0)
			return tsc_fail(c, E_FORMAT, "malformed frame from the server: %s", e.msg);
		if (rc == PROTO_AGAIN)
			break;
		int was_open = c->open;
		rc = tsc_frame(c, &f, ev);
		if (rc < 0)
			return rc;
		if (!was_open && c->open && proto_reader_limit(&c->rd, c->lim.max_frame, (uint8_t)c->version) < 0)
			return tsc_fail(c, E_INTERNAL, "cannot set the reader's limit to %u", c->lim.max_frame);
		if (rc > 0)
			return 1;
	}
	c->in_pos = c->in_len = 0;
	return 0;
}

/* One non-blocking TLS read into the input buffer. 1 bytes, 0 would block, < 0 dead. */
static int tsc_read_some(struct tsc *c)
{
	int r = tls_read(&c->tls, c->in, c->in_cap);
	if (r == TLS_AGAIN)
		return 0;
	if (r == 0)
		return tsc_fail(c, E_IO, "the server closed the connection");
	if (r < 0)
		return tsc_fail(c, -r, "TLS read: %s", c->tls.err.msg);
	c->in_pos = 0;
	c->in_len = (size_t)r;
	return 1;
}

int tsc_poll(struct tsc *c, int timeout_ms, struct tsc_event *ev)
{
	double deadline = ts_now() + timeout_ms / 1e3;
	int rc;
	for (;;) {
		if (c->dead)
			return -E_IO;
		if ((rc = tsc_drain_input(c, ev)) != 0)
			return rc < 0 ? rc : 1;
		if ((rc = tsc_flush(c)) < 0)
			return rc;
		if ((rc = tsc_read_some(c)) < 0)
			return rc;
		if (rc > 0)
			continue;
		short want = POLLIN;
		if (c->out_len > c->out_pos || tls_want(&c->tls) == TLS_WANT_WRITE)
			want |= POLLOUT;
		int left = -1;
		if (timeout_ms >= 0) {
			double ms = (deadline - ts_now()) * 1e3;
			left = ms > 0 ? (int)(ms + 0.999) : 0;
		}
		if ((rc = tsc_wait(c, want, left)) < 0)
			return rc;
		if (rc == 0)
			return 0;
	}
}

/* ---------------------------------------------------------------- connect */

int tsc_connect(struct tsc *c, const char *host_port, const struct tsc_tls *tls, struct ts_err *e)
{
	char host[256], port[32];
	double deadline = ts_now() + TSC_CONNECT_MS / 1e3;
	struct tsc_event ev;
	int rc;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	snprintf(c->where, sizeof(c->where), "%s", host_port ? host_port : "(null)");
	if ((rc = split_host_port(c->where, host, sizeof(host), port, sizeof(port), e)) < 0)
		return rc;
	if (tls->psk_identity) {
		uint8_t key[TLS_PSK_MAX_BYTES];
		int n = tls_psk_load(tls->psk_file ? tls->psk_file : "(no psk file)", key, sizeof(key), &c->err);
		rc = n < 0 ? n : tls_config_psk(&c->tls_cfg, TLS_CLIENT, tls->psk_identity, key, (size_t)n, &c->err);
		memset(key, 0, sizeof(key));
	} else {
		rc = tls_config_client(&c->tls_cfg, tls->cert, tls->key, tls->ca, tls->server_name ? tls->server_name : host,
				       &c->err);
	}
	if (rc < 0) {
		ts_errf(e, -rc, "%s: TLS setup: %s", c->where, c->err.msg);
		goto out_close;
	}
	c->have_tls_cfg = 1;

	c->rd_buf = ts_alloc(TSC_MAX_FRAME);
	c->in_cap = TSC_IN_BYTES;
	c->in = ts_alloc(c->in_cap);
	c->ev_ids = ts_alloc(TSC_MAX_FRAME);
	c->ev_stats = ts_alloc(sizeof(struct proto_stat) * PROTO_MAX_STATS);
	if (!c->rd_buf || !c->in || !c->ev_ids || !c->ev_stats) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory for the connection's buffers", c->where);
		goto out_close;
	}
	proto_reader_init(&c->rd, c->rd_buf, TSC_MAX_FRAME);

	if ((rc = tcp_connect(c, host, port, deadline)) < 0)
		goto out_err;
	if ((rc = tls_session_init(&c->tls, &c->tls_cfg, tsc_send_cb, tsc_recv_cb, c)) < 0) {
		rc = tsc_fail(c, -rc, "TLS session: %s", c->tls.err.msg);
		goto out_err;
	}
	c->have_tls = 1;
	for (;;) {
		rc = tls_handshake(&c->tls);
		if (rc == 0)
			break;
		if (rc != TLS_AGAIN) {
			rc = tsc_fail(c, -rc, "TLS handshake: %s", c->tls.err.msg);
			goto out_err;
		}
		int left = (int)((deadline - ts_now()) * 1e3);
		if (left <= 0) {
			rc = tsc_fail(c, E_IO, "TLS handshake timed out after %d ms", TSC_CONNECT_MS);
			goto out_err;
		}
		if ((rc = tsc_wait(c, tls_want(&c->tls) == TLS_WANT_WRITE ? POLLOUT : POLLIN, left)) < 0)
			goto out_err;
	}

	/* HELLO, then WELCOME (or ERROR) first. */
	struct proto_hello h = {.n_versions = 1,
	                        .versions = {PROTO_VERSION},
	                        .max_frame = TSC_MAX_FRAME,
	                        .client = {TSC_NAME, (uint32_t)strlen(TSC_NAME)}};
	uint8_t hb[PROTO_MIN_FRAME];
	if ((rc = tsc_queue(c, hb, proto_encode_hello(hb, sizeof(hb), &h))) < 0) {
		rc = tsc_fail(c, -rc, "cannot encode HELLO");
		goto out_err;
	}
	while (!c->open) {
		int left = (int)((deadline - ts_now()) * 1e3);
		if (left <= 0) {
			rc = tsc_fail(c, E_IO, "no WELCOME within %d ms", TSC_CONNECT_MS);
			goto out_err;
		}
		rc = tsc_poll(c, left, &ev);
		if (rc < 0)
			goto out_err;
		if (rc > 0 && ev.type == TSC_EV_ERROR) {
			rc = tsc_fail(c, E_IO, "the server refused HELLO: %s", ev.msg);
			goto out_err;
		}
	}
	/* Slots: a power of two with room to pick free ids. */
	uint32_t want = TS_MIN(c->max_requests, TSC_MAX_SLOTS), cap = 2;
	while (cap < 2 * want)
		cap *= 2;
	c->slots = ts_alloc(sizeof(*c->slots) * cap);
	if (!c->slots) {
		rc = tsc_fail(c, E_NOMEM, "out of memory for %u request slots", cap);
		goto out_err;
	}
	c->slot_mask = cap - 1;
	c->next_id = 1;
	return 0;

out_err:
	ts_errf(e, -rc, "%s", c->err.msg);
out_close:
	tsc_close(c);
	return rc;
}

/* ---------------------------------------------------------------- requests out */

int tsc_submit(struct tsc *c, const struct tsc_request *rq, uint32_t *req_id)
{
	struct proto_submit_args a = {0};
	struct proto_submit chk;
	struct ts_err e = {0};
	uint32_t id;
	uint8_t *buf;
	int n, rc;

	if ((rc = tsc_dead(c)) < 0)
		return rc;
	if (c->goaway)
		return ts_errf(&c->err, E_BUSY, "%s: the server is draining (GOAWAY): connect again", c->where);
	if (c->n_live >= TS_MIN(c->max_requests, TSC_MAX_SLOTS))
		return ts_errf(&c->err, E_BUSY, "%s: %u requests live already, the most this connection allows",
		               c->where, c->n_live);
	a.flags = (rq->session_id ? PROTO_SUBMIT_HAS_SESSION : 0) |
	          (rq->session_id && rq->keep_session ? PROTO_SUBMIT_KEEP_SESSION : 0) |
	          (rq->ignore_eos ? PROTO_SUBMIT_IGNORE_EOS : 0) | (rq->text ? PROTO_SUBMIT_TEXT_PROMPT : 0) |
	          (rq->msgs ? PROTO_SUBMIT_CHAT : 0) | (rq->want_text ? PROTO_SUBMIT_WANT_TEXT : 0);
	a.max_tokens = rq->max_tokens;
	a.priority = rq->priority;
	a.samp = rq->samp;
	a.session_id = rq->session_id;
	a.prompt = rq->prompt;
	a.n_prompt = rq->n_prompt;
	a.stop_ids = rq->stop_ids;
	a.n_stop_ids = rq->n_stop_ids;
	a.prompt_text = (struct proto_str){rq->text ? rq->text : "", rq->text ? rq->text_len : 0};
	a.stop_seqs = rq->stop_seqs;
	a.n_stop_seqs = rq->n_stop_seqs;
	a.msgs = rq->msgs;
	a.n_msgs = rq->n_msgs;

	/* A free id whose slot is free. */
	for (;;) {
		id = c->next_id++;
		if (c->next_id == 0)
			c->next_id = 1;
		if (id != 0 && c->slots[id & c->slot_mask].id == 0)
			break;
	}
	size_t need = 16 + 64 + 4 * (size_t)rq->n_prompt + 4 * (size_t)rq->n_stop_ids + 16 + a.prompt_text.len;
	for (uint32_t i = 0; i < rq->n_stop_seqs; i++)
		need += 4 + (size_t)rq->stop_seqs[i].len;
	for (uint32_t i = 0; rq->msgs && i < rq->n_msgs; i++)
		need += 8 + (size_t)rq->msgs[i].text.len;
	if (!(buf = tsc_out_room(c, need)))
		return ts_errf(&c->err, E_NOMEM, "%s: out of memory for a SUBMIT", c->where);
	n = proto_encode_submit(buf, TS_MIN(need, (size_t)c->lim.max_frame), id, &a);
	if (n < 0)
		return ts_errf(&c->err, E_INVAL, "%s: SUBMIT of %zu bytes does not fit the max frame %u (%s)", c->where,
		               need, c->lim.max_frame, ts_code_name(-n));
	/* Check it as the server will, so a bad field fails here, named. */
	if ((rc = proto_decode_submit(buf + PROTO_HDR_BYTES, (uint32_t)n - PROTO_HDR_BYTES, a.flags, &c->lim, &chk,
	                              &e)) < 0)
		return ts_errf(&c->err, E_INVAL, "%s: request refused before sending: %s", c->where, e.msg);
	c->out_len += (size_t)n;
	c->slots[id & c->slot_mask] = (struct tsc_slot){.id = id};
	c->n_live++;
	*req_id = id;
	return tsc_flush(c);
}

int tsc_cancel(struct tsc *c, uint32_t req_id)
{
	int rc;
	if ((rc = tsc_dead(c)) < 0)
		return rc;
	if (!slot_find(c, req_id))
		return 0; /* ended already: nothing to stop */
	uint8_t fr[32];
	if ((rc = tsc_queue(c, fr, proto_encode_cancel(fr, sizeof(fr), req_id))) < 0)
		return tsc_fail(c, -rc, "cannot queue CANCEL");
	return tsc_flush(c);
}

int tsc_ping(struct tsc *c, uint64_t value)
{
	int rc;
	if ((rc = tsc_dead(c)) < 0)
		return rc;
	uint8_t fr[32];
	if ((rc = tsc_queue(c, fr, proto_encode_ping(fr, sizeof(fr), value))) < 0)
		return tsc_fail(c, -rc, "cannot queue PING");
	return tsc_flush(c);
}

int tsc_stats(struct tsc *c)
{
	int rc;
	if ((rc = tsc_dead(c)) < 0)
		return rc;
	uint8_t fr[32];
	if ((rc = tsc_queue(c, fr, proto_encode_stats_req(fr, sizeof(fr)))) < 0)
		return tsc_fail(c, -rc, "cannot queue STATS");
	return tsc_flush(c);
}

void tsc_close(struct tsc *c)
{
	if (c->have_tls && !c->dead && c->fd >= 0) {
		double deadline = ts_now() + 1.0;
		/* Queued frames, then close_notify, each for at most a second. */
		while (c->out_pos < c->out_len && !c->dead && ts_now() < deadline) {
			if (tsc_flush(c) < 0 || tsc_wait(c, POLLOUT, 100) < 0)
				break;
		}
		while (!c->dead && ts_now() < deadline) {
			int rc = tls_close_notify(&c->tls);
			if (rc != TLS_AGAIN)
				break;
			if (tsc_wait(c, tls_want(&c->tls) == TLS_WANT_WRITE ? POLLOUT : POLLIN, 100) < 0)
				break;
		}
	}
	if (c->have_tls)
		tls_session_free(&c->tls);
	if (c->have_tls_cfg)
		tls_config_free(&c->tls_cfg);
	if (c->fd >= 0)
		close(c->fd);
	ts_free(c->rd_buf);
	ts_free(c->in);
	ts_free(c->out);
	ts_free(c->slots);
	ts_free(c->ev_ids);
	ts_free(c->ev_stats);
	c->have_tls = c->have_tls_cfg = 0;
	c->fd = -1;
	c->rd_buf = c->in = c->out = NULL;
	c->slots = NULL;
	c->ev_ids = NULL;
	c->ev_stats = NULL;
	c->dead = 1;
}

/* ---------------------------------------------------------------- bench math */

double tsc_percentile(const double *sorted, size_t n, double p)
{
	if (n == 0)
		return 0;
	if (p <= 0)
		return sorted[0];
	if (p >= 100)
		return sorted[n - 1];
	double rank = p / 100.0 * (double)(n - 1);
	size_t lo = (size_t)rank;
	double frac = rank - (double)lo;
	if (lo + 1 >= n)
		return sorted[n - 1];
	return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}
