/* serve: network thread + engine thread over rings (see serve.h). This file
 * is the network thread's message routing (frames in -> requests and
 * commands; engine events -> frames out; the drain) and the lifecycle;
 * conns.c the table of connection slots; serve_eng.c the engine thread;
 * serve_int.h the messages between them and the state. A text or chat
 * SUBMIT's prompt is tokenized by a text worker (textw): the request waits in
 * NR_TEXT until its job comes back (take_text), then goes on as an ids
 * SUBMIT would.
 *
 * Reading order: the network thread's per-request bookkeeping (engine
 * events -> frames out); frames in (routing each to its request, a command
 * to the engine, or an answer); servicing a connection after any event; the
 * drain; the handlers that net_run calls; start/stop. The epoll loop and the
 * timers are net's; the connection's states, clocks and transport steps
 * conn's; the table of connection slots (accept with eviction and the
 * per-peer cap, closing, reuse, each slot's deadline) conns'.
 *
 * Ownership. A connection slot's event ring has one producer (the engine) and
 * one consumer (the network thread). A slot is reused only after the engine
 * acknowledged the connection's CLOSE (sconn.acked, conns_reap): every
 * command for that slot was before the CLOSE in the one FIFO command ring, so
 * no stale command or event can reach the next connection. Request slots (per
 * connection) are freed by the network thread only when the engine's
 * terminal event for them arrived, so a (connection, request slot) pair names
 * one request at a time.
 */
#include "serve_int.h"
#include "conns.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"
#include "net.h"

/* ------------------------------------------------------------ network: output */

static void out_commit(struct serve *sv, struct sconn *c, int n)
{
	if (n > 0) {
		conn_io_commit(&c->cn.io, (size_t)n);
		sv->frames_out++;
	}
}

static void send_error(struct serve *sv, struct sconn *c, uint32_t rid, uint32_t code, const char *msg)
{
	size_t room;
	uint8_t *p = conn_io_tail(&c->cn.io, &room);
	out_commit(sv, c, proto_encode_error(p, room, rid, code, msg));
}

static void send_done(struct serve *sv, struct sconn *c, uint32_t rid, const struct proto_done *d)
{
	size_t room;
	uint8_t *p = conn_io_tail(&c->cn.io, &room);
	out_commit(sv, c, proto_encode_done(p, room, rid, d));
}

/* ERROR with request id 0, then close once it is written. */
static void conn_fail(struct serve *sv, struct sconn *c, uint32_t code, const char *msg)
{
	send_error(sv, c, 0, code, msg);
	if (code == PROTO_ERR_PROTOCOL || code == PROTO_ERR_BAD_FRAME || code == PROTO_ERR_FRAME_TOO_LARGE ||
	    code == PROTO_ERR_UNSUPPORTED_VERSION)
		sv->proto_errors++;
	conn_set_state(&c->cn, CONN_CLOSING, ts_now());
}

static void req_free(struct sconn *c, struct nreq *q)
{
	nreq_reset(q);
	c->n_live--;
}

/* Moves what is not yet sent to the front of pend, tend and text. */
static void req_compact(struct nreq *q)
{
	int k = q->sent, n = q->n_pend - q->sent;
	uint32_t t = q->text_sent;
	memmove(q->pend, q->pend + k, (size_t)n * sizeof(*q->pend));
	if (q->tend)
		for (int i = 0; i < n; i++)
			q->tend[i] = q->tend[i + k] - t;
	memmove(q->text, q->text + t, q->text_len - t);
	q->n_gone += (uint32_t)k;
	q->n_pend = n, q->sent = 0;
	q->text_len -= t, q->text_sent = 0;
}

/* Whether q's window holds event v (compacting it if need be). */
static int req_room(const struct serve *sv, struct nreq *q, const struct ev *v)
{
	uint32_t text = q->tend ? v->n_text : 0;
	for (int pass = 0; pass < 2; pass++) {
		if ((v->type != EV_TOKEN || q->n_pend < (int)SERVE_PEND_TOKENS) && q->text_len + text <= sv->text_cap)
			return 1;
		if (pass == 0)
			req_compact(q);
	}
	return 0;
}

static void req_cancel(struct serve *sv, struct sconn *c, struct nreq *q, enum cancel_how how)
{
	struct cmd m = {.type = CMD_CANCEL, .how = (uint8_t)how, .conn = (uint16_t)(c - sv->conns),
			.slot = (uint16_t)(q - c->req), .rid = q->rid};
	if (q->cancel_done)
		return;
	if (serve_cmd_push(sv, &m) < 0) {
		q->cancel_want = 1 + (int)how;
		return;
	}
	q->cancel_want = 0;
	q->cancel_done = 1;
}

/* The request's terminal frame was just sent by us: the engine's is dropped
 * (a prompt still with a text worker is dropped when it comes back). */
static void req_end_here(struct serve *sv, struct sconn *c, struct nreq *q)
{
	if (q->st == NR_TEXT) {
		q->text_dropped = 1;
		return;
	}
	if (q->has_term) {
		req_free(c, q);
		return;
	}
	q->st = NR_ZOMBIE;
	req_cancel(sv, c, q, HOW_SILENT);
}

static struct nreq *req_find(struct sconn *c, int mr, uint32_t rid)
{
	for (int k = 0; k < mr; k++) {
		struct nreq *q = &c->req[k];
		if ((q->st == NR_LIVE || (q->st == NR_TEXT && !q->text_dropped)) && q->rid == rid)
			return q;
	}
	return NULL;
}

/* Sends what credit and the output limit allow; the terminal frame after the
 * last token; STALLED after credit_timeout_ms without credit. Returns 1 when
 * the output limit held tokens back that credit would allow. */
