"""YOLO: ``images/`` + ``labels/<name>.txt`` (``class cx cy w h``, normalized) + ``data.yaml`` (class names).

Reading (``open_dataset(path, "yolo")``): ``path`` is a folder holding ``data.yaml`` (Ultralytics'
dataset file: ``names`` as a list or an ``index: name`` mapping, optional ``path``, and ``train`` /
``val`` / ``test`` image folders). The image folder is ``images=``, else the entry of ``data.yaml``
for the split (``test``, then ``val``, for the test split; ``train`` for train) when it names a
folder, else ``images/``. Each image's labels are in the folder that replaces the last ``images``
of its folder's path by ``labels``, in ``<stem>.txt``. A line ``class cx cy w h`` (fractions of the
image's width and height, classes from 0) becomes the inclusive pixel box ``(round((cx - w/2) W),
round((cy - h/2) H), round((cx + w/2) W) - 1, round((cy + h/2) H) - 1)``; the image's header is read
for W and H. An image yields one :class:`~camloc.datasets.base.Sample` per class it has boxes of
(``image_id`` its file name, ``name#label`` when it has several classes); an image without labels
yields none.

Writing (:class:`YoloWriter`), ultralytics' layout: ``labels/<split>/<name>.txt`` per image (6
decimals: exact to the pixel for images up to 500,000 pixels wide), ``images/<split>/`` with the
image (a link or a copy), and ``data.yaml`` with ``train: images/train``, ``val: images/val`` (the
training images where no image is in ``val``), ``nc`` and ``names`` (an ``index: name`` mapping), and
no ``path``: ultralytics and this reader then take the folder of ``data.yaml``, so the folder can be
moved. The same file is written as ``dataset.yaml``, the name FiftyOne's YOLOv5 importer looks for.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from ..box import Box
from ..errors import DatasetError
from ..utils import atomic_path, is_image_file
from .base import Dataset, class_samples
from .labels import BoxWriter, ImageBoxes, write_text
from .parsing import check_box, parse_float, parse_int, read_lines

__all__ = ["YoloWriter", "read_yolo", "yolo_line"]


def yolo_line(label: int, box: Box, width: int, height: int) -> str:
    """One label line: ``class cx cy w h``, the box's centre and size as fractions of the image.

    Example:
        >>> yolo_line(3, (0, 0, 49, 9), 100, 20)
        '3 0.250000 0.250000 0.500000 0.500000'
    """
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1 + 1) / 2 / width, (y0 + y1 + 1) / 2 / height
    w, h = (x1 - x0 + 1) / width, (y1 - y0 + 1) / height
    return f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


class YoloWriter(BoxWriter):
    """YOLO's layout (see the module docstring); each label file is written, atomically, as its image comes."""

    format = "yolo"

    def image_folder(self, split: str) -> str:
        """``images/<split>``."""
        return f"images/{split}"

    def _write(self, image: ImageBoxes, name: str, split: str) -> None:
        self._place(image, name, split)
        if self.per_image:
            lines = [yolo_line(d.label, d.box, image.width, image.height) + "\n" for d in image.detections]
            write_text(self._folder(f"labels/{split}") / f"{name}.txt", "".join(lines))

    def close(self) -> None:
        """Write ``data.yaml`` and its copy ``dataset.yaml``."""
        if not self.whole_set:
            return
        names = "".join(f"  {i}: {json.dumps(n)}\n" for i, n in enumerate(self.class_names))  # JSON strings are YAML
        val = "images/val" if self.counts["val"] else "images/train"
        text = (
            "# written by camloc boxes: weak labels from class activation maps\n"
            "# no path: the folder of this file (it can be moved with its images)\n"
            f"train: images/train\nval: {val}\nnc: {len(self.class_names)}\nnames:\n{names}"
        )
        for file in ("data.yaml", "dataset.yaml"):
            with atomic_path(self.out_dir / file) as tmp:
                tmp.write_text(text)


def _names(data: dict, path: Path) -> list[str]:
    names = data.get("names")
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict) and all(isinstance(k, int) for k in names):
        if sorted(names) != list(range(len(names))):
            raise DatasetError("names: the class indices must run 0..n-1", path)
        return [str(names[i]) for i in range(len(names))]
    raise DatasetError("names: expected a list of class names or an 'index: name' mapping", path)


def _image_folder(root: Path, data: dict, split: str, path: Path) -> Path:
    base = Path(data["path"]) if isinstance(data.get("path"), str) else root
    if not base.is_absolute():
        base = root / base
    keys = ("train",) if split == "train" else ("test", "val")
    for key in keys:
        entry = data.get(key)
        if isinstance(entry, str) and (base / entry).is_dir():
            return base / entry
        if isinstance(entry, str) and (root / entry).is_dir():  # a data.yaml moved with its folder
            return root / entry
    if (root / "images").is_dir():
        return root / "images"
    raise DatasetError(f"no image folder: data.yaml names none of {', '.join(keys)} and there is no images/", path)


def _labels_folder(images: Path) -> Path:
    parts = list(images.parts)
    if "images" not in parts:
        return images.parent / "labels"
    i = len(parts) - 1 - parts[::-1].index("images")
    return Path(*parts[:i], "labels", *parts[i + 1 :])


def read_yolo(root: Path, images: Path | None, split: str = "test") -> Dataset:
    """A YOLO dataset folder; the rules are in the module docstring."""
    import yaml

    path = root / "data.yaml"
    if not path.is_file():
        raise DatasetError("no data.yaml (the YOLO format's dataset file)", root)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"not UTF-8 text (byte {err.start})", path) from None
    except yaml.YAMLError as err:
        raise DatasetError(f"not valid YAML ({' '.join(str(err).split())})", path) from None
    if not isinstance(data, dict):
        raise DatasetError("expected a mapping with names (and path, train, val)", path)
    class_names = _names(data, path)
    folder = Path(images) if images is not None else _image_folder(root, data, split, path)
    labels = _labels_folder(folder)
    samples = []
    for image in sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: p.name):
        label_file = labels / f"{image.stem}.txt"
        if not label_file.is_file():
            continue
        lines = list(read_lines(label_file))
        if not lines:
            continue
        try:
            with Image.open(image) as im:
                width, height = im.size
        except Exception as err:  # noqa: BLE001 - PIL raises many types for broken files
            raise DatasetError(f"cannot read the image's size ({type(err).__name__})", image) from None
        per_class: dict[int, list[Box]] = {}
        for n, text in lines:
            fields = text.split()
            if len(fields) < 5:
                raise DatasetError(f"expected 'class cx cy w h', got {len(fields)} fields", label_file, n)
            label = parse_int(fields[0], "class", label_file, n)
            if not 0 <= label < len(class_names):
                raise DatasetError(
                    f"class {label} is not in data.yaml's names (0..{len(class_names) - 1})", label_file, n
                )
            cx, cy, w, h = (parse_float(v, "coordinate", label_file, n) for v in fields[1:5])
            box = (
                round((cx - w / 2) * width),
                round((cy - h / 2) * height),
                round((cx + w / 2) * width) - 1,
                round((cy + h / 2) * height) - 1,
            )
            check_box(box, (width, height), label_file, n)
            per_class.setdefault(label, []).append(box)
        samples += class_samples(image.name, image, dict(sorted(per_class.items())), (width, height))
    if not samples:
        raise DatasetError(f"no image of {folder} has a label file with a box in {labels}", root)
    return Dataset(root.name, "yolo", root, samples, class_names)
