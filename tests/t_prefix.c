/* t_prefix: KV reuse end to end on the CPU backend with llama3-mini, and
 * (a), (b) and (e) again with an MLA + MoE model (dsv3-mini) and a GQA + MoE
 * one (qwen3moe-mini), whose caches hold another layout.
 * (a) requests sharing a prefix reuse its full blocks and give the same
 *     tokens as on a cold engine, whole-prompt hits back off one block, and
 *     blocks filled while decoding are reused too;
 * (b) a kept session: turn 2 sends only its new tokens (or the whole
 *     conversation), prefills only those, and gives the tokens of one request
 *     with the whole conversation on a fresh engine;
 * (c) a TTL ends a parked session and its blocks come back;
 * (d) memory and slot pressure end parked sessions to admit new work;
 * (e) a randomized multi-session run on a tiny pool: every turn equals its
 *     reference, nothing deadlocks, nothing leaks, nothing is allocated;
 * (f) a step where every running request waits on blocks another holds;
 * (g) a preemption inside a step never grows the batch past its budget.
 * Every step forwards at most max_batch_tokens.
 * Hybrid models (qwen3next-mini, qwen35moe-mini: recurrent state beside the
 * KV): no prefix reuse across requests (h), and (b) and (e) again: a kept
 * session's next turn continues its state and equals a fresh run of the whole
 * conversation, a divergent one recomputes from 0, and every state slot comes
 * back after cancels, preemptions, evictions and ends; a request short of a
 * state slot takes the least recently parked session's (t_hybrid_states). */
#include "t.h"
#include "tutil.h"

#define MAXT 40
#define NU 16

struct run {
	int32_t toks[NU][MAXT];
	int n[NU];
	int done[NU], state[NU], n_cached[NU], n_prompt[NU];
	int n_done;
};

static const char *dir;
static int hybrid; /* the model has recurrent layers (state slots, no prefix cache) */
static struct engine en, ref;

static int on_tok(void *ctx, const struct req *r, int32_t t)
{
	struct run *u = ctx;
	if (u->n[r->user] < MAXT)
		u->toks[r->user][u->n[r->user]++] = t;
	return 0;
}

static void on_done(void *ctx, const struct req *r)
{
	struct run *u = ctx;
	u->done[r->user]++;
	u->state[r->user] = r->state;
	u->n_cached[r->user] = r->n_cached;
	u->n_prompt[r->user] = r->n_prompt;
	u->n_done++;
}

static void params(int i, struct samp_params *p)
{
	samp_params_default(p);
	p->seed = 1000u + (uint64_t)i;
	switch (i % 4) {
	case 0:
		break; /* greedy */
	case 1:
		p->temperature = 0.8f, p->top_p = 0.9f;
		break;
	case 2:
		p->temperature = 0.7f, p->repetition_penalty = 1.3f, p->presence_penalty = 0.5f,
		p->frequency_penalty = 0.3f;
		break;
	default:
		p->temperature = 1.0f, p->top_k = 20;
		break;
	}
}

static void boot(struct engine *e_, int max_running, int max_queue, int max_batch_tokens, int kv_tokens)
{
	struct cfg c;
	struct ts_err e = {0};
	t_cfg(&c, dir);
	c.engine.max_running = max_running;
	c.engine.max_queue = max_queue;
	c.engine.max_batch_tokens = max_batch_tokens;
	c.engine.kv_tokens = kv_tokens;
	c.engine.kv_block_tokens = 16;
	c.engine.max_seq_len = 128;
	if (engine_boot(e_, &c, &e) < 0) {
		fprintf(stderr, "boot: %s\n", e.msg);
		exit(1);
	}
}

struct sub {
	const int32_t *prompt;
	int n;
	int max_tokens;
	int samp;       /* params() index */
	uint64_t sid;
	int keep, append;
};

static int submit(struct engine *e_, int user, const struct sub *b, struct ts_err *e)
{
	struct sched_submit s = {.prompt = b->prompt, .n_prompt = b->n, .max_tokens = b->max_tokens, .ignore_eos = 1,
				 .user = (uint64_t)user, .session_id = b->sid, .keep = b->keep, .append = b->append};
	params(b->samp, &s.samp);
	return sched_submit(&e_->s, &s, NULL, e);
}

/* Steps until n requests ended in all; returns ts_alloc calls made meanwhile. */
static uint64_t drain(struct engine *e_, struct run *u, int n)
{
	struct sched_events ev = {on_tok, on_done, u};
	uint64_t a0 = ts_alloc_count();
	int guard = 0;
	for (; u->n_done < n && guard < 20000; guard++) {
		int r = sched_step(&e_->s, &ev);
		T_CHECK(r >= 0 && r <= e_->s.lim.max_batch_tokens, "step forwarded %d tokens", r);
	}
	T_CHECK(guard < 20000, "no progress: %d of %d requests ended (deadlock?)", u->n_done, n);
	return ts_alloc_count() - a0;
}

/* Steps until nothing runs (a parked turn stores its last token). */
static void settle(struct engine *e_, struct run *u)
{
	struct sched_events ev = {on_tok, on_done, u};
	for (int guard = 0; sched_busy(&e_->s) && guard < 1000; guard++)
		sched_step(&e_->s, &ev);
	T_CHECK(!sched_busy(&e_->s), "did not settle");
}

