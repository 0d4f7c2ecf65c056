/* gpu: the CUDA Driver API through dlopen, and nothing else of CUDA's.
 *
 * We declare the handful of types and constants we use ourselves (values
 * from the public cuda.h of CUDA 13.0), so the build needs no CUDA toolkit,
 * and resolve every entry point with cuGetProcAddress at API version 12000,
 * which hands back the current variant of each versioned function. */
#include "gpu.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* ------------------------------------------------------------ driver types */

typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUstream, *CUevent, *CUgraph, *CUgraphExec;
typedef unsigned long long CUdeviceptr;

/* cuLaunchKernelEx's configuration, laid out as cuda.h (CUDA 12+) has it. */
typedef struct {
	int id;
	char pad[4];
	union {
		char bytes[64];
		int programmatic_stream_serialization_allowed;
	} value;
} CUlaunchAttribute;

typedef struct {
	unsigned grid_x, grid_y, grid_z, block_x, block_y, block_z, smem_bytes;
	CUstream stream;
	CUlaunchAttribute *attrs;
	unsigned n_attrs;
} CUlaunchConfig;

enum {
	CUDA_SUCCESS = 0,
	CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6,
	CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
	CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
	CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
	CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
	CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
	CU_STREAM_NON_BLOCKING = 1,
	CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
	CU_MEMHOSTALLOC_PORTABLE = 1,
	CU_EVENT_DEFAULT = 0,
};

#define CU_FNS(X)                                                                                          \
	X(cuInit, (unsigned))                                                                              \
	X(cuDriverGetVersion, (int *))                                                                     \
	X(cuDeviceGetCount, (int *))                                                                       \
	X(cuDeviceGet, (CUdevice *, int))                                                                  \
	X(cuDeviceGetName, (char *, int, CUdevice))                                                        \
	X(cuDeviceGetAttribute, (int *, int, CUdevice))                                                    \
	X(cuDeviceTotalMem, (size_t *, CUdevice))                                                          \
	X(cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))                                               \
	X(cuDevicePrimaryCtxRelease, (CUdevice))                                                           \
	X(cuCtxSetCurrent, (CUcontext))                                                                    \
	X(cuCtxSynchronize, (void))                                                                        \
	X(cuModuleLoadData, (CUmodule *, const void *))                                                    \
	X(cuModuleUnload, (CUmodule))                                                                      \
	X(cuModuleGetFunction, (CUfunction *, CUmodule, const char *))                                     \
	X(cuFuncSetAttribute, (CUfunction, int, int))                                                      \
	X(cuMemAlloc, (CUdeviceptr *, size_t))                                                             \
	X(cuMemFree, (CUdeviceptr))                                                                        \
	X(cuMemGetInfo, (size_t *, size_t *))                                                              \
	X(cuMemcpyHtoDAsync, (CUdeviceptr, const void *, size_t, CUstream))                                \
	X(cuMemcpyDtoHAsync, (void *, CUdeviceptr, size_t, CUstream))                                      \
	X(cuMemsetD32Async, (CUdeviceptr, unsigned, size_t, CUstream))                                     \
	X(cuMemcpyDtoDAsync, (CUdeviceptr, CUdeviceptr, size_t, CUstream))                                 \
	X(cuMemHostAlloc, (void **, size_t, unsigned))                                                     \
	X(cuMemFreeHost, (void *))                                                                         \
	X(cuStreamCreate, (CUstream *, unsigned))                                                          \
	X(cuStreamDestroy, (CUstream))                                                                     \
	X(cuStreamSynchronize, (CUstream))                                                                 \
	X(cuStreamBeginCapture, (CUstream, int))                                                           \
	X(cuStreamEndCapture, (CUstream, CUgraph *))                                                       \
	X(cuGraphInstantiateWithFlags, (CUgraphExec *, CUgraph, unsigned long long))                       \
	X(cuGraphLaunch, (CUgraphExec, CUstream))                                                          \
	X(cuGraphExecDestroy, (CUgraphExec))                                                               \
	X(cuGraphDestroy, (CUgraph))                                                                       \
	X(cuEventCreate, (CUevent *, unsigned))                                                            \
	X(cuEventRecord, (CUevent, CUstream))                                                              \
	X(cuEventSynchronize, (CUevent))                                                                   \
	X(cuEventElapsedTime, (float *, CUevent, CUevent))                                                 \
	X(cuEventDestroy, (CUevent))                                                                       \
	X(cuLaunchKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, \
			   CUstream, void **, void **))                                                    \
	X(cuLaunchKernelEx, (const CUlaunchConfig *, CUfunction, void **, void **))                         \
	X(cuGetErrorName, (CUresult, const char **))

