/* t_tls: TLS 1.3 sessions (src/tls.c) and `tokenspeed certs` (boot/certs.c).
 *
 * Certificates come from certs_make in mkdtemp directories: A (the good one),
 * B (another CA), N (a server certificate for another name, no loopback
 * names), plus an expired client certificate signed by A's CA. Then:
 *   a  mutual-auth handshake over a non-blocking socketpair, server on its own
 *      thread, 20 KB echoed back; TLS 1.3; each side sees the other's CN
 *   b  a client without a certificate is refused by the server
 *   c  a client certificate from another CA is refused
 *   d  a client that does not trust the server's CA refuses it
 *   e  a server certificate for another name is refused by a client that
 *      checks "localhost", and accepted by one that checks that name
 *   f  PSK mode: right key works, wrong key and wrong identity fail
 *   g  certs_make: modes (dir 0700, keys 0600, certificates 0644), the
 *      extensions, random serials; refuses to overwrite, naming the file
 *   h  a transport that moves one byte per call with TLS_WANT_IO in between
 *      still completes the handshake and the echo (the AGAIN paths)
 *   also an expired client certificate, a server certificate offered as a
 *   client's, config errors that name the file, and the memory a session
 *   holds and the handshake time (printed, not asserted).
 * Negative cases run both sides in one loop over an in-memory pipe; a side
 * that fails "closes" its end, as conn would.
 */
#include "../boot/certs.c" /* certs_make_opts and the helpers, for the odd certificates */

#include "t.h"
#include "tls.h"
#include "tls_mem.h"

#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/wait.h>

static char dir_a[96], dir_b[96], dir_n[96]; /* <mkdtemp dir>/certs */

static const char *path_in(const char *dir, const char *name)
{
	static char buf[8][256];
	static int k;
	char *p = buf[k++ % 8];
	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

/* ------------------------------------------------------------ in-memory transport */

#define PIPE_BYTES (1 << 17)

struct pipe {
	uint8_t buf[PIPE_BYTES];
	size_t r, w;
};

struct end {
	struct pipe *in, *out;
	int one_byte; /* move one byte per call, TLS_WANT_IO on every other call */
	int tick;
	int closed; /* this side is gone: the peer reads EOF once drained */
	struct end *peer;
	size_t peak_heap; /* the largest heap use seen from inside the callbacks */
};

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static int mem_send(void *ctx, const uint8_t *p, size_t n)
{
	struct end *e = ctx;
	size_t h = heap_used();
	e->peak_heap = h > e->peak_heap ? h : e->peak_heap;
	if (e->peer->closed)
		return -1;
	if (e->one_byte && (e->tick++ & 1))
		return TLS_WANT_IO;
	size_t room = PIPE_BYTES - e->out->w;
	if (room == 0)
		return TLS_WANT_IO;
	n = TS_MIN(n, e->one_byte ? 1 : room);
	memcpy(e->out->buf + e->out->w, p, n);
	e->out->w += n;
	return (int)n;
}

static int mem_recv(void *ctx, uint8_t *p, size_t n)
{
	struct end *e = ctx;
	size_t h = heap_used();
	e->peak_heap = h > e->peak_heap ? h : e->peak_heap;
	if (e->one_byte && (e->tick++ & 1))
		return TLS_WANT_IO;
	size_t avail = e->in->w - e->in->r;
	if (avail == 0)
		return e->peer->closed ? 0 : TLS_WANT_IO;
	n = TS_MIN(n, e->one_byte ? 1 : avail);
	memcpy(p, e->in->buf + e->in->r, n);
	e->in->r += n;
	if (e->in->r == e->in->w) /* reuse the buffer */
		e->in->r = e->in->w = 0;
	return (int)n;
}

struct pair {
	struct pipe c2s, s2c;
	struct end ce, se;
	struct tls_session c, s;
	int rc_c, rc_s;
};

static void pair_init(struct pair *p, const struct tls_config *cc, const struct tls_config *sc, int one_byte)
{
	memset(p, 0, sizeof(*p));
	p->ce = (struct end){.in = &p->s2c, .out = &p->c2s, .one_byte = one_byte, .peer = &p->se};
	p->se = (struct end){.in = &p->c2s, .out = &p->s2c, .one_byte = one_byte, .peer = &p->ce};
	int a = tls_session_init(&p->c, cc, mem_send, mem_recv, &p->ce);
	int b = tls_session_init(&p->s, sc, mem_send, mem_recv, &p->se);
	T_CHECK(a == 0 && b == 0, "session init: %s / %s", p->c.err.msg, p->s.err.msg);
}

/* Both handshakes to completion or failure; a failed side closes its end. */
static void pair_handshake(struct pair *p)
{
	p->rc_c = p->rc_s = TLS_AGAIN;
	for (int i = 0; i < 2000000 && (p->rc_c == TLS_AGAIN || p->rc_s == TLS_AGAIN); i++) {
		if (p->rc_c == TLS_AGAIN && (p->rc_c = tls_handshake(&p->c)) < 0 && p->rc_c != TLS_AGAIN)
			p->ce.closed = 1;
		if (p->rc_s == TLS_AGAIN && (p->rc_s = tls_handshake(&p->s)) < 0 && p->rc_s != TLS_AGAIN)
			p->se.closed = 1;
	}
}

/* After a handshake the client thinks complete: its first read, pumped until
 * it is not AGAIN (the server's alert, if the server refused it). */
static int client_read_result(struct pair *p)
{
	uint8_t b[64];
	int r = TLS_AGAIN;
	for (int i = 0; i < 100000 && r == TLS_AGAIN; i++)
		r = tls_read(&p->c, b, sizeof(b));
	return r;
}

static void pair_free(struct pair *p)
{
	tls_session_free(&p->c);
	tls_session_free(&p->s);
}

/* Echo n bytes client -> server -> client over an established pair. */
static int pair_echo(struct pair *p, size_t n)
{
	static uint8_t out[32768], mid[32768], back[32768];
	size_t sent = 0, got_s = 0, echoed = 0, got_c = 0;
	if (n > sizeof(out))
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)(i * 131 + 7);
	for (int it = 0; it < 4000000 && got_c < n; it++) {
		int r;
		if (sent < n && (r = tls_write(&p->c, out + sent, n - sent)) != TLS_AGAIN) {
			if (r < 0)
				return r;
			sent += (size_t)r;
		}
		if (got_s < n && (r = tls_read(&p->s, mid + got_s, n - got_s)) != TLS_AGAIN) {
			if (r <= 0)
				return r ? r : -E_IO;
			got_s += (size_t)r;
		}
		if (echoed < got_s && (r = tls_write(&p->s, mid + echoed, got_s - echoed)) != TLS_AGAIN) {
			if (r < 0)
				return r;
			echoed += (size_t)r;
		}
		if (got_c < echoed && (r = tls_read(&p->c, back + got_c, n - got_c)) != TLS_AGAIN) {
			if (r <= 0)
				return r ? r : -E_IO;
			got_c += (size_t)r;
		}
	}
	return got_c == n && memcmp(out, back, n) == 0 ? 0 : -E_INTERNAL;
}

