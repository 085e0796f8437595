"""camloc model files: trained networks and linear probes in one format, written atomically, read offline.

A model file is a ``torch.save`` dict readable with ``weights_only=True`` (tensors, numbers,
strings, lists and dicts only: loading one runs no code)::

    {"camloc": "model", "version": 2, "kind": "network" | "probe",
     "class_names": [...] | None, "preprocess": {...} | None, "written_by": {"camloc": ..., "torch": ...},
     ...what the kind needs}

``network`` (``camloc train``): ``arch``, ``num_classes``, ``convert_gap`` (the ``-GAP`` conversion,
or None), ``map_size`` (the input side to read maps at, or None: the preprocessing's; absent in
files of camloc 0.2), ``box_threshold`` (the paper box rule's threshold chosen for it, or None;
absent before camloc 0.3) and the full ``state_dict``; a training run adds its optimizer state and history under
``"train"`` so that it can resume. ``probe`` (``camloc probe``): ``backbone`` and
``backbone_weights`` (how to load the backbone) and ``probe`` (``weight``, ``bias``, ``labels``,
``kind``, ``C``): the probe replaces the backbone's classifier.

One version rule: a file of a newer format than this camloc reads is refused with a message saying
so; older formats are read (version 1 kept networks and probes in two layouts, marked by
``"camloc": "model"`` and ``"camloc": "probe"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidArgument, ModelFileError
from ..images import Preprocess
from ..utils import atomic_path, versions
from .build import build_model
from .hub import load_pretrained
from .info import ModelInfo, model_info, with_info
from .probes import LinearProbe, attach_probe

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE_SUFFIXES",
    "is_model_file",
    "load_checkpoint",
    "load_probe",
    "read_model_file",
    "save_checkpoint",
    "save_probe",
    "write_model_file",
]

FORMAT_VERSION = 2
KINDS = ("network", "probe")
#: A ``--model`` value with one of these suffixes names a model file rather than an architecture.
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".probe")


def is_model_file(name: str | os.PathLike) -> bool:
    """Whether a model name is a file (by its suffix) rather than an architecture."""
    return Path(name).suffix in MODEL_FILE_SUFFIXES


def write_model_file(path: str | os.PathLike, kind: str, payload: dict) -> Path:
    """Write a model file of ``kind`` atomically (a crash mid-write leaves the previous file intact).

    Args:
        path: the file to write.
        kind: ``"network"`` or ``"probe"``.
        payload: the kind's fields (see the module docstring); JSON values and tensors only.
    """
    if kind not in KINDS:
        raise InvalidArgument("kind", f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    record = {"camloc": "model", "version": FORMAT_VERSION, "kind": kind, "written_by": versions(), **payload}
    with atomic_path(path) as tmp:
        torch.save(record, tmp)
    return Path(path)


def read_model_file(path: str | os.PathLike) -> dict:
    """The record of a camloc model file in the current format, with a one-line error for anything else.

    Raises:
        FileNotFoundError: no such file.
        ModelFileError: not a torch file, not a camloc model file, or a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a truncated or foreign file
        raise ModelFileError(f"{path}: not a readable torch file ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(record, dict) or record.get("camloc") not in ("model", "probe"):
        raise ModelFileError(
            f"{path}: not a camloc model file (write one with `camloc train` or `camloc probe`; "
            "for a plain state dict name the architecture and pass weights=FILE)"
        )
    version = record.get("version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: damaged camloc model file (format version {version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written by a newer camloc (format version {version}; this camloc reads up to "
            f"{FORMAT_VERSION}); upgrade camloc"
        )
    return _upgrade(record) if version < FORMAT_VERSION else record


def _upgrade(record: dict) -> dict:
    """A version-1 record in the current layout."""
    if record["camloc"] == "model":
        return {**record, "version": FORMAT_VERSION, "kind": "network"}
    fields = ("weight", "bias", "labels", "kind", "C")
    rest = {k: v for k, v in record.items() if k not in fields}
    probe = {k: record[k] for k in fields if k in record}
    return {**rest, "camloc": "model", "version": FORMAT_VERSION, "kind": "probe", "probe": probe}


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    num_classes: int,
    class_names: Sequence[str] | None,
    preprocess: Preprocess,
    convert_gap: dict | None = None,
    map_size: int | None = None,
    box_threshold: float | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a trained network as a model file (kind ``network``), atomically.

    Args:
        path: the file to write.
        model: the network; its ``state_dict`` is saved on the CPU.
        arch: the architecture :func:`camloc.models.build_model` rebuilds it from.
        num_classes: its number of outputs.
        class_names: names of its classes, or None.
        preprocess: the preprocessing it was trained with.
        convert_gap: the ``-GAP`` conversion applied after building, or None.
        map_size: the input side to read its maps at, or None: ``preprocess.size`` (:class:`ModelInfo`).
        box_threshold: the paper box rule's threshold chosen for it, or None (:class:`ModelInfo`).
        extra: more fields (``camloc train`` adds ``"train"``: its state for resuming).
    """
    payload = {
        "arch": arch,
        "num_classes": num_classes,
        "convert_gap": convert_gap,
        "class_names": None if class_names is None else list(class_names),
        "preprocess": preprocess.to_dict(),
        "map_size": map_size,
        "box_threshold": box_threshold,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    return write_model_file(path, "network", payload)


def save_probe(
    probe: LinearProbe,
    path: str | os.PathLike,
    *,
    backbone: str,
    backbone_weights: str | None = None,
    preprocess: Preprocess | None = None,
) -> Path:
    """Write a probe as a model file (kind ``probe``): ``backbone`` with the probe as its head.

    Args:
        probe: the fitted probe.
        path: the file to write.
        backbone: the model name the backbone loads from (any name :func:`camloc.load_model` takes).
        backbone_weights: its weight file, or None for the default weights.
        preprocess: the preprocessing the probe's features were extracted with, or None for the
            backbone's own.
    """
    payload = {
        "backbone": str(backbone),
        "backbone_weights": None if backbone_weights is None else str(backbone_weights),
        "class_names": list(probe.class_names),
        "preprocess": None if preprocess is None else preprocess.to_dict(),
        "probe": {
            "weight": probe.weight.detach().cpu().float().contiguous(),
            "bias": probe.bias.detach().cpu().float().contiguous(),
            "labels": list(probe.labels),
            "kind": probe.kind,
            "C": float(probe.C),
        },
    }
    return write_model_file(path, "probe", payload)


def load_probe(path: str | os.PathLike) -> tuple[LinearProbe, dict]:
    """The probe of a probe file, and ``{"backbone", "backbone_weights", "preprocess"}``.

    ``preprocess`` is a :class:`~camloc.images.Preprocess` or None.
    """
    return _probe_of(read_model_file(path), path)


def _probe_of(record: dict, path: str | os.PathLike) -> tuple[LinearProbe, dict]:
    if record["kind"] != "probe":
        raise ModelFileError(f"{path}: a camloc {record['kind']} file, not a probe file")
    try:
        data = record["probe"]
        weight, bias = data["weight"], data["bias"]
        names, labels = [str(n) for n in record["class_names"]], [int(i) for i in data["labels"]]
        ok = weight.ndim == 2 and bias.shape == (weight.shape[0],) and len(names) == len(labels) == weight.shape[0]
        probe = LinearProbe(weight, bias, names, labels, str(data["kind"]), float(data["C"]))
        settings = record["preprocess"]
        preprocess = None if settings is None else Preprocess.from_dict(settings)
        backbone, backbone_weights = str(record["backbone"]), record["backbone_weights"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ModelFileError(f"{path}: damaged camloc probe file ({type(err).__name__}: {_first_line(err)})") from None
    if not ok:
        raise ModelFileError(
            f"{path}: damaged camloc probe file (weight {tuple(weight.shape)}, bias {tuple(bias.shape)}, "
            f"{len(names)} class names)"
        )
    return probe, {"backbone": backbone, "backbone_weights": backbone_weights, "preprocess": preprocess}


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """The model of a camloc model file, in eval mode, with its class names and preprocessing attached."""
    path = Path(path)
    record = read_model_file(path)
    if record["kind"] == "probe":
        probe, meta = _probe_of(record, path)
        backbone = _load_backbone(meta["backbone"], meta["backbone_weights"])
        model = attach_probe(backbone, probe)
        names: tuple[str, ...] | None = tuple(probe.class_names)
        preprocess = meta["preprocess"] or model_info(backbone).preprocess
    else:
        model = build_model(record["arch"], record["num_classes"], convert_gap=record.get("convert_gap"))
        try:
            model.load_state_dict(record["state_dict"], strict=True)
        except (RuntimeError, KeyError) as err:
            raise ModelFileError(f"{path}: weights do not fit {record['arch']} ({_first_line(err)})") from None
        names = None if record.get("class_names") is None else tuple(record["class_names"])
        preprocess = Preprocess.from_dict(record["preprocess"]) if record.get("preprocess") else Preprocess()
    map_size = record.get("map_size")
    if map_size is not None and (not isinstance(map_size, int) or map_size < 16):
        raise ModelFileError(f"{path}: damaged camloc model file (map_size {map_size!r})")
    box_threshold = record.get("box_threshold")
    if box_threshold is not None and (not isinstance(box_threshold, float) or not 0.0 <= box_threshold <= 1.0):
        raise ModelFileError(f"{path}: damaged camloc model file (box_threshold {box_threshold!r})")
    model.eval()
    if device is not None:
        model.to(device)
    return with_info(model, ModelInfo(str(path), names, preprocess, map_size, box_threshold))


def _load_backbone(name: str, weights: str | None) -> nn.Module:
    if is_model_file(name):
        return load_checkpoint(name)
    model, info = load_pretrained(name, weights)
    return with_info(model.eval(), info)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:160] if text else ""
