"""Replays every fuzz corpus (seeds and committed crash/regression inputs) through its libFuzzer
target built with ASan+UBSan (`make fuzz-build`, which `make test` runs), so a fixed crash stays
fixed. `make fuzz` is the exploring run; this is the regression run."""
import os
import subprocess

import pytest

from conftest import ROOT

FUZZ_BUILD = ROOT / "build-fuzz"
TARGETS = sorted(p.stem for p in (ROOT / "tests" / "fuzz").glob("fuzz_*.c"))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_corpus_replays_clean(target):
    exe = FUZZ_BUILD / target
    corpus = ROOT / "tests" / "fuzz" / "corpus" / target
    if not exe.exists():
        pytest.fail(f"{exe} missing: run make fuzz-build")
    assert corpus.is_dir() and any(corpus.iterdir()), f"{corpus} has no seeds"
    env = dict(os.environ, CLOOB_SHARED=os.environ.get("CLOOB_SHARED", str(ROOT.parent / "shared")))
    r = subprocess.run([str(exe), "-runs=0", str(corpus)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Done" in r.stderr or "INITED" in r.stderr, r.stderr[-2000:]
