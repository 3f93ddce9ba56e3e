/*
 * test_tokenizer.c - the C tokenizer (shim/tokenizer.cc) against SPEC.md section 4.
 *
 *   test_tokenizer                         self-test: SPEC vectors, padding/truncation, errors,
 *                                          4 threads on one handle (run by tests/test_c_programs.py)
 *   test_tokenizer --batch FILE [--model SPM] [--max-seq-len N]
 *                                          FILE holds records (uint32 little-endian byte length,
 *                                          then the bytes); prints one JSON line per record:
 *                                          {"status":..,"raw":[..],"ids":[..],"mask":[..],
 *                                           "n_tokens":..,"n_dropped":..}
 *   test_tokenizer --decode FILE           one line per record: the code points (decimal) that
 *                                          the UTF-8 decoder produced
 *   test_tokenizer --spm FILE [--model SPM] one line per record: the ids of the SentencePiece step
 *                                          alone (what sentencepiece's encode() returns)
 *   test_tokenizer --dump-lower            "cp out1 [out2 ..]" for every code point that changes
 *   test_tokenizer --dump-space            every code point the tokenizer strips as whitespace
 * tests/test_tokenizer.py drives the modes with arguments and compares with the Python reference.
 * The SentencePiece model is $CLOOB_SHARED/model/google_sp.model unless --model says otherwise.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloob.h"
#include "shim_internal.h"
#include "testlib.h"

#define MAX_RECORD (2u << 20) /* above CLOOB_TOKENIZE_MAX_BYTES, so the cap is testable */

static void default_model_path(char *buf, size_t cap) {
    const char *shared = getenv("CLOOB_SHARED");
    snprintf(buf, cap, "%s/model/google_sp.model", shared && *shared ? shared : "../shared");
}

/* ---- record files ------------------------------------------------------------------------ */

typedef struct {
    FILE *f;
    char *buf; /* MAX_RECORD bytes, owned */
} record_reader;

/* Returns 1 and sets *len for a record, 0 at the end, -1 on a malformed file. */
static int next_record(record_reader *r, size_t *len) {
    unsigned char hdr[4];
    size_t got = fread(hdr, 1, 4, r->f);
    if (got == 0) return 0;
    if (got != 4) return -1;
    uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (n > MAX_RECORD) return -1;
    if (n > 0 && fread(r->buf, 1, n, r->f) != n) return -1;
    *len = n;
    return 1;
}

