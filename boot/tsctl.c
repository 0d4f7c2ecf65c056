/* tsctl: a command-line client of `tokenspeed serve` (src/PROTOCOL.md), on
 * libtsclient (src/tsclient.h).
 *
 *   tsctl generate [--server HOST:PORT --certs DIR] "TEXT" [--chat] [--system TEXT] [--stop STR]...
 *   tsctl generate [--server HOST:PORT --certs DIR] --prompt-ids 1,2,3 [--max-tokens N] [sampling]
 *       streams the generated text (for a text prompt) or ids as they arrive
 *       to stdout, then DONE's counts and timings to stderr (so stdout is
 *       only the text). --chat sends TEXT as a user message
 *       (after --system and the --tools FILE definitions, a JSON array) in the
 *       model's chat format.
 *   tsctl chat [--server HOST:PORT --certs DIR] [--system TEXT] [sampling]
 *       an interactive conversation: each line read is a user turn, the reply
 *       streams back; the whole conversation is sent each turn under one
 *       session, so the server reuses its KV. "/reset" starts over, "/quit"
 *       or end of input ends.
 *   tsctl stats --server HOST:PORT --certs DIR [--all]
 *       the model's identity and limits (WELCOME) and the server's counters
 *       (STATS): those not at zero, or all of them with --all
 *   tsctl bench --server HOST:PORT --certs DIR (--concurrency C | --rate R) --requests N
 *               --input-len L --output-len M [--session-reuse F] [--connections K] [--seed S]
 *       a serving benchmark in the manner of vLLM's and SGLang's: random prompts
 *       of L ids, M output ids each (IGNORE_EOS), either C requests in flight
 *       or Poisson arrivals at R per second, over K connections (default 4)
 *       that multiplex many requests each; reports requests/s, tokens/s,
 *       TTFT, TPOT, ITL and end-to-end latency at p50/p90/p99 and the prefix
 *       cache hit rate (cached / prompt tokens from DONE). --session-reuse F:
 *       each request continues an idle earlier conversation of its
 *       connection (prompt = that conversation so far + L new ids, same
 *       session id) with probability F; every request keeps its session.
 *
 * --help (or -h) after any command prints that command's usage.
 * --server defaults to 127.0.0.1:7070 and --certs to build/certs (what
 * `make run` serves with). DIR holds ca.crt, client.crt and client.key
 * (`tokenspeed certs DIR`);
 * --server-name NAME overrides the name the server's certificate must carry
 * (default: HOST). Exit status 0, or 1 with a message naming the server or
 * file on stderr.
 *
 * The build compiles this file with -DTSCTL_MAIN for the tsctl binary;
 * without it the file defines only tsctl_main (so the boot/ wildcard that
 * links the tokenspeed binary takes it harmlessly).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base.h"
#include "proto.h"
#include "cli.h"
#include "tsclient.h"

int tsctl_main(int argc, char **argv);

#define TSCTL_MAX_IDS     65536
#define TSCTL_CONNECTIONS 4
#define TSCTL_SESSIONS    64 /* idle conversations kept per connection for --session-reuse */
#define TSCTL_DEFAULT_TOKENS 256 /* --max-tokens when not given */

static const char usage_generate[] =
    "usage: tsctl generate (\"TEXT\" [--chat] [--system TEXT] [--tools FILE] | --prompt-ids 1,2,3)\n"
    "                      [--max-tokens N]\n"
    "                      [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
    "                      [--repetition-penalty R] [--presence-penalty P] [--frequency-penalty F]\n"
    "                      [--seed S] [--stop-ids 1,2] [--stop STR]... [--ignore-eos] [--priority 0..3]\n"
    "                      [--session ID [--keep-session]]\n"
    "    streams the generated text (or ids) to stdout; the summary (finish, counts, timings) goes to stderr\n";
static const char usage_chat[] =
    "usage: tsctl chat [--system TEXT] [--tools FILE] [--max-tokens N] [sampling as for generate] [-v]\n"
    "    reads user turns from stdin, streams each reply; /reset starts over, /quit or end of input ends\n";
static const char usage_stats[] =
    "usage: tsctl stats [--all]\n"
    "    the server's model and limits (WELCOME) and its counters (STATS); counters at zero only with --all\n";
static const char usage_bench[] =
    "usage: tsctl bench (--concurrency C | --rate R) --requests N --input-len L --output-len M\n"
    "                   [--session-reuse F] [--connections K] [--seed S] [--timeout S]\n";
static const char usage_common[] =
    "common: [--server HOST:PORT] (default 127.0.0.1:7070) [--certs DIR] (default build/certs)\n"
    "        [--server-name NAME]  the name in the server's certificate (default: HOST)\n"
    "        [--psk-identity ID --psk-file FILE]  TLS with a pre-shared key instead of certificates\n"
    "        [--help]  this text\n";

/* cmd NULL: every command's usage. */
static void usage_of(FILE *f, const char *cmd)
{
	static const struct {
		const char *name, *text;
	} u[] = {{"generate", usage_generate}, {"chat", usage_chat}, {"stats", usage_stats}, {"bench", usage_bench}};
	for (size_t i = 0; i < TS_ARRAY_LEN(u); i++)
		if (!cmd || !strcmp(cmd, u[i].name))
			fputs(u[i].text, f);
	fputs(usage_common, f);
}

static void usage(FILE *f)
{
	usage_of(f, NULL);
}

/* ---------------------------------------------------------------- options */

