/* kutil.h: what the device kernel tests share: the floors measured on the
 * card they were tuned on, the copy floor measured again in the run that
 * prints against it (copy_floor_now, when gpu.h is included first), and the
 * input generator (splitmix64; each test program keeps its own state, so its
 * inputs do not depend on the others). */
#ifndef TS_KUTIL_H
#define TS_KUTIL_H

#include <stdint.h>

#define COPY_FLOOR_GBS 3027.0 /* H100 device-to-device copy, read + write, measured 2026-11-27 */
#define GEMV_FLOOR_GBS 2742.0 /* H100 cuBLAS bf16 GEMV batch 1, 14336 x 4096, measured 2026-11-27 */
#define GEMM_FLOOR_TFS 798.0  /* H100 cuBLAS bf16 GEMM 8192^3, measured 2026-11-27 */

static uint64_t rng_s = 0x243f6a8885a308d3ull;

static inline uint64_t rng_next(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#ifdef TS_GPU_H
/* The copy floor of this card, now: GB/s (bytes read plus written) of a
 * device-to-device copy of `bytes` from a to b, the median of 7 after one
 * warm-up; 0 on a failure. Take a and b of 256 MiB or more, so L2 does not
 * hold them. */
static inline double copy_floor_now(struct gpu *g, gpu_ptr a, gpu_ptr b, size_t bytes)
{
	float ms[7];
	if (gpu_d2d(g, b, a, bytes) || gpu_sync(g))
		return 0;
	for (int i = 0; i < 7; i++)
		if (gpu_time_begin(g) || gpu_d2d(g, b, a, bytes) || gpu_time_end(g, &ms[i]) || !(ms[i] > 0))
			return 0;
	for (int i = 1; i < 7; i++) /* insertion sort: seven values */
		for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
			float x = ms[j];
			ms[j] = ms[j - 1];
			ms[j - 1] = x;
		}
	return 2.0 * (double)bytes / (ms[3] * 1e-3) / 1e9;
}
#endif

#ifdef KTEST
/* What k_attn and k_moe share (each defines KTEST, its name for messages,
 * before including this after gpu.h): ok(), a bump allocator over one region
 * of the arena (reset dv_off between cases), and the median time of a CUDA
 * graph's replays. */
#include <stdio.h>
#include <stdlib.h>

static int ok(int rc, const char *what)
{
	if (rc)
		fprintf(stderr, KTEST ": %s failed: %s\n", what, ts_code_name(rc));
	return rc == 0;
}

static gpu_ptr dv_base;
static uint64_t dv_off, dv_cap;

static gpu_ptr dv_take(uint64_t bytes)
{
	uint64_t at = (dv_off + 255) & ~(uint64_t)255;
	if (at + bytes > dv_cap) {
		fprintf(stderr, KTEST ": test region of %llu bytes spent\n", (unsigned long long)dv_cap);
		exit(1);
	}
	dv_off = at + bytes;
	return dv_base + at;
}

static int cmp_float(const void *x, const void *y)
{
	float a = *(const float *)x, b = *(const float *)y;
	return a < b ? -1 : a > b;
}

/* Median ms of one replay of graph x over reps (at most 16) timed replays,
 * after two untimed ones; -1 on a failure. */
static float time_graph(struct gpu *g, gpu_graph x, int reps)
{
	float ms[16];
	reps = reps > 16 ? 16 : reps;
	for (int i = 0; i < 2; i++)
		if (!ok(gpu_graph_launch(g, x), "graph launch"))
			return -1;
	for (int i = 0; i < reps; i++)
		if (!ok(gpu_time_begin(g), "time") || !ok(gpu_graph_launch(g, x), "graph launch") ||
		    !ok(gpu_time_end(g, &ms[i]), "time"))
			return -1;
	qsort(ms, (size_t)reps, sizeof(float), cmp_float);
	return ms[reps / 2];
}
#endif

#endif
