/* conns: the serve module's table of connection slots (struct sconn,
 * sv->conns) on the network thread.
 *
 * Owns: which slot a connection takes (accept: a free slot, else one
 * evicted from those not yet open, conn_evict_before; refused beyond
 * max_conns_per_peer from one address, or with every slot open); closing a
 * slot's connection (dropped at once before OPEN, DEAD from OPEN on); reuse
 * of a DEAD slot; each slot's state clock (PING, the idle close, the
 * handshake and HELLO deadlines, the linger) and its one deadline in net's
 * timer heap; each slot's epoll interest.
 * Does not: read or route frames, take the engine's events or send tokens
 * (serve.c), keep the state machine (conn) or wait (net).
 * Threads: the network thread only.
 *
 * Ownership. A slot is reused only after the engine acknowledged the
 * connection's CLOSE (sconn.acked, conns_reap): every command for that slot
 * was before the CLOSE in the one FIFO command ring, so no stale command or
 * event can reach the next connection. A connection that never reached OPEN
 * sent nothing to the engine, so its slot is FREE at once.
 */
#ifndef TS_CONNS_H
#define TS_CONNS_H

#include "serve_int.h"

/* Accepts from the listening socket until a connection takes a slot: that
 * slot, in HANDSHAKE and in epoll (the caller reads and services it), or
 * NULL once none is waiting. A connection over the per-peer cap, or with
 * every slot open, is closed here (logged, rate-limited; n_refused). */
struct sconn *conns_accept(struct serve *sv, double now);

/* Closes c now: one before OPEN is dropped (FREE); one in the engine (OPEN,
 * CLOSING) is DEAD, its CLOSE pending, until conns_reap frees it. */
void conns_kill(struct serve *sv, struct sconn *c);

/* DEAD: pushes the CLOSE, then frees the slot (FREE, its requests and event
 * ring cleared) once the engine acknowledged it. */
void conns_reap(struct serve *sv, struct sconn *c);

/* What c's state clock asks for at now: PING, the idle close (CLOSING), a
 * handshake or HELLO past its deadline (dropped), the linger (killed). */
void conns_clock(struct serve *sv, struct sconn *c, double now);

/* Arms c's one timer for the nearest thing it waits for: its state's clock,
 * a throttled request's credit_timeout_ms, the drain deadline, a retry of a
 * full command ring, a stashed event, its next turn of input. */
void conns_arm(struct serve *sv, struct sconn *c, double now);

/* Sets c's epoll interest to what its state wants (conn_want). */
void conns_update_mask(struct serve *sv, struct sconn *c);

#endif
