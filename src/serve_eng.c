/* serve_eng: the engine thread of `tokenspeed serve` (see serve.c for the
 * ownership rules): it takes commands from the MPSC ring, runs sched steps,
 * and pushes each request's events (tokens with their text, the terminal
 * frame) into its connection's SPSC ring. It never blocks on a client: a
 * full event ring closes that connection. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "serve_int.h"

/* Tells the network thread that slot ci has something new (serve.c says why
 * the exchange makes the events pushed before it visible there). */
static void eng_mark(struct serve *sv, int ci)
{
	if (!atomic_exchange_explicit(&sv->conns[ci].dirty, 1, memory_order_acq_rel)) {
		uint16_t id = (uint16_t)ci;
		ring_spsc_push(&sv->dirty, &id); /* never full: each slot is in it at most once */
	}
	sv->ev_pushed = 1;
}

static void eng_push(struct serve *sv, int ci, const struct ev *v)
{
	struct sconn *c = &sv->conns[ci];
	if (ring_spsc_push(&c->evr, v) < 0) {
		/* never block on a slow client: its connection is closed (its
		 * requests are cancelled after this step, see eng_overflow) */
		atomic_store_explicit(&c->overflow, 1, memory_order_release);
		sv->e_closing[ci] = 1;
	}
	eng_mark(sv, ci);
}

/* text in EV_TEXT events of msg's size, the last piece in v (EV_TOKEN or EV_TEXT) */
static void eng_push_text(struct serve *sv, int ci, struct ev *v, const char *t, size_t n)
{
	while (n > sizeof(v->msg)) {
		struct ev x = {.type = EV_TEXT, .slot = v->slot, .rid = v->rid, .n_text = sizeof(x.msg)};
		memcpy(x.msg, t, sizeof(x.msg));
		eng_push(sv, ci, &x);
		t += sizeof(x.msg), n -= sizeof(x.msg);
	}
	if (n)
		memcpy(v->msg, t, n);
	v->n_text = (uint16_t)n;
	eng_push(sv, ci, v);
}

/* The request slot's text state is the network thread's memory again (it
 * reuses the slot only after the terminal event that follows this). */
static void ereq_free_text(struct ereq *q)
{
	q->tx = NULL;
}

static int on_token(void *ctx, const struct req *r, int32_t token)
{
	struct serve *sv = ctx;
	int ci = (int)(r->user / (uint64_t)sv->o.max_requests);
	struct ereq *q = &sv->ereq[r->user];
	sv->e_generated++;
	if (!q->live || q->sched_id != r->id)
		return 0;
	if (q->credit > 0)
		q->credit--;
	if (q->credit == 0 && !q->held && sched_hold(&sv->en->s, r->id, 1) == 0)
		q->held = 1; /* throttled: decodes nothing until CREDIT (PROTOCOL.md, Flow control) */
	const char *t = NULL;
	size_t n = 0;
	int stop = q->tx ? stext_token(q->tx, token, &t, &n) : 0;
	if (sv->e_closing[ci])
		return stop;
	struct ev v = {.type = EV_TOKEN, .slot = (uint16_t)(r->user % (uint64_t)sv->o.max_requests), .rid = q->rid,
		       .token = token};
	eng_push_text(sv, ci, &v, t, n);
	return stop;
}

static uint64_t us(double a, double b)
{
	return a > 0 && b > a ? (uint64_t)((b - a) * 1e6) : 0;
}

