/* t_json: the JSON reader. Valid documents come back as the right tree
 * (nesting, escapes and surrogate pairs decoded to UTF-8, numbers including
 * the int64 edges, last-wins lookups); invalid ones fail with E_FORMAT and a
 * message "t.json:<line>:<col>: <problem>" that points at the offending byte;
 * a 10 MB tokenizer-like document parses in linear time. */
#include "json.h"
#include "t.h"

#include <stdint.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- helpers */

static struct json_doc *parse_n(const char *text, size_t len)
{
	struct json_doc *d = NULL;
	struct ts_err e = { 0 };
	int rc = json_parse(&d, "t.json", text, len, &e);
	T_CHECK(rc == 0 && d, "parse of \"%.60s\" failed: %s", text, e.msg);
	return d;
}

static struct json_doc *parse(const char *text)
{
	return parse_n(text, strlen(text));
}

/* text must fail; the message must start "t.json:<where>: " and hold `problem`. */
static void bad_n(const char *text, size_t len, const char *where, const char *problem)
{
	struct json_doc *d = (struct json_doc *)1;
	struct ts_err e = { 0 };
	char prefix[64];
	int rc = json_parse(&d, "t.json", text, len, &e);
	T_CHECK(rc == -E_FORMAT && d == NULL, "\"%.60s\" should fail with E_FORMAT, got %d", text, rc);
	snprintf(prefix, sizeof(prefix), "t.json:%s: ", where);
	T_CHECK(strncmp(e.msg, prefix, strlen(prefix)) == 0, "\"%.60s\": message \"%s\" does not start \"%s\"", text,
		e.msg, prefix);
	T_HAS(e.msg, problem);
}

static void bad(const char *text, const char *where, const char *problem)
{
	bad_n(text, strlen(text), where, problem);
}

static int str_is(const struct json_val *v, const char *want, size_t want_len)
{
	size_t len = 0;
	const char *s = json_str(v, &len);
	return s && len == want_len && memcmp(s, want, len) == 0 && s[len] == '\0';
}

/* ---------------------------------------------------------------- valid */

static void test_nested(void)
{
	struct json_doc *d = parse(" {\"a\": [1, 2, {\"b\": null}], \"c\": {\"d\": true, \"e\": false},\n"
				   "  \"s\": \"x\", \"empty_a\": [], \"empty_o\": {}, \"aa\": [[[]]]} ");
	const struct json_val *r = json_root(d), *a, *c;
	int b = -1;
	T_CHECK(json_type(r) == JSON_OBJ && json_len(r) == 6, "root: type %d len %d", json_type(r), json_len(r));
	a = json_get(r, "a");
	T_CHECK(json_type(a) == JSON_ARR && json_len(a) == 3, "a");
	int64_t x = 0;
	T_CHECK(json_int64(json_at(a, 1), &x) == 0 && x == 2, "a[1] = %lld", (long long)x);
	T_CHECK(json_type(json_get(json_at(a, 2), "b")) == JSON_NULL && json_get(json_at(a, 2), "b"), "a[2].b");
	c = json_get(r, "c");
	T_CHECK(json_bool(json_get(c, "d"), &b) == 0 && b == 1, "c.d");
	T_CHECK(json_bool(json_get(c, "e"), &b) == 0 && b == 0, "c.e");
	T_CHECK(str_is(json_get(r, "s"), "x", 1), "s");
	T_CHECK(json_type(json_get(r, "empty_a")) == JSON_ARR && json_len(json_get(r, "empty_a")) == 0, "[]");
	T_CHECK(json_type(json_get(r, "empty_o")) == JSON_OBJ && json_len(json_get(r, "empty_o")) == 0, "{}");
	T_CHECK(json_at(json_get(r, "empty_a"), 0) == NULL, "[][0]");
	T_CHECK(json_len(json_at(json_at(json_get(r, "aa"), 0), 0)) == 0, "[[[]]]");
	size_t len = 0;
	const char *k = json_key_at(r, 1, &len);
	T_CHECK(k && len == 1 && strcmp(k, "c") == 0, "key_at(1) = %s", k ? k : "(null)");
	T_CHECK(json_at(r, 1) == c, "json_at on an object gives the member value");
	T_CHECK(json_key_at(r, 6, NULL) == NULL && json_key_at(r, -1, NULL) == NULL, "key_at out of range");
	T_CHECK(json_at(a, 3) == NULL && json_at(a, -1) == NULL, "at out of range");
	T_CHECK(json_get(r, "zz") == NULL && json_get(a, "a") == NULL, "get absent / on an array");
	T_CHECK(json_key_at(a, 0, NULL) == NULL, "key_at on an array");
	json_free(d);
}

