/* t_batch: the same requests give the same tokens alone or batched: under
 * chunked prefill mixed with decodes, a queue longer than max_running, a KV
 * pool so small that requests are preempted and recomputed, and a cancel in
 * the middle, for a dense model and for each MoE / MLA layer plan (a token's
 * experts and its latent attention must not depend on its batch-mates), and
 * for the hybrid models (a sequence's recurrent state carried across prefill
 * chunks, reset when preemption recomputes it). No allocation happens after
 * boot, and every block and every recurrent-state slot returns. */
#include "t.h"
#include "tutil.h"

#define NP 6
#define MAXT 24

static int32_t prompts[NP][64];
static const int plen[NP] = {3, 17, 40, 1, 25, 60};
static int32_t alone[NP][MAXT];
static int n_alone[NP];

struct run {
	int32_t toks[NP][MAXT];
	int n[NP];
	int done[NP];
	int n_done;
};

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
	u->done[r->user] = r->state == REQ_DONE ? 1 : 2;
	u->n_done++;
}

static void params(int i, struct samp_params *p)
{
	samp_params_default(p);
	p->seed = 1000u + (uint64_t)i;
	switch (i % 6) {
	case 0:
		break; /* greedy */
	case 1:
		p->temperature = 0.8f, p->top_p = 0.9f;
		break;
	case 2:
		p->temperature = 1.2f, p->top_k = 20;
		break;
	case 3:
		p->temperature = 1.0f, p->min_p = 0.05f;
		break;
	case 4:
		p->temperature = 0.7f, p->repetition_penalty = 1.3f, p->presence_penalty = 0.5f,
		p->frequency_penalty = 0.3f;
		break;
	default:
		p->temperature = 1.0f;
		break;
	}
}

static void submit(struct engine *en, int i)
{
	struct ts_err e = {0};
	struct sched_submit s = {.prompt = prompts[i], .n_prompt = plen[i], .max_tokens = MAXT, .ignore_eos = 1,
				 .user = (uint64_t)i};
	params(i, &s.samp);
	T_CHECK(sched_submit(&en->s, &s, NULL, &e) == 0, "submit %d: %s", i, e.msg);
}

/* Steps until n requests ended; returns ts_alloc calls made meanwhile. */
static uint64_t drain(struct engine *en, struct run *u, int n)
{
	struct sched_events ev = {on_tok, on_done, u};
	uint64_t a0 = ts_alloc_count();
	for (int guard = 0; u->n_done < n && guard < 100000; guard++)
		T_CHECK(sched_step(&en->s, &ev) >= 0, "step failed");
	return ts_alloc_count() - a0;
}

static void boot(struct engine *en, const char *dir, int max_running, int max_batch_tokens, int kv_tokens)
{
	struct cfg c;
	struct ts_err e = {0};
	t_cfg(&c, dir);
	c.engine.max_running = max_running;
	c.engine.max_batch_tokens = max_batch_tokens;
	c.engine.kv_tokens = kv_tokens;
	c.engine.kv_block_tokens = 16;
	c.engine.max_seq_len = 128;
	if (engine_boot(en, &c, &e) < 0) {
		fprintf(stderr, "boot %s: %s\n", dir, e.msg);
		exit(1);
	}
}

static const char *preset;

/* Every recurrent-state slot is back in the pool (none for models without). */
static void states_back(const struct engine *e, const char *what)
{
	struct ts_err err = {0};
	T_CHECK(e->s.kv.n_states_free == e->s.kv.n_states, "%s %s: state slots leaked: %d of %d free", preset, what,
		e->s.kv.n_states_free, e->s.kv.n_states);
	T_CHECK(kv_pool_check(&e->s.kv, &err) == 0, "%s %s: %s", preset, what, err.msg);
}

static void compare(const struct run *u, const char *what)
{
	for (int i = 0; i < NP; i++)
		T_CHECK(u->n[i] == n_alone[i] && !memcmp(u->toks[i], alone[i], (size_t)n_alone[i] * 4),
			"%s %s: request %d (prompt %d tokens) differs from its run alone", preset, what, i, plen[i]);
}

static struct engine en;
static struct run u;

