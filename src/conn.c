/* conn: a connection's transport (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

/* ------------------------------------------------------------ the machine */

#define CONN_NAME(n) #n,
static const char *const state_names[CONN_STATE_N] = {CONN_STATES(CONN_NAME)};
#undef CONN_NAME

const char *conn_state_name(enum conn_state s)
{
	return (unsigned)s < CONN_STATE_N ? state_names[s] : "?";
}

#define B(s) (1u << CONN_##s)
/* Legal successors of each state. Before OPEN nothing of the connection is in
 * the engine, so it may go straight back to FREE (timed out, evicted, gone). */
static const uint32_t next_ok[CONN_STATE_N] = {
	[CONN_FREE] = B(HANDSHAKE),
	[CONN_HANDSHAKE] = B(HELLO) | B(FREE),
	[CONN_HELLO] = B(OPEN) | B(CLOSING) | B(FREE),
	[CONN_OPEN] = B(CLOSING) | B(DEAD),
	[CONN_CLOSING] = B(DEAD),
	[CONN_DEAD] = B(FREE),
};
#undef B

int conn_set_state(struct conn *c, enum conn_state to, double now)
{
	if (NEVER(!(next_ok[c->st] & (1u << to)))) {
		log_msg(LOG_ERROR, "conn: illegal transition %s -> %s (%s)", conn_state_name(c->st),
			conn_state_name(to), c->peer.text);
		return -E_INTERNAL;
	}
	c->st = to;
	c->t_state = now;
	if (to == CONN_OPEN)
		c->t_rx = now, c->t_ping = 0;
	return 0;
}

static double min_due(double a, double b)
{
	return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

enum conn_due conn_timer(const struct conn *c, const struct conn_limits *l, double now, double *next)
{
	double d, ping;
	*next = 0;
	switch (c->st) {
	case CONN_FREE:
	case CONN_DEAD:
		return CONN_DUE_NONE;
	case CONN_HANDSHAKE:
	case CONN_HELLO:
		d = c->t_state + (c->st == CONN_HANDSHAKE ? l->handshake_s : l->hello_s);
		if (now >= d)
			return CONN_DUE_EXPIRED;
		*next = d;
		return CONN_DUE_NONE;
	case CONN_OPEN:
		d = c->t_rx + l->idle_s;
		if (now >= d)
			return CONN_DUE_IDLE;
		/* the first PING after ping_s of silence, then one each ping_s */
		ping = (c->t_ping > c->t_rx ? c->t_ping : c->t_rx) + l->ping_s;
		if (now >= ping)
			return CONN_DUE_PING;
		*next = min_due(d, ping);
		return CONN_DUE_NONE;
	case CONN_CLOSING:
		d = c->t_state + CONN_LINGER_S;
		if (now >= d)
			return CONN_DUE_LINGER;
		*next = d;
		return CONN_DUE_NONE;
	case CONN_STATE_N:
		break;
	}
	return CONN_DUE_NONE;
}

int conn_peer_same(const struct conn_peer *a, const struct conn_peer *b)
{
	return a->len == b->len && memcmp(a->addr, b->addr, a->len) == 0;
}

int conn_evictable(const struct conn *c)
{
	return c->st == CONN_HANDSHAKE || c->st == CONN_HELLO;
}

int conn_evict_before(const struct conn *a, const struct conn *b)
{
	if (a->st != b->st)
		return a->st == CONN_HANDSHAKE;
	return a->seq < b->seq;
}

static int conn_reading(const struct conn *c)
{
	return c->st == CONN_HELLO || c->st == CONN_OPEN;
}

enum conn_read_result conn_read(struct conn *c, size_t out_limit, double now,
				void (*frame)(void *ctx, struct conn *c, const struct proto_frame *f), void *ctx,
				struct ts_err *e)
{
	static uint8_t buf[16384]; /* the network thread's: decrypted bytes live here only until fed */
	if (c->st == CONN_HANDSHAKE) {
		int rc = conn_io_handshake(&c->io);
		if (rc == TLS_AGAIN)
			return CONN_READ_AGAIN;
		if (rc < 0)
			return CONN_READ_REFUSED;
		conn_set_state(c, CONN_HELLO, now);
	}
	size_t taken = 0;
	while (conn_reading(c) && conn_io_unsent(&c->io) < out_limit) {
		if (taken >= CONN_READ_TURN_BYTES)
			return CONN_READ_MORE;
		int r = conn_io_read(&c->io, buf, sizeof(buf));
		if (r == TLS_AGAIN)
			return CONN_READ_AGAIN;
		if (r <= 0)
			return CONN_READ_EOF;
		size_t off = 0;
		while (off < (size_t)r && conn_reading(c)) {
			struct proto_frame f;
			size_t used = 0;
			int fr = proto_reader_feed(&c->io.rd, buf + off, (size_t)r - off, &used, &f, e);
			off += used;
			if (fr < 0)
				return CONN_READ_BAD;
			if (fr == PROTO_FRAME) {
				c->t_rx = now; /* a whole frame: the idle clock starts again */
				frame(ctx, c, &f);
			} else if (used == 0) {
				break;
			}
		}
		taken += (size_t)r;
	}
	return conn_reading(c) ? CONN_READ_FULL : CONN_READ_AGAIN;
}

int conn_write(struct conn *c)
{
	if (c->st != CONN_HELLO && c->st != CONN_OPEN && c->st != CONN_CLOSING)
		return 0;
	int rc = conn_io_flush(&c->io);
	if (rc < 0)
		return rc;
	return c->st == CONN_CLOSING && !conn_io_unsent(&c->io);
}

uint32_t conn_want(const struct conn *c, int paused)
{
	switch (c->st) {
	case CONN_FREE:
	case CONN_DEAD:
	case CONN_STATE_N:
		return 0;
	case CONN_HANDSHAKE:
		return tls_want(&c->io.tls) == TLS_WANT_WRITE ? EPOLLOUT : EPOLLIN;
	case CONN_HELLO:
	case CONN_OPEN:
		return conn_io_events(&c->io, !paused);
	case CONN_CLOSING:
		return conn_io_events(&c->io, 0);
	}
	return 0;
}

/* ------------------------------------------------------------ transport */
#include "fault.h"

static int cb_send(void *ctx, const uint8_t *p, size_t n)
{
	struct conn_io *c = ctx;
	ssize_t w = FAULT_ERRNO(FAULT_SOCK, ECONNRESET) ? -1 : send(c->fd, p, n, MSG_NOSIGNAL);
	if (w >= 0)
		return (int)w;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -E_IO;
}

static int cb_recv(void *ctx, uint8_t *p, size_t n)
{
	struct conn_io *c = ctx;
	ssize_t r = FAULT_ERRNO(FAULT_SOCK, ECONNRESET) ? -1 : recv(c->fd, p, n, 0);
	if (r >= 0)
		return (int)r;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -E_IO;
}

int conn_io_init(struct conn_io *c, int fd, const struct tls_config *tc, uint8_t *rbuf, uint32_t max_frame,
		 uint8_t *out, size_t out_cap, struct ts_err *e)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->rcap = (uint32_t)CONN_RBUF_BYTES(max_frame);
	c->rbuf = rbuf;
	c->out = out;
	c->ocap = out_cap;
	int rc = proto_reader_init(&c->rd, c->rbuf, c->rcap);
	if (rc == 0)
		rc = tls_session_init(&c->tls, tc, cb_send, cb_recv, c);
	if (rc < 0) {
		ts_errf(e, -rc, "%s", c->tls.err.msg);
		return rc;
	}
	c->tls_live = 1;
	c->fd = fd;
	return 0;
}

