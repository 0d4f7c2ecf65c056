/* boot: ordered, timed boot stages. */
#include "boot.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "comm.h"
#include "fmath.h"
#include "log.h"
#include "tls.h"
#ifndef TS_CPU_ONLY
#include "fwd.h"
#include "gpu.h"
#endif

/* The first GPU of [device] gpus. */
static int first_gpu(const struct cfg *cfg)
{
	return atoi(cfg->device.gpus);
}

/* How many GPUs [device] gpus lists (cfg checked the list). */
static int n_gpus(const struct cfg *cfg)
{
	int n = 1;
	for (const char *p = cfg->device.gpus; *p; p++)
		n += *p == ',';
	return n;
}

/* Tensor-parallel ranks: [device] tp on the cpu backend (0 = 1); on the gpu
 * backend the GPUs listed, which a nonzero tp must equal. Several GPUs need
 * NCCL (src/comm.h); the gpu backend's sharding is not built yet, so a list
 * of more than one is refused with one line saying which of the two stops it. */
static int pick_tp(const struct cfg *cfg, const struct backend_ops *ops, int *tp, struct ts_err *e)
{
	const char *f = cfg->file[0] ? cfg->file : "config";
	*tp = cfg->device.tp > 0 ? cfg->device.tp : 1;
	if (ops == &cpu_backend_ops)
		return 0;
	int n = n_gpus(cfg);
	if (cfg->device.tp > 0 && cfg->device.tp != n)
		return ts_errf(e, E_INVAL, "%s: [device] tp = %d but gpus = %s lists %d GPUs: on the gpu backend tp is the number of GPUs; set tp = 0 or %d",
			       f, cfg->device.tp, cfg->device.gpus, n, n);
	*tp = n;
	if (n == 1)
		return 0;
	struct ts_err ne = {0};
	if (comm_nccl_load(&ne) < 0)
		return ts_errf(e, E_UNSUPPORTED, "%s: [device] gpus = %s lists %d GPUs, which needs NCCL: %s; or list one GPU",
			       f, cfg->device.gpus, n, ne.msg);
	return ts_errf(e, E_UNSUPPORTED, "%s: [device] gpus = %s lists %d GPUs: tensor parallelism on the gpu backend is not built yet (NCCL %d.%d.%d loaded); list one GPU, or run tp on the cpu backend",
		       f, cfg->device.gpus, n, comm_nccl_version() / 10000, comm_nccl_version() / 100 % 100,
		       comm_nccl_version() % 100);
}

int engine_pick_backend(const struct cfg *cfg, const struct backend_ops **ops, struct ts_err *e)
{
#ifdef TS_CPU_ONLY
	if (cfg->device.backend == CFG_BACKEND_GPU)
		return ts_errf(e, E_UNSUPPORTED, "%s: [device] backend = gpu, but this static build has no GPU backend (it cannot load the driver); use build/tokenspeed",
			       cfg->file);
	*ops = &cpu_backend_ops;
	return 0;
#else
	struct ts_err ge = {0};
	switch ((enum cfg_backend)cfg->device.backend) {
	case CFG_BACKEND_CPU:
		*ops = &cpu_backend_ops;
		return 0;
	case CFG_BACKEND_AUTO:
		if (gpu_probe(first_gpu(cfg), &ge) < 0) {
			log_info("stage=backend pick=cpu reason=\"%s\"", ge.msg);
			*ops = &cpu_backend_ops;
			return 0;
		}
		break;
	case CFG_BACKEND_GPU:
		if (gpu_probe(first_gpu(cfg), &ge) < 0)
			return ts_errf(e, E_UNSUPPORTED, "%s: [device] backend = gpu: %s", cfg->file, ge.msg);
		break;
	}
	if (cfg->model.dtype == CFG_DTYPE_F16 || cfg->model.dtype == CFG_DTYPE_F32)
		return ts_errf(e, E_UNSUPPORTED, "%s: [model] dtype: the gpu backend computes in bf16; set auto or bf16",
			       cfg->file);
	*ops = &gpu_backend_ops;
	return 0;
#endif
}

/* Pool size in tokens: kv_tokens if set, else kv_mem_fraction of what the
 * backend has left, capped at what max_running sequences can use; a multiple
 * of the block size, and at least one whole sequence. */
