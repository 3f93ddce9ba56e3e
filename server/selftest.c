/*
 * selftest.c - the start-up numerical self-test (see selftest.h for what is checked and why).
 *
 * Flow: parse and validate cloob.json's "selftest" section completely first (a malformed section
 * is reported as "metadata" without touching the model), then run the checks. Every check runs
 * even after an earlier one failed, so /info shows every cosine; the first failure names the
 * result. Memory: the reference features and ids live in two blocks sized from the model's
 * embed_dim / max_seq_len and the capped number of texts.
 */
#include "selftest.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "utf8.h"

/* A stored text: the strings are borrowed from the parsed cJSON tree. */
typedef struct ref_text {
    const char *text;
    size_t len;
    int64_t *ids;     /* n_ids stored ids, [CLS] first (into reference.id_block) */
    int n_ids;
    double *feature;  /* embed_dim values (into reference.feat_block) */
} ref_text;

typedef struct reference {
    cJSON *root;
    double tolerance;
    double *image_feature;
    ref_text texts[SELFTEST_MAX_TEXTS];
    int n_texts;
    double *feat_block; /* (1 + n_texts) x dim */
    int64_t *id_block;  /* n_texts x max_seq_len */
} reference;

static void reference_free(reference *ref) {
    cJSON_Delete(ref->root);
    free(ref->feat_block);
    free(ref->id_block);
    memset(ref, 0, sizeof *ref);
}

/* Records a failure; the first one names the result, later ones only mark their check. */
static void fail(selftest_result *r, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(selftest_result *r, const char *check, const char *fmt, ...) {
    if (r->status == SELFTEST_FAILED) return;
    r->status = SELFTEST_FAILED;
    r->failed_check = check;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
}

/* A stored text for messages: at most 40 bytes, whole UTF-8 sequences only, control characters
 * and invalid bytes as '?', and '"' as '\'' so the quotes around it stay unambiguous. */
static void quote_text(const char *s, size_t len, char out[48]) {
    size_t o = 0, i = 0;
    while (i < len) {
        const unsigned char *p = (const unsigned char *)s + i;
        size_t n = utf8_seq_len(p, len - i);
        if (n == 0 || (n == 1 && (p[0] < 0x20 || p[0] == 0x7f))) {
            n = 1;
            if (o + 1 > 40) break;
            out[o++] = '?';
        } else {
            if (o + n > 40) break;
            for (size_t k = 0; k < n; k++) out[o + k] = (char)p[k];
            if (n == 1 && p[0] == '"') out[o] = '\'';
            o += n;
        }
        i += n;
    }
    if (i < len && o + 3 <= 47) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* ---- parsing ----------------------------------------------------------------------------- */

/* A finite-valued feature of exactly dim numbers with a non-zero norm. 0 or -1 (failure set). */
static int read_feature(const cJSON *arr, int dim, double *out, const char *what, selftest_result *r) {
    if (!cJSON_IsArray(arr)) {
        fail(r, "metadata", "cloob.json selftest: %s is missing or not an array", what);
        return -1;
    }
    int n = cJSON_GetArraySize(arr);
    if (n != dim) {
        fail(r, "metadata", "cloob.json selftest: %s has %d values, the model's embed_dim is %d", what, n, dim);
        return -1;
    }
    double ss = 0;
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            fail(r, "metadata", "cloob.json selftest: %s[%d] is not a finite number", what, i);
            return -1;
        }
        out[i++] = v->valuedouble;
        ss += v->valuedouble * v->valuedouble;
    }
    if (!(ss > 0) || !isfinite(ss)) {
        fail(r, "metadata", "cloob.json selftest: %s has zero (or overflowing) norm", what);
        return -1;
    }
    return 0;
}

/* 1..max_len integral ids in [0, INT32_MAX] (the shim checks them against the vocabulary). */
static int read_ids(const cJSON *arr, int max_len, int64_t *out, int *n_out, const char *what,
                    selftest_result *r) {
    if (!cJSON_IsArray(arr)) {
        fail(r, "metadata", "cloob.json selftest: %s is missing or not an array", what);
        return -1;
    }
    int n = cJSON_GetArraySize(arr);
    if (n < 1 || n > max_len) {
        fail(r, "metadata", "cloob.json selftest: %s has %d ids (expected 1..%d)", what, n, max_len);
        return -1;
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(d >= 0 && d <= 2147483647.0) || d != floor(d)) {
            fail(r, "metadata", "cloob.json selftest: %s[%d] is not a token id", what, i);
            return -1;
        }
        out[i++] = (int64_t)d;
    }
    *n_out = n;
    return 0;
}

