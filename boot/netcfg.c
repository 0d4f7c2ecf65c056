/* netcfg: [net] over rtnetlink. See netcfg.h.
 *
 * One request at a time on a NETLINK_ROUTE socket, each with NLM_F_ACK and
 * its own sequence number; the kernel's NLMSG_ERROR answer (error 0 = done)
 * is read before the next request, so a failure names the step that failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base.h"
#include "log.h"
#include "netcfg.h"

#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000 /* linux/if.h's, which clashes with net/if.h */
#endif

struct nl {
	int fd;
	uint32_t seq;
};

struct nlreq {
	union {
		struct nlmsghdr h; /* then the family header, then attributes */
		char buf[1024];
	};
};

static void *nl_tail(struct nlreq *r)
{
	return r->buf + NLMSG_ALIGN(r->h.nlmsg_len);
}

static void nl_attr(struct nlreq *r, int type, const void *data, size_t len)
{
	struct rtattr *a = nl_tail(r);
	a->rta_type = (unsigned short)type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* A new request of type with flags (NLM_F_REQUEST | NLM_F_ACK added) and
 * a zeroed family header of hdr_len bytes; returns that header. */
static void *nl_new(struct nlreq *r, int type, int flags, size_t hdr_len)
{
	memset(r, 0, sizeof(*r));
	r->h.nlmsg_type = (unsigned short)type;
	r->h.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | NLM_F_ACK | flags);
	r->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(hdr_len);
	return NLMSG_DATA(&r->h);
}

/* Sends r and reads its acknowledgement: 0 or -errno. */
static int nl_talk(struct nl *n, struct nlreq *r)
{
	r->h.nlmsg_seq = ++n->seq;
	if (send(n->fd, r, r->h.nlmsg_len, 0) < 0)
		return -errno;
	char buf[8192];
	for (;;) {
		ssize_t got = recv(n->fd, buf, sizeof(buf), 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
			if (h->nlmsg_seq != n->seq || h->nlmsg_type != NLMSG_ERROR)
				continue;
			const struct nlmsgerr *err = NLMSG_DATA(h);
			return err->error; /* 0 = acknowledged, else -errno */
		}
	}
}

