/* cpu: the reference backend. fp32 math over the checkpoint's own weights
 * (read in place from the mapping, converted a row at a time), threaded with
 * a small pthread pool. It is the oracle for every GPU kernel, so it is
 * written to be obviously right and batch-invariant: every output element is
 * a dot product summed in one fixed order, whatever else is in the batch, so
 * the same sequence gives bit-identical logits alone or batched. It does not
 * aim for speed.
 *
 * The math follows Hugging Face transformers' float32 path step by step
 * (RMSNorm, rotate-half or interleaved RoPE with float32 angles, softmax in
 * float32, the MoE routers' scores and masks), so that the tests can hold it
 * to 1e-4 relative error against HF's logits. Two places reassociate sums:
 * MLA attention runs absorbed (the query projected into the latent space, as
 * the GPU kernels will), and MoE adds each token's experts in expert order
 * as HF's index_add loop does.
 *
 * Hybrid models (Qwen3-Next, Qwen3.5): attn_linear runs Gated DeltaNet token
 * by token from the sequence's recurrent state (its slot in batch_seq.state,
 * zeroed when the sequence starts at position 0); HF's prefill runs the same
 * recurrence in chunks of 64, which reassociates its sums (fp32 rounding
 * only). attn_gqa takes the output gate (sigmoid) that q_proj carries, and
 * RMSNorm the zero-centred weights (x * (1 + w)) of these families.
 *
 * Each layer is one switch on its attention kind (attn_gqa, attn_mla,
 * attn_linear) and one on its MLP kind (mlp, mlp_moe): a new kind is a new
 * function and a case.
 *
 * Tensor parallelism (backend_limits.tp = N > 1): N ranks, each a thread with
 * its own struct cpu (workspace, worker pool, KV pool) and its own shard of
 * the model (tp_shard): column-parallel q/k/v, gate/up (rows of the weight),
 * row-parallel o_proj and down_proj (columns, copied out of the mapping) whose
 * partial sums meet in comm's all-reduce; heads split evenly, KV heads too
 * when N divides them, else each rank keeps the one KV head its query heads
 * read (replicated); MLA heads split (q, kv_b, o), the latent cache replicated;
 * MoE experts split across ranks (expert parallelism: every rank routes every
 * token, runs its own experts, the sum through the all-reduce), the shared
 * expert split like a dense MLP; embedding and LM head split by vocabulary
 * rows (the embedding's all-reduce adds zeros: exact; the logits gathered to
 * rank 0: exact). Gated DeltaNet layers are not split: every rank runs them
 * whole on its own copy of the recurrent state (replicated, exact). The
 * all-reduce adds ranks in a fixed order, so TP = N is batch-invariant and
 * repeatable like TP = 1; against TP = 1 only the row-parallel sums are
 * reassociated (fp32 rounding). The engine thread is rank 0. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "backend.h"
#include "comm.h"
#include "fmath.h"
#include "log.h"

/* ------------------------------------------------------------ thread pool */

struct pool {
	int n;                       /* threads including the caller (tid 0) */
	pthread_t *th;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	uint64_t gen;
	int running;
	int stop;
	void (*fn)(void *ctx, int tid, int nth);
	void *ctx;
	struct worker_arg *args;     /* (n) one per worker thread */
};

struct worker_arg {
	struct pool *p;
	int tid;
};

static void *pool_main(void *arg)
{
	struct worker_arg *w = arg;
	struct pool *p = w->p;
	uint64_t seen = 0;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->go, &p->mu);
		if (p->stop) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		seen = p->gen;
		pthread_mutex_unlock(&p->mu);
		p->fn(p->ctx, w->tid, p->n);
		pthread_mutex_lock(&p->mu);
		if (--p->running == 0)
			pthread_cond_signal(&p->done);
		pthread_mutex_unlock(&p->mu);
	}
}

/* Runs fn(ctx, tid, nth) on every thread, the caller as tid 0; returns when all are done. */
static void pool_run(struct pool *p, void (*fn)(void *, int, int), void *ctx)
{
	if (p->n == 1) {
		fn(ctx, 0, 1);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->ctx = ctx;
	p->running = p->n - 1;
	p->gen++;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	fn(ctx, 0, p->n);
	pthread_mutex_lock(&p->mu);
	while (p->running)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

static int pool_start(struct pool *p, int n)
{
	p->n = n;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->go, NULL);
	pthread_cond_init(&p->done, NULL);
	p->th = ts_alloc((size_t)n * sizeof(pthread_t));
	struct worker_arg *args = ts_alloc((size_t)n * sizeof(*args));
	if (!p->th || !args) {
		ts_free(p->th), ts_free(args); /* found by t_faults */
		p->th = NULL;
		return -E_NOMEM;
	}
	p->args = args;
	for (int i = 1; i < n; i++) {
		args[i].p = p;
		args[i].tid = i;
		if (pthread_create(&p->th[i], NULL, pool_main, &args[i])) {
			p->n = i;
			return -E_INTERNAL;
		}
	}
	return 0;
}

static void pool_stop(struct pool *p)
{
	if (!p->th)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->go);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	ts_free(p->th);
	ts_free(p->args);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->go);
	pthread_cond_destroy(&p->done);
	memset(p, 0, sizeof(*p));
}

/* Contiguous share [*lo, *hi) of n items for thread tid of nth. */
static void share(int n, int tid, int nth, int *lo, int *hi)
{
	*lo = (int)((int64_t)n * tid / nth);
	*hi = (int)((int64_t)n * (tid + 1) / nth);
}

/* ------------------------------------------------------------ state */

struct cpu {
	struct pool pool;
	int max_tokens;
	float *x;        /* (max_tokens, dim) residual stream */
	float *xb;       /* (max_tokens, dim) normed input */
	float *q;        /* (max_tokens, q_dim) */
	float *k;        /* (max_tokens, max(kv_dim, kv_lora + rope)): GQA k; MLA kv_a output */
	float *v;        /* (max_tokens, max(kv_dim, q_lora)): GQA v; MLA q_a output */
	float *att;      /* (max_tokens, max(q_dim, n_heads * v_head_dim)) attention output */
	float *hg;       /* (max_tokens, inner) gate, then silu(gate) * up */
	float *hu;       /* (max_tokens, inner) up */
	float *xf;       /* (max_seqs, dim) final-normed rows for the LM head */
	float *rowbuf;   /* (threads, row_max) a weight row in f32 */
	float *scores;   /* (threads, max_seq_len) attention scores */
	float *lat;      /* (threads, 2 * kv_lora_rank) MLA: absorbed query, latent output */
	float *inv_freq; /* (rope_dim / 2) RoPE frequencies */
	float *rope_cs;  /* (rope_dim) one token's cos (first half) and sin (second half) */
	/* MoE: router logits, each token's experts and weights, the tokens of one
	 * expert gathered, their outputs, the routed sum */
	float *rl;       /* (max_tokens, n_experts) */
	float *rw;       /* (max_tokens, n_experts_tok) */
	int32_t *ri;     /* (max_tokens, n_experts_tok) expert ids */
	int32_t *et;     /* (max_tokens * n_experts_tok) one expert's (token * K + slot) entries */
	float *route;    /* (2 * n_experts) routing scratch */
	float *xe;       /* (max_tokens, dim) */
	float *ye;       /* (max_tokens, dim) */
	float *acc;      /* (max_tokens, dim) */
	float *kv;       /* every layer's cache, layer l at kv_off[l]: (n_blocks * block_tokens, model_kv_width(l)) */
	size_t *kv_off;  /* (n_layers) */
	float *gate;     /* (max_tokens, q_dim) the attention output gate (attn_gate) */
	/* Gated DeltaNet (LINEAR layers): projections, the conv's input and output
	 * (q | k | v, conv_dim), z, b and a, the heads' output */
	float *lp;       /* (max_tokens, 2 * key_dim + 2 * value_dim) in_proj_qkvz output */
	float *lba;      /* (max_tokens, 2 * nv) in_proj_ba output */
	float *lmix;     /* (max_tokens, conv_dim) */
	float *lconv;    /* (max_tokens, conv_dim) silu(conv(lmix)) */
	float *lz;       /* (max_tokens, value_dim) */
	float *lb, *la;  /* (max_tokens, nv) */
	float *lo;       /* (max_tokens, value_dim) */
	float *lscr;     /* (threads, 2 * dk + dv) normalised q, k and S^T k */
	/* recurrent state: per slot of the pool, each LINEAR layer's conv window
	 * (conv_dim, lin_conv - 1) then its delta-rule state (nv, dk, dv) */
	float *state;    /* (n_states, state_per_seq) */
	size_t *st_off;  /* (n_layers) offset of layer l's state inside a slot's */
	size_t state_per_seq;
	int n_states;
	int *sfirst, *slen; /* (max_seqs) each batch sequence's first token and count */
	int row_max;
	int max_seq_len;
	int max_seqs;
	const struct model *m; /* this rank's model (the whole one when tp = 1) */
	int block_tokens;
	/* tensor parallelism (tp > 1; see the top of the file) */
	int rank, tp;
	struct comm comm;
	struct tp_group *grp;  /* the ranks, shared by all of them; NULL when tp = 1 */
	int vocab_lo, vocab_n; /* this rank's rows of the embedding and LM head */
	int vocab_pad;         /* the largest rank's vocab_n: the gathered logits' row */
	int e_lo, e_hi;        /* this rank's experts [e_lo, e_hi) */
	int attn_rep;          /* the heads do not split over the ranks: attention runs whole on every rank */
	float *red;            /* (max_tokens, dim) a row-parallel partial sum, all-reduced */
	float *lg;             /* (max_seqs, vocab_pad) this rank's logits */
	float *lgg;            /* (tp, max_seqs, vocab_pad) every rank's, gathered */
};

