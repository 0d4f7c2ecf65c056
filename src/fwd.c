/* fwd: the GPU backend. Weights, workspace, KV storage and metadata live in
 * one device arena taken at init; a step uploads its metadata, replays (or
 * launches) the forward pass, and copies the wanted logits back. */
#include "fwd.h"

#include <stdio.h>
#include <stdlib.h>

#include "fmath.h"
#include "gpu.h"
#include "gpu_attn.h"
#include "gpu_elem.h"
#include "gpu_gemm.h"
#include "log.h"
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
};

static struct gpu *shared_gpu; /* opened by mem_available, kept for init */
static struct gpu gpu_dev;

/* ------------------------------------------------------------ sizes */

static int open_shared(int ordinal, struct ts_err *e)
{
	if (shared_gpu && shared_gpu->info.ordinal == ordinal)
		return 0;
	int r = gpu_open(&gpu_dev, ordinal, e);
	if (r < 0)
		return r;
	shared_gpu = &gpu_dev;
	return 0;
}

/* ------------------------------------------------------------ weight upload */

/* Pinned staging: convert a tensor's rows to bf16 (or f32 for biases) into a
 * staging buffer, then copy asynchronously while the next one fills. */
struct up {
	struct gpu *g;
	uint8_t *buf[2];
	size_t cap;
	int cur;
	uint64_t done, total;
	double t0;
};

static void convert_bf16(uint16_t *dst, const struct model_w *w, int64_t i0, int64_t n)
{
	switch (w->dtype) {
	case TS_BF16:
		memcpy(dst, (const uint16_t *)w->data + i0, (size_t)n * 2);
		break;
	case TS_F16:
		for (int64_t i = 0; i < n; i++)
			dst[i] = ts_f32_to_bf16(ts_f16_to_f32(((const uint16_t *)w->data)[i0 + i]));
		break;
	case TS_F32:
		for (int64_t i = 0; i < n; i++)
			dst[i] = ts_f32_to_bf16(((const float *)w->data)[i0 + i]);
		break;
	case TS_DTYPE_N:
		break;
	}
}


/* Sends n bytes from the current staging buffer to dst, then switches buffers:
 * the next fill overlaps this copy; the sync makes sure the buffer about to be
 * filled has finished its previous copy. */
static int up_send(struct up *u, gpu_ptr dst, size_t n)
{
	if (gpu_sync(u->g) < 0 || gpu_h2d(u->g, dst, u->buf[u->cur], n) < 0)
		return -E_INTERNAL;
	u->cur ^= 1;
	u->done += n;
	log_progress("weights", u->done, u->total, ts_now() - u->t0);
	return 0;
}

/* A whole tensor as bf16 at dst (element offset off of w), in staging-sized pieces. */
static int up_bf16(struct up *u, gpu_ptr dst, const struct model_w *w)
{
	int64_t n = w->rows * w->cols, step = (int64_t)(u->cap / 2);
	for (int64_t i = 0; i < n; i += step) {
		int64_t k = TS_MIN(step, n - i);
		if (gpu_sync(u->g) < 0)
			return -E_INTERNAL;
		convert_bf16((uint16_t *)u->buf[u->cur], w, i, k);
		if (up_send(u, dst + (gpu_ptr)i * 2, (size_t)k * 2) < 0)
			return -E_INTERNAL;
	}
	return 0;
}

static int up_f32(struct up *u, gpu_ptr dst, const struct model_w *w)
{
	int64_t n = w->rows * w->cols;
	if ((size_t)n * 4 > u->cap || gpu_sync(u->g) < 0)
		return -E_INTERNAL;
	for (int64_t i = 0; i < n; i++)
		((float *)u->buf[u->cur])[i] = model_w_at(w, i);
	return up_send(u, dst, (size_t)n * 4);
}

/* gate and up -> the interleaved bf16 matrix the SiLU-multiply epilogue reads. */
static int up_gate_up(struct up *u, gpu_ptr dst, const struct model_w *gate, const struct model_w *upw, uint16_t *tmp)
{
	int64_t n = gate->rows * gate->cols;
	convert_bf16(tmp, gate, 0, n);
	convert_bf16(tmp + n, upw, 0, n);
	uint16_t *out = tmp + 2 * n;
	gemm_interleave_gate_up(out, tmp, tmp + n, (int)gate->rows, (int)gate->cols);
	int64_t bytes = 2 * n * 2, step = (int64_t)u->cap;
	for (int64_t i = 0; i < bytes; i += step) {
		int64_t k = TS_MIN(step, bytes - i);
		if (gpu_sync(u->g) < 0)
			return -E_INTERNAL;
		memcpy(u->buf[u->cur], (uint8_t *)out + i, (size_t)k);
		if (up_send(u, dst + (gpu_ptr)i, (size_t)k) < 0)
			return -E_INTERNAL;
	}
	return 0;
}

