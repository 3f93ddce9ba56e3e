/*
 * model_torch.cc - the TorchScript side of cloob.h: load a model directory (model.pt + cloob.json),
 * run encode_image / encode_text on one device, warm up, and describe the runtime (libtorch,
 * CUDA, the BLAS actually loaded). Compiled with the libtorch flags (see the Makefile).
 *
 * Exceptions. Every exported function is `extern "C" ... noexcept` (cloob.h's CLOOB_NOEXCEPT),
 * and every one that calls into libtorch, cJSON-with-std::string or the allocator runs its whole
 * body inside guarded() below, which is the only place that maps C++ exceptions to statuses:
 *   c10::OutOfMemoryError, std::bad_alloc, and any error whose text says the allocator failed
 *   (the TorchScript interpreter re-throws kernel errors as std::runtime_error with the original
 *   message inside, and libtorch 1.13's CPU allocator throws a plain c10::Error "DefaultCPUAllocator:
 *   can't allocate memory") -> CLOOB_ERR_OUT_OF_MEMORY; other c10::Error (what_without_backtrace)
 *   and std::exception -> the caller's status (CLOOB_ERR_MODEL while loading / running);
 *   `...` -> CLOOB_ERR_INTERNAL.
 * How it was checked that none crosses the C boundary:
 *   1. review: each extern "C" function is either guarded(...) around its whole body, or does only
 *      non-throwing work (pointer checks, returning a member, `delete` of a type whose destructor
 *      is noexcept); grepping the shim sources for extern "C" lists them all and each carries noexcept, so
 *      a missed path would std::terminate loudly rather than unwind through C frames (UB);
 *   2. tests/shim/test_model.c drives every error path it can reach on CPU (missing files,
 *      malformed cloob.json, a model.pt that is not TorchScript, wrong output shapes, bad ids,
 *      a module that raises, a module whose forward exhausts memory, NULL arguments, tiny error
 *      buffers) and checks the status; a crossing exception would abort the test process.
 *      tests/test_shim_model.py builds those broken model directories with torch.jit.script.
 *
 * Threads: cloob_model_load may run on any thread; afterwards one thread (the batcher's inference
 * thread) owns the handle and makes every encode/warm-up call. InferenceMode is thread-local, so
 * each call sets it itself. num_threads (see set_cpu_threads: OpenBLAS's pool, or libtorch's
 * intra-op pool when BLAS is not OpenBLAS) is process-wide:
 * the last load wins.
 */
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/Exception.h>
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <unistd.h>
#include <link.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cloob.h"
#include "shim_internal.h"

struct cloob_model {
    torch::jit::Module module;
    torch::Device device{torch::kCPU};
    bool half = false;          /* weights and image inputs in float16 (GPU only) */
    int64_t vocab_size = 0;     /* architecture.text.vocab_size; 0 if cloob.json does not say */
    cloob_model_info info{};
    std::string metadata_json;  /* cloob.json as read */
};

