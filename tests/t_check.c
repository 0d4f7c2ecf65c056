/* t_check: `tokenspeed --check-config` checks everything that does not need
 * the GPU, and `serve` makes the same checks before it reads a weight.
 *
 * From one good setup (a tiny checkpoint with a tokenizer, `tokenspeed certs`
 * files, a PSK file) each case breaks one thing and expects --check-config to
 * exit non-zero with one message naming the key or file and what to do:
 * a missing TLS file, a file that is not PEM, a key that is not the
 * certificate's, an expired server certificate, one not valid yet, a server certificate from
 * another CA than tls_ca, a CA file without a CA, PSK and certificates set
 * together, a missing / malformed / short PSK file, a model directory that is
 * not a checkpoint, an unsupported architecture, a broken tokenizer.json and
 * a tokenizer bigger than the model's vocab. Then serve on a bad TLS file
 * exits before its first checkpoint log line (so before any weight and
 * before "ready"), and quickly.
 */
#include "../boot/certs.c" /* cert_spec and certs_cert_pem, for an expired certificate */

#include <unistd.h>

#include "t.h"
#include "tutil.h"

#define W "build/tests/check"

static char out[1 << 16];

/* Writes W/NAME.ini: the model dir, then extra ini lines (printf escapes). */
static void ini(const char *name, const char *model, const char *server)
{
	char cmd[4096];
	snprintf(cmd, sizeof(cmd),
		 "printf '[model]\\npath = %s\\n[engine]\\nmax_seq_len = 256\\nmax_running = 4\\nmax_batch_tokens = 64\\n"
		 "[device]\\nbackend = cpu\\ncpu_threads = 1\\n[server]\\nlisten = 127.0.0.1:17999\\n%s[log]\\nlevel = info\\n' > "
		 W "/%s.ini",
		 model, server, name);
	T_CHECK(system(cmd) == 0, "write %s.ini", name);
}

#define CERTS(c, k, a) "tls_cert = " c "\\ntls_key = " k "\\ntls_ca = " a "\\n"
#define GOOD           CERTS("certs/server.crt", "certs/server.key", "certs/ca.crt")

/* --check-config on W/NAME.ini fails naming every needle (up to 3). */
static void bad(const char *name, const char *n1, const char *n2, const char *n3)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "build/tokenspeed --check-config " W "/%s.ini", name);
	int rc = t_run(cmd, out, sizeof(out));
	T_CHECK(rc != 0, "%s: --check-config accepted it: %s", name, out);
	T_CHECK(strchr(out, '\n') == strrchr(out, '\n'), "%s: more than one line: %s", name, out);
	const char *n[3] = {n1, n2, n3};
	for (int i = 0; i < 3; i++)
		if (n[i])
			T_CHECK(strstr(out, n[i]) != NULL, "%s: \"%s\" lacks \"%s\"", name, out, n[i]);
	printf("%-14s %s", name, out);
}

