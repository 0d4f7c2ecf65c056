/* golden: reader for tests/data/golden/<preset>.bin, the logits that Hugging
 * Face transformers computed for a gen_ckpt checkpoint (tests/hf_golden.py
 * writes them; tests/data/README.md documents the format), and the checkpoint
 * directory hash that ties a golden file to the exact bytes HF read.
 *
 * Owns: one loaded golden file (a single allocation holding the file; the
 * arrays point into it). Does not: run a model or compare logits.
 * Threads: no shared state; one struct golden per caller.
 * Header-only (static inline) so a test and tests/gen_ckpt.c can include it.
 * Little-endian hosts only, like the rest of TokenSpeed.
 *
 * File layout, all little endian:
 *   char     magic[8] = "TSGOLDEN"
 *   u32      version = 1
 *   u32      header_size        bytes of this fixed header (32); readers skip the rest
 *   u32      vocab
 *   u32      n_prompts
 *   u64      ckpt_hash          golden_ckpt_hash() of the checkpoint HF loaded
 *   then n_prompts records:
 *     u32 n_prompt, u32 n_gen, u32 reserved[2] (0)
 *     i32 prompt[n_prompt]
 *     i32 gen[n_gen]                       greedy continuation, no EOS stop
 *     f32 margin[n_gen]                    top1 - top2 logit at each greedy step
 *     f32 logits[n_prompt + n_gen][vocab]  one forward over prompt + gen
 */
#ifndef TS_GOLDEN_H
#define TS_GOLDEN_H

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "golden.h reads little-endian files in place: little-endian hosts only"
#endif

#define GOLDEN_MAGIC "TSGOLDEN"
#define GOLDEN_VERSION 1u
#define GOLDEN_HEADER_SIZE 32u       /* bytes of the version-1 fixed header */
#define GOLDEN_RECORD_HEADER 16u     /* n_prompt, n_gen, reserved[2] */
#define GOLDEN_MAX_VOCAB (1u << 22)
#define GOLDEN_MAX_PROMPTS 4096u
#define GOLDEN_MAX_TOKENS (1u << 20) /* per record, prompt + gen */
#define GOLDEN_FNV_OFFSET 0xcbf29ce484222325ull
#define GOLDEN_FNV_PRIME 0x100000001b3ull

struct golden_prompt {
	uint32_t n_prompt, n_gen;
	const int32_t *prompt;   /* (n_prompt) */
	const int32_t *gen;      /* (n_gen) */
	const float *margin;     /* (n_gen) */
	const float *logits;     /* (n_prompt + n_gen, vocab) */
};

struct golden {
	uint32_t version, vocab, n_prompts;
	uint64_t ckpt_hash;
	struct golden_prompt *prompts; /* (n_prompts) */
	uint8_t *buf;                  /* the whole file; the arrays point into it */
	size_t size;
};

/* FNV-1a 64: h = (h ^ byte) * prime, starting from GOLDEN_FNV_OFFSET. */
static inline uint64_t golden_fnv1a64(uint64_t h, const void *p, size_t n)
{
	const uint8_t *q = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ q[i]) * GOLDEN_FNV_PRIME;
	return h;
}

static inline uint32_t golden_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void golden_free(struct golden *g)
{
	ts_free(g->prompts);
	ts_free(g->buf);
	memset(g, 0, sizeof(*g));
}

/* Reads and validates path into g (zeroed first). Returns 0, or -E_IO /
 * -E_FORMAT / -E_NOMEM with e naming the file, the field and the offset. */