/* ------------------------------------------------------------ configs */

static struct tls_config srv_a, cli_a, cli_nocert, cli_b, cli_trusts_b, cli_expired, cli_srvcert;

static void configs(void)
{
	struct ts_err e = {0};
	int rc = tls_config_server(&srv_a, path_in(dir_a, "server.crt"), path_in(dir_a, "server.key"),
	                           path_in(dir_a, "ca.crt"), &e);
	T_CHECK(rc == 0, "server config: %s", e.msg);
	rc = tls_config_client(&cli_a, path_in(dir_a, "client.crt"), path_in(dir_a, "client.key"),
	                       path_in(dir_a, "ca.crt"), "localhost", &e);
	T_CHECK(rc == 0, "client config: %s", e.msg);
	rc = tls_config_client(&cli_nocert, NULL, NULL, path_in(dir_a, "ca.crt"), "localhost", &e);
	T_CHECK(rc == 0, "client config without certificate: %s", e.msg);
	/* B's client: trusts A's CA (so only its own certificate is wrong). */
	rc = tls_config_client(&cli_b, path_in(dir_b, "client.crt"), path_in(dir_b, "client.key"),
	                       path_in(dir_a, "ca.crt"), "localhost", &e);
	T_CHECK(rc == 0, "client B config: %s", e.msg);
	/* A's client certificate, but trusting only B's CA. */
	rc = tls_config_client(&cli_trusts_b, path_in(dir_a, "client.crt"), path_in(dir_a, "client.key"),
	                       path_in(dir_b, "ca.crt"), "localhost", &e);
	T_CHECK(rc == 0, "client trusting B config: %s", e.msg);
	/* A's server certificate offered as a client's (extendedKeyUsage serverAuth only). */
	rc = tls_config_client(&cli_srvcert, path_in(dir_a, "server.crt"), path_in(dir_a, "server.key"),
	                       path_in(dir_a, "ca.crt"), "localhost", &e);
	T_CHECK(rc == 0, "client with the server's certificate: %s", e.msg);
}

/* An already expired client certificate signed by A's CA, written into N.
 * tls_config_client refuses an expired certificate of its own (by design),
 * so the client config is built by hand from the same pieces. */
static void expired_client(void)
{
	struct ts_err e = {0};
	mbedtls_pk_context ca_key, key;
	unsigned char pem[CERTS_PEM_BYTES];
	mbedtls_pk_init(&ca_key);
	mbedtls_pk_init(&key);
	int ret = mbedtls_pk_parse_keyfile(&ca_key, path_in(dir_a, "ca.key"), NULL, mbedtls_psa_get_random, NULL);
	T_CHECK(ret == 0, "ca.key parse -0x%04x", (unsigned)-ret);
	T_CHECK(certs_key_new(&key, &e) == 0, "%s", e.msg);
	time_t now = time(NULL);
	struct cert_spec spec = {
	    .subject = "CN=old-client,O=TokenSpeed",
	    .issuer = "CN=tokenspeed-ca,O=TokenSpeed",
	    .subject_key = &key,
	    .issuer_key = &ca_key,
	    .eku_oid = MBEDTLS_OID_CLIENT_AUTH,
	    .eku_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_CLIENT_AUTH),
	    .not_before = now - 10 * 86400,
	    .not_after = now - 86400,
	};
	T_CHECK(certs_cert_pem(&spec, pem, sizeof(pem), &e) == 0, "%s", e.msg);
	T_CHECK(certs_file_new(dir_n, "old.crt", pem, strlen((char *)pem), 0644, &e) == 0, "%s", e.msg);
	T_CHECK(certs_write_key(dir_n, "old.key", &key, &e) == 0, "%s", e.msg);
	/* the same key in an expired server certificate from A's CA, and an
	 * expired self-signed CA (for the config checks) */
	spec.subject = "CN=localhost,O=TokenSpeed";
	spec.eku_oid = MBEDTLS_OID_SERVER_AUTH;
	spec.eku_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH);
	T_CHECK(certs_cert_pem(&spec, pem, sizeof(pem), &e) == 0, "%s", e.msg);
	T_CHECK(certs_file_new(dir_n, "old-server.crt", pem, strlen((char *)pem), 0644, &e) == 0, "%s", e.msg);
	struct cert_spec ca_spec = {
	    .subject = "CN=old-ca,O=TokenSpeed",
	    .issuer = "CN=old-ca,O=TokenSpeed",
	    .subject_key = &key,
	    .issuer_key = &key,
	    .is_ca = 1,
	    .not_before = now - 10 * 86400,
	    .not_after = now - 86400,
	};
	T_CHECK(certs_cert_pem(&ca_spec, pem, sizeof(pem), &e) == 0, "%s", e.msg);
	T_CHECK(certs_file_new(dir_n, "old-ca.crt", pem, strlen((char *)pem), 0644, &e) == 0, "%s", e.msg);

	/* The config tls_config_client would build, minus its expiry check. */
	struct ts_err e2 = {0};
	int rc = tls_config_client(&cli_expired, NULL, NULL, path_in(dir_a, "ca.crt"), "localhost", &e2);
	T_CHECK(rc == 0, "%s", e2.msg);
	ret = mbedtls_x509_crt_parse_file(&cli_expired.own_cert, path_in(dir_n, "old.crt"));
	T_CHECK(ret == 0, "old.crt -0x%04x", (unsigned)-ret);
	ret = mbedtls_pk_parse_keyfile(&cli_expired.own_key, path_in(dir_n, "old.key"), NULL, mbedtls_psa_get_random,
	                               NULL);
	T_CHECK(ret == 0, "old.key -0x%04x", (unsigned)-ret);
	T_CHECK(mbedtls_ssl_conf_own_cert(&cli_expired.conf, &cli_expired.own_cert, &cli_expired.own_key) == 0,
	        "own cert");

	/* And tls_config_client itself refuses it, naming the file. */
	struct tls_config tmp;
	rc = tls_config_client(&tmp, path_in(dir_n, "old.crt"), path_in(dir_n, "old.key"), path_in(dir_a, "ca.crt"),
	                       "localhost", &e2);
	T_CHECK(rc == -E_INVAL, "expired own certificate accepted: %d", rc);
	T_HAS(e2.msg, "old.crt");
	T_HAS(e2.msg, "expired");
	mbedtls_pk_free(&ca_key);
	mbedtls_pk_free(&key);
}

/* ------------------------------------------------------------ a: socketpair, two threads */

static int fd_send(void *ctx, const uint8_t *p, size_t n)
{
	ssize_t r = send(*(int *)ctx, p, n, MSG_NOSIGNAL);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -1;
	return (int)r;
}