namespace {

constexpr size_t kMaxMetadataBytes = 1 << 20;
constexpr int kMaxImageSize = 4096;
constexpr int kMaxEmbedDim = 1 << 16;

/* ---- exception guard ---------------------------------------------------------------------- */

bool says_out_of_memory(const char *msg) {
    return strstr(msg, "out of memory") != nullptr || strstr(msg, "can't allocate memory") != nullptr ||
           strstr(msg, "not enough memory") != nullptr;
}

/*
 * TorchScript errors read "The following operation failed in the TorchScript interpreter.\n
 * Traceback of TorchScript ...\n  File ...\nRuntimeError: <the actual message>\n": the useful part
 * is the last line. Anything else is folded onto one line for logs and JSON error bodies.
 */
std::string one_line(const char *msg) {
    std::string s(msg);
    if (s.find("Traceback of TorchScript") != std::string::npos) {
        size_t end = s.find_last_not_of("\n ");
        if (end != std::string::npos) {
            size_t start = s.rfind('\n', end);
            s = s.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
        }
    }
    for (char &c : s) {
        if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    }
    return s;
}

template <typename F>
cloob_status guarded(char *err, size_t errlen, cloob_status on_error, const char *what, F &&body) noexcept {
    try {
        return body();
    } catch (const c10::OutOfMemoryError &e) {
        cloob_set_error(err, errlen, "%s: out of memory: %s", what, one_line(e.what_without_backtrace()).c_str());
        return CLOOB_ERR_OUT_OF_MEMORY;
    } catch (const c10::Error &e) {
        const char *m = e.what_without_backtrace();
        try {
            cloob_set_error(err, errlen, "%s: %s", what, one_line(m).c_str());
        } catch (...) {
            cloob_set_error(err, errlen, "%s: %s", what, m);
        }
        return says_out_of_memory(m) ? CLOOB_ERR_OUT_OF_MEMORY : on_error;
    } catch (const std::bad_alloc &) {
        cloob_set_error(err, errlen, "%s: out of memory", what);
        return CLOOB_ERR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        const char *m = e.what();
        try {
            cloob_set_error(err, errlen, "%s: %s", what, one_line(m).c_str());
        } catch (...) {
            cloob_set_error(err, errlen, "%s: %s", what, m);
        }
        return says_out_of_memory(m) ? CLOOB_ERR_OUT_OF_MEMORY : on_error;
    } catch (...) {
        cloob_set_error(err, errlen, "%s: unknown C++ exception", what);
        return CLOOB_ERR_INTERNAL;
    }
}

/* ---- device strings ----------------------------------------------------------------------- */

/* "auto" | "" | NULL | "cpu" | "cuda" | "cuda:N" -> a device that exists. */
cloob_status parse_device(const char *spec, torch::Device *out, char *err, size_t errlen) {
    if (spec == nullptr || spec[0] == '\0' || strcmp(spec, "auto") == 0) {
        *out = torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
        return CLOOB_OK;
    }
    if (strcmp(spec, "cpu") == 0) {
        *out = torch::Device(torch::kCPU);
        return CLOOB_OK;
    }
    long index = 0;
    if (strncmp(spec, "cuda", 4) != 0 || (spec[4] != '\0' && spec[4] != ':')) {
        cloob_set_error(err, errlen, "unknown device \"%.64s\": use auto, cpu, cuda or cuda:N", spec);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    if (spec[4] == ':') {
        char *end = nullptr;
        errno = 0;
        index = strtol(spec + 5, &end, 10);
        if (end == spec + 5 || *end != '\0' || errno != 0 || index < 0 || index > 1023 ||
            !(spec[5] >= '0' && spec[5] <= '9')) {
            cloob_set_error(err, errlen, "bad device \"%.64s\": expected cuda:N with N a GPU index", spec);
            return CLOOB_ERR_INVALID_ARGUMENT;
        }
    }
    if (!torch::cuda::is_available()) {
        cloob_set_error(err, errlen,
                        "device \"%.64s\" requested but CUDA is not available (this libtorch %s has no CUDA "
                        "support, or no GPU is visible); use device cpu or auto",
                        spec, TORCH_VERSION);
        return CLOOB_ERR_DEVICE;
    }
    long count = (long)torch::cuda::device_count();
    if (index >= count) {
        cloob_set_error(err, errlen, "device \"%.64s\" requested but only %ld CUDA device(s) are visible", spec, count);
        return CLOOB_ERR_DEVICE;
    }
    *out = torch::Device(torch::kCUDA, (c10::DeviceIndex)index);
    return CLOOB_OK;
}

/* ---- cloob.json --------------------------------------------------------------------------- */

cloob_status read_file_capped(const std::string &path, size_t cap, std::string *out, char *err, size_t errlen) {
    FILE *f = fopen(path.c_str(), "rb");
    if (f == nullptr) {
        cloob_set_error(err, errlen, "cannot open %s: %s", path.c_str(), strerror(errno));
        return CLOOB_ERR_IO;
    }
    std::unique_ptr<FILE, int (*)(FILE *)> closer(f, fclose);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (out->size() + n > cap) {
            cloob_set_error(err, errlen, "%s is larger than %zu bytes", path.c_str(), cap);
            return CLOOB_ERR_MODEL;
        }
        out->append(buf, n);
    }
    if (ferror(f)) {
        cloob_set_error(err, errlen, "cannot read %s: %s", path.c_str(), strerror(errno));
        return CLOOB_ERR_IO;
    }
    return CLOOB_OK;
}

struct JsonDoc {
    cJSON *root = nullptr;
    ~JsonDoc() { cJSON_Delete(root); }
};

/* Reads one integer field in [lo, hi]; `path` names the file in messages. */
cloob_status json_int(const cJSON *obj, const char *key, long long lo, long long hi, long long *out, const std::string &path,
                      char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || std::floor(v->valuedouble) != v->valuedouble || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi) {
        cloob_set_error(err, errlen, "%s: \"%s\" must be an integer in %lld..%lld", path.c_str(), key, lo, hi);
        return CLOOB_ERR_MODEL;
    }
    *out = (long long)v->valuedouble;
    return CLOOB_OK;
}

