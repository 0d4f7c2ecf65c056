/* t_textw: the text workers (src/textw.c) on qwen3-mini's tokenizer (NFC):
 * (1) 400 text prompts of every size up to 256 KB (plain, long runs of
 *     combining marks, NFC-expanding characters) through 3 workers come back
 *     each with its own tag and exactly the ids stext_prompt gives on this
 *     thread, with room for n_extra ids after them;
 * (2) fairness: a small prompt of one flow (connection) submitted behind 24
 *     prompts of 256 KB of another comes back among the first ones (flows
 *     take turns; a worker holds at most TEXTW_PER_WORKER jobs);
 * (3) textw_stop with jobs queued, running and finished (ASan's leak check
 *     in make test-asan says whether it frees them all);
 * (4) a bad worker count is refused with a message. */
#include "t.h"
#include "textw.h"
#include "stext.h"

#include <poll.h>

#define DIR "build/tests/ckpt/textw-tok"

static uint64_t rs = 7;
static uint32_t rnd(uint32_t n)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(rs >> 33) % n;
}

static struct textw *w;

/* A job for text[0..n) of flow as the network thread makes one (payload = the text). */
static struct textw_job *job_flow(const char *text, size_t n, uint64_t tag, uint32_t flow)
{
	struct textw_job *j = textw_job_new(w, flow, (const uint8_t *)text, (uint32_t)n);
	if (!j)
		return NULL;
	j->tag = tag;
	j->s.flags = PROTO_SUBMIT_TEXT_PROMPT;
	j->s.prompt_text = (struct proto_str){(const char *)j->payload, (uint32_t)n};
	j->n_extra = (int)(tag % 5);
	return j;
}

static struct textw_job *job_for(const char *text, size_t n, uint64_t tag)
{
	return job_flow(text, n, tag, (uint32_t)(tag % 7));
}

static size_t make_text(char *s, size_t cap, int kind)
{
	static const char *const unit[] = {"the quick brown fox ", "\xcc\x81\xcc\xa3", "\xef\xac\xac",
					   "\xf0\x9d\x85\xa0", "caf\xc3\xa9 \xe6\x97\xa5 "};
	size_t n = 0, u = strlen(unit[kind % 5]), want = 1 + rnd((uint32_t)cap - 8);
	if (kind % 5 == 1 || kind % 5 == 2)
		s[n++] = 'x';
	while (n + u <= want) {
		memcpy(s + n, unit[kind % 5], u);
		n += u;
	}
	return n;
}

static struct textw_job *wait_one(struct textw *tw, struct ring_wake *wk, double timeout_s)
{
	double t0 = ts_now();
	for (;;) {
		ring_wake_drain(wk);
		struct textw_job *j = textw_poll(tw);
		if (j || ts_now() - t0 > timeout_s)
			return j;
		struct pollfd p = {.fd = ring_wake_fd(wk), .events = POLLIN};
		poll(&p, 1, 100);
	}
}

