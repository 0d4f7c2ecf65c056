/* ring: Vyukov's bounded queue specialised to one consumer, a cached-index
 * SPSC ring, and an eventfd wake-up with notify coalescing.
 *
 * The invariant of each ring, stated once here and relied on by every memory
 * order below:
 *  - MPSC: slot i carries a sequence number seq. For the position pos that maps
 *    to it, seq == pos means "free for the producer of pos", seq == pos + 1
 *    means "holds the element of pos" and seq == pos + capacity means "free for
 *    the producer of the next lap". seq only grows. Producers compete for pos on
 *    the tail with a CAS; the element itself is handed over by the seq store
 *    (release) and load (acquire), in both directions.
 *  - SPSC: head <= tail <= head + capacity; the producer writes only tail and
 *    the slots in [tail, head + capacity), the consumer only head and the slots
 *    in [head, tail). Each side keeps a stale copy of the other side's index and
 *    reloads it only when the copy says full (producer) or empty (consumer).
 */
#include "ring.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ------------------------------------------------------------ control blocks */

struct ring_mpsc_ctl {
	_Alignas(RING_LINE_BYTES) _Atomic uint64_t tail; /* next position to claim: producers' line */
	_Alignas(RING_LINE_BYTES) _Atomic uint64_t head; /* next position to pop: written by the consumer only */
};

struct ring_spsc_ctl {
	/* producer's line */
	_Alignas(RING_LINE_BYTES) _Atomic uint64_t tail; /* next position to push */
	uint64_t head_cache;                             /* producer's stale copy of head */
	/* consumer's line */
	_Alignas(RING_LINE_BYTES) _Atomic uint64_t head; /* next position to pop */
	uint64_t tail_cache;                             /* consumer's stale copy of tail */
};

#define RING_SEQ_BYTES 8u /* the slot's _Atomic uint64_t sequence precedes its element */

/* memcpy with the sizes of the serving path's messages made constant, so they
 * compile to a move or two instead of a call. */
static inline void ring_copy(void *dst, const void *src, uint32_t bytes)
{
	switch (bytes) {
	case 8:
		memcpy(dst, src, 8);
		break;
	case 16:
		memcpy(dst, src, 16);
		break;
	case 32:
		memcpy(dst, src, 32);
		break;
	case 64:
		memcpy(dst, src, 64);
		break;
	default:
		memcpy(dst, src, bytes);
	}
}

static int ring_check_size(const char *what, uint32_t capacity, uint32_t elem_bytes, struct ts_err *e)
{
	if (capacity < 2 || capacity > RING_CAPACITY_MAX || (capacity & (capacity - 1)))
		return ts_errf(e, E_INVAL, "%s: capacity %u is not a power of two between 2 and %u; round it up", what,
		               capacity, RING_CAPACITY_MAX);
	if (elem_bytes < 1 || elem_bytes > RING_ELEM_MAX)
		return ts_errf(e, E_INVAL, "%s: element size %u bytes is outside 1 .. %u", what, elem_bytes,
		               RING_ELEM_MAX);
	return 0;
}

/* One zeroed allocation holding a 64-byte aligned control block of ctl_bytes
 * followed by data_bytes. Returns the aligned start, *mem the block to free. */
static unsigned char *ring_alloc(size_t ctl_bytes, size_t data_bytes, void **mem)
{
	*mem = ts_alloc_resident(ctl_bytes + data_bytes + RING_LINE_BYTES - 1);
	if (!*mem)
		return NULL;
	uintptr_t a = ((uintptr_t)*mem + RING_LINE_BYTES - 1) & ~(uintptr_t)(RING_LINE_BYTES - 1);
	return (unsigned char *)a;
}

/* ------------------------------------------------------------ MPSC */

static inline _Atomic uint64_t *mpsc_seq(const struct ring_mpsc *r, uint64_t pos)
{
	return (_Atomic uint64_t *)(r->slots + (size_t)(pos & r->mask) * r->slot_bytes);
}

