/* tok.c: Hugging Face tokenizer.json -- load, encode (byte-level BPE with the
 * Llama 3 / Qwen2 split regex or DeepSeek-V3's three splits, SentencePiece BPE
 * with byte fallback, added tokens), decode and streaming decode. See tok.h
 * for the contract. */
#include "tok.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "json.h"
#include "tok_unicode.h"

/* ---------------------------------------------------------------- tables */

struct tok_merge {
	uint64_t key; /* left id << 32 | right id; UINT64_MAX empty */
	int32_t rank;
	int32_t id;
};

/* A node of the added tokens' trie: the tokens that start with its path. */
struct tok_trie {
	int32_t child, next; /* first child, next sibling; -1 none */
	int32_t added;       /* index in tok.added of the token that ends here, -1 none */
	uint8_t byte;
};

/* The largest id we load: far above any vocabulary (the largest are ~256k),
 * and it keeps the tables sized by n_ids small and their hash capacity
 * (a power of two >= 2 * n_ids) within 32 bits. */
#define TOK_MAX_ID ((1 << 24) - 1)

static uint32_t fnv(const void *p, size_t n)
{
	const uint8_t *s = p;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 16777619u;
	return h;
}

static uint32_t mix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (uint32_t)k;
}

static int32_t vocab_find(const struct tok *t, const void *key, size_t n)
{
	for (uint32_t h = fnv(key, n) & t->vh_mask;; h = (h + 1) & t->vh_mask) {
		int32_t id = t->vh[h];
		if (id < 0)
			return -1;
		uint32_t o = t->key_off[id], l = t->key_off[id + 1] - o;
		if (l == n && memcmp(t->strs + o, key, n) == 0)
			return id;
	}
}

static const struct tok_merge *merge_find(const struct tok *t, int32_t a, int32_t b)
{
	uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	for (uint32_t h = mix64(k) & t->mh_mask;; h = (h + 1) & t->mh_mask) {
		if (t->mh[h].key == k)
			return &t->mh[h];
		if (t->mh[h].key == UINT64_MAX)
			return NULL;
	}
}

/* ---------------------------------------------------------------- unicode */

enum { C_L = 1, C_N = 2, C_S = 4 };

static int in_ranges(const uint32_t (*r)[2], int n, uint32_t c)
{
	int lo = 0, hi = n - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (c < r[mid][0])
			hi = mid - 1;
		else if (c > r[mid][1])
			lo = mid + 1;
		else
			return 1;
	}
	return 0;
}

static int cp_class(uint32_t c)
{
	if (c < 128) {
		if ((c | 32) >= 'a' && (c | 32) <= 'z')
			return C_L;
		if (c >= '0' && c <= '9')
			return C_N;
		return (c == ' ' || (c >= 9 && c <= 13)) ? C_S : 0;
	}
	if (c == UINT32_MAX)
		return 0;
	/* JavaScript \s beyond ASCII */
	if (c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
	    c == 0x205f || c == 0x3000 || c == 0xfeff)
		return C_S;
	if (in_ranges(tok_uc_letter, tok_uc_letter_n, c))
		return C_L;
	if (in_ranges(tok_uc_number, tok_uc_number_n, c))
		return C_N;
	return 0;
}

/* One UTF-8 step in p[0..n): > 0 a valid sequence of that length; 0 a valid
 * but incomplete prefix; -k an invalid maximal subpart of k bytes (WHATWG). */
static int u8_step(const uint8_t *p, size_t n)
{
	uint8_t b = p[0], lo = 0x80, hi = 0xbf;
	int need;
	if (b < 0x80)
		return 1;
	if (b >= 0xc2 && b <= 0xdf)
		need = 2;
	else if (b >= 0xe0 && b <= 0xef) {
		need = 3;
		if (b == 0xe0)
			lo = 0xa0;
		if (b == 0xed)
			hi = 0x9f;
	} else if (b >= 0xf0 && b <= 0xf4) {
		need = 4;
		if (b == 0xf0)
			lo = 0x90;
		if (b == 0xf4)
			hi = 0x8f;
	} else
		return -1;
	for (int i = 1; i < need; i++) {
		if ((size_t)i >= n)
			return 0;
		uint8_t c = p[i];
		if (c < (i == 1 ? lo : 0x80) || c > (i == 1 ? hi : 0xbf))
			return -i;
	}
	return need;
}

/* Code point at s[i]; an invalid or truncated byte is UINT32_MAX, length 1. */
static uint32_t u8_at(const uint8_t *s, size_t n, size_t i, int *len)
{
	int k = u8_step(s + i, n - i);
	if (k <= 0) {
		*len = 1;
		return UINT32_MAX;
	}
	*len = k;
	uint32_t c = s[i];
	if (k == 1)
		return c;
	c &= 0x7f >> k;
	for (int j = 1; j < k; j++)
		c = c << 6 | (s[i + j] & 0x3f);
	return c;
}

uint32_t tok_byte_cp(int b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
		return (uint32_t)b;
	int n = 0;
	for (int x = 0; x < b; x++)
		if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174))
			n++;
	return 256u + (uint32_t)n;
}

/* ---------------------------------------------------------------- load */

static int read_all(const char *path, char **out, size_t *n)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	char *b = ts_alloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (b && got < (size_t)st.st_size) {
		ssize_t r = FAULT_ERRNO(FAULT_READ, EIO) ? -1 : read(fd, b + got, (size_t)st.st_size - got);
		if (r <= 0) {
			ts_free(b);
			b = NULL;
			break;
		}
		got += (size_t)r;
	}
	close(fd);
	if (!b)
		return -1;
	*out = b;
	*n = got;
	return 0;
}

/* Token text (UTF-8 from JSON) -> vocab key bytes. Byte-level: undo the GPT-2
 * map; else copy. Returns the length, or -1 if not byte-level text. */
static long to_key(const struct tok *t, const uint8_t *inv, const char *s, size_t n, char *out)
{
	if (t->model != TOK_BYTE_BPE) {
		memcpy(out, s, n);
		return (long)n;
	}
	long k = 0;
	for (size_t i = 0; i < n;) {
		int l;
		uint32_t c = u8_at((const uint8_t *)s, n, i, &l);
		if (c >= 324 || (inv[c] == 0 && c != tok_byte_cp(0)))
			return -1;
		out[k++] = (char)inv[c];
		i += (size_t)l;
	}
	return k;
}

/* A hex digit's value, or -1. (Not sscanf's %x: it also takes a sign, so
 * "<0x-1>" was byte 0xffffffff.) */
static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 32);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int is_str(const struct json_val *v, const char *s)
{
	const char *x = json_str(v, NULL);
	return x && strcmp(x, s) == 0;
}

static int cmp_added(const void *a, const void *b, const char *strs)
{
	const struct tok_added *x = a, *y = b;
	uint8_t fx = (uint8_t)strs[x->off], fy = (uint8_t)strs[y->off];
	if (fx != fy)
		return fx < fy ? -1 : 1;
	return x->len > y->len ? -1 : x->len < y->len ? 1 : 0;
}

static int32_t config_token(const struct tok *t, const struct json_val *v)
{
	if (v && json_type(v) == JSON_OBJ)
		v = json_get(v, "content");
	const char *s = json_str(v, NULL);
	if (!s)
		return -1;
	for (int i = 0; i < t->n_added; i++)
		if (t->added[i].len == strlen(s) && memcmp(t->strs + t->added[i].off, s, t->added[i].len) == 0)
			return t->added[i].id;
	return vocab_find(t, s, strlen(s));
}

