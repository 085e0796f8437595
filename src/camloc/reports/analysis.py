"""What an evaluation's per-image rows say to a person: failure kinds, per-class figures, galleries.

A box's failure is read in the frame the protocol judged it in (the square the images are squashed
to for ``wsol`` and ``paper``, the image's own pixels for ``authors``), against the ground-truth box
that shares the most pixels with it. An image whose box has IoU < 0.5 with every ground-truth box
failed in one of three ways:

- **box on another object**: less than half of the box lies on that ground-truth box, and the box
  covers less than half of it (or there is no box at all): it is on something else;
- **box too large**: otherwise, when the box has more pixels than the ground-truth box (it holds
  the object and much around it);
- **box too small**: otherwise (it lies on the object and misses most of it).

"Wrong class" is separate: the top-1 class is not the label, whatever the box.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..boxes.box import Box, scale_box
from ..datasets.base import Dataset, Sample
from ..errors import DatasetError
from ..evaluation.journal import read_results
from ..evaluation.protocols import ImageResult
from ..metrics.iou import box_area, box_iou, intersection_area
from ..utils import TarMember, readable

__all__ = ["GALLERIES", "ClassRow", "ImageRecord", "box_failure", "choose_galleries", "per_class", "read_records"]

#: Gallery key -> (title, what it shows), in the order of the report.
GALLERIES = {
    "worst": ("Worst", "the lowest IoU of the box with the ground truth"),
    "best": ("Best", "the highest IoU"),
    "borderline": ("Borderline", "IoU nearest the 0.5 pass mark, on either side"),
    "wrong_class": ("Wrong class", "the top-1 class is not the label (lowest IoU first)"),
    "too_large": ("Box too large", "not localized; the box holds the object and much around it"),
    "too_small": ("Box too small", "not localized; the box lies on the object but misses most of it"),
    "elsewhere": ("Box on another object", "not localized; the box lies mostly off the labelled object"),
}

BOX_FAILURES = ("too_large", "too_small", "elsewhere")


def box_failure(box: Box | None, truths: Sequence[Box]) -> str | None:
    """How a box failed: None when it is localized (IoU >= 0.5 with a truth), else one of :data:`BOX_FAILURES`.

    Args:
        box: the protocol's box, or None when it gave none.
        truths: the ground-truth boxes, in the box's frame.

    Example:
        >>> box_failure((0, 0, 9, 9), [(0, 0, 9, 9)]) is None
        True
        >>> box_failure((0, 0, 99, 99), [(10, 10, 29, 29)])   # holds all of it; 4 % of the box is on it
        'too_large'
        >>> box_failure((10, 10, 14, 14), [(0, 0, 29, 29)])   # all of it on the object; covers 2.8 % of it
        'too_small'
        >>> box_failure((50, 50, 59, 59), [(0, 0, 9, 9), (45, 45, 52, 52)])   # 9 % on the nearer one
        'elsewhere'
    """
    if box is not None and any(box_iou(box, t) >= 0.5 for t in truths):
        return None
    if box is None or not truths:
        return "elsewhere"
    shared, truth = max((intersection_area(box, t), t) for t in truths)
    if 2 * shared < box_area(box) and 2 * shared < box_area(truth):
        return "elsewhere"
    return "too_large" if box_area(box) > box_area(truth) else "too_small"


@dataclass(frozen=True)
class ImageRecord:
    """One evaluated image as the report shows it.

    Attributes:
        line: its row's line number in the per-image CSV.
        result: what the evaluation recorded (``outcome`` is None for an image it could not read).
        truths: the ground-truth boxes in the frame of ``result.box``.
        failure: how its box failed (one of :data:`BOX_FAILURES`), None when localized or not read.
    """

    line: int
    result: ImageResult
    truths: tuple[Box, ...]
    failure: str | None

    @property
    def iou(self) -> float:
        """The IoU of the protocol's box with the best-matching ground-truth box (0 without a box)."""
        return self.result.iou or 0.0

    @property
    def wrong_class(self) -> bool:
        """Whether the top-1 class is not the label."""
        return self.result.outcome is not None and not self.result.outcome.cls_top1

    @staticmethod
    def of(line: int, result: ImageResult, truths: Sequence[Box]) -> ImageRecord:
        """The record of one row, its failure judged against ``truths`` (in the box's frame)."""
        failure = None if result.outcome is None else box_failure(result.box, truths)
        return ImageRecord(line, result, tuple(truths), failure)


