/* t_fsm: the request FSM and the scheduler under every event sequence up to a
 * small depth (SQLite's habit: enumerate the state space instead of guessing
 * at it), with a null backend whose forward pass only checks the batch and
 * writes deterministic logits.
 *
 * Events: a plain submit (two "connections" take turns), a kept session's
 * turn (BUSY while its previous turn is live), a cancel, a disconnect (every
 * live request of connection 0 cancelled, as serve_eng does on CLOSE), a
 * preemption, a hold toggled (a client out of credit, then granting more:
 * a held request must compute nothing and leave running), a TTL expiry of every parked session, a drain (steps until
 * idle) and one step. The pool is tiny (6 blocks of 2 tokens, 2 running,
 * 2 waiting) so that admission, memory pressure, preemption, eviction of
 * parked sessions and BUSY all happen within a few events.
 *
 * After every event: the KV pool's own invariants (kv_pool_check), every slot
 * in exactly the list its state says (free, queue, running, parked), a
 * terminal slot holds no block, the parked count matches, every live request
 * the shadow model knows is in a slot, and no request got two terminal
 * events or a token after its terminal event. At the end of each sequence a
 * drain and a TTL expiry must leave every request ended exactly once, every
 * slot free and every block free.
 *
 * Depth: argv[1] (default T_FSM_DEPTH); the run prints how many sequences and
 * events it checked. */
#include "t.h"

#include "../src/sched.c"

#ifndef T_FSM_DEPTH
#define T_FSM_DEPTH 7
#endif

/* ------------------------------------------------------------ null backend */

#define VOCAB   16
#define BT      2 /* tokens per KV block */
#define NBLOCKS 6
#define MAX_SEQ 16

static int be_bad; /* batches the null backend found malformed */

static int null_forward(struct backend *b, const struct batch *bt, float *logits)
{
	for (int i = 0; i < bt->n_tokens; i++) {
		int q = bt->seq[i];
		if (q < 0 || q >= bt->n_seqs || bt->token[i] < 0 || bt->token[i] >= VOCAB ||
		    bt->pos[i] / BT >= bt->seqs[q].n_blocks)
			be_bad++;
		if (i > 0 && bt->seq[i] == bt->seq[i - 1] && bt->pos[i] != bt->pos[i - 1] + 1)
			be_bad++;
		for (int k = 0; k < bt->seqs[q].n_blocks; k++)
			if (bt->seqs[q].blocks[k] < 0 || bt->seqs[q].blocks[k] >= NBLOCKS)
				be_bad++;
	}
	/* greedy picks (token + pos + 1) % VOCAB: deterministic, never 0 */
	for (int l = 0; l < bt->n_logits; l++) {
		int row = bt->logit_rows[l];
		float *o = logits + (size_t)l * VOCAB;
		for (int v = 0; v < VOCAB; v++)
			o[v] = 0;
		o[1 + (bt->token[row] + bt->pos[row]) % (VOCAB - 1)] = 1;
	}
	return 0;
}

static const struct backend_ops null_ops = {.name = "null", .forward = null_forward};

/* ------------------------------------------------------------ shadow model */

#define MAX_IDS 256

struct shadow {
	int n_done[MAX_IDS];   /* on_done calls per request id */
	int late_tok[MAX_IDS]; /* on_token after on_done */
	int conn[MAX_IDS];     /* which "connection" submitted it */
	uint64_t last_id;      /* ids 1..last_id were accepted */
	int n_submits;
};

static struct shadow sh;
static struct model mdl;
static struct backend be;
static struct sched S;

static int on_token(void *ctx, const struct req *r, int32_t t)
{
	if (r->id < MAX_IDS && sh.n_done[r->id])
		sh.late_tok[r->id]++;
	return 0;
}

static void on_done(void *ctx, const struct req *r)
{
	if (r->id < MAX_IDS)
		sh.n_done[r->id]++;
}

static const struct sched_events EV = {on_token, on_done, NULL};

/* ------------------------------------------------------------ events */

enum ev_kind {
	E_SUBMIT,
	E_SESSION,
	E_APPEND,
	E_CANCEL,
	E_DISCONNECT,
	E_PREEMPT,
	E_HOLD,
	E_TTL,
	E_DRAIN,
	E_STEP,
	E_KINDS
};
static const char *const ev_names[E_KINDS] = {"submit",  "session", "append", "cancel", "disconnect",
                                              "preempt", "hold",    "ttl",    "drain",  "step"};

