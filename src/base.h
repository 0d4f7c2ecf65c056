/* base: the few things every module shares.
 *
 * Owns: the error code enum and the error-message carrier (struct ts_err), the
 * counted allocator (so tests can assert "no allocation after boot"), dtypes and
 * their scalar conversions, a monotonic clock, and the defensive-check macros.
 * Does not: log (see log.h) or decide anything.
 * Threads: everything here is safe from any thread; ts_err is per call.
 */
#ifndef TS_BASE_H
#define TS_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Action functions return 0 or a negative E_* code. */
enum ts_code {
	TS_OK = 0,
	E_NOMEM = 1,   /* an allocation failed (boot only) */
	E_INVAL,       /* a caller passed a bad argument or request field */
	E_IO,          /* open/read/mmap failed */
	E_FORMAT,      /* a file or frame is malformed */
	E_UNSUPPORTED, /* well-formed but not something we run */
	E_RANGE,       /* a number outside its accepted range */
	E_NOSPACE,     /* the KV pool or a queue is full */
	E_BUSY,        /* try again later */
	E_INTERNAL,    /* a broken invariant: a bug */
	E_CODE_N
};

/* The message says what is wrong, naming the file, key, tensor or device, and
 * what to do. Functions that can fail for a user-visible reason take one. */
struct ts_err {
	int code;
	char msg[1024];
};

/* Fills e (if not NULL) and returns -code. */
int ts_errf(struct ts_err *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int ts_verrf(struct ts_err *e, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
const char *ts_code_name(int code); /* "E_FORMAT", ... */

/* Counted allocation. All of src/ allocates through these (a test greps for
 * stray malloc). ts_alloc zeroes; both return NULL on failure. */
void *ts_alloc(size_t bytes);
void *ts_realloc(void *p, size_t bytes);
void ts_free(void *p);
uint64_t ts_alloc_count(void); /* number of ts_alloc/ts_realloc calls so far */
/* ts_alloc, then every page written: memory taken at boot is resident from
 * then on, not at its first use (so RSS is flat from "ready"). */
void *ts_alloc_resident(size_t bytes);
/* The serving threads (serve's network and engine threads, the text
 * workers) call ts_alloc_serving(1) as they start: the allocations they make
 * are counted apart, and that count stays 0 (t_serve, t_text assert it). */
void ts_alloc_serving(int on);
uint64_t ts_alloc_serving_count(void);

/* Dtypes of checkpoint tensors. */
enum ts_dtype { TS_F32, TS_F16, TS_BF16, TS_DTYPE_N };
size_t ts_dtype_size(enum ts_dtype t);
const char *ts_dtype_name(enum ts_dtype t); /* "F32", "F16", "BF16" (safetensors spelling) */

static inline float ts_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t ts_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

float ts_f16_to_f32(uint16_t h);
uint16_t ts_f32_to_f16(float f); /* round to nearest even */

double ts_now(void); /* monotonic seconds */

#define TS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* SQLite's idiom: ALWAYS(x) for a condition we believe always true, NEVER(x)
 * for one we believe never true. Debug builds assert; release builds keep the
 * test so the defensive branch still runs. */
#ifdef NDEBUG
#define ALWAYS(x) (x)
#define NEVER(x) (x)
#else
#include <assert.h>
#define ALWAYS(x) ((x) ? 1 : (assert(0), 0))
#define NEVER(x) ((x) ? (assert(0), 1) : 0)
#endif

#endif