/* HF's post-processor adds BOS when it is a TemplateProcessing (alone or in a
 * Sequence) whose "single" starts with the BOS token. */
static int post_adds_bos(const struct tok *t, const struct json_val *pp)
{
	if (is_str(json_get(pp, "type"), "Sequence")) {
		const struct json_val *ps = json_get(pp, "processors");
		for (int i = 0; i < json_len(ps); i++)
			if (post_adds_bos(t, json_at(ps, i)))
				return 1;
		return 0;
	}
	if (!is_str(json_get(pp, "type"), "TemplateProcessing") || t->bos_id < 0)
		return 0;
	const struct json_val *first = json_get(json_at(json_get(pp, "single"), 0), "SpecialToken");
	return config_token(t, json_get(first, "id")) == t->bos_id; /* -1 when not a token's text */
}

int tok_load(struct tok *t, const char *dir, struct ts_err *e)
{
	char path[4096], *text = NULL, *ctext = NULL;
	size_t len, clen = 0;
	memset(t, 0, sizeof *t);
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	if (read_all(path, &text, &len) != 0)
		return ts_errf(e, E_IO, "%s: cannot read (is %s a checkpoint directory with a tokenizer?)", path, dir);
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	if (read_all(path, &ctext, &clen) != 0)
		ctext = NULL;
	int rc = tok_parse(t, dir, text, len, ctext, clen, e);
	ts_free(text);
	ts_free(ctext);
	return rc;
}

int tok_parse(struct tok *t, const char *dir, const char *text, size_t len, const char *ctext, size_t clen,
	      struct ts_err *e)
{
	char path[4096], *tmp = NULL;
	struct json_doc *doc = NULL, *cdoc = NULL;
	uint8_t inv[324] = {0};
	int rc;

	memset(t, 0, sizeof *t);
	snprintf(path, sizeof path, "%s/tokenizer.json", dir);
	rc = json_parse(&doc, path, text, len, e);
	if (rc)
		return rc;
	const struct json_val *root = json_root(doc);
	const struct json_val *model = json_get(root, "model");
	const struct json_val *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
	if (!is_str(json_get(model, "type"), "BPE")) {
		rc = ts_errf(e, E_UNSUPPORTED, "%s: model.type: only \"BPE\" is supported", path);
		goto out;
	}
	if (json_type(vocab) != JSON_OBJ || json_type(merges) != JSON_ARR) {
		rc = ts_errf(e, E_FORMAT, "%s: model.vocab (object) and model.merges (array) are required", path);
		goto out;
	}

	/* which pipeline */
	const struct json_val *norm = json_get(root, "normalizer"), *pre = json_get(root, "pre_tokenizer");
	t->unk_id = -1;
	t->bos_id = t->eos_id = -1;
	if (is_str(json_get(norm, "type"), "Sequence") && json_type(pre) == JSON_NULL) {
		const struct json_val *ns = json_get(norm, "normalizers");
		if (json_len(ns) != 2 || !is_str(json_get(json_at(ns, 0), "type"), "Prepend") ||
		    !is_str(json_get(json_at(ns, 0), "prepend"), "\xe2\x96\x81") ||
		    !is_str(json_get(json_at(ns, 1), "type"), "Replace") ||
		    !is_str(json_get(json_get(json_at(ns, 1), "pattern"), "String"), " ") ||
		    !is_str(json_get(json_at(ns, 1), "content"), "\xe2\x96\x81")) {
			rc = ts_errf(e, E_UNSUPPORTED,
			             "%s: normalizer: only Sequence[Prepend \"\xe2\x96\x81\", Replace \" \" -> "
			             "\"\xe2\x96\x81\"] is supported",
			             path);
			goto out;
		}
		t->model = TOK_SP_BPE;
		t->pre = TOK_PRE_NONE;
	} else {
		/* Sequence[Split(Regex, Isolated) x 1..3, ByteLevel]: the Splits' patterns, in order,
		 * are one of the known lists */
		static const struct {
			enum tok_pre pre;
			int n;
			const char *pat[3];
		} known[] = {
		    {TOK_PRE_LLAMA3, 1, {TOK_PAT_LLAMA3}},
		    {TOK_PRE_QWEN2, 1, {TOK_PAT_QWEN2}},
		    {TOK_PRE_DEEPSEEK3, 3, {TOK_PAT_DEEPSEEK3_DIGITS, TOK_PAT_DEEPSEEK3_CJK, TOK_PAT_DEEPSEEK3}},
		};
		const struct json_val *ps = json_get(pre, "pretokenizers");
		int nsplit = json_len(ps) - 1, ok = is_str(json_get(pre, "type"), "Sequence") && nsplit >= 1 &&
		                                    nsplit <= 3 &&
		                                    is_str(json_get(json_at(ps, nsplit), "type"), "ByteLevel");
		const char *pat[3] = {NULL, NULL, NULL};
		for (int i = 0; ok && i < nsplit; i++) {
			const struct json_val *split = json_at(ps, i);
			int invert = 0;
			json_bool(json_get(split, "invert"), &invert);
			pat[i] = json_str(json_get(json_get(split, "pattern"), "Regex"), NULL);
			ok = is_str(json_get(split, "type"), "Split") &&
			     is_str(json_get(split, "behavior"), "Isolated") && !invert && pat[i];
		}
		if (!ok) {
			rc = ts_errf(
			    e, E_UNSUPPORTED,
			    "%s: pre_tokenizer: only Sequence[Split(Regex, Isolated) (1 to 3 of them), ByteLevel] "
			    "is supported",
			    path);
			goto out;
		}
		int bad = 0; /* the first pattern that differs from the closest known list */
		t->pre = TOK_PRE_NONE;
		for (size_t k = 0; k < sizeof known / sizeof *known && t->pre == TOK_PRE_NONE; k++) {
			if (known[k].n != nsplit)
				continue;
			int i = 0;
			while (i < nsplit && strcmp(pat[i], known[k].pat[i]) == 0)
				i++;
			if (i == nsplit)
				t->pre = known[k].pre;
			else if (i > bad)
				bad = i;
		}
		if (t->pre == TOK_PRE_NONE) {
			rc = ts_errf(e, E_UNSUPPORTED,
			             "%s: pre_tokenizer.pretokenizers[%d].pattern.Regex: not the Llama 3, Qwen2 or "
			             "DeepSeek-V3 pattern (\"%.200s\")",
			             path, bad, pat[bad]);
			goto out;
		}
		int use_regex = 1, prefix = 0;
		json_bool(json_get(json_at(ps, nsplit), "use_regex"), &use_regex);
		json_bool(json_get(json_at(ps, nsplit), "add_prefix_space"), &prefix);
		if (use_regex || prefix) {
			rc = ts_errf(e, E_UNSUPPORTED,
			             "%s: pre_tokenizer.pretokenizers[%d]: ByteLevel's use_regex and add_prefix_space "
			             "must be false",
			             path, nsplit);
			goto out;
		}
		const struct json_val *nseq = json_get(norm, "normalizers");
		int no_norm = json_type(norm) == JSON_NULL || (is_str(json_get(norm, "type"), "Sequence") &&
		                                               json_type(nseq) == JSON_ARR && json_len(nseq) == 0);
		if (!no_norm && !is_str(json_get(norm, "type"), "NFC")) {
			rc = ts_errf(
			    e, E_UNSUPPORTED,
			    "%s: normalizer: only null, an empty Sequence or NFC with a byte-level pre-tokenizer",
			    path);
			goto out;
		}
		t->nfc = !no_norm;
		t->model = TOK_BYTE_BPE;
		for (int b = 0; b < 256; b++)
			inv[tok_byte_cp(b)] = (uint8_t)b;
	}
	json_bool(json_get(model, "ignore_merges"), &t->ignore_merges);
	json_bool(json_get(model, "byte_fallback"), &t->byte_fallback);

