/*
 * config.h - every setting of cloob-server, and where it comes from.
 *
 * Precedence (later wins): built-in defaults < config file < environment (CLOOB_<KEY>) <
 * command-line flags (--key value / --key=value). The config file is --config PATH if given,
 * else $CLOOB_CONFIG, else config/cloob-server.conf when it exists (a missing default file is not
 * an error; a missing explicit one is).
 *
 * File format: one `key = value` per line; `#` starts a comment (outside quotes); blank lines are
 * ignored; the value may be wrapped in "double" or 'single' quotes (needed only to keep a `#` or
 * leading/trailing spaces). Keys use underscores; flags accept underscores or dashes
 * (--max-batch-image == --max_batch_image). Booleans: true/false, 1/0, yes/no, on/off.
 * Sizes (max_body_bytes) accept a K/M/G suffix (binary: 1K = 1024); pixel counts accept 50e6.
 *
 * Every invalid value, unknown key or flag is refused with a message that names the key and its
 * origin ("config/cloob-server.conf:12: port: ...", "env CLOOB_PORT: ...", "flag --port: ...").
 * Unknown CLOOB_* environment variables are ignored (tests and tools use CLOOB_SHARED etc.).
 * Secrets (api_keys) are never echoed in messages and are redacted in config_to_json.
 *
 * Thread safety: main() loads the config before starting other threads; afterwards the struct is
 * read-only and may be read from any thread (config_api_key_ok / config_cors_origin_allowed only
 * read it). Ownership: the struct owns its api_keys array; release it with config_free().
 */
#ifndef CLOOB_CONFIG_H
#define CLOOB_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define CONFIG_VERSION_STRING "cloob-server 0.1.0"

#define CONFIG_HOST_MAX 256
#define CONFIG_PATH_MAX 4096
#define CONFIG_DEVICE_MAX 32
#define CONFIG_CORS_MAX 4096
#define CONFIG_API_KEY_MAX 256  /* bytes per key */
#define CONFIG_API_KEYS_MAX 1024 /* keys in total (flag/env/file + api_keys_file) */

typedef enum config_dtype {
    CONFIG_DTYPE_FLOAT32 = 0,
    CONFIG_DTYPE_FLOAT16 = 1
} config_dtype;

/* What to do with a text longer than the model's 77 tokens (reported in the response either way). */
typedef enum config_truncation {
    CONFIG_TRUNCATE = 0, /* cut to max_seq_len and say so in the response */
    CONFIG_REJECT = 1    /* answer 422 */
} config_truncation;

typedef struct server_config {
    /* network */
    char host[CONFIG_HOST_MAX];   /* listen address, "0.0.0.0" (all IPv4), "::" or a literal IP */
    int port;                     /* 1..65535 (0 = let the kernel choose, for tests) */
    int http_threads;             /* MHD internal epoll threads (MHD_OPTION_THREAD_POOL_SIZE), >= 1 */
    int connection_limit;         /* MHD_OPTION_CONNECTION_LIMIT */
    int connection_timeout_s;     /* idle keep-alive timeout (MHD_OPTION_CONNECTION_TIMEOUT), 0 = none */
    char cors_origins[CONFIG_CORS_MAX]; /* "" (no CORS), "*", or comma list of exact origins */

    /* model */
    char model_dir[CONFIG_PATH_MAX]; /* directory with model.pt, cloob.json, spiece.model */
    char device[CONFIG_DEVICE_MAX];  /* "auto", "cpu", "cuda", "cuda:N" (validated) */
    config_dtype dtype;              /* float16 only takes effect on CUDA */
    int threads;                     /* libtorch intra-op threads, 0 = libtorch default */
    int workers;                     /* pre-processing pool threads, 0 = number of CPUs */
    int warmup;                      /* bool: run warm-up passes before reporting ready */
    int selftest;                    /* bool: check the model against cloob.json's reference vectors */

    /* batching and queueing */
    int max_batch_image;         /* images per forward pass */
    int max_batch_text;          /* texts per forward pass */
    int64_t max_queue_delay_us;  /* how long the batcher waits to fill a batch */
    int max_queue_items;         /* queued items (both modalities) before answering 429 */
    int request_timeout_ms;      /* per-request deadline, queue + inference; 0 = none */
    int shutdown_grace_ms;       /* on SIGTERM: finish queued work for at most this long */

    /* input limits */
    uint64_t max_body_bytes;         /* request body cap -> 413 */
    uint64_t max_body_bytes_total;   /* bodies held in memory across all connections -> 429 */
    uint64_t max_image_pixels;       /* width*height cap checked before decoding -> 422 */
    uint32_t max_image_side;         /* per side cap -> 422 */
    int max_images_per_request;      /* items per request -> 413/422 */
    int max_texts_per_request;
    int max_text_bytes;              /* UTF-8 bytes per text item */
    config_truncation text_truncation;

    /* API behaviour */
    int label_cache_size;  /* LRU entries for label embeddings, 0 = no cache */
    double default_scale;  /* logit scale for probabilities: softmax(scale * cos) */

    /* security: Bearer keys; none configured = no authentication */
    char **api_keys;        /* n_api_keys NUL-terminated keys, owned (config_free) */
    size_t n_api_keys;
    char api_keys_file[CONFIG_PATH_MAX]; /* one key per line, # comments; "" = none */

    /* logging */
    log_format log_format;
    log_level log_level;
    int access_log;  /* bool */

    /* where the file layer came from ("" = no file), for /info and messages */
    char config_file[CONFIG_PATH_MAX];
} server_config;

