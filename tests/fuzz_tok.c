/* fuzz_tok: libFuzzer target for the tokenizer: tok_parse of a tokenizer.json
 * (and tokenizer_config.json), then tok_encode, tok_decode, the streaming
 * detokenizer and tok_chat_render on whatever it accepted.
 *
 * Input: four sections, split at the first three FUZZ_TOK_SEP ("\xffTOK\xff";
 * 0xff never occurs in UTF-8, so never inside a JSON document):
 *
 *   tokenizer.json SEP tokenizer_config.json SEP text SEP ids
 *
 * A missing or empty config section means no tokenizer_config.json; a missing
 * text or ids section is empty.
 *   text  encoded as it is; also split at 0x1e (ASCII RS) into at most
 *         FUZZ_TOK_MSGS chat messages, each with an optional role prefix
 *         "system:", "user:", "assistant:", "tool:" or "tools:" (none: user for an even
 *         message, assistant for an odd one).
 *   ids   2 bytes each, little-endian: v < 0xfff0 is id v % (n_ids + 2) (the
 *         last two out of range); v >= 0xfff0 is an edge case from
 *         fuzz_tok_edge (negative, INT32_MAX, n_ids, a UTF-8 byte's id, ...).
 *
 * Checks (abort on failure; ASAN and UBSAN catch the rest):
 *   parse   refused: a negative code, a message naming the file, t zeroed.
 *           Accepted: the tables agree (ids in range, added tokens sorted by
 *           first byte and indexed by added_first, max_dec, bos/eos, byte ids).
 *   encode  (byte-level: with each pre-tokenizer in turn, whichever the
 *           tokenizer.json names, so every hand-written matcher sees every
 *           input) every id in range and present; at most n ids for n bytes
 *           (byte-level), 3n with NFC, 4n + 3 (SentencePiece); the same ids
 *           again with a fresh scratch, and the same count and prefix into a
 *           smaller cap. decode(encode(s)) == s where tok.h promises it: s
 *           valid UTF-8 and every id that encode can emit decoding to the
 *           bytes it stands for (fuzz_tok_clean: a mutation can give an added
 *           token a vocab token's id), and for byte-level with NFC, no code
 *           point >= U+0300 (NFC may change those); for SentencePiece, byte
 *           fallback on, a "▁" token, and s spelling no added token (each
 *           piece between added tokens gets its own "▁"), no "▁" and no "<0x".
 *           With NFC otherwise: d = decode(encode(s)) is NFC(s), so (when
 *           neither spells an added token) d encodes to the same ids and
 *           decodes to itself.
 *   decode  valid UTF-8, NUL-terminated, at most 3 bytes per token byte; a
 *           truncated decode reports the same length and is a prefix;
 *           unknown ids change nothing; streaming (each push whole UTF-8
 *           within tok_stream_bound) concatenates to tok_decode, and with
 *           skip_special to tok_decode of the ids without the special ones.
 *   chat    tok_chat_render fits tok_chat_bound; it fails exactly when the
 *           format cannot express the conversation (no format; [INST] turns
 *           not alternating; tool definitions outside ChatML); an open
 *           conversation ends with the assistant's header (DeepSeek-V3:
 *           <｜tool▁outputs▁end｜> instead when tool results are the last
 *           turn); valid UTF-8 when the messages and BOS/EOS text are; the
 *           rendered text, and each message's text, go through the encode
 *           checks.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz_tok.c src/tok.c src/tok_chat.c \
 *         src/tok_unicode.c src/json.c src/base.c
 *
 * tests/t_fuzz.c #includes this file with TS_FUZZ_NO_MAIN defined and calls
 * fuzz_tok_one directly (no libFuzzer), over seeds and mutations.
 */
#include "tok.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define FUZZ_TOK_SEP     "\xffTOK\xff"
#define FUZZ_TOK_SEP_LEN 5
#define FUZZ_TOK_MSGS    8

/* ---------------------------------------------------------------- helpers */

/* First occurrence of needle[0..k) in s[0..n), or NULL. */
static const char *fuzz_tok_find(const char *s, size_t n, const char *needle, size_t k)
{
	for (size_t i = 0; k && i + k <= n; i++)
		if (memcmp(s + i, needle, k) == 0)
			return s + i;
	return NULL;
}

