/* proto: the frames of the client protocol (src/PROTOCOL.md is the contract;
 * this file and proto.c implement it, and tests/t_proto.c checks that the
 * tables below match the spec's).
 *
 * Owns: the 16-byte header; a resumable frame reader that checks magic,
 * version and the negotiated maximum frame size before any payload is held;
 * one decoder and one encoder per message; the validation of every field
 * against the limits agreed at the handshake; the numbered tables of types,
 * flags, error codes, finish reasons, priority classes and stats keys.
 * Does not: do I/O, keep conversation state (whether HELLO came, which request
 * ids are live, credit left: that is conn), allocate, or log.
 * Threads: every function is pure or touches only the structs it is given;
 * a proto_reader belongs to one connection at a time.
 *
 * Lifetimes. A decoded message's strings (struct proto_str) and arrays
 * (struct proto_u32s, raw records) point into the payload it was decoded
 * from: they are not NUL-terminated, may be unaligned, and are read through
 * the accessors below. They live as long as that payload; for a frame from
 * proto_reader_feed that is until the next feed call on that reader (and, for
 * a frame that came whole in one chunk, as long as the caller keeps that
 * chunk: see proto_reader_feed).
 *
 * Errors. Decoders return 0 or a negative E_* code with e->msg naming the
 * message and the field. The wire ERROR code to answer with is
 * proto_decode_err(rc): PROTO_ERR_UNSUPPORTED for -E_UNSUPPORTED, else
 * PROTO_ERR_BAD_FIELD. The reader's failures carry their wire code in
 * r->err; proto_hdr_check's in *code. Encoders return the bytes written
 * (header included) or -E_NOSPACE when cap (or PROTO_MAX_FRAME) is too
 * small; pass cap = the negotiated max frame and -E_NOSPACE means "does not
 * fit in one frame". Encoders stamp header version PROTO_VERSION, except
 * HELLO and WELCOME, which always carry 1.
 */
#ifndef TS_PROTO_H
#define TS_PROTO_H

#include "base.h"
#include "samp.h"

/* ---------------------------------------------------------------- constants */

#define PROTO_MAGIC              0x5354u /* bytes 'T' 'S' */
#define PROTO_VERSION            1u      /* the newest version we speak */
#define PROTO_VERSION_MIN        1u      /* the oldest */
#define PROTO_HDR_BYTES          16u
#define PROTO_MIN_FRAME          4096u       /* smallest max frame a peer may offer; also the limit until WELCOME */
#define PROTO_MAX_FRAME          (16u << 20) /* largest max frame a peer may offer */
#define PROTO_MAX_VERSIONS       16u         /* versions listed in one HELLO */
#define PROTO_MAX_NAME           255u        /* bytes: client name, model, architecture, checkpoint, server */
#define PROTO_MAX_MSG            1023u       /* bytes: ERROR and GOAWAY messages (fit a ts_err) */
#define PROTO_MAX_STOP_IDS       1024u       /* hard cap on proto_limits.max_stop_ids */
#define PROTO_MAX_STOP_SEQS      16u         /* hard cap on proto_limits.max_stop_seqs */
#define PROTO_MAX_STOP_SEQ_BYTES 256u        /* hard cap on proto_limits.max_stop_seq_bytes */
#define PROTO_MAX_LOGPROBS       20u         /* hard cap on proto_limits.max_logprobs */
#define PROTO_MAX_STATS          1024u       /* pairs in one STATS reply */
#define PROTO_MAX_MESSAGES       4096u       /* chat messages in one SUBMIT */

/* Message types: X(name, number, to_server, to_client, scope). scope: 'R' a
 * request's frame (request id != 0), 'C' the connection's (request id 0),
 * 'E' either (ERROR). */