/* The ranks of a tensor-parallel backend. */
struct tp_group {
	int n;
	struct pool pool;          /* n threads: rank r's forward runs on thread r (the caller is rank 0) */
	struct comm_cpu_group *cg;
	struct backend *rb;        /* (n) each rank's backend (its impl a struct cpu) */
	struct model *rm;          /* (n) each rank's shard of the model */
	void **own;                /* weight copies the shards own (row-parallel columns) */
	int n_own, cap_own;
	/* one forward, set by the caller before the ranks run */
	const struct batch *bt;
	float *logits;
	int rc[COMM_MAX_RANKS];
};

/* ------------------------------------------------------------ math helpers */

/* Fixed-order dot product: 8 partial sums, combined pairwise. Vectorisable
 * without changing the result, and independent of the caller's batch. */
static float dot(const float *a, const float *b, int n)
{
	float s[8] = {0};
	int i = 0;
	for (; i + 8 <= n; i += 8)
		for (int j = 0; j < 8; j++)
			s[j] += a[i + j] * b[i + j];
	for (int j = 0; i < n; i++, j++)
		s[j] += a[i] * b[i];
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* Row r of w as f32: in place for F32 weights, else converted into buf. */
static const float *wrow(const struct model_w *w, int64_t r, float *buf)
{
	size_t n = (size_t)w->cols;
	switch (w->dtype) {
	case TS_F32:
		return (const float *)w->data + (size_t)r * n;
	case TS_BF16: {
		const uint16_t *s = (const uint16_t *)w->data + (size_t)r * n;
		for (size_t i = 0; i < n; i++)
			buf[i] = ts_bf16_to_f32(s[i]);
		return buf;
	}
	case TS_F16: {
		const uint16_t *s = (const uint16_t *)w->data + (size_t)r * n;
		for (size_t i = 0; i < n; i++)
			buf[i] = ts_f16_to_f32(s[i]);
		return buf;
	}
	case TS_DTYPE_N:
		break;
	}
	return NULL;
}


/* HF LlamaRMSNorm in float32: x * rsqrt(mean(x^2) + eps) * w; with off = 1
 * the zero-centred form of Qwen3-Next / Qwen3.5 (Qwen3NextRMSNorm):
 * x * rsqrt(mean(x^2) + eps) * (1 + w). off = 0 leaves w bit for bit. */
static void rmsnorm(float *out, const float *x, const struct model_w *w, int n, float eps, int off)
{
	float ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float r = 1.0f / fm_sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++) {
		float wi = model_w_at(w, i);
		out[i] = (off ? 1.0f + wi : wi) * (x[i] * r);
	}
}

/* ------------------------------------------------------------ matmul */

struct mm {
	struct cpu *c;
	float *y;              /* (T, O) */
	const float *x;        /* (T, I) */
	const struct model_w *w; /* (O, I) */
	const struct model_w *bias; /* (O) or NULL */
	int T;
	int add;               /* y += instead of y = */
};

static void mm_work(void *ctx, int tid, int nth)
{
	struct mm *a = ctx;
	int O = (int)a->w->rows, I = (int)a->w->cols, lo, hi;
	float *buf = a->c->rowbuf + (size_t)tid * (size_t)a->c->row_max;
	share(O, tid, nth, &lo, &hi);
	for (int o = lo; o < hi; o++) {
		const float *r = wrow(a->w, o, buf);
		float b = a->bias && a->bias->data ? model_w_at(a->bias, o) : 0.0f;
		for (int t = 0; t < a->T; t++) {
			float d = dot(a->x + (size_t)t * I, r, I) + b;
			float *y = a->y + (size_t)t * O + o;
			*y = a->add ? *y + d : d;
		}
	}
}

static void matmul(struct cpu *c, float *y, const float *x, const struct model_w *w, const struct model_w *bias,
		   int T, int add)
{
	struct mm a = {c, y, x, w, bias, T, add};
	pool_run(&c->pool, mm_work, &a);
}

/* x += y (T rows) after y's all-reduce over the ranks (tp > 1). */
static void reduce_add(struct cpu *c, float *y, int T)
{
	const size_t n = (size_t)T * (size_t)c->m->d.dim;
	comm_all_reduce_sum(&c->comm, y, n, NULL);
	for (size_t i = 0; i < n; i++)
		c->x[i] += y[i];
}

/* x += w in (+ bias): o_proj, a row-parallel projection when the heads are
 * split (tp > 1, !attn_rep): each rank's w holds its columns of the weight,
 * the partial sums meet in the all-reduce and rank 0 alone adds the bias. */
static void row_out(struct cpu *c, const float *in, const struct model_w *w, const struct model_w *bias, int T)
{
	if (c->tp == 1 || c->attn_rep) {
		matmul(c, c->x, in, w, bias, T, 1);
		return;
	}
	matmul(c, c->red, in, w, c->rank == 0 ? bias : NULL, T, 0);
	reduce_add(c, c->red, T);
}

/* ------------------------------------------------------------ RoPE */

/* cos and sin of pos * inv_freq[i] (float32 angles, as HF), times the YaRN
 * attention factor (1 elsewhere: an exact no-op), into c->rope_cs. */
static void rope_angles(struct cpu *c, const struct model_dims *d, int pos)
{
	const int n = d->rope_dim / 2;
	for (int i = 0; i < n; i++) {
		float cs, sn;
		fm_sincosf((float)pos * c->inv_freq[i], &sn, &cs);
		c->rope_cs[i] = cs * d->rope_attn_factor;
		c->rope_cs[n + i] = sn * d->rope_attn_factor;
	}
}

/* Rotates the first rope_dim dims of each of n vectors spaced stride apart:
 * pairs (i, i + rope_dim / 2) (rotate-half) or (2i, 2i + 1) (interleaved,
 * DeepSeek; the pairs stay in place, which leaves q . k as HF computes it). */
static void rope_apply(const struct cpu *c, const struct model_dims *d, float *v0, int n, int stride)
{
	const int h = d->rope_dim / 2, il = d->rope_interleaved;
	for (int i = 0; i < h; i++) {
		const float cs = c->rope_cs[i], sn = c->rope_cs[h + i];
		const int a = il ? 2 * i : i, b = il ? 2 * i + 1 : i + h;
		for (int j = 0; j < n; j++) {
			float *v = v0 + (size_t)j * (size_t)stride, x1 = v[a], x2 = v[b];
			v[a] = x1 * cs - x2 * sn;
			v[b] = x2 * cs + x1 * sn;
		}
	}
}

/* Row of a layer's cache for position p of a sequence. */
static float *kv_row(const struct cpu *c, const struct batch_seq *s, int layer, int p, int bsz, int width)
{
	size_t slot = (size_t)s->blocks[p / bsz] * (size_t)bsz + (size_t)(p % bsz);
	return c->kv + c->kv_off[layer] + slot * (size_t)width;
}

/* ------------------------------------------------------------ GQA attention */

struct at {
	struct cpu *c;
	const struct model *m;
	const struct batch *bt;
	int block_tokens;
	int layer;
};

/* One (token, head) pair per work item: softmax(q k^T * scale) v over the
 * sequence's positions [lo, pos], lo > 0 only under a sliding window. A
 * cache row is K (kv_dim) then V (kv_dim). */
static void gqa_work(void *ctx, int tid, int nth)
{
	struct at *a = ctx;
	struct cpu *c = a->c;
	const struct model_dims *d = &a->m->d;
	const int hd = d->head_dim, group = d->n_heads / d->n_kv_heads, bsz = a->block_tokens, W = 2 * d->kv_dim;
	const float scale = d->attn_scale;
	float *sc = c->scores + (size_t)tid * (size_t)c->max_seq_len;
	int lo, hi;

	share(a->bt->n_tokens * d->n_heads, tid, nth, &lo, &hi);
	for (int w = lo; w < hi; w++) {
		int t = w / d->n_heads, h = w % d->n_heads, kvh = h / group;
		int p = a->bt->pos[t];
		int first = d->sliding_window ? TS_MAX(0, p - d->sliding_window + 1) : 0;
		const struct batch_seq *s = &a->bt->seqs[a->bt->seq[t]];
		const float *q = c->q + (size_t)t * d->q_dim + (size_t)h * hd;
		float mx = -3.0e38f, sum = 0;

		for (int j = first; j <= p; j++) {
			float sj = dot(q, kv_row(c, s, a->layer, j, bsz, W) + (size_t)kvh * hd, hd) * scale;
			sc[j - first] = sj;
			mx = sj > mx ? sj : mx;
		}
		for (int j = 0; j <= p - first; j++) {
			sc[j] = fm_expf(sc[j] - mx);
			sum += sc[j];
		}
		float *out = c->att + (size_t)t * d->q_dim + (size_t)h * hd;
		for (int i = 0; i < hd; i++)
			out[i] = 0;
		for (int j = first; j <= p; j++) {
			const float *v = kv_row(c, s, a->layer, j, bsz, W) + d->kv_dim + (size_t)kvh * hd;
			float pj = sc[j - first] / sum;
			for (int i = 0; i < hd; i++)
				out[i] += pj * v[i];
		}
	}
}

