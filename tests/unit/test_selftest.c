/* test_selftest.c - the self-test's parsing, checks and report against a FAKE model and tokenizer
 * (no libtorch, so it also runs under ASan+UBSan): every malformed "selftest" section is a
 * "metadata" failure without a crash, each kind of mismatch is reported as the right check with
 * its numbers, the float16 tolerance is chosen by dtype, and the JSON report parses.
 * Includes selftest.c (h2o style) and defines the cloob_* functions it calls. The real model path
 * is tested by tests/test_selftest.py (server and cloob-embed with the tiny model). */
#include "selftest.c"

#include <stdio.h>

#include "testlib.h"

/* ---- the fake shim ------------------------------------------------------------------------ */

#define DIM 4
#define SEQ 8

struct cloob_model {
    cloob_model_info info;
    float image_out[DIM];       /* what encode_image returns */
    float text_out[DIM];        /* what encode_text returns for every row, scaled by (1 + row) */
    int text_row_scaled;        /* 1: row i is text_out * (1 + i) (a norm error on rows > 0) */
    cloob_status image_status;  /* != OK: encode_image fails */
    cloob_status text_status;
    int text_calls, image_calls;
    int last_batch, last_seq_len;
    int64_t last_ids[4 * SEQ], last_mask[4 * SEQ];
};

struct cloob_tokenizer {
    int64_t ids[SEQ]; /* what cloob_tokenize returns ([CLS] first) */
    int n;
    int calls;
};

const char *cloob_status_name(cloob_status s) { return s == CLOOB_OK ? "ok" : "model_error"; }
const cloob_model_info *cloob_model_get_info(const cloob_model *m) { return m ? &m->info : NULL; }
const char *cloob_model_metadata_json(const cloob_model *m) { return NULL; }

