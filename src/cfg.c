/* cfg: the ini file -> struct cfg, driven by one table of keys.
 *
 * Every key lives once in cfg_keys[]: where it goes in struct cfg, its type,
 * its default (as text, parsed by the same code as the file, so a bad default
 * fails the first cfg_defaults), its range, and its help. Parsing, the error
 * messages, cfg_print and cfg_print_doc all read that table.
 *
 * Error shape: "<file>:<line>: [<section>] <key> = \"<value>\": <problem>
 * (accepted <range or words>)".
 *
 * inih note: Debian's libinih 59 (patch 0002) hard-wires the "call the
 * handler on each new section" option to off, whatever
 * INI_CALL_HANDLER_ON_NEW_SECTION says. So section headers are checked in our
 * own line reader (cfg_read_line) as inih pulls each line; that also gives us
 * the text of a line inih rejects and catches over-long lines before inih
 * would hand us a cut value.
 */
#define INI_HANDLER_LINENO 1
#define INI_CALL_HANDLER_ON_NEW_SECTION 1
#include <ini.h>

#include "cfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* ------------------------------------------------------------ the table */

enum cfg_type { CFG_T_INT, CFG_T_INT64, CFG_T_FLOAT, CFG_T_STRING, CFG_T_PATH, CFG_T_ENUM };

static const char *const cfg_type_names[] = {"int", "int64", "float", "string", "path", "enum"};

struct cfg_key {
	const char *section, *name;
	enum cfg_type type;
	size_t off, size;           /* field in struct cfg */
	const char *def;            /* default, as it would be written in the file */
	int64_t min, max;           /* CFG_T_INT, CFG_T_INT64 */
	double fmin, fmax;          /* CFG_T_FLOAT */
	const char *const *words;   /* CFG_T_ENUM: NULL-terminated, index = value */
	const char *accepted;       /* overrides the generated "accepted" text */
	/* Extra check after the value is stored; may normalize the field.
	 * Returns 0 or -E_* with why filled. */
	int (*check)(void *field, char *why, size_t why_n);
	int required;
	const char *help;
};

#define FIELD(f) .off = offsetof(struct cfg, f), .size = sizeof(((struct cfg *)0)->f)

static int check_pow2(void *field, char *why, size_t why_n);
static int check_gpus(void *field, char *why, size_t why_n);
static int check_listen(void *field, char *why, size_t why_n);
static int check_hostname(void *field, char *why, size_t why_n);
static int check_ifname(void *field, char *why, size_t why_n);
static int check_cidr4(void *field, char *why, size_t why_n);
static int check_cidr6(void *field, char *why, size_t why_n);
static int check_ip4(void *field, char *why, size_t why_n);
static int check_ip6(void *field, char *why, size_t why_n);
static int check_mtu(void *field, char *why, size_t why_n);

static const char *const words_dtype[] = {"auto", "bf16", "f16", "f32", NULL};
static const char *const words_backend[] = {"auto", "cpu", "gpu", NULL};
static const char *const words_chat[] = {"auto", "none", "chatml", "llama3", "llama2", "mistral", "deepseek3", NULL};
static const char *const words_level[] = {"debug", "info", "warn", "error", "off", NULL};

static const char *const cfg_sections[] = {"model", "engine", "device", "server", "log", "net"};

