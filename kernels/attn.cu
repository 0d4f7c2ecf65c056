/* attn: attention over the paged bf16 KV cache (struct k_attn, ts_kernels.h).
 *
 * Every kernel here runs the same warp step, at_warp_tile: 16 query rows of
 * one kv head against keys staged in shared memory; S = Q K^T and O += P V on
 * the tensor cores (mma.sync m16n8k16 bf16, fp32 accumulators) and an online
 * softmax in fp32 in the log2 domain (scale * log2(e) folded into S, ex2).
 * A row is one (query token, head of the GQA group) pair.
 *
 *   decode   grid (n_split * n_tok, n_kv_heads * ceil(G / 16)), 4 warps:
 *            one token x up to 16 heads of one kv head. Split s takes its share
 *            of [lo, pos] (computed here from pos, so the grid depends only on
 *            n_tok and a graph replays at any context); the 4 warps take
 *            16-key quarters of each 64-key tile and merge in shared memory.
 *            n_split == 1 writes bf16 out; else (acc, max, sum) partials, and
 *            an empty split writes the neutral partial (0, -inf, 0).
 *   reduce   one warp per (token, head): merges the partials in split order
 *            (deterministic).
 *   prefill  grid (ceil(n_tok / (R / G)), n_kv_heads), R = 16 * AT_PREFILL_WARPS
 *            rows: R / G consecutive entries of the token list x G heads,
 *            16 rows per warp; each 64-key K/V tile is loaded once for all.
 *            Rows of a tile from different sequences run as separate passes
 *            (one per run of equal seq), so any token list is correct; runs of
 *            consecutive positions are what make it fast.
 *
 * Head sizes: 64 and 128 take k_attn_decode_bf16 / k_attn_prefill_bf16
 * (Q fragments in registers, 64 keys per warp step in prefill); 96 takes the
 * _h96 kernels, the same code at HD 96 (12 16-byte chunks per row, so the
 * tile loads map chunks to threads without assuming a power of two); 256
 * takes the _h256 kernels: 128 accumulator registers per thread leave no
 * room for Q, so Q fragments are re-read from shared memory every key step
 * (one ldmatrix per 16 dims, from smem that stays put), prefill steps 32 keys
 * at a time, and decode keeps 3 K/V stages (one block per SM fits; the
 * third stage keeps 128 KB in flight per SM). Separate entry points keep the
 * 64/128 kernels' code and registers what they were.
 *
 * Invariants: a key j is loaded only inside [lo, pos] of a row of the pass,
 * so unallocated block-table entries are never read; other tile slots are
 * zero-filled (0 * V stays 0 where p = 0). Masked scores are -inf; a row with
 * no key yet keeps max -inf and uses 0 as its reference (p = 0, alpha = 0).
 * The row sum l adds the bf16-rounded p that multiply V, so the weights sum to
 * exactly what divides them. Partial max/sum are in the log2 domain.
 *
 * Bytes (decode, per token): 2 * ctx * n_kv_heads * head_dim * 2 of K and V,
 * read once; flops are 4 * ctx * n_heads * head_dim (16 flop/byte at GQA 4),
 * far under the tensor cores, so decode is bandwidth-bound. Measured on H100
 * (2026-11-27) at Llama-8B dims against the 3027 GB/s copy floor: batch 64 x
 * ctx 4096 2706-2745 GB/s (~90%), 32 x 4096 87%, 8 x 4096 72%; batch 1 is
 * launch/latency-bound (9.4 us at ctx 512, 14.9 us at 4096). Prefill of 4096
 * tokens (137.5 GFLOP causal): 0.645 ms, 213 TFLOP/s, 27% of the cuBLAS GEMM
 * floor (mma.sync, not wgmma). Details: tests/gpu/notes/attn.md.
 */
#include "pdl.h"
#include "ts_kernels.h"

#define AT_NT 64       /* keys per shared-memory tile */
#define AT_THREADS 128 /* decode: 4 warps */
#ifndef AT_PREFILL_WARPS
#define AT_PREFILL_WARPS 8 /* prefill: 16 query rows per warp (a tuning knob: tests/gpu/notes/attn.md) */
#endif
#define AT_PR (16 * AT_PREFILL_WARPS) /* prefill rows per block */
#ifndef AT_STAGES
#define AT_STAGES 2 /* K/V tiles in flight + the one computed (a tuning knob: tests/gpu/notes/attn.md) */
#endif
#define AT_LOG2E 1.4426950408889634f