static int fd_recv(void *ctx, uint8_t *p, size_t n)
{
	ssize_t r = recv(*(int *)ctx, p, n, 0);
	if (r < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -1;
	return (int)r;
}

/* Waits until fd is ready for what s wants; 0, or -1 after 5 s. */
static int wait_for(int fd, const struct tls_session *s)
{
	struct pollfd pfd = {.fd = fd, .events = tls_want(s) == TLS_WANT_WRITE ? POLLOUT : POLLIN};
	return poll(&pfd, 1, 5000) == 1 ? 0 : -1;
}

#define ECHO_BYTES 20000 /* more than one 16 KiB record */

struct srv_job {
	int fd;
	const struct tls_config *cfg; /* NULL: srv_a */
	int rc, version, echoed, eof;
	char cn[TLS_NAME_MAX], err[1024];
};

static void *server_thread(void *arg)
{
	struct srv_job *j = arg;
	struct tls_session s;
	static uint8_t buf[ECHO_BYTES];
	size_t got = 0, sent = 0;
	int r;
	j->rc = tls_session_init(&s, j->cfg ? j->cfg : &srv_a, fd_send, fd_recv, &j->fd);
	if (j->rc < 0)
		return NULL;
	while ((r = tls_handshake(&s)) == TLS_AGAIN)
		if (wait_for(j->fd, &s) < 0)
			break;
	j->rc = r;
	if (r == 0) {
		j->version = (int)mbedtls_ssl_get_version_number(&s.ssl);
		snprintf(j->cn, sizeof(j->cn), "%s", tls_peer_cn(&s));
		while (got < ECHO_BYTES) {
			r = tls_read(&s, buf + got, ECHO_BYTES - got);
			if (r == TLS_AGAIN && wait_for(j->fd, &s) == 0)
				continue;
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		while (sent < got) {
			r = tls_write(&s, buf + sent, got - sent);
			if (r == TLS_AGAIN && wait_for(j->fd, &s) == 0)
				continue;
			if (r <= 0)
				break;
			sent += (size_t)r;
		}
		j->echoed = (int)sent;
		while ((r = tls_read(&s, buf, sizeof(buf))) == TLS_AGAIN && wait_for(j->fd, &s) == 0)
			;
		j->eof = r == 0; /* the client's close_notify */
	}
	snprintf(j->err, sizeof(j->err), "%s", s.err.msg);
	tls_session_free(&s);
	return NULL;
}

/* The client half of test_socketpair's exchange (handshake, echo, close) on
 * fd with config cc; 0 when all of it worked. */
static int client_side(int fd, const struct tls_config *cc)
{
	struct tls_session c;
	static uint8_t out[ECHO_BYTES], back[ECHO_BYTES];
	size_t sent = 0, got = 0;
	int r;
	if (tls_session_init(&c, cc, fd_send, fd_recv, &fd) < 0)
		return -1;
	while ((r = tls_handshake(&c)) == TLS_AGAIN && wait_for(fd, &c) == 0)
		;
	while (r == 0 && sent < ECHO_BYTES) {
		int w = tls_write(&c, out + sent, ECHO_BYTES - sent);
		if (w == TLS_AGAIN && wait_for(fd, &c) == 0)
			continue;
		if (w <= 0)
			break;
		sent += (size_t)w;
	}
	while (r == 0 && got < ECHO_BYTES) {
		int n = tls_read(&c, back + got, ECHO_BYTES - got);
		if (n == TLS_AGAIN && wait_for(fd, &c) == 0)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	while (r == 0 && (r = tls_close_notify(&c)) == TLS_AGAIN && wait_for(fd, &c) == 0)
		;
	tls_session_free(&c);
	return r == 0 && got == ECHO_BYTES ? 0 : -1;
}

/* What one server session (config sc) holds by size class in the pool while
 * a client with config cc, in a child process of its own (so its memory is
 * not counted), handshakes, echoes and closes. */
static int server_session(const struct tls_config *sc, const struct tls_config *cc, size_t *bytes, char *err,
                          size_t err_n)
{
	int sv[2];
	struct tls_mem_stats st;
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0, "socketpair");
	tls_mem_reset_peaks();
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[1]);
		_exit(client_side(sv[0], cc) == 0 ? 0 : 1);
	}
	close(sv[0]);
	struct srv_job j = {.fd = sv[1], .cfg = sc};
	server_thread(&j);
	int status = 0;
	waitpid(pid, &status, 0);
	close(sv[1]);
	tls_mem_stats(&st);
	*bytes = st.class_peak_bytes;
	snprintf(err, err_n, "%s", j.err);
	if (j.rc == 0 && (j.echoed != ECHO_BYTES || !WIFEXITED(status) || WEXITSTATUS(status) != 0))
		return -E_INTERNAL;
	return j.rc;
}

static size_t server_session_bytes(const struct tls_config *sc, const struct tls_config *cc)
{
	size_t bytes = 0;
	char err[1024];
	int rc = server_session(sc, cc, &bytes, err, sizeof(err));
	T_CHECK(rc == 0, "server session in the pool: %d %s", rc, err);
	return bytes;
}

static void test_socketpair(void)
{
	int sv[2];
	T_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0, "socketpair: %s", strerror(errno));
	struct srv_job j = {.fd = sv[1]};
	pthread_t th;
	T_CHECK(pthread_create(&th, NULL, server_thread, &j) == 0, "pthread_create");

	struct tls_session c;
	static uint8_t out[ECHO_BYTES], back[ECHO_BYTES];
	size_t sent = 0, got = 0;
	int r;
	for (size_t i = 0; i < ECHO_BYTES; i++)
		out[i] = (uint8_t)(i * 7 + 1);
	T_CHECK(tls_session_init(&c, &cli_a, fd_send, fd_recv, &sv[0]) == 0, "%s", c.err.msg);
	while ((r = tls_handshake(&c)) == TLS_AGAIN)
		if (wait_for(sv[0], &c) < 0)
			break;
	T_CHECK(r == 0, "client handshake: %d %s", r, c.err.msg);
	T_CHECK(mbedtls_ssl_get_version_number(&c.ssl) == MBEDTLS_SSL_VERSION_TLS1_3, "version %s",
	        mbedtls_ssl_get_version(&c.ssl));
	T_CHECK(!strcmp(mbedtls_ssl_get_version(&c.ssl), "TLSv1.3"), "version %s", mbedtls_ssl_get_version(&c.ssl));
	T_CHECK(!strcmp(tls_peer_cn(&c), "tokenspeed"), "server CN \"%s\"", tls_peer_cn(&c));
	printf("socketpair: %s, client handshake %.2f ms\n", tls_suite(&c), c.handshake_s * 1e3);
	while (r == 0 && sent < ECHO_BYTES) {
		int w = tls_write(&c, out + sent, ECHO_BYTES - sent);
		if (w == TLS_AGAIN && wait_for(sv[0], &c) == 0)
			continue;
		if (w <= 0)
			break;
		sent += (size_t)w;
	}
	while (r == 0 && got < ECHO_BYTES) {
		int n = tls_read(&c, back + got, ECHO_BYTES - got);
		if (n == TLS_AGAIN && wait_for(sv[0], &c) == 0)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	T_CHECK(sent == ECHO_BYTES && got == ECHO_BYTES && !memcmp(out, back, ECHO_BYTES), "echo: sent %zu got %zu: %s",
	        sent, got, c.err.msg);
	while ((r = tls_close_notify(&c)) == TLS_AGAIN && wait_for(sv[0], &c) == 0)
		;
	T_CHECK(r == 0, "close_notify: %s", c.err.msg);
	pthread_join(th, NULL);
	T_CHECK(j.rc == 0, "server handshake: %s", j.err);
	T_CHECK(j.version == MBEDTLS_SSL_VERSION_TLS1_3, "server version %x", j.version);
	T_CHECK(!strcmp(j.cn, "tokenspeed-client"), "client CN \"%s\"", j.cn);
	T_CHECK(j.echoed == ECHO_BYTES, "server echoed %d", j.echoed);
	T_CHECK(j.eof, "server saw no close_notify: %s", j.err);
	tls_session_free(&c);
	close(sv[0]);
	close(sv[1]);
}

