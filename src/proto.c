/* proto: frames of the client protocol (src/PROTOCOL.md is the contract).
 *
 * Reading order: tables, byte cursors (one for reading a payload, one for
 * writing a frame), UTF-8, the header and the reader, limits, then one
 * decoder and one encoder per message in the spec's order.
 *
 * Every decoder walks its payload with a read cursor that refuses to step
 * past the end; counts are multiplied in 64 bits before they are compared
 * with the bytes left, so no count can wrap a bound. A decoder that fails
 * leaves *out in an unspecified state.
 */
#include "proto.h"

#include <math.h> /* INFINITY only */
#include <stdio.h>

/* ---------------------------------------------------------------- tables */

struct type_row {
	const char *name;
	uint8_t to_server, to_client;
	char scope; /* 'R' request, 'C' connection, 'E' either */
};

static const struct type_row type_rows[PROTO_TYPE_END] = {
#define PROTO_TYPE_ROW(n, v, s, c, k) [v] = {#n, s, c, k},
    PROTO_TYPES(PROTO_TYPE_ROW)
#undef PROTO_TYPE_ROW
};

const char *proto_type_name(uint32_t type)
{
	return type < PROTO_TYPE_END && type_rows[type].name ? type_rows[type].name : "?";
}

static const struct proto_err_info err_rows[] = {
#define PROTO_ERR_ROW(n, v, c, r) {v, #n, c, r},
    PROTO_ERRS(PROTO_ERR_ROW)
#undef PROTO_ERR_ROW
};

const struct proto_err_info *proto_err_info(uint32_t code)
{
	for (size_t i = 0; i < TS_ARRAY_LEN(err_rows); i++)
		if (err_rows[i].code == code)
			return &err_rows[i];
	return NULL;
}

static const char *const stat_names[PROTO_STAT_END] = {
#define PROTO_STAT_ROW(n, v) [v] = #n,
    PROTO_STATS_KEYS(PROTO_STAT_ROW)
#undef PROTO_STAT_ROW
};

const char *proto_req_state_name(int state)
{
	static const char *const names[PROTO_N_REQ_STATES] = {"QUEUED", "PREFILL", "DECODE", "PREEMPTED",
							       "PARKED", "DONE",    "CANCELLED", "FAILED"};
	return state >= 0 && state < PROTO_N_REQ_STATES ? names[state] : NULL;
}

const char *proto_stat_name(uint32_t key)
{
	static char trans[PROTO_N_REQ_STATES * PROTO_N_REQ_STATES][24];
	if (key >= PROTO_STAT_TRANS && key < PROTO_STAT_TRANS + PROTO_N_REQ_STATES * PROTO_N_REQ_STATES) {
		uint32_t i = key - PROTO_STAT_TRANS;
		if (!trans[i][0]) /* filled once; the same bytes every time, so a race writes the same */
			snprintf(trans[i], sizeof(trans[i]), "%s->%s", proto_req_state_name((int)i / PROTO_N_REQ_STATES),
				 proto_req_state_name((int)i % PROTO_N_REQ_STATES));
		return trans[i];
	}
	return key < PROTO_STAT_END ? stat_names[key] : NULL;
}

const char *proto_reader_state_name(enum proto_reader_state s)
{
	static const char *const names[] = {
#define PROTO_READER_NAME(s) #s,
	    PROTO_READER_STATES(PROTO_READER_NAME)
#undef PROTO_READER_NAME
	};
	return (unsigned)s < TS_ARRAY_LEN(names) ? names[s] : "?";
}

/* ---------------------------------------------------------------- read cursor */

struct rd {
	const uint8_t *p;
	uint32_t len, off;
	const char *what; /* message name, prefixed to every error */
	struct ts_err *e;
};

static uint32_t rd_left(const struct rd *r)
{
	return r->len - r->off;
}

static int rd_short(struct rd *r, const char *field, uint32_t need)
{
	return ts_errf(r->e, E_FORMAT, "%s %s: needs %u bytes at offset %u, the %u-byte payload has %u left", r->what,
	               field, need, r->off, r->len, rd_left(r));
}

static int rd_u32(struct rd *r, uint32_t *v, const char *field)
{
	if (rd_left(r) < 4)
		return rd_short(r, field, 4);
	*v = proto_get_u32(r->p + r->off);
	r->off += 4;
	return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *field)
{
	if (rd_left(r) < 8)
		return rd_short(r, field, 8);
	*v = proto_get_u64(r->p + r->off);
	r->off += 8;
	return 0;
}

static int rd_f32(struct rd *r, float *v, const char *field)
{
	if (rd_left(r) < 4)
		return rd_short(r, field, 4);
	*v = proto_get_f32(r->p + r->off);
	r->off += 4;
	return 0;
}

/* count records of rec_bytes each; the count was read and range-checked by
 * the caller. */
static int rd_span(struct rd *r, uint32_t count, uint64_t rec_bytes, const uint8_t **out, const char *field)
{
	uint64_t bytes = (uint64_t)count * rec_bytes;
	if (bytes > rd_left(r))
		return ts_errf(r->e, E_FORMAT, "%s %s: %u entries need %llu bytes, the payload has %u left", r->what,
		               field, count, (unsigned long long)bytes, rd_left(r));
	*out = count ? r->p + r->off : NULL;
	r->off += (uint32_t)bytes;
	return 0;
}

static int rd_end(struct rd *r)
{
	if (r->off != r->len)
		return ts_errf(r->e, E_FORMAT, "%s: %u bytes after the last field (payload %u bytes)", r->what,
		               rd_left(r), r->len);
	return 0;
}

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 sequence (RFC 3629: no overlongs, surrogates or
 * code points above U+10FFFF) starting at s[0], or 0. */
