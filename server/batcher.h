/*
 * batcher.h - dynamic batching onto the one model, and the job/item bookkeeping around it.
 *
 * Design (Triton's dynamic batcher, per modality):
 *   - A request becomes a *job* with N *items* (an image or a text each). Items travel
 *     HTTP thread -> worker pool (decode/preprocess or tokenize) -> the batcher's queue for their
 *     modality -> one forward pass -> their slot in the job's output array.
 *   - Admission control happens once per request, before anything is queued: the job's items
 *     are counted against max_queue_items (items admitted but not yet in a forward pass, both
 *     modalities together). Beyond it the request is refused with 429 and a Retry-After computed
 *     from the queue depth and the measured time per item.
 *   - ONE inference thread owns the cloob_model handle (it also loads it and warms it up, so
 *     /healthz answers while that happens). It runs a batch of a modality when the queue holds
 *     max_batch items or its oldest item has waited max_queue_delay_us; when both modalities are
 *     ready the one with the older head goes first. Text batches are padded to the longest text
 *     in the batch only.
 *   - Deadlines: items of a job whose deadline has passed, or whose job already failed, are
 *     dropped before any model work (504 / the job's first error).
 *   - Failure isolation: a bad item fails only its own job; an out-of-memory status from the
 *     model fails the jobs in that batch with 503 and the server keeps serving.
 *   - When a job's last item is finished (done, failed or dropped), its done callback runs once,
 *     on whichever thread finished that item (worker or inference thread); the HTTP layer uses
 *     it to resume the suspended connection. The callback must not block.
 *
 * Thread safety: every function may be called from any thread unless its comment says otherwise.
 * Ownership: jobs and items are allocated and freed by the caller (the HTTP layer); they must
 * stay valid until the job's done callback has run. Pixel buffers are allocated by the worker
 * (malloc) and freed by the batcher after the forward pass (or by whoever drops the item).
 */
#ifndef CLOOB_BATCHER_H
#define CLOOB_BATCHER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "cloob.h"
#include "lru.h"
#include "metrics.h"

#define BATCH_MAX_SEQ 128 /* inline token capacity per item; models have max_seq_len 77 */

typedef enum batch_modality { BATCH_IMAGE = 0, BATCH_TEXT = 1, BATCH_MODALITIES = 2 } batch_modality;

typedef struct batch_job batch_job;
typedef void (*batch_job_done_fn)(batch_job *job, void *arg);

struct batch_job {
    pthread_mutex_t lock;      /* guards pending, err, message, the timing maxima */
    int pending;               /* items not finished yet */
    api_err err;               /* API_OK, or the first failure (the job's answer) */
    char message[API_MESSAGE_MAX];
    int64_t deadline_ns;       /* CLOCK_MONOTONIC ns; 0 = no deadline */
    int64_t decode_ns;         /* max over items: decode+preprocess or tokenize */
    int64_t queue_ns;          /* max over items: time in the batcher's queue */
    int64_t infer_ns;          /* max over items: the forward pass they were part of */
    batch_job_done_fn done;
    void *done_arg;
};

typedef struct batch_item {
    batch_job *job;
    batch_modality modality;
    int index;                 /* position in the request (for messages: "images[3]") */
    const char *field;         /* "images", "texts", "labels": for messages */
    float *out;                /* embed_dim floats in the job's output: UNnormalized features */

    /* input, borrowed from the request */
    const char *src;
    size_t src_len;
    int src_base64;            /* image: src is base64 text (else raw bytes) */
    int truncate;              /* text: 0 = a text over the limit fails with 422 */

    /* prepared by the worker */
    float *pixels;             /* 3*S*S floats, malloc'd; freed after the forward pass */
    int64_t ids[BATCH_MAX_SEQ];
    int n_tokens;              /* [CLS] included */
    int n_dropped;             /* tokens cut by truncation */

    /* batcher bookkeeping */
    int admitted;              /* still counted against max_queue_items */
    int64_t t_queued_ns;       /* when it entered the batcher's queue */
    struct batch_item *next;
} batch_item;

/* Jobs: init before use (pending = n_items), destroy after done ran. deadline_ms 0 = none. */
void batch_job_init(batch_job *job, int n_items, int deadline_ms, batch_job_done_fn done, void *arg);
void batch_job_destroy(batch_job *job);
/* 1 if the job has failed already (its other items need no work). */
int batch_job_failed(batch_job *job);
/* 1 if the job's deadline has passed. */
int batch_job_expired(const batch_job *job, int64_t now_ns);
/* Fails the job with (err, message) unless it already has an error, without finishing any item:
 * its items still in workers or queues are then dropped unrun; an item inside a forward pass
 * completes normally (its output is simply not used). 1 if this call set the error. */
int batch_job_fail(batch_job *job, api_err err, const char *message);

/* Finishes an item: err API_OK = success, else the job fails with (err, message) unless it
 * already failed. Frees item->pixels. Runs the job's done callback if it was the last item. */
