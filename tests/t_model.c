/* t_model: every supported architecture boots; each way a checkpoint can be
 * wrong stops boot with a message naming the file and the tensor or key. */
#include "t.h"
#include "tutil.h"

static char scratch[256];

/* Copies preset's checkpoint to build/tests/ckpt/bad and applies a shell edit. */
static const char *broken(const char *preset, const char *edit)
{
	char cmd[4096];
	const char *src = t_ckpt(preset);
	snprintf(scratch, sizeof(scratch), "%s/bad", T_CKPT_ROOT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s && cp -r %s %s && cd %s && %s", scratch, src, scratch, scratch, edit);
	if (system(cmd) != 0) {
		fprintf(stderr, "edit failed: %s\n", cmd);
		exit(1);
	}
	return scratch;
}

static int boot_err(const char *dir, struct ts_err *e)
{
	static struct engine en;
	struct cfg c;
	t_cfg(&c, dir);
	memset(e, 0, sizeof(*e));
	int r = engine_boot(&en, &c, e);
	if (r == 0)
		engine_stop(&en);
	return r;
}

/* sed over config.json */
#define CFG_SED(expr) "sed -i '" expr "' config.json"

int main(void)
{
	static const char *const presets[] = {"llama2-mini", "llama3-mini", "mistral-mini", "qwen2-mini",
					      "qwen3-mini", "llama3-small"};
	struct ts_err e;

	for (size_t i = 0; i < TS_ARRAY_LEN(presets); i++) {
		const char *dir = t_ckpt(presets[i]);
		T_CHECK(boot_err(dir, &e) == 0, "%s does not boot: %s", presets[i], e.msg);
	}

	/* a layer more than the checkpoint has: the first missing tensor is named */
	const char *d = broken("llama2-mini", CFG_SED("s/\"num_hidden_layers\": *2/\"num_hidden_layers\": 3/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "missing tensor accepted");
	T_HAS(e.msg, "model.layers.2.input_layernorm.weight");
	T_HAS(e.msg, "missing");

	/* dims that disagree with the tensors: file, tensor, both shapes */
	d = broken("llama2-mini", CFG_SED("s/\"intermediate_size\": *512/\"intermediate_size\": 500/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "shape mismatch accepted");
	T_HAS(e.msg, "model.safetensors");
	T_HAS(e.msg, "mlp.gate_proj.weight");
	T_HAS(e.msg, "[512, 256]");
	T_HAS(e.msg, "[500, 256]");

	/* Qwen2 needs QKV biases: a bias-free checkpoint labelled Qwen2 lacks them */
	d = broken("llama2-mini", CFG_SED("s/LlamaForCausalLM/Qwen2ForCausalLM/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "Qwen2 without q_proj.bias accepted");
	T_HAS(e.msg, "model.layers.0.self_attn.q_proj.bias");
	T_HAS(e.msg, "Qwen2ForCausalLM");

	/* an architecture we do not run */
	d = broken("llama2-mini", CFG_SED("s/LlamaForCausalLM/GPT2LMHeadModel/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "unsupported architecture accepted");
	T_HAS(e.msg, "GPT2LMHeadModel");
	T_HAS(e.msg, "config.json");
	T_HAS(e.msg, "LlamaForCausalLM");

	/* a RoPE scaling we do not implement */
	d = broken("llama3-mini", CFG_SED("s/\"llama3\"/\"dynamic\"/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "dynamic rope accepted");
	T_HAS(e.msg, "dynamic");
	T_HAS(e.msg, "yarn"); /* the supported list */

	/* invalid JSON in config.json */
	d = broken("llama2-mini", "printf '{\"hidden_size\": 256,,}' > config.json");
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "invalid config.json accepted");
	T_HAS(e.msg, "config.json");

	/* a required key missing */
	d = broken("llama2-mini", CFG_SED("/\"hidden_size\"/d"));
	T_CHECK(boot_err(d, &e) < 0, "config without hidden_size accepted");
	T_HAS(e.msg, "hidden_size");

	/* a truncated shard */
	d = broken("llama2-mini", "truncate -s -1000 model.safetensors");
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "truncated shard accepted");
	T_HAS(e.msg, "model.safetensors");

	/* an unsupported dtype in a shard header: rewrite one BF16 tag as I16 (same width) */
	d = broken("llama2-mini", "sed -i '0,/\"BF16\"/s//\"I16\" /' model.safetensors");
	T_CHECK(boot_err(d, &e) < 0, "I16 tensor accepted");
	T_HAS(e.msg, "I16");

	/* a missing shard */
	d = broken("qwen3-mini", "rm model-00002-of-00002.safetensors");
	T_CHECK(boot_err(d, &e) < 0, "missing shard accepted");
	T_HAS(e.msg, "model-00002-of-00002.safetensors");

	/* no checkpoint at all */
	T_CHECK(boot_err("build/tests/ckpt/does-not-exist", &e) < 0, "missing directory accepted");
	T_HAS(e.msg, "does-not-exist");
	return T_DONE();
}
