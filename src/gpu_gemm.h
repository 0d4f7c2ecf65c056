/* gpu_gemm: launches the bf16 GEMM kernels of kernels/gemm.cu,
 * y = x w^T (+ bias) with the epilogues of struct k_gemm (ts_kernels.h).
 *
 * Owns: the choice of kernel (k_gemm_bf16_small for decode batches of up to
 * 16-32 tokens, k_gemm_bf16_large for the rest; both read the weights once
 * per call up to 128 tokens), its grid and split-K for (T, K, O, n_sm); the
 * checks of shape and alignment; the layout of fused gate/up weights for
 * KG_SILU_MUL_BF16 (ffn % 8 == 0: a model with another ffn needs its gate and
 * up rows padded with zero rows first).
 * Does not: allocate (the engine reserves gemm_workspace_bytes() of device
 * memory at boot and passes it to every call), synchronize, or look at data:
 * the launches depend only on the shape, so they can be captured in a CUDA
 * graph and replayed.
 * Threads: the engine thread (the one that owns struct gpu).
 */
#ifndef TS_GPU_GEMM_H
#define TS_GPU_GEMM_H

#include "gpu.h"
#include "ts_kernels.h"

/* Largest T that may take the decode kernel (T <= 16 always; 17..32 when O
 * gives a block per SM without split-K; the rest the large kernel). */
#define GEMM_SMALL_MAX_T 32

/* What gemm_run launches for one shape. */
struct gemm_plan {
	enum gpu_kernel kernel;  /* GPU_K_GEMM_SMALL or GPU_K_GEMM_LARGE */
	unsigned grid_x, grid_y; /* grid_y == split_k */
	unsigned block, smem_bytes;
	int split_k;            /* > 1: partials, then GPU_K_GEMM_REDUCE */
	uint64_t partial_bytes; /* split_k * T * O * 4 when split_k > 1, else 0 */
};

/* Raises the large kernel's shared-memory limit; call once after gpu_open.
 * -E_UNSUPPORTED if the device lacks that much shared memory per block. */
int gemm_init(struct gpu *g);

/* The launch for (T, K, O) on a device of n_sm SMs. Pure. */
void gemm_plan(int T, int K, int O, int n_sm, struct gemm_plan *p);

/* Device bytes of split-K partials that any call with T <= max_T and
 * O <= max_O (any K) may need: reserve this once at boot. */
uint64_t gemm_workspace_bytes(int max_T, int max_O, int n_sm);

/* Launches y = x w^T on the engine stream. a_in's split_k and partial are
 * ignored (the plan sets them); partial_ws is the boot-time workspace (0 is
 * allowed when the plan needs none). Checks: T >= 1, K % 8 == 0, O >= 1,
 * ldy >= the output columns, x, w, y, bias and partial_ws 16-byte aligned,
 * and O % 16 == 0 for KG_SILU_MUL_BF16. 0, -E_INVAL (logged) or the
 * launch's error. */
int gemm_run(struct gpu *g, const struct k_gemm *a_in, gpu_ptr partial_ws);

/* Fused gate/up weights for KG_SILU_MUL_BF16, host memory (bf16 bits):
 * gate and up are (ffn, K); dst is (2 * ffn, K) in blocks of 16 rows, 8 gate
 * rows then the same 8 up rows. ffn % 8 == 0. The output has ffn columns. */
void gemm_interleave_gate_up(ts_bf16 *dst, const ts_bf16 *gate, const ts_bf16 *up, int ffn, int K);

/* The same order for biases: dst (2 * ffn) from gate, up (ffn). */
void gemm_interleave_bias(float *dst, const float *gate, const float *up, int ffn);

#endif
