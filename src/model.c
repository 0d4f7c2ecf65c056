/* model: architectures as data, config.json -> dims, the per-layer plan. */
#include "model.h"

#include <stddef.h>
#include <stdio.h>

#include "fmath.h"

/* ------------------------------------------------------------ architectures */

enum bias_rule { BIAS_NONE, BIAS_QKV, BIAS_FROM_CONFIG /* attention_bias: q, k, v and o */ };
enum window_rule { WINDOW_NONE, WINDOW_KEY /* sliding_window, default window_default */, WINDOW_REFUSE_USE };
/* Which layers are MoE and how the config spells it. */
enum moe_rule {
	MOE_NONE,
	MOE_QWEN,     /* num_experts, moe_intermediate_size; not in mlp_only_layers and (l + 1) % decoder_sparse_step == 0 */
	MOE_MIXTRAL,  /* num_local_experts, intermediate_size; every layer */
	MOE_DEEPSEEK, /* n_routed_experts, moe_intermediate_size; l >= first_k_dense_replace */
};
enum expert_names { EXPERT_HF /* gate_proj, up_proj, down_proj */, EXPERT_W123 /* w1 gate, w3 up, w2 down */ };
/* DeepSeek generation: what transformers' two MLA/MoE implementations differ in. */
enum ds_rule {
	DS_NONE,
	DS_V2, /* softmax router, greedy or group_limited_greedy (group max), no renormalisation; rope on
	        * interleaved pairs (complex form) */
	DS_V3, /* sigmoid router + e_score_correction_bias, groups scored by their best two, norm_topk_prob;
	        * rope_interleave (default true) */
};

/* Hybrid linear-attention families: which layers are Gated DeltaNet, the
 * output-gated full attention, zero-centred norms, the shared expert's gate. */
enum hybrid_rule {
	HYB_NONE,
	HYB_NEXT, /* Qwen3-Next: fused in_proj_qkvz / in_proj_ba */
	HYB_35,   /* Qwen3.5: in_proj_qkv, in_proj_z, in_proj_b, in_proj_a; config nested in text_config,
		   * tensors under model.language_model. */
};

struct model_arch {
	const char *name;        /* HF "architectures" entry */
	enum attn_kind attn;
	enum bias_rule bias;
	int qk_norm;             /* per-head RMSNorm of q and k before RoPE */
	enum window_rule window;
	int window_default;      /* WINDOW_KEY: the config class's default when the key is absent */
	enum moe_rule moe;
	const char *moe_prefix;  /* module of a MoE layer's MLP, after "model.layers.<i>." */
	enum expert_names experts;
	enum ds_rule ds;
	enum hybrid_rule hyb;
};

static const struct model_arch archs[] = {
	{"LlamaForCausalLM", ATTN_GQA, BIAS_FROM_CONFIG, 0, WINDOW_NONE, 0, MOE_NONE, NULL, EXPERT_HF, DS_NONE, HYB_NONE},
	{"MistralForCausalLM", ATTN_GQA, BIAS_NONE, 0, WINDOW_KEY, 4096, MOE_NONE, NULL, EXPERT_HF, DS_NONE, HYB_NONE},
	{"Qwen2ForCausalLM", ATTN_GQA, BIAS_QKV, 0, WINDOW_REFUSE_USE, 0, MOE_NONE, NULL, EXPERT_HF, DS_NONE, HYB_NONE},
	{"Qwen3ForCausalLM", ATTN_GQA, BIAS_FROM_CONFIG, 1, WINDOW_REFUSE_USE, 0, MOE_NONE, NULL, EXPERT_HF, DS_NONE, HYB_NONE},
	{"Qwen3MoeForCausalLM", ATTN_GQA, BIAS_FROM_CONFIG, 1, WINDOW_REFUSE_USE, 0, MOE_QWEN, "mlp", EXPERT_HF,
	 DS_NONE, HYB_NONE},
	{"MixtralForCausalLM", ATTN_GQA, BIAS_NONE, 0, WINDOW_KEY, 0, MOE_MIXTRAL, "block_sparse_moe", EXPERT_W123,
	 DS_NONE, HYB_NONE},
	{"DeepseekV2ForCausalLM", ATTN_MLA, BIAS_NONE, 0, WINDOW_NONE, 0, MOE_DEEPSEEK, "mlp", EXPERT_HF, DS_V2, HYB_NONE},
	{"DeepseekV3ForCausalLM", ATTN_MLA, BIAS_NONE, 0, WINDOW_NONE, 0, MOE_DEEPSEEK, "mlp", EXPERT_HF, DS_V3, HYB_NONE},
	/* Hybrid: attn is the full-attention layers' kind; layer_types makes the rest LINEAR. The
	 * Qwen3.5 class names are transformers' for the hub's (multimodal) checkpoints, as we know
	 * them; the vision tower is not loaded. */
	{"Qwen3NextForCausalLM", ATTN_GQA, BIAS_NONE, 1, WINDOW_REFUSE_USE, 0, MOE_QWEN, "mlp", EXPERT_HF, DS_NONE,
	 HYB_NEXT},
	{"Qwen3_5ForConditionalGeneration", ATTN_GQA, BIAS_NONE, 1, WINDOW_REFUSE_USE, 0, MOE_NONE, NULL, EXPERT_HF,
	 DS_NONE, HYB_35},
	{"Qwen3_5MoeForConditionalGeneration", ATTN_GQA, BIAS_NONE, 1, WINDOW_REFUSE_USE, 0, MOE_QWEN, "mlp",
	 EXPERT_HF, DS_NONE, HYB_35},
};

const char *model_supported(void)
{
	return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, "
	       "MixtralForCausalLM, DeepseekV2ForCausalLM, DeepseekV3ForCausalLM, Qwen3NextForCausalLM, "
	       "Qwen3_5ForConditionalGeneration, Qwen3_5MoeForConditionalGeneration";
}

const char *model_attn_name(enum attn_kind k)
{
	static const char *const n[ATTN_KIND_N] = {"gqa", "mla", "linear"};
	return (unsigned)k < ATTN_KIND_N ? n[k] : "?";
}

const char *model_mlp_name(enum mlp_kind k)
{
	static const char *const n[MLP_KIND_N] = {"dense", "moe"};
	return (unsigned)k < MLP_KIND_N ? n[k] : "?";
}

/* ------------------------------------------------------------ the layer plan */

enum dim_ref {
	D_ONE, D_DIM, D_Q, D_KV, D_FFN, D_HEAD, D_VOCAB,
	D_QH,     /* MLA: n_heads * (nope + rope) */
	D_QLORA, D_KVLORA,
	D_KVA,    /* kv_lora_rank + qk_rope_dim */
	D_KVB,    /* n_heads * (nope + v) */
	D_VO,     /* n_heads * v_head_dim */
	D_E,      /* routed experts */
	D_SHARED, /* shared experts' intermediate size */
	D_QG,     /* q_proj rows: q_dim, twice that with the output gate */
	D_QKVZ,   /* linear: 2 * key_dim + 2 * value_dim */
	D_BA,     /* linear: 2 * nv */
	D_CONV,   /* linear: conv_dim = 2 * key_dim + value_dim */
	D_LVAL,   /* linear: value_dim */
	D_NV, D_LDV, D_KCONV,
};
enum when {
	W_ALWAYS, W_QKV_BIAS, W_O_BIAS, W_QK_NORM, W_NO_QLORA, W_QLORA, W_ROUTER_BIAS, W_SHARED,
	W_SHARED1,   /* Qwen3-Next's one shared_expert and its gate */
	W_LIN_FUSED, /* Qwen3-Next's in_proj_qkvz / in_proj_ba */
	W_LIN_SPLIT, /* Qwen3.5's in_proj_qkv / _z / _b / _a */
};
/* How a tensor of (rows, cols) is stored. */
enum shape_rule {
	SH_AUTO, /* rows D_ONE: 1-D [cols]; else [rows, cols] */
	SH_ROW,  /* [1, cols]: a linear layer with one output */
	SH_CONV, /* [rows, 1, cols]: a depthwise conv1d weight */
};

