/* fmath: log, sin/cos, pow, tanh, sqrt fallback, and double exp/log.
 * Every float function evaluates in double and rounds once at the end; see
 * fmath.h for the measured errors. Polynomial coefficients are Chebyshev fits
 * (mpmath.chebyfit) rounded to double; the error quoted with each is that of
 * the rounded polynomial on its interval. */
#include "fmath.h"

#include <math.h> /* INFINITY and NAN only: no libm calls in src/ */

static inline uint64_t dbits(double x)
{
	uint64_t u;
	memcpy(&u, &x, 8);
	return u;
}

static inline double dfrom(uint64_t u)
{
	double x;
	memcpy(&x, &u, 8);
	return x;
}

static inline uint32_t fbits(float x)
{
	uint32_t u;
	memcpy(&u, &x, 4);
	return u;
}

static inline float ffrom(uint32_t u)
{
	float x;
	memcpy(&x, &u, 4);
	return x;
}

/* 2^n for n in [-1022, 1023]. */
static inline double pow2i(int n)
{
	return dfrom((uint64_t)(n + 1023) << 52);
}

/* ln 2 split so that k * LN2_HI is exact for |k| < 2^11. */
#define LN2_HI 0x1.62e42fee00000p-1
#define LN2_LO 0x1.a39ef35793c76p-33
#define INV_LN2 0x1.71547652b82fep+0

/* ---------------------------------------------------------------- exp, log */

double fm_exp(double x)
{
	if (x > 0x1.62e42fefa39efp+9) /* above log(DBL_MAX) */
		return INFINITY;
	if (x != x)
		return x + x;
	if (x < -0x1.74910d52d3051p+9) /* below log(2^-1075) */
		return 0.0;
	/* x = k ln2 + r, |r| <= ln2/2; hi is exact (k has at most 11 bits). */
	double kd = x * INV_LN2 + 0x1.8p52;
	kd -= 0x1.8p52;
	int k = (int)kd;
	double r = (x - kd * LN2_HI) - kd * LN2_LO;
	/* Taylor to r^13: the next term is below 4.2e-18 for |r| <= 0.347. */
	double q = 1.0 / 6227020800.0; /* 1/13! */
	q = 1.0 / 479001600.0 + r * q;
	q = 1.0 / 39916800.0 + r * q;
	q = 1.0 / 3628800.0 + r * q;
	q = 1.0 / 362880.0 + r * q;
	q = 1.0 / 40320.0 + r * q;
	q = 1.0 / 5040.0 + r * q;
	q = 1.0 / 720.0 + r * q;
	q = 1.0 / 120.0 + r * q;
	q = 1.0 / 24.0 + r * q;
	q = 1.0 / 6.0 + r * q;
	q = 0.5 + r * q;
	double p = 1.0 + (r + r * r * q);
	if (k > 1023)
		return p * 2.0 * pow2i(k - 1);
	if (k < -1021) /* one rounding, at the last multiply, into subnormals */
		return p * pow2i(k + 1000) * 0x1p-1000;
	return p * pow2i(k);
}

double fm_log(double x)
{
	uint64_t ix = dbits(x);
	int e = 0;
	if (ix - 0x0010000000000000u >= 0x7ff0000000000000u - 0x0010000000000000u) {
		/* not a positive normal finite number */
		if (x != x)
			return x + x;
		if ((ix << 1) == 0)
			return -INFINITY;
		if (ix >> 63)
			return NAN;
		if (ix == 0x7ff0000000000000u)
			return x;
		x *= 0x1p54; /* subnormal */
		ix = dbits(x);
		e = -54;
	}
	/* x = 2^e m, m in [sqrt(1/2), sqrt(2)) */
	e += (int)(ix >> 52) - 1023;
	uint64_t mb = ix & 0x000fffffffffffffu;
	if (mb > 0x6a09e667f3bcdu) { /* mantissa of sqrt(2) */
		mb |= 0x3fe0000000000000u;
		e++;
	} else {
		mb |= 0x3ff0000000000000u;
	}
	/* log(1 + f) = 2 atanh(s) = f - s (f - R), s = f / (2 + f),
	 * R = sum_k 2 s^2k / (2k + 1); |s| <= 0.1716 so ten terms leave 6e-19. */
	double f = dfrom(mb) - 1.0;
	double s = f / (2.0 + f);
	double z = s * s;
	double R = 2.0 / 21;
	R = 2.0 / 19 + z * R;
	R = 2.0 / 17 + z * R;
	R = 2.0 / 15 + z * R;
	R = 2.0 / 13 + z * R;
	R = 2.0 / 11 + z * R;
	R = 2.0 / 9 + z * R;
	R = 2.0 / 7 + z * R;
	R = 2.0 / 5 + z * R;
	R = 2.0 / 3 + z * R;
	R *= z;
	double ed = e;
	return ed * LN2_HI + (f - (s * (f - R) - ed * LN2_LO));
}

