/* samp.cu: greedy argmax and the full sampler of src/samp.c, one block per row.
 *
 * The sampler must return the token samp_sample returns for the same fp32
 * logits, so everything that decides a token is computed the way src/samp.c
 * computes it: the penalties, the division by the temperature and
 * e = exp(x - max x) are the same float operations in the same order
 * (fm_expf ported bit for bit: double arithmetic through __dadd_rn/__dmul_rn,
 * which nvcc never contracts into FMAs), masses are double sums, the draw is
 * samp_uniform. Only the order of the double additions differs, which moves a
 * top-p or draw boundary for inputs within ~1e-16 of it.
 *
 * Order: tokens by e descending, ties by lower id (a total order). Every filter
 * keeps a prefix of it, so each question is "where does the prefix reach
 * count n / mass X". No sort of the vocabulary: the row's e values live in
 * the work row; one pass (fused with the exp) histograms them into 16 bins by
 * exponent, keeping count and double mass per bin. A query walks the bins
 * from the top to the one where it crosses. Mass queries keep a margin of
 * 2^-36 of the total on both sides, so the ~1e-14 drift between double sums
 * in different orders never hides the crossing in a neighbouring bin; every
 * pass narrows, margins or not. If the crossing bin (plus everything above it,
 * when that still fits) holds at most SAMP_SCAP tokens, they are compacted
 * into shared memory, bitonic-sorted by (e desc, id asc) and walked with
 * exact double prefix sums; otherwise another pass splits the bin 16 ways. A
 * crossing inside a group of more than SAMP_SCAP equal e values is resolved by
 * arithmetic on the group and, for the drawn token only, a selection by id.
 * The sorted set is kept between queries: top-k, top-p and the draw usually
 * all land in the first one.
 *
 * Bytes per row, typical: max (read logits), exp + histogram (read logits,
 * write scaled logits and e), compaction (read e): 5 * 4 * vocab, against the
 * floor of one read. Flops: the exact exp is ~21 double ops and 3 f32<->f64
 * conversions per token, ~0.5 clock per token on one H100 SM, which bounds a
 * lone row (n = 1); many rows are memory-bound. Per-thread histograms in
 * shared memory (bin-major, conflict-free) replace atomics; 192 KiB of
 * dynamic shared memory (SAMP_SMEM_BYTES), one block of 1024 threads per SM.
 * Measured: tests/gpu/notes/elem.md.
 *
 * The work row (n, vocab) floats holds the token counts of the penalties
 * (as uint32) and then e.
 */
#include "pdl.h"
#include "ts_kernels.h"

#include <limits.h>

#define SAMP_THREADS 1024
#define SAMP_WARPS (SAMP_THREADS / 32)
#define SAMP_NB 16               /* bins per histogram pass */
#define SAMP_SCAP 8192           /* most tokens sorted in shared memory (a power of 2) */
#define SAMP_KEY_TOP 0x40000000u /* above the bits of every e in [0, 1] */
#define SAMP_GREEDY_BELOW 1e-5f  /* as src/samp.c */
#define SAMP_FULL 0xffffffffu
/* Dynamic shared memory: per-thread histograms, u32 counts then double
 * masses, bin-major; aliased by the sorted set (u64 keys) and its prefix
 * sums. gpu_elem.c passes the same number. */
#define SAMP_SMEM_BYTES (SAMP_NB * SAMP_THREADS * 12)

enum { Q_COUNT, Q_MASS_GE, Q_MASS_GT };

/* Test hooks: the CPU emulation of this file counts the paths taken, and
 * widens the margin to force the narrowing's rare branches. */
#ifndef SAMP_PATH
#define SAMP_PATH(name)
#endif
#ifndef SAMP_MARGIN
#define SAMP_MARGIN 0x1p-36 /* of the total mass, around each mass crossing */
#endif

/* One level of histogram, bins in ascending key order. */
struct samp_hist {
	uint32_t lo[SAMP_NB], hi[SAMP_NB]; /* bin b holds keys [lo, hi) */
	uint32_t cnt[SAMP_NB];
	double mass[SAMP_NB];
	int nb;
};

/* What every thread of the block knows about its row (in shared memory:
 * read where used, not held in registers). */
struct samp_row {
	float *logits;
	uint32_t *w;     /* work row: e bits */
	int V;
	int w_vec;       /* work row 16-byte aligned */
	double mtot, delta;
	int npos;        /* tokens with e > 0 */
	int n_minp;      /* tokens with e >= min_p */
	double m_minp;   /* and their mass */
};

struct samp_ctl {
	struct samp_hist l1, h;    /* the exp pass's level (kept) and the current one */
	double red_d[SAMP_WARPS];  /* block reductions */
	int red_i[SAMP_WARPS];
	float red_f[SAMP_WARPS];
	double bc_d;               /* broadcast */
	unsigned count;            /* compaction counter */
	int s_valid, s_n, s_c_above; /* the sorted set: s_n tokens after s_c_above others */
	double s_m_above;          /* mass of those others */
	struct samp_row row;
};

__shared__ struct samp_ctl sctl;
__shared__ float am_v[SAMP_WARPS];
__shared__ int am_i[SAMP_WARPS];
extern __shared__ __align__(16) unsigned char samp_dsm[];

