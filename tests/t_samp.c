/* t_samp: the reference sampler against hand-made cases, statistics, and a
 * naive implementation of samp.h's contract (full sort, O(vocab) penalties). */
#include "samp.h"

#include "fmath.h"
#include "t.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static uint64_t rng_state = 0x13198a2e03707344u;

static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static double rnd_unit(void)
{
	return (double)(rnd64() >> 11) * 0x1p-53;
}

static double rnd_normal(void)
{
	double u = rnd_unit() + 0x1p-60, v = rnd_unit();
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static int counts_zero(const struct samp_scratch *s)
{
	for (int i = 0; i < s->vocab; i++)
		if (s->count[i])
			return 0;
	return 1;
}

/* ---------------------------------------------------------------- naive reference */

static const float *ref_e;

static int ref_cmp(const void *pa, const void *pb)
{
	int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
	if (ref_e[a] != ref_e[b])
		return ref_e[a] > ref_e[b] ? -1 : 1;
	return a < b ? -1 : a > b;
}

/* samp.h step by step, on a copy of the logits. */
static int32_t ref_sample(const float *logits_in, int vocab, const struct samp_params *p, const int32_t *prompt,
			  int n_prompt, const int32_t *out, int n_out, uint64_t pos, float *logprob)
{
	float *x = malloc(sizeof(float) * (size_t)vocab), *e = malloc(sizeof(float) * (size_t)vocab);
	int32_t *ord = malloc(sizeof(int32_t) * (size_t)vocab);
	memcpy(x, logits_in, sizeof(float) * (size_t)vocab);
	for (int t = 0; t < vocab; t++) {
		int seen = 0, cnt = 0;
		for (int i = 0; i < n_prompt; i++)
			seen |= prompt[i] == t;
		for (int i = 0; i < n_out; i++)
			cnt += out[i] == t;
		if ((seen || cnt) && p->repetition_penalty != 1.0f)
			x[t] = x[t] > 0 ? x[t] / p->repetition_penalty : x[t] * p->repetition_penalty;
		if (cnt && (p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f))
			x[t] -= p->presence_penalty + p->frequency_penalty * (float)cnt;
	}
	float temp = p->temperature < 1e-5f ? 1.0f : p->temperature;
	float m = -INFINITY;
	for (int t = 0; t < vocab; t++) {
		x[t] /= temp;
		m = x[t] > m ? x[t] : m;
	}
	double sum = 0;
	for (int t = 0; t < vocab; t++) {
		e[t] = x[t] == m ? 1.0f : fm_expf(x[t] - m);
		sum += e[t];
		ord[t] = t;
	}
	ref_e = e;
	qsort(ord, (size_t)vocab, sizeof(int32_t), ref_cmp);
	int32_t tok;
	if (p->temperature < 1e-5f) { /* first maximum */
		tok = 0;
		for (int t = 1; t < vocab; t++)
			tok = x[t] > x[tok] ? t : tok;
	} else {
		int n = p->top_k > 0 ? p->top_k : vocab;
		double cand = 0;
		for (int i = 0; i < n; i++)
			cand += e[ord[i]];
		if (p->top_p < 1.0f) {
			double cum = 0;
			int i = 0;
			while (i < n) {
				cum += e[ord[i++]];
				if (cum >= (double)p->top_p * cand)
					break;
			}
			n = i;
		}
		while (n > 1 && e[ord[n - 1]] < p->min_p)
			n--;
		double kept = 0, cum = 0;
		for (int i = 0; i < n; i++)
			kept += e[ord[i]];
		double target = (double)samp_uniform(p->seed, pos) * kept;
		tok = ord[n - 1];
		for (int i = 0; i < n; i++) {
			cum += e[ord[i]];
			if (cum > target) {
				tok = ord[i];
				break;
			}
		}
	}
	if (logprob)
		*logprob = (float)((double)x[tok] - (double)m - log(sum));
	free(x);
	free(e);
	free(ord);
	return tok;
}

/* ---------------------------------------------------------------- cases */

static struct samp_scratch S;

static int32_t sample(const float *logits, int vocab, const struct samp_params *p, uint64_t pos)
{
	float buf[64];
	memcpy(buf, logits, sizeof(float) * (size_t)vocab);
	return samp_sample(buf, vocab, p, NULL, 0, NULL, 0, pos, &S, NULL);
}

static void test_greedy(void)
{
	struct samp_params p;
	samp_params_default(&p);
	const float l[8] = {1.0f, 3.0f, -2.0f, 5.0f, 0.0f, 4.0f, 2.0f, 5.0f};
	T_CHECK(sample(l, 8, &p, 0) == 3, "greedy picks the lowest id of tied maxima");
	int same = 1;
	for (uint64_t seed = 0; seed < 100; seed++) {
		p.seed = seed * 0x9e3779b97f4a7c15u;
		same &= sample(l, 8, &p, seed) == 3;
	}
	T_CHECK(same, "temperature 0 ignores seed and position");
	p.temperature = 0.5e-5f;
	p.seed = 7;
	same = 1;
	for (uint64_t pos = 0; pos < 100; pos++)
		same &= sample(l, 8, &p, pos) == 3;
	T_CHECK(same, "temperature below 1e-5 is greedy");

	/* NaN logits are skipped */
	const float ln[4] = {NAN, 1.0f, NAN, 2.0f};
	p.temperature = 0;
	T_CHECK(sample(ln, 4, &p, 0) == 3, "greedy skips NaN");

	/* greedy logprob is log softmax at temperature 1 */
	float buf[8], lp;
	memcpy(buf, l, sizeof(buf));
	p.temperature = 0;
	int32_t t = samp_sample(buf, 8, &p, NULL, 0, NULL, 0, 0, &S, &lp);
	double z = 0;
	for (int i = 0; i < 8; i++)
		z += exp((double)l[i] - 5.0);
	T_CHECK(t == 3 && fabs(lp - (0.0 - log(z))) < 1e-6, "greedy logprob %g, want %g", lp, -log(z));
}

static void test_determinism(void)
{
	float l[1000];
	for (int i = 0; i < 1000; i++)
		l[i] = (float)(0.01 * rnd_normal());
	struct samp_params p;
	samp_params_default(&p);
	p.temperature = 1.0f;
	p.seed = 42;
	float a[1000], b[1000];
	int same = 1, distinct = 0;
	static unsigned char seen[1000];
	for (uint64_t pos = 0; pos < 300; pos++) {
		memcpy(a, l, sizeof(l));
		memcpy(b, l, sizeof(l));
		int32_t ta = samp_sample(a, 1000, &p, NULL, 0, NULL, 0, pos, &S, NULL);
		int32_t tb = samp_sample(b, 1000, &p, NULL, 0, NULL, 0, pos, &S, NULL);
		same &= ta == tb;
		if (!seen[ta]++)
			distinct++;
	}
	T_CHECK(same, "same seed and position give the same token");
	T_CHECK(distinct > 200, "300 positions over a flat 1000-token distribution gave only %d tokens", distinct);

	/* different seeds, same positions: the sequences differ */
	int differ = 0;
	for (uint64_t pos = 0; pos < 50; pos++) {
		p.seed = 42;
		memcpy(a, l, sizeof(l));
		int32_t ta = samp_sample(a, 1000, &p, NULL, 0, NULL, 0, pos, &S, NULL);
		p.seed = 43;
		memcpy(a, l, sizeof(l));
		differ += ta != samp_sample(a, 1000, &p, NULL, 0, NULL, 0, pos, &S, NULL);
	}
	T_CHECK(differ > 40, "seeds 42 and 43 agree on %d of 50 positions", 50 - differ);

	/* equal logits: the walk goes in id order, so the token is floor(u * n) */
	float flat[10] = {0};
	int ok = 1;
	for (uint64_t pos = 0; pos < 1000; pos++) {
		int32_t t = sample(flat, 10, &p, pos);
		ok &= t == (int32_t)(samp_uniform(p.seed, pos) * 10.0f);
	}
	T_CHECK(ok, "ties are walked by lower id first");
}

static void test_filters(void)
{
	float l[40];
	for (int i = 0; i < 40; i++)
		l[i] = (float)(2.0 * rnd_normal());
	int32_t am = 0;
	for (int i = 1; i < 40; i++)
		am = l[i] > l[am] ? i : am;
	static const float temps[] = {0.05f, 0.5f, 1.0f, 5.0f, 100.0f};
	struct samp_params p;
	int ok_k = 1, ok_p = 1;
	for (size_t ti = 0; ti < TS_ARRAY_LEN(temps); ti++)
		for (uint64_t pos = 0; pos < 200; pos++) {
			samp_params_default(&p);
			p.temperature = temps[ti];
			p.seed = 1234;
			p.top_k = 1;
			ok_k &= sample(l, 40, &p, pos) == am;
			p.top_k = 0;
			p.top_p = 1e-6f;
			ok_p &= sample(l, 40, &p, pos) == am;
		}
	T_CHECK(ok_k, "top_k = 1 is greedy at every temperature");
	T_CHECK(ok_p, "a tiny top_p keeps only the argmax");

	/* min_p: probabilities 0.5 0.3 0.1 0.06 0.04; min_p = 0.15 keeps
	 * p >= 0.075 (three tokens), 0.5 keeps p >= 0.25 (two) */
	const float pr[5] = {0.5f, 0.3f, 0.1f, 0.06f, 0.04f};
	float lg[5];
	for (int i = 0; i < 5; i++)
		lg[i] = logf(pr[i]);
	samp_params_default(&p);
	p.temperature = 1.0f;
	p.seed = 99;
	static const struct {
		float min_p;
		int keep;
	} mp[] = {{0.15f, 3}, {0.5f, 2}, {0.99f, 1}, {0.07f, 5}};
	for (size_t c = 0; c < TS_ARRAY_LEN(mp); c++) {
		p.min_p = mp[c].min_p;
		int hist[5] = {0};
		const int n = 20000;
		for (int pos = 0; pos < n; pos++)
			hist[sample(lg, 5, &p, (uint64_t)pos)]++;
		double kept = 0;
		for (int i = 0; i < mp[c].keep; i++)
			kept += pr[i];
		int ok = 1;
		for (int i = 0; i < 5; i++) {
			double want = i < mp[c].keep ? n * pr[i] / kept : 0;
			double sd = sqrt(want * (1 - want / n)) + 1e-9;
			ok &= i < mp[c].keep ? fabs(hist[i] - want) < 5 * sd : hist[i] == 0;
		}
		T_CHECK(ok, "min_p %g: hist %d %d %d %d %d, want %d tokens kept", (double)mp[c].min_p, hist[0], hist[1],
			hist[2], hist[3], hist[4], mp[c].keep);
	}
}

static void test_penalties(void)
{
	struct samp_params p;
	samp_params_default(&p);
	p.repetition_penalty = 2.0f;
	float l[6] = {2.0f, -2.0f, 1.0f, 0.5f, -1.0f, 0.0f};
	const int32_t prompt[] = {0, 5, 0};
	const int32_t out[] = {1, 1, 4};
	float lp;
	int32_t t = samp_sample(l, 6, &p, prompt, 3, out, 3, 0, &S, &lp);
	/* prompt token 0: 2 / 2; out tokens 1, 4: multiplied; 5: 0 * 2 = 0 */
	const float want[6] = {1.0f, -4.0f, 1.0f, 0.5f, -2.0f, 0.0f};
	T_CHECK(!memcmp(l, want, sizeof(want)), "repetition: %g %g %g %g %g %g", l[0], l[1], l[2], l[3], l[4], l[5]);
	T_CHECK(t == 0, "repetition: ties 0 and 2 at 1.0, lowest id wins: %d", t);
	double z = 0;
	for (int i = 0; i < 6; i++)
		z += exp((double)want[i] - 1.0);
	T_CHECK(fabs(lp + log(z)) < 1e-6, "repetition logprob %g, want %g", lp, -log(z));
	T_CHECK(counts_zero(&S), "counts zero after repetition penalty");

	/* presence 0.5 + frequency 0.25 * count, generated tokens only */
	samp_params_default(&p);
	p.presence_penalty = 0.5f;
	p.frequency_penalty = 0.25f;
	float l2[5] = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
	const int32_t prompt2[] = {0, 0, 3};
	const int32_t out2[] = {2, 1, 2};
	t = samp_sample(l2, 5, &p, prompt2, 3, out2, 3, 0, &S, NULL);
	const float want2[5] = {1.0f, 0.25f, 0.0f, 1.0f, 1.0f};
	T_CHECK(!memcmp(l2, want2, sizeof(want2)), "presence/frequency: %g %g %g %g %g", l2[0], l2[1], l2[2],
		l2[3], l2[4]);
	T_CHECK(t == 0, "presence/frequency: token %d", t);
	T_CHECK(counts_zero(&S), "counts zero after presence/frequency penalties");

	/* negative penalties reward; both kinds together; out-of-range ids ignored */
	samp_params_default(&p);
	p.repetition_penalty = 1.5f;
	p.presence_penalty = -1.0f;
	p.frequency_penalty = 0.5f;
	float l3[4] = {3.0f, -1.5f, 0.0f, 2.0f};
	const int32_t prompt3[] = {3, -1, 4, 0};
	const int32_t out3[] = {1, 1, 1, 1000000};
	samp_sample(l3, 4, &p, prompt3, 4, out3, 4, 0, &S, NULL);
	/* 0: 3/1.5 = 2; 1: -1.5*1.5 = -2.25, then -(-1 + 1.5) = -2.75; 3: 2/1.5 */
	const float want3[4] = {2.0f, -2.75f, 0.0f, 2.0f / 1.5f};
	T_CHECK(!memcmp(l3, want3, sizeof(want3)), "mixed: %a %a %a %a", l3[0], l3[1], l3[2], l3[3]);
	T_CHECK(counts_zero(&S), "counts zero after mixed penalties");
}

static void test_statistics(void)
{
	const double pr[5] = {0.4, 0.25, 0.2, 0.1, 0.05};
	float lg[5];
	for (int i = 0; i < 5; i++)
		lg[i] = (float)log(pr[i]);
	struct samp_params p;
	static const struct {
		const char *what;
		int top_k;
		float top_p;
		int keep;
	} cases[] = {{"temperature 1", 0, 1.0f, 5}, {"top_k 3", 3, 1.0f, 3}, {"top_p 0.7", 0, 0.7f, 3}};
	for (size_t c = 0; c < TS_ARRAY_LEN(cases); c++) {
		samp_params_default(&p);
		p.temperature = 1.0f;
		p.seed = 0xfeedu + c;
		p.top_k = cases[c].top_k;
		p.top_p = cases[c].top_p;
		const int n = 200000;
		int hist[5] = {0};
		for (int pos = 0; pos < n; pos++)
			hist[sample(lg, 5, &p, (uint64_t)pos)]++;
		double kept = 0, worst = 0;
		for (int i = 0; i < cases[c].keep; i++)
			kept += pr[i];
		int ok = 1;
		for (int i = 0; i < 5; i++) {
			if (i >= cases[c].keep) {
				ok &= hist[i] == 0;
				continue;
			}
			double q = pr[i] / kept, want = n * q, sd = sqrt(n * q * (1 - q));
			double z = fabs(hist[i] - want) / sd;
			worst = z > worst ? z : worst;
			ok &= z < 5;
		}
		printf("  %-14s hist %6d %6d %6d %6d %6d  worst %.2f sigma\n", cases[c].what, hist[0], hist[1], hist[2],
		       hist[3], hist[4], worst);
		T_CHECK(ok, "%s: frequencies off (worst %.2f sigma)", cases[c].what, worst);
	}
}

static void test_uniform(void)
{
	const int n = 1000000;
	double sum = 0;
	float lo = 1, hi = 0;
	int grid = 1, pure = 1;
	for (int i = 0; i < n; i++) {
		float u = samp_uniform(0x5eedu, (uint64_t)i);
		sum += u;
		lo = u < lo ? u : lo;
		hi = u > hi ? u : hi;
		grid &= u * 0x1p24f == (float)(int32_t)(u * 0x1p24f);
	}
	for (int i = 0; i < 1000; i++)
		pure &= samp_uniform((uint64_t)i, 77) == samp_uniform((uint64_t)i, 77);
	double mean = sum / n, sd = sqrt(1.0 / 12 / n);
	T_CHECK(lo >= 0.0f && hi < 1.0f, "uniform range [%g, %g]", (double)lo, (double)hi);
	T_CHECK(fabs(mean - 0.5) < 5 * sd, "uniform mean %g", mean);
	T_CHECK(grid, "uniform has 24-bit granularity");
	T_CHECK(pure, "uniform is a pure function");
	/* seed and counter both matter */
	T_CHECK(samp_uniform(1, 2) != samp_uniform(2, 1) && samp_uniform(0, 0) != samp_uniform(0, 1),
		"uniform depends on seed and counter");
}

static void test_check(void)
{
	struct samp_params p;
	struct ts_err e;
	samp_params_default(&p);
	T_CHECK(samp_params_check(&p, 100, &e) == 0, "default params pass");
	p.temperature = 100.0f;
	p.top_k = 100;
	p.top_p = 1.0f;
	p.min_p = 0.0f;
	p.repetition_penalty = 100.0f;
	p.presence_penalty = -2.0f;
	p.frequency_penalty = 2.0f;
	T_CHECK(samp_params_check(&p, 100, &e) == 0, "boundary values pass");

	static const struct {
		const char *field;
		int which;
		float bad;
	} cases[] = {
		{"temperature", 0, -0.1f}, {"temperature", 0, 100.5f}, {"temperature", 0, NAN},
		{"top_k", 1, -1},          {"top_k", 1, 101},          {"top_p", 2, 0.0f},
		{"top_p", 2, 1.5f},        {"top_p", 2, NAN},          {"min_p", 3, 1.0f},
		{"min_p", 3, -0.01f},      {"repetition_penalty", 4, 0.0f}, {"repetition_penalty", 4, 101.0f},
		{"presence_penalty", 5, 2.5f}, {"presence_penalty", 5, -2.5f}, {"frequency_penalty", 6, -3.0f},
		{"frequency_penalty", 6, INFINITY},
	};
	for (size_t c = 0; c < TS_ARRAY_LEN(cases); c++) {
		samp_params_default(&p);
		switch (cases[c].which) {
		case 0: p.temperature = cases[c].bad; break;
		case 1: p.top_k = (int32_t)cases[c].bad; break;
		case 2: p.top_p = cases[c].bad; break;
		case 3: p.min_p = cases[c].bad; break;
		case 4: p.repetition_penalty = cases[c].bad; break;
		case 5: p.presence_penalty = cases[c].bad; break;
		default: p.frequency_penalty = cases[c].bad; break;
		}
		memset(&e, 0, sizeof(e));
		int rc = samp_params_check(&p, 100, &e);
		T_CHECK(rc == -E_RANGE && e.code == E_RANGE, "%s = %g: rc %d", cases[c].field, (double)cases[c].bad, rc);
		T_HAS(e.msg, cases[c].field);
		T_HAS(e.msg, "accepted");
	}
	samp_params_default(&p);
	p.top_p = 1.5f;
	samp_params_check(&p, 100, &e);
	T_HAS(e.msg, "top_p = 1.5: out of range (accepted (0, 1]");
}

/* Random inputs of every shape against ref_sample. */
static void test_against_reference(void)
{
	static const int vocabs[] = {1, 2, 7, 64, 1000, 5000};
	int n_cases = 0, n_tok = 0, n_lp = 0;
	int32_t prompt[32], out[32];
	for (size_t vi = 0; vi < TS_ARRAY_LEN(vocabs); vi++) {
		int v = vocabs[vi];
		float *l = malloc(sizeof(float) * (size_t)v), *buf = malloc(sizeof(float) * (size_t)v);
		int reps = v >= 1000 ? 150 : 600;
		for (int r = 0; r < reps; r++) {
			double scale = (double[]){0.1, 1, 3, 10, 0.001}[r % 5];
			for (int i = 0; i < v; i++)
				l[i] = (float)(scale * rnd_normal());
			if (r % 3 == 0) /* ties */
				for (int i = 0; i < v; i++)
					l[i] = (float)(int)(l[i] * 2) * 0.5f;
			struct samp_params p;
			samp_params_default(&p);
			p.temperature = (float)(0.2 + 2 * rnd_unit());
			if (r % 7 == 0)
				p.temperature = (float[]){0.0f, 1e-4f, 50.0f}[r / 7 % 3];
			p.seed = rnd64();
			if (rnd64() % 2)
				p.top_k = 1 + (int32_t)(rnd64() % (uint64_t)v);
			if (rnd64() % 2)
				p.top_p = (float)(0.05 + 0.95 * rnd_unit());
			if (rnd64() % 3 == 0)
				p.min_p = (float)(0.3 * rnd_unit());
			if (rnd64() % 3 == 0)
				p.repetition_penalty = (float)(0.5 + 1.5 * rnd_unit());
			if (rnd64() % 3 == 0) {
				p.presence_penalty = (float)(4 * rnd_unit() - 2);
				p.frequency_penalty = (float)(4 * rnd_unit() - 2);
			}
			int np = (int)(rnd64() % 32), no = (int)(rnd64() % 32);
			for (int i = 0; i < np; i++)
				prompt[i] = (int32_t)(rnd64() % (uint64_t)v);
			for (int i = 0; i < no; i++)
				out[i] = (int32_t)(rnd64() % (uint64_t)(v < 8 ? v : 8)); /* repeats */
			uint64_t pos = rnd64() % 100000;
			float lp_ref, lp;
			int32_t want = ref_sample(l, v, &p, prompt, np, out, no, pos, &lp_ref);
			memcpy(buf, l, sizeof(float) * (size_t)v);
			int32_t got = samp_sample(buf, v, &p, prompt, np, out, no, pos, &S, &lp);
			n_cases++;
			n_tok += got == want;
			n_lp += fabsf(lp - lp_ref) <= 1e-5f * (1 + fabsf(lp_ref));
			if (got != want && n_cases - n_tok < 5)
				fprintf(stderr, "  vocab %d T %g k %d p %g minp %g: got %d want %d\n", v,
					(double)p.temperature, p.top_k, (double)p.top_p, (double)p.min_p, got, want);
		}
		free(l);
		free(buf);
	}
	T_CHECK(n_tok == n_cases, "%d of %d tokens differ from the naive reference", n_cases - n_tok, n_cases);
	T_CHECK(n_lp == n_cases, "%d of %d logprobs differ from the naive reference", n_cases - n_lp, n_cases);
	T_CHECK(counts_zero(&S), "counts zero after the random cases");
}

/* No allocation in samp_sample; timing at a real vocab size. */
static void test_no_alloc_and_speed(void)
{
	const int v = 152064;
	float *l = malloc(sizeof(float) * (size_t)v), *buf = malloc(sizeof(float) * (size_t)v);
	for (int i = 0; i < v; i++)
		l[i] = (float)(2.5 * rnd_normal());
	int32_t prompt[64], out[64];
	for (int i = 0; i < 64; i++) {
		prompt[i] = (int32_t)(rnd64() % (uint64_t)v);
		out[i] = (int32_t)(rnd64() % (uint64_t)v);
	}
	static const struct {
		const char *what;
		float temp, top_p, min_p, rep;
		int top_k;
	} cfg[] = {
		{"greedy", 0, 1, 0, 1, 0},         {"T=1", 1, 1, 0, 1, 0},
		{"T=0.7 top_p .9", 0.7f, 0.9f, 0, 1, 0}, {"T=0.8 top_k 50 +pen", 0.8f, 1, 0, 1.1f, 50},
		{"T=1 min_p .05", 1, 1, 0.05f, 1, 0},
	};
	uint64_t a0 = ts_alloc_count();
	for (size_t c = 0; c < TS_ARRAY_LEN(cfg); c++) {
		struct samp_params p;
		samp_params_default(&p);
		p.temperature = cfg[c].temp;
		p.top_p = cfg[c].top_p;
		p.min_p = cfg[c].min_p;
		p.repetition_penalty = cfg[c].rep;
		p.top_k = cfg[c].top_k;
		p.seed = 3;
		const int n = 200;
		double t0 = (double)clock() / CLOCKS_PER_SEC;
		for (int i = 0; i < n; i++) {
			memcpy(buf, l, sizeof(float) * (size_t)v);
			samp_sample(buf, v, &p, prompt, 64, out, 64, (uint64_t)i, &S, (i & 1) ? &(float){0} : NULL);
		}
		double dt = ((double)clock() / CLOCKS_PER_SEC - t0) / n;
		printf("  vocab %d %-22s %.3f ms/token\n", v, cfg[c].what, dt * 1e3);
	}
	/* small vocab, every filter, 1000 calls */
	struct samp_params p;
	samp_params_default(&p);
	p.temperature = 0.9f;
	p.top_k = 20;
	p.top_p = 0.8f;
	p.min_p = 0.01f;
	p.repetition_penalty = 1.2f;
	p.presence_penalty = 0.3f;
	p.frequency_penalty = 0.1f;
	for (int i = 0; i < 1000; i++) {
		memcpy(buf, l, sizeof(float) * 4096);
		samp_sample(buf, 4096, &p, prompt, 8, out, 8, (uint64_t)i, &S, NULL);
	}
	T_CHECK(ts_alloc_count() == a0, "samp_sample allocated %llu times",
		(unsigned long long)(ts_alloc_count() - a0));
	T_CHECK(counts_zero(&S), "counts zero after the timing runs");
	free(l);
	free(buf);
}

int main(void)
{
	double t0 = (double)clock() / CLOCKS_PER_SEC;
	T_CHECK(samp_scratch_init(&S, 152064) == 0, "scratch init");
	T_CHECK(counts_zero(&S), "counts start zero");
	test_greedy();
	test_determinism();
	test_filters();
	test_penalties();
	test_statistics();
	test_uniform();
	test_check();
	test_against_reference();
	test_no_alloc_and_speed();
	samp_scratch_free(&S);
	T_CHECK(S.prob == NULL && S.vocab == 0, "scratch freed");
	printf("  %.2f s\n", (double)clock() / CLOCKS_PER_SEC - t0);
	return T_DONE();
}
