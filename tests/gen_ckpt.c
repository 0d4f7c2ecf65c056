/* gen_ckpt: tiny random-weight Hugging Face checkpoints with real structure.
 *
 *   gen_ckpt --preset NAME --out DIR [--seed N] [--tokenizer] [--no-weights]
 *   gen_ckpt --preset NAME --tensors
 *   gen_ckpt --list
 *
 * Writes DIR/config.json and the safetensors file(s) (model.safetensors, or
 * model-0000k-of-0000N.safetensors plus model.safetensors.index.json) for one
 * of the presets below, then prints one summary line and the checkpoint hash
 * (FNV-1a 64 over the directory, see tests/golden.h), which tests/hf_golden.py
 * records next to the golden logits it computes with transformers.
 *
 * Families: Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, Mixtral, DeepSeek V2 and
 * V3 (multi-head latent attention, routed plus shared experts). Names, shapes
 * and dtypes are what transformers 5.17's save_pretrained writes: it fuses
 * the experts in memory (mlp.experts.gate_up_proj) but reverts that when
 * saving, so the files hold one tensor per expert and matrix
 * (mlp.experts.N.gate_proj.weight; Mixtral block_sparse_moe.experts.N.w1.weight).
 * qwen3moe-fused-mini stores them fused instead, as Qwen3.5's checkpoints do
 * and transformers loads unchanged: gate_up_proj (experts, 2 * ffn, hidden),
 * gate rows first, and down_proj (experts, hidden, ffn). DeepSeek V3's
 * e_score_correction_bias is F32 in a BF16 model, as transformers keeps it
 * (_keep_in_fp32_modules_strict).
 *
 * Hybrid families (Qwen3-Next, Qwen3.5): Gated DeltaNet layers
 * (linear_attn.*: Qwen3-Next's fused in_proj_qkvz / in_proj_ba, Qwen3.5's
 * in_proj_qkv / _z / _b / _a; conv1d.weight [conv_dim, 1, width]) with every
 * full_attention_interval-th layer gated full attention (q_proj twice as
 * tall: per head q then gate), zero-centred RMSNorm weights drawn N(0, 0.1),
 * Qwen3-Next's shared_expert with shared_expert_gate [1, hidden]. The Qwen3.5
 * presets use the multimodal layout of the hub's checkpoints: config.json
 * nests the text config in text_config, the text tensors sit under
 * model.language_model., and a stand-in vision tower (model.visual.*, four
 * tensors) is there for the engine to skip.
 *
 * Determinism: the bytes depend on the preset and the seed only. Every tensor
 * has its own generator (splitmix64 seeded from the seed and the FNV-1a 64 of
 * the tensor name), so values do not depend on the order of writing or on
 * sharding. Normals come from the polar Box-Muller method with our own log
 * (frexp, which is exact, and a fixed series), so no libm rounding reaches the
 * output; sqrt is correctly rounded by IEEE 754. Values are rounded to the
 * file dtype with base.h's converters and written byte by byte little endian;
 * JSON numbers use fixed formats. ISO C mode keeps GCC from contracting a*b+c
 * into fma, which would change the last bits of the doubles.
 *
 * Init: linear weights ~ N(0, 1/sqrt(in_features)) (router weights are linear;
 * a 3-D expert tensor's in_features is its last dim); embeddings (and so a
 * tied lm_head) ~ N(0, 1/sqrt(hidden)); RMSNorm and q/k-norm weights
 * ~ 1 + N(0, 0.1); biases and e_score_correction_bias ~ N(0, 0.1).
 *
 * --tokenizer also writes DIR/tokenizer.json and DIR/tokenizer_config.json
 * (Llama 3 and Qwen presets only; see the tokenizer section) and prints a
 * line about them before the hash (which then covers them); without it no
 * tokenizer file is written, so the directory hash is what it always was.
 * --no-weights writes no safetensors and prints no hash: with --tokenizer it
 * adds a tokenizer to a checkpoint made before, or makes one for the 16 GB
 * llama31-8b without its weights.
 * --tensors writes nothing and prints the tensor table instead (file, name,
 * dtype, shape, in the index's order): the layout of a benchmark preset
 * without its tens of gigabytes.
 *
 * Errors (bad flag, unknown preset, no tokenizer for the preset, cannot
 * write) print one line and exit 2.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base.h"
#include "tok.h"
#include "golden.h"

/* ---------------------------------------------------------------- presets */

enum family {
	FAM_LLAMA,
	FAM_MISTRAL,
	FAM_QWEN2,
	FAM_QWEN3,
	FAM_QWEN3_MOE,
	FAM_MIXTRAL,
	FAM_DEEPSEEK_V2,
	FAM_DEEPSEEK_V3,
	FAM_QWEN3_NEXT,
	FAM_QWEN35,     /* Qwen3.5 dense: multimodal layout, text under model.language_model. */
	FAM_QWEN35_MOE,
};
/* The tokenizer family of a preset (see the tokenizer section). */
enum tok_kind { TK_NONE, TK_LLAMA3, TK_QWEN2, TK_QWEN3 };

/* Llama 3 rope scaling ("rope_type": "llama3"); factor 0 = none. */
struct rope_llama3 {
	double factor, low, high;
	int orig;
};

/* YaRN rope scaling as DeepSeek's configs spell it; factor 0 = none. */
struct rope_yarn {
	double factor, beta_fast, beta_slow, mscale, mscale_all_dim;
	int orig;
};

/* Routed experts (MoE families). Which layers have them is the family's
 * rule, layer_is_moe(). */
struct moe {
	int n_experts, top_k;
	int ffn;                     /* moe_intermediate_size (Mixtral: unused, its experts are intermediate_size wide) */
	int norm_topk;               /* norm_topk_prob */
	double aux_coef;             /* router_aux_loss_coef (Qwen3-MoE, Mixtral) */
	/* Qwen3-MoE */
	int sparse_step;             /* decoder_sparse_step */
	int mlp_only[4], n_mlp_only; /* mlp_only_layers */
	int fused;                   /* experts as 3-D gate_up_proj and down_proj */
	/* DeepSeek */
	int n_shared;                /* n_shared_experts: one MLP n_shared * ffn wide */
	int first_dense;             /* first_k_dense_replace */
	int n_group, topk_group;
	double routed_scale;         /* routed_scaling_factor */
	const char *topk_method, *scoring_func;
};

/* Hybrid linear attention (Qwen3-Next, Qwen3.5): Gated DeltaNet layers with
 * every interval-th layer full (gated) attention. */
struct hybrid {
	int nk, nv, dk, dv;          /* linear_num_key_heads, _value_heads, linear_key_head_dim, _value_head_dim */
	int conv;                    /* linear_conv_kernel_dim */
	int interval;                /* full_attention_interval */
	double prf;                  /* partial_rotary_factor */
	int shared_ffn;              /* shared_expert_intermediate_size (MoE) */
	int vision;                  /* a tiny vision tower (model.visual.*) that the engine skips */
};

/* Multi-head latent attention (DeepSeek). */
struct mla {
	int q_lora;                  /* q_lora_rank; 0 = null: one q_proj */
	int kv_lora, nope, rope, v;  /* kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim */
};

struct preset {
	const char *name;
	const char *help;
	enum family fam;
	int hidden, layers, heads, kv_heads;
	int head_dim;                /* not with MLA (struct mla has the head dims) */
	int ffn;                     /* intermediate_size: the dense MLP layers */
	int vocab;
	int max_pos;                 /* max_position_embeddings */
	double rope_theta, eps;
	int tied;
	enum ts_dtype dtype;
	int n_shards;
	int sliding_window;          /* 0 = none (Mistral only) */
	struct rope_llama3 l3;
	struct rope_yarn yarn;
	struct moe moe;
	struct mla mla;
	struct hybrid hy;
	/* Benchmark presets: linear and embedding weights N(0, init_std) instead
	 * of the fan-in scaled init, filled by threads in 1 Mi-element chunks
	 * each with its own stream (0 = the default, single-stream init). */
	double init_std;
	enum tok_kind tok;           /* what --tokenizer writes; TK_NONE: refused */
};

