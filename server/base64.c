/*
 * base64.c - strict RFC 4648 base64 and RFC 2397 data URIs. The policy is in base64.h.
 * Pure functions, thread safe.
 */
#include "base64.h"

#include <stdlib.h>
#include <string.h>

/*
 * Decode table: for a symbol, bits 0-5 hold its value, bit 7 marks the standard-only symbols
 * (+ /) and bit 6 the URL-safe-only ones (- _), so one lookup classifies a byte; values from
 * 0xfd up are the special classes below. Symbols common to both alphabets are < 0x40, which
 * lets the fast path test four of them with one comparison.
 */
#define B64_INVALID 0xff
#define B64_NEWLINE 0xfe
#define B64_PAD 0xfd
#define B64_STD_ONLY 0x80
#define B64_URL_ONLY 0x40

static const uint8_t k_decode[256] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xfe, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbe, 0xff, 0x7e, 0xff, 0xbf,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0xff, 0xff, 0xff, 0xfd, 0xff, 0xff,
    0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0xff, 0xff, 0xff, 0xff, 0x7f,
    0xff, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

static const char k_encode_std[65] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

const char *base64_status_message(base64_status s) {
    switch (s) {
    case BASE64_OK: return "ok";
    case BASE64_ERR_CHAR: return "invalid base64 character";
    case BASE64_ERR_PADDING: return "invalid base64 padding";
    case BASE64_ERR_LENGTH: return "truncated base64 (length is 1 mod 4)";
    case BASE64_ERR_NONCANONICAL: return "non-canonical base64 (unused bits set in the last symbol)";
    case BASE64_ERR_TOO_LARGE: return "decoded base64 exceeds the size limit";
    case BASE64_ERR_NO_MEMORY: return "out of memory";
    case BASE64_ERR_ARGUMENT: return "invalid argument";
    case BASE64_ERR_EMPTY: return "empty base64 payload";
    }
    return "unknown base64 error";
}

size_t base64_decoded_max(size_t in_len) {
    return in_len / 4 * 3 + (in_len % 4) * 3 / 4;
}

/*
 * The one decoder. out == NULL means "validate and count only" (used by base64_decode_alloc to
 * size its buffer). Returns the status; *n_out gets the bytes produced (or that would be).
 */
static base64_status decode_impl(const char *in, size_t in_len, uint8_t *out, size_t out_cap,
                                 size_t *n_out, size_t *err_pos) {
    const uint8_t *p = (const uint8_t *)in;
    uint8_t alphabet = 0;  /* B64_STD_ONLY or B64_URL_ONLY once one of those symbols was seen */
    uint32_t quantum = 0;  /* up to 4 symbols of 6 bits */
    int in_quantum = 0;    /* symbols in quantum */
    size_t n = 0;          /* bytes produced */
    size_t last_symbol = 0, first_pad = 0;
    size_t pads = 0;

    for (size_t i = 0; i < in_len; i++) {
        /* Fast path: four symbols common to both alphabets at a quantum boundary. */
        while (in_quantum == 0 && pads == 0 && in_len - i >= 4) {
            uint8_t a = k_decode[p[i]], b = k_decode[p[i + 1]], c = k_decode[p[i + 2]],
                    d = k_decode[p[i + 3]];
            if ((a | b | c | d) >= 0x40) break;
            if (out) {
                if (out_cap - n < 3) {
                    if (err_pos) *err_pos = i + 3;
                    return BASE64_ERR_TOO_LARGE;
                }
                uint32_t q = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
                out[n] = (uint8_t)(q >> 16);
                out[n + 1] = (uint8_t)(q >> 8);
                out[n + 2] = (uint8_t)q;
            }
            n += 3;
            last_symbol = i + 3;
            i += 4;
        }
        if (i >= in_len) break;

        uint8_t v = k_decode[p[i]];
        if (v == B64_NEWLINE) continue;
        if (v == B64_PAD) {
            if (pads == 0) first_pad = i;
            pads++;
            continue;
        }
        if (v == B64_INVALID) {
            if (err_pos) *err_pos = i;
            return BASE64_ERR_CHAR;
        }
        if (pads > 0) { /* a symbol after '=' */
            if (err_pos) *err_pos = i;
            return BASE64_ERR_PADDING;
        }
        uint8_t a = v & (B64_STD_ONLY | B64_URL_ONLY);
        if (a) {
            if (!alphabet) {
                alphabet = a;
            } else if (alphabet != a) { /* "+" and "-" in one input: a mangled payload */
                if (err_pos) *err_pos = i;
                return BASE64_ERR_CHAR;
            }
        }
        last_symbol = i;
        quantum = (quantum << 6) | (v & 0x3f);
        if (++in_quantum == 4) {
            if (out) {
                if (out_cap - n < 3) {
                    if (err_pos) *err_pos = i;
                    return BASE64_ERR_TOO_LARGE;
                }
                out[n] = (uint8_t)(quantum >> 16);
                out[n + 1] = (uint8_t)(quantum >> 8);
                out[n + 2] = (uint8_t)quantum;
            }
            n += 3;
            quantum = 0;
            in_quantum = 0;
        }
    }

    /* Tail: 0, 2 or 3 symbols left; padding, if any, must complete the quantum exactly. */
    if (in_quantum == 1) {
        if (err_pos) *err_pos = last_symbol;
        return BASE64_ERR_LENGTH;
    }
    if (pads > 0 && (in_quantum == 0 || (size_t)in_quantum + pads != 4)) {
        if (err_pos) *err_pos = first_pad;
        return BASE64_ERR_PADDING;
    }
    if (in_quantum > 0) {
        size_t extra = (size_t)in_quantum - 1; /* 2 symbols -> 1 byte, 3 -> 2 bytes */
        uint32_t unused_mask = in_quantum == 2 ? 0x0f : 0x03;
        if (quantum & unused_mask) {
            if (err_pos) *err_pos = last_symbol;
            return BASE64_ERR_NONCANONICAL;
        }
        if (out) {
            if (out_cap - n < extra) {
                if (err_pos) *err_pos = last_symbol;
                return BASE64_ERR_TOO_LARGE;
            }
            if (in_quantum == 2) {
                out[n] = (uint8_t)(quantum >> 4);
            } else {
                out[n] = (uint8_t)(quantum >> 10);
                out[n + 1] = (uint8_t)(quantum >> 2);
            }
        }
        n += extra;
    }
    *n_out = n;
    return BASE64_OK;
}

