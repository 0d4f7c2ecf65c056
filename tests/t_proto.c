/* t_proto: the wire protocol (src/proto.c against src/PROTOCOL.md).
 *
 * Round trips of every message; the frame reader fed whole, byte by byte and
 * in random chunks; every malformed case of the spec answered with its
 * documented code; the max frame exactly and one byte over; the spec's
 * numbered tables and example hexdumps checked against the code (read from
 * src/PROTOCOL.md, so run from the repository root); and the fuzz target run
 * over its seed and a few thousand mutations.
 */
#define TS_FUZZ_NO_MAIN
#include "fuzz_proto.c"
#include "t.h"

#include <math.h>
#include <stdio.h>

/* ---------------------------------------------------------------- helpers */

static const struct proto_limits lim_text = {
    .max_frame = 65536,
    .vocab = 1000,
    .max_seq_len = 512,
    .max_tokens = 256,
    .max_stop_ids = 16,
    .max_stop_seqs = 4,
    .max_stop_seq_bytes = 32,
    .max_text_bytes = 1024,
    .max_logprobs = 5,
    .has_tokenizer = 1,
};

static const struct proto_limits lim_ids = {
    .max_frame = 65536,
    .vocab = 1000,
    .max_seq_len = 512,
    .max_tokens = 256,
    .max_stop_ids = 16,
    .max_logprobs = 5,
};

static uint8_t rbuf[65536 - PROTO_HDR_BYTES];
static uint8_t fbuf[70000]; /* frames under construction */

/* Reads exactly one frame from buf[0..n) with a fresh reader (max frame
 * 65536 unless handshake is set); returns the feed's result. */
static int read_one(const uint8_t *buf, size_t n, int handshake, struct proto_frame *f, struct proto_reader *r,
                    struct ts_err *e)
{
	size_t used = 0;
	proto_reader_init(r, rbuf, sizeof(rbuf));
	if (!handshake)
		proto_reader_limit(r, 65536, PROTO_VERSION);
	int rc = proto_reader_feed(r, buf, n, &used, f, e);
	if (rc == PROTO_FRAME && used != n)
		return -1000; /* trailing bytes: a test bug */
	return rc;
}

/* The frame in buf is read back whole with header fields as given. */
static int frame_ok(const uint8_t *buf, int len, uint8_t type, uint32_t flags, uint32_t rid, struct proto_frame *f)
{
	struct proto_reader r;
	struct ts_err e = {0};
	if (len < (int)PROTO_HDR_BYTES)
		return 0;
	int rc = read_one(buf, (size_t)len, 0, f, &r, &e);
	return rc == PROTO_FRAME && f->h.type == type && f->h.flags == flags && f->h.request_id == rid &&
	       f->h.version == PROTO_VERSION && f->h.length + PROTO_HDR_BYTES == (uint32_t)len;
}

static int str_is(struct proto_str s, const char *c)
{
	return s.len == strlen(c) && memcmp(s.s, c, s.len) == 0;
}

static int f32_same(float a, float b)
{
	return memcmp(&a, &b, 4) == 0;
}

/* ---------------------------------------------------------------- round trips */

static void test_header(void)
{
	uint8_t b[16];
	struct proto_hdr h = {0x01020304, PROTO_MAGIC, 1, PROTO_SUBMIT, 0xa0b0c0d0, 0xdeadbeef}, g;
	proto_hdr_encode(b, &h);
	static const uint8_t want[16] = {0x04, 0x03, 0x02, 0x01, 0x54, 0x53, 0x01, 0x03,
	                                 0xd0, 0xc0, 0xb0, 0xa0, 0xef, 0xbe, 0xad, 0xde};
	T_CHECK(memcmp(b, want, 16) == 0, "header bytes are little-endian, magic \"TS\"");
	proto_hdr_decode(b, &g);
	T_CHECK(memcmp(&g, &h, sizeof(h)) == 0, "header round trip");
	T_CHECK(strcmp(proto_type_name(PROTO_GOAWAY), "GOAWAY") == 0 && strcmp(proto_type_name(0), "?") == 0 &&
	            strcmp(proto_type_name(200), "?") == 0,
	        "type names");
	T_CHECK(proto_err_info(0) == NULL && proto_err_info(PROTO_ERR_END) == NULL &&
	            proto_err_info(PROTO_ERR_BUSY)->retryable && !proto_err_info(PROTO_ERR_BAD_FIELD)->closes &&
	            proto_err_info(PROTO_ERR_BAD_FRAME)->closes,
	        "error table");
	T_CHECK(proto_stat_name(0) == NULL && strcmp(proto_stat_name(PROTO_STAT_STEPS), "STEPS") == 0 &&
	            proto_stat_name(PROTO_STAT_END) == NULL,
	        "stat names");
	T_CHECK(proto_decode_err(-E_UNSUPPORTED) == PROTO_ERR_UNSUPPORTED &&
	            proto_decode_err(-E_RANGE) == PROTO_ERR_BAD_FIELD &&
	            proto_decode_err(-E_FORMAT) == PROTO_ERR_BAD_FIELD,
	        "decoder failures map to BAD_FIELD or UNSUPPORTED");
}

static void test_hello_welcome(void)
{
	struct proto_frame f;
	struct ts_err e = {0};
	struct proto_hello h = {.n_versions = 3, .versions = {3, 1, 2}, .max_frame = 1 << 20, .client = {"tsc/0.1", 7}},
	                   g;
	int n = proto_encode_hello(fbuf, sizeof(fbuf), &h);
	T_CHECK(frame_ok(fbuf, n, PROTO_HELLO, 0, 0, &f), "HELLO frame");
	T_CHECK(proto_decode_hello(f.payload, f.h.length, f.h.flags, &g, &e) == 0, "HELLO decodes: %s", e.msg);
	T_CHECK(g.n_versions == 3 && g.versions[0] == 3 && g.versions[2] == 2 && g.max_frame == 1 << 20 &&
	            str_is(g.client, "tsc/0.1"),
	        "HELLO fields");
	uint32_t v = 0, mf = 0;
	T_CHECK(proto_negotiate(&g, 65536, &v, &mf, &e) == 0 && v == 1 && mf == 65536, "negotiate: v%u, %u", v, mf);
	g.max_frame = 5000;
	T_CHECK(proto_negotiate(&g, 65536, &v, &mf, &e) == 0 && mf == 5000, "max frame is the min of both");
	g.n_versions = 2;
	g.versions[0] = 2;
	g.versions[1] = 7;
	T_CHECK(proto_negotiate(&g, 65536, &v, &mf, &e) == -E_UNSUPPORTED, "no common version");
	T_HAS(e.msg, "versions");

	struct proto_welcome w =
	                         {
	                             .version = 1,
	                             .max_requests = 32,
	                             .initial_credit = 128,
	                             .credit_timeout_ms = 10000,
	                             .ping_interval_ms = 30000,
	                             .idle_timeout_ms = 75000,
	                             .lim = lim_text,
	                             .model = {"m", 1},
	                             .arch = {"Qwen3ForCausalLM", 16},
	                             .checkpoint = {"sha256:ab", 9},
	                             .server = {"tokenspeed 0.1", 14},
	                         },
	                     x;
	n = proto_encode_welcome(fbuf, sizeof(fbuf), &w);
	T_CHECK(frame_ok(fbuf, n, PROTO_WELCOME, PROTO_WELCOME_TOKENIZER, 0, &f), "WELCOME frame");
	T_CHECK(proto_decode_welcome(f.payload, f.h.length, f.h.flags, &x, &e) == 0, "WELCOME decodes: %s", e.msg);
	T_CHECK(x.version == 1 && x.max_requests == 32 && x.initial_credit == 128 && x.credit_timeout_ms == 10000 &&
	            x.ping_interval_ms == 30000 && x.idle_timeout_ms == 75000 &&
	            memcmp(&x.lim, &lim_text, sizeof(lim_text)) == 0 && str_is(x.model, "m") &&
	            str_is(x.arch, "Qwen3ForCausalLM") && str_is(x.checkpoint, "sha256:ab") &&
	            str_is(x.server, "tokenspeed 0.1"),
	        "WELCOME fields");
	w.lim = lim_ids;
	n = proto_encode_welcome(fbuf, sizeof(fbuf), &w);
	T_CHECK(frame_ok(fbuf, n, PROTO_WELCOME, 0, 0, &f) &&
	            proto_decode_welcome(f.payload, f.h.length, f.h.flags, &x, &e) == 0 && !x.lim.has_tokenizer,
	        "WELCOME without a tokenizer: %s", e.msg);
}

static const int32_t base_prompt[] = {1, 2, 999}, base_stop[] = {4, 5};

static struct proto_submit_args submit_base(void)
{
	struct proto_submit_args a = {
	    .flags = 0,
	    .max_tokens = 10,
	    .priority = PROTO_PRIO_NORMAL,
	    .samp = {.temperature = 0.7f,
	             .top_k = 40,
	             .top_p = 0.9f,
	             .min_p = 0.0f,
	             .repetition_penalty = 1.0f,
	             .seed = 42},
	    .prompt = base_prompt,
	    .n_prompt = 3,
	    .stop_ids = base_stop,
	    .n_stop_ids = 2,
	};
	return a;
}

