/* sched: request FSM and the step builder. Reading order: the FSM, init,
 * the slot lists, sessions, submit and cancel, memory pressure, the step. */
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
	/* Resumed: QUEUED, or PREFILL when still in running finishing its last
	 * token; DONE: the session ended (TTL, pressure, slot, or on request). */
	[REQ_PARKED] = B(QUEUED) | B(PREFILL) | B(DONE) | ANY_END,
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
	s->park_ttl_s = (l->park_ttl_ms > 0 ? l->park_ttl_ms : SCHED_PARK_TTL_MS) / 1e3;
	if ((r = kv_pool_init(&s->kv, l->n_kv_blocks, l->kv_block_tokens, s->n_slots, l->max_seq_len, e)) < 0)
		return r;
	s->kv.prefix_off = l->no_prefix_cache != 0;
	if (model_state_elems_per_seq(m) > 0) { /* one state slot per request slot; no prefix reuse (sched.h) */
		s->has_state = 1;
		s->kv.prefix_off = 1;
		if ((r = kv_state_pool_init(&s->kv, SCHED_STATES_PER_RUNNING * l->max_running, e)) < 0) {
			kv_pool_free(&s->kv);
			return r;
		}
	}
	if ((r = samp_scratch_init(&s->ss, m->d.vocab)) < 0)
		goto nomem;
	size_t n = (size_t)s->n_slots, R = (size_t)l->max_running, T = (size_t)l->max_batch_tokens;
	s->reqs = ts_alloc(n * sizeof(*s->reqs));
	s->free_slots = ts_alloc(n * sizeof(int));
	s->queue = ts_alloc(n * sizeof(int));
	s->parked = ts_alloc(n * sizeof(int));
	s->running = ts_alloc(R * sizeof(int));
	int32_t *tok = ts_alloc_resident(n * (size_t)l->max_seq_len * sizeof(int32_t));
	s->b_token = ts_alloc(3 * T * sizeof(int32_t));
	s->b_seqs = ts_alloc(R * sizeof(*s->b_seqs));
	s->b_logit_rows = ts_alloc(2 * R * sizeof(int32_t));
	s->b_chunk = ts_alloc(R * sizeof(int));
	s->logits = ts_alloc_resident(R * (size_t)m->d.vocab * sizeof(float));
	s->b_samp = ts_alloc(R * sizeof(*s->b_samp));
	s->b_sampled = ts_alloc(R * sizeof(int32_t));
	if (!s->b_samp || !s->b_sampled || !s->reqs || !s->free_slots || !s->queue || !s->parked || !s->running ||
	    !tok || !s->b_token || !s->b_seqs || !s->b_logit_rows || !s->b_chunk || !s->logits) {
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
	ts_free(s->parked);
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

/* ------------------------------------------------------------ the slot lists */

static void remove_at(int *a, int *n, int i)
{
	memmove(a + i, a + i + 1, (size_t)(*n - i - 1) * sizeof(int));
	(*n)--;
}

static int index_of(const int *a, int n, int v)
{
	for (int i = 0; i < n; i++)
		if (a[i] == v)
			return i;
	return -1;
}

/* Running entry ri leaves running; its chunk of this step goes with it so
 * b_chunk stays parallel to running. */
static void drop_running(struct sched *s, int ri)
{
	memmove(s->b_chunk + ri, s->b_chunk + ri + 1, (size_t)(s->n_running - ri - 1) * sizeof(int));
	remove_at(s->running, &s->n_running, ri);
}

/* The request's recurrent state goes back to the pool (if it has one). */
static void state_release(struct sched *s, struct req *r)
{
	if (r->state_slot >= 0)
		kv_state_free(&s->kv, r->state_slot);
	r->state_slot = -1;
}

/* Takes slot off whichever of running, queue and parked holds it. */
static void unlist(struct sched *s, int slot)
{
	int i;
	if ((i = index_of(s->running, s->n_running, slot)) >= 0)
		drop_running(s, i);
	if ((i = index_of(s->queue, s->n_queue, slot)) >= 0)
		remove_at(s->queue, &s->n_queue, i);
	if ((i = index_of(s->parked, s->n_parked, slot)) >= 0)
		remove_at(s->parked, &s->n_parked, i);
}

/* Ends a request in a terminal state: blocks back (their full ones stay in
 * the prefix cache), slot back, event. */
static void finish(struct sched *s, int slot, enum req_state to, enum req_finish why, const struct sched_events *ev)
{
	struct req *r = &s->reqs[slot];
	unlist(s, slot);
	kv_seq_release(&s->kv, slot);
	state_release(s, r);
	set_state(s, r, to);
	r->finish = why;
	r->t_done = ts_now();
	if (ev && ev->on_done)
		ev->on_done(ev->ctx, r);
	s->free_slots[s->n_free++] = slot;
}

/* ------------------------------------------------------------ sessions */

/* The turn ended normally and its session is kept: PARKED, and on_done fires
 * as for DONE. The last sampled token was never forwarded, so the slot stays
 * in running one more step to store its KV (counted as a decode token): the
 * parked KV then covers the whole sequence and the next turn prefills only
 * its new tokens. It joins the parked list once that is done. */
static void park(struct sched *s, int slot, enum req_finish why, const struct sched_events *ev)
{
	struct req *r = &s->reqs[slot];
	set_state(s, r, REQ_PARKED);
	r->finish = why;
	r->t_done = r->t_parked = ts_now();
	s->n_sessions_parked++;
	s->st.sessions_parked++;
	if (ev && ev->on_done)
		ev->on_done(ev->ctx, r);
}

/* Ends the parked session in slot: PARKED -> DONE, blocks released (full ones
 * stay in the prefix cache until evicted), slot freed. No event: on_done
 * fired when its turn ended. */
static void session_end(struct sched *s, int slot)
{
	struct req *r = &s->reqs[slot];
	unlist(s, slot);
	kv_seq_release(&s->kv, slot);
	state_release(s, r);
	set_state(s, r, REQ_DONE);
	s->n_sessions_parked--;
	s->free_slots[s->n_free++] = slot;
	log_debug("sched: session %llx ended, tokens=%d free_blocks=%d", (unsigned long long)r->session_id,
		  r->n_tokens, s->kv.n_free);
}

/* The least recently parked session: the parked list's head, else one still
 * finishing its last token in running; -1 if none. */
static int oldest_parked(const struct sched *s)
{
	if (s->n_parked > 0)
		return s->parked[0];
	for (int i = 0; i < s->n_running; i++)
		if (s->reqs[s->running[i]].state == REQ_PARKED)
			return s->running[i];
	return -1;
}

int sched_expire(struct sched *s, double now)
{
	int n = 0;
	for (int i = 0; i < s->n_parked;) {
		int slot = s->parked[i];
		if (now - s->reqs[slot].t_parked >= s->park_ttl_s) {
			session_end(s, slot);
			s->st.sessions_expired++;
			n++;
		} else {
			i++;
		}
	}
	return n;
}

/* The slot holding session sid in a non-terminal state, or -1. */
static int session_slot(const struct sched *s, uint64_t sid)
{
	for (int i = 0; sid && i < s->n_slots; i++) {
		const struct req *r = &s->reqs[i];
		if (r->session_id == sid && r->state != REQ_DONE && r->state != REQ_CANCELLED && r->state != REQ_FAILED)
			return i;
	}
	return -1;
}

int sched_session_end(struct sched *s, uint64_t session_id)
{
	int slot = session_slot(s, session_id);
	if (slot < 0)
		return -E_INVAL;
	if (s->reqs[slot].state != REQ_PARKED)
		return -E_BUSY;
	session_end(s, slot);
	return 0;
}

/* ------------------------------------------------------------ submit, cancel */

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb)
{
	int n = TS_MIN(na, nb), i = 0;
	while (i < n && a[i] == b[i])
		i++;
	return i;
}