static const struct cfg_key cfg_keys[] = {
	{"model", "path", CFG_T_PATH, FIELD(model.path), .def = "", .required = 1,
	 .accepted = "a directory, relative to this file or absolute",
	 .help = "the directory of a Hugging Face checkpoint (config.json, *.safetensors, tokenizer.json)"},
	{"model", "dtype", CFG_T_ENUM, FIELD(model.dtype), .def = "auto", .words = words_dtype,
	 .help = "dtype of weights and activations on the device; auto = the checkpoint's own dtype"},
	{"model", "chat_format", CFG_T_ENUM, FIELD(model.chat_format), .def = "auto", .words = words_chat,
	 .help = "how chat messages become a prompt; auto = from the chat_template in the checkpoint's tokenizer_config.json"},

	{"engine", "max_seq_len", CFG_T_INT, FIELD(engine.max_seq_len), .def = "4096", .min = 16,
	 .max = 1048576, .help = "longest sequence, prompt plus output, in tokens"},
	{"engine", "max_batch_tokens", CFG_T_INT, FIELD(engine.max_batch_tokens), .def = "2048",
	 .min = 1, .max = 1048576,
	 .help = "tokens forwarded in one step (prefill chunks plus one per decoding sequence); sizes the activation workspace"},
	{"engine", "max_running", CFG_T_INT, FIELD(engine.max_running), .def = "64", .min = 1,
	 .max = 4096, .help = "sequences in one step, prefilling or decoding; further requests wait in the queue"},
	{"engine", "kv_block_tokens", CFG_T_INT, FIELD(engine.kv_block_tokens), .def = "16",
	 .min = 1, .max = 1024, .check = check_pow2, .accepted = "a power of two in 1..1024",
	 .help = "tokens per KV-cache block, the unit of KV allocation and prefix sharing"},
	{"engine", "kv_tokens", CFG_T_INT64, FIELD(engine.kv_tokens), .def = "0", .min = 0,
	 .max = INT64_C(1) << 40,
	 .help = "KV pool size in tokens, at least max_seq_len; 0 = size it from kv_mem_fraction"},
	{"engine", "kv_mem_fraction", CFG_T_FLOAT, FIELD(engine.kv_mem_fraction), .def = "0.9",
	 .fmin = 0.01, .fmax = 0.99,
	 .help = "fraction of device memory left after weights and workspace that the KV pool takes; used when kv_tokens = 0"},
	{"engine", "max_queue", CFG_T_INT, FIELD(engine.max_queue), .def = "1024", .min = 0,
	 .max = 1048576,
	 .help = "requests waiting beyond the running set before new ones are refused as busy; 0 = no waiting"},

	{"device", "backend", CFG_T_ENUM, FIELD(device.backend), .def = "auto", .words = words_backend,
	 .help = "where the model runs: gpu, cpu (the fp32 reference), or auto = gpu when a CUDA device is found, else cpu"},
	{"device", "gpus", CFG_T_STRING, FIELD(device.gpus), .def = "0", .check = check_gpus,
	 .accepted = "comma-separated distinct GPU ordinals 0..63, e.g. 0 or 0,1",
	 .help = "GPU ordinals; the gpu backend runs on the first one listed (tensor parallel across several is not built yet: more than one is refused); ignored by the cpu backend"},
	{"device", "tp", CFG_T_INT, FIELD(device.tp), .def = "0", .min = 0, .max = 64,
	 .help = "tensor-parallel ranks: the cpu backend runs the model as this many ranks (threads), each holding its shard of the weights and its own KV pool; 0 = 1 on the cpu backend and, on the gpu backend, the number of GPUs in gpus (which a nonzero tp must equal)"},
	{"device", "cpu_threads", CFG_T_INT, FIELD(device.cpu_threads), .def = "0", .min = 0,
	 .max = 1024, .help = "worker threads of the cpu backend; 0 = one per online core"},

	{"server", "listen", CFG_T_STRING, FIELD(server.listen), .def = "127.0.0.1:7070",
	 .check = check_listen, .accepted = "host:port or [ipv6-address]:port, port 1..65535",
	 .help = "address and TCP port the server listens on"},
	{"server", "tls_cert", CFG_T_PATH, FIELD(server.tls_cert), .def = "",
	 .accepted = "a PEM file, relative to this file or absolute; empty = unset",
	 .help = "used by the server: its TLS certificate chain (PEM file)"},
	{"server", "tls_key", CFG_T_PATH, FIELD(server.tls_key), .def = "",
	 .accepted = "a PEM file, relative to this file or absolute; empty = unset",
	 .help = "used by the server: the private key of tls_cert (PEM file)"},
	{"server", "tls_ca", CFG_T_PATH, FIELD(server.tls_ca), .def = "",
	 .accepted = "a PEM file, relative to this file or absolute; empty = unset",
	 .help = "used by the server: the CA that client certificates must chain to, and that signs tls_cert (clients trust it for the server) (PEM file)"},
	{"server", "tls_psk_identity", CFG_T_STRING, FIELD(server.tls_psk_identity), .def = "",
	 .accepted = "1..255 bytes; empty = certificate mode",
	 .help = "PSK mode instead of certificates: the one identity clients present (set with tls_psk_file; not with tls_cert, tls_key, tls_ca)"},
	{"server", "tls_psk_file", CFG_T_PATH, FIELD(server.tls_psk_file), .def = "",
	 .accepted = "a file holding 32..96 hex digits (16..48 bytes); empty = certificate mode",
	 .help = "PSK mode: the file with the pre-shared key in hex (keep it mode 0600)"},
	{"server", "max_connections", CFG_T_INT, FIELD(server.max_connections), .def = "64", .min = 1, .max = 4096,
	 .help = "connections open at once; beyond it a new connection takes the slot of one not yet open (the oldest "
		 "still in its TLS handshake, else the oldest waiting for HELLO), else it is closed before the handshake"},
	{"server", "max_conns_per_peer", CFG_T_INT, FIELD(server.max_conns_per_peer), .def = "16", .min = 1,
	 .max = 4096,
	 .help = "connections open at once from one client address; one more is closed before the TLS handshake"},
	{"server", "max_requests", CFG_T_INT, FIELD(server.max_requests), .def = "64", .min = 1, .max = 4096,
	 .help = "live requests on one connection (WELCOME max_requests); one more is answered TOO_MANY_REQUESTS"},
	{"server", "max_frame_bytes", CFG_T_INT, FIELD(server.max_frame_bytes), .def = "262144", .min = 4096,
	 .max = 16777216, .help = "largest frame the server accepts; WELCOME's max_frame is the smaller of this and the client's"},
	{"server", "initial_credit", CFG_T_INT, FIELD(server.initial_credit), .def = "256", .min = 1, .max = 16777216,
	 .help = "tokens each request may receive before the client's first CREDIT (WELCOME initial_credit)"},
	{"server", "credit_timeout_ms", CFG_T_INT, FIELD(server.credit_timeout_ms), .def = "30000", .min = 100,
	 .max = 3600000, .help = "a request throttled this long in a row ends with ERROR STALLED (WELCOME credit_timeout_ms)"},
	{"server", "output_limit_bytes", CFG_T_INT, FIELD(server.output_limit_bytes), .def = "262144",
	 .min = 16384, .max = 67108864,
	 .help = "unsent output bytes beyond which a connection is throttled and its input no longer read"},
	{"server", "handshake_timeout_ms", CFG_T_INT, FIELD(server.handshake_timeout_ms), .def = "10000", .min = 100,
	 .max = 600000, .help = "a connection whose TLS handshake has not completed this long after accept is closed"},
	{"server", "hello_timeout_ms", CFG_T_INT, FIELD(server.hello_timeout_ms), .def = "10000", .min = 100,
	 .max = 600000, .help = "a connection that has not sent HELLO this long after its TLS handshake is closed"},
	{"server", "ping_interval_ms", CFG_T_INT, FIELD(server.ping_interval_ms), .def = "30000", .min = 100,
	 .max = 3600000,
	 .help = "after this long without a frame from the client the server sends PING, and again each interval (WELCOME ping_interval_ms)"},
	{"server", "idle_timeout_ms", CFG_T_INT, FIELD(server.idle_timeout_ms), .def = "75000", .min = 200,
	 .max = 86400000,
	 .help = "a connection without a frame from the client this long is closed; more than ping_interval_ms (WELCOME idle_timeout_ms)"},

	{"log", "level", CFG_T_ENUM, FIELD(log.level), .def = "info", .words = words_level,
	 .help = "least severe log level written to stderr; off = nothing"},

	{"net", "hostname", CFG_T_STRING, FIELD(net.hostname), .def = "tokenspeed", .check = check_hostname,
	 .accepted = "1..63 letters, digits, '-' and '.'",
	 .help = "the appliance's hostname (set by the image's PID 1; [net] is ignored when tokenspeed runs as a program)"},
	{"net", "interface", CFG_T_STRING, FIELD(net.interface), .def = "auto", .check = check_ifname,
	 .accepted = "auto, or an interface name of 1..15 bytes",
	 .help = "the interface the keys below configure; auto = the first (lowest index) whose link comes up. Loopback is always up"},
	{"net", "address", CFG_T_STRING, FIELD(net.address), .def = "", .check = check_cidr4,
	 .accepted = "an IPv4 address with its prefix length, e.g. 10.0.0.5/24; empty = none",
	 .help = "static IPv4 address of the interface"},
	{"net", "gateway", CFG_T_STRING, FIELD(net.gateway), .def = "", .check = check_ip4,
	 .accepted = "an IPv4 address; empty = no default route",
	 .help = "IPv4 default route (needs address)"},
	{"net", "address6", CFG_T_STRING, FIELD(net.address6), .def = "", .check = check_cidr6,
	 .accepted = "an IPv6 address with its prefix length, e.g. fd00::5/64; empty = none",
	 .help = "static IPv6 address of the interface (no duplicate-address wait)"},
	{"net", "gateway6", CFG_T_STRING, FIELD(net.gateway6), .def = "", .check = check_ip6,
	 .accepted = "an IPv6 address (a link-local fe80:: one is fine); empty = no default route",
	 .help = "IPv6 default route"},
	{"net", "mtu", CFG_T_INT, FIELD(net.mtu), .def = "0", .min = 0, .max = 65535, .check = check_mtu,
	 .accepted = "0, or 68..65535 (1280.. with address6)", .help = "MTU of the interface; 0 = leave it as the driver set it"},
	{"net", "link_wait_ms", CFG_T_INT, FIELD(net.link_wait_ms), .def = "10000", .min = 0, .max = 600000,
	 .help = "interface = auto: how long boot waits for a link before it goes on without the network"},
};

