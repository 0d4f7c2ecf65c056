/* t_sigterm: the real `tokenspeed serve` process drains on SIGTERM. Four
 * requests stream over TLS through libtsclient; SIGTERM arrives mid-stream;
 * each request gets exactly one terminal frame (DONE or ERROR), a SUBMIT
 * after the signal is refused or never accepted, and the process exits 0. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "tsclient.h"
#include "tutil.h"

#define NR 4

int main(void)
{
	const char *dir = t_ckpt("llama3-mini");
	char abs[512], cmd[2048];
	T_CHECK(realpath(dir, abs) != NULL, "realpath");
	T_CHECK(system("rm -rf build/tests/sigterm-certs && build/tokenspeed certs build/tests/sigterm-certs > /dev/null") == 0,
		"certs");
	int port = t_free_port();
	snprintf(cmd, sizeof(cmd),
		 "printf '[model]\\npath = %s\\n[engine]\\nmax_seq_len = 1024\\nmax_running = 8\\nmax_batch_tokens = 64\\n"
		 "[device]\\nbackend = cpu\\ncpu_threads = 1\\n[server]\\nlisten = 127.0.0.1:%d\\n"
		 "tls_cert = sigterm-certs/server.crt\\ntls_key = sigterm-certs/server.key\\ntls_ca = sigterm-certs/ca.crt\\n"
		 "[log]\\nlevel = warn\\n' > build/tests/sigterm.ini",
		 abs, port);
	T_CHECK(system(cmd) == 0, "ini");

	pid_t pid = fork();
	if (pid == 0) {
		execl("build/tokenspeed", "tokenspeed", "serve", "--config", "build/tests/sigterm.ini", (char *)NULL);
		_exit(127);
	}
	struct tsc c;
	struct ts_err e = {0};
	struct tsc_tls tls = {"build/tests/sigterm-certs/ca.crt", "build/tests/sigterm-certs/client.crt",
			      "build/tests/sigterm-certs/client.key", "localhost", NULL, NULL};
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	int r = -1;
	for (int i = 0; i < 100 && r < 0; i++) { /* the server boots in milliseconds; allow 5 s */
		usleep(50000);
		r = tsc_connect(&c, hp, &tls, &e);
	}
	T_CHECK(r == 0, "connect: %s", e.msg);
	if (r < 0) {
		kill(pid, SIGKILL);
		return T_DONE();
	}
	int32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint32_t id[NR];
	int terminal[NR] = {0}, tokens[NR] = {0};
	for (int i = 0; i < NR; i++) {
		struct tsc_request rq = {.prompt = prompt, .n_prompt = 8, .max_tokens = 900, .ignore_eos = 1};
		samp_params_default(&rq.samp);
		T_CHECK(tsc_submit(&c, &rq, &id[i]) == 0, "submit %d", i);
	}
	/* wait until every request streams, then SIGTERM */
	struct tsc_event ev;
	int streaming = 0;
	for (int guard = 0; guard < 2000 && streaming < NR; guard++) {
		if (tsc_poll(&c, 100, &ev) == 1 && ev.type == TSC_EV_TOKENS)
			for (int i = 0; i < NR; i++)
				if (ev.req_id == id[i] && tokens[i]++ == 0)
					streaming++;
	}
	T_CHECK(streaming == NR, "only %d of %d requests streamed before the signal", streaming, NR);
	T_CHECK(kill(pid, SIGTERM) == 0, "kill");
	int goaway = 0, late_refused = 0, late_tried = 0;
	double deadline = ts_now() + 60; /* the drain limit is 30 s */
	for (int done = 0; done < NR && ts_now() < deadline;) {
		int p = tsc_poll(&c, 100, &ev);
		if (getenv("T_TRACE"))
			fprintf(stderr, "poll %d type %d req %u code %u msg %s\n", p, p == 1 ? (int)ev.type : 0,
				p == 1 ? ev.req_id : 0, p == 1 ? ev.code : 0, p == 1 ? ev.msg : "");
		if (p < 0)
			break; /* the server closed the connection after draining */
		if (p == 0)
			continue;
		if (ev.type == TSC_EV_GOAWAY) {
			goaway = 1;
			if (!late_tried) { /* a SUBMIT after GOAWAY: refused (locally or by the server) */
				struct tsc_request rq = {.prompt = prompt, .n_prompt = 8, .max_tokens = 4, .ignore_eos = 1};
				uint32_t lid;
				samp_params_default(&rq.samp);
				late_tried = 1;
				late_refused = tsc_submit(&c, &rq, &lid) < 0;
			}
		}
		for (int i = 0; i < NR; i++)
			if (ev.req_id == id[i] && (ev.type == TSC_EV_DONE || ev.type == TSC_EV_ERROR))
				terminal[i]++, done++;
	}
	/* and nothing more for these ids afterwards: read until the server closes */
	while (ts_now() < deadline) {
		int p = tsc_poll(&c, 100, &ev);
		if (p < 0)
			break;
		for (int i = 0; p == 1 && i < NR; i++)
			if (ev.req_id == id[i] && (ev.type == TSC_EV_DONE || ev.type == TSC_EV_ERROR))
				terminal[i]++;
	}
	T_CHECK(goaway, "no GOAWAY after SIGTERM");
	T_CHECK(late_tried && late_refused, "a SUBMIT after GOAWAY was accepted");
	for (int i = 0; i < NR; i++)
		T_CHECK(terminal[i] == 1, "request %d got %d terminal frames, want exactly 1", i, terminal[i]);
	tsc_close(&c);
	int st = 0;
	pid_t w = -1;
	for (int i = 0; i < 100 && w != pid; i++) { /* exit within 10 s after the last frame */
		w = waitpid(pid, &st, WNOHANG);
		if (w != pid)
			usleep(100000);
	}
	if (w != pid)
		kill(pid, SIGKILL), waitpid(pid, &st, 0);
	T_CHECK(w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "serve did not exit cleanly (status %d)", st);
	return T_DONE();
}