static uint32_t utf8_seq(const uint8_t *s, uint32_t left)
{
	uint32_t c = s[0];
	uint32_t k = c < 0x80                 ? 1
	             : c >= 0xc2 && c <= 0xdf ? 2
	             : c >= 0xe0 && c <= 0xef ? 3
	             : c >= 0xf0 && c <= 0xf4 ? 4
	                                      : 0;
	if (k == 0 || k > left)
		return 0;
	uint32_t cp = k == 1 ? c : c & (0x7fu >> k);
	for (uint32_t j = 1; j < k; j++) {
		if ((s[j] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[j] & 0x3fu);
	}
	static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < min_cp[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

/* Index of the first byte that is not valid UTF-8, or n. */
static uint32_t utf8_bad_at(const uint8_t *s, uint32_t n)
{
	uint32_t i = 0, k;
	while (i < n && (k = utf8_seq(s + i, n - i)) != 0)
		i += k;
	return i;
}

/* A string: u32 length (at most max) then that many bytes of UTF-8. */
static int rd_str(struct rd *r, struct proto_str *s, uint32_t max, const char *field)
{
	uint32_t n;
	int rc;
	if ((rc = rd_u32(r, &n, field)) < 0)
		return rc;
	if (n > max)
		return ts_errf(r->e, E_RANGE, "%s %s: %u bytes, at most %u accepted", r->what, field, n, max);
	if (n > rd_left(r))
		return ts_errf(r->e, E_FORMAT, "%s %s: %u bytes, the payload has %u left", r->what, field, n,
		               rd_left(r));
	const uint8_t *b = r->p + r->off;
	uint32_t bad = utf8_bad_at(b, n);
	if (bad < n)
		return ts_errf(r->e, E_FORMAT, "%s %s: not valid UTF-8 at byte %u (0x%02x)", r->what, field, bad,
		               b[bad]);
	s->s = n ? (const char *)b : "";
	s->len = n;
	r->off += n;
	return 0;
}

/* Puts the message's name in front of a message written by another module. */
static void err_prefix(struct ts_err *e, const char *prefix)
{
	if (!e)
		return;
	size_t p = strlen(prefix), m = strnlen(e->msg, sizeof(e->msg) - 1);
	if (p + m >= sizeof(e->msg))
		m = sizeof(e->msg) - 1 - p;
	memmove(e->msg + p, e->msg, m);
	memcpy(e->msg, prefix, p);
	e->msg[p + m] = '\0';
}

static int rd_flags(struct rd *r, uint32_t flags, uint32_t known)
{
	if (flags & ~known)
		return ts_errf(r->e, E_INVAL, "%s flags 0x%x: unknown bits 0x%x (this type knows 0x%x)", r->what, flags,
		               flags & ~known, known);
	return 0;
}

/* ---------------------------------------------------------------- write cursor */

struct wr {
	uint8_t *p;
	size_t cap, n;
	int full;
};

static void wr_begin(struct wr *w, uint8_t *buf, size_t cap)
{
	w->p = buf;
	w->cap = TS_MIN(cap, (size_t)PROTO_MAX_FRAME);
	w->n = PROTO_HDR_BYTES;
	w->full = buf == NULL || cap < PROTO_HDR_BYTES;
}

static void wr_bytes(struct wr *w, const void *b, size_t n)
{
	if (w->full || w->cap - w->n < n) {
		w->full = 1;
		return;
	}
	if (n)
		memcpy(w->p + w->n, b, n);
	w->n += n;
}

static void wr_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4];
	proto_put_u32(b, v);
	wr_bytes(w, b, 4);
}

static void wr_u64(struct wr *w, uint64_t v)
{
	wr_u32(w, (uint32_t)v);
	wr_u32(w, (uint32_t)(v >> 32));
}

static void wr_f32(struct wr *w, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	wr_u32(w, u);
}

static void wr_str(struct wr *w, struct proto_str s)
{
	wr_u32(w, s.len);
	wr_bytes(w, s.s, s.len);
}

/* Writes the header; returns the frame's bytes or -E_NOSPACE. */
static int wr_end(struct wr *w, enum proto_type type, uint32_t flags, uint32_t request_id)
{
	if (w->full)
		return -E_NOSPACE;
	struct proto_hdr h = {
	    .length = (uint32_t)(w->n - PROTO_HDR_BYTES),
	    .magic = PROTO_MAGIC,
	    .version = PROTO_VERSION,
	    .type = (uint8_t)type,
	    .flags = flags,
	    .request_id = request_id,
	};
	if (type == PROTO_HELLO || type == PROTO_WELCOME)
		h.version = PROTO_VERSION_MIN; /* frozen: PROTOCOL.md, "Handshake" */
	proto_hdr_encode(w->p, &h);
	return (int)w->n;
}

/* ---------------------------------------------------------------- header */

void proto_hdr_decode(const uint8_t p[PROTO_HDR_BYTES], struct proto_hdr *h)
{
	h->length = proto_get_u32(p);
	h->magic = (uint16_t)(p[4] | p[5] << 8);
	h->version = p[6];
	h->type = p[7];
	h->flags = proto_get_u32(p + 8);
	h->request_id = proto_get_u32(p + 12);
}

void proto_hdr_encode(uint8_t p[PROTO_HDR_BYTES], const struct proto_hdr *h)
{
	proto_put_u32(p, h->length);
	p[4] = (uint8_t)h->magic;
	p[5] = (uint8_t)(h->magic >> 8);
	p[6] = h->version;
	p[7] = h->type;
	proto_put_u32(p + 8, h->flags);
	proto_put_u32(p + 12, h->request_id);
}

int proto_hdr_check(const struct proto_hdr *h, enum proto_side to, uint32_t *code, struct ts_err *e)
{
	const char *side = to == PROTO_TO_SERVER ? "server" : "client";
	const struct type_row *t = h->type < PROTO_TYPE_END ? &type_rows[h->type] : NULL;
	if (!t || !t->name || !(to == PROTO_TO_SERVER ? t->to_server : t->to_client)) {
		*code = PROTO_ERR_UNKNOWN_TYPE;
		return ts_errf(e, E_UNSUPPORTED, "frame type %u (%s) is not one a %s accepts; frame skipped", h->type,
		               proto_type_name(h->type), side);
	}
	if (t->scope == 'R' && h->request_id == 0) {
		*code = PROTO_ERR_PROTOCOL;
		return ts_errf(e, E_FORMAT, "%s with request id 0: a request's frame needs a non-zero id", t->name);
	}
	if (t->scope == 'C' && h->request_id != 0) {
		*code = PROTO_ERR_PROTOCOL;
		return ts_errf(e, E_FORMAT, "%s with request id %u: a connection's frame carries id 0", t->name,
		               h->request_id);
	}
	*code = PROTO_ERR_NONE;
	return 0;
}

/* ---------------------------------------------------------------- reader */

int proto_reader_init(struct proto_reader *r, uint8_t *buf, uint32_t cap)
{
	memset(r, 0, sizeof(*r));
	r->state = PROTO_READER_HEADER;
	r->buf = buf;
	r->cap = cap;
	r->max_frame = PROTO_MIN_FRAME;
	r->version = PROTO_VERSION_MIN;
	if (!buf || cap < PROTO_MIN_FRAME - PROTO_HDR_BYTES)
		return -E_INVAL;
	return 0;
}

int proto_reader_limit(struct proto_reader *r, uint32_t max_frame, uint8_t version)
{
	if (max_frame < PROTO_MIN_FRAME || max_frame > PROTO_MAX_FRAME || max_frame - PROTO_HDR_BYTES > r->cap ||
	    version == 0 || r->state != PROTO_READER_HEADER || r->got != 0)
		return -E_INVAL;
	r->max_frame = max_frame;
	r->version = version;
	return 0;
}

static int reader_fail(struct proto_reader *r, uint32_t err, int code, struct ts_err *e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int reader_fail(struct proto_reader *r, uint32_t err, int code, struct ts_err *e, const char *fmt, ...)
{
	r->state = PROTO_READER_FAILED;
	r->err = err;
	r->err_rc = -code;
	va_list ap;
	va_start(ap, fmt);
	ts_verrf(e, code, fmt, ap);
	va_end(ap);
	return -code;
}

/* A complete frame: header in r->h, payload at p. */
static int reader_emit(struct proto_reader *r, const uint8_t *p, struct proto_frame *f)
{
	f->h = r->h;
	f->payload = r->h.length ? p : NULL;
	r->state = PROTO_READER_HEADER;
	r->got = 0;
	r->n_frames++;
	r->n_bytes += PROTO_HDR_BYTES + (uint64_t)r->h.length;
	return PROTO_FRAME;
}

int proto_reader_feed(struct proto_reader *r, const uint8_t *in, size_t n, size_t *used, struct proto_frame *f,
                      struct ts_err *e)
{
	size_t i = 0, k;
	*used = 0;
	for (;;) {
		switch (r->state) {
		case PROTO_READER_HEADER:
			k = TS_MIN(n - i, (size_t)(PROTO_HDR_BYTES - r->got));
			if (k)
				memcpy(r->hb + r->got, in + i, k);
			r->got += (uint32_t)k;
			i += k;
			*used = i;
			if (r->got < PROTO_HDR_BYTES)
				return PROTO_AGAIN;
			proto_hdr_decode(r->hb, &r->h);
			r->got = 0;
			if (r->h.magic != PROTO_MAGIC)
				return reader_fail(r, PROTO_ERR_BAD_FRAME, E_FORMAT, e,
				                   "frame header: magic 0x%04x, expected 0x%04x (\"TS\"): not a "
				                   "TokenSpeed stream, or framing lost",
				                   r->h.magic, PROTO_MAGIC);
			if (r->h.version != r->version)
				return reader_fail(r, PROTO_ERR_UNSUPPORTED_VERSION, E_UNSUPPORTED, e,
				                   "frame header: version %u, this connection speaks version %u",
				                   r->h.version, r->version);
			if ((uint64_t)r->h.length + PROTO_HDR_BYTES > r->max_frame)
				return reader_fail(r, PROTO_ERR_FRAME_TOO_LARGE, E_RANGE, e,
				                   "frame header: %s frame of %llu bytes exceeds the max frame of %u",
				                   proto_type_name(r->h.type),
				                   (unsigned long long)r->h.length + PROTO_HDR_BYTES, r->max_frame);
			if (r->h.length == 0)
				return reader_emit(r, NULL, f);
			if (n - i >= r->h.length) { /* whole payload here: no copy */
				*used = i + r->h.length;
				return reader_emit(r, in + i, f);
			}
			r->state = PROTO_READER_PAYLOAD;
			break;
		case PROTO_READER_PAYLOAD:
			k = TS_MIN(n - i, (size_t)(r->h.length - r->got));
			if (k)
				memcpy(r->buf + r->got, in + i, k);
			r->got += (uint32_t)k;
			i += k;
			*used = i;
			if (r->got < r->h.length)
				return PROTO_AGAIN;
			return reader_emit(r, r->buf, f);
		case PROTO_READER_FAILED:
			if (e)
				ts_errf(e, -r->err_rc, "frame reader: the stream failed earlier (%s); close it",
				        proto_err_info(r->err) ? proto_err_info(r->err)->name : "?");
			return r->err_rc;
		case PROTO_READER_STATE_N:
			return reader_fail(r, PROTO_ERR_BAD_FRAME, E_INTERNAL, e, "frame reader: bad state");
		}
	}
}

/* ---------------------------------------------------------------- limits */

int proto_limits_check(const struct proto_limits *l, struct ts_err *e)
{
	if (l->max_frame < PROTO_MIN_FRAME || l->max_frame > PROTO_MAX_FRAME)
		return ts_errf(e, E_RANGE, "max_frame = %u: out of range (accepted %u..%u)", l->max_frame,
		               PROTO_MIN_FRAME, PROTO_MAX_FRAME);
	if (l->vocab < 1 || l->vocab > INT32_MAX)
		return ts_errf(e, E_RANGE, "vocab = %u: out of range (accepted 1..%d)", l->vocab, INT32_MAX);
	if (l->max_seq_len < 2 || l->max_seq_len > INT32_MAX)
		return ts_errf(e, E_RANGE, "max_seq_len = %u: out of range (accepted 2..%d)", l->max_seq_len,
		               INT32_MAX);
	if (l->max_tokens < 1 || l->max_tokens >= l->max_seq_len)
		return ts_errf(e, E_RANGE, "max_tokens = %u: out of range (accepted 1..%u, below max_seq_len)",
		               l->max_tokens, l->max_seq_len - 1);
	if (l->max_stop_ids > PROTO_MAX_STOP_IDS)
		return ts_errf(e, E_RANGE, "max_stop_ids = %u: at most %u", l->max_stop_ids, PROTO_MAX_STOP_IDS);
	if (l->max_stop_seqs > PROTO_MAX_STOP_SEQS)
		return ts_errf(e, E_RANGE, "max_stop_seqs = %u: at most %u", l->max_stop_seqs, PROTO_MAX_STOP_SEQS);
	if (l->max_stop_seq_bytes > PROTO_MAX_STOP_SEQ_BYTES)
		return ts_errf(e, E_RANGE, "max_stop_seq_bytes = %u: at most %u", l->max_stop_seq_bytes,
		               PROTO_MAX_STOP_SEQ_BYTES);
	if (l->max_text_bytes > l->max_frame)
		return ts_errf(e, E_RANGE, "max_text_bytes = %u: at most max_frame (%u)", l->max_text_bytes,
		               l->max_frame);
	if (l->max_logprobs > PROTO_MAX_LOGPROBS)
		return ts_errf(e, E_RANGE, "max_logprobs = %u: at most %u", l->max_logprobs, PROTO_MAX_LOGPROBS);
	if (l->has_tokenizer != 0 && l->has_tokenizer != 1)
		return ts_errf(e, E_RANGE, "has_tokenizer = %d: 0 or 1", l->has_tokenizer);
	if (!l->has_tokenizer && (l->max_stop_seqs || l->max_text_bytes))
		return ts_errf(e, E_RANGE,
		               "max_stop_seqs = %u, max_text_bytes = %u: both must be 0 without a tokenizer",
		               l->max_stop_seqs, l->max_text_bytes);
	return 0;
}

void proto_u32s_copy(const struct proto_u32s *a, int32_t *dst)
{
	for (uint32_t i = 0; i < a->n; i++)
		dst[i] = (int32_t)proto_u32s_at(a, i);
}

/* Each id of the span below vocab. */
static int rd_ids_check(struct rd *r, const struct proto_u32s *a, uint32_t vocab, const char *field)
{
	for (uint32_t i = 0; i < a->n; i++) {
		uint32_t id = proto_u32s_at(a, i);
		if (id >= vocab)
			return ts_errf(r->e, E_RANGE, "%s %s[%u] = %u: outside the vocabulary (0..%u)", r->what, field,
			               i, id, vocab - 1);
	}
	return 0;
}

/* ---------------------------------------------------------------- HELLO, WELCOME */

int proto_decode_hello(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_hello *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "HELLO", e};
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = rd_flags(&r, flags, 0)) < 0 || (rc = rd_u32(&r, &out->n_versions, "n_versions")) < 0)
		return rc;
	if (out->n_versions < 1 || out->n_versions > PROTO_MAX_VERSIONS)
		return ts_errf(e, E_RANGE, "HELLO n_versions = %u: out of range (accepted 1..%u)", out->n_versions,
		               PROTO_MAX_VERSIONS);
	for (uint32_t i = 0; i < out->n_versions; i++) {
		if ((rc = rd_u32(&r, &out->versions[i], "versions")) < 0)
			return rc;
		if (out->versions[i] < 1 || out->versions[i] > 255)
			return ts_errf(e, E_RANGE, "HELLO versions[%u] = %u: out of range (accepted 1..255)", i,
			               out->versions[i]);
	}
	if ((rc = rd_u32(&r, &out->max_frame, "max_frame")) < 0)
		return rc;
	if (out->max_frame < PROTO_MIN_FRAME || out->max_frame > PROTO_MAX_FRAME)
		return ts_errf(e, E_RANGE, "HELLO max_frame = %u: out of range (accepted %u..%u)", out->max_frame,
		               PROTO_MIN_FRAME, PROTO_MAX_FRAME);
	if ((rc = rd_str(&r, &out->client, PROTO_MAX_NAME, "client")) < 0)
		return rc;
	return rd_end(&r);
}