cloob_status json_floats3(const cJSON *obj, const char *key, bool positive, float out[3], const std::string &path,
                          char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    bool ok = cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3;
    for (int i = 0; ok && i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        ok = cJSON_IsNumber(e) && std::isfinite(e->valuedouble) && (!positive || e->valuedouble > 0);
        if (ok) out[i] = (float)e->valuedouble;
    }
    if (!ok) {
        cloob_set_error(err, errlen, "%s: \"%s\" must be an array of 3 %snumbers", path.c_str(), key,
                        positive ? "positive " : "");
        return CLOOB_ERR_MODEL;
    }
    return CLOOB_OK;
}

cloob_status json_string(const cJSON *obj, const char *key, char *out, size_t cap, const std::string &path, char *err,
                         size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || v->valuestring == nullptr) {
        cloob_set_error(err, errlen, "%s: \"%s\" must be a string", path.c_str(), key);
        return CLOOB_ERR_MODEL;
    }
    size_t n = strlen(v->valuestring);
    if (n >= cap) {
        cloob_set_error(err, errlen, "%s: \"%s\" is longer than %zu bytes", path.c_str(), key, cap - 1);
        return CLOOB_ERR_MODEL;
    }
    memcpy(out, v->valuestring, n + 1);
    return CLOOB_OK;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        cloob_status try_st_ = (expr);                                                             \
        if (try_st_ != CLOOB_OK) return try_st_;                                                   \
    } while (0)

