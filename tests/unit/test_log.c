/* test_log.c - line formats, escaping, truncation, one-write-per-line under threads, request ids. */
#include "log.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <unistd.h>

#include "testlib.h"

/* 2026-11-27T20:04:25.123Z */
static const int64_t T0 = 1795809865123LL;

static cJSON *parse_line(const char *line, size_t len) {
    CHECK(len > 0 && line[len - 1] == '\n');
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, 0);
    CHECK_MSG(j != NULL, "invalid JSON: %s", line);
    return j;
}

static const char *jstr(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_levels_and_formats(void) {
    log_level l;
    CHECK(log_level_parse("INFO", &l) == 0 && l == LOG_LEVEL_INFO);
    CHECK(log_level_parse("warning", &l) == 0 && l == LOG_LEVEL_WARN);
    CHECK(log_level_parse("off", &l) == 0 && l == LOG_LEVEL_OFF);
    CHECK(log_level_parse("verbose", &l) == -1);
    CHECK(log_level_parse(NULL, &l) == -1);
    CHECK_STR(log_level_name(LOG_LEVEL_ERROR), "error");
    CHECK_STR(log_level_name((log_level)42), "unknown");
    log_format f;
    CHECK(log_format_parse("JSON", &f) == 0 && f == LOG_FORMAT_JSON);
    CHECK(log_format_parse("plain", &f) == 0 && f == LOG_FORMAT_PLAIN);
    CHECK(log_format_parse("logfmt", &f) == -1);
    CHECK_STR(log_format_name(LOG_FORMAT_JSON), "json");
}

static void test_access_plain(void) {
    char buf[LOG_LINE_MAX];
    log_access_entry e = {.method = "POST", .path = "/v1/embeddings", .status = 200, .bytes = 1234,
                          .duration_ms = 5.21, .request_id = "0123456789abcdef",
                          .remote_addr = "203.0.113.5", .user_agent = "curl/8.0"};
    size_t n = log_format_access(&e, LOG_FORMAT_PLAIN, T0, buf, sizeof buf);
    CHECK_EQ_INT(n, strlen(buf));
    CHECK_STR(buf, "2026-11-27T20:04:25.123Z 203.0.113.5 \"POST /v1/embeddings\" 200 1234 5.210ms "
                   "id=0123456789abcdef \"curl/8.0\"\n");
    /* a forged newline and quote in the path cannot start a new line or close the quote */
    e.path = "/x\n2026-01-01T00:00:00.000Z 1.2.3.4 \"GET /admin\" 200";
    e.user_agent = NULL;
    e.duration_ms = -3; /* clamped */
    n = log_format_access(&e, LOG_FORMAT_PLAIN, T0, buf, sizeof buf);
    CHECK(strchr(buf, '\n') == buf + n - 1);
    CHECK(strstr(buf, "/x\\x0a2026") != NULL);
    CHECK(strstr(buf, "\\\"GET /admin\\\"") != NULL);
    CHECK(strstr(buf, " 0.000ms ") != NULL);
    CHECK(strstr(buf, "\"-\"\n") != NULL);
}

static void test_access_json(void) {
    char buf[LOG_LINE_MAX];
    log_access_entry e = {.method = "GET", .path = "/q?\"a\"\\\t\x01\xff\xe3\x81\x82", .status = 404,
                          .bytes = 0, .duration_ms = 0.5, .request_id = "abc",
                          .remote_addr = "[2001:db8::1]", .user_agent = NULL};
    size_t n = log_format_access(&e, LOG_FORMAT_JSON, T0, buf, sizeof buf);
    cJSON *j = parse_line(buf, n);
    if (j) {
        CHECK_STR(jstr(j, "ts"), "2026-11-27T20:04:25.123Z");
        CHECK_STR(jstr(j, "method"), "GET");
        /* \xff is invalid UTF-8 -> U+FFFD; the valid "あ" is kept */
        CHECK_STR(jstr(j, "path"), "/q?\"a\"\\\t\x01\xef\xbf\xbd\xe3\x81\x82");
        CHECK_STR(jstr(j, "remote"), "[2001:db8::1]");
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "status")->valueint, 404);
        CHECK_NEAR(cJSON_GetObjectItem(j, "duration_ms")->valuedouble, 0.5, 1e-9);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "user_agent")));
        cJSON_Delete(j);
    }
    /* NaN duration must not produce invalid JSON */
    e.duration_ms = NAN;
    n = log_format_access(&e, LOG_FORMAT_JSON, T0, buf, sizeof buf);
    j = parse_line(buf, n);
    cJSON_Delete(j);
}

