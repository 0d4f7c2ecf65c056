/* ckpt: Hugging Face checkpoint directories, as users download them.
 *
 * Owns: config.json (parsed, kept for `model`), the safetensors shards
 * (model.safetensors, or model-0000x-of-0000y.safetensors listed by
 * model.safetensors.index.json), mmap'd read-only with no second copy, and the
 * table of tensors. Every header offset, length, dtype and shape is checked
 * against the file size before anything points into a file.
 * Does not: know which tensors a model needs (model does), compute.
 * Threads: open/close on the boot thread; a loaded ckpt is read-only.
 */
#ifndef TS_CKPT_H
#define TS_CKPT_H

#include "base.h"
#include "json.h"

#define CKPT_MAX_DIMS 8

struct ckpt_tensor {
	const char *name;        /* NUL-terminated, owned by the ckpt */
	enum ts_dtype dtype;
	int n_dims;
	int64_t shape[CKPT_MAX_DIMS];
	const void *data;        /* points into the shard's mapping */
	uint64_t bytes;
	int shard;               /* index into ckpt.shards */
};

struct ckpt_shard {
	char *path;              /* full path, owned */
	void *map;
	size_t size;
};

struct ckpt {
	char *dir;
	struct json_doc *config;     /* config.json */
	int n_shards;
	struct ckpt_shard *shards;
	int n_tensors;
	struct ckpt_tensor *tensors; /* sorted by name */
	uint64_t tensor_bytes;       /* sum of tensor sizes */
};

/* Opens dir; on failure returns -E_* and e names the file (and the tensor). */
int ckpt_open(struct ckpt *c, const char *dir, struct ts_err *e);
void ckpt_close(struct ckpt *c);

/* NULL if absent. */
const struct ckpt_tensor *ckpt_find(const struct ckpt *c, const char *name);

/* Parses one safetensors file image (8-byte little-endian header length, JSON
 * header, data) held in buf[0..size). `path` is for messages. On success
 * *out is an array of *n tensors (names owned by the array allocation, data
 * pointing into buf, shard = 0) to release with ts_free(*out).
 * Pure: the fuzz target calls it directly. */
int ckpt_parse_safetensors(const uint8_t *buf, size_t size, const char *path,
			   struct ckpt_tensor **out, int *n, struct ts_err *e);

#endif
