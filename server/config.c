/*
 * config.c - settings: one table of keys drives defaults, parsing, validation, --help, the
 * README table, the sample config file and the /info JSON, so they cannot drift apart.
 *
 * Defaults are applied by feeding each key's default TEXT through the same parser as user input
 * (config_defaults), so the documented default is by construction the effective one.
 * Everything here runs on the main thread during start-up, except config_api_key_ok and
 * config_cors_origin_allowed, which only read the finished struct (any thread).
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

extern char **environ;

#define DEFAULT_CONFIG_FILE "config/cloob-server.conf"
#define MAX_FILE_BYTES (1u << 20)
#define MAX_LINE_BYTES 8192
#define MAX_KEY_NAME 64
#define ECHO_MAX 64 /* how much of a bad value is quoted back in messages */

typedef enum key_kind {
    K_STRING,     /* free text (no control characters) */
    K_PATH,       /* like K_STRING; must be non-empty if lo > 0 */
    K_HOST,
    K_DEVICE,
    K_CORS,
    K_INT,        /* int field, range [lo, hi] */
    K_I64,        /* int64_t field */
    K_BYTES,      /* uint64_t field, KiB/MiB/GiB/TiB suffixes */
    K_COUNT,      /* uint64_t field, integer or integral float notation (50e6) */
    K_U32,        /* uint32_t field */
    K_BOOL,       /* int field 0/1 */
    K_DOUBLE,     /* double field, range (lo, hi] */
    K_DTYPE,
    K_TRUNCATION,
    K_LOG_FORMAT,
    K_LOG_LEVEL,
    K_API_KEYS
} key_kind;

typedef struct key_def {
    config_key_info info; /* name, env, default, help */
    const char *section;  /* heading in --help, the table and the sample file */
    key_kind kind;
    size_t offset;        /* of the field in server_config */
    size_t size;          /* string capacity */
    long long lo, hi;     /* numeric range */
    const char *metavar;  /* for --help */
} key_def;