float fm_logf(float x)
{
	return (float)fm_log((double)x);
}

/* ---------------------------------------------------------------- sin, cos */

/* sin(r) on [-pi/4, pi/4], relative error 1.9e-14. */
static inline double sin_k(double r)
{
	double z = r * r;
	double p = -0x1.a019fd9b35ee5p-13 + z * (0x1.71d9a9f41c5a9p-19 + z * -0x1.aa285788aaa42p-26);
	return r + r * z * (-0x1.555555555516bp-3 + z * (0x1.1111110fd3d43p-7 + z * p));
}

/* cos(r) on [-pi/4, pi/4], relative error 3.1e-13. */
static inline double cos_k(double r)
{
	double z = r * r;
	double p = -0x1.6c16bae5ef6d4p-10 + z * (0x1.a01298d866458p-16 + z * -0x1.2474e1a97d143p-22);
	return 1.0 + z * (-0x1.fffffffffe697p-2 + z * (0x1.555555514f774p-5 + z * p));
}

/* pi/2 in three parts: 33 bits, 33 bits, 53 bits. n * PIO2_1 and n * PIO2_2
 * are exact for |n| <= 2^20. */
#define PIO2_1 0x1.921fb544p+0
#define PIO2_2 0x1.0b4611a6p-34
#define PIO2_3 0x1.3198a2e037073p-69
#define PIO2 0x1.921fb54442d18p+0

/* The bits of 2/pi after the binary point, 32 to a word, MSB first, after
 * one zero word so that windows may start a few bits before the point. */
static const uint32_t two_over_pi[13] = {
	0x00000000, 0xa2f9836e, 0x4e441529, 0xfc2757d1, 0xf534ddc0,
	0xdb629599, 0x3c439041, 0xfe5163ab, 0xdebbc561, 0xb7246e3a,
	0x424dd2e0, 0x06492eea, 0x09d1921c,
};

/* Payne-Hanek for a float |x| >= 2^20: x = m 2^e with a 24-bit integer m, so
 * x * 2/pi mod 4 needs only the 128 bits of 2/pi starting at weight 2^-(e-1)
 * (earlier bits contribute multiples of 4). Returns r in [-pi/4, pi/4] and
 * the quadrant in *q; the neglected tail is below 2^-102 of a quarter turn. */
static double reduce_large(uint32_t ix, int *q)
{
	int e = (int)(ix >> 23) - 150;
	uint32_t m = (ix & 0x7fffffu) | 0x800000u;
	int g = e + 30; /* bit index of weight 2^-(e-1) in two_over_pi[] */
	int wi = g >> 5, sh = g & 31;
	uint32_t w[4];
	for (int j = 0; j < 4; j++) {
		uint64_t pair = ((uint64_t)two_over_pi[wi + j] << 32) | two_over_pi[wi + j + 1];
		w[j] = (uint32_t)(pair >> (32 - sh));
	}
	/* P = m * W mod 2^128, words MSB first; x * 2/pi mod 4 = P / 2^126 */
	uint32_t p[4];
	uint64_t acc = 0;
	for (int j = 3; j >= 0; j--) {
		acc += (uint64_t)m * w[j];
		p[j] = (uint32_t)acc;
		acc >>= 32;
	}
	int quad = (int)(p[0] >> 30);
	uint64_t frac = ((uint64_t)(p[0] & 0x3fffffffu) << 34) | ((uint64_t)p[1] << 2) | (p[2] >> 30);
	if (frac >> 63) /* frac >= 1/2: round to the next quadrant */
		quad++;
	*q = quad & 3;
	return (double)(int64_t)frac * 0x1p-64 * PIO2;
}

