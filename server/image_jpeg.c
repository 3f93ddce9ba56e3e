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
 *   - Running out of data: Pillow's suspending source makes libjpeg stop, and Pillow raises "image
 *     file is truncated" unless every scanline was already read. libjpeg's memory source instead
 *     warns (JWRN_JPEG_EOF) and invents an EOI. So that warning is an error until the last
 *     scanline, and the end of the decode after it.
 *   - After the last scanline Pillow calls jpeg_finish_decompress, which reads the rest of the
 *     file: a libjpeg error there (a corrupt marker after the image) fails the image; so here too.
 *   - Other libjpeg warnings (corrupt entropy data, extraneous bytes) are ignored, as Pillow does.
 * image_jpeg_decode_into streams the scanlines into a resizer instead of a whole image: the
 * pipeline then holds 8 decoded rows, not width*height*3 bytes (libjpeg itself still buffers the
 * coefficients of a progressive file).
 * One defence Pillow lacks: more than JPEG_MAX_SCANS progressive scans is refused (a few KB of
 * scans can otherwise cost seconds of CPU per request).
 *
 * libjpeg reports errors through error_exit, which must not return: we longjmp back to the
 * function that called setjmp (jpeg_run). Everything libjpeg and the handlers touch lives in a
 * jpeg_job owned by jpeg_run's caller, so no local of the setjmp function changes after setjmp.
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
    int finishing;             /* every scanline is read: running out of data ends the decode */
    int finished;              /* ... and it did: the image is complete */
    char message[JMSG_LENGTH_MAX];
} jpeg_guard;

/* libjpeg calls this for fatal errors; it must not return. */
static void jpeg_guard_error_exit(j_common_ptr cinfo)
{
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    g->pub.format_message(cinfo, g->message);
    longjmp(g->jump, 1);
}