struct plan_row {
	const char *suffix;      /* after "<tprefix>layers.<i>." (after "<moe_prefix>." in moe_plan) */
	size_t off;              /* of the struct model_w in struct model_layer */
	enum dim_ref rows, cols; /* rows D_ONE = a 1-D tensor of cols elements */
	enum when when;
	enum shape_rule shape;
};

#define L(f) offsetof(struct model_layer, f)
static const struct plan_row common_plan[] = {
	{"input_layernorm.weight", L(attn_norm), D_ONE, D_DIM, W_ALWAYS, SH_AUTO},
	{"post_attention_layernorm.weight", L(ffn_norm), D_ONE, D_DIM, W_ALWAYS, SH_AUTO},
};
static const struct plan_row gqa_plan[] = {
	{"self_attn.q_proj.weight", L(gqa.wq), D_QG, D_DIM, W_ALWAYS, SH_AUTO},
	{"self_attn.k_proj.weight", L(gqa.wk), D_KV, D_DIM, W_ALWAYS, SH_AUTO},
	{"self_attn.v_proj.weight", L(gqa.wv), D_KV, D_DIM, W_ALWAYS, SH_AUTO},
	{"self_attn.q_proj.bias", L(gqa.bq), D_ONE, D_Q, W_QKV_BIAS, SH_AUTO},
	{"self_attn.k_proj.bias", L(gqa.bk), D_ONE, D_KV, W_QKV_BIAS, SH_AUTO},
	{"self_attn.v_proj.bias", L(gqa.bv), D_ONE, D_KV, W_QKV_BIAS, SH_AUTO},
	{"self_attn.q_norm.weight", L(gqa.q_norm), D_ONE, D_HEAD, W_QK_NORM, SH_AUTO},
	{"self_attn.k_norm.weight", L(gqa.k_norm), D_ONE, D_HEAD, W_QK_NORM, SH_AUTO},
	{"self_attn.o_proj.weight", L(gqa.wo), D_DIM, D_Q, W_ALWAYS, SH_AUTO},
	{"self_attn.o_proj.bias", L(gqa.bo), D_ONE, D_DIM, W_O_BIAS, SH_AUTO},
};
static const struct plan_row mla_plan[] = {
	{"self_attn.q_proj.weight", L(mla.wq), D_QH, D_DIM, W_NO_QLORA, SH_AUTO},
	{"self_attn.q_a_proj.weight", L(mla.wq_a), D_QLORA, D_DIM, W_QLORA, SH_AUTO},
	{"self_attn.q_a_layernorm.weight", L(mla.q_a_norm), D_ONE, D_QLORA, W_QLORA, SH_AUTO},
	{"self_attn.q_b_proj.weight", L(mla.wq_b), D_QH, D_QLORA, W_QLORA, SH_AUTO},
	{"self_attn.kv_a_proj_with_mqa.weight", L(mla.wkv_a), D_KVA, D_DIM, W_ALWAYS, SH_AUTO},
	{"self_attn.kv_a_layernorm.weight", L(mla.kv_a_norm), D_ONE, D_KVLORA, W_ALWAYS, SH_AUTO},
	{"self_attn.kv_b_proj.weight", L(mla.wkv_b), D_KVB, D_KVLORA, W_ALWAYS, SH_AUTO},
	{"self_attn.o_proj.weight", L(mla.wo), D_DIM, D_VO, W_ALWAYS, SH_AUTO},
};
static const struct plan_row dense_plan[] = {
	{"mlp.gate_proj.weight", L(ffn.w_gate), D_FFN, D_DIM, W_ALWAYS, SH_AUTO},
	{"mlp.up_proj.weight", L(ffn.w_up), D_FFN, D_DIM, W_ALWAYS, SH_AUTO},
	{"mlp.down_proj.weight", L(ffn.w_down), D_DIM, D_FFN, W_ALWAYS, SH_AUTO},
};
static const struct plan_row moe_plan[] = { /* the routed experts are bound by bind_experts */
	{"gate.weight", L(moe.router), D_E, D_DIM, W_ALWAYS, SH_AUTO},
	{"gate.e_score_correction_bias", L(moe.router_bias), D_ONE, D_E, W_ROUTER_BIAS, SH_AUTO},
	{"shared_experts.gate_proj.weight", L(moe.shared.w_gate), D_SHARED, D_DIM, W_SHARED, SH_AUTO},
	{"shared_experts.up_proj.weight", L(moe.shared.w_up), D_SHARED, D_DIM, W_SHARED, SH_AUTO},
	{"shared_experts.down_proj.weight", L(moe.shared.w_down), D_DIM, D_SHARED, W_SHARED, SH_AUTO},
	{"shared_expert.gate_proj.weight", L(moe.shared.w_gate), D_SHARED, D_DIM, W_SHARED1, SH_AUTO},
	{"shared_expert.up_proj.weight", L(moe.shared.w_up), D_SHARED, D_DIM, W_SHARED1, SH_AUTO},
	{"shared_expert.down_proj.weight", L(moe.shared.w_down), D_DIM, D_SHARED, W_SHARED1, SH_AUTO},
	{"shared_expert_gate.weight", L(moe.shared_gate), D_ONE, D_DIM, W_SHARED1, SH_ROW},
};
static const struct plan_row linear_plan[] = {
	{"linear_attn.in_proj_qkvz.weight", L(lin.in_qkvz), D_QKVZ, D_DIM, W_LIN_FUSED, SH_AUTO},
	{"linear_attn.in_proj_ba.weight", L(lin.in_ba), D_BA, D_DIM, W_LIN_FUSED, SH_AUTO},
	{"linear_attn.in_proj_qkv.weight", L(lin.in_qkv), D_CONV, D_DIM, W_LIN_SPLIT, SH_AUTO},
	{"linear_attn.in_proj_z.weight", L(lin.in_z), D_LVAL, D_DIM, W_LIN_SPLIT, SH_AUTO},
	{"linear_attn.in_proj_b.weight", L(lin.in_b), D_NV, D_DIM, W_LIN_SPLIT, SH_AUTO},
	{"linear_attn.in_proj_a.weight", L(lin.in_a), D_NV, D_DIM, W_LIN_SPLIT, SH_AUTO},
	{"linear_attn.conv1d.weight", L(lin.conv), D_CONV, D_KCONV, W_ALWAYS, SH_CONV},
	{"linear_attn.dt_bias", L(lin.dt_bias), D_ONE, D_NV, W_ALWAYS, SH_AUTO},
	{"linear_attn.A_log", L(lin.a_log), D_ONE, D_NV, W_ALWAYS, SH_AUTO},
	{"linear_attn.norm.weight", L(lin.norm), D_ONE, D_LDV, W_ALWAYS, SH_AUTO},
	{"linear_attn.out_proj.weight", L(lin.out), D_DIM, D_LVAL, W_ALWAYS, SH_AUTO},
};
#undef L

struct kind_plan {
	const struct plan_row *rows;
	size_t n;
};
static const struct kind_plan attn_plans[ATTN_KIND_N] = {
	[ATTN_GQA] = {gqa_plan, TS_ARRAY_LEN(gqa_plan)},
	[ATTN_MLA] = {mla_plan, TS_ARRAY_LEN(mla_plan)},
	[ATTN_LINEAR] = {linear_plan, TS_ARRAY_LEN(linear_plan)},
};
static const struct kind_plan mlp_plans[MLP_KIND_N] = {
	[MLP_DENSE] = {dense_plan, TS_ARRAY_LEN(dense_plan)},
	[MLP_MOE] = {moe_plan, TS_ARRAY_LEN(moe_plan)},
};

