#!/usr/bin/env python3
"""Write a tiny random checkpoint in Hugging Face format, for testing tools/export_model.py.

The output looks like a (very small) rinna/japanese-cloob-vit-b-16 download:
  config.json                              model_type cloob|clip, text_config (bert), vision_config
                                           (vit | cloob_vision_model), projection_dim
  model.safetensors | pytorch_model.bin    the weights under their Hugging Face names
  spiece.model                             a copy of the tokenizer

The key list is written here from SPEC.md section 2 on purpose, NOT derived from tools/cloob_model.py:
if the model definition's names drifted from the real checkpoint's, exporting this checkpoint fails.
safetensors files are written by hand (the safetensors package is not installed), which also gives
the exporter's reader an independent writer to be tested against.

Values are larger than a real init (std 0.2, LayerNorm weights 1 +- 0.1, non-zero biases) so that
attention is far from uniform and a wrong mask, scale, eps or activation changes the output visibly.
"""
import argparse
import json
import pathlib
import shutil
import sys
from typing import Dict, List, Optional, Tuple

import torch

# Sizes of the tiny checkpoint. Vocabulary 32000 so the real tokenizer fits.
TINY = {
    "hidden": 32, "layers": 2, "heads": 2, "intermediate": 64, "vocab": 32000, "max_positions": 96,
    "type_vocab": 2, "image": 224, "patch": 16, "proj": 16,
}


