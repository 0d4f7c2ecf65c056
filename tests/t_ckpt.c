/* t_ckpt: Hugging Face checkpoint directories. A tiny safetensors writer
 * below builds checkpoints under a mkdtemp directory: a single-file and a
 * 2-shard one must load with the right dtypes, shapes and values; each broken
 * variant must fail with the right code and a message naming the file and,
 * where there is one, the tensor. */
#include "ckpt.h"
#include "t.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64]; /* the mkdtemp directory */

/* ---------------------------------------------------------------- writer */

static void write_file(const char *dir, const char *name, const void *a, size_t na, const void *b, size_t nb)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	T_CHECK(f != NULL, "cannot create %s", path);
	if (!f)
		return;
	if (na)
		fwrite(a, 1, na, f);
	if (nb)
		fwrite(b, 1, nb, f);
	fclose(f);
}

/* A safetensors file: u64le header length, the header text, data. */
static void write_st(const char *dir, const char *name, const char *header, const void *data, size_t data_len)
{
	size_t hl = strlen(header);
	uint8_t *img = calloc(1, 8 + hl + 1);
	for (int k = 0; k < 8; k++)
		img[k] = (uint8_t)((uint64_t)hl >> (8 * k));
	memcpy(img + 8, header, hl);
	write_file(dir, name, img, 8 + hl, data, data_len);
	free(img);
}

static const char *config_json = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 3}";

/* root/<name>, created, with a valid config.json. */
static const char *case_dir(const char *name)
{
	static char dir[256];
	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	mkdir(dir, 0755);
	write_file(dir, "config.json", config_json, strlen(config_json), NULL, 0);
	return dir;
}

/* ckpt_open(dir) must fail with -code, leave c zeroed, and name each needle. */
static void expect_fail(const char *dir, int code, const char *n1, const char *n2, const char *n3)
{
	struct ckpt c;
	struct ts_err e = { 0 };
	int rc = ckpt_open(&c, dir, &e);
	if (getenv("T_VERBOSE")) /* to read the messages as a user would */
		fprintf(stderr, "%s: %s\n", ts_code_name(rc), e.msg);
	T_CHECK(rc == -code, "%s: got %s want %s: %s", dir, ts_code_name(rc), ts_code_name(code), e.msg);
	T_CHECK(c.dir == NULL && c.tensors == NULL && c.shards == NULL && c.config == NULL && c.n_tensors == 0,
		"%s: a failed open leaves the struct zeroed", dir);
	if (n1)
		T_HAS(e.msg, n1);
	if (n2)
		T_HAS(e.msg, n2);
	if (n3)
		T_HAS(e.msg, n3);
	ckpt_close(&c);
}

/* A checkpoint with one model.safetensors of `header` and data_len zero bytes
 * must fail with code; the message names model.safetensors and n1, n2. */
static void bad_single(const char *name, const char *header, size_t data_len, int code, const char *n1,
		       const char *n2)
{
	const char *dir = case_dir(name);
	uint8_t *data = calloc(1, data_len + 1);
	write_st(dir, "model.safetensors", header, data, data_len);
	free(data);
	expect_fail(dir, code, "model.safetensors", n1, n2);
}

/* ---------------------------------------------------------------- good checkpoints */