/* The cosine bound for this dtype. 0 or -1 (failure set). */
static int read_tolerance(const cJSON *st, int half, double *out, selftest_result *r) {
    const char *key = half ? "tolerance_cosine_float16" : "tolerance_cosine";
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(st, key);
    if (!t && half) {
        *out = SELFTEST_DEFAULT_TOLERANCE_FLOAT16;
        t = cJSON_GetObjectItemCaseSensitive(st, "tolerance_cosine");
        /* an exporter that asks for a looser bound than the float16 default gets it */
        if (cJSON_IsNumber(t) && t->valuedouble > 0 && t->valuedouble < *out) *out = t->valuedouble;
        return 0;
    }
    if (!cJSON_IsNumber(t) || !(t->valuedouble > 0 && t->valuedouble <= 1)) {
        fail(r, "metadata", "cloob.json selftest: %s is missing or not a number in (0, 1]", key);
        return -1;
    }
    *out = t->valuedouble;
    return 0;
}

/* Parses the "selftest" section into ref. 0: ready to run; 1: no section (r is SKIPPED);
 * -1: failure set. */
static int parse_reference(const char *json, size_t len, const cloob_model_info *info, reference *ref,
                           selftest_result *r) {
    const char *end = NULL;
    ref->root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!ref->root) {
        fail(r, "metadata", "cloob.json is not valid JSON (at byte %zu)", end ? (size_t)(end - json) : (size_t)0);
        return -1;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ref->root, "selftest");
    if (!st) {
        r->status = SELFTEST_SKIPPED;
        snprintf(r->message, sizeof r->message,
                 "cloob.json has no \"selftest\" section (exported before tools/export_model.py 1.1.0); "
                 "re-export the model directory to enable the self-test");
        return 1;
    }
    if (!cJSON_IsObject(st)) {
        fail(r, "metadata", "cloob.json selftest is not an object");
        return -1;
    }
    if (read_tolerance(st, strcmp(info->dtype, "float16") == 0, &ref->tolerance, r)) return -1;
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(st, "image_rule");
    size_t id_len = strlen(SELFTEST_IMAGE_RULE);
    if (!cJSON_IsString(rule) || strncmp(rule->valuestring, SELFTEST_IMAGE_RULE, id_len) != 0 ||
        (rule->valuestring[id_len] != ':' && rule->valuestring[id_len] != '\0')) {
        char q[48];
        const char *s = cJSON_IsString(rule) ? rule->valuestring : "";
        quote_text(s, strlen(s), q);
        fail(r, "metadata", "cloob.json selftest: image_rule \"%s\" is not \"%s\", the only rule this build "
             "can rebuild", q, SELFTEST_IMAGE_RULE);
        return -1;
    }
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(st, "texts");
    if (!cJSON_IsArray(texts)) {
        fail(r, "metadata", "cloob.json selftest: texts is missing or not an array");
        return -1;
    }
    int n_texts = cJSON_GetArraySize(texts);
    if (n_texts > SELFTEST_MAX_TEXTS) {
        fail(r, "metadata", "cloob.json selftest: %d texts, at most %d are supported", n_texts, SELFTEST_MAX_TEXTS);
        return -1;
    }
    size_t dim = (size_t)info->embed_dim, L = (size_t)info->max_seq_len;
    ref->feat_block = malloc((1 + (size_t)n_texts) * dim * sizeof(double));
    ref->id_block = malloc((n_texts > 0 ? (size_t)n_texts : 1) * L * sizeof(int64_t));
    if (!ref->feat_block || !ref->id_block) {
        fail(r, "metadata", "out of memory reading the self-test reference");
        return -1;
    }
    ref->image_feature = ref->feat_block;
    if (read_feature(cJSON_GetObjectItemCaseSensitive(st, "image_feature"), info->embed_dim, ref->image_feature,
                     "image_feature", r))
        return -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, texts) {
        int i = ref->n_texts;
        ref_text *rt = &ref->texts[i];
        char what[48];
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(t, "text");
        if (!cJSON_IsString(text) || strlen(text->valuestring) > SELFTEST_MAX_TEXT_BYTES) {
            fail(r, "metadata", "cloob.json selftest: texts[%d].text is missing, not a string or longer than %d "
                 "bytes", i, SELFTEST_MAX_TEXT_BYTES);
            return -1;
        }
        rt->text = text->valuestring;
        rt->len = strlen(text->valuestring);
        rt->ids = ref->id_block + (size_t)i * L;
        rt->feature = ref->feat_block + (1 + (size_t)i) * dim;
        snprintf(what, sizeof what, "texts[%d].ids", i);
        if (read_ids(cJSON_GetObjectItemCaseSensitive(t, "ids"), info->max_seq_len, rt->ids, &rt->n_ids, what, r))
            return -1;
        snprintf(what, sizeof what, "texts[%d].feature", i);
        if (read_feature(cJSON_GetObjectItemCaseSensitive(t, "feature"), info->embed_dim, rt->feature, what, r))
            return -1;
        ref->n_texts++;
    }
    return 0;
}

