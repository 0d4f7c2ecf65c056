/* main: argv and subcommands.
 *
 *   tokenspeed generate --config FILE (--prompt-ids 1,2,3 | --prompt TEXT)... --max-tokens N [sampling]
 *   tokenspeed serve --config FILE     serve the protocol over TLS until SIGTERM (then drain)
 *   tokenspeed --check-config FILE     validate the config and the model it names (config.json,
 *                                      every tensor's name and shape, the backend's limits)
 *                                      without reading weights
 *   tokenspeed --print-config [--config FILE]   effective config with defaults
 *   tokenspeed --print-config-doc      every key as a Markdown table
 *   tokenspeed certs DIR [--days N] [--cn NAME]   development CA, server and client certificates
 *   tokenspeed init --config-dir DIR [...]   the PID-1 supervisor without PID 1 (tests; boot/init.h)
 *   tokenspeed maintenance --config-dir DIR --why TEXT   what init runs when no ini validates
 *   tokenspeed --version | --help
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "boot.h"
#include "cli.h"
#include "init.h"
#include "log.h"
#include "proto.h"
#include "serve.h"
#include "tls_mem.h"

#define TS_VERSION "0.1.0"

int certs_cmd(int argc, char **argv); /* boot/certs.c */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tokenspeed generate --config FILE (--prompt-ids 1,2,3 | --prompt TEXT)... --max-tokens N\n"
		"                           [--temperature T] [--top-k K] [--top-p P] [--min-p P]\n"
		"                           [--repetition-penalty R] [--presence-penalty P] [--frequency-penalty F]\n"
		"                           [--seed S] [--stop-ids 1,2] [--ignore-eos]\n"
		"       tokenspeed serve --config FILE\n"
		"       tokenspeed --check-config FILE\n"
		"       tokenspeed --print-config [--config FILE]\n"
		"       tokenspeed --print-config-doc\n"
		"       tokenspeed certs DIR [--days N] [--cn NAME]\n"
		"       tokenspeed --version\n");
}

static int die(const char *what, const struct ts_err *e)
{
	fprintf(stderr, "tokenspeed: %s: %s\n", what, e->msg);
	return 1;
}

/* ------------------------------------------------------------ generate */

#define GEN_MAX_PROMPTS 64
#define GEN_MAX_IDS 65536

struct gen_out {
	int n;
	int32_t *ids[GEN_MAX_PROMPTS];
	int n_ids[GEN_MAX_PROMPTS];
	enum req_finish finish[GEN_MAX_PROMPTS];
	int done;
};

static int on_token(void *ctx, const struct req *r, int32_t t)
{
	struct gen_out *g = ctx;
	g->ids[r->user][g->n_ids[r->user]++] = t;
	return 0;
}

static void on_done(void *ctx, const struct req *r)
{
	struct gen_out *g = ctx;
	g->finish[r->user] = r->finish;
	g->done++;
}