static inline int golden_load(struct golden *g, const char *path, struct ts_err *e)
{
	const char *fix = "regenerate it with tests/hf_golden.py (see tests/data/README.md)";
	int rc = 0;
	memset(g, 0, sizeof(*g));
	FILE *f = fopen(path, "rb");
	if (!f)
		return ts_errf(e, E_IO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
		rc = ts_errf(e, E_IO, "%s: not a regular file", path);
		goto out_close;
	}
	g->size = (size_t)st.st_size;
	if (g->size < GOLDEN_HEADER_SIZE) {
		rc = ts_errf(e, E_FORMAT, "%s: %zu bytes, shorter than the %u-byte header; %s", path,
			     g->size, GOLDEN_HEADER_SIZE, fix);
		goto out_close;
	}
	g->buf = ts_alloc(g->size);
	if (!g->buf) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory for %zu bytes", path, g->size);
		goto out_close;
	}
	if (fread(g->buf, 1, g->size, f) != g->size) {
		rc = ts_errf(e, E_IO, "%s: short read of %zu bytes", path, g->size);
		goto out_free;
	}
	const uint8_t *b = g->buf;
	if (memcmp(b, GOLDEN_MAGIC, 8)) {
		rc = ts_errf(e, E_FORMAT, "%s: bad magic (not a TSGOLDEN file); %s", path, fix);
		goto out_free;
	}
	g->version = golden_u32(b + 8);
	uint32_t header_size = golden_u32(b + 12);
	g->vocab = golden_u32(b + 16);
	g->n_prompts = golden_u32(b + 20);
	g->ckpt_hash = (uint64_t)golden_u32(b + 24) | (uint64_t)golden_u32(b + 28) << 32;
	if (g->version != GOLDEN_VERSION) {
		rc = ts_errf(e, E_FORMAT, "%s: version %u, this reader knows %u; %s", path, g->version,
			     GOLDEN_VERSION, fix);
		goto out_free;
	}
	if (header_size < GOLDEN_HEADER_SIZE || header_size > g->size || header_size % 4) {
		rc = ts_errf(e, E_FORMAT, "%s: header_size %u (need %u..%zu, a multiple of 4); %s", path,
			     header_size, GOLDEN_HEADER_SIZE, g->size, fix);
		goto out_free;
	}
	if (g->vocab == 0 || g->vocab > GOLDEN_MAX_VOCAB) {
		rc = ts_errf(e, E_FORMAT, "%s: vocab %u out of range 1..%u; %s", path, g->vocab,
			     GOLDEN_MAX_VOCAB, fix);
		goto out_free;
	}
	if (g->n_prompts == 0 || g->n_prompts > GOLDEN_MAX_PROMPTS) {
		rc = ts_errf(e, E_FORMAT, "%s: n_prompts %u out of range 1..%u; %s", path, g->n_prompts,
			     GOLDEN_MAX_PROMPTS, fix);
		goto out_free;
	}
	g->prompts = ts_alloc(g->n_prompts * sizeof(*g->prompts));
	if (!g->prompts) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", path);
		goto out_free;
	}

	uint64_t off = header_size; /* a multiple of 4, so every array is aligned */
	for (uint32_t i = 0; i < g->n_prompts; i++) {
		struct golden_prompt *r = &g->prompts[i];
		if (g->size - off < GOLDEN_RECORD_HEADER) {
			rc = ts_errf(e, E_FORMAT, "%s: truncated at prompt %u header (offset %" PRIu64
				     ", file %zu bytes); %s", path, i, off, g->size, fix);
			goto out_free;
		}
		r->n_prompt = golden_u32(b + off);
		r->n_gen = golden_u32(b + off + 4);
		off += GOLDEN_RECORD_HEADER;
		uint64_t rows = (uint64_t)r->n_prompt + r->n_gen;
		if (r->n_prompt == 0 || rows > GOLDEN_MAX_TOKENS) {
			rc = ts_errf(e, E_FORMAT, "%s: prompt %u: n_prompt %u, n_gen %u (need n_prompt >= 1, "
				     "sum <= %u); %s", path, i, r->n_prompt, r->n_gen, GOLDEN_MAX_TOKENS, fix);
			goto out_free;
		}
		uint64_t need = 4 * (rows + r->n_gen) + 4 * rows * g->vocab;
		if (g->size - off < need) {
			rc = ts_errf(e, E_FORMAT, "%s: prompt %u: needs %" PRIu64 " bytes at offset %" PRIu64
				     ", only %" PRIu64 " left: truncated; %s", path, i, need, off,
				     (uint64_t)g->size - off, fix);
			goto out_free;
		}
		r->prompt = (const int32_t *)(b + off);
		r->gen = r->prompt + r->n_prompt;
		r->margin = (const float *)(r->gen + r->n_gen);
		r->logits = r->margin + r->n_gen;
		off += need;
		for (uint64_t k = 0; k < rows; k++) {
			int32_t tok = k < r->n_prompt ? r->prompt[k] : r->gen[k - r->n_prompt];
			if (tok < 0 || (uint32_t)tok >= g->vocab) {
				rc = ts_errf(e, E_FORMAT, "%s: prompt %u: token at position %" PRIu64 " is %d, "
					     "outside vocab %u; %s", path, i, k, (int)tok, g->vocab, fix);
				goto out_free;
			}
		}
	}
	if (off != g->size) {
		rc = ts_errf(e, E_FORMAT, "%s: %" PRIu64 " trailing bytes after the last prompt; %s", path,
			     (uint64_t)g->size - off, fix);
		goto out_free;
	}
	fclose(f);
	return 0;