int proto_encode_hello(uint8_t *buf, size_t cap, const struct proto_hello *h)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	uint32_t n = TS_MIN(h->n_versions, PROTO_MAX_VERSIONS);
	wr_u32(&w, n);
	for (uint32_t i = 0; i < n; i++)
		wr_u32(&w, h->versions[i]);
	wr_u32(&w, h->max_frame);
	wr_str(&w, h->client);
	return wr_end(&w, PROTO_HELLO, 0, 0);
}

int proto_negotiate(const struct proto_hello *h, uint32_t server_max_frame, uint32_t *version, uint32_t *max_frame,
                    struct ts_err *e)
{
	uint32_t best = 0;
	for (uint32_t i = 0; i < h->n_versions && i < PROTO_MAX_VERSIONS; i++)
		if (h->versions[i] >= PROTO_VERSION_MIN && h->versions[i] <= PROTO_VERSION && h->versions[i] > best)
			best = h->versions[i];
	if (!best)
		return ts_errf(e, E_UNSUPPORTED,
		               "HELLO: none of the client's %u versions is one this server speaks (%u..%u)",
		               h->n_versions, PROTO_VERSION_MIN, PROTO_VERSION);
	*version = best;
	*max_frame = TS_MIN(h->max_frame, server_max_frame);
	return 0;
}

