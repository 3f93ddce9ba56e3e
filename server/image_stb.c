/*
 * image_stb.c - stb_image, PNG decoder only, in a translation unit of its own so that its code
 * and warnings stay away from ours. The one function it exports caps every allocation stb makes
 * (per thread, set for the duration of the call): a zlib bomb then fails with "outofmem" instead
 * of inflating gigabytes. stb's failure string is thread-local in this version (2.27).
 */
#include <stdint.h>
#include <stdlib.h>

#include "image_internal.h"

static _Thread_local size_t stb_alloc_cap;

static void *stb_capped_malloc(size_t n)
{
    return n <= stb_alloc_cap ? malloc(n) : NULL;
}

static void *stb_capped_realloc(void *p, size_t n)
{
    return n <= stb_alloc_cap ? realloc(p, n) : NULL;
}

#define STBI_MALLOC(sz) stb_capped_malloc(sz)
#define STBI_REALLOC(p, newsz) stb_capped_realloc(p, newsz)
#define STBI_FREE(p) free(p)
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS (1 << 24)

/* Third-party code: no warnings from it. -Wunused-function stays off for the whole file because
 * GCC reports "declared static but never defined" (the GIF loader that STBI_ONLY_PNG leaves
 * declared) at the end of the translation unit, after a pop. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunused-function"
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Weverything"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wformat=2"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <stb/stb_image.h>
#if defined(__clang__)
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

uint8_t *image_stb_load_png(const uint8_t *data, size_t len, int req_comp, size_t alloc_cap,
                            int *width, int *height, const char **why)
{
    int channels_in_file = 0;
    *why = NULL;
    if (len > INT32_MAX)
        return NULL;
    stb_alloc_cap = alloc_cap;
    uint8_t *pixels = stbi_load_from_memory(data, (int)len, width, height, &channels_in_file,
                                            req_comp);
    stb_alloc_cap = 0;
    if (!pixels)
        *why = stbi_failure_reason();
    return pixels;
}
