#!/usr/bin/env python3
"""Export a Japanese CLOOB / CLIP model into a cloob-server model directory.

A model directory holds:
  model.pt      TorchScript (float32) with encode_image(pixels[B,3,S,S]) and encode_text(ids[B,L], mask[B,L])
  spiece.model  the SentencePiece tokenizer (copied byte for byte)
  cloob.json    metadata: sizes, normalization, special ids, provenance (sha256 of every file), and the
                reference vectors of the start-up self-test ("selftest", see selftest_reference)

Sources (exactly one):
  --checkpoint DIR   a Hugging Face checkpoint directory (config.json + model.safetensors or pytorch_model.bin,
                     spiece.model or --tokenizer). Every weight is copied by its Hugging Face name with shape
                     checks; a missing, unexpected or mis-shaped key is an error that names the key.
  --random tiny|full seeded random weights (--seed): "tiny" is the fast test model, "full" has the real sizes.
  --fetch [REPO_ID]  download from Hugging Face (default rinna/japanese-cloob-vit-b-16) into --cache-dir, then
                     export it. Honours HF_ENDPOINT and HF_TOKEN. Fails fast with exit code 2 when offline.

Exit codes: 0 success, 1 bad input (checkpoint, config, tokenizer, arguments), 2 download failure.

Python API (used by the tests and the reference pipeline):
  load_checkpoint(dir, tokenizer=None) -> (eager CloobModel, architecture dict, info dict)
  random_model(size, seed, vision_layout="vit") -> (eager CloobModel, architecture dict)
  export_model_dir(model, architecture, out, tokenizer, name, random_weights, sources) -> cloob.json dict
  selftest_reference(model, architecture, tokenizer) -> the cloob.json "selftest" section
  selftest_image(size, mean, std) -> the self-test's synthetic image, normalized, [1,3,S,S]
  load_model_dir(dir) -> (eager CloobModel, cloob.json dict)
  read_safetensors(path) -> {name: tensor}
"""
import argparse
import hashlib
import json
import mmap
import os
import pathlib
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional, Tuple

# TorchScript serializes module constants in Python set order, which depends on string hash
# randomization; a fixed PYTHONHASHSEED makes model.pt (and its sha256) reproducible for a given seed
# and torch version. Re-executing here, before torch is imported, keeps the restart cheap.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:])

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import cloob_model  # noqa: E402

EXPORTER_VERSION = "1.1.0"  # 1.1: cloob.json "selftest"
MODEL_DIR_FORMAT = 1

# The service's text input: [CLS] + 76 tokens (SPEC.md section 4).
MAX_SEQ_LEN = 77
PAD_ID, CLS_ID, UNK_ID = 3, 4, 0
# CLIP's normalization, used by rinna's preprocess (SPEC.md section 5).
IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

DEFAULT_REPO = "rinna/japanese-cloob-vit-b-16"
KNOWN_REPOS = ("rinna/japanese-cloob-vit-b-16", "rinna/japanese-clip-vit-b-16")
TOKENIZER_REPO = "rinna/japanese-roberta-base"
# Only the first and last hex digits of spiece.model's sha256 are published in SPEC.md; check those.
SPIECE_SHA256_PREFIX, SPIECE_SHA256_SUFFIX = "b5cbdfa8", "fec1"

# Checkpoint entries that are not weights of the feature path and are skipped on purpose:
# position_ids / token_type_ids are index buffers (positions are always 0..L-1 here); logit_scale
# (CLIP) and inv_tau (CLOOB) only scale the training loss.
IGNORED_KEYS = frozenset({
    "text_model.embeddings.position_ids",
    "text_model.embeddings.token_type_ids",
    "vision_model.embeddings.position_ids",
    "vision_model.vision_model.embeddings.position_ids",
    "logit_scale",
    "inv_tau",
})

# Caps: a header or config larger than this is not a checkpoint we understand.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
MAX_CONFIG_BYTES = 1024 * 1024

EXIT_BAD_INPUT = 1
EXIT_DOWNLOAD = 2


class ExportError(Exception):
    """A problem with the input (checkpoint, config, tokenizer); the message says what and where."""


