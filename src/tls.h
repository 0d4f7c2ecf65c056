/* tls: TLS 1.3 over mbedTLS for the server and its clients, without sockets.
 *
 * Owns: the TLS configuration built once at boot (struct tls_config: role,
 * TLS 1.3 only, and either mutual certificates (the default) or a pre-shared
 * key), and one TLS session per connection (struct tls_session): handshake,
 * record read and write, close_notify, the peer's name for logs, and a
 * message saying why a handshake or record failed.
 * Does not: touch sockets, poll or sleep. Bytes move through the two
 * callbacks given to tls_session_init, which return what they moved or
 * TLS_WANT_IO when they would block; so one session works on a non-blocking
 * fd and on an in-memory pipe in tests alike. Does not log: callers log
 * s->err.msg and tls_peer_cn().
 *
 * Policy (not options): TLS 1.3 only (min = max = 1.3). CERT mode: each side
 * presents its certificate and key, peers must chain to the configured CA,
 * verification is required both ways, and a client also checks the server's
 * name. PSK mode: one identity and key on both sides, psk_dhe_ke only (the
 * PSK authenticates an ephemeral ECDHE exchange, so sessions keep forward
 * secrecy); no certificates. No session tickets, no resumption, no 0-RTT.
 *
 * Return values. tls_handshake, tls_read, tls_write and tls_close_notify
 * return TLS_AGAIN when they need I/O that would block: call the same
 * function again (tls_write: with the same bytes) once the transport is
 * ready; tls_want() says for which direction. A negative E_* code means the
 * session is dead (free it and close the transport); s->err.msg says why:
 *   -E_INVAL        the peer was refused, or refused us: certificate missing,
 *                   not signed by our CA, expired, for another name or use,
 *                   wrong PSK; or an alert from the peer saying so
 *   -E_UNSUPPORTED  no common ground: the peer does not speak TLS 1.3, or no
 *                   shared cipher suite, group or signature algorithm
 *   -E_IO           the transport failed, or the peer closed it without
 *                   close_notify (a truncated stream)
 *   -E_FORMAT       a malformed or undecryptable record
 *   -E_NOMEM        mbedTLS could not allocate; in serve: the session went
 *                   past its share of the TLS pool, or every session the
 *                   pool was sized for is in use (tls_mem.h)
 *   -E_INTERNAL     anything else; the message carries mbedTLS's own text
 * TLS 1.3 ends the client's handshake with its own Finished: a client whose
 * certificate the server refuses sees tls_handshake return 0 and learns of
 * the refusal from its first tls_read (-E_INVAL). mbedTLS 3.6 sends the
 * alerts of a refusal under keys the peer cannot read (tls.c, fail()), so the
 * refused side's message says "most likely refused"; the refusing side's
 * message has the exact reason (missing, other CA, expired, name, usage).
 *
 * Memory. A session holds mbedTLS's input and output record buffers, fixed at
 * compile time by MBEDTLS_SSL_IN/OUT_CONTENT_LEN (16 KiB each in our build;
 * TLS 1.3 in mbedTLS 3.6 negotiates neither max_fragment_length nor, in our
 * build, record_size_limit), plus the peer's certificate chain, kept for
 * tls_peer_cn. The handshake temporarily needs more. tests/t_tls.c measures
 * and prints both figures. In `tokenspeed serve` all of it comes from a pool
 * taken at boot (tls_mem.h), so a session can fail with -E_NOMEM when more
 * sessions are open than the pool was sized for.
 *
 * Threads. tls_config_* run once at boot on one thread; a ready tls_config
 * is then read-only and may be shared by sessions on any thread. A session
 * belongs to one thread at a time. mbedTLS keeps process-wide state (the PSA
 * key store and random generator) that our build does not lock
 * (MBEDTLS_THREADING_C is off), so while it is off this module serialises
 * every call into mbedTLS with one process-wide mutex; the send and recv
 * callbacks run under it and must not block or call back into tls_*.
 */
#ifndef TS_TLS_H
#define TS_TLS_H

#include "base.h"

#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

/* Not E_* codes: both lie outside -E_CODE_N..0. */
#define TLS_AGAIN   (-100) /* from tls_*: retry when the transport is ready */
#define TLS_WANT_IO (-101) /* from the send/recv callbacks: it would block */

/* tls_want(): what the last TLS_AGAIN waited for. */
#define TLS_WANT_READ  1
#define TLS_WANT_WRITE 2

#define TLS_PSK_MIN_BYTES    16  /* 128 bits; shorter keys are refused */
#define TLS_PSK_MAX_BYTES    48  /* MBEDTLS_PSK_MAX_LEN in our build */
#define TLS_PSK_ID_MAX_BYTES 128 /* identity, printable ASCII */
#define TLS_NAME_MAX         256 /* server name or peer CN, NUL included */

enum tls_role { TLS_SERVER, TLS_CLIENT };
enum tls_mode { TLS_MODE_CERT, TLS_MODE_PSK };

