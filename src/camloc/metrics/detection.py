"""Boxes scored as detections: CorLoc, and COCO AP by pycocotools' own COCOeval.

CorLoc (Deselaers et al., 2012) is the share of images whose top-scored box has IoU >= 0.5 (ILSVRC's
+1 pixel convention, :func:`~camloc.metrics.iou.box_iou`) with a ground-truth box of the box's own
class; images without a ground-truth box are not counted. COCO AP, AP50 and AP75 are
pycocotools' ``COCOeval`` on ``bbox`` (AP averaged over IoU 0.50:0.05:0.95, and at 0.50 and 0.75), run
one category at a time so that its cost grows with the boxes, not with images x categories. A
box written to COCO as ``[x0, y0, x1 - x0 + 1, y1 - y0 + 1]`` gets from pycocotools' continuous IoU
exactly the +1-pixel IoU of the inclusive box, so the two metrics measure overlap alike.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InvalidArgument, MissingDependency
from .iou import box_iou
from .state import Metric

__all__ = ["CorLoc", "coco_ap"]


class CorLoc(Metric):
    """CorLoc over a stream of images (percent in :meth:`compute`), in torchmetrics' shape."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: np.ndarray
        self.images: np.ndarray
        self.add_state("hits", 0)
        self.add_state("images", 0)

    @staticmethod
    def hit(boxes: Sequence[tuple[int, Sequence[int]]], truths: Sequence[tuple[int, Sequence[int]]]) -> bool | None:
        """Whether one image counts as localized; None when it has no ground-truth box (not counted).

        Args:
            boxes: ``(class, box)`` pairs, best-scored first (only the first is judged).
            truths: the ground truth's ``(class, box)`` pairs, in the same pixel frame.
        """
        if not truths:
            return None
        if not boxes:
            return False
        label, box = boxes[0]
        return any(c == label and box_iou(box, t) >= 0.5 for c, t in truths)

    def update(self, hit: bool | None) -> None:
        """Add one image's :meth:`hit` (None: the image has no ground truth and is not counted)."""
        if hit is not None:
            self.images += 1
            self.hits += int(hit)

    def compute(self) -> float | None:
        """CorLoc in percent; None before any image with ground truth."""
        return 100.0 * int(self.hits) / int(self.images) if self.images else None


def coco_ap(ground_truth: str | os.PathLike | dict, results: str | os.PathLike | list[dict]) -> dict[str, float | None]:
    """``{"ap", "ap50", "ap75"}`` in percent from pycocotools' COCOeval (bbox); None without ground-truth boxes.

    Args:
        ground_truth: a COCO instances file (or its dict) with ``info``, ``images``, ``annotations``
            and ``categories``.
        results: a COCO results file (or its list): ``image_id``, ``category_id``, ``bbox``, ``score``.

    pycocotools' traps are handled here rather than left to the caller: an empty results list
    (``loadRes`` fails on it) scores 0 where there is ground truth; a ground truth without ``info``
    (pycocotools 2.0.9+ fails) gets an empty one; results naming an image the ground truth lacks
    raise :class:`~camloc.errors.InvalidArgument` naming the image id.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise MissingDependency("COCO AP needs pycocotools: pip install pycocotools") from None
    gt = ground_truth if isinstance(ground_truth, dict) else json.loads(Path(ground_truth).read_text())
    dets = results if isinstance(results, list) else json.loads(Path(results).read_text())
    if not any(not a.get("iscrowd", 0) for a in gt.get("annotations", [])):
        return {"ap": None, "ap50": None, "ap75": None}
    if not dets:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    known = {im["id"] for im in gt["images"]}
    stray = next((d["image_id"] for d in dets if d["image_id"] not in known), None)
    if stray is not None:
        raise InvalidArgument("results", f"results: image_id {stray!r} is not an image of the ground truth")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        coco = COCO()
        coco.dataset = {"info": {}, "licenses": [], **gt}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
        # AP, AP50 and AP75 are of area "all" at 100 detections an image: only that slice is computed.
        all_areas = evaluator.params.areaRngLbl.index("all")
        evaluator.params.areaRng = [evaluator.params.areaRng[all_areas]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.params.maxDets = [100]
        precision = _precision_by_category(evaluator, gt["annotations"], dets)
    thresholds = evaluator.params.iouThrs
    scores = {}
    for key, at in (("ap", None), ("ap50", 0.5), ("ap75", 0.75)):
        s = precision if at is None else precision[np.where(at == thresholds)[0]]  # summarize()'s own selection
        s = s[:, :, :, 0, 0]
        scores[key] = 100.0 * float(np.mean(s[s > -1])) if (s > -1).any() else None
    return scores


def _precision_by_category(evaluator, annotations: list[dict], dets: list[dict]) -> np.ndarray:
    """COCOeval's ``precision`` array ``[T, R, K, A, M]``, computed one category at a time.

    COCOeval's ``evaluate`` and ``accumulate`` loop over every (category, image) pair: 725,000 for
    ImageNet's classes on 725 images, 50 million on its whole validation set. A category's precision
    depends only on the images holding its ground truth or its detections (every other pair is
    empty and skipped), so evaluating each category on those images alone gives the same array in
    time linear in the boxes. Categories without ground truth have precision -1 and are left out
    of the means anyway, as ``summarize`` leaves them out.
    """
    images: dict[int, set] = {}
    for a in (*annotations, *dets):
        images.setdefault(a["category_id"], set()).add(a["image_id"])
    categories = sorted({a["category_id"] for a in annotations if not a.get("iscrowd", 0)})
    parts = []
    for category in categories:
        evaluator.params.catIds = [category]
        evaluator.params.imgIds = sorted(images[category])
        evaluator.evaluate()
        evaluator.accumulate()
        parts.append(evaluator.eval["precision"])
    return np.concatenate(parts, axis=2)