/* x += o_proj(attention(rmsnorm'd xb)): q, k, v projections, Qwen3's q/k
 * norms, RoPE, the cache write, attention. */
static void attn_gqa(struct cpu *c, const struct model *m, const struct batch *bt, int bsz, int l)
{
	const struct model_dims *d = &m->d;
	const struct model_gqa *G = &m->layers[l].gqa;
	const int T = bt->n_tokens, hd = d->head_dim, W = 2 * d->kv_dim;

	matmul(c, c->q, c->xb, &G->wq, &G->bq, T, 0);
	if (d->attn_gate) /* rows per head: q (hd) then gate (hd); split into q (T, q_dim) and gate */
		for (int t = 0; t < T; t++) {
			const float *src = c->q + (size_t)t * 2 * d->q_dim;
			for (int h = 0; h < d->n_heads; h++)
				memcpy(c->gate + (size_t)t * d->q_dim + (size_t)h * hd, src + (size_t)(2 * h + 1) * hd,
				       (size_t)hd * sizeof(float));
			for (int h = 0; h < d->n_heads; h++) /* dst <= src: forward memmove is safe */
				memmove(c->q + (size_t)t * d->q_dim + (size_t)h * hd, src + (size_t)(2 * h) * hd,
					(size_t)hd * sizeof(float));
		}
	matmul(c, c->k, c->xb, &G->wk, &G->bk, T, 0);
	matmul(c, c->v, c->xb, &G->wv, &G->bv, T, 0);
	for (int t = 0; t < T; t++) {
		float *q = c->q + (size_t)t * d->q_dim, *k = c->k + (size_t)t * d->kv_dim;
		if (G->q_norm.data) { /* Qwen3: per-head RMSNorm before RoPE */
			for (int h = 0; h < d->n_heads; h++)
				rmsnorm(q + h * hd, q + h * hd, &G->q_norm, hd, d->rms_eps, d->norm_offset);
			for (int h = 0; h < d->n_kv_heads; h++)
				rmsnorm(k + h * hd, k + h * hd, &G->k_norm, hd, d->rms_eps, d->norm_offset);
		}
		rope_angles(c, d, bt->pos[t]);
		rope_apply(c, d, q, d->n_heads, hd);
		rope_apply(c, d, k, d->n_kv_heads, hd);
		float *row = kv_row(c, &bt->seqs[bt->seq[t]], l, bt->pos[t], bsz, W);
		memcpy(row, k, (size_t)d->kv_dim * sizeof(float));
		memcpy(row + d->kv_dim, c->v + (size_t)t * d->kv_dim, (size_t)d->kv_dim * sizeof(float));
	}
	struct at a = {c, m, bt, bsz, l};
	pool_run(&c->pool, gqa_work, &a);
	if (d->attn_gate) /* Qwen3NextAttention: attn_output * sigmoid(gate) */
		for (size_t i = 0; i < (size_t)T * (size_t)d->q_dim; i++)
			c->att[i] = c->att[i] * (1.0f / (1.0f + fm_expf(-c->gate[i])));
	row_out(c, c->att, &G->wo, &G->bo, T);
}

/* ------------------------------------------------------------ MLA attention */

/* One (token, head) pair per work item, absorbed: the cache row j is
 * c_j = kv_a_norm(latent_j) (kv_lora) then the roped k_pe_j (rope). With
 * W_k (nope, kv_lora) and W_v (v, kv_lora) this head's rows of kv_b_proj,
 * HF's key is (W_k c_j, k_pe_j) and value W_v c_j, so
 *   score_j = ((W_k^T q_nope) . c_j + q_pe . k_pe_j) * scale
 *   out     = W_v (sum_j p_j c_j)
 * which is HF's function with the sums reassociated (fp32 rounding only). */
static void mla_work(void *ctx, int tid, int nth)
{
	struct at *a = ctx;
	struct cpu *c = a->c;
	const struct model_dims *d = &a->m->d;
	const struct model_mla *A = &a->m->layers[a->layer].mla;
	const int R = d->kv_lora_rank, nope = d->qk_nope_dim, rope = d->qk_rope_dim, vd = d->v_head_dim;
	const int bsz = a->block_tokens, W = R + rope, hrows = nope + vd;
	float *sc = c->scores + (size_t)tid * (size_t)c->max_seq_len;
	float *buf = c->rowbuf + (size_t)tid * (size_t)c->row_max;
	float *qlat = c->lat + (size_t)tid * 2u * (size_t)R, *olat = qlat + R;
	int lo, hi;

	share(a->bt->n_tokens * d->n_heads, tid, nth, &lo, &hi);
	for (int w = lo; w < hi; w++) {
		int t = w / d->n_heads, h = w % d->n_heads, p = a->bt->pos[t];
		const struct batch_seq *s = &a->bt->seqs[a->bt->seq[t]];
		const float *qn = c->q + (size_t)t * d->q_dim + (size_t)h * (nope + rope), *qp = qn + nope;
		float mx = -3.0e38f, sum = 0;

		for (int i = 0; i < R; i++)
			qlat[i] = 0;
		for (int i = 0; i < nope; i++) {
			const float *r = wrow(&A->wkv_b, (int64_t)h * hrows + i, buf);
			for (int k = 0; k < R; k++)
				qlat[k] += qn[i] * r[k];
		}
		for (int j = 0; j <= p; j++) {
			const float *cj = kv_row(c, s, a->layer, j, bsz, W);
			float sj = (dot(qlat, cj, R) + dot(qp, cj + R, rope)) * d->attn_scale;
			sc[j] = sj;
			mx = sj > mx ? sj : mx;
		}
		for (int j = 0; j <= p; j++) {
			sc[j] = fm_expf(sc[j] - mx);
			sum += sc[j];
		}
		for (int i = 0; i < R; i++)
			olat[i] = 0;
		for (int j = 0; j <= p; j++) {
			const float *cj = kv_row(c, s, a->layer, j, bsz, W);
			float pj = sc[j] / sum;
			for (int i = 0; i < R; i++)
				olat[i] += pj * cj[i];
		}
		float *out = c->att + (size_t)t * (size_t)d->n_heads * vd + (size_t)h * vd;
		for (int i = 0; i < vd; i++)
			out[i] = dot(wrow(&A->wkv_b, (int64_t)h * hrows + nope + i, buf), olat, R);
	}
}

/* x += o_proj(MLA(xb)): q (straight or through the q LoRA and its norm),
 * kv_a -> latent norm and k_pe, RoPE of q_pe and k_pe, the cache write. */
static void attn_mla(struct cpu *c, const struct model *m, const struct batch *bt, int bsz, int l)
{
	const struct model_dims *d = &m->d;
	const struct model_mla *A = &m->layers[l].mla;
	const int T = bt->n_tokens, R = d->kv_lora_rank, qh = d->qk_nope_dim + d->qk_rope_dim, W = R + d->qk_rope_dim;

	if (d->q_lora_rank) {
		matmul(c, c->v, c->xb, &A->wq_a, NULL, T, 0);
		for (int t = 0; t < T; t++) {
			float *qa = c->v + (size_t)t * d->q_lora_rank;
			rmsnorm(qa, qa, &A->q_a_norm, d->q_lora_rank, d->rms_eps, d->norm_offset);
		}
		matmul(c, c->q, c->v, &A->wq_b, NULL, T, 0);
	} else {
		matmul(c, c->q, c->xb, &A->wq, NULL, T, 0);
	}
	matmul(c, c->k, c->xb, &A->wkv_a, NULL, T, 0);
	for (int t = 0; t < T; t++) {
		float *kva = c->k + (size_t)t * W, *q = c->q + (size_t)t * d->q_dim;
		rmsnorm(kva, kva, &A->kv_a_norm, R, d->rms_eps, d->norm_offset);
		rope_angles(c, d, bt->pos[t]);
		rope_apply(c, d, q + d->qk_nope_dim, d->n_heads, qh);
		rope_apply(c, d, kva + R, 1, W);
		memcpy(kv_row(c, &bt->seqs[bt->seq[t]], l, bt->pos[t], bsz, W), kva, (size_t)W * sizeof(float));
	}
	struct at a = {c, m, bt, bsz, l};
	pool_run(&c->pool, mla_work, &a);
	row_out(c, c->att, &A->wo, NULL, T);
}

/* ------------------------------------------------------------ Gated DeltaNet */