static int pump_tokens(struct serve *sv, struct sconn *c, double now)
{
	int held = 0;
	if (c->cn.st != CONN_OPEN)
		return 0;
	for (int k = 0; k < sv->o.max_requests; k++) {
		struct nreq *q = &c->req[k];
		if (q->st != NR_LIVE)
			continue;
		if (q->credit_owed) { /* the engine paused it at zero credit: pass the grant on */
			struct cmd m = {.type = CMD_CREDIT, .conn = (uint16_t)(c - sv->conns), .slot = (uint16_t)k,
					.rid = q->rid, .n_credit = q->credit_owed};
			if (serve_cmd_push(sv, &m) == 0)
				q->credit_owed = 0;
		}
		while (q->sent < q->n_pend && q->credit > 0 && conn_io_unsent(&c->cn.io) < sv->o.out_limit_bytes) {
			uint32_t n = (uint32_t)(q->n_pend - q->sent), fit = (c->max_frame - PROTO_HDR_BYTES - 8) / 4;
			n = n < q->credit ? n : q->credit;
			n = n < fit ? n : fit;
			struct proto_tokens_args a = {.ids = q->pend + q->sent, .n = n};
			if (q->tend) {
				/* the text these n tokens complete; fewer tokens while it does not fit */
				while (n > 1 && proto_tokens_size(n, 0, 0, 1, q->tend[q->sent + (int)n - 1] - q->text_sent) >
						    c->max_frame)
					n /= 2;
				a.n = n;
				uint32_t end = q->tend[q->sent + (int)n - 1];
				a.text = (struct proto_str){q->text + q->text_sent, end - q->text_sent};
			}
			size_t room;
			uint8_t *p = conn_io_tail(&c->cn.io, &room);
			int w = proto_encode_tokens(p, room, q->rid, &a);
			if (w < 0)
				break;
			out_commit(sv, c, w);
			q->text_sent += a.text.len;
			q->sent += (int)n, q->credit -= n;
		}
		held |= q->sent < q->n_pend && q->credit > 0;
		if (q->has_term && q->sent == q->n_pend && q->text_sent < q->text_len) {
			/* text held to the end: one TOKENS with no ids (needs no credit) */
			struct proto_tokens_args a = {.text = {q->text + q->text_sent, q->text_len - q->text_sent}};
			size_t room;
			uint8_t *p = conn_io_tail(&c->cn.io, &room);
			int w = proto_encode_tokens(p, room, q->rid, &a);
			if (w > 0) {
				out_commit(sv, c, w);
				q->text_sent = q->text_len;
			}
		}
		if (q->has_term && q->sent == q->n_pend && q->text_sent == q->text_len) {
			q->term.n_generated = q->n_gone + (uint32_t)q->sent;
			send_done(sv, c, q->rid, &q->term);
			req_free(c, q);
			continue;
		}
		if (q->credit == 0) { /* paused in the engine, or holding unsent tokens */
			if (q->t_stall == 0)
				q->t_stall = now;
			else if ((now - q->t_stall) * 1e3 >= sv->o.credit_timeout_ms) {
				send_error(sv, c, q->rid, PROTO_ERR_STALLED, "no CREDIT for credit_timeout_ms");
				req_end_here(sv, c, q);
			}
		} else {
			q->t_stall = 0;
		}
	}
	return held;
}

/* The connection's events, each into its request's window; an event that
 * finds the window full stays (c->stash) until the output drains. */
static void take_events(struct serve *sv, struct sconn *c)
{
	while (c->has_stash || ring_spsc_pop(&c->evr, &c->stash)) {
		struct ev *v = &c->stash;
		c->has_stash = 0;
		if (v->slot >= sv->o.max_requests)
			continue;
		struct nreq *q = &c->req[v->slot];
		if (q->st == NR_FREE || q->rid != v->rid)
			continue;
		if (v->type == EV_TOKEN || v->type == EV_TEXT) {
			if (q->st != NR_LIVE)
				continue;
			if (!req_room(sv, q, v)) {
				c->has_stash = 1;
				atomic_store_explicit(&sv->n_stashed,
						      atomic_load_explicit(&sv->n_stashed, memory_order_relaxed) + 1,
						      memory_order_relaxed); /* one writer: this thread */
				return;
			}
			if (v->n_text && q->tend) {
				memcpy(q->text + q->text_len, v->msg, v->n_text);
				q->text_len += v->n_text;
			}
			if (v->type == EV_TOKEN) {
				if (q->tend)
					q->tend[q->n_pend] = q->text_len;
				q->pend[q->n_pend++] = v->token;
			}
			continue;
		}
		if (q->st == NR_ZOMBIE || c->cn.st != CONN_OPEN) {
			req_free(c, q);
			continue;
		}
		if (v->type == EV_ERROR) {
			send_error(sv, c, q->rid, v->code, v->msg);
			req_free(c, q);
		} else if (v->d.finish == PROTO_FINISH_CANCELLED) {
			v->d.n_generated = q->n_gone + (uint32_t)q->sent; /* unsent tokens are dropped */
			send_done(sv, c, q->rid, &v->d);
			req_free(c, q);
		} else {
			q->term = v->d;
			q->has_term = 1;
		}
	}
}

/* ------------------------------------------------------------ network: frames in */

static void send_goaway(struct serve *sv, struct sconn *c)
{
	size_t room;
	uint8_t *p = conn_io_tail(&c->cn.io, &room);
	out_commit(sv, c, proto_encode_goaway(p, room, atomic_load(&sv->drain_ms), "server is draining"));
	c->goaway_sent = 1;
}

/* What every SUBMIT on a connection with max frame mf is checked against. */
static struct proto_limits serve_limits(const struct serve *sv, uint32_t mf)
{
	const struct engine *en = sv->en;
	struct proto_limits l = {.max_frame = mf, .vocab = (uint32_t)en->m.d.vocab,
				 .max_seq_len = (uint32_t)en->max_seq_len, .max_tokens = (uint32_t)en->max_seq_len - 1,
				 .max_stop_ids = SCHED_MAX_STOP};
	if (en->has_tok) {
		l.has_tokenizer = 1;
		l.max_stop_ids--; /* room for the tokenizer's end of turn */
		l.max_stop_seqs = PROTO_MAX_STOP_SEQS;
		l.max_stop_seq_bytes = PROTO_MAX_STOP_SEQ_BYTES;
		l.max_text_bytes = mf - 1024; /* the rest of a SUBMIT fits beside it */
	}
	return l;
}

