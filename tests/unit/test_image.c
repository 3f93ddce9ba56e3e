/*
 * test_image.c - unit checks for server/image*.c, and a small tool for the Python parity tests.
 *
 *   test_image                      run the checks, print "N passed, M failed"
 *   test_image --dump IN OUT        decode IN, resize + crop to 224, write 224*224*3 RGB bytes
 *   test_image --dump-float IN OUT  the whole pipeline: 3*224*224 float32 (CHW, SPEC mean/std)
 *   test_image --bench IN RUNS      median wall time of image_preprocess over RUNS runs (ms)
 *
 * The dump modes print "OK <format> <mode> <w>x<h>" or "ERROR <status> <message>" and exit 0 either
 * way (2 on a usage or I/O problem), so tests/test_image_parity.py can check error statuses too.
 * Photos come from $CLOOB_SHARED/images (default ../shared/images). CLOOB_IMAGE_SCALAR=1 makes the
 * resize use its scalar kernels instead of AVX2; the checks themselves run both.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "image_internal.h"
#include "testlib.h"

#define SIZE 224
static const float MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

/* ---- helpers ------------------------------------------------------------------------------ */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    size_t put = fwrite(data, 1, len, f);
    return fclose(f) == 0 && put == len;
}

static const char *shared_images_path(char *buf, size_t n, const char *name)
{
    const char *shared = getenv("CLOOB_SHARED");
    snprintf(buf, n, "%s/images/%s", shared && *shared ? shared : "../shared", name);
    return buf;
}

static const char *mode_name(image_mode m)
{
    switch (m) {
    case IMAGE_MODE_L: return "L";
    case IMAGE_MODE_LA: return "LA";
    case IMAGE_MODE_RGB: return "RGB";
    case IMAGE_MODE_RGBA: return "RGBA";
    case IMAGE_MODE_P: return "P";
    case IMAGE_MODE_CMYK: return "CMYK";
    case IMAGE_MODE_1: return "1";
    }
    return "?";
}

static void put_le16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    put_le16(p, v & 0xFFFF);
    put_le16(p + 2, v >> 16);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A 24-bit BI_RGB BMP header (54 bytes) for w x h; pixel data must follow. */
static void bmp_header24(uint8_t *b, int32_t w, int32_t h, uint32_t file_size)
{
    memset(b, 0, 54);
    b[0] = 'B';
    b[1] = 'M';
    put_le32(b + 2, file_size);
    put_le32(b + 10, 54);
    put_le32(b + 14, 40);
    put_le32(b + 18, (uint32_t)w);
    put_le32(b + 22, (uint32_t)h);
    put_le16(b + 26, 1);
    put_le16(b + 28, 24);
}

/* ---- checks ------------------------------------------------------------------------------- */

static void test_names(void)
{
    CHECK_STR(image_format_name(IMAGE_FORMAT_JPEG), "jpeg");
    CHECK_STR(image_format_name(IMAGE_FORMAT_GIF), "gif");
    CHECK_STR(image_format_name((image_format)99), "unknown");
    for (int s = 0; s <= 6; s++)
        CHECK(image_status_message((image_status)s) != NULL);
    image_limits l = image_default_limits();
    CHECK_EQ_INT(l.max_pixels, 50000000);
    CHECK_EQ_INT(l.max_side, 32768);
    image zero;
    memset(&zero, 0, sizeof zero);
    image_free(&zero); /* must be a no-op */
    image_free(NULL);
    CHECK(zero.pixels == NULL);
}