#define OFF(f) offsetof(server_config, f)
#define SZ(f) sizeof(((server_config *)0)->f)
#define STR(name, env, def, sec, kind, lo, meta, help) \
    {{#name, env, def, help}, sec, kind, OFF(name), SZ(name), lo, 0, meta}
#define NUM(name, env, def, sec, kind, lo, hi, meta, help) \
    {{#name, env, def, help}, sec, kind, OFF(name), 0, lo, hi, meta}

static const key_def k_keys[] = {
    /* network */
    STR(host, "CLOOB_HOST", "0.0.0.0", "Network", K_HOST, 1, "ADDR",
        "Listen address: an IPv4/IPv6 literal or a host name (\"::\" listens on all IPv6 and, "
        "usually, IPv4 addresses)."),
    NUM(port, "CLOOB_PORT", "8080", "Network", K_INT, 0, 65535, "PORT",
        "TCP port (0: any free port, for tests)."),
    NUM(http_threads, "CLOOB_HTTP_THREADS", "2", "Network", K_INT, 1, 256, "N",
        "libmicrohttpd internal epoll threads. They only parse and answer; model work runs "
        "elsewhere, so 2 is plenty."),
    NUM(connection_limit, "CLOOB_CONNECTION_LIMIT", "1024", "Network", K_INT, 1, 1000000, "N",
        "Maximum simultaneous HTTP connections; more are refused at accept."),
    NUM(connection_timeout_s, "CLOOB_CONNECTION_TIMEOUT_S", "60", "Network", K_INT, 0, 86400,
        "SECONDS", "Idle keep-alive connections are closed after this many seconds (0: never)."),
    STR(cors_origins, "CLOOB_CORS_ORIGINS", "", "Network", K_CORS, 0, "LIST",
        "CORS for browser clients: empty (no CORS headers), * (any origin), or a comma list of "
        "exact origins such as https://app.example.com."),
    /* model */
    STR(model_dir, "CLOOB_MODEL_DIR", "models/cloob", "Model", K_PATH, 1, "DIR",
        "Model directory written by tools/export_model.py (model.pt, cloob.json, spiece.model)."),
    STR(device, "CLOOB_DEVICE", "auto", "Model", K_DEVICE, 0, "DEV",
        "auto (CUDA if available, else CPU), cpu, cuda or cuda:N."),
    NUM(dtype, "CLOOB_DTYPE", "float32", "Model", K_DTYPE, 0, 0, "TYPE",
        "float32 or float16. float16 takes effect on CUDA only (CPU stays float32, with a log "
        "note)."),
    NUM(threads, "CLOOB_THREADS", "0", "Model", K_INT, 0, 1024, "N",
        "CPU threads for the forward pass (0: every core). With OpenBLAS they are OpenBLAS's and "
        "libtorch's own pool keeps 1 (measured faster); with another BLAS they are libtorch's."),
    NUM(workers, "CLOOB_WORKERS", "0", "Model", K_INT, 0, 1024, "N",
        "Pre-processing threads: base64 + image decode/resize and tokenization (0: number of "
        "CPUs)."),
    NUM(warmup, "CLOOB_WARMUP", "true", "Model", K_BOOL, 0, 1, "BOOL",
        "Run a forward pass at every batch shape before reporting ready, so first requests are "
        "not slow."),
    NUM(selftest, "CLOOB_SELFTEST", "true", "Model", K_BOOL, 0, 1, "BOOL",
        "Before reporting ready, embed the reference inputs stored in cloob.json by the exporter and "
        "compare token ids and features (cosine) with the stored ones; on a mismatch the server "
        "stays unready and /info says which check failed. Model directories without reference "
        "vectors skip it with a log line."),
    /* batching */
    NUM(max_batch_image, "CLOOB_MAX_BATCH_IMAGE", "32", "Batching", K_INT, 1, 1024, "N",
        "Most images in one forward pass."),
    NUM(max_batch_text, "CLOOB_MAX_BATCH_TEXT", "64", "Batching", K_INT, 1, 4096, "N",
        "Most texts in one forward pass."),
    NUM(max_queue_delay_us, "CLOOB_MAX_QUEUE_DELAY_US", "2000", "Batching", K_I64, 0, 10000000,
        "MICROSECONDS",
        "How long the batcher waits for more items before running a partial batch (0 disables "
        "cross-request batching)."),
    NUM(max_queue_items, "CLOOB_MAX_QUEUE_ITEMS", "1024", "Batching", K_INT, 1, 1000000, "N",
        "Queued items (images + texts) beyond which new requests get 429 with Retry-After."),
    NUM(request_timeout_ms, "CLOOB_REQUEST_TIMEOUT_MS", "30000", "Batching", K_INT, 0, 3600000,
        "MS", "Deadline per request for queueing + inference (0: none); late requests get 504 and "
        "their queued items are dropped."),
    NUM(shutdown_grace_ms, "CLOOB_SHUTDOWN_GRACE_MS", "10000", "Batching", K_INT, 0, 600000, "MS",
        "On SIGTERM/SIGINT: stop accepting, then give queued and running requests this long to "
        "finish."),
    /* input limits */
    NUM(max_body_bytes, "CLOOB_MAX_BODY_BYTES", "32MiB", "Limits", K_BYTES, 1024,
        4294967296LL, "BYTES", "Largest request body; larger ones get 413. Suffixes KiB, MiB, GiB."),
    NUM(max_body_bytes_total, "CLOOB_MAX_BODY_BYTES_TOTAL", "512MiB", "Limits", K_BYTES, 1024,
        1099511627776LL, "BYTES", "Request bodies held in memory at once, across all connections; "
        "a body that would go over gets 429 with Retry-After, so many large uploads together "
        "cannot exhaust memory."),
    NUM(max_image_pixels, "CLOOB_MAX_IMAGE_PIXELS", "50e6", "Limits", K_COUNT, 1, 1000000000,
        "PIXELS", "Largest image (width x height), checked from the header before decoding "
        "(decompression bombs); larger ones get 422."),
    NUM(max_image_side, "CLOOB_MAX_IMAGE_SIDE", "32768", "Limits", K_U32, 1, 1000000, "PIXELS",
        "Largest image width or height (422 beyond)."),
    NUM(max_images_per_request, "CLOOB_MAX_IMAGES_PER_REQUEST", "64", "Limits", K_INT, 1, 4096,
        "N", "Most images in one request."),
    NUM(max_texts_per_request, "CLOOB_MAX_TEXTS_PER_REQUEST", "256", "Limits", K_INT, 1, 65536,
        "N", "Most texts (or classification labels) in one request."),
    NUM(max_text_bytes, "CLOOB_MAX_TEXT_BYTES", "16384", "Limits", K_INT, 1, 1048576, "BYTES",
        "Longest text item in UTF-8 bytes (422 beyond)."),
    NUM(text_truncation, "CLOOB_TEXT_TRUNCATION", "truncate", "Limits", K_TRUNCATION, 0, 0,
        "POLICY", "Texts longer than 77 tokens: truncate (and report it in the response) or "
        "reject (422). A request may override it."),
    /* API */
    NUM(label_cache_size, "CLOOB_LABEL_CACHE_SIZE", "4096", "API", K_INT, 0, 1048576, "N",
        "Label/prompt embeddings kept in an LRU cache (0 disables it)."),
    NUM(default_scale, "CLOOB_DEFAULT_SCALE", "100", "API", K_DOUBLE, 0, 1000000, "X",
        "Logit scale for probabilities: softmax(scale * cosine), 100 as in CLIP/CLOOB zero-shot."),
    /* security */
    STR(api_keys, "CLOOB_API_KEYS", "", "Security", K_API_KEYS, 0, "KEYS",
        "Comma-separated API keys accepted as 'Authorization: Bearer KEY' (none: no "
        "authentication; health probes are always open). Prefer the environment or "
        "api_keys_file over flags, which other users can see in ps."),
    STR(api_keys_file, "CLOOB_API_KEYS_FILE", "", "Security", K_PATH, 0, "PATH",
        "File with one API key per line (# comments, blank lines ignored), added to api_keys."),
    /* logging */
    NUM(log_format, "CLOOB_LOG_FORMAT", "plain", "Logging", K_LOG_FORMAT, 0, 0, "FORMAT",
        "plain or json (one JSON object per line)."),
    NUM(log_level, "CLOOB_LOG_LEVEL", "info", "Logging", K_LOG_LEVEL, 0, 0, "LEVEL",
        "debug, info, warn, error or off."),
    NUM(access_log, "CLOOB_ACCESS_LOG", "true", "Logging", K_BOOL, 0, 1, "BOOL",
        "Write one access-log line per request to stdout."),
};
#define N_KEYS (sizeof k_keys / sizeof k_keys[0])

size_t config_key_count(void) {
    return N_KEYS;
}

const config_key_info *config_key_at(size_t i) {
    return i < N_KEYS ? &k_keys[i].info : NULL;
}

/* ---- small helpers ------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A bad value quoted back safely: at most ECHO_MAX bytes, control characters as '?'. */
static void echo_value(const char *v, char out[ECHO_MAX + 4]) {
    size_t n = 0;
    for (; v[n] && n < ECHO_MAX; n++) {
        unsigned char c = (unsigned char)v[n];
        out[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (v[n]) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static int has_control_chars(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 1;
    return 0;
}

/* Key spelling: dashes become underscores, ASCII lower-case. Returns -1 if too long. */
static int normalize_key(const char *in, size_t len, char out[MAX_KEY_NAME]) {
    if (len >= MAX_KEY_NAME) return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        out[i] = c == '-' ? '_' : (char)tolower((unsigned char)c);
    }
    out[len] = '\0';
    return 0;
}

static const key_def *find_key(const char *normalized) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(k_keys[i].info.name, normalized) == 0) return &k_keys[i];
    return NULL;
}

/* Levenshtein distance, for "did you mean" (names are < MAX_KEY_NAME). */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAX_KEY_NAME || lb >= MAX_KEY_NAME) return (size_t)-1;
    size_t prev[MAX_KEY_NAME], cur[MAX_KEY_NAME];
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof cur[0]);
    }
    return prev[lb];
}