cloob_status cloob_model_encode_image(cloob_model *m, const float *pixels, int batch, float *out, char *err,
                                      size_t errlen) {
    m->image_calls++;
    /* the synthetic image arrives normalized: pixel (0,0) of channel 1 is (85/255 - mean) / std */
    float want = (85.0f / 255.0f - m->info.mean[1]) / m->info.std[1];
    size_t plane = (size_t)m->info.image_size * (size_t)m->info.image_size;
    if (batch != 1 || fabsf(pixels[plane] - want) > 1e-6f) {
        snprintf(err, errlen, "unexpected pixels");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    if (m->image_status != CLOOB_OK) {
        snprintf(err, errlen, "fake image failure");
        return m->image_status;
    }
    memcpy(out, m->image_out, sizeof m->image_out);
    return CLOOB_OK;
}

cloob_status cloob_model_encode_text(cloob_model *m, const int64_t *ids, const int64_t *mask, int batch,
                                     int seq_len, float *out, char *err, size_t errlen) {
    m->text_calls++;
    m->last_batch = batch;
    m->last_seq_len = seq_len;
    if (batch * seq_len <= 4 * SEQ) {
        memcpy(m->last_ids, ids, sizeof(int64_t) * (size_t)(batch * seq_len));
        memcpy(m->last_mask, mask, sizeof(int64_t) * (size_t)(batch * seq_len));
    }
    if (m->text_status != CLOOB_OK) {
        snprintf(err, errlen, "fake text failure");
        return m->text_status;
    }
    for (int b = 0; b < batch; b++)
        for (int d = 0; d < DIM; d++) out[b * DIM + d] = m->text_out[d] * (m->text_row_scaled ? (float)(1 + b) : 1.0f);
    return CLOOB_OK;
}

cloob_status cloob_tokenize(const cloob_tokenizer *tok, const char *text, size_t len, int max_seq_len, int64_t *ids,
                            int64_t *mask, cloob_token_result *result, char *err, size_t errlen) {
    ((cloob_tokenizer *)tok)->calls++;
    for (int k = 0; k < max_seq_len; k++) {
        ids[k] = k < tok->n ? tok->ids[k] : 3;
        mask[k] = k < tok->n;
    }
    result->n_tokens = tok->n;
    result->n_dropped = 0;
    return CLOOB_OK;
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static void fake_init(cloob_model *m, cloob_tokenizer *t, const char *dtype) {
    memset(m, 0, sizeof *m);
    snprintf(m->info.name, sizeof m->info.name, "fake");
    m->info.embed_dim = DIM;
    m->info.image_size = 8;
    m->info.max_seq_len = SEQ;
    m->info.pad_id = 3;
    m->info.cls_id = 4;
    for (int c = 0; c < 3; c++) {
        m->info.mean[c] = 0.5f;
        m->info.std[c] = 0.25f;
    }
    snprintf(m->info.dtype, sizeof m->info.dtype, "%s", dtype);
    snprintf(m->info.device, sizeof m->info.device, "cpu");
    const float img[DIM] = {1, 2, 3, 4}, txt[DIM] = {-1, 0.5f, 2, 0};
    memcpy(m->image_out, img, sizeof img);
    memcpy(m->text_out, txt, sizeof txt);
    memset(t, 0, sizeof *t);
    const int64_t ids[] = {4, 9, 1651, 10478};
    memcpy(t->ids, ids, sizeof ids);
    t->n = 4;
}

/* A well-formed section matching the fake: one text with the tokenizer's ids. %s slots let a
 * test replace single fields. */
static char *section(const char *rule, const char *image_feature, const char *texts, const char *tol_extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"format\":1,\"selftest\":{\"image_rule\":%s,\"tolerance_cosine\":0.9999%s,"
             "\"image_feature\":%s,\"texts\":%s}}",
             rule, tol_extra, image_feature, texts);
    return buf;
}
#define RULE "\"gradient-v1: rgb[y][x][c] = (7*x + 3*y + 85*c) mod 256\""
#define IMG "[1,2,3,4]"
#define TEXTS "[{\"text\":\"犬の写真\",\"ids\":[4,9,1651,10478],\"feature\":[-1,0.5,2,0]}]"

static selftest_result run(cloob_model *m, cloob_tokenizer *t, const char *json) {
    selftest_result r;
    selftest_run_json(m, t, json, strlen(json), &r);
    return r;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_image_rule(void) {
    uint8_t rgb[5 * 5 * 3];
    selftest_make_image(5, rgb);
    CHECK_EQ_INT(rgb[0], 0);
    CHECK_EQ_INT(rgb[1], 85);                     /* (0,0) c=1 */
    CHECK_EQ_INT(rgb[2], 170);
    CHECK_EQ_INT(rgb[3], 7);                      /* x=1 */
    CHECK_EQ_INT(rgb[5 * 3], 3);                  /* y=1 */
    CHECK_EQ_INT(rgb[(4 * 5 + 4) * 3 + 2], (7 * 4 + 3 * 4 + 170) % 256);
    uint8_t big[224 * 224 * 3];
    selftest_make_image(224, big);
    CHECK_EQ_INT(big[(200 * 224 + 100) * 3 + 2], (700 + 600 + 170) % 256); /* wraps mod 256 */
}

static void test_pass(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    selftest_result r = run(&m, &t, section(RULE, IMG, TEXTS, ""));
    CHECK_MSG(r.status == SELFTEST_PASSED, "%s", r.message);
    CHECK(r.failed_check == NULL);
    CHECK_EQ_INT(r.n_checks, 2);
    CHECK_NEAR(r.worst_cosine, 1.0, 1e-12);
    CHECK_NEAR(r.tolerance, 0.9999, 0);
    CHECK(r.checks[0].passed && r.checks[1].passed && r.checks[1].ids_match);
    CHECK_EQ_INT(t.calls, 1);
    CHECK_EQ_INT(m.image_calls, 1);
    CHECK_EQ_INT(m.text_calls, 1);
    /* The stored scale differs from the computed one by 0.5%: within the 1% norm bound. */
    selftest_result r2 = run(&m, &t, section(RULE, "[1.005,2.01,3.015,4.02]", TEXTS, ""));
    CHECK_MSG(r2.status == SELFTEST_PASSED, "%s", r2.message);
    CHECK_NEAR(r2.checks[0].norm_ratio, 1 / 1.005, 1e-6);
}

static void test_texts_are_batched_and_padded(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    t.n = 1; /* the tokenizer mismatches text 0 (4 ids stored): reported, yet the stored ids run */
    const char *texts = "[{\"text\":\"a\",\"ids\":[4,9,1651,10478],\"feature\":[-1,0.5,2,0]},"
                        "{\"text\":\"\",\"ids\":[4],\"feature\":[-1,0.5,2,0]}]";
    selftest_result r = run(&m, &t, section(RULE, IMG, texts, ""));
    CHECK(r.status == SELFTEST_FAILED);
    CHECK_STR(r.failed_check, "tokenizer");
    CHECK_EQ_INT(m.last_batch, 2);
    CHECK_EQ_INT(m.last_seq_len, 4);
    const int64_t want_ids[8] = {4, 9, 1651, 10478, 4, 3, 3, 3}, want_mask[8] = {1, 1, 1, 1, 1, 0, 0, 0};
    CHECK(memcmp(m.last_ids, want_ids, sizeof want_ids) == 0);
    CHECK(memcmp(m.last_mask, want_mask, sizeof want_mask) == 0);
    /* text 1 ([CLS] alone) matched the tokenizer (n=1) and its feature: it passed */
    CHECK(!r.checks[1].ids_match && !r.checks[1].passed && r.checks[1].computed);
    CHECK(r.checks[2].ids_match && r.checks[2].passed);
    CHECK_MSG(strstr(r.message, "texts[0]") && strstr(r.message, "gives 1 ids, cloob.json stores 4"), "%s",
              r.message);
}

static void test_tokenizer_mismatch_names_the_position(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    t.ids[2] = 1652;
    selftest_result r = run(&m, &t, section(RULE, IMG, TEXTS, ""));
    CHECK(r.status == SELFTEST_FAILED);
    CHECK_STR(r.failed_check, "tokenizer");
    CHECK_MSG(strstr(r.message, "token 2 is 1652, cloob.json stores 1651") != NULL, "%s", r.message);
    CHECK_MSG(strstr(r.message, "犬の写真") != NULL, "%s", r.message);
    /* the features still ran and are reported */
    CHECK(r.checks[0].passed && r.checks[1].computed && !r.checks[1].passed);
    /* no tokenizer at all */
    selftest_result r2 = run(&m, NULL, section(RULE, IMG, TEXTS, ""));
    CHECK_STR(r2.failed_check, "tokenizer");
    CHECK(strstr(r2.message, "no tokenizer") != NULL);
}

static void test_feature_mismatches(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    /* a component flipped: same norm, lower cosine */
    selftest_result r = run(&m, &t, section(RULE, "[1,2,3,-4]", TEXTS, ""));
    CHECK(r.status == SELFTEST_FAILED);
    CHECK_STR(r.failed_check, "image");
    CHECK_NEAR(r.checks[0].cosine, (1 + 4 + 9 - 16) / 30.0, 1e-12);
    CHECK_NEAR(r.worst_cosine, (1 + 4 + 9 - 16) / 30.0, 1e-12);
    CHECK_NEAR(r.checks[0].norm_ratio, 1, 1e-12);
    CHECK_MSG(strstr(r.message, "cosine -0.0666667") && strstr(r.message, "tolerance 0.9999") &&
              strstr(r.message, "float32 on cpu"), "%s", r.message);
    CHECK(r.checks[1].passed); /* the text still checked, and fine */

    /* a scale error: cosine 1, norm 2x */
    m.text_row_scaled = 1;
    const char *texts = "[{\"text\":\"x\",\"ids\":[4,9,1651,10478],\"feature\":[-1,0.5,2,0]},"
                        "{\"text\":\"y\",\"ids\":[4,9,1651,10478],\"feature\":[-1,0.5,2,0]}]";
    selftest_result r2 = run(&m, &t, section(RULE, IMG, texts, ""));
    CHECK(r2.status == SELFTEST_FAILED);
    CHECK_STR(r2.failed_check, "text");
    CHECK(r2.checks[1].passed && !r2.checks[2].passed);
    CHECK_NEAR(r2.checks[2].cosine, 1, 1e-12);
    CHECK_NEAR(r2.checks[2].norm_ratio, 2, 1e-12);
    CHECK_MSG(strstr(r2.message, "texts[1] (\"y\")") && strstr(r2.message, "norm is 2.00000x"), "%s", r2.message);

    /* NaN from the model */
    m.text_row_scaled = 0;
    m.image_out[2] = NAN;
    selftest_result r3 = run(&m, &t, section(RULE, IMG, TEXTS, ""));
    CHECK_STR(r3.failed_check, "image");
    CHECK(strstr(r3.message, "non-finite") != NULL);
    CHECK(isnan(r3.worst_cosine));
    char *json = selftest_to_json(&r3);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    CHECK_MSG(o != NULL, "%s", json ? json : "(null)");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "worst_cosine")));
    cJSON_Delete(o);
    free(json);
}

