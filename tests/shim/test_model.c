/*
 * test_model.c - the TorchScript shim (shim/model_torch.cc) against the tiny random model.
 *
 *   test_model                       self-test on $CLOOB_TINY_MODEL (set by tests/test_c_programs.py;
 *                                    default build/models/tiny): info, encodes at several batch sizes
 *                                    and lengths, padding invariance, batch-vs-single, errors,
 *                                    warm-up, runtime description
 *   test_model --probe DIR...        for each DIR, one JSON line: load it on the CPU, encode two blank
 *                                    images and two [CLS] texts (batch 2: the load-time self-check
 *                                    uses batch 1), print {"load":status,"load_err":..,"image":..,
 *                                    "image_err":..,"text":..,"text_err":..}
 *                                    (tests/test_shim_model.py feeds it broken model directories)
 *   test_model --encode-image DIR IN OUT B        float32 pixels file -> float32 features file
 *   test_model --encode-text DIR IDS MASK OUT B L int64 files -> float32 features file
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cloob.h"
#include "testlib.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static int close_enough(const float *a, const float *b, size_t n, double tol) {
    for (size_t i = 0; i < n; i++) {
        if (fabs((double)a[i] - (double)b[i]) > tol * (1.0 + fabs((double)b[i]))) {
            fprintf(stderr, "  element %zu: %.8g vs %.8g\n", i, a[i], b[i]);
            return 0;
        }
    }
    return 1;
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* deterministic pixels in roughly the normalized range */
static void fill_pixels(float *p, size_t n, unsigned seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (float)((x >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }
}

static cloob_model *load_cpu(const char *dir, int num_threads) {
    cloob_model_params p = cloob_model_default_params();
    p.device = "cpu";
    p.num_threads = num_threads;
    cloob_model *m = NULL;
    char err[1024] = "";
    cloob_status st = cloob_model_load(dir, &p, &m, err, sizeof err);
    CHECK_MSG(st == CLOOB_OK, "load %s: %s: %s", dir, cloob_status_name(st), err);
    return m;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) return -1;
    fputs(text, f);
    return fclose(f);
}

/* ---- self-test parts ---------------------------------------------------------------------- */

static void test_info(const cloob_model *m) {
    const cloob_model_info *info = cloob_model_get_info(m);
    CHECK(info != NULL);
    if (info == NULL) return;
    CHECK(info->embed_dim > 0);
    CHECK_EQ_INT(info->image_size, 224);
    CHECK_EQ_INT(info->max_seq_len, 77);
    CHECK_EQ_INT(info->pad_id, 3);
    CHECK_EQ_INT(info->cls_id, 4);
    CHECK_EQ_INT(info->unk_id, 0);
    CHECK_EQ_INT(info->random_weights, 1);
    CHECK_STR(info->device, "cpu");
    CHECK_STR(info->dtype, "float32");
    CHECK_EQ_INT(strlen(info->model_sha256), 64);
    CHECK(strlen(info->name) > 0);
    CHECK_NEAR(info->mean[0], 0.48145466, 1e-7);
    CHECK_NEAR(info->std[2], 0.27577711, 1e-7);
    const char *meta = cloob_model_metadata_json(m);
    CHECK(meta != NULL && strstr(meta, "\"embed_dim\"") != NULL);
    CHECK(cloob_model_get_info(NULL) == NULL);
    CHECK(cloob_model_metadata_json(NULL) == NULL);
}

