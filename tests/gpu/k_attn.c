/* k_attn: device test and benchmark of the attention kernels (kernels/attn.cu)
 * through their launcher (src/gpu_attn.c) and the driver API (src/gpu.h).
 *
 * Checks, for every shape (head_dim 64, 96, 128 and 256, each with GQA groups
 * 1 to 8, window 0 and 16; the Llama shapes 32/8, 4/2, 1/1 and a few odd
 * groups up to 64; block_tokens 8, 16, 32): fresh random q and a
 * random paged cache behind shuffled block tables, one mixed batch (prefill
 * from 0, chunks over a cached prefix, decode tokens; lengths 1 to 4096) with
 * the sequences' runs interleaved, the output poisoned with a different NaN
 * pattern before every run, and four runs: decode for every token, prefill for
 * every token, the engine's split (decode list + prefill list), prefill over a
 * shuffled token list. Each against a float64 CPU reference from the same bf16
 * values: ||out - ref|| / ||ref|| < 1e-2, every element written (finite), and
 * decode and prefill agree. Head sizes outside ATTN_HEAD_DIMS are refused.
 * Then times decode and one 4096-token prefill at Llama-8B dims (head_dim
 * 128), and again at head_dim 256 (16 / 2 heads, Qwen3-Next-like) and 96
 * (32 / 8 heads) (CUDA graph replays over rotating block tables, so small
 * caches do not sit in L2).
 *
 * Usage: k_attn [--quick] [--no-bench] [--bench-only].
 * Last line "# k_attn: pass=N fail=M".
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../t.h"
#include "gpu.h"
#define KTEST "k_attn"
#include "kutil.h"
#include "gpu_attn.h"


static struct gpu gg;

/* ------------------------------------------------------------ helpers */

static double rng_unit(void)
{
	return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static float rng_normal(void)
{
	double u = rng_unit() + 1e-300, v = rng_unit();
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void shuffle_i32(int32_t *a, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(rng_next() % (uint64_t)(i + 1));
		int32_t x = a[i];
		a[i] = a[j];
		a[j] = x;
	}
}

static void fill_normal_bf16(uint16_t *p, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		p[i] = ts_f32_to_bf16(rng_normal() * scale);
}

static int is_finite_bf16(uint16_t h)
{
	return (h & 0x7f80u) != 0x7f80u;
}

/* ------------------------------------------------------------ reference */

struct ref_job {
	int T, H, KVH, hd, bt, max_blocks, window;
	float scale;
	const uint16_t *q, *kc, *vc;
	const int32_t *pos, *seq, *blocks;
	double *out;
	int nth, id;
};

static void *ref_worker(void *arg)
{
	const struct ref_job *j = arg;
	const int G = j->H / j->KVH, kv_dim = j->KVH * j->hd;
	double *sc = malloc(sizeof(double) * 4096 * (size_t)G);
	double *qd = malloc(sizeof(double) * (size_t)j->hd * (size_t)G);
	for (int t = j->id; t < j->T; t += j->nth) {
		const int p = j->pos[t], lo = j->window > 0 ? (p - j->window + 1 > 0 ? p - j->window + 1 : 0) : 0;
		const int32_t *bl = j->blocks + (size_t)j->seq[t] * (size_t)j->max_blocks;
		for (int kvh = 0; kvh < j->KVH; kvh++) {
			for (int g = 0; g < G; g++)
				for (int d = 0; d < j->hd; d++)
					qd[g * j->hd + d] = ts_bf16_to_f32(
						j->q[((size_t)t * j->H + (size_t)(kvh * G + g)) * (size_t)j->hd + (size_t)d]);
			double mx[64];
			for (int g = 0; g < G; g++)
				mx[g] = -1e300;
			for (int k = lo; k <= p; k++) {
				const uint16_t *kr = j->kc + ((size_t)bl[k / j->bt] * (size_t)j->bt + (size_t)(k % j->bt)) *
								     (size_t)kv_dim +
						     (size_t)kvh * (size_t)j->hd;
				for (int g = 0; g < G; g++) {
					double s = 0;
					for (int d = 0; d < j->hd; d++)
						s += qd[g * j->hd + d] * ts_bf16_to_f32(kr[d]);
					s *= j->scale;
					sc[(size_t)(k - lo) * (size_t)G + (size_t)g] = s;
					if (s > mx[g])
						mx[g] = s;
				}
			}
			double sum[64] = {0};
			for (int k = lo; k <= p; k++)
				for (int g = 0; g < G; g++) {
					double e = exp(sc[(size_t)(k - lo) * (size_t)G + (size_t)g] - mx[g]);
					sc[(size_t)(k - lo) * (size_t)G + (size_t)g] = e;
					sum[g] += e;
				}
			for (int g = 0; g < G; g++) {
				double *o = j->out + ((size_t)t * j->H + (size_t)(kvh * G + g)) * (size_t)j->hd;
				for (int d = 0; d < j->hd; d++)
					o[d] = 0;
			}
			for (int k = lo; k <= p; k++) {
				const uint16_t *vr = j->vc + ((size_t)bl[k / j->bt] * (size_t)j->bt + (size_t)(k % j->bt)) *
								     (size_t)kv_dim +
						     (size_t)kvh * (size_t)j->hd;
				for (int g = 0; g < G; g++) {
					double w = sc[(size_t)(k - lo) * (size_t)G + (size_t)g] / sum[g];
					double *o = j->out + ((size_t)t * j->H + (size_t)(kvh * G + g)) * (size_t)j->hd;
					for (int d = 0; d < j->hd; d++)
						o[d] += w * ts_bf16_to_f32(vr[d]);
				}
			}
		}
	}
	free(sc);
	free(qd);
	return NULL;
}

static void reference(const struct ref_job *proto)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	int nth = n < 1 ? 1 : n > 32 ? 32 : (int)n;
	pthread_t th[32];
	struct ref_job jobs[32];
	for (int i = 0; i < nth; i++) {
		jobs[i] = *proto;
		jobs[i].nth = nth;
		jobs[i].id = i;
		pthread_create(&th[i], NULL, ref_worker, &jobs[i]);
	}
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
}