class DownloadError(Exception):
    """A download failed (offline, timeout, HTTP error); exit code 2."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_tokenizer_path() -> pathlib.Path:
    """../shared/model/google_sp.model relative to the repository (CLOOB_SHARED overrides ../shared)."""
    shared = os.environ.get("CLOOB_SHARED")
    base = pathlib.Path(shared) if shared else HERE.parent.parent / "shared"
    if not base.is_absolute():
        base = HERE.parent / base
    return base / "model" / "google_sp.model"


# ------------------------------------------------------------------------------------------------
# safetensors, read without the safetensors package.
# Format: u64 little-endian header length N, N bytes of JSON {name: {"dtype", "shape", "data_offsets":
# [begin, end]}, optional "__metadata__": {str: str}}, then the raw little-endian tensor bytes;
# offsets are relative to the first byte after the header.
# ------------------------------------------------------------------------------------------------
_ST_DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F64": (torch.float64, 8),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
}


def read_safetensors(path) -> Dict[str, torch.Tensor]:
    """Returns {name: tensor} (tensors own their memory). Raises ExportError on any malformation."""
    path = pathlib.Path(path)
    if sys.byteorder != "little":
        raise ExportError("reading safetensors needs a little-endian host")
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise ExportError(f"{path}: too short for a safetensors file")
        n = int.from_bytes(raw_len, "little")
        if n < 2 or n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise ExportError(f"{path}: bad safetensors header length {n} (file is {size} bytes)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ExportError(f"{path}: safetensors header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise ExportError(f"{path}: safetensors header is not a JSON object")
        data_start = 8 + n
        data_len = size - data_start
        out: Dict[str, torch.Tensor] = {}
        if data_len == 0:
            mm = None
        else:
            # ACCESS_COPY: a private writable mapping, so torch.frombuffer needs no copy up front and
            # does not warn about read-only memory; we clone each tensor out of it.
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if not isinstance(info, dict):
                    raise ExportError(f"{path}: entry {name!r} is not an object")
                dtype_name = info.get("dtype")
                shape = info.get("shape")
                offs = info.get("data_offsets")
                if dtype_name not in _ST_DTYPES:
                    raise ExportError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
                if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                    raise ExportError(f"{path}: tensor {name!r} has a bad shape {shape!r}")
                if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                        or not 0 <= offs[0] <= offs[1] <= data_len):
                    raise ExportError(f"{path}: tensor {name!r} has bad data_offsets {offs!r}")
                dtype, itemsize = _ST_DTYPES[dtype_name]
                count = 1
                for d in shape:
                    count *= d
                if count * itemsize != offs[1] - offs[0]:
                    raise ExportError(f"{path}: tensor {name!r}: shape {shape} x {dtype_name} needs "
                                      f"{count * itemsize} bytes, data_offsets give {offs[1] - offs[0]}")
                if count == 0:
                    out[name] = torch.zeros(shape, dtype=dtype)
                    continue
                t = torch.frombuffer(mm, dtype=dtype, count=count, offset=data_start + offs[0])
                out[name] = t.reshape(shape).clone()
        finally:
            if mm is not None:
                mm.close()
    return out


def read_pytorch_bin(path) -> Dict[str, torch.Tensor]:
    """pytorch_model.bin (torch zip pickle). weights_only where supported (torch >= 1.13): a checkpoint
    must not be able to run code."""
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except TypeError:  # an older torch without weights_only
        sd = torch.load(str(path), map_location="cpu")
    except Exception as e:  # pickle errors, truncated zip ...
        raise ExportError(f"{path}: cannot read the PyTorch checkpoint: {e}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ExportError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ExportError(f"{path}: entry {k!r} is not a named tensor")
    return dict(sd)


# ------------------------------------------------------------------------------------------------
# Hugging Face config.json -> architecture dict.
# ------------------------------------------------------------------------------------------------
# Defaults of the Hugging Face classes, used only where config.json leaves a field out (HF writes
# full configs, but hand-made ones may not). Weights are shape-checked against the result anyway.
_BERT_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                  "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
                  "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
_VIT_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "image_size": 224, "patch_size": 16, "num_channels": 3,
                 "layer_norm_eps": 1e-12, "hidden_act": "gelu", "qkv_bias": True}
# rinna's CLOOBVisionConfig defaults (note patch 32). LayerNorm eps is fixed at 1e-5 by the model code.
_CLIP_VISION_DEFAULTS = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                         "intermediate_size": 3072, "image_size": 224, "patch_size": 32, "num_channels": 3,
                         "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu", "qkv_bias": True}
_VISION_MODEL_TYPES = {"vit": ("vit",), "clip": ("cloob_vision_model", "clip_vision_model")}

# A key that identifies each vision layout.
_LAYOUT_MARKERS = {
    "vit": "vision_model.embeddings.patch_embeddings.projection.weight",
    "clip": "vision_model.vision_model.embeddings.patch_embedding.weight",
}
_TEXT_MARKER = "text_model.embeddings.word_embeddings.weight"


_LAYER_INDEX = re.compile(r"\.\d+\.")
_KNOWN_PATTERNS: Dict[str, frozenset] = {}


def _known_patterns(tower: str) -> frozenset:
    """Key names (layer numbers replaced by N) that the model definition knows for a tower prefix
    ("vision_model." or "text_model."), over all layouts. Built from a 1-layer model, so it cannot
    drift from cloob_model.py."""
    if tower not in _KNOWN_PATTERNS:
        pats = set()
        for layout in cloob_model.VISION_LAYOUTS:
            arch = cloob_model.tiny_architecture(layout)
            arch["text"]["num_hidden_layers"] = arch["vision"]["num_hidden_layers"] = 1
            for k in cloob_model.build_model(arch).state_dict():
                if k.startswith(tower):
                    pats.add(_LAYER_INDEX.sub(".N.", k))
        pats.update(_LAYER_INDEX.sub(".N.", k) for k in IGNORED_KEYS if k.startswith(tower))
        _KNOWN_PATTERNS[tower] = frozenset(pats)
    return _KNOWN_PATTERNS[tower]


def _first_unknown_key(keys, tower: str) -> Optional[str]:
    known = _known_patterns(tower)
    for k in sorted(keys):
        if k.startswith(tower) and _LAYER_INDEX.sub(".N.", k) not in known:
            return k
    return None


def detect_vision_layout(keys) -> str:
    """'vit' or 'clip' from the checkpoint's key names; ExportError naming a key otherwise."""
    keys = set(keys)
    found = [lay for lay, marker in _LAYOUT_MARKERS.items() if marker in keys]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ExportError("checkpoint has keys of both vision layouts: "
                          + " and ".join(_LAYOUT_MARKERS[f] for f in found))
    odd = _first_unknown_key(keys, "vision_model.")
    if odd is not None:
        raise ExportError(f"unknown vision tower layout: key {odd!r} belongs neither to the ViT layout "
                          f"({_LAYOUT_MARKERS['vit']}) nor to the cloob_vision_model layout "
                          f"({_LAYOUT_MARKERS['clip']})")
    raise ExportError(f"cannot tell the vision tower layout: checkpoint has neither key {_LAYOUT_MARKERS['vit']!r} "
                      f"nor {_LAYOUT_MARKERS['clip']!r}")


