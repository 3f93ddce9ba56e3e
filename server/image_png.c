/*
 * image_png.c - PNG through stb_image (compiled in image_stb.c, PNG only). PNG is lossless, so a correct
 * decoder gives Pillow's pixels once the mode is the one Pillow picks (PngImagePlugin._MODES):
 *
 *   colour type 0 (grey):  1 bit -> mode 1; 2/4/8 bit -> L (scaled x85 / x17 like Pillow's L;2,
 *                          L;4 and stb); 16 bit -> refused: Pillow opens it as mode I (32-bit
 *                          integers) and convert("RGB") saturates everything above 255 to white
 *   colour type 2 (RGB), 4 (grey+alpha), 6 (RGBA): 8 or 16 bit -> RGB, LA, RGBA; 16-bit samples
 *                          keep their high byte (Pillow's "RGB;16B" etc., stb's 16->8 conversion)
 *   colour type 3 (palette) -> P. A tRNS chunk never changes the mode (Pillow keeps it in info).
 *
 * Palette images are decoded as grey indices and expanded with our own palette table: stb keeps
 * its palette in an uninitialised stack array, so an index past the PLTE entries would read stack
 * garbage, while Pillow shows the grey ramp (i,i,i) there. To get indices out of stb we hand it a
 * copy of the file whose IHDR says "grey" and whose tRNS chunk is renamed (an ancillary name stb
 * skips); stb does not check CRCs.
 *
 * Before stb sees the data we walk the chunk list ourselves: truncated chunks, a missing IEND,
 * unknown critical chunks and bad CRCs before the image data (Pillow checks those) are refused with
 * a clear message (stb would otherwise write an unknown chunk's name into a static, not
 * thread-safe, buffer). Not matched: Pillow also refuses a zlib stream whose Adler-32 is wrong
 * (stb does not check it) and accepts one cut short after the last scanline (stb does not). stb's allocations go through a per-thread
 * cap derived from the header, so a zlib bomb fails instead of inflating gigabytes.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

/* ---- our own chunk walk --------------------------------------------------------------------- */

#define PNG_SIG_LEN 8
#define PNG_IHDR_END (PNG_SIG_LEN + 8 + 13) /* signature, IHDR length+type, IHDR body */

typedef struct png_layout {
    uint32_t width, height;
    int depth, color_type;
    size_t plte_off, plte_len; /* body of PLTE, 0/0 if none */
    size_t trns_type_off;      /* offset of the "tRNS" type bytes, 0 if none */
} png_layout;

static uint32_t png_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static image_status png_mode_of(int depth, int color_type, image_mode *mode, char *err,
                                size_t errlen)
{
    switch (color_type) {
    case 0:
        if (depth == 1) {
            *mode = IMAGE_MODE_1;
            return IMAGE_OK;
        }
        if (depth == 2 || depth == 4 || depth == 8) {
            *mode = IMAGE_MODE_L;
            return IMAGE_OK;
        }
        if (depth == 16)
            return image_fail(IMAGE_ERR_UNSUPPORTED, err, errlen,
                              "png: 16-bit greyscale is not supported (Pillow reads it as 32-bit "
                              "mode I, which the reference pipeline turns white); convert it to "
                              "8 bits");
        break;
    case 2:
        if (depth == 8 || depth == 16) {
            *mode = IMAGE_MODE_RGB;
            return IMAGE_OK;
        }
        break;
    case 3:
        if (depth == 1 || depth == 2 || depth == 4 || depth == 8) {
            *mode = IMAGE_MODE_P;
            return IMAGE_OK;
        }
        break;
    case 4:
        if (depth == 8 || depth == 16) {
            *mode = IMAGE_MODE_LA;
            return IMAGE_OK;
        }
        break;
    case 6:
        if (depth == 8 || depth == 16) {
            *mode = IMAGE_MODE_RGBA;
            return IMAGE_OK;
        }
        break;
    default: break;
    }
    return image_fail(IMAGE_ERR_DECODE, err, errlen,
                      "png: invalid bit depth %d for colour type %d", depth, color_type);
}

