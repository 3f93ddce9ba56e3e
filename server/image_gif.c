/*
 * image_gif.c - the first frame of a GIF, read the way Pillow 9.4 reads it (GifImagePlugin.py,
 * GifDecode.c), so that resizing and convert("RGB") see the same pixels:
 *
 *   - The image is Pillow mode P, keeping palette indices: a pixel with the transparent index
 *     shows that palette entry's colour after convert("RGB") (stb_image composites to RGBA
 *     instead and loses it). A palette that is exactly the grey ramp (i,i,i) is dropped and the
 *     image is mode L (resized bilinear, not nearest); so is a GIF without any colour table.
 *     The frame's palette is its local table if it has one, else the global one; entries past the
 *     table are the grey ramp, as in Pillow.
 *   - The canvas is the logical screen, grown to hold the frame if it sticks out. Outside the
 *     frame it holds the transparent index if the frame has one, else index 0.
 *   - LZW: Pillow's decoder (code sizes up to 12, deferred clear, "code == next" allowed). It stops
 *     as soon as the frame is full and ignores what follows; a stream that ends earlier (an end
 *     code, or the end of the file) is "image file is truncated" there, and is refused here.
 */
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

#define GIF_TABLE 4096 /* LZW codes are at most 12 bits */

typedef struct gif_info {
    uint32_t canvas_w, canvas_h;
    uint32_t x0, y0, fw, fh; /* the frame rectangle */
    int interlace;
    int transparency;        /* transparent index, -1 if none */
    int lzw_bits;            /* LZW minimum code size */
    size_t data_off;         /* first data sub-block */
    const uint8_t *palette;  /* frame palette (RGB triplets), NULL: mode L */
    int palette_entries;
    image_mode mode;
} gif_info;

typedef struct gif_reader {
    const uint8_t *d;
    size_t len, pos;
} gif_reader;

static int gif_byte(gif_reader *r)
{
    return r->pos < r->len ? r->d[r->pos++] : -1;
}

static uint16_t gif_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

/* Skips data sub-blocks up to and including the zero-length terminator. */
static int gif_skip_blocks(gif_reader *r)
{
    for (;;) {
        int n = gif_byte(r);
        if (n < 0)
            return 0;
        if (n == 0)
            return 1;
        if (r->len - r->pos < (size_t)n)
            return 0;
        r->pos += (size_t)n;
    }
}

/* Pillow's _is_palette_needed(): a table that is exactly the grey ramp is no palette at all. */
static int gif_palette_needed(const uint8_t *p, int entries)
{
    for (int i = 0; i < entries; i++)
        if (p[3 * i] != i || p[3 * i + 1] != i || p[3 * i + 2] != i)
            return 1;
    return 0;
}

