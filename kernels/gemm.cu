/* gemm.cu: y = x w^T (+ bias) for the engine's linear layers: bf16 operands,
 * fp32 accumulation on the tensor cores, and the epilogues of struct k_gemm
 * (kernels/ts_kernels.h). Launchers: src/gpu_gemm.c.
 *
 * k_gemm_bf16_small, decode (T <= 32), "swap AB": weight rows are the M side
 * of mma.m16n8k16 and tokens the N side (padded to 8), so the weights, the
 * only big operand, are read once per step whatever T is. Each lane loads 16
 * bytes (8 consecutive k) of two weight rows and of its token's x row straight
 * from global memory into registers; the mma sees those 8 k in a permuted
 * order, the same permutation for both operands, so no shared memory and no
 * ldmatrix sit between DRAM and the tensor cores. A block's 8 warps split K
 * (and, for larger T, rows); partial sums meet in shared memory and are added
 * in a fixed order. When O gives too few blocks for the SMs, the grid splits
 * K as well and k_gemm_reduce_f32 adds the splits in order.
 * Bytes: O*K*2 of weights (+ T*K*2 of x per 16*MW*WR rows); flops 2*T*K*O.
 *
 * k_gemm_bf16_large, prefill and decode of 17-64 tokens (src/gpu_gemm.c
 * decides): 128 tokens x 256 weight rows per block, 64-wide
 * k tiles in a 4-stage cp.async ring stored in the 128-byte swizzle; wgmma
 * m64n256k16 (two warpgroups) on sm_90a, mma.sync + ldmatrix elsewhere.
 * Blocks walk the output in groups of 8 token tiles so a wave shares weights
 * in L2.
 *
 * Invariants (the launcher asserts them): K % 8 == 0; x, w, y, bias, partial
 * 16-byte aligned; for SILU_MUL O % 16 == 0. T and O are arbitrary. Every
 * output element is written once by one thread; no atomics: the result
 * depends only on (T, K, O, split_k) and the data.
 *
 * SILU_MUL weights: rows come in blocks of 16, 8 gate rows then the same 8 up
 * rows (gemm_interleave_gate_up); interleaved row r is output column
 * (r / 16) * 8 + r % 8. Both kernels hold gate row r and up row r + 8 of the
 * same token in the same thread.
 *
 * Measured on H100 SXM (tests/gpu/notes/gemm.md; floor 3027 GB/s copy, 798
 * TFLOP/s cuBLAS): T = 1 streams 2.39-3.00 TB/s of weights (o_proj 2.39, qkv
 * 2.49, down 2.71-2.73, gate_up 2.88, lm_head 3.00; cuBLAS GEMV 2.14-2.83 on
 * the same card), T = 8 within 2 %, T = 16 2.30-2.90; T = 32-64 1.29-2.71
 * (small-O shapes split K). Prefill T = 4096: 392-592 TFLOP/s (wgmma).
 */
#include "pdl.h"
#include "ts_kernels.h"

typedef unsigned int u32;

/* ---------------------------------------------------------------- PTX */

/* Weights are streamed once: keep them out of L1. */
__device__ __forceinline__ uint4 ld_weights(const ts_bf16 *p)
{
	uint4 v;
	asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
	    : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
	    : "l"(p));
	return v;
}

/* Activations are re-read by the warps of a block: through L1. */
__device__ __forceinline__ uint4 ld_act(const ts_bf16 *p)
{
	return __ldg((const uint4 *)p);
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1)
{
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
	    "{%8, %9}, {%0, %1, %2, %3};"
	    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	    : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 saddr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(saddr));
}

/* 16 bytes global -> shared; ok == false fills zeros and reads nothing. */
__device__ __forceinline__ void cp_async16(u32 saddr, const void *src, bool ok)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(saddr), "l"(src), "r"(ok ? 16 : 0)
		     : "memory");
}

