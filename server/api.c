/*
 * api.c - JSON <-> native structs for the HTTP API, the error table, /classify arithmetic.
 *
 * Parsing uses cJSON_ParseWithLengthOpts with its own return_parse_end (never the global
 * cJSON_GetErrorPtr, which is not thread safe), then walks the tree once, checking every field's
 * type and range and naming the field in the message. The input strings are NOT copied: the
 * request keeps the tree alive and items point into it.
 *
 * Output is written by hand into a capped growable buffer: float arrays dominate the response
 * size, and printing them with %.9g directly is both faster than building a cJSON tree and
 * exact (9 significant digits round-trip every float32).
 */
#include "api.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "utf8.h"

/* ---- errors ----------------------------------------------------------------------------- */

static const struct {
    int status;
    const char *type;
} k_err_table[API_ERR_COUNT] = {
    [API_OK] = {200, "ok"},
    [API_ERR_BAD_JSON] = {400, "invalid_json"},
    [API_ERR_BAD_FIELD] = {400, "invalid_request"},
    [API_ERR_BAD_BASE64] = {400, "invalid_base64"},
    [API_ERR_UNAUTHORIZED] = {401, "unauthorized"},
    [API_ERR_NOT_FOUND] = {404, "not_found"},
    [API_ERR_METHOD] = {405, "method_not_allowed"},
    [API_ERR_BODY_TOO_LARGE] = {413, "payload_too_large"},
    [API_ERR_MEDIA_TYPE] = {415, "unsupported_media_type"},
    [API_ERR_IMAGE_FORMAT] = {415, "unsupported_image_format"},
    [API_ERR_IMAGE_DECODE] = {422, "invalid_image"},
    [API_ERR_IMAGE_TOO_LARGE] = {422, "image_too_large"},
    [API_ERR_TOO_MANY_ITEMS] = {422, "too_many_items"},
    [API_ERR_TEXT_TOO_LONG] = {422, "text_too_long"},
    [API_ERR_QUEUE_FULL] = {429, "queue_full"},
    [API_ERR_NOT_READY] = {503, "not_ready"},
    [API_ERR_DRAINING] = {503, "shutting_down"},
    [API_ERR_OUT_OF_MEMORY] = {503, "out_of_memory"},
    [API_ERR_DEADLINE] = {504, "deadline_exceeded"},
    [API_ERR_INTERNAL] = {500, "internal_error"},
};

int api_err_status(api_err e) {
    if ((int)e < 0 || e >= API_ERR_COUNT) return 500;
    return k_err_table[e].status;
}

const char *api_err_type(api_err e) {
    if ((int)e < 0 || e >= API_ERR_COUNT) return "internal_error";
    return k_err_table[e].type;
}