static void test_single(void)
{
	/* embed BF16 [4,3] at [0,24), norm F32 [3] at [24,36), head F16 [2,2]
	 * at [36,44), empty F32 [0,5] at [44,44). */
	uint8_t data[44];
	float norm[3] = { 1.5f, -2.0f, 3.25f };
	float head[4] = { 1.0f, -0.5f, 2.0f, 65504.0f };
	for (int i = 0; i < 12; i++) {
		uint16_t h = ts_f32_to_bf16((float)i * 0.5f - 1.0f);
		memcpy(data + 2 * i, &h, 2);
	}
	memcpy(data + 24, norm, 12);
	for (int i = 0; i < 4; i++) {
		uint16_t h = ts_f32_to_f16(head[i]);
		memcpy(data + 36 + 2 * i, &h, 2);
	}
	const char *dir = case_dir("good_single");
	write_st(dir, "model.safetensors",
		 "{\"__metadata__\": {\"format\": \"pt\"},"
		 " \"model.embed_tokens.weight\": {\"dtype\": \"BF16\", \"shape\": [4, 3], \"data_offsets\": [0, 24]},"
		 " \"model.norm.weight\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [24, 36]},"
		 " \"lm_head.weight\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [36, 44]},"
		 " \"empty\": {\"dtype\": \"F32\", \"shape\": [0, 5], \"data_offsets\": [44, 44]}}    ",
		 data, sizeof(data));

	struct ckpt c;
	struct ts_err e = { 0 };
	int rc = ckpt_open(&c, dir, &e);
	T_CHECK(rc == 0, "open %s: %s", dir, e.msg);
	if (rc)
		return;
	T_CHECK(c.n_tensors == 4 && c.n_shards == 1 && c.tensor_bytes == 44, "n=%d shards=%d bytes=%llu", c.n_tensors,
		c.n_shards, (unsigned long long)c.tensor_bytes);
	T_CHECK(strcmp(c.tensors[0].name, "empty") == 0 && strcmp(c.tensors[1].name, "lm_head.weight") == 0 &&
			strcmp(c.tensors[2].name, "model.embed_tokens.weight") == 0 &&
			strcmp(c.tensors[3].name, "model.norm.weight") == 0,
		"sorted by name");
	T_CHECK(strcmp(c.dir, dir) == 0, "dir kept");
	int64_t hs = 0;
	T_CHECK(json_int64(json_get(json_root(c.config), "hidden_size"), &hs) == 0 && hs == 3, "config kept");

	const struct ckpt_tensor *t = ckpt_find(&c, "model.embed_tokens.weight");
	const uint8_t *base = (const uint8_t *)c.shards[0].map + 8 + (c.shards[0].size - 8 - 44);
	T_CHECK(t && t->dtype == TS_BF16 && t->n_dims == 2 && t->shape[0] == 4 && t->shape[1] == 3 && t->bytes == 24 &&
			t->shard == 0 && t->data == base,
		"embed: dtype/shape/bytes/data pointer into the mapping");
	int same = t != NULL;
	for (int i = 0; t && i < 12; i++) {
		uint16_t h;
		memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
		same &= ts_bf16_to_f32(h) == (float)i * 0.5f - 1.0f;
	}
	T_CHECK(same, "embed values");

	t = ckpt_find(&c, "model.norm.weight");
	float f[3] = { 0 };
	if (t)
		memcpy(f, t->data, 12);
	T_CHECK(t && t->dtype == TS_F32 && t->n_dims == 1 && t->shape[0] == 3 && f[0] == 1.5f && f[1] == -2.0f &&
			f[2] == 3.25f,
		"norm F32 values");

	t = ckpt_find(&c, "lm_head.weight");
	same = t && t->dtype == TS_F16 && t->bytes == 8;
	for (int i = 0; same && i < 4; i++) {
		uint16_t h;
		memcpy(&h, (const uint8_t *)t->data + 2 * i, 2);
		same &= ts_f16_to_f32(h) == head[i];
	}
	T_CHECK(same, "head F16 values");

	t = ckpt_find(&c, "empty");
	T_CHECK(t && t->n_dims == 2 && t->shape[0] == 0 && t->shape[1] == 5 && t->bytes == 0, "empty tensor");
	T_CHECK(ckpt_find(&c, "nope") == NULL && ckpt_find(&c, "") == NULL && ckpt_find(&c, "zzz") == NULL,
		"absent names");
	T_CHECK(ckpt_find(&c, "__metadata__") == NULL, "__metadata__ is not a tensor");

	ckpt_close(&c);
	T_CHECK(c.dir == NULL && c.n_tensors == 0 && c.shards == NULL && c.config == NULL, "close zeroes");
	ckpt_close(&c); /* twice is safe */
	struct ckpt z = { 0 };
	ckpt_close(&z);
	T_CHECK(ckpt_find(&z, "x") == NULL, "find on a zeroed ckpt");
}

