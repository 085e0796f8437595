"""Which layout a dataset folder has, and ``open_dataset``: one entry point for every reader.

:data:`FORMATS` lists the formats with a one-line summary each (the CLI's ``--format`` choices and
help come from it); the readers live one per module beside this one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetError, InvalidArgument, did_you_mean
from .base import Dataset
from .boxes_csv import read_csv_layout
from .coco import CocoWriter, read_coco
from .cub import read_cub
from .folder import class_folders, folder_images, holds_a, read_folder
from .labels import BoxWriter
from .voc import VocWriter, devkit_folder, read_voc
from .webdataset import expand_braces, read_webdataset
from .wsol import read_wsol
from .yolo import YoloWriter, read_yolo

__all__ = [
    "BOX_FORMATS",
    "FORMATS",
    "detect_format",
    "format_folder",
    "open_dataset",
    "open_train_test",
    "open_writers",
]

#: Every format ``open_dataset`` reads, with what marks it (``--format auto`` looks in this order).
FORMATS: dict[str, str] = {
    "csv": "boxes.csv + images/ (camloc's own layout; camloc synth writes it)",
    "wsol": "a wsolevaluation metadata folder: image_ids.txt, class_labels.txt, localization.txt",
    "cub": "CUB-200-2011 as distributed: images.txt, bounding_boxes.txt, train_test_split.txt",
    "voc": "Pascal VOC / ILSVRC XML annotations (*.xml or Annotations/*.xml)",
    "coco": "a COCO instances file (*.json, or a folder holding annotations.json) + its images",
    "yolo": "a YOLO dataset folder: data.yaml, images/, labels/*.txt",
    "webdataset": "WebDataset tar shards (a folder of *.tar, one .tar, or a brace pattern: val-{000..063}.tar)",
    "folder": "class subfolders of images (torchvision's ImageFolder), labels only",
}

#: The annotation formats :func:`open_writers` writes, with their writer.
BOX_FORMATS: dict[str, type[BoxWriter]] = {"coco": CocoWriter, "voc": VocWriter, "yolo": YoloWriter}
#: Where :func:`open_writers` puts a VOC export's dataset in its folder (torchvision's ``VOCDetection`` layout).
VOC_DEVKIT = Path("VOCdevkit", "VOC2012")

# Files or folders of the other layouts: where one is present, auto-detection does not guess "folder".
_NOT_A_FOLDER_DATASET = (
    "boxes.csv",
    "classes.txt",
    "image_ids.txt",
    "images.txt",
    "image_class_labels.txt",
    "bounding_boxes.txt",
    "train_test_split.txt",
    "images",
    "Annotations",
    "JPEGImages",
    "annotations.json",
    "data.yaml",
)


def detect_format(path: Path, split: str = "test") -> tuple[str, Path]:
    """``(format, folder)`` of the dataset at ``path``: a folder, or its boxes.csv / image_ids.txt.

    The rules are in :data:`FORMATS`; ``split`` is the wsol subfolder looked for when ``path`` holds no image_ids.txt.
    """
    if path.is_file():
        if path.name == "boxes.csv":
            return "csv", path.parent
        if path.name == "image_ids.txt":
            return "wsol", path.parent
        if path.suffix.lower() == ".json":
            return "coco", path
        if path.suffix == ".tar":
            return "webdataset", path
        raise DatasetError("cannot tell the dataset format of this file (give the dataset's folder)", path)
    if not path.is_dir():
        if expand_braces(str(path)) != [str(path)]:
            return "webdataset", path
        raise DatasetError("no such dataset folder", path)
    if (path / "boxes.csv").is_file():
        return "csv", path
    if (path / "image_ids.txt").is_file() or (path / split / "image_ids.txt").is_file():
        return "wsol", path
    if (path / "images.txt").is_file() and (path / "bounding_boxes.txt").is_file():
        return "cub", path
    if holds_a(path, ".xml") or holds_a(devkit_folder(path) / "Annotations", ".xml"):
        return "voc", path
    if (path / "annotations.json").is_file():
        return "coco", path / "annotations.json"
    if (path / "data.yaml").is_file():
        return "yolo", path
    if holds_a(path, ".tar"):
        return "webdataset", path
    if not any((path / marker).exists() for marker in _NOT_A_FOLDER_DATASET) and any(
        folder_images(folder) for folder in class_folders(path)
    ):
        return "folder", path
    raise DatasetError(
        "cannot tell the dataset format: looked for boxes.csv (csv), image_ids.txt or "
        f"{split}/image_ids.txt (wsol), images.txt + bounding_boxes.txt (cub), *.xml or Annotations/*.xml (voc), "
        "annotations.json (coco), data.yaml (yolo), *.tar (webdataset), <class>/<image> subfolders and no other "
        "layout's files (folder)",
        path,
    )


def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    images: str | Path | None = None,
    split: str = "test",
    classes: str | Path | Sequence[str] | None = None,
    one_based: bool = False,
    masks: str | Path | None = None,
    lazy: bool | None = None,
) -> Dataset:
    """Read a dataset's metadata into a :class:`Dataset` (the layouts are described in :mod:`camloc.datasets`).

    ``images``: the image folder (csv: default ``images/``; wsol: required; cub: default ``images/``;
    voc: default the sibling ``JPEGImages/`` or the annotation folder; coco: default ``images/`` beside the file, or
    its folder; yolo: default data.yaml's folder for the split; folder: not allowed). ``split``: cub ``"train" |
    "test" | "all"``; wsol: the subfolder to use when ``path`` holds ``train/ val/ test/``; yolo: which of
    data.yaml's folders. ``classes``: a class file or a list of names; voc needs it (or a ``classes.txt`` beside the
    XML) to map ``<name>`` to an index; for folder it maps each subfolder's name to its label, for coco each
    category's name; for csv, wsol and cub it supplies or overrides the class names; yolo takes its names from
    data.yaml.
    ``one_based``: voc only, subtract 1 from every coordinate (Pascal VOC). ``masks``: wsol
    OpenImages mask root (default: ``images``). ``lazy``: voc and webdataset, read each sample when it
    is asked for (True), all of them now (False), or as the format does by default (None: voc lazily from
    :data:`~camloc.datasets.voc.LAZY_FROM` files on, see :func:`~camloc.datasets.voc.read_voc`; webdataset lazily).
    webdataset: ``path`` is a folder of shards, one shard or a brace pattern; ``images=`` does not apply.
    """
    path = Path(path)
    if format == "auto":
        format, path = detect_format(path, split)
    elif format not in FORMATS:
        raise InvalidArgument(
            "format",
            f"unknown dataset format {format!r}{did_you_mean(format, ['auto', *FORMATS])}; expected one of auto, "
            f"{', '.join(FORMATS)}",
        )
    elif path.is_file() and format in ("csv", "wsol", "yolo"):
        path = path.parent
    if one_based and format != "voc":
        raise InvalidArgument("one_based", "one_based= applies to the voc format only")
    if lazy is not None and format not in ("voc", "webdataset"):
        raise InvalidArgument("lazy", "lazy= applies to the voc and webdataset formats only")
    if format == "coco":
        return read_coco(path, None if images is None else Path(images), classes)
    if format == "webdataset":
        if images is not None:
            raise InvalidArgument("images", "images= does not apply to the webdataset format (the shards hold them)")
        dataset = read_webdataset(path, classes)
        return dataset if lazy is not False else dataclasses.replace(dataset, samples=list(dataset.samples))
    if format != "csv" and not path.is_dir():
        raise DatasetError("no such dataset folder", path)
    if format == "csv":
        return read_csv_layout(path, None if images is None else Path(images), classes)
    if format == "wsol":
        if not (path / "image_ids.txt").is_file() and (path / split / "image_ids.txt").is_file():
            path = path / split
        return read_wsol(
            path, None if images is None else Path(images), None if masks is None else Path(masks), classes
        )
    if format == "cub":
        return read_cub(path, None if images is None else Path(images), split, classes)
    if format == "yolo":
        if classes is not None:
            raise InvalidArgument("classes", "classes= does not apply to the yolo format (data.yaml names the classes)")
        return read_yolo(path, None if images is None else Path(images), split)
    if format == "folder":
        if images is not None:
            raise InvalidArgument("images", "images= does not apply to the folder format (the images are the dataset)")
        return read_folder(path, classes)
    return read_voc(path, None if images is None else Path(images), classes, one_based, lazy)


def open_train_test(
    path: str | Path,
    format: str = "auto",
    *,
    test: str | Path | None = None,
    images: str | Path | None = None,
    classes: str | Path | Sequence[str] | None = None,
) -> tuple[Dataset, Dataset | None]:
    """The training set and the test set (or None) of a dataset folder.

    ``path`` is a CUB-200-2011 folder (its train and test splits), a folder holding ``train/`` and
    ``test/`` (or ``val/``), or one dataset (the training set). ``test`` names the test set instead.
    """
    root = Path(path)

    def read(where: Path, split: str = "test") -> Dataset:
        return open_dataset(where, format, images=images, split=split, classes=classes)

    test_set = read(Path(test)) if test is not None else None
    if (root / "images.txt").is_file() and format in ("auto", "cub"):
        return read(root, "train"), test_set or read(root, "test")
    if (root / "train").is_dir():
        if test_set is None:
            for name in ("test", "val"):
                if (root / name).is_dir():
                    test_set = read(root / name)
                    break
        return read(root / "train"), test_set
    try:
        return read(root, "train"), test_set
    except DatasetError as err:
        raise DatasetError(f"{err} (or give a folder holding train/ and test/)") from None


def open_writers(
    formats: Sequence[str], out_dir: str | os.PathLike, class_names: Sequence[str] | None, **parts: Any
) -> list[BoxWriter]:
    """One writer per name of :data:`BOX_FORMATS` (in the order given, each once), each in its own folder.

    The folders: ``out_dir/<format>``, VOC's ``out_dir/voc/VOCdevkit/VOC2012`` (the layout torchvision's
    ``VOCDetection(out_dir/voc, year="2012")`` opens). ``parts``: ``images``, ``per_image``,
    ``whole_set`` (and camloc 0.2's ``link_images``) of :class:`~camloc.datasets.labels.BoxWriter`.
    """
    unknown = [f for f in formats if f not in BOX_FORMATS]
    if unknown or not formats:
        got = ", ".join(map(repr, unknown)) if unknown else "none"
        hint = did_you_mean(unknown[0], BOX_FORMATS) if len(unknown) == 1 else ""
        raise InvalidArgument("format", f"box formats are {', '.join(BOX_FORMATS)}; got {got}{hint}")
    return [BOX_FORMATS[f](format_folder(out_dir, f), class_names, **parts) for f in dict.fromkeys(formats)]


def format_folder(out_dir: str | os.PathLike, format: str) -> Path:
    """Where :func:`open_writers` puts ``format``'s dataset under ``out_dir``."""
    return Path(out_dir) / format / VOC_DEVKIT if format == "voc" else Path(out_dir) / format
