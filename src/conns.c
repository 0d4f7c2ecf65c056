/* conns: the network thread's table of connection slots (see conns.h).
 *
 * Reading order: closing a slot's connection (drop, kill); accept, with
 * eviction of not-yet-open connections and the per-peer cap; reuse of a
 * slot after the engine's CLOSE acknowledgement; the slot's state clock and
 * its one deadline in net's timer heap; its epoll interest.
 */
#include "conns.h"

#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

/* ------------------------------------------------------------ closing */

/* Frees a connection that never reached OPEN: nothing of it is in the
 * engine, so its slot is FREE at once. */
static void conns_drop(struct serve *sv, struct sconn *c)
{
	net_epoll_del(sv->ep, c->cn.io.fd);
	conn_io_free(&c->cn.io);
	net_timer_set(&sv->timers, (int)(c - sv->conns), 0);
	conn_set_state(&c->cn, CONN_FREE, ts_now());
	sv->n_conns--;
}

/* Closes c now: one before OPEN is dropped; one in the engine (OPEN,
 * CLOSING) is DEAD until the engine acknowledges its CLOSE (conns_reap). */
void conns_kill(struct serve *sv, struct sconn *c)
{
	switch (c->cn.st) {
	case CONN_FREE:
	case CONN_DEAD:
	case CONN_STATE_N:
		return;
	case CONN_HANDSHAKE:
	case CONN_HELLO:
		conns_drop(sv, c);
		return;
	case CONN_CLOSING:
		tls_close_notify(&c->cn.io.tls); /* best effort: never waits */
		/* fall through */
	case CONN_OPEN:
		net_epoll_del(sv->ep, c->cn.io.fd);
		conn_io_free(&c->cn.io);
		conn_set_state(&c->cn, CONN_DEAD, ts_now());
		c->close_pending = 1;
		return;
	}
}

/* ------------------------------------------------------------ accept */

/* The slot a new connection takes: a free one, else one evicted from those
 * not yet open (conn_evict_before), else none. */
static struct sconn *conns_slot(struct serve *sv)
{
	struct sconn *old = NULL;
	for (int i = 0; i < sv->o.max_conns; i++) {
		struct sconn *c = &sv->conns[i];
		if (c->cn.st == CONN_FREE)
			return c;
		if (conn_evictable(&c->cn) && (!old || conn_evict_before(&c->cn, &old->cn)))
			old = c;
	}
	if (old) {
		log_rl(1000, LOG_INFO, "serve: evicted peer=%s (%s, %.1f s old): all max_connections = %d slots are taken",
			old->cn.peer.text, old->cn.st == CONN_HANDSHAKE ? "in its TLS handshake" : "before HELLO",
			ts_now() - old->cn.t_accept, sv->o.max_conns);
		sv->n_evicted++;
		conns_drop(sv, old);
	}
	return old;
}

static int peer_count(const struct serve *sv, const struct conn_peer *p)
{
	int n = 0;
	for (int i = 0; i < sv->o.max_conns; i++) {
		const struct sconn *c = &sv->conns[i];
		if (c->cn.st != CONN_FREE && c->cn.st != CONN_DEAD && conn_peer_same(&c->cn.peer, p))
			n++;
	}
	return n;
}

struct sconn *conns_accept(struct serve *sv, double now)
{
	for (;;) {
		struct conn_peer peer = {0};
		int fd = net_accept(sv->lfd, peer.addr, &peer.len, peer.text, sizeof(peer.text));
		if (fd < 0)
			return NULL;
		/* refused before the TLS handshake: closing costs the server nothing */
		if (peer_count(sv, &peer) >= sv->o.max_conns_per_peer) {
			log_rl(1000, LOG_WARN, "serve: connection refused: peer=%s has max_conns_per_peer = %d open",
				peer.text, sv->o.max_conns_per_peer);
			sv->n_refused++;
			close(fd);
			continue;
		}
		struct sconn *c = conns_slot(sv);
		struct ts_err e = {0};
		if (!c || conn_io_init(&c->cn.io, fd, &sv->tls, c->rbuf, sv->o.max_frame, c->obuf, sv->ocap, &e) < 0) {
			log_rl(1000, LOG_WARN, "serve: connection refused: peer=%s %s", peer.text,
				c ? e.msg : "all max_connections slots hold open connections");
			sv->n_refused++;
			close(fd);
			continue;
		}
		if (sv->o.sndbuf)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sv->o.sndbuf, sizeof(sv->o.sndbuf));
		c->cn.peer = peer;
		c->cn.t_accept = now;
		c->cn.seq = ++sv->n_accepted;
		c->cn.n_ping = 0;
		conn_set_state(&c->cn, CONN_HANDSHAKE, now);
		c->paused = 0;
		c->goaway_sent = 0;
		c->max_frame = PROTO_MIN_FRAME;
		c->cn.ev_mask = EPOLLIN;
		sv->n_conns++;
		net_epoll_add(sv->ep, fd, EPOLLIN, (uint64_t)(c - sv->conns) + 2);
		return c;
	}
}

