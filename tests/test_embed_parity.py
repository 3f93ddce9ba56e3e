"""End to end for the foundation: `cloob-embed` (C preprocessing + C tokenizer + TorchScript through
the shim) against the Python reference pipeline (PIL + torchvision + the sentencepiece reference
tokenizer + the exporter's EAGER model), which is what rinna's japanese_clip computes.

Set CLOOB_FULL_MODEL=DIR to also run the parity check on a full-size model directory (for example
`tools/export_model.py --random full --out /tmp/full`); CI uses the tiny model only.
"""
import io
import json
import os
import pathlib
import struct
import subprocess
import zlib

import numpy as np
import pytest
import sentencepiece as spm
import torch
from PIL import Image

import export_model
import ref_image
import ref_tokenizer
from conftest import BUILD

TEXTS = [
    "犬", "猫", "犬の写真", "テンチの写真", "Hello World!  ＡＢＣ ｶﾀｶﾅ", "😀😀 x 😀", "",
    "  空白  のテスト  ", "iPhoneとGPU", "[CLS]4年に1度オリンピックは開かれる。",
    "茶トラの猫が窓辺で眠っている写真", "長い文章" * 60,  # over 77 tokens: truncated
]


def _embed_bin():
    p = BUILD / "cloob-embed"
    if not p.exists():
        pytest.fail(f"{p} missing: run make")
    return p


def run_embed(model_dir, *args, check=True):
    r = subprocess.run([str(_embed_bin()), "--model", str(model_dir), "--device", "cpu", *args],
                       capture_output=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return json.loads(r.stdout)
    return r


def cosine(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def generated_images(tmp_path_factory):
    """Images of the shapes and modes the issue names, written by Pillow."""
    d = tmp_path_factory.mktemp("parity-images")
    rng = np.random.default_rng(7)
    out = []

    def save(name, im, **kw):
        p = d / name
        im.save(p, **kw)
        out.append(p)

    rgb = lambda w, h: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    save("1x1.png", rgb(1, 1))
    save("2x3.png", rgb(2, 3))
    save("224x224.png", rgb(224, 224))
    save("225x224.jpg", rgb(225, 224), quality=90)
    save("wide.png", rgb(1200, 5))
    save("tall.jpg", rgb(7, 900), quality=85)
    save("gray.png", Image.fromarray(rng.integers(0, 256, (300, 250), dtype=np.uint8), "L"))
    save("gray.jpg", Image.fromarray(rng.integers(0, 256, (260, 330), dtype=np.uint8), "L"), quality=80)
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (240, 310, 4), dtype=np.uint8), "RGBA"))
    save("palette.png", rgb(320, 240).convert("P", palette=Image.ADAPTIVE, colors=32))
    save("progressive.jpg", rgb(500, 300), quality=75, progressive=True)
    save("image.bmp", rgb(230, 260))
    save("image.gif", rgb(260, 230).convert("P", palette=Image.ADAPTIVE, colors=64))
    return out


def shared_images(images_dir):
    return sorted(p for p in images_dir.iterdir()
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name != "truncated.jpg")


def reference_image_features(model, paths):
    px = torch.stack([ref_image.preprocess(str(p)) for p in paths])
    with torch.no_grad():
        return model.encode_image(px).numpy()


def reference_text_features(model, sp, texts):
    ids, mask = ref_tokenizer.tokenize(texts, sp, 77)
    with torch.no_grad():
        return model.encode_text(torch.tensor(ids), torch.tensor(mask)).numpy()


def check_parity(model_dir, images, texts, min_cos=0.99999):
    model, meta = export_model.load_model_dir(model_dir)
    model.eval()
    sp = spm.SentencePieceProcessor(model_file=str(pathlib.Path(model_dir) / "spiece.model"))
    args = ["--raw", "--tokens", "--batch", "4"]
    for p in images:
        args += ["--image", str(p)]
    for t in texts:
        args += ["--text", t]
    got = run_embed(model_dir, *args)
    assert got["dim"] == meta["embed_dim"] and got["normalized"] is False
    assert len(got["images"]) == len(images) and len(got["texts"]) == len(texts)
    worst = 1.0
    if images:
        ref = reference_image_features(model, images)
        for i, item in enumerate(got["images"]):
            c = cosine(item["embedding"], ref[i])
            worst = min(worst, c)
            assert c > min_cos, f"{images[i]}: cosine {c}"
    if texts:
        ref = reference_text_features(model, sp, texts)
        for i, item in enumerate(got["texts"]):
            ids, _, n_tokens, n_dropped = ref_tokenizer.tokenize_one(texts[i], sp, 77)
            assert item["ids"] == ids[:n_tokens], texts[i]
            assert item["tokens"] == n_tokens and item["truncated"] == n_dropped
            c = cosine(item["embedding"], ref[i])
            worst = min(worst, c)
            assert c > min_cos, f"{texts[i]!r}: cosine {c}"
    return worst


