/*
 * handlers.c - request -> job -> response for the embedding and classification endpoints
 * (see handlers.h).
 *
 * /classify (SPEC.md section 6): every label is expanded with every template ("{}の写真" ->
 * "犬の写真"); each expanded text's embedding is L2-normalized, averaged over the templates of a
 * label and renormalized; the image embedding is normalized; probabilities are
 * softmax(scale * cos). Normalized embeddings of expanded texts are kept in the LRU keyed by the
 * expanded text itself (the embedding depends on nothing else), so a repeated label set costs
 * only the image pass.
 */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct handler_work {
    handler_kind kind;
    api_request req;
    batch_job job;
    int job_inited;
    batch_item *items;
    int n_items;
    int dim;
    float *out;            /* (n_images + n_texts) x dim: images first, then texts */
    int n_out_images;
    int n_out_texts;
    int ready;             /* no items: nothing to wait for */

    /* /classify: expanded texts (label-major: text t = label * n_templates + template) */
    char *arena;
    size_t *text_off;
    size_t *text_len;
    int *text_item;        /* item index of an expanded text, or -1 if it came from the cache */
};

int handlers_work_ready(const handler_work *w) { return w->ready; }

void handlers_work_free(handler_work *w) {
    if (!w) return;
    if (w->items) {
        for (int i = 0; i < w->n_items; i++) free(w->items[i].pixels);
    }
    if (w->job_inited) batch_job_destroy(&w->job);
    api_request_free(&w->req);
    free(w->items);
    free(w->out);
    free(w->arena);
    free(w->text_off);
    free(w->text_len);
    free(w->text_item);
    free(w);
}

static void init_item(batch_item *it, handler_work *w, batch_modality mod, int index, const char *field,
                      float *out, const char *src, size_t len) {
    memset(it, 0, sizeof *it);
    it->job = &w->job;
    it->modality = mod;
    it->index = index;
    it->field = field;
    it->out = out;
    it->src = src;
    it->src_len = len;
    it->truncate = 1;
}

/* Expands labels x templates into w->arena and looks each up in the cache. Returns the number
 * of misses (texts that need the model), or -1 on allocation failure. */
static int expand_classify_texts(const handlers_ctx *ctx, handler_work *w) {
    api_request *r = &w->req;
    int n = r->n_labels * r->n_templates;
    size_t total = 0;
    for (int l = 0; l < r->n_labels; l++) {
        for (int t = 0; t < r->n_templates; t++) total += r->labels[l].len + r->templates[t].len - 2 + 1;
    }
    w->arena = malloc(total ? total : 1);
    w->text_off = calloc((size_t)n, sizeof *w->text_off);
    w->text_len = calloc((size_t)n, sizeof *w->text_len);
    w->text_item = calloc((size_t)n, sizeof *w->text_item);
    if (!w->arena || !w->text_off || !w->text_len || !w->text_item) return -1;
    size_t off = 0;
    int misses = 0;
    uint64_t hits = 0;
    for (int l = 0; l < r->n_labels; l++) {
        for (int t = 0; t < r->n_templates; t++) {
            int k = l * r->n_templates + t;
            int len = api_apply_template(&r->templates[t], &r->labels[l], w->arena + off, total - off);
            if (len < 0) return -1; /* cannot happen: the arena was sized for it */
            w->text_off[k] = off;
            w->text_len[k] = (size_t)len;
            float *slot = w->out + (size_t)(w->n_out_images + k) * (size_t)w->dim;
            if (lru_get(batcher_label_cache(ctx->b), w->arena + off, (size_t)len, slot)) {
                w->text_item[k] = -1;
                hits++;
            } else {
                w->text_item[k] = misses++;
            }
            off += (size_t)len + 1;
        }
    }
    if (ctx->m) metrics_label_cache(ctx->m, hits, (uint64_t)misses);
    return misses;
}

