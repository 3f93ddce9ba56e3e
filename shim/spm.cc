/*
 * spm.cc - cloob::SpmModel: SentencePiece through libcloob_spm.so (shim/plugin/spm_plugin.cc, on
 * Debian's libsentencepiece), loaded once per process with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
 * shim/plugin/spm_plugin.h explains why the library cannot be linked into the programs directly.
 *
 * Where the plugin is looked for, first hit wins:
 *   1. $CLOOB_SPM_PLUGIN (a path);
 *   2. next to the running program: <dir of /proc/self/exe>/libcloob_spm.so;
 *   3. the installed layout: <dir of exe>/../lib/cloob-server/libcloob_spm.so;
 *   4. the build folder this shim was compiled for (CLOOB_SPM_PLUGIN_DEFAULT), so tests and
 *      tools run from any directory.
 * The handle is never dlclose()d: SentencePiece keeps static state, and one plugin per process
 * is all that is ever needed.
 */
#include "spm.h"

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <string>

#include "plugin/spm_plugin.h"

#ifndef CLOOB_SPM_PLUGIN_DEFAULT
#define CLOOB_SPM_PLUGIN_DEFAULT "build/libcloob_spm.so"
#endif

namespace cloob {

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* Sanitizer builds only (tests): the sanitizers' dlopen interceptor refuses RTLD_DEEPBIND
 * (google/sanitizers#611), which this plugin cannot do without (see spm_plugin.h). glibc's own
 * dlopen, looked up in libc.so.6, loads it unintercepted; the plugin itself is not checked. */
void *plugin_dlopen(const char *path, int flags) {
    using dlopen_fn = void *(*)(const char *, int);
    static dlopen_fn real = [] {
        void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
        return libc ? reinterpret_cast<dlopen_fn>(dlsym(libc, "dlopen")) : nullptr;
    }();
    return real ? real(path, flags) : dlopen(path, flags);
}
#else
void *plugin_dlopen(const char *path, int flags) { return dlopen(path, flags); }
#endif

std::once_flag g_once;
const cloob_spm_api *g_api = nullptr;
std::string g_load_error;

std::string exe_dir() {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return "";
    std::string p(buf, (size_t)n);
    size_t slash = p.rfind('/');
    return slash == std::string::npos ? "" : p.substr(0, slash);
}

/* Runs once per process (std::call_once), on whichever thread loads the first tokenizer. */
void load_plugin() {
    std::string candidates[4];
    int n = 0;
    if (const char *env = std::getenv("CLOOB_SPM_PLUGIN"); env && *env) candidates[n++] = env;
    std::string dir = exe_dir();
    if (!dir.empty()) {
        candidates[n++] = dir + "/libcloob_spm.so";
        candidates[n++] = dir + "/../lib/cloob-server/libcloob_spm.so";
    }
    candidates[n++] = CLOOB_SPM_PLUGIN_DEFAULT;
    std::string tried;
    for (int i = 0; i < n; i++) {
        if (access(candidates[i].c_str(), R_OK) != 0) {
            tried += (tried.empty() ? "" : ", ") + candidates[i];
            continue;
        }
        void *h = plugin_dlopen(candidates[i].c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) {
            const char *why = dlerror();
            g_load_error = "cannot load SentencePiece plugin " + candidates[i] + ": " + (why ? why : "?");
            return;
        }
        auto fn = reinterpret_cast<cloob_spm_plugin_fn>(dlsym(h, CLOOB_SPM_PLUGIN_SYMBOL));
        const cloob_spm_api *api = fn ? fn() : nullptr;
        if (!api || api->abi != CLOOB_SPM_PLUGIN_ABI) {
            g_load_error = "SentencePiece plugin " + candidates[i] + " has the wrong interface";
            return;
        }
        g_api = api;
        return;
    }
    g_load_error = "SentencePiece plugin libcloob_spm.so not found (tried " + tried +
                   "; set CLOOB_SPM_PLUGIN)";
}

} // namespace

SpmModel::~SpmModel() {
    if (model_ && api_) api_->free_model(model_);
}

bool SpmModel::Load(std::string_view proto, std::string *err) {
    std::call_once(g_once, load_plugin);
    if (!g_api) {
        *err = g_load_error;
        return false;
    }
    char why[512] = "";
    void *m = g_api->load(proto.data(), proto.size(), why, sizeof why);
    if (!m) {
        *err = std::string("sentencepiece: ") + why;
        return false;
    }
    if (model_) api_->free_model(model_);
    api_ = g_api;
    model_ = m;
    return true;
}

void SpmModel::Encode(std::string_view text, std::vector<int> *ids) const {
    /* Every piece covers at least one byte, plus the dummy-prefix piece: len + 2 always fits. */
    size_t cap = text.size() + 2;
    size_t base = ids->size();
    ids->resize(base + cap);
    char why[512] = "";
    long n = api_->encode(model_, text.data(), text.size(), ids->data() + base, cap, why, sizeof why);
    if (n < 0) {
        ids->resize(base);
        throw std::runtime_error(std::string("sentencepiece: ") + why);
    }
    if ((size_t)n > cap) { /* cannot happen (see above); handled anyway */
        ids->resize(base + (size_t)n);
        n = api_->encode(model_, text.data(), text.size(), ids->data() + base, (size_t)n, why,
                         sizeof why);
        if (n < 0) throw std::runtime_error(std::string("sentencepiece: ") + why);
    }
    ids->resize(base + (size_t)n);
}

int SpmModel::PieceToId(std::string_view piece) const {
    return api_->piece_to_id(model_, piece.data(), piece.size());
}

int SpmModel::unk_id() const { return api_->unk_id(model_); }

int SpmModel::size() const { return api_->vocab_size(model_); }

} // namespace cloob
