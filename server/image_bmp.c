/*
 * image_bmp.c - uncompressed Windows/OS2 BMP, read the way Pillow 9.4's BmpImagePlugin reads it.
 *
 * Why not stb_image: Pillow's mode rules decide how the image is resized, and stb differs in ways
 * that change pixels: a grey palette makes Pillow's image mode L (bilinear) or 1 (nearest) instead
 * of P; 16-bit pixels are scaled v*255/31 (stb replicates bits: 16 -> 132, Pillow 131); 32-bit
 * BI_RGB ignores the 4th byte while BITFIELDS with an alpha mask gives RGBA, and an all-zero alpha
 * stays zero (stb turns it into 255); a truncated pixel array is an error (stb pads with zeros).
 *
 * Supported, as in Pillow: header sizes 12 (OS/2 1.x), 40, 64, 108, 124; 1/4/8-bit palettes;
 * 16-bit (5-5-5 or 5-6-5), 24-bit, 32-bit; BI_RGB and the BITFIELDS layouts Pillow lists.
 * Refused: RLE4/RLE8 (Pillow decodes them; rare enough that we say so instead), JPEG/PNG-in-BMP
 * and everything Pillow refuses.
 * Pillow's grey-palette shortcut reads pixels by the new mode, not by the file's depth: mode L as
 * one byte per pixel, mode 1 as one bit per pixel, whatever the bits field says (a 4-bit file with
 * a grey-ramp palette is read as 8-bit and refused when a row is too short for that). We do the
 * same, so such files give Pillow's pixels or Pillow's refusal.
 */
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

enum { BMP_RAW = 0, BMP_RLE8 = 1, BMP_RLE4 = 2, BMP_BITFIELDS = 3 };

/* How a row of the file turns into pixels. */
typedef enum bmp_layout {
    BMP_PALETTE,  /* 1/4/8-bit indices */
    BMP_BGR15,    /* 16-bit 5-5-5 */
    BMP_BGR16,    /* 16-bit 5-6-5 */
    BMP_BYTES     /* 24/32-bit, bytes picked by the offsets below */
} bmp_layout;

typedef struct bmp_info {
    uint32_t width, height;
    int bottom_up;     /* rows stored last-to-first (positive height) */
    int bits;
    bmp_layout layout;
    int r, g, b, a;    /* byte offsets inside a pixel for BMP_BYTES; a < 0: no alpha */
    uint32_t colors;   /* palette entries */
    size_t palette_off;
    int palette_stride; /* 4 (BGRX) or 3 (BGR, OS/2 1.x) */
    size_t pixel_off;
    size_t stride;     /* bytes per row, padded to 4 */
    image_mode mode;
} bmp_info;

static uint32_t bmp_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t bmp_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* The 32-bit BITFIELDS layouts Pillow accepts (BmpImagePlugin SUPPORTED / MASK_MODES). */
static int bmp_bitfields32(uint32_t rm, uint32_t gm, uint32_t bm, uint32_t am, bmp_info *bi)
{
    static const struct {
        uint32_t r, g, b, a;
        int ro, go, bo, ao;
    } table[] = {
        {0xFF0000, 0xFF00, 0xFF, 0x0, 2, 1, 0, -1},              /* BGRX */
        {0xFF000000, 0xFF0000, 0xFF00, 0x0, 3, 2, 1, -1},        /* XBGR */
        {0xFF000000, 0xFF0000, 0xFF00, 0xFF, 3, 2, 1, 0},        /* ABGR */
        {0xFF, 0xFF00, 0xFF0000, 0xFF000000, 0, 1, 2, 3},        /* RGBA */
        {0xFF0000, 0xFF00, 0xFF, 0xFF000000, 2, 1, 0, 3},        /* BGRA */
        {0x0, 0x0, 0x0, 0x0, 2, 1, 0, 3},                        /* BGRA, as Pillow maps it */
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (table[i].r == rm && table[i].g == gm && table[i].b == bm && table[i].a == am) {
            bi->r = table[i].ro;
            bi->g = table[i].go;
            bi->b = table[i].bo;
            bi->a = table[i].ao;
            return 1;
        }
    }
    return 0;
}

/* Pillow: a palette whose entries are all (i,i,i) (or black, white for 2 colours) is dropped. */
static int bmp_palette_is_grey(const uint8_t *pal, const bmp_info *bi)
{
    for (uint32_t i = 0; i < bi->colors; i++) {
        uint8_t want = bi->colors == 2 ? (uint8_t)(i ? 255 : 0) : (uint8_t)i;
        const uint8_t *e = pal + (size_t)i * (size_t)bi->palette_stride;
        if (e[0] != want || e[1] != want || e[2] != want)
            return 0;
    }
    return 1;
}

