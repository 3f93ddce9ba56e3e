"""Global memory cap on request bodies (max_body_bytes_total): many large uploads at once get 429
with Retry-After instead of exhausting memory, and the budget is given back afterwards."""
import json
import socket
import time

import requests

import cloob_e2e as e2e


def _open_upload(port, declared, first_chunk):
    """A POST whose headers and first part of the body are sent; the rest is held back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % declared + first_chunk)
    return s


def test_body_budget_across_connections(binary, tiny_model_dir):
    with e2e.Server(binary, tiny_model_dir, "--max_body_bytes", "64KiB",
                    "--max_body_bytes_total", "96KiB") as srv:
        # A holds 40 KB of a 60 KB body: its buffer reserves 64 KiB of the 96 KiB budget.
        a = _open_upload(srv.port, 60000, b'{"texts": ["' + b"x" * 40000)
        time.sleep(0.5)
        # B needs 64 KiB more: over the total budget -> 429 with Retry-After, at the end of its body.
        b_body = json.dumps({"texts": ["y" * 1000] * 50}).encode()  # ~50 KB
        r = requests.post(srv.url + "/embed/text", data=b_body,
                          headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["type"] == "queue_full"
        assert "max_body_bytes_total" in r.json()["error"]["message"]
        assert int(r.headers["Retry-After"]) >= 1
        a.close()
        time.sleep(0.5)
        # A is gone: its reservation is released and the same request now succeeds.
        r = requests.post(srv.url + "/embed/text", data=b_body,
                          headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["truncated"] is True


def test_total_below_per_request_cap_is_refused_at_start(binary, tiny_model_dir):
    import subprocess
    r = subprocess.run([str(binary), "--model_dir", str(tiny_model_dir), "--max_body_bytes", "1MiB",
                        "--max_body_bytes_total", "512KiB", "--port", "0"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "max_body_bytes_total" in r.stderr


def test_request_bigger_than_the_queue_is_422_not_429(binary, tiny_model_dir, images_dir):
    """20 labels x 4 templates = 80 text items > max_queue_items 64: no retry could ever succeed,
    so the answer is 422 too_many_items, not 429 with a Retry-After."""
    import base64
    img = base64.b64encode((images_dir / "chelsea.png").read_bytes()).decode()
    with e2e.Server(binary, tiny_model_dir, "--max_queue_items", 64, "--max_batch_text", 16,
                    "--max_batch_image", 8) as srv:
        body = {"image": img, "labels": [f"ラベル{i}" for i in range(20)],
                "templates": ["{}の写真", "{}の画像", "{}", "a photo of {}"]}
        r = requests.post(srv.url + "/classify", json=body, timeout=60)
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["type"] == "too_many_items" and "max_queue_items" in err["message"]
        assert "Retry-After" not in r.headers
        body["templates"] = ["{}の写真"]  # 21 items fit
        assert requests.post(srv.url + "/classify", json=body, timeout=60).status_code == 200
