/* moe.cu: the mixture-of-experts MLP after the router GEMM: routing, the
 * step's permutation by expert, the experts' GEMMs and the weighted combine
 * into the residual (argument structs in ts_kernels.h; launchers in
 * src/gpu_moe.c).
 *
 *   k_moe_route_f32    one warp per token: scores, group limit, top-k, weights
 *   k_moe_plan_i32     one block: counts, offsets, the sorted (token, slot)
 *                      list, its inverse, and the GEMM tile table
 *   k_moe_gemm_bf16    the experts' GEMM over the tile table, gate/up with the
 *                      SiLU-multiply epilogue or down to f32
 *   k_moe_combine_f32  x[t] += sum_s w[t, s] y[t, s] (+ gated shared expert)
 *
 * The invariant that shapes all four: a token's output depends on that
 * token's data only, never on which (or how many) other tokens share the
 * step. Routing is per token; the plan is integer bookkeeping without
 * atomics; every GEMM output element is summed in one order that depends on
 * K alone (32-wide k-steps, MG_U per load group, groups dealt round robin to
 * MG_WK slices, slices added in order; the same operand layout in every
 * instantiation), however many tokens its expert got and whatever tile size
 * the launcher picked; the combine adds the k experts in rank order.
 *
 * Data-dependent sizes: which experts are hit, and by how many tokens, is
 * known only on the device. Grids are sized on the host for the worst case
 * (src/gpu_moe.c: moe_max_tiles) and blocks past the plan's n_tiles exit at
 * once, so every launch depends on shapes alone and a CUDA graph replays it.
 *
 * GEMM design: "swap AB" as gemm.cu's small kernel: 16 weight rows are the M
 * side of mma.m16n8k16, 8 * NT gathered tokens the N side; each lane loads 16
 * bytes (8 consecutive k) of two weight rows and of its tokens straight from
 * global memory into registers; the mma sees those 8 k in a permuted order,
 * the same for both operands and in every instantiation. Decode tiles hold
 * 8 tokens (NT 1), prefill tiles up to 64 (NT 8); a block is 2 x 16 weight
 * rows x MG_WK k-slices.
 *
 * Bytes and flops, per MoE layer and step of T tokens, top-k of E experts,
 * hidden d, expert width f, A experts hit:
 *   weights  A * 3 * f * d * 2 (each hit expert streamed once per tile: once
 *            at decode sizes, ceil(tokens / 64) times at prefill, from L2
 *            after the first)
 *   flops    2 * T * k * 3 * f * d
 *   route    T * E * 4 + T * k * 8; plan T * k * 4 * 4; combine T * k * d * 4
 *            + T * d * 8.
 * Decode is weight-bound: floor A * 6 f d bytes at the copy rate; prefill is
 * mma.sync-bound here (no wgmma: the decode tiles' arithmetic order is what
 * keeps prefill and decode results equal). Predictions in tests/gpu/NOTES.md,
 * not yet run.
 */
#include "pdl.h"
#include "ptx.h"
#include "ts_kernels.h"

#define MOE_MAX_E 1024 /* experts; src/gpu_moe.h MOE_MAX_EXPERTS */
#define MOE_MAX_K 64   /* experts per token */

/* ---------------------------------------------------------------- route */

#define MR_WARPS 4 /* tokens per block */

/* (v, i) ranks before (v2, i2): larger value first, a NaN after every number,
 * equal values (and two NaNs) by the lower index. */
__device__ __forceinline__ bool mr_before(float v, int i, float v2, int i2)
{
	const bool n = v != v, n2 = v2 != v2;
	if (n || n2)
		return n == n2 ? i < i2 : n2;
	return v > v2 || (v == v2 && i < i2);
}

