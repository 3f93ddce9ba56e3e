/*
 * metrics.h - the fixed set of Prometheus metrics cloob-server exports on GET /metrics.
 *
 * Every label set is bounded: routes are a list fixed at metrics_create() (at most
 * METRICS_MAX_ROUTES; the server passes its routing table, with a catch-all such as "other"
 * for 404s), status codes are numbers 100..599 (anything else is recorded as 500), modalities
 * and error reasons are the enums below. So /metrics can never grow without bound; only
 * label combinations that were observed at least once are printed.
 *
 * Hot path: all updates are relaxed C11 atomic adds/stores on preallocated arrays; no locks, no
 * allocation. Histogram sums are kept as integer nanoseconds (or items), so they are atomic too.
 * Rendering reads the atomics without stopping writers: each number is exact, a scrape may see
 * an observation in a bucket but not yet in _sum (harmless for Prometheus). A histogram's _count
 * and +Inf bucket are computed from its buckets, so they always agree.
 *
 * Exported (exposition format 0.0.4, names prefixed cloob_):
 *   cloob_http_requests_total{route,code}                     counter
 *   cloob_http_request_duration_seconds{route}                histogram
 *   cloob_http_requests_in_flight                             gauge
 *   cloob_queue_depth{modality}                               gauge (items waiting)
 *   cloob_queue_wait_seconds{modality}                        histogram (per item)
 *   cloob_inference_seconds{modality}                         histogram (per forward pass)
 *   cloob_batch_size{modality}                                histogram, buckets 1..128
 *   cloob_items_total{modality}                               counter (items embedded)
 *   cloob_label_cache_hits_total / _misses_total              counters
 *   cloob_label_cache_entries                                 gauge
 *   cloob_errors_total{reason}                                counter
 *   cloob_ready                                               gauge 0/1
 *   cloob_model_info{name,device,dtype,sha256} 1              gauge (info pattern)
 *   cloob_process_start_time_seconds                          gauge
 *
 * Thread safety: create/free on the main thread (free only after every other thread stopped);
 * every other function may be called from any thread at any time. Ownership: metrics_create()
 * returns a handle the caller frees with metrics_free(); it copies the route names.
 */
#ifndef CLOOB_METRICS_H
#define CLOOB_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_ROUTES 32
#define METRICS_ROUTE_NAME_MAX 64

typedef enum metrics_modality {
    METRICS_IMAGE = 0,
    METRICS_TEXT = 1,
    METRICS_MODALITY_COUNT
} metrics_modality;

/* Why a request (or one item of it) failed. Fixed so the label set stays bounded. */
typedef enum metrics_error_reason {
    METRICS_ERR_BAD_REQUEST = 0,     /* malformed JSON / schema: 400 */
    METRICS_ERR_UNAUTHORIZED,        /* missing or wrong API key: 401 */
    METRICS_ERR_NOT_FOUND,           /* unknown route: 404 */
    METRICS_ERR_METHOD_NOT_ALLOWED,  /* 405 */
    METRICS_ERR_BODY_TOO_LARGE,      /* 413 */
    METRICS_ERR_TOO_MANY_ITEMS,      /* more items than max_*_per_request */
    METRICS_ERR_UNSUPPORTED_MEDIA,   /* 415: not JSON, or an image format we do not decode */
    METRICS_ERR_IMAGE_DECODE,        /* corrupt / truncated image: 422 */
    METRICS_ERR_IMAGE_TOO_LARGE,     /* pixel / side limit: 422 */
    METRICS_ERR_BAD_BASE64,          /* invalid base64 / data URI: 400 or 422 */
    METRICS_ERR_TEXT_TOO_LONG,       /* max_text_bytes, or truncation=reject: 422 */
    METRICS_ERR_QUEUE_FULL,          /* 429 */
    METRICS_ERR_TIMEOUT,             /* deadline passed before/while computing: 504 */
    METRICS_ERR_NOT_READY,           /* model not loaded / warming up / shutting down: 503 */
    METRICS_ERR_OUT_OF_MEMORY,       /* CLOOB_ERR_OUT_OF_MEMORY from the model: 503 */
    METRICS_ERR_MODEL,               /* forward pass failed otherwise: 500 */
    METRICS_ERR_INTERNAL,            /* anything else: 500 */
    METRICS_ERR_REASON_COUNT
} metrics_error_reason;

const char *metrics_modality_name(metrics_modality m);      /* "image" / "text" */
const char *metrics_error_reason_name(metrics_error_reason r); /* "bad_request", ... */

typedef struct metrics metrics;

/*
 * route_names: n_routes (1..METRICS_MAX_ROUTES) label values, each 1..63 bytes of
 * [A-Za-z0-9_/.:-] (e.g. "/v1/embeddings", "other"); copied. Returns NULL on bad arguments or
 * allocation failure. Main thread.
 */
metrics *metrics_create(const char *const *route_names, int n_routes);
void metrics_free(metrics *m); /* NULL is fine; main thread, after all users stopped */

/* Index of a route name given to metrics_create, or -1. Not for the hot path (strcmp loop). */
int metrics_route_index(const metrics *m, const char *name);

/*
 * One finished HTTP request: counts it by route and status and observes its latency.
 * route: an index from metrics_create's list (out of range -> ignored). A status outside
 * 100..599 is recorded as 500 (a handler producing one has a bug). seconds < 0 counts as 0.
 * Any thread.
 */
void metrics_request(metrics *m, int route, int status, double seconds);

void metrics_in_flight_add(metrics *m, int delta);    /* +1 on request start, -1 on completion */
void metrics_queue_depth_add(metrics *m, metrics_modality mod, int delta);
void metrics_queue_depth_set(metrics *m, metrics_modality mod, int64_t value);
void metrics_queue_wait(metrics *m, metrics_modality mod, double seconds); /* per item */
/* One forward pass: observes its duration and batch size and adds batch to items_total. */
void metrics_batch(metrics *m, metrics_modality mod, int batch, double seconds);
void metrics_items_add(metrics *m, metrics_modality mod, uint64_t n); /* items without a batch */
void metrics_label_cache(metrics *m, uint64_t hits, uint64_t misses);
void metrics_label_cache_entries(metrics *m, int64_t entries);
void metrics_error(metrics *m, metrics_error_reason reason);
void metrics_set_ready(metrics *m, int ready);

/* Sets the labels of cloob_model_info (copied; values truncated to 127 bytes). Any thread; the
 * only call that takes a lock (rare, never on the hot path). */
void metrics_set_model_info(metrics *m, const char *name, const char *device, const char *dtype,
                            const char *sha256);

/* Snapshot readers, for tests and /info. */
uint64_t metrics_get_requests(const metrics *m, int route, int status);
uint64_t metrics_get_errors(const metrics *m, metrics_error_reason reason);
int64_t metrics_get_in_flight(const metrics *m);

/*
 * Renders the exposition text (0.0.4: "# HELP", "# TYPE", one sample per line, label values
 * escaped). Writes at most cap bytes including a NUL into buf (cap may be 0) and returns the full
 * length without the NUL, like snprintf: if the return value >= cap, call again with a bigger
 * buffer. Any thread.
 */
size_t metrics_render(const metrics *m, char *buf, size_t cap);

/* Same, into a malloc'd NUL-terminated string the CALLER frees with free(); *len (if not NULL)
 * gets the length. NULL on allocation failure. Content-Type: text/plain; version=0.0.4. */
char *metrics_render_alloc(const metrics *m, size_t *len);

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* CLOOB_METRICS_H */