/* " (did you mean 'x'?)" or "" */
static void suggestion(const char *normalized, char *out, size_t outlen) {
    const char *best = NULL;
    size_t best_d = 4; /* suggest only close names */
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t d = edit_distance(normalized, k_keys[i].info.name);
        if (d < best_d) {
            best_d = d;
            best = k_keys[i].info.name;
        }
    }
    if (best) snprintf(out, outlen, " (did you mean '%s'?)", best);
    else if (outlen) out[0] = '\0';
}

/* Strict decimal integer: optional sign, digits, nothing else. */
static int parse_ll(const char *s, long long *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    const char *p = (*s == '+' || *s == '-') ? s + 1 : s;
    if (!isdigit((unsigned char)*p)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/* Bytes: digits with an optional binary suffix K/KiB, M/MiB, G/GiB, T/TiB (case-insensitive).
 * "KB"/"MB" are refused as ambiguous (1000 or 1024?). Returns 0, -1 (syntax), -2 (overflow). */
static int parse_bytes(const char *s, unsigned long long *out) {
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE) return -2;
    if (errno) return -1;
    unsigned shift = 0;
    if (*end) {
        switch (tolower((unsigned char)*end)) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        case 't': shift = 40; break;
        default: return -1;
        }
        end++;
        if (strcasecmp(end, "ib") != 0 && *end != '\0') return -1;
    }
    if (shift && v > (~0ULL >> shift)) return -2;
    *out = v << shift;
    return 0;
}

/* A count: plain digits, or an integral float such as 50e6 / 5.5e7. */
static int parse_count(const char *s, unsigned long long *out) {
    long long ll;
    if (parse_ll(s, &ll) == 0) {
        if (ll < 0) return -1;
        *out = (unsigned long long)ll;
        return 0;
    }
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    double d = strtod(s, &end);
    if (errno || *end || !isfinite(d) || d < 0 || d > 9007199254740992.0 || d != floor(d))
        return -1;
    *out = (unsigned long long)d;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *const t[] = {"true", "1", "yes", "on"};
    static const char *const f[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, f[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int valid_device(const char *s) {
    if (!strcmp(s, "auto") || !strcmp(s, "cpu") || !strcmp(s, "cuda")) return 1;
    if (strncmp(s, "cuda:", 5) != 0) return 0;
    const char *d = s + 5;
    size_t n = strlen(d);
    if (n == 0 || n > 3 || strspn(d, "0123456789") != n) return 0;
    return strtol(d, NULL, 10) <= 255; /* digits checked above; at most 3 of them */
}

static int valid_host(const char *s) {
    size_t n = strlen(s);
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!isalnum((unsigned char)c) && !strchr(".:-_%", c)) return 0;
    }
    return 1;
}

/* One CORS origin: scheme://host[:port], no path, no trailing slash. */
static const char *cors_origin_problem(const char *o, size_t n) {
    const char *rest;
    if (n > 7 && strncasecmp(o, "http://", 7) == 0) rest = o + 7;
    else if (n > 8 && strncasecmp(o, "https://", 8) == 0) rest = o + 8;
    else return "each origin must start with http:// or https://";
    size_t rl = n - (size_t)(rest - o);
    if (rl == 0) return "origin without a host";
    for (size_t i = 0; i < rl; i++) {
        unsigned char c = (unsigned char)rest[i];
        if (c == '/') return "an origin has no path (and no trailing '/'), e.g. https://app.example";
        if (c <= 0x20 || c >= 0x7f || c == '*') return "invalid character in origin";
    }
    return NULL;
}

/* Normalizes "a, b" to "a,b" into out. Returns NULL or the problem. */
static const char *parse_cors(const char *v, char *out, size_t cap) {
    size_t o = 0;
    if (!strcmp(v, "*") || !*v) {
        snprintf(out, cap, "%s", v);
        return NULL;
    }
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        size_t n = (size_t)(end - start);
        if (n == 0) return "empty origin in the list";
        if (n == 1 && *start == '*') return "'*' cannot be combined with other origins";
        const char *why = cors_origin_problem(start, n);
        if (why) return why;
        if (o + n + 2 > cap) return "list too long";
        if (o) out[o++] = ',';
        memcpy(out + o, start, n);
        o += n;
        if (*p == ',') {
            p++;
            if (!*p) return "empty origin in the list";
        }
    }
    out[o] = '\0';
    return NULL;
}

/* ---- API keys ----------------------------------------------------------------------------- */

static void free_keys(server_config *cfg) {
    for (size_t i = 0; i < cfg->n_api_keys; i++) {
        /* wipe secrets before handing memory back */
        volatile char *p = cfg->api_keys[i];
        while (*p) *p++ = 0;
        free(cfg->api_keys[i]);
    }
    free(cfg->api_keys);
    cfg->api_keys = NULL;
    cfg->n_api_keys = 0;
}