/* ------------------------------------------------------------ b..f: refusals */

static void test_refusals(void)
{
	struct pair p;

	/* b: no client certificate. */
	pair_init(&p, &cli_nocert, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s == -E_INVAL, "server accepted a client without a certificate: %d", p.rc_s);
	T_HAS(p.s.err.msg, "sent no certificate");
	if (p.rc_c == 0) /* TLS 1.3: the client's handshake ends before the server decides */
		p.rc_c = client_read_result(&p);
	T_CHECK(p.rc_c == -E_INVAL, "client: %d %s", p.rc_c, p.c.err.msg);
	T_HAS(p.c.err.msg, "certificate");
	printf("b: server: %s | client: %s\n", p.s.err.msg, p.c.err.msg);
	pair_free(&p);

	/* c: client certificate from another CA. */
	pair_init(&p, &cli_b, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s == -E_INVAL, "server accepted B's client: %d", p.rc_s);
	T_HAS(p.s.err.msg, "not signed by our CA");
	if (p.rc_c == 0)
		p.rc_c = client_read_result(&p);
	T_CHECK(p.rc_c == -E_INVAL, "client: %d %s", p.rc_c, p.c.err.msg);
	T_HAS(p.c.err.msg, "refused our certificate");
	printf("c: server: %s | client: %s\n", p.s.err.msg, p.c.err.msg);
	pair_free(&p);

	/* d: the client does not trust the server's CA. */
	pair_init(&p, &cli_trusts_b, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_c == -E_INVAL, "client accepted a server from another CA: %d", p.rc_c);
	T_HAS(p.c.err.msg, "server's certificate is not signed by our CA");
	T_CHECK(p.rc_s < 0 && p.rc_s != TLS_AGAIN, "server: %d", p.rc_s);
	printf("d: client: %s | server: %s\n", p.c.err.msg, p.s.err.msg);
	pair_free(&p);

	/* e: a server certificate for another name. */
	struct tls_config srv_n, cli_other;
	struct ts_err e = {0};
	/* A server whose certificate (N's) does not chain to its CA file (A's)
	 * stops at config time: our clients trust that one CA for both. */
	int rc = tls_config_server(&srv_n, path_in(dir_n, "server.crt"), path_in(dir_n, "server.key"),
	                           path_in(dir_a, "ca.crt"), &e);
	T_CHECK(rc == -E_INVAL, "a server certificate from another CA than tls_ca accepted: %d", rc);
	T_HAS(e.msg, "server.crt: the certificate is not signed by the CA in");
	T_HAS(e.msg, "one `tokenspeed certs DIR`");
	rc = tls_config_client(&cli_other, path_in(dir_n, "client.crt"), path_in(dir_n, "client.key"),
	                       path_in(dir_n, "ca.crt"), "localhost", &e);
	T_CHECK(rc == 0, "%s", e.msg);
	rc = tls_config_server(&srv_n, path_in(dir_n, "server.crt"), path_in(dir_n, "server.key"),
	                       path_in(dir_n, "ca.crt"), &e);
	T_CHECK(rc == 0, "%s", e.msg);
	pair_init(&p, &cli_other, &srv_n, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_c == -E_INVAL, "client accepted a certificate for another name: %d", p.rc_c);
	T_HAS(p.c.err.msg, "not for \"localhost\"");
	printf("e: client: %s\n", p.c.err.msg);
	pair_free(&p);
	tls_config_free(&cli_other);
	rc = tls_config_client(&cli_other, path_in(dir_n, "client.crt"), path_in(dir_n, "client.key"),
	                       path_in(dir_n, "ca.crt"), "other.example", &e);
	T_CHECK(rc == 0, "%s", e.msg);
	pair_init(&p, &cli_other, &srv_n, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_c == 0 && p.rc_s == 0, "by its own name: %s | %s", p.c.err.msg, p.s.err.msg);
	pair_free(&p);
	tls_config_free(&cli_other);
	tls_config_free(&srv_n);

	/* An expired client certificate from the right CA. */
	pair_init(&p, &cli_expired, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s == -E_INVAL, "server accepted an expired client certificate: %d", p.rc_s);
	T_HAS(p.s.err.msg, "expired");
	if (p.rc_c == 0)
		p.rc_c = client_read_result(&p);
	T_CHECK(p.rc_c == -E_INVAL, "client: %d %s", p.rc_c, p.c.err.msg);
	printf("expired: server: %s | client: %s\n", p.s.err.msg, p.c.err.msg);
	pair_free(&p);

	/* The server's certificate offered by a client: wrong extendedKeyUsage. */
	pair_init(&p, &cli_srvcert, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s == -E_INVAL, "server accepted a serverAuth-only certificate from a client: %d", p.rc_s);
	T_HAS(p.s.err.msg, "not made for TLS client use");
	printf("eku: server: %s\n", p.s.err.msg);
	pair_free(&p);
}

