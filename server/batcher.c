/*
 * batcher.c - per-modality queues, dynamic batching and the one inference thread.
 *
 * See batcher.h for the design. Locking: one mutex (b->lock) guards both queues, the admission
 * counter and the state; the inference thread holds it only to pick a batch, never during a
 * forward pass. A job has its own small mutex for its pending count and first error. Lock order:
 * b->lock may be held while taking nothing else; job locks are taken without b->lock held
 * (items are finished after the queue lock is released).
 */
#include "batcher.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "selftest.h"

int64_t batch_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- jobs and items --------------------------------------------------------------------------- */

void batch_job_init(batch_job *job, int n_items, int deadline_ms, batch_job_done_fn done, void *arg) {
    memset(job, 0, sizeof *job);
    pthread_mutex_init(&job->lock, NULL);
    job->pending = n_items;
    job->err = API_OK;
    job->deadline_ns = deadline_ms > 0 ? batch_now_ns() + (int64_t)deadline_ms * 1000000LL : 0;
    job->done = done;
    job->done_arg = arg;
}

void batch_job_destroy(batch_job *job) { pthread_mutex_destroy(&job->lock); }

int batch_job_failed(batch_job *job) {
    pthread_mutex_lock(&job->lock);
    int f = job->err != API_OK;
    pthread_mutex_unlock(&job->lock);
    return f;
}

int batch_job_expired(const batch_job *job, int64_t now_ns) {
    return job->deadline_ns > 0 && now_ns >= job->deadline_ns;
}

int batch_job_fail(batch_job *job, api_err err, const char *message) {
    pthread_mutex_lock(&job->lock);
    int set = job->err == API_OK;
    if (set) {
        job->err = err;
        snprintf(job->message, sizeof job->message, "%s", message ? message : api_err_type(err));
    }
    pthread_mutex_unlock(&job->lock);
    return set;
}

void batch_job_note_time(batch_job *job, int stage, int64_t ns) {
    pthread_mutex_lock(&job->lock);
    int64_t *slot = stage == 0 ? &job->decode_ns : stage == 1 ? &job->queue_ns : &job->infer_ns;
    if (ns > *slot) *slot = ns;
    pthread_mutex_unlock(&job->lock);
}

static void item_finish_v(batch_item *it, api_err err, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void item_finish_v(batch_item *it, api_err err, const char *fmt, va_list ap) {
    batch_job *job = it->job;
    free(it->pixels);
    it->pixels = NULL;
    pthread_mutex_lock(&job->lock);
    if (err != API_OK && job->err == API_OK) {
        job->err = err;
        if (fmt) {
            vsnprintf(job->message, sizeof job->message, fmt, ap);
        } else {
            snprintf(job->message, sizeof job->message, "%s", api_err_type(err));
        }
    }
    int last = --job->pending == 0;
    pthread_mutex_unlock(&job->lock);
    /* After the last decrement nobody else touches the job: the callback may free it. */
    if (last && job->done) job->done(job, job->done_arg);
}

void batch_item_finish(batch_item *it, api_err err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    item_finish_v(it, err, fmt, ap);
    va_end(ap);
}

/* ---- the batcher ---------------------------------------------------------------------------- */

typedef struct item_queue {
    batch_item *head, *tail;
    int count;
} item_queue;

struct batcher {
    batcher_config cfg;
    char model_dir[4096];

    pthread_mutex_t lock;
    pthread_cond_t cond;        /* signalled on submit, drain and stop */
    pthread_cond_t idle_cond;   /* signalled when jobs_in_flight drops to 0 */
    item_queue q[BATCH_MODALITIES];
    int admitted;               /* items admitted and not yet started (429 budget) */
    int jobs_in_flight;
    int stop;
    _Atomic int state;          /* batcher_state */
    _Atomic int loaded;         /* 1 once model, tokenizer and cache are complete */
    pthread_t thread;
    int thread_started;

    /* Owned by the inference thread; published (state READY, release) before others read. */
    cloob_model *model;
    cloob_tokenizer *tok;
    const cloob_model_info *info;
    lru_cache *cache;
    char load_error[512];
    double load_seconds;
    char *metadata_brief;       /* cloob.json without the self-test vectors (NULL: use the raw text) */
    char *selftest_json;        /* selftest_to_json(), published by selftest_done (release) */
    _Atomic int selftest_done;

    /* Measured seconds per item, EWMA; written by the inference thread under lock. */
    double item_seconds[BATCH_MODALITIES];

    /* Reusable forward-pass buffers (inference thread only). */
    float *pixels;
    size_t pixels_cap;
    int64_t *ids, *mask;
    size_t ids_cap, mask_cap;
    float *out;
    size_t out_cap;
};

batcher *batcher_create(const batcher_config *cfg) {
    batcher *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->cfg = *cfg;
    snprintf(b->model_dir, sizeof b->model_dir, "%s", cfg->model_dir ? cfg->model_dir : "");
    b->cfg.model_dir = b->model_dir;
    for (int m = 0; m < BATCH_MODALITIES; m++) {
        if (b->cfg.max_batch[m] < 1) b->cfg.max_batch[m] = 1;
    }
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cond, &ca);
    pthread_cond_init(&b->idle_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&b->state, BATCHER_LOADING);
    return b;
}