static void test_submit_roundtrip(void)
{
	struct proto_frame f;
	struct ts_err e = {0};
	struct proto_submit s;
	struct proto_submit_args a = submit_base();
	a.flags =
	    PROTO_SUBMIT_HAS_SESSION | PROTO_SUBMIT_KEEP_SESSION | PROTO_SUBMIT_WANT_LOGPROBS | PROTO_SUBMIT_IGNORE_EOS;
	a.session_id = 0x8000000000000001ull;
	a.top_logprobs = 5;
	a.priority = PROTO_PRIO_BACKGROUND;
	a.samp = (struct samp_params){1.5f, 1000, 0.5f, 0.25f, 1.2f, -2.0f, 2.0f, UINT64_MAX};
	a.max_tokens = 256;
	int n = proto_encode_submit(fbuf, sizeof(fbuf), 77, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_SUBMIT, a.flags, 77, &f), "SUBMIT frame");
	T_CHECK(proto_decode_submit(f.payload, f.h.length, f.h.flags, &lim_ids, &s, &e) == 0, "SUBMIT decodes: %s",
	        e.msg);
	int32_t ids[3] = {0}, stops[2] = {0};
	proto_u32s_copy(&s.prompt, ids);
	proto_u32s_copy(&s.stop_ids, stops);
	T_CHECK(s.flags == a.flags && s.max_tokens == 256 && s.priority == 3 && s.session_id == a.session_id &&
	            s.top_logprobs == 5 && s.prompt.n == 3 && ids[2] == 999 && proto_u32s_at(&s.prompt, 1) == 2 &&
	            s.stop_ids.n == 2 && stops[1] == 5 && s.prompt_text.len == 0 && s.n_stop_seqs == 0,
	        "SUBMIT fields");
	T_CHECK(f32_same(s.samp.temperature, 1.5f) && s.samp.top_k == 1000 && f32_same(s.samp.top_p, 0.5f) &&
	            f32_same(s.samp.min_p, 0.25f) && f32_same(s.samp.repetition_penalty, 1.2f) &&
	            f32_same(s.samp.presence_penalty, -2.0f) && f32_same(s.samp.frequency_penalty, 2.0f) &&
	            s.samp.seed == UINT64_MAX,
	        "SUBMIT sampling fields map onto samp_params bit for bit");

	/* text prompt, stop sequences, WANT_TEXT */
	struct proto_str seqs[] = {{"</tool>", 7}, {"\xf0\x9f\x98\x80", 4}};
	a = submit_base();
	a.flags = PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_WANT_TEXT;
	a.n_prompt = 0;
	a.prompt_text = (struct proto_str){"caf\xc3\xa9 \xe2\x82\xac", 9};
	a.stop_seqs = seqs;
	a.n_stop_seqs = 2;
	a.max_tokens = 256;
	n = proto_encode_submit(fbuf, sizeof(fbuf), 1, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_SUBMIT, a.flags, 1, &f) &&
	            proto_decode_submit(f.payload, f.h.length, f.h.flags, &lim_text, &s, &e) == 0,
	        "text SUBMIT decodes: %s", e.msg);
	T_CHECK(s.prompt.n == 0 && str_is(s.prompt_text, "caf\xc3\xa9 \xe2\x82\xac") && s.n_stop_seqs == 2 &&
	            str_is(s.stop_seqs[0], "</tool>") && str_is(s.stop_seqs[1], "\xf0\x9f\x98\x80"),
	        "text SUBMIT fields");

	/* the boundary of the context: prompt of 500 + max_tokens 11 = 511 < 512 */
	static int32_t big[511];
	a = submit_base();
	a.prompt = big;
	a.n_prompt = 500;
	a.max_tokens = 12;
	n = proto_encode_submit(fbuf, sizeof(fbuf), 1, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_SUBMIT, 0, 1, &f) &&
	            proto_decode_submit(f.payload, f.h.length, f.h.flags, &lim_ids, &s, &e) == 0,
	        "prompt 500 + max_tokens 12 = max_seq_len 512: %s", e.msg);
	a.max_tokens = 13;
	n = proto_encode_submit(fbuf, sizeof(fbuf), 1, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_SUBMIT, 0, 1, &f) &&
	            proto_decode_submit(f.payload, f.h.length, f.h.flags, &lim_ids, &s, &e) == -E_RANGE,
	        "prompt 500 + max_tokens 13 > 512");
	T_HAS(e.msg, "max_tokens = 13");
	T_HAS(e.msg, "accepted 1..12");
	a.n_prompt = 511;
	a.max_tokens = 1;
	n = proto_encode_submit(fbuf, sizeof(fbuf), 1, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_SUBMIT, 0, 1, &f) &&
	            proto_decode_submit(f.payload, f.h.length, f.h.flags, &lim_ids, &s, &e) == 0,
	        "prompt 511 + 1 token: %s", e.msg);
}

static void test_tokens_roundtrip(void)
{
	struct proto_frame f;
	struct ts_err e = {0};
	struct proto_tokens t;
	int32_t ids[] = {0, 7, 999}, top_ids[] = {0, 1, 7, 8, 999, 998};
	float lp[] = {-0.5f, 0.25f, NAN}, top_lp[] = {-0.5f, -1.0f, -0.0f, -(float)INFINITY, -3.0f, -4.0f};
	struct proto_tokens_args a = {.ids = ids, .n = 3};
	int n = proto_encode_tokens(fbuf, sizeof(fbuf), 9, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_TOKENS, 0, 9, &f) &&
	            proto_decode_tokens(f.payload, f.h.length, f.h.flags, &lim_ids, &t, &e) == 0,
	        "plain TOKENS: %s", e.msg);
	T_CHECK(t.ids.n == 3 && proto_u32s_at(&t.ids, 2) == 999 && t.lp_raw == NULL && t.text.s == NULL,
	        "plain TOKENS fields");
	T_CHECK((uint64_t)n == proto_tokens_size(3, 0, 0, 0, 0), "proto_tokens_size, plain");

	a.logprob = lp;
	a.top_n = 2;
	a.top_ids = top_ids;
	a.top_logprob = top_lp;
	a.text = (struct proto_str){"x\xc3\xa9", 3};
	n = proto_encode_tokens(fbuf, sizeof(fbuf), 9, &a);
	T_CHECK(frame_ok(fbuf, n, PROTO_TOKENS, PROTO_TOKENS_HAS_LOGPROBS | PROTO_TOKENS_HAS_TEXT, 9, &f) &&
	            proto_decode_tokens(f.payload, f.h.length, f.h.flags, &lim_text, &t, &e) == 0,
	        "TOKENS with logprobs and text: %s", e.msg);
	T_CHECK((uint64_t)n == proto_tokens_size(3, 1, 2, 1, 3), "proto_tokens_size, full");
	float l;
	T_CHECK(t.top_n == 2 && f32_same(proto_tokens_logprob(&t, 0), -0.5f) &&
	            f32_same(proto_tokens_logprob(&t, 1), 0.0f) && proto_tokens_logprob(&t, 2) == -(float)INFINITY,
	        "logprobs: a positive one is sent as 0, NaN as -inf");
	T_CHECK(proto_tokens_top(&t, 1, 1, &l) == 8 && l == -(float)INFINITY && proto_tokens_top(&t, 2, 0, &l) == 999 &&
	            f32_same(l, -3.0f) && proto_tokens_top(&t, 1, 0, &l) == 7 && f32_same(l, -0.0f),
	        "top alternatives");
	T_CHECK(str_is(t.text, "x\xc3\xa9"), "text");

	/* text only (held-back bytes flushed): n = 0 */
	struct proto_tokens_args b = {.n = 0, .text = {"!", 1}};
	n = proto_encode_tokens(fbuf, sizeof(fbuf), 9, &b);
	T_CHECK(frame_ok(fbuf, n, PROTO_TOKENS, PROTO_TOKENS_HAS_TEXT, 9, &f) &&
	            proto_decode_tokens(f.payload, f.h.length, f.h.flags, &lim_text, &t, &e) == 0 && t.ids.n == 0,
	        "TOKENS with text only: %s", e.msg);
	/* a huge n is refused by size before any id is read */
	struct proto_tokens_args c = {.ids = NULL, .n = 0x40000000};
	T_CHECK(proto_encode_tokens(fbuf, sizeof(fbuf), 9, &c) == -E_NOSPACE, "huge n: NOSPACE");
}

