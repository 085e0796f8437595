"""COCO: the instances JSON of detectors (read and written), and COCO results lists.

Reading (``open_dataset(path, "coco")``): ``path`` is an instances file (or a folder holding
``annotations.json``) with ``images`` (``id``, ``file_name``, ``width``, ``height``),
``annotations`` (``image_id``, ``category_id``, ``bbox`` = ``[x, y, w, h]``; ``iscrowd`` ones are
left out) and ``categories`` (``id``, ``name``). Class ``i`` is the ``i``-th category by id, or,
with ``classes=``, the class table's index of the category's name. An image yields one
:class:`~camloc.datasets.base.Sample` per class it has boxes of (``image_id`` the ``file_name``, or
``file_name#label`` when it has several classes); an image without boxes has no label and yields
none. Images are looked up under ``images=``, else the ``images/`` folder beside the file, else the
file's folder. A ``bbox`` becomes the inclusive box of the pixels it covers: ``(round(x), round(y),
round(x + w) - 1, round(y + h) - 1)``, clipped to the image.

Writing (:class:`CocoWriter`): ``annotations.json`` (the weak labels as a COCO instances file,
every annotation with its ``score``) and ``results.json`` (the same boxes as a COCO results list, for
``COCOeval``), plus ``images/`` with the images (a link or a copy each). Where some images are in
the ``val`` split, also ``train.json`` and ``val.json``: the instances of each split. Category
``i + 1`` is class ``i``; a box ``(x0, y0, x1, y1)`` is written as ``[x0, y0, x1 - x0 + 1,
y1 - y0 + 1]``, so reading it back gives the same box. Files carry an ``info`` block (pycocotools
2.0.9+ needs one) and no date, so the same run writes the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..box import Box
from ..errors import DatasetError
from ..utils import atomic_path, camloc_version, naming
from .base import Dataset, class_samples
from .classes import load_class_table
from .labels import SPLITS, BoxWriter, Detection, ImageBoxes
from .parsing import check_box

__all__ = ["CocoWriter", "box_of_bbox", "coco_bbox", "coco_categories", "read_coco", "write_coco", "write_coco_results"]


def coco_bbox(box: Sequence[int]) -> list[int]:
    """An inclusive box as COCO's ``[x, y, width, height]``.

    Example:
        >>> coco_bbox((10, 20, 19, 24))
        [10, 20, 10, 5]
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def box_of_bbox(bbox: Sequence[float]) -> Box:
    """COCO's ``[x, y, width, height]`` as the inclusive box of the pixels it covers.

    Example:
        >>> box_of_bbox([10, 20, 10, 5]), box_of_bbox([10.4, 19.6, 9.9, 5.2])
        ((10, 20, 19, 24), (10, 20, 19, 24))
    """
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = round(x), round(y)
    return x0, y0, max(x0, round(x + w) - 1), max(y0, round(y + h) - 1)


def coco_categories(class_names: Sequence[str]) -> list[dict]:
    """COCO ``categories``: class ``i`` is category ``i + 1``."""
    return [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(class_names)]


def _info(description: str) -> dict:
    return {"description": description, "version": camloc_version(), "contributor": "camloc", "url": ""}


def write_coco(
    path: str | os.PathLike,
    images: Callable[[], Iterable[tuple[ImageBoxes, str]]],
    class_names: Sequence[str],
    *,
    scores: bool = True,
    description: str = "camloc weak labels",
) -> Path:
    """Write a COCO instances file, streaming: ``images()`` is called twice (images, then annotations).

    Args:
        path: the JSON file (written atomically).
        images: gives ``(image, file_name)`` pairs; image ``index`` ``i`` becomes image id ``i + 1``.
        class_names: the class names in index order (category ``i + 1`` is class ``i``).
        scores: give every annotation its detection's ``score``.
        description: the ``info`` block's description.
    """
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        head = {"info": _info(description), "licenses": [], "categories": coco_categories(class_names)}
        f.write(json.dumps(head)[:-1] + ',\n"images": [')
        for n, (image, file_name) in enumerate(images()):
            entry = {"id": image.index + 1, "file_name": file_name, "width": image.width, "height": image.height}
            f.write(("," if n else "") + "\n" + json.dumps(entry))
        f.write('\n],\n"annotations": [')
        count = 0
        for image, _ in images():
            for d in image.detections:
                count += 1
                bbox = coco_bbox(d.box)
                ann = {
                    "id": count,
                    "image_id": image.index + 1,
                    "category_id": d.label + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                    **({"score": d.score} if scores else {}),
                }
                f.write(("," if count > 1 else "") + "\n" + json.dumps(ann))
        f.write("\n]}\n")
    return Path(path)