/* Continues the parked session in slot ps with the new request a, whose
 * prompt is the whole conversation (full) or only its new tokens (append).
 * The KV kept is what the parked sequence shares with the new one, minus at
 * least the last token (its logits are needed), cut where a write would land
 * in a shared block. */
static void resume(struct sched *s, int ps, const struct sched_submit *a, int n_total)
{
	struct req *q = &s->reqs[ps];
	int keep;
	if (a->append) {
		memcpy(q->tokens + q->n_tokens, a->prompt, (size_t)a->n_prompt * sizeof(int32_t));
		keep = q->n_tokens;
	} else {
		keep = common_prefix(q->tokens, q->n_tokens, a->prompt, a->n_prompt);
		memcpy(q->tokens, a->prompt, (size_t)a->n_prompt * sizeof(int32_t));
	}
	keep = TS_MIN(TS_MIN(keep, q->n_computed), n_total - 1);
	if (s->has_state && keep != q->n_computed)
		keep = 0; /* the recurrent state holds all n_computed positions and cannot be rewound */
	q->n_computed = kv_seq_truncate(&s->kv, ps, keep);
	if (q->n_computed == 0)
		state_release(s, q);
	if (kv_seq_blocks(&s->kv, ps) == 0) /* nothing shared: what does the prefix cache have? */
		q->n_computed = kv_seq_prefix(&s->kv, ps, q->tokens, n_total - 1);
	q->n_prompt = q->n_tokens = n_total;
	s->n_sessions_parked--;
	s->st.sessions_resumed++;
}

