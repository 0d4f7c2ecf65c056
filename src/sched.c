/* sched: request FSM and the step builder. */
#include "sched.h"

#include "log.h"

/* ------------------------------------------------------------ the FSM */

#define REQ_NAME(s) #s,
static const char *const state_names[REQ_STATE_N] = {REQ_STATES(REQ_NAME)};
#undef REQ_NAME

const char *req_state_name(enum req_state s)
{
	return s < REQ_STATE_N ? state_names[s] : "?";
}

const char *req_finish_name(enum req_finish f)
{
	switch (f) {
	case FINISH_NONE:
		return "none";
	case FINISH_STOP:
		return "stop";
	case FINISH_LENGTH:
		return "length";
	case FINISH_CONTEXT:
		return "context";
	case FINISH_CANCELLED:
		return "cancelled";
	case FINISH_ERROR:
		return "error";
	}
	return "?";
}

#define B(s) (1u << REQ_##s)
#define ANY_END (B(CANCELLED) | B(FAILED))
/* Legal successors of each state. */
static const uint32_t next_ok[REQ_STATE_N] = {
	[REQ_QUEUED] = B(PREFILL) | ANY_END,
	[REQ_PREFILL] = B(DECODE) | B(DONE) | B(PREEMPTED) | B(PARKED) | ANY_END,
	[REQ_DECODE] = B(DONE) | B(PREEMPTED) | B(PARKED) | ANY_END,
	[REQ_PREEMPTED] = B(PREFILL) | ANY_END,
	[REQ_PARKED] = B(PREFILL) | B(DONE) | ANY_END,
	[REQ_DONE] = 0,
	[REQ_CANCELLED] = 0,
	[REQ_FAILED] = 0,
};
#undef B

/* The one choke point for state changes. */
static void set_state(struct sched *s, struct req *r, enum req_state to)
{
	if (NEVER(!(next_ok[r->state] & (1u << to)))) {
		log_error("sched: illegal transition req=%llu %s -> %s", (unsigned long long)r->id,
			  req_state_name(r->state), req_state_name(to));
		return;
	}
	s->st.transitions[r->state][to]++;
	r->state = to;
}

/* ------------------------------------------------------------ init */

int sched_init(struct sched *s, const struct sched_limits *l, const struct model *m, struct backend *be,
	       struct ts_err *e)
{
	int r;
	memset(s, 0, sizeof(*s));
	s->lim = *l;
	s->m = m;
	s->be = be;
	s->n_slots = l->max_running + l->max_queue;
	s->next_id = 1;
	if ((r = kv_pool_init(&s->kv, l->n_kv_blocks, l->kv_block_tokens, s->n_slots, l->max_seq_len, e)) < 0)
		return r;
	if ((r = samp_scratch_init(&s->ss, m->d.vocab)) < 0)
		goto nomem;
	size_t n = (size_t)s->n_slots, R = (size_t)l->max_running, T = (size_t)l->max_batch_tokens;
	s->reqs = ts_alloc(n * sizeof(*s->reqs));
	s->free_slots = ts_alloc(n * sizeof(int));
	s->queue = ts_alloc(n * sizeof(int));
	s->running = ts_alloc(R * sizeof(int));
	int32_t *tok = ts_alloc(n * (size_t)l->max_seq_len * sizeof(int32_t));
	s->b_token = ts_alloc(3 * T * sizeof(int32_t));
	s->b_seqs = ts_alloc(R * sizeof(*s->b_seqs));
	s->b_logit_rows = ts_alloc(2 * R * sizeof(int32_t));
	s->b_chunk = ts_alloc(R * sizeof(int));
	s->logits = ts_alloc(R * (size_t)m->d.vocab * sizeof(float));
	s->b_samp = ts_alloc(R * sizeof(*s->b_samp));
	s->b_sampled = ts_alloc(R * sizeof(int32_t));
	if (!s->b_samp || !s->b_sampled || !s->reqs || !s->free_slots || !s->queue || !s->running || !tok || !s->b_token || !s->b_seqs ||
	    !s->b_logit_rows || !s->b_chunk || !s->logits) {
		ts_free(tok);
		goto nomem;
	}
	s->b_pos = s->b_token + T;
	s->b_seq = s->b_pos + T;
	s->b_logit_slot = s->b_logit_rows + R;
	for (int i = 0; i < s->n_slots; i++) {
		s->reqs[i].tokens = tok + (size_t)i * (size_t)l->max_seq_len;
		s->reqs[i].state = REQ_DONE;
		s->free_slots[i] = s->n_slots - 1 - i;
	}
	s->n_free = s->n_slots;
	return 0;
nomem:
	sched_free(s);
	return ts_errf(e, E_NOMEM, "sched: out of memory for %d request slots of %d tokens", s->n_slots,
		       l->max_seq_len);
}