static void test_forward_failure(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    m.text_status = CLOOB_ERR_OUT_OF_MEMORY;
    selftest_result r = run(&m, &t, section(RULE, IMG, TEXTS, ""));
    CHECK_STR(r.failed_check, "forward");
    CHECK(strstr(r.message, "encode_text failed: fake text failure") != NULL);
    CHECK(r.checks[0].passed && !r.checks[1].computed && !r.checks[1].passed);
    m.text_status = CLOOB_OK;
    m.image_status = CLOOB_ERR_MODEL;
    selftest_result r2 = run(&m, &t, section(RULE, IMG, TEXTS, ""));
    CHECK_STR(r2.failed_check, "forward");
    CHECK(strstr(r2.message, "encode_image failed") != NULL);
}

static void test_float16_tolerance(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float16");
    /* [1,2,3,4] plus a perpendicular [0.2,-0.1,0,0]: cosine 0.99917, between the two bounds, and
     * the norm 0.08% off */
    const char *img = "[1.2,1.9,3,4]";
    selftest_result r = run(&m, &t, section(RULE, img, TEXTS, ""));
    CHECK_MSG(r.status == SELFTEST_PASSED, "%s", r.message);
    CHECK_NEAR(r.tolerance, SELFTEST_DEFAULT_TOLERANCE_FLOAT16, 0);
    CHECK_MSG(r.worst_cosine < 0.9999 && r.worst_cosine > 0.999, "%.7f", r.worst_cosine);
    selftest_result r2 = run(&m, &t, section(RULE, img, TEXTS, ",\"tolerance_cosine_float16\":0.99995"));
    CHECK(r2.status == SELFTEST_FAILED);
    CHECK_NEAR(r2.tolerance, 0.99995, 0);
    CHECK(strstr(r2.message, "float16 on cpu") != NULL);
    fake_init(&m, &t, "float32");
    selftest_result r3 = run(&m, &t, section(RULE, img, TEXTS, ",\"tolerance_cosine_float16\":0.9"));
    CHECK(r3.status == SELFTEST_FAILED); /* float32 uses tolerance_cosine */
    CHECK_STR(r3.failed_check, "image");
}