base64_status base64_decode(const char *in, size_t in_len, uint8_t *out, size_t out_cap,
                            size_t *out_len, size_t *err_pos) {
    size_t n = 0;
    if (out_len) *out_len = 0;
    if ((!in && in_len) || (!out && out_cap) || !out_len) return BASE64_ERR_ARGUMENT;
    if (in_len == 0) return BASE64_OK;
    /* With out == NULL and out_cap == 0, decode_impl would only count: use a dummy target so
     * a non-empty result is reported as too large. */
    uint8_t dummy;
    base64_status st = decode_impl(in, in_len, out ? out : &dummy, out ? out_cap : 0, &n, err_pos);
    if (st == BASE64_OK) *out_len = n;
    return st;
}

base64_status base64_decode_alloc(const char *in, size_t in_len, size_t max_out, uint8_t **out,
                                  size_t *out_len, size_t *err_pos) {
    size_t n = 0;
    if (!out || !out_len) return BASE64_ERR_ARGUMENT;
    *out = NULL;
    *out_len = 0;
    if (!in && in_len) return BASE64_ERR_ARGUMENT;

    /* Pass 1 validates and counts without writing, so nothing is allocated for a payload that
     * is invalid or over the limit. */
    base64_status st = decode_impl(in, in_len, NULL, 0, &n, err_pos);
    if (st != BASE64_OK) return st;
    if (n == 0) return BASE64_ERR_EMPTY;
    if (n > max_out) {
        if (err_pos) *err_pos = 0;
        return BASE64_ERR_TOO_LARGE;
    }
    uint8_t *buf = malloc(n);
    if (!buf) return BASE64_ERR_NO_MEMORY;
    size_t n2 = 0;
    st = decode_impl(in, in_len, buf, n, &n2, err_pos);
    if (st != BASE64_OK) { /* cannot happen: same input as pass 1 */
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = n2;
    return BASE64_OK;
}

size_t base64_encoded_len(size_t n) {
    size_t groups = n / 3 + (n % 3 != 0);
    if (groups > (SIZE_MAX - 1) / 4) return 0;
    return groups * 4;
}

/* Streams bytes from a source through the 3 -> 4 encoder; get(i) yields byte i. */
typedef uint8_t (*byte_getter)(const void *src, size_t i);

static uint8_t get_plain_byte(const void *src, size_t i) {
    return ((const uint8_t *)src)[i];
}

/* Byte i of the little-endian float32 array, independent of the host's byte order. */
static uint8_t get_f32le_byte(const void *src, size_t i) {
    uint32_t bits;
    memcpy(&bits, (const float *)src + i / 4, sizeof bits);
    return (uint8_t)(bits >> (8 * (i % 4)));
}

static size_t encode_impl(const void *src, size_t n, byte_getter get, char *out, size_t cap) {
    size_t need = base64_encoded_len(n);
    if (!out || cap == 0) return 0;
    if ((need == 0 && n != 0) || cap < need + 1) {
        out[0] = '\0';
        return 0;
    }
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t q = (uint32_t)get(src, i) << 16 | (uint32_t)get(src, i + 1) << 8 | get(src, i + 2);
        out[o++] = k_encode_std[q >> 18];
        out[o++] = k_encode_std[(q >> 12) & 63];
        out[o++] = k_encode_std[(q >> 6) & 63];
        out[o++] = k_encode_std[q & 63];
    }
    if (n - i == 1) {
        uint32_t q = (uint32_t)get(src, i) << 16;
        out[o++] = k_encode_std[q >> 18];
        out[o++] = k_encode_std[(q >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t q = (uint32_t)get(src, i) << 16 | (uint32_t)get(src, i + 1) << 8;
        out[o++] = k_encode_std[q >> 18];
        out[o++] = k_encode_std[(q >> 12) & 63];
        out[o++] = k_encode_std[(q >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t base64_encode(const uint8_t *in, size_t n, char *out, size_t cap) {
    if (!in && n) {
        if (out && cap) out[0] = '\0';
        return 0;
    }
    return encode_impl(in, n, get_plain_byte, out, cap);
}

size_t base64_encode_f32le(const float *v, size_t n, char *out, size_t cap) {
    if ((!v && n) || n > SIZE_MAX / 4) {
        if (out && cap) out[0] = '\0';
        return 0;
    }
    return encode_impl(v, n * 4, get_f32le_byte, out, cap);
}

/* ---- data: URIs ------------------------------------------------------------------------- */

static int lower_ascii(int c) {
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int base64_span_equals_ci(const char *span, size_t len, const char *lit) {
    size_t n = strlen(lit);
    if (!span || n != len) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower_ascii((unsigned char)span[i]) != lower_ascii((unsigned char)lit[i])) return 0;
    return 1;
}

int base64_is_data_uri(const char *s, size_t len) {
    return s && len >= 5 && base64_span_equals_ci(s, 5, "data:");
}

/* RFC 7230 tchar. */
static int is_token_char(unsigned char c) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(const char *s, size_t len) {
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_token_char((unsigned char)s[i])) return 0;
    return 1;
}

/* A parameter "attribute=value": a token attribute, a non-empty value without ';' or ','. */
static int is_parameter(const char *s, size_t len) {
    const char *eq = memchr(s, '=', len);
    if (!eq || !is_token(s, (size_t)(eq - s))) return 0;
    size_t vlen = len - (size_t)(eq - s) - 1;
    if (vlen == 0) return 0;
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)eq[1 + i];
        if (c <= 0x20 || c == 0x7f) return 0;
    }
    return 1;
}

int base64_parse_data_uri(const char *s, size_t len, data_uri *out) {
    if (!out) return -1;
    memset(out, 0, sizeof *out);
    if (!base64_is_data_uri(s, len)) return -1;
    const char *meta = s + 5;
    const char *comma = memchr(meta, ',', len - 5);
    if (!comma) return -1;
    size_t meta_len = (size_t)(comma - meta);

    /* Media type: everything up to the first ';' (may be empty). */
    const char *semi = memchr(meta, ';', meta_len);
    size_t mt_len = semi ? (size_t)(semi - meta) : meta_len;
    if (mt_len > 0) {
        const char *slash = memchr(meta, '/', mt_len);
        if (!slash || !is_token(meta, (size_t)(slash - meta)) ||
            !is_token(slash + 1, mt_len - (size_t)(slash - meta) - 1))
            return -1;
    }

    /* Parameters; ";base64" is allowed only as the last one. */
    int is_b64 = 0;
    const char *p = semi;
    while (p) {
        const char *start = p + 1;
        const char *next = memchr(start, ';', (size_t)(comma - start));
        size_t plen = next ? (size_t)(next - start) : (size_t)(comma - start);
        if (base64_span_equals_ci(start, plen, "base64")) {
            if (next) return -1;
            is_b64 = 1;
        } else if (!is_parameter(start, plen)) {
            return -1;
        }
        p = next;
    }

    out->media_type = meta;
    out->media_type_len = mt_len;
    out->is_base64 = is_b64;
    out->payload = comma + 1;
    out->payload_len = len - (size_t)(comma + 1 - s);
    return 0;
}