static void test_psk(void)
{
	struct tls_config ps, pc, pc_bad, pc_id;
	struct ts_err e = {0};
	uint8_t key[32], bad[32];
	int n = tls_psk_from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F", key, sizeof(key),
	                         "psk", &e);
	T_CHECK(n == 32, "hex: %d %s", n, e.msg);
	T_CHECK(key[10] == 10 && key[31] == 31, "hex bytes");
	T_CHECK(tls_psk_from_hex("abc", bad, sizeof(bad), "[server] psk", &e) == -E_FORMAT, "odd hex");
	T_HAS(e.msg, "[server] psk");
	T_CHECK(tls_psk_from_hex("zz", bad, sizeof(bad), "psk", &e) == -E_FORMAT, "bad hex");
	memcpy(bad, key, sizeof(bad));
	bad[5] ^= 1;

	T_CHECK(tls_config_psk(&ps, TLS_SERVER, "agent-1", key, sizeof(key), &e) == 0, "%s", e.msg);
	T_CHECK(tls_config_psk(&pc, TLS_CLIENT, "agent-1", key, sizeof(key), &e) == 0, "%s", e.msg);
	T_CHECK(tls_config_psk(&pc_bad, TLS_CLIENT, "agent-1", bad, sizeof(bad), &e) == 0, "%s", e.msg);
	T_CHECK(tls_config_psk(&pc_id, TLS_CLIENT, "agent-2", key, sizeof(key), &e) == 0, "%s", e.msg);
	struct tls_config t;
	T_CHECK(tls_config_psk(&t, TLS_CLIENT, "x", key, 8, &e) == -E_RANGE, "short PSK accepted");
	T_HAS(e.msg, "8 bytes");
	T_CHECK(tls_config_psk(&t, TLS_CLIENT, "a b", key, 32, &e) == -E_INVAL, "identity with a space accepted");

	struct pair p;
	pair_init(&p, &pc, &ps, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_c == 0 && p.rc_s == 0, "PSK handshake: %s | %s", p.c.err.msg, p.s.err.msg);
	T_CHECK(mbedtls_ssl_get_version_number(&p.c.ssl) == MBEDTLS_SSL_VERSION_TLS1_3, "PSK version");
	T_CHECK(!strcmp(tls_peer_cn(&p.s), "agent-1"), "PSK peer \"%s\"", tls_peer_cn(&p.s));
	T_CHECK(pair_echo(&p, 3000) == 0, "PSK echo: %s | %s", p.c.err.msg, p.s.err.msg);
	pair_free(&p);

	pair_init(&p, &pc_bad, &ps, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s == -E_INVAL, "server accepted a wrong PSK: %d %s", p.rc_s, p.s.err.msg);
	T_CHECK(p.rc_c == -E_INVAL, "client with a wrong PSK: %d %s", p.rc_c, p.c.err.msg);
	T_HAS(p.c.err.msg, "PSK");
	printf("f wrong key: server: %s | client: %s\n", p.s.err.msg, p.c.err.msg);
	pair_free(&p);

	pair_init(&p, &pc_id, &ps, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s == -E_INVAL && p.rc_c == -E_INVAL, "wrong identity: %d %d", p.rc_s, p.rc_c);
	printf("f wrong identity: server: %s | client: %s\n", p.s.err.msg, p.c.err.msg);
	pair_free(&p);

	/* A PSK client against a certificate server: no common key exchange. */
	pair_init(&p, &pc, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(p.rc_s < 0 && p.rc_s != TLS_AGAIN && p.rc_c < 0 && p.rc_c != TLS_AGAIN, "PSK vs CERT: %d %d", p.rc_s,
	        p.rc_c);
	printf("PSK client vs CERT server: server: %s | client: %s\n", p.s.err.msg, p.c.err.msg);
	pair_free(&p);

	tls_config_free(&ps);
	tls_config_free(&pc);
	tls_config_free(&pc_bad);
	tls_config_free(&pc_id);
}

/* ------------------------------------------------------------ g: certs_make */

static mode_t mode_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static void test_certs_files(void)
{
	struct ts_err e = {0};
	T_CHECK(mode_of(dir_a) == 0700, "dir mode %o", (unsigned)mode_of(dir_a));
	for (size_t i = 0; i < TS_ARRAY_LEN(certs_files); i++) {
		const char *f = certs_files[i];
		mode_t want = strstr(f, ".key") ? 0600 : 0644;
		T_CHECK(mode_of(path_in(dir_a, f)) == want, "%s mode %o", f, (unsigned)mode_of(path_in(dir_a, f)));
	}
	/* Again into A: refused, naming the first file, nothing changed. */
	struct stat before, after;
	stat(path_in(dir_a, "ca.key"), &before);
	T_CHECK(certs_make(dir_a, 365, NULL, &e) == -E_IO, "overwrote");
	T_HAS(e.msg, "ca.crt exists");
	T_HAS(e.msg, "never overwrites");
	stat(path_in(dir_a, "ca.key"), &after);
	T_CHECK(before.st_ino == after.st_ino && before.st_mtime == after.st_mtime, "ca.key touched");
	/* One existing file among six: refused before anything is written. */
	char d[64];
	snprintf(d, sizeof(d), "/tmp/t_tls_g.XXXXXX");
	T_CHECK(mkdtemp(d) != NULL, "mkdtemp");
	int fd = open(path_in(d, "client.key"), O_CREAT | O_WRONLY, 0600);
	close(fd);
	T_CHECK(certs_make(d, 365, NULL, &e) == -E_IO, "wrote over client.key");
	T_HAS(e.msg, "client.key exists");
	T_CHECK(mode_of(path_in(d, "ca.crt")) == (mode_t)-1, "ca.crt written before the refusal");
	unlink(path_in(d, "client.key"));
	rmdir(d);
	/* Bad arguments. */
	T_CHECK(certs_make("/tmp/t_tls_never", 0, NULL, &e) == -E_RANGE, "days 0");
	T_CHECK(certs_make("/tmp/t_tls_never", 30, "a,b=c", &e) == -E_INVAL, "cn with a comma");
	T_HAS(e.msg, "--cn");

	/* What the certificates say. */
	mbedtls_x509_crt ca, srv, cli;
	char info[4096];
	mbedtls_x509_crt_init(&ca);
	mbedtls_x509_crt_init(&srv);
	mbedtls_x509_crt_init(&cli);
	T_CHECK(mbedtls_x509_crt_parse_file(&ca, path_in(dir_a, "ca.crt")) == 0, "ca.crt parses");
	T_CHECK(mbedtls_x509_crt_parse_file(&srv, path_in(dir_a, "server.crt")) == 0, "server.crt parses");
	T_CHECK(mbedtls_x509_crt_parse_file(&cli, path_in(dir_a, "client.crt")) == 0, "client.crt parses");
	mbedtls_x509_crt_info(info, sizeof(info), "", &ca);
	T_HAS(info, "CA=true");
	T_HAS(info, "Key Cert Sign");
	T_HAS(info, "ECDSA with SHA256");
	T_HAS(info, "EC key size       : 256 bits");
	mbedtls_x509_crt_info(info, sizeof(info), "", &srv);
	T_HAS(info, "CN=tokenspeed");
	T_HAS(info, "CA=false");
	T_HAS(info, "TLS Web Server Authentication");
	T_HAS(info, "dNSName : localhost");
	T_HAS(info, "iPAddress : 127.0.0.1");
	T_HAS(info, "Digital Signature");
	mbedtls_x509_crt_info(info, sizeof(info), "", &cli);
	T_HAS(info, "TLS Web Client Authentication");
	T_CHECK(!strstr(info, "Server Authentication"), "client cert has serverAuth");
	T_CHECK(srv.serial.len == 16 && cli.serial.len == 16, "serial lengths %zu %zu", srv.serial.len, cli.serial.len);
	T_CHECK(memcmp(srv.serial.p, cli.serial.p, 16) != 0, "serials equal");
	uint32_t flags = 0;
	T_CHECK(mbedtls_x509_crt_verify(&srv, &ca, NULL, "localhost", &flags, NULL, NULL) == 0, "server chain %x",
	        flags);
	T_CHECK(mbedtls_x509_crt_verify(&srv, &ca, NULL, "127.0.0.1", &flags, NULL, NULL) == 0, "by IP %x", flags);
	T_CHECK(mbedtls_x509_crt_verify(&srv, &ca, NULL, "::1", &flags, NULL, NULL) == 0, "by IPv6 %x", flags);
	T_CHECK(mbedtls_x509_crt_verify(&srv, &ca, NULL, "tokenspeed", &flags, NULL, NULL) == 0, "by CN %x", flags);
	T_CHECK(mbedtls_x509_crt_verify(&srv, &ca, NULL, "example.com", &flags, NULL, NULL) != 0, "any name");
	T_CHECK(mbedtls_x509_crt_verify(&cli, &ca, NULL, NULL, &flags, NULL, NULL) == 0, "client chain %x", flags);
	/* About 365 days from now. */
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	T_CHECK(srv.valid_to.year == tm.tm_year + 1901 || srv.valid_to.year == tm.tm_year + 1900, "valid_to year %d",
	        srv.valid_to.year);
	mbedtls_x509_crt_free(&ca);
	mbedtls_x509_crt_free(&srv);
	mbedtls_x509_crt_free(&cli);
}

