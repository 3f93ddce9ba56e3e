/*
 * cloob-server: flags + config -> wiring, signals, ordered shutdown. No request logic here.
 *
 * Start-up: the HTTP daemon starts at once (so /healthz answers immediately); the batcher's
 * inference thread loads the model and warms it up in the background, and /readyz turns 200
 * when it is done.
 *
 * Shutdown (SIGTERM or SIGINT, received by sigwait() in this thread: every other thread is
 * created with both signals blocked):
 *   1. stop accepting connections (MHD_quiesce_daemon), /readyz 503, new requests on open
 *      connections 503 shutting_down;
 *   2. let the batcher finish every job already admitted, for at most shutdown_grace_ms;
 *   3. stop the workers and the batcher (anything still queued is answered 503); every
 *      suspended connection has been resumed by then;
 *   4. wait (within the same grace period, plus a short margin for the last bytes) for the
 *      responses to go out, stop the daemon, free everything, exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batcher.h"
#include "cloob.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "openapi_embed.h"
#include "workers.h"


/* Settings that exist only for tests; taken out of argv before config_load sees it. */
typedef struct debug_flags {
    int warmup_delay_ms;      /* --debug-warmup-delay-ms: /readyz stays 503 this much longer */
    int infer_delay_ms;       /* --debug-infer-delay-ms: every forward pass sleeps first */
} debug_flags;

static int parse_nonneg(const char *s, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 3600000) return -1;
    *out = (int)v;
    return 0;
}

/* Removes the debug flags from argv (compacting it); -1 with a message on a bad value. */
static int take_debug_flags(int *argc, char **argv, debug_flags *d, char *err, size_t errlen) {
    static const struct {
        const char *name;
        size_t off;
    } flags[] = {{"--debug-warmup-delay-ms", offsetof(debug_flags, warmup_delay_ms)},
                 {"--debug-infer-delay-ms", offsetof(debug_flags, infer_delay_ms)}};
    int w = 1;
    for (int i = 1; i < *argc; i++) {
        int matched = 0;
        for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
            size_t n = strlen(flags[f].name);
            const char *val = NULL;
            if (strcmp(argv[i], flags[f].name) == 0) {
                if (i + 1 >= *argc) {
                    snprintf(err, errlen, "flag %s: missing value", flags[f].name);
                    return -1;
                }
                val = argv[++i];
            } else if (strncmp(argv[i], flags[f].name, n) == 0 && argv[i][n] == '=') {
                val = argv[i] + n + 1;
            } else {
                continue;
            }
            int *slot = (int *)(void *)((char *)d + flags[f].off);
            if (parse_nonneg(val, slot)) {
                snprintf(err, errlen, "flag %s: '%s' is not a number of milliseconds (0..3600000)",
                         flags[f].name, val);
                return -1;
            }
            matched = 1;
            break;
        }
        if (!matched) argv[w++] = argv[i];
    }
    *argc = w;
    argv[w] = NULL;
    return 0;
}

static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

