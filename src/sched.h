/* sched: the request FSM, admission, continuous batching, chunked prefill,
 * preemption, prefix reuse and agent sessions.
 *
 * Owns: every request (a fixed table of slots sized at boot: max_running
 * running plus max_queue waiting; parked sessions keep theirs), their token
 * storage, the KV pool's bookkeeping, and the per-step batch arrays. One step:
 * expire parked sessions past their TTL; decodes first (one token each), then
 * prefill chunks of running requests, then newly admitted requests, under
 * max_batch_tokens; forward; sample; publish full blocks to the prefix cache;
 * emit events.
 *
 * KV reuse. At admission a request takes the cached KV of its prompt's
 * leading full blocks (kv prefix cache) and prefills only the rest; it always
 * computes at least its last prompt token, whose logits give the first
 * sampled token. A request with a session id and keep ends its turn PARKED
 * instead of DONE: on_done fires as usual, and the slot keeps its tokens and
 * KV. The next SUBMIT of that session continues it, prefilling only the new
 * tokens. A parked session ends (PARKED -> DONE, its full blocks left in the
 * prefix cache) when its TTL passes, when running work needs its blocks, or
 * when a new request needs its slot.
 *
 * Recurrent state (models with LINEAR layers). A request takes a state slot
 * when it is first forwarded and holds it while it holds KV: through DECODE,
 * PARKED and a resumed session's wait. Preemption, dropped KV, cancel, finish
 * and a session's end return it; a recomputation starts from position 0,
 * where the backend zeroes the state. The pool has 2 * max_running slots
 * (SCHED_STATES_PER_RUNNING): every running request, plus as many parked or
 * waiting sessions; a request short of one ends the least recently parked
 * session or drops a waiting one's KV and state, as for blocks. A state cannot be
 * rewound: such a model reuses no prefix across requests (the prefix cache
 * is off), and a resumed session keeps its state only when the new turn
 * continues the whole parked sequence; else it recomputes from 0. (A state
 * snapshot per KV block would let the prefix cache serve hybrid models at
 * model_state_elems_per_seq * 4 bytes per block; not built.)
 *
 * Memory pressure, cheapest loss first: the least recently parked session,
 * then a queued request holding KV (a resumed session waiting for a running
 * slot), then the least urgent running request is preempted (blocks returned,
 * recomputed later, mostly from the prefix cache). Never a crash, never a
 * deadlock: a step that cannot schedule a single token preempts until one fits.
 * Does not: do I/O or allocate after sched_init.
 * Threads: the engine thread only. Events are called on it, inside sched_step
 * (and sched_cancel).
 *
 * Request states (ARCHITECTURE.md): every change goes through one function
 * that checks the table of legal successors and counts the transition. */
#ifndef TS_SCHED_H
#define TS_SCHED_H

#include "backend.h"
#include "kv.h"
#include "model.h"
#include "samp.h"

#define REQ_STATES(X) X(QUEUED) X(PREFILL) X(DECODE) X(PREEMPTED) X(PARKED) X(DONE) X(CANCELLED) X(FAILED)
#define REQ_ENUM(s) REQ_##s,
enum req_state { REQ_STATES(REQ_ENUM) REQ_STATE_N };
#undef REQ_ENUM
const char *req_state_name(enum req_state s);

enum req_finish { FINISH_NONE, FINISH_STOP, FINISH_LENGTH, FINISH_CONTEXT, FINISH_CANCELLED, FINISH_ERROR };
const char *req_finish_name(enum req_finish f);

#define SCHED_MAX_STOP 16

struct sched_submit {
	const int32_t *prompt;
	int n_prompt;
	int max_tokens;             /* generated tokens at most; >= 1 */
	const int32_t *stop_ids;    /* extra stop token ids */
	int n_stop_ids;
	int ignore_eos;
	int priority;               /* 0 = most urgent; larger waits */
	struct samp_params samp;
	uint64_t user;              /* opaque to sched, handed back in events */
	/* Sessions (agent loops). session_id names a conversation (0 = none); a
	 * SUBMIT naming one that a live request holds is refused -E_BUSY. */
	uint64_t session_id;
	int keep;                   /* park the KV under session_id when this turn ends (needs session_id) */
	/* With a parked session_id: 1 = prompt holds only this turn's new tokens,
	 * appended to the parked sequence (-E_INVAL if the session is not parked:
	 * never kept, expired or evicted; resend the whole conversation without
	 * append). 0 = prompt is the whole conversation (PROTOCOL.md): the parked
	 * KV serves the longest prefix it shares, and an unknown session is simply
	 * computed in full (the prefix cache may still hold much of it). */
	int append;
};

struct req {
	enum req_state state;
	uint64_t id;
	uint64_t user;
	int32_t *tokens;            /* (max_seq_len) prompt, then generated */
	int n_prompt;
	int n_tokens;               /* prompt + generated */
	int n_computed;             /* positions whose KV is stored */
	int max_tokens;
	int32_t stop[SCHED_MAX_STOP + MODEL_MAX_EOS];
	int n_stop;
	int priority;
	struct samp_params samp;
	enum req_finish finish;
	int n_preempted;
	int n_cached;               /* prompt tokens whose KV was reused at admission (<= n_prompt) */
	int32_t state_slot;         /* recurrent-state slot (kv_state_*), -1 = none; its state is that of
				     * positions [0, n_computed) */
	uint64_t session_id;        /* 0 = none */
	int keep;                   /* end this turn PARKED */
	int held;                   /* paused by sched_hold: computes nothing until released */
	double t_submit, t_admit, t_first, t_done; /* t_admit: first QUEUED -> PREFILL */
	double t_parked;            /* when the turn ended PARKED (the TTL counts from here) */
};

