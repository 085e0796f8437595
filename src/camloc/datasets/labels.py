"""Boxes going out: one image's scored boxes, and the writers of the annotation formats detectors read.

A :class:`BoxWriter` takes :class:`ImageBoxes` one at a time (``write``) and finishes its files on
``close`` (or at the end of a ``with`` block); per-image files are written as they come, whole-set
files atomically at the end. Writers: :class:`~camloc.datasets.coco.CocoWriter`,
:class:`~camloc.datasets.voc.VocWriter`, :class:`~camloc.datasets.yolo.YoloWriter`;
:func:`~camloc.datasets.registry.open_writers` makes several by format name. Each format's folder
has a folder of the images (``images/``, VOC's ``JPEGImages/``), so that a format's folder is all a
detector's training code needs: symbolic links to the files' absolute paths. Writers of one run
share one such folder (``images_from``): the first format's holds the links, the others' image
folders are relative links to it (one link per image, not one per image and format: creating files
is most of the writers' cost). Copy a single format's folder elsewhere with ``cp -rL``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..box import Box
from ..errors import InvalidArgument

__all__ = ["BoxWriter", "Detection", "ImageBoxes", "OutputNames", "link_image", "write_text"]


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


def link_image(folder: Path, name: str, source: str | os.PathLike) -> Path | None:
    """A symbolic link ``folder/name<suffix>`` to ``source``'s absolute path (replaced if it pointed elsewhere).

    None, and no link, where ``source`` is no file of its own (an image inside a tar shard).
    """
    if not os.path.isfile(source):
        return None
    target = os.path.abspath(source)
    link = folder / (name + os.path.splitext(target)[1])
    try:
        os.symlink(target, link)
    except FileExistsError:
        if os.readlink(link) != target:
            tmp = folder / f".{link.name}.link"
            os.symlink(target, tmp)
            os.replace(tmp, link)
    return link


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (through ``.<name>.part`` beside it, in an existing folder)."""
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class BoxWriter:
    """Writes images' boxes in one annotation format under ``out_dir``.

    Args:
        out_dir: the format's folder (created).
        class_names: the class names in index order (class ``i`` is COCO category ``i + 1``, YOLO class ``i``);
            None: classes are named by their index.
        link_images: put a symbolic link to each image in the format's image folder.
        per_image: write the files of each image (VOC's XML, YOLO's labels, the links).
        whole_set: write the files of the whole set on :meth:`close` (COCO's JSON, VOC's list, YOLO's data.yaml).
        images_from: another writer's image folder (of the same run, under the same parent folder):
            this writer's image folder becomes a relative link to it, and the links are that writer's to write.

    Use as a context manager, or call :meth:`close` when done; a block left by an exception
    leaves the per-image files written so far and does not write the whole-set files. A run split
    over processes writes each image's files where it is boxed (``whole_set=False``), then feeds
    every image, in order, to one writer with ``per_image=False``.
    """

    format = ""
    #: the name of the format's folder of images
    image_folder = "images"

    def __init__(
        self,
        out_dir: str | os.PathLike,
        class_names: Sequence[str] | None,
        *,
        link_images: bool = True,
        per_image: bool = True,
        whole_set: bool = True,
        images_from: Path | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.given_names = None if class_names is None else list(class_names)
        self.link_images = link_images and per_image
        self.per_image, self.whole_set = per_image, whole_set
        self.names = OutputNames()
        self.top_label = -1
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if whole_set:  # the writer that finishes a run: what a killed one left half-made goes
            self._fresh(self.out_dir)
        self.images = self.out_dir / self.image_folder
        self.links_here = self.link_images and not (images_from is not None and self._share(images_from))
        if self.links_here:
            self._folder(self.image_folder)
        elif whole_set and self.images.is_dir() and not self.images.is_symlink():
            self._fresh(self.images)

    def _share(self, images_from: Path) -> bool:
        """Make the image folder a relative link to ``images_from``; False where a folder of its own is there."""
        target = os.path.relpath(images_from, self.out_dir)
        try:
            self.images.symlink_to(target, target_is_directory=True)
        except FileExistsError:  # a resumed run, or another process of this one, made it first
            if not self.images.is_symlink():
                return False  # a folder of links, from a run written before folders were shared
            if os.readlink(self.images) != target:
                tmp = self.out_dir / f".{self.image_folder}.{os.getpid()}.link"
                tmp.symlink_to(target, target_is_directory=True)
                os.replace(tmp, self.images)
        return True

    def _link(self, image: ImageBoxes, name: str) -> None:
        """The image's link in the image folder, unless another writer's folder holds the links."""
        if self.links_here:
            link_image(self.images, name, image.path)

    @property
    def class_names(self) -> list[str]:
        """The class names given, or (none given) the indices up to the largest class written."""
        return self.given_names if self.given_names is not None else [str(i) for i in range(self.top_label + 1)]

    def _folder(self, name: str) -> Path:
        """A subfolder (created); the writer that finishes a run rids it of what a killed one left half-made."""
        folder = self.out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        if self.whole_set:
            self._fresh(folder)
        return folder

    @staticmethod
    def _fresh(folder: Path) -> None:
        for leftover in (*folder.glob(".*.tmp"), *folder.glob(".*.link"), *folder.glob(".*.part")):
            leftover.unlink(missing_ok=True)

    def write(self, image: ImageBoxes, name: str | None = None) -> None:
        """Add one image's boxes; ``name``: its output name (default: :class:`OutputNames` of the images written)."""
        for d in image.detections:
            if d.label < 0 or (self.given_names is not None and d.label >= len(self.given_names)):
                raise InvalidArgument("detections", f"{image.path}: class {d.label} is not a class index of the writer")
            self.top_label = max(self.top_label, d.label)
        self._write(image, name if name is not None else self.names(image.path))

    def _write(self, image: ImageBoxes, name: str) -> None:
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