/* The tokens of one request alone on a fresh engine with a cold cache. */
static void reference(const int32_t *prompt, int n, int max_tokens, int samp, int32_t *out)
{
	static struct run u;
	struct ts_err e = {0};
	struct sub b = {prompt, n, max_tokens, samp, 0, 0, 0};
	memset(&u, 0, sizeof(u));
	boot(&ref, 1, 1, 128, 8 * 128);
	T_CHECK(submit(&ref, 0, &b, &e) == 0, "reference submit: %s", e.msg);
	drain(&ref, &u, 1);
	T_CHECK(u.n[0] == max_tokens, "reference made %d tokens, want %d", u.n[0], max_tokens);
	memcpy(out, u.toks[0], (size_t)max_tokens * sizeof(int32_t));
	engine_stop(&ref);
}

static uint64_t rng = 42;
static int32_t rtok(void)
{
	rng = rng * 6364136223846793005ull + 1442695040888963407ull;
	return (int32_t)(3 + (rng >> 33) % 500); /* below every preset's vocab (512) */
}

static void check_quiet(struct engine *e_, const char *what)
{
	struct ts_err e = {0};
	T_CHECK(kv_pool_check(&e_->s.kv, &e) == 0, "%s: %s", what, e.msg);
	T_CHECK(e_->s.kv.n_free == e_->s.kv.n_blocks, "%s: blocks leaked: %d of %d free", what, e_->s.kv.n_free,
		e_->s.kv.n_blocks);
	T_CHECK(e_->s.kv.n_empty + e_->s.kv.n_lru == e_->s.kv.n_blocks, "%s: empty %d + cached %d != %d", what,
		e_->s.kv.n_empty, e_->s.kv.n_lru, e_->s.kv.n_blocks);
	T_CHECK(e_->s.kv.n_states_free == e_->s.kv.n_states, "%s: state slots leaked: %d of %d free", what,
		e_->s.kv.n_states_free, e_->s.kv.n_states);
	T_CHECK(hybrid == (e_->s.kv.n_states > 0), "%s: %d state slots on a %s model", what, e_->s.kv.n_states,
		hybrid ? "hybrid" : "non-recurrent");
}

/* ------------------------------------------------------------ (h) hybrid: no prefix reuse */

/* A recurrent state cannot be rewound to a block boundary, and no snapshots
 * are kept: a request sharing a long prefix with an earlier one computes it
 * all and gives the tokens of a cold engine; a cancel returns its state. */
static void t_hybrid_prefix(void)
{
	static struct run u;
	static int32_t R[2][60], want[2][MAXT];
	struct ts_err e = {0};
	for (int i = 0; i < 60; i++)
		R[0][i] = R[1][i] = rtok();
	R[1][59] = R[0][59] + 1;
	for (int i = 0; i < 2; i++)
		reference(R[i], 60, 8, i, want[i]);
	boot(&en, 4, 4, 64, 16 * 16);
	T_CHECK(en.s.kv.prefix_off == 1, "prefix cache on for a hybrid model");
	memset(&u, 0, sizeof(u));
	for (int i = 0; i < 2; i++) {
		struct sub b = {R[i], 60, 8, i, 0, 0, 0};
		T_CHECK(submit(&en, i, &b, &e) == 0, "submit: %s", e.msg);
		drain(&en, &u, i + 1);
		T_CHECK(u.n_cached[i] == 0, "request %d reused %d tokens of a hybrid model", i, u.n_cached[i]);
		T_CHECK(!memcmp(u.toks[i], want[i], 8 * 4), "request %d differs from a cold engine", i);
	}
	T_CHECK(en.s.kv.st.hit_blocks == 0, "%llu prefix hits", (unsigned long long)en.s.kv.st.hit_blocks);
	/* a cancel mid-decode returns its state slot */
	uint64_t id = 0;
	struct sched_submit sb = {.prompt = R[0], .n_prompt = 60, .max_tokens = 30, .ignore_eos = 1, .user = 2};
	samp_params_default(&sb.samp);
	T_CHECK(sched_submit(&en.s, &sb, &id, &e) == 0, "submit: %s", e.msg);
	struct sched_events ev = {on_tok, on_done, &u};
	while (u.n[2] < 3)
		sched_step(&en.s, &ev);
	T_CHECK(en.s.kv.n_states_free == en.s.kv.n_states - 1, "a running request holds %d state slots",
		en.s.kv.n_states - en.s.kv.n_states_free);
	T_CHECK(sched_cancel(&en.s, id, &ev) == 0, "cancel");
	check_quiet(&en, "hybrid prefix");
	engine_stop(&en);
}

/* ------------------------------------------------------------ (a) shared prefixes */

