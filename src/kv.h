/* kv: the paged KV pool's bookkeeping and its prefix cache.
 *
 * Owns: which blocks are free, each block's reference count, per-sequence
 * block tables, and the prefix index. A block holds kv_block_tokens
 * consecutive positions of one sequence for every layer; the backend owns the
 * storage (one allocation at boot, indexed by block id), this module owns the
 * ids.
 *
 * Prefix cache. Once a sequence's block is full and its KV computed, it can be
 * published: it gets a 64-bit hash chained from the previous block's hash and
 * its own token ids, a copy of those ids, and an entry in an open-addressing
 * table (hash -> block id). A later sequence whose tokens start the same way
 * finds its leading full blocks there and takes a reference instead of
 * computing them again. A hit is confirmed by comparing the stored token ids
 * and the identity (id and generation) of the previous block in the chain, so
 * a hash collision can cost a miss but never wrong KV. A published block whose
 * last reference goes stays cached on an LRU list; kv_block_alloc takes a
 * truly empty block first, then evicts the least recently released cached
 * block.
 *
 * Invariants (asserted):
 *  - Every block is in exactly one place: the empty stack (ref 0, not
 *    published), the LRU list (ref 0, published), or held (ref >= 1).
 *    n_free == n_empty + n_lru: what kv_block_alloc can hand out.
 *  - Only full blocks whose KV is computed are published, and a published
 *    block is never written again. Only published blocks are ever shared, so
 *    a sequence writes only into blocks it owns alone: ref 1, not published
 *    (kv_seq_writable). Its last, partial block is always such a block.
 *  - With no sequence holding blocks, n_free == n_blocks.
 *
 * Recurrent states (models with LINEAR layers): a second, flat pool of slot
 * ids beside the blocks (kv_state_*), one id per sequence that holds a state;
 * the backend keeps the states themselves, one per id. sched decides who
 * holds one (sched.h); kv_pool_check counts them.
 *
 * Does not: allocate after boot. Every table is sized at kv_pool_init (and
 * kv_state_pool_init, at boot too).
 * Threads: the engine thread only.
 */
#ifndef TS_KV_H
#define TS_KV_H

#include "base.h"

/* Prefix-cache counters (since init), for STATS. */
struct kv_stats {
	uint64_t hit_blocks;    /* full blocks found in the cache by kv_prefix_match */
	uint64_t miss_blocks;   /* full blocks looked up and not found (computed instead) */
	uint64_t evictions;     /* cached blocks evicted to hand out a block */
	uint64_t published;     /* blocks entered in the index */
	uint64_t dedups;        /* published blocks replaced by an identical cached one */
	uint64_t collisions;    /* lookups whose hash matched a block of other tokens or chain */
};

struct kv_pool {
	int n_blocks;
	int block_tokens;
	int max_blocks_per_seq;
	int n_free;           /* blocks kv_block_alloc can hand out: n_empty + n_lru */
	int n_empty;          /* blocks on the empty stack (no cached content) */
	int n_lru;            /* cached blocks nobody references: evictable */
	int n_cached;         /* blocks in the prefix index (referenced or not) */
	int32_t *free_stack;  /* (n_blocks) empty ids; top at n_empty - 1 */
	uint32_t *ref;        /* (n_blocks) references; 0 = empty or cached unreferenced */
	int n_seqs;           /* sequence slots */
	int32_t *seq_blocks;  /* (n_seqs, max_blocks_per_seq) block tables */
	int *seq_n;           /* (n_seqs) blocks held by each slot */
	int *seq_n_pub;       /* (n_seqs) leading blocks of each slot already published */
	/* prefix index */
	uint64_t *hash;       /* (n_blocks) chained hash of a published block */
	int32_t *parent;      /* (n_blocks) previous block of its chain when published; -1 first */
	uint32_t *parent_gen; /* (n_blocks) that block's gen when this one was published */
	uint32_t *gen;        /* (n_blocks) bumped each time the block is handed out */
	uint8_t *published;   /* (n_blocks) 1 = in the index */
	int32_t *tokens;      /* (n_blocks, block_tokens) token ids of published blocks */
	int32_t *lru_prev;    /* (n_blocks) LRU links; head = least recently released */
	int32_t *lru_next;    /* (n_blocks) */
	int32_t lru_head, lru_tail;
	int32_t *table;       /* (table_mask + 1) block ids, -1 = empty; linear probing */
	uint32_t table_mask;
	int prefix_off;       /* 1 = match and publish do nothing (cache disabled) */
	uint64_t hash_mask;   /* ~0; a test narrows it to force hash collisions */
	struct kv_stats st;
	/* The recurrent-state pool (models with LINEAR layers): slot ids only;
	 * the backend holds the states, one per id, taken at boot. */
	int n_states;         /* 0 = no pool */
	int n_states_free;
	int32_t *state_free;  /* (n_states) free ids; top at n_states_free - 1 */
	uint8_t *state_held;  /* (n_states) */
};

