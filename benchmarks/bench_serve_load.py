"""`camloc serve` under load: many concurrent clients for a bounded time; requests/s, p50/p99 latency, peak RSS.

    .venv/bin/python benchmarks/bench_serve_load.py [--clients 100] [--seconds 30] [--json FILE]

A real `camloc serve` process (pretrained MobileNetV2, CPU, `--images` a folder of 8 ILSVRC photos) and
`--clients` threads, each with its own keep-alive connection, sending for `--seconds` a mix that a page
full of users sends: the page, `/api/info`, the folder listing, an image file, an explain of a file of the
folder by path (top-5 CAM), and bad requests (a path outside the folder, an unknown route, a body over
`--max-bytes`, a malformed multipart body). Every answer's status is checked against the one it must
have; a wrong status or a connection error counts as a failure. Latency is per request kind, from send
to the whole body read. The server's peak RSS is sampled every 50 ms from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-val-boxes" / "images"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kinds(names: list[str], max_bytes: int) -> list[tuple[str, str, str, dict, int]]:
    """(kind, method, path, request arguments, expected status), weighted by repetition."""
    bad_multipart = {"content": b"--xyz\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=xyz"}}
    over = {"content": b"x" * (max_bytes + 1), "headers": {"content-type": "application/octet-stream"}}
    good = [
        ("page", "GET", "/", {}, 200),
        ("info", "GET", "/api/info", {}, 200),
        ("listing", "GET", "/api/images", {}, 200),
    ]
    good += [("image file", "GET", "/api/image", {"params": {"path": n}}, 200) for n in names[:2]]
    explain = [("explain", "POST", "/api/explain", {"data": {"path": n, "topk": "5"}}, 200) for n in names]
    bad = [
        ("outside the folder", "GET", "/api/image", {"params": {"path": "../../etc/passwd"}}, 403),
        ("unknown route", "GET", "/nosuch", {}, 404),
        ("over the cap", "POST", "/api/explain", over, 413),
        ("bad multipart", "POST", "/api/explain", bad_multipart, 400),
    ]
    return good * 3 + explain + bad


def _client(port: int, kinds: list, stop: float, seed: int, out: dict, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        while time.perf_counter() < stop:
            kind, method, path, arguments, status = rng.choice(kinds)
            start = time.perf_counter()
            try:
                got = client.request(method, path, **arguments).status_code
            except httpx.HTTPError as err:
                failures.append(f"{kind}: {type(err).__name__}")
                continue
            latencies[kind].append(time.perf_counter() - start)
            if got != status:
                failures.append(f"{kind}: {got}, not {status}")
    with lock:
        for kind, values in latencies.items():
            out["latencies"][kind].extend(values)
        out["failures"].extend(failures)


def main() -> None:
    """Start the server, load it, print and keep the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--max-bytes", type=int, default=2_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="camloc-load-"))
    names = []
    for path in sorted(DATA.iterdir())[:8]:
        shutil.copy(path, folder / path.name)
        names.append(path.name)
    port = _free_port()
    command = [sys.executable, "-m", "camloc", "serve", "--port", str(port), "--images", str(folder)]
    command += ["--max-bytes", str(args.max_bytes), "--queue", "256"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        idle_rss = _rss_kb(server.pid)
        peak = [idle_rss]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_kb(server.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        out: dict = {"latencies": defaultdict(list), "failures": []}
        lock = threading.Lock()
        kinds = _kinds(names, args.max_bytes)
        start = time.perf_counter()
        stop = start + args.seconds
        threads = [
            threading.Thread(target=_client, args=(port, kinds, stop, seed, out, lock)) for seed in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        done.set()
        sampler.join()
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    answered = sum(len(v) for v in out["latencies"].values())
    per_kind = {}
    for kind, values in sorted(out["latencies"].items()):
        values.sort()
        per_kind[kind] = {
            "requests": len(values),
            "p50_ms": 1000 * statistics.median(values),
            "p99_ms": 1000 * values[min(len(values) - 1, int(0.99 * len(values)))],
        }
    everything = sorted(v for values in out["latencies"].values() for v in values)
    result = {
        "clients": args.clients,
        "seconds": elapsed,
        "answered": answered,
        "requests_per_s": answered / elapsed,
        "p50_ms": 1000 * statistics.median(everything),
        "p99_ms": 1000 * everything[int(0.99 * len(everything))],
        "failures": len(out["failures"]),
        "failure_examples": sorted(set(out["failures"]))[:10],
        "server_alive_after": alive,
        "server_rss_idle_mb": idle_rss / 1024,
        "server_rss_peak_mb": peak[0] / 1024,
        "per_kind": per_kind,
        "cpu": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