#define AT_STAGES_256 3 /* decode stages at head_dim 256 */

/* Dynamic shared memory, bytes; src/gpu_attn.c repeats these formulas. */
#define AT_RS(hd) ((hd) + 8) /* smem row stride in bf16: 16-byte pad, ldmatrix without conflicts */
#define AT_DECODE_SMEM_ST(hd, st) (16 * AT_RS(hd) * 2 + (st) * 2 * AT_NT * AT_RS(hd) * 2)
#define AT_DECODE_SMEM(hd) AT_DECODE_SMEM_ST(hd, AT_STAGES)
#define AT_PREFILL_SMEM(hd) (3 * AT_PR * 4 + AT_PR * AT_RS(hd) * 2 + AT_STAGES * 2 * AT_NT * AT_RS(hd) * 2)

/* ------------------------------------------------------------ primitives */

static __device__ __forceinline__ uint32_t at_smem(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, bypassing L1; src_bytes 0 writes zeros. */
static __device__ __forceinline__ void at_cp16(void *dst, const void *src, int src_bytes)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(at_smem(dst)), "l"(src),
		     "r"(src_bytes)
		     : "memory");
}

static __device__ __forceinline__ void at_cp_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> static __device__ __forceinline__ void at_cp_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

static __device__ __forceinline__ void at_ldsm(uint32_t (&r)[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(addr)
		     : "memory");
}

static __device__ __forceinline__ void at_ldsm_t(uint32_t (&r)[4], uint32_t addr)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(addr)
		     : "memory");
}

/* c += a b, a 16x16 row-major, b 16x8 col-major, bf16 in, fp32 accumulate. */
static __device__ __forceinline__ void at_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
{
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
	    "{%0,%1,%2,%3};\n"
	    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 2^x; ex2(-inf) = 0. */
static __device__ __forceinline__ float at_ex2(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
	return y;
}

/* (lo, hi) as bf16x2 bits, lo in the low half. */
static __device__ __forceinline__ uint32_t at_bf2(float lo, float hi)
{
	const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	return *reinterpret_cast<const uint32_t *>(&h);
}

/* at_bf2, adding the rounded values to sum. */
static __device__ __forceinline__ uint32_t at_pack(float lo, float hi, float &sum)
{
	const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	const float2 f = __bfloat1622float2(h);
	sum += f.x + f.y;
	return *reinterpret_cast<const uint32_t *>(&h);
}

static __device__ __forceinline__ uint32_t at_dyn_smem(void)
{
	uint32_t n;
	asm("mov.u32 %0, %%dynamic_smem_size;\n" : "=r"(n));
	return n;
}

/* ------------------------------------------------------------ tiles */

/* Keys [k0, k0 + AT_NT) of one sequence (block table btab), kv head kvh,
 * into sk and sv (AT_NT, AT_RS(HD)) by NTHR threads; keys outside [klo, khi)
 * become zeros. Thread tid copies 16-byte chunks tid + i * NTHR of the
 * (AT_NT, HD / 8) chunk grid; when NTHR is a multiple of HD / 8 that is one
 * column c and rows r0 + i * RPI. */
template <int HD, int NTHR>
static __device__ __forceinline__ void at_load_kv(const k_attn &a, ts_bf16 *sk, ts_bf16 *sv, const int32_t *btab,
						  int kvh, int k0, int klo, int khi)
{
	constexpr int RS = AT_RS(HD), CPR = HD / 8;
	static_assert(AT_NT * CPR % NTHR == 0, "whole chunks per thread");
	const unsigned bt = (unsigned)a.block_tokens;
	const size_t kv_dim = (size_t)a.n_kv_heads * HD;
	if constexpr (NTHR % CPR == 0) {
		constexpr int RPI = NTHR / CPR, N = AT_NT / RPI;
		const int c = threadIdx.x % CPR, r0 = threadIdx.x / CPR;
		size_t off[N];
		bool ok[N];
#pragma unroll
		for (int i = 0; i < N; i++) {
			const int j = k0 + r0 + i * RPI;
			ok[i] = j >= klo && j < khi;
			const unsigned b = ok[i] ? (unsigned)btab[(unsigned)j / bt] : 0u;
			off[i] = ((size_t)b * bt + (unsigned)j % bt) * kv_dim + (size_t)kvh * HD + c * 8;
		}
#pragma unroll
		for (int i = 0; i < N; i++) {
			const int r = r0 + i * RPI;
			at_cp16(sk + r * RS + c * 8, ok[i] ? a.kc + off[i] : a.kc, ok[i] ? 16 : 0);
			at_cp16(sv + r * RS + c * 8, ok[i] ? a.vc + off[i] : a.vc, ok[i] ? 16 : 0);
		}
	} else {
		constexpr int N = AT_NT * CPR / NTHR;
		size_t off[N];
		bool ok[N];
#pragma unroll
		for (int i = 0; i < N; i++) {
			const int q = threadIdx.x + i * NTHR, r = q / CPR, c = q % CPR, j = k0 + r;
			ok[i] = j >= klo && j < khi;
			const unsigned b = ok[i] ? (unsigned)btab[(unsigned)j / bt] : 0u;
			off[i] = ((size_t)b * bt + (unsigned)j % bt) * kv_dim + (size_t)kvh * HD + c * 8;
		}
#pragma unroll
		for (int i = 0; i < N; i++) {
			const int q = threadIdx.x + i * NTHR, r = q / CPR, c = q % CPR;
			at_cp16(sk + r * RS + c * 8, ok[i] ? a.kc + off[i] : a.kc, ok[i] ? 16 : 0);
			at_cp16(sv + r * RS + c * 8, ok[i] ? a.vc + off[i] : a.vc, ok[i] ? 16 : 0);
		}
	}
}

/* This warp's 16 query rows (row 0 at sq, a shared address) as A fragments. */
template <int HD> static __device__ __forceinline__ void at_load_q(uint32_t (&qf)[HD / 16][4], uint32_t sq)
{
	constexpr int RSB = AT_RS(HD) * 2;
	const int lane = threadIdx.x & 31;
	const uint32_t addr = sq + ((lane & 7) + ((lane >> 3) & 1) * 8) * RSB + (lane >> 4) * 16;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++)
		at_ldsm(qf[kk], addr + kk * 32);
}

