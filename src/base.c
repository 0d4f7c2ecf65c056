/* base: error messages, counted allocation, dtypes, clock. */
#include "base.h"
#include "fault.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int ts_verrf(struct ts_err *e, int code, const char *fmt, va_list ap)
{
	if (e) {
		e->code = code;
		vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	}
	return -code;
}

int ts_errf(struct ts_err *e, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = ts_verrf(e, code, fmt, ap);
	va_end(ap);
	return rc;
}

const char *ts_code_name(int code)
{
	static const char *const names[E_CODE_N] = {
		"OK", "E_NOMEM", "E_INVAL", "E_IO", "E_FORMAT", "E_UNSUPPORTED",
		"E_RANGE", "E_NOSPACE", "E_BUSY", "E_INTERNAL",
	};
	if (code < 0)
		code = -code;
	return code < E_CODE_N ? names[code] : "E_?";
}

static _Atomic uint64_t n_allocs, n_serving;
static _Thread_local int serving;

static void count(void)
{
	atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
	if (serving)
		atomic_fetch_add_explicit(&n_serving, 1, memory_order_relaxed);
}

void *ts_alloc(size_t bytes)
{
	count();
	return FAULT(FAULT_ALLOC) ? NULL : calloc(1, bytes ? bytes : 1);
}

void *ts_alloc_resident(size_t bytes)
{
	volatile uint8_t *p = ts_alloc(bytes);
	for (size_t i = 0; p && i < bytes; i += 4096)
		p[i] = 0;
	return (void *)p;
}

void ts_alloc_serving(int on)
{
	serving = on;
}

uint64_t ts_alloc_serving_count(void)
{
	return atomic_load_explicit(&n_serving, memory_order_relaxed);
}

void *ts_realloc(void *p, size_t bytes)
{
	count();
	return FAULT(FAULT_ALLOC) ? NULL : realloc(p, bytes ? bytes : 1);
}

void ts_free(void *p)
{
	free(p);
}

uint64_t ts_alloc_count(void)
{
	return atomic_load_explicit(&n_allocs, memory_order_relaxed);
}

size_t ts_dtype_size(enum ts_dtype t)
{
	return t == TS_F32 ? 4 : 2;
}

const char *ts_dtype_name(enum ts_dtype t)
{
	switch (t) {
	case TS_F32:
		return "F32";
	case TS_F16:
		return "F16";
	case TS_BF16:
		return "BF16";
	case TS_DTYPE_N:
		break;
	}
	return "?";
}

float ts_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
	if (exp == 0x1f) {
		u = sign | 0x7f800000u | (man << 13); /* inf, nan */
	} else if (exp != 0) {
		u = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		u = sign;
	} else { /* subnormal: normalise */
		int e = -1;
		do {
			e++;
			man <<= 1;
		} while (!(man & 0x400));
		u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

uint16_t ts_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint32_t sign = (u >> 16) & 0x8000, a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00);
	if (a >= 0x477ff000u) /* rounds to >= 65520: inf */
		return (uint16_t)(sign | 0x7c00);
	if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
		if (a < 0x33000000u)
			return (uint16_t)sign;
		uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = a - 0x38000000u; /* rebias exponent 127 -> 15 */
	r += 0xfff + ((r >> 13) & 1);
	return (uint16_t)(sign | (r >> 13));
}

double ts_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
