/* backend: the interface every backend implements.
 *
 * A backend holds the model's weights in its own memory (or views of the
 * checkpoint's mapping), the KV storage for every block of the pool, and the
 * workspace for the largest batch the config allows, all taken in init. Then
 * forward() runs one batch: any mix of prefill chunks and decode tokens from
 * different sequences, each token at its own position, and returns the logits
 * of the rows asked for. Block ids come from kv; the backend only stores.
 * Does not: schedule, sample (for now: the host samples with samp), allocate
 * after init.
 * Threads: the engine thread calls every op; a backend may use its own
 * worker threads inside an op.
 */
#ifndef TS_BACKEND_H
#define TS_BACKEND_H

#include "base.h"
#include "model.h"
#include "samp.h"

struct batch_seq {
	const int32_t *blocks; /* block table covering positions [0, last pos in batch] */
	int n_blocks;
	int32_t state;         /* slot in the recurrent-state pool (kv_state_*), -1: none. Needed by a model
	                        * with recurrent (LINEAR) layers; a sequence whose first token in the batch
	                        * is at position 0 starts from a zero state, else it continues its slot's */
};

/* A sequence's tokens in the batch are consecutive, with consecutive
 * positions; tokens at lower positions of that sequence are already in KV. */
struct batch {
	int n_tokens;
	const int32_t *token;      /* (n_tokens) */
	const int32_t *pos;        /* (n_tokens) */
	const int32_t *seq;        /* (n_tokens) index into seqs */
	int n_seqs;
	const struct batch_seq *seqs; /* (n_seqs) */
	int n_logits;
	const int32_t *logit_rows; /* (n_logits) token indices whose logits are wanted */
};

/* One row to sample on the device: the request's parameters and history
 * (prompt, then generated tokens; the penalties read them) and the position
 * the new token takes (the RNG's counter). */
struct backend_samp_row {
	const struct samp_params *p;
	const int32_t *prompt;
	int n_prompt;
	const int32_t *out;
	int n_out;
	uint64_t pos;
};

struct backend_limits {
	int max_batch_tokens;
	int max_seqs;
	int max_seq_len;
	int n_blocks;
	int block_tokens;
	int n_states;              /* recurrent-state slots (0 for models without recurrent layers) */
	int threads;               /* CPU worker threads; 0 = one per core */
	int device;                /* GPU ordinal */
	int tp;                    /* tensor-parallel ranks (cpu: threads of this process, see cpu.c); 0 = 1 */
};

struct backend;

struct backend_ops {
	const char *name;
	/* Whether this backend runs the model: every layer kind, head size and
	 * RoPE variant it has. Pure (no device needed), so --check-config and
	 * boot refuse a model right after config.json is read, with a message
	 * naming the layer, the dim and what is supported. 0 or -E_UNSUPPORTED. */
	int (*check)(const struct model *m, struct ts_err *e);
	/* Bytes of KV storage one token takes (all layers, K and V). */
	uint64_t (*kv_bytes_per_token)(const struct model *m);
	/* Bytes still available for the KV pool after weights and workspace
	 * for these limits (n_blocks ignored). */
	int (*mem_available)(const struct model *m, const struct backend_limits *l, uint64_t *bytes,
			     struct ts_err *e);
	int (*init)(struct backend *b, const struct model *m, const struct backend_limits *l,
		    struct ts_err *e);
	/* logits: (n_logits, vocab) floats. 0 or -E_*. */
	int (*forward)(struct backend *b, const struct batch *bt, float *logits);
	/* Optional: forward and sample on the device, one token per logit row,
	 * with the same rules as samp_sample (src/samp.h). NULL = the host
	 * samples the logits of forward(). */
	int (*forward_sample)(struct backend *b, const struct batch *bt, const struct backend_samp_row *rows,
			      int32_t *tokens);
	void (*free)(struct backend *b);
};

struct backend {
	const struct backend_ops *ops;
	const struct model *m;
	struct backend_limits lim;
	void *impl;
	uint64_t weight_bytes;     /* device (or RAM) bytes held for weights */
	uint64_t workspace_bytes;
	uint64_t kv_bytes;
	uint64_t state_bytes;      /* the recurrent-state pool */
};

extern const struct backend_ops cpu_backend_ops;

#endif