static int64_t dim_of(const struct model_dims *d, enum dim_ref r)
{
	switch (r) {
	case D_ONE:
		return 1;
	case D_DIM:
		return d->dim;
	case D_Q:
		return d->q_dim;
	case D_KV:
		return d->kv_dim;
	case D_FFN:
		return d->ffn_dim;
	case D_HEAD:
		return d->head_dim;
	case D_VOCAB:
		return d->vocab;
	case D_QH:
		return (int64_t)d->n_heads * (d->qk_nope_dim + d->qk_rope_dim);
	case D_QLORA:
		return d->q_lora_rank;
	case D_KVLORA:
		return d->kv_lora_rank;
	case D_KVA:
		return (int64_t)d->kv_lora_rank + d->qk_rope_dim;
	case D_KVB:
		return (int64_t)d->n_heads * (d->qk_nope_dim + d->v_head_dim);
	case D_VO:
		return (int64_t)d->n_heads * d->v_head_dim;
	case D_E:
		return d->n_experts;
	case D_SHARED:
		return d->shared_ffn_dim;
	case D_QG:
		return (int64_t)d->q_dim * (1 + d->attn_gate);
	case D_QKVZ:
		return 2 * (int64_t)d->lin_nk * d->lin_dk + 2 * (int64_t)d->lin_nv * d->lin_dv;
	case D_BA:
		return 2 * (int64_t)d->lin_nv;
	case D_CONV:
		return 2 * (int64_t)d->lin_nk * d->lin_dk + (int64_t)d->lin_nv * d->lin_dv;
	case D_LVAL:
		return (int64_t)d->lin_nv * d->lin_dv;
	case D_NV:
		return d->lin_nv;
	case D_LDV:
		return d->lin_dv;
	case D_KCONV:
		return d->lin_conv;
	}
	return -1;
}

uint64_t model_state_elems(const struct model *m, int l)
{
	const struct model_dims *d = &m->d;
	if (m->layers[l].attn != ATTN_LINEAR)
		return 0;
	return (uint64_t)(d->lin_conv - 1) * (uint64_t)dim_of(d, D_CONV) +
	       (uint64_t)d->lin_nv * (uint64_t)d->lin_dk * (uint64_t)d->lin_dv;
}

uint64_t model_state_elems_per_seq(const struct model *m)
{
	uint64_t n = 0;
	for (int l = 0; l < m->d.n_layers; l++)
		n += model_state_elems(m, l);
	return n;
}

int model_kv_width(const struct model *m, int l)
{
	const struct model_dims *d = &m->d;
	switch (m->layers[l].attn) {
	case ATTN_GQA:
		return 2 * d->kv_dim;
	case ATTN_MLA:
		return d->kv_lora_rank + d->qk_rope_dim;
	case ATTN_LINEAR:
	case ATTN_KIND_N:
		break;
	}
	return 0;
}

uint64_t model_kv_elems_per_token(const struct model *m)
{
	uint64_t n = 0;
	for (int l = 0; l < m->d.n_layers; l++)
		n += (uint64_t)model_kv_width(m, l);
	return n;
}

/* ------------------------------------------------------------ config.json */

struct cfgctx {
	const struct json_val *root;
	const char *file; /* for messages */
	struct ts_err *e;
};

/* Integer key in [lo, hi]; absent -> def (def < lo means required). */
static int get_int(struct cfgctx *c, const struct json_val *obj, const char *key, int64_t def,
		   int64_t lo, int64_t hi, int *out)
{
	const struct json_val *v = json_get(obj, key);
	int64_t x;
	if (!v || json_type(v) == JSON_NULL) {
		if (def < lo)
			return ts_errf(c->e, E_FORMAT, "%s: required key \"%s\" is missing", c->file, key);
		*out = (int)def;
		return 0;
	}
	if (json_int64(v, &x) < 0)
		return ts_errf(c->e, E_FORMAT, "%s: \"%s\" must be an integer", c->file, key);
	if (x < lo || x > hi)
		return ts_errf(c->e, E_RANGE, "%s: \"%s\" = %lld is out of range (accepted %lld..%lld)",
			       c->file, key, (long long)x, (long long)lo, (long long)hi);
	*out = (int)x;
	return 0;
}

static int get_float(struct cfgctx *c, const struct json_val *obj, const char *key, double def,
		     double lo, double hi, float *out)
{
	const struct json_val *v = json_get(obj, key);
	double x;
	if (!v || json_type(v) == JSON_NULL) {
		*out = (float)def;
		return 0;
	}
	if (json_num(v, &x) < 0)
		return ts_errf(c->e, E_FORMAT, "%s: \"%s\" must be a number", c->file, key);
	if (!(x >= lo && x <= hi))
		return ts_errf(c->e, E_RANGE, "%s: \"%s\" = %g is out of range (accepted %g..%g)",
			       c->file, key, x, lo, hi);
	*out = (float)x;
	return 0;
}

static int get_bool(struct cfgctx *c, const struct json_val *obj, const char *key, int def, int *out)
{
	const struct json_val *v = json_get(obj, key);
	if (!v || json_type(v) == JSON_NULL) {
		*out = def;
		return 0;
	}
	if (json_bool(v, out) < 0)
		return ts_errf(c->e, E_FORMAT, "%s: \"%s\" must be true or false", c->file, key);
	return 0;
}

static const char *get_str(const struct json_val *obj, const char *key)
{
	return json_str(json_get(obj, key), NULL);
}

/* YaRN's attention magnitude correction (transformers' get_mscale). */
static double yarn_mscale(double scale, double mscale)
{
	return scale <= 1.0 ? 1.0 : 0.1 * mscale * fm_log(scale) + 1.0;
}

/* RoPE: rope_theta + rope_scaling (transformers 4 spelling) or rope_parameters (5). */
static int parse_rope(struct cfgctx *c, struct model_dims *d)
{
	const struct json_val *params = json_get(c->root, "rope_parameters");
	const struct json_val *sc = json_get(c->root, "rope_scaling");
	const struct json_val *theta_obj = c->root;
	int r;

	if (params && json_type(params) == JSON_OBJ) {
		sc = params;
		if (json_get(params, "rope_theta"))
			theta_obj = params;
	}
	if ((r = get_float(c, theta_obj, "rope_theta", 10000.0, 1.0, 1e12, &d->rope_theta)) < 0)
		return r;
	d->rope = ROPE_DEFAULT;
	d->rope_attn_factor = 1.0f;
	if (!sc || json_type(sc) == JSON_NULL)
		return 0;
	if (json_type(sc) != JSON_OBJ)
		return ts_errf(c->e, E_FORMAT, "%s: \"rope_scaling\" must be an object or null", c->file);
	const char *type = get_str(sc, "rope_type");
	if (!type)
		type = get_str(sc, "type");
	if (!type || !strcmp(type, "default"))
		return 0;
	if (!strcmp(type, "linear")) {
		d->rope = ROPE_LINEAR;
		return get_float(c, sc, "factor", -1, 1e-6, 1e6, &d->rope_factor) < 0 || d->rope_factor <= 0
			       ? ts_errf(c->e, E_FORMAT, "%s: rope_scaling \"linear\" needs a positive \"factor\"", c->file)
			       : 0;
	}
	if (!strcmp(type, "llama3")) {
		d->rope = ROPE_LLAMA3;
		if ((r = get_float(c, sc, "factor", 8.0, 1e-6, 1e6, &d->rope_factor)) < 0 ||
		    (r = get_float(c, sc, "low_freq_factor", 1.0, 1e-6, 1e6, &d->rope_low_freq_factor)) < 0 ||
		    (r = get_float(c, sc, "high_freq_factor", 4.0, 1e-6, 1e6, &d->rope_high_freq_factor)) < 0 ||
		    (r = get_int(c, sc, "original_max_position_embeddings", 8192, 1, 1 << 30,
				 &d->rope_orig_max_pos)) < 0)
			return r;
		if (d->rope_high_freq_factor <= d->rope_low_freq_factor)
			return ts_errf(c->e, E_RANGE, "%s: rope_scaling high_freq_factor (%g) must exceed low_freq_factor (%g)",
				       c->file, d->rope_high_freq_factor, d->rope_low_freq_factor);
		return 0;
	}
	if (!strcmp(type, "yarn")) {
		/* transformers' _compute_yarn_parameters: factor (else max_position_embeddings /
		 * original), attention_factor (else mscale / mscale_all_dim, else 0.1 ln(factor) + 1),
		 * beta_fast 32, beta_slow 1 (0 or null take the default), truncate true. */
		float mscale, mscale_all, attn;
		int truncate;
		d->rope = ROPE_YARN;
		if ((r = get_int(c, sc, "original_max_position_embeddings", d->max_pos, 1, 1 << 30,
				 &d->rope_orig_max_pos)) < 0 ||
		    (r = get_float(c, sc, "factor", (double)d->max_pos / d->rope_orig_max_pos, 1e-6, 1e6,
				   &d->rope_factor)) < 0 ||
		    (r = get_float(c, sc, "beta_fast", 0, -1e6, 1e6, &d->rope_beta_fast)) < 0 ||
		    (r = get_float(c, sc, "beta_slow", 0, -1e6, 1e6, &d->rope_beta_slow)) < 0 ||
		    (r = get_float(c, sc, "mscale", 0, -1e6, 1e6, &mscale)) < 0 ||
		    (r = get_float(c, sc, "mscale_all_dim", 0, -1e6, 1e6, &mscale_all)) < 0 ||
		    (r = get_float(c, sc, "attention_factor", -1, -1, 1e6, &attn)) < 0 ||
		    (r = get_bool(c, sc, "truncate", 1, &truncate)) < 0)
			return r;
		if (d->rope_beta_fast == 0)
			d->rope_beta_fast = 32;
		if (d->rope_beta_slow == 0)
			d->rope_beta_slow = 1;
		d->rope_truncate = truncate;
		if (attn >= 0)
			d->rope_attn_factor = attn;
		else if (mscale != 0 && mscale_all != 0)
			d->rope_attn_factor = (float)(yarn_mscale(d->rope_factor, mscale) /
						      yarn_mscale(d->rope_factor, mscale_all));
		else
			d->rope_attn_factor = (float)yarn_mscale(d->rope_factor, 1.0);
		return 0;
	}
	return ts_errf(c->e, E_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (supported: default, linear, llama3, yarn)",
		       c->file, type);
}