int proto_decode_welcome(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_welcome *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "WELCOME", e};
	struct proto_limits *l = &out->lim;
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = rd_flags(&r, flags, PROTO_WELCOME_FLAGS)) < 0)
		return rc;
	l->has_tokenizer = (flags & PROTO_WELCOME_TOKENIZER) != 0;
	struct {
		uint32_t *v;
		const char *name;
	} f[] = {
	    {&out->version, "version"},
	    {&l->max_frame, "max_frame"},
	    {&out->max_requests, "max_requests"},
	    {&l->max_tokens, "max_tokens"},
	    {&l->vocab, "vocab"},
	    {&l->max_seq_len, "max_seq_len"},
	    {&l->max_stop_ids, "max_stop_ids"},
	    {&l->max_stop_seqs, "max_stop_seqs"},
	    {&l->max_stop_seq_bytes, "max_stop_seq_bytes"},
	    {&l->max_text_bytes, "max_text_bytes"},
	    {&l->max_logprobs, "max_logprobs"},
	    {&out->initial_credit, "initial_credit"},
	    {&out->credit_timeout_ms, "credit_timeout_ms"},
	    {&out->ping_interval_ms, "ping_interval_ms"},
	    {&out->idle_timeout_ms, "idle_timeout_ms"},
	};
	for (size_t i = 0; i < TS_ARRAY_LEN(f); i++)
		if ((rc = rd_u32(&r, f[i].v, f[i].name)) < 0)
			return rc;
	if (out->version < PROTO_VERSION_MIN || out->version > 255)
		return ts_errf(e, E_RANGE, "WELCOME version = %u: out of range", out->version);
	if (out->max_requests < 1 || out->initial_credit < 1 || out->credit_timeout_ms < 1)
		return ts_errf(
		    e, E_RANGE,
		    "WELCOME max_requests = %u, initial_credit = %u, credit_timeout_ms = %u: each must be >= 1",
		    out->max_requests, out->initial_credit, out->credit_timeout_ms);
	if (out->ping_interval_ms < 1 || out->idle_timeout_ms <= out->ping_interval_ms)
		return ts_errf(e, E_RANGE,
		               "WELCOME ping_interval_ms = %u, idle_timeout_ms = %u: want 1 <= ping_interval_ms < "
		               "idle_timeout_ms",
		               out->ping_interval_ms, out->idle_timeout_ms);
	if ((rc = proto_limits_check(l, e)) < 0) {
		err_prefix(e, "WELCOME ");
		return rc;
	}
	if ((rc = rd_str(&r, &out->model, PROTO_MAX_NAME, "model")) < 0 ||
	    (rc = rd_str(&r, &out->arch, PROTO_MAX_NAME, "arch")) < 0 ||
	    (rc = rd_str(&r, &out->checkpoint, PROTO_MAX_NAME, "checkpoint")) < 0 ||
	    (rc = rd_str(&r, &out->server, PROTO_MAX_NAME, "server")) < 0)
		return rc;
	return rd_end(&r);
}

