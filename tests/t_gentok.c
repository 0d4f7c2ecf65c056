/* t_gentok: gen_ckpt --tokenizer. For every Llama 3 and Qwen preset the two
 * files load with tok_load; every id is below config.json's vocab_size (and
 * fills it where the corpus allows); BOS, EOS, the added tokens, the
 * pre-tokenizer, NFC and the chat format are the family's; a rendered chat
 * encodes to the family's special ids; decode(encode(s)) == s on generated
 * text with non-ASCII and added tokens; common English takes far fewer
 * tokens than bytes; two runs write the same bytes. Without --tokenizer no
 * tokenizer file appears and the other files do not change; Llama 2 and
 * Mistral presets refuse --tokenizer with exit 2, one line and no directory.
 * Runs build/tests/gen_ckpt from the repository root. */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "json.h"
#include "t.h"
#include "tok.h"

#define GEN  "build/tests/gen_ckpt"
#define ROOT "build/tests/tmp-gentok"

static const char *const added_llama3[] = {"<|reserved_special_token_0|>", "<|begin_of_text|>", "<|end_of_text|>",
                                           "<|start_header_id|>",          "<|end_header_id|>", "<|eot_id|>"};
static const char *const added_qwen3[] = {"<|endoftext|>", "<|im_start|>",    "<|im_end|>",
                                          "<think>",       "</think>",        "<tool_call>",
                                          "</tool_call>",  "<tool_response>", "</tool_response>"};

struct want {
	const char *preset;
	int weights; /* generate the weights too (the small presets) */
	int dense;   /* the corpus fills every id below vocab_size */
	enum tok_pre pre;
	int nfc;
	int32_t bos, eos; /* ids; -1: none */
	int add_bos;
	enum tok_chat chat;
	int think;
	const char *const *added; /* contents of ids 0..n_added-1 */
	int n_added, n_special;   /* the first n_special are special */
};

static const struct want wants[] = {
    {"llama3-mini", 1, 1, TOK_PRE_LLAMA3, 0, 1, 5, 1, TOK_CHAT_LLAMA3, 0, added_llama3, 6, 6},
    {"llama3-small", 0, 1, TOK_PRE_LLAMA3, 0, 1, 5, 1, TOK_CHAT_LLAMA3, 0, added_llama3, 6, 6},
    {"llama31-8b", 0, 0, TOK_PRE_LLAMA3, 0, 1, 5, 1, TOK_CHAT_LLAMA3, 0, added_llama3, 6, 6},
    {"qwen2-mini", 1, 1, TOK_PRE_QWEN2, 1, -1, 2, 0, TOK_CHAT_CHATML, 0, added_qwen3, 3, 3},
    {"qwen3-mini", 1, 1, TOK_PRE_QWEN2, 1, -1, 2, 0, TOK_CHAT_CHATML, 1, added_qwen3, 9, 3},
};

/* ---------------------------------------------------------------- helpers */

