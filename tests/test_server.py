"""End-to-end tests of cloob-server: the real binary on a random local port with the tiny model.

Every response these tests receive is validated against openapi.yaml (tests/e2e/cloob_e2e.py), so
the spec and the implementation cannot drift apart.
"""
import io
import json
import math
import struct
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest
import requests

from conftest import ROOT

import cloob_e2e as e2e


@pytest.fixture(scope="module")
def server(binary, tiny_model_dir):
    with e2e.Server(binary, tiny_model_dir, "--max_images_per_request", 8, "--max_texts_per_request", 16,
                    "--max_body_bytes", "4MiB", "--cors_origins", "https://app.example.com") as s:
        yield s


@pytest.fixture
def client(server, api):
    return e2e.Client(server.url, api)


@pytest.fixture(scope="module")
def images(images_dir):
    return {p.name: p.read_bytes() for p in images_dir.iterdir() if p.suffix in (".jpg", ".jpeg", ".png")}


def vec(item):
    e = item["embedding"]
    return e2e.floats_from_b64(e) if isinstance(e, str) else np.array(e, dtype=np.float32)


def embed_texts(client, texts, **opts):
    r = client.post("/embed/text", json={"texts": texts, **opts})
    assert r.status_code == 200, r.text
    return r.json()


def embed_images(client, blobs, **opts):
    r = client.post("/embed/image", json={"images": [e2e.b64(b) for b in blobs], **opts})
    assert r.status_code == 200, r.text
    return r.json()


def settled_metrics(client, timeout=10):
    """Metrics once no other request is in flight: a request's counters are updated in its
    completion callback, which may run just after the client already has the response."""
    end = time.monotonic() + timeout
    while True:
        m = e2e.parse_metrics(client.get("/metrics").text)
        if e2e.metric(m, "cloob_http_requests_in_flight") <= 1 or time.monotonic() > end:
            return m
        time.sleep(0.01)