static void test_images(cloob_model *m) {
    const cloob_model_info *info = cloob_model_get_info(m);
    const size_t d = (size_t)info->embed_dim, per = 3u * (size_t)info->image_size * (size_t)info->image_size;
    float *pixels = malloc(4 * per * sizeof *pixels);
    float *batch = malloc(4 * d * sizeof *batch);
    float *single = malloc(d * sizeof *single);
    float *again = malloc(d * sizeof *again);
    char err[512] = "";
    if (!pixels || !batch || !single || !again) {
        CHECK(!"allocation");
        goto out;
    }
    for (unsigned k = 0; k < 4; k++) fill_pixels(pixels + k * per, per, k + 1);
    for (int b = 1; b <= 4; b++) {
        cloob_status st = cloob_model_encode_image(m, pixels, b, batch, err, sizeof err);
        CHECK_MSG(st == CLOOB_OK, "batch %d: %s", b, err);
    }
    /* batch 4 was the last: each row equals the image encoded alone */
    for (unsigned k = 0; k < 4; k++) {
        CHECK(cloob_model_encode_image(m, pixels + k * per, 1, single, err, sizeof err) == CLOOB_OK);
        CHECK_MSG(close_enough(batch + k * d, single, d, 1e-4), "image %u: batch vs single", k);
    }
    /* deterministic, and the features depend on the pixels */
    CHECK(cloob_model_encode_image(m, pixels, 1, again, err, sizeof err) == CLOOB_OK);
    CHECK(max_abs_diff(again, batch, d) <= 1e-5);
    CHECK_MSG(max_abs_diff(batch, batch + d, d) > 1e-4, "two different images gave the same features");
    float norm = 0;
    for (size_t i = 0; i < d; i++) norm += batch[i] * batch[i];
    CHECK(isfinite(norm) && norm > 0);
    /* the caller's pixels are untouched */
    float *copy = malloc(per * sizeof *copy);
    if (copy) {
        fill_pixels(copy, per, 1);
        CHECK(memcmp(copy, pixels, per * sizeof *copy) == 0);
        free(copy);
    }
out:
    free(pixels);
    free(batch);
    free(single);
    free(again);
}

/* rows: [CLS] + the given ids, padded with [PAD]/0 to seq_len */
static void make_text(const int64_t *toks, int n, int seq_len, int64_t *ids, int64_t *mask) {
    for (int i = 0; i < seq_len; i++) {
        ids[i] = i == 0 ? 4 : i <= n ? toks[i - 1] : 3;
        mask[i] = i <= n ? 1 : 0;
    }
}

static void test_texts(cloob_model *m) {
    const size_t d = (size_t)cloob_model_get_info(m)->embed_dim;
    static const int64_t dog[] = {9, 1651};
    static const int64_t photo[] = {9, 1651, 10478};
    static const int64_t long_text[] = {9, 22848, 463, 7375, 543, 9, 8493, 9, 26107, 9, 21942, 9, 10, 2666};
    const int64_t *texts[3] = {dog, photo, long_text};
    const int lens[3] = {2, 3, 14};
    int64_t ids[3 * 77], mask[3 * 77];
    float *feats77 = malloc(3 * d * sizeof(float)), *feats16 = malloc(3 * d * sizeof(float));
    float *one = malloc(d * sizeof(float));
    char err[512] = "";
    if (!feats77 || !feats16 || !one) {
        CHECK(!"allocation");
        goto out;
    }
    /* full 77-token rows, batch 3 */
    for (int r = 0; r < 3; r++) make_text(texts[r], lens[r], 77, ids + r * 77, mask + r * 77);
    CHECK_MSG(cloob_model_encode_text(m, ids, mask, 3, 77, feats77, err, sizeof err) == CLOOB_OK, "%s", err);
    /* the same rows cut to 16 tokens: padding must not matter */
    for (int r = 0; r < 3; r++) make_text(texts[r], lens[r], 16, ids + r * 16, mask + r * 16);
    CHECK_MSG(cloob_model_encode_text(m, ids, mask, 3, 16, feats16, err, sizeof err) == CLOOB_OK, "%s", err);
    CHECK_MSG(close_enough(feats16, feats77, 3 * d, 1e-4), "padding changed the features (16 vs 77 tokens)");
    /* each row alone, at its exact length (no padding at all) */
    for (int r = 0; r < 3; r++) {
        make_text(texts[r], lens[r], lens[r] + 1, ids, mask);
        CHECK(cloob_model_encode_text(m, ids, mask, 1, lens[r] + 1, one, err, sizeof err) == CLOOB_OK);
        CHECK_MSG(close_enough(one, feats77 + (size_t)r * d, d, 1e-4), "text %d alone vs in the batch", r);
    }
    /* [CLS] alone (seq_len 1) works; different texts differ */
    ids[0] = 4;
    mask[0] = 1;
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 1, one, err, sizeof err) == CLOOB_OK);
    CHECK(max_abs_diff(feats77, feats77 + d, d) > 1e-4);
    CHECK(max_abs_diff(one, feats77, d) > 1e-4);
