/* tsclient: the client side of the TokenSpeed protocol (src/PROTOCOL.md), as
 * a library for tsctl, benchmarks and applications.
 *
 * Owns: one connection (struct tsc): TCP connect to HOST:PORT, the TLS 1.3
 * handshake with the client certificate (src/tls.h), HELLO/WELCOME, the
 * table of live requests and their ids, per-request flow control (CREDIT is
 * sent automatically as tokens arrive), the output buffer, and turning the
 * server's frames into events (struct tsc_event). Also the percentile helper
 * that tsctl bench reports with.
 * Does not: tokenize, retry, reconnect, or log. Nothing here exits.
 * Threads: a struct tsc belongs to one thread at a time; different
 * connections may live on different threads.
 *
 * Errors. Functions return 0 (or a count) or a negative E_* code with
 * c->err.msg naming the server (HOST:PORT) or the file. tsc_submit refuses a
 * request that breaks WELCOME's limits locally (-E_INVAL, the field named;
 * the connection carries on) and one beyond max_requests (-E_BUSY). Any
 * other failure (transport, TLS, a malformed frame from the server, an
 * ERROR that closes the connection) marks the connection dead: every later
 * call returns -E_IO with the first reason kept in c->err.
 *
 * Flow control. A request starts with WELCOME's initial_credit; each time
 * tsc_poll has delivered half of it (at least 1 token) the library grants
 * that many back in one CREDIT, so the server may run at most
 * initial_credit tokens ahead of the application.
 */
#ifndef TS_TSCLIENT_H
#define TS_TSCLIENT_H

#include "base.h"
#include "proto.h"
#include "samp.h"
#include "tls.h"

#define TSC_NAME       "tsc/0.1"
#define TSC_CONNECT_MS 10000      /* TCP connect + TLS handshake + WELCOME, at most */
#define TSC_MAX_FRAME  (1u << 20) /* the largest frame we accept (HELLO's max_frame) */
#define TSC_MAX_SLOTS  4096u      /* live requests per connection we track, at most */

/* Where the certificates are. server_name: the name the server's
 * certificate must carry; NULL means the host part of HOST:PORT. */
struct tsc_tls {
	const char *ca;   /* PEM CA the server's certificate chains to */
	const char *cert; /* our PEM certificate; NULL with key NULL: no client certificate */
	const char *key;  /* its PEM private key */
	const char *server_name;
	const char *psk_identity; /* PSK mode when set: then ca, cert and key are unused */
	const char *psk_file;     /* the key in hex (tls_psk_load) */
};

/* One SUBMIT: token ids, text or chat messages (the last two need a server
 * with a tokenizer: WELCOME flag TOKENIZER, c->lim.has_tokenizer). */
struct tsc_request {
	const int32_t *prompt; /* (n_prompt) token ids < vocab; n_prompt 0 with text or messages */
	uint32_t n_prompt;
	const char *text;                   /* a text prompt (UTF-8, text_len bytes), or NULL */
	uint32_t text_len;
	const struct proto_chat_msg *msgs;  /* (n_msgs) chat messages, or NULL */
	uint32_t n_msgs;
	int want_text;                      /* TOKENS events carry the text */
	const struct proto_str *stop_seqs;  /* (n_stop_seqs) end on these strings of generated text */
	uint32_t n_stop_seqs;
	uint32_t max_tokens;
	const int32_t *stop_ids; /* (n_stop_ids) */
	uint32_t n_stop_ids;
	struct samp_params samp; /* temperature .. frequency_penalty and the seed */
	uint32_t priority;       /* enum proto_priority */
	uint64_t session_id;     /* 0: no session */
	int keep_session;        /* park the KV under session_id at the end (needs session_id) */
	int ignore_eos;          /* the model's EOS does not stop the request */
};

enum tsc_event_type {
	TSC_EV_TOKENS = 1, /* ids[0..n_ids) for req_id; text[0..n_text) when it was asked for */
	TSC_EV_DONE,       /* req_id's terminal frame: done */
	TSC_EV_ERROR,      /* req_id's terminal frame (or req_id 0: the connection's) */
	TSC_EV_PONG,       /* pong */
	TSC_EV_STATS,      /* stats[0..n_stats) */
	TSC_EV_GOAWAY,     /* the server drains: no more submits on this connection */
	TSC_EV_WELCOME,    /* the handshake finished (tsc_connect consumes it) */
};

