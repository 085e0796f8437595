"""The two types every reader returns: a :class:`Sample` per image and a :class:`Dataset` of them.

Every box is ``(x0, y0, x1, y1)`` in inclusive, 0-based pixel coordinates of the image file itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..boxes.box import Box

__all__ = ["Dataset", "Sample"]


@dataclass(frozen=True)
class Sample:
    image_id: str  # the id the format uses (relative path for wsol/csv/cub, file stem for VOC)
    path: Path  # the image file
    label: int  # 0-based class index
    boxes: tuple[Box, ...]  # GT boxes, inclusive, in the image file's own pixels; () when none
    size: tuple[int, int] | None  # (width, height) declared by the metadata, None if it declares none
    mask_paths: tuple[Path, ...] = ()  # wsol OpenImages: foreground masks
    ignore_path: Path | None = None  # wsol OpenImages: ignore mask


@dataclass
class Dataset:
    name: str
    format: str
    root: Path
    samples: list[Sample]
    class_names: list[str] | None
    class_wnids: list[str] | None = None  # WordNet ids when the class table gives one for every class

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    @property
    def num_boxes(self) -> int:
        return sum(len(s.boxes) for s in self.samples)