static void on_hello(struct serve *sv, struct sconn *c, const struct proto_frame *f)
{
	struct ts_err e = {0};
	struct proto_hello h;
	uint32_t ver, mf;
	if (f->h.type != PROTO_HELLO || f->h.request_id != 0) {
		conn_fail(sv, c, PROTO_ERR_PROTOCOL, "the first frame must be HELLO");
		return;
	}
	if (proto_decode_hello(f->payload, f->h.length, f->h.flags, &h, &e) < 0) {
		conn_fail(sv, c, PROTO_ERR_PROTOCOL, e.msg);
		return;
	}
	if (proto_negotiate(&h, sv->o.max_frame, &ver, &mf, &e) < 0) {
		conn_fail(sv, c, PROTO_ERR_UNSUPPORTED_VERSION, e.msg);
		return;
	}
	const struct engine *en = sv->en;
	const char *name = strrchr(en->cfg.model.path, '/');
	name = name && name[1] ? name + 1 : en->cfg.model.path;
	char srv[PROTO_MAX_NAME + 1];
	snprintf(srv, sizeof(srv), "tokenspeed 0.1%s%s", sv->o.note ? "; " : "", sv->o.note ? sv->o.note : "");
	struct proto_welcome w = {
		.version = ver,
		.max_requests = (uint32_t)sv->o.max_requests,
		.initial_credit = sv->o.initial_credit,
		.credit_timeout_ms = sv->o.credit_timeout_ms,
		.ping_interval_ms = sv->o.ping_interval_ms,
		.idle_timeout_ms = sv->o.idle_timeout_ms,
		.lim = serve_limits(sv, mf),
		.model = {name, (uint32_t)strnlen(name, PROTO_MAX_NAME)},
		.arch = {en->m.arch_name, (uint32_t)strnlen(en->m.arch_name, PROTO_MAX_NAME)},
		.checkpoint = {name, (uint32_t)strnlen(name, PROTO_MAX_NAME)},
		.server = {srv, (uint32_t)strlen(srv)},
	};
	size_t room;
	uint8_t *p = conn_io_tail(&c->cn.io, &room);
	int n = proto_encode_welcome(p, room, &w);
	if (n < 0 || proto_reader_limit(&c->cn.io.rd, mf, (uint8_t)ver) < 0) {
		conn_fail(sv, c, PROTO_ERR_PROTOCOL, "cannot welcome this HELLO");
		return;
	}
	out_commit(sv, c, n);
	c->max_frame = mf;
	conn_set_state(&c->cn, CONN_OPEN, ts_now());
	if (sv->draining)
		send_goaway(sv, c);
}

/* The prompt is ids now (ids: n_prompt of them with room for the stop ids
 * after; NULL: the SUBMIT's own ids): the rest of the SUBMIT goes to the
 * engine from request slot q (free). */
/* Room for n ids in the FIFO to the engine (see serve_int.h), or NULL;
 * *end: the ids_head that takes it (set it once the command is pushed). */
static int32_t *ids_take(struct serve *sv, size_t n, uint64_t *end)
{
	uint64_t h = sv->ids_head, pos = h % sv->ids_cap;
	if (n > sv->ids_cap)
		return NULL;
	if (pos + n > sv->ids_cap) /* never across the end: skip the rest */
		h += sv->ids_cap - pos, pos = 0;
	if (h + n - atomic_load_explicit(&sv->ids_tail, memory_order_acquire) > sv->ids_cap)
		return NULL;
	*end = h + n;
	return sv->ids_mem + pos;
}

/* The prompt is ids now (ids: n_prompt of them; NULL: the SUBMIT's own
 * ids): the rest of the SUBMIT goes to the engine from request slot q
 * (free). */
static void submit_ready(struct serve *sv, struct sconn *c, struct nreq *q, uint32_t rid, const struct proto_submit *s,
			 const int32_t *prompt, int n_prompt, uint32_t credit)
{
	const struct engine *en = sv->en;
	int want_text = (s->flags & PROTO_SUBMIT_WANT_TEXT) != 0, eot = 0;
	if (en->has_tok && en->tok.eos_id >= 0 && !(s->flags & PROTO_SUBMIT_IGNORE_EOS))
		eot = 1; /* the tokenizer's end of turn stops like the model's EOS */
	int n_stop = (int)s->stop_ids.n + eot;
	uint64_t end = 0;
	int32_t *ids = ids_take(sv, (size_t)n_prompt + (size_t)n_stop, &end);
	if (!ids) {
		sv->n_rejected++;
		send_error(sv, c, rid, PROTO_ERR_BUSY, "the prompts on their way to the engine fill its queue: retry");
		return;
	}
	if (prompt)
		memcpy(ids, prompt, (size_t)n_prompt * sizeof(int32_t));
	else
		proto_u32s_copy(&s->prompt, ids);
	int with_tx = want_text || s->n_stop_seqs; /* the engine watches the text */
	struct stext *tx = NULL;
	if (with_tx && !(tx = stext_init(q->b.tx, sv->tx_bytes, &en->tok, want_text, s->stop_seqs, s->n_stop_seqs))) {
		send_error(sv, c, rid, PROTO_ERR_INTERNAL, "the stop sequences do not fit the request's text state");
		return;
	}
	proto_u32s_copy(&s->stop_ids, ids + n_prompt);
	if (eot)
		ids[n_prompt + n_stop - 1] = en->tok.eos_id;
	struct cmd m = {.type = CMD_SUBMIT, .conn = (uint16_t)(c - sv->conns), .slot = (uint16_t)(q - c->req),
			.rid = rid, .ids = ids, .ids_end = end, .tx = tx, .n_prompt = n_prompt, .n_stop = n_stop,
			.max_tokens = (int)s->max_tokens, .priority = (int)s->priority,
			.ignore_eos = !!(s->flags & PROTO_SUBMIT_IGNORE_EOS), .keep = !!(s->flags & PROTO_SUBMIT_KEEP_SESSION),
			.session_id = s->session_id, .samp = s->samp};
	if (serve_cmd_push(sv, &m) < 0) {
		sv->n_rejected++;
		send_error(sv, c, rid, PROTO_ERR_BUSY, "the server's command queue is full");
		return;
	}
	sv->ids_head = end;
	nreq_reset(q);
	q->st = NR_LIVE, q->rid = rid, q->credit = credit;
	q->tend = want_text ? q->b.tend : NULL;
	c->n_live++;
}

