/* tserve.h: for tests that run the real server as its own process: start
 * `build/tokenspeed serve --config INI` (stderr into LOG) and wait until a
 * TLS client gets in. */
#ifndef TS_TSERVE_H
#define TS_TSERVE_H

#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include "tsclient.h"

/* The child's pid (it execs build/tokenspeed), or -1 when fork fails. */
static inline pid_t t_serve_spawn(const char *ini, const char *log)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen(log, "w", stderr))
			_exit(126);
		execl("build/tokenspeed", "tokenspeed", "serve", "--config", ini, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* 1 once a client completes HELLO/WELCOME on hp (polled every 50 ms, up to
 * 10 s), else 0. */
static inline int t_serve_wait_up(const char *hp, const struct tsc_tls *tls)
{
	for (int i = 0; i < 200; i++) {
		usleep(50000);
		struct tsc c;
		struct ts_err e = {0};
		if (tsc_connect(&c, hp, tls, &e) == 0) {
			tsc_close(&c);
			return 1;
		}
	}
	return 0;
}

#endif
