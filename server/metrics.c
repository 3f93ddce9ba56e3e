/*
 * metrics.c - fixed-set Prometheus registry on C11 atomics (see metrics.h for the contract).
 *
 * Layout: one calloc'd struct holds every counter, gauge and histogram bucket, so the hot path
 * is an index computation and a relaxed atomic add. Histogram buckets are stored non-cumulative
 * (each observation increments exactly one slot) and summed at render time; _count is the sum
 * of all slots, so it always equals the +Inf bucket.
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATUS_MIN 100
#define STATUS_MAX 599
#define STATUS_SLOTS (STATUS_MAX - STATUS_MIN + 1)
#define MAX_BOUNDS 16
#define INFO_MAX 128

/* Bucket upper bounds (le). Latency covers fast cached text (1 ms) to slow CPU batches (30 s). */
static const double k_latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10,   30};
static const double k_queue_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                        0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                        1,      2.5,     5,      10};
static const double k_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128};
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct histogram {
    _Atomic uint64_t slot[MAX_BOUNDS + 1]; /* slot[i]: bounds[i-1] < v <= bounds[i]; last: +Inf */
    _Atomic uint64_t sum;                  /* nanoseconds (time) or items (batch size) */
} histogram;

struct metrics {
    int n_routes;
    char routes[METRICS_MAX_ROUTES][METRICS_ROUTE_NAME_MAX];

    _Atomic uint64_t requests[METRICS_MAX_ROUTES][STATUS_SLOTS];
    histogram latency[METRICS_MAX_ROUTES];
    _Atomic int64_t in_flight;

    _Atomic int64_t queue_depth[METRICS_MODALITY_COUNT];
    histogram queue_wait[METRICS_MODALITY_COUNT];
    histogram inference[METRICS_MODALITY_COUNT];
    histogram batch_size[METRICS_MODALITY_COUNT];
    _Atomic uint64_t items[METRICS_MODALITY_COUNT];

    _Atomic uint64_t cache_hits, cache_misses;
    _Atomic int64_t cache_entries;
    _Atomic uint64_t errors[METRICS_ERR_REASON_COUNT];
    _Atomic int ready;

    double start_time; /* Unix seconds, set at create */

    pthread_mutex_t info_lock; /* guards the model info strings only */
    int has_info;
    char info_name[INFO_MAX], info_device[INFO_MAX], info_dtype[INFO_MAX], info_sha[INFO_MAX];
};

static const char *const k_modality_names[METRICS_MODALITY_COUNT] = {"image", "text"};

static const char *const k_reason_names[METRICS_ERR_REASON_COUNT] = {
    [METRICS_ERR_BAD_REQUEST] = "bad_request",
    [METRICS_ERR_UNAUTHORIZED] = "unauthorized",
    [METRICS_ERR_NOT_FOUND] = "not_found",
    [METRICS_ERR_METHOD_NOT_ALLOWED] = "method_not_allowed",
    [METRICS_ERR_BODY_TOO_LARGE] = "body_too_large",
    [METRICS_ERR_TOO_MANY_ITEMS] = "too_many_items",
    [METRICS_ERR_UNSUPPORTED_MEDIA] = "unsupported_media",
    [METRICS_ERR_IMAGE_DECODE] = "image_decode",
    [METRICS_ERR_IMAGE_TOO_LARGE] = "image_too_large",
    [METRICS_ERR_BAD_BASE64] = "bad_base64",
    [METRICS_ERR_TEXT_TOO_LONG] = "text_too_long",
    [METRICS_ERR_QUEUE_FULL] = "queue_full",
    [METRICS_ERR_TIMEOUT] = "timeout",
    [METRICS_ERR_NOT_READY] = "not_ready",
    [METRICS_ERR_OUT_OF_MEMORY] = "out_of_memory",
    [METRICS_ERR_MODEL] = "model",
    [METRICS_ERR_INTERNAL] = "internal",
};

const char *metrics_modality_name(metrics_modality m) {
    return ((int)m >= 0 && (int)m < METRICS_MODALITY_COUNT) ? k_modality_names[m] : "unknown";
}

