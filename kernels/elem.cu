/* elem.cu: the element-wise kernels of the forward pass: embedding gather,
 * RMSNorm, and q/k-norm + RoPE + paged KV write.
 *
 * All three are memory-bound; the floor is bytes / HBM bandwidth:
 *   embed    T * dim * (2 + 4) bytes (bf16 row in, f32 row out)
 *   rmsnorm  T * dim * (4 + 2) bytes (+ the weight once, from L2)
 *   rope_kv  T * (q_dim + 2 kv_dim) * (4 + 2) bytes (+ cos/sin computed here)
 * tests/gpu/k_elem.c prints the achieved GB/s; tests/gpu/notes/elem.md keeps
 * the measurements.
 *
 * Numerics follow src/cpu.c: float32 throughout, rounded to bf16 once at the
 * store. RMSNorm is HF's x * rsqrt(mean(x^2) + eps) * w with a correctly
 * rounded 1 / sqrt, the products in the same order as cpu.c (w * (x * r)).
 * RoPE angles are float(pos) * inv_freq[i] in float32, as HF; their sin and
 * cos are fm_sincosf of src/fmath.c ported bit for bit (double arithmetic
 * through __dadd_rn/__dmul_rn, which nvcc never contracts into FMAs), so at
 * any position up to 2^24 they equal the CPU backend's, and the rotation
 * x1 cos - x2 sin is the same three rounded operations. Without q/k norm the
 * rope output is bit-identical to cpu.c's before the bf16 store; with it only
 * the order of the sum of squares differs.
 */
#include "pdl.h"
#include "ts_kernels.h"

#define EL_FULL 0xffffffffu

__device__ __forceinline__ float bf16_lo(uint32_t w)
{
	return __uint_as_float(w << 16);
}

__device__ __forceinline__ float bf16_hi(uint32_t w)
{
	return __uint_as_float(w & 0xffff0000u);
}

__device__ __forceinline__ uint32_t bf16_bits(float f)
{
	return (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(f));
}

__device__ __forceinline__ uint32_t bf16_pack(float lo, float hi)
{
	return bf16_bits(lo) | (bf16_bits(hi) << 16);
}

__device__ __forceinline__ float el_warp_sum(float v)
{
	for (int o = 16; o; o >>= 1)
		v += __shfl_xor_sync(EL_FULL, v, o);
	return v;
}

/* ---------------------------------------------------------------- embed */

/* grid (T), any block: row t = float(table[token[t]]), 8 values per 16-byte
 * load. dim % 8 == 0, table and x 16-byte aligned (the launcher checks). */
extern "C" __global__ void __launch_bounds__(256) k_embed_bf16(const struct k_embed a)
{
	pdl_trigger_short();
	pdl_wait();
	const int t = blockIdx.x, nc = a.dim >> 3;
	const uint4 *src = (const uint4 *)(a.table + (size_t)a.token[t] * (size_t)a.dim);
	float4 *dst = (float4 *)(a.x + (size_t)t * (size_t)a.dim);
	for (int c = threadIdx.x; c < nc; c += blockDim.x) {
		const uint4 v = src[c];
		dst[2 * c] = make_float4(bf16_lo(v.x), bf16_hi(v.x), bf16_lo(v.y), bf16_hi(v.y));
		dst[2 * c + 1] = make_float4(bf16_lo(v.z), bf16_hi(v.z), bf16_lo(v.w), bf16_hi(v.w));
	}
}

/* ---------------------------------------------------------------- rmsnorm */

#define RMS_CACHE 4 /* 8-value chunks a thread keeps in registers between the passes */

__shared__ float rms_red[32];

/* grid (T), block B (a multiple of 32): out row i from x row rows[i] (or i).
 * A thread holds chunks c = tid + k B, k < RMS_CACHE, in registers; longer
 * rows read the rest twice. dim % 8 == 0, pointers 16-byte aligned. */