	/* sizes */
	const struct json_val *added = json_get(root, "added_tokens");
	int nv = json_len(vocab), na = json_len(added);
	size_t total = 0;
	int64_t maxid = -1;
	for (int i = 0; i < nv; i++) {
		size_t kl;
		int64_t id;
		json_key_at(vocab, i, &kl);
		if (json_int64(json_at(vocab, i), &id) || id < 0 || id > TOK_MAX_ID) {
			rc = ts_errf(e, E_FORMAT, "%s: model.vocab: entry %d is not an integer id in 0..%d", path, i,
			             TOK_MAX_ID);
			goto out;
		}
		maxid = id > maxid ? id : maxid;
		total += 2 * kl;
	}
	for (int i = 0; i < na; i++) {
		int64_t id;
		size_t cl;
		const struct json_val *a = json_at(added, i);
		if (json_int64(json_get(a, "id"), &id) || id < 0 || id > TOK_MAX_ID ||
		    !json_str(json_get(a, "content"), &cl) || !cl) {
			rc = ts_errf(e, E_FORMAT,
			             "%s: added_tokens[%d]: needs an integer id in 0..%d and a non-empty content", path,
			             i, TOK_MAX_ID);
			goto out;
		}
		int ls = 0, rs = 0, sw = 0, nz = 0;
		json_bool(json_get(a, "lstrip"), &ls);
		json_bool(json_get(a, "rstrip"), &rs);
		json_bool(json_get(a, "single_word"), &sw);
		json_bool(json_get(a, "normalized"), &nz);
		if (ls || rs || sw || (nz && (t->model != TOK_BYTE_BPE || t->nfc))) {
			rc = ts_errf(e, E_UNSUPPORTED,
			             "%s: added_tokens[%d]: lstrip/rstrip/single_word are not supported, nor "
			             "normalized with a normalizer",
			             path, i);
			goto out;
		}
		maxid = id > maxid ? id : maxid;
		total += cl;
	}
	t->n_ids = (int)maxid + 1;
	t->strs = ts_alloc(total + 1);
	t->key_off = ts_alloc(((size_t)t->n_ids + 1) * sizeof *t->key_off);
	t->dec_off = ts_alloc((size_t)t->n_ids * 2 * sizeof *t->dec_off);
	t->kind = ts_alloc((size_t)t->n_ids);
	t->added = ts_alloc(((size_t)na + 1) * sizeof *t->added);
	uint32_t vcap = 1;
	while (vcap < 2u * (uint32_t)t->n_ids)
		vcap <<= 1;
	t->vh = ts_alloc(vcap * sizeof *t->vh);
	t->vh_mask = vcap - 1;
	int nm = json_len(merges);
	uint32_t mcap = 1;
	while (mcap < 2u * (uint32_t)nm + 2)
		mcap <<= 1;
	t->mh = ts_alloc(mcap * sizeof *t->mh);
	t->mh_mask = mcap - 1;
	tmp = ts_alloc(4096);
	if (!t->strs || !t->key_off || !t->dec_off || !t->kind || !t->added || !t->vh || !t->mh || !tmp) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory loading %d tokens", path, t->n_ids);
		goto out;
	}
	memset(t->vh, 0xff, vcap * sizeof *t->vh);
	memset(t->mh, 0xff, mcap * sizeof *t->mh);
	for (int b = 0; b < 256; b++)
		t->byte_id[b] = -1;

	/* vocab: keys laid out in id order so key_off[id + 1] ends key id */
	const char **ktext = ts_alloc((size_t)t->n_ids * sizeof *ktext);
	size_t *klen = ts_alloc((size_t)t->n_ids * sizeof *klen);
	uint8_t *is_added = ts_alloc((size_t)t->n_ids);
	if (!ktext || !klen || !is_added) {
		ts_free(ktext);
		ts_free(klen);
		ts_free(is_added);
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", path);
		goto out;
	}
	for (int i = 0; i < nv; i++) {
		int64_t id;
		json_int64(json_at(vocab, i), &id);
		ktext[id] = json_key_at(vocab, i, &klen[id]);
		t->kind[id] = 1;
	}
	for (int i = 0; i < na; i++) {
		int64_t id;
		json_int64(json_get(json_at(added, i), "id"), &id);
		is_added[id] = 1;
	}
	uint32_t w = 0;
	for (int id = 0; id < t->n_ids; id++) {
		t->key_off[id] = w;
		if (!ktext[id])
			continue;
		long k = klen[id] <= 4096 ? to_key(t, inv, ktext[id], klen[id], t->strs + w) : -1;
		if (k < 0 && is_added[id]) {
			ktext[id] = NULL; /* the added token stands for it; no byte text reaches it */
			continue;
		}
		if (k < 0) {
			rc = ts_errf(e, E_FORMAT, "%s: model.vocab: token %d (\"%.100s\") is not byte-level text", path,
			             id, ktext[id]);
			ts_free(ktext);
			ts_free(klen);
			ts_free(is_added);
			goto out;
		}
		w += (uint32_t)k;
	}
	ts_free(is_added);
	t->key_off[t->n_ids] = w;
	for (int id = 0; id < t->n_ids; id++) {
		if (!ktext[id])
			continue;
		uint32_t o = t->key_off[id], l = t->key_off[id + 1] - o;
		if (vocab_find(t, t->strs + o, l) >= 0)
			continue; /* duplicate key: first id wins */
		uint32_t h = fnv(t->strs + o, l) & t->vh_mask;
		while (t->vh[h] >= 0)
			h = (h + 1) & t->vh_mask;
		t->vh[h] = id;
	}
	/* decoded bytes */
	for (int id = 0; id < t->n_ids; id++) {
		uint32_t o = t->key_off[id], l = t->key_off[id + 1] - o;
		t->dec_off[2 * id] = w;
		if (t->model == TOK_SP_BPE) {
			const char *s = t->strs + o;
			int hi = l == 6 ? hex_val(s[3]) : -1, lo = l == 6 ? hex_val(s[4]) : -1;
			if (t->byte_fallback && l == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
			    hi >= 0 && lo >= 0) {
				unsigned hx = (unsigned)(hi << 4 | lo);
				t->kind[id] = 4;
				t->byte_id[hx] = id;
				t->strs[w++] = (char)hx;
			} else {
				for (uint32_t i = 0; i < l; i++) {
					if (i + 2 < l && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
						t->strs[w++] = ' ';
						i += 2;
					} else
						t->strs[w++] = s[i];
				}
			}
		} else {
			memmove(t->strs + w, t->strs + o, l);
			w += l;
			if (l == 1)
				t->byte_id[(uint8_t)t->strs[o]] = id;
		}
		t->dec_off[2 * id + 1] = w - t->dec_off[2 * id];
	}
	ts_free(ktext);
	ts_free(klen);

	/* added tokens */
	for (int i = 0; i < na; i++) {
		const struct json_val *a = json_at(added, i);
		int64_t id;
		size_t cl;
		int sp = 0;
		json_int64(json_get(a, "id"), &id);
		const char *c = json_str(json_get(a, "content"), &cl);
		json_bool(json_get(a, "special"), &sp);
		memcpy(t->strs + w, c, cl);
		t->added[i] = (struct tok_added){.off = w, .len = (uint32_t)cl, .id = (int32_t)id, .special = sp};
		t->dec_off[2 * id] = w;
		t->dec_off[2 * id + 1] = (uint32_t)cl;
		t->kind[id] = sp ? 3 : 2;
		w += (uint32_t)cl;
	}
	t->n_added = na;
	for (int i = 1; i < na; i++) /* insertion sort: first byte, then longest first */
		for (int j = i; j > 0 && cmp_added(&t->added[j - 1], &t->added[j], t->strs) > 0; j--) {
			struct tok_added x = t->added[j];
			t->added[j] = t->added[j - 1];
			t->added[j - 1] = x;
		}
	for (int b = 0, i = 0; b <= 256; b++) {
		while (i < na && (uint8_t)t->strs[t->added[i].off] < b)
			i++;
		t->added_first[b] = i;
	}
	/* the trie: matching at a position costs at most the longest token's
	 * bytes, however many tokens share a prefix (DeepSeek-V3 has 800 that
	 * start with "<｜"); in sorted order, so a repeated content keeps the
	 * entry that the sorted list finds first */
	size_t nodes = 1;
	for (int i = 0; i < na; i++)
		nodes += t->added[i].len;
	if (!(t->trie = ts_alloc(nodes * sizeof(*t->trie)))) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", path);
		goto out;
	}
	t->trie[0] = (struct tok_trie){-1, -1, -1, 0};
	int32_t n_nodes = 1;
	for (int b = 0; b < 256; b++)
		t->trie_first[b] = -1;
	for (int i = 0; i < na; i++) {
		const uint8_t *p = (const uint8_t *)t->strs + t->added[i].off;
		int32_t node = 0;
		for (uint32_t k = 0; k < t->added[i].len; k++) {
			int32_t c = t->trie[node].child;
			while (c >= 0 && t->trie[c].byte != p[k])
				c = t->trie[c].next;
			if (c < 0) {
				c = n_nodes++;
				t->trie[c] = (struct tok_trie){-1, t->trie[node].child, -1, p[k]};
				t->trie[node].child = c;
				if (node == 0)
					t->trie_first[p[k]] = c;
			}
			node = c;
		}
		if (t->trie[node].added < 0)
			t->trie[node].added = i;
	}
	for (int id = 0; id < t->n_ids; id++)
		if ((int)t->dec_off[2 * id + 1] > t->max_dec)
			t->max_dec = (int)t->dec_off[2 * id + 1];
	/* tokens whose bytes are whole characters: the streaming fast path */
	if (!(t->whole = ts_alloc((size_t)t->n_ids))) {
		rc = ts_errf(e, E_NOMEM, "%s: out of memory", path);
		goto out;
	}
	for (int id = 0; id < t->n_ids; id++) {
		const uint8_t *p = (const uint8_t *)t->strs + t->dec_off[2 * id];
		size_t n = t->dec_off[2 * id + 1], i = 0;
		int k = 1;
		while (i < n && (k = u8_step(p + i, n - i)) > 0)
			i += (size_t)k;
		t->whole[id] = t->kind[id] && n > 0 && i == n;
	}

	/* merges: (left, right) -> rank, merged id */
	for (int i = 0; i < nm; i++) {
		const struct json_val *m = json_at(merges, i);
		const char *a, *b;
		size_t al, bl;
		if (json_type(m) == JSON_ARR && json_len(m) == 2) {
			a = json_str(json_at(m, 0), &al);
			b = json_str(json_at(m, 1), &bl);
		} else {
			a = json_str(m, &al);
			const char *sp = a ? memchr(a, ' ', al) : NULL;
			b = sp ? sp + 1 : NULL;
			bl = sp ? al - (size_t)(sp + 1 - a) : 0;
			al = sp ? (size_t)(sp - a) : 0;
		}
		long ka, kb;
		if (!a || !b || al + bl > 2048 || (ka = to_key(t, inv, a, al, tmp)) < 0 ||
		    (kb = to_key(t, inv, b, bl, tmp + ka)) < 0) {
			rc = ts_errf(e, E_FORMAT, "%s: model.merges[%d]: not a pair of tokens", path, i);
			goto out;
		}
		int32_t ia = vocab_find(t, tmp, (size_t)ka), ib = vocab_find(t, tmp + ka, (size_t)kb);
		int32_t im = vocab_find(t, tmp, (size_t)(ka + kb));
		if (ia < 0 || ib < 0 || im < 0) {
			rc = ts_errf(e, E_FORMAT,
			             "%s: model.merges[%d]: \"%.100s\" uses or makes a token not in model.vocab", path,
			             i, json_type(m) == JSON_ARR ? a : json_str(m, NULL));
			goto out;
		}
		uint64_t k = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
		uint32_t h = mix64(k) & t->mh_mask;
		while (t->mh[h].key != UINT64_MAX && t->mh[h].key != k)
			h = (h + 1) & t->mh_mask;
		if (t->mh[h].key == k)
			continue; /* a repeated pair keeps its first rank */
		t->mh[h] = (struct tok_merge){.key = k, .rank = i, .id = im};
	}

	const char *unk = json_str(json_get(model, "unk_token"), NULL);
	if (unk)
		t->unk_id = vocab_find(t, unk, strlen(unk));
	if (t->model == TOK_BYTE_BPE) {
		for (int b = 0; b < 256; b++)
			if (t->byte_id[b] < 0) {
				rc = ts_errf(e, E_FORMAT,
				             "%s: model.vocab: byte 0x%02x has no token (byte-level BPE needs all 256)",
				             path, b);
				goto out;
			}
	} else if (t->byte_fallback) {
		for (int b = 0; b < 256; b++)
			if (t->byte_id[b] < 0) {
				rc = ts_errf(e, E_FORMAT,
				             "%s: model.vocab: byte_fallback is on but <0x%02X> is missing", path, b);
				goto out;
			}
	}

	/* tokenizer_config.json: optional; bos/eos */
	snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
	if (ctext) {
		rc = json_parse(&cdoc, path, ctext, clen, e);
		if (rc)
			goto out;
		const struct json_val *c = json_root(cdoc);
		const struct json_val *bos = json_get(c, "bos_token"), *eos = json_get(c, "eos_token");
		t->bos_id = config_token(t, bos);
		t->eos_id = config_token(t, eos);
		if (bos && json_type(bos) != JSON_NULL && t->bos_id < 0) {
			rc = ts_errf(e, E_FORMAT, "%s: bos_token: not a token of tokenizer.json", path);
			goto out;
		}
		if (eos && json_type(eos) != JSON_NULL && t->eos_id < 0) {
			rc = ts_errf(e, E_FORMAT, "%s: eos_token: not a token of tokenizer.json", path);
			goto out;
		}
		const struct json_val *ab = json_get(c, "add_bos_token");
		if (ab && json_bool(ab, &t->add_bos) < 0) {
			rc = ts_errf(e, E_FORMAT, "%s: add_bos_token: not true or false", path);
			goto out;
		}
		if (!ab)
			t->add_bos = post_adds_bos(t, json_get(root, "post_processor"));
		if (t->bos_id < 0)
			t->add_bos = 0;
		/* chat_template: a string, or [{"name", "template"}] (take "default") */
		const struct json_val *ct = json_get(c, "chat_template");
		for (int i = 0; json_type(ct) == JSON_ARR && i < json_len(ct); i++)
			if (is_str(json_get(json_at(ct, i), "name"), "default"))
				ct = json_get(json_at(ct, i), "template");
		t->chat = tok_chat_detect(json_str(ct, NULL), &t->chat_think);
	}
	rc = 0;
