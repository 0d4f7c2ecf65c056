/* tok_chat.c: chat formats -- a conversation rendered as its model's HF chat
 * template would render it, for the few template families we load (tok.h).
 * Each format is a short function over the messages; the rules it follows
 * are those of the template text named beside it, checked by tests/t_chat.c
 * against a Jinja renderer running the real templates. */
#include <stdio.h>
#include <stdlib.h>

#include "json.h"
#include "tok.h"

const char *tok_chat_name(enum tok_chat c)
{
	static const char *const names[] = {"none", "chatml", "llama3", "llama2", "mistral", "deepseek3"};
	return (unsigned)c < TOK_CHAT_N ? names[c] : "?";
}

enum tok_chat tok_chat_detect(const char *tpl, int *think)
{
	*think = 0;
	if (!tpl)
		return TOK_CHAT_NONE;
	if (strstr(tpl, "<|im_start|>")) {
		*think = strstr(tpl, "</think>") && strstr(tpl, "reasoning_content");
		return TOK_CHAT_CHATML;
	}
	if (strstr(tpl, "<|start_header_id|>"))
		return TOK_CHAT_LLAMA3;
	if (strstr(tpl, "[INST]"))
		return strstr(tpl, "<<SYS>>") ? TOK_CHAT_LLAMA2 : TOK_CHAT_MISTRAL;
	/* DeepSeek-V3 (and V3-0324); not R1's or V3.1's, whose </think> rules we do not render */
	if (strstr(tpl, "<｜User｜>") && strstr(tpl, "<｜Assistant｜>") && !strstr(tpl, "</think>"))
		return TOK_CHAT_DEEPSEEK3;
	return TOK_CHAT_NONE;
}

size_t tok_chat_bound(const struct tok *t, const struct tok_msg *m, int n)
{
	size_t b = 640 + (size_t)t->max_dec; /* + the tools block's fixed text */
	for (int i = 0; i < n; i++)
		b += m[i].len * (m[i].role == TOK_ROLE_TOOLS ? 6 : 1) + 128 + 2 * (size_t)t->max_dec;
	return b; /* tools: tojson writes a control byte as 6 */
}

/* ---------------------------------------------------------------- text pieces */

struct out {
	char *p;
	size_t cap, n;
	struct tok_scratch *sc; /* memory for parsing tools messages, or NULL (they allocate) */
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->n + n <= o->cap)
		memcpy(o->p + o->n, s, n);
	o->n += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

struct span {
	const char *s;
	size_t n;
};

/* Python's str.isspace() set, which Jinja's trim and str.strip() use. Returns
 * the length of the whitespace character at s[0..n), or 0. */
static size_t ws_at(const char *s, size_t n)
{
	const uint8_t *u = (const uint8_t *)s;
	if (n >= 1 && ((u[0] >= 0x09 && u[0] <= 0x0d) || (u[0] >= 0x1c && u[0] <= 0x20)))
		return 1;
	if (n >= 2 && u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0))
		return 2;
	if (n >= 3 && u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80) /* U+1680 */
		return 3;
	if (n >= 3 && u[0] == 0xe2 && u[1] == 0x80 &&
	    (u[2] <= 0x8a || u[2] == 0xa8 || u[2] == 0xa9 || u[2] == 0xaf)) /* U+2000..200A, 2028, 2029, 202F */
		return 3;
	if (n >= 3 && u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f) /* U+205F */
		return 3;
	if (n >= 3 && u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80) /* U+3000 */
		return 3;
	return 0;
}

static struct span lstrip_ws(struct span a)
{
	size_t k;
	while (a.n && (k = ws_at(a.s, a.n)))
		a.s += k, a.n -= k;
	return a;
}

/* The whitespace character ending at s[n-1], if any: try each length. */
static struct span rstrip_ws(struct span a)
{
	for (;;) {
		size_t k = 0;
		for (size_t l = 1; l <= 3 && l <= a.n && !k; l++)
			if (ws_at(a.s + a.n - l, l) == l)
				k = l;
		if (!k)
			return a;
		a.n -= k;
	}
}

static struct span strip_ws(struct span a)
{
	return rstrip_ws(lstrip_ws(a));
}

static struct span lstrip_nl(struct span a)
{
	while (a.n && a.s[0] == '\n')
		a.s++, a.n--;
	return a;
}

static struct span rstrip_nl(struct span a)
{
	while (a.n && a.s[a.n - 1] == '\n')
		a.n--;
	return a;
}

