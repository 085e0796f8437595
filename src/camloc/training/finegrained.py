"""The paper's fine-grained experiment (Table 4): localize with CAM, crop, classify the crop.

``finegrained`` (the paper's setting): three linear probes on a backbone's GAP features, (a) on
full images, (b) on crops to the box the full-image probe's CAM gives, (c) on crops to the
ground-truth box (the upper bound). ``finegrained_train``: the same three steps with a network
trained on each kind of image instead of a probe, for data no pretrained backbone suits.

Boxes follow the paper's text: pixels >= 20 % of the map's max (no min subtraction), largest
connected component, in the original image's pixels. Training images are boxed with the CAM of
their labelled class (labels are known when training); test images with the CAM of the predicted
class (nothing else is known at test time). Every image is squashed to the input size, as the WSOL
protocol does.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..boxes.box import Box, enclosing_box
from ..boxes.paper import paper_box
from ..datasets.base import Dataset, Sample
from ..datasets.boxes_csv import write_csv_dataset
from ..datasets.registry import open_dataset
from ..errors import BadImage
from ..images import Preprocess, crop_to_box, load_batch, open_image
from ..maps.core import output_tensor
from ..maps.frames import to_image_frame
from ..maps.registry import create_method
from ..metrics.iou import best_iou
from ..models.probes import LinearProbe, attach_probe
from ..utils import model_device
from ..utils import progress as progress_bar
from .config import TrainConfig
from .features import Features, extract_features
from .probes import ProbeKind, fit_probe
from .train import train

log = logging.getLogger(__name__)

__all__ = ["FinegrainedResult", "cam_boxes", "crop_dataset", "finegrained", "finegrained_train", "gt_boxes", "predict"]


@dataclass
class FinegrainedResult:
    """The fine-grained experiment's three test accuracies and how well its CAM boxes localize.

    Attributes:
        full: test accuracy (%) on full images.
        cam_crop: test accuracy (%) on crops to the CAM box.
        gt_crop: test accuracy (%) on crops to the ground-truth box.
        localized: % of test images whose CAM box has IoU > 0.5 with a ground-truth box (NaN when
            no test image has a ground-truth box).
        train_images: the number of training samples.
        test_images: the number of test samples.
        skipped: one ``{"image_id", "path", "error"}`` per image that could not be read.
        test_boxes: test image id -> its CAM box in the original image's pixels (None where the
            CAM keeps no pixel).
        full_and_cam_crop: test accuracy (%) of a probe on the full image's and the CAM crop's
            features concatenated (probe mode; None in train mode).
        full_and_gt_crop: the same with the ground-truth crop.
    """

    full: float  # test accuracy (%) of the probe on full images
    cam_crop: float  # ... on crops to the CAM box
    gt_crop: float  # ... on crops to the ground-truth box
    localized: float  # % of test images whose CAM box has IoU > 0.5 with a ground-truth box
    train_images: int
    test_images: int
    skipped: list[dict] = field(default_factory=list)
    test_boxes: dict[str, Box | None] = field(default_factory=dict)
    full_and_cam_crop: float | None = None  # ... on full-image and CAM-crop features side by side
    full_and_gt_crop: float | None = None  # ... on full-image and GT-crop features side by side

    def to_json(self) -> dict:
        """All fields as JSON values (boxes as lists)."""
        out = dataclasses.asdict(self)
        out["test_boxes"] = {k: None if b is None else list(b) for k, b in self.test_boxes.items()}
        return out


def finegrained(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    preprocess: Preprocess,
    *,
    kind: ProbeKind = "svm",
    C: float = 1.0,
    threshold: float = 0.2,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool | None = None,
    localizer: nn.Module | None = None,
    localizer_preprocess: Preprocess | None = None,
    margin: float = 0.0,
    crop_size: int | None = None,
    method: str = "cam",
) -> FinegrainedResult:
    """The paper's fine-grained experiment with linear probes on ``model``'s GAP features (module docstring).

    Three probes are trained on ``train_set`` and tested on ``test_set``: on full images, on crops to
    the CAM box, and on crops to the ground-truth box. Every image is squashed to the input size.

    Args:
        model: the backbone whose GAP features the probes classify.
        train_set: the training images, boxed with the CAM of their label.
        test_set: the test images, boxed with the CAM of the full-image probe's prediction.
        preprocess: the backbone's preprocessing (its mode is replaced by ``"squash"``).
        kind: the probe, ``"svm"`` (the paper's) or ``"logistic"``.
        C: the probe's inverse regularization strength.
        threshold: the paper box's fraction of the map's maximum.
        batch_size: images per batch.
        workers: threads decoding images.
        progress: show progress bars (None: when stderr is a terminal).
        localizer: box every image with this model's CAM of its own top-1 class instead of the
            probe's CAM (a class-agnostic object finder, for backbones whose own CAM does not localize
            on the data).
        localizer_preprocess: the localizer's preprocessing (default: ``preprocess``), also squashed.
        margin: every CAM box grows by this fraction of its width and height on each side (clipped
            to the image) before cropping; ground-truth boxes are cropped as they are.
        crop_size: the side crops are squashed to (default: ``preprocess.size``).
        method: the map method whose maps give the boxes (a name in :data:`camloc.maps.METHODS`).
    """
    preprocess = dataclasses.replace(preprocess, mode="squash")
    cropped = preprocess if crop_size is None else dataclasses.replace(preprocess, size=crop_size)
    options: dict[str, Any] = {"batch_size": batch_size, "workers": workers, "progress": progress}
    boxes_options: dict[str, Any] = {**options, "method": method}

    def probe_accuracy(
        crops_train: dict | None, crops_test: dict | None, what: str
    ) -> tuple[float, LinearProbe, tuple[Features, Features]]:
        pre = preprocess if crops_train is None else cropped
        f_train = extract_features(model, train_set, pre, crops=crops_train, **options)
        f_test = extract_features(model, test_set, pre, crops=crops_test, **options)
        probe = fit_probe(f_train, kind=kind, C=C)
        accuracy = probe.accuracy(f_test)
        log.info(
            "%s: %.2f %% test accuracy (%d train / %d test images)",
            what,
            accuracy,
            len(f_train.labels),
            len(f_test.labels),
        )
        skipped.extend(f_train.skipped + f_test.skipped)
        return accuracy, probe, (f_train, f_test)

    def side_by_side(crops: tuple[Features, Features], what: str) -> float:
        """A probe on the full image's features and the crop's, concatenated (images with both)."""
        train_pair, test_pair = (_concatenated(f, c) for f, c in zip(full_features, crops, strict=True))
        accuracy = fit_probe(train_pair, kind=kind, C=C).accuracy(test_pair)
        log.info("full images + %s: %.2f %% test accuracy", what, accuracy)
        return accuracy

    skipped: list[dict] = []
    full, probe, full_features = probe_accuracy(None, None, "full images")
    f_test = full_features[1]
    if localizer is None:
        cam_model = attach_probe(model, probe)
        # The probe's rows score its own classes (those present in training), not dataset labels.
        row = {label: i for i, label in enumerate(probe.labels)}
        predicted = dict(zip(f_test.image_ids, probe.decision(f_test.values).argmax(axis=1).tolist(), strict=True))
        labelled = {s.image_id: row[s.label] for s in train_set if s.label in row}
        train_boxes = cam_boxes(cam_model, train_set, preprocess, labelled, threshold, **boxes_options)
        test_boxes = cam_boxes(cam_model, test_set, preprocess, predicted, threshold, **boxes_options)
    else:
        pre = dataclasses.replace(localizer_preprocess or preprocess, mode="squash")
        train_boxes = cam_boxes(localizer, train_set, pre, None, threshold, **boxes_options)
        test_boxes = cam_boxes(localizer, test_set, pre, None, threshold, **boxes_options)
    localized = _localized(test_set, test_boxes)
    cam_crop, _, cam_features = probe_accuracy(
        _usable(train_boxes, margin), _usable(test_boxes, margin), "crops to the CAM box"
    )
    gt_crop, _, gt_features = probe_accuracy(gt_boxes(train_set), gt_boxes(test_set), "crops to the ground-truth box")
    unique = list({s["image_id"]: s for s in skipped}.values())
    return FinegrainedResult(
        full, cam_crop, gt_crop, localized, len(train_set), len(test_set), unique, test_boxes,
        side_by_side(cam_features, "CAM crops"), side_by_side(gt_features, "ground-truth crops"),
    )  # fmt: skip


def _concatenated(full: Features, crops: Features) -> Features:
    """The full image's vector and the crop's side by side, for the images both have (in ``full``'s order)."""
    row = {image_id: i for i, image_id in enumerate(crops.image_ids)}
    keep = [i for i, image_id in enumerate(full.image_ids) if image_id in row]
    both = full.subset(keep)
    other = crops.values[[row[full.image_ids[i]] for i in keep]]
    return dataclasses.replace(both, values=np.concatenate([both.values, other], axis=1))


def _localized(test_set: Dataset, boxes: dict[str, Box | None]) -> float:
    """Percent of the test images with ground truth whose CAM box has IoU > 0.5 with one of its boxes (logged)."""
    hits = [best_iou(boxes.get(s.image_id), list(s.boxes)) > 0.5 for s in test_set if s.image_id in boxes and s.boxes]
    localized = 100.0 * float(np.mean(hits)) if hits else float("nan")
    log.info("CAM boxes with IoU > 0.5 on %.2f %% of the test images", localized)
    return localized


def _usable(boxes: dict[str, Box | None], margin: float = 0.0) -> dict[str, Box]:
    """Image id -> crop box, grown by ``margin`` of its sides; an image whose CAM keeps no pixel is classified whole.

    (Say, a map below zero everywhere.) Boxes are clipped to the image when it is cropped, whatever
    its size.
    """
    whole = (0, 0, 2**31 - 1, 2**31 - 1)
    out = {}
    for k, b in boxes.items():
        if b is None:
            out[k] = whole
        else:
            dx, dy = round(margin * (b[2] - b[0] + 1)), round(margin * (b[3] - b[1] + 1))
            out[k] = (max(0, b[0] - dx), max(0, b[1] - dy), b[2] + dx, b[3] + dy)
    return out


def gt_boxes(dataset: Dataset) -> dict[str, Box]:
    """The box around all of an image's ground-truth boxes (CUB has exactly one)."""
    return {s.image_id: enclosing_box(s.boxes) for s in dataset if s.boxes}  # type: ignore[misc]


@torch.no_grad()
def cam_boxes(
    model: nn.Module,
    dataset: Dataset,
    preprocess: Preprocess,
    classes: dict[str, int] | None,
    threshold: float = 0.2,
    *,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool | None = None,
    method: str = "cam",
) -> dict[str, Box | None]:
    """Image id -> the paper box of the image's CAM for ``classes[image_id]``, in the original image's pixels.

    ``classes=None``: the predicted class. Images missing from ``classes`` or unreadable are left out.
    ``method``: the map method by name (:data:`camloc.maps.METHODS`; default CAM).
    """
    cam = create_method(method, model)
    samples = [s for s in dataset if classes is None or s.image_id in classes]
    by_path = {str(s.path): s for s in samples}
    out: dict[str, Box | None] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool, progress_bar(len(samples), enabled=progress, leave=False) as bar:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            batch = load_batch([s.path for s in chunk], preprocess, executor=pool)
            if batch.paths:
                wanted = (
                    None if classes is None else torch.tensor([[classes[by_path[p].image_id]] for p in batch.paths])
                )
                raw = cam(batch.images, classes=wanted, upsample=False).raw[:, 0].float()
                for p, geo, m in zip(batch.paths, batch.geometries, raw, strict=True):
                    # The paper's rule on the map itself: pixels >= threshold x its max (no min subtraction).
                    heat = to_image_frame(m[None], geo)[0].cpu().numpy()
                    out[by_path[p].image_id] = paper_box(heat, threshold)
            bar.update(len(chunk))
    return out


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, preprocess: Preprocess, *, batch_size: int = 64, workers: int = 2
) -> dict[str, int]:
    """Each readable image's top-1 class."""
    model.eval()
    device = model_device(model)
    by_path = {str(s.path): s for s in dataset}
    out: dict[str, int] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(dataset), batch_size):
            batch = load_batch([s.path for s in dataset.samples[start : start + batch_size]], preprocess, executor=pool)
            if batch.paths:
                top = output_tensor(model(batch.images.to(device))).argmax(1).tolist()
                out.update((by_path[p].image_id, c) for p, c in zip(batch.paths, top, strict=True))
    return out


