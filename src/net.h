/* net: the server's event loop parts: listen, accept, epoll, timers.
 *
 * Owns: the listening socket (parsed from [server] listen, "host:port" or
 * "[v6]:port"; port 0 picks a free one), accepted sockets set non-blocking
 * with TCP_NODELAY, the epoll wait, and the timers: one deadline per id
 * (a connection slot) in a min-heap, so that the wait sleeps exactly until the
 * nearest deadline and each wake-up touches only what is due.
 * Does not: parse frames (proto), speak TLS (conn), decide anything.
 * Threads: the network thread; net_listen and net_timers_init at start-up.
 */
#ifndef TS_NET_H
#define TS_NET_H

#include "base.h"

#include <stddef.h>
#include <stdint.h>

struct epoll_event;

/* A non-blocking listening socket on addr; *port gets the bound port.
 * Returns the fd or -E_INVAL (bad address) / -E_IO (bind, listen) with e set. */
int net_listen(const char *addr, int *port, struct ts_err *e);

/* Accepts one connection, non-blocking and close-on-exec, TCP_NODELAY.
 * The fd, or -1 when none is waiting (or on a transient error). The peer's
 * address goes to addr (4 or 16 bytes, *addr_len; IPv4-mapped IPv6 as IPv4)
 * and, as "host:port", to text. */
int net_accept(int lfd, uint8_t addr[16], uint8_t *addr_len, char *text, size_t text_n);

/* epoll helpers: 0 or -E_IO. events: EPOLLIN/EPOLLOUT bits. */
int net_epoll_add(int ep, int fd, uint32_t events, uint64_t tag);
int net_epoll_mod(int ep, int fd, uint32_t events, uint64_t tag);
void net_epoll_del(int ep, int fd);

/* Deadlines (ts_now() seconds) of ids 0..cap-1, at most one each. */
struct net_timers {
	int n, cap;
	int *heap;   /* (cap) armed ids, a binary min-heap by due */
	int *pos;    /* (cap) id -> its index in heap, -1 when not armed */
	double *due; /* (cap) */
};
int net_timers_init(struct net_timers *t, int cap, struct ts_err *e);
void net_timers_free(struct net_timers *t);
/* Arms id for due, replacing its deadline; due <= 0 disarms it. */
void net_timer_set(struct net_timers *t, int id, double due);
/* An id whose deadline is <= now, disarmed; -1 when none is due. */
int net_timer_pop(struct net_timers *t, double now);

/* epoll_wait until an event or the nearest deadline of t: the number of
 * events (0 on a deadline or EINTR). */
int net_wait(int ep, const struct net_timers *t, struct epoll_event *evs, int n);

/* What the loop calls, on the network thread. */
struct net_handlers {
	void *ctx;
	void (*ready)(void *ctx, uint64_t tag, uint32_t events, double now); /* an fd added with tag is ready */
	void (*due)(void *ctx, int id, double now);                          /* id's deadline passed (disarmed) */
	int (*round)(void *ctx, double now); /* after each wake-up's events and deadlines; nonzero ends the loop */
};

/* The event loop: waits (net_wait), hands out ready fds, then due deadlines,
 * then ends the round; returns when round() says so. */
void net_run(int ep, struct net_timers *t, const struct net_handlers *h);

#endif
