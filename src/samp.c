/* samp: parameter checks and the CPU reference sampler (see samp.h for the
 * order of operations, which is the contract).
 *
 * Probabilities are kept unnormalised: e[i] = exp(x[i] - max x), so the most
 * probable token has e = 1 exactly, min-p compares e with min_p directly, and
 * every mass (top-p, the walk) is a double sum of e.
 *
 * The walk visits tokens by decreasing e, ties by lower id: a total order, so
 * any correct sort gives the same sequence. Sorting the whole vocab per token
 * is wasted work when a walk stops after a few tokens, so the tokens are first
 * scattered into buckets by the exponent of e (two linear passes); each walk
 * (top-p, the draw) skips whole buckets by their mass and sorts only the
 * bucket where it stops. With top-k, a selection inside the bucket holding
 * position k trims the candidates. Sums in skipped buckets run in id order,
 * not walk order; that changes a double in its last bits, which moves a
 * top-p or draw boundary only for inputs that sit on it to ~1e-16.
 */
#include "samp.h"

#include "fmath.h"

#include <math.h> /* INFINITY only */

/* Below this temperature the sampler is greedy (as if temperature were 0). */
#define SAMP_GREEDY_BELOW 1e-5f

/* ---------------------------------------------------------------- params */

void samp_params_default(struct samp_params *p)
{
	memset(p, 0, sizeof(*p));
	p->top_p = 1.0f;
	p->repetition_penalty = 1.0f;
}

/* Each test is written so that NaN fails it. */
int samp_params_check(const struct samp_params *p, int vocab, struct ts_err *e)
{
	if (!(p->temperature >= 0.0f && p->temperature <= 100.0f))
		return ts_errf(e, E_RANGE, "temperature = %g: out of range (accepted [0, 100], 0 = greedy)",
			       (double)p->temperature);
	if (p->top_k < 0 || p->top_k > vocab)
		return ts_errf(e, E_RANGE, "top_k = %d: out of range (accepted 0 = off, or 1..%d, the vocab size)",
			       (int)p->top_k, vocab);
	if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
		return ts_errf(e, E_RANGE, "top_p = %g: out of range (accepted (0, 1], 1 = off)", (double)p->top_p);
	if (!(p->min_p >= 0.0f && p->min_p < 1.0f))
		return ts_errf(e, E_RANGE, "min_p = %g: out of range (accepted [0, 1), 0 = off)", (double)p->min_p);
	if (!(p->repetition_penalty > 0.0f && p->repetition_penalty <= 100.0f))
		return ts_errf(e, E_RANGE, "repetition_penalty = %g: out of range (accepted (0, 100], 1 = off)",
			       (double)p->repetition_penalty);
	if (!(p->presence_penalty >= -2.0f && p->presence_penalty <= 2.0f))
		return ts_errf(e, E_RANGE, "presence_penalty = %g: out of range (accepted [-2, 2], 0 = off)",
			       (double)p->presence_penalty);
	if (!(p->frequency_penalty >= -2.0f && p->frequency_penalty <= 2.0f))
		return ts_errf(e, E_RANGE, "frequency_penalty = %g: out of range (accepted [-2, 2], 0 = off)",
			       (double)p->frequency_penalty);
	return 0;
}

/* ---------------------------------------------------------------- scratch */

int samp_scratch_init(struct samp_scratch *s, int vocab)
{
	memset(s, 0, sizeof(*s));
	if (vocab <= 0)
		return -E_INVAL;
	s->prob = ts_alloc(sizeof(float) * (size_t)vocab);
	s->idx = ts_alloc(sizeof(int32_t) * (size_t)vocab);
	s->count = ts_alloc(sizeof(uint32_t) * (size_t)vocab); /* zeroed */
	if (!s->prob || !s->idx || !s->count) {
		samp_scratch_free(s);
		return -E_NOMEM;
	}
	s->vocab = vocab;
	return 0;
}