struct sched_events {
	/* A generated token (already in r->tokens). Returns 1 to end the request
	 * here with FINISH_STOP (a stop sequence matched its text), else 0. */
	int (*on_token)(void *ctx, const struct req *r, int32_t token);
	/* The end of a request: DONE, CANCELLED, FAILED, or PARKED (the turn ended
	 * normally and its session was kept). Once per request id. */
	void (*on_done)(void *ctx, const struct req *r);
	void *ctx;
};

struct sched_limits {
	int max_running;
	int max_queue;
	int max_batch_tokens;
	int max_seq_len;
	int n_kv_blocks;
	int kv_block_tokens;
	int park_ttl_ms;            /* a parked session ends this long after its turn; 0 = SCHED_PARK_TTL_MS */
	int no_prefix_cache;        /* 1 = never reuse KV across requests (sessions still work) */
};

#define SCHED_PARK_TTL_MS 300000
#define SCHED_STATES_PER_RUNNING 2 /* recurrent-state slots per max_running (see above) */

struct sched_stats {
	uint64_t steps;
	/* Tokens forwarded: prefill = of requests in PREFILL (prompt chunks and
	 * recomputation), decode = the rest (one per decoding request, and the
	 * last token of a turn that parks). */
	uint64_t prefill_tokens, decode_tokens;
	double prefill_s, decode_s;  /* time in steps with / without prefill chunks */
	uint64_t preemptions;
	uint64_t prompt_tokens;      /* prompt tokens of admitted requests (at first admission) */
	uint64_t cached_tokens;      /* of those, reused from the KV cache (the sum of n_cached) */
	uint64_t sessions_parked;    /* turns that ended PARKED */
	uint64_t sessions_resumed;   /* SUBMITs that continued a parked session */
	uint64_t sessions_expired;   /* parked sessions ended by their TTL */
	uint64_t sessions_evicted;   /* parked sessions ended for blocks or a slot */
	uint64_t state_relieves;     /* parked or waiting sessions that gave up a recurrent state to running work */
	uint64_t transitions[REQ_STATE_N][REQ_STATE_N];
};

struct sched {
	struct sched_limits lim;
	const struct model *m;
	struct backend *be;
	struct kv_pool kv;
	struct samp_scratch ss;
	int n_slots;
	struct req *reqs;           /* (n_slots) */
	int *free_slots, n_free;    /* (n_slots) */
	int *queue, n_queue;        /* (n_slots) waiting slots, any order */
	int *running, n_running;    /* (max_running) slots, in admission order; a turn that just
				     * parked stays one step to compute its last token */
	int *parked, n_parked;      /* (n_slots) parked sessions out of running, least recent first */
	int has_state;              /* the model has recurrent layers: requests hold state slots */
	int n_sessions_parked;      /* sessions PARKED now (in parked, or finishing their last token) */
	double park_ttl_s;          /* lim.park_ttl_ms (or its default) in seconds */
	uint64_t next_id;
	/* per-step batch */
	int32_t *b_token, *b_pos, *b_seq;   /* (max_batch_tokens) */
	struct batch_seq *b_seqs;           /* (max_running) */
	int32_t *b_logit_rows, *b_logit_slot; /* (max_running) */
	int *b_chunk;                       /* (max_running) tokens forwarded per running entry */
	float *logits;                      /* (max_running, vocab) */
	struct backend_samp_row *b_samp;    /* (max_running) rows for forward_sample */
	int32_t *b_sampled;                 /* (max_running) tokens it returns */
	struct sched_stats st;
};

int sched_init(struct sched *s, const struct sched_limits *l, const struct model *m, struct backend *be,
	       struct ts_err *e);
void sched_free(struct sched *s);

/* Validates and queues a request. -E_INVAL / -E_RANGE with e naming the field;
 * -E_BUSY when the queue is full or a live request holds its session. A
 * request naming a parked session continues it in that session's slot; one
 * that needs a slot when none is free ends the least recently parked session. */
int sched_submit(struct sched *s, const struct sched_submit *a, uint64_t *id, struct ts_err *e);

/* Cancels a live request: its blocks return at once and on_done fires.
 * -E_INVAL if no live request has that id (a PARKED turn has ended: its
 * session stays; see sched_session_end). */
int sched_cancel(struct sched *s, uint64_t id, const struct sched_events *ev);

/* Pauses (hold = 1) or resumes (0) a live request: a throttled client whose
 * credit ran out. A held request computes nothing; at the next step it
 * leaves running for the queue (DECODE/PREFILL -> PREEMPTED, its KV kept, so
 * resuming recomputes only its last token), giving its running place to
 * waiting work, and its KV is the first a queued request gives up under
 * memory pressure. Safe inside on_token (it only marks the request).
 * -E_INVAL if no live request has that id. */
int sched_hold(struct sched *s, uint64_t id, int hold);

/* Ends parked sessions whose TTL has passed at time now (ts_now() seconds).
 * sched_step calls it first; an idle server calls it on a timer. Returns how
 * many ended. */
int sched_expire(struct sched *s, double now);

/* Ends the parked session session_id now (its full blocks stay in the prefix
 * cache). -E_INVAL if it is not parked, -E_BUSY if a live request holds it. */
int sched_session_end(struct sched *s, uint64_t session_id);

/* Runs one step. Returns the number of tokens forwarded (0 when idle), or -E_*
 * if the backend failed (every request in the batch is FAILED). */
int sched_step(struct sched *s, const struct sched_events *ev);

/* Requests running or waiting that a step can move (parked sessions and
 * held requests are not work). */
int sched_busy(const struct sched *s);

#endif