/* SPEC.md section 5 reference pixels for dog.jpeg. */
static void test_dog(void)
{
    char path[512];
    size_t len = 0;
    uint8_t *data = read_file(shared_images_path(path, sizeof path, "dog.jpeg"), &len);
    CHECK_MSG(data != NULL, "cannot read %s", path);
    if (!data)
        return;
    image_header h;
    CHECK_EQ_INT(image_probe(data, len, &h), IMAGE_OK);
    CHECK_EQ_INT(h.format, IMAGE_FORMAT_JPEG);
    CHECK_EQ_INT(h.mode, IMAGE_MODE_RGB);
    CHECK_EQ_INT(h.width, 3375);
    CHECK_EQ_INT(h.height, 2250);

    image img;
    char err[256] = "";
    CHECK_EQ_INT(image_decode(data, len, NULL, &img, err, sizeof err), IMAGE_OK);
    uint8_t *rgb = malloc(SIZE * SIZE * 3);
    CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, rgb), IMAGE_OK);
    static const struct {
        int y, x;
        uint8_t rgb[3];
    } ref[] = {{0, 0, {141, 138, 132}}, {111, 111, {194, 171, 146}}, {223, 223, {21, 32, 33}}};
    for (size_t i = 0; i < sizeof ref / sizeof ref[0]; i++) {
        const uint8_t *p = rgb + ((size_t)ref[i].y * SIZE + (size_t)ref[i].x) * 3;
        CHECK_MSG(memcmp(p, ref[i].rgb, 3) == 0, "dog (%d,%d) = [%d,%d,%d], want [%d,%d,%d]",
                  ref[i].y, ref[i].x, p[0], p[1], p[2], ref[i].rgb[0], ref[i].rgb[1],
                  ref[i].rgb[2]);
    }

    float *t = malloc(sizeof(float) * 3 * SIZE * SIZE);
    CHECK_EQ_INT(image_preprocess(data, len, NULL, SIZE, MEAN, STD, t, err, sizeof err), IMAGE_OK);
    /* channel 1 (green) at (111,111) = (171/255 - mean) / std */
    float want = ((float)171 / 255.0f - MEAN[1]) / STD[1];
    CHECK_NEAR(t[1 * SIZE * SIZE + 111 * SIZE + 111], want, 0.0);
    CHECK_NEAR(t[0], ((float)141 / 255.0f - MEAN[0]) / STD[0], 0.0);

    /* A pixel limit below the image's size is refused before decoding. */
    image_limits small = {.max_pixels = 1000000, .max_side = 32768};
    image img2;
    CHECK_EQ_INT(image_decode(data, len, &small, &img2, err, sizeof err), IMAGE_ERR_TOO_LARGE);
    CHECK(strstr(err, "3375x2250") != NULL);
    CHECK(img2.pixels == NULL);

    /* Truncating the same file anywhere in the scan data must be an error, never a partial image,
     * in the whole-image decoder and in the streaming pipeline alike. */
    CHECK_EQ_INT(image_decode(data, len / 2, NULL, &img2, err, sizeof err), IMAGE_ERR_DECODE);
    CHECK(strstr(err, "truncated") != NULL);
    CHECK_EQ_INT(image_preprocess(data, len - 1000, NULL, SIZE, MEAN, STD, t, err, sizeof err),
                 IMAGE_ERR_DECODE);
    CHECK(strstr(err, "truncated") != NULL);

    free(t);
    free(rgb);
    image_free(&img);
    free(data);
}

static void test_truncated_file(void)
{
    char path[512];
    size_t len = 0;
    uint8_t *data = read_file(shared_images_path(path, sizeof path, "truncated.jpg"), &len);
    CHECK_MSG(data != NULL, "cannot read %s", path);
    if (!data)
        return;
    image img;
    char err[256] = "";
    CHECK_EQ_INT(image_decode(data, len, NULL, &img, err, sizeof err), IMAGE_ERR_DECODE);
    CHECK_MSG(strstr(err, "truncated") != NULL, "message: %s", err);
    free(data);
}

