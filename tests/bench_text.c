/* bench_text: the engine thread's text cost per generated token -- streaming
 * detokenization with special tokens skipped, and stop-sequence matching
 * (src/stext.c) -- on a real vocabulary.
 *
 *   build/tests/bench_text [dir]     (make bench; dir default build/tok/llama3,
 *                                     from tests/tok_setup.sh)
 *
 * Ids are drawn uniformly from the vocabulary (every token as likely as any
 * other: longer and rarer tokens than real text has, so an upper bound). The
 * figure to hold it against: the engine step's own cost (bench_sched), since
 * at N running requests a step pays N of these. */
#include <time.h>

#include "stext.h"
#include "t.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "build/tok/llama3";
	struct tok t;
	struct ts_err e = {0};
	if (tok_load(&t, dir, &e)) {
		fprintf(stderr, "bench_text: %s (run sh tests/tok_setup.sh)\n", e.msg);
		return 1;
	}
	static const struct proto_str stops[4] = {{"\n\nUser:", 7}, {"</answer>", 9}, {"###", 3}, {"STOP", 4}};
	const int n = 2000000;
	for (uint32_t ns = 0; ns <= 4; ns += 4) {
		for (int run = 0; run < 3; run++) {
			struct stext *x = stext_new(&t, 1, stops, ns);
			uint64_t s = 1;
			size_t bytes = 0;
			int ended = 0;
			double t0 = cpu_now();
			for (int i = 0; i < n && x; i++) {
				s = s * 6364136223846793005ull + 1442695040888963407ull;
				const char *o;
				size_t k;
				if (stext_token(x, (int32_t)((s >> 33) % (uint64_t)t.n_ids), &o, &k)) {
					stext_free(x);
					x = stext_new(&t, 1, stops, ns);
					ended++;
				}
				bytes += k;
			}
			double dt = cpu_now() - t0;
			stext_free(x);
			printf("text per token, %u stop sequences: %.1f ns (%.2f bytes of text a token, %d stops hit; "
			       "x 256 running = %.1f us a step)\n",
			       ns, dt / n * 1e9, (double)bytes / n, ended, dt / n * 256 * 1e6);
		}
	}
	tok_free(&t);
	return 0;
}
