"""The threshold of a box rule chosen on labelled data with boxes: the one of highest CorLoc."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ...datasets.base import Dataset
from ...distributed import all_sum, shard
from ...errors import InvalidArgument
from ...images import Geometry, Preprocess
from ...maps.core import MapMethod
from ...metrics.localization import calibrated_threshold
from ...models.info import ModelInfo
from ...utils import progress as progress_bar
from ..run import legacy_arguments, method_info, worker_pool
from .boxing import BoxSettings, Frames, corloc_verdicts, ranked_boxes, truths_in
from .export import run_chunks
from .items import Item, image_items

__all__ = ["Calibration", "calibrate_threshold"]


@dataclass
class Calibration:
    """The threshold chosen on labelled data: the one of highest CorLoc (the middle one on ties).

    ``images``: how many verdicts CorLoc counted (images, or image-class pairs where an image has
    labelled boxes of several classes).
    """

    threshold: float
    corloc: float | None
    images: int
    thresholds: list[float]
    curve: list[float]  # CorLoc (percent) at each threshold


def calibrate_threshold(
    dataset: Dataset,
    method: MapMethod | nn.Module,
    *legacy: Any,
    info: ModelInfo | None = None,
    settings: BoxSettings | None = None,
    step: float = 0.01,
    preprocess: Preprocess | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool | None = None,
) -> Calibration:
    """The threshold of ``settings.rule`` with the highest CorLoc on a labelled dataset with boxes.

    Where several thresholds share the highest CorLoc (a small set gives flat tops), the middle one
    of them (:func:`camloc.metrics.localization.calibrated_threshold`, as ``evaluate`` calibrates).

    Every image's maps are computed once and boxed at each threshold of ``np.arange(0, 1, step)``,
    with the classes ``settings`` chooses, in the frame ``preprocess`` gives, as
    :func:`~.export.export_boxes` would box them.

    Args:
        dataset: labelled images with ground-truth boxes (images without are left out).
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        *legacy: camloc 0.2's positional ``info, settings``.
        info: the model's preprocessing; default: what ``load_model`` attached to it.
        settings: the rule and the class choice (its ``threshold`` is what is chosen).
        step: the spacing of the thresholds tried, in (0, 0.5].
        preprocess: default ``info.preprocess`` in ``full`` mode (the whole photo).
        batch_size: images per forward pass.
        workers: threads for decoding and box work.
        progress: show a progress bar (None: when stderr is a terminal).

    Returns:
        The chosen threshold, its CorLoc, the verdicts counted, and CorLoc at every threshold.

    Raises:
        InvalidArgument: for the ``authors`` rule (fixed thresholds), a bad ``step``, or data without
            a readable image with a ground-truth box.
    """
    if legacy:  # camloc 0.2's calibrate_threshold(dataset, method, info, settings)
        info, settings = legacy_arguments("calibrate_threshold", legacy, {"info": info, "settings": settings})
    settings = settings or BoxSettings()
    method, info = method_info(method, info)
    if settings.rule == "authors":
        raise InvalidArgument(
            "rule", "the authors rule has fixed thresholds (20, 100, 110 of 255): nothing to calibrate"
        )
    if not 0 < step <= 0.5:
        raise InvalidArgument("step", f"step must lie in (0, 0.5], not {step}")
    thresholds = np.arange(0, 1, step)
    items = [it for it in image_items(dataset, None) if it.truths]
    if not items:
        raise InvalidArgument("calibrate", f"calibrate: {dataset.name} has no image with a ground-truth box")
    items = shard(items)  # under torchrun each process boxes its share; the hits are added up
    at_each = [dataclasses.replace(settings, threshold=float(tau)) for tau in thresholds]

    def work(
        item: Item, frames: Frames, classes: list[int], probs: list[float], geo: Geometry, labelled: bool
    ) -> tuple[np.ndarray, int]:
        """Per threshold, how many of the image's verdicts are hits; and how many verdicts it has."""
        truths = truths_in(item, geo, frames.size)
        hits, judged = np.zeros(len(thresholds), dtype=np.int64), 0
        labels = item.labels if labelled else None
        for k, at in enumerate(at_each):
            verdicts = corloc_verdicts(ranked_boxes(frames, classes, probs, at), truths, labels) or []
            hits[k], judged = sum(verdicts), len(verdicts)
        return hits, judged

    total, read = np.zeros(len(thresholds), dtype=np.int64), 0
    pre = preprocess or info.preprocess.with_mode("full")
    bar = progress_bar(len(items), desc="calibrating", enabled=progress)
    with bar, worker_pool(workers) as pool:
        for chunk in run_chunks(
            items, method, pre, settings, work, lambda it, why: None, batch_size=batch_size, pool=pool
        ):
            for result in chunk:
                if result is not None:
                    total += result[0]
                    read += result[1]
            bar.update(len(chunk))
    sums = all_sum({"hits": total, "read": read})
    total, read = sums["hits"], int(sums["read"])
    if read == 0:
        raise InvalidArgument("calibrate", f"calibrate: no image of {dataset.name} could be read")
    curve = (total * 100.0 / read).tolist()
    best = calibrated_threshold(curve, thresholds)  # the middle of a flat top, as evaluate's calibration
    return Calibration(best, max(curve), read, thresholds.tolist(), curve)
