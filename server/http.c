/*
 * http.c - libmicrohttpd glue (see http.h).
 *
 * The access handler is two-phase, as libmicrohttpd intends:
 *   1. first call (*req_cls == NULL): allocate the request state, note route, request id,
 *      client address; refuse a declared Content-Length over max_body_bytes right away (413;
 *      MHD then closes the connection, which is what we want for a body we will not read).
 *      Any other answer waits for the body: queueing a response on the first call forces
 *      "Connection: close", which would kill keep-alive for every GET.
 *   2. body chunks: appended to a buffer capped at max_body_bytes (a chunked body that grows
 *      past it is discarded and answered 413 at the end).
 *   3. final call (*upload_data_size == 0): answer GETs directly; for the model endpoints build
 *      a job, MHD_suspend_connection(), hand the items to the workers. The job's done callback
 *      (worker or inference thread) calls MHD_resume_connection(); MHD then calls the handler
 *      once more and the response is built on this I/O thread.
 *
 * Deadlines: a watchdog thread keeps the suspended requests that have a deadline
 * (request_timeout_ms) and resumes each one at its deadline even if its items are still inside a
 * forward pass; the I/O thread then answers 504 at once. Exactly one party resumes a suspended
 * connection: the job's done callback or the watchdog, decided under wd_lock (resume_state).
 * Neither calls MHD_resume_connection while holding wd_lock, which the I/O threads take too.
 *
 * Lifetime: items still queued or inside a forward pass point into the request's work (their
 * outputs) and body (raw image bytes). So a request's state (http_req, its work, its body and
 * its share of the body budget) is freed by whichever comes second of (a) MHD's completion
 * notification (MHD_OPTION_NOTIFY_COMPLETED, exactly once per request that got a state) and
 * (b) the job's done callback (exactly once per submitted job), again decided under wd_lock.
 * The done callback runs on a worker or the inference thread; main.c stops (joins) those before
 * http_stop, so the http_server it touches is still alive.
 */
#include "http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

const char *const http_route_names[HTTP_ROUTE_COUNT] = {
    "/embed/image", "/embed/text", "/classify", "/v1/embeddings", "/healthz", "/readyz",
    "/metrics",     "/info",       "/openapi.yaml", "other",
};

enum { M_GET = 1, M_HEAD = 2, M_POST = 4, M_OPTIONS = 8, M_OTHER = 16 };

/* Methods each route takes (besides OPTIONS, which every route answers for CORS preflight). */
static const int k_route_methods[HTTP_ROUTE_COUNT] = {
    [HTTP_ROUTE_EMBED_IMAGE] = M_POST, [HTTP_ROUTE_EMBED_TEXT] = M_POST,
    [HTTP_ROUTE_CLASSIFY] = M_POST,    [HTTP_ROUTE_OPENAI_EMBEDDINGS] = M_POST,
    [HTTP_ROUTE_HEALTHZ] = M_GET | M_HEAD,
    [HTTP_ROUTE_READYZ] = M_GET | M_HEAD, [HTTP_ROUTE_METRICS] = M_GET | M_HEAD,
    [HTTP_ROUTE_INFO] = M_GET | M_HEAD, [HTTP_ROUTE_OPENAPI] = M_GET | M_HEAD,
    [HTTP_ROUTE_OTHER] = 0,
};

#define MAX_RESPONSE_BYTES (256u << 20)
#define REQUEST_ID_MAX 64

struct http_server {
    http_deps deps;
    handlers_ctx hctx;
    struct MHD_Daemon *daemon;
    int port;
    _Atomic int draining;
    _Atomic int in_flight;
    _Atomic uint64_t body_bytes; /* body buffer bytes reserved by all requests (max_body_bytes_total) */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle_cond;
    int quiesced_fd;

    /* deadline watchdog (see the top of this file) */
    pthread_mutex_t wd_lock;     /* guards wd_* and every request's resume_state/job_running/http_done */
    pthread_cond_t wd_cond;      /* CLOCK_MONOTONIC; signalled on stop or an earlier deadline */
    pthread_t wd_thread;
    int wd_started;
    int wd_stop;
    struct http_req *wd_head;    /* suspended requests with a deadline (unsorted, doubly linked) */
    int64_t wd_wake_ns;          /* when the watchdog plans to wake next (0: only when signalled) */
};

/* Who resumes a suspended request: exactly one of the job's done callback and the watchdog. */
typedef enum resume_state {
    RESUME_NONE = 0,       /* not suspended (yet), or the connection died */
    RESUME_WAITING,        /* suspended: the first of done callback / watchdog takes it */
    RESUME_BY_JOB,         /* every item finished: answer from the work */
    RESUME_BY_DEADLINE     /* the deadline passed first: answer 504, items may still run */
} resume_state;

typedef enum req_phase {
    PHASE_BODY = 0,  /* receiving the body */
    PHASE_WAITING,   /* suspended, the job is running */
    PHASE_DONE       /* response queued */
} req_phase;