int handlers_prepare(const handlers_ctx *ctx, handler_kind kind, const char *body, size_t len,
                     const handler_raw_opts *raw, batch_job_done_fn done, void *arg,
                     handler_work **out, api_error *err, int *retry_after_s) {
    *out = NULL;
    *retry_after_s = 0;
    batcher_state st = batcher_get_state(ctx->b);
    if (st == BATCHER_DRAINING || st == BATCHER_STOPPED) {
        return api_fail(err, API_ERR_DRAINING, "the server is shutting down");
    }
    if (st != BATCHER_READY) {
        return api_fail(err, API_ERR_NOT_READY, st == BATCHER_FAILED ? "the model failed to load"
                                                                     : "the model is still loading");
    }
    handler_work *w = calloc(1, sizeof *w);
    if (!w) return api_fail(err, API_ERR_INTERNAL, "out of memory");
    w->kind = kind;
    w->dim = batcher_model_info(ctx->b)->embed_dim;
    int rc;
    switch (kind) {
    case HANDLER_EMBED_IMAGE:
        if (raw && raw->raw) {
            rc = api_raw_image_request(body, len, raw->normalize_q, raw->encoding_q, &w->req, err);
        } else {
            rc = api_parse_embed_image(body, len, &ctx->limits, &w->req, err);
        }
        break;
    case HANDLER_EMBED_TEXT:
        rc = api_parse_embed_text(body, len, &ctx->limits, &w->req, err);
        break;
    case HANDLER_CLASSIFY:
        rc = api_parse_classify(body, len, &ctx->limits, &w->req, err);
        break;
    case HANDLER_OPENAI_EMBEDDINGS:
        rc = api_parse_openai(body, len, &ctx->limits, &w->req, err);
        if (rc == 0 && w->req.dimensions && w->req.dimensions != w->dim) {
            rc = api_fail(err, API_ERR_BAD_FIELD, "'dimensions' must be %d for this model (no shortening)", w->dim);
            api_request_free(&w->req);
        }
        break;
    default:
        rc = api_fail(err, API_ERR_NOT_FOUND, "no such endpoint");
    }
    if (rc != 0) {
        handlers_work_free(w);
        return -1;
    }
    api_request *r = &w->req;
    w->n_out_images = r->n_images;
    w->n_out_texts = kind == HANDLER_CLASSIFY ? r->n_labels * r->n_templates : r->n_texts;
    size_t n_out = (size_t)w->n_out_images + (size_t)w->n_out_texts;
    w->out = calloc(n_out ? n_out : 1, (size_t)w->dim * sizeof(float));
    if (!w->out) goto oom;
    int text_items = w->n_out_texts;
    if (kind == HANDLER_CLASSIFY) {
        text_items = expand_classify_texts(ctx, w);
        if (text_items < 0) goto oom;
    }
    w->n_items = w->n_out_images + text_items;
    if (w->n_items == 0) {
        w->ready = 1;
        *out = w;
        return 0;
    }
    w->items = calloc((size_t)w->n_items, sizeof *w->items);
    if (!w->items) goto oom;
    const char *img_field = "images";
    for (int i = 0; i < r->n_images; i++) {
        batch_item *it = &w->items[i];
        init_item(it, w, BATCH_IMAGE, i, img_field, w->out + (size_t)i * (size_t)w->dim, r->images[i].data,
                  r->images[i].len);
        it->src_base64 = !r->raw_images;
    }
    if (kind == HANDLER_CLASSIFY) {
        for (int k = 0; k < w->n_out_texts; k++) {
            if (w->text_item[k] < 0) continue;
            batch_item *it = &w->items[r->n_images + w->text_item[k]];
            init_item(it, w, BATCH_TEXT, k / r->n_templates, "labels",
                      w->out + (size_t)(w->n_out_images + k) * (size_t)w->dim, w->arena + w->text_off[k],
                      w->text_len[k]);
        }
    } else {
        for (int i = 0; i < r->n_texts; i++) {
            batch_item *it = &w->items[r->n_images + i];
            init_item(it, w, BATCH_TEXT, i, "texts", w->out + (size_t)(w->n_out_images + i) * (size_t)w->dim,
                      r->texts[i].data, r->texts[i].len);
            it->truncate = r->truncate;
        }
    }
    api_err ae = batcher_admit(ctx->b, w->n_items, retry_after_s);
    if (ae != API_OK) {
        if (ae == API_ERR_QUEUE_FULL) {
            api_fail(err, ae, "the queue is full (%d items waiting); retry after %d s",
                     batcher_queued_items(ctx->b), *retry_after_s);
        } else if (ae == API_ERR_TOO_MANY_ITEMS) {
            api_fail(err, ae, "the request needs %d model items (images, texts, labels x templates); "
                     "the queue holds at most max_queue_items = %d", w->n_items,
                     batcher_max_queue_items(ctx->b));
        } else {
            api_fail(err, ae, ae == API_ERR_DRAINING ? "the server is shutting down" : "the model is not ready");
        }
        handlers_work_free(w);
        return -1;
    }
    for (int i = 0; i < w->n_items; i++) w->items[i].admitted = 1;
    batch_job_init(&w->job, w->n_items, ctx->request_timeout_ms, done, arg);
    w->job_inited = 1;
    *out = w;
    return 0;
oom:
    handlers_work_free(w);
    return api_fail(err, API_ERR_INTERNAL, "out of memory");
}

void handlers_submit(const handlers_ctx *ctx, handler_work *w) {
    /* Copy the count first: the last item's completion may free nothing, but the done callback
     * resumes the connection, and from then on w belongs to the I/O thread again. */
    int n = w->n_items;
    batch_item *items = w->items;
    for (int i = 0; i < n; i++) workers_submit(ctx->w, &items[i]);
}

