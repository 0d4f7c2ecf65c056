/* tls: TLS 1.3 configurations and sessions over mbedTLS 3.6 (see tls.h).
 *
 * Reading order: the process-wide lock, loading PEM files with messages that
 * name them, building a configuration per role and mode, the I/O trampolines
 * between mbedTLS and the caller's callbacks, turning mbedTLS's failures into
 * an E_* code and a sentence, then the session calls.
 *
 * mbedTLS keeps pointers into struct tls_config (certificates, key, CA), so a
 * configuration must stay where tls_config_* built it. Randomness for TLS and
 * key parsing comes from PSA's generator (mbedtls_psa_get_random), which is
 * seeded from the platform entropy source by psa_crypto_init().
 */
#include "tls.h"
#include "tls_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/psa_util.h>
#include <psa/crypto.h>

#include "fault.h"

#define TLS_PEM_MAX_BYTES (1 << 20) /* a PEM file bigger than this is not one of ours */

_Static_assert(TLS_PSK_MAX_BYTES <= MBEDTLS_PSK_MAX_LEN, "TLS_PSK_MAX_BYTES exceeds mbedTLS's MBEDTLS_PSK_MAX_LEN");

/* ------------------------------------------------------------ lock */

/* Without MBEDTLS_THREADING_C, PSA's key store and random generator (used by
 * every TLS 1.3 handshake and record) are unlocked globals: one mutex around
 * every call into mbedTLS keeps sessions on different threads correct. With
 * it, mbedTLS locks for itself and this compiles to nothing. */
#if defined(MBEDTLS_THREADING_C)
#define tls_lock()   ((void)0)
#define tls_unlock() ((void)0)
#else
static pthread_mutex_t tls_mutex = PTHREAD_MUTEX_INITIALIZER;
static void tls_lock(void)
{
	pthread_mutex_lock(&tls_mutex);
}
static void tls_unlock(void)
{
	pthread_mutex_unlock(&tls_mutex);
}
#endif

/* Around every mbedTLS call on a session: the lock, and the session's
 * account in the TLS pool (tls_mem.h) charged for what mbedTLS allocates. */
static void sess_enter(const struct tls_session *s)
{
	tls_lock();
	tls_mem_owner_set(s->mem_owner);
}

static void sess_leave(void)
{
	tls_mem_owner_set(-1);
	tls_unlock();
}

static void mbed_text(int ret, char *buf, size_t cap)
{
	mbedtls_strerror(ret, buf, cap);
}

/* ------------------------------------------------------------ files */

/* Whole file plus a NUL (mbedTLS's PEM parsers want the NUL counted in the
 * length). *len includes it. Caller ts_frees *out. */
static int pem_read(const char *path, const char *what, unsigned char **out, size_t *len, struct ts_err *e)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ts_errf(e, E_IO, "%s: cannot open the %s: %s; check the path", path, what, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > TLS_PEM_MAX_BYTES) {
		close(fd);
		return ts_errf(e, E_FORMAT, "%s: the %s must be a PEM file of at most %d bytes", path, what,
		               TLS_PEM_MAX_BYTES);
	}
	unsigned char *buf = ts_alloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return ts_errf(e, E_NOMEM, "%s: out of memory reading the %s", path, what);
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = FAULT_ERRNO(FAULT_READ, EIO) ? -1 : read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = r < 0 ? errno : EIO;
			close(fd);
			ts_free(buf);
			return ts_errf(e, E_IO, "%s: reading the %s: %s", path, what, strerror(err));
		}
		got += (size_t)r;
	}
	close(fd);
	buf[got] = 0;
	*out = buf;
	*len = got + 1;
	return 0;
}

static int time_msg(const mbedtls_x509_time *t, char *buf, size_t cap)
{
	return snprintf(buf, cap, "%04d-%02d-%02d %02d:%02d:%02d UTC", t->year, t->mon, t->day, t->hour, t->min,
	                t->sec);
}

/* One or more PEM certificates; the first must be in its validity period when
 * check_time (our own certificate: better to stop boot than to fail every
 * handshake later). */
