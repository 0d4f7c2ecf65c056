/* textw: the text workers (see textw.h).
 *
 * Each worker has two SPSC rings of job pointers: jobs in (the network thread
 * produces, the worker consumes) and jobs out (the worker produces, the
 * network thread consumes). The network thread counts what each worker holds
 * (jobs and bytes of text handed over, not yet polled back), so the out ring
 * can never be full when a worker pushes: a worker holds at most
 * TEXTW_PER_WORKER jobs, no more than the out ring's capacity. The pointer
 * itself carries the job: the rings' release/acquire pairs order the job's
 * contents with it.
 *
 * Jobs not yet handed over wait on the network thread's side in one FIFO per
 * flow (linked through job->next); the flows with jobs wait in a FIFO of
 * their own (turn[]), each once: feed() gives the first flow's first job to
 * the worker holding the fewest bytes, and puts the flow back at the end if
 * it has more.
 *
 * Wake-ups follow ring.h's protocol: a worker drains its wake, pops every
 * job, and only then polls; the network thread notifies after each push.
 * Stop: an atomic flag, then a notify, then the join.
 */
#include "textw.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "stext.h"

struct textw_worker {
	struct textw *w;
	pthread_t th;
	int started;
	struct ring_spsc in, out;
	struct ring_wake wake;
	struct stext_enc enc; /* the worker's own buffers */
	/* network thread only */
	uint32_t n_held; /* jobs handed over and not yet polled back */
	size_t bytes_held;
};

_Static_assert(TEXTW_PER_WORKER <= TEXTW_RING_CAP, "a worker's rings hold every job it may hold");

struct flow {
	struct textw_job *head, *tail;
	uint32_t n_jobs; /* jobs it holds (made and not yet freed) */
};

struct textw {
	const struct tok *t;
	struct ring_wake *done;
	_Atomic int stop;
	int n, next_poll;
	struct textw_worker wk[TEXTW_MAX_WORKERS];
	/* network thread only */
	struct flow *flows; /* (n_flows) */
	uint32_t *turn;     /* (n_flows) flows with jobs waiting, in the order they get a turn */
	uint32_t n_flows, turn_head, n_turn;
	uint32_t max_payload;
	int per_flow;               /* jobs each flow may hold (0: no pool) */
	uint8_t *pool;              /* (per_flow * n_flows, job_bytes) */
	size_t job_bytes, bytes;
	struct textw_job *free_jobs;
};

static void run_job(struct textw_worker *k, struct textw_job *j)
{
	int n = 0;
	if (j->n_extra < 0 || j->n_extra > TEXTW_MAX_EXTRA)
		j->rc = ts_errf(&j->err, E_INTERNAL, "textw: n_extra = %d (at most %d)", j->n_extra, TEXTW_MAX_EXTRA);
	else
		j->rc = stext_prompt(k->w->t, &k->enc, &j->s, &n, &j->err);
	/* the ids stay in the worker's buffer: it takes no other job until this one is freed */
	j->ids = j->rc == 0 ? k->enc.ids : NULL;
	j->n_prompt = j->rc == 0 ? n : 0;
	j->t_done = ts_now();
}

static void *worker_main(void *arg)
{
	struct textw_worker *k = arg;
	struct textw *w = k->w;
	ts_alloc_serving(1);
	/* below the network and engine threads: where cores are short (the CPU
	 * backend), a prompt being tokenized must not slow every client's stream
	 * (Linux: a thread's nice value is its own) */
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), TEXTW_NICE) != 0)
		log_msg(LOG_DEBUG, "textw: setpriority: %s", strerror(errno));
	for (;;) {
		struct textw_job *j;
		ring_wake_drain(&k->wake);
		while (ring_spsc_pop(&k->in, &j)) {
			run_job(k, j);
			if (ring_spsc_push(&k->out, &j) < 0) /* cannot happen: see the header comment */
				log_msg(LOG_ERROR, "textw: result ring full, job lost");
			ring_wake_notify(w->done);
		}
		if (atomic_load_explicit(&w->stop, memory_order_acquire))
			return NULL;
		struct pollfd p = {.fd = ring_wake_fd(&k->wake), .events = POLLIN};
		poll(&p, 1, 1000);
	}
}