static void test_small_messages(void)
{
	struct proto_frame f;
	struct ts_err e = {0};
	struct proto_done d = {PROTO_DONE_SESSION_KEPT, PROTO_FINISH_STOP, 500, 499, 12, 1, UINT64_MAX, 3}, dd;
	int n = proto_encode_done(fbuf, sizeof(fbuf), 3, &d);
	T_CHECK(frame_ok(fbuf, n, PROTO_DONE, PROTO_DONE_SESSION_KEPT, 3, &f) &&
	            proto_decode_done(f.payload, f.h.length, f.h.flags, &lim_ids, &dd, &e) == 0 &&
	            dd.flags == d.flags && dd.finish == d.finish && dd.n_prompt == 500 && dd.n_cached == 499 &&
	            dd.n_generated == 12 && dd.queue_us == 1 && dd.ttft_us == UINT64_MAX && dd.decode_us == 3 &&
	            n == 16 + 40,
	        "DONE round trip: %s", e.msg);

	struct proto_error er;
	n = proto_encode_error(fbuf, sizeof(fbuf), 3, PROTO_ERR_BUSY, "queue full");
	T_CHECK(frame_ok(fbuf, n, PROTO_ERROR, PROTO_ERROR_RETRYABLE, 3, &f) &&
	            proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e) == 0 && er.code == PROTO_ERR_BUSY &&
	            er.retryable && str_is(er.msg, "queue full"),
	        "ERROR BUSY is retryable: %s", e.msg);
	n = proto_encode_error(fbuf, sizeof(fbuf), 0, PROTO_ERR_BAD_FRAME, NULL);
	T_CHECK(frame_ok(fbuf, n, PROTO_ERROR, 0, 0, &f) &&
	            proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e) == 0 && !er.retryable &&
	            er.msg.len == 0,
	        "ERROR BAD_FRAME, no message");
	n = proto_encode_error(fbuf, sizeof(fbuf), 5, 4000, "from the future");
	T_CHECK(frame_ok(fbuf, n, PROTO_ERROR, 0, 5, &f) &&
	            proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e) == 0 && er.code == 4000,
	        "an ERROR code we do not know still decodes");
	/* invalid UTF-8 becomes '?'; a long message is cut on a character boundary */
	n = proto_encode_error(fbuf, sizeof(fbuf), 5, PROTO_ERR_BAD_FIELD, "a\xff\xc3(\xe2\x82\xac");
	T_CHECK(frame_ok(fbuf, n, PROTO_ERROR, 0, 5, &f) &&
	            proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e) == 0 &&
	            str_is(er.msg, "a?"
	                           "?(\xe2\x82\xac"),
	        "invalid UTF-8 sanitised: \"%.*s\"", (int)er.msg.len, er.msg.s);
	static char longmsg[3000];
	for (int i = 0; i < 2999; i += 3)
		memcpy(longmsg + i, "\xe2\x82\xac", 3); /* 1023 = 341 * 3: cut exactly */
	longmsg[2999] = 0;
	n = proto_encode_error(fbuf, sizeof(fbuf), 5, PROTO_ERR_INTERNAL, longmsg + 1); /* starts mid-character */
	T_CHECK(frame_ok(fbuf, n, PROTO_ERROR, 0, 5, &f) &&
	            proto_decode_error(f.payload, f.h.length, f.h.flags, &er, &e) == 0 && er.msg.len <= PROTO_MAX_MSG &&
	            er.msg.len >= PROTO_MAX_MSG - 3 && memcmp(er.msg.s, "??\xe2\x82\xac", 5) == 0,
	        "long message cut to %u bytes: %s", er.msg.len, e.msg);

	n = proto_encode_cancel(fbuf, sizeof(fbuf), 12);
	T_CHECK(frame_ok(fbuf, n, PROTO_CANCEL, 0, 12, &f) && f.payload == NULL &&
	            proto_decode_empty(f.payload, f.h.length, f.h.flags, "CANCEL", &e) == 0 && n == 16,
	        "CANCEL");
	uint32_t credit = 0;
	n = proto_encode_credit(fbuf, sizeof(fbuf), 12, 4096);
	T_CHECK(frame_ok(fbuf, n, PROTO_CREDIT, 0, 12, &f) &&
	            proto_decode_credit(f.payload, f.h.length, f.h.flags, &credit, &e) == 0 && credit == 4096,
	        "CREDIT");
	uint64_t v = 0;
	n = proto_encode_ping(fbuf, sizeof(fbuf), 0x1122334455667788ull);
	T_CHECK(frame_ok(fbuf, n, PROTO_PING, 0, 0, &f) &&
	            proto_decode_ping(f.payload, f.h.length, f.h.flags, &v, &e) == 0 && v == 0x1122334455667788ull,
	        "PING");
	n = proto_encode_pong(fbuf, sizeof(fbuf), 5);
	T_CHECK(frame_ok(fbuf, n, PROTO_PONG, 0, 0, &f) &&
	            proto_decode_ping(f.payload, f.h.length, f.h.flags, &v, &e) == 0 && v == 5,
	        "PONG");
	n = proto_encode_stats_req(fbuf, sizeof(fbuf));
	T_CHECK(frame_ok(fbuf, n, PROTO_STATS, 0, 0, &f) &&
	            proto_decode_empty(f.payload, f.h.length, f.h.flags, "STATS", &e) == 0,
	        "STATS request");
	struct proto_stat kv[] = {{PROTO_STAT_KV_BLOCKS, 4096}, {999, UINT64_MAX}}, k;
	struct proto_stats st;
	n = proto_encode_stats(fbuf, sizeof(fbuf), kv, 2);
	T_CHECK(frame_ok(fbuf, n, PROTO_STATS, 0, 0, &f) &&
	            proto_decode_stats(f.payload, f.h.length, f.h.flags, &st, &e) == 0 && st.n == 2,
	        "STATS reply: %s", e.msg);
	proto_stats_at(&st, 1, &k);
	T_CHECK(k.key == 999 && k.value == UINT64_MAX, "STATS pairs, unknown key kept");
	struct proto_goaway g;
	n = proto_encode_goaway(fbuf, sizeof(fbuf), 30000, "restart");
	T_CHECK(frame_ok(fbuf, n, PROTO_GOAWAY, 0, 0, &f) &&
	            proto_decode_goaway(f.payload, f.h.length, f.h.flags, &g, &e) == 0 && g.drain_ms == 30000 &&
	            str_is(g.msg, "restart"),
	        "GOAWAY");
}

/* Every encoder: -E_NOSPACE for a buffer one byte short, the frame for an
 * exact one. */
static void test_nospace(void)
{
	size_t n = fuzz_proto_seed(fbuf, sizeof(fbuf)), off = 0;
	int types = 0;
	while (off < n) {
		struct proto_hdr h;
		proto_hdr_decode(fbuf + off, &h);
		size_t len = PROTO_HDR_BYTES + h.length;
		/* re-encode this frame by decoding it with the fuzz round trip's
		 * machinery: the encoders must fail short and succeed exact */
		static uint8_t out[70000];
		struct proto_frame f = {h, h.length ? fbuf + off + PROTO_HDR_BYTES : NULL};
		int rc = -1;
		for (size_t cap = len - 1; cap <= len; cap++) {
			struct ts_err e = {0};
			const struct proto_limits *lim =
			    (h.request_id & 1) ? &fuzz_proto_lim_text : &fuzz_proto_lim_ids;
			switch (h.type) {
			case PROTO_HELLO: {
				struct proto_hello x;
				proto_decode_hello(f.payload, h.length, h.flags, &x, &e);
				rc = proto_encode_hello(out, cap, &x);
				break;
			}
			case PROTO_WELCOME: {
				struct proto_welcome x;
				proto_decode_welcome(f.payload, h.length, h.flags, &x, &e);
				rc = proto_encode_welcome(out, cap, &x);
				break;
			}
			case PROTO_SUBMIT: {
				struct proto_submit x;
				int32_t p[8], s[8];
				struct proto_chat_msg msgs[8];
				proto_decode_submit(f.payload, h.length, h.flags, lim, &x, &e);
				proto_u32s_copy(&x.prompt, p);
				proto_u32s_copy(&x.stop_ids, s);
				struct proto_submit_args a = {x.flags,
				                              x.max_tokens,
				                              x.priority,
				                              x.samp,
				                              x.session_id,
				                              x.top_logprobs,
				                              p,
				                              x.prompt.n,
				                              s,
				                              x.stop_ids.n,
				                              x.prompt_text,
				                              x.stop_seqs,
				                              x.n_stop_seqs,
				                              msgs,
				                              x.chat.n};
				for (uint32_t i = 0, o = 0; i < x.chat.n && i < 8; i++)
					proto_chat_next(&x.chat, &o, &msgs[i]);
				rc = proto_encode_submit(out, cap, h.request_id, &a);
				break;
			}
			case PROTO_TOKENS: {
				int32_t ids[] = {5, 6}, top_ids[] = {5, 9, 6, 8};
				float lp[] = {-0.1f, -2.5f}, top_lp[] = {-0.1f, -3.0f, -2.5f, -(float)INFINITY};
				struct proto_tokens_args t = {ids, 2, lp, 2, top_ids, top_lp, {"ab", 2}};
				rc = proto_encode_tokens(out, cap, h.request_id, &t);
				break;
			}
			case PROTO_DONE: {
				struct proto_done x;
				proto_decode_done(f.payload, h.length, h.flags, lim, &x, &e);
				rc = proto_encode_done(out, cap, h.request_id, &x);
				break;
			}
			case PROTO_ERROR:
				rc = proto_encode_error(out, cap, h.request_id, PROTO_ERR_BUSY,
				                        "queue full (7 waiting): retry later");
				break;
			case PROTO_CANCEL:
				rc = proto_encode_cancel(out, cap, h.request_id);
				break;
			case PROTO_CREDIT:
				rc = proto_encode_credit(out, cap, h.request_id, 64);
				break;
			case PROTO_PING:
				rc = proto_encode_ping(out, cap, 0x0123456789abcdefull);
				break;
			case PROTO_PONG:
				rc = proto_encode_pong(out, cap, 0x0123456789abcdefull);
				break;
			case PROTO_STATS:
				if (h.length == 0) {
					rc = proto_encode_stats_req(out, cap);
				} else {
					struct proto_stat kv[] = {{PROTO_STAT_UPTIME_MS, 123456},
					                          {PROTO_STAT_GENERATED_TOKENS, 1ull << 40}};
					rc = proto_encode_stats(out, cap, kv, 2);
				}
				break;
			case PROTO_GOAWAY:
				rc = proto_encode_goaway(out, cap, 5000, "shutting down for a new model");
				break;
			}
			if (cap < len)
				T_CHECK(rc == -E_NOSPACE, "%s into %zu bytes: %d, want NOSPACE",
				        proto_type_name(h.type), cap, rc);
			else
				T_CHECK(rc == (int)len && memcmp(out, fbuf + off, len) == 0, "%s into %zu bytes: %d",
				        proto_type_name(h.type), cap, rc);
		}
		types |= 1 << h.type;
		off += len;
	}
	T_CHECK(types == ((1 << PROTO_TYPE_END) - 2), "the seed holds every type (mask 0x%x)", types);
	T_CHECK(proto_encode_cancel(NULL, 100, 1) == -E_NOSPACE && proto_encode_ping(fbuf, 15, 0) == -E_NOSPACE,
	        "NULL or tiny buffers");
}

/* ---------------------------------------------------------------- the reader */

struct seen {
	struct proto_hdr h[64];
	uint8_t payload[64][512];
	int n;
	int in_input; /* frames whose payload pointed into the input */
};

/* Feeds stream[0..n) in chunks from next_chunk; collects frames. */
static int feed_all(const uint8_t *stream, size_t n, uint64_t seed, struct seen *s)
{
	struct proto_reader r;
	proto_reader_init(&r, rbuf, sizeof(rbuf));
	memset(s, 0, sizeof(*s));
	size_t off = 0;
	while (off < n) {
		size_t chunk = n - off;
		if (seed == 1) {
			chunk = 1;
		} else if (seed) {
			seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
			chunk = TS_MIN(chunk, 1 + (size_t)(seed % 100));
		}
		const uint8_t *c = stream + off;
		size_t left = chunk;
		while (left) {
			struct proto_frame f;
			struct ts_err e = {0};
			size_t used;
			int rc = proto_reader_feed(&r, c, left, &used, &f, &e);
			c += used;
			left -= used;
			off += used;
			if (rc == PROTO_AGAIN)
				break;
			if (rc != PROTO_FRAME || s->n == 64 || f.h.length > 512)
				return -1;
			if (s->n == 0)
				proto_reader_limit(&r, 65536, PROTO_VERSION);
			s->h[s->n] = f.h;
			if (f.h.length)
				memcpy(s->payload[s->n], f.payload, f.h.length);
			s->in_input += f.payload >= stream && f.payload < stream + n;
			s->n++;
		}
	}
	return r.state == PROTO_READER_HEADER && r.got == 0 ? 0 : -2;
}

