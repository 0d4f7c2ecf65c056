/* comm: collectives between the ranks that hold one model's shards (tensor
 * and expert parallelism).
 *
 * Owns: the communicator of each rank and the four operations the forward
 * pass needs: rank, size, an in-place f32 sum all-reduce, an all-gather and a
 * barrier. Two implementations behind one table of function pointers:
 *  - cpu: the ranks are threads of this process meeting in shared memory
 *    (a comm_cpu_group). The all-reduce adds every element in rank order
 *    0, 1, ..., size - 1 and writes the one sum back to every rank, so every
 *    rank holds bit-identical results and a run repeats bit for bit.
 *  - nccl: libnccl.so.2 through dlopen (no link-time dependency), its entry
 *    points resolved and its version checked (>= 2.18) by comm_nccl_load.
 *    One communicator per GPU of this process (ncclCommInitAll); the calls
 *    are enqueued on the caller's CUDA stream (capturable in a graph).
 *    comm_nccl_load sets NCCL_ALGO=Ring when the environment leaves it
 *    unset: with a fixed ring the reduction order is fixed, so results
 *    repeat run to run (the order differs from the cpu twin's, fp32 rounding
 *    only).
 * Does not: pick the sharding (the backends do), own device memory (the
 * caller's buffers, device pointers for nccl), start threads.
 * Threads: every rank's thread calls the same collectives in the same order;
 * a collective returns on a rank once every rank has entered it (cpu), or
 * once enqueued (nccl). The group and the communicators are made and freed
 * by one thread while no collective runs.
 */
#ifndef TS_COMM_H
#define TS_COMM_H

#include "base.h"

struct comm;

struct comm_ops {
	const char *name;
	/* buf (n floats) becomes the element-wise sum over the ranks of every
	 * rank's buf. stream: the CUDA stream (nccl), NULL (cpu). 0 or -E_*. */
	int (*all_reduce_sum)(struct comm *c, float *buf, size_t n, void *stream);
	/* recv (size * n floats) gets every rank's send (n floats), rank r's at
	 * recv + r * n. send may not overlap recv. 0 or -E_*. */
	int (*all_gather)(struct comm *c, const float *send, float *recv, size_t n, void *stream);
	/* Returns once every rank has called it (cpu); enqueues a one-float
	 * all-reduce on the communicator's scratch (nccl). 0 or -E_*. */
	int (*barrier)(struct comm *c, void *stream);
};

struct comm {
	const struct comm_ops *ops;
	int rank, size;
	void *impl;
};

static inline int comm_all_reduce_sum(struct comm *c, float *buf, size_t n, void *stream)
{
	return c->size == 1 ? 0 : c->ops->all_reduce_sum(c, buf, n, stream);
}

static inline int comm_all_gather(struct comm *c, const float *send, float *recv, size_t n, void *stream)
{
	return c->ops->all_gather(c, send, recv, n, stream);
}

static inline int comm_barrier(struct comm *c, void *stream)
{
	return c->size == 1 ? 0 : c->ops->barrier(c, stream);
}

/* ------------------------------------------------------------ cpu */

#define COMM_MAX_RANKS 64

struct comm_cpu_group;

/* A group of size ranks (1..COMM_MAX_RANKS). 0 or -E_*. */
int comm_cpu_group_new(struct comm_cpu_group **g, int size, struct ts_err *e);
void comm_cpu_group_free(struct comm_cpu_group *g);
/* c becomes rank `rank` of g (no allocation). */
void comm_cpu_init(struct comm *c, struct comm_cpu_group *g, int rank);

/* ------------------------------------------------------------ nccl */

/* Loads libnccl.so.2 once: every entry point resolved, version >= 2.18.
 * 0, or -E_UNSUPPORTED with e saying what is missing and what to do. */
int comm_nccl_load(struct ts_err *e);

/* The loaded library's version code (major * 10000 + minor * 100 + patch),
 * 0 before comm_nccl_load succeeded. */
int comm_nccl_version(void);

/* One communicator per device of devices[0..n) (CUDA ordinals), rank i on
 * devices[i], made with ncclCommInitAll; scratch[i] is a device pointer to
 * one float on device i that barrier reduces (NULL: barrier refused). The
 * caller has a context current on each device as NCCL needs. 0 or -E_*. */
int comm_nccl_init_all(struct comm *comms, int n, const int *devices, void *const *scratch, struct ts_err *e);

/* 0 while the communicator is healthy; -E_INTERNAL once NCCL reports an
 * asynchronous error (a failed or timed-out collective): the caller fails
 * the step's requests and restarts the engine. */
int comm_nccl_check(struct comm *c, struct ts_err *e);

/* Aborts outstanding work (ncclCommAbort) when abort, else destroys. Free
 * the ranks of one comm_nccl_init_all from the last to rank 0: rank 0 holds
 * the array of every rank's state and frees it. */
void comm_nccl_free(struct comm *c, int abort);

#endif
