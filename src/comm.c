/* comm: the cpu twin (threads in shared memory) and NCCL through dlopen
 * (see comm.h). */
#include "comm.h"

#include <pthread.h>
#include <stdlib.h>

#ifndef TS_CPU_ONLY
#include <dlfcn.h>
#endif

#include "log.h"

/* ------------------------------------------------------------ cpu */

/* The ranks post their buffer's address in their own slot, then meet at the
 * barrier; pthread_barrier_wait orders memory, so after it every rank sees
 * every slot and every earlier write to the buffers. In the all-reduce rank
 * r owns elements [lo, hi) of every rank's buffer (share()): it reads them
 * all, adds them in rank order and writes the sum to all of them; no other
 * rank touches those elements until the second barrier, after which the
 * buffers are the callers' again. */
struct comm_cpu_group {
	int size;
	pthread_barrier_t bar;
	float *buf[COMM_MAX_RANKS];
	const float *send[COMM_MAX_RANKS];
};

int comm_cpu_group_new(struct comm_cpu_group **out, int size, struct ts_err *e)
{
	*out = NULL;
	if (size < 1 || size > COMM_MAX_RANKS)
		return ts_errf(e, E_RANGE, "comm: %d ranks (1..%d)", size, COMM_MAX_RANKS);
	struct comm_cpu_group *g = ts_alloc(sizeof(*g));
	if (!g)
		return ts_errf(e, E_NOMEM, "comm: out of memory");
	memset(g, 0, sizeof(*g));
	g->size = size;
	if (pthread_barrier_init(&g->bar, NULL, (unsigned)size)) {
		ts_free(g);
		return ts_errf(e, E_INTERNAL, "comm: cannot make a barrier of %d threads", size);
	}
	*out = g;
	return 0;
}

void comm_cpu_group_free(struct comm_cpu_group *g)
{
	if (!g)
		return;
	pthread_barrier_destroy(&g->bar);
	ts_free(g);
}

static int cpu_barrier(struct comm *c, void *stream)
{
	struct comm_cpu_group *g = c->impl;
	pthread_barrier_wait(&g->bar);
	return 0;
}

static int cpu_all_reduce_sum(struct comm *c, float *buf, size_t n, void *stream)
{
	struct comm_cpu_group *g = c->impl;
	const int N = g->size;
	g->buf[c->rank] = buf;
	pthread_barrier_wait(&g->bar);
	size_t lo = n * (size_t)c->rank / (size_t)N, hi = n * (size_t)(c->rank + 1) / (size_t)N;
	for (size_t i = lo; i < hi; i++) {
		float s = g->buf[0][i];
		for (int r = 1; r < N; r++) /* rank order, whatever the thread timing */
			s += g->buf[r][i];
		for (int r = 0; r < N; r++)
			g->buf[r][i] = s;
	}
	pthread_barrier_wait(&g->bar);
	return 0;
}

static int cpu_all_gather(struct comm *c, const float *send, float *recv, size_t n, void *stream)
{
	struct comm_cpu_group *g = c->impl;
	g->send[c->rank] = send;
	pthread_barrier_wait(&g->bar);
	for (int r = 0; r < g->size; r++)
		memcpy(recv + (size_t)r * n, g->send[r], n * sizeof(float));
	pthread_barrier_wait(&g->bar); /* every rank has read every send */
	return 0;
}

static const struct comm_ops cpu_ops = {
	.name = "cpu",
	.all_reduce_sum = cpu_all_reduce_sum,
	.all_gather = cpu_all_gather,
	.barrier = cpu_barrier,
};

void comm_cpu_init(struct comm *c, struct comm_cpu_group *g, int rank)
{
	c->ops = &cpu_ops;
	c->rank = rank;
	c->size = g->size;
	c->impl = g;
}

/* ------------------------------------------------------------ nccl */

#ifdef TS_CPU_ONLY
int comm_nccl_load(struct ts_err *e)
{
	return ts_errf(e, E_UNSUPPORTED, "this static build cannot load libnccl.so.2; use build/tokenspeed");
}

