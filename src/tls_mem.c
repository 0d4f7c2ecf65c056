/* tls_mem: the fixed pool mbedTLS allocates from (see tls_mem.h).
 *
 * Reading order: size classes, the pool's state, carving and the free lists,
 * the calloc/free pair given to mbedTLS, init and stats.
 *
 * A block is a 16-byte header (its class, a magic that catches a free of
 * something that is not ours) followed by the caller's bytes; blocks are
 * 16-byte aligned like malloc's. A free block's first payload word links the
 * free list of its class.
 */
#include "tls_mem.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <mbedtls/platform.h>

#if !defined(MBEDTLS_PLATFORM_MEMORY)
#error "mbedTLS must be built with MBEDTLS_PLATFORM_MEMORY (the Makefile's mbedTLS config step)"
#endif

/* ------------------------------------------------------------ classes */

#define HDR_BYTES  16u
#define MEM_MAGIC  0x7453u /* "Ts" */
#define N_CLASSES  22      /* 32, 48, 64, 96, ... 49152, 65536 bytes, header included */

static size_t class_size(int c)
{
	/* two per power of two: 32, 48, 64, 96, 128, ... */
	size_t base = (size_t)32 << (c / 2);
	return c % 2 ? base + base / 2 : base;
}

/* The smallest class holding bytes (header included), or -1. */
static int class_of(size_t bytes)
{
	for (int c = 0; c < N_CLASSES; c++)
		if (class_size(c) >= bytes)
			return c;
	return -1;
}

struct hdr {
	uint16_t magic;
	uint16_t cls;
	uint32_t owner; /* 1 + the owner slot charged for it, or 0 */
	uint32_t gen;   /* that slot's generation then: a free after the slot was reused credits nobody */
	uint32_t pad;
};
_Static_assert(sizeof(struct hdr) == HDR_BYTES, "block header is 16 bytes");

/* ------------------------------------------------------------ state */

/* One session's account: what it holds now, against the quota. */
struct owner {
	size_t bytes;
	uint32_t gen;
	int in_use;
};

static _Thread_local int cur_owner = -1; /* tls_mem_owner_set */

