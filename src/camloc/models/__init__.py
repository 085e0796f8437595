"""Models: find the feature map and GAP head of a classifier, load it from disk, build, convert, save.

``adapt`` splits a classifier into its last feature map and its head without running it;
``load_model`` reads torchvision, timm, user-defined and camloc models from files on disk;
``build_model`` and ``convert`` make networks to train; ``attach_probe`` puts a linear probe in
place of a model's classifier; model files (:mod:`camloc.models.files`) store trained networks and
probes in one format.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "CamAdapter": ".adapter",
    "FoldedCopy": ".adapter",
    "adapt": ".adapter",
    "ModelInfo": ".info",
    "model_info": ".info",
    "with_info": ".info",
    "load_model": ".loading",
    "load_pretrained": ".hub",
    "find_weight_file": ".hub",
    "build_model": ".build",
    "GapVariant": ".gap",
    "convert": ".gap",
    "default_layer": ".gap",
    "default_target": ".layers",
    "Layout": ".layout",
    "to_grid": ".layout",
    "as_classifier": ".hf",
    "GapNet": ".nets",
    "gapnet": ".nets",
    "LinearProbe": ".probes",
    "attach_probe": ".probes",
    "is_model_file": ".files",
    "load_checkpoint": ".files",
    "load_probe": ".files",
    "read_model_file": ".files",
    "save_checkpoint": ".files",
    "save_probe": ".files",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .adapter import CamAdapter as CamAdapter
    from .adapter import FoldedCopy as FoldedCopy
    from .adapter import adapt as adapt
    from .build import build_model as build_model
    from .files import is_model_file as is_model_file
    from .files import load_checkpoint as load_checkpoint
    from .files import load_probe as load_probe
    from .files import read_model_file as read_model_file
    from .files import save_checkpoint as save_checkpoint
    from .files import save_probe as save_probe
    from .gap import GapVariant as GapVariant
    from .gap import convert as convert
    from .gap import default_layer as default_layer
    from .hf import as_classifier as as_classifier
    from .hub import find_weight_file as find_weight_file
    from .hub import load_pretrained as load_pretrained
    from .info import ModelInfo as ModelInfo
    from .info import model_info as model_info
    from .info import with_info as with_info
    from .layers import default_target as default_target
    from .layout import Layout as Layout
    from .layout import to_grid as to_grid
    from .loading import load_model as load_model
    from .nets import GapNet as GapNet
    from .nets import gapnet as gapnet
    from .probes import LinearProbe as LinearProbe
    from .probes import attach_probe as attach_probe