int proto_encode_welcome(uint8_t *buf, size_t cap, const struct proto_welcome *w)
{
	struct wr o;
	const struct proto_limits *l = &w->lim;
	wr_begin(&o, buf, cap);
	const uint32_t v[] = {
	    w->version,      l->max_frame,      w->max_requests,     l->max_tokens,         l->vocab,
	    l->max_seq_len,  l->max_stop_ids,   l->max_stop_seqs,    l->max_stop_seq_bytes, l->max_text_bytes,
	    l->max_logprobs, w->initial_credit, w->credit_timeout_ms, w->ping_interval_ms, w->idle_timeout_ms};
	for (size_t i = 0; i < TS_ARRAY_LEN(v); i++)
		wr_u32(&o, v[i]);
	wr_str(&o, w->model);
	wr_str(&o, w->arch);
	wr_str(&o, w->checkpoint);
	wr_str(&o, w->server);
	return wr_end(&o, PROTO_WELCOME, l->has_tokenizer ? PROTO_WELCOME_TOKENIZER : 0, 0);
}

/* ---------------------------------------------------------------- SUBMIT */

int proto_decode_submit(const uint8_t *p, uint32_t len, uint32_t flags, const struct proto_limits *lim,
                        struct proto_submit *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "SUBMIT", e};
	struct samp_params *s = &out->samp;
	uint32_t top_k = 0, n = 0;
	int rc;
	memset(out, 0, sizeof(*out));
	out->flags = flags;
	if ((rc = rd_flags(&r, flags, PROTO_SUBMIT_FLAGS)) < 0)
		return rc;
	if ((flags & PROTO_SUBMIT_KEEP_SESSION) && !(flags & PROTO_SUBMIT_HAS_SESSION))
		return ts_errf(e, E_INVAL, "SUBMIT flags: KEEP_SESSION needs HAS_SESSION and a session_id");
	if ((flags & PROTO_SUBMIT_TEXT_PROMPT) && (flags & PROTO_SUBMIT_CHAT))
		return ts_errf(e, E_INVAL, "SUBMIT flags: TEXT_PROMPT and CHAT exclude each other");
	if ((flags & (PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_WANT_TEXT | PROTO_SUBMIT_CHAT)) && !lim->has_tokenizer)
		return ts_errf(e, E_UNSUPPORTED,
		               "SUBMIT flags: %s needs a tokenizer, which this server does not "
		               "have: send token ids",
		               flags & PROTO_SUBMIT_TEXT_PROMPT ? "TEXT_PROMPT"
		               : flags & PROTO_SUBMIT_CHAT      ? "CHAT"
		                                                : "WANT_TEXT");

	/* fixed part */
	if ((rc = rd_u32(&r, &out->max_tokens, "max_tokens")) < 0 ||
	    (rc = rd_u32(&r, &out->priority, "priority")) < 0 ||
	    (rc = rd_f32(&r, &s->temperature, "temperature")) < 0 || (rc = rd_u32(&r, &top_k, "top_k")) < 0 ||
	    (rc = rd_f32(&r, &s->top_p, "top_p")) < 0 || (rc = rd_f32(&r, &s->min_p, "min_p")) < 0 ||
	    (rc = rd_f32(&r, &s->repetition_penalty, "repetition_penalty")) < 0 ||
	    (rc = rd_f32(&r, &s->presence_penalty, "presence_penalty")) < 0 ||
	    (rc = rd_f32(&r, &s->frequency_penalty, "frequency_penalty")) < 0 ||
	    (rc = rd_u64(&r, &s->seed, "seed")) < 0 || (rc = rd_u64(&r, &out->session_id, "session_id")) < 0 ||
	    (rc = rd_u32(&r, &out->top_logprobs, "top_logprobs")) < 0)
		return rc;
	if (out->priority > PROTO_PRIO_MAX)
		return ts_errf(
		    e, E_RANGE,
		    "SUBMIT priority = %u: out of range (accepted 0 interactive, 1 normal, 2 batch, 3 background)",
		    out->priority);
	if (top_k > lim->vocab)
		return ts_errf(e, E_RANGE,
		               "SUBMIT top_k = %u: out of range (accepted 0 = off, or 1..%u, the vocab size)", top_k,
		               lim->vocab);
	s->top_k = (int32_t)top_k;
	if ((flags & PROTO_SUBMIT_HAS_SESSION) ? out->session_id == 0 : out->session_id != 0)
		return ts_errf(e, E_INVAL, "SUBMIT session_id = %llu: must be non-zero with HAS_SESSION and 0 without",
		               (unsigned long long)out->session_id);
	if ((flags & PROTO_SUBMIT_WANT_LOGPROBS) && lim->max_logprobs == 0)
		return ts_errf(e, E_UNSUPPORTED, "SUBMIT flags: WANT_LOGPROBS: this server computes no logprobs "
		                                 "(WELCOME max_logprobs = 0)");
	uint32_t max_lp = (flags & PROTO_SUBMIT_WANT_LOGPROBS) ? lim->max_logprobs : 0;
	if (out->top_logprobs > max_lp)
		return ts_errf(e, E_RANGE, "SUBMIT top_logprobs = %u: out of range (accepted 0..%u%s)",
		               out->top_logprobs, max_lp,
		               (flags & PROTO_SUBMIT_WANT_LOGPROBS) ? "" : ", 0 without WANT_LOGPROBS");

	/* prompt ids */
	int text = (flags & (PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_CHAT)) != 0;
	if ((rc = rd_u32(&r, &n, "n_prompt")) < 0)
		return rc;
	if (text ? n != 0 : (n < 1 || n >= lim->max_seq_len))
		return text ? ts_errf(e, E_RANGE, "SUBMIT n_prompt = %u: must be 0 with %s", n,
		                      (flags & PROTO_SUBMIT_CHAT) ? "CHAT" : "TEXT_PROMPT")
		            : ts_errf(e, E_RANGE,
		                      "SUBMIT n_prompt = %u: out of range (accepted 1..%u, below max_seq_len)", n,
		                      lim->max_seq_len - 1);
	out->prompt.n = n;
	if ((rc = rd_span(&r, n, 4, &out->prompt.raw, "prompt")) < 0 ||
	    (rc = rd_ids_check(&r, &out->prompt, lim->vocab, "prompt")) < 0)
		return rc;
	uint32_t left = lim->max_seq_len - (text ? 1 : n);
	uint32_t max_tokens = TS_MIN(left, lim->max_tokens);
	if (out->max_tokens < 1 || out->max_tokens > max_tokens)
		return ts_errf(e, E_RANGE,
		               "SUBMIT max_tokens = %u: out of range (accepted 1..%u: the server's max_tokens %u, and "
		               "%u of max_seq_len %u left after the %s)",
		               out->max_tokens, max_tokens, lim->max_tokens, left, lim->max_seq_len,
		               text ? "first token of a text prompt" : "prompt");

	/* stop ids */
	if ((rc = rd_u32(&r, &n, "n_stop_ids")) < 0)
		return rc;
	if (n > lim->max_stop_ids)
		return ts_errf(e, E_RANGE, "SUBMIT n_stop_ids = %u: at most %u", n, lim->max_stop_ids);
	out->stop_ids.n = n;
	if ((rc = rd_span(&r, n, 4, &out->stop_ids.raw, "stop_ids")) < 0 ||
	    (rc = rd_ids_check(&r, &out->stop_ids, lim->vocab, "stop_ids")) < 0)
		return rc;

	/* prompt text */
	int ptext = (flags & PROTO_SUBMIT_TEXT_PROMPT) != 0;
	if ((rc = rd_str(&r, &out->prompt_text, ptext ? lim->max_text_bytes : 0, "prompt_text")) < 0)
		return rc;
	if (ptext && out->prompt_text.len == 0)
		return ts_errf(e, E_RANGE, "SUBMIT prompt_text: empty; TEXT_PROMPT needs at least one byte");

	/* stop sequences */
	if ((rc = rd_u32(&r, &n, "n_stop_seqs")) < 0)
		return rc;
	if (n && !lim->has_tokenizer)
		return ts_errf(e, E_UNSUPPORTED,
		               "SUBMIT n_stop_seqs = %u: stop sequences need a tokenizer, which this "
		               "server does not have: send stop_ids",
		               n);
	uint32_t max_seqs = TS_MIN(lim->max_stop_seqs, PROTO_MAX_STOP_SEQS);
	if (n > max_seqs)
		return ts_errf(e, E_RANGE, "SUBMIT n_stop_seqs = %u: at most %u", n, max_seqs);
	out->n_stop_seqs = n;
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = rd_str(&r, &out->stop_seqs[i], lim->max_stop_seq_bytes, "stop_seqs")) < 0)
			return rc;
		if (out->stop_seqs[i].len == 0)
			return ts_errf(e, E_RANGE, "SUBMIT stop_seqs[%u]: empty; a stop sequence has at least one byte",
			               i);
	}

	/* chat messages */
	if (flags & PROTO_SUBMIT_CHAT) {
		if ((rc = rd_u32(&r, &n, "n_messages")) < 0)
			return rc;
		if (n < 1 || n > PROTO_MAX_MESSAGES)
			return ts_errf(e, E_RANGE, "SUBMIT n_messages = %u: out of range (accepted 1..%u)", n,
			               PROTO_MAX_MESSAGES);
		out->chat.n = n;
		out->chat.raw = r.p + r.off;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t role;
			struct proto_str c;
			if ((rc = rd_u32(&r, &role, "messages role")) < 0)
				return rc;
			if (role > PROTO_ROLE_MAX)
				return ts_errf(e, E_RANGE,
				               "SUBMIT messages[%u] role = %u: out of range (accepted 0 system, 1 user, "
				               "2 assistant, 3 tool, 4 tools)",
				               i, role);
			if ((rc = rd_str(&r, &c, lim->max_text_bytes, "messages content")) < 0)
				return rc;
			out->chat.bytes += c.len;
			if (out->chat.bytes > lim->max_text_bytes)
				return ts_errf(e, E_RANGE, "SUBMIT messages: more than max_text_bytes = %u bytes of content",
				               lim->max_text_bytes);
		}
	}
	if ((rc = rd_end(&r)) < 0)
		return rc;
	if ((rc = samp_params_check(s, (int)lim->vocab, e)) < 0)
		err_prefix(e, "SUBMIT ");
	return rc;
}

