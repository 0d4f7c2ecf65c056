/* serve_int.h: what the two halves of the serve module share -- the
 * messages between the threads and the server's state. serve.c holds the
 * network thread and the lifecycle; serve_eng.c the engine thread. Not for
 * other modules: serve.h is the interface. */
#ifndef TS_SERVE_INT_H
#define TS_SERVE_INT_H

#include <pthread.h>
#include <stdatomic.h>

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
	int32_t *ids; /* SUBMIT: (n_prompt + n_stop) malloc'd by net, freed by the engine */
	struct stext *tx; /* SUBMIT: text wanted or stop sequences; made by net, freed by the engine */
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

struct nreq {
	enum nreq_state st;
	uint32_t rid;
	uint32_t credit;
	uint32_t credit_owed; /* granted by the client, not yet passed to the engine */
	int32_t *pend; /* (cap) tokens generated; [0, sent) already sent */
	int n_pend, cap, sent;
	double t_stall;     /* throttled since (0 = not) */
	int has_term;       /* the engine's DONE waits behind unsent tokens */
	struct proto_done term;
	int cancel_want;    /* 1 + enum cancel_how not yet pushed */
	int cancel_done;    /* a cancel was pushed */
	char *text;         /* (text_cap) generated text; [0, text_sent) sent */
	uint32_t text_len, text_cap, text_sent;
	uint32_t *tend;     /* (cap) text_len after each token; NULL: no text wanted (TOKENS carry none) */
	struct textw_job *job; /* NR_TEXT: the job a worker holds (it is not ours to free) */
	int text_dropped;      /* NR_TEXT: terminal sent; freed when the job comes back */
};

/* A connection slot: the connection (its state machine is conn's) and what
 * serve keeps for it. */
struct sconn {
	struct conn cn;
	struct nreq *req; /* (max_requests) */
	int n_live;
	uint32_t max_frame;
	int paused;        /* output over the limit: not reading */
	int more_in;       /* its turn's input budget ran out: read again next turn */
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
	pthread_t t_net, t_eng;
	int started_net, started_eng;
	_Atomic int drain_req;
	_Atomic uint32_t drain_ms;
	double t_ready;
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
};

/* serve_eng.c: the engine thread's loop, and its figures for STATS (also
 * called once before the threads start). */
void *serve_eng_main(void *arg);
void serve_eng_snapshot(struct serve *sv);

#endif
