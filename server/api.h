/*
 * api.h - the HTTP API's data: JSON request bodies -> native structs (with validation), native
 * results -> JSON response bodies, the error table (error kind -> HTTP status + type string) and
 * the scoring arithmetic of /classify.
 *
 * Nothing here touches the network, the model or a queue: every function is pure (apart from
 * malloc) and thread safe, which is why the unit tests and the fuzz target can drive it directly.
 *
 * Ownership: api_parse_* fill a caller-provided api_request that owns the parsed cJSON tree and
 * the input arrays; the api_input pointers borrow from that tree (or from the caller's body for
 * a raw image), so the request must outlive every item built from it. Free with
 * api_request_free(). Response writers append to a caller-owned jbuf.
 */
#ifndef CLOOB_API_H
#define CLOOB_API_H

#include <stddef.h>
#include <stdint.h>

/* ---- errors ----------------------------------------------------------------------------- */

/* Every way a request can fail. The table in api.c maps each to one HTTP status and a stable
 * "type" string that clients may switch on; the message says what exactly was wrong. */
typedef enum api_err {
    API_OK = 0,
    API_ERR_BAD_JSON,          /* 400 invalid_json: not JSON, trailing garbage, not an object */
    API_ERR_BAD_FIELD,         /* 400 invalid_request: missing/wrong-typed/out-of-range field */
    API_ERR_BAD_BASE64,        /* 400 invalid_base64: an image string is not base64 / data URI */
    API_ERR_UNAUTHORIZED,      /* 401 unauthorized (WWW-Authenticate: Bearer) */
    API_ERR_NOT_FOUND,         /* 404 not_found */
    API_ERR_METHOD,            /* 405 method_not_allowed (Allow: ...) */
    API_ERR_BODY_TOO_LARGE,    /* 413 payload_too_large */
    API_ERR_MEDIA_TYPE,        /* 415 unsupported_media_type: Content-Type we do not take */
    API_ERR_IMAGE_FORMAT,      /* 415 unsupported_image_format: WebP, text, ... */
    API_ERR_IMAGE_DECODE,      /* 422 invalid_image: corrupt or truncated */
    API_ERR_IMAGE_TOO_LARGE,   /* 422 image_too_large: pixel / side limit from the header */
    API_ERR_TOO_MANY_ITEMS,    /* 422 too_many_items */
    API_ERR_TEXT_TOO_LONG,     /* 422 text_too_long: bytes cap, or tokens with truncate=false */
    API_ERR_QUEUE_FULL,        /* 429 queue_full (Retry-After) */
    API_ERR_NOT_READY,         /* 503 not_ready: model loading / warming up */
    API_ERR_DRAINING,          /* 503 shutting_down */
    API_ERR_OUT_OF_MEMORY,     /* 503 out_of_memory: the model ran out of memory for a batch */
    API_ERR_DEADLINE,          /* 504 deadline_exceeded */
    API_ERR_INTERNAL,          /* 500 internal_error */
    API_ERR_COUNT
} api_err;

#define API_MESSAGE_MAX 256

typedef struct api_error {
    api_err code;
    char message[API_MESSAGE_MAX];
} api_error;

