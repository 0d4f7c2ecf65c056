/* fuzz_proto: libFuzzer target for proto (the frame reader and every decoder).
 *
 * The input is a byte stream as a peer would send it. It is read twice: once
 * in one piece (payloads then point into the input, so ASAN sees any read past
 * a frame), and once in chunks of 1 to 64 bytes whose sizes come from a hash
 * of the input (payloads assembled in the reader's exactly-sized heap buffer).
 * Both reads must give the same frames and end the same way. Like a server,
 * the reader starts with the handshake limits and moves to a 64 KiB max frame
 * after the first frame. Every frame is decoded by every decoder, whatever its
 * type; whatever a decoder accepts must encode back to the same payload and
 * flags, byte for byte. ASAN and UBSAN catch the rest.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -iquote src \
 *     tests/fuzz_proto.c src/proto.c src/samp.c src/fmath.c src/base.c
 *
 * A unit test can #include this file with TS_FUZZ_NO_MAIN defined and call
 * fuzz_proto_one directly (no libFuzzer); fuzz_proto_seed writes a stream
 * holding one of every message, valid, as a seed.
 */
#include "proto.h"

#include <math.h> /* INFINITY */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define FUZZ_PROTO_FRAME 65536u /* max frame after the first frame */

static const struct proto_limits fuzz_proto_lim_text = {
    .max_frame = FUZZ_PROTO_FRAME,
    .vocab = 200000,
    .max_seq_len = 32768,
    .max_tokens = 16384,
    .max_stop_ids = 64,
    .max_stop_seqs = 8,
    .max_stop_seq_bytes = 64,
    .max_text_bytes = 16384,
    .max_logprobs = 8,
    .has_tokenizer = 1,
};

static const struct proto_limits fuzz_proto_lim_ids = {
    .max_frame = FUZZ_PROTO_FRAME,
    .vocab = 200000,
    .max_seq_len = 32768,
    .max_tokens = 16384,
    .max_stop_ids = 64,
    .max_logprobs = 8,
};

/* ---------------------------------------------------------------- round trips */

/* The frame in enc (rc bytes) carries the same payload and flags as f. */
static void fuzz_proto_same(int rc, const uint8_t *enc, const struct proto_frame *f, int check_flags)
{
	FUZZ_CHECK(rc >= (int)PROTO_HDR_BYTES);
	struct proto_hdr h;
	proto_hdr_decode(enc, &h);
	FUZZ_CHECK(h.magic == PROTO_MAGIC && h.length == (uint32_t)rc - PROTO_HDR_BYTES);
	FUZZ_CHECK(h.length == f->h.length);
	FUZZ_CHECK(h.length == 0 || memcmp(enc + PROTO_HDR_BYTES, f->payload, h.length) == 0);
	if (check_flags)
		FUZZ_CHECK(h.flags == f->h.flags);
}

/* A failed decoder leaves a message and a known code. */
static void fuzz_proto_failed(int rc, const struct ts_err *e)
{
	FUZZ_CHECK(rc < 0 && -rc < E_CODE_N && e->code == -rc);
	FUZZ_CHECK(memchr(e->msg, '\0', sizeof(e->msg)) != NULL && e->msg[0] != '\0');
}

/* A copy of s with a NUL, or NULL when s holds a NUL itself (the message
 * encoders take C strings). */
static char *fuzz_proto_cstr(struct proto_str s)
{
	if (s.len && memchr(s.s, '\0', s.len))
		return NULL;
	char *c = malloc(s.len + 1);
	FUZZ_CHECK(c != NULL);
	if (s.len)
		memcpy(c, s.s, s.len);
	c[s.len] = '\0';
	return c;
}

static int32_t *fuzz_proto_ids(const struct proto_u32s *a, uint32_t vocab)
{
	int32_t *v = malloc(4 * (size_t)a->n + 4);
	FUZZ_CHECK(v != NULL);
	proto_u32s_copy(a, v);
	for (uint32_t i = 0; i < a->n; i++)
		FUZZ_CHECK(v[i] >= 0 && (uint32_t)v[i] < vocab);
	return v;
}