const char *metrics_error_reason_name(metrics_error_reason r) {
    return ((int)r >= 0 && (int)r < METRICS_ERR_REASON_COUNT) ? k_reason_names[r] : "unknown";
}

static int valid_route_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= METRICS_ROUTE_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '/' || c == '.' || c == ':' || c == '-';
        if (!ok) return 0;
    }
    return 1;
}

/* Main thread. */
metrics *metrics_create(const char *const *route_names, int n_routes) {
    if (!route_names || n_routes < 1 || n_routes > METRICS_MAX_ROUTES) return NULL;
    for (int i = 0; i < n_routes; i++)
        if (!valid_route_name(route_names[i])) return NULL;
    /* calloc zeroes the atomics: all-zero bits is a valid zero for lock-free atomic integers */
    metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->info_lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->n_routes = n_routes;
    for (int i = 0; i < n_routes; i++)
        snprintf(m->routes[i], sizeof m->routes[i], "%s", route_names[i]);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    return m;
}

void metrics_free(metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->info_lock);
    free(m);
}

int metrics_route_index(const metrics *m, const char *name) {
    if (!m || !name) return -1;
    for (int i = 0; i < m->n_routes; i++)
        if (strcmp(m->routes[i], name) == 0) return i;
    return -1;
}

/* ---- hot path ------------------------------------------------------------------------------ */

#define RELAXED memory_order_relaxed

static void hist_observe(histogram *h, const double *bounds, int n_bounds, double v,
                         uint64_t sum_add) {
    int i = 0;
    while (i < n_bounds && !(v <= bounds[i])) i++; /* NaN lands in +Inf */
    atomic_fetch_add_explicit(&h->slot[i], 1, RELAXED);
    atomic_fetch_add_explicit(&h->sum, sum_add, RELAXED);
}

/* Seconds -> integer nanoseconds for the sum; negative/NaN -> 0, absurd values capped. */
static uint64_t seconds_to_ns(double s) {
    if (!(s > 0)) return 0;
    if (s > 1e9) s = 1e9; /* 31 years: keeps the sum far from overflow */
    return (uint64_t)(s * 1e9 + 0.5);
}

static double clamp_seconds(double s) {
    return (s > 0) ? s : 0.0; /* also maps NaN to 0 */
}

static int valid_modality(metrics_modality mod) {
    return (int)mod >= 0 && (int)mod < METRICS_MODALITY_COUNT;
}

void metrics_request(metrics *m, int route, int status, double seconds) {
    if (!m || route < 0 || route >= m->n_routes) return;
    if (status < STATUS_MIN || status > STATUS_MAX) status = 500;
    atomic_fetch_add_explicit(&m->requests[route][status - STATUS_MIN], 1, RELAXED);
    seconds = clamp_seconds(seconds);
    hist_observe(&m->latency[route], k_latency_bounds, N_OF(k_latency_bounds), seconds,
                 seconds_to_ns(seconds));
}

void metrics_in_flight_add(metrics *m, int delta) {
    if (m) atomic_fetch_add_explicit(&m->in_flight, delta, RELAXED);
}

void metrics_queue_depth_add(metrics *m, metrics_modality mod, int delta) {
    if (m && valid_modality(mod)) atomic_fetch_add_explicit(&m->queue_depth[mod], delta, RELAXED);
}

void metrics_queue_depth_set(metrics *m, metrics_modality mod, int64_t value) {
    if (m && valid_modality(mod)) atomic_store_explicit(&m->queue_depth[mod], value, RELAXED);
}

void metrics_queue_wait(metrics *m, metrics_modality mod, double seconds) {
    if (!m || !valid_modality(mod)) return;
    seconds = clamp_seconds(seconds);
    hist_observe(&m->queue_wait[mod], k_queue_bounds, N_OF(k_queue_bounds), seconds,
                 seconds_to_ns(seconds));
}

void metrics_batch(metrics *m, metrics_modality mod, int batch, double seconds) {
    if (!m || !valid_modality(mod) || batch < 0) return;
    seconds = clamp_seconds(seconds);
    hist_observe(&m->inference[mod], k_latency_bounds, N_OF(k_latency_bounds), seconds,
                 seconds_to_ns(seconds));
    hist_observe(&m->batch_size[mod], k_batch_bounds, N_OF(k_batch_bounds), (double)batch,
                 (uint64_t)batch);
    atomic_fetch_add_explicit(&m->items[mod], (uint64_t)batch, RELAXED);
}