static int cmd_generate(int argc, char **argv)
{
	const char *cfg_path = NULL;
	static int32_t prompts[GEN_MAX_PROMPTS][GEN_MAX_IDS];
	int n_prompt[GEN_MAX_PROMPTS], n_prompts = 0, max_tokens = 16, n_stop = 0, ignore_eos = 0;
	const char *ptext[GEN_MAX_PROMPTS] = {0}; /* a text prompt, tokenized after boot */
	int32_t stop[SCHED_MAX_STOP];
	struct samp_params sp;
	struct ts_err e = {0};
	double x;
	int r;

	samp_params_default(&sp);
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--ignore-eos")) {
			ignore_eos = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "tokenspeed: %s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--config")) {
			cfg_path = v;
		} else if (!strcmp(a, "--prompt-ids")) {
			if (n_prompts == GEN_MAX_PROMPTS) {
				fprintf(stderr, "tokenspeed: at most %d --prompt-ids\n", GEN_MAX_PROMPTS);
				return 2;
			}
			n_prompt[n_prompts] = cli_parse_ids(v, prompts[n_prompts], GEN_MAX_IDS);
			if (n_prompt[n_prompts] < 1) {
				fprintf(stderr, "tokenspeed: --prompt-ids \"%s\": expected comma-separated token ids\n", v);
				return 2;
			}
			n_prompts++;
		} else if (!strcmp(a, "--prompt")) {
			if (n_prompts == GEN_MAX_PROMPTS) {
				fprintf(stderr, "tokenspeed: at most %d prompts\n", GEN_MAX_PROMPTS);
				return 2;
			}
			if (!*v || strlen(v) > GEN_MAX_IDS / 2) {
				fprintf(stderr, "tokenspeed: --prompt: 1..%d bytes of text\n", GEN_MAX_IDS / 2);
				return 2;
			}
			ptext[n_prompts] = v;
			n_prompt[n_prompts++] = 0;
		} else if (!strcmp(a, "--stop-ids")) {
			if ((n_stop = cli_parse_ids(v, stop, SCHED_MAX_STOP)) < 0) {
				fprintf(stderr, "tokenspeed: --stop-ids \"%s\": at most %d comma-separated ids\n", v,
					SCHED_MAX_STOP);
				return 2;
			}
		} else if (!strcmp(a, "--max-tokens")) {
			if (cli_parse_num("tokenspeed", a, v, 1, 1 << 24, &x))
				return 2;
			max_tokens = (int)x;
		} else if ((r = cli_samp_opt("tokenspeed", a, v, &sp)) != 0) {
			if (r < 0)
				return 2;
		} else {
			fprintf(stderr, "tokenspeed: generate: unknown option %s\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!cfg_path || n_prompts == 0) {
		fprintf(stderr, "tokenspeed: generate needs --config FILE and --prompt-ids or --prompt\n");
		usage(stderr);
		return 2;
	}

	struct cfg cfg;
	static struct engine en;
	static struct gen_out g;
	cfg_defaults(&cfg);
	if (cfg_load(&cfg, cfg_path, &e) < 0)
		return die("config", &e);
	if (engine_boot(&en, &cfg, &e) < 0)
		return die("boot", &e);
	g.n = n_prompts;
	struct tok_scratch sc = {0};
	for (int i = 0; i < n_prompts; i++) {
		if (!ptext[i])
			continue;
		if (!en.has_tok) {
			fprintf(stderr, "tokenspeed: --prompt: %s has no tokenizer.json: use --prompt-ids\n", cfg.model.path);
			engine_stop(&en);
			return 2;
		}
		int k = en.tok.add_bos ? 1 : 0;
		prompts[i][0] = en.tok.bos_id;
		int n = tok_encode(&en.tok, ptext[i], strlen(ptext[i]), prompts[i] + k, GEN_MAX_IDS / 2, &sc);
		if (n < 0 || n > GEN_MAX_IDS / 2) {
			fprintf(stderr, "tokenspeed: --prompt %d: cannot tokenize (%s)\n", i, ts_code_name(n < 0 ? n : -E_NOSPACE));
			engine_stop(&en);
			return 2;
		}
		n_prompt[i] = k + n;
	}
	tok_scratch_free(&sc);
	if (en.has_tok && !ignore_eos && en.tok.eos_id >= 0 && n_stop < SCHED_MAX_STOP)
		stop[n_stop++] = en.tok.eos_id; /* the tokenizer's end of turn, as the server does */
	for (int i = 0; i < n_prompts; i++) {
		struct sched_submit s = {
			.prompt = prompts[i], .n_prompt = n_prompt[i], .max_tokens = max_tokens,
			.stop_ids = stop, .n_stop_ids = n_stop, .ignore_eos = ignore_eos,
			.samp = sp, .user = (uint64_t)i,
		};
		g.ids[i] = prompts[i] + n_prompt[i]; /* generated ids go after the prompt copy */
		if (n_prompt[i] + max_tokens > GEN_MAX_IDS) {
			fprintf(stderr, "tokenspeed: prompt %d + max_tokens exceeds %d ids\n", i, GEN_MAX_IDS);
			engine_stop(&en);
			return 2;
		}
		if (sched_submit(&en.s, &s, NULL, &e) < 0) {
			engine_stop(&en);
			return die("submit", &e);
		}
	}
	struct sched_events ev = {on_token, on_done, &g};
	uint64_t allocs = ts_alloc_count();
	while (g.done < n_prompts) {
		r = sched_step(&en.s, &ev);
		if (r < 0) {
			engine_stop(&en);
			fprintf(stderr, "tokenspeed: step failed: %s\n", ts_code_name(r));
			return 1;
		}
	}
	uint64_t step_allocs = ts_alloc_count() - allocs;
	for (int i = 0; i < n_prompts; i++) {
		printf("out[%d]:", i);
		for (int j = 0; j < g.n_ids[i]; j++)
			printf(" %d", g.ids[i][j]);
		printf(" finish=%s\n", req_finish_name(g.finish[i]));
		if (en.has_tok) { /* the generated text, as the server streams it */
			static char text[1 << 20];
			size_t n = tok_decode_gen(&en.tok, g.ids[i], g.n_ids[i], text, sizeof(text));
			printf("text[%d]: %.*s%s\n", i, (int)TS_MIN(n, sizeof(text) - 1), text,
			       n >= sizeof(text) ? " (cut)" : "");
		}
	}
	const struct sched_stats *st = &en.s.st;
	printf("prefill: %llu tokens in %.1f ms (%.1f tok/s); decode: %llu tokens in %.1f ms (%.1f tok/s); steps=%llu preemptions=%llu allocs_after_ready=%llu\n",
	       (unsigned long long)st->prefill_tokens, st->prefill_s * 1e3,
	       st->prefill_s > 0 ? (double)st->prefill_tokens / st->prefill_s : 0.0,
	       (unsigned long long)st->decode_tokens, st->decode_s * 1e3,
	       st->decode_s > 0 ? (double)st->decode_tokens / st->decode_s : 0.0, (unsigned long long)st->steps,
	       (unsigned long long)st->preemptions, (unsigned long long)step_allocs);
	engine_stop(&en);
	return 0;
}