static int fuzz_proto_submit(const struct proto_frame *f, const struct proto_limits *lim, uint8_t *enc, size_t cap)
{
	struct proto_submit s;
	struct ts_err e = {0};
	int rc = proto_decode_submit(f->payload, f->h.length, f->h.flags, lim, &s, &e);
	if (rc < 0) {
		fuzz_proto_failed(rc, &e);
		FUZZ_CHECK(proto_decode_err(rc) ==
		           (rc == -E_UNSUPPORTED ? PROTO_ERR_UNSUPPORTED : PROTO_ERR_BAD_FIELD));
		return 0;
	}
	FUZZ_CHECK(samp_params_check(&s.samp, (int)lim->vocab, NULL) == 0);
	FUZZ_CHECK(s.n_stop_seqs <= lim->max_stop_seqs && s.stop_ids.n <= lim->max_stop_ids);
	uint32_t n_ctx = (s.flags & (PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_CHAT)) ? 1 : s.prompt.n;
	FUZZ_CHECK(!!(s.flags & PROTO_SUBMIT_CHAT) == (s.chat.n > 0) && s.chat.n <= PROTO_MAX_MESSAGES &&
	           s.chat.bytes <= lim->max_text_bytes);
	static struct proto_chat_msg msgs[PROTO_MAX_MESSAGES];
	for (uint32_t i = 0, off = 0, sum = 0; i < s.chat.n; i++) {
		proto_chat_next(&s.chat, &off, &msgs[i]);
		sum += msgs[i].text.len;
		FUZZ_CHECK(msgs[i].role <= PROTO_ROLE_MAX && sum <= s.chat.bytes);
	}
	FUZZ_CHECK(n_ctx >= 1 && s.max_tokens >= 1 && (uint64_t)n_ctx + s.max_tokens <= lim->max_seq_len);
	struct proto_submit_args a = {
	    .flags = s.flags,
	    .max_tokens = s.max_tokens,
	    .priority = s.priority,
	    .samp = s.samp,
	    .session_id = s.session_id,
	    .top_logprobs = s.top_logprobs,
	    .prompt = fuzz_proto_ids(&s.prompt, lim->vocab),
	    .n_prompt = s.prompt.n,
	    .stop_ids = fuzz_proto_ids(&s.stop_ids, lim->vocab),
	    .n_stop_ids = s.stop_ids.n,
	    .prompt_text = s.prompt_text,
	    .stop_seqs = s.stop_seqs,
	    .n_stop_seqs = s.n_stop_seqs,
	    .msgs = msgs,
	    .n_msgs = s.chat.n,
	};
	rc = proto_encode_submit(enc, cap, f->h.request_id, &a);
	fuzz_proto_same(rc, enc, f, 1);
	free((void *)a.prompt);
	free((void *)a.stop_ids);
	return 1;
}

static int fuzz_proto_tokens(const struct proto_frame *f, const struct proto_limits *lim, uint8_t *enc, size_t cap)
{
	struct proto_tokens t;
	struct ts_err e = {0};
	int rc = proto_decode_tokens(f->payload, f->h.length, f->h.flags, lim, &t, &e);
	if (rc < 0) {
		fuzz_proto_failed(rc, &e);
		return 0;
	}
	uint32_t n = t.ids.n, k = t.top_n;
	float *lp = malloc(4 * (size_t)n + 4), *top_lp = malloc(4 * (size_t)n * k + 4);
	int32_t *top_ids = malloc(4 * (size_t)n * k + 4);
	FUZZ_CHECK(lp && top_lp && top_ids);
	for (uint32_t i = 0; (t.flags & PROTO_TOKENS_HAS_LOGPROBS) && i < n; i++) {
		lp[i] = proto_tokens_logprob(&t, i);
		FUZZ_CHECK(lp[i] <= 0.0f);
		for (uint32_t j = 0; j < k; j++) {
			top_ids[(size_t)i * k + j] = proto_tokens_top(&t, i, j, &top_lp[(size_t)i * k + j]);
			FUZZ_CHECK(top_ids[(size_t)i * k + j] >= 0 &&
			           (uint32_t)top_ids[(size_t)i * k + j] < lim->vocab);
		}
	}
	struct proto_tokens_args a = {
	    .ids = fuzz_proto_ids(&t.ids, lim->vocab),
	    .n = n,
	    .logprob = (t.flags & PROTO_TOKENS_HAS_LOGPROBS) ? lp : NULL,
	    .top_n = k,
	    .top_ids = top_ids,
	    .top_logprob = top_lp,
	    .text = t.text,
	};
	FUZZ_CHECK(((t.flags & PROTO_TOKENS_HAS_TEXT) != 0) == (t.text.s != NULL));
	rc = proto_encode_tokens(enc, cap, f->h.request_id, &a);
	fuzz_proto_same(rc, enc, f, 1);
	FUZZ_CHECK((uint64_t)rc == proto_tokens_size(n, a.logprob != NULL, k, a.text.s != NULL, a.text.len));
	free((void *)a.ids);
	free(lp);
	free(top_lp);
	free(top_ids);
	return 1;
}