/* Config errors name the file and say what to do. */
static void test_config_errors(void)
{
	struct tls_config c;
	struct ts_err e = {0};
	const char *crt = path_in(dir_a, "server.crt"), *key = path_in(dir_a, "server.key"),
	           *ca = path_in(dir_a, "ca.crt");
	T_CHECK(tls_config_server(&c, crt, "/nonexistent/server.key", ca, &e) == -E_IO, "missing key");
	T_HAS(e.msg, "/nonexistent/server.key");
	T_HAS(e.msg, "No such file");
	T_CHECK(tls_config_server(&c, crt, crt, ca, &e) == -E_FORMAT, "certificate as key");
	T_HAS(e.msg, "server.crt: not a PEM private key");
	T_CHECK(tls_config_server(&c, key, key, ca, &e) == -E_FORMAT, "key as certificate");
	T_HAS(e.msg, "server.key: not a PEM certificate");
	T_CHECK(tls_config_server(&c, crt, path_in(dir_a, "client.key"), ca, &e) == -E_INVAL, "mismatched key");
	T_HAS(e.msg, "client.key: this key does not belong to the certificate");
	T_CHECK(tls_config_server(&c, crt, key, NULL, &e) == -E_INVAL, "no CA");
	T_HAS(e.msg, "CA");
	/* a CA file that holds no CA (the server certificate), an expired CA,
	 * and an expired server certificate from the right CA */
	T_CHECK(tls_config_server(&c, crt, key, crt, &e) == -E_INVAL, "a leaf certificate as the CA");
	T_HAS(e.msg, "server.crt: certificate 1 is not a CA");
	T_CHECK(tls_config_server(&c, crt, key, path_in(dir_n, "old-ca.crt"), &e) == -E_INVAL, "expired CA");
	T_HAS(e.msg, "old-ca.crt: the CA certificate expired on");
	T_CHECK(tls_config_server(&c, path_in(dir_n, "old-server.crt"), path_in(dir_n, "old.key"), ca, &e) == -E_INVAL,
	        "expired server certificate");
	T_HAS(e.msg, "old-server.crt: the certificate expired on");
	T_HAS(e.msg, "tokenspeed certs DIR");
	T_CHECK(tls_config_client(&c, NULL, NULL, ca, NULL, &e) == -E_INVAL, "client without a server name");
	T_CHECK(tls_config_client(&c, crt, NULL, ca, "localhost", &e) == -E_INVAL, "certificate without key");
	struct tls_session s;
	T_CHECK(tls_session_init(&s, &c, mem_send, mem_recv, NULL) == -E_INVAL, "session on a failed config");
	tls_config_free(&c); /* a zeroed config frees cleanly */
}

/* ------------------------------------------------------------ h: one byte at a time */

static void test_one_byte(void)
{
	struct pair p;
	pair_init(&p, &cli_a, &srv_a, 1);
	pair_handshake(&p);
	T_CHECK(p.rc_c == 0 && p.rc_s == 0, "1-byte handshake: %d %d: %s | %s", p.rc_c, p.rc_s, p.c.err.msg,
	        p.s.err.msg);
	T_CHECK(p.ce.tick > 1000 && p.se.tick > 1000, "few calls: %d %d", p.ce.tick, p.se.tick);
	T_CHECK(!strcmp(tls_peer_cn(&p.s), "tokenspeed-client"), "peer \"%s\"", tls_peer_cn(&p.s));
	T_CHECK(pair_echo(&p, 2000) == 0, "1-byte echo: %s | %s", p.c.err.msg, p.s.err.msg);
	/* Clean close: the server reads 0 after the client's close_notify. */
	int r;
	while ((r = tls_close_notify(&p.c)) == TLS_AGAIN)
		;
	T_CHECK(r == 0, "close_notify %d", r);
	uint8_t b[16];
	for (int i = 0; i < 100000 && (r = tls_read(&p.s, b, sizeof(b))) == TLS_AGAIN; i++)
		;
	T_CHECK(r == 0, "server read after close_notify: %d %s", r, p.s.err.msg);
	printf("h: 1-byte transport: %d + %d callback calls\n", p.ce.tick, p.se.tick);
	pair_free(&p);

	/* Truncation: the peer vanishes without close_notify -> -E_IO. */
	pair_init(&p, &cli_a, &srv_a, 0);
	pair_handshake(&p);
	T_CHECK(pair_echo(&p, 100) == 0, "echo");
	p.ce.closed = 1;
	r = tls_read(&p.s, b, sizeof(b));
	T_CHECK(r == -E_IO, "truncated: %d %s", r, p.s.err.msg);
	T_HAS(p.s.err.msg, "without close_notify");
	pair_free(&p);
}

/* ------------------------------------------------------------ memory and time */

