/* t_netcfg: [net] in the key table (parsing, errors, cross-checks) and
 * applied over rtnetlink in a network namespace of our own (root only; the
 * machine's network is not touched) on TAP devices: auto skips one without
 * a carrier and takes the one with; MTU, IPv4 and IPv6 addresses and both
 * default routes are read back through other interfaces than ours (ioctl,
 * getifaddrs, /proc/net/route and ipv6_route). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../boot/netcfg.c"
#include "cfg.h"
#include "t.h"

#define INI "build/tests/t_netcfg.ini"

static int load(const char *text, struct cfg *c, struct ts_err *e)
{
	FILE *f = fopen(INI, "w");
	fprintf(f, "[model]\npath = /nonexistent\n%s", text);
	fclose(f);
	cfg_defaults(c);
	return cfg_load(c, INI, e);
}

static void t_keys(void)
{
	struct cfg c;
	struct ts_err e = {0};
	cfg_defaults(&c);
	T_CHECK(!strcmp(c.net.hostname, "tokenspeed") && !strcmp(c.net.interface, "auto") && !c.net.address[0] &&
			c.net.mtu == 0 && c.net.link_wait_ms == 10000,
		"defaults");
	T_CHECK(load("[net]\nhostname = gpu-7\ninterface = eth0\naddress = 10.0.0.5/24\ngateway = 10.0.0.1\n"
		     "address6 = fd00::5/64\ngateway6 = fe80::1\nmtu = 9000\n",
		     &c, &e) == 0,
		"%s", e.msg);
	T_CHECK(!strcmp(c.net.address, "10.0.0.5/24") && !strcmp(c.net.gateway6, "fe80::1") && c.net.mtu == 9000,
		"values");
	static const struct {
		const char *text, *want;
	} bad[] = {
		{"[net]\naddress = 10.0.0.5\n", "[net] address = \"10.0.0.5\": no /prefix after the IPv4 address (accepted an IPv4"},
		{"[net]\naddress = 10.0.0.5/33\n", "prefix length 33 out of range 1..32"},
		{"[net]\naddress = 10.0.0.500/24\n", "\"10.0.0.500\" is not an IPv4 address"},
		{"[net]\naddress = fd00::1/64\n", "is not an IPv4 address"},
		{"[net]\naddress6 = fd00::1/129\n", "prefix length 129 out of range 1..128"},
		{"[net]\ngateway = 10.0.0.1/24\n", "without /prefix"},
		{"[net]\ngateway6 = 10.0.0.1\n", "not an IPv6 address"},
		{"[net]\ngateway = 10.0.0.1\n", ":4: [net] gateway = \"10.0.0.1\" needs [net] address"},
		{"[net]\nmtu = 67\n", "[net] mtu = \"67\": below 68"},
		{"[net]\nmtu = 70000\n", "out of range"},
		{"[net]\naddress6 = fd00::1/64\nmtu = 1000\n", ":5: [net] mtu = 1000 is below 1280"},
		{"[net]\ninterface = a/b\n", "bad character '/'"},
		{"[net]\ninterface = abcdefghijklmnop\n", "longer than 15 bytes"},
		{"[net]\nhostname = a_b\n", "bad character '_'"},
		{"[net]\ndns = 1.1.1.1\n", "unknown key (known: hostname, interface, address, gateway, address6, gateway6, mtu, link_wait_ms)"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e.msg[0] = 0;
		T_CHECK(load(bad[i].text, &c, &e) < 0, "accepted: %s", bad[i].text);
		T_HAS(e.msg, bad[i].want);
	}
}

static int mtu_of(const char *name)
{
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int r = ioctl(fd, SIOCGIFMTU, &ifr);
	close(fd);
	return r < 0 ? -1 : ifr.ifr_mtu;
}

static int has_addr(const char *name, int family, const char *want)
{
	struct ifaddrs *ia, *p;
	char buf[64];
	int found = 0;
	if (getifaddrs(&ia) < 0)
		return 0;
	for (p = ia; p; p = p->ifa_next) {
		if (!p->ifa_addr || p->ifa_addr->sa_family != family || strcmp(p->ifa_name, name))
			continue;
		const void *a = family == AF_INET ? (const void *)&((struct sockaddr_in *)p->ifa_addr)->sin_addr
						  : (const void *)&((struct sockaddr_in6 *)p->ifa_addr)->sin6_addr;
		inet_ntop(family, a, buf, sizeof(buf));
		found |= !strcmp(buf, want);
	}
	freeifaddrs(ia);
	return found;
}

/* /proc files report size 0: read them to the end. */
static int file_has(const char *path, const char *needle)
{
	static char buf[1 << 16];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = 0;
	return strstr(buf, needle) != NULL;
}

