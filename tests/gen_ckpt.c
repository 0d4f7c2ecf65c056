/* gen_ckpt: tiny random-weight Hugging Face checkpoints with real structure.
 *
 *   gen_ckpt --preset NAME --out DIR [--seed N]
 *   gen_ckpt --list
 *
 * Writes DIR/config.json and the safetensors file(s) (model.safetensors, or
 * model-0000k-of-0000N.safetensors plus model.safetensors.index.json) for one
 * of the presets below, then prints one summary line and the checkpoint hash
 * (FNV-1a 64 over the directory, see tests/golden.h), which tests/hf_golden.py
 * records next to the golden logits it computes with transformers.
 *
 * Determinism: the bytes depend on the preset and the seed only. Every tensor
 * has its own generator (splitmix64 seeded from the seed and the FNV-1a 64 of
 * the tensor name), so values do not depend on the order of writing or on
 * sharding. Normals come from the polar Box-Muller method with our own log
 * (frexp, which is exact, and a fixed series), so no libm rounding reaches the
 * output; sqrt is correctly rounded by IEEE 754. Values are rounded to the
 * file dtype with base.h's converters and written byte by byte little endian;
 * JSON numbers use fixed formats. ISO C mode keeps GCC from contracting a*b+c
 * into fma, which would change the last bits of the doubles.
 *
 * Init: linear weights ~ N(0, 1/sqrt(in_features)); embeddings (and so a tied
 * lm_head) ~ N(0, 1/sqrt(hidden)); RMSNorm and q/k-norm weights ~ 1 + N(0, 0.1);
 * biases ~ N(0, 0.1).
 *
 * Errors (bad flag, unknown preset, cannot write) print one line and exit 2.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "golden.h"

/* ---------------------------------------------------------------- presets */

enum family { FAM_LLAMA, FAM_MISTRAL, FAM_QWEN2, FAM_QWEN3 };

struct preset {
	const char *name;
	const char *help;
	enum family fam;
	int hidden, layers, heads, kv_heads, head_dim, ffn, vocab;
	double rope_theta, eps;
	int tied;
	enum ts_dtype dtype;
	int n_shards;
	int sliding_window;           /* 0 = none (Mistral only) */
	/* llama3 rope scaling; factor 0 = none */
	double l3_factor, l3_low, l3_high;
	int l3_orig;
	/* Benchmark presets: linear and embedding weights N(0, init_std) instead
	 * of the fan-in scaled init, filled by threads in 1 Mi-element chunks
	 * each with its own stream (0 = the default, single-stream init). */
	double init_std;
};

static const struct preset presets[] = {
	{ "llama2-mini", "Llama 2 layout, GQA 4/2, untied, BF16, one file", FAM_LLAMA,
	  256, 2, 4, 2, 64, 512, 512, 10000.0, 1e-5, 0, TS_BF16, 1, 0, 0, 0, 0, 0, 0 },
	{ "llama3-mini", "Llama 3.1 layout, llama3 rope scaling (orig 32), tied, BF16, 2 shards",
	  FAM_LLAMA, 256, 2, 2, 1, 128, 384, 640, 500000.0, 1e-5, 1, TS_BF16, 2, 0,
	  8.0, 1.0, 4.0, 32, 0 },
	{ "mistral-mini", "Mistral, sliding window 16, untied, F16, one file", FAM_MISTRAL,
	  192, 2, 3, 1, 64, 384, 512, 1000000.0, 1e-5, 0, TS_F16, 1, 16, 0, 0, 0, 0, 0 },
	{ "qwen2-mini", "Qwen2, QKV bias, tied, F32, 3 shards", FAM_QWEN2,
	  128, 2, 2, 1, 64, 256, 512, 1000000.0, 1e-6, 1, TS_F32, 3, 0, 0, 0, 0, 0, 0 },
	{ "qwen3-mini", "Qwen3, q/k norm, head_dim 128 (q dim 512 != hidden 192), untied, BF16, 2 shards",
	  FAM_QWEN3, 192, 2, 4, 2, 128, 384, 512, 1000000.0, 1e-6, 0, TS_BF16, 2, 0, 0, 0, 0, 0, 0 },
	{ "llama3-small", "Llama 3.1 layout, 4 layers, hidden 512, vocab 2048, tied, BF16, one file",
	  FAM_LLAMA, 512, 4, 8, 2, 64, 1376, 2048, 500000.0, 1e-5, 1, TS_BF16, 1, 0,
	  8.0, 1.0, 4.0, 8192, 0 },
	{ "llama31-8b", "Llama 3.1 8B shape (hidden 4096, 32 layers, GQA 32/8, ffn 14336, vocab 128256), N(0, 0.02) weights, untied, BF16, 4 shards (16 GB)",
	  FAM_LLAMA, 4096, 32, 32, 8, 128, 14336, 128256, 500000.0, 1e-5, 0, TS_BF16, 4, 0,
	  8.0, 1.0, 4.0, 8192, 0.02 },
};

