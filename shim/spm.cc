/*
 * spm.cc - the SentencePiece unigram encoder described in spm.h. Compiled without libtorch.
 * Everything here runs on whatever thread calls it; after Load() nothing is written.
 */
#include "spm.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace cloob {
namespace {

/* ---- protobuf wire format (just what ModelProto needs) ----------------------------------- */

class WireReader {
  public:
    explicit WireReader(std::string_view s)
        : p_(reinterpret_cast<const unsigned char *>(s.data())), end_(p_ + s.size()) {}
    bool done() const { return p_ >= end_; }

    bool Varint(uint64_t *v) {
        uint64_t r = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (p_ >= end_) return false;
            unsigned char c = *p_++;
            r |= (uint64_t)(c & 0x7F) << shift;
            if (c < 0x80) {
                *v = r;
                return true;
            }
        }
        return false;
    }
    bool Tag(uint32_t *field, int *wire) {
        uint64_t t;
        if (!Varint(&t) || (t >> 3) == 0 || (t >> 3) > 0x1FFFFFFF) return false;
        *field = (uint32_t)(t >> 3);
        *wire = (int)(t & 7);
        return true;
    }
    bool Bytes(std::string_view *out) {
        uint64_t n;
        if (!Varint(&n) || n > (uint64_t)(end_ - p_)) return false;
        *out = std::string_view(reinterpret_cast<const char *>(p_), (size_t)n);
        p_ += n;
        return true;
    }
    bool Fixed32(uint32_t *v) {
        if (end_ - p_ < 4) return false;
        *v = (uint32_t)p_[0] | (uint32_t)p_[1] << 8 | (uint32_t)p_[2] << 16 | (uint32_t)p_[3] << 24;
        p_ += 4;
        return true;
    }
    bool Skip(int wire) {
        uint64_t v;
        uint32_t f;
        std::string_view s;
        switch (wire) {
        case 0: return Varint(&v);
        case 1:
            if (end_ - p_ < 8) return false;
            p_ += 8;
            return true;
        case 2: return Bytes(&s);
        case 5: return Fixed32(&f);
        default: return false; /* groups (3/4) never appear in ModelProto */
        }
    }

  private:
    const unsigned char *p_, *end_;
};

/* ---- darts-clone double-array units ------------------------------------------------------- */

inline bool unit_has_leaf(uint32_t u) { return ((u >> 8) & 1) == 1; }
inline uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }
inline uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* sentencepiece's Normalizer::kMaxTrieResultsSize: matches beyond it are not considered */
constexpr size_t kMaxTrieResults = 32;
/* sentencepiece's unigram kUnkPenalty */
constexpr float kUnkPenalty = 10.0f;

const char kSpaceSymbol[] = "\xe2\x96\x81"; /* U+2581 */
const char kReplacementChar[] = "\xef\xbf\xbd";

/* string_util::OneCharLen: the length implied by the lead byte alone */
inline size_t one_char_len(unsigned char c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[c >> 4]; }

/* sentencepiece's string_util::DecodeUTF8 validity (IsValidDecodeUTF8): returns the length of
 * a valid character at s, or 0 if the bytes there are malformed. */
size_t valid_utf8_len(std::string_view s) {
    const unsigned char *p = reinterpret_cast<const unsigned char *>(s.data());
    size_t n = s.size();
    if (p[0] < 0x80) return 1;
    uint32_t c;
    if (n >= 2 && (p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
        c = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
        return c >= 0x80 ? 2 : 0;
    }
    if (n >= 3 && (p[0] & 0xF0) == 0xE0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
        c = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
        return (c >= 0x800 && (c < 0xD800 || c > 0xDFFF)) ? 3 : 0;
    }
    if (n >= 4 && (p[0] & 0xF8) == 0xF0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80) {
        c = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
        return (c >= 0x10000 && c <= 0x10FFFF) ? 4 : 0;
    }
    return 0;
}

bool parse_piece(std::string_view msg, std::string *text, float *score, int *type) {
    WireReader r(msg);
    *score = 0.0f;
    *type = 1;
    while (!r.done()) {
        uint32_t f;
        int w;
        if (!r.Tag(&f, &w)) return false;
        if (f == 1 && w == 2) {
            std::string_view s;
            if (!r.Bytes(&s)) return false;
            text->assign(s.data(), s.size());
        } else if (f == 2 && w == 5) {
            uint32_t bits;
            if (!r.Fixed32(&bits)) return false;
            memcpy(score, &bits, sizeof *score);
        } else if (f == 3 && w == 0) {
            uint64_t v;
            if (!r.Varint(&v)) return false;
            *type = (int)v;
        } else if (!r.Skip(w)) {
            return false;
        }
    }
    return true;
}

} // namespace