static void t_shared_prefix(void)
{
	static struct run u;
	static int32_t R[4][80], want[4][MAXT];
	const int len[4] = {60, 57, 64, 65};
	const int NT = 16;
	struct ts_err e = {0};
	for (int j = 0; j < 48; j++)
		R[0][j] = rtok();
	for (int i = 1; i < 3; i++)
		memcpy(R[i], R[0], 48 * sizeof(int32_t));
	for (int i = 0; i < 3; i++)
		for (int j = 48; j < len[i]; j++)
			R[i][j] = rtok();

	for (int s = 0; s < 2; s++) { /* greedy, then seeded top-p */
		for (int i = 0; i < 3; i++)
			reference(R[i], len[i], NT, s, want[i]);
		boot(&en, 4, 8, 64, 16 * 16);
		/* R0 cold, then R1 reuses the 48-token prefix: 3 full blocks */
		struct sub b = {R[0], len[0], NT, s, 0, 0, 0};
		memset(&u, 0, sizeof(u));
		T_CHECK(submit(&en, 0, &b, &e) == 0, "submit: %s", e.msg);
		uint64_t allocs = drain(&en, &u, 1);
		T_CHECK(u.n_cached[0] == 0, "a cold engine reported %d cached tokens", u.n_cached[0]);
		T_CHECK(!memcmp(u.toks[0], want[0], NT * 4), "R0 differs from its reference");
		uint64_t pf = en.s.st.prefill_tokens;
		b = (struct sub){R[1], len[1], NT, s, 0, 0, 0};
		T_CHECK(submit(&en, 1, &b, &e) == 0, "submit: %s", e.msg);
		allocs += drain(&en, &u, 2);
		T_CHECK(u.n_cached[1] >= 32 && u.n_cached[1] == 48, "R1 reused %d tokens, want 48", u.n_cached[1]);
		T_CHECK(en.s.st.prefill_tokens - pf == (uint64_t)(len[1] - 48), "R1 prefilled %llu tokens, want %d",
			(unsigned long long)(en.s.st.prefill_tokens - pf), len[1] - 48);
		T_CHECK(!memcmp(u.toks[1], want[1], NT * 4), "R1 (prefix from cache) differs from a cold run");
		/* R2 is 64 tokens, 4 full blocks: after one run it is wholly
		 * cached, but its last token must be computed in a block of its
		 * own, so the second run reuses 3 blocks and recomputes 16 tokens */
		for (int k = 0; k < 2; k++) {
			b = (struct sub){R[2], len[2], NT, s, 0, 0, 0};
			T_CHECK(submit(&en, 2 + k, &b, &e) == 0, "submit: %s", e.msg);
			pf = en.s.st.prefill_tokens;
			allocs += drain(&en, &u, 3 + k);
			T_CHECK(u.n_cached[2 + k] == 48, "R2 run %d reused %d tokens, want 48", k, u.n_cached[2 + k]);
			T_CHECK(en.s.st.prefill_tokens - pf == 16, "R2 run %d prefilled %llu tokens, want 16", k,
				(unsigned long long)(en.s.st.prefill_tokens - pf));
			T_CHECK(!memcmp(u.toks[2 + k], want[2], NT * 4), "R2 run %d differs from a cold run", k);
		}
		/* blocks filled while decoding are cached too: R0 + its first 5
		 * generated tokens (65 tokens) finds 4 full blocks, and goes on as
		 * R0 did (the draw is keyed by seed and position) */
		memcpy(R[3], R[0], (size_t)len[0] * 4);
		memcpy(R[3] + len[0], u.toks[0], 5 * 4);
		b = (struct sub){R[3], len[3], NT, s, 0, 0, 0};
		T_CHECK(submit(&en, 4, &b, &e) == 0, "submit: %s", e.msg);
		allocs += drain(&en, &u, 5);
		T_CHECK(u.n_cached[4] == 64, "R0 + 5 generated reused %d tokens, want 64", u.n_cached[4]);
		T_CHECK(!memcmp(u.toks[4], u.toks[0] + 5, (NT - 5) * 4), "continuing R0 from cache lost its tokens");
		T_CHECK(allocs == 0, "%llu allocations after ready", (unsigned long long)allocs);
		T_CHECK(en.s.kv.st.hit_blocks >= 3 + 3 + 3 + 4, "cache hits: %llu", (unsigned long long)en.s.kv.st.hit_blocks);
		T_CHECK(en.s.st.cached_tokens == 48 + 48 + 48 + 64, "cached_tokens stat %llu",
			(unsigned long long)en.s.st.cached_tokens);
		check_quiet(&en, "shared prefix");
		engine_stop(&en);

		/* the same two at once: neither finds the other in the cache; the
		 * second to publish shares the first one's blocks */
		boot(&en, 4, 8, 128, 16 * 16);
		memset(&u, 0, sizeof(u));
		for (int i = 0; i < 2; i++) {
			b = (struct sub){R[i], len[i], NT, s, 0, 0, 0};
			T_CHECK(submit(&en, i, &b, &e) == 0, "submit: %s", e.msg);
		}
		drain(&en, &u, 2);
		for (int i = 0; i < 2; i++)
			T_CHECK(!memcmp(u.toks[i], want[i], NT * 4), "R%d beside R%d differs", i, 1 - i);
		T_CHECK(en.s.kv.st.dedups == 3, "dedups %llu, want 3", (unsigned long long)en.s.kv.st.dedups);
		check_quiet(&en, "concurrent");
		engine_stop(&en);
	}
}

/* ------------------------------------------------------------ (b) sessions */

#define L1 20
#define N1 12
#define L2 9
#define N2 10

static int32_t P1[L1], P2[L2], Q[10], conv[128];
static int32_t gen1[4][N1], want2[4][N2], wantq[4][N2];

/* Turn 1 of session sid on en: P1, N1 tokens, kept. */
static void turn1(struct run *u, int user, int s, uint64_t sid)
{
	struct ts_err e = {0};
	struct sub b = {P1, L1, N1, s, sid, 1, 0};
	T_CHECK(submit(&en, user, &b, &e) == 0, "turn 1: %s", e.msg);
	drain(&en, u, u->n_done + 1);
	T_CHECK(u->state[user] == REQ_PARKED, "turn 1 ended %s, want PARKED", req_state_name(u->state[user]));
	T_CHECK(!memcmp(u->toks[user], gen1[s], N1 * 4), "turn 1 differs from its reference");
}

