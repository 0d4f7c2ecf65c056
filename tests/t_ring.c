/* t_ring: the lock-free rings.
 *
 * Single thread: bad sizes, FIFO order, the full and empty edges, thousands of
 * wrap-arounds, no allocation after init. Threads: SPSC stress (one producer,
 * one consumer, a 64-slot ring, strict order and the sum), MPSC stress (four
 * producers, strict per-producer order, no loss, no duplicate, and every
 * -E_NOSPACE checked against the consumer's progress), the eventfd wake-up
 * (coalescing, a blocked poll() woken, no lost wake-up under load). Ends with
 * a benchmark that prints, never asserts.
 *
 * T_RING_SCALE (default 1) multiplies the thread counts; the ThreadSanitizer
 * build runs with a smaller one, e.g. T_RING_SCALE=0.05.
 */
#include "../src/ring.c" /* the control blocks, for the full-ring check */

#include "t.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

/* ------------------------------------------------------------ helpers */

static double g_scale = 1.0;
static _Atomic int g_abort; /* a consumer gave up: producers stop retrying */

static uint64_t scaled(uint64_t n)
{
	double v = (double)n * g_scale;
	return v < 1000 ? 1000 : (uint64_t)v;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Spin a little, then give the core away: the stress runs more threads than
 * this machine may have cores. */
static inline void backoff(unsigned *spins)
{
	if (++*spins < 64) {
		cpu_relax();
	} else {
		*spins = 0;
		sched_yield();
	}
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static pthread_t spawn(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	if (pthread_create(&t, NULL, fn, arg) != 0) {
		fprintf(stderr, "t_ring: pthread_create failed\n");
		exit(2);
	}
	return t;
}

/* ------------------------------------------------------------ single thread */

static void test_init_errors(void)
{
	struct ts_err e;
	struct ring_mpsc m;
	struct ring_spsc s;
	const uint32_t bad_caps[] = {0, 1, 3, 100, RING_CAPACITY_MAX * 2u};
	for (size_t i = 0; i < TS_ARRAY_LEN(bad_caps); i++) {
		memset(&e, 0, sizeof(e));
		T_CHECK(ring_mpsc_init(&m, bad_caps[i], 8, &e) == -E_INVAL, "mpsc capacity %u", bad_caps[i]);
		T_HAS(e.msg, "power of two");
		ring_mpsc_free(&m);
		memset(&e, 0, sizeof(e));
		T_CHECK(ring_spsc_init(&s, bad_caps[i], 8, &e) == -E_INVAL, "spsc capacity %u", bad_caps[i]);
		T_HAS(e.msg, "ring_spsc");
		ring_spsc_free(&s);
	}
	const uint32_t bad_elems[] = {0, RING_ELEM_MAX + 1};
	for (size_t i = 0; i < TS_ARRAY_LEN(bad_elems); i++) {
		memset(&e, 0, sizeof(e));
		T_CHECK(ring_mpsc_init(&m, 8, bad_elems[i], &e) == -E_INVAL, "mpsc elem %u", bad_elems[i]);
		T_HAS(e.msg, "element size");
		memset(&e, 0, sizeof(e));
		T_CHECK(ring_spsc_init(&s, 8, bad_elems[i], &e) == -E_INVAL, "spsc elem %u", bad_elems[i]);
		T_HAS(e.msg, "element size");
	}
	/* free on zeroed structs; a zeroed ring_wake must not close fd 0 */
	memset(&m, 0, sizeof(m));
	ring_mpsc_free(&m);
	memset(&s, 0, sizeof(s));
	ring_spsc_free(&s);
	struct ring_wake w;
	memset(&w, 0, sizeof(w));
	int fd0_before = fcntl(0, F_GETFD) != -1;
	ring_wake_free(&w);
	ring_wake_free(&w);
	T_CHECK((fcntl(0, F_GETFD) != -1) == fd0_before, "ring_wake_free on a zeroed wake closed fd 0");
}

struct item12 {
	uint32_t seq, inv, x3; /* 12 bytes: the MPSC slot rounds up to 24 */
};

static struct item12 item12_make(uint32_t seq)
{
	struct item12 it = {seq, ~seq, seq * 3u};
	return it;
}

static int item12_ok(struct item12 it, uint32_t seq)
{
	return it.seq == seq && it.inv == ~seq && it.x3 == seq * 3u;
}

static void test_mpsc_single(void)
{
	struct ts_err e = {0};
	struct ring_mpsc r;
	T_CHECK(ring_mpsc_init(&r, 8, sizeof(struct item12), &e) == 0, "%s", e.msg);
	T_CHECK(((uintptr_t)r.ctl & (RING_LINE_BYTES - 1)) == 0, "control block not line-aligned");
	T_CHECK((uintptr_t)&r.ctl->head - (uintptr_t)&r.ctl->tail >= RING_LINE_BYTES, "head and tail share a line");
	T_CHECK(r.slot_bytes == 24, "slot_bytes %u", r.slot_bytes);
	uint64_t allocs = ts_alloc_count();
	struct item12 it;

	T_CHECK(ring_mpsc_pop(&r, &it) == 0, "pop on an empty ring");
	T_CHECK(ring_mpsc_count_approx(&r) == 0, "count %u", ring_mpsc_count_approx(&r));
	int ok = 1;
	for (uint32_t i = 0; i < 8; i++) {
		it = item12_make(i);
		ok &= ring_mpsc_push(&r, &it) == 0;
	}
	T_CHECK(ok, "8 pushes into capacity 8");
	it = item12_make(99);
	T_CHECK(ring_mpsc_push(&r, &it) == -E_NOSPACE, "9th push");
	T_CHECK(ring_mpsc_count_approx(&r) == 8, "count %u", ring_mpsc_count_approx(&r));
	T_CHECK(ring_mpsc_pop(&r, &it) == 1 && item12_ok(it, 0), "first pop seq %u", it.seq);
	it = item12_make(8);
	T_CHECK(ring_mpsc_push(&r, &it) == 0, "one pop makes room for one push");
	T_CHECK(ring_mpsc_push(&r, &it) == -E_NOSPACE, "and only one");
	ok = 1;
	for (uint32_t i = 1; i <= 8; i++)
		ok &= ring_mpsc_pop(&r, &it) == 1 && item12_ok(it, i);
	T_CHECK(ok, "FIFO order 1..8");
	T_CHECK(ring_mpsc_pop(&r, &it) == 0, "empty again");
	T_CHECK(ring_mpsc_count_approx(&r) == 0, "count %u", ring_mpsc_count_approx(&r));

	/* Many laps, with every fill level from 1 to capacity. */
	uint32_t in = 9, out = 9;
	int bad = 0;
	for (int lap = 0; lap < 20000; lap++) {
		uint32_t k = 1 + (uint32_t)lap % 8;
		for (uint32_t j = 0; j < k; j++) {
			it = item12_make(in++);
			bad += ring_mpsc_push(&r, &it) != 0;
		}
		bad += ring_mpsc_count_approx(&r) != k;
		for (uint32_t j = 0; j < k; j++)
			bad += !(ring_mpsc_pop(&r, &it) == 1 && item12_ok(it, out++));
		bad += ring_mpsc_pop(&r, &it) != 0;
	}
	T_CHECK(bad == 0 && in == out, "%d mismatches over %u elements (%u laps of the ring)", bad, in, in / 8);
	T_CHECK(ts_alloc_count() == allocs, "push/pop allocated %llu times",
	        (unsigned long long)(ts_alloc_count() - allocs));
	ring_mpsc_free(&r);
}

static void test_spsc_single(void)
{
	struct ts_err e = {0};
	struct ring_spsc r;
	T_CHECK(ring_spsc_init(&r, 16, sizeof(uint32_t), &e) == 0, "%s", e.msg);
	T_CHECK(((uintptr_t)r.ctl & (RING_LINE_BYTES - 1)) == 0, "control block not line-aligned");
	T_CHECK((uintptr_t)&r.ctl->head - (uintptr_t)&r.ctl->tail >= RING_LINE_BYTES, "head and tail share a line");
	uint64_t allocs = ts_alloc_count();
	uint32_t v, buf[64];

	T_CHECK(ring_spsc_pop(&r, &v) == 0, "pop on an empty ring");
	T_CHECK(ring_spsc_pop_n(&r, buf, 64) == 0, "pop_n on an empty ring");
	int ok = 1;
	for (uint32_t i = 0; i < 16; i++)
		ok &= ring_spsc_push(&r, &i) == 0;
	T_CHECK(ok, "16 pushes into capacity 16");
	v = 99;
	T_CHECK(ring_spsc_push(&r, &v) == -E_NOSPACE, "17th push");
	T_CHECK(ring_spsc_count_approx(&r) == 16, "count %u", ring_spsc_count_approx(&r));
	T_CHECK(ring_spsc_pop_n(&r, buf, 0) == 0, "pop_n of 0");
	T_CHECK(ring_spsc_pop(&r, &v) == 1 && v == 0, "first pop %u", v);
	v = 16;
	T_CHECK(ring_spsc_push(&r, &v) == 0, "one pop makes room for one push");
	T_CHECK(ring_spsc_push(&r, &v) == -E_NOSPACE, "and only one");
	T_CHECK(ring_spsc_pop_n(&r, buf, 5) == 5, "pop_n 5");
	T_CHECK(ring_spsc_pop_n(&r, buf + 5, 64) == 11, "pop_n the rest, across the end of the buffer");
	ok = 1;
	for (uint32_t i = 0; i < 16; i++)
		ok &= buf[i] == i + 1;
	T_CHECK(ok, "FIFO order 1..16 through pop_n");
	T_CHECK(ring_spsc_pop(&r, &v) == 0, "empty again");

	uint32_t in = 17, out = 17;
	int bad = 0;
	for (int lap = 0; lap < 20000; lap++) {
		uint32_t k = 1 + (uint32_t)lap % 16, m = 1 + (uint32_t)lap % 7;
		for (uint32_t j = 0; j < k; j++) {
			v = in++;
			bad += ring_spsc_push(&r, &v) != 0;
		}
		bad += ring_spsc_count_approx(&r) != k;
		uint32_t got = 0;
		while (got < k) {
			uint32_t n = (lap & 1) ? ring_spsc_pop_n(&r, buf, m) : (uint32_t)ring_spsc_pop(&r, buf);
			if (n == 0) {
				bad++;
				break;
			}
			for (uint32_t j = 0; j < n; j++)
				bad += buf[j] != out++;
			got += n;
		}
		bad += got != k;
		bad += ring_spsc_pop(&r, &v) != 0;
	}
	T_CHECK(bad == 0 && in == out, "%d mismatches over %u elements", bad, in);
	T_CHECK(ts_alloc_count() == allocs, "push/pop allocated");
	ring_spsc_free(&r);
}

/* ------------------------------------------------------------ SPSC stress */

struct spsc_job {
	struct ring_spsc *r;
	uint64_t n;
	/* consumer's results */
	uint64_t sum, bad;
};

static void *spsc_producer(void *arg)
{
	struct spsc_job *j = arg;
	unsigned spins = 0;
	for (uint64_t i = 1; i <= j->n; i++)
		while (ring_spsc_push(j->r, &i) != 0)
			backoff(&spins);
	return NULL;
}

/* Alternates between single pops and batches, checking strict order. */
static void *spsc_consumer(void *arg)
{
	struct spsc_job *j = arg;
	uint64_t expect = 1, buf[16];
	unsigned spins = 0;
	while (expect <= j->n) {
		uint32_t n = (expect >> 12) & 1 ? ring_spsc_pop_n(j->r, buf, 16) : (uint32_t)ring_spsc_pop(j->r, buf);
		if (n == 0) {
			backoff(&spins);
			continue;
		}
		for (uint32_t i = 0; i < n; i++) {
			if (buf[i] != expect) {
				if (j->bad++ < 5)
					fprintf(stderr, "spsc: got %llu, expected %llu\n", (unsigned long long)buf[i],
					        (unsigned long long)expect);
				expect = buf[i];
			}
			j->sum += buf[i];
			expect++;
		}
	}
	return NULL;
}

static void test_spsc_stress(void)
{
	struct ts_err e = {0};
	struct ring_spsc r;
	T_CHECK(ring_spsc_init(&r, 64, sizeof(uint64_t), &e) == 0, "%s", e.msg);
	struct spsc_job j = {&r, scaled(10000000), 0, 0};
	double t0 = ts_now();
	pthread_t p = spawn(spsc_producer, &j), c = spawn(spsc_consumer, &j);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	double dt = ts_now() - t0;
	T_CHECK(j.bad == 0, "%llu elements out of order", (unsigned long long)j.bad);
	T_CHECK(j.sum == j.n * (j.n + 1) / 2, "sum %llu, expected %llu", (unsigned long long)j.sum,
	        (unsigned long long)(j.n * (j.n + 1) / 2));
	T_CHECK(ring_spsc_count_approx(&r) == 0, "ring not empty after the run");
	printf("spsc stress: %llu elements through 64 slots in %.2f s\n", (unsigned long long)j.n, dt);
	ring_spsc_free(&r);
}

/* ------------------------------------------------------------ MPSC stress */

#define MP_PRODUCERS 4

struct mp_item {
	uint32_t id;
	uint32_t check; /* a function of id and seq: catches a torn copy */
	uint64_t seq;
};

static uint32_t mp_check(uint32_t id, uint64_t seq)
{
	return (uint32_t)(seq * 0x9e3779b97f4a7c15ull >> 32) ^ (id * 0x85ebca6bu);
}

struct mp_producer {
	struct ring_mpsc *r;
	uint32_t id;
	uint64_t n;         /* elements to push; with stop_at_full, at most this many */
	int stop_at_full;   /* push until the first -E_NOSPACE, then stop */
	int no_check;       /* benchmark: skip the full check's extra load of head */
	uint64_t pushed;    /* results */
	uint64_t fulls;     /* -E_NOSPACE returns */
	uint64_t bad_fulls; /* -E_NOSPACE while the ring was provably not full, or another error */
};

/* Every -E_NOSPACE is checked: head was read (acquire) before the push; if the
 * push failed at position pos, the consumer had not freed pos - capacity when
 * the push looked, so pos >= head + capacity, and tail, read after by this
 * same thread, is >= pos. */
static void *mp_producer_run(void *arg)
{
	struct mp_producer *p = arg;
	struct ring_mpsc_ctl *c = p->r->ctl;
	unsigned spins = 0;
	for (uint64_t seq = 0; seq < p->n; seq++) {
		struct mp_item it = {p->id, mp_check(p->id, seq), seq};
		for (;;) {
			/* acquire: pairs with the release store of head in ring_mpsc_pop */
			uint64_t h = p->no_check ? 0 : atomic_load_explicit(&c->head, memory_order_acquire);
			int rc = ring_mpsc_push(p->r, &it);
			if (rc == 0)
				break;
			if (p->no_check) {
				backoff(&spins);
				continue;
			}
			uint64_t t = atomic_load_explicit(&c->tail, memory_order_relaxed);
			p->fulls++;
			if (rc != -E_NOSPACE || t - h < p->r->capacity)
				p->bad_fulls++;
			/* relaxed: a stop request, nothing to hand over */
			if (p->stop_at_full || atomic_load_explicit(&g_abort, memory_order_relaxed))
				return NULL;
			backoff(&spins);
		}
		p->pushed++;
	}
	return NULL;
}

struct mp_consumer {
	uint64_t next[MP_PRODUCERS]; /* next seq expected from each producer */
	uint64_t got, bad;
};

static int mp_take(struct mp_consumer *m, const struct mp_item *it)
{
	if (it->id >= MP_PRODUCERS || it->check != mp_check(it->id, it->seq) || it->seq != m->next[it->id]) {
		if (m->bad++ < 5)
			fprintf(stderr, "mpsc: got id %u seq %llu check %08x, expected seq %llu\n", it->id,
			        (unsigned long long)it->seq, it->check,
			        it->id < MP_PRODUCERS ? (unsigned long long)m->next[it->id] : 0ull);
		if (it->id >= MP_PRODUCERS)
			return 0;
	}
	m->next[it->id] = it->seq + 1;
	m->got++;
	return 1;
}

static void test_mpsc_stress(void)
{
	struct ts_err e = {0};
	struct ring_mpsc r;
	T_CHECK(ring_mpsc_init(&r, 256, sizeof(struct mp_item), &e) == 0, "%s", e.msg);
	uint64_t n = scaled(2000000);
	struct mp_producer p[MP_PRODUCERS];
	pthread_t t[MP_PRODUCERS];
	struct mp_consumer m = {{0}, 0, 0};
	double t0 = ts_now();
	for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
		p[i] = (struct mp_producer){.r = &r, .id = i, .n = n};
		t[i] = spawn(mp_producer_run, &p[i]);
	}
	unsigned spins = 0;
	uint64_t got_seen = 0;
	double seen_at = ts_now();
	struct mp_item it;
	while (m.got < MP_PRODUCERS * n) {
		if (ring_mpsc_pop(&r, &it)) {
			mp_take(&m, &it);
			continue;
		}
		backoff(&spins);
		if (spins != 0)
			continue;
		double now = ts_now();
		if (m.got != got_seen) {
			got_seen = m.got;
			seen_at = now;
		} else if (now - seen_at > 20.0) {
			/* nothing for 20 s: elements were lost; release the producers and report */
			atomic_store_explicit(&g_abort, 1, memory_order_relaxed);
			break;
		}
	}
	uint64_t fulls = 0, bad_fulls = 0;
	for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
		pthread_join(t[i], NULL);
		fulls += p[i].fulls;
		bad_fulls += p[i].bad_fulls;
		T_CHECK(m.next[i] == n && p[i].pushed == n, "producer %u: pushed %llu, consumer saw %llu of %llu", i,
		        (unsigned long long)p[i].pushed, (unsigned long long)m.next[i], (unsigned long long)n);
	}
	double dt = ts_now() - t0;
	T_CHECK(m.bad == 0, "%llu elements out of order, torn or duplicated", (unsigned long long)m.bad);
	T_CHECK(m.got == MP_PRODUCERS * n, "consumer got %llu of %llu", (unsigned long long)m.got,
	        (unsigned long long)(MP_PRODUCERS * n));
	T_CHECK(bad_fulls == 0, "%llu pushes failed while the ring was not full", (unsigned long long)bad_fulls);
	T_CHECK(ring_mpsc_pop(&r, &it) == 0 && ring_mpsc_count_approx(&r) == 0, "ring not empty after the run");
	printf("mpsc stress: %d producers x %llu elements through 256 slots in %.2f s (%llu full returns, all "
	       "checked)\n",
	       MP_PRODUCERS, (unsigned long long)n, dt, (unsigned long long)fulls);
	ring_mpsc_free(&r);
}