def choose_galleries(records: Iterable[ImageRecord], size: int) -> dict[str, list[ImageRecord]]:
    """Up to ``size`` images for each gallery of :data:`GALLERIES` (images that were read only).

    Ties keep the order of the per-image file.

    Example:
        >>> from camloc.evaluation.protocols import ImageResult
        >>> from camloc.metrics.localization import ImageOutcome
        >>> def rec(line, box, top1=True):
        ...     truth = (0, 0, 9, 9)
        ...     iou = box_iou(box, truth)
        ...     result = ImageResult(str(line), "", 0, [0], iou, box, ImageOutcome(top1, True, iou >= 0.5))
        ...     return ImageRecord.of(line, result, [truth])
        >>> records = [rec(3, (0, 0, 29, 29)), rec(4, (0, 0, 9, 9)), rec(5, (0, 0, 9, 5), top1=False),
        ...            rec(6, (0, 0, 9, 3)), rec(7, (20, 20, 29, 29))]    # IoU 0.11, 1, 0.6, 0.4, 0
        >>> chosen = choose_galleries(records, 2)
        >>> {key: [r.line for r in items] for key, items in chosen.items()}   # doctest: +NORMALIZE_WHITESPACE
        {'worst': [7, 3], 'best': [4, 5], 'borderline': [5, 6], 'wrong_class': [5], 'too_large': [3],
         'too_small': [6], 'elsewhere': [7]}
    """
    read = [r for r in records if r.result.outcome is not None]
    by_iou = sorted(read, key=lambda r: r.iou)
    chosen = {
        "worst": by_iou[:size],
        "best": sorted(read, key=lambda r: -r.iou)[:size],
        "borderline": sorted(read, key=lambda r: abs(r.iou - 0.5))[:size],
        "wrong_class": [r for r in by_iou if r.wrong_class][:size],
    }
    for kind in BOX_FAILURES:
        chosen[kind] = [r for r in by_iou if r.failure == kind][:size]
    return chosen


@dataclass(frozen=True)
class ClassRow:
    """One class's figures: images read, top-1 classification, GT-known localization (percent), mean IoU."""

    label: int
    images: int
    cls_top1: float
    gt_known_loc: float
    mean_iou: float


def per_class(records: Iterable[ImageRecord]) -> list[ClassRow]:
    """The figures of every labelled class among the images that were read, by label.

    Example:
        >>> from camloc.evaluation.protocols import ImageResult
        >>> from camloc.metrics.localization import ImageOutcome
        >>> def rec(label, top1, iou):
        ...     outcome = ImageOutcome(top1, True, iou >= 0.5)
        ...     return ImageRecord.of(3, ImageResult("", "", label, [0], iou, (0, 0, 1, 1), outcome), [])
        >>> per_class([rec(7, True, 0.8), rec(7, False, 0.3), rec(2, True, 0.5)])   # doctest: +NORMALIZE_WHITESPACE
        [ClassRow(label=2, images=1, cls_top1=100.0, gt_known_loc=100.0, mean_iou=0.5),
         ClassRow(label=7, images=2, cls_top1=50.0, gt_known_loc=50.0, mean_iou=0.55)]
    """
    groups: dict[int, list[ImageRecord]] = {}
    for r in records:
        if r.result.outcome is not None:
            groups.setdefault(r.result.label, []).append(r)
    rows = []
    for label, items in sorted(groups.items()):
        n = len(items)
        outcomes = [r.result.outcome for r in items]
        rows.append(
            ClassRow(
                label,
                n,
                100.0 * sum(bool(o.cls_top1) for o in outcomes if o) / n,
                100.0 * sum(bool(o.located) for o in outcomes if o) / n,
                round(sum(r.iou for r in items) / n, 6),
            )
        )
    return rows


def read_records(per_image: str | os.PathLike, dataset: Dataset | None) -> tuple[dict, list[ImageRecord]]:
    """The settings and the records of a per-image file, failures judged against ``dataset``'s boxes.

    Without a dataset (or for an image it does not list) the failures are judged against no
    ground truth: every image that was not localized counts as "box on another object".
    """
    settings, rows = read_results(per_image)
    samples = {s.image_id: s for s in dataset.samples} if dataset is not None else {}
    if dataset is not None:
        missing = [r.image_id for _, r in rows if r.image_id not in samples]
        if missing:
            raise DatasetError(
                f"{len(missing)} image(s) of this file are not in the dataset {dataset.root} (first: {missing[0]}); "
                "is it the evaluated one?",
                per_image,
            )
    records = []
    for line, result in rows:
        sample = samples.get(result.image_id)
        truths = () if sample is None else _truths_in_frame(sample, settings)
        records.append(ImageRecord.of(line, result, truths))
    return settings, records


def _truths_in_frame(sample: Sample, settings: dict) -> tuple:
    """The ground-truth boxes in the frame the protocol judged the box in (as the protocols scale them)."""
    if settings.get("protocol") == "authors":
        return sample.boxes
    size = int(settings.get("size", 224))
    original = sample.size or _upright_size(sample.path)
    return tuple(scale_box(b, original, (size, size)) for b in sample.boxes)


def _upright_size(path: Path | TarMember) -> tuple[int, int]:
    """An image's (width, height) once its EXIF orientation is applied, from its header."""
    with Image.open(readable(path)) as im:
        w, h = im.size
        turned = im.getexif().get(0x0112) in (5, 6, 7, 8)
    return (h, w) if turned else (w, h)