batcher_state batcher_get_state(batcher *b) { return (batcher_state)atomic_load(&b->state); }
const char *batcher_load_error(batcher *b) { return b->load_error; }
/* The model-derived fields are written by the inference thread before it sets `loaded`
 * (release); readers that see loaded == 1 (acquire) see them complete. */
const cloob_model_info *batcher_model_info(batcher *b) { return atomic_load(&b->loaded) ? b->info : NULL; }
const cloob_tokenizer *batcher_tokenizer(batcher *b) { return atomic_load(&b->loaded) ? b->tok : NULL; }
const char *batcher_model_metadata(batcher *b) {
    if (!atomic_load(&b->loaded)) return NULL;
    return b->metadata_brief ? b->metadata_brief : cloob_model_metadata_json(b->model);
}
double batcher_load_seconds(batcher *b) { return b->load_seconds; }
const char *batcher_selftest_json(batcher *b) { return atomic_load(&b->selftest_done) ? b->selftest_json : NULL; }
lru_cache *batcher_label_cache(batcher *b) { return atomic_load(&b->loaded) ? b->cache : NULL; }
const batcher_config *batcher_get_config(batcher *b) { return &b->cfg; }

double batcher_item_seconds(batcher *b, batch_modality m) {
    pthread_mutex_lock(&b->lock);
    double s = b->item_seconds[m];
    pthread_mutex_unlock(&b->lock);
    return s;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* Inference thread, after warm-up (so it checks the optimized graphs that will serve): the
 * numerical self-test. 0, or -1 with load_error set when it failed. */
static int run_selftest(batcher *b) {
    selftest_result *r = calloc(1, sizeof *r); /* ~3 KB: not on the thread's stack */
    if (!r) {
        snprintf(b->load_error, sizeof b->load_error, "out of memory for the self-test");
        return -1;
    }
    if (b->cfg.selftest) {
        selftest_run(b->model, b->tok, r);
    } else {
        r->status = SELFTEST_NOT_RUN;
    }
    int rc = 0;
    switch (r->status) {
    case SELFTEST_PASSED:
        log_info("self-test passed: %d checks, worst cosine 1 - %.2g (tolerance %.6g, %s on %s) in %.3f s",
                 r->n_checks, 1.0 - r->worst_cosine, r->tolerance, r->dtype, r->device, r->seconds);
        break;
    case SELFTEST_SKIPPED:
        log_warn("self-test skipped: %s", r->message);
        break;
    case SELFTEST_FAILED:
        snprintf(b->load_error, sizeof b->load_error, "self-test failed (%s check): %.440s", r->failed_check,
                 r->message);
        rc = -1;
        break;
    default:
        log_info("self-test disabled (selftest = false)");
        break;
    }
    b->selftest_json = selftest_to_json(r);
    atomic_store(&b->selftest_done, 1);
    free(r);
    return rc;
}

/* Inference thread: model + tokenizer load, warm-up and self-test. 0 or -1 (load_error set). */
static int load_model(batcher *b) {
    int64_t t0 = batch_now_ns();
    char err[512] = "";
    cloob_status st = cloob_model_load(b->model_dir, &b->cfg.model_params, &b->model, err, sizeof err);
    if (st != CLOOB_OK) {
        snprintf(b->load_error, sizeof b->load_error, "loading the model from %.200s: %.250s (%s)",
                 b->model_dir, err, cloob_status_name(st));
        return -1;
    }
    b->info = cloob_model_get_info(b->model);
    const char *meta = cloob_model_metadata_json(b->model);
    b->metadata_brief = selftest_metadata_without_vectors(meta, meta ? strlen(meta) : 0);
    if (b->info->max_seq_len < 1 || b->info->max_seq_len > BATCH_MAX_SEQ || b->info->embed_dim < 1 ||
        b->info->image_size < 1) {
        snprintf(b->load_error, sizeof b->load_error,
                 "model %.200s: unsupported shape (max_seq_len %d, embed_dim %d, image_size %d)",
                 b->model_dir, b->info->max_seq_len, b->info->embed_dim, b->info->image_size);
        return -1;
    }
    char spm[4200];
    snprintf(spm, sizeof spm, "%s/spiece.model", b->model_dir);
    st = cloob_tokenizer_load(spm, &b->tok, err, sizeof err);
    if (st != CLOOB_OK) {
        snprintf(b->load_error, sizeof b->load_error, "loading the tokenizer %.200s: %.250s", spm, err);
        return -1;
    }
    b->cache = lru_create((size_t)(b->cfg.label_cache_size > 0 ? b->cfg.label_cache_size : 0),
                          (size_t)b->info->embed_dim);
    if (!b->cache) {
        snprintf(b->load_error, sizeof b->load_error, "cannot allocate the label cache (%d entries)",
                 b->cfg.label_cache_size);
        return -1;
    }
    log_info("model %s loaded (dim %d, device %s, dtype %s%s) in %.2f s", b->info->name,
             b->info->embed_dim, b->info->device, b->info->dtype,
             b->info->random_weights ? ", RANDOM WEIGHTS: answers are meaningless" : "",
             (double)(batch_now_ns() - t0) * 1e-9);
    if (b->cfg.warmup) {
        /* Which shapes to warm up. On a GPU every batch size the batcher can form (1..max) and
         * short/long texts: kernels, autotuning and the caching allocator are per shape, and each
         * pass costs milliseconds. On a CPU only batch 1: measured with the full-size model, the
         * first pass at a new batch size after that is no slower than the next ones (b4: 1.30 s
         * then 1.17 s), while warming max_batch_image=32 twice would take ~25 s of start-up. */
        int on_gpu = strncmp(b->info->device, "cuda", 4) == 0;
        int ib[CLOOB_MAX_BATCH], tb[CLOOB_MAX_BATCH];
        int n_ib = 0, n_tb = 0;
        for (int k = 1; k <= b->cfg.max_batch[BATCH_IMAGE] && (on_gpu || k == 1); k++) ib[n_ib++] = k;
        for (int k = 1; k <= b->cfg.max_batch[BATCH_TEXT] && (on_gpu || k == 1); k++) tb[n_tb++] = k;
        int tl[2] = {8, b->info->max_seq_len};
        int64_t t1 = batch_now_ns();
        st = cloob_model_warmup(b->model, ib, n_ib, tb, n_tb, tl, 2, err, sizeof err);
        if (st != CLOOB_OK) {
            snprintf(b->load_error, sizeof b->load_error, "warm-up failed: %.400s (%s)", err,
                     cloob_status_name(st));
            return -1;
        }
        log_info("warm-up done in %.2f s", (double)(batch_now_ns() - t1) * 1e-9);
    }
    if (run_selftest(b) != 0) return -1;
    if (b->cfg.warmup_delay_ms > 0) {
        log_warn("warmup_delay_ms=%d: delaying readiness (a test setting)", b->cfg.warmup_delay_ms);
        sleep_ms(b->cfg.warmup_delay_ms);
    }
    b->load_seconds = (double)(batch_now_ns() - t0) * 1e-9;
    return 0;
}

static batch_item *queue_pop(item_queue *q) {
    batch_item *it = q->head;
    if (!it) return NULL;
    q->head = it->next;
    if (!q->head) q->tail = NULL;
    q->count--;
    it->next = NULL;
    return it;
}

static void queue_push(item_queue *q, batch_item *it) {
    it->next = NULL;
    if (q->tail) {
        q->tail->next = it;
    } else {
        q->head = it;
    }
    q->tail = it;
    q->count++;
}

/* Inference thread, lock held: which modality should run now, or -1 with *wait_until_ns set
 * (0 = wait for a signal). */
static int pick_modality(batcher *b, int64_t now, int64_t *wait_until_ns) {
    int draining = atomic_load(&b->state) == BATCHER_DRAINING;
    int64_t delay = b->cfg.max_queue_delay_us * 1000;
    int best = -1;
    int64_t best_t = 0;
    *wait_until_ns = 0;
    for (int m = 0; m < BATCH_MODALITIES; m++) {
        item_queue *q = &b->q[m];
        if (!q->head) continue;
        int64_t ready_at = q->head->t_queued_ns + delay;
        int ready = q->count >= b->cfg.max_batch[m] || now >= ready_at || draining || b->stop;
        if (ready) {
            if (best < 0 || q->head->t_queued_ns < best_t) {
                best = m;
                best_t = q->head->t_queued_ns;
            }
        } else if (*wait_until_ns == 0 || ready_at < *wait_until_ns) {
            *wait_until_ns = ready_at;
        }
    }
    return best;
}

/* The condition variables run on CLOCK_MONOTONIC (batcher_create), like every deadline here. */
static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *l, int64_t until_ns) {
    struct timespec ts = {(time_t)(until_ns / 1000000000LL), (long)(until_ns % 1000000000LL)};
    pthread_cond_timedwait(c, l, &ts);
}