static const char *key_problem(const char *k, size_t n) {
    if (n == 0) return "empty key";
    if (n > CONFIG_API_KEY_MAX) return "key longer than 256 bytes";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c <= 0x20 || c >= 0x7f || c == ',')
            return "keys are printable ASCII without spaces or commas";
    }
    return NULL;
}

/* Appends a validated key to a growing list; returns NULL or the problem. */
static const char *append_key(char ***list, size_t *n, const char *k, size_t len) {
    const char *why = key_problem(k, len);
    if (why) return why;
    if (*n >= CONFIG_API_KEYS_MAX) return "too many keys (max 1024)";
    char **grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown) return "out of memory";
    *list = grown;
    char *copy = malloc(len + 1);
    if (!copy) return "out of memory";
    memcpy(copy, k, len);
    copy[len] = '\0';
    grown[(*n)++] = copy;
    return NULL;
}

static const char *parse_api_keys(server_config *cfg, const char *v) {
    char **list = NULL;
    size_t n = 0;
    const char *why = NULL;
    const char *p = v;
    while (*p && !why) {
        while (*p == ' ' || *p == '\t') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        if (end > start) why = append_key(&list, &n, start, (size_t)(end - start));
        if (*p == ',') p++;
    }
    server_config tmp = {.api_keys = list, .n_api_keys = n};
    if (why) {
        free_keys(&tmp);
        return why;
    }
    free_keys(cfg); /* a layer's api_keys replaces lower layers' */
    cfg->api_keys = list;
    cfg->n_api_keys = n;
    return NULL;
}

/* ---- setting one key ---------------------------------------------------------------------- */

static int apply(server_config *cfg, const key_def *k, const char *value, const char *origin,
                 char *err, size_t errlen) {
    char *field = (char *)cfg + k->offset;
    const char *name = k->info.name;
    char echo[ECHO_MAX + 4];
    echo_value(value, echo);
    long long ll = 0;
    unsigned long long ull = 0;
    const char *why = NULL;

    switch (k->kind) {
    case K_STRING:
    case K_PATH:
    case K_HOST:
    case K_DEVICE:
        if (strlen(value) >= k->size) {
            why = "value too long";
        } else if (has_control_chars(value)) {
            why = "control characters are not allowed";
        } else if (k->kind == K_PATH && k->lo > 0 && !*value) {
            why = "must not be empty";
        } else if (k->kind == K_HOST && !valid_host(value)) {
            why = "expected an IP address or host name";
        } else if (k->kind == K_DEVICE && !valid_device(value)) {
            why = "expected auto, cpu, cuda or cuda:N";
        }
        if (!why) snprintf(field, k->size, "%s", value);
        break;
    case K_CORS: {
        char norm[CONFIG_CORS_MAX];
        if (strlen(value) >= k->size) why = "value too long";
        else why = parse_cors(value, norm, sizeof norm);
        if (!why) snprintf(field, k->size, "%s", norm);
        break;
    }
    case K_INT:
    case K_I64:
        if (parse_ll(value, &ll) != 0) {
            why = "expected an integer";
        } else if (ll < k->lo || ll > k->hi) {
            set_err(err, errlen, "%s: %s: %lld is out of range [%lld, %lld]", origin, name, ll,
                    k->lo, k->hi);
            return -1;
        } else if (k->kind == K_INT) {
            *(int *)field = (int)ll;
        } else {
            *(int64_t *)field = (int64_t)ll;
        }
        break;
    case K_BYTES:
    case K_COUNT:
    case K_U32: {
        int r = k->kind == K_BYTES ? parse_bytes(value, &ull) : parse_count(value, &ull);
        if (r != 0) {
            why = k->kind == K_BYTES ? (r == -2 ? "number too large"
                                                : "expected a byte count such as 1048576, "
                                                  "512KiB, 32MiB or 1GiB")
                                     : "expected a non-negative integer (50e6 notation allowed)";
        } else if (ull < (unsigned long long)k->lo || ull > (unsigned long long)k->hi) {
            set_err(err, errlen, "%s: %s: %llu is out of range [%lld, %lld]", origin, name, ull,
                    k->lo, k->hi);
            return -1;
        } else if (k->kind == K_U32) {
            *(uint32_t *)field = (uint32_t)ull;
        } else {
            *(uint64_t *)field = (uint64_t)ull;
        }
        break;
    }
    case K_BOOL: {
        int b;
        if (parse_bool(value, &b) != 0) why = "expected true/false (or 1/0, yes/no, on/off)";
        else *(int *)field = b;
        break;
    }
    case K_DOUBLE: {
        char *end;
        errno = 0;
        double d = *value ? strtod(value, &end) : NAN;
        if (!*value || errno || *end || isspace((unsigned char)*value) || !isfinite(d)) {
            why = "expected a number";
        } else if (!(d > (double)k->lo) || d > (double)k->hi) {
            set_err(err, errlen, "%s: %s: %s is out of range (%lld, %lld]", origin, name, echo,
                    k->lo, k->hi);
            return -1;
        } else {
            *(double *)field = d;
        }
        break;
    }
    case K_DTYPE:
        if (!strcmp(value, "float32") || !strcmp(value, "fp32")) cfg->dtype = CONFIG_DTYPE_FLOAT32;
        else if (!strcmp(value, "float16") || !strcmp(value, "fp16")) cfg->dtype = CONFIG_DTYPE_FLOAT16;
        else why = "expected float32 or float16";
        break;
    case K_TRUNCATION:
        if (!strcmp(value, "truncate")) cfg->text_truncation = CONFIG_TRUNCATE;
        else if (!strcmp(value, "reject")) cfg->text_truncation = CONFIG_REJECT;
        else why = "expected truncate or reject";
        break;
    case K_LOG_FORMAT:
        if (log_format_parse(value, &cfg->log_format) != 0) why = "expected plain or json";
        break;
    case K_LOG_LEVEL:
        if (log_level_parse(value, &cfg->log_level) != 0)
            why = "expected debug, info, warn, error or off";
        break;
    case K_API_KEYS:
        why = parse_api_keys(cfg, value);
        if (why) { /* never echo a secret */
            set_err(err, errlen, "%s: %s: %s", origin, name, why);
            return -1;
        }
        break;
    }
    if (why) {
        set_err(err, errlen, "%s: %s: %s (got '%s')", origin, name, why, echo);
        return -1;
    }
    return 0;
}