static int crt_load(mbedtls_x509_crt *crt, const char *path, const char *what, int check_time, struct ts_err *e)
{
	unsigned char *buf;
	size_t len;
	char why[160], when[48];
	int rc = pem_read(path, what, &buf, &len, e);
	if (rc < 0)
		return rc;
	if (!strstr((const char *)buf, "-----BEGIN CERTIFICATE-----")) {
		ts_free(buf);
		return ts_errf(e, E_FORMAT,
		               "%s: not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\"); the %s must be PEM, "
		               "as written by `tokenspeed certs DIR`",
		               path, what);
	}
	int ret = mbedtls_x509_crt_parse(crt, buf, len);
	ts_free(buf);
	if (ret != 0) {
		if (ret > 0)
			return ts_errf(e, E_FORMAT,
			               "%s: %d of the certificates in the %s do not parse; remove or replace them",
			               path, ret, what);
		mbed_text(ret, why, sizeof(why));
		return ts_errf(e, E_FORMAT, "%s: the %s does not parse (%s); replace it with a PEM X.509 certificate",
		               path, what, why);
	}
	if (check_time && mbedtls_x509_time_is_past(&crt->valid_to)) {
		time_msg(&crt->valid_to, when, sizeof(when));
		return ts_errf(e, E_INVAL, "%s: the %s expired on %s; make a new one (`tokenspeed certs DIR`)", path,
		               what, when);
	}
	if (check_time && mbedtls_x509_time_is_future(&crt->valid_from)) {
		time_msg(&crt->valid_from, when, sizeof(when));
		return ts_errf(e, E_INVAL, "%s: the %s is not valid until %s; check this machine's clock", path, what,
		               when);
	}
	return 0;
}