static void on_submit(struct serve *sv, struct sconn *c, const struct proto_frame *f)
{
	struct ts_err e = {0};
	struct proto_submit s, *sp = &s;
	uint32_t rid = f->h.request_id;
	if (req_find(c, sv->o.max_requests, rid)) {
		conn_fail(sv, c, PROTO_ERR_PROTOCOL, "SUBMIT reuses the id of a live request");
		return;
	}
	/* a text or chat prompt is decoded from a copy of the payload that goes
	 * with it to a text worker (textw): no tokenizing on this thread */
	struct textw_job *j = NULL;
	const uint8_t *payload = f->payload;
	if ((f->h.flags & (PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_CHAT)) && sv->tw) {
		if (!(j = textw_job_new(sv->tw, (uint32_t)(c - sv->conns), f->payload, f->h.length))) {
			sv->n_rejected++;
			send_error(sv, c, rid, PROTO_ERR_BUSY,
				   "this connection has " TS_STR(SERVE_TEXT_JOBS) " text prompts waiting to be tokenized: retry");
			return;
		}
		payload = j->payload, sp = &j->s;
	}
	struct proto_limits lim = serve_limits(sv, c->max_frame);
	int rc = proto_decode_submit(payload, f->h.length, f->h.flags, &lim, sp, &e);
	if (rc < 0) {
		sv->n_rejected++;
		send_error(sv, c, rid, proto_decode_err(rc), e.msg);
		textw_job_free(sv->tw, j);
		return;
	}
	if (sv->draining) {
		sv->n_rejected++;
		send_error(sv, c, rid, PROTO_ERR_DRAINING, "the server is draining (GOAWAY)");
		textw_job_free(sv->tw, j);
		return;
	}
	struct nreq *q = NULL;
	for (int k = 0; k < sv->o.max_requests && !q; k++)
		if (c->req[k].st == NR_FREE)
			q = &c->req[k];
	if (!q) {
		sv->n_rejected++;
		send_error(sv, c, rid, PROTO_ERR_TOO_MANY_REQUESTS, "max_requests live requests on this connection");
		textw_job_free(sv->tw, j);
		return;
	}
	if (!j) {
		submit_ready(sv, c, q, rid, sp, NULL, (int)sp->prompt.n, sv->o.initial_credit);
		return;
	}
	j->tag = (uint64_t)(c - sv->conns) << 32 | (uint64_t)(q - c->req);
	j->n_extra = (int)j->s.stop_ids.n + 1; /* the stop ids and the end of turn */
	if (textw_submit(sv->tw, j) < 0) {
		sv->n_rejected++;
		send_error(sv, c, rid, PROTO_ERR_INTERNAL, "the text workers refused the prompt");
		textw_job_free(sv->tw, j);
		return;
	}
	nreq_reset(q);
	q->st = NR_TEXT, q->rid = rid, q->credit = sv->o.initial_credit, q->job = j;
	c->n_live++;
}

/* Prompts back from the text workers: each goes on to the engine, or its
 * error to the client; a job whose request was dropped meanwhile (cancelled,
 * its connection gone and the slot perhaps reused) finds its slot no longer
 * waiting for it and is only freed. */
static void conn_service(struct serve *sv, struct sconn *c, double now);

/* Prompts the text workers finished: each goes on as an ids SUBMIT (or ends
 * in its ERROR), and its connection is serviced at once (the loop is
 * event-driven: nothing else would flush that output). */
static void take_text(struct serve *sv, double now)
{
	struct textw_job *j;
	while ((j = textw_poll(sv->tw))) {
		struct sconn *c = &sv->conns[j->tag >> 32];
		struct nreq *q = &c->req[(uint32_t)j->tag];
		if (q->st != NR_TEXT || q->job != j) {
			textw_job_free(sv->tw, j);
			continue;
		}
		uint32_t rid = q->rid, credit = q->credit;
		int dropped = q->text_dropped || c->cn.st != CONN_OPEN;
		req_free(c, q);
		int rc = j->rc;
		struct ts_err e = j->err;
		const struct engine *en = sv->en;
		if (rc == 0 && (j->n_prompt < 1 || j->n_prompt + (int64_t)j->s.max_tokens > en->max_seq_len))
			rc = ts_errf(&e, E_RANGE,
				     "SUBMIT %s: %d tokens; with max_tokens = %u that is more than max_seq_len = %d",
				     (j->s.flags & PROTO_SUBMIT_CHAT) ? "messages" : "prompt_text", j->n_prompt,
				     j->s.max_tokens, en->max_seq_len);
		if (!dropped && rc < 0) {
			sv->n_rejected++;
			send_error(sv, c, rid,
				   rc == -E_UNSUPPORTED ? PROTO_ERR_UNSUPPORTED
				   : rc == -E_NOMEM     ? PROTO_ERR_BUSY
							: PROTO_ERR_BAD_FIELD,
				   e.msg);
		} else if (!dropped) {
			submit_ready(sv, c, q, rid, &j->s, j->ids, j->n_prompt, credit);
		}
		textw_job_free(sv->tw, j);
		conn_service(sv, c, now);
	}
}

