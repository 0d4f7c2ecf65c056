/* t_kv: the KV pool's bookkeeping and prefix cache, as a unit: the hash
 * chain, match and publish, refcounts, LRU eviction order, deduplication,
 * truncation, collision safety (forced collisions, corrupted stored tokens, a
 * reused parent block), no allocation after init, and a randomized run
 * checked against a shadow model of what each block's KV was computed from. */
#include "t.h"

#include "kv.h"

static struct kv_pool P;

static void check_pool(const char *when)
{
	struct ts_err e = {0};
	int r = kv_pool_check(&P, &e);
	T_CHECK(r == 0, "%s: %s", when, e.msg);
}

/* Slot s holds n_tokens positions of toks, all computed: publish them. */
static void compute(int s, const int32_t *toks, int n_tokens)
{
	T_CHECK(kv_seq_reserve(&P, s, n_tokens) == 0, "reserve %d tokens for slot %d", n_tokens, s);
	kv_prefix_publish(&P, s, toks, n_tokens);
}

static void t_hash(void)
{
	int32_t a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 5};
	uint64_t h = kv_block_hash(KV_HASH_ROOT, a, 4);
	T_CHECK(h == kv_block_hash(KV_HASH_ROOT, a, 4), "hash not deterministic");
	T_CHECK(h != kv_block_hash(KV_HASH_ROOT, b, 4), "last token does not change the hash");
	T_CHECK(h != kv_block_hash(KV_HASH_ROOT + 1, a, 4), "parent does not change the hash");
	T_CHECK(h != kv_block_hash(KV_HASH_ROOT, a, 3), "length does not change the hash");
	/* a chain: the second block's hash depends on the first block's tokens */
	T_CHECK(kv_block_hash(h, a, 4) != kv_block_hash(kv_block_hash(KV_HASH_ROOT, b, 4), a, 4),
		"the chain forgets its first block");
}

