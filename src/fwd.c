/* fwd: the GPU backend. Weights, workspace, KV storage and metadata live in
 * one device arena taken at init (fwd_arena.c, fwd_upload.c); a step uploads
 * its metadata, replays a graph (fwd_graph.c) or launches the forward pass
 * (below, a list of ops), and copies the wanted logits back. */
#include "fwd.h"
#include "fwd_int.h"

#include <stdio.h>
#include <stdlib.h>

#include "fmath.h"
#include "gpu.h"
#include "gpu_attn.h"
#include "gpu_elem.h"
#include "gpu_gemm.h"
#include "log.h"

/* The devices opened so far, by ordinal: gpu_mem_available opens one before
 * init (the engine sizes the KV pool first); init then takes it over, and the
 * slot points at the backend's own copy until free. */
static struct gpu *devs[64];
static struct gpu opened[64];

/* ------------------------------------------------------------ sizes */

static int dev_open(int ordinal, struct gpu **out, struct ts_err *e)
{
	if (ordinal < 0 || ordinal >= 64)
		return ts_errf(e, E_RANGE, "gpu: ordinal %d (0..63)", ordinal);
	if (!devs[ordinal]) {
		int r = gpu_open(&opened[ordinal], ordinal, e);
		if (r < 0)
			return r;
		devs[ordinal] = &opened[ordinal];
	}
	*out = devs[ordinal];
	return 0;
}

/* ------------------------------------------------------------ the forward pass */

static gpu_ptr kv_k(const struct gpub *p, int l)
{
	return p->kv + (gpu_ptr)(2 * (size_t)l) * p->kv_layer * 2;
}

static gpu_ptr kv_v(const struct gpub *p, int l)
{
	return p->kv + (gpu_ptr)(2 * (size_t)l + 1) * p->kv_layer * 2;
}

/* TS_WHATIF (a measurement, never for serving): leave kernels out of every
 * layer to time what fusing them away could save at most; the outputs are
 * wrong and the boot self-test is skipped. Bits: 1 the two RMSNorms, 2 RoPE +
 * KV write, 4 attention (with its reduce), 8 only the decode reduce. */
static unsigned whatif(void)
{
	static int v = -1;
	if (v < 0) {
		const char *s = getenv("TS_WHATIF");
		v = s ? atoi(s) & 15 : 0;
	}
	return (unsigned)v;
}

int fwd_whatif(void)
{
	return (int)whatif();
}

/* One batch, already described by the device metadata: T tokens, n_rows
 * logit rows, n_dec decode tokens listed at d_dec and n_pre prefill tokens at
 * d_pre (n_pre = 0 and n_dec = T for a pure decode step). */