static void test_truncation(void) {
    /* 20 KB of control bytes in the path (each becomes a 6-byte escape) and a 10 KB user agent */
    static char path[20000], ua[10000];
    memset(path, 0x01, sizeof path - 1);
    memset(ua, 'u', sizeof ua - 1);
    char buf[LOG_LINE_MAX];
    log_access_entry e = {.method = "POST", .path = path, .status = 200, .request_id = "r",
                          .remote_addr = "1.2.3.4", .user_agent = ua};
    for (int fmt = 0; fmt < 2; fmt++) {
        size_t n = log_format_access(&e, (log_format)fmt, T0, buf, sizeof buf);
        CHECK(n < LOG_LINE_MAX);
        CHECK_EQ_INT(n, strlen(buf));
        CHECK(strchr(buf, '\n') == buf + n - 1);
        CHECK(strstr(buf, "...") != NULL);
        CHECK(strstr(buf, "200") != NULL); /* fields after the path survive */
        if (fmt == LOG_FORMAT_JSON) {
            cJSON *j = parse_line(buf, n);
            if (j) {
                const char *p = jstr(j, "path");
                CHECK(p && strlen(p) > 100 && strcmp(p + strlen(p) - 3, "...") == 0);
                CHECK_EQ_INT(cJSON_GetObjectItem(j, "status")->valueint, 200);
                cJSON_Delete(j);
            }
        }
    }
    /* messages */
    static char msg[8000];
    memset(msg, '"', sizeof msg - 1);
    for (int fmt = 0; fmt < 2; fmt++) {
        size_t n = log_format_msg(LOG_LEVEL_ERROR, "id1", msg, (log_format)fmt, T0, buf, sizeof buf);
        CHECK(n < LOG_LINE_MAX && buf[n - 1] == '\n');
        if (fmt == LOG_FORMAT_JSON) {
            cJSON *j = parse_line(buf, n);
            if (j) {
                CHECK_STR(jstr(j, "level"), "error");
                CHECK_STR(jstr(j, "request_id"), "id1");
                cJSON_Delete(j);
            }
        }
    }
    /* a small caller buffer still gets a complete, terminated line */
    char small[64];
    size_t n = log_format_access(&e, LOG_FORMAT_PLAIN, T0, small, sizeof small);
    CHECK(n < sizeof small && small[n - 1] == '\n' && small[n] == '\0');
    n = log_format_access(&e, LOG_FORMAT_JSON, T0, small, sizeof small);
    CHECK(n < sizeof small && small[n - 1] == '\n' && small[n - 2] == '}');
    CHECK_EQ_INT(log_format_access(&e, LOG_FORMAT_PLAIN, T0, small, 10), 0);
}

static void test_msg_formats(void) {
    char buf[LOG_LINE_MAX];
    size_t n = log_format_msg(LOG_LEVEL_WARN, NULL, "queue \"image\" at 90%\n", LOG_FORMAT_PLAIN, T0,
                              buf, sizeof buf);
    CHECK_STR(buf, "2026-11-27T20:04:25.123Z WARN queue \"image\" at 90%\\x0a\n");
    CHECK_EQ_INT(n, strlen(buf));
    n = log_format_msg(LOG_LEVEL_INFO, "0123456789abcdef", "ready", LOG_FORMAT_PLAIN, T0, buf,
                       sizeof buf);
    CHECK_STR(buf, "2026-11-27T20:04:25.123Z INFO [0123456789abcdef] ready\n");
    n = log_format_msg(LOG_LEVEL_INFO, NULL, "model \"x\" loaded", LOG_FORMAT_JSON, T0, buf,
                       sizeof buf);
    CHECK_STR(buf, "{\"ts\":\"2026-11-27T20:04:25.123Z\",\"level\":\"info\","
                   "\"msg\":\"model \\\"x\\\" loaded\"}\n");
    /* timestamps before 1970 and at a second boundary */
    log_format_msg(LOG_LEVEL_INFO, NULL, "x", LOG_FORMAT_PLAIN, -1, buf, sizeof buf);
    CHECK(strncmp(buf, "1969-12-31T23:59:59.999Z", 24) == 0);
    log_format_msg(LOG_LEVEL_INFO, NULL, "x", LOG_FORMAT_PLAIN, 0, buf, sizeof buf);
    CHECK(strncmp(buf, "1970-01-01T00:00:00.000Z", 24) == 0);
}

