/* fwd_upload: the weights into the arena as bf16 (see fwd_int.h). */
#include "fwd_int.h"

#include "gpu_gemm.h"
#include "log.h"

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

int fwd_upload(struct gpub *p, const struct model *m, struct ts_err *e)
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
