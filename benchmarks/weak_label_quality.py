"""How good are CAM boxes as weak labels? CorLoc and COCO AP of each box rule on the shared ImageNet images.

    .venv/bin/python benchmarks/weak_label_quality.py [--json FILE]

Pretrained MobileNetV2, boxes of each image's labelled class on the 725 images of
../shared/data/imagenet-val-boxes, scored against their 1,118 ground-truth boxes: every rule at
tau = 0.2 on the whole photo at the model's own shorter side 256 (``camloc boxes --size 224``;
its default is now 448, see benchmarks/weak_label_sizes.py) and on the image squashed to 224 (as
``evaluate``), then the threshold chosen honestly: calibrated (``--calibrate``) on the first 200
images and applied to the other 525, beside tau = 0.2 on those same 525. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import camloc
from camloc.datasets import open_dataset
from camloc.evaluation.weak_labels import BoxSettings, calibrate_threshold, export_boxes
from camloc.runtime import keep_freed_memory

IMAGENET = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-boxes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()
    model = camloc.load_model("mobilenet_v2")
    info, cam = camloc.model_info(model), camloc.CAM(model)
    data = open_dataset(IMAGENET)
    rows = []

    def run(name: str, subset, settings: BoxSettings, mode: str) -> None:
        with tempfile.TemporaryDirectory() as out:
            s = export_boxes(
                subset, cam, info=info, out_dir=out, settings=settings, preprocess=info.preprocess.with_mode(mode)
            ).summary
        scores = {k: s[k] for k in ("corloc", "ap", "ap50", "ap75")}
        rows.append({"what": name, "images": s["images"], "boxes": s["boxes"], "rule": settings.rule,
                     "threshold": settings.threshold, "resize": mode, **scores})  # fmt: skip
        r = rows[-1]
        print(f"| {name} | {r['rule']} | {r['threshold']:.2f} | {mode} | {r['images']} | {r['boxes']} | "
              f"{r['corloc']:.2f} | {r['ap']:.2f} | {r['ap50']:.2f} | {r['ap75']:.2f} |", flush=True)  # fmt: skip

    print("| run | rule | tau | resize | images | boxes | CorLoc | AP | AP50 | AP75 |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for mode in ("full", "squash"):
        for rule in ("paper", "wsol", "all", "authors"):
            run("all 725", data, BoxSettings(rule=rule), mode)
    first, rest = (dataclasses.replace(data, samples=s) for s in (data.samples[:200], data.samples[200:]))
    for rule in ("paper", "wsol"):
        found = calibrate_threshold(first, cam, info=info, settings=BoxSettings(rule=rule))
        run("last 525, tau 0.2", rest, BoxSettings(rule=rule), "full")
        run(f"last 525, tau calibrated on the first 200 (CorLoc {found.corloc:.2f} there)", rest,
            BoxSettings(rule=rule, threshold=found.threshold), "full")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