#define CFG_N_KEYS TS_ARRAY_LEN(cfg_keys)

_Static_assert(sizeof(enum cfg_dtype) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(enum cfg_backend) == sizeof(int), "enums are stored as int");
_Static_assert(LOG_DEBUG == 0 && LOG_INFO == 1 && LOG_WARN == 2 && LOG_ERROR == 3 && LOG_OFF == 4,
	       "words_level follows enum log_level");

/* ------------------------------------------------------------ helpers */

static int section_known(const char *s)
{
	for (size_t i = 0; i < TS_ARRAY_LEN(cfg_sections); i++)
		if (strcmp(s, cfg_sections[i]) == 0)
			return 1;
	return 0;
}

static const char *known_sections(char *buf, size_t n)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < TS_ARRAY_LEN(cfg_sections) && o < n; i++)
		o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", cfg_sections[i]);
	return buf;
}

static const char *known_keys(const char *section, char *buf, size_t n)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < CFG_N_KEYS && o < n; i++)
		if (strcmp(cfg_keys[i].section, section) == 0)
			o += (size_t)snprintf(buf + o, n - o, "%s%s", o ? ", " : "", cfg_keys[i].name);
	return buf;
}

static int key_find(const char *section, const char *name)
{
	for (size_t i = 0; i < CFG_N_KEYS; i++)
		if (strcmp(cfg_keys[i].section, section) == 0 && strcmp(cfg_keys[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Shortest "%g" that reads back to the same double. */
static const char *fmt_double(double v, char *buf, size_t n)
{
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

/* The "accepted" text of a key: its range, its words, or its own words. */
static const char *key_accepted(const struct cfg_key *k, char *buf, size_t n)
{
	char a[32], b[32];
	if (k->accepted)
		return k->accepted;
	switch (k->type) {
	case CFG_T_INT:
	case CFG_T_INT64:
		snprintf(buf, n, "%" PRId64 "..%" PRId64, k->min, k->max);
		return buf;
	case CFG_T_FLOAT:
		snprintf(buf, n, "%s..%s", fmt_double(k->fmin, a, sizeof(a)),
			 fmt_double(k->fmax, b, sizeof(b)));
		return buf;
	case CFG_T_ENUM: {
		size_t o = 0;
		buf[0] = '\0';
		for (int i = 0; k->words[i] && o < n; i++)
			o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "|" : "", k->words[i]);
		return buf;
	}
	case CFG_T_STRING:
	case CFG_T_PATH:
		break;
	}
	return "any text";
}

/* The value of a key in c, as it would be written in the file. */
static const char *key_value(const struct cfg_key *k, const struct cfg *c, char *buf, size_t n)
{
	const char *p = (const char *)c + k->off;
	int iv;
	int64_t lv;
	double dv;
	switch (k->type) {
	case CFG_T_INT:
		memcpy(&iv, p, sizeof(iv));
		snprintf(buf, n, "%d", iv);
		return buf;
	case CFG_T_INT64:
		memcpy(&lv, p, sizeof(lv));
		snprintf(buf, n, "%" PRId64, lv);
		return buf;
	case CFG_T_FLOAT:
		memcpy(&dv, p, sizeof(dv));
		return fmt_double(dv, buf, n);
	case CFG_T_ENUM:
		memcpy(&iv, p, sizeof(iv));
		for (int i = 0; k->words[i]; i++)
			if (i == iv)
				return k->words[i];
		return "?";
	case CFG_T_STRING:
	case CFG_T_PATH:
		break;
	}
	return p;
}

/* ------------------------------------------------------------ paths */

/* dir (absolute, canonical) + rel -> out. Leading "./" and "../" of rel are
 * applied to dir lexically, which is exact because dir has no symlinks. */
static int path_join(const char *dir, const char *rel, char *out, size_t n)
{
	char tmp[CFG_PATH_MAX];
	size_t dl = strlen(dir);
	if (dl >= sizeof(tmp))
		return -1;
	memcpy(tmp, dir, dl + 1);
	for (;;) {
		if (strcmp(rel, ".") == 0) {
			rel += 1;
		} else if (strncmp(rel, "./", 2) == 0) {
			rel += 2;
		} else if (strcmp(rel, "..") == 0 || strncmp(rel, "../", 3) == 0) {
			rel += rel[2] ? 3 : 2;
			char *slash = strrchr(tmp, '/');
			if (slash && slash != tmp)
				*slash = '\0';
			else
				strcpy(tmp, "/");
		} else {
			break;
		}
		while (*rel == '/')
			rel++;
	}
	dl = strlen(tmp);
	int w;
	if (!*rel)
		w = snprintf(out, n, "%s", tmp);
	else
		w = snprintf(out, n, "%s%s%s", tmp, tmp[dl - 1] == '/' ? "" : "/", rel);
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* The canonical directory holding file (which exists: it was just opened). */
static int file_dir(const char *file, char *out, size_t n, struct ts_err *e)
{
	char dir[CFG_PATH_MAX];
	const char *slash = strrchr(file, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == file)
		strcpy(dir, "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return ts_errf(e, E_IO, "%s: cannot resolve its directory: %s", file, strerror(errno));
	if (strlen(real) >= n)
		return ts_errf(e, E_RANGE, "%s: directory path longer than %zu bytes", file, n - 1);
	strcpy(out, real);
	return 0;
}

/* ------------------------------------------------------------ values */

/* Parses text into c's field for key k. base_dir resolves relative paths
 * (NULL: keep as written). Returns 0 or -E_* with why set. */
static int key_set(const struct cfg_key *k, struct cfg *c, const char *v, const char *base_dir,
		   char *why, size_t why_n)
{
	char *p = (char *)c + k->off;
	char *end;
	switch (k->type) {
	case CFG_T_INT:
	case CFG_T_INT64: {
		if (!*v)
			return snprintf(why, why_n, "empty, expected an integer"), -E_FORMAT;
		if (!(*v >= '0' && *v <= '9') && !((*v == '-' || *v == '+') && v[1] >= '0' && v[1] <= '9'))
			return snprintf(why, why_n, "not an integer"), -E_FORMAT;
		errno = 0;
		long long x = strtoll(v, &end, 10);
		if (*end)
			return snprintf(why, why_n, "not an integer: junk \"%.40s\" after the number", end),
			       -E_FORMAT;
		if (errno == ERANGE || x < k->min || x > k->max)
			return snprintf(why, why_n, "out of range"), -E_RANGE;
		if (k->type == CFG_T_INT) {
			int iv = (int)x;
			memcpy(p, &iv, sizeof(iv));
		} else {
			int64_t lv = x;
			memcpy(p, &lv, sizeof(lv));
		}
		break;
	}
	case CFG_T_FLOAT: {
		if (!*v)
			return snprintf(why, why_n, "empty, expected a number"), -E_FORMAT;
		if (!strchr("0123456789+-.", *v))
			return snprintf(why, why_n, "not a number"), -E_FORMAT;
		errno = 0;
		double x = strtod(v, &end);
		if (end == v)
			return snprintf(why, why_n, "not a number"), -E_FORMAT;
		if (*end)
			return snprintf(why, why_n, "not a number: junk \"%.40s\" after the number", end),
			       -E_FORMAT;
		if (!(x >= k->fmin && x <= k->fmax)) /* NaN fails too */
			return snprintf(why, why_n, "out of range"), -E_RANGE;
		memcpy(p, &x, sizeof(x));
		break;
	}
	case CFG_T_ENUM: {
		int i;
		for (i = 0; k->words[i]; i++)
			if (strcmp(v, k->words[i]) == 0)
				break;
		if (!k->words[i])
			return snprintf(why, why_n, "%s", *v ? "unknown word" : "empty"), -E_FORMAT;
		memcpy(p, &i, sizeof(i));
		break;
	}
	case CFG_T_STRING:
	case CFG_T_PATH: {
		if (!*v && k->required && base_dir)
			return snprintf(why, why_n, "empty, but this key is required"), -E_FORMAT;
		if (strchr(v, '\n') || strchr(v, '\r'))
			return snprintf(why, why_n, "contains a newline"), -E_FORMAT;
		if (k->type == CFG_T_PATH && *v && *v != '/' && base_dir) {
			if (path_join(base_dir, v, p, k->size))
				return snprintf(why, why_n, "longer than %zu bytes once resolved against %s",
						k->size - 1, base_dir),
				       -E_RANGE;
		} else {
			size_t l = strlen(v);
			if (l >= k->size)
				return snprintf(why, why_n, "longer than %zu bytes", k->size - 1), -E_RANGE;
			memcpy(p, v, l + 1);
		}
		break;
	}
	}
	return k->check ? k->check(p, why, why_n) : 0;
}

static int check_pow2(void *field, char *why, size_t why_n)
{
	int v;
	memcpy(&v, field, sizeof(v));
	if (v > 0 && (v & (v - 1)) == 0)
		return 0;
	snprintf(why, why_n, "not a power of two");
	return -E_RANGE;
}

/* "0, 3,1" -> "0,3,1": digits only, each ordinal once, 0..63. */
static int check_gpus(void *field, char *why, size_t why_n)
{
	char *s = field, out[256];
	uint64_t seen = 0;
	size_t o = 0;
	const char *p = s;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return snprintf(why, why_n, *p ? "expected an ordinal at \"%.20s\"" : "expected an ordinal%s",
					*p ? p : (o ? " after the last comma" : "")),
			       -E_FORMAT;
		int v = 0;
		while (*p >= '0' && *p <= '9' && v < 1000)
			v = v * 10 + (*p++ - '0');
		if (v > 63)
			return snprintf(why, why_n, "GPU ordinal %d out of range", v), -E_RANGE;
		if (seen & (UINT64_C(1) << v))
			return snprintf(why, why_n, "GPU %d listed twice", v), -E_FORMAT;
		seen |= UINT64_C(1) << v;
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%d", o ? "," : "", v);
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		if (*p != ',')
			return snprintf(why, why_n, "expected ',' at \"%.20s\"", p), -E_FORMAT;
		p++;
	}
	strcpy(s, out); /* never longer than the input */
	return 0;
}

static int check_listen(void *field, char *why, size_t why_n)
{
	const char *s = field, *colon;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close == s + 1)
			return snprintf(why, why_n, "IPv6 address in [] expected"), -E_FORMAT;
		for (const char *q = s + 1; q < close; q++)
			if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
			      (*q >= '0' && *q <= '9') || (*q && strchr(":.%_-", *q))))
				return snprintf(why, why_n, "bad character '%c' in the IPv6 address", *q),
				       -E_FORMAT;
		if (close[1] != ':')
			return snprintf(why, why_n, "':port' expected after ']'"), -E_FORMAT;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return snprintf(why, why_n, "no ':port'"), -E_FORMAT;
		if (colon == s)
			return snprintf(why, why_n, "no host before ':' (use 0.0.0.0 for every address)"),
			       -E_FORMAT;
		for (const char *q = s; q < colon; q++) {
			if (*q == ':')
				return snprintf(why, why_n, "an IPv6 address goes in brackets, [addr]:port"),
				       -E_FORMAT;
			if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
			      (*q >= '0' && *q <= '9') || *q == '.' || *q == '-' || *q == '_'))
				return snprintf(why, why_n, "bad character '%c' in the host", *q), -E_FORMAT;
		}
	}
	const char *port = colon + 1;
	if (!*port)
		return snprintf(why, why_n, "no port after ':'"), -E_FORMAT;
	long v = 0;
	for (const char *q = port; *q; q++) {
		if (!(*q >= '0' && *q <= '9'))
			return snprintf(why, why_n, "port \"%.20s\" is not a number", port), -E_FORMAT;
		if (v < 100000)
			v = v * 10 + (*q - '0');
	}
	if (v < 1 || v > 65535)
		return snprintf(why, why_n, "port %s out of range", port), -E_RANGE;
	return 0;
}

