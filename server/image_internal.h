/*
 * image_internal.h - what the image_*.c files share; not part of the public contract (image.h).
 *
 * One file per concern:
 *   image.c         public API: format sniffing, limits, the pipeline, normalization
 *   image_jpeg.c    JPEG through libjpeg-turbo (bit-identical to Pillow, which uses the same library)
 *   image_png.c     PNG through stb_image (lossless, so any correct decoder matches Pillow)
 *   image_stb.c     stb_image itself (PNG only) with capped allocations
 *   image_bmp.c     BMP, our own reader: Pillow's mode rules and 16-bit/alpha quirks, which stb's
 *                   BMP reader does not follow
 *   image_gif.c     GIF first frame, our own LZW reader: Pillow keeps palette indices (a transparent
 *                   pixel shows its palette colour, the canvas outside the frame is index 0 or the
 *                   transparent index); stb composites to RGBA and loses both
 *   image_resize.c  Pillow's resize (antialiased bilinear / nearest) restricted to the center crop,
 *                   premultiplied alpha, and convert("RGB")
 *
 * Every function here is pure and thread safe. Decoders allocate out->pixels with malloc (the caller
 * frees it with image_free) and write a reason into err on failure.
 */
#ifndef CLOOB_IMAGE_INTERNAL_H
#define CLOOB_IMAGE_INTERNAL_H

#include <stdarg.h>

#include "image.h"

/* The largest output side image_resize_crop_rgb accepts (the model uses 224). */
#define IMAGE_MAX_OUTPUT_SIZE 4096

/* Header readers: fill format, mode, width and height; never allocate more than a few KB. */
image_status image_jpeg_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                              size_t errlen);
image_status image_png_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                             size_t errlen);
image_status image_bmp_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                             size_t errlen);
image_status image_gif_probe(const uint8_t *data, size_t len, image_header *out, char *err,
                             size_t errlen);

/* Decoders: called only after the probe succeeded and the limits were checked; hdr is the probe's
 * result (the decoder re-checks what it relies on). On failure out is left zeroed. */
image_status image_jpeg_decode(const uint8_t *data, size_t len, const image_header *hdr,
                               image *out, char *err, size_t errlen);
image_status image_png_decode(const uint8_t *data, size_t len, const image_header *hdr, image *out,
                              char *err, size_t errlen);
image_status image_bmp_decode(const uint8_t *data, size_t len, const image_header *hdr, image *out,
                              char *err, size_t errlen);
image_status image_gif_decode(const uint8_t *data, size_t len, const image_header *hdr, image *out,
                              char *err, size_t errlen);

/* stb_image's PNG decoder (image_stb.c) with every allocation capped at alloc_cap bytes. Returns
 * width*height*req_comp bytes (free with free()) or NULL with *why set to stb's reason. */
uint8_t *image_stb_load_png(const uint8_t *data, size_t len, int req_comp, size_t alloc_cap,
                            int *width, int *height, const char **why);

/*
 * The resize + crop + convert("RGB") of image_resize_crop_rgb as a row consumer, so a decoder can
 * stream scanlines into it (image_resize.c explains what it keeps). Push rows in increasing order;
 * rows it does not want are ignored (image_resizer_wants_row lets the caller skip producing them),
 * every row it wants must be pushed before finish. new() fails like image_resize_crop_rgb.
 */
typedef struct image_resizer image_resizer;
image_status image_resizer_new(image_resizer **out, uint32_t width, uint32_t height,
                               image_mode mode, int size);
int image_resizer_wants_row(const image_resizer *r, uint32_t y);
void image_resizer_push_row(image_resizer *r, uint32_t y, const uint8_t *row);
image_status image_resizer_finish(image_resizer *r, uint8_t *out_rgb); /* size*size*3 bytes */
void image_resizer_free(image_resizer *r);

/* image_jpeg_decode without the whole image: every scanline goes to the resizer (rows it does not
 * want are still decoded, so truncation anywhere is detected as Pillow detects it). */
image_status image_jpeg_decode_into(const uint8_t *data, size_t len, const image_header *hdr,
                                    image_resizer *rz, char *err, size_t errlen);

/* Test hook: on != 0 makes the resize use its scalar kernels instead of AVX2 (same results; the
 * parity tests check both). Process-wide; do not call while other threads resize. */
void image_resize_force_scalar(int on);

/* Bytes per pixel of a decoded image in that mode (see struct image). */
int image_mode_channels(image_mode mode);

/* Allocates out->pixels for width x height in mode (uninitialised). IMAGE_ERR_NO_MEMORY on failure
 * or if the size does not fit size_t. */
image_status image_alloc(image *out, uint32_t width, uint32_t height, image_mode mode);

/* snprintf into err when err is not NULL; returns status so callers can `return image_fail(...)`. */
image_status image_fail(image_status status, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Pillow's palette: 256 RGB entries; entries the file does not define are the grey ramp (i,i,i),
 * which is what Pillow shows for an out-of-range index. */
typedef struct image_palette {
    uint8_t rgb[256][3];
} image_palette;
void image_palette_init_ramp(image_palette *p);

#endif /* CLOOB_IMAGE_INTERNAL_H */
