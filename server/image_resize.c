/*
 * image_resize.c - torchvision's Resize(size, BILINEAR) + CenterCrop(size) + convert("RGB") on a
 * Pillow 9.4 image, bit for bit (SPEC.md section 5), computing only the pixels the crop keeps.
 *
 * The steps we reproduce:
 *   - torchvision: short side -> size, long side int(size * long / short) (Python float division);
 *     an image already that size is returned untouched (no premultiplication either).
 *   - Pillow Image.resize: modes P and 1 use NEAREST (ImagingScaleAffine: source coordinate
 *     accumulated as xo += scale from scale/2, truncated); LA and RGBA are converted to La/RGBa
 *     (premultiplied, MULDIV255) before and back after (255*c/a, clipped); every other mode goes
 *     to ImagingResample: separable antialiased bilinear, horizontal pass first into uint8, then
 *     vertical, each pass skipped when that side keeps its size (precompute_coeffs,
 *     normalize_coeffs_8bpc: 22-bit fixed point, accumulator starts at 2^21).
 *   - CenterCrop: top = round((H - size) / 2) with Python's round half to even; no padding is ever
 *     needed because the resized short side equals size.
 *   - convert("RGB"): L/1 -> grey triplets, LA/RGBA drop alpha, P is already expanded, CMYK uses
 *     Pillow's cmyk2rgb.
 * Every output pixel of a pass depends only on its own coefficients, so restricting the passes to
 * the crop window (and the horizontal pass to the source rows the vertical pass reads) changes no
 * value; it only skips work Pillow does and throws away.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

#define PRECISION_BITS 22 /* Pillow: 32 - 8 - 2 */

