"""wsolevaluation's threshold sweep: the plain per-level OpenCV loop vs camloc.boxes.sweep, on real CAMs.

    .venv/bin/python benchmarks/bench_sweep.py [--rounds 7] [--images 725] [--json out/bench_sweep.json]

Maps: class activation maps of the ground-truth class of pretrained MobileNetV2 on the ImageNet
validation images of ../shared/data/imagenet-val-boxes (squashed to 224 x 224), turned into
wsolevaluation's uint8 map (bicubic to 224, min-max, uint8), GT boxes scaled to 224 by int()
truncation, 100 levels int(tau * max) for tau = 0, 0.01, ..., 0.99.

Variants, each over all maps, interleaved round by round (median of the rounds reported):
- opencv loop: tests/helpers/wsol_oracle.best_ious, one cv2.findContours call per level and image;
- sweep, 1 thread: camloc.boxes.sweep.wsol_best_ious per image in a Python loop;
- sweep batch, 1 / 2 threads: camloc.boxes.sweep.wsol_best_ious_batch(threads=...).
All variants' results are asserted identical to the OpenCV loop's. First-call compile / cache-load
time of the numba kernels is measured in a fresh subprocess.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenet-val-boxes"
sys.path.insert(0, str(ROOT / "tests" / "helpers"))


def real_maps(folder: Path = DATA, limit: int | None = None, batch_size: int = 32):
    """(grays (N, 224, 224) uint8, levels (N, 100) int64, [GT boxes (G_i, 4) int64]) of the val images."""
    import torch

    import camloc
    from camloc.boxes import wsol_gray, wsol_levels, wsol_scoremap

    labels, boxes, sizes = {}, defaultdict(list), {}
    with open(folder / "boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = folder / "images" / row["image"]
            labels[path] = int(row["label_index"])
            sizes[path] = (int(row["width"]), int(row["height"]))
            boxes[path].append(tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")))
    paths = sorted(labels)[:limit]
    cam = camloc.CAM(camloc.load_model("mobilenet_v2"))
    grays, gts = [], []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = camloc.load_batch(chunk, camloc.Preprocess(mode="squash"))
        assert not batch.errors, batch.errors
        out = cam(batch.images, classes=torch.tensor([labels[p] for p in chunk]), upsample=False)
        for i, path in enumerate(chunk):
            grays.append(wsol_gray(wsol_scoremap(out.raw[i, 0].double().numpy())))
            w, h = sizes[path]
            gts.append(
                np.array(
                    [
                        [int(x0 * 224 / w), int(y0 * 224 / h), int(x1 * 224 / w), int(y1 * 224 / h)]
                        for x0, y0, x1, y1 in boxes[path]
                    ],
                    dtype=np.int64,
                )
            )
    grays = np.stack(grays)
    levels = np.stack([wsol_levels(g) for g in grays])
    return grays, levels, gts


COMPILE_PROBE = (
    "import time, numpy as np; t0 = time.perf_counter(); from camloc.boxes.sweep import wsol_best_ious; "
    "t1 = time.perf_counter(); g = np.arange(64, dtype=np.uint8).reshape(8, 8); "
    "wsol_best_ious(g, np.arange(10), np.array([[0, 0, 3, 3]])); print(t1 - t0, time.perf_counter() - t1)"
)


def first_call_seconds(cache_dir: str) -> tuple[float, float]:
    """(import camloc.boxes.sweep, first call of wsol_best_ious) in a fresh interpreter.

    numba caches its compiled code into cache_dir.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", COMPILE_PROBE], capture_output=True, text=True, check=True, env=env)
    imported, called = out.stdout.split()
    return float(imported), float(called)


def cpu_seconds_of_others() -> float:
    """CPU seconds used by every process but this one since boot (from /proc), for a busy-machine check."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--images", type=int, default=None, help="first N images only (default: all)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import cv2
    import torch
    from wsol_oracle import best_ious

    from camloc.boxes.sweep import wsol_best_ious, wsol_best_ious_batch

    with tempfile.TemporaryDirectory() as cache_dir:  # an empty numba cache: compile, then load
        cache_before = first_call_seconds(cache_dir)
        cache_warm = first_call_seconds(cache_dir)
    torch.set_num_threads(2)
    grays, levels, gts = real_maps(limit=args.images)
    n, h, w = grays.shape
    print(f"{n} maps of {h} x {w}, {levels.shape[1]} levels; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    print(
        f"fresh process: import camloc.boxes.sweep {cache_warm[0]:.2f} s; first call {cache_before[1]:.2f} s with an "
        f"empty numba cache (compiles), {cache_warm[1]:.2f} s with it filled (loads)"
    )

    def opencv_loop():
        r = [best_ious(grays[i], levels[i], gts[i]) for i in range(n)]
        return np.stack([a for a, _ in r]), np.stack([b for _, b in r])

    def sweep_loop():
        r = [wsol_best_ious(grays[i], levels[i], gts[i]) for i in range(n)]
        return np.stack([a for a, _ in r]), np.stack([b for _, b in r])

    variants = {
        "opencv loop (oracle), 1 thread": opencv_loop,
        "sweep, per-image calls, 1 thread": sweep_loop,
        "sweep batch, 1 thread": lambda: wsol_best_ious_batch(grays, levels, gts, threads=1),
        "sweep batch, 2 threads": lambda: wsol_best_ious_batch(grays, levels, gts, threads=2),
    }
    ref1, ref2 = opencv_loop()
    for name, fn in variants.items():  # warm-up round, and the exactness check
        v1, v2 = fn()
        assert np.array_equal(v1, ref1) and np.array_equal(v2, ref2), f"{name} differs from the OpenCV loop"
    times = defaultdict(list)
    others0, wall0 = cpu_seconds_of_others(), time.perf_counter()
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t = time.perf_counter()
            v1, v2 = fn()
            times[name].append(time.perf_counter() - t)
            assert np.array_equal(v1, ref1) and np.array_equal(v2, ref2), f"{name} differs from the OpenCV loop"
    others, wall = cpu_seconds_of_others() - others0, time.perf_counter() - wall0
    print(f"other processes used {others:.1f} CPU-s over {wall:.1f} s of timed rounds")
    if others > 0.05 * wall:
        print("WARNING: the machine was busy; timings are unreliable")

    base = statistics.median(times["opencv loop (oracle), 1 thread"])
    print(f"\nmedian of {args.rounds} interleaved rounds, all {n} maps")
    print("| variant | ms / image (median) | min – max | speed-up vs OpenCV loop | ns / pixel (1 thread) |")
    print("|---|---:|---:|---:|---:|")
    rows = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        per_pixel = f"{med / (n * h * w) * 1e9:.1f}" if "2 threads" not in name else "–"
        print(
            f"| {name} | {med / n * 1e3:.3f} | {min(ts) / n * 1e3:.3f} – {max(ts) / n * 1e3:.3f} "
            f"| {base / med:.1f}× | {per_pixel} |"
        )
        rows[name] = {"median_s": med, "min_s": min(ts), "max_s": max(ts), "ms_per_image": med / n * 1e3}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "images": n,
            "levels": int(levels.shape[1]),
            "rounds": args.rounds,
            "import_s": cache_warm[0],
            "first_call_compile_s": cache_before[1],
            "first_call_cached_s": cache_warm[1],
            "others_cpu_s": others,
            "wall_s": wall,
            "variants": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