static const char *find(struct span a, const char *needle, int last)
{
	size_t k = strlen(needle);
	const char *hit = NULL;
	for (size_t i = 0; i + k <= a.n; i++)
		if (memcmp(a.s + i, needle, k) == 0) {
			hit = a.s + i;
			if (!last)
				break;
		}
	return hit;
}

/* Strips trailing whitespace off what was written since at. */
static void out_rstrip(struct out *o, size_t at)
{
	if (o->n <= o->cap)
		o->n = at + rstrip_ws((struct span){o->p + at, o->n - at}).n;
}

static void put_span(struct out *o, struct span a)
{
	put(o, a.s, a.n);
}

static void put_token(struct out *o, const struct tok *t, int32_t id)
{
	if (id >= 0)
		put(o, t->strs + t->dec_off[2 * id], t->dec_off[2 * id + 1]);
}

static int user_is_tool_response(struct span c)
{
	static const char a[] = "<tool_response>", b[] = "</tool_response>";
	return c.n >= sizeof a - 1 && c.n >= sizeof b - 1 && memcmp(c.s, a, sizeof a - 1) == 0 &&
	       memcmp(c.s + c.n - (sizeof b - 1), b, sizeof b - 1) == 0;
}

/* ---------------------------------------------------------------- formats */

static const char *const role_name[TOK_ROLE_N] = {"system", "user", "assistant", "tool", "tools"};

/* ---------------------------------------------------------------- tojson */

/* A JSON string as Python's json.dumps(ensure_ascii=False) writes it. */
static void put_json_str(struct out *o, const char *s, size_t n)
{
	char u[8];
	puts_(o, "\"");
	for (size_t i = 0; i < n; i++) {
		const uint8_t c = (uint8_t)s[i];
		if (c == '"' || c == '\\') {
			char two[2] = {'\\', (char)c};
			put(o, two, 2);
		} else if (c >= 8 && c <= 13 && c != 11) { /* \b \t \n (\v has none) \f \r */
			char two[2] = {'\\', "btn?fr"[c - 8]};
			put(o, two, 2);
		} else if (c < 0x20) {
			snprintf(u, sizeof(u), "\\u%04x", c);
			puts_(o, u);
		} else {
			put(o, s + i, 1);
		}
	}
	puts_(o, "\"");
}

/* v as the chat templates' tojson filter writes it: Python's
 * json.dumps(v, ensure_ascii=False): ", " and ": " separators, keys in their
 * order, non-ASCII as is, control characters escaped; numbers in the
 * shortest form that reads back the same, integers without a point (a number
 * sent as 2.0 comes out 2, where Python would keep the float's 2.0). */
static void put_json(struct out *o, const struct json_val *v)
{
	char num[40];
	size_t n;
	switch (json_type(v)) {
	case JSON_NULL:
		puts_(o, "null");
		return;
	case JSON_TRUE:
		puts_(o, "true");
		return;
	case JSON_FALSE:
		puts_(o, "false");
		return;
	case JSON_NUM: {
		double d = 0;
		json_num(v, &d);
		if (d > -1e16 && d < 1e16 && d == (double)(long long)d) {
			snprintf(num, sizeof(num), "%lld", (long long)d);
		} else {
			for (int p = 1; p <= 17; p++) {
				snprintf(num, sizeof(num), "%.*g", p, d);
				if (strtod(num, NULL) == d)
					break;
			}
		}
		puts_(o, num);
		return;
	}
	case JSON_STR: {
		const char *str = json_str(v, &n);
		put_json_str(o, str, n);
		return;
	}
	case JSON_ARR:
		puts_(o, "[");
		for (int i = 0; i < json_len(v); i++) {
			if (i)
				puts_(o, ", ");
			put_json(o, json_at(v, i));
		}
		puts_(o, "]");
		return;
	case JSON_OBJ:
		puts_(o, "{");
		for (int i = 0; i < json_len(v); i++) {
			const char *k = json_key_at(v, i, &n);
			if (i)
				puts_(o, ", ");
			put_json_str(o, k, n);
			puts_(o, ": ");
			put_json(o, json_at(v, i));
		}
		puts_(o, "}");
		return;
	}
}

/* The tool definitions of the leading tools messages (each a JSON array),
 * one tojson per line, as Qwen3's template lists them. */