int api_fail(api_error *e, api_err code, const char *fmt, ...) {
    if (!e) return -1;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- jbuf ------------------------------------------------------------------------------------ */

void jbuf_init(jbuf *b, size_t max) {
    memset(b, 0, sizeof *b);
    b->max = max;
}

void jbuf_free(jbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *jbuf_take(jbuf *b, size_t *len) {
    char *p = b->p;
    if (len) *len = b->len;
    size_t max = b->max;
    memset(b, 0, sizeof *b);
    b->max = max;
    return p;
}

/* Makes room for n more bytes plus the NUL. */
static int jbuf_reserve(jbuf *b, size_t n) {
    if (b->overflow) return -1;
    if (n > b->max || b->len > b->max - n) {
        b->overflow = 1;
        return -1;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    if (cap > b->max + 1) cap = b->max + 1;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->overflow = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int jbuf_append(jbuf *b, const char *s, size_t n) {
    if (jbuf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int jbuf_puts(jbuf *b, const char *s) { return jbuf_append(b, s, strlen(s)); }

int jbuf_printf(jbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof tmp) return jbuf_append(b, tmp, (size_t)n);
    /* Longer than the stack buffer: format straight into the reserved space. */
    if (jbuf_reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int jbuf_json_string(jbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (jbuf_append(b, "\"", 1)) return -1;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one append. */
        size_t start = i;
        while (i < n && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\' && u[i] != 0x7f) i++;
        if (i > start && jbuf_append(b, s + start, i - start)) return -1;
        if (i >= n) break;
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t l = utf8_seq_len(u + i, n - i);
            if (l == 0) {
                if (jbuf_append(b, "\\ufffd", 6)) return -1;
                i++;
            } else {
                if (jbuf_append(b, s + i, l)) return -1;
                i += l;
            }
            continue;
        }
        char esc[7];
        size_t el = 2;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        if (jbuf_append(b, esc, el)) return -1;
        i++;
    }
    return jbuf_append(b, "\"", 1);
}

int jbuf_float(jbuf *b, float v) {
    if (!isfinite(v)) return jbuf_append(b, "null", 4);
    /* 9 significant digits always round-trip a float32 (FLT_DECIMAL_DIG); one snprintf per
     * value keeps a 512-float vector at a few tens of microseconds. */
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%.9g", (double)v);
    return jbuf_append(b, tmp, (size_t)n);
}

/* ---- request parsing ------------------------------------------------------------------------ */

static void request_clear(api_request *r) { memset(r, 0, sizeof *r); }

void api_request_free(api_request *r) {
    if (!r) return;
    free(r->images);
    free(r->texts);
    free(r->labels);
    free(r->templates);
    if (r->json_root) cJSON_Delete((cJSON *)r->json_root);
    request_clear(r);
}

/* Parses an object body; trailing non-whitespace is an error. */
static cJSON *parse_object(const char *body, size_t len, api_error *err) {
    if (len == 0) {
        api_fail(err, API_ERR_BAD_JSON, "empty body: expected a JSON object");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t off = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        api_fail(err, API_ERR_BAD_JSON, "malformed JSON near byte %zu", off);
        return NULL;
    }
    size_t off = (size_t)(end - body);
    while (off < len && (body[off] == ' ' || body[off] == '\n' || body[off] == '\r' ||
                         body[off] == '\t' || body[off] == '\0')) {
        /* A trailing NUL is tolerated: some clients send C strings. */
        off++;
    }
    if (off != len) {
        cJSON_Delete(root);
        api_fail(err, API_ERR_BAD_JSON, "unexpected data after the JSON value at byte %zu", off);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        api_fail(err, API_ERR_BAD_JSON, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

static int get_bool(const cJSON *root, const char *key, int dflt, int *out, api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(v)) return api_fail(err, API_ERR_BAD_FIELD, "'%s' must be a boolean", key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

static int parse_encoding(const char *s, api_encoding *out, api_error *err) {
    if (!strcmp(s, "float")) {
        *out = API_ENCODING_FLOAT;
    } else if (!strcmp(s, "base64")) {
        *out = API_ENCODING_BASE64;
    } else {
        return api_fail(err, API_ERR_BAD_FIELD,
                        "'encoding_format' must be \"float\" or \"base64\"");
    }
    return 0;
}

static int get_encoding(const cJSON *root, api_encoding *out, api_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    if (!v || cJSON_IsNull(v)) {
        *out = API_ENCODING_FLOAT;
        return 0;
    }
    if (!cJSON_IsString(v)) {
        return api_fail(err, API_ERR_BAD_FIELD, "'encoding_format' must be a string");
    }
    return parse_encoding(v->valuestring, out, err);
}

/*
 * Reads a list of strings given either as `plural: [..]` or `singular: ".."` (not both).
 * required: absence is an error. max: more is 422 too_many_items (max_is_422) or 400.
 * max_bytes: per string (0 = no cap). Fills *arr (malloc'd) and *n.
 */
static int get_string_list(const cJSON *root, const char *plural, const char *singular,
                           int required, int max, int max_is_422, int max_bytes,
                           api_input **arr, int *n, api_error *err) {
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(root, plural);
    const cJSON *sg = singular ? cJSON_GetObjectItemCaseSensitive(root, singular) : NULL;
    if (pl && cJSON_IsNull(pl)) pl = NULL;
    if (sg && cJSON_IsNull(sg)) sg = NULL;
    *arr = NULL;
    *n = 0;
    if (pl && sg) {
        return api_fail(err, API_ERR_BAD_FIELD, "give either '%s' or '%s', not both", plural,
                        singular);
    }
    if (!pl && !sg) {
        if (!required) return 0;
        if (singular) {
            return api_fail(err, API_ERR_BAD_FIELD, "missing field '%s' (or '%s')", plural,
                            singular);
        }
        return api_fail(err, API_ERR_BAD_FIELD, "missing field '%s'", plural);
    }
    int count;
    if (sg) {
        if (!cJSON_IsString(sg)) return api_fail(err, API_ERR_BAD_FIELD, "'%s' must be a string", singular);
        count = 1;
    } else {
        if (!cJSON_IsArray(pl)) {
            return api_fail(err, API_ERR_BAD_FIELD, "'%s' must be an array of strings", plural);
        }
        count = cJSON_GetArraySize(pl);
        if (count == 0) return api_fail(err, API_ERR_BAD_FIELD, "'%s' must not be empty", plural);
        if (count > max) {
            return api_fail(err, max_is_422 ? API_ERR_TOO_MANY_ITEMS : API_ERR_BAD_FIELD,
                            "'%s' has %d items; at most %d are allowed per request", plural,
                            count, max);
        }
    }
    api_input *a = calloc((size_t)count, sizeof *a);
    if (!a) return api_fail(err, API_ERR_INTERNAL, "out of memory");
    int i = 0;
    const cJSON *it = sg;
    if (pl) it = pl->child;
    for (; it && i < count; it = sg ? NULL : it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring) {
            free(a);
            return api_fail(err, API_ERR_BAD_FIELD, "'%s[%d]' must be a string", plural, i);
        }
        size_t l = strlen(it->valuestring);
        if (max_bytes > 0 && l > (size_t)max_bytes) {
            free(a);
            return api_fail(err, API_ERR_TEXT_TOO_LONG,
                            "'%s[%d]' is %zu bytes long; at most %d bytes are allowed",
                            sg ? singular : plural, i, l, max_bytes);
        }
        a[i].data = it->valuestring;
        a[i].len = l;
    }
    *arr = a;
    *n = count;
    return 0;
}

int api_strip_data_uri(const char *s, size_t len, api_input *out, api_error *err) {
    if (base64_is_data_uri(s, len)) {
        data_uri u;
        if (base64_parse_data_uri(s, len, &u)) {
            return api_fail(err, API_ERR_BAD_BASE64, "malformed data: URI");
        }
        /* Percent-encoded data URIs are not images anyone sends; accepting them would need a
         * second decoder for no user. */
        if (!u.is_base64) return api_fail(err, API_ERR_BAD_BASE64, "data: URI must be ;base64 encoded");
        out->data = u.payload;
        out->len = u.payload_len;
        return 0;
    }
    out->data = s;
    out->len = len;
    return 0;
}

static int get_images(const cJSON *root, const api_limits *lim, api_request *r, api_error *err) {
    if (get_string_list(root, "images", "image", 1, lim->max_images, 1, 0, &r->images,
                        &r->n_images, err)) {
        return -1;
    }
    for (int i = 0; i < r->n_images; i++) {
        api_error e2;
        if (api_strip_data_uri(r->images[i].data, r->images[i].len, &r->images[i], &e2)) {
            return api_fail(err, e2.code, "images[%d]: %s", i, e2.message);
        }
        if (r->images[i].len == 0) return api_fail(err, API_ERR_BAD_FIELD, "images[%d] is empty", i);
    }
    return 0;
}

static int get_common(const cJSON *root, api_request *r, api_error *err) {
    if (get_bool(root, "normalize", 1, &r->normalize, err)) return -1;
    return get_encoding(root, &r->encoding, err);
}

int api_parse_embed_image(const char *body, size_t len, const api_limits *lim, api_request *out,
                          api_error *err) {
    request_clear(out);
    cJSON *root = parse_object(body, len, err);
    if (!root) return -1;
    out->json_root = root;
    if (get_common(root, out, err) || get_images(root, lim, out, err)) {
        api_request_free(out);
        return -1;
    }
    return 0;
}

int api_parse_embed_text(const char *body, size_t len, const api_limits *lim, api_request *out,
                         api_error *err) {
    request_clear(out);
    cJSON *root = parse_object(body, len, err);
    if (!root) return -1;
    out->json_root = root;
    if (get_common(root, out, err) ||
        get_bool(root, "truncate", lim->default_truncate, &out->truncate, err) ||
        get_string_list(root, "texts", "text", 1, lim->max_texts, 1, lim->max_text_bytes,
                        &out->texts, &out->n_texts, err)) {
        api_request_free(out);
        return -1;
    }
    return 0;
}

static int count_placeholders(const char *s, size_t len) {
    int n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (s[i] == '{' && s[i + 1] == '}') {
            n++;
            i++;
        }
    }
    return n;
}

static const char k_default_template[] = "{}";

int api_parse_classify(const char *body, size_t len, const api_limits *lim, api_request *out,
                       api_error *err) {
    request_clear(out);
    cJSON *root = parse_object(body, len, err);
    if (!root) return -1;
    out->json_root = root;
    out->normalize = 1;
    out->truncate = 1; /* labels are short; a long one is cut, as in the reference */
    if (get_images(root, lim, out, err) ||
        get_string_list(root, "labels", NULL, 1, lim->max_labels, 1, lim->max_text_bytes,
                        &out->labels, &out->n_labels, err) ||
        get_string_list(root, "templates", NULL, 0, lim->max_templates, 1, lim->max_text_bytes,
                        &out->templates, &out->n_templates, err)) {
        goto fail;
    }
    for (int i = 0; i < out->n_labels; i++) {
        if (out->labels[i].len == 0) {
            api_fail(err, API_ERR_BAD_FIELD, "labels[%d] is empty", i);
            goto fail;
        }
    }
    if (out->n_templates == 0) {
        out->templates = calloc(1, sizeof *out->templates);
        if (!out->templates) {
            api_fail(err, API_ERR_INTERNAL, "out of memory");
            goto fail;
        }
        out->templates[0].data = k_default_template;
        out->templates[0].len = 2;
        out->n_templates = 1;
    }
    for (int i = 0; i < out->n_templates; i++) {
        if (count_placeholders(out->templates[i].data, out->templates[i].len) != 1) {
            api_fail(err, API_ERR_BAD_FIELD,
                     "templates[%d] must contain the placeholder {} exactly once", i);
            goto fail;
        }
    }
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "top_k");
    out->top_k = out->n_labels;
    if (tk && !cJSON_IsNull(tk)) {
        double v = cJSON_IsNumber(tk) ? tk->valuedouble : -1;
        if (!cJSON_IsNumber(tk) || v != floor(v) || v < 1 || v > 1e9) {
            api_fail(err, API_ERR_BAD_FIELD, "'top_k' must be a positive integer");
            goto fail;
        }
        /* More than there are labels is not an error: you get them all. */
        out->top_k = v < out->n_labels ? (int)v : out->n_labels;
    }
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "scale");
    out->scale = lim->default_scale;
    if (sc && !cJSON_IsNull(sc)) {
        if (!cJSON_IsNumber(sc) || !(sc->valuedouble > 0) || sc->valuedouble > 1e4) {
            api_fail(err, API_ERR_BAD_FIELD, "'scale' must be a number in (0, 10000]");
            goto fail;
        }
        out->scale = sc->valuedouble;
    }
    return 0;
fail:
    api_request_free(out);
    return -1;
}

int api_parse_openai(const char *body, size_t len, const api_limits *lim, api_request *out,
                     api_error *err) {
    request_clear(out);
    cJSON *root = parse_object(body, len, err);
    if (!root) return -1;
    out->json_root = root;
    out->openai = 1;
    out->normalize = 1;
    out->truncate = lim->default_truncate;
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(root, "modality");
    int image = 0;
    if (mod && !cJSON_IsNull(mod)) {
        if (!cJSON_IsString(mod) || (strcmp(mod->valuestring, "text") && strcmp(mod->valuestring, "image"))) {
            api_fail(err, API_ERR_BAD_FIELD, "'modality' must be \"text\" or \"image\"");
            goto fail;
        }
        image = strcmp(mod->valuestring, "image") == 0;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model)) {
        if (!cJSON_IsString(model)) {
            api_fail(err, API_ERR_BAD_FIELD, "'model' must be a string");
            goto fail;
        }
        out->model_name = model->valuestring;
    }
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(root, "dimensions");
    if (dims && !cJSON_IsNull(dims)) {
        if (!cJSON_IsNumber(dims) || dims->valuedouble != floor(dims->valuedouble) || dims->valuedouble < 1 ||
            dims->valuedouble > 1e6) {
            api_fail(err, API_ERR_BAD_FIELD, "'dimensions' must be a positive integer");
            goto fail;
        }
        out->dimensions = (int)dims->valuedouble;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (cJSON_IsArray(in) && in->child && (cJSON_IsNumber(in->child) || cJSON_IsArray(in->child))) {
        api_fail(err, API_ERR_BAD_FIELD, "'input' as token ids is not supported: send strings");
        goto fail;
    }
    if (get_common(root, out, err)) goto fail;
    out->normalize = 1; /* OpenAI embeddings are unit vectors; "normalize" is not part of this API */
    if (image) {
        if (get_string_list(root, "input", NULL, 1, lim->max_images, 1, 0, &out->images, &out->n_images, err)) {
            /* "input" may also be a single string */
            const cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "input");
            if (!cJSON_IsString(one)) goto fail;
            out->images = calloc(1, sizeof *out->images);
            if (!out->images) {
                api_fail(err, API_ERR_INTERNAL, "out of memory");
                goto fail;
            }
            out->images[0].data = one->valuestring;
            out->images[0].len = strlen(one->valuestring);
            out->n_images = 1;
        }
        for (int i = 0; i < out->n_images; i++) {
            api_error e2;
            if (api_strip_data_uri(out->images[i].data, out->images[i].len, &out->images[i], &e2)) {
                api_fail(err, e2.code, "input[%d]: %s", i, e2.message);
                goto fail;
            }
            if (out->images[i].len == 0) {
                api_fail(err, API_ERR_BAD_FIELD, "input[%d] is empty", i);
                goto fail;
            }
        }
    } else {
        const cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "input");
        if (cJSON_IsString(one)) {
            size_t l = strlen(one->valuestring);
            if (lim->max_text_bytes > 0 && l > (size_t)lim->max_text_bytes) {
                api_fail(err, API_ERR_TEXT_TOO_LONG, "'input' is %zu bytes long; at most %d bytes are allowed", l,
                         lim->max_text_bytes);
                goto fail;
            }
            out->texts = calloc(1, sizeof *out->texts);
            if (!out->texts) {
                api_fail(err, API_ERR_INTERNAL, "out of memory");
                goto fail;
            }
            out->texts[0].data = one->valuestring;
            out->texts[0].len = l;
            out->n_texts = 1;
        } else if (get_string_list(root, "input", NULL, 1, lim->max_texts, 1, lim->max_text_bytes, &out->texts,
                                   &out->n_texts, err)) {
            goto fail;
        }
    }
    return 0;
fail:
    api_request_free(out);
    return -1;
}

static int parse_query_bool(const char *s, int *out) {
    if (!strcmp(s, "true") || !strcmp(s, "1")) {
        *out = 1;
    } else if (!strcmp(s, "false") || !strcmp(s, "0")) {
        *out = 0;
    } else {
        return -1;
    }
    return 0;
}

int api_raw_image_request(const char *body, size_t len, const char *normalize_q,
                          const char *encoding_q, api_request *out, api_error *err) {
    request_clear(out);
    out->normalize = 1;
    out->raw_images = 1;
    if (normalize_q && parse_query_bool(normalize_q, &out->normalize)) {
        return api_fail(err, API_ERR_BAD_FIELD, "query parameter 'normalize' must be true or false");
    }
    if (encoding_q && parse_encoding(encoding_q, &out->encoding, err)) return -1;
    if (len == 0) return api_fail(err, API_ERR_BAD_FIELD, "empty image body");
    out->images = calloc(1, sizeof *out->images);
    if (!out->images) return api_fail(err, API_ERR_INTERNAL, "out of memory");
    out->images[0].data = body;
    out->images[0].len = len;
    out->n_images = 1;
    return 0;
}

api_content_kind api_content_type_kind(const char *ct) {
    /* No Content-Type, or curl -d's default form type: treat as JSON so that the simplest curl
     * command works; anything else that is not JSON or an image is refused with 415. */
    if (!ct || !*ct) return API_CONTENT_JSON;
    while (*ct == ' ') ct++;
    size_t n = strcspn(ct, "; \t");
    if (n == 16 && !strncasecmp(ct, "application/json", 16)) return API_CONTENT_JSON;
    if (n == 33 && !strncasecmp(ct, "application/x-www-form-urlencoded", 33)) return API_CONTENT_JSON;
    if (n >= 5 && !strncasecmp(ct + n - 5, "+json", 5)) return API_CONTENT_JSON;
    if (n > 6 && !strncasecmp(ct, "image/", 6)) return API_CONTENT_IMAGE;
    if (n == 24 && !strncasecmp(ct, "application/octet-stream", 24)) return API_CONTENT_IMAGE;
    return API_CONTENT_OTHER;
}

int api_apply_template(const api_input *tmpl, const api_input *label, char *out, size_t cap) {
    const char *t = tmpl->data;
    size_t tl = tmpl->len, pos = tl;
    for (size_t i = 0; i + 1 < tl; i++) {
        if (t[i] == '{' && t[i + 1] == '}') {
            pos = i;
            break;
        }
    }
    if (pos == tl) return -1;
    size_t total = tl - 2 + label->len;
    if (total + 1 > cap) return -1;
    memcpy(out, t, pos);
    memcpy(out + pos, label->data, label->len);
    memcpy(out + pos + label->len, t + pos + 2, tl - pos - 2);
    out[total] = '\0';
    return (int)total;
}

/* ---- responses -------------------------------------------------------------------------------- */

static int write_model_fields(jbuf *b, const api_model_desc *m) {
    jbuf_puts(b, "\"model\":");
    jbuf_json_string(b, m->name ? m->name : "", m->name ? strlen(m->name) : 0);
    jbuf_puts(b, ",\"model_sha256\":");
    jbuf_json_string(b, m->sha256 ? m->sha256 : "", m->sha256 ? strlen(m->sha256) : 0);
    jbuf_puts(b, ",\"dtype\":");
    jbuf_json_string(b, m->dtype ? m->dtype : "float32", strlen(m->dtype ? m->dtype : "float32"));
    return b->overflow ? -1 : 0;
}

/* Little-endian float32 bytes of one vector, base64-encoded as a JSON string. */
static int write_b64_vector(jbuf *b, const float *v, int dim) {
    size_t enc = base64_encoded_len((size_t)dim * 4);
    if (jbuf_append(b, "\"", 1) || jbuf_reserve(b, enc + 1)) return -1;
    size_t w = base64_encode_f32le(v, (size_t)dim, b->p + b->len, enc + 1);
    if (w != enc) {
        b->overflow = 1;
        return -1;
    }
    b->len += w;
    b->p[b->len] = '\0';
    return jbuf_append(b, "\"", 1);
}

/* One embedding as a JSON array of floats, or as a base64 string of little-endian float32. */
static void write_vector(jbuf *b, const float *v, int dim, api_encoding enc) {
    if (enc == API_ENCODING_BASE64) {
        write_b64_vector(b, v, dim);
        return;
    }
    jbuf_append(b, "[", 1);
    for (int k = 0; k < dim; k++) {
        if (k) jbuf_append(b, ",", 1);
        jbuf_float(b, v[k]);
    }
    jbuf_append(b, "]", 1);
}

int api_write_embeddings(jbuf *b, const api_model_desc *m, const float *emb, int n, int normalized,
                         api_encoding enc, const api_text_stats *text_stats) {
    jbuf_puts(b, "{\"object\":\"list\",");
    write_model_fields(b, m);
    jbuf_printf(b, ",\"dimension\":%d,\"normalized\":%s,\"encoding_format\":\"%s\",\"data\":[", m->dim,
                normalized ? "true" : "false", enc == API_ENCODING_BASE64 ? "base64" : "float");
    for (int i = 0; i < n && !b->overflow; i++) {
        const float *v = emb + (size_t)i * (size_t)m->dim;
        jbuf_printf(b, "%s{\"index\":%d,", i ? "," : "", i);
        if (text_stats) {
            jbuf_printf(b, "\"tokens\":%d,\"truncated\":%s,", text_stats[i].tokens,
                        text_stats[i].truncated ? "true" : "false");
        }
        jbuf_puts(b, "\"embedding\":");
        write_vector(b, v, m->dim, enc);
        jbuf_append(b, "}", 1);
    }
    jbuf_puts(b, "]}");
    return b->overflow ? -1 : 0;
}

int api_write_openai(jbuf *b, const api_model_desc *m, const char *model_name, const float *emb, int n,
                     api_encoding enc, const api_text_stats *text_stats) {
    jbuf_puts(b, "{\"object\":\"list\",\"data\":[");
    long long tokens = 0;
    for (int i = 0; i < n && !b->overflow; i++) {
        const float *v = emb + (size_t)i * (size_t)m->dim;
        jbuf_printf(b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
        write_vector(b, v, m->dim, enc);
        jbuf_append(b, "}", 1);
        if (text_stats) tokens += text_stats[i].tokens;
    }
    /* The model that actually answered; a client's "model" is accepted as it is (one model per
     * server) and not echoed, so a response never claims to come from a model it did not. */
    (void)model_name;
    jbuf_puts(b, "],\"model\":");
    jbuf_json_string(b, m->name ? m->name : "", m->name ? strlen(m->name) : 0);
    jbuf_printf(b, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}", tokens, tokens);
    return b->overflow ? -1 : 0;
}

int api_write_classify(jbuf *b, const api_model_desc *m, const api_request *req,
                       const api_label_score *scores, int n_images) {
    jbuf_append(b, "{", 1);
    write_model_fields(b, m);
    jbuf_printf(b, ",\"scale\":%.17g,\"top_k\":%d,\"templates\":[", req->scale, req->top_k);
    for (int t = 0; t < req->n_templates; t++) {
        if (t) jbuf_append(b, ",", 1);
        jbuf_json_string(b, req->templates[t].data, req->templates[t].len);
    }
    jbuf_puts(b, "],\"results\":[");
    for (int i = 0; i < n_images && !b->overflow; i++) {
        jbuf_printf(b, "%s{\"index\":%d,\"predictions\":[", i ? "," : "", i);
        for (int k = 0; k < req->top_k; k++) {
            const api_label_score *s = &scores[(size_t)i * (size_t)req->top_k + (size_t)k];
            const api_input *l = &req->labels[s->label];
            jbuf_puts(b, k ? ",{\"label\":" : "{\"label\":");
            jbuf_json_string(b, l->data, l->len);
            jbuf_printf(b, ",\"label_index\":%d,\"probability\":%.9g,\"similarity\":%.9g}",
                        s->label, s->probability, s->similarity);
        }
        jbuf_puts(b, "]}");
    }
    jbuf_puts(b, "]}");
    return b->overflow ? -1 : 0;
}

int api_write_error(jbuf *b, const api_error *e) {
    jbuf_printf(b, "{\"error\":{\"code\":%d,\"type\":\"%s\",\"message\":", api_err_status(e->code),
                api_err_type(e->code));
    jbuf_json_string(b, e->message, strnlen(e->message, sizeof e->message));
    jbuf_puts(b, "}}");
    return b->overflow ? -1 : 0;
}

/* ---- arithmetic -------------------------------------------------------------------------------- */

double api_dot(const float *a, const float *b, int dim) {
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)a[i] * (double)b[i];
    return s;
}

void api_l2_normalize(float *v, int dim) {
    double s = 0;
    for (int i = 0; i < dim; i++) s += (double)v[i] * (double)v[i];
    if (s <= 0) return;
    double inv = 1.0 / sqrt(s);
    for (int i = 0; i < dim; i++) v[i] = (float)((double)v[i] * inv);
}

/* Best first; equal probabilities keep the labels' order (qsort is not stable). */
static int score_cmp(const void *a, const void *b) {
    const api_label_score *x = a, *y = b;
    if (x->probability > y->probability) return -1;
    if (x->probability < y->probability) return 1;
    return (x->label > y->label) - (x->label < y->label);
}

void api_classify_scores(const float *image, const float *labels, int n, int dim, double scale,
                         int top_k, double *work, api_label_score *all, api_label_score *out) {
    double *cos = work, *prob = work + n;
    double mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        cos[i] = api_dot(image, labels + (size_t)i * (size_t)dim, dim);
        if (scale * cos[i] > mx) mx = scale * cos[i];
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        prob[i] = exp(scale * cos[i] - mx);
        sum += prob[i];
    }
    for (int i = 0; i < n; i++) {
        all[i].label = i;
        all[i].probability = prob[i] / sum;
        all[i].similarity = cos[i];
    }
    qsort(all, (size_t)n, sizeof *all, score_cmp);
    if (top_k > n) top_k = n;
    memcpy(out, all, (size_t)top_k * sizeof *out);
}