int comm_nccl_version(void)
{
	return 0;
}

int comm_nccl_init_all(struct comm *comms, int n, const int *devices, void *const *scratch, struct ts_err *e)
{
	return comm_nccl_load(e);
}

int comm_nccl_check(struct comm *c, struct ts_err *e)
{
	return comm_nccl_load(e);
}

void comm_nccl_free(struct comm *c, int abort)
{
}
#else

/* The types and constants we use, declared ourselves (values from the public
 * nccl.h of NCCL 2.18 and later), so the build needs no NCCL headers. */
typedef int ncclResult_t;
typedef void *ncclComm_t;
typedef void *cudaStream_t;
enum { ncclSuccess = 0, ncclInProgress = 7 };
enum { ncclFloat32 = 7 };
enum { ncclSum = 0 };
#define NCCL_MIN_VERSION 21800 /* 2.18.0: ncclCommInitAll, ncclCommGetAsyncError, ncclCommAbort as used here */

#define NCCL_FNS(X)                                                                                        \
	X(ncclGetVersion, (int *))                                                                         \
	X(ncclCommInitAll, (ncclComm_t *, int, const int *))                                               \
	X(ncclCommDestroy, (ncclComm_t))                                                                   \
	X(ncclCommAbort, (ncclComm_t))                                                                     \
	X(ncclCommGetAsyncError, (ncclComm_t, ncclResult_t *))                                             \
	X(ncclAllReduce, (const void *, void *, size_t, int, int, ncclComm_t, cudaStream_t))              \
	X(ncclAllGather, (const void *, void *, size_t, int, ncclComm_t, cudaStream_t))                   \
	X(ncclGroupStart, (void))                                                                          \
	X(ncclGroupEnd, (void))

#define NCCL_PTR(name, args) static ncclResult_t (*p_##name) args;
NCCL_FNS(NCCL_PTR)
#undef NCCL_PTR
static const char *(*p_ncclGetErrorString)(ncclResult_t);

static void *libnccl;
static int nccl_version;

struct nccl_comm {
	ncclComm_t comm;
	float *scratch; /* one float on the rank's device, or NULL */
};

static const char *nccl_err(ncclResult_t r)
{
	const char *s = p_ncclGetErrorString ? p_ncclGetErrorString(r) : NULL;
	return s ? s : "?";
}

/* Checks an NCCL call; logs file, line, the call and NCCL's message. */
#define NCCL(call) nccl_check((call), #call, __FILE__, __LINE__)
static int nccl_check(ncclResult_t r, const char *what, const char *file, int line)
{
	if (r == ncclSuccess || r == ncclInProgress)
		return 0;
	log_error("nccl: %s failed: %s (%d) at %s:%d", what, nccl_err(r), r, file, line);
	return -E_INTERNAL;
}

