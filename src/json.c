/* json: a strict RFC 8259 reader into an immutable tree.
 *
 * Layout. Every value is one 16-byte struct json_val. A container's children
 * sit contiguously in the document's value array (object members as key,
 * value, key, value, ...), and the container finds them by an offset relative
 * to itself, so the array may be moved by realloc while it grows and shrunk at
 * the end without fixing pointers. Decoded strings live in one char buffer
 * sized len + 1 up front: a decoded string plus its NUL never needs more bytes
 * than its quoted source, so that buffer never grows and string pointers into
 * it stay valid. A document is therefore three allocations plus the growth of
 * one array.
 *
 * Parsing. Recursive descent, depth capped at JSON_MAX_DEPTH. Finished values
 * are pushed on a work stack; when a container closes, its children are moved
 * off the stack into the value array in one block and the container itself is
 * pushed. Each value is moved once, so the parse is linear in the input.
 *
 * Errors are "<what>:<line>:<col>: <problem>", the column counting UTF-8
 * characters from 1; the position is worked out only when an error happens.
 */
#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define JSON_MAX_DEPTH 128
#define JSON_MAX_LEN ((size_t)1 << 30) /* 1 GiB: lengths and counts fit in uint32 */

/* How a JSON_NUM was written, which decides what json_int64 accepts. */
enum num_kind {
	NUM_REAL,    /* with a fraction or exponent: u.d */
	NUM_INT,     /* an integer inside int64: u.i, exact */
	NUM_BIG_INT, /* an integer outside int64: u.d, refused by json_int64 */
};

struct json_val {
	uint8_t type;   /* enum json_type */
	uint8_t kind;   /* JSON_NUM: enum num_kind */
	uint32_t n;     /* JSON_STR: bytes (without the NUL); JSON_ARR: elements; JSON_OBJ: members */
	union {
		double d;      /* JSON_NUM, NUM_REAL or NUM_BIG_INT */
		int64_t i;     /* JSON_NUM, NUM_INT */
		const char *s; /* JSON_STR: NUL-terminated UTF-8, may hold \u0000 */
		int64_t kids;  /* JSON_ARR, JSON_OBJ: first child at this + kids (absolute index while on the stack) */
	} u;
};

_Static_assert(sizeof(struct json_val) == 16, "a value is 16 bytes");

struct json_doc {
	struct json_val *vals; /* (n_vals) children before parents; the root is last */
	size_t n_vals;
	char *strs;            /* (len + 1) decoded strings */
};

struct parser {
	const char *what;
	const char *begin, *p, *end;
	struct json_val *stk; /* (n_stk) finished values whose container is still open */
	size_t n_stk, cap_stk;
	struct json_val *vals; /* (n_vals) placed values */
	size_t n_vals, cap_vals;
	char *strs;            /* decoded strings, written at strs + n_strs */
	size_t n_strs;
	int depth;
	int fixed; /* stk, vals and strs are the caller's, sized for any document of this length */
	struct ts_err *e;
};

/* ---------------------------------------------------------------- errors */

/* Formats "<what>:<line>:<col>: <problem>" for the byte at `at`. */
__attribute__((format(printf, 3, 4)))
static int perr(struct parser *ps, const char *at, const char *fmt, ...)
{
	int line = 1, col = 1;
	for (const char *q = ps->begin; q < at; q++) {
		if (*q == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)*q & 0xc0) != 0x80) { /* not a UTF-8 continuation byte */
			col++;
		}
	}
	char problem[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	return ts_errf(ps->e, E_FORMAT, "%s:%d:%d: %s", ps->what, line, col, problem);
}

static int nomem(struct parser *ps)
{
	return ts_errf(ps->e, E_NOMEM, "%s: out of memory while parsing %zu bytes of JSON", ps->what,
		       (size_t)(ps->end - ps->begin));
}

