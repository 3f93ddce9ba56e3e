"""Tests of the offline exporter (tools/export_model.py, tools/cloob_model.py).

The tiny Hugging Face checkpoints come from tools/make_hf_checkpoint.py, whose key list is written
from SPEC.md section 2 independently of cloob_model.py. The exported TorchScript is compared with
(a) the exporter's eager model and (b) a small functional re-implementation of SPEC.md section 3 in
this file that reads the checkpoint tensors by their Hugging Face names, in float64, with -inf
masking - so a wrong key mapping, mask, scale, eps or activation in cloob_model.py shows up here.
"""
import http.server
import json
import math
import os
import pathlib
import subprocess
import threading
import time

import pytest
import torch
import torch.nn.functional as F

import cloob_model
import export_model
import make_hf_checkpoint as mk

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPORTER = ROOT / "tools" / "export_model.py"
PY = "/usr/bin/python3"


def run_exporter(*args, env_update=None, timeout=120):
    env = dict(os.environ)
    env.update(env_update or {})
    t0 = time.monotonic()
    p = subprocess.run([PY, str(EXPORTER), *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=timeout)
    return p, time.monotonic() - t0


# ------------------------------------------------------------------------------------------------
# Independent functional reference (SPEC.md section 3), float64, straight from HF-named tensors.
# ------------------------------------------------------------------------------------------------
def _act(name, x):
    if name == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_fast", "gelu_pytorch_tanh"):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    if name == "relu":
        return x.clamp_min(0)
    raise AssertionError(name)


def _ln(x, sd, prefix, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)  # biased variance
    return (x - mu) / torch.sqrt(var + eps) * sd[prefix + ".weight"] + sd[prefix + ".bias"]


def _lin(x, sd, prefix):
    y = x @ sd[prefix + ".weight"].T
    b = sd.get(prefix + ".bias")
    return y if b is None else y + b


def _mha(x, sd, q, k, v, heads, key_keep=None):
    B, L, H = x.shape
    d = H // heads

    def split(t):
        return t.reshape(B, L, heads, d).permute(0, 2, 1, 3)

    qs, ks, vs = split(_lin(x, sd, q)), split(_lin(x, sd, k)), split(_lin(x, sd, v))
    s = qs @ ks.transpose(-1, -2) / math.sqrt(d)
    if key_keep is not None:
        s = s.masked_fill(~key_keep[:, None, None, :], float("-inf"))
    return (torch.softmax(s, -1) @ vs).permute(0, 2, 1, 3).reshape(B, L, H)


def _f64(state):
    return {k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}


def ref_text(state, cfg, ids, mask):
    sd, t = _f64(state), cfg["text_config"]
    eps, act, heads = t["layer_norm_eps"], t["hidden_act"], t["num_attention_heads"]
    p = "text_model."
    L = ids.shape[1]
    x = (sd[p + "embeddings.word_embeddings.weight"][ids] + sd[p + "embeddings.position_embeddings.weight"][:L]
         + sd[p + "embeddings.token_type_embeddings.weight"][0])
    x = _ln(x, sd, p + "embeddings.LayerNorm", eps)
    keep = mask.bool()
    n = 0
    while f"{p}encoder.layer.{n}.attention.self.query.weight" in sd:
        e = f"{p}encoder.layer.{n}."
        a = _mha(x, sd, e + "attention.self.query", e + "attention.self.key", e + "attention.self.value", heads, keep)
        a = _ln(x + _lin(a, sd, e + "attention.output.dense"), sd, e + "attention.output.LayerNorm", eps)
        f = _lin(_act(act, _lin(a, sd, e + "intermediate.dense")), sd, e + "output.dense")
        x = _ln(a + f, sd, e + "output.LayerNorm", eps)
        n += 1
    assert n == t["num_hidden_layers"]
    return x[:, 0] @ sd["text_projection.weight"].T


def ref_image(state, cfg, pixels, layout):
    sd, vc = _f64(state), cfg["vision_config"]
    heads, act = vc["num_attention_heads"], vc["hidden_act"]
    patch = vc["patch_size"]
    px = pixels.double()
    if layout == "vit":
        eps, p = vc["layer_norm_eps"], "vision_model."
        x = F.conv2d(px, sd[p + "embeddings.patch_embeddings.projection.weight"],
                     sd[p + "embeddings.patch_embeddings.projection.bias"], stride=patch)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([sd[p + "embeddings.cls_token"].expand(x.shape[0], 1, -1), x], 1)
        x = x + sd[p + "embeddings.position_embeddings"]
        n = 0
        while f"{p}encoder.layer.{n}.layernorm_before.weight" in sd:
            e = f"{p}encoder.layer.{n}."
            q = e + "attention.attention."
            h = x + _lin(_mha(_ln(x, sd, e + "layernorm_before", eps), sd, q + "query", q + "key", q + "value", heads),
                         sd, e + "attention.output.dense")
            x = h + _lin(_act(act, _lin(_ln(h, sd, e + "layernorm_after", eps), sd, e + "intermediate.dense")),
                         sd, e + "output.dense")
            n += 1
        feat = _ln(x, sd, p + "layernorm", eps)[:, 0]
    else:
        eps, p = 1e-5, "vision_model.vision_model."  # nn.LayerNorm(dim) in the reference code
        x = F.conv2d(px, sd[p + "embeddings.patch_embedding.weight"], None, stride=patch)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([sd[p + "embeddings.class_embedding"].expand(x.shape[0], 1, -1), x], 1)
        x = x + sd[p + "embeddings.position_embedding.weight"]
        x = _ln(x, sd, p + "pre_layrnorm", eps)
        n = 0
        while f"{p}encoder.layers.{n}.layer_norm1.weight" in sd:
            e = f"{p}encoder.layers.{n}."
            a = e + "self_attn."
            x = x + _lin(_mha(_ln(x, sd, e + "layer_norm1", eps), sd, a + "q_proj", a + "k_proj", a + "v_proj", heads),
                         sd, a + "out_proj")
            x = x + _lin(_act(act, _lin(_ln(x, sd, e + "layer_norm2", eps), sd, e + "mlp.fc1")), sd, e + "mlp.fc2")
            n += 1
        feat = x[:, 0]  # BEFORE post_layernorm
    assert n == vc["num_hidden_layers"]
    return feat @ sd["visual_projection.weight"].T


def padded_batch(lengths, vocab, seed=0, L=77):
    """[CLS] + random ids, right-padded with [PAD] to L (mask 0 on padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), L), 3, dtype=torch.long)
    mask = torch.zeros((len(lengths), L), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, 0] = 4
        ids[i, 1:n] = torch.randint(5, vocab, (n - 1,), generator=g)
        mask[i, :n] = 1
    return ids, mask


# ------------------------------------------------------------------------------------------------
# Round trip: HF checkpoint -> exporter CLI -> TorchScript.
# ------------------------------------------------------------------------------------------------
CASES = [("vit", "safetensors", "cloob"), ("vit", "bin", "cloob"), ("clip", "safetensors", "cloob"),
         ("clip", "bin", "clip")]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(c))
def exported(request, tmp_path_factory, spm_model):
    layout, fmt, model_type = request.param
    base = tmp_path_factory.mktemp(f"ck-{layout}-{fmt}")
    ckpt = mk.make_checkpoint(base / "ckpt", spm_model, layout=layout, model_type=model_type, fmt=fmt, seed=7)
    out = base / "model"
    p, _ = run_exporter("--checkpoint", ckpt, "--out", out, "--check")
    assert p.returncode == 0, p.stderr
    assert "max abs diff" in p.stdout
    state = mk.random_state(layout, model_type, seed=7)
    cfg = json.loads((ckpt / "config.json").read_text())
    scripted = torch.jit.load(str(out / "model.pt"))
    eager, arch, _ = export_model.load_checkpoint(ckpt)
    return {"layout": layout, "ckpt": ckpt, "out": out, "state": state, "cfg": cfg, "scripted": scripted,
            "eager": eager, "arch": arch}


def test_weights_copied_key_for_key(exported):
    sd = exported["scripted"].state_dict()
    expected = {k: v for k, v in exported["state"].items() if k not in export_model.IGNORED_KEYS}
    assert set(sd) == set(expected)
    for k, v in expected.items():
        assert torch.equal(sd[k], v.float()), k


def test_image_features_match_eager_and_reference(exported):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(3, 3, 224, 224, generator=g)
    with torch.no_grad():
        ts = exported["scripted"].encode_image(pixels)
        eager = exported["eager"].encode_image(pixels)
    ref = ref_image(exported["state"], exported["cfg"], pixels, exported["layout"])
    assert ts.shape == (3, 16) and ts.dtype == torch.float32
    assert (ts - eager).abs().max().item() < 1e-5
    assert (ts.double() - ref).abs().max().item() < 1e-4
    # the features are not degenerate (a test that always passes would be worthless)
    assert ts.std().item() > 0.05
    # any batch size: each row alone equals its row in the batch
    with torch.no_grad():
        one = exported["scripted"].encode_image(pixels[1:2])
    assert (one - ts[1:2]).abs().max().item() < 1e-5


@pytest.mark.parametrize("lengths", [[1], [2, 9], [77, 5, 30]], ids=lambda x: "L" + "-".join(map(str, x)))
def test_text_features_match_eager_and_reference(exported, lengths):
    ids, mask = padded_batch(lengths, 32000, seed=len(lengths))
    with torch.no_grad():
        ts = exported["scripted"].encode_text(ids, mask)
        eager = exported["eager"].encode_text(ids, mask)
    ref = ref_text(exported["state"], exported["cfg"], ids, mask)
    assert ts.shape == (len(lengths), 16)
    assert (ts - eager).abs().max().item() < 1e-5
    assert (ts.double() - ref).abs().max().item() < 1e-4


def test_padding_invariance(exported):
    """Features of the 77-token padded input == features of [CLS]+real tokens only (SPEC.md 3)."""
    lengths = [1, 3, 12, 76, 77]
    ids, mask = padded_batch(lengths, 32000, seed=3)
    with torch.no_grad():
        full = exported["scripted"].encode_text(ids, mask)
        for i, n in enumerate(lengths):
            trimmed = exported["scripted"].encode_text(ids[i:i + 1, :n], mask[i:i + 1, :n])
            assert (trimmed - full[i:i + 1]).abs().max().item() < 1e-5, n
        # and the padding really is masked: unmasking it changes the answer
        unmasked = exported["scripted"].encode_text(ids[1:2], torch.ones_like(mask[1:2]))
    assert (unmasked - full[1:2]).abs().max().item() > 1e-3


def test_scripted_input_checks(exported):
    m = exported["scripted"]
    with pytest.raises(Exception, match="encode_image"):
        m.encode_image(torch.zeros(1, 3, 112, 112))
    with pytest.raises(Exception, match="sequence length"):
        m.encode_text(torch.zeros(1, 97, dtype=torch.long), torch.ones(1, 97, dtype=torch.long))
    with pytest.raises(Exception, match="token id"):
        m.encode_text(torch.tensor([[4, 32000]]), torch.tensor([[1, 1]]))
    with pytest.raises(Exception, match="ids and mask"):
        m.encode_text(torch.tensor([[4, 5]]), torch.tensor([[1]]))


def test_cloob_json_of_checkpoint_export(exported):
    meta = json.loads((exported["out"] / "cloob.json").read_text())
    assert meta["random_weights"] is False
    # the self-test reference comes from this checkpoint's model (both vision layouts)
    st = meta["selftest"]
    pixels = export_model.selftest_image(224, meta["mean"], meta["std"])
    with torch.no_grad():
        img = exported["scripted"].encode_image(pixels)[0]
    assert (img - torch.tensor(st["image_feature"])).abs().max().item() < 1e-5
    assert meta["architecture"]["vision_layout"] == exported["layout"]
    weights = "model.safetensors" if (exported["ckpt"] / "model.safetensors").exists() else "pytorch_model.bin"
    assert set(meta["sources"]) == {"config.json", weights, "spiece.model"}
    assert meta["sources"][weights] == export_model.sha256_file(exported["ckpt"] / weights)


def test_load_model_dir_gives_the_eager_model(exported):
    eager, meta = export_model.load_model_dir(exported["out"])
    pixels = torch.randn(1, 3, 224, 224)
    ids, mask = padded_batch([6], 32000)
    with torch.no_grad():
        assert torch.allclose(eager.encode_image(pixels), exported["scripted"].encode_image(pixels), atol=1e-6)
        assert torch.allclose(eager.encode_text(ids, mask), exported["scripted"].encode_text(ids, mask), atol=1e-6)
    assert meta["embed_dim"] == 16


# ------------------------------------------------------------------------------------------------
# Refused checkpoints: the message names the key.
# ------------------------------------------------------------------------------------------------
def _mutate(state, how):
    sd = dict(state)
    if how == "missing":
        del sd["text_model.encoder.layer.1.output.LayerNorm.bias"]
        return sd, "text_model.encoder.layer.1.output.LayerNorm.bias"
    if how == "extra":
        sd["text_model.pooler.dense.weight"] = torch.zeros(32, 32)
        return sd, "text_model.pooler.dense.weight"
    if how == "shape":
        k = "vision_model.encoder.layer.0.intermediate.dense.weight"
        sd[k] = sd[k].T.contiguous()
        return sd, k
    if how == "unknown_vision":
        sd = {k.replace("vision_model.embeddings.patch_embeddings.projection", "vision_model.stem.conv"): v
              for k, v in sd.items()}
        return sd, "vision_model."
    if how == "unknown_text":
        sd = {k.replace("text_model.embeddings.word_embeddings", "text_model.embeddings.token_embedding"): v
              for k, v in sd.items()}
        return sd, "text_model.embeddings.token_embedding.weight"
    if how == "nan":
        k = "text_projection.weight"
        sd[k] = sd[k].clone()
        sd[k][0, 0] = float("nan")
        return sd, k
    if how == "int_weight":
        k = "vision_model.layernorm.bias"
        sd[k] = torch.zeros(32, dtype=torch.int64)
        return sd, k
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["missing", "extra", "shape", "unknown_vision", "unknown_text", "nan", "int_weight"])
def test_bad_checkpoint_is_refused_naming_the_key(tmp_path, spm_model, how):
    sd, key = _mutate(mk.random_state("vit"), how)
    ckpt = mk.write_checkpoint(tmp_path / "ckpt", sd, mk.hf_config("vit"), spm_model, "safetensors")
    with pytest.raises(export_model.ExportError) as ei:
        export_model.load_checkpoint(ckpt)
    assert key in str(ei.value)


def test_bad_checkpoint_cli_exit_code_and_no_output(tmp_path, spm_model):
    sd = mk.random_state("clip")
    key = "vision_model.vision_model.encoder.layers.1.mlp.fc2.bias"
    del sd[key]
    ckpt = mk.write_checkpoint(tmp_path / "ckpt", sd, mk.hf_config("clip"), spm_model, "bin")
    p, _ = run_exporter("--checkpoint", ckpt, "--out", tmp_path / "out")
    assert p.returncode == 1
    assert key in p.stderr and "missing" in p.stderr
    assert not (tmp_path / "out").exists()
    assert not any(x.name.startswith(".out.") for x in tmp_path.iterdir()), "temporary directory left behind"


def test_config_model_type_must_match_keys(tmp_path, spm_model):
    cfg = mk.hf_config("clip")
    cfg["vision_config"]["model_type"] = "vit"
    ckpt = mk.write_checkpoint(tmp_path / "ckpt", mk.random_state("clip"), cfg, spm_model)
    with pytest.raises(export_model.ExportError, match="vision_model.vision_model.embeddings.patch_embedding.weight"):
        export_model.load_checkpoint(ckpt)


def test_config_unsupported_model_type_and_activation(tmp_path, spm_model):
    cfg = mk.hf_config("vit")
    cfg["model_type"] = "blip"
    ckpt = mk.write_checkpoint(tmp_path / "a", mk.random_state("vit"), cfg, spm_model)
    with pytest.raises(export_model.ExportError, match="model_type 'blip'"):
        export_model.load_checkpoint(ckpt)
    ckpt = mk.make_checkpoint(tmp_path / "b", spm_model, text_act="swish")
    with pytest.raises(export_model.ExportError, match="hidden_act 'swish'"):
        export_model.load_checkpoint(ckpt)


def test_config_sizes_disagreeing_with_weights_are_refused(tmp_path, spm_model):
    """A config that disagrees with the weights (here intermediate_size) is refused by shape check."""
    cfg = mk.hf_config("vit")
    cfg["text_config"]["intermediate_size"] = 48
    ckpt = mk.write_checkpoint(tmp_path / "ckpt", mk.random_state("vit"), cfg, spm_model)
    with pytest.raises(export_model.ExportError, match=r"text_model\.encoder\.layer\.0\.intermediate\.dense\.(weight|bias)'.*expected \[48"):
        export_model.load_checkpoint(ckpt)


# ------------------------------------------------------------------------------------------------
# safetensors reader.
# ------------------------------------------------------------------------------------------------
def test_safetensors_roundtrip_all_dtypes(tmp_path):
    t = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 3).to(torch.bfloat16),
        "i64": torch.arange(7, dtype=torch.int64).reshape(1, 7) - 3,
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }
    path = tmp_path / "x.safetensors"
    mk.write_safetensors(path, t, {"format": "pt"})
    back = export_model.read_safetensors(path)
    assert set(back) == set(t)
    for k, v in t.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and torch.equal(back[k], v), k


def test_half_precision_checkpoint_loads_as_float32(tmp_path, spm_model):
    for dtype in (torch.float16, torch.bfloat16):
        ckpt = mk.make_checkpoint(tmp_path / str(dtype), spm_model, dtype=dtype, seed=2)
        model, _, _ = export_model.load_checkpoint(ckpt)
        w = model.state_dict()["text_model.encoder.layer.0.attention.self.key.weight"]
        src = mk.random_state("vit", seed=2)["text_model.encoder.layer.0.attention.self.key.weight"]
        assert w.dtype == torch.float32
        assert torch.equal(w, src.to(dtype).float())


@pytest.mark.parametrize("damage", ["truncated_header", "huge_header_len", "bad_offsets", "bad_dtype",
                                    "size_mismatch", "not_json", "truncated_data"])
def test_safetensors_malformed_is_a_clean_error(tmp_path, damage):
    path = tmp_path / "bad.safetensors"
    good = tmp_path / "good.safetensors"
    mk.write_safetensors(good, {"a": torch.ones(4), "b": torch.ones(2, 2)})
    raw = good.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    if damage == "truncated_header":
        data = raw[:8 + n // 2]
    elif damage == "huge_header_len":
        data = (1 << 62).to_bytes(8, "little") + raw[8:]
    elif damage == "not_json":
        data = raw[:8] + b"{" * n + raw[8 + n:]
    elif damage == "truncated_data":
        data = raw[:-4]
    else:
        if damage == "bad_offsets":
            header["a"]["data_offsets"] = [0, 1 << 40]
        elif damage == "bad_dtype":
            header["a"]["dtype"] = "F8_E4M3"
        elif damage == "size_mismatch":
            header["a"]["shape"] = [5]
        h = json.dumps(header).encode()
        data = len(h).to_bytes(8, "little") + h + raw[8 + n:]
    path.write_bytes(data)
    with pytest.raises(export_model.ExportError):
        export_model.read_safetensors(path)


# ------------------------------------------------------------------------------------------------
# Config values (activation, LayerNorm eps) are honoured.
# ------------------------------------------------------------------------------------------------
def test_hidden_act_and_layer_norm_eps_are_honoured(tmp_path, spm_model):
    kw = dict(text_act="gelu_new", text_eps=1e-1, vision_act="relu", vision_eps=3e-1)
    ckpt = mk.make_checkpoint(tmp_path / "ckpt", spm_model, seed=5, **kw)
    model, arch, _ = export_model.load_checkpoint(ckpt)
    assert arch["text"]["hidden_act"] == "gelu_new" and arch["text"]["layer_norm_eps"] == 1e-1
    assert arch["vision"]["hidden_act"] == "relu" and arch["vision"]["layer_norm_eps"] == 3e-1
    meta = export_model.export_model_dir(model, arch, tmp_path / "out", spm_model, "t", False)
    assert meta["architecture"]["text"]["hidden_act"] == "gelu_new"
    scripted = torch.jit.load(str(tmp_path / "out" / "model.pt"))

    state = mk.random_state("vit", seed=5)
    cfg = json.loads((ckpt / "config.json").read_text())
    ids, mask = padded_batch([9, 40], 32000, seed=5)
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        t_ts, i_ts = scripted.encode_text(ids, mask).double(), scripted.encode_image(pixels).double()
    assert (t_ts - ref_text(state, cfg, ids, mask)).abs().max().item() < 1e-4
    assert (i_ts - ref_image(state, cfg, pixels, "vit")).abs().max().item() < 1e-4

    # The same weights with the default act/eps give clearly different features: ignoring the
    # config would have been caught above.
    default = json.loads(json.dumps(cfg))
    default["text_config"].update(hidden_act="gelu", layer_norm_eps=1e-12)
    default["vision_config"].update(hidden_act="gelu", layer_norm_eps=1e-12)
    assert (t_ts - ref_text(state, default, ids, mask)).abs().max().item() > 1e-3
    assert (i_ts - ref_image(state, default, pixels, "vit")).abs().max().item() > 1e-3


def test_clip_layout_uses_eps_1e5_and_its_activation(tmp_path, spm_model):
    """cloob_vision_model ignores the config's eps (nn.LayerNorm(dim)) but honours hidden_act."""
    ckpt = mk.make_checkpoint(tmp_path / "ckpt", spm_model, layout="clip", seed=6, vision_act="gelu",
                              vision_eps=0.3)
    model, arch, _ = export_model.load_checkpoint(ckpt)
    assert arch["vision"]["layer_norm_eps"] == 1e-5 and arch["vision"]["hidden_act"] == "gelu"
    cfg = json.loads((ckpt / "config.json").read_text())
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        feat = model.encode_image(pixels).double()
    state = mk.random_state("clip", seed=6)
    assert (feat - ref_image(state, cfg, pixels, "clip")).abs().max().item() < 1e-4
    cfg["vision_config"]["hidden_act"] = "quick_gelu"
    assert (feat - ref_image(state, cfg, pixels, "clip")).abs().max().item() > 1e-3


# ------------------------------------------------------------------------------------------------
# --random.
# ------------------------------------------------------------------------------------------------
REQUIRED_FIELDS = {"format": int, "name": str, "embed_dim": int, "image_size": int, "mean": list, "std": list,
                   "max_seq_len": int, "pad_id": int, "cls_id": int, "unk_id": int, "random_weights": bool,
                   "model_sha256": str, "exporter_version": str, "sources": dict, "architecture": dict,
                   "selftest": dict}


def test_random_tiny_cli(tmp_path, spm_model):
    out = tmp_path / "tiny"
    p, elapsed = run_exporter("--random", "tiny", "--seed", "1", "--tokenizer", spm_model, "--out", out)
    assert p.returncode == 0, p.stderr
    meta = json.loads((out / "cloob.json").read_text())
    for k, typ in REQUIRED_FIELDS.items():
        assert isinstance(meta.get(k), typ), k
    assert meta["format"] == 1 and meta["name"] == "random-tiny" and meta["random_weights"] is True
    assert (meta["embed_dim"], meta["image_size"], meta["max_seq_len"]) == (16, 224, 77)
    assert (meta["pad_id"], meta["cls_id"], meta["unk_id"]) == (3, 4, 0)
    assert meta["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert meta["std"] == pytest.approx([0.26862954, 0.26130258, 0.27577711])
    assert meta["model_sha256"] == export_model.sha256_file(out / "model.pt")
    assert (out / "spiece.model").read_bytes() == pathlib.Path(spm_model).read_bytes()
    assert meta["sources"]["spiece.model"].startswith("b5cbdfa8")
    arch = cloob_model.normalize_architecture(meta["architecture"])
    assert arch == meta["architecture"]
    assert (out / "model.pt").stat().st_size < 8_000_000
    assert sorted(x.name for x in out.iterdir()) == ["cloob.json", "model.pt", "spiece.model"]

    m = torch.jit.load(str(out / "model.pt"))
    for L in (1, 2, 77):
        ids, mask = padded_batch([L], 32000)
        assert m.encode_text(ids[:, :L], mask[:, :L]).shape == (1, 16)
    assert m.encode_image(torch.zeros(2, 3, 224, 224)).shape == (2, 16)

    # Reproducible: same seed, same bytes (the shim reports model_sha256 as provenance).
    p2, _ = run_exporter("--random", "tiny", "--seed", "1", "--tokenizer", spm_model, "--out", tmp_path / "again")
    assert p2.returncode == 0, p2.stderr
    assert export_model.sha256_file(tmp_path / "again" / "model.pt") == meta["model_sha256"]


# ------------------------------------------------------------------------------------------------
# The self-test reference vectors (cloob.json "selftest"; checked at start-up by server/selftest.c).
# ------------------------------------------------------------------------------------------------
def _rule_image_via_pillow(size):
    """The gradient-v1 image written as a PNG from numpy and run through the reference
    preprocessing (Pillow + torchvision): an implementation independent of export_model's."""
    import io

    import numpy as np
    from PIL import Image

    import ref_image
    y, x, c = np.meshgrid(np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    rgb = ((7 * x + 3 * y + 85 * c) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return ref_image.preprocess(buf.getvalue()).unsqueeze(0), rgb


def test_selftest_section_matches_the_eager_model(tiny_model_dir, spm_model):
    """The tiny model's stored reference = the eager float32 model on the reference pipeline's
    inputs: the image rule through Pillow/torchvision, the texts through the reference tokenizer."""
    import sentencepiece

    import ref_tokenizer
    eager, meta = export_model.load_model_dir(tiny_model_dir)
    st = meta["selftest"]
    assert st["image_rule"].split(":")[0] == "gradient-v1"
    assert st["tolerance_cosine"] == 0.9999 and st["tolerance_cosine_float16"] == 0.999

    pixels, rgb = _rule_image_via_pillow(meta["image_size"])
    assert rgb[0, 1].tolist() == [7, 92, 177] and rgb[1, 0].tolist() == [3, 88, 173]
    assert rgb[200, 100, 2] == (700 + 600 + 170) % 256
    assert torch.equal(export_model.selftest_image(meta["image_size"], meta["mean"], meta["std"]), pixels)
    with torch.no_grad():
        want = eager.encode_image(pixels)[0]
    got = torch.tensor(st["image_feature"], dtype=torch.float32)
    assert got.shape == (meta["embed_dim"],)
    assert torch.equal(got, want), "features are stored at full float32 precision"

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    assert [t["text"] for t in st["texts"]] == list(export_model.SELFTEST_TEXTS)
    assert any(t["text"] == "" for t in st["texts"]) and any(t["text"] != t["text"].lower() for t in st["texts"])
    feats = []
    for t in st["texts"]:
        ids, mask, n, dropped = ref_tokenizer.tokenize_one(t["text"], sp)
        assert t["ids"] == ids[:n] and dropped == 0, t["text"]
        with torch.no_grad():  # the 77-token padded input of the reference pipeline
            ref = eager.encode_text(torch.tensor([ids]), torch.tensor([mask]))[0]
        assert (torch.tensor(t["feature"]) - ref).abs().max().item() < 1e-5, t["text"]
        feats.append(torch.tensor(t["feature"]))
    # distinct inputs, distinct references (a constant section would make the check vacuous)
    assert len({tuple(f.tolist()) for f in feats}) == len(feats)
    assert not torch.allclose(feats[0], got)


def test_selftest_texts_with_special_tokens_are_refused(spm_model):
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    assert export_model.selftest_token_ids("犬の写真", sp) == [4, 9, 1651, 10478]
    assert export_model.selftest_token_ids("", sp) == [4]
    with pytest.raises(ValueError, match="CLS"):
        export_model.selftest_token_ids("[CLS] 犬", sp)


def test_random_clip_layout_and_seed_changes_weights(tmp_path, spm_model):
    m1, a1 = export_model.random_model("tiny", 1, "clip")
    m2, _ = export_model.random_model("tiny", 2, "clip")
    k = "vision_model.vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(m1.state_dict()[k], m2.state_dict()[k])
    assert m1.state_dict()["vision_model.vision_model.post_layernorm.weight"].eq(1).all()
    meta = export_model.export_model_dir(m1, a1, tmp_path / "clip", spm_model, "random-tiny", True)
    assert meta["architecture"]["vision_layout"] == "clip"
    assert export_model.check_export(m1, a1, tmp_path / "clip") < 1e-5


def test_out_dir_is_replaced_atomically(tmp_path, spm_model):
    out = tmp_path / "m"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    model, arch = export_model.random_model("tiny", 0)
    export_model.export_model_dir(model, arch, out, spm_model, "x", True)
    assert sorted(x.name for x in out.iterdir()) == ["cloob.json", "model.pt", "spiece.model"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m"]
    # A failing export (bad tokenizer) leaves the existing directory as it was.
    before = (out / "model.pt").read_bytes()
    with pytest.raises(export_model.ExportError):
        export_model.export_model_dir(model, arch, out, tmp_path / "missing.model", "x", True)
    assert (out / "model.pt").read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m"]


def test_tokenizer_is_validated(tmp_path, spm_model):
    model, arch = export_model.random_model("tiny", 0)
    bogus = tmp_path / "bogus.model"
    bogus.write_bytes(b"not a sentencepiece model")
    with pytest.raises(export_model.ExportError, match="SentencePiece"):
        export_model.export_model_dir(model, arch, tmp_path / "o", bogus, "x", True)
    small = json.loads(json.dumps(arch))
    small["text"]["vocab_size"] = 1000
    with pytest.raises(export_model.ExportError, match="32000 pieces"):
        export_model.export_model_dir(cloob_model.build_model(small), small, tmp_path / "o", spm_model, "x", True)


def test_help_is_clear():
    p, _ = run_exporter("--help")
    assert p.returncode == 0
    for opt in ("--checkpoint", "--random", "--fetch", "--out", "--tokenizer", "--seed", "--check", "--cache-dir",
                "HF_ENDPOINT", "exit codes"):
        assert opt in p.stdout, opt


# ------------------------------------------------------------------------------------------------
# --fetch.
# ------------------------------------------------------------------------------------------------
def test_fetch_offline_fails_fast(tmp_path):
    p, elapsed = run_exporter("--fetch", "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                              env_update={"HF_ENDPOINT": "http://127.0.0.1:9"}, timeout=60)
    assert p.returncode == 2, p.stderr
    assert elapsed < 30
    assert "download failed" in p.stderr and "127.0.0.1:9" in p.stderr
    assert "--checkpoint" in p.stderr  # says what to do instead
    assert not (tmp_path / "out").exists()


def test_fetch_default_endpoint_is_bounded(tmp_path):
    """Against the real default endpoint: offline this fails on name resolution or connect, online on
    HTTP 401/404 for a repository that does not exist; either way quickly and with exit code 2."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_TOKEN")}
    t0 = time.monotonic()
    p = subprocess.run([PY, str(EXPORTER), "--fetch", "cloob-server-tests/no-such-repo", "--timeout", "5",
                        "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, p.stderr
    assert elapsed < 30
    assert "huggingface.co" in p.stderr


class _MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves {url path: bytes} with Range support, records requests; 404 for anything else."""
    files = {}
    log = []

    def do_GET(self):
        self.log.append((self.path, self.headers.get("Range"), self.headers.get("Authorization")))
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MirrorHandler)
    _MirrorHandler.files, _MirrorHandler.log = {}, []
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    yield server, _MirrorHandler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_fetch_from_mirror_resumes_and_falls_back(tmp_path, spm_model, mirror, monkeypatch, fmt):
    server, handler = mirror
    repo = "rinna/japanese-cloob-vit-b-16"
    ckpt = mk.make_checkpoint(tmp_path / "src", spm_model, fmt=fmt, seed=11)
    weights = "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    handler.files = {
        f"/{repo}/resolve/main/config.json": (ckpt / "config.json").read_bytes(),
        f"/{repo}/resolve/main/{weights}": (ckpt / weights).read_bytes(),
        "/rinna/japanese-roberta-base/resolve/main/spiece.model": pathlib.Path(spm_model).read_bytes(),
    }
    cache = tmp_path / "cache"
    # A previous run was interrupted half-way through the weights: the next one resumes.
    part = cache / repo.replace("/", "--") / (weights + ".part")
    part.parent.mkdir(parents=True)
    blob = (ckpt / weights).read_bytes()
    part.write_bytes(blob[:len(blob) // 2])
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    rc = export_model.main(["--fetch", "--out", str(tmp_path / "out"), "--cache-dir", str(cache)])
    assert rc == 0
    ranges = {path: rng for path, rng, _ in handler.log}
    assert ranges[f"/{repo}/resolve/main/{weights}"] == f"bytes={len(blob) // 2}-"
    assert all(auth == "Bearer secret-token" for _, _, auth in handler.log)
    if fmt == "bin":  # safetensors was tried first and 404'd
        assert f"/{repo}/resolve/main/model.safetensors" in ranges
    meta = json.loads((tmp_path / "out" / "cloob.json").read_text())
    assert meta["name"] == repo and meta["random_weights"] is False
    assert meta["sources"][weights] == export_model.sha256_file(ckpt / weights)
    scripted = torch.jit.load(str(tmp_path / "out" / "model.pt"))
    src = mk.random_state("vit", seed=11)
    assert torch.equal(scripted.state_dict()["text_projection.weight"], src["text_projection.weight"])
    # A second run uses the cache and downloads nothing.
    handler.log.clear()
    assert export_model.main(["--fetch", "--out", str(tmp_path / "out2"), "--cache-dir", str(cache)]) == 0
    assert handler.log == []


def test_fetch_rejects_wrong_tokenizer(tmp_path, spm_model, mirror, monkeypatch):
    server, handler = mirror
    repo = "rinna/japanese-clip-vit-b-16"
    ckpt = mk.make_checkpoint(tmp_path / "src", spm_model, model_type="clip", seed=1)
    handler.files = {
        f"/{repo}/resolve/main/config.json": (ckpt / "config.json").read_bytes(),
        f"/{repo}/resolve/main/model.safetensors": (ckpt / "model.safetensors").read_bytes(),
        "/rinna/japanese-roberta-base/resolve/main/spiece.model": b"tampered",
    }
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rc = export_model.main(["--fetch", repo, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    assert rc == 1
    assert not (tmp_path / "out").exists()


def test_fetch_http_error_is_reported(tmp_path, mirror, monkeypatch):
    server, handler = mirror  # serves nothing: config.json is a 404
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    rc = export_model.main(["--fetch", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    assert rc == 2