static image_status gif_parse(const uint8_t *d, size_t len, gif_info *gi, char *err, size_t errlen)
{
    memset(gi, 0, sizeof *gi);
    gi->transparency = -1;
    if (len < 13)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: file is truncated");
    uint32_t screen_w = gif_le16(d + 6), screen_h = gif_le16(d + 8);
    gif_reader r = {d, len, 13};
    const uint8_t *global = NULL;
    int global_entries = 0;
    if (d[10] & 0x80) {
        global_entries = 2 << (d[10] & 7);
        if (len - r.pos < (size_t)global_entries * 3)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: truncated colour table");
        global = d + r.pos;
        r.pos += (size_t)global_entries * 3;
        if (!gif_palette_needed(global, global_entries))
            global = NULL;
    }

    for (;;) {
        int c = gif_byte(&r);
        if (c < 0 || c == ';')
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: no image in the file");
        if (c == '!') {
            int label = gif_byte(&r);
            if (label < 0)
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: file is truncated");
            if (label == 0xF9) { /* graphic control extension: transparency */
                int n = gif_byte(&r);
                if (n < 4 || len - r.pos < (size_t)n)
                    return image_fail(IMAGE_ERR_DECODE, err, errlen,
                                      "gif: bad graphic control extension");
                if (d[r.pos] & 1)
                    gi->transparency = d[r.pos + 3];
                r.pos += (size_t)n;
            }
            if (!gif_skip_blocks(&r))
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: truncated extension");
            continue;
        }
        if (c != ',')
            continue; /* Pillow skips stray bytes between blocks */

        if (len - r.pos < 9)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: truncated image descriptor");
        const uint8_t *desc = d + r.pos;
        r.pos += 9;
        gi->x0 = gif_le16(desc);
        gi->y0 = gif_le16(desc + 2);
        gi->fw = gif_le16(desc + 4);
        gi->fh = gif_le16(desc + 6);
        gi->interlace = (desc[8] & 0x40) != 0;
        const uint8_t *local = NULL;
        int local_entries = 0, has_local = (desc[8] & 0x80) != 0;
        if (has_local) {
            local_entries = 2 << (desc[8] & 7);
            if (len - r.pos < (size_t)local_entries * 3)
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: truncated colour table");
            local = d + r.pos;
            r.pos += (size_t)local_entries * 3;
        }
        int bits = gif_byte(&r);
        if (bits < 0)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: file is truncated");
        if (bits > 12)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: bad LZW code size %d", bits);
        gi->lzw_bits = bits;
        gi->data_off = r.pos;
        if (has_local) {
            if (gif_palette_needed(local, local_entries)) {
                gi->palette = local;
                gi->palette_entries = local_entries;
            }
        } else if (global) {
            gi->palette = global;
            gi->palette_entries = global_entries;
        }
        break;
    }
    if (gi->fw == 0 || gi->fh == 0)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: zero-sized frame");
    gi->canvas_w = screen_w > gi->x0 + gi->fw ? screen_w : gi->x0 + gi->fw;
    gi->canvas_h = screen_h > gi->y0 + gi->fh ? screen_h : gi->y0 + gi->fh;
    gi->mode = gi->palette ? IMAGE_MODE_P : IMAGE_MODE_L;
    return IMAGE_OK;
}

image_status image_gif_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                             size_t errlen)
{
    gif_info gi;
    image_status st = gif_parse(data, len, &gi, err, errlen);
    if (st != IMAGE_OK)
        return st;
    out->format = IMAGE_FORMAT_GIF;
    out->mode = gi.mode;
    out->width = gi.canvas_w;
    out->height = gi.canvas_h;
    return IMAGE_OK;
}

/* ---- LZW, following Pillow's GifDecode.c step by step ----------------------------------- */

typedef struct gif_lzw {
    gif_reader in;
    int block_left;          /* bytes left in the current data sub-block */
    uint32_t bitbuf;
    int bitcount;
    int clear, end, next, codesize, codemask;
    int lastcode, lastdata;
    uint8_t data[GIF_TABLE]; /* last byte of each code's string */
    uint16_t link[GIF_TABLE]; /* the code of the string without that byte */
    uint8_t stack[GIF_TABLE]; /* a string, built from its end */
} gif_lzw;

/* Next code, or -1 when the data runs out. Like Pillow, a zero-length sub-block does not end the
 * data: the next byte is read as another sub-block length (only the end of the file, or a block
 * longer than what is left, stops it). */
static int gif_lzw_code(gif_lzw *z)
{
    while (z->bitcount < z->codesize) {
        while (z->block_left == 0) {
            int n = gif_byte(&z->in);
            if (n < 0 || z->in.len - z->in.pos < (size_t)n)
                return -1;
            z->block_left = n;
        }
        z->bitbuf |= (uint32_t)z->in.d[z->in.pos++] << z->bitcount;
        z->bitcount += 8;
        z->block_left--;
    }
    int c = (int)(z->bitbuf & (uint32_t)z->codemask);
    z->bitbuf >>= z->codesize;
    z->bitcount -= z->codesize;
    return c;
}

/* Where decoded indices go: the frame rectangle inside the canvas, rows in interlace order. */
typedef struct gif_cursor {
    uint8_t *canvas;
    size_t canvas_w;
    uint32_t x0, y0, w, h;
    uint32_t x, y;
    int pass, step; /* interlace: pass 1..4, 0 when not interlaced */
    int done;
} gif_cursor;

static void gif_put(gif_cursor *cur, uint8_t v)
{
    cur->canvas[(size_t)(cur->y0 + cur->y) * cur->canvas_w + cur->x0 + cur->x] = v;
    if (++cur->x < cur->w)
        return;
    cur->x = 0;
    cur->y += (uint32_t)cur->step;
    while (cur->y >= cur->h) {
        switch (cur->pass) {
        case 1: cur->y = 4; cur->pass = 2; break;
        case 2: cur->step = 4; cur->y = 2; cur->pass = 3; break;
        case 3: cur->step = 2; cur->y = 1; cur->pass = 4; break;
        default: cur->done = 1; return;
        }
    }
}