int fwd_run(struct gpub *p, const struct model *m, int T, int n_rows, int n_dec, int n_pre, int n_layers, int sample)
{
	const struct model_dims *d = &m->d;
	const int qkv_dim = d->q_dim + 2 * d->kv_dim;
	struct gpu *g = &p->g;
	int r = 0;

	struct k_embed em = {DP(p->embed), DP(p->d_token), DP(p->x), T, d->dim};
	r |= embed_run(g, &em);
	for (int l = 0; l < n_layers && r == 0; l++) {
		const struct glayer *L = &p->L[l];
		/* attention block */
		struct k_rmsnorm n1 = {DP(p->x), NULL, DP(L->attn_norm), DP(p->xb), T, d->dim, d->rms_eps};
		struct k_gemm qkv = {DP(p->xb), DP(L->wqkv), DP(L->bqkv), DP(p->qkv), NULL, T, d->dim, qkv_dim, qkv_dim,
				     KG_STORE_F32, 1};
		struct k_rope_kv rk = {DP(p->qkv), DP(p->q), DP(kv_k(p, l)), DP(kv_v(p, l)), DP(p->d_pos), DP(p->d_seq),
				       DP(p->d_blocks), DP(L->q_norm), DP(L->k_norm), DP(p->inv_freq), T, d->n_heads,
				       d->n_kv_heads, d->head_dim, p->block_tokens, p->max_blocks, d->rms_eps};
		struct k_attn at = {DP(p->q), DP(kv_k(p, l)), DP(kv_v(p, l)), DP(p->d_pos), DP(p->d_seq), DP(p->d_blocks),
				    NULL, T, NULL, DP(p->att), T, d->n_heads, d->n_kv_heads, d->head_dim, p->block_tokens,
				    p->max_blocks, 0, d->sliding_window, 1.0f / fm_sqrtf((float)d->head_dim)};
		struct k_gemm o = {DP(p->att), DP(L->wo), DP(L->bo), DP(p->x), NULL, T, d->q_dim, d->dim, d->dim,
				   KG_ADD_F32, 1};
		/* MLP block */
		struct k_rmsnorm n2 = {DP(p->x), NULL, DP(L->ffn_norm), DP(p->xb), T, d->dim, d->rms_eps};
		struct k_gemm gu = {DP(p->xb), DP(L->wgu), NULL, DP(p->h), NULL, T, d->dim, 2 * d->ffn_dim, d->ffn_dim,
				    KG_SILU_MUL_BF16, 1};
		struct k_gemm dn = {DP(p->h), DP(L->wd), NULL, DP(p->x), NULL, T, d->ffn_dim, d->dim, d->dim, KG_ADD_F32, 1};

		const unsigned wi = whatif();
		if (!(wi & 1))
			r |= rmsnorm_run(g, &n1);              /* xb = rmsnorm(x) * attn_norm */
		r |= gemm_run(g, &qkv, p->gemm_ws);            /* qkv = xb Wqkv^T + b */
		if (!(wi & 2))
			r |= rope_kv_run(g, &rk);              /* q = rope(q); cache <- rope(k), v */
		if (n_pre == 0) {                              /* att = softmax(q K^T) V */
			if (!(wi & 4))
				r |= attn_run(g, &at, p->attn_ws, (wi & 8) ? ATTN_DECODE_NO_REDUCE : ATTN_DECODE);
		} else {
			if (n_dec > 0) {
				at.tok = DP(p->d_dec);
				at.n_tok = n_dec;
				r |= attn_run(g, &at, p->attn_ws, ATTN_DECODE);
			}
			at.tok = DP(p->d_pre);
			at.n_tok = n_pre;
			r |= attn_run(g, &at, p->attn_ws, ATTN_PREFILL);
		}
		r |= gemm_run(g, &o, p->gemm_ws);              /* x += att Wo^T */
		if (!(wi & 1))
			r |= rmsnorm_run(g, &n2);              /* xb = rmsnorm(x) * ffn_norm */
		r |= gemm_run(g, &gu, p->gemm_ws);             /* h = silu(xb Wg^T) * (xb Wu^T) */
		r |= gemm_run(g, &dn, p->gemm_ws);             /* x += h Wd^T */
	}
	struct k_rmsnorm nf = {DP(p->x), DP(p->d_rows), DP(p->final_norm), DP(p->xf), n_rows, d->dim, d->rms_eps};
	struct k_gemm head = {DP(p->xf), DP(d->tied ? p->embed : p->lm_head), NULL, DP(p->logits), NULL, n_rows, d->dim,
			      d->vocab, d->vocab, KG_STORE_F32, 1};
	if (n_rows == 0)                                       /* a prefill chunk that samples nothing */
		return r ? -E_INTERNAL : 0;
	r |= rmsnorm_run(g, &nf);                              /* xf = rmsnorm(x[rows]) * norm */
	r |= gemm_run(g, &head, p->gemm_ws);                   /* logits = xf E^T */
	if (sample) {                                          /* tokens = sample(logits) */
		struct k_sample ks = {DP(p->logits), d->vocab, d->vocab, n_rows, DP(p->d_srows), DP(p->d_hist),
				      DP(p->d_sampled), DP(p->samp_ws)};
		r |= sample_run(g, &ks);
		r |= gpu_d2h(g, p->sampled_h, p->d_sampled, (size_t)n_rows * 4);
	} else {
		r |= gpu_d2h(g, p->logits_h, p->logits, (size_t)n_rows * (size_t)d->vocab * 4);
	}
	return r ? -E_INTERNAL : 0;
}

static uint64_t gpu_kv_bytes_per_token(const struct model *m)
{
	return (uint64_t)m->d.n_layers * 2u * (uint64_t)m->d.kv_dim * 2u;
}

