/* bench: decode speed of the GPU backend on a real-size checkpoint, next to
 * the floors measured in the same run (device only).
 *
 *   build/gpu/bench CKPT_DIR [max_ctx] [quick | b1]
 *
 * 1. The copy floor: device-to-device copy of 4 GiB, bytes read + written.
 * 2. Boot: engine_boot from the checkpoint (page cache) to ready.
 * 3. Decode: for batch B in 1, 8, 32, 64 and context C in 512, 4096: B
 *    requests with (C - 36)-token prompts are prefilled, then 32 decode
 *    steps are timed, at contexts C - 33 ... C. Each step must read every weight (model_step_bytes) and the KV of
 *    every sequence (B * C * kv bytes per token): the floor of a step is
 *    those bytes over the copy bandwidth. */
#include <math.h>
#include <stdlib.h>

#include "../t.h"
#include "../tutil.h"
#include "fwd.h"
#include "gpu.h"

static int n_done;
static int on_tok(void *ctx, const struct req *r, int32_t t)
{
	return 0;
}
static void on_done(void *ctx, const struct req *r)
{
	n_done++;
}

static double copy_floor_gbps(void)
{
	struct gpu g;
	struct ts_err e = {0};
	const uint64_t n = 4ull << 30;
	float best = 1e30f, ms;
	if (gpu_open(&g, 0, &e) < 0 || gpu_arena_init(&g, 2 * n + 4096, &e) < 0) {
		fprintf(stderr, "copy floor: %s\n", e.msg);
		return 0;
	}
	gpu_ptr a = gpu_arena_take(&g, n), b = gpu_arena_take(&g, n);
	gpu_memset32(&g, a, 0x3f800000u, n / 4); /* ones, not zeros */
	for (int i = 0; i < 6; i++) {
		gpu_time_begin(&g);
		gpu_d2d(&g, b, a, n);
		if (gpu_time_end(&g, &ms) == 0 && i > 0 && ms < best)
			best = ms;
	}
	gpu_close(&g);
	return 2.0 * (double)n / (best * 1e-3) / 1e9;
}

int main(int argc, char **argv)
{
	static struct engine en;
	struct cfg c;
	struct ts_err e = {0};
	const char *dir = argc > 1 ? argv[1] : "/tmp/llama31-8b";
	int max_ctx = argc > 2 ? atoi(argv[2]) : 4096;
	int quick = argc > 3 && !strcmp(argv[3], "quick"); /* context 512, batches 1, 8, 64: for A/B runs */
	int b1 = argc > 3 && !strcmp(argv[3], "b1");        /* batch 1 at every context: for A/B runs */
	static const int batches[] = {1, 8, 32, 64}, ctxs[] = {512, 4096};

	double floor_gbps = copy_floor_gbps();
	printf("copy floor: %.0f GB/s (device-to-device 4 GiB, read + write, best of 5)\n", floor_gbps);

	t_cfg(&c, dir);
	c.device.backend = CFG_BACKEND_GPU;
	c.engine.max_seq_len = max_ctx;
	c.engine.max_running = 64;
	c.engine.max_batch_tokens = 8192;
	c.engine.kv_tokens = 0;
	c.engine.kv_mem_fraction = 0.9;
	c.engine.max_queue = 64;
	c.log.level = LOG_INFO;
	double t0 = ts_now();
	if (engine_boot(&en, &c, &e) < 0) {
		fprintf(stderr, "boot: %s\n", e.msg);
		return 1;
	}
	double boot_s = ts_now() - t0;
	const uint64_t wbytes = model_step_bytes(&en.m);
	const uint64_t kv_tok = en.be.ops->kv_bytes_per_token(&en.m);
	printf("boot: %.2f s to ready (weights %.2f GB, kv pool %lld tokens)\n", boot_s, (double)en.m.weight_bytes / 1e9,
	       (long long)en.kv_tokens);
	printf("| batch | context | step ms | tok/s | weights+KV GB/step | GB/s | floor ms | of floor |\n|---|---|---|---|---|---|---|---|\n");

	struct sched_events ev = {on_tok, on_done, NULL};
	int32_t *prompt = ts_alloc((size_t)max_ctx * 4);
	uint64_t x = 12345;
	for (size_t ci = 0; ci < 2; ci++) {
		int C = ctxs[ci];
		if (C > max_ctx)
			continue;
		for (size_t bi = 0; bi < 4; bi++) {
			int B = batches[bi];
			if ((quick && (C != 512 || B == 32)) || (b1 && B != 1))
				continue;
			const int P = C - 36; /* prompt: the timed steps end near context C */
			if ((int64_t)B * C > en.kv_tokens) {
				printf("| %d | %d | (KV pool too small) |\n", B, C);
				continue;
			}
			n_done = 0;
			for (int i = 0; i < B; i++) {
				for (int j = 0; j < P; j++) {
					x = x * 6364136223846793005ull + 1442695040888963407ull;
					prompt[j] = (int32_t)(x >> 33) % en.m.d.vocab;
				}
				struct sched_submit s = {.prompt = prompt, .n_prompt = P, .max_tokens = 36, .ignore_eos = 1};
				samp_params_default(&s.samp);
				if (sched_submit(&en.s, &s, NULL, &e) < 0) {
					fprintf(stderr, "submit: %s\n", e.msg);
					return 1;
				}
			}
			/* prefill until every request decodes, plus 3 warm-up decode steps */
			double tp = ts_now();
			int warm = 0;
			while (warm < 3) {
				sched_step(&en.s, &ev);
				int all = en.s.n_running == B;
				for (int i = 0; all && i < en.s.n_running; i++)
					all = en.s.reqs[en.s.running[i]].state == REQ_DECODE;
				warm += all;
			}
			double prefill_s = ts_now() - tp;
			const int N = 32;
			double t1 = ts_now();
			for (int i = 0; i < N; i++)
				sched_step(&en.s, &ev);
			double dt = (ts_now() - t1) / N;
			while (n_done < B)
				sched_step(&en.s, &ev);
			double bytes = (double)wbytes + (double)B * (C - 16) * (double)kv_tok; /* mean context of the timed steps */
			double floor_ms = bytes / (floor_gbps * 1e9) * 1e3;
			printf("| %d | %d | %.3f | %.1f | %.2f | %.0f | %.3f | %.0f%% |  (prefill %d x %d: %.1f s)\n", B, C, dt * 1e3,
			       B / dt, bytes / 1e9, bytes / dt / 1e9, floor_ms, floor_ms / (dt * 1e3) * 100, B, P, prefill_s);
			fflush(stdout);
		}
	}
	printf("device allocations after ready: %llu (1 = the boot arena)\n", (unsigned long long)fwd_device_allocs(&en.be));
	engine_stop(&en);
	return 0;
}