static const struct preset presets[] = {
	{ .name = "llama2-mini", .help = "Llama 2 layout, GQA 4/2, untied, BF16, one file",
	  .fam = FAM_LLAMA, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 64,
	  .ffn = 512, .vocab = 512, .max_pos = 4096, .rope_theta = 10000.0, .eps = 1e-5,
	  .dtype = TS_BF16, .n_shards = 1 },
	{ .name = "llama3-mini", .help = "Llama 3.1 layout, llama3 rope scaling (orig 32), tied, BF16, 2 shards",
	  .fam = FAM_LLAMA, .hidden = 256, .layers = 2, .heads = 2, .kv_heads = 1, .head_dim = 128,
	  .ffn = 384, .vocab = 640, .max_pos = 4096, .rope_theta = 500000.0, .eps = 1e-5, .tied = 1,
	  .dtype = TS_BF16, .n_shards = 2, .l3 = { 8.0, 1.0, 4.0, 32 }, .tok = TK_LLAMA3 },
	{ .name = "mistral-mini", .help = "Mistral, sliding window 16, untied, F16, one file",
	  .fam = FAM_MISTRAL, .hidden = 192, .layers = 2, .heads = 3, .kv_heads = 1, .head_dim = 64,
	  .ffn = 384, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-5,
	  .dtype = TS_F16, .n_shards = 1, .sliding_window = 16 },
	{ .name = "qwen2-mini", .help = "Qwen2, QKV bias, tied, F32, 3 shards",
	  .fam = FAM_QWEN2, .hidden = 128, .layers = 2, .heads = 2, .kv_heads = 1, .head_dim = 64,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-6, .tied = 1,
	  .dtype = TS_F32, .n_shards = 3, .tok = TK_QWEN2 },
	{ .name = "qwen3-mini", .help = "Qwen3, q/k norm, head_dim 128 (q dim 512 != hidden 192), untied, BF16, 2 shards",
	  .fam = FAM_QWEN3, .hidden = 192, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 128,
	  .ffn = 384, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 2, .tok = TK_QWEN3 },
	{ .name = "llama-hd96-mini", .help = "Llama layout, head_dim 96 (q dim 384 != hidden 256), GQA 4/2, untied, BF16, one file",
	  .fam = FAM_LLAMA, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 2, .head_dim = 96,
	  .ffn = 512, .vocab = 512, .max_pos = 4096, .rope_theta = 10000.0, .eps = 1e-5,
	  .dtype = TS_BF16, .n_shards = 1 },
	{ .name = "qwen3-hd256-mini", .help = "Qwen3, q/k norm, head_dim 256 (as Qwen3.5's full-attention layers), GQA 4/1, BF16, one file",
	  .fam = FAM_QWEN3, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 1, .head_dim = 256,
	  .ffn = 512, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 1 },
	{ .name = "qwen3moe-mini",
	  .help = "Qwen3-MoE, 8 experts top-2 normalised, layer 0 dense (mlp_only_layers), q/k norm, tied, BF16, 2 shards",
	  .fam = FAM_QWEN3_MOE, .hidden = 128, .layers = 3, .heads = 4, .kv_heads = 2, .head_dim = 64,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-6, .tied = 1,
	  .dtype = TS_BF16, .n_shards = 2,
	  .moe = { .n_experts = 8, .top_k = 2, .ffn = 64, .norm_topk = 1, .aux_coef = 0.001,
		   .sparse_step = 1, .mlp_only = { 0 }, .n_mlp_only = 1 },
	  .tok = TK_QWEN3 },
	{ .name = "qwen3moe-fused-mini",
	  .help = "Qwen3-MoE, experts fused 3-D (gate_up_proj, down_proj), 8 experts top-3, MoE every 2nd layer, untied, BF16, one file",
	  .fam = FAM_QWEN3_MOE, .hidden = 128, .layers = 4, .heads = 4, .kv_heads = 2, .head_dim = 64,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 1,
	  .moe = { .n_experts = 8, .top_k = 3, .ffn = 64, .aux_coef = 0.001, .sparse_step = 2, .fused = 1 },
	  .tok = TK_QWEN3 },
	{ .name = "mixtral-mini", .help = "Mixtral, 4 experts top-2 (w1/w2/w3), GQA 4/1, untied, F16, one file",
	  .fam = FAM_MIXTRAL, .hidden = 256, .layers = 2, .heads = 4, .kv_heads = 1, .head_dim = 64,
	  .ffn = 128, .vocab = 512, .max_pos = 4096, .rope_theta = 1000000.0, .eps = 1e-5,
	  .dtype = TS_F16, .n_shards = 1,
	  .moe = { .n_experts = 4, .top_k = 2, .aux_coef = 0.02 } },
	{ .name = "dsv2lite-mini",
	  .help = "DeepSeek-V2-Lite layout: MLA (no q LoRA), 8 routed top-2 + 2 shared experts, layer 0 dense, yarn, untied, BF16, 2 shards",
	  .fam = FAM_DEEPSEEK_V2, .hidden = 128, .layers = 3, .heads = 4, .kv_heads = 4,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 10000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 2,
	  .yarn = { .factor = 32.0, .beta_fast = 32.0, .beta_slow = 1.0, .mscale = 0.707,
		    .mscale_all_dim = 0.707, .orig = 128 },
	  .moe = { .n_experts = 8, .top_k = 2, .ffn = 48, .n_shared = 2, .first_dense = 1, .n_group = 1,
		   .topk_group = 1, .routed_scale = 1.0, .topk_method = "greedy", .scoring_func = "softmax" },
	  .mla = { .kv_lora = 64, .nope = 32, .rope = 16, .v = 32 } },
	{ .name = "dsv3-mini",
	  .help = "DeepSeek-V3 layout: MLA with q LoRA, 16 routed top-4 in 4 groups (sigmoid, F32 score bias) + 1 shared, yarn, untied, BF16, 3 shards",
	  .fam = FAM_DEEPSEEK_V3, .hidden = 128, .layers = 3, .heads = 4, .kv_heads = 4,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 10000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 3,
	  .yarn = { .factor = 40.0, .beta_fast = 32.0, .beta_slow = 1.0, .mscale = 1.0,
		    .mscale_all_dim = 1.0, .orig = 128 },
	  .moe = { .n_experts = 16, .top_k = 4, .ffn = 48, .norm_topk = 1, .n_shared = 1, .first_dense = 1,
		   .n_group = 4, .topk_group = 2, .routed_scale = 2.5, .topk_method = "noaux_tc",
		   .scoring_func = "sigmoid" },
	  .mla = { .q_lora = 96, .kv_lora = 64, .nope = 32, .rope = 16, .v = 32 } },
	{ .name = "qwen3next-mini",
	  .help = "Qwen3-Next: Gated DeltaNet 3:1 with gated attention (partial rope 0.25), 8 experts top-2 + gated shared expert, layer 0 dense, untied, BF16, 2 shards",
	  .fam = FAM_QWEN3_NEXT, .hidden = 128, .layers = 4, .heads = 4, .kv_heads = 2, .head_dim = 64,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 10000000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 2,
	  .moe = { .n_experts = 8, .top_k = 2, .ffn = 64, .norm_topk = 1, .aux_coef = 0.001, .sparse_step = 1,
		   .mlp_only = { 0 }, .n_mlp_only = 1 },
	  .hy = { .nk = 2, .nv = 4, .dk = 32, .dv = 32, .conv = 4, .interval = 4, .prf = 0.25, .shared_ffn = 96 },
	  .tok = TK_QWEN3 },
	{ .name = "qwen35-mini",
	  .help = "Qwen3.5 dense, multimodal layout (text_config, model.language_model., a tiny vision tower), Gated DeltaNet 3:1 (dk 32 != dv 48), tied, BF16, one file",
	  .fam = FAM_QWEN35, .hidden = 128, .layers = 4, .heads = 4, .kv_heads = 1, .head_dim = 64,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 10000000.0, .eps = 1e-6, .tied = 1,
	  .dtype = TS_BF16, .n_shards = 1,
	  .hy = { .nk = 2, .nv = 2, .dk = 32, .dv = 48, .conv = 4, .interval = 4, .prf = 0.25, .vision = 1 },
	  .tok = TK_QWEN3 },
	{ .name = "qwen35moe-mini",
	  .help = "Qwen3.5 MoE, multimodal layout with a tiny vision tower, fused 3-D experts (8 top-2) + gated shared expert, Gated DeltaNet 3:1, untied, BF16, 2 shards",
	  .fam = FAM_QWEN35_MOE, .hidden = 128, .layers = 4, .heads = 4, .kv_heads = 2, .head_dim = 64,
	  .ffn = 256, .vocab = 512, .max_pos = 4096, .rope_theta = 10000000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 2,
	  .moe = { .n_experts = 8, .top_k = 2, .ffn = 64, .norm_topk = 1, .aux_coef = 0.001, .sparse_step = 1,
		   .fused = 1 },
	  .hy = { .nk = 2, .nv = 4, .dk = 32, .dv = 32, .conv = 4, .interval = 4, .prf = 0.25, .shared_ffn = 64,
		  .vision = 1 },
	  .tok = TK_QWEN3 },
	{ .name = "llama3-small", .help = "Llama 3.1 layout, 4 layers, hidden 512, vocab 2048, tied, BF16, one file",
	  .fam = FAM_LLAMA, .hidden = 512, .layers = 4, .heads = 8, .kv_heads = 2, .head_dim = 64,
	  .ffn = 1376, .vocab = 2048, .max_pos = 4096, .rope_theta = 500000.0, .eps = 1e-5, .tied = 1,
	  .dtype = TS_BF16, .n_shards = 1, .l3 = { 8.0, 1.0, 4.0, 8192 }, .tok = TK_LLAMA3 },
	{ .name = "llama31-8b",
	  .help = "Llama 3.1 8B shape (hidden 4096, 32 layers, GQA 32/8, ffn 14336, vocab 128256), N(0, 0.02) weights, untied, BF16, 4 shards (16 GB)",
	  .fam = FAM_LLAMA, .hidden = 4096, .layers = 32, .heads = 32, .kv_heads = 8, .head_dim = 128,
	  .ffn = 14336, .vocab = 128256, .max_pos = 4096, .rope_theta = 500000.0, .eps = 1e-5,
	  .dtype = TS_BF16, .n_shards = 4, .l3 = { 8.0, 1.0, 4.0, 8192 }, .init_std = 0.02,
	  .tok = TK_LLAMA3 },
	{ .name = "qwen3moe-30b-a3b",
	  .help = "Qwen3-30B-A3B shape (hidden 2048, 48 layers, GQA 32/4, 128 experts top-8 of 768, vocab 151936), N(0, 0.02) weights, untied, BF16, 16 shards (61 GB)",
	  .fam = FAM_QWEN3_MOE, .hidden = 2048, .layers = 48, .heads = 32, .kv_heads = 4, .head_dim = 128,
	  .ffn = 6144, .vocab = 151936, .max_pos = 40960, .rope_theta = 1000000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 16,
	  .moe = { .n_experts = 128, .top_k = 8, .ffn = 768, .norm_topk = 1, .aux_coef = 0.001, .sparse_step = 1 },
	  .init_std = 0.02, .tok = TK_QWEN3 },
	{ .name = "dsv2lite",
	  .help = "DeepSeek-V2-Lite shape (hidden 2048, 27 layers, MLA 16 heads kv_lora 512, 64 experts top-6 of 1408 + 2 shared, vocab 102400), N(0, 0.02) weights, untied, BF16, 8 shards (31 GB)",
	  .fam = FAM_DEEPSEEK_V2, .hidden = 2048, .layers = 27, .heads = 16, .kv_heads = 16,
	  .ffn = 10944, .vocab = 102400, .max_pos = 163840, .rope_theta = 10000.0, .eps = 1e-6,
	  .dtype = TS_BF16, .n_shards = 8,
	  .yarn = { .factor = 40.0, .beta_fast = 32.0, .beta_slow = 1.0, .mscale = 0.707,
		    .mscale_all_dim = 0.707, .orig = 4096 },
	  .moe = { .n_experts = 64, .top_k = 6, .ffn = 1408, .n_shared = 2, .first_dense = 1, .n_group = 1,
		   .topk_group = 1, .routed_scale = 1.0, .topk_method = "greedy", .scoring_func = "softmax" },
	  .mla = { .kv_lora = 512, .nope = 128, .rope = 64, .v = 128 },
	  .init_std = 0.02 },
};

/* ---------------------------------------------------------------- families */

/* How a family names its MoE tensors and which layers have experts. */
enum moe_style {
	MOE_NONE,
	MOE_QWEN,     /* mlp.gate, mlp.experts.N.{gate,up,down}_proj; MoE unless in mlp_only_layers, every sparse_step-th */
	MOE_MIXTRAL,  /* block_sparse_moe.gate, block_sparse_moe.experts.N.w1/w2/w3; every layer */
	MOE_DEEPSEEK, /* as MOE_QWEN plus mlp.shared_experts; layers from first_k_dense_replace on */
};

struct sbuf;

struct family_info {
	const char *arch, *type;     /* config.json's architectures[0] and model_type */
	int qkv_bias;                /* q/k/v_proj.bias */
	int qk_norm;                 /* self_attn.q_norm / k_norm over head_dim */
	int mla;                     /* multi-head latent attention instead of q/k/v_proj */
	int score_bias;              /* mlp.gate.e_score_correction_bias, F32 */
	int hybrid;                  /* 1: Qwen3-Next (fused in_proj_qkvz/ba), 2: Qwen3.5 (split, nested) */
	enum moe_style moe;
	void (*config)(const struct preset *p, struct sbuf *b); /* the family's own config.json keys */
};

static void cfg_llama(const struct preset *p, struct sbuf *b);
static void cfg_mistral(const struct preset *p, struct sbuf *b);
static void cfg_qwen2(const struct preset *p, struct sbuf *b);
static void cfg_qwen3(const struct preset *p, struct sbuf *b);
static void cfg_qwen3_moe(const struct preset *p, struct sbuf *b);
static void cfg_mixtral(const struct preset *p, struct sbuf *b);
static void cfg_deepseek(const struct preset *p, struct sbuf *b);
static void cfg_hybrid(const struct preset *p, struct sbuf *b);

static const struct family_info families[] = {
	[FAM_LLAMA] = { "LlamaForCausalLM", "llama", .config = cfg_llama },
	[FAM_MISTRAL] = { "MistralForCausalLM", "mistral", .config = cfg_mistral },
	[FAM_QWEN2] = { "Qwen2ForCausalLM", "qwen2", .qkv_bias = 1, .config = cfg_qwen2 },
	[FAM_QWEN3] = { "Qwen3ForCausalLM", "qwen3", .qk_norm = 1, .config = cfg_qwen3 },
	[FAM_QWEN3_MOE] = { "Qwen3MoeForCausalLM", "qwen3_moe", .qk_norm = 1, .moe = MOE_QWEN,
			    .config = cfg_qwen3_moe },
	[FAM_MIXTRAL] = { "MixtralForCausalLM", "mixtral", .moe = MOE_MIXTRAL, .config = cfg_mixtral },
	[FAM_DEEPSEEK_V2] = { "DeepseekV2ForCausalLM", "deepseek_v2", .mla = 1, .moe = MOE_DEEPSEEK,
			      .config = cfg_deepseek },
	[FAM_DEEPSEEK_V3] = { "DeepseekV3ForCausalLM", "deepseek_v3", .mla = 1, .score_bias = 1,
			      .moe = MOE_DEEPSEEK, .config = cfg_deepseek },
	[FAM_QWEN3_NEXT] = { "Qwen3NextForCausalLM", "qwen3_next", .qk_norm = 1, .moe = MOE_QWEN, .hybrid = 1,
			     .config = cfg_hybrid },
	[FAM_QWEN35] = { "Qwen3_5ForConditionalGeneration", "qwen3_5", .qk_norm = 1, .hybrid = 2,
			 .config = cfg_hybrid },
	[FAM_QWEN35_MOE] = { "Qwen3_5MoeForConditionalGeneration", "qwen3_5_moe", .qk_norm = 1, .moe = MOE_QWEN,
			     .hybrid = 2, .config = cfg_hybrid },
};

/* Whether layer i has routed experts (else a dense MLP), as transformers
 * decides when it builds the decoder layers. */
static int layer_is_moe(const struct preset *p, int i)
{
	switch (families[p->fam].moe) {
	case MOE_NONE:
		return 0;
	case MOE_QWEN:
		for (int k = 0; k < p->moe.n_mlp_only; k++)
			if (p->moe.mlp_only[k] == i)
				return 0;
		return (i + 1) % p->moe.sparse_step == 0;
	case MOE_MIXTRAL:
		return 1;
	case MOE_DEEPSEEK:
		return i >= p->moe.first_dense;
	}
	return 0;
}

static const char *dtype_torch_name(enum ts_dtype t)
{
	return t == TS_F32 ? "float32" : t == TS_F16 ? "float16" : "bfloat16";
}

/* ---------------------------------------------------------------- errors */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("gen_ckpt: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void *xalloc(size_t bytes)
{
	void *p = ts_alloc(bytes);
	if (!p)
		die("out of memory allocating %zu bytes", bytes);
	return p;
}

/* ---------------------------------------------------------------- random numbers */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t *s)
{
	return (double)(splitmix64(s) >> 11) * 0x1.0p-53;
}

/* Natural log of x > 0 from exact operations and a fixed series, so that the
 * result is the same on every IEEE 754 machine (libm's log may differ in the
 * last bit between versions). ln x = e ln 2 + 2 atanh((m-1)/(m+1)). */
static double det_log(double x)
{
	int e;
	double m = frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
	if (m < 0.70710678118654752) {
		m *= 2.0;
		e -= 1;
	}
	double s = (m - 1.0) / (m + 1.0), s2 = s * s, p = 0.0; /* |s| <= 0.172 */
	for (int k = 13; k >= 0; k--)
		p = p * s2 + 1.0 / (double)(2 * k + 1);
	return (double)e * 0.69314718055994530942 + 2.0 * s * p;
}

struct rng {
	uint64_t state;
	int have_spare;
	double spare;
};

/* Standard normal, Marsaglia's polar form of Box-Muller. */
static double rng_normal(struct rng *r)
{
	if (r->have_spare) {
		r->have_spare = 0;
		return r->spare;
	}
	double u, v, s;
	do {
		u = 2.0 * rng_uniform(&r->state) - 1.0;
		v = 2.0 * rng_uniform(&r->state) - 1.0;
		s = u * u + v * v;
	} while (s >= 1.0 || s == 0.0);
	double f = sqrt(-2.0 * det_log(s) / s);
	r->spare = v * f;
	r->have_spare = 1;
	return u * f;
}

/* ---------------------------------------------------------------- tensors */

enum init {
	INIT_LINEAR, INIT_EMBED, INIT_NORM, INIT_BIAS,
	INIT_ZNORM, /* a zero-centred RMSNorm weight (x * (1 + w)): N(0, 0.1) */
};

struct tensor {
	char name[96];
	int n_dims;            /* 1..3 */
	int64_t shape[3];      /* (n_dims) */
	enum ts_dtype dtype;   /* the preset's, but F32 for e_score_correction_bias */
	enum init init;
	int64_t fan_in;        /* INIT_LINEAR: in_features, the last dim */
	uint64_t bytes;
	int shard;             /* 0-based */
	uint64_t off;          /* data offset inside its shard */
};