bool SpmModel::Load(std::string_view proto, std::string *err) {
    WireReader r(proto);
    std::string_view charsmap;
    bool have_normalizer = false;
    uint64_t model_type = 1, byte_fallback = 0, ws_suffix = 0;
    pieces_.clear();
    while (!r.done()) {
        uint32_t f;
        int w;
        if (!r.Tag(&f, &w)) {
            *err = "not a SentencePiece model (bad protobuf)";
            return false;
        }
        std::string_view msg;
        if ((f == 1 || f == 2 || f == 3) && w == 2) {
            if (!r.Bytes(&msg)) {
                *err = "not a SentencePiece model (truncated)";
                return false;
            }
        } else if (!r.Skip(w)) {
            *err = "not a SentencePiece model (bad protobuf)";
            return false;
        } else {
            continue;
        }
        if (f == 1) {
            Piece p;
            if (!parse_piece(msg, &p.text, &p.score, &p.type)) {
                *err = "malformed piece " + std::to_string(pieces_.size());
                return false;
            }
            pieces_.push_back(std::move(p));
            continue;
        }
        WireReader sub(msg);
        while (!sub.done()) {
            uint32_t sf;
            int sw;
            uint64_t v = 0;
            std::string_view s;
            if (!sub.Tag(&sf, &sw)) {
                *err = "malformed trainer/normalizer spec";
                return false;
            }
            bool ok;
            if (sw == 0) {
                ok = sub.Varint(&v);
            } else if (sw == 2) {
                ok = sub.Bytes(&s);
            } else {
                ok = sub.Skip(sw);
            }
            if (!ok) {
                *err = "malformed trainer/normalizer spec";
                return false;
            }
            if (f == 2) { /* TrainerSpec */
                if (sf == 3 && sw == 0) model_type = v;
                if (sf == 24 && sw == 0) ws_suffix = v;
                if (sf == 35 && sw == 0) byte_fallback = v;
            } else { /* NormalizerSpec */
                have_normalizer = true;
                if (sf == 2 && sw == 2) charsmap = s;
                if (sf == 3 && sw == 0) add_dummy_prefix_ = v != 0;
                if (sf == 4 && sw == 0) remove_extra_whitespaces_ = v != 0;
                if (sf == 5 && sw == 0) escape_whitespaces_ = v != 0;
            }
        }
    }
    if (pieces_.empty() || pieces_.size() > (1u << 24)) {
        *err = "not a SentencePiece model (" + std::to_string(pieces_.size()) + " pieces)";
        return false;
    }
    if (model_type != 1) {
        *err = "only unigram SentencePiece models are supported (model_type " + std::to_string(model_type) + ")";
        return false;
    }
    if (byte_fallback != 0 || ws_suffix != 0) {
        *err = "byte_fallback and treat_whitespace_as_suffix are not supported";
        return false;
    }
    (void)have_normalizer;

    /* pieces: ids, scores, the trie of matchable pieces (sentencepiece's InitializePieces) */
    bool have_normal = false;
    std::vector<std::map<unsigned char, uint32_t>> tmp(1);
    std::vector<int> values(1, -1);
    for (size_t id = 0; id < pieces_.size(); id++) {
        const Piece &p = pieces_[id];
        if (p.text.empty() || p.type < kNormal || p.type > kByte) {
            *err = "piece " + std::to_string(id) + " is empty or has an unknown type";
            return false;
        }
        if (p.type == kByte) {
            *err = "byte pieces are not supported";
            return false;
        }
        if (!piece_ids_.emplace(p.text, (int)id).second) {
            *err = "duplicate piece " + p.text;
            return false;
        }
        if (p.type == kUnknown) {
            if (unk_id_ >= 0) {
                *err = "more than one <unk> piece";
                return false;
            }
            unk_id_ = (int)id;
        }
        if (p.type == kNormal) {
            min_score_ = have_normal ? std::min(min_score_, p.score) : p.score;
            max_score_ = have_normal ? std::max(max_score_, p.score) : p.score;
            have_normal = true;
        }
        if (p.type == kUserDefined) has_user_defined_ = true;
        if (p.type == kNormal || p.type == kUserDefined || p.type == kUnused) {
            uint32_t node = 0;
            for (unsigned char c : p.text) {
                auto it = tmp[node].find(c);
                if (it == tmp[node].end()) {
                    tmp[node].emplace(c, (uint32_t)tmp.size());
                    node = (uint32_t)tmp.size();
                    tmp.emplace_back();
                    values.push_back(-1);
                } else {
                    node = it->second;
                }
            }
            values[node] = (int)id;
        }
    }
    if (unk_id_ < 0) {
        *err = "the model has no <unk> piece";
        return false;
    }
    child_begin_.assign(tmp.size() + 1, 0);
    for (size_t k = 0; k < tmp.size(); k++) {
        child_begin_[k] = (uint32_t)child_byte_.size();
        for (const auto &kv : tmp[k]) { /* std::map iterates in byte order */
            child_byte_.push_back(kv.first);
            child_node_.push_back(kv.second);
        }
    }
    child_begin_[tmp.size()] = (uint32_t)child_byte_.size();
    node_value_ = std::move(values);

    /* precompiled charsmap: <uint32 trie size><double array><NUL-separated strings> */
    if (!charsmap.empty()) {
        uint32_t trie_size = 0;
        if (charsmap.size() <= 4) {
            *err = "normalization rule blob is broken";
            return false;
        }
        WireReader cr(charsmap);
        cr.Fixed32(&trie_size);
        if (trie_size > charsmap.size() - 4 || trie_size % 4 != 0 || trie_size == 0) {
            *err = "normalization trie size exceeds the blob";
            return false;
        }
        charsmap_units_.resize(trie_size / 4);
        const unsigned char *u = reinterpret_cast<const unsigned char *>(charsmap.data()) + 4;
        for (size_t k = 0; k < charsmap_units_.size(); k++) {
            charsmap_units_[k] = (uint32_t)u[4 * k] | (uint32_t)u[4 * k + 1] << 8 | (uint32_t)u[4 * k + 2] << 16 |
                                 (uint32_t)u[4 * k + 3] << 24;
        }
        charsmap_strings_.assign(charsmap.data() + 4 + trie_size, charsmap.size() - 4 - trie_size);
        charsmap_strings_.push_back('\0'); /* every value then ends at a NUL inside the buffer */
    }
    return true;
}