out:
    free(feats77);
    free(feats16);
    free(one);
}

static void test_encode_errors(cloob_model *m) {
    const cloob_model_info *info = cloob_model_get_info(m);
    const size_t d = (size_t)info->embed_dim;
    float *out = calloc(d * 2, sizeof *out);
    float *pixels = calloc(3u * 224 * 224, sizeof *pixels);
    int64_t ids[77], mask[77];
    char err[512];
    make_text(NULL, 0, 77, ids, mask);
    CHECK(cloob_model_encode_image(NULL, pixels, 1, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_image(m, NULL, 1, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_image(m, pixels, 1, NULL, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_image(m, pixels, 0, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_image(m, pixels, -3, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_image(m, pixels, CLOOB_MAX_BATCH + 1, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_text(NULL, ids, mask, 1, 77, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_text(m, NULL, mask, 1, 77, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_text(m, ids, NULL, 1, 77, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 0, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 78, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(err, "seq_len") != NULL, "%s", err);
    ids[5] = 32000; /* vocabulary is 32000: one past the end */
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 77, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK_MSG(strstr(err, "32000") != NULL, "%s", err);
    ids[5] = -1;
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 77, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    ids[5] = 3;
    mask[5] = 2;
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 77, out, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    mask[5] = 0;
    /* the model still works after refused calls */
    CHECK(cloob_model_encode_text(m, ids, mask, 1, 77, out, err, sizeof err) == CLOOB_OK);
    /* tiny error buffers: NUL-terminated, nothing written past errlen, NULL allowed */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    CHECK(cloob_model_encode_image(m, pixels, 0, out, tiny, 1) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(tiny[0] == '\0' && tiny[1] == 'x');
    memset(tiny, 'x', sizeof tiny);
    CHECK(cloob_model_encode_image(m, pixels, 0, out, tiny, 5) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(strlen(tiny) == 4 && tiny[5] == 'x');
    CHECK(cloob_model_encode_image(m, pixels, 0, out, NULL, 0) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_encode_image(m, pixels, 0, out, tiny, 0) == CLOOB_ERR_INVALID_ARGUMENT);
    free(out);
    free(pixels);
}

static void test_warmup(cloob_model *m) {
    char err[512] = "";
    const int ib[] = {1, 2}, tb[] = {1, 3}, tl[] = {1, 8, 77};
    CHECK_MSG(cloob_model_warmup(m, ib, 2, tb, 2, tl, 3, err, sizeof err) == CLOOB_OK, "%s", err);
    CHECK(cloob_model_warmup(m, NULL, 0, NULL, 0, NULL, 0, err, sizeof err) == CLOOB_OK);
    const int bad_len[] = {78};
    CHECK(cloob_model_warmup(m, NULL, 0, tb, 1, bad_len, 1, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    const int bad_batch[] = {0};
    CHECK(cloob_model_warmup(m, bad_batch, 1, NULL, 0, NULL, 0, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_warmup(m, NULL, 1, NULL, 0, NULL, 0, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_warmup(NULL, NULL, 0, NULL, 0, NULL, 0, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
}

static int runtime_says_cuda(void) {
    char buf[4096];
    if (cloob_runtime_describe(buf, sizeof buf) != CLOOB_OK) return 0;
    return strstr(buf, "\"cuda_available\":true") != NULL;
}

static void test_load_errors(const char *tiny_dir) {
    char err[1024];
    cloob_model *m = (cloob_model *)1;
    cloob_model_params p = cloob_model_default_params();
    CHECK_STR(p.device, "auto");
    CHECK_EQ_INT(p.half, 0);
    CHECK_EQ_INT(p.num_threads, 0);
    p.device = "cpu";

    CHECK(cloob_model_load("/nonexistent/model-dir", &p, &m, err, sizeof err) == CLOOB_ERR_IO);
    CHECK(m == NULL);
    CHECK_MSG(strstr(err, "/nonexistent/model-dir/cloob.json") != NULL, "%s", err);
    CHECK(cloob_model_load(NULL, &p, &m, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_model_load(tiny_dir, &p, NULL, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);

    static const char *bad_devices[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:0x", "CPU", "cudaa", "cuda:99999"};
    for (size_t k = 0; k < sizeof bad_devices / sizeof bad_devices[0]; k++) {
        p.device = bad_devices[k];
        cloob_status st = cloob_model_load(tiny_dir, &p, &m, err, sizeof err);
        CHECK_MSG(st == CLOOB_ERR_INVALID_ARGUMENT, "device \"%s\": %s", bad_devices[k], cloob_status_name(st));
    }
    if (!runtime_says_cuda()) {
        static const char *gpu[] = {"cuda", "cuda:0", "cuda:1"};
        for (size_t k = 0; k < 3; k++) {
            p.device = gpu[k];
            CHECK(cloob_model_load(tiny_dir, &p, &m, err, sizeof err) == CLOOB_ERR_DEVICE);
            CHECK_MSG(strstr(err, "CUDA") != NULL, "%s", err);
            CHECK(m == NULL);
        }
    }
    p.device = "cpu";
    p.num_threads = -1;
    CHECK(cloob_model_load(tiny_dir, &p, &m, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    p.num_threads = 0;

    /* a directory with cloob.json but no model.pt: IO naming model.pt */
    char tmpl[] = "/tmp/cloob-test-model-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    if (dir == NULL) return;
    char path[512], src[512];
    snprintf(path, sizeof path, "%s/cloob.json", dir);
    snprintf(src, sizeof src, "%s/cloob.json", tiny_dir);
    FILE *in = fopen(src, "rb");
    char *json = calloc(1, 1 << 20);
    if (in && json) {
        size_t n = fread(json, 1, (1 << 20) - 1, in);
        json[n] = '\0';
        CHECK(write_file(path, json) == 0);
        CHECK(cloob_model_load(dir, &p, &m, err, sizeof err) == CLOOB_ERR_IO);
        CHECK_MSG(strstr(err, "model.pt") != NULL, "%s", err);
    }
    if (in) fclose(in);
    free(json);
    /* malformed cloob.json: MODEL naming the file / the field */
    CHECK(write_file(path, "{\"format\": 1, \"name\": \"x\"") == 0);
    CHECK(cloob_model_load(dir, &p, &m, err, sizeof err) == CLOOB_ERR_MODEL);
    CHECK_MSG(strstr(err, "cloob.json") != NULL, "%s", err);
    CHECK(write_file(path, "{\"format\": 2}") == 0);
    CHECK(cloob_model_load(dir, &p, &m, err, sizeof err) == CLOOB_ERR_MODEL);
    CHECK_MSG(strstr(err, "format") != NULL, "%s", err);
    CHECK(write_file(path, "{\"format\": 1, \"name\": \"x\", \"embed_dim\": -4}") == 0);
    CHECK(cloob_model_load(dir, &p, &m, err, sizeof err) == CLOOB_ERR_MODEL);
    CHECK_MSG(strstr(err, "embed_dim") != NULL, "%s", err);
    /* tiny error buffer on a long message */
    char tiny[6];
    memset(tiny, 'x', sizeof tiny);
    CHECK(cloob_model_load(dir, &p, &m, tiny, 4) == CLOOB_ERR_MODEL);
    CHECK(strlen(tiny) == 3 && tiny[4] == 'x');
    unlink(path);
    rmdir(dir);
    cloob_model_free(NULL);
}

static void test_runtime(void) {
    char buf[4096];
    CHECK(cloob_runtime_describe(buf, sizeof buf) == CLOOB_OK);
    cJSON *o = cJSON_Parse(buf);
    CHECK_MSG(o != NULL, "not JSON: %s", buf);
    if (o != NULL) {
        CHECK(strchr(buf, '\n') == NULL);
        const cJSON *torch = cJSON_GetObjectItem(o, "torch");
        CHECK(cJSON_IsString(torch) && strncmp(torch->valuestring, "1.", 2) == 0);
        CHECK(cJSON_IsBool(cJSON_GetObjectItem(o, "cuda_available")));
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "cuda_devices")));
        const cJSON *kind = cJSON_GetObjectItem(o, "blas_kind");
        CHECK_MSG(cJSON_IsString(kind) && strcmp(kind->valuestring, "openblas") == 0, "%s", buf);
        const cJSON *blas = cJSON_GetObjectItem(o, "blas");
        CHECK_MSG(cJSON_IsString(blas) && strstr(blas->valuestring, "openblas") != NULL, "%s", buf);
        const cJSON *cfg = cJSON_GetObjectItem(o, "blas_config");
        CHECK_MSG(cJSON_IsString(cfg) && strstr(cfg->valuestring, "OpenBLAS") != NULL, "%s", buf);
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "blas_threads")));
        const cJSON *intra = cJSON_GetObjectItem(o, "intra_op_threads");
        CHECK(cJSON_IsNumber(intra) && intra->valuedouble >= 1);
        CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "inter_op_threads")));
        cJSON_Delete(o);
    }
    char small[16];
    memset(small, 'x', sizeof small);
    CHECK(cloob_runtime_describe(small, sizeof small) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(small[0] == '\0');
    CHECK(cloob_runtime_describe(NULL, 100) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_runtime_describe(small, 0) == CLOOB_ERR_INVALID_ARGUMENT);
}

/* With OpenBLAS, num_threads goes to OpenBLAS and libtorch's own pool keeps 1 thread (the two
 * pools fight over the cores otherwise: see set_cpu_threads in model_torch.cc). */
static void test_num_threads(const char *dir) {
    cloob_model *m = load_cpu(dir, 2);
    char buf[4096];
    CHECK(cloob_runtime_describe(buf, sizeof buf) == CLOOB_OK);
    CHECK_MSG(strstr(buf, "\"blas_kind\":\"openblas\"") != NULL, "%s", buf);
    CHECK_MSG(strstr(buf, "\"intra_op_threads\":1,") != NULL, "%s", buf);
    CHECK_MSG(strstr(buf, "\"blas_threads\":2,") != NULL, "%s", buf);
    cloob_model_free(m);
}

/* ---- modes for tests/test_shim_model.py --------------------------------------------------- */

static void print_json_string(const char *key, const char *s) {
    cJSON *v = cJSON_CreateString(s);
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    printf("\"%s\":%s", key, t ? t : "\"\"");
    cJSON_free(t);
    cJSON_Delete(v);
}

static int run_probe(const char *dir) {
    cloob_model_params p = cloob_model_default_params();
    p.device = "cpu";
    cloob_model *m = NULL;
    char err[2048] = "";
    cloob_status st = cloob_model_load(dir, &p, &m, err, sizeof err);
    printf("{\"load\":\"%s\",", cloob_status_name(st));
    print_json_string("load_err", err);
    if (st == CLOOB_OK) {
        const cloob_model_info *info = cloob_model_get_info(m);
        size_t d = (size_t)info->embed_dim, s = (size_t)info->image_size;
        float *pixels = calloc(2 * 3 * s * s, sizeof *pixels), *out = calloc(2 * d, sizeof *out);
        err[0] = '\0';
        st = pixels && out ? cloob_model_encode_image(m, pixels, 2, out, err, sizeof err) : CLOOB_ERR_OUT_OF_MEMORY;
        printf(",\"image\":\"%s\",", cloob_status_name(st));
        print_json_string("image_err", err);
        int64_t ids[4] = {info->cls_id, info->pad_id, info->cls_id, info->pad_id}, mask[4] = {1, 0, 1, 0};
        err[0] = '\0';
        st = out ? cloob_model_encode_text(m, ids, mask, 2, 2, out, err, sizeof err) : CLOOB_ERR_OUT_OF_MEMORY;
        printf(",\"text\":\"%s\",", cloob_status_name(st));
        print_json_string("text_err", err);
        free(pixels);
        free(out);
        cloob_model_free(m);
    }
    printf("}\n");
    return 0;
}

static void *read_all(const char *path, size_t want) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    void *buf = malloc(want ? want : 1);
    if (buf && fread(buf, 1, want, f) != want) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

static int parse_pos(const char *s, long max) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return (end == s || *end != '\0' || v < 1 || v > max) ? -1 : (int)v;
}

static int run_encode(int argc, char **argv) {
    int image = strcmp(argv[1], "--encode-image") == 0;
    if ((image && argc != 6) || (!image && argc != 8)) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    cloob_model *m = load_cpu(argv[2], 0);
    if (m == NULL) return 1;
    const cloob_model_info *info = cloob_model_get_info(m);
    size_t d = (size_t)info->embed_dim, s = (size_t)info->image_size;
    int b = parse_pos(argv[image ? 5 : 6], CLOOB_MAX_BATCH);
    int l = image ? 1 : parse_pos(argv[7], info->max_seq_len);
    const char *out_path = argv[image ? 4 : 5];
    float *out = b > 0 ? malloc((size_t)b * d * sizeof *out) : NULL;
    char err[1024] = "";
    cloob_status st = CLOOB_ERR_INVALID_ARGUMENT;
    if (out && l > 0 && image) {
        float *pixels = read_all(argv[3], (size_t)b * 3 * s * s * sizeof(float));
        if (pixels) st = cloob_model_encode_image(m, pixels, b, out, err, sizeof err);
        free(pixels);
    } else if (out && l > 0) {
        int64_t *ids = read_all(argv[3], (size_t)b * (size_t)l * sizeof(int64_t));
        int64_t *mask = read_all(argv[4], (size_t)b * (size_t)l * sizeof(int64_t));
        if (ids && mask) st = cloob_model_encode_text(m, ids, mask, b, l, out, err, sizeof err);
        free(ids);
        free(mask);
    }
    int rc = 1;
    if (st == CLOOB_OK) {
        FILE *f = fopen(out_path, "wb");
        if (f && fwrite(out, sizeof *out, (size_t)b * d, f) == (size_t)b * d) rc = 0;
        if (f) fclose(f);
    } else {
        fprintf(stderr, "encode: %s: %s\n", cloob_status_name(st), err);
    }
    free(out);
    cloob_model_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--probe") == 0) {
        for (int i = 2; i < argc; i++) run_probe(argv[i]);
        return 0;
    }
    if (argc >= 2 && strncmp(argv[1], "--encode-", 9) == 0) return run_encode(argc, argv);

    const char *dir = getenv("CLOOB_TINY_MODEL");
    if (dir == NULL || dir[0] == '\0') dir = "build/models/tiny";
    test_runtime();
    cloob_model *m = load_cpu(dir, 0);
    if (m == NULL) TEST_MAIN_END();
    test_info(m);
    test_images(m);
    test_texts(m);
    test_encode_errors(m);
    test_warmup(m);
    cloob_model_free(m);
    test_load_errors(dir);
    test_num_threads(dir);
    TEST_MAIN_END();
}