static void test_not_images(void)
{
    image img;
    char err[256];
    image_header h;
    CHECK_EQ_INT(image_decode((const uint8_t *)"", 0, NULL, &img, err, sizeof err),
                 IMAGE_ERR_UNSUPPORTED);
    CHECK(strstr(err, "empty") != NULL);
    CHECK_EQ_INT(image_decode(NULL, 0, NULL, &img, err, sizeof err), IMAGE_ERR_UNSUPPORTED);
    const char *text = "hello, this is not an image\n";
    CHECK_EQ_INT(image_decode((const uint8_t *)text, strlen(text), NULL, &img, err, sizeof err),
                 IMAGE_ERR_UNSUPPORTED);
    const uint8_t webp[] = "RIFF\x24\0\0\0WEBPVP8 \x18\0\0\0";
    CHECK_EQ_INT(image_decode(webp, sizeof webp - 1, NULL, &img, err, sizeof err),
                 IMAGE_ERR_UNSUPPORTED);
    CHECK(strstr(err, "WebP") != NULL);
    const uint8_t tiff[] = "II*\0\x08\0\0\0";
    CHECK_EQ_INT(image_probe(tiff, sizeof tiff - 1, &h), IMAGE_ERR_UNSUPPORTED);
    /* Known magic, nothing behind it. */
    CHECK_EQ_INT(image_probe((const uint8_t *)"\xFF\xD8\xFF", 3, &h), IMAGE_ERR_DECODE);
    CHECK_EQ_INT(image_probe((const uint8_t *)"\x89PNG\r\n\x1a\n", 8, &h), IMAGE_ERR_DECODE);
    CHECK_EQ_INT(image_probe((const uint8_t *)"GIF89a", 6, &h), IMAGE_ERR_DECODE);
    CHECK_EQ_INT(image_probe((const uint8_t *)"BM", 2, &h), IMAGE_ERR_DECODE);
    CHECK_EQ_INT(image_probe(NULL, 5, &h), IMAGE_ERR_ARGUMENT);
}

/* Headers that claim enormous images: refused from the header, without a large allocation
 * (under ASan a multi-gigabyte malloc would abort the test). */
static void test_huge_headers(void)
{
    image img;
    char err[256];
    image_header h;

    uint8_t png[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 100000);
    put_be32(png + 20, 100000);
    png[24] = 8;
    png[25] = 2;
    CHECK_EQ_INT(image_probe(png, sizeof png, &h), IMAGE_OK);
    CHECK_EQ_INT(h.width, 100000);
    CHECK_EQ_INT(h.height, 100000);
    CHECK_EQ_INT(image_decode(png, sizeof png, NULL, &img, err, sizeof err), IMAGE_ERR_TOO_LARGE);
    CHECK(strstr(err, "100000x100000") != NULL);
    /* Within the pixel limit but a side above max_side. */
    put_be32(png + 16, 40000);
    put_be32(png + 20, 10);
    CHECK_EQ_INT(image_decode(png, sizeof png, NULL, &img, err, sizeof err), IMAGE_ERR_TOO_LARGE);
    CHECK(strstr(err, "largest side") != NULL);
    /* Zero-sized */
    put_be32(png + 16, 0);
    CHECK_EQ_INT(image_decode(png, sizeof png, NULL, &img, err, sizeof err), IMAGE_ERR_DECODE);
    /* 16-bit greyscale: refused clearly */
    put_be32(png + 16, 10);
    png[24] = 16;
    png[25] = 0;
    CHECK_EQ_INT(image_probe(png, sizeof png, &h), IMAGE_ERR_UNSUPPORTED);

    /* JPEG: SOI, SOF0 65000x65000 (libjpeg's maximum is 65500), 3 components, SOS. */
    const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0xFD, 0xE8, 0xFD, 0xE8,
                            0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xFF,
                            0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x11, 0x03, 0x11, 0x00,
                            0x3F, 0x00, 0xFF, 0xD9};
    CHECK_EQ_INT(image_probe(jpeg, sizeof jpeg, &h), IMAGE_OK);
    CHECK_EQ_INT(image_decode(jpeg, sizeof jpeg, NULL, &img, err, sizeof err),
                 IMAGE_ERR_TOO_LARGE);
    CHECK_MSG(strstr(err, "65000x65000") != NULL, "message: %s", err);

    uint8_t bmp[54];
    bmp_header24(bmp, 100000, 100000, 54);
    CHECK_EQ_INT(image_decode(bmp, sizeof bmp, NULL, &img, err, sizeof err), IMAGE_ERR_TOO_LARGE);
    bmp_header24(bmp, 0, 5, 54);
    CHECK_EQ_INT(image_decode(bmp, sizeof bmp, NULL, &img, err, sizeof err), IMAGE_ERR_DECODE);
    /* In the limits, but the pixel array is missing: truncated. */
    bmp_header24(bmp, 10, 10, 54);
    CHECK_EQ_INT(image_decode(bmp, sizeof bmp, NULL, &img, err, sizeof err), IMAGE_ERR_DECODE);
    CHECK(strstr(err, "truncated") != NULL);

    const uint8_t gif[] = "GIF89a\xFF\xFF\xFF\xFF\x00\x00\x00"
                          ",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00;";
    CHECK_EQ_INT(image_probe(gif, sizeof gif - 1, &h), IMAGE_OK);
    CHECK_EQ_INT(h.width, 65535);
    CHECK_EQ_INT(image_decode(gif, sizeof gif - 1, NULL, &img, err, sizeof err),
                 IMAGE_ERR_TOO_LARGE);
}