int SpmModel::PieceToId(std::string_view piece) const {
    auto it = piece_ids_.find(std::string(piece));
    return it == piece_ids_.end() ? unk_id_ : it->second;
}

size_t SpmModel::CharsmapLongest(std::string_view input, uint32_t *value) const {
    const size_t n_units = charsmap_units_.size();
    if (n_units == 0) return 0;
    size_t found = 0, best_len = 0;
    uint32_t best_value = 0;
    uint32_t id = unit_offset(charsmap_units_[0]);
    for (size_t i = 0; i < input.size(); i++) {
        unsigned char c = (unsigned char)input[i];
        id ^= c;
        if (id >= n_units) break;
        uint32_t unit = charsmap_units_[id];
        if (unit_label(unit) != c) break;
        id ^= unit_offset(unit);
        if (unit_has_leaf(unit)) {
            if (id >= n_units) break;
            if (found < kMaxTrieResults) {
                best_len = i + 1; /* results come shortest first: the last stored is the longest */
                best_value = unit_value(charsmap_units_[id]);
            }
            found++;
        }
    }
    if (best_len > 0 && best_value >= charsmap_strings_.size()) return 0; /* corrupt rule: ignore */
    *value = best_value;
    return best_len;
}

size_t SpmModel::UserDefinedPrefix(std::string_view input) const {
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < input.size(); i++) {
        unsigned char c = (unsigned char)input[i];
        uint32_t b = child_begin_[node], e = child_begin_[node + 1];
        const unsigned char *first = child_byte_.data() + b, *last = child_byte_.data() + e;
        const unsigned char *hit = std::lower_bound(first, last, c);
        if (hit == last || *hit != c) break;
        node = child_node_[b + (uint32_t)(hit - first)];
        int v = node_value_[node];
        if (v >= 0 && pieces_[(size_t)v].type == kUserDefined) best = i + 1;
    }
    return best;
}

std::string_view SpmModel::NormalizePrefix(std::string_view input, size_t *consumed) const {
    if (has_user_defined_) {
        size_t n = UserDefinedPrefix(input);
        if (n > 0) {
            *consumed = n;
            return input.substr(0, n);
        }
    }
    uint32_t value = 0;
    size_t n = CharsmapLongest(input, &value);
    if (n > 0) {
        *consumed = n;
        return std::string_view(charsmap_strings_.c_str() + value);
    }
    size_t len = valid_utf8_len(input);
    if (len == 0) { /* malformed: U+FFFD for one byte, as sentencepiece */
        *consumed = 1;
        return std::string_view(kReplacementChar, 3);
    }
    *consumed = len;
    return input.substr(0, len);
}

