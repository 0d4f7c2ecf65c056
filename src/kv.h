/* kv: the paged KV pool's bookkeeping.
 *
 * Owns: which blocks are free, each block's reference count, and per-sequence
 * block tables. A block holds kv_block_tokens consecutive positions of one
 * sequence for every layer; the backend owns the storage (one allocation at
 * boot, indexed by block id), this module owns the ids. Refcounts let several
 * sequences share the blocks of a common prefix (the prefix index comes with
 * the serving issue).
 * Does not: allocate after boot. Every table is sized at kv_pool_init.
 * Threads: the engine thread only.
 */
#ifndef TS_KV_H
#define TS_KV_H

#include "base.h"

struct kv_pool {
	int n_blocks;
	int block_tokens;
	int max_blocks_per_seq;
	int n_free;
	int32_t *free_stack;  /* (n_blocks) free ids; top at n_free - 1 */
	uint32_t *ref;        /* (n_blocks) 0 = free */
	int n_seqs;           /* sequence slots */
	int32_t *seq_blocks;  /* (n_seqs, max_blocks_per_seq) block tables */
	int *seq_n;           /* (n_seqs) blocks held by each slot */
};

/* n_blocks blocks of block_tokens positions; n_seqs table slots, each able to
 * hold max_seq_len positions. */
int kv_pool_init(struct kv_pool *p, int n_blocks, int block_tokens, int n_seqs, int max_seq_len,
		 struct ts_err *e);
void kv_pool_free(struct kv_pool *p);

/* Block ids. kv_block_alloc returns an id with refcount 1, or -E_NOSPACE. */
int32_t kv_block_alloc(struct kv_pool *p);
void kv_block_ref(struct kv_pool *p, int32_t b);
void kv_block_unref(struct kv_pool *p, int32_t b);

/* Sequence slot s: its block table (valid for kv_seq_blocks(p, s) entries). */
static inline const int32_t *kv_seq_table(const struct kv_pool *p, int s)
{
	return p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
}
static inline int kv_seq_blocks(const struct kv_pool *p, int s)
{
	return p->seq_n[s];
}

/* Blocks slot s needs, beyond those it holds, to store n_tokens positions. */
int kv_seq_need(const struct kv_pool *p, int s, int n_tokens);

/* Grows slot s so that positions [0, n_tokens) have blocks: all or nothing.
 * -E_NOSPACE when the pool lacks blocks, -E_RANGE past max_seq_len. */
int kv_seq_reserve(struct kv_pool *p, int s, int n_tokens);

/* Returns every block of slot s (unref) and empties it. */
void kv_seq_release(struct kv_pool *p, int s);

#endif
