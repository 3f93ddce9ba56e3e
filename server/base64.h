/*
 * base64.h - RFC 4648 base64 decode/encode and RFC 2397 `data:` URIs, for images sent inside
 * JSON and for `encoding_format: "base64"` embeddings.
 *
 * Decoding policy (strict, with two conveniences real clients need):
 *   - alphabets: standard (+/) and URL-safe (-_) are both accepted, but one input may not mix them;
 *   - padding is optional; if present it must be exactly right ("QQ==", never "QQ=" or "QQ===");
 *     nothing may follow it;
 *   - the unused low bits of the last symbol must be zero (RFC 4648 3.5 "canonical"), so every
 *     accepted input decodes to exactly one byte string and a corrupted tail is noticed;
 *   - line breaks (CR and LF) are skipped anywhere, because `base64 file.jpg` and MIME encoders
 *     wrap at 76 columns and users paste that into JSON; every other whitespace (space, tab) and
 *     every other character is an error whose byte offset is reported;
 *   - the output size is checked against a caller cap: base64_decode_alloc counts the symbols
 *     in a first pass and refuses an over-limit payload before allocating anything.
 *
 * Everything here is pure (no globals, no locks): thread safe, any thread. Ownership: outputs go
 * to caller buffers, except base64_decode_alloc whose result the caller frees with free().
 */
#ifndef CLOOB_BASE64_H
#define CLOOB_BASE64_H

#include <stddef.h>
#include <stdint.h>

typedef enum base64_status {
    BASE64_OK = 0,
    BASE64_ERR_CHAR = 1,      /* a byte outside the alphabet (or mixed alphabets) at *err_pos */
    BASE64_ERR_PADDING = 2,   /* wrong number of '=', or data after them */
    BASE64_ERR_LENGTH = 3,    /* a lone trailing symbol (length % 4 == 1) */
    BASE64_ERR_NONCANONICAL = 4, /* non-zero unused bits in the last symbol */
    BASE64_ERR_TOO_LARGE = 5, /* decoded size would exceed the caller's cap */
    BASE64_ERR_NO_MEMORY = 6,
    BASE64_ERR_ARGUMENT = 7,  /* NULL pointer with a non-zero length */
    BASE64_ERR_EMPTY = 8      /* nothing to decode (only from base64_decode_alloc, see there) */
} base64_status;

const char *base64_status_message(base64_status s); /* "invalid character", ...; never NULL */

/* Decoded size of in_len base64 symbols without padding or line breaks:
 * in_len / 4 * 3 + (in_len % 4) * 3 / 4; an upper bound for any input of in_len bytes. */
size_t base64_decoded_max(size_t in_len);

/*
 * Decodes in[0..in_len) into out (out_cap bytes). *out_len gets the decoded length. On error
 * *err_pos (if not NULL) gets the byte offset in `in` where the problem was seen. out_cap must be
 * >= the exact decoded size, else BASE64_ERR_TOO_LARGE (out may then hold a partial result).
 * Empty input decodes to 0 bytes with BASE64_OK. out may be NULL when out_cap is 0.
 */
base64_status base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_cap,
                            size_t *out_len, size_t *err_pos);

/*
 * Allocating variant: counts the symbols first and refuses (BASE64_ERR_TOO_LARGE) when the
 * decoded size would exceed max_out, before allocating anything; refuses empty input
 * (BASE64_ERR_EMPTY: an empty image is never valid). Allocates exactly the decoded size.
 * On success *out is malloc'd (the caller frees it with free()), else *out is NULL.
 */
base64_status base64_decode_alloc(const char *in, size_t in_len, size_t max_out, uint8_t **out,
                                  size_t *out_len, size_t *err_pos);

/* Length of the padded standard encoding of n bytes, without NUL: 4 * ceil(n / 3). Returns 0
 * when n is so large the result would overflow size_t. */
size_t base64_encoded_len(size_t n);

/*
 * Standard alphabet with padding. Writes base64_encoded_len(n) chars plus a NUL into out; returns
 * the length without NUL, or 0 (out[0] = NUL if cap > 0) when cap < base64_encoded_len(n) + 1.
 */
size_t base64_encode(const uint8_t *in, size_t n, char *out, size_t cap);

/* n floats as little-endian IEEE-754 float32 bytes (the OpenAI `encoding_format: base64`
 * layout, numpy.frombuffer(..., "<f4")), base64-encoded like base64_encode. */
size_t base64_encode_f32le(const float *v, size_t n, char *out, size_t cap);

/*
 * A parsed `data:[<mediatype>][;param=value]*[;base64],<payload>` URI (RFC 2397). All spans point
 * into the caller's string (not copied, not NUL-terminated).
 */
typedef struct data_uri {
    const char *media_type; /* e.g. "image/png" without parameters; length 0 if omitted */
    size_t media_type_len;
    int is_base64;          /* 1 if ";base64" was the last parameter */
    const char *payload;    /* after the comma */
    size_t payload_len;
} data_uri;

/*
 * Parses s (len bytes). "data:" and ";base64" are matched case-insensitively; the media type must
 * be type/subtype made of RFC 7230 token characters (or absent). Returns 0 on success, -1 if s is
 * not a well-formed data URI (no "data:" prefix, no comma, bad media type).
 * base64_is_data_uri is the cheap prefix test ("data:", case-insensitive).
 */
int base64_parse_data_uri(const char *s, size_t len, data_uri *out);
int base64_is_data_uri(const char *s, size_t len);

/* ASCII case-insensitive comparison of a span with a NUL-terminated string (e.g. media types). */
int base64_span_equals_ci(const char *span, size_t len, const char *lit);

#endif /* CLOOB_BASE64_H */