static int open_records(record_reader *r, const char *path) {
    r->f = fopen(path, "rb");
    if (r->f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    r->buf = malloc(MAX_RECORD);
    if (r->buf == NULL) {
        fclose(r->f);
        return -1;
    }
    return 0;
}

static void close_records(record_reader *r) {
    fclose(r->f);
    free(r->buf);
}

static void print_i64_array(const char *key, const int64_t *v, size_t n) {
    printf("\"%s\":[", key);
    for (size_t i = 0; i < n; i++) printf(i ? ",%lld" : "%lld", (long long)v[i]);
    printf("]");
}

static int run_batch(const char *path, const char *model, int max_seq_len) {
    char err[512];
    cloob_tokenizer *tok = NULL;
    if (cloob_tokenizer_load(model, &tok, err, sizeof err) != CLOOB_OK) {
        fprintf(stderr, "load: %s\n", err);
        return 2;
    }
    record_reader r;
    if (open_records(&r, path) != 0) {
        cloob_tokenizer_free(tok);
        return 2;
    }
    size_t raw_cap = 2 * MAX_RECORD + 16;
    int64_t *raw = malloc(raw_cap * sizeof *raw);
    int64_t *ids = malloc((size_t)max_seq_len * sizeof *ids);
    int64_t *mask = malloc((size_t)max_seq_len * sizeof *mask);
    int rc = 0;
    size_t len;
    int more;
    while (raw && ids && mask && (more = next_record(&r, &len)) != 0) {
        if (more < 0) {
            fprintf(stderr, "malformed record file %s\n", path);
            rc = 2;
            break;
        }
        size_t n_raw = 0;
        cloob_status st = cloob_tokenize_raw(tok, r.buf, len, raw, raw_cap, &n_raw, err, sizeof err);
        if (st != CLOOB_OK) {
            printf("{\"status\":\"%s\"}\n", cloob_status_name(st));
            continue;
        }
        cloob_token_result res = {-1, -1};
        st = cloob_tokenize(tok, r.buf, len, max_seq_len, ids, mask, &res, err, sizeof err);
        printf("{\"status\":\"%s\",", cloob_status_name(st));
        print_i64_array("raw", raw, n_raw);
        printf(",");
        print_i64_array("ids", ids, st == CLOOB_OK ? (size_t)max_seq_len : 0);
        printf(",");
        print_i64_array("mask", mask, st == CLOOB_OK ? (size_t)max_seq_len : 0);
        printf(",\"n_tokens\":%d,\"n_dropped\":%d}\n", res.n_tokens, res.n_dropped);
    }
    if (!raw || !ids || !mask) rc = 2;
    free(raw);
    free(ids);
    free(mask);
    close_records(&r);
    cloob_tokenizer_free(tok);
    return rc;
}

static int run_decode(const char *path) {
    record_reader r;
    if (open_records(&r, path) != 0) return 2;
    uint32_t *cps = malloc(MAX_RECORD * sizeof *cps);
    size_t len;
    int more, rc = 0;
    while (cps && (more = next_record(&r, &len)) != 0) {
        if (more < 0) {
            rc = 2;
            break;
        }
        size_t n = cloob_internal_utf8_decode(r.buf, len, cps, MAX_RECORD);
        for (size_t i = 0; i < n && i < MAX_RECORD; i++) printf(i ? " %u" : "%u", (unsigned)cps[i]);
        printf("\n");
    }
    free(cps);
    close_records(&r);
    return cps ? rc : 2;
}

static int run_spm(const char *path, const char *model) {
    char err[512];
    cloob_tokenizer *tok = NULL;
    if (cloob_tokenizer_load(model, &tok, err, sizeof err) != CLOOB_OK) {
        fprintf(stderr, "load: %s\n", err);
        return 2;
    }
    record_reader r;
    if (open_records(&r, path) != 0) {
        cloob_tokenizer_free(tok);
        return 2;
    }
    size_t cap = 4 * MAX_RECORD;
    int64_t *ids = malloc(cap * sizeof *ids);
    size_t len;
    int more, rc = 0;
    while (ids && (more = next_record(&r, &len)) != 0) {
        size_t n = 0;
        if (more < 0 || cloob_internal_spm_encode(tok, r.buf, len, ids, cap, &n) != 0) {
            rc = 2;
            break;
        }
        for (size_t i = 0; i < n && i < cap; i++) printf(i ? " %lld" : "%lld", (long long)ids[i]);
        printf("\n");
    }
    free(ids);
    close_records(&r);
    cloob_tokenizer_free(tok);
    return ids ? rc : 2;
}

static int run_dump_lower(void) {
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        uint32_t out[3];
        int n = cloob_internal_lower(cp, out);
        if (n == 1 && out[0] == cp) continue;
        printf("%u", (unsigned)cp);
        for (int i = 0; i < n; i++) printf(" %u", (unsigned)out[i]);
        printf("\n");
    }
    return 0;
}

static int run_dump_space(void) {
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cloob_internal_is_space(cp)) printf("%u\n", (unsigned)cp);
    }
    return 0;
}

/* ---- self-test ---------------------------------------------------------------------------- */

typedef struct {
    const char *text;
    int n;
    int64_t ids[12];
} vector_case;

