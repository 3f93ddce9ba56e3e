/*
 * image_jpeg.c - JPEG through the libjpeg API of libjpeg62-turbo, at the settings Pillow 9 uses
 * (ISLOW IDCT, fancy upsampling, no DCT scaling), so the pixels are bit-identical to
 * PIL.Image.open(...).load() - Pillow links the very same library.
 *
 * Pillow's choices that we copy (JpegImagePlugin.py, JpegDecode.c):
 *   - 1 component -> mode L (out_color_space GRAYSCALE), 3 -> RGB (libjpeg guesses YCbCr or RGB
 *     from JFIF/Adobe markers, as Pillow lets it), 4 -> CMYK (out_color_space CMYK: libjpeg turns
 *     YCCK into CMYK); Pillow always reads CMYK as "CMYK;I", i.e. Adobe's inverted convention,
 *     so every CMYK byte is inverted after decoding. Any other component count is refused, as in
 *     Pillow's SOF handler.
 *   - A truncated file: Pillow's suspending source makes libjpeg stop and Pillow raises "image file
 *     is truncated". libjpeg's memory source instead warns (JWRN_JPEG_EOF) and invents an EOI; we
 *     turn exactly that warning into IMAGE_ERR_DECODE. Other libjpeg warnings (e.g. extraneous
 *     bytes before a marker) are ignored, as Pillow ignores them.
 *   - Pillow stops once every scanline is read and ignores what follows (it accepts a file with a
 *     missing EOI), so we never call jpeg_finish_decompress.
 * image_jpeg_decode_into streams the scanlines into a resizer instead of a whole image: the
 * pipeline then holds 8 decoded rows, not width*height*3 bytes (libjpeg itself still buffers the
 * coefficients of a progressive file).
 * One defence Pillow lacks: more than JPEG_MAX_SCANS progressive scans is refused (a few KB of
 * scans can otherwise cost seconds of CPU per request).
 *
 * libjpeg reports errors through error_exit, which must not return: we longjmp back to the
 * function that called setjmp. Locals changed after setjmp are volatile.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "image_internal.h"

#define JPEG_MAX_SCANS 1000

typedef struct jpeg_guard {
    struct jpeg_error_mgr pub; /* must be first: libjpeg hands us a pointer to it */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} jpeg_guard;

/* libjpeg calls this for fatal errors; it must not return. */
static void jpeg_guard_error_exit(j_common_ptr cinfo)
{
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    g->pub.format_message(cinfo, g->message);
    longjmp(g->jump, 1);
}

/* Warnings (msg_level -1) and trace messages (>= 0). Only "premature end of data" is fatal. */
static void jpeg_guard_emit_message(j_common_ptr cinfo, int msg_level)
{
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    if (msg_level < 0 && g->pub.msg_code == JWRN_JPEG_EOF) {
        snprintf(g->message, sizeof g->message, "image file is truncated");
        longjmp(g->jump, 1);
    }
}

static void jpeg_guard_progress(j_common_ptr cinfo)
{
    if (!cinfo->is_decompressor)
        return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_guard *g = (jpeg_guard *)cinfo->err;
        snprintf(g->message, sizeof g->message, "more than %d progressive scans",
                 JPEG_MAX_SCANS);
        longjmp(g->jump, 1);
    }
}

static void jpeg_guard_init(jpeg_guard *g, struct jpeg_decompress_struct *cinfo)
{
    memset(g, 0, sizeof *g);
    cinfo->err = jpeg_std_error(&g->pub);
    g->pub.error_exit = jpeg_guard_error_exit;
    g->pub.emit_message = jpeg_guard_emit_message;
    g->progress.progress_monitor = jpeg_guard_progress;
}

/* Call after jpeg_create_decompress (which resets cinfo->progress). */
static void jpeg_guard_attach(jpeg_guard *g, struct jpeg_decompress_struct *cinfo,
                              const uint8_t *data, size_t len)
{
    cinfo->progress = &g->progress;
    jpeg_mem_src(cinfo, data, (unsigned long)len);
}

static image_status jpeg_mode_of(const struct jpeg_decompress_struct *cinfo, image_mode *mode,
                                 J_COLOR_SPACE *out_space, char *err, size_t errlen)
{
    switch (cinfo->num_components) {
    case 1: *mode = IMAGE_MODE_L; *out_space = JCS_GRAYSCALE; return IMAGE_OK;
    case 3: *mode = IMAGE_MODE_RGB; *out_space = JCS_RGB; return IMAGE_OK;
    case 4: *mode = IMAGE_MODE_CMYK; *out_space = JCS_CMYK; return IMAGE_OK;
    default: break;
    }
    return image_fail(IMAGE_ERR_DECODE, err, errlen, "jpeg: cannot handle %d-component images",
                      cinfo->num_components);
}

/*
 * The *_body functions do the libjpeg work; the exported functions only own the setjmp. A libjpeg
 * error longjmps out of the body (whose locals are then gone), so no local variable of a function
 * that called setjmp is ever changed after it - the rule that keeps longjmp well defined.
 */
static image_status jpeg_probe_body(struct jpeg_decompress_struct *cinfo, image_header *out,
                                    char *err, size_t errlen)
{
    jpeg_read_header(cinfo, TRUE);
    image_mode mode = IMAGE_MODE_RGB;
    J_COLOR_SPACE space = JCS_RGB;
    image_status st = jpeg_mode_of(cinfo, &mode, &space, err, errlen);
    if (st != IMAGE_OK)
        return st;
    if (cinfo->image_width == 0 || cinfo->image_height == 0)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "jpeg: zero-sized image");
    out->format = IMAGE_FORMAT_JPEG;
    out->mode = mode;
    out->width = cinfo->image_width;
    out->height = cinfo->image_height;
    return IMAGE_OK;
}

