/* k_gemm_dev: development harness for kernels/gemm.cu on the CUDA runtime
 * (never part of the product: the real test is tests/gpu/k_gemm.c through
 * src/gpu.h). It compiles the kernels and the product launcher
 * (src/gpu_gemm.c, as C++) into one program, with gpu_launch and
 * gpu_set_smem shimmed onto cudaLaunchKernel, so the plans it checks are the
 * engine's. Also times kernel variants (configurations of the same templates)
 * that the product does not launch.
 *
 * Build and run on the GPU machine, from the repository root:
 *   nvcc -O2 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Ikernels -Isrc \
 *        -Xcompiler -fopenmp -o /tmp/kg tests/gpu/k_gemm_dev.cu && /tmp/kg [--quick] [--small|--large]
 */
#include <cuda_runtime.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "../../kernels/gemm.cu"
#include "../../src/gpu_gemm.c"

#define COPY_FLOOR_GBS 3027.0 /* H100 D2D copy, read + write, measured 2026-11-27 (lead) */
#define GEMV_FLOOR_GBS 2742.0 /* cuBLAS bf16 GEMV batch 1, 14336x4096, measured 2026-11-27 */
#define GEMM_FLOOR_TFS 798.0  /* cuBLAS bf16 GEMM 8192^3, measured 2026-11-27 */

static int n_pass, n_fail;
#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (cond) {                                                   \
			n_pass++;                                             \
		} else {                                                      \
			n_fail++;                                             \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);           \
			printf(__VA_ARGS__);                                  \
			printf("\n");                                         \
		}                                                             \
	} while (0)

#define CU(x)                                                                                    \
	do {                                                                                     \
		cudaError_t e_ = (x);                                                            \
		if (e_ != cudaSuccess) {                                                         \
			printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, \
			       __LINE__, #x);                                                    \
			exit(2);                                                                 \
		}                                                                                \
	} while (0)

/* ------------------------------------------------------------ shims for src/gpu.h */

static cudaStream_t st;
static const void *dev_fn[GPU_K_N];