extern "C" __global__ void __launch_bounds__(1024) k_rmsnorm_bf16(const struct k_rmsnorm a)
{
	pdl_trigger_short();
	pdl_wait();
	const int i = blockIdx.x, tid = threadIdx.x, B = blockDim.x, nc = a.dim >> 3;
	const int r = a.rows ? a.rows[i] : i;
	const float4 *x = (const float4 *)(a.x + (size_t)r * (size_t)a.dim);
	const uint4 *w = (const uint4 *)a.w;
	uint4 *o = (uint4 *)(a.out + (size_t)i * (size_t)a.dim);

	float4 xa[RMS_CACHE], xb[RMS_CACHE];
	float ss = 0.0f;
#pragma unroll
	for (int k = 0; k < RMS_CACHE; k++) {
		const int c = tid + k * B;
		if (c < nc) {
			xa[k] = x[2 * c];
			xb[k] = x[2 * c + 1];
		}
	}
#pragma unroll
	for (int k = 0; k < RMS_CACHE; k++) {
		if (tid + k * B < nc) {
			ss = fmaf(xa[k].x, xa[k].x, ss);
			ss = fmaf(xa[k].y, xa[k].y, ss);
			ss = fmaf(xa[k].z, xa[k].z, ss);
			ss = fmaf(xa[k].w, xa[k].w, ss);
			ss = fmaf(xb[k].x, xb[k].x, ss);
			ss = fmaf(xb[k].y, xb[k].y, ss);
			ss = fmaf(xb[k].z, xb[k].z, ss);
			ss = fmaf(xb[k].w, xb[k].w, ss);
		}
	}
	for (int c = tid + RMS_CACHE * B; c < nc; c += B) {
		const float4 p = x[2 * c], q = x[2 * c + 1];
		ss = fmaf(p.x, p.x, ss);
		ss = fmaf(p.y, p.y, ss);
		ss = fmaf(p.z, p.z, ss);
		ss = fmaf(p.w, p.w, ss);
		ss = fmaf(q.x, q.x, ss);
		ss = fmaf(q.y, q.y, ss);
		ss = fmaf(q.z, q.z, ss);
		ss = fmaf(q.w, q.w, ss);
	}
	ss = el_warp_sum(ss);
	if ((tid & 31) == 0)
		rms_red[tid >> 5] = ss;
	__syncthreads();
	float tot = 0.0f;
	for (int k = 0; k < (B >> 5); k++)
		tot += rms_red[k];
	/* cpu.c: 1 / sqrt(ss / n + eps), correctly rounded each step */
	const float rr = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(tot, (float)a.dim), a.eps)));

#pragma unroll
	for (int k = 0; k < RMS_CACHE; k++) {
		const int c = tid + k * B;
		if (c < nc) {
			const uint4 wv = w[c];
			uint4 ov;
			ov.x = bf16_pack(__fmul_rn(bf16_lo(wv.x), __fmul_rn(xa[k].x, rr)),
					 __fmul_rn(bf16_hi(wv.x), __fmul_rn(xa[k].y, rr)));
			ov.y = bf16_pack(__fmul_rn(bf16_lo(wv.y), __fmul_rn(xa[k].z, rr)),
					 __fmul_rn(bf16_hi(wv.y), __fmul_rn(xa[k].w, rr)));
			ov.z = bf16_pack(__fmul_rn(bf16_lo(wv.z), __fmul_rn(xb[k].x, rr)),
					 __fmul_rn(bf16_hi(wv.z), __fmul_rn(xb[k].y, rr)));
			ov.w = bf16_pack(__fmul_rn(bf16_lo(wv.w), __fmul_rn(xb[k].z, rr)),
					 __fmul_rn(bf16_hi(wv.w), __fmul_rn(xb[k].w, rr)));
			o[c] = ov;
		}
	}
	for (int c = tid + RMS_CACHE * B; c < nc; c += B) {
		const float4 p = x[2 * c], q = x[2 * c + 1];
		const uint4 wv = w[c];
		uint4 ov;
		ov.x = bf16_pack(__fmul_rn(bf16_lo(wv.x), __fmul_rn(p.x, rr)), __fmul_rn(bf16_hi(wv.x), __fmul_rn(p.y, rr)));
		ov.y = bf16_pack(__fmul_rn(bf16_lo(wv.y), __fmul_rn(p.z, rr)), __fmul_rn(bf16_hi(wv.y), __fmul_rn(p.w, rr)));
		ov.z = bf16_pack(__fmul_rn(bf16_lo(wv.z), __fmul_rn(q.x, rr)), __fmul_rn(bf16_hi(wv.z), __fmul_rn(q.y, rr)));
		ov.w = bf16_pack(__fmul_rn(bf16_lo(wv.w), __fmul_rn(q.z, rr)), __fmul_rn(bf16_hi(wv.w), __fmul_rn(q.w, rr)));
		o[c] = ov;
	}
}

/* ---------------------------------------------------------------- sin, cos */

/* fm_sincosf of src/fmath.c, bit for bit (see there for the method). */
__device__ __forceinline__ double sin_k(double r)
{
	const double z = __dmul_rn(r, r);
	double p = __dadd_rn(0x1.71d9a9f41c5a9p-19, __dmul_rn(z, -0x1.aa285788aaa42p-26));
	p = __dadd_rn(-0x1.a019fd9b35ee5p-13, __dmul_rn(z, p));
	double q = __dadd_rn(0x1.1111110fd3d43p-7, __dmul_rn(z, p));
	q = __dadd_rn(-0x1.555555555516bp-3, __dmul_rn(z, q));
	return __dadd_rn(r, __dmul_rn(__dmul_rn(r, z), q));
}