/* No consumer: producers race to fill the ring, each stopping at its first
 * -E_NOSPACE. Exactly capacity pushes must succeed, in every round. */
static void test_mpsc_fill_race(void)
{
	struct ts_err e = {0};
	struct ring_mpsc r;
	const uint32_t cap = 1024;
	T_CHECK(ring_mpsc_init(&r, cap, sizeof(struct mp_item), &e) == 0, "%s", e.msg);
	int rounds = (int)(scaled(200000) / 10000), bad_rounds = 0;
	uint64_t bad_fulls = 0, bad_items = 0;
	for (int round = 0; round < rounds; round++) {
		struct mp_producer p[MP_PRODUCERS];
		pthread_t t[MP_PRODUCERS];
		for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
			p[i] = (struct mp_producer){.r = &r, .id = i, .n = cap, .stop_at_full = 1};
			t[i] = spawn(mp_producer_run, &p[i]);
		}
		uint64_t total = 0;
		for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
			pthread_join(t[i], NULL);
			total += p[i].pushed;
			bad_fulls += p[i].bad_fulls;
		}
		bad_rounds += total != cap || ring_mpsc_count_approx(&r) != cap;
		struct mp_consumer m = {{0}, 0, 0};
		struct mp_item it;
		while (ring_mpsc_pop(&r, &it))
			mp_take(&m, &it);
		bad_items += m.bad;
		for (uint32_t i = 0; i < MP_PRODUCERS; i++)
			bad_items += m.next[i] != p[i].pushed;
	}
	T_CHECK(bad_rounds == 0, "%d of %d rounds did not fill exactly %u slots", bad_rounds, rounds, cap);
	T_CHECK(bad_fulls == 0, "%llu pushes failed while the ring was not full", (unsigned long long)bad_fulls);
	T_CHECK(bad_items == 0, "%llu elements lost, duplicated or out of order", (unsigned long long)bad_items);
	ring_mpsc_free(&r);
}