static void t_match_publish(void)
{
	struct ts_err e = {0};
	int32_t T[12] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, U[12], out[4];
	T_CHECK(kv_pool_init(&P, 8, 4, 3, 32, &e) == 0, "init: %s", e.msg);
	T_CHECK(P.n_free == 8 && P.n_empty == 8 && P.n_lru == 0 && P.n_cached == 0, "fresh pool accounting");
	uint64_t a0 = ts_alloc_count();

	/* slot 0: 10 tokens in 3 blocks; the 2 full ones are published */
	compute(0, T, 10);
	T_CHECK(P.n_cached == 2 && P.st.published == 2, "published %d blocks, want 2", P.n_cached);
	T_CHECK(P.seq_n_pub[0] == 2, "slot 0 published %d", P.seq_n_pub[0]);
	kv_prefix_publish(&P, 0, T, 10); /* again: nothing new */
	T_CHECK(P.st.published == 2, "republishing published again");
	const int32_t *t0 = kv_seq_table(&P, 0);

	/* the same tokens match both full blocks, and take references */
	T_CHECK(kv_prefix_match(&P, T, 10, out, 4) == 2, "match of the same tokens");
	T_CHECK(out[0] == t0[0] && out[1] == t0[1], "match returned other blocks");
	T_CHECK(P.ref[out[0]] == 2 && P.ref[out[1]] == 2, "match did not reference");
	kv_block_unref(&P, out[0]);
	kv_block_unref(&P, out[1]);
	T_CHECK(P.st.hit_blocks == 2 && P.st.miss_blocks == 0, "counters %llu/%llu",
		(unsigned long long)P.st.hit_blocks, (unsigned long long)P.st.miss_blocks);
	/* max_blocks and short inputs */
	T_CHECK(kv_prefix_match(&P, T, 10, out, 1) == 1, "max_blocks ignored");
	kv_block_unref(&P, out[0]);
	T_CHECK(kv_prefix_match(&P, T, 7, out, 4) == 1, "a partial block matched");
	kv_block_unref(&P, out[0]);
	/* a different second block: one hit; a different first block: none */
	memcpy(U, T, sizeof(U));
	U[6] = 99;
	T_CHECK(kv_prefix_match(&P, U, 10, out, 4) == 1, "second block differs: want 1 hit");
	kv_block_unref(&P, out[0]);
	U[0] = 99;
	T_CHECK(kv_prefix_match(&P, U, 10, out, 4) == 0, "first block differs: want no hit");
	/* the second block's tokens after another first block: the chain refuses */
	memcpy(U, T + 4, 4 * sizeof(int32_t));
	memcpy(U + 4, T + 4, 4 * sizeof(int32_t));
	T_CHECK(kv_prefix_match(&P, U, 8, out, 4) == 0, "block matched out of its chain");

	/* slot 1 takes the cached prefix: shared blocks are not writable */
	T_CHECK(kv_seq_prefix(&P, 1, T, 9) == 8, "kv_seq_prefix");
	T_CHECK(!kv_seq_writable(&P, 1, 7), "a shared block is writable");
	T_CHECK(!kv_seq_writable(&P, 1, 8), "a missing block is writable");
	T_CHECK(kv_seq_reserve(&P, 1, 10) == 0, "reserve after prefix");
	T_CHECK(kv_seq_writable(&P, 1, 8) && kv_seq_writable(&P, 1, 9), "its own block is not writable");
	T_CHECK(!kv_seq_writable(&P, 0, 3), "slot 0's published block is writable");
	T_CHECK(kv_seq_writable(&P, 0, 8), "slot 0's partial block is not writable");
	check_pool("two slots sharing");

	/* release both: the published blocks stay cached, the rest are empty */
	kv_seq_release(&P, 0);
	kv_seq_release(&P, 1);
	T_CHECK(P.n_lru == 2 && P.n_empty == 6 && P.n_free == 8, "after release: lru %d empty %d free %d", P.n_lru,
		P.n_empty, P.n_free);
	T_CHECK(P.n_empty + P.n_lru == P.n_blocks, "blocks leaked");
	check_pool("released");
	/* a match brings them back from the LRU */
	T_CHECK(kv_prefix_match(&P, T, 10, out, 4) == 2, "match from the LRU");
	T_CHECK(P.n_lru == 0 && P.n_free == 6, "LRU blocks not taken: lru %d free %d", P.n_lru, P.n_free);
	kv_block_unref(&P, out[1]);
	kv_block_unref(&P, out[0]);
	check_pool("rematched");
	T_CHECK(ts_alloc_count() == a0, "the pool allocated after init");
	kv_pool_free(&P);
}

static void t_lru(void)
{
	struct ts_err e = {0};
	int32_t A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, C[4] = {9, 9, 9, 9}, out[2];
	T_CHECK(kv_pool_init(&P, 4, 2, 2, 8, &e) == 0, "init: %s", e.msg);
	compute(0, A, 4); /* blocks 0, 1 */
	kv_seq_release(&P, 0); /* LRU: 1, 0 (a chain's tail goes first) */
	compute(0, B, 4); /* blocks 2, 3 */
	kv_seq_release(&P, 0); /* LRU: 1, 0, 3, 2 */
	T_CHECK(P.n_lru == 4 && P.n_empty == 0 && P.n_free == 4, "all cached");
	/* touch A: its blocks become the most recent */
	T_CHECK(kv_prefix_match(&P, A, 4, out, 2) == 2, "A cached");
	kv_block_unref(&P, out[1]);
	kv_block_unref(&P, out[0]); /* LRU: 3, 2, 1, 0 */
	int32_t b = kv_block_alloc(&P);
	T_CHECK(b == 3, "evicted %d first, want 3 (B's tail)", b);
	T_CHECK(P.st.evictions == 1 && P.n_cached == 3, "eviction counters");
	T_CHECK(kv_prefix_match(&P, B, 4, out, 2) == 1, "B keeps its first block");
	kv_block_unref(&P, out[0]); /* LRU: 1, 0, 2 */
	int32_t c = kv_block_alloc(&P);
	T_CHECK(c == 1, "evicted %d second, want 1 (A's tail)", c);
	kv_block_unref(&P, b);
	kv_block_unref(&P, c);
	T_CHECK(P.n_empty == 2 && P.n_lru == 2, "evicted blocks return empty");
	check_pool("lru");
	/* empty blocks go before cached ones */
	int32_t d = kv_block_alloc(&P);
	T_CHECK(d != 0 && d != 2, "a cached block (%d) went before an empty one", d);
	kv_block_unref(&P, d);
	/* a full pool: -E_NOSPACE, never a cached block still referenced */
	compute(0, C, 4);
	compute(1, A, 4);
	T_CHECK(P.n_free == 0 && kv_block_alloc(&P) == -E_NOSPACE, "a full pool handed out a block");
	T_CHECK(kv_seq_reserve(&P, 0, 6) == -E_NOSPACE, "reserve on a full pool");
	kv_seq_release(&P, 0);
	kv_seq_release(&P, 1);
	T_CHECK(P.n_free == P.n_blocks && P.n_empty + P.n_lru == P.n_blocks, "leak at quiescence");
	check_pool("lru end");
	kv_pool_free(&P);
}

