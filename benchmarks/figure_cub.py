"""docs/cub-cases.png: CUB-200-2011 test images with the fine-tuned model's CAM and PC1 maps side by side,
the ground-truth box (green) and each map's box (red), for the best, median and worst images by IoU.

    .venv/bin/camloc evaluate ../shared/data/cub-200-2011-50 --format cub --split test --model out/cub/m.pt \\
        --method pc1 --threshold 0.28 --per-image out/cub/rows-pc1.csv
    .venv/bin/python benchmarks/figure_cub.py out/cub/m.pt out/cub/rows-pc1.csv --out docs/cub-cases.png

The ranking comes from the per-image rows of an evaluation (``--method pc1``: by PC1's IoU at
``--threshold``, the threshold the figure draws PC1's boxes at). Each
picture is drawn on the photo's own pixels: the map of the ground-truth class resampled to the photo,
the box of its largest component above a fraction of its maximum (``camloc.explain``'s rule: 0.2 for
CAM as the paper; 0.28 for PC1, whose maps are min-max normalized, its MaxBoxAcc threshold on this
split), and the box's IoU with the nearest ground-truth box. A model file with a map size (camloc
train's) has its maps drawn from that input size, as ``camloc evaluate`` scores them. Every picture
has the same height, so the rows follow one another without gaps.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from camloc import CAM, PC1, explain, load_model, model_info
from camloc.datasets.registry import open_train_test
from camloc.reports.figures import draw_box, overlay

CUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub-200-2011-50"


def iou(a: tuple, b: tuple) -> float:
    """IoU of two inclusive-pixel boxes ``(x0, y0, x1, y1)``."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(0, w) * max(0, h)
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


def picture(sample, method, info, threshold: float, height: int, tmp: Path) -> tuple[Image.Image, float | None]:
    """The photo with ``method``'s map of the labelled class, the boxes, scaled to ``height``; the box's IoU."""
    result = explain([sample.path], method, info=info, classes=[sample.label], maps_dir=tmp, threshold=threshold)
    heat = np.load(next(tmp.glob("*.npy")))[0]
    out = overlay(Image.open(sample.path).convert("RGB"), heat)
    for gt in sample.boxes:
        out = draw_box(out, gt, "#00ff00", 4)
    box = result.records[0]["predictions"][0]["box"]
    score = None
    if box is not None:
        out = draw_box(out, tuple(box), "#ff2020", 4)
        score = max(iou(tuple(box), tuple(gt)) for gt in sample.boxes)
    return out.resize((round(out.width * height / out.height), height), Image.Resampling.LANCZOS), score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("rows", help="per-image rows of `camloc evaluate --method pc1` on the CUB test split")
    parser.add_argument("--per-case", type=int, default=3, help="images in each row (default: %(default)s)")
    parser.add_argument("--height", type=int, default=170, help="every picture's height in pixels")
    parser.add_argument("--threshold", type=float, default=0.2, help="CAM's box: pixels >= this x its maximum")
    parser.add_argument(
        "--pc1-threshold",
        type=float,
        default=0.28,
        help="PC1's (a [0, 1] map): its MaxBoxAcc threshold on CUB (the default model's, maps at 640 px)",
    )
    parser.add_argument("--out", default="docs/cub-cases.png")
    args = parser.parse_args()

    _, test_set = open_train_test(CUB)
    by_id = {s.image_id: s for s in test_set.samples}
    with open(args.rows, newline="") as f:
        rows = sorted(
            (r for r in csv.DictReader(line for line in f if not line.startswith("#")) if r["iou"]),
            key=lambda r: float(r["iou"]),
        )
    k, middle = args.per_case, len(rows) // 2
    cases = {"best": rows[-k:][::-1], "median": rows[middle - k // 2 : middle - k // 2 + k], "worst": rows[:k]}
    model = load_model(args.model)
    info = model_info(model)
    if info.map_size:  # the maps as `camloc evaluate` scores them: the class is given, so only the map's input matters
        side = info.map_size
        info = dataclasses.replace(info, preprocess=dataclasses.replace(info.preprocess, size=side, resize_size=side))
    methods = {"CAM": (CAM(model), args.threshold), "PC1": (PC1(model), args.pc1_threshold)}
    label_h, gap, pair_gap = 18, 3, 14  # CAM and PC1 of one image close together, images further apart
    lines: list[list[tuple[str, Image.Image]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, chosen in cases.items():
            line = []
            for row in chosen:
                sample = by_id[row["image_id"]]
                for name, (method, threshold) in methods.items():
                    folder = Path(tmp) / f"{case}-{row['image_id'].replace('/', '_')}-{name}"
                    shown, score = picture(sample, method, info, threshold, args.height, folder)
                    iou_text = "no box" if score is None else f"IoU {score:.2f}"
                    line.append((f"{case}, {name}: {iou_text}", shown))
            lines.append(line)
    width = max(sum(p.width for _, p in line) + (gap + pair_gap) * len(line) // 2 for line in lines)
    sheet = Image.new("RGB", (width, len(lines) * (label_h + args.height)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, line in enumerate(lines):
        x, y = 0, r * (label_h + args.height)
        for i, (text, shown) in enumerate(line):
            draw.text((x + 3, y + 3), text, fill="black")
            sheet.paste(shown, (x, y + label_h))
            x += shown.width + (gap if i % 2 == 0 else pair_gap)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}: {', '.join(f'{k} {len(v)}' for k, v in cases.items())} images, CAM and PC1 each")


if __name__ == "__main__":
    main()
