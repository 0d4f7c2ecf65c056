/* engine: the engine object's lifecycle (see engine.h). */
#include "engine.h"

#include "log.h"

#define ENGINE_NAME(s) #s,
static const char *const state_names[ENGINE_STATE_N] = {ENGINE_STATES(ENGINE_NAME)};
#undef ENGINE_NAME

const char *engine_state_name(enum engine_state s)
{
	return s < ENGINE_STATE_N ? state_names[s] : "?";
}

#define B(s) (1u << ENGINE_##s)
/* Legal successors of each state. A boot that fails stops from BOOTING. */
static const uint32_t next_ok[ENGINE_STATE_N] = {
	[ENGINE_BOOTING] = B(READY) | B(STOPPED),
	[ENGINE_READY] = B(DRAINING) | B(STOPPED),
	[ENGINE_DRAINING] = B(STOPPED),
	[ENGINE_STOPPED] = 0,
};
#undef B

int engine_set_state(struct engine *en, enum engine_state to)
{
	enum engine_state from = engine_state(en);
	if (from == to)
		return 0; /* a second drain or stop asks for where it already is */
	if (NEVER(!(next_ok[from] & (1u << to)))) {
		log_error("engine: illegal transition %s -> %s", engine_state_name(from), engine_state_name(to));
		return -E_INTERNAL;
	}
	atomic_store_explicit(&en->state, (int)to, memory_order_release);
	log_debug("engine: state %s -> %s", engine_state_name(from), engine_state_name(to));
	return 0;
}

void engine_stop(struct engine *en)
{
	sched_free(&en->s);
	if (en->be.ops)
		en->be.ops->free(&en->be);
	model_free(&en->m);
	ckpt_close(&en->ck);
	if (en->has_tok)
		tok_free(&en->tok);
	en->has_tok = 0;
	memset(&en->be, 0, sizeof(en->be));
	if (engine_state(en) != ENGINE_STOPPED)
		engine_set_state(en, ENGINE_STOPPED);
}