void sched_free(struct sched *s)
{
	if (s->reqs)
		ts_free(s->reqs[0].tokens);
	ts_free(s->reqs);
	ts_free(s->free_slots);
	ts_free(s->queue);
	ts_free(s->running);
	ts_free(s->b_token);
	ts_free(s->b_seqs);
	ts_free(s->b_logit_rows);
	ts_free(s->b_chunk);
	ts_free(s->logits);
	ts_free(s->b_samp);
	ts_free(s->b_sampled);
	samp_scratch_free(&s->ss);
	kv_pool_free(&s->kv);
	memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------ submit, cancel */

int sched_submit(struct sched *s, const struct sched_submit *a, uint64_t *id, struct ts_err *e)
{
	const struct model_dims *d = &s->m->d;
	int r;
	if (a->n_prompt < 1)
		return ts_errf(e, E_INVAL, "prompt is empty: send at least one token");
	if (a->n_prompt >= s->lim.max_seq_len)
		return ts_errf(e, E_RANGE, "prompt of %d tokens leaves no room under max_seq_len %d", a->n_prompt,
			       s->lim.max_seq_len);
	for (int i = 0; i < a->n_prompt; i++)
		if (a->prompt[i] < 0 || a->prompt[i] >= d->vocab)
			return ts_errf(e, E_RANGE, "prompt token %d at index %d is outside the vocabulary (0..%d)",
				       a->prompt[i], i, d->vocab - 1);
	if (a->max_tokens < 1 || a->max_tokens > s->lim.max_seq_len - a->n_prompt)
		return ts_errf(e, E_RANGE, "max_tokens = %d: out of range (accepted 1..%d, the context left after a %d-token prompt)",
			       a->max_tokens, s->lim.max_seq_len - a->n_prompt, a->n_prompt);
	int64_t pool = (int64_t)s->kv.n_blocks * s->kv.block_tokens;
	if (a->n_prompt + a->max_tokens > pool)
		return ts_errf(e, E_RANGE, "prompt (%d) + max_tokens (%d) exceeds the KV pool (%lld tokens): lower max_tokens",
			       a->n_prompt, a->max_tokens, (long long)pool);
	if (a->n_stop_ids < 0 || a->n_stop_ids > SCHED_MAX_STOP)
		return ts_errf(e, E_RANGE, "%d stop ids: at most %d", a->n_stop_ids, SCHED_MAX_STOP);
	for (int i = 0; i < a->n_stop_ids; i++)
		if (a->stop_ids[i] < 0 || a->stop_ids[i] >= d->vocab)
			return ts_errf(e, E_RANGE, "stop id %d is outside the vocabulary (0..%d)", a->stop_ids[i],
				       d->vocab - 1);
	if (a->priority < 0 || a->priority > 255)
		return ts_errf(e, E_RANGE, "priority = %d: out of range (accepted 0..255)", a->priority);
	if ((r = samp_params_check(&a->samp, d->vocab, e)) < 0)
		return r;
	if (s->n_free == 0 || s->n_queue >= s->lim.max_queue + s->lim.max_running - s->n_running)
		return ts_errf(e, E_BUSY, "queue full (%d waiting): retry later", s->n_queue);

	int slot = s->free_slots[--s->n_free];
	struct req *q = &s->reqs[slot];
	int32_t *tokens = q->tokens;
	memset(q, 0, sizeof(*q));
	q->tokens = tokens;
	q->state = REQ_QUEUED;
	q->id = s->next_id++;
	q->user = a->user;
	memcpy(q->tokens, a->prompt, (size_t)a->n_prompt * sizeof(int32_t));
	q->n_prompt = q->n_tokens = a->n_prompt;
	q->max_tokens = a->max_tokens;
	for (int i = 0; i < a->n_stop_ids; i++)
		q->stop[q->n_stop++] = a->stop_ids[i];
	for (int i = 0; !a->ignore_eos && i < d->n_eos; i++)
		q->stop[q->n_stop++] = d->eos[i];
	q->priority = a->priority;
	q->samp = a->samp;
	q->t_submit = ts_now();
	s->queue[s->n_queue++] = slot;
	if (id)
		*id = q->id;
	return 0;
}

static void remove_at(int *a, int *n, int i)
{
	memmove(a + i, a + i + 1, (size_t)(*n - i - 1) * sizeof(int));
	(*n)--;
}

/* Ends a request in a terminal state: blocks back, slot back, event. */
static void finish(struct sched *s, int slot, enum req_state to, enum req_finish why, const struct sched_events *ev)
{
	struct req *r = &s->reqs[slot];
	for (int i = 0; i < s->n_running; i++)
		if (s->running[i] == slot)
			remove_at(s->running, &s->n_running, i);
	for (int i = 0; i < s->n_queue; i++)
		if (s->queue[i] == slot)
			remove_at(s->queue, &s->n_queue, i);
	kv_seq_release(&s->kv, slot);
	set_state(s, r, to);
	r->finish = why;
	r->t_done = ts_now();
	if (ev && ev->on_done)
		ev->on_done(ev->ctx, r);
	s->free_slots[s->n_free++] = slot;
}

int sched_cancel(struct sched *s, uint64_t id, const struct sched_events *ev)
{
	for (int i = 0; i < s->n_slots; i++) {
		struct req *r = &s->reqs[i];
		if (r->id == id && r->state != REQ_DONE && r->state != REQ_CANCELLED && r->state != REQ_FAILED) {
			finish(s, i, REQ_CANCELLED, FINISH_CANCELLED, ev);
			return 0;
		}
	}
	return -E_INVAL;
}

/* ------------------------------------------------------------ the step */

/* Lower is more urgent: priority class, then arrival. */
static int before(const struct req *a, const struct req *b)
{
	return a->priority != b->priority ? a->priority < b->priority : a->id < b->id;
}

/* The least urgent running request, to preempt. */
static int victim(const struct sched *s)
{
	int v = -1;
	for (int i = 0; i < s->n_running; i++)
		if (v < 0 || before(&s->reqs[s->running[v]], &s->reqs[s->running[i]]))
			v = i;
	return v;
}

/* Running entry ri goes back to the queue; returns the chunk it had this step. */
static int preempt(struct sched *s, int ri)
{
	int chunk = s->b_chunk[ri];
	int slot = s->running[ri];
	struct req *r = &s->reqs[slot];
	kv_seq_release(&s->kv, slot);
	r->n_computed = 0;
	r->n_preempted++;
	s->st.preemptions++;
	set_state(s, r, REQ_PREEMPTED);
	remove_at(s->running, &s->n_running, ri);
	memmove(s->b_chunk + ri, s->b_chunk + ri + 1, (size_t)(s->n_running - ri) * sizeof(int));
	s->queue[s->n_queue++] = slot;
	log_debug("sched: preempted req=%llu tokens=%d free_blocks=%d", (unsigned long long)r->id, r->n_tokens,
		  s->kv.n_free);
	return chunk;
}

/* Tokens of r that fit in KV now, up to want (0 if not even one). */
static int fit(struct sched *s, int slot, int want)
{
	struct req *r = &s->reqs[slot];
	int bt = s->kv.block_tokens;
	int have = kv_seq_blocks(&s->kv, slot) * bt - r->n_computed;
	int can = have + s->kv.n_free * bt;
	int n = TS_MIN(want, can);
	if (n <= 0 || kv_seq_reserve(&s->kv, slot, r->n_computed + n) < 0)
		return 0;
	return n;
}

static int stops(const struct req *r, int32_t t)
{
	for (int i = 0; i < r->n_stop; i++)
		if (r->stop[i] == t)
			return 1;
	return 0;
}

int sched_step(struct sched *s, const struct sched_events *ev)
{
	const int vocab = s->m->d.vocab;
	int budget = s->lim.max_batch_tokens, n_tok = 0, any_prefill = 0;
	double t0 = ts_now();

	/* 1. Decodes first: each needs room for one more position. Preempt the
	 *    least urgent running request until it fits (possibly itself). */
	for (int i = 0; i < s->n_running; i++) {
		struct req *r = &s->reqs[s->running[i]];
		s->b_chunk[i] = 0;
		if (r->state != REQ_DECODE)
			continue;
		while (kv_seq_reserve(&s->kv, s->running[i], r->n_tokens) == -E_NOSPACE) {
			int v = victim(s);
			budget += preempt(s, v);
			if (v == i) {
				i--;
				goto next_decode;
			}
			if (v < i)
				i--;
		}
		s->b_chunk[i] = 1;
		budget--;
	next_decode:;
	}
	/* 2. Prefill chunks of running requests, in admission order. */
	for (int i = 0; i < s->n_running && budget > 0; i++) {
		int slot = s->running[i];
		struct req *r = &s->reqs[slot];
		if (r->state != REQ_PREFILL)
			continue;
		s->b_chunk[i] = fit(s, slot, TS_MIN(budget, r->n_tokens - r->n_computed));
		budget -= s->b_chunk[i];
	}
	/* 3. Admit waiting requests, most urgent first, while a chunk fits. */
	while (budget > 0 && s->n_queue > 0 && s->n_running < s->lim.max_running) {
		int best = 0;
		for (int i = 1; i < s->n_queue; i++)
			if (before(&s->reqs[s->queue[i]], &s->reqs[s->queue[best]]))
				best = i;
		int slot = s->queue[best];
		struct req *r = &s->reqs[slot];
		int n = fit(s, slot, TS_MIN(budget, r->n_tokens - r->n_computed));
		if (n == 0)
			break; /* the pool is full: wait for blocks to return */
		remove_at(s->queue, &s->n_queue, best);
		set_state(s, r, REQ_PREFILL);
		s->b_chunk[s->n_running] = n;
		s->running[s->n_running++] = slot;
		budget -= n;
	}

	/* 4. Lay out the batch. */
	struct batch bt = {0};
	int n_seqs = 0, n_logits = 0;
	for (int i = 0; i < s->n_running; i++) {
		int slot = s->running[i], n = s->b_chunk[i];
		struct req *r = &s->reqs[slot];
		if (n == 0)
			continue;
		for (int j = 0; j < n; j++) {
			s->b_token[n_tok] = r->tokens[r->n_computed + j];
			s->b_pos[n_tok] = r->n_computed + j;
			s->b_seq[n_tok] = n_seqs;
			n_tok++;
		}
		if (r->state == REQ_PREFILL)
			any_prefill = 1;
		s->b_seqs[n_seqs].blocks = kv_seq_table(&s->kv, slot);
		s->b_seqs[n_seqs].n_blocks = kv_seq_blocks(&s->kv, slot);
		n_seqs++;
		if (r->n_computed + n == r->n_tokens) { /* all known tokens in: sample the next */
			s->b_logit_rows[n_logits] = n_tok - 1;
			s->b_logit_slot[n_logits] = slot;
			n_logits++;
		}
	}
	if (n_tok == 0)
		return 0;
	bt.n_tokens = n_tok;
	bt.token = s->b_token;
	bt.pos = s->b_pos;
	bt.seq = s->b_seq;
	bt.n_seqs = n_seqs;
	bt.seqs = s->b_seqs;
	bt.n_logits = n_logits;
	bt.logit_rows = s->b_logit_rows;

	int rc;
	if (s->be->ops->forward_sample) {
		for (int i = 0; i < n_logits; i++) {
			const struct req *r = &s->reqs[s->b_logit_slot[i]];
			s->b_samp[i] = (struct backend_samp_row){&r->samp, r->tokens, r->n_prompt, r->tokens + r->n_prompt,
								 r->n_tokens - r->n_prompt, (uint64_t)r->n_tokens};
		}
		rc = s->be->ops->forward_sample(s->be, &bt, s->b_samp, s->b_sampled);
	} else {
		rc = s->be->ops->forward(s->be, &bt, s->logits);
	}
	if (rc < 0) {
		log_error("sched: backend %s forward failed (%s): failing %d requests", s->be->ops->name,
			  ts_code_name(rc), n_seqs);
		for (int i = s->n_running - 1; i >= 0; i--)
			if (s->b_chunk[i])
				finish(s, s->running[i], REQ_FAILED, FINISH_ERROR, ev);
		return rc;
	}

	/* 5. Advance: computed positions, then sample where logits came back. */
	for (int i = 0; i < s->n_running; i++)
		s->reqs[s->running[i]].n_computed += s->b_chunk[i];
	double now = ts_now();
	for (int i = 0; i < n_logits; i++) {
		int slot = s->b_logit_slot[i];
		struct req *r = &s->reqs[slot];
		int32_t t = s->be->ops->forward_sample
				    ? s->b_sampled[i]
				    : samp_sample(s->logits + (size_t)i * (size_t)vocab, vocab, &r->samp, r->tokens,
						  r->n_prompt, r->tokens + r->n_prompt, r->n_tokens - r->n_prompt,
						  (uint64_t)r->n_tokens, &s->ss, NULL);
		r->tokens[r->n_tokens++] = t;
		if (r->t_first == 0)
			r->t_first = now;
		if (r->state == REQ_PREFILL)
			set_state(s, r, REQ_DECODE);
		if (ev && ev->on_token)
			ev->on_token(ev->ctx, r, t);
		int n_gen = r->n_tokens - r->n_prompt;
		if (stops(r, t))
			finish(s, slot, REQ_DONE, FINISH_STOP, ev);
		else if (n_gen >= r->max_tokens)
			finish(s, slot, REQ_DONE, FINISH_LENGTH, ev);
		else if (r->n_tokens >= s->lim.max_seq_len)
			finish(s, slot, REQ_DONE, FINISH_CONTEXT, ev);
	}

	double dt = ts_now() - t0;
	s->st.steps++;
	if (any_prefill) {
		s->st.prefill_tokens += (uint64_t)n_tok;
		s->st.prefill_s += dt;
	} else {
		s->st.decode_tokens += (uint64_t)n_tok;
		s->st.decode_s += dt;
	}
	return n_tok;
}
