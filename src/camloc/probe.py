"""Generic localizable deep features (paper §4): linear probes on a CNN's GAP features.

``extract_features`` gives, for every image of a dataset, the global-average-pooled feature vector
that the model's linear head sees (optionally of the image cropped to a box first, for the
fine-grained pipeline: crop to the CAM box or the GT box, then classify). ``fit_probe`` trains a
linear SVM (as the paper) or logistic regression on those vectors, with any standardization folded
into the weights, so the probe applies to the raw vectors. ``attach_probe`` puts the probe in place
of the model's classifier: CAM of the new model maps the probe's classes (paper Fig. 9).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .adapter import adapt
from .datasets import Dataset, Sample
from .images import BadImage, Batch, Preprocess, load_batch
from .maps import model_device, prepare_input
from .zoo import ModelInfo, model_info, with_info

__all__ = [
    "Features",
    "LinearProbe",
    "attach_probe",
    "extract_features",
    "fit_probe",
    "load_features",
    "load_probe",
    "save_features",
    "save_probe",
]

ProbeKind = Literal["svm", "logistic"]
FEATURES_FORMAT = "camloc-features"
PROBE_VERSION = 1


@dataclass
class Features:
    """GAP feature vectors of a dataset's images, one row per image that could be read."""

    values: np.ndarray  # (N, K) float32
    labels: np.ndarray  # (N,) int64
    image_ids: list[str]
    class_names: list[str] | None
    skipped: list[dict] = field(default_factory=list)  # {"image_id", "path", "error"}
    meta: dict = field(default_factory=dict)  # JSON values only, so that it round-trips through a file

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, rows: Sequence[int] | np.ndarray) -> Features:
        """The given rows (indices or a boolean mask), e.g. a train/test split."""
        rows = np.asarray(rows)
        index = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        return dataclasses.replace(
            self,
            values=self.values[index],
            labels=self.labels[index],
            image_ids=[self.image_ids[i] for i in index],
        )


def extract_features(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Preprocess,
    *,
    batch_size: int = 32,
    workers: int = 2,
    crops: Mapping[str, Sequence[int]] | None = None,
    progress: bool | None = None,
) -> Features:
    """The GAP vector (spatial mean of the adapter's feature map) of every sample of ``dataset``.

    ``crops`` maps image_id -> box ``(x0, y0, x1, y1)``, inclusive, in the original image's pixels:
    the image is cut to that box before ``preprocess``. Unreadable images, empty crops and images
    without a crop box are skipped and listed in ``skipped``; they never stop the run. The model
    runs in eval mode (its mode is restored afterwards), without gradients, on its own device.
    """
    adapter = adapt(model)
    device = model_device(model)
    todo: list[Sample] = []
    skipped: list[dict] = []
    for sample in dataset.samples:
        if crops is not None and sample.image_id not in crops:
            skipped.append(_skip(sample, "no crop box given for this image"))
        else:
            todo.append(sample)
    vectors: list[torch.Tensor] = []
    kept: list[Sample] = []
    show = len(todo) > 3 if progress is None else progress
    was_training = model.training
    model.eval()  # BatchNorm and dropout in train mode would make the vectors depend on the batch
    try:
        bar = tqdm(total=len(todo), unit="img", disable=not show, file=sys.stderr)
        with bar, ThreadPoolExecutor(max(1, workers)) as pool, torch.no_grad():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                boxes = [crops[s.image_id] for s in chunk] if crops is not None else None
                batch = load_batch([s.path for s in chunk], preprocess, executor=pool, crops=boxes)
                good, bad = _pair_with_samples(chunk, batch)
                skipped += [_skip(s, err.reason) for s, err in bad]
                if good:
                    features, _ = adapter(prepare_input(batch.images, device, None))
                    vectors.append(features.float().mean(dim=(2, 3)).cpu())
                    kept += good
                bar.update(len(chunk))
    finally:
        model.train(was_training)
    width = adapter.weight.shape[1] if adapter.is_linear else 0
    values = torch.cat(vectors).numpy() if vectors else np.zeros((0, width), dtype=np.float32)
    meta = {
        "model": model_info(model).name,
        "dataset": dataset.name,
        "dataset_format": dataset.format,
        "preprocess": preprocess.to_dict(),
        "cropped": crops is not None,
    }
    return Features(
        values=values,
        labels=np.array([s.label for s in kept], dtype=np.int64),
        image_ids=[s.image_id for s in kept],
        class_names=None if dataset.class_names is None else list(dataset.class_names),
        skipped=skipped,
        meta=json.loads(json.dumps(meta)),  # the same JSON types a saved file gives back
    )


def _skip(sample: Sample, error: str) -> dict:
    return {"image_id": sample.image_id, "path": str(sample.path), "error": error}


