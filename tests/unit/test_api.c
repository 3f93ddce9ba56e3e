/*
 * test_api.c - request parsing/validation, response writing and /classify arithmetic of
 * server/api.c, without a server or a model (also runs under ASan/UBSan).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base64.h"
#include "testlib.h"

static const api_limits k_lim = {
    .max_images = 4, .max_texts = 3, .max_text_bytes = 32, .max_labels = 3, .max_templates = 2,
    .default_truncate = 1, .default_scale = 100.0,
};

static int parse_text(const char *body, api_request *r, api_error *e) {
    return api_parse_embed_text(body, strlen(body), &k_lim, r, e);
}

static void test_error_table(void) {
    CHECK_EQ_INT(api_err_status(API_ERR_BAD_JSON), 400);
    CHECK_EQ_INT(api_err_status(API_ERR_UNAUTHORIZED), 401);
    CHECK_EQ_INT(api_err_status(API_ERR_NOT_FOUND), 404);
    CHECK_EQ_INT(api_err_status(API_ERR_METHOD), 405);
    CHECK_EQ_INT(api_err_status(API_ERR_BODY_TOO_LARGE), 413);
    CHECK_EQ_INT(api_err_status(API_ERR_IMAGE_FORMAT), 415);
    CHECK_EQ_INT(api_err_status(API_ERR_IMAGE_DECODE), 422);
    CHECK_EQ_INT(api_err_status(API_ERR_TOO_MANY_ITEMS), 422);
    CHECK_EQ_INT(api_err_status(API_ERR_QUEUE_FULL), 429);
    CHECK_EQ_INT(api_err_status(API_ERR_DRAINING), 503);
    CHECK_EQ_INT(api_err_status(API_ERR_DEADLINE), 504);
    CHECK_EQ_INT(api_err_status(API_ERR_INTERNAL), 500);
    CHECK_EQ_INT(api_err_status((api_err)999), 500);
    for (int e = 0; e < API_ERR_COUNT; e++) CHECK(api_err_type((api_err)e)[0] != '\0');
    CHECK_STR(api_err_type(API_ERR_QUEUE_FULL), "queue_full");
}

static void test_parse_text(void) {
    api_request r;
    api_error e;
    CHECK_EQ_INT(parse_text("{\"texts\":[\"a\",\"bc\"]}", &r, &e), 0);
    CHECK_EQ_INT(r.n_texts, 2);
    CHECK_EQ_INT((int)r.texts[1].len, 2);
    CHECK(memcmp(r.texts[1].data, "bc", 2) == 0);
    CHECK_EQ_INT(r.normalize, 1);
    CHECK_EQ_INT(r.truncate, 1);
    CHECK_EQ_INT(r.encoding, API_ENCODING_FLOAT);
    api_request_free(&r);

    CHECK_EQ_INT(parse_text("{\"text\":\"x\",\"normalize\":false,\"encoding_format\":\"base64\",\"truncate\":false}", &r, &e), 0);
    CHECK_EQ_INT(r.n_texts, 1);
    CHECK_EQ_INT(r.normalize, 0);
    CHECK_EQ_INT(r.truncate, 0);
    CHECK_EQ_INT(r.encoding, API_ENCODING_BASE64);
    api_request_free(&r);

    /* Each malformed body -> the right error kind, and nothing to leak (ASan checks). */
    static const struct {
        const char *body;
        api_err code;
    } bad[] = {
        {"", API_ERR_BAD_JSON},
        {"{", API_ERR_BAD_JSON},
        {"[1]", API_ERR_BAD_JSON},
        {"{\"texts\":[\"a\"]} x", API_ERR_BAD_JSON},
        {"{}", API_ERR_BAD_FIELD},
        {"{\"texts\":[]}", API_ERR_BAD_FIELD},
        {"{\"texts\":\"a\"}", API_ERR_BAD_FIELD},
        {"{\"texts\":[1]}", API_ERR_BAD_FIELD},
        {"{\"texts\":[\"a\"],\"text\":\"b\"}", API_ERR_BAD_FIELD},
        {"{\"texts\":[\"a\",\"b\",\"c\",\"d\"]}", API_ERR_TOO_MANY_ITEMS},
        {"{\"texts\":[\"0123456789012345678901234567890123\"]}", API_ERR_TEXT_TOO_LONG},
        {"{\"texts\":[\"a\"],\"normalize\":1}", API_ERR_BAD_FIELD},
        {"{\"texts\":[\"a\"],\"encoding_format\":\"hex\"}", API_ERR_BAD_FIELD},
        {"{\"texts\":[\"a\"],\"truncate\":\"no\"}", API_ERR_BAD_FIELD},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = parse_text(bad[i].body, &r, &e);
        CHECK_MSG(rc == -1 && e.code == bad[i].code, "%s -> rc %d code %d", bad[i].body, rc, (int)e.code);
        CHECK(e.message[0] != '\0');
        CHECK(r.json_root == NULL && r.texts == NULL);
    }
    /* The message names the field and index. */
    parse_text("{\"texts\":[\"a\",7]}", &r, &e);
    CHECK(strstr(e.message, "texts[1]") != NULL);
    /* A body that is not NUL-terminated is read only within its length. */
    const char buf[] = "{\"texts\":[\"ab\"]}GARBAGE";
    CHECK_EQ_INT(api_parse_embed_text(buf, 16, &k_lim, &r, &e), 0);
    api_request_free(&r);
}