/* Pointers in an event stay valid until the next tsc_poll on c. */
struct tsc_event {
	enum tsc_event_type type;
	uint32_t req_id;
	double t; /* ts_now() when the frame was read */
	/* TOKENS */
	const int32_t *ids; /* (n_ids) */
	uint32_t n_ids;
	const char *text; /* (n_text) UTF-8, not NUL-terminated; NULL without want_text */
	uint32_t n_text;
	/* DONE */
	struct proto_done done;
	/* ERROR */
	uint32_t code; /* PROTO_ERR_* */
	int retryable;
	char msg[PROTO_MAX_MSG + 1]; /* ERROR and GOAWAY messages, NUL-terminated */
	/* PONG */
	uint64_t pong;
	/* STATS */
	const struct proto_stat *stats; /* (n_stats) */
	uint32_t n_stats;
	/* GOAWAY */
	uint32_t drain_ms;
};

/* One live request, as the connection tracks it. */
struct tsc_slot {
	uint32_t id;       /* 0: free */
	uint32_t unacked;  /* tokens delivered since the last CREDIT */
	uint64_t received; /* tokens delivered in all */
};

struct tsc {
	char where[300]; /* "HOST:PORT", for messages */
	int fd;          /* -1 when closed */
	int dead;        /* a fatal error happened; err says which */
	int goaway;      /* GOAWAY came */
	int have_tls_cfg, have_tls;
	struct tls_config tls_cfg;
	struct tls_session tls;
	struct ts_err err;

	/* From WELCOME. */
	uint32_t version, max_requests, initial_credit, credit_timeout_ms, welcome_flags;
	uint32_t ping_interval_ms, idle_timeout_ms; /* the server PINGs after this silence, closes after that */
	struct proto_limits lim;
	char model[PROTO_MAX_NAME + 1], arch[PROTO_MAX_NAME + 1], checkpoint[PROTO_MAX_NAME + 1],
	    server[PROTO_MAX_NAME + 1];
	int open; /* WELCOME read */

	/* Input: plaintext from TLS, then frames. */
	struct proto_reader rd;
	uint8_t *rd_buf; /* (TSC_MAX_FRAME) payloads that arrive in pieces */
	uint8_t *in;     /* (in_cap) */
	size_t in_cap, in_pos, in_len;

	/* Output: encoded frames waiting for TLS. */
	uint8_t *out; /* (out_cap) */
	size_t out_cap, out_pos, out_len;
	size_t out_again; /* bytes of the tls_write that returned TLS_AGAIN, or 0 */

	/* Requests: an id lives in slots[id & slot_mask]; ids are picked so that
	 * slot is free. */
	struct tsc_slot *slots; /* (slot_mask + 1) */
	uint32_t slot_mask, n_live, next_id;
	uint32_t credit_step; /* grant after this many delivered tokens */
	uint64_t n_credit_frames, n_credit_tokens;

	/* Event payloads. */
	int32_t *ev_ids;             /* (TSC_MAX_FRAME / 4) */
	struct proto_stat *ev_stats; /* (PROTO_MAX_STATS) */
};

/* Connects to "HOST:PORT" ("[v6]:PORT" too), handshakes TLS and HELLO/WELCOME.
 * On failure c needs no tsc_close (it is closed), e says why. */
int tsc_connect(struct tsc *c, const char *host_port, const struct tsc_tls *tls, struct ts_err *e);

/* Queues one SUBMIT (sent by the next tsc_poll or at once if the socket takes
 * it) and returns its request id in *req_id. */
int tsc_submit(struct tsc *c, const struct tsc_request *rq, uint32_t *req_id);

/* Waits up to timeout_ms (-1: forever, 0: not at all) for the next event.
 * 1: *ev filled; 0: none in time; < 0: the connection is dead (c->err). */
int tsc_poll(struct tsc *c, int timeout_ms, struct tsc_event *ev);

int tsc_cancel(struct tsc *c, uint32_t req_id); /* DONE CANCELLED follows, unless it crossed a DONE */
int tsc_ping(struct tsc *c, uint64_t value);    /* a PONG event follows */
int tsc_stats(struct tsc *c);                   /* a STATS event follows */

/* Sends what is queued (up to timeout_ms), close_notify, closes, frees. */
void tsc_close(struct tsc *c);

/* The p-th percentile (0..100) of sorted[0..n) by linear interpolation
 * between closest ranks (numpy's default); 0 when n is 0. */
double tsc_percentile(const double *sorted, size_t n, double p);

#endif
