/* serve_int.h: what the parts of the serve module share -- the messages
 * between the threads and the server's state. serve.c holds the network
 * thread's routing and the lifecycle; conns.c the table of connection slots
 * (conns.h); serve_eng.c the engine thread. Not for other modules: serve.h
 * is the interface. */
#ifndef TS_SERVE_INT_H
#define TS_SERVE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "conn.h"
#include "net.h"
#include "proto.h"
#include "ring.h"
#include "serve.h"
#include "stext.h"
#include "textw.h"
#include "tls.h"
/* ------------------------------------------------------------ messages */

enum cmd_type { CMD_SUBMIT, CMD_CANCEL, CMD_CLOSE, CMD_STOP, CMD_CREDIT };
enum cancel_how { HOW_CLIENT, HOW_SERVER, HOW_SILENT }; /* DONE CANCELLED / ERROR CANCELLED / nothing */

struct cmd {
	uint8_t type;  /* enum cmd_type */
	uint8_t how;   /* CANCEL: enum cancel_how */
	uint16_t conn; /* connection slot */
	uint16_t slot; /* request slot in it */
	uint32_t rid;
	int32_t *ids; /* SUBMIT: (n_prompt + n_stop) in the ids FIFO (serve.c: ids_take), given back at ids_end */
	uint64_t ids_end;
	struct stext *tx; /* SUBMIT: text wanted or stop sequences, in the request slot's memory; NULL: none */
	int n_prompt, n_stop, max_tokens, priority, ignore_eos, keep;
	uint32_t n_credit; /* CREDIT: tokens the client granted */
	uint64_t session_id;
	struct samp_params samp;
};

enum ev_type { EV_TOKEN, EV_TEXT, EV_DONE, EV_ERROR };

/* A token's text rides in its EV_TOKEN (msg, n_text bytes); text longer than
 * msg goes first in EV_TEXT events. */
struct ev {
	uint8_t type; /* enum ev_type */
	uint16_t slot;
	uint16_t n_text;
	uint32_t rid;
	int32_t token;
	uint32_t code; /* ERROR */
	struct proto_done d;
	char msg[120];
};

#define EV_RING_CAP  4096u
#define CMD_RING_CAP 4096u

/* ------------------------------------------------------------ state */

/* TEXT: its prompt is with a text worker (nothing reached the engine yet);
 * ZOMBIE: terminal sent, waiting for the engine's */
enum nreq_state { NR_FREE, NR_TEXT, NR_LIVE, NR_ZOMBIE };

/* A request slot's buffers, taken at boot (serve_start) and kept by the slot
 * from one request to the next: what the engine generated that is not yet
 * sent (a window, compacted as it is sent), and the text state the engine
 * uses while the request is live. A request whose window is full leaves the
 * connection's events in its ring (sconn.stash) until output drains: tokens
 * wait only when the connection's output is over its limit (credit cannot
 * hold them: the engine generates no more than the client granted), and then
 * every request of that connection waits for the same socket. */
#define SERVE_TEXT_JOBS   2      /* text prompts a connection may have waiting for (or at) a text worker */
#define TS_STR_(x) #x
#define TS_STR(x)  TS_STR_(x)
#define SERVE_PEND_TOKENS 256u   /* tokens a request may have received and not yet sent */
#define SERVE_TEXT_BYTES  4096u  /* their text (at least twice stext's most per token: serve_start) */
struct nreq_bufs {
	int32_t *pend;  /* (SERVE_PEND_TOKENS) */
	uint32_t *tend; /* (SERVE_PEND_TOKENS) */
	char *text;     /* (sv->text_cap) */
	void *tx;       /* (sv->tx_bytes) the request's struct stext (stext_init), NULL without a tokenizer */
};

struct nreq {
	enum nreq_state st;
	uint32_t rid;
	uint32_t credit;
	uint32_t credit_owed; /* granted by the client, not yet passed to the engine */
	struct nreq_bufs b;   /* the slot's: nreq_reset keeps them */
	int32_t *pend;        /* = b.pend: tokens generated; [sent, n_pend) not yet sent */
	int n_pend, sent;
	uint32_t n_gone;      /* tokens sent and compacted out of pend */
	double t_stall;     /* throttled since (0 = not) */
	int has_term;       /* the engine's DONE waits behind unsent tokens */
	struct proto_done term;
	int cancel_want;    /* 1 + enum cancel_how not yet pushed */
	int cancel_done;    /* a cancel was pushed */
	char *text;         /* = b.text: generated text; [text_sent, text_len) not yet sent */
	uint32_t text_len, text_sent;
	uint32_t *tend;     /* = b.tend: text_len after each token; NULL: no text wanted (TOKENS carry none) */
	struct textw_job *job; /* NR_TEXT: the job a worker holds (it is not ours to free) */
	int text_dropped;      /* NR_TEXT: terminal sent; freed when the job comes back */
};

