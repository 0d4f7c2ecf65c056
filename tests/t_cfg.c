/* t_cfg: the shipped config loads; defaults match the table; every error names
 * the file, the line, the key and what is accepted; relative paths resolve
 * against the ini's directory; cfg_print reloads to the same struct;
 * cfg_print_doc lists every key. Run from the repository root. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "log.h"
#include "t.h"

static char tmp[PATH_MAX];   /* the mkdtemp directory, canonical */
static char cwd[PATH_MAX];   /* canonical working directory (the repo root) */

static const char *const all_keys[] = {
	"path", "dtype", "chat_format", "max_seq_len", "max_batch_tokens", "max_running", "kv_block_tokens",
	"kv_tokens", "kv_mem_fraction", "max_queue", "backend", "gpus", "tp", "cpu_threads",
	"listen", "tls_cert", "tls_key", "tls_ca", "tls_psk_identity", "tls_psk_file",
	"max_connections", "max_conns_per_peer", "max_requests", "max_frame_bytes", "initial_credit", "credit_timeout_ms",
	"output_limit_bytes", "handshake_timeout_ms", "hello_timeout_ms", "ping_interval_ms", "idle_timeout_ms", "level",
	"hostname", "interface", "address", "gateway", "address6", "gateway6", "mtu", "link_wait_ms",
};

/* ------------------------------------------------------------ helpers */

/* Writes text to tmp/name; returns the path (static, valid until the next call). */
static const char *put(const char *name, const char *text)
{
	static char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
	fputs(text, f);
	fclose(f);
	return path;
}

/* Loads text as tmp/e.ini expecting -code, and a message holding every
 * needle (NULL-terminated). "@" in a needle stands for the file's path. The
 * struct must come back untouched. */
static void expect_err(int line, const char *text, int code, ...)
{
	const char *path = put("e.ini", text);
	struct cfg c, before;
	struct ts_err e = {0};
	memset(&c, 0xab, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	int rc = cfg_load(&c, path, &e);
	T_CHECK(rc == -code, "test line %d: rc %d (%s), want %s; msg: %s", line, rc,
		ts_code_name(rc), ts_code_name(code), e.msg);
	T_CHECK(e.code == code, "test line %d: e.code %d", line, e.code);
	T_CHECK(memcmp(&c, &before, sizeof(c)) == 0, "test line %d: failed load changed the struct", line);
	va_list ap;
	va_start(ap, code);
	for (const char *n; (n = va_arg(ap, const char *)) != NULL;) {
		char want[PATH_MAX + 256];
		const char *at = strchr(n, '@');
		if (at)
			snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - n), n, path, at + 1);
		else
			snprintf(want, sizeof(want), "%s", n);
		if (!strstr(e.msg, want))
			fprintf(stderr, "  (test line %d)\n", line);
		T_HAS(e.msg, want);
	}
	va_end(ap);
}
#define ERR(text, code, ...) expect_err(__LINE__, text, code, __VA_ARGS__, NULL)

static int load_ok(int line, const char *path, struct cfg *c)
{
	struct ts_err e = {0};
	int rc = cfg_load(c, path, &e);
	T_CHECK(rc == 0, "test line %d: %s: %s", line, path, e.msg);
	return rc;
}
#define LOAD_OK(path, c) load_ok(__LINE__, path, c)

/* Loads "[model]\npath = m\n" + text from tmp/ok.ini. */
static int load_text(int line, const char *text, struct cfg *c)
{
	char buf[8192];
	snprintf(buf, sizeof(buf), "[model]\npath = m\n%s", text);
	return load_ok(line, put("ok.ini", buf), c);
}
#define LOAD_TEXT(text, c) load_text(__LINE__, text, c)