__device__ __forceinline__ double cos_k(double r)
{
	const double z = __dmul_rn(r, r);
	double p = __dadd_rn(0x1.a01298d866458p-16, __dmul_rn(z, -0x1.2474e1a97d143p-22));
	p = __dadd_rn(-0x1.6c16bae5ef6d4p-10, __dmul_rn(z, p));
	double q = __dadd_rn(0x1.555555514f774p-5, __dmul_rn(z, p));
	q = __dadd_rn(-0x1.fffffffffe697p-2, __dmul_rn(z, q));
	return __dadd_rn(1.0, __dmul_rn(z, q));
}

#define PIO2_1 0x1.921fb544p+0
#define PIO2_2 0x1.0b4611a6p-34
#define PIO2_3 0x1.3198a2e037073p-69
#define PIO2 0x1.921fb54442d18p+0

__constant__ uint32_t el_two_over_pi[13] = {
	0x00000000, 0xa2f9836e, 0x4e441529, 0xfc2757d1, 0xf534ddc0, 0xdb629599, 0x3c439041,
	0xfe5163ab, 0xdebbc561, 0xb7246e3a, 0x424dd2e0, 0x06492eea, 0x09d1921c,
};

/* Payne-Hanek for |x| >= 2^20 (fmath.c reduce_large). */
__device__ double reduce_large(uint32_t ix, int *q)
{
	const int e = (int)(ix >> 23) - 150;
	const uint32_t m = (ix & 0x7fffffu) | 0x800000u;
	const int g = e + 30;
	const int wi = g >> 5, sh = g & 31;
	uint32_t w[4];
#pragma unroll
	for (int j = 0; j < 4; j++) {
		const uint64_t pair = ((uint64_t)el_two_over_pi[wi + j] << 32) | el_two_over_pi[wi + j + 1];
		w[j] = (uint32_t)(pair >> (32 - sh));
	}
	uint32_t p[4];
	uint64_t acc = 0;
#pragma unroll
	for (int j = 3; j >= 0; j--) {
		acc += (uint64_t)m * w[j];
		p[j] = (uint32_t)acc;
		acc >>= 32;
	}
	int quad = (int)(p[0] >> 30);
	const uint64_t frac = ((uint64_t)(p[0] & 0x3fffffffu) << 34) | ((uint64_t)p[1] << 2) | (p[2] >> 30);
	if (frac >> 63)
		quad++;
	*q = quad & 3;
	return __dmul_rn(__dmul_rn(__ll2double_rn((long long)frac), 0x1p-64), PIO2);
}

__device__ void el_sincosf(float x, float *s, float *c)
{
	const uint32_t ix = __float_as_uint(x) & 0x7fffffffu;
	double r;
	int q;
	if (ix >= 0x7f800000u) {
		*s = *c = __fsub_rn(x, x);
		return;
	}
	if (ix < 0x39800000u) {
		*s = x;
		*c = 1.0f;
		return;
	}
	if (ix < 0x3f490fdbu) {
		r = x;
		q = 0;
	} else if (ix < 0x49c90fdbu) {
		const double xd = x;
		double nd = __dadd_rn(__dmul_rn(xd, 0x1.45f306dc9c883p-1), 0x1.8p52);
		nd = __dsub_rn(nd, 0x1.8p52);
		r = __dsub_rn(__dsub_rn(__dsub_rn(xd, __dmul_rn(nd, PIO2_1)), __dmul_rn(nd, PIO2_2)),
			      __dmul_rn(nd, PIO2_3));
		q = (int)nd & 3;
	} else {
		r = reduce_large(ix, &q);
		if (x < 0) {
			r = -r;
			q = -q & 3;
		}
	}
	const double sr = sin_k(r), cr = cos_k(r);
	switch (q) {
	case 0:
		*s = __double2float_rn(sr);
		*c = __double2float_rn(cr);
		break;
	case 1:
		*s = __double2float_rn(cr);
		*c = __double2float_rn(-sr);
		break;
	case 2:
		*s = __double2float_rn(-sr);
		*c = __double2float_rn(-cr);
		break;
	default:
		*s = __double2float_rn(-cr);
		*c = __double2float_rn(sr);
		break;
	}
}

/* ---------------------------------------------------------------- rope + kv */