static void t_sessions(void)
{
	static struct run u;
	struct ts_err e = {0};
	for (int i = 0; i < L1; i++)
		P1[i] = rtok();
	for (int i = 0; i < L2; i++)
		P2[i] = rtok();
	for (int s = 0; s < 3; s++) {
		reference(P1, L1, N1, s, gen1[s]);
		memcpy(conv, P1, sizeof(P1));
		memcpy(conv + L1, gen1[s], sizeof(gen1[s]));
		memcpy(conv + L1 + N1, P2, sizeof(P2));
		reference(conv, L1 + N1 + L2, N2, s, want2[s]);
		/* a divergent second turn: P1 then Q, where Q does not start with gen1 */
		for (int i = 0; i < 10; i++)
			Q[i] = rtok();
		if (Q[0] == gen1[s][0])
			Q[0] = gen1[s][0] + 1;
		memcpy(conv + L1, Q, sizeof(Q));
		reference(conv, L1 + 10, N2, s, wantq[s]);

		boot(&en, 4, 8, 64, 16 * 16);
		memset(&u, 0, sizeof(u));
		/* append: turn 2 sends only P2 */
		turn1(&u, 0, s, 7);
		T_CHECK(en.s.n_sessions_parked == 1 && sched_busy(&en.s) == 1, "parked turn not storing its last token");
		settle(&en, &u);
		int slot = en.s.parked[0];
		T_CHECK(en.s.n_parked == 1 && en.s.reqs[slot].n_computed == L1 + N1 && en.s.reqs[slot].n_tokens == L1 + N1,
			"parked KV covers %d of %d tokens", en.s.reqs[slot].n_computed, en.s.reqs[slot].n_tokens);
		T_CHECK(u.done[0] == 1, "turn 1 reported %d times", u.done[0]);
		/* while parked: a cancel of its request id is refused, the session stays */
		T_CHECK(sched_cancel(&en.s, en.s.reqs[slot].id, NULL) == -E_INVAL, "cancel of a parked turn accepted");
		uint64_t pf = en.s.st.prefill_tokens, dc = en.s.st.decode_tokens;
		struct sub b = {P2, L2, N2, s, 7, 0, 1};
		T_CHECK(submit(&en, 1, &b, &e) == 0, "turn 2: %s", e.msg);
		/* live: the session is busy */
		b.keep = 1;
		T_CHECK(submit(&en, 9, &b, &e) == -E_BUSY, "a live session accepted another turn");
		T_HAS(e.msg, "in use");
		uint64_t allocs = drain(&en, &u, 2);
		T_CHECK(u.n_cached[1] == L1 + N1, "turn 2 reused %d tokens, want %d", u.n_cached[1], L1 + N1);
		T_CHECK(u.n_prompt[1] == L1 + N1 + L2, "turn 2 prompt %d", u.n_prompt[1]);
		T_CHECK(en.s.st.prefill_tokens - pf == L2, "turn 2 prefilled %llu tokens, want %d",
			(unsigned long long)(en.s.st.prefill_tokens - pf), L2);
		T_CHECK(en.s.st.decode_tokens - dc == N2 - 1, "turn 2 decoded %llu tokens",
			(unsigned long long)(en.s.st.decode_tokens - dc));
		T_CHECK(!memcmp(u.toks[1], want2[s], N2 * 4), "turn 2 (samp %d) differs from one whole request", s);
		T_CHECK(u.state[1] == REQ_DONE, "turn 2 without keep ended %s", req_state_name(u.state[1]));
		T_CHECK(en.s.n_sessions_parked == 0 && en.s.st.sessions_resumed == 1, "session bookkeeping");
		T_CHECK(allocs == 0, "%llu allocations", (unsigned long long)allocs);
		check_quiet(&en, "session ended");

		/* full prompt (PROTOCOL.md): turn 2 sends the whole conversation */
		memset(&u, 0, sizeof(u));
		turn1(&u, 0, s, 8);
		settle(&en, &u);
		memcpy(conv + L1, gen1[s], sizeof(gen1[s]));
		memcpy(conv + L1 + N1, P2, sizeof(P2));
		pf = en.s.st.prefill_tokens;
		b = (struct sub){conv, L1 + N1 + L2, N2, s, 8, 0, 0};
		T_CHECK(submit(&en, 1, &b, &e) == 0, "turn 2 full: %s", e.msg);
		drain(&en, &u, 2);
		T_CHECK(u.n_cached[1] == L1 + N1, "full turn 2 reused %d tokens, want %d", u.n_cached[1], L1 + N1);
		T_CHECK(en.s.st.prefill_tokens - pf == L2, "full turn 2 prefilled %llu",
			(unsigned long long)(en.s.st.prefill_tokens - pf));
		T_CHECK(!memcmp(u.toks[1], want2[s], N2 * 4), "full turn 2 differs");

		/* turn 2 before turn 1 stored its last token: that token goes with
		 * the new ones */
		memset(&u, 0, sizeof(u));
		turn1(&u, 0, s, 9);
		b = (struct sub){P2, L2, N2, s, 9, 0, 1};
		T_CHECK(submit(&en, 1, &b, &e) == 0, "turn 2 at once: %s", e.msg);
		drain(&en, &u, 2);
		T_CHECK(u.n_cached[1] == L1 + N1 - 1, "turn 2 at once reused %d", u.n_cached[1]);
		T_CHECK(!memcmp(u.toks[1], want2[s], N2 * 4), "turn 2 at once differs");

		/* a divergent whole conversation: the parked KV serves the common
		 * prefix up to the last block it may keep: P1 is 20 tokens, but
		 * position 20 lies in a published block, so 16 are kept */
		memset(&u, 0, sizeof(u));
		turn1(&u, 0, s, 10);
		settle(&en, &u);
		memcpy(conv + L1, Q, sizeof(Q));
		b = (struct sub){conv, L1 + 10, N2, s, 10, 1, 0};
		T_CHECK(submit(&en, 1, &b, &e) == 0, "divergent turn: %s", e.msg);
		drain(&en, &u, 2);
		/* hybrid: the state holds all 30 positions and cannot be rewound to 20: recomputed */
		T_CHECK(u.n_cached[1] == (hybrid ? 0 : 16), "divergent turn reused %d, want %d", u.n_cached[1],
			hybrid ? 0 : 16);
		T_CHECK(!memcmp(u.toks[1], wantq[s], N2 * 4), "divergent turn differs");
		T_CHECK(u.state[1] == REQ_PARKED, "kept divergent turn ended %s", req_state_name(u.state[1]));
		settle(&en, &u);
		T_CHECK(sched_session_end(&en.s, 10) == 0, "session_end");
		T_CHECK(sched_session_end(&en.s, 10) == -E_INVAL, "second session_end");
		check_quiet(&en, "sessions");

		/* refusals, each naming the problem */
		b = (struct sub){P2, L2, N2, s, 11, 0, 1};
		T_CHECK(submit(&en, 1, &b, &e) == -E_INVAL, "append to an unknown session accepted");
		T_HAS(e.msg, "no parked KV");
		b = (struct sub){P2, L2, N2, s, 0, 1, 0};
		T_CHECK(submit(&en, 1, &b, &e) == -E_INVAL, "keep without a session accepted");
		T_HAS(e.msg, "session_id");
		engine_stop(&en);
	}

	/* three turns on one session, each appended, against whole requests.
	 * The references come first (the conversation grows by them): one CPU
	 * engine alive at a time. */
	static int32_t add3[3][12], want3[3][N2];
	int n_conv = 0, at[3];
	for (int t = 0; t < 3; t++) {
		int n_add = 5 + 3 * t;
		at[t] = n_conv;
		for (int i = 0; i < n_add; i++)
			add3[t][i] = conv[n_conv + i] = rtok();
		reference(conv, n_conv + n_add, N2, 2, want3[t]);
		memcpy(conv + n_conv + n_add, want3[t], sizeof(want3[t]));
		n_conv += n_add + N2;
	}
	boot(&en, 4, 8, 64, 16 * 16);
	memset(&u, 0, sizeof(u));
	for (int t = 0; t < 3; t++) {
		struct sub b = {add3[t], 5 + 3 * t, N2, 2, 77, t < 2, t > 0};
		T_CHECK(submit(&en, t, &b, &e) == 0, "turn %d: %s", t, e.msg);
		drain(&en, &u, t + 1);
		settle(&en, &u);
		T_CHECK(u.n_cached[t] == at[t], "turn %d reused %d, want %d", t, u.n_cached[t], at[t]);
		T_CHECK(!memcmp(u.toks[t], want3[t], sizeof(want3[t])), "turn %d differs from one whole request", t);
	}
	T_CHECK(u.state[2] == REQ_DONE && en.s.n_sessions_parked == 0, "the last turn without keep did not end it");
	check_quiet(&en, "three turns");
	engine_stop(&en);
}

