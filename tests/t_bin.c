/* t_bin: the built binaries as a user meets them. build/tokenspeed links only
 * libc.so.6 dynamically; build/tokenspeed-static is fully static and runs;
 * the CLI validates configs, prints them, and generates. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "tutil.h"

static char out[1 << 16];

/* The operator's view of a running server: tsctl's --help on every command,
 * generate's stdout holding only the generated ids or text, stats showing
 * the counters that are not zero (all with --all), and the server's log
 * saying "drained" and how it exits. */
static void test_operator(const char *model)
{
	static const char *const cmds[] = {"generate", "chat", "stats", "bench"};
	char cmd[1536];
	int rc;
	for (int i = 0; i < 4; i++) {
		snprintf(cmd, sizeof(cmd), "build/tsctl %s --help", cmds[i]);
		rc = t_run(cmd, out, sizeof(out));
		char want[64];
		snprintf(want, sizeof(want), "usage: tsctl %s", cmds[i]);
		T_CHECK(rc == 0 && strstr(out, want) && !strstr(out, "needs a value"), "%s: exit %d: %s", cmd, rc, out);
	}
	rc = t_run("build/tsctl generate -h --server 127.0.0.1:1", out, sizeof(out));
	T_CHECK(rc == 0 && strstr(out, "usage: tsctl generate"), "-h after options: %d %s", rc, out);

	int port = t_free_port();
	snprintf(cmd, sizeof(cmd),
		 "rm -rf build/tests/ops && mkdir -p build/tests/ops && build/tokenspeed certs build/tests/ops/certs > /dev/null && "
		 "printf '[model]\\npath = %s\\n[engine]\\nmax_seq_len = 256\\nmax_running = 4\\nmax_batch_tokens = 64\\n"
		 "[device]\\nbackend = cpu\\ncpu_threads = 1\\n[server]\\nlisten = 127.0.0.1:%d\\n"
		 "tls_cert = certs/server.crt\\ntls_key = certs/server.key\\ntls_ca = certs/ca.crt\\n[log]\\nlevel = info\\n' "
		 "> build/tests/ops/serve.ini",
		 model, port);
	T_CHECK(system(cmd) == 0, "ops setup");
	pid_t pid = fork();
	if (pid == 0) {
		if (!freopen("build/tests/ops/serve.log", "w", stderr))
			_exit(126);
		execl("build/tokenspeed", "tokenspeed", "serve", "--config", "build/tests/ops/serve.ini", (char *)NULL);
		_exit(127);
	}
	char tsctl[256];
	snprintf(tsctl, sizeof(tsctl), "build/tsctl %%s --server 127.0.0.1:%d --certs build/tests/ops/certs --server-name localhost",
		 port);
	for (int i = 0; i < 100; i++) { /* up to 10 s for the server */
		usleep(100000);
		snprintf(cmd, sizeof(cmd), tsctl, "stats");
		if ((rc = t_run(cmd, out, sizeof(out))) == 0)
			break;
	}
	T_CHECK(rc == 0, "the server did not answer stats: %s", out);

	/* generate: ids on stdout, the summary on stderr */
	char c2[640];
	snprintf(c2, sizeof(c2), tsctl, "generate");
	snprintf(cmd, sizeof(cmd), "(%s --prompt-ids 1,2,3 --max-tokens 5 --ignore-eos 2>build/tests/ops/gen.err)", c2);
	rc = t_run(cmd, out, sizeof(out));
	int n = 0;
	for (char *q = out; *q;) {
		char *end;
		strtol(q, &end, 10);
		if (end == q)
			break;
		n++;
		q = end + strspn(end, " ");
	}
	T_CHECK(rc == 0 && n == 5 && !strstr(out, "done:") && !strstr(out, "ttft"),
		"generate's stdout is not only its 5 ids (exit %d, %d ids): \"%s\"", rc, n, out);
	size_t len = 0;
	char *err = t_slurp("build/tests/ops/gen.err", &len);
	T_CHECK(err && strstr(err, "done: finish=LENGTH") && strstr(err, "client: ttft="), "summary not on stderr: %s",
		err ? err : "(none)");
	free(err);

	/* stats: counters at zero only with --all */
	snprintf(cmd, sizeof(cmd), tsctl, "stats");
	rc = t_run(cmd, out, sizeof(out));
	int zeros = 0, lines = 0;
	for (char *l = strstr(out, "\n"); l && l[1]; l = strchr(l + 1, '\n')) {
		char name[64];
		unsigned long long v;
		if (sscanf(l + 1, "%63s %llu", name, &v) == 2 && !strchr(name, ':')) {
			lines++;
			zeros += v == 0;
		}
	}
	T_CHECK(rc == 0 && lines > 0 && zeros == 0 && strstr(out, "counters at 0 not shown"),
		"stats shows %d zero counters of %d: %s", zeros, lines, out);
	snprintf(c2, sizeof(c2), tsctl, "stats --all");
	rc = t_run(c2, out, sizeof(out));
	int all = 0;
	zeros = 0;
	for (char *l = strstr(out, "\n"); l && l[1]; l = strchr(l + 1, '\n')) {
		char name[64];
		unsigned long long v;
		if (sscanf(l + 1, "%63s %llu", name, &v) == 2 && !strchr(name, ':')) {
			all++;
			zeros += v == 0;
		}
	}
	T_CHECK(rc == 0 && all > lines && zeros > 0, "stats --all: %d counters (%d at 0), default %d: %s", all, zeros,
		lines, out);

	/* SIGTERM: drained, then the exit line */
	kill(pid, SIGTERM);
	int st = 0;
	waitpid(pid, &st, 0);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "serve exit status %d", st);
	char *log = t_slurp("build/tests/ops/serve.log", &len);
	T_CHECK(log && strstr(log, "serve: signal 15 (SIGTERM): draining") && strstr(log, "serve: drained ms=") &&
			strstr(log, "serve: exit status=0 reason=\"SIGTERM, drained\""),
		"serve's log lacks drained / exit: %s", log ? log : "(none)");
	free(log);
	/* and a failed start says so in its last line */
	rc = t_run("sed 's/^tls_key = .*/tls_key = certs\\/client.key/' build/tests/ops/serve.ini > build/tests/ops/bad.ini && "
		   "build/tokenspeed serve --config build/tests/ops/bad.ini", out, sizeof(out));
	T_CHECK(rc == 1 && strstr(out, "serve: exit status=1 reason=\"server failed: E_INVAL\""), "failed serve: %d %s", rc,
		out);
}