struct model {
	const struct preset *p;
	uint64_t seed;
	struct tensor *t;      /* (n), in module order */
	int n, cap;
	uint64_t total_bytes, n_params;
};

static int64_t tensor_numel(const struct tensor *t)
{
	int64_t n = 1;
	for (int k = 0; k < t->n_dims; k++)
		n *= t->shape[k];
	return n;
}

/* Appends a tensor of shape (d0), (d0, d1) or (d0, d1, d2): trailing zero
 * dims are absent. The pointer is valid until the next add_tensor. */
static struct tensor *add_tensor(struct model *m, enum init init, int64_t d0, int64_t d1, int64_t d2,
				 const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static struct tensor *add_tensor(struct model *m, enum init init, int64_t d0, int64_t d1, int64_t d2,
				 const char *fmt, ...)
{
	if (m->n == m->cap) {
		int cap = m->cap ? 2 * m->cap : 256;
		struct tensor *t = ts_realloc(m->t, (size_t)cap * sizeof(*t));
		if (!t)
			die("out of memory for %d tensors", cap);
		m->t = t;
		m->cap = cap;
	}
	struct tensor *t = &m->t[m->n++];
	memset(t, 0, sizeof(*t));
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= sizeof(t->name))
		die("internal: tensor name too long: %s...", t->name);
	t->init = init;
	t->shape[0] = d0;
	t->shape[1] = d1;
	t->shape[2] = d2;
	t->n_dims = d2 ? 3 : d1 ? 2 : 1;
	t->fan_in = t->shape[t->n_dims - 1];
	t->dtype = m->p->dtype;
	return t;
}

/* self_attn of layer L ("model.layers.N"). */
static void add_attention(struct model *m, const char *L)
{
	const struct preset *p = m->p;
	const struct family_info *f = &families[p->fam];
	int64_t h = p->hidden;
	if (f->mla) {
		const struct mla *a = &p->mla;
		int64_t qd = (int64_t)p->heads * (a->nope + a->rope);
		if (a->q_lora) {
			add_tensor(m, INIT_LINEAR, a->q_lora, h, 0, "%s.self_attn.q_a_proj.weight", L);
			add_tensor(m, INIT_NORM, a->q_lora, 0, 0, "%s.self_attn.q_a_layernorm.weight", L);
			add_tensor(m, INIT_LINEAR, qd, a->q_lora, 0, "%s.self_attn.q_b_proj.weight", L);
		} else {
			add_tensor(m, INIT_LINEAR, qd, h, 0, "%s.self_attn.q_proj.weight", L);
		}
		add_tensor(m, INIT_LINEAR, a->kv_lora + a->rope, h, 0, "%s.self_attn.kv_a_proj_with_mqa.weight", L);
		add_tensor(m, INIT_NORM, a->kv_lora, 0, 0, "%s.self_attn.kv_a_layernorm.weight", L);
		add_tensor(m, INIT_LINEAR, (int64_t)p->heads * (a->nope + a->v), a->kv_lora, 0,
			   "%s.self_attn.kv_b_proj.weight", L);
		add_tensor(m, INIT_LINEAR, h, (int64_t)p->heads * a->v, 0, "%s.self_attn.o_proj.weight", L);
		return;
	}
	int64_t qd = (int64_t)p->heads * p->head_dim, kvd = (int64_t)p->kv_heads * p->head_dim;
	/* hybrid: q_proj carries the output gate, per head q then gate */
	add_tensor(m, INIT_LINEAR, f->hybrid ? 2 * qd : qd, h, 0, "%s.self_attn.q_proj.weight", L);
	if (f->qkv_bias)
		add_tensor(m, INIT_BIAS, qd, 0, 0, "%s.self_attn.q_proj.bias", L);
	add_tensor(m, INIT_LINEAR, kvd, h, 0, "%s.self_attn.k_proj.weight", L);
	if (f->qkv_bias)
		add_tensor(m, INIT_BIAS, kvd, 0, 0, "%s.self_attn.k_proj.bias", L);
	add_tensor(m, INIT_LINEAR, kvd, h, 0, "%s.self_attn.v_proj.weight", L);
	if (f->qkv_bias)
		add_tensor(m, INIT_BIAS, kvd, 0, 0, "%s.self_attn.v_proj.bias", L);
	add_tensor(m, INIT_LINEAR, h, qd, 0, "%s.self_attn.o_proj.weight", L);
	if (f->qk_norm) {
		enum init ni = f->hybrid ? INIT_ZNORM : INIT_NORM;
		add_tensor(m, ni, p->head_dim, 0, 0, "%s.self_attn.q_norm.weight", L);
		add_tensor(m, ni, p->head_dim, 0, 0, "%s.self_attn.k_norm.weight", L);
	}
}

/* linear_attn of layer L: Gated DeltaNet. Qwen3-Next fuses q/k/v/z and b/a
 * (grouped per key head); Qwen3.5 keeps in_proj_qkv, _z, _b, _a apart. */
static void add_linear_attention(struct model *m, const char *L)
{
	const struct preset *p = m->p;
	const struct hybrid *y = &p->hy;
	int64_t h = p->hidden, kd = (int64_t)y->nk * y->dk, vd = (int64_t)y->nv * y->dv, cd = 2 * kd + vd;
	if (families[p->fam].hybrid == 1) {
		add_tensor(m, INIT_LINEAR, 2 * kd + 2 * vd, h, 0, "%s.linear_attn.in_proj_qkvz.weight", L);
		add_tensor(m, INIT_LINEAR, 2 * (int64_t)y->nv, h, 0, "%s.linear_attn.in_proj_ba.weight", L);
	} else {
		add_tensor(m, INIT_LINEAR, cd, h, 0, "%s.linear_attn.in_proj_qkv.weight", L);
		add_tensor(m, INIT_LINEAR, vd, h, 0, "%s.linear_attn.in_proj_z.weight", L);
		add_tensor(m, INIT_LINEAR, y->nv, h, 0, "%s.linear_attn.in_proj_b.weight", L);
		add_tensor(m, INIT_LINEAR, y->nv, h, 0, "%s.linear_attn.in_proj_a.weight", L);
	}
	add_tensor(m, INIT_LINEAR, cd, 1, y->conv, "%s.linear_attn.conv1d.weight", L);
	add_tensor(m, INIT_NORM, y->nv, 0, 0, "%s.linear_attn.dt_bias", L);
	add_tensor(m, INIT_BIAS, y->nv, 0, 0, "%s.linear_attn.A_log", L);
	add_tensor(m, INIT_NORM, y->dv, 0, 0, "%s.linear_attn.norm.weight", L);
	add_tensor(m, INIT_LINEAR, h, vd, 0, "%s.linear_attn.out_proj.weight", L);
}

/* A SwiGLU MLP ffn wide: L.mlp (dense layer), L.mlp.experts.N or L.mlp.shared_experts. */
static void add_mlp(struct model *m, const char *L, const char *mlp, int64_t ffn)
{
	int64_t h = m->p->hidden;
	add_tensor(m, INIT_LINEAR, ffn, h, 0, "%s.%s.gate_proj.weight", L, mlp);
	add_tensor(m, INIT_LINEAR, ffn, h, 0, "%s.%s.up_proj.weight", L, mlp);
	add_tensor(m, INIT_LINEAR, h, ffn, 0, "%s.%s.down_proj.weight", L, mlp);
}

/* The MoE block of layer L: router, routed experts, shared experts. */
static void add_moe(struct model *m, const char *L)
{
	const struct preset *p = m->p;
	const struct family_info *f = &families[p->fam];
	const struct moe *e = &p->moe;
	int64_t h = p->hidden, ne = e->n_experts;
	if (f->moe == MOE_MIXTRAL) {
		add_tensor(m, INIT_LINEAR, ne, h, 0, "%s.block_sparse_moe.gate.weight", L);
		for (int x = 0; x < e->n_experts; x++) {
			const char *X = "block_sparse_moe.experts";
			add_tensor(m, INIT_LINEAR, p->ffn, h, 0, "%s.%s.%d.w1.weight", L, X, x); /* gate */
			add_tensor(m, INIT_LINEAR, h, p->ffn, 0, "%s.%s.%d.w2.weight", L, X, x); /* down */
			add_tensor(m, INIT_LINEAR, p->ffn, h, 0, "%s.%s.%d.w3.weight", L, X, x); /* up */
		}
		return;
	}
	add_tensor(m, INIT_LINEAR, ne, h, 0, "%s.mlp.gate.weight", L);
	if (f->score_bias)
		add_tensor(m, INIT_BIAS, ne, 0, 0, "%s.mlp.gate.e_score_correction_bias", L)->dtype = TS_F32;
	if (e->fused) {
		add_tensor(m, INIT_LINEAR, ne, 2 * (int64_t)e->ffn, h, "%s.mlp.experts.gate_up_proj", L);
		add_tensor(m, INIT_LINEAR, ne, h, e->ffn, "%s.mlp.experts.down_proj", L);
	} else {
		for (int x = 0; x < e->n_experts; x++) {
			char mlp[32];
			snprintf(mlp, sizeof(mlp), "mlp.experts.%d", x);
			add_mlp(m, L, mlp, e->ffn);
		}
	}
	if (e->n_shared)
		add_mlp(m, L, "mlp.shared_experts", (int64_t)e->ffn * e->n_shared);
	if (f->hybrid && p->hy.shared_ffn) {
		add_mlp(m, L, "mlp.shared_expert", p->hy.shared_ffn);
		add_tensor(m, INIT_LINEAR, 1, h, 0, "%s.mlp.shared_expert_gate.weight", L);
	}
}

/* Layer i of a hybrid model is full attention (else Gated DeltaNet). */
static int layer_is_full(const struct preset *p, int i)
{
	return !families[p->fam].hybrid || (i + 1) % p->hy.interval == 0;
}

/* The HF tensor list in module order (the order sharding follows), then
 * bytes and shards. */
static void model_build(struct model *m)
{
	const struct preset *p = m->p;
	const struct family_info *f = &families[p->fam];
	int64_t h = p->hidden;
	const char *tp = f->hybrid == 2 ? "model.language_model" : "model";
	enum init ni = f->hybrid ? INIT_ZNORM : INIT_NORM;
	add_tensor(m, INIT_EMBED, p->vocab, h, 0, "%s.embed_tokens.weight", tp);
	for (int i = 0; i < p->layers; i++) {
		char L[48];
		snprintf(L, sizeof(L), "%s.layers.%d", tp, i);
		add_tensor(m, ni, h, 0, 0, "%s.input_layernorm.weight", L);
		if (layer_is_full(p, i))
			add_attention(m, L);
		else
			add_linear_attention(m, L);
		add_tensor(m, ni, h, 0, 0, "%s.post_attention_layernorm.weight", L);
		if (layer_is_moe(p, i))
			add_moe(m, L);
		else
			add_mlp(m, L, "mlp", p->ffn);
	}
	add_tensor(m, ni, h, 0, 0, "%s.norm.weight", tp);
	if (p->hy.vision) { /* a stand-in vision tower: the engine must skip it */
		add_tensor(m, INIT_LINEAR, 32, 3 * 2 * 16 * 16, 0, "model.visual.patch_embed.proj.weight");
		add_tensor(m, INIT_NORM, 32, 0, 0, "model.visual.blocks.0.norm1.weight");
		add_tensor(m, INIT_LINEAR, 96, 32, 0, "model.visual.blocks.0.attn.qkv.weight");
		add_tensor(m, INIT_LINEAR, h, 32, 0, "model.visual.merger.mlp.0.weight");
	}
	if (!p->tied)
		add_tensor(m, INIT_LINEAR, p->vocab, h, 0, "lm_head.weight");

	for (int i = 0; i < m->n; i++) {
		struct tensor *t = &m->t[i];
		int64_t n = tensor_numel(t);
		t->bytes = (uint64_t)n * ts_dtype_size(t->dtype);
		m->total_bytes += t->bytes;
		m->n_params += (uint64_t)n;
	}

	/* Whole tensors to shards in module order: a tensor goes to the shard in
	 * which its first byte falls when the total is cut into n equal parts. */
	uint64_t c = 0;
	for (int i = 0; i < m->n; i++) {
		m->t[i].shard = (int)TS_MIN((c * (uint64_t)p->n_shards) / m->total_bytes,
					    (uint64_t)p->n_shards - 1);
		c += m->t[i].bytes;
	}
	for (int s = 0; s < p->n_shards; s++) {
		int used = 0;
		for (int i = 0; i < m->n; i++)
			used |= m->t[i].shard == s;
		if (!used)
			die("internal: preset %s leaves shard %d empty", p->name, s + 1);
	}
}

/* Values of one tensor as floats, (numel). */
static void tensor_fill(const struct model *m, const struct tensor *t, float *out, int64_t numel)
{
	struct rng r = { 0 };
	uint64_t st = golden_fnv1a64(GOLDEN_FNV_OFFSET, t->name, strlen(t->name)) ^
		      (m->seed * 0xd1342543de82ef95ull);
	r.state = splitmix64(&st);
	double std = 0.0, mean = 0.0;
	switch (t->init) {
	case INIT_LINEAR:
		std = 1.0 / sqrt((double)t->fan_in);
		break;
	case INIT_EMBED:
		std = 1.0 / sqrt((double)m->p->hidden);
		break;
	case INIT_NORM:
		mean = 1.0;
		std = 0.1;
		break;
	case INIT_BIAS:
	case INIT_ZNORM:
		std = 0.1;
		break;
	}
	for (int64_t i = 0; i < numel; i++)
		out[i] = (float)(mean + std * rng_normal(&r));
}

