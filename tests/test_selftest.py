"""The start-up numerical self-test end to end, with the tiny model: the server checks the
reference vectors tools/export_model.py stored in cloob.json before it reports ready, and
`cloob-embed --selftest` runs the same check (server/selftest.c).

Tampered copies of the tiny model directory stand in for a model that computes wrong numbers or a
tokenizer that differs: a reference feature with one component negated (same norm, lower cosine),
or a stored token id changed. (The reverse cannot be staged on a CPU build: the stored reference
is right and the model is what would be wrong; the unit test tests/unit/test_selftest.c covers
wrong model outputs with a fake model.)
"""
import json
import shutil
import subprocess
import time

import pytest

import cloob_e2e as e2e


def model_copy(src, dst, edit=None):
    """A copy of the model directory with cloob.json changed by edit(meta) (model.pt untouched)."""
    shutil.copytree(src, dst)
    if edit is not None:
        meta = json.loads((dst / "cloob.json").read_text(encoding="utf-8"))
        edit(meta)
        (dst / "cloob.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return dst


def negate_largest(feature):
    """Flips the sign of the largest component: the norm stays, the cosine drops well below 0.9999."""
    i = max(range(len(feature)), key=lambda k: abs(feature[k]))
    feature[i] = -feature[i]


def tamper_image(meta):
    negate_largest(meta["selftest"]["image_feature"])


def tamper_text(meta):
    negate_largest(meta["selftest"]["texts"][1]["feature"])


def tamper_ids(meta):
    meta["selftest"]["texts"][0]["ids"][2] += 1


def drop_section(meta):
    del meta["selftest"]


def wait_decided(client, timeout=60):
    """/info once loading is over (ready or failed)."""
    end = time.monotonic() + timeout
    while True:
        info = client.get("/info").json()
        if info["status"] != "loading" or time.monotonic() > end:
            return info
        time.sleep(0.05)


# ---- the server ----------------------------------------------------------------------------------

def test_server_reports_a_passed_selftest(binary, tiny_model_dir, api):
    with e2e.Server(binary, tiny_model_dir) as s:
        info = e2e.Client(s.url, api).get("/info").json()
        log = s.log_text()
    meta = json.loads((tiny_model_dir / "cloob.json").read_text(encoding="utf-8"))
    st = info["selftest"]
    assert st["status"] == "passed" and st["passed"] is True
    assert "failed_check" not in st
    assert st["tolerance"] == meta["selftest"]["tolerance_cosine"]
    assert st["tolerance"] <= st["worst_cosine"] <= 1 + 1e-9
    assert (st["dtype"], st["device"]) == ("float32", "cpu")
    n_texts = len(meta["selftest"]["texts"])
    assert n_texts >= 3
    assert [c["name"] for c in st["checks"]] == ["image"] + [f"texts[{i}]" for i in range(n_texts)]
    for c, t in zip(st["checks"][1:], meta["selftest"]["texts"]):
        assert c["ids_match"] is True and c["tokens"] == len(t["ids"])
    assert all(c["passed"] and abs(c["norm_ratio"] - 1) < 1e-4 for c in st["checks"])
    assert "self-test passed" in log
    # /info's metadata is cloob.json without the reference features (80 KB for the real model)
    shown = info["model"]["metadata"]["selftest"]
    assert "image_feature" not in shown and all("feature" not in t for t in shown["texts"])
    assert [t["ids"] for t in shown["texts"]] == [t["ids"] for t in meta["selftest"]["texts"]]
    assert info["model"]["metadata"]["model_sha256"] == meta["model_sha256"]


@pytest.mark.parametrize("edit,check,where", [(tamper_image, "image", "image"),
                                              (tamper_text, "text", "texts[1]"),
                                              (tamper_ids, "tokenizer", "texts[0]")],
                         ids=["image_feature", "text_feature", "ids"])
def test_failed_selftest_keeps_the_server_unready(binary, tiny_model_dir, api, tmp_path, edit, check, where):
    model = model_copy(tiny_model_dir, tmp_path / "model", edit)
    with e2e.Server(binary, model, wait_ready=False) as s:
        client = e2e.Client(s.url, api)
        info = wait_decided(client)
        assert info["status"] == "failed"
        st = info["selftest"]
        assert st["status"] == "failed" and st["passed"] is False
        assert st["failed_check"] == check
        assert st["message"].startswith(where)
        assert "self-test failed" in info["load_error"] and check in info["load_error"]
        failed = [c["name"] for c in st["checks"] if not c["passed"]]
        assert failed == [where]
        if check == "tokenizer":
            assert st["checks"][1]["ids_match"] is False
            assert "cloob.json stores" in st["message"]
        else:
            assert "cosine" in st["message"] and "tolerance 0.9999" in st["message"]
            bad = next(c for c in st["checks"] if c["name"] == where)
            assert bad["cosine"] < 0.9999 and abs(bad["norm_ratio"] - 1) < 1e-4
            assert st["worst_cosine"] == bad["cosine"]
        # not ready, and it stays so: a model that fails its self-test never serves
        time.sleep(0.3)
        r = client.get("/readyz")
        assert r.status_code == 503 and "self-test failed" in r.json()["error"]["message"]
        r = client.post("/embed/text", json={"text": "犬"})
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        assert client.get("/healthz").status_code == 200
        assert any("ERROR" in line and f"self-test failed ({check} check)" in line for line in s.log_lines)


def test_model_dir_without_reference_vectors_loads(binary, tiny_model_dir, api, tmp_path):
    """A model directory exported before the self-test existed: skipped, with a log line."""
    model = model_copy(tiny_model_dir, tmp_path / "old", drop_section)
    with e2e.Server(binary, model) as s:
        st = e2e.Client(s.url, api).get("/info").json()["selftest"]
        assert st["status"] == "skipped" and "passed" not in st
        assert "re-export" in st["message"]
        assert "self-test skipped" in s.log_text()


def test_selftest_can_be_disabled(binary, tiny_model_dir, api, tmp_path):
    model = model_copy(tiny_model_dir, tmp_path / "model", tamper_image)
    with e2e.Server(binary, model, "--selftest", "false") as s:
        info = e2e.Client(s.url, api).get("/info").json()
        assert info["selftest"] == {"status": "disabled"}
        assert info["config"]["selftest"] is False
        assert "self-test disabled" in s.log_text()


# ---- cloob-embed --selftest ------------------------------------------------------------------------

def run_embed_selftest(build_dir, model_dir, *extra):
    p = subprocess.run([str(build_dir / "cloob-embed"), "--model", str(model_dir), "--threads", "1", "--selftest",
                        *extra], capture_output=True, text=True, timeout=120)
    return p, (json.loads(p.stdout) if p.stdout.strip() else None)


def test_embed_selftest_passes(build_dir, tiny_model_dir):
    p, out = run_embed_selftest(build_dir, tiny_model_dir)
    assert p.returncode == 0, p.stderr
    assert out["status"] == "passed" and out["worst_cosine"] >= out["tolerance"]
    assert len(out["checks"]) == 1 + len(json.loads((tiny_model_dir / "cloob.json").read_text())["selftest"]["texts"])
    info = json.loads(subprocess.run([str(build_dir / "cloob-embed"), "--model", str(tiny_model_dir), "--info"],
                                     capture_output=True, text=True, check=True).stdout)
    assert "image_feature" not in info["metadata"]["selftest"]
    assert info["metadata"]["selftest"]["texts"][0]["text"] == "犬の写真"


@pytest.mark.parametrize("edit,check", [(tamper_image, "image"), (tamper_text, "text"), (tamper_ids, "tokenizer")],
                         ids=["image_feature", "text_feature", "ids"])
def test_embed_selftest_fails_with_exit_1(build_dir, tiny_model_dir, tmp_path, edit, check):
    model = model_copy(tiny_model_dir, tmp_path / "model", edit)
    p, out = run_embed_selftest(build_dir, model)
    assert p.returncode == 1, p.stderr
    assert out["passed"] is False and out["failed_check"] == check
    assert f"self-test FAILED ({check} check)" in p.stderr


def test_embed_selftest_malformed_section_and_old_dirs(build_dir, tiny_model_dir, tmp_path):
    def short_feature(meta):
        meta["selftest"]["texts"][2]["feature"].pop()

    p, out = run_embed_selftest(build_dir, model_copy(tiny_model_dir, tmp_path / "bad", short_feature))
    assert p.returncode == 1
    assert out["failed_check"] == "metadata" and "texts[2].feature has" in out["message"]
    assert "worst_cosine" not in out  # nothing was run on a malformed section

    p, out = run_embed_selftest(build_dir, model_copy(tiny_model_dir, tmp_path / "old", drop_section))
    assert p.returncode == 0
    assert out["status"] == "skipped" and "self-test skipped" in p.stderr

    p, _ = run_embed_selftest(build_dir, tmp_path / "missing")
    assert p.returncode == 3  # the model does not load: not a self-test verdict