/* Pillow's MULDIV255: a*b/255 rounded, in integers. */
static inline unsigned muldiv255(unsigned a, unsigned b)
{
    unsigned t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static inline uint8_t clip8_fixed(int32_t acc)
{
    int32_t v = acc >> PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Fixed-point filter taps for a run of output indices of one pass. */
typedef struct resample_taps {
    int ksize;        /* Pillow's taps per output index */
    int kstride;      /* weight row length: ksize + 1 rounded up to 8, zero-padded, so the SIMD
                         kernels may read whole groups of taps past n */
    int count;        /* output indices covered */
    int *first;       /* [count] first source index */
    int *n;           /* [count] number of taps used */
    int32_t *weight;  /* [count * kstride] 22-bit fixed point */
} resample_taps;

static void taps_free(resample_taps *t)
{
    free(t->first);
    free(t->n);
    free(t->weight);
    memset(t, 0, sizeof *t);
}

static double bilinear_filter(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/*
 * Pillow's precompute_coeffs (BILINEAR, box = whole image) followed by normalize_coeffs_8bpc, for
 * output indices [out_first, out_first + count) of a pass from in_size to out_size samples.
 * Expression order follows Pillow so that every double rounds the same way.
 */
static int taps_init(resample_taps *t, uint32_t in_size, int64_t out_size, int64_t out_first,
                     int count)
{
    memset(t, 0, sizeof *t);
    double scale = (double)(float)in_size / (double)out_size; /* (double)(in1 - in0) / outSize */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int kstride = (ksize + 1 + 7) & ~7;
    double *w = malloc((size_t)ksize * sizeof *w);
    t->first = malloc((size_t)count * sizeof *t->first);
    t->n = malloc((size_t)count * sizeof *t->n);
    t->weight = calloc((size_t)count * (size_t)kstride, sizeof *t->weight);
    if (!w || !t->first || !t->n || !t->weight) {
        free(w);
        taps_free(t);
        return 0;
    }
    t->ksize = ksize;
    t->kstride = kstride;
    t->count = count;
    double ss = 1.0 / filterscale;
    for (int i = 0; i < count; i++) {
        double center = 0.0 + ((double)(out_first + i) + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > (int64_t)in_size)
            xmax = (int)in_size;
        xmax -= xmin;
        if (xmax > ksize) /* cannot happen (2*support+1 <= ksize); keeps the buffer safe */
            xmax = ksize;
        if (xmax < 1) { /* cannot happen either: center < in_size and support >= 1 */
            xmin = (int)in_size - 1;
            xmax = 1;
        }
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double v = bilinear_filter((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        int32_t *k = t->weight + (size_t)i * (size_t)kstride;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        t->first[i] = xmin;
        t->n[i] = xmax;
    }
    free(w);
    return 1;
}

/* The source span [lo, hi) a set of taps reads. */
static void taps_span(const resample_taps *t, int *lo, int *hi)
{
    *lo = t->first[0];
    *hi = t->first[0] + t->n[0];
    for (int i = 1; i < t->count; i++) {
        if (t->first[i] < *lo)
            *lo = t->first[i];
        if (t->first[i] + t->n[i] > *hi)
            *hi = t->first[i] + t->n[i];
    }
}

/*
 * The passes' kernels. All arithmetic is Pillow's: 32-bit integer sums of uint8 * 22-bit weight
 * starting at 2^21, then >> 22 and clipped. Bilinear weights are never negative, so every partial
 * sum lies between 0 and the final one (< 2^31): any summation order gives the same integers, and
 * the AVX2 kernels below are bit-identical to the scalar ones (the parity tests run both).
 *
 * The horizontal pass reads a "span": the source columns the taps touch, copied with 1 byte per
 * pixel (mode L) or 4 (every other mode: LA as L,0,0,A and RGB as R,G,B,0, premultiplied when
 * asked), followed by SPAN_PAD zero bytes so kernels may read a few pixels past a window.
 */
#define SPAN_PAD 32

static void fill_span(const uint8_t *src, size_t pixels, int C, int premul, uint8_t *span)
{
    if (C == 1) {
        memcpy(span, src, pixels);
    } else {
        for (size_t i = 0; i < pixels; i++) {
            const uint8_t *s = src + i * (size_t)C;
            uint8_t *d = span + 4 * i;
            unsigned a = s[C - 1];
            switch (C) {
            case 2:
                d[0] = (uint8_t)(premul ? muldiv255(s[0], a) : s[0]);
                d[1] = d[2] = 0;
                d[3] = (uint8_t)a;
                break;
            case 3:
                d[0] = s[0];
                d[1] = s[1];
                d[2] = s[2];
                d[3] = 0;
                break;
            default:
                for (int c = 0; c < 3; c++)
                    d[c] = (uint8_t)(premul ? muldiv255(s[c], a) : s[c]);
                d[3] = (uint8_t)a;
                break;
            }
        }
    }
    memset(span + pixels * (C == 1 ? 1 : 4), 0, SPAN_PAD);
}

/* Stores the 4 lanes of one horizontal output pixel (sums already shifted) as C channels. */
static inline void store_lanes(const int32_t v[4], int C, uint8_t *dst)
{
#define CLAMP255(x) (uint8_t)((x) < 0 ? 0 : (x) > 255 ? 255 : (x))
    switch (C) {
    case 2:
        dst[0] = CLAMP255(v[0]);
        dst[1] = CLAMP255(v[3]);
        break;
    default:
        for (int c = 0; c < C; c++)
            dst[c] = CLAMP255(v[c]);
        break;
    }
#undef CLAMP255
}

static void hpass_scalar(const uint8_t *span, int origin, const resample_taps *t, int C,
                         uint8_t *dst)
{
    for (int xx = 0; xx < t->count; xx++) {
        const int32_t *k = t->weight + (size_t)xx * (size_t)t->kstride;
        int n = t->n[xx];
        if (C == 1) {
            const uint8_t *s = span + (t->first[xx] - origin);
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < n; i++)
                acc += (int32_t)s[i] * k[i];
            dst[xx] = clip8_fixed(acc);
            continue;
        }
        const uint8_t *s = span + (size_t)(t->first[xx] - origin) * 4;
        int32_t acc[4] = {1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1),
                          1 << (PRECISION_BITS - 1), 1 << (PRECISION_BITS - 1)};
        for (int i = 0; i < n; i++)
            for (int c = 0; c < 4; c++)
                acc[c] += (int32_t)s[4 * i + c] * k[i];
        for (int c = 0; c < 4; c++)
            acc[c] >>= PRECISION_BITS;
        store_lanes(acc, C, dst + (size_t)xx * (size_t)C);
    }
}

/* The vertical pass: rows of `in` (row 0 is source row `origin`, row_len bytes each) -> out.
 * acc: row_len scratch integers. */
static void vpass_scalar(const uint8_t *in, int origin, size_t row_len, const resample_taps *t,
                         int32_t *acc, uint8_t *out)
{
    for (int yy = 0; yy < t->count; yy++) {
        const int32_t *k = t->weight + (size_t)yy * (size_t)t->kstride;
        for (size_t j = 0; j < row_len; j++)
            acc[j] = 1 << (PRECISION_BITS - 1);
        for (int i = 0; i < t->n[yy]; i++) {
            const uint8_t *row = in + (size_t)(t->first[yy] - origin + i) * row_len;
            int32_t w = k[i];
            for (size_t j = 0; j < row_len; j++)
                acc[j] += (int32_t)row[j] * w;
        }
        uint8_t *o = out + (size_t)yy * row_len;
        for (size_t j = 0; j < row_len; j++)
            o[j] = clip8_fixed(acc[j]);
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define RESAMPLE_AVX2 1
#include <immintrin.h>

/* Horizontal pass, AVX2: two taps (8 lanes) per step for 4-byte pixels, eight taps for L. */
__attribute__((target("avx2"))) static void hpass_avx2(const uint8_t *span, int origin,
                                                       const resample_taps *t, int C,
                                                       uint8_t *dst)
{
    const __m256i dup = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (int xx = 0; xx < t->count; xx++) {
        const int32_t *k = t->weight + (size_t)xx * (size_t)t->kstride;
        int n = t->n[xx];
        __m256i acc = _mm256_setzero_si256();
        if (C == 1) {
            const uint8_t *s = span + (t->first[xx] - origin);
            for (int i = 0; i < n; i += 8) {
                __m256i px = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(s + i)));
                __m256i w = _mm256_loadu_si256((const __m256i *)(k + i));
                acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(px, w));
            }
            __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc),
                                      _mm256_extracti128_si256(acc, 1));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
            h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
            dst[xx] = clip8_fixed(_mm_cvtsi128_si32(h) + (1 << (PRECISION_BITS - 1)));
            continue;
        }
        const uint8_t *s = span + (size_t)(t->first[xx] - origin) * 4;
        for (int i = 0; i < n; i += 2) {
            __m256i px = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(s + 4 * i)));
            __m256i w = _mm256_permutevar8x32_epi32(
                _mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(k + i))), dup);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(px, w));
        }
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        h = _mm_srai_epi32(_mm_add_epi32(h, _mm_set1_epi32(1 << (PRECISION_BITS - 1))),
                           PRECISION_BITS);
        int32_t v[4];
        _mm_storeu_si128((__m128i *)v, h);
        store_lanes(v, C, dst + (size_t)xx * (size_t)C);
    }
}