/* ------------------------------------------------------------ wake-ups */

static void test_wake_coalesce(void)
{
	struct ts_err e = {0};
	struct ring_wake w;
	T_CHECK(ring_wake_init(&w, &e) == 0, "%s", e.msg);
	struct pollfd pfd = {ring_wake_fd(&w), POLLIN, 0};
	T_CHECK(ring_wake_drain(&w) == 0, "drain of a fresh wake");
	T_CHECK(poll(&pfd, 1, 0) == 0, "fresh eventfd readable");
	int rc = 0;
	for (int i = 0; i < 1000; i++)
		rc |= ring_wake_notify(&w);
	T_CHECK(rc == 0, "notify failed");
	T_CHECK(poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN), "not readable after notify");
	T_CHECK(ring_wake_drain(&w) == 1, "1000 notifies should cost one write(2)");
	T_CHECK(poll(&pfd, 1, 0) == 0, "readable after drain");
	T_CHECK(ring_wake_drain(&w) == 0, "second drain");
	T_CHECK(ring_wake_notify(&w) == 0 && ring_wake_drain(&w) == 1, "notify after drain writes again");
	ring_wake_free(&w);
	T_CHECK(w.fd == -1 && !w.open, "free leaves fd -1");
}

struct wake_job {
	struct ring_spsc *r;
	struct ring_wake *w;
	_Atomic int polling;
	int poll_rc;
	uint32_t value;
	int popped;
	double waited_s;
};