static int size_kv(struct engine *en, const struct backend_ops *ops, struct backend_limits *lim, struct ts_err *e)
{
	const struct cfg *c = &en->cfg;
	int64_t bt = c->engine.kv_block_tokens, want;
	if (c->engine.kv_tokens > 0) {
		want = c->engine.kv_tokens;
	} else {
		uint64_t avail, per = ops->kv_bytes_per_token(&en->m);
		int r = ops->mem_available(&en->m, lim, &avail, e);
		if (r < 0)
			return r;
		want = (int64_t)((double)avail * c->engine.kv_mem_fraction / (double)per);
		int64_t cap = (int64_t)c->engine.max_running * en->max_seq_len;
		if (want > cap)
			want = cap;
		if (want < en->max_seq_len)
			return ts_errf(e, E_NOSPACE, "%s: the KV pool would hold %lld tokens (%.2f GB free x kv_mem_fraction %.2f), less than max_seq_len %d: lower [engine] max_seq_len or raise kv_mem_fraction",
				       c->file, (long long)want, (double)avail / 1e9, c->engine.kv_mem_fraction,
				       en->max_seq_len);
	}
	want = (want + bt - 1) / bt * bt;
	if (want / bt > INT32_MAX)
		return ts_errf(e, E_RANGE, "%s: [engine] kv_tokens %lld is too large", c->file, (long long)want);
	lim->n_blocks = (int)(want / bt);
	en->kv_tokens = want;
	return 0;
}

static double rel_err(const float *a, const float *ref, int n)
{
	double num = 0, den = 0;
	for (int i = 0; i < n; i++) {
		double d = (double)a[i] - (double)ref[i];
		num += d * d;
		den += (double)ref[i] * (double)ref[i];
	}
	return num == 0 ? 0 : (double)fm_sqrtf((float)(num / (den > 0 ? den : 1)));
}

#ifndef TS_CPU_ONLY
/* The GPU against the CPU reference on a slice of the real model: its first
 * layer (then the final norm and LM head), four tokens, within bf16 error. */
static int selftest_slice(struct engine *en, const struct batch *bt, float *gpu_logits, float *cpu_logits,
			  struct ts_err *e)
{
	struct model m1 = en->m;
	struct backend cpu;
	struct backend_limits l = {.max_batch_tokens = 4, .max_seqs = 2, .max_seq_len = en->max_seq_len,
				   .n_blocks = 1, .block_tokens = en->s.kv.block_tokens, .threads = 0};
	int32_t block0 = 0;
	struct batch_seq bs = {&block0, 1, -1};
	struct batch cb = *bt;
	int r;

	m1.d.n_layers = 1;
	cb.seqs = &bs;
	if ((r = fwd_forward_layers(&en->be, bt, gpu_logits, 1)) < 0)
		return ts_errf(e, -r, "self-test: gpu forward of one layer failed");
	if ((r = cpu_backend_ops.init(&cpu, &m1, &l, e)) < 0)
		return r;
	r = cpu.ops->forward(&cpu, &cb, cpu_logits);
	cpu.ops->free(&cpu);
	if (r < 0)
		return ts_errf(e, -r, "self-test: cpu forward of one layer failed");
	double re = rel_err(gpu_logits, cpu_logits, en->m.d.vocab);
	log_info("stage=selftest check=gpu_vs_cpu_layer0 rel_err=%.2e bound=2e-02", re);
	if (!(re < 2e-2))
		return ts_errf(e, E_INTERNAL, "self-test: GPU %d disagrees with the CPU reference on layer 0 (relative error %.3g, bound 2e-2): broken card, driver or cubin; refusing to serve",
			       first_gpu(&en->cfg), re);
	return 0;
}
#endif

/* Known-answer self-test on the real path: the same 4 tokens forwarded as one
 * prefill, and as a 3-token prefill plus one decode, give finite logits that
 * agree (bit for bit on the CPU; within bf16 error on the GPU, whose prefill
 * and decode kernels differ); on the GPU, layer 0 also matches the CPU. */
/* The self-test's blocks and state slot back to the pool. */
static void selftest_release(struct sched *s, int slot, int32_t state)
{
	kv_seq_release(&s->kv, slot);
	if (state >= 0)
		kv_state_free(&s->kv, state);
}

