/*
 * fuzz_image.c - libFuzzer target for the whole image pipeline (server/image*.c): any byte string
 * must give IMAGE_OK with a finite tensor or a clean error status, never a crash, an overrun, a
 * leak or an allocation beyond the limits. Limits are small (4 MP, 4096 per side) so the fuzzer
 * spends its time in parsers instead of large resizes.
 *
 * Seeds: tests/fuzz/corpus/fuzz_image/ (tiny JPEG/PNG/BMP/GIF of every mode; regenerate with
 * `python3 tests/reference/ref_image.py --fuzz-seeds tests/fuzz/corpus/fuzz_image`), plus every
 * crash input found so far.
 */
#include "image.c"
#include "image_bmp.c"
#include "image_gif.c"
#include "image_jpeg.c"
#include "image_png.c"
#include "image_resize.c"
#include "image_stb.c"

#include <assert.h>
#include <math.h>

#define FUZZ_SIZE 224

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    static float out[3 * FUZZ_SIZE * FUZZ_SIZE];
    image_limits lim = {.max_pixels = 4000000, .max_side = 4096};
    char err[256];

    image_header h;
    image_status probed = image_probe(data, size, &h);
    /* Both resize kernel sets get fuzzed (they must agree; the unit and parity tests check that). */
    image_resize_force_scalar((int)(size & 1));
    /* image_preprocess streams JPEG into the resizer; image_decode is the whole-image path. */
    image img;
    image_status decoded = image_decode(data, size, &lim, &img, err, sizeof err);
    if (decoded == IMAGE_OK) {
        assert(img.width == h.width && img.height == h.height && img.mode == h.mode);
        image_free(&img);
    }
    image_status st = image_preprocess(data, size, &lim, FUZZ_SIZE, mean, std, out, err, sizeof err);
    assert((st == IMAGE_OK) == (decoded == IMAGE_OK));
    assert(st >= IMAGE_OK && st <= IMAGE_ERR_ARGUMENT);
    if (st == IMAGE_OK) {
        /* what decodes must have probed, within the limits */
        assert(probed == IMAGE_OK);
        assert((uint64_t)h.width * h.height <= lim.max_pixels);
        for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
            assert(isfinite(out[i]));
    } else {
        assert(err[0] != '\0'); /* every failure says why, in printable ASCII (it goes into JSON) */
        for (const char *c = err; *c; c++)
            assert(*c >= 0x20 && *c < 0x7F);
    }
    return 0;
}