static int upload(struct gpub *p, const struct model *m, struct ts_err *e)
{
	const struct model_dims *d = &m->d;
	struct up u = {.g = &p->g, .cap = 64u << 20, .total = p->dev_weight_bytes, .t0 = ts_now()};
	uint16_t *tmp = ts_alloc((size_t)d->ffn_dim * (size_t)d->dim * 2 * 4);
	int r = 0;
	u.buf[0] = gpu_host_alloc(&p->g, u.cap);
	u.buf[1] = gpu_host_alloc(&p->g, u.cap);
	if (!tmp || !u.buf[0] || !u.buf[1]) {
		r = ts_errf(e, E_NOMEM, "gpu: cannot allocate pinned staging buffers");
		goto out;
	}
	size_t qkvrows = (size_t)(d->q_dim + 2 * d->kv_dim);
	for (int l = 0; l < d->n_layers && r == 0; l++) {
		const struct model_layer *L = &m->layers[l];
		struct glayer *G = &p->L[l];
		r = up_bf16(&u, G->attn_norm, &L->attn_norm) || up_bf16(&u, G->ffn_norm, &L->ffn_norm) ||
		    up_bf16(&u, G->wqkv, &L->gqa.wq) || up_bf16(&u, G->wqkv + (gpu_ptr)d->q_dim * d->dim * 2, &L->gqa.wk) ||
		    up_bf16(&u, G->wqkv + (gpu_ptr)(d->q_dim + d->kv_dim) * d->dim * 2, &L->gqa.wv) ||
		    up_bf16(&u, G->wo, &L->gqa.wo) || up_bf16(&u, G->wd, &L->ffn.w_down) ||
		    up_gate_up(&u, G->wgu, &L->ffn.w_gate, &L->ffn.w_up, tmp);
		if (!r && G->bqkv)
			r = up_f32(&u, G->bqkv, &L->gqa.bq) || up_f32(&u, G->bqkv + (gpu_ptr)d->q_dim * 4, &L->gqa.bk) ||
			    up_f32(&u, G->bqkv + (gpu_ptr)(d->q_dim + d->kv_dim) * 4, &L->gqa.bv);
		if (!r && G->q_norm)
			r = up_bf16(&u, G->q_norm, &L->gqa.q_norm) || up_bf16(&u, G->k_norm, &L->gqa.k_norm);
		if (!r && G->bo)
			r = up_f32(&u, G->bo, &L->gqa.bo);
		(void)qkvrows;
	}
	if (!r)
		r = up_bf16(&u, p->embed, &m->embed) || up_bf16(&u, p->final_norm, &m->final_norm) ||
		    (!d->tied && up_bf16(&u, p->lm_head, &m->lm_head));
	if (!r) {
		float *inv = (float *)u.buf[u.cur];
		if (gpu_sync(&p->g) < 0)
			r = -E_INTERNAL;
		else {
			model_rope_freqs(d, inv);
			r = up_send(&u, p->inv_freq, (size_t)d->head_dim / 2 * 4);
		}
	}
	if (!r)
		r = gpu_sync(&p->g);
	if (!r)
		log_progress("weights", u.total, u.total, ts_now() - u.t0);
	if (r)
		r = ts_errf(e, E_INTERNAL, "gpu: weight upload failed (see the log)");
	else
		log_info("stage=weights gb=%.3f s=%.2f gbps=%.2f", (double)u.done / 1e9, ts_now() - u.t0,
			 (double)u.done / 1e9 / (ts_now() - u.t0 + 1e-9));
out:
	gpu_host_free(&p->g, u.buf[0]);
	gpu_host_free(&p->g, u.buf[1]);
	ts_free(tmp);
	return r;
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

#define DP(ptr) ((void *)(uintptr_t)(ptr))

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
static int forward(struct gpub *p, const struct model *m, int T, int n_rows, int n_dec, int n_pre, int n_layers,
		   int sample)
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

/* ------------------------------------------------------------ the arena plan */

/* Walks every device buffer in one fixed order. With p->g.arena == 0 it only
 * adds up the bytes (for sizing); afterwards it carves the arena. Weights
 * first, then workspace, then (n_kv_blocks + 1) KV blocks. */
static uint64_t carve(struct gpub *p, const struct model *m, const struct backend_limits *l, int n_sm)
{
	const struct model_dims *d = &m->d;
	const int dry = p->g.arena == 0;
	uint64_t total = 0;
	const uint64_t T = (uint64_t)l->max_batch_tokens, R = (uint64_t)l->max_seqs + 1;
	const uint64_t qkv = (uint64_t)(d->q_dim + 2 * d->kv_dim);
#define TAKE(dst, bytes)                                                    \
	do {                                                                \
		uint64_t b_ = (bytes);                                      \
		total += (b_ + 255) & ~(uint64_t)255;                       \
		if (!dry)                                                   \
			*(dst) = gpu_arena_take(&p->g, b_);                 \
	} while (0)
	gpu_ptr sink = 0;
	for (int i = 0; i < d->n_layers; i++) {
		struct glayer *G = dry ? NULL : &p->L[i];
		const struct model_layer *L = &m->layers[i];
		TAKE(G ? &G->attn_norm : &sink, 2u * d->dim);
		TAKE(G ? &G->ffn_norm : &sink, 2u * d->dim);
		TAKE(G ? &G->wqkv : &sink, 2u * qkv * d->dim);
		if (L->gqa.bq.data)
			TAKE(G ? &G->bqkv : &sink, 4u * qkv);
		if (L->gqa.q_norm.data) {
			TAKE(G ? &G->q_norm : &sink, 2u * d->head_dim);
			TAKE(G ? &G->k_norm : &sink, 2u * d->head_dim);
		}
		TAKE(G ? &G->wo : &sink, 2u * d->dim * d->q_dim);
		if (L->gqa.bo.data)
			TAKE(G ? &G->bo : &sink, 4u * d->dim);
		TAKE(G ? &G->wgu : &sink, 2u * 2u * d->ffn_dim * d->dim);
		TAKE(G ? &G->wd : &sink, 2u * d->dim * d->ffn_dim);
	}
	TAKE(&p->embed, 2u * d->vocab * d->dim);
	TAKE(&p->final_norm, 2u * d->dim);
	if (!d->tied)
		TAKE(&p->lm_head, 2u * d->vocab * d->dim);
	TAKE(&p->inv_freq, 4u * (uint64_t)d->head_dim / 2);
	p->dev_weight_bytes = total;
	/* workspace */
	int O = TS_MAX(TS_MAX((int)qkv, 2 * d->ffn_dim), TS_MAX(d->dim, d->vocab));
	TAKE(&p->x, 4u * T * d->dim);
	TAKE(&p->xb, 2u * T * d->dim);
	TAKE(&p->qkv, 4u * T * qkv);
	TAKE(&p->q, 2u * T * d->q_dim);
	TAKE(&p->att, 2u * T * d->q_dim);
	TAKE(&p->h, 2u * T * d->ffn_dim);
	TAKE(&p->xf, 2u * R * d->dim);
	TAKE(&p->logits, 4u * R * d->vocab);
	TAKE(&p->gemm_ws, gemm_workspace_bytes((int)T, O, n_sm));
	TAKE(&p->attn_ws, attn_workspace_bytes((int)T, d->n_heads, d->head_dim, n_sm));
	int max_blocks = (l->max_seq_len + l->block_tokens - 1) / l->block_tokens;
	uint64_t words = 5u * T + 2u * R + R * (uint64_t)max_blocks;
	TAKE(&p->meta, 4u * words);
	TAKE(&p->d_srows, R * sizeof(struct k_samp_row));
	TAKE(&p->d_hist, 4u * R * (uint64_t)l->max_seq_len);
	TAKE(&p->d_sampled, 4u * R);
	TAKE(&p->samp_ws, sample_workspace_bytes((int)R, d->vocab));
	/* KV: block n_blocks is the scratch block that padded graph tokens write */
	uint64_t kv_layer = ((uint64_t)l->n_blocks + 1) * (uint64_t)l->block_tokens * (uint64_t)d->kv_dim;
	TAKE(&p->kv, 2u * 2u * kv_layer * (uint64_t)d->n_layers);
#undef TAKE
	if (!dry) {
		p->T = (int)T;
		p->R = (int)R;
		p->max_blocks = max_blocks;
		p->block_tokens = l->block_tokens;
		p->n_kv_blocks = l->n_blocks;
		p->kv_layer = kv_layer;
		p->max_seq_len = l->max_seq_len;
		p->meta_words = words;
		p->d_token = p->meta;
		p->d_pos = p->d_token + 4 * T;
		p->d_seq = p->d_pos + 4 * T;
		p->d_dec = p->d_seq + 4 * T;
		p->d_pre = p->d_dec + 4 * T;
		p->d_rows = p->d_pre + 4 * T;
		p->d_blocks = p->d_rows + 4 * R;
	}
	return total;
}

static uint64_t gpu_kv_bytes_per_token(const struct model *m)
{
	return (uint64_t)m->d.n_layers * 2u * (uint64_t)m->d.kv_dim * 2u;
}

static int gpu_mem_available(const struct model *m, const struct backend_limits *l, uint64_t *bytes, struct ts_err *e)
{
	struct gpub dry;
	struct backend_limits l0 = *l;
	int r = open_shared(l->device, e);
	if (r < 0)
		return r;
	memset(&dry, 0, sizeof(dry));
	l0.n_blocks = 0;
	uint64_t used = carve(&dry, m, &l0, shared_gpu->info.n_sm) + (512ull << 20); /* + graphs, module, slack */
	uint64_t free_b = shared_gpu->info.mem_free;
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

static int bucket_of(const struct gpub *p, int n)
{
	for (int i = 0; i < p->n_buckets; i++)
		if (p->bucket_n[i] >= n)
			return i;
	return -1;
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
	int k = decode && full ? bucket_of(p, bt->n_tokens) : -1;
	int n_pad = k >= 0 && p->graph[sample][k] ? p->bucket_n[k] : bt->n_tokens;
	if (sample && (r = put_samp(p, rows, bt->n_logits, k >= 0 && p->graph[sample][k] ? n_pad : bt->n_logits)) < 0)
		return r;
	if (k >= 0 && p->graph[sample][k]) {
		if ((r = put_meta(p, bt, n_pad, &nd, &np)) < 0 || (r = gpu_graph_launch(&p->g, p->graph[sample][k])) < 0)
			return r;
	} else {
		if ((r = put_meta(p, bt, bt->n_tokens, &nd, &np)) < 0)
			return r;
		if ((r = forward(p, m, bt->n_tokens, bt->n_logits, nd, np, full ? m->d.n_layers : n_layers, sample)) < 0)
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

/* Captures one decode graph per bucket of batch sizes: 1, 2, 4, ... and max_seqs. */
static int capture(struct gpub *p, const struct model *m, int max_seqs)
{
	int n = 1;
	p->n_buckets = 0;
	while (p->n_buckets < N_BUCKETS) {
		int bn = TS_MIN(n, max_seqs);
		p->bucket_n[p->n_buckets++] = bn;
		if (bn == max_seqs)
			break;
		n *= 2;
	}
	for (int sample = 0; sample < 2; sample++)
		for (int k = 0; k < p->n_buckets; k++) {
			int B = p->bucket_n[k];
			if (B > p->T)
				break;
			if (gpu_capture_begin(&p->g) < 0)
				return -E_INTERNAL;
			int r = forward(p, m, B, B, B, 0, m->d.n_layers, sample);
			if (gpu_capture_end(&p->g, &p->graph[sample][k]) < 0 || r < 0)
				return -E_INTERNAL;
		}
	return 0;
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
	shared_gpu = NULL;
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
	if ((r = open_shared(l->device, e)) < 0)
		goto fail;
	p->g = *shared_gpu; /* the backend owns the device from here */
	shared_gpu = &p->g;
	p->L = ts_alloc((size_t)m->d.n_layers * sizeof(*p->L));
	if (!p->L) {
		r = ts_errf(e, E_NOMEM, "gpu backend: out of memory");
		goto fail;
	}
	struct gpub dry;
	memset(&dry, 0, sizeof(dry));
	uint64_t need = carve(&dry, m, l, p->g.info.n_sm);
	const struct gpu_info *in = &p->g.info;
	log_info("stage=driver ms=%.1f driver_api=%d", in->driver_ms, in->driver_version);
	log_info("stage=device gpu=%d name=\"%s\" sm=%d.%d sms=%d mem_gb=%.1f free_gb=%.1f pdl=%d", in->ordinal, in->name,
		 in->cc_major, in->cc_minor, in->n_sm, (double)in->mem_total / 1e9, (double)in->mem_free / 1e9, p->g.pdl);
	log_info("stage=cubins ms=%.1f arch=sm_%d%da kernels=%d", in->cubins_ms, in->cc_major, in->cc_minor, (int)GPU_K_N);
	t = ts_now();
	if ((r = gpu_arena_init(&p->g, need, e)) < 0)
		goto fail;
	carve(p, m, l, p->g.info.n_sm);
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
	if ((r = upload(p, m, e)) < 0)
		goto fail;
	/* metadata starts as zeros: every index in it is valid before the first step */
	if ((r = gpu_memset32(&p->g, p->meta, 0, p->meta_words)) < 0 ||
	    (r = gpu_memset32(&p->g, p->d_srows, 0, (size_t)p->R * sizeof(struct k_samp_row) / 4)) < 0)
		goto fail;
	t = ts_now();
	if ((r = capture(p, m, l->max_seqs)) < 0) {
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
