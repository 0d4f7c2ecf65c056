/* t_fuzz: the two fuzz targets, run as a plain unit test (no libFuzzer) so
 * every CI run exercises them: built-in seeds, then 20000 deterministic
 * mutations (bit flips, truncations, length-field and number edits, byte
 * insertions, deletions, duplications) of a config.json, a safetensors image
 * and a bare safetensors header. A crash, or an abort from a target's
 * invariant checks, fails the test; under -fsanitize=address,undefined so
 * does any out-of-bounds read or undefined behaviour.
 *
 *   build/tests/t_fuzz                    run
 *   build/tests/t_fuzz --write-seeds DIR  write the seeds as DIR/json/ and
 *                                         DIR/ckpt/ corpora for libFuzzer,
 *                                         and DIR/json.dict
 */
#define TS_FUZZ_NO_MAIN
#include "fuzz_ckpt.c"
#include "fuzz_json.c"
#include "fuzz_proto.c"
#include "t.h"

#include <stdio.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------- seeds */

static const char *config_seed =
	"{\n"
	"  \"architectures\": [\"LlamaForCausalLM\"],\n"
	"  \"attention_bias\": false,\n"
	"  \"bos_token_id\": 128000,\n"
	"  \"eos_token_id\": [128001, 128008, 128009],\n"
	"  \"hidden_act\": \"silu\",\n"
	"  \"hidden_size\": 2048,\n"
	"  \"initializer_range\": 0.02,\n"
	"  \"max_position_embeddings\": 131072,\n"
	"  \"num_attention_heads\": 32,\n"
	"  \"num_key_value_heads\": 8,\n"
	"  \"rms_norm_eps\": 1e-05,\n"
	"  \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"rope_type\": \"llama3\"},\n"
	"  \"rope_theta\": 500000.0,\n"
	"  \"tie_word_embeddings\": true,\n"
	"  \"torch_dtype\": \"bfloat16\",\n"
	"  \"sliding_window\": null,\n"
	"  \"name\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ \\b\\f\\n\\r\\t\",\n"
	"  \"vocab_size\": -9223372036854775808\n"
	"}\n";

/* Valid documents first, then invalid ones (json_valid_seeds of them valid). */
static const char *json_seeds[] = {
	"{\"added_tokens\": [{\"id\": 151643, \"content\": \"<|endoftext|>\", \"special\": true}],"
	" \"model\": {\"type\": \"BPE\", \"vocab\": {\"\\u0120the\": 1, \"\xc3\xa9\": 2, \"a\": 3, \"a\": 4},"
	" \"merges\": [\"\\u0120 t\", \"a b\"]}}",
	"[]", "{}", "0", "-0.0e-0", "\"\\u0000\"", "[[[[{}]]]]", "1e308", " [1.5, -2, 3e2, true, false, null] ",
	"[1,]", "{\"a\"}", "\"\\ud800\"", "01", "[\"\x01\"]", "{\"a\":1}x",
};
static const int json_valid_seeds = 9;

#define ST_ENT(name, dt, shape, off) "\"" name "\": {\"dtype\": \"" dt "\", \"shape\": " shape ", \"data_offsets\": " off "}"

static const char *header_seed =
	"{\"__metadata__\": {\"format\": \"pt\"}, "
	ST_ENT("model.embed_tokens.weight", "BF16", "[4, 3]", "[0, 24]") ", "
	ST_ENT("model.layers.0.mlp.up_proj.weight", "F16", "[2, 2]", "[24, 32]") ", "
	ST_ENT("model.norm.weight", "F32", "[3]", "[32, 44]") ", "
	ST_ENT("empty", "F32", "[0, 7]", "[44, 44]") ", "
	ST_ENT("scalar", "F32", "[]", "[44, 48]") "}";
static const int header_seed_tensors = 5;
#define ST_DATA 48

/* header_seed as a whole safetensors image, in a malloc'd buffer. */
static uint8_t *image_seed(size_t *size)
{
	size_t hl = strlen(header_seed);
	uint8_t *img = malloc(8 + hl + ST_DATA);
	for (int k = 0; k < 8; k++)
		img[k] = (uint8_t)((uint64_t)hl >> (8 * k));
	memcpy(img + 8, header_seed, hl);
	for (int k = 0; k < ST_DATA; k++)
		img[8 + hl + k] = (uint8_t)k;
	*size = 8 + hl + ST_DATA;
	return img;
}

/* ---------------------------------------------------------------- mutations */

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

/* Replaces buf[pos..pos+del) by ins[0..n_ins) when it fits in cap. */
static void splice(uint8_t *buf, size_t *n, size_t cap, size_t pos, size_t del, const void *ins, size_t n_ins)
{
	if (pos > *n || del > *n - pos || *n - del + n_ins > cap)
		return;
	memmove(buf + pos + n_ins, buf + pos + del, *n - pos - del);
	if (n_ins)
		memcpy(buf + pos, ins, n_ins);
	*n = *n - del + n_ins;
}