/* Hybrid: with max_running 1 the pool has 2 state slots. Two kept sessions
 * park holding both; a third request, short of a state, ends the least
 * recently parked session (its tokens still right), and the survivor's next
 * turn still continues its own state. */
static void t_hybrid_states(void)
{
	static struct run u;
	static int32_t A[12], B[12], C[12], A2[4], want[3][8], wantb[8], convb[32];
	struct ts_err e = {0};
	for (int i = 0; i < 12; i++)
		A[i] = rtok(), B[i] = rtok(), C[i] = rtok();
	for (int i = 0; i < 4; i++)
		A2[i] = rtok();
	reference(A, 12, 8, 0, want[0]);
	reference(B, 12, 8, 1, want[1]);
	reference(C, 12, 8, 2, want[2]);
	memcpy(convb, B, sizeof(B));
	memcpy(convb + 12, want[1], sizeof(want[1]));
	memcpy(convb + 20, A2, sizeof(A2));
	reference(convb, 24, 8, 1, wantb);
	boot(&en, 1, 4, 64, 16 * 16);
	T_CHECK(en.s.kv.n_states == 2, "%d state slots for max_running 1, want 2", en.s.kv.n_states);
	memset(&u, 0, sizeof(u));
	struct sub b = {A, 12, 8, 0, 31, 1, 0};
	T_CHECK(submit(&en, 0, &b, &e) == 0, "session A: %s", e.msg);
	drain(&en, &u, 1);
	settle(&en, &u);
	b = (struct sub){B, 12, 8, 1, 32, 1, 0};
	T_CHECK(submit(&en, 1, &b, &e) == 0, "session B: %s", e.msg);
	drain(&en, &u, 2);
	settle(&en, &u);
	T_CHECK(en.s.n_parked == 2 && en.s.kv.n_states_free == 0, "%d parked, %d states free: want 2 and 0",
		en.s.n_parked, en.s.kv.n_states_free);
	b = (struct sub){C, 12, 8, 2, 0, 0, 0};
	T_CHECK(submit(&en, 2, &b, &e) == 0, "request C: %s", e.msg);
	uint64_t ev0 = en.s.st.sessions_evicted;
	drain(&en, &u, 3);
	T_CHECK(en.s.st.state_relieves == 1 && en.s.st.sessions_evicted == ev0 + 1,
		"%llu states relieved, %llu sessions evicted: want 1 and 1", (unsigned long long)en.s.st.state_relieves,
		(unsigned long long)(en.s.st.sessions_evicted - ev0));
	for (int i = 0; i < 3; i++)
		T_CHECK(!memcmp(u.toks[i], want[i], 8 * 4), "request %d differs from its reference", i);
	/* A, the least recently parked, is gone; B continues its own state */
	b = (struct sub){A2, 4, 8, 0, 31, 0, 1};
	T_CHECK(submit(&en, 3, &b, &e) == -E_INVAL, "append to the evicted session A accepted");
	b = (struct sub){A2, 4, 8, 1, 32, 0, 1};
	T_CHECK(submit(&en, 4, &b, &e) == 0, "session B turn 2: %s", e.msg);
	uint64_t pf = en.s.st.prefill_tokens;
	drain(&en, &u, 4);
	T_CHECK(en.s.st.prefill_tokens - pf == 4 && u.n_cached[4] == 20, "B's turn 2 prefilled %llu, reused %d: want 4, 20",
		(unsigned long long)(en.s.st.prefill_tokens - pf), u.n_cached[4]);
	T_CHECK(!memcmp(u.toks[4], wantb, 8 * 4), "B's turn 2 differs from one request with the whole conversation");
	check_quiet(&en, "hybrid states");
	engine_stop(&en);
}