static int put_tools(struct out *o, const struct tok_msg *m, int n_tools, struct ts_err *e)
{
	for (int i = 0; i < n_tools; i++) {
		struct json_doc *doc = NULL;
		char what[48];
		snprintf(what, sizeof(what), "messages[%d] (tools)", i);
		struct tok_scratch *sc = o->sc;
		int in = sc && sc->bytes >= json_parse_bytes(m[i].len);
		int rc = in ? json_parse_in(&doc, sc->mem, sc->bytes, what, m[i].text, m[i].len, e)
			    : json_parse(&doc, what, m[i].text, m[i].len, e);
		if (rc < 0) { /* the parser's message names the message; the error is the request's */
			char msg[sizeof(e->msg)];
			snprintf(msg, sizeof(msg), "%s", e->msg);
			return rc == -E_NOMEM ? rc : ts_errf(e, E_INVAL, "%s", msg);
		}
		const struct json_val *root = json_root(doc);
		if (json_type(root) != JSON_ARR) {
			if (!in)
				json_free(doc);
			return ts_errf(e, E_INVAL, "messages[%d]: a tools message is a JSON array of tool definitions", i);
		}
		for (int k = 0; k < json_len(root); k++) {
			puts_(o, "\n");
			put_json(o, json_at(root, k));
		}
		if (!in)
			json_free(doc);
	}
	return 0;
}

/* Qwen3's chat_template (tokenizer_config.json of Qwen3); m[0..n) without
 * the tools messages, whose definitions put_tools writes into the system
 * turn (with the first system message's text before them). */
