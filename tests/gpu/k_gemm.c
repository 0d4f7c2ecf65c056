/* k_gemm: device test and benchmark of the bf16 GEMM kernels (kernels/gemm.cu)
 * through their launcher (src/gpu_gemm.c) and the driver API (src/gpu.h).
 *
 * Checks, for many shapes (T 1..1024 with odd tails, K multiples of 8 from 8
 * to 14336, O from 1 with odd tails), every mode, with and without bias, with
 * and without split-K, ldy with and without padding: fresh random x, w, bias
 * for every case (SILU_MUL: separate gate and up matrices put together by
 * gemm_interleave_gate_up / gemm_interleave_bias), y poisoned with a NaN
 * pattern (random in ADD mode), one run, then against a float64 CPU reference
 * from the same bf16 values: ||y - ref|| / ||ref|| under 1e-4 for f32 outputs
 * and 1e-2 for bf16 ones, no NaN, every element written, the ldy padding
 * untouched, and a second run bitwise equal. Host-only: the workspace bound
 * against gemm_plan. Then times the Llama-8B shapes at T = 1, 8, 32, 64 and
 * 4096 (CUDA graph replays rotating over >= 3 weight buffers, > 150 MB in
 * all, so L2 does not hold them; median of 25), after a sampled check of each.
 *
 * Usage: k_gemm [--quick] [--no-bench]. Last line "# k_gemm: pass=N fail=M".
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../t.h"
#include "gpu.h"
#include "kutil.h"
#include "gpu_gemm.h"


static struct gpu gg;

/* ------------------------------------------------------------ helpers */