int64_t handlers_deadline_ns(const handler_work *w) { return w->job_inited ? w->job.deadline_ns : 0; }

void handlers_fail_job(handler_work *w, api_err err, const char *message) {
    if (w->job_inited) batch_job_fail(&w->job, err, message);
}

void handlers_timing(const handler_work *w, double *decode_ms, double *queue_ms, double *infer_ms) {
    if (!w->job_inited) {
        *decode_ms = *queue_ms = *infer_ms = 0;
        return;
    }
    *decode_ms = (double)w->job.decode_ns * 1e-6;
    *queue_ms = (double)w->job.queue_ns * 1e-6;
    *infer_ms = (double)w->job.infer_ns * 1e-6;
}

static api_model_desc model_desc(const handlers_ctx *ctx) {
    const cloob_model_info *info = batcher_model_info(ctx->b);
    api_model_desc d = {info->name, info->model_sha256, info->dtype, info->embed_dim};
    return d;
}

static int finish_classify(const handlers_ctx *ctx, handler_work *w, jbuf *out, api_error *err) {
    api_request *r = &w->req;
    int dim = w->dim, nl = r->n_labels, nt = r->n_templates;
    float *labels = calloc((size_t)nl, (size_t)dim * sizeof(float));
    double *work = calloc((size_t)nl * 2, sizeof(double));
    api_label_score *all = calloc((size_t)nl, sizeof *all);
    api_label_score *scores = calloc((size_t)r->n_images * (size_t)r->top_k, sizeof *scores);
    if (!labels || !work || !all || !scores) {
        free(labels);
        free(work);
        free(all);
        free(scores);
        return api_fail(err, API_ERR_INTERNAL, "out of memory");
    }
    for (int k = 0; k < nl * nt; k++) {
        float *v = w->out + (size_t)(w->n_out_images + k) * (size_t)dim;
        if (w->text_item[k] >= 0) {
            api_l2_normalize(v, dim);
            lru_put(batcher_label_cache(ctx->b), w->arena + w->text_off[k], w->text_len[k], v);
        }
        float *acc = labels + (size_t)(k / nt) * (size_t)dim;
        for (int d = 0; d < dim; d++) acc[d] += v[d];
    }
    for (int l = 0; l < nl; l++) api_l2_normalize(labels + (size_t)l * (size_t)dim, dim);
    for (int i = 0; i < r->n_images; i++) {
        float *img = w->out + (size_t)i * (size_t)dim;
        api_l2_normalize(img, dim);
        api_classify_scores(img, labels, nl, dim, r->scale, r->top_k, work, all,
                            scores + (size_t)i * (size_t)r->top_k);
    }
    api_model_desc md = model_desc(ctx);
    int rc = api_write_classify(out, &md, r, scores, r->n_images);
    free(labels);
    free(work);
    free(all);
    free(scores);
    if (rc) return api_fail(err, API_ERR_INTERNAL, "the response exceeds %zu bytes", out->max);
    return 0;
}

int handlers_finish(const handlers_ctx *ctx, handler_work *w, jbuf *out, api_error *err) {
    if (w->job_inited && w->job.err != API_OK) {
        err->code = w->job.err;
        snprintf(err->message, sizeof err->message, "%s", w->job.message);
        return api_err_status(err->code);
    }
    api_request *r = &w->req;
    int rc = 0;
    if (w->kind == HANDLER_CLASSIFY) {
        rc = finish_classify(ctx, w, out, err);
    } else {
        int images = r->n_images > 0;
        int n = images ? r->n_images : r->n_texts;
        float *emb = w->out + (images ? 0 : (size_t)w->n_out_images * (size_t)w->dim);
        if (r->normalize) {
            for (int i = 0; i < n; i++) api_l2_normalize(emb + (size_t)i * (size_t)w->dim, w->dim);
        }
        api_text_stats *stats = NULL;
        if (!images) {
            stats = calloc(n > 0 ? (size_t)n : 1, sizeof *stats);
            if (!stats) {
                api_fail(err, API_ERR_INTERNAL, "out of memory");
                return 500;
            }
            for (int i = 0; i < n; i++) {
                const batch_item *it = &w->items[r->n_images + i];
                stats[i].tokens = it->n_tokens;
                stats[i].truncated = it->n_dropped > 0;
            }
        }
        api_model_desc md = model_desc(ctx);
        int wrc = r->openai ? api_write_openai(out, &md, r->model_name, emb, n, r->encoding, stats)
                            : api_write_embeddings(out, &md, emb, n, r->normalize, r->encoding, stats);
        if (wrc) {
            rc = api_fail(err, API_ERR_INTERNAL, "the response exceeds %zu bytes", out->max);
        }
        free(stats);
    }
    return rc ? api_err_status(err->code) : 200;
}