static int ensure_cap(void **p, size_t *cap, size_t need_bytes) {
    if (need_bytes <= *cap) return 0;
    void *n = realloc(*p, need_bytes);
    if (!n) return -1;
    *p = n;
    *cap = need_bytes;
    return 0;
}

static int all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) return 0;
    }
    return 1;
}

/* Inference thread, no lock held: one forward pass over items[0..n). */
static void run_batch(batcher *b, batch_modality mod, batch_item **items, int n) {
    const cloob_model_info *info = b->info;
    int dim = info->embed_dim;
    size_t S = (size_t)info->image_size;
    char err[512] = "";
    cloob_status st = CLOOB_OK;
    int64_t t0 = batch_now_ns();

    if (b->cfg.debug_infer_delay_ms > 0) sleep_ms(b->cfg.debug_infer_delay_ms);
    if (ensure_cap((void **)&b->out, &b->out_cap, (size_t)n * (size_t)dim * sizeof(float))) {
        st = CLOOB_ERR_OUT_OF_MEMORY;
        snprintf(err, sizeof err, "cannot allocate the output buffer");
    } else if (mod == BATCH_IMAGE) {
        size_t per = 3 * S * S;
        if (ensure_cap((void **)&b->pixels, &b->pixels_cap, (size_t)n * per * sizeof(float))) {
            st = CLOOB_ERR_OUT_OF_MEMORY;
            snprintf(err, sizeof err, "cannot allocate the pixel batch");
        } else {
            for (int i = 0; i < n; i++) memcpy(b->pixels + (size_t)i * per, items[i]->pixels, per * sizeof(float));
            st = cloob_model_encode_image(b->model, b->pixels, n, b->out, err, sizeof err);
        }
    } else {
        int L = 1;
        for (int i = 0; i < n; i++) {
            if (items[i]->n_tokens > L) L = items[i]->n_tokens;
        }
        size_t need = (size_t)n * (size_t)L * sizeof(int64_t);
        if (ensure_cap((void **)&b->ids, &b->ids_cap, need) ||
            ensure_cap((void **)&b->mask, &b->mask_cap, need)) {
            st = CLOOB_ERR_OUT_OF_MEMORY;
            snprintf(err, sizeof err, "cannot allocate the token batch");
        } else {
            for (int i = 0; i < n; i++) {
                int64_t *row = b->ids + (size_t)i * (size_t)L, *mrow = b->mask + (size_t)i * (size_t)L;
                for (int k = 0; k < L; k++) {
                    int real = k < items[i]->n_tokens;
                    row[k] = real ? items[i]->ids[k] : info->pad_id;
                    mrow[k] = real ? 1 : 0;
                }
            }
            st = cloob_model_encode_text(b->model, b->ids, b->mask, n, L, b->out, err, sizeof err);
        }
    }
    int64_t t1 = batch_now_ns();
    double secs = (double)(t1 - t0) * 1e-9;
    if (b->cfg.metrics) {
        metrics_batch(b->cfg.metrics, (metrics_modality)mod, n, secs);
    }
    if (st == CLOOB_OK) {
        pthread_mutex_lock(&b->lock);
        double per_item = secs / n;
        double *ew = &b->item_seconds[mod];
        *ew = *ew == 0 ? per_item : 0.8 * *ew + 0.2 * per_item;
        pthread_mutex_unlock(&b->lock);
    } else {
        log_error("%s batch of %d failed: %s (%s)", mod == BATCH_IMAGE ? "image" : "text", n, err,
                  cloob_status_name(st));
    }
    for (int i = 0; i < n; i++) {
        batch_item *it = items[i];
        batch_job_note_time(it->job, 2, t1 - t0);
        if (st == CLOOB_ERR_OUT_OF_MEMORY) {
            batch_item_finish(it, API_ERR_OUT_OF_MEMORY,
                              "the model ran out of memory for this batch; retry later");
            continue;
        }
        if (st != CLOOB_OK) {
            batch_item_finish(it, API_ERR_INTERNAL, "the forward pass failed: %s", err);
            continue;
        }
        const float *v = b->out + (size_t)i * (size_t)dim;
        if (!all_finite(v, (size_t)dim)) {
            batch_item_finish(it, API_ERR_INTERNAL, "the model produced non-finite values for %s[%d]",
                              it->field ? it->field : "items", it->index);
            continue;
        }
        memcpy(it->out, v, (size_t)dim * sizeof(float));
        batch_item_finish(it, API_OK, NULL);
    }
}

