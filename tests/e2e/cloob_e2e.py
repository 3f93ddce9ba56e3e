"""End-to-end helpers: start the real cloob-server on a free local port, talk to it, and check
every response against openapi.yaml with a real JSON Schema (2020-12) validator.

Used by tests/test_server*.py. The binary is $CLOOB_SERVER_BIN if set, else <build>/cloob-server.
"""
import base64
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import jsonschema
import requests
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def server_binary(build_dir):
    return pathlib.Path(os.environ.get("CLOOB_SERVER_BIN", pathlib.Path(build_dir) / "cloob-server"))


class Server:
    """One cloob-server process on 127.0.0.1 with --port 0 (the kernel picks a free port; the
    server logs it). stderr is drained by a thread into self.log_lines; access log (stdout) into
    self.access_lines."""

    def __init__(self, binary, model_dir, *args, env=None, wait_ready=True, timeout=120):
        self.binary = str(binary)
        if not pathlib.Path(self.binary).exists():
            raise RuntimeError(f"{self.binary} not built: run make")
        cmd = [self.binary, "--host", "127.0.0.1", "--port", "0", "--model_dir", str(model_dir),
               "--workers", "2", "--http_threads", "2", "--threads", "1", *map(str, args)]
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        self.log_lines = []
        self.access_lines = []
        self._port_event = threading.Event()
        self.port = None
        threading.Thread(target=self._drain, args=(self.proc.stderr, self.log_lines, True), daemon=True).start()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.access_lines, False), daemon=True).start()
        if not self._port_event.wait(timeout):
            self.kill()
            raise RuntimeError("server did not report its port:\n" + self.log_text())
        if self.port is None:
            self.kill()
            raise RuntimeError("server exited early:\n" + self.log_text())
        self.url = f"http://127.0.0.1:{self.port}"
        if wait_ready:
            self.wait_ready(timeout)

    def _drain(self, pipe, sink, find_port):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink.append(line)
            if find_port and self.port is None:
                m = re.search(r"listening on http://[^ ]*:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    self._port_event.set()
        self._port_event.set()

    def log_text(self):
        return "\n".join(self.log_lines[-50:])

    def wait_ready(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + self.log_text())
            try:
                if requests.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server not ready in time:\n" + self.log_text())

    def terminate(self, timeout=30):
        """SIGTERM, wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """A server still running when the test ends must stop cleanly on SIGTERM (exit 0, within
        30 s) and must have logged no sanitizer report (make asan-server). Not checked when the
        test already failed, so the first error is the one reported."""
        if self.proc.poll() is not None:
            return
        try:
            code = self.terminate(30)
        except subprocess.TimeoutExpired:
            code = "timeout"
        if exc_type is None:
            assert code == 0, f"server exit status {code} after SIGTERM\n{self.log_text()[-4000:]}"
            time.sleep(0.05)  # let the log reader thread take the last lines
            bad = [l for l in self.log_lines if "Sanitizer" in l or "runtime error:" in l]
            assert not bad, "sanitizer report:\n" + "\n".join(bad[:40])


# ---- OpenAPI response validation -------------------------------------------------------------

class OpenAPI:
    """Validates (method, path, status, content type, JSON body) against openapi.yaml: the
    operation must exist, the status must be documented for it, and the body must validate
    against the documented schema (JSON Schema 2020-12, as OpenAPI 3.1 specifies). $refs are
    resolved inside the document."""

    def __init__(self, path=ROOT / "openapi.yaml"):
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)
        assert self.doc["openapi"].startswith("3.1"), "openapi.yaml must be OpenAPI 3.1"
        self.resolver = jsonschema.RefResolver(base_uri="", referrer=self.doc)
        # Every schema in the document must itself be valid 2020-12.
        for name, schema in self.doc["components"]["schemas"].items():
            jsonschema.Draft202012Validator.check_schema(schema)

    def _resolve(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            _, obj = self.resolver.resolve(obj["$ref"])
        return obj

    def response_spec(self, method, path, status):
        ops = self.doc["paths"].get(path)
        if ops is None:
            raise AssertionError(f"{path} is not in openapi.yaml")
        op = ops.get(method.lower())
        if op is None:
            raise AssertionError(f"{method} {path} is not in openapi.yaml")
        resp = op["responses"].get(str(status))
        if resp is None:
            raise AssertionError(f"{method} {path} answered {status}, which openapi.yaml does not document")
        return self._resolve(resp)

    def validate(self, method, path, status, content_type, body_bytes, headers=None):
        ops = self.doc["paths"].get(path)
        if (ops is None and status == 404) or (ops is not None and method.lower() not in ops and status == 405):
            # An unknown path or method cannot have an operation in the spec; its answer must
            # still be the documented error shape.
            spec = self._resolve({"$ref": "#/components/responses/NotFound" if status == 404
                                  else "#/components/responses/MethodNotAllowed"})
        else:
            spec = self.response_spec(method, path, status)
        content = spec.get("content", {})
        ct = (content_type or "").split(";")[0].strip()
        if not content:
            assert not body_bytes, f"{method} {path} {status}: body not documented"
            return
        media = content.get(ct)
        if media is None:
            raise AssertionError(f"{method} {path} {status}: content type {ct!r} not documented ({list(content)})")
        for h, hspec in (spec.get("headers") or {}).items():
            hs = self._resolve(hspec)
            if h in ("Retry-After", "WWW-Authenticate", "Allow") and headers is not None:
                assert h in headers, f"{method} {path} {status}: header {h} missing"
                if hs.get("schema", {}).get("type") == "integer":
                    assert re.fullmatch(r"\d+", headers[h]), f"{h}: {headers[h]!r}"
        schema = media.get("schema")
        if schema is None:
            return
        if ct == "application/json":
            instance = json.loads(body_bytes)
        else:
            instance = body_bytes.decode("utf-8")
        validator = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise AssertionError(f"{method} {path} {status}: response does not match openapi.yaml at "
                                 f"{list(e.absolute_path)}: {e.message}")


class Client:
    """requests.Session wrapper that validates every response it gets against openapi.yaml."""

    def __init__(self, base_url, api=None, api_key=None):
        self.base = base_url
        self.s = requests.Session()
        self.api = api
        self.api_key = api_key
        self.validated = 0

    def request(self, method, path, validate=True, **kw):
        headers = dict(kw.pop("headers", {}) or {})
        if self.api_key:
            headers.setdefault("Authorization", f"Bearer {self.api_key}")
        kw.setdefault("timeout", 60)
        r = self.s.request(method, self.base + path, headers=headers, **kw)
        if validate and self.api is not None:
            p = urllib.parse.urlsplit(path).path
            self.api.validate(method, p, r.status_code, r.headers.get("Content-Type"), r.content, r.headers)
            self.validated += 1
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)


# ---- small helpers -----------------------------------------------------------------------------

def b64(data):
    return base64.b64encode(data).decode("ascii")


def floats_from_b64(s):
    import numpy as np
    return np.frombuffer(base64.b64decode(s), dtype="<f4")


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} from Prometheus text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def metric(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


def raw_http(port, data, timeout=10):
    """Sends raw bytes on a fresh connection and returns everything read until close/timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
                if b"\r\n\r\n" in b"".join(chunks):
                    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
                    m = re.search(rb"content-length: *(\d+)", head, re.I)
                    if m and len(body) >= int(m.group(1)):
                        break
        except (socket.timeout, ConnectionResetError):
            pass
    return b"".join(chunks)