int main(int argc, char **argv) {
    /* Block the shutdown signals before any thread exists: every thread inherits the mask and
     * only sigwait() below receives them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char err[1024] = "";
    debug_flags dbg = {0, 0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            config_print_help(stdout, argv[0]);
            fputs("\nTest-only flags (not for production):\n"
                  "  --debug-warmup-delay-ms N   keep /readyz at 503 for N ms after warm-up\n"
                  "  --debug-infer-delay-ms N    sleep N ms before every forward pass (a busy model)\n",
                  stdout);
            return 0;
        }
    }
    if (take_debug_flags(&argc, argv, &dbg, err, sizeof err)) {
        fprintf(stderr, "cloob-server: %s\n", err);
        return 2;
    }
    server_config cfg;
    config_defaults(&cfg);
    config_result cr = config_load(&cfg, argc, argv, NULL, stdout, err, sizeof err);
    if (cr == CONFIG_EXIT) {
        config_free(&cfg);
        return 0;
    }
    if (cr != CONFIG_OK) {
        fprintf(stderr, "cloob-server: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    log_init(cfg.log_format, cfg.log_level, cfg.access_log ? STDOUT_FILENO : -1, STDERR_FILENO);
    int64_t t_start = batch_now_ns();

    metrics *m = metrics_create(http_route_names, HTTP_ROUTE_COUNT);
    if (!m) {
        log_error("cannot create the metrics registry");
        return 1;
    }
    char runtime[2048] = "";
    if (cloob_runtime_describe(runtime, sizeof runtime) != CLOOB_OK) runtime[0] = '\0';

    batcher_config bc;
    memset(&bc, 0, sizeof bc);
    bc.model_dir = cfg.model_dir;
    bc.model_params = cloob_model_default_params();
    bc.model_params.device = cfg.device;
    bc.model_params.half = cfg.dtype == CONFIG_DTYPE_FLOAT16;
    bc.model_params.num_threads = cfg.threads;
    bc.warmup = cfg.warmup;
    bc.selftest = cfg.selftest;
    bc.warmup_delay_ms = dbg.warmup_delay_ms;
    bc.debug_infer_delay_ms = dbg.infer_delay_ms;
    bc.max_batch[BATCH_IMAGE] = cfg.max_batch_image;
    bc.max_batch[BATCH_TEXT] = cfg.max_batch_text;
    bc.max_queue_delay_us = cfg.max_queue_delay_us;
    bc.max_queue_items = cfg.max_queue_items;
    bc.label_cache_size = cfg.label_cache_size;
    bc.metrics = m;
    batcher *b = batcher_create(&bc);
    workers_config wc;
    memset(&wc, 0, sizeof wc);
    wc.threads = cfg.workers > 0 ? cfg.workers : cpu_count();
    wc.image_limits.max_pixels = cfg.max_image_pixels;
    wc.image_limits.max_side = cfg.max_image_side;
    wc.max_image_bytes = cfg.max_body_bytes;
    workers *w = b ? workers_create(&wc, b) : NULL;
    if (!b || !w) {
        log_error("cannot start the batcher or the worker pool");
        return 1;
    }
    if (batcher_start(b)) {
        log_error("cannot start the inference thread");
        return 1;
    }

    http_deps hd;
    memset(&hd, 0, sizeof hd);
    hd.cfg = &cfg;
    hd.b = b;
    hd.w = w;
    hd.m = m;
    hd.openapi = cloob_openapi_yaml;
    hd.openapi_len = cloob_openapi_yaml_len();
    hd.runtime_json = runtime[0] ? runtime : NULL;
    hd.start_time_ns = t_start;
    http_server *http = http_start(&hd, err, sizeof err);
    if (!http) {
        log_error("%s", err);
        /* The model may be half-loaded in its thread; nothing to drain, so just leave. */
        _exit(1);
    }
    log_info("listening on http://%s:%d (model %s, %d http threads, %d workers, batch image %d / text %d, "
             "delay %lld us)",
             cfg.host, http_port(http), cfg.model_dir, cfg.http_threads, wc.threads, cfg.max_batch_image,
             cfg.max_batch_text, (long long)cfg.max_queue_delay_us);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    log_info("received %s: draining (grace %d ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_grace_ms);
    int64_t deadline = batch_now_ns() + (int64_t)cfg.shutdown_grace_ms * 1000000LL;
    batcher_state st_before = batcher_get_state(b);
    http_begin_drain(http);
    batcher_drain(b);
    if (batcher_wait_idle(b, deadline) != 0) {
        log_warn("grace period over with %d requests unfinished: answering them 503", batcher_jobs_in_flight(b));
    }
    if (st_before == BATCHER_LOADING) {
        /* libtorch cannot be interrupted while loading; nothing was ever queued, so there is
         * nothing to finish. Answer what is on the wire and leave without joining it. */
        http_wait_idle(http, deadline + 500000000LL);
        http_stop(http);
        log_info("stopped while the model was still loading");
        _exit(0);
    }
    workers_stop(w);
    batcher_stop(b);
    /* Every job is finished, so every suspended connection was resumed; give their responses
     * a moment to leave before the daemon closes the sockets. */
    if (http_wait_idle(http, deadline + 1000000000LL) != 0) {
        log_warn("%d requests still in flight at exit", http_requests_in_flight(http));
    }
    http_stop(http);
    workers_free(w);
    batcher_free(b);
    metrics_free(m);
    config_free(&cfg);
    log_info("stopped");
    return 0;
}
