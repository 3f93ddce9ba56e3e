/*
 * selftest.h - the start-up numerical self-test: embed known inputs and compare them with the
 * reference vectors the exporter stored in cloob.json ("selftest", tools/export_model.py).
 *
 * What it catches before the server says ready: a libtorch build or BLAS that computes wrong
 * numbers, a float16 conversion that went bad, a spiece.model or SentencePiece plugin that
 * tokenizes differently from the exporter's. Checks, in this order:
 *   tokenizer  each stored text through cloob_tokenize(): the ids must equal the stored ids
 *              ([CLS] first, no padding) exactly;
 *   image      the synthetic image of image_rule "gradient-v1" (rebuilt here, no file), through
 *              image_normalize_chw() and encode_image: cosine with image_feature;
 *   text       the stored ids (so this check does not depend on the tokenizer's), all texts in
 *              one batch padded to the longest as the batcher does, through encode_text: cosine
 *              with each stored feature.
 * A cosine must be at least tolerance_cosine (float32), or tolerance_cosine_float16 when the model
 * runs in float16 (default 0.999 when cloob.json lacks it): float16 rounds every activation. The
 * feature norm must also be within 1% of the stored one, which cosine alone cannot see (a scale
 * error changes unnormalized outputs). A malformed "selftest" section is a failure ("metadata"),
 * a cloob.json without one is SKIPPED (model directories exported before the self-test existed).
 *
 * Thread safety: selftest_run() calls the model, so it runs on the thread that owns the model
 * handle (the batcher's inference thread, or cloob-embed's main thread). The other functions are
 * pure. Ownership: results are plain structs owned by the caller; selftest_to_json() returns a
 * malloc'd string the caller frees with free().
 */
#ifndef CLOOB_SELFTEST_H
#define CLOOB_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

#include "cloob.h"

#define SELFTEST_MAX_TEXTS 16           /* more stored texts: a "metadata" failure */
#define SELFTEST_MAX_TEXT_BYTES 1024    /* per stored text */
#define SELFTEST_IMAGE_RULE "gradient-v1" /* the only image_rule id this build can rebuild */
#define SELFTEST_DEFAULT_TOLERANCE_FLOAT16 0.999
#define SELFTEST_MAX_NORM_DEVIATION 0.01 /* |norm / stored norm - 1| allowed */

typedef enum selftest_status {
    SELFTEST_NOT_RUN = 0, /* disabled by configuration (or not run yet) */
    SELFTEST_SKIPPED,     /* cloob.json has no "selftest" section */
    SELFTEST_PASSED,
    SELFTEST_FAILED
} selftest_status;

/* One compared input. */
typedef struct selftest_check {
    char name[24];      /* "image", "texts[0]", ... */
    int is_text;
    int n_ids;          /* texts: stored ids ([CLS] included) */
    int ids_match;      /* texts: 1 if the tokenizer gave exactly the stored ids */
    int computed;       /* 1 if the forward pass ran and cosine/norm_ratio are set */
    double cosine;      /* with the stored feature */
    double norm_ratio;  /* |computed| / |stored| */
    int passed;         /* feature within the bounds and, for texts, ids_match */
} selftest_check;

typedef struct selftest_result {
    selftest_status status;
    const char *failed_check; /* FAILED: "metadata", "tokenizer", "image", "text" or "forward"
                                 (the first failure, static string); else NULL */
    char message[640];        /* FAILED: what failed, with the numbers; SKIPPED: why; else "" */
    double tolerance;         /* the cosine bound applied (depends on the dtype) */
    double worst_cosine;      /* smallest cosine over computed checks; 1 if none was computed */
    char dtype[16];           /* the model's dtype and device, for the record */
    char device[32];
    double seconds;           /* wall time of the whole self-test */
    int n_checks;
    selftest_check checks[1 + SELFTEST_MAX_TEXTS]; /* image first, then texts in stored order */
} selftest_result;

/* Model thread: runs the self-test on the model's own cloob.json (cloob_model_metadata_json).
 * tok may be NULL only if cloob.json stores no texts (else a "tokenizer" failure). Never fails
 * to fill *out. */
void selftest_run(cloob_model *model, const cloob_tokenizer *tok, selftest_result *out);

/* Model thread: the same, with the cloob.json text given (len bytes, need not be NUL-terminated). */
void selftest_run_json(cloob_model *model, const cloob_tokenizer *tok, const char *json, size_t len,
                       selftest_result *out);

/* The synthetic image "gradient-v1": rgb[y][x][c] = (7x + 3y + 85c) mod 256, HWC, size x size.
 * rgb: caller buffer of size*size*3 bytes. */
void selftest_make_image(int size, uint8_t *rgb);

/* "disabled", "skipped", "passed" or "failed". */
const char *selftest_status_name(selftest_status s);

/*
 * The result as one JSON object (for /info and cloob-embed --selftest):
 *   {"status":"passed","passed":true,"worst_cosine":0.9999999,"tolerance":0.9999,
 *    "dtype":"float32","device":"cpu","seconds":0.01,
 *    "checks":[{"name":"image","cosine":..,"norm_ratio":..,"passed":true},
 *              {"name":"texts[0]","tokens":4,"ids_match":true,"cosine":..,"norm_ratio":..,"passed":true}]}
 * FAILED adds "failed_check" and "message" ("passed":false); worst_cosine is left out when no
 * forward pass ran, a check's cosine/norm_ratio when its pass did not run; SKIPPED has "message";
 * NOT_RUN is {"status":"disabled"}. Returns a malloc'd string (free()), or NULL on allocation failure.
 */
char *selftest_to_json(const selftest_result *r);

/*
 * cloob.json for display (/info, cloob-embed --info): the same document with the self-test's
 * reference features left out (their count is embed_dim x (1 + texts): ~80 KB of numbers for the
 * real model, and the self-test's verdict is reported on its own). Returns a malloc'd compact
 * JSON string (free()), or NULL if json does not parse or memory ran out (show it unchanged).
 */
char *selftest_metadata_without_vectors(const char *json, size_t len);

#endif /* CLOOB_SELFTEST_H */