void log_msg(enum log_level l, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("log(%d): ", (int)l);
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

int gpu_launch(struct gpu *g, enum gpu_kernel k, unsigned gx, unsigned gy, unsigned gz, unsigned block,
	       unsigned smem_bytes, const void *args, size_t args_bytes)
{
	void *params[1] = {(void *)args};
	cudaError_t e = cudaLaunchKernel(dev_fn[k], dim3(gx, gy, gz), dim3(block), params, smem_bytes, st);
	if (e != cudaSuccess) {
		printf("launch %d (%u,%u,%u) x %u smem %u: %s\n", (int)k, gx, gy, gz, block, smem_bytes,
		       cudaGetErrorString(e));
		return -E_INTERNAL;
	}
	return 0;
}

int gpu_set_smem(struct gpu *g, enum gpu_kernel k, unsigned bytes)
{
	return cudaFuncSetAttribute(dev_fn[k], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) == cudaSuccess
		       ? 0
		       : -E_INTERNAL;
}

static struct gpu G;

/* ------------------------------------------------------------ variants */

template <int NT, int MW, int WR, int WK, int U, bool DB, int MINB>
__global__ void __launch_bounds__(256, MINB) dev_small(const struct k_gemm a)
{
	__shared__ float red[SMALL_RED_FLOATS];
	small_body<NT, MW, WR, WK, U, DB>(a, red);
}

template <bool WG, bool DEEP> __global__ void __launch_bounds__(LG_THREADS, 1) dev_large(const struct k_gemm a)
{
	extern __shared__ __align__(16) unsigned char sm[];
	large_body<WG, DEEP>(a, sm);
}

struct variant {
	const char *name;
	const void *fn;      /* NULL: the product launcher (gemm_run) */
	int large;           /* 1: large-kernel grid */
	int rows, min_steps; /* small: rows per block, k-steps per split minimum */
	int min_t, max_t;    /* T range where it is timed */
};

#define SV(NT, MW, WR, WK, U, DB, LO, MINB)                                                        \
	{"small<" #NT "," #MW "," #WR "," #WK "," #U "," #DB ">/" #MINB,                                 \
	 (const void *)dev_small<NT, MW, WR, WK, U, DB, MINB>, 0, 16 * MW * WR, WK * U, LO, 8 * NT}

static struct variant variants[] = {
	{"product", NULL, 0, 0, 0, 1, 1 << 30},
	SV(1, 1, 1, 8, 4, true, 1, 2), /* version 1's T <= 8 configuration, for reference */
	{"large-deep (wgmma)", (const void *)dev_large<true, true>, 1, 0, 0, 17, 64},
	{"large-mma.sync", (const void *)dev_large<false, false>, 1, 0, 0, 17, 1 << 30}, /* sm_100a's path */
};

/* Launches variant v (split-K and reduce included) with the product's split
 * rule applied to its own block shape. */
static void launch_variant(const struct variant *v, struct k_gemm a, gpu_ptr ws)
{
	if (!v->fn) {
		if (gemm_run(&G, &a, ws))
			exit(3);
		return;
	}
	int n_sm = G.info.n_sm, split = 1;
	unsigned gx, block = 256, smem = 0;
	if (v->large) {
		int tiles = ceil_div(a.T, 128) * ceil_div(a.O, 256), kts = ceil_div(a.K, 64);
		if (2 * tiles < n_sm)
			split = TS_MAX(1, TS_MIN(TS_MIN(n_sm / tiles, kts / 4), SPLIT_MAX));
		gx = (unsigned)tiles;
		smem = LG_SMEM_BYTES;
	} else {
		int blocks = ceil_div(a.O, v->rows), steps = ceil_div(a.K, 32);
		if (blocks < n_sm)
			split = TS_MAX(1, TS_MIN(TS_MIN(ceil_div(2 * n_sm, blocks), steps / v->min_steps), SPLIT_MAX));
		gx = (unsigned)blocks;
	}
	a.split_k = split;
	a.partial = split > 1 ? (float *)(uintptr_t)ws : NULL;
	void *params[1] = {&a};
	CU(cudaLaunchKernel(v->fn, dim3(gx, split), dim3(block), params, smem, st));
	if (split > 1) {
		int n_out = a.mode == KG_SILU_MUL_BF16 ? a.O / 2 : a.O;
		CU(cudaLaunchKernel((const void *)k_gemm_reduce_f32, dim3(ceil_div(n_out, 256), a.T), dim3(256), params,
				    0, st));
	}
}

/* ------------------------------------------------------------ data */

static uint64_t rng_s = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static float rng_uniform(void) /* [-1, 1) */
{
	return (float)((double)(rng_next() >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}
static uint16_t f2bf(float f)
{
	return ts_f32_to_bf16(f);
}
static float bf2f(uint16_t h)
{
	return ts_bf16_to_f32(h);
}

__global__ void fill_bf16(uint16_t *p, size_t n, uint64_t seed, float scale)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		uint64_t z = seed + i * 0x9e3779b97f4a7c15ull;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		float u = (float)((double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0) * scale;
		p[i] = __bfloat16_as_ushort(__float2bfloat16_rn(u));
	}
}

static void *dmalloc(size_t bytes)
{
	void *p;
	CU(cudaMalloc(&p, bytes));
	return p;
}

static const char *mode_name(int m)
{
	static const char *n[] = {"STORE_F32", "ADD_F32", "STORE_BF16", "SILU_BF16"};
	return n[m];
}

/* ------------------------------------------------------------ correctness */

static gpu_ptr ws;
static size_t ws_bytes;

/* One random case: T, K, O, mode, bias, ldy padding; checks variant v. */
static double check_case(const struct variant *v, int T, int K, int O, int mode, int with_bias, int pad, int seed,
			 int *split_out)
{
	rng_s = 0x1234567ull * (uint64_t)(seed + 1);
	const int silu = mode == KG_SILU_MUL_BF16, f32 = mode == KG_STORE_F32 || mode == KG_ADD_F32;
	const int n_out = silu ? O / 2 : O, ldy = n_out + pad;
	std::vector<uint16_t> x((size_t)T * K), w((size_t)O * K);
	std::vector<float> bias(O);
	float xs = 1.0f, ws_ = 1.0f / sqrtf((float)K);
	for (auto &e : x)
		e = f2bf(rng_uniform() * xs);
	for (auto &e : w)
		e = f2bf(rng_uniform() * ws_ * 2.0f);
	for (auto &e : bias)
		e = rng_uniform();
	size_t ybytes = (size_t)T * ldy * (f32 ? 4 : 2);
	std::vector<unsigned char> y0(ybytes), y1(ybytes);
	if (mode == KG_ADD_F32) {
		float *yf = (float *)y0.data();
		for (size_t i = 0; i < (size_t)T * ldy; i++)
			yf[i] = rng_uniform();
	} else if (f32) {
		uint32_t *yu = (uint32_t *)y0.data();
		for (size_t i = 0; i < (size_t)T * ldy; i++)
			yu[i] = 0x7fc00000u | (uint32_t)(seed & 0xffff);
	} else {
		uint16_t *yh = (uint16_t *)y0.data();
		for (size_t i = 0; i < (size_t)T * ldy; i++)
			yh[i] = (uint16_t)(0x7fc1u + (seed & 0x3f));
	}
	uint16_t *dx = (uint16_t *)dmalloc(x.size() * 2), *dw = (uint16_t *)dmalloc(w.size() * 2);
	float *db = (float *)dmalloc(O * 4);
	void *dy = dmalloc(ybytes);
	CU(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
	CU(cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice));
	CU(cudaMemcpy(db, bias.data(), O * 4, cudaMemcpyHostToDevice));
	CU(cudaMemcpy(dy, y0.data(), ybytes, cudaMemcpyHostToDevice));
	struct k_gemm a;
	memset(&a, 0, sizeof a);
	a.x = (const ts_bf16 *)dx;
	a.w = (const ts_bf16 *)dw;
	a.bias = with_bias ? db : NULL;
	a.y = dy;
	a.T = T;
	a.K = K;
	a.O = O;
	a.ldy = ldy;
	a.mode = mode;
	struct gemm_plan p;
	gemm_plan(T, K, O, G.info.n_sm, &p);
	CHECK(p.partial_bytes <= ws_bytes, "workspace %zu < plan %llu", ws_bytes, (unsigned long long)p.partial_bytes);
	*split_out = p.split_k;
	launch_variant(v, a, ws);
	CU(cudaStreamSynchronize(st));
	CU(cudaGetLastError());
	CU(cudaMemcpy(y1.data(), dy, ybytes, cudaMemcpyDeviceToHost));
	/* Same inputs again: bitwise equal (no races, fixed order). */
	if (mode != KG_ADD_F32) {
		std::vector<unsigned char> y2(ybytes);
		launch_variant(v, a, ws);
		CU(cudaStreamSynchronize(st));
		CU(cudaMemcpy(y2.data(), dy, ybytes, cudaMemcpyDeviceToHost));
		CHECK(!memcmp(y1.data(), y2.data(), ybytes), "%s T=%d K=%d O=%d %s: not deterministic", v->name, T, K, O,
		      mode_name(mode));
	}
	CU(cudaFree(dx));
	CU(cudaFree(dw));
	CU(cudaFree(db));
	CU(cudaFree(dy));

	double num = 0, den = 0;
	long bad = 0, pad_bad = 0;
#pragma omp parallel for reduction(+ : num, den, bad, pad_bad) schedule(dynamic, 1)
	for (int t = 0; t < T; t++) {
		std::vector<double> xr(K);
		for (int k = 0; k < K; k++)
			xr[k] = bf2f(x[(size_t)t * K + k]);
		std::vector<double> acc(O);
		for (int o = 0; o < O; o++) {
			const uint16_t *wr = &w[(size_t)o * K];
			double s = 0;
			for (int k = 0; k < K; k++)
				s += xr[k] * bf2f(wr[k]);
			acc[o] = s + (with_bias ? bias[o] : 0.0);
		}
		for (int j = 0; j < ldy; j++) {
			size_t i = (size_t)t * ldy + j;
			double got, ref;
			if (j >= n_out) { /* padding: untouched */
				if (f32)
					pad_bad += memcmp(&y1[i * 4], &y0[i * 4], 4) != 0;
				else
					pad_bad += memcmp(&y1[i * 2], &y0[i * 2], 2) != 0;
				continue;
			}
			if (silu) {
				int og = (j / 8) * 16 + j % 8;
				double g = acc[og], u = acc[og + 8];
				ref = g / (1.0 + exp(-g)) * u;
			} else {
				ref = acc[j];
				if (mode == KG_ADD_F32)
					ref += ((float *)y0.data())[i];
			}
			got = f32 ? ((float *)y1.data())[i] : bf2f(((uint16_t *)y1.data())[i]);
			if (!isfinite(got))
				bad++;
			else
				num += (got - ref) * (got - ref);
			den += ref * ref;
		}
	}
	double rel = sqrt(num / (den > 0 ? den : 1));
	double tol = f32 ? 1e-4 : 1e-2;
	CHECK(bad == 0 && pad_bad == 0 && rel < tol, "%s T=%d K=%d O=%d %s bias=%d pad=%d split=%d: rel %.3g bad %ld pad %ld",
	      v->name, T, K, O, mode_name(mode), with_bias, pad, *split_out, rel, bad, pad_bad);
	return rel;
}

/* ------------------------------------------------------------ timing */

struct shape {
	const char *name;
	int K, O, mode;
};

static const struct shape shapes[] = {
	{"qkv", 4096, 6144, KG_STORE_F32},   {"o_proj", 4096, 4096, KG_ADD_F32},
	{"gate_up", 4096, 28672, KG_SILU_MUL_BF16}, {"down", 14336, 4096, KG_ADD_F32},
	{"lm_head", 4096, 128256, KG_STORE_F32},
};

static double copy_gbs;

static double time_variant(const struct variant *v, const struct shape *s, int T, uint16_t **wb, int nbuf,
			   uint16_t *x, void *y)
{
	struct k_gemm a;
	memset(&a, 0, sizeof a);
	a.x = (const ts_bf16 *)x;
	a.y = y;
	a.T = T;
	a.K = s->K;
	a.O = s->O;
	a.ldy = s->mode == KG_SILU_MUL_BF16 ? s->O / 2 : s->O;
	a.mode = s->mode;
	double flops = 2.0 * T * s->K * (double)s->O;
	int per_graph = (int)std::max(1.0, std::min(20.0, 2e-3 / (flops / 400e12 + 5e-6)));
	per_graph = std::max(per_graph, nbuf);
	cudaGraph_t gr;
	cudaGraphExec_t gx;
	for (int i = 0; i < 2; i++) { /* warm-up */
		a.w = (const ts_bf16 *)wb[i % nbuf];
		launch_variant(v, a, ws);
	}
	CU(cudaStreamSynchronize(st));
	CU(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
	for (int i = 0; i < per_graph; i++) {
		a.w = (const ts_bf16 *)wb[i % nbuf];
		launch_variant(v, a, ws);
	}
	CU(cudaStreamEndCapture(st, &gr));
	CU(cudaGraphInstantiate(&gx, gr, 0));
	cudaEvent_t e0, e1;
	CU(cudaEventCreate(&e0));
	CU(cudaEventCreate(&e1));
	CU(cudaGraphLaunch(gx, st));
	std::vector<float> ms;
	for (int r = 0; r < 25; r++) {
		CU(cudaEventRecord(e0, st));
		CU(cudaGraphLaunch(gx, st));
		CU(cudaEventRecord(e1, st));
		CU(cudaEventSynchronize(e1));
		float m;
		CU(cudaEventElapsedTime(&m, e0, e1));
		ms.push_back(m / per_graph);
	}
	CU(cudaGetLastError());
	std::sort(ms.begin(), ms.end());
	CU(cudaGraphExecDestroy(gx));
	CU(cudaGraphDestroy(gr));
	CU(cudaEventDestroy(e0));
	CU(cudaEventDestroy(e1));
	return ms[ms.size() / 2] * 1e-3; /* seconds */
}

/* Checks 48 sampled outputs of the big shapes against fp64 dots. */
static void sample_check(const struct variant *v, const struct shape *s, int T, uint16_t *dw, uint16_t *dx, void *y)
{
	struct k_gemm a;
	memset(&a, 0, sizeof a);
	int silu = s->mode == KG_SILU_MUL_BF16, n_out = silu ? s->O / 2 : s->O;
	a.x = (const ts_bf16 *)dx;
	a.w = (const ts_bf16 *)dw;
	a.y = y;
	a.T = T;
	a.K = s->K;
	a.O = s->O;
	a.ldy = n_out;
	a.mode = silu ? KG_SILU_MUL_BF16 : KG_STORE_F32;
	CU(cudaMemset(y, 0xff, (size_t)T * n_out * 4));
	launch_variant(v, a, ws);
	CU(cudaStreamSynchronize(st));
	CU(cudaGetLastError());
	double num = 0, den = 0;
	int bad = 0;
	std::vector<uint16_t> xr(s->K), wr(s->K), ur(s->K);
	for (int i = 0; i < 48; i++) {
		int t = (int)(rng_next() % T), j = i == 0 ? n_out - 1 : (int)(rng_next() % n_out);
		if (i == 1)
			t = T - 1;
		int og = silu ? (j / 8) * 16 + j % 8 : j;
		CU(cudaMemcpy(xr.data(), dx + (size_t)t * s->K, s->K * 2, cudaMemcpyDeviceToHost));
		CU(cudaMemcpy(wr.data(), dw + (size_t)og * s->K, s->K * 2, cudaMemcpyDeviceToHost));
		if (silu)
			CU(cudaMemcpy(ur.data(), dw + (size_t)(og + 8) * s->K, s->K * 2, cudaMemcpyDeviceToHost));
		double g = 0, u = 0;
		for (int k = 0; k < s->K; k++) {
			g += (double)bf2f(xr[k]) * bf2f(wr[k]);
			if (silu)
				u += (double)bf2f(xr[k]) * bf2f(ur[k]);
		}
		double ref = silu ? g / (1 + exp(-g)) * u : g, got;
		if (silu) {
			uint16_t h;
			CU(cudaMemcpy(&h, (uint16_t *)y + (size_t)t * n_out + j, 2, cudaMemcpyDeviceToHost));
			got = bf2f(h);
		} else {
			float f;
			CU(cudaMemcpy(&f, (float *)y + (size_t)t * n_out + j, 4, cudaMemcpyDeviceToHost));
			got = f;
		}
		if (!isfinite(got))
			bad++;
		else
			num += (got - ref) * (got - ref);
		den += ref * ref;
	}
	double rel = sqrt(num / den);
	CHECK(bad == 0 && rel < (silu ? 1e-2 : 1e-4), "%s %s T=%d sampled: rel %.3g bad %d", v->name, s->name, T, rel,
	      bad);
}

int main(int argc, char **argv)
{
	/* --small / --large: only T <= 64 or T > 64 (a fault in one kernel
	 * then cannot hide the other's results). */
	int quick = 0, only = 0;
	for (int i = 1; i < argc; i++) {
		quick |= !strcmp(argv[i], "--quick");
		only = !strcmp(argv[i], "--small") ? 1 : !strcmp(argv[i], "--large") ? 2 : only;
	}
#define SKIP_T(T) ((only == 1 && (T) > 64) || (only == 2 && (T) <= 64))
	cudaDeviceProp prop;
	CU(cudaGetDeviceProperties(&prop, 0));
	CU(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
	memset(&G, 0, sizeof G);
	G.info.n_sm = prop.multiProcessorCount;
	G.info.smem_optin = (int)prop.sharedMemPerBlockOptin;
	snprintf(G.info.name, sizeof G.info.name, "%s", prop.name);
	dev_fn[GPU_K_GEMM_SMALL] = (const void *)k_gemm_bf16_small;
	dev_fn[GPU_K_GEMM_LARGE] = (const void *)k_gemm_bf16_large;
	dev_fn[GPU_K_GEMM_REDUCE] = (const void *)k_gemm_reduce_f32;
	printf("device %s, %d SMs, smem optin %d, L2 %d MB\n", prop.name, G.info.n_sm, G.info.smem_optin,
	       prop.l2CacheSize >> 20);
	if (gemm_init(&G)) {
		printf("gemm_init failed\n");
		return 1;
	}
	for (auto fn : {(const void *)dev_large<true, false>, (const void *)dev_large<true, true>,
			(const void *)dev_large<false, false>})
		CU(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, LG_SMEM_BYTES));
	for (auto fn : {(const void *)k_gemm_bf16_small, (const void *)k_gemm_bf16_large, (const void *)dev_large<true, true>,
			(const void *)dev_large<false, false>}) {
		cudaFuncAttributes at;
		CU(cudaFuncGetAttributes(&at, fn));
		int nb = 0;
		CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fn, 256,
								 fn == (const void *)k_gemm_bf16_small ? 0 : LG_SMEM_BYTES));
		printf("kernel regs %d static smem %zu local %zu, blocks/SM %d\n", at.numRegs, at.sharedSizeBytes,
		       at.localSizeBytes, nb);
	}
	ws_bytes = gemm_workspace_bytes(8192, 128256 * 2, G.info.n_sm);
	ws = (gpu_ptr)(uintptr_t)dmalloc(ws_bytes);
	printf("workspace %.1f MB\n", ws_bytes / 1e6);

	/* Workspace bound against the plans. */
	{
		int badws = 0;
		for (int T = 1; T <= 1024; T += (T < 80 ? 1 : 37))
			for (int O = 1; O <= 40000; O += (O < 600 ? 7 : 997)) {
				struct gemm_plan p;
				gemm_plan(T, 1 << 20, O, G.info.n_sm, &p);
				badws += p.partial_bytes > gemm_workspace_bytes(T, O, G.info.n_sm);
			}
		CHECK(badws == 0, "workspace bound broken %d times", badws);
	}

	/* ---- correctness */
	struct {
		int T, K, O;
	} cs[] = {
		{1, 4096, 4096}, {1, 8, 1},	{1, 24, 5},	  {2, 40, 17},	   {3, 520, 100},   {5, 1000, 255},
		{7, 4096, 64},	 {8, 14336, 96}, {9, 128, 257},	  {15, 4096, 1000}, {16, 2048, 512},  {17, 136, 33},
		{31, 4096, 320}, {32, 512, 4096}, {33, 1000, 129}, {47, 4096, 768},  {63, 8, 300},    {64, 4096, 1024},
		{64, 14336, 64}, {65, 4096, 512}, {100, 520, 257}, {128, 4096, 256}, {129, 64, 1000}, {200, 1000, 300},
		{256, 4096, 2048}, {300, 72, 17}, {513, 2048, 768}, {1024, 4096, 512}, {1, 4096, 33}, {4, 4096, 6144},
	};
	const int nc = sizeof cs / sizeof cs[0];
	double worst[4] = {0, 0, 0, 0};
	int c = 0;
	for (int i = 0; i < nc; i++)
		for (int mode = 0; mode < 4; mode++) {
			if (SKIP_T(cs[i].T)) {
				c++;
				continue;
			}
			int O = cs[i].O;
			if (mode == KG_SILU_MUL_BF16)
				O = std::max(16, (O + 15) / 16 * 16);
			int split;
			double rel = check_case(&variants[0], cs[i].T, cs[i].K, O, mode, (c % 3) != 1, c % 2 ? 3 : 0, c,
						&split);
			worst[mode] = std::max(worst[mode], rel);
			printf("check T=%4d K=%5d O=%5d %-10s split=%2d rel %.2e\n", cs[i].T, cs[i].K, O, mode_name(mode), split,
			       rel);
			c++;
		}
	printf("worst rel err: f32 %.2e add %.2e bf16 %.2e silu %.2e\n", worst[0], worst[1], worst[2], worst[3]);
	/* The variants on a few shapes each (the mma.sync large kernel is sm_100a's). */
	for (size_t vi = 1; vi < sizeof variants / sizeof variants[0]; vi++) {
		const struct variant *v = &variants[vi];
		for (int i = 0; i < nc; i += v->large ? 1 : 3) {
			if (cs[i].T > v->max_t || cs[i].T < v->min_t || SKIP_T(cs[i].T))
				continue;
			int split;
			check_case(v, cs[i].T, cs[i].K, cs[i].O, i % 3 == 0 ? KG_STORE_F32 : KG_ADD_F32, 1, 0, 1000 + i,
				   &split);
			if (v->large)
				check_case(v, cs[i].T, cs[i].K, (cs[i].O + 15) / 16 * 16, KG_SILU_MUL_BF16, 1, 1, 2000 + i,
					   &split);
		}
	}
	printf("correctness: pass %d fail %d\n", n_pass, n_fail);

	/* ---- floors: device-to-device copy on this card */
	{
		size_t n = (size_t)1 << 30;
		void *a = dmalloc(n), *b = dmalloc(n);
		cudaEvent_t e0, e1;
		CU(cudaEventCreate(&e0));
		CU(cudaEventCreate(&e1));
		CU(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
		std::vector<float> ms;
		for (int r = 0; r < 9; r++) {
			CU(cudaEventRecord(e0, st));
			CU(cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st));
			CU(cudaEventRecord(e1, st));
			CU(cudaEventSynchronize(e1));
			float m;
			CU(cudaEventElapsedTime(&m, e0, e1));
			ms.push_back(m);
		}
		std::sort(ms.begin(), ms.end());
		copy_gbs = 2.0 * n / (ms[4] * 1e-3) / 1e9;
		printf("D2D copy 1 GiB on this card: %.0f GB/s (read + write)\n", copy_gbs);
		CU(cudaFree(a));
		CU(cudaFree(b));
	}

	/* ---- timing */
	int Ts[] = {1, 8, 16, 24, 32, 48, 64, 4096};
	const size_t variants_n = sizeof variants / sizeof variants[0];
	size_t max_w = 0;
	for (auto &s : shapes)
		max_w = std::max(max_w, (size_t)s.K * s.O);
	std::vector<const char *> rows;
	static char lines[400][200];
	int nl = 0;
	for (auto &s : shapes) {
		size_t wn = (size_t)s.K * s.O, wbytes = wn * 2;
		int nbuf = (int)std::max<size_t>(3, (150u << 20) / wbytes + 1);
		std::vector<uint16_t *> wb(nbuf);
		for (int i = 0; i < nbuf; i++) {
			wb[i] = (uint16_t *)dmalloc(wbytes);
			fill_bf16<<<1024, 256, 0, st>>>(wb[i], wn, 77 + i, 2.0f / sqrtf((float)s.K));
		}
		uint16_t *x = (uint16_t *)dmalloc((size_t)4096 * s.K * 2);
		fill_bf16<<<1024, 256, 0, st>>>(x, (size_t)4096 * s.K, 5, 1.0f);
		void *y = dmalloc((size_t)4096 * s.O * 4);
		CU(cudaMemsetAsync(y, 0, (size_t)4096 * s.O * 4, st));
		CU(cudaStreamSynchronize(st));
		for (int T : Ts) {
			if ((quick && T == 4096 && s.O > 30000) || SKIP_T(T))
				continue;
			for (size_t vi = 0; vi < sizeof variants / sizeof variants[0]; vi++) {
				const struct variant *v = &variants[vi];
				if (T > v->max_t || T < v->min_t || vi == variants_n - 1) /* mma.sync: run 1 timed it */
					continue;
				if (vi > 0 && quick)
					continue;
				sample_check(v, &s, T, wb[0], x, y);
				double sec = time_variant(v, &s, T, wb.data(), nbuf, x, y);
				double gbs = wbytes / sec / 1e9, tfs = 2.0 * T * (double)wn / sec / 1e12;
				struct gemm_plan p;
				gemm_plan(T, s.K, s.O, G.info.n_sm, &p);
				snprintf(lines[nl], sizeof lines[nl],
					 "| %-8s | %5d x %6d | %4d | %-26s | %2d | %9.1f | %7.0f | %5.3f | %5.3f | %6.1f |",
					 s.name, s.K, s.O, T, v->name, vi == 0 ? p.split_k : 0, sec * 1e6, gbs,
					 gbs / COPY_FLOOR_GBS, gbs / copy_gbs, tfs);
				printf("%s\n", lines[nl]);
				fflush(stdout);
				if (nl < 399)
					nl++;
			}
		}
		for (int i = 0; i < nbuf; i++)
			CU(cudaFree(wb[i]));
		CU(cudaFree(x));
		CU(cudaFree(y));
	}
	printf("\nfloors: D2D copy %.0f GB/s (measured 2026-11-27 by the lead), %.0f GB/s (this run); cuBLAS GEMV "
	       "batch 1 %.0f GB/s; cuBLAS GEMM 8192^3 %.0f TFLOP/s\n",
	       COPY_FLOOR_GBS, copy_gbs, GEMV_FLOOR_GBS, GEMM_FLOOR_TFS);
	printf("| shape    |     K x O      |    T | kernel                     | sp |  time us  |  W GB/s | /3027 | /copy | TFLOP/s |\n");
	for (int i = 0; i < nl; i++)
		printf("%s\n", lines[i]);
	printf("# k_gemm_dev: pass=%d fail=%d\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