/* Warnings (msg_level -1) and trace messages (>= 0). Only running out of data matters. */
static void jpeg_guard_emit_message(j_common_ptr cinfo, int msg_level)
{
    jpeg_guard *g = (jpeg_guard *)cinfo->err;
    if (msg_level < 0 && g->pub.msg_code == JWRN_JPEG_EOF) {
        g->finished = g->finishing;
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

/* The state of one decode; see the top of the file for why it is not a local of jpeg_run. */
typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    const image_header *hdr;  /* decode: what the probe saw */
    image_header *probed;     /* probe: filled from the header (and nothing is decoded) */
    image *out;               /* decode into a whole image, or */
    image_resizer *rz;        /* stream rows into a resizer through */
    uint8_t *rows_buf;        /* JPEG_ROWS rows, owned by the caller */
    char *err;
    size_t errlen;
} jpeg_job;

#define JPEG_ROWS 8

static image_status jpeg_read_mode(jpeg_job *job, image_mode *mode, J_COLOR_SPACE *space)
{
    jpeg_read_header(&job->cinfo, TRUE);
    image_status st = jpeg_mode_of(&job->cinfo, mode, space, job->err, job->errlen);
    if (st == IMAGE_OK && (job->cinfo.image_width == 0 || job->cinfo.image_height == 0))
        st = image_fail(IMAGE_ERR_DECODE, job->err, job->errlen, "jpeg: zero-sized image");
    return st;
}

/* Decodes every scanline into job->out or, through job->rows_buf, into job->rz. */
static image_status jpeg_decode_body(jpeg_job *job)
{
    struct jpeg_decompress_struct *cinfo = &job->cinfo;
    const image_header *hdr = job->hdr;
    image_mode mode = IMAGE_MODE_RGB;
    J_COLOR_SPACE space = JCS_RGB;
    image_status st = jpeg_read_mode(job, &mode, &space);
    if (st != IMAGE_OK)
        return st;
    if (mode != hdr->mode || cinfo->image_width != hdr->width ||
        cinfo->image_height != hdr->height)
        return image_fail(IMAGE_ERR_DECODE, job->err, job->errlen,
                          "jpeg: header changed between reads");
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
        return image_fail(IMAGE_ERR_DECODE, job->err, job->errlen,
                          "jpeg: decoder output %ux%ux%d does not match the header",
                          cinfo->output_width, cinfo->output_height, cinfo->output_components);
    if (job->out) {
        st = image_alloc(job->out, hdr->width, hdr->height, mode);
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
        uint8_t *base = job->out ? job->out->pixels + (size_t)first * stride : job->rows_buf;
        for (JDIMENSION i = 0; i < want; i++)
            rows[i] = base + (size_t)i * stride;
        /* With a memory source libjpeg never suspends, so 0 rows means it gave up. */
        JDIMENSION got = jpeg_read_scanlines(cinfo, rows, want);
        if (got == 0)
            return image_fail(IMAGE_ERR_DECODE, job->err, job->errlen,
                              "jpeg: no data at scanline %u", first);
        for (JDIMENSION i = 0; i < got; i++) {
            if (mode == IMAGE_MODE_CMYK) /* Pillow's "CMYK;I" */
                for (size_t b = 0; b < stride; b++)
                    rows[i][b] = (uint8_t)~rows[i][b];
            if (job->rz)
                image_resizer_push_row(job->rz, first + i, rows[i]);
        }
    }
    job->guard.finishing = 1;
    jpeg_finish_decompress(cinfo);
    return IMAGE_OK;
}

/* The one setjmp: runs a probe (job->probed) or a decode (job->out or job->rz). */
static image_status jpeg_run(jpeg_job *job, const uint8_t *data, size_t len)
{
    jpeg_guard_init(&job->guard, &job->cinfo);
    if (setjmp(job->guard.jump)) {
        jpeg_destroy_decompress(&job->cinfo);
        if (job->guard.finished)
            return IMAGE_OK; /* every scanline was read; the file just ends without an EOI */
        if (job->out)
            image_free(job->out); /* the body may have allocated it before libjpeg failed */
        return image_fail(IMAGE_ERR_DECODE, job->err, job->errlen, "jpeg: %s",
                          job->guard.message);
    }
    jpeg_create_decompress(&job->cinfo);
    jpeg_guard_attach(&job->guard, &job->cinfo, data, len);
    image_status st;
    if (job->probed) {
        image_mode mode = IMAGE_MODE_RGB;
        J_COLOR_SPACE space = JCS_RGB;
        st = jpeg_read_mode(job, &mode, &space);
        if (st == IMAGE_OK) {
            job->probed->format = IMAGE_FORMAT_JPEG;
            job->probed->mode = mode;
            job->probed->width = job->cinfo.image_width;
            job->probed->height = job->cinfo.image_height;
        }
    } else {
        st = jpeg_decode_body(job);
    }
    jpeg_destroy_decompress(&job->cinfo);
    if (st != IMAGE_OK && job->out)
        image_free(job->out);
    return st;
}

image_status image_jpeg_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                              size_t errlen)
{
    jpeg_job job = {.probed = out, .err = err, .errlen = errlen};
    return jpeg_run(&job, data, len);
}

image_status image_jpeg_decode(const uint8_t *data, size_t len, const image_header *hdr,
                               image *out, char *err, size_t errlen)
{
    jpeg_job job = {.hdr = hdr, .out = out, .err = err, .errlen = errlen};
    return jpeg_run(&job, data, len);
}

image_status image_jpeg_decode_into(const uint8_t *data, size_t len, const image_header *hdr,
                                    image_resizer *rz, char *err, size_t errlen)
{
    jpeg_job job = {.hdr = hdr, .rz = rz, .err = err, .errlen = errlen};
    job.rows_buf = malloc((size_t)JPEG_ROWS * hdr->width * (size_t)image_mode_channels(hdr->mode));
    if (!job.rows_buf)
        return image_fail(IMAGE_ERR_NO_MEMORY, err, errlen, "jpeg: out of memory");
    image_status st = jpeg_run(&job, data, len);
    free(job.rows_buf);
    return st;
}
