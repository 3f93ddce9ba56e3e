"""The TorchScript shim (shim/model_torch.cc) from Python: broken model directories map to the
right status without crashing the process, and the shim's features equal torch's own on the same
TorchScript file (parity). Drives build/tests/shim/test_model --probe / --encode-*."""
import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import BUILD

PROG = BUILD / "tests" / "shim" / "test_model"


@pytest.fixture(scope="module")
def prog():
    if not PROG.exists():
        pytest.fail(f"{PROG} missing: build it with `make build/tests/shim/test_model`")
    return PROG


@pytest.fixture(scope="module")
def meta(tiny_model_dir):
    return json.loads((tiny_model_dir / "cloob.json").read_text())


def model_dir(tmp_path, tiny_model_dir, module=None, meta_edit=None, pt_bytes=None, name="m"):
    """A model directory with the tiny model's cloob.json (optionally edited) and either a
    scripted `module` or raw `pt_bytes` as model.pt."""
    d = tmp_path / name
    d.mkdir()
    m = json.loads((tiny_model_dir / "cloob.json").read_text())
    if meta_edit:
        meta_edit(m)
    (d / "cloob.json").write_text(json.dumps(m))
    if module is not None:
        torch.jit.script(module).save(str(d / "model.pt"))
    elif pt_bytes is not None:
        (d / "model.pt").write_bytes(pt_bytes)
    return d


