/*
 * handlers.h - the work behind POST /embed/image, /embed/text, /classify and /v1/embeddings:
 * request -> job with items (admission, label cache lookups) and, once every item is done,
 * job -> response body (normalization, template averaging, scoring).
 *
 * It knows nothing about libmicrohttpd: http.c calls handlers_prepare() on an I/O thread,
 * suspends the connection, calls handlers_submit(), and after the job's done callback resumed
 * the connection calls handlers_finish() on an I/O thread again.
 *
 * Ownership: handlers_prepare returns a work the caller frees with handlers_work_free() (only
 * after the done callback ran, or if it was never submitted). The work borrows `body` (a raw
 * image points into it), so the body must outlive it.
 */
#ifndef CLOOB_HANDLERS_H
#define CLOOB_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "batcher.h"
#include "lru.h"
#include "metrics.h"
#include "workers.h"

typedef enum handler_kind {
    HANDLER_EMBED_IMAGE = 0,
    HANDLER_EMBED_TEXT,
    HANDLER_CLASSIFY,
    HANDLER_OPENAI_EMBEDDINGS
} handler_kind;

typedef struct handlers_ctx {
    batcher *b;
    workers *w;
    metrics *m;
    api_limits limits;
    int request_timeout_ms; /* 0 = no deadline */
} handlers_ctx;

typedef struct handler_work handler_work;

/* Options for a request body that is a raw image (Content-Type image/...). */
typedef struct handler_raw_opts {
    int raw;                  /* 1: body is the image itself */
    const char *normalize_q;  /* query ?normalize=..., NULL if absent */
    const char *encoding_q;   /* query ?encoding_format=..., NULL if absent */
} handler_raw_opts;

/*
 * I/O thread: parses and validates the body, reserves queue space and builds the job. On
 * success returns 0 and *out; the job's done callback (done, arg) will run once after
 * handlers_submit. If every input was served from the cache the job has no items: *out is
 * returned with handlers_work_ready() == 1 and needs no submit. On failure returns -1 with err
 * (and *retry_after_s for 429).
 */
int handlers_prepare(const handlers_ctx *ctx, handler_kind kind, const char *body, size_t len,
                     const handler_raw_opts *raw, batch_job_done_fn done, void *arg,
                     handler_work **out, api_error *err, int *retry_after_s);
/* 1 if the work needs no model pass (answer right away with handlers_finish). */
int handlers_work_ready(const handler_work *w);
/* I/O thread: hands the items to the worker pool. The done callback may run before this returns. */
void handlers_submit(const handlers_ctx *ctx, handler_work *w);
/*
 * I/O thread, after the done callback: writes the response body. Returns the HTTP status
 * (200, or the job's error status with err filled and nothing written).
 */
int handlers_finish(const handlers_ctx *ctx, handler_work *w, jbuf *out, api_error *err);
/* The job's deadline (CLOCK_MONOTONIC ns; 0 = none). Fixed by handlers_prepare. */
int64_t handlers_deadline_ns(const handler_work *w);
/* Any thread, while w is alive: fails the job with err (unless it already failed) so that its
 * remaining items are dropped unrun. The done callback still runs once, when the last item that
 * is already in a forward pass finishes; w must stay alive until then. */
void handlers_fail_job(handler_work *w, api_err err, const char *message);
/* Server-Timing values of the finished job, in milliseconds. */
void handlers_timing(const handler_work *w, double *decode_ms, double *queue_ms, double *infer_ms);
void handlers_work_free(handler_work *w); /* NULL is fine */

#endif /* CLOOB_HANDLERS_H */