void batch_item_finish(batch_item *it, api_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds one stage's duration to the job's timing maxima. stage: 0 decode, 1 queue, 2 infer. */
void batch_job_note_time(batch_job *job, int stage, int64_t ns);

int64_t batch_now_ns(void); /* CLOCK_MONOTONIC */

/* ---- the batcher ---------------------------------------------------------------------------- */

typedef enum batcher_state {
    BATCHER_LOADING = 0,  /* loading the model / warming up: not ready */
    BATCHER_READY = 1,
    BATCHER_FAILED = 2,   /* the model could not be loaded: not ready, ever */
    BATCHER_DRAINING = 3, /* shutting down: finishing queued work, taking no new jobs */
    BATCHER_STOPPED = 4
} batcher_state;

typedef struct batcher_config {
    const char *model_dir;
    cloob_model_params model_params;
    int warmup;                 /* run warm-up passes before READY */
    int selftest;               /* compare with cloob.json's reference vectors before READY */
    int warmup_delay_ms;        /* TESTS ONLY: extra sleep before READY (to observe /readyz 503) */
    int debug_infer_delay_ms;   /* TESTS ONLY: sleep before every forward pass (a "busy" model) */
    int max_batch[BATCH_MODALITIES];
    int64_t max_queue_delay_us;
    int max_queue_items;        /* admitted-but-not-started items, both modalities */
    int label_cache_size;       /* entries of the /classify text-embedding LRU (0 = off) */
    metrics *metrics;           /* may be NULL */
} batcher_config;

typedef struct batcher batcher;

/* Main thread. Copies cfg (model_dir too). NULL on allocation failure. */
batcher *batcher_create(const batcher_config *cfg);
/* Main thread: starts the inference thread, which loads the model and warms it up. 0 or -1. */
int batcher_start(batcher *b);

batcher_state batcher_get_state(batcher *b);
/* If the model failed to load: the reason (else ""). Valid for the batcher's lifetime. */
const char *batcher_load_error(batcher *b);

/* NULL until the model is loaded; immutable afterwards, until batcher_free. */
const cloob_model_info *batcher_model_info(batcher *b);
const cloob_tokenizer *batcher_tokenizer(batcher *b);
const char *batcher_model_metadata(batcher *b); /* cloob.json without the self-test vectors */
double batcher_load_seconds(batcher *b);        /* load + warm-up wall time */
/* The start-up self-test's result as JSON (selftest_to_json), once it has been decided (passed,
 * failed, skipped or disabled); NULL before that and when loading failed earlier. Immutable
 * afterwards, until batcher_free. A failed self-test leaves the batcher FAILED, with the reason
 * in batcher_load_error(). */
const char *batcher_selftest_json(batcher *b);
/* The label-embedding cache: created with the model (its vectors are embed_dim long). */
lru_cache *batcher_label_cache(batcher *b);

/* The configured max_queue_items (immutable; any thread). */
int batcher_max_queue_items(const batcher *b);

/*
 * Admission: reserves n items of the queue budget. Returns API_OK, API_ERR_TOO_MANY_ITEMS (n
 * alone exceeds max_queue_items: no retry could help), API_ERR_QUEUE_FULL (with
 * *retry_after_s >= 1), API_ERR_NOT_READY or API_ERR_DRAINING. The reserved count is released
 * item by item as items start a forward pass or finish otherwise (mark items admitted = 1).
 */
api_err batcher_admit(batcher *b, int n, int *retry_after_s);
/* Gives back reservations that were never attached to items (e.g. the request failed early). */
void batcher_unadmit(batcher *b, int n);

/* Worker thread: a prepared item enters its modality's queue. */
void batcher_submit(batcher *b, batch_item *it);
/* Any thread: finishes an item with an error, releasing its admission. */
void batcher_fail_item(batcher *b, batch_item *it, api_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Items admitted and not yet started (the queue depth used for 429). */
int batcher_queued_items(batcher *b);
/* Jobs between admission and their done callback (for shutdown). Updated by the HTTP layer. */
void batcher_jobs_add(batcher *b, int delta);
int batcher_jobs_in_flight(batcher *b);

/* Main thread, on SIGTERM: new admissions get DRAINING, partial batches run without waiting
 * for the delay. */
void batcher_drain(batcher *b);
/* Main thread: waits until no job is in flight or deadline_ns (monotonic) passes. 0 = idle. */
int batcher_wait_idle(batcher *b, int64_t deadline_ns);
/* Main thread: stops the inference thread after running what is still queued (stop makes every
 * queue ready at once), so admitted requests get their answers. */
void batcher_stop(batcher *b);
/* Main thread, after batcher_stop and after the workers stopped: frees the model too. */
void batcher_free(batcher *b);

/* The settings in effect (for /info). */
const batcher_config *batcher_get_config(batcher *b);
/* Measured seconds per item (EWMA over recent batches) for a modality, 0 before any batch. */
double batcher_item_seconds(batcher *b, batch_modality m);

#endif /* CLOOB_BATCHER_H */