/* 1 if both files exist and hold the same bytes. */
static int same_file(const char *a, const char *b)
{
	size_t na = 0, nb = 0;
	char *x = t_slurp(a, &na), *y = t_slurp(b, &nb);
	int same = x && y && na == nb && memcmp(x, y, na) == 0;
	free(x);
	free(y);
	return same;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int config_vocab(const char *dir)
{
	char path[512];
	size_t n;
	snprintf(path, sizeof(path), "%s/config.json", dir);
	char *text = t_slurp(path, &n);
	struct json_doc *d = NULL;
	struct ts_err e;
	int64_t v = -1;
	if (text && json_parse(&d, path, text, n, &e) == 0)
		json_int64(json_get(json_root(d), "vocab_size"), &v);
	json_free(d);
	free(text);
	return (int)v;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Pieces of generated text: words in and out of the corpus, digits,
 * punctuation, whitespace runs, NFC non-ASCII of several scripts, emoji, and
 * the added tokens of both families. */
/* clang-format off */
static const char *const pieces[] = {
	"the", " the", "The", " and", " of", " memory", " GPU", " kernel", " tokens", " bandwidth", "model",
	" inference", " zebra", " quixotic", "xylophone", " Tokenizer", "ing", "ed", " a", " I", "'s", "'re",
	"'ll", "n't", "'T", "'VE", " 1", "2024", "65536", "3.14159", " 1,000,000", "0x7f", " ", "  ", "\n",
	"\n\n", "\t", " \n ", "\r\n", "   x", ".", ",", "!", "?", "(", ")", "{", "}", "[", "]", ";", ":", "\"",
	"'", "->", "==", "&&", "/*", "*/", "#include", "<stdio.h>", "`", "~", "@", "$", "%", "^", "*", "_",
	"+", "=", "|", "\\", "/", "<", ">", "caf\xc3\xa9", " na\xc3\xafve", "Gr\u00f6\u00dfe", " \u00fcber",
	"\xe6\x9d\xb1\xe4\xba\xac", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	" \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
	"\xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1", "\xec\x95\x88\xeb\x85\x95",
	"\xd8\xa7\xd9\x84\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\xa9", "\xf0\x9f\x98\x80",
	"\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", "\xe2\x82\xac", "\xc2\xa0", "\xe2\x80\x94", "\xef\xbb\xbf",
	"<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|im_start|>", "<|im_end|>",
	"<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|im", "|>", "<th"
};
/* clang-format on */

/* ---------------------------------------------------------------- checks */

static void check_roundtrip(const struct tok *t, const char *preset, int vocab)
{
	static char s[4096], back[8192];
	static int32_t ids[4096];
	struct tok_scratch sc = {0};
	uint64_t st = 42;
	int bad = 0, bad_id = 0;
	for (int k = 0; k < 400; k++) {
		size_t n = 0;
		int m = 1 + (int)(rng_next(&st) % 24);
		for (int i = 0; i < m; i++) {
			const char *p = pieces[rng_next(&st) % TS_ARRAY_LEN(pieces)];
			size_t l = strlen(p);
			if (n + l < sizeof(s)) {
				memcpy(s + n, p, l);
				n += l;
			}
		}
		int nid = tok_encode(t, s, n, ids, (int)TS_ARRAY_LEN(ids), &sc);
		if (nid < 0 || nid > (int)TS_ARRAY_LEN(ids)) {
			bad++;
			continue;
		}
		for (int i = 0; i < nid; i++)
			bad_id += ids[i] < 0 || ids[i] >= vocab || !t->kind[ids[i]];
		size_t bl = tok_decode(t, ids, nid, back, sizeof(back));
		if (bl != n || memcmp(back, s, n) != 0) {
			if (!bad)
				fprintf(stderr, "%s: round trip of \"%.*s\" gave \"%.*s\"\n", preset, (int)n, s,
				        (int)bl, back);
			bad++;
		}
	}
	T_CHECK(bad == 0, "%s: %d of 400 strings do not survive encode -> decode", preset, bad);
	T_CHECK(bad_id == 0, "%s: %d encoded ids are outside the vocab", preset, bad_id);
	tok_scratch_free(&sc);
}

/* Common English is mostly whole-word tokens. */
static void check_merges(const struct tok *t, const char *preset)
{
	static const char *const text[] = {
	    "The model reads the weights from memory, and the GPU runs the kernel for each token.",
	    "It is a small, fast memory that the threads in the same block can share.",
	    "The time to the first token and the time between tokens stay low for every user.",
	};
	struct tok_scratch sc = {0};
	int32_t ids[256];
	for (size_t i = 0; i < TS_ARRAY_LEN(text); i++) {
		int n = tok_encode(t, text[i], strlen(text[i]), ids, 256, &sc);
		T_CHECK(n > 0 && 2 * n < (int)strlen(text[i]), "%s: \"%s\": %d tokens for %zu bytes (want < 1/2)",
		        preset, text[i], n, strlen(text[i]));
	}
	int n = tok_encode(t, " the", 4, ids, 256, &sc);
	T_CHECK(n == 1, "%s: \" the\" is %d tokens, want 1", preset, n);
	tok_scratch_free(&sc);
}

/* A system + user conversation renders and encodes to the family's markers. */
static void check_chat(const struct tok *t, const struct want *w)
{
	struct tok_msg m[2] = {
	    {TOK_ROLE_SYSTEM, "You are a helpful assistant.", 28},
	    {TOK_ROLE_USER, "What is a GPU?", 14},
	};
	struct ts_err e = {0};
	size_t cap = tok_chat_bound(t, m, 2);
	char *out = malloc(cap);
	long len = tok_chat_render(t, m, 2, out, cap, &e);
	T_CHECK(len > 0, "%s: chat render: %s", w->preset, e.msg);
	if (len <= 0) {
		free(out);
		return;
	}
	struct tok_scratch sc = {0};
	int32_t ids[256];
	int n = tok_encode(t, out, (size_t)len, ids, 256, &sc);
	int32_t open = w->chat == TOK_CHAT_LLAMA3 ? 3 : 1, end = w->chat == TOK_CHAT_LLAMA3 ? 5 : 2;
	int n_open = 0, n_end = 0;
	for (int i = 0; i < n && i < 256; i++) {
		n_open += ids[i] == open;
		n_end += ids[i] == end;
	}
	T_CHECK(n > 0 && n <= 256 && ids[0] == (w->add_bos ? w->bos : open), "%s: chat ids start with %d, want %d",
	        w->preset, n > 0 ? ids[0] : -1, w->add_bos ? w->bos : open);
	T_CHECK(n_open == 3 && n_end == 2, "%s: chat has %d turn openers and %d turn ends, want 3 and 2 (%.*s)",
	        w->preset, n_open, n_end, (int)len, out);
	tok_scratch_free(&sc);
	free(out);
}

static void check_preset(const struct want *w)
{
	char a[256], b[256], c[256], cmd[1024], out[4096], pa[512], pb[512];
	snprintf(a, sizeof(a), ROOT "/%s-a", w->preset);
	snprintf(b, sizeof(b), ROOT "/%s-b", w->preset);
	snprintf(c, sizeof(c), ROOT "/%s-c", w->preset);

	snprintf(cmd, sizeof(cmd), GEN " --preset %s --out %s --tokenizer%s", w->preset, a,
	         w->weights ? "" : " --no-weights");
	int rc = t_run(cmd, out, sizeof(out));
	T_CHECK(rc == 0, "%s: exit %d: %s", cmd, rc, out);
	T_HAS(out, "tokenizer: ids 0..");
	snprintf(cmd, sizeof(cmd), GEN " --preset %s --out %s --tokenizer --no-weights", w->preset, b);
	rc = t_run(cmd, out, sizeof(out));
	T_CHECK(rc == 0, "%s: exit %d: %s", cmd, rc, out);
	for (int f = 0; f < 2; f++) {
		const char *name = f ? "tokenizer_config.json" : "tokenizer.json";
		snprintf(pa, sizeof(pa), "%s/%s", a, name);
		snprintf(pb, sizeof(pb), "%s/%s", b, name);
		T_CHECK(same_file(pa, pb), "%s: %s differs between two runs", w->preset, name);
	}

	struct tok t;
	struct ts_err e = {0};
	rc = tok_load(&t, a, &e);
	T_CHECK(rc == 0, "%s: tok_load: %s", w->preset, e.msg);
	if (rc)
		return;
	int vocab = config_vocab(a);
	T_CHECK(vocab > 0 && t.n_ids <= vocab, "%s: ids up to %d, config vocab_size %d", w->preset, t.n_ids - 1, vocab);
	int holes = 0;
	for (int id = 0; id < t.n_ids; id++)
		holes += !t.kind[id];
	if (w->dense)
		T_CHECK(t.n_ids == vocab && holes == 0, "%s: %d ids, %d unused, want all %d", w->preset, t.n_ids, holes,
		        vocab);
	else
		T_CHECK(t.n_ids > 1500 && t.n_ids < vocab && holes == 0, "%s: %d ids (%d holes) of %d", w->preset,
		        t.n_ids, holes, vocab);

	T_CHECK(t.model == TOK_BYTE_BPE && t.pre == w->pre && t.nfc == w->nfc, "%s: model %d pre %d nfc %d", w->preset,
	        t.model, t.pre, t.nfc);
	T_CHECK(t.bos_id == w->bos && t.eos_id == w->eos && t.add_bos == w->add_bos,
	        "%s: bos %d eos %d add_bos %d, want %d %d %d", w->preset, t.bos_id, t.eos_id, t.add_bos, w->bos, w->eos,
	        w->add_bos);
	T_CHECK(t.chat == w->chat && t.chat_think == w->think, "%s: chat %s think %d, want %s %d", w->preset,
	        tok_chat_name(t.chat), t.chat_think, tok_chat_name(w->chat), w->think);
	int bad_added = 0;
	for (int i = 0; i < w->n_added; i++) {
		char s[64];
		int32_t id = i;
		size_t n = tok_decode(&t, &id, 1, s, sizeof(s));
		int kind = i < w->n_special ? 3 : 2;
		if (n != strlen(w->added[i]) || strcmp(s, w->added[i]) || t.kind[i] != kind) {
			fprintf(stderr, "%s: id %d is \"%s\" kind %d, want \"%s\" kind %d\n", w->preset, i, s,
			        t.kind[i], w->added[i], kind);
			bad_added++;
		}
	}
	T_CHECK(bad_added == 0, "%s: %d added tokens are not as expected", w->preset, bad_added);
	for (int bt = 0; bt < 256; bt++)
		if (t.byte_id[bt] < 0 || t.byte_id[bt] >= vocab) {
			T_CHECK(0, "%s: byte 0x%02x has id %d", w->preset, bt, t.byte_id[bt]);
			break;
		}

	check_chat(&t, w);
	check_roundtrip(&t, w->preset, vocab);
	check_merges(&t, w->preset);
	tok_free(&t);

	/* without --tokenizer: the same files but the two */
	if (!w->weights)
		return;
	snprintf(cmd, sizeof(cmd), GEN " --preset %s --out %s", w->preset, c);
	rc = t_run(cmd, out, sizeof(out));
	T_CHECK(rc == 0, "%s: exit %d: %s", cmd, rc, out);
	snprintf(pa, sizeof(pa), "%s/tokenizer.json", c);
	snprintf(pb, sizeof(pb), "%s/tokenizer_config.json", c);
	T_CHECK(!exists(pa) && !exists(pb), "%s: tokenizer files written without --tokenizer", w->preset);
	DIR *d = opendir(c);
	struct dirent *de;
	int n_c = 0, differ = 0;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		n_c++;
		snprintf(pa, sizeof(pa), "%s/%s", a, de->d_name);
		snprintf(pb, sizeof(pb), "%s/%s", c, de->d_name);
		if (!same_file(pa, pb)) {
			fprintf(stderr, "%s: %s differs with --tokenizer\n", w->preset, de->d_name);
			differ++;
		}
	}
	if (d)
		closedir(d);
	int n_a = 0;
	d = opendir(a);
	while (d && (de = readdir(d)))
		n_a += de->d_name[0] != '.';
	if (d)
		closedir(d);
	T_CHECK(n_c >= 2 && differ == 0 && n_a == n_c + 2,
	        "%s: %d files without --tokenizer (%d differ), %d with; want the same plus 2", w->preset, n_c, differ,
	        n_a);
}

/* Presets without a tokenizer: exit 2, one line naming the preset, nothing written. */
static void check_refused(const char *preset)
{
	char cmd[512], out[4096], dir[256];
	snprintf(dir, sizeof(dir), ROOT "/%s-x", preset);
	snprintf(cmd, sizeof(cmd), GEN " --preset %s --out %s --tokenizer", preset, dir);
	int rc = t_run(cmd, out, sizeof(out));
	const char *nl = strchr(out, '\n');
	T_CHECK(rc == 2, "%s: exit %d, want 2 (%s)", cmd, rc, out);
	T_CHECK(nl && nl[1] == 0, "%s: want one line, got \"%s\"", cmd, out);
	T_HAS(out, preset);
	T_HAS(out, "--tokenizer");
	T_CHECK(!exists(dir), "%s: %s was created", cmd, dir);
}

int main(void)
{
	char out[256];
	T_CHECK(t_run("rm -rf " ROOT " && mkdir -p " ROOT, out, sizeof(out)) == 0, "cannot make " ROOT ": %s", out);
	T_CHECK(exists(GEN), "%s is missing: run make %s first", GEN, GEN);
	for (size_t i = 0; i < TS_ARRAY_LEN(wants); i++)
		check_preset(&wants[i]);
	check_refused("llama2-mini");
	check_refused("mistral-mini");
	return T_DONE();
}