struct opts {
	const char *server, *certs, *server_name, *psk_identity, *psk_file;
	int32_t *prompt; /* (n_prompt) */
	int n_prompt;
	int32_t *stop; /* (n_stop) */
	int n_stop;
	uint32_t max_tokens;
	struct samp_params samp;
	uint32_t priority;
	uint64_t session_id;
	int keep_session, ignore_eos;
	const char *text, *system; /* a text prompt; the system message of --chat and chat */
	char *tools;               /* --tools FILE's contents: a JSON array of tool definitions */
	uint32_t tools_len;
	int chat, verbose;
	int all; /* stats: counters at zero too */
	struct proto_str stop_seqs[PROTO_MAX_STOP_SEQS];
	uint32_t n_stop_seqs;
	/* bench */
	double concurrency, rate, session_reuse, timeout_s;
	uint32_t requests, input_len, output_len, connections;
	uint64_t seed;
	int has_seed;
	char ca[512], cert[512], key[512];
};

static int parse_u64(const char *flag, const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 0);
	if (end == v || *end || errno || v[0] == '-') {
		fprintf(stderr, "tsctl: %s = \"%s\": not an unsigned integer\n", flag, v);
		return -1;
	}
	*out = x;
	return 0;
}

/* The numeric options: name, accepted range, and the field each sets. */
enum num_opt {
	NUM_MAX_TOKENS,
	NUM_PRIORITY,
	NUM_CONCURRENCY,
	NUM_RATE,
	NUM_REQUESTS,
	NUM_INPUT_LEN,
	NUM_OUTPUT_LEN,
	NUM_SESSION_REUSE,
	NUM_CONNECTIONS,
	NUM_TIMEOUT,
	NUM_OPT_N
};
static const struct {
	const char *name;
	double lo, hi;
} num_opts[NUM_OPT_N] = {
    [NUM_MAX_TOKENS] = {"--max-tokens", 1, UINT32_MAX},
    [NUM_PRIORITY] = {"--priority", 0, PROTO_PRIO_MAX},
    [NUM_CONCURRENCY] = {"--concurrency", 1, 1e6},
    [NUM_RATE] = {"--rate", 1e-6, 1e9},
    [NUM_REQUESTS] = {"--requests", 1, 1e8},
    [NUM_INPUT_LEN] = {"--input-len", 1, INT32_MAX},
    [NUM_OUTPUT_LEN] = {"--output-len", 1, INT32_MAX},
    [NUM_SESSION_REUSE] = {"--session-reuse", 0, 1},
    [NUM_CONNECTIONS] = {"--connections", 1, 1024},
    [NUM_TIMEOUT] = {"--timeout", 1, 1e6},
};

static void set_num(struct opts *o, enum num_opt k, double x)
{
	switch (k) {
	case NUM_MAX_TOKENS:
		o->max_tokens = (uint32_t)x;
		break;
	case NUM_PRIORITY:
		o->priority = (uint32_t)x;
		break;
	case NUM_CONCURRENCY:
		o->concurrency = floor(x);
		break;
	case NUM_RATE:
		o->rate = x;
		break;
	case NUM_REQUESTS:
		o->requests = (uint32_t)x;
		break;
	case NUM_INPUT_LEN:
		o->input_len = (uint32_t)x;
		break;
	case NUM_OUTPUT_LEN:
		o->output_len = (uint32_t)x;
		break;
	case NUM_SESSION_REUSE:
		o->session_reuse = x;
		break;
	case NUM_CONNECTIONS:
		o->connections = (uint32_t)x;
		break;
	case NUM_TIMEOUT:
		o->timeout_s = x;
		break;
	case NUM_OPT_N:
		break;
	}
}