/* Benchmark presets: N(0, init_std) for weights (norms as usual), in 1 Mi
 * element chunks, each seeded by (tensor, chunk), filled by 16 threads. */
#define CHUNK (1 << 20)
struct par {
	const struct model *m;
	const struct tensor *t;
	float *out;
	int64_t numel;
	int tid, nth;
};

static void *par_fill(void *arg)
{
	struct par *a = arg;
	const struct tensor *t = a->t;
	double std = a->m->p->init_std, mean = 0.0;
	if (t->init == INIT_NORM)
		mean = 1.0, std = 0.1;
	else if (t->init == INIT_BIAS)
		std = 0.1;
	for (int64_t c = a->tid; c * CHUNK < a->numel; c += a->nth) {
		struct rng r = { 0 };
		uint64_t st = golden_fnv1a64(GOLDEN_FNV_OFFSET, t->name, strlen(t->name)) ^
			      (a->m->seed * 0xd1342543de82ef95ull) ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull);
		r.state = splitmix64(&st);
		int64_t end = (c + 1) * CHUNK < a->numel ? (c + 1) * CHUNK : a->numel;
		for (int64_t i = c * CHUNK; i < end; i++)
			a->out[i] = (float)(mean + std * rng_normal(&r));
	}
	return NULL;
}

static void tensor_fill_par(const struct model *m, const struct tensor *t, float *out, int64_t numel)
{
	enum { NTH = 16 };
	pthread_t th[NTH];
	struct par a[NTH];
	for (int i = 0; i < NTH; i++) {
		a[i] = (struct par){ m, t, out, numel, i, NTH };
		if (pthread_create(&th[i], NULL, par_fill, &a[i]))
			die("cannot start a fill thread");
	}
	for (int i = 0; i < NTH; i++)
		pthread_join(th[i], NULL);
}

/* ---------------------------------------------------------------- output */

struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			die("internal: vsnprintf failed");
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = TS_MAX(b->cap * 2, b->len + (size_t)n + 256);
		char *q = ts_realloc(b->p, cap);
		if (!q)
			die("out of memory");
		b->p = q;
		b->cap = cap;
	}
}

/* A JSON number for a double: integral values keep a ".0" (as Python's json
 * writes floats), others use %.9g. Both are locale-free in the C locale. */
static void sb_num(struct sbuf *b, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		sb_printf(b, "%.1f", v);
	else
		sb_printf(b, "%.9g", v);
}

/* One config line "  \"key\": <number>,". */
static void sb_key_num(struct sbuf *b, const char *key, double v)
{
	sb_printf(b, "  \"%s\": ", key);
	sb_num(b, v);
	sb_printf(b, ",\n");
}

static const char *json_bool(int v)
{
	return v ? "true" : "false";
}

struct out {
	const char *dir;
	char path[4096];
	FILE *f;
};

static void out_open(struct out *o, const char *name)
{
	if ((size_t)snprintf(o->path, sizeof(o->path), "%s/%s", o->dir, name) >= sizeof(o->path))
		die("output path too long: %s/%s", o->dir, name);
	o->f = fopen(o->path, "wb");
	if (!o->f)
		die("cannot write %s: %s", o->path, strerror(errno));
}

static void out_write(struct out *o, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, o->f) != n)
		die("cannot write %s: %s", o->path, strerror(errno));
}

static void out_close(struct out *o)
{
	if (ferror(o->f) | fclose(o->f))
		die("cannot write %s: %s", o->path, strerror(errno));
	o->f = NULL;
}

/* ---------------------------------------------------------------- config.json
 *
 * The keys transformers' config class for the model_type takes (rope in the
 * transformers 4 spelling rope_theta + rope_scaling, which transformers 5
 * still reads and the hub's checkpoints use), in a fixed order: the common
 * head, the family's own keys, the common tail. */

static void cfg_llama(const struct preset *p, struct sbuf *b)
{
	sb_printf(b, "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n"
		     "  \"pretraining_tp\": 1,\n");
}

static void cfg_mistral(const struct preset *p, struct sbuf *b)
{
	if (p->sliding_window)
		sb_printf(b, "  \"sliding_window\": %d,\n", p->sliding_window);
	else
		sb_printf(b, "  \"sliding_window\": null,\n");
}

static void cfg_qwen2(const struct preset *p, struct sbuf *b)
{
	sb_printf(b, "  \"use_sliding_window\": false,\n  \"sliding_window\": null,\n"
		     "  \"max_window_layers\": %d,\n", p->layers);
}

static void cfg_qwen3(const struct preset *p, struct sbuf *b)
{
	sb_printf(b, "  \"attention_bias\": false,\n  \"use_sliding_window\": false,\n"
		     "  \"sliding_window\": null,\n  \"max_window_layers\": %d,\n", p->layers);
}

static void cfg_qwen3_moe(const struct preset *p, struct sbuf *b)
{
	const struct moe *e = &p->moe;
	sb_printf(b, "  \"attention_bias\": false,\n  \"use_sliding_window\": false,\n"
		     "  \"sliding_window\": null,\n");
	sb_printf(b, "  \"decoder_sparse_step\": %d,\n  \"mlp_only_layers\": [", e->sparse_step);
	for (int k = 0; k < e->n_mlp_only; k++)
		sb_printf(b, "%s%d", k ? ", " : "", e->mlp_only[k]);
	sb_printf(b, "],\n  \"moe_intermediate_size\": %d,\n  \"num_experts\": %d,\n"
		     "  \"num_experts_per_tok\": %d,\n  \"norm_topk_prob\": %s,\n"
		     "  \"output_router_logits\": false,\n",
		  e->ffn, e->n_experts, e->top_k, json_bool(e->norm_topk));
	sb_key_num(b, "router_aux_loss_coef", e->aux_coef);
}

static void cfg_mixtral(const struct preset *p, struct sbuf *b)
{
	const struct moe *e = &p->moe;
	sb_printf(b, "  \"sliding_window\": null,\n  \"num_local_experts\": %d,\n"
		     "  \"num_experts_per_tok\": %d,\n  \"output_router_logits\": false,\n",
		  e->n_experts, e->top_k);
	sb_key_num(b, "router_aux_loss_coef", e->aux_coef);
	sb_printf(b, "  \"router_jitter_noise\": 0.0,\n");
}

/* DeepSeek V2 and V3. topk_method, scoring_func and moe_layer_freq are not
 * fields of transformers' classes (V2 routes by softmax, V3 by sigmoid with
 * the score bias), but the hub's configs carry them and engines read them. */
static void cfg_deepseek(const struct preset *p, struct sbuf *b)
{
	const struct moe *e = &p->moe;
	const struct mla *a = &p->mla;
	int v3 = p->fam == FAM_DEEPSEEK_V3;
	sb_printf(b, "  \"attention_bias\": false,\n");
	if (!v3)
		sb_printf(b, "  \"mlp_bias\": false,\n");
	sb_printf(b, "  \"pretraining_tp\": 1,\n");
	if (a->q_lora)
		sb_printf(b, "  \"q_lora_rank\": %d,\n", a->q_lora);
	else
		sb_printf(b, "  \"q_lora_rank\": null,\n");
	sb_printf(b, "  \"kv_lora_rank\": %d,\n  \"qk_nope_head_dim\": %d,\n  \"qk_rope_head_dim\": %d,\n"
		     "  \"v_head_dim\": %d,\n",
		  a->kv_lora, a->nope, a->rope, a->v);
	if (v3)
		sb_printf(b, "  \"rope_interleave\": true,\n");
	sb_printf(b, "  \"moe_intermediate_size\": %d,\n  \"n_routed_experts\": %d,\n  \"n_shared_experts\": %d,\n"
		     "  \"num_experts_per_tok\": %d,\n  \"first_k_dense_replace\": %d,\n  \"moe_layer_freq\": 1,\n"
		     "  \"topk_method\": \"%s\",\n  \"n_group\": %d,\n  \"topk_group\": %d,\n"
		     "  \"norm_topk_prob\": %s,\n",
		  e->ffn, e->n_experts, e->n_shared, e->top_k, e->first_dense, e->topk_method, e->n_group,
		  e->topk_group, json_bool(e->norm_topk));
	sb_key_num(b, "routed_scaling_factor", e->routed_scale);
	sb_printf(b, "  \"scoring_func\": \"%s\",\n", e->scoring_func);
}

/* Qwen3-Next and Qwen3.5: the linear layers' dims, the layer pattern, the
 * gated attention, the shared expert. Qwen3.5 spells its rope as
 * rope_parameters (transformers 5) with mrope keys, which text-only input
 * makes plain RoPE. */
static void cfg_hybrid(const struct preset *p, struct sbuf *b)
{
	const struct hybrid *y = &p->hy;
	const struct moe *e = &p->moe;
	sb_printf(b, "  \"attention_bias\": false,\n  \"linear_num_key_heads\": %d,\n"
		     "  \"linear_num_value_heads\": %d,\n  \"linear_key_head_dim\": %d,\n"
		     "  \"linear_value_head_dim\": %d,\n  \"linear_conv_kernel_dim\": %d,\n"
		     "  \"full_attention_interval\": %d,\n  \"layer_types\": [",
		  y->nk, y->nv, y->dk, y->dv, y->conv, y->interval);
	for (int i = 0; i < p->layers; i++)
		sb_printf(b, "%s\"%s\"", i ? ", " : "", (i + 1) % y->interval ? "linear_attention" : "full_attention");
	sb_printf(b, "],\n");
	if (families[p->fam].hybrid == 2) {
		sb_printf(b, "  \"attn_output_gate\": true,\n  \"rope_parameters\": {\n    \"rope_type\": \"default\",\n"
			     "    \"rope_theta\": ");
		sb_num(b, p->rope_theta);
		sb_printf(b, ",\n    \"partial_rotary_factor\": ");
		sb_num(b, y->prf);
		sb_printf(b, ",\n    \"mrope_section\": [3, 3, 2],\n    \"mrope_interleaved\": true\n  },\n");
	} else {
		sb_printf(b, "  \"partial_rotary_factor\": ");
		sb_num(b, y->prf);
		sb_printf(b, ",\n");
	}
	if (!e->n_experts)
		return;
	sb_printf(b, "  \"decoder_sparse_step\": %d,\n  \"mlp_only_layers\": [", e->sparse_step);
	for (int k = 0; k < e->n_mlp_only; k++)
		sb_printf(b, "%s%d", k ? ", " : "", e->mlp_only[k]);
	sb_printf(b, "],\n  \"moe_intermediate_size\": %d,\n  \"shared_expert_intermediate_size\": %d,\n"
		     "  \"num_experts\": %d,\n  \"num_experts_per_tok\": %d,\n  \"norm_topk_prob\": %s,\n"
		     "  \"output_router_logits\": false,\n",
		  e->ffn, y->shared_ffn, e->n_experts, e->top_k, json_bool(e->norm_topk));
	sb_key_num(b, "router_aux_loss_coef", e->aux_coef);
}

static void write_config(const struct model *m, const char *dir)
{
	const struct preset *p = m->p;
	const struct family_info *f = &families[p->fam];
	struct sbuf b = { 0 };
	sb_printf(&b, "{\n");
	sb_printf(&b, "  \"architectures\": [\"%s\"],\n", f->arch);
	sb_printf(&b, "  \"model_type\": \"%s\",\n", f->type);
	if (f->hybrid == 2) { /* Qwen3.5: the text model's config nests in text_config */
		sb_printf(&b, "  \"tie_word_embeddings\": %s,\n", json_bool(p->tied));
		sb_printf(&b, "  \"vision_config\": {\n  \"depth\": 1,\n  \"hidden_size\": 32,\n  \"num_heads\": 2,\n"
			      "  \"patch_size\": 16,\n  \"temporal_patch_size\": 2,\n  \"out_hidden_size\": %d\n  },\n",
			  p->hidden);
		sb_printf(&b, "  \"image_token_id\": 5,\n  \"video_token_id\": 6,\n");
		sb_printf(&b, "  \"text_config\": {\n");
		sb_printf(&b, "  \"model_type\": \"%s_text\",\n", f->type);
	}
	sb_printf(&b, "  \"hidden_size\": %d,\n", p->hidden);
	sb_printf(&b, "  \"intermediate_size\": %d,\n", p->ffn);
	sb_printf(&b, "  \"num_hidden_layers\": %d,\n", p->layers);
	sb_printf(&b, "  \"num_attention_heads\": %d,\n", p->heads);
	sb_printf(&b, "  \"num_key_value_heads\": %d,\n", p->kv_heads);
	if (!f->mla) /* DeepSeek's classes set head_dim = qk_rope_head_dim themselves */
		sb_printf(&b, "  \"head_dim\": %d,\n", p->head_dim);
	sb_printf(&b, "  \"vocab_size\": %d,\n", p->vocab);
	sb_printf(&b, "  \"max_position_embeddings\": %d,\n", p->max_pos);
	sb_printf(&b, "  \"rms_norm_eps\": ");
	sb_num(&b, p->eps);
	sb_printf(&b, ",\n");
	if (f->hybrid != 2) {
		sb_printf(&b, "  \"rope_theta\": ");
		sb_num(&b, p->rope_theta);
		sb_printf(&b, ",\n");
	}
	if (f->hybrid == 2) {
		/* rope_parameters in cfg_hybrid */
	} else if (p->l3.factor > 0) {
		sb_printf(&b, "  \"rope_scaling\": {\n    \"rope_type\": \"llama3\",\n    \"factor\": ");
		sb_num(&b, p->l3.factor);
		sb_printf(&b, ",\n    \"low_freq_factor\": ");
		sb_num(&b, p->l3.low);
		sb_printf(&b, ",\n    \"high_freq_factor\": ");
		sb_num(&b, p->l3.high);
		sb_printf(&b, ",\n    \"original_max_position_embeddings\": %d\n  },\n", p->l3.orig);
	} else if (p->yarn.factor > 0) {
		const struct rope_yarn *y = &p->yarn;
		sb_printf(&b, "  \"rope_scaling\": {\n    \"type\": \"yarn\",\n    \"rope_type\": \"yarn\",\n"
			      "    \"factor\": ");
		sb_num(&b, y->factor);
		sb_printf(&b, ",\n    \"original_max_position_embeddings\": %d,\n    \"beta_fast\": ", y->orig);
		sb_num(&b, y->beta_fast);
		sb_printf(&b, ",\n    \"beta_slow\": ");
		sb_num(&b, y->beta_slow);
		sb_printf(&b, ",\n    \"mscale\": ");
		sb_num(&b, y->mscale);
		sb_printf(&b, ",\n    \"mscale_all_dim\": ");
		sb_num(&b, y->mscale_all_dim);
		sb_printf(&b, "\n  },\n");
	} else {
		sb_printf(&b, "  \"rope_scaling\": null,\n");
	}
	sb_printf(&b, "  \"tie_word_embeddings\": %s,\n", json_bool(p->tied));
	f->config(p, &b);
	sb_printf(&b, "  \"attention_dropout\": 0.0,\n");
	sb_printf(&b, "  \"hidden_act\": \"silu\",\n");
	sb_printf(&b, "  \"initializer_range\": 0.02,\n");
	sb_printf(&b, "  \"use_cache\": true,\n");
	sb_printf(&b, "  \"bos_token_id\": 1,\n");
	sb_printf(&b, "  \"eos_token_id\": 2,\n");
	sb_printf(&b, "  \"torch_dtype\": \"%s\"\n", dtype_torch_name(p->dtype));
	if (f->hybrid == 2)
		sb_printf(&b, "  }\n");
	sb_printf(&b, "}\n");

	struct out o = { .dir = dir };
	out_open(&o, "config.json");
	out_write(&o, b.p, b.len);
	out_close(&o);
	ts_free(b.p);
}

