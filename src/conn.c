/* conn: a connection's transport (see conn.h). */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault.h"

static int cb_send(void *ctx, const uint8_t *p, size_t n)
{
	struct conn_io *c = ctx;
	ssize_t w = FAULT_ERRNO(FAULT_SOCK, ECONNRESET) ? -1 : send(c->fd, p, n, MSG_NOSIGNAL);
	if (w >= 0)
		return (int)w;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -E_IO;
}

static int cb_recv(void *ctx, uint8_t *p, size_t n)
{
	struct conn_io *c = ctx;
	ssize_t r = FAULT_ERRNO(FAULT_SOCK, ECONNRESET) ? -1 : recv(c->fd, p, n, 0);
	if (r >= 0)
		return (int)r;
	return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? TLS_WANT_IO : -E_IO;
}

int conn_io_init(struct conn_io *c, int fd, const struct tls_config *tc, uint32_t max_frame, size_t out_cap,
		 struct ts_err *e)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->rcap = max_frame - PROTO_HDR_BYTES;
	c->rbuf = ts_alloc(c->rcap);
	c->out = ts_alloc(out_cap);
	c->ocap = out_cap;
	if (!c->rbuf || !c->out) {
		ts_free(c->rbuf), ts_free(c->out);
		c->rbuf = NULL, c->out = NULL;
		return ts_errf(e, E_NOMEM, "connection buffers (%zu bytes)", out_cap);
	}
	int rc = proto_reader_init(&c->rd, c->rbuf, c->rcap);
	if (rc == 0)
		rc = tls_session_init(&c->tls, tc, cb_send, cb_recv, c);
	if (rc < 0) {
		ts_errf(e, -rc, "%s", c->tls.err.msg);
		ts_free(c->rbuf), ts_free(c->out);
		c->rbuf = NULL, c->out = NULL;
		return rc;
	}
	c->tls_live = 1;
	c->fd = fd;
	return 0;
}

void conn_io_free(struct conn_io *c)
{
	if (c->tls_live)
		tls_session_free(&c->tls);
	c->tls_live = 0;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	ts_free(c->rbuf), ts_free(c->out);
	c->rbuf = NULL, c->out = NULL;
}

int conn_io_handshake(struct conn_io *c)
{
	return tls_handshake(&c->tls);
}

int conn_io_read(struct conn_io *c, uint8_t *p, size_t n)
{
	return tls_read(&c->tls, p, n);
}

uint8_t *conn_io_tail(struct conn_io *c, size_t *room)
{
	if (c->o_off && c->o_len)
		memmove(c->out, c->out + c->o_off, c->o_len);
	c->o_off = 0;
	*room = c->ocap - c->o_len;
	return c->out + c->o_len;
}

void conn_io_commit(struct conn_io *c, size_t n)
{
	c->o_len += n;
}

int conn_io_flush(struct conn_io *c)
{
	while (c->o_len) {
		/* after TLS_AGAIN, tls_write wants the same bytes again, not more */
		size_t n = c->o_again ? c->o_again : c->o_len;
		int w = tls_write(&c->tls, c->out + c->o_off, n);
		if (w == TLS_AGAIN) {
			c->o_again = n;
			return 0;
		}
		c->o_again = 0;
		if (w < 0)
			return w;
		c->o_off += (size_t)w, c->o_len -= (size_t)w;
	}
	c->o_off = 0;
	return 0;
}

uint32_t conn_io_events(const struct conn_io *c, int want_input)
{
	uint32_t ev = want_input ? EPOLLIN : 0;
	if (c->o_len || (c->tls_live && tls_want(&c->tls) == TLS_WANT_WRITE))
		ev |= EPOLLOUT;
	return ev;
}
