/*
 * fuzz_base64.c - libFuzzer target for server/base64.c: decoding must never crash or overrun,
 * and whatever it accepts must be canonical: re-encoding the output gives back the input
 * (modulo line breaks, the URL-safe alphabet and optional padding). Also exercises
 * base64_decode_alloc's size limit and the data: URI parser.
 */
#include "base64.c"

#include <assert.h>
#include <stdio.h>

/* The input as the standard, padded, line-break-free encoding it claims to be. */
static size_t canonical_form(const uint8_t *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = (char)in[i];
        if (c == '\r' || c == '\n' || c == '=') continue;
        if (c == '-') c = '+';
        if (c == '_') c = '/';
        out[o++] = c;
    }
    while (o % 4) out[o++] = '=';
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *in = (const char *)data;
    size_t cap = base64_decoded_max(size);
    uint8_t *out = malloc(cap + 1);
    size_t len = 0, pos = 0;
    base64_status st = base64_decode(in, size, out, cap, &len, &pos);
    if (st == BASE64_OK) {
        assert(len <= cap);
        char *enc = malloc(base64_encoded_len(len) + 1);
        size_t el = base64_encode(out, len, enc, base64_encoded_len(len) + 1);
        assert(el == base64_encoded_len(len));
        char *canon = malloc(size + 4);
        size_t cl = canonical_form(data, size, canon);
        assert(cl == el && memcmp(canon, enc, el) == 0);
        /* an exact-size buffer suffices, one byte less does not */
        size_t len2 = 0;
        if (len > 0) {
            assert(base64_decode(in, size, out, len, &len2, NULL) == BASE64_OK && len2 == len);
            assert(base64_decode(in, size, out, len - 1, &len2, NULL) == BASE64_ERR_TOO_LARGE);
        }
        free(canon);
        free(enc);
    } else {
        assert(pos < size);
        assert(len == 0);
    }

    /* the allocating variant agrees, and honours its limit */
    size_t max_out = size ? data[0] * 4u : 0;
    uint8_t *heap = NULL;
    size_t hl = 0;
    base64_status st2 = base64_decode_alloc(in, size, max_out, &heap, &hl, NULL);
    if (st == BASE64_OK && len > 0 && len <= max_out) {
        assert(st2 == BASE64_OK && hl == len && memcmp(heap, out, len) == 0);
    } else {
        assert(st2 != BASE64_OK && heap == NULL);
    }
    free(heap);
    free(out);

    data_uri d;
    if (base64_parse_data_uri(in, size, &d) == 0) {
        assert(d.payload >= in && d.payload + d.payload_len == in + size);
        assert(d.media_type == in + 5 && d.media_type + d.media_type_len <= d.payload);
    }

    /* the float encoder on the same bytes */
    size_t nf = size / 4;
    if (nf) {
        float *f = malloc(nf * sizeof *f);
        memcpy(f, data, nf * sizeof *f);
        size_t need = base64_encoded_len(nf * 4) + 1;
        char *e = malloc(need);
        assert(base64_encode_f32le(f, nf, e, need) == need - 1);
        uint8_t *back = malloc(nf * 4);
        size_t bl = 0;
        assert(base64_decode(e, need - 1, back, nf * 4, &bl, NULL) == BASE64_OK && bl == nf * 4);
        free(back);
        free(e);
        free(f);
    }
    return 0;
}
