/* k_moe: device test and benchmark of the mixture-of-experts kernels
 * (kernels/moe.cu) through their launchers (src/gpu_moe.c) and the driver
 * API (src/gpu.h).
 *
 * Checks, every output poisoned (NaN or invalid-index patterns) before each
 * run, inputs fresh random:
 *   route     ten router families and edges (Qwen3-MoE with and without
 *             norm_topk_prob, Mixtral, a 512-expert top-10, DeepSeek-V2 greedy
 *             and group_limited_greedy, DeepSeek-V3 sigmoid + bias + top-2
 *             groups with and without renorm, 1024 experts top-64, 32 groups):
 *             logits on a coarse grid (exact ties on purpose, plus tokens of
 *             all-equal logits) against a CPU reference: ids equal (a token
 *             whose choice hangs on two different inputs within 2e-6 of each
 *             other is counted, not failed, and must stay under 2%), weights
 *             within 1e-5 of the reference's for the same ids.
 *   plan      uniform, skewed and one-set routings, T from 1 to 4096, E 8,
 *             128, 1024: counts, offsets, the sorted list (by expert, then
 *             entry), its inverse, the tile table and its bound.
 *   experts   whole layers (route, plan, gate_up, down, combine; with and
 *             without a gated shared expert; dims with tails) against a
 *             float64 reference from the same bf16 values and the device's
 *             routing (h rounded to bf16 as the kernel stores it): normwise
 *             relative error of the residual update under 2e-3, all finite;
 *             with every weight of the experts no token hit set to NaN the
 *             result is bitwise the same.
 *   batch     one token's output (and routing) is bitwise equal whether it
 *             runs alone, among 36, 100 or 300 others, or with 63 copies of
 *             itself: every tile size (8, 16, 32, 64 tokens) is crossed.
 *   rejects   bad shapes and fields give -E_INVAL.
 * Then times Qwen3-30B-A3B-shaped layers (E 128, top-8, dim 2048, expert
 * width 768) at T = 1, 8, 32, 64 and 4096, and a Mixtral-8x7B-shaped one at
 * T = 1, against the copy floor (bytes of the experts hit) and the GEMM
 * floor.
 *
 * Usage: k_moe [--quick] [--no-bench] [--bench-only].
 * Last line "# k_moe: pass=N fail=M".
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../t.h"
#include "gpu.h"
#define KTEST "k_moe"
#include "kutil.h"
#include "gpu_gemm.h"
#include "gpu_moe.h"

static struct gpu gg;
static int quick;

/* ------------------------------------------------------------ helpers */

