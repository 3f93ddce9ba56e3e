/*
 * image.h - decode an encoded image and turn it into the model's input, exactly as
 * torchvision + Pillow 9 do (SPEC.md section 5).
 *
 * JPEG goes through libjpeg-turbo (bit-identical to Pillow), PNG/BMP/GIF through stb_image.
 * Every function here is pure and thread safe (no globals); the worker pool calls them
 * concurrently. Memory: all allocations are bounded by the pixel limit checked from the header
 * before any pixel is decoded.
 */
#ifndef CLOOB_IMAGE_H
#define CLOOB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef enum image_status {
    IMAGE_OK = 0,
    IMAGE_ERR_UNSUPPORTED = 1, /* not JPEG/PNG/BMP/GIF (e.g. WebP, text): HTTP 415 */
    IMAGE_ERR_DECODE = 2,      /* recognised format but corrupt / truncated / zero-sized: 422 */
    IMAGE_ERR_TOO_LARGE = 3,   /* header says width*height > max_pixels (or a side > max_side): 422 */
    IMAGE_ERR_NO_MEMORY = 4,   /* allocation failed: 500 */
    IMAGE_ERR_ARGUMENT = 5     /* bad call (NULL pointer, bad size): 500 */
} image_status;

typedef enum image_format {
    IMAGE_FORMAT_UNKNOWN = 0,
    IMAGE_FORMAT_JPEG,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_BMP,
    IMAGE_FORMAT_GIF
} image_format;

/* Pillow's mode as the image would be opened: it decides how it is resized and converted. */
typedef enum image_mode {
    IMAGE_MODE_L = 1,    /* grayscale: resized as one channel */
    IMAGE_MODE_LA,       /* gray + alpha: resized premultiplied, alpha dropped */
    IMAGE_MODE_RGB,
    IMAGE_MODE_RGBA,     /* resized premultiplied, alpha dropped (no compositing) */
    IMAGE_MODE_P,        /* palette: resized with NEAREST (here: on expanded colours, same result) */
    IMAGE_MODE_CMYK,     /* JPEG CMYK: resized in CMYK, converted to RGB as Pillow does */
    IMAGE_MODE_1         /* bilevel (1-bit grey PNG, black/white BMP): resized with NEAREST;
                            stored as one byte per pixel, 0 or 255 */
} image_mode;

const char *image_format_name(image_format f); /* "jpeg", "png", ... ; never NULL */
const char *image_status_message(image_status s);

typedef struct image_limits {
    uint64_t max_pixels; /* refuse width*height above this before decoding (default 50e6) */
    uint32_t max_side;   /* refuse any side above this (default 32768) */
} image_limits;

image_limits image_default_limits(void);

typedef struct image_header {
    image_format format;
    image_mode mode;
    uint32_t width, height;
} image_header;

/* Reads only the header: format, mode and size. Does not check limits. */
image_status image_probe(const uint8_t *data, size_t len, image_header *out);

/* A decoded image in its Pillow mode, tightly packed rows. channels: L=1, LA=2, RGB=3, RGBA=4,
 * P=3 (palette expanded to RGB: NEAREST resizing then gives Pillow's result), CMYK=4, 1=1.
 * Owned by the caller: free with image_free(). */
typedef struct image {
    uint32_t width, height;
    int channels;
    image_mode mode;
    uint8_t *pixels;
} image;

image_status image_decode(const uint8_t *data, size_t len, const image_limits *limits,
                          image *out, char *err, size_t errlen);
void image_free(image *img); /* frees pixels, zeroes the struct; safe on a zeroed struct */

/*
 * Resize (short side -> size, torchvision rule, Pillow antialiased BILINEAR, or NEAREST for P),
 * center-crop to size x size (round half to even), convert to RGB as Pillow's convert("RGB").
 * out_rgb: caller buffer of size*size*3 bytes, HWC.
 */
image_status image_resize_crop_rgb(const image *img, int size, uint8_t *out_rgb);

/* HWC uint8 RGB -> CHW float32 ((x/255 - mean) / std). out: 3*size*size floats. */
void image_normalize_chw(const uint8_t *rgb, int size, const float mean[3], const float std[3],
                         float *out);

/* The whole pipeline: decode + resize/crop + normalize into out (3*size*size floats). */
image_status image_preprocess(const uint8_t *data, size_t len, const image_limits *limits,
                              int size, const float mean[3], const float std[3], float *out,
                              char *err, size_t errlen);

#endif /* CLOOB_IMAGE_H */