/* ||out - ref|| / ||ref|| and the count of non-finite (unwritten) outputs;
 * on failure names the worst (token, head). */
static double compare(const char *what, const uint16_t *out, const double *ref, int T, int H, int hd,
		      const int32_t *pos, const int32_t *seq)
{
	double num = 0, den = 0, worst = -1;
	size_t bad = 0;
	int wt = 0, wh = 0;
	for (int t = 0; t < T; t++)
		for (int h = 0; h < H; h++) {
			double n2 = 0, d2 = 0;
			for (int d = 0; d < hd; d++) {
				size_t i = ((size_t)t * H + (size_t)h) * (size_t)hd + (size_t)d;
				if (!is_finite_bf16(out[i])) {
					bad++;
					n2 += 1e30;
					continue;
				}
				double e = ts_bf16_to_f32(out[i]) - ref[i];
				n2 += e * e;
				d2 += ref[i] * ref[i];
			}
			num += n2;
			den += d2;
			double r = sqrt(n2 / (d2 > 1e-300 ? d2 : 1e-300));
			if (r > worst) {
				worst = r;
				wt = t;
				wh = h;
			}
		}
	double rel = bad ? INFINITY : sqrt(num / den);
	T_CHECK(bad == 0, "%s: %zu outputs not written or not finite", what, bad);
	T_CHECK(rel < 1e-2, "%s: rel err %.3g", what, rel);
	if (bad || !(rel < 1e-2))
		fprintf(stderr, "  %s: worst token %d (seq %d pos %d) head %d: rel %.3g\n", what, wt, seq[wt],
			pos[wt], wh, worst);
	return rel;
}

/* ------------------------------------------------------------ correctness */

struct shape {
	int H, KVH, hd, window, bt;
	float qscale;
};

/* The batch, in this order: each sequence's run [start, len) is contiguous. */
static const struct {
	int len, start;
} seqs[] = {
	{4096, 4096 - 70}, {17, 16}, {15, 0}, {4096, 4095}, {300, 0},
	{1, 0},            {16, 5},  {300, 299}, {17, 0},  {16, 15},
};
#define N_SEQS ((int)TS_ARRAY_LEN(seqs))