void metrics_items_add(metrics *m, metrics_modality mod, uint64_t n) {
    if (m && valid_modality(mod)) atomic_fetch_add_explicit(&m->items[mod], n, RELAXED);
}

void metrics_label_cache(metrics *m, uint64_t hits, uint64_t misses) {
    if (!m) return;
    if (hits) atomic_fetch_add_explicit(&m->cache_hits, hits, RELAXED);
    if (misses) atomic_fetch_add_explicit(&m->cache_misses, misses, RELAXED);
}

void metrics_label_cache_entries(metrics *m, int64_t entries) {
    if (m) atomic_store_explicit(&m->cache_entries, entries, RELAXED);
}

void metrics_error(metrics *m, metrics_error_reason reason) {
    if (m && (int)reason >= 0 && (int)reason < METRICS_ERR_REASON_COUNT)
        atomic_fetch_add_explicit(&m->errors[reason], 1, RELAXED);
}

void metrics_set_ready(metrics *m, int ready) {
    if (m) atomic_store_explicit(&m->ready, ready ? 1 : 0, RELAXED);
}

static void copy_info(char *dst, const char *src) {
    snprintf(dst, INFO_MAX, "%s", src ? src : "");
}

void metrics_set_model_info(metrics *m, const char *name, const char *device, const char *dtype,
                            const char *sha256) {
    if (!m) return;
    pthread_mutex_lock(&m->info_lock);
    copy_info(m->info_name, name);
    copy_info(m->info_device, device);
    copy_info(m->info_dtype, dtype);
    copy_info(m->info_sha, sha256);
    m->has_info = 1;
    pthread_mutex_unlock(&m->info_lock);
}

uint64_t metrics_get_requests(const metrics *m, int route, int status) {
    if (!m || route < 0 || route >= m->n_routes || status < STATUS_MIN || status > STATUS_MAX)
        return 0;
    return atomic_load_explicit(&m->requests[route][status - STATUS_MIN], RELAXED);
}

uint64_t metrics_get_errors(const metrics *m, metrics_error_reason reason) {
    if (!m || (int)reason < 0 || (int)reason >= METRICS_ERR_REASON_COUNT) return 0;
    return atomic_load_explicit(&m->errors[reason], RELAXED);
}

int64_t metrics_get_in_flight(const metrics *m) {
    return m ? atomic_load_explicit(&m->in_flight, RELAXED) : 0;
}

/* ---- rendering ----------------------------------------------------------------------------- */

/* snprintf-style accumulator: len counts everything, buf receives what fits (NUL kept). */
typedef struct out_buf {
    char *buf;
    size_t cap;
    size_t len;
} out_buf;

static void ob_printf(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ob_printf(out_buf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *dst = NULL;
    size_t room = 0;
    if (o->len < o->cap) {
        dst = o->buf + o->len;
        room = o->cap - o->len;
    }
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

/* Label value escaping per the exposition format: backslash, double quote, newline. */
static void ob_label_value(out_buf *o, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '\\': ob_printf(o, "\\\\"); break;
        case '"': ob_printf(o, "\\\""); break;
        case '\n': ob_printf(o, "\\n"); break;
        default: ob_printf(o, "%c", *s); break;
        }
    }
}