/* ------------------------------------------------------------ serve */

#define SERVE_DRAIN_MS 30000

/* serve's last log line: its exit status and why. */
static int serve_exit(int status, const char *reason)
{
	log_msg(status ? LOG_ERROR : LOG_INFO, "serve: exit status=%d reason=\"%s\"", status, reason);
	return status;
}

static int serve_die(const char *what, const struct ts_err *e)
{
	char reason[128];
	die(what, e);
	snprintf(reason, sizeof(reason), "%s failed: %s", what, ts_code_name(-e->code));
	return serve_exit(1, reason);
}

/* Boots, serves until SIGTERM or SIGINT (read through a signalfd), then
 * drains: GOAWAY, live requests finish or end CANCELLED, clean exit. Logs
 * "drained" with the time it took, and its exit status and reason. */
static int cmd_serve(int argc, char **argv)
{
	struct ts_err e = {0};
	struct cfg cfg;
	static struct engine en;
	struct serve *sv;
	if (argc != 4 || strcmp(argv[2], "--config")) {
		usage(stderr);
		return 2;
	}
	cfg_defaults(&cfg);
	if (cfg_load(&cfg, argv[3], &e) < 0)
		return serve_die("config", &e);
	log_set_level((enum log_level)cfg.log.level);
	/* every byte TLS will use, before mbedTLS's first allocation */
	struct serve_opts so = {.max_conns = cfg.server.max_connections}; /* sizes the TLS pool too */
	char fb_note[PROTO_MAX_NAME + 1];
	const char *fb = getenv("TS_CONFIG_FALLBACK"); /* set by init (boot/init.c) when it runs last-good.ini */
	if (fb) {
		snprintf(fb_note, sizeof(fb_note), "CONFIG FALLBACK to the last good ini: %s", fb);
		so.note = fb_note;
		log_error("serve: running %s, the last configuration that reached ready: %s", argv[3], fb);
	}
	if (tls_mem_init(tls_mem_bytes_for(so.max_conns), TLS_MEM_SESSION_BYTES, so.max_conns, &e) < 0)
		return serve_die("tls pool", &e);
	struct tls_mem_stats pm;
	tls_mem_stats(&pm);
	log_msg(LOG_INFO, "stage=tls pool_kb=%zu sessions=%d per_session_kb=%u base_kb=%u", pm.arena_bytes >> 10,
		so.max_conns, TLS_MEM_SESSION_BYTES >> 10, TLS_MEM_BASE_BYTES >> 10);
	/* the TLS files before the weights: a bad one stops boot in milliseconds,
	 * not after loading the model (engine_boot checks the checkpoint and its
	 * tokenizer before any weight too) */
	char note[256];
	if (engine_check_server(&cfg, 1, note, sizeof(note), &e) < 0)
		return serve_die("server", &e);
	log_msg(LOG_INFO, "stage=tls_files note=\"%s\"", note);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: they inherit it */
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		fprintf(stderr, "tokenspeed: signalfd: %s\n", strerror(errno));
		return serve_exit(1, "signalfd failed");
	}
	if (engine_boot(&en, &cfg, &e) < 0)
		return serve_die("boot", &e);
	if (serve_start(&sv, &en, &so, &e) < 0) {
		engine_stop(&en);
		return serve_die("serve", &e);
	}
	printf("tokenspeed: serving on port %d\n", serve_port(sv));
	fflush(stdout);
	const char *rfd = getenv("TS_READY_FD"); /* init's ready pipe (boot/init.c) */
	if (rfd) {
		int fd = atoi(rfd);
		if (write(fd, "ready\n", 6) != 6)
			log_warn("serve: TS_READY_FD=%s: %s", rfd, strerror(errno));
		close(fd);
	}
	struct signalfd_siginfo si;
	while (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si) && errno == EINTR)
		;
	const char *sig = si.ssi_signo == SIGTERM ? "SIGTERM" : si.ssi_signo == SIGINT ? "SIGINT" : "signal";
	log_msg(LOG_INFO, "serve: signal %u (%s): draining, deadline_ms=%d", si.ssi_signo, sig, SERVE_DRAIN_MS);
	double t0 = ts_now();
	serve_drain(sv, SERVE_DRAIN_MS);
	serve_wait(sv);
	double ms = (ts_now() - t0) * 1e3;
	log_msg(LOG_INFO, "serve: drained ms=%.0f%s", ms,
		ms >= SERVE_DRAIN_MS ? " (deadline passed: requests still live were cancelled)" : "");
	close(sfd);
	engine_stop(&en);
	tls_mem_stats(&pm);
	log_msg(LOG_INFO, "serve: tls pool arena_kb=%zu carved_kb=%zu peak_kb=%zu live_kb=%zu allocs=%llu failed=%llu",
		pm.arena_bytes >> 10, pm.carved_bytes >> 10, pm.peak_bytes >> 10, pm.live_bytes >> 10,
		(unsigned long long)pm.allocs, (unsigned long long)pm.failed);
	char reason[64];
	snprintf(reason, sizeof(reason), "%s, drained", sig);
	return serve_exit(0, reason);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	struct ts_err e = {0};
	struct cfg cfg;

	if (getpid() == 1)
		init_pid1_main(argv); /* the image's /init: never returns */
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "generate"))
		return cmd_generate(argc, argv);
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc, argv);
	if (!strcmp(cmd, "init"))
		return init_cmd(argc, argv);
	if (!strcmp(cmd, "maintenance"))
		return init_maint_cmd(argc, argv);
	if (!strcmp(cmd, "certs"))
		return certs_cmd(argc, argv);
	if (!strcmp(cmd, "--check-config")) {
		if (argc != 3) {
			usage(stderr);
			return 2;
		}
		cfg_defaults(&cfg);
		if (cfg_load(&cfg, argv[2], &e) < 0)
			return die("config", &e);
		char note[1024], snote[256];
		log_set_level(LOG_WARN);
		if (engine_check_server(&cfg, 0, snote, sizeof(snote), &e) < 0)
			return die("server", &e);
		if (engine_check_model(&cfg, note, sizeof(note), &e) < 0)
			return die("model", &e);
		printf("%s: ok (%s; %s)\n", argv[2], note, snote);
		return 0;
	}
	if (!strcmp(cmd, "--print-config")) {
		cfg_defaults(&cfg);
		if (argc == 4 && !strcmp(argv[2], "--config")) {
			if (cfg_load(&cfg, argv[3], &e) < 0)
				return die("config", &e);
		} else if (argc != 2) {
			usage(stderr);
			return 2;
		}
		cfg_print(&cfg, stdout);
		return 0;
	}
	if (!strcmp(cmd, "--print-config-doc")) {
		cfg_print_doc(stdout);
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("tokenspeed %s\n", TS_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "tokenspeed: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
