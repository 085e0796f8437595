"""Cost per image of the map metrics: pointing games, relevance mass / rank, ROAD (camloc vs pytorch-grad-cam).

    .venv/bin/python benchmarks/bench_map_metrics.py [--images 4] [--percentiles 10,20,...,90] [--json FILE]

Pretrained MobileNetV2, CAM maps of the label class on the first shared ImageNet images
(../shared/data/imagenet-val-boxes), its own preprocessing (224 px centre crop), on the CPU unless
--device says otherwise. Each metric runs once over the batch after a warm-up round (ROAD: no
warm-up, it is long); seconds per image. ROAD's two sides use the same seed, and the largest
difference of their combined scores is printed too.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import camloc
from camloc.datasets import open_dataset
from camloc.evaluation.map_metrics import input_boxes
from camloc.images import load_batch
from camloc.metrics import energy_pointing_game, pointing_game, relevance_mass, relevance_rank, road
from camloc.models.info import model_info
from tests.helpers.data import VAL_BOXES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--percentiles", default="10,20,30,40,50,60,70,80,90")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    args = parser.parse_args()
    percentiles = [float(p) for p in args.percentiles.split(",")]
    model = camloc.load_model("mobilenet_v2").to(args.device).eval()
    info = model_info(model)
    samples = open_dataset(VAL_BOXES).samples[: args.images]
    batch = load_batch([s.path for s in samples], info.preprocess)
    images = batch.images.to(args.device)
    classes = torch.tensor([s.label for s in samples], device=args.device)
    maps = camloc.CAM(model)(images, classes=classes[:, None]).maps[:, 0].detach()
    boxes = [input_boxes(s.boxes, g) for s, g in zip(samples, batch.geometries, strict=True)]
    n = len(samples)
    timings = {}
    for name, fn in (("pointing_game", pointing_game), ("energy_pointing_game", energy_pointing_game),
                     ("relevance_mass", relevance_mass), ("relevance_rank", relevance_rank)):  # fmt: skip
        fn(maps, boxes)
        start = time.perf_counter()
        fn(maps, boxes)
        timings[name] = (time.perf_counter() - start) / n
    torch.manual_seed(0)
    start = time.perf_counter()
    ours = road(model, images, maps, classes, percentiles=percentiles)["road_combined"]
    timings["road (camloc)"] = (time.perf_counter() - start) / n
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    start = time.perf_counter()
    theirs = ROADCombined(percentiles)(images, maps.cpu().numpy(), [ClassifierOutputTarget(int(c)) for c in classes],
                                       model)  # fmt: skip
    timings["road (pytorch-grad-cam)"] = (time.perf_counter() - start) / n
    difference = float((ours.cpu() - torch.from_numpy(theirs)).abs().max())
    for name, seconds in timings.items():
        print(f"{name:>26}: {seconds * 1000:10.2f} ms per image")
    print(f"ROAD combined, largest |camloc - pytorch-grad-cam|: {difference:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"images": n, "device": args.device, "seconds_per_image": timings, "road_difference": difference}, f
            )


if __name__ == "__main__":
    main()