#define CU_PTR(name, args) static CUresult (*p_##name) args;
CU_FNS(CU_PTR)
#undef CU_PTR

static void *libcuda;
static CUevent ev_begin, ev_end;

static const char *cu_err(CUresult r)
{
	const char *s = NULL;
	if (p_cuGetErrorName && p_cuGetErrorName(r, &s) == CUDA_SUCCESS && s)
		return s;
	return "CUDA_ERROR_?";
}

/* Checks a driver call; logs file, line, the call and the driver's error name. */
#define CU(call) cu_check((call), #call, __FILE__, __LINE__)
static int cu_check(CUresult r, const char *what, const char *file, int line)
{
	if (r == CUDA_SUCCESS)
		return 0;
	log_error("cuda: %s failed: %s (%d) at %s:%d", what, cu_err(r), r, file, line);
	return -E_INTERNAL;
}

static int load_driver(struct ts_err *e)
{
	typedef CUresult (*gpa_v2_t)(const char *, void **, int, unsigned long long, int *);
	typedef CUresult (*gpa_v1_t)(const char *, void **, int, unsigned long long);
	if (libcuda)
		return 0;
	libcuda = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!libcuda)
		return ts_errf(e, E_UNSUPPORTED, "no NVIDIA driver: cannot load libcuda.so.1 (%s)", dlerror());
	gpa_v2_t gpa2 = (gpa_v2_t)(uintptr_t)dlsym(libcuda, "cuGetProcAddress_v2");
	gpa_v1_t gpa1 = (gpa_v1_t)(uintptr_t)dlsym(libcuda, "cuGetProcAddress");
	if (!gpa2 && !gpa1)
		return ts_errf(e, E_UNSUPPORTED, "libcuda.so.1 has no cuGetProcAddress: the driver is older than CUDA 11.3; update it");
#define CU_RESOLVE(name, args)                                                                                  \
	{                                                                                                       \
		void *fn = NULL;                                                                                \
		int st = 0;                                                                                     \
		CUresult r = gpa2 ? gpa2(#name, &fn, 12000, 0, &st) : gpa1(#name, &fn, 12000, 0);               \
		if (r != CUDA_SUCCESS || !fn)                                                                   \
			return ts_errf(e, E_UNSUPPORTED, "the driver lacks %s (CUDA 12 API): update the driver", \
				       #name);                                                                  \
		memcpy(&p_##name, &fn, sizeof(fn));                                                             \
	}
	CU_FNS(CU_RESOLVE)
#undef CU_RESOLVE
	return 0;
}

/* ------------------------------------------------------------ kernel table */

#define K_NAME(id, mod, name) #name,
static const char *const kernel_names[GPU_K_N] = {GPU_KERNELS(K_NAME)};
#undef K_NAME
#define K_MOD(id, mod, name) GPU_M_##mod,
static const enum gpu_module kernel_mods[GPU_K_N] = {GPU_KERNELS(K_MOD)};
#undef K_MOD
#define M_NAME(mod) #mod,
static const char *const module_names[GPU_M_N] = {GPU_MODULES(M_NAME)};
#undef M_NAME

const char *gpu_kernel_name(enum gpu_kernel k)
{
	return k < GPU_K_N ? kernel_names[k] : "?";
}

const char *gpu_module_name(enum gpu_module m)
{
	return m < GPU_M_N ? module_names[m] : "?";
}

enum gpu_module gpu_kernel_module(enum gpu_kernel k)
{
	return kernel_mods[k];
}

/* ------------------------------------------------------------ open, close */

static const char *arch_of(int major, int minor)
{
	if (major == 9 && minor == 0)
		return "90a";
	if (major == 10 && minor == 0)
		return "100a";
	return NULL;
}

int gpu_probe(int ordinal, struct ts_err *e)
{
	CUdevice dev;
	int n = 0, major = 0, minor = 0, r;
	char name[256] = "?";
	if ((r = load_driver(e)) < 0)
		return r;
	if (p_cuInit(0) != CUDA_SUCCESS || p_cuDeviceGetCount(&n) != CUDA_SUCCESS || n == 0)
		return ts_errf(e, E_UNSUPPORTED, "no CUDA device: the driver loaded but found no GPU");
	if (ordinal < 0 || ordinal >= n)
		return ts_errf(e, E_RANGE, "GPU %d does not exist: this machine has %d (ordinals 0..%d)", ordinal, n, n - 1);
	if (p_cuDeviceGet(&dev, ordinal) != CUDA_SUCCESS ||
	    p_cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) != CUDA_SUCCESS ||
	    p_cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev) != CUDA_SUCCESS)
		return ts_errf(e, E_UNSUPPORTED, "GPU %d: cannot query the device", ordinal);
	p_cuDeviceGetName(name, sizeof(name), dev);
	if (!arch_of(major, minor))
		return ts_errf(e, E_UNSUPPORTED, "GPU %d (%s) is sm_%d%d: this binary carries kernels for sm_90a (H100, H200) and sm_100a (B200) only",
			       ordinal, name, major, minor);
	return 0;
}

