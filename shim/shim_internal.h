/*
 * shim_internal.h - helpers shared by the shim's C++ files (model.cc, tokenizer.cc, status.cc)
 * and hooks that expose internal steps of the tokenizer to tests/shim/test_tokenizer.c.
 * Not part of the public contract (that is cloob.h); the server must not include this.
 */
#ifndef CLOOB_SHIM_INTERNAL_H
#define CLOOB_SHIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cloob.h" /* CLOOB_NOEXCEPT */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Writes a printf-style message into err (errlen bytes). Always NUL-terminates when errlen > 0,
 * truncates silently (never in the middle of a UTF-8 sequence), and does nothing when err is NULL
 * or errlen is 0. Never fails, never throws.
 */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void cloob_set_error(char *err, size_t errlen, const char *fmt, ...) CLOOB_NOEXCEPT;

/* ---- test hooks for the tokenizer's building blocks (see tokenizer.cc) ---- */

/*
 * Decodes len bytes as Python's bytes.decode("utf-8", errors="replace") does (one U+FFFD per
 * maximal subpart of an ill-formed sequence). Writes up to cap code points; returns the full count.
 */
size_t cloob_internal_utf8_decode(const char *text, size_t len, uint32_t *out, size_t cap) CLOOB_NOEXCEPT;

/* Python's chr(cp).lower(): writes 1..3 code points into out[3], returns how many. */
int cloob_internal_lower(uint32_t cp, uint32_t out[3]) CLOOB_NOEXCEPT;

/* Python's chr(cp).isspace(). */
int cloob_internal_is_space(uint32_t cp) CLOOB_NOEXCEPT;

/*
 * SentencePiece alone (normalize + unigram Viterbi, no lower-casing or special tokens): what
 * libsentencepiece's Encode(text, &ids) returns. Writes up to cap ids, *n_out gets the full count.
 * Returns 0, or -1 on a bad argument or allocation failure.
 */
int cloob_internal_spm_encode(const cloob_tokenizer *tok, const char *text, size_t len, int64_t *out, size_t cap,
                              size_t *n_out) CLOOB_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif
