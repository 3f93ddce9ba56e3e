"""cloob-server under load and in its lifecycle: dynamic batching across requests, queue full
(429), deadlines (504), liveness while busy, readiness before warm-up, graceful shutdown.

The model is made "busy" deterministically with the test-only flag --debug-infer-delay-ms
(every forward pass sleeps first), so these tests do not depend on the machine's speed; no test
asserts a wall-clock duration except generous upper bounds on liveness.
"""
import threading
import time

import numpy as np
import pytest
import requests


import cloob_e2e as e2e


@pytest.fixture(scope="module")
def jpg(images_dir):
    return (images_dir / "rocket.jpg").read_bytes()


def vec(item):
    return np.array(item["embedding"], dtype=np.float32)


def wait_for(pred, timeout=30, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def in_flight(url):
    m = e2e.parse_metrics(requests.get(url + "/metrics", timeout=10).text)
    return e2e.metric(m, "cloob_http_requests_in_flight") - 1  # minus this scrape


def test_concurrent_clients_batch_together(binary, tiny_model_dir, api):
    """64 clients x 3 requests: every answer is right, and batches of more than one item formed
    from different requests (each request carries one text)."""
    texts = [f"テキスト{i}番" for i in range(64 * 3)]
    with e2e.Server(binary, tiny_model_dir, "--max_queue_delay_us", 20000, "--max_batch_text", 32,
                    "--debug-infer-delay-ms", 5) as s:
        ref_client = e2e.Client(s.url, api)
        # References, one request at a time (batches of 1).
        ref = {}
        for t in texts[:8]:
            ref[t] = vec(ref_client.post("/embed/text", json={"texts": [t]}).json()["data"][0])
        before = e2e.parse_metrics(ref_client.get("/metrics").text)
        results, errors = {}, []
        barrier = threading.Barrier(64)

        def worker(k):
            c = e2e.Client(s.url, api)
            barrier.wait()
            for j in range(3):
                t = texts[k * 3 + j]
                try:
                    r = c.post("/embed/text", json={"texts": [t]})
                    assert r.status_code == 200, r.text
                    d = r.json()["data"]
                    assert len(d) == 1 and d[0]["index"] == 0
                    results[t] = vec(d[0])
                except Exception as e:  # noqa: BLE001 - collected and reported below
                    errors.append(repr(e))

        ts = [threading.Thread(target=worker, args=(k,)) for k in range(64)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        assert not errors, errors[:3]
        assert len(results) == len(texts)
        for t, v in ref.items():
            np.testing.assert_allclose(results[t], v, rtol=0, atol=2e-6)
        after = e2e.parse_metrics(ref_client.get("/metrics").text)
        count = lambda m, le: e2e.metric(m, "cloob_batch_size_bucket", modality="text", le=le)
        batches = count(after, "+Inf") - count(before, "+Inf")
        singles = count(after, "1") - count(before, "1")
        items = e2e.metric(after, "cloob_items_total", modality="text") - e2e.metric(before, "cloob_items_total", modality="text")
        assert items == len(texts)
        assert batches - singles > 0, "no batch larger than 1 was formed"
        assert batches < len(texts), "every request ran alone"


def test_queue_full_429_and_liveness(binary, tiny_model_dir, jpg, api):
    """With the model busy and the queue at its cap, a new request gets 429 with Retry-After,
    while /healthz still answers at once (well, within a generous 2 s)."""
    with e2e.Server(binary, tiny_model_dir, "--max_queue_items", 4, "--max_batch_image", 1, "--max_batch_text", 4,
                    "--debug-infer-delay-ms", 400) as s:
        c = e2e.Client(s.url, api)
        first = {}
        t = threading.Thread(target=lambda: first.setdefault("r", e2e.Client(s.url, api).post(
            "/embed/image", json={"images": [e2e.b64(jpg)] * 4})))
        t.start()
        wait_for(lambda: c.get("/info").json()["batching"]["queued_items"] >= 1, what="queued items")
        r = c.post("/embed/image", json={"images": [e2e.b64(jpg)] * 4})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["type"] == "queue_full"
        assert int(r.headers["Retry-After"]) >= 1
        t0 = time.monotonic()
        h = requests.get(s.url + "/healthz", timeout=10)
        assert h.status_code == 200
        assert time.monotonic() - t0 < 2.0
        t.join(60)
        assert first["r"].status_code == 200 and len(first["r"].json()["data"]) == 4
        # Request counters are updated in the completion callback, just after the response left.
        wait_for(lambda: e2e.metric(e2e.parse_metrics(c.get("/metrics").text), "cloob_http_requests_total",
                                    route="/embed/image", code="429") >= 1, what="429 counted")
        m = e2e.parse_metrics(c.get("/metrics").text)
        # One refused 4-image request is one error, not four.
        assert e2e.metric(m, "cloob_errors_total", reason="queue_full") == 1


def test_deadline_504(binary, tiny_model_dir, jpg, api):
    """Items whose request's deadline passed while they waited are dropped before the model."""
    with e2e.Server(binary, tiny_model_dir, "--request_timeout_ms", 100, "--max_batch_image", 1,
                    "--debug-infer-delay-ms", 300) as s:
        c = e2e.Client(s.url, api)
        before = e2e.parse_metrics(c.get("/metrics").text)
        r = c.post("/embed/image", json={"images": [e2e.b64(jpg)] * 3})
        assert r.status_code == 504, r.text
        assert r.json()["error"]["type"] == "deadline_exceeded"
        # items_total moves only when a pass ends: wait for the one pass that started before the
        # deadline (batch 1, 300 ms), then give the batcher time to (not) run the other two.
        def ran():
            m = e2e.parse_metrics(c.get("/metrics").text)
            return e2e.metric(m, "cloob_items_total", modality="image") - \
                e2e.metric(before, "cloob_items_total", modality="image")
        wait_for(lambda: ran() >= 1, what="the first pass to finish")
        time.sleep(1.0)
        assert ran() == 1, "expired items still went through the model"
        # Every pass sleeps 300 ms, longer than the 100 ms deadline: still a clean 504, no harm.
        late = c.post("/embed/text", json={"texts": ["犬"]})
        assert late.status_code == 504
        assert c.get("/readyz").status_code == 200


def test_readyz_503_until_warmup_done(binary, tiny_model_dir, api):
    with e2e.Server(binary, tiny_model_dir, "--debug-warmup-delay-ms", 1500, wait_ready=False) as s:
        c = e2e.Client(s.url, api)
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        r = c.post("/embed/text", json={"texts": ["犬"]})
        assert r.status_code == 503 and r.json()["error"]["type"] == "not_ready"
        assert c.get("/info").json()["status"] == "loading"
        s.wait_ready(60)
        assert c.get("/readyz").status_code == 200
        assert c.post("/embed/text", json={"texts": ["犬"]}).status_code == 200


def test_model_load_failure_is_not_ready(binary, tmp_path, api):
    with e2e.Server(binary, tmp_path, wait_ready=False) as s:
        c = e2e.Client(s.url, api)
        wait_for(lambda: c.get("/info").json()["status"] == "failed", what="load failure")
        r = c.get("/readyz")
        assert r.status_code == 503 and "failed to load" in r.json()["error"]["message"]
        assert c.get("/healthz").status_code == 200


def test_graceful_shutdown_under_load(binary, tiny_model_dir, api):
    """SIGTERM with work queued: every admitted request is answered 200, later ones 503 (or the
    connection is refused once the listener stops), and the process exits 0."""
    with e2e.Server(binary, tiny_model_dir, "--max_batch_text", 2, "--debug-infer-delay-ms", 150,
                    "--shutdown_grace_ms", 20000) as s:
        admitted = {}

        def admitted_client(k):
            admitted[k] = e2e.Client(s.url, api).post("/embed/text", json={"texts": [f"文{k}"]})

        ts = [threading.Thread(target=admitted_client, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        wait_for(lambda: in_flight(s.url) >= 8, what="8 requests in flight")

        # Background load that keeps sending until the server goes away.
        late = []
        late_types = []
        stop = threading.Event()

        def looping_client():
            c = e2e.Client(s.url, api)
            while not stop.is_set():
                try:
                    r = c.post("/embed/text", json={"texts": ["猫"]})
                    late.append(r.status_code)
                    if r.status_code == 503:
                        late_types.append(r.json()["error"]["type"])  # asserted in the main thread
                        return
                except requests.ConnectionError:
                    late.append("conn")
                    return

        loops = [threading.Thread(target=looping_client) for _ in range(4)]
        for t in loops:
            t.start()
        time.sleep(0.2)
        code = s.terminate(60)
        stop.set()
        for t in ts + loops:
            t.join(60)
        assert code == 0, s.log_text()
        assert len(admitted) == 8
        for k, r in admitted.items():
            assert r.status_code == 200, (k, r.status_code, r.text)
            assert len(r.json()["data"]) == 1
        assert set(late) <= {200, 503, "conn"}, late
        assert all(t == "shutting_down" for t in late_types), late_types
        assert any("draining" in line for line in s.log_lines)