static float rng_sym(void) /* uniform in [-1, 1) */
{
	return (float)((double)(rng_next() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

static void fill_bf16(uint16_t *p, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		p[i] = ts_f32_to_bf16(rng_sym() * scale);
}

static int ok(int rc, const char *what)
{
	if (rc)
		fprintf(stderr, "k_gemm: %s failed: %s\n", what, ts_code_name(rc));
	return rc == 0;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "k_gemm: out of host memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

static const char *mode_name(int m)
{
	static const char *n[] = {"STORE_F32", "ADD_F32", "STORE_BF16", "SILU_BF16"};
	return n[m];
}

/* Device regions, carved once from the arena. */
static gpu_ptr d_x, d_w, d_bias, d_y, d_ws;
static uint64_t ws_bytes, w_region;

/* ------------------------------------------------------------ reference */

/* acc[t][o] = sum_k x[t][k] w[o][k] (+ bias[o]) in float64, rows split
 * among threads. */
struct ref_job {
	const uint16_t *x, *w;
	const float *bias;
	double *acc;
	int T, K, O, t0, t1;
};

static void *ref_rows(void *arg)
{
	struct ref_job *j = arg;
	double *xr = xmalloc(sizeof(double) * (size_t)j->K);
	for (int t = j->t0; t < j->t1; t++) {
		for (int k = 0; k < j->K; k++)
			xr[k] = ts_bf16_to_f32(j->x[(size_t)t * j->K + k]);
		for (int o = 0; o < j->O; o++) {
			const uint16_t *wr = j->w + (size_t)o * j->K;
			double s = 0;
			for (int k = 0; k < j->K; k++)
				s += xr[k] * ts_bf16_to_f32(wr[k]);
			j->acc[(size_t)t * j->O + o] = s + (j->bias ? j->bias[o] : 0.0);
		}
	}
	free(xr);
	return NULL;
}

static void reference(const uint16_t *x, const uint16_t *w, const float *bias, double *acc, int T, int K, int O)
{
	enum { MAXTH = 64 };
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int nth = (int)(n < 1 ? 1 : n > MAXTH ? MAXTH : n);
	if (nth > T)
		nth = T;
	pthread_t th[MAXTH];
	struct ref_job jobs[MAXTH];
	for (int i = 0; i < nth; i++) {
		jobs[i] = (struct ref_job){x, w, bias, acc, T, K, O, T * i / nth, T * (i + 1) / nth};
		if (pthread_create(&th[i], NULL, ref_rows, &jobs[i]))
			ref_rows(&jobs[i]), th[i] = 0;
	}
	for (int i = 0; i < nth; i++)
		if (th[i])
			pthread_join(th[i], NULL);
}

/* ------------------------------------------------------------ one case */

static double worst[4];

/* SILU_MUL: gate and up are drawn separately, (O/2, K) each, and
 * interleaved by gemm_interleave_gate_up; the reference uses them directly. */
static void run_case(int T, int K, int O, int mode, int with_bias, int pad, int seed)
{
	rng_s = 0x9e3779b97f4a7c15ull * (uint64_t)(seed + 7);
	const int silu = mode == KG_SILU_MUL_BF16, f32 = mode == KG_STORE_F32 || mode == KG_ADD_F32;
	const int n_out = silu ? O / 2 : O, ldy = n_out + pad, esz = f32 ? 4 : 2;
	const size_t ny = (size_t)T * ldy;
	uint16_t *x = xmalloc((size_t)T * K * 2), *w = xmalloc((size_t)O * K * 2), *wdev = w;
	float *bias = xmalloc((size_t)O * 4), *bdev = bias;
	unsigned char *y0 = xmalloc(ny * esz), *y1 = xmalloc(ny * esz), *y2 = xmalloc(ny * esz);
	double *acc = xmalloc(sizeof(double) * (size_t)T * O);
	fill_bf16(x, (size_t)T * K, 1.0f);
	fill_bf16(w, (size_t)O * K, 2.0f / sqrtf((float)K));
	for (int o = 0; o < O; o++)
		bias[o] = rng_sym();
	if (silu) { /* w, bias = gate rows then up rows; the device gets them interleaved */
		wdev = xmalloc((size_t)O * K * 2);
		bdev = xmalloc((size_t)O * 4);
		gemm_interleave_gate_up(wdev, w, w + (size_t)(O / 2) * K, O / 2, K);
		gemm_interleave_bias(bdev, bias, bias + O / 2, O / 2);
	}
	for (size_t i = 0; i < ny; i++) {
		if (mode == KG_ADD_F32) {
			float v = rng_sym();
			memcpy(y0 + 4 * i, &v, 4);
		} else if (f32) {
			uint32_t v = 0x7fc00000u | (uint32_t)(seed & 0xffff) | (uint32_t)(i & 0xff) << 14;
			memcpy(y0 + 4 * i, &v, 4);
		} else {
			uint16_t v = (uint16_t)(0x7fc1u + (seed & 0x3f));
			memcpy(y0 + 2 * i, &v, 2);
		}
	}
	int good = ok(gpu_h2d(&gg, d_x, x, (size_t)T * K * 2), "h2d x") &&
	           ok(gpu_h2d(&gg, d_w, wdev, (size_t)O * K * 2), "h2d w") &&
	           ok(gpu_h2d(&gg, d_bias, bdev, (size_t)O * 4), "h2d bias") &&
	           ok(gpu_h2d(&gg, d_y, y0, ny * esz), "h2d y");
	struct k_gemm a;
	memset(&a, 0, sizeof a);
	a.x = (const ts_bf16 *)(uintptr_t)d_x;
	a.w = (const ts_bf16 *)(uintptr_t)d_w;
	a.bias = with_bias ? (const float *)(uintptr_t)d_bias : NULL;
	a.y = (void *)(uintptr_t)d_y;
	a.T = T;
	a.K = K;
	a.O = O;
	a.ldy = ldy;
	a.mode = mode;
	struct gemm_plan p;
	gemm_plan(T, K, O, gg.info.n_sm, &p);
	T_CHECK(p.partial_bytes <= ws_bytes, "T=%d K=%d O=%d: plan needs %llu bytes of workspace, have %llu", T, K, O,
	        (unsigned long long)p.partial_bytes, (unsigned long long)ws_bytes);
	good = good && ok(gemm_run(&gg, &a, d_ws), "gemm_run") && ok(gpu_sync(&gg), "sync") &&
	       ok(gpu_d2h(&gg, y1, d_y, ny * esz), "d2h") && ok(gpu_sync(&gg), "sync");
	if (good && mode != KG_ADD_F32) { /* again: bitwise the same */
		good = ok(gemm_run(&gg, &a, d_ws), "gemm_run") && ok(gpu_d2h(&gg, y2, d_y, ny * esz), "d2h") &&
		       ok(gpu_sync(&gg), "sync");
		T_CHECK(good && !memcmp(y1, y2, ny * esz), "T=%d K=%d O=%d %s: second run differs", T, K, O,
		        mode_name(mode));
	}
	T_CHECK(good, "T=%d K=%d O=%d %s: device calls failed", T, K, O, mode_name(mode));
	if (good) {
		reference(x, w, with_bias ? bias : NULL, acc, T, K, O);
		double num = 0, den = 0;
		long bad = 0, pad_bad = 0;
		for (int t = 0; t < T; t++)
			for (int j = 0; j < ldy; j++) {
				size_t i = (size_t)t * ldy + j;
				if (j >= n_out) {
					pad_bad += memcmp(y1 + i * esz, y0 + i * esz, esz) != 0;
					continue;
				}
				double ref, got;
				if (silu) {
					double g = acc[(size_t)t * O + j], u = acc[(size_t)t * O + O / 2 + j];
					ref = g / (1.0 + exp(-g)) * u;
				} else {
					ref = acc[(size_t)t * O + j];
					if (mode == KG_ADD_F32) {
						float v;
						memcpy(&v, y0 + 4 * i, 4);
						ref += v;
					}
				}
				if (f32) {
					float v;
					memcpy(&v, y1 + 4 * i, 4);
					got = v;
				} else {
					uint16_t h;
					memcpy(&h, y1 + 2 * i, 2);
					got = ts_bf16_to_f32(h);
				}
				if (!isfinite(got))
					bad++;
				else
					num += (got - ref) * (got - ref);
				den += ref * ref;
			}
		double rel = sqrt(num / (den > 0 ? den : 1));
		if (rel > worst[mode])
			worst[mode] = rel;
		printf("check T=%4d K=%5d O=%6d %-10s bias=%d pad=%d split=%2d rel %.2e\n", T, K, O, mode_name(mode),
		       with_bias, pad, p.split_k, rel);
		T_CHECK(bad == 0 && pad_bad == 0 && rel < (f32 ? 1e-4 : 1e-2),
		        "T=%d K=%d O=%d %s bias=%d pad=%d split=%d: rel %.3g, %ld non-finite, %ld padding overwritten",
		        T, K, O, mode_name(mode), with_bias, pad, p.split_k, rel, bad, pad_bad);
	}
	if (silu) {
		free(wdev);
		free(bdev);
	}
	free(x);
	free(w);
	free(bias);
	free(y0);
	free(y1);
	free(y2);
	free(acc);
}

/* ------------------------------------------------------------ bench */

struct shape {
	const char *name;
	int K, O, mode; /* the mode the engine uses there */
};

static const struct shape shapes[] = {
    {"qkv", 4096, 6144, KG_STORE_F32},          {"o_proj", 4096, 4096, KG_ADD_F32},
    {"gate_up", 4096, 28672, KG_SILU_MUL_BF16}, {"down", 14336, 4096, KG_ADD_F32},
    {"lm_head", 4096, 128256, KG_STORE_F32},
};
#define BENCH_MAX_T 4096

/* 48 sampled outputs of shape s at T (STORE_F32, or SILU_MUL for gate_up)
 * against float64 dots of the device's own inputs. */
static void sample_check(const struct shape *s, int T, gpu_ptr w)
{
	const int silu = s->mode == KG_SILU_MUL_BF16, n_out = silu ? s->O / 2 : s->O;
	struct k_gemm a;
	memset(&a, 0, sizeof a);
	a.x = (const ts_bf16 *)(uintptr_t)d_x;
	a.w = (const ts_bf16 *)(uintptr_t)w;
	a.y = (void *)(uintptr_t)d_y;
	a.T = T;
	a.K = s->K;
	a.O = s->O;
	a.ldy = n_out;
	a.mode = silu ? KG_SILU_MUL_BF16 : KG_STORE_F32;
	int good = ok(gpu_memset32(&gg, d_y, 0x7fc00bad, (size_t)T * n_out), "memset") &&
	           ok(gemm_run(&gg, &a, d_ws), "gemm_run") && ok(gpu_sync(&gg), "sync");
	uint16_t *xr = xmalloc((size_t)s->K * 2), *wr = xmalloc((size_t)s->K * 2), *ur = xmalloc((size_t)s->K * 2);
	double num = 0, den = 0;
	int bad = 0;
	for (int i = 0; good && i < 48; i++) {
		int t = i == 1 ? T - 1 : (int)(rng_next() % (uint64_t)T);
		int j = i == 0 ? n_out - 1 : (int)(rng_next() % (uint64_t)n_out);
		int og = silu ? (j / 8) * 16 + j % 8 : j;
		double g = 0, u = 0, ref, got;
		good = ok(gpu_d2h(&gg, xr, d_x + (gpu_ptr)t * s->K * 2, (size_t)s->K * 2), "d2h") &&
		       ok(gpu_d2h(&gg, wr, w + (gpu_ptr)og * s->K * 2, (size_t)s->K * 2), "d2h") &&
		       (!silu || ok(gpu_d2h(&gg, ur, w + (gpu_ptr)(og + 8) * s->K * 2, (size_t)s->K * 2), "d2h"));
		if (silu) {
			uint16_t h = 0;
			good = good && ok(gpu_d2h(&gg, &h, d_y + ((gpu_ptr)t * n_out + j) * 2, 2), "d2h");
			good = good && ok(gpu_sync(&gg), "sync");
			got = ts_bf16_to_f32(h);
		} else {
			float f = 0;
			good = good && ok(gpu_d2h(&gg, &f, d_y + ((gpu_ptr)t * n_out + j) * 4, 4), "d2h");
			good = good && ok(gpu_sync(&gg), "sync");
			got = f;
		}
		for (int k = 0; k < s->K; k++) {
			g += (double)ts_bf16_to_f32(xr[k]) * ts_bf16_to_f32(wr[k]);
			if (silu)
				u += (double)ts_bf16_to_f32(xr[k]) * ts_bf16_to_f32(ur[k]);
		}
		ref = silu ? g / (1.0 + exp(-g)) * u : g;
		if (!isfinite(got))
			bad++;
		else
			num += (got - ref) * (got - ref);
		den += ref * ref;
	}
	double rel = sqrt(num / (den > 0 ? den : 1));
	T_CHECK(good && bad == 0 && rel < (silu ? 1e-2 : 1e-4), "%s T=%d sampled outputs: rel %.3g, %d non-finite",
	        s->name, T, rel, bad);
	free(xr);
	free(wr);
	free(ur);
}

/* Median per-call time (seconds) of graph replays of n_per calls rotating
 * over the weight buffers. */
static double time_shape(const struct shape *s, int T, int nbuf, uint64_t wstride)
{
	struct k_gemm a;
	memset(&a, 0, sizeof a);
	a.x = (const ts_bf16 *)(uintptr_t)d_x;
	a.y = (void *)(uintptr_t)d_y;
	a.T = T;
	a.K = s->K;
	a.O = s->O;
	a.ldy = s->mode == KG_SILU_MUL_BF16 ? s->O / 2 : s->O;
	a.mode = s->mode;
	double flops = 2.0 * T * (double)s->K * s->O;
	int n_per = (int)(2e-3 / (flops / 400e12 + 5e-6));
	n_per = n_per > 20 ? 20 : n_per < nbuf ? nbuf : n_per;
	int good = 1;
	for (int i = 0; i < 2 && good; i++) { /* warm-up */
		a.w = (const ts_bf16 *)(uintptr_t)(d_w + (gpu_ptr)(i % nbuf) * wstride);
		good = ok(gemm_run(&gg, &a, d_ws), "gemm_run");
	}
	good = good && ok(gpu_sync(&gg), "sync");
	gpu_graph gx = NULL;
	good = good && ok(gpu_capture_begin(&gg), "capture");
	for (int i = 0; i < n_per && good; i++) {
		a.w = (const ts_bf16 *)(uintptr_t)(d_w + (gpu_ptr)(i % nbuf) * wstride);
		good = ok(gemm_run(&gg, &a, d_ws), "gemm_run");
	}
	good = ok(gpu_capture_end(&gg, &gx), "capture end") && good;
	float ms[25];
	int n = 0;
	good = good && ok(gpu_graph_launch(&gg, gx), "graph");
	for (int r = 0; r < 25 && good; r++) {
		float m = 0;
		good = ok(gpu_time_begin(&gg), "time") && ok(gpu_graph_launch(&gg, gx), "graph") &&
		       ok(gpu_time_end(&gg, &m), "time");
		ms[n++] = m / (float)n_per;
	}
	gpu_graph_free(&gg, gx);
	T_CHECK(good && n == 25, "%s T=%d: timing failed", s->name, T);
	for (int i = 1; i < n; i++) /* insertion sort */
		for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
			float v = ms[j];
			ms[j] = ms[j - 1];
			ms[j - 1] = v;
		}
	return n ? ms[n / 2] * 1e-3 : 0;
}

static void bench(void)
{
	static const int Ts[] = {1, 8, 32, 64, BENCH_MAX_T};
	char lines[32][200];
	int nl = 0;
	/* One host copy of random weights (the largest shape), uploaded into
	 * every buffer: the rotation defeats L2, the values need not differ. */
	uint64_t max_w = 0;
	for (size_t i = 0; i < TS_ARRAY_LEN(shapes); i++)
		max_w = TS_MAX(max_w, (uint64_t)shapes[i].K * shapes[i].O * 2);
	uint16_t *hw = xmalloc(max_w);
	uint16_t *hx = xmalloc((size_t)BENCH_MAX_T * 14336 * 2);
	const size_t fb = (size_t)(w_region / 2 / 256 * 256);
	const double floor_gbs = copy_floor_now(&gg, d_w, d_w + (gpu_ptr)fb, fb);
	T_CHECK(floor_gbs > 0, "copy floor: the copy failed");
	for (size_t is = 0; is < TS_ARRAY_LEN(shapes); is++) {
		const struct shape *s = &shapes[is];
		uint64_t wbytes = (uint64_t)s->K * s->O * 2, wstride = (wbytes + 255) / 256 * 256;
		int nbuf = (int)TS_MAX(3, (150u << 20) / wbytes + 1);
		if ((uint64_t)nbuf * wstride > w_region)
			nbuf = (int)(w_region / wstride);
		fill_bf16(hw, wbytes / 2, 2.0f / sqrtf((float)s->K));
		fill_bf16(hx, (size_t)BENCH_MAX_T * s->K, 1.0f);
		int good = ok(gpu_h2d(&gg, d_x, hx, (size_t)BENCH_MAX_T * s->K * 2), "h2d");
		for (int i = 0; i < nbuf && good; i++)
			good = ok(gpu_h2d(&gg, d_w + (gpu_ptr)i * wstride, hw, wbytes), "h2d");
		good = good && ok(gpu_sync(&gg), "sync");
		T_CHECK(good && nbuf >= 3, "%s: upload failed or too few buffers (%d)", s->name, nbuf);
		if (!good)
			continue;
		for (size_t it = 0; it < TS_ARRAY_LEN(Ts); it++) {
			int T = Ts[it];
			struct gemm_plan p;
			gemm_plan(T, s->K, s->O, gg.info.n_sm, &p);
			sample_check(s, T, d_w);
			double sec = time_shape(s, T, nbuf, wstride);
			double gbs = sec > 0 ? (double)wbytes / sec / 1e9 : 0,
			       tfs = sec > 0 ? 2.0 * T * s->K * (double)s->O / sec / 1e12 : 0;
			snprintf(lines[nl], sizeof lines[nl],
			         "| %-8s | %5d x %6d | %4d | %-5s | %2d | %9.1f | %7.0f | %5.3f | %7.1f | %5.3f |",
			         s->name, s->K, s->O, T, p.kernel == GPU_K_GEMM_SMALL ? "small" : "large", p.split_k,
			         sec * 1e6, gbs, gbs / floor_gbs, tfs, tfs / GEMM_FLOOR_TFS);
			printf("%s\n", lines[nl]);
			fflush(stdout);
			if (nl < 31)
				nl++;
		}
	}
	free(hw);
	free(hx);
	printf("\ndevice: %s, %d SMs\n", gg.info.name, gg.info.n_sm);
	printf("floors: D2D copy %.0f GB/s read + write, measured in this run (%.0f on the H100 of 2026-11-27); not "
	       "measured here (H100, 2026-11-27): cuBLAS bf16 GEMV batch 1 %.0f GB/s, cuBLAS bf16 GEMM 8192^3 %.0f "
	       "TFLOP/s\n",
	       floor_gbs, COPY_FLOOR_GBS, GEMV_FLOOR_GBS, GEMM_FLOOR_TFS);
	printf("| shape    |     K x O      |    T | kern  | sp |   time us |  W GB/s | /copy | TFLOP/s | /cuBLAS |\n");
	for (int i = 0; i < nl; i++)
		printf("%s\n", lines[i]);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	int quick = 0, no_bench = 0;
	for (int i = 1; i < argc; i++) {
		quick |= !strcmp(argv[i], "--quick");
		no_bench |= !strcmp(argv[i], "--no-bench");
	}
	struct ts_err e;
	memset(&e, 0, sizeof e);
	if (gpu_open(&gg, 0, &e)) {
		T_CHECK(0, "gpu_open: %s", e.msg);
		return T_DONE();
	}
	/* Regions: x (4096 x 14336), rotating weights (>= 3 lm_heads), y (4096 x 128256 f32). */
	uint64_t x_bytes = (uint64_t)BENCH_MAX_T * 14336 * 2, y_bytes = (uint64_t)BENCH_MAX_T * 128256 * 4;
	w_region = no_bench ? (64u << 20) : (uint64_t)3 * (((uint64_t)4096 * 128256 * 2 + 255) / 256 * 256);
	ws_bytes = gemm_workspace_bytes(BENCH_MAX_T, 2 * 128256, gg.info.n_sm);
	uint64_t total = x_bytes + w_region + y_bytes + 2 * 128256 * 4 + ws_bytes + ((uint64_t)16 << 20);
	if (!ok(gpu_arena_init(&gg, total, &e), "gpu_arena_init") || !ok(gemm_init(&gg), "gemm_init")) {
		T_CHECK(0, "setup: %s", e.msg);
		gpu_close(&gg);
		return T_DONE();
	}
	d_x = gpu_arena_take(&gg, x_bytes);
	d_w = gpu_arena_take(&gg, w_region);
	d_y = gpu_arena_take(&gg, y_bytes);
	d_bias = gpu_arena_take(&gg, 2 * 128256 * 4);
	d_ws = gpu_arena_take(&gg, ws_bytes);
	T_CHECK(d_x && d_w && d_y && d_bias && d_ws, "arena too small");
	printf("device %s, %d SMs; workspace %.1f MB\n", gg.info.name, gg.info.n_sm, ws_bytes / 1e6);

	/* Host: the workspace bound holds for every plan. */
	int badws = 0;
	for (int T = 1; T <= 2048; T += T < 80 ? 1 : 37)
		for (int O = 1; O <= 300000; O += O < 600 ? 7 : 4999) {
			struct gemm_plan p;
			gemm_plan(T, 1 << 20, O, gg.info.n_sm, &p);
			badws += p.partial_bytes > gemm_workspace_bytes(T, O, gg.info.n_sm);
		}
	T_CHECK(badws == 0, "gemm_workspace_bytes below a plan's need %d times", badws);

	/* Correctness: T, K, O with tails on every side; small and large
	 * kernels; split and not. */
	static const int cs[][3] = {
	    {1, 4096, 4096},   {1, 8, 1},       {1, 24, 5},       {2, 40, 17},       {3, 520, 100},   {5, 1000, 255},
	    {7, 4096, 64},     {8, 14336, 96},  {9, 128, 257},    {15, 4096, 1000},  {16, 2048, 512}, {17, 136, 33},
	    {31, 4096, 320},   {32, 512, 4096}, {33, 1000, 129},  {47, 4096, 768},   {63, 8, 300},    {64, 4096, 1024},
	    {64, 14336, 64},   {65, 4096, 512}, {100, 520, 257},  {128, 4096, 256},  {129, 64, 1000}, {200, 1000, 300},
	    {256, 4096, 2048}, {300, 72, 17},   {513, 2048, 768}, {1024, 4096, 512}, {1, 4096, 33},   {4, 4096, 6144},
	};
	int c = 0;
	for (size_t i = 0; i < TS_ARRAY_LEN(cs); i++) {
		if (quick && i % 3)
			continue;
		for (int mode = 0; mode < 4; mode++, c++) {
			int O = cs[i][2];
			if (mode == KG_SILU_MUL_BF16)
				O = TS_MAX(16, (O + 15) / 16 * 16);
			run_case(cs[i][0], cs[i][1], O, mode, c % 3 != 1, c % 2 ? 3 : 0, c);
		}
	}
	printf("worst rel err: STORE_F32 %.2e ADD_F32 %.2e STORE_BF16 %.2e SILU_BF16 %.2e\n", worst[0], worst[1],
	       worst[2], worst[3]);

	if (!no_bench && !quick)
		bench();
	gpu_close(&gg);
	return T_DONE();
}