/* The warp step: 16 rows against NK keys (sk, sv: shared addresses of the
 * first key's K and V rows; kbase its position). This thread holds rows
 * lane / 4 and lane / 4 + 8 (index 0, 1 of m, l, rlo, rhi) and, of each
 * 8-column piece of O, columns 2 * (lane % 4) + {0, 1}. Key j counts for row
 * r iff rlo[r] <= j < rhi[r], checked only when mask is set. QS: Q's A
 * fragments come from shared memory (the warp's 16 rows at sq) each step
 * instead of qf, for head sizes whose accumulators fill the registers. */
template <int HD, int NK, bool QS = false>
static __device__ __forceinline__ void at_warp_tile(const uint32_t (&qf)[QS ? 1 : HD / 16][4], uint32_t sk,
						    uint32_t sv, float (&o)[HD / 8][4], float (&m)[2], float (&l)[2],
						    float sl2, bool mask, int kbase, const int (&rlo)[2], const int (&rhi)[2],
						    uint32_t sq = 0)
{
	constexpr int RSB = AT_RS(HD) * 2;
	const int lane = threadIdx.x & 31;

	/* S = Q K^T */
	float s[NK / 8][4];
#pragma unroll
	for (int n = 0; n < NK / 8; n++)
		s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
	const uint32_t ka = sk + ((lane & 7) + ((lane >> 4) << 3)) * RSB + ((lane >> 3) & 1) * 16;
	if constexpr (QS) {
		const uint32_t qa = sq + ((lane & 7) + ((lane >> 3) & 1) * 8) * RSB + (lane >> 4) * 16;
#pragma unroll
		for (int kk = 0; kk < HD / 16; kk++) {
			uint32_t qk[4];
			at_ldsm(qk, qa + kk * 32);
#pragma unroll
			for (int nn = 0; nn < NK / 16; nn++) {
				uint32_t b[4];
				at_ldsm(b, ka + nn * 16 * RSB + kk * 32);
				at_mma(s[2 * nn], qk, b[0], b[1]);
				at_mma(s[2 * nn + 1], qk, b[2], b[3]);
			}
		}
	} else {
#pragma unroll
		for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
			for (int nn = 0; nn < NK / 16; nn++) {
				uint32_t b[4];
				at_ldsm(b, ka + nn * 16 * RSB + kk * 32);
				at_mma(s[2 * nn], qf[kk], b[0], b[1]);
				at_mma(s[2 * nn + 1], qf[kk], b[2], b[3]);
			}
		}
	}

	/* scale, mask, row max over the quad */
	float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
	for (int n = 0; n < NK / 8; n++) {
#pragma unroll
		for (int e = 0; e < 4; e++) {
			float v = s[n][e] * sl2;
			if (mask) {
				const int j = kbase + n * 8 + 2 * (lane & 3) + (e & 1);
				if (j < rlo[e >> 1] || j >= rhi[e >> 1])
					v = -INFINITY;
			}
			s[n][e] = v;
			mx[e >> 1] = fmaxf(mx[e >> 1], v);
		}
	}
	float mu[2], alpha[2];