static int selftest(struct engine *en, struct ts_err *e)
{
	struct sched *s = &en->s;
	const int vocab = en->m.d.vocab, slot = s->n_slots - 1;
	const int is_cpu = en->be.ops == &cpu_backend_ops;
	int32_t tok[4] = {0, 1, 2, 3}, pos[4] = {0, 1, 2, 3}, seq[4] = {0}, row;
	float *a = s->logits, *b = s->logits + vocab;
	struct batch_seq bs;
	struct batch bt = {4, tok, pos, seq, 1, &bs, 1, &row};
	int r;

	if (s->lim.max_running < 2 || s->lim.max_batch_tokens < 4)
		return 0; /* too small a config to hold the test; the tests cover it */
	for (int i = 0; i < 4; i++)
		tok[i] = (en->m.d.bos >= 0 ? en->m.d.bos + i : i + 1) % vocab;
	if ((r = kv_seq_reserve(&s->kv, slot, 4)) < 0)
		return ts_errf(e, E_NOSPACE, "self-test: no KV blocks");
	bs.state = s->has_state ? kv_state_alloc(&s->kv) : -1; /* nothing runs yet: never short */
	bs.blocks = kv_seq_table(&s->kv, slot);
	bs.n_blocks = kv_seq_blocks(&s->kv, slot);
	row = 3;
	r = en->be.ops->forward(&en->be, &bt, a);
	bt.n_tokens = 3;
	bt.n_logits = 0;
	if (r == 0)
		r = en->be.ops->forward(&en->be, &bt, NULL);
	bt.n_tokens = 1;
	bt.token = tok + 3;
	bt.pos = pos + 3;
	bt.n_logits = 1;
	row = 0;
	if (r == 0)
		r = en->be.ops->forward(&en->be, &bt, b);
	if (r < 0) {
		selftest_release(s, slot, bs.state);
		return ts_errf(e, -r, "self-test: backend %s forward failed (%s)", en->be.ops->name, ts_code_name(r));
	}
#ifndef TS_CPU_ONLY
	if (!is_cpu && fwd_whatif()) {
		log_warn("TS_WHATIF=%d: kernels left out for a timing experiment; outputs are wrong, self-test skipped",
			 fwd_whatif());
		selftest_release(s, slot, bs.state);
		return 0;
	}
#endif
	for (int i = 0; i < vocab; i++)
		if (!isfinite(a[i]) || !isfinite(b[i])) {
			selftest_release(s, slot, bs.state);
			return ts_errf(e, E_INTERNAL, "self-test: logit %d is not finite: the checkpoint's weights or the backend are broken", i);
		}
	double re = rel_err(b, a, vocab);
	if (is_cpu ? memcmp(a, b, (size_t)vocab * sizeof(float)) != 0 : !(re < 2e-2)) {
		selftest_release(s, slot, bs.state);
		return ts_errf(e, E_INTERNAL, "self-test: prefill and decode logits differ on backend %s (relative error %.3g): refusing to serve",
			       en->be.ops->name, re);
	}
#ifndef TS_CPU_ONLY
	if (!is_cpu) {
		bt.n_tokens = 4;
		bt.token = tok;
		bt.pos = pos;
		row = 3;
		r = selftest_slice(en, &bt, a, b, e);
	}
#endif
	selftest_release(s, slot, bs.state);
	return r;
}

/* The checkpoint's tokenizer.json into t, when it has one (*has = 1): it must
 * load and its ids must fit the model's vocab; [model] chat_format overrides
 * the format detected from tokenizer_config.json. A broken one stops the boot
 * (the operator named this checkpoint). */
static int tokenizer_load(const struct cfg *cfg, int vocab, struct tok *t, int *has, struct ts_err *e)
{
	char path[CFG_PATH_MAX + 32];
	*has = 0;
	snprintf(path, sizeof(path), "%s/tokenizer.json", cfg->model.path);
	if (access(path, F_OK) != 0)
		return 0;
	int r = tok_load(t, cfg->model.path, e);
	if (r < 0)
		return r;
	if (t->n_ids > vocab) {
		r = ts_errf(e, E_FORMAT, "%s: ids up to %d, but the model's vocab_size is %d: not this model's tokenizer",
			    path, t->n_ids - 1, vocab);
		tok_free(t);
		return r;
	}
	if (cfg->model.chat_format > 0) {
		t->chat = (enum tok_chat)(cfg->model.chat_format - 1);
		t->chat_think = 0;
	}
	*has = 1;
	return 0;
}

static int load_tokenizer(struct engine *en, struct ts_err *e)
{
	return tokenizer_load(&en->cfg, en->m.d.vocab, &en->tok, &en->has_tok, e);
}