static const char *const fam_arch[] = { "LlamaForCausalLM", "MistralForCausalLM",
					"Qwen2ForCausalLM", "Qwen3ForCausalLM" };
static const char *const fam_type[] = { "llama", "mistral", "qwen2", "qwen3" };

static const char *dtype_torch_name(enum ts_dtype t)
{
	return t == TS_F32 ? "float32" : t == TS_F16 ? "float16" : "bfloat16";
}

/* ---------------------------------------------------------------- errors */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("gen_ckpt: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *xalloc(size_t bytes)
{
	void *p = ts_alloc(bytes);
	if (!p)
		die("out of memory allocating %zu bytes", bytes);
	return p;
}

/* ---------------------------------------------------------------- random numbers */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* Natural log of x > 0 from exact operations and a fixed series, so that the
 * result is the same on every IEEE 754 machine (libm's log may differ in the
 * last bit between versions). ln x = e ln 2 + 2 atanh((m-1)/(m+1)). */
static double det_log(double x)
{
	int e;
	double m = frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
	if (m < 0.70710678118654752) {
		m *= 2.0;
		e -= 1;
	}
	double s = (m - 1.0) / (m + 1.0), s2 = s * s, p = 0.0; /* |s| <= 0.172 */
	for (int k = 13; k >= 0; k--)
		p = p * s2 + 1.0 / (double)(2 * k + 1);
	return (double)e * 0.69314718055994530942 + 2.0 * s * p;
}

struct rng {
	uint64_t state;
	int have_spare;
	double spare;
};

/* Standard normal, Marsaglia's polar form of Box-Muller. */
static double rng_normal(struct rng *r)
{
	if (r->have_spare) {
		r->have_spare = 0;
		return r->spare;
	}
	double u, v, s;
	do {
		u = 2.0 * rng_uniform(&r->state) - 1.0;
		v = 2.0 * rng_uniform(&r->state) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	double f = sqrt(-2.0 * det_log(s) / s);
	r->spare = v * f;
	r->have_spare = 1;
	return u * f;
}

/* ---------------------------------------------------------------- tensors */

enum init { INIT_LINEAR, INIT_EMBED, INIT_NORM, INIT_BIAS };

struct tensor {
	char name[96];
	int n_dims;
	int64_t shape[2];
	enum init init;
	int64_t fan_in;        /* INIT_LINEAR: in_features */
	uint64_t bytes;
	int shard;             /* 0-based */
	uint64_t off;          /* data offset inside its shard */
};

struct model {
	const struct preset *p;
	uint64_t seed;
	int n;
	struct tensor t[512];
	uint64_t total_bytes, n_params;
};

static void add_tensor(struct model *m, enum init init, int64_t d0, int64_t d1, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void add_tensor(struct model *m, enum init init, int64_t d0, int64_t d1, const char *fmt, ...)
{
	if (m->n >= (int)TS_ARRAY_LEN(m->t))
		die("internal: too many tensors");
	struct tensor *t = &m->t[m->n++];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->init = init;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->n_dims = d1 ? 2 : 1;
	t->fan_in = d1;
	int64_t n = d1 ? d0 * d1 : d0;
	t->bytes = (uint64_t)n * ts_dtype_size(m->p->dtype);
	m->total_bytes += t->bytes;
	m->n_params += (uint64_t)n;
}

/* The HF tensor list in module order (the order sharding follows). */
static void model_build(struct model *m)
{
	const struct preset *p = m->p;
	int64_t h = p->hidden, qd = (int64_t)p->heads * p->head_dim, kvd = (int64_t)p->kv_heads * p->head_dim;
	add_tensor(m, INIT_EMBED, p->vocab, h, "model.embed_tokens.weight");
	for (int i = 0; i < p->layers; i++) {
		const char *L = "model.layers";
		add_tensor(m, INIT_NORM, h, 0, "%s.%d.input_layernorm.weight", L, i);
		add_tensor(m, INIT_LINEAR, qd, h, "%s.%d.self_attn.q_proj.weight", L, i);
		if (p->fam == FAM_QWEN2)
			add_tensor(m, INIT_BIAS, qd, 0, "%s.%d.self_attn.q_proj.bias", L, i);
		add_tensor(m, INIT_LINEAR, kvd, h, "%s.%d.self_attn.k_proj.weight", L, i);
		if (p->fam == FAM_QWEN2)
			add_tensor(m, INIT_BIAS, kvd, 0, "%s.%d.self_attn.k_proj.bias", L, i);
		add_tensor(m, INIT_LINEAR, kvd, h, "%s.%d.self_attn.v_proj.weight", L, i);
		if (p->fam == FAM_QWEN2)
			add_tensor(m, INIT_BIAS, kvd, 0, "%s.%d.self_attn.v_proj.bias", L, i);
		add_tensor(m, INIT_LINEAR, h, qd, "%s.%d.self_attn.o_proj.weight", L, i);
		if (p->fam == FAM_QWEN3) {
			add_tensor(m, INIT_NORM, p->head_dim, 0, "%s.%d.self_attn.q_norm.weight", L, i);
			add_tensor(m, INIT_NORM, p->head_dim, 0, "%s.%d.self_attn.k_norm.weight", L, i);
		}
		add_tensor(m, INIT_NORM, h, 0, "%s.%d.post_attention_layernorm.weight", L, i);
		add_tensor(m, INIT_LINEAR, p->ffn, h, "%s.%d.mlp.gate_proj.weight", L, i);
		add_tensor(m, INIT_LINEAR, p->ffn, h, "%s.%d.mlp.up_proj.weight", L, i);
		add_tensor(m, INIT_LINEAR, h, p->ffn, "%s.%d.mlp.down_proj.weight", L, i);
	}
	add_tensor(m, INIT_NORM, h, 0, "model.norm.weight");
	if (!p->tied)
		add_tensor(m, INIT_LINEAR, p->vocab, h, "lm_head.weight");

	/* Whole tensors to shards in module order: a tensor goes to the shard in
	 * which its first byte falls when the total is cut into n equal parts. */
	uint64_t c = 0;
	for (int i = 0; i < m->n; i++) {
		m->t[i].shard = (int)TS_MIN((c * (uint64_t)p->n_shards) / m->total_bytes,
					    (uint64_t)p->n_shards - 1);
		c += m->t[i].bytes;
	}
	for (int s = 0; s < p->n_shards; s++) {
		int used = 0;
		for (int i = 0; i < m->n; i++)
			used |= m->t[i].shard == s;
		if (!used)
			die("internal: preset %s leaves shard %d empty", p->name, s + 1);
	}
}

/* Values of one tensor as floats, (numel). */
static void tensor_fill(const struct model *m, const struct tensor *t, float *out, int64_t numel)
{
	struct rng r = { 0 };
	uint64_t st = golden_fnv1a64(GOLDEN_FNV_OFFSET, t->name, strlen(t->name)) ^
		      (m->seed * 0xd1342543de82ef95ull);
	r.state = splitmix64(&st);
	double std = 0.0, mean = 0.0;
	switch (t->init) {
	case INIT_LINEAR:
		std = 1.0 / sqrt((double)t->fan_in);
		break;
	case INIT_EMBED:
		std = 1.0 / sqrt((double)m->p->hidden);
		break;
	case INIT_NORM:
		mean = 1.0;
		std = 0.1;
		break;
	case INIT_BIAS:
		std = 0.1;
		break;
	}
	for (int64_t i = 0; i < numel; i++)
		out[i] = (float)(mean + std * rng_normal(&r));
}

/* Benchmark presets: N(0, init_std) for weights (norms as usual), in 1 Mi
 * element chunks, each seeded by (tensor, chunk), filled by 16 threads. */
#define CHUNK (1 << 20)
struct par {
	const struct model *m;
	const struct tensor *t;
	float *out;
	int64_t numel;
	int tid, nth;
};

static void *par_fill(void *arg)
{
	struct par *a = arg;
	const struct tensor *t = a->t;
	double std = a->m->p->init_std, mean = 0.0;
	if (t->init == INIT_NORM)
		mean = 1.0, std = 0.1;
	else if (t->init == INIT_BIAS)
		std = 0.1;
	for (int64_t c = a->tid; c * CHUNK < a->numel; c += a->nth) {
		struct rng r = { 0 };
		uint64_t st = golden_fnv1a64(GOLDEN_FNV_OFFSET, t->name, strlen(t->name)) ^
			      (a->m->seed * 0xd1342543de82ef95ull) ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull);
		r.state = splitmix64(&st);
		int64_t end = (c + 1) * CHUNK < a->numel ? (c + 1) * CHUNK : a->numel;
		for (int64_t i = c * CHUNK; i < end; i++)
			a->out[i] = (float)(mean + std * rng_normal(&r));
	}
	return NULL;
}

static void tensor_fill_par(const struct model *m, const struct tensor *t, float *out, int64_t numel)
{
	enum { NTH = 16 };
	pthread_t th[NTH];
	struct par a[NTH];
	for (int i = 0; i < NTH; i++) {
		a[i] = (struct par){ m, t, out, numel, i, NTH };
		if (pthread_create(&th[i], NULL, par_fill, &a[i]))
			die("cannot start a fill thread");
	}
	for (int i = 0; i < NTH; i++)
		pthread_join(th[i], NULL);
}

/* ---------------------------------------------------------------- output */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			die("internal: vsnprintf failed");
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = TS_MAX(b->cap * 2, b->len + (size_t)n + 256);
		char *q = ts_realloc(b->p, cap);
		if (!q)
			die("out of memory");
		b->p = q;
		b->cap = cap;
	}
}