int config_set(server_config *cfg, const char *key, const char *value, const char *origin,
               char *err, size_t errlen) {
    if (!cfg || !key || !value) {
        set_err(err, errlen, "config_set: NULL argument");
        return -1;
    }
    if (!origin) origin = "config";
    char norm[MAX_KEY_NAME];
    const key_def *k = normalize_key(key, strlen(key), norm) == 0 ? find_key(norm) : NULL;
    if (!k) {
        char echo[ECHO_MAX + 4], hint[96] = "";
        echo_value(key, echo);
        if (normalize_key(key, strlen(key), norm) == 0) suggestion(norm, hint, sizeof hint);
        set_err(err, errlen, "%s: unknown key '%s'%s", origin, echo, hint);
        return -1;
    }
    return apply(cfg, k, value, origin, err, errlen);
}

void config_defaults(server_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    char err[256];
    for (size_t i = 0; i < N_KEYS; i++) {
        /* cannot fail: test_config checks every default parses */
        if (apply(cfg, &k_keys[i], k_keys[i].info.default_str, "default", err, sizeof err) != 0) {
            fprintf(stderr, "config: bad built-in default: %s\n", err);
            abort();
        }
    }
}

void config_free(server_config *cfg) {
    if (cfg) free_keys(cfg);
}

/* ---- config file -------------------------------------------------------------------------- */

static int is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r';
}

/* Parses one line (NUL-terminated, no '\n'); applies the setting. origin = "file:line". */
static int parse_line(server_config *cfg, char *line, const char *origin, char *err,
                      size_t errlen) {
    char *p = line;
    while (is_blank(*p)) p++;
    if (*p == '\0' || *p == '#') return 0;

    char *eq = strchr(p, '=');
    if (!eq) {
        set_err(err, errlen, "%s: expected 'key = value'", origin);
        return -1;
    }
    char *kend = eq;
    while (kend > p && is_blank(kend[-1])) kend--;
    *kend = '\0';
    if (*p == '\0') {
        set_err(err, errlen, "%s: missing key before '='", origin);
        return -1;
    }
    for (char *c = p; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-') {
            char echo[ECHO_MAX + 4];
            echo_value(p, echo);
            set_err(err, errlen, "%s: invalid key '%s'", origin, echo);
            return -1;
        }
    }

    char *v = eq + 1;
    while (is_blank(*v)) v++;
    if (*v == '"' || *v == '\'') {
        char quote = *v;
        char *close = strchr(v + 1, quote);
        if (!close) {
            set_err(err, errlen, "%s: %s: missing closing %c", origin, p, quote);
            return -1;
        }
        char *after = close + 1;
        while (is_blank(*after)) after++;
        if (*after != '\0' && *after != '#') {
            set_err(err, errlen, "%s: %s: unexpected text after the quoted value", origin, p);
            return -1;
        }
        *close = '\0';
        v++;
    } else {
        char *hash = strchr(v, '#');
        if (hash) *hash = '\0';
        char *vend = v + strlen(v);
        while (vend > v && is_blank(vend[-1])) vend--;
        *vend = '\0';
    }
    return config_set(cfg, p, v, origin, err, errlen);
}

int config_parse_text(server_config *cfg, const char *text, size_t len, const char *filename,
                      char *err, size_t errlen) {
    if (!cfg || (!text && len)) {
        set_err(err, errlen, "config: NULL argument");
        return -1;
    }
    if (!filename) filename = "config";
    size_t pos = 0;
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) pos = 3; /* UTF-8 BOM */
    char line[MAX_LINE_BYTES + 1];
    char origin[CONFIG_PATH_MAX + 32];
    for (unsigned lineno = 1; pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        snprintf(origin, sizeof origin, "%s:%u", filename, lineno);
        if (n > MAX_LINE_BYTES) {
            set_err(err, errlen, "%s: line longer than %d bytes", origin, MAX_LINE_BYTES);
            return -1;
        }
        if (memchr(text + pos, '\0', n)) {
            set_err(err, errlen, "%s: NUL byte in config file", origin);
            return -1;
        }
        memcpy(line, text + pos, n);
        line[n] = '\0';
        if (parse_line(cfg, line, origin, err, errlen) != 0) return -1;
        pos += n + (nl ? 1 : 0);
    }
    return 0;
}

