/* test_base64.c - RFC 4648 vectors, the strictness policy, limits and data: URIs. */
#include "base64.h"

#include <stdint.h>

#include "testlib.h"

/* Decodes a NUL-terminated string; returns the status, fills buf/len. */
static base64_status dec(const char *s, uint8_t *buf, size_t cap, size_t *len, size_t *pos) {
    return base64_decode(s, strlen(s), buf, cap, len, pos);
}

static void test_rfc4648_vectors(void) {
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *unpadded[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char enc[32];
        size_t n = base64_encode((const uint8_t *)plain[i], strlen(plain[i]), enc, sizeof enc);
        CHECK_EQ_INT(n, strlen(coded[i]));
        CHECK_STR(enc, coded[i]);
        CHECK_EQ_INT(base64_encoded_len(strlen(plain[i])), strlen(coded[i]));

        uint8_t out[16];
        size_t len = 99;
        CHECK_EQ_INT(dec(coded[i], out, sizeof out, &len, NULL), BASE64_OK);
        CHECK_EQ_INT(len, strlen(plain[i]));
        CHECK(memcmp(out, plain[i], len) == 0);
        len = 99;
        CHECK_EQ_INT(dec(unpadded[i], out, sizeof out, &len, NULL), BASE64_OK);
        CHECK_EQ_INT(len, strlen(plain[i]));
        CHECK(memcmp(out, plain[i], len) == 0);
        CHECK_EQ_INT(base64_decoded_max(strlen(unpadded[i])), strlen(plain[i]));
    }
}