#pragma unroll
	for (int r = 0; r < 2; r++) {
		mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
		mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
		const float mn = fmaxf(m[r], mx[r]);
		mu[r] = mn == -INFINITY ? 0.f : mn;
		alpha[r] = at_ex2(m[r] - mu[r]);
		m[r] = mn;
	}

	/* P = 2^(S - max) as bf16 A fragments (the S accumulator layout of two
	 * adjacent 8-key pieces is the A layout of one 16-key step) */
	uint32_t pa[NK / 16][4];
	float ls[2] = {0.f, 0.f};
#pragma unroll
	for (int n = 0; n < NK / 8; n++) {
		pa[n >> 1][(n & 1) * 2] = at_pack(at_ex2(s[n][0] - mu[0]), at_ex2(s[n][1] - mu[0]), ls[0]);
		pa[n >> 1][(n & 1) * 2 + 1] = at_pack(at_ex2(s[n][2] - mu[1]), at_ex2(s[n][3] - mu[1]), ls[1]);
	}
	l[0] = l[0] * alpha[0] + ls[0];
	l[1] = l[1] * alpha[1] + ls[1];
#pragma unroll
	for (int d = 0; d < HD / 8; d++) {
		o[d][0] *= alpha[0];
		o[d][1] *= alpha[0];
		o[d][2] *= alpha[1];
		o[d][3] *= alpha[1];
	}

	/* O += P V */
	const uint32_t va = sv + ((lane & 7) + ((lane >> 3) & 1) * 8) * RSB + (lane >> 4) * 16;
#pragma unroll
	for (int kc = 0; kc < NK / 16; kc++) {
#pragma unroll
		for (int dn = 0; dn < HD / 16; dn++) {
			uint32_t b[4];
			at_ldsm_t(b, va + kc * 16 * RSB + dn * 32);
			at_mma(o[2 * dn], pa[kc], b[0], b[1]);
			at_mma(o[2 * dn + 1], pa[kc], b[2], b[3]);
		}
	}
}

template <int HD> static __device__ __forceinline__ void at_state_init(float (&o)[HD / 8][4], float (&m)[2], float (&l)[2])
{
#pragma unroll
	for (int d = 0; d < HD / 8; d++)
		o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
	m[0] = m[1] = -INFINITY;
	l[0] = l[1] = 0.f;
}

/* ------------------------------------------------------------ decode */

