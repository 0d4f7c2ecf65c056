/* engine: the engine object and its own lifecycle.
 *
 * Owns: struct engine (config, checkpoint, model, backend, scheduler,
 * tokenizer) and its FSM: BOOTING (boot/ brings it up stage by stage), READY
 * (serving), DRAINING (GOAWAY sent, live requests finishing), STOPPED (freed).
 * Every change of state goes through engine_set_state, which checks a table
 * of legal successors; engine_stop frees what boot built, from any state.
 * Does not: decide the boot order (boot/boot.c does), parse argv, serve.
 * Threads: the boot thread builds it and becomes the engine thread (or hands
 * it to serve's engine thread); engine_state may be read from any thread,
 * engine_set_state is called by whoever owns the step it names (boot, the
 * drain, stop).
 */
#ifndef TS_ENGINE_H
#define TS_ENGINE_H

#include <stdatomic.h>

#include "backend.h"
#include "cfg.h"
#include "ckpt.h"
#include "model.h"
#include "sched.h"
#include "tok.h"

#define ENGINE_STATES(X) X(BOOTING) X(READY) X(DRAINING) X(STOPPED)
#define ENGINE_ENUM(s) ENGINE_##s,
enum engine_state { ENGINE_STATES(ENGINE_ENUM) ENGINE_STATE_N };
#undef ENGINE_ENUM

struct engine {
	struct cfg cfg;
	struct ckpt ck;
	struct model m;
	struct backend be;
	struct sched s;
	struct tok tok;          /* valid when has_tok */
	int has_tok;             /* the checkpoint has a tokenizer.json */
	int max_seq_len;         /* after clamping to the model's positions */
	int64_t kv_tokens;       /* pool capacity */
	double boot_s;           /* start to ready */
	_Atomic int state;       /* enum engine_state; BOOTING after memset (0) */
};

const char *engine_state_name(enum engine_state s);

static inline enum engine_state engine_state(const struct engine *en)
{
	return (enum engine_state)atomic_load_explicit(&en->state, memory_order_acquire);
}

/* The one choke point: moves en to `to` when the successor table allows it
 * (0), else logs the illegal transition and leaves the state (-E_INTERNAL). */
int engine_set_state(struct engine *en, enum engine_state to);

/* Frees what boot built (safe on a partly booted or zeroed engine) and
 * ends in STOPPED. */
void engine_stop(struct engine *en);

#endif