/* A heap copy of exactly n bytes (at least 1), so ASAN sees an overread. */
static char *fuzz_tok_dup(const void *p, size_t n)
{
	char *c = malloc(n ? n : 1);
	FUZZ_CHECK(c != NULL);
	if (n)
		memcpy(c, p, n);
	return c;
}

static const char *fuzz_tok_key(const struct tok *t, int32_t id, uint32_t *len)
{
	*len = t->key_off[id + 1] - t->key_off[id];
	return t->strs + t->key_off[id];
}

static const char *fuzz_tok_dec(const struct tok *t, int32_t id, uint32_t *len)
{
	*len = t->dec_off[2 * id + 1];
	return t->strs + t->dec_off[2 * id];
}

static int fuzz_tok_known(const struct tok *t, int32_t id)
{
	return id >= 0 && id < t->n_ids && t->kind[id] != 0;
}

/* ---------------------------------------------------------------- parse */

/* The loaded tables agree with each other. */
static void fuzz_tok_tables(const struct tok *t)
{
	FUZZ_CHECK(t->n_ids >= 0 && t->strs && t->key_off && t->dec_off && t->kind && t->vh && t->mh);
	FUZZ_CHECK(t->model == TOK_BYTE_BPE || t->model == TOK_SP_BPE);
	FUZZ_CHECK(t->model == TOK_SP_BPE
	               ? t->pre == TOK_PRE_NONE && !t->nfc
	               : t->pre == TOK_PRE_LLAMA3 || t->pre == TOK_PRE_QWEN2 || t->pre == TOK_PRE_DEEPSEEK3);
	FUZZ_CHECK(t->unk_id >= -1 && t->unk_id < t->n_ids);
	FUZZ_CHECK(t->bos_id == -1 || fuzz_tok_known(t, t->bos_id));
	FUZZ_CHECK(t->eos_id == -1 || fuzz_tok_known(t, t->eos_id));
	FUZZ_CHECK(!t->add_bos || t->bos_id >= 0);
	FUZZ_CHECK((unsigned)t->chat < TOK_CHAT_N && (!t->chat_think || t->chat == TOK_CHAT_CHATML));
	const char *name = tok_chat_name(t->chat);
	FUZZ_CHECK(name && strcmp(name, "?") != 0);
	FUZZ_CHECK(t->key_off[0] == 0);
	for (int32_t id = 0; id < t->n_ids; id++) {
		uint32_t dl;
		FUZZ_CHECK(t->key_off[id + 1] >= t->key_off[id] && t->kind[id] <= 4);
		fuzz_tok_dec(t, id, &dl);
		FUZZ_CHECK((int)dl <= t->max_dec);
		if (!t->kind[id])
			FUZZ_CHECK(t->key_off[id + 1] == t->key_off[id]);
	}
	for (uint32_t h = 0; h <= t->vh_mask; h++)
		FUZZ_CHECK(t->vh[h] >= -1 && t->vh[h] < t->n_ids && (t->vh[h] < 0 || t->kind[t->vh[h]]));
	for (int b = 0; b < 256; b++) {
		int32_t id = t->byte_id[b];
		FUZZ_CHECK(id >= -1 && id < t->n_ids);
		if (t->model == TOK_BYTE_BPE || t->byte_fallback)
			FUZZ_CHECK(id >= 0 && t->kind[id]);
		if (id >= 0 && t->kind[id] == 4) {
			uint32_t dl;
			const char *d = fuzz_tok_dec(t, id, &dl);
			FUZZ_CHECK(dl == 1 && (uint8_t)d[0] == b);
		}
	}
	FUZZ_CHECK(t->n_added >= 0 && t->added_first[0] == 0 && t->added_first[256] == t->n_added);
	for (int b = 0; b < 256; b++) {
		FUZZ_CHECK(t->added_first[b] <= t->added_first[b + 1]);
		for (int i = t->added_first[b]; i < t->added_first[b + 1]; i++) {
			const struct tok_added *a = &t->added[i];
			FUZZ_CHECK(a->len > 0 && (uint8_t)t->strs[a->off] == b && fuzz_tok_known(t, a->id));
			FUZZ_CHECK(fuzz_utf8_ok(t->strs + a->off, a->len));
			if (i > t->added_first[b]) /* longest first */
				FUZZ_CHECK(a[-1].len >= a->len);
		}
	}
}