def test_parity_tiny_model(tiny_model_dir, images_dir, generated_images):
    worst = check_parity(tiny_model_dir, shared_images(images_dir) + generated_images, TEXTS)
    print(f"worst cosine (tiny model) = 1 - {1 - worst:.3e}")


@pytest.mark.skipif(not os.environ.get("CLOOB_FULL_MODEL"), reason="set CLOOB_FULL_MODEL=DIR")
def test_parity_full_model(images_dir):
    worst = check_parity(os.environ["CLOOB_FULL_MODEL"], shared_images(images_dir), TEXTS)
    print(f"worst cosine (full model) = 1 - {1 - worst:.3e}")


def test_normalized_output_and_batch_independence(tiny_model_dir, images_dir):
    dog = images_dir / "dog.jpeg"
    one = run_embed(tiny_model_dir, "--image", str(dog), "--text", "犬")
    many = run_embed(tiny_model_dir, "--batch", "3", "--image", str(images_dir / "chelsea.png"),
                     "--image", str(dog), "--image", str(images_dir / "rocket.jpg"),
                     "--text", "猫", "--text", "犬", "--text", "象")
    v = np.asarray(one["images"][0]["embedding"])
    assert abs(np.linalg.norm(v) - 1) < 1e-5
    assert cosine(v, many["images"][1]["embedding"]) > 0.99999
    assert cosine(one["texts"][0]["embedding"], many["texts"][1]["embedding"]) > 0.99999


def _png_header_only(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def _jpeg_header_only(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = data.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    data[i + 5:i + 7] = struct.pack(">H", h)
    data[i + 7:i + 9] = struct.pack(">H", w)
    return bytes(data)


@pytest.mark.parametrize("name,payload,word", [
    ("empty.jpg", b"", "empty"),
    ("text.png", b"this is not an image at all\n", "unsupported"),
    ("huge.png", _png_header_only(100000, 100000), "pixel"),
    ("huge.jpg", None, "pixel"),
    ("webp.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8 " + b"\x00" * 14, "unsupported"),
])
def test_bad_images_are_clear_errors(tiny_model_dir, tmp_path, name, payload, word):
    p = tmp_path / name
    p.write_bytes(payload if payload is not None else _jpeg_header_only(65000, 65000))
    r = run_embed(tiny_model_dir, "--image", str(p), check=False)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 4, err
    assert name in err and word in err.lower(), err
    assert r.stdout == b""


def test_truncated_jpeg_is_refused(tiny_model_dir, images_dir):
    r = run_embed(tiny_model_dir, "--image", str(images_dir / "truncated.jpg"), check=False)
    assert r.returncode == 4
    assert "truncated.jpg" in r.stderr.decode()


def test_missing_file_and_bad_usage(tiny_model_dir, tmp_path):
    r = run_embed(tiny_model_dir, "--image", str(tmp_path / "nope.jpg"), check=False)
    assert r.returncode == 4 and b"nope.jpg" in r.stderr
    r = subprocess.run([str(_embed_bin()), "--image", "x.jpg"], capture_output=True)
    assert r.returncode == 2 and b"--model" in r.stderr
    r = subprocess.run([str(_embed_bin()), "--model", str(tmp_path)], capture_output=True)
    assert r.returncode == 3 and b"model" in r.stderr


def test_info_reports_blas_and_metadata(tiny_model_dir):
    info = run_embed(tiny_model_dir, "--info")
    assert info["random_weights"] is True
    assert info["metadata"]["embed_dim"] == info["dim"]
    rt = info["runtime"]
    assert "openblas" in json.dumps(rt).lower(), rt
    assert rt["intra_op_threads"] >= 1