/* Qwen3-Next / Qwen3.5's linear attention, as transformers' Qwen3NextGatedDeltaNet
 * computes it with its token-by-token torch_recurrent_gated_delta_rule (the
 * chunked form HF runs for prefill is the same function, reassociated):
 *   mixed = q | k | v (conv_dim), z, b, a from the input projections
 *   mixed = silu(causal depthwise conv1d(mixed)), width lin_conv, over the
 *           sequence's previous inputs (the conv window in the state)
 *   per value head h (key head h / (nv / nk), repeat_interleave):
 *     q, k = l2norm(q), l2norm(k) (eps 1e-6); q *= dk^-0.5
 *     g = -exp(A_log[h]) * softplus(a + dt_bias[h]); beta = sigmoid(b)
 *     S = S * exp(g); delta = (v - S^T k) * beta; S += k delta^T; o = S^T q
 *   o = rmsnorm(o) * w * silu(z) per head (RMSNormGated: plain w), out_proj.
 * S (dk, dv) and the window persist per sequence in the state pool; a
 * sequence whose first token in the batch is at position 0 starts from zero
 * (cpu_forward clears it), so prefill across steps continues the recurrence
 * and recomputation after preemption starts afresh. Work items are (sequence,
 * channel) for the conv and (sequence, value head) for the recurrence, each
 * walking its tokens in order: batch-invariant. */

struct lin {
	struct cpu *c;
	const struct model *m;
	const struct batch *bt;
	int layer;
};

static float *seq_state(const struct cpu *c, const struct batch *bt, int s, int layer)
{
	return c->state + (size_t)bt->seqs[s].state * c->state_per_seq + c->st_off[layer];
}

static void conv_work(void *ctx, int tid, int nth)
{
	struct lin *a = ctx;
	struct cpu *c = a->c;
	const struct model_dims *d = &a->m->d;
	const struct model_w *w = &a->m->layers[a->layer].lin.conv;
	const int K = d->lin_conv, C = 2 * d->lin_nk * d->lin_dk + d->lin_nv * d->lin_dv;
	int lo, hi;
	share(a->bt->n_seqs * C, tid, nth, &lo, &hi);
	for (int it = lo; it < hi; it++) {
		int s = it / C, ch = it % C;
		float *win = seq_state(c, a->bt, s, a->layer) + (size_t)ch * (K - 1); /* oldest first */
		for (int t = c->sfirst[s]; t < c->sfirst[s] + c->slen[s]; t++) {
			float x = c->lmix[(size_t)t * C + ch], y = 0;
			for (int j = 0; j < K - 1; j++)
				y += model_w_at(w, (int64_t)ch * K + j) * win[j];
			y += model_w_at(w, (int64_t)ch * K + K - 1) * x;
			for (int j = 0; j + 1 < K - 1; j++)
				win[j] = win[j + 1];
			win[K - 2] = x;
			c->lconv[(size_t)t * C + ch] = y / (1.0f + fm_expf(-y));
		}
	}
}

/* transformers' l2norm: x * rsqrt(sum(x^2) + 1e-6), times scale. */
static void l2norm(float *out, const float *x, int n, float scale)
{
	float ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float r = 1.0f / fm_sqrtf(ss + 1e-6f);
	for (int i = 0; i < n; i++)
		out[i] = x[i] * r * scale;
}

/* torch.nn.functional.softplus (beta 1, threshold 20). */
static float softplus(float x)
{
	return x > 20.0f ? x : fm_logf(1.0f + fm_expf(x));
}

static void delta_work(void *ctx, int tid, int nth)
{
	struct lin *a = ctx;
	struct cpu *c = a->c;
	const struct model_dims *d = &a->m->d;
	const struct model_linear *L = &a->m->layers[a->layer].lin;
	const int nv = d->lin_nv, dk = d->lin_dk, dv = d->lin_dv, r = nv / d->lin_nk;
	const int kd = d->lin_nk * dk, C = 2 * kd + nv * dv, VD = nv * dv;
	const float scale = 1.0f / fm_sqrtf((float)dk);
	float *q = c->lscr + (size_t)tid * (size_t)(2 * dk + dv), *k = q + dk, *mem = k + dk;
	int lo, hi;
	share(a->bt->n_seqs * nv, tid, nth, &lo, &hi);
	for (int it = lo; it < hi; it++) {
		int s = it / nv, h = it % nv, kh = h / r;
		float *S = seq_state(c, a->bt, s, a->layer) + (size_t)(d->lin_conv - 1) * C + (size_t)h * dk * dv;
		const float A = -fm_expf(model_w_at(&L->a_log, h)), dtb = model_w_at(&L->dt_bias, h);
		for (int t = c->sfirst[s]; t < c->sfirst[s] + c->slen[s]; t++) {
			const float *row = c->lconv + (size_t)t * C, *v = row + 2 * kd + (size_t)h * dv;
			l2norm(q, row + (size_t)kh * dk, dk, 1.0f);
			for (int i = 0; i < dk; i++)
				q[i] *= scale;
			l2norm(k, row + kd + (size_t)kh * dk, dk, 1.0f);
			float g = A * softplus(c->la[(size_t)t * nv + h] + dtb);
			float beta = 1.0f / (1.0f + fm_expf(-c->lb[(size_t)t * nv + h])), decay = fm_expf(g);
			for (int i = 0; i < dk * dv; i++)
				S[i] *= decay;
			for (int j = 0; j < dv; j++)
				mem[j] = 0;
			for (int i = 0; i < dk; i++)
				for (int j = 0; j < dv; j++)
					mem[j] += S[(size_t)i * dv + j] * k[i];
			for (int j = 0; j < dv; j++)
				mem[j] = (v[j] - mem[j]) * beta;
			for (int i = 0; i < dk; i++)
				for (int j = 0; j < dv; j++)
					S[(size_t)i * dv + j] += k[i] * mem[j];
			float *o = c->lo + (size_t)t * VD + (size_t)h * dv;
			for (int j = 0; j < dv; j++)
				o[j] = 0;
			for (int i = 0; i < dk; i++)
				for (int j = 0; j < dv; j++)
					o[j] += S[(size_t)i * dv + j] * q[i];
			/* RMSNormGated: w * (o * rsqrt(mean(o^2) + eps)) * silu(z) */
			const float *z = c->lz + (size_t)t * VD + (size_t)h * dv;
			rmsnorm(o, o, &L->norm, dv, d->rms_eps, 0);
			for (int j = 0; j < dv; j++)
				o[j] = o[j] * (z[j] / (1.0f + fm_expf(-z[j])));
		}
	}
}

/* x += out_proj(gated_deltanet(xb)). */
static void attn_linear(struct cpu *c, const struct model *m, const struct batch *bt, int l)
{
	const struct model_dims *d = &m->d;
	const struct model_linear *L = &m->layers[l].lin;
	const int T = bt->n_tokens, nk = d->lin_nk, nv = d->lin_nv, dk = d->lin_dk, dv = d->lin_dv, r = nv / nk;
	const int kd = nk * dk, VD = nv * dv, C = 2 * kd + VD;

	if (d->lin_split) { /* Qwen3.5: q | k | v flat, z, b, a */
		matmul(c, c->lmix, c->xb, &L->in_qkv, NULL, T, 0);
		matmul(c, c->lz, c->xb, &L->in_z, NULL, T, 0);
		matmul(c, c->lb, c->xb, &L->in_b, NULL, T, 0);
		matmul(c, c->la, c->xb, &L->in_a, NULL, T, 0);
	} else { /* Qwen3-Next: per key head [q, k, v (r heads), z (r heads)] and [b (r), a (r)] */
		const int G = 2 * dk + 2 * r * dv;
		matmul(c, c->lp, c->xb, &L->in_qkvz, NULL, T, 0);
		matmul(c, c->lba, c->xb, &L->in_ba, NULL, T, 0);
		for (int t = 0; t < T; t++)
			for (int g = 0; g < nk; g++) {
				const float *src = c->lp + (size_t)t * (2 * kd + 2 * VD) + (size_t)g * G;
				const float *ba = c->lba + (size_t)t * 2 * nv + (size_t)g * 2 * r;
				float *mix = c->lmix + (size_t)t * C;
				memcpy(mix + (size_t)g * dk, src, (size_t)dk * sizeof(float));
				memcpy(mix + kd + (size_t)g * dk, src + dk, (size_t)dk * sizeof(float));
				memcpy(mix + 2 * kd + (size_t)g * r * dv, src + 2 * dk, (size_t)r * dv * sizeof(float));
				memcpy(c->lz + (size_t)t * VD + (size_t)g * r * dv, src + 2 * dk + r * dv,
				       (size_t)r * dv * sizeof(float));
				memcpy(c->lb + (size_t)t * nv + (size_t)g * r, ba, (size_t)r * sizeof(float));
				memcpy(c->la + (size_t)t * nv + (size_t)g * r, ba + r, (size_t)r * sizeof(float));
			}
	}
	struct lin a = {c, m, bt, l};
	pool_run(&c->pool, conv_work, &a);
	pool_run(&c->pool, delta_work, &a);
	matmul(c, c->x, c->lo, &L->out, NULL, T, 1);
}

/* ------------------------------------------------------------ MLPs */

/* y (+)= down(silu(gate x) * up x) for T rows of x. */
static void mlp(struct cpu *c, float *y, const float *x, const struct model_mlp *f, int T, int add)
{
	const int F = (int)f->w_gate.rows;
	matmul(c, c->hg, x, &f->w_gate, NULL, T, 0);
	matmul(c, c->hu, x, &f->w_up, NULL, T, 0);
	for (size_t i = 0; i < (size_t)T * (size_t)F; i++) { /* silu(gate) * up */
		float g = c->hg[i];
		c->hg[i] = g / (1.0f + fm_expf(-g)) * c->hu[i];
	}
	matmul(c, y, c->hg, &f->w_down, NULL, T, add);
}