/* Parses argv[2..]; 0 or -1 (message printed). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
	static int32_t prompt[TSCTL_MAX_IDS], stop[PROTO_MAX_STOP_IDS];
	int rs;
	memset(o, 0, sizeof(*o));
	samp_params_default(&o->samp);
	o->prompt = prompt;
	o->stop = stop;
	o->connections = TSCTL_CONNECTIONS;
	o->timeout_s = 600;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--ignore-eos")) {
			o->ignore_eos = 1;
			continue;
		}
		if (!strcmp(a, "--keep-session")) {
			o->keep_session = 1;
			continue;
		}
		if (!strcmp(a, "--chat")) {
			o->chat = 1;
			continue;
		}
		if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
			o->verbose = 1;
			continue;
		}
		if (!strcmp(a, "--all")) {
			o->all = 1;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return 1;
		if (strncmp(a, "--", 2) != 0) { /* the text prompt */
			if (o->text) {
				fprintf(stderr, "tsctl: one text prompt at most (\"%s\" and \"%s\"): quote it\n", o->text, a);
				return -1;
			}
			o->text = a;
			continue;
		}
		if (!v) {
			fprintf(stderr, "tsctl: %s needs a value\n", a);
			return -1;
		}
		i++; /* every option below takes v */
		if (!strcmp(a, "--server"))
			o->server = v;
		else if (!strcmp(a, "--certs"))
			o->certs = v;
		else if (!strcmp(a, "--server-name"))
			o->server_name = v;
		else if (!strcmp(a, "--psk-identity"))
			o->psk_identity = v;
		else if (!strcmp(a, "--psk-file"))
			o->psk_file = v;
		else if (!strcmp(a, "--system"))
			o->system = v;
		else if (!strcmp(a, "--tools")) {
			static char buf[1 << 20];
			FILE *f = fopen(v, "rb");
			size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
			int err = !f || ferror(f) || n == sizeof(buf);
			if (f)
				fclose(f);
			if (err || n == 0) {
				fprintf(stderr, "tsctl: --tools %s: cannot read a JSON array of tool definitions (< 1 MiB): %s\n",
				        v, f ? "empty or too long" : strerror(errno));
				return -1;
			}
			o->tools = buf, o->tools_len = (uint32_t)n;
		}
		else if (!strcmp(a, "--stop")) {
			if (o->n_stop_seqs == PROTO_MAX_STOP_SEQS || !*v) {
				fprintf(stderr, "tsctl: --stop \"%s\": at most %u non-empty stop sequences\n", v,
				        PROTO_MAX_STOP_SEQS);
				return -1;
			}
			o->stop_seqs[o->n_stop_seqs++] = (struct proto_str){v, (uint32_t)strlen(v)};
		}
		else if (!strcmp(a, "--prompt-ids")) {
			if ((o->n_prompt = cli_parse_ids(v, prompt, TSCTL_MAX_IDS)) <= 0) {
				fprintf(stderr, "tsctl: --prompt-ids \"%s\": expected ids like 1,2,3\n", v);
				return -1;
			}
		} else if (!strcmp(a, "--stop-ids")) {
			if ((o->n_stop = cli_parse_ids(v, stop, PROTO_MAX_STOP_IDS)) < 0) {
				fprintf(stderr, "tsctl: --stop-ids \"%s\": expected ids like 1,2\n", v);
				return -1;
			}
		} else if (!strcmp(a, "--seed")) {
			if (parse_u64(a, v, &o->seed) < 0)
				return -1;
			o->samp.seed = o->seed;
			o->has_seed = 1;
		} else if (!strcmp(a, "--session")) {
			if (parse_u64(a, v, &o->session_id) < 0)
				return -1;
		} else if ((rs = cli_samp_opt("tsctl", a, v, &o->samp)) != 0) {
			if (rs < 0)
				return -1;
		} else {
			int k = 0;
			double x;
			while (k < NUM_OPT_N && strcmp(a, num_opts[k].name))
				k++;
			if (k == NUM_OPT_N) {
				fprintf(stderr, "tsctl: unknown option \"%s\"\n", a);
				usage(stderr);
				return -1;
			}
			if (cli_parse_num("tsctl", a, v, num_opts[k].lo, num_opts[k].hi, &x) < 0)
				return -1;
			set_num(o, (enum num_opt)k, x);
		}
	}
	if (!o->server)
		o->server = "127.0.0.1:7070";
	if (!o->certs && !o->psk_identity)
		o->certs = "build/certs";
	if (!o->psk_identity != !o->psk_file) {
		fprintf(stderr, "tsctl: --psk-identity ID and --psk-file FILE go together\n");
		return -1;
	}
	if (!o->certs)
		return 0;
	snprintf(o->ca, sizeof(o->ca), "%s/ca.crt", o->certs);
	snprintf(o->cert, sizeof(o->cert), "%s/client.crt", o->certs);
	snprintf(o->key, sizeof(o->key), "%s/client.key", o->certs);
	return 0;
}

