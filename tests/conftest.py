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

# tools/ (exporter, model definition) and tests/reference/ (the Python reference pipeline)
for p in (ROOT / "tools", ROOT / "tests" / "reference"):
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