static int gpu_mem_available(const struct model *m, const struct backend_limits *l, uint64_t *bytes, struct ts_err *e)
{
	struct gpub dry;
	struct backend_limits l0 = *l;
	struct gpu *dev;
	int r = dev_open(l->device, &dev, e);
	if (r < 0)
		return r;
	memset(&dry, 0, sizeof(dry));
	l0.n_blocks = 0;
	uint64_t used = fwd_arena_carve(&dry, m, &l0, dev->info.n_sm) + (512ull << 20); /* + graphs, module, slack */
	uint64_t free_b = dev->info.mem_free;
	*bytes = free_b > used ? free_b - used : 0;
	return 0;
}

/* ------------------------------------------------------------ steps */

/* Packs the batch into the pinned mirror (pad tokens up to n_pad) and uploads it. */
static int put_meta(struct gpub *p, const struct batch *bt, int n_pad, int *n_dec, int *n_pre)
{
	int32_t *h = p->meta_h;
	int32_t *tok = h, *pos = tok + p->T, *seq = pos + p->T, *dec = seq + p->T, *pre = dec + p->T;
	int32_t *rows = pre + p->T, *blocks = rows + p->R;
	int T = bt->n_tokens, nd = 0, np = 0;
	for (int t = 0; t < T; t++) {
		tok[t] = bt->token[t];
		pos[t] = bt->pos[t];
		seq[t] = bt->seq[t];
		int s = bt->seq[t];
		int alone = (t == 0 || bt->seq[t - 1] != s) && (t == T - 1 || bt->seq[t + 1] != s);
		if (alone)
			dec[nd++] = t;
		else
			pre[np++] = t;
	}
	for (int t = T; t < n_pad; t++) { /* graph padding: a scratch sequence */
		tok[t] = 0;
		pos[t] = 0;
		seq[t] = p->R - 1;
		dec[nd++] = t;
	}
	for (int i = 0; i < bt->n_logits; i++)
		rows[i] = bt->logit_rows[i];
	for (int i = bt->n_logits; i < n_pad; i++)
		rows[i] = i;
	for (int s = 0; s < bt->n_seqs; s++)
		memcpy(blocks + (size_t)s * p->max_blocks, bt->seqs[s].blocks, (size_t)bt->seqs[s].n_blocks * 4);
	blocks[(size_t)(p->R - 1) * p->max_blocks] = p->n_kv_blocks;
	*n_dec = nd;
	*n_pre = np;
	return gpu_h2d(&p->g, p->meta, h, p->meta_words * 4);
}

/* Device sampling rows: parameters, and histories only where a penalty reads them. */
static int put_samp(struct gpub *p, const struct backend_samp_row *rows, int n, int n_pad)
{
	int32_t off = 0;
	for (int i = 0; i < n_pad; i++) {
		struct k_samp_row *k = &p->srows_h[i];
		memset(k, 0, sizeof(*k));
		if (i >= n) { /* padding rows: greedy, no history */
			k->top_p = 1.0f;
			k->repetition_penalty = 1.0f;
			continue;
		}
		const struct samp_params *sp = rows[i].p;
		k->temperature = sp->temperature;
		k->top_p = sp->top_p;
		k->min_p = sp->min_p;
		k->repetition_penalty = sp->repetition_penalty;
		k->presence_penalty = sp->presence_penalty;
		k->frequency_penalty = sp->frequency_penalty;
		k->top_k = sp->top_k;
		k->seed = sp->seed;
		k->pos = rows[i].pos;
		int pen = sp->repetition_penalty != 1.0f || sp->presence_penalty != 0.0f || sp->frequency_penalty != 0.0f;
		if (pen) {
			k->n_prompt = rows[i].n_prompt;
			k->n_out = rows[i].n_out;
			k->hist_off = off;
			memcpy(p->hist_h + off, rows[i].prompt, (size_t)rows[i].n_prompt * 4);
			memcpy(p->hist_h + off + rows[i].n_prompt, rows[i].out, (size_t)rows[i].n_out * 4);
			off += rows[i].n_prompt + rows[i].n_out;
		}
	}
	if (gpu_h2d(&p->g, p->d_srows, p->srows_h, (size_t)n_pad * sizeof(struct k_samp_row)) < 0)
		return -E_INTERNAL;
	return off ? gpu_h2d(&p->g, p->d_hist, p->hist_h, (size_t)off * 4) : 0;
}