static void t_dedup_truncate(void)
{
	struct ts_err e = {0};
	int32_t A[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
	T_CHECK(kv_pool_init(&P, 12, 4, 3, 48, &e) == 0, "init: %s", e.msg);
	/* two slots computed the same prefix at once: the second publisher
	 * shares the first one's blocks and returns its own */
	T_CHECK(kv_seq_reserve(&P, 0, 10) == 0 && kv_seq_reserve(&P, 1, 10) == 0, "reserve");
	kv_prefix_publish(&P, 0, A, 10);
	int empty = P.n_empty;
	kv_prefix_publish(&P, 1, A, 10);
	T_CHECK(P.st.dedups == 2 && P.n_empty == empty + 2, "dedup: %llu, empty %d -> %d",
		(unsigned long long)P.st.dedups, empty, P.n_empty);
	T_CHECK(kv_seq_table(&P, 1)[0] == kv_seq_table(&P, 0)[0] && kv_seq_table(&P, 1)[1] == kv_seq_table(&P, 0)[1],
		"slot 1 does not share slot 0's blocks");
	T_CHECK(kv_seq_table(&P, 1)[2] != kv_seq_table(&P, 0)[2], "partial blocks shared");
	T_CHECK(kv_seq_writable(&P, 1, 9) && !kv_seq_writable(&P, 1, 5), "writability after dedup");
	check_pool("dedup");
	/* truncate: inside a private block the KV stays; inside a shared one the
	 * block goes (a write would land in it) */
	T_CHECK(kv_seq_truncate(&P, 1, 9) == 9 && kv_seq_blocks(&P, 1) == 3, "truncate in a private block");
	T_CHECK(kv_seq_truncate(&P, 1, 6) == 4 && kv_seq_blocks(&P, 1) == 1, "truncate in a shared block");
	T_CHECK(kv_seq_writable(&P, 1, 4) == 0 && kv_seq_blocks(&P, 1) == 1, "position 4 has no block yet");
	T_CHECK(kv_seq_truncate(&P, 1, 4) == 4 && kv_seq_blocks(&P, 1) == 1, "truncate on a block boundary");
	T_CHECK(kv_seq_truncate(&P, 1, 0) == 0 && kv_seq_blocks(&P, 1) == 0, "truncate to nothing");
	T_CHECK(P.seq_n_pub[1] == 0, "published count not cut");
	check_pool("truncate");
	kv_seq_release(&P, 0);
	kv_seq_release(&P, 1);
	T_CHECK(P.n_free == P.n_blocks, "leak after truncate");
	/* the cache off: nothing is published or matched */
	P.prefix_off = 1;
	int32_t out[3];
	compute(2, A, 12);
	T_CHECK(P.st.published == 2, "published with the cache off");
	kv_seq_release(&P, 2);
	T_CHECK(P.n_lru == 2, "the cache lost its blocks while off");
	T_CHECK(kv_prefix_match(&P, A, 12, out, 3) == 0, "matched with the cache off");
	P.prefix_off = 0;
	T_CHECK(kv_prefix_match(&P, A, 12, out, 3) == 2, "cache on again");
	kv_block_unref(&P, out[1]);
	kv_block_unref(&P, out[0]);
	check_pool("off");
	kv_pool_free(&P);
}

/* Every hash equal: the index must still tell blocks apart by their tokens
 * and chain, and never hand out a block whose stored tokens or predecessor
 * differ from the query. */
static void t_collisions(void)
{
	struct ts_err e = {0};
	int32_t A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, X[4] = {7, 7, 3, 4}, out[2];
	T_CHECK(kv_pool_init(&P, 6, 2, 2, 8, &e) == 0, "init: %s", e.msg);
	P.hash_mask = 0;
	compute(0, A, 4);
	compute(1, B, 4);
	T_CHECK(P.n_cached == 4, "colliding blocks not all indexed: %d", P.n_cached);
	T_CHECK(kv_prefix_match(&P, A, 4, out, 2) == 2 && out[0] == kv_seq_table(&P, 0)[0] &&
			out[1] == kv_seq_table(&P, 0)[1],
		"A under collisions");
	kv_block_unref(&P, out[0]);
	kv_block_unref(&P, out[1]);
	T_CHECK(kv_prefix_match(&P, B, 4, out, 2) == 2 && out[0] == kv_seq_table(&P, 1)[0], "B under collisions");
	kv_block_unref(&P, out[0]);
	kv_block_unref(&P, out[1]);
	T_CHECK(P.st.collisions > 0, "no collision was seen");
	/* X = another first block, then A's second block: same hashes, but the
	 * chain differs, so A's second block (computed after A's first) is refused */
	T_CHECK(kv_prefix_match(&P, X, 4, out, 2) == 0, "a block matched under another predecessor");
	/* corrupt a published block's stored tokens: the hash still matches, the
	 * comparison refuses */
	int32_t b0 = kv_seq_table(&P, 1)[0];
	P.tokens[(size_t)b0 * 2] ^= 1;
	T_CHECK(kv_prefix_match(&P, B, 4, out, 2) == 0, "a block with other stored tokens matched");
	P.tokens[(size_t)b0 * 2] ^= 1;
	check_pool("collisions");
	kv_seq_release(&P, 0);
	kv_seq_release(&P, 1);

	/* A reused predecessor: A's first block is evicted and its id handed out
	 * again, now holding X's first block. A's second block still names that
	 * id as its predecessor, but from an older generation: the query
	 * X[0..2) + A[2..4) must not get it (its KV was computed after A[0..2)). */
	kv_pool_free(&P);
	T_CHECK(kv_pool_init(&P, 2, 2, 2, 8, &e) == 0, "init: %s", e.msg);
	P.hash_mask = 0;
	compute(0, A, 4);
	int32_t a0 = kv_seq_table(&P, 0)[0], a1 = kv_seq_table(&P, 0)[1];
	kv_seq_release(&P, 0);
	/* take both, give the first back first: it becomes the oldest */
	T_CHECK(kv_prefix_match(&P, A, 4, out, 2) == 2 && out[0] == a0 && out[1] == a1, "A cached");
	kv_block_unref(&P, a0);
	kv_block_unref(&P, a1);
	int32_t n = kv_block_alloc(&P);
	T_CHECK(n == a0, "evicted %d, want A's first block %d", n, a0);
	kv_block_unref(&P, n);
	T_CHECK(kv_seq_reserve(&P, 1, 2) == 0 && kv_seq_table(&P, 1)[0] == a0, "the id comes back");
	kv_prefix_publish(&P, 1, X, 2); /* same id, new generation, other tokens */
	T_CHECK(P.published[a0] && P.published[a1] && P.parent[a1] == a0, "setup of the stale chain");
	T_CHECK(kv_prefix_match(&P, X, 4, out, 2) == 1, "a child of an older generation matched");
	kv_block_unref(&P, out[0]);
	kv_seq_release(&P, 1);
	check_pool("generations");
	kv_pool_free(&P);
}

/* Randomized: slots compute, publish, match, truncate and release, over a
 * tiny alphabet (many shared prefixes) and hashes cut to 3 bits (many
 * collisions). A shadow records, for every block, the token prefix its KV
 * was computed from; every block a slot holds must agree with the slot's
 * tokens, and a slot may only write into blocks it owns alone. */
#define RS 4
#define RB 12
#define RT 4
#define RL 24
static int32_t shadow[RB][RL]; /* tokens [0, end) the block's KV was computed from */
static int shadow_end[RB];
static int32_t stoks[RS][RL];
static int slen[RS]; /* sequence length, 0 = idle */
static int sn[RS];   /* positions computed */

static int agrees(int s)
{
	const int32_t *t = kv_seq_table(&P, s);
	for (int i = 0; i < kv_seq_blocks(&P, s); i++) {
		int end = TS_MIN((i + 1) * RT, sn[s]);
		if (end <= i * RT)
			continue; /* reserved, not yet written */
		if (shadow_end[t[i]] < end || memcmp(shadow[t[i]], stoks[s], (size_t)end * 4))
			return 0;
	}
	return 1;
}

static uint64_t rnd(uint64_t *x)
{
	*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	return *x >> 33;
}

static void t_random(void)
{
	struct ts_err e = {0};
	uint64_t x = 7;
	int bad_agree = 0, bad_write = 0, ops = 0;
	T_CHECK(kv_pool_init(&P, RB, RT, RS, RL, &e) == 0, "init: %s", e.msg);
	P.hash_mask = 7;
	uint64_t a0 = ts_alloc_count();
	for (int it = 0; it < 20000; it++) {
		int s = (int)(rnd(&x) % RS), op = (int)(rnd(&x) % 8);
		if (slen[s] == 0 && op <= 2) {
			/* a new sequence from one of 3 families, its tail random: many
			 * shared prefixes; it takes the cached ones first */
			uint64_t fam = rnd(&x) % 3;
			slen[s] = 2 + (int)(rnd(&x) % (RL - 2));
			for (int i = 0; i < slen[s]; i++)
				stoks[s][i] = i < 10 ? (int32_t)((fam * 0x9e37u >> i) & 1) : (int32_t)(rnd(&x) & 1);
			sn[s] = kv_seq_prefix(&P, s, stoks[s], slen[s] - 1);
		} else if (slen[s] > 0 && op <= 4) {
			/* compute a chunk: write in order into owned blocks, then publish */
			int want = TS_MIN(slen[s], sn[s] + 1 + (int)(rnd(&x) % 6));
			if (want <= sn[s] || kv_seq_reserve(&P, s, want) < 0)
				continue;
			for (int p = sn[s]; p < want; p++) {
				int32_t b = kv_seq_table(&P, s)[p / RT];
				if (!kv_seq_writable(&P, s, p)) {
					bad_write++;
					break;
				}
				/* positions before p in this block hold this slot's KV
				 * (a truncated block is written again from its cut) */
				if (p % RT == 0)
					shadow_end[b] = p;
				if (shadow_end[b] < p) {
					bad_write++;
					break;
				}
				memcpy(shadow[b], stoks[s], (size_t)(p + 1) * 4);
				shadow_end[b] = p + 1;
			}
			sn[s] = want;
			kv_prefix_publish(&P, s, stoks[s], sn[s]);
		} else if (slen[s] > 0 && op == 5) {
			sn[s] = kv_seq_truncate(&P, s, (int)(rnd(&x) % (uint64_t)(sn[s] + 1)));
		} else if (op >= 6) {
			kv_seq_release(&P, s);
			slen[s] = sn[s] = 0;
		}
		ops++;
		for (int k = 0; k < RS; k++)
			bad_agree += !agrees(k);
		struct ts_err ce = {0};
		if (kv_pool_check(&P, &ce) < 0) {
			T_CHECK(0, "step %d: %s", it, ce.msg);
			break;
		}
	}
	T_CHECK(bad_agree == 0, "%d times a slot held KV computed from other tokens", bad_agree);
	T_CHECK(bad_write == 0, "%d writes into shared or misordered blocks", bad_write);
	T_CHECK(P.st.hit_blocks > 100 && P.st.collisions > 100 && P.st.evictions > 10 && P.st.dedups > 0,
		"the run did not exercise the cache: hits %llu collisions %llu evictions %llu dedups %llu",
		(unsigned long long)P.st.hit_blocks, (unsigned long long)P.st.collisions,
		(unsigned long long)P.st.evictions, (unsigned long long)P.st.dedups);
	for (int s = 0; s < RS; s++)
		kv_seq_release(&P, s);
	T_CHECK(P.n_free == P.n_blocks && P.n_empty + P.n_lru == P.n_blocks, "leak at quiescence: free %d of %d",
		P.n_free, P.n_blocks);
	T_CHECK(ts_alloc_count() == a0, "allocated after init");
	check_pool("random end");
	printf("random: ops=%d hits=%llu misses=%llu collisions=%llu evictions=%llu dedups=%llu\n", ops,
	       (unsigned long long)P.st.hit_blocks, (unsigned long long)P.st.miss_blocks,
	       (unsigned long long)P.st.collisions, (unsigned long long)P.st.evictions,
	       (unsigned long long)P.st.dedups);
	kv_pool_free(&P);
}

/* The recurrent-state pool: ids 0.. handed out lowest first, each once, all
 * back after free; short is -E_NOSPACE; the accounting check sees a slot
 * that was lost. */
static void t_states(void)
{
	struct ts_err e = {0};
	int32_t got[4];
	T_CHECK(kv_pool_init(&P, 4, 16, 2, 64, &e) == 0, "init: %s", e.msg);
	T_CHECK(kv_state_pool_init(&P, 4, &e) == 0 && P.n_states == 4 && P.n_states_free == 4, "state pool: %s", e.msg);
	for (int i = 0; i < 4; i++)
		got[i] = kv_state_alloc(&P);
	T_CHECK(got[0] == 0 && got[1] == 1 && got[2] == 2 && got[3] == 3, "ids %d %d %d %d, want 0 1 2 3", got[0],
		got[1], got[2], got[3]);
	T_CHECK(kv_state_alloc(&P) == -E_NOSPACE, "a fifth state from a pool of 4");
	check_pool("states all held");
	kv_state_free(&P, got[2]);
	T_CHECK(kv_state_alloc(&P) == 2, "a freed state is not the next handed out");
	for (int i = 0; i < 4; i++)
		kv_state_free(&P, got[i]);
	T_CHECK(P.n_states_free == 4, "%d of 4 states free", P.n_states_free);
	check_pool("states all free");
	P.n_states_free--; /* a slot lost: the check must see it */
	T_CHECK(kv_pool_check(&P, &e) == -E_INTERNAL, "a lost state slot passed the check");
	T_HAS(e.msg, "state slots");
	P.n_states_free++;
	kv_pool_free(&P);
}

int main(void)
{
	struct ts_err e = {0};
	t_hash();
	t_match_publish();
	t_lru();
	t_dedup_truncate();
	t_collisions();
	t_random();
	t_states();
	T_CHECK(kv_pool_init(&P, 0, 16, 1, 16, &e) == -E_INVAL, "an empty pool accepted");
	T_HAS(e.msg, "blocks");
	return T_DONE();
}