out:
	ts_free(tmp);
	json_free(doc);
	json_free(cdoc);
	if (rc)
		tok_free(t);
	return rc;
}

void tok_free(struct tok *t)
{
	ts_free(t->strs);
	ts_free(t->key_off);
	ts_free(t->dec_off);
	ts_free(t->kind);
	ts_free(t->whole);
	ts_free(t->vh);
	ts_free(t->mh);
	ts_free(t->added);
	ts_free(t->trie);
	memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- encode */

struct sym {
	int32_t id; /* -1: a character not in the vocab (byte fallback / unk) */
	int32_t prev, next;
	uint32_t start, len; /* bytes in the word */
};

struct hent {
	int32_t rank, pos;     /* ordered by rank, then leftmost */
	int32_t lid, rid, mid; /* left, right, merged ids */
};

static int hless(const struct hent *a, const struct hent *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void hpush(struct hent *h, int *n, struct hent x)
{
	int i = (*n)++;
	while (i > 0 && hless(&x, &h[(i - 1) / 2])) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = x;
}

static struct hent hpop(struct hent *h, int *n)
{
	struct hent top = h[0], x = h[--*n];
	int i = 0;
	for (;;) {
		int c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && hless(&h[c + 1], &h[c]))
			c++;
		if (!hless(&h[c], &x))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = x;
	return top;
}

struct enc {
	const struct tok *t;
	int32_t *out;
	int cap, k;
	struct sym *s;
	struct hent *h;
	uint8_t *norm;
	uint32_t *cps, *cps_tmp; /* (2n + 8) NFC code points, and room to sort them */
	uint8_t *cps_cc;         /* (2n + 8) their combining classes */
	size_t cps_cap;
};

static void emit(struct enc *en, int32_t id)
{
	if (en->k < en->cap)
		en->out[en->k] = id;
	en->k++;
}

static void try_pair(struct enc *en, int *nh, int i)
{
	int j = en->s[i].next;
	if (j < 0 || en->s[i].id < 0 || en->s[j].id < 0)
		return;
	const struct tok_merge *m = merge_find(en->t, en->s[i].id, en->s[j].id);
	if (m)
		hpush(en->h, nh, (struct hent){m->rank, i, en->s[i].id, en->s[j].id, m->id});
}

/* BPE over en->s[0..m) (symbols of word w), then emits the ids. */
static void bpe(struct enc *en, const uint8_t *w, int m)
{
	struct sym *s = en->s;
	int nh = 0;
	for (int i = 0; i + 1 < m; i++)
		try_pair(en, &nh, i);
	while (nh > 0) {
		struct hent x = hpop(en->h, &nh);
		int i = x.pos, j = s[i].next;
		if (s[i].id != x.lid || j < 0 || s[j].id != x.rid)
			continue; /* stale */
		s[i].id = x.mid;
		s[i].len += s[j].len;
		s[i].next = s[j].next;
		if (s[j].next >= 0)
			s[s[j].next].prev = i;
		s[j].id = -2; /* dead */
		if (s[i].prev >= 0)
			try_pair(en, &nh, s[i].prev);
		try_pair(en, &nh, i);
	}
	for (int i = 0; i >= 0 && m > 0; i = s[i].next) {
		if (s[i].id >= 0)
			emit(en, s[i].id);
		else if (en->t->byte_fallback)
			for (uint32_t b = 0; b < s[i].len; b++)
				emit(en, en->t->byte_id[w[s[i].start + b]]);
		else if (en->t->unk_id >= 0)
			emit(en, en->t->unk_id);
	}
}

/* End of \s*[\r\n]+|\s+(?!\S)|\s+ at s[i] (a \s character) in s[0..n): the
 * three regexes' common tail. */
static size_t ws_next(const uint8_t *s, size_t n, size_t i)
{
	size_t last_nl = 0, last_start = i, j = i;
	int have_nl = 0;
	while (j < n) {
		int l;
		uint32_t c = u8_at(s, n, j, &l);
		if (cp_class(c) != C_S)
			break;
		if (c == '\r' || c == '\n') {
			last_nl = j;
			have_nl = 1;
		}
		last_start = j;
		j += (size_t)l;
	}
	if (have_nl)
		return last_nl + 1;
	if (j == n || last_start == i)
		return j;
	return last_start;
}

/* End of the pre-token that starts at s[i] (Llama 3 / Qwen2 split regex). */
static size_t pre_next(enum tok_pre pre, const uint8_t *s, size_t n, size_t i)
{
	int l0, l1 = 0;
	uint32_t c0 = u8_at(s, n, i, &l0), c1 = i + (size_t)l0 < n ? u8_at(s, n, i + (size_t)l0, &l1) : 0;
	int k0 = cp_class(c0), k1 = i + (size_t)l0 < n ? cp_class(c1) : -1;
	size_t j;
	/* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
	if (c0 == '\'' && k1 >= 0) {
		uint32_t a = c1 | (c1 < 128 ? 32 : 0);
		if (a == 's' || a == 't' || a == 'm' || a == 'd' || c1 == 0x17f)
			return i + 1 + (size_t)l1;
		if (i + 2 < n && (a == 'r' || a == 'v' || a == 'l')) {
			uint32_t b = s[i + 2] | 32;
			if ((a != 'l' && b == 'e') || (a == 'l' && b == 'l'))
				return i + 3;
		}
	}
	/* [^\r\n\p{L}\p{N}]?\p{L}+ */
	if (k0 == C_L || (c0 != '\r' && c0 != '\n' && !(k0 & (C_L | C_N)) && k1 == C_L)) {
		j = i + (size_t)l0;
		while (j < n) {
			int l;
			if (cp_class(u8_at(s, n, j, &l)) != C_L)
				break;
			j += (size_t)l;
		}
		return j;
	}
	/* \p{N}{1,3} or \p{N} */
	if (k0 == C_N) {
		j = i + (size_t)l0;
		for (int r = 1; r < (pre == TOK_PRE_LLAMA3 ? 3 : 1) && j < n; r++) {
			int l;
			if (cp_class(u8_at(s, n, j, &l)) != C_N)
				break;
			j += (size_t)l;
		}
		return j;
	}
	/* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
	if ((c0 == ' ' && k1 == 0) || k0 == 0) {
		j = c0 == ' ' ? i + 1 : i;
		while (j < n) {
			int l;
			if (cp_class(u8_at(s, n, j, &l)) != 0)
				break;
			j += (size_t)l;
		}
		while (j < n && (s[j] == '\r' || s[j] == '\n'))
			j++;
		return j;
	}
	return ws_next(s, n, i); /* here c0 is \s */
}

static int nfc_stable(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		int l;
		uint32_t c = u8_at(s, n, i, &l);
		if (c >= 0x300 && c != UINT32_MAX && in_ranges(tok_uc_nfc_unstable, tok_uc_nfc_unstable_n, c))
			return 0;
		i += (size_t)l;
	}
	return 1;
}

/* NFC (UAX #15): full canonical decomposition, canonical ordering, canonical
 * composition. Invalid UTF-8 bytes pass through as themselves. */
#define NFC_RAW 0x80000000u /* cp[] marker for an invalid input byte */

static int ccc_of(uint32_t c)
{
	if (c < 0x300 || c >= 0x110000)
		return 0;
	int lo = 0, hi = tok_uc_ccc_n - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (c < tok_uc_ccc[mid][0])
			hi = mid - 1;
		else if (c > tok_uc_ccc[mid][1])
			lo = mid + 1;
		else
			return (int)tok_uc_ccc[mid][2];
	}
	return 0;
}