/* The k best of v[0..n) (largest first, the lower index on ties) into idx. */
static void top_k(const float *v, int n, int k, int32_t *idx)
{
	for (int j = 0; j < k; j++) {
		int best = -1;
		for (int i = 0; i < n; i++) {
			int taken = 0;
			for (int q = 0; q < j && !taken; q++)
				taken = idx[q] == i;
			if (!taken && (best < 0 || v[i] > v[best]))
				best = i;
		}
		idx[j] = best;
	}
}

/* One token's routing, as the HF families compute it: scores (softmax or
 * sigmoid), the choice (scores + e_score_correction_bias), groups kept by
 * their best expert or best two (the rest masked to 0.0, as HF's
 * masked_fill), top-k of the choice, weights from the unbiased scores,
 * renormalised (+1e-20 for the sigmoid router) and scaled. */
static void route(const struct model_dims *d, const float *logits, const struct model_w *bias, float *scratch,
		  int32_t *ids, float *w)
{
	const int E = d->n_experts, K = d->n_experts_tok;
	float *score = scratch, *choice = scratch + E;
	if (d->moe_score == MOE_SOFTMAX) {
		float mx = -3.0e38f, sum = 0;
		for (int e = 0; e < E; e++)
			mx = logits[e] > mx ? logits[e] : mx;
		for (int e = 0; e < E; e++) {
			score[e] = fm_expf(logits[e] - mx);
			sum += score[e];
		}
		for (int e = 0; e < E; e++)
			score[e] /= sum;
	} else {
		for (int e = 0; e < E; e++)
			score[e] = 1.0f / (1.0f + fm_expf(-logits[e]));
	}
	for (int e = 0; e < E; e++)
		choice[e] = bias->data ? score[e] + model_w_at(bias, e) : score[e];
	if (d->moe_group != MOE_GROUP_NONE) {
		const int G = d->n_group, per = E / G;
		float gs[MODEL_MAX_GROUPS] = {0};
		int32_t keep[MODEL_MAX_GROUPS], two[2];
		for (int g = 0; g < G; g++) {
			const float *v = choice + g * per;
			if (d->moe_group == MOE_GROUP_MAX) {
				top_k(v, per, 1, two);
				gs[g] = v[two[0]];
			} else {
				top_k(v, per, 2, two);
				gs[g] = v[two[0]] + v[two[1]];
			}
		}
		top_k(gs, G, d->topk_group, keep);
		for (int g = 0; g < G; g++) {
			int kept = 0;
			for (int q = 0; q < d->topk_group; q++)
				kept |= keep[q] == g;
			if (!kept)
				for (int e = g * per; e < (g + 1) * per; e++)
					choice[e] = 0.0f;
		}
	}
	top_k(choice, E, K, ids);
	float sum = 0;
	for (int j = 0; j < K; j++) {
		w[j] = score[ids[j]];
		sum += w[j];
	}
	if (d->norm_topk) {
		if (d->moe_score == MOE_SIGMOID)
			sum += 1e-20f;
		for (int j = 0; j < K; j++)
			w[j] /= sum;
	}
	for (int j = 0; j < K; j++)
		w[j] *= d->routed_scale;
}

/* x += sum over each token's experts (ascending expert id, as HF's index_add
 * loop) of weight * expert(xb), plus the shared experts. Each expert runs on
 * its tokens gathered; every output element is still one fixed-order dot
 * product, so a token's result does not depend on the others in the batch. */
static void mlp_moe(struct cpu *c, const struct model *m, int T, int l)
{
	const struct model_dims *d = &m->d;
	const struct model_moe *M = &m->layers[l].moe;
	const int E = d->n_experts, K = d->n_experts_tok, D = d->dim;

	matmul(c, c->rl, c->xb, &M->router, NULL, T, 0);
	for (int t = 0; t < T; t++)
		route(d, c->rl + (size_t)t * E, &M->router_bias, c->route, c->ri + (size_t)t * K, c->rw + (size_t)t * K);
	memset(c->acc, 0, (size_t)T * (size_t)D * sizeof(float));
	for (int e = c->e_lo; e < c->e_hi; e++) { /* this rank's experts (all of them when tp = 1) */
		int n = 0;
		for (int i = 0; i < T * K; i++)
			if (c->ri[i] == e)
				c->et[n++] = i;
		if (!n)
			continue;
		for (int r = 0; r < n; r++)
			memcpy(c->xe + (size_t)r * D, c->xb + (size_t)(c->et[r] / K) * D, (size_t)D * sizeof(float));
		mlp(c, c->ye, c->xe, &M->experts[e], n, 0);
		for (int r = 0; r < n; r++) {
			float wt = c->rw[c->et[r]], *acc = c->acc + (size_t)(c->et[r] / K) * D;
			const float *y = c->ye + (size_t)r * D;
			for (int i = 0; i < D; i++)
				acc[i] += y[i] * wt;
		}
	}
	if (M->shared.w_gate.data && M->shared_gate.data) { /* Qwen3-Next: sigmoid(shared_expert_gate x) * shared(x) */
		matmul(c, c->rl, c->xb, &M->shared_gate, NULL, T, 0); /* the router logits are spent */
		mlp(c, c->ye, c->xb, &M->shared, T, 0);
		for (int t = 0; t < T; t++) {
			float sg = 1.0f / (1.0f + fm_expf(-c->rl[t]));
			for (int i = 0; i < D; i++)
				c->acc[(size_t)t * D + i] += sg * c->ye[(size_t)t * D + i];
		}
	} else if (M->shared.w_gate.data) {
		mlp(c, c->ye, c->xb, &M->shared, T, 0);
		for (size_t i = 0; i < (size_t)T * (size_t)D; i++)
			c->acc[i] += c->ye[i];
	}
	if (c->tp > 1) {
		reduce_add(c, c->acc, T);
		return;
	}
	for (size_t i = 0; i < (size_t)T * (size_t)D; i++)
		c->x[i] += c->acc[i];
}

/* ------------------------------------------------------------ forward */

static void lm_head_tp(struct cpu *c, int n, float *logits);

/* One rank's forward (the whole model's when tp = 1). Every rank checks the
 * batch the same way and fails at the same point, so none is left waiting in
 * a collective. logits: rank 0's only. */
static int forward_rank(struct cpu *c, const struct batch *bt, float *logits)
{
	const struct model *m = c->m;
	const struct model_dims *d = &m->d;
	const int T = bt->n_tokens, bsz = c->block_tokens;

	if (T < 1 || T > c->max_tokens || bt->n_logits > c->max_seqs || bt->n_seqs > c->max_seqs)
		return -E_INVAL;
	for (int t = 0; t < T; t++) {
		int s = bt->seq[t], p = bt->pos[t];
		if (bt->token[t] < 0 || bt->token[t] >= d->vocab || s < 0 || s >= bt->n_seqs || p < 0 ||
		    p >= c->max_seq_len || p / bsz >= bt->seqs[s].n_blocks)
			return -E_INVAL;
	}
	for (int i = 0; i < bt->n_logits; i++)
		if (bt->logit_rows[i] < 0 || bt->logit_rows[i] >= T)
			return -E_INVAL;
	if (c->state_per_seq) { /* recurrent layers: each sequence's tokens in one run, a state slot */
		for (int s = 0; s < bt->n_seqs; s++)
			c->slen[s] = 0;
		for (int t = 0; t < T; t++) {
			int s = bt->seq[t];
			if (c->slen[s] && c->sfirst[s] + c->slen[s] != t)
				return -E_INVAL;
			if (!c->slen[s]++)
				c->sfirst[s] = t;
		}
		for (int s = 0; s < bt->n_seqs; s++) {
			if (bt->seqs[s].state < 0 || bt->seqs[s].state >= c->n_states)
				return -E_INVAL;
			if (c->slen[s] && bt->pos[c->sfirst[s]] == 0) /* a fresh or recomputed sequence */
				memset(c->state + (size_t)bt->seqs[s].state * c->state_per_seq, 0,
				       c->state_per_seq * sizeof(float));
		}
	}

	/* x = embed[token]: this rank's vocabulary rows, zeros elsewhere, summed over the ranks (exact) */
	for (int t = 0; t < T; t++) {
		const int v = bt->token[t] - c->vocab_lo;
		if (v >= 0 && v < c->vocab_n)
			memcpy(c->x + (size_t)t * d->dim, wrow(&m->embed, v, c->rowbuf), (size_t)d->dim * sizeof(float));
		else
			memset(c->x + (size_t)t * d->dim, 0, (size_t)d->dim * sizeof(float));
	}
	if (c->tp > 1)
		comm_all_reduce_sum(&c->comm, c->x, (size_t)T * (size_t)d->dim, NULL);

	for (int l = 0; l < d->n_layers; l++) {
		const struct model_layer *L = &m->layers[l];

		for (int t = 0; t < T; t++) /* xb = rmsnorm(x) */
			rmsnorm(c->xb + (size_t)t * d->dim, c->x + (size_t)t * d->dim, &L->attn_norm, d->dim,
				d->rms_eps, d->norm_offset);
		switch (L->attn) { /* x += attention(xb) */
		case ATTN_GQA:
			attn_gqa(c, m, bt, bsz, l);
			break;
		case ATTN_MLA:
			attn_mla(c, m, bt, bsz, l);
			break;
		case ATTN_LINEAR:
			attn_linear(c, m, bt, l);
			break;
		case ATTN_KIND_N:
			return -E_UNSUPPORTED;
		}

		for (int t = 0; t < T; t++) /* xb = rmsnorm(x) */
			rmsnorm(c->xb + (size_t)t * d->dim, c->x + (size_t)t * d->dim, &L->ffn_norm, d->dim,
				d->rms_eps, d->norm_offset);
		switch (L->mlp) { /* x += mlp(xb) */
		case MLP_DENSE:
			if (c->tp == 1) {
				mlp(c, c->x, c->xb, &L->ffn, T, 1);
			} else { /* gate/up column-parallel, down row-parallel */
				mlp(c, c->red, c->xb, &L->ffn, T, 0);
				reduce_add(c, c->red, T);
			}
			break;
		case MLP_MOE:
			mlp_moe(c, m, T, l);
			break;
		case MLP_KIND_N:
			return -E_UNSUPPORTED;
		}
	}

	for (int i = 0; i < bt->n_logits; i++) {
		int t = bt->logit_rows[i];
		rmsnorm(c->xf + (size_t)i * d->dim, c->x + (size_t)t * d->dim, &m->final_norm, d->dim, d->rms_eps, d->norm_offset);
	}
	if (bt->n_logits && c->tp == 1)
		matmul(c, logits, c->xf, &m->lm_head, NULL, bt->n_logits, 0);
	else if (bt->n_logits)
		lm_head_tp(c, bt->n_logits, logits);
	return 0;
}

