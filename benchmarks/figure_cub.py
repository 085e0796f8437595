"""docs/cub-cases.png: CUB-200-2011 test images with the fine-tuned model's CAM, the ground-truth box
(green) and the CAM box (red), for the best, median and worst images by IoU.

    .venv/bin/camloc evaluate ../shared/data/cub-200-2011-50 --model out/cub/m.pt --protocol paper \\
        --per-image out/cub/rows.csv --json out/cub/paper.json
    .venv/bin/python benchmarks/figure_cub.py out/cub/m.pt out/cub/rows.csv --out docs/cub-cases.png

The IoU ranking comes from the per-image rows of the evaluation (paper protocol: the map of the
ground-truth class, the box of its largest component above 20 % of the maximum). The pictures are
drawn on the photo's own pixels: the map resampled to the photo, the box from ``camloc.explain`` of
the ground-truth class, at the same threshold.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from camloc import CAM, explain, load_model, model_info
from camloc.datasets.registry import open_train_test
from camloc.reports.figures import draw_box, overlay

CUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub-200-2011-50"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("rows", help="per-image rows of `camloc evaluate --protocol paper` on the CUB test split")
    parser.add_argument("--per-case", type=int, default=4, help="images in each row (default: %(default)s)")
    parser.add_argument("--threshold", type=float, default=0.2)
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
    cases = {
        "best": rows[-k:][::-1],
        "median": rows[middle - k // 2 : middle - k // 2 + k],
        "worst": rows[:k],
    }
    model = load_model(args.model)
    info = model_info(model)
    cam = CAM(model)
    tile, label_h = 260, 22
    sheet = Image.new("RGB", (k * tile, len(cases) * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    with tempfile.TemporaryDirectory() as tmp:
        for r, (case, chosen) in enumerate(cases.items()):
            for c, row in enumerate(chosen):
                sample = by_id[row["image_id"]]
                result = explain(
                    [sample.path],
                    cam,
                    info,
                    classes=[sample.label],
                    maps_dir=Path(tmp) / f"{r}-{c}",
                    threshold=args.threshold,
                )
                record = result.records[0]
                heat = np.load(next((Path(tmp) / f"{r}-{c}").glob("*.npy")))[0]
                picture = overlay(Image.open(sample.path).convert("RGB"), heat)
                for gt in sample.boxes:
                    picture = draw_box(picture, gt, "#00ff00", 4)
                box = record["predictions"][0]["box"]
                if box is not None:
                    picture = draw_box(picture, tuple(box), "#ff2020", 4)
                picture.thumbnail((tile - 6, tile - 6))
                x, y = c * tile + (tile - picture.width) // 2, r * (tile + label_h) + label_h
                sheet.paste(picture, (x, y))
                draw.text(
                    (c * tile + 6, r * (tile + label_h) + 5), f"{case}: IoU {float(row['iou']):.2f}", fill="black"
                )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}: {', '.join(f'{k} {len(v)}' for k, v in cases.items())}")


if __name__ == "__main__":
    main()
