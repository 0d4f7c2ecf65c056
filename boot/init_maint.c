/* init_maint: the maintenance state. When neither tokenspeed.ini nor
 * last-good.ini validates, init runs `tokenspeed maintenance --config-dir DIR
 * --why TEXT` in the engine's place: it listens where the broken ini's
 * [server] says, with its TLS files, and answers every HELLO with ERROR
 * UNSUPPORTED "maintenance: ..." naming the ini problem, so an operator
 * sees it remotely (tsctl prints "the server refused HELLO: ..."). The
 * broken ini is read leniently, [server] keys only; a line it cannot use is
 * skipped. One connection at a time, each with 5 s deadlines: this serves
 * people, not load. SIGTERM/SIGINT end it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "base.h"
#include "init.h"
#include "log.h"
#include "net.h"
#include "proto.h"
#include "tls.h"
#include "tls_mem.h"

#define MAINT_IO_MS 5000

struct maint_server {
	char listen[256], cert[4096], key[4096], ca[4096], psk_id[256], psk_file[4096];
};

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = 0;
	return s;
}

/* [server]'s TLS keys and listen from ini, whatever else is wrong with it. */
static void scan_server(const char *ini, const char *dir, struct maint_server *m)
{
	snprintf(m->listen, sizeof(m->listen), "127.0.0.1:7070"); /* the key's default */
	FILE *f = fopen(ini, "re");
	if (!f)
		return;
	char line[4096], sec[64] = "";
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line);
		if (*s == '[') {
			snprintf(sec, sizeof(sec), "%.*s", (int)strcspn(s + 1, "]"), s + 1);
			continue;
		}
		char *eq = strchr(s, '=');
		if (strcmp(sec, "server") || *s == '#' || *s == ';' || !eq)
			continue;
		*eq = 0;
		char *k = trim(s), *v = trim(eq + 1);
		for (char *c = v; *c; c++) /* an inline comment: a blank then '#' or ';' */
			if ((*c == '#' || *c == ';') && c > v && (c[-1] == ' ' || c[-1] == '\t')) {
				*c = 0;
				v = trim(v);
				break;
			}
		char *dst = !strcmp(k, "listen") ? m->listen : !strcmp(k, "tls_cert") ? m->cert
			  : !strcmp(k, "tls_key") ? m->key : !strcmp(k, "tls_ca") ? m->ca
			  : !strcmp(k, "tls_psk_identity") ? m->psk_id : !strcmp(k, "tls_psk_file") ? m->psk_file : NULL;
		if (!dst)
			continue;
		size_t cap = dst == m->listen || dst == m->psk_id ? 256 : 4096;
		if (dst != m->listen && dst != m->psk_id && *v && *v != '/')
			snprintf(dst, cap, "%s/%s", dir, v);
		else
			snprintf(dst, cap, "%s", v);
	}
	fclose(f);
}

static int fd_send(void *ctx, const uint8_t *p, size_t n)
{
	ssize_t r = send(*(int *)ctx, p, n, MSG_NOSIGNAL);
	return r < 0 ? -1 : (int)r;
}

static int fd_recv(void *ctx, uint8_t *p, size_t n)
{
	ssize_t r = recv(*(int *)ctx, p, n, 0);
	return r < 0 ? -1 : (int)r; /* a timeout (SO_RCVTIMEO) ends the connection */
}

