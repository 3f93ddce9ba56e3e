/*
 * spm.h - SentencePiece for the tokenizer: Debian's libsentencepiece, reached through the plugin
 * libcloob_spm.so (shim/plugin/spm_plugin.h says why it is a dlopen'ed plugin and not a plain
 * link). Internal to the shim (C++ only).
 *
 * Thread safety: immutable after Load(); Encode() and PieceToId() are const and may be called
 * concurrently. Not copyable: the object owns the plugin-side model.
 */
#ifndef CLOOB_SPM_H
#define CLOOB_SPM_H

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct cloob_spm_api;

namespace cloob {

class SpmModel {
  public:
    SpmModel() = default;
    ~SpmModel();
    SpmModel(const SpmModel &) = delete;
    SpmModel &operator=(const SpmModel &) = delete;

    /* Loads the plugin (once per process) and a serialized ModelProto. On failure returns false
     * and sets *err (it names the plugin path when the plugin is what failed). */
    bool Load(std::string_view proto, std::string *err);

    /* SentencePieceProcessor::Encode(text, &ids): appends the ids. Throws std::runtime_error or
     * std::bad_alloc (the shim's guard turns them into a status). Only after a successful Load. */
    void Encode(std::string_view text, std::vector<int> *ids) const;

    /* The id of a piece of any type, or unk_id() (SentencePieceProcessor::PieceToId). */
    int PieceToId(std::string_view piece) const;
    int unk_id() const;
    int size() const;

  private:
    const cloob_spm_api *api_ = nullptr;
    void *model_ = nullptr;
};

} // namespace cloob

#endif