typedef struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    http_route route;
    int method;
    const char *method_name;   /* MHD's string, valid for the request */
    char path[256];            /* copied for the access log (truncated) */
    char request_id[REQUEST_ID_MAX + 1];
    char remote[64];
    char user_agent[128];
    int64_t t_start_ns;
    req_phase phase;

    /* body */
    char *body;
    size_t body_len, body_cap;
    int too_large;             /* the body went over max_body_bytes */
    uint64_t discarded;        /* bytes thrown away after too_large / over_budget */
    size_t reserved;           /* bytes of srv->body_bytes this request holds (= body_cap) */
    int over_budget;           /* the body would have pushed srv->body_bytes past the total cap */

    /* work */
    handler_work *work;

    /* guarded by srv->wd_lock */
    resume_state resume;
    int job_running;           /* submitted, done callback not run yet (it owes batcher_jobs_add(-1)) */
    int http_done;             /* the completion notification ran */
    int64_t deadline_ns;       /* the job's deadline, 0 = none */
    struct http_req *wd_prev, *wd_next; /* in srv->wd_head's list (deadline_ns > 0, WAITING) */
    struct http_req *wd_resume_next;    /* the watchdog's private list of requests to resume */

    /* outcome, for log and metrics */
    int status;
    size_t bytes;
} http_req;

/* ---- helpers ------------------------------------------------------------------------------- */

static http_route route_of(const char *url) {
    for (int i = 0; i < HTTP_ROUTE_OTHER; i++) {
        if (strcmp(url, http_route_names[i]) == 0) return (http_route)i;
    }
    return HTTP_ROUTE_OTHER;
}

static int method_of(const char *m) {
    if (!strcmp(m, "GET")) return M_GET;
    if (!strcmp(m, "HEAD")) return M_HEAD;
    if (!strcmp(m, "POST")) return M_POST;
    if (!strcmp(m, "OPTIONS")) return M_OPTIONS;
    return M_OTHER;
}

static void allow_header(int methods, char *out, size_t cap) {
    out[0] = '\0';
    size_t n = 0;
    static const struct {
        int bit;
        const char *name;
    } names[] = {{M_GET, "GET"}, {M_HEAD, "HEAD"}, {M_POST, "POST"}, {M_OPTIONS, "OPTIONS"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(methods & names[i].bit)) continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? ", " : "", names[i].name);
        if (w < 0 || (size_t)w >= cap - n) break;
        n += (size_t)w;
    }
}

/* A client's X-Request-Id is echoed only if it is short and harmless in a header and a log. */
static int request_id_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > REQUEST_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || c == '.' || c == ':';
        if (!ok) return 0;
    }
    return 1;
}

static void client_address(struct MHD_Connection *c, char *out, size_t cap) {
    snprintf(out, cap, "-");
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    char tmp[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, tmp, sizeof tmp);
        snprintf(out, cap, "%s", tmp);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, tmp, sizeof tmp);
        snprintf(out, cap, "[%s]", tmp);
    }
}

static metrics_error_reason reason_of(api_err e) {
    switch (e) {
    case API_ERR_BAD_JSON:
    case API_ERR_BAD_FIELD: return METRICS_ERR_BAD_REQUEST;
    case API_ERR_BAD_BASE64: return METRICS_ERR_BAD_BASE64;
    case API_ERR_UNAUTHORIZED: return METRICS_ERR_UNAUTHORIZED;
    case API_ERR_NOT_FOUND: return METRICS_ERR_NOT_FOUND;
    case API_ERR_METHOD: return METRICS_ERR_METHOD_NOT_ALLOWED;
    case API_ERR_BODY_TOO_LARGE: return METRICS_ERR_BODY_TOO_LARGE;
    case API_ERR_MEDIA_TYPE:
    case API_ERR_IMAGE_FORMAT: return METRICS_ERR_UNSUPPORTED_MEDIA;
    case API_ERR_IMAGE_DECODE: return METRICS_ERR_IMAGE_DECODE;
    case API_ERR_IMAGE_TOO_LARGE: return METRICS_ERR_IMAGE_TOO_LARGE;
    case API_ERR_TOO_MANY_ITEMS: return METRICS_ERR_TOO_MANY_ITEMS;
    case API_ERR_TEXT_TOO_LONG: return METRICS_ERR_TEXT_TOO_LONG;
    case API_ERR_QUEUE_FULL: return METRICS_ERR_QUEUE_FULL;
    case API_ERR_NOT_READY:
    case API_ERR_DRAINING: return METRICS_ERR_NOT_READY;
    case API_ERR_OUT_OF_MEMORY: return METRICS_ERR_OUT_OF_MEMORY;
    case API_ERR_DEADLINE: return METRICS_ERR_TIMEOUT;
    default: return METRICS_ERR_INTERNAL;
    }
}

/* ---- responses ----------------------------------------------------------------------------- */