/* ------------------------------------------------------------ (c) TTL */

static void t_ttl(void)
{
	static struct run u;
	struct ts_err e = {0};
	boot(&en, 4, 8, 64, 16 * 16);
	memset(&u, 0, sizeof(u));
	turn1(&u, 0, 0, 5);
	settle(&en, &u);
	T_CHECK(en.s.kv.n_free < en.s.kv.n_blocks, "a parked session holds no blocks");
	T_CHECK(sched_expire(&en.s, ts_now()) == 0, "expired before its TTL");
	T_CHECK(sched_expire(&en.s, ts_now() + SCHED_PARK_TTL_MS / 1e3 + 1) == 1, "TTL did not end the session");
	T_CHECK(en.s.st.sessions_expired == 1 && en.s.st.transitions[REQ_PARKED][REQ_DONE] == 1 &&
			en.s.n_sessions_parked == 0,
		"expiry bookkeeping");
	check_quiet(&en, "expired");
	struct sub b = {P2, L2, N2, 0, 5, 0, 1};
	T_CHECK(submit(&en, 1, &b, &e) == -E_INVAL, "append to an expired session accepted");
	T_HAS(e.msg, "expired");

	/* a step expires too; then the whole conversation resent finds its
	 * full blocks in the prefix cache */
	turn1(&u, 2, 0, 6);
	settle(&en, &u);
	en.s.park_ttl_s = 0;
	struct sched_events ev = {on_tok, on_done, &u};
	T_CHECK(sched_step(&en.s, &ev) == 0 && en.s.st.sessions_expired == 2, "a step did not expire the session");
	memcpy(conv, P1, sizeof(P1));
	memcpy(conv + L1, gen1[0], sizeof(gen1[0]));
	memcpy(conv + L1 + N1, P2, sizeof(P2));
	b = (struct sub){conv, L1 + N1 + L2, N2, 0, 6, 0, 0};
	T_CHECK(submit(&en, 3, &b, &e) == 0, "resend: %s", e.msg);
	drain(&en, &u, 3);
	T_CHECK(u.n_cached[3] == 32, "resent conversation reused %d tokens, want 32", u.n_cached[3]);
	T_CHECK(!memcmp(u.toks[3], want2[0], N2 * 4), "resent conversation differs");
	check_quiet(&en, "ttl");
	engine_stop(&en);
}

/* ------------------------------------------------------------ (d) pressure */

static void t_pressure(void)
{
	static struct run u;
	static int32_t P[4][48], want[4][24];
	struct ts_err e = {0};
	for (int i = 0; i < 3; i++) {
		for (int j = 0; j < 40; j++)
			P[i][j] = rtok();
		reference(P[i], 40, 24, i, want[i]);
	}
	/* 8 blocks: 3 parked sessions hold 4 (their first block, all P1, is
	 * shared), then 3 requests of 4 blocks each */
	boot(&en, 4, 4, 64, 8 * 16);
	memset(&u, 0, sizeof(u));
	for (int k = 0; k < 3; k++)
		turn1(&u, k, k, 100 + (uint64_t)k);
	settle(&en, &u);
	T_CHECK(en.s.n_parked == 3 && en.s.kv.n_free == 4, "3 sessions parked: %d, free %d", en.s.n_parked,
		en.s.kv.n_free);
	for (int i = 0; i < 3; i++) {
		struct sub b = {P[i], 40, 24, i, 0, 0, 0};
		T_CHECK(submit(&en, 3 + i, &b, &e) == 0, "submit: %s", e.msg);
	}
	uint64_t allocs = drain(&en, &u, 6);
	for (int i = 0; i < 3; i++)
		T_CHECK(u.n[3 + i] == 24 && !memcmp(u.toks[3 + i], want[i], sizeof(want[i])),
			"request %d under pressure differs", i);
	T_CHECK(en.s.st.sessions_evicted >= 1, "no session evicted");
	T_CHECK(allocs == 0, "%llu allocations", (unsigned long long)allocs);
	/* the oldest went first: its append is refused; a survivor (if any) goes on */
	struct sub b = {P2, L2, N2, 0, 100, 0, 1};
	T_CHECK(submit(&en, 6, &b, &e) == -E_INVAL, "the oldest session survived");
	for (int k = 0; k < 3; k++)
		sched_session_end(&en.s, 100 + (uint64_t)k);
	check_quiet(&en, "pressure");
	printf("pressure: evicted=%llu preemptions=%llu\n", (unsigned long long)en.s.st.sessions_evicted,
	       (unsigned long long)en.s.st.preemptions);
	engine_stop(&en);

	/* 3 slots, 3 parked sessions: a new request takes the oldest one's slot */
	boot(&en, 2, 1, 64, 16 * 16);
	memset(&u, 0, sizeof(u));
	for (int k = 0; k < 3; k++)
		turn1(&u, k, 0, 200 + (uint64_t)k);
	settle(&en, &u);
	T_CHECK(en.s.n_free == 0, "slots left: %d", en.s.n_free);
	b = (struct sub){P[0], 40, 24, 0, 0, 0, 0};
	T_CHECK(submit(&en, 3, &b, &e) == 0, "submit with every slot parked: %s", e.msg);
	drain(&en, &u, 4);
	T_CHECK(!memcmp(u.toks[3], want[0], sizeof(want[0])), "request in a parked session's slot differs");
	T_CHECK(en.s.st.sessions_evicted == 1, "evicted %llu sessions, want 1", (unsigned long long)en.s.st.sessions_evicted);
	b = (struct sub){P2, L2, N2, 0, 200, 0, 1};
	T_CHECK(submit(&en, 4, &b, &e) == -E_INVAL, "the oldest session kept its slot");
	b.sid = 202;
	T_CHECK(submit(&en, 5, &b, &e) == 0, "the newest session lost its slot: %s", e.msg);
	drain(&en, &u, 5);
	T_CHECK(!memcmp(u.toks[5], want2[0], N2 * 4), "surviving session's turn 2 differs");
	sched_session_end(&en.s, 201);
	check_quiet(&en, "slots");
	engine_stop(&en);
}

