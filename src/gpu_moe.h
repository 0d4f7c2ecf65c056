/* gpu_moe: launches the mixture-of-experts kernels (kernels/moe.cu).
 *
 * Owns: the MoE workspace layout (sizes for the largest step, carved once at
 * boot), the tile size per step shape, the worst-case grids, the checks of
 * shapes and alignment before any launch.
 * Does not: allocate (the engine reserves moe_workspace_bytes() of the arena
 * at boot and carves it with moe_workspace_carve), run the router GEMM or a
 * shared expert's GEMMs (gemm_run does), read data on the host.
 * Threads: the engine thread, with the context current (src/gpu.h).
 *
 * One MoE layer of a step of T tokens, on the engine stream:
 *   gemm_run          logits (T, E [+ 1]) f32 = xb W_router^T [| shared gate]
 *   moe_route_run     ids, w (T, k) into the workspace
 *   gemm_run x2       a shared expert, if any: gate_up, then down in
 *                     KG_STORE_F32 into a (T, dim) f32 buffer
 *   moe_experts_run   plan, experts' gate_up (SiLU-multiply), down, combine:
 *                     resid[t] += sum_s w[t, s] expert_s(xb[t]) (+ the gated
 *                     shared output)
 *
 * Data-dependent sizes: which experts a step hits and how many tokens each
 * gets is known only on the device, after routing. Every grid is sized on
 * the host for the worst case of the step's shape (moe_max_tiles: T * k
 * entries cut into tiles of moe_tile_tokens rows, each hit expert adding at
 * most one partial tile), and the GEMM blocks past the plan's tile count exit
 * at once. So every launch depends on (T, shape) only and a captured graph
 * replays any routing; the cost of the worst case is empty blocks, not bytes.
 *
 * Batch invariance: a token's result is the same whichever tokens share its
 * step (kernels/moe.cu says how); the tile size picked here changes the
 * tiling, never the arithmetic.
 */
#ifndef TS_GPU_MOE_H
#define TS_GPU_MOE_H

#include "gpu.h"
#include "ts_kernels.h"

#define MOE_MAX_EXPERTS 1024 /* E (k_moe_plan_i32 has a thread per expert) */
#define MOE_MAX_TOPK 64      /* k */

struct moe_shape {
	int n_experts; /* E */
	int top_k;     /* k */
	int dim;       /* hidden size: K of gate_up, O of down; % 8 == 0 */
	int ffn;       /* one expert's intermediate size; % 8 == 0 */
};

/* Device views into the workspace, for steps of up to max_T tokens. */
struct moe_ws {
	gpu_ptr ids, w;          /* (T, k) i32, f32: moe_route_run's output */
	gpu_ptr counts, offsets; /* (E), (E + 1) i32 */
	gpu_ptr rows, rank;      /* (T k) i32: sorted row -> entry, entry -> sorted row */
	gpu_ptr tiles, n_tiles;  /* (max_tiles, 4), (1) i32 */
	gpu_ptr h;               /* bf16 (T k, ffn): silu(gate) * up, sorted rows */
	gpu_ptr y;               /* f32 (T k, dim): expert outputs, sorted rows */
	int max_T, max_tiles;
};

/* The expert GEMMs of one step. */
struct moe_experts {
	int T;
	const ts_bf16 *x;         /* (T, dim) the normed hidden state */
	const ts_bf16 *w_gate_up; /* (E, 2 ffn, dim): per expert, gemm_interleave_gate_up's layout */
	const ts_bf16 *w_down;    /* (E, dim, ffn) */
	float *resid;             /* (T, dim) f32, added into */
	const float *shared;      /* (T, ld_shared) f32 shared-expert output, or NULL */
	int ld_shared;
	const float *sgate;       /* (T, ld_sgate) f32 shared-expert gate logit (sigmoid applied), or NULL */
	int ld_sgate;
};

/* 0, or -E_INVAL with one log line naming the field. */
int moe_check_shape(const struct moe_shape *s);

/* Tokens per GEMM tile for a step of T tokens (8, 16, 32 or 64, from the
 * mean tokens per expert T k / E). Pure. */
int moe_tile_tokens(const struct moe_shape *s, int T);

/* Most tiles n entries over E experts can make with tiles of tile_tokens
 * rows: floor((n + min(E, n) (tile_tokens - 1)) / tile_tokens). Pure. */
int moe_max_tiles(int n, int E, int tile_tokens);

/* Bytes of workspace for any step of at most max_T tokens (0 on a bad
 * shape); moe_workspace_carve lays it out at base (256-byte aligned
 * pieces, the same walk) and fills ws. */
uint64_t moe_workspace_bytes(const struct moe_shape *s, int max_T);
int moe_workspace_carve(const struct moe_shape *s, int max_T, gpu_ptr base, struct moe_ws *ws);

/* Routing (k_moe_route_f32): checks E, k, groups, ld_logits and pointers.
 * 0, -E_INVAL (logged) or the launch's error. */
int moe_route_run(struct gpu *g, const struct k_moe_route *a);

/* Only the plan of a step of T tokens from ws->ids (counts, offsets, rows,
 * rank, tiles): moe_experts_run's first launch, alone for tests. */
int moe_plan_run(struct gpu *g, const struct moe_shape *s, const struct moe_ws *ws, int T);

/* Plan, gate_up, down and combine for a step of a->T <= ws->max_T tokens
 * whose routing is in ws->ids / ws->w. x, weights, resid, shared 16-byte
 * aligned. 0, -E_INVAL (logged) or the first launch error. */
int moe_experts_run(struct gpu *g, const struct moe_shape *s, const struct moe_ws *ws, const struct moe_experts *a);

#endif
