/* sched: the request FSM, admission, continuous batching, chunked prefill,
 * preemption.
 *
 * Owns: every request (a fixed table of slots sized at boot: max_running
 * running plus max_queue waiting), their token storage, the KV pool's
 * bookkeeping, and the per-step batch arrays. One step: decodes first (one
 * token each), then prefill chunks of running requests, then newly admitted
 * requests, under max_batch_tokens; forward; sample; emit events. When the
 * KV pool runs dry the lowest-priority running request is preempted (its
 * blocks returned, recomputed later), never a crash.
 * Does not: do I/O or allocate after sched_init.
 * Threads: the engine thread only. Events are called on it, inside sched_step.
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
	double t_submit, t_first, t_done;
};

struct sched_events {
	void (*on_token)(void *ctx, const struct req *r, int32_t token);
	void (*on_done)(void *ctx, const struct req *r); /* terminal: DONE, CANCELLED or FAILED */
	void *ctx;
};

struct sched_limits {
	int max_running;
	int max_queue;
	int max_batch_tokens;
	int max_seq_len;
	int n_kv_blocks;
	int kv_block_tokens;
};

struct sched_stats {
	uint64_t steps;
	uint64_t prefill_tokens, decode_tokens;
	double prefill_s, decode_s;  /* time in steps with / without prefill chunks */
	uint64_t preemptions;
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
	int *running, n_running;    /* (max_running) slots, in admission order */
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
 * -E_BUSY when the queue is full. */
int sched_submit(struct sched *s, const struct sched_submit *a, uint64_t *id, struct ts_err *e);

/* Cancels a live request: its blocks return at once and on_done fires.
 * -E_INVAL if no live request has that id. */
int sched_cancel(struct sched *s, uint64_t id, const struct sched_events *ev);

/* Runs one step. Returns the number of tokens forwarded (0 when idle), or -E_*
 * if the backend failed (every request in the batch is FAILED). */
int sched_step(struct sched *s, const struct sched_events *ev);

static inline int sched_busy(const struct sched *s)
{
	return s->n_running + s->n_queue;
}

#endif
