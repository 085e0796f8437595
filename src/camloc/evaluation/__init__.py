"""Runs over data: ``evaluate``, ``explain``, ``evaluate_faithfulness``, ``evaluate_map_metrics``, ``export_boxes``.

``evaluate`` gives localization metrics, ``explain`` maps, boxes and records (its pictures are
drawn by :mod:`camloc.reports.grids`), ``export_boxes`` weak labels: boxes written for detectors
(:mod:`camloc.evaluation.weak_labels`). Each takes ``(source, method, *, info=None,
preprocess=None, ...)`` with any :class:`~camloc.maps.MapMethod` or a bare model, reads images in
batches, skips and lists unreadable files, and journals what it computes as it goes on one
harness (:mod:`camloc.evaluation.run`: journal, resume, torchrun's rank files, the overlapped
stages). ``evaluate``'s journal is the per-image CSV (:mod:`camloc.evaluation.journal`, described
in docs/per-image.md). Box protocols are in :mod:`camloc.evaluation.protocols`.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "assess": ".assess",
    "EvalResult": ".evaluate",
    "evaluate": ".evaluate",
    "ExplainResult": ".explain",
    "collect_images": ".explain",
    "explain": ".explain",
    "FaithfulnessResult": ".faithfulness",
    "evaluate_faithfulness": ".faithfulness",
    "MapMetricsResult": ".map_metrics",
    "evaluate_map_metrics": ".map_metrics",
    "Run": ".run",
    "PROTOCOLS": ".protocols",
    "ImageResult": ".protocols",
    "make_protocol": ".protocols",
    "BoxSettings": ".weak_labels",
    "BoxedImage": ".weak_labels",
    "BoxesResult": ".weak_labels",
    "Calibration": ".weak_labels",
    "boxes_for": ".weak_labels",
    "calibrate_threshold": ".weak_labels",
    "export_boxes": ".weak_labels",
    "threshold_from": ".results",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .assess import assess as assess
    from .evaluate import EvalResult as EvalResult
    from .evaluate import evaluate as evaluate
    from .explain import ExplainResult as ExplainResult
    from .explain import collect_images as collect_images
    from .explain import explain as explain
    from .faithfulness import FaithfulnessResult as FaithfulnessResult
    from .faithfulness import evaluate_faithfulness as evaluate_faithfulness
    from .map_metrics import MapMetricsResult as MapMetricsResult
    from .map_metrics import evaluate_map_metrics as evaluate_map_metrics
    from .protocols import PROTOCOLS as PROTOCOLS
    from .protocols import ImageResult as ImageResult
    from .protocols import make_protocol as make_protocol
    from .results import threshold_from as threshold_from
    from .run import Run as Run
    from .weak_labels import BoxedImage as BoxedImage
    from .weak_labels import BoxesResult as BoxesResult
    from .weak_labels import BoxSettings as BoxSettings
    from .weak_labels import Calibration as Calibration
    from .weak_labels import boxes_for as boxes_for
    from .weak_labels import calibrate_threshold as calibrate_threshold
    from .weak_labels import export_boxes as export_boxes