/* Describes the byte at p for a message: 'x', end of input, or 0xHH. */
static const char *byte_desc(const struct parser *ps, const char *p, char buf[16])
{
	unsigned char c = p < ps->end ? (unsigned char)*p : 0;
	if (p >= ps->end)
		snprintf(buf, 16, "end of input");
	else if (c > 0x20 && c < 0x7f)
		snprintf(buf, 16, "'%c'", c);
	else
		snprintf(buf, 16, "byte 0x%02x", c);
	return buf;
}

/* ---------------------------------------------------------------- the work stack */

static int push(struct parser *ps, const struct json_val *v)
{
	if (ps->n_stk == ps->cap_stk) {
		if (ps->fixed)
			return nomem(ps);
		size_t cap = ps->cap_stk ? 2 * ps->cap_stk : 64;
		struct json_val *s = ts_realloc(ps->stk, cap * sizeof(*s));
		if (!s)
			return nomem(ps);
		ps->stk = s;
		ps->cap_stk = cap;
	}
	ps->stk[ps->n_stk++] = *v;
	return 0;
}

/* Moves stk[from..n_stk) into the value array as one block and returns its
 * first index in *first. Containers among them get their child offsets made
 * relative to their new place. */
static int place(struct parser *ps, size_t from, size_t *first)
{
	size_t k = ps->n_stk - from;
	if (ps->n_vals + k > ps->cap_vals) {
		if (ps->fixed)
			return nomem(ps);
		size_t cap = ps->cap_vals ? 2 * ps->cap_vals : 256;
		while (cap < ps->n_vals + k)
			cap *= 2;
		struct json_val *v = ts_realloc(ps->vals, cap * sizeof(*v));
		if (!v)
			return nomem(ps);
		ps->vals = v;
		ps->cap_vals = cap;
	}
	*first = ps->n_vals;
	for (size_t j = 0; j < k; j++) {
		struct json_val v = ps->stk[from + j];
		if ((v.type == JSON_ARR || v.type == JSON_OBJ) && v.n)
			v.u.kids -= (int64_t)(ps->n_vals + j);
		ps->vals[ps->n_vals + j] = v;
	}
	ps->n_vals += k;
	ps->n_stk = from;
	return 0;
}

/* ---------------------------------------------------------------- scalars */

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
		ps->p++;
}

static int parse_literal(struct parser *ps, const char *word, enum json_type t)
{
	size_t n = strlen(word);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
		char b[16];
		return perr(ps, ps->p, "unexpected %s (expected a value; did you mean %s?)",
			    byte_desc(ps, ps->p, b), word);
	}
	ps->p += n;
	struct json_val v = { .type = (uint8_t)t };
	return push(ps, &v);
}

static int is_digit(const struct parser *ps, const char *p)
{
	return p < ps->end && *p >= '0' && *p <= '9';
}

/* Checks the RFC 8259 number grammar, then converts: integers without a
 * fraction or exponent exactly when they fit int64, everything else with
 * strtod on a NUL-terminated copy (placed in the unused tail of the string
 * buffer, which always has room for it: see the file comment). */
