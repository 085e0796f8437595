"""What camloc knows about a model beyond its weights: its name, class names and preprocessing.

``load_model`` attaches a :class:`ModelInfo` to the model it returns (a plain attribute, not a
parameter, buffer or submodule); :func:`model_info` reads it back, or gives ImageNet defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..images import Preprocess

__all__ = ["ModelInfo", "model_info", "with_info"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    class_names: tuple[str, ...] | None
    preprocess: Preprocess

    def class_name(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)


def model_info(model: nn.Module) -> ModelInfo:
    """The class names and preprocessing attached by ``load_model``, or ImageNet defaults."""
    info = getattr(model, "camloc_info", None)
    return info if isinstance(info, ModelInfo) else ModelInfo(type(model).__name__, None, Preprocess())


def with_info(model: nn.Module, info: ModelInfo) -> nn.Module:
    model.camloc_info = info  # a plain attribute: not a parameter, buffer or submodule
    return model
