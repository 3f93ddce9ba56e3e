/*
 * fuzz_api.c - libFuzzer target for the request parsers of server/api.c: the first byte picks
 * the endpoint (embed image / embed text / classify), the rest is the body. Accepted requests
 * are also pushed through the response writers and the template expansion, so every pointer the
 * parser hands out is exercised under ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.c"
#include "base64.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const api_limits lim = {.max_images = 8, .max_texts = 8, .max_text_bytes = 256, .max_labels = 8,
                                   .max_templates = 4, .default_truncate = 1, .default_scale = 100};
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    api_request r;
    api_error e;
    int rc;
    switch (data[0] % 3) {
    case 0: rc = api_parse_embed_image(body, len, &lim, &r, &e); break;
    case 1: rc = api_parse_embed_text(body, len, &lim, &r, &e); break;
    default: rc = api_parse_classify(body, len, &lim, &r, &e); break;
    }
    jbuf b;
    jbuf_init(&b, 1 << 20);
    if (rc != 0) {
        api_write_error(&b, &e);
        jbuf_free(&b);
        return 0;
    }
    int n = r.n_images + r.n_texts;
    float emb[8 * 2 * 4];
    for (int i = 0; i < n * 4 && i < (int)(sizeof emb / sizeof emb[0]); i++) emb[i] = (float)i * 0.25f;
    api_model_desc md = {"m", "s", "float32", 4};
    api_write_embeddings(&b, &md, emb, n < 16 ? n : 16, 1, r.encoding, NULL);
    for (int l = 0; l < r.n_labels; l++) {
        for (int t = 0; t < r.n_templates; t++) {
            char out[600];
            api_apply_template(&r.templates[t], &r.labels[l], out, sizeof out);
        }
    }
    if (r.n_labels > 0) {
        api_label_score sc[8];
        for (int k = 0; k < r.top_k; k++) sc[k] = (api_label_score){k, 0.5, 0.1};
        api_write_classify(&b, &md, &r, sc, 1);
    }
    for (int i = 0; i < r.n_texts; i++) jbuf_json_string(&b, r.texts[i].data, r.texts[i].len);
    jbuf_free(&b);
    api_request_free(&r);
    return 0;
}