static void test_memory_and_time(void)
{
	struct pair *p = calloc(1, sizeof(*p));
	size_t h0 = heap_used();
	T_CHECK(tls_session_init(&p->c, &cli_a, mem_send, mem_recv, &p->ce) == 0, "init");
	size_t h1 = heap_used();
	T_CHECK(tls_session_init(&p->s, &srv_a, mem_send, mem_recv, &p->se) == 0, "init");
	size_t h2 = heap_used();
	p->ce = (struct end){.in = &p->s2c, .out = &p->c2s, .peer = &p->se};
	p->se = (struct end){.in = &p->c2s, .out = &p->s2c, .peer = &p->ce};
	pair_handshake(p);
	T_CHECK(p->rc_c == 0 && p->rc_s == 0, "handshake");
	/* Sampled at every I/O callback and once after the handshake. */
	size_t peak = TS_MAX(TS_MAX(p->ce.peak_heap, p->se.peak_heap), heap_used());
	T_CHECK(pair_echo(p, 1000) == 0, "echo");
	size_t h3 = heap_used();
	tls_session_free(&p->c);
	size_t h4 = heap_used();
	tls_session_free(&p->s);
	size_t h5 = heap_used();
	printf("memory: after init client %zu B, server %zu B; after handshake and echo client %zu B, server %zu B "
	       "(both %zu B); the pair's peak during the handshake %zu B; after freeing both %+ld B\n",
	       h1 - h0, h2 - h1, h3 - h4, h4 - h5, h3 - h0, peak - h0, (long)h5 - (long)h0);
	T_CHECK(h3 - h0 < 200 * 1024, "two sessions hold %zu B", h3 - h0);
	free(p);

	/* Handshake time, both sides in this thread (so the sum of the two). */
	/* PSA's key store keeps and grows a little memory between sessions (a few
	 * KB, not per session), so a leak shows as growth with the number of
	 * sessions: 16 KB over 29 catches anything above ~600 B per session. */
	int n = 30;
	size_t h_first = 0;
	double t0 = ts_now();
	for (int i = 0; i < n; i++) {
		static struct pair q;
		pair_init(&q, &cli_a, &srv_a, 0);
		pair_handshake(&q);
		T_CHECK(q.rc_c == 0 && q.rc_s == 0, "handshake %d", i);
		pair_free(&q);
		if (i == 0)
			h_first = heap_used();
	}
	double dt = (ts_now() - t0) / n;
	T_CHECK(heap_used() <= h_first + 16384, "sessions leak: %zu B after 1, %zu B after %d", h_first, heap_used(),
	        n);
	printf("handshake (mutual certificates, P-256, client + server CPU in one thread): %.2f ms\n", dt * 1e3);
	static struct tls_config ps, pc;
	struct ts_err e = {0};
	uint8_t key[32] = {1, 2, 3};
	tls_config_psk(&ps, TLS_SERVER, "id", key, 32, &e);
	tls_config_psk(&pc, TLS_CLIENT, "id", key, 32, &e);
	t0 = ts_now();
	for (int i = 0; i < n; i++) {
		static struct pair q;
		pair_init(&q, &pc, &ps, 0);
		pair_handshake(&q);
		T_CHECK(q.rc_c == 0 && q.rc_s == 0, "psk handshake %d", i);
		pair_free(&q);
	}
	printf("handshake (PSK + ECDHE): %.2f ms\n", (ts_now() - t0) / n * 1e3);
	tls_config_free(&ps);
	tls_config_free(&pc);
}

/* ------------------------------------------------------------ main */

static void rm_dir(const char *d)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	if (system(cmd) != 0)
		fprintf(stderr, "t_tls: could not remove %s\n", d);
}

/* ------------------------------------------------------------ the session pool */

/* tls_mem: what one handshake (client and server, mutual certificates, an
 * echo, close) holds per size class fits TLS_MEM_SESSION_BYTES; a pool sized
 * for 2 * P sessions serves P pairs at once without a failed allocation; past
 * its size a session fails cleanly with -E_NOMEM, and once they are freed the
 * pool serves again. Runs last: from here on the whole process's mbedTLS
 * allocates from the pool. */
/* The most a client can make a server session hold: a certificate chain
 * filling a whole handshake message (16 KiB, mbedTLS's input record), here
 * client.crt followed by copies of itself. Returns the certificates in it. */
static int big_chain_client(struct tls_config *c)
{
	struct ts_err e = {0};
	T_CHECK(tls_config_client(c, path_in(dir_a, "client.crt"), path_in(dir_a, "client.key"), path_in(dir_a, "ca.crt"),
	                          "localhost", &e) == 0,
	        "%s", e.msg);
	int n_certs = 1;
	while (n_certs < 200) {
		size_t total = 0;
		for (const mbedtls_x509_crt *x = &c->own_cert; x; x = x->next)
			total += x->raw.len + 3;
		if (total + c->own_cert.raw.len + 3 > 16384 - 64)
			break;
		T_CHECK(mbedtls_x509_crt_parse_file(&c->own_cert, path_in(dir_a, "client.crt")) == 0, "parse");
		n_certs++;
	}
	return n_certs;
}

/* In a child process with a pool of its own whose sessions may hold 100 KiB
 * each: a session that needs more (a client sending the largest chain) fails
 * with -E_NOMEM at its own quota, and the sessions before and after it are
 * served. */
static void test_quota_child(void)
{
	struct ts_err e = {0};
	struct tls_mem_stats st;
	static struct tls_config ps, pc, pbig;
	char err[1024];
	size_t bytes = 0;
	T_CHECK(tls_mem_init(tls_mem_bytes_for(4), 100u << 10, 4, &e) == 0, "%s", e.msg);
	T_CHECK(tls_config_server(&ps, path_in(dir_a, "server.crt"), path_in(dir_a, "server.key"), path_in(dir_a, "ca.crt"),
	                          &e) == 0,
	        "%s", e.msg);
	T_CHECK(tls_config_client(&pc, path_in(dir_a, "client.crt"), path_in(dir_a, "client.key"), path_in(dir_a, "ca.crt"),
	                          "localhost", &e) == 0,
	        "%s", e.msg);
	big_chain_client(&pbig);
	T_CHECK(server_session(&ps, &pc, &bytes, err, sizeof(err)) == 0, "under the quota: %s", err);
	int rc = server_session(&ps, &pbig, &bytes, err, sizeof(err));
	printf("quota: a server session limited to 100 KiB, the largest client chain: %d %s\n", rc, err);
	T_CHECK(rc == -E_NOMEM && strstr(err, "out of memory during the handshake"), "over the quota: %d %s", rc, err);
	tls_mem_stats(&st);
	T_CHECK(st.refused > 0, "no allocation refused by the quota");
	T_CHECK(server_session(&ps, &pc, &bytes, err, sizeof(err)) == 0, "after a refusal: %s", err);
	tls_config_free(&pbig);
	tls_config_free(&pc);
	tls_config_free(&ps);
}