/* [net] values: empty, or what inet_pton takes (with "/prefix" where asked). */
static int check_addr(const char *s, int family, int with_prefix, char *why, size_t why_n)
{
	char host[64];
	const char *slash = strchr(s, '/');
	const char *fam = family == AF_INET ? "IPv4" : "IPv6";
	if (!*s)
		return 0;
	if (with_prefix && !slash)
		return snprintf(why, why_n, "no /prefix after the %s address", fam), -E_FORMAT;
	if (!with_prefix && slash)
		return snprintf(why, why_n, "a gateway is one address, without /prefix"), -E_FORMAT;
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	unsigned char a[16];
	snprintf(host, sizeof(host), "%.*s", (int)TS_MIN(hl, sizeof(host) - 1), s);
	if (hl >= sizeof(host) || inet_pton(family, host, a) != 1)
		return snprintf(why, why_n, "\"%.60s\" is not an %s address", host, fam), -E_FORMAT;
	if (slash) {
		int max = family == AF_INET ? 32 : 128, v = 0;
		const char *q = slash + 1;
		if (!*q)
			return snprintf(why, why_n, "no prefix length after '/'"), -E_FORMAT;
		for (; *q; q++) {
			if (*q < '0' || *q > '9')
				return snprintf(why, why_n, "prefix length \"%.10s\" is not a number", slash + 1),
				       -E_FORMAT;
			if (v <= 1000)
				v = v * 10 + (*q - '0');
		}
		if (v < 1 || v > max)
			return snprintf(why, why_n, "prefix length %d out of range 1..%d", v, max), -E_RANGE;
	}
	return 0;
}