#define PROTO_TYPES(X)                                                                                                 \
	X(HELLO, 1, 1, 0, 'C')                                                                                         \
	X(WELCOME, 2, 0, 1, 'C')                                                                                       \
	X(SUBMIT, 3, 1, 0, 'R')                                                                                        \
	X(TOKENS, 4, 0, 1, 'R')                                                                                        \
	X(DONE, 5, 0, 1, 'R')                                                                                          \
	X(ERROR, 6, 0, 1, 'E')                                                                                         \
	X(CANCEL, 7, 1, 0, 'R')                                                                                        \
	X(CREDIT, 8, 1, 0, 'R')                                                                                        \
	X(PING, 9, 1, 1, 'C')                                                                                          \
	X(PONG, 10, 1, 1, 'C')                                                                                         \
	X(STATS, 11, 1, 1, 'C')                                                                                        \
	X(GOAWAY, 12, 0, 1, 'C')
#define PROTO_TYPE_ENUM(n, v, s, c, k) PROTO_##n = v,
enum proto_type { PROTO_TYPES(PROTO_TYPE_ENUM) PROTO_TYPE_END };
#undef PROTO_TYPE_ENUM
const char *proto_type_name(uint32_t type); /* "SUBMIT", or "?" */

/* Error codes: X(name, code, closes the connection, retryable). Stable:
 * never renumbered, never reused. */
#define PROTO_ERRS(X)                                                                                                  \
	X(BAD_FRAME, 1, 1, 0)                                                                                          \
	X(UNSUPPORTED_VERSION, 2, 1, 0)                                                                                \
	X(FRAME_TOO_LARGE, 3, 1, 0)                                                                                    \
	X(UNKNOWN_TYPE, 4, 0, 0)                                                                                       \
	X(BAD_FIELD, 5, 0, 0)                                                                                          \
	X(BUSY, 6, 0, 1)                                                                                               \
	X(CANCELLED, 7, 0, 0)                                                                                          \
	X(INTERNAL, 8, 0, 0)                                                                                           \
	X(DRAINING, 9, 0, 1)                                                                                           \
	X(TOO_MANY_REQUESTS, 10, 0, 1)                                                                                 \
	X(UNSUPPORTED, 11, 0, 0)                                                                                       \
	X(PROTOCOL, 12, 1, 0)                                                                                          \
	X(STALLED, 13, 0, 0)
#define PROTO_ERR_ENUM(n, v, c, r) PROTO_ERR_##n = v,
enum proto_err { PROTO_ERR_NONE = 0, PROTO_ERRS(PROTO_ERR_ENUM) PROTO_ERR_END };
#undef PROTO_ERR_ENUM
struct proto_err_info {
	uint32_t code;
	const char *name; /* "BAD_FIELD" */
	int closes;       /* the sender closes the connection after this ERROR */
	int retryable;    /* the ERROR frame carries PROTO_ERROR_RETRYABLE */
};
const struct proto_err_info *proto_err_info(uint32_t code); /* NULL for a code we do not know */

/* Flags, per type; every bit not listed for a type must be 0. */
#define PROTO_SUBMIT_HAS_SESSION   0x01u /* session_id names a session to continue */
#define PROTO_SUBMIT_KEEP_SESSION  0x02u /* park the KV under session_id at the end */
#define PROTO_SUBMIT_WANT_LOGPROBS 0x04u /* TOKENS carry logprobs (top_logprobs alternatives) */
#define PROTO_SUBMIT_IGNORE_EOS    0x08u /* the model's EOS tokens do not stop the request */
#define PROTO_SUBMIT_TEXT_PROMPT   0x10u /* the prompt is prompt_text, not token ids */
#define PROTO_SUBMIT_WANT_TEXT     0x20u /* TOKENS carry the detokenized text */
#define PROTO_SUBMIT_CHAT          0x40u /* the prompt is messages, rendered in the model's chat format */
#define PROTO_SUBMIT_FLAGS         0x7fu
#define PROTO_TOKENS_HAS_LOGPROBS  0x01u
#define PROTO_TOKENS_HAS_TEXT      0x02u
#define PROTO_TOKENS_FLAGS         0x03u
#define PROTO_DONE_SESSION_KEPT    0x01u
#define PROTO_DONE_FLAGS           0x01u
#define PROTO_ERROR_RETRYABLE      0x01u
#define PROTO_ERROR_FLAGS          0x01u
#define PROTO_WELCOME_TOKENIZER    0x01u /* text prompts, stop sequences and WANT_TEXT are accepted */
#define PROTO_WELCOME_FLAGS        0x01u