out_free:
	golden_free(g);
out_close:
	fclose(f);
	return rc;
}

static inline int golden_cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b); /* bytes as unsigned char */
}

/* FNV-1a 64 of a checkpoint directory: its regular files (after following
 * symlinks; subdirectories skipped) in byte-wise order of name, each adding
 * its name, one 0 byte, then its contents. Returns 0 or -E_IO / -E_NOMEM. */
static inline int golden_ckpt_hash(const char *dir, uint64_t *out, struct ts_err *e)
{
	int rc = 0, n = 0, cap = 0;
	char **names = NULL, path[4096];
	uint8_t *chunk = NULL;
	*out = 0;
	DIR *d = opendir(dir);
	if (!d)
		return ts_errf(e, E_IO, "%s: cannot open directory: %s", dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat st;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path)) {
			rc = ts_errf(e, E_IO, "%s/%s: path too long", dir, de->d_name);
			goto out;
		}
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			char **q = ts_realloc(names, (size_t)cap * sizeof(*names));
			if (!q) {
				rc = ts_errf(e, E_NOMEM, "%s: out of memory", dir);
				goto out;
			}
			names = q;
		}
		size_t len = strlen(de->d_name);
		if (!(names[n] = ts_alloc(len + 1))) {
			rc = ts_errf(e, E_NOMEM, "%s: out of memory", dir);
			goto out;
		}
		memcpy(names[n++], de->d_name, len + 1);
	}
	if (n)
		qsort(names, (size_t)n, sizeof(*names), golden_cmp_name);
	if (!(chunk = ts_alloc(1 << 16))) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", dir);
		goto out;
	}
	uint64_t h = GOLDEN_FNV_OFFSET;
	for (int i = 0; i < n; i++) {
		h = golden_fnv1a64(h, names[i], strlen(names[i]) + 1); /* name and its NUL */
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		FILE *f = fopen(path, "rb");
		if (!f) {
			rc = ts_errf(e, E_IO, "%s: cannot open: %s", path, strerror(errno));
			goto out;
		}
		size_t got;
		while ((got = fread(chunk, 1, 1 << 16, f)) > 0)
			h = golden_fnv1a64(h, chunk, got);
		int bad = ferror(f);
		fclose(f);
		if (bad) {
			rc = ts_errf(e, E_IO, "%s: read error", path);
			goto out;
		}
	}
	*out = h;
out:
	closedir(d);
	for (int i = 0; i < n; i++)
		ts_free(names[i]);
	ts_free(names);
	ts_free(chunk);
	return rc;
}

#endif