/* ---------------------------------------------------------------- safetensors */

static int cmp_tensor_name(const void *a, const void *b)
{
	const struct tensor *x = *(const struct tensor *const *)a, *y = *(const struct tensor *const *)b;
	return strcmp(x->name, y->name);
}

/* The safetensors writer's order inside a file: wider dtypes first (F32,
 * BF16, F16: its Dtype enum, descending), then by name. */
static int dtype_rank(enum ts_dtype t)
{
	return t == TS_F32 ? 2 : t == TS_BF16 ? 1 : 0;
}

static int cmp_tensor_file(const void *a, const void *b)
{
	const struct tensor *x = *(const struct tensor *const *)a, *y = *(const struct tensor *const *)b;
	int d = dtype_rank(y->dtype) - dtype_rank(x->dtype);
	return d ? d : strcmp(x->name, y->name);
}

/* The model's tensors (shard s only, or all for s < 0) sorted by cmp;
 * *n gets the count. Free with ts_free. */
static struct tensor **tensor_list(struct model *m, int s, int (*cmp)(const void *, const void *), int *n)
{
	struct tensor **list = xalloc((size_t)(m->n ? m->n : 1) * sizeof(*list));
	*n = 0;
	for (int i = 0; i < m->n; i++)
		if (s < 0 || m->t[i].shard == s)
			list[(*n)++] = &m->t[i];
	qsort(list, (size_t)*n, sizeof(list[0]), cmp);
	return list;
}

static void shard_name(const struct model *m, int s, char *buf, size_t n)
{
	if (m->p->n_shards == 1)
		snprintf(buf, n, "model.safetensors");
	else
		snprintf(buf, n, "model-%05d-of-%05d.safetensors", s + 1, m->p->n_shards);
}

static void put_u16le(uint8_t *q, uint16_t v)
{
	q[0] = (uint8_t)v;
	q[1] = (uint8_t)(v >> 8);
}

/* One safetensors file: u64 LE header length, the JSON header padded with
 * spaces to a multiple of 8 (as the reference writer does), then the tensors
 * of this shard in cmp_tensor_file order, back to back. */
static void write_shard(struct model *m, int s, const char *dir)
{
	const struct preset *p = m->p;
	int n;
	struct tensor **list = tensor_list(m, s, cmp_tensor_file, &n);

	struct sbuf h = { 0 };
	uint64_t off = 0;
	sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (int i = 0; i < n; i++) {
		struct tensor *t = list[i];
		t->off = off;
		sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%" PRId64, t->name, ts_dtype_name(t->dtype),
			  t->shape[0]);
		for (int k = 1; k < t->n_dims; k++)
			sb_printf(&h, ",%" PRId64, t->shape[k]);
		sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->bytes);
		off += t->bytes;
	}
	sb_printf(&h, "}");
	while (h.len % 8)
		sb_printf(&h, " ");

	char name[64];
	shard_name(m, s, name, sizeof(name));
	struct out o = { .dir = dir };
	out_open(&o, name);
	uint8_t len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
	out_write(&o, len8, 8);
	out_write(&o, h.p, h.len);
	ts_free(h.p);

	for (int i = 0; i < n; i++) {
		const struct tensor *t = list[i];
		int64_t numel = tensor_numel(t);
		float *v = xalloc((size_t)numel * sizeof(float));
		uint8_t *bytes = xalloc((size_t)t->bytes);
		if (p->init_std > 0)
			tensor_fill_par(m, t, v, numel);
		else
			tensor_fill(m, t, v, numel);
		for (int64_t j = 0; j < numel; j++) {
			uint32_t u;
			switch (t->dtype) {
			case TS_F32:
				memcpy(&u, &v[j], 4);
				for (int k = 0; k < 4; k++)
					bytes[4 * j + k] = (uint8_t)(u >> (8 * k));
				break;
			case TS_F16:
				put_u16le(bytes + 2 * j, ts_f32_to_f16(v[j]));
				break;
			case TS_BF16:
			case TS_DTYPE_N:
				put_u16le(bytes + 2 * j, ts_f32_to_bf16(v[j]));
				break;
			}
		}
		out_write(&o, bytes, (size_t)t->bytes);
		ts_free(bytes);
		ts_free(v);
	}
	out_close(&o);
	ts_free(list);
}

/* model.safetensors.index.json as transformers writes it: metadata.total_size
 * (sum of tensor bytes) and weight_map with sorted keys. */
static void write_index(struct model *m, const char *dir)
{
	int n;
	struct tensor **list = tensor_list(m, -1, cmp_tensor_name, &n);
	struct sbuf b = { 0 };
	sb_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {\n",
		  m->total_bytes);
	for (int i = 0; i < n; i++) {
		char name[64];
		shard_name(m, list[i]->shard, name, sizeof(name));
		sb_printf(&b, "    \"%s\": \"%s\"%s\n", list[i]->name, name, i + 1 < n ? "," : "");
	}
	sb_printf(&b, "  }\n}\n");
	struct out o = { .dir = dir };
	out_open(&o, "model.safetensors.index.json");
	out_write(&o, b.p, b.len);
	out_close(&o);
	ts_free(b.p);
	ts_free(list);
}

/* --tensors: one line per tensor in the index's order, "FILE NAME DTYPE [SHAPE]". */
static void print_tensors(struct model *m)
{
	int n;
	struct tensor **list = tensor_list(m, -1, cmp_tensor_name, &n);
	for (int i = 0; i < n; i++) {
		const struct tensor *t = list[i];
		char file[64];
		shard_name(m, t->shard, file, sizeof(file));
		printf("%s %s %s [%" PRId64, file, t->name, ts_dtype_name(t->dtype), t->shape[0]);
		for (int k = 1; k < t->n_dims; k++)
			printf(", %" PRId64, t->shape[k]);
		printf("]\n");
	}
	ts_free(list);
}


/* ---------------------------------------------------------------- tokenizer
 *
 * --tokenizer also writes DIR/tokenizer.json and DIR/tokenizer_config.json,
 * shaped like the real Llama 3 / Qwen2 / Qwen3 files (byte-level BPE over the
 * GPT-2 byte alphabet, the Split regex that src/tok.c recognises by its exact
 * text, Qwen's NFC normalizer, the models' chat templates) and scaled down to
 * the preset's vocab_size.
 *
 * Ids: the added tokens first, so that config.json's bos_token_id 1 and
 * eos_token_id 2 name them; then the 256 bytes in the GPT-2 alphabet's order;
 * then the tokens that BPE training on tok_corpus creates, in merge order,
 * until vocab_size or until no pair is left (llama31-8b: the ids above stay
 * unused, which tok.c and HF both accept). The added tokens are model.vocab
 * entries too, under the same ids: HF's tokenizers library gives an added
 * token whose content is not in the vocab the next id after the vocab,
 * whatever its "id" field says.
 *
 * Training: the corpus is cut into pre-tokens the way the family's regex cuts
 * ASCII (a byte >= 0x80 counts as a letter, which keeps UTF-8 sequences
 * whole); each step merges the most frequent adjacent pair over all
 * pre-tokens (ties: the smaller left id, then the smaller right id). Integer
 * arithmetic only, so the files are the same bytes on every machine.
 */

/* English prose, some C, Python and shell, and a few words of other scripts
 * (all NFC). Merges are learned from this text only. */