static void test_wrong_types(void)
{
	struct json_doc *d = parse("[\"s\", 1, true, null, {}]");
	const struct json_val *r = json_root(d);
	double f;
	int64_t i;
	int b;
	T_CHECK(json_num(json_at(r, 0), &f) == -E_FORMAT && json_int64(json_at(r, 0), &i) == -E_FORMAT, "num of str");
	T_CHECK(json_bool(json_at(r, 1), &b) == -E_FORMAT && json_str(json_at(r, 1), NULL) == NULL, "bool/str of num");
	T_CHECK(json_num(json_at(r, 2), &f) == -E_FORMAT, "num of true");
	T_CHECK(json_bool(json_at(r, 3), &b) == -E_FORMAT, "bool of null");
	T_CHECK(json_num(NULL, &f) == -E_FORMAT && json_int64(NULL, &i) == -E_FORMAT && json_bool(NULL, &b) == -E_FORMAT &&
			json_str(NULL, NULL) == NULL && json_len(NULL) == 0 && json_get(NULL, "a") == NULL &&
			json_at(NULL, 0) == NULL,
		"NULL is refused everywhere");
	T_CHECK(json_len(json_at(r, 0)) == 0 && json_len(json_at(r, 1)) == 0, "len of scalars");
	json_free(d);
	json_free(NULL);
}