static int parse_number(struct parser *ps)
{
	const char *s = ps->p, *p = s;
	int integral = 1;
	char b[16];
	if (*p == '-')
		p++;
	if (!is_digit(ps, p))
		return perr(ps, p, "expected a digit after '-', found %s", byte_desc(ps, p, b));
	if (*p == '0' && is_digit(ps, p + 1))
		return perr(ps, p, "leading zeros are not allowed in numbers");
	while (is_digit(ps, p))
		p++;
	if (p < ps->end && *p == '.') {
		integral = 0;
		if (!is_digit(ps, ++p))
			return perr(ps, p, "expected a digit after '.', found %s", byte_desc(ps, p, b));
		while (is_digit(ps, p))
			p++;
	}
	if (p < ps->end && (*p == 'e' || *p == 'E')) {
		integral = 0;
		p++;
		if (p < ps->end && (*p == '+' || *p == '-'))
			p++;
		if (!is_digit(ps, p))
			return perr(ps, p, "expected a digit in the exponent, found %s", byte_desc(ps, p, b));
		while (is_digit(ps, p))
			p++;
	}
	struct json_val v = { .type = JSON_NUM };
	if (integral) { /* exact when it fits: |value| <= 2^63 accumulates in uint64 */
		int neg = *s == '-';
		uint64_t u = 0, lim = neg ? (uint64_t)1 << 63 : (uint64_t)INT64_MAX;
		int fits = 1;
		for (const char *q = s + neg; q < p && fits; q++) {
			unsigned dgt = (unsigned)(*q - '0');
			if (u > (lim - dgt) / 10)
				fits = 0;
			else
				u = u * 10 + dgt;
		}
		v.kind = fits ? NUM_INT : NUM_BIG_INT;
		if (fits) {
			v.u.i = !neg ? (int64_t)u : u == (uint64_t)1 << 63 ? INT64_MIN : -(int64_t)u;
		}
	}
	if (v.kind != NUM_INT) {
		char *tmp = ps->strs + ps->n_strs;
		memcpy(tmp, s, (size_t)(p - s));
		tmp[p - s] = '\0';
		v.u.d = strtod(tmp, NULL);
		if (!isfinite(v.u.d))
			return perr(ps, s, "number %.40s%s is too large for a double", tmp,
				    p - s > 40 ? "..." : "");
	}
	ps->p = p;
	return push(ps, &v);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static int utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	int n;
	unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (end - p < n || p[1] < lo || p[1] > hi)
		return 0;
	for (int k = 2; k < n; k++)
		if ((p[k] & 0xc0) != 0x80)
			return 0;
	return n;
}