enum {
	H_S = 0xac00,
	H_L = 0x1100,
	H_V = 0x1161,
	H_T = 0x11a7,
	H_LN = 19,
	H_VN = 21,
	H_TN = 28,
	H_N = H_VN * H_TN,
	H_SN = H_LN * H_N
};

static void decompose(uint32_t c, uint32_t *cp, size_t *k, size_t cap)
{
	if (c >= H_S && c < H_S + H_SN) {
		uint32_t i = c - H_S, t = i % H_TN;
		if (*k + 3 > cap)
			return;
		cp[(*k)++] = H_L + i / H_N;
		cp[(*k)++] = H_V + (i % H_N) / H_TN;
		if (t)
			cp[(*k)++] = H_T + t;
		return;
	}
	int lo = 0, hi = c >= 0xc0 && c < 0x110000 ? tok_uc_decomp_n - 1 : -1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		if (c < tok_uc_decomp[mid][0])
			hi = mid - 1;
		else if (c > tok_uc_decomp[mid][0])
			lo = mid + 1;
		else {
			decompose(tok_uc_decomp[mid][1], cp, k, cap);
			if (tok_uc_decomp[mid][2])
				decompose(tok_uc_decomp[mid][2], cp, k, cap);
			return;
		}
	}
	if (*k < cap)
		cp[(*k)++] = c;
}

