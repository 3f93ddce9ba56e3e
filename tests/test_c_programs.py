"""Runs the C test programs (tests/unit: plain C, also under ASan; tests/shim: against libtorch)
as pytest cases, so that `make test` ends with one pytest summary."""
import os
import subprocess

import pytest

from conftest import BUILD, ROOT, SHARED

ASAN = ROOT / "build-asan"


def _programs():
    """One case per test source (tests/unit/test_*.c, tests/shim/test_*.c, and the unit tests again
    under ASan), so a test that failed to build is a failure, not a silently missing case."""
    out = []
    for kind in ("unit", "shim"):
        out += [BUILD / "tests" / kind / src.stem for src in sorted((ROOT / "tests" / kind).glob("test_*.c"))]
    out += [ASAN / "tests" / "unit" / src.stem for src in sorted((ROOT / "tests" / "unit").glob("test_*.c"))]
    return out


@pytest.mark.parametrize("prog", _programs(), ids=lambda p: f"{p.parent.parent.parent.name}/{p.parent.name}/{p.name}")
def test_c_program(prog, tiny_model_dir):
    assert prog.exists(), f"{prog} was not built (make test builds it)"
    env = dict(os.environ, CLOOB_SHARED=str(SHARED), CLOOB_TINY_MODEL=str(tiny_model_dir),
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run([str(prog)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{prog} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