/* SPEC.md section 4, verbatim. */
static const vector_case spec_vectors[] = {
    {"犬", 2, {9, 1651}},
    {"猫", 2, {9, 4324}},
    {"象", 2, {9, 6378}},
    {"犬の写真", 3, {9, 1651, 10478}},
    {"テンチの写真", 4, {9, 1780, 276, 10478}},
    {"Hello World!  ＡＢＣ ｶﾀｶﾅ", 9, {9, 22848, 463, 7375, 543, 9, 8493, 9, 26107}},
    {"😀😀 x 😀", 5, {9, 0, 4295, 9, 0}},
    {"", 0, {0}},
    {"  空白  のテスト  ", 5, {9, 21942, 9, 10, 2666}},
    {"iPhoneとGPU", 5, {9, 22021, 20, 2562, 534}},
    {"㍱", 3, {3440, 0, 106}},
    {"[CLS]4年に1度オリンピックは開かれる。", 9, {4, 1602, 44, 24, 368, 1462, 11, 21583, 8}},
};

static void check_raw(const cloob_tokenizer *tok, const char *text, size_t len, const int64_t *want, int n_want) {
    int64_t got[256];
    size_t n = 0;
    char err[256] = "";
    cloob_status st = cloob_tokenize_raw(tok, text, len, got, 256, &n, err, sizeof err);
    CHECK_MSG(st == CLOOB_OK, "%s: %s", text, err);
    CHECK_MSG(n == (size_t)n_want, "\"%s\": %zu ids, want %d", text, n, n_want);
    for (size_t i = 0; i < n && i < (size_t)n_want; i++) {
        CHECK_MSG(got[i] == want[i], "\"%s\" id %zu: %lld, want %lld", text, i, (long long)got[i], (long long)want[i]);
    }
}

static void test_spec_vectors(const cloob_tokenizer *tok) {
    for (size_t k = 0; k < sizeof spec_vectors / sizeof spec_vectors[0]; k++) {
        const vector_case *c = &spec_vectors[k];
        check_raw(tok, c->text, strlen(c->text), c->ids, c->n);
    }
    /* full model input for "犬" */
    int64_t ids[77], mask[77];
    cloob_token_result res;
    CHECK(cloob_tokenize(tok, "犬", strlen("犬"), 77, ids, mask, &res, NULL, 0) == CLOOB_OK);
    CHECK_EQ_INT(ids[0], 4);
    CHECK_EQ_INT(ids[1], 9);
    CHECK_EQ_INT(ids[2], 1651);
    CHECK_EQ_INT(mask[0] + mask[1] + mask[2], 3);
    int pads_ok = 1;
    for (int i = 3; i < 77; i++) pads_ok &= ids[i] == 3 && mask[i] == 0;
    CHECK(pads_ok);
    CHECK_EQ_INT(res.n_tokens, 3);
    CHECK_EQ_INT(res.n_dropped, 0);
}

static void test_edge_cases(const cloob_tokenizer *tok) {
    /* special tokens created by lower-casing are special (transformers splits after lowering) */
    static const int64_t unk_only[] = {0};
    check_raw(tok, "<UNK>", 5, unk_only, 1);
    /* "[cls]" is not a special token; "[CLS]" with surrounding ideographic spaces is stripped */
    static const int64_t cls_dog[] = {4, 9, 1651, 4};
    check_raw(tok, "\xe3\x80\x80[CLS]\xe3\x80\x80犬\xe3\x80\x80[CLS]", strlen("\xe3\x80\x80[CLS]\xe3\x80\x80犬\xe3\x80\x80[CLS]"),
              cls_dog, 4);
    /* Python-only whitespace (U+001C) next to a special token vanishes; elsewhere it is <unk> */
    static const int64_t sep_only[] = {5};
    check_raw(tok, "\x1c[SEP]", 6, sep_only, 1);
    static const int64_t fs_unk[] = {9, 0};
    check_raw(tok, "\x1c", 1, fs_unk, 2);
    /* embedded NUL is an ordinary (unknown) character */
    static const int64_t nul_ids[] = {999, 0, 174};
    check_raw(tok, "a\0b", 3, nul_ids, 3);
    /* truncation: 200 dogs -> [CLS] + 76 ids, the rest reported */
    char text[1200];
    size_t len = 0;
    for (int i = 0; i < 200; i++) {
        memcpy(text + len, "犬 ", strlen("犬 "));
        len += strlen("犬 ");
    }
    int64_t ids[77], mask[77];
    cloob_token_result res = {0, 0};
    size_t n_raw = 0;
    CHECK(cloob_tokenize_raw(tok, text, len, NULL, 0, &n_raw, NULL, 0) == CLOOB_OK);
    CHECK(n_raw > 76);
    CHECK(cloob_tokenize(tok, text, len, 77, ids, mask, &res, NULL, 0) == CLOOB_OK);
    CHECK_EQ_INT(res.n_tokens, 77);
    CHECK_EQ_INT(res.n_dropped, (long long)n_raw - 76);
    CHECK_EQ_INT(mask[76], 1);
    /* max_seq_len 1: [CLS] alone, everything dropped */
    CHECK(cloob_tokenize(tok, "犬", strlen("犬"), 1, ids, mask, &res, NULL, 0) == CLOOB_OK);
    CHECK_EQ_INT(ids[0], 4);
    CHECK_EQ_INT(res.n_tokens, 1);
    CHECK_EQ_INT(res.n_dropped, 2);
    /* empty and whitespace-only texts: [CLS] + padding */
    CHECK(cloob_tokenize(tok, NULL, 0, 77, ids, mask, &res, NULL, 0) == CLOOB_OK);
    CHECK_EQ_INT(res.n_tokens, 1);
    CHECK(cloob_tokenize(tok, " \t\n", 3, 77, ids, mask, &res, NULL, 0) == CLOOB_OK);
    CHECK_EQ_INT(res.n_tokens, 1);
}