int gpu_open(struct gpu *g, int ordinal, struct ts_err *e)
{
	struct gpu_info *in = &g->info;
	CUdevice dev;
	int n = 0, r;
	size_t total = 0, free_b = 0;

	double t0 = ts_now();
	memset(g, 0, sizeof(*g));
	if ((r = load_driver(e)) < 0)
		return r;
	if (p_cuInit(0) != CUDA_SUCCESS || p_cuDeviceGetCount(&n) != CUDA_SUCCESS || n == 0)
		return ts_errf(e, E_UNSUPPORTED, "no CUDA device: the driver loaded but found no GPU");
	if (ordinal < 0 || ordinal >= n)
		return ts_errf(e, E_RANGE, "GPU %d does not exist: this machine has %d (ordinals 0..%d)", ordinal, n,
			       n - 1);
	if (CU(p_cuDeviceGet(&dev, ordinal)) || CU(p_cuDeviceGetName(in->name, sizeof(in->name), dev)) ||
	    CU(p_cuDeviceGetAttribute(&in->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)) ||
	    CU(p_cuDeviceGetAttribute(&in->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)) ||
	    CU(p_cuDeviceGetAttribute(&in->n_sm, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)) ||
	    CU(p_cuDeviceGetAttribute(&in->l2_bytes, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev)) ||
	    CU(p_cuDeviceGetAttribute(&in->smem_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev)) ||
	    CU(p_cuDriverGetVersion(&in->driver_version)))
		return ts_errf(e, E_INTERNAL, "GPU %d: cannot query the device", ordinal);
	in->ordinal = ordinal;
	const char *arch = arch_of(in->cc_major, in->cc_minor);
	if (!arch)
		return ts_errf(e, E_UNSUPPORTED, "GPU %d (%s) is sm_%d%d: this binary carries kernels for sm_90a (H100, H200) and sm_100a (B200) only",
			       ordinal, in->name, in->cc_major, in->cc_minor);
	if (CU(p_cuDevicePrimaryCtxRetain((CUcontext *)&g->ctx, dev)) || CU(p_cuCtxSetCurrent(g->ctx)))
		return ts_errf(e, E_INTERNAL, "GPU %d: cannot create a context", ordinal);
	if (CU(p_cuMemGetInfo(&free_b, &total)))
		goto fail;
	in->mem_total = total;
	in->mem_free = free_b;
	in->driver_ms = (ts_now() - t0) * 1e3;
	t0 = ts_now();
	for (int m = 0; m < GPU_M_N; m++) {
		size_t bytes;
		const void *img = gpu_cubin((enum gpu_module)m, arch, &bytes);
		CUresult cr;
		if (!img) {
			gpu_close(g);
			return ts_errf(e, E_INTERNAL, "no embedded cubin %s for sm_%s: rebuild with make cubins", module_names[m], arch);
		}
		if ((cr = p_cuModuleLoadData((CUmodule *)&g->mod[m], img)) != CUDA_SUCCESS) {
			gpu_close(g);
			return ts_errf(e, E_INTERNAL, "GPU %d: loading cubin %s (sm_%s, %zu bytes) failed: %s", ordinal,
				       module_names[m], arch, bytes, cu_err(cr));
		}
	}
	for (int k = 0; k < GPU_K_N; k++)
		if (p_cuModuleGetFunction((CUfunction *)&g->fn[k], g->mod[kernel_mods[k]], kernel_names[k]) != CUDA_SUCCESS) {
			gpu_close(g);
			return ts_errf(e, E_INTERNAL, "cubin %s (sm_%s) lacks kernel %s: rebuild with make cubins",
				       module_names[kernel_mods[k]], arch, kernel_names[k]);
		}
	in->cubins_ms = (ts_now() - t0) * 1e3;
	const char *pdl = getenv("TS_PDL"); /* TS_PDL=0: plain launches, to measure what PDL buys */
	g->pdl = !(pdl && !strcmp(pdl, "0"));
	if (CU(p_cuStreamCreate((CUstream *)&g->stream, CU_STREAM_NON_BLOCKING)) ||
	    CU(p_cuEventCreate(&ev_begin, CU_EVENT_DEFAULT)) || CU(p_cuEventCreate(&ev_end, CU_EVENT_DEFAULT)))
		goto fail;
	return 0;
fail:
	gpu_close(g);
	return ts_errf(e, E_INTERNAL, "GPU %d: context setup failed (see the log)", ordinal);
}