cloob_status parse_metadata(cloob_model *m, const std::string &path, char *err, size_t errlen) {
    JsonDoc doc;
    const char *end = nullptr;
    doc.root = cJSON_ParseWithLengthOpts(m->metadata_json.data(), m->metadata_json.size(), &end, 0);
    if (doc.root == nullptr || !cJSON_IsObject(doc.root)) {
        size_t off = end ? (size_t)(end - m->metadata_json.data()) : 0;
        cloob_set_error(err, errlen, "%s is not a JSON object (parse error near byte %zu)", path.c_str(), off);
        return CLOOB_ERR_MODEL;
    }
    const cJSON *r = doc.root;
    cloob_model_info &info = m->info;
    long long v;
    TRY(json_int(r, "format", 0, INT_MAX, &v, path, err, errlen));
    if (v != 1) {
        cloob_set_error(err, errlen, "%s: format %lld is not supported (this build reads format 1)", path.c_str(), v);
        return CLOOB_ERR_MODEL;
    }
    TRY(json_string(r, "name", info.name, sizeof info.name, path, err, errlen));
    TRY(json_int(r, "embed_dim", 1, kMaxEmbedDim, &v, path, err, errlen));
    info.embed_dim = (int)v;
    TRY(json_int(r, "image_size", 1, kMaxImageSize, &v, path, err, errlen));
    info.image_size = (int)v;
    TRY(json_floats3(r, "mean", false, info.mean, path, err, errlen));
    TRY(json_floats3(r, "std", true, info.std, path, err, errlen));
    TRY(json_int(r, "max_seq_len", 1, CLOOB_TOKENIZE_MAX_SEQ_LEN, &v, path, err, errlen));
    info.max_seq_len = (int)v;

    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(r, "architecture");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(arch, "text");
    if (cJSON_GetObjectItemCaseSensitive(text, "vocab_size") != nullptr) {
        TRY(json_int(text, "vocab_size", 1, INT_MAX, &v, path + " architecture.text", err, errlen));
        m->vocab_size = v;
    }
    long long id_max = m->vocab_size > 0 ? m->vocab_size - 1 : INT_MAX;
    TRY(json_int(r, "pad_id", 0, id_max, &v, path, err, errlen));
    info.pad_id = v;
    TRY(json_int(r, "cls_id", 0, id_max, &v, path, err, errlen));
    info.cls_id = v;
    TRY(json_int(r, "unk_id", 0, id_max, &v, path, err, errlen));
    info.unk_id = v;

    const cJSON *rw = cJSON_GetObjectItemCaseSensitive(r, "random_weights");
    if (!cJSON_IsBool(rw)) {
        cloob_set_error(err, errlen, "%s: \"random_weights\" must be true or false", path.c_str());
        return CLOOB_ERR_MODEL;
    }
    info.random_weights = cJSON_IsTrue(rw) ? 1 : 0;
    TRY(json_string(r, "model_sha256", info.model_sha256, sizeof info.model_sha256, path, err, errlen));
    size_t n = strlen(info.model_sha256);
    bool hex = n == 64;
    for (size_t i = 0; hex && i < n; i++) hex = strchr("0123456789abcdef", info.model_sha256[i]) != nullptr;
    if (!hex) {
        cloob_set_error(err, errlen, "%s: \"model_sha256\" must be 64 lower-case hex digits", path.c_str());
        return CLOOB_ERR_MODEL;
    }
    return CLOOB_OK;
}

/* ---- forward passes ----------------------------------------------------------------------- */

/* Checks out = [batch, embed_dim] and copies it, as float32, into dst. */
cloob_status copy_features(const cloob_model *m, const torch::jit::IValue &result, const char *method, int batch, float *dst,
                           char *err, size_t errlen) {
    if (!result.isTensor()) {
        cloob_set_error(err, errlen, "%s returned %s, not a tensor", method, result.tagKind().c_str());
        return CLOOB_ERR_MODEL;
    }
    torch::Tensor t = result.toTensor();
    if (t.dim() != 2 || t.size(0) != batch || t.size(1) != m->info.embed_dim) {
        std::string shape = "[";
        for (int64_t i = 0; i < t.dim(); i++) shape += (i ? "," : "") + std::to_string(t.size(i));
        shape += "]";
        cloob_set_error(err, errlen, "%s returned shape %s, expected [%d,%d]", method, shape.c_str(), batch,
                        m->info.embed_dim);
        return CLOOB_ERR_MODEL;
    }
    if (!t.is_floating_point()) {
        cloob_set_error(err, errlen, "%s returned a non-floating-point tensor", method);
        return CLOOB_ERR_MODEL;
    }
    t = t.to(torch::kCPU, torch::kFloat).contiguous();
    memcpy(dst, t.data_ptr<float>(), (size_t)batch * (size_t)m->info.embed_dim * sizeof(float));
    return CLOOB_OK;
}

cloob_status run_image(cloob_model *m, const float *pixels, int batch, float *out, char *err, size_t errlen) {
    c10::InferenceMode guard;
    const int64_t s = m->info.image_size;
    /* clone(): the module must never be able to write into the caller's const buffer */
    torch::Tensor x = torch::from_blob(const_cast<float *>(pixels), {batch, 3, s, s}, torch::kFloat);
    x = (m->device.is_cpu() && !m->half) ? x.clone() : x.to(m->device, m->half ? torch::kHalf : torch::kFloat);
    torch::jit::IValue y = m->module.get_method("encode_image")({x});
    return copy_features(m, y, "encode_image", batch, out, err, errlen);
}