static void *wake_waiter(void *arg)
{
	struct wake_job *j = arg;
	struct pollfd pfd = {ring_wake_fd(j->w), POLLIN, 0};
	ring_wake_drain(j->w);
	j->popped = ring_spsc_pop(j->r, &j->value);
	double t0 = ts_now();
	/* release: pairs with the main thread's acquire load; t0 is taken. */
	atomic_store_explicit(&j->polling, 1, memory_order_release);
	j->poll_rc = poll(&pfd, 1, 5000);
	j->waited_s = ts_now() - t0;
	ring_wake_drain(j->w);
	if (!j->popped)
		j->popped = ring_spsc_pop(j->r, &j->value);
	return NULL;
}

/* The waiter blocks in poll(); 50 ms later the producer pushes and notifies. */
static void test_wake_blocked(void)
{
	struct ts_err e = {0};
	struct ring_spsc r;
	struct ring_wake w;
	T_CHECK(ring_spsc_init(&r, 4, sizeof(uint32_t), &e) == 0, "%s", e.msg);
	T_CHECK(ring_wake_init(&w, &e) == 0, "%s", e.msg);
	struct wake_job j = {.r = &r, .w = &w};
	pthread_t t = spawn(wake_waiter, &j);
	/* acquire: pairs with the waiter's release store. */
	while (!atomic_load_explicit(&j.polling, memory_order_acquire))
		sched_yield();
	sleep_ms(50);
	uint32_t v = 42;
	T_CHECK(ring_spsc_push(&r, &v) == 0 && ring_wake_notify(&w) == 0, "push + notify");
	pthread_join(t, NULL);
	T_CHECK(j.poll_rc == 1, "poll returned %d", j.poll_rc);
	T_CHECK(j.popped == 1 && j.value == 42, "waiter popped %d (%u)", j.popped, j.value);
	T_CHECK(j.waited_s >= 0.045 && j.waited_s < 4.0, "waited %.3f s: should block ~0.05 s", j.waited_s);
	printf("wake: poll blocked %.1f ms, woken by notify\n", j.waited_s * 1e3);
	ring_wake_free(&w);
	ring_spsc_free(&r);
}

