/*
 * log.h - access log and error/info log, plain text or one JSON object per line.
 *
 * Every line is formatted into a stack buffer first and handed to the kernel with ONE write(),
 * so lines from concurrent threads never interleave (a write() of at most PIPE_BUF = 4096 bytes
 * to a pipe is atomic; lines are capped at LOG_LINE_MAX, long fields are truncated with "...").
 * Control characters in user-supplied fields (path, user agent) are escaped in both formats, so
 * a request cannot forge log lines.
 *
 * Thread safety: log_init() is called once by main() before any other thread starts; after that
 * every function here may be called from any thread (the configuration is read-only, the
 * request-id generator uses an atomic counter). No function allocates.
 */
#ifndef CLOOB_LOG_H
#define CLOOB_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Named LOG_LEVEL_* because <syslog.h> already defines LOG_INFO / LOG_DEBUG as macros. */
typedef enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_OFF = 4 /* as a minimum level: log nothing (access log unaffected) */
} log_level;

typedef enum log_format {
    LOG_FORMAT_PLAIN = 0,
    LOG_FORMAT_JSON = 1
} log_format;

#define LOG_LINE_MAX 4096     /* == PIPE_BUF on Linux: the longest line written atomically */
#define LOG_REQUEST_ID_LEN 16 /* hex digits; buffers need LOG_REQUEST_ID_LEN + 1 */

/* "debug", "info", "warn", "error", "off"; never NULL. */
const char *log_level_name(log_level l);
/* Parses those names (case-insensitive; "warning" is accepted too). Returns 0 or -1. */
int log_level_parse(const char *s, log_level *out);
const char *log_format_name(log_format f); /* "plain" / "json" */
int log_format_parse(const char *s, log_format *out);

/*
 * Main thread, once, before other threads exist. access_fd receives the access log (e.g.
 * STDOUT_FILENO, or -1 to disable it), error_fd the leveled log (e.g. STDERR_FILENO, -1 = off).
 * Defaults before log_init(): plain, info, access -> stdout, log -> stderr.
 */
void log_init(log_format fmt, log_level min_level, int access_fd, int error_fd);

/* 1 if a message at this level would be written (to skip expensive formatting). Any thread. */
int log_enabled(log_level level);

/*
 * Leveled message, any thread. request_id may be NULL. fmt is printf-style; the formatted text
 * is escaped (JSON string rules in JSON mode, control characters as \xNN in plain mode).
 *   plain: 2026-11-27T20:04:25.123Z INFO [reqid] message
 *   json:  {"ts":"2026-11-27T20:04:25.123Z","level":"info","request_id":"...","msg":"..."}
 */
void log_msg(log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(log_level level, const char *request_id, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)

/* One access-log record. Strings may be NULL (written as "-" / null). Borrowed, not kept. */
typedef struct log_access_entry {
    const char *method;      /* "POST" */
    const char *path;        /* URL path as received (escaped on output, truncated to 1 KiB) */
    int status;              /* HTTP status code */
    uint64_t bytes;          /* response body bytes */
    double duration_ms;      /* from first byte of the request to the response being queued */
    const char *request_id;  /* log_new_request_id() or the client's X-Request-Id */
    const char *remote_addr; /* "203.0.113.5" / "[2001:db8::1]" */
    const char *user_agent;  /* optional */
} log_access_entry;

/*
 * Writes one access-log line, any thread.
 *   plain: 2026-11-27T20:04:25.123Z 203.0.113.5 "POST /v1/embeddings" 200 1234 5.210ms id=0123abcd... "curl/8.0"
 *   json:  {"ts":"...","remote":"...","method":"POST","path":"/v1/embeddings","status":200,
 *           "bytes":1234,"duration_ms":5.210,"request_id":"...","user_agent":"..."}
 */
void log_access(const log_access_entry *e);

/*
 * The formatters behind log_msg / log_access, exposed for tests: they write one full line
 * (with the trailing '\n' and a NUL) into buf and return its length without the NUL (always
 * < cap; cap must be >= 64). now_ms: Unix time in milliseconds (tests pass a fixed value).
 */
size_t log_format_access(const log_access_entry *e, log_format fmt, int64_t now_ms, char *buf,
                         size_t cap);
size_t log_format_msg(log_level level, const char *request_id, const char *msg, log_format fmt,
                      int64_t now_ms, char *buf, size_t cap);

/*
 * JSON string escaping of len bytes of s (quotes not added): ", \, control characters
 * (\n \r \t \b \f, others \u00XX), and DEL; bytes >= 0x80 are copied as they are when they form
 * valid UTF-8, otherwise replaced by \ufffd, so the output is always valid JSON. Writes at most
 * cap-1 bytes plus a NUL, never cutting an escape in half; returns the bytes written (without
 * NUL). cap == 0 writes nothing.
 */
size_t log_json_escape(const char *s, size_t len, char *out, size_t cap);

/*
 * A new request id: 16 lowercase hex digits + NUL into out (LOG_REQUEST_ID_LEN + 1 bytes).
 * Unique within the process (a 64-bit counter through a keyed bijective mix, the key from
 * getrandom() at first use), unpredictable enough not to leak request counts. Any thread.
 */
void log_new_request_id(char out[LOG_REQUEST_ID_LEN + 1]);

#endif /* CLOOB_LOG_H */
