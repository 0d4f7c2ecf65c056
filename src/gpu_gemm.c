/* gpu_gemm: plans and launches the bf16 GEMM kernels (kernels/gemm.cu).
 * This file also compiles as C++ inside tests/gpu/k_gemm_dev.cu, which
 * checks the same plans on the device through the CUDA runtime. */
#include "gpu_gemm.h"

#include <stdint.h>
#include <string.h>

#include "log.h"

/* Must match kernels/gemm.cu: SMALL_THREADS, SMALL_CFG_T*, LG_*. */
#define SMALL_THREADS  256
#define LARGE_THREADS  256
#define LARGE_BM       128 /* tokens per block */
#define LARGE_BN       256 /* weight rows per block */
#define LARGE_BK       64
#define LARGE_SMEM     (4 * (LARGE_BM + LARGE_BN) * 128 + 1024)
#define REDUCE_THREADS 256
#define SPLIT_MAX      16

/* Rows per block of the small kernel (16 * MW * WR) and the k-steps (32 k
 * each) that one split must hold so each of its WK warps gets a group of U. */
static void small_cfg(int T, int *rows, int *min_steps)
{
	if (T <= 16) {
		*rows = 16;
		*min_steps = 8 * 2;
	} else {
		*rows = 64;
		*min_steps = 2 * 2;
	}
}

static int ceil_div(int a, int b)
{
	return (a + b - 1) / b;
}

void gemm_plan(int T, int K, int O, int n_sm, struct gemm_plan *p)
{
	memset(p, 0, sizeof *p);
	if (n_sm < 1)
		n_sm = 1;
	int split = 1;
	/* 17..32 tokens: the small kernel only where it needs no split (measured:
	 * otherwise the large kernel's shared x wins; tests/gpu/notes/gemm.md). */
	if (T <= 16 || (T <= GEMM_SMALL_MAX_T && ceil_div(O, 64) >= n_sm)) {
		/* Below one block per SM, split K until about two per SM. */
		int rows, min_steps;
		small_cfg(T, &rows, &min_steps);
		int blocks = ceil_div(O, rows), steps = ceil_div(K, 32);
		if (blocks < n_sm) {
			split = TS_MIN(ceil_div(2 * n_sm, blocks), steps / min_steps);
			split = TS_MAX(1, TS_MIN(split, SPLIT_MAX));
		}
		p->kernel = GPU_K_GEMM_SMALL;
		p->grid_x = (unsigned)blocks;
		p->block = SMALL_THREADS;
		p->smem_bytes = 0; /* static */
	} else {
		/* One block per SM (its ring fills shared memory): split K when
		 * the tiles fill less than half the SMs, up to one wave. */
		int tiles = ceil_div(T, LARGE_BM) * ceil_div(O, LARGE_BN), kts = ceil_div(K, LARGE_BK);
		if (2 * tiles < n_sm) {
			split = TS_MIN(n_sm / tiles, kts / 4);
			split = TS_MAX(1, TS_MIN(split, SPLIT_MAX));
		}
		p->kernel = GPU_K_GEMM_LARGE;
		p->grid_x = (unsigned)tiles;
		p->block = LARGE_THREADS;
		p->smem_bytes = LARGE_SMEM;
	}
	p->grid_y = (unsigned)split;
	p->split_k = split;
	p->partial_bytes = split > 1 ? (uint64_t)split * (uint64_t)T * (uint64_t)O * 4u : 0;
}

/* Bounds from gemm_plan's rules: the small kernel splits only below n_sm
 * blocks of `rows`, so split * O < 3 * n_sm * rows; the large one only below
 * n_sm / 2 tiles, so split * T * O <= n_sm * 128 * 256. The tests check the
 * bound against gemm_plan over many shapes. */
