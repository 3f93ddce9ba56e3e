/*
 * tokenizer.cc - SPEC.md section 4 (rinna's T5Tokenizer with do_lower_case, then
 * japanese_clip.tokenize) on the SentencePiece model file, encoded by Debian's libsentencepiece
 * through spm.cc (a dlopen'ed plugin: shim/plugin/spm_plugin.h says why the library cannot be
 * linked next to Debian's libtorch). Compiled WITHOUT libtorch.
 *
 * Pipeline for one text (each step mirrors a line of the Python reference, which is
 * tests/reference/ref_tokenizer.py; tests/test_tokenizer.py checks the two id for id):
 *   0. bytes -> code points, invalid UTF-8 -> U+FFFD per maximal subpart, exactly as
 *      bytes.decode("utf-8", errors="replace"). NUL (U+0000) is an ordinary character, as in
 *      Python: SentencePiece turns it into <unk> like any character it does not know.
 *   1. lower-case each code point on its own with Python's str.lower table (lowercase_table.h),
 *      except code points inside a literal special-token string of the ORIGINAL text.
 *      This is transformers' `re.sub(r"(<specials>)|(.+?)", ...)`: `.` does not match "\n",
 *      which only matters for "\n" itself, whose lower case is "\n".
 *   2. split the LOWER-CASED text on the literal special tokens (leftmost match; no special token
 *      is a prefix of, or overlaps, another, so leftmost == transformers' Trie longest-first).
 *      Because step 2 sees the lower-cased text, "<UNK>" and "<S>" become the special tokens
 *      <unk> and <s>, as in transformers; "[cls]" stays text.
 *      A text chunk next to a special token loses whitespace (Python str.isspace, which includes
 *      U+3000, U+0085 and U+001C..U+001F) on the side touching it; empty chunks vanish.
 *   3. SentencePiece Encode of each chunk. libsentencepiece merges a run of unknown characters
 *      into one <unk> (checked with the Python module: "😀😀😀" -> [9, 0]);
 *      transformers maps each unknown surface piece back to one id 0, so nothing more is merged.
 *   4. [CLS] + first max_seq_len-1 ids, then [PAD]/mask 0.
 *
 * Reading of transformers (4.x slow tokenizers, PreTrainedTokenizer.tokenize): the lower-casing
 * regex uses all_special_tokens; then tokens_trie.split (>= 4.11; before that split_on_tokens,
 * same result) and, for special tokens that are plain strings, "We strip left and right by
 * default": right.lstrip() / left.rstrip() with no argument, i.e. str.isspace whitespace. Two
 * divergences between transformers versions are NOT followed, because SPEC.md is the contract:
 * versions before the Trie (< 4.11) returned [] for a text whose str.strip() is empty (this
 * only differs for texts made only of U+000B, U+001C..U+001F, U+0085, which SentencePiece
 * treats as unknown characters), and versions >= 4.34 wrap special tokens in AddedToken whose
 * lstrip/rstrip flags decide the stripping.
 *
 * Thread safety: after load the tokenizer is read-only; SpmModel::Encode is a const method
 * without caches, so concurrent cloob_tokenize calls on one handle are safe
 * (tests/shim/test_tokenizer.c runs 4 threads on one handle and compares with serial results).
 */
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "cloob.h"
#include "lowercase_table.h"
#include "shim_internal.h"
#include "spm.h"

struct cloob_tokenizer {
    cloob::SpmModel sp;
    int64_t special_ids[7];
};

namespace {

/* SPEC.md section 4: the literal special-token strings, all ASCII. */
constexpr int kNumSpecials = 7;
const char *const kSpecials[kNumSpecials] = {"<s>", "</s>", "<unk>", "[SEP]", "[PAD]", "[CLS]", "[MASK]"};

constexpr uint32_t kReplacement = 0xFFFD;

/* The real model is 805 kB; anything far larger is not a tokenizer. */
constexpr size_t kMaxModelBytes = 64u << 20;

/* ---- step 0: UTF-8 -> code points ------------------------------------------------------- */

/* Appends the code points of text to out; Python's "replace" error handler semantics. */
void utf8_decode(const unsigned char *s, size_t len, std::vector<uint32_t> &out) {
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        if (b < 0x80) {
            out.push_back(b);
            i++;
            continue;
        }
        int need;
        uint32_t cp;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the SECOND byte */
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
            cp = b & 0x1Fu;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            cp = b & 0x0Fu;
            if (b == 0xE0) lo = 0xA0;      /* no overlong forms */
            if (b == 0xED) hi = 0x9F;      /* no surrogates */
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            cp = b & 0x07u;
            if (b == 0xF0) lo = 0x90;      /* no overlong forms */
            if (b == 0xF4) hi = 0x8F;      /* nothing above U+10FFFF */
        } else {
            out.push_back(kReplacement);   /* 0x80..0xC1, 0xF5..0xFF never start a character */
            i++;
            continue;
        }
        size_t j = i + 1;
        int got = 0;
        while (got < need && j < len) {
            unsigned char c = s[j];
            unsigned char l = got == 0 ? lo : 0x80;
            unsigned char h = got == 0 ? hi : 0xBF;
            if (c < l || c > h) {
                break;
            }
            cp = (cp << 6) | (c & 0x3Fu);
            got++;
            j++;
        }
        /* Complete: one character. Otherwise the valid prefix [i, j) is one maximal subpart,
         * replaced by exactly one U+FFFD; decoding resumes at the offending byte. */
        out.push_back(got == need ? cp : kReplacement);
        i = j;
    }
}

