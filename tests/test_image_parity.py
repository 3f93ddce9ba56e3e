"""The C image pipeline (server/image*.c, driven through build/tests/unit/test_image --dump) against
the Python reference (tests/reference/ref_image.py: Pillow 9.4 + torchvision 0.14).

Every image below must give the identical 224x224x3 uint8 after resize + crop + convert("RGB")
(max difference 0) and a normalized tensor within 1e-6; files Pillow refuses must be refused with
the right image_status. Run with -s to see the per-type table of differences.
"""
import io
import os
import pathlib
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

import ref_image as ref
from conftest import BUILD, SHARED

TOOL = BUILD / "tests" / "unit" / "test_image"
IMAGE_OK, UNSUPPORTED, DECODE, TOO_LARGE = 0, 1, 2, 3

RESULTS = {}  # case name -> max abs uint8 difference, for the summary


def rng_image(w, h, channels, seed):
    """Smooth gradients plus noise: exercises every filter tap without being pure noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 // max(w - 1, 1) + yy * 255 // max(h - 1, 1)) // 2
    planes = [np.clip(base + r.integers(-60, 61, (h, w)) + 40 * c, 0, 255) for c in range(channels)]
    a = np.stack(planes, axis=-1).astype(np.uint8)
    return a[..., 0] if channels == 1 else a


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _rgba(w, h, seed):
    a = rng_image(w, h, 4, seed)
    a[..., 3] = np.random.default_rng(seed).choice([0, 1, 7, 64, 128, 200, 254, 255], (h, w))
    return Image.fromarray(a, "RGBA")


def _png_cases():
    c = {}
    for w, h in ((1, 1), (2, 3), (224, 224), (225, 224), (224, 225), (300, 200), (199, 301),
                 (4000, 3), (3, 4000), (1, 500)):
        c[f"png_rgb_{w}x{h}"] = pil_bytes(Image.fromarray(rng_image(w, h, 3, w * 7 + h)), "PNG")
    c["png_L"] = pil_bytes(Image.fromarray(rng_image(300, 200, 1, 1), "L"), "PNG")
    c["png_L_trns"] = pil_bytes(Image.fromarray(rng_image(300, 200, 1, 2), "L"), "PNG", transparency=17)
    la = rng_image(250, 260, 2, 3)
    la[..., 1] = np.random.default_rng(3).choice([0, 3, 100, 255], (260, 250))
    c["png_LA"] = pil_bytes(Image.fromarray(la, "LA"), "PNG")
    c["png_RGBA"] = pil_bytes(_rgba(300, 200, 4), "PNG")
    c["png_RGBA_224x224_untouched"] = pil_bytes(_rgba(224, 224, 5), "PNG")
    c["png_RGBA_224x300_one_axis"] = pil_bytes(_rgba(224, 300, 6), "PNG")
    rgb = Image.fromarray(rng_image(300, 200, 3, 7))
    c["png_P"] = pil_bytes(rgb.quantize(200), "PNG")
    p = rgb.quantize(64)
    c["png_P_trns"] = pil_bytes(p, "PNG", transparency=5)
    c["png_P_4bit"] = pil_bytes(rgb.quantize(16), "PNG", bits=4)
    c["png_1bit"] = pil_bytes(Image.fromarray(rng_image(300, 200, 1, 8) > 128), "PNG")
    # crafted: low bit depths, 16 bits, out-of-range palette indices, interlacing
    r = np.random.default_rng(9)
    for depth in (2, 4):
        vals = r.integers(0, 1 << depth, (200, 230))
        rows = [ref.pack_bits(row, depth) for row in vals]
        c[f"png_L_{depth}bit"] = ref.png_bytes(230, 200, 0, depth, rows)
    idx = r.integers(0, 256, (200, 300))
    c["png_P_out_of_range"] = ref.png_bytes(300, 200, 3, 8, [bytes(row.tolist()) for row in idx],
                                            plte=bytes(r.integers(0, 256, 30).tolist()))
    a16 = (r.integers(0, 65536, (200, 300, 3))).astype(">u2")
    c["png_RGB_16bit"] = ref.png_bytes(300, 200, 2, 16, [row.tobytes() for row in a16])
    a16 = (r.integers(0, 65536, (200, 300, 4))).astype(">u2")
    c["png_RGBA_16bit"] = ref.png_bytes(300, 200, 6, 16, [row.tobytes() for row in a16])
    a16 = (r.integers(0, 65536, (200, 300, 2))).astype(">u2")
    c["png_LA_16bit"] = ref.png_bytes(300, 200, 4, 16, [row.tobytes() for row in a16])
    a8 = rng_image(301, 203, 3, 10)
    c["png_RGB_interlaced"] = ref.png_bytes(301, 203, 2, 8, [row.tobytes() for row in a8], interlace=True)
    c["png_RGB_trns"] = ref.png_bytes(301, 203, 2, 8, [row.tobytes() for row in a8],
                                      trns=struct.pack(">HHH", *a8[0, 0].tolist()))
    return c


def _jpeg_cases():
    c = {}
    rgb = Image.fromarray(rng_image(301, 199, 3, 11))
    c["jpeg_420"] = pil_bytes(rgb, "JPEG", quality=90, subsampling=2)
    c["jpeg_422"] = pil_bytes(rgb, "JPEG", quality=90, subsampling=1)
    c["jpeg_444"] = pil_bytes(rgb, "JPEG", quality=95, subsampling=0)
    c["jpeg_progressive"] = pil_bytes(rgb, "JPEG", quality=85, progressive=True)
    c["jpeg_L"] = pil_bytes(rgb.convert("L"), "JPEG", quality=90)
    c["jpeg_CMYK"] = pil_bytes(rgb.convert("CMYK"), "JPEG", quality=90)
    c["jpeg_1x1"] = pil_bytes(Image.new("RGB", (1, 1), (250, 3, 100)), "JPEG")
    c["jpeg_4000x3"] = pil_bytes(Image.fromarray(rng_image(4000, 3, 3, 12)), "JPEG")
    c["jpeg_3x400"] = pil_bytes(Image.fromarray(rng_image(3, 400, 3, 13)), "JPEG")
    return c


def _bmp_cases():
    c = {}
    rgb = Image.fromarray(rng_image(301, 199, 3, 14))
    c["bmp_RGB24"] = pil_bytes(rgb, "BMP")
    c["bmp_P8"] = pil_bytes(rgb.quantize(100), "BMP")
    c["bmp_L8"] = pil_bytes(rgb.convert("L"), "BMP")
    c["bmp_1bit"] = pil_bytes(rgb.convert("1"), "BMP")
    r = np.random.default_rng(15)
    w, h = 230, 250
    a = rng_image(w, h, 4, 15)
    bgrx = [bytes(a[y][:, [2, 1, 0, 3]].reshape(-1).tolist()) for y in range(h)]
    c["bmp_32_BI_RGB"] = ref.bmp_bytes(w, h, 32, bgrx)
    c["bmp_32_bitfields_alpha"] = ref.bmp_bytes(w, h, 32, bgrx, compression=3,
                                                masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000), header_size=108)
    c["bmp_32_bitfields_rgba_order"] = ref.bmp_bytes(w, h, 32, [bytes(a[y].reshape(-1).tolist()) for y in range(h)],
                                                     compression=3, masks=(0xFF, 0xFF00, 0xFF0000, 0xFF000000),
                                                     header_size=124)
    c["bmp_32_bitfields_no_alpha_40"] = ref.bmp_bytes(w, h, 32, bgrx, compression=3,
                                                      masks=(0xFF0000, 0xFF00, 0xFF))
    px16 = r.integers(0, 65536, (h, w)).astype("<u2")
    c["bmp_16_555"] = ref.bmp_bytes(w, h, 16, [row.tobytes() for row in px16])
    c["bmp_16_565"] = ref.bmp_bytes(w, h, 16, [row.tobytes() for row in px16], compression=3,
                                    masks=(0xF800, 0x7E0, 0x1F))
    c["bmp_24_top_down"] = ref.bmp_bytes(w, h, 24, [bytes(a[y][:, [2, 1, 0]].reshape(-1).tolist()) for y in range(h)],
                                         top_down=True)
    idx4 = r.integers(0, 16, (h, w))
    pal16 = [tuple(r.integers(0, 256, 3).tolist()) for _ in range(12)]  # 12 colours: 12..15 use the ramp
    c["bmp_P4_short_palette"] = ref.bmp_bytes(w, h, 4, [ref.pack_bits(row, 4) for row in idx4], palette=pal16)
    c["bmp_os2_24"] = _os2_bmp(w, h, a)
    return c


def _os2_bmp(w, h, a):
    """OS/2 1.x BMP (12-byte header, 16-bit sizes), 24-bit."""
    stride = ((w * 24 + 31) // 32) * 4
    pixels = b"".join(bytes(a[y][:, [2, 1, 0]].reshape(-1).tolist()).ljust(stride, b"\0") for y in range(h - 1, -1, -1))
    info = struct.pack("<IHHHH", 12, w, h, 1, 24)
    offset = 14 + 12
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def _gif_cases():
    c = {}
    rgb = Image.fromarray(rng_image(301, 199, 3, 16))
    c["gif_P"] = pil_bytes(rgb, "GIF")
    c["gif_P_trns"] = pil_bytes(rgb.quantize(32), "GIF", transparency=3)
    c["gif_L_grey_palette"] = pil_bytes(rgb.convert("L"), "GIF")
    r = np.random.default_rng(17)
    pal = [tuple(r.integers(0, 256, 3).tolist()) for _ in range(16)]
    w, h = 200, 150
    idx = r.integers(0, 16, w * h).tolist()
    c["gif_local_palette"] = ref.gif_bytes((w, h), (0, 0, w, h), idx, global_palette=pal[:4],
                                           local_palette=pal)
    c["gif_frame_inside_screen_trns"] = ref.gif_bytes((260, 240), (30, 40, w, h), idx, global_palette=pal,
                                                      transparency=7)
    c["gif_frame_inside_screen"] = ref.gif_bytes((260, 240), (30, 40, w, h), idx, global_palette=pal)
    c["gif_frame_outside_screen"] = ref.gif_bytes((100, 100), (50, 20, w, h), idx, global_palette=pal)
    c["gif_interlaced"] = ref.gif_bytes((w, h), (0, 0, w, h), idx, global_palette=pal, interlace=True)
    c["gif_out_of_range_index"] = ref.gif_bytes((w, h), (0, 0, w, h), r.integers(0, 256, w * h).tolist(),
                                                global_palette=pal[:2], min_code_size=8)
    c["gif_no_palette"] = ref.gif_bytes((w, h), (0, 0, w, h), r.integers(0, 256, w * h).tolist(),
                                        min_code_size=8)
    big = (np.arange(600 * 500) * 7 // 1000 % 256).tolist()  # long runs: fills the LZW table
    c["gif_table_full"] = ref.gif_bytes((600, 500), (0, 0, 600, 500), big,
                                        global_palette=[(i, 255 - i, i // 2) for i in range(256)])
    return c


def _shared_cases():
    return {f"shared_{p.name}": p.read_bytes() for p in sorted((SHARED / "images").iterdir())
            if p.suffix in (".png", ".jpg", ".jpeg") and p.name != "truncated.jpg"}


@pytest.fixture(scope="module")
def cases():
    c = {}
    for f in (_shared_cases, _png_cases, _jpeg_cases, _bmp_cases, _gif_cases):
        c.update(f())
    return c


def run_tool(data, tmp_path, name, mode="--dump", scalar=False):
    """Runs the C pipeline on data; scalar=True forces the resize's scalar kernels (else AVX2 where
    the CPU has it)."""
    if not TOOL.exists():
        pytest.fail(f"{TOOL} missing: build it (make {TOOL.relative_to(BUILD.parent)})")
    src, out = tmp_path / f"{name}.in", tmp_path / f"{name}.out"
    src.write_bytes(data)
    env = dict(os.environ, CLOOB_IMAGE_SCALAR="1" if scalar else "0")
    r = subprocess.run([str(TOOL), mode, str(src), str(out)], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr
    status_line = r.stdout.strip()
    if status_line.startswith("OK"):
        dtype = np.uint8 if mode == "--dump" else np.float32
        return IMAGE_OK, status_line, np.fromfile(out, dtype=dtype)
    parts = status_line.split(" ", 2)
    assert parts[0] == "ERROR", status_line
    return int(parts[1]), status_line, None


CASE_NAMES = sorted(set(_shared_cases()) | set(_png_cases()) | set(_jpeg_cases()) | set(_bmp_cases())
                    | set(_gif_cases()))


_WANT = {}


@pytest.mark.parametrize("kernels", ["simd", "scalar"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_uint8_parity(name, kernels, cases, tmp_path):
    data = cases[name]
    if name not in _WANT:
        _WANT[name] = ref.resize_crop_rgb(data)
    want = _WANT[name]
    status, line, got = run_tool(data, tmp_path, name, scalar=kernels == "scalar")
    assert status == IMAGE_OK, line
    got = got.reshape(224, 224, 3)
    diff = np.abs(got.astype(int) - want.astype(int))
    RESULTS[name] = max(RESULTS.get(name, 0), int(diff.max()))
    if diff.max():
        y, x, ch = np.unravel_index(diff.argmax(), diff.shape)
        pytest.fail(f"{name} ({line}): max diff {diff.max()} at y={y} x={x} c={ch}: "
                    f"C {got[y, x].tolist()} vs Pillow {want[y, x].tolist()}; {np.count_nonzero(diff)} values differ")


# image_preprocess streams JPEG scanlines into the resizer instead of decoding the whole image:
# every JPEG goes through that path here, plus a sample of the other formats.
FLOAT_CASES = [n for n in CASE_NAMES if n.startswith(("shared_", "jpeg_"))] + [
    "png_RGBA", "png_P_trns", "png_LA", "gif_P_trns", "bmp_16_565", "png_rgb_1x1", "png_rgb_3x4000"]


@pytest.mark.parametrize("kernels", ["simd", "scalar"])
@pytest.mark.parametrize("name", FLOAT_CASES)
def test_float_parity(name, kernels, cases, tmp_path):
    data = cases[name]
    want = ref.preprocess(data).numpy()
    status, line, got = run_tool(data, tmp_path, name, "--dump-float", scalar=kernels == "scalar")
    assert status == IMAGE_OK, line
    got = got.reshape(3, 224, 224)
    assert np.abs(got - want).max() <= 1e-6, f"{name}: max float diff {np.abs(got - want).max()}"


def _huge_png(w, h):
    return b"\x89PNG\r\n\x1a\n" + ref._png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))


def _huge_jpeg(w, h):
    sof = b"\xFF\xC0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xFF\xDA\x00\x0C\x03\x01\x00\x02\x11\x03\x11\x00\x3F\x00"
    return b"\xFF\xD8" + sof + sos + b"\xFF\xD9"


def _error_cases():
    rgb = Image.fromarray(rng_image(301, 199, 3, 20))
    png = pil_bytes(rgb, "PNG")
    jpeg = pil_bytes(rgb, "JPEG")
    gray16 = ref.png_bytes(30, 20, 0, 16, [bytes(60)] * 20)
    rle = bytearray(ref.bmp_bytes(4, 2, 8, [bytes(4)] * 2, palette=[(1, 2, 3)] * 256))
    rle[30:34] = struct.pack("<I", 1)  # BI_RLE8
    return {
        # name: (bytes, expected status, Pillow must fail too)
        "truncated.jpg": ((SHARED / "images" / "truncated.jpg").read_bytes(), DECODE, True),
        "jpeg_cut_in_half": (jpeg[: len(jpeg) // 2], DECODE, True),
        "png_cut_in_half": (png[: len(png) // 2], DECODE, True),
        "gif_data_cut": (ref.gif_bytes((50, 50), (0, 0, 50, 50), list(range(50)) * 50,
                                       global_palette=[(i, i, 0) for i in range(64)], truncate_data=True),
                         DECODE, True),
        "bmp_pixels_cut": (pil_bytes(rgb, "BMP")[:5000], DECODE, True),
        "webp": (pil_bytes(rgb, "WEBP"), UNSUPPORTED, False),
        "tiff": (pil_bytes(rgb, "TIFF"), UNSUPPORTED, False),
        "text": (b"this is a caption, not an image\n", UNSUPPORTED, True),
        "zero_bytes": (b"", UNSUPPORTED, True),
        "png_100000x100000": (_huge_png(100000, 100000), TOO_LARGE, False),
        "jpeg_65000x65000": (_huge_jpeg(65000, 65000), TOO_LARGE, False),
        "bmp_100000x100000": (b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
                              + struct.pack("<IiiHHIIiiII", 40, 100000, 100000, 1, 24, 0, 0, 0, 0, 0, 0),
                              TOO_LARGE, False),
        "gif_65535x65535": (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
                            + b",\0\0\0\0\1\0\1\0\0\2\2\x44\1\0;", TOO_LARGE, False),
        "png_16bit_grey_refused": (gray16, UNSUPPORTED, False),
        "bmp_rle8_refused": (bytes(rle), UNSUPPORTED, False),
    }


@pytest.mark.parametrize("mode", ["--dump", "--dump-float"])  # image_decode / image_preprocess
@pytest.mark.parametrize("name", sorted(_error_cases()))
def test_refused(name, mode, tmp_path):
    data, want_status, pillow_fails = _error_cases()[name]
    status, line, _ = run_tool(data, tmp_path, name, mode)
    assert status == want_status, f"{name}: got {line}, want status {want_status}"
    if pillow_fails:
        with pytest.raises(Exception):
            ref.resize_crop_rgb(data)


CORPUS = pathlib.Path(__file__).resolve().parent / "fuzz" / "corpus" / "fuzz_image"


def _png_zlib_broken(data):
    """A PNG whose image data is not a clean zlib stream: the one place we knowingly differ from
    Pillow (it refuses a bad Adler-32 that stb ignores, and accepts a stream cut after the last
    scanline that stb refuses)."""
    if not data.startswith(b"\x89PNG"):
        return False
    pos, idat = 8, b""
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I", data[pos:pos + 4])[0], data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    try:
        zlib.decompress(idat)
        return False
    except zlib.error:
        return True


@pytest.mark.parametrize("path", sorted(CORPUS.iterdir()), ids=lambda p: p.name)
def test_fuzz_corpus_agrees_with_pillow(path, tmp_path):
    """The fuzz seeds, including corrupt files the fuzzer found where Pillow's rules are subtle
    (regress_*): we accept exactly what Pillow accepts, with the same pixels."""
    data = path.read_bytes()
    try:
        want = ref.resize_crop_rgb(data)
    except Exception:  # Pillow refuses the file
        want = None
    status, line, got = run_tool(data, tmp_path, path.name)
    if _png_zlib_broken(data):
        return
    assert (status == IMAGE_OK) == (want is not None), f"C: {line}; Pillow {'ok' if want is not None else 'refuses'}"
    if want is not None:
        assert np.array_equal(got.reshape(224, 224, 3), want)


def test_summary():
    """Prints the max uint8 difference per image type (run pytest with -s to see it)."""
    by_type = {}
    for name, d in RESULTS.items():
        kind = name.split("_")[0] if not name.startswith("shared_") else "shared-" + name.rsplit(".", 1)[-1]
        by_type.setdefault(kind, []).append(d)
    for kind, ds in sorted(by_type.items()):
        print(f"  {kind:12s} {len(ds):3d} images, max uint8 difference {max(ds)}")
    assert all(d == 0 for d in RESULTS.values())