/* Reads a whole file of at most MAX_FILE_BYTES; *out is malloc'd (caller frees). */
static int read_small_file(const char *path, const char *what, char **out, size_t *len, char *err,
                           size_t errlen) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s '%s': %s", what, path, strerror(errno));
        return -1;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        set_err(err, errlen, "%s '%s': out of memory", what, path);
        return -1;
    }
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err) {
        free(buf);
        set_err(err, errlen, "%s '%s': read error", what, path);
        return -1;
    }
    if (n > MAX_FILE_BYTES) {
        free(buf);
        set_err(err, errlen, "%s '%s': larger than 1 MiB", what, path);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

int config_load_file(server_config *cfg, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    if (read_small_file(path, "config file", &text, &len, err, errlen) != 0) return -1;
    int r = config_parse_text(cfg, text, len, path, err, errlen);
    free(text);
    if (r == 0) snprintf(cfg->config_file, sizeof cfg->config_file, "%s", path);
    return r;
}

int config_load_api_keys_file(server_config *cfg, const char *path, char *err, size_t errlen) {
    char *text;
    size_t len;
    if (read_small_file(path, "api_keys_file", &text, &len, err, errlen) != 0) return -1;
    size_t pos = 0, added = 0;
    int rc = 0;
    for (unsigned lineno = 1; pos < len; lineno++) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        const char *s = text + pos, *e = s + n;
        pos += n + (nl ? 1 : 0);
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
        if (s == e || *s == '#') continue;
        const char *why = append_key(&cfg->api_keys, &cfg->n_api_keys, s, (size_t)(e - s));
        if (why) {
            set_err(err, errlen, "api_keys_file %s:%u: %s", path, lineno, why);
            rc = -1;
            break;
        }
        added++;
    }
    if (rc == 0 && added == 0) {
        /* an empty key file silently turning authentication off would be a nasty surprise */
        set_err(err, errlen, "api_keys_file '%s': no keys in the file", path);
        rc = -1;
    }
    memset(text, 0, len); /* the file held secrets */
    free(text);
    return rc;
}

int config_validate(const server_config *cfg, char *err, size_t errlen) {
    if (cfg->request_timeout_ms > 0 &&
        (int64_t)cfg->request_timeout_ms * 1000 <= cfg->max_queue_delay_us) {
        set_err(err, errlen,
                "request_timeout_ms (%d ms) must be longer than max_queue_delay_us (%lld us): "
                "every request would time out while its batch fills",
                cfg->request_timeout_ms, (long long)cfg->max_queue_delay_us);
        return -1;
    }
    if (cfg->max_body_bytes_total < cfg->max_body_bytes) {
        set_err(err, errlen,
                "max_body_bytes_total (%llu) must be at least max_body_bytes (%llu): a largest "
                "allowed body could never be accepted",
                (unsigned long long)cfg->max_body_bytes_total,
                (unsigned long long)cfg->max_body_bytes);
        return -1;
    }
    int big = cfg->max_batch_image > cfg->max_batch_text ? cfg->max_batch_image
                                                         : cfg->max_batch_text;
    if (cfg->max_queue_items < big) {
        set_err(err, errlen,
                "max_queue_items (%d) must be at least the largest batch (%d): a full batch "
                "could never form",
                cfg->max_queue_items, big);
        return -1;
    }
    return 0;
}

/* ---- the whole load ----------------------------------------------------------------------- */

static const char *env_lookup(char *const envp[], const char *name) {
    char *const *e = envp ? envp : environ;
    size_t n = strlen(name);
    for (; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

typedef struct pending_flag {
    const key_def *key;
    const char *value;
    const char *arg; /* as typed, for messages */
} pending_flag;

static int is_flag(const char *a, const char *name) {
    return strcmp(a, name) == 0;
}

config_result config_load(server_config *cfg, int argc, char *const argv[], char *const envp[],
                          FILE *out, char *err, size_t errlen) {
    config_defaults(cfg);
    if (!out) out = stdout;
    const char *prog = (argc > 0 && argv && argv[0]) ? argv[0] : "cloob-server";

    /* 1. --help / --version / --print-* win over everything, even over bad flags. */
    for (int i = 1; i < argc; i++) {
        if (is_flag(argv[i], "--help") || is_flag(argv[i], "-h")) {
            config_print_help(out, prog);
            return CONFIG_EXIT;
        }
        if (is_flag(argv[i], "--version")) {
            fprintf(out, "%s\n", CONFIG_VERSION_STRING);
            return CONFIG_EXIT;
        }
        if (is_flag(argv[i], "--print-config-table")) {
            config_print_table(out);
            return CONFIG_EXIT;
        }
        if (is_flag(argv[i], "--print-config-file")) {
            config_print_file(out);
            return CONFIG_EXIT;
        }
    }

    /* 2. Check the flags' syntax and collect them; they are applied last. */
    pending_flag *flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof *flags);
    if (!flags) {
        set_err(err, errlen, "out of memory");
        return CONFIG_ERROR;
    }
    size_t n_flags = 0;
    const char *config_path = NULL, *config_origin = NULL;
    char origin[160];
    config_result result = CONFIG_ERROR;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            char echo[ECHO_MAX + 4];
            echo_value(a, echo);
            set_err(err, errlen, "unexpected argument '%s' (settings are --key value or "
                    "--key=value; see --help)", echo);
            goto done;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        char norm[MAX_KEY_NAME];
        char echo[ECHO_MAX + 4];
        echo_value(a, echo);
        if (normalize_key(name, name_len, norm) != 0) {
            set_err(err, errlen, "flag %s: unknown flag", echo);
            goto done;
        }
        if (!strcmp(norm, "config")) {
            if (eq) {
                config_path = eq + 1;
            } else if (i + 1 < argc) {
                config_path = argv[++i];
            } else {
                set_err(err, errlen, "flag --config: needs a value (a file path)");
                goto done;
            }
            config_origin = "flag --config";
            continue;
        }
        const key_def *k = find_key(norm);
        const char *value = NULL;
        if (!k && !eq && strncmp(norm, "no_", 3) == 0) { /* --no-warmup */
            k = find_key(norm + 3);
            if (k && k->kind == K_BOOL) {
                value = "false";
            } else {
                k = NULL;
            }
        }
        if (!k) {
            char hint[96];
            suggestion(norm, hint, sizeof hint);
            char shown[MAX_KEY_NAME + 1];
            snprintf(shown, sizeof shown, "%.*s", (int)name_len, name);
            set_err(err, errlen, "flag --%s: unknown flag%s", shown, hint);
            goto done;
        }
        if (!value) {
            if (eq) {
                value = eq + 1;
            } else if (k->kind == K_BOOL) {
                int b;
                value = "true"; /* --warmup alone; --warmup false also works */
                if (i + 1 < argc && parse_bool(argv[i + 1], &b) == 0) value = argv[++i];
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                set_err(err, errlen, "flag --%s: needs a value", k->info.name);
                goto done;
            }
        }
        flags[n_flags++] = (pending_flag){k, value, a};
    }

    /* 3. Config file: --config, else $CLOOB_CONFIG, else the default path if present. */
    if (!config_path) {
        config_path = env_lookup(envp, "CLOOB_CONFIG");
        if (config_path) config_origin = "env CLOOB_CONFIG";
    }
    if (config_path) {
        if (!*config_path) {
            set_err(err, errlen, "%s: empty path", config_origin);
            goto done;
        }
        if (config_load_file(cfg, config_path, err, errlen) != 0) goto done;
    } else {
        struct stat st;
        if (stat(DEFAULT_CONFIG_FILE, &st) == 0 &&
            config_load_file(cfg, DEFAULT_CONFIG_FILE, err, errlen) != 0)
            goto done;
    }

    /* 4. Environment. */
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *v = env_lookup(envp, k_keys[i].info.env);
        if (!v) continue;
        snprintf(origin, sizeof origin, "env %s", k_keys[i].info.env);
        if (apply(cfg, &k_keys[i], v, origin, err, errlen) != 0) goto done;
    }

    /* 5. Flags, in command-line order (a repeated flag: the last one wins). */
    for (size_t i = 0; i < n_flags; i++) {
        snprintf(origin, sizeof origin, "flag --%s", flags[i].key->info.name);
        if (apply(cfg, flags[i].key, flags[i].value, origin, err, errlen) != 0) goto done;
    }

    /* 6. Key file, then cross-field checks. */
    if (cfg->api_keys_file[0] &&
        config_load_api_keys_file(cfg, cfg->api_keys_file, err, errlen) != 0)
        goto done;
    if (config_validate(cfg, err, errlen) != 0) goto done;
    result = CONFIG_OK;