/* Tiny files of every format, 1x1: the whole 224x224 crop is that one colour. */
static void test_one_pixel(void)
{
    char err[256];
    float *t = malloc(sizeof(float) * 3 * SIZE * SIZE);
    uint8_t *rgb = malloc(SIZE * SIZE * 3);

    /* PNG written by Pillow: RGB (10, 200, 30). */
    const uint8_t png[] = {
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
        0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00,
        0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x78,
        0x9c, 0x63, 0xe0, 0x3a, 0x21, 0x07, 0x00, 0x01, 0xd0, 0x00, 0xf1, 0x24, 0x5c, 0x91,
        0xf4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
    image img;
    CHECK_EQ_INT(image_decode(png, sizeof png, NULL, &img, err, sizeof err), IMAGE_OK);
    CHECK_EQ_INT(img.mode, IMAGE_MODE_RGB);
    CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, rgb), IMAGE_OK);
    int same = 1;
    for (int i = 0; i < SIZE * SIZE; i++)
        same &= rgb[3 * i] == 10 && rgb[3 * i + 1] == 200 && rgb[3 * i + 2] == 30;
    CHECK(same);
    image_free(&img);
    /* Without its IEND chunk: refused as truncated. */
    CHECK_EQ_INT(image_decode(png, sizeof png - 12, NULL, &img, err, sizeof err),
                 IMAGE_ERR_DECODE);

    /* BMP 24-bit, bottom-up, one pixel B,G,R = 1,2,3 plus row padding. */
    uint8_t bmp[58];
    bmp_header24(bmp, 1, 1, sizeof bmp);
    bmp[54] = 1;
    bmp[55] = 2;
    bmp[56] = 3;
    bmp[57] = 0;
    CHECK_EQ_INT(image_preprocess(bmp, sizeof bmp, NULL, SIZE, MEAN, STD, t, err, sizeof err),
                 IMAGE_OK);
    CHECK_NEAR(t[0], ((float)3 / 255.0f - MEAN[0]) / STD[0], 0.0);
    CHECK_NEAR(t[3 * SIZE * SIZE - 1], ((float)1 / 255.0f - MEAN[2]) / STD[2], 0.0);

    /* GIF 1x1, global palette {(255,0,0), (0,0,255)}, pixel index 1. */
    const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00"
                          "\xFF\x00\x00\x00\x00\xFF"
                          ",\x00\x00\x00\x00\x01\x00\x01\x00\x00"
                          "\x02\x02\x4C\x01\x00;";
    CHECK_EQ_INT(image_decode(gif, sizeof gif - 1, NULL, &img, err, sizeof err), IMAGE_OK);
    CHECK_MSG(img.mode == IMAGE_MODE_P, "%s", err);
    CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, rgb), IMAGE_OK);
    CHECK(rgb[0] == 0 && rgb[1] == 0 && rgb[2] == 255);
    CHECK(rgb[3 * SIZE * SIZE - 1] == 255);
    image_free(&img);
    /* The same GIF cut inside its image data. */
    CHECK_EQ_INT(image_decode(gif, 30, NULL, &img, err, sizeof err), IMAGE_ERR_DECODE);

    free(t);
    free(rgb);
}