int sched_submit(struct sched *s, const struct sched_submit *a, uint64_t *id, struct ts_err *e)
{
	const struct model_dims *d = &s->m->d;
	int r, ps = -1;
	if ((a->keep || a->append) && !a->session_id)
		return ts_errf(e, E_INVAL, "%s needs a session_id", a->keep ? "keep" : "append");
	if (a->session_id && (ps = session_slot(s, a->session_id)) >= 0 && s->reqs[ps].state != REQ_PARKED)
		return ts_errf(e, E_BUSY, "session %llx is in use by request %llu: wait for its end",
			       (unsigned long long)a->session_id, (unsigned long long)s->reqs[ps].id);
	if (a->append && ps < 0)
		return ts_errf(e, E_INVAL, "session %llx has no parked KV to append to (never kept, expired or evicted): resend the whole conversation without append",
			       (unsigned long long)a->session_id);
	/* n_total: the sequence this request will hold (the parked one plus the
	 * new tokens when appending). */
	int base = a->append ? s->reqs[ps].n_tokens : 0, n_total = base + a->n_prompt;
	if (a->n_prompt < 1)
		return ts_errf(e, E_INVAL, "prompt is empty: send at least one token");
	if (n_total >= s->lim.max_seq_len)
		return ts_errf(e, E_RANGE, "prompt of %d tokens%s leaves no room under max_seq_len %d", n_total,
			       base ? " (with the session's parked tokens)" : "", s->lim.max_seq_len);
	for (int i = 0; i < a->n_prompt; i++)
		if (a->prompt[i] < 0 || a->prompt[i] >= d->vocab)
			return ts_errf(e, E_RANGE, "prompt token %d at index %d is outside the vocabulary (0..%d)",
				       a->prompt[i], i, d->vocab - 1);
	if (a->max_tokens < 1 || a->max_tokens > s->lim.max_seq_len - n_total)
		return ts_errf(e, E_RANGE, "max_tokens = %d: out of range (accepted 1..%d, the context left after a %d-token prompt)",
			       a->max_tokens, s->lim.max_seq_len - n_total, n_total);
	int64_t pool = (int64_t)s->kv.n_blocks * s->kv.block_tokens;
	if (n_total + a->max_tokens > pool)
		return ts_errf(e, E_RANGE, "prompt (%d) + max_tokens (%d) exceeds the KV pool (%lld tokens): lower max_tokens",
			       n_total, a->max_tokens, (long long)pool);
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
	if (ps < 0 && s->n_free == 0) {
		/* Every slot is taken (running, waiting or parked): a parked
		 * session gives its slot to live work. A resumed session reuses
		 * its own. */
		int old = oldest_parked(s);
		if (old < 0)
			return ts_errf(e, E_BUSY, "queue full (%d waiting): retry later", s->n_queue);
		session_end(s, old);
		s->st.sessions_evicted++;
	}

	int slot = ps, in_running = 0;
	if (ps >= 0) {
		/* A turn still storing its last token keeps its running place. */
		int i = index_of(s->parked, s->n_parked, ps);
		if (i >= 0)
			remove_at(s->parked, &s->n_parked, i);
		in_running = index_of(s->running, s->n_running, ps) >= 0;
		resume(s, ps, a, n_total);
	} else {
		slot = s->free_slots[--s->n_free];
		struct req *f = &s->reqs[slot];
		int32_t *tokens = f->tokens;
		memset(f, 0, sizeof(*f));
		f->tokens = tokens;
		f->state = REQ_QUEUED; /* a fresh slot enters the FSM here */
		f->state_slot = -1;
		memcpy(f->tokens, a->prompt, (size_t)a->n_prompt * sizeof(int32_t));
		f->n_prompt = f->n_tokens = a->n_prompt;
	}
	struct req *q = &s->reqs[slot];
	q->id = s->next_id++;
	q->user = a->user;
	q->max_tokens = a->max_tokens;
	q->n_stop = 0;
	for (int i = 0; i < a->n_stop_ids; i++)
		q->stop[q->n_stop++] = a->stop_ids[i];
	for (int i = 0; !a->ignore_eos && i < d->n_eos; i++)
		q->stop[q->n_stop++] = d->eos[i];
	q->priority = a->priority;
	q->samp = a->samp;
	q->finish = FINISH_NONE;
	q->n_preempted = q->n_cached = 0;
	q->session_id = a->session_id;
	q->keep = a->keep;
	q->held = 0;
	q->t_submit = ts_now();
	q->t_admit = q->t_first = q->t_done = q->t_parked = 0;
	if (in_running) {
		/* Admitted already: it holds a running place. */
		set_state(s, q, REQ_PREFILL);
		q->t_admit = q->t_submit;
		q->n_cached = q->n_computed;
		s->st.prompt_tokens += (uint64_t)q->n_prompt;
		s->st.cached_tokens += (uint64_t)q->n_cached;
	} else {
		if (ps >= 0)
			set_state(s, q, REQ_QUEUED);
		s->queue[s->n_queue++] = slot;
	}
	if (id)
		*id = q->id;
	return 0;
}