enum proto_finish { PROTO_FINISH_STOP = 1, PROTO_FINISH_LENGTH, PROTO_FINISH_CONTEXT, PROTO_FINISH_CANCELLED };
#define PROTO_FINISH_MAX PROTO_FINISH_CANCELLED

enum proto_priority { PROTO_PRIO_INTERACTIVE = 0, PROTO_PRIO_NORMAL, PROTO_PRIO_BATCH, PROTO_PRIO_BACKGROUND };
#define PROTO_PRIO_MAX PROTO_PRIO_BACKGROUND

/* STATS keys: X(name, key). Stable; a client ignores keys it does not know. */
#define PROTO_STATS_KEYS(X)                                                                                            \
	X(UPTIME_MS, 1)                                                                                                \
	X(CONNECTIONS, 2)                                                                                              \
	X(REQUESTS_RUNNING, 3)                                                                                         \
	X(REQUESTS_QUEUED, 4)                                                                                          \
	X(SESSIONS_PARKED, 5)                                                                                          \
	X(REQUESTS_ACCEPTED, 6)                                                                                        \
	X(REQUESTS_DONE, 7)                                                                                            \
	X(REQUESTS_CANCELLED, 8)                                                                                       \
	X(REQUESTS_FAILED, 9)                                                                                          \
	X(REQUESTS_REJECTED, 10)                                                                                       \
	X(PROMPT_TOKENS, 11)                                                                                           \
	X(CACHED_TOKENS, 12)                                                                                           \
	X(GENERATED_TOKENS, 13)                                                                                        \
	X(STEPS, 14)                                                                                                   \
	X(PREEMPTIONS, 15)                                                                                             \
	X(KV_BLOCKS, 16)                                                                                               \
	X(KV_BLOCKS_FREE, 17)                                                                                          \
	X(KV_BLOCK_TOKENS, 18)                                                                                         \
	X(PREFILL_US, 19)                                                                                              \
	X(DECODE_US, 20)                                                                                               \
	X(FRAMES_IN, 21)                                                                                               \
	X(FRAMES_OUT, 22)                                                                                              \
	X(PROTOCOL_ERRORS, 23)                                                                                         \
	X(CONNECTIONS_REFUSED, 24)                                                                                     \
	X(CONNECTIONS_EVICTED, 25)                                                                                     \
	X(CONNECTIONS_TIMED_OUT, 26)
#define PROTO_STAT_ENUM(n, v) PROTO_STAT_##n = v,
enum proto_stat_key { PROTO_STATS_KEYS(PROTO_STAT_ENUM) PROTO_STAT_END };
#undef PROTO_STAT_ENUM
const char *proto_stat_name(uint32_t key); /* "UPTIME_MS", "QUEUED->PREFILL", or NULL */

/* Transition counters: key PROTO_STAT_TRANS + 8 * from + to (PROTOCOL.md). */
#define PROTO_STAT_TRANS 1000u
#define PROTO_N_REQ_STATES 8
const char *proto_req_state_name(int state); /* "QUEUED" ... "FAILED", or NULL */

/* ---------------------------------------------------------------- bytes */

