/* cpu: the reference backend. fp32 math over the checkpoint's own weights
 * (read in place from the mapping, converted a row at a time), threaded with
 * a small pthread pool. It is the oracle for every GPU kernel, so it is
 * written to be obviously right and batch-invariant: every output element is
 * a dot product summed in one fixed order, whatever else is in the batch, so
 * the same sequence gives bit-identical logits alone or batched. It does not
 * aim for speed.
 *
 * The math follows Hugging Face transformers' float32 path step by step
 * (RMSNorm, rotate-half RoPE with float32 angles, softmax in float32), so that
 * the tests can hold it to 1e-4 relative error against HF's logits. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

#include "backend.h"
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
	if (!p->th || !args)
		return -E_NOMEM;
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
	float *k;        /* (max_tokens, kv_dim) */
	float *v;        /* (max_tokens, kv_dim) */
	float *att;      /* (max_tokens, q_dim) attention output */
	float *hg;       /* (max_tokens, ffn_dim) gate, then silu(gate) * up */
	float *hu;       /* (max_tokens, ffn_dim) up */
	float *xf;       /* (max_seqs, dim) final-normed rows for the LM head */
	float *rowbuf;   /* (threads, max(dim, q_dim, ffn_dim)) a weight row in f32 */
	float *scores;   /* (threads, max_seq_len) attention scores */
	float *inv_freq; /* (head_dim / 2) RoPE frequencies */
	float *kc, *vc;  /* (n_layers, n_blocks * block_tokens, kv_dim) KV storage */
	size_t layer_stride; /* floats per layer in kc / vc */
	int row_max;
	int max_seq_len;
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