static void on_done(void *ctx, const struct req *r)
{
	struct serve *sv = ctx;
	int ci = (int)(r->user / (uint64_t)sv->o.max_requests);
	struct ereq *q = &sv->ereq[r->user];
	if (!q->live || q->sched_id != r->id)
		return;
	q->live = 0;
	struct ev v = {.slot = (uint16_t)(r->user % (uint64_t)sv->o.max_requests), .rid = q->rid};
	if (q->tx && !sv->e_closing[ci] && (r->state == REQ_DONE || r->state == REQ_PARKED)) {
		const char *t;
		size_t n;
		stext_finish(q->tx, &t, &n);
		if (n) {
			struct ev x = {.type = EV_TEXT, .slot = v.slot, .rid = v.rid};
			eng_push_text(sv, ci, &x, t, n);
		}
	}
	ereq_free_text(q);
	if (r->state == REQ_FAILED || r->finish == FINISH_ERROR) {
		sv->e_failed++;
		v.type = EV_ERROR, v.code = PROTO_ERR_INTERNAL;
		snprintf(v.msg, sizeof(v.msg), "the engine failed this request");
	} else if (r->state == REQ_CANCELLED) {
		sv->e_cancelled++;
		if (q->how == HOW_SILENT)
			return;
		if (q->how == HOW_SERVER) {
			v.type = EV_ERROR, v.code = PROTO_ERR_CANCELLED;
			snprintf(v.msg, sizeof(v.msg), "cancelled by the server (drain deadline)");
		} else {
			v.type = EV_DONE, v.d.finish = PROTO_FINISH_CANCELLED;
		}
	} else {
		sv->e_done++;
		v.type = EV_DONE;
		v.d.finish = r->finish == FINISH_STOP     ? PROTO_FINISH_STOP
			     : r->finish == FINISH_CONTEXT ? PROTO_FINISH_CONTEXT
							   : PROTO_FINISH_LENGTH;
		if (r->state == REQ_PARKED)
			v.d.flags |= PROTO_DONE_SESSION_KEPT;
	}
	if (v.type == EV_DONE) {
		v.d.n_prompt = (uint32_t)r->n_prompt;
		v.d.n_cached = (uint32_t)(r->n_cached < r->n_prompt ? r->n_cached : r->n_prompt);
		v.d.n_generated = (uint32_t)(r->n_tokens - r->n_prompt);
		v.d.queue_us = us(r->t_submit, r->t_admit);
		v.d.ttft_us = us(r->t_submit, r->t_first);
		v.d.decode_us = us(r->t_first, r->t_done);
	}
	if (!sv->e_closing[ci])
		eng_push(sv, ci, &v);
}

static void eng_cancel_conn(struct serve *sv, int ci, const struct sched_events *ev)
{
	int mr = sv->o.max_requests;
	for (int k = 0; k < mr; k++) {
		struct ereq *q = &sv->ereq[ci * mr + k];
		if (q->live) {
			q->how = HOW_SILENT;
			if (sched_cancel(&sv->en->s, q->sched_id, ev) < 0)
				q->live = 0;
		}
		if (!q->live)
			ereq_free_text(q);
	}
}

static void eng_cmd(struct serve *sv, struct cmd *c, const struct sched_events *ev)
{
	struct sched *s = &sv->en->s;
	int mr = sv->o.max_requests;
	switch ((enum cmd_type)c->type) {
	case CMD_SUBMIT: {
		struct ts_err e = {0};
		uint64_t id = 0, user = (uint64_t)c->conn * (uint64_t)mr + c->slot;
		struct sched_submit a = {.prompt = c->ids, .n_prompt = c->n_prompt, .max_tokens = c->max_tokens,
					 .stop_ids = c->ids + c->n_prompt, .n_stop_ids = c->n_stop,
					 .ignore_eos = c->ignore_eos, .priority = c->priority, .samp = c->samp,
					 .user = user, .session_id = c->session_id, .keep = c->keep};
		int rc = sched_submit(s, &a, &id, &e); /* sched copied the ids: the FIFO's room goes back */
		atomic_store_explicit(&sv->ids_tail, c->ids_end, memory_order_release);
		if (rc < 0) {
			sv->e_rejected++;
			struct ev v = {.type = EV_ERROR, .slot = c->slot, .rid = c->rid};
			v.code = rc == -E_BUSY ? PROTO_ERR_BUSY
				 : rc == -E_RANGE || rc == -E_INVAL || rc == -E_NOSPACE ? PROTO_ERR_BAD_FIELD
											 : PROTO_ERR_INTERNAL;
			snprintf(v.msg, sizeof(v.msg), "%.119s", e.msg[0] ? e.msg : ts_code_name(rc));
			if (!sv->e_closing[c->conn])
				eng_push(sv, c->conn, &v);
			break;
		}
		sv->e_accepted++;
		sv->ereq[user] = (struct ereq){.sched_id = id, .rid = c->rid, .live = 1, .how = HOW_CLIENT, .tx = c->tx,
					       .credit = sv->o.initial_credit};
		break;
	}
	case CMD_CREDIT: {
		struct ereq *q = &sv->ereq[c->conn * mr + c->slot];
		if (!q->live || q->rid != c->rid)
			break;
		q->credit = c->n_credit > UINT32_MAX - q->credit ? UINT32_MAX : q->credit + c->n_credit;
		if (q->held && q->credit > 0) {
			sched_hold(s, q->sched_id, 0);
			q->held = 0;
		}
		break;
	}
	case CMD_CANCEL: {
		struct ereq *q = &sv->ereq[c->conn * mr + c->slot];
		if (q->live && q->rid == c->rid) {
			q->how = c->how;
			if (sched_cancel(s, q->sched_id, ev) < 0) {
				q->live = 0;
				ereq_free_text(q);
			}
		}
		break;
	}
	case CMD_CLOSE:
		sv->e_closing[c->conn] = 1;
		eng_cancel_conn(sv, c->conn, ev);
		sv->e_closing[c->conn] = 0;
		atomic_store_explicit(&sv->conns[c->conn].acked, 1, memory_order_release);
		eng_mark(sv, c->conn);
		break;
	case CMD_STOP:
		sv->stop = 1;
		break;
	}
}