void conn_io_free(struct conn_io *c)
{
	if (c->tls_live)
		tls_session_free(&c->tls);
	c->tls_live = 0;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

int conn_io_handshake(struct conn_io *c)
{
	return tls_handshake(&c->tls);
}

int conn_io_read(struct conn_io *c, uint8_t *p, size_t n)
{
	return tls_read(&c->tls, p, n);
}

uint8_t *conn_io_tail(struct conn_io *c, size_t *room)
{
	if (c->o_off && c->o_len)
		memmove(c->out, c->out + c->o_off, c->o_len);
	c->o_off = 0;
	*room = c->ocap - c->o_len;
	return c->out + c->o_len;
}

void conn_io_commit(struct conn_io *c, size_t n)
{
	c->o_len += n;
}

int conn_io_flush(struct conn_io *c)
{
	while (c->o_len) {
		/* after TLS_AGAIN, tls_write wants the same bytes again, not more */
		size_t n = c->o_again ? c->o_again : c->o_len;
		int w = tls_write(&c->tls, c->out + c->o_off, n);
		if (w == TLS_AGAIN) {
			c->o_again = n;
			return 0;
		}
		c->o_again = 0;
		if (w < 0)
			return w;
		c->o_off += (size_t)w, c->o_len -= (size_t)w;
	}
	c->o_off = 0;
	return 0;
}

uint32_t conn_io_events(const struct conn_io *c, int want_input)
{
	uint32_t ev = want_input ? EPOLLIN : 0;
	if (c->o_len || (c->tls_live && tls_want(&c->tls) == TLS_WANT_WRITE))
		ev |= EPOLLOUT;
	return ev;
}
