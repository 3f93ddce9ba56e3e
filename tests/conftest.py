"""Shared pytest fixtures and paths.

`make test` sets CLOOB_BUILD (the build folder) and CLOOB_SHARED (../shared with the real
tokenizer and test photos); running pytest by hand falls back to build/ and ../shared.
"""
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("CLOOB_BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
SHARED = pathlib.Path(os.environ.get("CLOOB_SHARED", ROOT.parent / "shared"))
if not SHARED.is_absolute():
    SHARED = (ROOT / SHARED).resolve()

# tools/ (exporter, model definition), tests/reference/ (the Python reference pipeline) and
# tests/e2e/ (the server harness: start/stop, the OpenAPI validator)
for p in (ROOT / "tools", ROOT / "tests" / "reference", ROOT / "tests" / "e2e"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def build_dir():
    return BUILD


@pytest.fixture(scope="session")
def shared_dir():
    return SHARED


@pytest.fixture(scope="session")
def spm_model():
    return SHARED / "model" / "google_sp.model"


@pytest.fixture(scope="session")
def images_dir():
    return SHARED / "images"


@pytest.fixture(scope="session")
def tiny_model_dir():
    """The tiny random-weight model directory that `make models` exports."""
    d = BUILD / "models" / "tiny"
    if not (d / "model.pt").exists():
        pytest.fail(f"{d}/model.pt missing: run `make models` (make test does)")
    return d


@pytest.fixture(scope="module")
def api():
    """openapi.yaml loaded for response validation (tests/e2e/cloob_e2e.py)."""
    import cloob_e2e
    return cloob_e2e.OpenAPI()


@pytest.fixture(scope="module")
def binary(build_dir):
    """The cloob-server program under test."""
    import cloob_e2e
    b = cloob_e2e.server_binary(build_dir)
    if not b.exists():
        pytest.fail(f"{b} missing: run make")
    return b