#define SESSION 0x5e55

static char fail_msg[2048];
static uint64_t n_busy, n_holds;

static int is_terminal(enum req_state st)
{
	return st == REQ_DONE || st == REQ_CANCELLED || st == REQ_FAILED;
}

/* The oldest request the shadow thinks live, or 0. */
static uint64_t oldest_live(int conn)
{
	for (uint64_t id = 1; id <= sh.last_id; id++)
		if (!sh.n_done[id] && (conn < 0 || sh.conn[id] == conn))
			return id;
	return 0;
}

static int slot_of(uint64_t id)
{
	for (int i = 0; i < S.n_slots; i++)
		if (S.reqs[i].id == id && !is_terminal(S.reqs[i].state))
			return i;
	return -1;
}

/* Submits: plain (session 0), a kept session's next turn as the whole
 * conversation (1) or as its new tokens appended (2). Checks that BUSY comes
 * exactly when it must, and an append without a parked session is refused. */
static int ev_submit(int session)
{
	int32_t prompt[4] = {1, 2, (int32_t)(1 + sh.n_submits % 3), 5};
	struct sched_submit a = {.prompt = prompt,
	                         .n_prompt = 3,
	                         .max_tokens = 3,
	                         .ignore_eos = 1,
	                         .priority = 1,
	                         .user = (uint64_t)(sh.n_submits & 1)};
	samp_params_default(&a.samp);
	a.samp.temperature = 0;
	if (session) {
		a.session_id = SESSION, a.keep = 1;
		int ps = session_slot(&S, SESSION);
		if (ps >= 0 && S.reqs[ps].state == REQ_PARKED) { /* the whole conversation, one more token */
			const struct req *p = &S.reqs[ps];
			if (p->n_tokens + 1 + 3 > MAX_SEQ)
				a.keep = 0;
			int n = TS_MIN(p->n_tokens, NBLOCKS * BT - 4); /* + 1 new + 3 generated fit the pool */
			static int32_t conv[MAX_SEQ];
			memcpy(conv, p->tokens, (size_t)n * sizeof(int32_t));
			conv[n] = 7;
			a.prompt = conv, a.n_prompt = n + 1;
			if (session == 2) {
				static const int32_t one = 9;
				a.append = 1, a.prompt = &one, a.n_prompt = 1;
				if (p->n_tokens + 1 + 3 > NBLOCKS * BT)
					a.max_tokens = 1;
				if (p->n_tokens + 1 + a.max_tokens > NBLOCKS * BT)
					return 0; /* would be refused E_RANGE: not this test's subject */
			}
		} else if (session == 2) {
			a.append = 1;
		}
	}
	int live_session =
	    session && session_slot(&S, SESSION) >= 0 && S.reqs[session_slot(&S, SESSION)].state != REQ_PARKED;
	int resumes = session && session_slot(&S, SESSION) >= 0 && !live_session;
	int full = !resumes && S.n_free == 0 && oldest_parked(&S) < 0;
	uint64_t id = 0;
	struct ts_err e = {0};
	int rc = sched_submit(&S, &a, &id, &e);
	sh.n_submits++;
	if (session == 2 && !live_session && !resumes) {
		if (rc != -E_INVAL) {
			snprintf(fail_msg, sizeof(fail_msg), "append with no parked session: rc %d, not E_INVAL", rc);
			return -1;
		}
		return 0;
	}
	if ((live_session || full) != (rc == -E_BUSY)) {
		snprintf(fail_msg, sizeof(fail_msg), "submit: rc %d (%s), expected BUSY=%d", rc, e.msg,
		         live_session || full);
		return -1;
	}
	if (rc == -E_BUSY) {
		n_busy++;
		return 0;
	}
	if (rc < 0 || id != sh.last_id + 1 || id >= MAX_IDS) {
		snprintf(fail_msg, sizeof(fail_msg), "submit: rc %d (%s), id %llu after %llu", rc, e.msg,
		         (unsigned long long)id, (unsigned long long)sh.last_id);
		return -1;
	}
	sh.last_id = id;
	sh.conn[id] = (int)a.user;
	return 0;
}

