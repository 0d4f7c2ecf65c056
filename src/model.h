/* model: a decoder-only transformer described as data.
 *
 * Owns: the table of supported architectures (HF "architectures" name ->
 * which layer kinds, optional tensors, norms and config keys it has), the dims
 * read from config.json, and the per-layer plan: every layer is an attention
 * kind (GQA, possibly with an output gate; MLA; LINEAR: Gated DeltaNet with a
 * recurrent state) times an MLP kind (dense, MoE), and each kind has a table of tensors (HF name, shape in terms
 * of the dims, when it is present). model_load binds every tensor of every
 * layer's plan to the checkpoint, checking names, shapes and dtypes, so a new
 * kind adds rows, not a loader. The KV layout belongs to the attention kind
 * (model_kv_width), and so does the recurrent state (model_state_elems).
 * Does not: know about CUDA, compute, or allocate per token.
 * Threads: boot thread; a loaded model is read-only.
 */
#ifndef TS_MODEL_H
#define TS_MODEL_H

#include "base.h"
#include "ckpt.h"

enum rope_kind { ROPE_DEFAULT, ROPE_LINEAR, ROPE_LLAMA3, ROPE_YARN };

/* What a layer's token mixer is. Backends switch on it in one place each. */
enum attn_kind {
	ATTN_GQA,    /* q/k/v projections, grouped-query attention over a K and V cache */
	ATTN_MLA,    /* DeepSeek multi-head latent attention over a latent + rope-key cache */
	ATTN_LINEAR, /* Gated DeltaNet (Qwen3-Next, Qwen3.5): a causal conv and a delta-rule recurrent state */
	ATTN_KIND_N
};
enum mlp_kind { MLP_DENSE, MLP_MOE, MLP_KIND_N };

/* MoE routing, as the HF families compute it. */
enum moe_score { MOE_SOFTMAX, MOE_SIGMOID };
enum moe_group {
	MOE_GROUP_NONE, /* top-k over all experts */
	MOE_GROUP_MAX,  /* DeepSeek-V2 group_limited_greedy: a group scores its best expert */
	MOE_GROUP_TOP2, /* DeepSeek-V3 noaux_tc: a group scores the sum of its best two */
};

#define MODEL_MAX_EOS 8
#define MODEL_MAX_TOPK 64    /* experts per token */
#define MODEL_MAX_GROUPS 256 /* expert groups (n_group) */

