/* kv: the empty stack, refcounts, the LRU of cached blocks, the prefix index
 * and the block tables. Reading order: init, the LRU and the index (private),
 * block ids, the prefix cache, sequences, the invariant check. */
#include "kv.h"

/* ------------------------------------------------------------ init */

int kv_pool_init(struct kv_pool *p, int n_blocks, int block_tokens, int n_seqs, int max_seq_len,
		 struct ts_err *e)
{
	memset(p, 0, sizeof(*p));
	if (n_blocks < 1 || block_tokens < 1 || n_seqs < 1 || max_seq_len < 1 || n_blocks > (1 << 29))
		return ts_errf(e, E_INVAL, "kv pool: bad size (blocks %d, block_tokens %d, seqs %d, max_seq_len %d)",
			       n_blocks, block_tokens, n_seqs, max_seq_len);
	p->n_blocks = n_blocks;
	p->block_tokens = block_tokens;
	p->max_blocks_per_seq = (max_seq_len + block_tokens - 1) / block_tokens;
	p->n_seqs = n_seqs;
	/* The index holds at most n_blocks entries: a table of at least twice
	 * that keeps linear probes short. */
	uint32_t cap = 2;
	while (cap < 2u * (uint32_t)n_blocks)
		cap *= 2;
	p->table_mask = cap - 1;
	size_t nb = (size_t)n_blocks;
	p->free_stack = ts_alloc(nb * sizeof(int32_t));
	p->ref = ts_alloc(nb * sizeof(uint32_t));
	p->seq_blocks = ts_alloc((size_t)n_seqs * (size_t)p->max_blocks_per_seq * sizeof(int32_t));
	p->seq_n = ts_alloc((size_t)n_seqs * sizeof(int));
	p->seq_n_pub = ts_alloc((size_t)n_seqs * sizeof(int));
	p->hash = ts_alloc(nb * sizeof(uint64_t));
	p->parent = ts_alloc(nb * sizeof(int32_t));
	p->parent_gen = ts_alloc(nb * sizeof(uint32_t));
	p->gen = ts_alloc(nb * sizeof(uint32_t));
	p->published = ts_alloc(nb);
	p->tokens = ts_alloc_resident(nb * (size_t)block_tokens * sizeof(int32_t));
	p->lru_prev = ts_alloc(nb * sizeof(int32_t));
	p->lru_next = ts_alloc(nb * sizeof(int32_t));
	p->table = ts_alloc((size_t)cap * sizeof(int32_t));
	if (!p->free_stack || !p->ref || !p->seq_blocks || !p->seq_n || !p->seq_n_pub || !p->hash || !p->parent ||
	    !p->parent_gen || !p->gen || !p->published || !p->tokens || !p->lru_prev || !p->lru_next || !p->table) {
		kv_pool_free(p);
		return ts_errf(e, E_NOMEM, "kv pool: out of memory for %d blocks of %d tokens", n_blocks,
			       block_tokens);
	}
	/* Lowest ids on top, so a fresh pool hands out 0, 1, 2, ... */
	for (int i = 0; i < n_blocks; i++)
		p->free_stack[i] = n_blocks - 1 - i;
	for (uint32_t i = 0; i < cap; i++)
		p->table[i] = -1;
	p->n_empty = p->n_free = n_blocks;
	p->lru_head = p->lru_tail = -1;
	p->hash_mask = ~0ull;
	return 0;
}

int kv_state_pool_init(struct kv_pool *p, int n_states, struct ts_err *e)
{
	p->state_free = ts_alloc((size_t)n_states * sizeof(int32_t));
	p->state_held = ts_alloc((size_t)n_states);
	if (!p->state_free || !p->state_held)
		return ts_errf(e, E_NOMEM, "kv: out of memory for %d state slots", n_states);
	for (int i = 0; i < n_states; i++)
		p->state_free[i] = n_states - 1 - i;
	memset(p->state_held, 0, (size_t)n_states);
	p->n_states = p->n_states_free = n_states;
	return 0;
}

int32_t kv_state_alloc(struct kv_pool *p)
{
	if (p->n_states_free == 0)
		return -E_NOSPACE;
	int32_t id = p->state_free[--p->n_states_free];
	assert(!p->state_held[id]);
	p->state_held[id] = 1;
	return id;
}