static int ev_cancel(uint64_t id)
{
	if (!id)
		return 0;
	int rc = sched_cancel(&S, id, &EV);
	if (rc != 0 || sh.n_done[id] != 1) {
		snprintf(fail_msg, sizeof(fail_msg), "cancel %llu: rc %d, done %d", (unsigned long long)id, rc,
		         sh.n_done[id]);
		return -1;
	}
	return 0;
}

/* One step; a held request must not compute, nor stay in running. */
static int ev_step(void)
{
	int n_tok[8];
	for (int i = 0; i < S.n_slots; i++)
		n_tok[i] = S.reqs[i].held ? S.reqs[i].n_tokens : -1;
	int rc = sched_step(&S, &EV);
	if (rc < 0) {
		snprintf(fail_msg, sizeof(fail_msg), "step: %d", rc);
		return -1;
	}
	for (int i = 0; i < S.n_slots; i++) {
		const struct req *r = &S.reqs[i];
		if (n_tok[i] >= 0 && r->held && !is_terminal(r->state) &&
		    (r->n_tokens != n_tok[i] || index_of(S.running, S.n_running, i) >= 0)) {
			snprintf(fail_msg, sizeof(fail_msg),
			         "held req %llu (%s) grew %d -> %d tokens or stayed running", (unsigned long long)r->id,
			         req_state_name(r->state), n_tok[i], r->n_tokens);
			return -1;
		}
	}
	return 0;
}

static int ev_drain(void)
{
	for (int i = 0; i < 200 && sched_busy(&S); i++)
		if (ev_step() < 0)
			return -1;
	if (sched_busy(&S)) {
		snprintf(fail_msg, sizeof(fail_msg), "drain: still %d running, %d queued after 200 steps", S.n_running,
		         S.n_queue);
		return -1;
	}
	return 0;
}

static int apply(enum ev_kind k)
{
	switch (k) {
	case E_SUBMIT:
		return ev_submit(0);
	case E_SESSION:
		return ev_submit(1);
	case E_APPEND:
		return ev_submit(2);
	case E_CANCEL:
		return ev_cancel(oldest_live(-1));
	case E_DISCONNECT:
		for (uint64_t id; (id = oldest_live(0)) != 0;)
			if (ev_cancel(id) < 0)
				return -1;
		return 0;
	case E_PREEMPT: {
		int v = victim(&S);
		if (v >= 0) {
			memset(S.b_chunk, 0, (size_t)S.n_running * sizeof(int));
			preempt(&S, v);
		}
		return 0;
	}
	case E_HOLD: { /* toggles the oldest live request's hold (a client out of credit, then granting) */
		uint64_t id = oldest_live(-1);
		int slot = id ? slot_of(id) : -1;
		if (slot >= 0 && sched_hold(&S, id, !S.reqs[slot].held) != 0) {
			snprintf(fail_msg, sizeof(fail_msg), "hold %llu refused", (unsigned long long)id);
			return -1;
		}
		n_holds += slot >= 0;
		return 0;
	}
	case E_TTL:
		sched_expire(&S, ts_now() + 1e7);
		return 0;
	case E_DRAIN:
		return ev_drain();
	case E_STEP:
		return ev_step();
	case E_KINDS:
		break;
	}
	return -1;
}

/* ------------------------------------------------------------ invariants */