/* A JSON number for a double: integral values keep a ".0" (as Python's json
 * writes floats), others use %.9g. Both are locale-free in the C locale. */
static void sb_num(struct sbuf *b, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		sb_printf(b, "%.1f", v);
	else
		sb_printf(b, "%.9g", v);
}

struct out {
	const char *dir;
	char path[4096];
	FILE *f;
};

static void out_open(struct out *o, const char *name)
{
	if ((size_t)snprintf(o->path, sizeof(o->path), "%s/%s", o->dir, name) >= sizeof(o->path))
		die("output path too long: %s/%s", o->dir, name);
	o->f = fopen(o->path, "wb");
	if (!o->f)
		die("cannot write %s: %s", o->path, strerror(errno));
}

static void out_write(struct out *o, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, o->f) != n)
		die("cannot write %s: %s", o->path, strerror(errno));
}

static void out_close(struct out *o)
{
	if (ferror(o->f) | fclose(o->f))
		die("cannot write %s: %s", o->path, strerror(errno));
	o->f = NULL;
}

static void write_config(const struct model *m, const char *dir)
{
	const struct preset *p = m->p;
	struct sbuf b = { 0 };
	sb_printf(&b, "{\n");
	sb_printf(&b, "  \"architectures\": [\"%s\"],\n", fam_arch[p->fam]);
	sb_printf(&b, "  \"model_type\": \"%s\",\n", fam_type[p->fam]);
	sb_printf(&b, "  \"hidden_size\": %d,\n", p->hidden);
	sb_printf(&b, "  \"intermediate_size\": %d,\n", p->ffn);
	sb_printf(&b, "  \"num_hidden_layers\": %d,\n", p->layers);
	sb_printf(&b, "  \"num_attention_heads\": %d,\n", p->heads);
	sb_printf(&b, "  \"num_key_value_heads\": %d,\n", p->kv_heads);
	sb_printf(&b, "  \"head_dim\": %d,\n", p->head_dim);
	sb_printf(&b, "  \"vocab_size\": %d,\n", p->vocab);
	sb_printf(&b, "  \"max_position_embeddings\": 4096,\n");
	sb_printf(&b, "  \"rms_norm_eps\": ");
	sb_num(&b, p->eps);
	sb_printf(&b, ",\n  \"rope_theta\": ");
	sb_num(&b, p->rope_theta);
	sb_printf(&b, ",\n");
	if (p->l3_factor > 0) {
		sb_printf(&b, "  \"rope_scaling\": {\n    \"rope_type\": \"llama3\",\n    \"factor\": ");
		sb_num(&b, p->l3_factor);
		sb_printf(&b, ",\n    \"low_freq_factor\": ");
		sb_num(&b, p->l3_low);
		sb_printf(&b, ",\n    \"high_freq_factor\": ");
		sb_num(&b, p->l3_high);
		sb_printf(&b, ",\n    \"original_max_position_embeddings\": %d\n  },\n", p->l3_orig);
	} else {
		sb_printf(&b, "  \"rope_scaling\": null,\n");
	}
	sb_printf(&b, "  \"tie_word_embeddings\": %s,\n", p->tied ? "true" : "false");
	switch (p->fam) {
	case FAM_LLAMA:
		sb_printf(&b, "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n"
			      "  \"pretraining_tp\": 1,\n");
		break;
	case FAM_MISTRAL:
		if (p->sliding_window)
			sb_printf(&b, "  \"sliding_window\": %d,\n", p->sliding_window);
		else
			sb_printf(&b, "  \"sliding_window\": null,\n");
		break;
	case FAM_QWEN2:
		sb_printf(&b, "  \"use_sliding_window\": false,\n  \"sliding_window\": null,\n"
			      "  \"max_window_layers\": %d,\n", p->layers);
		break;
	case FAM_QWEN3:
		sb_printf(&b, "  \"attention_bias\": false,\n  \"use_sliding_window\": false,\n"
			      "  \"sliding_window\": null,\n  \"max_window_layers\": %d,\n", p->layers);
		break;
	}
	sb_printf(&b, "  \"attention_dropout\": 0.0,\n");
	sb_printf(&b, "  \"hidden_act\": \"silu\",\n");
	sb_printf(&b, "  \"initializer_range\": 0.02,\n");
	sb_printf(&b, "  \"use_cache\": true,\n");
	sb_printf(&b, "  \"bos_token_id\": 1,\n");
	sb_printf(&b, "  \"eos_token_id\": 2,\n");
	sb_printf(&b, "  \"torch_dtype\": \"%s\"\n", dtype_torch_name(p->dtype));
	sb_printf(&b, "}\n");

	struct out o = { .dir = dir };
	out_open(&o, "config.json");
	out_write(&o, b.p, b.len);
	out_close(&o);
	ts_free(b.p);
}

