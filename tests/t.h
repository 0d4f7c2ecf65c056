/* t.h: the unit-test harness. Each tests/t_*.c is one program; it counts
 * checks with T_CHECK and ends with T_DONE(), which prints one summary line
 *   # t_name: pass=N fail=M
 * that tests/run.sh adds up. A program that crashes or exits non-zero without
 * that line counts as one failure. */
#ifndef TS_T_H
#define TS_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

/* A whole file, NUL-terminated, malloc'd (*n bytes without the NUL); NULL if unreadable. */
static inline char *t_slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long l = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = l >= 0 ? malloc((size_t)l + 1) : NULL;
	if (!b || fread(b, 1, (size_t)l, f) != (size_t)l) {
		free(b);
		fclose(f);
		return NULL;
	}
	b[l] = 0;
	fclose(f);
	*n = (size_t)l;
	return b;
}

/* Runs cmd; its stdout and stderr into out (NUL-terminated); the exit status, or -1. */
static inline int t_run(const char *cmd, char *out, size_t cap)
{
	char full[2048];
	snprintf(full, sizeof(full), "%s 2>&1", cmd);
	FILE *p = popen(full, "r");
	if (!p)
		return -1;
	size_t n = fread(out, 1, cap - 1, p);
	out[n] = 0;
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
