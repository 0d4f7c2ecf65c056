/* serve: the server on top of a ready engine.
 *
 *   network thread: net_run (epoll, deadlines), connections (conn), frames (proto)
 *        --commands--> [ring_mpsc] --> engine thread: sched_submit/cancel/step
 *        <--events---- [ring_spsc per connection] <--
 *   network thread <--> text workers (textw): text and chat prompts to ids
 *
 * Owns: the two threads, the command ring, one event ring per connection
 * slot, the per-connection request tables (request id -> slot, credit,
 * tokens not yet sent), the drain (GOAWAY) sequence and the STATS counters.
 * Does not: load anything (boot/ does), parse frames (proto), touch sched
 * from any thread but the engine thread.
 * Threads: serve_start, serve_wait and serve_free on the caller's thread;
 * serve_drain and serve_port from any thread (serve_drain is async-signal
 * unsafe: call it from a signalfd loop, not a handler).
 */
#ifndef TS_SERVE_H
#define TS_SERVE_H

#include "engine.h"

/* Overrides of the [server] keys (tests); 0 or NULL = the config's value. */
struct serve_opts {
	const char *listen;         /* listen; "127.0.0.1:0" picks a port */
	int max_conns;              /* max_connections */
	int max_conns_per_peer;     /* max_conns_per_peer */
	int max_requests;           /* max_requests: live requests per connection */
	uint32_t max_frame;         /* max_frame_bytes */
	uint32_t initial_credit;    /* initial_credit */
	uint32_t credit_timeout_ms; /* credit_timeout_ms */
	uint32_t out_limit_bytes;   /* output_limit_bytes: unsent output beyond which a connection is throttled */
	uint32_t handshake_timeout_ms, hello_timeout_ms, ping_interval_ms, idle_timeout_ms;
	int text_workers;           /* threads that tokenize text prompts (textw); 0 = 2 */
	const char *note;           /* appended to WELCOME's server name, e.g. why the last good config runs */
	int sndbuf;                 /* tests: SO_SNDBUF of accepted sockets (a slow reader blocks sooner); 0 = the system's */
};

struct serve;

/* Binds, loads the TLS certificates ([server] tls_cert, tls_key, tls_ca;
 * refused with a message when unset) and starts the network and engine
 * threads over en (ready; the engine thread owns en->s from now on until
 * serve_wait returns). */
int serve_start(struct serve **out, struct engine *en, const struct serve_opts *o, struct ts_err *e);

int serve_port(const struct serve *sv);

/* Times an event from the engine waited for room in its request's window of
 * unsent tokens (the connection's output over its limit): for tests. */
uint64_t serve_stash_count(const struct serve *sv);

/* Starts the drain: GOAWAY to every connection, SUBMIT answered DRAINING,
 * no new connections; requests still live after drain_ms end with ERROR
 * CANCELLED; the threads exit once every connection has closed. */
void serve_drain(struct serve *sv, uint32_t drain_ms);

/* Joins both threads (after serve_drain) and frees everything. */
void serve_wait(struct serve *sv);

#endif
