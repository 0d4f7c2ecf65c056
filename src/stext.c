/* stext: prompts from text and chat, generated text with stop sequences (see
 * stext.h). */
#include "stext.h"

/* ---------------------------------------------------------------- prompts */

void stext_enc_free(struct stext_enc *w)
{
	tok_scratch_free(&w->sc);
	ts_free(w->buf);
	ts_free(w->msgs);
	ts_free(w->ids);
	memset(w, 0, sizeof(*w));
}

int stext_enc_reserve(struct stext_enc *w, const struct tok *t, size_t text_bytes, int extra_ids, struct ts_err *e)
{
	size_t n_ids = tok_encode_bound(t, text_bytes) + 1 + (size_t)extra_ids;
	if (n_ids > INT32_MAX)
		return ts_errf(e, E_RANGE, "text workers: %zu bytes of text", text_bytes);
	stext_enc_free(w);
	w->buf = ts_alloc_resident(text_bytes);
	w->msgs = ts_alloc_resident(PROTO_MAX_MESSAGES * sizeof(*w->msgs));
	w->ids = ts_alloc_resident(n_ids * sizeof(int32_t));
	if (!w->buf || !w->msgs || !w->ids || tok_scratch_reserve(&w->sc, t, text_bytes) < 0) {
		size_t want = text_bytes + n_ids * 4 + tok_scratch_bytes(t, text_bytes);
		stext_enc_free(w);
		return ts_errf(e, E_NOMEM, "text workers: %zu bytes each for prompts of %zu bytes", want, text_bytes);
	}
	w->buf_cap = text_bytes;
	w->ids_cap = (int)n_ids;
	w->max_text = text_bytes;
	return 0;
}

size_t stext_enc_bytes(const struct stext_enc *w)
{
	return w->sc.bytes + w->buf_cap + (size_t)w->ids_cap * sizeof(int32_t) +
	       (w->msgs ? PROTO_MAX_MESSAGES * sizeof(*w->msgs) : 0);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 256;
	while (c < need)
		c *= 2;
	void *q = ts_realloc(*p, c * elem);
	if (!q)
		return -E_NOMEM;
	*p = q;
	*cap = c;
	return 0;
}

static int encode(const struct tok *t, struct stext_enc *w, const char *s, size_t len, int bos, int *n,
		  struct ts_err *e)
{
	size_t cap = (size_t)w->ids_cap;
	if (w->max_text && len > w->max_text)
		return ts_errf(e, E_RANGE, "prompt: %zu bytes of text, more than the %zu a text worker holds (max_frame_bytes)",
			       len, w->max_text);
	if (grow((void **)&w->ids, &cap, tok_encode_bound(t, len) + 1, sizeof(int32_t)) < 0 || cap > INT32_MAX)
		return ts_errf(e, E_NOMEM, "prompt: out of memory for %zu bytes of text", len);
	w->ids_cap = (int)cap;
	int k = bos ? 1 : 0;
	if (bos)
		w->ids[0] = t->bos_id;
	int r = tok_encode(t, s, len, w->ids + k, w->ids_cap - k, &w->sc);
	if (r < 0)
		return ts_errf(e, -r, "prompt: out of memory while tokenizing");
	if (r > w->ids_cap - k) /* cannot happen: the room is tok_encode_bound's (t_tok holds it to that) */
		return ts_errf(e, E_INTERNAL, "prompt: %d ids from %zu bytes", r, len);
	*n = k + r;
	return 0;
}

int stext_prompt(const struct tok *t, struct stext_enc *w, const struct proto_submit *s, int *n, struct ts_err *e)
{
	if (s->flags & PROTO_SUBMIT_TEXT_PROMPT)
		return encode(t, w, s->prompt_text.s, s->prompt_text.len, t->add_bos, n, e);
	/* chat: messages -> the model's format -> ids (the format writes BOS itself) */
	if (!w->msgs && !(w->msgs = ts_alloc(PROTO_MAX_MESSAGES * sizeof(*w->msgs)))) /* once, the most a SUBMIT holds */
		return ts_errf(e, E_NOMEM, "messages: out of memory");
	uint32_t off = 0;
	for (uint32_t i = 0; i < s->chat.n; i++) {
		struct proto_chat_msg m;
		proto_chat_next(&s->chat, &off, &m);
		w->msgs[i] = (struct tok_msg){m.role, m.text.s, m.text.len};
	}
	size_t need = tok_chat_bound(t, w->msgs, (int)s->chat.n);
	if (!w->max_text && grow((void **)&w->buf, &w->buf_cap, need, 1) < 0)
		return ts_errf(e, E_NOMEM, "messages: out of memory");
	/* reserved buffers: the bound may pass them where the text does not */
	struct ts_err e2 = {0};
	long len = tok_chat_render_in(t, w->msgs, (int)s->chat.n, w->buf, w->buf_cap, w->max_text ? &w->sc : NULL, &e2);
	if (len < 0 && need > w->buf_cap && e2.code == E_INTERNAL)
		return ts_errf(e, E_RANGE, "messages: the conversation as rendered is more than the %zu bytes a text worker "
					   "holds (max_frame_bytes)", w->buf_cap);
	if (len < 0) {
		if (e)
			*e = e2;
		return (int)len;
	}
	return encode(t, w, w->buf, (size_t)len, 0, n, e);
}

/* ---------------------------------------------------------------- generated text */