static void test_skipped_and_malformed(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    selftest_result r = run(&m, &t, "{\"format\":1,\"name\":\"old\"}");
    CHECK(r.status == SELFTEST_SKIPPED);
    CHECK(strstr(r.message, "re-export") != NULL);
    CHECK_EQ_INT(m.image_calls + m.text_calls + t.calls, 0);

    static const struct {
        const char *json;
        const char *needle;
    } bad[] = {
        {"not json", "not valid JSON"},
        {"{\"selftest\":[]}", "not an object"},
        {"{\"selftest\":{}}", "tolerance_cosine"},
        {"{\"selftest\":{\"tolerance_cosine\":1.5}}", "tolerance_cosine"},
        {"{\"selftest\":{\"tolerance_cosine\":0}}", "tolerance_cosine"},
        {"{\"selftest\":{\"tolerance_cosine\":\"0.9\"}}", "tolerance_cosine"},
        {"{\"selftest\":{\"tolerance_cosine\":0.9}}", "image_rule"},
        {"{\"selftest\":{\"tolerance_cosine\":0.9,\"image_rule\":\"gradient-v2: other\"}}", "gradient-v2"},
        {"{\"selftest\":{\"tolerance_cosine\":0.9,\"image_rule\":\"gradient-v1x\"}}", "image_rule"},
        {"{\"selftest\":{\"tolerance_cosine\":0.9,\"image_rule\":7}}", "image_rule"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        selftest_result b = run(&m, &t, bad[i].json);
        CHECK_MSG(b.status == SELFTEST_FAILED && b.failed_check && !strcmp(b.failed_check, "metadata") &&
                      strstr(b.message, bad[i].needle),
                  "case %zu: %s", i, b.message);
    }
    static const struct {
        const char *img, *texts, *needle;
    } bad2[] = {
        {"[1,2,3]", "[]", "image_feature has 3 values"},
        {"[1,2,3,4,5]", "[]", "image_feature has 5 values"},
        {"[1,2,\"3\",4]", "[]", "image_feature[2]"},
        {"[0,0,0,0]", "[]", "zero"},
        {"[1e308,1e308,1,1]", "[]", "overflowing"},
        {"{}", "[]", "image_feature is missing"},
        {IMG, "{}", "texts is missing"},
        {IMG, "[{\"ids\":[4],\"feature\":[1,2,3,4]}]", "texts[0].text"},
        {IMG, "[{\"text\":1,\"ids\":[4],\"feature\":[1,2,3,4]}]", "texts[0].text"},
        {IMG, "[{\"text\":\"\",\"ids\":[],\"feature\":[1,2,3,4]}]", "texts[0].ids has 0 ids"},
        {IMG, "[{\"text\":\"\",\"ids\":[4,5,6,7,8,9,10,11,12],\"feature\":[1,2,3,4]}]", "has 9 ids (expected 1..8)"},
        {IMG, "[{\"text\":\"\",\"ids\":[4,-1],\"feature\":[1,2,3,4]}]", "texts[0].ids[1]"},
        {IMG, "[{\"text\":\"\",\"ids\":[4,1.5],\"feature\":[1,2,3,4]}]", "texts[0].ids[1]"},
        {IMG, "[{\"text\":\"\",\"ids\":[4,1e20],\"feature\":[1,2,3,4]}]", "texts[0].ids[1]"},
        {IMG, "[{\"text\":\"\",\"ids\":[4,\"5\"],\"feature\":[1,2,3,4]}]", "texts[0].ids[1]"},
        {IMG, "[{\"text\":\"\",\"ids\":[4]}]", "texts[0].feature is missing"},
        {IMG, "[{\"text\":\"\",\"ids\":[4],\"feature\":[1,2]}]", "texts[0].feature has 2"},
        {IMG, "[1]", "texts[0].text"},
    };
    for (size_t i = 0; i < sizeof bad2 / sizeof bad2[0]; i++) {
        selftest_result b = run(&m, &t, section(RULE, bad2[i].img, bad2[i].texts, ""));
        CHECK_MSG(b.status == SELFTEST_FAILED && b.failed_check && !strcmp(b.failed_check, "metadata") &&
                      strstr(b.message, bad2[i].needle),
                  "case %zu: %s", i, b.message);
    }
    CHECK_EQ_INT(m.image_calls + m.text_calls + t.calls, 0); /* nothing ran on a bad section */

    /* too many texts; a text over the byte cap */
    char texts[8192] = "[";
    for (int i = 0; i <= SELFTEST_MAX_TEXTS; i++) {
        strncat(texts, i ? ",{\"text\":\"\",\"ids\":[4],\"feature\":[1,2,3,4]}" : "{\"text\":\"\",\"ids\":[4],\"feature\":[1,2,3,4]}",
                sizeof texts - strlen(texts) - 1);
    }
    strncat(texts, "]", sizeof texts - strlen(texts) - 1);
    char *json = malloc(16384);
    snprintf(json, 16384, "{\"selftest\":{\"image_rule\":" RULE ",\"tolerance_cosine\":0.9,\"image_feature\":" IMG
             ",\"texts\":%s}}", texts);
    selftest_result b = run(&m, &t, json);
    CHECK_MSG(b.failed_check && strstr(b.message, "17 texts, at most 16"), "%s", b.message);
    char longtext[SELFTEST_MAX_TEXT_BYTES + 2];
    memset(longtext, 'a', sizeof longtext - 1);
    longtext[sizeof longtext - 1] = '\0';
    snprintf(json, 16384, "{\"selftest\":{\"image_rule\":" RULE ",\"tolerance_cosine\":0.9,\"image_feature\":" IMG
             ",\"texts\":[{\"text\":\"%s\",\"ids\":[4],\"feature\":[1,2,3,4]}]}}", longtext);
    selftest_result b2 = run(&m, &t, json);
    CHECK_MSG(b2.failed_check && strstr(b2.message, "longer than 1024"), "%s", b2.message);
    free(json);
}

static void test_quote_text(void) {
    char q[48];
    quote_text("abc", 3, q);
    CHECK_STR(q, "abc");
    quote_text("a\"b\nc", 5, q);
    CHECK_STR(q, "a'b?c");
    /* 15 x "犬" (3 bytes each) = 45 bytes: cut after 13 characters (39 bytes), never mid-character */
    char s[64] = "";
    for (int i = 0; i < 15; i++) strncat(s, "犬", sizeof s - strlen(s) - 1);
    quote_text(s, strlen(s), q);
    CHECK_EQ_INT(strlen(q), 39 + 3);
    CHECK(strcmp(q + 39, "...") == 0);
    quote_text("\xff\xfe", 2, q);
    CHECK_STR(q, "??");
    quote_text("\xe7\x8a", 2, q); /* a truncated sequence */
    CHECK_STR(q, "??");
}

static void test_json_report(void) {
    cloob_model m;
    cloob_tokenizer t;
    fake_init(&m, &t, "float32");
    selftest_result r = run(&m, &t, section(RULE, IMG, TEXTS, ""));
    char *json = selftest_to_json(&r);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    CHECK(o != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, "status")), "passed");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "passed")));
    CHECK(cJSON_GetObjectItem(o, "failed_check") == NULL);
    cJSON *checks = cJSON_GetObjectItem(o, "checks");
    CHECK_EQ_INT(cJSON_GetArraySize(checks), 2);
    cJSON *t0 = cJSON_GetArrayItem(checks, 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t0, "name")), "texts[0]");
    CHECK_EQ_INT(cJSON_GetObjectItem(t0, "tokens")->valueint, 4);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(t0, "ids_match")));
    CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(checks, 0), "tokens") == NULL);
    cJSON_Delete(o);
    free(json);

    /* a metadata failure: no cosine was computed, so none is reported */
    selftest_result f = run(&m, &t, section(RULE, "[1]", TEXTS, ""));
    json = selftest_to_json(&f);
    o = json ? cJSON_Parse(json) : NULL;
    CHECK(o != NULL);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(o, "passed")));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(o, "failed_check")), "metadata");
    CHECK(cJSON_GetObjectItem(o, "worst_cosine") == NULL);
    cJSON_Delete(o);
    free(json);

    selftest_result d;
    memset(&d, 0, sizeof d);
    json = selftest_to_json(&d);
    CHECK(json && strcmp(json, "{\"status\":\"disabled\"}") == 0);
    free(json);
    selftest_result s = run(&m, &t, "{}");
    json = selftest_to_json(&s);
    CHECK(json && strstr(json, "\"status\":\"skipped\"") && strstr(json, "\"message\"") && !strstr(json, "passed"));
    free(json);
}