int comm_nccl_load(struct ts_err *e)
{
	if (libnccl)
		return 0;
	void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return ts_errf(e, E_UNSUPPORTED, "cannot load libnccl.so.2 (%s): install NCCL %d.%d or later (Debian/Ubuntu: libnccl2)",
			       dlerror(), NCCL_MIN_VERSION / 10000, NCCL_MIN_VERSION / 100 % 100);
#define NCCL_RESOLVE(name, args)                                                                                \
	p_##name = (ncclResult_t(*) args)(uintptr_t)dlsym(h, #name);                                            \
	if (!p_##name) {                                                                                        \
		dlclose(h);                                                                                     \
		return ts_errf(e, E_UNSUPPORTED, "libnccl.so.2 has no %s: it is older than NCCL %d.%d; update it", \
			       #name, NCCL_MIN_VERSION / 10000, NCCL_MIN_VERSION / 100 % 100);                  \
	}
	NCCL_FNS(NCCL_RESOLVE)
#undef NCCL_RESOLVE
	p_ncclGetErrorString = (const char *(*)(ncclResult_t))(uintptr_t)dlsym(h, "ncclGetErrorString");
	int v = 0;
	if (p_ncclGetVersion(&v) != ncclSuccess || v < NCCL_MIN_VERSION) {
		dlclose(h);
		return ts_errf(e, E_UNSUPPORTED, "libnccl.so.2 is version %d.%d.%d, older than %d.%d; update NCCL", v / 10000,
			       v / 100 % 100, v % 100, NCCL_MIN_VERSION / 10000, NCCL_MIN_VERSION / 100 % 100);
	}
	setenv("NCCL_ALGO", "Ring", 0); /* a fixed reduction order (comm.h), unless the operator chose otherwise */
	libnccl = h;
	nccl_version = v;
	log_info("stage=comm nccl=%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
	return 0;
}

int comm_nccl_version(void)
{
	return nccl_version;
}

static int nccl_all_reduce_sum(struct comm *c, float *buf, size_t n, void *stream)
{
	struct nccl_comm *k = c->impl;
	return NCCL(p_ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, k->comm, stream));
}

static int nccl_all_gather(struct comm *c, const float *send, float *recv, size_t n, void *stream)
{
	struct nccl_comm *k = c->impl;
	return NCCL(p_ncclAllGather(send, recv, n, ncclFloat32, k->comm, stream));
}

static int nccl_barrier(struct comm *c, void *stream)
{
	struct nccl_comm *k = c->impl;
	if (!k->scratch)
		return -E_UNSUPPORTED;
	return NCCL(p_ncclAllReduce(k->scratch, k->scratch, 1, ncclFloat32, ncclSum, k->comm, stream));
}

static const struct comm_ops nccl_ops = {
	.name = "nccl",
	.all_reduce_sum = nccl_all_reduce_sum,
	.all_gather = nccl_all_gather,
	.barrier = nccl_barrier,
};

int comm_nccl_init_all(struct comm *comms, int n, const int *devices, void *const *scratch, struct ts_err *e)
{
	int r;
	if ((r = comm_nccl_load(e)) < 0)
		return r;
	if (n < 1 || n > COMM_MAX_RANKS)
		return ts_errf(e, E_RANGE, "comm: %d GPUs (1..%d)", n, COMM_MAX_RANKS);
	ncclComm_t h[COMM_MAX_RANKS];
	struct nccl_comm *k = ts_alloc((size_t)n * sizeof(*k));
	if (!k)
		return ts_errf(e, E_NOMEM, "comm: out of memory");
	ncclResult_t nr = p_ncclCommInitAll(h, n, devices);
	if (nr != ncclSuccess) {
		ts_free(k);
		return ts_errf(e, E_INTERNAL, "nccl: ncclCommInitAll over %d GPUs (first %d) failed: %s", n, devices[0],
			       nccl_err(nr));
	}
	for (int i = 0; i < n; i++) {
		k[i].comm = h[i];
		k[i].scratch = scratch ? scratch[i] : NULL;
		comms[i].ops = &nccl_ops;
		comms[i].rank = i;
		comms[i].size = n;
		comms[i].impl = &k[i];
	}
	return 0;
}

int comm_nccl_check(struct comm *c, struct ts_err *e)
{
	struct nccl_comm *k = c->impl;
	ncclResult_t a = ncclSuccess;
	ncclResult_t r = p_ncclCommGetAsyncError(k->comm, &a);
	if (r != ncclSuccess || (a != ncclSuccess && a != ncclInProgress))
		return ts_errf(e, E_INTERNAL, "nccl: rank %d of %d: %s", c->rank, c->size,
			       nccl_err(r != ncclSuccess ? r : a));
	return 0;
}

/* Frees comms[0..size): rank 0 holds the array of every rank's state. */
void comm_nccl_free(struct comm *c, int abort)
{
	struct nccl_comm *k = c->impl;
	if (!k)
		return;
	NCCL(abort ? p_ncclCommAbort(k->comm) : p_ncclCommDestroy(k->comm));
	k->comm = NULL;
	if (c->rank == 0)
		ts_free(k);
	c->impl = NULL;
}
#endif