/* The layer plan in one line per run of equal layers, MLA and MoE dims, and
 * the KV bytes a token takes. */
static void log_model_plan(const struct model *m)
{
	const struct model_dims *d = &m->d;
	for (int l = 0, s = 0; l < d->n_layers; l++) {
		const struct model_layer *L = &m->layers[l], *N = l + 1 < d->n_layers ? &m->layers[l + 1] : NULL;
		if (N && N->attn == L->attn && N->mlp == L->mlp)
			continue;
		log_info("stage=model layers=%d-%d attn=%s mlp=%s", s, l, model_attn_name(L->attn), model_mlp_name(L->mlp));
		s = l + 1;
	}
	if (m->layers[0].attn == ATTN_MLA)
		log_info("stage=model mla q_lora=%d kv_lora=%d qk_nope=%d qk_rope=%d v_head=%d scale=%.6g rope=%s",
			 d->q_lora_rank, d->kv_lora_rank, d->qk_nope_dim, d->qk_rope_dim, d->v_head_dim, d->attn_scale,
			 d->rope == ROPE_YARN ? "yarn" : "plain");
	if (d->n_moe_layers)
		log_info("stage=model moe layers=%d experts=%d top_k=%d expert_ffn=%d shared_ffn=%d router=%s groups=%d/%d norm=%d scale=%g layout=%s",
			 d->n_moe_layers, d->n_experts, d->n_experts_tok, d->moe_ffn_dim, d->shared_ffn_dim,
			 d->moe_score == MOE_SIGMOID ? "sigmoid" : "softmax", d->topk_group, d->n_group, d->norm_topk,
			 d->routed_scale, m->fused_experts ? "fused" : "per-expert");
	log_info("stage=model kv_elems_per_token=%llu step_weight_gb=%.3f", (unsigned long long)model_kv_elems_per_token(m),
		 (double)model_step_bytes(m) / 1e9);
}

int engine_check_model(const struct cfg *cfg, char *note, size_t note_len, struct ts_err *e)
{
	struct ckpt ck;
	struct model m;
	int r;
	note[0] = 0;
	if ((r = ckpt_open(&ck, cfg->model.path, e)) < 0)
		return r;
	if ((r = model_load(&m, &ck, e)) < 0)
		goto out_ck;
	if ((r = cpu_backend_ops.check(&m, e)) < 0)
		goto out_m;
#ifndef TS_CPU_ONLY
	struct ts_err ge = {0};
	if (gpu_backend_ops.check(&m, &ge) < 0) {
		if (cfg->device.backend == CFG_BACKEND_GPU) {
			r = ts_errf(e, E_UNSUPPORTED, "%s: %s", cfg->model.path, ge.msg);
			goto out_m;
		}
		if (cfg->device.backend == CFG_BACKEND_AUTO)
			snprintf(note, note_len, "on a GPU machine boot would stop: %s", ge.msg);
	}
#endif
	snprintf(note + strlen(note), note_len - strlen(note), "%s%s, %d layers, kv %llu elements per token",
		 note[0] ? "; model " : "model ", m.arch_name, m.d.n_layers,
		 (unsigned long long)model_kv_elems_per_token(&m));
	struct tok t;
	int has_tok = 0;
	if ((r = tokenizer_load(cfg, m.d.vocab, &t, &has_tok, e)) < 0)
		goto out_m;
	if (has_tok) {
		snprintf(note + strlen(note), note_len - strlen(note), "; tokenizer %d ids, chat format %s%s", t.n_ids,
			 tok_chat_name(t.chat),
			 t.chat == TOK_CHAT_NONE ? " (chat requests will be refused; set [model] chat_format)" : "");
		tok_free(&t);
	} else {
		snprintf(note + strlen(note), note_len - strlen(note), "; no tokenizer.json: clients send token ids");
	}
out_m:
	model_free(&m);
out_ck:
	ckpt_close(&ck);
	return r;
}

/* e's message prefixed with "FILE: [server] KEYS: " (naming the ini keys). */
static int server_err(struct ts_err *e, int rc, const char *file, const char *keys, const char *hint)
{
	char m[sizeof(e->msg)];
	snprintf(m, sizeof(m), "%s", e->msg);
	return ts_errf(e, -rc, "%s: [server] %s: %s%s", file, keys, m, hint);
}