/* HF LlamaRMSNorm in float32: x * rsqrt(mean(x^2) + eps) * w. */
static void rmsnorm(float *out, const float *x, const struct model_w *w, int n, float eps)
{
	float ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float r = 1.0f / fm_sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		out[i] = model_w_at(w, i) * (x[i] * r);
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

/* ------------------------------------------------------------ attention */

struct at {
	struct cpu *c;
	const struct model *m;
	const struct batch *bt;
	int block_tokens;
	float *kc, *vc;        /* this layer's KV storage */
};

/* One (token, head) pair per work item: softmax(q k^T * scale) v over the
 * sequence's positions [lo, pos], lo > 0 only under a sliding window. */
static void attn_work(void *ctx, int tid, int nth)
{
	struct at *a = ctx;
	struct cpu *c = a->c;
	const struct model_dims *d = &a->m->d;
	const int hd = d->head_dim, group = d->n_heads / d->n_kv_heads, bsz = a->block_tokens;
	const float scale = 1.0f / fm_sqrtf((float)hd);
	float *sc = c->scores + (size_t)tid * (size_t)c->max_seq_len;
	int lo, hi;

	share(a->bt->n_tokens * d->n_heads, tid, nth, &lo, &hi);
	for (int w = lo; w < hi; w++) {
		int t = w / d->n_heads, h = w % d->n_heads, kvh = h / group;
		int p = a->bt->pos[t];
		int first = d->sliding_window ? TS_MAX(0, p - d->sliding_window + 1) : 0;
		const int32_t *blocks = a->bt->seqs[a->bt->seq[t]].blocks;
		const float *q = c->q + (size_t)t * d->q_dim + (size_t)h * hd;
		float mx = -3.0e38f, sum = 0;

		for (int j = first; j <= p; j++) {
			size_t slot = ((size_t)blocks[j / bsz] * (size_t)bsz + (size_t)(j % bsz)) * (size_t)d->kv_dim;
			float s = dot(q, a->kc + slot + (size_t)kvh * hd, hd) * scale;
			sc[j - first] = s;
			mx = s > mx ? s : mx;
		}
		for (int j = 0; j <= p - first; j++) {
			sc[j] = fm_expf(sc[j] - mx);
			sum += sc[j];
		}
		float *out = c->att + (size_t)t * d->q_dim + (size_t)h * hd;
		for (int i = 0; i < hd; i++)
			out[i] = 0;
		for (int j = first; j <= p; j++) {
			size_t slot = ((size_t)blocks[j / bsz] * (size_t)bsz + (size_t)(j % bsz)) * (size_t)d->kv_dim;
			const float *v = a->vc + slot + (size_t)kvh * hd;
			float pj = sc[j - first] / sum;
			for (int i = 0; i < hd; i++)
				out[i] += pj * v[i];
		}
	}
}

static void attention(struct cpu *c, const struct model *m, const struct batch *bt, int block_tokens, int layer)
{
	struct at a = {c, m, bt, block_tokens, c->kc + (size_t)layer * c->layer_stride,
		       c->vc + (size_t)layer * c->layer_stride};
	pool_run(&c->pool, attn_work, &a);
}

/* ------------------------------------------------------------ forward */

static int cpu_forward(struct backend *b, const struct batch *bt, float *logits)
{
	struct cpu *c = b->impl;
	const struct model *m = b->m;
	const struct model_dims *d = &m->d;
	const int T = bt->n_tokens, hd = d->head_dim, bsz = b->lim.block_tokens;

	if (T < 1 || T > c->max_tokens || bt->n_logits > b->lim.max_seqs || bt->n_seqs > b->lim.max_seqs)
		return -E_INVAL;
	for (int t = 0; t < T; t++) {
		int s = bt->seq[t], p = bt->pos[t];
		if (bt->token[t] < 0 || bt->token[t] >= d->vocab || s < 0 || s >= bt->n_seqs || p < 0 ||
		    p >= b->lim.max_seq_len || p / bsz >= bt->seqs[s].n_blocks)
			return -E_INVAL;
	}

	/* x = embed[token] */
	for (int t = 0; t < T; t++) {
		const float *r = wrow(&m->embed, bt->token[t], c->rowbuf);
		memcpy(c->x + (size_t)t * d->dim, r, (size_t)d->dim * sizeof(float));
	}

	for (int l = 0; l < d->n_layers; l++) {
		const struct model_layer *L = &m->layers[l];
		float *kc = c->kc + (size_t)l * c->layer_stride, *vc = c->vc + (size_t)l * c->layer_stride;

		for (int t = 0; t < T; t++) /* xb = rmsnorm(x) */
			rmsnorm(c->xb + (size_t)t * d->dim, c->x + (size_t)t * d->dim, &L->attn_norm, d->dim,
				d->rms_eps);
		matmul(c, c->q, c->xb, &L->wq, &L->bq, T, 0); /* q, k, v projections */
		matmul(c, c->k, c->xb, &L->wk, &L->bk, T, 0);
		matmul(c, c->v, c->xb, &L->wv, &L->bv, T, 0);
		for (int t = 0; t < T; t++) {
			float *q = c->q + (size_t)t * d->q_dim, *k = c->k + (size_t)t * d->kv_dim;
			if (L->q_norm.data) { /* Qwen3: per-head RMSNorm before RoPE */
				for (int h = 0; h < d->n_heads; h++)
					rmsnorm(q + h * hd, q + h * hd, &L->q_norm, hd, d->rms_eps);
				for (int h = 0; h < d->n_kv_heads; h++)
					rmsnorm(k + h * hd, k + h * hd, &L->k_norm, hd, d->rms_eps);
			}
			/* RoPE, rotate-half pairing (i, i + hd/2), float32 angles as HF */
			for (int i = 0; i < hd / 2; i++) {
				float cs, sn;
				fm_sincosf((float)bt->pos[t] * c->inv_freq[i], &sn, &cs);
				for (int h = 0; h < d->n_heads; h++) {
					float *v = q + h * hd, x1 = v[i], x2 = v[i + hd / 2];
					v[i] = x1 * cs - x2 * sn;
					v[i + hd / 2] = x2 * cs + x1 * sn;
				}
				for (int h = 0; h < d->n_kv_heads; h++) {
					float *v = k + h * hd, x1 = v[i], x2 = v[i + hd / 2];
					v[i] = x1 * cs - x2 * sn;
					v[i + hd / 2] = x2 * cs + x1 * sn;
				}
			}
			/* write k, v into the sequence's block at pos */
			const struct batch_seq *s = &bt->seqs[bt->seq[t]];
			int p = bt->pos[t];
			size_t slot = ((size_t)s->blocks[p / bsz] * (size_t)bsz + (size_t)(p % bsz)) * (size_t)d->kv_dim;
			memcpy(kc + slot, k, (size_t)d->kv_dim * sizeof(float));
			memcpy(vc + slot, c->v + (size_t)t * d->kv_dim, (size_t)d->kv_dim * sizeof(float));
		}
		attention(c, m, bt, bsz, l);
		matmul(c, c->x, c->att, &L->wo, &L->bo, T, 1); /* x += o_proj(att) */

		for (int t = 0; t < T; t++) /* xb = rmsnorm(x) */
			rmsnorm(c->xb + (size_t)t * d->dim, c->x + (size_t)t * d->dim, &L->ffn_norm, d->dim,
				d->rms_eps);
		matmul(c, c->hg, c->xb, &L->w_gate, NULL, T, 0);
		matmul(c, c->hu, c->xb, &L->w_up, NULL, T, 0);
		for (size_t i = 0; i < (size_t)T * (size_t)d->ffn_dim; i++) { /* silu(gate) * up */
			float g = c->hg[i];
			c->hg[i] = g / (1.0f + fm_expf(-g)) * c->hu[i];
		}
		matmul(c, c->x, c->hg, &L->w_down, NULL, T, 1); /* x += down_proj(h) */
	}

	for (int i = 0; i < bt->n_logits; i++) {
		int t = bt->logit_rows[i];
		if (t < 0 || t >= T)
			return -E_INVAL;
		rmsnorm(c->xf + (size_t)i * d->dim, c->x + (size_t)t * d->dim, &m->final_norm, d->dim, d->rms_eps);
	}
	if (bt->n_logits)
		matmul(c, logits, c->xf, &m->lm_head, NULL, bt->n_logits, 0);
	return 0;
}

/* ------------------------------------------------------------ init */

static uint64_t cpu_kv_bytes_per_token(const struct model *m)
{
	return (uint64_t)m->d.n_layers * 2u * (uint64_t)m->d.kv_dim * sizeof(float);
}

static int threads_for(const struct backend_limits *l)
{
	long n = l->threads > 0 ? l->threads : sysconf(_SC_NPROCESSORS_ONLN);
	return (int)TS_MAX(1, TS_MIN(n, 1024));
}

static uint64_t workspace_floats(const struct model *m, const struct backend_limits *l, int *row_max)
{
	const struct model_dims *d = &m->d;
	uint64_t T = (uint64_t)l->max_batch_tokens;
	int rm = TS_MAX(TS_MAX(d->dim, d->q_dim), d->ffn_dim);
	*row_max = rm;
	return T * (2u * (uint64_t)d->dim + 2u * (uint64_t)d->q_dim + 2u * (uint64_t)d->kv_dim +
		    2u * (uint64_t)d->ffn_dim) +
	       (uint64_t)l->max_seqs * (uint64_t)d->dim +
	       (uint64_t)threads_for(l) * ((uint64_t)rm + (uint64_t)l->max_seq_len) + (uint64_t)d->head_dim;
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
	uint64_t avail = (uint64_t)kb * 1024u, used = m->weight_bytes + workspace_floats(m, l, &rm) * sizeof(float);
	*bytes = avail > used ? avail - used : 0;
	return 0;
}

static void cpu_free(struct backend *b)
{
	struct cpu *c = b->impl;
	if (!c)
		return;
	pool_stop(&c->pool);
	ts_free(c->x);
	ts_free(c->kc);
	ts_free(c->vc);
	ts_free(c);
	b->impl = NULL;
}

static int cpu_init(struct backend *b, const struct model *m, const struct backend_limits *l, struct ts_err *e)
{
	const struct model_dims *d = &m->d;
	struct cpu *c = ts_alloc(sizeof(*c));
	int rm, r;

	memset(b, 0, sizeof(*b));
	b->ops = &cpu_backend_ops;
	b->m = m;
	b->lim = *l;
	b->lim.threads = threads_for(l);
	if (!c)
		return ts_errf(e, E_NOMEM, "cpu backend: out of memory");
	b->impl = c;
	c->max_tokens = l->max_batch_tokens;
	c->max_seq_len = l->max_seq_len;
	uint64_t nf = workspace_floats(m, l, &rm);
	c->row_max = rm;
	c->layer_stride = (size_t)l->n_blocks * (size_t)l->block_tokens * (size_t)d->kv_dim;
	c->x = ts_alloc(nf * sizeof(float));
	c->kc = ts_alloc(c->layer_stride * (size_t)d->n_layers * sizeof(float));
	c->vc = ts_alloc(c->layer_stride * (size_t)d->n_layers * sizeof(float));
	if (!c->x || !c->kc || !c->vc) {
		cpu_free(b);
		return ts_errf(e, E_NOMEM, "cpu backend: cannot allocate %.2f GB of workspace and KV; lower [engine] kv_tokens or max_batch_tokens",
			       (double)(nf * 4 + 2 * c->layer_stride * (size_t)d->n_layers * 4) / 1e9);
	}
	/* carve the workspace */
	size_t T = (size_t)l->max_batch_tokens;
	float *p = c->x + T * (size_t)d->dim;
	c->xb = p, p += T * (size_t)d->dim;
	c->q = p, p += T * (size_t)d->q_dim;
	c->att = p, p += T * (size_t)d->q_dim;
	c->k = p, p += T * (size_t)d->kv_dim;
	c->v = p, p += T * (size_t)d->kv_dim;
	c->hg = p, p += T * (size_t)d->ffn_dim;
	c->hu = p, p += T * (size_t)d->ffn_dim;
	c->xf = p, p += (size_t)l->max_seqs * (size_t)d->dim;
	c->rowbuf = p, p += (size_t)b->lim.threads * (size_t)rm;
	c->scores = p, p += (size_t)b->lim.threads * (size_t)l->max_seq_len;
	c->inv_freq = p;
	model_rope_freqs(d, c->inv_freq);
	if ((r = pool_start(&c->pool, b->lim.threads)) < 0) {
		cpu_free(b);
		return ts_errf(e, -r, "cpu backend: cannot start %d threads", l->threads);
	}
	b->weight_bytes = m->weight_bytes;
	b->workspace_bytes = nf * sizeof(float);
	b->kv_bytes = 2 * c->layer_stride * (size_t)d->n_layers * sizeof(float);
	return 0;
}

const struct backend_ops cpu_backend_ops = {
	.name = "cpu",
	.kv_bytes_per_token = cpu_kv_bytes_per_token,
	.mem_available = cpu_mem_available,
	.init = cpu_init,
	.forward = cpu_forward,
	.free = cpu_free,
};
