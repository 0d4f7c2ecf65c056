/* ts_kernels.h: the argument structs shared by the CUDA kernels (kernels/<family>.cu)
 * and the host code that launches them (src/gpu_*.c, src/fwd.c).
 *
 * Every kernel is `extern "C" __global__ void k_<op>_<dtype>[_<variant>](const
 * struct k_<op> a)`: one struct, passed by value. Pointers are device
 * pointers. Shapes are in the trailing comments, row-major, innermost last.
 * bf16 is ts_bf16: __nv_bfloat16 in CUDA, its bits (uint16_t) in C.
 *
 * Paged KV: each layer's K (and V) cache is (n_blocks, block_tokens, kv_dim)
 * bf16; position p of a sequence lives in block blocks[seq * max_blocks + p /
 * block_tokens], row p % block_tokens. A batch is any mix of prefill chunks and
 * decode tokens: token t belongs to sequence seq[t] at position pos[t], and all
 * positions of that sequence before pos[t] are already in the cache or earlier
 * in this batch (the RoPE/KV-write kernel runs before attention).
 */
#ifndef TS_KERNELS_H
#define TS_KERNELS_H

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <stdint.h>
typedef __nv_bfloat16 ts_bf16;
#else
#include <stdint.h>
typedef uint16_t ts_bf16;
#endif

/* ------------------------------------------------------------ elem */

/* x[t] = float(table[token[t]]) */
struct k_embed {
	const ts_bf16 *table;   /* (vocab, dim) */
	const int32_t *token;   /* (T) */
	float *x;               /* (T, dim) */
	int T, dim;
};

/* out[i] = bf16(x[r] * rsqrt(mean(x[r]^2) + eps) * w), r = rows ? rows[i] : i
 * (HF LlamaRMSNorm in float32, rounded once). */
struct k_rmsnorm {
	const float *x;         /* (*, dim) */
	const int32_t *rows;    /* (T) or NULL */
	const ts_bf16 *w;       /* (dim) */
	ts_bf16 *out;           /* (T, dim) */
	int T, dim;
	float eps;
};

/* Per token: optional per-head RMSNorm of q and k (Qwen3), rotate-half RoPE
 * at pos[t] with angle = float(pos) * inv_freq[i] (float32, as HF), then
 * q -> bf16 q_out, and k, v -> bf16 into the paged cache. */
struct k_rope_kv {
	const float *qkv;       /* (T, q_dim + 2 * kv_dim): q | k | v, biases already added */
	ts_bf16 *q;             /* (T, q_dim) */
	ts_bf16 *kc, *vc;       /* (n_blocks, block_tokens, kv_dim) this layer */
	const int32_t *pos;     /* (T) */
	const int32_t *seq;     /* (T) */
	const int32_t *blocks;  /* (n_seqs, max_blocks) */
	const ts_bf16 *q_norm;  /* (head_dim) or NULL */
	const ts_bf16 *k_norm;  /* (head_dim) or NULL */
	const float *inv_freq;  /* (head_dim / 2) */
	int T, n_heads, n_kv_heads, head_dim, block_tokens, max_blocks;
	float eps;
};

/* ------------------------------------------------------------ gemm */

/* y = x w^T (+ bias), fp32 accumulation, then the epilogue of `mode`:
 *   KG_STORE_F32      y (f32)  = acc
 *   KG_ADD_F32        y (f32) += acc          (residual add)
 *   KG_STORE_BF16     y (bf16) = acc
 *   KG_SILU_MUL_BF16  y (bf16, O/2 columns) = silu(gate) * up, where w holds
 *                     gate and up rows interleaved as gemm_interleave_gate_up
 *                     (src/gpu_gemm.h) lays them out.
 * split_k > 1: each split writes (split_k, T, O) f32 partials; a reduce
 * kernel sums them in a fixed order and applies the epilogue. */
enum k_gemm_mode { KG_STORE_F32, KG_ADD_F32, KG_STORE_BF16, KG_SILU_MUL_BF16 };

struct k_gemm {
	const ts_bf16 *x;       /* (T, K) */
	const ts_bf16 *w;       /* (O, K) */
	const float *bias;      /* (O) or NULL; for SILU_MUL in the interleaved order */
	void *y;                /* (T, ldy) */
	float *partial;         /* (split_k, T, O) when split_k > 1 */
	int T, K, O, ldy;
	int mode;
	int split_k;
};

/* ------------------------------------------------------------ attention */

/* out[t, h] = softmax(q[t, h] . K[j] * scale) V[j] over the positions j of
 * seq[t] with pos[t] - window < j <= pos[t] (window 0 = no window), kv head
 * h / (n_heads / n_kv_heads). Decode: split along j into n_split pieces whose
 * (acc, max, sum) partials a reduce kernel merges. Prefill: query tiles of one
 * sequence share the K/V they read. Which tokens take which path is the
 * launcher's choice (src/gpu_attn.h); both give the same function. */
struct k_attn {
	const ts_bf16 *q;       /* (T, n_heads * head_dim) */
	const ts_bf16 *kc, *vc; /* (n_blocks, block_tokens, n_kv_heads * head_dim) */
	const int32_t *pos;     /* (T) */
	const int32_t *seq;     /* (T) */
	const int32_t *blocks;  /* (n_seqs, max_blocks) */
	const int32_t *tok;     /* (n_tok) token indices this launch handles, or NULL = all T */
	int n_tok;
	float *part;            /* decode: (T, n_heads, n_split, head_dim + 2) */
	ts_bf16 *out;           /* (T, n_heads * head_dim) */
	int T, n_heads, n_kv_heads, head_dim, block_tokens, max_blocks;
	int n_split, window;
	float scale;
};

