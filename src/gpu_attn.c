/* gpu_attn: grids and launches for kernels/attn.cu (see gpu_attn.h).
 *
 * The kernel's shapes (64-key tiles, 128 decode threads, 16 rows per warp,
 * AT_STAGES K/V stages, AT_PREFILL_WARPS prefill warps, rows padded by 16
 * bytes) appear here through the block sizes and the shared-memory sizes
 * below, which must match kernels/attn.cu (built with the same -D knobs); the
 * kernels trap when given less shared memory than they need.
 */
#include "gpu_attn.h"

#include "log.h"

#define ATTN_THREADS 128
#ifndef ATTN_STAGES
#define ATTN_STAGES 2 /* AT_STAGES of kernels/attn.cu */
#endif
#ifndef ATTN_PREFILL_WARPS
#define ATTN_PREFILL_WARPS 8 /* AT_PREFILL_WARPS of kernels/attn.cu */
#endif
#define ATTN_PR (16 * ATTN_PREFILL_WARPS) /* prefill rows per block */
#define ATTN_STAGES_256 3 /* AT_STAGES_256 of kernels/attn.cu: decode stages at head_dim 256 */
#define ATTN_RS(hd) ((hd) + 8)
#define ATTN_DECODE_STAGES(hd) ((hd) == 256 ? ATTN_STAGES_256 : ATTN_STAGES)
#define ATTN_DECODE_SMEM(hd) (16 * ATTN_RS(hd) * 2 + ATTN_DECODE_STAGES(hd) * 2 * 64 * ATTN_RS(hd) * 2)
#define ATTN_PREFILL_SMEM(hd) (3 * ATTN_PR * 4 + ATTN_PR * ATTN_RS(hd) * 2 + ATTN_STAGES * 2 * 64 * ATTN_RS(hd) * 2)

/* ------------------------------------------------------------ sizes */

/* Decode blocks per token: one per kv head and 16-head row group. */
static int attn_rows_blocks(int n_heads, int n_kv_heads)
{
	int G = n_heads / n_kv_heads;
	return n_kv_heads * ((G + 15) / 16);
}

static int attn_splits_for(int n_tok, int blocks_per_tok, int n_sm)
{
	long target = (long)ATTN_BLOCKS_PER_SM * (n_sm > 0 ? n_sm : 1);
	long base = (long)n_tok * blocks_per_tok;
	long s = (target + base - 1) / base;
	return (int)(s < 1 ? 1 : s > ATTN_MAX_SPLIT ? ATTN_MAX_SPLIT : s);
}

int attn_decode_splits(int n_tok, int n_heads, int n_kv_heads, int n_sm)
{
	return attn_splits_for(n_tok, attn_rows_blocks(n_heads, n_kv_heads), n_sm);
}

/* A launch of n tokens with b >= 1 blocks per token needs n * splits(n, b)
 * partial rows per head when it splits; splits(n, b) <= splits(n, 1), so
 * b = 1 bounds every n_kv_heads. */
uint64_t attn_workspace_bytes(int max_T, int n_heads, int head_dim, int n_sm)
{
	uint64_t rows = 0;
	for (int n = 1; n <= max_T; n++) {
		int s = attn_splits_for(n, 1, n_sm);
		if (s > 1 && (uint64_t)n * (uint64_t)s > rows)
			rows = (uint64_t)n * (uint64_t)s;
	}
	return rows * (uint64_t)n_heads * (uint64_t)(head_dim + 2) * sizeof(float);
}

/* ------------------------------------------------------------ launch */

/* The decode and prefill kernels of each head size, and the shared memory
 * each needs at it (set once per kernel at boot). */
static const struct {
	int hd;
	enum gpu_kernel dec, pre;
} attn_kernels[] = {
	{64, GPU_K_ATTN_DECODE, GPU_K_ATTN_PREFILL},
	{128, GPU_K_ATTN_DECODE, GPU_K_ATTN_PREFILL},
	{96, GPU_K_ATTN_DECODE_96, GPU_K_ATTN_PREFILL_96},
	{256, GPU_K_ATTN_DECODE_256, GPU_K_ATTN_PREFILL_256},
};

static int attn_kernel_of(int hd, int prefill, enum gpu_kernel *k)
{
	for (size_t i = 0; i < TS_ARRAY_LEN(attn_kernels); i++)
		if (attn_kernels[i].hd == hd) {
			*k = prefill ? attn_kernels[i].pre : attn_kernels[i].dec;
			return 0;
		}
	return -E_UNSUPPORTED;
}