static int chatml(const struct tok *t, const struct tok_msg *tools, int n_tools, const struct tok_msg *m, int n,
		  int open_last, struct out *o, struct ts_err *e)
{
	int i0 = 0;
	if (n_tools) {
		puts_(o, "<|im_start|>system\n");
		if (n && m[0].role == TOK_ROLE_SYSTEM) {
			put(o, m[0].text, m[0].len);
			puts_(o, "\n\n");
			i0 = 1;
		}
		puts_(o, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are "
			 "provided with function signatures within <tools></tools> XML tags:\n<tools>");
		int rc = put_tools(o, tools, n_tools, e);
		if (rc < 0)
			return rc;
		puts_(o, "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
			 "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
			 "\"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
	}
	int last_query = n - 1;
	for (int i = n - 1; i >= 0; i--)
		if (m[i].role == TOK_ROLE_USER && !user_is_tool_response((struct span){m[i].text, m[i].len})) {
			last_query = i;
			break;
		}
	for (int i = i0; i < n; i++) {
		struct span c = {m[i].text, m[i].len};
		switch (m[i].role) {
		case TOK_ROLE_SYSTEM:
		case TOK_ROLE_USER:
			puts_(o, "<|im_start|>");
			puts_(o, role_name[m[i].role]);
			puts_(o, "\n");
			put_span(o, c);
			puts_(o, "<|im_end|>\n");
			break;
		case TOK_ROLE_ASSISTANT: {
			struct span body = c, why = {"", 0};
			const char *end = t->chat_think ? find(c, "</think>", 0) : NULL;
			if (end) {
				const char *lend = find(c, "</think>", 1) + 8;
				body = lstrip_nl((struct span){lend, (size_t)(c.s + c.n - lend)});
				struct span pre = rstrip_nl((struct span){c.s, (size_t)(end - c.s)});
				const char *open = find(pre, "<think>", 1);
				why = open ? (struct span){open + 7, (size_t)(pre.s + pre.n - open - 7)} : pre;
				why = lstrip_nl(why);
			}
			puts_(o, "<|im_start|>assistant\n");
			size_t at = o->n; /* the turn's content starts here */
			if (t->chat_think && i > last_query && (i == n - 1 || why.n)) {
				puts_(o, "<think>\n");
				put_span(o, rstrip_nl(lstrip_nl(why)));
				puts_(o, "\n</think>\n\n");
				body = lstrip_nl(body);
			}
			if (i == n - 1 && open_last) {
				/* continue_final_message: trailing whitespace off the content as
				 * rendered, the <think> block's included when the answer is empty */
				put_span(o, body);
				out_rstrip(o, at);
				return 0;
			}
			put_span(o, body);
			puts_(o, "<|im_end|>\n");
			break;
		}
		case TOK_ROLE_TOOL:
			if (i == 0 || m[i - 1].role != TOK_ROLE_TOOL)
				puts_(o, "<|im_start|>user");
			puts_(o, "\n<tool_response>\n");
			put_span(o, c);
			puts_(o, "\n</tool_response>");
			if (i == n - 1 || m[i + 1].role != TOK_ROLE_TOOL)
				puts_(o, "<|im_end|>\n");
			break;
		}
	}
	puts_(o, "<|im_start|>assistant\n");
	return 0;
}

/* Meta-Llama-3-8B-Instruct's chat_template. */
static void llama3(const struct tok *t, const struct tok_msg *m, int n, int open_last, struct out *o)
{
	put_token(o, t, t->bos_id);
	for (int i = 0; i < n; i++) {
		struct span c = strip_ws((struct span){m[i].text, m[i].len});
		puts_(o, "<|start_header_id|>");
		puts_(o, role_name[m[i].role]);
		puts_(o, "<|end_header_id|>\n\n");
		put_span(o, c);
		if (i == n - 1 && open_last)
			return;
		puts_(o, "<|eot_id|>");
	}
	puts_(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Turns after an optional system message must alternate user, assistant, ...
 * (both [INST] templates raise an exception otherwise). */
static int check_alternate(const struct tok_msg *m, int n, int first, const char *fmt, struct ts_err *e)
{
	for (int i = first; i < n; i++) {
		uint32_t want = (i - first) % 2 ? TOK_ROLE_ASSISTANT : TOK_ROLE_USER;
		if (m[i].role != want)
			return ts_errf(e, E_INVAL,
				       "messages[%d]: role %s: the %s chat format needs user and assistant turns "
				       "alternating from the first user message%s",
				       i, role_name[m[i].role], fmt,
				       m[i].role == TOK_ROLE_TOOL     ? " (it has no tool messages)"
				       : m[i].role == TOK_ROLE_SYSTEM ? " (one system message, first)"
								      : "");
	}
	return 0;
}

/* Llama-2-7b-chat-hf's chat_template. */
static int llama2(const struct tok *t, const struct tok_msg *m, int n, int open_last, struct out *o,
		  struct ts_err *e)
{
	int first = n > 0 && m[0].role == TOK_ROLE_SYSTEM;
	int rc = check_alternate(m, n, first, "llama2", e);
	if (rc)
		return rc;
	for (int i = first; i < n; i++) {
		struct span c = {m[i].text, m[i].len};
		if (m[i].role == TOK_ROLE_USER) {
			put_token(o, t, t->bos_id);
			puts_(o, "[INST] ");
			if (i == first && first) {
				/* ('<<SYS>>\n' + system + '\n<</SYS>>\n\n' + content).strip() */
				size_t at = o->n;
				puts_(o, "<<SYS>>\n");
				put(o, m[0].text, m[0].len);
				puts_(o, "\n<</SYS>>\n\n");
				put_span(o, c);
				out_rstrip(o, at);
			} else {
				put_span(o, strip_ws(c));
			}
			puts_(o, " [/INST]");
		} else {
			puts_(o, " ");
			put_span(o, strip_ws(c));
			if (i == n - 1 && open_last)
				return 0;
			puts_(o, " ");
			put_token(o, t, t->eos_id);
		}
	}
	return 0;
}

/* Mistral-7B-Instruct-v0.2's (and Mixtral-8x7B-Instruct-v0.1's) chat_template,
 * plus a system message. v0.1's writes one more space after each </s>. */
static int mistral(const struct tok *t, const struct tok_msg *m, int n, int open_last, struct out *o,
		   struct ts_err *e)
{
	int first = n > 0 && m[0].role == TOK_ROLE_SYSTEM;
	int rc = check_alternate(m, n, first, "mistral", e);
	if (rc)
		return rc;
	put_token(o, t, t->bos_id);
	for (int i = first; i < n; i++) {
		struct span c = {m[i].text, m[i].len};
		if (m[i].role == TOK_ROLE_USER) {
			puts_(o, "[INST] ");
			if (i == first && first) {
				put(o, m[0].text, m[0].len);
				puts_(o, "\n\n");
			}
			put_span(o, c);
			puts_(o, " [/INST]");
		} else {
			if (i == n - 1 && open_last) {
				put_span(o, rstrip_ws(c));
				return 0;
			}
			put_span(o, c);
			put_token(o, t, t->eos_id);
		}
	}
	return 0;
}

/* DeepSeek-V3's chat_template (tokenizer_config.json of deepseek-ai/DeepSeek-V3),
 * its namespace flags kept as they are: is_tool (the last turn was tool
 * results) and is_output_first (no result yet in the whole conversation). The
 * template writes the end of sentence as text, not eos_token. */
static void deepseek3(const struct tok *t, const struct tok_msg *m, int n, int open_last, struct out *o)
{
	int first_sp = 1, is_tool = 0, output_first = 1;
	put_token(o, t, t->bos_id);
	for (int i = 0; i < n; i++)
		if (m[i].role == TOK_ROLE_SYSTEM) {
			if (!first_sp)
				puts_(o, "\n\n");
			put(o, m[i].text, m[i].len);
			first_sp = 0;
		}
	for (int i = 0; i < n; i++) {
		struct span c = {m[i].text, m[i].len};
		switch (m[i].role) {
		case TOK_ROLE_USER:
			is_tool = 0;
			puts_(o, "<｜User｜>");
			put_span(o, c);
			break;
		case TOK_ROLE_ASSISTANT:
			puts_(o, is_tool ? "<｜tool▁outputs▁end｜>" : "<｜Assistant｜>");
			is_tool = 0;
			if (i == n - 1 && open_last) {
				put_span(o, rstrip_ws(c));
				return;
			}
			put_span(o, c);
			puts_(o, "<｜end▁of▁sentence｜>");
			break;
		case TOK_ROLE_TOOL:
			puts_(o, output_first ? "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" : "\n<｜tool▁output▁begin｜>");
			is_tool = 1;
			output_first = 0;
			put_span(o, c);
			puts_(o, "<｜tool▁output▁end｜>");
			break;
		}
	}
	puts_(o, is_tool ? "<｜tool▁outputs▁end｜>" : "<｜Assistant｜>");
}

long tok_chat_render(const struct tok *t, const struct tok_msg *m, int n, char *out, size_t cap, struct ts_err *e)
{
	return tok_chat_render_in(t, m, n, out, cap, NULL, e);
}

long tok_chat_render_in(const struct tok *t, const struct tok_msg *m, int n, char *out, size_t cap,
			struct tok_scratch *sc, struct ts_err *e)
{
	struct out o = {out, cap, 0, sc};
	if (t->chat == TOK_CHAT_NONE)
		return ts_errf(e, E_UNSUPPORTED,
			       "this model has no chat format we know (tokenizer_config.json chat_template; set [model] "
			       "chat_format)");
	int n_tools = 0;
	while (n_tools < n && m[n_tools].role == TOK_ROLE_TOOLS)
		n_tools++;
	for (int i = 0; i < n; i++) {
		if (m[i].role >= TOK_ROLE_N)
			return ts_errf(e, E_INVAL,
				       "messages[%d]: role %u: not 0..4 (system, user, assistant, tool, tools)", i,
				       m[i].role);
		if (m[i].role == TOK_ROLE_TOOLS && i >= n_tools)
			return ts_errf(e, E_INVAL, "messages[%d]: tools messages come before all the others", i);
	}
	if (n_tools && t->chat != TOK_CHAT_CHATML)
		return ts_errf(e, E_INVAL,
			       "messages[0]: tool definitions: the %s chat format has none (describe the tools in the "
			       "system message)",
			       tok_chat_name(t->chat));
	const struct tok_msg *tools = m;
	m += n_tools, n -= n_tools;
	if (n < 1)
		return ts_errf(e, E_INVAL, "messages: at least one that is not tools is needed");
	int open_last = m[n - 1].role == TOK_ROLE_ASSISTANT, rc = 0;
	switch (t->chat) {
	case TOK_CHAT_CHATML:
		rc = chatml(t, tools, n_tools, m, n, open_last, &o, e);
		break;
	case TOK_CHAT_LLAMA3:
		llama3(t, m, n, open_last, &o);
		break;
	case TOK_CHAT_LLAMA2:
		rc = llama2(t, m, n, open_last, &o, e);
		break;
	case TOK_CHAT_MISTRAL:
		rc = mistral(t, m, n, open_last, &o, e);
		break;
	case TOK_CHAT_DEEPSEEK3:
		deepseek3(t, m, n, open_last, &o);
		break;
	default:
		return ts_errf(e, E_INTERNAL, "chat format %d", (int)t->chat);
	}
	if (rc)
		return rc;
	if (o.n > cap)
		return ts_errf(e, E_INTERNAL, "chat: %zu bytes rendered past the bound %zu", o.n, cap);
	return (long)o.n;
}