struct samp_loc {
	int found, pos; /* pos: 0-based index in the order */
	double cum;     /* mass of positions 0..pos */
	int id;
};

/* ---------------------------------------------------------------- helpers */

__device__ __forceinline__ int lane_id(void)
{
	return threadIdx.x & 31;
}

__device__ __forceinline__ int warp_id(void)
{
	return threadIdx.x >> 5;
}

__device__ __forceinline__ int imin(int a, int b)
{
	return a < b ? a : b;
}

/* Every lane ends with the same value: each butterfly step adds the same two
 * numbers on both sides. */
__device__ __forceinline__ double warp_sum_d(double v)
{
	for (int o = 16; o; o >>= 1)
		v = __dadd_rn(v, __shfl_xor_sync(SAMP_FULL, v, o));
	return v;
}

__device__ __forceinline__ int warp_sum_i(int v)
{
	for (int o = 16; o; o >>= 1)
		v += __shfl_xor_sync(SAMP_FULL, v, o);
	return v;
}

/* Block reductions: the same result in every thread, in a fixed order. */
__device__ double block_sum_d(double v)
{
	v = warp_sum_d(v);
	__syncthreads();
	if (lane_id() == 0)
		sctl.red_d[warp_id()] = v;
	__syncthreads();
	double s = 0.0;
	for (int w = 0; w < SAMP_WARPS; w++)
		s = __dadd_rn(s, sctl.red_d[w]);
	return s;
}

__device__ int block_sum_i(int v)
{
	v = warp_sum_i(v);
	__syncthreads();
	if (lane_id() == 0)
		sctl.red_i[warp_id()] = v;
	__syncthreads();
	int s = 0;
	for (int w = 0; w < SAMP_WARPS; w++)
		s += sctl.red_i[w];
	return s;
}

__device__ int block_min_i(int v)
{
	for (int o = 16; o; o >>= 1)
		v = imin(v, __shfl_xor_sync(SAMP_FULL, v, o));
	__syncthreads();
	if (lane_id() == 0)
		sctl.red_i[warp_id()] = v;
	__syncthreads();
	int s = INT_MAX;
	for (int w = 0; w < SAMP_WARPS; w++)
		s = imin(s, sctl.red_i[w]);
	return s;
}

/* NaN-skipping max (fmaxf ignores a NaN operand). */
__device__ float block_max_f(float v)
{
	for (int o = 16; o; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(SAMP_FULL, v, o));
	__syncthreads();
	if (lane_id() == 0)
		sctl.red_f[warp_id()] = v;
	__syncthreads();
	float s = -INFINITY;
	for (int w = 0; w < SAMP_WARPS; w++)
		s = fmaxf(s, sctl.red_f[w]);
	return s;
}

/* Exclusive prefix sum over the threads, in thread order. */
__device__ double block_exscan_d(double v)
{
	const int lane = lane_id(), w = warp_id();
	double inc = v;
	for (int o = 1; o < 32; o <<= 1) {
		double t = __shfl_up_sync(SAMP_FULL, inc, o);
		if (lane >= o)
			inc = __dadd_rn(inc, t);
	}
	double exc = __shfl_up_sync(SAMP_FULL, inc, 1);
	if (lane == 0)
		exc = 0.0;
	__syncthreads();
	if (lane == 31)
		sctl.red_d[w] = inc;
	__syncthreads();
	double base = 0.0;
	for (int k = 0; k < w; k++)
		base = __dadd_rn(base, sctl.red_d[k]);
	return __dadd_rn(base, exc);
}

/* Calls f(i, v) for every v = p[i], i < n, each thread in increasing i;
 * 16-byte loads, four in flight per thread, when p is aligned. */
template <class F>
__device__ __forceinline__ void row_each(const float *p, int n, F f)
{
	const int tid = threadIdx.x, T = SAMP_THREADS;
	if (((uintptr_t)p & 15) == 0) {
		const float4 *p4 = (const float4 *)p;
		const int n4 = n >> 2;
		int v = tid;
		for (; v + 3 * T < n4; v += 4 * T) {
			float4 q[4];
#pragma unroll
			for (int u = 0; u < 4; u++)
				q[u] = p4[v + u * T];
#pragma unroll
			for (int u = 0; u < 4; u++) {
				const int i = 4 * (v + u * T);
				f(i, q[u].x);
				f(i + 1, q[u].y);
				f(i + 2, q[u].z);
				f(i + 3, q[u].w);
			}
		}
		for (; v < n4; v += T) {
			float4 q = p4[v];
			f(4 * v, q.x);
			f(4 * v + 1, q.y);
			f(4 * v + 2, q.z);
			f(4 * v + 3, q.w);
		}
		for (int i = 4 * n4 + tid; i < n; i += T)
			f(i, p[i]);
	} else {
		for (int i = tid; i < n; i += T)
			f(i, p[i]);
	}
}

/* ---------------------------------------------------------------- argmax */

/* (v, i) beats (bv, bi): NaN never wins, then larger, then lower id. bi ==
 * INT_MAX: nothing yet. */
