/* tok: the tokenizer -- Hugging Face tokenizer.json, in C.
 *
 * Owns: loading tokenizer.json (+ tokenizer_config.json) from a checkpoint
 * directory into an immutable struct tok; encoding UTF-8 text to ids; decoding
 * ids to UTF-8, whole or streaming.
 * Supports exactly:
 *   - byte-level BPE (GPT-2 byte map) with the Split pre-tokenizer regex of
 *     Llama 3 or of Qwen2/Qwen3, or DeepSeek-V3's three Splits in a row
 *     (digits, CJK runs, then its general regex, each on the pieces of the
 *     one before) -- recognised by exact pattern text; hand-written
 *     matchers, not a regex engine -- optional "ignore_merges", optional
 *     "NFC" normalizer (UAX #15, run only on text that the NFC quick check
 *     says may change) or none (null, or an empty Sequence);
 *   - SentencePiece-style BPE (Llama 2): normalizer Prepend("▁") +
 *     Replace(" " -> "▁"), no pre-tokenizer, byte fallback (<0xAB>);
 *   - added tokens (special or not), matched in the raw text before
 *     normalization, leftmost-longest, whatever their "special" flag (as HF
 *     does with split_special_tokens=false). lstrip/rstrip/single_word are
 *     refused at load, and so is normalized=true unless there is no
 *     normalizer (byte-level without NFC: then the raw text is the
 *     normalized text). A vocab entry that is not byte-level text is
 *     accepted only when an added token has its id (DeepSeek-V3's
 *     <｜begin▁of▁sentence｜> is both).
 * Does not: add BOS/EOS or any post-processor tokens (the caller or the chat
 * template does); truncate; pad.
 * Threads: tok_load/tok_free at boot. A loaded tok is read-only: tok_encode and
 * tok_decode may run on any number of threads at once, each with its own
 * struct tok_scratch / struct tok_stream.
 * Unicode: \p{L}, \p{N} and the NFC data come from UCD tables generated into
 * tok_unicode.c (UCD 15.0; a newer UCD may class newly assigned code points
 * differently); \s is JavaScript's set (what the reference implementation,
 * transformers.js, uses; HF's Rust regex differs only on U+0085 and U+FEFF).
 */
#ifndef TS_TOK_H
#define TS_TOK_H

#include "base.h"

enum tok_model { TOK_BYTE_BPE, TOK_SP_BPE };
/* The chat formats we render (no general template engine): see tok_chat.c. */
enum tok_chat {
	TOK_CHAT_NONE,
	TOK_CHAT_CHATML,
	TOK_CHAT_LLAMA3,
	TOK_CHAT_LLAMA2,
	TOK_CHAT_MISTRAL,
	TOK_CHAT_DEEPSEEK3,
	TOK_CHAT_N
};
enum tok_pre { TOK_PRE_NONE, TOK_PRE_LLAMA3, TOK_PRE_QWEN2, TOK_PRE_DEEPSEEK3 };

/* The Split pre-tokenizer regexes we match by hand, as their tokenizer.json
 * spells them (tok_parse recognises them by this exact text). */
#define TOK_PAT_LLAMA3                                                                                                 \
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                                     \
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOK_PAT_QWEN2                                                                                                  \
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                                          \
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* DeepSeek-V3's three Splits, in their order: digits in groups of up to 3;
 * runs of [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff] (spelled as the characters
 * themselves); then its general regex, whose [\r\n] are the control characters
 * themselves (not backslash escapes as in the two above). */
#define TOK_PAT_DEEPSEEK3_DIGITS "\\p{N}{1,3}"
#define TOK_PAT_DEEPSEEK3_CJK    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+"
#define TOK_PAT_DEEPSEEK3                                                                                              \
	"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "            \
	"?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"

/* GPT-2's byte-level alphabet: the code point that stands for byte b
 * (printable Latin-1 bytes for themselves, the other 68 U+0100.. in order). */
uint32_t tok_byte_cp(int b);

struct tok_added {
	uint32_t off, len; /* content in tok.strs */
	int32_t id;
	int special;
};