/* Inference thread, lock held: takes up to max_batch live items of modality m into items[].
 * Expired or already-failed items go to dropped[] (finished by the caller without the lock). */
static int take_batch(batcher *b, int m, int64_t now, batch_item **items, batch_item **dropped,
                      int *n_dropped) {
    int n = 0;
    *n_dropped = 0;
    while (n < b->cfg.max_batch[m] && b->q[m].head) {
        batch_item *it = queue_pop(&b->q[m]);
        if (it->admitted) {
            it->admitted = 0;
            b->admitted--;
        }
        /* Lock order: b->lock, then a job's lock (never the reverse). */
        if (batch_job_expired(it->job, now) || batch_job_failed(it->job)) {
            dropped[(*n_dropped)++] = it;
            continue;
        }
        items[n++] = it;
    }
    if (b->cfg.metrics) metrics_queue_depth_set(b->cfg.metrics, (metrics_modality)m, b->q[m].count);
    return n;
}

static void *inference_main(void *arg) {
    batcher *b = arg;
    if (load_model(b) != 0) {
        log_error("%s", b->load_error);
        atomic_store(&b->state, BATCHER_FAILED);
    } else {
        atomic_store(&b->loaded, 1);
        pthread_mutex_lock(&b->lock);
        /* A SIGTERM during loading already moved the state to DRAINING: keep that. */
        if (atomic_load(&b->state) == BATCHER_LOADING) atomic_store(&b->state, BATCHER_READY);
        pthread_mutex_unlock(&b->lock);
        if (b->cfg.metrics) {
            metrics_set_model_info(b->cfg.metrics, b->info->name, b->info->device, b->info->dtype,
                                   b->info->model_sha256);
            metrics_set_ready(b->cfg.metrics, atomic_load(&b->state) == BATCHER_READY);
        }
        log_info("ready");
    }
    int max_b = b->cfg.max_batch[0] > b->cfg.max_batch[1] ? b->cfg.max_batch[0] : b->cfg.max_batch[1];
    batch_item **items = calloc((size_t)max_b, sizeof *items);
    batch_item **dropped = calloc((size_t)max_b, sizeof *dropped);
    pthread_mutex_lock(&b->lock);
    while (items && dropped) {
        int64_t now = batch_now_ns(), wait_until = 0;
        int m = pick_modality(b, now, &wait_until);
        if (m < 0) {
            if (b->stop) break;
            if (wait_until) {
                cond_wait_until(&b->cond, &b->lock, wait_until);
            } else {
                pthread_cond_wait(&b->cond, &b->lock);
            }
            continue;
        }
        int n_dropped = 0;
        int n = take_batch(b, m, now, items, dropped, &n_dropped);
        pthread_mutex_unlock(&b->lock);
        for (int i = 0; i < n; i++) {
            int64_t waited = now - items[i]->t_queued_ns;
            batch_job_note_time(items[i]->job, 1, waited);
            if (b->cfg.metrics) metrics_queue_wait(b->cfg.metrics, (metrics_modality)m, (double)waited * 1e-9);
        }
        for (int i = 0; i < n_dropped; i++) {
            batch_item *it = dropped[i];
            /* A job that already failed (e.g. the HTTP deadline watchdog answered it 504) keeps
             * its answer. cloob_errors_total counts failed requests, in http.c, once each. */
            if (!batch_job_failed(it->job) && batch_job_expired(it->job, now)) {
                batch_item_finish(it, API_ERR_DEADLINE,
                                  "the request's deadline passed before %s[%d] reached the model",
                                  it->field ? it->field : "items", it->index);
            } else {
                batch_item_finish(it, API_OK, NULL); /* the job already carries its error */
            }
        }
        if (n > 0) {
            if (b->model) {
                run_batch(b, (batch_modality)m, items, n);
            } else {
                for (int i = 0; i < n; i++) batch_item_finish(items[i], API_ERR_NOT_READY, "no model");
            }
        }
        pthread_mutex_lock(&b->lock);
    }
    /* Stopping: whatever is still queued is answered, never left hanging. */
    for (int m = 0; m < BATCH_MODALITIES; m++) {
        batch_item *it;
        while ((it = queue_pop(&b->q[m])) != NULL) {
            if (it->admitted) {
                it->admitted = 0;
                b->admitted--;
            }
            pthread_mutex_unlock(&b->lock);
            batch_item_finish(it, API_ERR_DRAINING, "the server is shutting down");
            pthread_mutex_lock(&b->lock);
        }
    }
    pthread_mutex_unlock(&b->lock);
    free(items);
    free(dropped);
    return NULL;
}