/* A synthetic image whose pixel value tells its column (or row) shows where the crop starts. */
static void check_crop_offset(uint32_t w, uint32_t h, int want_left, int want_top)
{
    image img = {.width = w, .height = h, .channels = 3, .mode = IMAGE_MODE_RGB};
    img.pixels = malloc((size_t)w * h * 3);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++) {
            uint8_t *p = img.pixels + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)x;
            p[1] = (uint8_t)y;
            p[2] = 0;
        }
    uint8_t *rgb = malloc(SIZE * SIZE * 3);
    CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, rgb), IMAGE_OK);
    CHECK_MSG(rgb[0] == want_left && rgb[1] == want_top, "%ux%u: crop at (%d,%d), want (%d,%d)",
              w, h, rgb[0], rgb[1], want_left, want_top);
    free(rgb);
    image_free(&img);
}

static void test_crop_rounding(void)
{
    /* 224 rows: no resize; the crop offset is round((W - 224) / 2), halves to even. */
    check_crop_offset(225, 224, 0, 0); /* 0.5 -> 0 */
    check_crop_offset(226, 224, 1, 0); /* 1.0 -> 1 */
    check_crop_offset(227, 224, 2, 0); /* 1.5 -> 2 */
    check_crop_offset(229, 224, 2, 0); /* 2.5 -> 2 */
    check_crop_offset(224, 231, 0, 4); /* 3.5 -> 4 */
}