static int check(void)
{
	struct ts_err e = {0};
	if (kv_pool_check(&S.kv, &e) < 0) {
		snprintf(fail_msg, sizeof(fail_msg), "%s", e.msg);
		return -1;
	}
	if (be_bad) {
		snprintf(fail_msg, sizeof(fail_msg), "the backend got a malformed batch");
		return -1;
	}
	int n_parked_state = 0, n_live = 0;
	for (int i = 0; i < S.n_slots; i++) {
		const struct req *r = &S.reqs[i];
		int in_free = index_of(S.free_slots, S.n_free, i) >= 0, in_q = index_of(S.queue, S.n_queue, i) >= 0;
		int in_run = index_of(S.running, S.n_running, i) >= 0, in_park = index_of(S.parked, S.n_parked, i) >= 0;
		int ok;
		switch (r->state) {
		case REQ_QUEUED:
		case REQ_PREEMPTED:
			ok = in_q && !in_free && !in_run && !in_park;
			break;
		case REQ_PREFILL:
		case REQ_DECODE:
			ok = in_run && !in_free && !in_q && !in_park;
			break;
		case REQ_PARKED:
			ok = (in_run ^ in_park) && !in_free && !in_q;
			break;
		case REQ_DONE:
		case REQ_CANCELLED:
		case REQ_FAILED:
			ok = in_free && !in_q && !in_run && !in_park && kv_seq_blocks(&S.kv, i) == 0;
			break;
		default:
			ok = 0;
		}
		if (!ok) {
			snprintf(fail_msg, sizeof(fail_msg),
			         "slot %d req %llu %s: free %d queue %d running %d parked %d blocks %d", i,
			         (unsigned long long)r->id, req_state_name(r->state), in_free, in_q, in_run, in_park,
			         kv_seq_blocks(&S.kv, i));
			return -1;
		}
		n_parked_state += r->state == REQ_PARKED;
		if (!is_terminal(r->state) && r->state != REQ_PARKED) {
			n_live++;
			if (r->id == 0 || r->id > sh.last_id || sh.n_done[r->id]) {
				snprintf(fail_msg, sizeof(fail_msg),
				         "slot %d holds req %llu (%s) that ended or never was", i,
				         (unsigned long long)r->id, req_state_name(r->state));
				return -1;
			}
		}
		if (r->state == REQ_PARKED && (r->id == 0 || sh.n_done[r->id] != 1)) {
			snprintf(fail_msg, sizeof(fail_msg), "parked req %llu: %d terminal events",
			         (unsigned long long)r->id, sh.n_done[r->id]);
			return -1;
		}
	}
	int n_used = S.n_slots - S.n_free;
	if (n_parked_state != S.n_sessions_parked || S.n_queue + S.n_running + S.n_parked < n_used ||
	    S.n_queue + S.n_running + S.n_parked > n_used + n_parked_state) {
		snprintf(fail_msg, sizeof(fail_msg),
		         "slot counts: free %d queue %d running %d parked %d (state %d, count %d)", S.n_free, S.n_queue,
		         S.n_running, S.n_parked, n_parked_state, S.n_sessions_parked);
		return -1;
	}
	int shadow_live = 0;
	for (uint64_t id = 1; id <= sh.last_id; id++) {
		if (sh.n_done[id] > 1 || sh.late_tok[id]) {
			snprintf(fail_msg, sizeof(fail_msg), "req %llu: %d terminal events, %d tokens after the end",
			         (unsigned long long)id, sh.n_done[id], sh.late_tok[id]);
			return -1;
		}
		if (!sh.n_done[id]) {
			shadow_live++;
			if (slot_of(id) < 0) {
				snprintf(fail_msg, sizeof(fail_msg), "req %llu lost: live but in no slot",
				         (unsigned long long)id);
				return -1;
			}
		}
	}
	if (shadow_live != n_live) {
		snprintf(fail_msg, sizeof(fail_msg), "%d live requests in slots, %d expected", n_live, shadow_live);
		return -1;
	}
	return 0;
}