int api_err_status(api_err e);         /* HTTP status, e.g. 400 */
const char *api_err_type(api_err e);   /* "invalid_request", ...; never NULL */
/* Sets e->code and formats the message (truncated to fit). Returns -1 for `return api_fail(..)`. */
int api_fail(api_error *e, api_err code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- growable, capped output buffer ----------------------------------------------------- */

/* A byte buffer that grows geometrically up to max bytes; past that every append fails and
 * `overflow` sticks, so a writer can append freely and check once at the end. */
typedef struct jbuf {
    char *p;        /* malloc'd, NUL-terminated after every append; owned, free with jbuf_free */
    size_t len;
    size_t cap;
    size_t max;     /* hard cap on len (bytes) */
    int overflow;   /* 1 after an append failed (too large or out of memory) */
} jbuf;

void jbuf_init(jbuf *b, size_t max);
void jbuf_free(jbuf *b);
/* Hands the bytes to the caller (free() them); the jbuf is reset to empty. */
char *jbuf_take(jbuf *b, size_t *len);
int jbuf_append(jbuf *b, const char *s, size_t n);
int jbuf_puts(jbuf *b, const char *s);
int jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal with quotes; invalid UTF-8 becomes U+FFFD so the output stays JSON. */
int jbuf_json_string(jbuf *b, const char *s, size_t n);
/* A float32 printed with %.9g (always round-trips a float32); non-finite -> null. */
int jbuf_float(jbuf *b, float v);

/* ---- requests ----------------------------------------------------------------------------- */

typedef enum api_encoding { API_ENCODING_FLOAT = 0, API_ENCODING_BASE64 = 1 } api_encoding;

/* One input: an image (base64 text, the data: prefix already stripped; or raw bytes) or a text.
 * Borrowed from the api_request's tree or from the request body. */
typedef struct api_input {
    const char *data;
    size_t len;
} api_input;

typedef struct api_limits {
    int max_images;      /* items per request (images) */
    int max_texts;       /* items per request (texts) */
    int max_text_bytes;  /* UTF-8 bytes per text (labels and templates included) */
    int max_labels;      /* /classify labels */
    int max_templates;   /* /classify templates */
    int default_truncate;    /* 1: truncate texts by default (config text_truncation) */
    double default_scale;    /* /classify default scale */
} api_limits;

typedef struct api_request {
    int normalize;              /* 1 (default): L2-normalize the returned embeddings */
    api_encoding encoding;      /* float (default) or base64 */
    int truncate;               /* texts: 1 = cut at the token limit and report; 0 = 422 */
    int raw_images;             /* 1: inputs are raw image bytes (a binary body), not base64 */

    int n_images;
    api_input *images;          /* n_images entries, malloc'd */
    int n_texts;
    api_input *texts;           /* n_texts entries, malloc'd */

    /* /classify */
    int n_labels;
    api_input *labels;
    int n_templates;
    api_input *templates;       /* each contains "{}" exactly once; default: one "{}" */
    int top_k;                  /* 1..n_labels; default n_labels */
    double scale;               /* softmax(scale * cos); default api_limits.default_scale */

    /* /v1/embeddings (OpenAI-compatible) */
    int openai;                 /* 1: write the OpenAI response shape */
    int dimensions;             /* requested dimensions (0 = not given); must equal the model's */
    const char *model_name;     /* the request's "model" (borrowed), NULL if absent */

    void *json_root;            /* the cJSON tree the inputs point into (owned) */
} api_request;

/*
 * Parse bodies. body need not be NUL-terminated. On success return 0 and *out owns its data;
 * on failure return -1 with err set and *out cleared (nothing to free, but api_request_free is
 * harmless). Any thread.
 *   POST /embed/image  {"images":[str..]} | {"image":str}, normalize, encoding_format
 *   POST /embed/text   {"texts":[str..]}  | {"text":str},  normalize, encoding_format, truncate
 *   POST /classify     {"images"|"image", "labels":[str..], "templates":[str..], "top_k", "scale"}
 */
int api_parse_embed_image(const char *body, size_t len, const api_limits *lim, api_request *out,
                          api_error *err);
int api_parse_embed_text(const char *body, size_t len, const api_limits *lim, api_request *out,
                         api_error *err);
int api_parse_classify(const char *body, size_t len, const api_limits *lim, api_request *out,
                       api_error *err);
/*
 * POST /v1/embeddings, OpenAI-compatible: {"input": str | [str..], "model": str?,
 * "encoding_format": "float"|"base64", "dimensions": int?, "user": str?, "modality": "text"|"image"}.
 * modality (an extension, as in infinity) picks whether the inputs are texts or images (base64 /
 * data: URIs); default text. Token-id arrays are refused (400). Embeddings are always normalized.
 */
int api_parse_openai(const char *body, size_t len, const api_limits *lim, api_request *out, api_error *err);
/* A raw image body (Content-Type image/...): one input borrowing body; options from the query
 * string (normalize, encoding_format), passed as NULL when absent. */
int api_raw_image_request(const char *body, size_t len, const char *normalize_q,
                          const char *encoding_q, api_request *out, api_error *err);
void api_request_free(api_request *r);

/* Content-Type classification for POST bodies. */
typedef enum api_content_kind {
    API_CONTENT_JSON = 0,   /* application/json (or absent: curl -d sends form type, see api.c) */
    API_CONTENT_IMAGE = 1,  /* image/..., application/octet-stream */
    API_CONTENT_OTHER = 2
} api_content_kind;
api_content_kind api_content_type_kind(const char *content_type);

/* Splits "data:image/png;base64,XXXX" into its base64 payload; plain base64 passes through.
 * Returns 0, or -1 (err: API_ERR_BAD_BASE64) for a data: URI that is not ;base64. */
int api_strip_data_uri(const char *s, size_t len, api_input *out, api_error *err);

/* Applies a template ("{}の写真") to a label: writes the text into out (cap bytes incl. NUL).
 * Returns the length, or -1 if it does not fit. */
int api_apply_template(const api_input *tmpl, const api_input *label, char *out, size_t cap);

/* ---- responses ---------------------------------------------------------------------------- */

/* Everything a response needs to say where its numbers came from. */
typedef struct api_model_desc {
    const char *name;
    const char *sha256;
    const char *dtype;
    int dim;
} api_model_desc;

/* Per-text token accounting for /embed/text. */
typedef struct api_text_stats {
    int tokens;     /* ids fed to the model, [CLS] included */
    int truncated;  /* 1 if tokens were dropped */
} api_text_stats;

/*
 * {"object":"list","model":..,"model_sha256":..,"dimension":D,"normalized":b,
 *  "encoding_format":"float"|"base64","data":[{"index":i,"embedding":[..] | "b64",
 *  ("tokens":n,"truncated":b)}..]}
 * emb: n x dim float32, already normalized when normalized != 0. text_stats may be NULL (images).
 */
int api_write_embeddings(jbuf *b, const api_model_desc *m, const float *emb, int n, int normalized,
                         api_encoding enc, const api_text_stats *text_stats);

/* {"object":"list","data":[{"object":"embedding","index":i,"embedding":..}..],"model":..,
 *  "usage":{"prompt_tokens":n,"total_tokens":n}}  tokens: per input (texts) or NULL (images). */
int api_write_openai(jbuf *b, const api_model_desc *m, const char *model_name, const float *emb, int n,
                     api_encoding enc, const api_text_stats *text_stats);

/* One /classify result row. */
typedef struct api_label_score {
    int label;           /* index into the request's labels */
    double probability;
    double similarity;   /* cosine */
} api_label_score;

/* {"model":..,"scale":s,"templates":[..],"results":[{"index":i,"predictions":[{"label":..,
 *   "probability":p,"similarity":c}..]}..]}  scores: n_images x top_k, best first. */
int api_write_classify(jbuf *b, const api_model_desc *m, const api_request *req,
                       const api_label_score *scores, int n_images);

/* {"error":{"code":status,"type":..,"message":..}} */
int api_write_error(jbuf *b, const api_error *e);

/* ---- arithmetic ----------------------------------------------------------------------------- */

/* v /= |v| (a zero vector stays zero). */
void api_l2_normalize(float *v, int dim);
double api_dot(const float *a, const float *b, int dim); /* accumulated in double */

/*
 * Zero-shot scoring of one image against n labels (SPEC.md section 6): image and labels must be
 * L2-normalized. cos_i = image . label_i, p = softmax(scale * cos) (computed in double, max
 * subtracted). Writes the top_k best into out (best first; ties keep label order).
 * Scratch from the caller: work = 2*n doubles, all = n scores.
 */
void api_classify_scores(const float *image, const float *labels, int n, int dim, double scale,
                         int top_k, double *work, api_label_score *all, api_label_score *out);

#endif /* CLOOB_API_H */
