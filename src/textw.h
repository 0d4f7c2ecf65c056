/* textw: text prompts tokenized off the network thread -- a small pool of
 * worker threads, fixed at boot, that turn a SUBMIT's prompt_text or chat
 * messages into prompt ids (stext_prompt: chat rendering, NFC, BPE).
 *
 *   network thread --job--> [ring_spsc, one per worker] --> worker
 *   network thread <--job-- [ring_spsc, one per worker] <-- worker  (+ the network thread's eventfd)
 *
 * Fairness: each job names a flow (the caller's connection). Jobs wait in
 * their flow's queue on the network thread's side, and flows take turns
 * handing one job at a time to a worker that holds fewer than
 * TEXTW_PER_WORKER: one client's backlog of the worst prompts delays another
 * client's prompt by at most the jobs the workers already hold.
 *
 * Why threads of our own (measured, README "Text off the network thread"):
 * the worst prompt the frame limit admits costs tens of milliseconds to
 * tokenize; on the network thread that stalls every client's stream, on the
 * engine thread every step of the batch. A worker only delays the prompt
 * that needs it.
 *
 * Memory, all taken at textw_start: each worker's stext_enc, reserved for
 * the largest text a job of max_payload bytes can hold, a chat as rendered
 * with TEXTW_RENDER_SLACK more (tok_encode's scratch is the most of it:
 * about 80 bytes a byte of text, 260 with NFC); and jobs_per_flow jobs of
 * max_payload bytes for each flow. A flow that holds jobs_per_flow jobs, or
 * a payload over max_payload, gets no job (textw_job_new: NULL).
 *
 * Owns: the worker threads and their rings and buffers, the job pool, the
 * queue of each flow, and a job while it is queued or a worker holds it. A
 * job is a message that moves whole: the network thread owns it until
 * textw_submit, the worker until it pushes it back, then the network thread
 * again (textw_poll) until textw_job_free. The ids of a finished job are the
 * worker's buffer: that worker takes no other job until textw_job_free.
 * Does not: know connections or requests (the tag is the caller's); touch
 * the engine; decide what a failed prompt means to the client.
 * Threads: textw_start and textw_stop on the serve lifecycle's thread;
 * textw_job_new, textw_submit, textw_poll and textw_job_free on one thread,
 * the network thread (the rings' single producer of jobs and single consumer
 * of results). The tokenizer is read-only and shared by all workers.
 */
#ifndef TS_TEXTW_H
#define TS_TEXTW_H

#include "proto.h"
#include "ring.h"
#include "tok.h"

struct textw_job {
	/* set by the network thread */
	uint64_t tag;           /* the caller's */
	uint32_t flow;          /* the caller's fairness key (its connection), < n_flows */
	struct proto_submit s;  /* decoded from payload: its strings point into it */
	int n_extra;            /* ids wanted after the prompt's (the caller fills them) */
	/* set by the worker */
	int rc;                 /* 0, or -E_INVAL / -E_UNSUPPORTED / -E_NOMEM from stext_prompt */
	struct ts_err err;      /* with rc < 0 */
	int32_t *ids;           /* (n_prompt + n_extra) the prompt's ids first, in the worker's buffer; NULL when rc < 0 */
	int n_prompt;
	double t_queued, t_done; /* ts_now() at textw_submit and when the worker finished */
	size_t bytes;           /* of payload */
	struct textw_job *next; /* textw's: the next in its flow's queue (or the pool's free list) */
	struct textw_worker *wk; /* textw's: the worker whose buffer ids is in */
	int pooled;             /* textw's: from the pool */
	uint32_t owner;         /* textw's: the flow it was made for (its n_jobs) */
	uint8_t payload[];      /* a copy of the SUBMIT's payload */
};

struct textw;

#define TEXTW_MAX_WORKERS 64
#define TEXTW_PER_WORKER  1  /* jobs a worker holds at once (running or finished): the fairness bound */
#define TEXTW_RING_CAP    2u /* a power of two >= TEXTW_PER_WORKER */
#define TEXTW_NICE        10    /* the workers' nice value (the other threads keep theirs) */
#define TEXTW_RENDER_SLACK (64u << 10) /* a chat's rendering may pass its payload's size by this much */
#define TEXTW_MAX_EXTRA   64    /* the most n_extra */

/* Starts n_workers (1..TEXTW_MAX_WORKERS) threads over t, for jobs of flows
 * 0..n_flows-1 whose payloads hold up to max_payload bytes, with
 * jobs_per_flow jobs for each flow taken now (0: a job is allocated when
 * made, for tests). Each finished job notifies done (the network thread's
 * wake-up). 0, or -E_RANGE / -E_NOMEM / -E_IO. */
int textw_start(struct textw **out, const struct tok *t, int n_workers, int n_flows, int jobs_per_flow,
		uint32_t max_payload, struct ring_wake *done, struct ts_err *e);
/* Bytes taken at textw_start. */
size_t textw_bytes(const struct textw *w);

/* Stops and joins the workers, then frees every job still queued or
 * finished and not yet polled. Safe on NULL. */
void textw_stop(struct textw *w);

/* A job of flow holding a copy of payload[0..bytes); NULL when the flow
 * holds all its jobs, the payload is over max_payload, or (no pool) out of
 * memory. */
struct textw_job *textw_job_new(struct textw *w, uint32_t flow, const uint8_t *payload, uint32_t bytes);
/* Gives j back (and with it the worker's buffer its ids are in). */
void textw_job_free(struct textw *w, struct textw_job *j);

/* Queues j behind its flow's earlier jobs; it goes to a worker (the one
 * holding the fewest bytes) when its flow's turn comes. 0, or -E_INVAL for a
 * flow out of range (j stays the caller's). */
int textw_submit(struct textw *w, struct textw_job *j);

/* A finished job (now the caller's), or NULL when none is waiting. Hands
 * queued jobs to the workers it frees. */
struct textw_job *textw_poll(struct textw *w);

#endif