/* cfg_print(a) into tmp/name, reload, and compare all but the file name. */
static void round_trip(int line, const struct cfg *a, const char *name)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	FILE *f = fopen(path, "w");
	T_CHECK(f != NULL, "open %s", path);
	if (!f)
		return;
	cfg_print(a, f);
	fclose(f);
	struct cfg b;
	memset(&b, 0x5a, sizeof(b));
	if (load_ok(line, path, &b))
		return;
	T_CHECK(strcmp(b.file, path) == 0, "file \"%s\"", b.file);
	memcpy(b.file, a->file, sizeof(b.file));
	T_CHECK(memcmp(a, &b, sizeof(b)) == 0, "test line %d: reloaded struct differs", line);
	T_CHECK(strcmp(a->model.path, b.model.path) == 0 && a->engine.max_seq_len == b.engine.max_seq_len &&
		a->engine.kv_tokens == b.engine.kv_tokens &&
		a->engine.kv_mem_fraction == b.engine.kv_mem_fraction &&
		strcmp(a->device.gpus, b.device.gpus) == 0 && strcmp(a->server.listen, b.server.listen) == 0 &&
		strcmp(a->server.tls_cert, b.server.tls_cert) == 0 && a->log.level == b.log.level &&
		a->device.backend == b.device.backend && a->model.dtype == b.model.dtype,
		"test line %d: fields differ", line);
}

/* ------------------------------------------------------------ tests */

static void test_defaults(void)
{
	struct cfg c;
	memset(&c, 0x77, sizeof(c));
	cfg_defaults(&c);
	T_CHECK(c.file[0] == '\0', "file \"%s\"", c.file);
	T_CHECK(c.model.path[0] == '\0', "path \"%s\"", c.model.path);
	T_CHECK(c.model.dtype == CFG_DTYPE_AUTO, "dtype %d", c.model.dtype);
	T_CHECK(c.engine.max_seq_len == 4096, "max_seq_len %d", c.engine.max_seq_len);
	T_CHECK(c.engine.max_batch_tokens == 2048, "max_batch_tokens %d", c.engine.max_batch_tokens);
	T_CHECK(c.engine.max_running == 64, "max_running %d", c.engine.max_running);
	T_CHECK(c.engine.kv_block_tokens == 16, "kv_block_tokens %d", c.engine.kv_block_tokens);
	T_CHECK(c.engine.kv_tokens == 0, "kv_tokens %lld", (long long)c.engine.kv_tokens);
	T_CHECK(c.engine.kv_mem_fraction == 0.9, "kv_mem_fraction %g", c.engine.kv_mem_fraction);
	T_CHECK(c.engine.max_queue == 1024, "max_queue %d", c.engine.max_queue);
	T_CHECK(c.device.backend == CFG_BACKEND_AUTO, "backend %d", c.device.backend);
	T_CHECK(strcmp(c.device.gpus, "0") == 0, "gpus \"%s\"", c.device.gpus);
	T_CHECK(c.device.cpu_threads == 0, "cpu_threads %d", c.device.cpu_threads);
	T_CHECK(strcmp(c.server.listen, "127.0.0.1:7070") == 0, "listen \"%s\"", c.server.listen);
	T_CHECK(!c.server.tls_cert[0] && !c.server.tls_key[0] && !c.server.tls_ca[0], "tls set");
	T_CHECK(c.log.level == LOG_INFO, "level %d", c.log.level);

	/* Keys left out of a file keep exactly these defaults. */
	struct cfg d;
	if (LOAD_TEXT("", &d) == 0) {
		memcpy(d.file, c.file, sizeof(d.file));
		memcpy(d.model.path, c.model.path, sizeof(d.model.path));
		T_CHECK(memcmp(&c, &d, sizeof(c)) == 0, "a file with only [model] path differs from the defaults");
	}
}

static void test_shipped(void)
{
	struct cfg c;
	if (LOAD_OK("config/tokenspeed.ini", &c))
		return;
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "%s/build/models/default", cwd);
	T_CHECK(strcmp(c.model.path, want) == 0, "model.path \"%s\", want \"%s\"", c.model.path, want);
	T_CHECK(strcmp(c.file, "config/tokenspeed.ini") == 0, "file \"%s\"", c.file);
	T_CHECK(c.device.backend == CFG_BACKEND_AUTO, "backend %d", c.device.backend);
	T_CHECK(c.device.cpu_threads == 0, "cpu_threads %d", c.device.cpu_threads);
	T_CHECK(c.engine.max_seq_len == 2048, "max_seq_len %d", c.engine.max_seq_len);
	T_CHECK(c.engine.max_running == 16, "max_running %d", c.engine.max_running);
	T_CHECK(c.engine.max_batch_tokens == 512, "max_batch_tokens %d", c.engine.max_batch_tokens);
	T_CHECK(c.engine.kv_tokens == 0, "kv_tokens %lld", (long long)c.engine.kv_tokens);
	T_CHECK(c.log.level == LOG_INFO, "level %d", c.log.level);

	/* The same file through another spelling of its path resolves the same. */
	struct cfg d;
	if (LOAD_OK("./config/../config/tokenspeed.ini", &d) == 0)
		T_CHECK(strcmp(d.model.path, want) == 0, "model.path \"%s\"", d.model.path);

	/* Every key of the table is documented in the shipped file. */
	FILE *f = fopen("config/tokenspeed.ini", "r");
	char text[32768] = "";
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	if (f)
		fclose(f);
	text[n] = '\0';
	for (size_t i = 0; i < TS_ARRAY_LEN(all_keys); i++) {
		char k[64];
		snprintf(k, sizeof(k), ")\n%s =", all_keys[i]);
		T_HAS(text, k);
	}
	round_trip(__LINE__, &c, "rt_shipped.ini");
}