struct tok {
	enum tok_model model;
	enum tok_pre pre;
	int nfc;           /* normalizer NFC (Qwen) */
	int ignore_merges; /* a pre-token that is itself in the vocab is one id */
	int byte_fallback;
	int32_t unk_id;    /* -1 if none */
	int n_ids;         /* 1 + the largest id */
	char *strs;        /* every token's bytes, concatenated */
	uint32_t *key_off; /* (n_ids + 1): vocab key bytes (raw bytes; SP keeps "▁") */
	uint32_t *dec_off; /* (n_ids, 2): decoded bytes (offset, len) */
	uint8_t *kind;     /* (n_ids): 0 absent, 1 model vocab, 2 added, 3 added special, 4 byte-fallback <0xAB> */
	uint8_t *whole;    /* (n_ids): 1 if its decoded bytes are whole valid UTF-8 characters */
	int32_t *vh;       /* vocab hash: key bytes -> id, -1 empty */
	uint32_t vh_mask;
	struct tok_merge *mh; /* merge hash: (left id, right id) -> (rank, id) */
	uint32_t mh_mask;
	int32_t byte_id[256];    /* byte-level: the id of each byte; SP: <0xAB> */
	struct tok_added *added; /* sorted by first byte, then longest first */
	int n_added;
	int added_first[257];   /* added[added_first[b] .. added_first[b+1]) start with byte b */
	struct tok_trie *trie;  /* the added tokens as a byte trie, for leftmost-longest matching */
	int32_t trie_first[256]; /* the trie node of each first byte, -1 none */
	int max_dec;            /* longest decoded token, bytes */
	int32_t bos_id, eos_id; /* from tokenizer_config.json; -1 if none */
	int add_bos;            /* a text prompt starts with bos_id (what HF tokenizer(text) does:
				   add_bos_token, else the post-processor's template) */
	enum tok_chat chat;     /* from tokenizer_config.json's chat_template; tok_chat_detect */
	int chat_think;         /* ChatML with Qwen3's <think> handling of assistant turns */
};

/* Grows (ts_realloc) to the largest input seen, so a long-lived scratch makes
 * encode allocation-free in the steady state. Zero-initialise; one per thread. */
struct tok_scratch {
	void *mem;
	size_t bytes;
};

/* Reads DIR/tokenizer.json and DIR/tokenizer_config.json (optional). Errors
 * name the file and the field. Returns 0 or -E_IO / -E_FORMAT / -E_UNSUPPORTED
 * / -E_NOMEM. */
int tok_load(struct tok *t, const char *dir, struct ts_err *e);
/* The same from the two files' contents (ctext may be NULL: no config); dir
 * only names the files in messages. The fuzz target's entry point. */
int tok_parse(struct tok *t, const char *dir, const char *text, size_t len, const char *ctext, size_t clen,
	      struct ts_err *e);
void tok_free(struct tok *t);

/* Encodes utf8[0..n) without BOS/EOS. Writes up to cap ids; returns the number
 * of ids (which may exceed cap: then only cap were written; call again with a
 * larger out), or -E_NOMEM (scratch growth). Scratch needs about 70 bytes per
 * input byte (about 260 with NFC, which may triple the bytes). Invalid UTF-8 bytes are encoded as single bytes
 * (byte-level; NFC passes them through) or byte fallback tokens
 * (SentencePiece). Time is linear in n (NFC's canonical ordering included). */
int tok_encode(const struct tok *t, const char *utf8, size_t n, int32_t *out, int cap, struct tok_scratch *sc);
/* The most ids tok_encode can return for n bytes of any text: byte-level BPE
 * gives at most one id per byte of normalized text (NFC may triple the bytes:
 * U+1D160); SentencePiece one per character plus the "▁" prepended to each
 * stretch between added tokens (three bytes each when "▁" itself is not a
 * token and falls back to bytes). A cap this large never truncates. */
size_t tok_encode_bound(const struct tok *t, size_t n);
void tok_scratch_free(struct tok_scratch *sc);
/* The scratch tok_encode needs for n bytes of text; reserve takes it now
 * (resident), so encoding up to n bytes never allocates. 0 or -E_NOMEM. */
size_t tok_scratch_bytes(const struct tok *t, size_t n);
int tok_scratch_reserve(struct tok_scratch *sc, const struct tok *t, size_t n);

/* Decodes ids to UTF-8 into out[0..cap) (NUL-terminated when room), as HF
 * decode(skip_special_tokens=False): added tokens as their text, byte-fallback
 * tokens as bytes, "▁" as space and one leading space stripped (SentencePiece),
 * each maximal invalid UTF-8 subpart replaced by U+FFFD. Returns the length
 * needed (excluding NUL); a result >= cap means out was truncated. Unknown ids
 * decode to nothing. */
size_t tok_decode(const struct tok *t, const int32_t *ids, int n, char *out, size_t cap);

/* The same for generated ids, as the server streams them: special tokens
 * decode to nothing (HF skip_special_tokens=True) and SentencePiece's leading
 * space is kept (the text continues a prompt). */
size_t tok_decode_gen(const struct tok *t, const int32_t *ids, int n, char *out, size_t cap);

/* Streaming detokenizer: feed ids one at a time; each push emits only complete,
 * valid UTF-8 (an incomplete sequence waits for the next token; an invalid one
 * becomes U+FFFD). The concatenation of all pushes and the final flush equals
 * tok_decode of the same ids. out must hold tok_stream_bound(t) bytes. */
