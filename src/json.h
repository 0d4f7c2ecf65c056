/* json: the one JSON reader (HF config.json, safetensors headers, and later
 * tokenizer.json).
 *
 * Owns: a strict RFC 8259 parser into an immutable tree held in one arena per
 * document; lookups. Does not: write JSON, or know what any document means.
 * Threads: a parsed document is read-only and may be read from any thread.
 * Limits: nesting depth 128; input length up to 1 GiB; strings are decoded
 * (escapes, \uXXXX with surrogate pairs) into NUL-terminated UTF-8; invalid
 * UTF-8 in the input is an error.
 */
#ifndef TS_JSON_H
#define TS_JSON_H

#include "base.h"

enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ };

struct json_doc;
struct json_val;

/* Parses text[0..len). On error returns -E_FORMAT (or -E_NOMEM) and e names
 * `what` (a file name, for the message), the line and column and the problem. */
int json_parse(struct json_doc **out, const char *what, const char *text, size_t len,
	       struct ts_err *e);
void json_free(struct json_doc *d);
/* The same in the caller's memory, json_parse_bytes(len) of it (more than
 * the text's size 33 times): nothing allocated, nothing to free (no
 * json_free); -E_NOMEM when mem_bytes is less. */
size_t json_parse_bytes(size_t len);
int json_parse_in(struct json_doc **out, void *mem, size_t mem_bytes, const char *what, const char *text, size_t len,
		  struct ts_err *e);

const struct json_val *json_root(const struct json_doc *d);
enum json_type json_type(const struct json_val *v);

/* Objects: json_get returns NULL when v is not an object or has no such key
 * (the last one wins if a key repeats). json_len counts members. */
const struct json_val *json_get(const struct json_val *obj, const char *key);
int json_len(const struct json_val *v); /* array elements or object members; 0 otherwise */
const struct json_val *json_at(const struct json_val *v, int i); /* i-th element or member value */
const char *json_key_at(const struct json_val *obj, int i, size_t *len); /* i-th member key */

/* Scalars: return 0, or -E_FORMAT when v is NULL or of another type.
 * json_int64 also refuses non-integers and values outside int64. */
int json_num(const struct json_val *v, double *out);
int json_int64(const struct json_val *v, int64_t *out);
int json_bool(const struct json_val *v, int *out);
const char *json_str(const struct json_val *v, size_t *len); /* NULL if not a string */

#endif