void kv_state_free(struct kv_pool *p, int32_t id)
{
	assert(id >= 0 && id < p->n_states && p->state_held[id]);
	p->state_held[id] = 0;
	p->state_free[p->n_states_free++] = id;
}

void kv_pool_free(struct kv_pool *p)
{
	ts_free(p->state_free);
	ts_free(p->state_held);
	ts_free(p->free_stack);
	ts_free(p->ref);
	ts_free(p->seq_blocks);
	ts_free(p->seq_n);
	ts_free(p->seq_n_pub);
	ts_free(p->hash);
	ts_free(p->parent);
	ts_free(p->parent_gen);
	ts_free(p->gen);
	ts_free(p->published);
	ts_free(p->tokens);
	ts_free(p->lru_prev);
	ts_free(p->lru_next);
	ts_free(p->table);
	memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------ the LRU of cached blocks */

/* Cached, unreferenced blocks in release order: the head is evicted first.
 * Releasing a sequence unrefs its blocks last to first, so a chain's tail is
 * evicted before its head, which other prefixes are likelier to share. */
static void lru_push(struct kv_pool *p, int32_t b)
{
	p->lru_prev[b] = p->lru_tail;
	p->lru_next[b] = -1;
	if (p->lru_tail >= 0)
		p->lru_next[p->lru_tail] = b;
	else
		p->lru_head = b;
	p->lru_tail = b;
	p->n_lru++;
	p->n_free++;
}

static void lru_remove(struct kv_pool *p, int32_t b)
{
	int32_t pv = p->lru_prev[b], nx = p->lru_next[b];
	if (pv >= 0)
		p->lru_next[pv] = nx;
	else
		p->lru_head = nx;
	if (nx >= 0)
		p->lru_prev[nx] = pv;
	else
		p->lru_tail = pv;
	p->n_lru--;
	p->n_free--;
}

/* ------------------------------------------------------------ the index */

/* Open addressing with linear probing over block ids; the key is the block's
 * stored hash. Equal keys may sit side by side (collisions, or a narrowed
 * hash_mask in tests): a lookup checks every entry of its run. */
static uint32_t home(const struct kv_pool *p, uint64_t h)
{
	/* The chain hash is already mixed; fold the high half in for narrowed masks. */
	return (uint32_t)(h ^ (h >> 32)) & p->table_mask;
}

/* The published block with hash h, these tokens and this predecessor, or -1.
 * The predecessor must be the same block in the same generation: then by
 * induction from the first block, the whole prefix matches token for token. */
static int32_t index_find(struct kv_pool *p, uint64_t h, const int32_t *tokens, int32_t par)
{
	size_t bytes = (size_t)p->block_tokens * sizeof(int32_t);
	for (uint32_t i = home(p, h);; i = (i + 1) & p->table_mask) {
		int32_t b = p->table[i];
		if (b < 0)
			return -1;
		if (p->hash[b] != h)
			continue;
		if (p->parent[b] == par && (par < 0 || p->parent_gen[b] == p->gen[par]) &&
		    !memcmp(p->tokens + (size_t)b * (size_t)p->block_tokens, tokens, bytes))
			return b;
		p->st.collisions++;
	}
}

static void index_insert(struct kv_pool *p, int32_t b)
{
	uint32_t i = home(p, p->hash[b]);
	while (p->table[i] >= 0)
		i = (i + 1) & p->table_mask;
	p->table[i] = b;
	p->published[b] = 1;
	p->n_cached++;
}

/* Backward-shift deletion: no tombstones, so probes never lengthen. */
static void index_remove(struct kv_pool *p, int32_t b)
{
	uint32_t i = home(p, p->hash[b]);
	while (p->table[i] != b) {
		if (NEVER(p->table[i] < 0))
			return;
		i = (i + 1) & p->table_mask;
	}
	for (uint32_t j = i;;) {
		j = (j + 1) & p->table_mask;
		if (p->table[j] < 0)
			break;
		uint32_t k = home(p, p->hash[p->table[j]]);
		/* The entry at j may move into the hole at i unless its home lies
		 * cyclically in (i, j]. */
		int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stays) {
			p->table[i] = p->table[j];
			i = j;
		}
	}
	p->table[i] = -1;
	p->published[b] = 0;
	p->n_cached--;
}

