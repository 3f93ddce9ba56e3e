/*
 * cloob-embed: embed image files and texts offline and print JSON.
 *
 *   cloob-embed --model DIR [--device auto|cpu|cuda[:N]] [--half] [--threads N] [--batch N]
 *               [--raw] [--tokens] [--time] [--image FILE]... [--text TEXT]... [--texts-file FILE]
 *   cloob-embed --model DIR --info
 *   cloob-embed --model DIR [--device D] [--half] --selftest
 *
 * It runs the same code as the server (image.c preprocessing, the shim's tokenizer and model), one
 * thread, no batching across invocations. It is both a user tool and the end-to-end test harness
 * of the foundation: tests compare its output with the Python reference pipeline.
 *
 * Output (stdout), one JSON document:
 *   {"model": ..., "dim": D, "normalized": true, "dtype": ..., "device": ...,
 *    "images": [{"file": ..., "embedding": [...]}, ...],
 *    "texts":  [{"text": ..., "tokens": n, "truncated": k, "embedding": [...], "ids": [...]?}, ...]}
 * Errors go to stderr with a non-zero exit status: 2 usage, 3 model, 4 input.
 *
 * --selftest runs the server's start-up self-test (server/selftest.c) and prints its JSON result
 * instead: exit 0 when it passed or was skipped (no reference vectors in cloob.json), 1 when it
 * failed.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "cloob.h"
#include "image.h"
#include "selftest.h"

#define MAX_INPUTS 4096
#define MAX_FILE_BYTES (256u << 20) /* refuse image files over 256 MiB before reading them */

typedef struct cli_options {
    const char *model_dir;
    const char *device;
    int half;
    int threads;
    int batch;
    int raw;       /* 1: print unnormalized features */
    int show_ids;  /* 1: also print token ids */
    int show_time; /* 1: timings to stderr */
    int info;      /* 1: print model + runtime info and exit */
    int selftest;  /* 1: run the self-test, print its result and exit 0/1 */
    const char *images[MAX_INPUTS];
    int n_images;
    char *texts[MAX_INPUTS]; /* owned: strdup'ed or read from a file */
    size_t text_lens[MAX_INPUTS];
    int n_texts;
} cli_options;

static void usage(FILE *f) {
    fputs("usage: cloob-embed --model DIR [options] [--image FILE]... [--text TEXT]...\n"
          "  --model DIR        model directory written by tools/export_model.py (required)\n"
          "  --image FILE       embed an image file (JPEG, PNG, BMP, GIF); repeatable\n"
          "  --text TEXT        embed a text (UTF-8); repeatable\n"
          "  --texts-file FILE  embed each line of FILE as a text\n"
          "  --device D         auto (default), cpu, cuda, cuda:N\n"
          "  --half             float16 on GPU\n"
          "  --threads N        intra-op CPU threads (default: libtorch's choice)\n"
          "  --batch N          items per forward pass (default 16)\n"
          "  --raw              print unnormalized features (default: L2-normalized)\n"
          "  --tokens           also print each text's token ids\n"
          "  --time             print timings to stderr\n"
          "  --info             print model metadata and runtime (BLAS, threads) and exit\n"
          "  --selftest         check the model against cloob.json's reference vectors (token ids,\n"
          "                     cosine of features), print the result as JSON; exit 0 passed or\n"
          "                     skipped, 1 failed\n"
          "  --help             this text\n",
          f);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int add_text(cli_options *o, const char *s, size_t len) {
    if (o->n_texts >= MAX_INPUTS) {
        fprintf(stderr, "cloob-embed: more than %d texts\n", MAX_INPUTS);
        return -1;
    }
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    o->texts[o->n_texts] = copy;
    o->text_lens[o->n_texts] = len;
    o->n_texts++;
    return 0;
}

static int read_texts_file(cli_options *o, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cloob-embed: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') n--;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (add_text(o, line, (size_t)n) != 0) {
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static int parse_args(int argc, char **argv, cli_options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                         \
    do {                                                                     \
        if (!v) {                                                            \
            fprintf(stderr, "cloob-embed: %s needs a value\n", a);          \
            return -1;                                                       \
        }                                                                    \
        i++;                                                                 \
    } while (0)
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--model")) {
            NEED_VALUE();
            o->model_dir = v;
        } else if (!strcmp(a, "--device")) {
            NEED_VALUE();
            o->device = v;
        } else if (!strcmp(a, "--half")) {
            o->half = 1;
        } else if (!strcmp(a, "--raw")) {
            o->raw = 1;
        } else if (!strcmp(a, "--tokens")) {
            o->show_ids = 1;
        } else if (!strcmp(a, "--time")) {
            o->show_time = 1;
        } else if (!strcmp(a, "--info")) {
            o->info = 1;
        } else if (!strcmp(a, "--selftest")) {
            o->selftest = 1;
        } else if (!strcmp(a, "--threads")) {
            NEED_VALUE();
            if (parse_int(v, 0, 1024, &o->threads)) {
                fprintf(stderr, "cloob-embed: --threads: expected 0..1024, got '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--batch")) {
            NEED_VALUE();
            if (parse_int(v, 1, 1024, &o->batch)) {
                fprintf(stderr, "cloob-embed: --batch: expected 1..1024, got '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--image")) {
            NEED_VALUE();
            if (o->n_images >= MAX_INPUTS) {
                fprintf(stderr, "cloob-embed: more than %d images\n", MAX_INPUTS);
                return -1;
            }
            o->images[o->n_images++] = v;
        } else if (!strcmp(a, "--text")) {
            NEED_VALUE();
            if (add_text(o, v, strlen(v))) return -1;
        } else if (!strcmp(a, "--texts-file")) {
            NEED_VALUE();
            if (read_texts_file(o, v)) return -1;
        } else {
            fprintf(stderr, "cloob-embed: unknown option '%s' (see --help)\n", a);
            return -1;
        }
#undef NEED_VALUE
    }
    if (!o->model_dir) {
        fprintf(stderr, "cloob-embed: --model DIR is required (see --help)\n");
        return -1;
    }
    return 0;
}

/* Reads a whole file into a malloc'd buffer (caller frees). Refuses files over MAX_FILE_BYTES. */
static uint8_t *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto io_error;
    long size = ftell(f);
    if (size < 0) goto io_error;
    if ((unsigned long)size > MAX_FILE_BYTES) {
        snprintf(err, errlen, "file is larger than %u bytes", MAX_FILE_BYTES);
        fclose(f);
        return NULL;
    }
    rewind(f);
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        fclose(f);
        return NULL;
    }
    if (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size) goto io_error;
    fclose(f);
    *len = (size_t)size;
    return buf;
io_error:
    snprintf(err, errlen, "read error: %s", strerror(errno));
    free(buf);
    fclose(f);
    return NULL;
}