int ring_mpsc_init(struct ring_mpsc *r, uint32_t capacity_pow2, uint32_t elem_bytes, struct ts_err *e)
{
	memset(r, 0, sizeof(*r));
	int rc = ring_check_size("ring_mpsc", capacity_pow2, elem_bytes, e);
	if (rc)
		return rc;
	uint32_t slot_bytes = (RING_SEQ_BYTES + elem_bytes + 7u) & ~7u;
	unsigned char *base = ring_alloc(sizeof(struct ring_mpsc_ctl), (size_t)capacity_pow2 * slot_bytes, &r->mem);
	if (!base)
		return ts_errf(e, E_NOMEM, "ring_mpsc: out of memory for %u slots of %u bytes", capacity_pow2,
		               slot_bytes);
	r->ctl = (struct ring_mpsc_ctl *)base;
	r->slots = base + sizeof(struct ring_mpsc_ctl);
	r->mask = capacity_pow2 - 1;
	r->capacity = capacity_pow2;
	r->elem_bytes = elem_bytes;
	r->slot_bytes = slot_bytes;
	/* Not yet shared: plain initialisation; the caller's hand-over publishes it. */
	atomic_init(&r->ctl->tail, 0);
	atomic_init(&r->ctl->head, 0);
	for (uint64_t i = 0; i < capacity_pow2; i++)
		atomic_init(mpsc_seq(r, i), i);
	return 0;
}

void ring_mpsc_free(struct ring_mpsc *r)
{
	ts_free(r->mem);
	memset(r, 0, sizeof(*r));
}

int ring_mpsc_push(struct ring_mpsc *r, const void *elem)
{
	struct ring_mpsc_ctl *c = r->ctl;
	/* relaxed: tail only arbitrates between producers; the element and the
	 * slot's state travel through seq, never through tail. A stale pos is
	 * caught below (seq ahead of pos, or the CAS fails). */
	uint64_t pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
	for (;;) {
		_Atomic uint64_t *seq = mpsc_seq(r, pos);
		/* acquire: pairs with the consumer's release store of seq = pos in
		 * ring_mpsc_pop one lap ago, so its memcpy out of this slot happens
		 * before our memcpy in. */
		uint64_t s = atomic_load_explicit(seq, memory_order_acquire);
		int64_t dif = (int64_t)(s - pos);
		if (dif == 0) {
			/* relaxed, success and failure: winning the CAS makes pos ours and
			 * orders nothing else (the acquire above already did); on failure
			 * pos becomes the current tail and we look again. */
			if (atomic_compare_exchange_weak_explicit(&c->tail, &pos, pos + 1, memory_order_relaxed,
			                                          memory_order_relaxed)) {
				ring_copy((unsigned char *)seq + RING_SEQ_BYTES, elem, r->elem_bytes);
				/* release: pairs with the consumer's acquire load of seq in
				 * ring_mpsc_pop; publishes the memcpy above. */
				atomic_store_explicit(seq, pos + 1, memory_order_release);
				return 0;
			}
		} else if (dif < 0) {
			/* The slot still holds the element of pos - capacity: full. */
			return -E_NOSPACE;
		} else {
			/* Another producer claimed pos (and maybe more) since we read tail.
			 * relaxed: as the first load. */
			pos = atomic_load_explicit(&c->tail, memory_order_relaxed);
		}
	}
}

int ring_mpsc_pop(struct ring_mpsc *r, void *out)
{
	struct ring_mpsc_ctl *c = r->ctl;
	/* relaxed: this thread is head's only writer. */
	uint64_t pos = atomic_load_explicit(&c->head, memory_order_relaxed);
	_Atomic uint64_t *seq = mpsc_seq(r, pos);
	/* acquire: pairs with the producer's release store of seq = pos + 1 in
	 * ring_mpsc_push, so its memcpy in happens before our memcpy out. */
	uint64_t s = atomic_load_explicit(seq, memory_order_acquire);
	if (s != pos + 1)
		return 0; /* s == pos: empty, or claimed and not yet published */
	ring_copy(out, (unsigned char *)seq + RING_SEQ_BYTES, r->elem_bytes);
	/* release: pairs with the acquire load of seq in ring_mpsc_push one lap
	 * on, so our memcpy out happens before that producer's memcpy in. */
	atomic_store_explicit(seq, pos + r->capacity, memory_order_release);
	/* release: pairs with the acquire load of head in ring_mpsc_count_approx
	 * (and tests): whoever reads head > pos also sees the slot freed above. */
	atomic_store_explicit(&c->head, pos + 1, memory_order_release);
	return 1;
}

