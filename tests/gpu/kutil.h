/* kutil.h: what the device kernel tests share: the floors measured on the
 * card they were tuned on, and the input generator (splitmix64; each test
 * program keeps its own state, so its inputs do not depend on the others). */
#ifndef TS_KUTIL_H
#define TS_KUTIL_H

#include <stdint.h>

#define COPY_FLOOR_GBS 3027.0 /* H100 device-to-device copy, read + write, measured 2026-11-27 */
#define GEMV_FLOOR_GBS 2742.0 /* H100 cuBLAS bf16 GEMV batch 1, 14336 x 4096, measured 2026-11-27 */
#define GEMM_FLOOR_TFS 798.0  /* H100 cuBLAS bf16 GEMM 8192^3, measured 2026-11-27 */

static uint64_t rng_s = 0x243f6a8885a308d3ull;

static inline uint64_t rng_next(void)
{
	uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#endif
