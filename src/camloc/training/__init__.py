"""Training: fit GAP classifiers on labels alone, linear probes on GAP features, and the paper's fine-grained pipeline.

``train`` (resumable, seeded) writes model files that every command loads; ``extract_features`` and
``fit_probe`` give the paper's generic localizable features; ``finegrained`` crops to CAM boxes and
classifies the crops (paper Table 4).
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "TrainConfig": ".config",
    "TrainResult": ".train",
    "assess": "..evaluation.assess",
    "learning_rate": ".loop",
    "train": ".train",
    "Features": ".features",
    "extract_features": ".features",
    "load_features": ".features",
    "save_features": ".features",
    "fit_probe": ".probes",
    "FinegrainedResult": ".finegrained",
    "cam_boxes": ".finegrained",
    "crop_dataset": ".finegrained",
    "finegrained": ".finegrained",
    "finegrained_train": ".finegrained",
    "gt_boxes": ".finegrained",
    "predict": ".finegrained",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ..evaluation.assess import assess as assess
    from .config import TrainConfig as TrainConfig
    from .features import Features as Features
    from .features import extract_features as extract_features
    from .features import load_features as load_features
    from .features import save_features as save_features
    from .finegrained import FinegrainedResult as FinegrainedResult
    from .finegrained import cam_boxes as cam_boxes
    from .finegrained import crop_dataset as crop_dataset
    from .finegrained import finegrained as finegrained
    from .finegrained import finegrained_train as finegrained_train
    from .finegrained import gt_boxes as gt_boxes
    from .finegrained import predict as predict
    from .loop import learning_rate as learning_rate
    from .probes import fit_probe as fit_probe
    from .train import TrainResult as TrainResult
    from .train import train as train