static int check_cidr4(void *field, char *why, size_t why_n)
{
	return check_addr(field, AF_INET, 1, why, why_n);
}
static int check_cidr6(void *field, char *why, size_t why_n)
{
	return check_addr(field, AF_INET6, 1, why, why_n);
}
static int check_ip4(void *field, char *why, size_t why_n)
{
	return check_addr(field, AF_INET, 0, why, why_n);
}
static int check_ip6(void *field, char *why, size_t why_n)
{
	return check_addr(field, AF_INET6, 0, why, why_n);
}

static int check_hostname(void *field, char *why, size_t why_n)
{
	const char *s = field;
	size_t n = strlen(s);
	if (n < 1 || n > 63)
		return snprintf(why, why_n, "%s", n ? "longer than 63 bytes" : "empty"), -E_FORMAT;
	for (const char *q = s; *q; q++)
		if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '-' ||
		      *q == '.'))
			return snprintf(why, why_n, "bad character '%c'", *q), -E_FORMAT;
	return 0;
}

static int check_ifname(void *field, char *why, size_t why_n)
{
	const char *s = field;
	size_t n = strlen(s);
	if (n < 1 || n > 15)
		return snprintf(why, why_n, "%s", n ? "longer than 15 bytes" : "empty"), -E_FORMAT;
	for (const char *q = s; *q; q++)
		if (*q == '/' || *q == ':' || *q == ' ' || *q == '\t')
			return snprintf(why, why_n, "bad character '%c'", *q), -E_FORMAT;
	return 0;
}

