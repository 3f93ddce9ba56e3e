/*
 * image.c - the public face of the image module: format sniffing, size limits, the decode ->
 * resize/crop -> normalize pipeline. The format readers live in image_{jpeg,png,bmp,gif}.c, the
 * resampling in image_resize.c (see image_internal.h for why the work is split that way).
 *
 * Everything here runs on whichever worker thread calls it; there is no shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "image_internal.h"

const char *image_format_name(image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "jpeg";
    case IMAGE_FORMAT_PNG: return "png";
    case IMAGE_FORMAT_BMP: return "bmp";
    case IMAGE_FORMAT_GIF: return "gif";
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return "unknown";
}

const char *image_status_message(image_status s)
{
    switch (s) {
    case IMAGE_OK: return "ok";
    case IMAGE_ERR_UNSUPPORTED: return "unsupported image format (JPEG, PNG, BMP and GIF are accepted)";
    case IMAGE_ERR_DECODE: return "the image could not be decoded (corrupt, truncated or empty)";
    case IMAGE_ERR_TOO_LARGE: return "the image is larger than the configured pixel limit";
    case IMAGE_ERR_NO_MEMORY: return "out of memory while decoding the image";
    case IMAGE_ERR_ARGUMENT: return "internal error: bad argument to the image module";
    }
    return "unknown image status";
}

image_limits image_default_limits(void)
{
    image_limits l = {.max_pixels = 50000000u, .max_side = 32768u};
    return l;
}

image_status image_fail(image_status status, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

int image_mode_channels(image_mode mode)
{
    switch (mode) {
    case IMAGE_MODE_L: return 1;
    case IMAGE_MODE_1: return 1;
    case IMAGE_MODE_LA: return 2;
    case IMAGE_MODE_RGB: return 3;
    case IMAGE_MODE_P: return 3;
    case IMAGE_MODE_RGBA: return 4;
    case IMAGE_MODE_CMYK: return 4;
    }
    return 0;
}

image_status image_alloc(image *out, uint32_t width, uint32_t height, image_mode mode)
{
    int channels = image_mode_channels(mode);
    if (channels == 0 || width == 0 || height == 0)
        return IMAGE_ERR_ARGUMENT;
    uint64_t bytes = (uint64_t)width * height * (uint64_t)channels;
    if (bytes > SIZE_MAX)
        return IMAGE_ERR_NO_MEMORY;
    uint8_t *pixels = malloc((size_t)bytes);
    if (!pixels)
        return IMAGE_ERR_NO_MEMORY;
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->mode = mode;
    out->pixels = pixels;
    return IMAGE_OK;
}

void image_palette_init_ramp(image_palette *p)
{
    for (int i = 0; i < 256; i++)
        p->rgb[i][0] = p->rgb[i][1] = p->rgb[i][2] = (uint8_t)i;
}

void image_free(image *img)
{
    if (!img)
        return;
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

/* The format is decided by the leading bytes only, as Pillow's plugins' _accept() functions do. */
static image_format sniff_format(const uint8_t *d, size_t len)
{
    if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return IMAGE_FORMAT_JPEG;
    if (len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
        return IMAGE_FORMAT_PNG;
    if (len >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
        return IMAGE_FORMAT_GIF;
    if (len >= 2 && d[0] == 'B' && d[1] == 'M')
        return IMAGE_FORMAT_BMP;
    return IMAGE_FORMAT_UNKNOWN;
}

/* Names a few formats people actually send, so that the 415 message is useful. */
static const char *describe_unknown(const uint8_t *d, size_t len)
{
    if (len == 0)
        return "empty input";
    if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 4 && (memcmp(d, "II*\0", 4) == 0 || memcmp(d, "MM\0*", 4) == 0))
        return "TIFF";
    if (len >= 12 && memcmp(d + 4, "ftyp", 4) == 0)
        return "HEIF/AVIF (ISO media)";
    if (len >= 2 && d[0] == 0xFF && d[1] == 0xD8)
        return "JPEG without a marker after SOI";
    return "unrecognised data";
}

static image_status probe_with_reason(const uint8_t *data, size_t len, image_header *out, char *err,
                                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    image_format f = sniff_format(data, len);
    switch (f) {
    case IMAGE_FORMAT_JPEG: return image_jpeg_probe(data, len, out, err, errlen);
    case IMAGE_FORMAT_PNG: return image_png_probe(data, len, out, err, errlen);
    case IMAGE_FORMAT_BMP: return image_bmp_probe(data, len, out, err, errlen);
    case IMAGE_FORMAT_GIF: return image_gif_probe(data, len, out, err, errlen);
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    return image_fail(IMAGE_ERR_UNSUPPORTED, err, errlen,
                      "unsupported image format (%s); send JPEG, PNG, BMP or GIF",
                      describe_unknown(data, len));
}

image_status image_probe(const uint8_t *data, size_t len, image_header *out)
{
    if ((!data && len > 0) || !out)
        return IMAGE_ERR_ARGUMENT;
    return probe_with_reason(data, len, out, NULL, 0);
}

static image_status check_limits(const image_header *h, const image_limits *lim, char *err,
                                  size_t errlen)
{
    uint64_t pixels = (uint64_t)h->width * h->height;
    if (h->width > lim->max_side || h->height > lim->max_side)
        return image_fail(IMAGE_ERR_TOO_LARGE, err, errlen,
                          "%s image is %ux%u; the largest side allowed is %u pixels",
                          image_format_name(h->format), h->width, h->height, lim->max_side);
    if (pixels > lim->max_pixels)
        return image_fail(IMAGE_ERR_TOO_LARGE, err, errlen,
                          "%s image is %ux%u = %llu pixels; the limit is %llu",
                          image_format_name(h->format), h->width, h->height,
                          (unsigned long long)pixels, (unsigned long long)lim->max_pixels);
    return IMAGE_OK;
}

/* Probe with a reason, then the limits. Both public pipelines start here. */
static image_status probe_checked(const uint8_t *data, size_t len, const image_limits *limits,
                                  image_header *h, char *err, size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    if (!data && len > 0)
        return image_fail(IMAGE_ERR_ARGUMENT, err, errlen, "image: NULL data");
    image_limits lim = limits ? *limits : image_default_limits();
    image_status st = probe_with_reason(data, len, h, err, errlen);
    if (st != IMAGE_OK)
        return st;
    return check_limits(h, &lim, err, errlen);
}

/* Runs the decoder for a probed, limit-checked header. */
static image_status decode_probed(const uint8_t *data, size_t len, const image_header *h,
                                  image *out, char *err, size_t errlen)
{
    image_status st = IMAGE_ERR_ARGUMENT;
    switch (h->format) {
    case IMAGE_FORMAT_JPEG: st = image_jpeg_decode(data, len, h, out, err, errlen); break;
    case IMAGE_FORMAT_PNG: st = image_png_decode(data, len, h, out, err, errlen); break;
    case IMAGE_FORMAT_BMP: st = image_bmp_decode(data, len, h, out, err, errlen); break;
    case IMAGE_FORMAT_GIF: st = image_gif_decode(data, len, h, out, err, errlen); break;
    case IMAGE_FORMAT_UNKNOWN: break;
    }
    if (st != IMAGE_OK) {
        image_free(out);
        if (st == IMAGE_ERR_NO_MEMORY && err && errlen > 0 && err[0] == '\0')
            image_fail(st, err, errlen, "out of memory decoding a %ux%u %s image", h->width,
                       h->height, image_format_name(h->format));
        return st;
    }
    /* A decoder that disagrees with its own header would break every size computation after. */
    if (out->width != h->width || out->height != h->height || out->mode != h->mode ||
        out->channels != image_mode_channels(h->mode)) {
        image_free(out);
        return image_fail(IMAGE_ERR_DECODE, err, errlen,
                          "%s decoder returned a different size or mode than its header",
                          image_format_name(h->format));
    }
    return IMAGE_OK;
}

image_status image_decode(const uint8_t *data, size_t len, const image_limits *limits, image *out,
                          char *err, size_t errlen)
{
    if (!out)
        return image_fail(IMAGE_ERR_ARGUMENT, err, errlen, "image_decode: NULL output");
    memset(out, 0, sizeof *out);
    image_header h;
    image_status st = probe_checked(data, len, limits, &h, err, errlen);
    if (st != IMAGE_OK)
        return st;
    return decode_probed(data, len, &h, out, err, errlen);
}

void image_normalize_chw(const uint8_t *rgb, int size, const float mean[3], const float std[3],
                         float *out)
{
    /* torchvision: ToTensor is u8 / 255 in float32, Normalize is (x - mean) / std in float32.
     * A 256-entry table per channel gives the very same floats and saves two divisions a value. */
    size_t plane = (size_t)size * (size_t)size;
    for (int c = 0; c < 3; c++) {
        float lut[256];
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            lut[v] = (x - mean[c]) / std[c];
        }
        float *dst = out + (size_t)c * plane;
        const uint8_t *src = rgb + c;
        for (size_t i = 0; i < plane; i++)
            dst[i] = lut[src[i * 3]];
    }
}

/* JPEG streams its scanlines into the resizer; the other formats decode whole, then resize. */
static image_status decode_resize(const uint8_t *data, size_t len, const image_limits *limits,
                                  int size, uint8_t *rgb, char *err, size_t errlen)
{
    image_header h;
    image_status st = probe_checked(data, len, limits, &h, err, errlen);
    if (st != IMAGE_OK)
        return st;
    if (h.format != IMAGE_FORMAT_JPEG) {
        image img;
        memset(&img, 0, sizeof img);
        st = decode_probed(data, len, &h, &img, err, errlen);
        if (st != IMAGE_OK)
            return st;
        st = image_resize_crop_rgb(&img, size, rgb);
        image_free(&img);
    } else {
        image_resizer *rz = NULL;
        st = image_resizer_new(&rz, h.width, h.height, h.mode, size);
        if (st == IMAGE_OK) {
            st = image_jpeg_decode_into(data, len, &h, rz, err, errlen);
            if (st != IMAGE_OK) {
                image_resizer_free(rz);
                return st;
            }
            st = image_resizer_finish(rz, rgb);
        }
        image_resizer_free(rz);
    }
    if (st != IMAGE_OK)
        image_fail(st, err, errlen, "resizing the %ux%u %s image failed: %s", h.width, h.height,
                   image_format_name(h.format), image_status_message(st));
    return st;
}

image_status image_preprocess(const uint8_t *data, size_t len, const image_limits *limits,
                              int size, const float mean[3], const float std[3], float *out,
                              char *err, size_t errlen)
{
    if (!mean || !std || !out || size < 1 || size > IMAGE_MAX_OUTPUT_SIZE)
        return image_fail(IMAGE_ERR_ARGUMENT, err, errlen,
                          "image_preprocess: bad argument (size %d)", size);
    uint8_t *rgb = malloc((size_t)size * (size_t)size * 3);
    if (!rgb)
        return image_fail(IMAGE_ERR_NO_MEMORY, err, errlen, "out of memory for the %dx%d crop",
                          size, size);
    image_status st = decode_resize(data, len, limits, size, rgb, err, errlen);
    if (st == IMAGE_OK)
        image_normalize_chw(rgb, size, mean, std, out);
    free(rgb);
    return st;
}