void samp_scratch_free(struct samp_scratch *s)
{
	ts_free(s->prob);
	ts_free(s->idx);
	ts_free(s->count);
	memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- random */

/* splitmix64's output function (Steele, Lea, Flood 2014). */
static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* h = mix64(mix64(seed + G) + counter * G), G = 0x9e3779b97f4a7c15, all mod
 * 2^64; u = (h >> 40) / 2^24. For one seed the counters walk a splitmix64
 * stream that starts at a seed-dependent point. */
float samp_uniform(uint64_t seed, uint64_t counter)
{
	const uint64_t g = 0x9e3779b97f4a7c15u;
	uint64_t h = mix64(mix64(seed + g) + counter * g);
	return (float)(h >> 40) * 0x1p-24f;
}

/* ---------------------------------------------------------------- ordering */

/* Token a comes before token b in the walk. e holds no NaN. */
static inline int before(const float *e, int32_t a, int32_t b)
{
	return e[a] > e[b] || (e[a] == e[b] && a < b);
}

static inline void swap_i32(int32_t *a, int i, int j)
{
	int32_t t = a[i];
	a[i] = a[j];
	a[j] = t;
}

static void insertion_sort(int32_t *a, int lo, int hi, const float *e)
{
	for (int i = lo + 1; i < hi; i++) {
		int32_t v = a[i];
		int j = i;
		for (; j > lo && before(e, v, a[j - 1]); j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
}

static void heap_sift(int32_t *a, int n, int i, const float *e)
{
	for (;;) {
		int c = 2 * i + 1;
		if (c >= n)
			return;
		if (c + 1 < n && before(e, a[c], a[c + 1]))
			c++;
		if (!before(e, a[i], a[c]))
			return;
		swap_i32(a, i, c);
		i = c;
	}
}

/* The fallback that bounds sort and select to O(n log n). */
static void heap_sort(int32_t *a, int lo, int hi, const float *e)
{
	int32_t *b = a + lo;
	int n = hi - lo;
	for (int i = n / 2 - 1; i >= 0; i--)
		heap_sift(b, n, i, e);
	for (int m = n - 1; m > 0; m--) {
		swap_i32(b, 0, m);
		heap_sift(b, m, 0, e);
	}
}

/* Hoare partition of a[lo, hi), hi - lo >= 3, median-of-three pivot. Returns
 * j in [lo, hi - 2]: a[lo..j] all precede a[j+1..hi). */
static int partition(int32_t *a, int lo, int hi, const float *e)
{
	int mid = lo + (hi - lo - 1) / 2;
	if (before(e, a[hi - 1], a[lo]))
		swap_i32(a, lo, hi - 1);
	if (before(e, a[mid], a[lo]))
		swap_i32(a, lo, mid);
	if (before(e, a[hi - 1], a[mid]))
		swap_i32(a, mid, hi - 1);
	int32_t p = a[mid];
	int i = lo - 1, j = hi;
	for (;;) {
		do
			i++;
		while (before(e, a[i], p));
		do
			j--;
		while (before(e, p, a[j]));
		if (i >= j)
			return j;
		swap_i32(a, i, j);
	}
}

static int depth_limit(int n)
{
	int d = 2;
	for (; n > 1; n >>= 1)
		d += 2;
	return d;
}

/* Introsort of a[lo, hi). */
static void sort_range(int32_t *a, int lo, int hi, const float *e, int depth)
{
	while (hi - lo > 16) {
		if (depth-- == 0) {
			heap_sort(a, lo, hi, e);
			return;
		}
		int j = partition(a, lo, hi, e);
		if (j + 1 - lo < hi - j - 1) { /* recurse into the smaller side */
			sort_range(a, lo, j + 1, e, depth);
			lo = j + 1;
		} else {
			sort_range(a, j + 1, hi, e, depth);
			hi = j + 1;
		}
	}
	insertion_sort(a, lo, hi, e);
}

/* Moves the k first tokens of a[0, n) to a[0, k), in no particular order. */
static void select_first(int32_t *a, int n, int k, const float *e)
{
	int lo = 0, hi = n, depth = depth_limit(n);
	/* a[0, lo) precede a[lo, n); a[0, hi) precede a[hi, n); lo <= k <= hi */
	while (hi - lo > 16) {
		if (depth-- == 0) {
			heap_sort(a, lo, hi, e);
			return;
		}
		int j = partition(a, lo, hi, e);
		if (k <= j + 1)
			hi = j + 1;
		else
			lo = j + 1;
	}
	insertion_sort(a, lo, hi, e);
}

/* The walk order, in buckets: bucket b holds the candidates whose e has an
 * exponent of -2b or -2b-1 (e in [2^-(2b+1), 2^(1-2b))), the last one every
 * e below 2^-29, zero included. Every token of a bucket precedes every
 * token of the next, so a bucket is sorted only when a walk stops inside it;
 * the others are skipped by their mass. */
#define SAMP_NB 16

struct order {
	const float *e;              /* (vocab) unnormalised probabilities */
	int32_t *idx;                /* (vocab) candidates, bucket by bucket */
	int n;                       /* candidates: idx[0, n) */
	int nb;                      /* buckets in use */
	int start[SAMP_NB + 1];      /* bucket b is idx[start[b], start[b + 1]) */
	double mass[SAMP_NB];        /* sum of e over bucket b */
	uint32_t sorted;             /* bit b: bucket b is in walk order */
};

static inline int bucket_of(float v) /* v in [0, 1] */
{
	uint32_t u;
	memcpy(&u, &v, 4);
	int b = (127 - (int)(u >> 23)) >> 1;
	return b < SAMP_NB - 1 ? b : SAMP_NB - 1;
}

static void order_sort(struct order *o, int b)
{
	if ((o->sorted >> b) & 1)
		return;
	int lo = o->start[b], hi = o->start[b + 1];
	sort_range(o->idx, lo, hi, o->e, depth_limit(hi - lo));
	o->sorted |= 1u << b;
}

/* Walks positions [0, lim) until the running mass reaches x (exceeds it if
 * strict). Returns the number of tokens walked, with their mass in *cum, or
 * -1 (mass of all lim tokens in *cum) if it never does. */
static int order_cross(struct order *o, int lim, double x, int strict, double *cum)
{
	double c = 0.0;
	for (int b = 0; b < o->nb && o->start[b] < lim; b++) {
		int lo = o->start[b], hi = o->start[b + 1];
		if (hi <= lim) {
			double next = c + o->mass[b];
			if (strict ? next <= x : next < x) {
				c = next;
				continue;
			}
		}
		order_sort(o, b);
		for (int i = lo; i < hi && i < lim; i++) {
			c += o->e[o->idx[i]];
			if (strict ? c > x : c >= x) {
				*cum = c;
				return i + 1;
			}
		}
	}
	*cum = c;
	return -1;
}

/* Mass of the first n positions. */
static double order_mass(struct order *o, int n)
{
	double c = 0.0;
	for (int b = 0; b < o->nb && o->start[b] < n; b++) {
		if (o->start[b + 1] <= n) {
			c += o->mass[b];
			continue;
		}
		order_sort(o, b);
		for (int i = o->start[b]; i < n; i++)
			c += o->e[o->idx[i]];
	}
	return c;
}

/* The bucket holding position i. */
static int order_bucket(const struct order *o, int i)
{
	int b = 0;
	while (o->start[b + 1] <= i)
		b++;
	return b;
}

/* ---------------------------------------------------------------- sampler */

static inline int valid_id(int32_t t, int vocab)
{
	return t >= 0 && t < vocab; /* ids were checked at admission; skip, never crash */
}

/* Steps 1 and 2 of samp.h. count[] is zero on entry and on return: each pass
 * counts, then applies once per distinct token while zeroing its count. */
static void apply_penalties(float *logits, int vocab, const struct samp_params *p, const int32_t *prompt,
			    int n_prompt, const int32_t *out, int n_out, uint32_t *count)
{
	if (p->repetition_penalty != 1.0f) {
		const float r = p->repetition_penalty;
		const int32_t *lists[2] = {prompt, out};
		const int lens[2] = {n_prompt, n_out};
		for (int l = 0; l < 2; l++)
			for (int i = 0; i < lens[l]; i++)
				if (valid_id(lists[l][i], vocab))
					count[lists[l][i]] = 1;
		for (int l = 0; l < 2; l++)
			for (int i = 0; i < lens[l]; i++) {
				int32_t t = lists[l][i];
				if (!valid_id(t, vocab) || !count[t])
					continue;
				count[t] = 0;
				logits[t] = logits[t] > 0.0f ? logits[t] / r : logits[t] * r;
			}
	}
	if (p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f) {
		for (int i = 0; i < n_out; i++)
			if (valid_id(out[i], vocab))
				count[out[i]]++;
		for (int i = 0; i < n_out; i++) {
			int32_t t = out[i];
			if (!valid_id(t, vocab) || !count[t])
				continue;
			logits[t] -= p->presence_penalty + p->frequency_penalty * (float)count[t];
			count[t] = 0;
		}
	}
}

/* First maximum, NaN skipped; 0 if every logit is NaN. */
static int32_t argmax(const float *x, int n)
{
	int32_t best = -1;
	float bv = 0.0f;
	for (int i = 0; i < n; i++) {
		float v = x[i];
		if (v == v && (best < 0 || v > bv)) {
			best = i;
			bv = v;
		}
	}
	return best < 0 ? 0 : best;
}

/* e = exp(x - m) for m = max x: +-inf logits give 1 where x == m, NaN 0. */
static inline float exp_shifted(float x, float m)
{
	float d = x - m;
	return x == m ? 1.0f : d == d ? fm_expf(d) : 0.0f;
}

static float max_of(const float *x, int n)
{
	float m = -INFINITY;
	for (int i = 0; i < n; i++)
		m = x[i] > m ? x[i] : m;
	return m;
}

/* log softmax(x)[c] given m = max x and sum = sum exp(x - m). */
static float log_prob(const float *x, int32_t c, float m, double sum)
{
	double d = x[c] == m ? 0.0 : (double)x[c] - (double)m;
	return (float)(d - fm_log(sum));
}

int32_t samp_sample(float *logits, int vocab, const struct samp_params *p, const int32_t *prompt,
		    int n_prompt, const int32_t *out, int n_out, uint64_t pos, struct samp_scratch *s,
		    float *logprob)
{
	if (NEVER(vocab <= 0 || vocab > s->vocab))
		return -E_INVAL;
	float *e = s->prob;
	int32_t *idx = s->idx;

	/* 1, 2: penalties */
	apply_penalties(logits, vocab, p, prompt, n_prompt, out, n_out, s->count);

	/* 3: greedy */
	if (!(p->temperature >= SAMP_GREEDY_BELOW)) {
		int32_t best = argmax(logits, vocab);
		if (logprob) {
			float m = max_of(logits, vocab);
			double sum = 0.0;
			for (int i = 0; i < vocab; i++)
				sum += exp_shifted(logits[i], m);
			*logprob = log_prob(logits, best, m, sum);
		}
		return best;
	}

	/* 4: temperature; e = exp(x - max), bucketed */
	const float temp = p->temperature;
	for (int i = 0; i < vocab; i++)
		logits[i] /= temp;
	float m = max_of(logits, vocab);
	struct order o = {.e = e, .idx = idx, .n = vocab, .nb = SAMP_NB};
	double sum = 0.0;
	for (int i = 0; i < vocab; i++) {
		float v = exp_shifted(logits[i], m);
		int b = bucket_of(v);
		e[i] = v;
		sum += v;
		o.start[b + 1]++;
		o.mass[b] += v;
	}
	if (!(sum > 0.0)) /* every logit NaN */
		return argmax(logits, vocab);
	int fill[SAMP_NB];
	for (int b = 0; b < SAMP_NB; b++) {
		o.start[b + 1] += o.start[b];
		fill[b] = o.start[b];
	}
	for (int i = 0; i < vocab; i++)
		idx[fill[bucket_of(e[i])]++] = i;

	/* top-k: the candidates end inside one bucket; select there */
	double cand_sum = sum;
	if (p->top_k > 0 && p->top_k < vocab) {
		int k = p->top_k, b = order_bucket(&o, k - 1);
		int lo = o.start[b], hi = o.start[b + 1];
		if (k < hi)
			select_first(idx + lo, hi - lo, k - lo, e);
		o.start[b + 1] = o.n = k;
		o.nb = b + 1;
		o.mass[b] = 0.0;
		for (int i = lo; i < k; i++)
			o.mass[b] += e[idx[i]];
		cand_sum = 0.0;
		for (int c = 0; c <= b; c++)
			cand_sum += o.mass[c];
	}

	/* top-p: the shortest prefix whose mass reaches top_p */
	int n_keep = o.n;
	double kept_sum = cand_sum;
	if (p->top_p < 1.0f) {
		int n = order_cross(&o, o.n, (double)p->top_p * cand_sum, 0, &kept_sum);
		if (n > 0)
			n_keep = n;
	}

	/* min-p: drop e < min_p * (e of the first token, = 1), a suffix */
	if (p->min_p > 0.0f) {
		int bm = bucket_of(p->min_p), n_min = o.n;
		if (bm < o.nb) {
			n_min = o.start[bm];
			for (int i = o.start[bm]; i < o.start[bm + 1]; i++)
				n_min += e[idx[i]] >= p->min_p;
		}
		if (n_min < n_keep) {
			n_keep = n_min; /* >= 1: the first token has e = 1 */
			kept_sum = order_mass(&o, n_keep);
		}
	}

	/* 5: walk until the running mass exceeds u * kept mass */
	double target = (double)samp_uniform(p->seed, pos) * kept_sum, cum;
	int n = order_cross(&o, n_keep, target, 1, &cum);
	int32_t tok;
	if (n > 0) {
		tok = idx[n - 1];
	} else { /* rounding ran past the end: the last kept token with mass */
		int b = order_bucket(&o, n_keep - 1);
		while (!(o.mass[b] > 0.0)) /* bucket 0 holds the e = 1 token */
			b--;
		order_sort(&o, b);
		int i = TS_MIN(o.start[b + 1], n_keep) - 1;
		while (!(e[idx[i]] > 0.0f)) /* positive e sort first */
			i--;
		tok = idx[i];
	}
	if (logprob)
		*logprob = log_prob(logits, tok, m, sum);
	return tok;
}