done:
    free(flags);
    return result;
}

/* ---- output: JSON, help, table, sample file ----------------------------------------------- */

/* The current value of a key as text (what the file would contain). */
static void value_text(const server_config *cfg, const key_def *k, char *out, size_t cap) {
    const char *field = (const char *)cfg + k->offset;
    switch (k->kind) {
    case K_STRING: case K_PATH: case K_HOST: case K_DEVICE: case K_CORS:
        snprintf(out, cap, "%s", field);
        break;
    case K_INT: case K_BOOL:
        if (k->kind == K_BOOL) snprintf(out, cap, "%s", *(const int *)field ? "true" : "false");
        else snprintf(out, cap, "%d", *(const int *)field);
        break;
    case K_I64:
        snprintf(out, cap, "%lld", (long long)*(const int64_t *)field);
        break;
    case K_BYTES: case K_COUNT:
        snprintf(out, cap, "%llu", (unsigned long long)*(const uint64_t *)field);
        break;
    case K_U32:
        snprintf(out, cap, "%u", (unsigned)*(const uint32_t *)field);
        break;
    case K_DOUBLE:
        snprintf(out, cap, "%.17g", *(const double *)field);
        break;
    case K_DTYPE:
        snprintf(out, cap, "%s", cfg->dtype == CONFIG_DTYPE_FLOAT16 ? "float16" : "float32");
        break;
    case K_TRUNCATION:
        snprintf(out, cap, "%s", cfg->text_truncation == CONFIG_REJECT ? "reject" : "truncate");
        break;
    case K_LOG_FORMAT:
        snprintf(out, cap, "%s", log_format_name(cfg->log_format));
        break;
    case K_LOG_LEVEL:
        snprintf(out, cap, "%s", log_level_name(cfg->log_level));
        break;
    case K_API_KEYS:
        if (cfg->n_api_keys) snprintf(out, cap, "<%zu redacted>", cfg->n_api_keys);
        else snprintf(out, cap, "%s", "");
        break;
    }
}