void gpu_close(struct gpu *g)
{
	if (!libcuda || !g->ctx) {
		memset(g, 0, sizeof(*g));
		return;
	}
	p_cuCtxSynchronize();
	if (g->arena)
		p_cuMemFree(g->arena);
	if (g->stream)
		p_cuStreamDestroy((CUstream)g->stream);
	if (ev_begin)
		p_cuEventDestroy(ev_begin);
	if (ev_end)
		p_cuEventDestroy(ev_end);
	ev_begin = ev_end = NULL;
	for (int m = 0; m < GPU_M_N; m++)
		if (g->mod[m])
			p_cuModuleUnload(g->mod[m]);
	CUdevice dev;
	if (p_cuDeviceGet(&dev, g->info.ordinal) == CUDA_SUCCESS)
		p_cuDevicePrimaryCtxRelease(dev);
	memset(g, 0, sizeof(*g));
}

/* ------------------------------------------------------------ memory */

int gpu_arena_init(struct gpu *g, uint64_t bytes, struct ts_err *e)
{
	CUdeviceptr p;
	CUresult r = p_cuMemAlloc(&p, (size_t)bytes);
	if (r != CUDA_SUCCESS)
		return ts_errf(e, E_NOMEM, "GPU %d: cannot allocate the %.2f GB arena (%s): lower [engine] kv_mem_fraction or kv_tokens",
			       g->info.ordinal, (double)bytes / 1e9, cu_err(r));
	g->arena = p;
	g->arena_bytes = bytes;
	g->arena_used = 0;
	g->n_mallocs++;
	return 0;
}

gpu_ptr gpu_arena_take(struct gpu *g, uint64_t bytes)
{
	uint64_t off = (g->arena_used + 255) & ~(uint64_t)255;
	if (off + bytes > g->arena_bytes)
		return 0;
	g->arena_used = off + bytes;
	return g->arena + off;
}

void *gpu_host_alloc(struct gpu *g, size_t bytes)
{
	void *p = NULL;
	if (p_cuMemHostAlloc(&p, bytes, CU_MEMHOSTALLOC_PORTABLE) != CUDA_SUCCESS)
		return NULL;
	return p;
}

