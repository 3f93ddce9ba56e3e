/*
 * log.c - line-atomic access and error logs (see log.h for the guarantees).
 *
 * Each line is built in a LOG_LINE_MAX stack buffer by a small bounded writer; every field that
 * comes from a client has its own output budget so the fixed parts of the line (closing quotes
 * and braces, the newline) always fit and JSON lines stay valid even when a field is truncated.
 */
#include "log.h"
#include "utf8.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Set once by log_init() before other threads exist, read-only afterwards. */
static log_format g_format = LOG_FORMAT_PLAIN;
static log_level g_min_level = LOG_LEVEL_INFO;
static int g_access_fd = STDOUT_FILENO;
static int g_error_fd = STDERR_FILENO;

/* Output budgets (escaped bytes) for the variable fields of one line. Their sum plus the fixed
 * syntax stays well under LOG_LINE_MAX, so only these fields are ever truncated. */
#define BUDGET_PATH 1024
#define BUDGET_METHOD 32
#define BUDGET_REMOTE 96
#define BUDGET_REQID 72
#define BUDGET_UA 512
#define BUDGET_MSG 3072
#define ELLIPSIS "..."

static const char *const k_level_names[] = {"debug", "info", "warn", "error", "off"};
static const char *const k_level_upper[] = {"DEBUG", "INFO", "WARN", "ERROR", "OFF"};

const char *log_level_name(log_level l) {
    return (l >= LOG_LEVEL_DEBUG && l <= LOG_LEVEL_OFF) ? k_level_names[l] : "unknown";
}