image_status image_jpeg_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                              size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    jpeg_guard_init(&guard, &cinfo);
    if (setjmp(guard.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "jpeg: %s", guard.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_guard_attach(&guard, &cinfo, data, len);
    image_status st = jpeg_probe_body(&cinfo, out, err, errlen);
    jpeg_destroy_decompress(&cinfo);
    return st;
}

/*
 * Decodes every scanline (Pillow reads them all, so a file truncated anywhere is refused) into
 * `out` when it is not NULL, else into `rows` (JPEG_ROWS rows of width*channels bytes, owned by
 * the caller so nothing leaks on a longjmp) and from there into the resizer `rz`.
 */
#define JPEG_ROWS 8

static image_status jpeg_decode_body(struct jpeg_decompress_struct *cinfo,
                                     const image_header *hdr, image *out, image_resizer *rz,
                                     uint8_t *rows_buf, char *err, size_t errlen)
{
    jpeg_read_header(cinfo, TRUE);
    image_mode mode = IMAGE_MODE_RGB;
    J_COLOR_SPACE space = JCS_RGB;
    image_status st = jpeg_mode_of(cinfo, &mode, &space, err, errlen);
    if (st != IMAGE_OK)
        return st;
    if (mode != hdr->mode || cinfo->image_width != hdr->width ||
        cinfo->image_height != hdr->height)
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "jpeg: header changed between reads");
    /* Pillow's defaults, spelled out: they are what makes the output bit-identical. */
    cinfo->out_color_space = space;
    cinfo->dct_method = JDCT_ISLOW;
    cinfo->do_fancy_upsampling = TRUE;
    cinfo->scale_num = 1;
    cinfo->scale_denom = 1;

    jpeg_start_decompress(cinfo);
    int channels = image_mode_channels(mode);
    if (cinfo->output_width != hdr->width || cinfo->output_height != hdr->height ||
        cinfo->output_components != channels)
        return image_fail(IMAGE_ERR_DECODE, err, errlen,
                          "jpeg: decoder output %ux%ux%d does not match the header",
                          cinfo->output_width, cinfo->output_height, cinfo->output_components);
    if (out) {
        st = image_alloc(out, hdr->width, hdr->height, mode);
        if (st != IMAGE_OK)
            return st;
    }
    size_t stride = (size_t)hdr->width * (size_t)channels;
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW rows[JPEG_ROWS];
        JDIMENSION first = cinfo->output_scanline;
        JDIMENSION want = cinfo->output_height - first;
        if (want > JPEG_ROWS)
            want = JPEG_ROWS;
        uint8_t *base = out ? out->pixels + (size_t)first * stride : rows_buf;
        for (JDIMENSION i = 0; i < want; i++)
            rows[i] = base + (size_t)i * stride;
        /* With a memory source libjpeg never suspends, so 0 rows means it gave up. */
        JDIMENSION got = jpeg_read_scanlines(cinfo, rows, want);
        if (got == 0)
            return image_fail(IMAGE_ERR_DECODE, err, errlen, "jpeg: no data at scanline %u",
                              first);
        for (JDIMENSION i = 0; i < got; i++) {
            if (mode == IMAGE_MODE_CMYK) /* Pillow's "CMYK;I" */
                for (size_t b = 0; b < stride; b++)
                    rows[i][b] = (uint8_t)~rows[i][b];
            if (rz)
                image_resizer_push_row(rz, first + i, rows[i]);
        }
    }
    return IMAGE_OK;
}

/* One setjmp for both entry points: exactly one of out / rz is used. */
static image_status jpeg_decode_guarded(const uint8_t *data, size_t len, const image_header *hdr,
                                        image *out, image_resizer *rz, uint8_t *rows_buf,
                                        char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    jpeg_guard_init(&guard, &cinfo);
    if (setjmp(guard.jump)) {
        jpeg_destroy_decompress(&cinfo);
        if (out)
            image_free(out); /* the body may have allocated it before libjpeg failed */
        return image_fail(IMAGE_ERR_DECODE, err, errlen, "jpeg: %s", guard.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_guard_attach(&guard, &cinfo, data, len);
    image_status st = jpeg_decode_body(&cinfo, hdr, out, rz, rows_buf, err, errlen);
    jpeg_destroy_decompress(&cinfo); /* not jpeg_finish_decompress: see the top of the file */
    if (st != IMAGE_OK && out)
        image_free(out);
    return st;
}

image_status image_jpeg_decode(const uint8_t *data, size_t len, const image_header *hdr,
                               image *out, char *err, size_t errlen)
{
    return jpeg_decode_guarded(data, len, hdr, out, NULL, NULL, err, errlen);
}

image_status image_jpeg_decode_into(const uint8_t *data, size_t len, const image_header *hdr,
                                    image_resizer *rz, char *err, size_t errlen)
{
    int channels = image_mode_channels(hdr->mode);
    uint8_t *rows_buf = malloc((size_t)JPEG_ROWS * hdr->width * (size_t)channels);
    if (!rows_buf)
        return image_fail(IMAGE_ERR_NO_MEMORY, err, errlen, "jpeg: out of memory");
    image_status st = jpeg_decode_guarded(data, len, hdr, NULL, rz, rows_buf, err, errlen);
    free(rows_buf);
    return st;
}