/* n_blocks blocks of block_tokens positions; n_seqs table slots, each able to
 * hold max_seq_len positions. The prefix cache is on. */
int kv_pool_init(struct kv_pool *p, int n_blocks, int block_tokens, int n_seqs, int max_seq_len,
		 struct ts_err *e);
void kv_pool_free(struct kv_pool *p);

/* Checks the accounting invariants above over every block (O(n_blocks), for
 * tests and debugging): 0, or -E_INTERNAL with e saying which one broke. */
int kv_pool_check(const struct kv_pool *p, struct ts_err *e);

/* Block ids. kv_block_alloc returns an id with refcount 1 (an empty block, or
 * else the least recently released cached one, evicted), or -E_NOSPACE.
 * kv_block_ref takes another reference on a held block. */
int32_t kv_block_alloc(struct kv_pool *p);
void kv_block_ref(struct kv_pool *p, int32_t b);
void kv_block_unref(struct kv_pool *p, int32_t b);

/* ------------------------------------------------------------ recurrent states */

/* n_states state slots beside the blocks (kv_pool_free releases them). */
int kv_state_pool_init(struct kv_pool *p, int n_states, struct ts_err *e);

/* A free state slot id (the lowest first on a fresh pool), or -E_NOSPACE.
 * Its contents are whatever the last holder left: the backend zeroes a
 * sequence's state when it starts at position 0. */
int32_t kv_state_alloc(struct kv_pool *p);
void kv_state_free(struct kv_pool *p, int32_t id);

/* ------------------------------------------------------------ prefix cache */

#define KV_HASH_ROOT 0x6a09e667f3bcc908ull /* the chain's hash before the first block */

/* The chained hash of one full block: parent is the previous block's hash
 * (KV_HASH_ROOT for the first), tokens its n token ids. */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n);

/* How many leading full blocks of tokens[0, n_tokens) are cached, at most
 * max_blocks; each is referenced (the caller owns one reference per block)
 * and written to blocks_out. */
int kv_prefix_match(struct kv_pool *p, const int32_t *tokens, int n_tokens, int32_t *blocks_out,
		    int max_blocks);

/* Publishes slot s's full blocks covering tokens[0, n_full_tokens) whose KV is
 * computed (tokens: the slot's ids from position 0; blocks already published
 * are skipped, so calling it after every step costs only the new blocks). A
 * block identical to one already cached (same tokens, same chain) is replaced
 * in the slot's table by the cached one and returned, so memory holds one
 * copy. */
void kv_prefix_publish(struct kv_pool *p, int s, const int32_t *tokens, int n_full_tokens);

/* ------------------------------------------------------------ sequences */

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

/* Fills the empty slot s with the cached leading full blocks of
 * tokens[0, n_tokens) (kv_prefix_match into its table). Returns the positions
 * whose KV it now holds: a multiple of block_tokens, <= n_tokens. */
int kv_seq_prefix(struct kv_pool *p, int s, const int32_t *tokens, int n_tokens);

/* Shrinks slot s to the KV of positions [0, n_tokens) and makes position
 * n_tokens writable: blocks past it are released, and so is the block holding
 * it when that block is shared or published (its KV would be overwritten).
 * Returns the positions kept: n_tokens, or n_tokens rounded down to a block. */
int kv_seq_truncate(struct kv_pool *p, int s, int n_tokens);

/* 1 when slot s may write position pos: the block holding it is held by s
 * alone and not published. */
int kv_seq_writable(const struct kv_pool *p, int s, int pos);

/* Returns every block of slot s (unref) and empties it. Published blocks stay
 * cached until evicted. */
void kv_seq_release(struct kv_pool *p, int s);

#endif
