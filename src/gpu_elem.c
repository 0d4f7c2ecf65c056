/* gpu_elem: launchers of kernels/elem.cu and kernels/samp.cu (see gpu_elem.h).
 * The block sizes and shared-memory sizes below are the kernels' own
 * constants; each names the #define it mirrors. */
#include "gpu_elem.h"

#include "log.h"

#define ELEM_EMBED_BLOCK 256 /* k_embed_bf16: any multiple of 32 up to 256 */
#define ELEM_RMS_CACHE 4     /* elem.cu RMS_CACHE */
#define ELEM_ROPE_WARPS 8    /* elem.cu ROPE_WARPS */
#define ELEM_ROPE_MAX_HD 256 /* elem.cu 2 * ROPE_MAX_HALF */
#define SAMP_THREADS 1024    /* samp.cu SAMP_THREADS */
#define SAMP_SMEM_BYTES (16 * SAMP_THREADS * 12) /* samp.cu SAMP_SMEM_BYTES */
#define SAMP_MAX_VOCAB (1 << 24)

/* Preconditions: 0, or -E_INVAL after one log line naming kernel and test. */
static int need(int ok, const char *kernel, const char *what)
{
	if (ok)
		return 0;
	log_error("gpu_elem: %s: precondition %s does not hold; not launched", kernel, what);
	return -E_INVAL;
}

static int aligned16(const void *p)
{
	return ((uintptr_t)p & 15) == 0;
}

static unsigned round32(int n)
{
	return (unsigned)((n + 31) / 32 * 32);
}

/* ---------------------------------------------------------------- elem */

int embed_run(struct gpu *g, const struct k_embed *a)
{
	const char *k = "k_embed_bf16";
	int rc;
	if ((rc = need(a->T >= 0 && a->dim > 0 && a->dim % 8 == 0, k, "T >= 0, dim > 0, dim % 8 == 0")) < 0 ||
	    (rc = need(a->table && a->token && a->x, k, "table, token, x given")) < 0 ||
	    (rc = need(aligned16(a->table) && aligned16(a->x), k, "table, x 16-byte aligned")) < 0)
		return rc;
	if (a->T == 0)
		return 0;
	unsigned block = round32(a->dim / 8);
	block = block < ELEM_EMBED_BLOCK ? block : ELEM_EMBED_BLOCK;
	return gpu_launch(g, GPU_K_EMBED, (unsigned)a->T, 1, 1, block, 0, a, sizeof(*a));
}

int rmsnorm_run(struct gpu *g, const struct k_rmsnorm *a)
{
	const char *k = "k_rmsnorm_bf16";
	int rc;
	if ((rc = need(a->T >= 0 && a->dim > 0 && a->dim % 8 == 0, k, "T >= 0, dim > 0, dim % 8 == 0")) < 0 ||
	    (rc = need(a->x && a->w && a->out, k, "x, w, out given")) < 0 ||
	    (rc = need(aligned16(a->x) && aligned16(a->w) && aligned16(a->out), k, "x, w, out 16-byte aligned")) < 0 ||
	    (rc = need(a->eps >= 0.0f, k, "eps >= 0")) < 0)
		return rc;
	if (a->T == 0)
		return 0;
	/* each thread keeps ELEM_RMS_CACHE chunks of 8 in registers */
	int chunks = a->dim / 8, per = (chunks + ELEM_RMS_CACHE - 1) / ELEM_RMS_CACHE;
	unsigned block = round32(per);
	block = block > 1024 ? 1024 : block;
	return gpu_launch(g, GPU_K_RMSNORM, (unsigned)a->T, 1, 1, block, 0, a, sizeof(*a));
}

int rope_kv_run(struct gpu *g, const struct k_rope_kv *a)
{
	const char *k = "k_rope_kv_bf16";
	int rc;
	if ((rc = need(a->T >= 0 && a->n_heads > 0 && a->n_kv_heads > 0, k, "T >= 0, n_heads > 0, n_kv_heads > 0")) < 0 ||
	    (rc = need(a->head_dim >= 2 && a->head_dim <= ELEM_ROPE_MAX_HD && a->head_dim % 2 == 0, k,
		       "head_dim even, 2..256")) < 0 ||
	    (rc = need(a->block_tokens > 0 && a->max_blocks > 0, k, "block_tokens > 0, max_blocks > 0")) < 0 ||
	    (rc = need(!a->q_norm == !a->k_norm, k, "q_norm and k_norm both given or both NULL")) < 0 ||
	    (rc = need(a->qkv && a->q && a->kc && a->vc && a->pos && a->seq && a->blocks && a->inv_freq, k,
		       "qkv, q, kc, vc, pos, seq, blocks, inv_freq given")) < 0)
		return rc;
	if (a->T == 0)
		return 0;
	int tasks = a->n_heads + 2 * a->n_kv_heads;
	unsigned gy = (unsigned)((tasks + ELEM_ROPE_WARPS - 1) / ELEM_ROPE_WARPS);
	return gpu_launch(g, GPU_K_ROPE_KV, (unsigned)a->T, gy, 1, 32 * ELEM_ROPE_WARPS, 0, a, sizeof(*a));
}

/* ---------------------------------------------------------------- sampling */

int argmax_run(struct gpu *g, const struct k_sample *a)
{
	const char *k = "k_argmax_f32";
	int rc;
	if ((rc = need(a->n >= 0 && a->vocab > 0 && a->ld >= a->vocab, k, "n >= 0, vocab > 0, ld >= vocab")) < 0 ||
	    (rc = need(a->logits && a->out, k, "logits, out given")) < 0)
		return rc;
	if (a->n == 0)
		return 0;
	return gpu_launch(g, GPU_K_ARGMAX, (unsigned)a->n, 1, 1, SAMP_THREADS, 0, a, sizeof(*a));
}

static int smem_raised;     /* once per loaded function: */
static const void *smem_fn; /* the one whose shared-memory limit is raised */

int sample_prepare(struct gpu *g)
{
	if (smem_raised && smem_fn == g->fn[GPU_K_SAMPLE])
		return 0;
	int rc = gpu_set_smem(g, GPU_K_SAMPLE, SAMP_SMEM_BYTES);
	if (rc < 0)
		return rc;
	smem_raised = 1;
	smem_fn = g->fn[GPU_K_SAMPLE];
	return 0;
}

int sample_run(struct gpu *g, const struct k_sample *a)
{
	const char *k = "k_sample_f32";
	int rc;
	if ((rc = need(a->n >= 0 && a->vocab > 0 && a->vocab <= SAMP_MAX_VOCAB && a->ld >= a->vocab, k,
		       "n >= 0, 0 < vocab <= 2^24, ld >= vocab")) < 0 ||
	    (rc = need(a->logits && a->out && a->rows && a->work, k, "logits, out, rows, work given")) < 0)
		return rc;
	if (a->n == 0)
		return 0;
	if ((rc = sample_prepare(g)) < 0)
		return rc;
	return gpu_launch(g, GPU_K_SAMPLE, (unsigned)a->n, 1, 1, SAMP_THREADS, SAMP_SMEM_BYTES, a, sizeof(*a));
}

uint64_t sample_workspace_bytes(int max_rows, int vocab)
{
	if (max_rows <= 0 || vocab <= 0)
		return 0;
	uint64_t b = (uint64_t)max_rows * (uint64_t)vocab * sizeof(float);
	return (b + 255) & ~(uint64_t)255;
}