static const char tok_corpus[] =
	"A graphics processing unit, or GPU, is a processor built for throughput rather than "
	"latency. Where a CPU core runs one thread very fast, a GPU runs thousands of threads at "
	"once and hides the time that each memory access takes by switching to other work. The "
	"programmer writes a kernel, a function that every thread runs, and launches it over a "
	"grid of thread blocks. Threads in the same block can share a small, fast memory and can "
	"wait for each other at a barrier; threads in different blocks cannot.\n"
	"\n"
	"Language models spend most of their time in matrix multiplication. During the prefill of "
	"a prompt, the model reads its weights once and multiplies them with many tokens at the "
	"same time, so the work is limited by the arithmetic units. During decoding, the model "
	"produces one token per step for each sequence, so it must read every weight from memory "
	"for very little arithmetic. Decoding is therefore limited by memory bandwidth, and the "
	"way to make it faster is to batch many requests together, so that each weight that is "
	"read from memory serves more than one sequence.\n"
	"\n"
	"The key and value cache holds the attention state of every sequence. It grows by one "
	"entry per layer for every token, and for a long conversation it can be larger than the "
	"model itself. A paged cache splits this memory into fixed blocks, like the pages of an "
	"operating system, so that sequences of different lengths can share one pool without "
	"fragmentation. When two requests begin with the same system prompt, they can share the "
	"blocks of that prefix and skip the work of computing it again.\n"
	"\n"
	"A scheduler decides, at every step, which requests run and how many tokens each one may "
	"process. It admits new requests when there is room in the cache, splits long prompts into "
	"chunks so that decoding is not stalled, and preempts a request when memory runs out. The "
	"goal is to keep the GPU busy while the time to the first token and the time between "
	"tokens stay low for every user.\n"
	"\n"
	"The tokenizer turns text into the integers that the model reads. A byte pair encoding "
	"starts from the 256 possible bytes and learns merges: the most frequent pair of adjacent "
	"symbols in the training text becomes a new symbol, and the process repeats until the "
	"vocabulary is full. Common words such as the, and, of, to, in, is, that and for become "
	"single tokens, while rare words are spelled out of smaller pieces. The text is first "
	"split into words, numbers, punctuation and spaces by a regular expression, so that a "
	"merge never crosses from one word into the next.\n"
	"\n"
	"Numbers are split into groups of at most three digits: 2024, 65536, 3.14159, 1,000,000 "
	"and 128256 are all read piece by piece. Temperatures, prices and dates appear in the text "
	"too: 21 degrees, $4.99, 12.5%, 2023-11-06, 09:30.\n"
	"\n"
	"Performance engineers measure before they optimize. They compare the achieved bandwidth "
	"with the peak of the device, they count the bytes that each kernel reads and writes, and "
	"they look for the slowest stage of the pipeline. A kernel that reaches ninety percent of "
	"the memory bandwidth is close to its limit; a kernel that reaches ten percent has a "
	"problem worth finding. The profiler shows where the time goes, but only a clear model of "
	"the hardware says what the time should be.\n"
	"\n"
	"Quantization stores weights in fewer bits. With eight bit or four bit weights, the model "
	"reads less memory per token and can decode faster, at the cost of a small loss in "
	"quality. The scale of each group of weights is kept in a higher precision, and the "
	"multiplication converts the values back to floating point inside the kernel.\n"
	"\n"
	"The server accepts connections over TLS, parses each request, and streams the generated "
	"tokens back as soon as they are ready. It must never crash because of one bad request: it "
	"returns an error for that request and keeps serving the others. Logs record what happened "
	"and why, with the request id, the number of tokens and the time that each stage took.\n"
	"\n"
	"Attention lets every token look back at the tokens before it. Each head projects the "
	"hidden state into a query, a key and a value; the scores are the dot products of the "
	"query with all earlier keys, scaled by the square root of the head dimension, and a "
	"softmax turns them into weights for the values. Grouped query attention shares one key "
	"and value head among several query heads, which shrinks the cache by the same factor. "
	"Rotary position embeddings rotate pairs of dimensions by an angle that grows with the "
	"position, so that the score between two tokens depends only on their distance.\n"
	"\n"
	"Sampling picks the next token from the probabilities that the model returns. Greedy "
	"decoding always takes the most likely token; temperature divides the logits before the "
	"softmax and makes the distribution sharper or flatter; top-k keeps only the k most likely "
	"tokens, and top-p keeps the smallest set whose probability adds up to p. A fixed seed "
	"makes the choice reproducible, which helps when a test must compare two runs.\n"
	"\n"
	"Reliability matters as much as speed. A production service checks its inputs, limits the "
	"size of every request, applies back pressure when the queue is full, and shuts down "
	"gracefully when it receives a signal: it stops accepting new work, finishes or cancels "
	"what is running, flushes its logs and exits. Health checks report whether the process is "
	"alive and whether it is ready to serve. Metrics such as requests per second, queue depth, "
	"cache usage, tokens per second and latency percentiles show how the system behaves under load.\n"
	"\n"
	"Testing starts with small, fast unit tests that run on every change. Golden tests compare "
	"the output with values computed by a trusted reference implementation; fuzz tests feed "
	"random and malformed inputs to every parser; end-to-end tests start the whole server and "
	"talk to it like a client would. A bug that was fixed without a test will come back.\n"
	"\n"
	"History helps, too. Early graphics hardware drew triangles with fixed functions; "
	"programmable shaders arrived around 2001, and general purpose computing followed when "
	"researchers noticed that pixels could hold arbitrary numbers. Today a single accelerator "
	"packs tensor cores, high bandwidth memory stacked beside the die, and interconnects that "
	"link eight devices into one node. Clusters of such nodes train models with hundreds of "
	"billions of parameters, exchanging gradients through collective operations like "
	"all-reduce, broadcast and reduce-scatter. Yet inference, not training, dominates the "
	"daily bill: every question answered, every summary written and every program completed "
	"costs electricity, cooling and silicon.\n"
	"\n"
	"Here is a small example in C:\n"
	"\n"
	"#include <stdint.h>\n"
	"#include <stdio.h>\n"
	"#include <stdlib.h>\n"
	"#include <string.h>\n"
	"\n"
	"/* Sum of the squares of a vector of floats. */\n"
	"static float sum_squares(const float *x, int n)\n"
	"{\n"
	"\tfloat s = 0.0f;\n"
	"\tfor (int i = 0; i < n; i++)\n"
	"\t\ts += x[i] * x[i];\n"
	"\treturn s;\n"
	"}\n"
	"\n"
	"/* RMS normalization: out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]. */\n"
	"static void rmsnorm(float *out, const float *x, const float *weight, int n, float eps)\n"
	"{\n"
	"\tfloat scale = 1.0f / sqrtf(sum_squares(x, n) / (float)n + eps);\n"
	"\tfor (int i = 0; i < n; i++)\n"
	"\t\tout[i] = x[i] * scale * weight[i];\n"
	"}\n"
	"\n"
	"struct buffer {\n"
	"\tchar *data;\n"
	"\tsize_t len, cap;\n"
	"};\n"
	"\n"
	"static int buffer_append(struct buffer *b, const char *s, size_t n)\n"
	"{\n"
	"\tif (b->len + n > b->cap) {\n"
	"\t\tsize_t cap = b->cap ? 2 * b->cap : 64;\n"
	"\t\twhile (cap < b->len + n)\n"
	"\t\t\tcap *= 2;\n"
	"\t\tchar *p = realloc(b->data, cap);\n"
	"\t\tif (!p)\n"
	"\t\t\treturn -1;\n"
	"\t\tb->data = p;\n"
	"\t\tb->cap = cap;\n"
	"\t}\n"
	"\tmemcpy(b->data + b->len, s, n);\n"
	"\tb->len += n;\n"
	"\treturn 0;\n"
	"}\n"
	"\n"
	"int main(int argc, char **argv)\n"
	"{\n"
	"\tif (argc < 2) {\n"
	"\t\tfprintf(stderr, \"usage: %s FILE\\n\", argv[0]);\n"
	"\t\treturn 2;\n"
	"\t}\n"
	"\tFILE *f = fopen(argv[1], \"rb\");\n"
	"\tif (!f) {\n"
	"\t\tperror(argv[1]);\n"
	"\t\treturn 1;\n"
	"\t}\n"
	"\tstruct buffer b = { 0 };\n"
	"\tchar chunk[4096];\n"
	"\tsize_t got;\n"
	"\twhile ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)\n"
	"\t\tif (buffer_append(&b, chunk, got) != 0)\n"
	"\t\t\treturn 1;\n"
	"\tfclose(f);\n"
	"\tprintf(\"read %zu bytes\\n\", b.len);\n"
	"\tfree(b.data);\n"
	"\treturn 0;\n"
	"}\n"
	"\n"
	"And a CUDA kernel with its launcher:\n"
	"\n"
	"__global__ void k_add_f32(float *out, const float *a, const float *b, int n)\n"
	"{\n"
	"\tint i = blockIdx.x * blockDim.x + threadIdx.x;\n"
	"\tif (i < n)\n"
	"\t\tout[i] = a[i] + b[i];\n"
	"}\n"
	"\n"
	"void launch_add(float *out, const float *a, const float *b, int n, cudaStream_t stream)\n"
	"{\n"
	"\tint threads = 256;\n"
	"\tint blocks = (n + threads - 1) / threads;\n"
	"\tk_add_f32<<<blocks, threads, 0, stream>>>(out, a, b, n);\n"
	"\tCUDA_CHECK(cudaGetLastError());\n"
	"}\n"
	"\n"
	"A configuration file in JSON:\n"
	"\n"
	"{\n"
	"  \"hidden_size\": 4096,\n"
	"  \"num_attention_heads\": 32,\n"
	"  \"num_key_value_heads\": 8,\n"
	"  \"rope_theta\": 500000.0,\n"
	"  \"torch_dtype\": \"bfloat16\",\n"
	"  \"vocab_size\": 128256\n"
	"}\n"
	"\n"
	"And a few lines of Python and shell:\n"
	"\n"
	"def softmax(logits):\n"
	"    m = max(logits)\n"
	"    exps = [math.exp(x - m) for x in logits]\n"
	"    total = sum(exps)\n"
	"    return [e / total for e in exps]\n"
	"\n"
	"for i in range(10):\n"
	"    print(f\"step {i}: loss = {loss:.4f}\")\n"
	"\n"
	"make test && ./build/tokenspeed serve --config config/tokenspeed.ini\n"
	"curl -s http://localhost:8080/health | grep ok\n"
	"\n"
	"The user asked: \"What is the capital of France?\" The assistant answered: \"The capital of "
	"France is Paris.\" Then the user said: \"Thank you! Can you write a short poem about the "
	"sea?\" and the assistant wrote four lines about waves, wind and light.\n"
	"\n"
	"I'm sure it's fine; we'll see, they've said it's done, and you'd know if it weren't. "
	"Don't worry: it'll work.\n"
	"\n"
	"Some words from other languages: café, naïve, résumé, façade, Größe, Straße, über, "
	"español, niño, señor, français, où, être, Привет, мир, спасибо, 東京, 日本語, 模型, 你好, 世界, "
	"안녕하세요, 한국어, Ελληνικά, καλημέρα, العربية, עברית, हिन्दी.\n"
	;