static void ob_header(out_buf *o, const char *name, const char *type, const char *help) {
    ob_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A bound as Prometheus writes it ("0.005", "1", "128"). %.17g would print 0.0050000000000000001. */
static void format_bound(double b, char out[32]) {
    snprintf(out, 32, "%.6g", b);
}

/*
 * One histogram's samples. label: the extra label text (e.g. `route="/v1/x",`) or "".
 * sum_is_ns: print the sum as seconds from integer nanoseconds (exact decimal).
 */
static void render_hist(out_buf *o, const char *name, const char *label_name,
                        const char *label_value, const histogram *h, const double *bounds,
                        int n_bounds, int sum_is_ns) {
    uint64_t slots[MAX_BOUNDS + 1];
    for (int i = 0; i <= n_bounds; i++) slots[i] = atomic_load_explicit(&h->slot[i], RELAXED);
    uint64_t sum = atomic_load_explicit(&h->sum, RELAXED);
    uint64_t cum = 0;
    for (int i = 0; i <= n_bounds; i++) {
        cum += slots[i];
        char le[32];
        if (i < n_bounds) format_bound(bounds[i], le); else snprintf(le, sizeof le, "+Inf");
        ob_printf(o, "%s_bucket{", name);
        if (label_name) {
            ob_printf(o, "%s=\"", label_name);
            ob_label_value(o, label_value);
            ob_printf(o, "\",");
        }
        ob_printf(o, "le=\"%s\"} %llu\n", le, (unsigned long long)cum);
    }
    const char *open = label_name ? "{" : "";
    for (int part = 0; part < 2; part++) {
        ob_printf(o, "%s_%s%s", name, part == 0 ? "sum" : "count", open);
        if (label_name) {
            ob_printf(o, "%s=\"", label_name);
            ob_label_value(o, label_value);
            ob_printf(o, "\"}");
        }
        if (part == 1) {
            ob_printf(o, " %llu\n", (unsigned long long)cum);
        } else if (sum_is_ns) {
            ob_printf(o, " %llu.%09llu\n", (unsigned long long)(sum / 1000000000ULL),
                      (unsigned long long)(sum % 1000000000ULL));
        } else {
            ob_printf(o, " %llu\n", (unsigned long long)sum);
        }
    }
}

static uint64_t hist_count(const histogram *h, int n_bounds) {
    uint64_t c = 0;
    for (int i = 0; i <= n_bounds; i++) c += atomic_load_explicit(&h->slot[i], RELAXED);
    return c;
}

size_t metrics_render(const metrics *m, char *buf, size_t cap) {
    out_buf o = {buf, buf ? cap : 0, 0};
    if (o.cap) o.buf[0] = '\0';
    if (!m) return 0;

    ob_header(&o, "cloob_http_requests_total", "counter", "HTTP requests by route and status code.");
    for (int r = 0; r < m->n_routes; r++)
        for (int s = 0; s < STATUS_SLOTS; s++) {
            uint64_t v = atomic_load_explicit(&m->requests[r][s], RELAXED);
            if (!v) continue;
            ob_printf(&o, "cloob_http_requests_total{route=\"");
            ob_label_value(&o, m->routes[r]);
            ob_printf(&o, "\",code=\"%d\"} %llu\n", s + STATUS_MIN, (unsigned long long)v);
        }

    ob_header(&o, "cloob_http_request_duration_seconds", "histogram",
              "Time from request start to response, by route.");
    for (int r = 0; r < m->n_routes; r++) {
        if (hist_count(&m->latency[r], N_OF(k_latency_bounds)) == 0) continue;
        render_hist(&o, "cloob_http_request_duration_seconds", "route", m->routes[r],
                    &m->latency[r], k_latency_bounds, N_OF(k_latency_bounds), 1);
    }

    ob_header(&o, "cloob_http_requests_in_flight", "gauge", "Requests being processed.");
    ob_printf(&o, "cloob_http_requests_in_flight %lld\n",
              (long long)atomic_load_explicit(&m->in_flight, RELAXED));

    ob_header(&o, "cloob_queue_depth", "gauge", "Items waiting in the batcher queue.");
    for (int i = 0; i < METRICS_MODALITY_COUNT; i++)
        ob_printf(&o, "cloob_queue_depth{modality=\"%s\"} %lld\n", k_modality_names[i],
                  (long long)atomic_load_explicit(&m->queue_depth[i], RELAXED));

    ob_header(&o, "cloob_queue_wait_seconds", "histogram",
              "Time an item waited in the queue before its forward pass.");
    for (int i = 0; i < METRICS_MODALITY_COUNT; i++)
        render_hist(&o, "cloob_queue_wait_seconds", "modality", k_modality_names[i],
                    &m->queue_wait[i], k_queue_bounds, N_OF(k_queue_bounds), 1);

    ob_header(&o, "cloob_inference_seconds", "histogram", "Duration of one forward pass.");
    for (int i = 0; i < METRICS_MODALITY_COUNT; i++)
        render_hist(&o, "cloob_inference_seconds", "modality", k_modality_names[i],
                    &m->inference[i], k_latency_bounds, N_OF(k_latency_bounds), 1);

    ob_header(&o, "cloob_batch_size", "histogram", "Items per forward pass.");
    for (int i = 0; i < METRICS_MODALITY_COUNT; i++)
        render_hist(&o, "cloob_batch_size", "modality", k_modality_names[i], &m->batch_size[i],
                    k_batch_bounds, N_OF(k_batch_bounds), 0);

    ob_header(&o, "cloob_items_total", "counter", "Items embedded.");
    for (int i = 0; i < METRICS_MODALITY_COUNT; i++)
        ob_printf(&o, "cloob_items_total{modality=\"%s\"} %llu\n", k_modality_names[i],
                  (unsigned long long)atomic_load_explicit(&m->items[i], RELAXED));

    ob_header(&o, "cloob_label_cache_hits_total", "counter", "Label embedding cache hits.");
    ob_printf(&o, "cloob_label_cache_hits_total %llu\n",
              (unsigned long long)atomic_load_explicit(&m->cache_hits, RELAXED));
    ob_header(&o, "cloob_label_cache_misses_total", "counter", "Label embedding cache misses.");
    ob_printf(&o, "cloob_label_cache_misses_total %llu\n",
              (unsigned long long)atomic_load_explicit(&m->cache_misses, RELAXED));
    ob_header(&o, "cloob_label_cache_entries", "gauge", "Entries in the label embedding cache.");
    ob_printf(&o, "cloob_label_cache_entries %lld\n",
              (long long)atomic_load_explicit(&m->cache_entries, RELAXED));

    /* every reason, zero or not, so rate() works from the first scrape */
    ob_header(&o, "cloob_errors_total", "counter", "Failed requests, by reason (one per error response).");
    for (int i = 0; i < METRICS_ERR_REASON_COUNT; i++)
        ob_printf(&o, "cloob_errors_total{reason=\"%s\"} %llu\n", k_reason_names[i],
                  (unsigned long long)atomic_load_explicit(&m->errors[i], RELAXED));

    ob_header(&o, "cloob_ready", "gauge", "1 when the model is loaded and warmed up.");
    ob_printf(&o, "cloob_ready %d\n", atomic_load_explicit(&m->ready, RELAXED));

    pthread_mutex_t *lock = (pthread_mutex_t *)&m->info_lock; /* the lock is not logical state */
    pthread_mutex_lock(lock);
    if (m->has_info) {
        ob_header(&o, "cloob_model_info", "gauge", "The served model (value is always 1).");
        ob_printf(&o, "cloob_model_info{name=\"");
        ob_label_value(&o, m->info_name);
        ob_printf(&o, "\",device=\"");
        ob_label_value(&o, m->info_device);
        ob_printf(&o, "\",dtype=\"");
        ob_label_value(&o, m->info_dtype);
        ob_printf(&o, "\",sha256=\"");
        ob_label_value(&o, m->info_sha);
        ob_printf(&o, "\"} 1\n");
    }
    pthread_mutex_unlock(lock);

    ob_header(&o, "cloob_process_start_time_seconds", "gauge",
              "Start time of the process since the Unix epoch.");
    ob_printf(&o, "cloob_process_start_time_seconds %.3f\n", m->start_time);
    return o.len;
}

char *metrics_render_alloc(const metrics *m, size_t *len) {
    if (len) *len = 0;
    if (!m) return NULL;
    /* Counters may move between the sizing pass and the real one (a new route/code pair
     * appears); retry with room to spare. */
    size_t need = metrics_render(m, NULL, 0) + 4096;
    for (int attempt = 0; attempt < 4; attempt++) {
        char *buf = malloc(need);
        if (!buf) return NULL;
        size_t n = metrics_render(m, buf, need);
        if (n < need) {
            if (len) *len = n;
            return buf;
        }
        free(buf);
        need = n + 4096;
    }
    return NULL;
}