static void on_frame(struct serve *sv, struct sconn *c, const struct proto_frame *f)
{
	struct ts_err e = {0};
	uint32_t code = 0, rid = f->h.request_id;
	sv->frames_in++;
	if (c->cn.st == CONN_HELLO) {
		on_hello(sv, c, f);
		return;
	}
	if (proto_hdr_check(&f->h, PROTO_TO_SERVER, &code, &e) < 0) {
		if (code == PROTO_ERR_UNKNOWN_TYPE) {
			send_error(sv, c, rid, code, e.msg);
			struct nreq *q = rid ? req_find(c, sv->o.max_requests, rid) : NULL;
			if (q)
				req_end_here(sv, c, q);
		} else {
			conn_fail(sv, c, code ? code : PROTO_ERR_PROTOCOL, e.msg);
		}
		return;
	}
	switch ((enum proto_type)f->h.type) {
	case PROTO_SUBMIT:
		on_submit(sv, c, f);
		return;
	case PROTO_CANCEL:
	case PROTO_CREDIT: {
		struct nreq *q = req_find(c, sv->o.max_requests, rid);
		uint32_t tokens = 0;
		int rc = f->h.type == PROTO_CANCEL
				 ? proto_decode_empty(f->payload, f->h.length, f->h.flags, "CANCEL", &e)
				 : proto_decode_credit(f->payload, f->h.length, f->h.flags, &tokens, &e);
		if (rc < 0) {
			send_error(sv, c, rid, PROTO_ERR_BAD_FIELD, e.msg);
			if (q)
				req_end_here(sv, c, q);
			return;
		}
		if (!q)
			return;
		if (f->h.type == PROTO_CANCEL && q->st == NR_TEXT) { /* nothing reached the engine yet */
			struct proto_done d = {.finish = PROTO_FINISH_CANCELLED};
			send_done(sv, c, rid, &d);
			req_end_here(sv, c, q);
		} else if (f->h.type == PROTO_CANCEL)
			req_cancel(sv, c, q, HOW_CLIENT);
		if (f->h.type == PROTO_CREDIT) {
			q->credit = tokens > UINT32_MAX - q->credit ? UINT32_MAX : q->credit + tokens;
			q->credit_owed = tokens > UINT32_MAX - q->credit_owed ? UINT32_MAX : q->credit_owed + tokens;
		}
		return;
	}
	case PROTO_PING:
	case PROTO_PONG: {
		uint64_t v;
		if (proto_decode_ping(f->payload, f->h.length, f->h.flags, &v, &e) < 0) {
			conn_fail(sv, c, PROTO_ERR_PROTOCOL, e.msg);
			return;
		}
		if (f->h.type == PROTO_PING) {
			size_t room;
			uint8_t *p = conn_io_tail(&c->cn.io, &room);
			out_commit(sv, c, proto_encode_pong(p, room, v));
		}
		return;
	}
	case PROTO_STATS: {
		if (proto_decode_empty(f->payload, f->h.length, f->h.flags, "STATS", &e) < 0) {
			conn_fail(sv, c, PROTO_ERR_PROTOCOL, e.msg);
			return;
		}
		struct proto_stat kv[PROTO_STAT_END + REQ_STATE_N * REQ_STATE_N];
		uint32_t n = 0;
		for (uint32_t k = 1; k < PROTO_STAT_END; k++)
			kv[n++] = (struct proto_stat){k, atomic_load_explicit(&sv->snap[k], memory_order_relaxed)};
		for (uint32_t i = 0; i < n; i++) {
			switch (kv[i].key) {
			case PROTO_STAT_UPTIME_MS:
				kv[i].value = (uint64_t)((ts_now() - sv->t_ready) * 1e3);
				break;
			case PROTO_STAT_CONNECTIONS:
				kv[i].value = sv->n_conns;
				break;
			case PROTO_STAT_REQUESTS_REJECTED:
				kv[i].value += sv->n_rejected;
				break;
			case PROTO_STAT_FRAMES_IN:
				kv[i].value = sv->frames_in;
				break;
			case PROTO_STAT_FRAMES_OUT:
				kv[i].value = sv->frames_out + 1;
				break;
			case PROTO_STAT_PROTOCOL_ERRORS:
				kv[i].value = sv->proto_errors;
				break;
			case PROTO_STAT_CONNECTIONS_REFUSED:
				kv[i].value = sv->n_refused;
				break;
			case PROTO_STAT_CONNECTIONS_EVICTED:
				kv[i].value = sv->n_evicted;
				break;
			case PROTO_STAT_CONNECTIONS_TIMED_OUT:
				kv[i].value = sv->n_timed_out;
				break;
			}
		}
		for (int a = 0; a < REQ_STATE_N; a++) /* key 1000 + 8 * from + to (PROTOCOL.md) */
			for (int b = 0; b < REQ_STATE_N; b++)
				kv[n++] = (struct proto_stat){PROTO_STAT_TRANS + (uint32_t)(a * REQ_STATE_N + b),
							      atomic_load_explicit(&sv->trans[a][b], memory_order_relaxed)};
		size_t room;
		uint8_t *p = conn_io_tail(&c->cn.io, &room);
		out_commit(sv, c, proto_encode_stats(p, room, kv, n));
		return;
	}
	case PROTO_HELLO:
		conn_fail(sv, c, PROTO_ERR_PROTOCOL, "a second HELLO");
		return;
	case PROTO_WELCOME: /* the server's own types: proto_hdr_check refused them above */
	case PROTO_TOKENS:
	case PROTO_DONE:
	case PROTO_ERROR:
	case PROTO_GOAWAY:
	case PROTO_TYPE_END:
		conn_fail(sv, c, PROTO_ERR_PROTOCOL, "a frame the server does not accept");
		return;
	}
}

/* ------------------------------------------------------------ network: servicing a connection
 *
 * Event-driven: a slot is serviced (conn_service) only when something happened
 * to it: its socket is ready (epoll), the engine pushed events for it or
 * acknowledged its CLOSE (the dirty ring), or its deadline passed (net's timer
 * heap, one deadline per slot: the nearest of its state's clock, a throttled
 * request's credit_timeout_ms, the drain deadline, a retry of a full command
 * ring). Nothing sweeps every connection on a period.
 *
 * The dirty ring. The engine pushes a slot's id when it flips the slot's
 * dirty flag from 0 to 1 (after pushing the events themselves); the network
 * thread pops the id, flips the flag back to 0, then takes the events. Both
 * flips are exchanges with acq_rel order, so when the engine's exchange finds
 * 1 (and pushes no id) the network thread's later exchange reads the engine's
 * write and synchronizes with it: the events pushed before it are seen by the
 * take that follows. An id is in the ring at most once, so a ring of
 * max_conns ids never fills. */

static struct sconn *sconn_of(struct conn *cn)
{
	return (struct sconn *)((char *)cn - offsetof(struct sconn, cn));
}

static void frame_in(void *ctx, struct conn *cn, const struct proto_frame *f)
{
	on_frame(ctx, sconn_of(cn), f);
}

/* The socket is readable (or the handshake wants it): what conn_read found. */
static void conn_input(struct serve *sv, struct sconn *c, double now)
{
	struct ts_err e = {0};
	switch (conn_read(&c->cn, sv->o.out_limit_bytes, now, frame_in, sv, &e)) {
	case CONN_READ_AGAIN:
		return;
	case CONN_READ_FULL: /* conn_output reads on once the output drains */
		c->paused = 1;
		return;
	case CONN_READ_MORE: /* its turn's input budget is spent: conns_arm brings it back next round */
		c->more_in = 1;
		return;
	case CONN_READ_REFUSED:
		log_rl(1000, LOG_WARN, "serve: TLS handshake refused: peer=%s %s", c->cn.peer.text, c->cn.io.tls.err.msg);
		conns_kill(sv, c);
		return;
	case CONN_READ_EOF: /* end of stream: its requests are cancelled */
		conns_kill(sv, c);
		return;
	case CONN_READ_BAD:
		conn_fail(sv, c, c->cn.io.rd.err, e.msg);
		return;
	}
}

static void conn_output(struct serve *sv, struct sconn *c, double now)
{
	int rc = conn_write(&c->cn);
	if (rc != 0) { /* dead, or CLOSING and all sent */
		conns_kill(sv, c);
		return;
	}
	if (c->paused && conn_io_unsent(&c->cn.io) < sv->o.out_limit_bytes) {
		c->paused = 0;
		conn_input(sv, c, now); /* decrypted bytes may wait inside the session */
		if (conn_write(&c->cn) != 0)
			conns_kill(sv, c);
	}
}