struct tok_stream {
	const struct tok *t;
	uint8_t pend[4];
	int n_pend;
	int started;      /* a byte was emitted (or the SentencePiece leading space stripped);
			     set it to 1 after init for text that continues a prompt */
	int skip_special; /* set to 1 after init: special added tokens decode to nothing
			     (HF skip_special_tokens=True); then the equality with
			     tok_decode no longer holds */
};
void tok_stream_init(struct tok_stream *s, const struct tok *t);
size_t tok_stream_bound(const struct tok *t);
size_t tok_stream_push(struct tok_stream *s, int32_t id, char *out);
size_t tok_stream_flush(struct tok_stream *s, char *out);

/* ---------------------------------------------------------------- chat (tok_chat.c)
 *
 * A conversation rendered as text the way the model's HF chat template does,
 * for the formats we know (detected from the template's text, or set by
 * [model] chat_format): the text spells the special tokens, so tok_encode of
 * it gives the ids of apply_chat_template(tokenize=True). Content is not
 * escaped: a message that spells a special token gets that token, as in HF.
 *   CHATML  (Qwen): <|im_start|>role\n...<|im_end|>\n; consecutive tool
 *           messages form one user turn of <tool_response> blocks; with
 *           chat_think, Qwen3's rules for <think> in assistant turns.
 *   LLAMA3: BOS, <|start_header_id|>role<|end_header_id|>\n\n + stripped
 *           content + <|eot_id|>; tool messages use the role "tool".
 *   LLAMA2: Meta's template: [INST] <<SYS>> ... [/INST] answer </s>, BOS per
 *           user turn; turns alternate user/assistant after one optional
 *           system message; no tool messages.
 *   MISTRAL: BOS, [INST] user [/INST]answer</s> (Mistral v0.2, Mixtral);
 *           turns alternate; a system message (our extension: those
 *           templates have none) is put before
 *           the first user message's text, followed by a blank line.
 *   DEEPSEEK3: DeepSeek-V3's template: BOS, then every system message's
 *           text (joined by a blank line, wherever the messages are), then
 *           <｜User｜>text and <｜Assistant｜>text<｜end▁of▁sentence｜> turns;
 *           tool messages are its <｜tool▁output▁begin｜> blocks, with the
 *           template's own rules kept (only the conversation's first result
 *           opens <｜tool▁outputs▁begin｜>; an assistant message after results
 *           closes them with <｜tool▁outputs▁end｜> instead of its header; a
 *           user message after them closes nothing; a conversation ending in
 *           results ends with <｜tool▁outputs▁end｜>, no header). An assistant
 *           message is text: the template's tool_calls form (content none) has
 *           no equivalent, so a client passes a generated call back as the
 *           text the model wrote. No tool definitions (the template has none).
 *           Detected by <｜User｜> and <｜Assistant｜> in a template without
 *           </think> (DeepSeek-R1's and V3.1's thinking rules are not ours).
 * Ending: if the last message is the assistant's, its turn is left open for
 * the model to continue (HF continue_final_message: the text ends at the
 * message's content with trailing whitespace removed); otherwise the
 * assistant's header follows (add_generation_prompt). */
/* TOK_ROLE_TOOLS: a JSON array of tool definitions (HF apply_chat_template's
 * `tools`), written into the system turn as the template's tojson does
 * (ChatML only; the other formats refuse them); such messages come before
 * all the others. */
enum tok_role { TOK_ROLE_SYSTEM, TOK_ROLE_USER, TOK_ROLE_ASSISTANT, TOK_ROLE_TOOL, TOK_ROLE_TOOLS, TOK_ROLE_N };
struct tok_msg {
	uint32_t role; /* enum tok_role */
	const char *text;
	size_t len;
};
const char *tok_chat_name(enum tok_chat c); /* "chatml", "llama3", ..., "deepseek3", "none" */
/* From a chat_template's text (NULL: none): the format, and *think for ChatML. */
enum tok_chat tok_chat_detect(const char *tpl, int *think);
/* An upper bound of the rendered length. */
size_t tok_chat_bound(const struct tok *t, const struct tok_msg *m, int n);
/* Renders m[0..n) into out[0..cap) (cap >= tok_chat_bound). Returns the
 * length, or -E_UNSUPPORTED (no chat format) or -E_INVAL (a conversation the
 * format cannot express: say which message and why) with e->msg set. */
long tok_chat_render(const struct tok *t, const struct tok_msg *m, int n, char *out, size_t cap, struct ts_err *e);
/* The same with sc's memory for parsing tools messages (when it holds
 * json_parse_bytes of one; tok_encode's scratch for the rendered text is more):
 * then it allocates nothing. */
long tok_chat_render_in(const struct tok *t, const struct tok_msg *m, int n, char *out, size_t cap,
			struct tok_scratch *sc, struct ts_err *e);

#endif
