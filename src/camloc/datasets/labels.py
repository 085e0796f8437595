"""Boxes going out: one image's scored boxes, and the writers of the annotation formats detectors read.

A :class:`BoxWriter` takes :class:`ImageBoxes` one at a time (``write``, each image in a split:
``train`` or ``val``) and finishes its files on ``close`` (or at the end of a ``with`` block);
per-image files are written as they come, whole-set files atomically at the end. Writers:
:class:`~camloc.datasets.coco.CocoWriter`, :class:`~camloc.datasets.voc.VocWriter`,
:class:`~camloc.datasets.yolo.YoloWriter`; :func:`~camloc.datasets.registry.open_writers` makes
several by format name. Each format's folder is a dataset on its own, in the layout its main
consumer expects, with real folders of images (``images``: a symbolic link per file, a copy, or
none; :func:`place_image`): a consumer that resolves a folder finds its labels beside it, and
what it writes there (ultralytics' ``*.cache``) stays in that format's folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..box import Box
from ..errors import InvalidArgument, did_you_mean
from ..utils import naming

__all__ = [
    "IMAGE_MODES",
    "SPLITS",
    "BoxWriter",
    "Detection",
    "ImageBoxes",
    "OutputNames",
    "link_image",
    "link_target",
    "place_image",
    "write_text",
]

#: How a format's folder holds the images: a symbolic link per file, a copy per file, or none.
IMAGE_MODES = ("link", "copy", "none")
#: The splits an image can be written in.
SPLITS = ("train", "val")


@dataclass(frozen=True)
class Detection:
    """One box of one class: ``box`` inclusive ``(x0, y0, x1, y1)`` in the image file's pixels, ``score`` in [0, 1]."""

    label: int
    box: Box
    score: float = 1.0


@dataclass
class ImageBoxes:
    """The boxes of one image, best first.

    Attributes:
        index: the image's position in its run, from 0 (COCO's ``image_id`` is ``index + 1``).
        path: the image file.
        width: its width in pixels (upright, as decoded).
        height: its height.
        detections: its boxes, best first.
    """

    index: int
    path: str | os.PathLike
    width: int
    height: int
    detections: list[Detection] = field(default_factory=list)


class OutputNames:
    """A unique output name per image, in the order asked: the file's stem, ``stem_2``, ... on a clash.

    The same sequence of paths always gets the same names, so a resumed run names files as an
    uninterrupted one did.
    """

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.names: dict[str, str] = {}

    def __call__(self, path: str | os.PathLike) -> str:
        """The name of ``path`` (the same name every time it is asked again)."""
        key = str(path)
        if key not in self.names:
            stem, n = Path(path).stem, 1
            name = stem
            while name in self.used:
                n += 1
                name = f"{stem}_{n}"
            self.used.add(name)
            self.names[key] = name
        return self.names[key]


def link_target(folder: str | os.PathLike, source: str | os.PathLike) -> str:
    """What a link in ``folder`` to ``source`` holds: a relative path where both are on one filesystem, else absolute.

    A relative link keeps working when the output folder and the data are moved together; across
    filesystems (another disk, a mount) the absolute path is the one that survives. Both sides are
    taken through their real folders (the kernel resolves a relative link from the link's real folder).
    """
    where = os.path.realpath(folder)
    parent = os.path.realpath(os.path.dirname(os.path.abspath(source)))
    target = os.path.join(parent, os.path.basename(source))
    if _device(where) != _device(parent):
        return target
    return os.path.relpath(target, where)


def _device(path: str) -> int:
    """The filesystem ``path`` lies on."""
    return os.stat(path).st_dev


def place_image(folder: Path, file_name: str, source: str | os.PathLike, mode: str = "link") -> Path | None:
    """``folder/file_name`` as ``source``: a symbolic link (:func:`link_target`) or a copy, per ``mode``.

    A link that pointed elsewhere is replaced, a copy already there is kept (copies are made through a
    temporary file, so one that exists is whole). None, and no file, for ``mode="none"`` or where
    ``source`` is no file of its own (an image inside a tar shard).
    """
    if mode not in IMAGE_MODES:
        raise InvalidArgument("images", f"images must be one of {', '.join(IMAGE_MODES)}, not {mode!r}")
    if mode == "none" or not os.path.isfile(source):
        return None
    dest = folder / file_name
    if mode == "copy":
        if dest.is_symlink() or not dest.is_file():
            tmp = folder / f".{file_name}.part"
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        return dest
    target = link_target(folder, source)
    try:
        os.symlink(target, dest)
    except FileExistsError:
        if not dest.is_symlink() or os.readlink(dest) != target:
            tmp = folder / f".{file_name}.link"
            tmp.unlink(missing_ok=True)
            os.symlink(target, tmp)
            os.replace(tmp, dest)
    return dest