/* Adds "embedding" to obj: v (dim floats), L2-normalized in place first unless raw. */
static void add_embedding(cJSON *obj, float *v, int dim, int raw) {
    if (!raw) api_l2_normalize(v, dim);
    cJSON *arr = cJSON_AddArrayToObject(obj, "embedding");
    for (int i = 0; arr && i < dim; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[i]));
}

static int print_info(cloob_model *model) {
    const cloob_model_info *info = cloob_model_get_info(model);
    char rt[2048];
    if (cloob_runtime_describe(rt, sizeof rt) != CLOOB_OK) snprintf(rt, sizeof rt, "{}");
    const char *meta = cloob_model_metadata_json(model);
    char *brief = selftest_metadata_without_vectors(meta, strlen(meta)); /* NULL: use it whole */
    /* Built with cJSON so that a name or path with quotes still prints valid JSON. */
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", info->name);
    cJSON_AddNumberToObject(root, "dim", info->embed_dim);
    cJSON_AddStringToObject(root, "device", info->device);
    cJSON_AddStringToObject(root, "dtype", info->dtype);
    cJSON_AddBoolToObject(root, "random_weights", info->random_weights);
    cJSON_AddItemToObject(root, "metadata", cJSON_Parse(brief ? brief : meta));
    cJSON_AddItemToObject(root, "runtime", cJSON_Parse(rt));
    free(brief);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) {
        fprintf(stderr, "cloob-embed: out of memory printing JSON\n");
        return 4;
    }
    puts(text);
    cJSON_free(text);
    return 0;
}

/* --selftest: the server's start-up check on this model and device. Returns the exit status. */
static int run_selftest(const char *model_dir, cloob_model *model) {
    char spm[4200], err[1024] = "";
    snprintf(spm, sizeof spm, "%s/spiece.model", model_dir);
    cloob_tokenizer *tok = NULL;
    cloob_status cs = cloob_tokenizer_load(spm, &tok, err, sizeof err);
    if (cs != CLOOB_OK) {
        fprintf(stderr, "cloob-embed: cannot load tokenizer '%s': %s\n", spm, err);
        return 3;
    }
    selftest_result *r = calloc(1, sizeof *r);
    if (!r) {
        cloob_tokenizer_free(tok);
        fprintf(stderr, "cloob-embed: out of memory\n");
        return 4;
    }
    selftest_run(model, tok, r);
    char *json = selftest_to_json(r);
    if (json) {
        puts(json);
        free(json);
    }
    int rc = r->status == SELFTEST_FAILED ? 1 : 0;
    if (r->status == SELFTEST_FAILED) {
        fprintf(stderr, "cloob-embed: self-test FAILED (%s check): %s\n", r->failed_check, r->message);
    } else if (r->status == SELFTEST_SKIPPED) {
        fprintf(stderr, "cloob-embed: self-test skipped: %s\n", r->message);
    }
    if (!json) rc = 4;
    free(r);
    cloob_tokenizer_free(tok);
    return rc;
}