int attn_init(struct gpu *g)
{
	/* the 64/128 kernels take the 128 sizes; each other size its own */
	for (size_t i = 0; i < TS_ARRAY_LEN(attn_kernels); i++) {
		const int hd = attn_kernels[i].hd == 64 ? 128 : attn_kernels[i].hd;
		unsigned dec = ATTN_DECODE_SMEM(hd), pre = ATTN_PREFILL_SMEM(hd);
		unsigned most = dec > pre ? dec : pre;
		if (g->info.smem_optin > 0 && (unsigned)g->info.smem_optin < most) {
			log_error("gpu_attn: device %s offers %d bytes of shared memory per block; attention at "
				  "head_dim %d needs %u",
				  g->info.name, g->info.smem_optin, attn_kernels[i].hd, most);
			return -E_UNSUPPORTED;
		}
		int rc = gpu_set_smem(g, attn_kernels[i].dec, dec);
		if (rc == 0)
			rc = gpu_set_smem(g, attn_kernels[i].pre, pre);
		if (rc)
			return rc;
	}
	return 0;
}

static int attn_check(const struct k_attn *a)
{
	if (!attn_head_dim_supported(a->head_dim)) {
		log_error("gpu_attn: head_dim=%d unsupported: the attention kernels take head_dim " ATTN_HEAD_DIMS,
			  a->head_dim);
		return -E_UNSUPPORTED;
	}
	if (a->n_kv_heads < 1 || a->n_heads < a->n_kv_heads || a->n_heads % a->n_kv_heads) {
		log_error("gpu_attn: n_heads=%d is not a multiple of n_kv_heads=%d", a->n_heads, a->n_kv_heads);
		return -E_INVAL;
	}
	if (a->n_heads / a->n_kv_heads > 64) {
		log_error("gpu_attn: GQA group %d unsupported: at most 64 query heads per kv head",
			  a->n_heads / a->n_kv_heads);
		return -E_UNSUPPORTED;
	}
	if (a->block_tokens < 1 || a->max_blocks < 1 || a->T < 0 || (a->tok && a->n_tok < 0)) {
		log_error("gpu_attn: bad shape block_tokens=%d max_blocks=%d T=%d n_tok=%d", a->block_tokens,
			  a->max_blocks, a->T, a->n_tok);
		return -E_INVAL;
	}
	if (((uintptr_t)a->q | (uintptr_t)a->kc | (uintptr_t)a->vc | (uintptr_t)a->out) & 15) {
		log_error("gpu_attn: q, kc, vc and out must be 16-byte aligned");
		return -E_INVAL;
	}
	return 0;
}

int attn_run(struct gpu *g, const struct k_attn *a, gpu_ptr part_ws, int mode)
{
	int rc = attn_check(a);
	if (rc)
		return rc;
	struct k_attn k = *a;
	const int hd = a->head_dim, G = a->n_heads / a->n_kv_heads;
	k.n_tok = a->tok ? a->n_tok : a->T;
	k.part = NULL;
	k.n_split = 1;
	if (k.n_tok == 0)
		return 0;

	switch ((enum attn_mode)mode) {
	case ATTN_DECODE:
	case ATTN_DECODE_NO_REDUCE: {
		int bpt = attn_rows_blocks(a->n_heads, a->n_kv_heads);
		k.n_split = attn_splits_for(k.n_tok, bpt, g->info.n_sm);
		if (k.n_split > 1) {
			if (!part_ws) {
				log_error("gpu_attn: decode of %d tokens splits %d ways but no workspace was given",
					  k.n_tok, k.n_split);
				return -E_INVAL;
			}
			k.part = (float *)(uintptr_t)part_ws;
		}
		if ((long)k.n_tok * k.n_split > 0x7fffffffL)
			return -E_INVAL;
		enum gpu_kernel kd = GPU_K_ATTN_DECODE;
		attn_kernel_of(hd, 0, &kd);
		rc = gpu_launch(g, kd, (unsigned)(k.n_tok * k.n_split), (unsigned)bpt, 1, ATTN_THREADS,
				ATTN_DECODE_SMEM(hd), &k, sizeof(k));
		if (rc == 0 && k.n_split > 1 && mode != ATTN_DECODE_NO_REDUCE)
			rc = gpu_launch(g, GPU_K_ATTN_REDUCE, (unsigned)k.n_tok, (unsigned)a->n_heads, 1, 32, 0, &k,
					sizeof(k));
		return rc;
	}
	case ATTN_PREFILL: {
		int tq = ATTN_PR / G;
		unsigned tiles = (unsigned)((k.n_tok + tq - 1) / tq);
		enum gpu_kernel kp = GPU_K_ATTN_PREFILL;
		attn_kernel_of(hd, 1, &kp);
		return gpu_launch(g, kp, tiles, (unsigned)a->n_kv_heads, 1, 2 * ATTN_PR, ATTN_PREFILL_SMEM(hd), &k,
				  sizeof(k));
	}
	}
	log_error("gpu_attn: unknown mode %d", mode);
	return -E_INVAL;
}