def _pair_with_samples(chunk: list[Sample], batch: Batch) -> tuple[list[Sample], list[tuple[Sample, BadImage]]]:
    """(samples that loaded, in batch order; (sample, error) of those that did not).

    ``load_batch`` keeps the order of its paths in both lists, so walking the chunk in order pairs
    them; a sample is loaded when the next loaded path is its path.
    """
    good, bad = [], []
    errors = iter(batch.errors)
    for sample in chunk:
        if len(good) < len(batch.paths) and batch.paths[len(good)] == str(sample.path):
            good.append(sample)
        else:
            bad.append((sample, next(errors)))
    return good, bad


def save_features(features: Features, path: str | os.PathLike) -> None:
    """Write ``features`` to an ``.npz`` file (arrays and JSON text only: no pickle)."""
    with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz" to the name
        np.savez(
            f,
            format=np.array(FEATURES_FORMAT),
            values=np.asarray(features.values, dtype=np.float32),
            labels=np.asarray(features.labels, dtype=np.int64),
            image_ids=np.array(features.image_ids, dtype=np.str_),
            class_names=np.array(json.dumps(features.class_names)),
            skipped=np.array(json.dumps(features.skipped)),
            meta=np.array(json.dumps(features.meta)),
        )


def load_features(path: str | os.PathLike) -> Features:
    """Read a file written by :func:`save_features`."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: features file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != FEATURES_FORMAT:
                raise ValueError("wrong format marker")
            values, labels = data["values"], data["labels"]
            image_ids = [str(i) for i in data["image_ids"]]
            class_names = json.loads(str(data["class_names"]))
            skipped = json.loads(str(data["skipped"]))
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: not a camloc features file ({type(err).__name__}: {_first_line(err)})") from None
    if values.ndim != 2 or labels.shape != (values.shape[0],) or len(image_ids) != values.shape[0]:
        raise ValueError(f"{path}: inconsistent features file (values {values.shape}, labels {labels.shape})")
    return Features(values, labels, image_ids, class_names, skipped, meta)


# --------------------------------------------------------------------------------------------
# the probe


@dataclass
class LinearProbe:
    """A linear classifier on raw GAP vectors: ``scores = weight @ gap + bias``.

    Row ``i`` scores the dataset class ``labels[i]`` (named ``class_names[i]``): the classes the
    probe was trained on, in increasing label order.
    """

    weight: torch.Tensor  # (C, K) float32
    bias: torch.Tensor  # (C,) float32
    class_names: list[str]
    labels: list[int]
    kind: str
    C: float

    def decision(self, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, C) class scores of raw GAP vectors (N, K), computed in float64."""
        x = torch.as_tensor(values).to("cpu", torch.float64)
        return (x @ self.weight.double().T + self.bias.double()).numpy()

    def predict(self, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,) predicted dataset labels."""
        return np.asarray(self.labels, dtype=np.int64)[self.decision(values).argmax(axis=1)]

    def accuracy(self, features: Features) -> float:
        """Percentage of ``features`` whose label the probe predicts."""
        if len(features) == 0:
            raise ValueError("accuracy of an empty set of features")
        return float(np.mean(self.predict(features.values) == features.labels) * 100.0)


def fit_probe(
    features: Features,
    *,
    kind: ProbeKind = "svm",
    C: float = 1.0,
    standardize: bool = True,
    seed: int = 0,
) -> LinearProbe:
    """Train a linear SVM (``svm``, the paper's choice) or logistic regression on GAP vectors.

    With ``standardize`` the classifier is trained on standardized vectors and the scaling is
    folded into its weights afterwards, so the probe always applies to raw vectors (as the model's
    own linear layer does, which is what CAM needs).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in ("svm", "logistic"):
        raise ValueError(f"kind must be 'svm' or 'logistic', not {kind!r}")
    present = np.unique(features.labels)
    if len(present) < 2:
        raise ValueError(f"a probe needs features of at least two classes, got {len(present)}")
    x = np.asarray(features.values, dtype=np.float64)
    if kind == "svm":
        # The dual solver: sklearn's "auto" picks the primal once images outnumber features, which
        # took 134 s instead of 8 s on 2,000 x 1,280 standardized features.
        classifier = LinearSVC(C=C, dual=True, random_state=seed, max_iter=10_000)
    else:
        classifier = LogisticRegression(C=C, random_state=seed, max_iter=5_000)
    scaler = StandardScaler().fit(x) if standardize else None
    classifier.fit(scaler.transform(x) if scaler is not None else x, features.labels)
    weight, bias = classifier.coef_, classifier.intercept_
    if scaler is not None:
        # w . (x - mean) / scale + b  ==  (w / scale) . x + (b - (w / scale) . mean)
        weight = weight / scaler.scale_
        bias = bias - weight @ scaler.mean_
    if len(present) == 2:
        # sklearn keeps one row scoring classes_[1] against classes_[0]; two rows of +-half keep
        # the same decision, and for logistic regression their softmax is its sigmoid.
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    labels = [int(c) for c in classifier.classes_]
    names = features.class_names
    return LinearProbe(
        weight=torch.from_numpy(weight).float(),
        bias=torch.from_numpy(bias).float(),
        class_names=[names[i] if names is not None and 0 <= i < len(names) else str(i) for i in labels],
        labels=labels,
        kind=kind,
        C=float(C),
    )


def attach_probe(model: nn.Module, probe: LinearProbe) -> nn.Module:
    """A copy of ``model`` whose linear classifier is the probe; ``model`` itself is unchanged.

    The model must end in global average pooling + one ``nn.Linear`` whose input width is the
    probe's. CAM of the copy maps the probe's classes; its ``camloc_info`` (when the model has
    one) names them.
    """
    adapter = adapt(model)
    head = adapter.classifier
    if not isinstance(head, nn.Linear):
        raise ValueError(
            f"{type(model).__name__}: a probe replaces a head of global average pooling + one nn.Linear; "
            f"this model has {adapter.description}"
        )
    width = probe.weight.shape[1]
    if head.in_features != width:
        raise ValueError(
            f"the probe takes {width} features but {type(model).__name__}'s classifier takes {head.in_features}"
        )
    name = next(n for n, m in model.named_modules() if m is head)
    new_head = nn.Linear(width, probe.weight.shape[0]).to(head.weight.device, head.weight.dtype)
    with torch.no_grad():
        new_head.weight.copy_(probe.weight)
        new_head.bias.copy_(probe.bias)
    new_model = copy.deepcopy(model)
    new_model.set_submodule(name, new_head)
    info = getattr(model, "camloc_info", None)
    if isinstance(info, ModelInfo):
        with_info(
            new_model,
            dataclasses.replace(info, name=f"{info.name} + {probe.kind} probe", class_names=tuple(probe.class_names)),
        )
    return new_model


# --------------------------------------------------------------------------------------------
# probe files


def save_probe(
    probe: LinearProbe,
    path: str | os.PathLike,
    *,
    backbone: str,
    backbone_weights: str | None = None,
    preprocess: Preprocess | None = None,
) -> None:
    """Write the probe with what is needed to rebuild its model: ``load_model(backbone,
    backbone_weights)`` then :func:`attach_probe`. Tensors, strings, numbers, lists and dicts only,
    so that ``torch.load(weights_only=True)`` reads it."""
    torch.save(
        {
            "camloc": "probe",
            "version": PROBE_VERSION,
            "backbone": str(backbone),
            "backbone_weights": None if backbone_weights is None else str(backbone_weights),
            "weight": probe.weight.detach().cpu().float().contiguous(),
            "bias": probe.bias.detach().cpu().float().contiguous(),
            "class_names": list(probe.class_names),
            "labels": list(probe.labels),
            "kind": probe.kind,
            "C": float(probe.C),
            "preprocess": None if preprocess is None else preprocess.to_dict(),
        },
        path,
    )


def load_probe(path: str | os.PathLike) -> tuple[LinearProbe, dict]:
    """The probe of a file written by :func:`save_probe`, and ``{"backbone", "backbone_weights",
    "preprocess"}`` (``preprocess`` a :class:`Preprocess` or None)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: probe file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for files it cannot read
        raise ValueError(
            f"{path}: not a readable camloc probe file ({type(err).__name__}: {_first_line(err)})"
        ) from None
    if not isinstance(data, dict) or data.get("camloc") != "probe":
        raise ValueError(f"{path}: not a camloc probe file")
    if data.get("version") != PROBE_VERSION:
        raise ValueError(
            f"{path}: probe file version {data.get('version')!r}; this camloc reads version {PROBE_VERSION}"
        )
    try:
        weight, bias = data["weight"], data["bias"]
        names, labels = [str(n) for n in data["class_names"]], [int(i) for i in data["labels"]]
        ok = weight.ndim == 2 and bias.shape == (weight.shape[0],) and len(names) == len(labels) == weight.shape[0]
        probe = LinearProbe(weight, bias, names, labels, str(data["kind"]), float(data["C"]))
        settings = data["preprocess"]
        preprocess = None if settings is None else Preprocess.from_dict(settings)
        backbone, backbone_weights = str(data["backbone"]), data["backbone_weights"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: damaged camloc probe file ({type(err).__name__}: {_first_line(err)})") from None
    if not ok:
        raise ValueError(
            f"{path}: damaged camloc probe file (weight {tuple(weight.shape)}, bias {tuple(bias.shape)}, "
            f"{len(names)} class names)"
        )
    return probe, {"backbone": backbone, "backbone_weights": backbone_weights, "preprocess": preprocess}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""