static uint32_t compose(uint32_t a, uint32_t b)
{
	if (a >= H_L && a < H_L + H_LN && b >= H_V && b < H_V + H_VN)
		return H_S + ((a - H_L) * H_VN + (b - H_V)) * H_TN;
	if (a >= H_S && a < H_S + H_SN && (a - H_S) % H_TN == 0 && b > H_T && b < H_T + H_TN)
		return a + (b - H_T);
	int lo = 0, hi = tok_uc_comp_n - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		const uint32_t *e = tok_uc_comp[mid];
		if (a < e[0] || (a == e[0] && b < e[1]))
			hi = mid - 1;
		else if (a > e[0] || b > e[1])
			lo = mid + 1;
		else
			return e[2];
	}
	return 0;
}

/* Canonical ordering of one run of non-starters cp[0..n) (ccc cc[i] != 0):
 * a stable sort by ccc. Short runs (all that real text has) by insertion;
 * longer ones by counting sort through tmp, so a run of any length costs
 * O(n + 256), never O(n^2). */
static void nfc_order_run(uint32_t *cp, uint8_t *cc, size_t n, uint32_t *tmp)
{
	if (n <= 16) {
		for (size_t i = 1; i < n; i++)
			for (size_t j = i; j > 0 && cc[j - 1] > cc[j]; j--) {
				uint32_t x = cp[j];
				uint8_t y = cc[j];
				cp[j] = cp[j - 1], cc[j] = cc[j - 1];
				cp[j - 1] = x, cc[j - 1] = y;
			}
		return;
	}
	size_t at[256] = {0};
	for (size_t i = 0; i < n; i++)
		at[cc[i]]++;
	for (size_t v = 0, sum = 0; v < 256; v++) { /* at[v]: where the first of class v goes */
		size_t k = at[v];
		at[v] = sum;
		sum += k;
	}
	for (size_t i = 0; i < n; i++) /* a non-starter is a code point (< 2^21), never NFC_RAW */
		tmp[at[cc[i]]++] = cp[i] | (uint32_t)cc[i] << 24;
	for (size_t i = 0; i < n; i++) {
		cp[i] = tmp[i] & 0xffffff;
		cc[i] = (uint8_t)(tmp[i] >> 24);
	}
}

/* The largest growth of UTF-8 under NFC: no code point's full canonical
 * decomposition takes more than 3x its own bytes (U+1D160: 4 -> 12), and
 * composition never lengthens (t_tok checks both over the UCD tables). */
#define NFC_MAX_GROWTH 3

/* NFC of s[0..n) into out (>= NFC_MAX_GROWTH * n bytes), using cp and tmp
 * (>= 2n + 8 entries each; no code point decomposes into more than 1.5 per
 * input byte) and cc (as many bytes). Returns the output length. Linear in n:
 * decomposition and composition look at each code point once, and canonical
 * ordering sorts each run of non-starters by counting. */
static size_t nfc(const uint8_t *s, size_t n, uint32_t *cp, uint32_t *tmp, uint8_t *cc, size_t cap, uint8_t *out)
{
	size_t k = 0, m = 0;
	for (size_t i = 0; i < n;) {
		int l;
		uint32_t c = u8_at(s, n, i, &l);
		if (c == UINT32_MAX) {
			if (k < cap)
				cp[k++] = NFC_RAW | s[i];
		} else
			decompose(c, cp, &k, cap);
		i += (size_t)l;
	}
	for (size_t i = 0; i < k; i++)
		cc[i] = (cp[i] & NFC_RAW) ? 0 : (uint8_t)ccc_of(cp[i]);
	for (size_t i = 0; i < k;) { /* canonical ordering: each run of non-starters, stably by ccc */
		size_t j = i;
		while (j < k && cc[j])
			j++;
		if (j - i > 1)
			nfc_order_run(cp + i, cc + i, j - i, tmp);
		i = j + (j == i);
	}
	long si = -1;  /* last starter in cp[0..m) */
	int last = -1; /* ccc of the last kept character after it; -1: none */
	for (size_t i = 0; i < k; i++) {
		uint32_t c = cp[i];
		int cl = cc[i];
		if (si >= 0 && !(c & NFC_RAW) && (last == -1 || last < cl)) {
			uint32_t x = compose(cp[si], c);
			if (x) {
				cp[si] = x;
				continue;
			}
		}
		if (cl == 0) {
			si = (c & NFC_RAW) ? -1 : (long)m;
			last = -1;
		} else
			last = cl;
		cp[m++] = c;
	}
	size_t w = 0;
	for (size_t i = 0; i < m; i++) {
		uint32_t c = cp[i];
		if (c & NFC_RAW)
			out[w++] = (uint8_t)c;
		else if (c < 0x80)
			out[w++] = (uint8_t)c;
		else if (c < 0x800) {
			out[w++] = (uint8_t)(0xc0 | c >> 6);
			out[w++] = (uint8_t)(0x80 | (c & 0x3f));
		} else if (c < 0x10000) {
			out[w++] = (uint8_t)(0xe0 | c >> 12);
			out[w++] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
			out[w++] = (uint8_t)(0x80 | (c & 0x3f));
		} else {
			out[w++] = (uint8_t)(0xf0 | c >> 18);
			out[w++] = (uint8_t)(0x80 | (c >> 12 & 0x3f));
			out[w++] = (uint8_t)(0x80 | (c >> 6 & 0x3f));
			out[w++] = (uint8_t)(0x80 | (c & 0x3f));
		}
	}
	return w;
}

