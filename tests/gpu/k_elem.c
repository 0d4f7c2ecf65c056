/* k_elem: kernels/elem.cu and kernels/samp.cu on the device, against CPU
 * references computed from the same bf16/fp32 inputs.
 *
 *   embed    exact (bf16 -> f32 is exact)
 *   rmsnorm  ||out - ref64|| / ||ref64|| < 1e-2 (reported), and at most one
 *            bf16 ulp from cpu.c's float formula (only the sum order differs)
 *   rope_kv  positions up to 100000, shuffled block tables, head_dim 64, 128,
 *            256, with and without q/k norm: the float64 bound as above; without
 *            q/k norm bit-identical to cpu.c's formula (same fm_sincosf); with
 *            it within one bf16 ulp plus 1e-6 of the head's largest value (the
 *            rotation can cancel, and the norm's sum runs in another order);
 *            KV slots no token owns stay poisoned
 *   argmax   identical to samp_sample at temperature 0 (ties, NaN, +-inf rows)
 *   sample   identical tokens to samp_sample on >= 2000 rows (vocab 640, 32000,
 *            152064, plus 1001 for unaligned rows), logits whose probabilities
 *            differ by more than 1e-6 relative, every filter and penalty; plus
 *            rows of bf16-rounded logits (exact ties); the in-place logits must
 *            equal samp_sample's bit for bit
 * Every output is poisoned with NaN (0xffff...) before the launch and checked
 * to be written. Timings last: rmsnorm and rope at T = 1 and 4096 (dim 4096),
 * argmax and sample at n = 1 and 256 (vocab 152064), GB/s of the bytes each
 * must move.
 *
 * Usage: k_elem [-q] [-c]   (-q: small sizes, for a CPU emulator; -c: no timings)
 * Last line: # k_elem: pass=N fail=M
 */
#include "fmath.h"
#include "gpu.h"
#include "gpu_elem.h"
#include "samp.h"

#include "../t.h"
#include "kutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static struct gpu G;
static int quick, no_timing;

/* ---------------------------------------------------------------- utilities */

static void rng_seed(uint64_t s)
{
	rng_s = s * 0x9e3779b97f4a7c15u + 0x632be59bd9b4e019u;
}

static double rnd_unit(void)
{
	return (double)(rng_next() >> 11) * 0x1p-53;
}

static int rnd_int(int n) /* [0, n) */
{
	return (int)(rng_next() % (uint64_t)n);
}

