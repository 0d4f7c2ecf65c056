/* fwd_arena: the GPU backend's one device arena, planned (see fwd_int.h). */
#include "fwd_int.h"

#include "gpu_attn.h"
#include "gpu_elem.h"
#include "gpu_gemm.h"

/* ------------------------------------------------------------ the arena plan */

/* Walks every device buffer in one fixed order. With p->g.arena == 0 it only
 * adds up the bytes (for sizing); afterwards it carves the arena. Weights
 * first, then workspace, then (n_kv_blocks + 1) KV blocks. */
uint64_t fwd_arena_carve(struct gpub *p, const struct model *m, const struct backend_limits *l, int n_sm)
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