static int run_case(const struct shape *sh, int quick)
{
	const int H = sh->H, KVH = sh->KVH, hd = sh->hd, bt = sh->bt, kv_dim = KVH * hd;
	const int max_blocks = (4096 + bt - 1) / bt;
	int T = 0, n_used = 0;
	for (int s = 0; s < N_SEQS; s++) {
		int len = quick && seqs[s].len > 300 ? 600 : seqs[s].len;
		int start = seqs[s].start - (seqs[s].len - len);
		T += len - start;
		n_used += (len + bt - 1) / bt;
	}
	const int n_blocks = n_used + 7;
	int32_t *pos = malloc(sizeof(int32_t) * (size_t)T), *sq = malloc(sizeof(int32_t) * (size_t)T);
	int32_t *blocks = malloc(sizeof(int32_t) * (size_t)N_SEQS * (size_t)max_blocks);
	int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_blocks);
	int32_t *dec = malloc(sizeof(int32_t) * (size_t)T), *pre = malloc(sizeof(int32_t) * (size_t)T);
	int32_t *shuf = malloc(sizeof(int32_t) * (size_t)T);
	int n_dec = 0, n_pre = 0;
	for (int i = 0; i < n_blocks; i++)
		perm[i] = i;
	shuffle_i32(perm, n_blocks);
	for (int i = 0; i < N_SEQS * max_blocks; i++)
		blocks[i] = -1;
	int t = 0, nb = 0;
	for (int s = 0; s < N_SEQS; s++) {
		int len = quick && seqs[s].len > 300 ? 600 : seqs[s].len;
		int start = seqs[s].start - (seqs[s].len - len);
		for (int b = 0; b < (len + bt - 1) / bt; b++)
			blocks[s * max_blocks + b] = perm[nb++];
		for (int p = start; p < len; p++, t++) {
			pos[t] = p;
			sq[t] = s;
			shuf[t] = t;
			if (len - start == 1)
				dec[n_dec++] = t;
			else
				pre[n_pre++] = t;
		}
	}
	shuffle_i32(shuf, T);

	const size_t nq = (size_t)T * (size_t)H * (size_t)hd, nkv = (size_t)n_blocks * (size_t)bt * (size_t)kv_dim;
	uint16_t *q = malloc(nq * 2), *kc = malloc(nkv * 2), *vc = malloc(nkv * 2);
	uint16_t *out[4];
	for (int i = 0; i < 4; i++)
		out[i] = malloc(nq * 2);
	double *ref = malloc(nq * sizeof(double));
	fill_normal_bf16(q, nq, sh->qscale);
	fill_normal_bf16(kc, nkv, 1.0f);
	fill_normal_bf16(vc, nkv, 1.0f);
	const float scale = 1.0f / sqrtf((float)hd);

	struct ref_job rj = {T, H, KVH, hd, bt, max_blocks, sh->window, scale, q, kc, vc, pos, sq, blocks, ref, 1, 0};
	reference(&rj);

	dv_off = 0;
	const uint64_t ws = attn_workspace_bytes(T, H, hd, gg.info.n_sm);
	gpu_ptr d_q = dv_take(nq * 2), d_k = dv_take(nkv * 2), d_v = dv_take(nkv * 2), d_out = dv_take(nq * 2);
	gpu_ptr d_pos = dv_take((size_t)T * 4), d_seq = dv_take((size_t)T * 4);
	gpu_ptr d_bl = dv_take((size_t)N_SEQS * (size_t)max_blocks * 4);
	gpu_ptr d_dec = dv_take((size_t)T * 4), d_pre = dv_take((size_t)T * 4), d_shuf = dv_take((size_t)T * 4);
	gpu_ptr d_ws = ws ? dv_take(ws) : 0;
	int good = ok(gpu_h2d(&gg, d_q, q, nq * 2), "h2d q") && ok(gpu_h2d(&gg, d_k, kc, nkv * 2), "h2d k") &&
		   ok(gpu_h2d(&gg, d_v, vc, nkv * 2), "h2d v") && ok(gpu_h2d(&gg, d_pos, pos, (size_t)T * 4), "h2d") &&
		   ok(gpu_h2d(&gg, d_seq, sq, (size_t)T * 4), "h2d") &&
		   ok(gpu_h2d(&gg, d_bl, blocks, (size_t)N_SEQS * (size_t)max_blocks * 4), "h2d") &&
		   ok(gpu_h2d(&gg, d_dec, dec, (size_t)T * 4), "h2d") &&
		   ok(gpu_h2d(&gg, d_pre, pre, (size_t)T * 4), "h2d") &&
		   ok(gpu_h2d(&gg, d_shuf, shuf, (size_t)T * 4), "h2d");

	struct k_attn a = {
		.q = (const ts_bf16 *)(uintptr_t)d_q,
		.kc = (const ts_bf16 *)(uintptr_t)d_k,
		.vc = (const ts_bf16 *)(uintptr_t)d_v,
		.pos = (const int32_t *)(uintptr_t)d_pos,
		.seq = (const int32_t *)(uintptr_t)d_seq,
		.blocks = (const int32_t *)(uintptr_t)d_bl,
		.out = (ts_bf16 *)(uintptr_t)d_out,
		.T = T,
		.n_heads = H,
		.n_kv_heads = KVH,
		.head_dim = hd,
		.block_tokens = bt,
		.max_blocks = max_blocks,
		.window = sh->window,
		.scale = scale,
	};
	static const uint32_t poison[4] = {0xffffffffu, 0x7fc17fc1u, 0xffc0ffc0u, 0xff81ff81u};
	static const char *const names[4] = {"decode", "prefill", "mixed", "prefill-shuffled"};
	for (int r = 0; r < 4 && good; r++) {
		good = ok(gpu_memset32(&gg, d_out, poison[r], nq / 2), "poison out") &&
		       (!ws || ok(gpu_memset32(&gg, d_ws, 0x7fc00000u, ws / 4), "poison ws"));
		struct k_attn b = a;
		if (r == 0)
			good = good && ok(attn_run(&gg, &b, d_ws, ATTN_DECODE), "attn_run decode");
		if (r == 1)
			good = good && ok(attn_run(&gg, &b, d_ws, ATTN_PREFILL), "attn_run prefill");
		if (r == 2) {
			b.tok = (const int32_t *)(uintptr_t)d_dec;
			b.n_tok = n_dec;
			good = good && ok(attn_run(&gg, &b, d_ws, ATTN_DECODE), "attn_run mixed decode");
			b.tok = (const int32_t *)(uintptr_t)d_pre;
			b.n_tok = n_pre;
			good = good && ok(attn_run(&gg, &b, d_ws, ATTN_PREFILL), "attn_run mixed prefill");
		}
		if (r == 3) {
			b.tok = (const int32_t *)(uintptr_t)d_shuf;
			b.n_tok = T;
			good = good && ok(attn_run(&gg, &b, d_ws, ATTN_PREFILL), "attn_run shuffled prefill");
		}
		good = good && ok(gpu_d2h(&gg, out[r], d_out, nq * 2), "d2h out") && ok(gpu_sync(&gg), "sync");
	}
	T_CHECK(good, "H=%d/%d hd=%d: device calls failed", H, KVH, hd);
	if (good) {
		char what[160];
		double rel[4];
		for (int r = 0; r < 4; r++) {
			snprintf(what, sizeof(what), "H=%d/%d hd=%d win=%d bt=%d %s", H, KVH, hd, sh->window, bt, names[r]);
			rel[r] = compare(what, out[r], ref, T, H, hd, pos, sq);
		}
		double num = 0, den = 0;
		for (size_t i = 0; i < nq; i++) {
			double e = (double)ts_bf16_to_f32(out[0][i]) - ts_bf16_to_f32(out[1][i]);
			num += e * e;
			den += ref[i] * ref[i];
		}
		double dvp = sqrt(num / den);
		T_CHECK(dvp < 1e-2, "H=%d/%d hd=%d win=%d: decode and prefill differ by %.3g", H, KVH, hd, sh->window,
			dvp);
		printf("  H=%2d/%-2d hd=%3d win=%2d bt=%2d T=%4d splits=%2d/%2d  rel: decode %.2e prefill %.2e mixed "
		       "%.2e shuffled %.2e  dec-vs-pre %.2e\n",
		       H, KVH, hd, sh->window, bt, T, attn_decode_splits(T, H, KVH, gg.info.n_sm),
		       attn_decode_splits(n_dec, H, KVH, gg.info.n_sm), rel[0], rel[1], rel[2], rel[3], dvp);
	}
	free(pos);
	free(sq);
	free(blocks);
	free(perm);
	free(dec);
	free(pre);
	free(shuf);
	free(q);
	free(kc);
	free(vc);
	for (int i = 0; i < 4; i++)
		free(out[i]);
	free(ref);
	return good;
}

