/* ptx.h: the inline-PTX wrappers that kernels/moe.cu and kernels/mla.cu
 * share (16-byte loads that bypass L1, cp.async, ldmatrix, mma.sync bf16,
 * ex2, bf16 packing). gemm.cu and attn.cu keep their own copies, byte for
 * byte what their measured cubins were built from; moving them here is a
 * change to make with a SASS comparison in hand. */
#ifndef TS_PTX_H
#define TS_PTX_H

#include "ts_kernels.h"

/* 16 bytes that are read once (weights, the KV cache): not kept in L1. */
__device__ __forceinline__ uint4 kp_ld_stream(const void *p)
{
	uint4 v;
	asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
	    : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
	    : "l"(p));
	return v;
}

/* 16 bytes re-read by the warps of a block: through L1. */
__device__ __forceinline__ uint4 kp_ld_shared_use(const void *p)
{
	return __ldg((const uint4 *)p);
}

__device__ __forceinline__ uint32_t kp_smem(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, bypassing L1; src_bytes 0 writes zeros. */
__device__ __forceinline__ void kp_cp16(void *dst, const void *src, int src_bytes)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(kp_smem(dst)), "l"(src), "r"(src_bytes)
		     : "memory");
}

__device__ __forceinline__ void kp_cp_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> __device__ __forceinline__ void kp_cp_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void kp_ldsm(uint32_t (&r)[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(addr)
		     : "memory");
}

__device__ __forceinline__ void kp_ldsm_t(uint32_t (&r)[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(addr)
		     : "memory");
}

/* c += a b: a 16x16 row-major (a0..a3), b 16x8 col-major (b0, b1), bf16 in,
 * fp32 accumulate. */
__device__ __forceinline__ void kp_mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
				       uint32_t b1)
{
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
	    "{%0,%1,%2,%3};\n"
	    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	    : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* 2^x; ex2(-inf) = 0. */
__device__ __forceinline__ float kp_ex2(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
	return y;
}

/* (lo, hi) as bf16x2 bits, lo in the low half. */
__device__ __forceinline__ uint32_t kp_bf2(float lo, float hi)
{
	const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<const uint32_t *>(&h);
}

/* kp_bf2, adding the two rounded values to sum. */
__device__ __forceinline__ uint32_t kp_pack_sum(float lo, float hi, float &sum)
{
	const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	const float2 f = __bfloat1622float2(h);
	sum += f.x + f.y;
	return *reinterpret_cast<const uint32_t *>(&h);
}

__device__ __forceinline__ float kp_bf_lo(uint32_t w)
{
	return __uint_as_float(w << 16);
}

__device__ __forceinline__ float kp_bf_hi(uint32_t w)
{
	return __uint_as_float(w & 0xffff0000u);
}

__device__ __forceinline__ uint32_t kp_dyn_smem(void)
{
	uint32_t n;
	asm("mov.u32 %0, %%dynamic_smem_size;\n" : "=r"(n));
	return n;
}

#endif