/* ---- step 1 helpers: Python's str.lower / str.isspace per code point ----------------------- */

int lower_cp(uint32_t cp, uint32_t out[3]) {
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    size_t lo = 0, hi = sizeof cloob_lower_multis / sizeof cloob_lower_multis[0];
    for (size_t k = 0; k < hi; k++) { /* one entry in Unicode 14: a linear scan is fine */
        if (cloob_lower_multis[k].cp == cp) {
            for (uint32_t m = 0; m < cloob_lower_multis[k].n; m++) out[m] = cloob_lower_multis[k].out[m];
            return (int)cloob_lower_multis[k].n;
        }
    }
    hi = sizeof cloob_lower_ranges / sizeof cloob_lower_ranges[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const cloob_lower_range &r = cloob_lower_ranges[mid];
        if (cp < r.first) {
            hi = mid;
        } else if (cp > r.last) {
            lo = mid + 1;
        } else {
            out[0] = ((cp - r.first) % r.stride == 0) ? (uint32_t)((int64_t)cp + r.delta) : cp;
            return 1;
        }
    }
    out[0] = cp;
    return 1;
}

bool is_space(uint32_t cp) {
    size_t lo = 0, hi = sizeof cloob_space_ranges / sizeof cloob_space_ranges[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < cloob_space_ranges[mid].first) {
            hi = mid;
        } else if (cp > cloob_space_ranges[mid].last) {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    return false;
}

/* Index of the special token that starts at cps[i], or -1. */
int match_special(const std::vector<uint32_t> &cps, size_t i) {
    uint32_t c = cps[i];
    if (c != '<' && c != '[') {
        return -1;
    }
    for (int k = 0; k < kNumSpecials; k++) {
        const char *lit = kSpecials[k];
        size_t n = strlen(lit);
        if (cps.size() - i < n) {
            continue;
        }
        size_t m = 0;
        while (m < n && cps[i + m] == (unsigned char)lit[m]) m++;
        if (m == n) {
            return k;
        }
    }
    return -1;
}

void append_utf8(std::string &s, uint32_t cp) {
    if (cp < 0x80) {
        s.push_back((char)cp);
    } else if (cp < 0x800) {
        s.push_back((char)(0xC0 | (cp >> 6)));
        s.push_back((char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        s.push_back((char)(0xE0 | (cp >> 12)));
        s.push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
        s.push_back((char)(0x80 | (cp & 0x3F)));
    } else {
        s.push_back((char)(0xF0 | (cp >> 18)));
        s.push_back((char)(0x80 | ((cp >> 12) & 0x3F)));
        s.push_back((char)(0x80 | ((cp >> 6) & 0x3F)));
        s.push_back((char)(0x80 | (cp & 0x3F)));
    }
}

struct Segment {
    int special;         /* index into kSpecials, or -1 for text */
    size_t begin, end;   /* text: code point range in the lower-cased text */
};

/* Steps 0-3: the raw ids of one text. Throws std::bad_alloc (mapped by guarded()). */
cloob_status raw_ids(const cloob_tokenizer *tok, const char *text, size_t len, std::vector<int> &ids,
                     char *err, size_t errlen) {
    std::vector<uint32_t> cps;
    cps.reserve(len);
    utf8_decode(reinterpret_cast<const unsigned char *>(text), len, cps);

    /* step 1: lower-case outside the ORIGINAL text's special tokens */
    std::vector<uint32_t> low;
    low.reserve(cps.size() + 8);
    for (size_t i = 0; i < cps.size();) {
        int sp = match_special(cps, i);
        if (sp >= 0) {
            size_t n = strlen(kSpecials[sp]);
            low.insert(low.end(), cps.begin() + (ptrdiff_t)i, cps.begin() + (ptrdiff_t)(i + n));
            i += n;
            continue;
        }
        uint32_t out[3];
        int n = lower_cp(cps[i], out);
        low.insert(low.end(), out, out + n);
        i++;
    }

    /* step 2: split the lower-cased text */
    std::vector<Segment> segs;
    size_t start = 0;
    for (size_t i = 0; i < low.size();) {
        int sp = match_special(low, i);
        if (sp < 0) {
            i++;
            continue;
        }
        if (i > start) segs.push_back(Segment{-1, start, i});
        segs.push_back(Segment{sp, 0, 0});
        i += strlen(kSpecials[sp]);
        start = i;
    }
    if (low.size() > start) segs.push_back(Segment{-1, start, low.size()});

    for (size_t k = 0; k < segs.size(); k++) {
        if (segs[k].special < 0) continue;
        if (k + 1 < segs.size() && segs[k + 1].special < 0) {
            Segment &r = segs[k + 1];
            while (r.begin < r.end && is_space(low[r.begin])) r.begin++;
        }
        if (k > 0 && segs[k - 1].special < 0) {
            Segment &l = segs[k - 1];
            while (l.end > l.begin && is_space(low[l.end - 1])) l.end--;
        }
    }

    /* step 3 */
    std::string chunk;
    for (const Segment &s : segs) {
        if (s.special >= 0) {
            ids.push_back((int)tok->special_ids[s.special]);
            continue;
        }
        if (s.begin == s.end) continue; /* empty chunks vanish */
        chunk.clear();
        for (size_t i = s.begin; i < s.end; i++) append_utf8(chunk, low[i]);
        tok->sp.Encode(chunk, &ids);
    }
    return CLOOB_OK;
}

/* The one place where C++ exceptions of the tokenizer are turned into statuses. */
template <typename F>
cloob_status guarded(char *err, size_t errlen, const char *what, F &&body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        cloob_set_error(err, errlen, "%s: out of memory", what);
        return CLOOB_ERR_OUT_OF_MEMORY;
    } catch (const std::exception &e) {
        cloob_set_error(err, errlen, "%s: %s", what, e.what());
        return CLOOB_ERR_INTERNAL;
    } catch (...) {
        cloob_set_error(err, errlen, "%s: unknown exception", what);
        return CLOOB_ERR_INTERNAL;
    }
}

cloob_status check_text(const char *text, size_t len, char *err, size_t errlen) {
    if (text == nullptr && len > 0) {
        cloob_set_error(err, errlen, "text is NULL but len is %zu", len);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    if (len > CLOOB_TOKENIZE_MAX_BYTES) {
        cloob_set_error(err, errlen, "text is %zu bytes; at most %u are tokenized", len,
                        (unsigned)CLOOB_TOKENIZE_MAX_BYTES);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    return CLOOB_OK;
}

} // namespace

/* ---- public API ------------------------------------------------------------------------ */

extern "C" cloob_status cloob_tokenizer_load(const char *spm_model_path, cloob_tokenizer **out, char *err,
                                             size_t errlen) noexcept {
    if (out != nullptr) *out = nullptr;
    if (spm_model_path == nullptr || out == nullptr) {
        cloob_set_error(err, errlen, "cloob_tokenizer_load: NULL %s", spm_model_path ? "out" : "path");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    return guarded(err, errlen, "loading the tokenizer", [&]() -> cloob_status {
        FILE *f = fopen(spm_model_path, "rb");
        if (f == nullptr) {
            cloob_set_error(err, errlen, "cannot open SentencePiece model %s: %s", spm_model_path, strerror(errno));
            return CLOOB_ERR_IO;
        }
        std::string bytes;
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0 && bytes.size() <= kMaxModelBytes) bytes.append(buf, n);
        bool read_error = ferror(f) != 0;
        fclose(f);
        if (read_error) {
            cloob_set_error(err, errlen, "cannot read SentencePiece model %s", spm_model_path);
            return CLOOB_ERR_IO;
        }
        if (bytes.size() > kMaxModelBytes) {
            cloob_set_error(err, errlen, "%s is larger than %zu bytes: not a SentencePiece model", spm_model_path,
                            kMaxModelBytes);
            return CLOOB_ERR_MODEL;
        }
        std::unique_ptr<cloob_tokenizer> tok(new cloob_tokenizer());
        std::string why;
        if (!tok->sp.Load(bytes, &why)) {
            cloob_set_error(err, errlen, "%s is not a usable SentencePiece model: %s", spm_model_path, why.c_str());
            return CLOOB_ERR_MODEL;
        }
        int unk = tok->sp.unk_id();
        for (int k = 0; k < kNumSpecials; k++) {
            int id = tok->sp.PieceToId(kSpecials[k]);
            /* PieceToId answers unk_id for an unknown piece: every special token but <unk>
             * itself must be a real piece, or SPEC's ids would silently turn into <unk>. */
            if (id == unk && strcmp(kSpecials[k], "<unk>") != 0) {
                cloob_set_error(err, errlen, "%s has no piece %s (not the rinna tokenizer?)", spm_model_path,
                                kSpecials[k]);
                return CLOOB_ERR_MODEL;
            }
            tok->special_ids[k] = id;
        }
        *out = tok.release();
        return CLOOB_OK;
    });
}

extern "C" void cloob_tokenizer_free(cloob_tokenizer *tok) noexcept {
    delete tok; /* destructors of std containers do not throw */
}

extern "C" cloob_status cloob_tokenize(const cloob_tokenizer *tok, const char *text, size_t len, int max_seq_len,
                                       int64_t *ids, int64_t *mask, cloob_token_result *result, char *err,
                                       size_t errlen) noexcept {
    if (tok == nullptr || ids == nullptr || mask == nullptr) {
        cloob_set_error(err, errlen, "cloob_tokenize: NULL %s", tok == nullptr ? "tokenizer" : ids == nullptr ? "ids" : "mask");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    if (max_seq_len < 1 || max_seq_len > CLOOB_TOKENIZE_MAX_SEQ_LEN) {
        cloob_set_error(err, errlen, "max_seq_len %d is outside 1..%d", max_seq_len, CLOOB_TOKENIZE_MAX_SEQ_LEN);
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    cloob_status st = check_text(text, len, err, errlen);
    if (st != CLOOB_OK) return st;
    return guarded(err, errlen, "tokenizing", [&]() -> cloob_status {
        std::vector<int> raw;
        cloob_status s = raw_ids(tok, text, len, raw, err, errlen);
        if (s != CLOOB_OK) return s;
        size_t keep = raw.size() < (size_t)(max_seq_len - 1) ? raw.size() : (size_t)(max_seq_len - 1);
        ids[0] = tok->special_ids[5]; /* [CLS] */
        mask[0] = 1;
        for (size_t i = 0; i < keep; i++) {
            ids[i + 1] = raw[i];
            mask[i + 1] = 1;
        }
        for (size_t i = keep + 1; i < (size_t)max_seq_len; i++) {
            ids[i] = tok->special_ids[4]; /* [PAD] */
            mask[i] = 0;
        }
        if (result != nullptr) {
            result->n_tokens = (int)keep + 1;
            /* raw.size() <= 2 * CLOOB_TOKENIZE_MAX_BYTES + 1, well inside int */
            result->n_dropped = (int)(raw.size() - keep);
        }
        return CLOOB_OK;
    });
}

extern "C" cloob_status cloob_tokenize_raw(const cloob_tokenizer *tok, const char *text, size_t len, int64_t *out,
                                           size_t cap, size_t *n_out, char *err, size_t errlen) noexcept {
    if (tok == nullptr || n_out == nullptr || (out == nullptr && cap > 0)) {
        cloob_set_error(err, errlen, "cloob_tokenize_raw: NULL %s", tok == nullptr ? "tokenizer" : n_out == nullptr ? "n_out" : "out");
        return CLOOB_ERR_INVALID_ARGUMENT;
    }
    *n_out = 0;
    cloob_status st = check_text(text, len, err, errlen);
    if (st != CLOOB_OK) return st;
    return guarded(err, errlen, "tokenizing", [&]() -> cloob_status {
        std::vector<int> raw;
        cloob_status s = raw_ids(tok, text, len, raw, err, errlen);
        if (s != CLOOB_OK) return s;
        for (size_t i = 0; i < raw.size() && i < cap; i++) out[i] = raw[i];
        *n_out = raw.size();
        return CLOOB_OK;
    });
}

/* ---- test hooks (shim_internal.h) ------------------------------------------------------ */

extern "C" size_t cloob_internal_utf8_decode(const char *text, size_t len, uint32_t *out, size_t cap) noexcept {
    try {
        std::vector<uint32_t> cps;
        utf8_decode(reinterpret_cast<const unsigned char *>(text), len, cps);
        for (size_t i = 0; i < cps.size() && i < cap; i++) out[i] = cps[i];
        return cps.size();
    } catch (...) {
        return 0;
    }
}

extern "C" int cloob_internal_lower(uint32_t cp, uint32_t out[3]) noexcept { return lower_cp(cp, out); }

extern "C" int cloob_internal_is_space(uint32_t cp) noexcept { return is_space(cp) ? 1 : 0; }

extern "C" int cloob_internal_spm_encode(const cloob_tokenizer *tok, const char *text, size_t len, int64_t *out,
                                         size_t cap, size_t *n_out) noexcept {
    if (tok == nullptr || n_out == nullptr || (text == nullptr && len > 0) || (out == nullptr && cap > 0)) return -1;
    try {
        std::vector<int> ids;
        tok->sp.Encode(std::string_view(text ? text : "", len), &ids);
        for (size_t i = 0; i < ids.size() && i < cap; i++) out[i] = ids[i];
        *n_out = ids.size();
        return 0;
    } catch (...) {
        return -1;
    }
}