static void test_reader_chunks(void)
{
	static uint8_t stream[8192];
	size_t n = fuzz_proto_seed(stream, sizeof(stream));
	static struct seen whole, bytes, chunks;
	T_CHECK(feed_all(stream, n, 0, &whole) == 0 && whole.n == 15, "whole stream: %d frames", whole.n);
	T_CHECK(whole.in_input == whole.n - 2,
	        "payloads point into the input when they came whole (%d of %d; CANCEL and the STATS request are empty)",
	        whole.in_input, whole.n);
	T_CHECK(feed_all(stream, n, 1, &bytes) == 0 && bytes.n == whole.n && bytes.in_input == 0,
	        "byte by byte: %d frames", bytes.n);
	T_CHECK(memcmp(&whole.h, &bytes.h, sizeof(whole.h)) == 0 &&
	            memcmp(&whole.payload, &bytes.payload, sizeof(whole.payload)) == 0,
	        "byte by byte gives the same frames");
	int same = 1;
	for (uint64_t seed = 2; seed < 202; seed++) {
		int rc = feed_all(stream, n, seed * 0x9e3779b97f4a7c15ull, &chunks);
		same &= rc == 0 && chunks.n == whole.n && memcmp(&whole.h, &chunks.h, sizeof(whole.h)) == 0 &&
		        memcmp(&whole.payload, &chunks.payload, sizeof(whole.payload)) == 0;
	}
	T_CHECK(same, "200 random chunkings give the same frames");
	T_CHECK(fuzz_proto_one(stream, n) == 1, "the fuzz target accepts its seed");

	/* a frame missing its last byte waits; the byte completes it */
	struct proto_reader r;
	struct proto_frame f;
	size_t used;
	int len = proto_encode_credit(fbuf, sizeof(fbuf), 1, 5);
	proto_reader_init(&r, rbuf, sizeof(rbuf));
	T_CHECK(proto_reader_feed(&r, fbuf, (size_t)len - 1, &used, &f, NULL) == PROTO_AGAIN &&
	            used == (size_t)len - 1 && r.n_frames == 0 && r.state == PROTO_READER_PAYLOAD,
	        "truncated frame: AGAIN");
	T_CHECK(proto_reader_feed(&r, fbuf + len - 1, 1, &used, &f, NULL) == PROTO_FRAME && used == 1 &&
	            f.h.type == PROTO_CREDIT && proto_get_u32(f.payload) == 5,
	        "last byte completes it");
	T_CHECK(proto_reader_feed(&r, NULL, 0, &used, &f, NULL) == PROTO_AGAIN && used == 0, "empty input: AGAIN");
	T_CHECK(strcmp(proto_reader_state_name(r.state), "HEADER") == 0, "state names");
}

/* A header with the given fields, fed alone to a reader in the given regime. */
static int feed_header(uint32_t length, uint16_t magic, uint8_t version, int handshake, struct proto_reader *r,
                       struct ts_err *e, size_t *used)
{
	uint8_t b[PROTO_HDR_BYTES];
	struct proto_frame f;
	struct proto_hdr h = {length, magic, version, PROTO_SUBMIT, 0, 1};
	proto_hdr_encode(b, &h);
	proto_reader_init(r, rbuf, sizeof(rbuf));
	if (!handshake)
		proto_reader_limit(r, 65536, PROTO_VERSION);
	int rc = proto_reader_feed(r, b, 15, used, &f, e);
	if (rc != PROTO_AGAIN)
		return -1000; /* nothing is decided before the header is whole */
	size_t u2;
	rc = proto_reader_feed(r, b + 15, 1, &u2, &f, e);
	*used += u2;
	return rc;
}