static void test_parse_images_and_data_uri(void) {
    api_request r;
    api_error e;
    const char *body = "{\"images\":[\"QUJD\",\"data:image/png;base64,REVG\"]}";
    CHECK_EQ_INT(api_parse_embed_image(body, strlen(body), &k_lim, &r, &e), 0);
    CHECK_EQ_INT(r.n_images, 2);
    CHECK(r.images[0].len == 4 && memcmp(r.images[0].data, "QUJD", 4) == 0);
    CHECK(r.images[1].len == 4 && memcmp(r.images[1].data, "REVG", 4) == 0);
    api_request_free(&r);
    body = "{\"image\":\"data:image/png,REVG\"}";
    CHECK_EQ_INT(api_parse_embed_image(body, strlen(body), &k_lim, &r, &e), -1);
    CHECK_EQ_INT(e.code, API_ERR_BAD_BASE64);
    body = "{\"images\":[\"\"]}";
    CHECK_EQ_INT(api_parse_embed_image(body, strlen(body), &k_lim, &r, &e), -1);
    CHECK_EQ_INT(e.code, API_ERR_BAD_FIELD);
    body = "{\"images\":[\"a\",\"a\",\"a\",\"a\",\"a\"]}";
    CHECK_EQ_INT(api_parse_embed_image(body, strlen(body), &k_lim, &r, &e), -1);
    CHECK_EQ_INT(e.code, API_ERR_TOO_MANY_ITEMS);

    const char raw[] = "\xff\xd8\xff";
    CHECK_EQ_INT(api_raw_image_request(raw, 3, "false", "base64", &r, &e), 0);
    CHECK(r.raw_images == 1 && r.n_images == 1 && r.images[0].data == raw && r.normalize == 0);
    CHECK_EQ_INT(r.encoding, API_ENCODING_BASE64);
    api_request_free(&r);
    CHECK_EQ_INT(api_raw_image_request(raw, 3, "perhaps", NULL, &r, &e), -1);
    CHECK_EQ_INT(api_raw_image_request(raw, 0, NULL, NULL, &r, &e), -1);
}

static void test_parse_classify(void) {
    api_request r;
    api_error e;
    const char *body = "{\"image\":\"QUJD\",\"labels\":[\"犬\",\"猫\"],\"templates\":[\"{}の写真\"],\"top_k\":5,\"scale\":50}";
    CHECK_EQ_INT(api_parse_classify(body, strlen(body), &k_lim, &r, &e), 0);
    CHECK_EQ_INT(r.n_labels, 2);
    CHECK_EQ_INT(r.top_k, 2); /* capped to the labels */
    CHECK(r.scale == 50.0);
    char out[64];
    int n = api_apply_template(&r.templates[0], &r.labels[0], out, sizeof out);
    CHECK_EQ_INT(n, (int)strlen("犬の写真"));
    CHECK_STR(out, "犬の写真");
    CHECK_EQ_INT(api_apply_template(&r.templates[0], &r.labels[0], out, 4), -1);
    api_request_free(&r);
    body = "{\"image\":\"QUJD\",\"labels\":[\"a\"]}";
    CHECK_EQ_INT(api_parse_classify(body, strlen(body), &k_lim, &r, &e), 0);
    CHECK(r.n_templates == 1 && r.templates[0].len == 2 && r.scale == 100.0 && r.top_k == 1);
    api_request_free(&r);
    static const char *bad[] = {
        "{\"image\":\"QUJD\"}",
        "{\"image\":\"QUJD\",\"labels\":[\"\"]}",
        "{\"image\":\"QUJD\",\"labels\":[\"a\"],\"templates\":[\"x\"]}",
        "{\"image\":\"QUJD\",\"labels\":[\"a\"],\"templates\":[\"{}{}\"]}",
        "{\"image\":\"QUJD\",\"labels\":[\"a\"],\"top_k\":1.5}",
        "{\"image\":\"QUJD\",\"labels\":[\"a\"],\"top_k\":0}",
        "{\"image\":\"QUJD\",\"labels\":[\"a\"],\"scale\":0}",
        "{\"image\":\"QUJD\",\"labels\":[\"a\"],\"scale\":\"1\"}",
        "{\"labels\":[\"a\"]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(api_parse_classify(bad[i], strlen(bad[i]), &k_lim, &r, &e) == -1, "%s", bad[i]);
        CHECK_MSG(e.code == API_ERR_BAD_FIELD, "%s -> %d", bad[i], (int)e.code);
    }
    body = "{\"image\":\"QUJD\",\"labels\":[\"a\",\"b\",\"c\",\"d\"]}";
    CHECK_EQ_INT(api_parse_classify(body, strlen(body), &k_lim, &r, &e), -1);
    CHECK_EQ_INT(e.code, API_ERR_TOO_MANY_ITEMS);
}

