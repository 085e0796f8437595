"""Which input size should ``camloc boxes`` use? CorLoc, COCO AP and time per image at each shorter side.

    .venv/bin/python benchmarks/weak_label_sizes.py                      # ImageNet, pretrained MobileNetV2
    .venv/bin/python benchmarks/weak_label_sizes.py --data ../shared/data/cub-200-2011-50 --split test \\
        --model /work/models/cub-default.pt                              # CUB, a camloc-trained model

Each image of DATA boxed as ``camloc boxes DATA --model MODEL --size S --threshold T`` boxes it (the
whole photo, ``--resize full``, shorter side ``S x 256 / 224``; the paper rule unless ``--rule`` says
otherwise; a run per side and ``--thresholds`` tau), scored against the data's own boxes: CorLoc,
COCO AP, AP50, AP75, and the seconds per image of the run (the model loaded once, before; COCO AP's
scoring included).
``--curve-sides`` adds CorLoc at tau = 0.05, 0.10, ..., 0.50 for those shorter sides (the maps
computed once more: ``calibrate_threshold``'s curve). Prints a markdown table; ``--json`` keeps the rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import camloc
from camloc.datasets import open_dataset
from camloc.evaluation.weak_labels import BoxSettings, calibrate_threshold, export_boxes
from camloc.runtime import keep_freed_memory

IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-boxes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(IMAGENET))
    parser.add_argument("--split", default=None, help="the split of DATA (CUB: test)")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--sides", type=int, nargs="+", default=[256, 320, 384, 448, 512, 576, 640])
    parser.add_argument("--curve-sides", type=int, nargs="*", default=[])
    parser.add_argument("--rule", default="paper")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.2], help="tau: each a run per side")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()
    model = camloc.load_model(args.model)
    info, cam = camloc.model_info(model), camloc.CAM(model)
    data = open_dataset(args.data, split=args.split)
    own = info.preprocess
    print(f"{args.model}: own input {own.size}, shorter side {own.resize_size}; {len(data.samples)} samples, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    rows = []
    print("| `--size` | shorter side | tau | CorLoc | AP | AP50 | AP75 | s / image | load |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for side, tau in ((side, tau) for side in args.sides for tau in args.thresholds):
        settings = BoxSettings(rule=args.rule, threshold=tau)
        size = round(side * own.size / own.resize_size)
        pre = dataclasses.replace(own, size=size, resize_size=side, mode="full")
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as out:
            s = export_boxes(data, cam, info=info, preprocess=pre, out_dir=out, settings=settings,
                             batch_size=args.batch_size, workers=args.workers, progress=False).summary  # fmt: skip
        seconds = (time.perf_counter() - start) / s["images"]
        row = {"size": size, "side": side, "threshold": tau, "images": s["images"], "seconds_per_image": seconds,
               "load": os.getloadavg()[0], **{k: s[k] for k in ("corloc", "ap", "ap50", "ap75")}}  # fmt: skip
        if side in args.curve_sides and tau == args.thresholds[0]:
            found = calibrate_threshold(data, cam, info=info, settings=settings, step=0.05, preprocess=pre,
                                        batch_size=args.batch_size, workers=args.workers)  # fmt: skip
            row["curve"] = {f"{t:.2f}": round(c, 2) for t, c in zip(found.thresholds, found.curve, strict=True)}
        rows.append(row)
        scores = " | ".join(f"{row[k]:.2f}" for k in ("corloc", "ap", "ap50", "ap75"))
        print(f"| {size} | {side} | {tau:.2f} | {scores} | {seconds:.3f} | {row['load']:.1f} |", flush=True)
        if "curve" in row:
            print("  CorLoc by tau: " + ", ".join(f"{t}: {c}" for t, c in row["curve"].items() if 0 < float(t) <= 0.5))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
