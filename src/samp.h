/* samp: sampling parameters and their CPU reference.
 *
 * Owns: the parameters of one request's sampling, their validation, and the
 * reference sampler that turns one row of logits into one token id. The GPU
 * sampler (a later issue) must give the same token for the same inputs, so
 * the random draw is counter-based: keyed by (seed, position), never by what
 * else is in the batch.
 * Does not: allocate after boot (the scratch is sized once for the vocab).
 * Threads: a samp_scratch belongs to one thread at a time.
 *
 * Order of operations (as vLLM applies them):
 *   1. repetition penalty over prompt and generated tokens (HF/CTRL rule:
 *      positive logit divided by the penalty, negative one multiplied);
 *   2. presence and frequency penalties over generated tokens only
 *      (logit -= presence * [count > 0] + frequency * count);
 *   3. temperature == 0 -> greedy argmax (lowest id wins a tie); done;
 *   4. logits / temperature; top-k; softmax; top-p (smallest set whose mass
 *      reaches p, always at least one token); min-p (drop tokens whose
 *      probability is below min_p * max probability);
 *   5. draw u = samp_uniform(seed, pos) and walk the kept tokens in order of
 *      decreasing probability (ties by lower id) until the cumulative
 *      renormalised mass exceeds u.
 */
#ifndef TS_SAMP_H
#define TS_SAMP_H

#include "base.h"

struct samp_params {
	float temperature;        /* 0 = greedy; (0, 100] */
	int32_t top_k;            /* 0 = off; else 1..vocab */
	float top_p;              /* (0, 1]; 1 = off */
	float min_p;              /* [0, 1); 0 = off */
	float repetition_penalty; /* (0, 100]; 1 = off */
	float presence_penalty;   /* [-2, 2]; 0 = off */
	float frequency_penalty;  /* [-2, 2]; 0 = off */
	uint64_t seed;
};

/* Greedy, all filters off, seed 0. */
void samp_params_default(struct samp_params *p);

/* -E_RANGE with a message naming the field and its accepted range. */
int samp_params_check(const struct samp_params *p, int vocab, struct ts_err *e);

/* Working memory for one sampler call, sized at boot. */
struct samp_scratch {
	int vocab;
	float *prob;      /* (vocab) */
	int32_t *idx;     /* (vocab) */
	uint32_t *count;  /* (vocab) token counts for the penalties, kept zero between calls */
};
int samp_scratch_init(struct samp_scratch *s, int vocab);
void samp_scratch_free(struct samp_scratch *s);

/* Samples one token from logits[0..vocab) (modified in place). prompt and out
 * are the request's prompt and generated tokens so far (the penalties read
 * them); pos is the position the new token will occupy. Never allocates. If
 * logprob is not NULL it receives the log-probability of the chosen token
 * under the distribution after penalties and temperature (before the
 * filters; for greedy, temperature 1). */
int32_t samp_sample(float *logits, int vocab, const struct samp_params *p,
		    const int32_t *prompt, int n_prompt, const int32_t *out, int n_out,
		    uint64_t pos, struct samp_scratch *s, float *logprob);

/* Counter-based uniform in [0, 1) with 24 random bits: a pure function of
 * (seed, counter), so that the GPU sampler can reproduce it exactly. */
float samp_uniform(uint64_t seed, uint64_t counter);

#endif
