/* test_metrics.c - exposition format, histogram arithmetic, bounded labels, concurrent updates. */
#include "metrics.h"

#include <pthread.h>
#include <stdint.h>

#include "testlib.h"

static const char *const k_routes[] = {"/v1/embeddings", "/v1/classify", "/health", "other"};
#define N_ROUTES 4

/*
 * A small validator of the text format 0.0.4: every line is "# HELP name text", "# TYPE name
 * type", or a sample "name[{l="v",...}] value" whose family has a TYPE line before it; label
 * values use only the \\ \" \n escapes; values parse as floats. Returns the number of bad lines.
 */
static int is_name_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static int validate_exposition(const char *text, int *n_samples) {
    char typed[64][96];
    int n_typed = 0, bad = 0;
    *n_samples = 0;
    const char *line = text;
    while (*line) {
        const char *nl = strchr(line, '\n');
        if (!nl) return bad + 1; /* last line must end with \n */
        size_t len = (size_t)(nl - line);
        char buf[1024];
        if (len >= sizeof buf) return bad + 1;
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = nl + 1;
        if (strncmp(buf, "# HELP ", 7) == 0) continue;
        if (strncmp(buf, "# TYPE ", 7) == 0) {
            char name[96], type[32];
            if (sscanf(buf + 7, "%95s %31s", name, type) != 2 ||
                (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram"))) {
                bad++;
                continue;
            }
            if (n_typed < 64) snprintf(typed[n_typed++], 96, "%s", name);
            continue;
        }
        /* sample */
        const char *p = buf;
        if (!is_name_char(*p, 1)) {
            bad++;
            continue;
        }
        while (is_name_char(*p, 0)) p++;
        size_t nlen = (size_t)(p - buf);
        int family_ok = 0;
        for (int i = 0; i < n_typed; i++) {
            size_t tl = strlen(typed[i]);
            if (nlen >= tl && strncmp(buf, typed[i], tl) == 0 &&
                (nlen == tl || !strncmp(buf + tl, "_bucket", nlen - tl) ||
                 !strncmp(buf + tl, "_sum", nlen - tl) || !strncmp(buf + tl, "_count", nlen - tl)))
                family_ok = 1;
        }
        if (!family_ok) {
            bad++;
            continue;
        }
        if (*p == '{') {
            p++;
            while (*p != '}') {
                if (!is_name_char(*p, 1)) goto bad_line;
                while (is_name_char(*p, 0)) p++;
                if (p[0] != '=' || p[1] != '"') goto bad_line;
                p += 2;
                while (*p != '"') {
                    if (*p == '\0' || *p == '\n') goto bad_line;
                    if (*p == '\\') {
                        if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') goto bad_line;
                        p++;
                    }
                    p++;
                }
                p++;
                if (*p == ',') p++;
                else if (*p != '}') goto bad_line;
            }
            p++;
        }
        if (*p != ' ') goto bad_line;
        p++;
        char *end;
        strtod(p, &end);
        if (end == p || *end != '\0') goto bad_line;
        (*n_samples)++;
        continue;
    bad_line:
        fprintf(stderr, "bad exposition line: %s\n", buf);
        bad++;
    }
    return bad;
}

/* Value of the sample line that starts with `prefix` + " ", or -1. */
static double sample(const char *text, const char *prefix) {
    size_t pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, prefix, pl) == 0 && p[pl] == ' ') return strtod(p + pl + 1, NULL);
    }
    return -1;
}

static void test_create_args(void) {
    const char *bad1[] = {"ok", "has space"};
    const char *bad2[] = {"quote\""};
    const char *empty[] = {""};
    CHECK(metrics_create(bad1, 2) == NULL);
    CHECK(metrics_create(bad2, 1) == NULL);
    CHECK(metrics_create(empty, 1) == NULL);
    CHECK(metrics_create(k_routes, 0) == NULL);
    CHECK(metrics_create(k_routes, METRICS_MAX_ROUTES + 1) == NULL);
    CHECK(metrics_create(NULL, 1) == NULL);
    metrics_free(NULL);
    CHECK_STR(metrics_modality_name(METRICS_TEXT), "text");
    CHECK_STR(metrics_error_reason_name(METRICS_ERR_QUEUE_FULL), "queue_full");
    CHECK_STR(metrics_error_reason_name((metrics_error_reason)99), "unknown");
    for (int i = 0; i < METRICS_ERR_REASON_COUNT; i++)
        CHECK(strcmp(metrics_error_reason_name((metrics_error_reason)i), "unknown") != 0);
}