/* Meta-Llama-3-8B-Instruct's chat_template. */
static const char tpl_llama3[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
	"'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
	"{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";

/* Plain ChatML (Qwen2-Instruct's template without its default system message). */
static const char tpl_chatml[] =
	"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
	"'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/* Qwen3's chat_template (<think> handling and tools). */
static const char tpl_qwen3[] =
	"{%- if tools %}\n"
	"    {{- '<|im_start|>system\\n' }}\n"
	"    {%- if messages[0].role == 'system' %}\n"
	"        {{- messages[0].content + '\\n\\n' }}\n"
	"    {%- endif %}\n"
	"    {{- \"# Tools\\n\\nYou may call one or more functions to assist with the user "
	"query.\\n\\nYou are provided with function signatures within <tools></tools> XML "
	"tags:\\n<tools>\" }}\n"
	"    {%- for tool in tools %}\n"
	"        {{- \"\\n\" }}\n"
	"        {{- tool | tojson }}\n"
	"    {%- endfor %}\n"
	"    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name "
	"and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": "
	"<function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
	"{%- else %}\n"
	"    {%- if messages[0].role == 'system' %}\n"
	"        {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}\n"
	"    {%- endif %}\n"
	"{%- endif %}\n"
	"{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}\n"
	"{%- for message in messages[::-1] %}\n"
	"    {%- set index = (messages|length - 1) - loop.index0 %}\n"
	"    {%- if ns.multi_step_tool and message.role == \"user\" and "
	"not(message.content.startswith('<tool_response>') and "
	"message.content.endswith('</tool_response>')) %}\n"
	"        {%- set ns.multi_step_tool = false %}\n"
	"        {%- set ns.last_query_index = index %}\n"
	"    {%- endif %}\n"
	"{%- endfor %}\n"
	"{%- for message in messages %}\n"
	"    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) %}\n"
	"        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
	"    {%- elif message.role == \"assistant\" %}\n"
	"        {%- set content = message.content %}\n"
	"        {%- set reasoning_content = '' %}\n"
	"        {%- if message.reasoning_content is defined and message.reasoning_content is not none %}\n"
	"            {%- set reasoning_content = message.reasoning_content %}\n"
	"        {%- else %}\n"
	"            {%- if '</think>' in message.content %}\n"
	"                {%- set content = message.content.split('</think>')[-1].lstrip('\\n') %}\n"
	"                {%- set reasoning_content = "
	"message.content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}\n"
	"            {%- endif %}\n"
	"        {%- endif %}\n"
	"        {%- if loop.index0 > ns.last_query_index %}\n"
	"            {%- if loop.last or (not loop.last and reasoning_content) %}\n"
	"                {{- '<|im_start|>' + message.role + '\\n<think>\\n' + "
	"reasoning_content.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}\n"
	"            {%- else %}\n"
	"                {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
	"            {%- endif %}\n"
	"        {%- else %}\n"
	"            {{- '<|im_start|>' + message.role + '\\n' + content }}\n"
	"        {%- endif %}\n"
	"        {%- if message.tool_calls %}\n"
	"            {%- for tool_call in message.tool_calls %}\n"
	"                {%- if (loop.first and content) or (not loop.first) %}\n"
	"                    {{- '\\n' }}\n"
	"                {%- endif %}\n"
	"                {%- if tool_call.function %}\n"
	"                    {%- set tool_call = tool_call.function %}\n"
	"                {%- endif %}\n"
	"                {{- '<tool_call>\\n{\"name\": \"' }}\n"
	"                {{- tool_call.name }}\n"
	"                {{- '\", \"arguments\": ' }}\n"
	"                {%- if tool_call.arguments is string %}\n"
	"                    {{- tool_call.arguments }}\n"
	"                {%- else %}\n"
	"                    {{- tool_call.arguments | tojson }}\n"
	"                {%- endif %}\n"
	"                {{- '}\\n</tool_call>' }}\n"
	"            {%- endfor %}\n"
	"        {%- endif %}\n"
	"        {{- '<|im_end|>\\n' }}\n"
	"    {%- elif message.role == \"tool\" %}\n"
	"        {%- if loop.first or (messages[loop.index0 - 1].role != \"tool\") %}\n"
	"            {{- '<|im_start|>user' }}\n"
	"        {%- endif %}\n"
	"        {{- '\\n<tool_response>\\n' }}\n"
	"        {{- message.content }}\n"
	"        {{- '\\n</tool_response>' }}\n"
	"        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
	"            {{- '<|im_end|>\\n' }}\n"
	"        {%- endif %}\n"
	"    {%- endif %}\n"
	"{%- endfor %}\n"
	"{%- if add_generation_prompt %}\n"
	"    {{- '<|im_start|>assistant\\n' }}\n"
	"    {%- if enable_thinking is defined and enable_thinking is false %}\n"
	"        {{- '<think>\\n\\n</think>\\n\\n' }}\n"
	"    {%- endif %}\n"
	"{%- endif %}"
	;

struct tok_added_spec {
	const char *content;
	int special;
};

static const struct tok_added_spec added_llama3[] = {
	{ "<|reserved_special_token_0|>", 1 }, { "<|begin_of_text|>", 1 }, { "<|end_of_text|>", 1 },
	{ "<|start_header_id|>", 1 },          { "<|end_header_id|>", 1 }, { "<|eot_id|>", 1 },
};
static const struct tok_added_spec added_qwen2[] = {
	{ "<|endoftext|>", 1 }, { "<|im_start|>", 1 }, { "<|im_end|>", 1 },
};
/* As in Qwen3, the think and tool markers are added tokens that are not special. */
static const struct tok_added_spec added_qwen3[] = {
	{ "<|endoftext|>", 1 }, { "<|im_start|>", 1 },     { "<|im_end|>", 1 },        { "<think>", 0 },
	{ "</think>", 0 },      { "<tool_call>", 0 },      { "</tool_call>", 0 },      { "<tool_response>", 0 },
	{ "</tool_response>", 0 },
};

struct tok_spec {
	const char *name;
	const struct tok_added_spec *added;
	int n_added;
	int max_digits; /* \p{N}{1,3} (Llama 3) or \p{N} (Qwen) */
	const char *pattern, *chat_template;
	const char *bos, *eos; /* tokenizer_config.json; bos NULL: null */
	int llama3;            /* Llama 3's JSON details (merges as "a b", BOS post-processor) else Qwen's */
};

static const struct tok_spec tok_specs[] = {
	[TK_NONE] = { 0 },
	[TK_LLAMA3] = { "llama3", added_llama3, (int)TS_ARRAY_LEN(added_llama3), 3, TOK_PAT_LLAMA3, tpl_llama3,
			"<|begin_of_text|>", "<|eot_id|>", 1 },
	[TK_QWEN2] = { "qwen2", added_qwen2, (int)TS_ARRAY_LEN(added_qwen2), 1, TOK_PAT_QWEN2, tpl_chatml, NULL,
		       "<|im_end|>", 0 },
	[TK_QWEN3] = { "qwen3", added_qwen3, (int)TS_ARRAY_LEN(added_qwen3), 1, TOK_PAT_QWEN2, tpl_qwen3, NULL,
		       "<|im_end|>", 0 },
};

/* The pre-tokenizer on classes of bytes: the family's regex for ASCII, with
 * every byte >= 0x80 taken as a letter. Returns the end of the pre-token that
 * starts at s[i] (mirrors pre_next in src/tok.c). */
enum { BC_OTHER, BC_LETTER, BC_DIGIT, BC_SPACE };

static int byte_class(uint8_t c)
{
	if (((c | 32) >= 'a' && (c | 32) <= 'z') || c >= 0x80)
		return BC_LETTER;
	if (c >= '0' && c <= '9')
		return BC_DIGIT;
	return c == ' ' || (c >= 9 && c <= 13) ? BC_SPACE : BC_OTHER;
}

static size_t pretok_next(const uint8_t *s, size_t n, size_t i, int max_digits)
{
	int k0 = byte_class(s[i]), k1 = i + 1 < n ? byte_class(s[i + 1]) : -1;
	size_t j;
	if (s[i] == '\'' && i + 1 < n) { /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
		uint8_t a = s[i + 1] | 32, b = i + 2 < n ? s[i + 2] | 32 : 0;
		if (a == 's' || a == 't' || a == 'm' || a == 'd')
			return i + 2;
		if (((a == 'r' || a == 'v') && b == 'e') || (a == 'l' && b == 'l'))
			return i + 3;
	}
	if (k0 == BC_LETTER || (s[i] != '\r' && s[i] != '\n' && k0 != BC_DIGIT && k1 == BC_LETTER)) {
		for (j = i + 1; j < n && byte_class(s[j]) == BC_LETTER;) /* [^\r\n\p{L}\p{N}]?\p{L}+ */
			j++;
		return j;
	}
	if (k0 == BC_DIGIT) {
		for (j = i + 1; j < n && j < i + (size_t)max_digits && byte_class(s[j]) == BC_DIGIT;)
			j++;
		return j;
	}
	if ((s[i] == ' ' && k1 == BC_OTHER) || k0 == BC_OTHER) { /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
		for (j = i + 1; j < n && byte_class(s[j]) == BC_OTHER;)
			j++;
		while (j < n && (s[j] == '\r' || s[j] == '\n'))
			j++;
		return j;
	}
	/* \s*[\r\n]+ | \s+(?!\S) | \s+ */
	size_t last_nl = 0, last = i;
	int have_nl = 0;
	for (j = i; j < n && byte_class(s[j]) == BC_SPACE; j++) {
		if (s[j] == '\r' || s[j] == '\n') {
			last_nl = j;
			have_nl = 1;
		}
		last = j;
	}
	if (have_nl)
		return last_nl + 1;
	return j == n || last == i ? j : last;
}

/* A BPE vocabulary under training, and the corpus as distinct pre-tokens. */
struct bpe {
	int n_added, first_merged;             /* id layout: added, bytes, merged */
	int n_ids, cap_ids;                    /* ids in use; room for */
	uint8_t *str;                          /* (str_cap) every token's bytes, back to back */
	size_t str_len, str_cap;
	uint32_t *off, *len;                   /* (cap_ids) token bytes in str */
	int32_t *tab;                          /* (tab_mask + 1) token bytes -> id; -1 empty */
	uint32_t tab_mask;
	int32_t (*merge)[2];                   /* (corpus bytes) left and right id, in rank order */
	int n_merges;
	int32_t *sym;                          /* (n_sym) symbols of every distinct pre-token */
	size_t n_sym;
	uint32_t *w_off, *w_len, *w_freq;      /* (n_words) a pre-token's symbols in sym; its count */
	int n_words;
};

static uint32_t bytes_hash(const uint8_t *p, size_t n)
{
	return (uint32_t)golden_fnv1a64(GOLDEN_FNV_OFFSET, p, n);
}

static int32_t bpe_find(const struct bpe *t, const uint8_t *p, size_t n)
{
	for (uint32_t h = bytes_hash(p, n) & t->tab_mask;; h = (h + 1) & t->tab_mask) {
		int32_t id = t->tab[h];
		if (id < 0 || (t->len[id] == n && !memcmp(t->str + t->off[id], p, n)))
			return id;
	}
}

/* Appends token p[0..n) under the next id (the caller checked it is new). */
static int32_t bpe_add(struct bpe *t, const uint8_t *p, size_t n)
{
	if (t->n_ids >= t->cap_ids)
		die("internal: tokenizer id table full");
	if (t->str_len + n > t->str_cap) {
		t->str_cap = TS_MAX(2 * t->str_cap, t->str_len + n + 4096);
		t->str = ts_realloc(t->str, t->str_cap);
		if (!t->str)
			die("out of memory");
	}
	int32_t id = t->n_ids++;
	memcpy(t->str + t->str_len, p, n);
	t->off[id] = (uint32_t)t->str_len;
	t->len[id] = (uint32_t)n;
	t->str_len += n;
	uint32_t h = bytes_hash(p, n) & t->tab_mask;
	while (t->tab[h] >= 0)
		h = (h + 1) & t->tab_mask;
	t->tab[h] = id;
	return id;
}

struct span {
	const uint8_t *p;
	uint32_t n;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;
	int c = memcmp(x->p, y->p, TS_MIN(x->n, y->n));
	return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Pair counts of one training step: open addressing on (left << 32 | right). */
struct pair_tab {
	uint64_t *key; /* UINT64_MAX empty */
	uint64_t *count;
	uint32_t *used; /* slots in use, in the order of first use */
	uint32_t n_used, mask;
};

static uint32_t pair_slot(struct pair_tab *pt, uint64_t k)
{
	uint64_t x = k * 0x9e3779b97f4a7c15ull;
	uint32_t h = (uint32_t)(x >> 32) & pt->mask;
	while (pt->key[h] != UINT64_MAX && pt->key[h] != k)
		h = (h + 1) & pt->mask;
	if (pt->key[h] == UINT64_MAX) {
		pt->key[h] = k;
		pt->count[h] = 0;
		pt->used[pt->n_used++] = h;
	}
	return h;
}

/* Builds the vocabulary of spec for a model of `vocab` ids. */
static void bpe_train(struct bpe *t, const struct tok_spec *spec, int vocab)
{
	const uint8_t *text = (const uint8_t *)tok_corpus;
	size_t n = sizeof(tok_corpus) - 1;

	memset(t, 0, sizeof(*t));
	t->n_added = spec->n_added;
	t->first_merged = spec->n_added + 256;
	if (vocab < t->first_merged)
		die("internal: vocab %d has no room for %d added tokens and 256 bytes", vocab, spec->n_added);
	/* each new token shortens some pre-token by one symbol at least */
	t->cap_ids = (int)TS_MIN((size_t)vocab, (size_t)t->first_merged + n);
	uint32_t cap = 1;
	while (cap < 2u * (uint32_t)t->cap_ids)
		cap <<= 1;
	t->tab_mask = cap - 1;
	t->tab = xalloc(cap * sizeof(*t->tab));
	memset(t->tab, 0xff, cap * sizeof(*t->tab));
	t->off = xalloc((size_t)t->cap_ids * sizeof(*t->off));
	t->len = xalloc((size_t)t->cap_ids * sizeof(*t->len));
	t->merge = xalloc(n * sizeof(*t->merge)); /* each merge shortens the corpus by a symbol at least */

	/* ids: added tokens (in the vocab too, see above), then the bytes */
	for (int i = 0; i < spec->n_added; i++) {
		const char *c = spec->added[i].content;
		if (bpe_find(t, (const uint8_t *)c, strlen(c)) >= 0)
			die("internal: added token %s twice", c);
		bpe_add(t, (const uint8_t *)c, strlen(c));
	}
	int32_t byte_id[256];
	for (uint32_t cp = 0; cp < 324; cp++)
		for (int b = 0; b < 256; b++)
			if (tok_byte_cp(b) == cp) {
				uint8_t c = (uint8_t)b;
				byte_id[b] = bpe_add(t, &c, 1);
			}

	/* distinct pre-tokens with their counts, in byte order */
	struct span *sp = xalloc(n * sizeof(*sp));
	size_t n_sp = 0;
	for (size_t i = 0; i < n;) {
		size_t e = pretok_next(text, n, i, spec->max_digits);
		sp[n_sp++] = (struct span){ text + i, (uint32_t)(e - i) };
		i = e;
	}
	qsort(sp, n_sp, sizeof(*sp), cmp_span);
	t->sym = xalloc(n * sizeof(*t->sym));
	t->w_off = xalloc(n_sp * sizeof(*t->w_off));
	t->w_len = xalloc(n_sp * sizeof(*t->w_len));
	t->w_freq = xalloc(n_sp * sizeof(*t->w_freq));
	for (size_t i = 0; i < n_sp; i++) {
		if (i > 0 && !cmp_span(&sp[i - 1], &sp[i])) {
			t->w_freq[t->n_words - 1]++;
			continue;
		}
		int w = t->n_words++;
		t->w_off[w] = (uint32_t)t->n_sym;
		t->w_len[w] = sp[i].n;
		t->w_freq[w] = 1;
		for (uint32_t k = 0; k < sp[i].n; k++)
			t->sym[t->n_sym++] = byte_id[sp[i].p[k]];
	}
	ts_free(sp);

	/* merge the most frequent pair until the vocab is full or no pair is left */
	struct pair_tab pt = { 0 };
	uint32_t pcap = 1;
	while (pcap < 2u * (uint32_t)t->n_sym + 2)
		pcap <<= 1;
	pt.mask = pcap - 1;
	pt.key = xalloc(pcap * sizeof(*pt.key));
	pt.count = xalloc(pcap * sizeof(*pt.count));
	pt.used = xalloc(pcap * sizeof(*pt.used));
	memset(pt.key, 0xff, pcap * sizeof(*pt.key));
	uint8_t *buf = xalloc(n);
	while (t->n_ids < vocab) {
		for (int w = 0; w < t->n_words; w++) {
			const int32_t *s = t->sym + t->w_off[w];
			for (uint32_t k = 0; k + 1 < t->w_len[w]; k++)
				pt.count[pair_slot(&pt, (uint64_t)s[k] << 32 | (uint32_t)s[k + 1])] += t->w_freq[w];
		}
		if (!pt.n_used)
			break;
		uint64_t best = UINT64_MAX, best_count = 0;
		for (uint32_t u = 0; u < pt.n_used; u++) {
			uint32_t h = pt.used[u];
			if (pt.count[h] > best_count || (pt.count[h] == best_count && pt.key[h] < best)) {
				best = pt.key[h];
				best_count = pt.count[h];
			}
			pt.key[h] = UINT64_MAX;
		}
		pt.n_used = 0;
		int32_t a = (int32_t)(best >> 32), b = (int32_t)(uint32_t)best;
		memcpy(buf, t->str + t->off[a], t->len[a]);
		memcpy(buf + t->len[a], t->str + t->off[b], t->len[b]);
		int32_t m = bpe_find(t, buf, t->len[a] + t->len[b]);
		if (m < 0)
			m = bpe_add(t, buf, t->len[a] + t->len[b]);
		t->merge[t->n_merges][0] = a;
		t->merge[t->n_merges][1] = b;
		t->n_merges++;
		for (int w = 0; w < t->n_words; w++) {
			int32_t *s = t->sym + t->w_off[w];
			uint32_t k = 0, o = 0;
			while (k < t->w_len[w]) {
				if (k + 1 < t->w_len[w] && s[k] == a && s[k + 1] == b) {
					s[o++] = m;
					k += 2;
				} else {
					s[o++] = s[k++];
				}
			}
			t->w_len[w] = o;
		}
	}
	ts_free(buf);
	ts_free(pt.key);
	ts_free(pt.count);
	ts_free(pt.used);
}

static void bpe_free(struct bpe *t)
{
	ts_free(t->str);
	ts_free(t->off);
	ts_free(t->len);
	ts_free(t->tab);
	ts_free(t->merge);
	ts_free(t->sym);
	ts_free(t->w_off);
	ts_free(t->w_len);
	ts_free(t->w_freq);
}

/* A JSON string of UTF-8 text s[0..n). */
static void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
	sb_printf(b, "\"");
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)s[i];
		if (c == '"' || c == '\\')
			sb_printf(b, "\\%c", c);
		else if (c == '\n')
			sb_printf(b, "\\n");
		else if (c == '\t')
			sb_printf(b, "\\t");
		else if (c == '\r')
			sb_printf(b, "\\r");
		else if (c < 0x20 || c == 0x7f)
			sb_printf(b, "\\u%04x", c);
		else
			sb_printf(b, "%c", c);
	}
	sb_printf(b, "\"");
}

/* A token's vocab text: its bytes through the GPT-2 alphabet, as a JSON string. */
static void sb_tok_str(struct sbuf *b, const struct bpe *t, int32_t id)
{
	sb_printf(b, "\"");
	for (uint32_t i = 0; i < t->len[id]; i++) {
		uint32_t cp = tok_byte_cp(t->str[t->off[id] + i]); /* 33..323: one or two UTF-8 bytes */
		if (cp == '"' || cp == '\\')
			sb_printf(b, "\\%c", (char)cp);
		else if (cp < 0x80)
			sb_printf(b, "%c", (char)cp);
		else
			sb_printf(b, "%c%c", (char)(0xc0 | cp >> 6), (char)(0x80 | (cp & 0x3f)));
	}
	sb_printf(b, "\"");
}

