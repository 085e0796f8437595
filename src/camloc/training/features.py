"""Generic localizable deep features (paper section 4): the GAP vector of every image of a dataset.

``extract_features`` gives, for every image, the global-average-pooled feature vector that the
model's linear head sees (optionally of the image cropped to a box first, for the fine-grained
pipeline: crop to the CAM box or the GT box, then classify). Feature files are ``.npz`` archives of
arrays and JSON text, loaded without pickle. With a ``journal``, each image's vector is journalled as
it is made (:class:`~camloc.evaluation.run.Run`: the float32 bytes in base64, one batch a sync), so a
killed run resumes (``resume=True``) to the same vectors, bit for bit.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets.base import Dataset, Sample
from ..distributed import all_gather, shard
from ..errors import BadImage, ModelFileError
from ..evaluation.run import Run
from ..images import Batch, Preprocess, load_batch
from ..maps.core import prepare_input
from ..models.adapter import adapt
from ..models.info import model_info
from ..utils import atomic_path, model_device
from ..utils import progress as progress_bar

__all__ = ["Features", "extract_features", "load_features", "save_features"]

FEATURES_FORMAT = "camloc-features"


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
    journal: str | os.PathLike | None = None,
    resume: bool = False,
    config: dict | None = None,
) -> Features:
    """The GAP vector (spatial mean of the adapter's feature map) of every sample of ``dataset``.

    ``crops`` maps image_id -> box ``(x0, y0, x1, y1)``, inclusive, in the original image's pixels:
    the image is cut to that box before ``preprocess``. Unreadable images, empty crops and images
    without a crop box are skipped and listed in ``skipped``; they never stop the run. The model
    runs in eval mode (its mode is restored afterwards), without gradients, on its own device.
    Under torchrun each process takes the images ``rank, rank + N, ...`` and every process gets the
    whole result, in the dataset's order.

    ``journal``: a file to journal each image's vector in as it is made (see the module docstring);
    ``resume``: continue the run journalled there (same settings: ``batch_size``, ``crops``, the
    preprocessing and ``config``, the caller's own such as the model and data, else a ResumeError).
    """
    settings = {"preprocess": preprocess.to_dict(), "batch_size": batch_size, "crops": _jsonable(crops)}
    run = Run(journal, "features", {**settings, **(config or {})}, resume=resume, exists_hint="choose another file")
    earlier = {record["i"]: record for record in run.done()}
    adapter = adapt(model)
    device = model_device(model)
    todo: list[tuple[int, Sample]] = []
    skipped: list[tuple[int, dict]] = []
    for index, sample in enumerate(dataset.samples):
        if crops is not None and sample.image_id not in crops:
            skipped.append((index, _skip(sample, "no crop box given for this image")))
        else:
            todo.append((index, sample))
    todo = shard(todo)
    vectors: list[torch.Tensor] = []
    kept: list[tuple[int, Sample]] = []
    for index, sample in ((i, s) for i, s in todo if i in earlier):  # resumed: as the journal recorded them
        if "skip" in earlier[index]:
            skipped.append((index, earlier[index]["skip"]))
        else:
            vectors.append(torch.from_numpy(np.frombuffer(base64.b64decode(earlier[index]["v"]), np.float32))[None])
            kept.append((index, sample))
    todo = [(i, s) for i, s in todo if i not in earlier]
    was_training = model.training
    model.eval()  # BatchNorm and dropout in train mode would make the vectors depend on the batch
    try:
        bar = progress_bar(len(todo), enabled=progress)
        with bar, run, ThreadPoolExecutor(max(1, workers)) as pool, torch.no_grad():
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                boxes = [crops[s.image_id] for _, s in chunk] if crops is not None else None
                batch = load_batch([s.path for _, s in chunk], preprocess, executor=pool, crops=boxes)
                good, bad = _pair_with_samples(chunk, batch)
                for (i, s), err in bad:
                    skipped.append((i, _skip(s, err.reason)))
                    run.write({"i": i, "skip": skipped[-1][1]})
                if good:
                    features, _ = adapter(prepare_input(batch.images, device, None))
                    vectors.append(features.float().mean(dim=(2, 3)).cpu())
                    kept += good
                    for (i, _), row in zip(good, vectors[-1].numpy(), strict=True):
                        run.write({"i": i, "v": base64.b64encode(row.astype(np.float32).tobytes()).decode()})
                run.flush()
                bar.update(len(chunk))
    finally:
        model.train(was_training)
    width = adapter.weight.shape[1] if adapter.weight is not None else 0
    values = torch.cat(vectors).numpy() if vectors else np.zeros((0, width), dtype=np.float32)
    parts = all_gather((kept, values, skipped))  # a single process: its own
    kept = [k for part in parts for k in part[0]]
    values = np.concatenate([part[1] for part in parts])
    order = np.argsort([i for i, _ in kept], kind="stable")
    values, kept = values[order], [kept[i] for i in order]
    skipped = sorted((s for part in parts for s in part[2]), key=lambda t: t[0])
    meta = {
        "model": model_info(model).name,
        "dataset": dataset.name,
        "dataset_format": dataset.format,
        "preprocess": preprocess.to_dict(),
        "cropped": crops is not None,
    }
    return Features(
        values=values,
        labels=np.array([s.label for _, s in kept], dtype=np.int64),
        image_ids=[s.image_id for _, s in kept],
        class_names=None if dataset.class_names is None else list(dataset.class_names),
        skipped=[s for _, s in skipped],
        meta=json.loads(json.dumps(meta)),  # the same JSON types a saved file gives back
    )


def _jsonable(crops: Mapping[str, Sequence[int]] | None) -> str | None:
    """A digest of ``crops`` (a resumed run must crop the same; the boxes of a large set would make a long line)."""
    if crops is None:
        return None
    text = json.dumps({k: [int(v) for v in box] for k, box in sorted(crops.items())})
    return hashlib.sha256(text.encode()).hexdigest()


def _skip(sample: Sample, error: str) -> dict:
    return {"image_id": sample.image_id, "path": str(sample.path), "error": error}


Indexed = tuple[int, Sample]


def _pair_with_samples(chunk: list[Indexed], batch: Batch) -> tuple[list[Indexed], list[tuple[Indexed, BadImage]]]:
    """(``(index, sample)`` items that loaded, in batch order; (item, error) of those that did not).

    ``load_batch`` keeps the order of its paths in both lists, so walking the chunk in order pairs
    them; a sample is loaded when the next loaded path is its path.
    """
    good: list[Indexed] = []
    bad: list[tuple[Indexed, BadImage]] = []
    errors = iter(batch.errors)
    for item in chunk:
        if len(good) < len(batch.paths) and batch.paths[len(good)] == str(item[1].path):
            good.append(item)
        else:
            bad.append((item, next(errors)))
    return good, bad


def save_features(features: Features, path: str | os.PathLike) -> None:
    """Write ``features`` to an ``.npz`` file atomically (arrays and JSON text only: no pickle)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object keeps numpy from appending ".npz"
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
                raise ValueError("wrong format marker")  # caught below
            values, labels = data["values"], data["labels"]
            image_ids = [str(i) for i in data["image_ids"]]
            class_names = json.loads(str(data["class_names"]))
            skipped = json.loads(str(data["skipped"]))
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile, EOFError) as err:
        raise ModelFileError(f"{path}: not a camloc features file ({type(err).__name__}: {_first_line(err)})") from None
    if values.ndim != 2 or labels.shape != (values.shape[0],) or len(image_ids) != values.shape[0]:
        raise ModelFileError(f"{path}: inconsistent features file (values {values.shape}, labels {labels.shape})")
    return Features(values, labels, image_ids, class_names, skipped, meta)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""
