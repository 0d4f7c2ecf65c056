/* fuzz_json: libFuzzer target for json_parse.
 *
 * Parses the input and walks the whole tree through every accessor,
 * aborting when an accessor disagrees with the value's type, a string is not
 * NUL-terminated valid UTF-8, or a key is not found by json_get. ASAN and
 * UBSAN catch the rest.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz_json.c src/json.c src/base.c
 *
 * tests/t_fuzz.c #includes this file with TS_FUZZ_NO_MAIN defined and calls
 * fuzz_json_one directly (no libFuzzer), over seeds and mutations.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

/* The value of obj's last member named key, found the slow way. */
static const struct json_val *fuzz_json_last(const struct json_val *obj, const char *key, size_t klen)
{
	for (int j = json_len(obj) - 1; j >= 0; j--) {
		size_t l = 0;
		const char *kj = json_key_at(obj, j, &l);
		if (l == klen && memcmp(kj, key, l) == 0)
			return json_at(obj, j);
	}
	return NULL;
}

static void fuzz_json_walk(const struct json_val *v, int depth)
{
	enum json_type t = json_type(v);
	double d = 0;
	int64_t i = 0;
	int b = 0;
	size_t len = 0;
	FUZZ_CHECK(v != NULL && depth <= 128);
	FUZZ_CHECK((json_num(v, &d) == 0) == (t == JSON_NUM));
	if (json_int64(v, &i) == 0)
		FUZZ_CHECK(t == JSON_NUM && (double)i == d);
	FUZZ_CHECK((json_bool(v, &b) == 0) == (t == JSON_TRUE || t == JSON_FALSE));
	const char *s = json_str(v, &len);
	FUZZ_CHECK((s != NULL) == (t == JSON_STR));
	if (s)
		FUZZ_CHECK(s[len] == '\0' && fuzz_utf8_ok(s, len));
	int n = json_len(v);
	FUZZ_CHECK(n >= 0 && (n == 0 || t == JSON_ARR || t == JSON_OBJ));
	FUZZ_CHECK(json_at(v, n) == NULL && json_at(v, -1) == NULL && json_key_at(v, n, NULL) == NULL);
	for (int k = 0; k < n; k++) {
		const struct json_val *kid = json_at(v, k);
		FUZZ_CHECK(kid != NULL);
		if (t == JSON_OBJ) {
			size_t klen = 0;
			const char *key = json_key_at(v, k, &klen);
			FUZZ_CHECK(key && key[klen] == '\0' && fuzz_utf8_ok(key, klen));
			if (strlen(key) == klen) {
				const struct json_val *g = json_get(v, key);
				FUZZ_CHECK(g != NULL);
				if (n <= 64) /* g is the value of the last member with this key */
					FUZZ_CHECK(g == fuzz_json_last(v, key, klen));
			}
		} else {
			FUZZ_CHECK(json_key_at(v, k, NULL) == NULL && json_get(v, "") == NULL);
		}
		fuzz_json_walk(kid, depth + 1);
	}
}

/* Returns 1 when the input parsed, 0 when it was refused. */
static int fuzz_json_one(const uint8_t *data, size_t size)
{
	struct json_doc *d = NULL;
	struct ts_err e = { 0 };
	int rc = json_parse(&d, "fuzz.json", (const char *)data, size, &e);
	if (rc) {
		FUZZ_CHECK(rc == -E_FORMAT && d == NULL && strncmp(e.msg, "fuzz.json:", 10) == 0);
		return 0;
	}
	FUZZ_CHECK(d != NULL && json_root(d) != NULL);
	fuzz_json_walk(json_root(d), 0);
	json_free(d);
	return 1;
}

#ifndef TS_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_json_one(data, size);
	return 0;
}
#endif