static void test_errors(void)
{
	/* Sections. */
	ERR("[model]\npath = m\n[foo]\nx = 1\n", E_FORMAT, "@:3: unknown section [foo]",
	    "(known: model, engine, device, server, log, net)");
	ERR("[model]\npath = m\n\n[bar]\n", E_FORMAT, "@:4: unknown section [bar] (known: model, engine");
	ERR("[model]\npath = m\n[Engine] ; upper case\n", E_FORMAT, "@:3: unknown section [Engine]");
	ERR("path = m\n[model]\n", E_FORMAT, "@:1: path = \"m\": key outside any section",
	    "known sections: model, engine");

	/* Keys. */
	ERR("[model]\npath = m\n[engine]\nmax_seq_lenn = 64\n", E_FORMAT,
	    "@:4: [engine] max_seq_lenn = \"64\": unknown key",
	    "(known: max_seq_len, max_batch_tokens, max_running, kv_block_tokens, kv_tokens, kv_mem_fraction, max_queue)");
	ERR("[model]\npath = m\n[engine]\nmax_running = 4\n[model]\ndtype = f16\n[engine]\nmax_running = 8\n",
	    E_FORMAT, "@:8: [engine] max_running = \"8\": set twice, first on line 4", "(accepted 1..4096)");
	ERR("[model]\npath = a\npath = b\n", E_FORMAT, "@:3: [model] path = \"b\": set twice",
	    "(accepted a directory");

	/* Numbers. */
	ERR("[model]\npath = m\n[engine]\nmax_seq_len = 12\n", E_RANGE,
	    "@:4: [engine] max_seq_len = \"12\": out of range (accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_seq_len = 12abc\n", E_FORMAT,
	    "@:4: [engine] max_seq_len = \"12abc\": not an integer", "(accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_seq_len = 1.5\n", E_FORMAT, "@:4: [engine] max_seq_len",
	    "not an integer", "(accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_seq_len = big\n", E_FORMAT, "@:4: [engine] max_seq_len",
	    "not an integer", "(accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_seq_len =\n", E_FORMAT, "@:4: [engine] max_seq_len = \"\": empty",
	    "(accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_seq_len = 64;x\n", E_FORMAT, "@:4: [engine] max_seq_len",
	    "not an integer", "(accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_seq_len = 99999999999999999999999\n", E_RANGE,
	    "@:4: [engine] max_seq_len", "out of range (accepted 16..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_running = -1\n", E_RANGE, "@:4: [engine] max_running = \"-1\"",
	    "out of range (accepted 1..4096)");
	ERR("[model]\npath = m\n[engine]\nkv_tokens = 1099511627777\n", E_RANGE, "@:4: [engine] kv_tokens",
	    "out of range (accepted 0..1099511627776)");
	ERR("[model]\npath = m\n[engine]\nkv_mem_fraction = 1\n", E_RANGE,
	    "@:4: [engine] kv_mem_fraction = \"1\": out of range (accepted 0.01..0.99)");
	ERR("[model]\npath = m\n[engine]\nkv_mem_fraction = 0.5x\n", E_FORMAT,
	    "@:4: [engine] kv_mem_fraction = \"0.5x\": not a number", "(accepted 0.01..0.99)");
	ERR("[model]\npath = m\n[engine]\nkv_mem_fraction = nan\n", E_FORMAT, "@:4: [engine] kv_mem_fraction",
	    "not a number", "(accepted 0.01..0.99)");
	ERR("[model]\npath = m\n[engine]\nkv_mem_fraction = -nan\n", E_RANGE, "@:4: [engine] kv_mem_fraction",
	    "(accepted 0.01..0.99)");
	ERR("[model]\npath = m\n[engine]\nkv_mem_fraction =\n", E_FORMAT, "@:4: [engine] kv_mem_fraction",
	    "empty", "(accepted 0.01..0.99)");
	ERR("[model]\npath = m\n[engine]\nkv_block_tokens = 24\n", E_RANGE,
	    "@:4: [engine] kv_block_tokens = \"24\": not a power of two", "(accepted a power of two in 1..1024)");
	ERR("[model]\npath = m\n[engine]\nkv_block_tokens = 2048\n", E_RANGE, "@:4: [engine] kv_block_tokens",
	    "out of range", "(accepted a power of two in 1..1024)");

	/* Words. */
	ERR("[model]\npath = m\n[device]\nbackend = tpu\n", E_FORMAT,
	    "@:4: [device] backend = \"tpu\": unknown word (accepted auto|cpu|gpu)");
	ERR("[model]\npath = m\ndtype = BF16\n", E_FORMAT, "@:3: [model] dtype = \"BF16\"",
	    "(accepted auto|bf16|f16|f32)");
	ERR("[model]\npath = m\nchat_format = jinja\n", E_FORMAT, "@:3: [model] chat_format = \"jinja\"",
	    "(accepted auto|none|chatml|llama3|llama2|mistral|deepseek3)");
	ERR("[model]\npath = m\n[log]\nlevel = verbose\n", E_FORMAT, "@:4: [log] level = \"verbose\"",
	    "(accepted debug|info|warn|error|off)");

	/* gpus. */
	ERR("[model]\npath = m\n[device]\ngpus = 0,1,0\n", E_FORMAT, "@:4: [device] gpus = \"0,1,0\"",
	    "GPU 0 listed twice", "(accepted comma-separated distinct GPU ordinals 0..63");
	ERR("[model]\npath = m\n[device]\ngpus = 64\n", E_RANGE, "@:4: [device] gpus = \"64\"",
	    "out of range", "(accepted comma-separated distinct GPU ordinals 0..63");
	ERR("[model]\npath = m\n[device]\ngpus = 0,,1\n", E_FORMAT, "@:4: [device] gpus", "expected an ordinal",
	    "(accepted comma-separated");
	ERR("[model]\npath = m\n[device]\ngpus = 0,\n", E_FORMAT, "@:4: [device] gpus", "after the last comma",
	    "(accepted comma-separated");
	ERR("[model]\npath = m\n[device]\ngpus =\n", E_FORMAT, "@:4: [device] gpus", "(accepted comma-separated");
	ERR("[model]\npath = m\n[device]\ngpus = 0 1\n", E_FORMAT, "@:4: [device] gpus", "expected ','",
	    "(accepted comma-separated");
	ERR("[model]\npath = m\n[device]\ngpus = cuda:0\n", E_FORMAT, "@:4: [device] gpus", "(accepted comma-separated");

	/* listen. */
	ERR("[model]\npath = m\n[server]\nlisten = localhost\n", E_FORMAT, "@:4: [server] listen = \"localhost\"",
	    "no ':port'", "(accepted host:port or [ipv6-address]:port, port 1..65535)");
	ERR("[model]\npath = m\n[server]\nlisten = 10.0.0.1:0\n", E_RANGE, "@:4: [server] listen",
	    "port 0 out of range", "(accepted host:port");
	ERR("[model]\npath = m\n[server]\nlisten = 10.0.0.1:65536\n", E_RANGE, "@:4: [server] listen",
	    "out of range", "port 1..65535");
	ERR("[model]\npath = m\n[server]\nlisten = 10.0.0.1:80x\n", E_FORMAT, "@:4: [server] listen",
	    "not a number", "port 1..65535");
	ERR("[model]\npath = m\n[server]\nlisten = ::1:7070\n", E_FORMAT, "@:4: [server] listen",
	    "in brackets", "port 1..65535");
	ERR("[model]\npath = m\n[server]\nlisten = [::1]\n", E_FORMAT, "@:4: [server] listen",
	    "after ']'", "port 1..65535");
	ERR("[model]\npath = m\n[server]\nlisten = :7070\n", E_FORMAT, "@:4: [server] listen", "no host",
	    "port 1..65535");
	ERR("[model]\npath = m\n[server]\nlisten = host:\n", E_FORMAT, "@:4: [server] listen", "no port",
	    "port 1..65535");

	/* Required. */
	ERR("[engine]\nmax_seq_len = 64\n", E_FORMAT,
	    "@: [model] path is required: the directory of a Hugging Face checkpoint");
	ERR("", E_FORMAT, "@: [model] path is required");
	ERR("[model]\npath =\n", E_FORMAT, "@:2: [model] path = \"\": empty", "(accepted a directory");

	/* Between keys: both named, the one set in the file blamed. */
	ERR("[model]\npath = m\n[engine]\nmax_batch_tokens = 8\n", E_RANGE,
	    "@:4: [engine] max_batch_tokens = \"8\"", "[engine] max_running = 64",
	    "one token for each running sequence", "(accepted 64..1048576)");
	ERR("[model]\npath = m\n[engine]\nmax_batch_tokens = 32\nmax_running = 64\n", E_RANGE,
	    "@:5: [engine] max_running = \"64\"", "[engine] max_batch_tokens = 32", "(accepted 1..32)");
	ERR("[model]\npath = m\n[engine]\nkv_tokens = 100\n", E_RANGE, "@:4: [engine] kv_tokens = \"100\"",
	    "[engine] max_seq_len = 4096", "must fit", "(accepted 0 or 4096..1099511627776)");
	ERR("[model]\npath = m\n[engine]\nkv_tokens = 1000\nmax_seq_len = 2000\n", E_RANGE,
	    "@:5: [engine] max_seq_len = \"2000\"", "[engine] kv_tokens = 1000", "(accepted 16..1000)");
	ERR("[model]\npath = m\n[server]\nping_interval_ms = 5000\nidle_timeout_ms = 5000\n", E_RANGE,
	    "@:5: [server] idle_timeout_ms = 5000 is not more than ping_interval_ms = 5000");
	ERR("[model]\npath = m\n[server]\nping_interval_ms = 99\n", E_RANGE, "@:4: [server] ping_interval_ms",
	    "(accepted 100..3600000)");

	/* Lines inih cannot parse. */
	ERR("[model]\npath = m\nthis is not ini\n", E_FORMAT, "@:3: cannot parse \"this is not ini\"",
	    "expected [section], key = value, or a comment");
	ERR("[model\npath = m\n", E_FORMAT, "@:1: cannot parse \"[model\"");
	static char longl[6000];
	memset(longl, 0, sizeof(longl));
	strcpy(longl, "[model]\npath = m\n[server]\nlisten = ");
	memset(longl + strlen(longl), 'a', 5000);
	strcat(longl, "\n");
	ERR(longl, E_FORMAT, "@:4: line longer than 4093 bytes");

	/* Values too long for their field. */
	static char longv[600];
	snprintf(longv, sizeof(longv), "[model]\npath = m\n[server]\nlisten = %0300d:80\n", 1);
	ERR(longv, E_RANGE, "@:4: [server] listen", "longer than 255 bytes", "(accepted host:port");

	/* The file itself. */
	struct cfg c;
	struct ts_err e = {0};
	char missing[PATH_MAX + 32];
	snprintf(missing, sizeof(missing), "%s/nope.ini", tmp);
	T_CHECK(cfg_load(&c, missing, &e) == -E_IO, "missing file: %s", e.msg);
	T_HAS(e.msg, missing);
	T_HAS(e.msg, strerror(ENOENT));
	e.msg[0] = '\0';
	T_CHECK(cfg_load(&c, tmp, &e) == -E_IO, "directory as file: %s", e.msg);
	T_HAS(e.msg, tmp);
	T_HAS(e.msg, strerror(EISDIR));
}

