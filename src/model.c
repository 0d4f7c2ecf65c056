/* model: architectures as data, config.json -> dims, the per-layer plan. */
#include "model.h"

#include <stddef.h>
#include <stdio.h>

#include "fmath.h"

/* ------------------------------------------------------------ architectures */

enum bias_rule { BIAS_NONE, BIAS_QKV, BIAS_FROM_CONFIG /* attention_bias: q, k, v and o */ };
enum window_rule { WINDOW_NONE, WINDOW_KEY /* sliding_window, default 4096 */, WINDOW_REFUSE_USE };

struct model_arch {
	const char *name;        /* HF "architectures" entry */
	enum bias_rule bias;
	int qk_norm;             /* per-head RMSNorm of q and k before RoPE */
	enum window_rule window;
};

static const struct model_arch archs[] = {
	{"LlamaForCausalLM", BIAS_FROM_CONFIG, 0, WINDOW_NONE},
	{"MistralForCausalLM", BIAS_NONE, 0, WINDOW_KEY},
	{"Qwen2ForCausalLM", BIAS_QKV, 0, WINDOW_REFUSE_USE},
	{"Qwen3ForCausalLM", BIAS_FROM_CONFIG, 1, WINDOW_REFUSE_USE},
};

const char *model_supported(void)
{
	return "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";
}

/* ------------------------------------------------------------ the layer plan */

enum dim_ref { D_ONE, D_DIM, D_Q, D_KV, D_FFN, D_HEAD, D_VOCAB };
enum when { W_ALWAYS, W_QKV_BIAS, W_O_BIAS, W_QK_NORM };

struct plan_row {
	const char *suffix;      /* after "model.layers.<i>." */
	size_t off;              /* of the struct model_w in struct model_layer */
	enum dim_ref rows, cols; /* rows D_ONE = a 1-D tensor of cols elements */
	enum when when;
};