int proto_encode_submit(uint8_t *buf, size_t cap, uint32_t request_id, const struct proto_submit_args *a)
{
	struct wr w;
	const struct samp_params *s = &a->samp;
	wr_begin(&w, buf, cap);
	wr_u32(&w, a->max_tokens);
	wr_u32(&w, a->priority);
	wr_f32(&w, s->temperature);
	wr_u32(&w, (uint32_t)s->top_k);
	wr_f32(&w, s->top_p);
	wr_f32(&w, s->min_p);
	wr_f32(&w, s->repetition_penalty);
	wr_f32(&w, s->presence_penalty);
	wr_f32(&w, s->frequency_penalty);
	wr_u64(&w, s->seed);
	wr_u64(&w, a->session_id);
	wr_u32(&w, a->top_logprobs);
	wr_u32(&w, a->n_prompt);
	for (uint32_t i = 0; i < a->n_prompt; i++)
		wr_u32(&w, (uint32_t)a->prompt[i]);
	wr_u32(&w, a->n_stop_ids);
	for (uint32_t i = 0; i < a->n_stop_ids; i++)
		wr_u32(&w, (uint32_t)a->stop_ids[i]);
	wr_str(&w, a->prompt_text);
	wr_u32(&w, a->n_stop_seqs);
	for (uint32_t i = 0; i < a->n_stop_seqs; i++)
		wr_str(&w, a->stop_seqs[i]);
	if (a->flags & PROTO_SUBMIT_CHAT) {
		wr_u32(&w, a->n_msgs);
		for (uint32_t i = 0; i < a->n_msgs; i++) {
			wr_u32(&w, a->msgs[i].role);
			wr_str(&w, a->msgs[i].text);
		}
	}
	return wr_end(&w, PROTO_SUBMIT, a->flags, request_id);
}

void proto_chat_next(const struct proto_chat *c, uint32_t *off, struct proto_chat_msg *m)
{
	const uint8_t *p = c->raw + *off;
	m->role = proto_get_u32(p);
	m->text.len = proto_get_u32(p + 4);
	m->text.s = m->text.len ? (const char *)p + 8 : "";
	*off += 8 + m->text.len;
}

/* ---------------------------------------------------------------- CANCEL, CREDIT, PING, PONG */

int proto_decode_empty(const uint8_t *p, uint32_t len, uint32_t flags, const char *what, struct ts_err *e)
{
	struct rd r = {p, len, 0, what, e};
	int rc;
	if ((rc = rd_flags(&r, flags, 0)) < 0)
		return rc;
	return rd_end(&r);
}

int proto_encode_cancel(uint8_t *buf, size_t cap, uint32_t request_id)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	return wr_end(&w, PROTO_CANCEL, 0, request_id);
}

int proto_encode_stats_req(uint8_t *buf, size_t cap)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	return wr_end(&w, PROTO_STATS, 0, 0);
}

int proto_decode_credit(const uint8_t *p, uint32_t len, uint32_t flags, uint32_t *tokens, struct ts_err *e)
{
	struct rd r = {p, len, 0, "CREDIT", e};
	int rc;
	if ((rc = rd_flags(&r, flags, 0)) < 0 || (rc = rd_u32(&r, tokens, "tokens")) < 0)
		return rc;
	if (*tokens == 0)
		return ts_errf(e, E_RANGE, "CREDIT tokens = 0: grant at least 1");
	return rd_end(&r);
}