static int cmp_tensor_name(const void *a, const void *b)
{
	const struct tensor *x = *(const struct tensor *const *)a, *y = *(const struct tensor *const *)b;
	return strcmp(x->name, y->name);
}

static void shard_name(const struct model *m, int s, char *buf, size_t n)
{
	if (m->p->n_shards == 1)
		snprintf(buf, n, "model.safetensors");
	else
		snprintf(buf, n, "model-%05d-of-%05d.safetensors", s + 1, m->p->n_shards);
}

static void put_u16le(uint8_t *q, uint16_t v)
{
	q[0] = (uint8_t)v;
	q[1] = (uint8_t)(v >> 8);
}

/* One safetensors file: u64 LE header length, the JSON header padded with
 * spaces to a multiple of 8 (as the reference writer does), then the tensors
 * of this shard sorted by name, back to back. */
static void write_shard(struct model *m, int s, const char *dir)
{
	const struct preset *p = m->p;
	struct tensor *list[512];
	int n = 0;
	for (int i = 0; i < m->n; i++)
		if (m->t[i].shard == s)
			list[n++] = &m->t[i];
	qsort(list, (size_t)n, sizeof(list[0]), cmp_tensor_name);

	struct sbuf h = { 0 };
	uint64_t off = 0;
	sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (int i = 0; i < n; i++) {
		struct tensor *t = list[i];
		t->off = off;
		sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%" PRId64, t->name,
			  ts_dtype_name(p->dtype), t->shape[0]);
		if (t->n_dims == 2)
			sb_printf(&h, ",%" PRId64, t->shape[1]);
		sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->bytes);
		off += t->bytes;
	}
	sb_printf(&h, "}");
	while (h.len % 8)
		sb_printf(&h, " ");

	char name[64];
	shard_name(m, s, name, sizeof(name));
	struct out o = { .dir = dir };
	out_open(&o, name);
	uint8_t len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
	out_write(&o, len8, 8);
	out_write(&o, h.p, h.len);
	ts_free(h.p);

	for (int i = 0; i < n; i++) {
		const struct tensor *t = list[i];
		int64_t numel = t->n_dims == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
		float *v = xalloc((size_t)numel * sizeof(float));
		uint8_t *bytes = xalloc((size_t)t->bytes);
		if (p->init_std > 0)
			tensor_fill_par(m, t, v, numel);
		else
			tensor_fill(m, t, v, numel);
		for (int64_t j = 0; j < numel; j++) {
			uint32_t u;
			switch (p->dtype) {
			case TS_F32:
				memcpy(&u, &v[j], 4);
				for (int k = 0; k < 4; k++)
					bytes[4 * j + k] = (uint8_t)(u >> (8 * k));
				break;
			case TS_F16:
				put_u16le(bytes + 2 * j, ts_f32_to_f16(v[j]));
				break;
			case TS_BF16:
			case TS_DTYPE_N:
				put_u16le(bytes + 2 * j, ts_f32_to_bf16(v[j]));
				break;
			}
		}
		out_write(&o, bytes, (size_t)t->bytes);
		ts_free(bytes);
		ts_free(v);
	}
	out_close(&o);
}