uint32_t ring_mpsc_count_approx(const struct ring_mpsc *r)
{
	/* acquire: pairs with the release store of head in ring_mpsc_pop. The
	 * consumer popped head - 1 only after its producer's CAS moved tail past
	 * it, so the tail we load after this is >= head. */
	uint64_t h = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
	/* relaxed: a count, not a hand-over. */
	uint64_t t = atomic_load_explicit(&r->ctl->tail, memory_order_relaxed);
	if (NEVER(t < h))
		return 0;
	return t - h > r->capacity ? r->capacity : (uint32_t)(t - h); /* h may be stale by a lap */
}

/* ------------------------------------------------------------ SPSC */

int ring_spsc_init(struct ring_spsc *r, uint32_t capacity_pow2, uint32_t elem_bytes, struct ts_err *e)
{
	memset(r, 0, sizeof(*r));
	int rc = ring_check_size("ring_spsc", capacity_pow2, elem_bytes, e);
	if (rc)
		return rc;
	unsigned char *base = ring_alloc(sizeof(struct ring_spsc_ctl), (size_t)capacity_pow2 * elem_bytes, &r->mem);
	if (!base)
		return ts_errf(e, E_NOMEM, "ring_spsc: out of memory for %u elements of %u bytes", capacity_pow2,
		               elem_bytes);
	r->ctl = (struct ring_spsc_ctl *)base;
	r->buf = base + sizeof(struct ring_spsc_ctl);
	r->mask = capacity_pow2 - 1;
	r->capacity = capacity_pow2;
	r->elem_bytes = elem_bytes;
	atomic_init(&r->ctl->tail, 0);
	atomic_init(&r->ctl->head, 0);
	r->ctl->head_cache = 0;
	r->ctl->tail_cache = 0;
	return 0;
}

void ring_spsc_free(struct ring_spsc *r)
{
	ts_free(r->mem);
	memset(r, 0, sizeof(*r));
}

int ring_spsc_push(struct ring_spsc *r, const void *elem)
{
	struct ring_spsc_ctl *c = r->ctl;
	/* relaxed: this thread is tail's only writer. */
	uint64_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
	if (t - c->head_cache > r->mask) {
		/* acquire: pairs with the release store of head in ring_spsc_pop[_n],
		 * so the consumer's memcpy out of the slots it freed happens before
		 * our memcpy into them. */
		c->head_cache = atomic_load_explicit(&c->head, memory_order_acquire);
		if (t - c->head_cache > r->mask)
			return -E_NOSPACE;
	}
	ring_copy(r->buf + (size_t)(t & r->mask) * r->elem_bytes, elem, r->elem_bytes);
	/* release: pairs with the acquire load of tail in ring_spsc_pop[_n];
	 * publishes the memcpy above. */
	atomic_store_explicit(&c->tail, t + 1, memory_order_release);
	return 0;
}

int ring_spsc_pop(struct ring_spsc *r, void *out)
{
	struct ring_spsc_ctl *c = r->ctl;
	/* relaxed: this thread is head's only writer. */
	uint64_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
	if (h == c->tail_cache) {
		/* acquire: pairs with the release store of tail in ring_spsc_push,
		 * so the producer's memcpy in happens before our memcpy out. */
		c->tail_cache = atomic_load_explicit(&c->tail, memory_order_acquire);
		if (h == c->tail_cache)
			return 0;
	}
	ring_copy(out, r->buf + (size_t)(h & r->mask) * r->elem_bytes, r->elem_bytes);
	/* release: pairs with the acquire load of head in ring_spsc_push; the
	 * slot may be overwritten only after our memcpy out. */
	atomic_store_explicit(&c->head, h + 1, memory_order_release);
	return 1;
}

uint32_t ring_spsc_pop_n(struct ring_spsc *r, void *out, uint32_t max)
{
	struct ring_spsc_ctl *c = r->ctl;
	/* relaxed: this thread is head's only writer. */
	uint64_t h = atomic_load_explicit(&c->head, memory_order_relaxed);
	uint64_t avail = c->tail_cache - h;
	if (avail < max) {
		/* acquire: as in ring_spsc_pop. */
		c->tail_cache = atomic_load_explicit(&c->tail, memory_order_acquire);
		avail = c->tail_cache - h;
	}
	uint32_t n = avail < max ? (uint32_t)avail : max;
	if (n == 0)
		return 0;
	size_t eb = r->elem_bytes;
	uint32_t i = (uint32_t)(h & r->mask);
	uint32_t first = TS_MIN(n, r->capacity - i); /* up to the end of the buffer, then from its start */
	memcpy(out, r->buf + (size_t)i * eb, (size_t)first * eb);
	memcpy((unsigned char *)out + (size_t)first * eb, r->buf, (size_t)(n - first) * eb);
	/* release: as in ring_spsc_pop, for all n slots at once. */
	atomic_store_explicit(&c->head, h + n, memory_order_release);
	return n;
}