static void test_content_type(void) {
    CHECK_EQ_INT(api_content_type_kind(NULL), API_CONTENT_JSON);
    CHECK_EQ_INT(api_content_type_kind("application/json; charset=utf-8"), API_CONTENT_JSON);
    CHECK_EQ_INT(api_content_type_kind("Application/JSON"), API_CONTENT_JSON);
    CHECK_EQ_INT(api_content_type_kind("application/x-www-form-urlencoded"), API_CONTENT_JSON);
    CHECK_EQ_INT(api_content_type_kind("application/vnd.api+json"), API_CONTENT_JSON);
    CHECK_EQ_INT(api_content_type_kind("image/jpeg"), API_CONTENT_IMAGE);
    CHECK_EQ_INT(api_content_type_kind("application/octet-stream"), API_CONTENT_IMAGE);
    CHECK_EQ_INT(api_content_type_kind("text/plain"), API_CONTENT_OTHER);
    CHECK_EQ_INT(api_content_type_kind("image/"), API_CONTENT_OTHER);
}

static void test_jbuf(void) {
    jbuf b;
    jbuf_init(&b, 10);
    CHECK_EQ_INT(jbuf_puts(&b, "12345"), 0);
    CHECK_EQ_INT(jbuf_puts(&b, "67890"), 0);
    CHECK_EQ_INT((int)b.len, 10);
    CHECK_EQ_INT(jbuf_puts(&b, "x"), -1); /* cap reached: sticky overflow */
    CHECK(b.overflow);
    CHECK_EQ_INT(jbuf_puts(&b, ""), -1);
    jbuf_free(&b);

    jbuf_init(&b, 1 << 20);
    jbuf_json_string(&b, "a\"\\\n\x01\x7f\xff\xe7\x8a\xac", 10);
    /* the lone 0xff becomes U+FFFD; the valid UTF-8 for 犬 is kept */
    CHECK_STR(b.p, "\"a\\\"\\\\\\n\\u0001\\u007f\\ufffd犬\"");
    cJSON *j = cJSON_Parse(b.p);
    CHECK(j != NULL && cJSON_IsString(j));
    cJSON_Delete(j);
    jbuf_free(&b);

    /* floats round-trip exactly, non-finite values become null */
    jbuf_init(&b, 1 << 20);
    float vals[] = {0.1f, -1.0f / 3.0f, 1e-30f, 3.4028235e38f, -0.0f, 1.0f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        b.len = 0;
        jbuf_float(&b, vals[i]);
        CHECK_MSG(strtof(b.p, NULL) == vals[i], "%s", b.p);
    }
    b.len = 0;
    jbuf_float(&b, NAN);
    CHECK_STR(b.p, "null");
    jbuf_free(&b);
}