cloob_status run_text(cloob_model *m, const int64_t *ids, const int64_t *mask, int batch, int seq_len, float *out,
                      char *err, size_t errlen) {
    c10::InferenceMode guard;
    torch::Tensor i = torch::from_blob(const_cast<int64_t *>(ids), {batch, seq_len}, torch::kLong);
    torch::Tensor a = torch::from_blob(const_cast<int64_t *>(mask), {batch, seq_len}, torch::kLong);
    if (m->device.is_cpu()) {
        i = i.clone();
        a = a.clone();
    } else {
        i = i.to(m->device);
        a = a.to(m->device);
    }
    torch::jit::IValue y = m->module.get_method("encode_text")({i, a});
    return copy_features(m, y, "encode_text", batch, out, err, errlen);
}

/* Host-side checks: an out-of-range id on a GPU is a device-side assert that poisons the whole
 * CUDA context, so ids are checked here, on every device. */
cloob_status check_text_input(const cloob_model *m, const int64_t *ids, const int64_t *mask, int batch, int seq_len,
                              char *err, size_t errlen) {
    if (seq_len < 1 || seq_len > m->info.max_seq_len) {
        cloob_set_error(err, errlen, "seq_len %d is outside 1..%d", seq_len, m->info.max_seq_len);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    const int64_t id_end = m->vocab_size > 0 ? m->vocab_size : INT32_MAX;
    size_t n = (size_t)batch * (size_t)seq_len;
    for (size_t k = 0; k < n; k++) {
        if (ids[k] < 0 || ids[k] >= id_end) {
            cloob_set_error(err, errlen, "token id %lld at row %zu, position %zu is outside 0..%lld", (long long)ids[k],
                            k / (size_t)seq_len, k % (size_t)seq_len, (long long)(id_end - 1));
            return CLOOB_ERR_INVALID_ARGUMENT;
        }
        if (mask[k] != 0 && mask[k] != 1) {
            cloob_set_error(err, errlen, "mask value %lld at row %zu, position %zu is not 0 or 1", (long long)mask[k],
                            k / (size_t)seq_len, k % (size_t)seq_len);
            return CLOOB_ERR_INVALID_ARGUMENT;
        }
    }
    return CLOOB_OK;
}

cloob_status check_batch(int batch, char *err, size_t errlen) {
    if (batch < 1 || batch > CLOOB_MAX_BATCH) {
        cloob_set_error(err, errlen, "batch %d is outside 1..%d", batch, CLOOB_MAX_BATCH);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    return CLOOB_OK;
}

/* One text of [CLS] + pad and one blank image: proves the module honours the contract
 * (method names, argument types, output [B, embed_dim]) before the server starts listening. */
cloob_status self_check(cloob_model *m, char *err, size_t errlen) {
    std::vector<float> out((size_t)m->info.embed_dim * 2);
    int64_t ids[2] = {m->info.cls_id, m->info.pad_id};
    int64_t mask[2] = {1, 0};
    int len = m->info.max_seq_len >= 2 ? 2 : 1;
    TRY(run_text(m, ids, mask, 1, len, out.data(), err, errlen));
    const size_t s = (size_t)m->info.image_size;
    std::vector<float> pixels(3 * s * s, 0.0f);
    TRY(run_image(m, pixels.data(), 1, out.data(), err, errlen));
    return CLOOB_OK;
}

/* CPU threads. libtorch sends float matmuls (the bulk of both towers) to BLAS; when that is
 * OpenBLAS (Debian's build), OpenBLAS's own pthread pool parallelises them and libtorch's intra-op
 * pool only runs the element-wise ops. The two pools must not both own the cores: measured on this
 * project's 2-core CI machine with the full-size model (bench_model, items/s):
 *     libtorch 2 + OpenBLAS 2: image b1 0.96, b4 1.88; text b1 3.5, b16 20.0
 *     libtorch 1 + OpenBLAS 1: image b1 1.80, b4 1.93; text b1 15.8, b16 32.2
 *     libtorch 1 + OpenBLAS 2: image b1 2.70, b4 2.67; text b1 11.8, b16 54.9   <- chosen
 * (the idle threads of one pool spin while the other works). So with OpenBLAS, libtorch gets one
 * thread and OpenBLAS gets n (0: every online core); with any other BLAS (MKL in PyTorch's own
 * builds follows at::set_num_threads) n goes to libtorch and 0 keeps its default. */
void set_cpu_threads(int n) {
    using set_threads_fn = void (*)(int);
    auto openblas_set = reinterpret_cast<set_threads_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    if (openblas_set != nullptr) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        at::set_num_threads(1);
        openblas_set(n > 0 ? n : (int)(cores > 0 && cores <= 1024 ? cores : 1));
    } else if (n > 0) {
        at::set_num_threads(n);
    }
}

cloob_status load_impl(const char *model_dir, const cloob_model_params *params, cloob_model **out, char *err,
                       size_t errlen) {
    auto m = std::make_unique<cloob_model>();
    TRY(parse_device(params->device, &m->device, err, errlen));
    if (params->num_threads < 0 || params->num_threads > 1024) {
        cloob_set_error(err, errlen, "num_threads %d is outside 0..1024", params->num_threads);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }

    std::string dir(model_dir);
    std::string json_path = dir + "/cloob.json";
    TRY(read_file_capped(json_path, kMaxMetadataBytes, &m->metadata_json, err, errlen));
    TRY(parse_metadata(m.get(), json_path, err, errlen));

    std::string pt_path = dir + "/model.pt";
    FILE *f = fopen(pt_path.c_str(), "rb");
    if (f == nullptr) {
        cloob_set_error(err, errlen, "cannot open %s: %s", pt_path.c_str(), strerror(errno));
        return CLOOB_ERR_IO;
    }
    fclose(f);
    set_cpu_threads(params->num_threads);

    cloob_status st = guarded(err, errlen, CLOOB_ERR_MODEL, pt_path.c_str(), [&]() -> cloob_status {
        m->module = torch::jit::load(pt_path, m->device);
        return CLOOB_OK;
    });
    if (st != CLOOB_OK) return st;
    for (const char *method : {"encode_image", "encode_text"}) {
        if (!m->module.find_method(method)) {
            cloob_set_error(err, errlen, "%s has no method %s (not exported by tools/export_model.py?)", pt_path.c_str(),
                            method);
            return CLOOB_ERR_MODEL;
        }
    }
    m->module.eval();
    m->half = params->half != 0 && m->device.is_cuda();
    if (m->half) m->module.to(torch::kHalf);

    snprintf(m->info.device, sizeof m->info.device, "%s", m->device.str().c_str());
    snprintf(m->info.dtype, sizeof m->info.dtype, "%s", m->half ? "float16" : "float32");

    st = guarded(err, errlen, CLOOB_ERR_MODEL, "self-check forward pass", [&]() { return self_check(m.get(), err, errlen); });
    if (st != CLOOB_OK) return st;
    *out = m.release();
    return CLOOB_OK;
}

/* ---- runtime description ------------------------------------------------------------------ */

struct LoadedLibs {
    std::string blas;     /* libblas.so.3 (Debian alternatives) */
    std::string openblas; /* libopenblas*.so* */
    std::string mkl;      /* libmkl_*.so* */
};

int find_blas_cb(struct dl_phdr_info *info, size_t, void *data) {
    LoadedLibs *libs = static_cast<LoadedLibs *>(data);
    const char *name = info->dlpi_name;
    if (name == nullptr || name[0] == '\0') return 0;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    std::string *slot = nullptr;
    if (strncmp(base, "libblas.so", 10) == 0) slot = &libs->blas;
    else if (strncmp(base, "libopenblas", 11) == 0) slot = &libs->openblas;
    else if (strncmp(base, "libmkl_", 7) == 0) slot = &libs->mkl;
    if (slot != nullptr && slot->empty()) {
        char *real = realpath(name, nullptr); /* Debian's alternatives are symlinks: report the file */
        *slot = real ? real : name;
        free(real);
    }
    return 0;
}

} // namespace

