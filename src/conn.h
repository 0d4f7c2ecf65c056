/* conn: one client connection's transport: a non-blocking socket, its TLS
 * session, the frame reader, and a bounded output buffer.
 *
 * Owns: the socket fd, the TLS session (handshake, read, write, close), the
 * proto_reader and its payload buffer, the bytes waiting to be written.
 * Does not: decide what frames mean (serve does), talk to the engine.
 * Threads: a conn belongs to the network thread that accepted it.
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
	uint8_t *rbuf;            /* (rcap) payload assembly for rd */
	uint32_t rcap;
	uint8_t *out;             /* (ocap) bytes not yet taken by tls_write */
	size_t o_off, o_len, ocap;
	size_t o_again;           /* bytes of the tls_write that returned TLS_AGAIN */
	int eof;                  /* the peer closed (or the transport died) */
};

/* Sets up the transport on an accepted socket. max_frame: the largest frame
 * the server will agree to; out_cap: output buffer bytes (>= 2 max frames).
 * 0, or -E_NOMEM / -E_INVAL with e set (the fd is left open). */
int conn_io_init(struct conn_io *c, int fd, const struct tls_config *tc, uint32_t max_frame, size_t out_cap,
		 struct ts_err *e);
/* Closes the fd and frees everything; safe twice. */
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