struct textw_job *textw_job_new(struct textw *w, uint32_t flow, const uint8_t *payload, uint32_t bytes)
{
	if (flow >= w->n_flows || bytes > w->max_payload)
		return NULL;
	struct flow *fl = &w->flows[flow];
	struct textw_job *j;
	if (w->per_flow) {
		if (fl->n_jobs >= (uint32_t)w->per_flow || !(j = w->free_jobs))
			return NULL;
		w->free_jobs = j->next;
		memset(j, 0, sizeof(*j));
		j->pooled = 1;
	} else if (!(j = ts_alloc(sizeof(*j) + bytes))) {
		return NULL;
	}
	fl->n_jobs++;
	j->flow = j->owner = flow;
	memcpy(j->payload, payload, bytes);
	j->bytes = bytes;
	return j;
}

static void job_drop(struct textw_job *j)
{
	if (!j->pooled)
		ts_free(j);
}

static void feed(struct textw *w);

void textw_job_free(struct textw *w, struct textw_job *j)
{
	if (!j)
		return;
	struct textw_worker *k = j->wk;
	size_t bytes = j->bytes;
	w->flows[j->owner].n_jobs--;
	if (j->pooled) {
		j->next = w->free_jobs;
		w->free_jobs = j;
	} else {
		ts_free(j);
	}
	if (k) { /* the worker's buffer is free: it may take the next job */
		k->n_held--;
		k->bytes_held -= bytes;
		feed(w);
	}
}

size_t textw_bytes(const struct textw *w)
{
	return w->bytes;
}

int textw_start(struct textw **out, const struct tok *t, int n_workers, int n_flows, int jobs_per_flow,
		uint32_t max_payload, struct ring_wake *done, struct ts_err *e)
{
	*out = NULL;
	if (n_workers < 1 || n_workers > TEXTW_MAX_WORKERS || n_flows < 1)
		return ts_errf(e, E_RANGE, "textw: %d workers (1..%d), %d flows (>= 1)", n_workers, TEXTW_MAX_WORKERS,
			       n_flows);
	struct textw *w = ts_alloc(sizeof(*w));
	if (!w)
		return ts_errf(e, E_NOMEM, "textw");
	memset(w, 0, sizeof(*w));
	w->t = t;
	w->done = done;
	w->n = n_workers;
	w->n_flows = (uint32_t)n_flows;
	w->max_payload = max_payload;
	w->per_flow = jobs_per_flow > 0 ? jobs_per_flow : 0;
	w->job_bytes = (sizeof(struct textw_job) + max_payload + 15) & ~(size_t)15;
	size_t n_jobs = (size_t)w->per_flow * (size_t)n_flows;
	w->flows = ts_alloc((size_t)n_flows * sizeof(*w->flows));
	w->turn = ts_alloc((size_t)n_flows * sizeof(*w->turn));
	if (n_jobs)
		w->pool = ts_alloc_resident(n_jobs * w->job_bytes);
	if (!w->flows || !w->turn || (n_jobs && !w->pool)) {
		ts_errf(e, E_NOMEM, "textw: %d flows, %zu jobs of %zu bytes", n_flows, n_jobs, w->job_bytes);
		textw_stop(w);
		return -E_NOMEM;
	}
	for (size_t i = n_jobs; i-- > 0;) {
		struct textw_job *j = (struct textw_job *)(w->pool + i * w->job_bytes);
		j->next = w->free_jobs;
		w->free_jobs = j;
	}
	w->bytes = n_jobs * w->job_bytes;
	int rc = 0;
	for (int i = 0; i < n_workers && rc == 0; i++) {
		struct textw_worker *k = &w->wk[i];
		k->w = w;
		if ((rc = ring_spsc_init(&k->in, TEXTW_RING_CAP, sizeof(struct textw_job *), e)) < 0 ||
		    (rc = ring_spsc_init(&k->out, TEXTW_RING_CAP, sizeof(struct textw_job *), e)) < 0 ||
		    (rc = ring_wake_init(&k->wake, e)) < 0 ||
		    (rc = stext_enc_reserve(&k->enc, t, (size_t)max_payload + TEXTW_RENDER_SLACK, TEXTW_MAX_EXTRA, e)) < 0)
			break;
		w->bytes += stext_enc_bytes(&k->enc);
		if (pthread_create(&k->th, NULL, worker_main, k) != 0) {
			rc = ts_errf(e, E_IO, "textw: cannot start worker thread %d", i);
			break;
		}
		k->started = 1;
	}
	if (rc < 0) {
		textw_stop(w);
		return rc;
	}
	*out = w;
	return 0;
}

