/* t_tp: tensor parallelism on the cpu backend ([device] tp = N, ranks as
 * threads meeting in comm's shared-memory all-reduce) against TP = 1, on
 * every tiny architecture preset (dense GQA, MoE, MLA, hybrid):
 *  (a) logits of a two-sequence prefill and of a decode step within an fp32
 *      bound of TP = 1 (only the row-parallel sums are reassociated), and the
 *      largest difference measured is printed;
 *  (b) under TP = N a sequence's logits are bit-identical alone and batched;
 *  (c) greedy continuations of four prompts, batched, identical to TP = 1;
 *  (d) the prefix cache and a kept session: a turn 2 appended to a parked
 *      session and a request sharing a prefix reuse the same number of tokens
 *      and give the same tokens as TP = 1;
 * plus comm's own all-reduce and all-gather (rank order, every rank equal).
 * TP = 3 runs too: uneven shares of the vocabulary, FFN and experts, and
 * attention replicated where the heads do not split. */
#include "t.h"
#include "tutil.h"

#include <math.h>
#include <pthread.h>

#include "comm.h"
#include "fwd.h"

/* Relative bound on |logit(TP = N) - logit(TP = 1)| / max(1, max |logit(TP = 1)|). */
#define TP_BOUND 1e-5

static const char *const presets[] = {
	"llama2-mini", "llama3-mini", "mistral-mini", "qwen2-mini", "qwen3-mini", "llama-hd96-mini",
	"qwen3-hd256-mini", "qwen3moe-mini", "qwen3moe-fused-mini", "mixtral-mini", "dsv2lite-mini", "dsv3-mini",
	"qwen3next-mini", "qwen35-mini", "qwen35moe-mini",
};
#define NPRE (int)(sizeof(presets) / sizeof(presets[0]))

static struct engine en;
static double worst_rel;
static const char *worst_at = "";
static char worst_buf[64];

static void boot_tp(const char *dir, int tp)
{
	struct cfg c;
	struct ts_err e = {0};
	t_cfg(&c, dir);
	c.device.tp = tp;
	c.engine.max_running = 8;
	c.engine.max_batch_tokens = 64;
	c.engine.max_seq_len = 128;
	c.engine.kv_tokens = 16 * 128;
	c.engine.kv_block_tokens = 16;
	if (engine_boot(&en, &c, &e) < 0) {
		fprintf(stderr, "boot %s tp=%d: %s\n", dir, tp, e.msg);
		exit(1);
	}
}

/* ------------------------------------------------------------ (a), (b) logits */

#define LA 7
#define LB 12
#define VMAX 4096

#define NR 6 /* logit rows of the prefill (at most max_running) */
static const int32_t rows[NR] = {0, 3, LA - 1, LA, LA + 5, LA + LB - 1};
static float lg[4][NR + 2][VMAX]; /* per tp index: the prefill's rows, then the two decode rows */
static float alone_a[3][VMAX];
static int32_t toks[LA + LB + 2];

/* Prefill of A (LA tokens) and B (LB) in one batch, every row's logits, then
 * a decode of each; then A alone again (same blocks: same values). */
