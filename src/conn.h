/* conn: one client connection: its state machine and clocks, and its
 * transport (a non-blocking socket, its TLS session, the frame reader, a
 * bounded output buffer).
 *
 * Owns: the connection's state (enum + table of legal successors +
 * conn_set_state), the deadline each state keeps (TLS handshake, HELLO, idle
 * PING and close, the CLOSING linger) in the one switch of conn_timer, the
 * peer's address; the socket fd, the TLS session (handshake, read, write,
 * close), the proto_reader and its payload buffer, the bytes waiting to be
 * written.
 * Does not: decide what frames mean or talk to the engine (serve does), wait
 * or keep timers (net does: conn_timer says when it wants to be called).
 * Threads: a conn belongs to the network thread that accepted it.
 *
 * States:
 *   FREE       the slot is unused
 *   HANDSHAKE  accepted; TLS handshake under way   (handshake_timeout_ms)
 *   HELLO      TLS done; waiting for HELLO          (hello_timeout_ms)
 *   OPEN       WELCOME sent; serving                (ping_interval_ms, idle_timeout_ms)
 *   CLOSING    flushing a last frame, then close    (CONN_LINGER_S)
 *   DEAD       socket closed; the engine has not yet acknowledged the close
 * A connection that never reached OPEN has nothing in the engine, so it goes
 * back to FREE at once; one that did passes through DEAD.
 */
#ifndef TS_CONN_H
#define TS_CONN_H

#include "proto.h"
#include "tls.h"

struct conn_io {
	int fd;
	struct tls_session tls;
	int tls_live;             /* tls_session_init succeeded */
	struct proto_reader rd;
	uint8_t *rbuf;            /* (rcap) payload assembly for rd: the caller's */
	uint32_t rcap;
	uint8_t *out;             /* (ocap) bytes not yet taken by tls_write: the caller's */
	size_t o_off, o_len, ocap;
	size_t o_again;           /* bytes of the tls_write that returned TLS_AGAIN */
	int eof;                  /* the peer closed (or the transport died) */
};

/* ------------------------------------------------------------ the machine */

#define CONN_STATES(X) X(FREE) X(HANDSHAKE) X(HELLO) X(OPEN) X(CLOSING) X(DEAD)
#define CONN_STATE_ENUM(n) CONN_##n,
enum conn_state { CONN_STATES(CONN_STATE_ENUM) CONN_STATE_N };
#undef CONN_STATE_ENUM

#define CONN_LINGER_S 2.0 /* CLOSING: how long the last bytes may take to leave */

/* The clocks of the states, in seconds ([server] *_ms keys). */
struct conn_limits {
	double handshake_s; /* accept to TLS handshake done */
	double hello_s;     /* TLS handshake done to HELLO */
	double ping_s;      /* OPEN: silence before a PING, and between PINGs */
	double idle_s;      /* OPEN: silence before the close; > ping_s */
};

/* The client's address, for the per-peer cap and for logs. */
struct conn_peer {
	uint8_t addr[16]; /* IPv4 (4 bytes) or IPv6 (16) */
	uint8_t len;
	char text[64];    /* "127.0.0.1:51234" */
};

struct conn {
	enum conn_state st;
	struct conn_io io;
	struct conn_peer peer;
	uint64_t seq;    /* accept order: eviction takes the lowest */
	double t_accept; /* when the socket was accepted */
	double t_state;  /* when st was entered */
	double t_rx;     /* OPEN: when the last complete frame was read */
	double t_ping;   /* OPEN: when the last PING was sent (0: none yet) */
	uint64_t n_ping; /* PINGs sent: the next PING's value */
	uint32_t ev_mask; /* epoll interest now */
};

const char *conn_state_name(enum conn_state s);

/* The one choke point for state changes: a change the table does not allow
 * is a bug, logged and refused (-E_INTERNAL). Entering OPEN starts its idle
 * clock. */
int conn_set_state(struct conn *c, enum conn_state to, double now);

/* What a state's clock asks of the caller at now. */
enum conn_due {
	CONN_DUE_NONE,    /* nothing; *next says when to ask again (0: never) */
	CONN_DUE_EXPIRED, /* HANDSHAKE or HELLO past its deadline: drop it */
	CONN_DUE_PING,    /* OPEN and silent: send a PING, set t_ping, ask again */
	CONN_DUE_IDLE,    /* OPEN and silent past idle_s: close it */
	CONN_DUE_LINGER,  /* CLOSING for CONN_LINGER_S: close it without waiting */
};
enum conn_due conn_timer(const struct conn *c, const struct conn_limits *l, double now, double *next);

