"""Classification and paper-rule localization of a pretrained model on ../shared/data/imagenet-val-boxes.

    .venv/bin/python benchmarks/paper_rule_val.py [--model mobilenet_v2] [--threshold 0.2]

For both resize modes: top-1 / top-5 classification, GT-known localization (the ground-truth class's
paper box has IoU >= 0.5 with a ground-truth box) and top-1 localization (class right and that IoU).
Boxes are taken on the min-max normalized CAM in the original image's pixels (bilinear).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from collections import defaultdict
from pathlib import Path

import torch

import camloc
from camloc.runtime import keep_freed_memory

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-boxes"


def read_boxes(folder: Path) -> dict[Path, tuple[int, list[tuple[int, int, int, int]]]]:
    labels, boxes = {}, defaultdict(list)
    with open(folder / "boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = folder / "images" / row["image"]
            labels[path] = int(row["label_index"])
            boxes[path].append(tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")))
    return {p: (labels[p], boxes[p]) for p in sorted(labels)}


def evaluate(model, items, mode: str, threshold: float, batch_size: int = 32) -> dict[str, float]:
    preprocess = dataclasses.replace(camloc.model_info(model).preprocess, mode=mode)
    cam = camloc.CAM(model)
    paths = list(items)
    counts = defaultdict(int)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = camloc.load_batch(chunk, preprocess)
        labels = torch.tensor([items[p][0] for p in chunk])
        out = cam(batch.images, classes=labels[:, None], upsample=False)
        top5 = out.logits.topk(5, dim=1).indices.cpu()
        for i, path in enumerate(chunk):
            heat = camloc.normalize_maps(camloc.to_image_frame(out.raw[i], batch.geometries[i]), "minmax")[0]
            located = camloc.best_iou(camloc.paper_box(heat, threshold), items[path][1]) >= 0.5
            correct = top5[i, 0] == labels[i]
            counts["cls_top1"] += int(correct)
            counts["cls_top5"] += int(labels[i] in top5[i])
            counts["gt_known_loc"] += int(located)
            counts["top1_loc"] += int(located and correct)
    return {k: 100.0 * v / len(paths) for k, v in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--threshold", type=float, default=0.2)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    keep_freed_memory()
    model = camloc.load_model(args.model)
    items = read_boxes(args.data)
    print(f"{camloc.model_info(model).name}, {len(items)} images, paper rule at {args.threshold:.0%} of max")
    print("| resize | cls top-1 | cls top-5 | GT-known loc | top-1 loc |")
    print("|---|---|---|---|---|")
    for mode in ("squash", "crop"):
        r = evaluate(model, items, mode, args.threshold)
        print(f"| {mode} | {r['cls_top1']:.2f} | {r['cls_top5']:.2f} | {r['gt_known_loc']:.2f} | {r['top1_loc']:.2f} |")


if __name__ == "__main__":
    main()