def detect_text_layout(keys) -> None:
    keys = set(keys)
    if _TEXT_MARKER in keys:
        return
    odd = _first_unknown_key(keys, "text_model.")
    if odd is not None:
        raise ExportError(f"unknown text tower layout: key {odd!r} is not a BERT key (expected {_TEXT_MARKER!r})")
    raise ExportError(f"no text tower in the checkpoint: key {_TEXT_MARKER!r} is missing")


def _sub_config(cfg: Dict[str, Any], name: str) -> Dict[str, Any]:
    sub = cfg.get(name)
    if sub is None:
        sub = cfg.get(name + "_dict")  # older CLIPConfig spelling
    if not isinstance(sub, dict):
        raise ExportError(f"config.json: {name} is missing or not an object")
    return sub


def architecture_from_hf_config(cfg: Dict[str, Any], vision_layout: str) -> Dict[str, Any]:
    """Builds the architecture dict from config.json for the layout the keys showed."""
    mt = cfg.get("model_type")
    if mt not in ("cloob", "clip"):
        raise ExportError(f"config.json: model_type {mt!r} is not supported (expected 'cloob' or 'clip')")
    text = _sub_config(cfg, "text_config")
    vision = _sub_config(cfg, "vision_config")
    tmt = text.get("model_type", "bert")
    if tmt != "bert":
        raise ExportError(f"config.json: text_config.model_type {tmt!r} is not supported (expected 'bert')")
    vmt = vision.get("model_type")
    if vmt is not None and vmt not in _VISION_MODEL_TYPES[vision_layout]:
        raise ExportError(f"config.json: vision_config.model_type {vmt!r} does not match the checkpoint's keys "
                          f"(key {_LAYOUT_MARKERS[vision_layout]!r} means "
                          f"{' or '.join(_VISION_MODEL_TYPES[vision_layout])})")
    tdef = _BERT_DEFAULTS
    vdef = _VIT_DEFAULTS if vision_layout == "vit" else _CLIP_VISION_DEFAULTS
    arch = {
        "vision_layout": vision_layout,
        "projection_dim": cfg.get("projection_dim", 512),
        "text": {k: text.get(k, d) for k, d in tdef.items()},
        "vision": {k: vision.get(k, d) for k, d in vdef.items()},
    }
    if vision_layout == "clip":
        # The reference builds nn.LayerNorm(dim): eps 1e-5 whatever the config says (SPEC.md section 2).
        arch["vision"]["layer_norm_eps"] = cloob_model.CLIP_LAYOUT_LN_EPS
        arch["vision"]["qkv_bias"] = True
    try:
        return cloob_model.normalize_architecture(arch)
    except ValueError as e:
        raise ExportError(f"config.json: {e}") from None


# ------------------------------------------------------------------------------------------------
# Strict loading.
# ------------------------------------------------------------------------------------------------
def load_state_strict(model: torch.nn.Module, state: Dict[str, torch.Tensor]) -> None:
    """Copies every checkpoint tensor into the parameter of the same name. Missing, unexpected,
    mis-shaped, non-float or non-finite entries raise ExportError naming the key."""
    expected = model.state_dict()
    given = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    missing = sorted(set(expected) - set(given))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ExportError(f"checkpoint is missing key {missing[0]!r}{more}")
    extra = sorted(set(given) - set(expected))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ExportError(f"checkpoint has unexpected key {extra[0]!r}{more}")
    for k in sorted(expected):
        src, dst = given[k], expected[k]
        if tuple(src.shape) != tuple(dst.shape):
            raise ExportError(f"checkpoint key {k!r} has shape {list(src.shape)}, expected {list(dst.shape)}")
        if not src.is_floating_point():
            raise ExportError(f"checkpoint key {k!r} has dtype {src.dtype}, expected a floating-point tensor")
        if not bool(torch.isfinite(src).all()):
            raise ExportError(f"checkpoint key {k!r} contains NaN or Inf")
    with torch.no_grad():
        for k, dst in expected.items():
            dst.copy_(given[k].to(torch.float32))