/* One pre-token w[0..m) of byte-level BPE. */
static void encode_word(struct enc *en, const uint8_t *w, size_t m)
{
	const struct tok *t = en->t;
	int32_t id;
	if (t->ignore_merges && (id = vocab_find(t, w, m)) >= 0) {
		emit(en, id);
		return;
	}
	for (int k = 0; k < (int)m; k++)
		en->s[k] = (struct sym){t->byte_id[w[k]], k - 1, k + 1 < (int)m ? k + 1 : -1, (uint32_t)k, 1};
	bpe(en, w, (int)m);
}

/* DeepSeek-V3's pre-tokenizer: Split \p{N}{1,3}, then Split on runs of the
 * CJK class below, then Split on its general regex (TOK_PAT_DEEPSEEK3), each
 * Split (Isolated) cutting every piece of the one before into its matches and
 * the stretches between them. A piece of the first is all \p{N} (no match of
 * the later two, as no \p{N} is CJK, \s, L, M, P or S) or has no \p{N}, so
 * a stretch without digits is cut into CJK / other runs, and each run by the
 * general regex. Unicode classes here are disjoint: \s first (JS's set, which
 * holds U+FEFF, a Cf), then L, M, N, P or S (one class: the regex never
 * separates them), the rest "other" (controls, Cf, Co, unassigned, invalid
 * bytes). */
enum { DS_OTHER, DS_WS, DS_L, DS_M, DS_N, DS_PS };

static int ds_class(uint32_t c)
{
	if (c < 128) {
		if ((c | 32) >= 'a' && (c | 32) <= 'z')
			return DS_L;
		if (c >= '0' && c <= '9')
			return DS_N;
		if (c == ' ' || (c >= 9 && c <= 13))
			return DS_WS;
		return c > ' ' && c < 127 ? DS_PS : DS_OTHER;
	}
	switch (cp_class(c)) { /* \s, L, N, else one of the rest */
	case C_S:
		return DS_WS;
	case C_L:
		return DS_L;
	case C_N:
		return DS_N;
	}
	if (c == UINT32_MAX)
		return DS_OTHER;
	if (in_ranges(tok_uc_mark, tok_uc_mark_n, c))
		return DS_M;
	if (in_ranges(tok_uc_punct, tok_uc_punct_n, c) || in_ranges(tok_uc_symbol, tok_uc_symbol_n, c))
		return DS_PS;
	return DS_OTHER;
}

/* [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff] */
static int ds_cjk(uint32_t c)
{
	return (c >= 0x4e00 && c <= 0x9fa5) || (c >= 0x3040 && c <= 0x30ff);
}

/* End of the general regex's match at s[i] in a piece s[..n) (the piece ends
 * the text for its lookahead), or i when no match starts there. Alternatives
 * in order, the first that matches wins (as in a backtracking engine). */
static size_t ds_match(const uint8_t *s, size_t n, size_t i)
{
	int l0, l1 = 0;
	size_t i1 = i, j;
	uint32_t c0 = u8_at(s, n, i, &l0), c1 = 0;
	i1 += (size_t)l0;
	if (i1 < n)
		c1 = u8_at(s, n, i1, &l1);
	int k0 = ds_class(c0), k1 = i1 < n ? ds_class(c1) : -1;
	/* [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+ : ASCII letters only */
	if (c0 < 128 && k0 == DS_PS && c1 < 128 && k1 == DS_L) {
		j = i1 + 1;
		while (j < n && (s[j] | 32) >= 'a' && (s[j] | 32) <= 'z')
			j++;
		return j;
	}
	/* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
	if (k0 == DS_L || k0 == DS_M || (c0 != '\r' && c0 != '\n' && k0 != DS_PS && (k1 == DS_L || k1 == DS_M))) {
		for (j = i1; j < n;) {
			int l, k = ds_class(u8_at(s, n, j, &l));
			if (k != DS_L && k != DS_M)
				break;
			j += (size_t)l;
		}
		return j;
	}
	/* ' ?[\p{P}\p{S}]+[\r\n]*' */
	if (k0 == DS_PS || (c0 == ' ' && k1 == DS_PS)) {
		for (j = k0 == DS_PS ? i : i1; j < n;) {
			int l;
			if (ds_class(u8_at(s, n, j, &l)) != DS_PS)
				break;
			j += (size_t)l;
		}
		while (j < n && (s[j] == '\r' || s[j] == '\n'))
			j++;
		return j;
	}
	return k0 == DS_WS ? ws_next(s, n, i) : i;
}

/* The general regex over the piece s[a..n): its matches and the stretches
 * between them (characters where no match starts). */
static void ds_split(struct enc *en, const uint8_t *s, size_t a, size_t n)
{
	size_t gap = a;
	for (size_t i = a; i < n;) {
		size_t j = ds_match(s, n, i);
		if (j == i) {
			int l;
			u8_at(s, n, i, &l);
			i += (size_t)l;
			continue;
		}
		if (gap < i)
			encode_word(en, s + gap, i - gap);
		encode_word(en, s + i, j - i);
		i = gap = j;
	}
	if (gap < n)
		encode_word(en, s + gap, n - gap);
}

static void encode_deepseek3(struct enc *en, const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		int l;
		uint32_t c = u8_at(s, n, i, &l);
		size_t j = i + (size_t)l;
		if (ds_class(c) == DS_N) { /* \p{N}{1,3} */
			for (int r = 1; r < 3 && j < n && ds_class(u8_at(s, n, j, &l)) == DS_N; r++)
				j += (size_t)l;
			encode_word(en, s + i, j - i);
		} else { /* a CJK run, or a run of the rest; neither holds a digit */
			int cjk = ds_cjk(c);
			while (j < n) {
				c = u8_at(s, n, j, &l);
				if (ds_cjk(c) != cjk || ds_class(c) == DS_N)
					break;
				j += (size_t)l;
			}
			ds_split(en, s, i, j);
		}
		i = j;
	}
}

static void encode_bytelevel(struct enc *en, const uint8_t *s, size_t n)
{
	const struct tok *t = en->t;
	if (t->pre == TOK_PRE_DEEPSEEK3) {
		encode_deepseek3(en, s, n);
		return;
	}
	for (size_t i = 0; i < n;) {
		size_t e = pre_next(t->pre, s, n, i);
		encode_word(en, s + i, e - i);
		i = e;
	}
}

static void encode_sp(struct enc *en, const uint8_t *s, size_t n)
{
	const struct tok *t = en->t;
	uint8_t *w = en->norm;
	size_t wn = 0;
	memcpy(w, "\xe2\x96\x81", 3);
	wn = 3;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ') {
			memcpy(w + wn, "\xe2\x96\x81", 3);
			wn += 3;
		} else
			w[wn++] = s[i];
	}
	int m = 0;
	for (size_t i = 0; i < wn;) {
		int l;
		u8_at(w, wn, i, &l);
		en->s[m] = (struct sym){vocab_find(t, w + i, (size_t)l), m - 1, -1, (uint32_t)i, (uint32_t)l};
		if (m > 0)
			en->s[m - 1].next = m;
		m++;
		i += (size_t)l;
	}
	bpe(en, w, m);
}

/* The added token that s[0..n) starts with, the longest if several; NULL if
 * none. */