static int parse_eos(struct cfgctx *c, struct model_dims *d)
{
	const struct json_val *v = json_get(c->root, "eos_token_id");
	int64_t x;
	d->n_eos = 0;
	if (!v || json_type(v) == JSON_NULL)
		return 0;
	if (json_type(v) == JSON_ARR) {
		for (int i = 0; i < json_len(v) && d->n_eos < MODEL_MAX_EOS; i++) {
			if (json_int64(json_at(v, i), &x) < 0 || x < 0 || x >= d->vocab)
				return ts_errf(c->e, E_FORMAT, "%s: \"eos_token_id\"[%d] must be a token id below vocab_size %d",
					       c->file, i, d->vocab);
			d->eos[d->n_eos++] = (int32_t)x;
		}
		return 0;
	}
	if (json_int64(v, &x) < 0 || x < 0 || x >= d->vocab)
		return ts_errf(c->e, E_FORMAT, "%s: \"eos_token_id\" must be a token id below vocab_size %d", c->file, d->vocab);
	d->eos[d->n_eos++] = (int32_t)x;
	return 0;
}

/* Integer list key (absent or null: empty); each element in [lo, hi]. Sets
 * bit i of *mask for every element i (so 0 <= lo, hi < 64 * n_words). */
static int get_layer_set(struct cfgctx *c, const char *key, int n_layers, uint64_t *mask, int n_words)
{
	const struct json_val *v = json_get(c->root, key);
	int64_t x;
	memset(mask, 0, (size_t)n_words * sizeof(*mask));
	if (!v || json_type(v) == JSON_NULL)
		return 0;
	if (json_type(v) != JSON_ARR)
		return ts_errf(c->e, E_FORMAT, "%s: \"%s\" must be a list of layer indices", c->file, key);
	for (int i = 0; i < json_len(v); i++) {
		if (json_int64(json_at(v, i), &x) < 0 || x < 0 || x >= n_layers)
			return ts_errf(c->e, E_FORMAT, "%s: \"%s\"[%d] must be a layer index below num_hidden_layers %d",
				       c->file, key, i, n_layers);
		mask[x / 64] |= 1ull << (x % 64);
	}
	return 0;
}

/* GQA heads, biases, window. */
static int parse_gqa(struct cfgctx *c, struct model *m, int *qkv_bias, int *o_bias)
{
	struct model_dims *d = &m->d;
	int r, b;
	int def_head = d->dim % d->n_heads ? -1 : d->dim / d->n_heads;
	if ((r = get_int(c, c->root, "num_key_value_heads", d->n_heads, 1, d->n_heads, &d->n_kv_heads)) < 0 ||
	    (r = get_int(c, c->root, "head_dim", def_head, 1, 1024, &d->head_dim)) < 0)
		return r;
	if (d->n_heads % d->n_kv_heads)
		return ts_errf(c->e, E_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
			       c->file, d->n_heads, d->n_kv_heads);
	if (d->head_dim % 2)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: head_dim %d must be even for RoPE", c->file, d->head_dim);
	d->q_dim = d->n_heads * d->head_dim;
	d->kv_dim = d->n_kv_heads * d->head_dim;
	d->rope_dim = d->head_dim;
	d->attn_scale = 1.0f / fm_sqrtf((float)d->head_dim);
	*qkv_bias = *o_bias = 0;
	if (m->arch->bias == BIAS_QKV) {
		*qkv_bias = 1;
	} else if (m->arch->bias == BIAS_FROM_CONFIG) {
		if ((r = get_bool(c, c->root, "attention_bias", 0, &b)) < 0)
			return r;
		*qkv_bias = *o_bias = b;
	}
	d->sliding_window = 0;
	if (m->arch->window == WINDOW_KEY) {
		const struct json_val *w = json_get(c->root, "sliding_window");
		if (!w)
			d->sliding_window = m->arch->window_default;
		else if (json_type(w) != JSON_NULL &&
			 (r = get_int(c, c->root, "sliding_window", 0, 1, 1 << 30, &d->sliding_window)) < 0)
			return r;
	} else if (m->arch->window == WINDOW_REFUSE_USE) {
		if ((r = get_bool(c, c->root, "use_sliding_window", 0, &b)) < 0)
			return r;
		if (b)
			return ts_errf(c->e, E_UNSUPPORTED, "%s: \"use_sliding_window\": true (per-layer windows) is not supported",
				       c->file);
	}
	return 0;
}

/* MLA ranks and head dims (DeepseekV2/V3Config). */
static int parse_mla(struct cfgctx *c, struct model *m)
{
	struct model_dims *d = &m->d;
	int r, b, kvh;
	const struct json_val *ql = json_get(c->root, "q_lora_rank");
	d->q_lora_rank = 0;
	if (ql && json_type(ql) != JSON_NULL && (r = get_int(c, c->root, "q_lora_rank", 0, 1, 1 << 20, &d->q_lora_rank)) < 0)
		return r;
	if ((r = get_int(c, c->root, "kv_lora_rank", -1, 1, 1 << 20, &d->kv_lora_rank)) < 0 ||
	    (r = get_int(c, c->root, "qk_nope_head_dim", -1, 1, 4096, &d->qk_nope_dim)) < 0 ||
	    (r = get_int(c, c->root, "qk_rope_head_dim", -1, 2, 4096, &d->qk_rope_dim)) < 0 ||
	    (r = get_int(c, c->root, "v_head_dim", -1, 1, 4096, &d->v_head_dim)) < 0 ||
	    (r = get_int(c, c->root, "num_key_value_heads", d->n_heads, 1, 1 << 20, &kvh)) < 0 ||
	    (r = get_bool(c, c->root, "attention_bias", 0, &b)) < 0)
		return r;
	if (kvh != d->n_heads)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: num_key_value_heads %d differs from num_attention_heads %d: MLA layers take one latent per token for all heads",
			       c->file, kvh, d->n_heads);
	if (d->qk_rope_dim % 2)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: qk_rope_head_dim %d must be even for RoPE", c->file, d->qk_rope_dim);
	if (b)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: \"attention_bias\": true is not supported for %s", c->file,
			       m->arch_name);
	d->n_kv_heads = d->n_heads;
	d->head_dim = d->qk_nope_dim + d->qk_rope_dim;
	d->q_dim = d->n_heads * d->head_dim;
	d->kv_dim = 0;
	d->rope_dim = d->qk_rope_dim;
	d->rope_interleaved = 1; /* V2: complex pairs; V3: rope_interleave, checked below */
	if (m->arch->ds == DS_V3) {
		if ((r = get_bool(c, c->root, "rope_interleave", 1, &b)) < 0)
			return r;
		d->rope_interleaved = b;
	}
	/* transformers: scaling = qk_head_dim^-0.5, times yarn_get_mscale(factor,
	 * mscale_all_dim)^2 when the rope is scaled and has mscale_all_dim
	 * (DeepseekV3Attention; DeepseekV2Attention since transformers PR #47435,
	 * 2026-07-20, as DeepSeek's own V2 code does). */
	double scale = fm_exp(-0.5 * fm_log((double)d->head_dim));
	if (d->rope == ROPE_YARN) {
		const struct json_val *p = json_get(c->root, "rope_parameters");
		const struct json_val *sc = p && json_type(p) == JSON_OBJ ? p : json_get(c->root, "rope_scaling");
		float all;
		if ((r = get_float(c, sc, "mscale_all_dim", 0, -1e6, 1e6, &all)) < 0)
			return r;
		if (all != 0) {
			double ms = yarn_mscale(d->rope_factor, all);
			scale = scale * ms * ms;
		}
	}
	d->attn_scale = (float)scale;
	return 0;
}