static const char *shard1 = "model-00001-of-00002.safetensors";
static const char *shard2 = "model-00002-of-00002.safetensors";

/* Writes a good 2-shard checkpoint into dir: a.weight F32 [2] and b.weight
 * BF16 [2,2] in shard 1, c.weight F16 [3] in shard 2. `index` NULL writes the
 * good index. */
static void write_sharded(const char *dir, const char *index)
{
	float a[2] = { 7.0f, -8.0f };
	uint8_t d1[16], d2[6];
	memcpy(d1, a, 8);
	for (int i = 0; i < 4; i++) {
		uint16_t h = ts_f32_to_bf16((float)(i + 1));
		memcpy(d1 + 8 + 2 * i, &h, 2);
	}
	for (int i = 0; i < 3; i++) {
		uint16_t h = ts_f32_to_f16((float)(10 + i));
		memcpy(d2 + 2 * i, &h, 2);
	}
	write_st(dir, shard1,
		 "{\"a.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
		 " \"b.weight\": {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [8, 16]}}",
		 d1, sizeof(d1));
	write_st(dir, shard2, "{\"c.weight\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [0, 6]}}", d2,
		 sizeof(d2));
	if (!index)
		index = "{\"metadata\": {\"total_size\": 22}, \"weight_map\": {"
			"\"a.weight\": \"model-00001-of-00002.safetensors\","
			"\"c.weight\": \"model-00002-of-00002.safetensors\","
			"\"b.weight\": \"model-00001-of-00002.safetensors\"}}";
	write_file(dir, "model.safetensors.index.json", index, strlen(index), NULL, 0);
}

static void test_sharded(void)
{
	const char *dir = case_dir("good_sharded");
	write_sharded(dir, NULL);
	struct ckpt c;
	struct ts_err e = { 0 };
	int rc = ckpt_open(&c, dir, &e);
	T_CHECK(rc == 0, "open %s: %s", dir, e.msg);
	if (rc)
		return;
	T_CHECK(c.n_shards == 2 && c.n_tensors == 3 && c.tensor_bytes == 22, "shards=%d n=%d bytes=%llu", c.n_shards,
		c.n_tensors, (unsigned long long)c.tensor_bytes);
	const struct ckpt_tensor *a = ckpt_find(&c, "a.weight"), *b = ckpt_find(&c, "b.weight"),
				 *cw = ckpt_find(&c, "c.weight");
	T_CHECK(a && b && cw, "all three found");
	if (!a || !b || !cw)
		goto out;
	T_CHECK(strstr(c.shards[a->shard].path, shard1) && strstr(c.shards[cw->shard].path, shard2) &&
			a->shard == b->shard && a->shard != cw->shard,
		"each tensor knows its shard");
	float f[2];
	memcpy(f, a->data, 8);
	T_CHECK(a->dtype == TS_F32 && f[0] == 7.0f && f[1] == -8.0f, "a.weight values");
	uint16_t h;
	memcpy(&h, (const uint8_t *)b->data + 6, 2);
	T_CHECK(b->dtype == TS_BF16 && b->shape[0] == 2 && b->shape[1] == 2 && ts_bf16_to_f32(h) == 4.0f,
		"b.weight values");
	memcpy(&h, (const uint8_t *)cw->data + 4, 2);
	T_CHECK(cw->dtype == TS_F16 && cw->shape[0] == 3 && ts_f16_to_f32(h) == 12.0f, "c.weight values");
out:
	ckpt_close(&c);
}