int batcher_start(batcher *b) {
    if (pthread_create(&b->thread, NULL, inference_main, b) != 0) return -1;
    b->thread_started = 1;
    return 0;
}

int batcher_max_queue_items(const batcher *b) { return b->cfg.max_queue_items; }

api_err batcher_admit(batcher *b, int n, int *retry_after_s) {
    *retry_after_s = 0;
    batcher_state st = batcher_get_state(b);
    if (st == BATCHER_DRAINING || st == BATCHER_STOPPED) return API_ERR_DRAINING;
    if (st != BATCHER_READY) return API_ERR_NOT_READY;
    /* A request bigger than the whole queue could never be admitted: that is the request's fault
     * (422), not a busy server (429 with a Retry-After that no retry would ever satisfy). */
    if (n > b->cfg.max_queue_items) return API_ERR_TOO_MANY_ITEMS;
    pthread_mutex_lock(&b->lock);
    if (b->admitted + n > b->cfg.max_queue_items) {
        /* Time to work off what is queued: queue depth x measured seconds per item (the slower
         * modality, to be safe), at least 1 s, at most 60 s. */
        double per = b->item_seconds[0] > b->item_seconds[1] ? b->item_seconds[0] : b->item_seconds[1];
        double secs = (double)(b->admitted + n) * per;
        pthread_mutex_unlock(&b->lock);
        int s = (int)ceil(secs);
        *retry_after_s = s < 1 ? 1 : s > 60 ? 60 : s;
        return API_ERR_QUEUE_FULL;
    }
    b->admitted += n;
    pthread_mutex_unlock(&b->lock);
    return API_OK;
}