/* 1 when every id that tok_encode can emit decodes to exactly the bytes it
 * stands for: ids found through the vocab hash (pieces, merges), byte ids and
 * added ids. A tokenizer.json may legally break this (an added token reusing a
 * vocab id, two added tokens with one id); then decode(encode(s)) == s need not
 * hold. */
static int fuzz_tok_clean(const struct tok *t)
{
	for (uint32_t h = 0; h <= t->vh_mask; h++) {
		int32_t id = t->vh[h];
		uint32_t kl, dl;
		if (id < 0)
			continue;
		const char *k = fuzz_tok_key(t, id, &kl), *d = fuzz_tok_dec(t, id, &dl);
		if (t->model == TOK_BYTE_BPE) {
			if (kl != dl || memcmp(k, d, kl) != 0)
				return 0;
		} else if (t->kind[id] == 4) {
			if (dl != 1)
				return 0;
		} else { /* "▁" decodes as a space */
			uint32_t j = 0;
			for (uint32_t i = 0; i < kl; i++, j++) {
				char c = k[i];
				if (i + 2 < kl && memcmp(k + i, "\xe2\x96\x81", 3) == 0) {
					c = ' ';
					i += 2;
				}
				if (j >= dl || d[j] != c)
					return 0;
			}
			if (j != dl)
				return 0;
		}
	}
	for (int b = 0; b < 256; b++) {
		uint32_t dl;
		if (t->byte_id[b] < 0)
			continue;
		const char *d = fuzz_tok_dec(t, t->byte_id[b], &dl);
		if (dl != 1 || (uint8_t)d[0] != b)
			return 0;
	}
	for (int i = 0; i < t->n_added; i++) {
		uint32_t dl;
		const char *d = fuzz_tok_dec(t, t->added[i].id, &dl);
		if (dl != t->added[i].len || memcmp(d, t->strs + t->added[i].off, dl) != 0)
			return 0;
	}
	return 1;
}

/* SentencePiece: "▁" is a vocab token (else a space encodes as byte fallback
 * tokens that decode to "▁"). */