static void logits_run(int ti, int tp, const char *name)
{
	const int V = en.m.d.vocab;
	struct backend *b = &en.be;
	int32_t blk_a[8] = {0, 1, 2, 3, 4, 5, 6, 7}, blk_b[8] = {8, 9, 10, 11, 12, 13, 14, 15};
	struct batch_seq seqs[2] = {{blk_a, 8, en.s.has_state ? 0 : -1}, {blk_b, 8, en.s.has_state ? 1 : -1}};
	int32_t pos[LA + LB], seq[LA + LB];
	int r;
	T_CHECK(V <= VMAX, "%s: vocab %d > %d", name, V, VMAX);
	for (int t = 0; t < LA + LB; t++) {
		pos[t] = t < LA ? t : t - LA;
		seq[t] = t >= LA;
	}
	struct batch bt = {LA + LB, toks, pos, seq, 2, seqs, NR, rows};
	static float out[NR][VMAX];
	T_CHECK((r = b->ops->forward(b, &bt, &out[0][0])) == 0, "%s tp=%d: prefill failed: %s", name, tp, ts_code_name(r));
	for (int t = 0; t < NR; t++)
		memcpy(lg[ti][t], out[t], (size_t)V * 4);
	int32_t dtok[2] = {toks[LA + LB], toks[LA + LB + 1]}, dpos[2] = {LA, LB}, dseq[2] = {0, 1}, drow[2] = {0, 1};
	struct batch dt = {2, dtok, dpos, dseq, 2, seqs, 2, drow};
	T_CHECK(b->ops->forward(b, &dt, &out[0][0]) == 0, "%s tp=%d: decode failed", name, tp);
	memcpy(lg[ti][NR], out[0], (size_t)V * 4);
	memcpy(lg[ti][NR + 1], out[1], (size_t)V * 4);
	/* (b) A alone: its three rows */
	struct batch at = {LA, toks, pos, seq, 1, seqs, 3, rows};
	T_CHECK(b->ops->forward(b, &at, &alone_a[0][0]) == 0, "%s tp=%d: A alone failed", name, tp);
	for (int t = 0; t < 3; t++)
		T_CHECK(!memcmp(alone_a[t], lg[ti][t], (size_t)V * 4), "%s tp=%d: row %d of A differs alone and batched",
			name, tp, t);
}

static void logits_compare(int ti, int tp, const char *name, int V)
{
	double mx = 0, ref = 1;
	for (int t = 0; t < NR + 2; t++)
		for (int v = 0; v < V; v++) {
			T_CHECK(isfinite(lg[ti][t][v]), "%s tp=%d: logit not finite", name, tp);
			mx = fmax(mx, fabs((double)lg[ti][t][v] - (double)lg[0][t][v]));
			ref = fmax(ref, fabs((double)lg[0][t][v]));
		}
	double rel = mx / ref;
	printf("  %-20s tp=%d max|dlogit|=%.3g max|logit|=%.3g rel=%.3g\n", name, tp, mx, ref, rel);
	T_CHECK(rel <= TP_BOUND, "%s tp=%d: logits differ from tp=1 by %.3g relative (bound %.0e)", name, tp, rel,
		TP_BOUND);
	if (rel > worst_rel) {
		worst_rel = rel;
		snprintf(worst_buf, sizeof(worst_buf), "%s tp=%d", name, tp);
		worst_at = worst_buf;
	}
}

/* ------------------------------------------------------------ (c), (d) generation */

#define NG 4
#define GT 16
#define SP 40

struct gen {
	int32_t toks[8][GT];
	int n[8], n_cached[8], state[8], n_done;
};

static int on_tok(void *ctx, const struct req *r, int32_t t)
{
	struct gen *g = ctx;
	if (g->n[r->user] < GT)
		g->toks[r->user][g->n[r->user]++] = t;
	return 0;
}

static void on_done(void *ctx, const struct req *r)
{
	struct gen *g = ctx;
	g->state[r->user] = r->state;
	g->n_cached[r->user] = r->n_cached;
	g->n_done++;
}

static void sub(const int32_t *p, int n, int user, uint64_t sid, int keep, int append)
{
	struct ts_err e = {0};
	struct sched_submit s = {.prompt = p, .n_prompt = n, .max_tokens = GT, .ignore_eos = 1, .user = (uint64_t)user,
				 .session_id = sid, .keep = keep, .append = append};
	samp_params_default(&s.samp); /* greedy */
	T_CHECK(sched_submit(&en.s, &s, NULL, &e) == 0, "submit %d: %s", user, e.msg);
}

static void drain(struct gen *g, int n)
{
	struct sched_events ev = {on_tok, on_done, g};
	for (int guard = 0; g->n_done < n && guard < 100000; guard++)
		T_CHECK(sched_step(&en.s, &ev) >= 0, "step failed");
}