def crop_dataset(
    dataset: Dataset, boxes: dict[str, Box], root: str | Path, skipped: list[dict] | None = None
) -> Dataset:
    """Write every image cropped to its box (whole when it has none) as a csv-layout dataset in ``root``.

    Unreadable images are left out (and appended to ``skipped``). Returns the dataset read back.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for i, s in enumerate(dataset):
        try:
            im = open_image(s.path)
            if s.image_id in boxes:
                im = crop_to_box(im, boxes[s.image_id], s.path)
        except BadImage as err:
            if skipped is not None:
                skipped.append({"image_id": s.image_id, "path": str(s.path), "error": err.reason})
            continue
        image_id = f"{i:06d}.png"
        im.save(root / "images" / image_id)
        samples.append(Sample(image_id, root / "images" / image_id, s.label, (), im.size))
    write_csv_dataset(samples, root, dataset.class_names)
    return open_dataset(root, "csv")


def finegrained_train(
    train_set: Dataset,
    test_set: Dataset,
    config: TrainConfig,
    work: str | Path,
    *,
    threshold: float = 0.2,
    progress: bool | None = None,
    method: str = "cam",
) -> FinegrainedResult:
    """The fine-grained experiment with trained networks instead of probes.

    (a) train ``config`` on full images, (b) box every image with that model's CAM (or the maps of
    ``method``, a name in :data:`camloc.maps.METHODS`), crop, train on the crops, (c) the same with
    ground-truth crops. Models and crops go to ``work``; a run that is interrupted resumes from the
    model files there.
    """
    work = Path(work)
    skipped: list[dict] = []
    preprocess = config.preprocess()

    def fit(name: str, train_data: Dataset, test_data: Dataset) -> tuple[nn.Module, dict[str, int], float]:
        path = work / f"{name}.pt"
        model = train(config, train_data, path, resume=path.exists(), progress=progress).model
        predicted = predict(model, test_data, preprocess, workers=config.workers)
        labels = {s.image_id: s.label for s in test_data}
        accuracy = 100.0 * float(np.mean([predicted[k] == labels[k] for k in predicted]))
        log.info("%s: %.2f %% test accuracy", name, accuracy)
        return model, predicted, accuracy

    model, predicted, full = fit("full", train_set, test_set)
    options: dict[str, Any] = {"batch_size": 64, "workers": config.workers, "progress": progress, "method": method}
    train_boxes = cam_boxes(
        model, train_set, preprocess, {s.image_id: s.label for s in train_set}, threshold, **options
    )
    test_boxes = cam_boxes(model, test_set, preprocess, predicted, threshold, **options)
    localized = _localized(test_set, test_boxes)
    crops = {}
    for kind, (tr_boxes, te_boxes) in {
        "cam": (_usable(train_boxes), _usable(test_boxes)),
        "gt": (gt_boxes(train_set), gt_boxes(test_set)),
    }.items():
        crops[kind] = tuple(
            open_dataset(d, "csv") if (d / "boxes.csv").is_file() else crop_dataset(data, b, d, skipped)
            for data, b, d in (
                (train_set, tr_boxes, work / f"{kind}-crops" / "train"),
                (test_set, te_boxes, work / f"{kind}-crops" / "test"),
            )
        )
    _, _, cam_crop = fit("cam-crop", *crops["cam"])
    _, _, gt_crop = fit("gt-crop", *crops["gt"])
    unique = list({s["image_id"]: s for s in skipped}.values())
    return FinegrainedResult(full, cam_crop, gt_crop, localized, len(train_set), len(test_set), unique, test_boxes)
