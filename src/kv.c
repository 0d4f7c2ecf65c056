/* kv: free stack, refcounts, block tables. */
#include "kv.h"

int kv_pool_init(struct kv_pool *p, int n_blocks, int block_tokens, int n_seqs, int max_seq_len,
		 struct ts_err *e)
{
	memset(p, 0, sizeof(*p));
	if (n_blocks < 1 || block_tokens < 1 || n_seqs < 1 || max_seq_len < 1)
		return ts_errf(e, E_INVAL, "kv pool: bad size (blocks %d, block_tokens %d, seqs %d, max_seq_len %d)",
			       n_blocks, block_tokens, n_seqs, max_seq_len);
	p->n_blocks = n_blocks;
	p->block_tokens = block_tokens;
	p->max_blocks_per_seq = (max_seq_len + block_tokens - 1) / block_tokens;
	p->n_seqs = n_seqs;
	p->free_stack = ts_alloc((size_t)n_blocks * sizeof(int32_t));
	p->ref = ts_alloc((size_t)n_blocks * sizeof(uint32_t));
	p->seq_blocks = ts_alloc((size_t)n_seqs * (size_t)p->max_blocks_per_seq * sizeof(int32_t));
	p->seq_n = ts_alloc((size_t)n_seqs * sizeof(int));
	if (!p->free_stack || !p->ref || !p->seq_blocks || !p->seq_n) {
		kv_pool_free(p);
		return ts_errf(e, E_NOMEM, "kv pool: out of memory for %d blocks", n_blocks);
	}
	/* Lowest ids on top, so a fresh pool hands out 0, 1, 2, ... */
	for (int i = 0; i < n_blocks; i++)
		p->free_stack[i] = n_blocks - 1 - i;
	p->n_free = n_blocks;
	return 0;
}

void kv_pool_free(struct kv_pool *p)
{
	ts_free(p->free_stack);
	ts_free(p->ref);
	ts_free(p->seq_blocks);
	ts_free(p->seq_n);
	memset(p, 0, sizeof(*p));
}

int32_t kv_block_alloc(struct kv_pool *p)
{
	if (p->n_free == 0)
		return -E_NOSPACE;
	int32_t b = p->free_stack[--p->n_free];
	p->ref[b] = 1;
	return b;
}

void kv_block_ref(struct kv_pool *p, int32_t b)
{
	if (NEVER(b < 0 || b >= p->n_blocks || p->ref[b] == 0))
		return;
	p->ref[b]++;
}

void kv_block_unref(struct kv_pool *p, int32_t b)
{
	if (NEVER(b < 0 || b >= p->n_blocks || p->ref[b] == 0))
		return;
	if (--p->ref[b] == 0)
		p->free_stack[p->n_free++] = b;
}

int kv_seq_need(const struct kv_pool *p, int s, int n_tokens)
{
	int want = (n_tokens + p->block_tokens - 1) / p->block_tokens;
	return want > p->seq_n[s] ? want - p->seq_n[s] : 0;
}

int kv_seq_reserve(struct kv_pool *p, int s, int n_tokens)
{
	int need = kv_seq_need(p, s, n_tokens);
	if (p->seq_n[s] + need > p->max_blocks_per_seq)
		return -E_RANGE;
	if (need > p->n_free)
		return -E_NOSPACE;
	int32_t *t = p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
	for (int i = 0; i < need; i++)
		t[p->seq_n[s]++] = kv_block_alloc(p);
	return 0;
}

void kv_seq_release(struct kv_pool *p, int s)
{
	int32_t *t = p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
	for (int i = p->seq_n[s] - 1; i >= 0; i--)
		kv_block_unref(p, t[i]);
	p->seq_n[s] = 0;
}