static struct gen gens[4];
static int32_t prompts[NG][SP], turn2[5];

static void gen_run(int ti)
{
	struct gen *g = &gens[ti];
	memset(g, 0, sizeof(*g));
	for (int i = 0; i < NG; i++) /* (c) batched */
		sub(prompts[i], 9 + 7 * i, i, 0, 0, 0);
	drain(g, NG);
	sub(prompts[0], SP, 4, 77, 1, 0); /* (d) a kept session, then its turn 2 appended */
	drain(g, NG + 1);
	sub(turn2, 5, 5, 77, 0, 1);
	drain(g, NG + 2);
	sub(prompts[0], SP - 3, 6, 0, 0, 0); /* a prefix of the session's first turn */
	drain(g, NG + 3);
}

static void gen_compare(int ti, int tp, const char *name)
{
	const struct gen *a = &gens[ti], *r = &gens[0];
	if (ti == 1)
		printf("  %-20s session turn 2 reused %d tokens, the shared prefix %d\n", name, r->n_cached[5], r->n_cached[6]);
	for (int u = 0; u < NG + 3; u++) {
		T_CHECK(a->n[u] == r->n[u] && !memcmp(a->toks[u], r->toks[u], (size_t)r->n[u] * 4),
			"%s tp=%d: request %d's greedy tokens differ from tp=1", name, tp, u);
		T_CHECK(a->n_cached[u] == r->n_cached[u] && a->state[u] == r->state[u],
			"%s tp=%d: request %d reused %d tokens (tp=1: %d), ended %s (tp=1: %s)", name, tp, u, a->n_cached[u],
			r->n_cached[u], req_state_name((enum req_state)a->state[u]), req_state_name((enum req_state)r->state[u]));
	}
}

/* ------------------------------------------------------------ comm */

struct cr {
	struct comm c;
	float buf[1003];
	float send[5], recv[4 * 5];
};

static void *comm_rank(void *arg)
{
	struct cr *x = arg;
	for (int i = 0; i < 1003; i++)
		x->buf[i] = (float)(x->c.rank + 1) * 0.1f + (float)i * 1e-3f;
	for (int i = 0; i < 5; i++)
		x->send[i] = (float)(x->c.rank * 10 + i);
	comm_all_reduce_sum(&x->c, x->buf, 1003, NULL);
	comm_all_gather(&x->c, x->send, x->recv, 5, NULL);
	comm_barrier(&x->c, NULL);
	return NULL;
}

static void t_comm(void)
{
	static struct cr x[4];
	struct comm_cpu_group *g;
	struct ts_err e = {0};
	pthread_t th[4];
	T_CHECK(comm_cpu_group_new(&g, 4, &e) == 0, "comm group: %s", e.msg);
	for (int r = 0; r < 4; r++) {
		comm_cpu_init(&x[r].c, g, r);
		pthread_create(&th[r], NULL, comm_rank, &x[r]);
	}
	for (int r = 0; r < 4; r++)
		pthread_join(th[r], NULL);
	comm_cpu_group_free(g);
	int bad = 0;
	for (int i = 0; i < 1003; i++) {
		float s = 0.1f + (float)i * 1e-3f; /* rank order 0, 1, 2, 3 */
		for (int r = 1; r < 4; r++)
			s += (float)(r + 1) * 0.1f + (float)i * 1e-3f;
		for (int r = 0; r < 4; r++)
			bad += memcmp(&x[r].buf[i], &s, 4) != 0;
	}
	T_CHECK(bad == 0, "comm all-reduce: %d elements differ from the rank-order sum", bad);
	for (int r = 0; r < 4; r++)
		for (int q = 0; q < 4; q++)
			for (int i = 0; i < 5; i++)
				T_CHECK(x[r].recv[q * 5 + i] == (float)(q * 10 + i), "comm all-gather: rank %d slot %d", r, q);
	T_CHECK(comm_cpu_group_new(&g, 0, &e) == -E_RANGE, "a group of 0 ranks accepted");
}

