/* fwd: the GPU backend: weights in device memory, the forward pass as an
 * ordered list of kernel launches (read it like llama2.c's forward()), and
 * CUDA graphs of decode steps per batch-size bucket. One file per job
 * (fwd_int.h lists them): fwd_arena.c, fwd_upload.c, fwd_graph.c, fwd.c.
 * The devices it has opened are kept per ordinal (fwd.c's devs[]), not in
 * one static singleton.
 *
 * Owns: the device copies of the weights (bf16; QKV fused into one matrix,
 * gate and up interleaved for the fused SiLU-multiply epilogue), the
 * activation workspace for max_batch_tokens, the paged KV storage, the
 * per-step metadata buffers, the captured graphs.
 * Does not: allocate after init (one arena, counted), schedule, sample
 * (the host samples the logits it returns, as for the CPU backend).
 * Threads: the engine thread.
 */
#ifndef TS_FWD_H
#define TS_FWD_H

#include "backend.h"

extern const struct backend_ops gpu_backend_ops;

/* Runs the model's first n_layers only (the boot self-test compares a slice
 * of the model against the CPU backend); n_layers = 0 means all. */
int fwd_forward_layers(struct backend *b, const struct batch *bt, float *logits, int n_layers);

/* The TS_WHATIF bits in force (0 normally): kernels left out for a timing
 * experiment; outputs are then wrong (fwd.c says which bits). */
int fwd_whatif(void);

/* Device allocations made since boot (1: the arena). */
uint64_t fwd_device_allocs(const struct backend *b);

#endif