static int connect_to(const struct opts *o, struct tsc *c)
{
	struct tsc_tls tl = {o->ca, o->cert, o->key, o->server_name, o->psk_identity, o->psk_file};
	struct ts_err e = {0};
	if (tsc_connect(c, o->server, &tl, &e) < 0) {
		fprintf(stderr, "tsctl: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static const char *finish_name(uint32_t f)
{
	static const char *const names[] = {"?", "STOP", "LENGTH", "CONTEXT", "CANCELLED"};
	return f <= PROTO_FINISH_MAX ? names[f] : "?";
}

static const char *err_name(uint32_t code)
{
	const struct proto_err_info *i = proto_err_info(code);
	return i ? i->name : "?";
}

/* ---------------------------------------------------------------- generate */

static int cmd_generate(const struct opts *o)
{
	struct tsc c;
	struct tsc_event ev;
	uint32_t id;
	int rc = 1;
	if ((o->n_prompt > 0) == (o->text != NULL)) {
		fprintf(stderr, "tsctl generate: give a text prompt (\"TEXT\") or --prompt-ids, one of the two\n");
		return 1;
	}
	if ((o->chat || o->system || o->tools) && !o->text) {
		fprintf(stderr, "tsctl generate: --chat and --system go with a text prompt\n");
		return 1;
	}
	if (connect_to(o, &c) < 0)
		return 1;
	if (o->text && !c.lim.has_tokenizer) {
		fprintf(stderr, "tsctl: %s: the server's model has no tokenizer: send --prompt-ids\n", o->server);
		tsc_close(&c);
		return 1;
	}
	struct proto_chat_msg msgs[3];
	uint32_t n_msgs = 0;
	if (o->tools)
		msgs[n_msgs++] = (struct proto_chat_msg){PROTO_ROLE_TOOLS, {o->tools, o->tools_len}};
	if (o->system)
		msgs[n_msgs++] = (struct proto_chat_msg){PROTO_ROLE_SYSTEM, {o->system, (uint32_t)strlen(o->system)}};
	if (o->text)
		msgs[n_msgs++] = (struct proto_chat_msg){PROTO_ROLE_USER, {o->text, (uint32_t)strlen(o->text)}};
	int chat = o->chat || o->system || o->tools;
	struct tsc_request rq = {.prompt = o->prompt,
	                         .n_prompt = (uint32_t)o->n_prompt,
	                         .text = o->text && !chat ? o->text : NULL,
	                         .text_len = o->text && !chat ? (uint32_t)strlen(o->text) : 0,
	                         .msgs = chat ? msgs : NULL,
	                         .n_msgs = chat ? n_msgs : 0,
	                         .want_text = o->text != NULL,
	                         .stop_seqs = o->stop_seqs,
	                         .n_stop_seqs = o->n_stop_seqs,
	                         .max_tokens = o->max_tokens ? o->max_tokens : TSCTL_DEFAULT_TOKENS,
	                         .stop_ids = o->stop,
	                         .n_stop_ids = (uint32_t)o->n_stop,
	                         .samp = o->samp,
	                         .priority = o->priority,
	                         .session_id = o->session_id,
	                         .keep_session = o->keep_session,
	                         .ignore_eos = o->ignore_eos};
	double t0 = ts_now(), t_first = 0, t_last = 0;
	if (tsc_submit(&c, &rq, &id) < 0) {
		fprintf(stderr, "tsctl: %s\n", c.err.msg);
		goto out;
	}
	for (;;) {
		int r = tsc_poll(&c, (int)(o->timeout_s * 1e3), &ev);
		if (r < 0) {
			fprintf(stderr, "\ntsctl: %s\n", c.err.msg);
			goto out;
		}
		if (r == 0) {
			fprintf(stderr, "\ntsctl: %s: no reply within %.0f s\n", o->server, o->timeout_s);
			goto out;
		}
		if (ev.type == TSC_EV_TOKENS && ev.req_id == id) {
			if (!t_first)
				t_first = ev.t;
			t_last = ev.t;
			if (ev.text)
				fwrite(ev.text, 1, ev.n_text, stdout);
			else
				for (uint32_t i = 0; i < ev.n_ids; i++)
					printf("%d ", ev.ids[i]);
			fflush(stdout);
		} else if (ev.type == TSC_EV_DONE && ev.req_id == id) {
			const struct proto_done *d = &ev.done;
			double dec_s = d->decode_us / 1e6;
			/* stdout holds only the text (or ids); the summary goes to stderr */
			fflush(stdout);
			fprintf(stderr, "\ndone: finish=%s prompt=%u cached=%u generated=%u%s\n", finish_name(d->finish),
			        d->n_prompt, d->n_cached, d->n_generated,
			        d->flags & PROTO_DONE_SESSION_KEPT ? " session_kept" : "");
			fprintf(stderr, "server: queue=%.2f ms ttft=%.2f ms decode=%.2f ms", d->queue_us / 1e3,
			        d->ttft_us / 1e3, d->decode_us / 1e3);
			if (d->n_generated > 1 && dec_s > 0)
				fprintf(stderr, " tpot=%.2f ms (%.1f tok/s)", dec_s * 1e3 / (d->n_generated - 1),
				        (d->n_generated - 1) / dec_s);
			fprintf(stderr, "\nclient: ttft=%.2f ms total=%.2f ms\n", t_first ? (t_first - t0) * 1e3 : 0,
			        ((t_last ? t_last : ev.t) - t0) * 1e3);
			rc = 0;
			goto out;
		} else if (ev.type == TSC_EV_ERROR) {
			fprintf(stderr, "\ntsctl: %s: ERROR %s%s: %s\n", o->server, err_name(ev.code),
			        ev.retryable ? " (retryable)" : "", ev.msg);
			if (ev.req_id == id || ev.req_id == 0)
				goto out;
		} else if (ev.type == TSC_EV_GOAWAY) {
			fprintf(stderr, "\ntsctl: %s: GOAWAY (drain %u ms): %s\n", o->server, ev.drain_ms, ev.msg);
		}
	}
out:
	tsc_close(&c);
	return rc;
}

/* ---------------------------------------------------------------- chat */

static uint64_t rng_next(uint64_t *s);

struct history {
	struct proto_chat_msg *m; /* (n); texts malloc'd */
	uint32_t n, cap;
};

static int history_add(struct history *h, uint32_t role, const char *t, size_t n)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? 2 * h->cap : 16;
		struct proto_chat_msg *m = ts_realloc(h->m, cap * sizeof(*m));
		if (!m)
			return -1;
		h->m = m, h->cap = cap;
	}
	char *c = ts_alloc(n + 1);
	if (!c)
		return -1;
	memcpy(c, t, n);
	c[n] = 0;
	h->m[h->n++] = (struct proto_chat_msg){role, {c, (uint32_t)n}};
	return 0;
}

static void history_clear(struct history *h, uint32_t keep)
{
	while (h->n > keep)
		ts_free((void *)h->m[--h->n].text.s);
}

/* One turn: sends the conversation, streams the reply to stdout and appends
 * it to h. 0, or -1 (message printed; the connection is unusable). */
static int chat_turn(const struct opts *o, struct tsc *c, struct history *h, uint64_t session)
{
	struct tsc_event ev;
	uint32_t id;
	char *reply = NULL;
	size_t n = 0, cap = 0;
	struct tsc_request rq = {.msgs = h->m,
	                         .n_msgs = h->n,
	                         .want_text = 1,
	                         .stop_seqs = o->stop_seqs,
	                         .n_stop_seqs = o->n_stop_seqs,
	                         .max_tokens = o->max_tokens ? o->max_tokens : TSCTL_DEFAULT_TOKENS,
	                         .samp = o->samp,
	                         .priority = PROTO_PRIO_INTERACTIVE,
	                         .session_id = session,
	                         .keep_session = 1};
	if (tsc_submit(c, &rq, &id) < 0) {
		fprintf(stderr, "tsctl: %s\n", c->err.msg);
		return c->dead ? -1 : 0;
	}
	for (;;) {
		int r = tsc_poll(c, (int)(o->timeout_s * 1e3), &ev);
		if (r <= 0) {
			fprintf(stderr, "\ntsctl: %s\n", r < 0 ? c->err.msg : "no reply in time");
			ts_free(reply);
			return -1;
		}
		if (ev.type == TSC_EV_TOKENS && ev.req_id == id && ev.n_text) {
			if (n + ev.n_text > cap) {
				cap = 2 * (n + ev.n_text);
				char *p = ts_realloc(reply, cap);
				if (!p) {
					ts_free(reply);
					return -1;
				}
				reply = p;
			}
			memcpy(reply + n, ev.text, ev.n_text);
			n += ev.n_text;
			fwrite(ev.text, 1, ev.n_text, stdout);
			fflush(stdout);
		} else if (ev.type == TSC_EV_DONE && ev.req_id == id) {
			printf("\n");
			if (o->verbose)
				fprintf(stderr, "[finish=%s prompt=%u cached=%u generated=%u ttft=%.1f ms]\n",
				        finish_name(ev.done.finish), ev.done.n_prompt, ev.done.n_cached,
				        ev.done.n_generated, ev.done.ttft_us / 1e3);
			int rc = history_add(h, PROTO_ROLE_ASSISTANT, reply ? reply : "", n);
			ts_free(reply);
			return rc;
		} else if (ev.type == TSC_EV_ERROR && (ev.req_id == id || ev.req_id == 0)) {
			fprintf(stderr, "\ntsctl: %s: ERROR %s: %s\n", o->server, err_name(ev.code), ev.msg);
			ts_free(reply);
			history_clear(h, h->n - 1); /* the user turn that failed */
			return ev.req_id == 0 ? -1 : 0;
		}
	}
}

/* One line of stdin (without its end) into *buf; its length, or -1 at the end. */
static long read_line(char **buf, size_t *cap)
{
	size_t n = 0;
	for (;;) {
		if (*cap - n < 2) {
			size_t c = *cap ? 2 * *cap : 4096;
			char *p = ts_realloc(*buf, c);
			if (!p)
				return -1;
			*buf = p, *cap = c;
		}
		if (!fgets(*buf + n, (int)TS_MIN(*cap - n, (size_t)INT32_MAX), stdin))
			return n ? (long)n : -1;
		n += strlen(*buf + n);
		if (n && (*buf)[n - 1] == '\n')
			return (long)n;
	}
}

static int cmd_chat(const struct opts *o)
{
	struct tsc c;
	struct history h = {0};
	char *line = NULL;
	size_t lcap = 0;
	int rc = 1, tty = isatty(0);
	if (o->text || o->n_prompt) {
		fprintf(stderr, "tsctl chat: reads the user's turns from standard input; no prompt argument\n");
		return 1;
	}
	if (connect_to(o, &c) < 0)
		return 1;
	if (!c.lim.has_tokenizer) {
		fprintf(stderr, "tsctl: %s: the server's model has no tokenizer: chat needs one\n", o->server);
		goto out;
	}
	uint64_t session = o->session_id;
	if (!session) { /* a random one: sessions are server-wide */
		uint64_t t = (uint64_t)(ts_now() * 1e9) ^ ((uint64_t)getpid() << 32);
		session = rng_next(&t) | 1;
	}
	uint32_t base = 0;
	if (o->tools) {
		if (history_add(&h, PROTO_ROLE_TOOLS, o->tools, o->tools_len) < 0)
			goto out;
		base++;
	}
	if (o->system) {
		if (history_add(&h, PROTO_ROLE_SYSTEM, o->system, strlen(o->system)) < 0)
			goto out;
		base++;
	}
	if (tty)
		fprintf(stderr, "%s (%s) on %s: /reset starts over, /quit or Ctrl-D ends\n", c.model, c.arch,
		        o->server);
	for (;;) {
		if (tty)
			fputs("> ", stderr);
		long len = read_line(&line, &lcap);
		if (len < 0)
			break;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (len == 0)
			continue;
		if (!strcmp(line, "/quit"))
			break;
		if (!strcmp(line, "/reset")) {
			history_clear(&h, base);
			session = session * 6364136223846793005ull + 1442695040888963407ull;
			continue;
		}
		if (history_add(&h, PROTO_ROLE_USER, line, (size_t)len) < 0 || chat_turn(o, &c, &h, session) < 0)
			goto out;
	}
	rc = 0;
out:
	history_clear(&h, 0);
	ts_free(h.m);
	ts_free(line);
	tsc_close(&c);
	return rc;
}

/* ---------------------------------------------------------------- stats */

static int cmd_stats(const struct opts *o)
{
	struct tsc c;
	struct tsc_event ev;
	int rc = 1;
	if (connect_to(o, &c) < 0)
		return 1;
	printf("server: %s\nmodel: %s\narch: %s\ncheckpoint: %s\n", c.server, c.model, c.arch, c.checkpoint);
	printf("protocol: %u max_frame=%u max_requests=%u max_tokens=%u vocab=%u max_seq_len=%u initial_credit=%u "
	       "tokenizer=%d\n",
	       c.version, c.lim.max_frame, c.max_requests, c.lim.max_tokens, c.lim.vocab, c.lim.max_seq_len,
	       c.initial_credit, c.lim.has_tokenizer);
	if (tsc_stats(&c) < 0) {
		fprintf(stderr, "tsctl: %s\n", c.err.msg);
		goto out;
	}
	for (;;) {
		int r = tsc_poll(&c, (int)(o->timeout_s * 1e3), &ev);
		if (r <= 0) {
			fprintf(stderr, "tsctl: %s\n", r < 0 ? c.err.msg : "no STATS reply in time");
			goto out;
		}
		if (ev.type == TSC_EV_STATS)
			break;
		if (ev.type == TSC_EV_ERROR && ev.req_id == 0) {
			fprintf(stderr, "tsctl: %s: ERROR %s: %s\n", o->server, err_name(ev.code), ev.msg);
			goto out;
		}
	}
	uint32_t hidden = 0;
	for (uint32_t i = 0; i < ev.n_stats; i++) {
		if (!o->all && ev.stats[i].value == 0) {
			hidden++;
			continue;
		}
		const char *name = proto_stat_name(ev.stats[i].key);
		if (name)
			printf("%-20s %llu\n", name, (unsigned long long)ev.stats[i].value);
		else
			printf("key_%-16u %llu\n", ev.stats[i].key, (unsigned long long)ev.stats[i].value);
	}
	if (hidden)
		printf("(%u counters at 0 not shown; --all shows them)\n", hidden);
	rc = 0;
out:
	tsc_close(&c);
	return rc;
}

/* ---------------------------------------------------------------- bench */

/* A growable array of doubles. */
struct dvec {
	double *v;
	size_t n, cap;
};

static int dvec_push(struct dvec *d, double x)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 1024;
		double *p = ts_realloc(d->v, cap * sizeof(double));
		if (!p)
			return -1;
		d->v = p;
		d->cap = cap;
	}
	d->v[d->n++] = x;
	return 0;
}

