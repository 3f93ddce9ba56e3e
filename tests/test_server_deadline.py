"""Deadlines while the model is busy: a request whose items are already inside a forward pass is
answered 504 at its deadline (request_timeout_ms) by the HTTP layer's watchdog, not when the pass
ends; the pass still finishes into the request's buffers, which are freed only then.

The model is made busy with the test-only flag --debug-infer-delay-ms (every forward pass sleeps
3 s first). Time bounds are generous upper bounds (the pass takes 3 s, the deadline is 0.5 s), so
they separate "answered at the deadline" from "answered when the pass ended" on a noisy CI box.
"""
import threading
import time

import pytest

import cloob_e2e as e2e

DELAY_MS = 3000
TIMEOUT_MS = 500
LATE = 2.5  # seconds: an answer after this came from the end of the pass, not from the deadline


@pytest.fixture(scope="module")
def jpg(images_dir):
    return (images_dir / "rocket.jpg").read_bytes()


def wait_for(pred, timeout=30, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def timeouts(client):
    return e2e.metric(e2e.parse_metrics(client.get("/metrics").text), "cloob_errors_total", reason="timeout")


def image_items(client):
    return e2e.metric(e2e.parse_metrics(client.get("/metrics").text), "cloob_items_total", modality="image")


def timed_post(client, path, **kw):
    t0 = time.monotonic()
    r = client.post(path, **kw)
    return r, time.monotonic() - t0


def assert_deadline_504(r, elapsed):
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["type"] == "deadline_exceeded"
    assert "busy" in err["message"]
    assert elapsed < LATE, f"504 after {elapsed:.2f} s: answered when the pass ended, not at the deadline"


def stop_clean(s):
    """Graceful shutdown exits 0, and a sanitizer build reported nothing."""
    assert s.terminate(60) == 0, s.log_text()
    assert not any("Sanitizer" in line for line in s.log_lines), "\n".join(s.log_lines)


def busy_server(binary, model_dir, *extra):
    return e2e.Server(binary, model_dir, "--debug-infer-delay-ms", DELAY_MS, "--request_timeout_ms", TIMEOUT_MS,
                      "--shutdown_grace_ms", 20000, *extra)


def test_504_at_the_deadline_while_the_pass_runs(binary, tiny_model_dir, jpg, api):
    with busy_server(binary, tiny_model_dir) as s:
        c = e2e.Client(s.url, api)
        before_timeouts, before_items = timeouts(c), image_items(c)
        r, elapsed = timed_post(c, "/embed/image", json={"images": [e2e.b64(jpg)]})
        assert_deadline_504(r, elapsed)
        assert r.headers["X-Request-Id"]
        # Counted once, as a timeout.
        assert timeouts(c) - before_timeouts == 1
        # The server answers while the pass still runs...
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 200
        # ...and the pass that held the item finishes (writing into the request's buffers, which
        # must still be alive: ASan builds check exactly that).
        wait_for(lambda: image_items(c) - before_items == 1, what="the slow pass to finish")
        assert timeouts(c) - before_timeouts == 1, "the finished pass counted the timeout again"
        # Model requests are still served (at this delay and deadline: 504 again, at the deadline).
        r, elapsed = timed_post(c, "/embed/text", json={"texts": ["犬の写真"]})
        assert_deadline_504(r, elapsed)
        stop_clean(s)


def test_20_concurrent_requests_all_504_then_normal(binary, tiny_model_dir, jpg, api):
    """20 requests (images and texts) in flight at once all get 504 at the deadline; once the
    model is idle again every body-budget reservation has been given back (a body as large as the
    whole budget is accepted), and graceful shutdown exits 0."""
    budget = 4 << 20
    with busy_server(binary, tiny_model_dir, "--max_body_bytes", budget, "--max_body_bytes_total", budget,
                     "--max_batch_image", 4) as s:
        c = e2e.Client(s.url, api)
        before = timeouts(c)
        results, errors = {}, []
        barrier = threading.Barrier(20)

        def client(k):
            try:
                cc = e2e.Client(s.url, api)
                barrier.wait()
                if k % 2:
                    results[k] = timed_post(cc, "/embed/image", data=jpg, headers={"Content-Type": "image/jpeg"})
                else:
                    results[k] = timed_post(cc, "/embed/text", json={"texts": [f"文{k}", "猫"]})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append((k, repr(e)))

        ts = [threading.Thread(target=client, args=(k,)) for k in range(20)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not errors, errors
        assert len(results) == 20
        for k, (r, elapsed) in sorted(results.items()):
            assert_deadline_504(r, elapsed)
        assert timeouts(c) - before == 20  # once per request, not per item
        # Liveness while the passes finish.
        assert c.get("/healthz").status_code == 200
        wait_for(lambda: c.get("/info").json()["batching"]["queued_items"] == 0, what="queues to empty")

        # The budget is whole again once the last pass holding those bodies finished: until
        # then a budget-sized body gets 429; a leaked reservation would make it 429 forever.
        big = '{"texts":["犬"]}'.encode() + b" " * (budget - 4096)

        def budget_free():
            r = c.post("/embed/text", data=big, headers={"Content-Type": "application/json"})
            assert r.status_code in (429, 504), r.text
            return r.status_code == 504

        wait_for(budget_free, timeout=60, what="the body budget to be given back")
        stop_clean(s)


def test_graceful_shutdown_with_answered_requests_still_in_the_model(binary, tiny_model_dir, jpg, api):
    """SIGTERM while a 504-answered request's items are still inside the pass: the server waits for
    the pass (the buffers it writes into are freed after it) and exits 0."""
    with busy_server(binary, tiny_model_dir) as s:
        c = e2e.Client(s.url, api)
        r, elapsed = timed_post(c, "/embed/image", json={"images": [e2e.b64(jpg)] * 2})
        assert_deadline_504(r, elapsed)
        stop_clean(s)


def test_no_deadline_waits_for_the_model(binary, tiny_model_dir, api):
    """request_timeout_ms 0: no watchdog, the request waits for the slow pass and gets 200."""
    with e2e.Server(binary, tiny_model_dir, "--debug-infer-delay-ms", 600, "--request_timeout_ms", 0) as s:
        c = e2e.Client(s.url, api)
        r = c.post("/embed/text", json={"texts": ["犬"]})
        assert r.status_code == 200, r.text
        stop_clean(s)
