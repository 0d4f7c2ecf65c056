/* k_attn_dev: a development harness, never part of the product. It runs the
 * real device test (tests/gpu/k_attn.c) and the real launcher
 * (src/gpu_attn.c) on a GPU machine before src/gpu.c is there: this file
 * implements the few src/gpu.h calls they use on top of the CUDA runtime and
 * links the kernels of kernels/attn.cu directly (included below).
 *
 * Build (repository root; sm_90a for H100/H200), objects in $O:
 *   for f in src/gpu_attn.c src/base.c src/log.c tests/gpu/k_attn.c; do
 *     cc -std=c11 -D_GNU_SOURCE -O2 -pthread -iquote src -iquote kernels -c $f -o $O/$(basename $f).o; done
 *   nvcc -O2 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Ikernels -Isrc -o $O/ka \
 *     tests/gpu/k_attn_dev.cu $O/gpu_attn.c.o $O/base.c.o $O/log.c.o $O/k_attn.c.o -lpthread -lm
 *   $O/ka [--quick] [--no-bench]
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime.h>

#include "../../kernels/attn.cu"

extern "C" {
#include "gpu.h"
#include "log.h"
}

static cudaEvent_t dev_ev0, dev_ev1;

static int dev_check(cudaError_t e, const char *what)
{
	if (e == cudaSuccess)
		return 0;
	log_error("k_attn_dev: %s: %s", what, cudaGetErrorString(e));
	return -E_INTERNAL;
}

__global__ void dev_fill32(uint32_t *p, uint32_t v, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		p[i] = v;
}

extern "C" {

int gpu_open(struct gpu *g, int ordinal, struct ts_err *e)
{
	memset(g, 0, sizeof(*g));
	cudaDeviceProp pr;
	if (cudaSetDevice(ordinal) != cudaSuccess || cudaGetDeviceProperties(&pr, ordinal) != cudaSuccess)
		return ts_errf(e, E_UNSUPPORTED, "no CUDA device %d", ordinal);
	g->info.ordinal = ordinal;
	snprintf(g->info.name, sizeof(g->info.name), "%s", pr.name);
	g->info.cc_major = pr.major;
	g->info.cc_minor = pr.minor;
	g->info.n_sm = pr.multiProcessorCount;
	g->info.l2_bytes = pr.l2CacheSize;
	g->info.smem_optin = (int)pr.sharedMemPerBlockOptin;
	g->fn[GPU_K_ATTN_DECODE] = (void *)k_attn_decode_bf16;
	g->fn[GPU_K_ATTN_PREFILL] = (void *)k_attn_prefill_bf16;
	g->fn[GPU_K_ATTN_DECODE_96] = (void *)k_attn_decode_bf16_h96;
	g->fn[GPU_K_ATTN_PREFILL_96] = (void *)k_attn_prefill_bf16_h96;
	g->fn[GPU_K_ATTN_DECODE_256] = (void *)k_attn_decode_bf16_h256;
	g->fn[GPU_K_ATTN_PREFILL_256] = (void *)k_attn_prefill_bf16_h256;
	g->fn[GPU_K_ATTN_REDUCE] = (void *)k_attn_reduce_f32;
	cudaStream_t s;
	if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess ||
	    cudaEventCreate(&dev_ev0) != cudaSuccess || cudaEventCreate(&dev_ev1) != cudaSuccess)
		return ts_errf(e, E_INTERNAL, "stream/event create failed");
	g->stream = (gpu_stream)s;
	return 0;
}

void gpu_close(struct gpu *g)
{
	if (g->arena)
		cudaFree((void *)(uintptr_t)g->arena);
	cudaStreamDestroy((cudaStream_t)g->stream);
	memset(g, 0, sizeof(*g));
}

int gpu_arena_init(struct gpu *g, uint64_t bytes, struct ts_err *e)
{
	void *p = NULL;
	if (cudaMalloc(&p, bytes) != cudaSuccess)
		return ts_errf(e, E_NOMEM, "cudaMalloc of %llu bytes failed", (unsigned long long)bytes);
	g->arena = (gpu_ptr)(uintptr_t)p;
	g->arena_bytes = bytes;
	g->arena_used = 0;
	g->n_mallocs = 1;
	return 0;
}

gpu_ptr gpu_arena_take(struct gpu *g, uint64_t bytes)
{
	uint64_t at = (g->arena_used + 255) & ~(uint64_t)255;
	if (at + bytes > g->arena_bytes)
		return 0;
	g->arena_used = at + bytes;
	return g->arena + at;
}

int gpu_launch(struct gpu *g, enum gpu_kernel k, unsigned gx, unsigned gy, unsigned gz, unsigned block,
	       unsigned smem_bytes, const void *args, size_t args_bytes)
{
	if (!g->fn[k]) {
		log_error("k_attn_dev: kernel %d not in this harness", (int)k);
		return -E_INTERNAL;
	}
	void *params[1] = {(void *)args};
	cudaError_t err = cudaLaunchKernel(g->fn[k], dim3(gx, gy, gz), dim3(block), params, smem_bytes,
					   (cudaStream_t)g->stream);
	if (err == cudaSuccess)
		err = cudaGetLastError();
	return dev_check(err, "launch");
}

int gpu_set_smem(struct gpu *g, enum gpu_kernel k, unsigned bytes)
{
	return dev_check(cudaFuncSetAttribute(g->fn[k], cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
			 "cudaFuncSetAttribute");
}

int gpu_h2d(struct gpu *g, gpu_ptr dst, const void *src, size_t bytes)
{
	return dev_check(cudaMemcpyAsync((void *)(uintptr_t)dst, src, bytes, cudaMemcpyHostToDevice,
					 (cudaStream_t)g->stream),
			 "h2d");
}

int gpu_d2h(struct gpu *g, void *dst, gpu_ptr src, size_t bytes)
{
	return dev_check(cudaMemcpyAsync(dst, (const void *)(uintptr_t)src, bytes, cudaMemcpyDeviceToHost,
					 (cudaStream_t)g->stream),
			 "d2h");
}

int gpu_memset32(struct gpu *g, gpu_ptr dst, uint32_t value, size_t n_words)
{
	dev_fill32<<<1024, 256, 0, (cudaStream_t)g->stream>>>((uint32_t *)(uintptr_t)dst, value, n_words);
	return dev_check(cudaGetLastError(), "memset32");
}

int gpu_sync(struct gpu *g)
{
	return dev_check(cudaStreamSynchronize((cudaStream_t)g->stream), "sync");
}

int gpu_capture_begin(struct gpu *g)
{
	g->capturing = 1;
	return dev_check(cudaStreamBeginCapture((cudaStream_t)g->stream, cudaStreamCaptureModeGlobal), "capture");
}

int gpu_capture_end(struct gpu *g, gpu_graph *out)
{
	cudaGraph_t gr;
	cudaGraphExec_t x;
	g->capturing = 0;
	*out = NULL;
	int rc = dev_check(cudaStreamEndCapture((cudaStream_t)g->stream, &gr), "end capture");
	if (rc)
		return rc;
	rc = dev_check(cudaGraphInstantiate(&x, gr, 0), "instantiate");
	cudaGraphDestroy(gr);
	if (rc == 0)
		*out = (gpu_graph)x;
	return rc;
}

int gpu_graph_launch(struct gpu *g, gpu_graph x)
{
	return dev_check(cudaGraphLaunch((cudaGraphExec_t)x, (cudaStream_t)g->stream), "graph launch");
}

void gpu_graph_free(struct gpu *g, gpu_graph x)
{
	cudaGraphExecDestroy((cudaGraphExec_t)x);
}

int gpu_time_begin(struct gpu *g)
{
	return dev_check(cudaEventRecord(dev_ev0, (cudaStream_t)g->stream), "event");
}

int gpu_time_end(struct gpu *g, float *ms)
{
	int rc = dev_check(cudaEventRecord(dev_ev1, (cudaStream_t)g->stream), "event");
	if (rc == 0)
		rc = dev_check(cudaEventSynchronize(dev_ev1), "event sync");
	if (rc == 0)
		rc = dev_check(cudaEventElapsedTime(ms, dev_ev0, dev_ev1), "elapsed");
	return rc;
}

} /* extern "C" */