/* The warp's best (v, i) over its lanes; i < 0 marks a lane with nothing. */
__device__ __forceinline__ void mr_warp_best(float &v, int &i)
{
#pragma unroll
	for (int o = 16; o; o >>= 1) {
		const float ov = __shfl_xor_sync(0xffffffffu, v, o);
		const int oi = __shfl_xor_sync(0xffffffffu, i, o);
		if (oi >= 0 && (i < 0 || mr_before(ov, oi, v, i))) {
			v = ov;
			i = oi;
		}
	}
}

__device__ __forceinline__ float mr_warp_sum(float v)
{
#pragma unroll
	for (int o = 16; o; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* grid ceil(T / MR_WARPS), MR_WARPS warps, dynamic smem MR_WARPS * 2 * E
 * floats (a warp's p and c). E <= MOE_MAX_E, k <= MOE_MAX_K, n_group <= 32
 * (the launcher checks). */
extern "C" __global__ void __launch_bounds__(32 * MR_WARPS) k_moe_route_f32(const struct k_moe_route a)
{
	pdl_trigger_short();
	pdl_wait();
	extern __shared__ float mr_smem[];
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int t = blockIdx.x * MR_WARPS + warp, E = a.E;
	if (t >= a.T)
		return;
	float *p = mr_smem + (size_t)warp * 2 * E, *c = p + E;
	const float *lg = a.logits + (size_t)t * a.ld_logits;

	/* p: softmax (max, then the sum in a fixed order) or sigmoid */
	if (a.score == KM_SOFTMAX) {
		float m = -INFINITY;
		for (int i = lane; i < E; i += 32)
			m = fmaxf(m, lg[i]);
#pragma unroll
		for (int o = 16; o; o >>= 1)
			m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
		float s = 0.f;
		for (int i = lane; i < E; i += 32) {
			const float e = expf(lg[i] - m);
			p[i] = e;
			s += e;
		}
		s = mr_warp_sum(s);
		for (int i = lane; i < E; i += 32)
			p[i] = __fdiv_rn(p[i], s);
	} else {
		for (int i = lane; i < E; i += 32)
			p[i] = __fdiv_rn(1.f, 1.f + expf(-lg[i]));
	}
	for (int i = lane; i < E; i += 32)
		c[i] = a.bias ? p[i] + a.bias[i] : p[i];
	__syncwarp();

	/* group limit: lane g scores group g; the topk_group best stay */
	if (a.group != KM_GROUP_NONE) {
		const int gs = E / a.n_group;
		float gv = -INFINITY;
		if (lane < a.n_group) {
			float t1 = -INFINITY, t2 = -INFINITY;
			for (int j = 0; j < gs; j++) {
				const float v = c[lane * gs + j];
				if (v > t1) {
					t2 = t1;
					t1 = v;
				} else if (v > t2) {
					t2 = v;
				}
			}
			gv = a.group == KM_GROUP_MAX ? t1 : t1 + t2;
		}
		unsigned keep = 0;
		for (int r = 0; r < a.topk_group; r++) {
			float v = gv;
			int i = lane < a.n_group && !(keep >> lane & 1) ? lane : -1;
			mr_warp_best(v, i);
			keep |= 1u << i;
		}
		for (int i = lane; i < E; i += 32)
			if (!(keep >> (i / gs) & 1))
				c[i] = 0.f;
		__syncwarp();
	}

	/* top-k by c, in rank order; lane l owns entries l + 32 j (bit j of taken) */
	unsigned taken = 0;
	float w0 = 0.f, w1 = 0.f, sum = 0.f;
	int32_t *ids = a.ids + (size_t)t * a.k;
	for (int s = 0; s < a.k; s++) {
		float v = 0.f;
		int bi = -1;
		for (int i = lane, j = 0; i < E; i += 32, j++) {
			if (taken >> j & 1)
				continue;
			const float x = c[i];
			if (bi < 0 || mr_before(x, i, v, bi)) {
				v = x;
				bi = i;
			}
		}
		mr_warp_best(v, bi);
		if ((bi & 31) == lane)
			taken |= 1u << (bi >> 5);
		const float pw = p[bi];
		sum += pw;
		if (lane == (s & 31)) {
			if (s < 32)
				w0 = pw;
			else
				w1 = pw;
		}
		if (lane == 0)
			ids[s] = bi;
	}
	const float den = a.renorm ? sum + a.renorm_eps : 1.f;
	float *w = a.w + (size_t)t * a.k;
	if (lane < a.k)
		w[lane] = __fmul_rn(a.renorm ? __fdiv_rn(w0, den) : w0, a.scale);
	if (lane + 32 < a.k)
		w[lane + 32] = __fmul_rn(a.renorm ? __fdiv_rn(w1, den) : w1, a.scale);
}

/* ---------------------------------------------------------------- plan */

#define MP_THREADS 1024
#define MP_HIST 8192 /* ints of per-segment histograms: MP_SEGS * E <= MP_HIST */

/* Inclusive scan of (a, b) over the block's threads, in thread order. */
__device__ __forceinline__ void mp_block_scan2(int &a, int &b, int *sa, int *sb)
{
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
	for (int o = 1; o < 32; o <<= 1) {
		const int xa = __shfl_up_sync(0xffffffffu, a, o), xb = __shfl_up_sync(0xffffffffu, b, o);
		if (lane >= o) {
			a += xa;
			b += xb;
		}
	}
	if (lane == 31) {
		sa[warp] = a;
		sb[warp] = b;
	}
	__syncthreads();
	if (warp == 0) {
		int va = sa[lane], vb = sb[lane];
#pragma unroll
		for (int o = 1; o < 32; o <<= 1) {
			const int xa = __shfl_up_sync(0xffffffffu, va, o), xb = __shfl_up_sync(0xffffffffu, vb, o);
			if (lane >= o) {
				va += xa;
				vb += xb;
			}
		}
		sa[lane] = va;
		sb[lane] = vb;
	}
	__syncthreads();
	if (warp > 0) {
		a += sa[warp - 1];
		b += sb[warp - 1];
	}
}

/* One block of MP_THREADS; E <= MP_THREADS. The T k entries are cut into
 * nseg = min(32, MP_HIST / E) index-ordered segments, one per warp; a warp
 * walks its segment in 32-entry chunks (lanes in index order), finds equal
 * experts with match_any and counts them into its own histogram row (pass
 * 1); the rows become each segment's starting row per expert (a scan over
 * experts and segments); pass 2 walks the same chunks and places every entry
 * at its expert's cursor plus its rank among equal lanes. The result is the
 * stable order by (expert, entry) for any T. */
extern "C" __global__ void __launch_bounds__(MP_THREADS) k_moe_plan_i32(const struct k_moe_plan a)
{
	pdl_trigger_short();
	pdl_wait();
	__shared__ int hist[MP_HIST];
	__shared__ int scan_a[32], scan_b[32];
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int E = a.E, n = a.T * a.k, TR = a.tile_rows;
	const int nseg = min(32, MP_HIST / E), seg = (n + nseg - 1) / nseg;
	const unsigned lt = (1u << lane) - 1u;

	for (int i = tid; i < nseg * E; i += MP_THREADS)
		hist[i] = 0;
	__syncthreads();

	/* pass 1: per-segment counts */
	if (warp < nseg) {
		int *h = hist + warp * E;
		const int b = warp * seg, end = min(n, b + seg);
		for (int c0 = b; c0 < end; c0 += 32) {
			const int i = c0 + lane;
			const int e = i < end ? a.ids[i] : -1;
			if (i < end && (unsigned)e >= (unsigned)E)
				__trap(); /* an expert id outside [0, E): the routing is broken */
			const unsigned peers = __match_any_sync(0xffffffffu, e);
			if (e >= 0 && (peers & lt) == 0)
				h[e] += __popc(peers);
			__syncwarp();
		}
	}
	__syncthreads();

	/* counts, offsets and tiles per expert (thread e), as block scans */
	int cnt = 0, nt = 0;
	if (tid < E) {
		for (int w = 0; w < nseg; w++)
			cnt += hist[w * E + tid];
		nt = (cnt + TR - 1) / TR;
	}
	int ca = cnt, cb = nt;
	mp_block_scan2(ca, cb, scan_a, scan_b); /* inclusive */
	const int off = ca - cnt, toff = cb - nt;
	if (tid < E) {
		a.counts[tid] = cnt;
		a.offsets[tid] = off;
		int r = off;
		for (int w = 0; w < nseg; w++) { /* segment w's first row for expert tid */
			const int c = hist[w * E + tid];
			hist[w * E + tid] = r;
			r += c;
		}
		if (toff + nt > a.max_tiles)
			__trap(); /* the launcher's worst-case bound is wrong */
		for (int i = 0; i < nt; i++)
			*reinterpret_cast<int4 *>(a.tiles + 4 * (toff + i)) =
				make_int4(tid, off + i * TR, min(TR, cnt - i * TR), 0);
	}
	if (tid == E - 1) {
		a.offsets[E] = ca;
		*a.n_tiles = cb;
	}
	__syncthreads();

	/* pass 2: placement */
	if (warp < nseg) {
		int *h = hist + warp * E;
		const int b = warp * seg, end = min(n, b + seg);
		for (int c0 = b; c0 < end; c0 += 32) {
			const int i = c0 + lane;
			const int e = i < end ? a.ids[i] : -1;
			const unsigned peers = __match_any_sync(0xffffffffu, e);
			if (e >= 0) {
				const int j = h[e] + __popc(peers & lt);
				a.rows[j] = i;
				a.rank[i] = j;
			}
			__syncwarp();
			if (e >= 0 && (peers & lt) == 0)
				h[e] += __popc(peers);
			__syncwarp();
		}
	}
}

/* ---------------------------------------------------------------- gemm */

#define MG_THREADS 256
#define MG_WR 2 /* warps along weight rows (16 rows each) */
#define MG_WK 4 /* k slices: part of the summation order, the same for every NT */
#define MG_U 2  /* k-steps per load group: part of the summation order */
#define MG_BM (16 * MG_WR)

template <int NT> struct mg_frag {
	uint4 w[2][MG_U];  /* weight rows g and g + 8 */
	uint4 x[NT][MG_U]; /* token g of each n8 tile */
};

template <int NT>
__device__ __forceinline__ void mg_load(mg_frag<NT> &f, const ts_bf16 *const (&wp)[2], const ts_bf16 *const (&xp)[NT],
					unsigned wmask, unsigned xmask, int grp, int nls, int klim)
{
#pragma unroll
	for (int u = 0; u < MG_U; u++) {
		const int ls = grp * MG_U + u;
		const bool ok = ls < nls && ls * 32 < klim;
#pragma unroll
		for (int h = 0; h < 2; h++)
			f.w[h][u] = ok && (wmask >> h & 1) ? kp_ld_stream(wp[h] + ls * 32) : make_uint4(0, 0, 0, 0);
#pragma unroll
		for (int n = 0; n < NT; n++)
			f.x[n][u] = ok && (xmask >> n & 1) ? kp_ld_shared_use(xp[n] + ls * 32) : make_uint4(0, 0, 0, 0);
	}
}

/* Lane (g, t4) holds k 8 t4 .. 8 t4 + 7 of its rows; the mma's k 2 t4 + {0,
 * 1} and 2 t4 + 8 + {0, 1} take pairs 0 and 1, then 2 and 3: the same map
 * for both operands. */
template <int NT> __device__ __forceinline__ void mg_mma(float (&acc)[NT][4], const mg_frag<NT> &f)
{
#pragma unroll
	for (int u = 0; u < MG_U; u++)
#pragma unroll
		for (int n = 0; n < NT; n++) {
			const uint4 &p = f.w[0][u], &q = f.w[1][u], &x = f.x[n][u];
			kp_mma(acc[n], p.x, q.x, p.y, q.y, x.x, x.y);
			kp_mma(acc[n], p.z, q.z, p.w, q.w, x.z, x.w);
		}
}

__device__ __forceinline__ float mg_silu_mul(float g, float u)
{
	return g / (1.0f + expf(-g)) * u;
}

/* DB: two load groups in flight. The order of the mma chain is the same
 * either way. */
template <int NT, bool DB> __device__ __forceinline__ void mg_body(const struct k_moe_gemm &a, float *red)
{
	constexpr int LD = 8 * NT + 1;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int g = lane >> 2, t4 = lane & 3;
	const int wr = warp % MG_WR, wk = warp / MG_WR;
	const int K = a.K, O = a.O;
	const int m_blk = blockIdx.x * MG_BM;

	pdl_wait();
	if ((int)blockIdx.y >= *a.n_tiles)
		return; /* past the step's tiles (the grid is the worst case) */
	const int4 td = *reinterpret_cast<const int4 *>(a.tiles + 4 * blockIdx.y);
	const int e = td.x, j0 = td.y, nr = td.z;
	const bool gather = a.mode == KG_SILU_MUL_BF16;

	const int nls = (K + 31) >> 5, ngrp = (nls + MG_U - 1) / MG_U;
	const int koff = 8 * t4, klim = K - koff;
	const ts_bf16 *we = a.w + (size_t)e * O * K;
	const ts_bf16 *wp[2];
	const ts_bf16 *xp[NT];
	unsigned wmask = 0, xmask = 0;
#pragma unroll
	for (int h = 0; h < 2; h++) {
		const int r = m_blk + wr * 16 + h * 8 + g;
		const bool ok = r < O;
		wmask |= (unsigned)ok << h;
		wp[h] = we + (size_t)(ok ? r : 0) * K + koff;
	}
#pragma unroll
	for (int n = 0; n < NT; n++) {
		const int t = n * 8 + g;
		const bool ok = t < nr;
		const int row = !ok ? 0 : gather ? a.rows[j0 + t] / a.k : j0 + t;
		xmask |= (unsigned)ok << n;
		xp[n] = a.x + (size_t)row * K + koff;
	}

	float acc[NT][4] = {};
	mg_frag<NT> f0, f1;
	int grp = wk;
	if (DB) {
		if (grp < ngrp)
			mg_load(f0, wp, xp, wmask, xmask, grp, nls, klim);
		while (grp < ngrp) {
			const int g1 = grp + MG_WK;
			if (g1 < ngrp)
				mg_load(f1, wp, xp, wmask, xmask, g1, nls, klim);
			mg_mma(acc, f0);
			if (g1 >= ngrp)
				break;
			const int g2 = g1 + MG_WK;
			if (g2 < ngrp)
				mg_load(f0, wp, xp, wmask, xmask, g2, nls, klim);
			mg_mma(acc, f1);
			grp = g2;
		}
	} else {
		for (; grp < ngrp; grp += MG_WK) {
			mg_load(f0, wp, xp, wmask, xmask, grp, nls, klim);
			mg_mma(acc, f0);
		}
	}
	pdl_trigger_long_late();

	/* the MG_WK slices meet in shared memory and are added in slice order */
#pragma unroll
	for (int n = 0; n < NT; n++) {
		float *p = red + (wk * MG_BM + wr * 16 + g) * LD + n * 8 + 2 * t4;
		p[0] = acc[n][0];
		p[1] = acc[n][1];
		p[8 * LD] = acc[n][2];
		p[8 * LD + 1] = acc[n][3];
	}
	__syncthreads();
	if (a.mode == KG_SILU_MUL_BF16) {
		for (int i = threadIdx.x; i < nr * (MG_BM / 2); i += MG_THREADS) {
			const int t = i / (MG_BM / 2), j = i % (MG_BM / 2);
			const int rl = (j >> 3) * 16 + (j & 7), o = m_blk + rl;
			if (o >= O)
				continue;
			float gt = 0.f, up = 0.f;
#pragma unroll
			for (int k = 0; k < MG_WK; k++) {
				gt += red[(k * MG_BM + rl) * LD + t];
				up += red[(k * MG_BM + rl + 8) * LD + t];
			}
			const int oc = (o >> 4) * 8 + (o & 7);
			((ts_bf16 *)a.y)[(size_t)(j0 + t) * a.ldy + oc] = __float2bfloat16_rn(mg_silu_mul(gt, up));
		}
	} else {
		for (int i = threadIdx.x; i < nr * MG_BM; i += MG_THREADS) {
			const int t = i / MG_BM, rl = i % MG_BM, o = m_blk + rl;
			if (o >= O)
				continue;
			float v = 0.f;
#pragma unroll
			for (int k = 0; k < MG_WK; k++)
				v += red[(k * MG_BM + rl) * LD + t];
			((float *)a.y)[(size_t)(j0 + t) * a.ldy + o] = v;
		}
	}
}

/* grid (ceil(O / MG_BM), max_tiles), MG_THREADS threads; one kernel per tile
 * size (8, 16, 32, 64 tokens), the arithmetic identical in all four. MB:
 * blocks per SM the registers are sized for (64-token tiles keep two load
 * groups in flight in 200+ registers: one block). */
#define MG_KERNEL(NT, DB, MB)                                                                                \
	extern "C" __global__ void __launch_bounds__(MG_THREADS, MB) k_moe_gemm_bf16_t##NT(const struct k_moe_gemm a) \
	{                                                                                                    \
		pdl_trigger_long_start();                                                                    \
		__shared__ float red[MG_WK * MG_BM * (8 * NT + 1)];                                          \
		mg_body<NT, DB>(a, red);                                                                     \
	}
MG_KERNEL(1, true, 2)
MG_KERNEL(2, true, 2)
MG_KERNEL(4, false, 2)
MG_KERNEL(8, true, 1)

/* ---------------------------------------------------------------- combine */

#define MC_THREADS 256

/* grid (T, ceil(dim / (4 MC_THREADS))), MC_THREADS threads, 4 columns each;
 * dim % 4 == 0. */
extern "C" __global__ void __launch_bounds__(MC_THREADS) k_moe_combine_f32(const struct k_moe_combine a)
{
	pdl_trigger_short();
	pdl_wait();
	const int t = blockIdx.x, d = (blockIdx.y * MC_THREADS + threadIdx.x) * 4;
	if (d >= a.dim)
		return;
	float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
	for (int s = 0; s < a.k; s++) {
		const float w = a.w[(size_t)t * a.k + s];
		const int j = a.rank[(size_t)t * a.k + s];
		const float4 v = *reinterpret_cast<const float4 *>(a.y + (size_t)j * a.ldy + d);
		acc.x = fmaf(w, v.x, acc.x);
		acc.y = fmaf(w, v.y, acc.y);
		acc.z = fmaf(w, v.z, acc.z);
		acc.w = fmaf(w, v.w, acc.w);
	}
	if (a.shared) {
		const float gv = a.sgate ? __fdiv_rn(1.f, 1.f + expf(-a.sgate[(size_t)t * a.ld_sgate])) : 1.f;
		const float4 v = *reinterpret_cast<const float4 *>(a.shared + (size_t)t * a.ld_shared + d);
		acc.x = fmaf(gv, v.x, acc.x);
		acc.y = fmaf(gv, v.y, acc.y);
		acc.z = fmaf(gv, v.z, acc.z);
		acc.w = fmaf(gv, v.w, acc.w);
	}
	float4 *x = reinterpret_cast<float4 *>(a.x + (size_t)t * a.dim + d);
	float4 r = *x;
	r.x += acc.x;
	r.y += acc.y;
	r.z += acc.z;
	r.w += acc.w;
	*x = r;
}