/* ST K/V stages; QS: Q fragments from shared memory (at_warp_tile). */
template <int HD, int ST = AT_STAGES, bool QS = false>
static __device__ __forceinline__ void at_decode(const k_attn &a, char *smem)
{
	constexpr int RS = AT_RS(HD), CPR = HD / 8, W = HD + 2, OS = HD + 4;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int G = a.n_heads / a.n_kv_heads, RG = (G + 15) >> 4;
	const int ti = blockIdx.x / a.n_split, split = blockIdx.x % a.n_split;
	const int kvh = blockIdx.y / RG, h0 = kvh * G + (blockIdx.y % RG) * 16;
	const int nrow = min(16, kvh * G + G - h0);
	const int t = a.tok ? a.tok[ti] : ti;
	const int pos = a.pos[t];
	const int lo = a.window > 0 ? max(0, pos - a.window + 1) : 0;
	const int chunk = (((pos + 1 - lo) + a.n_split - 1) / a.n_split + 15) & ~15;
	const int s0 = lo + split * chunk, s1 = min(s0 + chunk, pos + 1);
	const size_t prow = (size_t)a.n_split * W; /* floats between heads in part */
	float *part = a.part + ((size_t)ti * a.n_heads + h0) * prow + (size_t)split * W;

	if (s0 >= s1) { /* empty split (n_split > 1 here: split 0 is never empty) */
		for (int i = tid; i < nrow * W; i += AT_THREADS)
			part[(size_t)(i / W) * prow + i % W] = i % W == HD ? -INFINITY : 0.f;
		return;
	}

	ts_bf16 *sq = reinterpret_cast<ts_bf16 *>(smem); /* (16, RS) */
	ts_bf16 *skv = sq + 16 * RS;                      /* (ST, K|V, AT_NT, RS) */
	const int32_t *btab = a.blocks + (size_t)a.seq[t] * a.max_blocks;
	const ts_bf16 *qt = a.q + (size_t)t * a.n_heads * HD + (size_t)h0 * HD;
	for (int i = tid; i < 16 * CPR; i += AT_THREADS) {
		const int r = i / CPR, c = i % CPR;
		at_cp16(sq + r * RS + c * 8, r < nrow ? qt + r * HD + c * 8 : qt, r < nrow ? 16 : 0);
	}
	const int ntile = (s1 - s0 + AT_NT - 1) / AT_NT;
#pragma unroll
	for (int st = 0; st < ST - 1; st++) { /* one group per tile; the first carries Q too */
		if (st < ntile)
			at_load_kv<HD, AT_THREADS>(a, skv + st * 2 * AT_NT * RS, skv + (st * 2 + 1) * AT_NT * RS, btab,
						   kvh, s0 + st * AT_NT, s0, s1);
		at_cp_commit();
	}

	float o[HD / 8][4], m[2], l[2];
	at_state_init<HD>(o, m, l);
	uint32_t qf[QS ? 1 : HD / 16][4];
	const int rlo[2] = {s0, s0}, rhi[2] = {s1, s1};
	const float sl2 = a.scale * AT_LOG2E;
	for (int it = 0; it < ntile; it++) {
		at_cp_wait<ST - 2>();
		__syncthreads();
		const int nt = it + ST - 1;
		if (nt < ntile) {
			ts_bf16 *st = skv + (nt % ST) * 2 * AT_NT * RS;
			at_load_kv<HD, AT_THREADS>(a, st, st + AT_NT * RS, btab, kvh, s0 + nt * AT_NT, s0, s1);
		}
		at_cp_commit();
		if constexpr (!QS)
			if (it == 0)
				at_load_q<HD>(qf, at_smem(sq));
		const int kbase = s0 + it * AT_NT + warp * 16;
		if (kbase < s1) {
			const ts_bf16 *st = skv + (it % ST) * 2 * AT_NT * RS + warp * 16 * RS;
			at_warp_tile<HD, 16, QS>(qf, at_smem(st), at_smem(st + AT_NT * RS), o, m, l, sl2,
						 kbase + 16 > s1, kbase, rlo, rhi, at_smem(sq));
		}
	}

	/* merge the 4 warps' (o, m, l) through shared memory */
	at_cp_wait<0>();
	__syncthreads();
	float *ob = reinterpret_cast<float *>(skv); /* (4, 16, OS) */
	float *ml = ob + 4 * 16 * OS;               /* (4, 16, 2) */
	const int g = lane >> 2, c2 = 2 * (lane & 3);
#pragma unroll
	for (int r = 0; r < 2; r++) {
		l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
		l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
	}
#pragma unroll
	for (int d = 0; d < HD / 8; d++) {
		*reinterpret_cast<float2 *>(ob + (warp * 16 + g) * OS + d * 8 + c2) = make_float2(o[d][0], o[d][1]);
		*reinterpret_cast<float2 *>(ob + (warp * 16 + g + 8) * OS + d * 8 + c2) = make_float2(o[d][2], o[d][3]);
	}
	if ((lane & 3) == 0) {
		ml[(warp * 16 + g) * 2] = m[0];
		ml[(warp * 16 + g) * 2 + 1] = l[0];
		ml[(warp * 16 + g + 8) * 2] = m[1];
		ml[(warp * 16 + g + 8) * 2 + 1] = l[1];
	}
	__syncthreads();
	const int r = tid >> 3, q4 = (tid & 7) * 4;
	if (r >= nrow)
		return;
	float mw[4], wt[4], M = -INFINITY, L = 0.f;
#pragma unroll
	for (int w = 0; w < 4; w++) {
		mw[w] = ml[(w * 16 + r) * 2];
		M = fmaxf(M, mw[w]);
	}
#pragma unroll
	for (int w = 0; w < 4; w++) {
		wt[w] = mw[w] == -INFINITY ? 0.f : at_ex2(mw[w] - M);
		L += wt[w] * ml[(w * 16 + r) * 2 + 1];
	}
	ts_bf16 *out = a.out + (size_t)t * a.n_heads * HD + (size_t)(h0 + r) * HD;
	float *pr = part + (size_t)r * prow;
#pragma unroll
	for (int i = 0; i < HD / 32; i++) {
		const int d = q4 + 32 * i;
		float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
		for (int w = 0; w < 4; w++) {
			const float4 v = *reinterpret_cast<const float4 *>(ob + (w * 16 + r) * OS + d);
			acc.x += wt[w] * v.x;
			acc.y += wt[w] * v.y;
			acc.z += wt[w] * v.z;
			acc.w += wt[w] * v.w;
		}
		if (a.n_split == 1) {
			const float il = 1.f / L;
			*reinterpret_cast<uint2 *>(out + d) =
				make_uint2(at_bf2(acc.x * il, acc.y * il), at_bf2(acc.z * il, acc.w * il));
		} else {
			*reinterpret_cast<float2 *>(pr + d) = make_float2(acc.x, acc.y);
			*reinterpret_cast<float2 *>(pr + d + 2) = make_float2(acc.z, acc.w);
		}
	}
	if (a.n_split > 1 && q4 == 0) {
		pr[HD] = M;
		pr[HD + 1] = L;
	}
}