static image_status bmp_parse(const uint8_t *d, size_t len, bmp_info *bi, char *err,
                              size_t errlen)
{
    memset(bi, 0, sizeof *bi);
    if (len < 18)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: file is truncated");
    uint32_t pixel_off = bmp_le32(d + 10);
    uint32_t header_size = bmp_le32(d + 14);
    if (header_size != 12 && header_size != 40 && header_size != 64 && header_size != 108 &&
        header_size != 124)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: unsupported header type (%u)",
                          header_size);
    if (len < 14 + (size_t)header_size)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: file is truncated in the header");

    uint32_t compression = BMP_RAW, colors_field = 0;
    int64_t width, height;
    if (header_size == 12) {
        width = bmp_le16(d + 18);
        height = bmp_le16(d + 20);
        bi->bits = bmp_le16(d + 24);
        bi->palette_stride = 3;
    } else {
        width = (int32_t)bmp_le32(d + 18);
        uint32_t hraw = bmp_le32(d + 22);
        /* Pillow flips only when the top byte is 0xFF; other "negative" heights are huge. */
        if (d[25] == 0xFF) {
            height = (int64_t)0x100000000LL - hraw;
            bi->bottom_up = 0;
        } else {
            height = hraw;
            bi->bottom_up = 1;
        }
        bi->bits = bmp_le16(d + 28);
        compression = bmp_le32(d + 30);
        colors_field = bmp_le32(d + 46);
        bi->palette_stride = 4;
    }
    if (header_size == 12)
        bi->bottom_up = 1;
    if (width <= 0 || height <= 0 || width > 0x7FFFFFFF || height > 0x7FFFFFFF)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: invalid size %lldx%lld",
                          (long long)width, (long long)height);
    bi->width = (uint32_t)width;
    bi->height = (uint32_t)height;

    int bits = bi->bits;
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: unsupported pixel depth (%d)",
                          bits);
    if (compression == BMP_RLE8 || compression == BMP_RLE4)
        return image_fail(IMAGE_ERR_UNSUPPORTED, err, errlen,
                          "bmp: run-length encoded BMP is not supported; send PNG");
    if (compression != BMP_RAW && compression != BMP_BITFIELDS)
        return image_fail(IMAGE_ERR_UNSUPPORTED, err, errlen,
                          "bmp: unsupported compression (%u)", compression);

    bi->mode = bits <= 8 ? IMAGE_MODE_P : IMAGE_MODE_RGB;
    bi->a = -1;
    if (bits <= 8) {
        bi->layout = BMP_PALETTE;
    } else if (bits == 16) {
        bi->layout = BMP_BGR15;
    } else {
        bi->layout = BMP_BYTES;
        bi->r = 2;
        bi->g = 1;
        bi->b = 0;
    }
    if (compression == BMP_BITFIELDS) {
        /* 40-byte headers keep three masks right after the header, the bigger ones four inside
         * it: the same file offsets. */
        if (len < 14 + 40 + 12 + (header_size > 40 ? 4 : 0))
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: file is truncated in masks");
        uint32_t rm = bmp_le32(d + 54), gm = bmp_le32(d + 58), bm = bmp_le32(d + 62);
        uint32_t am = header_size > 40 ? bmp_le32(d + 66) : 0;
        int ok = 0;
        if (bits == 32) {
            ok = bmp_bitfields32(rm, gm, bm, am, bi);
            if (ok && bi->a >= 0)
                bi->mode = IMAGE_MODE_RGBA;
        } else if (bits == 24) {
            ok = rm == 0xFF0000 && gm == 0xFF00 && bm == 0xFF;
        } else if (bits == 16) {
            if (rm == 0xF800 && gm == 0x7E0 && bm == 0x1F) {
                bi->layout = BMP_BGR16;
                ok = 1;
            } else if (rm == 0x7C00 && gm == 0x3E0 && bm == 0x1F) {
                ok = 1;
            }
        }
        if (!ok)
            return image_fail(IMAGE_ERR_DECODE, err, errlen,
                              "bmp: unsupported bitfields layout");
    }

    if (bits <= 8) {
        uint32_t colors = colors_field ? colors_field : (1u << bits);
        if (colors > 256)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: palette of %u colours",
                              colors);
        bi->colors = colors;
        bi->palette_off = 14 + (size_t)header_size;
        if (len - bi->palette_off < (size_t)colors * (size_t)bi->palette_stride)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: file is truncated in palette");
        /* Pillow's fix-up for files whose offset points at the palette. */
        if (pixel_off == 14 + header_size)
            pixel_off += 4 * colors;
        if (bmp_palette_is_grey(d + bi->palette_off, bi))
            bi->mode = colors == 2 ? IMAGE_MODE_1 : IMAGE_MODE_L;
    }
    uint64_t stride = (((uint64_t)bi->width * (uint64_t)bits + 31) >> 3) & ~(uint64_t)3;
    bi->stride = (size_t)stride;
    if (bi->mode == IMAGE_MODE_L && bi->width > stride) /* Pillow: "codec configuration error" */
        return image_fail(IMAGE_ERR_DECODE, err, errlen,
                          "bmp: %d-bit pixels with a grey palette (read as 8-bit by the "
                          "reference decoder, which then refuses the file)", bits);
    if (pixel_off == 0) /* Pillow: "offset or fp.tell()", i.e. right after what it has read */
        pixel_off = (uint32_t)(bits <= 8 ? bi->palette_off + (size_t)bi->colors * bi->palette_stride
                                         : 14 + header_size +
                                               (compression == BMP_BITFIELDS && header_size == 40
                                                    ? 12 : 0));
    bi->pixel_off = pixel_off;
    return IMAGE_OK;
}

