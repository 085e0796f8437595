"""Maps: CAM, PC1 and the Grad-CAM family on one protocol, batched, on the model's device.

Every method satisfies :class:`MapMethod`: ``method(images, topk=k)`` or
``method(images, classes=...)`` returns a :class:`CamOutput`. :data:`METHODS` lists them all by
name; :func:`create_method` makes one. :func:`normalize_maps` and :func:`to_image_frame` finish maps
for display and boxes.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "CamOutput": ".core",
    "MapMethod": ".core",
    "choose_classes": ".core",
    "CAM": ".cam",
    "ClassTarget": ".core",
    "ClassesTarget": ".targets",
    "NegativeTarget": ".targets",
    "SegmentationTarget": ".targets",
    "TracedMethod": ".traced",
    "GradCAM": ".gradient",
    "GradCAMPlusPlus": ".gradient",
    "HiResCAM": ".gradient",
    "LayerCAM": ".gradient",
    "XGradCAM": ".gradient",
    "EigenCAM": ".activation",
    "ScoreCAM": ".activation",
    "PC1": ".pc1",
    "METHODS": ".registry",
    "METHOD_NAMES": ".registry",
    "create_method": ".registry",
    "normalize_maps": ".frames",
    "to_image_frame": ".frames",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .activation import EigenCAM as EigenCAM
    from .activation import ScoreCAM as ScoreCAM
    from .cam import CAM as CAM
    from .core import CamOutput as CamOutput
    from .core import ClassTarget as ClassTarget
    from .core import MapMethod as MapMethod
    from .core import choose_classes as choose_classes
    from .frames import normalize_maps as normalize_maps
    from .frames import to_image_frame as to_image_frame
    from .gradient import GradCAM as GradCAM
    from .gradient import GradCAMPlusPlus as GradCAMPlusPlus
    from .gradient import HiResCAM as HiResCAM
    from .gradient import LayerCAM as LayerCAM
    from .gradient import XGradCAM as XGradCAM
    from .pc1 import PC1 as PC1
    from .registry import METHOD_NAMES as METHOD_NAMES
    from .registry import METHODS as METHODS
    from .registry import create_method as create_method
    from .targets import ClassesTarget as ClassesTarget
    from .targets import NegativeTarget as NegativeTarget
    from .targets import SegmentationTarget as SegmentationTarget
    from .traced import TracedMethod as TracedMethod