class Fake(torch.nn.Module):
    """Answers the contract with zeros, except where a subclass misbehaves on batch 2."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.zeros(pixels.shape[0], self.dim)

    @torch.jit.export
    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.zeros(ids.shape[0], self.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class RaisesOnBatch2(Fake):
    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[0] == 2:
            raise RuntimeError("deliberate failure in encode_image")
        return torch.zeros(pixels.shape[0], self.dim)


class WrongShapeOnBatch2(Fake):
    @torch.jit.export
    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[0] == 2:
            return torch.zeros(ids.shape[0], self.dim + 1)
        return torch.zeros(ids.shape[0], self.dim)


class OomOnBatch2(Fake):
    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.shape[0] == 2:
            big = torch.empty(1 << 47, dtype=torch.uint8)  # 128 TiB: the allocator refuses at once
            return big[: pixels.shape[0] * self.dim].float().reshape(pixels.shape[0], self.dim)
        return torch.zeros(pixels.shape[0], self.dim)


class WrongShapeAlways(Fake):
    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.zeros(pixels.shape[0], 3, 4)


class NoTextMethod(torch.nn.Module):
    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.zeros(pixels.shape[0], 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


BAD_METADATA = {
    "no_embed_dim": (lambda m: m.pop("embed_dim"), "embed_dim"),
    "float_dim": (lambda m: m.update(embed_dim=2.5), "embed_dim"),
    "image_size_0": (lambda m: m.update(image_size=0), "image_size"),
    "mean_2": (lambda m: m.update(mean=[0.5, 0.5]), "mean"),
    "std_0": (lambda m: m.update(std=[0.5, 0.0, 0.5]), "std"),
    "seq_len_huge": (lambda m: m.update(max_seq_len=100000), "max_seq_len"),
    "pad_id_range": (lambda m: m.update(pad_id=32000), "pad_id"),
    "long_name": (lambda m: m.update(name="x" * 200), "name"),
    "random_weights_str": (lambda m: m.update(random_weights="yes"), "random_weights"),
    "short_sha": (lambda m: m.update(model_sha256="abc"), "model_sha256"),
    "format_2": (lambda m: m.update(format=2), "format"),
}


@pytest.fixture(scope="module")
def probes(prog, tmp_path_factory, tiny_model_dir, meta):
    """Builds every broken directory, then probes them all in ONE process (libtorch loads once)."""
    tmp = tmp_path_factory.mktemp("dirs")
    dim = meta["embed_dim"]
    dirs = {
        "fake": model_dir(tmp, tiny_model_dir, Fake(dim), name="fake"),
        "raises": model_dir(tmp, tiny_model_dir, RaisesOnBatch2(dim), name="raises"),
        "wrong_shape": model_dir(tmp, tiny_model_dir, WrongShapeOnBatch2(dim), name="wrong_shape"),
        "oom": model_dir(tmp, tiny_model_dir, OomOnBatch2(dim), name="oom"),
        "wrong_shape_always": model_dir(tmp, tiny_model_dir, WrongShapeAlways(dim), name="wrong_shape_always"),
        "dim_mismatch": model_dir(tmp, tiny_model_dir, Fake(dim), name="dim_mismatch",
                                  meta_edit=lambda m: m.update(embed_dim=m["embed_dim"] + 1)),
        "no_text_method": model_dir(tmp, tiny_model_dir, NoTextMethod(), name="no_text_method"),
        "not_zip": model_dir(tmp, tiny_model_dir, pt_bytes=b"PK\x03\x04 this is not a zip archive" * 10,
                             name="not_zip"),
        "empty_pt": model_dir(tmp, tiny_model_dir, pt_bytes=b"", name="empty_pt"),
        "no_pt": model_dir(tmp, tiny_model_dir, name="no_pt"),
        "not_json": model_dir(tmp, tiny_model_dir, Fake(dim), name="not_json"),
    }
    (dirs["not_json"] / "cloob.json").write_bytes(b"\xff\xfe{not json")
    dirs["nothing"] = tmp / "nothing"
    dirs["nothing"].mkdir()
    fake_pt = dirs["fake"] / "model.pt"
    for name, (edit, _) in BAD_METADATA.items():
        d = model_dir(tmp, tiny_model_dir, pt_bytes=fake_pt.read_bytes(), meta_edit=edit, name="meta_" + name)
        dirs["meta_" + name] = d
    names = list(dirs)
    r = subprocess.run([str(prog), "--probe"] + [str(dirs[n]) for n in names], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"the probe died ({r.returncode}): {r.stderr[-2000:]}"
    lines = r.stdout.splitlines()
    assert len(lines) == len(names), r.stdout[-2000:]
    return {n: json.loads(line) for n, line in zip(names, lines)}, dirs


def test_fake_model_loads_and_runs(probes):
    r = probes[0]["fake"]
    assert r["load"] == "ok" and r["image"] == "ok" and r["text"] == "ok", r


def test_forward_exception_is_a_model_error(probes):
    r = probes[0]["raises"]
    assert r["load"] == "ok" and r["text"] == "ok", r
    assert r["image"] == "model", r
    assert "deliberate failure in encode_image" in r["image_err"], r
    assert "\n" not in r["image_err"]


def test_wrong_output_shape_is_a_model_error(probes, meta):
    r = probes[0]["wrong_shape"]
    assert r["text"] == "model" and "shape" in r["text_err"] and f"[2,{meta['embed_dim'] + 1}]" in r["text_err"], r
    assert r["image"] == "ok"


def test_out_of_memory_in_forward_is_its_own_status(probes):
    r = probes[0]["oom"]
    assert r["load"] == "ok", r
    assert r["image"] == "out_of_memory", r
    assert r["text"] == "ok", r  # the model keeps serving after the refusal


def test_self_check_at_load_catches_a_broken_contract(probes):
    r = probes[0]["wrong_shape_always"]
    assert r["load"] == "model" and "encode_image" in r["load_err"] and "shape" in r["load_err"], r
    # embed_dim in cloob.json disagreeing with the module is the same failure
    r = probes[0]["dim_mismatch"]
    assert r["load"] == "model" and "shape" in r["load_err"], r


def test_missing_method(probes):
    r = probes[0]["no_text_method"]
    assert r["load"] == "model" and "encode_text" in r["load_err"], r


def test_model_pt_not_torchscript(probes):
    r = probes[0]["not_zip"]
    assert r["load"] == "model" and "model.pt" in r["load_err"], r
    assert probes[0]["empty_pt"]["load"] == "model", probes[0]["empty_pt"]


def test_missing_files(probes):
    r = probes[0]["no_pt"]
    assert r["load"] == "io" and "model.pt" in r["load_err"], r
    r = probes[0]["nothing"]
    assert r["load"] == "io" and str(probes[1]["nothing"] / "cloob.json") in r["load_err"], r


@pytest.mark.parametrize("name", list(BAD_METADATA))
def test_bad_metadata(probes, name):
    field = BAD_METADATA[name][1]
    r = probes[0]["meta_" + name]
    assert r["load"] == "model" and field in r["load_err"] and "cloob.json" in r["load_err"], r


def test_metadata_not_json(probes):
    r = probes[0]["not_json"]
    assert r["load"] == "model" and "JSON" in r["load_err"], r


# ---- parity: the shim and torch give the same features for the same TorchScript file -------

def test_parity_with_torch(prog, tmp_path, tiny_model_dir, meta):
    module = torch.jit.load(str(tiny_model_dir / "model.pt"))
    module.eval()
    s, d = meta["image_size"], meta["embed_dim"]
    g = torch.Generator().manual_seed(5)
    pixels = torch.randn(3, 3, s, s, generator=g)
    ids = torch.randint(5, 32000, (3, 20), generator=g)
    ids[:, 0] = 4
    mask = torch.ones(3, 20, dtype=torch.long)
    for row, n in enumerate((20, 7, 2)):  # right padding of different lengths
        ids[row, n:] = 3
        mask[row, n:] = 0
    with torch.no_grad():
        want_img = module.encode_image(pixels).numpy()
        want_txt = module.encode_text(ids, mask).numpy()

    (tmp_path / "pix.bin").write_bytes(pixels.numpy().astype("<f4").tobytes())
    (tmp_path / "ids.bin").write_bytes(ids.numpy().astype("<i8").tobytes())
    (tmp_path / "mask.bin").write_bytes(mask.numpy().astype("<i8").tobytes())
    r = subprocess.run([str(prog), "--encode-image", str(tiny_model_dir), str(tmp_path / "pix.bin"),
                        str(tmp_path / "img.out"), "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(prog), "--encode-text", str(tiny_model_dir), str(tmp_path / "ids.bin"),
                        str(tmp_path / "mask.bin"), str(tmp_path / "txt.out"), "3", "20"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got_img = np.frombuffer((tmp_path / "img.out").read_bytes(), dtype="<f4").reshape(3, d)
    got_txt = np.frombuffer((tmp_path / "txt.out").read_bytes(), dtype="<f4").reshape(3, d)
    assert np.abs(got_img - want_img).max() <= 1e-5 * max(1.0, np.abs(want_img).max())
    assert np.abs(got_txt - want_txt).max() <= 1e-5 * max(1.0, np.abs(want_txt).max())
    # and the features really vary between inputs (the comparison above could not pass by accident)
    assert np.abs(want_img[0] - want_img[1]).max() > 1e-4
    assert np.abs(want_txt[0] - want_txt[1]).max() > 1e-4