static void test_accepted_syntax(void)
{
	struct cfg c;
	/* Inline comments, blanks, CRLF, a BOM, repeated sections. */
	if (LOAD_TEXT("[engine]\n  max_seq_len   =   64   # tokens\nmax_running = 8 ; few\n"
		      "[device]\r\ngpus = 3, 0 ,1\r\n[engine]\nmax_batch_tokens = 64\n", &c) == 0) {
		T_CHECK(c.engine.max_seq_len == 64, "max_seq_len %d", c.engine.max_seq_len);
		T_CHECK(c.engine.max_running == 8, "max_running %d", c.engine.max_running);
		T_CHECK(c.engine.max_batch_tokens == 64, "max_batch_tokens %d", c.engine.max_batch_tokens);
		T_CHECK(strcmp(c.device.gpus, "3,0,1") == 0, "gpus normalized to \"%s\"", c.device.gpus);
	}
	if (LOAD_OK(put("bom.ini", "\xEF\xBB\xBF[model]\npath = m\n"), &c) == 0)
		T_CHECK(c.model.path[0] == '/', "path \"%s\"", c.model.path);
	if (LOAD_TEXT("[server]\nlisten = [fe80::1%eth0]:8443\n", &c) == 0)
		T_CHECK(strcmp(c.server.listen, "[fe80::1%eth0]:8443") == 0, "listen \"%s\"", c.server.listen);
	if (LOAD_TEXT("[server]\nlisten = 0.0.0.0:65535\n[engine]\nkv_tokens = 4096\nkv_block_tokens = 1024\n"
		      "[log]\nlevel = off\n[device]\ngpus = 63\nbackend = cpu\n", &c) == 0) {
		T_CHECK(c.engine.kv_tokens == 4096 && c.engine.kv_block_tokens == 1024, "engine");
		T_CHECK(c.log.level == LOG_OFF && c.device.backend == CFG_BACKEND_CPU, "words");
		T_CHECK(strcmp(c.device.gpus, "63") == 0, "gpus \"%s\"", c.device.gpus);
	}
}

