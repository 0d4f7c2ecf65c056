/* e2e: the GPU backend end to end on every tiny checkpoint (device only).
 *
 * Against the HF float32 golden logits: teacher-forced prefill chunks and
 * decode steps within bf16 error at every position; greedy continuations
 * through the scheduler equal to HF's (= the CPU backend's) at every step
 * where HF's top-two margin exceeds twice the measured logit error (after a
 * legitimate divergence the sequences differ and comparison stops); no device
 * allocation after ready. Run from the repository root after make gpu-tests. */
#include <math.h>

#include "../golden.h"
#include "../t.h"
#include "../tutil.h"
#include "fwd.h"

static const char *const presets[] = {"llama2-mini", "llama3-mini", "mistral-mini", "qwen2-mini", "qwen3-mini"};

static double rel_err_abs(const float *a, const float *ref, int n, double *max_abs)
{
	double num = 0, den = 0;
	for (int i = 0; i < n; i++) {
		double d = (double)a[i] - (double)ref[i];
		num += d * d;
		den += (double)ref[i] * (double)ref[i];
		if (!(fabs(d) <= *max_abs))
			*max_abs = isnan(d) ? INFINITY : fabs(d);
	}
	return sqrt(num / (den > 0 ? den : 1));
}

struct cap {
	int32_t toks[64];
	int n, done;
};

static int on_tok(void *ctx, const struct req *r, int32_t t)
{
	struct cap *c = ctx;
	if (c->n < 64)
		c->toks[c->n++] = t;
	return 0;
}

static void on_done(void *ctx, const struct req *r)
{
	((struct cap *)ctx)->done = 1;
}

static void check(const char *preset)
{
	char path[256];
	struct golden g;
	struct ts_err e = {0};
	struct cfg c;
	static struct engine en;

	snprintf(path, sizeof(path), "tests/data/golden/%s.bin", preset);
	T_CHECK(golden_load(&g, path, &e) == 0, "%s", e.msg);
	const char *dir = t_ckpt(preset);
	t_cfg(&c, dir);
	c.device.backend = CFG_BACKEND_GPU;
	c.engine.max_running = 16;
	if (engine_boot(&en, &c, &e) < 0) {
		T_CHECK(0, "%s: boot on the gpu: %s", preset, e.msg);
		golden_free(&g);
		return;
	}
	T_CHECK(en.be.ops == &gpu_backend_ops, "%s: not on the gpu backend", preset);
	uint64_t allocs0 = fwd_device_allocs(&en.be);
	const int V = en.m.d.vocab;
	float *lg = ts_alloc((size_t)V * 16 * sizeof(float));
	double worst = 0, max_abs = 0;
	int steps_cmp = 0, steps_same = 0, diverged_ok = 0;

	for (uint32_t p = 0; p < g.n_prompts; p++) {
		const struct golden_prompt *gp = &g.prompts[p];
		int n = (int)(gp->n_prompt + gp->n_gen);
		int32_t toks[128], pos[128], seq[128] = {0}, rows[16];
		for (int i = 0; i < n; i++) {
			toks[i] = i < (int)gp->n_prompt ? gp->prompt[i] : gp->gen[i - gp->n_prompt];
			pos[i] = i;
		}
		T_CHECK(kv_seq_reserve(&en.s.kv, 0, n) == 0, "kv");
		struct batch_seq bs = {kv_seq_table(&en.s.kv, 0), kv_seq_blocks(&en.s.kv, 0), -1};
		for (int done = 0; done < (int)gp->n_prompt;) { /* prefill chunks of 8 */
			int k = TS_MIN((int)gp->n_prompt - done, 8);
			for (int i = 0; i < k; i++)
				rows[i] = i;
			struct batch b = {k, toks + done, pos + done, seq, 1, &bs, k, rows};
			T_CHECK(en.be.ops->forward(&en.be, &b, lg) == 0, "%s: forward", preset);
			for (int i = 0; i < k; i++)
				worst = fmax(worst, rel_err_abs(lg + (size_t)i * V, gp->logits + (size_t)(done + i) * V, V, &max_abs));
			done += k;
		}
		for (int i = (int)gp->n_prompt; i < n; i++) { /* decode steps */
			int32_t row = 0;
			struct batch b = {1, toks + i, pos + i, seq, 1, &bs, 1, &row};
			T_CHECK(en.be.ops->forward(&en.be, &b, lg) == 0, "%s: decode", preset);
			worst = fmax(worst, rel_err_abs(lg, gp->logits + (size_t)i * V, V, &max_abs));
		}
		kv_seq_release(&en.s.kv, 0);

		struct cap cp = {0};
		struct sched_events ev = {on_tok, on_done, &cp};
		struct sched_submit sub = {.prompt = gp->prompt, .n_prompt = (int)gp->n_prompt, .max_tokens = (int)gp->n_gen,
					   .ignore_eos = 1};
		samp_params_default(&sub.samp);
		T_CHECK(sched_submit(&en.s, &sub, NULL, &e) == 0, "submit: %s", e.msg);
		for (int guard = 0; !cp.done && guard < 10000; guard++)
			T_CHECK(sched_step(&en.s, &ev) >= 0, "step");
		double tol = 2 * max_abs;
		for (int k = 0; k < cp.n && k < (int)gp->n_gen; k++) {
			steps_cmp++;
			if (cp.toks[k] == gp->gen[k]) {
				steps_same++;
				continue;
			}
			T_CHECK(gp->margin[k] < tol, "%s prompt %u: greedy token %d differs from HF where HF's margin %.4f exceeds the bf16 error bound %.4f",
				preset, p, k, gp->margin[k], tol);
			diverged_ok++;
			break;
		}
	}
	T_CHECK(worst < 2e-2, "%s: logits rel err %.3g >= 2e-2", preset, worst);
	T_CHECK(fwd_device_allocs(&en.be) == allocs0 && allocs0 == 1, "%s: %llu device allocations (want 1, at boot)", preset,
		(unsigned long long)fwd_device_allocs(&en.be));
	printf("| %-12s | %.2e | %.3f | %d/%d | %d |\n", preset, worst, max_abs, steps_same, steps_cmp, diverged_ok);
	ts_free(lg);
	engine_stop(&en);
	golden_free(&g);
}

int main(void)
{
	printf("| checkpoint | max rel err (bound 2e-2) | max abs err | greedy steps equal | legit divergences |\n|---|---|---|---|---|\n");
	for (size_t i = 0; i < TS_ARRAY_LEN(presets); i++)
		check(presets[i]);
	return T_DONE();
}