void fm_sincosf(float x, float *s, float *c)
{
	uint32_t ix = fbits(x) & 0x7fffffffu;
	double r;
	int q;
	if (ix >= 0x7f800000u) { /* inf or NaN */
		*s = *c = x - x;
		return;
	}
	if (ix < 0x39800000u) { /* |x| < 2^-12: sin x and cos x round to x and 1 */
		*s = x;
		*c = 1.0f;
		return;
	}
	if (ix < 0x3f490fdbu) { /* |x| < pi/4 */
		r = x;
		q = 0;
	} else if (ix < 0x49c90fdbu) { /* |x| < 2^20 pi/2 */
		double xd = x;
		double nd = xd * 0x1.45f306dc9c883p-1 + 0x1.8p52; /* x * 2/pi */
		nd -= 0x1.8p52;
		r = ((xd - nd * PIO2_1) - nd * PIO2_2) - nd * PIO2_3;
		q = (int)nd & 3;
	} else {
		r = reduce_large(ix, &q);
		if (x < 0) {
			r = -r;
			q = -q & 3;
		}
	}
	double sr = sin_k(r), cr = cos_k(r);
	switch (q) {
	case 0:
		*s = (float)sr;
		*c = (float)cr;
		break;
	case 1:
		*s = (float)cr;
		*c = (float)-sr;
		break;
	case 2:
		*s = (float)-sr;
		*c = (float)-cr;
		break;
	default:
		*s = (float)-cr;
		*c = (float)sr;
		break;
	}
}

/* ---------------------------------------------------------------- pow, tanh, sqrt */

/* 0: y is not an integer, 1: odd integer, 2: even integer. */
static int int_kind(float y)
{
	float ay = y < 0 ? -y : y;
	if (!(ay < 0x1p24f)) /* inf, or so large every float is an even integer */
		return ay == INFINITY ? 0 : 2;
	int32_t yi = (int32_t)ay;
	if ((float)yi != ay)
		return 0;
	return (yi & 1) ? 1 : 2;
}

float fm_powf(float x, float y)
{
	if (y == 0.0f || x == 1.0f)
		return 1.0f;
	if (x != x || y != y)
		return x + y;
	float ax = x < 0 ? -x : x;
	int neg = 0;
	if (fbits(x) >> 31) {
		int k = int_kind(y);
		if (k == 0 && ax != 0.0f && ax != INFINITY && y != INFINITY && y != -INFINITY)
			return NAN;
		neg = k == 1;
	}
	float r;
	if (y == INFINITY || y == -INFINITY) {
		if (ax == 1.0f)
			return 1.0f;
		r = (ax < 1.0f) == (y > 0) ? 0.0f : INFINITY;
	} else if (ax == 0.0f) {
		r = y > 0 ? 0.0f : INFINITY;
	} else if (ax == INFINITY) {
		r = y > 0 ? INFINITY : 0.0f;
	} else {
		r = (float)fm_exp((double)y * fm_log((double)ax));
	}
	return neg ? -r : r;
}

float fm_tanhf(float x)
{
	uint32_t ix = fbits(x);
	uint32_t sign = ix & 0x80000000u;
	double a = ffrom(ix & 0x7fffffffu);
	double t;
	if (a != a)
		return x + x;
	if (a > 10.0) { /* tanh rounds to 1 above 9.01 */
		t = 1.0;
	} else if (a < 0x1p-12) { /* the next term, 2a^5/15, is below 2^-49 a */
		t = a - a * a * a * (1.0 / 3);
	} else { /* e - 1 loses at most 2^-40 relative for a >= 2^-12 */
		double e = fm_exp(2.0 * a);
		t = (e - 1.0) / (e + 1.0);
	}
	float r = (float)t;
	return ffrom(fbits(r) | sign);
}

/* Newton in double, then a correction step that compares the float result's
 * neighbouring midpoints with x exactly (their squares fit in 50 bits). */
float fm_sqrtf_soft(float x)
{
	if (x != x)
		return x + x;
	if (x == 0.0f || x == INFINITY) /* sqrt(-0) = -0 */
		return x;
	if (x < 0.0f)
		return NAN;
	double d = x;
	double y = dfrom((dbits(d) >> 1) + (0x3ffull << 51)); /* within 6% */
	for (int i = 0; i < 5; i++)
		y = 0.5 * (y + d / y);
	float f = (float)y;
	double fd = f;
	double up = 0.5 * (fd + (double)ffrom(fbits(f) + 1));
	double dn = 0.5 * (fd + (double)ffrom(fbits(f) - 1));
	if (up * up < d)
		f = ffrom(fbits(f) + 1);
	else if (dn * dn > d)
		f = ffrom(fbits(f) - 1);
	return f;
}