/* Whether a and b are the same client address. */
int conn_peer_same(const struct conn_peer *a, const struct conn_peer *b);

/* Whether c is not yet open (in its TLS handshake or waiting for HELLO), so
 * that a new connection may take its slot when all are taken; and which of
 * two such goes first: one still in its handshake (not authenticated) before
 * one waiting for HELLO, then the one accepted earlier. */
int conn_evictable(const struct conn *c);
int conn_evict_before(const struct conn *a, const struct conn *b);

/* What conn_read did. */
enum conn_read_result {
	CONN_READ_AGAIN,   /* read all there was (or a frame changed the state): wait for the socket */
	CONN_READ_FULL,    /* stopped: the output is over the limit (read again once it drains) */
	CONN_READ_MORE,    /* stopped: CONN_READ_TURN_BYTES read this turn; more may wait (read again next turn) */
	CONN_READ_EOF,     /* the peer closed, or the transport died */
	CONN_READ_REFUSED, /* the TLS handshake failed: c->io.tls.err says why */
	CONN_READ_BAD,     /* a malformed frame: c->io.rd.err is the ERROR code, e says why */
};

/* Input one connection may bring in one call of conn_read: a client that
 * sends SUBMITs of the largest frame back to back has them decrypted and
 * decoded a slice at a time between the other connections' turns, instead of
 * holding the network thread for all of it (measured: 48 SUBMITs of 261 KB
 * held it 200-260 ms on the 2-core dev box). */
#define CONN_READ_TURN_BYTES (256u << 10)

/* HANDSHAKE: one handshake step (to HELLO when it completes). HELLO, OPEN:
 * reads and decrypts while the unsent output stays below out_limit, and
 * hands each whole frame to frame() (which may change c's state: reading
 * stops then); a whole frame restarts the idle clock. */
enum conn_read_result conn_read(struct conn *c, size_t out_limit, double now,
				void (*frame)(void *ctx, struct conn *c, const struct proto_frame *f), void *ctx,
				struct ts_err *e);

/* Writes what the socket takes: 0, or -E_* when the transport died. In
 * CLOSING, 1 once everything is written (close it now). */
int conn_write(struct conn *c);

/* The epoll interest c needs in its state; paused: not reading input. */
uint32_t conn_want(const struct conn *c, int paused);

/* ------------------------------------------------------------ transport */

/* Sets up the transport on an accepted socket over the caller's buffers,
 * taken at boot and kept for the connection's life (a slot's, in serve: conns_accept):
 * rbuf holds the payload of the largest frame the server will agree to
 * (CONN_RBUF_BYTES(max_frame)), out (out_cap bytes, >= 2 max frames) the
 * output. 0, or -E_NOMEM / -E_INVAL with e set (the fd is left open). */
#define CONN_RBUF_BYTES(max_frame) ((size_t)(max_frame) - PROTO_HDR_BYTES)
int conn_io_init(struct conn_io *c, int fd, const struct tls_config *tc, uint8_t *rbuf, uint32_t max_frame,
		 uint8_t *out, size_t out_cap, struct ts_err *e);
/* Closes the fd and the TLS session (the buffers stay the caller's); safe twice. */
void conn_io_free(struct conn_io *c);

/* One handshake step: 0 done, TLS_AGAIN, or -E_* (refused: c->tls.err says why). */
int conn_io_handshake(struct conn_io *c);

/* Reads decrypted bytes: > 0, TLS_AGAIN, 0 at the peer's clean end, -E_* dead. */
int conn_io_read(struct conn_io *c, uint8_t *p, size_t n);

/* Room at the tail of the output buffer (compacting it first). */
uint8_t *conn_io_tail(struct conn_io *c, size_t *room);
/* Commits n bytes written at conn_io_tail. */
void conn_io_commit(struct conn_io *c, size_t n);
static inline size_t conn_io_unsent(const struct conn_io *c)
{
	return c->o_len;
}

/* Writes as much as the socket takes: 0 (all written or it would block) or
 * -E_* (dead). */
int conn_io_flush(struct conn_io *c);

/* epoll interest the transport needs now, given whether we want input. */
uint32_t conn_io_events(const struct conn_io *c, int want_input);

#endif
