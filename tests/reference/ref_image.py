"""The Python reference for image preprocessing (SPEC.md section 5), and byte-level builders for
test images that Pillow cannot write (16-bit RGB PNG, 2-bit grey PNG, GIFs with local palettes or
out-of-range indices, 16/32-bit BMP...).

The reference is exactly rinna's japanese_clip preprocessing: PIL.Image.open, then torchvision 0.14
Resize(224, BILINEAR) -> CenterCrop(224) -> convert("RGB") -> ToTensor -> Normalize(MEAN, STD).
"""
import io
import struct
import zlib

import numpy as np
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

SIZE = 224
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

_RESIZE_CROP = transforms.Compose(
    [transforms.Resize(SIZE, interpolation=InterpolationMode.BILINEAR), transforms.CenterCrop(SIZE)]
)
_TO_TENSOR = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def open_image(src):
    """PIL.Image.open on a path or on bytes; loads the pixels (raises on corrupt data)."""
    im = Image.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src)
    im.load()
    return im


def resize_crop_rgb(src):
    """uint8 array [224, 224, 3]: the image after Resize, CenterCrop and convert("RGB")."""
    im = _RESIZE_CROP(open_image(src))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def preprocess(src):
    """float32 torch tensor [3, 224, 224]: the model input."""
    return _TO_TENSOR(_RESIZE_CROP(open_image(src)).convert("RGB"))


# ---- builders ------------------------------------------------------------------------------


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bytes(width, height, color_type, depth, rows, plte=None, trns=None, interlace=False):
    """A PNG from packed scanlines (bytes per row, without filter bytes). Interlaced output uses
    the Adam7 passes of the same pixels (rows must then be 8-bit or 16-bit samples)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 1 if interlace else 0)
    if not interlace:
        raw = b"".join(b"\x00" + bytes(r) for r in rows)
    else:
        channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
        bpp = channels * depth // 8
        assert depth >= 8, "interlaced builder handles whole-byte samples only"
        raw = b""
        for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
                               (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)):
            for y in range(y0, height, dy):
                line = b"".join(bytes(rows[y][x * bpp:(x + 1) * bpp]) for x in range(x0, width, dx))
                if line:
                    raw += b"\x00" + line
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
    if plte is not None:
        out += _png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        out += _png_chunk(b"tRNS", bytes(trns))
    return out + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def pack_bits(values, depth):
    """Packs small integers MSB-first into bytes (PNG/BMP low bit depths)."""
    out, acc, n = bytearray(), 0, 0
    for v in values:
        acc = (acc << depth) | v
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def lzw_encode(indices, min_code_size):
    """GIF LZW: code sizes grow as a GIF decoder expects, the table is cleared when full."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    bits, nbits, out = 0, 0, bytearray()

    def emit(code, size):
        nonlocal bits, nbits
        bits |= code << nbits
        nbits += size
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8

    def reset():
        return {bytes([i]): i for i in range(clear)}, end + 1, min_code_size + 1

    table, nxt, size = reset()
    emit(clear, size)
    w = b""
    for k in indices:
        wk = w + bytes([k])
        if wk in table:
            w = wk
            continue
        emit(table[w], size)
        if nxt < 4096:
            table[wk] = nxt
            nxt += 1
            if nxt - 1 == (1 << size) and size < 12:
                size += 1
        else:
            emit(clear, size)
            table, nxt, size = reset()
        w = bytes([k])
    if w:
        emit(table[w], size)
    emit(end, size)
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)