/* The LM head split by vocabulary: each rank's logits (n, vocab_n), padded
 * to vocab_pad, gathered everywhere; rank 0 lays them out as (n, vocab). */
static void lm_head_tp(struct cpu *c, int n, float *logits)
{
	const int V = c->m->d.vocab, pad = c->vocab_pad, N = c->tp;
	matmul(c, c->lg, c->xf, &c->m->lm_head, NULL, n, 0);
	memset(c->lg + (size_t)n * c->vocab_n, 0, (size_t)n * (size_t)(pad - c->vocab_n) * sizeof(float));
	comm_all_gather(&c->comm, c->lg, c->lgg, (size_t)n * (size_t)pad, NULL);
	if (c->rank != 0)
		return;
	for (int r = 0; r < N; r++) {
		int lo, hi;
		share(V, r, N, &lo, &hi);
		const float *src = c->lgg + (size_t)r * (size_t)n * (size_t)pad;
		for (int i = 0; i < n; i++)
			memcpy(logits + (size_t)i * V + lo, src + (size_t)i * (size_t)(hi - lo),
			       (size_t)(hi - lo) * sizeof(float));
	}
}

static void tp_work(void *ctx, int tid, int nth)
{
	struct tp_group *g = ctx;
	g->rc[tid] = forward_rank(g->rb[tid].impl, g->bt, tid == 0 ? g->logits : NULL);
}

static int cpu_forward(struct backend *b, const struct batch *bt, float *logits)
{
	struct cpu *c = b->impl;
	if (!c->grp)
		return forward_rank(c, bt, logits);
	struct tp_group *g = c->grp;
	g->bt = bt;
	g->logits = logits;
	pool_run(&g->pool, tp_work, g);
	for (int r = 0; r < g->n; r++)
		if (g->rc[r] < 0)
			return g->rc[r];
	return 0;
}

/* ------------------------------------------------------------ init */

static int cpu_check(const struct model *m, struct ts_err *e)
{
	(void)m;
	(void)e;
	return 0; /* every layer kind */
}

static uint64_t cpu_kv_bytes_per_token(const struct model *m)
{
	return model_kv_elems_per_token(m) * sizeof(float);
}

static int threads_for(const struct backend_limits *l)
{
	long n = l->threads > 0 ? l->threads : sysconf(_SC_NPROCESSORS_ONLN);
	return (int)TS_MAX(1, TS_MIN(n, 1024));
}

/* The widths the workspace needs, over every layer kind the model has. */
struct wdims {
	int q, k, v, att, inner, row_max, lat;
};

static void wdims_of(const struct model_dims *d, struct wdims *w)
{
	const int mla_kva = d->kv_lora_rank + d->qk_rope_dim, vo = d->n_heads * d->v_head_dim;
	w->q = d->q_dim * (1 + d->attn_gate);
	w->k = TS_MAX(d->kv_dim, mla_kva);
	w->v = TS_MAX(d->kv_dim, d->q_lora_rank);
	w->att = TS_MAX(d->q_dim, vo);
	w->inner = TS_MAX(TS_MAX(d->ffn_dim, d->moe_ffn_dim), d->shared_ffn_dim);
	w->row_max = TS_MAX(TS_MAX(TS_MAX(d->dim, w->att), w->inner), TS_MAX(d->kv_lora_rank, d->q_lora_rank));
	w->lat = 2 * d->kv_lora_rank;
}

/* Floats of the Gated DeltaNet workspace (0 without LINEAR layers). */
static uint64_t lin_floats(const struct model_dims *d, uint64_t T, uint64_t nth)
{
	if (!d->n_linear_layers)
		return 0;
	const uint64_t kd = (uint64_t)d->lin_nk * d->lin_dk, vd = (uint64_t)d->lin_nv * d->lin_dv, C = 2 * kd + vd;
	return T * ((2 * kd + 2 * vd) + 2 * (uint64_t)d->lin_nv + 2 * C + 2 * vd + 2 * (uint64_t)d->lin_nv) +
	       nth * (2 * (uint64_t)d->lin_dk + (uint64_t)d->lin_dv);
}

static uint64_t workspace_floats(const struct model *m, const struct backend_limits *l, int *row_max)
{
	const struct model_dims *d = &m->d;
	const uint64_t T = (uint64_t)l->max_batch_tokens, nth = (uint64_t)threads_for(l);
	const uint64_t E = (uint64_t)d->n_experts, K = (uint64_t)d->n_experts_tok;
	struct wdims w;
	wdims_of(d, &w);
	*row_max = w.row_max;
	uint64_t moe = E ? T * (E + 3u * (uint64_t)d->dim + 3u * K) + 2u * E : 0; /* rl, xe, ye, acc, rw, ri, et; route */
	return T * (2u * (uint64_t)d->dim + (uint64_t)w.q + (uint64_t)w.att + (uint64_t)w.k + (uint64_t)w.v +
		    2u * (uint64_t)w.inner) +
	       (uint64_t)l->max_seqs * (uint64_t)d->dim +
	       nth * ((uint64_t)w.row_max + (uint64_t)l->max_seq_len + (uint64_t)w.lat) + (uint64_t)d->rope_dim +
	       (uint64_t)d->rope_dim / 2 + moe + (d->attn_gate ? T * (uint64_t)d->q_dim : 0) + lin_floats(d, T, nth);
}

/* MemAvailable less the weights (mapped from the page cache: count them as
 * resident) and the workspace. */
static int cpu_mem_available(const struct model *m, const struct backend_limits *l, uint64_t *bytes,
			     struct ts_err *e)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	unsigned long long kb = 0;
	int rm;
	if (!f)
		return ts_errf(e, E_IO, "cannot read /proc/meminfo to size the KV pool; set [engine] kv_tokens");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	uint64_t avail = (uint64_t)kb * 1024u, used = m->weight_bytes + workspace_floats(m, l, &rm) * sizeof(float) +
		 (uint64_t)l->n_states * model_state_elems_per_seq(m) * sizeof(float);
	*bytes = avail > used ? avail - used : 0;
	return 0;
}

static void tp_free(struct tp_group *g);

static void cpu_free(struct backend *b)
{
	struct cpu *c = b->impl;
	if (!c)
		return;
	if (c->grp && c->rank == 0) { /* rank 0's backend is the engine's: it frees the group */
		tp_free(c->grp);
		b->impl = NULL;
		return;
	}
	pool_stop(&c->pool);
	ts_free(c->red);
	ts_free(c->x);
	ts_free(c->kv);
	ts_free(c->kv_off);
	ts_free(c->state);
	ts_free(c->st_off);
	ts_free(c->sfirst);
	ts_free(c);
	b->impl = NULL;
}