static int check_mtu(void *field, char *why, size_t why_n)
{
	int v;
	memcpy(&v, field, sizeof(v));
	if (v == 0 || v >= 68)
		return 0;
	snprintf(why, why_n, "below 68, the least IPv4 allows");
	return -E_RANGE;
}

/* ------------------------------------------------------------ defaults */

void cfg_defaults(struct cfg *c)
{
	char why[256];
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < CFG_N_KEYS; i++) {
		int rc = key_set(&cfg_keys[i], c, cfg_keys[i].def, NULL, why, sizeof(why));
		if (NEVER(rc != 0))
			log_error("cfg: built-in default [%s] %s = \"%s\": %s", cfg_keys[i].section,
				  cfg_keys[i].name, cfg_keys[i].def, why);
	}
}

/* ------------------------------------------------------------ loading */

struct cfg_load_ctx {
	struct cfg *c;
	const char *file;
	char dir[CFG_PATH_MAX];       /* canonical directory of file */
	FILE *f;
	int lineno;                   /* lines handed to inih so far */
	char line[128];               /* start of the current line, for syntax errors */
	int key_line[CFG_N_KEYS];     /* where each key was set; 0 = default */
	int rc;                       /* first error, 0 if none */
	struct ts_err *e;
};

/* A value as shown in a message: cut so the message stays readable. */
static const char *shown(const char *v, char *buf, size_t n)
{
	if (strlen(v) < 100)
		return v;
	snprintf(buf, n, "%.96s...", v);
	return buf;
}

static int unknown_section(struct cfg_load_ctx *x, int lineno, const char *section)
{
	char known[128];
	return x->rc = ts_errf(x->e, E_FORMAT, "%s:%d: unknown section [%s] (known: %s)", x->file,
			       lineno, section, known_sections(known, sizeof(known)));
}

/* inih's reader: fgets plus bookkeeping. inih calls it with ini_max_line for
 * each new line and with a small buffer only to skip the rest of a long one.
 * Returning NULL ends the parse; x->rc says whether that was an error. */
static char *cfg_read_line(char *str, int num, void *stream)
{
	struct cfg_load_ctx *x = stream;
	if (x->rc || !fgets(str, num, x->f))
		return NULL;
	if (num != ini_max_line)
		return str;
	x->lineno++;
	size_t len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n') {
		int ch = getc(x->f);
		if (ch != EOF) {
			ungetc(ch, x->f);
			x->rc = ts_errf(x->e, E_FORMAT, "%s:%d: line longer than %d bytes", x->file,
					x->lineno, num - 3);
			return NULL;
		}
	}
	const char *s = str;
	if (x->lineno == 1 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	snprintf(x->line, sizeof(x->line), "%.*s", (int)strcspn(s, "\r\n"), s);

	/* A section header, found the way inih finds it: up to ']', unless an
	 * inline comment (whitespace then ';' or '#') comes first. */
	if (*s == '[') {
		const char *q = s + 1;
		int was_space = 0;
		while (*q && *q != ']' && !(was_space && strchr(ini_inline_comment_prefixes, *q))) {
			was_space = *q == ' ' || *q == '\t';
			q++;
		}
		if (*q == ']') {
			char name[64];
			snprintf(name, sizeof(name), "%.*s", (int)TS_MIN(q - s - 1, 49), s + 1);
			if (!section_known(name)) {
				unknown_section(x, x->lineno, name);
				return NULL;
			}
		}
	}
	return str;
}

static int cfg_on_value(void *user, const char *section, const char *name, const char *value,
			int lineno)
{
	struct cfg_load_ctx *x = user;
	char buf[256], acc[256], why[256], sv[128];
	if (!value)
		value = "";
	if (!name) /* a new section, where inih reports them */
		return section_known(section) ? 1 : (unknown_section(x, lineno, section), 0);
	if (!*section) {
		x->rc = ts_errf(x->e, E_FORMAT,
				"%s:%d: %s = \"%s\": key outside any section (known sections: %s)", x->file,
				lineno, name, shown(value, sv, sizeof(sv)), known_sections(buf, sizeof(buf)));
		return 0;
	}
	if (!section_known(section))
		return unknown_section(x, lineno, section), 0;
	int i = key_find(section, name);
	if (i < 0) {
		x->rc = ts_errf(x->e, E_FORMAT, "%s:%d: [%s] %s = \"%s\": unknown key (known: %s)",
				x->file, lineno, section, name, shown(value, sv, sizeof(sv)),
				known_keys(section, buf, sizeof(buf)));
		return 0;
	}
	const struct cfg_key *k = &cfg_keys[i];
	int rc;
	if (x->key_line[i]) {
		snprintf(why, sizeof(why), "set twice, first on line %d", x->key_line[i]);
		rc = -E_FORMAT;
	} else {
		rc = key_set(k, x->c, value, x->dir, why, sizeof(why));
	}
	if (rc) {
		x->rc = ts_errf(x->e, -rc, "%s:%d: [%s] %s = \"%s\": %s (accepted %s)", x->file, lineno,
				section, name, shown(value, sv, sizeof(sv)), why,
				key_accepted(k, acc, sizeof(acc)));
		return 0;
	}
	x->key_line[i] = lineno;
	return 1;
}