/* fill_span for RGB without premultiplication: R,G,B -> R,G,B,0, eight pixels per step. */
__attribute__((target("avx2"))) static void fill_span_rgb_avx2(const uint8_t *src, size_t pixels,
                                                               uint8_t *span)
{
    const __m256i shuf = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,
                                          0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1);
    size_t i = 0;
    for (; 3 * i + 28 <= 3 * pixels; i += 8) { /* the second load reads bytes 3i+12 .. 3i+27 */
        __m128i lo = _mm_loadu_si128((const __m128i *)(src + 3 * i));
        __m128i hi = _mm_loadu_si128((const __m128i *)(src + 3 * i + 12));
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        _mm256_storeu_si256((__m256i *)(span + 4 * i), _mm256_shuffle_epi8(v, shuf));
    }
    for (; i < pixels; i++) {
        span[4 * i] = src[3 * i];
        span[4 * i + 1] = src[3 * i + 1];
        span[4 * i + 2] = src[3 * i + 2];
        span[4 * i + 3] = 0;
    }
    memset(span + 4 * pixels, 0, SPAN_PAD);
}

/* 8 sums -> 8 clipped bytes */
__attribute__((target("avx2"))) static inline void store8_avx2(__m256i acc, uint8_t *o)
{
    __m256i v = _mm256_srai_epi32(acc, PRECISION_BITS);
    v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_setzero_si256()), _mm256_set1_epi32(255));
    __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(w16, w16));
}

