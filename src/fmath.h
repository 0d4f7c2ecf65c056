/* fmath: our own float math, so that src/ never calls libm.
 *
 * Owns: exp, log, sin/cos, pow, tanh and sqrt for the inference code. The
 * product binary may depend on libc.so.6 only, and glibc's libm.a cannot be
 * linked into a dynamic executable (ifunc relocations), so nothing in src/
 * may reference expf, logf, sinf, powf, sqrtf, ... (`nm -u` on every object
 * shows none). <math.h> is still fine for its macros (INFINITY, NAN).
 * Does not: set errno or raise floating-point exceptions on purpose, or
 * depend on the rounding mode being anything but round-to-nearest.
 * Threads: every function is pure and may be called from any thread.
 *
 * Float functions evaluate in double and round once, so they return the
 * correctly rounded result except when the exact value lies within the
 * double-precision error of a rounding boundary (0.001 ulp for fm_expf,
 * whose polynomial is shortest; ~1e-5 ulp for fm_sincosf; less elsewhere).
 * Measured by tests/t_fmath.c (10^7 random arguments plus special values;
 * error = distance to the exact value in units of the float spacing there;
 * "not CR" = results that differ from the correctly rounded one):
 *   fm_expf    0.5006 ulp, not CR 0.03%  on [-104, 89], with underflow to
 *                                        subnormals/0 and overflow to inf
 *   fm_logf    0.5000 ulp, not CR 0      positive normals and subnormals
 *   fm_sincosf 0.5000 ulp, not CR 1/6e6  |x| < 10, 1e4, 1e6, and any float
 *                                        (Payne-Hanek from 2^20 pi/2 up)
 *   fm_powf    0.5000 ulp, not CR 0      x > 0; RoPE 1/theta^(2i/d) equal
 *                                        bitwise to glibc powf, 2448 of 2448
 *   fm_tanhf   0.5000 ulp, not CR 0
 *   fm_sqrtf   exact
 *   fm_exp 0.96 ulp, fm_log 0.85 ulp  (double ulps, against long double)
 * The test enforces 1 ulp for the float functions and 2 for the double ones.
 */
#ifndef TS_FMATH_H
#define TS_FMATH_H

#include <stdint.h>
#include <string.h>

/* e^x. Inline because attention softmax calls it per score. Reduction to
 * 2^k * 2^r with r in [-1/2, 1/2], degree-7 polynomial for 2^r (relative
 * error 5.5e-11), all in double; the double->float cast rounds once and does
 * the underflow to subnormals/0 and the overflow to inf. The clamps keep k in
 * [-151, 129]; NaN passes through them (every comparison is false) and stays
 * NaN through the arithmetic. */
static inline float fm_expf(float x)
{
	float xc = x < -104.0f ? -104.0f : x; /* e^-104 rounds to 0 */
	xc = xc > 89.0f ? 89.0f : xc;         /* e^89 rounds to inf */
	double z = (double)xc * 0x1.71547652b82fep+0; /* x / ln 2 */
	double kd = z + 0x1.8p52;                      /* round to nearest integer */
	uint64_t ki;
	memcpy(&ki, &kd, 8);
	kd -= 0x1.8p52;
	double r = z - kd;
	double p = 0x1.446c79efd4834p-13 + r * 0x1.00c0e4e15189cp-16;
	p = 0x1.5d877598350dep-10 + r * p;
	p = 0x1.3b29d8bb0b97ep-7 + r * p;
	p = 0x1.c6b08da70cce3p-5 + r * p;
	p = 0x1.ebfbe0aa03df0p-3 + r * p;
	p = 0x1.62e42fef9cc69p-1 + r * p;
	p = 0x1.ffffffffa7135p-1 + r * p;
	uint64_t sb = (ki + 1023u) << 52; /* low bits of ki hold k */
	double scale;
	memcpy(&scale, &sb, 8);
	return (float)(p * scale);
}

/* sqrt(x), correctly rounded; sqrt(-0) = -0, sqrt(x < 0) = NaN. An
 * instruction, never a call: without -fno-math-errno, __builtin_sqrtf would
 * emit a call to sqrtf for negative inputs. */
float fm_sqrtf_soft(float x); /* portable fallback, exact too */
static inline float fm_sqrtf(float x)
{
#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE__))
	float r;
	__asm__("sqrtss %1, %0" : "=x"(r) : "x"(x));
	return r;
#elif defined(__aarch64__)
	float r;
	__asm__("fsqrt %s0, %s1" : "=w"(r) : "w"(x));
	return r;
#else
	return fm_sqrtf_soft(x);
#endif
}

/* log(x): log(+-0) = -inf, log(x < 0) = NaN, log(inf) = inf. */
float fm_logf(float x);

/* sin(x) and cos(x) together; NaN for inf and NaN. */
void fm_sincosf(float x, float *s, float *c);

/* x^y with the C99 special cases (pow(x, 0) = 1, pow(1, y) = 1, negative x
 * only for integer y, ...). For x > 0 it is exp(y log x) in double, which is
 * what RoPE's inv_freq = 1 / theta^(2i/d) needs to match torch's float32. */
float fm_powf(float x, float y);

/* tanh(x). */
float fm_tanhf(float x);

/* Double precision e^x and log(x), special values as for the float ones. */
double fm_exp(double x);
double fm_log(double x);

#endif