int main(void)
{
	struct tok t;
	struct ts_err e = {0};
	T_CHECK(system("rm -rf " DIR " && mkdir -p " DIR " && build/tests/gen_ckpt --preset qwen3-mini --out " DIR
		       " --tokenizer --no-weights > /dev/null") == 0,
		"gen_ckpt --tokenizer");
	if (tok_load(&t, DIR, &e)) {
		T_CHECK(0, "tok_load: %s", e.msg);
		return T_DONE();
	}
	struct ring_wake wk = {0};
	T_CHECK(ring_wake_init(&wk, &e) == 0, "wake: %s", e.msg);
	T_CHECK(textw_start(&w, &t, 0, 7, 0, 1 << 18, &wk, &e) == -E_RANGE && strstr(e.msg, "workers") && !w, "0 workers: %s", e.msg);
	int rc = textw_start(&w, &t, 3, 7, 0, 1 << 18, &wk, &e);
	T_CHECK(rc == 0, "textw_start: %s", e.msg);
	if (rc)
		return T_DONE();

	/* (1) */
	enum { N = 400 };
	static char *texts[N];
	static size_t lens[N];
	for (int i = 0; i < N; i++) {
		texts[i] = malloc(1 << 18);
		lens[i] = make_text(texts[i], i % 50 == 0 ? 1 << 18 : 4096, i);
		struct textw_job *j = job_for(texts[i], lens[i], (uint64_t)i);
		T_CHECK(j && textw_submit(w, j) == 0, "submit %d", i);
	}
	int back = 0, bad = 0, seen[N] = {0};
	struct stext_enc enc = {0};
	while (back < N) {
		struct textw_job *j = wait_one(w, &wk, 60);
		if (!j)
			break;
		back++;
		int i = (int)j->tag, n = -1;
		struct proto_submit s = {.flags = PROTO_SUBMIT_TEXT_PROMPT, .prompt_text = {texts[i], (uint32_t)lens[i]}};
		int r = stext_prompt(&t, &enc, &s, &n, &e);
		int ok = i >= 0 && i < N && !seen[i]++ && j->rc == 0 && r == 0 && j->n_prompt == n &&
			 memcmp(j->ids, enc.ids, (size_t)n * 4) == 0 && j->t_done >= j->t_queued;
		if (ok && j->n_extra)
			j->ids[n + j->n_extra - 1] = 7; /* the room is there (ASan would say) */
		if (!ok && bad++ < 3)
			T_CHECK(0, "job %d: rc %d, %d ids (want %d)", i, j->rc, j->n_prompt, n);
		textw_job_free(w, j);
	}
	T_CHECK(back == N && bad == 0, "%d of %d jobs back, %d wrong", back, N, bad);

	/* (2) a 256 KB worst prompt, then a small one: the small one comes back first */
	size_t nb = 1;
	char *big = malloc(1 << 18);
	big[0] = 'a';
	while (nb + 3 <= (1 << 18)) {
		memcpy(big + nb, "\xef\xac\xac", 3);
		nb += 3;
	}
	for (int i = 0; i < 24; i++) {
		struct textw_job *j = job_for(big, nb, 7000 + (uint64_t)i * 7); /* flow 0 */
		T_CHECK(j && textw_submit(w, j) == 0, "submit big %d", i);
	}
	struct textw_job *js = job_flow("hello", 5, 1001, 1); /* the big ones' tags are all flow 0 */
	T_CHECK(textw_submit(w, js) == 0, "submit small");
	int pos = -1;
	double big_ms = 0;
	for (int i = 0; i < 25; i++) {
		struct textw_job *j = wait_one(w, &wk, 60);
		if (!j)
			break;
		if (j->tag == 1001)
			pos = i;
		else
			big_ms = (j->t_done - j->t_queued) * 1e3;
		textw_job_free(w, j);
	}
	T_CHECK(pos >= 0 && pos <= 3 * TEXTW_PER_WORKER, "the small prompt of another flow came back %d-th of 25", pos + 1);
	printf("# t_textw: a small prompt behind 24 of 256 KB (\"a\" + U+FB2C*) of another flow came back %d-th; the "
	       "last big one waited and ran %.0f ms\n", pos + 1, big_ms);

	/* (3) stop with jobs in every state (make test-asan's leak check holds it to freeing them all) */
	int queued = 0;
	for (int i = 0; i < 60; i++)
		queued += textw_submit(w, job_for(i % 3 ? texts[i] : big, i % 3 ? lens[i] : nb, (uint64_t)i)) == 0;
	struct pollfd p = {.fd = -1};
	poll(&p, 0, 30); /* some finished and waiting, some running, some queued */
	textw_stop(w);
	T_CHECK(queued == 60, "60 jobs queued, then stopped");

	for (int i = 0; i < N; i++)
		free(texts[i]);
	free(big);
	stext_enc_free(&enc);
	ring_wake_free(&wk);
	tok_free(&t);
	return T_DONE();
}