/* model.safetensors.index.json as transformers writes it: metadata.total_size
 * (sum of tensor bytes) and weight_map with sorted keys. */
static void write_index(struct model *m, const char *dir)
{
	struct tensor *list[512];
	for (int i = 0; i < m->n; i++)
		list[i] = &m->t[i];
	qsort(list, (size_t)m->n, sizeof(list[0]), cmp_tensor_name);
	struct sbuf b = { 0 };
	sb_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {\n",
		  m->total_bytes);
	for (int i = 0; i < m->n; i++) {
		char name[64];
		shard_name(m, list[i]->shard, name, sizeof(name));
		sb_printf(&b, "    \"%s\": \"%s\"%s\n", list[i]->name, name, i + 1 < m->n ? "," : "");
	}
	sb_printf(&b, "  }\n}\n");
	struct out o = { .dir = dir };
	out_open(&o, "model.safetensors.index.json");
	out_write(&o, b.p, b.len);
	out_close(&o);
	ts_free(b.p);
}

/* ---------------------------------------------------------------- directory */

static void mkdir_p(const char *dir)
{
	char path[4096];
	if (strlen(dir) >= sizeof(path))
		die("output path too long: %s", dir);
	strcpy(path, dir);
	for (char *q = path + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = 0;
		if (mkdir(path, 0777) && errno != EEXIST)
			die("cannot create directory %s: %s", path, strerror(errno));
		*q = '/';
	}
	if (mkdir(path, 0777) && errno != EEXIST)
		die("cannot create directory %s: %s", path, strerror(errno));
	struct stat st;
	if (stat(path, &st) || !S_ISDIR(st.st_mode))
		die("--out %s is not a directory", dir);
}