static int cpu_init1(struct backend *b, const struct model *m, const struct backend_limits *l, struct ts_err *e)
{
	const struct model_dims *d = &m->d;
	struct cpu *c = ts_alloc(sizeof(*c));
	struct wdims w;
	int rm, r;

	memset(b, 0, sizeof(*b));
	b->ops = &cpu_backend_ops;
	b->m = m;
	b->lim = *l;
	b->lim.threads = threads_for(l);
	if (!c)
		return ts_errf(e, E_NOMEM, "cpu backend: out of memory");
	memset(c, 0, sizeof(*c));
	b->impl = c;
	c->max_tokens = l->max_batch_tokens;
	c->max_seq_len = l->max_seq_len;
	c->max_seqs = l->max_seqs;
	c->block_tokens = l->block_tokens;
	c->m = m;
	c->tp = 1;
	c->vocab_n = c->vocab_pad = d->vocab;
	c->e_hi = d->n_experts;
	uint64_t nf = workspace_floats(m, l, &rm);
	c->row_max = rm;
	wdims_of(d, &w);
	const size_t slots = (size_t)l->n_blocks * (size_t)l->block_tokens;
	const size_t kv_floats = slots * (size_t)model_kv_elems_per_token(m);
	c->x = ts_alloc_resident(nf * sizeof(float));
	c->kv = ts_alloc_resident(kv_floats * sizeof(float));
	c->kv_off = ts_alloc((size_t)d->n_layers * sizeof(size_t));
	c->state_per_seq = (size_t)model_state_elems_per_seq(m);
	c->n_states = c->state_per_seq ? l->n_states : 0;
	const size_t st_floats = (size_t)c->n_states * c->state_per_seq;
	c->state = st_floats ? ts_alloc_resident(st_floats * sizeof(float)) : NULL;
	c->st_off = ts_alloc((size_t)d->n_layers * sizeof(size_t));
	c->sfirst = ts_alloc(2 * (size_t)l->max_seqs * sizeof(int));
	if (c->state_per_seq && l->n_states < 1) {
		cpu_free(b);
		return ts_errf(e, E_INVAL, "cpu backend: %s has recurrent layers but the state pool has no slots",
			       m->arch_name);
	}
	if (!c->x || !c->kv || !c->kv_off || (st_floats && !c->state) || !c->st_off || !c->sfirst) {
		cpu_free(b);
		return ts_errf(e, E_NOMEM, "cpu backend: cannot allocate %.2f GB of workspace and KV; lower [engine] kv_tokens or max_batch_tokens",
			       (double)(nf * 4 + kv_floats * 4) / 1e9);
	}
	for (int i = 0, off = 0; i < d->n_layers; off += model_kv_width(m, i), i++)
		c->kv_off[i] = slots * (size_t)off;
	for (int i = 0; i < d->n_layers; i++)
		c->st_off[i] = i ? c->st_off[i - 1] + (size_t)model_state_elems(m, i - 1) : 0;
	if (st_floats)
		memset(c->state, 0, st_floats * sizeof(float));
	c->slen = c->sfirst + l->max_seqs;
	/* carve the workspace */
	size_t T = (size_t)l->max_batch_tokens, E = (size_t)d->n_experts, K = (size_t)d->n_experts_tok;
	size_t nth = (size_t)b->lim.threads;
	float *p = c->x + T * (size_t)d->dim;
	c->xb = p, p += T * (size_t)d->dim;
	c->q = p, p += T * (size_t)w.q;
	c->att = p, p += T * (size_t)w.att;
	c->k = p, p += T * (size_t)w.k;
	c->v = p, p += T * (size_t)w.v;
	c->hg = p, p += T * (size_t)w.inner;
	c->hu = p, p += T * (size_t)w.inner;
	c->xf = p, p += (size_t)l->max_seqs * (size_t)d->dim;
	c->rowbuf = p, p += nth * (size_t)rm;
	c->scores = p, p += nth * (size_t)l->max_seq_len;
	c->lat = p, p += nth * (size_t)w.lat;
	c->rope_cs = p, p += (size_t)d->rope_dim;
	c->inv_freq = p, p += (size_t)d->rope_dim / 2;
	if (E) {
		c->rl = p, p += T * E;
		c->xe = p, p += T * (size_t)d->dim;
		c->ye = p, p += T * (size_t)d->dim;
		c->acc = p, p += T * (size_t)d->dim;
		c->rw = p, p += T * K;
		c->ri = (int32_t *)p, p += T * K;
		c->et = (int32_t *)p, p += T * K;
		c->route = p, p += 2 * E;
	}
	if (d->attn_gate)
		c->gate = p, p += T * (size_t)d->q_dim;
	if (d->n_linear_layers) {
		size_t kd = (size_t)d->lin_nk * d->lin_dk, vd = (size_t)d->lin_nv * d->lin_dv, C = 2 * kd + vd;
		c->lp = p, p += T * (2 * kd + 2 * vd);
		c->lba = p, p += T * 2 * (size_t)d->lin_nv;
		c->lmix = p, p += T * C;
		c->lconv = p, p += T * C;
		c->lz = p, p += T * vd;
		c->lo = p, p += T * vd;
		c->lb = p, p += T * (size_t)d->lin_nv;
		c->la = p, p += T * (size_t)d->lin_nv;
		c->lscr = p, p += nth * (2 * (size_t)d->lin_dk + (size_t)d->lin_dv);
	}
	model_rope_freqs(d, c->inv_freq);
	if ((r = pool_start(&c->pool, b->lim.threads)) < 0) {
		cpu_free(b);
		return ts_errf(e, -r, "cpu backend: cannot start %d threads", l->threads);
	}
	b->weight_bytes = m->weight_bytes;
	b->workspace_bytes = nf * sizeof(float);
	b->kv_bytes = kv_floats * sizeof(float);
	b->state_bytes = st_floats * sizeof(float);
	return 0;
}

/* ------------------------------------------------------------ tensor parallelism */

/* Whether m's attention heads split over n ranks: query heads evenly, and
 * GQA KV heads evenly or each rank within one KV head. When they do not
 * (fewer heads than ranks), attention is replicated: every rank runs all
 * heads on its own copy of the cache and adds o_proj itself (exact). */
static int tp_heads_split(const struct model *m, int n)
{
	const struct model_dims *d = &m->d;
	if (!d->n_heads || d->n_heads % n)
		return 0;
	for (int l = 0; l < d->n_layers; l++)
		if (m->layers[l].attn == ATTN_GQA && d->n_kv_heads % n && n % d->n_kv_heads)
			return 0;
	return 1;
}

/* A copy the shard owns, tracked for tp_free. NULL when out of memory. */
static void *tp_own(struct tp_group *g, size_t bytes)
{
	if (g->n_own == g->cap_own) {
		int cap = g->cap_own ? 2 * g->cap_own : 64;
		void **o = ts_alloc((size_t)cap * sizeof(void *));
		if (!o)
			return NULL;
		if (g->n_own)
			memcpy(o, g->own, (size_t)g->n_own * sizeof(void *));
		ts_free(g->own);
		g->own = o;
		g->cap_own = cap;
	}
	void *p = ts_alloc(bytes ? bytes : 1);
	if (p)
		g->own[g->n_own++] = p;
	return p;
}

/* Rows [lo, hi) of w, a view. */
static void w_rows(struct model_w *w, int64_t lo, int64_t hi)
{
	if (!w->data)
		return;
	w->data = (const char *)w->data + (size_t)lo * (size_t)w->cols * ts_dtype_size(w->dtype);
	w->rows = hi - lo;
}

/* Elements [lo, hi) of a 1-D w (rows = 1), a view. */
static void w_elems(struct model_w *w, int64_t lo, int64_t hi)
{
	if (!w->data)
		return;
	w->data = (const char *)w->data + (size_t)lo * ts_dtype_size(w->dtype);
	w->cols = hi - lo;
}

/* Columns [lo, hi) of w, copied out of the mapping (the rows are strided). */
static int w_cols(struct tp_group *g, struct model_w *w, int64_t lo, int64_t hi)
{
	if (!w->data)
		return 0;
	const size_t es = ts_dtype_size(w->dtype), n = (size_t)(hi - lo);
	char *p = tp_own(g, (size_t)w->rows * n * es);
	if (!p)
		return -E_NOMEM;
	for (int64_t r = 0; r < w->rows; r++)
		memcpy(p + (size_t)r * n * es, (const char *)w->data + ((size_t)r * (size_t)w->cols + (size_t)lo) * es, n * es);
	w->data = p;
	w->cols = hi - lo;
	return 0;
}

/* A SiLU MLP's share [lo, hi) of its inner dim: gate and up rows, down columns. */
static int mlp_shard(struct tp_group *g, struct model_mlp *f, int64_t lo, int64_t hi)
{
	w_rows(&f->w_gate, lo, hi);
	w_rows(&f->w_up, lo, hi);
	return w_cols(g, &f->w_down, lo, hi);
}