static void test_errors(const cloob_tokenizer *tok) {
    char err[256];
    int64_t ids[8], mask[8];
    cloob_token_result res;
    size_t n;
    cloob_tokenizer *bad = (cloob_tokenizer *)1;
    CHECK(cloob_tokenizer_load("/nonexistent/spiece.model", &bad, err, sizeof err) == CLOOB_ERR_IO);
    CHECK(bad == NULL);
    CHECK_MSG(strstr(err, "/nonexistent/spiece.model") != NULL, "%s", err);
    CHECK(cloob_tokenizer_load("/etc/hostname", &bad, err, sizeof err) == CLOOB_ERR_MODEL);
    CHECK(bad == NULL);
    CHECK(cloob_tokenizer_load(NULL, &bad, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize(NULL, "a", 1, 8, ids, mask, &res, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize(tok, "a", 1, 8, NULL, mask, &res, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize(tok, "a", 1, 0, ids, mask, &res, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize(tok, "a", 1, -5, ids, mask, &res, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize(tok, NULL, 3, 8, ids, mask, &res, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize_raw(tok, "a", 1, NULL, 4, &n, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(cloob_tokenize_raw(tok, "a", 1, NULL, 0, NULL, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
    /* over the byte cap: refused, not tokenized */
    size_t big = (size_t)CLOOB_TOKENIZE_MAX_BYTES + 1;
    char *text = malloc(big);
    if (text != NULL) {
        memset(text, 'a', big);
        CHECK(cloob_tokenize(tok, text, big, 8, ids, mask, &res, err, sizeof err) == CLOOB_ERR_INVALID_ARGUMENT);
        CHECK_MSG(strstr(err, "bytes") != NULL, "%s", err);
        free(text);
    }
    /* tiny error buffers: always NUL-terminated, never overrun */
    char tiny[4] = {'x', 'x', 'x', 'x'};
    CHECK(cloob_tokenize(tok, "a", 1, 0, ids, mask, &res, tiny, 1) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(tiny[0] == '\0' && tiny[1] == 'x');
    CHECK(cloob_tokenize(tok, "a", 1, 0, ids, mask, &res, tiny, 3) == CLOOB_ERR_INVALID_ARGUMENT);
    CHECK(tiny[2] == '\0' && tiny[3] == 'x' && strlen(tiny) == 2);
    CHECK_STR(cloob_status_name(CLOOB_ERR_OUT_OF_MEMORY), "out_of_memory");
    CHECK_STR(cloob_status_name((cloob_status)99), "unknown");
    cloob_tokenizer_free(NULL);
}

static void test_error_truncation_utf8(void) {
    /* a truncated message never ends inside a UTF-8 sequence */
    char buf[6];
    cloob_set_error(buf, sizeof buf, "abcd%s", "犬"); /* "abcd" + 3 bytes: the cut lands inside */
    CHECK_STR(buf, "abcd");
    cloob_set_error(buf, sizeof buf, "ab%s", "犬"); /* "ab" + 3 bytes fits exactly in 5 */
    CHECK_STR(buf, "ab犬");
}

/* ---- concurrency: 4 threads on one handle give the serial answers ------------------------- */

static const char *const thread_texts[] = {
    "犬の写真", "Hello World!  ＡＢＣ ｶﾀｶﾅ", "[CLS]4年に1度オリンピックは開かれる。", "İstanbul ΣΑΣ",
    "😀😀 x 😀", "  空白  のテスト  ", "<UNK>テスト[MASK]", "iPhoneとGPU",
};
#define N_THREAD_TEXTS (sizeof thread_texts / sizeof thread_texts[0])

typedef struct {
    const cloob_tokenizer *tok;
    int64_t (*expect)[77];
    int mismatches;
} thread_arg;

static void *tokenize_thread(void *p) {
    thread_arg *a = p;
    for (int round = 0; round < 200; round++) {
        size_t k = (size_t)round % N_THREAD_TEXTS;
        int64_t ids[77], mask[77];
        if (cloob_tokenize(a->tok, thread_texts[k], strlen(thread_texts[k]), 77, ids, mask, NULL, NULL, 0) != CLOOB_OK ||
            memcmp(ids, a->expect[k], sizeof ids) != 0) {
            a->mismatches++;
        }
    }
    return NULL;
}

static void test_threads(const cloob_tokenizer *tok) {
    int64_t expect[N_THREAD_TEXTS][77], mask[77];
    for (size_t k = 0; k < N_THREAD_TEXTS; k++) {
        CHECK(cloob_tokenize(tok, thread_texts[k], strlen(thread_texts[k]), 77, expect[k], mask, NULL, NULL, 0) == CLOOB_OK);
    }
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){tok, expect, 0};
        CHECK(pthread_create(&th[i], NULL, tokenize_thread, &args[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(args[i].mismatches, 0);
    }
}

int main(int argc, char **argv) {
    char model[1024];
    default_model_path(model, sizeof model);
    const char *batch = NULL, *decode = NULL, *spm = NULL;
    int max_seq_len = 77;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dump-lower") == 0) return run_dump_lower();
        if (strcmp(argv[i], "--dump-space") == 0) return run_dump_space();
        if (i + 1 >= argc) {
            fprintf(stderr, "usage: see the comment at the top of %s\n", __FILE__);
            return 2;
        }
        if (strcmp(argv[i], "--batch") == 0) {
            batch = argv[++i];
        } else if (strcmp(argv[i], "--spm") == 0) {
            spm = argv[++i];
        } else if (strcmp(argv[i], "--decode") == 0) {
            decode = argv[++i];
        } else if (strcmp(argv[i], "--model") == 0) {
            snprintf(model, sizeof model, "%s", argv[++i]);
        } else if (strcmp(argv[i], "--max-seq-len") == 0) {
            char *end = NULL;
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || v < 1 || v > CLOOB_TOKENIZE_MAX_SEQ_LEN) {
                fprintf(stderr, "bad --max-seq-len\n");
                return 2;
            }
            max_seq_len = (int)v;
        } else {
            fprintf(stderr, "unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (decode) return run_decode(decode);
    if (spm) return run_spm(spm, model);
    if (batch) return run_batch(batch, model, max_seq_len);

    char err[512] = "";
    cloob_tokenizer *tok = NULL;
    cloob_status st = cloob_tokenizer_load(model, &tok, err, sizeof err);
    CHECK_MSG(st == CLOOB_OK, "%s", err);
    if (tok == NULL) TEST_MAIN_END();
    test_spec_vectors(tok);
    test_edge_cases(tok);
    test_errors(tok);
    test_error_truncation_utf8();
    test_threads(tok);
    cloob_tokenizer_free(tok);
    TEST_MAIN_END();
}
