/* net: sockets for the server: listen, accept, non-blocking I/O, epoll.
 *
 * Owns: the listening socket (parsed from [server] listen, "host:port" or
 * "[v6]:port"; port 0 picks a free one), accepted sockets set non-blocking.
 * Does not: parse frames (proto), speak TLS (conn), decide anything.
 * Threads: the network thread; net_listen at start-up.
 */
#ifndef TS_NET_H
#define TS_NET_H

#include "base.h"

/* A non-blocking listening socket on addr; *port gets the bound port.
 * Returns the fd or -E_INVAL (bad address) / -E_IO (bind, listen) with e set. */
int net_listen(const char *addr, int *port, struct ts_err *e);

/* Accepts one connection, non-blocking and close-on-exec, TCP_NODELAY.
 * The fd, or -1 when none is waiting (or on a transient error). */
int net_accept(int lfd);

/* epoll helpers: 0 or -E_IO. events: EPOLLIN/EPOLLOUT bits. */
int net_epoll_add(int ep, int fd, uint32_t events, uint64_t tag);
int net_epoll_mod(int ep, int fd, uint32_t events, uint64_t tag);
void net_epoll_del(int ep, int fd);

#endif