static void test_reader_errors(void)
{
	struct proto_reader r;
	struct proto_frame f;
	struct ts_err e = {0};
	size_t used;
	int rc = feed_header(0, 0x5453, 1, 0, &r, &e, &used);
	T_CHECK(rc == -E_FORMAT && r.err == PROTO_ERR_BAD_FRAME && used == 16, "bad magic: %d err %u", rc, r.err);
	T_HAS(e.msg, "magic 0x5453");
	T_CHECK(proto_err_info(r.err)->closes, "bad magic closes");

	proto_reader_init(&r, rbuf, sizeof(rbuf));
	rc = proto_reader_feed(&r, (const uint8_t *)"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &used, &f, &e);
	T_CHECK(rc == -E_FORMAT && r.err == PROTO_ERR_BAD_FRAME && used == 16,
	        "an HTTP request is a bad magic, not a huge length");

	rc = feed_header(0, PROTO_MAGIC, 2, 1, &r, &e, &used);
	T_CHECK(rc == -E_UNSUPPORTED && r.err == PROTO_ERR_UNSUPPORTED_VERSION, "version 2 before the handshake");
	T_HAS(e.msg, "version 2");
	rc = feed_header(0, PROTO_MAGIC, 0, 0, &r, &e, &used);
	T_CHECK(rc == -E_UNSUPPORTED && r.err == PROTO_ERR_UNSUPPORTED_VERSION, "version 0 after it");

	/* the max frame: 4096 until WELCOME, then the agreed one; whole frame */
	rc = feed_header(4096 - 16, PROTO_MAGIC, 1, 1, &r, &e, &used);
	T_CHECK(rc == PROTO_AGAIN && r.state == PROTO_READER_PAYLOAD,
	        "handshake: a frame of exactly 4096 bytes passes");
	rc = feed_header(4096 - 15, PROTO_MAGIC, 1, 1, &r, &e, &used);
	T_CHECK(rc == -E_RANGE && r.err == PROTO_ERR_FRAME_TOO_LARGE && used == 16 && r.got == 0,
	        "handshake: 4097 bytes refused when the header completes, nothing of the payload held");
	T_HAS(e.msg, "4097");
	rc = feed_header(65536 - 16, PROTO_MAGIC, 1, 0, &r, &e, &used);
	T_CHECK(rc == PROTO_AGAIN, "a frame of exactly the max frame (65536) passes the header");
	rc = feed_header(65536 - 15, PROTO_MAGIC, 1, 0, &r, &e, &used);
	T_CHECK(rc == -E_RANGE && r.err == PROTO_ERR_FRAME_TOO_LARGE, "one byte over the max frame fails");
	rc = feed_header(UINT32_MAX, PROTO_MAGIC, 1, 0, &r, &e, &used);
	T_CHECK(rc == -E_RANGE && r.err == PROTO_ERR_FRAME_TOO_LARGE, "length 2^32-1: no wrap");

	/* a whole frame of exactly the max passes, data intact */
	static uint8_t big[65536 + 16];
	struct proto_hdr h = {65536 - 16, PROTO_MAGIC, 1, PROTO_SUBMIT, 0, 1};
	proto_hdr_encode(big, &h);
	for (int i = 16; i < 65536; i++)
		big[i] = (uint8_t)i;
	for (int whole = 0; whole < 2; whole++) {
		proto_reader_init(&r, rbuf, sizeof(rbuf));
		proto_reader_limit(&r, 65536, 1);
		size_t off = 0;
		rc = PROTO_AGAIN;
		while (off < 65536 && rc == PROTO_AGAIN) {
			size_t chunk = whole ? 65536 : TS_MIN((size_t)1000, 65536 - off);
			rc = proto_reader_feed(&r, big + off, chunk, &used, &f, &e);
			off += used;
		}
		T_CHECK(rc == PROTO_FRAME && off == 65536 && f.h.length == 65520 &&
		            memcmp(f.payload, big + 16, 65520) == 0,
		        "frame of exactly 65536 bytes read %s", whole ? "whole" : "in chunks");
	}
	h.length++;
	proto_hdr_encode(big, &h);
	proto_reader_init(&r, rbuf, sizeof(rbuf));
	proto_reader_limit(&r, 65536, 1);
	T_CHECK(proto_reader_feed(&r, big, sizeof(big), &used, &f, &e) == -E_RANGE && used == 16,
	        "65537 bytes: refused after the header");

	/* a failed reader keeps failing, even on a good frame */
	int len = proto_encode_cancel(fbuf, sizeof(fbuf), 1);
	T_CHECK(proto_reader_feed(&r, fbuf, (size_t)len, &used, &f, &e) == -E_RANGE &&
	            r.err == PROTO_ERR_FRAME_TOO_LARGE,
	        "failed stays failed");
	T_HAS(e.msg, "failed earlier");

	/* limits the reader refuses */
	uint8_t small[100];
	T_CHECK(proto_reader_init(&r, small, sizeof(small)) == -E_INVAL, "init: buffer under 4080 bytes");
	proto_reader_init(&r, rbuf, 8000);
	T_CHECK(proto_reader_limit(&r, 65536, 1) == -E_INVAL && proto_reader_limit(&r, 8016, 1) == 0 &&
	            proto_reader_limit(&r, 8017, 1) == -E_INVAL && proto_reader_limit(&r, 4095, 1) == -E_INVAL &&
	            proto_reader_limit(&r, PROTO_MAX_FRAME + 1, 1) == -E_INVAL,
	        "limit: within the buffer and [4096, 16 MiB]");
}

static void test_hdr_check(void)
{
	struct ts_err e = {0};
	uint32_t code = 99;
	struct proto_hdr h = {0, PROTO_MAGIC, 1, 0, 0, 1};
	static const uint8_t unknown[] = {0, 13, 99, 255};
	for (size_t i = 0; i < sizeof(unknown); i++) {
		h.type = unknown[i];
		T_CHECK(proto_hdr_check(&h, PROTO_TO_SERVER, &code, &e) == -E_UNSUPPORTED &&
		            code == PROTO_ERR_UNKNOWN_TYPE && !proto_err_info(code)->closes,
		        "type %u unknown to the server", h.type);
		T_CHECK(proto_hdr_check(&h, PROTO_TO_CLIENT, &code, &e) == -E_UNSUPPORTED &&
		            code == PROTO_ERR_UNKNOWN_TYPE,
		        "type %u unknown to the client", h.type);
	}
	T_HAS(e.msg, "type 255");
	static const uint8_t server_only[] = {PROTO_HELLO, PROTO_SUBMIT, PROTO_CANCEL, PROTO_CREDIT};
	static const uint8_t client_only[] = {PROTO_WELCOME, PROTO_TOKENS, PROTO_DONE, PROTO_ERROR, PROTO_GOAWAY};
	for (size_t i = 0; i < sizeof(server_only); i++) {
		h.type = server_only[i];
		h.request_id = h.type == PROTO_HELLO ? 0 : 4;
		T_CHECK(proto_hdr_check(&h, PROTO_TO_SERVER, &code, &e) == 0 && code == 0, "%s to the server",
		        proto_type_name(h.type));
		T_CHECK(proto_hdr_check(&h, PROTO_TO_CLIENT, &code, &e) < 0 && code == PROTO_ERR_UNKNOWN_TYPE,
		        "%s to the client is an unknown type", proto_type_name(h.type));
	}
	for (size_t i = 0; i < sizeof(client_only); i++) {
		h.type = client_only[i];
		h.request_id = h.type == PROTO_WELCOME || h.type == PROTO_GOAWAY ? 0 : 4;
		T_CHECK(proto_hdr_check(&h, PROTO_TO_CLIENT, &code, &e) == 0, "%s to the client",
		        proto_type_name(h.type));
		T_CHECK(proto_hdr_check(&h, PROTO_TO_SERVER, &code, &e) < 0 && code == PROTO_ERR_UNKNOWN_TYPE,
		        "%s to the server is an unknown type", proto_type_name(h.type));
	}
	h.type = PROTO_ERROR;
	h.request_id = 0;
	T_CHECK(proto_hdr_check(&h, PROTO_TO_CLIENT, &code, &e) == 0, "ERROR with id 0");
	h.type = PROTO_SUBMIT;
	T_CHECK(proto_hdr_check(&h, PROTO_TO_SERVER, &code, &e) == -E_FORMAT && code == PROTO_ERR_PROTOCOL &&
	            proto_err_info(code)->closes,
	        "SUBMIT with id 0: PROTOCOL, close");
	T_HAS(e.msg, "SUBMIT with request id 0");
	h.type = PROTO_PING;
	h.request_id = 3;
	T_CHECK(proto_hdr_check(&h, PROTO_TO_SERVER, &code, &e) == -E_FORMAT && code == PROTO_ERR_PROTOCOL,
	        "PING with id 3: PROTOCOL");
	h.type = PROTO_STATS;
	h.request_id = 0;
	T_CHECK(proto_hdr_check(&h, PROTO_TO_SERVER, &code, &e) == 0 &&
	            proto_hdr_check(&h, PROTO_TO_CLIENT, &code, &e) == 0,
	        "STATS both ways");
}

/* ---------------------------------------------------------------- invalid fields */

/* Encodes a, decodes it with l, and checks the result and message. */
static void submit_expect(const struct proto_submit_args *a, const struct proto_limits *l, int want, const char *needle,
                          const char *what, int line)
{
	struct proto_submit s;
	struct ts_err e = {0};
	int n = proto_encode_submit(fbuf, sizeof(fbuf), 1, a);
	int rc = n > 0 ? proto_decode_submit(fbuf + 16, (uint32_t)n - 16, a->flags, l, &s, &e) : n;
	T_CHECK(rc == want, "line %d, %s: rc %d, want %d (%s)", line, what, rc, want, e.msg);
	if (want < 0) {
		T_HAS(e.msg, needle);
		T_CHECK(proto_decode_err(rc) == (want == -E_UNSUPPORTED ? PROTO_ERR_UNSUPPORTED : PROTO_ERR_BAD_FIELD),
		        "line %d: wire code", line);
	}
}
#define SUBMIT_EXPECT(lim, want, needle, ...)                                                                          \
	do {                                                                                                           \
		struct proto_submit_args a = submit_base();                                                            \
		__VA_ARGS__;                                                                                           \
		submit_expect(&a, &(lim), want, needle, #__VA_ARGS__, __LINE__);                                       \
	} while (0)

static void test_submit_invalid(void)
{
	static const int32_t bad_vocab[] = {1, 1000, 3}, neg[] = {-1}, stop_big[] = {4, 1000};
	static int32_t many[20];
	struct proto_str s_ok[] = {{"ab", 2}}, s_empty[] = {{"", 0}},
	                 s_long[] = {{"0123456789012345678901234567890123456789", 33}}, s_bad[] = {{"a\xc0\x80", 3}},
	                 five[] = {{"a", 1}, {"b", 1}, {"c", 1}, {"d", 1}, {"e", 1}};
	SUBMIT_EXPECT(lim_ids, 0, "", (void)0);
	SUBMIT_EXPECT(lim_ids, -E_INVAL, "unknown bits 0x80", a.flags = 0x80);
	SUBMIT_EXPECT(lim_ids, -E_INVAL, "unknown bits 0x80000000", a.flags = 0x80000000u);
	SUBMIT_EXPECT(lim_ids, -E_INVAL, "KEEP_SESSION needs HAS_SESSION", a.flags = PROTO_SUBMIT_KEEP_SESSION);
	SUBMIT_EXPECT(lim_ids, -E_INVAL, "session_id = 0", a.flags = PROTO_SUBMIT_HAS_SESSION);
	SUBMIT_EXPECT(lim_ids, -E_INVAL, "session_id = 5", a.session_id = 5);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "prompt[1] = 1000", a.prompt = bad_vocab);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "prompt[0] = 4294967295", a.prompt = neg, a.n_prompt = 1);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "stop_ids[1] = 1000", a.stop_ids = stop_big);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "n_prompt = 0", a.n_prompt = 0);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "n_stop_ids = 17", a.stop_ids = many, a.n_stop_ids = 17);
	SUBMIT_EXPECT(lim_ids, 0, "", a.stop_ids = many, a.n_stop_ids = 16);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "max_tokens = 0", a.max_tokens = 0);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "max_tokens = 257", a.max_tokens = 257);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "max_tokens = 4294967295", a.max_tokens = UINT32_MAX);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "priority = 4", a.priority = 4);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "SUBMIT temperature = nan", a.samp.temperature = NAN);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "temperature = -1", a.samp.temperature = -1.0f);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "temperature = inf", a.samp.temperature = INFINITY);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "top_k = 1001", a.samp.top_k = 1001);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "top_k = 4294967295", a.samp.top_k = -1);
	SUBMIT_EXPECT(lim_ids, 0, "", a.samp.top_k = 1000);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "top_p = 0", a.samp.top_p = 0.0f);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "top_p = 1.5", a.samp.top_p = 1.5f);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "min_p = 1", a.samp.min_p = 1.0f);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "repetition_penalty = 0", a.samp.repetition_penalty = 0.0f);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "presence_penalty = -2.5", a.samp.presence_penalty = -2.5f);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "frequency_penalty = nan", a.samp.frequency_penalty = NAN);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "top_logprobs = 1", a.top_logprobs = 1);
	SUBMIT_EXPECT(lim_ids, -E_RANGE, "top_logprobs = 6", a.flags = PROTO_SUBMIT_WANT_LOGPROBS, a.top_logprobs = 6);
	SUBMIT_EXPECT(lim_ids, 0, "", a.flags = PROTO_SUBMIT_WANT_LOGPROBS, a.top_logprobs = 5);
	{
		struct proto_limits nolp = lim_ids;
		nolp.max_logprobs = 0;
		SUBMIT_EXPECT(nolp, -E_UNSUPPORTED, "WANT_LOGPROBS: this server computes no logprobs",
		              a.flags = PROTO_SUBMIT_WANT_LOGPROBS);
	}
	/* text fields without a tokenizer: UNSUPPORTED */
	SUBMIT_EXPECT(lim_ids, -E_UNSUPPORTED, "TEXT_PROMPT needs a tokenizer", a.flags = PROTO_SUBMIT_TEXT_PROMPT,
	              a.n_prompt = 0, a.prompt_text = s_ok[0]);
	SUBMIT_EXPECT(lim_ids, -E_UNSUPPORTED, "WANT_TEXT needs a tokenizer", a.flags = PROTO_SUBMIT_WANT_TEXT);
	SUBMIT_EXPECT(lim_ids, -E_UNSUPPORTED, "stop sequences need a tokenizer", a.stop_seqs = s_ok,
	              a.n_stop_seqs = 1);
	/* text fields with one */
	SUBMIT_EXPECT(lim_text, 0, "", a.flags = PROTO_SUBMIT_TEXT_PROMPT, a.n_prompt = 0, a.prompt_text = s_ok[0]);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "n_prompt = 3: must be 0 with TEXT_PROMPT",
	              a.flags = PROTO_SUBMIT_TEXT_PROMPT, a.prompt_text = s_ok[0]);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "prompt_text: empty", a.flags = PROTO_SUBMIT_TEXT_PROMPT, a.n_prompt = 0);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "prompt_text: 2 bytes, at most 0", a.prompt_text = s_ok[0]);
	SUBMIT_EXPECT(lim_text, -E_FORMAT, "prompt_text: not valid UTF-8 at byte 1 (0xc0)",
	              a.flags = PROTO_SUBMIT_TEXT_PROMPT, a.n_prompt = 0, a.prompt_text = s_bad[0]);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "max_tokens = 512", a.flags = PROTO_SUBMIT_TEXT_PROMPT, a.n_prompt = 0,
	              a.prompt_text = s_ok[0], a.max_tokens = 512);
	SUBMIT_EXPECT(lim_text, 0, "", a.stop_seqs = five, a.n_stop_seqs = 4);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "n_stop_seqs = 5: at most 4", a.stop_seqs = five, a.n_stop_seqs = 5);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "stop_seqs[0]: empty", a.stop_seqs = s_empty, a.n_stop_seqs = 1);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "stop_seqs: 33 bytes, at most 32", a.stop_seqs = s_long, a.n_stop_seqs = 1);
	SUBMIT_EXPECT(lim_text, -E_FORMAT, "stop_seqs: not valid UTF-8", a.stop_seqs = s_bad, a.n_stop_seqs = 1);
	/* chat messages */
	struct proto_chat_msg m_ok[] = {{PROTO_ROLE_SYSTEM, {"ab", 2}}, {PROTO_ROLE_USER, {"", 0}},
	                                {PROTO_ROLE_ASSISTANT, {"c", 1}}, {PROTO_ROLE_TOOL, {"de", 2}}},
	                      m_role[] = {{PROTO_ROLE_USER, {"a", 1}}, {5, {"b", 1}}},
	                      m_bad[] = {{PROTO_ROLE_USER, {"a\xc0\x80", 3}}};
	static char big[1100];
	memset(big, 'x', sizeof(big));
	struct proto_chat_msg m_big[] = {{PROTO_ROLE_USER, {big, 600}}, {PROTO_ROLE_USER, {big, 600}}},
	                      m_huge[] = {{PROTO_ROLE_USER, {big, 1025}}};