/* The slot of live request id (not PARKED: its turn has ended), or -1. */
static int live_slot(const struct sched *s, uint64_t id)
{
	for (int i = 0; i < s->n_slots; i++) {
		const struct req *r = &s->reqs[i];
		if (r->id == id && r->state != REQ_DONE && r->state != REQ_CANCELLED && r->state != REQ_FAILED &&
		    r->state != REQ_PARKED)
			return i;
	}
	return -1;
}

int sched_hold(struct sched *s, uint64_t id, int hold)
{
	int slot = live_slot(s, id);
	if (slot < 0)
		return -E_INVAL;
	s->reqs[slot].held = hold != 0;
	return 0;
}

int sched_busy(const struct sched *s)
{
	int n = s->n_running + s->n_queue;
	for (int i = 0; i < s->n_queue; i++)
		n -= s->reqs[s->queue[i]].held;
	return n;
}

/* Held running requests go to the queue with their KV: they compute nothing
 * and must not keep a running place from waiting work. */
static void yield_held(struct sched *s)
{
	for (int i = s->n_running - 1; i >= 0; i--) {
		int slot = s->running[i];
		struct req *r = &s->reqs[slot];
		if (!r->held || r->state == REQ_PARKED)
			continue;
		set_state(s, r, REQ_PREEMPTED);
		drop_running(s, i);
		s->queue[s->n_queue++] = slot;
	}
}

int sched_cancel(struct sched *s, uint64_t id, const struct sched_events *ev)
{
	int slot = live_slot(s, id);
	if (slot < 0)
		return -E_INVAL;
	finish(s, slot, REQ_CANCELLED, FINISH_CANCELLED, ev);
	return 0;
}

/* ------------------------------------------------------------ memory pressure */

/* Lower is more urgent: priority class, then arrival. */
static int before(const struct req *a, const struct req *b)
{
	return a->priority != b->priority ? a->priority < b->priority : a->id < b->id;
}

/* The least urgent running request to preempt (a turn that has parked is not
 * one), or -1. */