/* Alone, batched with chunked prefill, under preemption, with a cancel. */
static void batching(const char *name)
{
	const char *dir = t_ckpt(name);
	preset = name;

	/* one at a time */
	boot(&en, dir, 8, 128, 8 * 128);
	for (int i = 0; i < NP; i++) {
		memset(&u, 0, sizeof(u));
		submit(&en, i);
		drain(&en, &u, 1);
		memcpy(alone[i], u.toks[i], sizeof(alone[i]));
		n_alone[i] = u.n[i];
		T_CHECK(n_alone[i] == MAXT, "request %d alone made %d tokens, want %d", i, n_alone[i], MAXT);
	}
	T_CHECK(en.s.kv.n_free == en.s.kv.n_blocks, "blocks leaked: %d of %d free", en.s.kv.n_free, en.s.kv.n_blocks);
	states_back(&en, "alone");
	/* the engine's lifecycle: READY after boot, then DRAINING, STOPPED */
	T_CHECK(engine_state(&en) == ENGINE_READY, "%s: state %s after boot", name, engine_state_name(engine_state(&en)));
	T_CHECK(engine_set_state(&en, ENGINE_DRAINING) == 0, "%s: READY -> DRAINING refused", name);
	engine_stop(&en);
	T_CHECK(engine_state(&en) == ENGINE_STOPPED, "%s: state %s after stop", name, engine_state_name(engine_state(&en)));

	/* all at once: chunked prefill (16 tokens a step) beside decodes, a queue */
	boot(&en, dir, 4, 16, 8 * 128);
	memset(&u, 0, sizeof(u));
	for (int i = 0; i < NP; i++)
		submit(&en, i);
	uint64_t allocs = drain(&en, &u, NP);
	compare(&u, "batched, chunked prefill");
	T_CHECK(allocs == 0, "%llu allocations after ready", (unsigned long long)allocs);
	T_CHECK(en.s.st.steps > 10, "only %llu steps: the batch was not mixed", (unsigned long long)en.s.st.steps);
	T_CHECK(en.s.kv.n_free == en.s.kv.n_blocks, "blocks leaked: %d of %d free", en.s.kv.n_free, en.s.kv.n_blocks);
	states_back(&en, "batched");
	engine_stop(&en);

	/* a pool of 8 blocks (128 tokens) for 6 requests of up to 84 tokens: preemption */
	boot(&en, dir, 6, 64, 128);
	memset(&u, 0, sizeof(u));
	for (int i = 0; i < NP; i++)
		submit(&en, i);
	allocs = drain(&en, &u, NP);
	compare(&u, "batched under preemption");
	T_CHECK(en.s.st.preemptions > 0, "no preemption happened: the test did not test it");
	T_CHECK(allocs == 0, "%llu allocations after ready", (unsigned long long)allocs);
	T_CHECK(en.s.kv.n_free == en.s.kv.n_blocks, "blocks leaked: %d of %d free", en.s.kv.n_free, en.s.kv.n_blocks);
	printf("%s preemptions=%llu steps=%llu\n", name, (unsigned long long)en.s.st.preemptions,
	       (unsigned long long)en.s.st.steps);
	T_CHECK(en.s.st.transitions[REQ_DECODE][REQ_PREEMPTED] + en.s.st.transitions[REQ_PREFILL][REQ_PREEMPTED] ==
			en.s.st.preemptions,
		"transition counts disagree with preemptions");
	states_back(&en, "after preemption");
	engine_stop(&en);

	/* cancel one request mid-decode: its blocks return, the others are unaffected */
	boot(&en, dir, 8, 128, 8 * 128);
	memset(&u, 0, sizeof(u));
	uint64_t id2 = 0;
	for (int i = 0; i < NP; i++) {
		struct ts_err e = {0};
		struct sched_submit s = {.prompt = prompts[i], .n_prompt = plen[i], .max_tokens = MAXT,
					 .ignore_eos = 1, .user = (uint64_t)i};
		params(i, &s.samp);
		T_CHECK(sched_submit(&en.s, &s, i == 2 ? &id2 : NULL, &e) == 0, "submit: %s", e.msg);
	}
	struct sched_events ev = {on_tok, on_done, &u};
	while (u.n[2] < 5)
		sched_step(&en.s, &ev);
	int free_before = en.s.kv.n_free, states_free_before = en.s.kv.n_states_free;
	T_CHECK(sched_cancel(&en.s, id2, &ev) == 0, "cancel failed");
	T_CHECK(en.s.kv.n_free > free_before, "cancel returned no blocks");
	T_CHECK(u.done[2] == 2, "cancelled request got no terminal event");
	if (en.s.has_state)
		T_CHECK(en.s.kv.n_states_free == states_free_before + 1, "%s: cancel returned %d state slots, want 1",
			preset, en.s.kv.n_states_free - states_free_before);
	T_CHECK(sched_cancel(&en.s, id2, &ev) == -E_INVAL, "second cancel of the same id accepted");
	drain(&en, &u, NP);
	for (int i = 0; i < NP; i++)
		if (i != 2)
			T_CHECK(u.n[i] == MAXT && !memcmp(u.toks[i], alone[i], sizeof(alone[i])),
				"request %d changed by another's cancel", i);
	T_CHECK(en.s.kv.n_free == en.s.kv.n_blocks, "blocks leaked after cancel: %d of %d free", en.s.kv.n_free,
		en.s.kv.n_blocks);
	states_back(&en, "after cancel");
	engine_stop(&en);
}

