/* gpu_attn: launches attention over the paged KV cache (kernels/attn.cu).
 *
 * Owns: the choice of path and grid for struct k_attn (ts_kernels.h), the
 * decode split count, the size of the partials workspace, the kernels'
 * shared-memory opt-ins.
 * Does not: allocate (the engine takes attn_workspace_bytes from the arena at
 * boot), write the KV cache (k_rope_kv does, before this runs), choose which
 * tokens take which path (fwd does; see below).
 * Threads: the engine thread, with the context current (src/gpu.h).
 *
 * Paths (both compute the function of struct k_attn; they differ only in
 * rounding):
 *   ATTN_DECODE   one query per token: flash-decoding over (token, kv head,
 *                 split) then k_attn_reduce_f32 when n_split > 1. The grid and
 *                 split count depend only on n_tok (and fixed model dims), so
 *                 a captured graph replays at any context length.
 *   ATTN_PREFILL  tiles of 128 / G consecutive entries of the token list (G =
 *                 n_heads / n_kv_heads) share every K/V tile they load. Any
 *                 token list is correct; it is fast when each sequence's
 *                 tokens are contiguous in the list with consecutive
 *                 positions (a prefill chunk at [p0, p0 + n) reads the cached
 *                 prefix [0, p0) and itself). No plan is needed: the kernel
 *                 finds the runs of equal seq inside each tile.
 * For a mixed batch, call attn_run once per path with a->tok listing the
 * token indices of that path (a->tok = NULL: all T tokens). Prefill over few
 * tokens at a long context uses few blocks; such chunks can go through
 * ATTN_DECODE instead (same function).
 *
 * Limits: head_dim one of ATTN_HEAD_DIMS (64 and 128 take the kernels tuned
 * first; 96 and 256 have their own entry points, so adding them changed
 * nothing of the others); n_heads a multiple of n_kv_heads with G <= 64;
 * q, kc, vc, out 16-byte aligned. Anything else is -E_UNSUPPORTED / -E_INVAL
 * with one log line naming the field.
 *
 * Partials: a->part is ignored; attn_run points it at part_ws, laid out
 * (n_tok, n_heads, n_split, head_dim + 2) floats indexed by the token's place
 * in the launch's token list (= T order when tok is NULL): acc[head_dim]
 * unnormalised, then max (log2 domain, scale included) and sum.
 */
#ifndef TS_GPU_ATTN_H
#define TS_GPU_ATTN_H

#include "gpu.h"
#include "ts_kernels.h"

/* ATTN_DECODE_NO_REDUCE: decode without merging the splits (wrong output):
 * only for fwd.c's TS_WHATIF timing experiment. */
enum attn_mode { ATTN_DECODE, ATTN_PREFILL, ATTN_DECODE_NO_REDUCE };

/* The head sizes the attention kernels take, for messages. */
#define ATTN_HEAD_DIMS "64, 96, 128, 256"

/* 1 if the kernels take head_dim, else 0. Pure (no device, no link
 * dependency), so a model's config can be refused when it is read. */
static inline int attn_head_dim_supported(int head_dim)
{
	return head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256;
}

#ifndef ATTN_BLOCKS_PER_SM
#define ATTN_BLOCKS_PER_SM 4 /* decode blocks aimed for per multiprocessor (3 fit at once) */
#endif
#ifndef ATTN_MAX_SPLIT
#define ATTN_MAX_SPLIT 32    /* decode splits at most (k_attn_reduce_f32 takes <= 32) */
#endif

/* Bytes of part_ws that attn_run needs for any launch of at most max_T
 * tokens on n_sm multiprocessors (any n_kv_heads). 0 when no launch splits. */
uint64_t attn_workspace_bytes(int max_T, int n_heads, int head_dim, int n_sm);

/* Decode splits for a launch of n_tok tokens: fills about
 * ATTN_BLOCKS_PER_SM * n_sm blocks, at most ATTN_MAX_SPLIT. */
int attn_decode_splits(int n_tok, int n_heads, int n_kv_heads, int n_sm);

/* Raises the kernels' dynamic shared-memory limits (boot, once per device).
 * -E_UNSUPPORTED when the device offers too little. */
int attn_init(struct gpu *g);

/* Launches mode (enum attn_mode) over a's tokens on the engine stream.
 * a->n_split and a->part are set here; a->n_tok is read only when a->tok is
 * set. 0, -E_INVAL, -E_UNSUPPORTED or the launch's error. */
int attn_run(struct gpu *g, const struct k_attn *a, gpu_ptr part_ws, int mode);

#endif