/* Hybrid families: which layers are Gated DeltaNet (layer_types, else every
 * layer but each full_attention_interval-th), their dims, the gated full
 * attention's partial RoPE. Fills *lin_layers (bit per layer). */
static int parse_hybrid(struct cfgctx *c, struct model *m, uint64_t *lin_layers, int n_words)
{
	struct model_dims *d = &m->d;
	const struct json_val *lt = json_get(c->root, "layer_types");
	const struct json_val *rp = json_get(c->root, "rope_parameters");
	int r, b, interval;
	float prf;
	memset(lin_layers, 0, (size_t)n_words * sizeof(*lin_layers));
	if (m->arch->hyb == HYB_NONE)
		return 0;
	if (lt && json_type(lt) != JSON_NULL) {
		if (json_type(lt) != JSON_ARR || json_len(lt) != d->n_layers)
			return ts_errf(c->e, E_FORMAT, "%s: \"layer_types\" must list num_hidden_layers (%d) entries", c->file,
				       d->n_layers);
		for (int l = 0; l < d->n_layers; l++) {
			const char *t = json_str(json_at(lt, l), NULL);
			if (t && !strcmp(t, "linear_attention"))
				lin_layers[l / 64] |= 1ull << (l % 64);
			else if (!t || strcmp(t, "full_attention"))
				return ts_errf(c->e, E_UNSUPPORTED, "%s: \"layer_types\"[%d] = \"%s\" is not supported (supported: linear_attention, full_attention)",
					       c->file, l, t ? t : "?");
		}
	} else {
		if ((r = get_int(c, c->root, "full_attention_interval", 4, 1, 1 << 16, &interval)) < 0)
			return r;
		for (int l = 0; l < d->n_layers; l++) /* transformers: linear unless (l + 1) % interval == 0 */
			if ((l + 1) % interval)
				lin_layers[l / 64] |= 1ull << (l % 64);
	}
	if ((r = get_int(c, c->root, "linear_num_key_heads", -1, 1, 4096, &d->lin_nk)) < 0 ||
	    (r = get_int(c, c->root, "linear_num_value_heads", -1, 1, 4096, &d->lin_nv)) < 0 ||
	    (r = get_int(c, c->root, "linear_key_head_dim", -1, 1, 1024, &d->lin_dk)) < 0 ||
	    (r = get_int(c, c->root, "linear_value_head_dim", -1, 1, 1024, &d->lin_dv)) < 0 ||
	    (r = get_int(c, c->root, "linear_conv_kernel_dim", 4, 2, 64, &d->lin_conv)) < 0)
		return r;
	if (d->lin_nv % d->lin_nk)
		return ts_errf(c->e, E_FORMAT, "%s: linear_num_value_heads %d is not a multiple of linear_num_key_heads %d",
			       c->file, d->lin_nv, d->lin_nk);
	if ((r = get_bool(c, c->root, "attention_bias", 0, &b)) < 0)
		return r;
	if (b)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: \"attention_bias\": true is not supported for %s", c->file,
			       m->arch_name);
	if ((r = get_bool(c, c->root, "attn_output_gate", 1, &b)) < 0)
		return r;
	if (!b)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: \"attn_output_gate\": false is not supported for %s (its full-attention layers are gated)",
			       c->file, m->arch_name);
	/* partial_rotary_factor: at the top (Qwen3-Next) or in rope_parameters (Qwen3.5). Qwen3.5's
	 * mrope_section / mrope_interleaved give every section the same position for text, which is
	 * plain RoPE over the rotated dims: accepted, as text only is served. */
	const struct json_val *po = rp && json_type(rp) == JSON_OBJ && json_get(rp, "partial_rotary_factor") ? rp : c->root;
	if ((r = get_float(c, po, "partial_rotary_factor", 1.0, 1e-6, 1.0, &prf)) < 0)
		return r;
	d->rope_dim = (int)((float)d->head_dim * prf); /* transformers: int(head_dim * partial_rotary_factor) */
	if (d->rope_dim < 2 || d->rope_dim % 2)
		return ts_errf(c->e, E_UNSUPPORTED, "%s: partial_rotary_factor %g gives %d rotated dims of head_dim %d; an even number >= 2 is needed",
			       c->file, prf, d->rope_dim, d->head_dim);
	d->attn_gate = 1;
	d->norm_offset = 1;
	d->lin_split = m->arch->hyb == HYB_35;
	for (int l = 0; l < d->n_layers; l++)
		d->n_linear_layers += (int)((lin_layers[l / 64] >> (l % 64)) & 1);
	return 0;
}

/* Which layers are MoE, the experts' dims and the router. Fills *moe_layers
 * (bit per layer). */
