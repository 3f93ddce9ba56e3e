"""Runs the C test programs (tests/unit: plain C, also under ASan; tests/shim: against libtorch)
as pytest cases, so that `make test` ends with one pytest summary."""
import os
import subprocess

import pytest

from conftest import BUILD, ROOT, SHARED

ASAN = ROOT / "build-asan"


def _programs():
    out = []
    for kind in ("unit", "shim"):
        d = BUILD / "tests" / kind
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.name.startswith("test_") and os.access(p, os.X_OK)
                          and p.suffix == "")
    d = ASAN / "tests" / "unit"
    if d.is_dir():
        out += sorted(p for p in d.iterdir() if p.name.startswith("test_") and p.suffix == "")
    return out


@pytest.mark.parametrize("prog", _programs(), ids=lambda p: f"{p.parent.parent.parent.name}/{p.parent.name}/{p.name}")
def test_c_program(prog, tiny_model_dir):
    env = dict(os.environ, CLOOB_SHARED=str(SHARED), CLOOB_TINY_MODEL=str(tiny_model_dir),
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([str(prog)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{prog} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