static double rnd_normal(void)
{
	double u = rnd_unit() + 0x1p-60, v = rnd_unit();
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void shuffle_i32(int32_t *a, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = rnd_int(i + 1);
		int32_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "k_elem: out of host memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static gpu_ptr take(uint64_t bytes)
{
	gpu_ptr p = gpu_arena_take(&G, bytes);
	if (!p) {
		fprintf(stderr, "k_elem: arena exhausted taking %llu bytes\n", (unsigned long long)bytes);
		printf("# k_elem: pass=%d fail=%d\n", t_pass, t_fail + 1);
		exit(1);
	}
	return p;
}

#define DP(p) ((void *)(uintptr_t)(p))

static void h2d(gpu_ptr d, const void *h, size_t n)
{
	int rc = gpu_h2d(&G, d, h, n);
	if (rc == 0)
		rc = gpu_sync(&G);
	T_CHECK(rc == 0, "h2d of %zu bytes: %d", n, rc);
}

static void d2h(void *h, gpu_ptr d, size_t n)
{
	int rc = gpu_d2h(&G, h, d, n);
	if (rc == 0)
		rc = gpu_sync(&G);
	T_CHECK(rc == 0, "d2h of %zu bytes: %d", n, rc);
}

static void poison(gpu_ptr d, size_t bytes)
{
	int rc = gpu_memset32(&G, d, 0xffffffffu, bytes / 4);
	if (rc == 0)
		rc = gpu_sync(&G);
	T_CHECK(rc == 0, "poison: %d", rc);
}

/* A launcher's return code, then the stream's (a fault shows at the sync). */
static int launched(int rc, const char *what)
{
	if (rc == 0)
		rc = gpu_sync(&G);
	T_CHECK(rc == 0, "%s: %d", what, rc);
	return rc;
}

static uint16_t bf(float f)
{
	return ts_f32_to_bf16(f);
}

static float fb(uint16_t h)
{
	return ts_bf16_to_f32(h);
}

/* Distance in bf16 steps between two finite bf16 values (same sign order). */
static int bf16_ulps(uint16_t a, uint16_t b)
{
	int ia = a & 0x8000 ? -(int)(a & 0x7fff) : (int)a, ib = b & 0x8000 ? -(int)(b & 0x7fff) : (int)b;
	return ia > ib ? ia - ib : ib - ia;
}

static int is_nan_bf16(uint16_t h)
{
	return (h & 0x7fff) > 0x7f80;
}

/* ---------------------------------------------------------------- embed */

static void test_embed(void)
{
	const int vocab = 1000, dims[] = {256, 4096, 1032}, T = quick ? 9 : 37;
	for (size_t c = 0; c < TS_ARRAY_LEN(dims); c++) {
		const int dim = dims[c];
		rng_seed(100 + c);
		uint16_t *tab = xmalloc(sizeof(uint16_t) * (size_t)vocab * dim);
		int32_t *tok = xmalloc(sizeof(int32_t) * T);
		float *x = xmalloc(sizeof(float) * (size_t)T * dim);
		for (size_t i = 0; i < (size_t)vocab * dim; i++)
			tab[i] = bf((float)rnd_normal());
		for (int t = 0; t < T; t++)
			tok[t] = rnd_int(vocab);
		tok[0] = vocab - 1;
		gpu_ptr d_tab = take(sizeof(uint16_t) * (size_t)vocab * dim), d_tok = take(sizeof(int32_t) * T),
			d_x = take(sizeof(float) * (size_t)T * dim);
		h2d(d_tab, tab, sizeof(uint16_t) * (size_t)vocab * dim);
		h2d(d_tok, tok, sizeof(int32_t) * T);
		poison(d_x, sizeof(float) * (size_t)T * dim);
		struct k_embed a = {.table = DP(d_tab), .token = DP(d_tok), .x = DP(d_x), .T = T, .dim = dim};
		if (launched(embed_run(&G, &a), "embed_run") == 0) {
			d2h(x, d_x, sizeof(float) * (size_t)T * dim);
			long bad = 0;
			for (int t = 0; t < T; t++)
				for (int i = 0; i < dim; i++) {
					float want = fb(tab[(size_t)tok[t] * dim + i]), got = x[(size_t)t * dim + i];
					bad += memcmp(&want, &got, 4) != 0;
				}
			printf("embed    T=%-4d dim=%-5d  mismatches %ld\n", T, dim, bad);
			T_CHECK(bad == 0, "embed dim %d: %ld values differ", dim, bad);
		}
		free(tab);
		free(tok);
		free(x);
	}
}

/* ---------------------------------------------------------------- rmsnorm */

/* cpu.c rmsnorm on one row, rounded to bf16. */
static void rms_cpu(uint16_t *out, const float *x, const uint16_t *w, int n, float eps)
{
	float ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float r = 1.0f / fm_sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		out[i] = bf(fb(w[i]) * (x[i] * r));
}

static void test_rmsnorm(void)
{
	static const struct {
		int dim, T, rows;
		float eps;
	} cs[] = {
		{4096, 1, 0, 1e-5f}, {4096, 64, 1, 1e-5f}, {256, 5, 0, 1e-6f}, {128, 7, 1, 1e-6f},
		{8192, 3, 1, 1e-5f}, {40960, 2, 0, 1e-5f}, {5120, 9, 0, 1e-6f}, {1032, 4, 1, 1e-5f},
	};
	for (size_t c = 0; c < TS_ARRAY_LEN(cs); c++) {
		const int dim = cs[c].dim, T = quick && cs[c].T > 8 ? 8 : cs[c].T, Tx = T + (cs[c].rows ? 3 : 0);
		rng_seed(200 + c);
		float *x = xmalloc(sizeof(float) * (size_t)Tx * dim);
		uint16_t *w = xmalloc(sizeof(uint16_t) * dim), *out = xmalloc(sizeof(uint16_t) * (size_t)T * dim),
			 *ref = xmalloc(sizeof(uint16_t) * dim);
		int32_t *rows = xmalloc(sizeof(int32_t) * Tx);
		for (int r = 0; r < Tx; r++) {
			double scale = exp(rnd_unit() * 9.0 - 4.5); /* 0.01 .. 90 */
			for (int i = 0; i < dim; i++)
				x[(size_t)r * dim + i] = (float)(scale * rnd_normal());
		}
		for (int i = 0; i < dim; i++)
			w[i] = bf((float)(1.0 + 0.1 * rnd_normal()));
		for (int r = 0; r < Tx; r++)
			rows[r] = r;
		shuffle_i32(rows, Tx);
		gpu_ptr d_x = take(sizeof(float) * (size_t)Tx * dim), d_w = take(sizeof(uint16_t) * dim),
			d_o = take(sizeof(uint16_t) * (size_t)T * dim), d_rows = take(sizeof(int32_t) * Tx);
		h2d(d_x, x, sizeof(float) * (size_t)Tx * dim);
		h2d(d_w, w, sizeof(uint16_t) * dim);
		h2d(d_rows, rows, sizeof(int32_t) * Tx);
		poison(d_o, sizeof(uint16_t) * (size_t)T * dim);
		struct k_rmsnorm a = {.x = DP(d_x), .rows = cs[c].rows ? DP(d_rows) : NULL, .w = DP(d_w),
				      .out = DP(d_o), .T = T, .dim = dim, .eps = cs[c].eps};
		if (launched(rmsnorm_run(&G, &a), "rmsnorm_run") == 0) {
			d2h(out, d_o, sizeof(uint16_t) * (size_t)T * dim);
			double num = 0, den = 0;
			long nan = 0;
			int maxulp = 0;
			for (int t = 0; t < T; t++) {
				const float *xr = x + (size_t)(cs[c].rows ? rows[t] : t) * dim;
				double ss = 0;
				for (int i = 0; i < dim; i++)
					ss += (double)xr[i] * xr[i];
				double r = 1.0 / sqrt(ss / dim + cs[c].eps);
				rms_cpu(ref, xr, w, dim, cs[c].eps);
				for (int i = 0; i < dim; i++) {
					uint16_t o = out[(size_t)t * dim + i];
					double want = (double)fb(w[i]) * xr[i] * r;
					if (is_nan_bf16(o)) {
						nan++;
						continue;
					}
					num += (fb(o) - want) * (fb(o) - want);
					den += want * want;
					int u = bf16_ulps(o, ref[i]);
					maxulp = u > maxulp ? u : maxulp;
				}
			}
			double rel = sqrt(num / (den > 0 ? den : 1));
			printf("rmsnorm  T=%-4d dim=%-5d rows=%d  rel err %.2e  max bf16 ulps vs cpu.c %d  NaN %ld\n", T, dim,
			       cs[c].rows, rel, maxulp, nan);
			T_CHECK(nan == 0, "rmsnorm dim %d: %ld outputs not written or NaN", dim, nan);
			T_CHECK(rel < 1e-2, "rmsnorm dim %d: rel err %.3e", dim, rel);
			T_CHECK(maxulp <= 1, "rmsnorm dim %d: %d bf16 ulps from cpu.c", dim, maxulp);
		}
		free(x);
		free(w);
		free(out);
		free(ref);
		free(rows);
	}
}

/* ---------------------------------------------------------------- rope + kv */

struct rope_case {
	int n_heads, n_kv, hd, qk_norm;
	float theta;
	int max_pos;
};

/* cpu.c's per-token q/k norm and RoPE in float, and a float64 version. */
static void rope_ref(const struct rope_case *rc, const float *row, int pos, const uint16_t *qn, const uint16_t *kn,
		     const float *inv, float eps, float *out32, double *out64)
{
	const int hd = rc->hd, half = hd / 2, nh = rc->n_heads + rc->n_kv;
	for (int h = 0; h < nh; h++) {
		const float *src = row + h * hd; /* q heads then k heads, contiguous */
		const uint16_t *nw = h < rc->n_heads ? qn : kn;
		float v[256];
		double vd[256];
		for (int i = 0; i < hd; i++) {
			v[i] = src[i];
			vd[i] = src[i];
		}
		if (rc->qk_norm) {
			float ss = 0;
			double sd = 0;
			for (int i = 0; i < hd; i++) {
				ss += v[i] * v[i];
				sd += vd[i] * vd[i];
			}
			float r = 1.0f / fm_sqrtf(ss / (float)hd + eps);
			double rd = 1.0 / sqrt(sd / hd + eps);
			for (int i = 0; i < hd; i++) {
				v[i] = fb(nw[i]) * (v[i] * r);
				vd[i] = fb(nw[i]) * vd[i] * rd;
			}
		}
		for (int i = 0; i < half; i++) {
			float cs, sn, ang = (float)pos * inv[i];
			fm_sincosf(ang, &sn, &cs);
			float x1 = v[i], x2 = v[i + half];
			out32[h * hd + i] = x1 * cs - x2 * sn;
			out32[h * hd + i + half] = x2 * cs + x1 * sn;
			double c = cos((double)ang), s = sin((double)ang);
			out64[h * hd + i] = vd[i] * c - vd[i + half] * s;
			out64[h * hd + i + half] = vd[i + half] * c + vd[i] * s;
		}
	}
}

static void test_rope(void)
{
	static const struct rope_case cs[] = {
		{4, 2, 64, 0, 10000.0f, 100000}, {4, 2, 64, 1, 1e6f, 100000},   {8, 2, 128, 0, 5e5f, 100000},
		{8, 2, 128, 1, 1e6f, 100000},    {3, 1, 256, 1, 1e6f, 100000},  {32, 8, 128, 1, 1e6f, 100000},
		{2, 2, 2, 0, 10000.0f, 100000},  {4, 1, 64, 0, 1e6f, 3000000}, /* angles past 2^20 pi/2 */
	};
	const int n_seqs = 3, bt = 16;
	for (size_t c = 0; c < TS_ARRAY_LEN(cs); c++) {
		const struct rope_case *rc = &cs[c];
		const int max_pos = rc->max_pos, max_blocks = max_pos / bt + 1;
		const int T = quick ? 10 : 48, hd = rc->hd, q_dim = rc->n_heads * hd, kv_dim = rc->n_kv * hd,
			  W = q_dim + 2 * kv_dim, n_blocks = 2 * T + 8;
		const float eps = 1e-6f;
		rng_seed(300 + c);
		int32_t *pos = xmalloc(sizeof(int32_t) * T), *seq = xmalloc(sizeof(int32_t) * T),
			*blocks = xmalloc(sizeof(int32_t) * n_seqs * max_blocks), *phys = xmalloc(sizeof(int32_t) * n_blocks);
		float *qkv = xmalloc(sizeof(float) * (size_t)T * W), *inv = xmalloc(sizeof(float) * hd / 2);
		uint16_t *qn = xmalloc(sizeof(uint16_t) * hd), *kn = xmalloc(sizeof(uint16_t) * hd);
		/* distinct (seq, pos); the last tokens at the edges */
		for (int t = 0; t < T; t++) {
			for (;;) {
				seq[t] = rnd_int(n_seqs);
				pos[t] = t == 0 ? 0 : t == 1 ? max_pos : t == 2 ? max_pos - 1 : rnd_int(max_pos + 1);
				int dup = 0;
				for (int u = 0; u < t; u++)
					dup |= seq[u] == seq[t] && pos[u] == pos[t];
				if (!dup)
					break;
			}
		}
		/* every logical block a token touches gets its own physical block, shuffled */
		for (int i = 0; i < n_seqs * max_blocks; i++)
			blocks[i] = -1;
		for (int i = 0; i < n_blocks; i++)
			phys[i] = i;
		shuffle_i32(phys, n_blocks);
		int used = 0;
		for (int t = 0; t < T; t++) {
			int32_t *b = &blocks[seq[t] * max_blocks + pos[t] / bt];
			if (*b < 0)
				*b = phys[used++];
		}
		for (size_t i = 0; i < (size_t)T * W; i++)
			qkv[i] = (float)(rnd_normal() * (1.0 + 3.0 * rnd_unit()));
		for (int i = 0; i < hd; i++) {
			qn[i] = bf((float)(1.0 + 0.1 * rnd_normal()));
			kn[i] = bf((float)(1.0 + 0.1 * rnd_normal()));
		}
		for (int i = 0; i < hd / 2; i++) /* cpu.c rope_init, default rope */
			inv[i] = 1.0f / fm_powf(rc->theta, (float)(2 * i) / (float)hd);

		const size_t cache_elems = (size_t)n_blocks * bt * kv_dim;
		gpu_ptr d_qkv = take(sizeof(float) * (size_t)T * W), d_q = take(sizeof(uint16_t) * (size_t)T * q_dim),
			d_kc = take(sizeof(uint16_t) * cache_elems), d_vc = take(sizeof(uint16_t) * cache_elems),
			d_pos = take(sizeof(int32_t) * T), d_seq = take(sizeof(int32_t) * T),
			d_blk = take(sizeof(int32_t) * n_seqs * max_blocks), d_qn = take(sizeof(uint16_t) * hd),
			d_kn = take(sizeof(uint16_t) * hd), d_inv = take(sizeof(float) * hd / 2);
		h2d(d_qkv, qkv, sizeof(float) * (size_t)T * W);
		h2d(d_pos, pos, sizeof(int32_t) * T);
		h2d(d_seq, seq, sizeof(int32_t) * T);
		h2d(d_blk, blocks, sizeof(int32_t) * n_seqs * max_blocks);
		h2d(d_qn, qn, sizeof(uint16_t) * hd);
		h2d(d_kn, kn, sizeof(uint16_t) * hd);
		h2d(d_inv, inv, sizeof(float) * hd / 2);
		poison(d_q, sizeof(uint16_t) * (size_t)T * q_dim);
		poison(d_kc, sizeof(uint16_t) * cache_elems);
		poison(d_vc, sizeof(uint16_t) * cache_elems);
		struct k_rope_kv a = {
			.qkv = DP(d_qkv), .q = DP(d_q), .kc = DP(d_kc), .vc = DP(d_vc), .pos = DP(d_pos),
			.seq = DP(d_seq), .blocks = DP(d_blk), .q_norm = rc->qk_norm ? DP(d_qn) : NULL,
			.k_norm = rc->qk_norm ? DP(d_kn) : NULL, .inv_freq = DP(d_inv), .T = T,
			.n_heads = rc->n_heads, .n_kv_heads = rc->n_kv, .head_dim = hd, .block_tokens = bt,
			.max_blocks = max_blocks, .eps = eps,
		};
		if (launched(rope_kv_run(&G, &a), "rope_kv_run") == 0) {
			uint16_t *q = xmalloc(sizeof(uint16_t) * (size_t)T * q_dim), *kc = xmalloc(sizeof(uint16_t) * cache_elems),
				 *vc = xmalloc(sizeof(uint16_t) * cache_elems);
			unsigned char *owned = calloc((size_t)n_blocks * bt, 1);
			float *r32 = xmalloc(sizeof(float) * (q_dim + kv_dim));
			double *r64 = xmalloc(sizeof(double) * (q_dim + kv_dim));
			d2h(q, d_q, sizeof(uint16_t) * (size_t)T * q_dim);
			d2h(kc, d_kc, sizeof(uint16_t) * cache_elems);
			d2h(vc, d_vc, sizeof(uint16_t) * cache_elems);
			double num = 0, den = 0;
			long nan = 0, vbad = 0, stray = 0, loose = 0;
			int maxulp = 0;
			for (int t = 0; t < T; t++) {
				const float *row = qkv + (size_t)t * W;
				rope_ref(rc, row, pos[t], qn, kn, inv, eps, r32, r64);
				size_t srow = (size_t)blocks[seq[t] * max_blocks + pos[t] / bt] * bt + pos[t] % bt;
				owned[srow] = 1;
				for (int i = 0; i < q_dim + kv_dim; i++) {
					uint16_t o = i < q_dim ? q[(size_t)t * q_dim + i] : kc[srow * kv_dim + (i - q_dim)];
					if (is_nan_bf16(o)) {
						nan++;
						continue;
					}
					num += (fb(o) - r64[i]) * (fb(o) - r64[i]);
					den += r64[i] * r64[i];
					uint16_t want = bf(r32[i]);
					int u = bf16_ulps(o, want);
					maxulp = u > maxulp ? u : maxulp;
					float hmax = 0; /* the head's largest value */
					for (int j = i / hd * hd; j < i / hd * hd + hd; j++)
						hmax = fabsf(r32[j]) > hmax ? fabsf(r32[j]) : hmax;
					double ulp = fabs(fb((uint16_t)(want | 1)) - fb((uint16_t)(want & ~1))); /* one bf16 step */
					loose += fabs(fb(o) - fb(want)) > ulp + 1e-6 * hmax;
				}
				for (int i = 0; i < kv_dim; i++) {
					uint16_t o = vc[srow * kv_dim + i];
					vbad += o != bf(row[q_dim + kv_dim + i]);
				}
			}
			for (size_t s = 0; s < (size_t)n_blocks * bt; s++)
				for (int i = 0; i < kv_dim && !owned[s]; i++)
					stray += kc[s * kv_dim + i] != 0xffff || vc[s * kv_dim + i] != 0xffff;
			double rel = sqrt(num / (den > 0 ? den : 1));
			printf("rope_kv  T=%-4d heads=%d/%d hd=%-3d qk_norm=%d pos<=%-7d rel err %.2e  max bf16 ulps vs cpu.c %d "
			       "(beyond bound %ld)  NaN %ld  v diffs %ld  stray writes %ld\n",
			       T, rc->n_heads, rc->n_kv, hd, rc->qk_norm, max_pos, rel, maxulp, loose, nan, vbad, stray);
			T_CHECK(nan == 0, "rope hd %d: %ld q/k outputs not written or NaN", hd, nan);
			T_CHECK(rel < 1e-2, "rope hd %d: rel err %.3e", hd, rel);
			if (rc->qk_norm)
				T_CHECK(loose == 0, "rope hd %d: %ld values beyond 1 bf16 ulp + 1e-6 max|head| of cpu.c", hd, loose);
			else
				T_CHECK(maxulp == 0, "rope hd %d: %d bf16 ulps from cpu.c (want bit-identical)", hd, maxulp);
			T_CHECK(vbad == 0, "rope hd %d: %ld v values differ", hd, vbad);
			T_CHECK(stray == 0, "rope hd %d: %ld cache values written outside the tokens' slots", hd, stray);
			free(q);
			free(kc);
			free(vc);
			free(owned);
			free(r32);
			free(r64);
		}
		free(pos);
		free(seq);
		free(blocks);
		free(phys);
		free(qkv);
		free(inv);
		free(qn);
		free(kn);
	}
}

/* ---------------------------------------------------------------- sampling */

/* Device buffers for up to SMAX_ROWS rows of SMAX_LD logits. */
#define SMAX_ROWS 256
#define SMAX_LD (152064 + 8)
#define SMAX_HIST 512

static gpu_ptr d_logits, d_work, d_rows, d_hist, d_out;

static void samp_buffers(void)
{
	d_logits = take(sizeof(float) * (size_t)SMAX_ROWS * SMAX_LD);
	d_work = take(sample_workspace_bytes(SMAX_ROWS, SMAX_LD));
	d_rows = take(sizeof(struct k_samp_row) * SMAX_ROWS);
	d_hist = take(sizeof(int32_t) * (size_t)SMAX_ROWS * SMAX_HIST);
	d_out = take(sizeof(int32_t) * SMAX_ROWS);
}

static void argmax_row(float *x, int vocab, int kind)
{
	for (int i = 0; i < vocab; i++)
		x[i] = (float)(3.0 * rnd_normal());
	int a = rnd_int(vocab), b = rnd_int(vocab);
	switch (kind) {
	case 1: /* a tie at the maximum: the lower id wins */
		x[a] = x[b] = 40.0f;
		break;
	case 2: /* NaN sprinkled, one at a would-be maximum */
		for (int i = 0; i < vocab / 50 + 1; i++)
			x[rnd_int(vocab)] = NAN;
		x[a] = NAN;
		break;
	case 3:
		for (int i = 0; i < vocab; i++)
			x[i] = NAN;
		break;
	case 4:
		for (int i = 0; i < vocab; i++)
			x[i] = -INFINITY;
		break;
	case 5:
		x[a] = INFINITY;
		x[b] = INFINITY;
		break;
	case 6: /* maximum at the last id */
		x[vocab - 1] = 50.0f;
		break;
	}
}

static void test_argmax(void)
{
	static const struct {
		int vocab, ld;
	} cs[] = {{640, 640}, {32000, 32000}, {152064, 152064}, {1001, 1003}, {640, 643}};
	struct samp_scratch sc;
	struct samp_params p;
	samp_params_default(&p);
	for (size_t c = 0; c < TS_ARRAY_LEN(cs); c++) {
		const int vocab = cs[c].vocab, ld = cs[c].ld, n = quick ? 7 : 64;
		rng_seed(400 + c);
		float *x = xmalloc(sizeof(float) * (size_t)n * ld), *cp = xmalloc(sizeof(float) * vocab);
		int32_t *out = xmalloc(sizeof(int32_t) * n);
		for (int r = 0; r < n; r++) {
			argmax_row(x + (size_t)r * ld, vocab, r % 7);
			for (int i = vocab; i < ld; i++)
				x[(size_t)r * ld + i] = INFINITY; /* padding: would win if read */
		}
		h2d(d_logits, x, sizeof(float) * (size_t)n * ld);
		poison(d_out, sizeof(int32_t) * n);
		struct k_sample a = {.logits = DP(d_logits), .ld = ld, .vocab = vocab, .n = n, .out = DP(d_out)};
		if (launched(argmax_run(&G, &a), "argmax_run") == 0) {
			d2h(out, d_out, sizeof(int32_t) * n);
			int bad = 0;
			T_CHECK(samp_scratch_init(&sc, vocab) == 0, "scratch");
			for (int r = 0; r < n; r++) {
				memcpy(cp, x + (size_t)r * ld, sizeof(float) * vocab);
				int32_t want = samp_sample(cp, vocab, &p, NULL, 0, NULL, 0, 0, &sc, NULL);
				if (out[r] != want && bad++ < 5)
					fprintf(stderr, "argmax vocab %d row %d kind %d: got %d want %d\n", vocab, r, r % 7,
						out[r], want);
			}
			samp_scratch_free(&sc);
			printf("argmax   n=%-4d vocab=%-6d ld=%-6d  mismatches %d\n", n, vocab, ld, bad);
			T_CHECK(bad == 0, "argmax vocab %d: %d rows differ", vocab, bad);
		}
		free(x);
		free(cp);
		free(out);
	}
}

/* Row kinds. The first three (the 1e-6 contract): logits whose values,
 * sorted, are at least 1e-4 apart, so probabilities differ by more than 1e-6
 * relative at temperatures <= 50. The others go past the contract: D_TIES
 * rounds them to bf16 (exact ties), D_COARSE to integers (groups of equal
 * probability larger than the kernel's sorted set), D_SPECIAL has NaN, +-inf,
 * all-equal and all-NaN rows. */
enum { D_PEAKED, D_SPREAD, D_FLAT, D_TIES, D_COARSE, D_SPECIAL, D_N };
static const char *const dist_name[D_N] = {"peaked", "spread", "flat", "bf16-ties", "coarse", "special"};

static void sample_logits(float *x, int vocab, int dist, int32_t *perm)
{
	double l = 10.0 + 20.0 * rnd_unit(), mean = 20.0 / vocab;
	for (int r = 0; r < vocab; r++) {
		double step;
		switch (dist) {
		case D_PEAKED:
			step = 1e-4 + 4.0 / (r + 1.0) * rnd_unit() + mean * rnd_unit();
			break;
		case D_FLAT:
			step = 1e-4;
			break;
		default:
			step = 1e-4 + mean * 2.0 * rnd_unit();
			break;
		}
		perm[r] = r;
		x[r] = (float)l; /* by rank for now */
		l -= step;
	}
	if (dist == D_TIES)
		for (int r = 0; r < vocab; r++)
			x[r] = fb(bf(x[r]));
	if (dist == D_COARSE)
		for (int r = 0; r < vocab; r++)
			x[r] = (float)(int)(10.0 * r / vocab);
	if (dist == D_SPECIAL) {
		switch (rnd_int(5)) {
		case 0: /* all equal */
			for (int r = 0; r < vocab; r++)
				x[r] = 3.0f;
			break;
		case 1: /* NaN and -inf sprinkled, the top token among them */
			for (int r = 0; r < vocab / 100 + 1; r++)
				x[rnd_int(vocab)] = NAN;
			for (int r = 0; r < vocab / 100 + 1; r++)
				x[rnd_int(vocab)] = -INFINITY;
			x[0] = rnd_int(2) ? NAN : -INFINITY;
			break;
		case 2: /* a few +inf */
			for (int r = 0; r < 1 + rnd_int(3); r++)
				x[rnd_int(vocab)] = INFINITY;
			break;
		case 3: /* all NaN */
			for (int r = 0; r < vocab; r++)
				x[r] = NAN;
			break;
		default: /* all -inf but one */
			for (int r = 1; r < vocab; r++)
				x[r] = -INFINITY;
			break;
		}
	}
	/* scatter the ranks over the ids */
	shuffle_i32(perm, vocab);
	float *tmp = xmalloc(sizeof(float) * vocab);
	for (int r = 0; r < vocab; r++)
		tmp[perm[r]] = x[r];
	memcpy(x, tmp, sizeof(float) * vocab); /* perm[rank] = id */
	free(tmp);
}

static void sample_params(struct samp_params *p, int vocab, int dist, int row)
{
	samp_params_default(p);
	p->seed = rng_next();
	const int mode = row % 10;
	if (mode == 0) { /* greedy, or below the greedy threshold */
		p->temperature = rnd_int(2) ? 0.0f : 5e-6f;
	} else if (dist == D_FLAT || (dist == D_COARSE && rnd_int(2))) {
		p->temperature = 20.0f + 30.0f * (float)rnd_unit();
	} else {
		static const float temps[] = {0.05f, 0.2f, 0.5f, 0.7f, 1.0f, 1.0f, 1.3f, 2.0f, 5.0f};
		p->temperature = temps[rnd_int((int)TS_ARRAY_LEN(temps))] * (float)(0.9 + 0.2 * rnd_unit());
	}
	if (rnd_int(2)) { /* top-k */
		switch (rnd_int(6)) {
		case 0: p->top_k = 1; break;
		case 1: p->top_k = 1 + rnd_int(50); break;
		case 2: p->top_k = 1 + rnd_int(vocab < 3000 ? vocab : 3000); break;
		case 3: p->top_k = 1 + rnd_int(vocab); break;
		case 4: p->top_k = vocab - 1 - rnd_int(3 < vocab ? 3 : 1); break;
		default: p->top_k = vocab; break;
		}
	}
	if (rnd_int(2)) { /* top-p */
		switch (rnd_int(4)) {
		case 0: p->top_p = 1e-4f; break;
		case 1: p->top_p = 0.999f; break;
		default: p->top_p = (float)(0.05 + 0.94 * rnd_unit()); break;
		}
	}
	if (rnd_int(5) < 2) /* min-p */
		p->min_p = rnd_int(4) ? (float)(0.001 + 0.3 * rnd_unit()) : (float)(0.5 + 0.49 * rnd_unit());
	if (rnd_int(3) == 0) { /* penalties */
		p->repetition_penalty = rnd_int(4) ? (float)(1.05 + 0.5 * rnd_unit()) : (float)(0.8 + 0.15 * rnd_unit());
		if (rnd_int(2))
			p->presence_penalty = (float)(4.0 * rnd_unit() - 2.0);
		if (rnd_int(2))
			p->frequency_penalty = (float)(4.0 * rnd_unit() - 2.0);
	}
}

/* One launch of n rows; returns the number of rows whose token differs. */
static int sample_batch(int vocab, int ld, int n, int dist_mix, uint64_t seed, int *n_rows, int counts[D_N])
{
	rng_seed(seed);
	float *x = xmalloc(sizeof(float) * (size_t)n * ld), *cpu = xmalloc(sizeof(float) * (size_t)n * ld),
	      *dev = xmalloc(sizeof(float) * (size_t)n * ld);
	struct k_samp_row *rows = xmalloc(sizeof(struct k_samp_row) * n);
	struct samp_params *ps = xmalloc(sizeof(struct samp_params) * n);
	int32_t *hist = xmalloc(sizeof(int32_t) * (size_t)n * SMAX_HIST), *out = xmalloc(sizeof(int32_t) * n),
		*want = xmalloc(sizeof(int32_t) * n), *perm = xmalloc(sizeof(int32_t) * vocab);
	int *dists = xmalloc(sizeof(int) * n);
	int n_hist = 0;
	for (int r = 0; r < n; r++) {
		const int dist = dist_mix >= 0 ? dist_mix : rnd_int(D_TIES); /* the others on request */
		float *xr = x + (size_t)r * ld;
		sample_logits(xr, vocab, dist, perm);
		for (int i = vocab; i < ld; i++)
			xr[i] = INFINITY; /* padding: would change the max if read */
		sample_params(&ps[r], vocab, dist, r);
		struct k_samp_row *k = &rows[r];
		memset(k, 0, sizeof(*k));
		k->temperature = ps[r].temperature;
		k->top_p = ps[r].top_p;
		k->min_p = ps[r].min_p;
		k->repetition_penalty = ps[r].repetition_penalty;
		k->presence_penalty = ps[r].presence_penalty;
		k->frequency_penalty = ps[r].frequency_penalty;
		k->top_k = ps[r].top_k;
		k->seed = ps[r].seed;
		k->pos = rng_next() % 1000000u;
		k->hist_off = n_hist;
		if (ps[r].repetition_penalty != 1.0f || ps[r].presence_penalty != 0.0f || ps[r].frequency_penalty != 0.0f ||
		    rnd_int(4) == 0) {
			k->n_prompt = rnd_int(300);
			k->n_out = rnd_int(SMAX_HIST - 300);
			for (int i = 0; i < k->n_prompt + k->n_out; i++) {
				int u = rnd_int(100);
				/* mostly the likeliest tokens, repeats included, a few invalid ids */
				hist[n_hist + i] = u < 70 ? perm[rnd_int(vocab < 200 ? vocab : 200)]
						   : u < 98 ? rnd_int(vocab)
						   : u == 98 ? -1
							     : vocab;
			}
			n_hist += k->n_prompt + k->n_out;
		}
		dists[r] = dist;
		counts[dist]++;
	}
	memcpy(cpu, x, sizeof(float) * (size_t)n * ld);
	struct samp_scratch sc;
	T_CHECK(samp_scratch_init(&sc, vocab) == 0, "scratch");
	for (int r = 0; r < n; r++) {
		const struct k_samp_row *k = &rows[r];
		want[r] = samp_sample(cpu + (size_t)r * ld, vocab, &ps[r], hist + k->hist_off, k->n_prompt,
				      hist + k->hist_off + k->n_prompt, k->n_out, k->pos, &sc, NULL);
	}
	samp_scratch_free(&sc);

	h2d(d_logits, x, sizeof(float) * (size_t)n * ld);
	h2d(d_rows, rows, sizeof(struct k_samp_row) * n);
	if (n_hist)
		h2d(d_hist, hist, sizeof(int32_t) * n_hist);
	poison(d_out, sizeof(int32_t) * n);
	poison(d_work, sample_workspace_bytes(n, vocab));
	struct k_sample a = {.logits = DP(d_logits), .ld = ld, .vocab = vocab, .n = n, .rows = DP(d_rows),
			     .hist = DP(d_hist), .out = DP(d_out), .work = DP(d_work)};
	int bad = 0;
	if (launched(sample_run(&G, &a), "sample_run") == 0) {
		d2h(out, d_out, sizeof(int32_t) * n);
		d2h(dev, d_logits, sizeof(float) * (size_t)n * ld);
		int lbad = 0;
		for (int r = 0; r < n; r++) {
			const struct samp_params *p = &ps[r];
			if (out[r] != want[r] && bad++ < 8)
				fprintf(stderr,
					"sample vocab %d row %d (%s): got %d want %d; temp %g top_k %d top_p %g min_p %g "
					"rep %g pres %g freq %g hist %d+%d seed %llu pos %llu\n",
					vocab, r, dist_name[dists[r]], out[r], want[r], (double)p->temperature, (int)p->top_k,
					(double)p->top_p, (double)p->min_p, (double)p->repetition_penalty,
					(double)p->presence_penalty, (double)p->frequency_penalty, (int)rows[r].n_prompt,
					(int)rows[r].n_out, (unsigned long long)p->seed, (unsigned long long)rows[r].pos);
			int ldiff = 0;
			for (int i = 0; i < vocab; i++) {
				float g = dev[(size_t)r * ld + i], w = cpu[(size_t)r * ld + i];
				ldiff += memcmp(&g, &w, 4) != 0 && !(g != g && w != w);
			}
			if (ldiff && lbad++ < 3)
				fprintf(stderr, "sample vocab %d row %d: %d in-place logits differ from samp_sample's\n", vocab,
					r, ldiff);
		}
		T_CHECK(lbad == 0, "sample vocab %d: %d rows' in-place logits differ", vocab, lbad);
	} else {
		bad = n;
	}
	*n_rows += n;
	free(x);
	free(cpu);
	free(dev);
	free(rows);
	free(ps);
	free(hist);
	free(out);
	free(want);
	free(perm);
	free(dists);
	return bad;
}

static void test_sample(void)
{
	static const struct {
		int vocab, ld, batches, n, dist; /* dist -1: mixed */
	} cs[] = {
		{640, 640, 4, 256, -1},          {640, 643, 1, 100, -1},          {1001, 1001, 1, 100, -1},
		{32000, 32000, 4, 256, -1},      {152064, 152064, 4, 256, -1},    {640, 640, 1, 200, D_TIES},
		{32000, 32000, 1, 128, D_TIES},  {152064, 152064, 1, 64, D_TIES}, {32000, 32000, 1, 64, D_COARSE},
		{152064, 152064, 1, 64, D_COARSE}, {640, 640, 1, 100, D_SPECIAL}, {152064, 152064, 1, 32, D_SPECIAL},
	};
	int total_rows = 0, total_bad = 0;
	for (size_t c = 0; c < TS_ARRAY_LEN(cs); c++) {
		int rows = 0, bad = 0, counts[D_N] = {0};
		const int batches = quick ? 1 : cs[c].batches;
		const int n = quick ? (cs[c].vocab > 100000 ? 6 : cs[c].vocab > 10000 ? 12 : 30) : cs[c].n;
		for (int b = 0; b < batches; b++)
			bad += sample_batch(cs[c].vocab, cs[c].ld, n, cs[c].dist, 1000 + 10 * c + b, &rows, counts);
		printf("sample   vocab=%-6d ld=%-6d rows %-5d %-9s  mismatches %d\n", cs[c].vocab, cs[c].ld, rows,
		       cs[c].dist < 0 ? "mixed" : dist_name[cs[c].dist], bad);
		T_CHECK(bad == 0, "sample vocab %d: %d of %d rows differ from samp_sample", cs[c].vocab, bad, rows);
		total_rows += rows;
		total_bad += bad;
	}
	printf("sample   total rows %d, mismatches %d\n", total_rows, total_bad);
	if (!quick)
		T_CHECK(total_rows >= 2000, "only %d sampling rows", total_rows);
}

/* ---------------------------------------------------------------- timing */

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* Median over 5 repeats of the per-launch time of `reps` back-to-back
 * launches, after 3 warm-up launches. Microseconds; < 0 on error. */
static double time_us(int (*run)(const void *), const void *arg, int reps)
{
	float ms[5];
	for (int i = 0; i < 3; i++)
		if (run(arg) < 0)
			return -1;
	if (gpu_sync(&G) < 0)
		return -1;
	for (int k = 0; k < 5; k++) {
		if (gpu_time_begin(&G) < 0)
			return -1;
		for (int i = 0; i < reps; i++)
			if (run(arg) < 0)
				return -1;
		if (gpu_time_end(&G, &ms[k]) < 0)
			return -1;
	}
	qsort(ms, 5, sizeof(float), cmp_float);
	return ms[2] * 1e3 / reps;
}

static int run_rms(const void *a)
{
	return rmsnorm_run(&G, a);
}

static int run_rope(const void *a)
{
	return rope_kv_run(&G, a);
}

static int run_argmax(const void *a)
{
	return argmax_run(&G, a);
}

static int run_sample(const void *a)
{
	return sample_run(&G, a);
}

static void report(const char *what, double us, double bytes)
{
	T_CHECK(us > 0, "%s: timing failed", what);
	printf("%-44s %10.2f us %9.1f GB/s\n", what, us, bytes / (us * 1e-6) / 1e9);
}

static void test_timing(void)
{
	const int dim = 4096, Tbig = quick ? 64 : 4096, reps = quick ? 1 : 20;
	printf("# timings on %s (median of 5 x %d launches)\n", G.info.name, reps);
	rng_seed(500);
	/* rmsnorm: x (T, dim) f32 in, out bf16 */
	{
		float *x = xmalloc(sizeof(float) * (size_t)Tbig * dim);
		uint16_t *w = xmalloc(sizeof(uint16_t) * dim);
		for (size_t i = 0; i < (size_t)Tbig * dim; i++)
			x[i] = (float)rnd_normal();
		for (int i = 0; i < dim; i++)
			w[i] = bf((float)(1.0 + 0.1 * rnd_normal()));
		gpu_ptr d_x = take(sizeof(float) * (size_t)Tbig * dim), d_w = take(sizeof(uint16_t) * dim),
			d_o = take(sizeof(uint16_t) * (size_t)Tbig * dim);
		h2d(d_x, x, sizeof(float) * (size_t)Tbig * dim);
		h2d(d_w, w, sizeof(uint16_t) * dim);
		const int Ts[] = {1, Tbig};
		for (int k = 0; k < 2; k++) {
			struct k_rmsnorm a = {.x = DP(d_x), .w = DP(d_w), .out = DP(d_o), .T = Ts[k], .dim = dim, .eps = 1e-5f};
			char name[64];
			snprintf(name, sizeof(name), "rmsnorm T=%d dim=%d", Ts[k], dim);
			report(name, time_us(run_rms, &a, reps), (double)Ts[k] * dim * 6.0 + dim * 2.0);
		}
		free(x);
		free(w);
	}
	/* rope: Llama-3-8B / Qwen3-8B shapes, 32 q heads, 8 kv heads, head_dim 128 */
	{
		const int nh = 32, nkv = 8, hd = 128, W = (nh + 2 * nkv) * hd, bt = 16, mb = Tbig / bt + 1;
		float *qkv = xmalloc(sizeof(float) * (size_t)Tbig * W), inv[64];
		int32_t *pos = xmalloc(sizeof(int32_t) * Tbig), *seq = xmalloc(sizeof(int32_t) * Tbig),
			*blk = xmalloc(sizeof(int32_t) * mb);
		uint16_t nw[128];
		for (size_t i = 0; i < (size_t)Tbig * W; i++)
			qkv[i] = (float)rnd_normal();
		for (int t = 0; t < Tbig; t++) {
			pos[t] = t;
			seq[t] = 0;
		}
		for (int i = 0; i < mb; i++)
			blk[i] = i;
		for (int i = 0; i < 64; i++)
			inv[i] = 1.0f / fm_powf(1e6f, (float)(2 * i) / 128.0f);
		for (int i = 0; i < 128; i++)
			nw[i] = bf(1.0f);
		gpu_ptr d_qkv = take(sizeof(float) * (size_t)Tbig * W), d_q = take(sizeof(uint16_t) * (size_t)Tbig * nh * hd),
			d_kc = take(sizeof(uint16_t) * (size_t)mb * bt * nkv * hd),
			d_vc = take(sizeof(uint16_t) * (size_t)mb * bt * nkv * hd), d_pos = take(sizeof(int32_t) * Tbig),
			d_seq = take(sizeof(int32_t) * Tbig), d_blk = take(sizeof(int32_t) * mb),
			d_inv = take(sizeof(inv)), d_nw = take(sizeof(nw));
		h2d(d_qkv, qkv, sizeof(float) * (size_t)Tbig * W);
		h2d(d_pos, pos, sizeof(int32_t) * Tbig);
		h2d(d_seq, seq, sizeof(int32_t) * Tbig);
		h2d(d_blk, blk, sizeof(int32_t) * mb);
		h2d(d_inv, inv, sizeof(inv));
		h2d(d_nw, nw, sizeof(nw));
		const int Ts[] = {1, Tbig};
		for (int k = 0; k < 2; k++)
			for (int norm = 0; norm < 2; norm++) {
				struct k_rope_kv a = {
					.qkv = DP(d_qkv), .q = DP(d_q), .kc = DP(d_kc), .vc = DP(d_vc), .pos = DP(d_pos),
					.seq = DP(d_seq), .blocks = DP(d_blk), .q_norm = norm ? DP(d_nw) : NULL,
					.k_norm = norm ? DP(d_nw) : NULL, .inv_freq = DP(d_inv), .T = Ts[k], .n_heads = nh,
					.n_kv_heads = nkv, .head_dim = hd, .block_tokens = bt, .max_blocks = mb, .eps = 1e-6f,
				};
				char name[64];
				snprintf(name, sizeof(name), "rope_kv T=%d heads=%d/%d hd=%d%s", Ts[k], nh, nkv, hd,
					 norm ? " qk_norm" : "");
				report(name, time_us(run_rope, &a, reps), (double)Ts[k] * W * 6.0);
			}
		free(qkv);
		free(pos);
		free(seq);
		free(blk);
	}
	/* argmax and sample over vocab 152064 (temperature 1: the in-place update is
	 * the identity, so repeated launches see the same logits) */
	{
		const int vocab = quick ? 32000 : 152064, nmax = quick ? 4 : SMAX_ROWS;
		float *x = xmalloc(sizeof(float) * (size_t)nmax * vocab);
		int32_t *perm = xmalloc(sizeof(int32_t) * vocab);
		struct k_samp_row *rows = xmalloc(sizeof(struct k_samp_row) * nmax);
		for (int r = 0; r < nmax; r++) {
			sample_logits(x + (size_t)r * vocab, vocab, D_PEAKED, perm);
			memset(&rows[r], 0, sizeof(rows[r]));
			rows[r].temperature = 1.0f;
			rows[r].top_p = 0.9f;
			rows[r].top_k = r % 2 ? 50 : 0;
			rows[r].min_p = 0.0f;
			rows[r].repetition_penalty = 1.0f;
			rows[r].seed = (uint64_t)r;
			rows[r].pos = 7;
		}
		h2d(d_logits, x, sizeof(float) * (size_t)nmax * vocab);
		h2d(d_rows, rows, sizeof(struct k_samp_row) * nmax);
		const int ns[] = {1, nmax};
		for (int k = 0; k < 2; k++) {
			struct k_sample a = {.logits = DP(d_logits), .ld = vocab, .vocab = vocab, .n = ns[k], .rows = DP(d_rows),
					     .hist = DP(d_hist), .out = DP(d_out), .work = DP(d_work)};
			char name[64];
			snprintf(name, sizeof(name), "argmax n=%d vocab=%d", ns[k], vocab);
			report(name, time_us(run_argmax, &a, reps), (double)ns[k] * vocab * 4.0);
			snprintf(name, sizeof(name), "sample n=%d vocab=%d top_p .9 (top_k 50)", ns[k], vocab);
			report(name, time_us(run_sample, &a, reps), (double)ns[k] * vocab * 4.0);
		}
		free(x);
		free(perm);
		free(rows);
	}
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	struct ts_err e = {0};
	for (int i = 1; i < argc; i++) {
		quick |= !strcmp(argv[i], "-q");
		no_timing |= !strcmp(argv[i], "-c");
	}
	if (gpu_open(&G, 0, &e) < 0) {
		fprintf(stderr, "k_elem: %s\n", e.msg);
		T_CHECK(0, "gpu_open");
		return T_DONE();
	}
	if (gpu_arena_init(&G, (uint64_t)1400 << 20, &e) < 0) {
		fprintf(stderr, "k_elem: %s\n", e.msg);
		T_CHECK(0, "gpu_arena_init");
		return T_DONE();
	}
	printf("# k_elem on %s (sm_%d%d, %d SMs)%s\n", G.info.name, G.info.cc_major, G.info.cc_minor, G.info.n_sm,
	       quick ? " quick" : "");
	samp_buffers();
	T_CHECK(sample_prepare(&G) == 0, "sample_prepare");
	test_embed();
	test_rmsnorm();
	test_rope();
	test_argmax();
	test_sample();
	if (!no_timing)
		test_timing();
	gpu_close(&G);
	return T_DONE();
}
