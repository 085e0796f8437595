"""Box protocols: how one image's map becomes boxes, and what the image contributes to the metrics.

``wsol``: wsolevaluation's protocol (maps on the image squashed to the input size, bicubic, min-max;
MaxBoxAcc, MaxBoxAccV2, PxAP over thresholds ``np.arange(0, 1, step)``) plus the box rule at
``threshold`` of the same min-max maps for GT-known / top-1 / top-5 localization, as wsolevaluation
reads the paper. ``paper``: the paper's text, pixels >= ``threshold`` x the map's maximum (no min
subtraction), on the same resized maps. ``authors``: the CAM authors' box generator and top-5
heuristics, in the original image's pixels.

``baseline="center"`` scores fixed centred boxes instead of the CAM's: the map is replaced by ``1 -
max(|x - cx| / (W/2), |y - cy| / (H/2))``, whose region above threshold ``t`` is the centred box of
``(1 - t)`` times the image's width and height. MaxBoxAcc is then the accuracy of the best fixed
centred box, and the curves give every box size (classification still uses the model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..boxes.authors import authors_boxes, authors_heatmap, authors_top5
from ..boxes.box import Box, scale_box
from ..boxes.paper import paper_box
from ..boxes.sweep import wsol_best_ious
from ..boxes.wsol import wsol_gray, wsol_levels, wsol_minmax, wsol_resized, wsol_resized_batch
from ..datasets.base import Sample
from ..errors import InvalidArgument
from ..metrics.iou import best_iou
from ..metrics.localization import CURVES, IOU_THRESHOLDS, ImageOutcome
from ..metrics.pxap import PxAP, mask_histograms

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "BASELINES",
    "CURVES",
    "PROTOCOLS",
    "AuthorsProtocol",
    "BoxProtocol",
    "ImageResult",
    "WsolProtocol",
    "center_scoremap",
    "make_protocol",
]

PROTOCOLS = ("wsol", "paper", "authors")
BASELINES = ("center",)


@dataclass
class ImageResult:
    """What one image of an evaluation gave: its outcome for the metrics and its single box.

    ``outcome`` is None for an image that could not be read (``error`` says why).
    """

    image_id: str
    path: str
    label: int
    top5: list[int] = field(default_factory=list)
    iou: float | None = None  # of the protocol's single box with the best-matching GT box
    box: Box | None = None
    outcome: ImageOutcome | None = None
    error: str = ""


class BoxProtocol:
    """One image's maps -> its :class:`ImageResult`.

    Args:
        step: the CAM threshold step: the thresholds are ``np.arange(0, 1, step)``.
        threshold: the single-box rule's threshold.
        size: the side of the square the images are squashed to.

    ``wants_top3``: the protocol needs the maps of the top-3 classes too.
    """

    name: str = ""
    wants_top3 = False

    def __init__(self, step: float, threshold: float, size: int) -> None:
        self.step = step
        self.thresholds = np.arange(0, 1, step)
        self.threshold = threshold
        self.size = (size, size)

    def gpu_resize(self, maps: Tensor) -> Tensor:
        """``maps`` (``Tensor[N, h, w]``, raw) as :meth:`judge` would resize them, done on the GPU where they are.

        The default returns them as they are; a protocol whose ``judge`` resizes to a fixed square
        does it here for maps on a GPU (its own resize of a map already that size is then a copy).
        """
        return maps

    def settings(self) -> dict:
        """What a resumed run must share with the run it continues (the per-image journal's header)."""
        return {"protocol": self.name, "step": self.step, "threshold": self.threshold, "size": self.size[0]}

    def judge(self, sample: Sample, original: tuple[int, int], top5: list[int], gt_map: np.ndarray,
              top3_maps: np.ndarray | None) -> ImageResult:  # fmt: skip
        """The result of one image.

        Args:
            sample: the image's ground truth.
            original: its (width, height) in pixels.
            top5: its five best classes, best first.
            gt_map: ``float64[h, w]`` raw map of its labelled class.
            top3_maps: ``float64[3, h, w]`` raw maps of its three best classes (when ``wants_top3``).
        """
        raise NotImplementedError


def _classified(sample: Sample, top5: list[int]) -> tuple[bool, bool]:
    return top5[0] == sample.label, sample.label in top5


def _single_box(sample: Sample, top5: list[int], box: Box | None, truths: list) -> tuple[float, ImageOutcome]:
    top1, in_top5 = _classified(sample, top5)
    iou = best_iou(box, truths)
    located = iou >= 0.5
    return iou, ImageOutcome(top1, in_top5, located, located and top1, located and in_top5)


class WsolProtocol(BoxProtocol):
    """wsolevaluation's protocol (``sweep=True``) or the paper's rule alone (``sweep=False``).

    Maps are resized bicubically (float64, OpenCV) to ``size`` x ``size``. ``wsol`` min-max
    normalizes them (wsolevaluation's score map) and takes its single box by the rule at
    ``threshold`` of that map; ``paper`` takes it at ``threshold`` x the resized map's own maximum,
    as the paper's text says. MaxBoxAcc, MaxBoxAccV2 and PxAP always use the score map.

    Args:
        step: the CAM threshold step of the sweep and of PxAP.
        threshold: the single box's threshold (of the min-max score map for ``wsol``, of the map's
            maximum for ``paper``).
        size: the side of the square the maps are resized to and the GT boxes scaled into.
        sweep: run the MaxBoxAcc / MaxBoxAccV2 sweep (``wsol``), or not (``paper``).
        baseline: ``"center"`` to score fixed centred boxes instead of the maps.
    """

    def __init__(self, step: float, threshold: float, size: int, *, sweep: bool, baseline: str | None = None) -> None:
        super().__init__(step, threshold, size)
        self.name = "wsol" if sweep else "paper"
        self.sweep = sweep
        self.baseline = baseline

    def gpu_resize(self, maps: Tensor) -> Tensor:
        """Maps on a GPU resized to the protocol's square there (bicubic, as :meth:`judge` does); others as they are."""
        return wsol_resized_batch(maps, self.size) if maps.device.type == "cuda" else maps

    def settings(self) -> dict:
        """The protocol's settings, as the per-image journal records them."""
        return {**super().settings(), **({"baseline": self.baseline} if self.baseline else {})}

    def judge(self, sample, original, top5, gt_map, top3_maps):  # noqa: D102 - documented on the base
        truths = [scale_box(b, original, self.size) for b in sample.boxes]
        if self.baseline == "center":
            scoremap = center_scoremap(self.size)
            box = paper_box(scoremap, self.threshold)
        else:
            resized = wsol_resized(gt_map, self.size)
            scoremap = wsol_minmax(resized)
            # wsol: the min-max map, wsolevaluation's reading of the rule; paper: the map's own maximum
            box = paper_box(scoremap if self.sweep else resized, self.threshold)
        iou, outcome = _single_box(sample, top5, box, truths)
        if self.sweep and truths:
            gray = wsol_gray(scoremap)
            v1, v2 = wsol_best_ious(gray, wsol_levels(gray, self.thresholds), np.asarray(truths, dtype=np.int64))
            outcome.curves = {"v1_50": v1 >= 0.5, **{f"v2_{t}": v2 >= t / 100 for t in IOU_THRESHOLDS}}
        if sample.mask_paths:
            outcome.pxap = mask_histograms(PxAP(self.thresholds), scoremap, sample.mask_paths, sample.ignore_path)
        return ImageResult(sample.image_id, str(sample.path), sample.label, top5, iou, box, outcome)


class AuthorsProtocol(BoxProtocol):
    """The CAM authors' box generator and top-5 heuristics, in the original image's pixels.

    The maps are resized bicubically to the image.
    """

    name = "authors"
    wants_top3 = True

    def judge(self, sample, original, top5, gt_map, top3_maps):  # noqa: D102 - documented on the base
        def boxes_of(raw: np.ndarray) -> list[Box]:
            # mergeTenCrop.m sums |CAM| over the crops: the authors' heat map is of the absolute value.
            return authors_boxes(authors_heatmap(np.abs(cv2.resize(raw, original, interpolation=cv2.INTER_CUBIC))))

        truths = list(sample.boxes)
        gt_boxes = boxes_of(gt_map)
        box = gt_boxes[0] if gt_boxes else None
        iou, outcome = _single_box(sample, top5, box, truths)
        per_class = [boxes_of(m) for m in top3_maps]
        top1_box = per_class[0][0] if per_class[0] else None
        outcome.top1_located = outcome.cls_top1 and best_iou(top1_box, truths) >= 0.5
        outcome.top5_located = any(
            top5[rank] == sample.label and best_iou(b, truths) >= 0.5 for rank, b in authors_top5(per_class)
        )
        return ImageResult(sample.image_id, str(sample.path), sample.label, top5, iou, box, outcome)


def make_protocol(name: str, *, step: float, threshold: float, size: int, baseline: str | None = None) -> BoxProtocol:
    """The protocol called ``name`` (one of :data:`PROTOCOLS`)."""
    if name not in PROTOCOLS:
        raise InvalidArgument("protocol", f"protocol must be one of {', '.join(PROTOCOLS)}, not {name!r}")
    if baseline is not None and baseline not in BASELINES:
        raise InvalidArgument("baseline", f"baseline must be one of {', '.join(BASELINES)} or None, not {baseline!r}")
    if not 0 < step <= 1:
        raise InvalidArgument("step", f"step must be in (0, 1], got {step}")
    if name == "authors":
        if baseline is not None:
            raise InvalidArgument("baseline", "baseline= applies to the wsol and paper protocols")
        return AuthorsProtocol(step, threshold, size)
    return WsolProtocol(step, threshold, size, sweep=name == "wsol", baseline=baseline)


def center_scoremap(size: tuple[int, int]) -> np.ndarray:
    """A map whose level sets are the centred boxes: 1 at the centre, 0 on the border (``float64[h, w]``)."""
    w, h = size
    x = np.abs(np.arange(w) - (w - 1) / 2) / (w / 2)
    y = np.abs(np.arange(h) - (h - 1) / 2) / (h / 2)
    m = 1.0 - np.maximum(x[None, :], y[:, None])
    return (m - m.min()) / (m.max() - m.min())  # min-max, as every CAM score map is