image_status image_png_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                             size_t errlen)
{
    if (len >= PNG_SIG_LEN + 8 && memcmp(data + PNG_SIG_LEN + 4, "CgBI", 4) == 0)
        return image_fail(IMAGE_ERR_UNSUPPORTED, err, errlen,
                          "png: Apple CgBI PNG (not a standard PNG)");
    if (len < PNG_IHDR_END)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: file is truncated (%zu bytes)",
                          len);
    if (png_be32(data + 8) != 13 || memcmp(data + 12, "IHDR", 4) != 0)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: first chunk is not IHDR");
    const uint8_t *ihdr = data + 16;
    uint32_t w = png_be32(ihdr), h = png_be32(ihdr + 4);
    if (w == 0 || h == 0)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: zero-sized image (%ux%u)", w, h);
    if (w > 0x7FFFFFFFu || h > 0x7FFFFFFFu)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: invalid size %ux%u", w, h);
    if (ihdr[10] != 0 || ihdr[11] != 0 || ihdr[12] > 1)
        return image_fail(IMAGE_ERR_DECODE, err, errlen,
                          "png: unknown compression, filter or interlace method");
    image_mode mode = IMAGE_MODE_RGB;
    image_status st = png_mode_of(ihdr[8], ihdr[9], &mode, err, errlen);
    if (st != IMAGE_OK)
        return st;
    out->format = IMAGE_FORMAT_PNG;
    out->mode = mode;
    out->width = w;
    out->height = h;
    return IMAGE_OK;
}