#define ROPE_WARPS 8     /* head tasks per block, one per warp */
#define ROPE_MAX_HALF 128 /* head_dim <= 256 */
#define ROPE_PER_LANE (ROPE_MAX_HALF / 32)

__shared__ float rope_cos[ROPE_MAX_HALF], rope_sin[ROPE_MAX_HALF];

/* grid (T, ceil((n_heads + 2 n_kv_heads) / ROPE_WARPS)), block 32 ROPE_WARPS.
 * Warp task h: q head h (h < n_heads), then the k heads, then the v heads.
 * Lane l owns the pairs (i, i + half), i = l + 32 j; its loads are issued
 * before the block computes the cos/sin table, so they overlap it. */
extern "C" __global__ void __launch_bounds__(32 * ROPE_WARPS) k_rope_kv_bf16(const struct k_rope_kv a)
{
	pdl_trigger_short();
	pdl_wait();
	const int t = blockIdx.x, lane = threadIdx.x & 31;
	const int hd = a.head_dim, half = hd >> 1;
	const int nq = a.n_heads, nkv = a.n_kv_heads, q_dim = nq * hd, kv_dim = nkv * hd;
	const int task = blockIdx.y * ROPE_WARPS + (threadIdx.x >> 5);
	const bool live = task < nq + 2 * nkv;
	const int pos = a.pos[t];

	/* q heads, k heads, v heads lie in this order in the row */
	const float *src = a.qkv + (size_t)t * (size_t)(q_dim + 2 * kv_dim) + (size_t)task * hd;
	float x1[ROPE_PER_LANE], x2[ROPE_PER_LANE];
#pragma unroll
	for (int j = 0; j < ROPE_PER_LANE; j++) {
		const int i = lane + 32 * j;
		x1[j] = live && i < half ? src[i] : 0.0f;
		x2[j] = live && i < half ? src[i + half] : 0.0f;
	}

	for (int i = threadIdx.x; i < half; i += blockDim.x) {
		float sn, cs;
		el_sincosf(__fmul_rn((float)pos, a.inv_freq[i]), &sn, &cs);
		rope_cos[i] = cs;
		rope_sin[i] = sn;
	}
	__syncthreads();
	if (!live)
		return;

	const int blk = a.blocks[(size_t)a.seq[t] * (size_t)a.max_blocks + pos / a.block_tokens];
	const size_t slot = ((size_t)blk * (size_t)a.block_tokens + (size_t)(pos % a.block_tokens)) * (size_t)kv_dim;
	ts_bf16 *dst;
	if (task < nq)
		dst = a.q + (size_t)t * q_dim + (size_t)task * hd;
	else if (task < nq + nkv)
		dst = a.kc + slot + (size_t)(task - nq) * hd;
	else
		dst = a.vc + slot + (size_t)(task - nq - nkv) * hd;

	if (task >= nq + nkv) { /* v: convert and store */
#pragma unroll
		for (int j = 0; j < ROPE_PER_LANE; j++) {
			const int i = lane + 32 * j;
			if (i < half) {
				dst[i] = __float2bfloat16_rn(x1[j]);
				dst[i + half] = __float2bfloat16_rn(x2[j]);
			}
		}
		return;
	}

	const ts_bf16 *nw = task < nq ? a.q_norm : a.k_norm;
	if (nw) { /* Qwen3: per-head RMSNorm, as cpu.c rmsnorm */
		float ss = 0.0f;
#pragma unroll
		for (int j = 0; j < ROPE_PER_LANE; j++)
			ss = __fadd_rn(ss, __fadd_rn(__fmul_rn(x1[j], x1[j]), __fmul_rn(x2[j], x2[j])));
		ss = el_warp_sum(ss);
		const float rr = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)hd), a.eps)));
#pragma unroll
		for (int j = 0; j < ROPE_PER_LANE; j++) {
			const int i = lane + 32 * j;
			if (i < half) {
				x1[j] = __fmul_rn(__bfloat162float(nw[i]), __fmul_rn(x1[j], rr));
				x2[j] = __fmul_rn(__bfloat162float(nw[i + half]), __fmul_rn(x2[j], rr));
			}
		}
	}
#pragma unroll
	for (int j = 0; j < ROPE_PER_LANE; j++) {
		const int i = lane + 32 * j;
		if (i < half) {
			const float cs = rope_cos[i], sn = rope_sin[i];
			dst[i] = __float2bfloat16_rn(__fsub_rn(__fmul_rn(x1[j], cs), __fmul_rn(x2[j], sn)));
			dst[i + half] = __float2bfloat16_rn(__fadd_rn(__fmul_rn(x2[j], cs), __fmul_rn(x1[j], sn)));
		}
	}
}
