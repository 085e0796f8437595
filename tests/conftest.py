import csv
import os
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from tests.helpers.browser import CHROMIUM, CHROMIUM_FLAGS
from tests.helpers.data import VAL_BOXES

# Fixtures that put a test in a marker's group (markers are described in pyproject.toml).
_FIXTURE_MARKS = {"mobilenet": "pretrained", "val_boxes": "shared_data", "val": "shared_data", "browser": "browser"}


def pytest_collection_modifyitems(items):
    for item in items:
        for fixture, mark in _FIXTURE_MARKS.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(mark)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mobilenet():
    """The pretrained torchvision MobileNetV2 (IMAGENET1K_V1), loaded from the file on disk."""
    import camloc

    return camloc.load_model("mobilenet_v2")


def require_shared(path: Path) -> Path:
    """``path`` under ../shared/data, or a skip (a failure on CI, where ../shared must be present)."""
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must have ../shared beside the repository")
        pytest.skip(f"{path} not found (it lives in ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def val_boxes():
    """The shared ImageNet validation images: {image path: (label, [boxes])}."""
    require_shared(VAL_BOXES / "boxes.csv")
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


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's /usr/bin/chromium) through Playwright; a skip when it is not installed."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()
