/* bench_sched: the engine thread's own CPU time per step, without a backend.
 *
 *   build/tests/bench_sched [running]      (make bench)
 *
 * A null backend "forwards" instantly and returns a token per row, so what is
 * timed (CLOCK_THREAD_CPUTIME_ID around sched_step) is the scheduler alone:
 * walking the running set, KV block bookkeeping, batch layout, the FSM,
 * events. The goal: 50 us or less per step at 256 running requests. */
#include <stdlib.h>
#include <time.h>

#include "t.h"
#include "tutil.h"

static int null_forward_sample(struct backend *b, const struct batch *bt, const struct backend_samp_row *rows,
			       int32_t *tokens)
{
	for (int i = 0; i < bt->n_logits; i++)
		tokens[i] = (int32_t)((rows[i].pos * 7u + (uint64_t)i) % (uint64_t)b->m->d.vocab);
	return 0;
}

static int null_forward(struct backend *b, const struct batch *bt, float *logits)
{
	return -E_UNSUPPORTED;
}

static const struct backend_ops null_ops = {.name = "null", .forward = null_forward,
					    .forward_sample = null_forward_sample};

static uint64_t n_tok;
static int on_tok(void *ctx, const struct req *r, int32_t t)
{
	n_tok++;
	return 0;
}

static double thread_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static struct engine en;
	static double us[4096];
	struct cfg c;
	struct ts_err e = {0};
	const int R = argc > 1 ? atoi(argv[1]) : 256, P = 64, STEPS = 400;
	const char *dir = t_ckpt("llama3-mini");

	t_cfg(&c, dir);
	c.engine.max_running = R;
	c.engine.max_seq_len = 1024;
	c.engine.max_batch_tokens = 2048;
	c.engine.kv_tokens = (int64_t)R * 1024;
	c.engine.max_queue = R;
	c.device.cpu_threads = 1;
	if (engine_boot(&en, &c, &e) < 0) {
		fprintf(stderr, "boot: %s\n", e.msg);
		return 1;
	}
	struct backend nb = {.ops = &null_ops, .m = &en.m};
	en.s.be = &nb;
	int32_t prompt[64];
	for (int i = 0; i < R; i++) {
		for (int j = 0; j < P; j++)
			prompt[j] = 3 + (i * 131 + j * 17) % 600; /* distinct prompts: no prefix hits */
		struct sched_submit s = {.prompt = prompt, .n_prompt = P, .max_tokens = 900, .ignore_eos = 1};
		samp_params_default(&s.samp);
		if (sched_submit(&en.s, &s, NULL, &e) < 0) {
			fprintf(stderr, "submit: %s\n", e.msg);
			return 1;
		}
	}
	struct sched_events ev = {on_tok, NULL, NULL};
	while (en.s.n_queue > 0 || en.s.n_running < R) /* prefill everyone */
		sched_step(&en.s, &ev);
	for (int i = 0; i < 20; i++) /* warm */
		sched_step(&en.s, &ev);
	uint64_t allocs = ts_alloc_count();
	for (int i = 0; i < STEPS; i++) {
		double t0 = thread_us();
		int n = sched_step(&en.s, &ev);
		us[i] = thread_us() - t0;
		if (n != R) {
			fprintf(stderr, "step %d forwarded %d tokens, want %d\n", i, n, R);
			return 1;
		}
	}
	qsort(us, STEPS, sizeof(double), cmp_d);
	printf("engine step CPU time, null backend, %d running (decode): median %.1f us, p90 %.1f us, p99 %.1f us "
	       "(goal <= 50 us at 256); %.2f us per running request; allocations during steps: %llu\n",
	       R, us[STEPS / 2], us[STEPS * 9 / 10], us[STEPS * 99 / 100], us[STEPS / 2] / R,
	       (unsigned long long)(ts_alloc_count() - allocs));
	en.s.be = &en.be;
	engine_stop(&en);
	return 0;
}