/* ------------------------------------------------------------ block ids */

int32_t kv_block_alloc(struct kv_pool *p)
{
	int32_t b;
	if (p->n_empty > 0) {
		b = p->free_stack[--p->n_empty];
		p->n_free--;
	} else if (p->lru_head >= 0) {
		b = p->lru_head;
		lru_remove(p, b);
		index_remove(p, b);
		p->st.evictions++;
	} else {
		return -E_NOSPACE;
	}
	/* A new generation: blocks published under the old one as this block's
	 * children no longer match. */
	p->gen[b]++;
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
	if (--p->ref[b] > 0)
		return;
	if (p->published[b]) {
		lru_push(p, b); /* keep the KV for a later prefix match */
	} else {
		p->free_stack[p->n_empty++] = b;
		p->n_free++;
	}
}

/* A reference on a published block, lifting it off the LRU if nobody held it. */
static void take_cached(struct kv_pool *p, int32_t b)
{
	if (p->ref[b] == 0)
		lru_remove(p, b);
	p->ref[b]++;
}

/* ------------------------------------------------------------ the prefix cache */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n)
{
	uint64_t h = mix64(parent ^ ((uint64_t)(uint32_t)n << 32));
	for (int i = 0; i < n; i++)
		h = mix64(h ^ (uint32_t)tokens[i]) + 0x9e3779b97f4a7c15ull;
	return h;
}

/* The hash a block takes after the block par (-1 = the first block). */
static uint64_t chain_hash(const struct kv_pool *p, int32_t par, const int32_t *tokens)
{
	return kv_block_hash(par < 0 ? KV_HASH_ROOT : p->hash[par], tokens, p->block_tokens) & p->hash_mask;
}

int kv_prefix_match(struct kv_pool *p, const int32_t *tokens, int n_tokens, int32_t *blocks_out,
		    int max_blocks)
{
	const int bt = p->block_tokens;
	int want = TS_MIN(n_tokens / bt, max_blocks), n = 0;
	if (p->prefix_off || want <= 0)
		return 0;
	for (int32_t par = -1; n < want; n++) {
		const int32_t *t = tokens + (size_t)n * (size_t)bt;
		int32_t b = index_find(p, chain_hash(p, par, t), t, par);
		if (b < 0)
			break;
		take_cached(p, b);
		blocks_out[n] = par = b;
	}
	p->st.hit_blocks += (uint64_t)n;
	p->st.miss_blocks += (uint64_t)(want - n);
	return n;
}

void kv_prefix_publish(struct kv_pool *p, int s, const int32_t *tokens, int n_full_tokens)
{
	const int bt = p->block_tokens;
	int32_t *t = p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
	int n = TS_MIN(n_full_tokens / bt, p->seq_n[s]);
	if (p->prefix_off)
		return;
	for (int i = p->seq_n_pub[s]; i < n; i++) {
		int32_t b = t[i], par = i > 0 ? t[i - 1] : -1;
		const int32_t *tk = tokens + (size_t)i * (size_t)bt;
		if (p->published[b])
			continue; /* came from the cache */
		/* Not published means nobody else could have found it. */
		if (NEVER(p->ref[b] != 1))
			return;
		uint64_t h = chain_hash(p, par, tk);
		int32_t dup = index_find(p, h, tk, par);
		if (dup >= 0) {
			/* Another sequence computed the same block first: share its
			 * copy (same tokens after the same chain: the same KV). */
			take_cached(p, dup);
			t[i] = dup;
			kv_block_unref(p, b);
			p->st.dedups++;
			continue;
		}
		p->hash[b] = h;
		p->parent[b] = par;
		p->parent_gen[b] = par >= 0 ? p->gen[par] : 0;
		memcpy(p->tokens + (size_t)b * (size_t)bt, tk, (size_t)bt * sizeof(int32_t));
		index_insert(p, b);
		p->st.published++;
	}
	if (n > p->seq_n_pub[s])
		p->seq_n_pub[s] = n;
}

/* ------------------------------------------------------------ sequences */

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

