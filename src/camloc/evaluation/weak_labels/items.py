"""The images of a weak-labels run: a dataset's samples, or plain image files, grouped by file.

An image file is one image of the run however many samples a reader made of it (COCO, VOC and YOLO
give one sample per class of an image): its labelled classes are those samples' classes, its ground
truth their boxes (or, given ``ground_truth=``, that dataset's boxes of the same file).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...boxes.box import Box
from ...datasets.base import Dataset, Sample, file_image_id
from ...errors import InvalidArgument

__all__ = ["Item", "image_items", "val_split"]


@dataclass
class Item:
    """One image file of a run: the dataset's samples of one file (one per labelled class) become one item.

    Attributes:
        index: its position in the run, from 0.
        sample: the file's first sample: its path and size.
        image_id: the dataset's id of the file (its path for plain image lists).
        labels: its labelled classes, in the dataset's order (none: unlabelled).
        truths: the ground truth's ``(class, box)``, in the frame of ``sample.size``.
    """

    index: int
    sample: Sample
    image_id: str
    labels: list[int]
    truths: list[tuple[int, Box]]


def image_items(source: Dataset | Sequence[str | os.PathLike], ground_truth: Dataset | None) -> list[Item]:
    """One item per image file, in the order the files first appear.

    Readers give an image with boxes of several classes as one sample per class (COCO, VOC, YOLO):
    those samples become one item, so that each file gets one set of output files holding every class.

    Args:
        source: a dataset, or image files (unlabelled, no boxes).
        ground_truth: boxes to judge by, matched to the source by resolved path (None: the source's own).
    """
    if isinstance(source, Dataset):
        samples = list(source.samples)
    else:
        samples = [Sample(str(p), Path(p), -1, (), None) for p in source]
    files: dict[str, list[Sample]] = {}
    for s in samples:
        files.setdefault(str(s.path), []).append(s)
    truths: dict[Path, list[tuple[int, Box]]] = {}
    for s in ground_truth.samples if ground_truth is not None else ():
        truths.setdefault(Path(s.path).resolve(), []).extend((s.label, b) for b in s.boxes)
    items = []
    for i, group in enumerate(files.values()):
        first = group[0]
        labels = list(dict.fromkeys(s.label for s in group if s.label >= 0))
        if ground_truth is None:
            own = [(s.label, b) for s in group for b in s.boxes]
        else:
            own = truths.get(Path(first.path).resolve(), [])
        items.append(Item(i, first, file_image_id(group), labels, own))
    return items


def val_split(names: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """Each image's split, ``train`` or ``val``: ``round(fraction x n)`` of the ``n`` names go to ``val``.

    The ``val`` images are those of the smallest SHA-256 of ``"<seed>:<name>"``: the same names and
    seed give the same split on any machine and in any order, and an image keeps its split when
    others are added. Where ``fraction > 0`` and there are two images or more, ``val`` gets at least
    one image and ``train`` keeps at least one.

    Example:
        >>> val_split(["a", "b", "c", "d"], 0.5)
        ['val', 'train', 'train', 'val']
    """
    if not 0.0 <= fraction < 1.0:
        raise InvalidArgument("val_fraction", f"val_fraction must lie in [0, 1), not {fraction}")
    n = len(names)
    count = min(max(round(fraction * n), 1), n - 1) if fraction > 0 and n >= 2 else 0
    keys = [hashlib.sha256(f"{seed}:{name}".encode()).hexdigest() for name in names]
    chosen = set(sorted(range(n), key=keys.__getitem__)[:count])
    return ["val" if i in chosen else "train" for i in range(n)]
