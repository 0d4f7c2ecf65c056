/* ring: the lock-free rings of the serving path, and the eventfd that wakes
 * their consumer.
 *
 *   net/conn threads --ring_mpsc (commands)--> engine thread
 *   engine thread    --ring_spsc (events, one per connection)--> that connection's net thread
 *
 * Owns: bounded queues of fixed-size elements (element size and power-of-two
 * capacity chosen at init), copied in and out by value; each ring's storage,
 * allocated once by its _init with ts_alloc (never afterwards); one eventfd
 * per ring_wake.
 * Does not: block, spin, sleep or take a lock (a full ring is the caller's
 * flow-control problem: -E_NOSPACE comes back at once); own what an element
 * points to; know what the elements mean.
 *
 * Threads: the concurrency contract is in every function's name.
 *   ring_mpsc_push      any number of threads at once (the producers).
 *   ring_mpsc_pop       one thread only, the consumer (the engine).
 *   ring_spsc_push      one thread only, the producer (the engine).
 *   ring_spsc_pop[_n]   one thread only, the consumer (the connection's thread).
 *   *_count_approx      any thread; a snapshot that may be stale by the time it returns.
 *   ring_wake_notify    any thread.
 *   ring_wake_drain     one thread only, the waiter (the ring's consumer).
 *   *_init, *_free      one thread, while no other thread uses the object; handing
 *                       it to the other threads (pthread_create, a mutex, another ring)
 *                       must give them a happens-before edge from _init.
 * "One thread" means one at a time: a role may move to another thread only across
 * a happens-before edge (e.g. a join), never concurrently.
 *
 * Progress: ring_spsc is wait-free. ring_mpsc is Vyukov's bounded queue: a
 * producer's push is a CAS loop that fails only against another producer that
 * made progress; but a producer descheduled between claiming its slot and
 * publishing it makes the consumer see "empty" at that slot (later elements wait
 * behind it) until it runs again. That keeps FIFO order per producer and overall.
 *
 * Indices are uint64_t positions that only grow and never wrap in practice
 * (2^64 pushes at 10^9 per second take 584 years); slot = position & (capacity - 1).
 * The hot indices live in a private control block that _init aligns to 64-byte
 * cache lines inside its one allocation, so the public structs below can be
 * embedded anywhere (in memory from ts_alloc, which is only 16-byte aligned).
 *
 * Wake-up protocol (ring_wake), one waiting thread per wake:
 *   producer:  push(...);  ring_wake_notify(w);
 *   waiter:    for (;;) { ring_wake_drain(w);  while (pop(...)) handle(...);
 *                         poll(ring_wake_fd(w), POLLIN, timeout); }
 * A burst of notifies between two drains costs one write(2).
 */
#ifndef TS_RING_H
#define TS_RING_H

#include "base.h"

#include <stdatomic.h>
#include <stdint.h>

#define RING_LINE_BYTES   64         /* cache line the hot indices are kept apart by */
#define RING_CAPACITY_MAX (1u << 30) /* elements */
#define RING_ELEM_MAX     (1u << 20) /* bytes per element */

/* ------------------------------------------------------------ MPSC */

struct ring_mpsc_ctl; /* private: tail (producers' line), head (consumer's line) */

struct ring_mpsc {
	struct ring_mpsc_ctl *ctl; /* inside mem, 64-byte aligned */
	unsigned char *slots;      /* (capacity, slot_bytes): an _Atomic uint64_t sequence, then the element */
	uint64_t mask;             /* capacity - 1 */
	uint32_t capacity;         /* elements, a power of two >= 2 */
	uint32_t elem_bytes;
	uint32_t slot_bytes; /* 8 + elem_bytes, rounded up to 8 */
	void *mem;           /* the one ts_alloc block */
};

/* capacity_pow2: 2 .. RING_CAPACITY_MAX, a power of two; elem_bytes: 1 .. RING_ELEM_MAX.
 * 0, -E_INVAL or -E_NOMEM (e says which). */
int ring_mpsc_init(struct ring_mpsc *r, uint32_t capacity_pow2, uint32_t elem_bytes, struct ts_err *e);
/* Safe on a zeroed or failed-init ring. */
void ring_mpsc_free(struct ring_mpsc *r);

/* Copies elem_bytes from elem into the ring. 0, or -E_NOSPACE when full (never blocks).
 * Any thread. */
int ring_mpsc_push(struct ring_mpsc *r, const void *elem);

/* Copies the oldest element to out. 1 when one was popped, 0 when empty (or
 * when the oldest claimed slot is still being written by its producer).
 * Consumer thread only. */
int ring_mpsc_pop(struct ring_mpsc *r, void *out);

/* Elements pushed (or being pushed) and not yet popped, 0 .. capacity. Any thread. */
uint32_t ring_mpsc_count_approx(const struct ring_mpsc *r);

/* ------------------------------------------------------------ SPSC */

struct ring_spsc_ctl; /* private: tail + cached head (producer's line), head + cached tail (consumer's line) */

struct ring_spsc {
	struct ring_spsc_ctl *ctl; /* inside mem, 64-byte aligned */
	unsigned char *buf;        /* (capacity, elem_bytes) */
	uint64_t mask;             /* capacity - 1 */
	uint32_t capacity;         /* elements, a power of two >= 2 */
	uint32_t elem_bytes;
	void *mem; /* the one ts_alloc block */
};

int ring_spsc_init(struct ring_spsc *r, uint32_t capacity_pow2, uint32_t elem_bytes, struct ts_err *e);
void ring_spsc_free(struct ring_spsc *r);

/* 0, or -E_NOSPACE when full. Producer thread only. */
int ring_spsc_push(struct ring_spsc *r, const void *elem);

/* 1 when one was popped into out, 0 when empty. Consumer thread only. */
int ring_spsc_pop(struct ring_spsc *r, void *out);

/* Pops up to max elements into out (room for max * elem_bytes), oldest first;
 * returns how many (0 when empty). Consumer thread only. */
uint32_t ring_spsc_pop_n(struct ring_spsc *r, void *out, uint32_t max);

uint32_t ring_spsc_count_approx(const struct ring_spsc *r);

/* ------------------------------------------------------------ wake-ups */

struct ring_wake {
	int fd;                   /* eventfd, non-blocking, close-on-exec; valid while open */
	int open;                 /* 1 between a successful init and free */
	_Atomic uint32_t pending; /* 1: a write(2) since the waiter's last drain is made or about to be */
};

/* 0 or -E_IO. */
int ring_wake_init(struct ring_wake *w, struct ts_err *e);
/* Closes the eventfd; safe on a zeroed or failed-init wake, and twice. */
void ring_wake_free(struct ring_wake *w);

/* After a push: makes the waiter's poll() return, unless a wake-up it has not
 * drained is already on its way (then this costs no system call). 0 or -E_IO.
 * Any thread. */
int ring_wake_notify(struct ring_wake *w);

/* Before the waiter pops: consumes pending wake-ups. Returns how many write(2)s
 * it consumed (0 when none: a spurious poll() return), or -E_IO. Waiting thread only. */
int ring_wake_drain(struct ring_wake *w);

/* The fd to poll() or add to an epoll set for POLLIN / EPOLLIN. */
int ring_wake_fd(const struct ring_wake *w);

#endif
