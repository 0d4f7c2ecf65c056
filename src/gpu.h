/* gpu: the CUDA Driver API, loaded at run time.
 *
 * Owns: dlopen("libcuda.so.1") and the entry points we use (resolved through
 * cuGetProcAddress), one context per device, the cubins embedded in the
 * binary (picked by compute capability: sm_90a for Hopper, sm_100a for
 * Blackwell), the kernel table, the boot-time memory arena (one cuMemAlloc,
 * carved by gpu_arena_take; nothing is allocated after ready, and a counter
 * proves it), streams, events and CUDA graphs (stream capture).
 * Does not: call cudart, cuBLAS or any runtime library; decide what to launch
 * (fwd does).
 * Threads: the engine thread; the context is made current on it at open.
 */
#ifndef TS_GPU_H
#define TS_GPU_H

#include "base.h"

typedef unsigned long long gpu_ptr;   /* CUdeviceptr */
typedef struct gpu_stream_s *gpu_stream; /* CUstream */
typedef struct gpu_graph_s *gpu_graph;   /* CUgraphExec */

/* The kernel table: every kernel the host launches, by module (one cubin per
 * kernels/<family>.cu) and name. Tests check each name exists in every cubin. */
#define GPU_KERNELS(X)                                   \
	X(EMBED, elem, k_embed_bf16)                     \
	X(RMSNORM, elem, k_rmsnorm_bf16)                 \
	X(ROPE_KV, elem, k_rope_kv_bf16)                 \
	X(GEMM_SMALL, gemm, k_gemm_bf16_small)           \
	X(GEMM_LARGE, gemm, k_gemm_bf16_large)           \
	X(GEMM_REDUCE, gemm, k_gemm_reduce_f32)          \
	X(ATTN_DECODE, attn, k_attn_decode_bf16)         \
	X(ATTN_PREFILL, attn, k_attn_prefill_bf16)       \
	X(ATTN_DECODE_96, attn, k_attn_decode_bf16_h96)  \
	X(ATTN_PREFILL_96, attn, k_attn_prefill_bf16_h96) \
	X(ATTN_DECODE_256, attn, k_attn_decode_bf16_h256) \
	X(ATTN_PREFILL_256, attn, k_attn_prefill_bf16_h256) \
	X(ATTN_REDUCE, attn, k_attn_reduce_f32)          \
	X(ARGMAX, samp, k_argmax_f32)                    \
	X(SAMPLE, samp, k_sample_f32)                    \
	X(MOE_ROUTE, moe, k_moe_route_f32)               \
	X(MOE_PLAN, moe, k_moe_plan_i32)                 \
	X(MOE_GEMM_T1, moe, k_moe_gemm_bf16_t1)          \
	X(MOE_GEMM_T2, moe, k_moe_gemm_bf16_t2)          \
	X(MOE_GEMM_T4, moe, k_moe_gemm_bf16_t4)          \
	X(MOE_GEMM_T8, moe, k_moe_gemm_bf16_t8)          \
	X(MOE_COMBINE, moe, k_moe_combine_f32)

#define GPU_MODULES(X) X(elem) X(gemm) X(attn) X(samp) X(moe)

#define GPU_K_ENUM(id, mod, name) GPU_K_##id,
enum gpu_kernel { GPU_KERNELS(GPU_K_ENUM) GPU_K_N };
#undef GPU_K_ENUM
#define GPU_M_ENUM(mod) GPU_M_##mod,
enum gpu_module { GPU_MODULES(GPU_M_ENUM) GPU_M_N };
#undef GPU_M_ENUM

const char *gpu_kernel_name(enum gpu_kernel k);
const char *gpu_module_name(enum gpu_module m);
enum gpu_module gpu_kernel_module(enum gpu_kernel k);

struct gpu_info {
	int ordinal;
	char name[256];
	int cc_major, cc_minor;
	int n_sm;
	int l2_bytes;
	int smem_optin;        /* max dynamic shared memory per block after opt-in */
	uint64_t mem_total, mem_free;
	int driver_version;
	double driver_ms;      /* dlopen + cuInit + device queries + context */
	double cubins_ms;      /* loading the embedded modules and resolving the kernel table */
};

struct gpu {
	struct gpu_info info;
	void *ctx;             /* CUcontext */
	void *mod[GPU_M_N];    /* CUmodule */
	void *fn[GPU_K_N];     /* CUfunction */
	gpu_stream stream;     /* the engine's stream */
	gpu_ptr arena;
	uint64_t arena_bytes, arena_used;
	uint64_t n_mallocs;    /* device allocations ever made (1 after boot) */
	int capturing;
	int pdl;               /* launch with programmatic dependent launch (TS_PDL=0 turns it off) */
};

/* Is there a driver and a device `ordinal` we have kernels for? 0, or
 * -E_UNSUPPORTED / -E_RANGE with one line in e saying what is missing. */
int gpu_probe(int ordinal, struct ts_err *e);

/* Loads the driver, opens device `ordinal`, loads the embedded cubins for its
 * compute capability and resolves every kernel of the table. Without the
 * driver or a device: -E_UNSUPPORTED with one clear line in e. */
int gpu_open(struct gpu *g, int ordinal, struct ts_err *e);
void gpu_close(struct gpu *g);

/* The arena: one allocation of `bytes` at boot; gpu_arena_take hands out
 * 256-byte aligned pieces and fails (NULL -> 0) once it is spent. */
int gpu_arena_init(struct gpu *g, uint64_t bytes, struct ts_err *e);
gpu_ptr gpu_arena_take(struct gpu *g, uint64_t bytes);

/* Launches kernel k with one by-value argument struct. 0 or -E_INTERNAL
 * (the driver's error is logged with the kernel's name). */
int gpu_launch(struct gpu *g, enum gpu_kernel k, unsigned gx, unsigned gy, unsigned gz, unsigned block,
	       unsigned smem_bytes, const void *args, size_t args_bytes);

/* Raises a kernel's dynamic shared-memory limit (needed above 48 KiB). */
int gpu_set_smem(struct gpu *g, enum gpu_kernel k, unsigned bytes);

/* Copies on the engine stream (asynchronous w.r.t. the host unless noted). */
int gpu_h2d(struct gpu *g, gpu_ptr dst, const void *src, size_t bytes);
int gpu_d2h(struct gpu *g, void *dst, gpu_ptr src, size_t bytes);
int gpu_memset32(struct gpu *g, gpu_ptr dst, uint32_t value, size_t n_words);
int gpu_d2d(struct gpu *g, gpu_ptr dst, gpu_ptr src, size_t bytes);
int gpu_sync(struct gpu *g);

/* Pinned host memory (boot only): for staging weights and per-step metadata. */
void *gpu_host_alloc(struct gpu *g, size_t bytes);
void gpu_host_free(struct gpu *g, void *p);

/* CUDA graphs: capture everything launched on the engine stream between
 * begin and end into an executable graph; replay it with gpu_graph_launch. */
int gpu_capture_begin(struct gpu *g);
int gpu_capture_end(struct gpu *g, gpu_graph *out);
int gpu_graph_launch(struct gpu *g, gpu_graph x);
void gpu_graph_free(struct gpu *g, gpu_graph x);

/* Timing with events on the engine stream: milliseconds between the two marks. */
int gpu_time_begin(struct gpu *g);
int gpu_time_end(struct gpu *g, float *ms);

/* The embedded cubin of module m for sm_<cc> ("90a", "100a"); NULL if none. */
const void *gpu_cubin(enum gpu_module m, const char *arch, size_t *bytes);

#endif