def key_shapes(layout: str, model_type: str = "cloob", s: Optional[Dict[str, int]] = None
               ) -> List[Tuple[str, List[int], str]]:
    """[(key, shape, kind)] of a checkpoint, in SPEC.md section 2 order. kind is "weight", "bias",
    "ln_weight", "ln_bias", "embedding" or "index" (int64 buffer)."""
    s = dict(TINY if s is None else s)
    h, i, p, n = s["hidden"], s["intermediate"], s["proj"], (s["image"] // s["patch"]) ** 2 + 1
    keys: List[Tuple[str, List[int], str]] = [
        ("visual_projection.weight", [p, h], "weight"),
        ("text_projection.weight", [p, h], "weight"),
    ]
    if layout == "vit":
        v = "vision_model."
        keys += [
            (v + "embeddings.cls_token", [1, 1, h], "embedding"),
            (v + "embeddings.position_embeddings", [1, n, h], "embedding"),
            (v + "embeddings.patch_embeddings.projection.weight", [h, 3, s["patch"], s["patch"]], "weight"),
            (v + "embeddings.patch_embeddings.projection.bias", [h], "bias"),
        ]
        for L in range(s["layers"]):
            e = f"{v}encoder.layer.{L}."
            keys += [(e + "layernorm_before.weight", [h], "ln_weight"), (e + "layernorm_before.bias", [h], "ln_bias")]
            for q in ("query", "key", "value"):
                keys += [(e + f"attention.attention.{q}.weight", [h, h], "weight"),
                         (e + f"attention.attention.{q}.bias", [h], "bias")]
            keys += [
                (e + "attention.output.dense.weight", [h, h], "weight"), (e + "attention.output.dense.bias", [h], "bias"),
                (e + "layernorm_after.weight", [h], "ln_weight"), (e + "layernorm_after.bias", [h], "ln_bias"),
                (e + "intermediate.dense.weight", [i, h], "weight"), (e + "intermediate.dense.bias", [i], "bias"),
                (e + "output.dense.weight", [h, i], "weight"), (e + "output.dense.bias", [h], "bias"),
            ]
        keys += [(v + "layernorm.weight", [h], "ln_weight"), (v + "layernorm.bias", [h], "ln_bias")]
    elif layout == "clip":
        v = "vision_model.vision_model."
        keys += [
            (v + "embeddings.class_embedding", [h], "embedding"),
            (v + "embeddings.patch_embedding.weight", [h, 3, s["patch"], s["patch"]], "weight"),
            (v + "embeddings.position_embedding.weight", [n, h], "embedding"),
            (v + "embeddings.position_ids", [1, n], "index"),
            (v + "pre_layrnorm.weight", [h], "ln_weight"), (v + "pre_layrnorm.bias", [h], "ln_bias"),
        ]
        for L in range(s["layers"]):
            e = f"{v}encoder.layers.{L}."
            for q in ("k_proj", "v_proj", "q_proj", "out_proj"):
                keys += [(e + f"self_attn.{q}.weight", [h, h], "weight"), (e + f"self_attn.{q}.bias", [h], "bias")]
            keys += [
                (e + "layer_norm1.weight", [h], "ln_weight"), (e + "layer_norm1.bias", [h], "ln_bias"),
                (e + "mlp.fc1.weight", [i, h], "weight"), (e + "mlp.fc1.bias", [i], "bias"),
                (e + "mlp.fc2.weight", [h, i], "weight"), (e + "mlp.fc2.bias", [h], "bias"),
                (e + "layer_norm2.weight", [h], "ln_weight"), (e + "layer_norm2.bias", [h], "ln_bias"),
            ]
        keys += [(v + "post_layernorm.weight", [h], "ln_weight"), (v + "post_layernorm.bias", [h], "ln_bias")]
    else:
        raise ValueError(f"layout must be 'vit' or 'clip', got {layout!r}")
    t = "text_model."
    keys += [
        (t + "embeddings.word_embeddings.weight", [s["vocab"], h], "embedding"),
        (t + "embeddings.position_embeddings.weight", [s["max_positions"], h], "embedding"),
        (t + "embeddings.token_type_embeddings.weight", [s["type_vocab"], h], "embedding"),
        (t + "embeddings.LayerNorm.weight", [h], "ln_weight"), (t + "embeddings.LayerNorm.bias", [h], "ln_bias"),
        (t + "embeddings.position_ids", [1, s["max_positions"]], "index"),
    ]
    for L in range(s["layers"]):
        e = f"{t}encoder.layer.{L}."
        for q in ("query", "key", "value"):
            keys += [(e + f"attention.self.{q}.weight", [h, h], "weight"), (e + f"attention.self.{q}.bias", [h], "bias")]
        keys += [
            (e + "attention.output.dense.weight", [h, h], "weight"), (e + "attention.output.dense.bias", [h], "bias"),
            (e + "attention.output.LayerNorm.weight", [h], "ln_weight"),
            (e + "attention.output.LayerNorm.bias", [h], "ln_bias"),
            (e + "intermediate.dense.weight", [i, h], "weight"), (e + "intermediate.dense.bias", [i], "bias"),
            (e + "output.dense.weight", [h, i], "weight"), (e + "output.dense.bias", [h], "bias"),
            (e + "output.LayerNorm.weight", [h], "ln_weight"), (e + "output.LayerNorm.bias", [h], "ln_bias"),
        ]
    if model_type == "clip":
        keys.append(("logit_scale", [], "scalar"))
    return keys


def random_state(layout: str, model_type: str = "cloob", seed: int = 0, std: float = 0.2,
                 sizes: Optional[Dict[str, int]] = None) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: Dict[str, torch.Tensor] = {}
    for key, shape, kind in key_shapes(layout, model_type, sizes):
        if kind == "index":
            sd[key] = torch.arange(shape[1], dtype=torch.int64).reshape(shape)
        elif kind == "scalar":
            sd[key] = torch.tensor(4.6052)  # log(100), CLIP's logit scale
        elif kind == "ln_weight":
            sd[key] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif kind in ("ln_bias", "bias"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            sd[key] = std * torch.randn(shape, generator=g)
    return sd


def hf_config(layout: str, model_type: str = "cloob", sizes: Optional[Dict[str, int]] = None,
              text_act: str = "gelu", vision_act: Optional[str] = None,
              text_eps: float = 1e-12, vision_eps: Optional[float] = None) -> Dict:
    """config.json as transformers writes it for these composite models."""
    s = dict(TINY if sizes is None else sizes)
    text = {
        "model_type": "bert", "vocab_size": s["vocab"], "hidden_size": s["hidden"],
        "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"], "intermediate_size": s["intermediate"],
        "max_position_embeddings": s["max_positions"], "type_vocab_size": s["type_vocab"],
        "layer_norm_eps": text_eps, "hidden_act": text_act, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "pad_token_id": 3, "position_embedding_type": "absolute",
    }
    vision = {
        "hidden_size": s["hidden"], "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
        "intermediate_size": s["intermediate"], "image_size": s["image"], "patch_size": s["patch"],
        "num_channels": 3,
    }
    if layout == "vit":
        vision.update({"model_type": "vit", "hidden_act": vision_act or "gelu",
                       "layer_norm_eps": 1e-12 if vision_eps is None else vision_eps, "qkv_bias": True})
    else:
        vision.update({"model_type": "cloob_vision_model", "hidden_act": vision_act or "quick_gelu",
                       "layer_norm_eps": 1e-5 if vision_eps is None else vision_eps})
    cfg = {"model_type": model_type, "architectures": ["CLOOBModel" if model_type == "cloob" else "CLIPModel"],
           "projection_dim": s["proj"], "text_config": text, "vision_config": vision,
           "torch_dtype": "float32", "transformers_version": "4.19.2"}
    if model_type == "cloob":
        cfg.update({"init_inv_tau": 30.0, "scale_hopfield": 15.0})
    else:
        cfg["logit_scale_init_value"] = 2.6592
    return cfg


_ST_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
             torch.float64: "F64", torch.int32: "I32"}