int engine_check_server(const struct cfg *cfg, int required, char *note, size_t note_len, struct ts_err *e)
{
	const char *f = cfg->file[0] ? cfg->file : "config";
	struct tls_config tc;
	int r;
	note[0] = 0;
	if (cfg->server.tls_psk_file[0]) { /* cfg_load already refused PSK with certificates, and half a PSK */
		uint8_t key[TLS_PSK_MAX_BYTES];
		int n = tls_psk_load(cfg->server.tls_psk_file, key, sizeof(key), e);
		if (n < 0)
			return server_err(e, n, f, "tls_psk_file",
					  "; write 32..96 hex digits into it (e.g. `openssl rand -hex 32 > FILE`, mode 0600)");
		r = tls_config_psk(&tc, TLS_SERVER, cfg->server.tls_psk_identity, key, (size_t)n, e);
		memset(key, 0, sizeof(key));
		if (r < 0)
			return server_err(e, r, f, "tls_psk_identity / tls_psk_file", "");
		tls_config_free(&tc);
		snprintf(note, note_len, "server: PSK mode, identity \"%s\", %d-byte key", cfg->server.tls_psk_identity, n);
		return 0;
	}
	if (!cfg->server.tls_cert[0] && !cfg->server.tls_key[0] && !cfg->server.tls_ca[0] && !required) {
		snprintf(note, note_len, "server: no TLS files set (serve needs [server] tls_cert, tls_key and tls_ca)");
		return 0;
	}
	const char *const keys[3] = {"tls_cert", "tls_key", "tls_ca"};
	const char *const paths[3] = {cfg->server.tls_cert, cfg->server.tls_key, cfg->server.tls_ca};
	char unset[32] = "";
	for (int i = 0; i < 3; i++)
		if (!paths[i][0])
			snprintf(unset + strlen(unset), sizeof(unset) - strlen(unset), "%s%s", unset[0] ? ", " : "", keys[i]);
	if (unset[0])
		return ts_errf(e, E_INVAL,
			       "%s: [server] tls_cert, tls_key and tls_ca (or tls_psk_identity and tls_psk_file) must all "
			       "be set to serve (unset: %s); make development certificates with `tokenspeed certs DIR`",
			       f, unset);
	for (int i = 0; i < 3; i++)
		if (access(paths[i], R_OK) != 0)
			return ts_errf(e, E_IO, "%s: [server] %s = %s: %s; check the path (relative paths are relative to "
					   "the ini file), or make files with `tokenspeed certs DIR`",
					f, keys[i], paths[i], strerror(errno));
	if ((r = tls_config_server(&tc, cfg->server.tls_cert, cfg->server.tls_key, cfg->server.tls_ca, e)) < 0)
		return server_err(e, r, f, "tls_cert / tls_key / tls_ca", "");
	char until[48];
	const mbedtls_x509_time *t = &tc.own_cert.valid_to;
	snprintf(until, sizeof(until), "%04d-%02d-%02d", t->year, t->mon, t->day);
	tls_config_free(&tc);
	snprintf(note, note_len, "server: mutual certificates, certificate valid until %s", until);
	return 0;
}