/* The pure parser, straight from memory. */
static void test_parse_pure(void)
{
	const char *h = "{\"w\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}";
	size_t hl = strlen(h);
	uint8_t img[256] = { 0 };
	img[0] = (uint8_t)hl;
	memcpy(img + 8, h, hl);
	struct ckpt_tensor *t = NULL;
	int n = -1;
	struct ts_err e = { 0 };
	int rc = ckpt_parse_safetensors(img, 8 + hl + 4, "mem.safetensors", &t, &n, &e);
	T_CHECK(rc == 0 && n == 1 && t && strcmp(t[0].name, "w") == 0 && t[0].data == img + 8 + hl && t[0].shard == 0,
		"pure parse: %s", e.msg);
	ts_free(t);
	rc = ckpt_parse_safetensors(img, 8 + hl + 3, "mem.safetensors", &t, &n, &e);
	T_CHECK(rc == -E_FORMAT && t == NULL && n == 0, "one byte short");
	T_HAS(e.msg, "mem.safetensors: tensor 'w'");
	rc = ckpt_parse_safetensors(NULL, 0, "mem.safetensors", &t, &n, &e);
	T_CHECK(rc == -E_FORMAT, "empty buffer");
	memcpy(img + 8, "{}", 2);
	img[0] = 2;
	rc = ckpt_parse_safetensors(img, 10, "mem.safetensors", &t, &n, &e);
	T_CHECK(rc == 0 && n == 0, "a header with no tensors");
	ts_free(t);
}

/* ---------------------------------------------------------------- broken safetensors */

#define ENT(name, dt, shape, off) "\"" name "\": {\"dtype\": \"" dt "\", \"shape\": " shape ", \"data_offsets\": " off "}"

