"""What camloc knows about a model beyond its weights: its name, class names and preprocessing.

``load_model`` attaches a :class:`ModelInfo` to the model it returns (a plain attribute, not a
parameter, buffer or submodule); :func:`model_info` reads it back, or gives ImageNet defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InvalidArgument, did_you_mean
from ..images import Preprocess
from .hf import is_hf_model
from .hf_info import class_names, preprocess_of

__all__ = ["ModelInfo", "model_info", "with_info"]


@dataclass(frozen=True)
class ModelInfo:
    """What camloc knows about a model beyond its weights.

    Attributes:
        name: a name for reports (the hub name and weights, ``timm:<name>``, the model file's path, or the class name).
        class_names: the class names in index order, or None when unknown.
        preprocess: how images are resized and normalized for the model.
        map_size: the input side at which its maps are read, when that differs from
            ``preprocess.size`` (a model trained at 448 px can localize better from a larger input
            while it classifies best at its own size; ``camloc train`` records it); None: the same.
        box_threshold: the paper box rule's threshold for its maps (a fraction of each map's max),
            chosen on images with boxes (``camloc train`` records it); ``camloc boxes``, ``explain``
            and the viewer use it when given none; None: the paper's 0.2.
    """

    name: str
    class_names: tuple[str, ...] | None
    preprocess: Preprocess
    map_size: int | None = None
    box_threshold: float | None = None

    def __repr__(self) -> str:
        classes = "no class names" if self.class_names is None else f"{len(self.class_names)} classes"
        maps = "" if self.map_size is None else f", map_size={self.map_size}"
        boxes = "" if self.box_threshold is None else f", box_threshold={self.box_threshold:g}"
        return f"ModelInfo(name={self.name!r}, {classes}, preprocess={self.preprocess!r}{maps}{boxes})"

    @property
    def paper_threshold(self) -> float:
        """The paper box rule's threshold for this model: :attr:`box_threshold`, else the paper's 0.2."""
        return 0.2 if self.box_threshold is None else self.box_threshold

    def class_name(self, index: int) -> str:
        """The name of class ``index``, or the index as a string when there is no such name."""
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    def class_index(self, name: str) -> int:
        """The index of the class called ``name``: the exact name, else the one name equal but for case.

        Raises:
            InvalidArgument: no class or several classes have that name (the message names the
                closest class name, ignoring case, spaces, dashes and underscores).

        >>> ModelInfo("m", ("tabby", "tiger cat"), Preprocess()).class_index("Tiger Cat")
        1
        >>> ModelInfo("m", ("tabby", "tiger cat"), Preprocess()).class_index("tabbycat")
        Traceback (most recent call last):
        ...
        camloc.errors.InvalidArgument: class 'tabbycat' is not a class name of m (did you mean 'tabby'?)
        """
        names = self.class_names or ()
        exact = [i for i, n in enumerate(names) if n == name]
        loose = exact or [i for i, n in enumerate(names) if n.lower() == name.strip().lower()]
        if len(loose) == 1:
            return loose[0]
        if loose:
            raise InvalidArgument(
                "classes", f"class {name!r} names several classes of {self.name}; use an index", arguments=()
            )
        raise InvalidArgument(
            "classes", f"class {name!r} is not a class name of {self.name}{did_you_mean(name, names)}", arguments=()
        )


def model_info(model: nn.Module) -> ModelInfo:
    """The class names and preprocessing attached by ``load_model``, or the model's own, or ImageNet defaults.

    A ``transformers`` model has its own: ``config.id2label`` and the ``preprocessor_config.json``
    saved beside it (where ``config._name_or_path`` is a folder).
    """
    info = getattr(model, "camloc_info", None)
    if isinstance(info, ModelInfo):
        return info
    if is_hf_model(model):
        name = str(getattr(model.config, "_name_or_path", "") or type(model).__name__)
        return ModelInfo(name, class_names(model), preprocess_of(model))
    return ModelInfo(type(model).__name__, None, Preprocess())


def with_info(model: nn.Module, info: ModelInfo) -> nn.Module:
    """Attach ``info`` to ``model`` (read back by :func:`model_info`); returns ``model`` itself."""
    object.__setattr__(model, "camloc_info", info)  # a plain attribute: not a parameter, buffer or submodule
    return model