static int fuzz_tok_has_space(const struct tok *t)
{
	for (uint32_t h = 0; h <= t->vh_mask; h++) {
		uint32_t kl;
		const char *k = t->vh[h] >= 0 ? fuzz_tok_key(t, t->vh[h], &kl) : NULL;
		if (k && kl == 3 && memcmp(k, "\xe2\x96\x81", 3) == 0)
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- decode */

/* tok_decode of ids[0..n) into a malloc'd string; checks the sizing contract. */
static char *fuzz_tok_decode(const struct tok *t, const int32_t *ids, int n, size_t *len)
{
	char *probe = malloc(1);
	FUZZ_CHECK(probe != NULL);
	size_t need = tok_decode(t, ids, n, probe, 0), bytes = 0;
	free(probe);
	for (int i = 0; i < n; i++)
		if (fuzz_tok_known(t, ids[i]))
			bytes += t->dec_off[2 * ids[i] + 1];
	FUZZ_CHECK(need <= 3 * bytes);
	char *out = malloc(need + 1);
	FUZZ_CHECK(out != NULL);
	FUZZ_CHECK(tok_decode(t, ids, n, out, need + 1) == need && out[need] == '\0');
	FUZZ_CHECK(fuzz_utf8_ok(out, need));
	if (need > 0) { /* truncated: the same length, a prefix, NUL-terminated */
		size_t cap = need / 2 + 1;
		char *part = malloc(cap);
		FUZZ_CHECK(part != NULL);
		FUZZ_CHECK(tok_decode(t, ids, n, part, cap) == need && part[cap - 1] == '\0');
		FUZZ_CHECK(memcmp(part, out, cap - 1) == 0);
		free(part);
	}
	*len = need;
	return out;
}

/* The streaming detokenizer over ids[0..n) equals want[0..wn). */
static void fuzz_tok_stream(const struct tok *t, const int32_t *ids, int n, int skip_special, const char *want,
                            size_t wn)
{
	struct tok_stream st;
	size_t bound = tok_stream_bound(t), got = 0;
	char *chunk = malloc(bound), *all = malloc(wn + 1);
	FUZZ_CHECK(chunk && all);
	tok_stream_init(&st, t);
	st.skip_special = skip_special;
	for (int i = 0; i <= n; i++) {
		size_t k = i < n ? tok_stream_push(&st, ids[i], chunk) : tok_stream_flush(&st, chunk);
		FUZZ_CHECK(k <= bound && k <= wn - got);
		FUZZ_CHECK(fuzz_utf8_ok(chunk, k)); /* only whole characters */
		memcpy(all + got, chunk, k);
		got += k;
	}
	FUZZ_CHECK(got == wn && memcmp(all, want, wn) == 0);
	FUZZ_CHECK(st.n_pend == 0 && tok_stream_flush(&st, chunk) == 0);
	free(chunk);
	free(all);
}

/* Every decode check on ids[0..n). */
static void fuzz_tok_decode_all(const struct tok *t, const int32_t *ids, int n)
{
	size_t len, len2;
	char *full = fuzz_tok_decode(t, ids, n, &len);
	fuzz_tok_stream(t, ids, n, 0, full, len);

	int32_t *keep = malloc(sizeof(int32_t) * (size_t)n + 1);
	FUZZ_CHECK(keep != NULL);
	int m = 0; /* unknown ids decode to nothing, and hold no pending bytes back */
	for (int i = 0; i < n; i++)
		if (fuzz_tok_known(t, ids[i]))
			keep[m++] = ids[i];
	char *known = fuzz_tok_decode(t, keep, m, &len2);
	FUZZ_CHECK(len2 == len && memcmp(known, full, len) == 0);
	free(known);
	m = 0; /* skip_special: as if the special ids were not there */
	for (int i = 0; i < n; i++)
		if (!fuzz_tok_known(t, ids[i]) || t->kind[ids[i]] != 3)
			keep[m++] = ids[i];
	char *plain = fuzz_tok_decode(t, keep, m, &len2);
	fuzz_tok_stream(t, ids, n, 1, plain, len2);
	free(plain);
	free(keep);
	free(full);
}

/* ---------------------------------------------------------------- encode */

static int fuzz_tok_spells_added(const struct tok *t, const char *s, size_t n)
{
	for (int i = 0; i < t->n_added; i++)
		if (fuzz_tok_find(s, n, t->strs + t->added[i].off, t->added[i].len))
			return 1;
	return 0;
}

/* decode(encode(s)) == s is promised for s (see the header comment). */
static int fuzz_tok_round_trips(const struct tok *t, int clean, const char *s, size_t n)
{
	if (!clean || !fuzz_utf8_ok(s, n))
		return 0;
	if (t->model == TOK_BYTE_BPE) {
		for (size_t i = 0; t->nfc && i < n; i++)
			if ((uint8_t)s[i] >= 0xcc) /* a lead byte of U+0300 or above */
				return 0;
		return 1;
	}
	return t->byte_fallback && fuzz_tok_has_space(t) && !fuzz_tok_find(s, n, "\xe2\x96\x81", 3) &&
	       !fuzz_tok_find(s, n, "<0x", 3) && !fuzz_tok_spells_added(t, s, n);
}

/* Byte-level with NFC, where s's own round trip is not promised: d =
 * decode(encode(s)) is then NFC(s), which NFC leaves alone, so d encodes to
 * the same ids and decodes to itself. Only for a clean tokenizer, s valid
 * UTF-8, and neither s nor d spelling an added token (they split the text). */
static void fuzz_tok_nfc(const struct tok *t, const char *s, size_t n, const char *d, size_t dn, const int32_t *ids,
                         int k)
{
	if (!fuzz_utf8_ok(s, n) || fuzz_tok_spells_added(t, s, n) || fuzz_tok_spells_added(t, d, dn))
		return;
	struct tok_scratch sc = {0};
	char *exact = fuzz_tok_dup(d, dn);
	int32_t *again = malloc(sizeof(int32_t) * (3 * dn + 1));
	FUZZ_CHECK(again != NULL);
	FUZZ_CHECK(tok_encode(t, exact, dn, again, (int)(3 * dn + 1), &sc) == k);
	FUZZ_CHECK(memcmp(again, ids, sizeof(int32_t) * (size_t)k) == 0);
	size_t dn2;
	char *d2 = fuzz_tok_decode(t, again, k, &dn2);
	FUZZ_CHECK(dn2 == dn && memcmp(d2, d, dn) == 0);
	free(d2);
	free(again);
	free(exact);
	tok_scratch_free(&sc);
}

/* Every encode check on s[0..n) (an exactly-sized heap copy). */
static void fuzz_tok_encode(const struct tok *t, int clean, const char *s, size_t n)
{
	struct tok_scratch sc = {0}, sc2 = {0};
	size_t most = t->model == TOK_SP_BPE ? 4 * n + 3 : t->nfc ? 3 * n : n;
	int cap = (int)most + 1;
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap), *again = malloc(sizeof(int32_t) * (size_t)cap);
	FUZZ_CHECK(ids && again);
	int k = tok_encode(t, s, n, ids, cap, &sc);
	FUZZ_CHECK(k >= 0 && (size_t)k <= most);
	for (int i = 0; i < k; i++)
		FUZZ_CHECK(fuzz_tok_known(t, ids[i]));
	FUZZ_CHECK(tok_encode(t, s, n, again, cap, &sc2) == k && memcmp(again, ids, sizeof(int32_t) * (size_t)k) == 0);
	if (k > 0) { /* a smaller out: the full count, the first ids */
		int small = k / 2;
		int32_t *part = malloc(sizeof(int32_t) * (size_t)small + 1);
		FUZZ_CHECK(part != NULL);
		FUZZ_CHECK(tok_encode(t, s, n, part, small, &sc) == k);
		FUZZ_CHECK(memcmp(part, ids, sizeof(int32_t) * (size_t)small) == 0);
		free(part);
	}
	size_t dn;
	char *d = fuzz_tok_decode(t, ids, k, &dn);
	if (fuzz_tok_round_trips(t, clean, s, n))
		FUZZ_CHECK(dn == n && memcmp(d, s, n) == 0);
	else if (clean && t->nfc)
		fuzz_tok_nfc(t, s, n, d, dn, ids, k);
	free(d);
	free(ids);
	free(again);
	tok_scratch_free(&sc);
	tok_scratch_free(&sc2);
}

/* ---------------------------------------------------------------- chat */

static const char *const fuzz_tok_roles[TOK_ROLE_N] = {"system:", "user:", "assistant:", "tool:", "tools:"};

/* text split into messages (see the header comment); returns how many. */
static int fuzz_tok_messages(const char *s, size_t n, struct tok_msg *m)
{
	int k = 0;
	for (size_t i = 0;; k++) {
		size_t j = i;
		while (j < n && !(s[j] == 0x1e && k + 1 < FUZZ_TOK_MSGS))
			j++;
		m[k] = (struct tok_msg){k % 2 ? TOK_ROLE_ASSISTANT : TOK_ROLE_USER, s + i, j - i};
		for (uint32_t r = 0; r < TOK_ROLE_N; r++) {
			size_t l = strlen(fuzz_tok_roles[r]);
			if (m[k].len >= l && memcmp(m[k].text, fuzz_tok_roles[r], l) == 0) {
				m[k] = (struct tok_msg){r, m[k].text + l, m[k].len - l};
				break;
			}
		}
		if (j >= n)
			return k + 1;
		i = j + 1;
	}
}

/* The [INST] formats: one optional system message, then user, assistant, ... */
static int fuzz_tok_alternates(const struct tok_msg *m, int n)
{
	int first = n > 0 && m[0].role == TOK_ROLE_SYSTEM;
	for (int i = first; i < n; i++)
		if (m[i].role != ((i - first) % 2 ? TOK_ROLE_ASSISTANT : TOK_ROLE_USER))
			return 0;
	return 1;
}

static int fuzz_tok_ends(const char *s, size_t n, const char *tail)
{
	size_t k = strlen(tail);
	return n >= k && memcmp(s + n - k, tail, k) == 0;
}

static int fuzz_tok_id_utf8(const struct tok *t, int32_t id)
{
	uint32_t dl;
	if (id < 0)
		return 1;
	const char *d = fuzz_tok_dec(t, id, &dl);
	return fuzz_utf8_ok(d, dl);
}

static void fuzz_tok_chat(const struct tok *t, int clean, const char *s, size_t n)
{
	struct tok_msg m[FUZZ_TOK_MSGS];
	struct ts_err e = {0};
	int nm = fuzz_tok_messages(s, n, m), utf8 = fuzz_tok_id_utf8(t, t->bos_id) && fuzz_tok_id_utf8(t, t->eos_id);
	for (int i = 0; i < nm; i++) { /* each message's text alone: most spell no added token */
		utf8 = utf8 && fuzz_utf8_ok(m[i].text, m[i].len);
		char *exact = fuzz_tok_dup(m[i].text, m[i].len);
		fuzz_tok_encode(t, clean, exact, m[i].len);
		free(exact);
	}
	size_t bound = tok_chat_bound(t, m, nm);
	char *out = malloc(bound);
	FUZZ_CHECK(out != NULL);
	long r = tok_chat_render(t, m, nm, out, bound, &e);
	int nt = 0, stray = 0; /* leading tools messages; tools messages after others */
	while (nt < nm && m[nt].role == TOK_ROLE_TOOLS)
		nt++;
	for (int i = nt; i < nm; i++)
		stray |= m[i].role == TOK_ROLE_TOOLS;
	if (t->chat == TOK_CHAT_NONE) {
		FUZZ_CHECK(r == -E_UNSUPPORTED && e.msg[0]);
	} else if (stray || (nt && t->chat != TOK_CHAT_CHATML) || nt == nm) {
		FUZZ_CHECK(r == -E_INVAL && strstr(e.msg, "messages") != NULL);
	} else if ((t->chat == TOK_CHAT_LLAMA2 || t->chat == TOK_CHAT_MISTRAL) && !fuzz_tok_alternates(m, nm)) {
		FUZZ_CHECK(r == -E_INVAL && strstr(e.msg, "messages[") != NULL);
	} else if (nt && r < 0) { /* tools that are not a JSON array */
		FUZZ_CHECK(r == -E_INVAL && strstr(e.msg, "tools") != NULL);
	} else {
		FUZZ_CHECK(r >= 0 && (size_t)r <= bound);
		FUZZ_CHECK(!utf8 || fuzz_utf8_ok(out, (size_t)r));
		int open = m[nm - 1].role != TOK_ROLE_ASSISTANT; /* [INST]: a lone system message renders no turn */
		if (open && t->chat == TOK_CHAT_CHATML)
			FUZZ_CHECK(fuzz_tok_ends(out, (size_t)r, "<|im_start|>assistant\n"));
		if (open && t->chat == TOK_CHAT_LLAMA3)
			FUZZ_CHECK(fuzz_tok_ends(out, (size_t)r, "<|start_header_id|>assistant<|end_header_id|>\n\n"));
		if (open && t->chat == TOK_CHAT_DEEPSEEK3) { /* the last turn: tool results, or not */
			int last = nm - 1;
			while (last > 0 && m[last].role == TOK_ROLE_SYSTEM)
				last--;
			FUZZ_CHECK(fuzz_tok_ends(out, (size_t)r,
			                         m[last].role == TOK_ROLE_TOOL ? "<｜tool▁outputs▁end｜>"
			                                                       : "<｜Assistant｜>"));
		}
		if (m[nm - 1].role == TOK_ROLE_USER && (t->chat == TOK_CHAT_LLAMA2 || t->chat == TOK_CHAT_MISTRAL))
			FUZZ_CHECK(fuzz_tok_ends(out, (size_t)r, " [/INST]"));
		char *exact = fuzz_tok_dup(out, (size_t)r);
		fuzz_tok_encode(t, clean, exact, (size_t)r);
		free(exact);
	}
	if (t->chat != TOK_CHAT_NONE)
		FUZZ_CHECK(tok_chat_render(t, m, 0, out, bound, &e) == -E_INVAL);
	free(out);
}

/* ---------------------------------------------------------------- the input */

/* ids section value v (>= 0xfff0) -> an edge-case id. */
static int32_t fuzz_tok_edge(const struct tok *t, unsigned v)
{
	const int32_t edge[16] = {
	    -1,
	    -2,
	    INT32_MIN,
	    INT32_MAX,
	    t->n_ids,
	    t->n_ids - 1,
	    t->bos_id,
	    t->eos_id,
	    t->byte_id[0xe2], /* lead of a 3-byte sequence */
	    t->byte_id[0x82], /* continuation */
	    t->byte_id[0xf0], /* lead of a 4-byte sequence */
	    t->byte_id[0x9f],
	    t->byte_id[0xff], /* never valid */
	    t->byte_id[' '],
	    t->n_added ? t->added[0].id : 0,
	    t->unk_id,
	};
	return edge[(v - 0xfff0) & 15];
}

/* Returns 1 when tok_parse accepted the input's tokenizer, 0 otherwise. */
static int fuzz_tok_one(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *part[4] = {p, NULL, NULL, NULL};
	size_t len[4] = {size, 0, 0, 0};
	for (int i = 1; i < 4 && part[i - 1]; i++) {
		const char *sep = fuzz_tok_find(part[i - 1], len[i - 1], FUZZ_TOK_SEP, FUZZ_TOK_SEP_LEN);
		if (!sep)
			break;
		len[i - 1] = (size_t)(sep - part[i - 1]);
		part[i] = sep + FUZZ_TOK_SEP_LEN;
		len[i] = (size_t)(end - part[i]);
	}
	char *json = fuzz_tok_dup(part[0], len[0]), *cfg = len[1] ? fuzz_tok_dup(part[1], len[1]) : NULL;
	char *text = fuzz_tok_dup(part[2], len[2]);

	struct tok t;
	struct ts_err e = {0};
	int rc = tok_parse(&t, "fuzz", json, len[0], cfg, len[1], &e);
	free(json);
	free(cfg);
	if (rc) {
		FUZZ_CHECK(rc == -E_FORMAT || rc == -E_UNSUPPORTED || rc == -E_NOMEM);
		FUZZ_CHECK(strncmp(e.msg, "fuzz/tokenizer", 14) == 0);
		FUZZ_CHECK(t.strs == NULL && t.kind == NULL && t.n_ids == 0);
		free(text);
		return 0;
	}
	fuzz_tok_tables(&t);
	int clean = fuzz_tok_clean(&t);

	fuzz_tok_encode(&t, clean, text, len[2]);
	for (int pre = TOK_PRE_LLAMA3; t.model == TOK_BYTE_BPE && pre <= TOK_PRE_DEEPSEEK3; pre++) {
		struct tok other = t; /* the same read-only tables, another matcher */
		other.pre = (enum tok_pre)pre;
		if (pre != (int)t.pre)
			fuzz_tok_encode(&other, clean, text, len[2]);
	}
	fuzz_tok_chat(&t, clean, text, len[2]);

	int n = (int)(len[3] / 2);
	int32_t *ids = malloc(sizeof(int32_t) * (size_t)n + 1);
	FUZZ_CHECK(ids != NULL);
	for (int i = 0; i < n; i++) {
		unsigned v = (uint8_t)part[3][2 * i] | (unsigned)(uint8_t)part[3][2 * i + 1] << 8;
		ids[i] = v >= 0xfff0 ? fuzz_tok_edge(&t, v) : (int32_t)(v % ((unsigned)t.n_ids + 2));
	}
	fuzz_tok_decode_all(&t, ids, n);
	free(ids);
	free(text);
	tok_free(&t);
	return 1;
}

#ifndef TS_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_tok_one(data, size);
	return 0;
}
#endif