def write_coco_results(path: str | os.PathLike, images: Iterable[ImageBoxes]) -> Path:
    """Write a COCO results list (``image_id``, ``category_id``, ``bbox``, ``score``), streaming and atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write("[")
        count = 0
        for image in images:
            for d in image.detections:
                result = {
                    "image_id": image.index + 1,
                    "category_id": d.label + 1,
                    "bbox": coco_bbox(d.box),
                    "score": d.score,
                }
                f.write(("," if count else "") + "\n" + json.dumps(result))
                count += 1
        f.write("\n]\n")
    return Path(path)


def _spooled(r: dict) -> tuple[ImageBoxes, str]:
    detections = [Detection(d[0], tuple(d[1:5]), d[5]) for d in r["d"]]
    return ImageBoxes(r["i"], r["p"], r["w"], r["h"], detections), r["f"]


class CocoWriter(BoxWriter):
    """``annotations.json`` + ``results.json`` + ``images/`` (see the module docstring).

    Images are spooled to a file as they come and the JSON files streamed from it on
    :meth:`close`, so memory stays flat in the number of images.
    """

    format = "coco"

    def __init__(self, out_dir: str | os.PathLike, class_names: Sequence[str] | None, **parts: Any) -> None:
        super().__init__(out_dir, class_names, **parts)
        self.spool_path = self.out_dir / ".annotations.part"
        self.spool = open(self.spool_path, "w") if self.whole_set else None  # noqa: SIM115 - closed in close() / abort()
        self.annotations = self.out_dir / "annotations.json"
        self.results = self.out_dir / "results.json"

    def _write(self, image: ImageBoxes, name: str, split: str) -> None:
        self._place(image, name, split)
        if self.spool is not None:
            detections = [[d.label, *d.box, d.score] for d in image.detections]
            record = {"i": image.index, "p": str(image.path), "f": self.image_file_name(image, name),
                      "w": image.width, "h": image.height, "s": split}  # fmt: skip
            with naming(self.spool_path):
                self.spool.write(json.dumps({**record, "d": detections}) + "\n")

    def close(self) -> None:
        """Write ``annotations.json``, ``results.json`` (and ``train.json``, ``val.json``) from the spool."""
        if self.spool is None:
            return
        self.spool.close()

        def spooled(split: str | None = None) -> Callable[[], Iterable[tuple[ImageBoxes, str]]]:
            def read() -> Iterable[tuple[ImageBoxes, str]]:
                with open(self.spool_path) as f:
                    for line in f:
                        record = json.loads(line)
                        if split is None or record.get("s", "train") == split:
                            yield _spooled(record)

            return read

        write_coco(self.annotations, spooled(), self.class_names)
        write_coco_results(self.results, (image for image, _ in spooled()()))
        if self.counts["val"]:
            for split in SPLITS:
                write_coco(self.out_dir / f"{split}.json", spooled(split), self.class_names)
        self.spool_path.unlink(missing_ok=True)

    def abort(self) -> None:
        """Remove the spool; write nothing more."""
        if self.spool is not None:
            self.spool.close()
            self.spool_path.unlink(missing_ok=True)


def read_coco(path: Path, images: Path | None, classes) -> Dataset:
    """A COCO instances file; the rules are in the module docstring."""
    if path.is_dir():
        path = path / "annotations.json"
    if not path.is_file():
        raise DatasetError("no such COCO instances file", path)
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"not a JSON file ({err})", path) from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetError("not a COCO instances file: it needs the lists images, annotations and categories", path)
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        names = [str(c["name"]) for c in categories]
        if classes is None:
            label_of = {c["id"]: i for i, c in enumerate(categories)}
            class_names, wnids = names, None
        else:
            table = load_class_table(classes)
            index = table.index()
            unknown = [n for n in names if index.get(n, -1) < 0]
            if unknown:
                raise DatasetError(
                    f"category {unknown[0]!r} is not a class of {table.source} (or is ambiguous there)", path
                )
            label_of = {c["id"]: index[str(c["name"])] for c in categories}
            class_names, wnids = list(table.names), table.all_wnids
        files = {im["id"]: (str(im["file_name"]), int(im["width"]), int(im["height"])) for im in data["images"]}
        boxes: dict[object, dict[int, list[Box]]] = {}
        for ann in data["annotations"]:
            if ann.get("iscrowd", 0):
                continue
            if ann["image_id"] not in files:
                raise DatasetError(
                    f"annotation {ann.get('id')!r} names image {ann['image_id']!r}, which is not in images", path
                )
            if ann["category_id"] not in label_of:
                raise DatasetError(
                    f"annotation {ann.get('id')!r} names category {ann['category_id']!r}, which is not in categories",
                    path,
                )
            _, w, h = files[ann["image_id"]]
            x0, y0, x1, y1 = box_of_bbox(ann["bbox"])
            box = (x0, y0, min(x1, w - 1), min(y1, h - 1))  # a float bbox may round past the last pixel
            check_box(box, (w, h), path, None)
            boxes.setdefault(ann["image_id"], {}).setdefault(label_of[ann["category_id"]], []).append(box)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, DatasetError):
            raise
        raise DatasetError(f"malformed COCO entry ({type(err).__name__}: {err})", path) from None
    if images is None:
        images = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    samples = []
    for image_id, (file_name, w, h) in files.items():
        per_class = boxes.get(image_id, {})
        samples += class_samples(file_name, Path(images) / file_name, dict(sorted(per_class.items())), (w, h))
    if not samples:
        raise DatasetError("no image has a box (a COCO image without annotations has no label)", path)
    return Dataset(path.parent.name, "coco", path.parent, samples, class_names, wnids)