static const struct tok_added *added_at(const struct tok *t, const uint8_t *s, size_t n)
{
	int32_t node = t->trie_first[s[0]], best = -1;
	for (size_t j = 1; node >= 0; j++) {
		if (t->trie[node].added >= 0)
			best = t->trie[node].added;
		if (j == n)
			break;
		int32_t c = t->trie[node].child;
		while (c >= 0 && t->trie[c].byte != s[j])
			c = t->trie[c].next;
		node = c;
	}
	return best >= 0 ? &t->added[best] : NULL;
}

void tok_scratch_free(struct tok_scratch *sc)
{
	ts_free(sc->mem);
	sc->mem = NULL;
	sc->bytes = 0;
}

size_t tok_encode_bound(const struct tok *t, size_t n)
{
	if (t->model == TOK_BYTE_BPE) /* each id covers >= 1 byte of the (normalized) text */
		return t->nfc ? NFC_MAX_GROWTH * n : n;
	/* SentencePiece: a stretch of L bytes becomes "▁" + L bytes with each ' '
	 * a "▁": at most 1 + L ids when "▁" is a token, else 3 + 3L; stretches
	 * are separated by added tokens (>= 1 byte, 1 id each), so there are at
	 * most n_added + 1 of them */
	if (vocab_find(t, "\xe2\x96\x81", 3) >= 0)
		return 2 * n + 1;
	return 4 * n + 3;
}

size_t tok_scratch_bytes(const struct tok *t, size_t n)
{
	/* a pre-token of NFC text may be up to 3x its input's bytes, each a symbol */
	size_t nsym = (t->nfc ? NFC_MAX_GROWTH * n : n) + 2, ncp = t->nfc ? 2 * n + 8 : 0;
	return nsym * (sizeof(struct sym) + 3 * sizeof(struct hent)) + ncp * 9 + 3 * n + 8;
}

int tok_scratch_reserve(struct tok_scratch *sc, const struct tok *t, size_t n)
{
	size_t need = tok_scratch_bytes(t, n);
	if (sc->bytes >= need)
		return 0;
	void *p = ts_alloc_resident(need);
	if (!p)
		return -E_NOMEM;
	ts_free(sc->mem);
	sc->mem = p;
	sc->bytes = need;
	return 0;
}

int tok_encode(const struct tok *t, const char *utf8, size_t n, int32_t *out, int cap, struct tok_scratch *sc)
{
	const uint8_t *s = (const uint8_t *)utf8;
	size_t nsym = (t->nfc ? NFC_MAX_GROWTH * n : n) + 2, ncp = t->nfc ? 2 * n + 8 : 0;
	size_t need = tok_scratch_bytes(t, n);
	if (sc->bytes < need) {
		void *p = ts_realloc(sc->mem, need);
		if (!p)
			return -E_NOMEM;
		sc->mem = p;
		sc->bytes = need;
	}
	struct enc en = {.t = t, .out = out, .cap = cap};
	en.s = sc->mem;
	en.h = (struct hent *)(en.s + nsym);
	en.cps = (uint32_t *)(en.h + 3 * nsym);
	en.cps_tmp = en.cps + ncp;
	en.cps_cap = ncp;
	en.cps_cc = (uint8_t *)(en.cps_tmp + ncp);
	en.norm = en.cps_cc + ncp;

	size_t seg = 0;
	for (size_t i = 0; i <= n; i++) {
		const struct tok_added *hit = i < n && t->trie_first[s[i]] >= 0 ? added_at(t, s + i, n - i) : NULL;
		if (!hit && i < n)
			continue;
		if (i > seg) {
			if (t->model == TOK_SP_BPE)
				encode_sp(&en, s + seg, i - seg);
			else if (t->nfc && !nfc_stable(s + seg, i - seg))
				encode_bytelevel(&en, en.norm,
				                 nfc(s + seg, i - seg, en.cps, en.cps_tmp, en.cps_cc, en.cps_cap, en.norm));
			else
				encode_bytelevel(&en, s + seg, i - seg);
		}
		if (hit) {
			emit(&en, hit->id);
			i += hit->len - 1;
			seg = i + 1;
		}
	}
	return en.k;
}

/* ---------------------------------------------------------------- decode */

struct sink {
	char *o;
	size_t cap, n;
};

static void put(struct sink *k, const void *p, size_t len)
{
	for (size_t i = 0; i < len; i++, k->n++)
		if (k->n < k->cap)
			k->o[k->n] = ((const char *)p)[i];
}

static void put_char(struct tok_stream *st, struct sink *k, const uint8_t *p, size_t len)
{
	if (!st->started) {
		st->started = 1;
		if (st->t->model == TOK_SP_BPE && len == 1 && p[0] == ' ')
			return;
	}
	put(k, p, len);
}

static void drain(struct tok_stream *st, struct sink *k, int final)
{
	while (st->n_pend > 0) {
		int r = u8_step(st->pend, (size_t)st->n_pend), used;
		if (r > 0) {
			put_char(st, k, st->pend, (size_t)r);
			used = r;
		} else if (r < 0 || final) {
			put_char(st, k, (const uint8_t *)"\xef\xbf\xbd", 3);
			used = r < 0 ? -r : st->n_pend;
		} else
			return;
		memmove(st->pend, st->pend + used, (size_t)(st->n_pend - used));
		st->n_pend -= used;
	}
}

static void push_id(struct tok_stream *st, int32_t id, struct sink *k)
{
	const struct tok *t = st->t;
	if (id < 0 || id >= t->n_ids || !t->kind[id] || (st->skip_special && t->kind[id] == 3))
		return;
	const uint8_t *p = (const uint8_t *)t->strs + t->dec_off[2 * id];
	if (st->n_pend == 0 && st->started && t->whole[id]) { /* most tokens */
		put(k, p, t->dec_off[2 * id + 1]);
		return;
	}
	for (uint32_t i = 0; i < t->dec_off[2 * id + 1]; i++) {
		st->pend[st->n_pend++] = p[i];
		drain(st, k, 0);
	}
}

void tok_stream_init(struct tok_stream *s, const struct tok *t)
{
	memset(s, 0, sizeof *s);
	s->t = t;
}

size_t tok_stream_bound(const struct tok *t)
{
	return 3 * ((size_t)t->max_dec + 4) + 1;
}

size_t tok_stream_push(struct tok_stream *s, int32_t id, char *out)
{
	struct sink k = {out, SIZE_MAX, 0};
	push_id(s, id, &k);
	return k.n;
}

size_t tok_stream_flush(struct tok_stream *s, char *out)
{
	struct sink k = {out, SIZE_MAX, 0};
	drain(s, &k, 1);
	return k.n;
}

static size_t decode_all(struct tok_stream *st, const int32_t *ids, int n, char *out, size_t cap)
{
	struct sink k = {out, cap, 0};
	for (int i = 0; i < n; i++)
		push_id(st, ids[i], &k);
	drain(st, &k, 1);
	if (cap > 0)
		out[k.n < cap ? k.n : cap - 1] = 0;
	return k.n;
}

size_t tok_decode(const struct tok *t, const int32_t *ids, int n, char *out, size_t cap)
{
	struct tok_stream st;
	tok_stream_init(&st, t);
	return decode_all(&st, ids, n, out, cap);
}

size_t tok_decode_gen(const struct tok *t, const int32_t *ids, int n, char *out, size_t cap)
{
	struct tok_stream st;
	tok_stream_init(&st, t);
	st.started = 1;
	st.skip_special = 1;
	return decode_all(&st, ids, n, out, cap);
}