struct model_dims {
	int dim;          /* hidden size */
	int n_layers;
	int n_heads;
	int n_kv_heads;   /* GQA; MLA: = n_heads */
	int head_dim;     /* GQA: per head; MLA: qk_nope_dim + qk_rope_dim */
	int q_dim;        /* n_heads * head_dim */
	int kv_dim;       /* GQA: n_kv_heads * head_dim; MLA: 0 */
	int ffn_dim;      /* dense MLP layers */
	int vocab;
	int max_pos;      /* max_position_embeddings */
	int sliding_window; /* 0 = full attention */
	float rms_eps;
	float attn_scale; /* softmax scale: head_dim^-0.5, MLA qk_head_dim^-0.5 (* YaRN mscale^2 for V3) */
	/* RoPE */
	float rope_theta;
	enum rope_kind rope;
	int rope_dim;               /* rotated dims per head: head_dim (GQA), qk_rope_dim (MLA) */
	int rope_interleaved;       /* pairs (2i, 2i + 1) (DeepSeek) instead of (i, i + rope_dim / 2) */
	float rope_attn_factor;     /* cos and sin are multiplied by it (YaRN), else 1 */
	float rope_factor;          /* linear, llama3, yarn */
	float rope_low_freq_factor; /* llama3 */
	float rope_high_freq_factor;
	int rope_orig_max_pos;      /* llama3, yarn */
	float rope_beta_fast, rope_beta_slow; /* yarn */
	int rope_truncate;          /* yarn: correction range floored / ceiled */
	/* MLA */
	int q_lora_rank;  /* 0: q_proj straight from the hidden state */
	int kv_lora_rank;
	int qk_nope_dim, qk_rope_dim, v_head_dim;
	/* MoE */
	int n_experts;    /* routed experts; 0 = dense model */
	int n_experts_tok; /* top-k */
	int moe_ffn_dim;  /* one expert's intermediate size */
	int shared_ffn_dim; /* shared expert(s) as one MLP, 0 = none */
	int norm_topk;    /* renormalise the k weights to sum 1 */
	float routed_scale; /* routed_scaling_factor */
	enum moe_score moe_score;
	enum moe_group moe_group;
	int n_group, topk_group;
	int n_moe_layers;
	int shared_gate;  /* Qwen3-Next: sigmoid(shared_expert_gate x) scales the shared expert */
	/* Hybrid families (Qwen3-Next, Qwen3.5) */
	int norm_offset;  /* 1: RMSNorm weights are zero-centred, x * (1 + w) (not the gated norm) */
	int attn_gate;    /* q_proj carries an output gate: per head q (head_dim) then gate (head_dim) */
	int n_linear_layers;
	int lin_nk, lin_nv;   /* linear_num_key_heads, linear_num_value_heads (nv % nk == 0) */
	int lin_dk, lin_dv;   /* linear_key_head_dim, linear_value_head_dim */
	int lin_conv;         /* linear_conv_kernel_dim: the depthwise causal conv's width */
	int lin_split;        /* Qwen3.5: in_proj_qkv / in_proj_z / in_proj_b / in_proj_a; else Qwen3-Next's
			       * fused in_proj_qkvz / in_proj_ba, grouped per key head */
	int tied;         /* lm_head shares embed_tokens */
	int n_eos;
	int32_t eos[MODEL_MAX_EOS];
	int32_t bos;      /* -1 if none */
};

/* A bound weight: a view into the checkpoint's mapping. A 1-D tensor has
 * rows = 1; one expert of a fused 3-D tensor is a 2-D view into it. */
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

/* ATTN_GQA */
struct model_gqa {
	struct model_w wq, wk, wv;     /* (q_dim, dim), (kv_dim, dim), (kv_dim, dim) */
	struct model_w bq, bk, bv;     /* (q_dim), (kv_dim), (kv_dim): Qwen2, attention_bias */
	struct model_w q_norm, k_norm; /* (head_dim): Qwen3 */
	struct model_w wo;             /* (dim, q_dim) */
	struct model_w bo;             /* (dim): attention_bias */
};

/* ATTN_MLA. The cache holds, per token, kv_a_norm(latent) (kv_lora_rank)
 * then the roped k_pe (qk_rope_dim): model_kv_width. */
struct model_mla {
	struct model_w wq;        /* (n_heads * (nope + rope), dim); absent with q LoRA */
	struct model_w wq_a;      /* (q_lora_rank, dim) */
	struct model_w q_a_norm;  /* (q_lora_rank) */
	struct model_w wq_b;      /* (n_heads * (nope + rope), q_lora_rank) */
	struct model_w wkv_a;     /* (kv_lora_rank + rope, dim): latent | k_pe */
	struct model_w kv_a_norm; /* (kv_lora_rank) */
	struct model_w wkv_b;     /* (n_heads * (nope + v), kv_lora_rank): per head nope k rows, then v rows */
	struct model_w wo;        /* (dim, n_heads * v) */
};

/* A SiLU-gated MLP: a dense layer's, one expert's, or the shared experts'. */
struct model_mlp {
	struct model_w w_gate, w_up; /* (ffn, dim) */
	struct model_w w_down;       /* (dim, ffn) */
};

/* MLP_MOE */
struct model_moe {
	struct model_w router;      /* (n_experts, dim) */
	struct model_w router_bias; /* (n_experts): e_score_correction_bias, for the choice only; or absent */
	struct model_mlp *experts;  /* (n_experts) views: per-expert tensors or slices of fused ones */
	struct model_mlp shared;    /* (shared_ffn_dim): absent when shared_ffn_dim = 0 */
	struct model_w shared_gate; /* (1, dim): Qwen3-Next's shared_expert_gate, or absent */
};

