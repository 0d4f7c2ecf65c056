/* tutil.h: helpers shared by the end-to-end tests: make a tiny checkpoint with
 * gen_ckpt and boot an engine on it with a small config. Tests run from the
 * repository root, after `make test` has built build/tests/gen_ckpt. */
#ifndef TS_TUTIL_H
#define TS_TUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "../boot/boot.c"

#define T_CKPT_ROOT "build/tests/ckpt"

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