static char *put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* Reads the 4 hex digits after "\u" at p; -1 if they are not hex. */
static int32_t hex4(const struct parser *ps, const char *p)
{
	int32_t v = 0;
	if (ps->end - p < 4)
		return -1;
	for (int k = 0; k < 4; k++) {
		char c = p[k];
		int d = c >= '0' && c <= '9' ? c - '0'
		      : c >= 'a' && c <= 'f' ? c - 'a' + 10
		      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* Decodes the \u escape at p (pointing at the backslash), joining a surrogate
 * pair; advances *pp past it and writes UTF-8 at *po. */
static int parse_u_escape(struct parser *ps, const char **pp, char **po)
{
	const char *p = *pp;
	int32_t cp = hex4(ps, p + 2);
	if (cp < 0)
		return perr(ps, p, "\\u must be followed by 4 hex digits");
	p += 6;
	if (cp >= 0xdc00 && cp <= 0xdfff)
		return perr(ps, *pp, "lone low surrogate \\u%04X (it must follow a high surrogate \\uD800-\\uDBFF)",
			    (unsigned)cp);
	if (cp >= 0xd800 && cp <= 0xdbff) {
		int32_t lo = (ps->end - p >= 2 && p[0] == '\\' && p[1] == 'u') ? hex4(ps, p + 2) : -1;
		if (lo < 0xdc00 || lo > 0xdfff)
			return perr(ps, *pp, "lone high surrogate \\u%04X (it must be followed by a low surrogate \\uDC00-\\uDFFF)",
				    (unsigned)cp);
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		p += 6;
	}
	*po = put_utf8(*po, (uint32_t)cp);
	*pp = p;
	return 0;
}

/* Parses the string at ps->p (the opening quote) and pushes it. */
static int parse_string(struct parser *ps)
{
	const char *open = ps->p, *p = open + 1;
	char *s = ps->strs + ps->n_strs, *o = s;
	for (;;) {
		if (p >= ps->end)
			return perr(ps, open, "string is not terminated (no closing '\"')");
		unsigned char c = (unsigned char)*p;
		if (c == '"')
			break;
		if (c < 0x20)
			return perr(ps, p, "control character 0x%02x inside a string; write it as an escape (\\n, \\t, \\u%04x)",
				    c, c);
		if (c >= 0x80) {
			int n = utf8_len((const unsigned char *)p, (const unsigned char *)ps->end);
			if (!n)
				return perr(ps, p, "invalid UTF-8 byte 0x%02x inside a string; the file must be UTF-8", c);
			memcpy(o, p, (size_t)n);
			o += n, p += n;
			continue;
		}
		if (c != '\\') {
			*o++ = (char)c, p++;
			continue;
		}
		char x = p + 1 < ps->end ? p[1] : '\0';
		const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
		const char *hit = x ? strchr(from, x) : NULL;
		if (hit) {
			*o++ = to[hit - from], p += 2;
		} else if (x == 'u') {
			int rc = parse_u_escape(ps, &p, &o);
			if (rc)
				return rc;
		} else {
			char b[16];
			return perr(ps, p, "invalid escape: '\\' followed by %s (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
				    byte_desc(ps, p + 1, b));
		}
	}
	*o = '\0';
	struct json_val v = { .type = JSON_STR, .n = (uint32_t)(o - s), .u.s = s };
	ps->n_strs += (size_t)(o - s) + 1;
	ps->p = p + 1;
	return push(ps, &v);
}

/* ---------------------------------------------------------------- containers */

static int parse_value(struct parser *ps);

/* Closes the container whose children are stk[from..): places them and
 * pushes the container. */
static int close_container(struct parser *ps, enum json_type t, size_t from)
{
	size_t k = ps->n_stk - from, first = 0;
	struct json_val v = { .type = (uint8_t)t, .n = (uint32_t)(t == JSON_OBJ ? k / 2 : k) };
	if (k) {
		int rc = place(ps, from, &first);
		if (rc)
			return rc;
		v.u.kids = (int64_t)first;
	}
	ps->p++;
	ps->depth--;
	return push(ps, &v);
}

static int enter(struct parser *ps)
{
	if (++ps->depth > JSON_MAX_DEPTH)
		return perr(ps, ps->p, "nesting deeper than %d levels", JSON_MAX_DEPTH);
	ps->p++;
	skip_ws(ps);
	return 0;
}

static int parse_array(struct parser *ps)
{
	size_t from = ps->n_stk;
	int rc = enter(ps);
	if (rc)
		return rc;
	if (ps->p < ps->end && *ps->p == ']')
		return close_container(ps, JSON_ARR, from);
	for (;;) {
		if ((rc = parse_value(ps)))
			return rc;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ']')
			return close_container(ps, JSON_ARR, from);
		if (ps->p >= ps->end || *ps->p != ',') {
			char b[16];
			return perr(ps, ps->p, "expected ',' or ']' after array element, found %s",
				    byte_desc(ps, ps->p, b));
		}
		ps->p++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ']')
			return perr(ps, ps->p, "trailing comma before ']'");
	}
}

static int parse_object(struct parser *ps)
{
	size_t from = ps->n_stk;
	char b[16];
	int rc = enter(ps);
	if (rc)
		return rc;
	if (ps->p < ps->end && *ps->p == '}')
		return close_container(ps, JSON_OBJ, from);
	for (;;) {
		if (ps->p >= ps->end || *ps->p != '"')
			return perr(ps, ps->p, "expected a '\"'-quoted member name, found %s",
				    byte_desc(ps, ps->p, b));
		if ((rc = parse_string(ps)))
			return rc;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return perr(ps, ps->p, "expected ':' after member name, found %s", byte_desc(ps, ps->p, b));
		ps->p++;
		if ((rc = parse_value(ps)))
			return rc;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == '}')
			return close_container(ps, JSON_OBJ, from);
		if (ps->p >= ps->end || *ps->p != ',')
			return perr(ps, ps->p, "expected ',' or '}' after object member, found %s",
				    byte_desc(ps, ps->p, b));
		ps->p++;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == '}')
			return perr(ps, ps->p, "trailing comma before '}'");
	}
}