static void test_bad_files(void)
{
	const char *dir = case_dir("short");
	write_file(dir, "model.safetensors", "\x05\0\0\0\0", 5, NULL, 0);
	expect_fail(dir, E_FORMAT, "model.safetensors", "5 bytes, too short", NULL);

	dir = case_dir("zero");
	write_file(dir, "model.safetensors", NULL, 0, NULL, 0);
	expect_fail(dir, E_FORMAT, "model.safetensors", "0 bytes", NULL);

	dir = case_dir("hlen_past_end"); /* header length 1000, 20 bytes follow */
	write_file(dir, "model.safetensors", "\xe8\x03\0\0\0\0\0\0{}                  ", 28, NULL, 0);
	expect_fail(dir, E_FORMAT, "model.safetensors", "header length 1000 is more than the 20 bytes", NULL);

	/* Header length over 100 MB in a file big enough to hold it (sparse). */
	dir = case_dir("hlen_huge");
	char path[512];
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	uint64_t big = ((uint64_t)100 << 20) + 1;
	uint8_t len8[8];
	for (int k = 0; k < 8; k++)
		len8[k] = (uint8_t)(big >> (8 * k));
	write_file(dir, "model.safetensors", len8, 8, NULL, 0);
	T_CHECK(truncate(path, (off_t)(8 + big + 16)) == 0, "truncate %s", path);
	expect_fail(dir, E_FORMAT, "model.safetensors", "over the 104857600-byte limit", NULL);

	bad_single("bad_json", "{\"w\": {\"dtype\": \"F32\",}}", 0, E_FORMAT, "model.safetensors:1:23:",
		   "trailing comma");
	bad_single("not_object", "[1, 2]", 0, E_FORMAT, "not an object", NULL);
	bad_single("entry_not_object", "{\"w.weight\": 5}", 0, E_FORMAT, "tensor 'w.weight'", "not an object");
	bad_single("no_dtype", "{\"w.weight\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, E_FORMAT,
		   "tensor 'w.weight'", "\"dtype\" is missing");
	bad_single("no_shape", "{\"w.weight\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, E_FORMAT,
		   "tensor 'w.weight'", "\"shape\" is missing");
	bad_single("no_offsets", "{\"w.weight\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, E_FORMAT,
		   "tensor 'w.weight'", "\"data_offsets\" is missing");
	bad_single("i64", "{" ENT("pos.ids", "I64", "[2]", "[0, 16]") "}", 16, E_UNSUPPORTED,
		   "tensor 'pos.ids' has dtype I64", "supported: F32, F16, BF16");
	bad_single("f8", "{" ENT("w.weight", "F8_E4M3", "[2]", "[0, 2]") "}", 2, E_UNSUPPORTED,
		   "dtype F8_E4M3", "F8_*, I64");
	bad_single("dims9", "{" ENT("w.weight", "F32", "[1,1,1,1,1,1,1,1,1]", "[0, 4]") "}", 4, E_UNSUPPORTED,
		   "tensor 'w.weight' has 9 dimensions", "at most 8");
	bad_single("neg_dim", "{" ENT("w.weight", "F32", "[2, -1]", "[0, 4]") "}", 4, E_FORMAT,
		   "tensor 'w.weight'", "shape[1] is not a non-negative integer");
	bad_single("real_dim", "{" ENT("w.weight", "F32", "[2.5]", "[0, 4]") "}", 4, E_FORMAT, "tensor 'w.weight'",
		   "shape[0]");
	bad_single("str_dim", "{" ENT("w.weight", "F32", "[\"3\"]", "[0, 12]") "}", 12, E_FORMAT,
		   "tensor 'w.weight'", "shape[0]");
	bad_single("overflow", "{" ENT("w.weight", "F32", "[4294967296, 4294967296]", "[0, 0]") "}", 0, E_FORMAT,
		   "tensor 'w.weight'", "overflows");
	bad_single("off_one", "{" ENT("w.weight", "F32", "[1]", "[4]") "}", 4, E_FORMAT, "tensor 'w.weight'",
		   "not two non-negative integers");
	bad_single("off_str", "{" ENT("w.weight", "F32", "[1]", "[0, \"4\"]") "}", 4, E_FORMAT, "tensor 'w.weight'",
		   "\"data_offsets\"");
	bad_single("off_neg", "{" ENT("w.weight", "F32", "[1]", "[-4, 0]") "}", 4, E_FORMAT, "tensor 'w.weight'",
		   "\"data_offsets\"");
	bad_single("off_reversed", "{" ENT("w.weight", "F32", "[0]", "[8, 0]") "}", 8, E_FORMAT, "tensor 'w.weight'",
		   "begin after they end");
	bad_single("off_past_end", "{" ENT("w.weight", "F32", "[4]", "[0, 16]") "}", 12, E_FORMAT, "tensor 'w.weight'",
		   "holds only 12 bytes");
	bad_single("mismatch", "{" ENT("w.weight", "BF16", "[3, 2]", "[0, 8]") "}", 8, E_FORMAT, "tensor 'w.weight'",
		   "span 8 bytes but shape [3, 2] of BF16 needs 12");
	bad_single("overlap",
		   "{" ENT("a.weight", "F32", "[4]", "[0, 16]") "," ENT("b.weight", "F32", "[4]", "[8, 24]") "}", 24,
		   E_FORMAT, "tensors 'a.weight' [0, 16) and 'b.weight' [8, 24) overlap", NULL);
	bad_single("dup_name",
		   "{" ENT("a.weight", "F32", "[1]", "[0, 4]") "," ENT("a.weight", "F32", "[1]", "[4, 8]") "}", 8,
		   E_FORMAT, "tensor 'a.weight' appears twice", NULL);

	/* A valid header whose data was cut short (an interrupted download). */
	bad_single("truncated",
		   "{" ENT("a.weight", "F32", "[4]", "[0, 16]") "," ENT("b.weight", "F32", "[256]", "[16, 1040]") "}",
		   100, E_FORMAT, "tensor 'b.weight'", "truncated");
}

/* ---------------------------------------------------------------- broken directories */

static void test_bad_dirs(void)
{
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/does_not_exist", root);
	expect_fail(missing, E_IO, "does_not_exist", "No such file", "model.safetensors");

	const char *dir = case_dir("no_weights");
	expect_fail(dir, E_IO, "no_weights", "model.safetensors.index.json", "config.json");

	char file[300];
	snprintf(file, sizeof(file), "%s/config.json", dir);
	expect_fail(file, E_IO, "config.json", "not a directory", NULL);

	dir = case_dir("no_config");
	write_st(dir, "model.safetensors", "{}", NULL, 0);
	snprintf(file, sizeof(file), "%s/config.json", dir);
	unlink(file);
	expect_fail(dir, E_IO, "no_config: no config.json", "download it", NULL);

	dir = case_dir("bad_config");
	write_st(dir, "model.safetensors", "{}", NULL, 0);
	const char *cfg = "{\n  \"hidden_size\": 3,\n  \"vocab\": 01\n}";
	write_file(dir, "config.json", cfg, strlen(cfg), NULL, 0);
	expect_fail(dir, E_FORMAT, "bad_config/config.json:3:12:", "leading zeros", NULL);

	dir = case_dir("config_array");
	write_st(dir, "model.safetensors", "{}", NULL, 0);
	write_file(dir, "config.json", "[]", 2, NULL, 0);
	expect_fail(dir, E_FORMAT, "config.json", "not a JSON object", NULL);
}

