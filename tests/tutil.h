/* tutil.h: helpers shared by the end-to-end tests: make a tiny checkpoint with
 * gen_ckpt and boot an engine on it with a small config. Tests run from the
 * repository root, after `make test` has built build/tests/gen_ckpt. */
#ifndef TS_TUTIL_H
#define TS_TUTIL_H

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../boot/boot.c"

#define T_CKPT_ROOT "build/tests/ckpt"

/* A TCP port on 127.0.0.1 that nothing holds now: the kernel's pick for port
 * 0, released at once for the test's server to take (a port derived from the
 * pid could be anyone's: another test run's, or an outgoing connection's). */
static inline int t_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t n = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &n) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	if (port < 0) {
		fprintf(stderr, "t_free_port: no port on 127.0.0.1\n");
		exit(1);
	}
	return port;
}

/* Generates preset into build/tests/ckpt/<preset> (once per test run); returns the dir. */
static inline const char *t_ckpt(const char *preset)
{
	static char dir[512];
	char cmd[1200];
	snprintf(dir, sizeof(dir), "%s/%s", T_CKPT_ROOT, preset);
	snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir -p %s && build/tests/gen_ckpt --preset %s --out %s", dir,
		 T_CKPT_ROOT, preset, dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "t_ckpt: %s failed\n", cmd);
		exit(1);
	}
	return dir;
}

/* A small CPU config over dir. */
static inline void t_cfg(struct cfg *c, const char *dir)
{
	cfg_defaults(c);
	snprintf(c->model.path, sizeof(c->model.path), "%s", dir);
	c->device.backend = CFG_BACKEND_CPU;
	c->device.cpu_threads = 2;
	c->engine.max_seq_len = 512;
	c->engine.max_running = 8;
	c->engine.max_batch_tokens = 128;
	c->engine.kv_tokens = 8 * 512;
	c->engine.max_queue = 64;
	c->log.level = LOG_WARN;
}

#endif