static void test_nearest_and_modes(void)
{
    /* Palette images are resized with NEAREST: 448 -> 224 takes the odd source columns and rows
     * (Pillow: x = (k + 0.5) * 2, truncated). Odd columns/rows are 255, even ones 0. */
    image img = {.width = 448, .height = 448, .channels = 3, .mode = IMAGE_MODE_P};
    img.pixels = malloc(448 * 448 * 3);
    for (int y = 0; y < 448; y++)
        for (int x = 0; x < 448; x++) {
            uint8_t *p = img.pixels + ((size_t)y * 448 + x) * 3;
            p[0] = (x & 1) ? 255 : 0;
            p[1] = (y & 1) ? 255 : 0;
            p[2] = (uint8_t)(x >> 1);
        }
    uint8_t *rgb = malloc(SIZE * SIZE * 3);
    CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, rgb), IMAGE_OK);
    int odd = 1;
    for (int i = 0; i < SIZE * SIZE; i++)
        odd &= rgb[3 * i] == 255 && rgb[3 * i + 1] == 255 && rgb[3 * i + 2] == i % SIZE;
    CHECK(odd);
    /* The same pixels as RGB are averaged instead (bilinear). */
    img.mode = IMAGE_MODE_RGB;
    CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, rgb), IMAGE_OK);
    CHECK(rgb[0] > 0 && rgb[0] < 255 && rgb[1] > 0 && rgb[1] < 255);
    image_free(&img);

    /* RGBA: a fully transparent pixel keeps no colour after premultiplication. */
    image rgba = {.width = 2, .height = 1, .channels = 4, .mode = IMAGE_MODE_RGBA};
    rgba.pixels = malloc(8);
    const uint8_t px[8] = {255, 0, 0, 255, 0, 255, 0, 0};
    memcpy(rgba.pixels, px, 8);
    CHECK_EQ_INT(image_resize_crop_rgb(&rgba, SIZE, rgb), IMAGE_OK);
    /* Right half: premultiplied green is 0, so only red from the left pixel leaks in. */
    const uint8_t *last = rgb + (SIZE * SIZE - 1) * 3;
    CHECK(last[1] == 0);
    CHECK(last[0] == 255);
    image_free(&rgba);

    /* CMYK -> RGB with Pillow's formula: C=255,M=0,Y=0,K=0 -> (0,255,255). */
    image cmyk = {.width = 1, .height = 1, .channels = 4, .mode = IMAGE_MODE_CMYK};
    cmyk.pixels = malloc(4);
    const uint8_t c[4] = {255, 0, 0, 0};
    memcpy(cmyk.pixels, c, 4);
    CHECK_EQ_INT(image_resize_crop_rgb(&cmyk, SIZE, rgb), IMAGE_OK);
    CHECK(rgb[0] == 0 && rgb[1] == 255 && rgb[2] == 255);
    image_free(&cmyk);

    /* Bad arguments */
    image bad = {.width = 1, .height = 1, .channels = 2, .mode = IMAGE_MODE_RGB};
    uint8_t one[3] = {0};
    bad.pixels = one;
    CHECK_EQ_INT(image_resize_crop_rgb(&bad, SIZE, rgb), IMAGE_ERR_ARGUMENT);
    bad.channels = 3;
    CHECK_EQ_INT(image_resize_crop_rgb(&bad, 0, rgb), IMAGE_ERR_ARGUMENT);
    CHECK_EQ_INT(image_resize_crop_rgb(NULL, SIZE, rgb), IMAGE_ERR_ARGUMENT);
    /* A 1x50M strip would resize to 224 x 11.2e9: refused, not attempted. */
    image strip = {.width = 1, .height = 50000000, .channels = 3, .mode = IMAGE_MODE_RGB};
    strip.pixels = one;
    CHECK_EQ_INT(image_resize_crop_rgb(&strip, SIZE, rgb), IMAGE_ERR_TOO_LARGE);
    free(rgb);
}

/* Every channel count and pass combination, on noise: SIMD and scalar kernels agree byte for byte. */
static void test_simd_matches_scalar(void)
{
    static const image_mode modes[] = {IMAGE_MODE_L, IMAGE_MODE_LA, IMAGE_MODE_RGB,
                                       IMAGE_MODE_RGBA, IMAGE_MODE_CMYK};
    static const uint32_t sizes[][2] = {{640, 480}, {224, 500}, {500, 224}, {97, 1203}, {1, 1},
                                        {3000, 37}};
    uint8_t *a = malloc(SIZE * SIZE * 3), *b = malloc(SIZE * SIZE * 3);
    uint32_t seed = 12345;
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            image img = {.width = sizes[s][0], .height = sizes[s][1], .mode = modes[m]};
            img.channels = (int)(modes[m] == IMAGE_MODE_L ? 1 : modes[m] == IMAGE_MODE_LA ? 2
                                 : modes[m] == IMAGE_MODE_RGB ? 3 : 4);
            size_t n = (size_t)img.width * img.height * (size_t)img.channels;
            img.pixels = malloc(n);
            for (size_t i = 0; i < n; i++) {
                seed = seed * 1103515245u + 12345u;
                img.pixels[i] = (uint8_t)(seed >> 16);
            }
            image_resize_force_scalar(0);
            CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, a), IMAGE_OK);
            image_resize_force_scalar(1);
            CHECK_EQ_INT(image_resize_crop_rgb(&img, SIZE, b), IMAGE_OK);
            CHECK_MSG(memcmp(a, b, SIZE * SIZE * 3) == 0, "mode %d %ux%u: SIMD != scalar",
                      (int)modes[m], img.width, img.height);
            image_free(&img);
        }
    }
    image_resize_force_scalar(0);
    free(a);
    free(b);
}

