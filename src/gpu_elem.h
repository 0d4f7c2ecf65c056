/* gpu_elem: launchers for the element-wise kernels (kernels/elem.cu: embed,
 * rmsnorm, rope + KV write) and the sampling kernels (kernels/samp.cu:
 * argmax, sample).
 *
 * Owns: each kernel's grid, block and shared memory, and the check of its
 * preconditions (shapes, alignment) before the launch. Every grid depends on
 * the shapes only, never on data, so every launch can be captured in a CUDA
 * graph.
 * Does not: allocate device memory (the caller sizes the sampler's scratch
 * with sample_workspace_bytes at boot), synchronize, or decide what to launch
 * (fwd does).
 * Threads: the engine thread, like gpu_launch.
 *
 * Each launcher returns 0, -E_INVAL (a precondition fails: logged with the
 * kernel's name and the condition; nothing is launched) or gpu_launch's
 * error. T == 0 or n == 0 launches nothing.
 */
#ifndef TS_GPU_ELEM_H
#define TS_GPU_ELEM_H

#include "gpu.h"
#include "ts_kernels.h"

/* x[t] = table[token[t]]: dim % 8 == 0; table, x 16-byte aligned. */
int embed_run(struct gpu *g, const struct k_embed *a);

/* dim % 8 == 0; x, w, out 16-byte aligned. */
int rmsnorm_run(struct gpu *g, const struct k_rmsnorm *a);

/* head_dim even, 2..256; q_norm and k_norm both given or both NULL. */
int rope_kv_run(struct gpu *g, const struct k_rope_kv *a);

/* out[r] = first maximum of logits row r (NaN skipped); reads logits, n, ld,
 * vocab, out of a. */
int argmax_run(struct gpu *g, const struct k_sample *a);

/* The token src/samp.c samp_sample picks for each row (same penalties,
 * filters and counter-based draw). logits are modified in place as there;
 * work needs sample_workspace_bytes(n, vocab) bytes; vocab <= 2^24. The
 * kernel takes 192 KiB of dynamic shared memory: sample_prepare raises its
 * limit (a driver call, not a stream operation); call it at boot, before any
 * graph capture. sample_run calls it too if it has not run. */
int sample_prepare(struct gpu *g);
int sample_run(struct gpu *g, const struct k_sample *a);

/* Bytes of k_sample.work for up to max_rows rows: (max_rows, vocab) floats. */
uint64_t sample_workspace_bytes(int max_rows, int vocab);

#endif