static void test_bad_index(void)
{
	const char *dir = case_dir("index_bad_json");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": \"x\" \"b\"}}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json:1:33:", "expected ',' or '}'", NULL);

	dir = case_dir("index_no_map");
	write_sharded(dir, "{\"metadata\": {}}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json", "\"weight_map\" is missing", NULL);

	dir = case_dir("index_map_array");
	write_sharded(dir, "{\"weight_map\": [\"model-00001-of-00002.safetensors\"]}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json", "not an object", NULL);

	dir = case_dir("index_map_num");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": 1}}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json", "weight_map[\"a.weight\"]", NULL);

	dir = case_dir("index_slash");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": \"sub/model-00001-of-00002.safetensors\"}}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json", "sub/model-00001", "no '/' or '..'");

	dir = case_dir("index_dotdot");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": \"..\"}}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json", "a.weight", "\"..\"");

	dir = case_dir("index_missing_shard");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
			   " \"z.weight\": \"model-00003-of-00003.safetensors\"}}");
	expect_fail(dir, E_IO, "model.safetensors.index.json lists shard", "model-00003-of-00003.safetensors",
		    "download the missing shard");

	dir = case_dir("index_absent_tensor");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\","
			   " \"q.weight\": \"model-00002-of-00002.safetensors\"}}");
	expect_fail(dir, E_FORMAT, "model.safetensors.index.json lists tensor 'q.weight'",
		    "in shard model-00002-of-00002.safetensors", "no such tensor");

	dir = case_dir("index_wrong_shard");
	write_sharded(dir, "{\"weight_map\": {\"a.weight\": \"model-00002-of-00002.safetensors\","
			   " \"b.weight\": \"model-00001-of-00002.safetensors\","
			   " \"c.weight\": \"model-00002-of-00002.safetensors\"}}");
	expect_fail(dir, E_FORMAT, "tensor 'a.weight' in shard model-00002-of-00002.safetensors",
		    "(it is in model-00001-of-00002.safetensors)", NULL);

	/* The same tensor in two shards. */
	dir = case_dir("dup_across_shards");
	write_sharded(dir, NULL);
	uint8_t z[8] = { 0 };
	write_st(dir, shard2,
		 "{\"c.weight\": {\"dtype\": \"F16\", \"shape\": [3], \"data_offsets\": [0, 6]},"
		 " \"a.weight\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [6, 8]}}",
		 z, sizeof(z));
	expect_fail(dir, E_FORMAT, "tensor 'a.weight' is in both", shard1, shard2);

	/* A shard broken inside: the message names that shard. */
	dir = case_dir("bad_shard");
	write_sharded(dir, NULL);
	write_st(dir, shard2, "{\"c.weight\": {\"dtype\": \"F16\", \"shape\": [4], \"data_offsets\": [0, 6]}}", z, 6);
	expect_fail(dir, E_FORMAT, "model-00002-of-00002.safetensors: tensor 'c.weight'", "needs 8", NULL);
}

/* ---------------------------------------------------------------- main */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

int main(void)
{
	snprintf(root, sizeof(root), "/tmp/t_ckpt.XXXXXX");
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	test_single();
	test_sharded();
	test_parse_pure();
	test_bad_files();
	test_bad_dirs();
	test_bad_index();
	T_CHECK(nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS) == 0, "remove %s", root);
	T_CHECK(access(root, F_OK) != 0, "%s is gone", root);
	return T_DONE();
}