static int dvec_cat(struct dvec *d, const struct dvec *s)
{
	for (size_t i = 0; i < s->n; i++)
		if (dvec_push(d, s->v[i]) < 0)
			return -1;
	return 0;
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* [0, 1) */
{
	return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

/* One conversation kept for --session-reuse: its ids so far. */
struct conv {
	uint64_t session_id;
	int32_t *ids; /* (n) prompt + output of its last turn */
	uint32_t n;
	int busy;
};

/* One request in flight. */
struct flight {
	uint32_t req_id;
	double t_submit, t_first, t_prev;
	uint32_t n_out;
	struct conv *conv; /* its conversation, or NULL */
	int32_t *ids;      /* (n_ids) prompt, then output appended (for the conversation) */
	uint32_t n_ids, cap_ids;
};

/* One connection's share of the run, on its own thread. */
struct worker {
	const struct opts *o;
	int index;
	const double *arrivals; /* (o->requests) seconds after the start; NULL: closed loop */
	double t0;
	uint32_t limit; /* requests in flight at most (closed loop: its share of --concurrency) */
	uint64_t rng;
	struct conv convs[TSCTL_SESSIONS];
	uint32_t n_convs;
	/* Results. */
	struct dvec ttft, tpot, itl, e2e;
	uint64_t n_done, n_failed, n_reused, in_tokens, out_tokens, prompt_tokens, cached_tokens;
	double t_end;
	char err[1200];
};

/* Builds request r's prompt into f (new or continuing conversation). */
static int make_prompt(struct worker *w, struct tsc *c, struct flight *f)
{
	const struct opts *o = w->o;
	uint32_t lo = c->lim.vocab > 1100 ? 100 : 0, hi = TS_MIN(c->lim.vocab, 32000u);
	struct conv *cv = NULL;
	if (o->session_reuse > 0 && w->n_convs > 0 && rng_unit(&w->rng) < o->session_reuse) {
		uint32_t k = (uint32_t)(rng_next(&w->rng) % w->n_convs);
		for (uint32_t j = 0; j < w->n_convs && !cv; j++) {
			struct conv *x = &w->convs[(k + j) % w->n_convs];
			if (!x->busy && (uint64_t)x->n + o->input_len + o->output_len < c->lim.max_seq_len)
				cv = x;
		}
	}
	uint32_t base = cv ? cv->n : 0, need = base + o->input_len + o->output_len;
	if (need > f->cap_ids) {
		int32_t *p = ts_realloc(f->ids, need * sizeof(int32_t));
		if (!p)
			return -1;
		f->ids = p;
		f->cap_ids = need;
	}
	if (cv)
		memcpy(f->ids, cv->ids, base * sizeof(int32_t));
	for (uint32_t i = 0; i < o->input_len; i++)
		f->ids[base + i] = (int32_t)(lo + rng_next(&w->rng) % (hi - lo));
	f->n_ids = base + o->input_len;
	if (!cv && o->session_reuse > 0) {
		/* A new conversation: a free entry, else replace an idle one. */
		if (w->n_convs < TSCTL_SESSIONS)
			cv = &w->convs[w->n_convs++];
		else
			for (uint32_t j = 0; j < w->n_convs && !cv; j++)
				if (!w->convs[j].busy)
					cv = &w->convs[j];
		if (cv) {
			cv->session_id = rng_next(&w->rng) | 1;
			cv->n = 0;
		}
	} else if (cv)
		w->n_reused++;
	f->conv = cv;
	if (cv)
		cv->busy = 1;
	return 0;
}

static void flight_end(struct worker *w, struct flight *f, int ok)
{
	if (f->conv) {
		struct conv *cv = f->conv;
		cv->busy = 0;
		if (ok) {
			int32_t *p = ts_realloc(cv->ids, (size_t)f->n_ids * sizeof(int32_t));
			if (p) {
				memcpy(p, f->ids, (size_t)f->n_ids * sizeof(int32_t));
				cv->ids = p;
				cv->n = f->n_ids;
			}
		}
	}
	f->req_id = 0;
	f->conv = NULL;
}

static void *bench_worker(void *arg)
{
	struct worker *w = arg;
	const struct opts *o = w->o;
	struct tsc c;
	struct tsc_event ev;
	struct flight *fl = NULL;
	uint32_t next = (uint32_t)w->index, stride = o->connections, n_fl = 0, live = 0;
	uint32_t mine = o->requests > next ? (o->requests - next + stride - 1) / stride : 0, finished = 0;
	struct tsc_tls tl = {o->ca, o->cert, o->key, o->server_name, o->psk_identity, o->psk_file};
	struct ts_err e = {0};

	if (tsc_connect(&c, o->server, &tl, &e) < 0) {
		snprintf(w->err, sizeof(w->err), "%s", e.msg);
		w->n_failed = mine;
		return NULL;
	}
	uint32_t limit = TS_MIN(w->limit, TS_MIN(c.max_requests, TSC_MAX_SLOTS));
	n_fl = limit ? limit : 1;
	fl = ts_alloc(sizeof(*fl) * n_fl);
	if (!fl) {
		snprintf(w->err, sizeof(w->err), "out of memory");
		goto out;
	}
	while (finished < mine) {
		double now = ts_now();
		/* Submit what is due. */
		while (next < o->requests && live < limit && now >= w->t0 + (w->arrivals ? w->arrivals[next] : 0)) {
			struct flight *f = NULL;
			for (uint32_t j = 0; j < n_fl && !f; j++)
				if (!fl[j].req_id)
					f = &fl[j];
			if (!f || make_prompt(w, &c, f) < 0)
				break;
			struct tsc_request rq = {.prompt = f->ids,
			                         .n_prompt = f->n_ids,
			                         .max_tokens = o->output_len,
			                         .samp = o->samp,
			                         .priority = PROTO_PRIO_NORMAL,
			                         .ignore_eos = 1,
			                         .session_id = f->conv ? f->conv->session_id : 0,
			                         .keep_session = f->conv != NULL};
			rq.samp.seed = rng_next(&w->rng);
			f->t_submit = ts_now();
			f->t_first = f->t_prev = 0;
			f->n_out = 0;
			if (tsc_submit(&c, &rq, &f->req_id) < 0) {
				if (!w->err[0])
					snprintf(w->err, sizeof(w->err), "%s", c.err.msg);
				flight_end(w, f, 0);
				w->n_failed++;
				finished++;
				next += stride;
				if (c.dead)
					goto out;
				continue;
			}
			live++;
			next += stride;
		}
		int timeout_ms = 1000;
		if (next < o->requests && live < limit) {
			double dt = w->t0 + (w->arrivals ? w->arrivals[next] : 0) - ts_now();
			timeout_ms = dt > 0 ? (int)(dt * 1e3) + 1 : 0;
			if (timeout_ms > 1000)
				timeout_ms = 1000;
		}
		int r = tsc_poll(&c, timeout_ms, &ev);
		if (r < 0) {
			if (!w->err[0])
				snprintf(w->err, sizeof(w->err), "%s", c.err.msg);
			goto out;
		}
		if (r == 0) {
			if (live && ts_now() - w->t0 > o->timeout_s) {
				snprintf(w->err, sizeof(w->err), "%s: timed out after %.0f s with %u requests live",
				         o->server, o->timeout_s, live);
				goto out;
			}
			continue;
		}
		struct flight *f = NULL;
		for (uint32_t j = 0; j < n_fl && !f && ev.req_id; j++)
			if (fl[j].req_id == ev.req_id)
				f = &fl[j];
		if (ev.type == TSC_EV_ERROR && !f) {
			if (!w->err[0])
				snprintf(w->err, sizeof(w->err), "%s: ERROR %s: %s", o->server, err_name(ev.code),
				         ev.msg);
			continue;
		}
		if (!f)
			continue;
		switch (ev.type) {
		case TSC_EV_TOKENS:
			if (!f->t_first)
				f->t_first = ev.t;
			else
				dvec_push(&w->itl, ev.t - f->t_prev);
			f->t_prev = ev.t;
			f->n_out += ev.n_ids;
			if (f->conv && f->n_ids + ev.n_ids <= f->cap_ids) {
				memcpy(f->ids + f->n_ids, ev.ids, ev.n_ids * sizeof(int32_t));
				f->n_ids += ev.n_ids;
			}
			break;
		case TSC_EV_DONE:
			w->n_done++;
			w->out_tokens += f->n_out;
			w->in_tokens += ev.done.n_prompt;
			w->prompt_tokens += ev.done.n_prompt;
			w->cached_tokens += ev.done.n_cached;
			if (f->t_first) {
				dvec_push(&w->ttft, f->t_first - f->t_submit);
				if (f->n_out > 1)
					dvec_push(&w->tpot, (f->t_prev - f->t_first) / (f->n_out - 1));
			}
			dvec_push(&w->e2e, ev.t - f->t_submit);
			w->t_end = ev.t;
			flight_end(w, f, 1);
			live--;
			finished++;
			break;
		case TSC_EV_ERROR:
			if (!w->err[0])
				snprintf(w->err, sizeof(w->err), "%s: request failed: ERROR %s: %s", o->server,
				         err_name(ev.code), ev.msg);
			w->n_failed++;
			flight_end(w, f, 0);
			live--;
			finished++;
			break;
		case TSC_EV_PONG:
		case TSC_EV_STATS:
		case TSC_EV_GOAWAY:
		case TSC_EV_WELCOME:
			break;
		}
	}
out:
	w->n_failed = mine - w->n_done; /* failed, refused, or never sent */
	for (uint32_t j = 0; fl && j < n_fl; j++)
		ts_free(fl[j].ids);
	ts_free(fl);
	for (uint32_t j = 0; j < w->n_convs; j++)
		ts_free(w->convs[j].ids);
	tsc_close(&c);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *name, struct dvec *d)
{
	double sum = 0;
	qsort(d->v, d->n, sizeof(double), cmp_double);
	for (size_t i = 0; i < d->n; i++)
		sum += d->v[i];
	printf("%-5s ms  mean %9.2f  p50 %9.2f  p90 %9.2f  p99 %9.2f  (n=%zu)\n", name,
	       d->n ? sum / (double)d->n * 1e3 : 0, tsc_percentile(d->v, d->n, 50) * 1e3,
	       tsc_percentile(d->v, d->n, 90) * 1e3, tsc_percentile(d->v, d->n, 99) * 1e3, d->n);
}

static int cmd_bench(struct opts *o)
{
	if ((o->concurrency > 0) == (o->rate > 0) || !o->requests || !o->input_len || !o->output_len) {
		fprintf(stderr, "tsctl bench: one of --concurrency C or --rate R, and --requests, --input-len and "
		                "--output-len are required\n");
		return 1;
	}
	if (o->connections > o->requests)
		o->connections = o->requests;
	if (o->concurrency > 0 && o->connections > o->concurrency)
		o->connections = (uint32_t)o->concurrency;
	uint64_t rng = o->has_seed ? o->seed : (uint64_t)(ts_now() * 1e9);
	double *arrivals = NULL;
	if (o->rate > 0) {
		/* Poisson process: exponential gaps of mean 1/R, from 0. */
		arrivals = ts_alloc(sizeof(double) * o->requests);
		if (!arrivals)
			return 1;
		double t = 0;
		for (uint32_t i = 0; i < o->requests; i++) {
			arrivals[i] = t;
			t += -log(1.0 - rng_unit(&rng)) / o->rate;
		}
	}
	struct worker *ws = ts_alloc(sizeof(*ws) * o->connections);
	pthread_t *th = ts_alloc(sizeof(*th) * o->connections);
	if (!ws || !th)
		return 1;
	printf("bench: %s, %u requests, input %u, output %u, %s %g, %u connections, session reuse %.2f\n", o->server,
	       o->requests, o->input_len, o->output_len, o->rate > 0 ? "rate" : "concurrency",
	       o->rate > 0 ? o->rate : o->concurrency, o->connections, o->session_reuse);
	double t0 = ts_now() + 0.2; /* every connection is up before the first submit, mostly */
	for (uint32_t k = 0; k < o->connections; k++) {
		struct worker *w = &ws[k];
		w->o = o;
		w->index = (int)k;
		w->arrivals = arrivals;
		w->t0 = t0;
		w->limit = o->rate > 0 ? UINT32_MAX
		                       : (uint32_t)(o->concurrency / o->connections) +
		                             (k < (uint32_t)fmod(o->concurrency, o->connections) ? 1 : 0);
		w->rng = rng_next(&rng);
		if (w->limit == 0)
			w->limit = 1;
		pthread_create(&th[k], NULL, bench_worker, w);
	}
	struct dvec ttft = {0}, tpot = {0}, itl = {0}, e2e = {0};
	uint64_t done = 0, failed = 0, reused = 0, in_tok = 0, out_tok = 0, prompt = 0, cached = 0;
	double t_end = t0;
	int rc = 0;
	for (uint32_t k = 0; k < o->connections; k++) {
		struct worker *w = &ws[k];
		pthread_join(th[k], NULL);
		dvec_cat(&ttft, &w->ttft);
		dvec_cat(&tpot, &w->tpot);
		dvec_cat(&itl, &w->itl);
		dvec_cat(&e2e, &w->e2e);
		done += w->n_done;
		failed += w->n_failed;
		reused += w->n_reused;
		in_tok += w->in_tokens;
		out_tok += w->out_tokens;
		prompt += w->prompt_tokens;
		cached += w->cached_tokens;
		if (w->t_end > t_end)
			t_end = w->t_end;
		if (w->err[0]) {
			fprintf(stderr, "tsctl: connection %u: %s\n", k, w->err);
			rc = 1;
		}
		ts_free(w->ttft.v);
		ts_free(w->tpot.v);
		ts_free(w->itl.v);
		ts_free(w->e2e.v);
	}
	double dur = t_end - t0;
	if (dur <= 0)
		dur = 1e-9;
	printf("completed %llu, failed %llu, duration %.2f s\n", (unsigned long long)done, (unsigned long long)failed,
	       dur);
	printf("requests/s %.2f   input tokens/s %.1f   output tokens/s %.1f\n", done / dur, in_tok / dur,
	       out_tok / dur);
	printf("prefix cache hit rate %.2f%% (%llu of %llu prompt tokens cached); %llu requests continued a session\n",
	       prompt ? 100.0 * cached / prompt : 0, (unsigned long long)cached, (unsigned long long)prompt,
	       (unsigned long long)reused);
	report("TTFT", &ttft);
	report("TPOT", &tpot);
	report("ITL", &itl);
	report("E2E", &e2e);
	ts_free(ttft.v);
	ts_free(tpot.v);
	ts_free(itl.v);
	ts_free(e2e.v);
	ts_free(arrivals);
	ts_free(ws);
	ts_free(th);
	return rc || failed ? 1 : 0;
}

/* ---------------------------------------------------------------- main */

int tsctl_main(int argc, char **argv)
{
	struct opts o;
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	int po = parse_opts(argc, argv, &o);
	if (po < 0)
		return 2;
	if (po > 0) { /* --help after a command: that command's usage */
		usage_of(stdout, argv[1]);
		return 0;
	}
	if (!strcmp(argv[1], "generate"))
		return cmd_generate(&o);
	if (!strcmp(argv[1], "stats"))
		return cmd_stats(&o);
	if (!strcmp(argv[1], "chat"))
		return cmd_chat(&o);
	if (!strcmp(argv[1], "bench"))
		return cmd_bench(&o);
	fprintf(stderr, "tsctl: unknown command \"%s\"\n", argv[1]);
	usage(stderr);
	return 2;
}

#ifdef TSCTL_MAIN
int main(int argc, char **argv)
{
	return tsctl_main(argc, argv);
}
#endif