static void check_rejects(void)
{
	static const int good[] = {64, 96, 128, 256}, bad[] = {0, 32, 80, 112, 160, 192, 512};
	for (size_t i = 0; i < TS_ARRAY_LEN(good); i++)
		T_CHECK(attn_head_dim_supported(good[i]), "head_dim %d not supported", good[i]);
	for (size_t i = 0; i < TS_ARRAY_LEN(bad); i++) {
		T_CHECK(!attn_head_dim_supported(bad[i]), "head_dim %d supported", bad[i]);
		struct k_attn a = {.T = 1, .n_heads = 8, .n_kv_heads = 2, .head_dim = bad[i], .block_tokens = 16,
				   .max_blocks = 1};
		T_CHECK(attn_run(&gg, &a, 0, ATTN_DECODE) == -E_UNSUPPORTED, "head_dim %d accepted", bad[i]);
	}
	struct k_attn a = {.T = 1, .n_heads = 8, .n_kv_heads = 3, .head_dim = 128, .block_tokens = 16, .max_blocks = 1};
	T_CHECK(attn_run(&gg, &a, 0, ATTN_PREFILL) == -E_INVAL, "8 heads over 3 kv heads accepted");
}

/* ------------------------------------------------------------ bench */

static void bench(int H, int KVH, int hd)
{
	const int bt = 16, kv_dim = KVH * hd, max_blocks = 4096 / bt;
	const int pool_blocks = 64 * 4096 / bt, max_T = 4096;
	const size_t pool = (size_t)pool_blocks * bt * kv_dim;
	dv_off = 0;
	gpu_ptr d_k = dv_take(pool * 2), d_v = dv_take(pool * 2);
	const double floor_gbs = copy_floor_now(&gg, d_k, d_v, pool * 2 < ((size_t)256 << 20) ? pool * 2 : (size_t)256 << 20);
	T_CHECK(floor_gbs > 0, "copy floor: the copy failed");
	gpu_ptr d_q = dv_take((size_t)max_T * H * hd * 2), d_out = dv_take((size_t)max_T * H * hd * 2);
	gpu_ptr d_tab = dv_take((size_t)pool_blocks * 4), d_pos = dv_take((size_t)max_T * 4);
	gpu_ptr d_seq = dv_take((size_t)max_T * 4);
	const uint64_t ws = attn_workspace_bytes(64, H, hd, gg.info.n_sm);
	gpu_ptr d_ws = ws ? dv_take(ws) : 0;

	/* random cache: one 32 MiB random piece copied over the pool */
	const size_t piece = (size_t)16 << 20;
	uint16_t *h = malloc(piece * 2);
	fill_normal_bf16(h, piece, 1.0f);
	int good = 1;
	for (size_t off = 0; off < pool && good; off += piece) {
		size_t n = pool - off < piece ? pool - off : piece;
		good = ok(gpu_h2d(&gg, d_k + off * 2, h, n * 2), "h2d k") &&
		       ok(gpu_h2d(&gg, d_v + off * 2, h + (piece - n) / 2, n * 2), "h2d v");
	}
	uint16_t *hq = malloc((size_t)max_T * H * hd * 2);
	fill_normal_bf16(hq, (size_t)max_T * H * hd, 1.0f);
	int32_t *tab = malloc(sizeof(int32_t) * (size_t)pool_blocks), *pos = malloc(sizeof(int32_t) * max_T);
	int32_t *sq = malloc(sizeof(int32_t) * max_T);
	for (int i = 0; i < pool_blocks; i++)
		tab[i] = i;
	shuffle_i32(tab, pool_blocks);
	good = good && ok(gpu_h2d(&gg, d_q, hq, (size_t)max_T * H * hd * 2), "h2d q") &&
	       ok(gpu_h2d(&gg, d_tab, tab, (size_t)pool_blocks * 4), "h2d tables") && ok(gpu_sync(&gg), "sync");
	T_CHECK(good, "bench setup failed");
	if (!good)
		goto out;

	struct k_attn a = {
		.q = (const ts_bf16 *)(uintptr_t)d_q,
		.kc = (const ts_bf16 *)(uintptr_t)d_k,
		.vc = (const ts_bf16 *)(uintptr_t)d_v,
		.pos = (const int32_t *)(uintptr_t)d_pos,
		.seq = (const int32_t *)(uintptr_t)d_seq,
		.out = (ts_bf16 *)(uintptr_t)d_out,
		.n_heads = H,
		.n_kv_heads = KVH,
		.head_dim = hd,
		.block_tokens = bt,
		.max_blocks = max_blocks,
		.scale = 1.0f / sqrtf((float)hd),
	};
	printf("# decode: %s, %d q heads, %d kv heads, head_dim %d, block 16, bf16 KV\n", gg.info.name, H, KVH, hd);
	printf("# floor: %.0f GB/s device-to-device copy, measured now (%.0f on the H100 of 2026-11-27)\n", floor_gbs,
	       COPY_FLOOR_GBS);
	printf("  batch   ctx  splits  sets   us/step    KV MB     GB/s  %%floor\n");
	static const int batches[] = {1, 8, 32, 64}, ctxs[] = {512, 4096};
	for (int ci = 0; ci < 2; ci++)
		for (int bi = 0; bi < 4; bi++) {
			const int B = batches[bi], C = ctxs[ci], nbs = C / bt;
			int sets = pool_blocks / (B * nbs);
			sets = sets > 32 ? 32 : sets;
			for (int i = 0; i < B; i++) {
				pos[i] = C - 1;
				sq[i] = i;
			}
			/* set s, sequence b: blocks tab[(s * B + b) * nbs ...], read as rows of a
			 * (sets * B, nbs) table; max_blocks = nbs here */
			good = ok(gpu_h2d(&gg, d_pos, pos, (size_t)B * 4), "h2d") &&
			       ok(gpu_h2d(&gg, d_seq, sq, (size_t)B * 4), "h2d") && ok(gpu_sync(&gg), "sync");
			struct k_attn b = a;
			b.T = B;
			b.max_blocks = nbs;
			gpu_graph x = NULL;
			good = good && ok(gpu_capture_begin(&gg), "capture");
			for (int s = 0; s < sets && good; s++) {
				b.blocks = (const int32_t *)(uintptr_t)(d_tab + (size_t)s * B * nbs * 4);
				good = ok(attn_run(&gg, &b, d_ws, ATTN_DECODE), "attn_run");
			}
			good = ok(gpu_capture_end(&gg, &x), "capture end") && good;
			float ms = good ? time_graph(&gg, x, 9) : -1;
			if (x)
				gpu_graph_free(&gg, x);
			T_CHECK(good && ms > 0, "decode bench B=%d ctx=%d failed", B, C);
			size_t n_out = (size_t)B * H * hd, n_bad = 0;
			good = good && ok(gpu_d2h(&gg, hq, d_out, n_out * 2), "d2h") && ok(gpu_sync(&gg), "sync");
			for (size_t i = 0; good && i < n_out; i++)
				n_bad += !is_finite_bf16(hq[i]);
			T_CHECK(good && n_bad == 0, "decode bench B=%d ctx=%d: %zu outputs not finite", B, C, n_bad);
			if (!(good && ms > 0))
				continue;
			double us = ms * 1e3 / sets, bytes = (double)B * C * kv_dim * 2 * 2;
			printf("  %5d %5d  %6d  %4d  %8.2f  %7.1f  %7.0f  %5.1f%%\n", B, C,
			       attn_decode_splits(B, H, KVH, gg.info.n_sm), sets, us, bytes / 1e6, bytes / us / 1e3,
			       100.0 * bytes / us / 1e3 / floor_gbs);
		}

	/* one 4096-token prefill from position 0 */
	for (int i = 0; i < max_T; i++) {
		pos[i] = i;
		sq[i] = 0;
	}
	good = ok(gpu_h2d(&gg, d_pos, pos, (size_t)max_T * 4), "h2d") &&
	       ok(gpu_h2d(&gg, d_seq, sq, (size_t)max_T * 4), "h2d") && ok(gpu_sync(&gg), "sync");
	struct k_attn p = a;
	p.T = max_T;
	p.blocks = (const int32_t *)(uintptr_t)d_tab;
	gpu_graph x = NULL;
	good = good && ok(gpu_capture_begin(&gg), "capture");
	for (int i = 0; i < 3 && good; i++)
		good = ok(attn_run(&gg, &p, d_ws, ATTN_PREFILL), "attn_run prefill");
	good = ok(gpu_capture_end(&gg, &x), "capture end") && good;
	float ms = good ? time_graph(&gg, x, 5) / 3 : -1;
	if (x)
		gpu_graph_free(&gg, x);
	T_CHECK(good && ms > 0, "prefill bench failed");
	if (good && ms > 0) {
		double flop = 4.0 * H * hd * ((double)max_T * (max_T + 1) / 2);
		printf("# prefill: one sequence of %d tokens from position 0, head_dim %d: %.3f ms, %.1f TFLOP/s "
		       "(%.1f%% of the %.0f TFLOP/s cuBLAS GEMM floor)\n",
		       max_T, hd, ms, flop / ms / 1e9, 100.0 * flop / ms / 1e9 / GEMM_FLOOR_TFS, GEMM_FLOOR_TFS);
	}
out:
	free(h);
	free(hq);
	free(tab);
	free(pos);
	free(sq);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	int quick = 0, no_bench = 0, bench_only = 0;
	for (int i = 1; i < argc; i++) {
		quick |= !strcmp(argv[i], "--quick");
		no_bench |= !strcmp(argv[i], "--no-bench");
		bench_only |= !strcmp(argv[i], "--bench-only");
	}
	struct ts_err e = {0};
	if (gpu_open(&gg, 0, &e)) {
		fprintf(stderr, "k_attn: no device: %s\n", e.msg);
		T_CHECK(0, "gpu_open: %s", e.msg);
		return T_DONE();
	}
	const uint64_t region = (uint64_t)1400 << 20;
	if (!ok(gpu_arena_init(&gg, region + ((uint64_t)16 << 20), &e), "gpu_arena_init") ||
	    !ok(attn_init(&gg), "attn_init")) {
		T_CHECK(0, "setup: %s", e.msg);
		return T_DONE();
	}
	dv_base = gpu_arena_take(&gg, region);
	dv_cap = region;
	T_CHECK(dv_base != 0, "arena take");
	printf("# k_attn on %s (%d SMs)\n", gg.info.name, gg.info.n_sm);

	static const struct shape shapes[] = {
		{32, 8, 128, 0, 16, 2.0f}, {32, 8, 128, 16, 16, 2.0f}, {32, 8, 64, 0, 16, 2.0f},
		{32, 8, 64, 16, 16, 2.0f}, {4, 2, 128, 0, 16, 3.0f},   {4, 2, 128, 16, 16, 1.0f},
		{4, 2, 64, 0, 16, 1.0f},   {4, 2, 64, 16, 16, 3.0f},   {1, 1, 128, 0, 16, 2.0f},
		{1, 1, 128, 16, 16, 2.0f}, {1, 1, 64, 0, 16, 2.0f},    {1, 1, 64, 16, 16, 2.0f},
		{28, 4, 128, 0, 32, 2.0f}, {64, 2, 64, 0, 8, 2.0f},    {64, 1, 128, 16, 16, 2.0f},
	};
	check_rejects();
	for (int i = 0; i < (int)TS_ARRAY_LEN(shapes) && !bench_only; i++) {
		if (quick && i % 3)
			continue;
		run_case(&shapes[i], quick);
		fflush(stdout);
	}
	/* every head size x GQA group 1..8 x window: kv heads 1, 2 or 3, block
	 * sizes and q scales rotating so each size meets each of them */
	static const int hds[] = {64, 96, 128, 256}, bts[] = {16, 8, 32};
	static const float qs[] = {2.0f, 1.0f, 3.0f};
	int n = 0;
	for (int hi = 0; hi < (int)TS_ARRAY_LEN(hds) && !bench_only; hi++)
		for (int G = 1; G <= 8; G++)
			for (int w = 0; w < 2; w++, n++) {
				if (quick && n % 3)
					continue;
				const int kvh = 1 + (G + w + hi) % 3;
				const struct shape sh = {G * kvh, kvh, hds[hi], w ? 16 : 0, bts[n % 3], qs[(n / 3) % 3]};
				run_case(&sh, quick);
				fflush(stdout);
			}
	if (!no_bench && !quick) {
		bench(32, 8, 128); /* Llama-8B */
		bench(16, 2, 256);
		bench(32, 8, 96);
	}
	gpu_close(&gg);
	return T_DONE();
}