static int victim(const struct sched *s)
{
	int v = -1;
	for (int i = 0; i < s->n_running; i++) {
		if (s->reqs[s->running[i]].state == REQ_PARKED)
			continue;
		if (v < 0 || before(&s->reqs[s->running[v]], &s->reqs[s->running[i]]))
			v = i;
	}
	return v;
}

/* Running entry ri goes back to the queue; returns the chunk it had this step.
 * Its full blocks stay in the prefix cache, so readmission mostly finds them. */
static int preempt(struct sched *s, int ri)
{
	int chunk = s->b_chunk[ri];
	int slot = s->running[ri];
	struct req *r = &s->reqs[slot];
	kv_seq_release(&s->kv, slot);
	state_release(s, r);
	r->n_computed = 0;
	r->n_preempted++;
	s->st.preemptions++;
	set_state(s, r, REQ_PREEMPTED);
	drop_running(s, ri);
	s->queue[s->n_queue++] = slot;
	log_debug("sched: preempted req=%llu tokens=%d free_blocks=%d", (unsigned long long)r->id, r->n_tokens,
		  s->kv.n_free);
	return chunk;
}

/* Frees blocks for running work without touching running requests, cheapest
 * loss first: ends the least recently parked session, or else drops the KV of
 * a queued request holding any (a held one first, then the least urgent: a
 * resumed session waiting for a running place; it recomputes, mostly from the
 * prefix cache), never that of slot except. Returns 0 when neither exists. */
