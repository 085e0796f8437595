"""Metrics: IoU, localization accuracies (GT-known, top-1/5, MaxBoxAcc, MaxBoxAccV2), PxAP, faithfulness.

Also maps judged against ground-truth boxes (pointing game, energy pointing game, relevance mass /
rank: :mod:`.groundtruth`), ROAD (:mod:`.road`) and the sanity checks (model parameter and data
randomisation: :mod:`.sanity`).

Streaming metrics follow torchmetrics' shape: ``update`` per image or batch, ``compute`` at the
end, ``reset``, and ``merge`` to add another accumulator's state.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "box_iou": ".iou",
    "best_iou": ".iou",
    "IOU_THRESHOLDS": ".localization",
    "ImageOutcome": ".localization",
    "LocalizationMetrics": ".localization",
    "PxAP": ".pxap",
    "mask_histograms": ".pxap",
    "FaithfulnessMetrics": ".faithfulness",
    "average_drop_increase": ".faithfulness",
    "deletion_insertion": ".faithfulness",
    "deletion_insertion_curves": ".faithfulness",
    "faithfulness_scores": ".faithfulness",
    "pixel_ranks": ".faithfulness",
    "trapezoid_auc": ".faithfulness",
    "boxes_to_masks": ".groundtruth",
    "energy_pointing_game": ".groundtruth",
    "pointing_game": ".groundtruth",
    "relevance_mass": ".groundtruth",
    "relevance_rank": ".groundtruth",
    "ROAD_PERCENTILES": ".road",
    "road": ".road",
    "road_curves": ".road",
    "data_randomisation": ".sanity",
    "map_similarities": ".sanity",
    "model_randomisation": ".sanity",
    "CorLoc": ".detection",
    "coco_ap": ".detection",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .detection import CorLoc as CorLoc
    from .detection import coco_ap as coco_ap
    from .faithfulness import FaithfulnessMetrics as FaithfulnessMetrics
    from .faithfulness import average_drop_increase as average_drop_increase
    from .faithfulness import deletion_insertion as deletion_insertion
    from .faithfulness import deletion_insertion_curves as deletion_insertion_curves
    from .faithfulness import faithfulness_scores as faithfulness_scores
    from .faithfulness import pixel_ranks as pixel_ranks
    from .faithfulness import trapezoid_auc as trapezoid_auc
    from .groundtruth import boxes_to_masks as boxes_to_masks
    from .groundtruth import energy_pointing_game as energy_pointing_game
    from .groundtruth import pointing_game as pointing_game
    from .groundtruth import relevance_mass as relevance_mass
    from .groundtruth import relevance_rank as relevance_rank
    from .iou import best_iou as best_iou
    from .iou import box_iou as box_iou
    from .localization import IOU_THRESHOLDS as IOU_THRESHOLDS
    from .localization import ImageOutcome as ImageOutcome
    from .localization import LocalizationMetrics as LocalizationMetrics
    from .pxap import PxAP as PxAP
    from .pxap import mask_histograms as mask_histograms
    from .road import ROAD_PERCENTILES as ROAD_PERCENTILES
    from .road import road as road
    from .road import road_curves as road_curves
    from .sanity import data_randomisation as data_randomisation
    from .sanity import map_similarities as map_similarities
    from .sanity import model_randomisation as model_randomisation