/* Rank r's shard of the model (see the top of the file), into g->rm[r]. */
static int tp_shard(struct tp_group *g, const struct model *m, int r)
{
	const int n = g->n;
	const struct model_dims *gd = &m->d;
	struct model *s = &g->rm[r];
	struct model_dims *d = &s->d;
	int lo, hi, rc;

	*s = *m;
	s->layers = tp_own(g, (size_t)gd->n_layers * sizeof(*s->layers));
	if (!s->layers)
		return -E_NOMEM;
	memcpy(s->layers, m->layers, (size_t)gd->n_layers * sizeof(*s->layers));
	s->experts = NULL;
	/* heads (all of them on every rank when they do not split) */
	const int split = tp_heads_split(m, n), hd = gd->head_dim;
	const int h0 = split ? gd->n_heads / n * r : 0, h1 = split ? h0 + gd->n_heads / n : gd->n_heads;
	int k0 = 0, k1 = gd->n_kv_heads;
	if (split && gd->n_kv_heads % n == 0) {
		k0 = gd->n_kv_heads / n * r;
		k1 = k0 + gd->n_kv_heads / n;
	} else if (split) { /* fewer KV heads than ranks: the one this rank's query heads read */
		k0 = h0 / (gd->n_heads / gd->n_kv_heads);
		k1 = k0 + 1;
	}
	d->n_heads = h1 - h0;
	share(gd->ffn_dim, r, n, &lo, &hi);
	d->ffn_dim = hi - lo;
	int f0 = lo, f1 = hi;
	share(gd->shared_ffn_dim, r, n, &lo, &hi);
	d->shared_ffn_dim = hi - lo;
	int s0 = lo, s1 = hi;
	for (int l = 0; l < gd->n_layers; l++) {
		struct model_layer *L = &s->layers[l];
		switch (split ? L->attn : ATTN_LINEAR) { /* not split: as the linear layers, whole */
		case ATTN_GQA: {
			struct model_gqa *G = &L->gqa;
			const int qw = hd * (1 + gd->attn_gate); /* rows per query head (q, then its gate) */
			w_rows(&G->wq, (int64_t)h0 * qw, (int64_t)h1 * qw);
			w_elems(&G->bq, (int64_t)h0 * qw, (int64_t)h1 * qw);
			w_rows(&G->wk, (int64_t)k0 * hd, (int64_t)k1 * hd);
			w_elems(&G->bk, (int64_t)k0 * hd, (int64_t)k1 * hd);
			w_rows(&G->wv, (int64_t)k0 * hd, (int64_t)k1 * hd);
			w_elems(&G->bv, (int64_t)k0 * hd, (int64_t)k1 * hd);
			if ((rc = w_cols(g, &G->wo, (int64_t)h0 * hd, (int64_t)h1 * hd)) < 0)
				return rc;
			break;
		}
		case ATTN_MLA: {
			struct model_mla *A = &L->mla;
			const int qh = gd->qk_nope_dim + gd->qk_rope_dim, kvb = gd->qk_nope_dim + gd->v_head_dim;
			w_rows(&A->wq, (int64_t)h0 * qh, (int64_t)h1 * qh);
			w_rows(&A->wq_b, (int64_t)h0 * qh, (int64_t)h1 * qh);
			w_rows(&A->wkv_b, (int64_t)h0 * kvb, (int64_t)h1 * kvb);
			if ((rc = w_cols(g, &A->wo, (int64_t)h0 * gd->v_head_dim, (int64_t)h1 * gd->v_head_dim)) < 0)
				return rc;
			break;
		}
		case ATTN_LINEAR: /* whole on every rank */
		case ATTN_KIND_N:
			break;
		}
		switch (L->mlp) {
		case MLP_DENSE:
			if ((rc = mlp_shard(g, &L->ffn, f0, f1)) < 0)
				return rc;
			break;
		case MLP_MOE: {
			struct model_moe *M = &L->moe;
			struct model_mlp *ex = tp_own(g, (size_t)gd->n_experts * sizeof(*ex));
			if (!ex)
				return -E_NOMEM;
			memset(ex, 0, (size_t)gd->n_experts * sizeof(*ex));
			share(gd->n_experts, r, n, &lo, &hi);
			for (int x = lo; x < hi; x++) /* this rank's experts; the others' stay absent */
				ex[x] = M->experts[x];
			M->experts = ex;
			if (M->shared.w_gate.data && (rc = mlp_shard(g, &M->shared, s0, s1)) < 0)
				return rc;
			break;
		}
		case MLP_KIND_N:
			break;
		}
		if (L->attn == ATTN_GQA && split && r != 0)
			L->gqa.bo.data = NULL; /* rank 0 adds o_proj's bias once (row_out) */
	}
	if (gd->n_heads) { /* MLA: n_kv_heads = n_heads and kv_dim = 0 stay so */
		d->q_dim = gd->q_dim / gd->n_heads * d->n_heads;
		d->n_kv_heads = k1 - k0;
		d->kv_dim = gd->n_kv_heads ? gd->kv_dim / gd->n_kv_heads * (k1 - k0) : 0;
	}
	share(gd->vocab, r, n, &lo, &hi);
	w_rows(&s->embed, lo, hi);
	w_rows(&s->lm_head, lo, hi);
	return 0;
}

static void tp_free(struct tp_group *g)
{
	if (g->pool.th)
		pool_stop(&g->pool);
	for (int r = g->n - 1; r >= 0 && g->rb; r--) {
		struct cpu *c = g->rb[r].impl;
		if (!c)
			continue;
		c->grp = NULL;
		cpu_free(&g->rb[r]);
	}
	for (int i = 0; i < g->n_own; i++)
		ts_free(g->own[i]);
	ts_free(g->own);
	ts_free(g->rb);
	ts_free(g->rm);
	comm_cpu_group_free(g->cg);
	ts_free(g);
}

/* tp ranks: each a shard of m, a struct cpu of its own (threads / tp workers,
 * its own KV pool over the same block ids), a comm rank; b's impl is rank 0's. */
static int cpu_init_tp(struct backend *b, const struct model *m, const struct backend_limits *l, struct ts_err *e)
{
	const int n = l->tp, V = m->d.vocab;
	const int threads = threads_for(l);
	struct tp_group *g;
	int r, rc;

	memset(b, 0, sizeof(*b));
	if (n > COMM_MAX_RANKS)
		return ts_errf(e, E_RANGE, "cpu backend: tp = %d (1..%d)", n, COMM_MAX_RANKS);
	if (!(g = ts_alloc(sizeof(*g))))
		return ts_errf(e, E_NOMEM, "cpu backend: out of memory");
	memset(g, 0, sizeof(*g));
	g->n = n;
	g->rb = ts_alloc((size_t)n * sizeof(*g->rb));
	g->rm = ts_alloc((size_t)n * sizeof(*g->rm));
	if (!g->rb || !g->rm) {
		rc = ts_errf(e, E_NOMEM, "cpu backend: out of memory");
		goto fail;
	}
	memset(g->rb, 0, (size_t)n * sizeof(*g->rb));
	if ((rc = comm_cpu_group_new(&g->cg, n, e)) < 0)
		goto fail;
	int pad = (V + n - 1) / n;
	for (r = 0; r < n; r++) {
		struct backend_limits lr = *l;
		lr.tp = 1;
		lr.threads = TS_MAX(1, threads / n);
		if ((rc = tp_shard(g, m, r)) < 0) {
			rc = ts_errf(e, -rc, "cpu backend: out of memory sharding the weights for rank %d of %d", r, n);
			goto fail;
		}
		if ((rc = cpu_init1(&g->rb[r], &g->rm[r], &lr, e)) < 0)
			goto fail;
		struct cpu *c = g->rb[r].impl;
		int lo, hi;
		c->rank = r;
		c->tp = n;
		c->grp = g;
		comm_cpu_init(&c->comm, g->cg, r);
		share(V, r, n, &lo, &hi);
		c->vocab_lo = lo;
		c->vocab_n = hi - lo;
		c->vocab_pad = pad;
		share(m->d.n_experts, r, n, &lo, &hi);
		c->e_lo = lo;
		c->e_hi = hi;
		c->attn_rep = !tp_heads_split(m, n);
		const size_t T = (size_t)l->max_batch_tokens, S = (size_t)l->max_seqs;
		c->red = ts_alloc((T * (size_t)m->d.dim + S * (size_t)pad * (1 + (size_t)n)) * sizeof(float));
		if (!c->red) {
			rc = ts_errf(e, E_NOMEM, "cpu backend: out of memory for rank %d's collectives", r);
			goto fail;
		}
		c->lg = c->red + T * (size_t)m->d.dim;
		c->lgg = c->lg + S * (size_t)pad;
		b->workspace_bytes += g->rb[r].workspace_bytes;
		b->kv_bytes += g->rb[r].kv_bytes;
		b->state_bytes += g->rb[r].state_bytes;
	}
	if ((rc = pool_start(&g->pool, n)) < 0) {
		rc = ts_errf(e, -rc, "cpu backend: cannot start %d rank threads", n);
		goto fail;
	}
	b->ops = &cpu_backend_ops;
	b->m = m;
	b->lim = *l;
	b->lim.threads = TS_MAX(1, threads / n) * n;
	b->impl = g->rb[0].impl;
	b->weight_bytes = m->weight_bytes;
	log_info("stage=backend tp=%d threads_per_rank=%d heads_per_rank=%d kv_heads_per_rank=%d experts_per_rank=%d vocab_per_rank=%d%s",
		 n, TS_MAX(1, threads / n), g->rm[0].d.n_heads, g->rm[0].d.n_kv_heads, (m->d.n_experts + n - 1) / n, pad,
		 tp_heads_split(m, n) ? "" : " attention=replicated (the heads do not split over tp)");
	return 0;
fail:
	tp_free(g);
	memset(b, 0, sizeof(*b));
	return rc;
}

static int cpu_init(struct backend *b, const struct model *m, const struct backend_limits *l, struct ts_err *e)
{
	return l->tp > 1 ? cpu_init_tp(b, m, l, e) : cpu_init1(b, m, l, e);
}

const struct backend_ops cpu_backend_ops = {
	.name = "cpu",
	.check = cpu_check,
	.kv_bytes_per_token = cpu_kv_bytes_per_token,
	.mem_available = cpu_mem_available,
	.init = cpu_init,
	.forward = cpu_forward,
	.free = cpu_free,
};