/* A TAP device named name (no module beyond tun needed); with keep, the fd
 * stays open so the link has a carrier once up; without, it persists with
 * none. The fd, or -1. */
static int tap(const char *name, int keep)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr = {0};
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || (!keep && ioctl(fd, TUNSETPERSIST, 1) < 0)) {
		close(fd);
		return -1;
	}
	if (!keep) {
		close(fd);
		return 0;
	}
	return fd;
}

static void t_apply(void)
{
	struct cfg c;
	struct ts_err e = {0};
	char ifname[32];
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		printf("#> t_netcfg: no network namespace (%s): rtnetlink part not run\n", strerror(errno));
		T_CHECK(geteuid() != 0, "root but unshare(CLONE_NEWNET) failed: %s", strerror(errno));
		return;
	}
	T_CHECK(!has_addr("lo", AF_INET, "127.0.0.1"), "a fresh namespace: lo down");

	/* defaults: loopback up, nothing else */
	cfg_defaults(&c);
	T_CHECK(netcfg_apply(&c, ifname, sizeof(ifname), &e) == 0, "%s", e.msg);
	T_CHECK(!ifname[0], "no interface configured: %s", ifname);
	T_CHECK(has_addr("lo", AF_INET, "127.0.0.1"), "lo up with 127.0.0.1");

	/* auto with one interface and no carrier: says so after link_wait_ms */
	T_CHECK(tap("tapnc", 0) == 0, "tap without carrier: %s", strerror(errno));
	T_CHECK(load("[net]\nlink_wait_ms = 100\naddress = 10.0.0.2/24\n", &c, &e) == 0, "%s", e.msg);
	T_CHECK(netcfg_apply(&c, ifname, sizeof(ifname), &e) < 0, "auto without links");
	T_HAS(e.msg, "[net] interface = auto: no interface has a link after [net] link_wait_ms = 100 (1 besides loopback)");

	/* auto takes the one whose link comes up (tapnc has the lower index):
	 * MTU, both addresses, both default routes */
	int fd = tap("tap0", 1);
	T_CHECK(fd >= 0, "tap0: %s", strerror(errno));
	T_CHECK(load("[net]\naddress = 10.77.0.2/24\ngateway = 10.77.0.1\naddress6 = fd00:77::2/64\n"
		     "gateway6 = fd00:77::1\nmtu = 9000\n",
		     &c, &e) == 0,
		"%s", e.msg);
	T_CHECK(netcfg_apply(&c, ifname, sizeof(ifname), &e) == 0, "%s", e.msg);
	T_CHECK(!strcmp(ifname, "tap0"), "auto picked \"%s\"", ifname);
	T_CHECK(mtu_of("tap0") == 9000, "mtu %d", mtu_of("tap0"));
	T_CHECK(mtu_of("tapnc") != 9000, "the other one untouched");
	T_CHECK(has_addr("tap0", AF_INET, "10.77.0.2"), "IPv4 address");
	T_CHECK(has_addr("tap0", AF_INET6, "fd00:77::2"), "IPv6 address");
	T_CHECK(file_has("/proc/net/route", "tap0\t00000000\t01004D0A"), "IPv4 default route via 10.77.0.1");
	T_CHECK(file_has("/proc/net/ipv6_route", "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
						  "fd000077000000000000000000000001"),
		"IPv6 default route via fd00:77::1");
	/* again, by name: replaces, does not fail on what exists */
	T_CHECK(load("[net]\ninterface = tap0\naddress = 10.77.0.2/24\ngateway = 10.77.0.1\nmtu = 1500\n", &c, &e) == 0,
		"%s", e.msg);
	T_CHECK(netcfg_apply(&c, ifname, sizeof(ifname), &e) == 0, "again: %s", e.msg);
	T_CHECK(mtu_of("tap0") == 1500, "mtu %d", mtu_of("tap0"));

	/* failures name the key */
	T_CHECK(load("[net]\ninterface = eth9\naddress = 10.0.0.2/24\n", &c, &e) == 0, "%s", e.msg);
	T_CHECK(netcfg_apply(&c, ifname, sizeof(ifname), &e) < 0, "eth9");
	T_HAS(e.msg, "[net] interface = \"eth9\": no such interface");
	T_CHECK(load("[net]\ninterface = tap0\ngateway6 = fd00:99::1\n", &c, &e) == 0, "%s", e.msg);
	T_CHECK(netcfg_apply(&c, ifname, sizeof(ifname), &e) < 0, "unreachable gateway6");
	T_HAS(e.msg, "[net] gateway6 = \"fd00:99::1\" on tap0:");
	close(fd);
}

int main(void)
{
	t_keys();
	t_apply();
	return T_DONE();
}