static double rng_unit(void)
{
	return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static int rng_int(int n)
{
	return (int)(rng_next() % (uint64_t)n);
}

static float rng_sym(void)
{
	return (float)(2.0 * rng_unit() - 1.0);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "k_moe: out of host memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

#define DP(x) ((void *)(uintptr_t)(x))

static void fill_bf16(uint16_t *p, size_t n, float scale)
{
	for (size_t i = 0; i < n; i++)
		p[i] = ts_f32_to_bf16(rng_sym() * scale);
}

static float bf(uint16_t h)
{
	return ts_bf16_to_f32(h);
}

/* Runs fn(i) for i in [0, n) on the host's cores. */
struct pfor {
	void (*fn)(void *ctx, int i);
	void *ctx;
	int n, nth, id;
};

static void *pfor_worker(void *arg)
{
	struct pfor *p = arg;
	for (int i = p->id; i < p->n; i += p->nth)
		p->fn(p->ctx, i);
	return NULL;
}

static void parallel_for(int n, void (*fn)(void *, int), void *ctx)
{
	long c = sysconf(_SC_NPROCESSORS_ONLN);
	int nth = c < 1 ? 1 : c > 32 ? 32 : (int)c;
	pthread_t th[32];
	struct pfor jobs[32];
	for (int i = 0; i < nth; i++) {
		jobs[i] = (struct pfor){fn, ctx, n, nth, i};
		pthread_create(&th[i], NULL, pfor_worker, &jobs[i]);
	}
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
}

/* ------------------------------------------------------------ routing reference */

struct fam {
	const char *name;
	int E, k, score, group, n_group, topk_group, renorm;
	float eps, scale;
	int bias;
};

static const struct fam fams[] = {
	{"qwen3-moe", 128, 8, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 1, 0.0f, 1.0f, 0},
	{"qwen3-moe no norm", 128, 8, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 0, 0.0f, 1.0f, 0},
	{"mixtral", 8, 2, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 1, 0.0f, 1.0f, 0},
	{"512 experts top-10", 512, 10, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 1, 0.0f, 1.0f, 0},
	{"deepseek-v2 greedy", 64, 6, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 0, 0.0f, 1.0f, 0},
	{"deepseek-v2 group", 160, 6, KM_SOFTMAX, KM_GROUP_MAX, 8, 3, 0, 0.0f, 16.0f, 0},
	{"deepseek-v3", 256, 8, KM_SIGMOID, KM_GROUP_TOP2, 8, 4, 1, 1e-20f, 2.5f, 1},
	{"deepseek-v3 no norm", 256, 8, KM_SIGMOID, KM_GROUP_TOP2, 8, 4, 0, 1e-20f, 2.5f, 1},
	{"1024 experts top-64", 1024, 64, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 1, 0.0f, 1.0f, 0},
	{"32 groups of 3", 96, 4, KM_SIGMOID, KM_GROUP_TOP2, 32, 5, 1, 1e-20f, 1.0f, 1},
};

/* The device's scores differ from these by a few float ulps (expf); two
 * different inputs whose scores lie closer than this may be ordered either
 * way. */
#define TIE_TOL 2e-6

/* Scores as the kernel defines them, in float (softmax sum in double). */
static void ref_scores(const struct fam *f, const float *x, const float *bias, float *p, float *c)
{
	if (f->score == KM_SOFTMAX) {
		float m = -INFINITY;
		for (int i = 0; i < f->E; i++)
			m = x[i] > m ? x[i] : m;
		double s = 0;
		for (int i = 0; i < f->E; i++)
			s += exp((double)x[i] - m);
		for (int i = 0; i < f->E; i++)
			p[i] = (float)(exp((double)x[i] - m) / s);
	} else {
		for (int i = 0; i < f->E; i++)
			p[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
	}
	for (int i = 0; i < f->E; i++)
		c[i] = bias ? p[i] + bias[i] : p[i];
}

static int same_input(const float *x, const float *bias, int i, int j)
{
	return x[i] == x[j] && (!bias || bias[i] == bias[j]);
}

/* Picks the best of the candidates (cand[i] != 0) by value desc, index asc;
 * sets *amb when another candidate of a different input lies within
 * TIE_TOL of it (the device may order those two either way). */
static int pick(const double *v, const char *cand, int n, int *amb, int (*same)(void *, int, int), void *ctx)
{
	int b = -1;
	for (int i = 0; i < n; i++)
		if (cand[i] && (b < 0 || v[i] > v[b]))
			b = i;
	for (int i = 0; i < n; i++)
		if (cand[i] && i != b && fabs(v[i] - v[b]) <= TIE_TOL * fmax(1.0, fabs(v[b])) && !same(ctx, i, b))
			*amb = 1;
	return b;
}

struct same_ctx {
	const float *x, *bias;
	int gs, group;
	int t1[32], t2[32];
};

static int same_expert(void *ctx, int i, int j)
{
	struct same_ctx *s = ctx;
	return same_input(s->x, s->bias, i, j);
}

static int same_group(void *ctx, int i, int j)
{
	struct same_ctx *s = ctx;
	if (!same_input(s->x, s->bias, s->t1[i], s->t1[j]))
		return 0;
	return s->group == KM_GROUP_MAX || same_input(s->x, s->bias, s->t2[i], s->t2[j]);
}

/* The kernel's routing of one token; 1 if ambiguous (see pick). */
static int ref_route(const struct fam *f, const float *x, const float *bias, int32_t *ids)
{
	const int E = f->E;
	float p[1024], c[1024];
	double v[1024];
	char cand[1024];
	int amb = 0;
	ref_scores(f, x, bias, p, c);
	struct same_ctx sc = {x, bias, E / f->n_group, f->group, {0}, {0}};
	if (f->group != KM_GROUP_NONE) {
		const int G = f->n_group, gs = E / G;
		double gv[32];
		char gc[32], keep[32] = {0};
		for (int g = 0; g < G; g++) {
			int t1 = -1, t2 = -1;
			for (int j = 0; j < gs; j++) {
				int i = g * gs + j;
				if (t1 < 0 || c[i] > c[t1]) {
					t2 = t1;
					t1 = i;
				} else if (t2 < 0 || c[i] > c[t2]) {
					t2 = i;
				}
			}
			sc.t1[g] = t1;
			sc.t2[g] = t2 < 0 ? t1 : t2;
			gv[g] = f->group == KM_GROUP_MAX ? c[t1] : (double)((float)(c[t1] + c[sc.t2[g]]));
			gc[g] = 1;
		}
		for (int r = 0; r < f->topk_group; r++) {
			int b = pick(gv, gc, G, &amb, same_group, &sc);
			keep[b] = 1;
			gc[b] = 0;
		}
		for (int i = 0; i < E; i++)
			if (!keep[i / gs])
				c[i] = 0.0f;
	}
	for (int i = 0; i < E; i++) {
		v[i] = c[i];
		cand[i] = 1;
	}
	for (int s = 0; s < f->k; s++) {
		int b = pick(v, cand, E, &amb, same_expert, &sc);
		ids[s] = b;
		cand[b] = 0;
	}
	return amb;
}

/* The weights the kernel gives the experts ids (whichever they are). */
static void ref_weights(const struct fam *f, const float *x, const float *bias, const int32_t *ids, double *w)
{
	float p[1024], c[1024];
	ref_scores(f, x, bias, p, c);
	double sum = 0;
	for (int s = 0; s < f->k; s++) {
		w[s] = p[ids[s]];
		sum += w[s];
	}
	for (int s = 0; s < f->k; s++)
		w[s] = (f->renorm ? w[s] / (sum + f->eps) : w[s]) * f->scale;
}

/* Logits on a 1/32 grid in [-4, 4]; kind 1: all equal; kind 2: four values.
 * Equal logits give exactly equal scores on both sides (ties by index);
 * different ones give softmax scores 3% apart. */
static void gen_logits(float *x, int E, int kind)
{
	for (int i = 0; i < E; i++)
		x[i] = kind == 1 ? 0.5f : kind == 2 ? (float)(rng_int(4) - 2) * 0.25f : (float)(rng_int(257) - 128) / 32.0f;
}

/* With a bias (sigmoid routers): logits on the 1/32 grid in [-8, -1.25]
 * (sigmoid below 0.23) and biases 0, 0.25, 0.5, 0.75, so that choice
 * scores of different inputs are either in different quarters or at least
 * 1e-5 apart, never near-equal. */
static void gen_logits_biased(float *x, int E, int kind)
{
	for (int i = 0; i < E; i++)
		x[i] = kind == 1 ? -3.0f : kind == 2 ? -2.0f - (float)rng_int(4) * 0.5f : (float)(rng_int(217) - 256) / 32.0f;
}

static void test_route(void)
{
	const int T = quick ? 200 : 1000;
	for (size_t fi = 0; fi < TS_ARRAY_LEN(fams); fi++) {
		const struct fam *f = &fams[fi];
		const int E = f->E, k = f->k, ld = fi % 2 ? E + 1 : E;
		float *lg = xmalloc(sizeof(float) * (size_t)T * ld), *bias = xmalloc(sizeof(float) * E);
		int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)T * k), *rid = xmalloc(sizeof(int32_t) * k);
		float *w = xmalloc(sizeof(float) * (size_t)T * k);
		double rw[64];
		for (int t = 0; t < T; t++) {
			if (f->bias)
				gen_logits_biased(lg + (size_t)t * ld, E, t < 2 ? 1 : t < 6 ? 2 : 0);
			else
				gen_logits(lg + (size_t)t * ld, E, t < 2 ? 1 : t < 6 ? 2 : 0);
			if (ld > E)
				lg[(size_t)t * ld + E] = 1e30f; /* a column the router must not read */
		}
		for (int i = 0; i < E; i++)
			bias[i] = f->bias ? (float)((i * 7 + (int)fi) % 4) * 0.25f : 0.0f;
		dv_off = 0;
		gpu_ptr d_lg = dv_take(sizeof(float) * (size_t)T * ld), d_b = dv_take(sizeof(float) * E);
		gpu_ptr d_ids = dv_take(sizeof(int32_t) * (size_t)T * k), d_w = dv_take(sizeof(float) * (size_t)T * k);
		struct k_moe_route a = {DP(d_lg), f->bias ? DP(d_b) : NULL, DP(d_ids), DP(d_w), T, E, k, ld,
					f->score, f->group, f->n_group, f->topk_group, f->renorm, f->eps, f->scale};
		int good = ok(gpu_h2d(&gg, d_lg, lg, sizeof(float) * (size_t)T * ld), "h2d") &&
			   ok(gpu_h2d(&gg, d_b, bias, sizeof(float) * E), "h2d") &&
			   ok(gpu_memset32(&gg, d_ids, 0x7fffffffu, (size_t)T * k), "poison") &&
			   ok(gpu_memset32(&gg, d_w, 0x7fc00000u, (size_t)T * k), "poison") &&
			   ok(moe_route_run(&gg, &a), "moe_route_run") &&
			   ok(gpu_d2h(&gg, ids, d_ids, sizeof(int32_t) * (size_t)T * k), "d2h") &&
			   ok(gpu_d2h(&gg, w, d_w, sizeof(float) * (size_t)T * k), "d2h") && ok(gpu_sync(&gg), "sync");
		T_CHECK(good, "%s: device calls failed", f->name);
		int n_amb = 0, n_bad_id = 0, n_bad_w = 0, first = -1;
		double worst = 0;
		for (int t = 0; good && t < T; t++) {
			const float *x = lg + (size_t)t * ld;
			const int32_t *g = ids + (size_t)t * k;
			int amb = ref_route(f, x, f->bias ? bias : NULL, rid);
			int valid = 1;
			for (int s = 0; s < k; s++) {
				valid &= g[s] >= 0 && g[s] < E;
				for (int r = 0; r < s; r++)
					valid &= g[r] != g[s];
			}
			if (!valid) {
				n_bad_id++;
				first = first < 0 ? t : first;
				continue;
			}
			if (memcmp(g, rid, sizeof(int32_t) * k)) {
				if (amb) {
					n_amb++;
				} else {
					n_bad_id++;
					first = first < 0 ? t : first;
				}
			}
			ref_weights(f, x, f->bias ? bias : NULL, g, rw);
			for (int s = 0; s < k; s++) {
				double e = fabs(w[(size_t)t * k + s] - rw[s]) / fmax(fabs(rw[s]), 1e-30);
				worst = e > worst ? e : worst;
				if (!(e <= 1e-5))
					n_bad_w++;
			}
		}
		T_CHECK(n_bad_id == 0, "%s: %d tokens routed differently (first token %d)", f->name, n_bad_id, first);
		T_CHECK(n_bad_w == 0, "%s: %d weights off by more than 1e-5 (worst %.3g)", f->name, n_bad_w, worst);
		T_CHECK(n_amb * 50 <= T, "%s: %d of %d tokens near-tied: the test's inputs are too dense", f->name, n_amb, T);
		/* the tie rule on the all-equal tokens, without bias: the lowest indices, in order */
		if (good && !f->bias && f->group == KM_GROUP_NONE) {
			int in_order = 1;
			for (int s = 0; s < k; s++)
				in_order &= ids[s] == s;
			T_CHECK(in_order, "%s: all-equal logits did not give experts 0..k-1 in order", f->name);
		}
		printf("  route %-22s E=%4d k=%2d T=%d: ids equal %d, near-tied %d, weights worst rel %.2e\n", f->name, E, k,
		       T, T - n_amb - n_bad_id, n_amb, worst);
		free(lg);
		free(bias);
		free(ids);
		free(rid);
		free(w);
	}
}

/* ------------------------------------------------------------ plan */

/* Routing ids for a test: mode 0 uniform distinct, 1 skewed (90% of tokens
 * take experts 0..k-1), 2 every token the same set. */
static void gen_ids(int32_t *ids, int T, int E, int k, int mode)
{
	for (int t = 0; t < T; t++) {
		int32_t *r = ids + (size_t)t * k;
		int same = mode == 2 || (mode == 1 && rng_int(10) != 0);
		for (int s = 0; s < k; s++) {
			if (same) {
				r[s] = (s * 7 + 3) % E;
				int dup;
				do { /* keep distinct when 7 and E share a factor */
					dup = 0;
					for (int q = 0; q < s; q++)
						dup |= r[q] == r[s];
					if (dup)
						r[s] = (r[s] + 1) % E;
				} while (dup);
				continue;
			}
			int e, dup;
			do {
				e = rng_int(E);
				dup = 0;
				for (int q = 0; q < s; q++)
					dup |= r[q] == e;
			} while (dup);
			r[s] = e;
		}
	}
}

static void test_plan(void)
{
	static const struct {
		int E, k;
	} shapes[] = {{8, 2}, {128, 8}, {1024, 8}, {33, 5}};
	static const int Ts[] = {1, 2, 17, 64, 257, 1000, 4096};
	for (size_t si = 0; si < TS_ARRAY_LEN(shapes); si++)
		for (size_t ti = 0; ti < TS_ARRAY_LEN(Ts); ti++)
			for (int mode = 0; mode < 3; mode++) {
				const int E = shapes[si].E, k = shapes[si].k, T = Ts[ti], n = T * k;
				if (quick && T > 257)
					continue;
				struct moe_shape s = {E, k, 64, 64};
				struct moe_ws ws;
				dv_off = 0;
				const uint64_t wsb = moe_workspace_bytes(&s, T);
				if (!ok(moe_workspace_carve(&s, T, dv_take(wsb), &ws), "carve")) {
					T_CHECK(0, "carve");
					continue;
				}
				int32_t *ids = xmalloc(4 * (size_t)n), *rows = xmalloc(4 * (size_t)n), *rank = xmalloc(4 * (size_t)n);
				int32_t *cnt = xmalloc(4 * (size_t)E), *off = xmalloc(4 * (size_t)(E + 1));
				int32_t *tiles = xmalloc(16 * (size_t)ws.max_tiles), nt = -1;
				gen_ids(ids, T, E, k, mode);
				int good = ok(gpu_h2d(&gg, ws.ids, ids, 4 * (size_t)n), "h2d") &&
					   ok(gpu_memset32(&gg, ws.rows, 0x7fffffffu, (size_t)n), "poison") &&
					   ok(gpu_memset32(&gg, ws.rank, 0x7fffffffu, (size_t)n), "poison") &&
					   ok(gpu_memset32(&gg, ws.counts, 0x7fffffffu, (size_t)E), "poison") &&
					   ok(gpu_memset32(&gg, ws.offsets, 0x7fffffffu, (size_t)E + 1), "poison") &&
					   ok(gpu_memset32(&gg, ws.tiles, 0x7fffffffu, 4 * (size_t)ws.max_tiles), "poison") &&
					   ok(gpu_memset32(&gg, ws.n_tiles, 0x7fffffffu, 1), "poison") &&
					   ok(moe_plan_run(&gg, &s, &ws, T), "moe_plan_run") &&
					   ok(gpu_d2h(&gg, rows, ws.rows, 4 * (size_t)n), "d2h") &&
					   ok(gpu_d2h(&gg, rank, ws.rank, 4 * (size_t)n), "d2h") &&
					   ok(gpu_d2h(&gg, cnt, ws.counts, 4 * (size_t)E), "d2h") &&
					   ok(gpu_d2h(&gg, off, ws.offsets, 4 * (size_t)(E + 1)), "d2h") &&
					   ok(gpu_d2h(&gg, tiles, ws.tiles, 16 * (size_t)ws.max_tiles), "d2h") &&
					   ok(gpu_d2h(&gg, &nt, ws.n_tiles, 4), "d2h") && ok(gpu_sync(&gg), "sync");
				T_CHECK(good, "plan E=%d k=%d T=%d: device calls failed", E, k, T);
				if (good) {
					/* expected: stable counting sort of the entries by expert */
					int32_t *ec = xmalloc(4 * (size_t)E), *eo = xmalloc(4 * (size_t)(E + 1));
					int32_t *er = xmalloc(4 * (size_t)n), *cur = xmalloc(4 * (size_t)E);
					memset(ec, 0, 4 * (size_t)E);
					for (int i = 0; i < n; i++)
						ec[ids[i]]++;
					eo[0] = 0;
					for (int e = 0; e < E; e++)
						eo[e + 1] = eo[e] + ec[e];
					memcpy(cur, eo, 4 * (size_t)E);
					for (int i = 0; i < n; i++)
						er[cur[ids[i]]++] = i;
					int bad_rank = 0;
					for (int j = 0; j < n; j++)
						bad_rank += rows[j] < 0 || rows[j] >= n || rank[rows[j]] != j;
					const int tr = moe_tile_tokens(&s, T);
					int want_nt = 0, bad_tile = 0;
					for (int e = 0; e < E; e++)
						for (int i = 0; i * tr < ec[e]; i++, want_nt++) {
							const int32_t *q = tiles + 4 * want_nt;
							int m = ec[e] - i * tr < tr ? ec[e] - i * tr : tr;
							if (want_nt >= ws.max_tiles || q[0] != e || q[1] != eo[e] + i * tr || q[2] != m)
								bad_tile++;
						}
					T_CHECK(!memcmp(cnt, ec, 4 * (size_t)E), "plan E=%d k=%d T=%d mode %d: counts", E, k, T, mode);
					T_CHECK(!memcmp(off, eo, 4 * (size_t)(E + 1)), "plan E=%d k=%d T=%d mode %d: offsets", E, k, T,
						mode);
					T_CHECK(!memcmp(rows, er, 4 * (size_t)n), "plan E=%d k=%d T=%d mode %d: sorted rows", E, k, T,
						mode);
					T_CHECK(bad_rank == 0, "plan E=%d k=%d T=%d mode %d: %d rank entries", E, k, T, mode, bad_rank);
					T_CHECK(nt == want_nt && bad_tile == 0 && nt <= moe_max_tiles(n, E, tr),
						"plan E=%d k=%d T=%d mode %d: tiles %d (want %d, bound %d), %d wrong", E, k, T, mode,
						nt, want_nt, moe_max_tiles(n, E, tr), bad_tile);
					free(ec);
					free(eo);
					free(er);
					free(cur);
				}
				free(ids);
				free(rows);
				free(rank);
				free(cnt);
				free(off);
				free(tiles);
			}
	printf("  plan: %d shapes x %d step sizes x 3 routings\n", (int)TS_ARRAY_LEN(shapes), (int)TS_ARRAY_LEN(Ts));
}

/* ------------------------------------------------------------ a whole layer */

/* Host copies of one layer's weights and the device's interleaved ones. */
struct layer {
	struct moe_shape s;
	uint16_t *gate, *up, *down; /* (E, ffn, dim), (E, ffn, dim), (E, dim, ffn) */
	gpu_ptr d_gu, d_dn;
};

static void layer_make(struct layer *L, int E, int k, int dim, int ffn)
{
	L->s = (struct moe_shape){E, k, dim, ffn};
	const size_t ne = (size_t)ffn * dim;
	L->gate = xmalloc(2 * ne * E);
	L->up = xmalloc(2 * ne * E);
	L->down = xmalloc(2 * ne * E);
	fill_bf16(L->gate, ne * E, 2.0f / sqrtf((float)dim));
	fill_bf16(L->up, ne * E, 2.0f / sqrtf((float)dim));
	fill_bf16(L->down, ne * E, 2.0f / sqrtf((float)ffn));
	uint16_t *gu = xmalloc(4 * ne);
	L->d_gu = dv_take(4 * ne * E);
	L->d_dn = dv_take(2 * ne * E);
	for (int e = 0; e < E; e++) {
		gemm_interleave_gate_up(gu, L->gate + ne * e, L->up + ne * e, ffn, dim);
		gpu_h2d(&gg, L->d_gu + 4 * ne * e, gu, 4 * ne);
		gpu_sync(&gg);
	}
	gpu_h2d(&gg, L->d_dn, L->down, 2 * ne * E);
	gpu_sync(&gg);
	free(gu);
}

static void layer_free(struct layer *L)
{
	free(L->gate);
	free(L->up);
	free(L->down);
}

/* One step's inputs on the host and the device. */
struct step {
	int T, shared, sgate;
	uint16_t *x;           /* (T, dim) */
	float *lg;             /* (T, E + 1): router logits, then the shared gate logit */
	float *resid, *sh;     /* (T, dim) */
	int32_t *ids;          /* (T, k) the device's routing */
	float *w;
	float *out;            /* (T, dim) the device's residual after the layer */
	gpu_ptr d_x, d_lg, d_resid, d_sh;
};

static struct moe_ws ws_run;

/* Routes and runs the layer on st's inputs; out, ids, w copied back. */
static int step_run(const struct layer *L, struct step *st, gpu_ptr d_gu, gpu_ptr d_dn)
{
	const struct moe_shape *s = &L->s;
	const int T = st->T, E = s->n_experts, k = s->top_k;
	struct k_moe_route ra = {DP(st->d_lg), NULL, DP(ws_run.ids), DP(ws_run.w), T, E, k, E + 1, KM_SOFTMAX,
				 KM_GROUP_NONE, 1, 1, 1, 0.0f, 1.0f};
	struct moe_experts xa = {T, DP(st->d_x), DP(d_gu), DP(d_dn), DP(st->d_resid), st->shared ? DP(st->d_sh) : NULL,
				 s->dim, st->sgate ? (const float *)DP(st->d_lg) + E : NULL, E + 1};
	return ok(gpu_h2d(&gg, st->d_resid, st->resid, 4 * (size_t)T * s->dim), "h2d resid") &&
	       ok(gpu_memset32(&gg, ws_run.h, 0x7fc17fc1u, (size_t)T * k * s->ffn / 2), "poison h") &&
	       ok(gpu_memset32(&gg, ws_run.y, 0x7fc00000u, (size_t)T * k * s->dim), "poison y") &&
	       ok(gpu_memset32(&gg, ws_run.w, 0x7fc00000u, (size_t)T * k), "poison w") &&
	       ok(moe_route_run(&gg, &ra), "moe_route_run") && ok(moe_experts_run(&gg, s, &ws_run, &xa), "moe_experts_run") &&
	       ok(gpu_d2h(&gg, st->out, st->d_resid, 4 * (size_t)T * s->dim), "d2h out") &&
	       ok(gpu_d2h(&gg, st->ids, ws_run.ids, 4 * (size_t)T * k), "d2h ids") &&
	       ok(gpu_d2h(&gg, st->w, ws_run.w, 4 * (size_t)T * k), "d2h w") && ok(gpu_sync(&gg), "sync");
}

static void step_alloc(const struct layer *L, struct step *st, int T, int shared, int sgate)
{
	const int dim = L->s.dim, E = L->s.n_experts, k = L->s.top_k;
	st->T = T;
	st->shared = shared;
	st->sgate = sgate;
	st->x = xmalloc(2 * (size_t)T * dim);
	st->lg = xmalloc(4 * (size_t)T * (E + 1));
	st->resid = xmalloc(4 * (size_t)T * dim);
	st->sh = xmalloc(4 * (size_t)T * dim);
	st->ids = xmalloc(4 * (size_t)T * k);
	st->w = xmalloc(4 * (size_t)T * k);
	st->out = xmalloc(4 * (size_t)T * dim);
	st->d_x = dv_take(2 * (size_t)T * dim);
	st->d_lg = dv_take(4 * (size_t)T * (E + 1));
	st->d_resid = dv_take(4 * (size_t)T * dim);
	st->d_sh = dv_take(4 * (size_t)T * dim);
}

static void step_fill(const struct layer *L, struct step *st)
{
	const int dim = L->s.dim, E = L->s.n_experts, T = st->T;
	fill_bf16(st->x, (size_t)T * dim, 1.0f);
	for (int t = 0; t < T; t++) {
		gen_logits(st->lg + (size_t)t * (E + 1), E, 0);
		st->lg[(size_t)t * (E + 1) + E] = rng_sym() * 3.0f;
	}
	for (size_t i = 0; i < (size_t)T * dim; i++) {
		st->resid[i] = rng_sym() * 0.1f;
		st->sh[i] = rng_sym();
	}
}

static int step_upload(const struct layer *L, struct step *st)
{
	const int dim = L->s.dim, E = L->s.n_experts, T = st->T;
	return ok(gpu_h2d(&gg, st->d_x, st->x, 2 * (size_t)T * dim), "h2d x") &&
	       ok(gpu_h2d(&gg, st->d_lg, st->lg, 4 * (size_t)T * (E + 1)), "h2d logits") &&
	       ok(gpu_h2d(&gg, st->d_sh, st->sh, 4 * (size_t)T * dim), "h2d shared") && ok(gpu_sync(&gg), "sync");
}

static void step_free(struct step *st)
{
	free(st->x);
	free(st->lg);
	free(st->resid);
	free(st->sh);
	free(st->ids);
	free(st->w);
	free(st->out);
}

struct ref_ctx {
	const struct layer *L;
	const struct step *st;
	double *delta; /* (T, dim) */
};

/* delta[t] = sum_s w_s down_e(bf16(silu(gate_e x) * up_e x)) + gate * shared, float64. */
static void ref_token(void *arg, int t)
{
	const struct ref_ctx *c = arg;
	const struct moe_shape *s = &c->L->s;
	const int dim = s->dim, ffn = s->ffn, k = s->top_k, E = s->n_experts;
	const size_t ne = (size_t)ffn * dim;
	double *d = c->delta + (size_t)t * dim, *xd = xmalloc(sizeof(double) * dim), *h = xmalloc(sizeof(double) * ffn);
	for (int i = 0; i < dim; i++) {
		xd[i] = bf(c->st->x[(size_t)t * dim + i]);
		d[i] = 0;
	}
	for (int q = 0; q < k; q++) {
		const int e = c->st->ids[(size_t)t * k + q];
		const double w = c->st->w[(size_t)t * k + q];
		const uint16_t *G = c->L->gate + ne * e, *U = c->L->up + ne * e, *D = c->L->down + ne * e;
		for (int j = 0; j < ffn; j++) {
			double g = 0, u = 0;
			for (int i = 0; i < dim; i++) {
				g += xd[i] * bf(G[(size_t)j * dim + i]);
				u += xd[i] * bf(U[(size_t)j * dim + i]);
			}
			h[j] = bf(ts_f32_to_bf16((float)(g / (1.0 + exp(-g)) * u)));
		}
		for (int o = 0; o < dim; o++) {
			double y = 0;
			for (int j = 0; j < ffn; j++)
				y += h[j] * bf(D[(size_t)o * ffn + j]);
			d[o] += w * y;
		}
	}
	if (c->st->shared) {
		double gv = c->st->sgate ? 1.0 / (1.0 + exp(-(double)c->st->lg[(size_t)t * (E + 1) + E])) : 1.0;
		for (int o = 0; o < dim; o++)
			d[o] += gv * c->st->sh[(size_t)t * dim + o];
	}
	free(xd);
	free(h);
}

static void test_layers(void)
{
	static const struct {
		const char *name;
		int E, k, dim, ffn, shared, sgate;
		int T[5];
	} cases[] = {
		{"small", 16, 4, 256, 128, 0, 0, {1, 3, 17, 64, 300}},
		{"tails", 12, 3, 200, 88, 1, 0, {1, 5, 100, 0, 0}},
		{"qwen3-like", 128, 8, 512, 256, 0, 0, {1, 8, 64, 512, 0}},
		{"deepseek-like", 64, 6, 384, 192, 1, 1, {1, 40, 200, 0, 0}},
	};
	for (size_t ci = 0; ci < TS_ARRAY_LEN(cases); ci++) {
		dv_off = 0;
		struct layer L;
		layer_make(&L, cases[ci].E, cases[ci].k, cases[ci].dim, cases[ci].ffn);
		int maxT = 0;
		for (int i = 0; i < 5; i++)
			maxT = cases[ci].T[i] > maxT ? cases[ci].T[i] : maxT;
		if (!ok(moe_workspace_carve(&L.s, maxT, dv_take(moe_workspace_bytes(&L.s, maxT)), &ws_run), "carve")) {
			T_CHECK(0, "carve");
			layer_free(&L);
			continue;
		}
		for (int ti = 0; ti < 5 && cases[ci].T[ti]; ti++) {
			const int T = cases[ci].T[ti], dim = L.s.dim;
			if (quick && T > 100)
				continue;
			const uint64_t mark = dv_off;
			struct step st;
			step_alloc(&L, &st, T, cases[ci].shared, cases[ci].sgate);
			step_fill(&L, &st);
			int good = step_upload(&L, &st) && step_run(&L, &st, L.d_gu, L.d_dn);
			T_CHECK(good, "%s T=%d: device calls failed", cases[ci].name, T);
			if (good) {
				double *delta = xmalloc(sizeof(double) * (size_t)T * dim);
				struct ref_ctx rc = {&L, &st, delta};
				parallel_for(T, ref_token, &rc);
				double num = 0, den = 0;
				size_t bad = 0;
				for (size_t i = 0; i < (size_t)T * dim; i++) {
					double got = (double)st.out[i] - st.resid[i];
					if (!isfinite(st.out[i]))
						bad++;
					num += (got - delta[i]) * (got - delta[i]);
					den += delta[i] * delta[i];
				}
				double rel = sqrt(num / den);
				T_CHECK(bad == 0, "%s T=%d: %zu outputs not finite", cases[ci].name, T, bad);
				T_CHECK(rel < 2e-3, "%s T=%d: rel err %.3g", cases[ci].name, T, rel);

				/* the experts no token hit may hold NaN: nothing changes */
				int *hit = xmalloc(sizeof(int) * L.s.n_experts), n_hit = 0;
				memset(hit, 0, sizeof(int) * L.s.n_experts);
				for (int i = 0; i < T * L.s.top_k; i++)
					hit[st.ids[i]] = 1;
				for (int e = 0; e < L.s.n_experts; e++)
					n_hit += hit[e];
				if (n_hit < L.s.n_experts) {
					const size_t ne = (size_t)L.s.ffn * dim;
					gpu_ptr pgu = dv_take(4 * ne * L.s.n_experts), pdn = dv_take(2 * ne * L.s.n_experts);
					float *out0 = xmalloc(4 * (size_t)T * dim);
					memcpy(out0, st.out, 4 * (size_t)T * dim);
					int g2 = ok(gpu_d2d(&gg, pgu, L.d_gu, 4 * ne * L.s.n_experts), "d2d") &&
						 ok(gpu_d2d(&gg, pdn, L.d_dn, 2 * ne * L.s.n_experts), "d2d");
					for (int e = 0; e < L.s.n_experts && g2; e++)
						if (!hit[e])
							g2 = ok(gpu_memset32(&gg, pgu + 4 * ne * e, 0x7fc07fc0u, ne), "nan") &&
							     ok(gpu_memset32(&gg, pdn + 2 * ne * e, 0x7fc07fc0u, ne / 2), "nan");
					g2 = g2 && step_run(&L, &st, pgu, pdn);
					T_CHECK(g2 && !memcmp(out0, st.out, 4 * (size_t)T * dim),
						"%s T=%d: experts not hit (%d of %d hit) changed the result", cases[ci].name, T,
						n_hit, L.s.n_experts);
					free(out0);
				}
				printf("  layer %-13s E=%3d k=%d dim=%d ffn=%d T=%3d tile=%2d: rel %.2e, %d experts hit\n",
				       cases[ci].name, L.s.n_experts, L.s.top_k, dim, L.s.ffn, T, moe_tile_tokens(&L.s, T), rel,
				       n_hit);
				free(hit);
				free(delta);
			}
			step_free(&st);
			dv_off = mark;
		}
		layer_free(&L);
	}
}

/* ------------------------------------------------------------ batch invariance */

/* Token 0 of a 300-token pool runs in steps of different sizes and company;
 * its output row and routing must be bitwise the same in all. */
static void test_batch(void)
{
	static const struct {
		int E, k, dim, ffn;
	} shapes[] = {{16, 4, 256, 128}, {128, 8, 512, 256}};
	for (size_t si = 0; si < TS_ARRAY_LEN(shapes); si++) {
		dv_off = 0;
		struct layer L;
		layer_make(&L, shapes[si].E, shapes[si].k, shapes[si].dim, shapes[si].ffn);
		const int P = 300, dim = L.s.dim, E = L.s.n_experts, k = L.s.top_k;
		const int maxT = 1024;
		moe_workspace_carve(&L.s, maxT, dv_take(moe_workspace_bytes(&L.s, maxT)), &ws_run);
		struct step pool;
		step_alloc(&L, &pool, P, 1, 1);
		step_fill(&L, &pool);
		/* steps: sizes and which pool token each slot takes (token 0 at slot pos) */
		static const int sizes[] = {1, 37, 100, 300, 64, 1024};
		float ref_row[1024];
		int32_t ref_ids[64];
		float ref_w[64];
		int n_steps = 0;
		for (size_t zi = 0; zi < TS_ARRAY_LEN(sizes); zi++) {
			const int T = sizes[zi];
			if (quick && T > 300)
				continue;
			const uint64_t mark = dv_off;
			struct step st;
			step_alloc(&L, &st, T, 1, 1);
			const int pos = T / 2 + (int)zi % 3 - 1 < 0 ? 0 : T / 2 + (int)zi % 3 - 1;
			for (int t = 0; t < T; t++) {
				/* size 64: copies of token 0 (its experts get 64 tokens); else pool tokens */
				int src = t == pos || T == 64 ? 0 : 1 + rng_int(P - 1);
				memcpy(st.x + (size_t)t * dim, pool.x + (size_t)src * dim, 2 * (size_t)dim);
				memcpy(st.lg + (size_t)t * (E + 1), pool.lg + (size_t)src * (E + 1), 4 * (size_t)(E + 1));
				memcpy(st.resid + (size_t)t * dim, pool.resid + (size_t)src * dim, 4 * (size_t)dim);
				memcpy(st.sh + (size_t)t * dim, pool.sh + (size_t)src * dim, 4 * (size_t)dim);
			}
			int good = step_upload(&L, &st) && step_run(&L, &st, L.d_gu, L.d_dn);
			T_CHECK(good, "batch T=%d: device calls failed", T);
			if (good) {
				const float *row = st.out + (size_t)pos * dim;
				if (n_steps == 0) {
					memcpy(ref_row, row, 4 * (size_t)dim);
					memcpy(ref_ids, st.ids + (size_t)pos * k, 4 * (size_t)k);
					memcpy(ref_w, st.w + (size_t)pos * k, 4 * (size_t)k);
				} else {
					T_CHECK(!memcmp(ref_ids, st.ids + (size_t)pos * k, 4 * (size_t)k) &&
							!memcmp(ref_w, st.w + (size_t)pos * k, 4 * (size_t)k),
						"batch E=%d T=%d: token 0's routing differs from alone", E, T);
					T_CHECK(!memcmp(ref_row, row, 4 * (size_t)dim),
						"batch E=%d T=%d (tile %d): token 0's output differs from alone", E, T,
						moe_tile_tokens(&L.s, T));
				}
				n_steps++;
			}
			step_free(&st);
			dv_off = mark;
		}
		printf("  batch E=%d k=%d: token 0 bitwise equal across %d step sizes (tiles", E, k, n_steps);
		for (size_t zi = 0; zi < TS_ARRAY_LEN(sizes); zi++)
			printf(" %d", moe_tile_tokens(&L.s, sizes[zi]));
		printf(")\n");
		step_free(&pool);
		layer_free(&L);
	}
}

/* ------------------------------------------------------------ rejects */

static void test_rejects(void)
{
	struct moe_shape s = {16, 4, 256, 128};
	T_CHECK(moe_check_shape(&s) == 0, "good shape refused");
	s.dim = 12;
	T_CHECK(moe_check_shape(&s) == -E_INVAL, "dim 12 accepted");
	s.dim = 256;
	s.top_k = 17;
	T_CHECK(moe_check_shape(&s) == -E_INVAL, "top_k > E accepted");
	s.top_k = 4;
	s.n_experts = 1025;
	T_CHECK(moe_check_shape(&s) == -E_INVAL, "1025 experts accepted");
	s.n_experts = 16;

	dv_off = 0;
	gpu_ptr buf = dv_take(1 << 20), rid = dv_take(4096), rw = dv_take(4096);
	gpu_memset32(&gg, buf, 0, (1 << 20) / 4);
	struct k_moe_route r = {DP(buf), NULL, DP(rid), DP(rw), 4, 16, 4, 16, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 1, 0, 1};
	T_CHECK(moe_route_run(&gg, &r) == 0, "good route refused");
	r.k = 17;
	T_CHECK(moe_route_run(&gg, &r) == -E_INVAL, "route k > E accepted");
	r.k = 4;
	r.ld_logits = 15;
	T_CHECK(moe_route_run(&gg, &r) == -E_INVAL, "route ld_logits < E accepted");
	r.ld_logits = 16;
	r.group = KM_GROUP_TOP2;
	r.n_group = 3;
	T_CHECK(moe_route_run(&gg, &r) == -E_INVAL, "16 experts in 3 groups accepted");
	r.n_group = 16;
	r.topk_group = 2;
	T_CHECK(moe_route_run(&gg, &r) == -E_INVAL, "top-2 groups of one expert accepted");
	r.n_group = 4;
	r.topk_group = 1;
	r.k = 5;
	T_CHECK(moe_route_run(&gg, &r) == -E_INVAL, "k beyond the kept groups accepted");
	gpu_sync(&gg);

	struct moe_ws ws;
	T_CHECK(moe_workspace_carve(&s, 8, dv_take(moe_workspace_bytes(&s, 8)), &ws) == 0, "carve");
	struct moe_experts x = {8, DP(buf), DP(buf), DP(buf), DP(buf), NULL, 0, NULL, 0};
	x.T = 9;
	T_CHECK(moe_experts_run(&gg, &s, &ws, &x) == -E_INVAL, "T beyond the workspace accepted");
	x.T = 8;
	x.x = (const ts_bf16 *)DP(buf + 2);
	T_CHECK(moe_experts_run(&gg, &s, &ws, &x) == -E_INVAL, "misaligned x accepted");
	x.x = DP(buf);
	x.sgate = DP(buf);
	x.ld_sgate = 1;
	T_CHECK(moe_experts_run(&gg, &s, &ws, &x) == -E_INVAL, "a shared gate without a shared output accepted");

	/* the bound against sums of ceil over every split of n entries */
	int bound_ok = 1;
	for (int n = 1; n <= 200; n++)
		for (int E = 1; E <= 40; E += 3)
			for (int tr = 8; tr <= 64; tr *= 2) {
				/* worst: min(E, n) experts, all but one with one entry */
				int hit = n < E ? n : E, worst = (hit - 1) + (n - (hit - 1) + tr - 1) / tr;
				/* and spread evenly with remainders */
				int even = 0, base = n / hit, rem = n % hit;
				for (int e = 0; e < hit; e++)
					even += (base + (e < rem) + tr - 1) / tr;
				int m = moe_max_tiles(n, E, tr);
				bound_ok &= m >= worst && m >= even;
			}
	T_CHECK(bound_ok, "moe_max_tiles below a reachable tile count");
}

/* ------------------------------------------------------------ bench */

/* Times route + experts of one layer shape at each T; weights random on the
 * device (one random piece repeated), two weight sets alternating when they
 * fit, so L2 holds neither. */
static double floor_gbs; /* the copy floor, measured at the start of bench() */

static void bench_shape(const char *name, int E, int k, int dim, int ffn, const int *Ts, int nT)
{
	struct moe_shape s = {E, k, dim, ffn};
	const size_t ne = (size_t)ffn * dim, wbytes = 6 * ne * E;
	int maxT = 0;
	for (int i = 0; i < nT; i++)
		maxT = Ts[i] > maxT ? Ts[i] : maxT;
	dv_off = 0;
	const int sets = 2 * wbytes + moe_workspace_bytes(&s, maxT) + ((uint64_t)256 << 20) < dv_cap ? 2 : 1;
	gpu_ptr gu[2], dn[2];
	const size_t piece = (size_t)8 << 20; /* bf16 elements */
	uint16_t *h = xmalloc(2 * piece);
	fill_bf16(h, piece, 0.05f);
	int good = 1;
	for (int i = 0; i < sets; i++) {
		gu[i] = dv_take(4 * ne * E);
		dn[i] = dv_take(2 * ne * E);
		for (size_t off = 0; off < 4 * ne * E && good; off += 2 * piece)
			good = ok(gpu_h2d(&gg, gu[i] + off, h, 4 * ne * E - off < 2 * piece ? 4 * ne * E - off : 2 * piece), "h2d");
		for (size_t off = 0; off < 2 * ne * E && good; off += 2 * piece)
			good = ok(gpu_h2d(&gg, dn[i] + off, h, 2 * ne * E - off < 2 * piece ? 2 * ne * E - off : 2 * piece), "h2d");
		good = good && ok(gpu_sync(&gg), "sync");
	}
	struct moe_ws ws;
	good = good && ok(moe_workspace_carve(&s, maxT, dv_take(moe_workspace_bytes(&s, maxT)), &ws), "carve");
	gpu_ptr d_x = dv_take(2 * (size_t)maxT * dim), d_lg = dv_take(4 * (size_t)maxT * E);
	gpu_ptr d_res = dv_take(4 * (size_t)maxT * dim);
	uint16_t *hx = xmalloc(2 * (size_t)maxT * dim);
	float *hl = xmalloc(4 * (size_t)maxT * E);
	int32_t *ids = xmalloc(4 * (size_t)maxT * k);
	fill_bf16(hx, (size_t)maxT * dim, 1.0f);
	for (size_t i = 0; i < (size_t)maxT * E; i++)
		hl[i] = rng_sym() * 4.0f;
	good = good && ok(gpu_h2d(&gg, d_x, hx, 2 * (size_t)maxT * dim), "h2d") &&
	       ok(gpu_h2d(&gg, d_lg, hl, 4 * (size_t)maxT * E), "h2d") &&
	       ok(gpu_memset32(&gg, d_res, 0, (size_t)maxT * dim), "zero") && ok(gpu_sync(&gg), "sync");
	T_CHECK(good, "bench %s: setup failed", name);
	printf("# moe %s (E %d, top-%d, dim %d, expert width %d) on %s, %d weight set(s)\n", name, E, k, dim, ffn,
	       gg.info.name, sets);
	printf("# floors: %.0f GB/s copy, measured now (%.0f on the H100 of 2026-11-27); %.0f TFLOP/s cuBLAS GEMM "
	       "(H100, 2026-11-27, not measured here)\n",
	       floor_gbs, COPY_FLOOR_GBS, GEMM_FLOOR_TFS);
	printf("      T  tile  hit   us/step  weights MB    GB/s  %%copy  TFLOP/s  %%gemm\n");
	for (int i = 0; i < nT && good; i++) {
		const int T = Ts[i];
		struct k_moe_route ra = {DP(d_lg), NULL, DP(ws.ids), DP(ws.w), T, E, k, E, KM_SOFTMAX, KM_GROUP_NONE, 1, 1, 1,
					 0.0f, 1.0f};
		gpu_graph x = NULL;
		good = ok(gpu_capture_begin(&gg), "capture");
		for (int r = 0; r < 2 * sets && good; r++) {
			struct moe_experts xa = {T, DP(d_x), DP(gu[r % sets]), DP(dn[r % sets]), DP(d_res), NULL, 0, NULL, 0};
			good = ok(moe_route_run(&gg, &ra), "route") && ok(moe_experts_run(&gg, &s, &ws, &xa), "experts");
		}
		good = ok(gpu_capture_end(&gg, &x), "capture end") && good;
		float ms = good ? time_graph(&gg, x, 9) / (2 * sets) : -1;
		if (x)
			gpu_graph_free(&gg, x);
		good = good && ok(gpu_d2h(&gg, ids, ws.ids, 4 * (size_t)T * k), "d2h") && ok(gpu_sync(&gg), "sync");
		T_CHECK(good && ms > 0, "bench %s T=%d failed", name, T);
		if (!good || !(ms > 0))
			break;
		char *hit = xmalloc((size_t)E);
		memset(hit, 0, (size_t)E);
		int A = 0;
		for (int j = 0; j < T * k; j++)
			if (!hit[ids[j]]) {
				hit[ids[j]] = 1;
				A++;
			}
		free(hit);
		const double us = ms * 1e3, bytes = (double)A * 6.0 * (double)ne, flop = 2.0 * T * k * 3.0 * (double)ne;
		printf("  %5d  %4d  %3d  %8.2f  %10.1f  %6.0f  %5.1f  %7.1f  %5.1f\n", T, moe_tile_tokens(&s, T), A, us,
		       bytes / 1e6, bytes / us / 1e3, 100.0 * bytes / us / 1e3 / floor_gbs, flop / us / 1e6,
		       100.0 * flop / us / 1e6 / GEMM_FLOOR_TFS);
	}
	free(h);
	free(hx);
	free(hl);
	free(ids);
}

static void bench(void)
{
	static const int qwen_T[] = {1, 8, 32, 64, 4096}, mix_T[] = {1, 8};
	const size_t fb = (size_t)256 << 20;
	dv_off = 0;
	gpu_ptr a = dv_take(fb), b = dv_take(fb);
	floor_gbs = copy_floor_now(&gg, a, b, fb);
	T_CHECK(floor_gbs > 0, "copy floor: the copy failed");
	if (!(floor_gbs > 0))
		return;
	bench_shape("Qwen3-30B-A3B", 128, 8, 2048, 768, qwen_T, (int)TS_ARRAY_LEN(qwen_T));
	bench_shape("Mixtral-8x7B", 8, 2, 4096, 14336, mix_T, (int)TS_ARRAY_LEN(mix_T));
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	int no_bench = 0, bench_only = 0;
	for (int i = 1; i < argc; i++) {
		quick |= !strcmp(argv[i], "--quick");
		no_bench |= !strcmp(argv[i], "--no-bench");
		bench_only |= !strcmp(argv[i], "--bench-only");
	}
	struct ts_err e = {0};
	if (gpu_open(&gg, 0, &e)) {
		fprintf(stderr, "k_moe: no device: %s\n", e.msg);
		T_CHECK(0, "gpu_open: %s", e.msg);
		return T_DONE();
	}
	const uint64_t region = (uint64_t)4000 << 20;
	if (!ok(gpu_arena_init(&gg, region + ((uint64_t)16 << 20), &e), "gpu_arena_init")) {
		T_CHECK(0, "setup: %s", e.msg);
		return T_DONE();
	}
	dv_base = gpu_arena_take(&gg, region);
	dv_cap = region;
	T_CHECK(dv_base != 0, "arena take");
	printf("# k_moe on %s (%d SMs)\n", gg.info.name, gg.info.n_sm);
	if (!bench_only) {
		test_rejects();
		test_route();
		fflush(stdout);
		test_plan();
		fflush(stdout);
		test_layers();
		fflush(stdout);
		test_batch();
		fflush(stdout);
	}
	if (!no_bench && !quick)
		bench();
	gpu_close(&gg);
	return T_DONE();
}