void gpu_host_free(struct gpu *g, void *p)
{
	if (p)
		p_cuMemFreeHost(p);
}

int gpu_h2d(struct gpu *g, gpu_ptr dst, const void *src, size_t bytes)
{
	return CU(p_cuMemcpyHtoDAsync(dst, src, bytes, (CUstream)g->stream));
}

int gpu_d2h(struct gpu *g, void *dst, gpu_ptr src, size_t bytes)
{
	return CU(p_cuMemcpyDtoHAsync(dst, src, bytes, (CUstream)g->stream));
}

int gpu_memset32(struct gpu *g, gpu_ptr dst, uint32_t value, size_t n_words)
{
	return CU(p_cuMemsetD32Async(dst, value, n_words, (CUstream)g->stream));
}

int gpu_d2d(struct gpu *g, gpu_ptr dst, gpu_ptr src, size_t bytes)
{
	return CU(p_cuMemcpyDtoDAsync(dst, src, bytes, (CUstream)g->stream));
}

int gpu_sync(struct gpu *g)
{
	return CU(p_cuStreamSynchronize((CUstream)g->stream));
}

/* ------------------------------------------------------------ launches */

int gpu_set_smem(struct gpu *g, enum gpu_kernel k, unsigned bytes)
{
	return CU(p_cuFuncSetAttribute((CUfunction)g->fn[k], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)bytes));
}

/* With programmatic dependent launch (PDL) a kernel may start while its
 * predecessor on the stream drains: every kernel of kernels/ calls
 * pdl_wait() before it touches anything its predecessors write, and may do
 * independent work (weight prefetch) before that. */
int gpu_launch(struct gpu *g, enum gpu_kernel k, unsigned gx, unsigned gy, unsigned gz, unsigned block,
	       unsigned smem_bytes, const void *args, size_t args_bytes)
{
	void *params[1] = {(void *)args};
	CUlaunchAttribute at = {.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION};
	CUlaunchConfig cfg = {gx, gy, gz, block, 1, 1, smem_bytes, (CUstream)g->stream, &at, g->pdl ? 1u : 0u};
	at.value.programmatic_stream_serialization_allowed = 1;
	(void)args_bytes;
	CUresult r = p_cuLaunchKernelEx(&cfg, (CUfunction)g->fn[k], params, NULL);
	if (r != CUDA_SUCCESS) {
		log_error("cuda: launch of %s grid (%u,%u,%u) block %u smem %u failed: %s", kernel_names[k], gx, gy, gz,
			  block, smem_bytes, cu_err(r));
		return -E_INTERNAL;
	}
	return 0;
}

/* ------------------------------------------------------------ graphs, timing */

int gpu_capture_begin(struct gpu *g)
{
	int r = CU(p_cuStreamBeginCapture((CUstream)g->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
	g->capturing = r == 0;
	return r;
}

int gpu_capture_end(struct gpu *g, gpu_graph *out)
{
	CUgraph graph = NULL;
	CUgraphExec x = NULL;
	g->capturing = 0;
	if (CU(p_cuStreamEndCapture((CUstream)g->stream, &graph)))
		return -E_INTERNAL;
	int r = CU(p_cuGraphInstantiateWithFlags(&x, graph, 0));
	p_cuGraphDestroy(graph);
	*out = (gpu_graph)x;
	return r;
}

int gpu_graph_launch(struct gpu *g, gpu_graph x)
{
	return CU(p_cuGraphLaunch((CUgraphExec)x, (CUstream)g->stream));
}

void gpu_graph_free(struct gpu *g, gpu_graph x)
{
	if (x)
		p_cuGraphExecDestroy((CUgraphExec)x);
}

int gpu_time_begin(struct gpu *g)
{
	return CU(p_cuEventRecord(ev_begin, (CUstream)g->stream));
}

int gpu_time_end(struct gpu *g, float *ms)
{
	if (CU(p_cuEventRecord(ev_end, (CUstream)g->stream)) || CU(p_cuEventSynchronize(ev_end)))
		return -E_INTERNAL;
	return CU(p_cuEventElapsedTime(ms, ev_begin, ev_end));
}