def gif_bytes(screen, frame_box, indices, global_palette=None, local_palette=None,
              transparency=None, interlace=False, min_code_size=None, truncate_data=False):
    """A one-frame GIF89a. indices: row-major frame pixels; palettes: lists of (r, g, b) whose
    length is a power of two (2..256); frame_box: (x0, y0, w, h)."""
    def table(pal):
        n = len(pal)
        assert n >= 2 and n & (n - 1) == 0
        return (n.bit_length() - 2), b"".join(bytes(c) for c in pal)

    x0, y0, w, h = frame_box
    flags, gtab = 0, b""
    if global_palette is not None:
        bits, gtab = table(global_palette)
        flags = 0x80 | bits
    out = b"GIF89a" + struct.pack("<HHBBB", screen[0], screen[1], flags, 0, 0) + gtab
    if transparency is not None:
        out += b"!\xF9\x04" + struct.pack("<BHB", 1, 0, transparency) + b"\x00"
    lflags, ltab = 0, b""
    if local_palette is not None:
        bits, ltab = table(local_palette)
        lflags = 0x80 | bits
    if interlace:
        lflags |= 0x40
        order = list(range(0, h, 8)) + list(range(4, h, 8)) + list(range(2, h, 4)) + list(range(1, h, 2))
        indices = [indices[y * w + x] for y in order for x in range(w)]
    out += b"," + struct.pack("<HHHHB", x0, y0, w, h, lflags) + ltab
    if min_code_size is None:
        min_code_size = max(2, max(indices).bit_length())
    data = lzw_encode(indices, min_code_size)
    if truncate_data:
        data = data[: len(data) // 2]
    out += bytes([min_code_size])
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out += bytes([len(chunk)]) + chunk
    return out + b"\x00;"


def bmp_bytes(width, height, bits, rows, palette=None, compression=0, masks=None,
              header_size=40, top_down=False):
    """A BMP from unpadded rows (top row first). palette: list of (r, g, b). masks: (r, g, b[, a])
    for BI_BITFIELDS; with a 40-byte header they follow the header, otherwise they are inside it."""
    stride = ((width * bits + 31) // 32) * 4
    pixels = b"".join(bytes(r).ljust(stride, b"\x00") for r in (rows if top_down else rows[::-1]))
    pal = b"".join(bytes((b, g, r, 0)) for r, g, b in (palette or []))
    info = struct.pack("<IiiHHIIiiII", header_size, width, -height if top_down else height, 1, bits,
                       compression, len(pixels), 2835, 2835, len(palette or []), 0)
    extra = b""
    if masks is not None:
        m = struct.pack("<" + "I" * len(masks), *masks)
        if header_size == 40:
            extra = m[:12]
        else:
            info += m.ljust(16, b"\x00")
    info = info.ljust(header_size, b"\x00")
    offset = 14 + len(info) + len(extra) + len(pal)
    head = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset)
    return head + info + extra + pal + pixels


# ---- fuzz seeds ----------------------------------------------------------------------------


def fuzz_seeds():
    """Tiny files (< 2 KB) of every format and mode the decoders handle: the fuzz seed corpus."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA")

    def save(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    pal = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(8)]
    idx = rng.integers(0, 8, 7 * 5).tolist()
    seeds = {
        "rgb.png": save(rgb, "PNG"),
        "rgba.png": save(rgba, "PNG"),
        "la.png": save(rgba.convert("LA"), "PNG"),
        "l.png": save(rgb.convert("L"), "PNG"),
        "p_trns.png": save(rgb.quantize(6), "PNG", transparency=2),
        "bilevel.png": save(rgb.convert("1"), "PNG"),
        "rgb16_interlaced.png": png_bytes(5, 4, 2, 16, [bytes(range(30))] * 4, interlace=True),
        "grey2.png": png_bytes(9, 3, 0, 2, [pack_bits([0, 1, 2, 3] * 2 + [1], 2)] * 3),
        "baseline.jpg": save(rgb, "JPEG"),
        "progressive.jpg": save(rgb, "JPEG", progressive=True),
        "grey.jpg": save(rgb.convert("L"), "JPEG"),
        "cmyk.jpg": save(rgb.convert("CMYK"), "JPEG"),
        "rgb24.bmp": save(rgb, "BMP"),
        "p8.bmp": save(rgb.quantize(5), "BMP"),
        "bilevel.bmp": save(rgb.convert("1"), "BMP"),
        "rgb565.bmp": bmp_bytes(3, 2, 16, [bytes(range(6))] * 2, compression=3, masks=(0xF800, 0x7E0, 0x1F)),
        "bgra32.bmp": bmp_bytes(3, 2, 32, [bytes(range(12))] * 2, compression=3,
                                masks=(0xFF0000, 0xFF00, 0xFF, 0xFF000000), header_size=108),
        "p.gif": save(rgb, "GIF"),
        "trns_offset.gif": gif_bytes((9, 8), (1, 2, 7, 5), idx, global_palette=pal, transparency=3),
        "local_interlaced.gif": gif_bytes((7, 5), (0, 0, 7, 5), idx, local_palette=pal, interlace=True),
    }
    for name, data in seeds.items():
        assert len(data) < 2048, (name, len(data))
    return seeds


if __name__ == "__main__":
    import pathlib
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--fuzz-seeds":
        sys.exit("usage: ref_image.py --fuzz-seeds DIR")
    out = pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for name, data in fuzz_seeds().items():
        (out / name).write_bytes(data)
    print(f"wrote {len(fuzz_seeds())} seeds to {out}")