static void test_render_values(void) {
    metrics *m = metrics_create(k_routes, N_ROUTES);
    CHECK(m != NULL);
    if (!m) return;
    CHECK_EQ_INT(metrics_route_index(m, "/health"), 2);
    CHECK_EQ_INT(metrics_route_index(m, "/nope"), -1);

    metrics_request(m, 0, 200, 0.003);
    metrics_request(m, 0, 200, 0.2);
    metrics_request(m, 0, 429, 0.0);
    metrics_request(m, 1, 1000, 1.0);  /* invalid status -> 500 */
    metrics_request(m, 1, 0, -5.0);    /* -> 500, negative duration -> 0 */
    metrics_request(m, 7, 200, 1.0);   /* unknown route ignored */
    metrics_request(m, -1, 200, 1.0);
    CHECK_EQ_INT(metrics_get_requests(m, 0, 200), 2);
    CHECK_EQ_INT(metrics_get_requests(m, 1, 500), 2);
    CHECK_EQ_INT(metrics_get_requests(m, 1, 1000), 0);

    metrics_in_flight_add(m, 3);
    metrics_in_flight_add(m, -1);
    CHECK_EQ_INT(metrics_get_in_flight(m), 2);
    metrics_queue_depth_add(m, METRICS_IMAGE, 5);
    metrics_queue_depth_add(m, METRICS_IMAGE, -2);
    metrics_queue_depth_set(m, METRICS_TEXT, 7);
    metrics_queue_depth_add(m, (metrics_modality)9, 1); /* ignored */
    metrics_queue_wait(m, METRICS_TEXT, 0.0003);
    metrics_batch(m, METRICS_IMAGE, 32, 0.5);
    metrics_batch(m, METRICS_IMAGE, 3, 0.05);
    metrics_batch(m, METRICS_IMAGE, 200, 2.0); /* above the last bucket -> +Inf only */
    metrics_items_add(m, METRICS_TEXT, 4);
    metrics_label_cache(m, 10, 3);
    metrics_label_cache_entries(m, 13);
    metrics_error(m, METRICS_ERR_QUEUE_FULL);
    metrics_error(m, METRICS_ERR_QUEUE_FULL);
    metrics_error(m, (metrics_error_reason)-1);
    CHECK_EQ_INT(metrics_get_errors(m, METRICS_ERR_QUEUE_FULL), 2);
    metrics_set_ready(m, 5);
    metrics_set_model_info(m, "rinna/japanese-cloob-vit-b-16", "cpu", "float32",
                           "we\"ird\\name\nx");

    size_t len = 0;
    char *t = metrics_render_alloc(m, &len);
    CHECK(t != NULL);
    if (!t) {
        metrics_free(m);
        return;
    }
    CHECK_EQ_INT(len, strlen(t));
    int n = 0;
    CHECK_EQ_INT(validate_exposition(t, &n), 0);
    CHECK(n > 100);

#define S(name) sample(t, name)
    CHECK_NEAR(S("cloob_http_requests_total{route=\"/v1/embeddings\",code=\"200\"}"), 2, 0);
    CHECK_NEAR(S("cloob_http_requests_total{route=\"/v1/embeddings\",code=\"429\"}"), 1, 0);
    CHECK_NEAR(S("cloob_http_requests_total{route=\"/v1/classify\",code=\"500\"}"), 2, 0);
    /* unobserved combinations are not printed */
    CHECK(strstr(t, "route=\"/health\"") == NULL);
    CHECK(strstr(t, "code=\"1000\"") == NULL);
    /* histogram: 0, 0.003, 0.2 -> cumulative buckets */
    const char *h = "cloob_http_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=";
    char key[160];
    snprintf(key, sizeof key, "%s\"0.001\"}", h);
    CHECK_NEAR(S(key), 1, 0);
    snprintf(key, sizeof key, "%s\"0.0025\"}", h);
    CHECK_NEAR(S(key), 1, 0);
    snprintf(key, sizeof key, "%s\"0.005\"}", h);
    CHECK_NEAR(S(key), 2, 0);
    snprintf(key, sizeof key, "%s\"0.25\"}", h);
    CHECK_NEAR(S(key), 3, 0);
    snprintf(key, sizeof key, "%s\"+Inf\"}", h);
    CHECK_NEAR(S(key), 3, 0);
    CHECK(strstr(t, "cloob_http_request_duration_seconds_sum{route=\"/v1/embeddings\"} 0.203000000\n"));
    CHECK_NEAR(S("cloob_http_request_duration_seconds_count{route=\"/v1/embeddings\"}"), 3, 0);
    CHECK_NEAR(S("cloob_http_requests_in_flight"), 2, 0);
    CHECK_NEAR(S("cloob_queue_depth{modality=\"image\"}"), 3, 0);
    CHECK_NEAR(S("cloob_queue_depth{modality=\"text\"}"), 7, 0);
    CHECK_NEAR(S("cloob_queue_wait_seconds_bucket{modality=\"text\",le=\"0.00025\"}"), 0, 0);
    CHECK_NEAR(S("cloob_queue_wait_seconds_bucket{modality=\"text\",le=\"0.0005\"}"), 1, 0);
    CHECK_NEAR(S("cloob_queue_wait_seconds_count{modality=\"image\"}"), 0, 0);
    CHECK_NEAR(S("cloob_batch_size_bucket{modality=\"image\",le=\"2\"}"), 0, 0);
    CHECK_NEAR(S("cloob_batch_size_bucket{modality=\"image\",le=\"4\"}"), 1, 0);
    CHECK_NEAR(S("cloob_batch_size_bucket{modality=\"image\",le=\"32\"}"), 2, 0);
    CHECK_NEAR(S("cloob_batch_size_bucket{modality=\"image\",le=\"128\"}"), 2, 0);
    CHECK_NEAR(S("cloob_batch_size_bucket{modality=\"image\",le=\"+Inf\"}"), 3, 0);
    CHECK_NEAR(S("cloob_batch_size_sum{modality=\"image\"}"), 235, 0);
    CHECK_NEAR(S("cloob_inference_seconds_sum{modality=\"image\"}"), 2.55, 1e-9);
    CHECK_NEAR(S("cloob_items_total{modality=\"image\"}"), 235, 0);
    CHECK_NEAR(S("cloob_items_total{modality=\"text\"}"), 4, 0);
    CHECK_NEAR(S("cloob_label_cache_hits_total"), 10, 0);
    CHECK_NEAR(S("cloob_label_cache_misses_total"), 3, 0);
    CHECK_NEAR(S("cloob_label_cache_entries"), 13, 0);
    CHECK_NEAR(S("cloob_errors_total{reason=\"queue_full\"}"), 2, 0);
    CHECK_NEAR(S("cloob_errors_total{reason=\"timeout\"}"), 0, 0);
    CHECK_NEAR(S("cloob_ready"), 1, 0);
    CHECK(strstr(t, "cloob_model_info{name=\"rinna/japanese-cloob-vit-b-16\",device=\"cpu\","
                    "dtype=\"float32\",sha256=\"we\\\"ird\\\\name\\nx\"} 1\n") != NULL);
    CHECK(S("cloob_process_start_time_seconds") > 1.7e9);
    /* TYPE lines */
    CHECK(strstr(t, "# TYPE cloob_http_requests_total counter\n") != NULL);
    CHECK(strstr(t, "# TYPE cloob_batch_size histogram\n") != NULL);
    CHECK(strstr(t, "# TYPE cloob_ready gauge\n") != NULL);
#undef S

    /* snprintf semantics */
    char small[100];
    size_t full = metrics_render(m, small, sizeof small);
    CHECK_EQ_INT(full, len);
    CHECK_EQ_INT(strlen(small), sizeof small - 1);
    CHECK(strncmp(small, t, sizeof small - 1) == 0);
    CHECK_EQ_INT(metrics_render(m, NULL, 0), len);
    char one[1] = {'x'};
    CHECK_EQ_INT(metrics_render(m, one, 1), len);
    CHECK(one[0] == '\0');
    free(t);
    metrics_free(m);
}