def _read_config(path: pathlib.Path) -> Dict[str, Any]:
    if not path.is_file():
        raise ExportError(f"{path} not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ExportError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ExportError(f"{path}: not a JSON object")
    return cfg


def load_checkpoint(ckpt_dir, tokenizer=None) -> Tuple[torch.nn.Module, Dict[str, Any], Dict[str, Any]]:
    """Loads a Hugging Face checkpoint directory into an eager CloobModel (eval mode, float32).

    Returns (model, architecture, info) where info has "weights" (the file read), "tokenizer" (path)
    and "sources" ({filename: sha256}) for provenance."""
    ckpt_dir = pathlib.Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise ExportError(f"checkpoint directory {ckpt_dir} not found")
    cfg_path = ckpt_dir / "config.json"
    cfg = _read_config(cfg_path)
    st_path, bin_path = ckpt_dir / "model.safetensors", ckpt_dir / "pytorch_model.bin"
    if st_path.is_file():
        weights_path = st_path
        state = read_safetensors(st_path)
    elif bin_path.is_file():
        weights_path = bin_path
        state = read_pytorch_bin(bin_path)
    else:
        raise ExportError(f"{ckpt_dir}: neither model.safetensors nor pytorch_model.bin found")
    layout = detect_vision_layout(state.keys())
    detect_text_layout(state.keys())
    arch = architecture_from_hf_config(cfg, layout)
    model = cloob_model.build_model(arch)
    load_state_strict(model, state)
    tok = pathlib.Path(tokenizer) if tokenizer else ckpt_dir / "spiece.model"
    if not tok.is_file():
        raise ExportError(f"tokenizer {tok} not found (pass --tokenizer PATH)")
    info = {
        "weights": str(weights_path),
        "tokenizer": str(tok),
        "sources": {"config.json": sha256_file(cfg_path), weights_path.name: sha256_file(weights_path)},
    }
    return model, arch, info


def random_model(size: str, seed: int, vision_layout: str = "vit") -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """A seeded random-weight model: size 'tiny' (tests) or 'full' (real sizes)."""
    if size == "tiny":
        arch = cloob_model.tiny_architecture(vision_layout)
    elif size == "full":
        arch = cloob_model.full_architecture(vision_layout)
    else:
        raise ExportError(f"--random must be 'tiny' or 'full', got {size!r}")
    arch = cloob_model.normalize_architecture(arch)
    model = cloob_model.build_model(arch)
    cloob_model.randomize_(model, seed)
    return model, arch


# ------------------------------------------------------------------------------------------------
# Tokenizer checks.
# ------------------------------------------------------------------------------------------------
def _load_sentencepiece(path: pathlib.Path):
    """A SentencePieceProcessor for path, or None when the sentencepiece module is not installed.
    Raises ExportError when the file is not a SentencePiece model."""
    try:
        import sentencepiece as spm  # Debian python3-sentencepiece
    except ImportError:
        return None
    sp = spm.SentencePieceProcessor()
    try:
        ok = sp.Load(str(path))
    except Exception as e:  # OSError / RuntimeError from the C++ side
        raise ExportError(f"tokenizer {path} is not a SentencePiece model: {e}") from None
    if not ok:
        raise ExportError(f"tokenizer {path} is not a SentencePiece model")
    return sp


def check_tokenizer(path: pathlib.Path, vocab_size: int) -> Dict[str, Any]:
    """Checks that the SentencePiece model fits the text tower and has the special ids the service
    uses; returns {"sha256", "pieces", "spec_sha256_match"}."""
    if not path.is_file():
        raise ExportError(f"tokenizer {path} not found")
    digest = sha256_file(path)
    info: Dict[str, Any] = {"sha256": digest,
                            "spec_sha256_match": digest.startswith(SPIECE_SHA256_PREFIX)
                            and digest.endswith(SPIECE_SHA256_SUFFIX)}
    sp = _load_sentencepiece(path)
    if sp is None:
        return info  # the C++ shim validates it again on load
    n = sp.GetPieceSize()
    info["pieces"] = n
    if n > vocab_size:
        raise ExportError(f"tokenizer {path} has {n} pieces but the text tower's vocab_size is {vocab_size}")
    for want_id, piece in ((PAD_ID, "[PAD]"), (CLS_ID, "[CLS]"), (UNK_ID, "<unk>")):
        if n <= want_id or sp.IdToPiece(want_id) != piece:
            got = sp.IdToPiece(want_id) if n > want_id else None
            raise ExportError(f"tokenizer {path}: id {want_id} should be {piece!r}, is {got!r}")
    return info


# ------------------------------------------------------------------------------------------------
# Start-up self-test reference vectors (cloob.json "selftest").
#
# The server (server/selftest.c) and `cloob-embed --selftest` re-embed these inputs with the C
# tokenizer and the TorchScript model on the serving device, and refuse to report ready when a
# cosine falls below the tolerance or a token id differs: that catches a wrong libtorch build, a
# broken BLAS, a bad float16 conversion or a mismatched tokenizer before any client sees an answer.
# The reference is the EAGER float32 model on the CPU, each input alone (no padding).
# ------------------------------------------------------------------------------------------------
# Short texts without special-token strings: for them SPEC.md section 4 reduces to per-code-point
# str.lower, then SentencePiece (the splitting and whitespace stripping of step 2 only act next to
# a special token). They cover Japanese, ASCII with upper case, NFKC (full-width letters, half-width
# katakana) and the empty text ([CLS] alone).
SELFTEST_TEXTS = ("犬の写真", "a photo of a cat", "Ｈｅｌｌｏ ＷＯＲＬＤ ｶﾀｶﾅ", "")
_SPECIAL_STRINGS = ("<s>", "</s>", "<unk>", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
# The synthetic image, rebuilt by the C side from this rule without any file. The id before the
# colon is what server/selftest.c checks; the rest documents it.
SELFTEST_IMAGE_RULE = ("gradient-v1: rgb[y][x][c] = (7*x + 3*y + 85*c) mod 256, uint8 HWC of image_size x "
                       "image_size, then (v/255 - mean[c]) / std[c] as float32, CHW")
# Smallest cosine between a stored feature and the one computed at start-up. Measured on the CPU
# (float32 TorchScript through the C path vs this eager model): 1 - cosine below 1e-12 for the
# tiny and the full-size model, so 1e-4 leaves room for other BLAS/GPU kernels and TF32. A wrong
# token is caught by the exact ids comparison, not by the cosine (on the tiny random model one
# changed token moves the cosine by only ~1e-5). float16 rounds every activation, hence the looser
# bound for it (not yet measured on a GPU).
SELFTEST_TOLERANCE = 0.9999
SELFTEST_TOLERANCE_FLOAT16 = 0.999


def selftest_token_ids(text: str, sp) -> list:
    """The model input ids of a simple text (no special-token strings): [CLS] + the first
    MAX_SEQ_LEN - 1 SentencePiece ids of the per-code-point lower-cased text, without padding."""
    for special in _SPECIAL_STRINGS:
        if special in text:
            raise ValueError(f"self-test text {text!r} contains {special!r}: only simple texts are supported")
    lowered = "".join(ch.lower() for ch in text)  # per code point: no final-sigma context (SPEC.md 4)
    return [CLS_ID] + list(sp.encode(lowered))[:MAX_SEQ_LEN - 1]


def selftest_image(size: int, mean, std) -> torch.Tensor:
    """SELFTEST_IMAGE_RULE as the model input [1, 3, size, size], computed as ToTensor + Normalize do."""
    y = torch.arange(size).view(size, 1, 1)
    x = torch.arange(size).view(1, size, 1)
    c = torch.arange(3).view(1, 1, 3)
    rgb = ((7 * x + 3 * y + 85 * c) % 256).to(torch.uint8)        # HWC
    t = rgb.permute(2, 0, 1).contiguous().to(torch.float32).div(255)  # ToTensor
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return t.sub(m).div(s).unsqueeze(0)                               # Normalize


def selftest_reference(model: torch.nn.Module, architecture: Dict[str, Any], tokenizer) -> Dict[str, Any]:
    """The cloob.json "selftest" section: unnormalized float32 features of the eager model for the
    synthetic image and SELFTEST_TEXTS, with the texts' ids. Without the sentencepiece module the
    texts are left out (the image check still runs) and a warning is printed."""
    model = model.float().eval()
    size = architecture["vision"]["image_size"]
    section: Dict[str, Any] = {"image_rule": SELFTEST_IMAGE_RULE, "tolerance_cosine": SELFTEST_TOLERANCE,
                               "tolerance_cosine_float16": SELFTEST_TOLERANCE_FLOAT16}
    with torch.no_grad():
        section["image_feature"] = model.encode_image(selftest_image(size, IMAGE_MEAN, IMAGE_STD))[0].tolist()
        sp = _load_sentencepiece(pathlib.Path(tokenizer))
        texts = []
        if sp is None:
            print("export_model: warning: python3-sentencepiece is missing: the self-test will not check "
                  "texts", file=sys.stderr)
        else:
            for text in SELFTEST_TEXTS:
                ids = selftest_token_ids(text, sp)
                t_ids = torch.tensor([ids], dtype=torch.long)
                feat = model.encode_text(t_ids, torch.ones_like(t_ids))[0].tolist()
                texts.append({"text": text, "ids": ids, "feature": feat})
        section["texts"] = texts
    return section


# ------------------------------------------------------------------------------------------------
# Writing a model directory.
# ------------------------------------------------------------------------------------------------
def script_model(model: torch.nn.Module) -> torch.jit.ScriptModule:
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)  # the saved module then carries no autograd state for libtorch
    return torch.jit.script(model)


def export_model_dir(model: torch.nn.Module, architecture: Dict[str, Any], out, tokenizer, name: str,
                     random_weights: bool, sources: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Scripts `model` and writes <out>/{model.pt, spiece.model, cloob.json} atomically: everything is
    written into a temporary sibling directory that is renamed into place at the end, so a crash
    never leaves a half-written model directory. Returns the cloob.json dict."""
    out = pathlib.Path(out)
    tokenizer = pathlib.Path(tokenizer)
    arch = cloob_model.normalize_architecture(architecture)
    if arch["text"]["max_position_embeddings"] < MAX_SEQ_LEN:
        raise ExportError(f"text max_position_embeddings {arch['text']['max_position_embeddings']} is below the "
                          f"service's sequence length {MAX_SEQ_LEN}")
    tok_info = check_tokenizer(tokenizer, arch["text"]["vocab_size"])
    scripted = script_model(model)
    selftest = selftest_reference(model, arch, tokenizer)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=str(out.parent)))
    try:
        torch.jit.save(scripted, str(tmp / "model.pt"))
        shutil.copyfile(tokenizer, tmp / "spiece.model")
        all_sources = dict(sources or {})
        all_sources["spiece.model"] = tok_info["sha256"]
        meta = {
            "format": MODEL_DIR_FORMAT,
            "name": name,
            "embed_dim": arch["projection_dim"],
            "image_size": arch["vision"]["image_size"],
            "mean": IMAGE_MEAN,
            "std": IMAGE_STD,
            "max_seq_len": MAX_SEQ_LEN,
            "pad_id": PAD_ID,
            "cls_id": CLS_ID,
            "unk_id": UNK_ID,
            "random_weights": bool(random_weights),
            "model_sha256": sha256_file(tmp / "model.pt"),
            "exporter_version": EXPORTER_VERSION,
            "sources": all_sources,
            "architecture": arch,
            "dtype": "float32",
            "torch_version": torch.__version__,
            "tokenizer_spec_sha256_match": tok_info["spec_sha256_match"],
            "selftest": selftest,
        }
        with open(tmp / "cloob.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, ensure_ascii=False)
            f.write("\n")
        for p in tmp.iterdir():  # flush the files before the rename makes them visible
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the server may run as another user
        # Swap into place. A directory cannot be replaced atomically by rename(2) if it is not empty,
        # so move the old one aside first and delete it only after the new one is in place.
        old = None
        if out.exists():
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=str(out.parent)))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
        tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return meta
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def load_model_dir(model_dir) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Rebuilds the EAGER model of an exported directory: architecture from cloob.json, weights from
    model.pt (its state_dict keys are the same Hugging Face names). Returns (model, cloob.json dict)."""
    model_dir = pathlib.Path(model_dir)
    meta = json.loads((model_dir / "cloob.json").read_text(encoding="utf-8"))
    model = cloob_model.build_model(meta["architecture"])
    scripted = torch.jit.load(str(model_dir / "model.pt"), map_location="cpu")
    load_state_strict(model, dict(scripted.state_dict()))
    for p in model.parameters():
        p.requires_grad_(False)  # a reference pipeline only runs inference
    return model, meta


def sample_inputs(arch: Dict[str, Any], seed: int = 0):
    """A small deterministic batch for self-checks: 2 images and 3 texts of different real lengths,
    right-padded to MAX_SEQ_LEN with [PAD] (mask 0) and [CLS] first."""
    g = torch.Generator().manual_seed(seed)
    s = arch["vision"]["image_size"]
    pixels = torch.randn(2, arch["vision"]["num_channels"], s, s, generator=g)
    lengths = [1, 5, MAX_SEQ_LEN]
    ids = torch.full((len(lengths), MAX_SEQ_LEN), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(lengths), MAX_SEQ_LEN), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0] = CLS_ID
        if n > 1:
            ids[i, 1:n] = torch.randint(5, arch["text"]["vocab_size"], (n - 1,), generator=g)
        mask[i, :n] = 1
    return pixels, ids, mask


def check_export(model: torch.nn.Module, arch: Dict[str, Any], out) -> float:
    """Reloads <out>/model.pt and returns the max |scripted - eager| over images and texts."""
    loaded = torch.jit.load(str(pathlib.Path(out) / "model.pt"), map_location="cpu")
    pixels, ids, mask = sample_inputs(arch)
    with torch.no_grad():
        d_img = (loaded.encode_image(pixels) - model.encode_image(pixels)).abs().max().item()
        d_txt = (loaded.encode_text(ids, mask) - model.encode_text(ids, mask)).abs().max().item()
    return max(d_img, d_txt)


# ------------------------------------------------------------------------------------------------
# Downloading from Hugging Face.
# ------------------------------------------------------------------------------------------------
def _resolve_with_deadline(host: str, port: int, timeout: float) -> None:
    """getaddrinfo() ignores socket timeouts and can block for a long time on a machine without
    network; run it in a daemon thread and give up after `timeout` seconds."""
    result: Dict[str, Any] = {}

    def work():
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result["ok"] = True
        except OSError as e:
            result["err"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise DownloadError(f"cannot resolve {host}: no answer within {timeout:.0f} s")
    if "err" in result:
        raise DownloadError(f"cannot resolve {host}: {result['err']}")


class _Downloader:
    """Resumable HTTP(S) downloads into a cache directory with bounded waits.

    `timeout` bounds name resolution, connecting, and every single read (a stalled transfer fails
    instead of hanging); a complete file is never downloaded twice."""

    def __init__(self, endpoint: str, cache_dir: pathlib.Path, token: Optional[str], timeout: float,
                 quiet: bool = False):
        self.endpoint = endpoint.rstrip("/")
        self.cache_dir = cache_dir
        self.token = token
        self.timeout = timeout
        self.quiet = quiet
        self._resolved = set()

    def url(self, repo: str, filename: str) -> str:
        return f"{self.endpoint}/{repo}/resolve/main/{urllib.parse.quote(filename)}"

    def _log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def _open(self, url: str, start: int):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise DownloadError(f"bad download URL {url!r} (check HF_ENDPOINT)")
        if parsed.hostname not in self._resolved:
            _resolve_with_deadline(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80),
                                   self.timeout)
            self._resolved.add(parsed.hostname)
        req = urllib.request.Request(url, headers={"User-Agent": f"cloob-server-exporter/{EXPORTER_VERSION}"})
        if self.token:
            # Unredirected: Hugging Face redirects large files to a CDN with a signed URL, which must
            # not receive (and may reject) our token.
            req.add_unredirected_header("Authorization", f"Bearer {self.token}")
        if start > 0:
            req.add_header("Range", f"bytes={start}-")
        return urllib.request.urlopen(req, timeout=self.timeout)

    def _dest(self, repo: str, filename: str) -> pathlib.Path:
        return self.cache_dir / repo.replace("/", "--") / filename

    def cached(self, repo: str, filename: str) -> bool:
        """True if the complete file is in the cache (a .part does not count)."""
        return self._dest(repo, filename).is_file()

    def fetch(self, repo: str, filename: str) -> pathlib.Path:
        """Returns the cached file, downloading (or resuming) it first. Raises DownloadError; an
        HTTP 404 raises FileNotFoundError so the caller can try another file name."""
        dest = self._dest(repo, filename)
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        start = part.stat().st_size if part.is_file() else 0
        url = self.url(repo, filename)
        self._log(f"fetching {url}" + (f" (resuming at {start} bytes)" if start else ""))
        try:
            resp = self._open(url, start)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start > 0:  # the .part already holds the whole file
                os.replace(part, dest)
                return dest
            if e.code == 404:
                raise FileNotFoundError(url) from None
            hint = " (set HF_TOKEN for gated or private repositories)" if e.code in (401, 403) else ""
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}{hint}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(f"{url}: {reason}") from None
        with resp:
            status = getattr(resp, "status", 200)
            if start > 0 and status != 206:
                start = 0  # the server ignored Range: start over
            total = resp.headers.get("Content-Length")
            total = int(total) + start if total and total.isdigit() else None
            etag = (resp.headers.get("X-Linked-Etag") or resp.headers.get("ETag") or "").strip('W/"')
            mode = "ab" if start > 0 else "wb"
            done, last = start, time.monotonic()
            try:
                with open(part, mode) as f:
                    while True:
                        chunk = resp.read(1 << 20)
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        if time.monotonic() - last > 5:
                            last = time.monotonic()
                            pct = f" ({100 * done // total}%)" if total else ""
                            self._log(f"  {filename}: {done >> 20} MiB{pct}")
            except (OSError, urllib.error.URLError) as e:
                raise DownloadError(f"{url}: transfer interrupted after {done} bytes ({e}); "
                                    f"run again to resume") from None
        if total is not None and done != total:
            raise DownloadError(f"{url}: got {done} of {total} bytes; run again to resume")
        # Hugging Face's LFS files carry their sha256 as ETag; verify when it looks like one.
        if re.fullmatch(r"[0-9a-f]{64}", etag):
            got = sha256_file(part)
            if got != etag:
                part.unlink()
                raise DownloadError(f"{url}: sha256 {got} does not match the server's {etag}; deleted, run again")
        os.replace(part, dest)
        return dest