static void drain_tick(struct serve *sv, struct sconn *c, double now);

/* Everything a slot has to do after an event of any kind. */
static void conn_service(struct serve *sv, struct sconn *c, double now)
{
	if (c->cn.st == CONN_FREE)
		return;
	if (c->cn.st != CONN_DEAD && atomic_load_explicit(&c->overflow, memory_order_acquire))
		conns_kill(sv, c);
	if (c->cn.st == CONN_DEAD) {
		conns_reap(sv, c);
		if (c->cn.st == CONN_DEAD)
			conns_arm(sv, c, now);
		return;
	}
	take_events(sv, c);
	for (int k = 0; k < sv->o.max_requests; k++)
		if (c->req[k].cancel_want) {
			c->req[k].cancel_done = 0;
			req_cancel(sv, c, &c->req[k], (enum cancel_how)(c->req[k].cancel_want - 1));
		}
	int more;
	do { /* tokens held at the output limit go as soon as a flush makes room */
		more = pump_tokens(sv, c, now);
		conn_output(sv, c, now);
	} while (more && c->cn.st == CONN_OPEN && conn_io_unsent(&c->cn.io) < sv->o.out_limit_bytes);
	if (sv->draining)
		drain_tick(sv, c, now);
	conns_clock(sv, c, now);
	conn_output(sv, c, now);
	if (c->cn.st == CONN_DEAD) {
		conns_reap(sv, c);
		if (c->cn.st == CONN_FREE)
			return;
	}
	if (c->cn.st == CONN_FREE)
		return;
	conns_update_mask(sv, c);
	conns_arm(sv, c, now);
}

/* Each new connection's first bytes (a TLS ClientHello may be waiting),
 * then its service. */
static void do_accept(struct serve *sv, double now)
{
	struct sconn *c;
	while ((c = conns_accept(sv, now))) {
		conn_input(sv, c, now);
		conn_service(sv, c, now);
	}
}

static void start_drain(struct serve *sv, double now)
{
	sv->draining = 1;
	sv->drain_deadline = now + atomic_load(&sv->drain_ms) / 1e3;
	if (sv->lfd >= 0) {
		net_epoll_del(sv->ep, sv->lfd);
		close(sv->lfd);
		sv->lfd = -1;
	}
	for (int i = 0; i < sv->o.max_conns; i++) {
		struct sconn *c = &sv->conns[i];
		if (c->cn.st == CONN_OPEN)
			send_goaway(sv, c);
		else if (c->cn.st == CONN_HANDSHAKE || c->cn.st == CONN_HELLO)
			conns_kill(sv, c);
		conn_service(sv, c, now);
	}
}

static void drain_tick(struct serve *sv, struct sconn *c, double now)
{
	if (c->cn.st != CONN_OPEN)
		return;
	if (now >= sv->drain_deadline)
		for (int k = 0; k < sv->o.max_requests; k++) {
			struct nreq *q = &c->req[k];
			if (q->st != NR_LIVE)
				continue;
			if (q->has_term) {
				send_error(sv, c, q->rid, PROTO_ERR_CANCELLED, "drain deadline passed");
				req_free(c, q);
			} else {
				req_cancel(sv, c, q, HOW_SERVER);
			}
		}
	if (c->n_live == 0) /* CLOSING sends what is left, then closes */
		conn_set_state(&c->cn, CONN_CLOSING, now);
}

/* ------------------------------------------------------------ network: the loop (net_run) */

static void net_ready(void *ctx, uint64_t tag, uint32_t events, double now)
{
	struct serve *sv = ctx;
	if (tag == 0) {
		if (!sv->draining)
			do_accept(sv, now);
	} else if (tag >= 2) {
		struct sconn *c = &sv->conns[tag - 2];
		if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || (c->cn.st == CONN_HANDSHAKE && (events & EPOLLOUT)))
			conn_input(sv, c, now);
		conn_service(sv, c, now);
	} /* tag 1, net_wake: net_round takes what it announced */
}

static void net_due(void *ctx, int id, double now)
{
	struct serve *sv = ctx;
	struct sconn *c = &sv->conns[id];
	if (c->more_in) {
		c->more_in = 0;
		conn_input(sv, c, now);
	}
	conn_service(sv, c, now);
}

/* The engine's marks, the drain, and the end once drained. */
static int net_round(void *ctx, double now)
{
	struct serve *sv = ctx;
	ring_wake_drain(&sv->net_wake);
	if (sv->tw)
		take_text(sv, now);
	uint16_t ci;
	while (ring_spsc_pop(&sv->dirty, &ci)) {
		atomic_exchange_explicit(&sv->conns[ci].dirty, 0, memory_order_acq_rel);
		conn_service(sv, &sv->conns[ci], now);
	}
	if (atomic_load(&sv->drain_req) && !sv->draining)
		start_drain(sv, now);
	if (!sv->draining || sv->n_conns > 0)
		return 0;
	struct cmd m = {.type = CMD_STOP};
	while (serve_cmd_push(sv, &m) < 0)
		poll(NULL, 0, 1); /* the engine is taking the last commands */
	return 1;
}

static void *net_main(void *arg)
{
	struct serve *sv = arg;
	struct net_handlers h = {sv, net_ready, net_due, net_round};
	ts_alloc_serving(1);
	net_run(sv->ep, &sv->timers, &h);
	return NULL;
}

/* ------------------------------------------------------------ start / stop */

static void serve_free(struct serve *sv)
{
	if (sv->started_net)
		log_msg(LOG_INFO, "serve: allocations on the serving threads since ready: %llu",
			(unsigned long long)(ts_alloc_serving_count() - sv->allocs_ready));
	textw_stop(sv->tw);
	if (sv->conns)
		for (int i = 0; i < sv->o.max_conns; i++) {
			struct sconn *c = &sv->conns[i];
			if (c->cn.st != CONN_FREE && c->cn.st != CONN_DEAD)
				conn_io_free(&c->cn.io);
			ts_free(c->req);
			ring_spsc_free(&c->evr);
		}
	ts_free(sv->conns);
	ts_free(sv->iomem);
	ts_free(sv->reqmem);
	ts_free(sv->ids_mem);
	ts_free(sv->ereq);
	ts_free(sv->e_closing);
	ring_mpsc_free(&sv->cmds);
	ring_spsc_free(&sv->dirty);
	net_timers_free(&sv->timers);
	ring_wake_free(&sv->cmd_wake);
	ring_wake_free(&sv->net_wake);
	if (sv->lfd >= 0)
		close(sv->lfd);
	if (sv->ep >= 0)
		close(sv->ep);
	tls_config_free(&sv->tls);
	ts_free(sv);
}