static void test_metadata_without_vectors(void) {
    const char *json = "{\"name\":\"m\",\"selftest\":{\"image_rule\":\"gradient-v1\",\"image_feature\":[1,2],"
                       "\"texts\":[{\"text\":\"a\",\"ids\":[4,5],\"feature\":[3,4]},7]}}";
    char *brief = selftest_metadata_without_vectors(json, strlen(json));
    CHECK_MSG(brief && strcmp(brief, "{\"name\":\"m\",\"selftest\":{\"image_rule\":\"gradient-v1\","
                                     "\"texts\":[{\"text\":\"a\",\"ids\":[4,5]},7]}}") == 0,
              "%s", brief ? brief : "(null)");
    free(brief);
    brief = selftest_metadata_without_vectors("{\"name\":\"old\"}", 14);
    CHECK(brief && strcmp(brief, "{\"name\":\"old\"}") == 0);
    free(brief);
    CHECK(selftest_metadata_without_vectors("{\"name\":", 8) == NULL);
    CHECK(selftest_metadata_without_vectors(NULL, 0) == NULL);
}

int main(void) {
    test_image_rule();
    test_pass();
    test_texts_are_batched_and_padded();
    test_tokenizer_mismatch_names_the_position();
    test_feature_mismatches();
    test_forward_failure();
    test_float16_tolerance();
    test_skipped_and_malformed();
    test_quote_text();
    test_json_report();
    test_metadata_without_vectors();
    TEST_MAIN_END();
}