static int parse_value(struct parser *ps)
{
	char b[16];
	skip_ws(ps);
	if (ps->p >= ps->end)
		return perr(ps, ps->p, "expected a value, found end of input");
	switch (*ps->p) {
	case '{':
		return parse_object(ps);
	case '[':
		return parse_array(ps);
	case '"':
		return parse_string(ps);
	case 't':
		return parse_literal(ps, "true", JSON_TRUE);
	case 'f':
		return parse_literal(ps, "false", JSON_FALSE);
	case 'n':
		return parse_literal(ps, "null", JSON_NULL);
	case 'N':
	case 'I':
		return perr(ps, ps->p, "NaN and Infinity are not JSON numbers");
	case '\'':
		return perr(ps, ps->p, "strings take double quotes, not single quotes");
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps);
		return perr(ps, ps->p, "unexpected %s, expected a value", byte_desc(ps, ps->p, b));
	}
}

/* ---------------------------------------------------------------- the document */

void json_free(struct json_doc *d)
{
	if (!d)
		return;
	ts_free(d->vals);
	ts_free(d->strs);
	ts_free(d);
}

int json_parse(struct json_doc **out, const char *what, const char *text, size_t len,
	       struct ts_err *e)
{
	if (!text) /* (NULL, 0): no pointer arithmetic on NULL */
		text = "";
	struct parser ps = { .what = what ? what : "<json>", .begin = text, .p = text,
			     .end = text + len, .e = e };
	struct json_doc *d = NULL;
	size_t first;
	int rc;
	*out = NULL;
	if (len > JSON_MAX_LEN)
		return ts_errf(e, E_FORMAT, "%s: %zu bytes of JSON is over the 1 GiB limit", ps.what, len);
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) /* RFC 8259 8.1: a BOM may be ignored */
		ps.p += 3;
	ps.strs = ts_alloc(len + 1);
	d = ts_alloc(sizeof(*d));
	if (!ps.strs || !d) {
		rc = nomem(&ps);
		goto out_free;
	}
	if ((rc = parse_value(&ps)))
		goto out_free;
	skip_ws(&ps);
	if (ps.p < ps.end) {
		char b[16];
		rc = perr(&ps, ps.p, "unexpected %s after the end of the document", byte_desc(&ps, ps.p, b));
		goto out_free;
	}
	if ((rc = place(&ps, 0, &first)))
		goto out_free;
	ts_free(ps.stk);
	d->n_vals = ps.n_vals;
	d->vals = ts_realloc(ps.vals, ps.n_vals * sizeof(*d->vals)); /* shrink; offsets are relative */
	if (!d->vals)
		d->vals = ps.vals;
	d->strs = ps.strs;
	*out = d;
	return 0;

out_free:
	ts_free(ps.stk);
	ts_free(ps.vals);
	ts_free(ps.strs);
	ts_free(d);
	return rc;
}

/* A document of len bytes holds at most len + 1 values: each but an empty
 * document's takes a byte of its own. */
size_t json_parse_bytes(size_t len)
{
	return sizeof(struct json_doc) + 2 * (len + 1) * sizeof(struct json_val) + len + 1 + 16;
}