/* ---- the checks -------------------------------------------------------------------------- */

void selftest_make_image(int size, uint8_t *rgb) {
    for (int y = 0; y < size; y++) {
        for (int x = 0; x < size; x++) {
            for (int c = 0; c < 3; c++) {
                rgb[((size_t)y * (size_t)size + (size_t)x) * 3 + (size_t)c] = (uint8_t)((7 * x + 3 * y + 85 * c) % 256);
            }
        }
    }
}

/* Fills cosine / norm_ratio of a check from a computed and a stored feature, and judges it
 * against the tolerance. Returns 1 if it passed. */
static int compare(selftest_check *ck, const float *got, const double *want, int dim, const reference *ref,
                   selftest_result *r, const char *label, const char *kind) {
    double dot = 0, gg = 0, ww = 0;
    int finite = 1;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(got[i])) finite = 0;
        dot += (double)got[i] * want[i];
        gg += (double)got[i] * got[i];
        ww += want[i] * want[i];
    }
    ck->computed = 1;
    ck->cosine = gg > 0 ? dot / (sqrt(gg) * sqrt(ww)) : 0.0;
    ck->norm_ratio = sqrt(gg) / sqrt(ww);
    if (!isnan(r->worst_cosine) && ck->cosine < r->worst_cosine) r->worst_cosine = ck->cosine;
    if (!finite) {
        ck->cosine = NAN;
        r->worst_cosine = NAN; /* sticks: no cosine is worse than a non-finite feature */
        fail(r, kind, "%s: the model produced non-finite values (%s on %s)", label, r->dtype, r->device);
        return 0;
    }
    if (!(ck->cosine >= ref->tolerance)) {
        fail(r, kind, "%s: cosine %.7f with the stored feature is below the tolerance %.6g (%s on %s)", label,
             ck->cosine, ref->tolerance, r->dtype, r->device);
        return 0;
    }
    if (!(fabs(ck->norm_ratio - 1.0) <= SELFTEST_MAX_NORM_DEVIATION)) {
        fail(r, kind, "%s: the feature's norm is %.5fx the stored one (cosine %.7f; allowed %g%% off) (%s on %s)",
             label, ck->norm_ratio, ck->cosine, SELFTEST_MAX_NORM_DEVIATION * 100, r->dtype, r->device);
        return 0;
    }
    ck->passed = 1;
    return 1;
}

/* Each stored text through the tokenizer: the ids must be exactly the stored ones. */
static void check_tokenizer(const cloob_tokenizer *tok, const cloob_model_info *info, const reference *ref,
                            selftest_result *r, int64_t *ids, int64_t *mask) {
    for (int i = 0; i < ref->n_texts; i++) {
        const ref_text *rt = &ref->texts[i];
        selftest_check *ck = &r->checks[1 + i];
        char q[48], err[256] = "";
        quote_text(rt->text, rt->len, q);
        cloob_token_result tr = {0, 0};
        cloob_status st = tok ? cloob_tokenize(tok, rt->text, rt->len, info->max_seq_len, ids, mask, &tr, err,
                                               sizeof err)
                              : CLOOB_ERR_INVALID_ARGUMENT;
        if (st != CLOOB_OK) {
            fail(r, "tokenizer", "texts[%d] (\"%s\"): the tokenizer failed: %s (%s)", i, q,
                 tok ? err : "no tokenizer loaded", cloob_status_name(st));
            continue;
        }
        int n = tr.n_tokens < rt->n_ids ? tr.n_tokens : rt->n_ids;
        int first_diff = -1;
        for (int k = 0; k < n && first_diff < 0; k++) {
            if (ids[k] != rt->ids[k]) first_diff = k;
        }
        if (first_diff < 0 && tr.n_tokens == rt->n_ids) {
            ck->ids_match = 1;
            continue;
        }
        if (first_diff < 0) {
            fail(r, "tokenizer", "texts[%d] (\"%s\"): the tokenizer gives %d ids, cloob.json stores %d (the "
                 "first %d agree): spiece.model or the SentencePiece library differs from the exporter's",
                 i, q, tr.n_tokens, rt->n_ids, n);
        } else {
            fail(r, "tokenizer", "texts[%d] (\"%s\"): token %d is %lld, cloob.json stores %lld (%d vs %d ids): "
                 "spiece.model or the SentencePiece library differs from the exporter's", i, q, first_diff,
                 (long long)ids[first_diff], (long long)rt->ids[first_diff], tr.n_tokens, rt->n_ids);
        }
    }
}