/* ATTN_LINEAR: Gated DeltaNet. key_dim = nk * dk, value_dim = nv * dv,
 * conv_dim = 2 * key_dim + value_dim (the conv runs over q | k | v). */
struct model_linear {
	/* Qwen3-Next: per key head g, rows [q (dk), k (dk), v (r * dv), z (r * dv)]
	 * and [b (r), a (r)], r = nv / nk (fix_query_key_value_ordering) */
	struct model_w in_qkvz;  /* (2 * key_dim + 2 * value_dim, dim) */
	struct model_w in_ba;    /* (2 * nv, dim) */
	/* Qwen3.5: flat q | k | v, then z, b, a */
	struct model_w in_qkv;   /* (conv_dim, dim) */
	struct model_w in_z;     /* (value_dim, dim) */
	struct model_w in_b, in_a; /* (nv, dim) */
	struct model_w conv;     /* (conv_dim, lin_conv): conv1d.weight [conv_dim, 1, lin_conv] */
	struct model_w dt_bias;  /* (nv) */
	struct model_w a_log;    /* (nv) A_log */
	struct model_w norm;     /* (dv) gated RMSNorm weight (plain w, not zero-centred) */
	struct model_w out;      /* (dim, value_dim) out_proj */
};

struct model_layer {
	enum attn_kind attn;
	enum mlp_kind mlp;
	struct model_w attn_norm; /* (dim) */
	struct model_w ffn_norm;  /* (dim) */
	struct model_gqa gqa;     /* ATTN_GQA */
	struct model_mla mla;     /* ATTN_MLA */
	struct model_linear lin;  /* ATTN_LINEAR */
	struct model_mlp ffn;     /* MLP_DENSE (ffn_dim) */
	struct model_moe moe;     /* MLP_MOE */
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
	struct model_mlp *experts;     /* (n_moe_layers * n_experts): what the layers' moe.experts point into */
	uint64_t weight_bytes;         /* bytes of bound weights (tied counted once) */
	int fused_experts;             /* the checkpoint stores experts as 3-D tensors */
	const char *tprefix;           /* the text model's tensors: "model." or "model.language_model." */
	int n_skipped;                 /* checkpoint tensors outside the text model (vision tower, MTP) */
	uint64_t skipped_bytes;
};

/* Reads ck->config and binds every tensor. Errors name the checkpoint's
 * config.json key or tensor, the expected and found shape, and what to do. */
int model_load(struct model *m, const struct ckpt *ck, struct ts_err *e);
void model_free(struct model *m);

/* RoPE inverse frequencies (rope_dim / 2 floats), in float32 and in the order
 * of operations HF uses for the default, linear, llama3 and yarn rope types,
 * so that both backends rotate exactly as transformers does. */
void model_rope_freqs(const struct model_dims *d, float *inv_freq);

/* Comma-separated list of supported HF architecture names. */
const char *model_supported(void);

/* Names for logs. */
const char *model_attn_name(enum attn_kind k);
const char *model_mlp_name(enum mlp_kind k);

/* Elements one token takes in layer l's cache (K and V for GQA, latent and
 * rope key for MLA). The backends store them in their own dtype. */
int model_kv_width(const struct model *m, int l);

/* Floats of recurrent state one sequence takes in layer l (LINEAR: the conv
 * window (lin_conv - 1) * conv_dim, then the delta-rule state nv * dk * dv;
 * else 0). Backends keep it in fp32. */
uint64_t model_state_elems(const struct model *m, int l);

/* The sum of model_state_elems over the layers: one sequence's state. */
uint64_t model_state_elems_per_seq(const struct model *m);

/* The sum of model_kv_width over the layers. */
uint64_t model_kv_elems_per_token(const struct model *m);

/* Weight bytes a decode step of one token reads: every layer weight plus the
 * LM head, the embedding as one row, and for MoE layers the router, the
 * shared experts and n_experts_tok routed experts (not all of them). For
 * bandwidth floors. */
uint64_t model_step_bytes(const struct model *m);

#endif