#define L(f) offsetof(struct model_layer, f)
static const struct plan_row layer_plan[] = {
	{"input_layernorm.weight", L(attn_norm), D_ONE, D_DIM, W_ALWAYS},
	{"self_attn.q_proj.weight", L(wq), D_Q, D_DIM, W_ALWAYS},
	{"self_attn.k_proj.weight", L(wk), D_KV, D_DIM, W_ALWAYS},
	{"self_attn.v_proj.weight", L(wv), D_KV, D_DIM, W_ALWAYS},
	{"self_attn.q_proj.bias", L(bq), D_ONE, D_Q, W_QKV_BIAS},
	{"self_attn.k_proj.bias", L(bk), D_ONE, D_KV, W_QKV_BIAS},
	{"self_attn.v_proj.bias", L(bv), D_ONE, D_KV, W_QKV_BIAS},
	{"self_attn.q_norm.weight", L(q_norm), D_ONE, D_HEAD, W_QK_NORM},
	{"self_attn.k_norm.weight", L(k_norm), D_ONE, D_HEAD, W_QK_NORM},
	{"self_attn.o_proj.weight", L(wo), D_DIM, D_Q, W_ALWAYS},
	{"self_attn.o_proj.bias", L(bo), D_ONE, D_DIM, W_O_BIAS},
	{"post_attention_layernorm.weight", L(ffn_norm), D_ONE, D_DIM, W_ALWAYS},
	{"mlp.gate_proj.weight", L(w_gate), D_FFN, D_DIM, W_ALWAYS},
	{"mlp.up_proj.weight", L(w_up), D_FFN, D_DIM, W_ALWAYS},
	{"mlp.down_proj.weight", L(w_down), D_DIM, D_FFN, W_ALWAYS},
};
#undef L

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
	}
	return -1;
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
	return ts_errf(c->e, E_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (supported: default, linear, llama3)",
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

static int parse_config(struct model *m, const struct ckpt *ck, char *file, struct ts_err *e, int *qkv_bias,
			int *o_bias)
{
	struct cfgctx c = {json_root(ck->config), file, e};
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
	if (json_get(c.root, "quantization_config"))
		return ts_errf(e, E_UNSUPPORTED, "%s: quantized checkpoints (\"quantization_config\") are not supported; use a bf16, f16 or f32 checkpoint",
			       file);
	const char *act = get_str(c.root, "hidden_act");
	if (act && strcmp(act, "silu"))
		return ts_errf(e, E_UNSUPPORTED, "%s: hidden_act \"%s\" is not supported (supported: silu)", file, act);

	if ((r = get_int(&c, c.root, "hidden_size", -1, 1, 1 << 20, &d->dim)) < 0 ||
	    (r = get_int(&c, c.root, "num_hidden_layers", -1, 1, 4096, &d->n_layers)) < 0 ||
	    (r = get_int(&c, c.root, "num_attention_heads", -1, 1, 4096, &d->n_heads)) < 0 ||
	    (r = get_int(&c, c.root, "num_key_value_heads", d->n_heads, 1, d->n_heads, &d->n_kv_heads)) < 0 ||
	    (r = get_int(&c, c.root, "intermediate_size", -1, 1, 1 << 22, &d->ffn_dim)) < 0 ||
	    (r = get_int(&c, c.root, "vocab_size", -1, 1, 1 << 24, &d->vocab)) < 0 ||
	    (r = get_int(&c, c.root, "max_position_embeddings", 2048, 1, 1 << 30, &d->max_pos)) < 0 ||
	    (r = get_float(&c, c.root, "rms_norm_eps", 1e-6, 0.0, 1.0, &d->rms_eps)) < 0)
		return r;
	int def_head = d->dim % d->n_heads ? -1 : d->dim / d->n_heads;
	if ((r = get_int(&c, c.root, "head_dim", def_head, 1, 1024, &d->head_dim)) < 0)
		return r;
	if (d->n_heads % d->n_kv_heads)
		return ts_errf(e, E_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
			       file, d->n_heads, d->n_kv_heads);
	if (d->head_dim % 2)
		return ts_errf(e, E_UNSUPPORTED, "%s: head_dim %d must be even for RoPE", file, d->head_dim);
	d->q_dim = d->n_heads * d->head_dim;
	d->kv_dim = d->n_kv_heads * d->head_dim;
	if ((r = parse_rope(&c, d)) < 0 || (r = parse_eos(&c, d)) < 0)
		return r;
	int bos;
	if ((r = get_int(&c, c.root, "bos_token_id", -1, -1, d->vocab - 1, &bos)) < 0)
		return r;
	d->bos = bos;
	if ((r = get_bool(&c, c.root, "tie_word_embeddings", 0, &tied)) < 0)
		return r;
	d->tied = tied;

	if ((r = get_bool(&c, c.root, "mlp_bias", 0, &b)) < 0)
		return r;
	if (b)
		return ts_errf(e, E_UNSUPPORTED, "%s: \"mlp_bias\": true is not supported", file);
	*qkv_bias = *o_bias = 0;
	if (m->arch->bias == BIAS_QKV) {
		*qkv_bias = 1;
	} else if (m->arch->bias == BIAS_FROM_CONFIG) {
		if ((r = get_bool(&c, c.root, "attention_bias", 0, &b)) < 0)
			return r;
		*qkv_bias = *o_bias = b;
	}
	d->sliding_window = 0;
	if (m->arch->window == WINDOW_KEY) {
		const struct json_val *w = json_get(c.root, "sliding_window");
		if (!w)
			d->sliding_window = 4096; /* MistralConfig's default */
		else if (json_type(w) != JSON_NULL &&
			 (r = get_int(&c, c.root, "sliding_window", 0, 1, 1 << 30, &d->sliding_window)) < 0)
			return r;
	} else if (m->arch->window == WINDOW_REFUSE_USE) {
		if ((r = get_bool(&c, c.root, "use_sliding_window", 0, &b)) < 0)
			return r;
		if (b)
			return ts_errf(e, E_UNSUPPORTED, "%s: \"use_sliding_window\": true (per-layer windows) is not supported",
				       file);
	}
	return 0;
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

static int bind(struct model *m, const struct ckpt *ck, const char *name, int64_t rows, int64_t cols, int optional,
		struct model_w *w, struct ts_err *e)
{
	const struct ckpt_tensor *t = ckpt_find(ck, name);
	char want[64], got[160];
	if (!t) {
		if (optional)
			return 0;
		return ts_errf(e, E_FORMAT, "%s: tensor \"%s\" is missing (architecture %s); the checkpoint is incomplete or of another architecture",
			       ck->dir, name, m->arch_name);
	}
	if (rows == 1 && cols >= 1)
		snprintf(want, sizeof(want), "[%lld]", (long long)cols);
	else
		snprintf(want, sizeof(want), "[%lld, %lld]", (long long)rows, (long long)cols);
	int ok = rows == 1 ? (t->n_dims == 1 && t->shape[0] == cols)
			   : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
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

int model_load(struct model *m, const struct ckpt *ck, struct ts_err *e)
{
	char file[4200], name[256];
	int qkv_bias = 0, o_bias = 0, r;

	memset(m, 0, sizeof(*m));
	snprintf(file, sizeof(file), "%s/config.json", ck->dir);
	if ((r = parse_config(m, ck, file, e, &qkv_bias, &o_bias)) < 0)
		goto fail;
	struct model_dims *d = &m->d;
	m->layers = ts_alloc((size_t)d->n_layers * sizeof(*m->layers));
	if (!m->layers) {
		r = ts_errf(e, E_NOMEM, "out of memory for %d layers", d->n_layers);
		goto fail;
	}
	if ((r = bind(m, ck, "model.embed_tokens.weight", d->vocab, d->dim, 0, &m->embed, e)) < 0 ||
	    (r = bind(m, ck, "model.norm.weight", 1, d->dim, 0, &m->final_norm, e)) < 0)
		goto fail;
	if (d->tied) {
		m->lm_head = m->embed;
	} else if ((r = bind(m, ck, "lm_head.weight", d->vocab, d->dim, 0, &m->lm_head, e)) < 0) {
		goto fail;
	}
	for (int l = 0; l < d->n_layers; l++) {
		for (size_t i = 0; i < TS_ARRAY_LEN(layer_plan); i++) {
			const struct plan_row *p = &layer_plan[i];
			int want = p->when == W_ALWAYS || (p->when == W_QKV_BIAS && qkv_bias) ||
				   (p->when == W_O_BIAS && o_bias) || (p->when == W_QK_NORM && m->arch->qk_norm);
			if (!want)
				continue;
			snprintf(name, sizeof(name), "model.layers.%d.%s", l, p->suffix);
			struct model_w *w = (struct model_w *)((char *)&m->layers[l] + p->off);
			if ((r = bind(m, ck, name, dim_of(d, p->rows), dim_of(d, p->cols), 0, w, e)) < 0)
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
	memset(m, 0, sizeof(*m));
}

uint64_t model_step_bytes(const struct model *m)
{
	uint64_t b = m->weight_bytes;
	uint64_t embed = (uint64_t)m->embed.rows * (uint64_t)m->embed.cols * ts_dtype_size(m->embed.dtype);
	if (!m->d.tied) /* the embedding table is read one row a token */
		b -= embed - (uint64_t)m->embed.cols * ts_dtype_size(m->embed.dtype);
	return b;
}

/* ------------------------------------------------------------ RoPE */

/* RoPE inverse frequencies, computed in float32 in the order HF's
 * _compute_default_rope_parameters / _compute_llama3_parameters use. */
void model_rope_freqs(const struct model_dims *d, float *inv)
{
	const int hd = d->head_dim;
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
	}
}