static void test_quota(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		test_quota_child();
		fflush(stdout);
		_exit(t_fail ? 1 : 0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the quota checks failed in their process (status %d)", st);
}

static void test_pool(void)
{
	enum { P = 4, MAX_PAIRS = 64 };
	struct ts_err e = {0};
	struct tls_mem_stats st0, st;
	static struct tls_config ps, pc;
	T_CHECK(tls_mem_init(tls_mem_bytes_for(2 * P), TLS_MEM_SESSION_BYTES, 2 * P, &e) == 0, "tls_mem_init: %s", e.msg);
	T_CHECK(tls_mem_init(4096, 4096, 1, &e) == -E_INVAL, "a second tls_mem_init accepted");
	/* configs built inside the pool, as serve's are */
	T_CHECK(tls_config_server(&ps, path_in(dir_a, "server.crt"), path_in(dir_a, "server.key"), path_in(dir_a, "ca.crt"),
	                          &e) == 0,
	        "%s", e.msg);
	T_CHECK(tls_config_client(&pc, path_in(dir_a, "client.crt"), path_in(dir_a, "client.key"), path_in(dir_a, "ca.crt"),
	                          "localhost", &e) == 0,
	        "%s", e.msg);
	struct pair *q = calloc(MAX_PAIRS, sizeof(*q));
	/* one pair, measured per class */
	pair_init(&q[0], &pc, &ps, 0);
	pair_free(&q[0]); /* PSA's key store grows on first use: not a session's */
	tls_mem_stats(&st0);
	tls_mem_reset_peaks();
	pair_init(&q[0], &pc, &ps, 0);
	pair_handshake(&q[0]);
	T_CHECK(q[0].rc_c == 0 && q[0].rc_s == 0, "pooled handshake: %s | %s", q[0].c.err.msg, q[0].s.err.msg);
	T_CHECK(pair_echo(&q[0], 20000) == 0, "pooled echo");
	pair_free(&q[0]);
	tls_mem_stats(&st);
	printf("pool: a client + server session pair holds at most %zu B by size class (live %zu B); "
	       "TLS_MEM_SESSION_BYTES %u B per session; the config and PSA %zu B\n",
	       st.class_peak_bytes, st.peak_bytes - st0.live_bytes, TLS_MEM_SESSION_BYTES, st0.live_bytes);
	T_CHECK(st.class_peak_bytes <= TLS_MEM_SESSION_BYTES, "a pair needs %zu B, more than TLS_MEM_SESSION_BYTES %u",
	        st.class_peak_bytes, TLS_MEM_SESSION_BYTES);
	T_CHECK(st.live_bytes == st0.live_bytes, "a freed pair left %zu B", st.live_bytes - st0.live_bytes);
	T_CHECK(st0.live_bytes <= TLS_MEM_BASE_BYTES, "configs hold %zu B, more than TLS_MEM_BASE_BYTES", st0.live_bytes);

	static struct tls_config pbig;
	int n_certs = big_chain_client(&pbig);
	size_t one = server_session_bytes(&ps, &pc), big = server_session_bytes(&ps, &pbig);
	printf("pool: one server session holds at most %zu B by size class; with a %d-certificate client chain "
	       "(a full 16 KiB handshake message) %zu B; TLS_MEM_SESSION_BYTES %u B\n",
	       one, n_certs, big, TLS_MEM_SESSION_BYTES);
	T_CHECK(one > 0 && big > one && big <= TLS_MEM_SESSION_BYTES,
	        "a server session needs %zu B, %zu B with the largest client chain: more than TLS_MEM_SESSION_BYTES %u", one,
	        big, TLS_MEM_SESSION_BYTES);
	tls_config_free(&pbig);
	tls_mem_stats(&st0);

	/* P pairs (2P sessions) alive at once: no failed allocation */
	for (int i = 0; i < P; i++) {
		pair_init(&q[i], &pc, &ps, 0);
		pair_handshake(&q[i]);
		T_CHECK(q[i].rc_c == 0 && q[i].rc_s == 0, "pair %d: %s | %s", i, q[i].c.err.msg, q[i].s.err.msg);
	}
	for (int i = 0; i < P; i++)
		T_CHECK(pair_echo(&q[i], 20000) == 0, "echo %d", i);
	tls_mem_stats(&st);
	T_CHECK(st.failed == 0, "%llu failed allocations with %d pairs", (unsigned long long)st.failed, P);

	/* more until the pool is spent: a clean -E_NOMEM */
	int n = P, nomem = 0;
	for (; n < MAX_PAIRS && !nomem; n++) {
		memset(&q[n], 0, sizeof(q[n]));
		q[n].ce = (struct end){.in = &q[n].s2c, .out = &q[n].c2s, .peer = &q[n].se};
		q[n].se = (struct end){.in = &q[n].c2s, .out = &q[n].s2c, .peer = &q[n].ce};
		int a = tls_session_init(&q[n].c, &pc, mem_send, mem_recv, &q[n].ce);
		int b = tls_session_init(&q[n].s, &ps, mem_send, mem_recv, &q[n].se);
		if (a == 0 && b == 0)
			pair_handshake(&q[n]);
		int r[4] = {a, b, a == 0 && b == 0 ? q[n].rc_c : 0, a == 0 && b == 0 ? q[n].rc_s : 0};
		for (int k = 0; k < 4; k++) {
			T_CHECK(r[k] == 0 || r[k] == -E_NOMEM, "pair %d: %d (%s | %s)", n, r[k], q[n].c.err.msg,
			        q[n].s.err.msg);
			nomem |= r[k] == -E_NOMEM;
		}
	}
	tls_mem_stats(&st);
	printf("pool: spent after %d pairs (sized for %d): %llu refused, %s | %s\n", n, P,
	       (unsigned long long)st.refused, q[n - 1].c.err.msg, q[n - 1].s.err.msg);
	T_CHECK(nomem && st.refused > 0 && n == P + 1, "the pool sized for %d pairs ran out after %d", P, n);
	for (int i = 0; i < n; i++)
		pair_free(&q[i]);
	tls_mem_stats(&st);
	T_CHECK(st.live_bytes == st0.live_bytes, "after freeing all: %zu B live, %zu before", st.live_bytes,
	        st0.live_bytes);
	pair_init(&q[0], &pc, &ps, 0);
	pair_handshake(&q[0]);
	T_CHECK(q[0].rc_c == 0 && q[0].rc_s == 0, "after the pool ran out: %s | %s", q[0].c.err.msg, q[0].s.err.msg);
	pair_free(&q[0]);
	free(q);
	tls_config_free(&ps);
	tls_config_free(&pc);
}

int main(void)
{
	struct ts_err e = {0};
	char top_a[] = "/tmp/t_tls_a.XXXXXX", top_b[] = "/tmp/t_tls_b.XXXXXX", top_n[] = "/tmp/t_tls_n.XXXXXX";
	if (!mkdtemp(top_a) || !mkdtemp(top_b) || !mkdtemp(top_n)) {
		fprintf(stderr, "t_tls: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	/* certs_make creates DIR itself: hand it a path inside each temp dir. */
	snprintf(dir_a, sizeof(dir_a), "%s/certs", top_a);
	snprintf(dir_b, sizeof(dir_b), "%s/certs", top_b);
	snprintf(dir_n, sizeof(dir_n), "%s/certs", top_n);
	double t0 = ts_now();
	T_CHECK(certs_make(dir_a, 365, NULL, &e) == 0, "certs A: %s", e.msg);
	T_CHECK(certs_make(dir_b, 365, NULL, &e) == 0, "certs B: %s", e.msg);
	struct certs_opts o = {.days = 30, .cn = "other.example", .local_names = 0};
	T_CHECK(certs_make_opts(dir_n, &o, &e) == 0, "certs N: %s", e.msg);
	printf("certs_make: %.1f ms per directory\n", (ts_now() - t0) / 3 * 1e3);

	configs();
	expired_client();
	test_socketpair();
	test_refusals();
	test_psk();
	test_certs_files();
	test_config_errors();
	test_one_byte();
	test_memory_and_time();

	tls_config_free(&srv_a);
	tls_config_free(&cli_a);
	tls_config_free(&cli_nocert);
	tls_config_free(&cli_b);
	tls_config_free(&cli_trusts_b);
	tls_config_free(&cli_expired);
	tls_config_free(&cli_srvcert);
	test_quota();
	test_pool();
	rm_dir(top_a);
	rm_dir(top_b);
	rm_dir(top_n);
	return T_DONE();
}
