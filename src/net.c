/* net: listening socket, accept and epoll helpers (see net.h). */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault.h"

int net_listen(const char *addr, int *port, struct ts_err *e)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(host))
		return ts_errf(e, E_INVAL, "[server] listen = \"%s\": want host:port", addr);
	const char *h0 = addr;
	size_t hn = (size_t)(colon - addr);
	if (h0[0] == '[' && hn >= 2 && h0[hn - 1] == ']')
		h0++, hn -= 2;
	memcpy(host, h0, hn);
	host[hn] = 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0 || !ai)
		return ts_errf(e, E_INVAL, "[server] listen = \"%s\": %s", addr, gai_strerror(rc));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return ts_errf(e, E_IO, "socket: %s", strerror(errno));
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		int err = errno;
		freeaddrinfo(ai);
		close(fd);
		return ts_errf(e, E_IO, "[server] listen = \"%s\": %s (is the port in use?)", addr, strerror(err));
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	*port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int net_accept(int lfd, uint8_t addr[16], uint8_t *addr_len, char *text, size_t text_n)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = FAULT_ERRNO(FAULT_SOCK, EMFILE) ? -1 : accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	*addr_len = 0;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		memcpy(addr, &a->sin_addr, 4), *addr_len = 4;
		port = ntohs(a->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
			memcpy(addr, a->sin6_addr.s6_addr + 12, 4), *addr_len = 4;
		else
			memcpy(addr, &a->sin6_addr, 16), *addr_len = 16;
		port = ntohs(a->sin6_port);
	}
	if (*addr_len)
		inet_ntop(*addr_len == 4 ? AF_INET : AF_INET6, addr, host, sizeof(host));
	snprintf(text, text_n, *addr_len == 16 ? "[%s]:%d" : "%s:%d", host, port);
	return fd;
}

int net_epoll_add(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -E_IO : 0;
}

int net_epoll_mod(int ep, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = {.events = events, .data.u64 = tag};
	return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0 ? -E_IO : 0;
}

void net_epoll_del(int ep, int fd)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
}

/* ------------------------------------------------------------ timers */

int net_timers_init(struct net_timers *t, int cap, struct ts_err *e)
{
	memset(t, 0, sizeof(*t));
	t->cap = cap;
	t->heap = ts_alloc((size_t)cap * sizeof(int));
	t->pos = ts_alloc((size_t)cap * sizeof(int));
	t->due = ts_alloc((size_t)cap * sizeof(double));
	if (!t->heap || !t->pos || !t->due) {
		net_timers_free(t);
		return ts_errf(e, E_NOMEM, "net: timers for %d connections", cap);
	}
	for (int i = 0; i < cap; i++)
		t->pos[i] = -1;
	return 0;
}

void net_timers_free(struct net_timers *t)
{
	ts_free(t->heap), ts_free(t->pos), ts_free(t->due);
	memset(t, 0, sizeof(*t));
}

static void heap_put(struct net_timers *t, int i, int id)
{
	t->heap[i] = id;
	t->pos[id] = i;
}

/* Moves the entry at i up or down until the heap is ordered again. */
static void heap_fix(struct net_timers *t, int i)
{
	int id = t->heap[i];
	while (i > 0 && t->due[t->heap[(i - 1) / 2]] > t->due[id]) {
		heap_put(t, i, t->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	for (;;) {
		int k = 2 * i + 1;
		if (k >= t->n)
			break;
		if (k + 1 < t->n && t->due[t->heap[k + 1]] < t->due[t->heap[k]])
			k++;
		if (t->due[t->heap[k]] >= t->due[id])
			break;
		heap_put(t, i, t->heap[k]);
		i = k;
	}
	heap_put(t, i, id);
}

static void heap_remove(struct net_timers *t, int id)
{
	int i = t->pos[id];
	t->pos[id] = -1;
	if (--t->n == i)
		return;
	heap_put(t, i, t->heap[t->n]);
	heap_fix(t, i);
}

void net_timer_set(struct net_timers *t, int id, double due)
{
	if (NEVER(id < 0 || id >= t->cap))
		return;
	if (due <= 0) {
		if (t->pos[id] >= 0)
			heap_remove(t, id);
		return;
	}
	t->due[id] = due;
	if (t->pos[id] < 0) {
		heap_put(t, t->n++, id);
	}
	heap_fix(t, t->pos[id]);
}

int net_timer_pop(struct net_timers *t, double now)
{
	if (t->n == 0 || t->due[t->heap[0]] > now)
		return -1;
	int id = t->heap[0];
	heap_remove(t, id);
	return id;
}

int net_wait(int ep, const struct net_timers *t, struct epoll_event *evs, int n)
{
	int ms = -1;
	if (t->n > 0) {
		double dt = t->due[t->heap[0]] - ts_now();
		ms = dt <= 0 ? 0 : dt > 3600.0 ? 3600000 : (int)(dt * 1e3) + 1; /* never wake before the deadline */
	}
	int r = epoll_wait(ep, evs, n, ms);
	return r < 0 ? 0 : r;
}

void net_run(int ep, struct net_timers *t, const struct net_handlers *h)
{
	struct epoll_event evs[64];
	for (;;) {
		int n = net_wait(ep, t, evs, 64);
		double now = ts_now();
		for (int i = 0; i < n; i++)
			h->ready(h->ctx, evs[i].data.u64, evs[i].events, now);
		int id;
		while ((id = net_timer_pop(t, now)) >= 0)
			h->due(h->ctx, id, now);
		if (h->round(h->ctx, now))
			return;
	}
}
