/* gpu_moe: plans and launches kernels/moe.cu (see gpu_moe.h). The block
 * sizes below are the kernels' own constants; each names the #define it
 * mirrors. */
#include "gpu_moe.h"

#include "log.h"

#define MOE_ROUTE_WARPS 4      /* moe.cu MR_WARPS */
#define MOE_PLAN_THREADS 1024  /* moe.cu MP_THREADS */
#define MOE_GEMM_THREADS 256   /* moe.cu MG_THREADS */
#define MOE_GEMM_ROWS 32       /* moe.cu MG_BM: weight rows per block */
#define MOE_COMBINE_THREADS 256 /* moe.cu MC_THREADS, 4 columns each */
#define MOE_MAX_GRID_Y 65535

/* One log line naming the field; -E_INVAL. */
static int bad(const char *what, const char *field, long v, const char *rule)
{
	log_error("gpu_moe: %s: %s=%ld: %s", what, field, v, rule);
	return -E_INVAL;
}

static int misaligned(const void *p)
{
	return ((uintptr_t)p & 15u) != 0;
}

/* ---------------------------------------------------------------- sizes */

int moe_check_shape(const struct moe_shape *s)
{
	if (s->n_experts < 1 || s->n_experts > MOE_MAX_EXPERTS)
		return bad("shape", "n_experts", s->n_experts, "must be 1..1024");
	if (s->top_k < 1 || s->top_k > MOE_MAX_TOPK || s->top_k > s->n_experts)
		return bad("shape", "top_k", s->top_k, "must be 1..64 and at most n_experts");
	if (s->dim < 8 || s->dim % 8)
		return bad("shape", "dim", s->dim, "must be a positive multiple of 8");
	if (s->ffn < 8 || s->ffn % 8)
		return bad("shape", "ffn", s->ffn, "must be a positive multiple of 8");
	return 0;
}

int moe_tile_tokens(const struct moe_shape *s, int T)
{
	long mean = ((long)T * s->top_k + s->n_experts - 1) / s->n_experts; /* tokens per expert, rounded up */
	return mean <= 8 ? 8 : mean <= 16 ? 16 : mean <= 32 ? 32 : 64;
}

int moe_max_tiles(int n, int E, int tile_tokens)
{
	long hit = n < E ? n : E;
	return (int)(((long)n + hit * (tile_tokens - 1)) / tile_tokens);
}

static uint64_t al256(uint64_t b)
{
	return (b + 255) & ~(uint64_t)255;
}

/* Walks the workspace in one fixed order; base 0 only adds up. */
static uint64_t ws_walk(const struct moe_shape *s, int max_T, gpu_ptr base, struct moe_ws *ws)
{
	const uint64_t n = (uint64_t)max_T * (uint64_t)s->top_k, E = (uint64_t)s->n_experts;
	int mt = 0;
	for (int T = 1; T <= max_T; T++) {
		int m = moe_max_tiles(T * s->top_k, s->n_experts, moe_tile_tokens(s, T));
		mt = m > mt ? m : mt;
	}
	const struct {
		gpu_ptr *dst;
		uint64_t bytes;
	} parts[] = {
		{&ws->ids, 4 * n},
		{&ws->w, 4 * n},
		{&ws->counts, 4 * E},
		{&ws->offsets, 4 * (E + 1)},
		{&ws->rows, 4 * n},
		{&ws->rank, 4 * n},
		{&ws->tiles, 16 * (uint64_t)mt},
		{&ws->n_tiles, 4},
		{&ws->h, 2 * n * (uint64_t)s->ffn},
		{&ws->y, 4 * n * (uint64_t)s->dim},
	};
	uint64_t off = 0;
	for (size_t i = 0; i < TS_ARRAY_LEN(parts); i++) {
		if (base)
			*parts[i].dst = base + off;
		off += al256(parts[i].bytes);
	}
	ws->max_T = max_T;
	ws->max_tiles = mt;
	return off;
}

uint64_t moe_workspace_bytes(const struct moe_shape *s, int max_T)
{
	struct moe_ws ws;
	if (moe_check_shape(s) || max_T < 1)
		return 0;
	return ws_walk(s, max_T, 0, &ws);
}

int moe_workspace_carve(const struct moe_shape *s, int max_T, gpu_ptr base, struct moe_ws *ws)
{
	int rc = moe_check_shape(s);
	if (rc)
		return rc;
	if (max_T < 1)
		return bad("workspace", "max_T", max_T, "must be >= 1");
	if (!base || (base & 255u))
		return bad("workspace", "base", (long)(base & 255u), "must be a 256-byte aligned device pointer");
	memset(ws, 0, sizeof(*ws));
	ws_walk(s, max_T, base, ws);
	return 0;
}