/* One step: tokens (rows != NULL: sampled on the device) or logits. */
static int step(struct backend *b, const struct batch *bt, float *logits, const struct backend_samp_row *rows,
		int32_t *tokens, int n_layers)
{
	struct gpub *p = b->impl;
	const struct model *m = b->m;
	const int sample = rows != NULL;
	int nd, np, r, full = n_layers == 0 || n_layers == m->d.n_layers;
	if (bt->n_tokens < 1 || bt->n_tokens > p->T || bt->n_logits > p->R - 1 || bt->n_seqs > p->R - 1)
		return -E_INVAL;
	for (int t = 0; t < bt->n_tokens; t++)
		if (bt->token[t] < 0 || bt->token[t] >= m->d.vocab || bt->pos[t] < 0 || bt->pos[t] >= b->lim.max_seq_len ||
		    bt->seq[t] < 0 || bt->seq[t] >= bt->n_seqs || bt->pos[t] / p->block_tokens >= bt->seqs[bt->seq[t]].n_blocks)
			return -E_INVAL;
	int decode = bt->n_logits == bt->n_tokens && bt->n_seqs == bt->n_tokens;
	for (int i = 0; decode && i < bt->n_logits; i++)
		decode = bt->logit_rows[i] == i && bt->seq[i] == i;
	int k = decode && full ? fwd_graph_bucket(p, bt->n_tokens) : -1;
	int n_pad = k >= 0 && p->graph[sample][k] ? p->bucket_n[k] : bt->n_tokens;
	if (sample && (r = put_samp(p, rows, bt->n_logits, k >= 0 && p->graph[sample][k] ? n_pad : bt->n_logits)) < 0)
		return r;
	if (k >= 0 && p->graph[sample][k]) {
		if ((r = put_meta(p, bt, n_pad, &nd, &np)) < 0 || (r = gpu_graph_launch(&p->g, p->graph[sample][k])) < 0)
			return r;
	} else {
		if ((r = put_meta(p, bt, bt->n_tokens, &nd, &np)) < 0)
			return r;
		if ((r = fwd_run(p, m, bt->n_tokens, bt->n_logits, nd, np, full ? m->d.n_layers : n_layers, sample)) < 0)
			return r;
	}
	if ((r = gpu_sync(&p->g)) < 0)
		return r;
	if (sample)
		memcpy(tokens, p->sampled_h, (size_t)bt->n_logits * 4);
	else if (bt->n_logits)
		memcpy(logits, p->logits_h, (size_t)bt->n_logits * (size_t)m->d.vocab * 4);
	return 0;
}

static int gpu_forward(struct backend *b, const struct batch *bt, float *logits)
{
	return step(b, bt, logits, NULL, NULL, 0);
}

static int gpu_forward_sample(struct backend *b, const struct batch *bt, const struct backend_samp_row *rows,
			      int32_t *tokens)
{
	return step(b, bt, NULL, rows, tokens, 0);
}

int fwd_forward_layers(struct backend *b, const struct batch *bt, float *logits, int n_layers)
{
	return step(b, bt, logits, NULL, NULL, n_layers);
}

uint64_t fwd_device_allocs(const struct backend *b)
{
	const struct gpub *p = b->impl;
	return p ? p->g.n_mallocs : 0;
}

/* ------------------------------------------------------------ init, free */

static void gpu_free(struct backend *b)
{
	struct gpub *p = b->impl;
	if (!p)
		return;
	for (int k = 0; k < N_BUCKETS; k++) {
		gpu_graph_free(&p->g, p->graph[0][k]);
		gpu_graph_free(&p->g, p->graph[1][k]);
	}
	gpu_host_free(&p->g, p->meta_h);
	gpu_host_free(&p->g, p->srows_h);
	gpu_host_free(&p->g, p->hist_h);
	gpu_host_free(&p->g, p->sampled_h);
	gpu_host_free(&p->g, p->logits_h);
	ts_free(p->L);
	gpu_close(&p->g);
	devs[p->ordinal] = NULL;
	ts_free(p);
	b->impl = NULL;
}