/* ------------------------------------------------------------ prefill */

/* QS: Q fragments from shared memory; NKW: keys per warp step (a divisor of
 * AT_NT; fewer keys, fewer score registers). */
template <int HD, bool QS = false, int NKW = AT_NT>
static __device__ __forceinline__ void at_prefill(const k_attn &a, char *smem)
{
	constexpr int RS = AT_RS(HD), CPR = HD / 8;
	const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
	const int G = a.n_heads / a.n_kv_heads, TQ = AT_PR / G, NR = TQ * G;
	const int tile = gridDim.x - 1 - blockIdx.x; /* the latest (longest) tiles start first */
	const int kvh = blockIdx.y;
	const int i0 = tile * TQ, nt = min(TQ, a.n_tok - i0);
	int *s_t = reinterpret_cast<int *>(smem); /* (AT_PR) token index of each tile entry */
	int *s_pos = s_t + AT_PR, *s_seq = s_pos + AT_PR;
	ts_bf16 *sq = reinterpret_cast<ts_bf16 *>(s_seq + AT_PR); /* (AT_PR, RS) */
	ts_bf16 *skv = sq + AT_PR * RS;                            /* (AT_STAGES, K|V, AT_NT, RS) */

	if (tid < nt) {
		const int t = a.tok ? a.tok[i0 + tid] : i0 + tid;
		s_t[tid] = t;
		s_pos[tid] = a.pos[t];
		s_seq[tid] = a.seq[t];
	}
	__syncthreads();

	const float sl2 = a.scale * AT_LOG2E;
	const int g = lane >> 2, c2 = 2 * (lane & 3);
	const int rw[2] = {warp * 16 + g, warp * 16 + g + 8}; /* this thread's rows */
	const int iw[2] = {rw[0] / G, rw[1] / G};               /* their tile entries */
	for (int sb = 0; sb < nt;) {
		/* one pass: the run [sb, se) of entries of sequence sqn */
		const int sqn = s_seq[sb];
		int se = sb + 1;
		while (se < nt && s_seq[se] == sqn)
			se++;
		int klo = 0x7fffffff, khi = 0;
		for (int i = sb; i < se; i++) {
			const int p = s_pos[i];
			klo = min(klo, a.window > 0 ? max(0, p - a.window + 1) : 0);
			khi = max(khi, p + 1);
		}
		int rlo[2], rhi[2];
#pragma unroll
		for (int r = 0; r < 2; r++) {
			const bool in = rw[r] < NR && iw[r] >= sb && iw[r] < se;
			const int p = in ? s_pos[iw[r]] : 0;
			rlo[r] = in ? (a.window > 0 ? max(0, p - a.window + 1) : 0) : 0x7fffffff;
			rhi[r] = in ? p + 1 : 0;
		}
		const int w_lo_min = __reduce_min_sync(0xffffffffu, min(rlo[0], rlo[1]));
		const int w_lo_max = __reduce_max_sync(0xffffffffu, max(rlo[0], rlo[1]));
		const int w_hi_min = __reduce_min_sync(0xffffffffu, min(rhi[0], rhi[1]));
		const int w_hi_max = __reduce_max_sync(0xffffffffu, max(rhi[0], rhi[1]));

		const int32_t *btab = a.blocks + (size_t)sqn * a.max_blocks;
		for (int i = tid; i < AT_PR * CPR; i += AT_PR * 2) {
			const int r = i / CPR, c = i % CPR, e = r / G;
			const bool in = r < NR && e >= sb && e < se;
			const ts_bf16 *src =
				in ? a.q + (size_t)s_t[e] * a.n_heads * HD + (size_t)(kvh * G + r % G) * HD + c * 8 : a.q;
			at_cp16(sq + r * RS + c * 8, src, in ? 16 : 0);
		}
		const int ntile = (khi - klo + AT_NT - 1) / AT_NT;
#pragma unroll
		for (int st = 0; st < AT_STAGES - 1; st++) {
			if (st < ntile)
				at_load_kv<HD, AT_PR * 2>(a, skv + st * 2 * AT_NT * RS, skv + (st * 2 + 1) * AT_NT * RS,
							 btab, kvh, klo + st * AT_NT, klo, khi);
			at_cp_commit();
		}

		float o[HD / 8][4], m[2], l[2];
		at_state_init<HD>(o, m, l);
		uint32_t qf[QS ? 1 : HD / 16][4];
		for (int it = 0; it < ntile; it++) {
			at_cp_wait<AT_STAGES - 2>();
			__syncthreads();
			const int nx = it + AT_STAGES - 1;
			if (nx < ntile) {
				ts_bf16 *st = skv + (nx % AT_STAGES) * 2 * AT_NT * RS;
				at_load_kv<HD, AT_PR * 2>(a, st, st + AT_NT * RS, btab, kvh, klo + nx * AT_NT, klo, khi);
			}
			at_cp_commit();
			if constexpr (!QS)
				if (it == 0)
					at_load_q<HD>(qf, at_smem(sq + warp * 16 * RS));
			const int k0 = klo + it * AT_NT;
			if constexpr (NKW == AT_NT) {
				if (k0 < w_hi_max && k0 + AT_NT > w_lo_min) {
					const bool mask = k0 < w_lo_max || k0 + AT_NT > w_hi_min;
					const ts_bf16 *st = skv + (it % AT_STAGES) * 2 * AT_NT * RS;
					at_warp_tile<HD, AT_NT, QS>(qf, at_smem(st), at_smem(st + AT_NT * RS), o, m, l, sl2,
								    mask, k0, rlo, rhi, at_smem(sq + warp * 16 * RS));
				}
			} else {
#pragma unroll
				for (int h = 0; h < AT_NT / NKW; h++) {
					const int kh = k0 + h * NKW;
					if (kh < w_hi_max && kh + NKW > w_lo_min) {
						const bool mask = kh < w_lo_max || kh + NKW > w_hi_min;
						const ts_bf16 *st = skv + (it % AT_STAGES) * 2 * AT_NT * RS + h * NKW * RS;
						at_warp_tile<HD, NKW, QS>(qf, at_smem(st), at_smem(st + AT_NT * RS), o, m, l,
									  sl2, mask, kh, rlo, rhi,
									  at_smem(sq + warp * 16 * RS));
					}
				}
			}
		}

#pragma unroll
		for (int r = 0; r < 2; r++) {
			l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
			l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
			if (rhi[r] == 0)
				continue;
			const float il = 1.f / l[r];
			ts_bf16 *out = a.out + (size_t)s_t[iw[r]] * a.n_heads * HD + (size_t)(kvh * G + rw[r] % G) * HD + c2;
#pragma unroll
			for (int d = 0; d < HD / 8; d++)
				*reinterpret_cast<__nv_bfloat162 *>(out + d * 8) =
					__floats2bfloat162_rn(o[d][2 * r] * il, o[d][2 * r + 1] * il);
		}
		at_cp_wait<0>();
		__syncthreads(); /* sq and the stages are reused by the next pass */
		sb = se;
	}
}