static void write_text(const char *dir, const char *name, const struct sbuf *b)
{
	struct out o = { .dir = dir };
	out_open(&o, name);
	out_write(&o, b->p, b->len);
	out_close(&o);
}

static void write_tokenizer(const struct tok_spec *spec, const struct bpe *t, const char *dir)
{
	struct sbuf b = { 0 };
	sb_printf(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
		      "  \"added_tokens\": [\n");
	for (int i = 0; i < spec->n_added; i++) {
		sb_printf(&b, "    {\n      \"id\": %d,\n      \"content\": ", i);
		sb_json_str(&b, spec->added[i].content, strlen(spec->added[i].content));
		sb_printf(&b, ",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n"
			      "      \"normalized\": false,\n      \"special\": %s\n    }%s\n",
			  spec->added[i].special ? "true" : "false", i + 1 < spec->n_added ? "," : "");
	}
	sb_printf(&b, "  ],\n");
	if (spec->llama3)
		sb_printf(&b, "  \"normalizer\": null,\n");
	else
		sb_printf(&b, "  \"normalizer\": {\n    \"type\": \"NFC\"\n  },\n");
	sb_printf(&b, "  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n    \"pretokenizers\": [\n"
		      "      {\n        \"type\": \"Split\",\n        \"pattern\": {\n          \"Regex\": ");
	sb_json_str(&b, spec->pattern, strlen(spec->pattern));
	sb_printf(&b, "\n        },\n        \"behavior\": \"Isolated\",\n        \"invert\": false\n      },\n"
		      "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": false,\n"
		      "        \"trim_offsets\": %s,\n        \"use_regex\": false\n      }\n    ]\n  },\n",
		  spec->llama3 ? "true" : "false");
	if (spec->llama3) {
		const char *bos = spec->bos;
		int bos_id = -1;
		for (int i = 0; i < spec->n_added; i++)
			if (!strcmp(spec->added[i].content, bos))
				bos_id = i;
		sb_printf(&b,
			  "  \"post_processor\": {\n    \"type\": \"Sequence\",\n    \"processors\": [\n"
			  "      {\n        \"type\": \"ByteLevel\",\n        \"add_prefix_space\": true,\n"
			  "        \"trim_offsets\": false,\n        \"use_regex\": true\n      },\n"
			  "      {\n        \"type\": \"TemplateProcessing\",\n        \"single\": [\n"
			  "          {\n            \"SpecialToken\": {\n              \"id\": \"%s\",\n"
			  "              \"type_id\": 0\n            }\n          },\n"
			  "          {\n            \"Sequence\": {\n              \"id\": \"A\",\n"
			  "              \"type_id\": 0\n            }\n          }\n        ],\n"
			  "        \"pair\": [\n"
			  "          {\n            \"SpecialToken\": {\n              \"id\": \"%s\",\n"
			  "              \"type_id\": 0\n            }\n          },\n"
			  "          {\n            \"Sequence\": {\n              \"id\": \"A\",\n"
			  "              \"type_id\": 0\n            }\n          },\n"
			  "          {\n            \"SpecialToken\": {\n              \"id\": \"%s\",\n"
			  "              \"type_id\": 1\n            }\n          },\n"
			  "          {\n            \"Sequence\": {\n              \"id\": \"B\",\n"
			  "              \"type_id\": 1\n            }\n          }\n        ],\n"
			  "        \"special_tokens\": {\n          \"%s\": {\n            \"id\": \"%s\",\n"
			  "            \"ids\": [\n              %d\n            ],\n"
			  "            \"tokens\": [\n              \"%s\"\n            ]\n          }\n        }\n"
			  "      }\n    ]\n  },\n",
			  bos, bos, bos, bos, bos, bos_id, bos);
		sb_printf(&b, "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": true,\n"
			      "    \"trim_offsets\": true,\n    \"use_regex\": true\n  },\n");
	} else {
		sb_printf(&b, "  \"post_processor\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": false,\n"
			      "    \"trim_offsets\": false,\n    \"use_regex\": false\n  },\n");
		sb_printf(&b, "  \"decoder\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": false,\n"
			      "    \"trim_offsets\": false,\n    \"use_regex\": false\n  },\n");
	}
	sb_printf(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n");
	if (spec->llama3)
		sb_printf(&b, "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n");
	else
		sb_printf(&b, "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n");
	sb_printf(&b, "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n"
		      "    \"vocab\": {\n",
		  spec->llama3 ? "true" : "false");
	for (int32_t id = 0; id < t->n_ids; id++) {
		sb_printf(&b, "      ");
		if (id < t->n_added) /* printable ASCII: its own GPT-2 text */
			sb_json_str(&b, spec->added[id].content, strlen(spec->added[id].content));
		else
			sb_tok_str(&b, t, id);
		sb_printf(&b, ": %d%s\n", id, id + 1 < t->n_ids ? "," : "");
	}
	sb_printf(&b, "    },\n    \"merges\": [\n");
	for (int i = 0; i < t->n_merges; i++) {
		int32_t a = t->merge[i][0], c = t->merge[i][1];
		const char *sep = i + 1 < t->n_merges ? "," : "";
		struct sbuf l = { 0 }, r = { 0 };
		sb_tok_str(&l, t, a);
		sb_tok_str(&r, t, c);
		if (spec->llama3) /* "left right" (no GPT-2 text contains a space) */
			sb_printf(&b, "      %.*s %s%s\n", (int)l.len - 1, l.p, r.p + 1, sep);
		else
			sb_printf(&b, "      [%s, %s]%s\n", l.p, r.p, sep);
		ts_free(l.p);
		ts_free(r.p);
	}
	sb_printf(&b, "    ]\n  }\n}\n");
	write_text(dir, "tokenizer.json", &b);
	ts_free(b.p);
}

/* tokenizer_config.json with sorted keys, as transformers saves it. */
static void write_tokenizer_config(const struct tok_spec *spec, const char *dir, int max_len)
{
	struct sbuf b = { 0 };
	sb_printf(&b, "{\n  \"add_bos_token\": %s,\n", spec->bos ? "true" : "false");
	if (spec->llama3)
		sb_printf(&b, "  \"add_eos_token\": false,\n");
	else
		sb_printf(&b, "  \"add_prefix_space\": false,\n");
	if (spec->bos) {
		sb_printf(&b, "  \"bos_token\": ");
		sb_json_str(&b, spec->bos, strlen(spec->bos));
		sb_printf(&b, ",\n");
	} else {
		sb_printf(&b, "  \"bos_token\": null,\n");
	}
	sb_printf(&b, "  \"chat_template\": ");
	sb_json_str(&b, spec->chat_template, strlen(spec->chat_template));
	sb_printf(&b, ",\n  \"clean_up_tokenization_spaces\": %s,\n  \"eos_token\": ",
		  spec->llama3 ? "true" : "false");
	sb_json_str(&b, spec->eos, strlen(spec->eos));
	sb_printf(&b, ",\n");
	if (spec->llama3)
		sb_printf(&b, "  \"model_input_names\": [\n    \"input_ids\",\n    \"attention_mask\"\n  ],\n"
			      "  \"model_max_length\": %d,\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n",
			  max_len);
	else
		sb_printf(&b, "  \"errors\": \"replace\",\n  \"model_max_length\": %d,\n"
			      "  \"pad_token\": \"<|endoftext|>\",\n  \"split_special_tokens\": false,\n"
			      "  \"tokenizer_class\": \"Qwen2Tokenizer\",\n  \"unk_token\": null\n}\n",
			  max_len);
	write_text(dir, "tokenizer_config.json", &b);
	ts_free(b.p);
}

/* ---------------------------------------------------------------- directory */

static void mkdir_p(const char *dir)
{
	char path[4096];
	if (strlen(dir) >= sizeof(path))
		die("output path too long: %s", dir);
	strcpy(path, dir);
	for (char *q = path + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = 0;
		if (mkdir(path, 0777) && errno != EEXIST)
			die("cannot create directory %s: %s", path, strerror(errno));
		*q = '/';
	}
	if (mkdir(path, 0777) && errno != EEXIST)
		die("cannot create directory %s: %s", path, strerror(errno));
	struct stat st;
	if (stat(path, &st) || !S_ISDIR(st.st_mode))
		die("--out %s is not a directory", dir);
}

/* A checkpoint file left by another preset (other shard count) would be read
 * with ours and change the directory hash: refuse rather than delete. */
static void check_no_foreign(const struct model *m, const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		die("cannot list %s: %s", dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		if (strncmp(nm, "model", 5) || !strstr(nm, ".safetensors"))
			continue;
		int ours = m->p->n_shards > 1 && !strcmp(nm, "model.safetensors.index.json");
		for (int s = 0; s < m->p->n_shards && !ours; s++) {
			char name[64];
			shard_name(m, s, name, sizeof(name));
			ours = !strcmp(nm, name);
		}
		if (!ours) {
			closedir(d);
			die("%s/%s belongs to another checkpoint; remove it or use an empty --out", dir, nm);
		}
	}
	closedir(d);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
	fprintf(f, "usage: gen_ckpt --preset NAME --out DIR [--seed N] [--tokenizer] [--no-weights]\n"
		   "       gen_ckpt --preset NAME --tensors\n"
		   "       gen_ckpt --list\n");
}

int main(int argc, char **argv)
{
	const char *preset = NULL, *dir = NULL;
	uint64_t seed = 1;
	int want_tok = 0, no_weights = 0, list_tensors = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--tokenizer")) {
			want_tok = 1;
		} else if (!strcmp(a, "--no-weights")) {
			no_weights = 1;
		} else if (!strcmp(a, "--tensors")) {
			list_tensors = 1;
		} else if (!strcmp(a, "--list")) {
			int w = 0;
			for (size_t k = 0; k < TS_ARRAY_LEN(presets); k++)
				w = TS_MAX(w, (int)strlen(presets[k].name));
			for (size_t k = 0; k < TS_ARRAY_LEN(presets); k++)
				printf("%-*s %s\n", w, presets[k].name, presets[k].help);
			return 0;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!strcmp(a, "--preset") || !strcmp(a, "--out") || !strcmp(a, "--seed")) {
			if (i + 1 >= argc)
				die("%s needs a value (try --help)", a);
			const char *v = argv[++i];
			if (!strcmp(a, "--preset")) {
				preset = v;
			} else if (!strcmp(a, "--out")) {
				dir = v;
			} else {
				char *end;
				errno = 0;
				unsigned long long x = strtoull(v, &end, 0);
				if (errno || end == v || *end || v[0] == '-')
					die("--seed %s: not an unsigned integer", v);
				seed = x;
			}
		} else {
			die("unknown argument '%s' (try --help)", a);
		}
	}
	if (!preset || (!dir && !list_tensors))
		die("need --preset NAME and --out DIR (try --help; --list shows the presets)");

	struct model *m = xalloc(sizeof(*m));
	for (size_t k = 0; k < TS_ARRAY_LEN(presets); k++)
		if (!strcmp(presets[k].name, preset))
			m->p = &presets[k];
	if (!m->p)
		die("unknown preset '%s' (gen_ckpt --list shows them)", preset);
	if (want_tok && m->p->tok == TK_NONE)
		die("--tokenizer: preset %s has no tokenizer (Llama 3 and Qwen presets only)", preset);
	m->seed = seed;
	model_build(m);
	if (list_tensors) {
		print_tensors(m);
		printf("gen_ckpt: %s: %d file(s), %d tensors, %" PRIu64 " params, %" PRIu64 " tensor bytes\n",
		       m->p->name, m->p->n_shards, m->n, m->n_params, m->total_bytes);
		ts_free(m->t);
		ts_free(m);
		return 0;
	}

	mkdir_p(dir);
	check_no_foreign(m, dir);
	write_config(m, dir);
	for (int s = 0; s < m->p->n_shards && !no_weights; s++)
		write_shard(m, s, dir);
	if (m->p->n_shards > 1 && !no_weights)
		write_index(m, dir);
	char tok_line[256] = "";
	if (want_tok) {
		const struct tok_spec *spec = &tok_specs[m->p->tok];
		struct bpe t;
		bpe_train(&t, spec, m->p->vocab);
		write_tokenizer(spec, &t, dir);
		write_tokenizer_config(spec, dir, m->p->max_pos /* config.json's max_position_embeddings */);
		int k = snprintf(tok_line, sizeof(tok_line),
				 "gen_ckpt: %s tokenizer: ids 0..%d: %d added, 256 bytes, %d merged (%d merges)",
				 spec->name, t.n_ids - 1, t.n_added, t.n_ids - t.first_merged, t.n_merges);
		if (t.n_ids < m->p->vocab)
			snprintf(tok_line + k, sizeof(tok_line) - (size_t)k, "; ids %d..%d unused (the corpus has no more pairs)",
				 t.n_ids, m->p->vocab - 1);
		bpe_free(&t);
	}
	if (no_weights) {
		printf("gen_ckpt: %s -> %s: config.json%s, no weights\n", m->p->name, dir,
		       want_tok ? ", tokenizer.json, tokenizer_config.json" : "");
		if (want_tok)
			printf("%s\n", tok_line);
		ts_free(m->t);
		ts_free(m);
		return 0;
	}

	uint64_t hash;
	struct ts_err e;
	if (golden_ckpt_hash(dir, &hash, &e))
		die("%s", e.msg);
	printf("gen_ckpt: %s seed %" PRIu64 " -> %s: %d file(s), %d tensors, %" PRIu64
	       " params, %" PRIu64 " tensor bytes\n",
	       m->p->name, seed, dir, m->p->n_shards, m->n, m->n_params, m->total_bytes);
	if (want_tok)
		printf("%s\n", tok_line);
	printf("ckpt_hash 0x%016" PRIx64 "\n", hash);
	ts_free(m->t);
	ts_free(m);
	return 0;
}