/* CRC-32 of the PNG spec (and zlib), over a chunk's type and body. */
static uint32_t png_crc(const uint32_t table[256], const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void png_crc_table(uint32_t table[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
}

/*
 * Walks every chunk up to IEND; records PLTE and tRNS. Like Pillow, checks the CRC of every chunk
 * before the first IDAT (a mismatch there is "broken PNG file" at open); image data and later
 * chunks are not checked by Pillow, so not here either.
 */
static image_status png_walk(const uint8_t *data, size_t len, png_layout *lay, char *err,
                             size_t errlen)
{
    uint32_t crc_table[256];
    png_crc_table(crc_table);
    memset(lay, 0, sizeof *lay);
    lay->width = png_be32(data + 16);
    lay->height = png_be32(data + 20);
    lay->depth = data[24];
    lay->color_type = data[25];
    size_t pos = PNG_SIG_LEN;
    int idat_seen = 0;
    for (;;) {
        if (len - pos < 12)
            return image_fail(IMAGE_ERR_DECODE, err, errlen,
                              "png: image file is truncated (no IEND chunk)");
        uint32_t clen = png_be32(data + pos);
        const uint8_t *type = data + pos + 4;
        /* Letters only: checked first, since the messages below quote the type (and error
         * messages end up in JSON responses, so they must stay ASCII). */
        for (int i = 0; i < 4; i++) {
            uint8_t c = type[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: corrupt chunk type");
        }
        if (clen > 0x7FFFFFFFu || clen > len - pos - 12)
            return image_fail(IMAGE_ERR_DECODE, err, errlen,
                              "png: image file is truncated (chunk %.4s of %u bytes)",
                              (const char *)type, clen);
        size_t body = pos + 8;
        if (memcmp(type, "IDAT", 4) == 0)
            idat_seen = 1;
        if (!idat_seen && png_crc(crc_table, type, (size_t)clen + 4) != png_be32(data + body + clen))
            return image_fail(IMAGE_ERR_DECODE, err, errlen,
                              "png: broken file (bad checksum in chunk %.4s)", (const char *)type);
        if (memcmp(type, "IEND", 4) == 0)
            break;
        if (memcmp(type, "IDAT", 4) == 0) {
            /* image data: stb inflates it */
        } else if (memcmp(type, "PLTE", 4) == 0) {
            if (clen == 0 || clen % 3 != 0 || clen > 256 * 3)
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: invalid PLTE chunk");
            lay->plte_off = body;
            lay->plte_len = clen;
        } else if (memcmp(type, "tRNS", 4) == 0) {
            lay->trns_type_off = pos + 4;
        } else if (memcmp(type, "IHDR", 4) != 0 && (type[0] & 0x20) == 0) {
            return image_fail(IMAGE_ERR_DECODE, err, errlen,
                              "png: unknown critical chunk %.4s", (const char *)type);
        }
        pos = body + clen + 4; /* body + CRC */
    }
    if (!idat_seen)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: no image data (IDAT)");
    if (lay->color_type == 3 && lay->plte_len == 0)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: palette image without PLTE");
    return IMAGE_OK;
}

image_status image_png_decode(const uint8_t *data, size_t len, const image_header *hdr, image *out,
                              char *err, size_t errlen)
{
    if (len > INT_MAX)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: file too large for the decoder");
    png_layout lay;
    image_status st = png_walk(data, len, &lay, err, errlen);
    if (st != IMAGE_OK)
        return st;

    /* The largest legitimate allocations: the inflated scanlines (16-bit RGBA plus a filter byte
     * per row and per interlace pass), the 8-bit result, and the concatenated IDAT data. */
    uint64_t cap = (uint64_t)hdr->width * hdr->height * 8u + (uint64_t)hdr->height * 16u +
                   2u * (uint64_t)len + 65536u;
    if (cap > SIZE_MAX)
        return image_fail(IMAGE_ERR_NO_MEMORY, err, errlen, "png: image too large");

    int is_palette = hdr->mode == IMAGE_MODE_P;
    uint8_t *copy = NULL;
    const uint8_t *src = data;
    if (is_palette) {
        copy = malloc(len);
        if (!copy)
            return IMAGE_ERR_NO_MEMORY;
        memcpy(copy, data, len);
        copy[25] = 0; /* colour type: grey, so stb returns the indices */
        if (lay.trns_type_off)
            copy[lay.trns_type_off] = 'x'; /* "xRNS": ancillary and unknown, skipped by stb */
        src = copy;
    }
    int channels = image_mode_channels(hdr->mode);
    int req = is_palette ? 1 : channels;
    int w = 0, h = 0;
    const char *why = NULL;
    uint8_t *pixels = image_stb_load_png(src, len, req, (size_t)cap, &w, &h, &why);
    free(copy);
    if (!pixels)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: %s", why ? why : "corrupt data");
    if ((uint32_t)w != hdr->width || (uint32_t)h != hdr->height) {
        free(pixels);
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "png: size changed while decoding");
    }
    if (!is_palette) {
        out->width = hdr->width;
        out->height = hdr->height;
        out->channels = channels;
        out->mode = hdr->mode;
        out->pixels = pixels;
        return IMAGE_OK;
    }

    image_palette pal;
    image_palette_init_ramp(&pal);
    for (size_t i = 0; i < lay.plte_len / 3; i++)
        memcpy(pal.rgb[i], data + lay.plte_off + 3 * i, 3);
    /* stb scales low-bit-depth grey to 0..255; undo that to get the index back. */
    int scale = lay.depth == 1 ? 255 : lay.depth == 2 ? 85 : lay.depth == 4 ? 17 : 1;
    st = image_alloc(out, hdr->width, hdr->height, IMAGE_MODE_P);
    if (st != IMAGE_OK) {
        free(pixels);
        return st;
    }
    size_t n = (size_t)hdr->width * hdr->height;
    for (size_t i = 0; i < n; i++)
        memcpy(out->pixels + 3 * i, pal.rgb[pixels[i] / scale], 3);
    free(pixels);
    return IMAGE_OK;
}
