/*
 * http.h - the libmicrohttpd daemon: routing, body limits, auth, CORS, request ids, the
 * suspend/resume dance with the batcher, Server-Timing, access log and request metrics.
 *
 * Threads: MHD runs http_threads internal epoll threads; every handler runs on one of them and
 * never blocks on the model (POST endpoints suspend their connection and the batcher's done
 * callback resumes it). Lifecycle functions are for the main thread.
 */
#ifndef CLOOB_HTTP_H
#define CLOOB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "batcher.h"
#include "config.h"
#include "handlers.h"
#include "lru.h"
#include "metrics.h"

/* The routes, in the order given to metrics_create (HTTP_ROUTE_OTHER last, for 404s). */
typedef enum http_route {
    HTTP_ROUTE_EMBED_IMAGE = 0,
    HTTP_ROUTE_EMBED_TEXT,
    HTTP_ROUTE_CLASSIFY,
    HTTP_ROUTE_OPENAI_EMBEDDINGS,
    HTTP_ROUTE_HEALTHZ,
    HTTP_ROUTE_READYZ,
    HTTP_ROUTE_METRICS,
    HTTP_ROUTE_INFO,
    HTTP_ROUTE_OPENAPI,
    HTTP_ROUTE_OTHER,
    HTTP_ROUTE_COUNT
} http_route;

/* Route label names for metrics_create, HTTP_ROUTE_COUNT entries. */
extern const char *const http_route_names[HTTP_ROUTE_COUNT];

typedef struct http_deps {
    const server_config *cfg;
    batcher *b;
    workers *w;
    metrics *m;
    const char *openapi;      /* openapi.yaml text (may be NULL: 404) */
    size_t openapi_len;
    const char *runtime_json; /* cloob_runtime_describe() output for /info */
    int64_t start_time_ns;    /* monotonic, for uptime */
} http_deps;

typedef struct http_server http_server;

/* Main thread: starts the daemon. NULL with err on failure (e.g. the port is taken). */
http_server *http_start(const http_deps *deps, char *err, size_t errlen);
/* The port actually bound (useful with port 0). */
int http_port(const http_server *s);
/* Main thread, on SIGTERM: stop accepting connections (MHD_quiesce_daemon); requests that still
 * arrive on open connections are answered 503 shutting_down with Connection: close. */
void http_begin_drain(http_server *s);
/* Requests between their first byte and their completion notification. */
int http_requests_in_flight(http_server *s);
/* Main thread: waits until no request is in flight or deadline_ns (monotonic) passes. */
int http_wait_idle(http_server *s, int64_t deadline_ns);
/* Main thread: stops the daemon (every suspended connection must have been resumed: the batcher
 * and workers finish every job before this is called) and frees it. */
void http_stop(http_server *s);

#endif /* CLOOB_HTTP_H */
