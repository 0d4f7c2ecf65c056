/* t_stext: src/stext.c's generated-text state against a plain reference, on
 * the tokenizer gen_ckpt --tokenizer writes for llama3-mini. For random id
 * streams and stop sequences taken from (and around) each stream's own text:
 * the request stops at the token that completes the earliest stop sequence,
 * the text released is exactly the decoded text before it, no release ever
 * holds a byte of a stop sequence that then completes, and without a stop
 * everything comes out by stext_finish (an incomplete character as U+FFFD,
 * as tok_decode with special tokens skipped). */
#include "stext.h"
#include "t.h"

#define DIR "build/tests/ckpt/stext-tok"

static uint64_t rs = 42;
static uint32_t rnd(uint32_t n)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rs >> 33) % n;
}


/* Prompts that give more ids than bytes (NFC expands them) are tokenized
 * whole, whatever capacity earlier prompts left: stext_prompt sizes its ids
 * by tok_encode_bound. Before, "a" + U+FB2C x 340 (1021 bytes, more than 1700
 * ids under Qwen3's NFC) came back E_INTERNAL. */
static void check_expanding(void)
{
	struct tok t;
	struct ts_err e = {0};
	T_CHECK(system("rm -rf " DIR "q && mkdir -p " DIR "q && build/tests/gen_ckpt --preset qwen3-mini --out " DIR
		       "q --tokenizer --no-weights > /dev/null") == 0,
		"gen_ckpt qwen3-mini --tokenizer");
	if (tok_load(&t, DIR "q", &e)) {
		T_CHECK(0, "tok_load: %s", e.msg);
		return;
	}
	T_CHECK(t.nfc, "qwen3-mini's tokenizer normalizes with NFC");
	static const struct {
		const char *head, *unit;
		int reps;
	} p[] = {
	    {"a", "\xef\xac\xac", 340},           /* U+FB2C: 3 bytes -> U+05E9 U+05BC U+05C1, 6 bytes */
	    {"a", "\xef\xac\xac", 20000},         /* the same at 60 KB */
	    {"", "\xf0\x9d\x85\xa0", 5000},      /* U+1D160: 4 bytes -> 12 */
	    {"", "\xce\x90", 5000},                /* U+0390: 2 bytes -> 6, recomposed */
	    {"x", "\xcc\x81\xcc\xa3", 20000},    /* a long run of marks, reordered */
	    {"", "\xe1\x84\x80\xe1\x85\xa1", 5000}, /* Hangul L V: composed, fewer ids */
	};
	static char text[1 << 18];
	static int32_t want[3 << 18];
	struct tok_scratch sc = {0};
	struct stext_enc reused = {0};
	int more = 0;
	for (size_t i = 0; i < sizeof p / sizeof *p; i++) {
		size_t n = strlen(p[i].head);
		memcpy(text, p[i].head, n);
		for (int r = 0; r < p[i].reps; r++) {
			memcpy(text + n, p[i].unit, strlen(p[i].unit));
			n += strlen(p[i].unit);
		}
		int m = tok_encode(&t, text, n, want, (int)(sizeof want / sizeof *want), &sc);
		more += m > (int)n;
		struct proto_submit s = {.flags = PROTO_SUBMIT_TEXT_PROMPT, .prompt_text = {text, (uint32_t)n}};
		/* a fresh state, and one that a short prompt sized first */
		for (int k = 0; k < 2; k++) {
			struct stext_enc fresh = {0}, *w = k ? &reused : &fresh;
			if (k) {
				struct proto_submit short_p = {.flags = PROTO_SUBMIT_TEXT_PROMPT, .prompt_text = {"hi", 2}};
				int sn;
				stext_prompt(&t, w, &short_p, &sn, &e);
			}
			int got = -1;
			e.msg[0] = 0;
			int rc = stext_prompt(&t, w, &s, &got, &e);
			T_CHECK(rc == 0 && got == m + (t.add_bos ? 1 : 0) && memcmp(w->ids + (t.add_bos ? 1 : 0), want, (size_t)m * 4) == 0,
				"prompt %zu (%zu bytes, %d ids, %s state): rc %d, %d ids %s", i, n, m, k ? "reused" : "fresh", rc,
				got, e.msg);
			if (!k)
				stext_enc_free(&fresh);
		}
	}
	T_CHECK(more >= 3, "%d prompts give more ids than bytes", more);
	stext_enc_free(&reused);
	tok_scratch_free(&sc);
	tok_free(&t);
}

