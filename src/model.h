/* model: a decoder-only transformer described as data.
 *
 * Owns: the table of supported architectures (HF "architectures" name ->
 * which optional tensors and norms it has), the dims read from config.json,
 * and the per-layer plan: for every tensor, its HF name, its expected shape in
 * terms of the dims, and whether it is required. model_load binds every
 * tensor of the plan to the checkpoint, checking names, shapes and dtypes, so
 * that a later architecture (MoE, MLA) adds a description, not a loader.
 * Does not: know about CUDA, compute, or allocate per token.
 * Threads: boot thread; a loaded model is read-only.
 */
#ifndef TS_MODEL_H
#define TS_MODEL_H

#include "base.h"
#include "ckpt.h"

enum rope_kind { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3 };

#define MODEL_MAX_EOS 8

struct model_dims {
	int dim;          /* hidden size */
	int n_layers;
	int n_heads;
	int n_kv_heads;
	int head_dim;
	int q_dim;        /* n_heads * head_dim */
	int kv_dim;       /* n_kv_heads * head_dim */
	int ffn_dim;
	int vocab;
	int max_pos;      /* max_position_embeddings */
	int sliding_window; /* 0 = full attention */
	float rms_eps;
	float rope_theta;
	enum rope_kind rope;
	float rope_factor;          /* linear and llama3 */
	float rope_low_freq_factor; /* llama3 */
	float rope_high_freq_factor;
	int rope_orig_max_pos;
	int tied;         /* lm_head shares embed_tokens */
	int n_eos;
	int32_t eos[MODEL_MAX_EOS];
	int32_t bos;      /* -1 if none */
};

/* A bound weight: a view into the checkpoint's mapping. A 1-D tensor has
 * rows = 1. */
struct model_w {
	const void *data; /* NULL when the tensor is absent (optional ones only) */
	enum ts_dtype dtype;
	int64_t rows, cols;
};

/* Element i of a bound weight as float, whatever its dtype. */
static inline float model_w_at(const struct model_w *w, int64_t i)
{
	switch (w->dtype) {
	case TS_F32:
		return ((const float *)w->data)[i];
	case TS_BF16:
		return ts_bf16_to_f32(((const uint16_t *)w->data)[i]);
	case TS_F16:
		return ts_f16_to_f32(((const uint16_t *)w->data)[i]);
	case TS_DTYPE_N:
		break;
	}
	return 0;
}

struct model_layer {
	struct model_w attn_norm;      /* (dim) */
	struct model_w wq, wk, wv;     /* (q_dim, dim), (kv_dim, dim), (kv_dim, dim) */
	struct model_w bq, bk, bv;     /* (q_dim), (kv_dim), (kv_dim): Qwen2, attention_bias */
	struct model_w q_norm, k_norm; /* (head_dim): Qwen3 */
	struct model_w wo;             /* (dim, q_dim) */
	struct model_w bo;             /* (dim): attention_bias */
	struct model_w ffn_norm;       /* (dim) */
	struct model_w w_gate, w_up;   /* (ffn_dim, dim) */
	struct model_w w_down;         /* (dim, ffn_dim) */
};

struct model_arch; /* one row of the architecture table */

struct model {
	const struct model_arch *arch;
	const char *arch_name;         /* e.g. "LlamaForCausalLM" */
	struct model_dims d;
	struct model_w embed;          /* (vocab, dim) */
	struct model_w final_norm;     /* (dim) */
	struct model_w lm_head;        /* (vocab, dim); = embed when tied */
	struct model_layer *layers;    /* (n_layers) */
	uint64_t weight_bytes;         /* bytes of bound weights (tied counted once) */
};

/* Reads ck->config and binds every tensor. Errors name the checkpoint's
 * config.json key or tensor, the expected and found shape, and what to do. */
int model_load(struct model *m, const struct ckpt *ck, struct ts_err *e);
void model_free(struct model *m);

/* RoPE inverse frequencies (head_dim / 2 floats), in float32 and in the order
 * of operations HF uses for the default, linear and llama3 rope types, so
 * that both backends rotate exactly as transformers does. */
void model_rope_freqs(const struct model_dims *d, float *inv_freq);

/* Comma-separated list of supported HF architecture names. */
const char *model_supported(void);

/* Weight bytes a decode step reads (every layer weight plus the LM head; the
 * embedding row is one row). For bandwidth floors. */
uint64_t model_step_bytes(const struct model *m);

#endif