image_status image_bmp_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                             size_t errlen)
{
    bmp_info bi;
    image_status st = bmp_parse(data, len, &bi, err, errlen);
    if (st != IMAGE_OK)
        return st;
    out->format = IMAGE_FORMAT_BMP;
    out->mode = bi.mode;
    out->width = bi.width;
    out->height = bi.height;
    return IMAGE_OK;
}

static uint8_t bmp_index(const uint8_t *row, uint32_t x, int bits)
{
    switch (bits) {
    case 1: return (uint8_t)((row[x >> 3] >> (7 - (x & 7))) & 1);
    case 4: return (uint8_t)((x & 1) ? (row[x >> 1] & 0x0F) : (row[x >> 1] >> 4));
    default: return row[x];
    }
}

static void bmp_unpack_row(const uint8_t *row, const bmp_info *bi, const image_palette *pal,
                           uint8_t *dst)
{
    uint32_t w = bi->width;
    switch (bi->layout) {
    case BMP_PALETTE:
        /* Pillow unpacks by mode: P by the file's depth, 1 as bits, L as bytes (see the top). */
        for (uint32_t x = 0; x < w; x++) {
            if (bi->mode == IMAGE_MODE_P)
                memcpy(dst + 3 * (size_t)x, pal->rgb[bmp_index(row, x, bi->bits)], 3);
            else if (bi->mode == IMAGE_MODE_1)
                dst[x] = bmp_index(row, x, 1) ? 255 : 0;
            else
                dst[x] = row[x]; /* L: a grey-ramp palette maps index i to grey level i */
        }
        break;
    case BMP_BGR15:
        for (uint32_t x = 0; x < w; x++) {
            unsigned v = bmp_le16(row + 2 * (size_t)x);
            dst[3 * x + 0] = (uint8_t)(((v >> 10) & 31) * 255 / 31);
            dst[3 * x + 1] = (uint8_t)(((v >> 5) & 31) * 255 / 31);
            dst[3 * x + 2] = (uint8_t)((v & 31) * 255 / 31);
        }
        break;
    case BMP_BGR16:
        for (uint32_t x = 0; x < w; x++) {
            unsigned v = bmp_le16(row + 2 * (size_t)x);
            dst[3 * x + 0] = (uint8_t)(((v >> 11) & 31) * 255 / 31);
            dst[3 * x + 1] = (uint8_t)(((v >> 5) & 63) * 255 / 63);
            dst[3 * x + 2] = (uint8_t)((v & 31) * 255 / 31);
        }
        break;
    case BMP_BYTES: {
        size_t px = (size_t)bi->bits / 8;
        int ch = bi->a >= 0 ? 4 : 3;
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *s = row + px * x;
            uint8_t *o = dst + (size_t)ch * x;
            o[0] = s[bi->r];
            o[1] = s[bi->g];
            o[2] = s[bi->b];
            if (ch == 4)
                o[3] = s[bi->a];
        }
        break;
    }
    }
}

image_status image_bmp_decode(const uint8_t *data, size_t len, const image_header *hdr, image *out,
                              char *err, size_t errlen)
{
    bmp_info bi;
    image_status st = bmp_parse(data, len, &bi, err, errlen);
    if (st != IMAGE_OK)
        return st;
    if (bi.mode != hdr->mode || bi.width != hdr->width || bi.height != hdr->height)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "bmp: header changed between reads");
    if (bi.pixel_off > len || (len - bi.pixel_off) / bi.stride < bi.height)
        return image_fail(IMAGE_ERR_DECODE, err, errlen,
                          "bmp: image file is truncated (%ux%u needs %zu bytes of pixels)",
                          bi.width, bi.height, bi.stride * (size_t)bi.height);

    image_palette pal;
    image_palette_init_ramp(&pal);
    for (uint32_t i = 0; i < bi.colors; i++) {
        const uint8_t *e = data + bi.palette_off + (size_t)i * (size_t)bi.palette_stride;
        pal.rgb[i][0] = e[2]; /* stored B, G, R */
        pal.rgb[i][1] = e[1];
        pal.rgb[i][2] = e[0];
    }
    st = image_alloc(out, bi.width, bi.height, bi.mode);
    if (st != IMAGE_OK)
        return st;
    size_t out_stride = (size_t)bi.width * (size_t)out->channels;
    for (uint32_t y = 0; y < bi.height; y++) {
        uint32_t file_row = bi.bottom_up ? bi.height - 1 - y : y;
        const uint8_t *row = data + bi.pixel_off + (size_t)file_row * bi.stride;
        bmp_unpack_row(row, &bi, &pal, out->pixels + (size_t)y * out_stride);
    }
    return IMAGE_OK;
}
