"""From photos with class labels to a trained detector: camloc's boxes train YOLO, scored on ground-truth boxes.

    .venv/bin/python benchmarks/detector_flow.py --model /work/models/cub-default.pt --out /work/scratch/flow
    .venv/bin/python benchmarks/detector_flow.py ... --labels gt      # the reference: the ground-truth boxes

CUB birds as one class, ``bird``:

1. ``camloc boxes CUB --split train --model MODEL --format yolo --class-name bird --val-fraction 0``:
   CAM boxes for the 1,500 training images (their CorLoc and AP50 against CUB's boxes printed by camloc);
2. CUB's own boxes (``bounding_boxes.txt``, read here, not by camloc) as a YOLO dataset of the test
   images (471), the detector's validation set, and, for the reference, of the training images;
3. ultralytics ``YOLO("yolov8n.yaml")`` trained from scratch (no pretrained weights offline) on the
   training images with camloc's boxes (``--labels camloc``) or CUB's (``--labels gt``), on the CPU;
4. its last epoch's weights validated on the test images' ground-truth boxes: mAP50, mAP50-95.

Every step is timed; ``OUT/flow-<labels>.json`` keeps the numbers. ultralytics runs offline
(``YOLO_OFFLINE``, its settings in OUT, ``plots=False``): it downloads nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

CUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub-200-2011-50"


def cub_images(cub: Path, train: bool) -> list[tuple[Path, tuple[float, float, float, float]]]:
    """The images of one CUB split with their box ``(x, y, width, height)`` (0-based, CUB's floats)."""
    paths = dict(line.split(maxsplit=1) for line in (cub / "images.txt").read_text().splitlines() if line.strip())
    split = dict(line.split() for line in (cub / "train_test_split.txt").read_text().splitlines() if line.strip())
    boxes = {}
    for line in (cub / "bounding_boxes.txt").read_text().splitlines():
        if line.strip():
            key, *xywh = line.split()
            boxes[key] = tuple(map(float, xywh))
    return [(cub / "images" / paths[k].strip(), boxes[k]) for k in paths if split[k] == ("1" if train else "0")]


def write_yolo_truth(images: list, out: Path) -> Path:
    """``out/images/NAME.jpg`` (links) and ``out/labels/NAME.txt`` (class 0, normalized centre and size)."""
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for path, (x, y, w, h) in images:
        with Image.open(path) as im:
            width, height = im.size
        link = out / "images" / path.name
        if not link.is_symlink():
            link.symlink_to(path)
        cx, cy = (x + w / 2) / width, (y + h / 2) / height
        line = f"0 {cx:.6f} {cy:.6f} {w / width:.6f} {h / height:.6f}\n"
        (out / "labels" / f"{path.stem}.txt").write_text(line)
    return out / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cub", type=Path, default=CUB)
    parser.add_argument("--model", required=True, help="the CUB classifier for camloc boxes (camloc train's .pt)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", choices=["camloc", "gt"], default="camloc", help="the training boxes")
    parser.add_argument("--boxes-args", default="", help="more camloc boxes flags, e.g. '--size 392'")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fraction", type=float, default=1.0, help="of the training images (a quick timing probe)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"labels": args.labels, "epochs": args.epochs, "imgsz": args.imgsz, "batch": args.batch,
                    "fraction": args.fraction, "cpus": os.cpu_count()}  # fmt: skip

    test = write_yolo_truth(cub_images(args.cub, train=False), out / "gt-test")
    if args.labels == "camloc":
        boxes = out / "camloc-boxes"
        command = [sys.executable, "-m", "camloc", "boxes", str(args.cub), "--split", "train", "--model", args.model,
                   "--format", "yolo", "--class-name", "bird", "--val-fraction", "0", "--out", str(boxes),
                   *args.boxes_args.split()]  # fmt: skip
        if not (boxes / "summary.json").exists():
            start = time.perf_counter()
            subprocess.run(command, check=True)
            record["boxes_seconds"] = time.perf_counter() - start
        summary = json.loads((boxes / "summary.json").read_text())
        record["boxes_command"] = " ".join(command)
        record.update({f"boxes_{k}": summary[k] for k in ("images", "corloc", "ap", "ap50", "ap75")})
        train = boxes / "yolo" / "images" / "train"
    else:
        train = write_yolo_truth(cub_images(args.cub, train=True), out / "gt-train")
    data = out / f"data-{args.labels}.yaml"
    data.write_text(f"train: {train}\nval: {test}\nnames:\n  0: bird\n")

    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics-config"))
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO
    from ultralytics.utils import USER_CONFIG_DIR

    for font in ("Arial.ttf", "Arial.Unicode.ttf"):  # it would fetch the font it does not find
        (USER_CONFIG_DIR / font).touch()
    model = YOLO("yolov8n.yaml")  # from the yaml: random weights, nothing fetched
    start = time.perf_counter()
    model.train(data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=args.workers,
                device="cpu", plots=False, amp=False, val=False, cache="ram", project=str(out / "runs"),
                name=args.labels, exist_ok=True, seed=0, deterministic=True, fraction=args.fraction)  # fmt: skip
    record["train_seconds"] = time.perf_counter() - start
    last = out / "runs" / args.labels / "weights" / "last.pt"
    start = time.perf_counter()
    metrics = YOLO(str(last)).val(data=str(data), imgsz=args.imgsz, batch=args.batch, workers=args.workers,
                                  device="cpu", plots=False, project=str(out / "runs"), name=f"{args.labels}-val",
                                  exist_ok=True)  # fmt: skip
    record["val_seconds"] = time.perf_counter() - start
    record.update({"test_images": len(list(test.iterdir())), "map50": 100 * float(metrics.box.map50),
                   "map50_95": 100 * float(metrics.box.map), "precision": 100 * float(metrics.box.mp),
                   "recall": 100 * float(metrics.box.mr)})  # fmt: skip
    (out / f"flow-{args.labels}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
