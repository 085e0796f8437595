"""camloc: class activation maps and weakly-supervised object localization for GAP CNNs.

The pipeline, one subpackage per stage, imports flowing one way (docs/architecture.md)::

    models -> maps -> boxes -> metrics -> datasets -> evaluation -> training -> reports -> cli

The names below are the everyday API; each is imported on first use, so ``import camloc`` is cheap.

Example::

    import camloc
    model = camloc.load_model("mobilenet_v2")
    batch = camloc.load_batch(["cat.jpg"], camloc.model_info(model).preprocess)
    out = camloc.CAM(model)(batch.images, topk=5)     # out.maps: Tensor[1, 5, 224, 224]
"""

from typing import TYPE_CHECKING

from .utils import camloc_version, lazy_exports

__version__ = camloc_version()

_EXPORTS = {
    "CamlocError": ".errors",
    "BadImage": ".errors",
    "DatasetError": ".errors",
    "HeadNotFound": ".errors",
    "InvalidArgument": ".errors",
    "ModelFileError": ".errors",
    "WeightsNotFound": ".errors",
    "Batch": ".images",
    "Geometry": ".images",
    "Preprocess": ".images",
    "load_batch": ".images",
    "open_image": ".images",
    "CamAdapter": ".models",
    "ModelInfo": ".models",
    "adapt": ".models",
    "build_model": ".models",
    "load_checkpoint": ".models",
    "load_model": ".models",
    "model_info": ".models",
    "CAM": ".maps",
    "CamOutput": ".maps",
    "EigenCAM": ".maps",
    "GradCAM": ".maps",
    "GradCAMPlusPlus": ".maps",
    "HiResCAM": ".maps",
    "LayerCAM": ".maps",
    "METHODS": ".maps",
    "MapMethod": ".maps",
    "ScoreCAM": ".maps",
    "PC1": ".maps",
    "XGradCAM": ".maps",
    "ClassTarget": ".maps",
    "ClassesTarget": ".maps",
    "NegativeTarget": ".maps",
    "SegmentationTarget": ".maps",
    "create_method": ".maps",
    "normalize_maps": ".maps",
    "to_image_frame": ".maps",
    "Box": ".boxes",
    "paper_box": ".boxes",
    "paper_boxes": ".boxes",
    "best_iou": ".metrics",
    "box_iou": ".metrics",
    "open_dataset": ".datasets",
    # from their modules: camloc.evaluation.evaluate / .explain name the modules once these are imported
    "evaluate": ".evaluation.evaluate",
    "explain": ".reports.grids",
    "BoxSettings": ".evaluation",
    "boxes_for": ".evaluation",
    "export_boxes": ".evaluation",
    "BoxWriter": ".datasets",
    "CocoWriter": ".datasets",
    "Detection": ".datasets",
    "ImageBoxes": ".datasets",
    "VocWriter": ".datasets",
    "YoloWriter": ".datasets",
    "rule_boxes": ".boxes",
    "CorLoc": ".metrics",
    "coco_ap": ".metrics",
    "overlay": ".reports.figures",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .boxes import Box as Box
    from .boxes import paper_box as paper_box
    from .boxes import paper_boxes as paper_boxes
    from .boxes import rule_boxes as rule_boxes
    from .datasets import BoxWriter as BoxWriter
    from .datasets import CocoWriter as CocoWriter
    from .datasets import Detection as Detection
    from .datasets import ImageBoxes as ImageBoxes
    from .datasets import VocWriter as VocWriter
    from .datasets import YoloWriter as YoloWriter
    from .datasets import open_dataset as open_dataset
    from .errors import BadImage as BadImage
    from .errors import CamlocError as CamlocError
    from .errors import DatasetError as DatasetError
    from .errors import HeadNotFound as HeadNotFound
    from .errors import InvalidArgument as InvalidArgument
    from .errors import ModelFileError as ModelFileError
    from .errors import WeightsNotFound as WeightsNotFound
    from .evaluation import BoxSettings as BoxSettings
    from .evaluation import boxes_for as boxes_for
    from .evaluation import evaluate as evaluate
    from .evaluation import export_boxes as export_boxes
    from .images import Batch as Batch
    from .images import Geometry as Geometry
    from .images import Preprocess as Preprocess
    from .images import load_batch as load_batch
    from .images import open_image as open_image
    from .maps import CAM as CAM
    from .maps import METHODS as METHODS
    from .maps import PC1 as PC1
    from .maps import CamOutput as CamOutput
    from .maps import ClassesTarget as ClassesTarget
    from .maps import ClassTarget as ClassTarget
    from .maps import EigenCAM as EigenCAM
    from .maps import GradCAM as GradCAM
    from .maps import GradCAMPlusPlus as GradCAMPlusPlus
    from .maps import HiResCAM as HiResCAM
    from .maps import LayerCAM as LayerCAM
    from .maps import MapMethod as MapMethod
    from .maps import NegativeTarget as NegativeTarget
    from .maps import ScoreCAM as ScoreCAM
    from .maps import SegmentationTarget as SegmentationTarget
    from .maps import XGradCAM as XGradCAM
    from .maps import create_method as create_method
    from .maps import normalize_maps as normalize_maps
    from .maps import to_image_frame as to_image_frame
    from .metrics import CorLoc as CorLoc
    from .metrics import best_iou as best_iou
    from .metrics import box_iou as box_iou
    from .metrics import coco_ap as coco_ap
    from .models import CamAdapter as CamAdapter
    from .models import ModelInfo as ModelInfo
    from .models import adapt as adapt
    from .models import build_model as build_model
    from .models import load_checkpoint as load_checkpoint
    from .models import load_model as load_model
    from .models import model_info as model_info
    from .reports.figures import overlay as overlay
    from .reports.grids import explain as explain
