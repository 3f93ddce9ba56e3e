/*
 * workers.c - the pre-processing pool (see workers.h).
 */
#include "workers.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "log.h"

struct workers {
    workers_config cfg;
    batcher *b;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    batch_item *head, *tail; /* FIFO of tasks, linked through batch_item.next */
    int stopping;
    int n_threads;
    pthread_t *threads;
};

/* Worker thread: base64 (unless raw) -> image_preprocess -> it->pixels. 0, or -1 after failing
 * the item. */
static int prepare_image(workers *w, batch_item *it, const cloob_model_info *info) {
    const uint8_t *bytes = (const uint8_t *)it->src;
    size_t len = it->src_len;
    uint8_t *decoded = NULL;
    if (it->src_base64) {
        size_t pos = 0;
        base64_status bs = base64_decode_alloc(it->src, it->src_len, w->cfg.max_image_bytes, &decoded,
                                               &len, &pos);
        if (bs != BASE64_OK) {
            if (bs == BASE64_ERR_TOO_LARGE) {
                batcher_fail_item(w->b, it, API_ERR_BODY_TOO_LARGE, "%s[%d]: decoded image exceeds %llu bytes",
                                  it->field, it->index, (unsigned long long)w->cfg.max_image_bytes);
            } else {
                batcher_fail_item(w->b, it, API_ERR_BAD_BASE64, "%s[%d]: invalid base64 (%s at byte %zu)",
                                  it->field, it->index, base64_status_message(bs), pos);
            }
            return -1;
        }
        bytes = decoded;
    }
    size_t S = (size_t)info->image_size;
    it->pixels = malloc(3 * S * S * sizeof(float));
    if (!it->pixels) {
        free(decoded);
        batcher_fail_item(w->b, it, API_ERR_INTERNAL, "out of memory");
        return -1;
    }
    char err[256] = "";
    image_status st = image_preprocess(bytes, len, &w->cfg.image_limits, info->image_size, info->mean,
                                       info->std, it->pixels, err, sizeof err);
    free(decoded);
    if (st == IMAGE_OK) return 0;
    api_err e = st == IMAGE_ERR_UNSUPPORTED ? API_ERR_IMAGE_FORMAT
                : st == IMAGE_ERR_DECODE      ? API_ERR_IMAGE_DECODE
                : st == IMAGE_ERR_TOO_LARGE   ? API_ERR_IMAGE_TOO_LARGE
                                              : API_ERR_INTERNAL;
    batcher_fail_item(w->b, it, e, "%s[%d]: %s", it->field, it->index,
                      err[0] ? err : image_status_message(st));
    return -1;
}

/* Worker thread: tokenize into it->ids. 0, or -1 after failing the item. */
static int prepare_text(workers *w, batch_item *it, const cloob_model_info *info,
                        const cloob_tokenizer *tok) {
    int64_t mask[BATCH_MAX_SEQ];
    cloob_token_result tr = {0, 0};
    char err[256] = "";
    cloob_status st = cloob_tokenize(tok, it->src, it->src_len, info->max_seq_len, it->ids, mask, &tr,
                                     err, sizeof err);
    if (st != CLOOB_OK) {
        batcher_fail_item(w->b, it, API_ERR_INTERNAL, "%s[%d]: tokenizer failed: %s", it->field,
                          it->index, err);
        return -1;
    }
    it->n_tokens = tr.n_tokens;
    it->n_dropped = tr.n_dropped;
    if (tr.n_dropped > 0 && !it->truncate) {
        batcher_fail_item(w->b, it, API_ERR_TEXT_TOO_LONG,
                          "%s[%d] has %d tokens; the model takes at most %d (set \"truncate\": true to cut it)",
                          it->field, it->index, tr.n_tokens - 1 + tr.n_dropped, info->max_seq_len - 1);
        return -1;
    }
    return 0;
}

/* Worker thread: one task. */
static void process(workers *w, batch_item *it, int stopping) {
    int64_t t0 = batch_now_ns();
    if (stopping) {
        batcher_fail_item(w->b, it, API_ERR_DRAINING, "the server is shutting down");
        return;
    }
    if (batch_job_failed(it->job)) {
        batcher_fail_item(w->b, it, API_OK, NULL); /* the job already has its answer */
        return;
    }
    if (batch_job_expired(it->job, t0)) {
        batcher_fail_item(w->b, it, API_ERR_DEADLINE, "the request's deadline passed before %s[%d] was decoded",
                          it->field, it->index);
        return;
    }
    const cloob_model_info *info = batcher_model_info(w->b);
    int rc = it->modality == BATCH_IMAGE ? prepare_image(w, it, info)
                                         : prepare_text(w, it, info, batcher_tokenizer(w->b));
    if (rc != 0) return;
    batch_job_note_time(it->job, 0, batch_now_ns() - t0);
    batcher_submit(w->b, it);
}

static void *worker_main(void *arg) {
    workers *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->head && !w->stopping) pthread_cond_wait(&w->cond, &w->lock);
        batch_item *it = w->head;
        if (!it) break; /* stopping and nothing left */
        w->head = it->next;
        if (!w->head) w->tail = NULL;
        it->next = NULL;
        int stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);
        process(w, it, stopping);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

workers *workers_create(const workers_config *cfg, batcher *b) {
    workers *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->cfg = *cfg;
    w->b = b;
    if (w->cfg.threads < 1) w->cfg.threads = 1;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->threads = calloc((size_t)w->cfg.threads, sizeof *w->threads);
    if (!w->threads) {
        workers_free(w);
        return NULL;
    }
    for (int i = 0; i < w->cfg.threads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            log_error("cannot start worker thread %d", i);
            workers_stop(w);
            workers_free(w);
            return NULL;
        }
        w->n_threads++;
    }
    return w;
}

void workers_submit(workers *w, batch_item *it) {
    it->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        /* Admitted just before the drain began, submitted after the pool stopped: nobody would
         * ever take it, so it is answered here instead of hanging its connection. */
        pthread_mutex_unlock(&w->lock);
        batcher_fail_item(w->b, it, API_ERR_DRAINING, "the server is shutting down");
        return;
    }
    if (w->tail) {
        w->tail->next = it;
    } else {
        w->head = it;
    }
    w->tail = it;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

void workers_stop(workers *w) {
    pthread_mutex_lock(&w->lock);
    w->stopping = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads; i++) pthread_join(w->threads[i], NULL);
    w->n_threads = 0;
}

void workers_free(workers *w) {
    if (!w) return;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w->threads);
    free(w);
}
