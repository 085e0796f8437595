"""Fresh networks to train: camloc's own, torchvision's, timm's, optionally pretrained and GAP-converted."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import InvalidArgument, ModelFileError, did_you_mean
from .gap import convert
from .hub import load_pretrained
from .nets import ARCHS

__all__ = ["build_model"]


def build_model(
    arch: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    convert_gap: dict | None = None,
) -> nn.Module:
    """A fresh ``arch`` network with ``num_classes`` outputs.

    The network is randomly initialized unless ``pretrained`` or ``weights`` is given: then every
    pretrained tensor whose name and shape fit is loaded (all but the classifier).

    Args:
        arch: ``"gapnet"`` (camloc's small GAP net), a torchvision name, or ``"timm:<name>"``.
        num_classes: outputs of the classifier.
        pretrained: start from the architecture's pretrained weights, read from disk.
        weights: or from this weight file.
        convert_gap: keyword arguments of :func:`camloc.models.gap.convert`
            (e.g. ``{"layer": "features.29"}``); the network becomes its ``-GAP`` variant after the
            pretrained weights are in.

    Returns:
        The network, in train mode. Its ``camloc_new`` attribute names the parameters that did not
        come from pretrained weights (all of them when none were loaded): the classifier, the
        ``-GAP`` head.
    """
    if num_classes < 1:
        raise InvalidArgument("num_classes", f"num_classes must be at least 1, got {num_classes}")
    builder_classes = 1000 if convert_gap is not None and arch not in ARCHS else num_classes
    model = _skeleton(arch, builder_classes)
    loaded: set[str] = set()
    if pretrained or weights is not None:
        loaded = _load_fitting(model, _pretrained_state(arch, weights))
    if convert_gap is not None:
        model = convert(model, **{**convert_gap, "num_classes": num_classes})
        loaded = {f"backbone.{k}" for k in loaded}
    object.__setattr__(model, "camloc_new", tuple(k for k, _ in model.named_parameters() if k not in loaded))
    return model


def _skeleton(arch: str, num_classes: int) -> nn.Module:
    if arch in ARCHS:
        return ARCHS[arch](num_classes)
    if arch.startswith("timm:"):
        import timm

        return timm.create_model(arch[len("timm:") :], pretrained=False, num_classes=num_classes)
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError:
        known = ", ".join(sorted(ARCHS)) + ", any torchvision classification model, timm:<name>"
        hint = did_you_mean(arch, [*ARCHS, *torchvision.models.list_models(module=torchvision.models)])
        raise InvalidArgument(
            "arch", f"arch={arch!r}: unknown architecture{hint} (expected {known})", arguments=["arch"]
        ) from None


def _pretrained_state(arch: str, weights: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    if arch in ARCHS:
        if weights is None:
            raise InvalidArgument(
                "arch",
                f"arch={arch}: no pretrained weights exist; pass weights=FILE or train from scratch",
                arguments=["arch", "weights"],
            )
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
            raise ModelFileError(f"{weights}: not a readable torch file ({type(err).__name__})") from None
        return state.get("state_dict", state) if isinstance(state, dict) else state
    return load_pretrained(arch, weights)[0].state_dict()


def _load_fitting(model: nn.Module, state: dict[str, torch.Tensor]) -> set[str]:
    """Load every tensor whose name and shape fit (only the classifier may be left out); their names."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in fitting]
    if len(missing) > 2 or len(fitting) < len(own) // 2:
        raise ModelFileError(
            f"pretrained weights do not fit this architecture ({len(missing)} tensors missing, e.g. {missing[:3]})"
        )
    model.load_state_dict(fitting, strict=False)
    return set(fitting)
