/* t_model: every supported architecture boots with the layer plan its
 * config implies; each way a checkpoint can be wrong stops boot with a
 * message naming the file and the tensor or key; a shape or layer kind the
 * GPU kernels lack is refused when config.json is read (boot and
 * --check-config), naming the dim and what is supported. */
#include "t.h"
#include "tutil.h"
#include "fwd.h"

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
					      "qwen3-mini", "llama3-small", "qwen3moe-mini", "qwen3moe-fused-mini",
					      "mixtral-mini", "dsv2lite-mini", "dsv3-mini"};
	/* the plan each implies: attention kind, MoE layers, kv elements per token */
	static const struct {
		const char *preset;
		enum attn_kind attn;
		const char *moe; /* '1' = MoE layer */
		uint64_t kv;
		int fused;
	} plans[] = {
		{"llama2-mini", ATTN_GQA, "00", 2 * 2 * 128, 0},
		{"qwen3moe-mini", ATTN_GQA, "011", 3 * 2 * 128, 0},
		{"qwen3moe-fused-mini", ATTN_GQA, "0101", 4 * 2 * 128, 1},
		{"mixtral-mini", ATTN_GQA, "11", 2 * 2 * 64, 0},
		{"dsv2lite-mini", ATTN_MLA, "011", 3 * (64 + 16), 0},
		{"dsv3-mini", ATTN_MLA, "011", 3 * (64 + 16), 0},
	};
	struct ts_err e;

	for (size_t i = 0; i < TS_ARRAY_LEN(presets); i++) {
		const char *dir = t_ckpt(presets[i]);
		T_CHECK(boot_err(dir, &e) == 0, "%s does not boot: %s", presets[i], e.msg);
	}
	for (size_t i = 0; i < TS_ARRAY_LEN(plans); i++) {
		struct ckpt ck;
		struct model m;
		const char *dir = t_ckpt(plans[i].preset);
		T_CHECK(ckpt_open(&ck, dir, &e) == 0 && model_load(&m, &ck, &e) == 0, "%s: %s", plans[i].preset, e.msg);
		int ok = m.d.n_layers == (int)strlen(plans[i].moe);
		for (int l = 0; ok && l < m.d.n_layers; l++)
			ok = m.layers[l].attn == plans[i].attn &&
			     m.layers[l].mlp == (plans[i].moe[l] == '1' ? MLP_MOE : MLP_DENSE);
		T_CHECK(ok, "%s: layer plan is not %s attention with MoE layers %s", plans[i].preset,
			model_attn_name(plans[i].attn), plans[i].moe);
		T_CHECK(model_kv_elems_per_token(&m) == plans[i].kv, "%s: kv elements per token %llu, want %llu",
			plans[i].preset, (unsigned long long)model_kv_elems_per_token(&m), (unsigned long long)plans[i].kv);
		T_CHECK(m.fused_experts == plans[i].fused, "%s: fused_experts %d", plans[i].preset, m.fused_experts);
		/* the GPU kernels run dense GQA layers only so far: refused by name */
		int gr = gpu_backend_ops.check(&m, &e);
		if (plans[i].attn == ATTN_GQA && !strchr(plans[i].moe, '1')) {
			T_CHECK(gr == 0, "%s: gpu check refused: %s", plans[i].preset, e.msg);
		} else {
			T_CHECK(gr == -E_UNSUPPORTED, "%s: the gpu backend accepted a MoE/MLA model", plans[i].preset);
			T_HAS(e.msg, plans[i].attn == ATTN_MLA ? "mla" : "moe");
		}
		model_free(&m);
		ckpt_close(&ck);
	}

	/* Hybrid models: 'L' = Gated DeltaNet, 'A' = gated full attention; MoE layers;
	 * KV only for the full-attention layers; recurrent state per sequence =
	 * the LINEAR layers' conv window (3 * conv_dim) + delta-rule state (nv * dk * dv) */
	static const struct {
		const char *preset, *attn, *moe;
		uint64_t kv, state;
		int fused, skipped;
	} hplans[] = {
		{"qwen3next-mini", "LLLA", "0111", 2 * 2 * 64, 3 * (3 * (2 * 64 + 128) + 4 * 32 * 32), 0, 0},
		{"qwen35-mini", "LLLA", "0000", 2 * 1 * 64, 3 * (3 * (2 * 64 + 96) + 2 * 32 * 48), 0, 4},
		{"qwen35moe-mini", "LLLA", "1111", 2 * 2 * 64, 3 * (3 * (2 * 64 + 128) + 4 * 32 * 32), 1, 4},
	};
	for (size_t i = 0; i < TS_ARRAY_LEN(hplans); i++) {
		struct ckpt ck;
		struct model m;
		const char *dir = t_ckpt(hplans[i].preset);
		T_CHECK(boot_err(dir, &e) == 0, "%s does not boot: %s", hplans[i].preset, e.msg);
		T_CHECK(ckpt_open(&ck, dir, &e) == 0 && model_load(&m, &ck, &e) == 0, "%s: %s", hplans[i].preset, e.msg);
		int ok = m.d.n_layers == (int)strlen(hplans[i].moe);
		for (int l = 0; ok && l < m.d.n_layers; l++)
			ok = m.layers[l].attn == (hplans[i].attn[l] == 'L' ? ATTN_LINEAR : ATTN_GQA) &&
			     m.layers[l].mlp == (hplans[i].moe[l] == '1' ? MLP_MOE : MLP_DENSE);
		T_CHECK(ok, "%s: layer plan is not %s with MoE layers %s", hplans[i].preset, hplans[i].attn, hplans[i].moe);
		T_CHECK(m.d.attn_gate && m.d.norm_offset && m.d.rope_dim == 16, "%s: gate %d, zero-centred norms %d, rope dims %d (want 1, 1, 16)",
			hplans[i].preset, m.d.attn_gate, m.d.norm_offset, m.d.rope_dim);
		T_CHECK(model_kv_elems_per_token(&m) == hplans[i].kv, "%s: kv elements per token %llu, want %llu",
			hplans[i].preset, (unsigned long long)model_kv_elems_per_token(&m), (unsigned long long)hplans[i].kv);
		T_CHECK(model_state_elems_per_seq(&m) == hplans[i].state, "%s: state elements per sequence %llu, want %llu",
			hplans[i].preset, (unsigned long long)model_state_elems_per_seq(&m),
			(unsigned long long)hplans[i].state);
		T_CHECK(m.fused_experts == hplans[i].fused, "%s: fused_experts %d", hplans[i].preset, m.fused_experts);
		T_CHECK(m.n_skipped == hplans[i].skipped, "%s: %d tensors skipped, want %d (the vision tower)",
			hplans[i].preset, m.n_skipped, hplans[i].skipped);
		T_CHECK(m.d.shared_gate == !!strchr(hplans[i].moe, '1'), "%s: shared expert gate %d", hplans[i].preset,
			m.d.shared_gate);
		/* no GPU kernels for Gated DeltaNet yet: refused by name, pointing at the CPU backend */
		T_CHECK(gpu_backend_ops.check(&m, &e) == -E_UNSUPPORTED, "%s: the gpu backend accepted a hybrid model",
			hplans[i].preset);
		T_HAS(e.msg, "linear attention");
		T_HAS(e.msg, "backend = cpu");
		T_CHECK(cpu_backend_ops.check(&m, &e) == 0, "%s: cpu check refused: %s", hplans[i].preset, e.msg);
		model_free(&m);
		ckpt_close(&ck);
	}
	/* hybrid features we lack, or configs that contradict themselves: refused at config read, naming the key */
	const char *d = broken("qwen3next-mini", CFG_SED("s/\"linear_attention\", \"full_attention\"/\"linear_attention\", \"sliding_attention\"/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "an unknown layer type accepted");
	T_HAS(e.msg, "layer_types");
	T_HAS(e.msg, "sliding_attention");
	d = broken("qwen35-mini", CFG_SED("s/\"attn_output_gate\": true/\"attn_output_gate\": false/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "attn_output_gate false accepted");
	T_HAS(e.msg, "attn_output_gate");
	d = broken("qwen3next-mini", CFG_SED("s/\"attention_bias\": false/\"attention_bias\": true/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "attention_bias true accepted on a hybrid model");
	T_HAS(e.msg, "attention_bias");
	d = broken("qwen3next-mini", CFG_SED("/\"linear_key_head_dim\"/d"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "a hybrid config without linear_key_head_dim accepted");
	T_HAS(e.msg, "linear_key_head_dim");
	d = broken("qwen3next-mini", CFG_SED("s/\"linear_num_value_heads\": 4/\"linear_num_value_heads\": 3/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "value heads not a multiple of key heads accepted");
	T_HAS(e.msg, "linear_num_value_heads 3");
	d = broken("qwen3next-mini", CFG_SED("s/\"partial_rotary_factor\": 0.25/\"partial_rotary_factor\": 0.3/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "an odd rotary dim accepted");
	T_HAS(e.msg, "partial_rotary_factor");
	d = broken("qwen3next-mini", CFG_SED("s/\"linear_conv_kernel_dim\": 4/\"linear_conv_kernel_dim\": 3/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "a conv width the checkpoint lacks accepted");
	T_HAS(e.msg, "model.layers.0.linear_attn.conv1d.weight");
	T_HAS(e.msg, "[256, 1, 3]");
	d = broken("qwen35moe-mini", "python3 -c 'import json; c = json.load(open(\"config.json\")); del c[\"text_config\"]; json.dump(c, open(\"config.json\", \"w\"))'");
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "Qwen3.5 without text_config accepted");
	T_HAS(e.msg, "text_config");
	d = broken("qwen35moe-mini", "sed -i 's/language_model\\.layers\\.2\\.linear_attn\\.in_proj_z/language_model.layers.2.linear_attn.in_proj_y/' *.safetensors model.safetensors.index.json");
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "missing in_proj_z accepted");
	T_HAS(e.msg, "model.language_model.layers.2.linear_attn.in_proj_z.weight");

	/* MoE / MLA checkpoints that do not match their config */
	d = broken("dsv3-mini", "sed -i 's/experts\\.3\\.up_proj/experts.3.up_prxj/' *.safetensors model.safetensors.index.json");
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "missing expert tensor accepted");
	T_HAS(e.msg, "model.layers.1.mlp.experts.3.up_proj.weight");
	T_HAS(e.msg, "missing");
	d = broken("dsv3-mini", CFG_SED("s/\"num_experts_per_tok\": *4/\"num_experts_per_tok\": 17/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "top-k above the expert count accepted");
	T_HAS(e.msg, "num_experts_per_tok 17");
	T_HAS(e.msg, "16 experts");
	d = broken("dsv3-mini", CFG_SED("s/\"topk_group\": *2/\"topk_group\": 5/"));
	T_CHECK(boot_err(d, &e) == -E_RANGE, "topk_group above n_group accepted");
	T_HAS(e.msg, "topk_group");
	d = broken("dsv3-mini", CFG_SED("s/\"kv_lora_rank\": *64/\"kv_lora_rank\": 32/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "kv_lora_rank mismatch accepted");
	T_HAS(e.msg, "self_attn.kv_a_proj_with_mqa.weight");
	T_HAS(e.msg, "[80, 128]");
	T_HAS(e.msg, "[48, 128]");
	T_HAS(e.msg, ".safetensors");
	d = broken("qwen3moe-fused-mini", CFG_SED("s/\"moe_intermediate_size\": *64/\"moe_intermediate_size\": 32/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "fused experts of the wrong width accepted");
	T_HAS(e.msg, "model.layers.1.mlp.experts.gate_up_proj");
	T_HAS(e.msg, "[8, 128, 128]");
	T_HAS(e.msg, "[8, 64, 128]");
	d = broken("dsv2lite-mini", CFG_SED("s/\"topk_method\": *\"greedy\"/\"topk_method\": \"fancy\"/"));
	T_CHECK(boot_err(d, &e) == -E_UNSUPPORTED, "unknown topk_method accepted");
	T_HAS(e.msg, "fancy");
	T_HAS(e.msg, "group_limited_greedy");
	d = broken("qwen3moe-mini", CFG_SED("s/\"mlp_only_layers\": *\\[0\\]/\"mlp_only_layers\": [7]/"));
	T_CHECK(boot_err(d, &e) == -E_FORMAT, "mlp_only_layers past the last layer accepted");
	T_HAS(e.msg, "mlp_only_layers");

	/* a head size the GPU attention kernels lack: refused when config.json is
	 * read (head_dim 32: 8 heads of 32 over the same q/k/v tensors), at boot
	 * and by --check-config with backend = gpu; the CPU backend runs it */
	d = broken("llama2-mini", CFG_SED("s/\"num_attention_heads\": *4/\"num_attention_heads\": 8/;"
					   "s/\"num_key_value_heads\": *2/\"num_key_value_heads\": 4/;"
					   "s/\"head_dim\": *64/\"head_dim\": 32/"));
	T_CHECK(boot_err(d, &e) == 0, "head_dim 32 on the CPU backend: %s", e.msg);
	{
		struct cfg gc;
		char note[1024];
		t_cfg(&gc, d);
		gc.device.backend = CFG_BACKEND_GPU;
		T_CHECK(engine_check_model(&gc, note, sizeof(note), &e) == -E_UNSUPPORTED, "gpu: head_dim 32 accepted");
		T_HAS(e.msg, "head_dim 32");
		T_HAS(e.msg, "the attention kernels take head_dim 64");
		gc.device.backend = CFG_BACKEND_AUTO;
		T_CHECK(engine_check_model(&gc, note, sizeof(note), &e) == 0, "auto: %s", e.msg);
		T_HAS(note, "head_dim 32");
		gc.device.backend = CFG_BACKEND_CPU;
		T_CHECK(engine_check_model(&gc, note, sizeof(note), &e) == 0, "cpu: %s", e.msg);
		T_HAS(note, "LlamaForCausalLM");
	}

	/* head_dim 96 and 256: kernels built, not yet checked on a device:
	 * refused on the GPU with a message that says so; the CPU backend runs
	 * them (t_golden holds their logits) */
	static const char *const unchecked[] = {"llama-hd96-mini", "qwen3-hd256-mini"};
	for (int i = 0; i < 2; i++) {
		struct cfg gc;
		char note[1024];
		t_cfg(&gc, t_ckpt(unchecked[i]));
		T_CHECK(boot_err(t_ckpt(unchecked[i]), &e) == 0, "%s on the CPU backend: %s", unchecked[i], e.msg);
		gc.device.backend = CFG_BACKEND_GPU;
		T_CHECK(engine_check_model(&gc, note, sizeof(note), &e) == -E_UNSUPPORTED, "gpu: %s accepted",
			unchecked[i]);
		T_HAS(e.msg, i ? "head_dim 256" : "head_dim 96");
		T_HAS(e.msg, "not yet checked on a device");
		T_HAS(e.msg, "backend = cpu");
	}

	/* a layer more than the checkpoint has: the first missing tensor is named */
	d = broken("llama2-mini", CFG_SED("s/\"num_hidden_layers\": *2/\"num_hidden_layers\": 3/"));
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