int json_parse_in(struct json_doc **out, void *mem, size_t mem_bytes, const char *what, const char *text, size_t len,
		  struct ts_err *e)
{
	if (!text)
		text = "";
	struct parser ps = {.what = what ? what : "<json>", .begin = text, .p = text, .end = text + len, .e = e,
			    .fixed = 1};
	*out = NULL;
	if (len > JSON_MAX_LEN || mem_bytes < json_parse_bytes(len))
		return nomem(&ps);
	uintptr_t a = ((uintptr_t)mem + 15) & ~(uintptr_t)15;
	struct json_doc *d = (struct json_doc *)a;
	ps.vals = (struct json_val *)(d + 1);
	ps.cap_vals = len + 1;
	ps.stk = ps.vals + ps.cap_vals;
	ps.cap_stk = len + 1;
	ps.strs = (char *)(ps.stk + ps.cap_stk);
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		ps.p += 3;
	int rc;
	size_t first;
	if ((rc = parse_value(&ps)))
		return rc;
	skip_ws(&ps);
	if (ps.p < ps.end) {
		char b[16];
		return perr(&ps, ps.p, "unexpected %s after the end of the document", byte_desc(&ps, ps.p, b));
	}
	if ((rc = place(&ps, 0, &first)))
		return rc;
	d->n_vals = ps.n_vals;
	d->vals = ps.vals;
	d->strs = ps.strs;
	*out = d;
	return 0;
}

const struct json_val *json_root(const struct json_doc *d)
{
	return d && d->n_vals ? &d->vals[d->n_vals - 1] : NULL;
}

enum json_type json_type(const struct json_val *v)
{
	return v ? (enum json_type)v->type : JSON_NULL;
}

/* ---------------------------------------------------------------- lookups */

static const struct json_val *kid(const struct json_val *v, size_t j)
{
	return v + v->u.kids + (int64_t)j;
}

const struct json_val *json_get(const struct json_val *obj, const char *key)
{
	if (!obj || obj->type != JSON_OBJ || !key)
		return NULL;
	size_t n = strlen(key);
	for (size_t m = obj->n; m-- > 0;) { /* from the end: the last duplicate wins */
		const struct json_val *k = kid(obj, 2 * m);
		if (k->n == n && memcmp(k->u.s, key, n) == 0)
			return k + 1;
	}
	return NULL;
}

int json_len(const struct json_val *v)
{
	return v && (v->type == JSON_ARR || v->type == JSON_OBJ) ? (int)v->n : 0;
}

const struct json_val *json_at(const struct json_val *v, int i)
{
	if (i < 0 || i >= json_len(v))
		return NULL;
	return v->type == JSON_ARR ? kid(v, (size_t)i) : kid(v, 2 * (size_t)i + 1);
}

const char *json_key_at(const struct json_val *obj, int i, size_t *len)
{
	if (!obj || obj->type != JSON_OBJ || i < 0 || i >= (int)obj->n)
		return NULL;
	const struct json_val *k = kid(obj, 2 * (size_t)i);
	if (len)
		*len = k->n;
	return k->u.s;
}

/* ---------------------------------------------------------------- scalars */

int json_num(const struct json_val *v, double *out)
{
	if (!v || v->type != JSON_NUM)
		return -E_FORMAT;
	*out = v->kind == NUM_INT ? (double)v->u.i : v->u.d;
	return 0;
}

/* Integers written with a fraction or exponent (2.0, 1e3) are accepted when
 * their value is a whole number of magnitude up to 2^53, where a double still
 * holds every integer: HF configs write both styles. */
int json_int64(const struct json_val *v, int64_t *out)
{
	if (!v || v->type != JSON_NUM || v->kind == NUM_BIG_INT)
		return -E_FORMAT;
	if (v->kind == NUM_INT) {
		*out = v->u.i;
		return 0;
	}
	double d = v->u.d;
	if (!(d >= -9007199254740992.0 && d <= 9007199254740992.0) || (double)(int64_t)d != d)
		return -E_FORMAT;
	*out = (int64_t)d;
	return 0;
}

int json_bool(const struct json_val *v, int *out)
{
	if (!v || (v->type != JSON_TRUE && v->type != JSON_FALSE))
		return -E_FORMAT;
	*out = v->type == JSON_TRUE;
	return 0;
}

const char *json_str(const struct json_val *v, size_t *len)
{
	if (!v || v->type != JSON_STR)
		return NULL;
	if (len)
		*len = v->n;
	return v->u.s;
}