__device__ __forceinline__ void am_take(float &bv, int &bi, float v, int i)
{
	if (i != INT_MAX && v == v && (bi == INT_MAX || v > bv || (v == bv && i < bi))) {
		bv = v;
		bi = i;
	}
}

/* First maximum of x[0, n), NaN skipped; 0 if all are NaN (src/samp.c argmax). */
__device__ int block_argmax(const float *x, int n)
{
	float bv = 0.0f;
	int bi = INT_MAX;
	row_each(x, n, [&](int i, float v) { am_take(bv, bi, v, i); });
	for (int o = 16; o; o >>= 1) {
		float ov = __shfl_xor_sync(SAMP_FULL, bv, o);
		int oi = __shfl_xor_sync(SAMP_FULL, bi, o);
		am_take(bv, bi, ov, oi);
	}
	__syncthreads();
	if (lane_id() == 0) {
		am_v[warp_id()] = bv;
		am_i[warp_id()] = bi;
	}
	__syncthreads();
	float rv = 0.0f;
	int ri = INT_MAX;
	for (int w = 0; w < SAMP_WARPS; w++)
		am_take(rv, ri, am_v[w], am_i[w]);
	return ri == INT_MAX ? 0 : ri;
}

extern "C" __global__ void __launch_bounds__(SAMP_THREADS) k_argmax_f32(const struct k_sample a)
{
	pdl_trigger_short();
	pdl_wait();
	const int row = blockIdx.x;
	if (row >= a.n)
		return;
	int id = block_argmax(a.logits + (size_t)row * (size_t)a.ld, a.vocab);
	if (threadIdx.x == 0)
		a.out[row] = id;
}

/* ---------------------------------------------------------------- exp, random */

/* fm_expf of src/fmath.h, bit for bit. */
__device__ __forceinline__ float fm_expf_dev(float x)
{
	float xc = x < -104.0f ? -104.0f : x;
	xc = xc > 89.0f ? 89.0f : xc;
	double z = __dmul_rn((double)xc, 0x1.71547652b82fep+0);
	double kd = __dadd_rn(z, 0x1.8p52);
	uint64_t ki = (uint64_t)__double_as_longlong(kd);
	kd = __dsub_rn(kd, 0x1.8p52);
	double r = __dsub_rn(z, kd);
	double p = __dadd_rn(0x1.446c79efd4834p-13, __dmul_rn(r, 0x1.00c0e4e15189cp-16));
	p = __dadd_rn(0x1.5d877598350dep-10, __dmul_rn(r, p));
	p = __dadd_rn(0x1.3b29d8bb0b97ep-7, __dmul_rn(r, p));
	p = __dadd_rn(0x1.c6b08da70cce3p-5, __dmul_rn(r, p));
	p = __dadd_rn(0x1.ebfbe0aa03df0p-3, __dmul_rn(r, p));
	p = __dadd_rn(0x1.62e42fef9cc69p-1, __dmul_rn(r, p));
	p = __dadd_rn(0x1.ffffffffa7135p-1, __dmul_rn(r, p));
	uint64_t sb = (ki + 1023u) << 52;
	double scale = __longlong_as_double((long long)sb);
	return __double2float_rn(__dmul_rn(p, scale));
}

/* src/samp.c exp_shifted. */
__device__ __forceinline__ float exp_shifted(float x, float m)
{
	float d = __fsub_rn(x, m);
	return x == m ? 1.0f : d == d ? fm_expf_dev(d) : 0.0f;
}

__device__ __forceinline__ uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* samp_uniform of src/samp.c. */
__device__ __forceinline__ float samp_uniform_dev(uint64_t seed, uint64_t counter)
{
	const uint64_t g = 0x9e3779b97f4a7c15ull;
	uint64_t h = mix64(mix64(seed + g) + counter * g);
	return __fmul_rn((float)(h >> 40), 0x1p-24f);
}

/* ---------------------------------------------------------------- histograms */

__device__ __forceinline__ uint32_t *hist_cnt(void)
{
	return (uint32_t *)samp_dsm;
}

__device__ __forceinline__ double *hist_mass(void)
{
	return (double *)(samp_dsm + SAMP_NB * SAMP_THREADS * 4);
}

__device__ __forceinline__ uint64_t *sset(void)
{
	return (uint64_t *)samp_dsm;
}

__device__ __forceinline__ double *sset_pre(void)
{
	return (double *)(samp_dsm + SAMP_SCAP * 8);
}

/* The exp pass's bin of e: pairs of binades like src/samp.c's buckets, the top
 * one [0.5, 1], the bottom one everything below 2^-30 (0 included); index 15 is
 * the top. */
__device__ __forceinline__ int l1_bin(uint32_t k)
{
	int j = (127 - (int)(k >> 23)) >> 1;
	return 15 - (j < 15 ? j : 15);
}

