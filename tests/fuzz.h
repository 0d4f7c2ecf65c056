/* fuzz.h: what the fuzz targets (tests/fuzz_*.c) share: the check that stays
 * on in every build, and the UTF-8 test their invariants use. t_fuzz includes
 * several targets in one file, hence the guard. */
#ifndef TS_FUZZ_H
#define TS_FUZZ_H

#include <stdint.h>
#include <stdlib.h>

/* Not assert(): must stay on in every build. */
#define FUZZ_CHECK(x)                    \
	do {                             \
		if (!(x))                \
			abort();         \
	} while (0)

/* Valid UTF-8 (RFC 3629), NUL allowed. */
static inline int fuzz_utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p;
		int k = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		if (!k || end - p < k)
			return 0;
		uint32_t cp = k == 1 ? c : c & (0x7fu >> k);
		for (int j = 1; j < k; j++) {
			if ((p[j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[j] & 0x3fu);
		}
		static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
		if (cp < min_cp[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += k;
	}
	return 1;
}

#endif