/* Embeds every image in o->images in batches; adds {"file","embedding"} objects to out_arr.
 * Returns 0, or an exit status after printing the error. */
static int embed_images(const cli_options *o, cloob_model *model, cJSON *out_arr, double *t_pre,
                        double *t_model) {
    const cloob_model_info *info = cloob_model_get_info(model);
    const size_t per_image = 3u * (size_t)info->image_size * (size_t)info->image_size;
    float *pixels = malloc(sizeof(float) * per_image * (size_t)o->batch);
    float *feats = malloc(sizeof(float) * (size_t)info->embed_dim * (size_t)o->batch);
    int rc = 0;
    if (!pixels || !feats) {
        fprintf(stderr, "cloob-embed: out of memory\n");
        rc = 4;
        goto done;
    }
    image_limits limits = image_default_limits();
    for (int start = 0; start < o->n_images; start += o->batch) {
        int n = o->n_images - start < o->batch ? o->n_images - start : o->batch;
        double t0 = now_s();
        for (int k = 0; k < n; k++) {
            const char *path = o->images[start + k];
            char err[512] = "";
            size_t len = 0;
            uint8_t *data = read_file(path, &len, err, sizeof err);
            if (!data) {
                fprintf(stderr, "cloob-embed: %s: %s\n", path, err);
                rc = 4;
                goto done;
            }
            image_status st = image_preprocess(data, len, &limits, info->image_size, info->mean,
                                               info->std, pixels + per_image * (size_t)k, err,
                                               sizeof err);
            free(data);
            if (st != IMAGE_OK) {
                fprintf(stderr, "cloob-embed: %s: %s: %s\n", path, image_status_message(st), err);
                rc = 4;
                goto done;
            }
        }
        double t1 = now_s();
        char err[1024] = "";
        cloob_status cs = cloob_model_encode_image(model, pixels, n, feats, err, sizeof err);
        double t2 = now_s();
        *t_pre += t1 - t0;
        *t_model += t2 - t1;
        if (cs != CLOOB_OK) {
            fprintf(stderr, "cloob-embed: encode_image: %s: %s\n", cloob_status_name(cs), err);
            rc = 3;
            goto done;
        }
        for (int k = 0; k < n; k++) {
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddStringToObject(obj, "file", o->images[start + k]);
            add_embedding(obj, feats + (size_t)info->embed_dim * (size_t)k, info->embed_dim, o->raw);
            cJSON_AddItemToArray(out_arr, obj);
        }
    }
done:
    free(pixels);
    free(feats);
    return rc;
}

/* Tokenizes and embeds every text, padding each batch only to its longest sequence. */
static int embed_texts(const cli_options *o, cloob_model *model, const cloob_tokenizer *tok,
                       cJSON *out_arr, double *t_pre, double *t_model) {
    const cloob_model_info *info = cloob_model_get_info(model);
    const int L = info->max_seq_len;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)L * (size_t)o->batch);
    int64_t *mask = malloc(sizeof(int64_t) * (size_t)L * (size_t)o->batch);
    float *feats = malloc(sizeof(float) * (size_t)info->embed_dim * (size_t)o->batch);
    cloob_token_result *res = malloc(sizeof(cloob_token_result) * (size_t)o->batch);
    int rc = 0;
    if (!ids || !mask || !feats || !res) {
        fprintf(stderr, "cloob-embed: out of memory\n");
        rc = 4;
        goto done;
    }
    for (int start = 0; start < o->n_texts; start += o->batch) {
        int n = o->n_texts - start < o->batch ? o->n_texts - start : o->batch;
        double t0 = now_s();
        int longest = 1;
        for (int k = 0; k < n; k++) {
            char err[512] = "";
            cloob_status cs = cloob_tokenize(tok, o->texts[start + k], o->text_lens[start + k], L,
                                             ids + (size_t)L * k, mask + (size_t)L * k, &res[k],
                                             err, sizeof err);
            if (cs != CLOOB_OK) {
                fprintf(stderr, "cloob-embed: tokenize text %d: %s\n", start + k, err);
                rc = 4;
                goto done;
            }
            if (res[k].n_tokens > longest) longest = res[k].n_tokens;
        }
        /* Repack [n, L] into [n, longest] in place (row k moves down to k*longest <= k*L, so
         * memmove in increasing k never overwrites a row not yet moved): the features do not
         * depend on right padding. */
        for (int k = 1; k < n; k++) {
            memmove(ids + (size_t)longest * k, ids + (size_t)L * k, sizeof(int64_t) * longest);
            memmove(mask + (size_t)longest * k, mask + (size_t)L * k, sizeof(int64_t) * longest);
        }
        double t1 = now_s();
        char err[1024] = "";
        cloob_status cs = cloob_model_encode_text(model, ids, mask, n, longest, feats,
                                                  err, sizeof err);
        double t2 = now_s();
        *t_pre += t1 - t0;
        *t_model += t2 - t1;
        if (cs != CLOOB_OK) {
            fprintf(stderr, "cloob-embed: encode_text: %s: %s\n", cloob_status_name(cs), err);
            rc = 3;
            goto done;
        }
        for (int k = 0; k < n; k++) {
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddStringToObject(obj, "text", o->texts[start + k]);
            cJSON_AddNumberToObject(obj, "tokens", res[k].n_tokens);
            cJSON_AddNumberToObject(obj, "truncated", res[k].n_dropped);
            if (o->show_ids) {
                cJSON *arr = cJSON_CreateArray();
                for (int j = 0; j < res[k].n_tokens; j++)
                    cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)ids[(size_t)longest * k + j]));
                cJSON_AddItemToObject(obj, "ids", arr);
            }
            add_embedding(obj, feats + (size_t)info->embed_dim * (size_t)k, info->embed_dim, o->raw);
            cJSON_AddItemToArray(out_arr, obj);
        }
    }
