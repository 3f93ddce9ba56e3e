/*
 * cloob.h - the whole C contract between cloob-server and libtorch / SentencePiece.
 *
 * Nothing from C++ crosses this header: handles are opaque, every fallible call returns a
 * cloob_status (CLOOB_OK == 0 on success) and, on failure, writes a NUL-terminated message
 * into a caller-owned buffer `err` of `errlen` bytes (which may be NULL / 0 to ignore the text).
 * No exception ever escapes: the implementation catches everything and maps it to a status.
 *
 * Thread safety:
 *   - cloob_model: NOT thread safe. One thread (the batcher's inference thread) owns a model
 *     handle and is the only caller of cloob_model_encode_* on it. cloob_model_info() returns
 *     data that is immutable after load and may be read from any thread.
 *   - cloob_tokenizer: cloob_tokenize() is thread safe (read-only after load) and is meant to be
 *     called concurrently from the worker pool.
 *   - cloob_runtime_describe() may be called from any thread.
 *
 * Ownership: whoever creates a handle frees it with the matching *_free(). Output arrays are
 * always caller-allocated; the sizes each call needs are stated next to it.
 */
#ifndef CLOOB_H
#define CLOOB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
/* The implementation (C++) catches every exception; noexcept makes that part of the type, so a
 * missed path ends in std::terminate instead of unwinding through C frames. */
#define CLOOB_NOEXCEPT noexcept
#else
#define CLOOB_NOEXCEPT
#endif

typedef enum cloob_status {
    CLOOB_OK = 0,
    CLOOB_ERR_INVALID_ARGUMENT = 1, /* a NULL handle, bad shape, bad device string ... */
    CLOOB_ERR_IO = 2,               /* a file is missing or unreadable */
    CLOOB_ERR_MODEL = 3,            /* the model directory is malformed or the forward pass failed */
    CLOOB_ERR_OUT_OF_MEMORY = 4,    /* device (or host) memory exhausted: refuse this batch, keep serving */
    CLOOB_ERR_DEVICE = 5,           /* requested device is not available (e.g. "cuda" on a CPU build) */
    CLOOB_ERR_INTERNAL = 6          /* anything else (caught unknown exception) */
} cloob_status;

/* A short stable name for a status ("ok", "invalid_argument", ...). Never NULL. */
const char *cloob_status_name(cloob_status s) CLOOB_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------
 * Model directory metadata (cloob.json written by tools/export_model.py).
 * ------------------------------------------------------------------------------------------- */
#define CLOOB_NAME_MAX 128

typedef struct cloob_model_info {
    char name[CLOOB_NAME_MAX];       /* e.g. "rinna/japanese-cloob-vit-b-16" */
    int embed_dim;                   /* 512 for the real models */
    int image_size;                  /* 224: encode_image takes [B,3,image_size,image_size] */
    float mean[3];                   /* per-channel normalization used by preprocessing */
    float std[3];
    int max_seq_len;                 /* 77 including [CLS] */
    int64_t pad_id, cls_id, unk_id;  /* 3, 4, 0 */
    int random_weights;              /* 1 if the model was built by --random: answers meaningless */
    char device[32];                 /* the device actually used: "cpu", "cuda:0" */
    char dtype[16];                  /* "float32" or "float16" */
    char model_sha256[72];           /* sha256 (hex) of the TorchScript file, for provenance */
} cloob_model_info;

/* ---------------------------------------------------------------------------------------------
 * Model: a TorchScript module with encode_image / encode_text on one device.
 * ------------------------------------------------------------------------------------------- */
typedef struct cloob_model cloob_model;

/* Largest batch one encode call accepts (CLOOB_ERR_INVALID_ARGUMENT above it). */
#define CLOOB_MAX_BATCH 1024

typedef struct cloob_model_params {
    const char *device;   /* "auto" (GPU if present, else CPU), "cpu", "cuda", "cuda:N". Default "auto". */
    int half;             /* 1: run in float16 on GPU; ignored on CPU, where info.dtype then says
                             "float32" (the caller logs that). Default 0. */
    int num_threads;      /* CPU threads for the forward pass (0..1024). With OpenBLAS they are
                             OpenBLAS's and libtorch's own pool gets 1 (measured: the two pools
                             fight over the cores); otherwise libtorch's. 0: every core (OpenBLAS)
                             or libtorch's default. Process-wide: the last load wins. Default 0. */
} cloob_model_params;

cloob_model_params cloob_model_default_params(void) CLOOB_NOEXCEPT;

/*
 * Loads <model_dir>/cloob.json (validated: a bad field is CLOOB_ERR_MODEL naming the field) and
 * <model_dir>/model.pt onto the device, then runs one [CLS] text and one blank image through it to
 * check the contract (methods present, output [1, embed_dim]). Missing files: CLOOB_ERR_IO naming
 * the file. "cuda" without CUDA: CLOOB_ERR_DEVICE. On success *out owns the model; on failure
 * *out is NULL. params may be NULL (defaults).
 */
cloob_status cloob_model_load(const char *model_dir, const cloob_model_params *params,
                              cloob_model **out, char *err, size_t errlen) CLOOB_NOEXCEPT;
void cloob_model_free(cloob_model *model) CLOOB_NOEXCEPT; /* NULL is fine */

/* Pointer to the model's immutable info; valid until cloob_model_free(). */
const cloob_model_info *cloob_model_get_info(const cloob_model *model) CLOOB_NOEXCEPT;

/* The raw cloob.json text (NUL-terminated), valid until cloob_model_free(). */
const char *cloob_model_metadata_json(const cloob_model *model) CLOOB_NOEXCEPT;

