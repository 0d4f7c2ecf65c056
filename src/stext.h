/* stext: the text side of serving -- prompts from text or chat messages, and
 * generated text streamed with stop sequences.
 *
 * Owns: turning a SUBMIT's prompt_text or messages into prompt ids (BOS as
 * the tokenizer adds it; the chat format's rendering), on a text worker
 * (textw), never the network thread; the ids are sized by tok_encode_bound;
 * a request's text state on the engine thread: streaming detokenization
 * (special tokens skipped, UTF-8 never split), stop sequences matched across
 * token boundaries, and holding back text that may begin a stop sequence.
 * Does not: do I/O or know about connections; decide what the engine does
 * with a stop (stext_token says so; sched ends the request).
 * Threads: a struct stext_enc belongs to one thread (each text worker has
 * its own); a struct stext is made by the network thread and then owned by
 * the engine thread until stext_free. The tokenizer is read-only and shared.
 */
#ifndef TS_STEXT_H
#define TS_STEXT_H

#include "proto.h"
#include "tok.h"

/* Reusable buffers of one thread (zero-initialise; grow as needed, or take
 * them once with stext_enc_reserve). */
struct stext_enc {
	struct tok_scratch sc;
	char *buf;
	size_t buf_cap;
	struct tok_msg *msgs;
	int32_t *ids;
	int ids_cap;
	size_t max_text; /* reserved: the most text (bytes, a chat as rendered) it encodes; 0: grows */
};
void stext_enc_free(struct stext_enc *w);

/* Takes every buffer now (resident) for prompts of up to text_bytes of text
 * (a chat's as rendered), with extra_ids of room after the ids: from then on
 * stext_prompt never allocates, and refuses a longer one (-E_RANGE). 0, or
 * -E_NOMEM with e set. */
int stext_enc_reserve(struct stext_enc *w, const struct tok *t, size_t text_bytes, int extra_ids, struct ts_err *e);
size_t stext_enc_bytes(const struct stext_enc *w); /* what it holds */

/* The prompt ids of a SUBMIT with TEXT_PROMPT or CHAT, in w->ids[0..*n).
 * Errors: -E_INVAL (a conversation the chat format cannot express),
 * -E_UNSUPPORTED (no chat format), -E_NOMEM; e names the message. */
int stext_prompt(const struct tok *t, struct stext_enc *w, const struct proto_submit *s, int *n, struct ts_err *e);

/* A request's generated-text state. want_text: the text is wanted (else only
 * the stop sequences are watched). NULL when out of memory. */
struct stext *stext_new(const struct tok *t, int want_text, const struct proto_str *stops, uint32_t n_stops);
void stext_free(struct stext *x);
/* The same in the caller's memory (bytes of it; nothing to free): NULL when
 * it is too small. stext_max_bytes(t) holds any SUBMIT's (PROTO_MAX_STOP_SEQS
 * of PROTO_MAX_STOP_SEQ_BYTES). */
struct stext *stext_init(void *mem, size_t bytes, const struct tok *t, int want_text, const struct proto_str *stops,
			 uint32_t n_stops);
size_t stext_max_bytes(const struct tok *t);
/* The most text one stext_token or stext_finish releases. */
size_t stext_release_bound(const struct tok *t);

/* One generated token: *out, *n = the text it releases (valid until the next
 * call). Returns 1 when a stop sequence completed: the released text ends
 * before it, and the request must end (finish STOP). */
int stext_token(struct stext *x, int32_t id, const char **out, size_t *n);

/* The request ended otherwise: all text still held (an incomplete character
 * becomes U+FFFD). Nothing after a stop. */
void stext_finish(struct stext *x, const char **out, size_t *n);

#endif
