/* fwd_graph: decode steps captured as CUDA graphs, one per batch-size
 * bucket, with and without device sampling (see fwd_int.h). */
#include "fwd_int.h"

int fwd_graph_bucket(const struct gpub *p, int n)
{
	for (int i = 0; i < p->n_buckets; i++)
		if (p->bucket_n[i] >= n)
			return i;
	return -1;
}

/* Captures one decode graph per bucket of batch sizes: 1, 2, 4, ... and max_seqs. */
int fwd_graph_capture(struct gpub *p, const struct model *m, int max_seqs)
{
	int n = 1;
	p->n_buckets = 0;
	while (p->n_buckets < N_BUCKETS) {
		int bn = TS_MIN(n, max_seqs);
		p->bucket_n[p->n_buckets++] = bn;
		if (bn == max_seqs)
			break;
		n *= 2;
	}
	for (int sample = 0; sample < 2; sample++)
		for (int k = 0; k < p->n_buckets; k++) {
			int B = p->bucket_n[k];
			if (B > p->T)
				break;
			if (gpu_capture_begin(&p->g) < 0)
				return -E_INTERNAL;
			int r = fwd_run(p, m, B, B, B, 0, m->d.n_layers, sample);
			if (gpu_capture_end(&p->g, &p->graph[sample][k]) < 0 || r < 0)
				return -E_INTERNAL;
		}
	return 0;
}