uint32_t ring_spsc_count_approx(const struct ring_spsc *r)
{
	/* acquire: pairs with the release store of head in ring_spsc_pop[_n]; the
	 * consumer passed those positions only after the producer published them,
	 * so the tail we load after this is >= head. */
	uint64_t h = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
	/* relaxed: a count, not a hand-over. */
	uint64_t t = atomic_load_explicit(&r->ctl->tail, memory_order_relaxed);
	if (NEVER(t < h))
		return 0;
	return t - h > r->capacity ? r->capacity : (uint32_t)(t - h);
}

/* ------------------------------------------------------------ wake-ups
 *
 * Why no wake-up is lost. The producer does  push; fence; read pending (and
 * maybe set it and write(2)). The waiter does  read(2); pending = 0; fence;
 * pop until empty; poll. The two seq_cst fences are totally ordered:
 *  - the waiter's fence first: the producer's read of pending sees the
 *    waiter's 0 or a later 1, and either way some producer's exchange took
 *    that 0 after the clear and that producer writes. Its write(2) cannot be
 *    the one the waiter's read(2) consumed (that would put its exchange before
 *    the clear), so the eventfd stays readable and poll returns.
 *  - the producer's fence first: the waiter's pops, after its own fence, see
 *    the push.
 * Clearing pending before read(2) would be wrong: a setter could then write
 * between the clear and the read(2), have its wake-up swallowed, and leave
 * pending == 1 with no write(2) to come, silencing every later notify.
 */

int ring_wake_init(struct ring_wake *w, struct ts_err *e)
{
	memset(w, 0, sizeof(*w));
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0) {
		int err = errno;
		w->fd = -1;
		return ts_errf(e, E_IO, "ring_wake: eventfd: %s (too many open files? raise RLIMIT_NOFILE)",
		               strerror(err));
	}
	w->open = 1;
	atomic_init(&w->pending, 0);
	return 0;
}

void ring_wake_free(struct ring_wake *w)
{
	if (w->open)
		close(w->fd);
	memset(w, 0, sizeof(*w));
	w->fd = -1;
}

int ring_wake_notify(struct ring_wake *w)
{
	/* seq_cst fence: orders the caller's push before our read of pending;
	 * pairs with the fence in ring_wake_drain (see the banner above). */
	atomic_thread_fence(memory_order_seq_cst);
	/* relaxed, both: the fence does the ordering. A plain load first, so a
	 * burst of notifies reads a shared line instead of bouncing it. */
	if (atomic_load_explicit(&w->pending, memory_order_relaxed))
		return 0;
	if (atomic_exchange_explicit(&w->pending, 1, memory_order_relaxed))
		return 0;
	uint64_t one = 1;
	for (;;) {
		ssize_t n = write(w->fd, &one, sizeof(one));
		if (n == (ssize_t)sizeof(one))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return -E_IO; /* EAGAIN would need 2^64 - 2 undrained writes */
	}
}

int ring_wake_drain(struct ring_wake *w)
{
	uint64_t n = 0;
	ssize_t k;
	do
		k = read(w->fd, &n, sizeof(n));
	while (k < 0 && errno == EINTR);
	if (k < 0 && errno != EAGAIN)
		return -E_IO;
	if (k >= 0 && k != (ssize_t)sizeof(n))
		return -E_IO;
	/* relaxed store, then the seq_cst fence: pairs with the fence in
	 * ring_wake_notify, so either the next notify sees this 0 or our next
	 * pops see its push. After read(2), never before (see the banner). */
	atomic_store_explicit(&w->pending, 0, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (k < 0)
		return 0;
	return n > INT_MAX ? INT_MAX : (int)n;
}

int ring_wake_fd(const struct ring_wake *w)
{
	return w->fd;
}