/* ---- tool modes --------------------------------------------------------------------------- */

static int dump(const char *in, const char *outpath, int as_float)
{
    size_t len = 0;
    uint8_t *data = read_file(in, &len);
    if (!data) {
        fprintf(stderr, "cannot read %s\n", in);
        return 2;
    }
    char err[512] = "";
    image_header h;
    memset(&h, 0, sizeof h);
    image_probe(data, len, &h);
    image_status st;
    void *result = NULL;
    size_t result_len = 0;
    if (as_float) {
        result_len = sizeof(float) * 3 * SIZE * SIZE;
        result = malloc(result_len);
        st = image_preprocess(data, len, NULL, SIZE, MEAN, STD, result, err, sizeof err);
    } else {
        image img;
        st = image_decode(data, len, NULL, &img, err, sizeof err);
        if (st == IMAGE_OK) {
            result_len = SIZE * SIZE * 3;
            result = malloc(result_len);
            st = image_resize_crop_rgb(&img, SIZE, result);
            image_free(&img);
        }
    }
    free(data);
    if (st != IMAGE_OK) {
        printf("ERROR %d %s\n", (int)st, err);
        free(result);
        return 0;
    }
    int ok = write_file(outpath, result, result_len);
    free(result);
    if (!ok) {
        fprintf(stderr, "cannot write %s\n", outpath);
        return 2;
    }
    printf("OK %s %s %ux%u\n", image_format_name(h.format), mode_name(h.mode), h.width, h.height);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench(const char *in, const char *runs_arg)
{
    size_t len = 0;
    uint8_t *data = read_file(in, &len);
    char *end = NULL;
    long runs = strtol(runs_arg, &end, 10);
    if (!data || !end || *end || runs < 1 || runs > 10000) {
        fprintf(stderr, "usage: --bench FILE RUNS(1..10000)\n");
        free(data);
        return 2;
    }
    float *t = malloc(sizeof(float) * 3 * SIZE * SIZE);
    double *ms = malloc(sizeof(double) * (size_t)runs);
    char err[256];
    for (long i = 0; i < runs; i++) {
        double t0 = now_ms();
        image_status st = image_preprocess(data, len, NULL, SIZE, MEAN, STD, t, err, sizeof err);
        ms[i] = now_ms() - t0;
        if (st != IMAGE_OK) {
            fprintf(stderr, "%s\n", err);
            break;
        }
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    printf("%s: median %.2f ms, min %.2f ms over %ld runs\n", in, ms[runs / 2], ms[0], runs);
    free(ms);
    free(t);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    const char *scalar = getenv("CLOOB_IMAGE_SCALAR");
    if (scalar && strcmp(scalar, "1") == 0)
        image_resize_force_scalar(1);
    if (argc == 4 && strcmp(argv[1], "--dump") == 0)
        return dump(argv[2], argv[3], 0);
    if (argc == 4 && strcmp(argv[1], "--dump-float") == 0)
        return dump(argv[2], argv[3], 1);
    if (argc == 4 && strcmp(argv[1], "--bench") == 0)
        return bench(argv[2], argv[3]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--dump|--dump-float IN OUT | --bench IN RUNS]\n", argv[0]);
        return 2;
    }
    test_names();
    test_not_images();
    test_huge_headers();
    test_truncated_file();
    for (int pass = 0; pass < 2; pass++) { /* SIMD kernels (where the CPU has them), then scalar */
        image_resize_force_scalar(pass);
        test_dog();
        test_one_pixel();
        test_crop_rounding();
        test_nearest_and_modes();
    }
    test_simd_matches_scalar();
    TEST_MAIN_END();
}