static struct {
	pthread_mutex_t mu;
	size_t quota;          /* bytes one owner may hold */
	struct owner *owners;  /* (n_owners) */
	int *free_owners, n_free_owners, n_owners;
	uint64_t refused;      /* allocations refused by an owner's quota */
	uint8_t *base, *end; /* the arena */
	uint8_t *bump;       /* carving point */
	void *free_list[N_CLASSES];
	uint32_t live[N_CLASSES], peak[N_CLASSES], mark[N_CLASSES];
	size_t live_bytes, peak_bytes;
	uint64_t allocs, frees, failed;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int ours(const void *p)
{
	return pool.base && (const uint8_t *)p >= pool.base && (const uint8_t *)p < pool.end;
}

/* ------------------------------------------------------------ blocks */

/* A block of class c, carved or from its free list; when the arena is spent,
 * a free block of a larger class. NULL if none. Under pool.mu. */
static struct hdr *block_get(int c)
{
	for (int k = c; k < N_CLASSES; k++) {
		if (pool.free_list[k]) {
			struct hdr *h = (struct hdr *)((uint8_t *)pool.free_list[k] - HDR_BYTES);
			pool.free_list[k] = *(void **)pool.free_list[k];
			return h;
		}
		if (k == c && (size_t)(pool.end - pool.bump) >= class_size(c)) {
			struct hdr *h = (struct hdr *)pool.bump;
			pool.bump += class_size(c);
			h->magic = MEM_MAGIC;
			h->cls = (uint16_t)c;
			return h;
		}
	}
	return NULL;
}

static void *mem_calloc(size_t n, size_t size)
{
	if (size && n > (SIZE_MAX - HDR_BYTES) / size)
		return NULL;
	size_t bytes = n * size;
	int c = class_of(bytes + HDR_BYTES), o = cur_owner;
	pthread_mutex_lock(&pool.mu);
	struct owner *ow = o >= 0 && o < pool.n_owners ? &pool.owners[o] : NULL;
	if (ow && c >= 0 && ow->bytes + class_size(c) > pool.quota) {
		pool.refused++;
		pool.failed++;
		pthread_mutex_unlock(&pool.mu);
		return NULL;
	}
	struct hdr *h = c >= 0 ? block_get(c) : NULL;
	if (!h) {
		pool.failed++;
		pthread_mutex_unlock(&pool.mu);
		return NULL;
	}
	int k = h->cls;
	h->owner = ow ? (uint32_t)o + 1 : 0;
	h->gen = ow ? ow->gen : 0;
	if (ow)
		ow->bytes += class_size(k);
	pool.allocs++;
	pool.live_bytes += class_size(k);
	pool.peak_bytes = TS_MAX(pool.peak_bytes, pool.live_bytes);
	if (++pool.live[k] > pool.peak[k])
		pool.peak[k] = pool.live[k];
	pthread_mutex_unlock(&pool.mu);
	void *p = (uint8_t *)h + HDR_BYTES;
	memset(p, 0, bytes ? bytes : 1);
	return p;
}

/* Memory mbedTLS took before the pool was installed (psa_crypto_init during
 * the config check) goes back to libc. */
static void mem_free(void *p)
{
	if (!p)
		return;
	if (!ours(p)) {
		ts_free(p); /* libc's, from before tls_mem_init */
		return;
	}
	struct hdr *h = (struct hdr *)((uint8_t *)p - HDR_BYTES);
	if (!ALWAYS(h->magic == MEM_MAGIC && h->cls < N_CLASSES))
		return; /* not a block of ours: leak it rather than corrupt the lists */
	pthread_mutex_lock(&pool.mu);
	int k = h->cls;
	if (h->owner && h->owner <= (uint32_t)pool.n_owners && pool.owners[h->owner - 1].gen == h->gen)
		pool.owners[h->owner - 1].bytes -= class_size(k);
	*(void **)p = pool.free_list[k];
	pool.free_list[k] = p;
	pool.live[k]--;
	pool.live_bytes -= class_size(k);
	pool.frees++;
	pthread_mutex_unlock(&pool.mu);
}

/* ------------------------------------------------------------ init, stats */

size_t tls_mem_bytes_for(int n_sessions)
{
	if (n_sessions < 1)
		n_sessions = 1;
	if (n_sessions > TLS_MEM_MAX_SESSIONS)
		n_sessions = TLS_MEM_MAX_SESSIONS;
	return (size_t)n_sessions * TLS_MEM_SESSION_BYTES + TLS_MEM_BASE_BYTES;
}

int tls_mem_init(size_t bytes, size_t session_quota, int n_sessions, struct ts_err *e)
{
	if (pool.base || bytes == 0 || session_quota == 0 || n_sessions < 1 || n_sessions > TLS_MEM_MAX_SESSIONS)
		return ts_errf(e, E_INVAL, "tls_mem_init: %s",
			       pool.base ? "already initialised" : "0 bytes, 0 quota or sessions out of range");
	pool.owners = ts_alloc((size_t)n_sessions * sizeof(*pool.owners));
	pool.free_owners = ts_alloc((size_t)n_sessions * sizeof(*pool.free_owners));
	if (!pool.owners || !pool.free_owners) {
		ts_free(pool.owners), ts_free(pool.free_owners);
		pool.owners = NULL, pool.free_owners = NULL;
		return ts_errf(e, E_NOMEM, "TLS session pool: session table");
	}
	for (int i = 0; i < n_sessions; i++)
		pool.free_owners[i] = n_sessions - 1 - i;
	pool.n_free_owners = pool.n_owners = n_sessions;
	pool.quota = session_quota;
	const size_t page = 4096;
	bytes = (bytes + page - 1) & ~(page - 1);
	/* a guard page on each side: an overrun faults, and the arena stays a
	 * mapping of its own (tests find it in /proc/PID/smaps by its size) */
	uint8_t *a = mmap(NULL, bytes + 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return ts_errf(e, E_NOMEM, "TLS session pool: cannot map %zu bytes: lower the number of connections", bytes);
	if (mprotect(a, page, PROT_NONE) != 0 || mprotect(a + page + bytes, page, PROT_NONE) != 0) {
		munmap(a, bytes + 2 * page);
		return ts_errf(e, E_NOMEM, "TLS session pool: guard pages: mprotect failed");
	}
	a += page;
	memset(a, 0, bytes); /* every page resident now, not at the first handshake that reaches it */
	pthread_mutex_lock(&pool.mu);
	pool.base = pool.bump = a;
	pool.end = pool.base + bytes;
	pthread_mutex_unlock(&pool.mu);
	if (mbedtls_platform_set_calloc_free(mem_calloc, mem_free) != 0)
		return ts_errf(e, E_INTERNAL, "mbedtls_platform_set_calloc_free failed");
	return 0;
}

void tls_mem_stats(struct tls_mem_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&pool.mu);
	if (pool.base) {
		st->arena_bytes = (size_t)(pool.end - pool.base);
		st->carved_bytes = (size_t)(pool.bump - pool.base);
		st->live_bytes = pool.live_bytes;
		st->peak_bytes = pool.peak_bytes;
		for (int c = 0; c < N_CLASSES; c++)
			st->class_peak_bytes += (size_t)(pool.peak[c] - pool.mark[c]) * class_size(c);
		st->allocs = pool.allocs;
		st->frees = pool.frees;
		st->failed = pool.failed;
		st->refused = pool.refused;
		st->sessions = pool.n_owners - pool.n_free_owners;
	}
	pthread_mutex_unlock(&pool.mu);
}

void tls_mem_reset_peaks(void)
{
	pthread_mutex_lock(&pool.mu);
	for (int c = 0; c < N_CLASSES; c++)
		pool.mark[c] = pool.peak[c] = pool.live[c];
	pthread_mutex_unlock(&pool.mu);
}

/* ------------------------------------------------------------ sessions' accounts */

int tls_mem_owner_new(int *owner)
{
	*owner = -1;
	pthread_mutex_lock(&pool.mu);
	int rc = 0;
	if (pool.base) {
		if (pool.n_free_owners == 0) {
			pool.refused++;
			rc = -E_NOMEM;
		} else {
			*owner = pool.free_owners[--pool.n_free_owners];
			pool.owners[*owner].in_use = 1;
			pool.owners[*owner].bytes = 0;
		}
	}
	pthread_mutex_unlock(&pool.mu);
	return rc;
}

void tls_mem_owner_free(int owner)
{
	if (owner < 0)
		return;
	pthread_mutex_lock(&pool.mu);
	if (ALWAYS(owner < pool.n_owners && pool.owners[owner].in_use)) {
		pool.owners[owner].in_use = 0;
		pool.owners[owner].gen++; /* blocks it still holds (PSA's key store growth) now credit nobody */
		pool.owners[owner].bytes = 0;
		pool.free_owners[pool.n_free_owners++] = owner;
	}
	pthread_mutex_unlock(&pool.mu);
}

void tls_mem_owner_set(int owner)
{
	cur_owner = owner;
}