static void test_no_model_info(void) {
    const char *r[] = {"other"};
    metrics *m = metrics_create(r, 1);
    char *t = metrics_render_alloc(m, NULL);
    CHECK(t && strstr(t, "cloob_model_info") == NULL);
    CHECK(t && strstr(t, "cloob_ready 0\n") != NULL);
    int n;
    CHECK(t && validate_exposition(t, &n) == 0);
    free(t);
    metrics_free(m);
}

/* ---- concurrency: exact totals from many threads, renders in between stay well-formed ---------- */

#define THREADS 4
#define ITER 50000
static metrics *g_m;
static _Atomic int g_stop;

static void *updater(void *arg) {
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < ITER; i++) {
        metrics_in_flight_add(g_m, 1);
        metrics_request(g_m, i % N_ROUTES, 200 + (i % 3) * 100, 0.001 * (i % 7));
        metrics_batch(g_m, (metrics_modality)(i & 1), 1 + (i % 64), 0.01);
        metrics_queue_wait(g_m, METRICS_IMAGE, 0.002);
        metrics_error(g_m, (metrics_error_reason)(i % METRICS_ERR_REASON_COUNT));
        metrics_label_cache(g_m, 1, (uint64_t)id);
        metrics_in_flight_add(g_m, -1);
    }
    return NULL;
}