/*
 * pixels: batch x 3 x S x S float32 (S = info.image_size), already normalized, C-contiguous;
 *         never written to.
 * out:    batch x embed_dim float32, UNnormalized features (caller L2-normalizes if wanted).
 * batch: 1..CLOOB_MAX_BATCH. A forward pass that runs out of (device or host) memory returns
 * CLOOB_ERR_OUT_OF_MEMORY and leaves the model usable.
 */
cloob_status cloob_model_encode_image(cloob_model *model, const float *pixels, int batch,
                                      float *out, char *err, size_t errlen) CLOOB_NOEXCEPT;

/*
 * ids, mask: batch x seq_len int64 ([CLS] first, right padding with pad_id / mask 0).
 * seq_len may be anything from 1 to info.max_seq_len: the features do not depend on padding.
 * Every id must be inside the vocabulary (cloob.json architecture.text.vocab_size) and every mask
 * value 0 or 1, else CLOOB_ERR_INVALID_ARGUMENT (checked on the host: a bad index on a GPU would
 * poison the CUDA context).
 * out: batch x embed_dim float32, UNnormalized.
 */
cloob_status cloob_model_encode_text(cloob_model *model, const int64_t *ids, const int64_t *mask,
                                     int batch, int seq_len, float *out, char *err, size_t errlen) CLOOB_NOEXCEPT;

/*
 * Runs throw-away forward passes (two each: TorchScript optimizes on the second run) for each
 * image batch size in image_batches[0..n_image) and each (text batch size x text length) pair,
 * so the first real request at a shape is not slow. Lists may be NULL when their count is 0.
 */
cloob_status cloob_model_warmup(cloob_model *model, const int *image_batches, int n_image,
                                const int *text_batches, int n_text, const int *text_lengths,
                                int n_lengths, char *err, size_t errlen) CLOOB_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------
 * Tokenizer: SPEC.md section 4 on the SentencePiece model file. The SentencePiece step is
 * Debian's libsentencepiece, loaded as the plugin libcloob_spm.so with RTLD_DEEPBIND (linked
 * directly it cannot share a process with Debian's libtorch: see shim/plugin/spm_plugin.h).
 * ------------------------------------------------------------------------------------------- */
typedef struct cloob_tokenizer cloob_tokenizer;

/* Caps that keep one request from costing unbounded memory or time: longer texts are refused
 * with CLOOB_ERR_INVALID_ARGUMENT (the HTTP layer's body limit is far below this anyway). */
#define CLOOB_TOKENIZE_MAX_BYTES (1u << 20)
#define CLOOB_TOKENIZE_MAX_SEQ_LEN 4096

cloob_status cloob_tokenizer_load(const char *spm_model_path, cloob_tokenizer **out, char *err,
                                  size_t errlen) CLOOB_NOEXCEPT;
void cloob_tokenizer_free(cloob_tokenizer *tok) CLOOB_NOEXCEPT; /* NULL is fine */

typedef struct cloob_token_result {
    int n_tokens;   /* ids actually used, [CLS] included (1..max_seq_len); ids[n_tokens..] are pad */
    int n_dropped;  /* ids cut off by truncation (0 if the text fit) */
} cloob_token_result;

/*
 * Tokenizes `text` (len bytes of UTF-8; invalid sequences are replaced by U+FFFD exactly as
 * Python's bytes.decode("utf-8", errors="replace") does; NUL is an ordinary character) into
 * max_seq_len ids and mask values: [CLS], the first max_seq_len-1 SentencePiece ids, then
 * [PAD]/0 padding. max_seq_len: 1..CLOOB_TOKENIZE_MAX_SEQ_LEN; len: at most
 * CLOOB_TOKENIZE_MAX_BYTES (text may be NULL when len is 0).
 * ids, mask: caller arrays of max_seq_len int64. result may be NULL.
 */
cloob_status cloob_tokenize(const cloob_tokenizer *tok, const char *text, size_t len,
                            int max_seq_len, int64_t *ids, int64_t *mask,
                            cloob_token_result *result, char *err, size_t errlen) CLOOB_NOEXCEPT;

/*
 * The raw SentencePiece ids of SPEC.md steps 1-3 (no [CLS], no truncation, no padding), for tests.
 * Writes up to cap ids into out; *n_out receives the full count (may exceed cap).
 */
cloob_status cloob_tokenize_raw(const cloob_tokenizer *tok, const char *text, size_t len,
                                int64_t *out, size_t cap, size_t *n_out, char *err, size_t errlen) CLOOB_NOEXCEPT;

/* ---------------------------------------------------------------------------------------------
 * Runtime: which libtorch, BLAS and thread counts are in use (for logs, /info and the CLI).
 * Writes a one-line JSON object (here, Debian 12's libtorch; "torch" is the headers' version macro):
 *   {"torch":"1.13.0","cuda_available":false,"cuda_devices":0,
 *    "blas":"/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3","blas_kind":"openblas",
 *    "openblas":"/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so",
 *    "blas_config":"OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64",
 *    "blas_threads":2,"intra_op_threads":1,"inter_op_threads":1}
 * "blas" is the resolved path of the loaded libblas.so.3 (or libopenblas / libmkl when that is what
 * is loaded); blas_kind is "openblas", "mkl", "reference-or-unknown" or "none-loaded".
 * A buffer too small for the text: CLOOB_ERR_INVALID_ARGUMENT and buf[0] = '\0'.
 * ------------------------------------------------------------------------------------------- */
cloob_status cloob_runtime_describe(char *buf, size_t buflen) CLOOB_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* CLOOB_H */