def png_header(width, height):
    """A PNG whose IHDR claims width x height (valid CRC), followed by a tiny bogus IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def webp_bytes():
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="WEBP")
    return buf.getvalue()


# ---- operational endpoints -----------------------------------------------------------------------

def test_healthz_readyz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_info(client, tiny_model_dir):
    r = client.get("/info")
    assert r.status_code == 200
    info = r.json()
    meta = json.loads((tiny_model_dir / "cloob.json").read_text())
    assert info["status"] == "ready"
    assert info["model"]["embed_dim"] == meta["embed_dim"]
    assert info["model"]["model_sha256"] == meta["model_sha256"]
    assert info["model"]["random_weights"] is True and "meaningless" in info["model"]["warning"]
    assert info["model"]["metadata"]["name"] == meta["name"]
    assert info["batching"]["max_batch_image"] >= 1
    assert info["limits"]["max_images_per_request"] == 8
    assert info["config"]["max_texts_per_request"] == 16


def test_openapi_served(client):
    r = client.get("/openapi.yaml")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/yaml")
    assert r.content == (ROOT / "openapi.yaml").read_bytes()


def test_metrics_format(client):
    embed_texts(client, ["犬"])
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    m = e2e.parse_metrics(r.text)
    assert e2e.metric(m, "cloob_http_requests_total", route="/embed/text", code="200") >= 1
    assert e2e.metric(m, "cloob_ready") == 1
    assert e2e.metric(m, "cloob_items_total", modality="text") >= 1
    assert any(k[0] == "cloob_model_info" for k in m)


def test_request_id_echo_and_generate(client):
    r = client.get("/healthz", headers={"X-Request-Id": "abc-123.x"})
    assert r.headers["X-Request-Id"] == "abc-123.x"
    r = client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces" and len(r.headers["X-Request-Id"]) == 16
    r2 = client.get("/healthz")
    assert r2.headers["X-Request-Id"] != r.headers["X-Request-Id"]


def test_cors(client):
    r = client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Origin" in r.headers.get("Vary", "")
    r = client.get("/healthz", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = client.request("OPTIONS", "/embed/text", validate=False,
                       headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]


def test_keep_alive(server):
    """Two requests on one connection: the two-phase handler must not force Connection: close."""
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    import socket
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(req)
            data = b""
            while b'{"status":"ok"}' not in data:
                chunk = s.recv(4096)
                assert chunk, "connection closed after the first response"
                data += chunk
            assert b"connection: close" not in data.lower()


# ---- /embed/text -------------------------------------------------------------------------------------

def test_embed_text_basic(client):
    out = embed_texts(client, ["犬", "猫の写真", "犬"])
    assert out["object"] == "list" and out["normalized"] is True and out["encoding_format"] == "float"
    d = out["dimension"]
    vs = [vec(x) for x in out["data"]]
    assert [x["index"] for x in out["data"]] == [0, 1, 2]
    assert all(v.shape == (d,) for v in vs)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vs)
    np.testing.assert_allclose(vs[0], vs[2], rtol=0, atol=2e-6)  # rows of one batch: BLAS may round differently
    assert not np.allclose(vs[0], vs[1])
    # "犬" -> [CLS] 9 1651 (SPEC.md section 4): 3 tokens
    assert out["data"][0]["tokens"] == 3 and out["data"][0]["truncated"] is False
    assert out["data"][1]["tokens"] == 4


def test_embed_text_single_and_options(client):
    one = client.post("/embed/text", json={"text": "犬"}).json()
    many = embed_texts(client, ["犬"])
    assert np.array_equal(vec(one["data"][0]), vec(many["data"][0]))
    raw = embed_texts(client, ["犬"], normalize=False)
    assert raw["normalized"] is False
    r = vec(raw["data"][0])
    assert abs(np.linalg.norm(r) - 1) > 1e-4
    np.testing.assert_allclose(r / np.linalg.norm(r), vec(many["data"][0]), rtol=0, atol=1e-6)
    b = embed_texts(client, ["犬"], encoding_format="base64")
    assert b["encoding_format"] == "base64" and isinstance(b["data"][0]["embedding"], str)
    assert np.array_equal(vec(b["data"][0]), vec(many["data"][0]))


def test_embed_text_float_output_roundtrips(client):
    """Floats are printed with enough digits to reproduce the float32 bits exactly."""
    f = embed_texts(client, ["iPhoneとGPU"])
    b = embed_texts(client, ["iPhoneとGPU"], encoding_format="base64")
    assert np.array_equal(vec(f["data"][0]), vec(b["data"][0]))


def test_embed_text_truncation(client):
    long = "犬 " * 200
    out = embed_texts(client, [long, "猫"])
    assert out["data"][0]["truncated"] is True and out["data"][0]["tokens"] == 77
    assert out["data"][1]["truncated"] is False
    r = client.post("/embed/text", json={"texts": ["猫", long], "truncate": False})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["type"] == "text_too_long" and "texts[1]" in err["message"]


def test_text_batches_padded_to_longest_only(client):
    """A text embedded alone (padded to its own length) and in a batch with a long text (padded
    further) gives the same vector: padding is invisible."""
    alone = vec(embed_texts(client, ["犬"])["data"][0])
    mixed = embed_texts(client, ["犬", "これはとても長い文章で、たくさんのトークンに分かれるはずです。" * 2])
    np.testing.assert_allclose(vec(mixed["data"][0]), alone, rtol=0, atol=2e-6)


# ---- /embed/image -----------------------------------------------------------------------------------

def test_embed_image_json_datauri_raw_agree(client, images):
    jpg = images["rocket.jpg"]
    a = vec(embed_images(client, [jpg])["data"][0])
    r = client.post("/embed/image", json={"image": "data:image/jpeg;base64," + e2e.b64(jpg)})
    assert r.status_code == 200
    b = vec(r.json()["data"][0])
    r = client.post("/embed/image", data=jpg, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    c = vec(r.json()["data"][0])
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert abs(np.linalg.norm(a) - 1) < 1e-5


def test_embed_image_raw_query_options(client, images):
    jpg = images["rocket.jpg"]
    r = client.post("/embed/image?normalize=false&encoding_format=base64", data=jpg,
                    headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200
    out = r.json()
    assert out["normalized"] is False and out["encoding_format"] == "base64"
    v = vec(out["data"][0])
    n = vec(embed_images(client, [jpg])["data"][0])
    np.testing.assert_allclose(v / np.linalg.norm(v), n, rtol=0, atol=1e-6)
    r = client.post("/embed/image?normalize=maybe", data=jpg, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 400


def test_embed_image_many_formats_in_order(client, images):
    names = ["rocket.jpg", "camera.png", "palette_color.png", "chelsea.png"]
    out = embed_images(client, [images[n] for n in names])
    assert len(out["data"]) == 4
    singles = [vec(embed_images(client, [images[n]])["data"][0]) for n in names]
    for item, single in zip(out["data"], singles):
        np.testing.assert_allclose(vec(item), single, rtol=0, atol=1e-6)


def test_server_matches_cloob_embed(client, build_dir, tiny_model_dir, images_dir, images):
    """The server's vectors equal the CLI's (same preprocessing, tokenizer and model)."""
    cli = build_dir / "cloob-embed"
    if not cli.exists():
        pytest.skip("build/cloob-embed not built")
    p = subprocess.run([str(cli), "--model", str(tiny_model_dir), "--image", str(images_dir / "rocket.jpg"),
                        "--text", "犬の写真", "--text", "iPhoneとGPU"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    ref = json.loads(p.stdout)
    img = vec(embed_images(client, [images["rocket.jpg"]])["data"][0])
    np.testing.assert_allclose(img, np.array(ref["images"][0]["embedding"], dtype=np.float32), rtol=0, atol=1e-5)
    txt = embed_texts(client, ["犬の写真", "iPhoneとGPU"])
    for got, want in zip(txt["data"], ref["texts"]):
        np.testing.assert_allclose(vec(got), np.array(want["embedding"], dtype=np.float32), rtol=0, atol=1e-5)
        assert got["tokens"] == want["tokens"]


# ---- /classify ----------------------------------------------------------------------------------------

def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_classify_matches_embeddings(client, images):
    labels = ["犬", "猫", "ロケット", "コーヒー"]
    templates = ["{}の写真", "{}のイラスト"]
    blobs = [images["rocket.jpg"], images["coffee.png"]]
    r = client.post("/classify", json={"images": [e2e.b64(b) for b in blobs], "labels": labels,
                                       "templates": templates, "scale": 50})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["scale"] == 50 and out["top_k"] == 4 and out["templates"] == templates
    # The same numbers from /embed/*: normalize, average templates, renormalize, softmax(scale cos).
    texts = [t.replace("{}", l) for l in labels for t in templates]
    tv = np.stack([vec(x) for x in embed_texts(client, texts)["data"]]).reshape(len(labels), len(templates), -1)
    lab = tv.mean(axis=1)
    lab /= np.linalg.norm(lab, axis=1, keepdims=True)
    for res, blob in zip(out["results"], blobs):
        iv = vec(embed_images(client, [blob])["data"][0]).astype(np.float64)
        cos = lab.astype(np.float64) @ iv
        p = softmax(50 * cos)
        preds = res["predictions"]
        assert [x["label_index"] for x in preds] == list(np.argsort(-p, kind="stable"))
        for x in preds:
            assert x["label"] == labels[x["label_index"]]
            assert abs(x["probability"] - p[x["label_index"]]) < 1e-5
            assert abs(x["similarity"] - cos[x["label_index"]]) < 1e-5
        assert abs(sum(x["probability"] for x in preds) - 1) < 1e-6


def test_classify_top_k_default_scale_and_template(client, images):
    r = client.post("/classify", json={"image": e2e.b64(images["rocket.jpg"]), "labels": ["a", "b", "c"], "top_k": 2})
    assert r.status_code == 200
    out = r.json()
    assert out["scale"] == 100 and out["templates"] == ["{}"] and len(out["results"][0]["predictions"]) == 2
    p = [x["probability"] for x in out["results"][0]["predictions"]]
    assert p[0] >= p[1]


def test_classify_label_cache(client, server, images):
    labels = [f"ラベル{i}" for i in range(5)]
    body = {"image": e2e.b64(images["palette_color.png"]), "labels": labels, "templates": ["{}です"]}
    before = settled_metrics(client)
    r1 = client.post("/classify", json=body)
    r2 = client.post("/classify", json=body)
    assert r1.status_code == 200 and r2.status_code == 200
    assert r1.json()["results"] == r2.json()["results"]
    after = settled_metrics(client)
    hits = e2e.metric(after, "cloob_label_cache_hits_total") - e2e.metric(before, "cloob_label_cache_hits_total")
    misses = e2e.metric(after, "cloob_label_cache_misses_total") - e2e.metric(before, "cloob_label_cache_misses_total")
    assert misses == 5 and hits == 5
    # The second request needed no text pass: only its image went through the model.
    items_text = e2e.metric(after, "cloob_items_total", modality="text") - e2e.metric(before, "cloob_items_total", modality="text")
    assert items_text == 5


# ---- /v1/embeddings (OpenAI-compatible) ----------------------------------------------------------

def test_openai_embeddings_text(client):
    r = client.post("/v1/embeddings", json={"input": ["犬", "猫の写真"], "model": "text-embedding-3-small"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "list" and out["model"] == "random-tiny"
    assert [d["object"] for d in out["data"]] == ["embedding", "embedding"]
    assert out["usage"]["prompt_tokens"] == 3 + 4 == out["usage"]["total_tokens"]
    native = embed_texts(client, ["犬", "猫の写真"])
    for a, b in zip(out["data"], native["data"]):
        np.testing.assert_allclose(vec(a), vec(b), rtol=0, atol=1e-6)
    one = client.post("/v1/embeddings", json={"input": "犬", "encoding_format": "base64"}).json()
    np.testing.assert_allclose(vec(one["data"][0]), vec(native["data"][0]), rtol=0, atol=1e-6)


def test_openai_embeddings_image_and_errors(client, images):
    jpg = images["rocket.jpg"]
    r = client.post("/v1/embeddings", json={"input": "data:image/jpeg;base64," + e2e.b64(jpg), "modality": "image"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["usage"]["prompt_tokens"] == 0
    np.testing.assert_allclose(vec(out["data"][0]), vec(embed_images(client, [jpg])["data"][0]), rtol=0, atol=1e-6)
    dim = out["data"][0]["embedding"].__len__()
    assert client.post("/v1/embeddings", json={"input": "犬", "dimensions": dim}).status_code == 200
    assert_error(client.post("/v1/embeddings", json={"input": "犬", "dimensions": dim + 1}), 400, "invalid_request")
    assert_error(client.post("/v1/embeddings", json={"input": [[1, 2, 3]]}), 400, "invalid_request")
    assert_error(client.post("/v1/embeddings", json={"input": "犬", "modality": "audio"}), 400, "invalid_request")
    assert_error(client.post("/v1/embeddings", json={}), 400, "invalid_request")
    assert_error(client.post("/v1/embeddings", json={"input": ["a"] * 17}), 422, "too_many_items")


# ---- errors -------------------------------------------------------------------------------------------

def assert_error(r, status, etype=None):
    assert r.status_code == status, f"{r.status_code} {r.text}"
    err = r.json()["error"]
    assert err["code"] == status and err["message"]
    if etype:
        assert err["type"] == etype, err


@pytest.mark.parametrize("path,body,etype", [
    ("/embed/text", b"{not json", "invalid_json"),
    ("/embed/text", b'{"texts": ["a"]} trailing', "invalid_json"),
    ("/embed/text", b'["a"]', "invalid_json"),
    ("/embed/text", b"", "invalid_json"),
    ("/embed/text", b'{"texts": "a"}', "invalid_request"),
    ("/embed/text", b'{"texts": [1, 2]}', "invalid_request"),
    ("/embed/text", b'{"texts": []}', "invalid_request"),
    ("/embed/text", b'{}', "invalid_request"),
    ("/embed/text", b'{"texts": ["a"], "text": "b"}', "invalid_request"),
    ("/embed/text", b'{"texts": ["a"], "normalize": "yes"}', "invalid_request"),
    ("/embed/text", b'{"texts": ["a"], "encoding_format": "hex"}', "invalid_request"),
    ("/embed/image", b'{"images": []}', "invalid_request"),
    ("/embed/image", b'{"images": [""]}', "invalid_request"),
    ("/embed/image", b'{"images": [null]}', "invalid_request"),
    ("/embed/image", b'{"images": ["data:image/png,abc"]}', "invalid_base64"),
    ("/classify", b'{"image": "aGVsbG8=", "labels": []}', "invalid_request"),
    ("/classify", b'{"image": "aGVsbG8="}', "invalid_request"),
    ("/classify", b'{"image": "aGVsbG8=", "labels": ["a"], "templates": ["no placeholder"]}', "invalid_request"),
    ("/classify", b'{"image": "aGVsbG8=", "labels": ["a"], "top_k": 0}', "invalid_request"),
    ("/classify", b'{"image": "aGVsbG8=", "labels": ["a"], "scale": -1}', "invalid_request"),
])
def test_400(client, path, body, etype):
    assert_error(client.post(path, data=body, headers={"Content-Type": "application/json"}), 400, etype)


def test_invalid_base64(client):
    r = client.post("/embed/image", json={"images": ["not*base64!"]})
    assert_error(r, 400, "invalid_base64")
    assert "images[0]" in r.json()["error"]["message"]


def test_404_405(client):
    assert_error(client.get("/nope"), 404, "not_found")
    r = client.get("/embed/text")
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]
    r = client.post("/healthz")
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    r = client.request("DELETE", "/classify")
    assert_error(r, 405)


def test_415(client, images):
    r = client.post("/embed/text", data=b'{"texts":["a"]}', headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")
    r = client.post("/embed/image", data=webp_bytes(), headers={"Content-Type": "image/webp"})
    assert_error(r, 415, "unsupported_image_format")
    r = client.post("/embed/image", json={"images": [e2e.b64(webp_bytes())]})
    assert_error(r, 415, "unsupported_image_format")


def test_422(client, images):
    r = client.post("/embed/image", json={"images": [e2e.b64(images["truncated.jpg"])]})
    assert_error(r, 422, "invalid_image")
    r = client.post("/embed/image", data=png_header(100000, 100000), headers={"Content-Type": "image/png"})
    assert_error(r, 422, "image_too_large")
    r = client.post("/embed/image", json={"images": [e2e.b64(images["palette_color.png"])] * 9})
    assert_error(r, 422, "too_many_items")
    r = client.post("/embed/text", json={"texts": ["a"] * 17})
    assert_error(r, 422, "too_many_items")
    r = client.post("/embed/text", json={"texts": ["a" * 20000]})
    assert_error(r, 422, "text_too_long")


def test_bad_item_fails_only_its_request(client, images):
    """A request with one corrupt image fails alone; a good request sent at the same time is fine."""
    good_body = {"images": [e2e.b64(images["rocket.jpg"])] * 3}
    bad_body = {"images": [e2e.b64(images["rocket.jpg"]), e2e.b64(images["truncated.jpg"])]}
    results = {}

    def go(name, body):
        c = e2e.Client(client.base, client.api)
        results[name] = c.post("/embed/image", json=body)

    ts = [threading.Thread(target=go, args=(f"good{i}", good_body)) for i in range(3)]
    ts += [threading.Thread(target=go, args=("bad", bad_body))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results["bad"].status_code == 422
    assert "images[1]" in results["bad"].json()["error"]["message"]
    for i in range(3):
        assert results[f"good{i}"].status_code == 200
    assert client.get("/readyz").status_code == 200


def test_413_content_length(server):
    """Declared too large: refused before the body is read."""
    resp = e2e.raw_http(server.port, b"POST /embed/image HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 100000000\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), resp[:200]
    assert json.loads(body)["error"]["type"] == "payload_too_large"


def test_413_chunked(server, api):
    """No Content-Length (chunked): the cap is enforced while streaming."""
    def chunks():
        for _ in range(5):
            yield b"x" * (1 << 20)
    r = requests.post(server.url + "/embed/text", data=chunks(), headers={"Content-Type": "application/json"},
                      timeout=60)
    assert_error(r, 413, "payload_too_large")
    api.validate("POST", "/embed/text", r.status_code, r.headers["Content-Type"], r.content, r.headers)


def test_body_just_under_limit_is_read(client):
    # 4 MiB limit; a 3 MiB JSON body with a bad field is parsed (400), not refused (413)
    r = client.post("/embed/text", data=b'{"texts": 1, "pad": "' + b"x" * (3 << 20) + b'"}',
                    headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request")


def test_errors_counted_in_metrics(client):
    before = settled_metrics(client)
    client.post("/embed/text", data=b"{", headers={"Content-Type": "application/json"})
    after = settled_metrics(client)
    key = ("cloob_http_requests_total", frozenset({"route": "/embed/text", "code": "400"}.items()))
    assert after.get(key, 0) == before.get(key, 0) + 1
    # Failed requests are counted once each, not per item.
    assert e2e.metric(after, "cloob_errors_total", reason="bad_request") == e2e.metric(before, "cloob_errors_total", reason="bad_request") + 1


def test_server_timing(client):
    r = client.post("/embed/text", json={"texts": ["犬"]})
    st = r.headers["Server-Timing"]
    parts = dict(p.strip().split(";dur=") for p in st.split(","))
    assert set(parts) == {"decode", "queue", "infer"}
    assert all(float(v) >= 0 for v in parts.values())
    assert float(parts["infer"]) > 0


# ---- auth -----------------------------------------------------------------------------------------

def test_api_keys(binary, tiny_model_dir, api):
    with e2e.Server(binary, tiny_model_dir, env={"CLOOB_API_KEYS": "k1,k2"}) as s:
        anon = e2e.Client(s.url, api)
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/readyz").status_code == 200
        for path in ("/info", "/metrics"):
            r = anon.get(path)
            assert_error(r, 401, "unauthorized")
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = anon.post("/embed/text", json={"texts": ["犬"]})
        assert_error(r, 401, "unauthorized")
        r = anon.post("/embed/text", json={"texts": ["犬"]}, headers={"Authorization": "Bearer wrong"})
        assert_error(r, 401)
        r = anon.post("/embed/text", json={"texts": ["犬"]}, headers={"Authorization": "Basic azE6"})
        assert_error(r, 401)
        ok = e2e.Client(s.url, api, api_key="k2")
        assert ok.post("/embed/text", json={"texts": ["犬"]}).status_code == 200
        assert ok.get("/info").status_code == 200