static int key_load(mbedtls_pk_context *pk, const char *path, const char *what, struct ts_err *e)
{
	unsigned char *buf;
	size_t len;
	char why[160];
	int rc = pem_read(path, what, &buf, &len, e);
	if (rc < 0)
		return rc;
	const char *s = (const char *)buf;
	if (strstr(s, "-----BEGIN ENCRYPTED PRIVATE KEY-----") || strstr(s, "Proc-Type: 4,ENCRYPTED")) {
		mbedtls_platform_zeroize(buf, len);
		ts_free(buf);
		return ts_errf(e, E_UNSUPPORTED,
		               "%s: the %s is encrypted with a passphrase; store it unencrypted with mode 0600 "
		               "(openssl pkey -in %s -out NEW.key)",
		               path, what, path);
	}
	if (!strstr(s, "-----BEGIN ") || !strstr(s, "PRIVATE KEY-----")) {
		mbedtls_platform_zeroize(buf, len);
		ts_free(buf);
		return ts_errf(e, E_FORMAT,
		               "%s: not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\"); the %s must be "
		               "PEM, as written by `tokenspeed certs DIR`",
		               path, what);
	}
	int ret = mbedtls_pk_parse_key(pk, buf, len, NULL, 0, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
	mbedtls_platform_zeroize(buf, len);
	ts_free(buf);
	if (ret != 0) {
		mbed_text(ret, why, sizeof(why));
		return ts_errf(e, E_FORMAT, "%s: the %s does not parse (%s); replace it with a PEM private key", path,
		               what, why);
	}
	return 0;
}

/* ------------------------------------------------------------ configs */

/* AES-GCM first: AES-NI makes it the cheapest on our servers; SHA-256 suites
 * first because mbedTLS ties an external PSK to SHA-256. */
static const int tls_suites[] = {
    MBEDTLS_TLS1_3_AES_128_GCM_SHA256,
    MBEDTLS_TLS1_3_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS1_3_AES_256_GCM_SHA384,
    0,
};

/* Zeroes c, initialises every member, and applies what all our configs share. */
static int conf_base(struct tls_config *c, enum tls_role role, enum tls_mode mode, struct ts_err *e)
{
	char why[160];
	memset(c, 0, sizeof(*c));
	c->role = role;
	c->mode = mode;
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_x509_crt_init(&c->own_cert);
	mbedtls_pk_init(&c->own_key);
	mbedtls_x509_crt_init(&c->ca);

	psa_status_t st = psa_crypto_init(); /* idempotent; mbedTLS 3.6 needs it before PK and TLS */
	if (st != PSA_SUCCESS)
		return ts_errf(e, E_INTERNAL, "tls: psa_crypto_init failed (status %d): no entropy source?", (int)st);
	int ret =
	    mbedtls_ssl_config_defaults(&c->conf, role == TLS_SERVER ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
	                                MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (ret != 0) {
		mbed_text(ret, why, sizeof(why));
		return ts_errf(e, E_INTERNAL, "tls: mbedtls_ssl_config_defaults: %s", why);
	}
	mbedtls_ssl_conf_min_tls_version(&c->conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_max_tls_version(&c->conf, MBEDTLS_SSL_VERSION_TLS1_3);
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_psa_get_random, MBEDTLS_PSA_RANDOM_STATE);
	mbedtls_ssl_conf_ciphersuites(&c->conf, tls_suites);
	mbedtls_ssl_conf_tls13_key_exchange_modes(&c->conf, mode == TLS_MODE_CERT
	                                                        ? MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL
	                                                        : MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL);
	/* No resumption: a server without ticket callbacks sends no tickets, and
	 * a client does not ask for them. */
	if (role == TLS_CLIENT)
		mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
	return 0;
}

/* A server's client-auth CA file: every certificate in it is a CA
 * (basicConstraints CA:TRUE) in its validity period; one that is not can
 * never let a client in, so boot stops here rather than at every handshake. */
static int ca_check(const mbedtls_x509_crt *ca, const char *path, struct ts_err *e)
{
	char when[48];
	int i = 1;
	for (const mbedtls_x509_crt *c = ca; c && c->raw.len; c = c->next, i++) {
		if (!c->MBEDTLS_PRIVATE(ca_istrue))
			return ts_errf(e, E_INVAL,
			               "%s: certificate %d is not a CA (no basicConstraints CA:TRUE): the CA file holds "
			               "the CA that signs client certificates (ca.crt of `tokenspeed certs DIR`)",
			               path, i);
		if (mbedtls_x509_time_is_past(&c->valid_to)) {
			time_msg(&c->valid_to, when, sizeof(when));
			return ts_errf(e, E_INVAL,
			               "%s: the CA certificate expired on %s, so no client certificate verifies; make "
			               "a new CA and certificates (`tokenspeed certs DIR`)",
			               path, when);
		}
		if (mbedtls_x509_time_is_future(&c->valid_from)) {
			time_msg(&c->valid_from, when, sizeof(when));
			return ts_errf(e, E_INVAL, "%s: the CA certificate is not valid until %s; check this machine's clock",
			               path, when);
		}
	}
	return 0;
}

/* The server's own certificate chains to its CA file: our clients verify the
 * server against the CA that signs their own certificates (one `tokenspeed
 * certs` directory), so a server certificate from another CA fails every
 * handshake. */
static int chain_check(mbedtls_x509_crt *own, const char *own_path, mbedtls_x509_crt *ca, const char *ca_path,
                       struct ts_err *e)
{
	uint32_t flags = 0;
	char info[256];
	if (mbedtls_x509_crt_verify(own, ca, NULL, NULL, &flags, NULL, NULL) == 0)
		return 0;
	int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
	for (int i = 0; i < n; i++)
		if (info[i] == '\n')
			info[i] = i == n - 1 ? 0 : ';';
	if (flags & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		return ts_errf(e, E_INVAL,
		               "%s: the certificate is not signed by the CA in %s, which our clients also trust; use "
		               "server.crt, server.key and ca.crt from one `tokenspeed certs DIR` (%s)",
		               own_path, ca_path, info);
	return ts_errf(e, E_INVAL, "%s: the certificate does not verify against the CA in %s (%s)", own_path, ca_path,
	               info);
}

/* Shared by both roles in CERT mode; cert and key may be NULL (client only). */
static int conf_cert(struct tls_config *c, enum tls_role role, const char *cert, const char *key, const char *ca,
                     struct ts_err *e)
{
	char why[160];
	int rc = conf_base(c, role, TLS_MODE_CERT, e);
	if (rc < 0)
		return rc;
	if (!ca || !*ca)
		return ts_errf(e, E_INVAL, "tls: no CA file given; %s needs the CA that %s certificates must chain to",
		               role == TLS_SERVER ? "the server" : "a client",
		               role == TLS_SERVER ? "client" : "server");
	if ((rc = crt_load(&c->ca, ca, "CA certificate", 0, e)) < 0)
		return rc;
	if (role == TLS_SERVER && (rc = ca_check(&c->ca, ca, e)) < 0)
		return rc;
	if (cert || key) {
		if (!cert || !key || !*cert || !*key)
			return ts_errf(e, E_INVAL,
			               "tls: a certificate needs its key and a key its certificate (got %s and %s)",
			               cert && *cert ? cert : "no certificate", key && *key ? key : "no key");
		if ((rc = crt_load(&c->own_cert, cert, "certificate", 1, e)) < 0)
			return rc;
		if ((rc = key_load(&c->own_key, key, "private key", e)) < 0)
			return rc;
		int ret = mbedtls_pk_check_pair(&c->own_cert.pk, &c->own_key, mbedtls_psa_get_random,
		                                MBEDTLS_PSA_RANDOM_STATE);
		if (ret != 0)
			return ts_errf(e, E_INVAL,
			               "%s: this key does not belong to the certificate in %s; give the pair "
			               "written together by `tokenspeed certs DIR`",
			               key, cert);
		if (role == TLS_SERVER && (rc = chain_check(&c->own_cert, cert, &c->ca, ca, e)) < 0)
			return rc;
		ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->own_cert, &c->own_key);
		if (ret != 0) {
			mbed_text(ret, why, sizeof(why));
			return ts_errf(e, E_INTERNAL, "tls: mbedtls_ssl_conf_own_cert: %s", why);
		}
		c->has_own_cert = 1;
	} else if (role == TLS_SERVER) {
		return ts_errf(e, E_INVAL, "tls: the server needs its certificate and key (tls_cert, tls_key)");
	}
	mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	c->ready = 1;
	return 0;
}

int tls_config_server(struct tls_config *c, const char *cert, const char *key, const char *ca, struct ts_err *e)
{
	tls_lock();
	int rc = conf_cert(c, TLS_SERVER, cert, key, ca, e);
	tls_unlock();
	if (rc < 0)
		tls_config_free(c);
	return rc;
}

int tls_config_client(struct tls_config *c, const char *cert, const char *key, const char *ca, const char *server_name,
                      struct ts_err *e)
{
	if (!server_name || !*server_name || strlen(server_name) >= TLS_NAME_MAX) {
		memset(c, 0, sizeof(*c));
		return ts_errf(e, E_INVAL,
		               "tls: a client needs the server's name (DNS name or IP address, under %d "
		               "bytes) to check its certificate against",
		               TLS_NAME_MAX);
	}
	tls_lock();
	int rc = conf_cert(c, TLS_CLIENT, cert, key, ca, e);
	tls_unlock();
	if (rc < 0) {
		tls_config_free(c);
		return rc;
	}
	snprintf(c->server_name, sizeof(c->server_name), "%s", server_name);
	return 0;
}

int tls_config_psk(struct tls_config *c, enum tls_role role, const char *identity, const uint8_t *key, size_t key_bytes,
                   struct ts_err *e)
{
	char why[160];
	size_t id_len = identity ? strlen(identity) : 0;
	memset(c, 0, sizeof(*c));
	if (id_len < 1 || id_len > TLS_PSK_ID_MAX_BYTES)
		return ts_errf(e, E_INVAL, "tls: PSK identity must be 1..%d printable ASCII characters",
		               TLS_PSK_ID_MAX_BYTES);
	for (size_t i = 0; i < id_len; i++)
		if (identity[i] < 0x21 || identity[i] > 0x7e)
			return ts_errf(e, E_INVAL, "tls: PSK identity \"%s\": only printable ASCII without spaces",
			               identity);
	if (key_bytes < TLS_PSK_MIN_BYTES || key_bytes > TLS_PSK_MAX_BYTES)
		return ts_errf(e, E_RANGE,
		               "tls: PSK of %zu bytes; use %d..%d random bytes (e.g. `openssl rand -hex 32`)",
		               key_bytes, TLS_PSK_MIN_BYTES, TLS_PSK_MAX_BYTES);
	tls_lock();
	int rc = conf_base(c, role, TLS_MODE_PSK, e);
	if (rc == 0) {
		int ret = mbedtls_ssl_conf_psk(&c->conf, key, key_bytes, (const unsigned char *)identity, id_len);
		if (ret != 0) {
			mbed_text(ret, why, sizeof(why));
			rc = ts_errf(e, E_INTERNAL, "tls: mbedtls_ssl_conf_psk: %s", why);
		}
	}
	tls_unlock();
	if (rc < 0) {
		tls_config_free(c);
		return rc;
	}
	snprintf(c->psk_id, sizeof(c->psk_id), "%s", identity);
	c->ready = 1;
	return 0;
}

int tls_psk_from_hex(const char *hex, uint8_t *out, size_t cap, const char *what, struct ts_err *e)
{
	size_t n = strlen(hex);
	if (n % 2)
		return ts_errf(e, E_FORMAT, "%s: a PSK is an even number of hex digits (got %zu)", what, n);
	if (n / 2 > cap)
		return ts_errf(e, E_RANGE, "%s: PSK of %zu bytes; at most %zu", what, n / 2, cap);
	for (size_t i = 0; i < n; i++) {
		char ch = hex[i];
		int v = ch >= '0' && ch <= '9'   ? ch - '0'
		        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
		        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
		                                 : -1;
		if (v < 0)
			return ts_errf(e, E_FORMAT, "%s: '%c' at %zu is not a hex digit", what, ch, i);
		if (i % 2)
			out[i / 2] = (uint8_t)(out[i / 2] | v);
		else
			out[i / 2] = (uint8_t)(v << 4);
	}
	return (int)(n / 2);
}

void tls_config_free(struct tls_config *c)
{
	tls_lock();
	mbedtls_ssl_config_free(&c->conf); /* zeroizes the PSK it copied */
	mbedtls_x509_crt_free(&c->own_cert);
	mbedtls_pk_free(&c->own_key);
	mbedtls_x509_crt_free(&c->ca);
	tls_unlock();
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------ I/O trampolines */

/* mbedTLS's BIO callbacks, mapping our TLS_WANT_IO and errors onto its codes
 * and remembering which direction would block. A send of 0 bytes counts as
 * would-block (mbedTLS would otherwise take it as progress). */
static int bio_send(void *ctx, const unsigned char *p, size_t n)
{
	struct tls_session *s = ctx;
	int r = s->send(s->ctx, p, n);
	if (r == TLS_WANT_IO || (r == 0 && n > 0)) {
		s->want = TLS_WANT_WRITE;
		return MBEDTLS_ERR_SSL_WANT_WRITE;
	}
	if (r < 0 || (size_t)r > n) {
		s->io_failed = 1;
		return MBEDTLS_ERR_NET_SEND_FAILED;
	}
	return r;
}

static int bio_recv(void *ctx, unsigned char *p, size_t n)
{
	struct tls_session *s = ctx;
	int r = s->recv(s->ctx, p, n);
	if (r == TLS_WANT_IO) {
		s->want = TLS_WANT_READ;
		return MBEDTLS_ERR_SSL_WANT_READ;
	}
	if (r < 0 || (size_t)r > n) {
		s->io_failed = 1;
		return MBEDTLS_ERR_NET_RECV_FAILED;
	}
	return r; /* 0: EOF, which mbedTLS reports as MBEDTLS_ERR_SSL_CONN_EOF */
}

/* ------------------------------------------------------------ failures */

static const struct {
	int code;
	const char *name;
} alert_names[] = {
    {MBEDTLS_SSL_ALERT_MSG_UNEXPECTED_MESSAGE, "unexpected_message"},
    {MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC, "bad_record_mac"},
    {MBEDTLS_SSL_ALERT_MSG_RECORD_OVERFLOW, "record_overflow"},
    {MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE, "handshake_failure"},
    {MBEDTLS_SSL_ALERT_MSG_BAD_CERT, "bad_certificate"},
    {MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT, "unsupported_certificate"},
    {MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED, "certificate_revoked"},
    {MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED, "certificate_expired"},
    {MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN, "certificate_unknown"},
    {MBEDTLS_SSL_ALERT_MSG_ILLEGAL_PARAMETER, "illegal_parameter"},
    {MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA, "unknown_ca"},
    {MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED, "access_denied"},
    {MBEDTLS_SSL_ALERT_MSG_DECODE_ERROR, "decode_error"},
    {MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR, "decrypt_error"},
    {MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION, "protocol_version"},
    {MBEDTLS_SSL_ALERT_MSG_INSUFFICIENT_SECURITY, "insufficient_security"},
    {MBEDTLS_SSL_ALERT_MSG_INTERNAL_ERROR, "internal_error"},
    {MBEDTLS_SSL_ALERT_MSG_MISSING_EXTENSION, "missing_extension"},
    {MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_EXT, "unsupported_extension"},
    {MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME, "unrecognized_name"},
    {MBEDTLS_SSL_ALERT_MSG_UNKNOWN_PSK_IDENTITY, "unknown_psk_identity"},
    {MBEDTLS_SSL_ALERT_MSG_CERT_REQUIRED, "certificate_required"},
};

static const char *alert_name(int a)
{
	for (size_t i = 0; i < TS_ARRAY_LEN(alert_names); i++)
		if (alert_names[i].code == a)
			return alert_names[i].name;
	return "?";
}

/* A fatal alert from the peer: what it most likely means for us. */
static int alert_fail(struct tls_session *s)
{
	/* mbedTLS 3.6 has no getter for a received alert; when it returns
	 * MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE, in_msg holds the 2-byte alert
	 * (level, description), checked by ssl_msg.c. */
	int a = s->ssl.MBEDTLS_PRIVATE(in_msg)[1];
	const char *n = alert_name(a);
	int peer_is_server = s->cfg->role == TLS_CLIENT;
	const char *peer = peer_is_server ? "server" : "client";
	switch (a) {
	case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:
	case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT:
	case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED:
	case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN:
	case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:
	case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED:
		return ts_errf(&s->err, E_INVAL,
		               "the %s refused our certificate (alert %s): it must be signed by the CA the %s trusts "
		               "(use certificates from one `tokenspeed certs` directory)",
		               peer, n, peer);
	case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED:
		return ts_errf(&s->err, E_INVAL, "the %s refused our certificate as expired (alert %s); make a new one",
		               peer, n);
	case MBEDTLS_SSL_ALERT_MSG_CERT_REQUIRED:
		return ts_errf(&s->err, E_INVAL,
		               "the %s requires a client certificate and we sent none (alert %s); configure the "
		               "client's certificate and key",
		               peer, n);
	case MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR:
		if (s->cfg->mode == TLS_MODE_PSK)
			return ts_errf(&s->err, E_INVAL, "the %s refused our PSK (alert %s): the keys differ", peer, n);
		return ts_errf(&s->err, E_INVAL, "the %s could not verify our handshake signature (alert %s)", peer, n);
	case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_PSK_IDENTITY:
		return ts_errf(&s->err, E_INVAL, "the %s does not know our PSK identity \"%s\" (alert %s)", peer,
		               s->cfg->psk_id, n);
	case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE:
		if (s->cfg->mode == TLS_MODE_PSK)
			return ts_errf(&s->err, E_INVAL,
			               "the %s refused the handshake (alert %s): in PSK mode, its identity or key "
			               "differs from ours, or it is not in PSK mode",
			               peer, n);
		return ts_errf(&s->err, E_UNSUPPORTED,
		               "the %s refused the handshake (alert %s): no common cipher suite, group or signature "
		               "algorithm, or it is in PSK mode",
		               peer, n);
	case MBEDTLS_SSL_ALERT_MSG_MISSING_EXTENSION:
		if (s->cfg->mode == TLS_MODE_PSK)
			return ts_errf(&s->err, E_INVAL,
			               "the %s does not know our PSK identity \"%s\", or is not in PSK mode (alert %s)",
			               peer, s->cfg->psk_id, n);
		return ts_errf(&s->err, E_UNSUPPORTED,
		               "the %s accepts none of our key exchanges: is it in PSK mode? (alert %s)", peer, n);
	case MBEDTLS_SSL_ALERT_MSG_PROTOCOL_VERSION:
		return ts_errf(&s->err, E_UNSUPPORTED, "the %s does not accept TLS 1.3 (alert %s)", peer, n);
	case MBEDTLS_SSL_ALERT_MSG_UNRECOGNIZED_NAME:
		return ts_errf(&s->err, E_INVAL, "the server does not answer to the name \"%s\" (alert %s)",
		               s->cfg->server_name, n);
	default:
		return ts_errf(&s->err, E_IO, "the %s ended the connection with alert %s (%d)", peer, n, a);
	}
}

/* The peer's certificate did not verify: say why, most useful reason first. */
static int verify_fail(struct tls_session *s)
{
	uint32_t f = mbedtls_ssl_get_verify_result(&s->ssl);
	const char *peer = s->cfg->role == TLS_SERVER ? "client" : "server";
	char info[512];
	int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", f);
	for (int i = 0; i < n; i++) /* one line: "a\nb\n" -> "a; b" */
		if (info[i] == '\n')
			info[i] = i == n - 1 ? 0 : ';';

	if (f == 0xffffffffu)
		return ts_errf(&s->err, E_INVAL, "the %s's certificate was refused", peer);
	if (f & MBEDTLS_X509_BADCERT_MISSING)
		return ts_errf(&s->err, E_INVAL,
		               "the %s sent no certificate; it needs one signed by our CA (`tokenspeed certs DIR` "
		               "writes client.crt and client.key)",
		               peer);
	if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
		return ts_errf(&s->err, E_INVAL,
		               "the %s's certificate is not signed by our CA; give it certificates from the same "
		               "`tokenspeed certs` directory as our CA (%s)",
		               peer, info);
	if (f & MBEDTLS_X509_BADCERT_EXPIRED)
		return ts_errf(&s->err, E_INVAL, "the %s's certificate has expired; make a new one (%s)", peer, info);
	if (f & MBEDTLS_X509_BADCERT_FUTURE)
		return ts_errf(&s->err, E_INVAL,
		               "the %s's certificate is not valid yet; check the clocks of both machines (%s)", peer,
		               info);
	if (f & MBEDTLS_X509_BADCERT_CN_MISMATCH)
		return ts_errf(&s->err, E_INVAL,
		               "the server's certificate is not for \"%s\"; connect by a name it carries, or make "
		               "certificates with --cn NAME (%s)",
		               s->cfg->server_name, info);
	if (f & (MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE))
		return ts_errf(&s->err, E_INVAL, "the %s's certificate is not made for TLS %s use (%s)", peer, peer,
		               info);
	return ts_errf(&s->err, E_INVAL, "the %s's certificate was refused (%s)", peer, info);
}

/* Any of mbedTLS's "allocation failed" codes, alone or as the low-level half
 * of a combined code (an X.509 error over ASN.1's, say). */
static int alloc_failed(int ret)
{
	int hi = -((-ret) & 0xFF80), lo = -((-ret) & 0x007F);
	return ret == PSA_ERROR_INSUFFICIENT_MEMORY || hi == MBEDTLS_ERR_SSL_ALLOC_FAILED ||
	       hi == MBEDTLS_ERR_PK_ALLOC_FAILED || hi == MBEDTLS_ERR_X509_ALLOC_FAILED ||
	       lo == MBEDTLS_ERR_ASN1_ALLOC_FAILED || lo == MBEDTLS_ERR_MPI_ALLOC_FAILED;
}

/* Turns a mbedTLS return into TLS_AGAIN or a negative E_* code with s->err
 * filled; a failure is sticky (later calls return it again).
 *
 * mbedTLS 3.6 sends some TLS 1.3 alerts under keys its peer is not using at
 * that moment: a server that refuses a client's certificate sends its alert
 * under handshake keys after its Finished (Mbed-TLS/mbedtls#10877), and a
 * client that refuses the server's certificate sends its alert in plaintext
 * while the server already expects handshake keys. The refused side then sees
 * a record that fails authentication instead of the alert. When that happens
 * before any application data came, the message says what it most likely
 * means; the side that refused has the exact reason in its own message. */
static int fail(struct tls_session *s, int ret, const char *during)
{
	char why[200];
	const char *peer = s->cfg->role == TLS_SERVER ? "client" : "server";
	int psk = s->cfg->mode == TLS_MODE_PSK;
	int in_handshake = !s->handshake_done;
	if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) {
		s->want = ret == MBEDTLS_ERR_SSL_WANT_READ ? TLS_WANT_READ : TLS_WANT_WRITE;
		return TLS_AGAIN;
	}
	if (alloc_failed(ret))
		return ts_errf(&s->err, E_NOMEM, "out of memory during the %s (the session's share of the TLS pool)",
		               during);
	switch (ret) {
	case MBEDTLS_ERR_NET_SEND_FAILED:
	case MBEDTLS_ERR_NET_RECV_FAILED:
		return ts_errf(&s->err, E_IO, "transport error during the %s", during);
	case MBEDTLS_ERR_SSL_CONN_EOF:
	case 0: /* from mbedtls_ssl_read: EOF without close_notify */
		return ts_errf(&s->err, E_IO, "the %s closed the connection during the %s without close_notify", peer,
		               during);
	case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
		return alert_fail(s);
	case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
	case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
	case MBEDTLS_ERR_SSL_BAD_CERTIFICATE:
		return verify_fail(s);
	case MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION:
		return ts_errf(&s->err, E_UNSUPPORTED, "the %s does not speak TLS 1.3, the only version we accept",
		               peer);
	case MBEDTLS_ERR_SSL_INVALID_MAC:
		if (in_handshake || s->bytes_in == 0)
			return ts_errf(&s->err, E_INVAL,
			               "the %s aborted the handshake; it most likely refused our %s (its alert was not "
			               "readable: an mbedTLS 3.6 quirk); the %s's log says why",
			               peer, psk ? "PSK" : "certificate", peer);
		return ts_errf(&s->err, E_FORMAT, "a record from the %s failed authentication (corrupted or forged)",
		               peer);
	case MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE:
	case MBEDTLS_ERR_SSL_ILLEGAL_PARAMETER:
	case MBEDTLS_ERR_SSL_DECODE_ERROR:
		if (in_handshake && s->cfg->role == TLS_SERVER && psk)
			return ts_errf(&s->err, E_INVAL,
			               "the client's PSK identity or key does not match ours (identity \"%s\"), or the "
			               "client is not in PSK mode",
			               s->cfg->psk_id);
		if (in_handshake && ret != MBEDTLS_ERR_SSL_DECODE_ERROR)
			return ts_errf(&s->err, E_UNSUPPORTED,
			               "no common ground with the %s: cipher suite, group, signature algorithm or key "
			               "exchange (is it in PSK mode?)",
			               peer);
		mbed_text(ret, why, sizeof(why));
		return ts_errf(&s->err, E_FORMAT, "malformed message from the %s during the %s (%s)", peer, during,
		               why);
	case MBEDTLS_ERR_SSL_INVALID_RECORD:
	case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
	case MBEDTLS_ERR_SSL_UNEXPECTED_RECORD:
		mbed_text(ret, why, sizeof(why));
		return ts_errf(&s->err, E_FORMAT, "bad record or message from the %s during the %s (%s)", peer, during,
		               why);
	default:
		mbed_text(ret, why, sizeof(why));
		return ts_errf(&s->err, E_INTERNAL, "%s failed: %s (-0x%04x)", during, why, (unsigned)-ret);
	}
}

/* ------------------------------------------------------------ sessions */

int tls_session_init(struct tls_session *s, const struct tls_config *c,
                     int (*send)(void *ctx, const uint8_t *p, size_t n), int (*recv)(void *ctx, uint8_t *p, size_t n),
                     void *ctx)
{
	char why[160];
	memset(s, 0, sizeof(*s));
	s->mem_owner = -1;
	if (!c || !c->ready)
		return ts_errf(&s->err, E_INVAL, "tls: session on a configuration that is not ready");
	if (tls_mem_owner_new(&s->mem_owner) < 0)
		return ts_errf(&s->err, E_NOMEM,
		               "tls: all the TLS sessions the pool was sized for at boot are in use");
	s->cfg = c;
	s->send = send;
	s->recv = recv;
	s->ctx = ctx;
	sess_enter(s);
	mbedtls_ssl_init(&s->ssl);
	int ret = FAULT(FAULT_TLS) ? MBEDTLS_ERR_SSL_ALLOC_FAILED : mbedtls_ssl_setup(&s->ssl, &c->conf);
	/* A client checks the server's name (and sends it as SNI). In PSK mode
	 * there is no certificate, so no name to check. */
	if (ret == 0 && c->role == TLS_CLIENT && c->mode == TLS_MODE_CERT)
		ret = mbedtls_ssl_set_hostname(&s->ssl, c->server_name);
	if (ret != 0)
		mbedtls_ssl_free(&s->ssl);
	sess_leave();
	if (ret != 0) {
		s->cfg = NULL;
		tls_mem_owner_free(s->mem_owner);
		s->mem_owner = -1;
		mbed_text(ret, why, sizeof(why));
		return ts_errf(&s->err, alloc_failed(ret) ? E_NOMEM : E_INTERNAL,
		               "tls: session setup: %s", why);
	}
	mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
	return 0;
}

/* CN of the peer's leaf certificate, printable ASCII only (it goes into logs). */
static void peer_name(struct tls_session *s)
{
	if (s->cfg->mode == TLS_MODE_PSK) {
		snprintf(s->peer_cn, sizeof(s->peer_cn), "%s", s->cfg->psk_id);
		return;
	}
	const mbedtls_x509_crt *pc = mbedtls_ssl_get_peer_cert(&s->ssl);
	for (const mbedtls_x509_name *n = pc ? &pc->subject : NULL; n; n = n->next) {
		if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) != 0)
			continue;
		size_t k = 0;
		for (size_t i = 0; i < n->val.len && k + 1 < sizeof(s->peer_cn); i++) {
			unsigned char ch = n->val.p[i];
			s->peer_cn[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
		}
		s->peer_cn[k] = 0;
		return;
	}
}

int tls_handshake(struct tls_session *s)
{
	if (s->err.code)
		return -s->err.code;
	if (s->handshake_done)
		return 0;
	if (s->handshake_s == 0)
		s->handshake_s = -ts_now(); /* start; becomes the duration when done */
	sess_enter(s);
	int ret = FAULT(FAULT_TLS) ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : mbedtls_ssl_handshake(&s->ssl);
	if (ret == 0)
		peer_name(s);
	sess_leave();
	if (ret != 0)
		return fail(s, ret, "handshake");
	s->handshake_done = 1;
	s->handshake_s += ts_now();
	return 0;
}

int tls_read(struct tls_session *s, uint8_t *p, size_t n)
{
	int rc = tls_handshake(s);
	if (rc != 0)
		return rc;
	if (n == 0)
		return ts_errf(&s->err, E_INVAL, "tls_read of 0 bytes");
	for (;;) {
		sess_enter(s);
		int ret = FAULT(FAULT_TLS) ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : mbedtls_ssl_read(&s->ssl, p, n);
		sess_leave();
		if (ret > 0) {
			s->bytes_in += (uint64_t)ret;
			return ret;
		}
		if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
			return 0;
		if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
			continue; /* not asked for; nothing to do with it */
		return fail(s, ret, "read");
	}
}

int tls_write(struct tls_session *s, const uint8_t *p, size_t n)
{
	int rc = tls_handshake(s);
	if (rc != 0)
		return rc;
	if (n == 0)
		return ts_errf(&s->err, E_INVAL, "tls_write of 0 bytes");
	sess_enter(s);
	int ret = FAULT(FAULT_TLS) ? MBEDTLS_ERR_SSL_INTERNAL_ERROR : mbedtls_ssl_write(&s->ssl, p, n);
	sess_leave();
	return ret > 0 ? ret : fail(s, ret, "write");
}

int tls_close_notify(struct tls_session *s)
{
	if (s->err.code)
		return -s->err.code;
	sess_enter(s);
	int ret = mbedtls_ssl_close_notify(&s->ssl);
	sess_leave();
	return ret == 0 ? 0 : fail(s, ret, "close_notify");
}

size_t tls_pending(const struct tls_session *s)
{
	return mbedtls_ssl_get_bytes_avail(&s->ssl);
}

int tls_want(const struct tls_session *s)
{
	return s->want;
}

const char *tls_peer_cn(const struct tls_session *s)
{
	return s->peer_cn;
}

const char *tls_suite(const struct tls_session *s)
{
	return s->handshake_done ? mbedtls_ssl_get_ciphersuite(&s->ssl) : "";
}

void tls_session_free(struct tls_session *s)
{
	if (s->cfg) {
		tls_lock();
		mbedtls_ssl_free(&s->ssl); /* destroys the session's PSA keys */
		tls_unlock();
		tls_mem_owner_free(s->mem_owner); /* after the frees, which credit it */
	}
	memset(s, 0, sizeof(*s));
	s->mem_owner = -1;
}

int tls_psk_load(const char *path, uint8_t *out, size_t cap, struct ts_err *e)
{
	char buf[256], *p = buf;
	FILE *f = fopen(path, "r");
	if (!f)
		return ts_errf(e, E_IO, "%s: cannot read the PSK file: %s", path, strerror(errno));
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	int more = fgetc(f) != EOF;
	fclose(f);
	if (more)
		return ts_errf(e, E_FORMAT, "%s: longer than a PSK in hex can be", path);
	buf[n] = 0;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	for (char *q = p + strlen(p); q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n' || q[-1] == '\r');)
		*--q = 0;
	return tls_psk_from_hex(p, out, cap, path, e);
}