/* A connection slot: the connection (its state machine is conn's) and what
 * serve keeps for it. */
struct sconn {
	struct conn cn;
	uint8_t *rbuf, *obuf; /* the connection's frame and output buffers (conn_io_init): the slot's, from sv->iomem */
	struct nreq *req; /* (max_requests) */
	int n_live;
	uint32_t max_frame;
	int paused;        /* output over the limit: not reading */
	int more_in;       /* its turn's input budget ran out: read again next turn */
	int has_stash;     /* stash: an event taken from evr that its request has no room for yet */
	struct ev stash;
	int close_pending; /* CLOSE not yet pushed */
	int goaway_sent;
	struct ring_spsc evr;
	_Atomic int overflow; /* engine: an event did not fit; net closes */
	_Atomic int acked;    /* engine: CLOSE handled */
	_Atomic int dirty;    /* engine: the slot's id is in the dirty ring (see serve.c) */
};

struct ereq {
	uint64_t sched_id;
	uint32_t rid;
	uint8_t live, how;
	uint8_t held;     /* out of credit: paused in sched (sched_hold) */
	uint32_t credit;  /* tokens it may still generate: initial_credit + CREDITs - generated */
	struct stext *tx; /* text state, or NULL */
};

struct serve {
	struct engine *en;
	struct serve_opts o;
	struct tls_config tls;
	int lfd, port, ep;
	struct ring_mpsc cmds;
	struct ring_spsc dirty; /* engine -> net: ids of slots with new events or an acknowledged CLOSE */
	struct ring_wake cmd_wake, net_wake;
	struct sconn *conns; /* (max_conns) */
	uint8_t *iomem;      /* (max_conns, CONN_RBUF_BYTES(max_frame) + ocap) every slot's I/O buffers, taken at boot */
	size_t ocap;         /* a slot's output buffer: output_limit_bytes + 4 max frames */
	pthread_t t_net, t_eng;
	int started_net, started_eng;
	_Atomic int drain_req;
	_Atomic uint32_t drain_ms;
	double t_ready;
	uint8_t *reqmem; /* (max_conns * max_requests, req_bytes) every request slot's buffers, taken at boot */
	size_t text_cap, tx_bytes;
	/* The ids of SUBMITs on their way to the engine: a FIFO taken at boot.
	 * The network thread takes room at ids_head (a SUBMIT that finds none
	 * is answered BUSY); the engine gives it back in the same order as it
	 * takes the commands (ids_tail = the command's ids_end, release; the
	 * network thread's load is acquire, so the engine has read the ids
	 * before they are overwritten). Counters in ids, never wrapped; an
	 * allocation never straddles the end (the rest is skipped). */
	int32_t *ids_mem; /* (ids_cap) */
	uint64_t ids_cap, ids_head;
	_Atomic uint64_t ids_tail;
	size_t mem_bytes;      /* host memory taken at serve_start for serving (logged stage=serve) */
	uint64_t allocs_ready; /* ts_alloc_serving_count() at ready */
	/* engine thread only */
	struct ereq *ereq;  /* (max_conns * max_requests) */
	uint8_t *e_closing; /* (max_conns) */
	int ev_pushed, stop;
	uint64_t e_accepted, e_done, e_cancelled, e_failed, e_rejected, e_generated;
	_Atomic uint64_t snap[PROTO_STAT_END]; /* engine's figures for STATS */
	_Atomic uint64_t trans[REQ_STATE_N][REQ_STATE_N]; /* the FSM's transition counts, for STATS */
	struct textw *tw; /* tokenizes text prompts; NULL without a tokenizer */
	/* network thread only */
	struct net_timers timers; /* one deadline per connection slot */
	struct conn_limits lim;
	int draining, stop_sent;
	double drain_deadline;
	uint64_t n_conns, frames_in, frames_out, proto_errors, n_rejected;
	uint64_t n_accepted, n_refused, n_evicted, n_timed_out;
	_Atomic uint64_t n_stashed; /* events that waited for their request's window (serve_stash_count) */
};

/* A command to the engine: 0, or -E_NOSPACE when the ring is full (the
 * caller tries again later). Network thread (any producer of the MPSC ring). */
static inline int serve_cmd_push(struct serve *sv, const struct cmd *m)
{
	if (ring_mpsc_push(&sv->cmds, m) < 0)
		return -E_NOSPACE;
	ring_wake_notify(&sv->cmd_wake);
	return 0;
}

/* Clears q for its next request; its buffers stay. */
static inline void nreq_reset(struct nreq *q)
{
	struct nreq_bufs b = q->b;
	memset(q, 0, sizeof(*q));
	q->b = b;
	q->pend = b.pend, q->text = b.text;
}

/* serve_eng.c: the engine thread's loop, and its figures for STATS (also
 * called once before the threads start). */
void *serve_eng_main(void *arg);
void serve_eng_snapshot(struct serve *sv);

#endif