int kv_seq_prefix(struct kv_pool *p, int s, const int32_t *tokens, int n_tokens)
{
	if (NEVER(p->seq_n[s] != 0))
		return 0;
	int32_t *t = p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
	int n = kv_prefix_match(p, tokens, n_tokens, t, p->max_blocks_per_seq);
	p->seq_n[s] = p->seq_n_pub[s] = n;
	return n * p->block_tokens;
}

int kv_seq_truncate(struct kv_pool *p, int s, int n_tokens)
{
	const int bt = p->block_tokens;
	int32_t *t = p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
	int keep = (n_tokens + bt - 1) / bt;
	if (n_tokens % bt != 0 && keep <= p->seq_n[s]) {
		int32_t b = t[keep - 1];
		if (p->ref[b] != 1 || p->published[b]) { /* position n_tokens would write into it */
			keep--;
			n_tokens = keep * bt;
		}
	}
	while (p->seq_n[s] > keep)
		kv_block_unref(p, t[--p->seq_n[s]]);
	if (p->seq_n_pub[s] > p->seq_n[s])
		p->seq_n_pub[s] = p->seq_n[s];
	return TS_MIN(n_tokens, p->seq_n[s] * bt);
}

int kv_seq_writable(const struct kv_pool *p, int s, int pos)
{
	int i = pos / p->block_tokens;
	if (pos < 0 || i >= p->seq_n[s])
		return 0;
	int32_t b = kv_seq_table(p, s)[i];
	return p->ref[b] == 1 && !p->published[b];
}

void kv_seq_release(struct kv_pool *p, int s)
{
	int32_t *t = p->seq_blocks + (size_t)s * (size_t)p->max_blocks_per_seq;
	for (int i = p->seq_n[s] - 1; i >= 0; i--)
		kv_block_unref(p, t[i]);
	p->seq_n[s] = 0;
	p->seq_n_pub[s] = 0;
}

/* ------------------------------------------------------------ the invariant check */

int kv_pool_check(const struct kv_pool *p, struct ts_err *e)
{
	int n_lru = 0, n_pub = 0, n_held = 0, n_in_table = 0, n_sheld = 0;
	for (int i = 0; i < p->n_states; i++)
		n_sheld += p->state_held[i];
	if (n_sheld + p->n_states_free != p->n_states)
		return ts_errf(e, E_INTERNAL, "kv: %d state slots held + %d free != %d", n_sheld, p->n_states_free,
			       p->n_states);
	for (int b = 0; b < p->n_blocks; b++) {
		n_pub += p->published[b];
		n_held += p->ref[b] > 0;
	}
	for (int32_t b = p->lru_head; b >= 0 && n_lru <= p->n_blocks; b = p->lru_next[b]) {
		if (p->ref[b] != 0 || !p->published[b])
			return ts_errf(e, E_INTERNAL, "kv: block %d on the LRU has ref %u, published %d", b, p->ref[b],
				       p->published[b]);
		n_lru++;
	}
	for (int i = 0; i < p->n_empty; i++) {
		int32_t b = p->free_stack[i];
		if (p->ref[b] != 0 || p->published[b])
			return ts_errf(e, E_INTERNAL, "kv: empty block %d has ref %u, published %d", b, p->ref[b],
				       p->published[b]);
	}
	for (uint32_t i = 0; i <= p->table_mask; i++)
		n_in_table += p->table[i] >= 0;
	if (n_lru != p->n_lru || p->n_free != p->n_empty + p->n_lru || n_pub != p->n_cached ||
	    n_in_table != p->n_cached || p->n_empty + p->n_lru + n_held != p->n_blocks)
		return ts_errf(e, E_INTERNAL,
			       "kv: accounting broken: free %d, empty %d, lru %d (walked %d), held %d, cached %d "
			       "(published %d, in table %d), blocks %d",
			       p->n_free, p->n_empty, p->n_lru, n_lru, n_held, p->n_cached, n_pub, n_in_table, p->n_blocks);
	/* Every table entry holds a reference (callers may hold more). */
	uint64_t refs = 0, tab = 0;
	for (int b = 0; b < p->n_blocks; b++)
		refs += p->ref[b];
	for (int s = 0; s < p->n_seqs; s++)
		tab += (uint64_t)p->seq_n[s];
	if (refs < tab)
		return ts_errf(e, E_INTERNAL, "kv: %llu references but %llu table entries", (unsigned long long)refs,
			       (unsigned long long)tab);
	return 0;
}
