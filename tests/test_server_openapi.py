"""openapi.yaml is the contract: it must be a valid OpenAPI 3.1 document (checked with a real
OpenAPI validator, @seriousme/openapi-schema-validator, installed by `npm ci --prefix tests/e2e`),
and it must describe exactly the routes the server serves."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

import cloob_e2e as e2e

E2E = ROOT / "tests" / "e2e"


def _ensure_validator():
    """tools/install-deps.sh runs `npm ci --prefix tests/e2e`; if that has not happened yet, try
    it here (the npm registry is reachable wherever this project builds)."""
    mod = E2E / "node_modules" / "@seriousme" / "openapi-schema-validator"
    npm = shutil.which("npm")
    if not mod.is_dir() and npm:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(E2E)], capture_output=True,
                       timeout=300)
    return mod.is_dir()


def test_openapi_document_is_valid_openapi_31():
    node = shutil.which("node")
    if not node or not _ensure_validator():
        if os.environ.get("CI") == "true":
            pytest.fail("the OpenAPI validator is not installed: npm ci --prefix tests/e2e")
        pytest.skip("OpenAPI validator not installed (npm ci --prefix tests/e2e)")
    r = subprocess.run([node, str(E2E / "validate_openapi.mjs"), str(ROOT / "openapi.yaml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "valid OpenAPI 3.1" in r.stdout


def test_every_schema_is_valid_json_schema_2020_12():
    e2e.OpenAPI()  # check_schema on every component schema


def test_spec_paths_are_the_served_routes(build_dir, tiny_model_dir):
    api = e2e.OpenAPI()
    with e2e.Server(e2e.server_binary(build_dir), tiny_model_dir) as s:
        c = e2e.Client(s.url, api)
        for path, ops in api.doc["paths"].items():
            for method in ops:
                # An empty request: whatever it answers must be documented for that operation
                # (Client validates), and it must not be "no such endpoint".
                r = c.request(method.upper(), path, data=b"" if method == "post" else None,
                              headers={"Content-Type": "application/json"} if method == "post" else {})
                assert r.status_code != 404 or path == "/openapi.yaml", (method, path, r.text)
        # And nothing else is served.
        for path in ("/", "/embed", "/v1/embedding", "/embed/images", "/metrics/"):
            assert c.get(path).status_code == 404