done:
    free(ids);
    free(mask);
    free(feats);
    free(res);
    return rc;
}

int main(int argc, char **argv) {
    static cli_options o; /* large (input lists): static, zero-initialised */
    o.device = "auto";
    o.batch = 16;
    int rc = 0;
    cloob_model *model = NULL;
    cloob_tokenizer *tok = NULL;
    cJSON *root = NULL;

    if (parse_args(argc, argv, &o) != 0) {
        rc = 2;
        goto out;
    }

    char err[1024] = "";
    cloob_model_params params = cloob_model_default_params();
    params.device = o.device;
    params.half = o.half;
    params.num_threads = o.threads;
    double t_load = now_s();
    cloob_status cs = cloob_model_load(o.model_dir, &params, &model, err, sizeof err);
    if (cs != CLOOB_OK) {
        fprintf(stderr, "cloob-embed: cannot load model '%s': %s: %s\n", o.model_dir,
                cloob_status_name(cs), err);
        rc = 3;
        goto out;
    }
    t_load = now_s() - t_load;
    if (o.info) {
        rc = print_info(model);
        goto out;
    }
    if (o.selftest) {
        rc = run_selftest(o.model_dir, model);
        goto out;
    }
    const cloob_model_info *info = cloob_model_get_info(model);
    if (info->random_weights)
        fprintf(stderr, "cloob-embed: WARNING: '%s' has random weights; its embeddings are "
                        "meaningless (test/demo model)\n", info->name);

    if (o.n_texts > 0) {
        char spm[4096];
        snprintf(spm, sizeof spm, "%s/spiece.model", o.model_dir);
        cs = cloob_tokenizer_load(spm, &tok, err, sizeof err);
        if (cs != CLOOB_OK) {
            fprintf(stderr, "cloob-embed: cannot load tokenizer '%s': %s\n", spm, err);
            rc = 3;
            goto out;
        }
    }

    root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", info->name);
    cJSON_AddNumberToObject(root, "dim", info->embed_dim);
    cJSON_AddBoolToObject(root, "normalized", !o.raw);
    cJSON_AddStringToObject(root, "device", info->device);
    cJSON_AddStringToObject(root, "dtype", info->dtype);
    cJSON *images = cJSON_AddArrayToObject(root, "images");
    cJSON *texts = cJSON_AddArrayToObject(root, "texts");

    double img_pre = 0, img_model = 0, txt_pre = 0, txt_model = 0;
    rc = embed_images(&o, model, images, &img_pre, &img_model);
    if (rc == 0) rc = embed_texts(&o, model, tok, texts, &txt_pre, &txt_model);
    if (rc != 0) goto out;

    char *text = cJSON_PrintUnformatted(root);
    if (!text) {
        fprintf(stderr, "cloob-embed: out of memory printing JSON\n");
        rc = 4;
        goto out;
    }
    fputs(text, stdout);
    fputc('\n', stdout);
    cJSON_free(text);
    if (o.show_time)
        fprintf(stderr,
                "cloob-embed: load %.3f s; images %d: preprocess %.3f s, model %.3f s; "
                "texts %d: tokenize %.4f s, model %.3f s\n",
                t_load, o.n_images, img_pre, img_model, o.n_texts, txt_pre, txt_model);
out:
    cJSON_Delete(root);
    cloob_tokenizer_free(tok);
    cloob_model_free(model);
    for (int i = 0; i < o.n_texts; i++) free(o.texts[i]);
    return rc;
}
