/*
 * workers.h - a fixed pool of threads that turns request items into model input off the HTTP
 * threads: base64 decoding + image decode/resize/crop/normalize (image_preprocess) for images,
 * tokenization (cloob_tokenize) for texts. A prepared item goes on to the batcher; an item that
 * cannot be prepared fails its own job (415/422/400), nothing else.
 *
 * The task list is an unbounded FIFO, but only admitted items (batcher_admit caps them at
 * max_queue_items) are ever submitted, so its length is bounded by that budget.
 *
 * Thread safety: workers_submit from any thread; create/stop/free on the main thread.
 */
#ifndef CLOOB_WORKERS_H
#define CLOOB_WORKERS_H

#include <stdint.h>

#include "batcher.h"
#include "image.h"

typedef struct workers_config {
    int threads;                 /* >= 1 */
    image_limits image_limits;   /* pixel / side caps checked from the header */
    uint64_t max_image_bytes;    /* cap on one decoded base64 image */
} workers_config;

typedef struct workers workers;

/* Main thread. Starts the threads. NULL on failure. */
workers *workers_create(const workers_config *cfg, batcher *b);
/* Any thread: queue one item (the batcher must be READY: model info and tokenizer are read). */
void workers_submit(workers *w, batch_item *it);
/* Main thread: finishes the queued tasks (items of expired/failed jobs are dropped quickly),
 * then joins the threads. */
void workers_stop(workers *w);
void workers_free(workers *w); /* after workers_stop; NULL is fine */

#endif /* CLOOB_WORKERS_H */
