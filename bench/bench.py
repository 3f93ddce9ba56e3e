#!/usr/bin/env python3
"""`make bench`: a reproducible, time-bounded load benchmark.

1. the model alone: build/bench_model (batched forward passes through the shim, no HTTP);
2. the server: build/cloob-server on a free loopback port, loaded with wrk (Debian's `wrk`) at
   concurrency 1 and 16 for images (a 640x480 JPEG as base64 JSON) and texts (short Japanese
   captions), reporting requests/s, items/s and p50/p99 latency.

The model is a full-size random-weight export (ViT-B/16 + BERT-base: the real model's cost; the
weights do not change the arithmetic). Results go to stdout as a Markdown table and to
build/bench/results.json. Everything is bounded: BENCH_SECONDS (default 20) per wrk run.

Environment: BENCH_MODEL (model dir; default build/models/full, exported if missing),
BENCH_SECONDS, BENCH_SERVER_ARGS (extra cloob-server flags), BUILD, SHARED.
"""
import base64
import io
import json
import os
import pathlib
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("BUILD", ROOT / "build"))
SHARED = pathlib.Path(os.environ.get("SHARED", ROOT.parent / "shared"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
CAPTION = "茶トラの猫が窓辺で眠っている写真"  # a typical caption; the raw model runs at its token count
PY = sys.executable


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def ensure_model():
    d = pathlib.Path(os.environ.get("BENCH_MODEL", BUILD / "models" / "full"))
    if not (d / "model.pt").exists():
        log(f"bench: exporting a full-size random model into {d} ...")
        subprocess.run([PY, str(ROOT / "tools" / "export_model.py"), "--random", "full", "--seed", "0",
                        "--tokenizer", str(SHARED / "model" / "google_sp.model"), "--out", str(d)],
                       check=True)
    return d


def caption_tokens(model):
    out = subprocess.run([str(BUILD / "cloob-embed"), "--model", str(model), "--text", CAPTION],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["texts"][0]["tokens"]


def bench_model(model, text_len):
    out = subprocess.run([str(BUILD / "bench_model"), "--model", str(model), "--device", "cpu",
                          "--image-batches", "1,8", "--text-batches", "1,16,64", "--text-len", str(text_len),
                          "--seconds", "6"], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return time.time() - t0
        except Exception:
            time.sleep(0.5)
    raise RuntimeError("server not ready in time")


def wait_idle(port, timeout=300):
    """Waits until the previous run's queued work is done, so runs do not overlap."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        busy = sum(float(l.split()[-1]) for l in text.splitlines()
                   if l.startswith("cloob_queue_depth") or l.startswith("cloob_http_requests_in_flight"))
        if busy <= 1:  # the /metrics request itself
            return
        time.sleep(0.5)


def jpeg_b64():
    from PIL import Image
    src = SHARED / "images" / "dog.jpeg"
    im = Image.open(src).convert("RGB").resize((640, 480))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("%s", "rb")
wrk.body = f:read("*a")
f:close()
"""


def parse_wrk(text):
    def dur(s):
        v, unit = re.match(r"([\d.]+)(us|ms|s|m)", s).groups()
        return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
    res = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        res[f"p{pct}_ms"] = dur(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", text)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def run_wrk(port, path, body, conc, items_per_request, tmp):
    body_file = pathlib.Path(tmp) / f"body-{path.strip('/').replace('/', '_')}.json"
    body_file.write_text(json.dumps(body))
    lua = pathlib.Path(tmp) / "post.lua"
    lua.write_text(WRK_LUA % body_file)
    cmd = ["wrk", "-t", str(min(conc, 2)), "-c", str(conc), "-d", f"{SECONDS}s", "--timeout", "60s",
           "--latency", "-s", str(lua), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = parse_wrk(out)
    r["items_per_s"] = r["requests_per_s"] * items_per_request
    r.update(path=path, concurrency=conc, items_per_request=items_per_request)
    return r


def main():
    for exe in ("cloob-server", "bench_model"):
        if not (BUILD / exe).exists():
            sys.exit(f"bench: {BUILD / exe} missing: run make")
    model = ensure_model()
    log("bench: model alone (bench_model) ...")
    text_len = caption_tokens(model)
    raw = bench_model(model, text_len)
    port = free_port()
    args = [str(BUILD / "cloob-server"), "--model_dir", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--access_log", "false", "--request_timeout_ms", "120000"]
    args += shlex.split(os.environ.get("BENCH_SERVER_ARGS", ""))
    log("bench: starting", " ".join(args))
    srv = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = []
    try:
        ready_s = wait_ready(port, srv)
        log(f"bench: server ready after {ready_s:.1f} s (load + warm-up)")
        img = {"images": [jpeg_b64()]}
        txt = {"texts": [CAPTION]}
        with tempfile.TemporaryDirectory() as tmp:
            for path, body, n in (("/embed/image", img, 1), ("/embed/text", txt, 1)):
                for conc in (1, 16):
                    wait_idle(port)
                    log(f"bench: wrk {path} c={conc} {SECONDS}s ...")
                    results.append(run_wrk(port, path, body, conc, n, tmp))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
    finally:
        srv.terminate()
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
    info = json.loads(subprocess.run([str(BUILD / "cloob-embed"), "--model", str(model), "--info"],
                                     capture_output=True, text=True).stdout or "{}")
    batch_lines = [l for l in metrics.splitlines() if l.startswith("cloob_batch_size_sum") or
                   l.startswith("cloob_batch_size_count")]
    out = {"text_tokens": text_len, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(), "model": str(model),
           "runtime": info.get("runtime"), "model_alone": raw, "server": results,
           "batch_metrics": batch_lines}
    (BUILD / "bench").mkdir(parents=True, exist_ok=True)
    (BUILD / "bench" / "results.json").write_text(json.dumps(out, indent=1))

    print(f"\n### Model alone (build/bench_model, {os.cpu_count()} CPUs; texts of {text_len} tokens)\n")
    print("| modality | batch | items/s | ms per batch |\n|---|---|---|---|")
    for r in raw:
        if "modality" in r:
            print(f"| {r['modality']} | {r['batch']} | {r['items_per_s']:.2f} | {r['ms_per_batch']:.1f} |")
    print("\n### Through the server (wrk, keep-alive, one item per request)\n")
    print("| endpoint | concurrency | requests/s | items/s | p50 ms | p99 ms | non-2xx |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['path']} | {r['concurrency']} | {r['requests_per_s']:.2f} | {r['items_per_s']:.2f} | "
              f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['non_2xx']} |")
    print("\nbatch metrics:", "; ".join(batch_lines))
    print(f"\nresults: {BUILD / 'bench' / 'results.json'}")


if __name__ == "__main__":
    main()