/* ------------------------------------------------------------ (e) randomized */

#define RS 6
#define RTURNS 4

static uint64_t r_preempt, r_evict, r_resume, r_state_relieves;

static void t_random(int max_running, int max_batch_tokens)
{
	static struct run u;
	static int32_t cv[RS][128], add[RTURNS][RS][16], want[RTURNS][RS][MAXT];
	static int at[RTURNS][RS], n_add[RTURNS][RS], maxt[RTURNS][RS], alive[RS];
	struct ts_err e = {0};
	uint64_t allocs = 0, resent = 0;
	/* The references first (each conversation grows by them), so that one
	 * CPU engine is alive at a time. */
	for (int k = 0; k < RS; k++) {
		int n = 0;
		for (int t = 0; t < RTURNS; t++) {
			at[t][k] = n;
			n_add[t][k] = 2 + (int)((uint32_t)rtok() % 12);
			maxt[t][k] = 2 + (int)((uint32_t)rtok() % 16);
			for (int i = 0; i < n_add[t][k]; i++)
				add[t][k][i] = cv[k][n + i] = rtok();
			reference(cv[k], n + n_add[t][k], maxt[t][k], k, want[t][k]);
			memcpy(cv[k] + n + n_add[t][k], want[t][k], (size_t)maxt[t][k] * 4);
			n += n_add[t][k] + maxt[t][k];
		}
	}
	memset(alive, 0, sizeof(alive));
	/* 8 blocks of 16 for 6 conversations of up to 120 tokens: everything
	 * is under pressure */
	boot(&en, max_running, RS - max_running, max_batch_tokens, 8 * 16);
	for (int t = 0; t < RTURNS; t++) {
		memset(&u, 0, sizeof(u));
		for (int k = 0; k < RS; k++) {
			struct sub b = {add[t][k], n_add[t][k], maxt[t][k], k, 500 + (uint64_t)k, t < RTURNS - 1, 1};
			if (t == 0 || !alive[k]) { /* first turn, or the session ended: send it all */
				b.prompt = cv[k];
				b.n = at[t][k] + n_add[t][k];
				b.append = 0;
				resent += t > 0;
			}
			int r = submit(&en, k, &b, &e);
			if (r == -E_INVAL && b.append) { /* evicted since: resend the whole conversation */
				b.prompt = cv[k];
				b.n = at[t][k] + n_add[t][k];
				b.append = 0;
				r = submit(&en, k, &b, &e);
				resent++;
			}
			T_CHECK(r == 0, "turn %d of %d: %s", t, k, e.msg);
		}
		allocs += drain(&en, &u, RS);
		for (int k = 0; k < RS; k++) {
			T_CHECK(u.n[k] == maxt[t][k] && !memcmp(u.toks[k], want[t][k], (size_t)maxt[t][k] * 4),
				"turn %d of conversation %d differs from one whole request", t, k);
			alive[k] = u.state[k] == REQ_PARKED;
		}
	}
	settle(&en, &u);
	T_CHECK(en.s.n_sessions_parked == 0, "%d sessions left parked after their last turn", en.s.n_sessions_parked);
	T_CHECK(allocs == 0, "%llu allocations", (unsigned long long)allocs);
	check_quiet(&en, "random");
	printf("random: steps=%llu preemptions=%llu parked=%llu resumed=%llu evicted=%llu resent=%llu cached=%llu/%llu hits=%llu evictions=%llu\n",
	       (unsigned long long)en.s.st.steps, (unsigned long long)en.s.st.preemptions,
	       (unsigned long long)en.s.st.sessions_parked, (unsigned long long)en.s.st.sessions_resumed,
	       (unsigned long long)en.s.st.sessions_evicted, (unsigned long long)resent,
	       (unsigned long long)en.s.st.cached_tokens, (unsigned long long)en.s.st.prompt_tokens,
	       (unsigned long long)en.s.kv.st.hit_blocks, (unsigned long long)en.s.kv.st.evictions);
	r_preempt += en.s.st.preemptions;
	r_evict += en.s.st.sessions_evicted;
	r_resume += en.s.st.sessions_resumed;
	r_state_relieves += en.s.st.state_relieves;
	engine_stop(&en);
}


/* ------------------------------------------------------------ (f) a stall */

/* A session resumed while it still stores its last token goes straight back
 * to PREFILL in running, beside a long prefill, on a pool too small for both:
 * soon neither can take a block and nothing decodes. The step preempts the
 * less urgent one instead of waiting forever. */