/* One connection: handshake, read up to the first frame, ERROR, close. */
static void maint_conn(int fd, const struct tls_config *tc, const char *msg)
{
	struct timeval tv = {MAINT_IO_MS / 1000, 0};
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		goto out_close;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	static struct tls_session s;
	if (tls_session_init(&s, tc, fd_send, fd_recv, &fd) < 0)
		goto out_close;
	int r, tries = 0;
	while ((r = tls_handshake(&s)) == TLS_AGAIN && ++tries < 100)
		;
	if (r != 0)
		goto out_free;
	static uint8_t buf[PROTO_MIN_FRAME], in[4096];
	struct proto_reader rd;
	struct proto_frame f;
	struct ts_err e = {0};
	proto_reader_init(&rd, buf, sizeof(buf));
	int got_frame = 0;
	for (tries = 0; !got_frame && tries < 100; tries++) {
		int n = tls_read(&s, in, sizeof(in));
		if (n == TLS_AGAIN)
			continue;
		if (n <= 0)
			goto out_free;
		size_t off = 0, used;
		while (off < (size_t)n && !got_frame) {
			int k = proto_reader_feed(&rd, in + off, (size_t)n - off, &used, &f, &e);
			if (k < 0)
				goto out_free;
			off += used;
			got_frame = k == PROTO_FRAME;
		}
	}
	uint8_t out[2048];
	int len = proto_encode_error(out, sizeof(out), 0, PROTO_ERR_UNSUPPORTED, msg);
	for (int off = 0; len > 0 && off < len;) {
		int w = tls_write(&s, out + off, (size_t)(len - off));
		if (w == TLS_AGAIN)
			continue;
		if (w < 0)
			break;
		off += w;
	}
	tls_close_notify(&s);
	log_info("maintenance: answered HELLO from %s", tls_peer_cn(&s)[0] ? tls_peer_cn(&s) : "?");
out_free:
	tls_session_free(&s);
out_close:
	close(fd);
}

/* Without TLS or a socket nothing can be answered: stay (so init does not
 * restart us in a loop) until SIGTERM or SIGINT. */
static int maint_idle(void)
{
	sigset_t set;
	int sig;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigwait(&set, &sig);
	log_info("maintenance: stopped");
	return 0;
}

/* tokenspeed maintenance --config-dir DIR --why TEXT */
int init_maint_cmd(int argc, char **argv)
{
	if (argc != 6 || strcmp(argv[2], "--config-dir") || strcmp(argv[4], "--why")) {
		fprintf(stderr, "usage: tokenspeed maintenance --config-dir DIR --why TEXT\n");
		return 2;
	}
	const char *dir = argv[3];
	char ini[4096], msg[1024];
	snprintf(ini, sizeof(ini), "%s/%s", dir, INIT_INI);
	snprintf(msg, sizeof(msg), "maintenance: %s/%s is not valid and there is no valid %s: %.900s", dir, INIT_INI,
		 INIT_LAST_GOOD, argv[5]);
	static struct maint_server m;
	scan_server(ini, dir, &m);
	struct ts_err e = {0};
	static struct tls_config tc;
	int rc;
	if (m.psk_file[0]) {
		uint8_t key[TLS_PSK_MAX_BYTES];
		int n = tls_psk_load(m.psk_file, key, sizeof(key), &e);
		rc = n < 0 ? n : tls_config_psk(&tc, TLS_SERVER, m.psk_id, key, (size_t)n, &e);
		memset(key, 0, sizeof(key));
	} else {
		rc = tls_config_server(&tc, m.cert, m.key, m.ca, &e);
	}
	if (rc < 0) {
		log_error("maintenance: no TLS from %s's [server] (%s): the console is the only way to see the problem",
			  ini, e.msg);
		return maint_idle();
	}
	int port = 0;
	int lfd = net_listen(m.listen, &port, &e);
	if (lfd < 0) {
		log_error("maintenance: listen %s: %s", m.listen, e.msg);
		tls_config_free(&tc);
		return maint_idle();
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	log_info("maintenance: listening on port %d; every HELLO gets ERROR UNSUPPORTED \"%s\"", port, msg);
	for (;;) {
		struct pollfd pf[2] = {{.fd = lfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN)
			break;
		if (pf[0].revents & POLLIN) {
			char peer[64];
			uint8_t addr[16], alen;
			int fd = net_accept(lfd, addr, &alen, peer, sizeof(peer));
			if (fd >= 0)
				maint_conn(fd, &tc, msg);
		}
	}
	log_info("maintenance: stopped");
	close(lfd);
	tls_config_free(&tc);
	return 0;
}
