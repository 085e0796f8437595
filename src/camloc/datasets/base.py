"""The two types every reader returns: a :class:`Sample` per image and a :class:`Dataset` of them.

Every box is ``(x0, y0, x1, y1)`` in inclusive, 0-based pixel coordinates of the image file itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, overload

from ..box import Box
from ..utils import TarMember

__all__ = ["Dataset", "LazySamples", "Sample", "SampleSource", "class_samples", "file_image_id", "hold_out"]


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: its file, class label and ground-truth boxes.

    Attributes:
        image_id: the id the format uses (relative path for wsol/csv/cub, file stem for VOC, key for WebDataset).
        path: the image file, or a :class:`~camloc.utils.TarMember` (WebDataset shards), which
            :func:`~camloc.images.open_image` and :func:`~camloc.images.load_batch` read in place.
        label: 0-based class index.
        boxes: GT boxes ``(x0, y0, x1, y1)``, inclusive, in the image file's own pixels; ``()`` when none.
        size: ``(width, height)`` declared by the metadata, None if it declares none.
        mask_paths: wsol OpenImages: foreground masks (``()`` otherwise).
        ignore_path: wsol OpenImages: ignore mask (None otherwise).
    """

    image_id: str
    path: Path | TarMember
    label: int
    boxes: tuple[Box, ...]
    size: tuple[int, int] | None
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None


def class_samples(
    image_id: str, path: Path, per_class: Mapping[int, Sequence[Box]], size: tuple[int, int] | None
) -> list[Sample]:
    """One sample per class of an image's boxes, in ``per_class``'s order (the COCO, VOC and YOLO readers).

    An image with boxes of several classes gives ``image_id#label`` ids; of one class, ``image_id``.
    """
    several = len(per_class) > 1
    return [
        Sample(f"{image_id}#{label}" if several else image_id, path, label, tuple(boxes), size)
        for label, boxes in per_class.items()
    ]


def file_image_id(samples: Sequence[Sample]) -> str:
    """The image id of one file's samples made by :func:`class_samples`: their ids without ``#label``."""
    first = samples[0]
    suffix = f"#{first.label}"
    return first.image_id[: -len(suffix)] if len(samples) > 1 and first.image_id.endswith(suffix) else first.image_id


@dataclass
class Dataset:
    """The samples of one dataset read from disk, with its class names; a sequence of :class:`Sample`.

    Attributes:
        name: a short name for reports, derived from the folder names (with the split for CUB).
        format: the layout it was read from (``"csv"``, ``"folder"``, ``"cub"``, ``"voc"``, ``"wsol"``).
        root: the folder the metadata was read from.
        samples: the images, in the order the format lists them: a list, or :class:`LazySamples` that reads
            each when it is asked for (voc from :data:`~camloc.datasets.voc.LAZY_FROM` files, webdataset).
        class_names: the class names in index order, None when the metadata names no classes.
        class_wnids: WordNet ids when the class table gives one for every class, else None.
    """

    name: str
    format: str
    root: Path
    samples: Sequence[Sample]
    class_names: list[str] | None
    class_wnids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    @property
    def num_boxes(self) -> int:
        """The number of ground-truth boxes over all samples."""
        return sum(len(s.boxes) for s in self.samples)


class SampleSource(Protocol):
    """Where :class:`LazySamples` reads from: a number of samples and a way to read the ``i``-th."""

    def __len__(self) -> int: ...

    def read(self, i: int) -> Sample:
        """Sample ``i`` (``0 <= i < len(self)``), read now; a problem in its metadata raises a DatasetError."""
        ...


class LazySamples(Sequence[Sample]):
    """The samples of a :class:`SampleSource`, each read when it is asked for and not kept.

    Length, indexing, slicing (``samples[rank::size]``: a ``LazySamples`` too, nothing read) and
    iteration work as on a list, so a dataset of 50,000 annotation files costs a list of their names
    until its samples are used, and iterating holds one sample at a time. Reading the same sample twice
    reads its file twice; ``list(samples)`` reads them all. A sample's metadata problem raises its
    one-line :class:`~camloc.errors.DatasetError` when that sample is read, not before. Equal to
    any sequence of the same samples (which compares by reading them).

    Args:
        source: the samples' reader.
        indices: which of the source's samples, in order (default: all).
    """

    def __init__(self, source: SampleSource, indices: range | None = None) -> None:
        self.source = source
        self.indices = range(len(source)) if indices is None else indices

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, i: int) -> Sample: ...

    @overload
    def __getitem__(self, i: slice) -> LazySamples: ...

    def __getitem__(self, i: int | slice) -> Sample | LazySamples:
        if isinstance(i, slice):
            return LazySamples(self.source, self.indices[i])
        return self.source.read(self.indices[i])

    def __iter__(self) -> Iterator[Sample]:
        return map(self.source.read, self.indices)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # like a list: equal by content

    def __repr__(self) -> str:
        return f"LazySamples({len(self)} of {self.source!r})"


def hold_out(dataset: Dataset, per_class: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)``: ``per_class`` images of each class, drawn among those with boxes, set apart.

    The draw depends on ``seed`` and the sample ids only, so one seed always sets apart the same
    images. A class with no more than ``per_class`` boxed images keeps at least one for training;
    ``per_class=0`` holds nothing out.

    Example:
        >>> samples = [Sample(f"{c}{i}", None, c, ((0, 0, 1, 1),), None) for c in (0, 1) for i in range(3)]
        >>> rest, val = hold_out(Dataset("d", "csv", None, samples, None), 1)
        >>> len(rest), sorted(s.label for s in val)
        (4, [0, 1])
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in sorted({s.label for s in dataset.samples}):
        boxed = sorted(s.image_id for s in dataset.samples if s.label == label and s.boxes)
        total = sum(1 for s in dataset.samples if s.label == label)
        take = min(per_class, len(boxed), total - 1)
        if take > 0:
            chosen.update(boxed[i] for i in rng.choice(len(boxed), take, replace=False))
    rest = [s for s in dataset.samples if s.image_id not in chosen]
    held = [s for s in dataset.samples if s.image_id in chosen]
    return replace(dataset, samples=rest), replace(dataset, name=f"{dataset.name} (held out)", samples=held)