static int parse_moe(struct cfgctx *c, struct model *m, uint64_t *moe_layers, int n_words)
{
	struct model_dims *d = &m->d;
	const struct model_arch *a = m->arch;
	int r, shared = 0, step = 1, first_dense = 0, freq = 1, norm = 0;
	memset(moe_layers, 0, (size_t)n_words * sizeof(*moe_layers));
	d->routed_scale = 1.0f;
	d->moe_score = MOE_SOFTMAX;
	d->moe_group = MOE_GROUP_NONE;
	d->n_group = d->topk_group = 1;
	switch (a->moe) {
	case MOE_NONE:
		return 0;
	case MOE_QWEN:
		if ((r = get_int(c, c->root, "num_experts", 0, 0, 1 << 16, &d->n_experts)) < 0 ||
		    (r = get_int(c, c->root, "moe_intermediate_size", d->n_experts ? -1 : 0, 0, 1 << 22, &d->moe_ffn_dim)) < 0 ||
		    (r = get_int(c, c->root, "decoder_sparse_step", 1, 1, 1 << 16, &step)) < 0 ||
		    (r = get_bool(c, c->root, "norm_topk_prob", a->hyb != HYB_NONE, &norm)) < 0 ||
		    (r = get_layer_set(c, "mlp_only_layers", d->n_layers, moe_layers, n_words)) < 0)
			return r;
		if (a->hyb != HYB_NONE) { /* one shared expert, scaled by sigmoid(shared_expert_gate x) */
			if ((r = get_int(c, c->root, "shared_expert_intermediate_size", 0, 0, 1 << 22,
					 &d->shared_ffn_dim)) < 0)
				return r;
			d->shared_gate = d->shared_ffn_dim > 0;
		}
		for (int l = 0; l < d->n_layers; l++) { /* mlp_only_layers -> its complement, then the step */
			int dense_only = (moe_layers[l / 64] >> (l % 64)) & 1;
			int moe = !dense_only && d->n_experts > 0 && (l + 1) % step == 0;
			moe_layers[l / 64] = (moe_layers[l / 64] & ~(1ull << (l % 64))) | ((uint64_t)moe << (l % 64));
		}
		d->norm_topk = norm;
		break;
	case MOE_MIXTRAL:
		if ((r = get_int(c, c->root, "num_local_experts", 8, 1, 1 << 16, &d->n_experts)) < 0)
			return r;
		d->moe_ffn_dim = d->ffn_dim;
		d->norm_topk = 1;
		for (int l = 0; l < d->n_layers; l++)
			moe_layers[l / 64] |= 1ull << (l % 64);
		break;
	case MOE_DEEPSEEK: {
		if ((r = get_int(c, c->root, "n_routed_experts", -1, 1, 1 << 16, &d->n_experts)) < 0 ||
		    (r = get_int(c, c->root, "moe_intermediate_size", -1, 1, 1 << 22, &d->moe_ffn_dim)) < 0 ||
		    (r = get_int(c, c->root, "n_shared_experts", 0, 0, 1 << 10, &shared)) < 0 ||
		    (r = get_int(c, c->root, "first_k_dense_replace", 0, 0, d->n_layers, &first_dense)) < 0 ||
		    (r = get_int(c, c->root, "moe_layer_freq", 1, 1, 1 << 16, &freq)) < 0 ||
		    (r = get_float(c, c->root, "routed_scaling_factor", 1.0, 0.0, 1e6, &d->routed_scale)) < 0 ||
		    (r = get_int(c, c->root, "n_group", 1, 1, TS_MIN(d->n_experts, MODEL_MAX_GROUPS), &d->n_group)) < 0 ||
		    (r = get_int(c, c->root, "topk_group", 1, 1, d->n_group, &d->topk_group)) < 0)
			return r;
		if (freq != 1)
			return ts_errf(c->e, E_UNSUPPORTED, "%s: \"moe_layer_freq\" = %d is not supported (transformers builds a MoE layer at every layer from first_k_dense_replace on; 1 is the only value it honours)",
				       c->file, freq);
		if (d->n_experts % d->n_group)
			return ts_errf(c->e, E_FORMAT, "%s: n_routed_experts %d is not a multiple of n_group %d", c->file,
				       d->n_experts, d->n_group);
		d->shared_ffn_dim = shared * d->moe_ffn_dim;
		for (int l = first_dense; l < d->n_layers; l++)
			moe_layers[l / 64] |= 1ull << (l % 64);
		if (a->ds == DS_V2) {
			const char *method = get_str(c->root, "topk_method");
			if (!method || !strcmp(method, "greedy"))
				d->moe_group = MOE_GROUP_NONE;
			else if (!strcmp(method, "group_limited_greedy"))
				d->moe_group = MOE_GROUP_MAX;
			else
				return ts_errf(c->e, E_UNSUPPORTED, "%s: topk_method \"%s\" is not supported for %s (supported: greedy, group_limited_greedy)",
					       c->file, method, a->name);
		} else {
			if ((r = get_bool(c, c->root, "norm_topk_prob", 1, &norm)) < 0)
				return r;
			d->norm_topk = norm;
			d->moe_score = MOE_SIGMOID;
			d->moe_group = MOE_GROUP_TOP2;
			if (d->n_experts / d->n_group < 2)
				return ts_errf(c->e, E_FORMAT, "%s: %d experts in %d groups: groups of one expert cannot be scored by their best two",
					       c->file, d->n_experts, d->n_group);
		}
		break;
	}
	}
	int def_k = a->moe == MOE_MIXTRAL ? 2 : -1;
	if ((r = get_int(c, c->root, "num_experts_per_tok", d->n_experts ? def_k : 0, 0, MODEL_MAX_TOPK, &d->n_experts_tok)) < 0)
		return r;
	if (d->n_experts && (d->n_experts_tok < 1 || d->n_experts_tok > d->n_experts))
		return ts_errf(c->e, E_FORMAT, "%s: num_experts_per_tok %d must be between 1 and the %d experts", c->file,
			       d->n_experts_tok, d->n_experts);
	if (d->moe_group != MOE_GROUP_NONE &&
	    d->n_experts_tok > d->topk_group * (d->n_experts / d->n_group))
		return ts_errf(c->e, E_FORMAT, "%s: num_experts_per_tok %d exceeds the %d experts of topk_group %d groups",
			       c->file, d->n_experts_tok, d->topk_group * (d->n_experts / d->n_group), d->topk_group);
	return 0;
}

static int parse_config(struct model *m, const struct ckpt *ck, char *file, struct ts_err *e, int *qkv_bias,
			int *o_bias, uint64_t *moe_layers, uint64_t *lin_layers, int n_words)
{
	struct cfgctx c = {json_root(ck->config), file, e};
	const struct json_val *top = c.root;
	struct model_dims *d = &m->d;
	const struct json_val *archs_v = json_get(c.root, "architectures");
	int r, b, tied;

	if (json_type(c.root) != JSON_OBJ)
		return ts_errf(e, E_FORMAT, "%s: must be a JSON object", file);
	if (!archs_v || json_type(archs_v) != JSON_ARR || json_len(archs_v) < 1)
		return ts_errf(e, E_FORMAT, "%s: \"architectures\" is missing or empty (supported: %s)", file,
			       model_supported());
	for (int i = 0; i < json_len(archs_v) && !m->arch; i++) {
		const char *name = json_str(json_at(archs_v, i), NULL);
		for (size_t k = 0; name && k < TS_ARRAY_LEN(archs); k++)
			if (!strcmp(name, archs[k].name))
				m->arch = &archs[k];
	}
	if (!m->arch) {
		const char *name = json_str(json_at(archs_v, 0), NULL);
		return ts_errf(e, E_UNSUPPORTED, "%s: architecture \"%s\" is not supported (supported: %s)", file,
			       name ? name : "?", model_supported());
	}
	m->arch_name = m->arch->name;
	m->tprefix = "model.";
	if (m->arch->hyb == HYB_35) { /* the text model's config nests in text_config */
		const struct json_val *tc = json_get(top, "text_config");
		if (!tc || json_type(tc) != JSON_OBJ)
			return ts_errf(e, E_FORMAT, "%s: \"text_config\" is missing or not an object (%s nests the text model's config there)",
				       file, m->arch_name);
		c.root = tc;
		m->tprefix = "model.language_model.";
	}
	if (json_get(top, "quantization_config") || json_get(c.root, "quantization_config"))
		return ts_errf(e, E_UNSUPPORTED, "%s: quantized checkpoints (\"quantization_config\") are not supported; use a bf16, f16 or f32 checkpoint",
			       file);
	const char *act = get_str(c.root, "hidden_act");
	if (act && strcmp(act, "silu"))
		return ts_errf(e, E_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (supported: silu)", file, act);

	if ((r = get_int(&c, c.root, "hidden_size", -1, 1, 1 << 20, &d->dim)) < 0 ||
	    (r = get_int(&c, c.root, "num_hidden_layers", -1, 1, 4096, &d->n_layers)) < 0 ||
	    (r = get_int(&c, c.root, "num_attention_heads", -1, 1, 4096, &d->n_heads)) < 0 ||
	    (r = get_int(&c, c.root, "intermediate_size", -1, 1, 1 << 22, &d->ffn_dim)) < 0 ||
	    (r = get_int(&c, c.root, "vocab_size", -1, 1, 1 << 24, &d->vocab)) < 0 ||
	    (r = get_int(&c, c.root, "max_position_embeddings", 2048, 1, 1 << 30, &d->max_pos)) < 0 ||
	    (r = get_float(&c, c.root, "rms_norm_eps", 1e-6, 0.0, 1.0, &d->rms_eps)) < 0)
		return r;
	/* token ids and tying: the text config's, else the top level's (nested configs) */
	struct cfgctx ct = c;
	if (!json_get(c.root, "eos_token_id") && !json_get(c.root, "bos_token_id"))
		ct.root = top;
	if ((r = parse_rope(&c, d)) < 0 || (r = parse_eos(&ct, d)) < 0)
		return r;
	*qkv_bias = *o_bias = 0;
	if ((r = m->arch->attn == ATTN_MLA ? parse_mla(&c, m) : parse_gqa(&c, m, qkv_bias, o_bias)) < 0 ||
	    (r = parse_hybrid(&c, m, lin_layers, n_words)) < 0)
		return r;
	int bos;
	if ((r = get_int(&ct, ct.root, "bos_token_id", -1, -1, d->vocab - 1, &bos)) < 0)
		return r;
	d->bos = bos;
	if ((r = get_bool(&c, json_get(c.root, "tie_word_embeddings") ? c.root : top, "tie_word_embeddings", 0,
			  &tied)) < 0)
		return r;
	d->tied = tied;

	if ((r = get_bool(&c, c.root, "mlp_bias", 0, &b)) < 0)
		return r;
	if (b)
		return ts_errf(e, E_UNSUPPORTED, "%s: \"mlp_bias\": true is not supported", file);
	return parse_moe(&c, m, moe_layers, n_words);
}

/* ------------------------------------------------------------ binding */

static void shape_str(char *buf, size_t n, const struct ckpt_tensor *t)
{
	size_t o = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < t->n_dims && o < n; i++)
		o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
	if (o < n)
		snprintf(buf + o, n - o, "]");
}