typedef struct resp_extra {
    const char *allow;       /* 405 / OPTIONS */
    int retry_after_s;       /* 429 / 503 */
    int www_authenticate;    /* 401 */
    int server_timing;       /* add Server-Timing from the work */
    int preflight;           /* OPTIONS: CORS preflight headers */
} resp_extra;

static void add_cors(http_req *r, struct MHD_Response *resp, const resp_extra *x) {
    const server_config *cfg = r->srv->deps.cfg;
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!origin || !config_cors_origin_allowed(cfg, origin, strlen(origin))) return;
    if (strcmp(cfg->cors_origins, "*") == 0) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    } else {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, Server-Timing, Retry-After");
    if (x && x->preflight) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", x->allow ? x->allow : "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, X-Request-Id");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
}

/* Queues a response that takes ownership of body (malloc'd, may be NULL for an empty body). */
static enum MHD_Result respond(http_req *r, int status, const char *content_type, char *body, size_t len,
                               const resp_extra *x) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body ? body : (void *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    if (content_type) MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    add_cors(r, resp, x);
    char tmp[160];
    if (x && x->allow) MHD_add_response_header(resp, "Allow", x->allow);
    if (x && x->retry_after_s > 0) {
        snprintf(tmp, sizeof tmp, "%d", x->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", tmp);
    }
    if (x && x->www_authenticate) {
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"cloob-server\"");
    }
    if (x && x->server_timing && r->work) {
        double d, q, i;
        handlers_timing(r->work, &d, &q, &i);
        snprintf(tmp, sizeof tmp, "decode;dur=%.3f, queue;dur=%.3f, infer;dur=%.3f", d, q, i);
        MHD_add_response_header(resp, "Server-Timing", tmp);
    }
    if (atomic_load(&r->srv->draining)) MHD_add_response_header(resp, "Connection", "close");
    r->status = status;
    r->bytes = len;
    r->phase = PHASE_DONE;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result respond_error(http_req *r, const api_error *e, const resp_extra *x) {
    jbuf b;
    jbuf_init(&b, 4096);
    api_write_error(&b, e);
    if (r->srv->deps.m) metrics_error(r->srv->deps.m, reason_of(e->code));
    size_t len = 0;
    char *body = jbuf_take(&b, &len);
    if (!body) {
        static const char k_fallback[] = "{\"error\":{\"code\":500,\"type\":\"internal_error\",\"message\":\"out of memory\"}}";
        body = strdup(k_fallback);
        len = body ? strlen(body) : 0;
    }
    return respond(r, api_err_status(e->code), "application/json", body, len, x);
}

static enum MHD_Result respond_err(http_req *r, api_err code, const resp_extra *x, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result respond_err(http_req *r, api_err code, const resp_extra *x, const char *fmt, ...) {
    api_error e;
    e.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return respond_error(r, &e, x);
}

static enum MHD_Result respond_json_literal(http_req *r, int status, const char *json) {
    char *body = strdup(json);
    return respond(r, status, "application/json", body, body ? strlen(body) : 0, NULL);
}

/* ---- GET endpoints --------------------------------------------------------------------------- */

static enum MHD_Result handle_readyz(http_req *r) {
    batcher_state st = batcher_get_state(r->srv->deps.b);
    if (atomic_load(&r->srv->draining) || st == BATCHER_DRAINING || st == BATCHER_STOPPED) {
        return respond_err(r, API_ERR_DRAINING, NULL, "shutting down");
    }
    if (st == BATCHER_READY) return respond_json_literal(r, 200, "{\"status\":\"ready\"}");
    if (st == BATCHER_FAILED) {
        return respond_err(r, API_ERR_NOT_READY, NULL, "the model failed to load: %s",
                           batcher_load_error(r->srv->deps.b));
    }
    return respond_err(r, API_ERR_NOT_READY, NULL, "loading and warming up the model");
}

static enum MHD_Result handle_metrics(http_req *r) {
    metrics *m = r->srv->deps.m;
    if (!m) return respond_err(r, API_ERR_INTERNAL, NULL, "metrics are disabled");
    lru_cache *cache = batcher_label_cache(r->srv->deps.b);
    if (cache) {
        lru_stats s;
        lru_get_stats(cache, &s);
        metrics_label_cache_entries(m, (int64_t)s.entries);
    }
    size_t len = 0;
    char *text = metrics_render_alloc(m, &len);
    if (!text) return respond_err(r, API_ERR_INTERNAL, NULL, "out of memory");
    return respond(r, 200, METRICS_CONTENT_TYPE, text, len, NULL);
}

static const char *state_name(batcher_state st) {
    switch (st) {
    case BATCHER_LOADING: return "loading";
    case BATCHER_READY: return "ready";
    case BATCHER_FAILED: return "failed";
    case BATCHER_DRAINING: return "draining";
    default: return "stopped";
    }
}

static enum MHD_Result handle_info(http_req *r) {
    http_server *s = r->srv;
    const server_config *cfg = s->deps.cfg;
    batcher *b = s->deps.b;
    batcher_state st = batcher_get_state(b);
    jbuf j;
    jbuf_init(&j, 1u << 20);
    jbuf_printf(&j, "{\"version\":\"%s\",\"status\":\"%s\",\"uptime_seconds\":%.3f", CONFIG_VERSION_STRING,
                state_name(st), (double)(batch_now_ns() - s->deps.start_time_ns) * 1e-9);
    /* The model is published once READY was reached; DRAINING may come before or after it. */
    const cloob_model_info *info = batcher_model_info(b);
    if (info) {
        jbuf_puts(&j, ",\"model\":{\"name\":");
        jbuf_json_string(&j, info->name, strnlen(info->name, sizeof info->name));
        jbuf_printf(&j,
                    ",\"embed_dim\":%d,\"image_size\":%d,\"max_seq_len\":%d,\"device\":\"%s\",\"dtype\":\"%s\","
                    "\"random_weights\":%s,\"model_sha256\":\"%s\",\"load_seconds\":%.3f",
                    info->embed_dim, info->image_size, info->max_seq_len, info->device, info->dtype,
                    info->random_weights ? "true" : "false", info->model_sha256, batcher_load_seconds(b));
        if (info->random_weights) {
            jbuf_puts(&j, ",\"warning\":\"RANDOM WEIGHTS: this is a demo model, its answers are meaningless\"");
        }
        const char *meta = batcher_model_metadata(b);
        if (meta) {
            jbuf_puts(&j, ",\"metadata\":");
            jbuf_puts(&j, meta);
        }
        jbuf_puts(&j, "}");
    } else if (st == BATCHER_FAILED) {
        jbuf_puts(&j, ",\"load_error\":");
        const char *e = batcher_load_error(b);
        jbuf_json_string(&j, e, strlen(e));
    }
    const char *selftest = batcher_selftest_json(b);
    if (selftest) {
        jbuf_puts(&j, ",\"selftest\":");
        jbuf_puts(&j, selftest);
    }
    const batcher_config *bc = batcher_get_config(b);
    jbuf_printf(&j,
                ",\"batching\":{\"max_batch_image\":%d,\"max_batch_text\":%d,\"max_queue_delay_us\":%lld,"
                "\"max_queue_items\":%d,\"request_timeout_ms\":%d,\"queued_items\":%d,"
                "\"seconds_per_image\":%.6f,\"seconds_per_text\":%.6f}",
                bc->max_batch[BATCH_IMAGE], bc->max_batch[BATCH_TEXT], (long long)bc->max_queue_delay_us,
                bc->max_queue_items, cfg->request_timeout_ms, batcher_queued_items(b),
                batcher_item_seconds(b, BATCH_IMAGE), batcher_item_seconds(b, BATCH_TEXT));
    jbuf_printf(&j,
                ",\"limits\":{\"max_body_bytes\":%llu,\"max_body_bytes_total\":%llu,"
                "\"max_image_pixels\":%llu,\"max_image_side\":%u,"
                "\"max_images_per_request\":%d,\"max_texts_per_request\":%d,\"max_text_bytes\":%d,"
                "\"max_labels\":%d,\"max_templates\":%d}",
                (unsigned long long)cfg->max_body_bytes, (unsigned long long)cfg->max_body_bytes_total,
                (unsigned long long)cfg->max_image_pixels,
                (unsigned)cfg->max_image_side, cfg->max_images_per_request, cfg->max_texts_per_request,
                cfg->max_text_bytes, s->hctx.limits.max_labels, s->hctx.limits.max_templates);
    if (s->deps.runtime_json) {
        jbuf_puts(&j, ",\"runtime\":");
        jbuf_puts(&j, s->deps.runtime_json);
    }
    char *cj = config_to_json(cfg);
    if (cj) {
        jbuf_puts(&j, ",\"config\":");
        jbuf_puts(&j, cj);
        free(cj);
    }
    jbuf_puts(&j, "}");
    if (j.overflow) {
        jbuf_free(&j);
        return respond_err(r, API_ERR_INTERNAL, NULL, "info too large");
    }
    size_t len = 0;
    char *body = jbuf_take(&j, &len);
    return respond(r, 200, "application/json", body, len, NULL);
}

static enum MHD_Result handle_openapi(http_req *r) {
    const http_deps *d = &r->srv->deps;
    if (!d->openapi) return respond_err(r, API_ERR_NOT_FOUND, NULL, "openapi.yaml was not found at start-up");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(d->openapi_len, (void *)d->openapi, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/yaml");
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    add_cors(r, resp, NULL);
    r->status = 200;
    r->bytes = d->openapi_len;
    r->phase = PHASE_DONE;
    enum MHD_Result ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- model endpoints ------------------------------------------------------------------------- */

static void release_body(http_req *r);

/* Any thread, once neither the HTTP side nor the job uses r: frees it, its work and its body. */
static void request_free(http_req *r) {
    handlers_work_free(r->work);
    release_body(r);
    free(r);
}

/* wd_lock held: takes r out of the watchdog's list (if it is there). */
static void wd_unlink(http_server *s, http_req *r) {
    if (r->wd_prev) r->wd_prev->wd_next = r->wd_next;
    else if (s->wd_head == r) s->wd_head = r->wd_next;
    if (r->wd_next) r->wd_next->wd_prev = r->wd_prev;
    r->wd_prev = r->wd_next = NULL;
}

/* Worker or inference thread (or the I/O thread, if submitting failed at once): the job's last
 * item finished. If the request is still waiting, resumes its connection; from the moment
 * MHD_resume_connection is called, r belongs to the I/O thread again. If the watchdog answered
 * it already and the response is out, this is the last user of r and frees it. */
static void on_job_done(batch_job *job, void *arg) {
    (void)job;
    http_req *r = arg;
    http_server *s = r->srv;
    struct MHD_Connection *resume = NULL;
    pthread_mutex_lock(&s->wd_lock);
    r->job_running = 0;
    if (r->resume == RESUME_WAITING) {
        wd_unlink(s, r);
        r->resume = RESUME_BY_JOB;
        resume = r->conn;
    }
    int free_now = r->http_done;
    pthread_mutex_unlock(&s->wd_lock);
    /* A suspended connection cannot complete, so r and conn stay valid until this resume. */
    if (resume) MHD_resume_connection(resume);
    else if (free_now) request_free(r);
    batcher_jobs_add(s->deps.b, -1);
}

/* Watchdog thread: resumes suspended requests at their deadline (see the top of this file). */
static void *watchdog_main(void *arg) {
    http_server *s = arg;
    char msg[API_MESSAGE_MAX];
    snprintf(msg, sizeof msg, "the request's deadline (%d ms) passed while the model was busy",
             s->deps.cfg->request_timeout_ms);
    pthread_mutex_lock(&s->wd_lock);
    while (!s->wd_stop) {
        int64_t now = batch_now_ns(), next = 0;
        http_req *due = NULL;
        for (http_req *r = s->wd_head, *nx; r; r = nx) {
            nx = r->wd_next;
            if (r->deadline_ns <= now) {
                wd_unlink(s, r);
                r->resume = RESUME_BY_DEADLINE;
                /* Lock order: wd_lock, then the job's lock (the done callback runs without it).
                 * Its items not yet in a forward pass are now dropped unrun. */
                handlers_fail_job(r->work, API_ERR_DEADLINE, msg);
                r->wd_resume_next = due;
                due = r;
            } else if (next == 0 || r->deadline_ns < next) {
                next = r->deadline_ns;
            }
        }
        if (due) {
            /* Resume outside wd_lock: MHD's resume takes its own locks, and the I/O threads
             * take wd_lock while MHD holds them. Each r stays valid until its resume (its
             * connection is suspended), so read the links first. */
            s->wd_wake_ns = 0;
            pthread_mutex_unlock(&s->wd_lock);
            while (due) {
                http_req *r = due;
                due = r->wd_resume_next;
                MHD_resume_connection(r->conn);
            }
            pthread_mutex_lock(&s->wd_lock);
            continue;
        }
        s->wd_wake_ns = next;
        if (next) {
            struct timespec ts = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
            pthread_cond_timedwait(&s->wd_cond, &s->wd_lock, &ts);
        } else {
            pthread_cond_wait(&s->wd_cond, &s->wd_lock);
        }
    }
    pthread_mutex_unlock(&s->wd_lock);
    return NULL;
}

/* I/O thread, connection suspended, before the items are submitted: the request now waits for
 * its job, and for its deadline if it has one. */
static void wait_for_job(http_req *r) {
    http_server *s = r->srv;
    pthread_mutex_lock(&s->wd_lock);
    r->resume = RESUME_WAITING;
    r->job_running = 1;
    r->deadline_ns = handlers_deadline_ns(r->work);
    if (r->deadline_ns > 0 && s->wd_started) {
        r->wd_prev = NULL;
        r->wd_next = s->wd_head;
        if (s->wd_head) s->wd_head->wd_prev = r;
        s->wd_head = r;
        /* Wake the watchdog only if it would sleep past this deadline. */
        if (s->wd_wake_ns == 0 || r->deadline_ns < s->wd_wake_ns) pthread_cond_signal(&s->wd_cond);
    }
    pthread_mutex_unlock(&s->wd_lock);
}

/* I/O thread, resumed by the watchdog: the items may still be inside a forward pass, so nothing
 * of the work is read (it is freed later, by on_job_done). */
static enum MHD_Result respond_deadline(http_req *r) {
    return respond_err(r, API_ERR_DEADLINE, NULL,
                       "the request's deadline (%d ms) passed while the model was busy; retry later or "
                       "send fewer items", r->srv->deps.cfg->request_timeout_ms);
}

static enum MHD_Result finish_work(http_req *r) {
    jbuf out;
    jbuf_init(&out, MAX_RESPONSE_BYTES);
    api_error e;
    int status = handlers_finish(&r->srv->hctx, r->work, &out, &e);
    resp_extra x = {0};
    x.server_timing = 1;
    if (status != 200) {
        jbuf_free(&out);
        return respond_error(r, &e, &x);
    }
    size_t len = 0;
    char *body = jbuf_take(&out, &len);
    return respond(r, 200, "application/json", body, len, &x);
}

static enum MHD_Result handle_model_post(http_req *r) {
    http_server *s = r->srv;
    handler_kind kind = r->route == HTTP_ROUTE_EMBED_IMAGE  ? HANDLER_EMBED_IMAGE
                        : r->route == HTTP_ROUTE_EMBED_TEXT ? HANDLER_EMBED_TEXT
                        : r->route == HTTP_ROUTE_CLASSIFY   ? HANDLER_CLASSIFY
                                                            : HANDLER_OPENAI_EMBEDDINGS;
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    api_content_kind ck = api_content_type_kind(ct);
    handler_raw_opts raw = {0, NULL, NULL};
    if (ck == API_CONTENT_IMAGE && kind == HANDLER_EMBED_IMAGE) {
        raw.raw = 1;
        raw.normalize_q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "normalize");
        raw.encoding_q = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "encoding_format");
    } else if (ck != API_CONTENT_JSON) {
        return respond_err(r, API_ERR_MEDIA_TYPE, NULL, "Content-Type %s is not accepted here; send application/json%s",
                           ct ? ct : "", kind == HANDLER_EMBED_IMAGE ? " or an image/* body" : "");
    }
    api_error e;
    int retry_after = 0;
    handler_work *w = NULL;
    if (handlers_prepare(&s->hctx, kind, r->body, r->body_len, &raw, on_job_done, r, &w, &e, &retry_after)) {
        resp_extra x = {0};
        x.retry_after_s = retry_after;
        return respond_error(r, &e, &x);
    }
    r->work = w;
    if (handlers_work_ready(w)) return finish_work(r);
    r->phase = PHASE_WAITING;
    batcher_jobs_add(s->deps.b, 1); /* given back by on_job_done */
    /* Suspend BEFORE the items leave this thread (and before the watchdog sees the request):
     * either may resume at once. */
    MHD_suspend_connection(r->conn);
    wait_for_job(r);
    handlers_submit(&s->hctx, w);
    return MHD_YES;
}

/* ---- the access handler ------------------------------------------------------------------------ */

static int auth_ok(http_req *r) {
    const server_config *cfg = r->srv->deps.cfg;
    if (!config_auth_enabled(cfg)) return 1;
    if (r->route == HTTP_ROUTE_HEALTHZ || r->route == HTTP_ROUTE_READYZ) return 1;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    return config_api_key_ok(cfg, tok, strlen(tok));
}

static enum MHD_Result dispatch(http_req *r) {
    http_server *s = r->srv;
    if (r->too_large) {
        return respond_err(r, API_ERR_BODY_TOO_LARGE, NULL, "the request body exceeds %llu bytes",
                           (unsigned long long)s->deps.cfg->max_body_bytes);
    }
    if (r->over_budget) {
        resp_extra x = {0};
        x.retry_after_s = 1;
        return respond_err(r, API_ERR_QUEUE_FULL, &x,
                           "the server is holding %llu bytes of request bodies (max_body_bytes_total); "
                           "retry shortly", (unsigned long long)s->deps.cfg->max_body_bytes_total);
    }
    if (r->route == HTTP_ROUTE_OTHER) return respond_err(r, API_ERR_NOT_FOUND, NULL, "no such endpoint: %s", r->path);
    int allowed = k_route_methods[r->route];
    char allow[64];
    allow_header(allowed | M_OPTIONS, allow, sizeof allow);
    if (r->method == M_OPTIONS) {
        resp_extra x = {0};
        x.allow = allow;
        x.preflight = 1;
        return respond(r, 204, NULL, NULL, 0, &x);
    }
    if (!(allowed & r->method)) {
        resp_extra x = {0};
        x.allow = allow;
        return respond_err(r, API_ERR_METHOD, &x, "%s is not allowed on %s; use %s", r->method_name, r->path, allow);
    }
    if (!auth_ok(r)) {
        resp_extra x = {0};
        x.www_authenticate = 1;
        return respond_err(r, API_ERR_UNAUTHORIZED, &x, "a valid API key is required: Authorization: Bearer <key>");
    }
    switch (r->route) {
    case HTTP_ROUTE_HEALTHZ: return respond_json_literal(r, 200, "{\"status\":\"ok\"}");
    case HTTP_ROUTE_READYZ: return handle_readyz(r);
    case HTTP_ROUTE_METRICS: return handle_metrics(r);
    case HTTP_ROUTE_INFO: return handle_info(r);
    case HTTP_ROUTE_OPENAPI: return handle_openapi(r);
    default: break;
    }
    if (atomic_load(&s->draining)) {
        resp_extra x = {0};
        return respond_err(r, API_ERR_DRAINING, &x, "the server is shutting down");
    }
    return handle_model_post(r);
}

/* Gives back this request's share of the global body budget and drops its buffer. */
static void release_body(http_req *r) {
    if (r->reserved) atomic_fetch_sub(&r->srv->body_bytes, (uint64_t)r->reserved);
    r->reserved = 0;
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
}

/* Appends a body chunk, enforcing max_body_bytes per request and max_body_bytes_total across all
 * requests (every byte of buffer capacity is reserved in srv->body_bytes before it is allocated).
 * I/O thread. 0, or -1 to drop the connection. */
static int take_chunk(http_req *r, const char *data, size_t n) {
    const server_config *cfg = r->srv->deps.cfg;
    uint64_t max = cfg->max_body_bytes;
    if (r->too_large || r->over_budget) {
        r->discarded += n;
        /* A chunked body far beyond the cap is an attack, not a mistake: stop reading. */
        return r->discarded > 4 * max + (1u << 20) ? -1 : 0;
    }
    if (r->body_len + n > max) {
        r->too_large = 1;
        r->discarded = r->body_len + n;
        release_body(r);
        return 0;
    }
    if (r->body_len + n > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 16384;
        while (cap < r->body_len + n) cap *= 2;
        if (cap > max) cap = (size_t)max;
        uint64_t more = (uint64_t)(cap - r->reserved);
        uint64_t before = atomic_fetch_add(&r->srv->body_bytes, more);
        if (before + more > cfg->max_body_bytes_total) {
            atomic_fetch_sub(&r->srv->body_bytes, more);
            r->over_budget = 1;
            r->discarded = r->body_len + n;
            release_body(r);
            return 0;
        }
        r->reserved = cap;
        char *p = realloc(r->body, cap + 1);
        if (!p) return -1;
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
    (void)version;
    http_server *s = cls;
    http_req *r = *req_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->t_start_ns = batch_now_ns();
        r->route = route_of(url);
        r->method = method_of(method);
        r->method_name = method;
        snprintf(r->path, sizeof r->path, "%s", url);
        const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
        if (rid && request_id_ok(rid)) {
            snprintf(r->request_id, sizeof r->request_id, "%s", rid);
        } else {
            log_new_request_id(r->request_id);
        }
        const char *ua = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
        if (ua) snprintf(r->user_agent, sizeof r->user_agent, "%s", ua);
        client_address(conn, r->remote, sizeof r->remote);
        *req_cls = r;
        atomic_fetch_add(&s->in_flight, 1);
        if (s->deps.m) metrics_in_flight_add(s->deps.m, 1);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end = NULL;
            unsigned long long v = strtoull(cl, &end, 10);
            if (end != cl && v > s->deps.cfg->max_body_bytes) {
                /* Refuse before reading a byte of it; MHD closes the connection after this. */
                r->too_large = 1;
                return respond_err(r, API_ERR_BODY_TOO_LARGE, NULL,
                                   "Content-Length %llu exceeds the limit of %llu bytes", v,
                                   (unsigned long long)s->deps.cfg->max_body_bytes);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        /* Only bodies that will be used are kept: a POST to a route that takes POST, from a client
         * that passes auth. Anything else is read and dropped (its 404/405/401 comes at the end),
         * so it cannot hold memory or max_body_bytes_total. */
        int rc = 0;
        if (r->method == M_POST && r->route != HTTP_ROUTE_OTHER && (k_route_methods[r->route] & M_POST) &&
            auth_ok(r)) {
            rc = take_chunk(r, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    if (r->phase == PHASE_WAITING) { /* resumed by on_job_done or the watchdog */
        pthread_mutex_lock(&s->wd_lock);
        resume_state by = r->resume;
        pthread_mutex_unlock(&s->wd_lock);
        return by == RESUME_BY_DEADLINE ? respond_deadline(r) : finish_work(r);
    }
    if (r->phase == PHASE_DONE) return MHD_YES;
    return dispatch(r);
}

/* I/O thread: the request is over (answered, or the connection died). Logs, counts, frees. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    http_server *s = cls;
    http_req *r = *req_cls;
    if (!r) return;
    *req_cls = NULL;
    double secs = (double)(batch_now_ns() - r->t_start_ns) * 1e-9;
    int status = r->status;
    if (status == 0) status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? 200 : 499;
    if (s->deps.m) {
        /* 499 (client went away) is outside the metrics' range: count it as the client's fault. */
        metrics_request(s->deps.m, r->route, status == 499 ? 400 : status, secs);
        metrics_in_flight_add(s->deps.m, -1);
    }
    if (s->deps.cfg->access_log) {
        log_access_entry e = {r->method_name, r->path, status, r->bytes, secs * 1e3, r->request_id, r->remote,
                              r->user_agent[0] ? r->user_agent : NULL};
        log_access(&e);
    }
    pthread_mutex_lock(&s->wd_lock);
    r->http_done = 1;
    if (r->resume == RESUME_WAITING) {
        /* Only if MHD closed a suspended connection (daemon stop): nobody may resume it now. */
        wd_unlink(s, r);
        r->resume = RESUME_NONE;
    }
    int free_now = !r->job_running; /* else on_job_done frees it, when the last item is done */
    pthread_mutex_unlock(&s->wd_lock);
    if (free_now) request_free(r);
    if (atomic_fetch_sub(&s->in_flight, 1) == 1) {
        pthread_mutex_lock(&s->idle_lock);
        pthread_cond_broadcast(&s->idle_cond);
        pthread_mutex_unlock(&s->idle_lock);
    }
}

/* ---- lifecycle ----------------------------------------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    log_warn("libmicrohttpd: %s", msg);
}

http_server *http_start(const http_deps *deps, char *err, size_t errlen) {
    const server_config *cfg = deps->cfg;
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->deps = *deps;
    s->quiesced_fd = -1;
    pthread_mutex_init(&s->idle_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->idle_cond, &ca);
    pthread_cond_init(&s->wd_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->wd_lock, NULL);
    if (cfg->request_timeout_ms > 0) {
        if (pthread_create(&s->wd_thread, NULL, watchdog_main, s) != 0) {
            snprintf(err, errlen, "cannot start the deadline watchdog thread");
            http_stop(s);
            return NULL;
        }
        s->wd_started = 1;
    }

    handlers_ctx *h = &s->hctx;
    h->b = deps->b;
    h->w = deps->w;
    h->m = deps->m;
    h->request_timeout_ms = cfg->request_timeout_ms;
    h->limits.max_images = cfg->max_images_per_request;
    h->limits.max_texts = cfg->max_texts_per_request;
    h->limits.max_text_bytes = cfg->max_text_bytes;
    h->limits.max_labels = cfg->max_texts_per_request;
    h->limits.max_templates = 64;
    h->limits.default_truncate = cfg->text_truncation == CONFIG_TRUNCATE;
    h->limits.default_scale = cfg->default_scale;

    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", cfg->port);
    int gai = getaddrinfo(cfg->host[0] ? cfg->host : NULL, portstr, &hints, &ai);
    if (gai != 0 || !ai) {
        snprintf(err, errlen, "host: cannot resolve listen address '%s': %s", cfg->host, gai_strerror(gai));
        http_stop(s);
        return NULL;
    }
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
                         MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[12];
    int n = 0;
    /* The logger first, so that MHD's messages about the other options go through it too. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
    if (cfg->connection_limit > 0) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->connection_limit, NULL};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s, NULL};
    if (cfg->http_threads > 1) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, cfg->http_threads, NULL};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    s->daemon = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        snprintf(err, errlen, "port: cannot listen on %s:%d (in use, or not allowed)", cfg->host, cfg->port);
        http_stop(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    return s;
}

int http_port(const http_server *s) { return s->port; }

void http_begin_drain(http_server *s) {
    atomic_store(&s->draining, 1);
    if (s->daemon && s->quiesced_fd < 0) {
        /* The listening socket stays open (MHD keeps using it until stop) but is no longer
         * polled: new connections wait in the backlog and are reset at exit. */
        s->quiesced_fd = (int)MHD_quiesce_daemon(s->daemon);
    }
}

int http_requests_in_flight(http_server *s) { return atomic_load(&s->in_flight); }

int http_wait_idle(http_server *s, int64_t deadline_ns) {
    pthread_mutex_lock(&s->idle_lock);
    while (atomic_load(&s->in_flight) > 0 && batch_now_ns() < deadline_ns) {
        int64_t until = batch_now_ns() + 50000000LL; /* re-check at least every 50 ms */
        if (until > deadline_ns) until = deadline_ns;
        struct timespec ts = {(time_t)(until / 1000000000LL), (long)(until % 1000000000LL)};
        pthread_cond_timedwait(&s->idle_cond, &s->idle_lock, &ts);
    }
    pthread_mutex_unlock(&s->idle_lock);
    return atomic_load(&s->in_flight) > 0 ? -1 : 0;
}

void http_stop(http_server *s) {
    if (!s) return;
    /* The watchdog first: it must not resume a connection of a daemon that is gone. */
    if (s->wd_started) {
        pthread_mutex_lock(&s->wd_lock);
        s->wd_stop = 1;
        pthread_cond_signal(&s->wd_cond);
        pthread_mutex_unlock(&s->wd_lock);
        pthread_join(s->wd_thread, NULL);
        s->wd_started = 0;
    }
    if (s->daemon) MHD_stop_daemon(s->daemon);
    if (s->quiesced_fd >= 0) close(s->quiesced_fd);
    pthread_cond_destroy(&s->idle_cond);
    pthread_mutex_destroy(&s->idle_lock);
    pthread_cond_destroy(&s->wd_cond);
    pthread_mutex_destroy(&s->wd_lock);
    free(s);
}