static void test_alphabets(void) {
    /* bytes fb ff bf: standard "+/+/", URL-safe "-_-_" */
    uint8_t out[8];
    size_t len, pos = 0;
    const uint8_t want[] = {0xfb, 0xef, 0xbe, 0xfb, 0xef, 0xbe};
    char enc[16];
    base64_encode(want, 6, enc, sizeof enc);
    CHECK_STR(enc, "++++++++");
    CHECK_EQ_INT(dec("++++++++", out, sizeof out, &len, NULL), BASE64_OK);
    CHECK(len == 6 && memcmp(out, want, 6) == 0);
    CHECK_EQ_INT(dec("--------", out, sizeof out, &len, NULL), BASE64_OK);
    CHECK(len == 6 && memcmp(out, want, 6) == 0);
    const uint8_t ff[] = {0xff, 0xff, 0xff};
    CHECK_EQ_INT(dec("____", out, sizeof out, &len, NULL), BASE64_OK);
    CHECK(len == 3 && memcmp(out, ff, 3) == 0);
    CHECK_EQ_INT(dec("////", out, sizeof out, &len, NULL), BASE64_OK);
    /* mixing alphabets is refused at the first symbol of the other alphabet */
    CHECK_EQ_INT(dec("++--", out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    CHECK_EQ_INT(pos, 2);
    CHECK_EQ_INT(dec("AB_/", out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    CHECK_EQ_INT(pos, 3);
}

static void test_invalid(void) {
    uint8_t out[64];
    size_t len = 7, pos = 0;
    CHECK_EQ_INT(dec("Zm9v!", out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    CHECK_EQ_INT(pos, 4);
    CHECK_EQ_INT(len, 0); /* out_len reset on error */
    CHECK_EQ_INT(dec("Zm 9v", out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    CHECK_EQ_INT(pos, 2);
    CHECK_EQ_INT(dec("Zm\t9v", out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    /* NUL inside the span */
    CHECK_EQ_INT(base64_decode("Zm\0v", 4, out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    CHECK_EQ_INT(pos, 2);
    /* a byte >= 0x80 */
    CHECK_EQ_INT(dec("Zm9\xc3\xa9", out, sizeof out, &len, &pos), BASE64_ERR_CHAR);
    /* padding */
    CHECK_EQ_INT(dec("Zg=", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(dec("Zg===", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(dec("Zm8==", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(dec("Zm9v=", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(pos, 4);
    CHECK_EQ_INT(dec("====", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(dec("=", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(dec("Zg==Zg==", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    CHECK_EQ_INT(pos, 4);
    CHECK_EQ_INT(dec("Zg=a", out, sizeof out, &len, &pos), BASE64_ERR_PADDING);
    /* length 1 mod 4 */
    CHECK_EQ_INT(dec("Z", out, sizeof out, &len, &pos), BASE64_ERR_LENGTH);
    CHECK_EQ_INT(dec("Zm9vY", out, sizeof out, &len, &pos), BASE64_ERR_LENGTH);
    CHECK_EQ_INT(pos, 4);
    CHECK_EQ_INT(dec("Zm9vY===", out, sizeof out, &len, &pos), BASE64_ERR_LENGTH);
    /* non-canonical tails: "Zh==" and "Zm9=" carry set unused bits */
    CHECK_EQ_INT(dec("Zh==", out, sizeof out, &len, &pos), BASE64_ERR_NONCANONICAL);
    CHECK_EQ_INT(pos, 1);
    CHECK_EQ_INT(dec("Zh", out, sizeof out, &len, &pos), BASE64_ERR_NONCANONICAL);
    CHECK_EQ_INT(dec("Zm9=", out, sizeof out, &len, &pos), BASE64_ERR_NONCANONICAL);
    CHECK_EQ_INT(dec("Zm8=", out, sizeof out, &len, &pos), BASE64_OK);
    /* arguments */
    CHECK_EQ_INT(base64_decode(NULL, 3, out, sizeof out, &len, NULL), BASE64_ERR_ARGUMENT);
    CHECK_EQ_INT(base64_decode("Zg==", 4, NULL, 5, &len, NULL), BASE64_ERR_ARGUMENT);
    CHECK_EQ_INT(base64_decode("Zg==", 4, out, sizeof out, NULL, NULL), BASE64_ERR_ARGUMENT);
    CHECK_EQ_INT(base64_decode(NULL, 0, NULL, 0, &len, NULL), BASE64_OK);
    CHECK_EQ_INT(len, 0);
    for (int s = 0; s <= 8; s++) CHECK(base64_status_message((base64_status)s)[0] != '\0');
}

static void test_line_breaks(void) {
    uint8_t out[64];
    size_t len = 0;
    CHECK_EQ_INT(dec("Zm9v\nYmFy\n", out, sizeof out, &len, NULL), BASE64_OK);
    CHECK(len == 6 && memcmp(out, "foobar", 6) == 0);
    CHECK_EQ_INT(dec("Zm\r\n9vYg=\r\n=\r\n", out, sizeof out, &len, NULL), BASE64_OK);
    CHECK(len == 4 && memcmp(out, "foob", 4) == 0);
    CHECK_EQ_INT(dec("\n\n", out, sizeof out, &len, NULL), BASE64_OK);
    CHECK_EQ_INT(len, 0);
}

static void test_limits(void) {
    uint8_t out[8];
    size_t len = 0, pos = 0;
    /* exactly fits */
    CHECK_EQ_INT(dec("Zm9vYmFy", out, 6, &len, NULL), BASE64_OK);
    /* one byte short, in the full-quantum path and in the tail path */
    CHECK_EQ_INT(dec("Zm9vYmFy", out, 5, &len, &pos), BASE64_ERR_TOO_LARGE);
    CHECK_EQ_INT(dec("Zm9vYg==", out, 3, &len, &pos), BASE64_ERR_TOO_LARGE);
    CHECK_EQ_INT(dec("Zm9vYmE=", out, 4, &len, &pos), BASE64_ERR_TOO_LARGE);
    CHECK_EQ_INT(base64_decode("Zg==", 4, NULL, 0, &len, &pos), BASE64_ERR_TOO_LARGE);

    /* alloc: exact size, limit inclusive, nothing allocated on refusal */
    uint8_t *buf = (uint8_t *)1;
    CHECK_EQ_INT(base64_decode_alloc("Zm9vYmFy", 8, 6, &buf, &len, NULL), BASE64_OK);
    CHECK(buf && len == 6 && memcmp(buf, "foobar", 6) == 0);
    free(buf);
    buf = (uint8_t *)1;
    CHECK_EQ_INT(base64_decode_alloc("Zm9vYmFy", 8, 5, &buf, &len, NULL), BASE64_ERR_TOO_LARGE);
    CHECK(buf == NULL);
    CHECK_EQ_INT(base64_decode_alloc("", 0, 5, &buf, &len, NULL), BASE64_ERR_EMPTY);
    CHECK_EQ_INT(base64_decode_alloc("\n", 1, 5, &buf, &len, NULL), BASE64_ERR_EMPTY);
    CHECK_EQ_INT(base64_decode_alloc("Zm9v*", 5, 100, &buf, &len, &pos), BASE64_ERR_CHAR);
    CHECK(buf == NULL);
    CHECK_EQ_INT(pos, 4);

    /* a large payload: 3 MiB of zero bytes ("AAAA") checked against a 1 MiB cap without
     * allocating it (ASan would report a 3 MiB leak if it did and lost it) */
    size_t big = 4u << 20;
    char *a = malloc(big);
    CHECK(a != NULL);
    if (a) {
        memset(a, 'A', big);
        CHECK_EQ_INT(base64_decode_alloc(a, big, 1u << 20, &buf, &len, NULL), BASE64_ERR_TOO_LARGE);
        CHECK_EQ_INT(base64_decode_alloc(a, big, 3u << 20, &buf, &len, NULL), BASE64_OK);
        CHECK_EQ_INT(len, 3u << 20);
        free(buf);
        free(a);
    }

    /* encode: buffer too small -> 0 and empty string */
    char enc[8];
    CHECK_EQ_INT(base64_encode((const uint8_t *)"foobar", 6, enc, 8), 0);
    CHECK_STR(enc, "");
    char enc9[9];
    CHECK_EQ_INT(base64_encode((const uint8_t *)"foobar", 6, enc9, 9), 8);
    CHECK_EQ_INT(base64_encoded_len(SIZE_MAX), 0);
}

static void test_roundtrip_all_bytes(void) {
    uint8_t in[256], out[256];
    char enc[400];
    for (int i = 0; i < 256; i++) in[i] = (uint8_t)i;
    for (size_t n = 0; n <= 256; n += 1 + n / 7) {
        size_t e = base64_encode(in, n, enc, sizeof enc);
        CHECK_EQ_INT(e, base64_encoded_len(n));
        size_t len = 0;
        CHECK_EQ_INT(base64_decode(enc, e, out, sizeof out, &len, NULL), BASE64_OK);
        CHECK_EQ_INT(len, n);
        CHECK(memcmp(in, out, n) == 0);
    }
}

static void test_f32le(void) {
    /* 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0 -> "AACAPwAAAMA=" (numpy: np.array([1,-2],'<f4')) */
    const float v[2] = {1.0f, -2.0f};
    char enc[32];
    CHECK_EQ_INT(base64_encode_f32le(v, 2, enc, sizeof enc), 12);
    CHECK_STR(enc, "AACAPwAAAMA=");
    uint8_t raw[8];
    size_t len = 0;
    CHECK_EQ_INT(dec(enc, raw, sizeof raw, &len, NULL), BASE64_OK);
    const uint8_t want[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0};
    CHECK(len == 8 && memcmp(raw, want, 8) == 0);
    /* 512 floats, as for one embedding */
    float e[512];
    for (int i = 0; i < 512; i++) e[i] = (float)i * 0.001f - 0.25f;
    char big[4096];
    size_t n = base64_encode_f32le(e, 512, big, sizeof big);
    CHECK_EQ_INT(n, base64_encoded_len(2048));
    uint8_t back[2048];
    CHECK_EQ_INT(base64_decode(big, n, back, sizeof back, &len, NULL), BASE64_OK);
    int same = 1;
    for (int i = 0; i < 512; i++) {
        uint32_t bits = (uint32_t)back[4 * i] | (uint32_t)back[4 * i + 1] << 8 |
                        (uint32_t)back[4 * i + 2] << 16 | (uint32_t)back[4 * i + 3] << 24;
        float f;
        memcpy(&f, &bits, 4);
        if (f != e[i]) same = 0;
    }
    CHECK(same);
}

static int parse(const char *s, data_uri *d) {
    return base64_parse_data_uri(s, strlen(s), d);
}

static void test_data_uri(void) {
    data_uri d;
    CHECK_EQ_INT(parse("data:image/png;base64,iVBORw0KGgo=", &d), 0);
    CHECK(base64_span_equals_ci(d.media_type, d.media_type_len, "image/png"));
    CHECK_EQ_INT(d.is_base64, 1);
    CHECK(d.payload_len == 12 && memcmp(d.payload, "iVBORw0KGgo=", 12) == 0);

    CHECK_EQ_INT(parse("DATA:Image/JPEG;BASE64,/9j/", &d), 0);
    CHECK(base64_span_equals_ci(d.media_type, d.media_type_len, "image/jpeg"));
    CHECK_EQ_INT(d.is_base64, 1);
    CHECK_EQ_INT(d.payload_len, 4);

    CHECK_EQ_INT(parse("data:image/jpeg;name=dog.jpg;base64,AAAA", &d), 0);
    CHECK_EQ_INT(d.media_type_len, 10);
    CHECK_EQ_INT(d.is_base64, 1);

    CHECK_EQ_INT(parse("data:,Hello%2C%20World", &d), 0);
    CHECK_EQ_INT(d.media_type_len, 0);
    CHECK_EQ_INT(d.is_base64, 0);
    CHECK_EQ_INT(d.payload_len, 16);

    CHECK_EQ_INT(parse("data:;base64,", &d), 0);
    CHECK_EQ_INT(d.is_base64, 1);
    CHECK_EQ_INT(d.payload_len, 0);

    CHECK_EQ_INT(parse("data:text/plain;charset=utf-8,x", &d), 0);
    CHECK_EQ_INT(d.is_base64, 0);

    /* refused */
    CHECK_EQ_INT(parse("image/png;base64,AAAA", &d), -1);
    CHECK_EQ_INT(parse("data:image/png;base64", &d), -1);          /* no comma */
    CHECK_EQ_INT(parse("data:image;base64,AAAA", &d), -1);         /* no subtype */
    CHECK_EQ_INT(parse("data:image/;base64,AAAA", &d), -1);
    CHECK_EQ_INT(parse("data:/png;base64,AAAA", &d), -1);
    CHECK_EQ_INT(parse("data:im age/png;base64,AAAA", &d), -1);
    CHECK_EQ_INT(parse("data:image/png;base64;x=y,AAAA", &d), -1); /* base64 not last */
    CHECK_EQ_INT(parse("data:image/png;;base64,AAAA", &d), -1);    /* empty parameter */
    CHECK_EQ_INT(parse("data:image/png;foo,AAAA", &d), -1);        /* parameter without '=' */
    CHECK_EQ_INT(parse("data", &d), -1);
    CHECK_EQ_INT(base64_parse_data_uri(NULL, 0, &d), -1);
    CHECK_EQ_INT(base64_parse_data_uri("data:,", 6, NULL), -1);
    /* the span may stop before a NUL-free, non-terminated buffer's end */
    const char raw[] = {'d', 'a', 't', 'a', ':', ',', 'Q'};
    CHECK_EQ_INT(base64_parse_data_uri(raw, sizeof raw, &d), 0);
    CHECK_EQ_INT(d.payload_len, 1);
    CHECK_EQ_INT(base64_parse_data_uri(raw, 5, &d), -1);

    CHECK(base64_is_data_uri("Data:x", 6));
    CHECK(!base64_is_data_uri("dat", 3));
    CHECK(!base64_is_data_uri("iVBOR", 5));
    CHECK(!base64_span_equals_ci("image/png", 9, "image/pn"));
}

int main(void) {
    test_rfc4648_vectors();
    test_alphabets();
    test_invalid();
    test_line_breaks();
    test_limits();
    test_roundtrip_all_bytes();
    test_f32le();
    test_data_uri();
    TEST_MAIN_END();
}