/* ---- public API --------------------------------------------------------------------------- */

extern "C" cloob_model_params cloob_model_default_params(void) noexcept {
    cloob_model_params p;
    p.device = "auto";
    p.half = 0;
    p.num_threads = 0;
    return p;
}

extern "C" cloob_status cloob_model_load(const char *model_dir, const cloob_model_params *params, cloob_model **out,
                                         char *err, size_t errlen) noexcept {
    if (out != nullptr) *out = nullptr;
    if (model_dir == nullptr || out == nullptr) {
        cloob_set_error(err, errlen, "cloob_model_load: NULL %s", model_dir == nullptr ? "model_dir" : "out");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    cloob_model_params defaults = cloob_model_default_params();
    const cloob_model_params *p = params ? params : &defaults;
    return guarded(err, errlen, CLOOB_ERR_MODEL, "loading the model",
                   [&]() { return load_impl(model_dir, p, out, err, errlen); });
}

extern "C" void cloob_model_free(cloob_model *model) noexcept {
    try {
        delete model;
    } catch (...) {
        /* ~Module only drops references; nothing can be done about a throwing destructor here */
    }
}

extern "C" const cloob_model_info *cloob_model_get_info(const cloob_model *model) noexcept {
    return model ? &model->info : nullptr;
}

extern "C" const char *cloob_model_metadata_json(const cloob_model *model) noexcept {
    return model ? model->metadata_json.c_str() : nullptr;
}

extern "C" cloob_status cloob_model_encode_image(cloob_model *model, const float *pixels, int batch, float *out, char *err,
                                                 size_t errlen) noexcept {
    if (model == nullptr || pixels == nullptr || out == nullptr) {
        cloob_set_error(err, errlen, "cloob_model_encode_image: NULL %s",
                        model == nullptr ? "model" : pixels == nullptr ? "pixels" : "out");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    TRY(check_batch(batch, err, errlen));
    return guarded(err, errlen, CLOOB_ERR_MODEL, "encode_image",
                   [&]() { return run_image(model, pixels, batch, out, err, errlen); });
}

extern "C" cloob_status cloob_model_encode_text(cloob_model *model, const int64_t *ids, const int64_t *mask, int batch,
                                                int seq_len, float *out, char *err, size_t errlen) noexcept {
    if (model == nullptr || ids == nullptr || mask == nullptr || out == nullptr) {
        cloob_set_error(err, errlen, "cloob_model_encode_text: NULL %s",
                        model == nullptr ? "model" : ids == nullptr ? "ids" : mask == nullptr ? "mask" : "out");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    TRY(check_batch(batch, err, errlen));
    TRY(check_text_input(model, ids, mask, batch, seq_len, err, errlen));
    return guarded(err, errlen, CLOOB_ERR_MODEL, "encode_text",
                   [&]() { return run_text(model, ids, mask, batch, seq_len, out, err, errlen); });
}

extern "C" cloob_status cloob_model_warmup(cloob_model *model, const int *image_batches, int n_image,
                                           const int *text_batches, int n_text, const int *text_lengths, int n_lengths,
                                           char *err, size_t errlen) noexcept {
    if (model == nullptr || n_image < 0 || n_text < 0 || n_lengths < 0 || (n_image > 0 && image_batches == nullptr) ||
        (n_text > 0 && text_batches == nullptr) || (n_lengths > 0 && text_lengths == nullptr)) {
        cloob_set_error(err, errlen, "cloob_model_warmup: NULL model or a NULL list with a positive count");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    for (int k = 0; k < n_image; k++) TRY(check_batch(image_batches[k], err, errlen));
    for (int k = 0; k < n_text; k++) TRY(check_batch(text_batches[k], err, errlen));
    for (int k = 0; k < n_lengths; k++) {
        if (text_lengths[k] < 1 || text_lengths[k] > model->info.max_seq_len) {
            cloob_set_error(err, errlen, "warm-up text length %d is outside 1..%d", text_lengths[k], model->info.max_seq_len);
            return CLOOB_ERR_INVALID_ARGUMENT;
        }
    }
    return guarded(err, errlen, CLOOB_ERR_MODEL, "warm-up", [&]() -> cloob_status {
        const size_t d = (size_t)model->info.embed_dim;
        const size_t s = (size_t)model->info.image_size;
        /* Twice per shape: TorchScript's profiling executor records shapes on the first run and
         * optimizes on the next, so the second run is the one that makes serving fast. */
        for (int k = 0; k < n_image; k++) {
            size_t b = (size_t)image_batches[k];
            std::vector<float> pixels(b * 3 * s * s, 0.0f), out(b * d);
            for (int rep = 0; rep < 2; rep++) TRY(run_image(model, pixels.data(), (int)b, out.data(), err, errlen));
        }
        for (int k = 0; k < n_text; k++) {
            for (int j = 0; j < n_lengths; j++) {
                size_t b = (size_t)text_batches[k], l = (size_t)text_lengths[j];
                std::vector<int64_t> ids(b * l, model->info.pad_id), mask(b * l, 0);
                for (size_t r = 0; r < b; r++) {
                    ids[r * l] = model->info.cls_id;
                    mask[r * l] = 1;
                }
                std::vector<float> out(b * d);
                for (int rep = 0; rep < 2; rep++)
                    TRY(run_text(model, ids.data(), mask.data(), (int)b, (int)l, out.data(), err, errlen));
            }
        }
        return CLOOB_OK;
    });
}

extern "C" cloob_status cloob_runtime_describe(char *buf, size_t buflen) noexcept {
    if (buf == nullptr || buflen == 0) return CLOOB_ERR_INVALID_ARGUMENT;
    buf[0] = '\0';
    return guarded(nullptr, 0, CLOOB_ERR_INTERNAL, "describe", [&]() -> cloob_status {
        LoadedLibs libs;
        dl_iterate_phdr(find_blas_cb, &libs);
        /* OpenBLAS answers for itself when its symbols are visible (they are, as a dependency of
         * libtorch_cpu through Debian's libblas.so.3 -> openblas-pthread). */
        using get_config_fn = char *(*)(void);
        using get_threads_fn = int (*)(void);
        auto get_config = reinterpret_cast<get_config_fn>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
        auto get_threads = reinterpret_cast<get_threads_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
        const char *kind = get_config || !libs.openblas.empty() ? "openblas"
                           : !libs.mkl.empty()                  ? "mkl"
                           : !libs.blas.empty()                 ? "reference-or-unknown"
                                                                : "none-loaded";

        std::unique_ptr<cJSON, void (*)(cJSON *)> o(cJSON_CreateObject(), cJSON_Delete);
        if (!o) throw std::bad_alloc();
        cJSON_AddStringToObject(o.get(), "torch", TORCH_VERSION);
        cJSON_AddBoolToObject(o.get(), "cuda_available", torch::cuda::is_available());
        cJSON_AddNumberToObject(o.get(), "cuda_devices", (double)torch::cuda::device_count());
        cJSON_AddStringToObject(o.get(), "blas", libs.blas.empty() ? (libs.openblas.empty() ? libs.mkl.c_str() : libs.openblas.c_str())
                                                                   : libs.blas.c_str());
        cJSON_AddStringToObject(o.get(), "blas_kind", kind);
        if (!libs.openblas.empty()) cJSON_AddStringToObject(o.get(), "openblas", libs.openblas.c_str());
        if (get_config) {
            const char *cfg = get_config();
            cJSON_AddStringToObject(o.get(), "blas_config", cfg ? cfg : "");
        }
        if (get_threads) cJSON_AddNumberToObject(o.get(), "blas_threads", get_threads());
        cJSON_AddNumberToObject(o.get(), "intra_op_threads", at::get_num_threads());
        cJSON_AddNumberToObject(o.get(), "inter_op_threads", at::get_num_interop_threads());

        char *text = cJSON_PrintUnformatted(o.get());
        if (text == nullptr) throw std::bad_alloc();
        size_t n = strlen(text);
        cloob_status st = CLOOB_OK;
        if (n + 1 > buflen) {
            st = CLOOB_ERR_INVALID_ARGUMENT;
        } else {
            memcpy(buf, text, n + 1);
        }
        cJSON_free(text);
        return st;
    });
}
