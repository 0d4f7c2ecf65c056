/* t_fmath: src/fmath against libm (tests may link it; src/ may not).
 * References: double libm for the float functions (its own error is ~2^-29 of
 * a float ulp), long double libm for fm_exp/fm_log. Random arguments across
 * each function's range, special values exact, RoPE inv_freq bitwise. */
#include "base.h"
#include "fmath.h"
#include "t.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

static uint64_t rng_state = 0x243f6a8885a308d3u;

static uint64_t rnd64(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static double rnd_unit(void) /* [0, 1) */
{
	return (double)(rnd64() >> 11) * 0x1p-53;
}

static float rnd_uniform(double lo, double hi)
{
	return (float)(lo + (hi - lo) * rnd_unit());
}

static float f_of(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint32_t u_of(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* |got - ref| in units of the float spacing at ref (subnormal spacing below
 * FLT_MIN). Equal infinities and NaN/NaN are 0; anything else against a
 * non-finite reference is 1e9. */
static double ulp_err(float got, double ref)
{
	if (isnan(ref) || isnan(got))
		return isnan(ref) && isnan(got) ? 0 : 1e9;
	float rr = (float)ref;
	if (isinf(rr) || isinf(got))
		return got == rr ? 0 : 1e9;
	int ex;
	frexp(ref, &ex); /* |ref| in [2^(ex-1), 2^ex) */
	if (ref == 0)
		ex = -125;
	int e = ex - 1 < -126 ? -126 : ex - 1;
	return fabs((double)got - ref) / ldexp(1.0, e - 23);
}

/* The same for doubles against a long double reference. */
static double ulp_err_d(double got, long double ref)
{
	if (isnan(ref) || isnan(got))
		return isnan(ref) && isnan(got) ? 0 : 1e9;
	double rr = (double)ref;
	if (isinf(rr) || isinf(got))
		return got == rr ? 0 : 1e9;
	int ex;
	frexpl(ref, &ex);
	if (ref == 0)
		ex = -1021;
	int e = ex - 1 < -1022 ? -1022 : ex - 1;
	return (double)(fabsl((long double)got - ref) / ldexpl(1.0L, e - 52));
}

/* Bitwise equality, any NaN equal to any NaN. */
static int same(float a, float b)
{
	return (isnan(a) && isnan(b)) || u_of(a) == u_of(b);
}

struct acc {
	const char *name;
	double max;
	float worst_x, worst_y;
	long n, n_not_cr; /* samples, results != (float)reference */
};

static void acc_add(struct acc *a, float x, float y, float got, double ref)
{
	double e = ulp_err(got, ref);
	a->n++;
	if (!same(got, (float)ref))
		a->n_not_cr++;
	if (e > a->max) {
		a->max = e;
		a->worst_x = x;
		a->worst_y = y;
	}
}

static void acc_report(struct acc *a, double bound)
{
	printf("  %-22s n=%-8ld max=%.4f ulp  (at %a, %a)  not correctly rounded: %ld\n", a->name, a->n,
	       a->max, a->worst_x, a->worst_y, a->n_not_cr);
	T_CHECK(a->max <= bound, "%s: max error %.4f ulp at x=%a y=%a", a->name, a->max, a->worst_x, a->worst_y);
}

/* ---------------------------------------------------------------- exp */

static void test_exp(void)
{
	struct acc a = {.name = "fm_expf [-104, 89]"}, b = {.name = "fm_expf bits"};
	for (int i = 0; i < 2000000; i++) {
		float x = rnd_uniform(-104, 89);
		acc_add(&a, x, 0, fm_expf(x), exp((double)x));
	}
	for (int i = 0; i < 1000000; i++) { /* every magnitude, both signs, up to 128 */
		float x = f_of((uint32_t)rnd64() & 0xc2ffffffu);
		acc_add(&b, x, 0, fm_expf(x), exp((double)x));
	}
	acc_report(&a, 1.0);
	acc_report(&b, 1.0);

	T_CHECK(same(fm_expf(0.0f), 1.0f), "exp(0)");
	T_CHECK(same(fm_expf(-0.0f), 1.0f), "exp(-0)");
	T_CHECK(same(fm_expf(INFINITY), INFINITY), "exp(inf)");
	T_CHECK(same(fm_expf(-INFINITY), 0.0f), "exp(-inf) = %a", fm_expf(-INFINITY));
	T_CHECK(isnan(fm_expf(NAN)), "exp(nan)");
	T_CHECK(same(fm_expf(1.0f), 0x1.5bf0a8p+1f), "exp(1) = %a", fm_expf(1.0f));
	/* around the overflow threshold 0x1.62e42ep+6 and the underflow ones */
	static const float edge[] = {0x1.62e42ep+6f, 0x1.62e430p+6f, 88.0f, 89.0f, 100.0f, FLT_MAX,
				     -0x1.5d589ep+6f, -0x1.5d58a0p+6f, -0x1.9fe368p+6f, -0x1.9fe36ap+6f,
				     -103.0f, -104.0f, -105.0f, -FLT_MAX, 0x1p-149f, -0x1p-149f, 0x1p-30f};
	for (size_t i = 0; i < TS_ARRAY_LEN(edge); i++) {
		float x = edge[i];
		T_CHECK(same(fm_expf(x), (float)exp((double)x)), "exp(%a) = %a, want %a", x, fm_expf(x),
			(float)exp((double)x));
	}
	T_CHECK(isinf(fm_expf(0x1.62e430p+6f)), "overflow to inf");
	T_CHECK(fm_expf(-0x1.9fe36ap+6f) == 0.0f, "underflow to 0");

	struct acc d = {.name = "fm_exp (double)"};
	double dmax = 0;
	for (int i = 0; i < 300000; i++) {
		double x = -745.5 + 1455.5 * rnd_unit();
		double e = ulp_err_d(fm_exp(x), expl((long double)x));
		if (e > dmax) {
			dmax = e;
			d.worst_x = (float)x;
		}
	}
	printf("  %-22s n=%-8d max=%.4f ulp (double)\n", d.name, 300000, dmax);
	T_CHECK(dmax <= 2.0, "fm_exp: %.4f ulp", dmax);
	T_CHECK(fm_exp(-INFINITY) == 0 && isinf(fm_exp(INFINITY)) && isnan(fm_exp(NAN)) && fm_exp(0) == 1,
		"fm_exp specials");
	T_CHECK(fm_exp(-745.2) == 0 && fm_exp(-745.0) == 0x1p-1074 && isinf(fm_exp(709.8)) &&
			!isinf(fm_exp(709.78)),
		"fm_exp thresholds");
}

/* ---------------------------------------------------------------- log */

static void test_log(void)
{
	struct acc a = {.name = "fm_logf all x > 0"}, b = {.name = "fm_logf [0.5, 2]"};
	for (int i = 0; i < 2000000; i++) {
		float x = f_of(1 + (uint32_t)(rnd64() % 0x7f7fffffu)); /* positive finite, incl. subnormals */
		acc_add(&a, x, 0, fm_logf(x), log((double)x));
	}
	for (int i = 0; i < 500000; i++) {
		float x = rnd_uniform(0.5, 2.0);
		acc_add(&b, x, 0, fm_logf(x), log((double)x));
	}
	acc_report(&a, 1.0);
	acc_report(&b, 1.0);

	T_CHECK(same(fm_logf(1.0f), 0.0f), "log(1) = %a", fm_logf(1.0f));
	T_CHECK(same(fm_logf(0.0f), -INFINITY), "log(0)");
	T_CHECK(same(fm_logf(-0.0f), -INFINITY), "log(-0)");
	T_CHECK(isnan(fm_logf(-1.0f)), "log(-1)");
	T_CHECK(isnan(fm_logf(-0x1p-149f)), "log(-tiny)");
	T_CHECK(isnan(fm_logf(-INFINITY)), "log(-inf)");
	T_CHECK(same(fm_logf(INFINITY), INFINITY), "log(inf)");
	T_CHECK(isnan(fm_logf(NAN)), "log(nan)");
	static const float edge[] = {0x1p-149f, 0x1p-126f, 0x1.fffffep-127f, FLT_MAX, 0x1.000002p+0f,
				     0x1.fffffep-1f, 2.0f, 0.5f, 0x1.6a09e6p+0f, 0x1.6a09e8p+0f, 2.7182817f};
	for (size_t i = 0; i < TS_ARRAY_LEN(edge); i++) {
		float x = edge[i];
		T_CHECK(same(fm_logf(x), (float)log((double)x)), "log(%a) = %a, want %a", x, fm_logf(x),
			(float)log((double)x));
	}

	double dmax = 0, dworst = 0;
	for (int i = 0; i < 300000; i++) {
		uint64_t u = 1 + rnd64() % 0x7fefffffffffffffu; /* positive finite doubles */
		double x;
		memcpy(&x, &u, 8);
		if (i & 1)
			x = 0.5 + 1.5 * rnd_unit();
		double e = ulp_err_d(fm_log(x), logl((long double)x));
		if (e > dmax) {
			dmax = e;
			dworst = x;
		}
	}
	printf("  %-22s n=%-8d max=%.4f ulp (double, at %a)\n", "fm_log (double)", 300000, dmax, dworst);
	T_CHECK(dmax <= 2.0, "fm_log: %.4f ulp at %a", dmax, dworst);
	T_CHECK(fm_log(1.0) == 0 && isinf(fm_log(0.0)) && fm_log(0.0) < 0 && isnan(fm_log(-1.0)) &&
			isnan(fm_log(NAN)) && isinf(fm_log(INFINITY)) && fm_log(0x1p-1074) == log(0x1p-1074),
		"fm_log specials");
}

/* ---------------------------------------------------------------- sin, cos */

static void sc_add(struct acc *as, struct acc *ac, float x)
{
	float s, c;
	fm_sincosf(x, &s, &c);
	acc_add(as, x, 0, s, sin((double)x));
	acc_add(ac, x, 0, c, cos((double)x));
}

static void test_sincos(void)
{
	static const struct {
		const char *sn, *cn;
		double lim;
		int n;
	} ranges[] = {
		{"fm_sincosf sin |x|<10", "fm_sincosf cos |x|<10", 10, 1000000},
		{"fm_sincosf sin |x|<1e4", "fm_sincosf cos |x|<1e4", 1e4, 1000000},
		{"fm_sincosf sin |x|<1e6", "fm_sincosf cos |x|<1e6", 1e6, 1000000},
	};
	for (size_t r = 0; r < TS_ARRAY_LEN(ranges); r++) {
		struct acc as = {.name = ranges[r].sn}, ac = {.name = ranges[r].cn};
		for (int i = 0; i < ranges[r].n; i++)
			sc_add(&as, &ac, rnd_uniform(-ranges[r].lim, ranges[r].lim));
		acc_report(&as, 1.0);
		acc_report(&ac, 1.0);
	}
	/* every finite float (mostly huge: the Payne-Hanek path), and the floats
	 * around the switch to it at 2^20 pi/2 */
	struct acc as = {.name = "fm_sincosf sin any x"}, ac = {.name = "fm_sincosf cos any x"};
	for (int i = 0; i < 500000; i++) {
		uint32_t u = (uint32_t)rnd64();
		if ((u & 0x7f800000u) == 0x7f800000u)
			continue;
		sc_add(&as, &ac, f_of(u));
	}
	for (int i = -20000; i < 20000; i++)
		sc_add(&as, &ac, f_of((uint32_t)(0x49c90fdb + i)));
	/* near multiples of pi/2, where the reduced argument is small */
	for (int k = 1; k < 20000; k++) {
		float x = (float)(k * 1.5707963267948966 * (k % 7 == 0 ? 97 : 1));
		for (int d = -2; d <= 2; d++)
			sc_add(&as, &ac, f_of(u_of(x) + (uint32_t)d));
	}
	acc_report(&as, 1.0);
	acc_report(&ac, 1.0);

	float s, c;
	fm_sincosf(0.0f, &s, &c);
	T_CHECK(same(s, 0.0f) && same(c, 1.0f), "sincos(0) = %a %a", s, c);
	fm_sincosf(-0.0f, &s, &c);
	T_CHECK(same(s, -0.0f) && same(c, 1.0f), "sincos(-0) = %a %a", s, c);
	fm_sincosf(0x1p-149f, &s, &c);
	T_CHECK(same(s, 0x1p-149f) && same(c, 1.0f), "sincos(tiny) = %a %a", s, c);
	fm_sincosf(INFINITY, &s, &c);
	T_CHECK(isnan(s) && isnan(c), "sincos(inf)");
	fm_sincosf(-INFINITY, &s, &c);
	T_CHECK(isnan(s) && isnan(c), "sincos(-inf)");
	fm_sincosf(NAN, &s, &c);
	T_CHECK(isnan(s) && isnan(c), "sincos(nan)");
	static const float edge[] = {FLT_MAX, -FLT_MAX, 0x1.921fb6p+0f, 0x1.921fb6p+1f, 0x1.921fb6p+2f,
				     0x1.921fb6p+20f, 16367173.0f * 0x1p72f, 1e6f, 1e22f, 3.1415927f};
	for (size_t i = 0; i < TS_ARRAY_LEN(edge); i++) {
		fm_sincosf(edge[i], &s, &c);
		T_CHECK(same(s, (float)sin((double)edge[i])) && same(c, (float)cos((double)edge[i])),
			"sincos(%a) = %a %a, want %a %a", edge[i], s, c, (float)sin((double)edge[i]),
			(float)cos((double)edge[i]));
	}
}

/* ---------------------------------------------------------------- pow, tanh, sqrt */

static void test_pow(void)
{
	/* RoPE: inv_freq[i] = 1 / theta^(2i/d) in float32, as HF computes it. */
	static const float thetas[] = {10000.0f, 500000.0f, 1e6f, 1e4f * 8, 5e6f, 150000.0f};
	static const int dims[] = {32, 64, 80, 96, 128, 160, 256};
	int n_rope = 0, n_rope_same = 0, n_rope_libm = 0;
	struct acc ar = {.name = "fm_powf RoPE"};
	for (size_t t = 0; t < TS_ARRAY_LEN(thetas); t++)
		for (size_t d = 0; d < TS_ARRAY_LEN(dims); d++)
			for (int i = 0; i < dims[d] / 2; i++) {
				float y = (float)(2 * i) / (float)dims[d];
				float got = fm_powf(thetas[t], y);
				double ref = pow((double)thetas[t], (double)y);
				acc_add(&ar, thetas[t], y, got, ref);
				n_rope++;
				n_rope_same += 1.0f / got == 1.0f / (float)ref;
				n_rope_libm += got == powf(thetas[t], y);
			}
	acc_report(&ar, 1.0);
	printf("  RoPE inv_freq: %d/%d equal to 1/(float)pow(double), %d/%d powf equal to glibc powf\n",
	       n_rope_same, n_rope, n_rope_libm, n_rope);
	T_CHECK(n_rope_same == n_rope, "RoPE inv_freq: %d of %d differ", n_rope - n_rope_same, n_rope);

	struct acc a = {.name = "fm_powf x>0 random"}, b = {.name = "fm_powf theta^(k/d)"};
	for (int i = 0; i < 1000000; i++) {
		float x = f_of(1 + (uint32_t)(rnd64() % 0x7f7fffffu));
		float y = rnd_uniform(-4, 4);
		if (i & 1) {
			x = rnd_uniform(0, 100);
			y = rnd_uniform(-30, 30);
		}
		acc_add(&a, x, y, fm_powf(x, y), pow((double)x, (double)y));
	}
	for (int i = 0; i < 200000; i++) {
		float x = rnd_uniform(1000, 2e6);
		float y = (float)(int)(rnd64() % 512) / (float)(64 + (int)(rnd64() % 448));
		acc_add(&b, x, y, fm_powf(x, y), pow((double)x, (double)y));
	}
	acc_report(&a, 1.0);
	acc_report(&b, 1.0);

	/* C99 Annex F special cases, checked bitwise against glibc powf */
	static const float sv[] = {0.0f,     -0.0f, 1.0f,     -1.0f,     0.5f,     -0.5f,    2.0f,
				   -2.0f,    3.0f,  -3.0f,    INFINITY,  -INFINITY, NAN,      0x1p-149f,
				   1e30f,    -1e30f, 0x1p24f, -0x1p24f,  0x1.000002p+24f, 1.5f, -1.5f};
	int n_bad = 0;
	for (size_t i = 0; i < TS_ARRAY_LEN(sv); i++)
		for (size_t j = 0; j < TS_ARRAY_LEN(sv); j++) {
			float got = fm_powf(sv[i], sv[j]), want = powf(sv[i], sv[j]);
			if (!same(got, want)) {
				n_bad++;
				fprintf(stderr, "  pow(%a, %a) = %a, want %a\n", sv[i], sv[j], got, want);
			}
		}
	T_CHECK(n_bad == 0, "%d special pow cases differ from glibc", n_bad);
}

static void test_tanh(void)
{
	struct acc a = {.name = "fm_tanhf [-12, 12]"}, b = {.name = "fm_tanhf bits"};
	for (int i = 0; i < 500000; i++) {
		float x = rnd_uniform(-12, 12);
		acc_add(&a, x, 0, fm_tanhf(x), tanh((double)x));
	}
	for (int i = 0; i < 500000; i++) {
		float x = f_of((uint32_t)rnd64() & 0xc1ffffffu); /* |x| < 32, every magnitude */
		acc_add(&b, x, 0, fm_tanhf(x), tanh((double)x));
	}
	acc_report(&a, 1.0);
	acc_report(&b, 1.0);
	T_CHECK(same(fm_tanhf(0.0f), 0.0f) && same(fm_tanhf(-0.0f), -0.0f), "tanh(+-0)");
	T_CHECK(same(fm_tanhf(INFINITY), 1.0f) && same(fm_tanhf(-INFINITY), -1.0f), "tanh(+-inf)");
	T_CHECK(isnan(fm_tanhf(NAN)), "tanh(nan)");
	T_CHECK(same(fm_tanhf(0x1p-149f), 0x1p-149f), "tanh(tiny)");
}

static void test_sqrt(void)
{
	int n_bad = 0, n_bad_soft = 0;
	for (int i = 0; i < 1000000; i++) {
		float x = f_of((uint32_t)rnd64() & 0x7fffffffu);
		if (isnan(x))
			continue;
		float want = (float)sqrt((double)x); /* double sqrt of a float rounds correctly to float */
		n_bad += !same(fm_sqrtf(x), want);
		n_bad_soft += !same(fm_sqrtf_soft(x), want);
	}
	T_CHECK(n_bad == 0, "fm_sqrtf: %d inexact", n_bad);
	T_CHECK(n_bad_soft == 0, "fm_sqrtf_soft: %d inexact", n_bad_soft);
	static const float sv[] = {0.0f, -0.0f, -1.0f, INFINITY, -INFINITY, NAN, 0x1p-149f, FLT_MAX, 4.0f, 2.0f};
	for (size_t i = 0; i < TS_ARRAY_LEN(sv); i++) {
		float want = sqrtf(sv[i]);
		T_CHECK(same(fm_sqrtf(sv[i]), want), "sqrt(%a) = %a", sv[i], fm_sqrtf(sv[i]));
		T_CHECK(same(fm_sqrtf_soft(sv[i]), want), "sqrt_soft(%a) = %a", sv[i], fm_sqrtf_soft(sv[i]));
	}
}

int main(void)
{
	double t0 = (double)clock() / CLOCKS_PER_SEC;
	test_exp();
	test_log();
	test_sincos();
	test_pow();
	test_tanh();
	test_sqrt();
	printf("  %.2f s\n", (double)clock() / CLOCKS_PER_SEC - t0);
	return T_DONE();
}