#define CHAT_ARGS(ms, nm) a.flags = PROTO_SUBMIT_CHAT, a.n_prompt = 0, a.msgs = ms, a.n_msgs = nm
	SUBMIT_EXPECT(lim_text, 0, "", CHAT_ARGS(m_ok, 4));
	SUBMIT_EXPECT(lim_ids, -E_UNSUPPORTED, "CHAT needs a tokenizer", CHAT_ARGS(m_ok, 4));
	SUBMIT_EXPECT(lim_text, -E_INVAL, "TEXT_PROMPT and CHAT exclude each other", CHAT_ARGS(m_ok, 4),
	              a.flags |= PROTO_SUBMIT_TEXT_PROMPT, a.prompt_text = s_ok[0]);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "n_prompt = 3: must be 0 with CHAT", CHAT_ARGS(m_ok, 4), a.n_prompt = 3);
	SUBMIT_EXPECT(lim_text, -E_RANGE, "n_messages = 0: out of range (accepted 1..4096)", CHAT_ARGS(m_ok, 0));
	SUBMIT_EXPECT(lim_text, -E_RANGE, "messages[1] role = 5: out of range", CHAT_ARGS(m_role, 2));
	SUBMIT_EXPECT(lim_text, -E_FORMAT, "messages content: not valid UTF-8 at byte 1", CHAT_ARGS(m_bad, 1));
	SUBMIT_EXPECT(lim_text, -E_RANGE, "prompt_text: 2 bytes, at most 0", CHAT_ARGS(m_ok, 4),
	              a.prompt_text = s_ok[0]);
	SUBMIT_EXPECT(lim_text, 0, "", CHAT_ARGS(m_big, 1));
	SUBMIT_EXPECT(lim_text, -E_RANGE, "messages: more than max_text_bytes = 1024 bytes", CHAT_ARGS(m_big, 2));
	SUBMIT_EXPECT(lim_text, -E_RANGE, "messages content: 1025 bytes, at most 1024", CHAT_ARGS(m_huge, 1));
#undef CHAT_ARGS

	/* other invalid UTF-8: surrogate, overlong 3-byte, cut sequence, above U+10FFFF, stray continuation */
	static const char *const bad_utf8[] = {"\xed\xa0\x80", "\xe0\x80\xaf",     "\xe2\x82", "\xf4\x90\x80\x80",
	                                       "\x80",         "\xf5\x80\x80\x80", "\xc1\xbf"};
	for (size_t i = 0; i < TS_ARRAY_LEN(bad_utf8); i++) {
		struct proto_str bs[] = {{bad_utf8[i], (uint32_t)strlen(bad_utf8[i])}};
		SUBMIT_EXPECT(lim_text, -E_FORMAT, "not valid UTF-8 at byte 0", a.stop_seqs = bs, a.n_stop_seqs = 1);
	}

	/* byte-level damage to a valid SUBMIT */
	struct proto_submit_args a = submit_base();
	struct proto_submit s;
	struct ts_err e = {0};
	a.flags = PROTO_SUBMIT_TEXT_PROMPT | PROTO_SUBMIT_WANT_TEXT;
	a.n_prompt = 0;
	a.prompt_text = s_ok[0];
	a.stop_seqs = s_ok;
	a.n_stop_seqs = 1;
	int n = proto_encode_submit(fbuf, sizeof(fbuf), 1, &a);
	uint32_t len = (uint32_t)n - 16, fl = a.flags;
	uint8_t *p = fbuf + 16;
	T_CHECK(proto_decode_submit(p, len, fl, &lim_text, &s, &e) == 0, "base decodes: %s", e.msg);
	int all_short = 1;
	for (uint32_t l = 0; l < len; l++)
		all_short &= proto_decode_submit(p, l, fl, &lim_text, &s, &e) == -E_FORMAT;
	T_CHECK(all_short, "every truncation of a valid SUBMIT is refused as short");
	T_HAS(e.msg, "stop_seqs: 2 bytes, the payload has 1 left"); /* the last truncation */
	p[len] = 0;
	T_CHECK(proto_decode_submit(p, len + 1, fl, &lim_text, &s, &e) == -E_FORMAT, "a trailing byte");
	T_HAS(e.msg, "1 bytes after the last field");
	/* the prompt text's length field is at 56 + 4 (n_prompt) + 4 (n_stop_ids) + 8 (stop ids) = 72 */
	proto_put_u32(p + 72, 1000);
	T_CHECK(proto_decode_submit(p, len, fl, &lim_text, &s, &e) == -E_FORMAT, "a string length past the end");
	T_HAS(e.msg, "prompt_text: 1000 bytes, the payload has");
	proto_put_u32(p + 72, UINT32_MAX);
	T_CHECK(proto_decode_submit(p, len, fl, &lim_text, &s, &e) == -E_RANGE, "a string length of 2^32-1");
	proto_put_u32(p + 72, 2);
	/* n_stop_seqs (after the 2 text bytes) = 2^32-1 */
	proto_put_u32(p + 78, UINT32_MAX);
	T_CHECK(proto_decode_submit(p, len, fl, &lim_text, &s, &e) == -E_RANGE, "n_stop_seqs 2^32-1");
	T_HAS(e.msg, "n_stop_seqs = 4294967295");

	/* counts that overrun the payload, including ones whose byte size wraps 32 bits */
	a = submit_base();
	n = proto_encode_submit(fbuf, sizeof(fbuf), 1, &a);
	len = (uint32_t)n - 16;
	struct proto_limits huge = lim_ids;
	huge.max_seq_len = INT32_MAX;
	huge.max_tokens = 100;
	huge.max_stop_ids = PROTO_MAX_STOP_IDS;
	proto_put_u32(p + 56, 100);
	T_CHECK(proto_decode_submit(p, len, 0, &huge, &s, &e) == -E_FORMAT, "n_prompt 100 with 3 ids");
	T_HAS(e.msg, "prompt: 100 entries need 400 bytes");
	proto_put_u32(p + 56, 0x40000001);
	T_CHECK(proto_decode_submit(p, len, 0, &huge, &s, &e) == -E_FORMAT, "n_prompt 2^30+1 (4 * n wraps to 4)");
	T_HAS(e.msg, "need 4294967300 bytes");
	proto_put_u32(p + 56, 3);
	proto_put_u32(p + 72, 1000); /* n_stop_ids */
	T_CHECK(proto_decode_submit(p, len, 0, &huge, &s, &e) == -E_FORMAT, "n_stop_ids 1000 with 2 ids");
	proto_put_u32(p + 72, 2);
	T_CHECK(proto_decode_submit(p, len, 0, &huge, &s, &e) == 0, "restored: %s", e.msg);
	T_CHECK(proto_decode_submit(p, 40, 0, &huge, &s, &e) == -E_FORMAT, "fixed part cut");
	T_HAS(e.msg, "SUBMIT seed: needs 8 bytes at offset 36");
}