int main(void)
{
	static const char *const plans[] = {"llama3-mini",    "qwen3moe-mini", "mixtral-mini",  "dsv2lite-mini",
					    "dsv3-mini",      "qwen3next-mini", "qwen35-mini", "qwen35moe-mini"};
	uint64_t x = 42;

	for (int i = 0; i < NP; i++) /* ids below every preset's vocab (512) */
		for (int j = 0; j < plen[i]; j++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			prompts[i][j] = (int32_t)(3 + (x >> 33) % 500);
		}
	for (size_t i = 0; i < TS_ARRAY_LEN(plans); i++)
		batching(plans[i]);
	const char *dir = t_ckpt("llama3-mini");

	/* priority classes, first come first served within a class: with one
	 * running slot, the order of completion is B (class 0), then A and C
	 * (class 2) in the order they came */
	boot(&en, dir, 1, 128, 8 * 128);
	static int order[3], n_order;
	{
		static const int prio[3] = {2, 0, 2};
		uint64_t ids[3];
		struct ts_err pe = {0};
		for (int i = 0; i < 3; i++) {
			struct sched_submit s = {.prompt = prompts[i], .n_prompt = plen[i], .max_tokens = 4, .ignore_eos = 1,
						 .priority = prio[i], .user = (uint64_t)i};
			samp_params_default(&s.samp);
			T_CHECK(sched_submit(&en.s, &s, &ids[i], &pe) == 0, "submit: %s", pe.msg);
		}
		memset(&u, 0, sizeof(u));
		n_order = 0;
		struct sched_events pev = {on_tok, on_done, &u};
		for (int guard = 0; guard < 1000 && u.n_done < 3; guard++) {
			int before_done = u.n_done;
			sched_step(&en.s, &pev);
			for (int i = 0; i < 3 && u.n_done > before_done; i++)
				if (u.done[i]) {
					int seen = 0;
					for (int k = 0; k < n_order; k++)
						seen |= order[k] == i;
					if (!seen)
						order[n_order++] = i;
				}
		}
		T_CHECK(n_order == 3 && order[0] == 1 && order[1] == 0 && order[2] == 2,
			"completion order %d %d %d, want 1 (class 0), then 0 and 2 (class 2, first come first)", order[0],
			order[1], order[2]);
	}
	engine_stop(&en);
	boot(&en, dir, 8, 128, 8 * 128);

	/* bad requests: each refused with a message naming the field */
	struct ts_err e = {0};
	int32_t bad[2] = {1, 999999};
	struct sched_submit s = {.prompt = bad, .n_prompt = 2, .max_tokens = 4};
	samp_params_default(&s.samp);
	T_CHECK(sched_submit(&en.s, &s, NULL, &e) == -E_RANGE, "out-of-vocab token accepted");
	T_HAS(e.msg, "vocabulary");
	s.n_prompt = 1;
	s.max_tokens = 1000;
	T_CHECK(sched_submit(&en.s, &s, NULL, &e) == -E_RANGE, "max_tokens past max_seq_len accepted");
	T_HAS(e.msg, "max_tokens");
	s.max_tokens = 4;
	s.n_prompt = 0;
	T_CHECK(sched_submit(&en.s, &s, NULL, &e) == -E_INVAL, "empty prompt accepted");
	engine_stop(&en);
	return T_DONE();
}
