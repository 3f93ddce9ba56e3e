/*
 * spm_plugin.cc - libcloob_spm.so: SentencePiece (Debian's libsentencepiece) behind the C table
 * of spm_plugin.h. Built as its own shared object and loaded by shim/spm.cc with RTLD_DEEPBIND;
 * spm_plugin.h explains why it cannot simply be linked into the programs.
 */
#include "spm_plugin.h"

#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

void set_err(char *err, size_t errlen, const char *what) noexcept {
    if (err && errlen) std::snprintf(err, errlen, "%s", what);
}

void *load(const char *proto, size_t len, char *err, size_t errlen) noexcept {
    try {
        auto *sp = new sentencepiece::SentencePieceProcessor();
        auto st = sp->LoadFromSerializedProto(std::string(proto, len));
        if (!st.ok()) {
            set_err(err, errlen, st.ToString().c_str());
            delete sp;
            return nullptr;
        }
        return sp;
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown exception in sentencepiece");
    }
    return nullptr;
}

void free_model(void *model) noexcept {
    delete static_cast<sentencepiece::SentencePieceProcessor *>(model);
}

long encode(const void *model, const char *text, size_t len, int *out, size_t cap, char *err,
            size_t errlen) noexcept {
    try {
        const auto *sp = static_cast<const sentencepiece::SentencePieceProcessor *>(model);
        std::vector<int> ids;
        auto st = sp->Encode(std::string(text, len), &ids);
        if (!st.ok()) {
            set_err(err, errlen, st.ToString().c_str());
            return -1;
        }
        size_t n = ids.size() < cap ? ids.size() : cap;
        if (n) std::memcpy(out, ids.data(), n * sizeof(int));
        return static_cast<long>(ids.size());
    } catch (const std::exception &e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown exception in sentencepiece");
    }
    return -1;
}

int piece_to_id(const void *model, const char *piece, size_t len) noexcept {
    try {
        return static_cast<const sentencepiece::SentencePieceProcessor *>(model)->PieceToId(
            std::string(piece, len));
    } catch (...) {
        return -1;
    }
}

int unk_id(const void *model) noexcept {
    return static_cast<const sentencepiece::SentencePieceProcessor *>(model)->unk_id();
}

int vocab_size(const void *model) noexcept {
    return static_cast<const sentencepiece::SentencePieceProcessor *>(model)->GetPieceSize();
}

const char *version() noexcept { return "libsentencepiece (Debian libsentencepiece0)"; }

const cloob_spm_api kApi = {CLOOB_SPM_PLUGIN_ABI, load, free_model, encode, piece_to_id,
                            unk_id, vocab_size, version};

} // namespace

extern "C" __attribute__((visibility("default"))) const cloob_spm_api *cloob_spm_plugin(void) {
    return &kApi;
}