/* Every decoder over one frame; returns 1 when the decoder of the frame's own
 * type accepted it. */
static int fuzz_proto_frame(const struct proto_frame *f)
{
	const struct proto_limits *lim = (f->h.request_id & 1) ? &fuzz_proto_lim_text : &fuzz_proto_lim_ids;
	const uint8_t *p = f->payload;
	uint32_t len = f->h.length, flags = f->h.flags, code = 99;
	size_t cap = (size_t)len + 64;
	uint8_t *enc = malloc(cap);
	struct ts_err e = {0};
	int ok[PROTO_TYPE_END] = {0}, rc;
	FUZZ_CHECK(enc != NULL);
	FUZZ_CHECK(len == 0 ? p == NULL : p != NULL);

	rc = proto_hdr_check(&f->h, PROTO_TO_SERVER, &code, &e);
	FUZZ_CHECK(rc == 0 ? code == 0 : code == PROTO_ERR_UNKNOWN_TYPE || code == PROTO_ERR_PROTOCOL);
	rc = proto_hdr_check(&f->h, PROTO_TO_CLIENT, &code, &e);
	FUZZ_CHECK(rc == 0 ? code == 0 : code == PROTO_ERR_UNKNOWN_TYPE || code == PROTO_ERR_PROTOCOL);

	struct proto_hello hello;
	if ((rc = proto_decode_hello(p, len, flags, &hello, &e)) == 0) {
		uint32_t v = 0, mf = 0;
		if (proto_negotiate(&hello, FUZZ_PROTO_FRAME, &v, &mf, &e) == 0)
			FUZZ_CHECK(v == PROTO_VERSION && mf >= PROTO_MIN_FRAME && mf <= FUZZ_PROTO_FRAME);
		fuzz_proto_same(proto_encode_hello(enc, cap, &hello), enc, f, 1);
		ok[PROTO_HELLO] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	struct proto_welcome w;
	if ((rc = proto_decode_welcome(p, len, flags, &w, &e)) == 0) {
		FUZZ_CHECK(proto_limits_check(&w.lim, NULL) == 0);
		fuzz_proto_same(proto_encode_welcome(enc, cap, &w), enc, f, 1);
		ok[PROTO_WELCOME] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	ok[PROTO_SUBMIT] = fuzz_proto_submit(f, lim, enc, cap);
	ok[PROTO_TOKENS] = fuzz_proto_tokens(f, lim, enc, cap);

	struct proto_done d;
	if ((rc = proto_decode_done(p, len, flags, lim, &d, &e)) == 0) {
		fuzz_proto_same(proto_encode_done(enc, cap, f->h.request_id, &d), enc, f, 1);
		ok[PROTO_DONE] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	struct proto_error er;
	if ((rc = proto_decode_error(p, len, flags, &er, &e)) == 0) {
		char *m = fuzz_proto_cstr(er.msg);
		if (m) /* the retryable flag comes from our table: compare payloads only */
			fuzz_proto_same(proto_encode_error(enc, cap, f->h.request_id, er.code, m), enc, f, 0);
		free(m);
		ok[PROTO_ERROR] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	if ((rc = proto_decode_empty(p, len, flags, "CANCEL", &e)) == 0) {
		fuzz_proto_same(proto_encode_cancel(enc, cap, f->h.request_id), enc, f, 1);
		fuzz_proto_same(proto_encode_stats_req(enc, cap), enc, f, 1);
		ok[PROTO_CANCEL] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	uint32_t credit;
	if ((rc = proto_decode_credit(p, len, flags, &credit, &e)) == 0) {
		FUZZ_CHECK(credit >= 1);
		fuzz_proto_same(proto_encode_credit(enc, cap, f->h.request_id, credit), enc, f, 1);
		ok[PROTO_CREDIT] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	uint64_t v64;
	if ((rc = proto_decode_ping(p, len, flags, &v64, &e)) == 0) {
		fuzz_proto_same(proto_encode_ping(enc, cap, v64), enc, f, 1);
		fuzz_proto_same(proto_encode_pong(enc, cap, v64), enc, f, 1);
		ok[PROTO_PING] = ok[PROTO_PONG] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	struct proto_stats st;
	if ((rc = proto_decode_stats(p, len, flags, &st, &e)) == 0) {
		struct proto_stat *kv = malloc(sizeof(*kv) * st.n + 1);
		FUZZ_CHECK(kv != NULL);
		for (uint32_t i = 0; i < st.n; i++) {
			proto_stats_at(&st, i, &kv[i]);
			FUZZ_CHECK(kv[i].key != 0);
		}
		fuzz_proto_same(proto_encode_stats(enc, cap, kv, st.n), enc, f, 1);
		free(kv);
		ok[PROTO_STATS] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
		ok[PROTO_STATS] = ok[PROTO_CANCEL]; /* the STATS request is empty */
	}

	struct proto_goaway g;
	if ((rc = proto_decode_goaway(p, len, flags, &g, &e)) == 0) {
		char *m = fuzz_proto_cstr(g.msg);
		if (m)
			fuzz_proto_same(proto_encode_goaway(enc, cap, g.drain_ms, m), enc, f, 1);
		free(m);
		ok[PROTO_GOAWAY] = 1;
	} else {
		fuzz_proto_failed(rc, &e);
	}

	free(enc);
	return f->h.type < PROTO_TYPE_END && ok[f->h.type];
}

/* ---------------------------------------------------------------- the stream */

struct fuzz_proto_rec {
	struct proto_hdr h;
	uint64_t hash; /* FNV-1a of the payload */
};

struct fuzz_proto_run {
	struct fuzz_proto_rec *rec; /* (cap) */
	size_t n, cap;
	int rc;       /* last feed result: -E_* when the reader failed */
	uint32_t err; /* r.err when rc < 0 */
	size_t consumed;
	int accepted; /* frames whose own decoder accepted them */
	int clean;    /* the stream ended between frames, without error */
};

static uint64_t fuzz_proto_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Reads data[0..size) in chunks (chunk_seed 0: one piece), decoding each
 * frame when decode is set. */
static void fuzz_proto_read(const uint8_t *data, size_t size, uint64_t chunk_seed, int decode,
                            struct fuzz_proto_run *run)
{
	struct proto_reader r;
	uint8_t *buf = malloc(FUZZ_PROTO_FRAME - PROTO_HDR_BYTES);
	FUZZ_CHECK(buf != NULL && proto_reader_init(&r, buf, FUZZ_PROTO_FRAME - PROTO_HDR_BYTES) == 0);
	uint64_t s = chunk_seed | 1;
	size_t off = 0;
	run->n = 0;
	run->rc = PROTO_AGAIN;
	run->err = 0;
	run->accepted = 0;
	while (off < size && run->rc >= 0) {
		size_t chunk = size - off;
		if (chunk_seed) {
			s ^= s << 13, s ^= s >> 7, s ^= s << 17;
			chunk = TS_MIN(chunk, (size_t)(s % 4 == 0 ? 1 : 1 + (s >> 8) % 64));
		}
		while (chunk) {
			struct proto_frame f;
			struct ts_err e = {0};
			size_t used = 99;
			run->rc = proto_reader_feed(&r, data + off, chunk, &used, &f, &e);
			FUZZ_CHECK(used <= chunk);
			off += used;
			chunk -= used;
			if (run->rc == PROTO_AGAIN) {
				FUZZ_CHECK(chunk == 0 && r.state != PROTO_READER_FAILED);
				break;
			}
			if (run->rc < 0) {
				fuzz_proto_failed(run->rc, &e);
				FUZZ_CHECK(r.state == PROTO_READER_FAILED && r.err >= PROTO_ERR_BAD_FRAME &&
				           r.err <= PROTO_ERR_FRAME_TOO_LARGE);
				run->err = r.err;
				/* a failed reader keeps failing */
				FUZZ_CHECK(proto_reader_feed(&r, data, size, &used, &f, NULL) == run->rc);
				break;
			}
			FUZZ_CHECK(run->rc == PROTO_FRAME);
			FUZZ_CHECK(f.h.magic == PROTO_MAGIC && f.h.version == PROTO_VERSION);
			FUZZ_CHECK((uint64_t)f.h.length + PROTO_HDR_BYTES <= r.max_frame);
			FUZZ_CHECK(run->n < run->cap);
			run->rec[run->n].h = f.h;
			run->rec[run->n].hash = fuzz_proto_hash(f.payload, f.h.length);
			run->n++;
			if (run->n == 1) /* as after a handshake */
				FUZZ_CHECK(proto_reader_limit(&r, FUZZ_PROTO_FRAME, PROTO_VERSION) == 0);
			if (decode)
				run->accepted += fuzz_proto_frame(&f);
		}
	}
	run->consumed = off;
	run->clean = run->rc >= 0 && r.state == PROTO_READER_HEADER && r.got == 0;
	FUZZ_CHECK(r.n_frames == run->n);
	free(buf);
}

/* Returns 1 when the whole stream read cleanly and every frame was accepted
 * by the decoder of its type, 0 otherwise. */
static int fuzz_proto_one(const uint8_t *data, size_t size)
{
	size_t cap = size / PROTO_HDR_BYTES + 1;
	struct fuzz_proto_run whole = {.rec = malloc(sizeof(struct fuzz_proto_rec) * cap), .cap = cap};
	struct fuzz_proto_run chunked = {.rec = malloc(sizeof(struct fuzz_proto_rec) * cap), .cap = cap};
	FUZZ_CHECK(whole.rec && chunked.rec);
	fuzz_proto_read(data, size, 0, 1, &whole);
	fuzz_proto_read(data, size, fuzz_proto_hash(data, size), 0, &chunked);
	FUZZ_CHECK(whole.n == chunked.n && whole.rc == chunked.rc && whole.err == chunked.err);
	FUZZ_CHECK(whole.consumed == chunked.consumed && whole.clean == chunked.clean);
	for (size_t i = 0; i < whole.n; i++)
		FUZZ_CHECK(memcmp(&whole.rec[i].h, &chunked.rec[i].h, sizeof(struct proto_hdr)) == 0 &&
		           whole.rec[i].hash == chunked.rec[i].hash);
	int ok = whole.clean && whole.n > 0 && (size_t)whole.accepted == whole.n;
	free(whole.rec);
	free(chunked.rec);
	return ok;
}

/* ---------------------------------------------------------------- seed */

/* Writes one valid frame of every type (client's, then server's) into buf;
 * returns the bytes written. */
__attribute__((unused)) static size_t fuzz_proto_seed(uint8_t *buf, size_t cap)
{
	size_t n = 0;
	int rc;
#define FUZZ_PROTO_PUT(call)                                                                                           \
	do {                                                                                                           \
		rc = (call);                                                                                           \
		FUZZ_CHECK(rc > 0);                                                                                    \
		n += (size_t)rc;                                                                                       \
	} while (0)
	struct proto_hello h = {.n_versions = 2, .versions = {1, 2}, .max_frame = 1 << 20, .client = {"seed", 4}};
	FUZZ_PROTO_PUT(proto_encode_hello(buf + n, cap - n, &h));
	int32_t prompt[] = {1, 2, 199999}, stop[] = {7};
	struct proto_str seqs[] = {{"\n\n", 2}, {"caf\xc3\xa9", 5}};
	struct proto_submit_args a = {
	    .flags = PROTO_SUBMIT_HAS_SESSION | PROTO_SUBMIT_KEEP_SESSION | PROTO_SUBMIT_WANT_LOGPROBS,
	    .max_tokens = 100,
	    .priority = PROTO_PRIO_BATCH,
	    .samp = {.temperature = 0.8f,
	             .top_k = 50,
	             .top_p = 0.95f,
	             .min_p = 0.05f,
	             .repetition_penalty = 1.1f,
	             .presence_penalty = 0.5f,
	             .frequency_penalty = -0.5f,
	             .seed = 1234},
	    .session_id = 0xfeedfacecafebeefull,
	    .top_logprobs = 2,
	    .prompt = prompt,
	    .n_prompt = 3,
	    .stop_ids = stop,
	    .n_stop_ids = 1,
	};
	FUZZ_PROTO_PUT(proto_encode_submit(buf + n, cap - n, 2, &a)); /* even id: ids only */
	a.flags = PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_WANT_TEXT;
	a.session_id = 0;
	a.top_logprobs = 0;
	a.n_prompt = 0;
	a.prompt_text = (struct proto_str){"Hello, \xe4\xb8\x96\xe7\x95\x8c", 13};
	a.stop_seqs = seqs;
	a.n_stop_seqs = 2;
	FUZZ_PROTO_PUT(proto_encode_submit(buf + n, cap - n, 3, &a)); /* odd id: text */
	struct proto_chat_msg msgs[] = {{PROTO_ROLE_SYSTEM, {"Be brief.", 9}},
	                                {PROTO_ROLE_USER, {"2+2? \xf0\x9f\xa4\x94", 9}},
	                                {PROTO_ROLE_ASSISTANT, {"", 0}},
	                                {PROTO_ROLE_TOOL, {"{\"x\": 4}", 8}}};
	a.flags = PROTO_SUBMIT_CHAT | PROTO_SUBMIT_WANT_TEXT;
	a.prompt_text = (struct proto_str){"", 0};
	a.msgs = msgs;
	a.n_msgs = 4;
	FUZZ_PROTO_PUT(proto_encode_submit(buf + n, cap - n, 5, &a)); /* odd id: chat */
	FUZZ_PROTO_PUT(proto_encode_credit(buf + n, cap - n, 2, 64));
	FUZZ_PROTO_PUT(proto_encode_cancel(buf + n, cap - n, 2));
	FUZZ_PROTO_PUT(proto_encode_ping(buf + n, cap - n, 0x0123456789abcdefull));
	FUZZ_PROTO_PUT(proto_encode_stats_req(buf + n, cap - n));

	struct proto_welcome w = {
	    .version = 1,
	    .max_requests = 64,
	    .initial_credit = 256,
	    .credit_timeout_ms = 30000,
	    .ping_interval_ms = 30000,
	    .idle_timeout_ms = 75000,
	    .lim = fuzz_proto_lim_text,
	    .model = {"Llama-3.1-8B", 12},
	    .arch = {"LlamaForCausalLM", 16},
	    .checkpoint = {"sha256:0123", 11},
	    .server = {"tokenspeed 0.1", 14},
	};
	FUZZ_PROTO_PUT(proto_encode_welcome(buf + n, cap - n, &w));
	int32_t ids[] = {5, 6}, top_ids[] = {5, 9, 6, 8};
	float lp[] = {-0.1f, -2.5f}, top_lp[] = {-0.1f, -3.0f, -2.5f, -(float)INFINITY};
	struct proto_tokens_args t = {.ids = ids,
	                              .n = 2,
	                              .logprob = lp,
	                              .top_n = 2,
	                              .top_ids = top_ids,
	                              .top_logprob = top_lp,
	                              .text = {"ab", 2}};
	FUZZ_PROTO_PUT(proto_encode_tokens(buf + n, cap - n, 3, &t));
	struct proto_done d = {.flags = PROTO_DONE_SESSION_KEPT,
	                       .finish = PROTO_FINISH_LENGTH,
	                       .n_prompt = 3,
	                       .n_cached = 2,
	                       .n_generated = 100,
	                       .queue_us = 10,
	                       .ttft_us = 2000,
	                       .decode_us = 900000};
	FUZZ_PROTO_PUT(proto_encode_done(buf + n, cap - n, 2, &d));
	FUZZ_PROTO_PUT(proto_encode_error(buf + n, cap - n, 4, PROTO_ERR_BUSY, "queue full (7 waiting): retry later"));
	struct proto_stat kv[] = {{PROTO_STAT_UPTIME_MS, 123456}, {PROTO_STAT_GENERATED_TOKENS, 1ull << 40}};
	FUZZ_PROTO_PUT(proto_encode_stats(buf + n, cap - n, kv, 2));
	FUZZ_PROTO_PUT(proto_encode_pong(buf + n, cap - n, 0x0123456789abcdefull));
	FUZZ_PROTO_PUT(proto_encode_goaway(buf + n, cap - n, 5000, "shutting down for a new model"));
#undef FUZZ_PROTO_PUT
	return n;
}

#ifndef TS_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_proto_one(data, size);
	return 0;
}
#endif
