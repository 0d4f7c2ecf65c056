/* fuzz_ckpt: libFuzzer target for ckpt_parse_safetensors.
 *
 * Each input is tried twice: as a whole safetensors image, and, when it
 * starts with '{', as the JSON header of an image built around it (length
 * prefix plus a 4 KiB data region), so that mutations of the JSON reach the
 * dtype, shape and offset checks instead of dying on the length field.
 * Whatever the parser accepts must hold: names sorted and unique, shapes
 * matching byte counts, data inside the data region, no two tensors sharing
 * a byte. Every accepted tensor's first and last byte are read so ASAN sees
 * any pointer outside the buffer.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz_ckpt.c src/ckpt.c src/json.c src/base.c
 *
 * tests/t_fuzz.c #includes this file with TS_FUZZ_NO_MAIN defined and calls
 * fuzz_ckpt_one directly (no libFuzzer), over seeds and mutations.
 */
#include "ckpt.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define FUZZ_CKPT_DATA 4096 /* data region appended to a bare JSON header */

struct fuzz_range {
	uint64_t begin, end;
};

static int fuzz_range_cmp(const void *a, const void *b)
{
	const struct fuzz_range *x = a, *y = b;
	return x->begin < y->begin ? -1 : x->begin > y->begin;
}

/* The invariants of one accepted tensor table over buf[0..size). */
static void fuzz_ckpt_check(const uint8_t *buf, size_t size, const struct ckpt_tensor *t, int n)
{
	uint64_t hlen = 0;
	for (int k = 7; k >= 0; k--)
		hlen = hlen << 8 | buf[k];
	const uint8_t *region = buf + 8 + hlen;
	struct fuzz_range *r = malloc(((size_t)n + 1) * sizeof(*r));
	volatile uint8_t sink = 0;
	int nr = 0;
	FUZZ_CHECK(r != NULL);
	for (int i = 0; i < n; i++) {
		uint64_t count = 1;
		FUZZ_CHECK(t[i].name && (i == 0 || strcmp(t[i - 1].name, t[i].name) < 0));
		FUZZ_CHECK(t[i].dtype < TS_DTYPE_N && t[i].n_dims >= 0 && t[i].n_dims <= CKPT_MAX_DIMS && t[i].shard == 0);
		for (int d = 0; d < t[i].n_dims; d++) {
			FUZZ_CHECK(t[i].shape[d] >= 0);
			count *= (uint64_t)t[i].shape[d]; /* the parser proved this does not overflow */
		}
		FUZZ_CHECK(t[i].bytes == count * ts_dtype_size(t[i].dtype));
		const uint8_t *p = t[i].data;
		FUZZ_CHECK(p >= region && t[i].bytes <= (uint64_t)(buf + size - p));
		if (t[i].bytes) {
			sink ^= p[0];
			sink ^= p[t[i].bytes - 1];
			r[nr].begin = (uint64_t)(p - region);
			r[nr++].end = (uint64_t)(p - region) + t[i].bytes;
		}
	}
	qsort(r, (size_t)nr, sizeof(*r), fuzz_range_cmp);
	for (int i = 1; i < nr; i++)
		FUZZ_CHECK(r[i].begin >= r[i - 1].end);
	free(r);
	(void)sink;
}

/* Returns 1 when the image was accepted. */
static int fuzz_ckpt_image(const uint8_t *buf, size_t size)
{
	struct ckpt_tensor *t = (struct ckpt_tensor *)1;
	int n = -1;
	struct ts_err e = { 0 };
	int rc = ckpt_parse_safetensors(buf, size, "fuzz.safetensors", &t, &n, &e);
	if (rc) {
		FUZZ_CHECK(rc < 0 && t == NULL && n == 0 && strstr(e.msg, "fuzz.safetensors") != NULL);
		return 0;
	}
	FUZZ_CHECK(t != NULL && n >= 0);
	fuzz_ckpt_check(buf, size, t, n);
	ts_free(t);
	return 1;
}

/* Bit 0: accepted as an image; bit 1: accepted as a header. */
static int fuzz_ckpt_one(const uint8_t *data, size_t size)
{
	int ok = fuzz_ckpt_image(data, size);
	if (size && data[0] == '{') {
		size_t n = 8 + size + FUZZ_CKPT_DATA;
		uint8_t *img = malloc(n);
		FUZZ_CHECK(img != NULL);
		for (int k = 0; k < 8; k++)
			img[k] = (uint8_t)((uint64_t)size >> (8 * k));
		memcpy(img + 8, data, size);
		for (size_t k = 0; k < FUZZ_CKPT_DATA; k++)
			img[8 + size + k] = (uint8_t)(k * 31 + 7);
		ok |= fuzz_ckpt_image(img, n) << 1;
		free(img);
	}
	return ok;
}

#ifndef TS_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_ckpt_one(data, size);
	return 0;
}
#endif