static void test_json_escape(void) {
    char out[64];
    CHECK_EQ_INT(log_json_escape("a\"b\\c\n\x1f\x7f", 8, out, sizeof out), 21);
    CHECK_STR(out, "a\\\"b\\\\c\\n\\u001f\\u007f");
    /* never cuts an escape: with room for 3 bytes, "\n" (2) fits after "a", "\u0001" does not */
    CHECK_EQ_INT(log_json_escape("a\n\x01", 3, out, 4), 3);
    CHECK_STR(out, "a\\n");
    CHECK_EQ_INT(log_json_escape("ab\x01", 3, out, 6), 2);
    CHECK_STR(out, "ab");
    /* UTF-8: valid kept, truncated / overlong / surrogate replaced */
    log_json_escape("\xe3\x81", 2, out, sizeof out);
    CHECK_STR(out, "\\ufffd\\ufffd");
    log_json_escape("\xc0\xaf", 2, out, sizeof out);
    CHECK_STR(out, "\\ufffd\\ufffd");
    log_json_escape("\xed\xa0\x80", 3, out, sizeof out);
    CHECK_STR(out, "\\ufffd\\ufffd\\ufffd");
    log_json_escape("\xf0\x9f\x98\x80", 4, out, sizeof out);
    CHECK_STR(out, "\xf0\x9f\x98\x80");
    /* a multi-byte character is not split either */
    CHECK_EQ_INT(log_json_escape("a\xe3\x81\x82", 4, out, 4), 1);
    CHECK_EQ_INT(log_json_escape("abc", 3, out, 0), 0);
    CHECK_EQ_INT(log_json_escape(NULL, 3, out, sizeof out), 0);
    /* embedded NUL is escaped, not a terminator */
    CHECK_EQ_INT(log_json_escape("a\0b", 3, out, sizeof out), 8);
    CHECK_STR(out, "a\\u0000b");
}

/* ---- concurrency: lines written by several threads into one pipe stay whole ---------------- */

#define WRITERS 4
#define LINES_PER_WRITER 1500

typedef struct {
    int fd;
    char *data;
    size_t len, cap;
} pipe_reader;

static void *reader_main(void *arg) {
    pipe_reader *r = arg;
    for (;;) {
        if (r->cap - r->len < 65536) {
            size_t ncap = r->cap ? r->cap * 2 : (1u << 20);
            char *p = realloc(r->data, ncap);
            if (!p) break;
            r->data = p;
            r->cap = ncap;
        }
        ssize_t n = read(r->fd, r->data + r->len, r->cap - r->len);
        if (n <= 0) break;
        r->len += (size_t)n;
    }
    return NULL;
}

static void *writer_main(void *arg) {
    int id = (int)(intptr_t)arg;
    char path[3000];
    for (int i = 0; i < LINES_PER_WRITER; i++) {
        /* long lines (up to ~3 KB) make interleaving likely if lines were split into writes */
        size_t plen = 100 + (size_t)((i * 37 + id * 101) % 2800);
        memset(path, 'a' + id, plen);
        path[0] = '/';
        path[plen] = '\0';
        char rid[LOG_REQUEST_ID_LEN + 1];
        log_new_request_id(rid);
        log_access_entry e = {.method = "POST", .path = path, .status = 200 + id,
                              .bytes = (uint64_t)i, .duration_ms = 1.0, .request_id = rid,
                              .remote_addr = "127.0.0.1"};
        log_access(&e);
        if (i % 10 == 0) log_msg(LOG_LEVEL_INFO, rid, "writer %d line %d", id, i);
        if (i % 10 == 1) log_debug("filtered out by level");
    }
    return NULL;
}

