/*
 * bench_model: the model's own batched throughput, no HTTP, no preprocessing - the ceiling the
 * server's numbers are compared with in `make bench`.
 *
 *   bench_model --model DIR [--device D] [--threads N] [--image-batches 1,8,16] [--text-batches 1,32]
 *               [--text-len 12] [--seconds 5]
 * Prints one JSON object per line: {"modality":"image","batch":8,"iters":..,"items_per_s":..,
 * "ms_per_batch":..}. Inputs are constant tensors (the pass costs the same for any values).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloob.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 1 || v > 4096) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *device = "auto";
    int threads = 0, text_len = 12;
    double seconds = 5;
    int ib[16] = {1, 8, 16}, nib = 3, tb[16] = {1, 32, 64}, ntb = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_model: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--threads")) threads = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--text-len")) text_len = (int)strtol(v, NULL, 10);
        else if (!strcmp(a, "--seconds")) seconds = strtod(v, NULL);
        else if (!strcmp(a, "--image-batches")) nib = parse_list(v, ib, 16);
        else if (!strcmp(a, "--text-batches")) ntb = parse_list(v, tb, 16);
        else {
            fprintf(stderr, "bench_model: unknown option %s\n", a);
            return 2;
        }
    }
    if (!model_dir || nib < 0 || ntb < 0 || text_len < 1 || text_len > 77 || seconds <= 0) {
        fprintf(stderr, "usage: bench_model --model DIR [--device D] [--threads N] "
                        "[--image-batches 1,8] [--text-batches 1,32] [--text-len 12] [--seconds 5]\n");
        return 2;
    }
    char err[1024];
    cloob_model *m = NULL;
    cloob_model_params p = cloob_model_default_params();
    p.device = device;
    p.num_threads = threads;
    if (cloob_model_load(model_dir, &p, &m, err, sizeof err) != CLOOB_OK) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 3;
    }
    const cloob_model_info *info = cloob_model_get_info(m);
    char rt[2048];
    if (cloob_runtime_describe(rt, sizeof rt) == CLOOB_OK) printf("{\"runtime\":%s}\n", rt);
    int maxb = 1;
    for (int i = 0; i < nib; i++) maxb = ib[i] > maxb ? ib[i] : maxb;
    for (int i = 0; i < ntb; i++) maxb = tb[i] > maxb ? tb[i] : maxb;
    size_t per_image = 3u * (size_t)info->image_size * (size_t)info->image_size;
    float *pixels = calloc(per_image * (size_t)maxb, sizeof(float));
    float *out = calloc((size_t)info->embed_dim * (size_t)maxb, sizeof(float));
    int64_t *ids = calloc((size_t)text_len * (size_t)maxb, sizeof(int64_t));
    int64_t *mask = calloc((size_t)text_len * (size_t)maxb, sizeof(int64_t));
    if (!pixels || !out || !ids || !mask) return 4;
    for (size_t k = 0; k < (size_t)text_len * (size_t)maxb; k++) {
        ids[k] = (k % (size_t)text_len) == 0 ? info->cls_id : 100 + (int64_t)(k % 997);
        mask[k] = 1;
    }
    for (int pass = 0; pass < 2; pass++) {
        int n = pass == 0 ? nib : ntb;
        for (int i = 0; i < n; i++) {
            int b = pass == 0 ? ib[i] : tb[i];
            /* one untimed warm-up pass per shape */
            cloob_status st = pass == 0
                ? cloob_model_encode_image(m, pixels, b, out, err, sizeof err)
                : cloob_model_encode_text(m, ids, mask, b, text_len, out, err, sizeof err);
            if (st != CLOOB_OK) {
                fprintf(stderr, "bench_model: %s\n", err);
                return 3;
            }
            int iters = 0;
            double t0 = now_s(), t;
            do {
                st = pass == 0 ? cloob_model_encode_image(m, pixels, b, out, err, sizeof err)
                               : cloob_model_encode_text(m, ids, mask, b, text_len, out, err, sizeof err);
                if (st != CLOOB_OK) { /* e.g. out of GPU memory: no made-up throughput */
                    fprintf(stderr, "bench_model: batch %d: %s\n", b, err);
                    return 3;
                }
                iters++;
                t = now_s() - t0;
            } while (t < seconds);
            printf("{\"modality\":\"%s\",\"batch\":%d,\"text_len\":%d,\"iters\":%d,"
                   "\"items_per_s\":%.2f,\"ms_per_batch\":%.2f}\n",
                   pass == 0 ? "image" : "text", b, pass == 0 ? 0 : text_len, iters,
                   iters * b / t, 1000.0 * t / iters);
            fflush(stdout);
        }
    }
    free(pixels);
    free(out);
    free(ids);
    free(mask);
    cloob_model_free(m);
    return 0;
}