static int bind_shaped(struct model *m, const struct ckpt *ck, const char *name, int64_t rows, int64_t cols,
		       enum shape_rule sh, struct model_w *w, struct ts_err *e)
{
	const struct ckpt_tensor *t = ckpt_find(ck, name);
	char want[64], got[160];
	if (!t)
		return ts_errf(e, E_FORMAT, "%s: tensor \"%s\" is missing (architecture %s); the checkpoint is incomplete or of another architecture",
			       ck->dir, name, m->arch_name);
	int ok;
	if (sh == SH_CONV) {
		snprintf(want, sizeof(want), "[%lld, 1, %lld]", (long long)rows, (long long)cols);
		ok = t->n_dims == 3 && t->shape[0] == rows && t->shape[1] == 1 && t->shape[2] == cols;
	} else if (sh == SH_ROW) {
		snprintf(want, sizeof(want), "[1, %lld]", (long long)cols);
		ok = t->n_dims == 2 && t->shape[0] == 1 && t->shape[1] == cols;
	} else if (rows == 1 && cols >= 1) {
		snprintf(want, sizeof(want), "[%lld]", (long long)cols);
		ok = t->n_dims == 1 && t->shape[0] == cols;
	} else {
		snprintf(want, sizeof(want), "[%lld, %lld]", (long long)rows, (long long)cols);
		ok = t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
	}
	if (!ok) {
		shape_str(got, sizeof(got), t);
		return ts_errf(e, E_FORMAT, "%s: tensor \"%s\" has shape %s, config.json implies %s", ck->shards[t->shard].path,
			       name, got, want);
	}
	w->data = t->data;
	w->dtype = t->dtype;
	w->rows = rows;
	w->cols = cols;
	m->weight_bytes += t->bytes;
	return 0;
}

static int bind(struct model *m, const struct ckpt *ck, const char *name, int64_t rows, int64_t cols,
		struct model_w *w, struct ts_err *e)
{
	return bind_shaped(m, ck, name, rows, cols, SH_AUTO, w, e);
}

/* A fused 3-D expert tensor [E, rows, cols]: checked like bind, returned for views. */
static int bind3(struct model *m, const struct ckpt *ck, const char *name, int64_t n, int64_t rows, int64_t cols,
		 const struct ckpt_tensor **out, struct ts_err *e)
{
	const struct ckpt_tensor *t = ckpt_find(ck, name);
	char got[160];
	if (!t)
		return ts_errf(e, E_FORMAT, "%s: tensor \"%s\" is missing (architecture %s); the checkpoint is incomplete or of another architecture",
			       ck->dir, name, m->arch_name);
	if (t->n_dims != 3 || t->shape[0] != n || t->shape[1] != rows || t->shape[2] != cols) {
		shape_str(got, sizeof(got), t);
		return ts_errf(e, E_FORMAT, "%s: tensor \"%s\" has shape %s, config.json implies [%lld, %lld, %lld]",
			       ck->shards[t->shard].path, name, got, (long long)n, (long long)rows, (long long)cols);
	}
	m->weight_bytes += t->bytes;
	*out = t;
	return 0;
}

static struct model_w view(const struct ckpt_tensor *t, int64_t elem_off, int64_t rows, int64_t cols)
{
	struct model_w w = {(const uint8_t *)t->data + (size_t)elem_off * ts_dtype_size(t->dtype), t->dtype, rows, cols};
	return w;
}

/* The routed experts of one MoE layer: per-expert tensors
 * (<prefix>.experts.<j>.gate_proj/up_proj/down_proj or .w1/.w3/.w2) or, when
 * the checkpoint has them, fused 3-D ones (<prefix>.experts.gate_up_proj
 * [E, 2F, D], gate rows first; <prefix>.experts.down_proj [E, D, F]). */
static int bind_experts(struct model *m, const struct ckpt *ck, int l, struct model_mlp *ex, struct ts_err *e)
{
	const struct model_dims *d = &m->d;
	const char *pre = m->arch->moe_prefix;
	const int64_t E = d->n_experts, F = d->moe_ffn_dim, D = d->dim;
	char name[256];
	int r;

	snprintf(name, sizeof(name), "%slayers.%d.%s.experts.gate_up_proj", m->tprefix, l, pre);
	if (ckpt_find(ck, name)) {
		const struct ckpt_tensor *gu, *dn;
		if ((r = bind3(m, ck, name, E, 2 * F, D, &gu, e)) < 0)
			return r;
		snprintf(name, sizeof(name), "%slayers.%d.%s.experts.down_proj", m->tprefix, l, pre);
		if ((r = bind3(m, ck, name, E, D, F, &dn, e)) < 0)
			return r;
		for (int64_t j = 0; j < E; j++) {
			ex[j].w_gate = view(gu, j * 2 * F * D, F, D);
			ex[j].w_up = view(gu, (j * 2 * F + F) * D, F, D);
			ex[j].w_down = view(dn, j * D * F, D, F);
		}
		m->fused_experts = 1;
		return 0;
	}
	static const char *const names[2][3] = {{"gate_proj", "up_proj", "down_proj"}, {"w1", "w3", "w2"}};
	const char *const *nm = names[m->arch->experts == EXPERT_W123];
	for (int j = 0; j < E; j++) {
		struct model_w *w[3] = {&ex[j].w_gate, &ex[j].w_up, &ex[j].w_down};
		for (int k = 0; k < 3; k++) {
			snprintf(name, sizeof(name), "%slayers.%d.%s.experts.%d.%s.weight", m->tprefix, l, pre, j, nm[k]);
			if ((r = bind(m, ck, name, k == 2 ? D : F, k == 2 ? F : D, w[k], e)) < 0)
				return r;
		}
	}
	return 0;
}

static int plan_wants(enum when w, const struct model *m, int qkv_bias, int o_bias)
{
	const struct model_dims *d = &m->d;
	switch (w) {
	case W_ALWAYS:
		return 1;
	case W_QKV_BIAS:
		return qkv_bias;
	case W_O_BIAS:
		return o_bias;
	case W_QK_NORM:
		return m->arch->qk_norm;
	case W_NO_QLORA:
		return d->q_lora_rank == 0;
	case W_QLORA:
		return d->q_lora_rank > 0;
	case W_ROUTER_BIAS:
		return m->arch->ds == DS_V3;
	case W_SHARED:
		return d->shared_ffn_dim > 0 && !d->shared_gate;
	case W_SHARED1:
		return d->shared_ffn_dim > 0 && d->shared_gate;
	case W_LIN_FUSED:
		return !d->lin_split;
	case W_LIN_SPLIT:
		return d->lin_split;
	}
	return 0;
}

/* Binds the rows of one kind's plan for layer l; prefix (or NULL) goes
 * between "<tprefix>layers.<l>." and the row's suffix. */
static int bind_plan(struct model *m, const struct ckpt *ck, int l, const struct kind_plan *p, const char *prefix,
		     int qkv_bias, int o_bias, struct ts_err *e)
{
	char name[256];
	for (size_t i = 0; i < p->n; i++) {
		const struct plan_row *row = &p->rows[i];
		if (!plan_wants(row->when, m, qkv_bias, o_bias))
			continue;
		snprintf(name, sizeof(name), "%slayers.%d.%s%s%s", m->tprefix, l, prefix ? prefix : "",
			 prefix ? "." : "", row->suffix);
		struct model_w *w = (struct model_w *)((char *)&m->layers[l] + row->off);
		int r = bind_shaped(m, ck, name, dim_of(&m->d, row->rows), dim_of(&m->d, row->cols), row->shape, w, e);
		if (r < 0)
			return r;
	}
	return 0;
}