/* The head sizes the engine runs on the GPU: those whose attention kernels
 * have passed tests/gpu/k_attn and the GPU goldens on a device. 96 and 256
 * are built (kernels/attn.cu) and wait for that run (tests/gpu/NOTES.md);
 * when it passes they join this list. */
#define GPU_HEAD_DIMS_CHECKED "64, 128"
static int gpu_head_dim_checked(int hd)
{
	return hd == 64 || hd == 128;
}

/* What the kernels take today: GQA attention with the head sizes of
 * kernels/attn.cu, rotate-half RoPE without YaRN's cos/sin factor, dense MLPs
 * whose width the fused gate/up GEMM accepts. */
static int gpu_check(const struct model *m, struct ts_err *e)
{
	const struct model_dims *d = &m->d;
	for (int l = 0; l < d->n_layers; l++) {
		const struct model_layer *L = &m->layers[l];
		if (L->attn == ATTN_LINEAR)
			return ts_errf(e, E_UNSUPPORTED, "gpu backend: layer %d of %s is linear attention (Gated DeltaNet), which has no GPU kernels yet; it runs on the CPU backend: [device] backend = cpu",
				       l, m->arch_name);
		if (L->attn != ATTN_GQA || L->mlp != MLP_DENSE)
			return ts_errf(e, E_UNSUPPORTED, "gpu backend: layer %d is %s attention with a %s MLP; the GPU kernels run gqa attention with dense MLPs so far (MoE and MLA run on the CPU backend: [device] backend = cpu)",
				       l, model_attn_name(L->attn), model_mlp_name(L->mlp));
	}
	if (d->attn_gate || d->norm_offset)
		return ts_errf(e, E_UNSUPPORTED, "gpu backend: %s has output-gated attention and zero-centred RMSNorm weights, which the GPU kernels do not take yet; it runs on the CPU backend: [device] backend = cpu",
			       m->arch_name);
	if (!attn_head_dim_supported(d->head_dim))
		return ts_errf(e, E_UNSUPPORTED, "gpu backend: %s head_dim %d: the attention kernels take head_dim %s",
			       m->arch_name, d->head_dim, ATTN_HEAD_DIMS);
	if (!gpu_head_dim_checked(d->head_dim))
		return ts_errf(e, E_UNSUPPORTED, "gpu backend: %s head_dim %d: its attention kernels are built but not yet checked on a device (checked: head_dim %s); serve it with [device] backend = cpu until tests/gpu/k_attn passes for it",
			       m->arch_name, d->head_dim, GPU_HEAD_DIMS_CHECKED);
	if (d->rope == ROPE_YARN)
		return ts_errf(e, E_UNSUPPORTED, "gpu backend: rope_scaling yarn is not in the GPU RoPE kernel yet (supported there: default, linear, llama3)");
	if (d->ffn_dim % 8)
		return ts_errf(e, E_UNSUPPORTED, "gpu backend: intermediate_size %d: the fused gate/up GEMM needs a multiple of 8",
			       d->ffn_dim);
	return 0;
}