static image_status gif_lzw_decode(gif_lzw *z, int bits, gif_cursor *cur, char *err, size_t errlen)
{
    z->clear = 1 << bits;
    z->end = z->clear + 1;
    int state = 1; /* 1: reset table, 2: first code after a clear, 3: normal */
    while (!cur->done) {
        if (state == 1) {
            z->next = z->clear + 2;
            z->codesize = bits + 1;
            z->codemask = (1 << z->codesize) - 1;
            state = 2;
        }
        int c = gif_lzw_code(z);
        if (c < 0 || c == z->end)
            return image_fail(IMAGE_ERR_DECODE, err, errlen,
                              "gif: image file is truncated (image data ends early)");
        if (c == z->clear) {
            if (state != 2)
                state = 1;
            continue;
        }
        if (state == 2) {
            if (c > z->clear)
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: corrupt LZW data");
            z->lastdata = z->lastcode = c;
            state = 3;
            gif_put(cur, (uint8_t)c);
            continue;
        }
        int thiscode = c;
        if (c > z->next)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: corrupt LZW data");
        int top = GIF_TABLE;
        if (c == z->next) {
            z->stack[--top] = (uint8_t)z->lastdata;
            c = z->lastcode;
        }
        while (c >= z->clear) {
            if (top <= 0 || c >= GIF_TABLE)
                return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: corrupt LZW data");
            z->stack[--top] = z->data[c];
            c = z->link[c];
        }
        z->lastdata = c;
        if (z->next < GIF_TABLE) {
            z->data[z->next] = (uint8_t)c;
            z->link[z->next] = (uint16_t)z->lastcode;
            if (z->next == z->codemask && z->codesize < 12) {
                z->codesize++;
                z->codemask = (1 << z->codesize) - 1;
            }
            z->next++;
        }
        z->lastcode = thiscode;
        gif_put(cur, (uint8_t)c);
        for (int i = top; i < GIF_TABLE && !cur->done; i++)
            gif_put(cur, z->stack[i]);
    }
    return IMAGE_OK;
}

image_status image_gif_decode(const uint8_t *data, size_t len, const image_header *hdr, image *out,
                              char *err, size_t errlen)
{
    gif_info gi;
    image_status st = gif_parse(data, len, &gi, err, errlen);
    if (st != IMAGE_OK)
        return st;
    if (gi.mode != hdr->mode || gi.canvas_w != hdr->width || gi.canvas_h != hdr->height)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "gif: header changed between reads");

    size_t npix = (size_t)gi.canvas_w * gi.canvas_h;
    uint8_t *indices = malloc(npix);
    gif_lzw *z = malloc(sizeof *z);
    if (!indices || !z) {
        free(indices);
        free(z);
        return IMAGE_ERR_NO_MEMORY;
    }
    memset(indices, gi.transparency >= 0 ? gi.transparency : 0, npix);
    memset(z, 0, sizeof *z);
    z->in = (gif_reader){data, len, gi.data_off};
    gif_cursor cur = {.canvas = indices, .canvas_w = gi.canvas_w, .x0 = gi.x0, .y0 = gi.y0,
                      .w = gi.fw, .h = gi.fh, .pass = gi.interlace ? 1 : 0,
                      .step = gi.interlace ? 8 : 1};
    st = gif_lzw_decode(z, gi.lzw_bits, &cur, err, errlen);
    free(z);
    if (st != IMAGE_OK) {
        free(indices);
        return st;
    }
    if (gi.mode == IMAGE_MODE_L) {
        out->width = gi.canvas_w;
        out->height = gi.canvas_h;
        out->channels = 1;
        out->mode = IMAGE_MODE_L;
        out->pixels = indices;
        return IMAGE_OK;
    }
    image_palette pal;
    image_palette_init_ramp(&pal);
    memcpy(pal.rgb, gi.palette, (size_t)gi.palette_entries * 3);
    st = image_alloc(out, gi.canvas_w, gi.canvas_h, IMAGE_MODE_P);
    if (st == IMAGE_OK)
        for (size_t i = 0; i < npix; i++)
            memcpy(out->pixels + 3 * i, pal.rgb[indices[i]], 3);
    free(indices);
    return st;
}