/* Vertical pass, AVX2: 32 outputs of a row at a time, sums kept in registers over the taps. */
__attribute__((target("avx2"))) static void vpass_avx2(const uint8_t *in, int origin,
                                                       size_t row_len, const resample_taps *t,
                                                       uint8_t *out)
{
    const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1));
    for (int yy = 0; yy < t->count; yy++) {
        const int32_t *k = t->weight + (size_t)yy * (size_t)t->kstride;
        const uint8_t *rows = in + (size_t)(t->first[yy] - origin) * row_len;
        int n = t->n[yy];
        uint8_t *o = out + (size_t)yy * row_len;
        size_t j = 0;
        for (; j + 32 <= row_len; j += 32) {
            __m256i a0 = half, a1 = half, a2 = half, a3 = half;
            for (int i = 0; i < n; i++) {
                const uint8_t *r = rows + (size_t)i * row_len + j;
                __m256i w = _mm256_set1_epi32(k[i]);
                __m128i b = _mm_loadu_si128((const __m128i *)r);
                __m128i c = _mm_loadu_si128((const __m128i *)(r + 16));
                a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(b), w));
                a1 = _mm256_add_epi32(
                    a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), w));
                a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(c), w));
                a3 = _mm256_add_epi32(
                    a3, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)), w));
            }
            store8_avx2(a0, o + j);
            store8_avx2(a1, o + j + 8);
            store8_avx2(a2, o + j + 16);
            store8_avx2(a3, o + j + 24);
        }
        for (; j < row_len; j++) {
            int32_t acc = 1 << (PRECISION_BITS - 1);
            for (int i = 0; i < n; i++)
                acc += (int32_t)rows[(size_t)i * row_len + j] * k[i];
            o[j] = clip8_fixed(acc);
        }
    }
}
#endif

/* Test hook: 1 forces the scalar kernels (the parity tests compare both). */
static _Atomic int resize_force_scalar;

void image_resize_force_scalar(int on)
{
    resize_force_scalar = on;
}