int proto_encode_credit(uint8_t *buf, size_t cap, uint32_t request_id, uint32_t tokens)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	wr_u32(&w, tokens);
	return wr_end(&w, PROTO_CREDIT, 0, request_id);
}

int proto_decode_ping(const uint8_t *p, uint32_t len, uint32_t flags, uint64_t *value, struct ts_err *e)
{
	struct rd r = {p, len, 0, "PING/PONG", e};
	int rc;
	if ((rc = rd_flags(&r, flags, 0)) < 0 || (rc = rd_u64(&r, value, "value")) < 0)
		return rc;
	return rd_end(&r);
}

static int encode_ping(uint8_t *buf, size_t cap, enum proto_type type, uint64_t value)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	wr_u64(&w, value);
	return wr_end(&w, type, 0, 0);
}

int proto_encode_ping(uint8_t *buf, size_t cap, uint64_t value)
{
	return encode_ping(buf, cap, PROTO_PING, value);
}

int proto_encode_pong(uint8_t *buf, size_t cap, uint64_t value)
{
	return encode_ping(buf, cap, PROTO_PONG, value);
}

/* ---------------------------------------------------------------- TOKENS */

static uint64_t lp_rec_bytes(uint32_t top_n)
{
	return 4 + 8 * (uint64_t)top_n;
}

float proto_tokens_logprob(const struct proto_tokens *t, uint32_t i)
{
	return proto_get_f32(t->lp_raw + i * lp_rec_bytes(t->top_n));
}

int32_t proto_tokens_top(const struct proto_tokens *t, uint32_t i, uint32_t j, float *logprob)
{
	const uint8_t *q = t->lp_raw + i * lp_rec_bytes(t->top_n) + 4 + 8 * (size_t)j;
	*logprob = proto_get_f32(q + 4);
	return (int32_t)proto_get_u32(q);
}

uint64_t proto_tokens_size(uint32_t n, int has_logprobs, uint32_t top_n, int has_text, uint32_t text_len)
{
	uint64_t b = PROTO_HDR_BYTES + 4 + 4 * (uint64_t)n;
	if (has_logprobs)
		b += 4 + n * lp_rec_bytes(top_n);
	if (has_text)
		b += 4 + (uint64_t)text_len;
	return b;
}

/* A logprob is a float <= 0 (or -inf); NaN fails the test. */
static int lp_ok(float f)
{
	return f <= 0.0f;
}

static float lp_clamp(float f)
{
	return f > 0.0f ? 0.0f : f == f ? f : -(float)INFINITY;
}

int proto_decode_tokens(const uint8_t *p, uint32_t len, uint32_t flags, const struct proto_limits *lim,
                        struct proto_tokens *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "TOKENS", e};
	int rc;
	memset(out, 0, sizeof(*out));
	out->flags = flags;
	if ((rc = rd_flags(&r, flags, PROTO_TOKENS_FLAGS)) < 0)
		return rc;
	if ((flags & PROTO_TOKENS_HAS_TEXT) && !lim->has_tokenizer)
		return ts_errf(e, E_INVAL, "TOKENS flags: HAS_TEXT from a server that announced no tokenizer");
	if ((rc = rd_u32(&r, &out->ids.n, "n")) < 0)
		return rc;
	if (out->ids.n == 0 && !(flags & PROTO_TOKENS_HAS_TEXT))
		return ts_errf(e, E_RANGE, "TOKENS n = 0: a frame without text carries at least one token");
	if ((rc = rd_span(&r, out->ids.n, 4, &out->ids.raw, "ids")) < 0 ||
	    (rc = rd_ids_check(&r, &out->ids, lim->vocab, "ids")) < 0)
		return rc;
	if (flags & PROTO_TOKENS_HAS_LOGPROBS) {
		if ((rc = rd_u32(&r, &out->top_n, "top_n")) < 0)
			return rc;
		if (out->top_n > lim->max_logprobs)
			return ts_errf(e, E_RANGE, "TOKENS top_n = %u: at most %u", out->top_n, lim->max_logprobs);
		if ((rc = rd_span(&r, out->ids.n, lp_rec_bytes(out->top_n), &out->lp_raw, "logprobs")) < 0)
			return rc;
		for (uint32_t i = 0; i < out->ids.n; i++) {
			float lp = proto_tokens_logprob(out, i);
			if (!lp_ok(lp))
				return ts_errf(e, E_RANGE, "TOKENS logprob[%u] = %g: must be <= 0", i, (double)lp);
			for (uint32_t j = 0; j < out->top_n; j++) {
				int32_t id = proto_tokens_top(out, i, j, &lp);
				if ((uint32_t)id >= lim->vocab)
					return ts_errf(e, E_RANGE,
					               "TOKENS top[%u][%u] id = %u: outside the vocabulary (0..%u)", i,
					               j, (uint32_t)id, lim->vocab - 1);
				if (!lp_ok(lp))
					return ts_errf(e, E_RANGE, "TOKENS top[%u][%u] logprob = %g: must be <= 0", i,
					               j, (double)lp);
			}
		}
	}
	if ((flags & PROTO_TOKENS_HAS_TEXT) && (rc = rd_str(&r, &out->text, lim->max_frame, "text")) < 0)
		return rc;
	return rd_end(&r);
}

int proto_encode_tokens(uint8_t *buf, size_t cap, uint32_t request_id, const struct proto_tokens_args *a)
{
	struct wr w;
	uint32_t flags = (a->logprob ? PROTO_TOKENS_HAS_LOGPROBS : 0) | (a->text.s ? PROTO_TOKENS_HAS_TEXT : 0);
	wr_begin(&w, buf, cap);
	if (proto_tokens_size(a->n, a->logprob != NULL, a->top_n, a->text.s != NULL, a->text.len) > w.cap)
		return -E_NOSPACE; /* before writing, so a huge n costs nothing */
	wr_u32(&w, a->n);
	for (uint32_t i = 0; i < a->n; i++)
		wr_u32(&w, (uint32_t)a->ids[i]);
	if (a->logprob) {
		wr_u32(&w, a->top_n);
		for (uint32_t i = 0; i < a->n; i++) {
			wr_f32(&w, lp_clamp(a->logprob[i]));
			for (uint32_t j = 0; j < a->top_n; j++) {
				wr_u32(&w, (uint32_t)a->top_ids[(size_t)i * a->top_n + j]);
				wr_f32(&w, lp_clamp(a->top_logprob[(size_t)i * a->top_n + j]));
			}
		}
	}
	if (a->text.s)
		wr_str(&w, a->text);
	return wr_end(&w, PROTO_TOKENS, flags, request_id);
}

/* ---------------------------------------------------------------- DONE */