struct e2e_producer {
	struct ring_mpsc *r;
	struct ring_wake *w;
	uint32_t id;
	uint64_t n;
	int err;
};

static void *e2e_producer_run(void *arg)
{
	struct e2e_producer *p = arg;
	unsigned spins = 0;
	for (uint64_t seq = 0; seq < p->n; seq++) {
		struct mp_item it = {p->id, mp_check(p->id, seq), seq};
		while (ring_mpsc_push(p->r, &it) != 0)
			backoff(&spins);
		p->err |= ring_wake_notify(p->w);
		if ((seq & 255) == 0)
			sleep_ms(0); /* let the waiter empty the ring and sleep now and then */
	}
	return NULL;
}

/* The full protocol under load: producers push + notify, the waiter drains,
 * pops until empty and polls. A poll that times out with an element in the
 * ring is a lost wake-up. */
static void test_wake_no_lost(void)
{
	enum { NP = 3 };
	struct ts_err e = {0};
	struct ring_mpsc r;
	struct ring_wake w;
	T_CHECK(ring_mpsc_init(&r, 64, sizeof(struct mp_item), &e) == 0, "%s", e.msg);
	T_CHECK(ring_wake_init(&w, &e) == 0, "%s", e.msg);
	uint64_t n = scaled(300000);
	struct e2e_producer p[NP];
	pthread_t t[NP];
	for (uint32_t i = 0; i < NP; i++) {
		p[i] = (struct e2e_producer){&r, &w, i, n, 0};
		t[i] = spawn(e2e_producer_run, &p[i]);
	}
	struct mp_consumer m = {{0}, 0, 0};
	struct pollfd pfd = {ring_wake_fd(&w), POLLIN, 0};
	uint64_t writes = 0, polls = 0, lost = 0;
	int timeouts = 0, drain_err = 0;
	struct mp_item it;
	while (m.got < NP * n && timeouts < 5) {
		int d = ring_wake_drain(&w);
		drain_err |= d < 0;
		writes += d > 0 ? (uint64_t)d : 0;
		while (ring_mpsc_pop(&r, &it))
			mp_take(&m, &it);
		if (m.got == NP * n)
			break;
		polls++;
		if (poll(&pfd, 1, 1000) == 0) {
			timeouts++;
			lost += ring_mpsc_count_approx(&r) != 0;
		}
	}
	int perr = 0;
	for (uint32_t i = 0; i < NP; i++) {
		pthread_join(t[i], NULL);
		perr |= p[i].err;
	}
	T_CHECK(lost == 0, "%llu lost wake-ups (poll timed out with elements waiting)", (unsigned long long)lost);
	T_CHECK(m.got == NP * n && m.bad == 0, "got %llu of %llu, %llu bad", (unsigned long long)m.got,
	        (unsigned long long)(NP * n), (unsigned long long)m.bad);
	T_CHECK(perr == 0 && drain_err == 0, "notify or drain failed");
	printf("wake: %d producers x %llu push+notify: %llu write(2)s (%.1f pushes each), %llu polls, %d timeouts\n",
	       NP, (unsigned long long)n, (unsigned long long)writes, (double)(NP * n) / (double)(writes ? writes : 1),
	       (unsigned long long)polls, timeouts);
	ring_wake_free(&w);
	ring_mpsc_free(&r);
}

