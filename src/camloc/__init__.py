"""camloc: class activation maps and weakly-supervised object localization for GAP CNNs."""

from .adapter import CamAdapter, HeadNotFound, adapt
from .boxes import Box, paper_box, paper_boxes
from .checkpoint import build_model, load_checkpoint
from .images import BadImage, Batch, Geometry, Preprocess, load_batch, open_image
from .maps import CAM, CamOutput, normalize_maps, to_image_frame
from .methods import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from .metrics import best_iou, box_iou
from .zoo import ModelInfo, WeightsNotFound, load_model, model_info

__version__ = "0.1.0"

__all__ = [
    "CAM",
    "BadImage",
    "Batch",
    "Box",
    "CamAdapter",
    "CamOutput",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
    "Geometry",
    "HeadNotFound",
    "ModelInfo",
    "Preprocess",
    "WeightsNotFound",
    "adapt",
    "best_iou",
    "box_iou",
    "build_model",
    "load_checkpoint",
    "load_batch",
    "load_model",
    "model_info",
    "normalize_maps",
    "open_image",
    "paper_box",
    "paper_boxes",
    "to_image_frame",
]