__device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int N> __device__ __forceinline__ void cp_async_wait(void)
{
	asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* ---------------------------------------------------------------- epilogue */

__device__ __forceinline__ float silu_mul(float g, float u)
{
	return g / (1.0f + expf(-g)) * u;
}

/* Output (t, o) of STORE_F32, ADD_F32 or STORE_BF16: bias, then the mode. */
__device__ __forceinline__ void epi_one(const struct k_gemm &a, int t, int o, float v)
{
	if (a.bias)
		v += a.bias[o];
	size_t i = (size_t)t * a.ldy + o;
	if (a.mode == KG_STORE_F32)
		((float *)a.y)[i] = v;
	else if (a.mode == KG_ADD_F32)
		((float *)a.y)[i] += v;
	else
		((ts_bf16 *)a.y)[i] = __float2bfloat16_rn(v);
}

/* Outputs (t, o) and (t, o + 1), o even. */
__device__ __forceinline__ void epi_pair(const struct k_gemm &a, int t, int o, float v0, float v1)
{
	if (o + 1 >= a.O || (a.ldy & 1)) {
		if (o < a.O)
			epi_one(a, t, o, v0);
		if (o + 1 < a.O)
			epi_one(a, t, o + 1, v1);
		return;
	}
	if (a.bias) {
		float2 b = *(const float2 *)(a.bias + o);
		v0 += b.x;
		v1 += b.y;
	}
	size_t i = (size_t)t * a.ldy + o;
	if (a.mode == KG_STORE_F32) {
		*(float2 *)((float *)a.y + i) = make_float2(v0, v1);
	} else if (a.mode == KG_ADD_F32) {
		float2 *p = (float2 *)((float *)a.y + i), y = *p;
		*p = make_float2(y.x + v0, y.y + v1);
	} else {
		*(__nv_bfloat162 *)((ts_bf16 *)a.y + i) = __floats2bfloat162_rn(v0, v1);
	}
}

/* SILU_MUL: gate of interleaved row og, up of row og + 8. */
__device__ __forceinline__ void epi_silu(const struct k_gemm &a, int t, int og, float gt, float up)
{
	if (a.bias) {
		gt += a.bias[og];
		up += a.bias[og + 8];
	}
	int oc = (og >> 4) * 8 + (og & 7);
	((ts_bf16 *)a.y)[(size_t)t * a.ldy + oc] = __float2bfloat16_rn(silu_mul(gt, up));
}

/* SILU_MUL for gate rows og, og + 1 (og even): two adjacent output columns. */
__device__ __forceinline__ void epi_silu_pair(const struct k_gemm &a, int t, int og, float g0, float g1, float u0,
					      float u1)
{
	if (a.ldy & 1) {
		epi_silu(a, t, og, g0, u0);
		epi_silu(a, t, og + 1, g1, u1);
		return;
	}
	if (a.bias) {
		float2 bg = *(const float2 *)(a.bias + og), bu = *(const float2 *)(a.bias + og + 8);
		g0 += bg.x;
		g1 += bg.y;
		u0 += bu.x;
		u1 += bu.y;
	}
	int oc = (og >> 4) * 8 + (og & 7);
	*(__nv_bfloat162 *)((ts_bf16 *)a.y + (size_t)t * a.ldy + oc) =
		__floats2bfloat162_rn(silu_mul(g0, u0), silu_mul(g1, u1));
}

/* Raw split-K partials (t, o), (t, o + 1) of split z: (split_k, T, O). */
__device__ __forceinline__ void part_pair(const struct k_gemm &a, int z, int t, int o, float v0, float v1)
{
	float *p = a.partial + ((size_t)z * a.T + t) * a.O + o;
	if (o + 1 < a.O && !(a.O & 1)) {
		*(float2 *)p = make_float2(v0, v1);
	} else {
		if (o < a.O)
			p[0] = v0;
		if (o + 1 < a.O)
			p[1] = v1;
	}
}

/* ---------------------------------------------------------------- reduce */

/* y = epilogue(sum over s in 0..split_k-1 of partial[s]), s in order.
 * Grid (ceil(n_out / 256), T), 256 threads; n_out = O, or O / 2 for SILU_MUL. */
extern "C" __global__ void __launch_bounds__(256) k_gemm_reduce_f32(const struct k_gemm a)
{
	pdl_trigger_short();
	pdl_wait();
	const int t = blockIdx.y, j = blockIdx.x * 256 + threadIdx.x;
	const size_t plane = (size_t)a.T * a.O;
	const float *p = a.partial + (size_t)t * a.O;
	if (a.mode == KG_SILU_MUL_BF16) {
		if (j >= a.O / 2)
			return;
		int og = (j >> 3) * 16 + (j & 7);
		float gt = 0.0f, up = 0.0f;
		for (int s = 0; s < a.split_k; s++) {
			gt += p[s * plane + og];
			up += p[s * plane + og + 8];
		}
		epi_silu(a, t, og, gt, up);
	} else {
		if (j >= a.O)
			return;
		float v = 0.0f;
		for (int s = 0; s < a.split_k; s++)
			v += p[s * plane + j];
		epi_one(a, t, j, v);
	}
}

/* ---------------------------------------------------------------- small */

#define SMALL_THREADS 256
#define SMALL_PF_K 1024 /* k elements of each weight row prefetched into L2 before pdl_wait */
/* Reduction buffer: WK * BM == 128 * MW rows of NT * 8 + 1 floats, sized for
 * MW 1, NT 8 (the tests/gpu variants); the product's NT <= 4 uses half. */
#define SMALL_RED_FLOATS (128 * 65)

/* One group of U k-steps (32 k each) of a lane's operands. */
template <int NT, int MW, int U> struct small_frag {
	uint4 w[MW][2][U]; /* weight rows g and g + 8 of each m16 tile */
	uint4 x[NT][U];    /* token g of each n8 tile */
};

template <int NT, int MW, int U>
__device__ __forceinline__ void small_load(small_frag<NT, MW, U> &f, const ts_bf16 *const (&wp)[MW][2],
					   const ts_bf16 *const (&xp)[NT], u32 wmask, u32 xmask, int grp, int nls,
					   int klim)
{
#pragma unroll
	for (int u = 0; u < U; u++) {
		const int ls = grp * U + u;
		const bool ok = ls < nls && ls * 32 < klim;
#pragma unroll
		for (int mi = 0; mi < MW; mi++)
#pragma unroll
			for (int h = 0; h < 2; h++)
				f.w[mi][h][u] = ok && (wmask >> (mi * 2 + h) & 1) ? ld_weights(wp[mi][h] + ls * 32)
										   : make_uint4(0, 0, 0, 0);
#pragma unroll
		for (int n = 0; n < NT; n++)
			f.x[n][u] = ok && (xmask >> n & 1) ? ld_act(xp[n] + ls * 32) : make_uint4(0, 0, 0, 0);
	}
}

/* Lane (g, t4) holds k 8*t4 .. 8*t4+7 of its rows. The mma's logical k
 * 2*t4+{0,1} and 2*t4+8+{0,1} are taken from loaded pairs 0 and 1 (first
 * mma) and 2 and 3 (second); A and B use the same map, so the dot products
 * are over the same k. */
template <int NT, int MW, int U>
__device__ __forceinline__ void small_mma(float (&acc)[MW][NT][4], const small_frag<NT, MW, U> &f)
{
#pragma unroll
	for (int u = 0; u < U; u++)
#pragma unroll
		for (int mi = 0; mi < MW; mi++)
#pragma unroll
			for (int n = 0; n < NT; n++) {
				const uint4 &p = f.w[mi][0][u], &q = f.w[mi][1][u], &x = f.x[n][u];
				mma_bf16(acc[mi][n], p.x, q.x, p.y, q.y, x.x, x.y);
				mma_bf16(acc[mi][n], p.z, q.z, p.w, q.w, x.z, x.w);
			}
}

/* NT n8 token tiles (T <= 8 * NT); MW m16 tiles per warp; WR warps along the
 * rows times WK along K; U k-steps per load group; DB: two groups in flight. */
template <int NT, int MW, int WR, int WK, int U, bool DB>
__device__ __forceinline__ void small_body(const struct k_gemm &a, float *red)
{
	constexpr int BM = 16 * MW * WR, LD = 8 * NT + 1;
	static_assert(WR * WK * 32 == SMALL_THREADS, "8 warps");
	static_assert(WK * BM * LD <= SMALL_RED_FLOATS, "reduction buffer");
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int g = lane >> 2, t4 = lane & 3;
	const int wr = warp % WR, wk = warp / WR;
	const int T = a.T, K = a.K, O = a.O;
	const int split = a.split_k > 1 ? a.split_k : 1;
	const int m_blk = blockIdx.x * BM;

	/* This block's k-steps: split blockIdx.y of ceil(K / 32). */
	const int nsteps = (K + 31) >> 5;
	const int sps = (nsteps + split - 1) / split;
	const int s_beg = blockIdx.y * sps;
	const int nls = min(nsteps - s_beg, sps);
	const int ngrp = nls > 0 ? (nls + U - 1) / U : 0;
	const int koff = s_beg * 32 + 8 * t4;
	const int klim = K - koff;

	/* Before waiting on the previous kernel: pull the first part of this
	 * block's weight slice (rows m_blk.., k from s_beg * 32) into L2. The
	 * weights never change; x and y are touched only after pdl_wait. */
	{
		const int kb = s_beg * 32, kn = min(K - kb, SMALL_PF_K);
		const int rows = min(BM, O - m_blk);
		if (kn > 0)
			for (int r = warp; r < rows; r += SMALL_THREADS / 32)
				pdl_prefetch_l2(a.w + (size_t)(m_blk + r) * K + kb, (size_t)kn * 2, lane, 32);
	}
	pdl_wait();

	const ts_bf16 *wp[MW][2];
	const ts_bf16 *xp[NT];
	u32 wmask = 0, xmask = 0;
#pragma unroll
	for (int mi = 0; mi < MW; mi++)
#pragma unroll
		for (int h = 0; h < 2; h++) {
			const int r = m_blk + wr * 16 * MW + mi * 16 + h * 8 + g;
			const bool ok = r < O;
			wmask |= (u32)ok << (mi * 2 + h);
			wp[mi][h] = a.w + (size_t)(ok ? r : 0) * K + koff;
		}
#pragma unroll
	for (int n = 0; n < NT; n++) {
		const int t = n * 8 + g;
		const bool ok = t < T;
		xmask |= (u32)ok << n;
		xp[n] = a.x + (size_t)(ok ? t : 0) * K + koff;
	}

	float acc[MW][NT][4] = {};
	small_frag<NT, MW, U> f0, f1;
	int grp = wk;
	if (DB) {
		if (grp < ngrp)
			small_load(f0, wp, xp, wmask, xmask, grp, nls, klim);
		while (grp < ngrp) {
			const int g1 = grp + WK;
			if (g1 < ngrp)
				small_load(f1, wp, xp, wmask, xmask, g1, nls, klim);
			small_mma(acc, f0);
			if (g1 >= ngrp)
				break;
			const int g2 = g1 + WK;
			if (g2 < ngrp)
				small_load(f0, wp, xp, wmask, xmask, g2, nls, klim);
			small_mma(acc, f1);
			grp = g2;
		}
	} else {
		for (; grp < ngrp; grp += WK) {
			small_load(f0, wp, xp, wmask, xmask, grp, nls, klim);
			small_mma(acc, f0);
		}
	}

	pdl_trigger_long_late(); /* the streaming is done: the next kernel may launch */

	/* The WK warps that share rows add up in shared memory, wk in order. */
#pragma unroll
	for (int mi = 0; mi < MW; mi++)
#pragma unroll
		for (int n = 0; n < NT; n++) {
			float *p = red + (wk * BM + wr * 16 * MW + mi * 16 + g) * LD + n * 8 + 2 * t4;
			p[0] = acc[mi][n][0];
			p[1] = acc[mi][n][1];
			p[8 * LD] = acc[mi][n][2];
			p[8 * LD + 1] = acc[mi][n][3];
		}
	__syncthreads();

	if (split > 1) {
		for (int i = threadIdx.x; i < T * BM; i += SMALL_THREADS) {
			const int t = i / BM, rl = i % BM, o = m_blk + rl;
			if (o >= O)
				continue;
			float v = 0.0f;
#pragma unroll
			for (int k = 0; k < WK; k++)
				v += red[(k * BM + rl) * LD + t];
			a.partial[((size_t)blockIdx.y * T + t) * O + o] = v;
		}
	} else if (a.mode == KG_SILU_MUL_BF16) {
		for (int i = threadIdx.x; i < T * (BM / 2); i += SMALL_THREADS) {
			const int t = i / (BM / 2), j = i % (BM / 2);
			const int rl = (j >> 3) * 16 + (j & 7), o = m_blk + rl;
			if (o >= O)
				continue;
			float gt = 0.0f, up = 0.0f;
#pragma unroll
			for (int k = 0; k < WK; k++) {
				gt += red[(k * BM + rl) * LD + t];
				up += red[(k * BM + rl + 8) * LD + t];
			}
			epi_silu(a, t, o, gt, up);
		}
	} else {
		for (int i = threadIdx.x; i < T * BM; i += SMALL_THREADS) {
			const int t = i / BM, rl = i % BM, o = m_blk + rl;
			if (o >= O)
				continue;
			float v = 0.0f;
#pragma unroll
			for (int k = 0; k < WK; k++)
				v += red[(k * BM + rl) * LD + t];
			epi_one(a, t, o, v);
		}
	}
}

/* The configuration per T (T <= 32; the launcher sends larger T to the large
 * kernel). src/gpu_gemm.c's small_cfg() must give the same BM = 16 * MW * WR
 * for each T range: its grid is ceil(O / BM) x split_k. */
#define SMALL_CFG_T8 1, 1, 1, 8, 2, true
#define SMALL_CFG_T16 2, 1, 1, 8, 2, true
#define SMALL_CFG_T32 4, 1, 4, 2, 2, false

extern "C" __global__ void __launch_bounds__(SMALL_THREADS, 2) k_gemm_bf16_small(const struct k_gemm a)
{
	pdl_trigger_long_start(); /* small_body waits, after warming L2 with its weights */
	__shared__ float red[SMALL_RED_FLOATS];
	if (a.T <= 8)
		small_body<SMALL_CFG_T8>(a, red);
	else if (a.T <= 16)
		small_body<SMALL_CFG_T16>(a, red);
	else if (a.T <= 32)
		small_body<SMALL_CFG_T32>(a, red);
	else
		__trap(); /* the launcher never sends T > 32 here */
}

/* ---------------------------------------------------------------- large */

#define LG_BM 128    /* tokens per block */
#define LG_BN 256    /* weight rows per block */
#define LG_BK 64     /* k per stage: one 128-byte row per operand row */
#define LG_STAGES 4
#define LG_THREADS 256
#define LG_GROUP_M 8 /* token tiles per group of the block order */
#define LG_A_BYTES (LG_BM * 128)
#define LG_STAGE_BYTES ((LG_BM + LG_BN) * 128)
/* Dynamic shared memory of k_gemm_bf16_large (src/gpu_gemm.c uses the same). */
#define LG_SMEM_BYTES (LG_STAGES * LG_STAGE_BYTES + 1024)

__device__ __forceinline__ void fence_proxy_async(void)
{
	asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

/* Row r, 16-byte chunk c of a tile whose rows are 128 bytes, in the 128-byte
 * swizzle of wgmma (and conflict-free for ldmatrix): chunk c ^ (r % 8). */
__device__ __forceinline__ u32 swz(int r, int c)
{
	return (u32)(r * 128 + ((c ^ (r & 7)) << 4));
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* K-major operand in the 128-byte swizzle: 8-row groups 1024 bytes apart. */
__device__ __forceinline__ uint64_t wg_desc(u32 saddr)
{
	return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
	       ((uint64_t)1 << 62);
}

__device__ __forceinline__ void wg_fence(void)
{
	asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}

__device__ __forceinline__ void wg_commit(void)
{
	asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}

template <int N> __device__ __forceinline__ void wg_wait(void)
{
	asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}

/* Keeps the compiler from moving accumulators while a wgmma owns them. */
__device__ __forceinline__ void wg_fence_acc(float (&d)[128])
{
#pragma unroll
	for (int i = 0; i < 128; i++)
		asm volatile("" : "+f"(d[i])::"memory");
}

__device__ __forceinline__ void wg_mma_m64n256k16(float (&d)[128], uint64_t da, uint64_t db)
{
	asm volatile(
		"{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
		"wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
		"%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
		"%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
		"%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
		"%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
		"%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
		"%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
		"%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
		"%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
		"}, %128, %129, p, 1, 1, 0, 0;\n}\n"
		: "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
		  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
		  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
		  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
		  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
		  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
		  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
		  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
		  "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
		  "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
		  "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
		  "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
		  "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
		  "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
		  "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
		  "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
		: "l"(da), "l"(db), "r"(1));
}
#endif

/* The loads of one stage: x rows m0.., w rows n0.., k tile kt. Thread tid
 * copies chunk tid & 7 of rows tid / 8 + 32 * i. */
__device__ __forceinline__ void lg_load(const struct k_gemm &a, u32 s_stage, int m0, int n0, int kt)
{
	const int c = threadIdx.x & 7, r0 = threadIdx.x >> 3;
	const int k = kt * LG_BK + c * 8;
	const bool kok = k < a.K;
#pragma unroll
	for (int i = 0; i < LG_BM / 32; i++) {
		const int r = r0 + 32 * i, t = m0 + r;
		const bool ok = kok && t < a.T;
		cp_async16(s_stage + swz(r, c), ok ? (const void *)(a.x + (size_t)t * a.K + k) : (const void *)a.x, ok);
	}
#pragma unroll
	for (int i = 0; i < LG_BN / 32; i++) {
		const int r = r0 + 32 * i, o = n0 + r;
		const bool ok = kok && o < a.O;
		cp_async16(s_stage + LG_A_BYTES + swz(r, c), ok ? (const void *)(a.w + (size_t)o * a.K + k) : (const void *)a.w,
			   ok);
	}
}

/* Epilogue of one accumulator quad at rows t, t + 8 and columns o, o + 1
 * (c), with the up quad u (columns o + 8) for SILU_MUL. */
__device__ __forceinline__ void lg_epi(const struct k_gemm &a, int z, int t, int o, float c0, float c1, float c2,
				       float c3)
{
	if (a.split_k > 1) {
		if (t < a.T)
			part_pair(a, z, t, o, c0, c1);
		if (t + 8 < a.T)
			part_pair(a, z, t + 8, o, c2, c3);
	} else {
		if (t < a.T)
			epi_pair(a, t, o, c0, c1);
		if (t + 8 < a.T)
			epi_pair(a, t + 8, o, c2, c3);
	}
}

__device__ __forceinline__ void lg_epi_silu(const struct k_gemm &a, int t, int o, float c0, float c1, float c2,
					    float c3, float u0, float u1, float u2, float u3)
{
	if (o >= a.O)
		return;
	if (t < a.T)
		epi_silu_pair(a, t, o, c0, c1, u0, u1);
	if (t + 8 < a.T)
		epi_silu_pair(a, t + 8, o, c2, c3, u2, u3);
}

/* WG: wgmma (sm_90a), two warpgroups of 64 tokens x 256 rows. Else mma.sync:
 * 2 x 4 warps of 64 tokens x 64 rows. DEEP (wgmma only; tests/gpu variant,
 * not launched): one more tile in flight, paid for by draining the wgmma
 * queue every k tile: -20 % at T = 4096, +0-5 % at T <= 64 alone, and both
 * pipelines in one kernel ran 7-70 % slower than either alone (run 3). */
template <bool WG, bool DEEP>
__device__ __forceinline__ void large_body(const struct k_gemm &a, unsigned char *smem_raw)
{
	const int tiles_m = (a.T + LG_BM - 1) / LG_BM, tiles_n = (a.O + LG_BN - 1) / LG_BN;
	const int per_group = LG_GROUP_M * tiles_n;
	const int grp = blockIdx.x / per_group, first_m = grp * LG_GROUP_M;
	const int gm = min(tiles_m - first_m, LG_GROUP_M);
	const int in = blockIdx.x - grp * per_group;
	const int m0 = (first_m + in % gm) * LG_BM, n0 = (in / gm) * LG_BN;
	const int z = blockIdx.y, split = a.split_k > 1 ? a.split_k : 1;
	const int nkt = (a.K + LG_BK - 1) / LG_BK, kps = (nkt + split - 1) / split;
	const int kt0 = z * kps, nk = max(0, min(nkt - kt0, kps));

	const u32 s_base = ((u32)__cvta_generic_to_shared(smem_raw) + 1023) & ~1023u;
	const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	const int g = lane >> 2, t4 = lane & 3;
	/* Tiles loaded ahead of the one in use; wgmma keeps one more stage
	 * busy while the next is issued. */
	constexpr int PD = WG && !DEEP ? LG_STAGES - 2 : LG_STAGES - 1;

#pragma unroll
	for (int p = 0; p < PD; p++) {
		if (p < nk)
			lg_load(a, s_base + (p % LG_STAGES) * LG_STAGE_BYTES, m0, n0, kt0 + p);
		cp_async_commit();
	}

	if constexpr (WG) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
		const int wg = warp >> 2;
		float d[128];
#pragma unroll
		for (int i = 0; i < 128; i++)
			d[i] = 0.0f;
		for (int kt = 0; kt < nk; kt++) {
			cp_async_wait<PD - 1>();
			fence_proxy_async();
			__syncthreads();
			if (kt + PD < nk)
				lg_load(a, s_base + ((kt + PD) % LG_STAGES) * LG_STAGE_BYTES, m0, n0, kt0 + kt + PD);
			cp_async_commit();
			const u32 s_a = s_base + (kt % LG_STAGES) * LG_STAGE_BYTES + wg * 64 * 128;
			const u32 s_b = s_base + (kt % LG_STAGES) * LG_STAGE_BYTES + LG_A_BYTES;
			wg_fence_acc(d);
			wg_fence();
#pragma unroll
			for (int kk = 0; kk < LG_BK / 16; kk++)
				wg_mma_m64n256k16(d, wg_desc(s_a + kk * 32), wg_desc(s_b + kk * 32));
			wg_commit();
			wg_fence_acc(d);
			if (DEEP)
				wg_wait<0>();
			else
				wg_wait<1>();
		}
		wg_wait<0>();
		wg_fence_acc(d);
		const int t = m0 + wg * 64 + (warp & 3) * 16 + g;
		if (a.mode == KG_SILU_MUL_BF16 && split == 1) {
#pragma unroll
			for (int j = 0; j < 32; j += 2)
				lg_epi_silu(a, t, n0 + 8 * j + 2 * t4, d[4 * j], d[4 * j + 1], d[4 * j + 2], d[4 * j + 3],
					    d[4 * j + 4], d[4 * j + 5], d[4 * j + 6], d[4 * j + 7]);
		} else {
#pragma unroll
			for (int j = 0; j < 32; j++)
				lg_epi(a, z, t, n0 + 8 * j + 2 * t4, d[4 * j], d[4 * j + 1], d[4 * j + 2], d[4 * j + 3]);
		}
#endif
	} else {
		const int wm = warp >> 2, wn = warp & 3;
		float acc[4][8][4];
#pragma unroll
		for (int i = 0; i < 4; i++)
#pragma unroll
			for (int j = 0; j < 8; j++)
#pragma unroll
				for (int q = 0; q < 4; q++)
					acc[i][j][q] = 0.0f;
		for (int kt = 0; kt < nk; kt++) {
			cp_async_wait<PD - 1>();
			__syncthreads();
			if (kt + PD < nk)
				lg_load(a, s_base + ((kt + PD) % LG_STAGES) * LG_STAGE_BYTES, m0, n0, kt0 + kt + PD);
			cp_async_commit();
			const u32 s_a = s_base + (kt % LG_STAGES) * LG_STAGE_BYTES;
			const u32 s_b = s_a + LG_A_BYTES;
#pragma unroll
			for (int kk = 0; kk < LG_BK / 16; kk++) {
				u32 af[4][4], bf[8][2];
#pragma unroll
				for (int i = 0; i < 4; i++) {
					const int r = wm * 64 + i * 16 + (lane & 15);
					ldmatrix_x4(af[i], s_a + swz(r, kk * 2 + (lane >> 4)));
				}
#pragma unroll
				for (int jj = 0; jj < 4; jj++) {
					const int r = wn * 64 + jj * 16 + (lane & 7) + ((lane >> 4) << 3);
					u32 b[4];
					ldmatrix_x4(b, s_b + swz(r, kk * 2 + ((lane >> 3) & 1)));
					bf[2 * jj][0] = b[0];
					bf[2 * jj][1] = b[1];
					bf[2 * jj + 1][0] = b[2];
					bf[2 * jj + 1][1] = b[3];
				}
#pragma unroll
				for (int i = 0; i < 4; i++)
#pragma unroll
					for (int j = 0; j < 8; j++)
						mma_bf16(acc[i][j], af[i][0], af[i][1], af[i][2], af[i][3], bf[j][0],
							 bf[j][1]);
			}
		}
#pragma unroll
		for (int i = 0; i < 4; i++) {
			const int t = m0 + wm * 64 + i * 16 + g;
			const int o = n0 + wn * 64 + 2 * t4;
			if (a.mode == KG_SILU_MUL_BF16 && split == 1) {
#pragma unroll
				for (int j = 0; j < 8; j += 2)
					lg_epi_silu(a, t, o + 8 * j, acc[i][j][0], acc[i][j][1], acc[i][j][2],
						    acc[i][j][3], acc[i][j + 1][0], acc[i][j + 1][1], acc[i][j + 1][2],
						    acc[i][j + 1][3]);
			} else {
#pragma unroll
				for (int j = 0; j < 8; j++)
					lg_epi(a, z, t, o + 8 * j, acc[i][j][0], acc[i][j][1], acc[i][j][2],
					       acc[i][j][3]);
			}
		}
	}
}

/* Grid (tiles, split_k): tiles = ceil(T / 128) * ceil(O / 256) in grouped
 * order; LG_THREADS threads; LG_SMEM_BYTES of dynamic shared memory. Also
 * serves decode batches of 17..64 tokens (and 17..32 when O is small),
 * where the 256 weight rows of a block share x through shared memory. */
extern "C" __global__ void __launch_bounds__(LG_THREADS, 1) k_gemm_bf16_large(const struct k_gemm a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) unsigned char lg_smem[];
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	large_body<true, false>(a, lg_smem);
#else
	large_body<false, false>(a, lg_smem);
#endif
}