/* ------------------------------------------------------------ kernels */

extern "C" __global__ void __launch_bounds__(AT_THREADS, 3) k_attn_decode_bf16(const struct k_attn a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) char at_smem_buf[];
	if (a.head_dim == 128) {
		if (at_dyn_smem() < (uint32_t)AT_DECODE_SMEM(128))
			__trap();
		at_decode<128>(a, at_smem_buf);
	} else {
		if (at_dyn_smem() < (uint32_t)AT_DECODE_SMEM(64))
			__trap();
		at_decode<64>(a, at_smem_buf);
	}
}

extern "C" __global__ void __launch_bounds__(AT_PR * 2, 8 / AT_PREFILL_WARPS) k_attn_prefill_bf16(const struct k_attn a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) char at_smem_buf[];
	if (a.head_dim == 128) {
		if (at_dyn_smem() < (uint32_t)AT_PREFILL_SMEM(128))
			__trap();
		at_prefill<128>(a, at_smem_buf);
	} else {
		if (at_dyn_smem() < (uint32_t)AT_PREFILL_SMEM(64))
			__trap();
		at_prefill<64>(a, at_smem_buf);
	}
}

/* head_dim 96: the same code and launch bounds as 64 / 128. */
extern "C" __global__ void __launch_bounds__(AT_THREADS, 3) k_attn_decode_bf16_h96(const struct k_attn a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) char at_smem_buf[];
	if (a.head_dim != 96 || at_dyn_smem() < (uint32_t)AT_DECODE_SMEM(96))
		__trap();
	at_decode<96>(a, at_smem_buf);
}

