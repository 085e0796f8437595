"""Model files written by ``camloc train`` and ``camloc probe``: build, save and load them offline.

A camloc model file is a ``torch.save`` dict readable with ``weights_only=True`` (tensors, numbers,
strings, lists, dicts only: loading one runs no code). It names how to rebuild the network
(``arch``, ``num_classes``, the optional ``-GAP`` conversion) and holds its full ``state_dict``,
the class names and the preprocessing the model was trained with; a training run adds its
optimizer state and history under ``"train"`` so it can resume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .images import Preprocess
from .nets import ARCHS
from .zoo import ModelInfo, with_info

__all__ = ["build_model", "is_camloc_file", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def build_model(
    arch: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike | None = None,
    convert_gap: dict | None = None,
) -> nn.Module:
    """A fresh ``arch`` network with ``num_classes`` outputs (random init unless ``pretrained`` or
    ``weights``: then every pretrained tensor that fits is loaded, i.e. all but the classifier).

    ``arch``: ``"gapnet"`` (camloc's small GAP net), a torchvision name, or ``"timm:<name>"``.
    ``convert_gap``: keyword arguments of :func:`camloc.gap.convert` (e.g. ``{"layer": "features.29"}``);
    the network is converted to its ``-GAP`` variant after the pretrained weights are in.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    builder_classes = 1000 if convert_gap is not None and arch not in ARCHS else num_classes
    model = _skeleton(arch, builder_classes)
    if pretrained or weights is not None:
        _load_fitting(model, _pretrained_state(arch, weights))
    if convert_gap is not None:
        from .gap import convert

        model = convert(model, **{**convert_gap, "num_classes": num_classes})
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
        raise ValueError(f"--arch {arch!r}: unknown architecture (expected {known})") from None


def _pretrained_state(arch: str, weights: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    if arch in ARCHS:
        if weights is None:
            raise ValueError(f"--arch {arch}: no pretrained weights exist; pass --weights FILE or train from scratch")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        return state.get("state_dict", state) if isinstance(state, dict) else state
    from .zoo import load_model

    return load_model(arch, weights).state_dict()


def _load_fitting(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load every tensor whose name and shape fit; only the classifier may be left out."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in fitting]
    if len(missing) > 2 or len(fitting) < len(own) // 2:
        raise ValueError(f"pretrained weights do not fit this architecture ({len(missing)} tensors missing, e.g. {missing[:3]})")
    model.load_state_dict(fitting, strict=False)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    class_names: Sequence[str] | None,
    preprocess: Preprocess,
    convert_gap: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the model file atomically (a crash mid-write leaves the previous file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "camloc": "model",
        "version": FORMAT_VERSION,
        "arch": arch,
        "num_classes": num_classes,
        "convert_gap": convert_gap,
        "class_names": None if class_names is None else list(class_names),
        "preprocess": preprocess.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(record, tmp)
    os.replace(tmp, path)
    return path


def read_record(path: str | os.PathLike) -> dict:
    """The raw dict of a camloc model or probe file, with a one-line error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise ValueError(f"{path}: not a readable torch file ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not isinstance(record, dict) or record.get("camloc") not in ("model", "probe"):
        raise ValueError(
            f"{path}: not a camloc model file (write one with `camloc train` or `camloc probe`; "
            "for a plain state dict use --model ARCH --weights FILE)"
        )
    if record.get("version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer camloc (format {record['version']}); upgrade camloc")
    return record


def is_camloc_file(name: str | os.PathLike) -> bool:
    """Whether a ``--model`` value names a file (by its suffix) rather than an architecture."""
    return Path(name).suffix in (".pt", ".pth", ".ckpt")


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """The model of a camloc model or probe file, in eval mode, with class names and preprocessing."""
    path = Path(path)
    record = read_record(path)
    if record["camloc"] == "probe":
        return _load_probe(path, device)
    model = build_model(record["arch"], record["num_classes"], convert_gap=record.get("convert_gap"))
    try:
        model.load_state_dict(record["state_dict"], strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit {record['arch']} ({str(err).splitlines()[0]})") from None
    model.eval()
    if device is not None:
        model.to(device)
    names = record.get("class_names")
    info = ModelInfo(str(path), None if names is None else tuple(names), preprocess_from_dict(record.get("preprocess")))
    return with_info(model, info)


def _load_probe(path: Path, device: str | torch.device | None) -> nn.Module:
    from .probe import attach_probe, load_probe
    from .zoo import load_model, model_info

    probe, meta = load_probe(path)
    backbone = load_model(meta["backbone"], meta.get("backbone_weights"))
    model = attach_probe(backbone, probe)
    model.eval()
    if device is not None:
        model.to(device)
    preprocess = meta.get("preprocess") or model_info(backbone).preprocess
    names = None if probe.class_names is None else tuple(probe.class_names)
    return with_info(model, ModelInfo(str(path), names, preprocess))


def preprocess_from_dict(d: dict | None) -> Preprocess:
    return Preprocess.from_dict(d) if d else Preprocess()