static void t_stall(void)
{
	static struct run u;
	static int32_t PS[20], PA[90], S2[60], cs[128], gS[4], wA[4], wS[4];
	struct ts_err e = {0};
	for (int i = 0; i < 20; i++)
		PS[i] = rtok();
	for (int i = 0; i < 90; i++)
		PA[i] = rtok();
	for (int i = 0; i < 60; i++)
		S2[i] = rtok();
	reference(PS, 20, 4, 0, gS);
	reference(PA, 90, 4, 0, wA);
	memcpy(cs, PS, sizeof(PS));
	memcpy(cs + 20, gS, sizeof(gS));
	memcpy(cs + 24, S2, sizeof(S2));
	reference(cs, 84, 4, 0, wS);

	boot(&en, 2, 2, 8, 6 * 16);
	memset(&u, 0, sizeof(u));
	struct sub b = {PS, 20, 4, 0, 300, 1, 0};
	T_CHECK(submit(&en, 0, &b, &e) == 0, "S: %s", e.msg);
	b = (struct sub){PA, 90, 4, 0, 0, 0, 0};
	T_CHECK(submit(&en, 1, &b, &e) == 0, "A: %s", e.msg);
	struct sched_events ev = {on_tok, on_done, &u};
	for (int guard = 0; !u.done[0] && guard < 1000; guard++)
		sched_step(&en.s, &ev);
	T_CHECK(u.state[0] == REQ_PARKED && !memcmp(u.toks[0], gS, sizeof(gS)), "S turn 1");
	b = (struct sub){S2, 60, 4, 0, 300, 0, 1};
	T_CHECK(submit(&en, 2, &b, &e) == 0, "S turn 2: %s", e.msg);
	T_CHECK(en.s.st.transitions[REQ_PARKED][REQ_PREFILL] == 1, "S did not resume in running");
	uint64_t allocs = drain(&en, &u, 3);
	T_CHECK(!memcmp(u.toks[1], wA, sizeof(wA)), "A differs");
	T_CHECK(u.n[2] == 4 && !memcmp(u.toks[2], wS, sizeof(wS)), "S turn 2 differs");
	T_CHECK(en.s.st.transitions[REQ_PREFILL][REQ_PREEMPTED] >= 1, "no prefill was preempted: the stall did not happen");
	T_CHECK(allocs == 0, "%llu allocations", (unsigned long long)allocs);
	check_quiet(&en, "stall");
	engine_stop(&en);
}

/* A decode that preempts a running entry it has not visited yet in this step
 * must not take that entry's chunk of the previous step as budget: the batch
 * then outgrew max_batch_tokens (found while adding sessions). D decodes at
 * position 16 and needs a block on a 3-block pool that P's prefill filled;
 * P, less urgent, is preempted and readmitted in the same step. */
static void t_budget(void)
{
	static struct run u;
	static int32_t PD[14], PP[40];
	struct ts_err e = {0};
	for (int i = 0; i < 14; i++)
		PD[i] = rtok();
	for (int i = 0; i < 40; i++)
		PP[i] = rtok();
	boot(&en, 2, 2, 16, 3 * 16);
	en.s.kv.prefix_off = 1; /* readmission recomputes from scratch: the largest chunk */
	memset(&u, 0, sizeof(u));
	struct sub b = {PD, 14, 18, 0, 0, 0, 0};
	T_CHECK(submit(&en, 0, &b, &e) == 0, "D: %s", e.msg);
	b = (struct sub){PP, 40, 2, 0, 0, 0, 0};
	T_CHECK(submit(&en, 1, &b, &e) == 0, "P: %s", e.msg);
	struct sched_events ev = {on_tok, on_done, &u};
	int over = 0, failed = 0;
	for (int guard = 0; u.n_done < 2 && guard < 1000; guard++) {
		int n = sched_step(&en.s, &ev);
		over += n > 16;
		failed += n < 0; /* the backend refuses the overgrown batch */
	}
	T_CHECK(u.n_done == 2 && en.s.st.preemptions > 0, "the scene did not play: done %d, preemptions %llu",
		u.n_done, (unsigned long long)en.s.st.preemptions);
	T_CHECK(over == 0 && failed == 0, "%d steps forwarded more than max_batch_tokens, %d failed", over, failed);
	T_CHECK(u.state[0] == REQ_DONE && u.state[1] == REQ_DONE && u.n[0] == 18 && u.n[1] == 2,
		"D ended %s with %d tokens, P %s with %d", req_state_name(u.state[0]), u.n[0],
		req_state_name(u.state[1]), u.n[1]);
	engine_stop(&en);
}

int main(void)
{
	dir = t_ckpt("llama3-mini");
	t_shared_prefix();
	t_sessions();
	t_ttl();
	t_pressure();
	t_stall();
	t_budget();
	t_random(3, 32);
	t_random(4, 64);
	t_random(6, 128);
	T_CHECK(r_preempt > 0 && r_evict > 0 && r_resume > 0, "the random runs did not exercise pressure");
	static const char *const plans[] = {"dsv3-mini", "qwen3moe-mini", "qwen3next-mini", "qwen35moe-mini"};
	for (size_t i = 0; i < TS_ARRAY_LEN(plans); i++) {
		uint64_t p0 = r_preempt, e0 = r_evict;
		dir = t_ckpt(plans[i]);
		hybrid = strstr(plans[i], "next") || strstr(plans[i], "qwen35");
		if (hybrid)
			t_hybrid_prefix();
		else
			t_shared_prefix();
		t_sessions();
		t_random(4, 64);
		if (hybrid) { /* 2 running, 4 parked or waiting sessions, 4 state slots: short of states too */
			uint64_t s0 = r_state_relieves;
			t_random(2, 32);
			printf("%s: %llu state slots given up to running work\n", plans[i],
			       (unsigned long long)(r_state_relieves - s0));
			t_hybrid_states();
		}
		T_CHECK(r_preempt > p0 && r_evict > e0, "%s: the random run did not exercise pressure", plans[i]);
	}
	return T_DONE();
}