static int relieve(struct sched *s, int except)
{
	if (s->n_parked > 0) {
		session_end(s, s->parked[0]);
		s->st.sessions_evicted++;
		return 1;
	}
	int w = -1;
	for (int i = 0; i < s->n_queue; i++) {
		int slot = s->queue[i];
		if (slot == except || (kv_seq_blocks(&s->kv, slot) == 0 && s->reqs[slot].state_slot < 0))
			continue;
		if (w < 0 || s->reqs[slot].held > s->reqs[w].held ||
		    (s->reqs[slot].held == s->reqs[w].held && before(&s->reqs[w], &s->reqs[slot])))
			w = slot;
	}
	if (w < 0)
		return 0;
	kv_seq_release(&s->kv, w);
	state_release(s, &s->reqs[w]);
	s->reqs[w].n_computed = 0;
	return 1;
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

/* fit(), ending parked sessions and dropping queued KV while it falls short:
 * running work comes before both. */
static int fit_relieved(struct sched *s, int slot, int want)
{
	int n = fit(s, slot, want);
	while (n < want && relieve(s, slot))
		n = fit(s, slot, want);
	return n;
}

/* ------------------------------------------------------------ the step */

static int stops(const struct req *r, int32_t t)
{
	for (int i = 0; i < r->n_stop; i++)
		if (r->stop[i] == t)
			return 1;
	return 0;
}

/* Phase 2: prefill chunks of running requests, in admission order. */
static void plan_prefills(struct sched *s, int *budget)
{
	for (int i = 0; i < s->n_running && *budget > 0; i++) {
		int slot = s->running[i];
		struct req *r = &s->reqs[slot];
		if (r->state != REQ_PREFILL)
			continue;
		s->b_chunk[i] = fit_relieved(s, slot, TS_MIN(*budget, r->n_tokens - r->n_computed));
		*budget -= s->b_chunk[i];
	}
}

/* Phase 3: admit waiting requests, most urgent first, while a chunk fits. A
 * request that holds no KV first takes what the prefix cache has of it. */
static void plan_admissions(struct sched *s, int *budget)
{
	while (*budget > 0 && s->n_queue > 0 && s->n_running < s->lim.max_running) {
		int best = -1;
		for (int i = 0; i < s->n_queue; i++)
			if (!s->reqs[s->queue[i]].held &&
			    (best < 0 || before(&s->reqs[s->queue[i]], &s->reqs[s->queue[best]])))
				best = i;
		if (best < 0)
			break; /* every waiting request is held */
		int slot = s->queue[best];
		struct req *r = &s->reqs[slot];
		int matched = 0;
		/* With no room in its own blocks, none to hand out and none to
		 * free, it cannot start: leave the cache alone and wait. */
		int room = kv_seq_blocks(&s->kv, slot) * s->kv.block_tokens - r->n_computed;
		if (room <= 0 && s->kv.n_free == 0 && !relieve(s, slot))
			break;
		if (kv_seq_blocks(&s->kv, slot) == 0) {
			/* Only blocks before the last token: it must be computed for
			 * logits, and it would land in a shared block if that one
			 * came from the cache too. So a fully cached prompt whose
			 * length is a multiple of the block recomputes its last block. */
			r->n_computed = kv_seq_prefix(&s->kv, slot, r->tokens, r->n_tokens - 1);
			matched = 1;
		}
		int n = fit_relieved(s, slot, TS_MIN(*budget, r->n_tokens - r->n_computed));
		if (n == 0) {
			if (matched) { /* give the cached blocks back until it can run */
				kv_seq_release(&s->kv, slot);
				r->n_computed = 0;
			}
			break; /* the pool is full: wait for blocks to return */
		}
		remove_at(s->queue, &s->n_queue, best);
		if (r->t_admit == 0) {
			r->t_admit = ts_now();
			r->n_cached = r->n_computed;
			s->st.prompt_tokens += (uint64_t)r->n_prompt;
			s->st.cached_tokens += (uint64_t)r->n_cached;
		}
		set_state(s, r, REQ_PREFILL);
		s->b_chunk[s->n_running] = n;
		s->running[s->n_running++] = slot;
		*budget -= n;
	}
}

int sched_step(struct sched *s, const struct sched_events *ev)
{
	const int vocab = s->m->d.vocab, bt_tokens = s->kv.block_tokens;
	int budget = s->lim.max_batch_tokens, n_tok = 0, any_prefill = 0;
	double t0 = ts_now();

	sched_expire(s, t0);
	yield_held(s);

	/* 1. Decodes first: each needs room for one more position. Free parked
	 *    and queued KV, then preempt the least urgent running request, until
	 *    it fits (possibly by preempting itself). Every chunk starts at 0: a
	 *    victim not yet visited must not hand back last step's chunk as
	 *    budget. */
	memset(s->b_chunk, 0, (size_t)s->n_running * sizeof(int));
	for (int i = 0; i < s->n_running; i++) {
		struct req *r = &s->reqs[s->running[i]];
		if (r->state != REQ_DECODE)
			continue;
		while (kv_seq_reserve(&s->kv, s->running[i], r->n_tokens) == -E_NOSPACE) {
			if (relieve(s, -1))
				continue;
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
	/* 1b. Turns that just parked store their last token. They never take
	 *     blocks from live work: short of one, the session ends instead. */
	for (int i = 0; i < s->n_running && budget > 0; i++) {
		int slot = s->running[i];
		struct req *r = &s->reqs[slot];
		if (r->state != REQ_PARKED)
			continue;
		int ok = kv_seq_reserve(&s->kv, slot, r->n_tokens) == 0;
		while (!ok && relieve(s, slot))
			ok = kv_seq_reserve(&s->kv, slot, r->n_tokens) == 0;
		if (!ok) {
			session_end(s, slot);
			s->st.sessions_evicted++;
			i--;
			continue;
		}
		s->b_chunk[i] = 1;
		budget--;
	}
	/* 2, 3. Prefill chunks, then admissions. If not one token could be
	 *    scheduled, every running request waits on blocks another holds:
	 *    preempt the least urgent and try again, so the pool can never
	 *    deadlock (one request alone always fits: sched_submit checks). */
	for (;;) {
		plan_prefills(s, &budget);
		plan_admissions(s, &budget);
		int any = 0;
		for (int i = 0; i < s->n_running; i++)
			any |= s->b_chunk[i] > 0;
		int v = any ? -1 : victim(s);
		if (v < 0)
			break;
		budget += preempt(s, v);
	}

	/* 4. Lay out the batch. A sequence writes only into blocks it owns alone
	 *    (kv.h): a shared block is never overwritten. */
	struct batch bt = {0};
	int n_seqs = 0, n_logits = 0;
	for (int i = s->n_running - 1; i >= 0; i--) {
		int slot = s->running[i], n = s->b_chunk[i];
		struct req *r = &s->reqs[slot];
		for (int p = r->n_computed; p < r->n_computed + n; p += bt_tokens - p % bt_tokens)
			if (NEVER(!kv_seq_writable(&s->kv, slot, p))) {
				log_error("sched: req=%llu would write position %d into a shared block: failing it",
					  (unsigned long long)r->id, p);
				if (r->state == REQ_PARKED)
					session_end(s, slot);
				else
					finish(s, slot, REQ_FAILED, FINISH_ERROR, ev);
				break;
			}
	}
	for (int i = 0; i < s->n_running; i++) {
		int slot = s->running[i], n = s->b_chunk[i];
		struct req *r = &s->reqs[slot];
		if (n == 0)
			continue;
		if (s->has_state && r->state_slot < 0) {
			/* Short of a state: parked sessions and waiting requests give theirs
			 * (running requests hold at most max_running of the 2 * max_running,
			 * so one of them holds one). A state starts at position 0. */
			while ((r->state_slot = kv_state_alloc(&s->kv)) < 0 && relieve(s, slot))
				s->st.state_relieves++;
			if (NEVER(r->state_slot < 0 || r->n_computed != 0)) {
				log_error("sched: req=%llu has no state slot at position %d: failing it",
					  (unsigned long long)r->id, r->n_computed);
				finish(s, slot, REQ_FAILED, FINISH_ERROR, ev);
				i--;
				continue;
			}
		}
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
		s->b_seqs[n_seqs].state = r->state_slot;
		n_seqs++;
		/* All known tokens in: sample the next (a parked turn only stores). */
		if (r->n_computed + n == r->n_tokens && r->state != REQ_PARKED) {
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
		for (int i = s->n_running - 1; i >= 0; i--) {
			if (!s->b_chunk[i])
				continue;
			if (s->reqs[s->running[i]].state == REQ_PARKED)
				session_end(s, s->running[i]); /* its turn was already reported */
			else
				finish(s, s->running[i], REQ_FAILED, FINISH_ERROR, ev);
		}
		return rc;
	}

	/* 5. Advance computed positions, count them, and publish the blocks they
	 *    filled to the prefix cache (after the forward: their KV is stored). */
	for (int i = 0; i < s->n_running; i++) {
		int slot = s->running[i];
		struct req *r = &s->reqs[slot];
		if (s->b_chunk[i] == 0)
			continue;
		r->n_computed += s->b_chunk[i];
		if (r->state == REQ_PREFILL)
			s->st.prefill_tokens += (uint64_t)s->b_chunk[i];
		else
			s->st.decode_tokens += (uint64_t)s->b_chunk[i];
		kv_prefix_publish(&s->kv, slot, r->tokens, r->n_computed);
	}
	/* 6. Sample where logits came back; a turn ends DONE, or PARKED when
	 *    its session is kept and has room to go on. */
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
		int text_stop = ev && ev->on_token ? ev->on_token(ev->ctx, r, t) : 0;
		int n_gen = r->n_tokens - r->n_prompt;
		enum req_finish why = text_stop || stops(r, t)	      ? FINISH_STOP
				      : n_gen >= r->max_tokens	      ? FINISH_LENGTH
				      : r->n_tokens >= s->lim.max_seq_len ? FINISH_CONTEXT
									  : FINISH_NONE;
		if (why == FINISH_NONE)
			continue;
		/* Parking needs room for a next turn: one new token and one generated. */
		if (r->keep && r->session_id && r->n_tokens + 2 <= s->lim.max_seq_len)
			park(s, slot, why, ev);
		else
			finish(s, slot, REQ_DONE, why, ev);
	}
	/* 7. Parked turns whose last token is stored leave running. */
	for (int i = s->n_running - 1; i >= 0; i--) {
		int slot = s->running[i];
		const struct req *r = &s->reqs[slot];
		if (r->state == REQ_PARKED && r->n_computed == r->n_tokens) {
			drop_running(s, i);
			s->parked[s->n_parked++] = slot;
		}
	}

	double dt = ts_now() - t0;
	s->st.steps++;
	if (any_prefill)
		s->st.prefill_s += dt;
	else
		s->st.decode_s += dt;
	return n_tok;
}