/* Sums the per-thread histograms into h->cnt and h->mass (bins < h->nb). */
__device__ void hist_reduce(struct samp_hist *h, int nb, int with_mass)
{
	const int w = warp_id(), lane = lane_id();
	__syncthreads();
	if (w < nb) { /* warp w sums bin w */
		const uint32_t *hc = hist_cnt() + w * SAMP_THREADS;
		const double *hm = hist_mass() + w * SAMP_THREADS;
		int c = 0;
		double m = 0.0;
		for (int k = 0; k < SAMP_THREADS / 32; k++) {
			c += (int)hc[lane + 32 * k];
			if (with_mass)
				m = __dadd_rn(m, hm[lane + 32 * k]);
		}
		c = warp_sum_i(c);
		m = warp_sum_d(m);
		if (lane == 0) {
			h->cnt[w] = (uint32_t)c;
			h->mass[w] = with_mass ? m : 0.0;
		}
	}
	__syncthreads();
}

/* ceil(log2(w)) - 4, at least 0: the shift that splits a width w into at
 * most 16 bins. */
__device__ __forceinline__ int split_shift(uint32_t w)
{
	int s = (32 - __clz((int)(w - 1))) - 4;
	return s > 0 ? s : 0;
}

/* One narrowing pass over the work row. ID == false: tokens with e bits in
 * [lo, hi), keyed by the bits, with masses. ID == true: tokens with e bits ==
 * v and id in [lo, hi), keyed by id, counts only. Leaves sctl.h. */
template <bool ID>
__device__ void hist_pass(const struct samp_row &R, uint32_t lo, uint32_t hi, uint32_t v)
{
	const int tid = threadIdx.x;
	const uint32_t width = hi - lo;
	const int s = split_shift(width), nb = (int)((width - 1) >> s) + 1;
	uint32_t *hc = hist_cnt() + tid;
	double *hm = hist_mass() + tid;
	__syncthreads(); /* the sorted set that aliases the histograms is dead */
	for (int b = 0; b < SAMP_NB; b++) {
		hc[b * SAMP_THREADS] = 0;
		hm[b * SAMP_THREADS] = 0.0;
	}
	if (tid < nb) {
		sctl.h.lo[tid] = lo + ((uint32_t)tid << s);
		uint32_t h = lo + ((uint32_t)(tid + 1) << s);
		sctl.h.hi[tid] = h < hi ? h : hi;
	}
	if (tid == 0)
		sctl.h.nb = nb;
	row_each((const float *)R.w, R.V, [&](int i, float e) {
		const uint32_t k = __float_as_uint(e);
		const uint32_t key = ID ? (uint32_t)i : k;
		if ((!ID || k == v) && key - lo < width) {
			const int b = (int)((key - lo) >> s);
			hc[b * SAMP_THREADS] += 1;
			if (!ID)
				hm[b * SAMP_THREADS] = __dadd_rn(hm[b * SAMP_THREADS], (double)e);
		}
	});
	hist_reduce(&sctl.h, nb, !ID);
	SAMP_PATH(ID ? "hist_pass_id" : "hist_pass");
}

/* ---------------------------------------------------------------- the sorted set */

/* Appends key to the set if in; every lane of the warp calls it. */
__device__ __forceinline__ void sset_append(bool in, uint64_t key)
{
	const unsigned m = __ballot_sync(SAMP_FULL, in);
	if (m == 0)
		return;
	const int lane = lane_id(), leader = __ffs((int)m) - 1;
	unsigned base = 0;
	if (lane == leader)
		base = atomicAdd(&sctl.count, (unsigned)__popc((int)m));
	base = __shfl_sync(SAMP_FULL, base, leader);
	const unsigned j = base + (unsigned)__popc((int)(m & ((1u << lane) - 1u)));
	if (in && j < SAMP_SCAP)
		sset()[j] = key;
}

/* The hist_pass filter on one token; its set key in *key. */
template <bool ID>
__device__ __forceinline__ bool sset_member(uint32_t k, uint32_t id, uint32_t lo, uint32_t width, uint32_t v,
					    uint64_t *key)
{
	*key = ID ? (uint64_t)id : ((uint64_t)(0x7fffffffu - k) << 32) | id;
	return ID ? k == v && id - lo < width : k - lo < width;
}

/* Collects the tokens of a hist_pass filter into the set and sorts it
 * ascending by key: ID == false: key = (0x7fffffff - e bits) << 32 | id, the
 * walk order; ID == true: key = id. Returns the set's size. */