static void check_image(cloob_model *model, const cloob_model_info *info, const reference *ref,
                        selftest_result *r) {
    size_t S = (size_t)info->image_size;
    uint8_t *rgb = malloc(S * S * 3);
    float *pixels = malloc(3 * S * S * sizeof(float));
    float *out = malloc((size_t)info->embed_dim * sizeof(float));
    char err[512] = "";
    if (!rgb || !pixels || !out) {
        fail(r, "forward", "image: out of memory for the synthetic image");
    } else {
        selftest_make_image(info->image_size, rgb);
        image_normalize_chw(rgb, info->image_size, info->mean, info->std, pixels);
        cloob_status st = cloob_model_encode_image(model, pixels, 1, out, err, sizeof err);
        if (st != CLOOB_OK) {
            fail(r, "forward", "image: encode_image failed: %s (%s)", err, cloob_status_name(st));
        } else {
            compare(&r->checks[0], out, ref->image_feature, info->embed_dim, ref, r, "image", "image");
        }
    }
    free(rgb);
    free(pixels);
    free(out);
}

/* All stored texts in one batch padded to the longest, as the batcher runs them, from the STORED
 * ids: a tokenizer difference is reported by the tokenizer check, not twice. */
static void check_texts(cloob_model *model, const cloob_model_info *info, const reference *ref,
                        selftest_result *r) {
    if (ref->n_texts == 0) return;
    int n = ref->n_texts, L = 1;
    for (int i = 0; i < n; i++) {
        if (ref->texts[i].n_ids > L) L = ref->texts[i].n_ids;
    }
    int64_t *ids = malloc((size_t)n * (size_t)L * sizeof(int64_t));
    int64_t *mask = malloc((size_t)n * (size_t)L * sizeof(int64_t));
    float *out = malloc((size_t)n * (size_t)info->embed_dim * sizeof(float));
    char err[512] = "";
    if (!ids || !mask || !out) {
        fail(r, "forward", "texts: out of memory for the self-test batch");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < L; k++) {
            int real = k < ref->texts[i].n_ids;
            ids[(size_t)i * (size_t)L + (size_t)k] = real ? ref->texts[i].ids[k] : info->pad_id;
            mask[(size_t)i * (size_t)L + (size_t)k] = real;
        }
    }
    cloob_status st = cloob_model_encode_text(model, ids, mask, n, L, out, err, sizeof err);
    if (st != CLOOB_OK) {
        fail(r, "forward", "texts: encode_text failed: %s (%s)", err, cloob_status_name(st));
        goto done;
    }
    for (int i = 0; i < n; i++) {
        char label[80], q[48];
        quote_text(ref->texts[i].text, ref->texts[i].len, q);
        snprintf(label, sizeof label, "texts[%d] (\"%s\")", i, q);
        compare(&r->checks[1 + i], out + (size_t)i * (size_t)info->embed_dim, ref->texts[i].feature,
                info->embed_dim, ref, r, label, "text");
    }
done:
    free(ids);
    free(mask);
    free(out);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void selftest_run_json(cloob_model *model, const cloob_tokenizer *tok, const char *json, size_t len,
                       selftest_result *out) {
    double t0 = now_s();
    memset(out, 0, sizeof *out);
    out->worst_cosine = 1.0;
    const cloob_model_info *info = cloob_model_get_info(model);
    if (!info || !json) {
        fail(out, "metadata", "no model or no cloob.json to test");
        return;
    }
    snprintf(out->dtype, sizeof out->dtype, "%s", info->dtype);
    snprintf(out->device, sizeof out->device, "%s", info->device);
    reference ref;
    memset(&ref, 0, sizeof ref);
    int rc = parse_reference(json, len, info, &ref, out);
    if (rc == 0) {
        out->tolerance = ref.tolerance;
        out->n_checks = 1 + ref.n_texts;
        snprintf(out->checks[0].name, sizeof out->checks[0].name, "image");
        for (int i = 0; i < ref.n_texts; i++) {
            selftest_check *ck = &out->checks[1 + i];
            snprintf(ck->name, sizeof ck->name, "texts[%d]", i);
            ck->is_text = 1;
            ck->n_ids = ref.texts[i].n_ids;
        }
        /* The tokenizer writes max_seq_len ids and mask values per call. */
        int64_t *ids = malloc((size_t)info->max_seq_len * sizeof(int64_t));
        int64_t *mask = malloc((size_t)info->max_seq_len * sizeof(int64_t));
        if (!ids || !mask) {
            fail(out, "tokenizer", "out of memory for the tokenizer check");
        } else {
            check_tokenizer(tok, info, &ref, out, ids, mask);
        }
        free(ids);
        free(mask);
        check_image(model, info, &ref, out);
        check_texts(model, info, &ref, out);
        for (int i = 0; i < ref.n_texts; i++) {
            if (!out->checks[1 + i].ids_match) out->checks[1 + i].passed = 0;
        }
        if (out->status != SELFTEST_FAILED) out->status = SELFTEST_PASSED;
    }
    reference_free(&ref);
    out->seconds = now_s() - t0;
}