int log_level_parse(const char *s, log_level *out) {
    if (!s || !out) return -1;
    for (int i = 0; i <= LOG_LEVEL_OFF; i++) {
        if (strcasecmp(s, k_level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return -1;
}

const char *log_format_name(log_format f) {
    return f == LOG_FORMAT_JSON ? "json" : "plain";
}

int log_format_parse(const char *s, log_format *out) {
    if (!s || !out) return -1;
    if (strcasecmp(s, "plain") == 0) {
        *out = LOG_FORMAT_PLAIN;
    } else if (strcasecmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
    } else {
        return -1;
    }
    return 0;
}

/* Main thread, before other threads start. */
void log_init(log_format fmt, log_level min_level, int access_fd, int error_fd) {
    g_format = fmt;
    g_min_level = min_level;
    g_access_fd = access_fd;
    g_error_fd = error_fd;
}

int log_enabled(log_level level) {
    return g_error_fd >= 0 && level >= g_min_level && level < LOG_LEVEL_OFF;
}

/* ---- bounded line writer ------------------------------------------------------------------ */

typedef struct line_writer {
    char *buf;
    size_t limit; /* bytes usable for content; the caller's cap minus the reserved tail */
    size_t len;
} line_writer;

static void lw_raw(line_writer *w, const char *s, size_t n) {
    size_t room = w->limit - w->len;
    if (n > room) n = room;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void lw_str(line_writer *w, const char *s) {
    lw_raw(w, s, strlen(s));
}

static void lw_printf(line_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lw_printf(line_writer *w, const char *fmt, ...) {
    size_t room = w->limit - w->len;
    if (room == 0) return;
    va_list ap;
    va_start(ap, fmt);
    /* room + 1: the NUL may land in the reserved tail, which finish_line overwrites. */
    int n = vsnprintf(w->buf + w->len, room + 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    w->len += (size_t)n < room ? (size_t)n : room;
}

/*
 * The escaper behind both formats. json=1: JSON string rules; json=0 (plain): control bytes and
 * DEL as \xNN, '"' and '\' backslashed, other bytes as they are. Writes whole escapes only, at
 * most cap-1 bytes, NUL-terminates if cap > 0; *consumed gets the input bytes represented.
 */
static size_t escape_impl(const char *s, size_t len, char *out, size_t cap, int json,
                          size_t *consumed) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    if (cap == 0) {
        if (consumed) *consumed = 0;
        return 0;
    }
    while (i < len) {
        char tmp[8];
        size_t tn = 0, step = 1;
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tn = 2;
        } else if (c < 0x20 || c == 0x7f) {
            if (json) {
                const char *short_esc = NULL;
                switch (c) {
                case '\n': short_esc = "\\n"; break;
                case '\r': short_esc = "\\r"; break;
                case '\t': short_esc = "\\t"; break;
                case '\b': short_esc = "\\b"; break;
                case '\f': short_esc = "\\f"; break;
                default: break;
                }
                if (short_esc) {
                    memcpy(tmp, short_esc, 2);
                    tn = 2;
                } else {
                    memcpy(tmp, "\\u00", 4);
                    tmp[4] = hex[c >> 4];
                    tmp[5] = hex[c & 15];
                    tn = 6;
                }
            } else {
                tmp[0] = '\\';
                tmp[1] = 'x';
                tmp[2] = hex[c >> 4];
                tmp[3] = hex[c & 15];
                tn = 4;
            }
        } else if (c >= 0x80 && json) {
            size_t n = utf8_seq_len(p + i, len - i);
            if (n == 0) {
                memcpy(tmp, "\\ufffd", 6);
                tn = 6;
            } else {
                memcpy(tmp, p + i, n);
                tn = n;
                step = n;
            }
        } else {
            tmp[0] = (char)c;
            tn = 1;
        }
        if (o + tn > cap - 1) break;
        memcpy(out + o, tmp, tn);
        o += tn;
        i += step;
    }
    out[o] = '\0';
    if (consumed) *consumed = i;
    return o;
}

size_t log_json_escape(const char *s, size_t len, char *out, size_t cap) {
    if (!s) len = 0;
    return escape_impl(s ? s : "", len, out, cap, 1, NULL);
}

/* Appends the escaped field within `budget` bytes; if it does not fit, ends it with "...". */
static void lw_escaped(line_writer *w, const char *s, size_t budget, int json) {
    size_t room = w->limit - w->len;
    if (budget > room) budget = room;
    if (budget <= sizeof ELLIPSIS) return;
    size_t len = strlen(s), consumed = 0;
    /* cap for escape_impl includes its NUL; leave room for the ellipsis. */
    size_t n = escape_impl(s, len, w->buf + w->len, budget - sizeof ELLIPSIS + 2, json, &consumed);
    w->len += n;
    if (consumed < len) lw_raw(w, ELLIPSIS, sizeof ELLIPSIS - 1);
}

/* A JSON string value: "escaped" (or null for NULL). */
static void lw_json_string(line_writer *w, const char *s, size_t budget) {
    if (!s) {
        lw_str(w, "null");
        return;
    }
    lw_raw(w, "\"", 1);
    lw_escaped(w, s, budget, 1);
    lw_raw(w, "\"", 1);
}

static void format_timestamp(int64_t now_ms, char out[64]) {
    time_t secs = (time_t)(now_ms / 1000);
    int ms = (int)(now_ms % 1000);
    if (ms < 0) { /* before 1970: keep the arithmetic consistent */
        ms += 1000;
        secs -= 1;
    }
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        snprintf(out, 64, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static int64_t now_unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reserve 3 bytes: "}" (JSON), "\n", NUL. */
#define TAIL_RESERVE 3

static size_t finish_line(line_writer *w, int json) {
    /* limit excluded the reserve, so these always fit */
    if (json) w->buf[w->len++] = '}';
    w->buf[w->len++] = '\n';
    w->buf[w->len] = '\0';
    return w->len;
}

size_t log_format_access(const log_access_entry *e, log_format fmt, int64_t now_ms, char *buf,
                         size_t cap) {
    if (!buf || cap < 64) return 0;
    line_writer w = {buf, cap - TAIL_RESERVE, 0};
    char ts[64];
    format_timestamp(now_ms, ts);
    double ms = (e && isfinite(e->duration_ms) && e->duration_ms > 0) ? e->duration_ms : 0.0;
    static const log_access_entry empty = {0};
    if (!e) e = &empty;

    if (fmt == LOG_FORMAT_JSON) {
        lw_str(&w, "{\"ts\":\"");
        lw_str(&w, ts);
        lw_str(&w, "\",\"remote\":");
        lw_json_string(&w, e->remote_addr, BUDGET_REMOTE);
        lw_str(&w, ",\"method\":");
        lw_json_string(&w, e->method, BUDGET_METHOD);
        lw_str(&w, ",\"path\":");
        lw_json_string(&w, e->path, BUDGET_PATH);
        lw_printf(&w, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"request_id\":",
                  e->status, (unsigned long long)e->bytes, ms);
        lw_json_string(&w, e->request_id, BUDGET_REQID);
        lw_str(&w, ",\"user_agent\":");
        lw_json_string(&w, e->user_agent, BUDGET_UA);
        return finish_line(&w, 1);
    }

    lw_str(&w, ts);
    lw_raw(&w, " ", 1);
    lw_escaped(&w, e->remote_addr ? e->remote_addr : "-", BUDGET_REMOTE, 0);
    lw_raw(&w, " \"", 2);
    lw_escaped(&w, e->method ? e->method : "-", BUDGET_METHOD, 0);
    lw_raw(&w, " ", 1);
    lw_escaped(&w, e->path ? e->path : "-", BUDGET_PATH, 0);
    lw_printf(&w, "\" %d %llu %.3fms id=", e->status, (unsigned long long)e->bytes, ms);
    lw_escaped(&w, e->request_id ? e->request_id : "-", BUDGET_REQID, 0);
    lw_raw(&w, " \"", 2);
    lw_escaped(&w, e->user_agent ? e->user_agent : "-", BUDGET_UA, 0);
    lw_raw(&w, "\"", 1);
    return finish_line(&w, 0);
}

size_t log_format_msg(log_level level, const char *request_id, const char *msg, log_format fmt,
                      int64_t now_ms, char *buf, size_t cap) {
    if (!buf || cap < 64) return 0;
    line_writer w = {buf, cap - TAIL_RESERVE, 0};
    char ts[64];
    format_timestamp(now_ms, ts);
    if (!msg) msg = "";
    if (fmt == LOG_FORMAT_JSON) {
        lw_str(&w, "{\"ts\":\"");
        lw_str(&w, ts);
        lw_str(&w, "\",\"level\":\"");
        lw_str(&w, log_level_name(level));
        lw_raw(&w, "\"", 1);
        if (request_id) {
            lw_str(&w, ",\"request_id\":");
            lw_json_string(&w, request_id, BUDGET_REQID);
        }
        lw_str(&w, ",\"msg\":");
        lw_json_string(&w, msg, BUDGET_MSG);
        return finish_line(&w, 1);
    }
    lw_str(&w, ts);
    lw_raw(&w, " ", 1);
    lw_str(&w, (level >= LOG_LEVEL_DEBUG && level <= LOG_LEVEL_OFF) ? k_level_upper[level] : "?");
    lw_raw(&w, " ", 1);
    if (request_id) {
        lw_raw(&w, "[", 1);
        lw_escaped(&w, request_id, BUDGET_REQID, 0);
        lw_raw(&w, "] ", 2);
    }
    /* Plain messages: escape control characters but not quotes (they are not delimiters here). */
    size_t room = w.limit - w.len;
    size_t budget = room < BUDGET_MSG ? room : BUDGET_MSG;
    if (budget > sizeof ELLIPSIS) {
        size_t len = strlen(msg), consumed = 0, n = 0;
        const unsigned char *p = (const unsigned char *)msg;
        while (consumed < len) {
            unsigned char c = p[consumed];
            size_t need = (c < 0x20 || c == 0x7f) ? 4 : 1;
            if (n + need > budget - sizeof ELLIPSIS) break;
            if (need == 4) {
                static const char hex[] = "0123456789abcdef";
                char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
                memcpy(w.buf + w.len + n, esc, 4);
            } else {
                w.buf[w.len + n] = (char)c;
            }
            n += need;
            consumed++;
        }
        w.len += n;
        if (consumed < len) lw_raw(&w, ELLIPSIS, sizeof ELLIPSIS - 1);
    }
    return finish_line(&w, 0);
}

/* One write() per line; retries only on EINTR or a partial write (never split otherwise). */
static void write_line(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* nowhere to report a failing log; drop the line */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_vmsg(log_level level, const char *request_id, const char *fmt, va_list ap) {
    if (!log_enabled(level) || !fmt) return;
    char msg[BUDGET_MSG + 1];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0) return;
    char line[LOG_LINE_MAX];
    size_t len = log_format_msg(level, request_id, msg, g_format, now_unix_ms(), line, sizeof line);
    write_line(g_error_fd, line, len);
}

void log_msg(log_level level, const char *request_id, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, request_id, fmt, ap);
    va_end(ap);
}

void log_access(const log_access_entry *e) {
    if (g_access_fd < 0 || !e) return;
    char line[LOG_LINE_MAX];
    size_t len = log_format_access(e, g_format, now_unix_ms(), line, sizeof line);
    write_line(g_access_fd, line, len);
}

/* ---- request ids -------------------------------------------------------------------------- */

static pthread_once_t g_id_once = PTHREAD_ONCE_INIT;
static uint64_t g_id_key[2];
static _Atomic uint64_t g_id_counter;

/* splitmix64's finalizer: a bijection on 64-bit values. */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static void id_key_init(void) {
    uint64_t key[2] = {0, 0};
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != (ssize_t)sizeof key) {
        /* No entropy yet (early boot): ids stay unique, only less unpredictable. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        key[0] = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid());
        key[1] = mix64(key[0] ^ (uint64_t)(uintptr_t)&ts);
    }
    g_id_key[0] = key[0];
    g_id_key[1] = key[1];
}

void log_new_request_id(char out[LOG_REQUEST_ID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    pthread_once(&g_id_once, id_key_init);
    uint64_t n = atomic_fetch_add_explicit(&g_id_counter, 1, memory_order_relaxed);
    /* mix64 is a bijection and so are + and ^ with constants: distinct n -> distinct ids. */
    uint64_t id = mix64(mix64(n + g_id_key[0]) ^ g_id_key[1]);
    for (int i = LOG_REQUEST_ID_LEN - 1; i >= 0; i--) {
        out[i] = hex[id & 15];
        id >>= 4;
    }
    out[LOG_REQUEST_ID_LEN] = '\0';
}