static const char interesting[] = "{}[]\",:\\u0123456789eE.+- tfn\x00\x7f\x80\xbf\xc3\xed\xf4\xff";

static const char *const numbers[] = {
	"-1", "0", "18446744073709551616", "9223372036854775807", "9223372036854775808", "1e999", "0.5",
	"4294967296", "2147483648", "-0", "1e-999", "100000000", "48", "44",
};

/* Overwrites the first digit run at or after a random place with one of `numbers`. */
static void edit_number(uint8_t *buf, size_t *n, size_t cap, uint64_t *s)
{
	size_t pos = (size_t)rng_below(s, *n), end;
	while (pos < *n && !(buf[pos] >= '0' && buf[pos] <= '9'))
		pos++;
	for (end = pos; end < *n && buf[end] >= '0' && buf[end] <= '9'; end++)
		;
	const char *num = numbers[rng_below(s, TS_ARRAY_LEN(numbers))];
	splice(buf, n, cap, pos, end - pos, num, strlen(num));
}

/* Sets the image's u64 header length to a near or extreme value. */
static void edit_length(uint8_t *buf, size_t n, uint64_t *s)
{
	if (n < 8)
		return;
	uint64_t h = 0;
	for (int k = 7; k >= 0; k--)
		h = h << 8 | buf[k];
	static const uint64_t extreme[] = { 0, 1, 2, 7, 8, UINT64_MAX, (uint64_t)1 << 63, ((uint64_t)100 << 20) + 1 };
	uint64_t r = rng_below(s, 4);
	h = r == 0 ? extreme[rng_below(s, TS_ARRAY_LEN(extreme))] : r == 1 ? n - 8 - rng_below(s, 3)
								 : h + rng_below(s, 33) - 16;
	for (int k = 0; k < 8; k++)
		buf[k] = (uint8_t)(h >> (8 * k));
}

/* Applies 1 to 3 random edits to buf[0..*n) (capacity cap). */
static void mutate(uint8_t *buf, size_t *n, size_t cap, uint64_t *s, int is_image)
{
	int ops = 1 + (int)rng_below(s, 3);
	for (int o = 0; o < ops; o++) {
		size_t pos = (size_t)rng_below(s, *n + 1), len = 1 + (size_t)rng_below(s, 8);
		uint8_t ins[16];
		switch (rng_below(s, 8)) {
		case 0: /* bit flips */
			for (int k = 0; *n && k < 1 + (int)rng_below(s, 4); k++)
				buf[rng_below(s, *n)] ^= (uint8_t)(1u << rng_below(s, 8));
			break;
		case 1: /* truncation */
			*n = (size_t)rng_below(s, *n + 1);
			break;
		case 2: /* one byte becomes an interesting one */
			if (*n)
				buf[rng_below(s, *n)] = (uint8_t)interesting[rng_below(s, sizeof(interesting) - 1)];
			break;
		case 3: /* insertion */
			for (size_t k = 0; k < len; k++)
				ins[k] = rng_below(s, 2) ? (uint8_t)rng_next(s)
							 : (uint8_t)interesting[rng_below(s, sizeof(interesting) - 1)];
			splice(buf, n, cap, pos, 0, ins, len);
			break;
		case 4: /* deletion */
			splice(buf, n, cap, pos, TS_MIN(len, *n - pos), NULL, 0);
			break;
		case 5: /* duplicate a chunk somewhere else */
			if (*n) {
				size_t from = (size_t)rng_below(s, *n), k = TS_MIN(1 + (size_t)rng_below(s, 16), *n - from);
				memcpy(ins, buf + from, k);
				splice(buf, n, cap, pos, 0, ins, k);
			}
			break;
		case 6:
			edit_number(buf, n, cap, s);
			break;
		case 7:
			if (is_image)
				edit_length(buf, *n, s);
			else
				edit_number(buf, n, cap, s);
			break;
		}
	}
}

/* ---------------------------------------------------------------- runs */

struct family {
	const char *name;
	int (*one)(const uint8_t *, size_t);
	int is_image;
	int iters;
};

/* Runs f->iters mutations of seed through f->one; each input gets its own
 * exactly-sized heap copy so a sanitizer build sees any overread. */
static void run_family(const struct family *f, const uint8_t *seed, size_t seed_len, uint64_t rng)
{
	size_t cap = seed_len + 256;
	uint8_t *buf = malloc(cap);
	int accepted = 0, refused = 0, i;
	for (i = 0; i < f->iters; i++) {
		size_t n = seed_len;
		memcpy(buf, seed, seed_len);
		mutate(buf, &n, cap, &rng, f->is_image);
		uint8_t *exact = malloc(n ? n : 1);
		memcpy(exact, buf, n);
		if (f->one(exact, n))
			accepted++;
		else
			refused++;
		free(exact);
	}
	free(buf);
	printf("# t_fuzz: %-18s %5d mutations: %5d accepted, %5d refused\n", f->name, i, accepted, refused);
	T_CHECK(i == f->iters, "%s: survived every mutation", f->name);
	T_CHECK(accepted > 0 && refused > 0, "%s: mutations reach both outcomes (accepted %d, refused %d)", f->name,
		accepted, refused);
}