static void test_other_invalid(void)
{
	struct ts_err e = {0};
	uint8_t p[256];
	memset(p, 0, sizeof(p));
	struct proto_hello h;
	/* HELLO: n_versions, versions, max_frame 4096, client "" */
	proto_put_u32(p, 1);
	proto_put_u32(p + 4, 1);
	proto_put_u32(p + 8, 4096);
	proto_put_u32(p + 12, 0);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == 0, "minimal HELLO: %s", e.msg);
	T_CHECK(proto_decode_hello(p, 16, 1, &h, &e) == -E_INVAL, "HELLO with flags");
	T_CHECK(proto_decode_hello(p, 15, 0, &h, &e) == -E_FORMAT && proto_decode_hello(p, 17, 0, &h, &e) == -E_FORMAT,
	        "HELLO short, long");
	proto_put_u32(p + 8, 4095);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == -E_RANGE, "HELLO max_frame 4095");
	proto_put_u32(p + 8, PROTO_MAX_FRAME + 1);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == -E_RANGE, "HELLO max_frame 16 MiB + 1");
	proto_put_u32(p + 8, 4096);
	proto_put_u32(p + 4, 0);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == -E_RANGE, "HELLO version 0");
	proto_put_u32(p + 4, 256);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == -E_RANGE, "HELLO version 256");
	proto_put_u32(p, 0);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == -E_RANGE, "HELLO without versions");
	proto_put_u32(p, 17);
	T_CHECK(proto_decode_hello(p, 16, 0, &h, &e) == -E_RANGE, "HELLO with 17 versions");
	proto_put_u32(p, 1);
	proto_put_u32(p + 4, 1);
	proto_put_u32(p + 12, 256);
	{
		static uint8_t q[300];
		memcpy(q, p, 16);
		T_CHECK(proto_decode_hello(q, 16 + 256, 0, &h, &e) == -E_RANGE, "HELLO client name of 256 bytes");
		proto_put_u32(q + 12, 255);
		memset(q + 16, 'a', 255);
		T_CHECK(proto_decode_hello(q, 16 + 255, 0, &h, &e) == 0, "HELLO client name of 255 bytes: %s", e.msg);
	}

	/* WELCOME: limits checked */
	struct proto_welcome w = {.version = 1,
	                          .max_requests = 1,
	                          .initial_credit = 1,
	                          .credit_timeout_ms = 1,
	                          .ping_interval_ms = 1,
	                          .idle_timeout_ms = 2,
	                          .lim = lim_text},
	                     x;
	static uint8_t wb[1024];
	struct proto_frame f;
	int n = proto_encode_welcome(wb, sizeof(wb), &w);
	T_CHECK(frame_ok(wb, n, PROTO_WELCOME, 1, 0, &f) &&
	            proto_decode_welcome(wb + 16, (uint32_t)n - 16, 1, &x, &e) == 0,
	        "WELCOME ok: %s", e.msg);
	T_CHECK(proto_decode_welcome(wb + 16, (uint32_t)n - 16, 0, &x, &e) == -E_RANGE,
	        "WELCOME: text limits without the TOKENIZER flag");
	T_HAS(e.msg, "WELCOME max_stop_seqs = 4, max_text_bytes = 1024: both must be 0 without a tokenizer");
	struct {
		int off; /* payload offset of the u32 */
		uint32_t v;
		const char *needle;
	} bad[] = {
	    {0, 0, "version = 0"},
	    {4, 4095, "max_frame = 4095"},
	    {8, 0, "max_requests = 0"},
	    {12, 0, "max_tokens = 0"},
	    {12, 512, "max_tokens = 512"},
	    {16, 0, "vocab = 0"},
	    {16, 0x80000000u, "vocab = 2147483648"},
	    {20, 1, "max_seq_len = 1"},
	    {24, 1025, "max_stop_ids = 1025"},
	    {28, 17, "max_stop_seqs = 17"},
	    {32, 257, "max_stop_seq_bytes = 257"},
	    {36, 65537, "max_text_bytes = 65537"},
	    {40, 21, "max_logprobs = 21"},
	    {44, 0, "initial_credit = 0"},
	    {48, 0, "credit_timeout_ms = 0"},
	    {52, 0, "ping_interval_ms = 0, idle_timeout_ms = 2"},
	    {56, 1, "ping_interval_ms = 1, idle_timeout_ms = 1"},
	};
	for (size_t i = 0; i < TS_ARRAY_LEN(bad); i++) {
		n = proto_encode_welcome(wb, sizeof(wb), &w);
		proto_put_u32(wb + 16 + bad[i].off, bad[i].v);
		T_CHECK(proto_decode_welcome(wb + 16, (uint32_t)n - 16, 1, &x, &e) == -E_RANGE, "WELCOME %s",
		        bad[i].needle);
		T_HAS(e.msg, bad[i].needle);
	}

	/* TOKENS */
	struct proto_tokens t;
	int32_t ids[] = {3, 1000}, top_ids[] = {3, 1000};
	float lp[] = {-1.0f, -1.0f}, top_lp[] = {-1.0f, -2.0f};
	struct proto_tokens_args ta = {.ids = ids, .n = 2};
	n = proto_encode_tokens(wb, sizeof(wb), 1, &ta);
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 0, &lim_ids, &t, &e) == -E_RANGE, "TOKENS id 1000");
	T_HAS(e.msg, "ids[1] = 1000");
	ids[1] = 4;
	ta.logprob = lp;
	ta.top_n = 1;
	ta.top_ids = top_ids;
	ta.top_logprob = top_lp;
	n = proto_encode_tokens(wb, sizeof(wb), 1, &ta);
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 1, &lim_ids, &t, &e) == -E_RANGE, "TOKENS top id 1000");
	T_HAS(e.msg, "top[1][0] id = 1000");
	top_ids[1] = 4;
	n = proto_encode_tokens(wb, sizeof(wb), 1, &ta);
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 1, &lim_ids, &t, &e) == 0, "TOKENS ok: %s", e.msg);
	proto_put_u32(wb + 16 + 16, 0x7fc00000); /* logprob[0] = NaN */
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 1, &lim_ids, &t, &e) == -E_RANGE, "TOKENS logprob NaN");
	proto_put_u32(wb + 16 + 16, 0x3f800000); /* +1 */
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 1, &lim_ids, &t, &e) == -E_RANGE, "TOKENS logprob +1");
	T_HAS(e.msg, "logprob[0] = 1");
	proto_put_u32(wb + 16 + 16, 0xbf800000);
	proto_put_u32(wb + 16 + 12, 6); /* top_n */
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 1, &lim_ids, &t, &e) == -E_RANGE, "TOKENS top_n 6");
	proto_put_u32(wb + 16 + 12, 2);
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 1, &lim_ids, &t, &e) == -E_FORMAT,
	        "TOKENS records past the end");
	proto_put_u32(wb + 16 + 12, 1);
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 2, &lim_ids, &t, &e) == -E_INVAL,
	        "TOKENS text from a server without a tokenizer");
	T_CHECK(proto_decode_tokens(wb + 16, (uint32_t)n - 16, 4, &lim_ids, &t, &e) == -E_INVAL, "TOKENS unknown flag");
	proto_put_u32(wb + 16, 0);
	T_CHECK(proto_decode_tokens(wb + 16, 4, 0, &lim_ids, &t, &e) == -E_RANGE, "TOKENS of nothing");

	/* DONE */
	struct proto_done d = {0, PROTO_FINISH_CANCELLED, 10, 10, 0, 0, 0, 0}, dd;
	n = proto_encode_done(wb, sizeof(wb), 1, &d);
	T_CHECK(proto_decode_done(wb + 16, 40, 0, &lim_ids, &dd, &e) == 0, "DONE ok: %s", e.msg);
	T_CHECK(proto_decode_done(wb + 16, 39, 0, &lim_ids, &dd, &e) == -E_FORMAT, "DONE short");
	T_CHECK(proto_decode_done(wb + 16, 40, 2, &lim_ids, &dd, &e) == -E_INVAL, "DONE unknown flag");
	uint32_t finish_bad[] = {0, 5};
	for (int i = 0; i < 2; i++) {
		d.finish = finish_bad[i];
		proto_encode_done(wb, sizeof(wb), 1, &d);
		T_CHECK(proto_decode_done(wb + 16, 40, 0, &lim_ids, &dd, &e) == -E_RANGE, "DONE finish %u", d.finish);
	}
	d.finish = PROTO_FINISH_STOP;
	d.n_cached = 11;
	proto_encode_done(wb, sizeof(wb), 1, &d);
	T_CHECK(proto_decode_done(wb + 16, 40, 0, &lim_ids, &dd, &e) == -E_RANGE, "DONE cached > prompt");
	d.n_cached = 0;
	d.n_generated = 257;
	proto_encode_done(wb, sizeof(wb), 1, &d);
	T_CHECK(proto_decode_done(wb + 16, 40, 0, &lim_ids, &dd, &e) == -E_RANGE, "DONE generated > max_tokens");
	d.n_generated = 256;
	d.n_prompt = UINT32_MAX;
	proto_encode_done(wb, sizeof(wb), 1, &d);
	T_CHECK(proto_decode_done(wb + 16, 40, 0, &lim_ids, &dd, &e) == -E_RANGE,
	        "DONE prompt + generated > max_seq_len (no wrap)");

	/* ERROR */
	struct proto_error er;
	n = proto_encode_error(wb, sizeof(wb), 1, 0, "x");
	T_CHECK(proto_decode_error(wb + 16, (uint32_t)n - 16, 0, &er, &e) == -E_RANGE, "ERROR code 0");
	n = proto_encode_error(wb, sizeof(wb), 1, 5, "x");
	T_CHECK(proto_decode_error(wb + 16, (uint32_t)n - 16, 2, &er, &e) == -E_INVAL, "ERROR unknown flag");
	wb[16 + 8] = 0xff;
	T_CHECK(proto_decode_error(wb + 16, (uint32_t)n - 16, 0, &er, &e) == -E_FORMAT, "ERROR message not UTF-8");
	proto_put_u32(wb + 16 + 4, 1024);
	T_CHECK(proto_decode_error(wb + 16, (uint32_t)n - 16, 0, &er, &e) == -E_RANGE, "ERROR message of 1024 bytes");

	/* CANCEL, CREDIT, PING, STATS, GOAWAY */
	T_CHECK(proto_decode_empty(p, 1, 0, "CANCEL", &e) == -E_FORMAT, "CANCEL with a payload");
	T_HAS(e.msg, "CANCEL: 1 bytes after the last field");
	T_CHECK(proto_decode_empty(NULL, 0, 1, "CANCEL", &e) == -E_INVAL, "CANCEL with a flag");
	uint32_t c;
	proto_put_u32(p, 0);
	T_CHECK(proto_decode_credit(p, 4, 0, &c, &e) == -E_RANGE, "CREDIT of 0");
	proto_put_u32(p, 1);
	T_CHECK(proto_decode_credit(p, 3, 0, &c, &e) == -E_FORMAT && proto_decode_credit(p, 5, 0, &c, &e) == -E_FORMAT,
	        "CREDIT short, long");
	T_CHECK(proto_decode_credit(p, 4, 8, &c, &e) == -E_INVAL, "CREDIT with a flag");
	uint64_t v;
	T_CHECK(proto_decode_ping(p, 7, 0, &v, &e) == -E_FORMAT && proto_decode_ping(p, 9, 0, &v, &e) == -E_FORMAT,
	        "PING short, long");
	struct proto_stats st;
	proto_put_u32(p, 0x15555556); /* 12 * n wraps 32 bits to 8 */
	T_CHECK(proto_decode_stats(p, 12, 0, &st, &e) == -E_RANGE, "STATS n beyond 1024");
	proto_put_u32(p, 2);
	T_CHECK(proto_decode_stats(p, 16, 0, &st, &e) == -E_FORMAT, "STATS pairs past the end");
	proto_put_u32(p, 1);
	proto_put_u32(p + 4, 0);
	T_CHECK(proto_decode_stats(p, 16, 0, &st, &e) == -E_RANGE, "STATS key 0");
	proto_put_u32(p + 4, 1);
	T_CHECK(proto_decode_stats(p, 16, 0, &st, &e) == 0 && proto_decode_stats(p, 17, 0, &st, &e) == -E_FORMAT,
	        "STATS one pair, then a trailing byte");
	struct proto_goaway g;
	proto_put_u32(p, 100);
	proto_put_u32(p + 4, 3);
	memcpy(p + 8,
	       "b\xfe"
	       "c",
	       3);
	T_CHECK(proto_decode_goaway(p, 11, 0, &g, &e) == -E_FORMAT, "GOAWAY message not UTF-8");
	p[9] = 'x';
	T_CHECK(proto_decode_goaway(p, 11, 0, &g, &e) == 0 && g.drain_ms == 100 && str_is(g.msg, "bxc"), "GOAWAY ok");
	T_CHECK(proto_decode_goaway(p, 10, 0, &g, &e) == -E_FORMAT, "GOAWAY message cut");

	/* limits themselves */
	struct proto_limits l = lim_text;
	T_CHECK(proto_limits_check(&l, &e) == 0 && proto_limits_check(&lim_ids, &e) == 0, "test limits are valid");
	l.max_text_bytes = l.max_frame + 1;
	T_CHECK(proto_limits_check(&l, &e) == -E_RANGE, "max_text_bytes beyond max_frame");
	l = lim_text;
	l.has_tokenizer = 2;
	T_CHECK(proto_limits_check(&l, &e) == -E_RANGE, "has_tokenizer 2");
}