static int use_avx2(void)
{
#ifdef RESAMPLE_AVX2
    return !resize_force_scalar && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

static void hpass(const uint8_t *span, int origin, const resample_taps *t, int C, uint8_t *dst,
                  int simd)
{
#ifdef RESAMPLE_AVX2
    if (simd) {
        hpass_avx2(span, origin, t, C, dst);
        return;
    }
#endif
    (void)simd;
    hpass_scalar(span, origin, t, C, dst);
}

static void vpass(const uint8_t *in, int origin, size_t row_len, const resample_taps *t,
                  int32_t *acc, uint8_t *out, int simd)
{
#ifdef RESAMPLE_AVX2
    if (simd) {
        vpass_avx2(in, origin, row_len, t, out);
        return;
    }
#endif
    (void)simd;
    vpass_scalar(in, origin, row_len, t, acc, out);
}

/* Pillow's convert("RGBa") / convert("La") of `pixels` pixels (C = 2 or 4, alpha last). */
static void premultiply(const uint8_t *src, uint8_t *dst, size_t pixels, int C)
{
    for (size_t i = 0; i < pixels; i++) {
        const uint8_t *s = src + i * (size_t)C;
        uint8_t *d = dst + i * (size_t)C;
        unsigned a = s[C - 1];
        for (int c = 0; c < C - 1; c++)
            d[c] = (uint8_t)muldiv255(s[c], a);
        d[C - 1] = (uint8_t)a;
    }
}

/* Pillow's convert back from RGBa / La (rgba2rgbA, la2lA). In place. */
static void unpremultiply(uint8_t *px, size_t pixels, int C)
{
    for (size_t i = 0; i < pixels; i++) {
        uint8_t *p = px + i * (size_t)C;
        unsigned a = p[C - 1];
        if (a == 0 || a == 255)
            continue;
        for (int c = 0; c < C - 1; c++) {
            unsigned v = (255u * p[c]) / a;
            p[c] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
}

/* convert("RGB") of size*size pixels in mode `mode` (channels C) into out_rgb. */
static void to_rgb(const uint8_t *px, size_t pixels, image_mode mode, uint8_t *out)
{
    for (size_t i = 0; i < pixels; i++) {
        uint8_t *o = out + 3 * i;
        switch (mode) {
        case IMAGE_MODE_L:
            o[0] = o[1] = o[2] = px[i];
            break;
        case IMAGE_MODE_1:
            o[0] = o[1] = o[2] = px[i] ? 255 : 0;
            break;
        case IMAGE_MODE_LA:
            o[0] = o[1] = o[2] = px[2 * i];
            break;
        case IMAGE_MODE_RGB:
        case IMAGE_MODE_P:
            memcpy(o, px + 3 * i, 3);
            break;
        case IMAGE_MODE_RGBA:
            memcpy(o, px + 4 * i, 3);
            break;
        case IMAGE_MODE_CMYK: {
            const uint8_t *s = px + 4 * i;
            unsigned nk = 255u - s[3];
            for (int c = 0; c < 3; c++)
                o[c] = (uint8_t)(nk - muldiv255(s[c], nk)); /* never negative: muldiv <= nk */
            break;
        }
        }
    }
}

/* Python's int(round(diff / 2.0)) for diff >= 0: halves go to the even neighbour. */
static int64_t round_half_even_half(int64_t diff)
{
    int64_t q = diff / 2;
    if (diff % 2 == 0)
        return q;
    return (q % 2 == 0) ? q : q + 1;
}

/*
 * Pillow's NEAREST scale (ImagingScaleAffine) for output indices [first, first + count):
 * coordinates are accumulated from the image's first output index, as Pillow does, so the rounding
 * of the running sum is the same. Writes source indices into map.
 */
static void nearest_map(uint32_t in_size, int64_t out_size, int64_t first, int count, int *map)
{
    double a = (double)(float)in_size / (double)out_size;
    double xo = 0.0 + a * 0.5;
    for (int64_t x = 0; x < first + count; x++) {
        if (x >= first) {
            /* COORD(): negative -> -1, else truncate. Out-of-range sources are impossible for
             * sizes below 2^20 (the running error stays far below the half-step margin); Pillow
             * would write index 0 there, we clamp. */
            int64_t v = xo < 0.0 ? -1 : (int64_t)xo;
            if (v < 0)
                v = 0;
            if (v >= (int64_t)in_size)
                v = (int64_t)in_size - 1;
            map[x - first] = (int)v;
        }
        xo += a;
    }
}

/*
 * The resizer: planned from the image's size and mode alone, then fed source rows in order, so a
 * decoder can stream scanlines into it instead of holding the whole image (see image_preprocess).
 * It keeps only what the crop needs: for bilinear, the horizontally resampled rows the vertical
 * pass reads ((rows used) x size x channels bytes); for nearest, the crop itself.
 */
struct image_resizer {
    image_mode mode;
    int C, S;
    int nearest;             /* P and 1 (when resized): Pillow's NEAREST */
    int need_h, need_v;      /* bilinear: passes that run (a side that keeps its size is skipped) */
    int premul;              /* LA/RGBA through Pillow's resize: premultiplied in, divided out */
    int simd;
    int64_t left, top;       /* the crop in the resized image */
    int x0, x1, y0, y1;      /* source columns and rows used */
    resample_taps ht, vt;
    int *xmap, *ymap;        /* nearest: source column / row of each crop column / row */
    uint8_t *buf;            /* bilinear: (y1-y0) rows of S*C bytes; nearest: the S x S crop */
    uint8_t *span;           /* bilinear with need_h: one row of the horizontal pass's input */
    uint32_t rows_seen;      /* rows in [y0, y1) pushed so far */
    int ny;                  /* nearest: crop rows filled so far */
};

void image_resizer_free(image_resizer *r)
{
    if (!r)
        return;
    taps_free(&r->ht);
    taps_free(&r->vt);
    free(r->xmap);
    free(r->ymap);
    free(r->buf);
    free(r->span);
    free(r);
}

image_status image_resizer_new(image_resizer **out, uint32_t width, uint32_t height,
                               image_mode mode, int size)
{
    *out = NULL;
    int C = image_mode_channels(mode);
    if (C == 0 || size < 1 || size > IMAGE_MAX_OUTPUT_SIZE || width == 0 || height == 0)
        return IMAGE_ERR_ARGUMENT;
    const int64_t W = width, H = height, S = size;

    /* torchvision _compute_resized_output_size: int(size * long / short), float division. */
    int64_t new_w, new_h;
    if (W <= H) {
        new_w = S;
        new_h = (int64_t)((double)(S * H) / (double)W);
    } else {
        new_h = S;
        new_w = (int64_t)((double)(S * W) / (double)H);
    }
    /* Pillow's sizes are C ints; a 1-pixel-wide strip of millions of rows would overflow them. */
    if (new_w > (1 << 30) || new_h > (1 << 30))
        return IMAGE_ERR_TOO_LARGE;

    image_resizer *r = calloc(1, sizeof *r);
    if (!r)
        return IMAGE_ERR_NO_MEMORY;
    r->mode = mode;
    r->C = C;
    r->S = size;
    r->left = round_half_even_half(new_w - S);
    r->top = round_half_even_half(new_h - S);
    int resized = new_w != W || new_h != H;
    r->nearest = resized && (mode == IMAGE_MODE_P || mode == IMAGE_MODE_1);
    r->premul = resized && (mode == IMAGE_MODE_RGBA || mode == IMAGE_MODE_LA);
    r->simd = use_avx2();
    size_t row_len = (size_t)size * (size_t)C;
    image_status st = IMAGE_ERR_NO_MEMORY;

    if (r->nearest) {
        r->xmap = malloc((size_t)size * sizeof *r->xmap);
        r->ymap = malloc((size_t)size * sizeof *r->ymap);
        r->buf = malloc((size_t)size * row_len);
        if (!r->xmap || !r->ymap || !r->buf)
            goto fail;
        nearest_map(width, new_w, r->left, size, r->xmap);
        nearest_map(height, new_h, r->top, size, r->ymap);
        r->y0 = r->ymap[0];
        r->y1 = r->ymap[size - 1] + 1; /* the map never decreases */
        *out = r;
        return IMAGE_OK;
    }

    r->need_h = new_w != W;
    r->need_v = new_h != H;
    if (r->need_h && !taps_init(&r->ht, width, new_w, r->left, size))
        goto fail;
    if (r->need_v && !taps_init(&r->vt, height, new_h, r->top, size))
        goto fail;
    r->y0 = (int)r->top;
    r->y1 = (int)r->top + size;
    r->x0 = (int)r->left;
    r->x1 = (int)r->left + size;
    if (r->need_v)
        taps_span(&r->vt, &r->y0, &r->y1);
    if (r->need_h)
        taps_span(&r->ht, &r->x0, &r->x1);
    r->buf = malloc((size_t)(r->y1 - r->y0) * row_len);
    if (!r->buf)
        goto fail;
    if (r->need_h) {
        r->span = malloc((size_t)(r->x1 - r->x0) * (C == 1 ? 1u : 4u) + SPAN_PAD);
        if (!r->span)
            goto fail;
    }
    *out = r;
    return IMAGE_OK;
fail:
    image_resizer_free(r);
    return st;
}

int image_resizer_wants_row(const image_resizer *r, uint32_t y)
{
    return (int64_t)y >= r->y0 && (int64_t)y < r->y1;
}

void image_resizer_push_row(image_resizer *r, uint32_t y, const uint8_t *row)
{
    if (!image_resizer_wants_row(r, y))
        return;
    const int C = r->C, S = r->S;
    size_t row_len = (size_t)S * (size_t)C;
    r->rows_seen++;
    if (r->nearest) {
        while (r->ny < S && r->ymap[r->ny] == (int)y) {
            uint8_t *o = r->buf + (size_t)r->ny * row_len;
            for (int x = 0; x < S; x++)
                memcpy(o + (size_t)x * (size_t)C, row + (size_t)r->xmap[x] * (size_t)C,
                       (size_t)C);
            r->ny++;
        }
        return;
    }
    const uint8_t *src = row + (size_t)r->x0 * (size_t)C;
    uint8_t *dst = r->buf + (size_t)((int)y - r->y0) * row_len;
    if (r->need_h) {
        size_t span_px = (size_t)(r->x1 - r->x0);
#ifdef RESAMPLE_AVX2
        if (r->simd && C == 3)
            fill_span_rgb_avx2(src, span_px, r->span);
        else
#endif
            fill_span(src, span_px, C, r->premul, r->span);
        hpass(r->span, r->x0, &r->ht, C, dst, r->simd);
    } else if (r->premul) { /* x0 == left, x1 == left + S */
        premultiply(src, dst, (size_t)S, C);
    } else {
        memcpy(dst, src, row_len);
    }
}

image_status image_resizer_finish(image_resizer *r, uint8_t *out_rgb)
{
    const int C = r->C, S = r->S;
    size_t row_len = (size_t)S * (size_t)C;
    if (r->rows_seen != (uint32_t)(r->y1 - r->y0))
        return IMAGE_ERR_ARGUMENT; /* the caller skipped rows */
    uint8_t *crop = r->buf;
    uint8_t *owned = NULL;
    if (!r->nearest && r->need_v) {
        owned = malloc((size_t)S * row_len);
        int32_t *acc = r->simd ? NULL : malloc(row_len * sizeof *acc);
        if (!owned || (!r->simd && !acc)) {
            free(owned);
            free(acc);
            return IMAGE_ERR_NO_MEMORY;
        }
        vpass(r->buf, r->y0, row_len, &r->vt, acc, owned, r->simd);
        free(acc);
        crop = owned;
    } /* else: nearest's buf is the crop; bilinear without a vertical pass kept rows top.. */
    if (r->premul)
        unpremultiply(crop, (size_t)S * (size_t)S, C);
    to_rgb(crop, (size_t)S * (size_t)S, r->mode, out_rgb);
    free(owned);
    return IMAGE_OK;
}

image_status image_resize_crop_rgb(const image *img, int size, uint8_t *out_rgb)
{
    if (!img || !img->pixels || !out_rgb || img->channels != image_mode_channels(img->mode))
        return IMAGE_ERR_ARGUMENT;
    image_resizer *r = NULL;
    image_status st = image_resizer_new(&r, img->width, img->height, img->mode, size);
    if (st != IMAGE_OK)
        return st;
    size_t stride = (size_t)img->width * (size_t)img->channels;
    for (int y = r->y0; y < r->y1; y++)
        image_resizer_push_row(r, (uint32_t)y, img->pixels + (size_t)y * stride);
    st = image_resizer_finish(r, out_rgb);
    image_resizer_free(r);
    return st;
}
