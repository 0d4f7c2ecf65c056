/* fwd_int.h: what the GPU backend's files share (not an API): the device
 * copy of one model on one GPU (struct gpub), and the four jobs, one file each:
 *   fwd_arena.c   the arena plan: every device buffer carved in one fixed order
 *   fwd_upload.c  weight upload: bf16 conversion through pinned staging
 *   fwd_graph.c   decode CUDA graphs per batch-size bucket
 *   fwd.c         the forward pass as a list of ops, the steps, the backend ops
 * Threads: the engine thread. */
#ifndef TS_FWD_INT_H
#define TS_FWD_INT_H

#include "backend.h"
#include "gpu.h"
#include "ts_kernels.h"

#define N_BUCKETS 12 /* decode graphs for batch sizes 1, 2, 4, ... up to max_seqs */

struct glayer {
	gpu_ptr attn_norm, ffn_norm; /* bf16 (dim) */
	gpu_ptr wqkv;                /* bf16 (q_dim + 2 kv_dim, dim): q | k | v rows */
	gpu_ptr bqkv;                /* f32 (q_dim + 2 kv_dim) or 0 */
	gpu_ptr q_norm, k_norm;      /* bf16 (head_dim) or 0 */
	gpu_ptr wo;                  /* bf16 (dim, q_dim) */
	gpu_ptr bo;                  /* f32 (dim) or 0 */
	gpu_ptr wgu;                 /* bf16 (2 ffn, dim), gemm_interleave_gate_up layout */
	gpu_ptr wd;                  /* bf16 (dim, ffn) */
};

struct gpub {
	struct gpu g;
	struct glayer *L;            /* (n_layers) */
	gpu_ptr embed, final_norm, lm_head, inv_freq;
	gpu_ptr kv;                  /* (n_layers, 2, n_blocks + 1, block_tokens, kv_dim) bf16; block n_blocks is scratch */
	size_t kv_layer;             /* elements per layer per K or V */
	/* workspace, sized for T = max_batch_tokens tokens and R = max_seqs + 1 rows */
	gpu_ptr x;                   /* f32 (T, dim) residual */
	gpu_ptr xb;                  /* bf16 (T, dim) normed */
	gpu_ptr qkv;                 /* f32 (T, q_dim + 2 kv_dim) */
	gpu_ptr q;                   /* bf16 (T, q_dim) roped */
	gpu_ptr att;                 /* bf16 (T, q_dim) */
	gpu_ptr h;                   /* bf16 (T, ffn) silu(gate) * up */
	gpu_ptr xf;                  /* bf16 (R, dim) final-normed rows */
	gpu_ptr logits;              /* f32 (R, vocab) */
	gpu_ptr gemm_ws, attn_ws;
	/* per-step metadata: device copy and its pinned host mirror, one upload */
	gpu_ptr meta;
	int32_t *meta_h;
	size_t meta_words;
	int32_t *m_token, *m_pos, *m_seq, *m_rows, *m_dec, *m_pre, *m_blocks; /* views into meta_h */
	gpu_ptr d_token, d_pos, d_seq, d_rows, d_dec, d_pre, d_blocks;        /* the same views on the device */
	float *logits_h;             /* pinned (R, vocab) */
	/* device sampling: per-row parameters, token histories, results */
	gpu_ptr d_srows, d_hist, d_sampled, samp_ws;
	struct k_samp_row *srows_h;  /* pinned (R) */
	int32_t *hist_h;             /* pinned (R, max_seq_len) */
	int32_t *sampled_h;          /* pinned (R) */
	int max_seq_len;
	uint64_t dev_weight_bytes;   /* bf16 weights (+ f32 biases) in the arena */
	int T, R, max_blocks, block_tokens, n_kv_blocks;
	gpu_graph graph[2][N_BUCKETS]; /* [0] ends in the logits copy, [1] in device sampling */
	int bucket_n[N_BUCKETS], n_buckets;
	int captured_layers;
	int ordinal;                 /* the device: [device] gpus' first, the index of fwd.c's devs[] */
};

#define DP(ptr) ((void *)(uintptr_t)(ptr))

/* Walks every device buffer in one fixed order: with p->g.arena == 0 it only
 * adds up the bytes, else it carves the arena (fwd_arena.c). */
uint64_t fwd_arena_carve(struct gpub *p, const struct model *m, const struct backend_limits *l, int n_sm);

/* Every weight of m into p's buffers as bf16 (biases f32), logged (fwd_upload.c). */
int fwd_upload(struct gpub *p, const struct model *m, struct ts_err *e);

/* Captures the decode graphs (fwd_graph.c); the bucket a batch of n decodes replays, or -1. */
int fwd_graph_capture(struct gpub *p, const struct model *m, int max_seqs);
int fwd_graph_bucket(const struct gpub *p, int n);

/* The forward pass of one batch whose metadata is on the device (fwd.c). */
int fwd_run(struct gpub *p, const struct model *m, int T, int n_rows, int n_dec, int n_pre, int n_layers, int sample);

#endif