struct tls_config {
	enum tls_role role;
	enum tls_mode mode;
	mbedtls_ssl_config conf;
	mbedtls_x509_crt own_cert;             /* CERT: our certificate chain (leaf first) */
	mbedtls_pk_context own_key;            /* CERT: its private key */
	mbedtls_x509_crt ca;                   /* CERT: what a peer's certificate must chain to */
	char server_name[TLS_NAME_MAX];        /* CERT client: the name the server's certificate must carry */
	char psk_id[TLS_PSK_ID_MAX_BYTES + 1]; /* PSK: the identity, for tls_peer_cn */
	int has_own_cert;                      /* CERT client without a certificate (tests): 0 */
	int ready;                             /* set by a successful tls_config_*; tls_config_free clears */
};

/* Server, CERT mode. cert: PEM chain (leaf first); key: its PEM private key;
 * ca: PEM certificates that client certificates must chain to. Fails naming
 * the file and what to do (missing, not PEM, encrypted key, key not matching
 * the certificate, certificate expired or not yet valid). */
int tls_config_server(struct tls_config *c, const char *cert, const char *key, const char *ca, struct ts_err *e);

/* Client, CERT mode. ca: what the server's certificate must chain to;
 * server_name: the DNS name or IP address it must carry (e.g. "localhost").
 * cert and key may both be NULL for a client without a certificate, which a
 * server of ours refuses; that exists for tests and diagnostics. */
int tls_config_client(struct tls_config *c, const char *cert, const char *key, const char *ca, const char *server_name,
                      struct ts_err *e);

/* Either role, PSK mode: identity (printable ASCII, 1..TLS_PSK_ID_MAX_BYTES)
 * and key (TLS_PSK_MIN_BYTES..TLS_PSK_MAX_BYTES). A server accepts only this
 * identity with this key. */
int tls_config_psk(struct tls_config *c, enum tls_role role, const char *identity, const uint8_t *key, size_t key_bytes,
                   struct ts_err *e);

/* "hex digits" -> bytes, for a PSK given in a config file; what names the key
 * in the message. Returns the byte count or -E_FORMAT / -E_RANGE. */
int tls_psk_from_hex(const char *hex, uint8_t *out, size_t cap, const char *what, struct ts_err *e);

/* A PSK from a file holding its hex digits (surrounding white space
 * ignored). Returns the byte count or -E_IO / -E_FORMAT / -E_RANGE naming the
 * file. */
int tls_psk_load(const char *path, uint8_t *out, size_t cap, struct ts_err *e);

/* Frees what tls_config_* took; safe on a zeroed or already freed config.
 * Every session made from c must be freed first. */
void tls_config_free(struct tls_config *c);

struct tls_session {
	mbedtls_ssl_context ssl;
	const struct tls_config *cfg;
	int (*send)(void *ctx, const uint8_t *p, size_t n); /* bytes sent, TLS_WANT_IO, or < 0: dead */
	int (*recv)(void *ctx, uint8_t *p, size_t n);       /* bytes read, 0 at EOF, TLS_WANT_IO, or < 0: dead */
	void *ctx;
	int want;      /* TLS_WANT_READ / TLS_WANT_WRITE behind the last TLS_AGAIN */
	int io_failed; /* a callback returned an error (not TLS_WANT_IO) */
	int handshake_done;
	int mem_owner;              /* its account in the TLS pool (tls_mem.h), or -1 */
	double handshake_s;         /* first tls_handshake call to done */
	uint64_t bytes_in;          /* plaintext bytes tls_read returned */
	char peer_cn[TLS_NAME_MAX]; /* CN of the peer's certificate, or the PSK identity */
	struct ts_err err;          /* why the last call returned a negative E_* code */
};

/* Sets up s for one connection over the callbacks (ctx is passed back to
 * them). -E_NOMEM or -E_INVAL (config not ready) with s->err filled; on
 * failure s needs no tls_session_free. */
int tls_session_init(struct tls_session *s, const struct tls_config *c,
                     int (*send)(void *ctx, const uint8_t *p, size_t n), int (*recv)(void *ctx, uint8_t *p, size_t n),
                     void *ctx);

/* 0 when the handshake is complete (the peer authenticated), TLS_AGAIN, or a
 * negative E_* code. */
int tls_handshake(struct tls_session *s);

/* Up to n plaintext bytes: > 0 bytes read; 0: the peer sent close_notify
 * (clean end); TLS_AGAIN; or a negative E_* code. Read again while
 * tls_pending() > 0: those bytes are already decrypted and no fd event will
 * announce them. */
int tls_read(struct tls_session *s, uint8_t *p, size_t n);

/* Bytes taken from p (> 0; may be fewer than n: one record's worth), TLS_AGAIN,
 * or a negative E_* code. After TLS_AGAIN call again with the same p and n. */
int tls_write(struct tls_session *s, const uint8_t *p, size_t n);

/* Sends close_notify: 0, TLS_AGAIN, or a negative E_* code. */
int tls_close_notify(struct tls_session *s);

size_t tls_pending(const struct tls_session *s);      /* decrypted bytes waiting in the session */
int tls_want(const struct tls_session *s);            /* TLS_WANT_READ / TLS_WANT_WRITE */
const char *tls_peer_cn(const struct tls_session *s); /* "" before the handshake completes */
const char *tls_suite(const struct tls_session *s);   /* e.g. "TLS1-3-AES-256-GCM-SHA384", for logs */

void tls_session_free(struct tls_session *s);

#endif