/* ------------------------------------------------------------ moe */

/* Routing of a token from its router logits (kernels/moe.cu, one warp per
 * token):
 *   p[e]  = softmax(logits)[e] (KM_SOFTMAX) or sigmoid(logits[e]) (KM_SIGMOID)
 *   c[e]  = p[e] + bias[e] (bias NULL: c = p): the choice score
 *   groups (KM_GROUP_MAX: a group's score is its largest c, DeepSeek-V2
 *   group_limited_greedy; KM_GROUP_TOP2: the sum of its two largest c,
 *   DeepSeek-V3): the topk_group best groups stay, every c outside them
 *   becomes 0.0 (transformers' masked_fill value)
 *   ids   = the k experts of largest c, in descending c; equal c: the lower
 *           expert index first (groups likewise)
 *   w[s]  = p[ids[s]], then / (sum of the k + renorm_eps) if renorm, then *
 *           scale (the sum in rank order).
 * Families: Qwen3-MoE softmax, renorm = norm_topk_prob, scale 1; Mixtral
 * softmax, renorm 1; DeepSeek-V2 softmax, GROUP_NONE (greedy) or GROUP_MAX,
 * its renorm and routed_scaling_factor; DeepSeek-V3 sigmoid + bias,
 * GROUP_TOP2, renorm_eps 1e-20, routed_scaling_factor. */
enum k_moe_score { KM_SOFTMAX, KM_SIGMOID };
enum k_moe_group { KM_GROUP_NONE, KM_GROUP_MAX, KM_GROUP_TOP2 };

struct k_moe_route {
	const float *logits;    /* (T, ld_logits): the first E columns are the router's */
	const float *bias;      /* (E) e_score_correction_bias, or NULL */
	int32_t *ids;           /* (T, k) */
	float *w;               /* (T, k) */
	int T, E, k, ld_logits;
	int score, group;       /* enum k_moe_score, enum k_moe_group */
	int n_group, topk_group;
	int renorm;
	float renorm_eps, scale;
};

/* The step's permutation (one block): the T * k (token, slot) entries i = t *
 * k + s sorted by expert, then by i; counts and offsets per expert; rank, the
 * inverse; and the GEMM tiles: each expert's run cut into pieces of at most
 * tile_rows entries, as (expert, first sorted row, rows, 0), n_tiles of them,
 * in expert order. No atomics: every output is a function of ids alone. */
struct k_moe_plan {
	const int32_t *ids;     /* (T * k) */
	int32_t *counts;        /* (E) */
	int32_t *offsets;       /* (E + 1) */
	int32_t *rows;          /* (T * k) sorted row j -> entry i */
	int32_t *rank;          /* (T * k) entry i -> sorted row j */
	int32_t *tiles;         /* (max_tiles, 4) */
	int32_t *n_tiles;       /* (1) */
	int T, k, E, tile_rows, max_tiles;
};

/* The experts' GEMM over the plan's tiles, y = x w[e]^T per sorted row:
 *   KG_SILU_MUL_BF16  x row of sorted row j: token rows[j] / k of x (T, K);
 *                     w (E, O, K) gate/up interleaved per expert as
 *                     gemm_interleave_gate_up; y bf16 (T * k, ldy), O / 2
 *                     columns: silu(gate) * up
 *   KG_STORE_F32      x row j of x (T * k, K); w (E, O, K); y f32 (T * k, ldy)
 * Every output element is summed in one fixed order that depends on K only
 * (k-steps of 32 in MG_WK fixed slices, added in slice order), whatever the
 * tile size or the expert's token count: a token's result does not depend on
 * the other tokens of the step. */
struct k_moe_gemm {
	const ts_bf16 *x;
	const ts_bf16 *w;
	void *y;
	const int32_t *rows;    /* (T * k) the plan's */
	const int32_t *tiles;   /* (max_tiles, 4) the plan's */
	const int32_t *n_tiles; /* (1) */
	int K, O, ldy, k;
	int mode;               /* KG_SILU_MUL_BF16 or KG_STORE_F32 */
};

/* x[t] += sum over s = 0..k-1 (in that order) of w[t, s] * y[rank[t k + s]]
 * + sigmoid(sgate[t * ld_sgate]) * shared[t] (sgate NULL: gate 1; shared
 * NULL: no shared expert). */
struct k_moe_combine {
	const float *y;         /* (T * k, ldy) */
	const int32_t *rank;    /* (T * k) */
	const float *w;         /* (T, k) */
	const float *shared;    /* (T, ld_shared) or NULL */
	const float *sgate;     /* (T, ld_sgate) or NULL */
	float *x;               /* (T, dim) */
	int T, k, dim, ldy, ld_shared, ld_sgate;
};

/* ------------------------------------------------------------ sampling */

/* One row's sampling parameters, the same fields and rules as src/samp.h. */
struct k_samp_row {
	float temperature, top_p, min_p;
	float repetition_penalty, presence_penalty, frequency_penalty;
	int32_t top_k;
	int32_t n_prompt, n_out;  /* token history in hist[hist_off ...] */
	int32_t hist_off;
	uint64_t seed, pos;
};

struct k_sample {
	float *logits;          /* (n, ld) modified in place (penalties, temperature) */
	int ld, vocab, n;
	const struct k_samp_row *rows; /* (n) */
	const int32_t *hist;    /* prompt then generated tokens of every row */
	int32_t *out;           /* (n) sampled ids */
	float *work;            /* (n, vocab) scratch */
};

#endif