static void test_paths(void)
{
	char dir[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/sub", tmp);
	mkdir(dir, 0755);
	const char *p = put("sub/c.ini", "[model]\npath = ../models/m\n"
					 "[server]\ntls_cert = certs/a.pem\ntls_key = /abs/k.pem\ntls_ca = ./ca.pem\n");
	struct cfg c;
	if (LOAD_OK(p, &c))
		return;
	char want[PATH_MAX + 64];
	snprintf(want, sizeof(want), "%s/models/m", tmp);
	T_CHECK(strcmp(c.model.path, want) == 0, "model.path \"%s\", want \"%s\"", c.model.path, want);
	snprintf(want, sizeof(want), "%s/sub/certs/a.pem", tmp);
	T_CHECK(strcmp(c.server.tls_cert, want) == 0, "tls_cert \"%s\"", c.server.tls_cert);
	T_CHECK(strcmp(c.server.tls_key, "/abs/k.pem") == 0, "tls_key \"%s\"", c.server.tls_key);
	snprintf(want, sizeof(want), "%s/sub/ca.pem", tmp);
	T_CHECK(strcmp(c.server.tls_ca, want) == 0, "tls_ca \"%s\"", c.server.tls_ca);

	/* "" stays unset; ".." past the root stops at the root. */
	if (LOAD_OK(put("sub/d.ini", "[model]\npath = ../../../../../../../../../../../../..\n"
				     "[server]\ntls_cert =\n"), &c) == 0) {
		T_CHECK(strcmp(c.model.path, "/") == 0, "model.path \"%s\"", c.model.path);
		T_CHECK(c.server.tls_cert[0] == '\0', "tls_cert \"%s\"", c.server.tls_cert);
	}
	/* A relative ini path resolves against the working directory's view of it. */
	char rel[PATH_MAX + 64];
	if (chdir(tmp) == 0) {
		snprintf(rel, sizeof(rel), "sub/c.ini");
		if (LOAD_OK(rel, &c) == 0) {
			snprintf(want, sizeof(want), "%s/models/m", tmp);
			T_CHECK(strcmp(c.model.path, want) == 0, "model.path \"%s\"", c.model.path);
			T_CHECK(strcmp(c.file, "sub/c.ini") == 0, "file \"%s\"", c.file);
		}
		T_CHECK(chdir(cwd) == 0, "chdir back");
	}
}

static void test_print(void)
{
	/* Every key set away from its default, then printed and reloaded. */
	const char *p = put("all.ini", "[model]\npath = models/x\ndtype = bf16\n"
				       "[engine]\nmax_seq_len = 8192\nmax_batch_tokens = 4096\nmax_running = 128\n"
				       "kv_block_tokens = 32\nkv_tokens = 1099511627776\nkv_mem_fraction = 0.85\n"
				       "max_queue = 0\n"
				       "[device]\nbackend = gpu\ngpus = 1, 0\ncpu_threads = 12\n"
				       "[server]\nlisten = [::1]:8443\ntls_cert = a.pem\ntls_key = b.pem\ntls_ca = /etc/ca.pem\n"
				       "[log]\nlevel = debug\n");
	struct cfg c;
	if (LOAD_OK(p, &c) == 0) {
		T_CHECK(c.engine.kv_mem_fraction == 0.85, "fraction %.17g", c.engine.kv_mem_fraction);
		T_CHECK(c.engine.kv_tokens == (int64_t)1 << 40, "kv_tokens");
		T_CHECK(c.model.dtype == CFG_DTYPE_BF16 && c.device.backend == CFG_BACKEND_GPU, "enums");
		round_trip(__LINE__, &c, "rt_all.ini");
	}
	/* A fraction that %g alone would round. */
	if (LOAD_TEXT("[engine]\nkv_mem_fraction = 0.123456789012345678\n", &c) == 0)
		round_trip(__LINE__, &c, "rt_frac.ini");

	/* The printed form: sections in order, help and range before each key. */
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	cfg_print(&c, f);
	fclose(f);
	T_HAS(text, "[model]\n");
	T_CHECK(strstr(text, "[model]") < strstr(text, "[engine]") && strstr(text, "[engine]") < strstr(text, "[device]") &&
		strstr(text, "[device]") < strstr(text, "[server]") && strstr(text, "[server]") < strstr(text, "[log]"),
		"sections out of order");
	T_HAS(text, "# longest sequence, prompt plus output, in tokens (default 4096, accepted 16..1048576)\nmax_seq_len = 4096\n");
	T_HAS(text, "(default auto, accepted auto|cpu|gpu)\nbackend = auto\n");
	T_HAS(text, "(required, accepted a directory");
	T_HAS(text, "tls_cert =\n");
	for (size_t i = 0; i < TS_ARRAY_LEN(all_keys); i++) {
		char k[64];
		snprintf(k, sizeof(k), ")\n%s =", all_keys[i]);
		T_HAS(text, k);
	}
	free(text);

	/* Defaults print too (path empty: the one key a file must add). */
	struct cfg d;
	cfg_defaults(&d);
	f = open_memstream(&text, &n);
	cfg_print(&d, f);
	fclose(f);
	T_HAS(text, "(built-in defaults)");
	T_HAS(text, "\npath =\n");
	free(text);
}

static void test_doc(void)
{
	char *text = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&text, &n);
	cfg_print_doc(f);
	fclose(f);
	T_CHECK(strncmp(text, "| section | key | type | default | accepted | meaning |\n| --- |", 63) == 0,
		"header \"%.80s\"", text);
	for (size_t i = 0; i < TS_ARRAY_LEN(all_keys); i++) {
		char k[64];
		snprintf(k, sizeof(k), "| `%s` |", all_keys[i]);
		T_HAS(text, k);
	}
	T_HAS(text, "| engine | `max_seq_len` | int | `4096` | 16..1048576 | longest sequence");
	T_HAS(text, "auto\\|cpu\\|gpu");
	int rows = 0;
	for (char *p = text; (p = strchr(p, '\n')) != NULL; p++)
		rows++;
	T_CHECK(rows == (int)TS_ARRAY_LEN(all_keys) + 2, "rows %d", rows);
	free(text);
}

/* ------------------------------------------------------------ main */

static void rm_tree(const char *d)
{
	static const char *const files[] = {"e.ini", "ok.ini", "bom.ini", "all.ini", "rt_all.ini",
					    "rt_frac.ini", "rt_shipped.ini", "sub/c.ini", "sub/d.ini", "sub"};
	char p[PATH_MAX + 64];
	for (size_t i = 0; i < TS_ARRAY_LEN(files); i++) {
		snprintf(p, sizeof(p), "%s/%s", d, files[i]);
		if (unlink(p) != 0)
			rmdir(p);
	}
	rmdir(d);
}

int main(void)
{
	char tmpl[] = "/tmp/t_cfg.XXXXXX";
	if (!mkdtemp(tmpl) || !realpath(tmpl, tmp) || !realpath(".", cwd)) {
		fprintf(stderr, "t_cfg: cannot set up: %s\n", strerror(errno));
		return 1;
	}
	test_defaults();
	test_shipped();
	test_errors();
	test_accepted_syntax();
	test_paths();
	test_print();
	test_doc();
	rm_tree(tmp);
	return T_DONE();
}