def link_image(folder: Path, name: str, source: str | os.PathLike) -> Path | None:
    """A symbolic link ``folder/name<suffix>`` to ``source`` (see :func:`place_image`); camloc 0.2's helper."""
    return place_image(folder, name + os.path.splitext(source)[1], source)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (through ``.<name>.part`` beside it, in an existing folder)."""
    tmp = path.with_name(f".{path.name}.part")
    try:
        with naming(path), open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class BoxWriter:
    """Writes images' boxes in one annotation format under ``out_dir``.

    Args:
        out_dir: the format's folder (created).
        class_names: the class names in index order (class ``i`` is COCO category ``i + 1``, YOLO class ``i``);
            None: classes are named by their index.
        images: how the format's image folder holds each image: ``link`` (a symbolic link, relative
            where the data is on the same filesystem), ``copy``, or ``none`` (no image folder).
        per_image: write the files of each image (VOC's XML, YOLO's labels, the images).
        whole_set: write the files of the whole set on :meth:`close` (COCO's JSON, VOC's lists, YOLO's data.yaml).
        link_images: camloc 0.2's switch: False means ``images="none"``.

    Use as a context manager, or call :meth:`close` when done; a block left by an exception
    leaves the per-image files written so far and does not write the whole-set files. A run split
    over processes writes each image's files where it is boxed (``whole_set=False``), then feeds
    every image, in order, to one writer with ``per_image=False``.
    """

    format = ""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        class_names: Sequence[str] | None,
        *,
        images: str = "link",
        per_image: bool = True,
        whole_set: bool = True,
        link_images: bool | None = None,
    ) -> None:
        if link_images is False:
            images = "none"
        if images not in IMAGE_MODES:
            hint = did_you_mean(images, IMAGE_MODES)
            raise InvalidArgument("images", f"images must be one of {', '.join(IMAGE_MODES)}, not {images!r}{hint}")
        self.out_dir = Path(out_dir)
        self.given_names = None if class_names is None else list(class_names)
        self.images_mode = images
        self.per_image, self.whole_set = per_image, whole_set
        self.names = OutputNames()
        self.top_label = -1
        self.counts = dict.fromkeys(SPLITS, 0)
        self.folders: dict[str, Path] = {}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if whole_set:  # the writer that finishes a run: what a killed one left half-made goes
            self._fresh(self.out_dir)

    def image_folder(self, split: str) -> str:
        """The folder, relative to ``out_dir``, that holds the images of ``split``."""
        return "images"

    def image_file_name(self, image: ImageBoxes, name: str) -> str:
        """The file name of the image in the format's files and image folder: ``name`` with the image's suffix."""
        return name + os.path.splitext(image.path)[1]

    def _place(self, image: ImageBoxes, name: str, split: str) -> None:
        """The image in its split's image folder (link, copy or none)."""
        if self.per_image and self.images_mode != "none":
            folder = self._folder(self.image_folder(split))
            place_image(folder, self.image_file_name(image, name), image.path, self.images_mode)

    @property
    def class_names(self) -> list[str]:
        """The class names given, or (none given) the indices up to the largest class written."""
        return self.given_names if self.given_names is not None else [str(i) for i in range(self.top_label + 1)]

    def _folder(self, name: str) -> Path:
        """A subfolder, made when first asked for (by a run's last writer: rid of a killed run's half-made files)."""
        if name not in self.folders:
            folder = self.out_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            if self.whole_set:
                self._fresh(folder)
            self.folders[name] = folder
        return self.folders[name]

    @staticmethod
    def _fresh(folder: Path) -> None:
        for leftover in (*folder.glob(".*.tmp"), *folder.glob(".*.link"), *folder.glob(".*.part")):
            leftover.unlink(missing_ok=True)

    def write(self, image: ImageBoxes, name: str | None = None, split: str = "train") -> None:
        """Add one image's boxes.

        Args:
            image: the image and its boxes.
            name: its output name (default: :class:`OutputNames` of the images written).
            split: ``train`` or ``val``.
        """
        if split not in SPLITS:
            raise InvalidArgument("split", f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        for d in image.detections:
            if d.label < 0 or (self.given_names is not None and d.label >= len(self.given_names)):
                raise InvalidArgument("detections", f"{image.path}: class {d.label} is not a class index of the writer")
            self.top_label = max(self.top_label, d.label)
        self.counts[split] += 1
        self._write(image, name if name is not None else self.names(image.path), split)

    def _write(self, image: ImageBoxes, name: str, split: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Write the files that describe the whole set."""

    def abort(self) -> None:
        """Stop without writing the whole-set files (called when the writing block fails)."""

    def __enter__(self) -> BoxWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