extern "C" __global__ void __launch_bounds__(AT_PR * 2, 8 / AT_PREFILL_WARPS) k_attn_prefill_bf16_h96(const struct k_attn a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) char at_smem_buf[];
	if (a.head_dim != 96 || at_dyn_smem() < (uint32_t)AT_PREFILL_SMEM(96))
		__trap();
	at_prefill<96>(a, at_smem_buf);
}

/* head_dim 256: Q from shared memory, AT_STAGES_256 decode stages (143-211
 * KB of shared memory: one block per SM), prefill in 32-key warp steps. */
extern "C" __global__ void __launch_bounds__(AT_THREADS, 1) k_attn_decode_bf16_h256(const struct k_attn a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) char at_smem_buf[];
	if (a.head_dim != 256 || at_dyn_smem() < (uint32_t)AT_DECODE_SMEM_ST(256, AT_STAGES_256))
		__trap();
	at_decode<256, AT_STAGES_256, true>(a, at_smem_buf);
}

extern "C" __global__ void __launch_bounds__(AT_PR * 2, 1) k_attn_prefill_bf16_h256(const struct k_attn a)
{
	pdl_trigger_long_start();
	pdl_wait();
	extern __shared__ __align__(16) char at_smem_buf[];
	if (a.head_dim != 256 || at_dyn_smem() < (uint32_t)AT_PREFILL_SMEM(256))
		__trap();
	at_prefill<256, true, 32>(a, at_smem_buf);
}

/* grid (n_tok, n_heads), one warp: out[t, h] = sum_s 2^(m_s - M) acc_s /
 * sum_s 2^(m_s - M) l_s, in split order. Lane s holds split s's weight
 * (n_split <= 32, ATTN_MAX_SPLIT); each lane then reads 8 splits at a time. */
extern "C" __global__ void __launch_bounds__(32) k_attn_reduce_f32(const struct k_attn a)
{
	pdl_trigger_short();
	pdl_wait();
	const int ti = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
	const int t = a.tok ? a.tok[ti] : ti;
	const int HD = a.head_dim, W = HD + 2, ns = a.n_split;
	const float *p = a.part + ((size_t)ti * a.n_heads + h) * ns * W;
	if (ns > 32)
		__trap();

	const float ms = lane < ns ? p[lane * W + HD] : -INFINITY;
	const float ls = lane < ns ? p[lane * W + HD + 1] : 0.f;
	float M = ms;
	for (int k = 16; k > 0; k >>= 1)
		M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, k));
	const float w = ms == -INFINITY ? 0.f : at_ex2(ms - M);
	float L = w * ls;
	for (int k = 16; k > 0; k >>= 1)
		L += __shfl_xor_sync(0xffffffffu, L, k);
	const float il = 1.f / L;
	ts_bf16 *out = a.out + (size_t)t * a.n_heads * HD + (size_t)h * HD;
	for (int d = 2 * lane; d < HD; d += 64) {
		float2 acc = make_float2(0.f, 0.f);
		for (int s0 = 0; s0 < ns; s0 += 8) {
			float2 v[8];
			float wv[8];
#pragma unroll
			for (int i = 0; i < 8; i++) {
				const int si = min(s0 + i, ns - 1);
				wv[i] = __shfl_sync(0xffffffffu, w, (s0 + i) & 31);
				wv[i] = s0 + i < ns ? wv[i] : 0.f;
				v[i] = *reinterpret_cast<const float2 *>(p + si * W + d);
			}
#pragma unroll
			for (int i = 0; i < 8; i++) {
				acc.x += wv[i] * v[i].x;
				acc.y += wv[i] * v[i].y;
			}
		}
		*reinterpret_cast<__nv_bfloat162 *>(out + d) = __floats2bfloat162_rn(acc.x * il, acc.y * il);
	}
}