void textw_stop(struct textw *w)
{
	if (!w)
		return;
	atomic_store_explicit(&w->stop, 1, memory_order_release);
	for (int i = 0; i < w->n; i++) {
		struct textw_worker *k = &w->wk[i];
		struct textw_job *j;
		if (k->started) {
			ring_wake_notify(&k->wake);
			pthread_join(k->th, NULL);
		}
		/* joined: this thread may now pop both rings */
		while (k->in.mem && ring_spsc_pop(&k->in, &j))
			job_drop(j);
		while (k->out.mem && ring_spsc_pop(&k->out, &j))
			job_drop(j);
		ring_spsc_free(&k->in);
		ring_spsc_free(&k->out);
		ring_wake_free(&k->wake);
		stext_enc_free(&k->enc);
	}
	for (uint32_t f = 0; w->flows && f < w->n_flows; f++)
		for (struct textw_job *j = w->flows[f].head, *nx; j; j = nx) {
			nx = j->next;
			job_drop(j);
		}
	ts_free(w->flows);
	ts_free(w->pool);
	ts_free(w->turn);
	ts_free(w);
}

/* Hands waiting jobs to workers with room, the flows taking turns. */
static void feed(struct textw *w)
{
	while (w->n_turn > 0) {
		struct textw_worker *best = NULL;
		for (int i = 0; i < w->n; i++) {
			struct textw_worker *k = &w->wk[i];
			if (k->n_held < TEXTW_PER_WORKER && (!best || k->bytes_held < best->bytes_held))
				best = k;
		}
		if (!best)
			return;
		uint32_t f = w->turn[w->turn_head];
		w->turn_head = (w->turn_head + 1) % w->n_flows;
		w->n_turn--;
		struct flow *fl = &w->flows[f];
		struct textw_job *j = fl->head;
		if (!(fl->head = j->next))
			fl->tail = NULL;
		else /* its next job waits for the flow's next turn */
			w->turn[(w->turn_head + w->n_turn++) % w->n_flows] = f;
		j->next = NULL;
		j->wk = best;
		if (ring_spsc_push(&best->in, &j) < 0) { /* cannot happen: n_held < TEXTW_PER_WORKER <= capacity */
			log_msg(LOG_ERROR, "textw: job ring full, job lost");
			continue;
		}
		best->n_held++;
		best->bytes_held += j->bytes;
		ring_wake_notify(&best->wake);
	}
}

int textw_submit(struct textw *w, struct textw_job *j)
{
	if (j->flow >= w->n_flows)
		return -E_INVAL;
	struct flow *fl = &w->flows[j->flow];
	j->t_queued = ts_now();
	j->next = NULL;
	if (fl->tail) {
		fl->tail->next = j;
	} else { /* an idle flow joins the turns */
		fl->head = j;
		w->turn[(w->turn_head + w->n_turn++) % w->n_flows] = j->flow;
	}
	fl->tail = j;
	feed(w);
	return 0;
}

struct textw_job *textw_poll(struct textw *w)
{
	for (int r = 0; r < w->n; r++) {
		struct textw_worker *k = &w->wk[(w->next_poll + r) % w->n];
		struct textw_job *j;
		if (ring_spsc_pop(&k->out, &j)) { /* k stays held until textw_job_free */
			w->next_poll = (int)(k - w->wk + 1) % w->n;
			return j;
		}
	}
	return NULL;
}