static void test_strings(void)
{
	/* \u00e9 = é (2 bytes), \u4e2d = 中 (3), \ud83d\ude00 = 😀 (4); raw UTF-8 passes through. */
	struct json_doc *d = parse("[\"\\u00e9\\u4E2D\\ud83d\\ude00\", \"\\n\\t\\r\\b\\f\\\"\\\\\\/\", \"h\xc3\xa9llo \xf0\x9f\x98\x80\","
				   " \"a\\u0000b\", \"\", \"\\uFFFF\\uDBFF\\uDFFF\"]");
	const struct json_val *r = json_root(d);
	T_CHECK(str_is(json_at(r, 0), "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", 9), "\\u escapes and surrogate pair");
	T_CHECK(str_is(json_at(r, 1), "\n\t\r\b\f\"\\/", 8), "short escapes");
	T_CHECK(str_is(json_at(r, 2), "h\xc3\xa9llo \xf0\x9f\x98\x80", 11), "raw UTF-8");
	T_CHECK(str_is(json_at(r, 3), "a\0b", 3), "\\u0000 kept, length 3");
	T_CHECK(str_is(json_at(r, 4), "", 0), "empty string");
	T_CHECK(str_is(json_at(r, 5), "\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7), "U+FFFF and U+10FFFF");
	json_free(d);

	/* Keys are decoded too, and a key with \u0000 is not found by a C string. */
	d = parse("{\"\\u0041b\": 1, \"x\\u0000y\": 2}");
	T_CHECK(json_get(json_root(d), "Ab") != NULL, "escaped key");
	T_CHECK(json_get(json_root(d), "x") == NULL, "key with NUL does not match its prefix");
	json_free(d);

	/* A UTF-8 byte order mark is ignored (RFC 8259 8.1). */
	d = parse("\xef\xbb\xbf{\"a\":1}");
	T_CHECK(json_get(json_root(d), "a") != NULL, "BOM");
	json_free(d);
}

static void num_is(const char *text, double want)
{
	struct json_doc *d = parse(text);
	double f = 0;
	T_CHECK(d && json_num(json_root(d), &f) == 0 && f == want, "%s: got %.17g want %.17g", text, f, want);
	json_free(d);
}

/* want_ok: whether json_int64 accepts it. */
static void int_is(const char *text, int want_ok, int64_t want)
{
	struct json_doc *d = parse(text);
	int64_t x = 0;
	int rc = d ? json_int64(json_root(d), &x) : -1;
	if (want_ok)
		T_CHECK(rc == 0 && x == want, "%s: rc %d got %lld want %lld", text, rc, (long long)x, (long long)want);
	else
		T_CHECK(rc == -E_FORMAT, "%s: json_int64 should refuse it, got %lld", text, (long long)x);
	json_free(d);
}

static void test_numbers(void)
{
	num_is("0", 0);
	num_is("-0", 0);
	num_is("1.5", 1.5);
	num_is("-1e3", -1000);
	num_is("1E+2", 100);
	num_is("2.5e-3", 0.0025);
	num_is("1e308", 1e308);
	num_is("1e-400", 0); /* underflows to zero: accepted */
	num_is(" 123456789012 ", 123456789012.0);
	num_is("0.1", 0.1);
	num_is("9223372036854775808", 9223372036854775808.0);
	num_is("1e-06", 1e-6);
	int_is("9223372036854775807", 1, INT64_MAX);
	int_is("-9223372036854775808", 1, INT64_MIN);
	int_is("9223372036854775808", 0, 0);
	int_is("-9223372036854775809", 0, 0);
	int_is("18446744073709551616", 0, 0);
	int_is("1.5", 0, 0);
	int_is("2.0", 1, 2);
	int_is("1e3", 1, 1000);
	int_is("-0", 1, 0);
	int_is("1e19", 0, 0);
	int_is("1e16", 0, 0); /* written as a real beyond 2^53: not known to be whole */
	int_is("9007199254740992.0", 1, 9007199254740992LL);
	int_is("151643", 1, 151643);
	int_is("9007199254740993", 1, 9007199254740993LL); /* exact: beyond double precision */
}

static void test_lookup(void)
{
	struct json_doc *d = parse("{\"a\": 1, \"b\": 2, \"a\": 3}");
	const struct json_val *r = json_root(d);
	int64_t x = 0;
	T_CHECK(json_len(r) == 3, "duplicates are kept as members");
	T_CHECK(json_int64(json_get(r, "a"), &x) == 0 && x == 3, "last wins: got %lld", (long long)x);
	T_CHECK(json_int64(json_at(r, 0), &x) == 0 && x == 1, "json_at(0) is the first 'a'");
	T_CHECK(strcmp(json_key_at(r, 2, NULL), "a") == 0, "key_at(2)");
	json_free(d);

	d = parse("\"top\"");
	T_CHECK(str_is(json_root(d), "top", 3), "scalar at the top level");
	json_free(d);
	d = parse(" true\n");
	T_CHECK(json_type(json_root(d)) == JSON_TRUE, "true at the top level");
	json_free(d);
}

static void test_depth(void)
{
	char buf[2 * 130 + 1];
	for (int depth = 128; depth <= 129; depth++) {
		memset(buf, '[', (size_t)depth);
		memset(buf + depth, ']', (size_t)depth);
		buf[2 * depth] = '\0';
		struct json_doc *d = NULL;
		struct ts_err e = { 0 };
		int rc = json_parse(&d, "t.json", buf, strlen(buf), &e);
		if (depth == 128)
			T_CHECK(rc == 0, "depth 128 must parse: %s", e.msg);
		else
			T_CHECK(rc == -E_FORMAT && strstr(e.msg, "t.json:1:129: nesting deeper than 128"), "depth 129: %s",
				e.msg);
		json_free(d);
	}
}

/* A tokenizer.json-sized document: {"model": {"vocab": {"tok<i>": i, ...},
 * "merges": ["a b", ...]}}, about 10 MB. */
static void test_big(void)
{
	const int n = 400000;
	size_t cap = (size_t)n * 40 + 64, o = 0;
	char *buf = malloc(cap);
	o += (size_t)snprintf(buf + o, cap - o, "{\"model\": {\"vocab\": {");
	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s\"tok\\u00e9%d\": %d", i ? ", " : "", i, i);
	o += (size_t)snprintf(buf + o, cap - o, "}, \"merges\": [");
	for (int i = 0; i < n / 4; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s\"a%d b\"", i ? "," : "", i);
	o += (size_t)snprintf(buf + o, cap - o, "]}}");
	double t0 = ts_now();
	struct json_doc *d = parse_n(buf, o);
	double ms = (ts_now() - t0) * 1e3;
	const struct json_val *vocab = json_get(json_get(json_root(d), "model"), "vocab");
	int64_t x = -1;
	T_CHECK(json_len(vocab) == n, "vocab has %d members", json_len(vocab));
	T_CHECK(json_int64(json_at(vocab, n - 1), &x) == 0 && x == n - 1, "last vocab entry %lld", (long long)x);
	T_CHECK(str_is(json_at(json_get(json_get(json_root(d), "model"), "merges"), n / 4 - 1), "a99999 b", 8),
		"last merge");
	T_CHECK(json_int64(json_get(vocab, "tok\xc3\xa9" "12345"), &x) == 0 && x == 12345, "lookup by key");
	printf("# t_json: parsed %.1f MB in %.0f ms\n", (double)o / 1e6, ms);
	T_CHECK(ms < 3000, "10 MB took %.0f ms; the parser should be linear and fast", ms);
	json_free(d);
	free(buf);
}

/* ---------------------------------------------------------------- invalid */

static void test_invalid(void)
{
	bad("", "1:1", "expected a value, found end of input");
	bad("  \n ", "2:2", "expected a value");
	bad("[1,2,]", "1:6", "trailing comma before ']'");
	bad("{\"a\":1,}", "1:8", "trailing comma before '}'");
	bad("[1,,2]", "1:4", "expected a value");
	bad("[1 2]", "1:4", "expected ',' or ']' after array element");
	bad("{\"a\":1 \"b\":2}", "1:8", "expected ',' or '}' after object member");
	bad("{\n  \"a\": 1,\n  \"b\" 2\n}", "3:7", "expected ':' after member name");
	bad("{a:1}", "1:2", "expected a '\"'-quoted member name");
	bad("{,}", "1:2", "expected a '\"'-quoted member name");
	bad("[", "1:2", "expected a value, found end of input");
	bad("{\"a\":1", "1:7", "expected ',' or '}' after object member, found end of input");
	bad("01", "1:1", "leading zeros");
	bad("[-012]", "1:3", "leading zeros");
	bad("-", "1:2", "expected a digit after '-'");
	bad("1.", "1:3", "expected a digit after '.'");
	bad("1.e5", "1:3", "expected a digit after '.'");
	bad("1e", "1:3", "expected a digit in the exponent");
	bad("1e+", "1:4", "expected a digit in the exponent");
	bad(".5", "1:1", "unexpected '.'");
	bad("+1", "1:1", "unexpected '+'");
	bad("1e400", "1:1", "too large for a double");
	bad("[-1e999]", "1:2", "too large for a double");
	bad("NaN", "1:1", "NaN and Infinity are not JSON numbers");
	bad("[Infinity]", "1:2", "NaN and Infinity");
	bad("-Infinity", "1:2", "expected a digit after '-'");
	bad("tru", "1:1", "did you mean true");
	bad("[nul]", "1:2", "did you mean null");
	bad("truex", "1:5", "after the end of the document");
	bad("{} x", "1:4", "unexpected 'x' after the end of the document");
	bad("1 2", "1:3", "after the end of the document");
	bad("'a'", "1:1", "double quotes");
	bad("\"abc", "1:1", "string is not terminated");
	bad("\"a\x01" "b\"", "1:3", "control character 0x01");
	bad("\"a\tb\"", "1:3", "control character 0x09");
	bad("[\"ok\",\n\"a\nb\"]", "2:3", "control character 0x0a");
	bad("\"\\x\"", "1:2", "invalid escape");
	bad("\"\\", "1:2", "invalid escape");
	bad("\"\\u12G4\"", "1:2", "4 hex digits");
	bad("\"\\u12\"", "1:2", "4 hex digits");
	bad("\"\\ud800\"", "1:2", "lone high surrogate");
	bad("\"\\ud800\\u0041\"", "1:2", "lone high surrogate");
	bad("\"\\ud800\\ud800\"", "1:2", "lone high surrogate");
	bad("\"\\udc00\"", "1:2", "lone low surrogate");
	bad("\"x\\uDFFF\\uD800\"", "1:3", "lone low surrogate");
	bad("\"\xc3\x28\"", "1:2", "invalid UTF-8 byte 0xc3");
	bad("\"\xc0\xaf\"", "1:2", "invalid UTF-8 byte 0xc0");             /* overlong '/' */
	bad("\"\xe0\x80\xaf\"", "1:2", "invalid UTF-8 byte 0xe0");         /* overlong, 3 bytes */
	bad("\"\xed\xa0\x80\"", "1:2", "invalid UTF-8 byte 0xed");         /* encoded surrogate */
	bad("\"\xf4\x90\x80\x80\"", "1:2", "invalid UTF-8 byte 0xf4");     /* above U+10FFFF */
	bad("\"\xe4\xb8\"", "1:2", "invalid UTF-8 byte 0xe4");             /* truncated */
	bad("\"\x80\"", "1:2", "invalid UTF-8 byte 0x80");                 /* lone continuation */
	bad("\"\xff\"", "1:2", "invalid UTF-8 byte 0xff");
	bad("[\"\xc3\xa9\", x]", "1:7", "unexpected 'x'"); /* columns count characters, not bytes */
	bad("\xc3\xa9", "1:1", "unexpected byte 0xc3");
	bad("\f1", "1:1", "unexpected byte 0x0c");
	bad_n("[1,\0 2]", 7, "1:4", "unexpected byte 0x00");
	bad_n("1\0", 2, "1:2", "after the end of the document");
	bad("{\"a\":1}}", "1:8", "unexpected '}' after the end");
	bad("[1]]", "1:4", "unexpected ']' after the end");
	bad("\xef\xbb", "1:1", "unexpected byte 0xef");
}

static void test_errors_null_e(void)
{
	struct json_doc *d = NULL;
	T_CHECK(json_parse(&d, NULL, "[", 1, NULL) == -E_FORMAT && d == NULL, "works without an error carrier");
	struct ts_err e = { 0 };
	json_parse(&d, NULL, "[", 1, &e);
	T_HAS(e.msg, "<json>:1:2:");
}

int main(void)
{
	test_nested();
	test_wrong_types();
	test_strings();
	test_numbers();
	test_lookup();
	test_depth();
	test_invalid();
	test_errors_null_e();
	test_big();
	return T_DONE();
}