int engine_boot(struct engine *en, const struct cfg *cfg, struct ts_err *e)
{
	const struct backend_ops *ops;
	double t0 = ts_now(), t = t0;
	int r;

	memset(en, 0, sizeof(*en));
	en->cfg = *cfg;
	log_set_level((enum log_level)cfg->log.level);
	log_info("stage=config file=%s", cfg->file[0] ? cfg->file : "(defaults)");

	if ((r = ckpt_open(&en->ck, cfg->model.path, e)) < 0)
		goto fail;
	log_info("stage=checkpoint ms=%.1f dir=%s shards=%d tensors=%d gb=%.3f", (ts_now() - t) * 1e3, en->ck.dir,
		 en->ck.n_shards, en->ck.n_tensors, (double)en->ck.tensor_bytes / 1e9);
	t = ts_now();
	if ((r = model_load(&en->m, &en->ck, e)) < 0)
		goto fail;
	const struct model_dims *d = &en->m.d;
	log_info("stage=model ms=%.1f arch=%s layers=%d dim=%d heads=%d kv_heads=%d head_dim=%d ffn=%d vocab=%d",
		 (ts_now() - t) * 1e3, en->m.arch_name, d->n_layers, d->dim, d->n_heads, d->n_kv_heads, d->head_dim,
		 d->ffn_dim, d->vocab);
	log_model_plan(&en->m);
	if (en->m.n_skipped)
		log_info("stage=model skipped_tensors=%d skipped_gb=%.3f note=\"outside the text model (%s): vision tower, MTP layers; not loaded\"",
			 en->m.n_skipped, (double)en->m.skipped_bytes / 1e9, en->m.tprefix);
	int tp;
	if ((r = engine_pick_backend(cfg, &ops, e)) < 0 || (r = ops->check(&en->m, e)) < 0 ||
	    (r = pick_tp(cfg, ops, &tp, e)) < 0)
		goto fail;

	t = ts_now();
	if ((r = load_tokenizer(en, e)) < 0)
		goto fail;
	if (en->has_tok)
		log_info("stage=tokenizer ms=%.1f ids=%d bos=%d eos=%d add_bos=%d chat=%s", (ts_now() - t) * 1e3,
			 en->tok.n_ids, en->tok.bos_id, en->tok.eos_id, en->tok.add_bos, tok_chat_name(en->tok.chat));
	else
		log_info("stage=tokenizer present=no note=\"no tokenizer.json: clients send token ids\"");

	en->max_seq_len = cfg->engine.max_seq_len;
	if (en->max_seq_len > d->max_pos) {
		log_warn("max_seq_len=%d exceeds the model's max_position_embeddings=%d: using %d", en->max_seq_len,
			 d->max_pos, d->max_pos);
		en->max_seq_len = d->max_pos;
	}
	struct backend_limits lim = {
		.max_batch_tokens = cfg->engine.max_batch_tokens,
		.max_seqs = cfg->engine.max_running,
		.max_seq_len = en->max_seq_len,
		.block_tokens = cfg->engine.kv_block_tokens,
		.threads = cfg->device.cpu_threads,
		.device = first_gpu(cfg),
		.tp = tp,
		/* recurrent layers: the state pool (sched.h) */
		.n_states = model_state_elems_per_seq(&en->m) ? SCHED_STATES_PER_RUNNING * cfg->engine.max_running : 0,
	};
	if ((r = size_kv(en, ops, &lim, e)) < 0)
		goto fail;
	t = ts_now();
	if ((r = ops->init(&en->be, &en->m, &lim, e)) < 0)
		goto fail;
	log_info("stage=backend ms=%.1f backend=%s tp=%d threads=%d weights_gb=%.3f workspace_gb=%.3f kv_gb=%.3f",
		 (ts_now() - t) * 1e3, ops->name, tp, en->be.lim.threads, (double)en->be.weight_bytes / 1e9,
		 (double)en->be.workspace_bytes / 1e9, (double)en->be.kv_bytes / 1e9);
	t = ts_now();
	struct sched_limits sl = {
		.max_running = cfg->engine.max_running,
		.max_queue = cfg->engine.max_queue,
		.max_batch_tokens = cfg->engine.max_batch_tokens,
		.max_seq_len = en->max_seq_len,
		.n_kv_blocks = lim.n_blocks,
		.kv_block_tokens = lim.block_tokens,
	};
	if ((r = sched_init(&en->s, &sl, &en->m, &en->be, e)) < 0)
		goto fail;
	if (lim.n_states)
		log_info("stage=state slots=%d bytes_per_seq=%llu total_mb=%.3f linear_layers=%d prefix_cache=off note=\"recurrent state: 2 slots per max_running (running + parked or waiting sessions)\"",
			 lim.n_states, (unsigned long long)(model_state_elems_per_seq(&en->m) * sizeof(float)),
			 (double)en->be.state_bytes / 1e6, en->m.d.n_linear_layers);
	log_info("stage=kv ms=%.1f blocks=%d block_tokens=%d tokens=%lld bytes_per_token=%llu max_seq_len=%d",
		 (ts_now() - t) * 1e3, lim.n_blocks, lim.block_tokens, (long long)en->kv_tokens,
		 (unsigned long long)ops->kv_bytes_per_token(&en->m), en->max_seq_len);
	t = ts_now();
	if ((r = selftest(en, e)) < 0)
		goto fail;
	log_info("stage=selftest ms=%.1f backend=%s result=pass", (ts_now() - t) * 1e3, en->be.ops->name);
	en->boot_s = ts_now() - t0;
	log_info("ready boot_ms=%.1f", en->boot_s * 1e3);
	return engine_set_state(en, ENGINE_READY);
fail:
	engine_stop(en);
	return r;
}