/* Rules between keys. Blames the key set in the file (the later one when
 * both are); "line 0" never appears because the defaults pass. */
static int cfg_cross_check(struct cfg_load_ctx *x)
{
	const struct cfg *c = x->c;
	char acc[64];
	int i_bt = key_find("engine", "max_batch_tokens"), i_run = key_find("engine", "max_running");
	int i_kv = key_find("engine", "kv_tokens"), i_seq = key_find("engine", "max_seq_len");
	if (!ALWAYS(i_bt >= 0 && i_run >= 0 && i_kv >= 0 && i_seq >= 0))
		return ts_errf(x->e, E_INTERNAL, "cfg: key table lacks an engine key");

	if (c->engine.max_batch_tokens < c->engine.max_running) {
		int blame_run = x->key_line[i_run] > x->key_line[i_bt];
		int line = blame_run ? x->key_line[i_run] : x->key_line[i_bt];
		if (blame_run) {
			snprintf(acc, sizeof(acc), "1..%d", c->engine.max_batch_tokens);
			return ts_errf(x->e, E_RANGE,
				       "%s:%d: [engine] max_running = \"%d\": more than [engine] max_batch_tokens = %d; "
				       "a step holds one token for each running sequence (accepted %s)",
				       x->file, line, c->engine.max_running, c->engine.max_batch_tokens, acc);
		}
		snprintf(acc, sizeof(acc), "%d..%" PRId64, c->engine.max_running, cfg_keys[i_bt].max);
		return ts_errf(x->e, E_RANGE,
			       "%s:%d: [engine] max_batch_tokens = \"%d\": less than [engine] max_running = %d; "
			       "a step holds one token for each running sequence (accepted %s)",
			       x->file, line, c->engine.max_batch_tokens, c->engine.max_running, acc);
	}
	if (!c->server.tls_psk_identity[0] != !c->server.tls_psk_file[0]) {
		int i_id = key_find("server", "tls_psk_identity"), i_f = key_find("server", "tls_psk_file");
		int line = TS_MAX(i_id >= 0 ? x->key_line[i_id] : 0, i_f >= 0 ? x->key_line[i_f] : 0);
		return ts_errf(x->e, E_FORMAT,
			       "%s:%d: [server] tls_psk_identity and tls_psk_file go together: set both for PSK mode, "
			       "neither for certificates",
			       x->file, line);
	}
	if (c->server.idle_timeout_ms <= c->server.ping_interval_ms) {
		int i_p = key_find("server", "ping_interval_ms"), i_i = key_find("server", "idle_timeout_ms");
		int line = TS_MAX(i_p >= 0 ? x->key_line[i_p] : 0, i_i >= 0 ? x->key_line[i_i] : 0);
		return ts_errf(x->e, E_RANGE,
			       "%s:%d: [server] idle_timeout_ms = %d is not more than ping_interval_ms = %d; a silent "
			       "client must get a PING before it is closed",
			       x->file, line, c->server.idle_timeout_ms, c->server.ping_interval_ms);
	}
	if (c->server.tls_psk_file[0] && (c->server.tls_cert[0] || c->server.tls_key[0] || c->server.tls_ca[0])) {
		int line = 0;
		static const char *const keys[] = {"tls_psk_identity", "tls_psk_file", "tls_cert", "tls_key", "tls_ca"};
		for (size_t k = 0; k < TS_ARRAY_LEN(keys); k++) {
			int i = key_find("server", keys[k]);
			line = TS_MAX(line, i >= 0 ? x->key_line[i] : 0);
		}
		return ts_errf(x->e, E_FORMAT,
			       "%s:%d: [server] tls_psk_identity/tls_psk_file (PSK mode) and tls_cert/tls_key/tls_ca "
			       "(certificate mode) are both set; the server speaks one mode: remove the tls_psk_* lines "
			       "for mutual certificates, or the tls_cert, tls_key and tls_ca lines for PSK",
			       x->file, line);
	}
	if (c->net.gateway[0] && !c->net.address[0]) {
		int i_g = key_find("net", "gateway");
		return ts_errf(x->e, E_FORMAT,
			       "%s:%d: [net] gateway = \"%s\" needs [net] address (the interface's own IPv4 address and "
			       "prefix, e.g. 10.0.0.5/24)",
			       x->file, i_g >= 0 ? x->key_line[i_g] : 0, c->net.gateway);
	}
	if (c->net.address6[0] && c->net.mtu && c->net.mtu < 1280) {
		int i_m = key_find("net", "mtu"), i_a = key_find("net", "address6");
		int line = TS_MAX(i_m >= 0 ? x->key_line[i_m] : 0, i_a >= 0 ? x->key_line[i_a] : 0);
		return ts_errf(x->e, E_RANGE,
			       "%s:%d: [net] mtu = %d is below 1280, the least IPv6 allows, and [net] address6 is set",
			       x->file, line, c->net.mtu);
	}
	if (c->engine.kv_tokens != 0 && c->engine.kv_tokens < c->engine.max_seq_len) {
		int blame_seq = x->key_line[i_seq] > x->key_line[i_kv];
		int line = blame_seq ? x->key_line[i_seq] : x->key_line[i_kv];
		if (blame_seq) {
			snprintf(acc, sizeof(acc), "16..%" PRId64, c->engine.kv_tokens);
			return ts_errf(x->e, E_RANGE,
				       "%s:%d: [engine] max_seq_len = \"%d\": more than [engine] kv_tokens = %" PRId64
				       "; the longest sequence must fit in the KV pool (accepted %s)",
				       x->file, line, c->engine.max_seq_len, c->engine.kv_tokens, acc);
		}
		snprintf(acc, sizeof(acc), "0 or %d..%" PRId64, c->engine.max_seq_len, cfg_keys[i_kv].max);
		return ts_errf(x->e, E_RANGE,
			       "%s:%d: [engine] kv_tokens = \"%" PRId64 "\": less than [engine] max_seq_len = %d; "
			       "the longest sequence must fit in the KV pool (accepted %s)",
			       x->file, line, c->engine.kv_tokens, c->engine.max_seq_len, acc);
	}
	return 0;
}