void batcher_unadmit(batcher *b, int n) {
    pthread_mutex_lock(&b->lock);
    b->admitted -= n;
    pthread_mutex_unlock(&b->lock);
}

int batcher_queued_items(batcher *b) {
    pthread_mutex_lock(&b->lock);
    int n = b->admitted;
    pthread_mutex_unlock(&b->lock);
    return n;
}

void batcher_submit(batcher *b, batch_item *it) {
    it->t_queued_ns = batch_now_ns();
    pthread_mutex_lock(&b->lock);
    if (b->stop) {
        if (it->admitted) {
            it->admitted = 0;
            b->admitted--;
        }
        pthread_mutex_unlock(&b->lock);
        batch_item_finish(it, API_ERR_DRAINING, "the server is shutting down");
        return;
    }
    item_queue *q = &b->q[it->modality];
    queue_push(q, it);
    if (b->cfg.metrics) metrics_queue_depth_set(b->cfg.metrics, (metrics_modality)it->modality, q->count);
    /* Wake the inference thread only when this item can change its decision: the first item
     * (it starts the delay clock) or a full batch. */
    if (q->count == 1 || q->count >= b->cfg.max_batch[it->modality]) pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

void batcher_fail_item(batcher *b, batch_item *it, api_err err, const char *fmt, ...) {
    if (it->admitted) {
        it->admitted = 0;
        batcher_unadmit(b, 1);
    }
    va_list ap;
    va_start(ap, fmt);
    item_finish_v(it, err, fmt, ap);
    va_end(ap);
}

void batcher_jobs_add(batcher *b, int delta) {
    pthread_mutex_lock(&b->lock);
    b->jobs_in_flight += delta;
    if (b->jobs_in_flight == 0) pthread_cond_broadcast(&b->idle_cond);
    pthread_mutex_unlock(&b->lock);
}

int batcher_jobs_in_flight(batcher *b) {
    pthread_mutex_lock(&b->lock);
    int n = b->jobs_in_flight;
    pthread_mutex_unlock(&b->lock);
    return n;
}

void batcher_drain(batcher *b) {
    pthread_mutex_lock(&b->lock);
    batcher_state st = batcher_get_state(b);
    if (st == BATCHER_LOADING || st == BATCHER_READY || st == BATCHER_FAILED) {
        atomic_store(&b->state, BATCHER_DRAINING);
    }
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    if (b->cfg.metrics) metrics_set_ready(b->cfg.metrics, 0);
}

int batcher_wait_idle(batcher *b, int64_t deadline_ns) {
    pthread_mutex_lock(&b->lock);
    while (b->jobs_in_flight > 0 && batch_now_ns() < deadline_ns) {
        cond_wait_until(&b->idle_cond, &b->lock, deadline_ns);
    }
    int busy = b->jobs_in_flight;
    pthread_mutex_unlock(&b->lock);
    return busy ? -1 : 0;
}

void batcher_stop(batcher *b) {
    pthread_mutex_lock(&b->lock);
    b->stop = 1;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    if (b->thread_started) {
        /* If the model is still loading, this waits for the load to end (libtorch cannot be
         * interrupted); the grace period in main() bounds how long a caller is willing to wait. */
        pthread_join(b->thread, NULL);
        b->thread_started = 0;
    }
    atomic_store(&b->state, BATCHER_STOPPED);
}

void batcher_free(batcher *b) {
    if (!b) return;
    cloob_model_free(b->model);
    cloob_tokenizer_free(b->tok);
    lru_free(b->cache);
    free(b->selftest_json);
    free(b->metadata_brief);
    free(b->pixels);
    free(b->ids);
    free(b->mask);
    free(b->out);
    pthread_cond_destroy(&b->cond);
    pthread_cond_destroy(&b->idle_cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
