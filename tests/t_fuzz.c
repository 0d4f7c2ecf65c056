/* t_fuzz: the fuzz targets, run as a plain unit test (no libFuzzer) so
 * every CI run exercises them: built-in seeds, then 26000 deterministic
 * mutations (bit flips, truncations, length-field and number edits, byte
 * insertions, deletions, duplications) of a config.json, a safetensors image,
 * a bare safetensors header and a protocol stream, and TOK_ITERS mutations of
 * each tokenizer seed (one section of it at a time: tokenizer.json,
 * tokenizer_config.json, text, ids, or the whole input). A crash, or an abort
 * from a target's invariant checks, fails the test; under
 * -fsanitize=address,undefined so does any out-of-bounds read or undefined
 * behaviour.
 *
 *   build/tests/t_fuzz                    run
 *   build/tests/t_fuzz --write-seeds DIR  write the seeds as DIR/json/,
 *                                         DIR/ckpt/, DIR/proto/ and DIR/tok/
 *                                         corpora for libFuzzer, and
 *                                         DIR/json.dict and DIR/tok.dict
 */
#define TS_FUZZ_NO_MAIN
#include "fuzz_ckpt.c"
#include "fuzz_json.c"
#include "fuzz_proto.c"
#include "fuzz_tok.c"
#include "t.h"

#include <stdarg.h>
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

/* ---------------------------------------------------------------- tokenizer seeds
 *
 * Small tokenizer.json documents in the shapes tok_parse accepts, built here:
 * byte-level BPE with the Llama 3 or the Qwen2 split pattern (all 256 byte
 * tokens, spelled in GPT-2's byte-to-unicode alphabet, then one token per
 * merge), and SentencePiece BPE with byte fallback (<0x00>..<0xFF>); each with
 * a few merges, added tokens and a tokenizer_config.json whose chat_template
 * selects a chat format. fuzz_tok.c's header says how an input is laid out. */

struct sbuf {
	char *p;
	size_t n, cap;
};

