/* t_spec: the protocol spec is enough to write a client. tests/spec_client.py,
 * written from src/PROTOCOL.md alone with Python's ssl, runs against a real
 * `tokenspeed serve` (CPU backend, tiny model, mutual certificates, PING every
 * 0.4 s of silence, closed after 1.2 s):
 *   gen     HELLO, WELCOME (every field parsed, lengths add up), SUBMIT of 8
 *           greedy tokens, TOKENS to DONE: the same ids as `tsctl generate`
 *           gives for the same request;
 *   pong    a client that answers PINGs stays open past the idle timeout;
 *   silent  a client that never answers gets PINGs, then is closed, at the
 *           times WELCOME announced.
 * python3 is a dependency of the test (.ci/run installs it): without it the
 * test fails, it is not skipped. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "tsclient.h"
#include "tserve.h"
#include "tutil.h"

#define DIR "build/tests/spec"

/* Runs cmd, its stdout into out (NUL-terminated); returns the exit status. */
static int run(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	if (!p)
		return -1;
	while (n + 1 < cap) {
		size_t r = fread(out + n, 1, cap - 1 - n, p);
		if (r == 0)
			break;
		n += r;
	}
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The numbers inside the first [...] after key in s, as "a,b,c" (no spaces). */
static void list_after(const char *s, const char *key, char *out, size_t cap)
{
	size_t n = 0;
	const char *p = strstr(s, key);
	p = p ? strchr(p, '[') : NULL;
	out[0] = 0;
	for (p = p ? p + 1 : NULL; p && *p && *p != ']' && n + 1 < cap; p++)
		if (*p != ' ')
			out[n++] = *p;
	out[n] = 0;
}

int main(void)
{
	char abs[512], cmd[2048], out[8192], ref[4096], got[1024], want[1024];
	T_CHECK(realpath(t_ckpt("llama3-mini"), abs) != NULL, "realpath");
	T_CHECK(system("command -v python3 > /dev/null") == 0, "python3 not found: the spec client needs it "
							      "(apt-get install -y python3)");
	T_CHECK(system("rm -rf " DIR " && mkdir -p " DIR " && build/tokenspeed certs " DIR "/certs > /dev/null") == 0,
		"certs");
	int port = t_free_port();
	snprintf(cmd, sizeof(cmd),
		 "printf '[model]\\npath = %s\\n[engine]\\nmax_seq_len = 256\\nmax_running = 4\\nmax_batch_tokens = 64\\n"
		 "[device]\\nbackend = cpu\\ncpu_threads = 1\\n[server]\\nlisten = 127.0.0.1:%d\\n"
		 "ping_interval_ms = 400\\nidle_timeout_ms = 1200\\n"
		 "tls_cert = certs/server.crt\\ntls_key = certs/server.key\\ntls_ca = certs/ca.crt\\n"
		 "[log]\\nlevel = warn\\n' > " DIR "/serve.ini",
		 abs, port);
	T_CHECK(system(cmd) == 0, "ini");

	pid_t pid = t_serve_spawn(DIR "/serve.ini", DIR "/serve.log");
	T_CHECK(pid > 0, "fork");
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	struct tsc_tls tls = {DIR "/certs/ca.crt", DIR "/certs/client.crt", DIR "/certs/client.key", "localhost",
			      NULL, NULL};
	T_CHECK(t_serve_wait_up(hp, &tls), "server did not come up on %s", hp);

	/* the C client's ids for the request spec_client makes */
	snprintf(cmd, sizeof(cmd),
		 "build/tsctl generate --server %s --certs " DIR "/certs --server-name localhost --prompt-ids 5,6,7 "
		 "--max-tokens 8 --temperature 0 --ignore-eos 2>/dev/null",
		 hp);
	T_CHECK(run(cmd, ref, sizeof(ref)) == 0, "tsctl generate failed: %s", ref);

	snprintf(cmd, sizeof(cmd), "python3 tests/spec_client.py %d " DIR "/certs gen 2>&1", port);
	int rc = run(cmd, out, sizeof(out));
	printf("# t_spec gen: %s", out);
	T_CHECK(rc == 0, "spec_client gen exited %d", rc);
	T_HAS(out, "WELCOME {'version': 1");
	T_HAS(out, "'ping_interval_ms': 400, 'idle_timeout_ms': 1200");
	T_HAS(out, "n_generated=8");
	list_after(out, "generated", got, sizeof(got));
	/* tsctl prints the ids comma- or space-separated: compare digits and separators loosely */
	size_t n = 0;
	for (const char *p = ref; *p && n + 1 < sizeof(want); p++)
		if ((*p >= '0' && *p <= '9') || *p == ',' || *p == ' ' || *p == '\n')
			want[n++] = (*p == ' ' || *p == '\n') ? ',' : *p;
	want[n] = 0;
	while (n > 0 && want[n - 1] == ',') /* trailing separators */
		want[--n] = 0;
	char *w = want;
	while (*w == ',')
		w++;
	for (char *q = w; *q; q++) /* ",," from a space after a comma */
		while (q[0] == ',' && q[1] == ',')
			memmove(q, q + 1, strlen(q));
	T_CHECK(got[0] && strcmp(got, w) == 0, "spec client ids [%s] != tsctl's [%s]", got, w);

	snprintf(cmd, sizeof(cmd), "python3 tests/spec_client.py %d " DIR "/certs pong 2.0 2>&1", port);
	rc = run(cmd, out, sizeof(out));
	printf("# t_spec pong: %s", strstr(out, "answered") ? strstr(out, "answered") : out);
	T_CHECK(rc == 0, "spec_client pong exited %d", rc);
	T_HAS(out, "still open");

	snprintf(cmd, sizeof(cmd), "timeout 10 python3 tests/spec_client.py %d " DIR "/certs silent 2>&1", port);
	rc = run(cmd, out, sizeof(out));
	const char *line = strstr(out, "PINGs at");
	printf("# t_spec silent: %s", line ? line : out);
	T_CHECK(rc == 0 && line, "spec_client silent exited %d", rc);
	if (line) {
		double first = -1, closed = -1;
		sscanf(line, "PINGs at [%lf", &first);
		const char *c = strstr(line, "closed at ");
		if (c)
			closed = atof(c + 10);
		T_CHECK(first >= 0.3 && first <= 0.8, "first PING after %.3f s (ping_interval_ms 400)", first);
		T_CHECK(closed >= 1.1 && closed <= 2.5, "closed after %.3f s (idle_timeout_ms 1200)", closed);
	}

	kill(pid, SIGTERM);
	int st = 0;
	waitpid(pid, &st, 0);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "server exit status %d", st);
	return T_DONE();
}