static void test_write_embeddings(void) {
    float emb[2 * 3] = {1, 0, 0, 0.5f, -0.25f, 0.125f};
    api_model_desc md = {"m\"x", "abc", "float32", 3};
    api_text_stats st[2] = {{3, 0}, {77, 1}};
    jbuf b;
    jbuf_init(&b, 1 << 20);
    CHECK_EQ_INT(api_write_embeddings(&b, &md, emb, 2, 1, API_ENCODING_FLOAT, st), 0);
    cJSON *j = cJSON_Parse(b.p);
    CHECK(j != NULL);
    if (j) {
        CHECK_STR(cJSON_GetObjectItem(j, "model")->valuestring, "m\"x");
        CHECK_EQ_INT(cJSON_GetObjectItem(j, "dimension")->valueint, 3);
        cJSON *d1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 1);
        CHECK_EQ_INT(cJSON_GetObjectItem(d1, "tokens")->valueint, 77);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(d1, "truncated")));
        CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(d1, "embedding"), 1)->valuedouble == -0.25);
        cJSON_Delete(j);
    }
    jbuf_free(&b);

    jbuf_init(&b, 1 << 20);
    CHECK_EQ_INT(api_write_embeddings(&b, &md, emb, 2, 0, API_ENCODING_BASE64, NULL), 0);
    j = cJSON_Parse(b.p);
    CHECK(j != NULL);
    if (j) {
        const char *s = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 1), "embedding")->valuestring;
        uint8_t raw[12];
        size_t n = 0;
        CHECK_EQ_INT(base64_decode(s, strlen(s), raw, sizeof raw, &n, NULL), BASE64_OK);
        CHECK_EQ_INT((int)n, 12);
        float back[3];
        for (int i = 0; i < 3; i++) {
            uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
                         (uint32_t)raw[4 * i + 3] << 24;
            memcpy(&back[i], &u, 4);
        }
        CHECK(back[0] == 0.5f && back[1] == -0.25f && back[2] == 0.125f);
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "data"), 0), "tokens") == NULL);
        cJSON_Delete(j);
    }
    jbuf_free(&b);

    /* A response over the cap fails cleanly. */
    jbuf_init(&b, 64);
    CHECK_EQ_INT(api_write_embeddings(&b, &md, emb, 2, 1, API_ENCODING_FLOAT, NULL), -1);
    jbuf_free(&b);

    api_error e = {API_ERR_QUEUE_FULL, "busy \"now\""};
    jbuf_init(&b, 4096);
    api_write_error(&b, &e);
    CHECK_STR(b.p, "{\"error\":{\"code\":429,\"type\":\"queue_full\",\"message\":\"busy \\\"now\\\"\"}}");
    jbuf_free(&b);
}

static void test_classify_scores(void) {
    /* image = e0; labels: e0, e1, (e0+e1)/sqrt2 */
    float img[2] = {1, 0};
    float lab[3 * 2] = {1, 0, 0, 1, (float)M_SQRT1_2, (float)M_SQRT1_2};
    double work[6];
    api_label_score all[3], out[3];
    api_classify_scores(img, lab, 3, 2, 10.0, 3, work, all, out);
    double z = exp(10.0) + exp(0.0) + exp(10.0 * M_SQRT1_2);
    CHECK_EQ_INT(out[0].label, 0);
    CHECK_EQ_INT(out[1].label, 2);
    CHECK_EQ_INT(out[2].label, 1);
    CHECK_NEAR(out[0].probability, exp(10.0) / z, 1e-6); /* the labels are float32 */
    CHECK_NEAR(out[2].probability, 1.0 / z, 1e-6);
    CHECK_NEAR(out[1].similarity, M_SQRT1_2, 1e-6);
    CHECK_NEAR(out[0].probability + out[1].probability + out[2].probability, 1.0, 1e-12);
    /* ties keep label order; top_k trims */
    float lab2[2 * 2] = {0, 1, 0, 1};
    api_classify_scores(img, lab2, 2, 2, 100.0, 1, work, all, out);
    CHECK_EQ_INT(out[0].label, 0);
    CHECK_NEAR(out[0].probability, 0.5, 1e-12);
    /* huge scale does not overflow */
    api_classify_scores(img, lab, 3, 2, 1e4, 3, work, all, out);
    CHECK(isfinite(out[0].probability) && out[0].probability > 0.999);

    float v[3] = {3, 0, 4};
    api_l2_normalize(v, 3);
    CHECK_NEAR(v[0], 0.6, 1e-7);
    CHECK_NEAR(v[2], 0.8, 1e-7);
    float zero[2] = {0, 0};
    api_l2_normalize(zero, 2);
    CHECK(zero[0] == 0 && zero[1] == 0);
}

int main(void) {
    test_error_table();
    test_parse_text();
    test_parse_images_and_data_uri();
    test_parse_classify();
    test_content_type();
    test_jbuf();
    test_write_embeddings();
    test_classify_scores();
    TEST_MAIN_END();
}