static void test_concurrent_lines(void) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pipe_reader r = {fds[0], NULL, 0, 0};
    pthread_t rt, wt[WRITERS];
    pthread_create(&rt, NULL, reader_main, &r);
    log_init(LOG_FORMAT_JSON, LOG_LEVEL_INFO, fds[1], fds[1]);
    CHECK(log_enabled(LOG_LEVEL_INFO));
    CHECK(!log_enabled(LOG_LEVEL_DEBUG));
    for (int i = 0; i < WRITERS; i++) pthread_create(&wt[i], NULL, writer_main, (void *)(intptr_t)i);
    for (int i = 0; i < WRITERS; i++) pthread_join(wt[i], NULL);
    log_init(LOG_FORMAT_PLAIN, LOG_LEVEL_INFO, -1, -1);
    close(fds[1]);
    pthread_join(rt, NULL);
    close(fds[0]);

    int lines = 0, access = 0, msgs = 0, bad = 0;
    size_t start = 0;
    for (size_t i = 0; i < r.len; i++) {
        if (r.data[i] != '\n') continue;
        cJSON *j = cJSON_ParseWithLength(r.data + start, i - start);
        if (!j) {
            bad++;
        } else {
            const char *path = jstr(j, "path");
            if (path) {
                /* a whole line: every path byte after '/' is the writer's letter (long paths
                 * end in "...") */
                const cJSON *st = cJSON_GetObjectItem(j, "status");
                int id = cJSON_IsNumber(st) ? st->valueint - 200 : -1000;
                size_t plen = strlen(path);
                if (plen > 3 && strcmp(path + plen - 3, "...") == 0) plen -= 3;
                for (const char *p = path + 1; p < path + plen; p++)
                    if (*p != 'a' + id) {
                        bad++;
                        break;
                    }
                access++;
            } else if (jstr(j, "msg")) {
                msgs++;
            }
            cJSON_Delete(j);
        }
        lines++;
        start = i + 1;
    }
    CHECK_EQ_INT(start, r.len);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(access, WRITERS * LINES_PER_WRITER);
    CHECK_EQ_INT(msgs, WRITERS * (LINES_PER_WRITER / 10));
    CHECK_EQ_INT(lines, access + msgs);
    free(r.data);
}

/* ---- request ids ---------------------------------------------------------------------------- */

#define ID_THREADS 4
#define IDS_PER_THREAD 20000
static uint64_t g_ids[ID_THREADS * IDS_PER_THREAD];

static void *id_main(void *arg) {
    int t = (int)(intptr_t)arg;
    char s[LOG_REQUEST_ID_LEN + 1];
    for (int i = 0; i < IDS_PER_THREAD; i++) {
        log_new_request_id(s);
        g_ids[t * IDS_PER_THREAD + i] = strtoull(s, NULL, 16);
    }
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_request_ids(void) {
    char a[LOG_REQUEST_ID_LEN + 1], b[LOG_REQUEST_ID_LEN + 1];
    log_new_request_id(a);
    log_new_request_id(b);
    CHECK_EQ_INT(strlen(a), LOG_REQUEST_ID_LEN);
    CHECK(strspn(a, "0123456789abcdef") == LOG_REQUEST_ID_LEN);
    CHECK(strcmp(a, b) != 0);
    pthread_t th[ID_THREADS];
    for (int i = 0; i < ID_THREADS; i++) pthread_create(&th[i], NULL, id_main, (void *)(intptr_t)i);
    for (int i = 0; i < ID_THREADS; i++) pthread_join(th[i], NULL);
    qsort(g_ids, ID_THREADS * IDS_PER_THREAD, sizeof g_ids[0], cmp_u64);
    int dups = 0;
    for (int i = 1; i < ID_THREADS * IDS_PER_THREAD; i++) dups += g_ids[i] == g_ids[i - 1];
    CHECK_EQ_INT(dups, 0);
    /* not a plain counter: consecutive ids differ in many bits */
    uint64_t x = strtoull(a, NULL, 16) ^ strtoull(b, NULL, 16);
    CHECK(__builtin_popcountll(x) > 8);
}

int main(void) {
    test_levels_and_formats();
    test_access_plain();
    test_access_json();
    test_truncation();
    test_msg_formats();
    test_json_escape();
    test_concurrent_lines();
    test_request_ids();
    TEST_MAIN_END();
}