char *config_to_json(const server_config *cfg) {
    if (!cfg) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    char buf[CONFIG_PATH_MAX];
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        const char *field = (const char *)cfg + k->offset;
        cJSON *v;
        switch (k->kind) {
        case K_INT: v = cJSON_CreateNumber(*(const int *)field); break;
        case K_I64: v = cJSON_CreateNumber((double)*(const int64_t *)field); break;
        case K_BYTES: case K_COUNT: v = cJSON_CreateNumber((double)*(const uint64_t *)field); break;
        case K_U32: v = cJSON_CreateNumber(*(const uint32_t *)field); break;
        case K_DOUBLE: v = cJSON_CreateNumber(*(const double *)field); break;
        case K_BOOL: v = cJSON_CreateBool(*(const int *)field); break;
        default:
            value_text(cfg, k, buf, sizeof buf);
            v = cJSON_CreateString(buf);
            break;
        }
        if (!v || !cJSON_AddItemToObject(o, k->info.name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    cJSON_AddBoolToObject(o, "auth_enabled", cfg->n_api_keys > 0);
    cJSON_AddStringToObject(o, "config_file", cfg->config_file);
    char *printed = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!printed) return NULL;
    /* hand back plain malloc memory, whatever allocator hooks cJSON was given */
    size_t n = strlen(printed);
    char *copy = malloc(n + 1);
    if (copy) memcpy(copy, printed, n + 1);
    cJSON_free(printed);
    return copy;
}

/* Writes text wrapped at `width` columns, each line prefixed with `indent`. */
static void print_wrapped(FILE *out, const char *indent, const char *text, size_t width) {
    const char *p = text;
    while (*p) {
        size_t n = strlen(p);
        if (n > width) {
            n = width;
            while (n > 0 && p[n] != ' ') n--;
            if (n == 0) n = width;
        }
        fprintf(out, "%s%.*s\n", indent, (int)n, p);
        p += n;
        while (*p == ' ') p++;
    }
}

static const char *shown_default(const key_def *k) {
    return k->info.default_str[0] ? k->info.default_str : "(empty)";
}

void config_print_help(FILE *out, const char *prog) {
    fprintf(out,
            "Usage: %s [--config PATH] [--KEY VALUE | --KEY=VALUE]...\n\n"
            "HTTP inference service for rinna's Japanese CLOOB/CLIP models.\n\n"
            "Every setting comes from, in increasing precedence: its built-in default, the config\n"
            "file (--config PATH, else $CLOOB_CONFIG, else " DEFAULT_CONFIG_FILE " if present),\n"
            "the environment (CLOOB_<KEY>), and the command line. Flags accept dashes or\n"
            "underscores; boolean flags may omit the value (--warmup) or be negated (--no-warmup).\n\n"
            "  --help                 this text\n"
            "  --version              print the version\n"
            "  --print-config-table   the settings as a Markdown table (README)\n"
            "  --print-config-file    a config file with every setting at its default\n"
            "  --config PATH          config file  [env CLOOB_CONFIG]\n",
            prog);
    const char *section = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        if (!section || strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(out, "\n%s:\n", section);
        }
        char flag[96];
        snprintf(flag, sizeof flag, "--%s %s", k->info.name, k->metavar);
        fprintf(out, "  %-36s [env %s, default %s]\n", flag, k->info.env, shown_default(k));
        print_wrapped(out, "      ", k->info.help, 90);
    }
}

/* Markdown cell: '|' must be escaped. */
static void print_cell(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputs("\\|", out);
        else fputc(*s, out);
    }
}

void config_print_table(FILE *out) {
    fputs("| Key | Flag | Environment | Default | Meaning |\n", out);
    fputs("|---|---|---|---|---|\n", out);
    fputs("| `config` | `--config` | `CLOOB_CONFIG` | `" DEFAULT_CONFIG_FILE "` (if present) | "
          "Config file to read (`key = value` lines). |\n",
          out);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        fprintf(out, "| `%s` | `--%s` | `%s` | ", k->info.name, k->info.name, k->info.env);
        if (k->info.default_str[0]) {
            fputc('`', out);
            print_cell(out, k->info.default_str);
            fputc('`', out);
        } else {
            fputs("(empty)", out);
        }
        fputs(" | ", out);
        print_cell(out, k->info.help);
        fputs(" |\n", out);
    }
}

void config_print_file(FILE *out) {
    fputs("# cloob-server configuration: `key = value` per line, `#` starts a comment, values may be\n"
          "# \"quoted\". Every key is listed at its built-in default; uncomment to change it.\n"
          "# Precedence: defaults < this file < environment (CLOOB_<KEY>) < command-line flags.\n"
          "# Generated by `cloob-server --print-config-file`.\n",
          out);
    const char *section = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &k_keys[i];
        if (!section || strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(out, "\n# ---- %s ----\n", section);
        }
        fputc('\n', out);
        print_wrapped(out, "# ", k->info.help, 92);
        fprintf(out, "#   env %s, flag --%s\n", k->info.env, k->info.name);
        const char *d = k->info.default_str;
        fprintf(out, "# %s = %s%s%s\n", k->info.name, *d ? "" : "\"", d, *d ? "" : "\"");
    }
}

/* ---- request-time checks (any thread) ----------------------------------------------------- */

int config_auth_enabled(const server_config *cfg) {
    return cfg && cfg->n_api_keys > 0;
}

int config_api_key_ok(const server_config *cfg, const char *token, size_t len) {
    if (!cfg || cfg->n_api_keys == 0) return 1;
    if (!token) return 0;
    /* Every key is compared over the token's full length, with no early exit, so the time
     * depends only on the token length and the number of keys, not on matching prefixes. */
    int ok = 0;
    for (size_t i = 0; i < cfg->n_api_keys; i++) {
        const unsigned char *k = (const unsigned char *)cfg->api_keys[i];
        size_t kl = strlen(cfg->api_keys[i]);
        if (kl == 0) continue; /* never stored; keeps the modulo below defined */
        unsigned diff = (unsigned)(kl != len);
        for (size_t j = 0; j < len; j++) diff |= (unsigned)(k[j % kl] ^ (unsigned char)token[j]);
        ok |= (diff == 0);
    }
    return ok;
}

int config_cors_origin_allowed(const server_config *cfg, const char *origin, size_t len) {
    if (!cfg || !cfg->cors_origins[0]) return 0;
    if (!strcmp(cfg->cors_origins, "*")) return 1;
    if (!origin) return 0;
    const char *p = cfg->cors_origins;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        /* scheme and host are case-insensitive; browsers send them lower-case anyway */
        if (n == len && strncasecmp(p, origin, n) == 0) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}
