/* t_psk: `tokenspeed serve` in PSK mode ([server] tls_psk_identity +
 * tls_psk_file): a client with the key is served; a wrong key, a wrong
 * identity and a certificate client are refused; half a PSK setting is a
 * config error naming both keys. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "t.h"
#include "tsclient.h"
#include "tutil.h"

static int run_one(const char *hp, const struct tsc_tls *tls, int *tokens, char *why, size_t why_n)
{
	struct tsc c;
	struct ts_err e = {0};
	int32_t prompt[4] = {1, 2, 3, 4};
	uint32_t id;
	if (tsc_connect(&c, hp, tls, &e) < 0) {
		snprintf(why, why_n, "%s", e.msg);
		return -1;
	}
	struct tsc_request rq = {.prompt = prompt, .n_prompt = 4, .max_tokens = 8, .ignore_eos = 1};
	samp_params_default(&rq.samp);
	int rc = tsc_submit(&c, &rq, &id);
	struct tsc_event ev;
	double deadline = ts_now() + 10;
	*tokens = 0;
	while (rc == 0 && ts_now() < deadline) {
		int p = tsc_poll(&c, 100, &ev);
		if (p < 0) {
			rc = -1;
			snprintf(why, why_n, "connection lost");
			break;
		}
		if (p == 1 && ev.type == TSC_EV_TOKENS)
			*tokens += (int)ev.n_ids;
		if (p == 1 && (ev.type == TSC_EV_DONE || ev.type == TSC_EV_ERROR))
			break;
	}
	tsc_close(&c);
	return rc;
}

int main(void)
{
	const char *dir = t_ckpt("llama3-mini");
	char abs[512], cmd[2048], hp[64], why[1024];
	int tokens = 0;
	T_CHECK(realpath(dir, abs) != NULL, "realpath");
	T_CHECK(system("rm -rf build/tests/psk && mkdir -p build/tests/psk && build/tokenspeed certs build/tests/psk/certs > /dev/null && "
		       "printf '00112233445566778899aabbccddeeff0011223344556677\\n' > build/tests/psk/key.hex && "
		       "printf 'ffeeddccbbaa99887766554433221100ffeeddccbbaa9988' > build/tests/psk/wrong.hex && "
		       "chmod 600 build/tests/psk/*.hex") == 0,
		"setup");
	int port = t_free_port();
	snprintf(cmd, sizeof(cmd),
		 "printf '[model]\\npath = %s\\n[engine]\\nmax_seq_len = 256\\nmax_running = 4\\nmax_batch_tokens = 64\\n"
		 "[device]\\nbackend = cpu\\ncpu_threads = 1\\n[server]\\nlisten = 127.0.0.1:%d\\n"
		 "tls_psk_identity = agents\\ntls_psk_file = key.hex\\n[log]\\nlevel = warn\\n' > build/tests/psk/psk.ini",
		 abs, port);
	T_CHECK(system(cmd) == 0, "ini");

	/* half a PSK setting is refused at load, naming both keys */
	T_CHECK(system("grep -v tls_psk_file build/tests/psk/psk.ini > build/tests/psk/half.ini") == 0, "half ini");
	struct cfg c;
	struct ts_err e = {0};
	cfg_defaults(&c);
	T_CHECK(cfg_load(&c, "build/tests/psk/half.ini", &e) < 0, "identity without a key file accepted");
	T_HAS(e.msg, "tls_psk_identity and tls_psk_file go together");

	/* PSK and certificates together are refused at load, naming both modes'
	 * keys (they used to become PSK-only without a word) */
	T_CHECK(system("cp build/tests/psk/psk.ini build/tests/psk/both.ini && "
		       "printf '[server]\\ntls_cert = certs/server.crt\\n' >> build/tests/psk/both.ini") == 0, "both ini");
	cfg_defaults(&c);
	T_CHECK(cfg_load(&c, "build/tests/psk/both.ini", &e) < 0, "PSK and a certificate accepted together");
	T_HAS(e.msg, "tls_psk_identity/tls_psk_file (PSK mode) and tls_cert/tls_key/tls_ca (certificate mode) are both set");

	/* a missing or malformed key file stops serve with a message naming the file */
	static char out[4096];
	T_CHECK(system("sed 's/^tls_psk_file = key.hex/tls_psk_file = nope.hex/' build/tests/psk/psk.ini > build/tests/psk/nokey.ini && "
		       "printf 'not hex' > build/tests/psk/bad.hex && "
		       "sed 's/^tls_psk_file = key.hex/tls_psk_file = bad.hex/' build/tests/psk/psk.ini > build/tests/psk/badkey.ini") == 0,
		"bad ini");
	static const char *const bad[2][2] = {{"build/tests/psk/nokey.ini", "nope.hex"}, {"build/tests/psk/badkey.ini", "bad.hex"}};
	for (int i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd), "build/tokenspeed serve --config %s 2>&1", bad[i][0]);
		FILE *p = popen(cmd, "r");
		size_t n = p ? fread(out, 1, sizeof(out) - 1, p) : 0;
		out[n] = 0;
		int st = p ? pclose(p) : -1;
		T_CHECK(p && WIFEXITED(st) && WEXITSTATUS(st) != 0, "serve started with %s", bad[i][0]);
		T_HAS(out, bad[i][1]);
	}

	pid_t pid = fork();
	if (pid == 0) {
		execl("build/tokenspeed", "tokenspeed", "serve", "--config", "build/tests/psk/psk.ini", (char *)NULL);
		_exit(127);
	}
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	struct tsc_tls good = {.psk_identity = "agents", .psk_file = "build/tests/psk/key.hex"};
	int r = -1;
	for (int i = 0; i < 100 && r < 0; i++) { /* wait for the server, up to 5 s */
		usleep(50000);
		r = run_one(hp, &good, &tokens, why, sizeof(why));
	}
	T_CHECK(r == 0 && tokens == 8, "PSK client not served (%d tokens): %s", tokens, why);

	struct tsc_tls wrong_key = {.psk_identity = "agents", .psk_file = "build/tests/psk/wrong.hex"};
	T_CHECK(run_one(hp, &wrong_key, &tokens, why, sizeof(why)) < 0, "a wrong PSK was served");
	struct tsc_tls wrong_id = {.psk_identity = "intruder", .psk_file = "build/tests/psk/key.hex"};
	T_CHECK(run_one(hp, &wrong_id, &tokens, why, sizeof(why)) < 0, "a wrong PSK identity was served");
	struct tsc_tls cert = {"build/tests/psk/certs/ca.crt", "build/tests/psk/certs/client.crt",
			       "build/tests/psk/certs/client.key", "localhost", NULL, NULL};
	T_CHECK(run_one(hp, &cert, &tokens, why, sizeof(why)) < 0, "a certificate client was served by a PSK server");
	/* and the right one still works afterwards */
	T_CHECK(run_one(hp, &good, &tokens, why, sizeof(why)) == 0 && tokens == 8, "PSK client refused after the refusals: %s",
		why);

	kill(pid, SIGTERM);
	int st = 0;
	waitpid(pid, &st, 0);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "serve exit status %d", st);
	return T_DONE();
}