/* NCCL's loader: here (no libnccl.so.2) one clear line naming the library;
 * where NCCL is installed, a version of at least 2.18. */
static void t_nccl(void)
{
	struct ts_err e = {0};
	int r = comm_nccl_load(&e);
	if (r < 0) {
		T_CHECK(r == -E_UNSUPPORTED, "comm_nccl_load: %s", ts_code_name(r));
		T_HAS(e.msg, "libnccl.so.2");
		T_CHECK(!strchr(e.msg, '\n'), "the NCCL message is more than one line: %s", e.msg);
		printf("  nccl: %s\n", e.msg);
	} else {
		T_CHECK(comm_nccl_version() >= 21800, "NCCL version %d", comm_nccl_version());
		printf("  nccl: loaded, version %d\n", comm_nccl_version());
	}
	/* the boot's choice (boot/boot.c pick_tp): cpu takes [device] tp; the gpu backend the GPUs listed */
	struct cfg c;
	int tp = 0;
	t_cfg(&c, "unused");
	c.device.tp = 3;
	T_CHECK(pick_tp(&c, &cpu_backend_ops, &tp, &e) == 0 && tp == 3, "cpu tp = 3 gave %d", tp);
	snprintf(c.device.gpus, sizeof(c.device.gpus), "0,1");
	T_CHECK(pick_tp(&c, &gpu_backend_ops, &tp, &e) == -E_INVAL, "gpu tp = 3 over 2 GPUs accepted");
	T_HAS(e.msg, "lists 2 GPUs");
	c.device.tp = 0;
	T_CHECK(pick_tp(&c, &gpu_backend_ops, &tp, &e) == -E_UNSUPPORTED, "gpus = 0,1 accepted by the gpu backend");
	T_HAS(e.msg, r < 0 ? "needs NCCL" : "not built yet");
	T_CHECK(!strchr(e.msg, '\n'), "more than one line: %s", e.msg);
	printf("  gpus = 0,1: %s\n", e.msg);
	snprintf(c.device.gpus, sizeof(c.device.gpus), "2");
	T_CHECK(pick_tp(&c, &gpu_backend_ops, &tp, &e) == 0 && tp == 1, "one GPU gave tp %d", tp);
}

int main(void)
{
	static const int tps[4] = {1, 2, 4, 3}; /* 3: uneven shares of everything, heads replicated */
	t_comm();
	t_nccl();
	uint64_t rs = 12345;
	for (int p = 0; p < NPRE; p++) {
		const char *name = presets[p], *dir = t_ckpt(name);
		for (int ti = 0; ti < 4; ti++) {
			boot_tp(dir, tps[ti]);
			if (ti == 0) { /* inputs from the model's vocab */
				for (int i = 0; i < LA + LB + 2; i++)
					toks[i] = (int32_t)((rs = rs * 6364136223846793005ull + 1442695040888963407ull) >> 33) %
						  en.m.d.vocab;
				for (int i = 0; i < NG; i++)
					for (int j = 0; j < SP; j++)
						prompts[i][j] = (int32_t)((rs = rs * 6364136223846793005ull + 1ull) >> 33) %
								en.m.d.vocab;
				for (int j = 0; j < 5; j++)
					turn2[j] = (int32_t)((rs = rs * 6364136223846793005ull + 1ull) >> 33) % en.m.d.vocab;
			}
			logits_run(ti, tps[ti], name);
			gen_run(ti);
			const int V = en.m.d.vocab;
			engine_stop(&en);
			if (ti) {
				logits_compare(ti, tps[ti], name, V);
				gen_compare(ti, tps[ti], name);
			}
		}
	}
	printf("  worst relative logit difference: %.3g (%s), bound %.0e\n", worst_rel, worst_at, TP_BOUND);

	return T_DONE();
}