int main(void)
{
	struct tok t;
	struct ts_err e = {0};
	T_CHECK(system("rm -rf " DIR " && mkdir -p " DIR " && build/tests/gen_ckpt --preset llama3-mini --out " DIR
		       " --tokenizer --no-weights > /dev/null") == 0,
		"gen_ckpt --tokenizer");
	if (tok_load(&t, DIR, &e)) {
		T_CHECK(0, "tok_load: %s", e.msg);
		return T_DONE();
	}
	static char full[1 << 16], got[1 << 16], pre[1 << 16];
	int bad = 0, stopped = 0, cases = 0, held_max = 0;
	for (int c = 0; c < 3000; c++) {
		int32_t ids[200];
		int n = 1 + (int)rnd(200);
		for (int i = 0; i < n; i++) /* mostly merged tokens, some bytes and special tokens */
			ids[i] = rnd(10) == 0 ? (int32_t)rnd(8) : (int32_t)rnd((uint32_t)t.n_ids);
		size_t nf = tok_decode_gen(&t, ids, n, full, sizeof(full)); /* the reference */
		/* up to 4 stop sequences: pieces of this text (often across tokens), or not in it */
		struct proto_str ss[4];
		char sb[4][16];
		uint32_t ns = rnd(5);
		for (uint32_t k = 0; k < ns; k++) {
			size_t l = 1 + rnd(6);
			if (nf > l && rnd(4)) {
				size_t a = rnd((uint32_t)(nf - l));
				memcpy(sb[k], full + a, l);
			} else {
				for (size_t i = 0; i < l; i++)
					sb[k][i] = (char)('A' + rnd(3));
			}
			/* keep it whole UTF-8: the server checks stop sequences are valid */
			ss[k] = (struct proto_str){sb[k], (uint32_t)l};
			int ok = 1;
			for (size_t i = 0; i < l; i++)
				ok &= (uint8_t)sb[k][i] < 0x80;
			if (!ok)
				ss[k] = (struct proto_str){"\xe2\x82\xac", 3};
		}
		/* the reference answer: the earliest occurrence in the decoded text
		 * as tokens arrive (text grows by whole characters per token) */
		int want_tok = -1;
		size_t want_cut = 0;
		for (int i = 1; i <= n && want_tok < 0; i++) {
			size_t np = 0;
			struct tok_stream st;
			tok_stream_init(&st, &t);
			st.started = 1, st.skip_special = 1;
			for (int j = 0; j < i; j++)
				np += tok_stream_push(&st, ids[j], pre + np);
			size_t best = SIZE_MAX;
			for (uint32_t k = 0; k < ns; k++) {
				char *h = memmem(pre, np, ss[k].s, ss[k].len);
				if (h && (size_t)(h - pre) < best)
					best = (size_t)(h - pre);
			}
			if (best != SIZE_MAX)
				want_tok = i - 1, want_cut = best;
		}
		struct stext *x = stext_new(&t, 1, ss, ns);
		size_t ng = 0;
		int stop_at = -1;
		for (int i = 0; i < n && stop_at < 0; i++) {
			const char *o;
			size_t k;
			if (stext_token(x, ids[i], &o, &k))
				stop_at = i;
			memcpy(got + ng, o, k);
			ng += k;
		}
		if (stop_at < 0) {
			const char *o;
			size_t k;
			stext_finish(x, &o, &k);
			memcpy(got + ng, o, k);
			ng += k;
		}
		stext_free(x);
		cases++;
		stopped += stop_at >= 0;
		int ok = stop_at == want_tok &&
			 (want_tok >= 0 ? ng == want_cut && memcmp(got, full, ng) == 0
					: ng == nf && memcmp(got, full, ng) == 0);
		if (!ok && bad++ < 3)
			T_CHECK(0, "case %d: stopped at %d (want %d), %zu bytes (want %zu)", c, stop_at, want_tok, ng,
				want_tok >= 0 ? want_cut : nf);
		if ((int)ns > held_max)
			held_max = (int)ns;
	}
	T_CHECK(bad == 0, "%d of %d streams differ from the reference", bad, cases);
	T_CHECK(stopped > cases / 4 && stopped < cases, "a fair mix: %d of %d streams stopped", stopped, cases);
	/* want_text 0: only the stop is watched, no text released */
	struct proto_str one = {"a", 1};
	struct stext *x = stext_new(&t, 0, &one, 1);
	const char *o;
	size_t k;
	int32_t id_a = -1;
	for (int32_t i = 0; i < t.n_ids && id_a < 0; i++)
		if (t.dec_off[2 * i + 1] == 1 && t.strs[t.dec_off[2 * i]] == 'a')
			id_a = i;
	T_CHECK(id_a >= 0 && stext_token(x, id_a, &o, &k) == 1 && k == 0, "want_text 0: stops, releases nothing");
	stext_free(x);
	tok_free(&t);
	check_expanding();
	return T_DONE();
}