/* A checkpoint file left by another preset (other shard count) would be read
 * with ours and change the directory hash: refuse rather than delete. */
static void check_no_foreign(const struct model *m, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		die("cannot list %s: %s", dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		if (strncmp(nm, "model", 5) || !strstr(nm, ".safetensors"))
			continue;
		int ours = m->p->n_shards > 1 && !strcmp(nm, "model.safetensors.index.json");
		for (int s = 0; s < m->p->n_shards && !ours; s++) {
			char name[64];
			shard_name(m, s, name, sizeof(name));
			ours = !strcmp(nm, name);
		}
		if (!ours) {
			closedir(d);
			die("%s/%s belongs to another checkpoint; remove it or use an empty --out", dir, nm);
		}
	}
	closedir(d);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f, "usage: gen_ckpt --preset NAME --out DIR [--seed N]\n"
		   "       gen_ckpt --list\n");
}

int main(int argc, char **argv)
{
	const char *preset = NULL, *dir = NULL;
	uint64_t seed = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--list")) {
			for (size_t k = 0; k < TS_ARRAY_LEN(presets); k++)
				printf("%-14s %s\n", presets[k].name, presets[k].help);
			return 0;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--preset") || !strcmp(a, "--out") || !strcmp(a, "--seed")) {
			if (i + 1 >= argc)
				die("%s needs a value (try --help)", a);
			const char *v = argv[++i];
			if (!strcmp(a, "--preset")) {
				preset = v;
			} else if (!strcmp(a, "--out")) {
				dir = v;
			} else {
				char *end;
				errno = 0;
				unsigned long long x = strtoull(v, &end, 0);
				if (errno || end == v || *end || v[0] == '-')
					die("--seed %s: not an unsigned integer", v);
				seed = x;
			}
		} else {
			die("unknown argument '%s' (try --help)", a);
		}
	}
	if (!preset || !dir)
		die("need --preset NAME and --out DIR (try --help; --list shows the presets)");

	struct model *m = xalloc(sizeof(*m));
	for (size_t k = 0; k < TS_ARRAY_LEN(presets); k++)
		if (!strcmp(presets[k].name, preset))
			m->p = &presets[k];
	if (!m->p)
		die("unknown preset '%s' (gen_ckpt --list shows them)", preset);
	m->seed = seed;
	model_build(m);

	mkdir_p(dir);
	check_no_foreign(m, dir);
	write_config(m, dir);
	for (int s = 0; s < m->p->n_shards; s++)
		write_shard(m, s, dir);
	if (m->p->n_shards > 1)
		write_index(m, dir);

	uint64_t hash;
	struct ts_err e;
	if (golden_ckpt_hash(dir, &hash, &e))
		die("%s", e.msg);
	printf("gen_ckpt: %s seed %" PRIu64 " -> %s: %d file(s), %d tensors, %" PRIu64
	       " params, %" PRIu64 " tensor bytes\n",
	       m->p->name, seed, dir, m->p->n_shards, m->n, m->n_params, m->total_bytes);
	printf("ckpt_hash 0x%016" PRIx64 "\n", hash);
	ts_free(m);
	return 0;
}