int serve_start(struct serve **out, struct engine *en, const struct serve_opts *o, struct ts_err *e)
{
	const struct cfg *cf = &en->cfg;
	int rc;
	*out = NULL;
	const int psk = cf->server.tls_psk_file[0] != 0;
	if (!psk && (!cf->server.tls_cert[0] || !cf->server.tls_key[0] || !cf->server.tls_ca[0]))
		return ts_errf(e, E_INVAL,
			       "%s: [server] tls_cert, tls_key and tls_ca must all be set to serve (mutual TLS); "
			       "make development certificates with `tokenspeed certs DIR`",
			       cf->file[0] ? cf->file : "config");
	struct serve *sv = ts_alloc(sizeof(*sv));
	if (!sv)
		return ts_errf(e, E_NOMEM, "serve state");
	sv->lfd = sv->ep = -1;
	sv->en = en;
	sv->o = o ? *o : (struct serve_opts){0};
	struct serve_opts *so = &sv->o;
#define OPT(f, key) so->f = so->f ? so->f : cf->server.key
#define OPTU(f, key) so->f = so->f ? so->f : (uint32_t)cf->server.key
	OPT(max_conns, max_connections);
	OPT(max_conns_per_peer, max_conns_per_peer);
	OPT(max_requests, max_requests);
	OPTU(max_frame, max_frame_bytes);
	OPTU(initial_credit, initial_credit);
	OPTU(credit_timeout_ms, credit_timeout_ms);
	OPTU(out_limit_bytes, output_limit_bytes);
	OPTU(handshake_timeout_ms, handshake_timeout_ms);
	OPTU(hello_timeout_ms, hello_timeout_ms);
	OPTU(ping_interval_ms, ping_interval_ms);
	OPTU(idle_timeout_ms, idle_timeout_ms);
#undef OPT
	if (so->text_workers <= 0)
		so->text_workers = 2;
#undef OPTU
	if (so->max_frame < PROTO_MIN_FRAME)
		so->max_frame = PROTO_MIN_FRAME;
	if (so->max_conns < 1 || so->max_conns > 4096 || so->max_requests < 1 || so->max_requests > 4096 ||
	    so->max_conns_per_peer < 1 || !so->initial_credit || !so->credit_timeout_ms || !so->out_limit_bytes ||
	    !so->handshake_timeout_ms || !so->hello_timeout_ms || !so->ping_interval_ms ||
	    so->idle_timeout_ms <= so->ping_interval_ms) {
		ts_free(sv);
		return ts_errf(e, E_RANGE,
			       "serve: [server] limits out of range (max_connections and max_requests 1..4096, "
			       "idle_timeout_ms more than ping_interval_ms)");
	}
	sv->lim = (struct conn_limits){.handshake_s = so->handshake_timeout_ms / 1e3,
				       .hello_s = so->hello_timeout_ms / 1e3,
				       .ping_s = so->ping_interval_ms / 1e3,
				       .idle_s = so->idle_timeout_ms / 1e3};
	if (psk) { /* PSK mode: [server] tls_psk_identity + tls_psk_file */
		uint8_t key[TLS_PSK_MAX_BYTES];
		int n = tls_psk_load(cf->server.tls_psk_file, key, sizeof(key), e);
		rc = n < 0 ? n : tls_config_psk(&sv->tls, TLS_SERVER, cf->server.tls_psk_identity, key, (size_t)n, e);
		memset(key, 0, sizeof(key));
		if (rc < 0)
			goto out_free;
	} else if ((rc = tls_config_server(&sv->tls, cf->server.tls_cert, cf->server.tls_key, cf->server.tls_ca, e)) < 0) {
		goto out_free;
	}
	rc = -E_NOMEM;
	sv->conns = ts_alloc((size_t)sv->o.max_conns * sizeof(*sv->conns));
	sv->ereq = ts_alloc((size_t)sv->o.max_conns * (size_t)sv->o.max_requests * sizeof(*sv->ereq));
	sv->e_closing = ts_alloc((size_t)sv->o.max_conns);
	if (!sv->conns || !sv->ereq || !sv->e_closing) {
		ts_errf(e, -rc, "serve tables");
		goto out_free;
	}
	/* every connection slot's I/O buffers, resident from now on */
	size_t rb = CONN_RBUF_BYTES(so->max_frame), io_bytes;
	sv->ocap = (size_t)so->out_limit_bytes + 4 * (size_t)so->max_frame;
	io_bytes = (size_t)so->max_conns * (rb + sv->ocap);
	if (!(sv->iomem = ts_alloc_resident(io_bytes))) {
		rc = ts_errf(e, E_NOMEM, "serve: connection buffers: %zu bytes (max_connections = %d x (max_frame_bytes + "
				      "output_limit_bytes + 4 max_frame_bytes))", io_bytes, so->max_conns);
		goto out_free;
	}
	/* every request slot's buffers (a window of tokens and text not yet
	 * sent, the text state) and the FIFO of prompts to the engine */
	size_t n_slots = (size_t)so->max_conns * (size_t)so->max_requests;
	if (en->has_tok) {
		sv->tx_bytes = (stext_max_bytes(&en->tok) + 15) & ~(size_t)15;
		sv->text_cap = TS_MAX((size_t)SERVE_TEXT_BYTES, 2 * stext_release_bound(&en->tok));
	}
	size_t req_bytes = (SERVE_PEND_TOKENS * 2 * 4 + sv->text_cap + sv->tx_bytes + 15) & ~(size_t)15;
	sv->ids_cap = TS_MAX((uint64_t)8 * ((uint64_t)en->max_seq_len + SCHED_MAX_STOP + 1), (uint64_t)1 << 20);
	if (!(sv->reqmem = ts_alloc_resident(n_slots * req_bytes)) ||
	    !(sv->ids_mem = ts_alloc_resident(sv->ids_cap * sizeof(int32_t)))) {
		rc = ts_errf(e, E_NOMEM, "serve: request buffers: %zu bytes (max_connections x max_requests = %zu x %zu) "
				      "and %llu bytes of prompt FIFO", n_slots * req_bytes, n_slots, req_bytes,
			     (unsigned long long)sv->ids_cap * 4);
		goto out_free;
	}
	for (int i = 0; i < sv->o.max_conns; i++) {
		sv->conns[i].rbuf = sv->iomem + (size_t)i * (rb + sv->ocap);
		sv->conns[i].obuf = sv->conns[i].rbuf + rb;
		sv->conns[i].req = ts_alloc((size_t)sv->o.max_requests * sizeof(struct nreq));
		if (!sv->conns[i].req) {
			rc = ts_errf(e, E_NOMEM, "serve tables"); /* rc may hold the last ring_spsc_init: 0 */
			goto out_free;
		}
		for (int k = 0; k < so->max_requests; k++) {
			uint8_t *m = sv->reqmem + ((size_t)i * (size_t)so->max_requests + (size_t)k) * req_bytes;
			struct nreq *q = &sv->conns[i].req[k];
			q->b = (struct nreq_bufs){.pend = (int32_t *)m, .tend = (uint32_t *)(m + SERVE_PEND_TOKENS * 4),
						  .text = (char *)(m + SERVE_PEND_TOKENS * 8),
						  .tx = sv->tx_bytes ? m + SERVE_PEND_TOKENS * 8 + sv->text_cap : NULL};
			nreq_reset(q);
		}
		if ((rc = ring_spsc_init(&sv->conns[i].evr, EV_RING_CAP, sizeof(struct ev), e)) < 0)
			goto out_free;
	}
	uint32_t dcap = 2;
	while (dcap < (uint32_t)sv->o.max_conns)
		dcap *= 2;
	if ((rc = net_timers_init(&sv->timers, sv->o.max_conns, e)) < 0 ||
	    (rc = ring_spsc_init(&sv->dirty, dcap, sizeof(uint16_t), e)) < 0 ||
	    (rc = ring_mpsc_init(&sv->cmds, CMD_RING_CAP, sizeof(struct cmd), e)) < 0 ||
	    (rc = ring_wake_init(&sv->cmd_wake, e)) < 0 || (rc = ring_wake_init(&sv->net_wake, e)) < 0)
		goto out_free;
	if ((sv->lfd = net_listen(sv->o.listen ? sv->o.listen : cf->server.listen, &sv->port, e)) < 0) {
		rc = sv->lfd;
		sv->lfd = -1;
		goto out_free;
	}
	sv->ep = epoll_create1(EPOLL_CLOEXEC);
	if (sv->ep < 0 || net_epoll_add(sv->ep, sv->lfd, EPOLLIN, 0) < 0 ||
	    net_epoll_add(sv->ep, ring_wake_fd(&sv->net_wake), EPOLLIN, 1) < 0) {
		rc = ts_errf(e, E_IO, "epoll: %s", strerror(errno));
		goto out_free;
	}
	/* connections take turns at the text workers, each with SERVE_TEXT_JOBS jobs */
	if (en->has_tok && (rc = textw_start(&sv->tw, &en->tok, sv->o.text_workers, sv->o.max_conns, SERVE_TEXT_JOBS,
					     so->max_frame, &sv->net_wake, e)) < 0)
		goto out_free;
	size_t tw_bytes = sv->tw ? textw_bytes(sv->tw) : 0;
	size_t ring_bytes = (size_t)so->max_conns * EV_RING_CAP * sizeof(struct ev) + CMD_RING_CAP * sizeof(struct cmd);
	sv->mem_bytes += io_bytes + n_slots * req_bytes + sv->ids_cap * sizeof(int32_t) + tw_bytes + ring_bytes;
	log_msg(LOG_INFO,
		"stage=serve conn_io_bytes=%zu (%d x %zu) request_bytes=%zu (%zu x %zu) prompt_fifo_bytes=%llu "
		"text_bytes=%zu (%d workers, %d x %d jobs) ring_bytes=%zu (%d x %u events, %u commands) total_bytes=%zu",
		io_bytes, so->max_conns, rb + sv->ocap, n_slots * req_bytes, n_slots, req_bytes,
		(unsigned long long)sv->ids_cap * 4, tw_bytes, sv->tw ? so->text_workers : 0, so->max_conns,
		SERVE_TEXT_JOBS, ring_bytes, so->max_conns, EV_RING_CAP, CMD_RING_CAP, sv->mem_bytes);
	sv->t_ready = ts_now();
	sv->allocs_ready = ts_alloc_serving_count();
	serve_eng_snapshot(sv);
	if (pthread_create(&sv->t_eng, NULL, serve_eng_main, sv) != 0) {
		rc = ts_errf(e, E_IO, "engine thread");
		goto out_free;
	}
	sv->started_eng = 1;
	if (pthread_create(&sv->t_net, NULL, net_main, sv) != 0) {
		struct cmd m = {.type = CMD_STOP};
		ring_mpsc_push(&sv->cmds, &m);
		ring_wake_notify(&sv->cmd_wake);
		pthread_join(sv->t_eng, NULL);
		rc = ts_errf(e, E_IO, "network thread");
		goto out_free;
	}
	sv->started_net = 1;
	log_msg(LOG_INFO,
		"serve: listening port=%d max_connections=%d max_conns_per_peer=%d max_requests=%d "
		"handshake_timeout_ms=%u hello_timeout_ms=%u ping_interval_ms=%u idle_timeout_ms=%u text_workers=%d",
		sv->port, so->max_conns, so->max_conns_per_peer, so->max_requests, so->handshake_timeout_ms,
		so->hello_timeout_ms, so->ping_interval_ms, so->idle_timeout_ms, sv->tw ? so->text_workers : 0);
	*out = sv;
	return 0;
out_free:
	serve_free(sv);
	return rc;
}

int serve_port(const struct serve *sv)
{
	return sv->port;
}

uint64_t serve_stash_count(const struct serve *sv)
{
	return atomic_load_explicit(&sv->n_stashed, memory_order_relaxed);
}

void serve_drain(struct serve *sv, uint32_t drain_ms)
{
	engine_set_state(sv->en, ENGINE_DRAINING);
	atomic_store(&sv->drain_ms, drain_ms);
	atomic_store(&sv->drain_req, 1);
	ring_wake_notify(&sv->net_wake);
}

void serve_wait(struct serve *sv)
{
	if (sv->started_net)
		pthread_join(sv->t_net, NULL);
	if (sv->started_eng)
		pthread_join(sv->t_eng, NULL);
	serve_free(sv);
}