# Same-width integer views, so that bfloat16 (which numpy lacks) serializes like the others.
_ST_VIEWS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16,
             torch.int64: torch.int64, torch.float64: torch.int64, torch.int32: torch.int32}


def write_safetensors(path, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None) -> None:
    """The safetensors layout: u64 little-endian header size, JSON header (padded with spaces to a
    multiple of 8, as the reference writer does), then each tensor's raw little-endian bytes."""
    if sys.byteorder != "little":
        raise RuntimeError("write_safetensors needs a little-endian host")
    header: Dict[str, object] = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _ST_NAMES:
            raise ValueError(f"{name}: dtype {t.dtype} is not supported")
        data = t.view(_ST_VIEWS[t.dtype]).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(len(hbytes).to_bytes(8, "little"))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


def write_checkpoint(out, state: Dict[str, torch.Tensor], config: Dict, tokenizer, fmt: str = "safetensors") -> pathlib.Path:
    """Writes config.json, the weights (fmt "safetensors" or "bin") and spiece.model into `out`."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    for stale in ("model.safetensors", "pytorch_model.bin"):
        (out / stale).unlink(missing_ok=True)
    if fmt == "safetensors":
        write_safetensors(out / "model.safetensors", state, {"format": "pt"})
    elif fmt == "bin":
        torch.save(state, out / "pytorch_model.bin")
    else:
        raise ValueError(f"fmt must be 'safetensors' or 'bin', got {fmt!r}")
    if tokenizer is not None:
        shutil.copyfile(tokenizer, out / "spiece.model")
    return out


def make_checkpoint(out, tokenizer, layout: str = "vit", model_type: str = "cloob", fmt: str = "safetensors",
                    seed: int = 0, dtype: torch.dtype = torch.float32, **config_kw) -> pathlib.Path:
    """One call: random state + config + tokenizer. Float tensors are stored in `dtype`."""
    sd = random_state(layout, model_type, seed)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    return write_checkpoint(out, sd, hf_config(layout, model_type, **config_kw), tokenizer, fmt)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write a tiny random Hugging Face-format CLOOB/CLIP checkpoint (tests).")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--tokenizer", required=True, help="spiece.model to copy into the checkpoint")
    p.add_argument("--layout", choices=("vit", "clip"), default="vit",
                   help="vision tower: 'vit' (HF ViTModel, rinna CLOOB) or 'clip' (cloob_vision_model)")
    p.add_argument("--model-type", choices=("cloob", "clip"), default="cloob")
    p.add_argument("--format", choices=("safetensors", "bin"), default="safetensors")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-act", default="gelu", help="text_config.hidden_act")
    p.add_argument("--vision-act", default=None, help="vision_config.hidden_act (default per layout)")
    p.add_argument("--text-eps", type=float, default=1e-12, help="text_config.layer_norm_eps")
    p.add_argument("--vision-eps", type=float, default=None, help="vision_config.layer_norm_eps")
    a = p.parse_args(argv)
    out = make_checkpoint(a.out, a.tokenizer, a.layout, a.model_type, a.format, a.seed, getattr(torch, a.dtype),
                          text_act=a.text_act, vision_act=a.vision_act, text_eps=a.text_eps, vision_eps=a.vision_eps)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