std::string SpmModel::Normalize(std::string_view input) const {
    std::string out;
    if (input.empty()) return out;
    size_t consumed = 0;
    if (remove_extra_whitespaces_) { /* heading spaces */
        while (!input.empty()) {
            std::string_view p = NormalizePrefix(input, &consumed);
            if (p != " ") break;
            input.remove_prefix(consumed);
        }
    }
    if (input.empty()) return out;
    out.reserve(input.size() * 3);
    if (add_dummy_prefix_) out.append(escape_whitespaces_ ? kSpaceSymbol : " ");
    bool is_prev_space = remove_extra_whitespaces_;
    while (!input.empty()) {
        std::string_view sp = NormalizePrefix(input, &consumed);
        while (is_prev_space && !sp.empty() && sp[0] == ' ') sp.remove_prefix(1);
        if (!sp.empty()) {
            for (char c : sp) {
                if (escape_whitespaces_ && c == ' ') {
                    out.append(kSpaceSymbol);
                } else {
                    out.push_back(c);
                }
            }
            is_prev_space = sp.back() == ' ';
        }
        input.remove_prefix(consumed);
        if (!remove_extra_whitespaces_) is_prev_space = false;
    }
    if (remove_extra_whitespaces_) { /* trailing spaces */
        std::string_view space = escape_whitespaces_ ? std::string_view(kSpaceSymbol) : std::string_view(" ");
        while (out.size() >= space.size() && std::string_view(out).substr(out.size() - space.size()) == space) {
            out.resize(out.size() - space.size());
        }
    }
    return out;
}

void SpmModel::Encode(std::string_view text, std::vector<int> *ids) const {
    const std::string normalized = Normalize(text);
    const size_t size = normalized.size();
    if (size == 0) return;

    /* unigram_model.cc EncodeOptimized, with its exact arithmetic: candidate scores are computed
     * in double for pieces (the ?: mixes a double) and in float for unknowns, stored as float,
     * and a later candidate must be strictly better to replace an earlier one. */
    struct BestPathNode {
        int id = -1;
        float best_path_score = 0;
        int starts_at = -1;
    };
    const float unk_score = min_score_ - kUnkPenalty;
    std::vector<BestPathNode> best(size + 1);
    size_t starts_at = 0;
    while (starts_at < size) {
        const float score_till_here = best[starts_at].best_path_score;
        bool has_single_node = false;
        const size_t mblen = std::min(one_char_len((unsigned char)normalized[starts_at]), size - starts_at);
        uint32_t node = 0;
        for (size_t key_pos = starts_at; key_pos < size;) {
            unsigned char c = (unsigned char)normalized[key_pos];
            uint32_t b = child_begin_[node], e = child_begin_[node + 1];
            const unsigned char *first = child_byte_.data() + b, *last = child_byte_.data() + e;
            const unsigned char *hit = std::lower_bound(first, last, c);
            if (hit == last || *hit != c) break;
            node = child_node_[b + (uint32_t)(hit - first)];
            key_pos++;
            const int ret = node_value_[node];
            if (ret < 0 || pieces_[(size_t)ret].type == kUnused) continue;
            BestPathNode &target = best[key_pos];
            const size_t length = key_pos - starts_at;
            const double score = pieces_[(size_t)ret].type == kUserDefined ? ((float)length * max_score_ - 0.1)
                                                                           : (double)pieces_[(size_t)ret].score;
            const double candidate = score + score_till_here;
            if (target.starts_at == -1 || candidate > target.best_path_score) {
                target.best_path_score = (float)candidate;
                target.starts_at = (int)starts_at;
                target.id = ret;
            }
            if (!has_single_node && length == mblen) has_single_node = true;
        }
        if (!has_single_node) {
            BestPathNode &target = best[starts_at + mblen];
            const float candidate = unk_score + score_till_here;
            if (target.starts_at == -1 || candidate > target.best_path_score) {
                target.best_path_score = candidate;
                target.starts_at = (int)starts_at;
                target.id = unk_id_;
            }
        }
        starts_at += mblen;
    }
    /* backtrack, then emit with runs of unknowns merged (PopulateSentencePieceText) */
    std::vector<int> path;
    for (size_t ends_at = size; ends_at > 0;) {
        const BestPathNode &n = best[ends_at];
        path.push_back(n.id);
        ends_at = (size_t)n.starts_at;
    }
    bool prev_unk = false;
    for (auto it = path.rbegin(); it != path.rend(); ++it) {
        const bool is_unk = *it == unk_id_;
        if (!(prev_unk && is_unk)) ids->push_back(*it);
        prev_unk = is_unk;
    }
}

} // namespace cloob