/* ---------------------------------------------------------------- the spec */

/* The numbered tables of src/PROTOCOL.md match proto.h. */
static void test_spec_tables(void)
{
	FILE *f = fopen("src/PROTOCOL.md", "r");
	T_CHECK(f != NULL, "src/PROTOCOL.md: run from the repository root");
	if (!f)
		return;
	char line[2048], section[128] = "";
	int n_types = 0, n_errs = 0, n_keys = 0, n_bad = 0;
	static uint8_t dump[4][256];
	int n_dump[4] = {0}, dumps = -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "## ", 3) == 0) {
			snprintf(section, sizeof(section), "%.*s", (int)strcspn(line + 3, "\n"), line + 3);
			continue;
		}
		unsigned num = 0, off = 0, b[16];
		char name[64], c3[256], c4[256];
		int k = sscanf(line, "| %u | %63[A-Z_] | %255[^|]| %255[^|]|", &num, name, c3, c4);
		if (strcmp(section, "Message types") == 0 && k == 4) {
			n_types++;
			struct proto_hdr h = {0, PROTO_MAGIC, 1, (uint8_t)num, 0, 0};
			uint32_t code;
			struct ts_err e;
			int srv = 0, cli = 0, scope_ok = 1;
			for (int side = 0; side < 2; side++) {
				enum proto_side to = side ? PROTO_TO_CLIENT : PROTO_TO_SERVER;
				h.request_id = 0;
				int r0 = proto_hdr_check(&h, to, &code, &e) == 0;
				h.request_id = 7;
				int r7 = proto_hdr_check(&h, to, &code, &e) == 0;
				if (r0 || r7)
					*(side ? &cli : &srv) = 1;
				if (r0 || r7)
					scope_ok &= strncmp(c4, "request", 7) == 0       ? (!r0 && r7)
					            : strncmp(c4, "connection", 10) == 0 ? (r0 && !r7)
					                                                 : (r0 && r7);
			}
			const char *dir = srv && cli ? "both"
			                  : srv      ? "client to server"
			                  : cli      ? "server to client"
			                             : "none";
			T_CHECK(
			    strcmp(proto_type_name(num), name) == 0 && strncmp(c3, dir, strlen(dir)) == 0 && scope_ok,
			    "spec type %u %s (%s, %s) vs code: %s, %s", num, name, c3, c4, proto_type_name(num), dir);
		} else if (strcmp(section, "Errors") == 0 && k == 4) {
			n_errs++;
			const struct proto_err_info *in = proto_err_info(num);
			T_CHECK(in && strcmp(in->name, name) == 0 && in->closes == (strncmp(c3, "closes", 6) == 0) &&
			            in->retryable == (strncmp(c4, "yes", 3) == 0),
			        "spec error %u %s (%s, %s) vs code", num, name, c3, c4);
		} else if (strcmp(section, "STATS keys") == 0 && k >= 2) {
			n_keys++;
			T_CHECK(proto_stat_name(num) && strcmp(proto_stat_name(num), name) == 0,
			        "spec key %u %s vs code", num, name);
		} else if (strcmp(section, "Examples") == 0 &&
		           sscanf(line, "    %4x  %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x",
		                  &off, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10],
		                  &b[11], &b[12], &b[13], &b[14], &b[15]) >= 2) {
			int got =
			    sscanf(line, "    %4x  %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x %2x",
			           &off, &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10],
			           &b[11], &b[12], &b[13], &b[14], &b[15]) -
			    1;
			if (off == 0 && dumps < 3)
				dumps++;
			if (dumps < 0 || off != (unsigned)n_dump[dumps] || n_dump[dumps] + got > 256) {
				n_bad++;
				continue;
			}
			for (int j = 0; j < got; j++)
				dump[dumps][n_dump[dumps]++] = (uint8_t)b[j];
		}
	}
	fclose(f);
	T_CHECK(n_types == PROTO_TYPE_END - 1, "spec lists %d types, code %d", n_types, PROTO_TYPE_END - 1);
	T_CHECK(n_errs == PROTO_ERR_END - 1, "spec lists %d error codes, code %d", n_errs, PROTO_ERR_END - 1);
	T_CHECK(n_keys == PROTO_STAT_END - 1, "spec lists %d STATS keys, code %d", n_keys, PROTO_STAT_END - 1);

	/* the examples, as the encoders write them */
	uint8_t b[512];
	struct proto_hello h = {.n_versions = 1, .versions = {1}, .max_frame = 1 << 20, .client = {"tsc/0.1", 7}};
	int n = proto_encode_hello(b, sizeof(b), &h);
	T_CHECK(dumps == 2 && n_bad == 0, "spec has three example dumps (%d, %d bad lines)", dumps + 1, n_bad);
	T_CHECK(n == n_dump[0] && memcmp(b, dump[0], (size_t)n) == 0, "spec HELLO example (%d bytes) = encoder (%d)",
	        n_dump[0], n);
	int32_t prompt[] = {128000, 9906, 1917}, stop[] = {128009};
	struct proto_submit_args a = {
	    .max_tokens = 16,
	    .priority = PROTO_PRIO_NORMAL,
	    .samp = {.temperature = 0.7f, .top_k = 40, .top_p = 0.9f, .repetition_penalty = 1.0f, .seed = 42},
	    .prompt = prompt,
	    .n_prompt = 3,
	    .stop_ids = stop,
	    .n_stop_ids = 1};
	n = proto_encode_submit(b, sizeof(b), 1, &a);
	T_CHECK(n == n_dump[1] && memcmp(b, dump[1], (size_t)n) == 0, "spec SUBMIT example (%d bytes) = encoder (%d)",
	        n_dump[1], n);
	struct proto_str stop_end = {"END", 3};
	struct proto_chat_msg msgs[] = {{PROTO_ROLE_SYSTEM, {"Be brief.", 9}}, {PROTO_ROLE_USER, {"Hi", 2}}};
	struct proto_submit_args c = {.flags = PROTO_SUBMIT_CHAT | PROTO_SUBMIT_WANT_TEXT,
	                              .max_tokens = 64,
	                              .priority = PROTO_PRIO_INTERACTIVE,
	                              .samp = {.top_p = 1.0f, .repetition_penalty = 1.0f},
	                              .stop_seqs = &stop_end,
	                              .n_stop_seqs = 1,
	                              .msgs = msgs,
	                              .n_msgs = 2};
	n = proto_encode_submit(b, sizeof(b), 2, &c);
	T_CHECK(n == n_dump[2] && memcmp(b, dump[2], (size_t)n) == 0,
	        "spec CHAT SUBMIT example (%d bytes) = encoder (%d)", n_dump[2], n);
}

/* ---------------------------------------------------------------- fuzz smoke */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* The fuzz target over mutations of its seed (bit flips, byte edits, length
 * edits, truncations, splices): it must never abort, and must see both
 * outcomes. */
static void test_fuzz_smoke(void)
{
	static uint8_t seed[8192], buf[8192];
	size_t n = fuzz_proto_seed(seed, sizeof(seed));
	int accepted = 0, refused = 0;
	for (int it = 0; it < 3000; it++) {
		size_t m = n;
		memcpy(buf, seed, n);
		for (int k = 0; k < 1 + (int)(rng() % 4); k++) {
			size_t pos = rng() % m;
			switch (rng() % 5) {
			case 0:
				buf[pos] ^= (uint8_t)(1u << (rng() % 8));
				break;
			case 1:
				buf[pos] = (uint8_t)rng();
				break;
			case 2: /* a u32 somewhere becomes an edge value */
				if (pos + 4 <= m) {
					static const uint32_t edge[] = {0,          1,     2,    0xffffffff, 0x80000000,
					                                0x40000001, 65520, 4080, 1000,       16};
					proto_put_u32(buf + pos, edge[rng() % TS_ARRAY_LEN(edge)]);
				}
				break;
			case 3:
				m = pos + 1;
				break;
			case 4: /* drop a chunk */ {
				size_t del = (size_t)(1 + rng() % 8);
				del = TS_MIN(m - pos, del);
				memmove(buf + pos, buf + pos + del, m - pos - del);
				m -= del;
				break;
			}
			}
			if (m == 0)
				break;
		}
		uint8_t *exact = malloc(m ? m : 1);
		memcpy(exact, buf, m);
		if (fuzz_proto_one(exact, m))
			accepted++;
		else
			refused++;
		free(exact);
	}
	printf("# t_proto: fuzz smoke: %d accepted, %d refused\n", accepted, refused);
	T_CHECK(accepted > 0 && refused > 0, "mutations reach both outcomes (%d, %d)", accepted, refused);
}

int main(void)
{
	test_header();
	test_hello_welcome();
	test_submit_roundtrip();
	test_tokens_roundtrip();
	test_small_messages();
	test_nospace();
	test_reader_chunks();
	test_reader_errors();
	test_hdr_check();
	test_submit_invalid();
	test_other_invalid();
	test_spec_tables();
	test_fuzz_smoke();
	return T_DONE();
}