static int gpu_init(struct backend *b, const struct model *m, const struct backend_limits *l, struct ts_err *e)
{
	struct gpub *p = ts_alloc(sizeof(*p));
	int r;
	double t;

	memset(b, 0, sizeof(*b));
	b->ops = &gpu_backend_ops;
	b->m = m;
	b->lim = *l;
	if (!p)
		return ts_errf(e, E_NOMEM, "gpu backend: out of memory");
	b->impl = p;
	struct gpu *dev;
	p->ordinal = l->device;
	if ((r = dev_open(l->device, &dev, e)) < 0)
		goto fail;
	p->g = *dev; /* the backend owns the device from here */
	devs[p->ordinal] = &p->g;
	p->L = ts_alloc((size_t)m->d.n_layers * sizeof(*p->L));
	if (!p->L) {
		r = ts_errf(e, E_NOMEM, "gpu backend: out of memory");
		goto fail;
	}
	struct gpub dry;
	memset(&dry, 0, sizeof(dry));
	uint64_t need = fwd_arena_carve(&dry, m, l, p->g.info.n_sm);
	const struct gpu_info *in = &p->g.info;
	log_info("stage=driver ms=%.1f driver_api=%d", in->driver_ms, in->driver_version);
	log_info("stage=device gpu=%d name=\"%s\" sm=%d.%d sms=%d mem_gb=%.1f free_gb=%.1f pdl=%d", in->ordinal, in->name,
		 in->cc_major, in->cc_minor, in->n_sm, (double)in->mem_total / 1e9, (double)in->mem_free / 1e9, p->g.pdl);
	log_info("stage=cubins ms=%.1f arch=sm_%d%da kernels=%d", in->cubins_ms, in->cc_major, in->cc_minor, (int)GPU_K_N);
	t = ts_now();
	if ((r = gpu_arena_init(&p->g, need, e)) < 0)
		goto fail;
	fwd_arena_carve(p, m, l, p->g.info.n_sm);
	uint64_t kvb = 4u * p->kv_layer * (uint64_t)m->d.n_layers;
	log_info("stage=workspace ms=%.1f arena_gb=%.3f weights_gb=%.3f workspace_gb=%.3f kv_gb=%.3f kv_tokens=%lld",
		 (ts_now() - t) * 1e3, (double)need / 1e9, (double)p->dev_weight_bytes / 1e9,
		 (double)(need - p->dev_weight_bytes - kvb) / 1e9, (double)kvb / 1e9, (long long)l->n_blocks * l->block_tokens);
	p->meta_h = gpu_host_alloc(&p->g, p->meta_words * 4);
	p->logits_h = gpu_host_alloc(&p->g, (size_t)p->R * (size_t)m->d.vocab * 4);
	p->srows_h = gpu_host_alloc(&p->g, (size_t)p->R * sizeof(struct k_samp_row));
	p->hist_h = gpu_host_alloc(&p->g, (size_t)p->R * (size_t)l->max_seq_len * 4);
	p->sampled_h = gpu_host_alloc(&p->g, (size_t)p->R * 4);
	if (!p->meta_h || !p->logits_h || !p->srows_h || !p->hist_h || !p->sampled_h) {
		r = ts_errf(e, E_NOMEM, "gpu backend: cannot allocate pinned host buffers");
		goto fail;
	}
	memset(p->meta_h, 0, p->meta_words * 4);
	if ((r = gemm_init(&p->g)) < 0 || (r = attn_init(&p->g)) < 0 || (r = sample_prepare(&p->g)) < 0) {
		r = ts_errf(e, E_INTERNAL, "gpu backend: kernel setup failed (see the log)");
		goto fail;
	}
	if ((r = fwd_upload(p, m, e)) < 0)
		goto fail;
	/* metadata starts as zeros: every index in it is valid before the first step */
	if ((r = gpu_memset32(&p->g, p->meta, 0, p->meta_words)) < 0 ||
	    (r = gpu_memset32(&p->g, p->d_srows, 0, (size_t)p->R * sizeof(struct k_samp_row) / 4)) < 0)
		goto fail;
	t = ts_now();
	if ((r = fwd_graph_capture(p, m, l->max_seqs)) < 0) {
		r = ts_errf(e, E_INTERNAL, "gpu backend: CUDA graph capture failed (see the log)");
		goto fail;
	}
	log_info("stage=graphs ms=%.1f buckets=%d largest=%d", (ts_now() - t) * 1e3, p->n_buckets,
		 p->bucket_n[p->n_buckets - 1]);
	b->weight_bytes = p->dev_weight_bytes;
	b->kv_bytes = 2u * 2u * p->kv_layer * (uint64_t)m->d.n_layers;
	b->workspace_bytes = need - b->kv_bytes;
	return 0;
fail:
	gpu_free(b);
	return r;
}

const struct backend_ops gpu_backend_ops = {
	.name = "gpu",
	.check = gpu_check,
	.kv_bytes_per_token = gpu_kv_bytes_per_token,
	.mem_available = gpu_mem_available,
	.init = gpu_init,
	.forward = gpu_forward,
	.forward_sample = gpu_forward_sample,
	.free = gpu_free,
};