int proto_decode_done(const uint8_t *p, uint32_t len, uint32_t flags, const struct proto_limits *lim,
                      struct proto_done *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "DONE", e};
	int rc;
	memset(out, 0, sizeof(*out));
	out->flags = flags;
	if ((rc = rd_flags(&r, flags, PROTO_DONE_FLAGS)) < 0 || (rc = rd_u32(&r, &out->finish, "finish")) < 0 ||
	    (rc = rd_u32(&r, &out->n_prompt, "n_prompt")) < 0 || (rc = rd_u32(&r, &out->n_cached, "n_cached")) < 0 ||
	    (rc = rd_u32(&r, &out->n_generated, "n_generated")) < 0 ||
	    (rc = rd_u64(&r, &out->queue_us, "queue_us")) < 0 || (rc = rd_u64(&r, &out->ttft_us, "ttft_us")) < 0 ||
	    (rc = rd_u64(&r, &out->decode_us, "decode_us")) < 0 || (rc = rd_end(&r)) < 0)
		return rc;
	if (out->finish < PROTO_FINISH_STOP || out->finish > PROTO_FINISH_MAX)
		return ts_errf(e, E_RANGE, "DONE finish = %u: out of range (accepted 1..%u)", out->finish,
		               PROTO_FINISH_MAX);
	if (out->n_cached > out->n_prompt)
		return ts_errf(e, E_RANGE, "DONE n_cached = %u: more than n_prompt = %u", out->n_cached, out->n_prompt);
	if (out->n_generated > lim->max_tokens || (uint64_t)out->n_prompt + out->n_generated > lim->max_seq_len)
		return ts_errf(e, E_RANGE,
		               "DONE n_prompt = %u, n_generated = %u: beyond max_tokens %u or max_seq_len %u",
		               out->n_prompt, out->n_generated, lim->max_tokens, lim->max_seq_len);
	return 0;
}

int proto_encode_done(uint8_t *buf, size_t cap, uint32_t request_id, const struct proto_done *d)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	wr_u32(&w, d->finish);
	wr_u32(&w, d->n_prompt);
	wr_u32(&w, d->n_cached);
	wr_u32(&w, d->n_generated);
	wr_u64(&w, d->queue_us);
	wr_u64(&w, d->ttft_us);
	wr_u64(&w, d->decode_us);
	return wr_end(&w, PROTO_DONE, d->flags, request_id);
}

/* ---------------------------------------------------------------- ERROR */

int proto_decode_error(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_error *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "ERROR", e};
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = rd_flags(&r, flags, PROTO_ERROR_FLAGS)) < 0 || (rc = rd_u32(&r, &out->code, "code")) < 0)
		return rc;
	out->retryable = (flags & PROTO_ERROR_RETRYABLE) != 0;
	if (out->code == 0)
		return ts_errf(e, E_RANGE, "ERROR code = 0: codes start at 1");
	if ((rc = rd_str(&r, &out->msg, PROTO_MAX_MSG, "message")) < 0)
		return rc;
	return rd_end(&r);
}

/* Writes a u32 length and up to max bytes of s, cut on a character
 * boundary, each invalid UTF-8 byte written as '?'. */
static void wr_msg(struct wr *w, const char *s, uint32_t max)
{
	const uint8_t *b = (const uint8_t *)(s ? s : "");
	size_t n = strlen((const char *)b), i = 0;
	uint32_t out = 0;
	size_t at = w->n;
	wr_u32(w, 0); /* patched below */
	while (i < n) {
		uint32_t k = utf8_seq(b + i, (uint32_t)TS_MIN(n - i, (size_t)4));
		if (out + (k ? k : 1) > max)
			break;
		if (k)
			wr_bytes(w, b + i, k);
		else
			wr_bytes(w, "?", 1);
		out += k ? k : 1;
		i += k ? k : 1;
	}
	if (!w->full)
		proto_put_u32(w->p + at, out);
}

int proto_encode_error(uint8_t *buf, size_t cap, uint32_t request_id, uint32_t code, const char *msg)
{
	struct wr w;
	const struct proto_err_info *info = proto_err_info(code);
	wr_begin(&w, buf, cap);
	wr_u32(&w, code);
	wr_msg(&w, msg, PROTO_MAX_MSG);
	return wr_end(&w, PROTO_ERROR, info && info->retryable ? PROTO_ERROR_RETRYABLE : 0, request_id);
}

/* ---------------------------------------------------------------- STATS */

void proto_stats_at(const struct proto_stats *s, uint32_t i, struct proto_stat *kv)
{
	const uint8_t *q = s->raw + 12 * (size_t)i;
	kv->key = proto_get_u32(q);
	kv->value = proto_get_u64(q + 4);
}

int proto_decode_stats(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_stats *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "STATS", e};
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = rd_flags(&r, flags, 0)) < 0 || (rc = rd_u32(&r, &out->n, "n")) < 0)
		return rc;
	if (out->n > PROTO_MAX_STATS)
		return ts_errf(e, E_RANGE, "STATS n = %u: at most %u", out->n, PROTO_MAX_STATS);
	if ((rc = rd_span(&r, out->n, 12, &out->raw, "pairs")) < 0)
		return rc;
	for (uint32_t i = 0; i < out->n; i++) {
		struct proto_stat kv;
		proto_stats_at(out, i, &kv);
		if (kv.key == 0)
			return ts_errf(e, E_RANGE, "STATS key[%u] = 0: keys start at 1", i);
	}
	return rd_end(&r);
}

int proto_encode_stats(uint8_t *buf, size_t cap, const struct proto_stat *kv, uint32_t n)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	if (n > PROTO_MAX_STATS)
		return -E_NOSPACE;
	wr_u32(&w, n);
	for (uint32_t i = 0; i < n; i++) {
		wr_u32(&w, kv[i].key);
		wr_u64(&w, kv[i].value);
	}
	return wr_end(&w, PROTO_STATS, 0, 0);
}

/* ---------------------------------------------------------------- GOAWAY */

int proto_decode_goaway(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_goaway *out, struct ts_err *e)
{
	struct rd r = {p, len, 0, "GOAWAY", e};
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = rd_flags(&r, flags, 0)) < 0 || (rc = rd_u32(&r, &out->drain_ms, "drain_ms")) < 0 ||
	    (rc = rd_str(&r, &out->msg, PROTO_MAX_MSG, "message")) < 0)
		return rc;
	return rd_end(&r);
}

int proto_encode_goaway(uint8_t *buf, size_t cap, uint32_t drain_ms, const char *msg)
{
	struct wr w;
	wr_begin(&w, buf, cap);
	wr_u32(&w, drain_ms);
	wr_msg(&w, msg, PROTO_MAX_MSG);
	return wr_end(&w, PROTO_GOAWAY, 0, 0);
}
