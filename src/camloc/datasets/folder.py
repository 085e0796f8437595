"""torchvision's ImageFolder layout: ``root/<class>/<image>``, labels only.

torchvision's ImageFolder, classification only: ``root/<class>/<image>``, classes the sorted names
of the (non-hidden) subfolders, labels in that order, or, with ``classes=``, the class table's
index of each subfolder's name (or WNID). Images are the files directly inside a class folder with
the suffixes of :data:`camloc.utils.IMAGE_SUFFIXES` (any case), sorted by name; ``image_id`` is ``class/file``;
no boxes, no sizes. When every subfolder is named by a WNID, those are ``class_wnids``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError
from ..utils import IMAGE_SUFFIXES, is_image_file
from .base import Dataset, Sample
from .classes import WNID, ClassTable, load_class_table

__all__ = ["class_folders", "folder_images", "holds_a", "read_folder"]


def folder_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (not below it), sorted by name; hidden files skipped."""
    images = [p for p in folder.iterdir() if is_image_file(p) and not p.name.startswith(".")]
    return sorted((p for p in images if p.is_file()), key=lambda p: p.name)


def holds_a(folder: Path, suffix: str) -> bool:
    """Whether ``folder`` exists and directly holds a name ending in ``suffix``; it stops at the first one.

    (``any(folder.glob("*.xml"))`` lists all 50,000 files of the ILSVRC validation annotations first.)
    """
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(e.name.endswith(suffix) for e in entries)


def class_folders(root: Path) -> list[Path]:
    """The subfolders of ``root``, sorted by name; hidden ones skipped."""
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def read_folder(root: Path, classes) -> Dataset:
    """root/<class>/<image>: the rules are in the module docstring."""
    folders = class_folders(root)
    if classes is not None:
        table = load_class_table(classes)
        index = table.index()
        labels = []
        for folder in folders:
            k = index.get(folder.name)
            if k is None or k < 0:
                why = "is not in" if k is None else "is ambiguous in"
                raise DatasetError(f"class folder {folder.name!r} {why} {table.source}", root)
            labels.append(k)
    else:
        names = [f.name for f in folders]
        table = ClassTable(names, [n if WNID.fullmatch(n) else None for n in names], str(root))
        labels = list(range(len(folders)))
    samples = [
        Sample(f"{folder.name}/{image.name}", image, label, (), None)
        for folder, label in zip(folders, labels, strict=True)
        for image in folder_images(folder)
    ]
    if not samples:
        raise DatasetError(
            f"no images in class subfolders (folder format: <class>/<image> with {', '.join(IMAGE_SUFFIXES)})", root
        )
    return Dataset(root.name, "folder", root, samples, list(table.names), table.all_wnids)