static void *renderer(void *arg) {
    int *bad = arg;
    while (!g_stop) {
        char *t = metrics_render_alloc(g_m, NULL);
        int n;
        if (!t || validate_exposition(t, &n) != 0) (*bad)++;
        /* _count equals the +Inf bucket in every single render */
        const char *inf = "cloob_queue_wait_seconds_bucket{modality=\"image\",le=\"+Inf\"}";
        const char *cnt = "cloob_queue_wait_seconds_count{modality=\"image\"}";
        if (t && sample(t, inf) != sample(t, cnt)) (*bad)++;
        free(t);
    }
    return NULL;
}

static void test_concurrent(void) {
    g_m = metrics_create(k_routes, N_ROUTES);
    pthread_t th[THREADS], rt;
    int render_bad = 0;
    g_stop = 0;
    pthread_create(&rt, NULL, renderer, &render_bad);
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, updater, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    g_stop = 1;
    pthread_join(rt, NULL);
    CHECK_EQ_INT(render_bad, 0);

    uint64_t total = 0;
    for (int r = 0; r < N_ROUTES; r++)
        for (int s = 200; s <= 400; s += 100) total += metrics_get_requests(g_m, r, s);
    CHECK_EQ_INT(total, (uint64_t)THREADS * ITER);
    CHECK_EQ_INT(metrics_get_in_flight(g_m), 0);
    uint64_t errs = 0;
    for (int i = 0; i < METRICS_ERR_REASON_COUNT; i++)
        errs += metrics_get_errors(g_m, (metrics_error_reason)i);
    CHECK_EQ_INT(errs, (uint64_t)THREADS * ITER);

    char *t = metrics_render_alloc(g_m, NULL);
    CHECK(t != NULL);
    if (t) {
        /* items = sum over i of 1 + i % 64, per thread */
        uint64_t items = 0;
        for (int i = 0; i < ITER; i++) items += (uint64_t)(1 + (i % 64));
        items *= THREADS;
        double img = sample(t, "cloob_items_total{modality=\"image\"}");
        double txt = sample(t, "cloob_items_total{modality=\"text\"}");
        CHECK_NEAR(img + txt, (double)items, 0);
        CHECK_NEAR(sample(t, "cloob_batch_size_sum{modality=\"image\"}") +
                       sample(t, "cloob_batch_size_sum{modality=\"text\"}"),
                   (double)items, 0);
        CHECK_NEAR(sample(t, "cloob_queue_wait_seconds_count{modality=\"image\"}"),
                   (double)THREADS * ITER, 0);
        /* 0.002 s each, summed in integer nanoseconds: exact */
        CHECK_NEAR(sample(t, "cloob_queue_wait_seconds_sum{modality=\"image\"}"),
                   0.002 * THREADS * ITER, 1e-6);
        CHECK_NEAR(sample(t, "cloob_label_cache_hits_total"), (double)THREADS * ITER, 0);
        CHECK_NEAR(sample(t, "cloob_label_cache_misses_total"), (double)(0 + 1 + 2 + 3) * ITER, 0);
        free(t);
    }
    metrics_free(g_m);
}

int main(void) {
    test_create_args();
    test_render_values();
    test_no_model_info();
    test_concurrent();
    TEST_MAIN_END();
}
