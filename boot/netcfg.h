/* netcfg: the ini's [net] applied over rtnetlink (no ip, no ifconfig).
 *
 * Owns: loopback up; one interface (named, or auto = the first, by index,
 * whose link comes up) brought up with its MTU, a static IPv4 and/or IPv6
 * address with prefix, and default routes through the gateways. Does not:
 * DHCP, SLAAC policy, DNS, more than one interface. Threads: PID 1's, before
 * the engine starts; the calling process's network namespace.
 */
#ifndef TS_NETCFG_H
#define TS_NETCFG_H

#include "cfg.h"

/* Applies c->net. 0, or -E_* with e naming the [net] key and what failed;
 * what was applied before the failure stays. On success ifname (may be NULL)
 * gets the interface configured ("" when [net] configures none). */
int netcfg_apply(const struct cfg *c, char *ifname, size_t ifname_n, struct ts_err *e);

#endif