int cfg_load(struct cfg *c, const char *path, struct ts_err *e)
{
	struct cfg tmp; /* loaded here, copied to c only when all of it is valid */
	struct cfg_load_ctx x = {.c = &tmp, .file = path, .e = e};
	int rc;

	cfg_defaults(&tmp);
	if (strlen(path) >= sizeof(tmp.file))
		return ts_errf(e, E_RANGE, "%.200s...: config path longer than %zu bytes", path,
			       sizeof(tmp.file) - 1);
	strcpy(tmp.file, path);

	x.f = fopen(path, "r");
	if (!x.f)
		return ts_errf(e, E_IO, "%s: cannot open the config file: %s", path, strerror(errno));
	rc = file_dir(path, x.dir, sizeof(x.dir), e);
	if (rc)
		goto out_close;

	int line = ini_parse_stream(cfg_read_line, &x, cfg_on_value, &x);
	if (x.rc) {
		rc = x.rc;
		goto out_close;
	}
	if (ferror(x.f)) {
		rc = ts_errf(e, E_IO, "%s:%d: read error: %s", path, x.lineno + 1, strerror(errno));
		goto out_close;
	}
	if (line) {
		if (line == x.lineno)
			rc = ts_errf(e, E_FORMAT,
				     "%s:%d: cannot parse \"%s\": expected [section], key = value, or a comment",
				     path, line, x.line);
		else
			rc = ts_errf(e, E_FORMAT, "%s:%d: cannot parse this line", path, line);
		goto out_close;
	}

	for (size_t i = 0; i < CFG_N_KEYS; i++) {
		const struct cfg_key *k = &cfg_keys[i];
		if (k->required && !x.key_line[i]) {
			rc = ts_errf(e, E_FORMAT, "%s: [%s] %s is required: %s", path, k->section,
				     k->name, k->help);
			goto out_close;
		}
	}
	rc = cfg_cross_check(&x);
	if (rc)
		goto out_close;
	memcpy(c, &tmp, sizeof(*c));
out_close:
	fclose(x.f);
	return rc;
}

/* ------------------------------------------------------------ printing */

/* Values that inih would read back differently: surrounding blanks are
 * stripped and " ;" / " #" start a comment. */
static int value_writable(const char *v)
{
	size_t n = strlen(v);
	if (n && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((v[i] == ';' || v[i] == '#') && (v[i - 1] == ' ' || v[i - 1] == '\t'))
			return 0;
	return 1;
}

void cfg_print(const struct cfg *c, FILE *f)
{
	char val[64], acc[256];
	fprintf(f, "# TokenSpeed configuration: the effective values%s%s.\n",
		c->file[0] ? ", loaded from " : " (built-in defaults)", c->file);
	fprintf(f, "# Relative paths are resolved against the directory of this file.\n");
	for (size_t s = 0; s < TS_ARRAY_LEN(cfg_sections); s++) {
		fprintf(f, "\n[%s]\n", cfg_sections[s]);
		for (size_t i = 0; i < CFG_N_KEYS; i++) {
			const struct cfg_key *k = &cfg_keys[i];
			if (strcmp(k->section, cfg_sections[s]) != 0)
				continue;
			const char *v = key_value(k, c, val, sizeof(val));
			fprintf(f, "\n# %s (", k->help);
			if (k->required)
				fprintf(f, "required");
			else
				fprintf(f, "default %s", k->def[0] ? k->def : "empty");
			fprintf(f, ", accepted %s)\n", key_accepted(k, acc, sizeof(acc)));
			if (!value_writable(v))
				fprintf(f, "# WARNING: this value has blanks that an ini file cannot keep\n");
			fprintf(f, "%s =%s%s\n", k->name, v[0] ? " " : "", v);
		}
	}
}

/* A Markdown table cell: '|' escaped. */
static void md_cell(FILE *f, const char *s, int code)
{
	fputs(code ? " `" : " ", f);
	for (; *s; s++) {
		if (*s == '|')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputs(code ? "` |" : " |", f);
}

void cfg_print_doc(FILE *f)
{
	char acc[256];
	fprintf(f, "| section | key | type | default | accepted | meaning |\n");
	fprintf(f, "| --- | --- | --- | --- | --- | --- |\n");
	for (size_t i = 0; i < CFG_N_KEYS; i++) {
		const struct cfg_key *k = &cfg_keys[i];
		fputc('|', f);
		md_cell(f, k->section, 0);
		md_cell(f, k->name, 1);
		md_cell(f, cfg_type_names[k->type], 0);
		if (k->required)
			md_cell(f, "(required)", 0);
		else if (!k->def[0])
			md_cell(f, "(empty)", 0);
		else
			md_cell(f, k->def, 1);
		md_cell(f, key_accepted(k, acc, sizeof(acc)), 0);
		md_cell(f, k->help, 0);
		fputc('\n', f);
	}
}