/* ---------------------------------------------------------------- route */

int moe_route_run(struct gpu *g, const struct k_moe_route *a)
{
	const char *k = "k_moe_route_f32";
	if (a->T < 0)
		return bad(k, "T", a->T, "must be >= 0");
	if (a->E < 1 || a->E > MOE_MAX_EXPERTS)
		return bad(k, "E", a->E, "must be 1..1024");
	if (a->k < 1 || a->k > MOE_MAX_TOPK || a->k > a->E)
		return bad(k, "k", a->k, "must be 1..64 and at most E");
	if (a->ld_logits < a->E)
		return bad(k, "ld_logits", a->ld_logits, "must be >= E");
	if (a->score != KM_SOFTMAX && a->score != KM_SIGMOID)
		return bad(k, "score", a->score, "must be KM_SOFTMAX or KM_SIGMOID");
	if (a->group < KM_GROUP_NONE || a->group > KM_GROUP_TOP2)
		return bad(k, "group", a->group, "must be KM_GROUP_NONE, _MAX or _TOP2");
	if (a->group != KM_GROUP_NONE) {
		if (a->n_group < 1 || a->n_group > 32 || a->E % a->n_group)
			return bad(k, "n_group", a->n_group, "must be 1..32 and divide E");
		if (a->topk_group < 1 || a->topk_group > a->n_group)
			return bad(k, "topk_group", a->topk_group, "must be 1..n_group");
		if (a->k > a->topk_group * (a->E / a->n_group))
			return bad(k, "k", a->k, "must be at most the experts of topk_group groups");
		if (a->group == KM_GROUP_TOP2 && a->E / a->n_group < 2)
			return bad(k, "n_group", a->n_group, "groups scored by their best two need >= 2 experts each");
	}
	if (a->renorm && !(a->renorm_eps >= 0.0f)) {
		log_error("gpu_moe: %s: renorm_eps=%g: must be >= 0", k, (double)a->renorm_eps);
		return -E_INVAL;
	}
	if (!a->logits || !a->ids || !a->w)
		return bad(k, "logits/ids/w", 0, "must be given");
	if (a->T == 0)
		return 0;
	unsigned blocks = (unsigned)((a->T + MOE_ROUTE_WARPS - 1) / MOE_ROUTE_WARPS);
	unsigned smem = (unsigned)(MOE_ROUTE_WARPS * 2 * a->E * 4);
	return gpu_launch(g, GPU_K_MOE_ROUTE, blocks, 1, 1, 32 * MOE_ROUTE_WARPS, smem, a, sizeof(*a));
}

/* ---------------------------------------------------------------- experts */

static enum gpu_kernel gemm_kernel(int tile_tokens)
{
	switch (tile_tokens) {
	case 8:
		return GPU_K_MOE_GEMM_T1;
	case 16:
		return GPU_K_MOE_GEMM_T2;
	case 32:
		return GPU_K_MOE_GEMM_T4;
	default:
		return GPU_K_MOE_GEMM_T8;
	}
}

static struct k_moe_plan plan_args(const struct moe_shape *s, const struct moe_ws *ws, int T)
{
	const int tr = moe_tile_tokens(s, T);
	struct k_moe_plan pl = {
		.ids = (const int32_t *)(uintptr_t)ws->ids,
		.counts = (int32_t *)(uintptr_t)ws->counts,
		.offsets = (int32_t *)(uintptr_t)ws->offsets,
		.rows = (int32_t *)(uintptr_t)ws->rows,
		.rank = (int32_t *)(uintptr_t)ws->rank,
		.tiles = (int32_t *)(uintptr_t)ws->tiles,
		.n_tiles = (int32_t *)(uintptr_t)ws->n_tiles,
		.T = T,
		.k = s->top_k,
		.E = s->n_experts,
		.tile_rows = tr,
		.max_tiles = moe_max_tiles(T * s->top_k, s->n_experts, tr),
	};
	return pl;
}

static int check_step(const struct moe_shape *s, const struct moe_ws *ws, int T)
{
	int rc = moe_check_shape(s);
	if (rc)
		return rc;
	if (T < 1 || T > ws->max_T)
		return bad("moe", "T", T, "must be 1..the workspace's max_T");
	const int mt = moe_max_tiles(T * s->top_k, s->n_experts, moe_tile_tokens(s, T));
	if (mt > ws->max_tiles || mt > MOE_MAX_GRID_Y)
		return bad("moe", "T", T, "needs more tiles than the workspace (or a grid) holds");
	return 0;
}

