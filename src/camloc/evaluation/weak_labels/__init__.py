"""Weak labels: a classifier's maps turned into scored boxes, written as COCO, Pascal VOC or YOLO annotations.

One module per job:

- :mod:`.items`: the run's images, a dataset's samples grouped by file (one image, however many
  classes a reader split it into).
- :mod:`.boxing`: how maps become boxes: decoding, the classes boxed, the rule's frame, the score
  and ranking, CorLoc's verdicts (:class:`BoxSettings`, :class:`BoxedImage`).
- :mod:`.export`: the runs: :func:`boxes_for` in memory, :func:`export_boxes` to annotation files
  with a journal, resume, the merge of torchrun ranks, COCO AP and the summary.
- :mod:`.calibrate`: :func:`calibrate_threshold`, the rule's threshold of highest CorLoc.

:func:`threshold_from` (a finished run's threshold) is in :mod:`camloc.evaluation.results`.
"""

from ..results import threshold_from
from .boxing import BOX_SHORTER_SIDE, BoxedImage, BoxSettings, box_input
from .calibrate import Calibration, calibrate_threshold
from .export import BoxesResult, boxes_for, export_boxes

__all__ = [
    "BOX_SHORTER_SIDE",
    "BoxSettings",
    "BoxedImage",
    "BoxesResult",
    "Calibration",
    "box_input",
    "boxes_for",
    "calibrate_threshold",
    "export_boxes",
    "threshold_from",
]