void selftest_run(cloob_model *model, const cloob_tokenizer *tok, selftest_result *out) {
    const char *json = model ? cloob_model_metadata_json(model) : NULL;
    selftest_run_json(model, tok, json, json ? strlen(json) : 0, out);
}

/* ---- reporting --------------------------------------------------------------------------- */

const char *selftest_status_name(selftest_status s) {
    switch (s) {
    case SELFTEST_SKIPPED: return "skipped";
    case SELFTEST_PASSED: return "passed";
    case SELFTEST_FAILED: return "failed";
    default: return "disabled";
    }
}

/* cJSON prints a non-finite number as null, which is what a NaN cosine should read as. */
char *selftest_to_json(const selftest_result *r) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = cJSON_AddStringToObject(o, "status", selftest_status_name(r->status)) != NULL;
    if (r->status == SELFTEST_PASSED || r->status == SELFTEST_FAILED) {
        ok = ok && cJSON_AddBoolToObject(o, "passed", r->status == SELFTEST_PASSED);
        if (r->failed_check) ok = ok && cJSON_AddStringToObject(o, "failed_check", r->failed_check);
    }
    if (r->message[0]) ok = ok && cJSON_AddStringToObject(o, "message", r->message);
    if (r->status == SELFTEST_PASSED || r->status == SELFTEST_FAILED) {
        int computed = 0;
        for (int i = 0; i < r->n_checks; i++) computed |= r->checks[i].computed;
        if (computed) ok = ok && cJSON_AddNumberToObject(o, "worst_cosine", r->worst_cosine);
        if (r->tolerance > 0) ok = ok && cJSON_AddNumberToObject(o, "tolerance", r->tolerance);
        ok = ok && cJSON_AddStringToObject(o, "dtype", r->dtype);
        ok = ok && cJSON_AddStringToObject(o, "device", r->device);
        ok = ok && cJSON_AddNumberToObject(o, "seconds", r->seconds);
        cJSON *checks = cJSON_AddArrayToObject(o, "checks");
        ok = ok && checks;
        for (int i = 0; ok && i < r->n_checks; i++) {
            const selftest_check *ck = &r->checks[i];
            cJSON *c = cJSON_CreateObject();
            ok = c && cJSON_AddItemToArray(checks, c);
            if (!ok) {
                cJSON_Delete(c);
                break;
            }
            ok = cJSON_AddStringToObject(c, "name", ck->name) != NULL;
            if (ck->is_text) {
                ok = ok && cJSON_AddNumberToObject(c, "tokens", ck->n_ids);
                ok = ok && cJSON_AddBoolToObject(c, "ids_match", ck->ids_match);
            }
            if (ck->computed) {
                ok = ok && cJSON_AddNumberToObject(c, "cosine", ck->cosine);
                ok = ok && cJSON_AddNumberToObject(c, "norm_ratio", ck->norm_ratio);
            }
            ok = ok && cJSON_AddBoolToObject(c, "passed", ck->passed);
        }
    }
    char *printed = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return printed;
}

char *selftest_metadata_without_vectors(const char *json, size_t len) {
    if (!json) return NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (!root) return NULL;
    cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "selftest");
    if (cJSON_IsObject(st)) {
        cJSON_DeleteItemFromObjectCaseSensitive(st, "image_feature");
        cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(st, "texts")) {
            if (cJSON_IsObject(t)) cJSON_DeleteItemFromObjectCaseSensitive(t, "feature");
        }
    }
    char *printed = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return printed;
}