static void test_seeds(void)
{
	for (int i = 0; i < (int)TS_ARRAY_LEN(json_seeds); i++) {
		int ok = fuzz_json_one((const uint8_t *)json_seeds[i], strlen(json_seeds[i]));
		T_CHECK(ok == (i < json_valid_seeds), "json seed %d \"%.40s\": parsed=%d", i, json_seeds[i], ok);
	}
	T_CHECK(fuzz_json_one((const uint8_t *)config_seed, strlen(config_seed)) == 1, "config seed parses");

	size_t n;
	uint8_t *img = image_seed(&n);
	struct ckpt_tensor *t = NULL;
	int nt = 0;
	struct ts_err e = { 0 };
	T_CHECK(ckpt_parse_safetensors(img, n, "seed", &t, &nt, &e) == 0 && nt == header_seed_tensors,
		"image seed: %d tensors: %s", nt, e.msg);
	ts_free(t);
	T_CHECK(fuzz_ckpt_one(img, n) == 1, "image seed accepted");
	T_CHECK(fuzz_ckpt_one((const uint8_t *)header_seed, strlen(header_seed)) == 2, "header seed accepted");
	T_CHECK(fuzz_ckpt_one((const uint8_t *)"{}", 2) == 2 && fuzz_ckpt_one(NULL, 0) == 0, "tiny inputs");
	free(img);
	static uint8_t ps[8192];
	size_t pn = fuzz_proto_seed(ps, sizeof(ps));
	T_CHECK(fuzz_proto_one(ps, pn) == 1 && fuzz_proto_one(NULL, 0) == 0, "proto seed");
}

static void test_mutations(void)
{
	static const struct family json = { "config.json", fuzz_json_one, 0, 7000 };
	static const struct family image = { "safetensors image", fuzz_ckpt_one, 1, 7000 };
	static const struct family header = { "safetensors header", fuzz_ckpt_one, 0, 6000 };
	static const struct family proto = { "proto stream", fuzz_proto_one, 0, 6000 };
	static uint8_t ps[8192];
	size_t pn = fuzz_proto_seed(ps, sizeof(ps));
	size_t n;
	uint8_t *img = image_seed(&n);
	run_family(&json, (const uint8_t *)config_seed, strlen(config_seed), 0x9e3779b97f4a7c15ull);
	run_family(&image, img, n, 0xd1b54a32d192ed03ull);
	run_family(&header, (const uint8_t *)header_seed, strlen(header_seed), 0x94d049bb133111ebull);
	run_family(&proto, ps, pn, 0xbf58476d1ce4e5b9ull);
	free(img);
}

/* ---------------------------------------------------------------- seed corpora */

static int write_seed(const char *dir, const char *sub, int i, const void *p, size_t n)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	mkdir(dir, 0755);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/seed-%02d", dir, sub, i);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n) {
		perror(path);
		return 1;
	}
	return fclose(f) != 0;
}

/* Tokens for libFuzzer's -dict: JSON punctuation and safetensors keys. */
static const char fuzz_dict[] =
	"\"{\"\n\"}\"\n\"[\"\n\"]\"\n\":\"\n\",\"\n\"\\\"\"\n\"\\\\u\"\n\"\\\\ud83d\\\\ude00\"\n"
	"\"true\"\n\"false\"\n\"null\"\n\"1e\"\n\"-0.\"\n"
	"\"\\\"dtype\\\"\"\n\"\\\"shape\\\"\"\n\"\\\"data_offsets\\\"\"\n\"\\\"__metadata__\\\"\"\n"
	"\"\\\"BF16\\\"\"\n\"\\\"F16\\\"\"\n\"\\\"F32\\\"\"\n";

static int write_seeds(const char *dir)
{
	int rc = 0, i;
	size_t n;
	char path[1024];
	snprintf(path, sizeof(path), "%s/json.dict", dir);
	mkdir(dir, 0755);
	FILE *f = fopen(path, "w");
	if (!f || fputs(fuzz_dict, f) < 0 || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	for (i = 0; i < (int)TS_ARRAY_LEN(json_seeds); i++)
		rc |= write_seed(dir, "json", i, json_seeds[i], strlen(json_seeds[i]));
	rc |= write_seed(dir, "json", i, config_seed, strlen(config_seed));
	static uint8_t ps[8192];
	rc |= write_seed(dir, "proto", 0, ps, fuzz_proto_seed(ps, sizeof(ps)));
	uint8_t *img = image_seed(&n);
	rc |= write_seed(dir, "ckpt", 0, img, n);
	rc |= write_seed(dir, "ckpt", 1, header_seed, strlen(header_seed));
	free(img);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	double t0 = ts_now();
	test_seeds();
	test_mutations();
	double s = ts_now() - t0;
	printf("# t_fuzz: %.2f s\n", s);
	return T_DONE();
}