int main(void)
{
	const char *dir = t_ckpt("llama3-mini");
	int rc;

	/* dynamic dependencies: exactly one, libc.so.6 */
	rc = t_run("readelf -d build/tokenspeed | grep NEEDED", out, sizeof(out));
	T_CHECK(rc == 0, "readelf failed: %s", out);
	T_HAS(out, "[libc.so.6]");
	int needed = 0;
	for (char *p = out; (p = strstr(p, "NEEDED")); p++)
		needed++;
	T_CHECK(needed == 1, "build/tokenspeed needs %d shared libraries, want only libc.so.6:\n%s", needed, out);

	/* static build: no dynamic section, no interpreter, and it runs */
	rc = t_run("readelf -d build/tokenspeed-static", out, sizeof(out));
	T_HAS(out, "no dynamic section");
	rc = t_run("readelf -l build/tokenspeed-static | grep -c INTERP", out, sizeof(out));
	T_CHECK(atoi(out) == 0, "static binary has a program interpreter");
	rc = t_run("build/tokenspeed-static --print-config --config config/tokenspeed.ini", out, sizeof(out));
	T_CHECK(rc == 0, "static binary failed to print the config: %s", out);
	T_HAS(out, "max_seq_len");

	/* config checks through the CLI */
	rc = t_run("build/tokenspeed --check-config config/tokenspeed.ini", out, sizeof(out));
	T_CHECK(rc == 0, "shipped config rejected: %s", out);
	rc = t_run("printf '[engine]\\nmax_seq_len = 7\\n' > build/tests/bad.ini && build/tokenspeed --check-config build/tests/bad.ini",
		 out, sizeof(out));
	T_CHECK(rc != 0, "bad config accepted");
	T_HAS(out, "bad.ini:2");
	T_HAS(out, "max_seq_len");

	/* generate: batched prompts equal the same prompts one by one, on the
	 * glibc and the static binary alike */
	char cmd[1024], one[3][512], abs[512];
	T_CHECK(realpath(dir, abs) != NULL, "realpath %s", dir);
	const char *pr[3] = {"1,2,3,4,5", "7,8,9", "10,11,12,13,14,15,16,17,18,19,20"};
	snprintf(cmd, sizeof(cmd),
		 "printf '[model]\\npath = %s\\n[engine]\\nmax_seq_len = 256\\nmax_running = 4\\nmax_batch_tokens = 8\\n[device]\\nbackend = cpu\\n[log]\\nlevel = warn\\n' > build/tests/gen.ini",
		 abs);
	T_CHECK(system(cmd) == 0, "cannot write gen.ini");
	const char *opts = "--max-tokens 12 --temperature 0.9 --top-p 0.95 --seed 7 --ignore-eos";
	for (int i = 0; i < 3; i++) {
		snprintf(cmd, sizeof(cmd), "build/tokenspeed generate --config build/tests/gen.ini --prompt-ids %s %s",
			 pr[i], opts);
		rc = t_run(cmd, out, sizeof(out));
		T_CHECK(rc == 0, "generate failed: %s", out);
		char *l = strstr(out, "out[0]:");
		T_CHECK(l != NULL, "no output line: %s", out);
		snprintf(one[i], sizeof(one[i]), "%.*s", (int)strcspn(l ? l + 7 : "", "\n"), l ? l + 7 : "");
		T_HAS(out, "tok/s");
		T_HAS(out, "allocs_after_ready=0");
	}
	for (int b = 0; b < 2; b++) {
		snprintf(cmd, sizeof(cmd), "%s generate --config build/tests/gen.ini --prompt-ids %s --prompt-ids %s --prompt-ids %s %s",
			 b ? "build/tokenspeed-static" : "build/tokenspeed", pr[0], pr[1], pr[2], opts);
		rc = t_run(cmd, out, sizeof(out));
		T_CHECK(rc == 0, "batched generate failed: %s", out);
		for (int i = 0; i < 3; i++) {
			char key[32];
			snprintf(key, sizeof(key), "out[%d]:", i);
			char *l = strstr(out, key);
			T_CHECK(l && !strncmp(l + strlen(key), one[i], strlen(one[i])), "%s: prompt %d batched differs from alone:\n%s\nalone:%s",
				b ? "static" : "glibc", i, out, one[i]);
		}
	}

	/* without a driver: backend = auto says why in one line and runs on the
	 * CPU; backend = gpu refuses, naming what is missing. Only meaningful
	 * where libcuda.so.1 is absent (CI, this dev box): elsewhere not run,
	 * and not counted. */
	if (system("ldconfig -p | grep -q 'libcuda.so.1 '") != 0) {
		snprintf(cmd, sizeof(cmd),
			 "sed 's/^backend = cpu/backend = auto/; s/^level = warn/level = info/' build/tests/gen.ini > build/tests/auto.ini && "
			 "build/tokenspeed generate --config build/tests/auto.ini --prompt-ids 1,2,3 --max-tokens 2");
		rc = t_run(cmd, out, sizeof(out));
		T_CHECK(rc == 0, "backend = auto without a GPU failed: %s", out);
		T_HAS(out, "stage=backend pick=cpu reason=\"no NVIDIA driver: cannot load libcuda.so.1");
		T_HAS(out, "out[0]:");
		rc = t_run("sed 's/^backend = cpu/backend = gpu/' build/tests/gen.ini > build/tests/gpu.ini && "
			 "build/tokenspeed generate --config build/tests/gpu.ini --prompt-ids 1,2,3 --max-tokens 2",
			 out, sizeof(out));
		T_CHECK(rc != 0, "backend = gpu without a GPU did not fail");
		T_HAS(out, "[device] backend = gpu: no NVIDIA driver");
		rc = t_run("build/tokenspeed-static generate --config build/tests/gpu.ini --prompt-ids 1,2,3 --max-tokens 2", out,
			 sizeof(out));
		T_CHECK(rc != 0, "the static binary accepted backend = gpu");
		T_HAS(out, "static build has no GPU backend");
	} else {
		printf("libcuda.so.1 present: the no-driver checks were not run\n");
	}

	/* all of src/ and boot/ allocates through ts_alloc/ts_free (src/base.h), so
	 * the allocation counter the tests read sees everything */
	rc = t_run("grep -nP '(?<![\\w>.])(malloc|calloc|realloc|free)\\(' src/*.c boot/*.c | grep -v '^src/base.c:'", out,
		 sizeof(out));
	T_CHECK(rc != 0 && out[0] == 0, "direct allocation outside src/base.c:\n%s", out);

	/* bad CLI input: a clear message and a non-zero exit */
	rc = t_run("build/tokenspeed generate --config build/tests/gen.ini --prompt-ids 1,x,3", out, sizeof(out));
	T_CHECK(rc == 2, "malformed --prompt-ids accepted (rc %d)", rc);
	T_HAS(out, "--prompt-ids");
	rc = t_run("build/tokenspeed generate --config build/tests/gen.ini --prompt-ids 1,2,99999999 --max-tokens 2", out, sizeof(out));
	T_CHECK(rc != 0, "out-of-vocabulary prompt accepted");
	T_HAS(out, "vocabulary");
	rc = t_run("build/tokenspeed generate --config build/tests/gen.ini --prompt-ids 1,2 --top-p 3 --temperature 1", out, sizeof(out));
	T_CHECK(rc != 0, "top_p 3 accepted");
	T_HAS(out, "top_p");
	test_operator(abs);
	return T_DONE();
}