def fetch_checkpoint(repo: str, cache_dir: pathlib.Path, timeout: float) -> pathlib.Path:
    """Downloads config.json, model.safetensors (or pytorch_model.bin) and spiece.model into one
    checkpoint directory under cache_dir and returns it."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*", repo):
        raise ExportError(f"--fetch: {repo!r} is not a Hugging Face repository id (owner/name)")
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    dl = _Downloader(endpoint, cache_dir, os.environ.get("HF_TOKEN") or None, timeout)
    ckpt = cache_dir / "checkpoints" / repo.replace("/", "--")
    ckpt.mkdir(parents=True, exist_ok=True)

    def link(src: pathlib.Path, name: str) -> None:
        dst = ckpt / name
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        os.symlink(src.resolve(), dst)

    try:
        link(dl.fetch(repo, "config.json"), "config.json")
        for stale in ("model.safetensors", "pytorch_model.bin"):
            if (ckpt / stale).is_symlink():
                (ckpt / stale).unlink()
        if dl.cached(repo, "pytorch_model.bin") and not dl.cached(repo, "model.safetensors"):
            # an earlier run found no safetensors and fetched the .bin: no need to ask again
            link(dl.fetch(repo, "pytorch_model.bin"), "pytorch_model.bin")
        else:
            try:
                link(dl.fetch(repo, "model.safetensors"), "model.safetensors")
            except FileNotFoundError:
                link(dl.fetch(repo, "pytorch_model.bin"), "pytorch_model.bin")
        spiece = dl.fetch(TOKENIZER_REPO, "spiece.model")
    except FileNotFoundError as e:
        raise DownloadError(f"{e}: HTTP 404 (is {repo!r} the right repository?)") from None
    digest = sha256_file(spiece)
    if not (digest.startswith(SPIECE_SHA256_PREFIX) and digest.endswith(SPIECE_SHA256_SUFFIX)):
        raise ExportError(f"{spiece}: sha256 {digest} is not rinna's spiece.model "
                          f"({SPIECE_SHA256_PREFIX}...{SPIECE_SHA256_SUFFIX}); delete it and fetch again")
    link(spiece, "spiece.model")
    return ckpt


# ------------------------------------------------------------------------------------------------
# Command line.
# ------------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="export_model.py",
        description="Export rinna's Japanese CLOOB/CLIP (or a random test model) into a cloob-server model "
                    "directory: model.pt (TorchScript), spiece.model, cloob.json.",
        epilog="examples:\n"
               "  export_model.py --random tiny --seed 1 --out build/models/tiny\n"
               "  export_model.py --checkpoint ~/hf/japanese-cloob-vit-b-16 --out models/cloob\n"
               "  export_model.py --fetch rinna/japanese-clip-vit-b-16 --out models/clip --check\n"
               "exit codes: 0 ok, 1 bad input, 2 download failed",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR",
                     help="Hugging Face checkpoint directory (config.json, model.safetensors or pytorch_model.bin, "
                          "spiece.model unless --tokenizer is given)")
    src.add_argument("--random", choices=("tiny", "full"),
                     help="random weights: 'tiny' (fast test model, real vocabulary, 224x224 input) or 'full' "
                          "(ViT-B/16 + BERT-base sizes); answers are meaningless, cloob.json says random_weights")
    src.add_argument("--fetch", metavar="REPO_ID", nargs="?", const=DEFAULT_REPO,
                     help=f"download from Hugging Face and export (default {DEFAULT_REPO}; also "
                          f"{KNOWN_REPOS[1]}); uses HF_ENDPOINT and HF_TOKEN if set")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write (replaced atomically)")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="SentencePiece model (default: the checkpoint's spiece.model, or for --random "
                        "../shared/model/google_sp.model)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    p.add_argument("--vision-layout", choices=cloob_model.VISION_LAYOUTS, default="vit",
                   help="vision tower of a --random model: 'vit' (CLOOB, default) or 'clip' (cloob_vision_model)")
    p.add_argument("--name", help="model name in cloob.json (default: repo id, checkpoint folder name, "
                                  "or random-tiny / random-full)")
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "cloob-server"),
                   help="download cache for --fetch (default ~/.cache/cloob-server); partial files resume")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds allowed for name resolution, connecting and each read during --fetch (default 10)")
    p.add_argument("--check", action="store_true",
                   help="reload model.pt after export and compare it with the eager model (prints max abs diff)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    torch.manual_seed(args.seed)
    try:
        if args.random:
            model, arch = random_model(args.random, args.seed, args.vision_layout)
            tokenizer = pathlib.Path(args.tokenizer) if args.tokenizer else default_tokenizer_path()
            name = args.name or f"random-{args.random}"
            sources: Dict[str, str] = {}
            random_weights = True
        else:
            if args.fetch:
                ckpt = fetch_checkpoint(args.fetch, pathlib.Path(args.cache_dir).expanduser(), args.timeout)
                name = args.name or args.fetch
            else:
                ckpt = pathlib.Path(args.checkpoint)
                name = args.name or ckpt.resolve().name
            model, arch, info = load_checkpoint(ckpt, args.tokenizer)
            tokenizer = pathlib.Path(info["tokenizer"])
            sources = info["sources"]
            random_weights = False
        meta = export_model_dir(model, arch, args.out, tokenizer, name, random_weights, sources)
    except DownloadError as e:
        print(f"export_model: download failed: {e}\n"
              f"  offline? download config.json, model.safetensors and spiece.model by other means and use "
              f"--checkpoint DIR, or point HF_ENDPOINT at a mirror", file=sys.stderr)
        return EXIT_DOWNLOAD
    except (ExportError, ValueError, OSError) as e:
        print(f"export_model: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    size = (pathlib.Path(args.out) / "model.pt").stat().st_size
    print(f"exported {meta['name']} ({arch['vision_layout']} vision, embed_dim {meta['embed_dim']}) to {args.out}: "
          f"model.pt {size / 1e6:.1f} MB, sha256 {meta['model_sha256'][:16]}..., {time.monotonic() - t0:.1f} s")
    if args.check:
        diff = check_export(model, arch, args.out)
        print(f"check: max abs diff TorchScript vs eager = {diff:.3g}")
        if not diff <= 1e-4:
            print("export_model: error: the TorchScript model does not match the eager model", file=sys.stderr)
            return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