int moe_plan_run(struct gpu *g, const struct moe_shape *s, const struct moe_ws *ws, int T)
{
	int rc = check_step(s, ws, T);
	if (rc)
		return rc;
	struct k_moe_plan pl = plan_args(s, ws, T);
	return gpu_launch(g, GPU_K_MOE_PLAN, 1, 1, 1, MOE_PLAN_THREADS, 0, &pl, sizeof(pl));
}

int moe_experts_run(struct gpu *g, const struct moe_shape *s, const struct moe_ws *ws, const struct moe_experts *a)
{
	const char *k = "moe_experts";
	int rc = check_step(s, ws, a->T);
	if (rc)
		return rc;
	if (!a->x || !a->w_gate_up || !a->w_down || !a->resid)
		return bad(k, "x/w_gate_up/w_down/resid", 0, "must be given");
	if (misaligned(a->x) || misaligned(a->w_gate_up) || misaligned(a->w_down) || misaligned(a->resid) ||
	    (a->shared && misaligned(a->shared)))
		return bad(k, "x/w_gate_up/w_down/resid/shared", 0, "must be 16-byte aligned");
	if (a->shared && (a->ld_shared < s->dim || a->ld_shared % 4))
		return bad(k, "ld_shared", a->ld_shared, "must be >= dim and a multiple of 4");
	if (a->sgate && (!a->shared || a->ld_sgate < 1))
		return bad(k, "ld_sgate", a->ld_sgate, "a gate needs a shared output and ld_sgate >= 1");
	const int T = a->T;
	const struct k_moe_plan pl = plan_args(s, ws, T);
	struct k_moe_gemm gu = {
		.x = a->x,
		.w = a->w_gate_up,
		.y = (void *)(uintptr_t)ws->h,
		.rows = pl.rows,
		.tiles = pl.tiles,
		.n_tiles = pl.n_tiles,
		.K = s->dim,
		.O = 2 * s->ffn,
		.ldy = s->ffn,
		.k = s->top_k,
		.mode = KG_SILU_MUL_BF16,
	};
	struct k_moe_gemm dn = {
		.x = (const ts_bf16 *)(uintptr_t)ws->h,
		.w = a->w_down,
		.y = (void *)(uintptr_t)ws->y,
		.rows = pl.rows,
		.tiles = pl.tiles,
		.n_tiles = pl.n_tiles,
		.K = s->ffn,
		.O = s->dim,
		.ldy = s->dim,
		.k = s->top_k,
		.mode = KG_STORE_F32,
	};
	struct k_moe_combine cb = {
		.y = (const float *)(uintptr_t)ws->y,
		.rank = pl.rank,
		.w = (const float *)(uintptr_t)ws->w,
		.shared = a->shared,
		.sgate = a->sgate,
		.x = a->resid,
		.T = T,
		.k = s->top_k,
		.dim = s->dim,
		.ldy = s->dim,
		.ld_shared = a->ld_shared,
		.ld_sgate = a->ld_sgate,
	};
	const enum gpu_kernel gk = gemm_kernel(pl.tile_rows);
	const unsigned gx_gu = (unsigned)((2 * s->ffn + MOE_GEMM_ROWS - 1) / MOE_GEMM_ROWS);
	const unsigned gx_dn = (unsigned)((s->dim + MOE_GEMM_ROWS - 1) / MOE_GEMM_ROWS);
	const unsigned gy_cb = (unsigned)((s->dim + 4 * MOE_COMBINE_THREADS - 1) / (4 * MOE_COMBINE_THREADS));
	if ((rc = gpu_launch(g, GPU_K_MOE_PLAN, 1, 1, 1, MOE_PLAN_THREADS, 0, &pl, sizeof(pl))) ||
	    (rc = gpu_launch(g, gk, gx_gu, (unsigned)pl.max_tiles, 1, MOE_GEMM_THREADS, 0, &gu, sizeof(gu))) ||
	    (rc = gpu_launch(g, gk, gx_dn, (unsigned)pl.max_tiles, 1, MOE_GEMM_THREADS, 0, &dn, sizeof(dn))))
		return rc;
	return gpu_launch(g, GPU_K_MOE_COMBINE, (unsigned)T, gy_cb, 1, MOE_COMBINE_THREADS, 0, &cb, sizeof(cb));
}