/* After the sequence: drain, expire every session, and nothing may remain. */
static int check_end(void)
{
	for (int i = 0; i < S.n_slots; i++) /* the client grants credit again */
		if (S.reqs[i].held && !is_terminal(S.reqs[i].state) && S.reqs[i].state != REQ_PARKED)
			sched_hold(&S, S.reqs[i].id, 0);
	if (ev_drain() < 0 || check() < 0)
		return -1;
	sched_expire(&S, ts_now() + 1e7);
	if (check() < 0)
		return -1;
	for (uint64_t id = 1; id <= sh.last_id; id++)
		if (sh.n_done[id] != 1) {
			snprintf(fail_msg, sizeof(fail_msg), "req %llu: %d terminal events at the end",
			         (unsigned long long)id, sh.n_done[id]);
			return -1;
		}
	if (S.n_free != S.n_slots || S.kv.n_free != S.kv.n_blocks || S.n_sessions_parked) {
		snprintf(fail_msg, sizeof(fail_msg), "at the end: %d/%d slots free, %d/%d blocks free, %d parked",
		         S.n_free, S.n_slots, S.kv.n_free, S.kv.n_blocks, S.n_sessions_parked);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ enumeration */

static uint64_t n_seqs, n_events, n_failed, n_preempted, n_evicted, n_expired, n_resumed;

static void fresh(void)
{
	struct sched_limits l = {.max_running = 2,
	                         .max_queue = 2,
	                         .max_batch_tokens = 4,
	                         .max_seq_len = MAX_SEQ,
	                         .n_kv_blocks = NBLOCKS,
	                         .kv_block_tokens = BT,
	                         .park_ttl_ms = 1000000000};
	struct ts_err e = {0};
	memset(&sh, 0, sizeof(sh));
	be_bad = 0;
	if (sched_init(&S, &l, &mdl, &be, &e) < 0) {
		fprintf(stderr, "sched_init: %s\n", e.msg);
		exit(1);
	}
}

static void run_seq(const int *seq, int depth)
{
	fresh();
	int rc = 0, at = 0;
	for (; at < depth && rc == 0; at++) {
		rc = apply((enum ev_kind)seq[at]);
		n_events++;
		if (rc == 0)
			rc = check();
	}
	if (rc == 0)
		rc = check_end();
	n_seqs++;
	n_preempted += S.st.preemptions;
	n_evicted += S.st.sessions_evicted;
	n_expired += S.st.sessions_expired;
	n_resumed += S.st.sessions_resumed;
	if (rc < 0) {
		if (n_failed++ < 5) {
			fprintf(stderr, "FAIL sequence:");
			for (int i = 0; i < depth; i++)
				fprintf(stderr, " %s%s", ev_names[seq[i]], i == at - 1 ? "<-" : "");
			fprintf(stderr, ": %s\n", fail_msg);
		}
	}
	sched_free(&S);
}

int main(int argc, char **argv)
{
	int depth = argc > 1 ? atoi(argv[1]) : T_FSM_DEPTH;
	mdl.d.vocab = VOCAB;
	be.ops = &null_ops;
	be.m = &mdl;
	log_set_level(LOG_ERROR);

	/* The checks must be able to fail: a slot leaked by hand is found. */
	fresh();
	T_CHECK(ev_submit(0) == 0 && check() == 0, "one submit: %s", fail_msg);
	S.n_free--; /* a slot lost */
	T_CHECK(check() < 0 && strstr(fail_msg, "slot"), "a lost slot is caught (%s)", fail_msg);
	S.n_free++;
	sh.n_done[1] = 2;
	T_CHECK(check() < 0, "a double terminal event is caught (%s)", fail_msg);
	sh.n_done[1] = 0;
	S.kv.n_free--;
	T_CHECK(check() < 0 && strstr(fail_msg, "kv"), "a lost block is caught (%s)", fail_msg);
	S.kv.n_free++;
	sched_free(&S);

	double t0 = ts_now();
	int seq[16] = {0};
	for (int d = 1; d <= depth; d++) {
		/* every sequence of length d, in lexicographic order */
		memset(seq, 0, sizeof(seq));
		for (;;) {
			run_seq(seq, d);
			int i = d - 1;
			while (i >= 0 && ++seq[i] == E_KINDS)
				seq[i--] = 0;
			if (i < 0)
				break;
		}
	}
	double dt = ts_now() - t0;
	T_CHECK(n_failed == 0, "%llu of %llu sequences broke an invariant", (unsigned long long)n_failed,
	        (unsigned long long)n_seqs);
	/* the space is worth enumerating only if the interesting paths happen */
	T_CHECK(n_preempted > 0 && n_evicted > 0 && n_expired > 0 && n_resumed > 0 && n_busy > 0 && n_holds > 0,
	        "holds %llu, busy %llu, preemptions %llu, sessions evicted %llu, expired %llu, resumed %llu",
	        (unsigned long long)n_holds, (unsigned long long)n_busy, (unsigned long long)n_preempted,
	        (unsigned long long)n_evicted, (unsigned long long)n_expired, (unsigned long long)n_resumed);
	printf("#> t_fsm: %d event kinds, every sequence of depth 1..%d: %llu sequences, %llu events, %.1f s "
	       "(holds %llu, BUSY %llu, preemptions %llu, sessions resumed %llu, evicted %llu, expired %llu)\n",
	       E_KINDS, depth, (unsigned long long)n_seqs, (unsigned long long)n_events, dt,
	       (unsigned long long)n_holds, (unsigned long long)n_busy, (unsigned long long)n_preempted,
	       (unsigned long long)n_resumed, (unsigned long long)n_evicted, (unsigned long long)n_expired);
	return T_DONE();
}
