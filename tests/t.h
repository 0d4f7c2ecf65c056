/* t.h: the unit-test harness. Each tests/t_*.c is one program; it counts
 * checks with T_CHECK and ends with T_DONE(), which prints one summary line
 *   # t_name: pass=N fail=M
 * that tests/run.sh adds up. A program that crashes or exits non-zero without
 * that line counts as one failure. */
#ifndef TS_T_H
#define TS_T_H

#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;

#define T_CHECK(cond, ...)                                                      \
	do {                                                                    \
		if (cond) {                                                     \
			t_pass++;                                               \
		} else {                                                        \
			t_fail++;                                               \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                           \
			fputc('\n', stderr);                                    \
		}                                                               \
	} while (0)

/* Message of a failed call must contain every needle. */
#define T_HAS(hay, needle) T_CHECK(strstr((hay), (needle)) != NULL, "\"%s\" lacks \"%s\"", (hay), (needle))

static inline int t_done(const char *file)
{
	const char *b = strrchr(file, '/');
	b = b ? b + 1 : file;
	printf("# %.*s: pass=%d fail=%d\n", (int)(strcspn(b, ".")), b, t_pass, t_fail);
	return t_fail ? 1 : 0;
}
#define T_DONE() t_done(__FILE__)

#endif
