"""Classification top-1/top-5 of the pretrained MobileNetV2 on the shared ImageNet images, per resize mode.

crop: torchvision's eval transform (shorter side 256, centre 224 x 224); squash: the image resized
to 224 x 224 (the WSOL protocol); full: shorter side to 256 (crop's scale) or 224, nothing cut, any
aspect (one image per forward pass). Also the share of each image's ground-truth box area that the
model sees (crop cuts objects at the borders; squash and full see everything).

    .venv/bin/python benchmarks/bench_resize_modes.py
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

import camloc
from camloc.runtime import keep_freed_memory

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-val-boxes"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    keep_freed_memory()
    torch.set_num_threads(2)
    dataset = camloc.open_dataset(args.data)
    samples = dataset.samples[: args.limit] if args.limit else dataset.samples
    model = camloc.load_model("mobilenet_v2")
    base = camloc.model_info(model).preprocess
    modes = {
        "crop (256 -> centre 224)": base,
        "squash (224 x 224)": dataclasses.replace(base, mode="squash"),
        "full (shorter side 256)": dataclasses.replace(base, mode="full"),
        "full (shorter side 224)": dataclasses.replace(base, mode="full", resize_size=224),
    }
    print(f"{len(samples)} images of {dataset.name}, {model_info_name(model)}, 2 threads")
    print("| mode | cls top-1 | cls top-5 | GT box area seen | s/image |\n|---|---:|---:|---:|---:|")
    for name, pre in modes.items():
        top1 = top5 = 0
        seen = 0.0
        began = time.perf_counter()
        for s in samples:
            batch = camloc.load_batch([s.path], pre)
            with torch.no_grad():
                logits = model(batch.images)
            best = logits.topk(5, dim=1).indices[0].tolist()
            top1 += best[0] == s.label
            top5 += s.label in best
            seen += _seen_fraction(batch.geometries[0], s.boxes)
        seconds = (time.perf_counter() - began) / len(samples)
        n = len(samples)
        print(f"| {name} | {100 * top1 / n:.2f} | {100 * top5 / n:.2f} | {100 * seen / n:.1f} % | {seconds:.3f} |")


def model_info_name(model) -> str:
    return camloc.model_info(model).name


def _seen_fraction(geo: camloc.Geometry, boxes) -> float:
    """Share of the union of an image's GT boxes that lies inside the window the model sees."""
    if geo.covers_image or not boxes:
        return 1.0
    x0, y0, x1, y1 = geo.box_to_original((0, 0, geo.input_width - 1, geo.input_height - 1))
    inside = total = 0
    for b in boxes:
        area = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
        iw = min(b[2], x1) - max(b[0], x0) + 1
        ih = min(b[3], y1) - max(b[1], y0) + 1
        inside += max(0, iw) * max(0, ih)
        total += area
    return inside / total


if __name__ == "__main__":
    main()