static void sb_put(struct sbuf *b, const void *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = 2 * (b->n + n + 1);
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A code point as UTF-8 inside a JSON string. */
static void sb_cp(struct sbuf *b, uint32_t c)
{
	char u[4];
	if (c == '"' || c == '\\') {
		u[0] = '\\';
		u[1] = (char)c;
		sb_put(b, u, 2);
	} else if (c < 0x80) {
		u[0] = (char)c;
		sb_put(b, u, 1);
	} else if (c < 0x800) {
		u[0] = (char)(0xc0 | c >> 6);
		u[1] = (char)(0x80 | (c & 0x3f));
		sb_put(b, u, 2);
	} else {
		u[0] = (char)(0xe0 | c >> 12);
		u[1] = (char)(0x80 | (c >> 6 & 0x3f));
		u[2] = (char)(0x80 | (c & 0x3f));
		sb_put(b, u, 3);
	}
}

/* A C string as the inside of a JSON string. */
static void sb_json(struct sbuf *b, const char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\')
			sb_cp(b, (uint8_t)*s);
		else if (*s == '\n')
			sb_puts(b, "\\n");
		else
			sb_put(b, s, 1);
}

/* Raw bytes as a byte-level token in a JSON string. */
static void sb_gpt2(struct sbuf *b, const char *raw)
{
	for (; *raw; raw++)
		sb_cp(b, tok_byte_cp((uint8_t)*raw));
}

struct seed_added {
	const char *content;
	int special;
};

struct tok_seed {
	const char *name;
	int sp;          /* SentencePiece, else byte-level */
	const char *pat; /* byte-level: the split pattern */
	int nfc, ignore_merges, arr_merges;
	const char *(*merges)[2];       /* raw bytes (byte-level) or text (SentencePiece), NULL-terminated */
	const struct seed_added *added; /* NULL-terminated */
	int added_base;                 /* id of the first added token (SentencePiece: its own ids) */
	const char *config;             /* tokenizer_config.json */
	const char *text;               /* text section */
	const uint16_t *ids;            /* ids section */
	int n_ids;
	enum tok_chat chat; /* what the config selects */
	const char *hello;  /* encodes to two ids: a merged word, a merged space-word */
};

static const char *bl_merges[][2] = {
    {"h", "e"},           {"l", "l"},       {"he", "ll"},
    {"hell", "o"},        {" ", "w"},       {"o", "r"},
    {" w", "or"},         {"l", "d"},       {" wor", "ld"},
    {" ", " "},           {"\n", "\n"},     {"\xc3", "\xa9"},
    {"c", "a"},           {"ca", "f"},      {"caf", "\xc3\xa9"},
    {"1", "2"},           {"12", "3"},      {"'", "s"},
    {" ", "H"},           {"i", "t"},       {"\xe2", "\x96"},
    {"\xe2\x96", "\x81"}, {"<", "|"},       {" ", "caf\xc3\xa9"},
    {"\xcc", "\x88"},     {"\xcc", "\x81"}, {"\xcc\x88", "\xcc\x81"},
    {NULL, NULL},
};

static const char *sp_merges[][2] = {
    {"\xe2\x96\x81", "w"},
    {"o", "r"},
    {"\xe2\x96\x81w", "or"},
    {"l", "d"},
    {"\xe2\x96\x81wor", "ld"},
    {"\xe2\x96\x81", "H"},
    {"l", "l"},
    {"e", "ll"},
    {"ell", "o"},
    {"\xe2\x96\x81H", "ello"},
    {"h", "e"},
    {"\xe2\x96\x81", "\xe2\x96\x81"},
    {"\xe2\x96\x81", "c"},
    {"a", "f"},
    {"\342\226\201c", "af"}, /* "\xe2\x96\x81c" would read as \x81c */
    {"<", "0"},
    {NULL, NULL},
};
/* SentencePiece single pieces besides "<unk>", "<s>", "</s>" and the bytes. */
static const char *const sp_chars[] = {
    "\xe2\x96\x81", "e", "h", "l", "o", "w", "r", "d", "t", "H", "i", "a", "c", "f", "s", "!", ",",
    "\xc3\xa9",     "<", "0", "x", NULL};

static const struct seed_added llama3_added[] = {
    {"<|begin_of_text|>", 1},
    {"<|end_of_text|>", 1},
    {"<|start_header_id|>", 1},
    {"<|end_header_id|>", 1},
    {"<|eot_id|>", 1},
    {"<|python_tag|>", 1},
    {NULL, 0},
};
static const struct seed_added qwen_added[] = {
    {"<|endoftext|>", 1}, {"<|im_start|>", 1},    {"<|im_end|>", 1},       {"<think>", 0},
    {"</think>", 0},      {"<tool_response>", 0}, {"</tool_response>", 0}, {NULL, 0},
};
static const struct seed_added sp_added[] = {{"<unk>", 1}, {"<s>", 1}, {"</s>", 1}, {NULL, 0}};

static const uint16_t llama3_ids[] = {104, 256,  0xfff8, 0xfff9, 0xac, 300,    0xfff0, 0xfff3, 0xfffc,
                                      295, 0xe2, 0x82,   0xfff6, 32,   0xfffa, 0x9f,   0x98,   0x80};
static const uint16_t qwen_ids[] = {0xfff7, 259, 0xfffa, 0xfffb, 0x98, 0xfffd, 0xc3, 301, 0xfff4, 0xa9, 0xfff2, 305};
static const uint16_t sp_ids[] = {1, 259,    0xfffd,   282, 0xfff8, 0xfff9, 3 + 0xac,
                                  2, 0xfff5, 3 + 0xe2, 259, 0xffff, 0xfff0, 0};

static const struct tok_seed tok_seeds[] = {
    {"llama3", 0, TOK_PAT_LLAMA3, 0, 1, 0, bl_merges, llama3_added, 300,
     "{\"bos_token\": \"<|begin_of_text|>\", \"eos_token\": \"<|eot_id|>\", "
     "\"model_max_length\": 131072, \"chat_template\": \"{% set loop_messages = messages %}{% for message in "
     "loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
     "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
     "%}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
     "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}\"}",
     "system:You are a helpful assistant.\x1euser:hello world! caf\xc3\xa9 12345 it's  <|eot_id|>\n\n\tx"
     "\x1e"
     "assistant:Hello, world \xf0\x9f\x98\x80 \x1euser:'S 'll \r\n end\xe2\x96\x81<|",
     llama3_ids, (int)TS_ARRAY_LEN(llama3_ids), TOK_CHAT_LLAMA3, "hello world"},
    {"qwen", 0, TOK_PAT_QWEN2, 1, 0, 1, bl_merges, qwen_added, 300,
     "{\"add_bos_token\": false, \"bos_token\": null, \"eos_token\": \"<|im_end|>\", \"errors\": \"replace\", "
     "\"chat_template\": \"{%- for message in messages %}{%- if message.role == 'assistant' %}{%- set "
     "reasoning_content = '' %}{%- if '</think>' in message.content %}{%- set content = "
     "message.content.split('</think>')[-1] %}{%- endif %}{%- endif %}{{- '<|im_start|>' + message.role + '\\n' "
     "+ message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- "
     "'<|im_start|>assistant\\n' }}{%- endif %}\"}",
     "tools:[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"n\": 1.5, "
     "\"m\": [true, null, -3]}}}]\x1esystem:Be brief.<|im_end|>\x1euser:hello w\xc3\xb6rld cafe\xcc\x81 2024 \xe4\xbd\xa0\xe5\xa5\xbd "
     "\xea\xb0\x80\xe1\x86\xa8 \xcd\x84\x1e"
     "assistant:<think>\nhmm\n</think>\n\nhello world\x1etool:{\"ok\": "
     "true}\x1etool:42\x1euser:\xcd\x84\xcd\x84\xcd\x84\xcd\x84\xcd\x84",
     qwen_ids, (int)TS_ARRAY_LEN(qwen_ids), TOK_CHAT_CHATML, "hello world"},
    {"llama2", 1, NULL, 0, 0, 0, sp_merges, sp_added, 0,
     "{\"add_bos_token\": true, \"add_eos_token\": false, \"bos_token\": {\"__type\": \"AddedToken\", "
     "\"content\": \"<s>\", \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": "
     "false}, \"eos_token\": {\"__type\": \"AddedToken\", \"content\": \"</s>\", \"lstrip\": false, "
     "\"normalized\": false, \"rstrip\": false, \"single_word\": false}, \"chat_template\": \"{% if "
     "messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] | trim + "
     "'\\n<</SYS>>\\n\\n' %}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}{{ "
     "bos_token + '[INST] ' + message['content'] | trim + ' [/INST]' }}{% elif message['role'] == 'assistant' "
     "%}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}\"}",
     "system:You are helpful.\x1euser:Hello world caf\xc3\xa9 \xe4\xbd\xa0 \x1e"
     "assistant:Hello!\x1euser: what "
     "is  it?",
     sp_ids, (int)TS_ARRAY_LEN(sp_ids), TOK_CHAT_LLAMA2, "Hello world"},
    {"mistral", 1, NULL, 0, 0, 0, sp_merges, sp_added, 0,
     "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"chat_template\": [{\"name\": \"tool_use\", "
     "\"template\": \"{{ '<|im_start|>' }}\"}, {\"name\": \"default\", \"template\": \"{{ bos_token }}{% for "
     "message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' "
     "}}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}\"}]}",
     "user:Hello world\x1e"
     "assistant:Hi <s> there\x1euser:caf\xc3\xa9\x1e"
     "assistant: ok  ",
     sp_ids, (int)TS_ARRAY_LEN(sp_ids), TOK_CHAT_MISTRAL, "Hello world"},
};

/* The seed's tokenizer.json into b. */
static void tok_seed_json(const struct tok_seed *s, struct sbuf *b)
{
	int id = 0;
	sb_puts(b, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [");
	for (int i = 0; s->added[i].content; i++) {
		sb_printf(b, "%s{\"id\": %d, \"content\": \"", i ? ", " : "", s->added_base + i);
		sb_json(b, s->added[i].content);
		sb_printf(b,
		          "\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
		          "\"special\": %s}",
		          s->added[i].special ? "true" : "false");
	}
	sb_puts(b, "], ");
	if (s->sp) {
		sb_puts(b,
		        "\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", "
		        "\"prepend\": \"\xe2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
		        "\"content\": \"\xe2\x96\x81\"}]}, \"pre_tokenizer\": null, \"post_processor\": {\"type\": "
		        "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
		        "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}, \"decoder\": {\"type\": \"Sequence\", "
		        "\"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xe2\x96\x81\"}, "
		        "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": "
		        "\"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}, ");
	} else {
		sb_printf(b,
		          "\"normalizer\": %s, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
		          "[{\"type\": \"Split\", \"pattern\": {\"Regex\": \"",
		          s->nfc ? "{\"type\": \"NFC\"}" : "null");
		sb_json(b, s->pat);
		sb_puts(b, "\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
		           "\"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]}, "
		           "\"post_processor\": {\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\", "
		           "\"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true}, {\"type\": "
		           "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<|begin_of_text|>\", "
		           "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}]}, \"decoder\": "
		           "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
		           "\"use_regex\": true}, ");
	}
	sb_printf(b,
	          "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": %s, \"continuing_subword_prefix\": "
	          "null, \"end_of_word_suffix\": null, \"fuse_unk\": %s, \"byte_fallback\": %s, \"ignore_merges\": "
	          "%s, \"vocab\": {",
	          s->sp ? "\"<unk>\"" : "null", s->sp ? "true" : "false", s->sp ? "true" : "false",
	          s->ignore_merges ? "true" : "false");
	if (s->sp) {
		sb_puts(b, "\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2");
		for (id = 3; id < 3 + 256; id++)
			sb_printf(b, ", \"<0x%02X>\": %d", id - 3, id);
		for (int i = 0; sp_chars[i]; i++) {
			sb_puts(b, ", \"");
			sb_json(b, sp_chars[i]);
			sb_printf(b, "\": %d", id++);
		}
	} else {
		for (id = 0; id < 256; id++) {
			char raw[2] = {(char)id, 0};
			sb_puts(b, id ? ", \"" : "\"");
			if (id)
				sb_gpt2(b, raw);
			else
				sb_cp(b, tok_byte_cp(0));
			sb_printf(b, "\": %d", id);
		}
	}
	for (int i = 0; s->merges[i][0]; i++) {
		char both[64];
		snprintf(both, sizeof both, "%s%s", s->merges[i][0], s->merges[i][1]);
		sb_puts(b, ", \"");
		if (s->sp)
			sb_json(b, both);
		else
			sb_gpt2(b, both);
		sb_printf(b, "\": %d", id++);
	}
	sb_puts(b, "}, \"merges\": [");
	for (int i = 0; s->merges[i][0]; i++) {
		sb_puts(b, i ? ", " : "");
		sb_puts(b, s->arr_merges ? "[\"" : "\"");
		for (int k = 0; k < 2; k++) {
			if (k)
				sb_puts(b, s->arr_merges ? "\", \"" : " ");
			if (s->sp)
				sb_json(b, s->merges[i][k]);
			else
				sb_gpt2(b, s->merges[i][k]);
		}
		sb_puts(b, s->arr_merges ? "\"]" : "\"");
	}
	sb_puts(b, "]}}");
}

/* The whole fuzz input of a seed (fuzz_tok.c's layout); free b->p. */
static void tok_seed_input(const struct tok_seed *s, struct sbuf *b)
{
	tok_seed_json(s, b);
	sb_put(b, FUZZ_TOK_SEP, FUZZ_TOK_SEP_LEN);
	sb_puts(b, s->config);
	sb_put(b, FUZZ_TOK_SEP, FUZZ_TOK_SEP_LEN);
	sb_puts(b, s->text);
	sb_put(b, FUZZ_TOK_SEP, FUZZ_TOK_SEP_LEN);
	for (int i = 0; i < s->n_ids; i++) {
		uint8_t le[2] = {(uint8_t)s->ids[i], (uint8_t)(s->ids[i] >> 8)};
		sb_put(b, le, 2);
	}
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

#define TOK_ITERS 5000 /* mutations per tokenizer seed */

/* Mutates one section of a tokenizer seed at a time (or, 1 in 10, the whole
 * input), so that most inputs still parse and reach encode, decode and chat. */
static void run_tok_family(const struct tok_seed *ts, int iters, uint64_t rng)
{
	struct sbuf seed = {0};
	tok_seed_input(ts, &seed);
	const char *part[4] = {seed.p};
	size_t len[4];
	for (int i = 1; i < 4; i++)
		part[i] = strstr(part[i - 1], FUZZ_TOK_SEP) + FUZZ_TOK_SEP_LEN;
	for (int i = 0; i < 3; i++)
		len[i] = (size_t)(part[i + 1] - part[i]) - FUZZ_TOK_SEP_LEN;
	len[3] = (size_t)(seed.p + seed.n - part[3]);
	size_t cap = seed.n + 256;
	uint8_t *buf = malloc(cap), *in = malloc(seed.n + cap); /* one section grown by up to 256 */
	int accepted = 0, refused = 0, i;
	for (i = 0; i < iters; i++) {
		uint64_t r = rng_below(&rng, 10);
		int which = r < 5 ? 0 : r == 5 ? 1 : r < 8 ? 2 : r == 8 ? 3 : 4;
		size_t n = 0;
		for (int k = 0; k < 4; k++) {
			if (k == which || which == 4) {
				size_t m = which == 4 ? seed.n : len[k];
				memcpy(buf, which == 4 ? seed.p : part[k], m);
				mutate(buf, &m, cap, &rng, 0);
				memcpy(in + n, buf, m);
				n += m;
				if (which == 4)
					break;
			} else {
				memcpy(in + n, part[k], len[k]);
				n += len[k];
			}
			if (k < 3) {
				memcpy(in + n, FUZZ_TOK_SEP, FUZZ_TOK_SEP_LEN);
				n += FUZZ_TOK_SEP_LEN;
			}
		}
		uint8_t *exact = malloc(n ? n : 1);
		memcpy(exact, in, n);
		if (fuzz_tok_one(exact, n))
			accepted++;
		else
			refused++;
		free(exact);
	}
	free(buf);
	free(in);
	free(seed.p);
	printf("# t_fuzz: tok %-14s %5d mutations: %5d accepted, %5d refused\n", ts->name, i, accepted, refused);
	T_CHECK(i == iters, "tok %s: survived every mutation", ts->name);
	T_CHECK(accepted > 0 && refused > 0, "tok %s: mutations reach both outcomes (accepted %d, refused %d)",
	        ts->name, accepted, refused);
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

/* Each tokenizer seed parses, picks its chat format and encodes its two-word
 * greeting with its merges; then the whole seed passes fuzz_tok_one. */
static void test_tok_seeds(void)
{
	for (int i = 0; i < (int)TS_ARRAY_LEN(tok_seeds); i++) {
		const struct tok_seed *s = &tok_seeds[i];
		struct sbuf json = {0}, in = {0};
		struct tok t;
		struct ts_err e = {0};
		tok_seed_json(s, &json);
		int rc = tok_parse(&t, s->name, json.p, json.n, s->config, strlen(s->config), &e);
		T_CHECK(rc == 0, "tok seed %s parses: %s", s->name, e.msg);
		if (rc == 0) {
			struct tok_scratch sc = {0};
			int32_t ids[8];
			char back[64];
			int k = tok_encode(&t, s->hello, strlen(s->hello), ids, 8, &sc);
			size_t n = k == 2 ? tok_decode(&t, ids, k, back, sizeof back) : 0;
			T_CHECK(k == 2 && n == strlen(s->hello) && strcmp(back, s->hello) == 0,
			        "tok seed %s: \"%s\" -> %d ids -> \"%.*s\"", s->name, s->hello, k, (int)n, back);
			T_CHECK(t.chat == s->chat && t.model == (s->sp ? TOK_SP_BPE : TOK_BYTE_BPE) &&
			            t.nfc == s->nfc && t.eos_id >= 0 && fuzz_tok_clean(&t),
			        "tok seed %s: chat %s, model %d, nfc %d, eos %d, clean %d", s->name,
			        tok_chat_name(t.chat), (int)t.model, t.nfc, t.eos_id, fuzz_tok_clean(&t));
			T_CHECK(t.add_bos == (s->chat != TOK_CHAT_CHATML), "tok seed %s: add_bos %d", s->name,
			        t.add_bos);
			tok_scratch_free(&sc);
			tok_free(&t);
		}
		tok_seed_input(s, &in);
		T_CHECK(fuzz_tok_one((const uint8_t *)in.p, in.n) == 1, "tok seed %s: fuzz_tok_one accepts it",
		        s->name);
		free(json.p);
		free(in.p);
	}
	/* an empty config section and vocab, a lone tokenizer.json, nothing */
	static const char no_cfg[] =
	    "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"normalizer\": "
	    "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
	    "\"\xe2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
	    "\"content\": \"\xe2\x96\x81\"}]}, \"pre_tokenizer\": null}" FUZZ_TOK_SEP FUZZ_TOK_SEP "a b" FUZZ_TOK_SEP
	    "\x01\x00\xff\xff";
	T_CHECK(fuzz_tok_one((const uint8_t *)no_cfg, sizeof no_cfg - 1) == 1, "tok: empty SentencePiece vocab");
	T_CHECK(fuzz_tok_one((const uint8_t *)no_cfg, strstr(no_cfg, FUZZ_TOK_SEP) - no_cfg) == 1,
	        "tok: a lone tokenizer.json");
	T_CHECK(fuzz_tok_one(NULL, 0) == 0 && fuzz_tok_one((const uint8_t *)"{}", 2) == 0, "tok: tiny inputs");
}

/* The bugs in src/tok.c found while writing fuzz_tok, each as an input that
 * showed it. */
static void test_tok_fixed(void)
{
	struct sbuf json = {0};
	struct tok t;
	struct ts_err e = {0};
	/* "<0x-1>" was a byte-fallback token: sscanf's %2x took the sign, and
	 * byte_id[0xffffffff] was written. Now it is an ordinary piece. */
	tok_seed_json(&tok_seeds[2], &json);
	const char *v = strstr(json.p, "\"vocab\": {") + 10;
	struct sbuf odd = {0};
	sb_put(&odd, json.p, (size_t)(v - json.p));
	sb_puts(&odd, "\"<0x-1>\": 400, \"<0x 4>\": 401, \"<0x+4>\": 402, ");
	sb_puts(&odd, v);
	int rc = tok_parse(&t, "odd", odd.p, odd.n, NULL, 0, &e);
	T_CHECK(rc == 0 && t.kind[400] == 1 && t.kind[401] == 1 && t.kind[402] == 1 && t.byte_id[4] == 3 + 4,
	        "tok: \"<0x-1>\", \"<0x 4>\", \"<0x+4>\" are not byte tokens: %s", e.msg);
	if (rc == 0)
		tok_free(&t);
	free(odd.p);
	free(json.p);
	json = (struct sbuf){0};

	/* An id near 2^31 made tok_parse allocate ~26 GB, then spin: the vocab
	 * hash capacity (a power of two >= 2 * n_ids) wrapped to 0. */
	static const char huge[] =
	    "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2000000000}, \"merges\": "
	    "[]}, \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": "
	    "\"Prepend\", \"prepend\": \"\xe2\x96\x81\"}, {\"type\": \"Replace\", \"pattern\": "
	    "{\"String\": \" \"}, \"content\": \"\xe2\x96\x81\"}]}, \"pre_tokenizer\": null}";
	double t0 = ts_now();
	rc = tok_parse(&t, "huge", huge, sizeof huge - 1, NULL, 0, &e);
	T_CHECK(rc == -E_FORMAT && strstr(e.msg, "model.vocab: entry 1") && ts_now() - t0 < 1.0,
	        "tok: id 2000000000 refused at once: %d %s", rc, e.msg);

	/* NFC can make a pre-token up to 3x the bytes of its text: U+0344 (2
	 * bytes) is U+0308 U+0301 (4). The symbol array was sized for the input
	 * and BPE ran past it (a corrupted merge heap, or ASAN's overflow). */
	tok_seed_json(&tok_seeds[1], &json);
	rc = tok_parse(&t, "qwen", json.p, json.n, NULL, 0, &e);
	T_CHECK(rc == 0 && t.nfc, "tok: qwen seed: %s", e.msg);
	if (rc == 0) {
		int want = 256;
		while (strcmp(bl_merges[want - 256][0], "\xcc\x88") || strcmp(bl_merges[want - 256][1], "\xcc\x81"))
			want++;
		struct tok_scratch sc = {0};
		int32_t ids[64];
		const char *s = "\xcd\x84\xcd\x84\xcd\x84\xcd\x84\xcd\x84\xcd\x84\xcd\x84\xcd\x84";
		int k = tok_encode(&t, s, strlen(s), ids, 64, &sc), same = k == 8;
		for (int i = 0; same && i < k; i++)
			same = ids[i] == want;
		T_CHECK(same, "tok: NFC(U+0344 x 8) is 8 x id %d (got %d ids, first %d)", want, k, k > 0 ? ids[0] : -1);
		tok_scratch_free(&sc);
		tok_free(&t);
	}
	free(json.p);
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
	for (int i = 0; i < (int)TS_ARRAY_LEN(tok_seeds); i++)
		run_tok_family(&tok_seeds[i], TOK_ITERS, 0x2545f4914f6cdd1dull * (uint64_t)(i + 1));
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

/* More for fuzz_tok: its section separator, tokenizer.json and chat words. */
static const char tok_dict[] =
    "\"\\xffTOK\\xff\"\n\"\\x1e\"\n\"\\xe2\\x96\\x81\"\n\"<0x\"\n\"\\\\u0120\"\n\"\\xc4\\xa0\"\n"
    "\"\\xcc\\x81\"\n\"system:\"\n\"assistant:\"\n\"tool:\"\n\"tools:\"\n\"user:\"\n"
    "\"\\\"type\\\"\"\n\"\\\"BPE\\\"\"\n\"\\\"NFC\\\"\"\n\"\\\"vocab\\\"\"\n\"\\\"merges\\\"\"\n"
    "\"\\\"added_tokens\\\"\"\n\"\\\"special\\\"\"\n\"\\\"byte_fallback\\\"\"\n"
    "\"\\\"ignore_merges\\\"\"\n\"\\\"unk_token\\\"\"\n\"\\\"bos_token\\\"\"\n\"\\\"eos_token\\\"\"\n"
    "\"\\\"add_bos_token\\\"\"\n\"\\\"chat_template\\\"\"\n\"\\\"content\\\"\"\n"
    "\"<|im_start|>\"\n\"<|im_end|>\"\n\"<|start_header_id|>\"\n\"<|eot_id|>\"\n\"[INST]\"\n\"<<SYS>>\"\n"
    "\"<think>\"\n\"</think>\"\n\"reasoning_content\"\n\"<s>\"\n\"</s>\"\n";

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
	for (i = 0; i < (int)TS_ARRAY_LEN(tok_seeds); i++) {
		struct sbuf in = {0};
		tok_seed_input(&tok_seeds[i], &in);
		rc |= write_seed(dir, "tok", i, in.p, in.n);
		free(in.p);
	}
	snprintf(path, sizeof(path), "%s/tok.dict", dir);
	f = fopen(path, "w");
	if (!f || fputs(fuzz_dict, f) < 0 || fputs(tok_dict, f) < 0 || fclose(f) != 0) {
		perror(path);
		return 1;
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	double t0 = ts_now();
	test_seeds();
	test_tok_seeds();
	test_tok_fixed();
	test_mutations();
	double s = ts_now() - t0;
	printf("# t_fuzz: %.2f s\n", s);
	return T_DONE();
}
