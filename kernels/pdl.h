/* pdl.h: programmatic dependent launch (sm_90+).
 *
 * src/gpu.c launches every kernel with programmatic stream serialization, so
 * a kernel's blocks may become resident while its predecessor on the stream
 * is still running. The invariant every kernel keeps: call pdl_wait() before
 * the first access (read or write) to memory that an earlier kernel writes or
 * reads; only immutable data (the weights) may be touched before it.
 * pdl_launch_dependents() lets the next kernel start launching once every
 * block of this one has called it (or exited). Launched without the
 * attribute, both are no-ops. */
#ifndef TS_PDL_H
#define TS_PDL_H

__device__ __forceinline__ void pdl_wait(void)
{
	asm volatile("griddepcontrol.wait;" ::: "memory");
}

/* When the next kernel may start launching (TS_PDL_MODE, a build flag):
 *   0  never explicitly: it launches as this one's blocks exit
 *   1  at the start of every kernel
 *   2  at the start of short kernels, after the main loop of long ones
 * Mode 1 lets blocks of several kernels ahead sit resident in pdl_wait while
 * a long kernel still streams; mode 2 keeps that to one kernel ahead. */
#ifndef TS_PDL_MODE
#define TS_PDL_MODE 2
#endif
#ifndef TS_PDL_PREFETCH
#define TS_PDL_PREFETCH 1
#endif

__device__ __forceinline__ void pdl_launch_dependents(void)
{
	asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}

/* In short kernels (norms, rope, reduces), at their start. */
__device__ __forceinline__ void pdl_trigger_short(void)
{
#if TS_PDL_MODE >= 1
	pdl_launch_dependents();
#endif
}

/* In long kernels (GEMMs, attention, sampling), at their start ... */
__device__ __forceinline__ void pdl_trigger_long_start(void)
{
#if TS_PDL_MODE == 1
	pdl_launch_dependents();
#endif
}

/* ... and after their main loop. */
__device__ __forceinline__ void pdl_trigger_long_late(void)
{
#if TS_PDL_MODE == 2
	pdl_launch_dependents();
#endif
}

/* Warms L2 with bytes [p, p + n) (immutable data only), one 128-byte line per
 * thread step. */
__device__ __forceinline__ void pdl_prefetch_l2(const void *p, size_t n, int tid, int nthreads)
{
#if TS_PDL_PREFETCH
	const char *c = (const char *)p;
	for (size_t off = (size_t)tid * 128; off < n; off += (size_t)nthreads * 128)
		asm volatile("prefetch.global.L2 [%0];" ::"l"(c + off));
#else
	(void)p, (void)n, (void)tid, (void)nthreads;
#endif
}

#endif