/* An expired server certificate for certs/server.key, signed by certs/ca.key. */
static void expired_cert(void)
{
	struct ts_err e = {0};
	mbedtls_pk_context ca_key, key;
	unsigned char pem[CERTS_PEM_BYTES];
	T_CHECK(psa_crypto_init() == PSA_SUCCESS, "psa_crypto_init");
	mbedtls_pk_init(&ca_key);
	mbedtls_pk_init(&key);
	T_CHECK(mbedtls_pk_parse_keyfile(&ca_key, W "/certs/ca.key", NULL, mbedtls_psa_get_random, NULL) == 0, "ca.key");
	T_CHECK(mbedtls_pk_parse_keyfile(&key, W "/certs/server.key", NULL, mbedtls_psa_get_random, NULL) == 0,
		"server.key");
	time_t now = time(NULL);
	struct cert_spec spec = {
	    .subject = "CN=tokenspeed,O=TokenSpeed",
	    .issuer = "CN=tokenspeed-ca,O=TokenSpeed",
	    .subject_key = &key,
	    .issuer_key = &ca_key,
	    .eku_oid = MBEDTLS_OID_SERVER_AUTH,
	    .eku_len = MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH),
	    .not_before = now - 30 * 86400,
	    .not_after = now - 2 * 86400,
	};
	T_CHECK(certs_cert_pem(&spec, pem, sizeof(pem), &e) == 0, "%s", e.msg);
	T_CHECK(certs_file_new(W, "old.crt", pem, strlen((char *)pem), 0644, &e) == 0, "%s", e.msg);
	spec.not_before = now + 2 * 86400; /* and one not valid yet */
	spec.not_after = now + 30 * 86400;
	T_CHECK(certs_cert_pem(&spec, pem, sizeof(pem), &e) == 0, "%s", e.msg);
	T_CHECK(certs_file_new(W, "future.crt", pem, strlen((char *)pem), 0644, &e) == 0, "%s", e.msg);
	mbedtls_pk_free(&ca_key);
	mbedtls_pk_free(&key);
}