/* Sets flags (IFF_UP) and, when mtu > 0, the MTU of link index. */
static int link_set(struct nl *n, int index, int up, int mtu)
{
	struct nlreq r;
	struct ifinfomsg *ifi = nl_new(&r, RTM_NEWLINK, 0, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	ifi->ifi_flags = up ? IFF_UP : 0;
	ifi->ifi_change = IFF_UP;
	if (mtu > 0) {
		uint32_t m = (uint32_t)mtu;
		nl_attr(&r, IFLA_MTU, &m, sizeof(m));
	}
	return nl_talk(n, &r);
}

struct link {
	int index;
	unsigned flags;
	char name[IFNAMSIZ];
};

/* Every link, by a dump; the count, or -errno. */
static int links(struct nl *n, struct link *out, int cap)
{
	struct nlreq r;
	struct ifinfomsg *ifi = nl_new(&r, RTM_GETLINK, NLM_F_DUMP, sizeof(*ifi));
	ifi->ifi_family = AF_UNSPEC;
	r.h.nlmsg_flags &= (unsigned short)~NLM_F_ACK;
	r.h.nlmsg_seq = ++n->seq;
	if (send(n->fd, &r, r.h.nlmsg_len, 0) < 0)
		return -errno;
	int k = 0;
	static char buf[32768];
	for (;;) {
		ssize_t got = recv(n->fd, buf, sizeof(buf), 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
			if (h->nlmsg_seq != n->seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return k;
			if (h->nlmsg_type == NLMSG_ERROR)
				return ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
			if (h->nlmsg_type != RTM_NEWLINK || k == cap)
				continue;
			const struct ifinfomsg *li = NLMSG_DATA(h);
			struct link *l = &out[k++];
			l->index = li->ifi_index;
			l->flags = li->ifi_flags;
			l->name[0] = 0;
			int alen = (int)IFLA_PAYLOAD(h);
			for (const struct rtattr *a = IFLA_RTA(li); RTA_OK(a, alen); a = RTA_NEXT(a, alen))
				if (a->rta_type == IFLA_IFNAME)
					snprintf(l->name, sizeof(l->name), "%s", (const char *)RTA_DATA(a));
		}
	}
}

/* "a.b.c.d/p" or "x::y/p" -> family, bytes, prefix (the key's check made sure it parses). */
static int parse_cidr(const char *s, int *family, uint8_t addr[16], int *prefix)
{
	char host[64];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", (int)(slash - s), s);
	*family = strchr(host, ':') ? AF_INET6 : AF_INET;
	*prefix = atoi(slash + 1);
	return inet_pton(*family, host, addr) == 1 ? 0 : -1;
}

static int addr_add(struct nl *n, int index, const char *cidr)
{
	int family, prefix;
	uint8_t a[16];
	if (parse_cidr(cidr, &family, a, &prefix) < 0)
		return -EINVAL;
	struct nlreq r;
	struct ifaddrmsg *ifa = nl_new(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, sizeof(*ifa));
	ifa->ifa_family = (unsigned char)family;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	size_t len = family == AF_INET ? 4 : 16;
	nl_attr(&r, IFA_LOCAL, a, len);
	nl_attr(&r, IFA_ADDRESS, a, len);
	if (family == AF_INET6) {
		uint32_t fl = IFA_F_NODAD; /* a static address on an appliance: no duplicate-detection wait */
		nl_attr(&r, IFA_FLAGS, &fl, sizeof(fl));
	}
	return nl_talk(n, &r);
}

static int route_default(struct nl *n, int index, int family, const char *gw)
{
	uint8_t a[16];
	if (inet_pton(family, gw, a) != 1)
		return -EINVAL;
	struct nlreq r;
	struct rtmsg *rt = nl_new(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, sizeof(*rt));
	rt->rtm_family = (unsigned char)family;
	rt->rtm_dst_len = 0;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	nl_attr(&r, RTA_GATEWAY, a, family == AF_INET ? 4 : 16);
	uint32_t oif = (uint32_t)index;
	nl_attr(&r, RTA_OIF, &oif, sizeof(oif));
	return nl_talk(n, &r);
}

static double mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* auto: every non-loopback link up, then the first (lowest index) whose
 * carrier comes up within wait_ms. Its index, or -E_*. */
static int pick_auto(struct nl *n, int wait_ms, char *name, size_t name_n, struct ts_err *e)
{
	struct link l[64];
	int k = links(n, l, 64);
	if (k < 0)
		return ts_errf(e, E_IO, "[net] interface = auto: listing links: %s", strerror(-k));
	int cand = 0;
	for (int i = 0; i < k; i++)
		if (!(l[i].flags & IFF_LOOPBACK)) {
			link_set(n, l[i].index, 1, 0);
			cand++;
		}
	double t0 = mono_ms();
	for (;;) {
		k = links(n, l, 64);
		int best = -1;
		for (int i = 0; i < k; i++)
			if (!(l[i].flags & IFF_LOOPBACK) && (l[i].flags & IFF_LOWER_UP) &&
			    (best < 0 || l[i].index < l[best].index))
				best = i;
		if (best >= 0) {
			snprintf(name, name_n, "%s", l[best].name);
			return l[best].index;
		}
		if (mono_ms() - t0 >= wait_ms)
			break;
		usleep(50000);
	}
	return ts_errf(e, E_IO,
		       "[net] interface = auto: no interface has a link after [net] link_wait_ms = %d (%d besides "
		       "loopback); plug a cable or name the interface",
		       wait_ms, cand);
}

int netcfg_apply(const struct cfg *c, char *ifname, size_t ifname_n, struct ts_err *e)
{
	const struct cfg_net *nc = &c->net;
	struct nl n = {.fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)};
	char name[IFNAMSIZ] = "";
	int rc = 0, idx;
	if (ifname && ifname_n)
		ifname[0] = 0;
	if (n.fd < 0)
		return ts_errf(e, E_IO, "[net]: netlink socket: %s", strerror(errno));
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (bind(n.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = ts_errf(e, E_IO, "[net]: netlink bind: %s", strerror(errno));
		goto out_close;
	}
	int lo = (int)if_nametoindex("lo");
	if (lo > 0 && (rc = link_set(&n, lo, 1, 0)) < 0) {
		rc = ts_errf(e, E_IO, "[net]: loopback up: %s", strerror(-rc));
		goto out_close;
	}
	rc = 0;
	if (!nc->address[0] && !nc->address6[0] && !nc->gateway6[0] && !nc->mtu)
		goto out_close; /* nothing asked beyond loopback */
	if (!strcmp(nc->interface, "auto")) {
		idx = pick_auto(&n, nc->link_wait_ms, name, sizeof(name), e);
		if (idx < 0) {
			rc = idx;
			goto out_close;
		}
	} else {
		idx = (int)if_nametoindex(nc->interface);
		if (idx <= 0) {
			rc = ts_errf(e, E_IO, "[net] interface = \"%s\": no such interface", nc->interface);
			goto out_close;
		}
		snprintf(name, sizeof(name), "%s", nc->interface);
	}
	int r = link_set(&n, idx, 1, nc->mtu);
	if (r < 0) {
		rc = ts_errf(e, E_IO, "[net] %s %s: setting it up%s: %s", nc->mtu ? "mtu on" : "interface", name,
			     nc->mtu ? " with that MTU" : "", strerror(-r));
		goto out_close;
	}
	static const struct {
		const char *key;
		size_t off;
		int family; /* 0 = an address, else a gateway of this family */
	} steps[] = {
		{"address", offsetof(struct cfg, net.address), 0},
		{"address6", offsetof(struct cfg, net.address6), 0},
		{"gateway", offsetof(struct cfg, net.gateway), AF_INET},
		{"gateway6", offsetof(struct cfg, net.gateway6), AF_INET6},
	};
	for (size_t i = 0; i < TS_ARRAY_LEN(steps); i++) {
		const char *v = (const char *)c + steps[i].off;
		if (!*v)
			continue;
		r = steps[i].family ? route_default(&n, idx, steps[i].family, v) : addr_add(&n, idx, v);
		if (r < 0) {
			rc = ts_errf(e, E_IO, "[net] %s = \"%s\" on %s: %s", steps[i].key, v, name, strerror(-r));
			goto out_close;
		}
	}
	log_info("net: interface=%s mtu=%d address=%s address6=%s gateway=%s gateway6=%s", name, nc->mtu,
		 nc->address[0] ? nc->address : "-", nc->address6[0] ? nc->address6 : "-",
		 nc->gateway[0] ? nc->gateway : "-", nc->gateway6[0] ? nc->gateway6 : "-");
	if (ifname && ifname_n)
		snprintf(ifname, ifname_n, "%s", name);
out_close:
	close(n.fd);
	return rc;
}
