/*
 * spm.h - a self-contained SentencePiece *unigram* encoder that reads the standard .model file
 * (ModelProto, protobuf wire format) and reproduces libsentencepiece 0.1.97's
 * SentencePieceProcessor::Encode(text, &ids) id for id. Internal to the shim (C++ only).
 *
 * Why not libsentencepiece: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite
 * 3.14 and exports those symbols, while libtorch_cpu needs the system libprotobuf.so.32 (3.21).
 * In one process whichever loads first wins for both: with sentencepiece first the process dies in
 * libprotobuf's static initialisers (SIGSEGV before main), with libprotobuf first sentencepiece's
 * version check aborts model loading ("compiled against version 3.14.0 ... installed 3.21.12").
 * The server needs both libtorch and the tokenizer, so the tokenizer does not link sentencepiece.
 *
 * What is reproduced (from sentencepiece's normalizer.cc, unigram_model.cc EncodeOptimized and
 * sentencepiece_processor.cc PopulateSentencePieceText):
 *   - normalizer: the precompiled charsmap (a darts-clone double array + NUL-terminated
 *     replacement strings), longest match per position, user-defined pieces copied verbatim,
 *     add_dummy_prefix / remove_extra_whitespaces / escape_whitespaces (U+2581);
 *   - unigram Viterbi over UTF-8 bytes with the same score arithmetic (double candidate scores
 *     stored as float, unknown = min_score - 10 per character, first-found wins on ties);
 *   - consecutive unknown pieces merged into one <unk>.
 * Not supported (refused at load with a message): BPE/WORD/CHAR models, byte_fallback,
 * treat_whitespace_as_suffix. tests/test_tokenizer.py compares this encoder with the Python
 * sentencepiece module on thousands of strings.
 *
 * Thread safety: immutable after Load(); Encode() is const and keeps no state.
 */
#ifndef CLOOB_SPM_H
#define CLOOB_SPM_H

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cloob {

class SpmModel {
  public:
    /* Parses a serialized ModelProto. On failure returns false and sets *err. */
    bool Load(std::string_view proto, std::string *err);

    /* Normalizes and segments one text (valid UTF-8 expected; invalid bytes become U+FFFD as in
     * sentencepiece) and appends the ids. May throw std::bad_alloc. */
    void Encode(std::string_view text, std::vector<int> *ids) const;

    /* The id of a piece of any type, or unk_id() (as sentencepiece's PieceToId). */
    int PieceToId(std::string_view piece) const;
    int unk_id() const { return unk_id_; }
    int size() const { return (int)pieces_.size(); }

    /* The normalizer alone (tests). */
    std::string Normalize(std::string_view text) const;

  private:
    enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
    struct Piece {
        std::string text;
        float score = 0.0f;
        int type = kNormal;
    };

    /* One (matched input length, replacement) step of the normalizer. */
    std::string_view NormalizePrefix(std::string_view input, size_t *consumed) const;
    /* darts-clone DoubleArray::commonPrefixSearch over the charsmap: longest match or 0. */
    size_t CharsmapLongest(std::string_view input, uint32_t *value) const;
    /* Longest user-defined piece that prefixes input, or 0. */
    size_t UserDefinedPrefix(std::string_view input) const;

    std::vector<Piece> pieces_;
    std::unordered_map<std::string, int> piece_ids_;  /* every piece -> id (first wins) */
    int unk_id_ = -1;
    float min_score_ = 0.0f, max_score_ = 0.0f;
    bool has_user_defined_ = false;

    /* piece trie (NORMAL, USER_DEFINED, UNUSED pieces), CSR layout: node k's children are
     * child_byte_/child_node_[child_begin_[k] .. child_begin_[k+1]), sorted by byte */
    std::vector<uint32_t> child_begin_;
    std::vector<unsigned char> child_byte_;
    std::vector<uint32_t> child_node_;
    std::vector<int> node_value_;  /* piece id ending at this node, or -1 */

    /* normalizer */
    std::vector<uint32_t> charsmap_units_;
    std::string charsmap_strings_;
    bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true;
};

} // namespace cloob

#endif