struct stext {
	struct tok_stream ts;
	int want, stopped;
	uint32_t n_stops;
	uint32_t stop_off[PROTO_MAX_STOP_SEQS], stop_len[PROTO_MAX_STOP_SEQS];
	uint8_t first[32]; /* bit set of the stop sequences' first bytes */
	size_t n_hold, cap; /* hold and rel hold cap bytes each */
	char *hold;         /* text not yet released: it may begin a stop sequence */
	char *rel;          /* what the last call released */
	char *stops;        /* the stop sequences' bytes */
};

static size_t stext_bytes(const struct tok *t, const struct proto_str *stops, uint32_t n_stops, size_t *cap)
{
	size_t bytes = 0, longest = 0;
	for (uint32_t i = 0; i < n_stops; i++) {
		bytes += stops[i].len;
		longest = TS_MAX(longest, (size_t)stops[i].len);
	}
	*cap = longest + tok_stream_bound(t);
	return sizeof(struct stext) + bytes + 2 * *cap;
}

size_t stext_max_bytes(const struct tok *t)
{
	return sizeof(struct stext) + PROTO_MAX_STOP_SEQS * PROTO_MAX_STOP_SEQ_BYTES +
	       2 * stext_release_bound(t);
}

size_t stext_release_bound(const struct tok *t)
{
	return PROTO_MAX_STOP_SEQ_BYTES + tok_stream_bound(t);
}

struct stext *stext_init(void *mem, size_t mem_bytes, const struct tok *t, int want_text, const struct proto_str *stops,
			 uint32_t n_stops)
{
	size_t cap;
	if (n_stops > PROTO_MAX_STOP_SEQS || !mem || stext_bytes(t, stops, n_stops, &cap) > mem_bytes)
		return NULL;
	struct stext *x = mem;
	memset(x, 0, sizeof(*x));
	tok_stream_init(&x->ts, t);
	x->ts.started = 1;      /* the text continues the prompt: keep SentencePiece's leading space */
	x->ts.skip_special = 1; /* BOS, EOS, end of turn: ids only */
	x->want = want_text;
	x->cap = cap;
	x->stops = (char *)(x + 1);
	size_t bytes = 0;
	for (uint32_t i = 0; i < n_stops; i++)
		bytes += stops[i].len;
	x->hold = x->stops + bytes;
	x->rel = x->hold + cap;
	for (uint32_t i = 0, o = 0; i < n_stops; i++) {
		memcpy(x->stops + o, stops[i].s, stops[i].len);
		x->stop_off[i] = o;
		x->stop_len[i] = stops[i].len;
		x->first[(uint8_t)stops[i].s[0] >> 3] |= (uint8_t)(1u << ((uint8_t)stops[i].s[0] & 7));
		o += stops[i].len;
	}
	x->n_stops = n_stops;
	return x;
}

struct stext *stext_new(const struct tok *t, int want_text, const struct proto_str *stops, uint32_t n_stops)
{
	size_t cap;
	if (n_stops > PROTO_MAX_STOP_SEQS)
		return NULL;
	size_t bytes = stext_bytes(t, stops, n_stops, &cap);
	void *m = ts_alloc(bytes);
	struct stext *x = m ? stext_init(m, bytes, t, want_text, stops, n_stops) : NULL;
	if (!x)
		ts_free(m);
	return x;
}

void stext_free(struct stext *x)
{
	ts_free(x);
}

/* Moves hold[0..k) out to rel. */
static void release(struct stext *x, size_t k, const char **out, size_t *n)
{
	memcpy(x->rel, x->hold, k);
	memmove(x->hold, x->hold + k, x->n_hold - k);
	x->n_hold -= k;
	*out = x->rel;
	*n = x->want ? k : 0;
}

int stext_token(struct stext *x, int32_t id, const char **out, size_t *n)
{
	*out = x->rel;
	*n = 0;
	if (x->stopped)
		return 1;
	x->n_hold += tok_stream_push(&x->ts, id, x->hold + x->n_hold);
	/* no byte that starts a stop sequence: nothing to find or hold */
	size_t j = 0;
	while (j < x->n_hold && !(x->first[(uint8_t)x->hold[j] >> 3] >> ((uint8_t)x->hold[j] & 7) & 1))
		j++;
	if (j == x->n_hold) {
		release(x, x->n_hold, out, n);
		return 0;
	}
	/* the earliest complete stop sequence ends the text there */
	size_t first = SIZE_MAX;
	for (uint32_t i = 0; i < x->n_stops; i++) {
		/* only matches that start before the earliest so far */
		size_t lim = first == SIZE_MAX ? x->n_hold : TS_MIN(x->n_hold, first + x->stop_len[i] - 1);
		const char *hit = memmem(x->hold, lim, x->stops + x->stop_off[i], x->stop_len[i]);
		if (hit)
			first = (size_t)(hit - x->hold);
	}
	if (first != SIZE_MAX) {
		release(x, first, out, n);
		x->n_hold = 0;
		x->stopped = 1;
		return 1;
	}
	/* keep the longest tail that a stop sequence starts with */
	size_t keep = 0;
	for (uint32_t i = 0; i < x->n_stops; i++) {
		const char *s = x->stops + x->stop_off[i];
		for (size_t l = TS_MIN(x->stop_len[i] - 1, x->n_hold); l > keep; l--)
			if (x->hold[x->n_hold - l] == s[0] && memcmp(x->hold + x->n_hold - l, s, l) == 0) {
				keep = l;
				break;
			}
	}
	release(x, x->n_hold - keep, out, n);
	return 0;
}

void stext_finish(struct stext *x, const char **out, size_t *n)
{
	*out = x->rel;
	*n = 0;
	if (x->stopped)
		return;
	x->n_hold += tok_stream_flush(&x->ts, x->hold + x->n_hold);
	release(x, x->n_hold, out, n);
}