/* Little-endian, alignment-free access. */
static inline uint32_t proto_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t proto_get_u64(const uint8_t *p)
{
	return (uint64_t)proto_get_u32(p) | (uint64_t)proto_get_u32(p + 4) << 32;
}
static inline float proto_get_f32(const uint8_t *p)
{
	uint32_t u = proto_get_u32(p);
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline void proto_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A UTF-8 string inside a payload: not NUL-terminated. */
struct proto_str {
	const char *s;
	uint32_t len;
};

/* n little-endian u32 inside a payload (token ids, validated < vocab). */
struct proto_u32s {
	const uint8_t *raw; /* (n * 4 bytes) */
	uint32_t n;
};
static inline uint32_t proto_u32s_at(const struct proto_u32s *a, uint32_t i)
{
	return proto_get_u32(a->raw + 4 * (size_t)i);
}
/* Copies validated token ids out as int32 (dst has room for a->n). */
void proto_u32s_copy(const struct proto_u32s *a, int32_t *dst);

/* ---------------------------------------------------------------- header */

struct proto_hdr {
	uint32_t length; /* payload bytes after the header */
	uint16_t magic;  /* PROTO_MAGIC */
	uint8_t version;
	uint8_t type;        /* enum proto_type */
	uint32_t flags;      /* per type */
	uint32_t request_id; /* 0 = the connection */
};
void proto_hdr_decode(const uint8_t p[PROTO_HDR_BYTES], struct proto_hdr *h);
void proto_hdr_encode(uint8_t p[PROTO_HDR_BYTES], const struct proto_hdr *h);

enum proto_side { PROTO_TO_SERVER, PROTO_TO_CLIENT };

/* Is this header's type one the receiving side accepts, with a request id
 * that fits its scope? 0, or -E_* with *code the ERROR to answer with:
 * PROTO_ERR_UNKNOWN_TYPE (unknown type, or one this side does not receive;
 * connection stays) or PROTO_ERR_PROTOCOL (request id 0 on a request's frame,
 * or non-zero on the connection's; close). */
int proto_hdr_check(const struct proto_hdr *h, enum proto_side to, uint32_t *code, struct ts_err *e);

/* ---------------------------------------------------------------- reader */

#define PROTO_READER_STATES(X) X(HEADER) X(PAYLOAD) X(FAILED)
#define PROTO_READER_ENUM(s)   PROTO_READER_##s,
enum proto_reader_state { PROTO_READER_STATES(PROTO_READER_ENUM) PROTO_READER_STATE_N };
#undef PROTO_READER_ENUM
const char *proto_reader_state_name(enum proto_reader_state s);

/* One frame as the reader hands it over. */
struct proto_frame {
	struct proto_hdr h;
	const uint8_t *payload; /* (h.length bytes); NULL when h.length == 0 */
};

/* A resumable frame reader (nginx style): all state is here, so any chunking
 * of the byte stream gives the same frames. */
struct proto_reader {
	enum proto_reader_state state;
	uint32_t max_frame; /* whole frame, header included */
	uint8_t version;    /* every header must carry it */
	uint8_t hb[PROTO_HDR_BYTES];
	uint32_t got;       /* bytes of the current header or payload held */
	struct proto_hdr h; /* the current frame's header, once complete */
	uint8_t *buf;       /* (cap) payload assembly, the caller's */
	uint32_t cap;
	uint32_t err; /* PROTO_ERR_* once FAILED */
	int err_rc;   /* the -E_* it returned */
	uint64_t n_frames, n_bytes;
};

#define PROTO_AGAIN 0 /* every input byte consumed; the frame is not complete */
#define PROTO_FRAME 1 /* one frame complete in *f; feed the rest of the input again */

/* Starts a reader in the handshake regime: version PROTO_VERSION_MIN (HELLO,
 * WELCOME and any ERROR before WELCOME always carry it) and max frame
 * PROTO_MIN_FRAME. buf (cap >= PROTO_MIN_FRAME - PROTO_HDR_BYTES) holds
 * payloads that arrive in pieces; it stays the caller's. */
int proto_reader_init(struct proto_reader *r, uint8_t *buf, uint32_t cap);

/* After the handshake: the negotiated version and max frame. -E_INVAL if
 * max_frame is outside [PROTO_MIN_FRAME, PROTO_MAX_FRAME], the payload
 * buffer is smaller than max_frame - PROTO_HDR_BYTES, or a frame is half
 * read (call it between frames, e.g. right after the HELLO or WELCOME). */
int proto_reader_limit(struct proto_reader *r, uint32_t max_frame, uint8_t version);

/* Consumes bytes of in[0..n) (*used says how many) and returns PROTO_AGAIN,
 * PROTO_FRAME, or -E_* once the stream is unusable (r->err is the ERROR to
 * send with request id 0 before closing: BAD_FRAME for a bad magic,
 * UNSUPPORTED_VERSION for a header version other than the agreed one,
 * FRAME_TOO_LARGE for a length over the max frame, found when the header is
 * complete, before a payload byte is held). A failed reader keeps failing.
 * f->payload points into in when the whole payload came in this call (valid
 * while the caller keeps in), else into r->buf (valid until the next call). */
int proto_reader_feed(struct proto_reader *r, const uint8_t *in, size_t n, size_t *used, struct proto_frame *f,
                      struct ts_err *e);

/* ---------------------------------------------------------------- limits */

/* What the server accepts, announced in WELCOME. Decoders take it to check
 * every field; a client builds it from WELCOME and may run its own frames
 * through the decoders before sending them. */
struct proto_limits {
	uint32_t max_frame;          /* [PROTO_MIN_FRAME, PROTO_MAX_FRAME] */
	uint32_t vocab;              /* token ids are < vocab; [1, INT32_MAX] */
	uint32_t max_seq_len;        /* prompt + generated; [2, INT32_MAX] */
	uint32_t max_tokens;         /* generated per request; [1, max_seq_len - 1] */
	uint32_t max_stop_ids;       /* [0, PROTO_MAX_STOP_IDS] */
	uint32_t max_stop_seqs;      /* [0, PROTO_MAX_STOP_SEQS]; 0 without a tokenizer */
	uint32_t max_stop_seq_bytes; /* [0, PROTO_MAX_STOP_SEQ_BYTES] */
	uint32_t max_text_bytes;     /* prompt text; [0, max_frame]; 0 without a tokenizer */
	uint32_t max_logprobs;       /* top alternatives per token; [0, PROTO_MAX_LOGPROBS] */
	int has_tokenizer;           /* 0 or 1 */
};
int proto_limits_check(const struct proto_limits *l, struct ts_err *e);

static inline uint32_t proto_decode_err(int rc)
{
	return rc == -E_UNSUPPORTED ? PROTO_ERR_UNSUPPORTED : PROTO_ERR_BAD_FIELD;
}

/* ---------------------------------------------------------------- handshake */

struct proto_hello {
	uint32_t n_versions;
	uint32_t versions[PROTO_MAX_VERSIONS]; /* each 1..255 */
	uint32_t max_frame;                    /* the largest frame the client accepts */
	struct proto_str client;               /* name and version, for logs */
};

struct proto_welcome {
	uint32_t version;            /* chosen */
	uint32_t max_requests;       /* live requests per connection */
	uint32_t initial_credit;     /* tokens each request may receive before any CREDIT */
	uint32_t credit_timeout_ms;  /* a request stalled this long ends with ERROR STALLED */
	uint32_t ping_interval_ms;   /* the server PINGs a connection silent this long; >= 1 */
	uint32_t idle_timeout_ms;    /* and closes one silent this long; > ping_interval_ms */
	struct proto_limits lim;     /* lim.max_frame = min(client's, server's); has_tokenizer = flag */
	struct proto_str model;      /* the model's name (checkpoint directory) */
	struct proto_str arch;       /* "LlamaForCausalLM" */
	struct proto_str checkpoint; /* identity of the weights (a hash) */
	struct proto_str server;     /* "tokenspeed 0.1" */
};

/* The server's side of the handshake: the highest version both speak and
 * min(client's, server's) max frame. -E_UNSUPPORTED when no version is
 * shared (answer ERROR UNSUPPORTED_VERSION, close). */
int proto_negotiate(const struct proto_hello *h, uint32_t server_max_frame, uint32_t *version, uint32_t *max_frame,
                    struct ts_err *e);

int proto_decode_hello(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_hello *out, struct ts_err *e);
int proto_encode_hello(uint8_t *buf, size_t cap, const struct proto_hello *h);
int proto_decode_welcome(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_welcome *out, struct ts_err *e);
int proto_encode_welcome(uint8_t *buf, size_t cap, const struct proto_welcome *w);

/* ---------------------------------------------------------------- requests */

/* Chat messages of a SUBMIT: records (u32 role, string content), checked by
 * the decoder; walk them with proto_chat_next from off = 0. */
enum proto_role { PROTO_ROLE_SYSTEM = 0, PROTO_ROLE_USER, PROTO_ROLE_ASSISTANT, PROTO_ROLE_TOOL, PROTO_ROLE_TOOLS };
#define PROTO_ROLE_MAX PROTO_ROLE_TOOLS
struct proto_chat_msg {
	uint32_t role; /* enum proto_role */
	struct proto_str text;
};
struct proto_chat {
	uint32_t n;         /* messages */
	const uint8_t *raw; /* their records */
	uint32_t bytes;     /* of content, all messages */
};
void proto_chat_next(const struct proto_chat *c, uint32_t *off, struct proto_chat_msg *m);

/* SUBMIT as decoded: arrays and strings point into the payload. */
struct proto_submit {
	uint32_t flags;           /* PROTO_SUBMIT_* */
	uint32_t max_tokens;      /* 1..min(lim.max_tokens, context left after the prompt) */
	uint32_t priority;        /* enum proto_priority */
	struct samp_params samp;  /* passed samp_params_check */
	uint64_t session_id;      /* != 0 with HAS_SESSION, else 0 */
	uint32_t top_logprobs;    /* 0..lim.max_logprobs with WANT_LOGPROBS, else 0 */
	struct proto_u32s prompt; /* token ids; n = 0 with TEXT_PROMPT */
	struct proto_u32s stop_ids;
	struct proto_str prompt_text; /* with TEXT_PROMPT, else empty */
	uint32_t n_stop_seqs;
	struct proto_str stop_seqs[PROTO_MAX_STOP_SEQS];
	struct proto_chat chat; /* with CHAT: the messages, else n = 0 */
};

/* SUBMIT as a client builds it: host arrays. */
struct proto_submit_args {
	uint32_t flags;
	uint32_t max_tokens;
	uint32_t priority;
	struct samp_params samp;
	uint64_t session_id;
	uint32_t top_logprobs;
	const int32_t *prompt; /* (n_prompt) */
	uint32_t n_prompt;
	const int32_t *stop_ids; /* (n_stop_ids) */
	uint32_t n_stop_ids;
	struct proto_str prompt_text;
	const struct proto_str *stop_seqs; /* (n_stop_seqs) */
	uint32_t n_stop_seqs;
	const struct proto_chat_msg *msgs; /* (n_msgs), with CHAT */
	uint32_t n_msgs;
};

/* Every field is checked against lim (which passed proto_limits_check):
 * flags known and consistent; token ids < vocab; counts and lengths within
 * the limits and the payload; max_tokens within the context left after the
 * prompt (for a text prompt, after one token: the server checks again once
 * it has tokenized); the sampling fields through samp_params_check; strings
 * valid UTF-8; no trailing bytes. Text fields without a tokenizer:
 * -E_UNSUPPORTED. */
int proto_decode_submit(const uint8_t *p, uint32_t len, uint32_t flags, const struct proto_limits *lim,
                        struct proto_submit *out, struct ts_err *e);
int proto_encode_submit(uint8_t *buf, size_t cap, uint32_t request_id, const struct proto_submit_args *a);

/* CANCEL and the STATS request have no payload and no flags. */
int proto_decode_empty(const uint8_t *p, uint32_t len, uint32_t flags, const char *what, struct ts_err *e);
int proto_encode_cancel(uint8_t *buf, size_t cap, uint32_t request_id);
int proto_encode_stats_req(uint8_t *buf, size_t cap);

/* CREDIT: tokens >= 1 more that the server may send for this request. */
int proto_decode_credit(const uint8_t *p, uint32_t len, uint32_t flags, uint32_t *tokens, struct ts_err *e);
int proto_encode_credit(uint8_t *buf, size_t cap, uint32_t request_id, uint32_t tokens);

/* PING and PONG: one opaque u64 (PONG echoes PING's). */
int proto_decode_ping(const uint8_t *p, uint32_t len, uint32_t flags, uint64_t *value, struct ts_err *e);
int proto_encode_ping(uint8_t *buf, size_t cap, uint64_t value);
int proto_encode_pong(uint8_t *buf, size_t cap, uint64_t value);

/* ---------------------------------------------------------------- replies */

/* TOKENS as decoded. Logprob records: per token, f32 logprob then top_n
 * pairs (u32 id, f32 logprob). */
struct proto_tokens {
	uint32_t flags; /* PROTO_TOKENS_* */
	struct proto_u32s ids;
	uint32_t top_n;        /* with HAS_LOGPROBS */
	const uint8_t *lp_raw; /* (ids.n, 4 + 8 * top_n bytes) with HAS_LOGPROBS */
	struct proto_str text; /* with HAS_TEXT */
};
float proto_tokens_logprob(const struct proto_tokens *t, uint32_t i);
int32_t proto_tokens_top(const struct proto_tokens *t, uint32_t i, uint32_t j, float *logprob);

struct proto_tokens_args {
	const int32_t *ids; /* (n) */
	uint32_t n;
	const float *logprob; /* (n); NULL: no logprobs */
	uint32_t top_n;
	const int32_t *top_ids;   /* (n, top_n) */
	const float *top_logprob; /* (n, top_n) */
	struct proto_str text;    /* .s NULL: no text */
};
/* Bytes of a whole TOKENS frame, to cut a run of tokens to the max frame. */
uint64_t proto_tokens_size(uint32_t n, int has_logprobs, uint32_t top_n, int has_text, uint32_t text_len);
/* Positive logprobs are sent as 0 and NaN as -inf, so the frame validates. */
int proto_encode_tokens(uint8_t *buf, size_t cap, uint32_t request_id, const struct proto_tokens_args *a);
/* ids and top ids < lim->vocab, top_n <= lim->max_logprobs, logprobs <= 0 or
 * -inf, text only from a server with a tokenizer, valid UTF-8. */
int proto_decode_tokens(const uint8_t *p, uint32_t len, uint32_t flags, const struct proto_limits *lim,
                        struct proto_tokens *out, struct ts_err *e);

struct proto_done {
	uint32_t flags;    /* PROTO_DONE_* */
	uint32_t finish;   /* enum proto_finish */
	uint32_t n_prompt; /* prompt tokens */
	uint32_t n_cached; /* of which found in the KV cache (prefix or session) */
	uint32_t n_generated;
	uint64_t queue_us;  /* SUBMIT accepted -> first prefill step */
	uint64_t ttft_us;   /* SUBMIT accepted -> first token */
	uint64_t decode_us; /* first token -> last token */
};
int proto_decode_done(const uint8_t *p, uint32_t len, uint32_t flags, const struct proto_limits *lim,
                      struct proto_done *out, struct ts_err *e);
int proto_encode_done(uint8_t *buf, size_t cap, uint32_t request_id, const struct proto_done *d);

struct proto_error {
	uint32_t code; /* PROTO_ERR_*, or one newer than us */
	int retryable; /* from the frame's flag */
	struct proto_str msg;
};
int proto_decode_error(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_error *out, struct ts_err *e);
/* The retryable flag comes from the code's table row; msg (NUL-terminated,
 * may be NULL) is cut to PROTO_MAX_MSG bytes on a character boundary and any
 * invalid UTF-8 byte becomes '?'. */
int proto_encode_error(uint8_t *buf, size_t cap, uint32_t request_id, uint32_t code, const char *msg);

struct proto_stat {
	uint32_t key; /* enum proto_stat_key, or newer */
	uint64_t value;
};
struct proto_stats {
	uint32_t n;
	const uint8_t *raw; /* (n, 12 bytes) */
};
void proto_stats_at(const struct proto_stats *s, uint32_t i, struct proto_stat *kv);
int proto_decode_stats(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_stats *out, struct ts_err *e);
int proto_encode_stats(uint8_t *buf, size_t cap, const struct proto_stat *kv, uint32_t n);

struct proto_goaway {
	uint32_t drain_ms; /* live requests still running then end with ERROR CANCELLED */
	struct proto_str msg;
};
int proto_decode_goaway(const uint8_t *p, uint32_t len, uint32_t flags, struct proto_goaway *out, struct ts_err *e);
int proto_encode_goaway(uint8_t *buf, size_t cap, uint32_t drain_ms, const char *msg);

#endif