uint64_t gemm_workspace_bytes(int max_T, int max_O, int n_sm)
{
	uint64_t best = 0, mo = (uint64_t)(max_O > 0 ? max_O : 0);
	if (n_sm < 1)
		n_sm = 1;
	for (int T = 1; T <= TS_MIN(max_T, GEMM_SMALL_MAX_T); T++) {
		int rows, min_steps;
		small_cfg(T, &rows, &min_steps);
		uint64_t per_t = TS_MIN((uint64_t)3 * (uint64_t)n_sm * (uint64_t)rows, (uint64_t)SPLIT_MAX * mo);
		best = TS_MAX(best, per_t * (uint64_t)T);
	}
	if (max_T > 16) { /* the large kernel serves T >= 17 */
		uint64_t lim = TS_MIN((uint64_t)n_sm * LARGE_BM * LARGE_BN, (uint64_t)SPLIT_MAX * (uint64_t)max_T * mo);
		best = TS_MAX(best, lim);
	}
	return best * 4u;
}

int gemm_init(struct gpu *g)
{
	if (g->info.smem_optin < LARGE_SMEM) {
		log_error("gemm: device %s gives %d bytes of shared memory per block, k_gemm_bf16_large needs %d",
		          g->info.name, g->info.smem_optin, LARGE_SMEM);
		return -E_UNSUPPORTED;
	}
	return gpu_set_smem(g, GPU_K_GEMM_LARGE, LARGE_SMEM);
}

static int misaligned(const void *p)
{
	return ((uintptr_t)p & 15u) != 0;
}

int gemm_run(struct gpu *g, const struct k_gemm *a_in, gpu_ptr partial_ws)
{
	struct k_gemm a = *a_in;
	int silu = a.mode == KG_SILU_MUL_BF16;
	int n_out = silu ? a.O / 2 : a.O;
	if (a.T < 1 || a.T > 65535 || a.K < 8 || a.K % 8 || a.O < 1 || a.mode < KG_STORE_F32 ||
	    a.mode > KG_SILU_MUL_BF16 || (silu && a.O % 16) || a.ldy < n_out || !a.x || !a.w || !a.y ||
	    misaligned(a.x) || misaligned(a.w) || misaligned(a.y) || (a.bias && misaligned(a.bias)) ||
	    (partial_ws & 15u)) {
		log_error("gemm: bad call T=%d K=%d O=%d ldy=%d mode=%d (need K %% 8 == 0, ldy >= %d, "
		          "16-byte aligned x, w, y, bias, workspace; O %% 16 == 0 for SILU_MUL)",
		          a.T, a.K, a.O, a.ldy, a.mode, n_out);
		return -E_INVAL;
	}
	struct gemm_plan p;
	gemm_plan(a.T, a.K, a.O, g->info.n_sm, &p);
	a.split_k = p.split_k;
	a.partial = NULL;
	if (p.split_k > 1) {
		if (!partial_ws) {
			log_error("gemm: T=%d K=%d O=%d splits K %d ways and needs %llu bytes of workspace, got none",
			          a.T, a.K, a.O, p.split_k, (unsigned long long)p.partial_bytes);
			return -E_INVAL;
		}
		a.partial = (float *)(uintptr_t)partial_ws;
	}
	int rc = gpu_launch(g, p.kernel, p.grid_x, p.grid_y, 1, p.block, p.smem_bytes, &a, sizeof a);
	if (rc || p.split_k == 1)
		return rc;
	return gpu_launch(g, GPU_K_GEMM_REDUCE, (unsigned)ceil_div(n_out, REDUCE_THREADS), (unsigned)a.T, 1,
	                  REDUCE_THREADS, 0, &a, sizeof a);
}

void gemm_interleave_gate_up(ts_bf16 *dst, const ts_bf16 *gate, const ts_bf16 *up, int ffn, int K)
{
	size_t blk = (size_t)8 * (size_t)K;
	if (NEVER(ffn % 8))
		return;
	for (int b = 0; b < ffn / 8; b++) {
		memcpy(dst + (2 * (size_t)b) * blk, gate + (size_t)b * blk, blk * sizeof *dst);
		memcpy(dst + (2 * (size_t)b + 1) * blk, up + (size_t)b * blk, blk * sizeof *dst);
	}
}

void gemm_interleave_bias(float *dst, const float *gate, const float *up, int ffn)
{
	if (NEVER(ffn % 8))
		return;
	for (int b = 0; b < ffn / 8; b++) {
		memcpy(dst + 16 * (size_t)b, gate + 8 * (size_t)b, 8 * sizeof *dst);
		memcpy(dst + 16 * (size_t)b + 8, up + 8 * (size_t)b, 8 * sizeof *dst);
	}
}