#define MOE_WORDS 64 /* layer bit set: 4096 layers */

int model_load(struct model *m, const struct ckpt *ck, struct ts_err *e)
{
	char file[4200];
	uint64_t moe_layers[MOE_WORDS], lin_layers[MOE_WORDS];
	int qkv_bias = 0, o_bias = 0, r;
	char name[256];

	memset(m, 0, sizeof(*m));
	snprintf(file, sizeof(file), "%s/config.json", ck->dir);
	if ((r = parse_config(m, ck, file, e, &qkv_bias, &o_bias, moe_layers, lin_layers, MOE_WORDS)) < 0)
		goto fail;
	struct model_dims *d = &m->d;
	for (int l = 0; l < d->n_layers; l++)
		d->n_moe_layers += (int)((moe_layers[l / 64] >> (l % 64)) & 1);
	m->layers = ts_alloc((size_t)d->n_layers * sizeof(*m->layers));
	m->experts = d->n_moe_layers ? ts_alloc((size_t)d->n_moe_layers * (size_t)d->n_experts * sizeof(*m->experts))
				     : NULL;
	if (!m->layers || (d->n_moe_layers && !m->experts)) {
		r = ts_errf(e, E_NOMEM, "out of memory for %d layers", d->n_layers);
		goto fail;
	}
	memset(m->layers, 0, (size_t)d->n_layers * sizeof(*m->layers));
	snprintf(name, sizeof(name), "%sembed_tokens.weight", m->tprefix);
	if ((r = bind(m, ck, name, d->vocab, d->dim, &m->embed, e)) < 0)
		goto fail;
	snprintf(name, sizeof(name), "%snorm.weight", m->tprefix);
	if ((r = bind(m, ck, name, 1, d->dim, &m->final_norm, e)) < 0)
		goto fail;
	if (d->tied) {
		m->lm_head = m->embed;
	} else if ((r = bind(m, ck, "lm_head.weight", d->vocab, d->dim, &m->lm_head, e)) < 0) {
		goto fail;
	}
	/* what the text model does not read: a vision tower, MTP layers */
	for (int i = 0; i < ck->n_tensors; i++) {
		const char *n = ck->tensors[i].name;
		if (strncmp(n, m->tprefix, strlen(m->tprefix)) && strcmp(n, "lm_head.weight")) {
			m->n_skipped++;
			m->skipped_bytes += ck->tensors[i].bytes;
		}
	}
	const struct kind_plan common = {common_plan, TS_ARRAY_LEN(common_plan)};
	for (int l = 0, im = 0; l < d->n_layers; l++) {
		struct model_layer *L = &m->layers[l];
		L->attn = (lin_layers[l / 64] >> (l % 64)) & 1 ? ATTN_LINEAR : m->arch->attn;
		L->mlp = (moe_layers[l / 64] >> (l % 64)) & 1 ? MLP_MOE : MLP_DENSE;
		if ((r = bind_plan(m, ck, l, &common, NULL, qkv_bias, o_bias, e)) < 0 ||
		    (r = bind_plan(m, ck, l, &attn_plans[L->attn], NULL, qkv_bias, o_bias, e)) < 0 ||
		    (r = bind_plan(m, ck, l, &mlp_plans[L->mlp], L->mlp == MLP_MOE ? m->arch->moe_prefix : NULL,
				   qkv_bias, o_bias, e)) < 0)
			goto fail;
		if (L->mlp == MLP_MOE) {
			L->moe.experts = m->experts + (size_t)im++ * (size_t)d->n_experts;
			if ((r = bind_experts(m, ck, l, L->moe.experts, e)) < 0)
				goto fail;
		}
	}
	return 0;
fail:
	model_free(m);
	return r;
}

void model_free(struct model *m)
{
	ts_free(m->layers);
	ts_free(m->experts);
	memset(m, 0, sizeof(*m));
}

static uint64_t w_bytes(const struct model_w *w)
{
	return w->data ? (uint64_t)w->rows * (uint64_t)w->cols * ts_dtype_size(w->dtype) : 0;
}

uint64_t model_step_bytes(const struct model *m)
{
	const struct model_dims *d = &m->d;
	uint64_t b = m->weight_bytes;
	if (!d->tied) /* the embedding table is read one row a token */
		b -= w_bytes(&m->embed) - (uint64_t)m->embed.cols * ts_dtype_size(m->embed.dtype);
	for (int l = 0; l < d->n_layers; l++) { /* n_experts_tok of the routed experts */
		const struct model_layer *L = &m->layers[l];
		if (L->mlp != MLP_MOE)
			continue;
		const struct model_mlp *x = &L->moe.experts[0];
		uint64_t one = w_bytes(&x->w_gate) + w_bytes(&x->w_up) + w_bytes(&x->w_down);
		b -= one * (uint64_t)(d->n_experts - d->n_experts_tok);
	}
	return b;
}

/* ------------------------------------------------------------ RoPE */

/* floor and ceil of a double without libm (|x| < 2^62). */
static double dfloor(double x)
{
	double t = (double)(long long)x;
	return t > x ? t - 1.0 : t;
}

static double dceil(double x)
{
	double t = (double)(long long)x;
	return t < x ? t + 1.0 : t;
}

/* RoPE inverse frequencies, computed in float32 in the order HF's
 * _compute_default_rope_parameters / _compute_llama3_parameters /
 * _compute_yarn_parameters use, over rope_dim dims. */
void model_rope_freqs(const struct model_dims *d, float *inv)
{
	const int hd = d->rope_dim;
	for (int i = 0; i < hd / 2; i++)
		inv[i] = 1.0f / fm_powf(d->rope_theta, (float)(2 * i) / (float)hd);
	if (d->rope == ROPE_LINEAR) {
		for (int i = 0; i < hd / 2; i++)
			inv[i] = inv[i] / d->rope_factor;
	} else if (d->rope == ROPE_LLAMA3) {
		const float old = (float)d->rope_orig_max_pos, lo = d->rope_low_freq_factor,
			    hi = d->rope_high_freq_factor, f = d->rope_factor;
		const float low_wl = old / lo, high_wl = old / hi, two_pi = (float)(2.0 * 3.14159265358979323846);
		for (int i = 0; i < hd / 2; i++) {
			float wl = two_pi / inv[i];
			float v = wl > low_wl ? inv[i] / f : inv[i];
			float smooth = (old / wl - lo) / (hi - lo);
			float smoothed = (1.0f - smooth) * v / f + smooth * v;
			if (!(wl < high_wl) && !(wl > low_wl))
				v = smoothed;
			inv[i] = v;
		}
	} else if (d->rope == ROPE_YARN) {
		/* correction range in double (Python math), the ramp and the blend in float32 */
		const double two_pi = 2.0 * 3.14159265358979323846, lb = fm_log((double)d->rope_theta);
		double lo = (hd * fm_log(d->rope_orig_max_pos / (d->rope_beta_fast * two_pi))) / (2.0 * lb);
		double hi = (hd * fm_log(d->rope_orig_max_pos / (d->rope_beta_slow * two_pi))) / (2.0 * lb);
		if (d->rope_truncate) {
			lo = dfloor(lo);
			hi = dceil(hi);
		}
		lo = lo > 0 ? lo : 0;
		hi = hi < hd - 1 ? hi : hd - 1;
		if (lo == hi)
			hi += 0.001;
		for (int i = 0; i < hd / 2; i++) {
			float pos_freq = fm_powf(d->rope_theta, (float)(2 * i) / (float)hd);
			float extra = 1.0f / pos_freq, inter = 1.0f / (d->rope_factor * pos_freq);
			float ramp = ((float)i - (float)lo) / (float)(hi - lo);
			ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
			float ef = 1.0f - ramp;
			inv[i] = inter * (1.0f - ef) + extra * ef;
		}
	}
}
