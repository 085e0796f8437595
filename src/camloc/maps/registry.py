"""Every map method by name, ``cam`` included; readable without importing torch (the CLI's choices)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument, did_you_mean

if TYPE_CHECKING:
    from torch import nn

    from .core import MapMethod

__all__ = ["HEAD_METHODS", "METHODS", "METHOD_NAMES", "create_method", "unknown_method"]

# name -> (module, class): the order is the CLI's and the docs'.
_WHERE = {
    "cam": (".cam", "CAM"),
    "gradcam": (".gradient", "GradCAM"),
    "gradcam++": (".gradient", "GradCAMPlusPlus"),
    "xgradcam": (".gradient", "XGradCAM"),
    "hirescam": (".gradient", "HiResCAM"),
    "layercam": (".gradient", "LayerCAM"),
    "scorecam": (".activation", "ScoreCAM"),
    "eigencam": (".activation", "EigenCAM"),
    "pc1": (".pc1", "PC1"),
}

#: The methods that read the map the GAP head pools: they take no target layer.
HEAD_METHODS: tuple[str, ...] = ("cam", "pc1")

#: Every method's name, in the order of :data:`METHODS`.
METHOD_NAMES: tuple[str, ...] = tuple(_WHERE)


class _Registry(Mapping[str, Any]):
    """name -> method class; a class is imported when it is first looked up."""

    def __getitem__(self, name: str) -> Any:
        if name not in _WHERE:
            raise KeyError(name)
        module, cls = _WHERE[name]
        return getattr(importlib.import_module(module, __package__), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_WHERE)

    def __len__(self) -> int:
        return len(_WHERE)

    def __repr__(self) -> str:
        return f"METHODS({', '.join(_WHERE)})"


#: name -> class of every method (``METHODS["gradcam"](model, "layer4")``).
METHODS: Mapping[str, Any] = _Registry()


def unknown_method(name: str) -> InvalidArgument:
    """The error for a method name that is not in :data:`METHOD_NAMES`, with the closest name."""
    return InvalidArgument(
        "method",
        f"method={name!r}: unknown map method{did_you_mean(name, _WHERE)}; expected one of {', '.join(_WHERE)}",
        arguments=["method"],
    )


def create_method(
    name: str, model: nn.Module, target_layer: str | nn.Module | None = None, **options: Any
) -> MapMethod:
    """The method called ``name`` for ``model``.

    Args:
        name: one of :data:`METHOD_NAMES`.
        model: the classifier to explain.
        target_layer: the module whose output to explain, by name or the module itself (not for
            ``cam`` and ``pc1``, which always read the map their GAP head pools).
        options: keyword arguments of the method's class: ``relu=``, ``normalize=``,
            ``upsample_mode=``, ``channels_last=``, ``fuse_batchnorm=``, ``amp=`` (and ``chunk=`` for
            ``scorecam``, ``sign=`` for ``eigencam``).

    Example::

        gradcam = create_method("gradcam", model, model.layer4, channels_last=False)
    """
    if name not in _WHERE:
        raise unknown_method(name)
    if name in HEAD_METHODS:
        if target_layer is not None:
            raise InvalidArgument(
                "target_layer",
                f"target_layer=: {METHODS[name].__name__} always uses the feature map its GAP head pools; "
                "choose another method",
                arguments=["target_layer"],
            )
        return METHODS[name](model, **options)
    return METHODS[name](model, target_layer, **options)