/* Fills *cfg with the built-in defaults (no file, env or flags). cfg must not hold keys yet. */
void config_defaults(server_config *cfg);

/* Frees the api_keys array and zeroes it; the other fields stay valid. NULL is fine. */
void config_free(server_config *cfg);

typedef enum config_result {
    CONFIG_OK = 0,   /* loaded: go on */
    CONFIG_EXIT = 1, /* --help / --version / --print-config-table / --print-config-file
                        printed: exit(0) */
    CONFIG_ERROR = 2 /* invalid: err holds the message; exit(2) */
} config_result;

/*
 * The whole load, main thread: defaults < file < env < flags, then api_keys_file, then
 * cross-field checks. *cfg is overwritten from config_defaults on, so it must not hold keys
 * (a fresh, config_defaults'ed or config_free'd struct). envp: NULL-terminated "NAME=value" array (NULL = the process environment;
 * tests pass their own). out: where --help/--version/--print-config-table print (stdout).
 * argv[0] is the program name. Positional arguments are refused. On error *cfg is left defined
 * (and must still be config_free'd).
 */
config_result config_load(server_config *cfg, int argc, char *const argv[], char *const envp[],
                          FILE *out, char *err, size_t errlen);

/*
 * One setting from text. key: the file spelling ("max_batch_image"; dashes also accepted).
 * origin: how to name the source in messages ("flag --port", "env CLOOB_PORT", "file.conf:3").
 * Returns 0, or -1 with "origin: key: reason" in err (unknown key, bad number, out of range,
 * bad enum value). api_keys from a layer REPLACE the keys of lower layers.
 */
int config_set(server_config *cfg, const char *key, const char *value, const char *origin,
               char *err, size_t errlen);

/*
 * Parses config file text (len bytes, need not be NUL-terminated; lines up to 8 KiB) and applies
 * each key with config_set. filename is only used in messages. Stops at the first error.
 * Returns 0 or -1.
 */
int config_parse_text(server_config *cfg, const char *text, size_t len, const char *filename,
                      char *err, size_t errlen);

/* Reads a file (at most 1 MiB) and calls config_parse_text. */
int config_load_file(server_config *cfg, const char *path, char *err, size_t errlen);

/* Appends the keys of an api_keys_file (one per line, # comments, blank lines ignored). */
int config_load_api_keys_file(server_config *cfg, const char *path, char *err, size_t errlen);

/* Cross-field checks done at the end of config_load: request_timeout_ms longer than
 * max_queue_delay_us, max_queue_items at least the largest batch. Returns 0 or -1. */
int config_validate(const server_config *cfg, char *err, size_t errlen);

/*
 * The effective configuration as a JSON object (every key, typed: numbers as numbers, bools as
 * bools), api_keys replaced by their count ("api_keys": "<3 redacted>"). Returns a malloc'd
 * NUL-terminated string the caller frees with free(), or NULL on allocation failure.
 */
char *config_to_json(const server_config *cfg);

/* --help text: every key with flag, env name, default and meaning. */
void config_print_help(FILE *out, const char *prog);
/* The Markdown table for the README: | key | flag | environment | default | meaning |. */
void config_print_table(FILE *out);
/* A config file listing every key, commented out at its default, with its meaning
 * (config/cloob-server.conf is generated by this: `cloob-server --print-config-file`). */
void config_print_file(FILE *out);

/*
 * 1 if token (len bytes, e.g. after "Bearer ") is one of the configured keys, else 0. Compares in
 * time independent of where the first difference lies. With no keys configured, returns 1.
 * Any thread.
 */
int config_api_key_ok(const server_config *cfg, const char *token, size_t len);
/* 1 if authentication is on (at least one key). */
int config_auth_enabled(const server_config *cfg);

/*
 * CORS: given the request's Origin header (len bytes), 1 if the response should carry
 * Access-Control-Allow-Origin, and which value: "*" when cors_origins is "*", else the origin
 * itself (then also send "Vary: Origin"). 0 = no CORS headers. Any thread.
 */
int config_cors_origin_allowed(const server_config *cfg, const char *origin, size_t len);

/* Metadata about the keys, used by --help, the table and tests. */
typedef struct config_key_info {
    const char *name;        /* "max_batch_image" */
    const char *env;         /* "CLOOB_MAX_BATCH_IMAGE" */
    const char *default_str; /* "32" */
    const char *help;        /* one line */
} config_key_info;
size_t config_key_count(void);
const config_key_info *config_key_at(size_t i); /* NULL past the end */

#endif /* CLOOB_CONFIG_H */
