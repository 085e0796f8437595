"""Cost per image of every map metric, in CPU seconds and as a multiple of one forward pass, for each method.

    .venv/bin/python benchmarks/bench_sanity.py [--images 4] [--methods cam,gradcam,...] [--road] [--json FILE]

Pretrained MobileNetV2 on the first shared ImageNet images (../shared/data/imagenet-val-boxes), its
own preprocessing (224 px centre crop), on the CPU. For each method: its map (one call), the
ground-truth metrics (pointing games, energy pointing game, relevance mass and rank), deletion /
insertion (50 steps, as ``camloc faithfulness``), ROAD (``--road``: 9 percentiles, both orders; slow)
and the sanity checks (cascading and independent randomisation over MobileNetV2's 20 blocks; each
step one map and the four similarities). Also the four similarities alone, per pair of 224 px maps.
Costs are CPU seconds of the process (all its threads: up to 2 on 2 cores), which depend far less
on other jobs than wall time does, and each is also divided by the CPU time of one forward pass of
the same batch measured in the same process.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

import camloc
from camloc.datasets import open_dataset
from camloc.evaluation.map_metrics import input_boxes
from camloc.images import load_batch
from camloc.maps.registry import create_method
from camloc.metrics import deletion_insertion, energy_pointing_game, pointing_game, relevance_mass, relevance_rank
from camloc.metrics import road as road_metric
from camloc.metrics.sanity import hog_similarity, model_randomisation, spearman, ssim
from camloc.models.info import model_info
from tests.helpers.data import VAL_BOXES

JUDGES = (pointing_game, energy_pointing_game, relevance_mass, relevance_rank)
METHODS = "cam,pc1,gradcam,gradcam++,xgradcam,hirescam,layercam,eigencam"


def seconds(fn: Callable[[], object], repeat: int = 1) -> float:
    """The least CPU time (this process, all its threads) of ``repeat`` calls.

    CPU time, not wall time: on a machine shared with other jobs a process's wall time depends on
    its share of the cores, its CPU time much less so.
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--road", action="store_true", help="also ROAD (about 30 s per image and method)")
    parser.add_argument("--json")
    args = parser.parse_args()
    camloc.runtime.keep_freed_memory()
    model = camloc.load_model("mobilenet_v2").eval()
    info = model_info(model)
    samples = open_dataset(VAL_BOXES).samples[: args.images]
    batch = load_batch([s.path for s in samples], info.preprocess)
    images, n = batch.images, len(samples)
    classes = torch.tensor([s.label for s in samples])
    boxes = [input_boxes(s.boxes, g) for s, g in zip(samples, batch.geometries, strict=True)]
    with torch.no_grad():
        model(images)
        forward = seconds(lambda: model(images), repeat=3) / n
    costs: dict[str, dict[str, float]] = {}
    maps = torch.rand(n, 224, 224, generator=torch.Generator().manual_seed(0))
    other = torch.rand(n, 224, 224, generator=torch.Generator().manual_seed(1))
    costs["similarities"] = {
        "spearman (both)": seconds(lambda: (spearman(maps, other), spearman(maps, other, absolute=True)), 3) / n,
        "ssim": seconds(lambda: ssim(maps, other), 3) / n,
        "hog": seconds(lambda: hog_similarity(maps, other), 3) / n,
    }
    for name in args.methods.split(","):
        method = create_method(name, model)
        method(images, classes=classes[:, None])
        row = {"map": seconds(lambda m=method: m(images, classes=classes[:, None]), 2) / n}
        m = method(images, classes=classes[:, None]).maps[:, 0].detach()
        row["pointing games, relevance"] = seconds(lambda m=m: [f(m, boxes) for f in JUDGES], 3) / n
        row["deletion / insertion"] = seconds(lambda m=m: deletion_insertion(model, images, m, classes)) / n
        if args.road:
            row["road"] = seconds(lambda m=m: road_metric(model, images, m, classes)) / n
        for order in ("cascading", "independent"):
            row[f"sanity {order}"] = (
                seconds(lambda o=order, k=name: model_randomisation(model, [k], images, classes, order=o)) / n
            )
        costs[name] = row
        print(name, {k: f"{v:.3f} s ({v / forward:.0f}x)" for k, v in row.items()}, flush=True)
    print(f"one forward pass: {forward * 1000:.1f} ms of CPU per image ({n} images a batch)")
    for name, row in costs.items():
        print(f"{name:>12}: " + ", ".join(f"{k} {v * 1000:.1f} ms = {v / forward:.1f} forward" for k, v in row.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"images": n, "forward_cpu_seconds_per_image": forward, "cpu_seconds_per_image": costs}, f, indent=1
            )


if __name__ == "__main__":
    main()