template <bool ID>
__device__ int sset_build(const struct samp_row &R, uint32_t lo, uint32_t hi, uint32_t v)
{
	const int tid = threadIdx.x, T = SAMP_THREADS;
	const uint32_t width = hi - lo;
	const uint32_t *w = R.w;
	uint64_t key;
	__syncthreads(); /* histograms and any older set are dead */
	if (tid == 0) {
		sctl.count = 0;
		sctl.s_valid = 0;
	}
	__syncthreads();
	/* every lane of a warp runs the same iterations: the append is warp-wide */
	int i0 = 0;
	if (R.w_vec) {
		const uint4 *w4 = (const uint4 *)w;
		const int n4 = R.V >> 2;
		for (int b0 = 0; b0 < n4; b0 += 4 * T) {
			uint4 q[4];
#pragma unroll
			for (int u = 0; u < 4; u++) {
				const int vi = b0 + u * T + tid;
				q[u] = vi < n4 ? w4[vi] : make_uint4(~0u, ~0u, ~0u, ~0u);
			}
			bool any = false;
#pragma unroll
			for (int u = 0; u < 4; u++) {
				const uint32_t id = 4u * (uint32_t)(b0 + u * T + tid);
				any |= sset_member<ID>(q[u].x, id, lo, width, v, &key);
				any |= sset_member<ID>(q[u].y, id + 1, lo, width, v, &key);
				any |= sset_member<ID>(q[u].z, id + 2, lo, width, v, &key);
				any |= sset_member<ID>(q[u].w, id + 3, lo, width, v, &key);
			}
			if (!__any_sync(SAMP_FULL, any))
				continue;
#pragma unroll
			for (int u = 0; u < 4; u++) {
				const uint32_t id = 4u * (uint32_t)(b0 + u * T + tid);
				const uint32_t kk[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
#pragma unroll
				for (int c = 0; c < 4; c++) {
					/* padding lanes: e bits ~0 are never in; ids past V are never read */
					bool in = sset_member<ID>(kk[c], id + c, lo, width, v, &key);
					sset_append(in && kk[c] != ~0u, key);
				}
			}
		}
		i0 = 4 * n4;
	}
	for (int b0 = i0; b0 < R.V; b0 += T) {
		const int i = b0 + tid;
		const uint32_t k = i < R.V ? w[i] : ~0u;
		bool in = sset_member<ID>(k, (uint32_t)i, lo, width, v, &key);
		sset_append(in && k != ~0u, key);
	}
	__syncthreads();
	const int s = imin((int)sctl.count, SAMP_SCAP);
	int P = 1;
	while (P < s)
		P <<= 1;
	uint64_t *S = sset();
	for (int i = s + tid; i < P; i += T)
		S[i] = ~0ull;
	__syncthreads();
	/* bitonic sort of S[0, P) ascending */
	for (int k = 2; k <= P; k <<= 1) {
		for (int j = k >> 1; j > 0; j >>= 1) {
			for (int i = tid; i < P; i += T) {
				const int ixj = i ^ j;
				if (ixj > i) {
					const uint64_t x = S[i], y = S[ixj];
					if ((x > y) == ((i & k) == 0)) {
						S[i] = y;
						S[ixj] = x;
					}
				}
			}
			__syncthreads();
		}
	}
	return s;
}

__device__ __forceinline__ float sset_e(uint64_t key)
{
	return __uint_as_float(0x7fffffffu - (uint32_t)(key >> 32));
}

/* Builds the walk-order set of e bits [lo, hi) that follows c_above tokens of
 * mass m_above, with each thread's prefix mass in sset_pre()[tid]. */
__device__ void sset_build_walk(const struct samp_row &R, uint32_t lo, uint32_t hi, int c_above, double m_above)
{
	const int tid = threadIdx.x;
	const int s = sset_build<false>(R, lo, hi, 0);
	const uint64_t *S = sset();
	const int chunk = (s + SAMP_THREADS - 1) / SAMP_THREADS;
	const int j0 = imin(s, tid * chunk), j1 = imin(s, j0 + chunk);
	double cs = 0.0;
	for (int j = j0; j < j1; j++)
		cs = __dadd_rn(cs, (double)sset_e(S[j]));
	double pre = block_exscan_d(cs);
	SAMP_PATH(c_above ? "sset_inner" : "sset_prefix");
	sset_pre()[tid] = pre;
	if (tid == 0) {
		sctl.s_valid = 1;
		sctl.s_n = s;
		sctl.s_c_above = c_above;
		sctl.s_m_above = m_above;
	}
	__syncthreads();
}

__device__ __forceinline__ bool reached(int mode, double c, double X)
{
	return mode == Q_MASS_GE ? c >= X : c > X;
}

/* Answers a query from the sorted set. Not final: returns false when the
 * answer may lie outside the set. Final: always answers (the narrowing put
 * the crossing inside; a miss from rounding is reported as not found). */
__device__ bool sset_resolve(const struct samp_row &R, int mode, int n, double X, bool final, struct samp_loc *r)
{
	const int tid = threadIdx.x;
	const int s = sctl.s_n, ca = sctl.s_c_above;
	const double ma = sctl.s_m_above;
	const uint64_t *S = sset();
	const bool to_end = ca + s == R.V;
	int jn = -1;
	if (mode == Q_COUNT) {
		jn = n - ca;
		if (jn < 0 || jn >= s) {
			if (!final)
				return false;
			r->found = 0;
			return true;
		}
	} else if (!final && ca > 0 && reached(mode, ma, X)) {
		return false; /* the crossing is above the set */
	}
	const int chunk = (s + SAMP_THREADS - 1) / SAMP_THREADS;
	const int j0 = imin(s, tid * chunk), j1 = imin(s, j0 + chunk);
	double c = __dadd_rn(ma, sset_pre()[tid]);
	int jm = INT_MAX;
	double cm = 0.0;
	for (int j = j0; j < j1; j++) {
		c = __dadd_rn(c, (double)sset_e(S[j]));
		if (mode == Q_COUNT ? j == jn : reached(mode, c, X)) {
			jm = j;
			cm = c;
			break;
		}
	}
	const int jmin = block_min_i(jm);
	if (jmin == INT_MAX) {
		if (!final && !to_end)
			return false;
		r->found = 0;
		return true;
	}
	if (jm == jmin)
		sctl.bc_d = cm;
	__syncthreads();
	r->found = 1;
	r->pos = ca + jmin;
	r->cum = sctl.bc_d;
	r->id = (int)(uint32_t)S[jmin];
	return true;
}

/* The rank-th lowest id among the g tokens whose e bits are v. */
__device__ int id_select(const struct samp_row &R, uint32_t v, int rank, int g)
{
	uint32_t lo = 0, hi = (uint32_t)R.V;
	int cnt = g;
	SAMP_PATH("id_select");
	for (;;) {
		if (cnt <= SAMP_SCAP) {
			const int s = sset_build<true>(R, lo, hi, v);
			const int id = rank < s ? (int)(uint32_t)sset()[rank] : 0;
			__syncthreads();
			return id;
		}
		hist_pass<true>(R, lo, hi, v);
		const struct samp_hist *h = &sctl.h;
		int b = 0;
		for (; b < h->nb - 1 && rank >= (int)h->cnt[b]; b++)
			rank -= (int)h->cnt[b];
		lo = h->lo[b];
		hi = h->hi[b];
		cnt = (int)h->cnt[b];
	}
}

/* ---------------------------------------------------------------- queries */

/* Where the walk order crosses: Q_COUNT: position n; Q_MASS_GE / GT: the first
 * position whose prefix mass is >= / > X. The id only if need_id. */
__device__ __noinline__ struct samp_loc locate(const struct samp_row &R, int mode, int n, double X, bool need_id)
{
	struct samp_loc r = {0, 0, 0.0, 0};
	if (sctl.s_valid && sset_resolve(R, mode, n, X, false, &r)) {
		SAMP_PATH("sset_reused");
		return r;
	}
	if (mode == Q_COUNT && n >= R.npos) { /* among the e == 0 tokens: no mass */
		SAMP_PATH("count_in_zeros");
		r.found = 1;
		r.pos = n;
		r.cum = R.mtot;
		if (need_id)
			r.id = id_select(R, 0u, n - R.npos, R.V - R.npos);
		return r;
	}
	const struct samp_hist *h = &sctl.l1;
	int c_above = 0;
	double m_above = 0.0;
	uint32_t cur_lo = 0, cur_hi = SAMP_KEY_TOP; /* the keys this level splits */
	for (;;) {
		/* the bins [bl, bf] (bf the highest) that hold the crossing */
		int bf = -1, bl = -1, acc_c = c_above, cab = 0;
		double acc_m = m_above, mab = 0.0;
		if (mode == Q_COUNT) {
			for (int b = h->nb - 1; b >= 0; b--) {
				if (n < acc_c + (int)h->cnt[b]) {
					bf = bl = b;
					cab = acc_c;
					mab = acc_m;
					acc_c += (int)h->cnt[b];
					break;
				}
				acc_c += (int)h->cnt[b];
				acc_m = __dadd_rn(acc_m, h->mass[b]);
			}
		} else {
			for (int b = h->nb - 1; b >= 0; b--) {
				if (h->cnt[b] == 0)
					continue;
				const double next = __dadd_rn(acc_m, h->mass[b]);
				if (bf < 0 && next >= X - R.delta) {
					bf = b;
					cab = acc_c;
					mab = acc_m;
				}
				acc_c += (int)h->cnt[b];
				acc_m = next;
				if (bf >= 0) {
					bl = b;
					if (next >= X + R.delta)
						break;
				}
			}
		}
		if (bf < 0) {
			SAMP_PATH("mass_beyond_total");
			r.found = 0;
			return r;
		}
		int cnt = acc_c - cab;
		if (h->lo[bl] <= cur_lo && h->hi[bf] >= cur_hi) {
			/* The margins kept every bin (a crossing within rounding of a bin
			 * edge, then bins of almost no mass): take the bin where the
			 * prefix crosses X itself, so that every pass narrows. */
			SAMP_PATH("narrow_forced");
			acc_c = c_above;
			acc_m = m_above;
			bf = -1;
			for (int b = h->nb - 1; b >= 0; b--) {
				if (h->cnt[b] == 0)
					continue;
				const double next = __dadd_rn(acc_m, h->mass[b]);
				bf = b;
				cab = acc_c;
				mab = acc_m;
				cnt = (int)h->cnt[b];
				if (reached(mode, next, X))
					break;
				acc_c += (int)h->cnt[b];
				acc_m = next;
			}
			bl = bf;
		}
		uint32_t lo = h->lo[bl], hi = h->hi[bf];
		c_above = cab;
		m_above = mab;
		cur_lo = lo;
		cur_hi = hi;
		if (c_above + cnt <= SAMP_SCAP) { /* take everything above too: later queries land there */
			hi = SAMP_KEY_TOP;
			cnt += c_above;
			c_above = 0;
			m_above = 0.0;
		}
		if (cnt <= SAMP_SCAP) {
			sset_build_walk(R, lo, hi, c_above, m_above);
			sset_resolve(R, mode, n, X, true, &r);
			return r;
		}
		if (hi - lo == 1) { /* a group of cnt equal e: arithmetic */
			SAMP_PATH(mode == Q_COUNT ? "tie_group_count" : "tie_group_mass");
			const double e = (double)__uint_as_float(lo);
			int j; /* 1-based within the group */
			if (mode == Q_COUNT) {
				j = n - c_above + 1;
			} else {
				if (!(e > 0.0))
					return r; /* no mass: never crosses here */
				double est = ceil((X - m_above) / e);
				j = est < 1.0 ? 1 : est > (double)cnt ? cnt : (int)est;
				while (j > 1 && reached(mode, __dadd_rn(m_above, __dmul_rn((double)(j - 1), e)), X))
					j--;
				while (j <= cnt && !reached(mode, __dadd_rn(m_above, __dmul_rn((double)j, e)), X))
					j++;
				if (j > cnt)
					return r;
			}
			r.found = 1;
			r.pos = c_above + j - 1;
			r.cum = __dadd_rn(m_above, __dmul_rn((double)j, e));
			if (need_id)
				r.id = id_select(R, lo, j - 1, cnt);
			return r;
		}
		hist_pass<false>(R, lo, hi, 0);
		h = &sctl.h;
	}
}

/* ---------------------------------------------------------------- sampler */

/* Steps 1 and 2 of src/samp.h; the work row, as uint32, counts tokens. */
__device__ void apply_penalties(float *L, uint32_t *cnt, int V, const struct k_samp_row &P, const int32_t *hist)
{
	const int tid = threadIdx.x, T = SAMP_THREADS;
	const int nh = P.n_prompt + P.n_out;
	const int32_t *out = hist + P.n_prompt;
	if (P.repetition_penalty != 1.0f && nh > 0) {
		const float rp = P.repetition_penalty;
		for (int i = tid; i < nh; i += T) {
			int32_t t = hist[i];
			if (t >= 0 && t < V)
				cnt[t] = 0;
		}
		__syncthreads();
		for (int i = tid; i < nh; i += T) {
			int32_t t = hist[i];
			if (t >= 0 && t < V && atomicExch(&cnt[t], 1u) == 0u) { /* once per distinct token */
				float l = L[t];
				L[t] = l > 0.0f ? __fdiv_rn(l, rp) : __fmul_rn(l, rp);
			}
		}
		__syncthreads();
	}
	if ((P.presence_penalty != 0.0f || P.frequency_penalty != 0.0f) && P.n_out > 0) {
		for (int i = tid; i < P.n_out; i += T) {
			int32_t t = out[i];
			if (t >= 0 && t < V)
				cnt[t] = 0;
		}
		__syncthreads();
		for (int i = tid; i < P.n_out; i += T) {
			int32_t t = out[i];
			if (t >= 0 && t < V)
				atomicAdd(&cnt[t], 1u);
		}
		__syncthreads();
		for (int i = tid; i < P.n_out; i += T) {
			int32_t t = out[i];
			if (t < 0 || t >= V)
				continue;
			uint32_t c = atomicExch(&cnt[t], 0u);
			if (c)
				L[t] = __fsub_rn(L[t], __fadd_rn(P.presence_penalty, __fmul_rn(P.frequency_penalty, (float)c)));
		}
		__syncthreads();
	}
}

/* x = l / temperature (written back), e = exp(x - m) into the work row, the
 * first histogram, and R's totals. Not inlined: the kernel stays under 64
 * registers without spilling. */
__device__ __noinline__ void exp_pass(struct samp_row &R, float temp, float m, float min_p)
{
	const int tid = threadIdx.x, T = SAMP_THREADS;
	uint32_t *hc = hist_cnt() + tid;
	double *hm = hist_mass() + tid;
	for (int b = 0; b < SAMP_NB; b++) {
		hc[b * SAMP_THREADS] = 0;
		hm[b * SAMP_THREADS] = 0.0;
	}
	int np = 0, nm = 0;
	double mm = 0.0;
	float *L = R.logits;
	float *W = (float *)R.w;
	auto one = [&](float l, float &x) -> float {
		x = __fdiv_rn(l, temp);
		const float e = exp_shifted(x, m);
		const int b = l1_bin(__float_as_uint(e));
		hc[b * SAMP_THREADS] += 1;
		hm[b * SAMP_THREADS] = __dadd_rn(hm[b * SAMP_THREADS], (double)e);
		np += e > 0.0f;
		if (e >= min_p) {
			nm++;
			mm = __dadd_rn(mm, (double)e);
		}
		return e;
	};
	if (R.w_vec && ((uintptr_t)L & 15) == 0) {
		float4 *L4 = (float4 *)L, *W4 = (float4 *)W;
		const int n4 = R.V >> 2;
		int v = tid;
		float4 q = v < n4 ? L4[v] : make_float4(0.f, 0.f, 0.f, 0.f);
		for (; v < n4; v += T) {
			const float4 qn = v + T < n4 ? L4[v + T] : q;
			float4 x, e;
			e.x = one(q.x, x.x);
			e.y = one(q.y, x.y);
			e.z = one(q.z, x.z);
			e.w = one(q.w, x.w);
			L4[v] = x;
			W4[v] = e;
			q = qn;
		}
		for (int i = 4 * n4 + tid; i < R.V; i += T) {
			float x;
			W[i] = one(L[i], x);
			L[i] = x;
		}
	} else {
		for (int i = tid; i < R.V; i += T) {
			float x;
			W[i] = one(L[i], x);
			L[i] = x;
		}
	}
	if (tid < SAMP_NB) {
		const int j = 15 - tid; /* l1_bin's pair of binades */
		sctl.l1.lo[tid] = j == 15 ? 0u : (uint32_t)(126 - 2 * j) << 23;
		sctl.l1.hi[tid] = (uint32_t)(128 - 2 * j) << 23;
	}
	if (tid == 0)
		sctl.l1.nb = SAMP_NB;
	hist_reduce(&sctl.l1, SAMP_NB, 1);
	np = block_sum_i(np);
	nm = block_sum_i(nm);
	mm = block_sum_d(mm);
	double mtot = 0.0;
	for (int b = SAMP_NB - 1; b >= 0; b--)
		mtot = __dadd_rn(mtot, sctl.l1.mass[b]);
	__syncthreads();
	if (tid == 0) {
		R.npos = np;
		R.n_minp = nm;
		R.m_minp = mm;
		R.mtot = mtot;
		R.delta = mtot * SAMP_MARGIN;
		sctl.s_valid = 0;
	}
	__syncthreads();
}

/* NaN-skipping maximum of x[0, n) (-inf if none). Not inlined: see exp_pass. */
__device__ __noinline__ float row_max(const float *x, int n)
{
	float mx = -INFINITY;
	row_each(x, n, [&](int i, float l) { mx = fmaxf(mx, l); });
	return block_max_f(mx);
}

/* Steps 4 (the filters) and 5 after the exp pass. Not inlined: the kernel
 * stays under 64 registers without spilling. */
__device__ __noinline__ int sample_filters_draw(const struct samp_row &R, const struct k_samp_row *P)
{
	const int V = R.V;
	/* top-k */
	int n_cand = V;
	double cand_sum = R.mtot;
	if (P->top_k > 0 && P->top_k < V) {
		struct samp_loc l = locate(R, Q_COUNT, P->top_k - 1, 0.0, false);
		n_cand = P->top_k;
		if (l.found)
			cand_sum = l.cum;
	}

	/* top-p: the shortest prefix whose mass reaches top_p of the candidates' */
	int n_keep = n_cand;
	double kept_sum = cand_sum;
	if (P->top_p < 1.0f) {
		struct samp_loc l = locate(R, Q_MASS_GE, 0, __dmul_rn((double)P->top_p, cand_sum), false);
		if (l.found && l.pos < n_cand) {
			n_keep = l.pos + 1;
			kept_sum = l.cum;
		}
	}

	/* min-p: the tokens with e >= min_p are a prefix */
	if (P->min_p > 0.0f) {
		const int n_min = imin(n_cand, R.n_minp);
		if (n_min < n_keep) {
			n_keep = n_min;
			kept_sum = R.m_minp;
		}
	}

	/* 5: the draw */
	const double target = __dmul_rn((double)samp_uniform_dev(P->seed, P->pos), kept_sum);
	struct samp_loc l = locate(R, Q_MASS_GT, 0, target, true);
	if (!(l.found && l.pos < n_keep)) { /* rounding ran past the end: the last kept token with mass */
		SAMP_PATH("draw_fallback");
		l = locate(R, Q_COUNT, imin(n_keep, R.npos) - 1, 0.0, true);
	}
	return l.id;
}

extern "C" __global__ void __launch_bounds__(SAMP_THREADS, 1) k_sample_f32(const struct k_sample a)
{
	pdl_trigger_long_start();
	pdl_wait();
	const int row = blockIdx.x;
	if (row >= a.n)
		return;
	const struct k_samp_row *P = a.rows + row; /* read at each use: fewer live registers */
	const int V = a.vocab;
	float *L = a.logits + (size_t)row * (size_t)a.ld;
	float *W = a.work + (size_t)row * (size_t)V;

	/* 1, 2: penalties */
	apply_penalties(L, (uint32_t *)W, V, *P, a.hist + P->hist_off);

	/* 3: greedy */
	if (!(P->temperature >= SAMP_GREEDY_BELOW)) {
		SAMP_PATH("greedy");
		const int id = block_argmax(L, V);
		if (threadIdx.x == 0)
			a.out[row] = id;
		return;
	}

	/* 4: temperature; max x = max(l) / temperature (division is monotone) */
	const float temp = P->temperature;
	const float m = __fdiv_rn(row_max(L, V), temp);

	struct samp_row &R = sctl.row;
	if (threadIdx.x == 0) {
		R.logits = L;
		R.w = (uint32_t *)W;
		R.V = V;
		R.w_vec = ((uintptr_t)W & 15) == 0;
	}
	__syncthreads();
	exp_pass(R, temp, m, P->min_p);
	if (!(R.mtot > 0.0)) { /* every logit NaN */
		SAMP_PATH("all_nan");
		const int id = block_argmax(L, V);
		if (threadIdx.x == 0)
			a.out[row] = id;
		return;
	}

	const int id = sample_filters_draw(R, P);
	if (threadIdx.x == 0)
		a.out[row] = id;
}
