import csv
import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
VAL_BOXES = ROOT.parent / "shared" / "data" / "imagenet-val-boxes"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mobilenet():
    """The pretrained torchvision MobileNetV2 (IMAGENET1K_V1), loaded from the file on disk."""
    import camloc

    return camloc.load_model("mobilenet_v2")


@pytest.fixture(scope="session")
def val_boxes():
    """The shared ImageNet validation images: {image path: (label, [boxes])}."""
    if not (VAL_BOXES / "boxes.csv").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{VAL_BOXES} is missing: CI must have ../shared beside the repository")
        pytest.skip(f"{VAL_BOXES} not found (it lives in ../shared beside the repository)")
    items: dict[Path, tuple[int, list]] = {}
    boxes = defaultdict(list)
    labels = {}
    with open(VAL_BOXES / "boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = VAL_BOXES / "images" / row["image"]
            labels[path] = int(row["label_index"])
            boxes[path].append(tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")))
    for path in sorted(labels):
        items[path] = (labels[path], boxes[path])
    return items