int main(void)
{
	const char *d = t_ckpt("llama3-mini");
	char model[512], cmd[2048];
	T_CHECK(realpath(d, model) != NULL, "realpath");
	/* the tokenizer files of the same preset, beside its weights */
	T_CHECK(system("rm -rf " W " && mkdir -p " W " && build/tokenspeed certs " W "/certs > /dev/null && "
		       "build/tokenspeed certs " W "/other > /dev/null && "
		       "cp -r build/tests/ckpt/llama3-mini " W "/tok && "
		       "build/tests/gen_ckpt --preset llama3-mini --out " W "/tok --tokenizer --no-weights > /dev/null && "
		       "printf '00112233445566778899aabbccddeeff\\n' > " W "/key.hex && "
		       "printf '0011223344' > " W "/short.hex && printf 'zz' > " W "/bad.hex && "
		       "mkdir -p " W "/empty && cp -r " W "/tok " W "/arch && cp -r " W "/tok " W "/badtok && "
		       "sed -i 's/LlamaForCausalLM/FooForCausalLM/' " W "/arch/config.json && "
		       "printf '{\"model\": [' > " W "/badtok/tokenizer.json") == 0,
		"setup");
	char tok[600];
	T_CHECK(realpath(W "/tok", tok) != NULL, "realpath tok");
	expired_cert();

	/* the good ones: certificates, PSK, and no server keys at all */
	ini("good", tok, GOOD);
	int rc = t_run("build/tokenspeed --check-config " W "/good.ini", out, sizeof(out));
	T_CHECK(rc == 0, "good config refused: %s", out);
	T_HAS(out, "LlamaForCausalLM");
	T_HAS(out, "tokenizer");
	T_HAS(out, "chat format llama3");
	T_HAS(out, "mutual certificates");
	printf("good           %s", out);
	ini("psk", tok, "tls_psk_identity = agents\\ntls_psk_file = key.hex\\n");
	rc = t_run("build/tokenspeed --check-config " W "/psk.ini", out, sizeof(out));
	T_CHECK(rc == 0 && strstr(out, "PSK mode"), "PSK config refused: %s", out);
	ini("noserver", tok, "");
	rc = t_run("build/tokenspeed --check-config " W "/noserver.ini", out, sizeof(out));
	T_CHECK(rc == 0 && strstr(out, "no TLS files set"), "a config without [server] TLS refused: %s", out);

	/* TLS files */
	ini("missing", tok, CERTS("certs/server.crt", "certs/nope.key", "certs/ca.crt"));
	bad("missing", "[server] tls_key", "nope.key: No such file", "check the path");
	ini("notpem", tok, CERTS("key.hex", "certs/server.key", "certs/ca.crt"));
	bad("notpem", "key.hex: not a PEM certificate", "tls_cert", NULL);
	ini("notpemkey", tok, CERTS("certs/server.crt", "certs/ca.crt", "certs/ca.crt"));
	bad("notpemkey", "ca.crt: not a PEM private key", NULL, NULL);
	ini("mismatch", tok, CERTS("certs/server.crt", "certs/client.key", "certs/ca.crt"));
	bad("mismatch", "client.key: this key does not belong to the certificate", "server.crt", NULL);
	ini("expired", tok, CERTS("old.crt", "certs/server.key", "certs/ca.crt"));
	bad("expired", "old.crt: the certificate expired on", "tokenspeed certs DIR", NULL);
	ini("future", tok, CERTS("future.crt", "certs/server.key", "certs/ca.crt"));
	bad("future", "future.crt: the certificate is not valid until", "clock", NULL);
	ini("wrongca", tok, CERTS("certs/server.crt", "certs/server.key", "other/ca.crt"));
	bad("wrongca", "server.crt: the certificate is not signed by the CA in", "other/ca.crt", NULL);
	ini("notca", tok, CERTS("certs/server.crt", "certs/server.key", "certs/client.crt"));
	bad("notca", "client.crt: certificate 1 is not a CA", "tls_ca", NULL);
	ini("halfcert", tok, "tls_cert = certs/server.crt\\n");
	bad("halfcert", "unset: tls_key, tls_ca", "tokenspeed certs DIR", NULL);

	/* PSK */
	ini("both", tok, GOOD "tls_psk_identity = agents\\ntls_psk_file = key.hex\\n");
	bad("both", "tls_psk_identity/tls_psk_file (PSK mode) and tls_cert/tls_key/tls_ca", "both set",
	    "remove the tls_psk_* lines");
	ini("nopsk", tok, "tls_psk_identity = agents\\ntls_psk_file = nope.hex\\n");
	bad("nopsk", "[server] tls_psk_file", "nope.hex", "openssl rand -hex 32");
	ini("badpsk", tok, "tls_psk_identity = agents\\ntls_psk_file = bad.hex\\n");
	bad("badpsk", "bad.hex", "hex digit", NULL);
	ini("shortpsk", tok, "tls_psk_identity = agents\\ntls_psk_file = short.hex\\n");
	bad("shortpsk", "PSK of 5 bytes", "16..48", NULL);

	/* the checkpoint */
	char p[700];
	snprintf(p, sizeof(p), "%s", tok);
	strcpy(strrchr(p, '/') + 1, "empty");
	ini("notckpt", p, GOOD);
	bad("notckpt", "empty", "config.json", NULL);
	strcpy(strrchr(p, '/') + 1, "arch");
	ini("arch", p, GOOD);
	bad("arch", "FooForCausalLM", NULL, NULL);
	strcpy(strrchr(p, '/') + 1, "badtok");
	ini("badtok", p, GOOD);
	bad("badtok", "tokenizer.json", NULL, NULL);

	/* serve: a bad TLS file stops it before the checkpoint is opened */
	snprintf(cmd, sizeof(cmd), "build/tokenspeed serve --config " W "/mismatch.ini");
	double t0 = ts_now();
	rc = t_run(cmd, out, sizeof(out));
	double dt = ts_now() - t0;
	T_CHECK(rc != 0, "serve started with a mismatched key: %s", out);
	T_HAS(out, "client.key: this key does not belong to the certificate");
	T_CHECK(!strstr(out, "stage=checkpoint") && !strstr(out, "ready"), "serve read the model first: %s", out);
	T_CHECK(dt < 2.0, "serve took %.2f s to refuse", dt);
	printf("serve refused a bad key in %.0f ms: %s", dt * 1e3, out);
	snprintf(cmd, sizeof(cmd), "build/tokenspeed serve --config " W "/both.ini");
	rc = t_run(cmd, out, sizeof(out));
	T_CHECK(rc != 0 && strstr(out, "both set") && !strstr(out, "ready"), "serve with PSK and certificates: %s", out);
	return T_DONE();
}