/* ------------------------------------------------------------ benchmark */

static void bench(void)
{
	struct ts_err e = {0};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	/* one thread: the cost of the operations themselves, no sharing */
	struct ring_spsc s;
	struct ring_mpsc m;
	uint64_t n = scaled(20000000), v = 0, sink = 0;
	if (ring_spsc_init(&s, 1024, 8, &e) || ring_mpsc_init(&m, 1024, 8, &e)) {
		fprintf(stderr, "bench: %s\n", e.msg);
		return;
	}
	double t0 = ts_now();
	for (uint64_t i = 0; i < n; i++) {
		ring_spsc_push(&s, &i);
		ring_spsc_pop(&s, &v);
		sink += v;
	}
	double t1 = ts_now();
	for (uint64_t i = 0; i < n; i++) {
		ring_mpsc_push(&m, &i);
		ring_mpsc_pop(&m, &v);
		sink += v;
	}
	double t2 = ts_now();
	printf("bench (%ld cpus): 1 thread, push then pop, 8-byte elements: spsc %.1f ns, mpsc %.1f ns per pair "
	       "(sink %llu)\n",
	       ncpu, (t1 - t0) * 1e9 / (double)n, (t2 - t1) * 1e9 / (double)n, (unsigned long long)(sink & 1));
	ring_spsc_free(&s);
	ring_mpsc_free(&m);

	/* SPSC across two threads, 1024 slots */
	if (ring_spsc_init(&s, 1024, 8, &e))
		return;
	struct spsc_job j = {&s, scaled(10000000), 0, 0};
	t0 = ts_now();
	pthread_t p = spawn(spsc_producer, &j), c = spawn(spsc_consumer, &j);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	t1 = ts_now();
	printf("bench: spsc 1 producer -> 1 consumer, 1024 slots: %.1f ns per element (push/pop pair)%s\n",
	       (t1 - t0) * 1e9 / (double)j.n, j.bad ? " ORDER BROKEN" : "");
	ring_spsc_free(&s);

	/* MPSC, 4 producers, 1024 slots, 16-byte elements */
	if (ring_mpsc_init(&m, 1024, sizeof(struct mp_item), &e))
		return;
	struct mp_producer pp[MP_PRODUCERS];
	pthread_t tt[MP_PRODUCERS];
	struct mp_consumer mc = {{0}, 0, 0};
	uint64_t per = scaled(2000000);
	struct mp_item it;
	unsigned spins = 0;
	t0 = ts_now();
	for (uint32_t i = 0; i < MP_PRODUCERS; i++) {
		pp[i] = (struct mp_producer){.r = &m, .id = i, .n = per, .no_check = 1};
		tt[i] = spawn(mp_producer_run, &pp[i]);
	}
	while (mc.got < MP_PRODUCERS * per) {
		if (ring_mpsc_pop(&m, &it))
			mp_take(&mc, &it);
		else
			backoff(&spins);
	}
	t1 = ts_now();
	for (uint32_t i = 0; i < MP_PRODUCERS; i++)
		pthread_join(tt[i], NULL);
	printf("bench: mpsc %d producers -> 1 consumer, 1024 slots: %.1f ns per element (push/pop pair)%s\n",
	       MP_PRODUCERS, (t1 - t0) * 1e9 / (double)(MP_PRODUCERS * per), mc.bad ? " ORDER BROKEN" : "");
	ring_mpsc_free(&m);
}

#ifndef T_RING_DEFAULT_SCALE
#define T_RING_DEFAULT_SCALE 1.0 /* the ThreadSanitizer build (make test) uses 0.25 */
#endif

int main(void)
{
	const char *sc = getenv("T_RING_SCALE");
	g_scale = T_RING_DEFAULT_SCALE;
	if (sc && *sc) {
		g_scale = strtod(sc, NULL);
		if (!(g_scale > 0))
			g_scale = 1.0;
	}
	double t0 = ts_now();
	test_init_errors();
	test_mpsc_single();
	test_spsc_single();
	test_wake_coalesce();
	test_wake_blocked();
	test_spsc_stress();
	test_mpsc_stress();
	test_mpsc_fill_race();
	test_wake_no_lost();
	bench();
	printf("t_ring: %.2f s at T_RING_SCALE=%g\n", ts_now() - t0, g_scale);
	return T_DONE();
}