/* ------------------------------------------------------------ reuse */

/* DEAD: pushes the CLOSE, then frees the slot once the engine acknowledged it. */
void conns_reap(struct serve *sv, struct sconn *c)
{
	if (c->close_pending) {
		struct cmd m = {.type = CMD_CLOSE, .conn = (uint16_t)(c - sv->conns)};
		if (serve_cmd_push(sv, &m) == 0)
			c->close_pending = 0;
		return;
	}
	if (!atomic_load_explicit(&c->acked, memory_order_acquire))
		return;
	struct ev v;
	while (ring_spsc_pop(&c->evr, &v))
		;
	for (int k = 0; k < sv->o.max_requests; k++)
		nreq_reset(&c->req[k]);
	c->n_live = 0;
	c->has_stash = 0;
	atomic_store(&c->acked, 0);
	atomic_store(&c->overflow, 0);
	conn_set_state(&c->cn, CONN_FREE, ts_now());
	sv->n_conns--;
}

/* ------------------------------------------------------------ clocks and deadlines */

static void send_ping(struct serve *sv, struct sconn *c, double now)
{
	size_t room;
	uint8_t *p = conn_io_tail(&c->cn.io, &room);
	int n = proto_encode_ping(p, room, ++c->cn.n_ping);
	if (n > 0) {
		conn_io_commit(&c->cn.io, (size_t)n);
		sv->frames_out++;
	}
	c->cn.t_ping = now;
}

/* What the connection's state clock asks for now. */
void conns_clock(struct serve *sv, struct sconn *c, double now)
{
	double next;
	for (;;) {
		switch (conn_timer(&c->cn, &sv->lim, now, &next)) {
		case CONN_DUE_NONE:
			return;
		case CONN_DUE_EXPIRED:
			log_msg(LOG_INFO, "serve: closed peer=%s: no %s within %.0f ms", c->cn.peer.text,
				c->cn.st == CONN_HANDSHAKE ? "TLS handshake" : "HELLO",
				1e3 * (c->cn.st == CONN_HANDSHAKE ? sv->lim.handshake_s : sv->lim.hello_s));
			sv->n_timed_out++;
			conns_drop(sv, c);
			return;
		case CONN_DUE_PING:
			send_ping(sv, c, now);
			continue;
		case CONN_DUE_IDLE:
			log_msg(LOG_INFO, "serve: closed peer=%s: silent for idle_timeout_ms = %.0f", c->cn.peer.text,
				1e3 * sv->lim.idle_s);
			sv->n_timed_out++;
			conn_set_state(&c->cn, CONN_CLOSING, now);
			continue;
		case CONN_DUE_LINGER:
			conns_kill(sv, c);
			return;
		}
	}
}

static double min_due(double a, double b)
{
	return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* Arms the slot's one timer for the nearest thing it waits for. */
void conns_arm(struct serve *sv, struct sconn *c, double now)
{
	double due = 0;
	int retry = c->cn.st == CONN_DEAD && c->close_pending;
	if (c->cn.st != CONN_DEAD && c->cn.st != CONN_FREE)
		conn_timer(&c->cn, &sv->lim, now, &due);
	if (c->cn.st == CONN_OPEN) {
		for (int k = 0; k < sv->o.max_requests; k++) {
			const struct nreq *q = &c->req[k];
			retry |= q->cancel_want != 0;
			if (q->st == NR_LIVE && q->t_stall > 0)
				due = min_due(due, q->t_stall + sv->o.credit_timeout_ms / 1e3);
		}
		if (sv->draining && c->n_live > 0 && now < sv->drain_deadline)
			due = min_due(due, sv->drain_deadline);
	}
	if (retry) /* the command ring was full: try again soon */
		due = min_due(due, now + 0.002);
	if (c->has_stash && !conn_io_unsent(&c->cn.io)) /* no EPOLLOUT to bring it back (never seen): poll */
		due = min_due(due, now + 0.002);
	if (c->more_in) /* just after now: the next round, after the other connections' events */
		due = min_due(due, now + 1e-6);
	net_timer_set(&sv->timers, (int)(c - sv->conns), due);
}

void conns_update_mask(struct serve *sv, struct sconn *c)
{
	if (c->cn.st == CONN_FREE || c->cn.st == CONN_DEAD)
		return;
	uint32_t m = conn_want(&c->cn, c->paused);
	if (m != c->cn.ev_mask) {
		net_epoll_mod(sv->ep, c->cn.io.fd, m, (uint64_t)(c - sv->conns) + 2);
		c->cn.ev_mask = m;
	}
}