_Static_assert(REQ_STATE_N == PROTO_N_REQ_STATES, "PROTOCOL.md numbers the request states: keep them in step");

void serve_eng_snapshot(struct serve *sv)
{
	struct sched *s = &sv->en->s;
	const struct sched_stats *st = &s->st;
#define SNAP(k, v) atomic_store_explicit(&sv->snap[PROTO_STAT_##k], (uint64_t)(v), memory_order_relaxed)
	SNAP(REQUESTS_RUNNING, s->n_running);
	SNAP(REQUESTS_QUEUED, s->n_queue);
	SNAP(SESSIONS_PARKED, s->n_sessions_parked);
	SNAP(REQUESTS_ACCEPTED, sv->e_accepted);
	SNAP(REQUESTS_DONE, sv->e_done);
	SNAP(REQUESTS_CANCELLED, sv->e_cancelled);
	SNAP(REQUESTS_FAILED, sv->e_failed);
	SNAP(REQUESTS_REJECTED, sv->e_rejected);
	SNAP(PROMPT_TOKENS, st->prompt_tokens);
	SNAP(CACHED_TOKENS, st->cached_tokens);
	SNAP(GENERATED_TOKENS, sv->e_generated);
	SNAP(STEPS, st->steps);
	SNAP(PREEMPTIONS, st->preemptions);
	SNAP(KV_BLOCKS, s->kv.n_blocks);
	SNAP(KV_BLOCKS_FREE, s->kv.n_free);
	SNAP(KV_BLOCK_TOKENS, s->lim.kv_block_tokens);
	SNAP(PREFILL_US, st->prefill_s * 1e6);
	SNAP(DECODE_US, st->decode_s * 1e6);
#undef SNAP
	for (int a = 0; a < REQ_STATE_N; a++)
		for (int b = 0; b < REQ_STATE_N; b++)
			atomic_store_explicit(&sv->trans[a][b], st->transitions[a][b], memory_order_relaxed);
}

void *serve_eng_main(void *arg)
{
	struct serve *sv = arg;
	struct sched *s = &sv->en->s;
	ts_alloc_serving(1);
	struct sched_events ev = {on_token, on_done, sv};
	struct cmd c;
	for (;;) {
		ring_wake_drain(&sv->cmd_wake);
		while (ring_mpsc_pop(&sv->cmds, &c))
			eng_cmd(sv, &c, &ev);
		for (int ci = 0; ci < sv->o.max_conns; ci++)
			if (sv->e_closing[ci])
				eng_cancel_conn(sv, ci, &ev); /* overflowed: the net thread closes it */
		if (sched_busy(s)) {
			int r = sched_step(s, &ev);
			if (r < 0)
				log_msg(LOG_ERROR, "serve: step failed: %s", ts_code_name(r));
		}
		serve_eng_snapshot(sv);
		if (sv->ev_pushed) {
			sv->ev_pushed = 0;
			ring_wake_notify(&sv->net_wake);
		}
		if (sv->stop && !sched_busy(s))
			break;
		if (!sched_busy(s)) {
			struct pollfd p = {.fd = ring_wake_fd(&sv->cmd_wake), .events = POLLIN};
			poll(&p, 1, 200);
			sched_expire(s, ts_now());
		}
	}
	return NULL;
}

