"""`camloc evaluate`: localization metrics of a CAM model on a dataset, streaming and resumable.

Each batch runs in three phases that each use every core in turn (decode in threads, the forward
pass in torch's threads, box post-processing in threads) rather than overlapping: on a small CPU,
decoding or post-processing running beside the forward pass slows torch's own threads far more than
it saves.

Per-image rows are appended to a CSV as they are computed, and the summary is rebuilt from those
rows on ``resume``, so an interrupted run ends with exactly the JSON of an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .boxes import paper_box, wsol_gray, wsol_levels, wsol_scoremap
from .datasets import Dataset, Sample
from .images import Preprocess, load_batch
from .maps import CAM
from .metrics import IOU_THRESHOLDS, ImageOutcome, LocalizationMetrics, PxAP, best_iou, mask_histograms, scale_box
from .sweep import wsol_best_ious

__all__ = ["PROTOCOLS", "EvalResult", "evaluate"]

PROTOCOLS = ("wsol", "paper", "authors")
BASELINES = (None, "center")
CURVES = ("v1_50",) + tuple(f"v2_{t}" for t in IOU_THRESHOLDS)
COLUMNS = [
    "image_id", "path", "label", "top5", "cls_top1", "cls_top5", "iou", "box",
    "located", "top1_located", "top5_located", *CURVES, "pxap_fg", "pxap_bg", "error",
]  # fmt: skip


@dataclass
class EvalResult:
    summary: dict
    curves: dict[str, list[float]]
    cam_thresholds: list[float]
    skipped: list[dict] = field(default_factory=list)  # {"image_id", "path", "error"}

    def to_json(self) -> dict:
        return {**self.summary, "skipped": self.skipped, "cam_thresholds": self.cam_thresholds, "curves": self.curves}


def evaluate(
    dataset: Dataset,
    cam: CAM,
    preprocess: Preprocess,
    *,
    protocol: str = "wsol",
    batch_size: int = 32,
    workers: int = 2,
    step: float = 0.01,
    threshold: float = 0.2,
    per_image: str | os.PathLike | None = None,
    resume: bool = False,
    config: dict | None = None,
    progress: bool | None = None,
    baseline: str | None = None,
) -> EvalResult:
    """Evaluate ``cam`` on every sample of ``dataset`` with a box ``protocol``.

    ``wsol``: wsolevaluation's protocol (maps on the image squashed to ``preprocess.size``, bicubic,
    min-max; MaxBoxAcc, MaxBoxAccV2, PxAP over thresholds ``np.arange(0, 1, step)``) plus the paper's
    rule at ``threshold`` on the same maps for GT-known / top-1 / top-5 localization.
    ``paper``: only the paper's rule. ``authors``: the CAM authors' box generator and top-5 heuristics.

    ``baseline="center"`` scores fixed centred boxes instead of the CAM's: the map is replaced by
    ``1 - max(|x - cx| / (W/2), |y - cy| / (H/2))``, whose region above threshold ``t`` is the centred
    box of ``(1 - t)`` times the image's width and height. MaxBoxAcc is then the accuracy of the best
    fixed centred box, and the curves give every box size (classification still uses the model).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(map(str, BASELINES))}, not {baseline!r}")
    if baseline is not None and protocol == "authors":
        raise ValueError("--baseline applies to the wsol and paper protocols")
    preprocess = dataclasses.replace(preprocess, mode="squash")
    cam_thresholds = np.arange(0, 1, step)
    metrics = LocalizationMetrics(cam_thresholds)
    skipped: list[dict] = []
    header = {"protocol": protocol, **({"baseline": baseline} if baseline else {}), "step": step, "threshold": threshold, "size": preprocess.size, **(config or {})}
    done = _resume_rows(per_image, header, metrics, skipped) if resume else set()
    if per_image is not None and not resume and Path(per_image).exists() and Path(per_image).stat().st_size:
        raise FileExistsError(f"{per_image}: exists; pass --resume to continue that run, or remove it")
    todo = [s for s in dataset.samples if s.image_id not in done]
    show = len(todo) > 3 if progress is None else progress
    bar = tqdm(total=len(dataset.samples), initial=len(done), unit="img", disable=not show, file=sys.stderr)
    with _RowWriter(per_image, header) as writer, ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            rows = _evaluate_batch(chunk, cam, preprocess, protocol, cam_thresholds, threshold, pool, baseline)
            for row in rows:
                writer.write(row)
                _account(row, metrics, skipped)
            writer.flush()
            bar.update(len(chunk))
    bar.close()
    return EvalResult(metrics.compute(), metrics.accuracy_curves(), cam_thresholds.tolist(), skipped)


def _account(row: dict, metrics: LocalizationMetrics, skipped: list[dict]) -> None:
    if row["error"]:
        skipped.append({"image_id": row["image_id"], "path": row["path"], "error": row["error"]})
    else:
        metrics.update(_outcome(row, len(metrics.cam_thresholds)))


def _evaluate_batch(
    chunk: list[Sample],
    cam: CAM,
    preprocess: Preprocess,
    protocol: str,
    cam_thresholds: np.ndarray,
    threshold: float,
    pool: ThreadPoolExecutor,
    baseline: str | None = None,
) -> list[dict]:
    batch = load_batch([s.path for s in chunk], preprocess, executor=pool)  # phase 1: decode
    by_path = {str(s.path): s for s in chunk}
    rows = [_row(by_path[e.path], error=e.reason) for e in batch.errors]
    if not batch.paths:
        return rows
    samples = [by_path[p] for p in batch.paths]
    labels = torch.tensor([[s.label] for s in samples])
    out = cam(batch.images, classes=labels, upsample=False)  # phase 2: forward
    top5 = out.logits.topk(min(5, out.logits.shape[1]), dim=1).indices.cpu()
    raw = out.raw[:, 0].double().cpu().numpy()
    if protocol == "authors":
        if isinstance(cam, CAM):  # the same forward pass serves every class
            top3 = cam.raw_maps(out.features, top5[:, :3].to(out.features.device))
        else:
            top3 = cam(batch.images, classes=top5[:, :3], upsample=False).raw
        top3 = top3.double().cpu().numpy()
    size = (preprocess.size, preprocess.size)

    def boxes(i: int) -> dict:  # phase 3: boxes, one image per task (OpenCV and the sweep release the GIL)
        sample, geo = samples[i], batch.geometries[i]
        original = sample.size or (geo.width, geo.height)
        label, preds = sample.label, top5[i].tolist()
        row = _row(sample, top5=" ".join(map(str, preds)), cls_top1=int(preds[0] == label), cls_top5=int(label in preds))
        if protocol == "authors":
            _authors(row, sample, raw[i], top3[i], preds, original)
            return row
        truths = [scale_box(b, original, size) for b in sample.boxes]
        scoremap = center_scoremap(size) if baseline == "center" else wsol_scoremap(raw[i], size)
        _single_box(row, paper_box(scoremap, threshold), truths)
        if protocol == "wsol" and truths:
            gray = wsol_gray(scoremap)
            v1, v2 = wsol_best_ious(gray, wsol_levels(gray, cam_thresholds), np.asarray(truths, dtype=np.int64))
            row["v1_50"] = _bits(v1 >= 0.5)
            for t in IOU_THRESHOLDS:
                row[f"v2_{t}"] = _bits(v2 >= t / 100)
        if sample.mask_paths:
            fg, bg = mask_histograms(PxAP(cam_thresholds), scoremap, sample.mask_paths, sample.ignore_path)
            row["pxap_fg"], row["pxap_bg"] = _sparse(fg), _sparse(bg)
        return row

    return rows + list(pool.map(boxes, range(len(samples))))


def center_scoremap(size: tuple[int, int]) -> np.ndarray:
    """A map whose level sets are the centred boxes: 1 at the centre, 0 on the border."""
    w, h = size
    x = np.abs(np.arange(w) - (w - 1) / 2) / (w / 2)
    y = np.abs(np.arange(h) - (h - 1) / 2) / (h / 2)
    m = 1.0 - np.maximum(x[None, :], y[:, None])
    return (m - m.min()) / (m.max() - m.min())  # min-max, as every CAM score map is


def _single_box(row: dict, box, truths) -> None:
    iou = best_iou(box, truths)
    located = iou >= 0.5
    row.update(
        iou=f"{iou:.6f}",
        box=" ".join(map(str, box)) if box is not None else "",
        located=int(located),
        top1_located=int(located and row["cls_top1"] == 1),
        top5_located=int(located and row["cls_top5"] == 1),
    )


def _authors(row: dict, sample: Sample, gt_raw: np.ndarray, top3_raw: np.ndarray, preds: list[int], original) -> None:
    """The CAM authors' generator in the original image's pixels (maps resized bicubically)."""
    import cv2

    from .dtbox import authors_boxes, authors_heatmap, authors_top5

    def boxes_of(raw: np.ndarray) -> list:
        # mergeTenCrop.m sums |CAM| over the crops: the authors' heat map is of the absolute value.
        return authors_boxes(authors_heatmap(np.abs(cv2.resize(raw, original, interpolation=cv2.INTER_CUBIC))))

    truths = list(sample.boxes)
    gt_boxes = boxes_of(gt_raw)
    _single_box(row, gt_boxes[0] if gt_boxes else None, truths)
    per_class = [boxes_of(m) for m in top3_raw]
    top1_box = per_class[0][0] if per_class[0] else None
    row["top1_located"] = int(row["cls_top1"] == 1 and best_iou(top1_box, truths) >= 0.5)
    guesses = authors_top5(per_class)
    row["top5_located"] = int(any(preds[rank] == sample.label and best_iou(box, truths) >= 0.5 for rank, box in guesses))


def _row(sample: Sample, **values) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(image_id=sample.image_id, path=str(sample.path), label=sample.label, **values)
    return row


def _outcome(row: dict, n_thresholds: int) -> ImageOutcome:
    def flag(key: str) -> bool | None:
        return None if row[key] in ("", None) else bool(int(row[key]))

    curves = {c: _unbits(row[c], n_thresholds) for c in CURVES if row.get(c)}
    pxap = (_unsparse(row["pxap_fg"]), _unsparse(row["pxap_bg"])) if row.get("pxap_fg") else None
    return ImageOutcome(
        cls_top1=bool(int(row["cls_top1"])),
        cls_top5=bool(int(row["cls_top5"])),
        located=flag("located"),
        top1_located=flag("top1_located"),
        top5_located=flag("top5_located"),
        curves=curves,
        pxap=pxap,
    )


def _bits(hits: np.ndarray) -> str:
    return np.packbits(hits.astype(bool)).tobytes().hex()


def _unbits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def _sparse(hist: np.ndarray) -> str:
    return f"{len(hist)}:" + " ".join(f"{i}={v}" for i, v in enumerate(hist.tolist()) if v)


def _unsparse(text: str) -> np.ndarray:
    size, _, items = text.partition(":")
    hist = np.zeros(int(size), dtype=np.int64)
    for item in items.split():
        i, v = item.split("=")
        hist[int(i)] = int(v)
    return hist


class _RowWriter:
    """Appends per-image rows to a CSV whose first line records the run's settings."""

    def __init__(self, path: str | os.PathLike | None, header: dict) -> None:
        self.path, self.header = (Path(path) if path else None), header
        self.file: io.TextIOBase | None = None
        self.writer = None

    def __enter__(self) -> _RowWriter:
        if self.path is not None:
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a", newline="")
            self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS, extrasaction="ignore")
            if fresh:
                self.file.write(f"# camloc evaluate {json.dumps(self.header, sort_keys=True)}\n")
                self.writer.writeheader()
        return self

    def write(self, row: dict) -> None:
        if self.writer is not None:
            self.writer.writerow(row)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


def _resume_rows(path, header: dict, metrics: LocalizationMetrics, skipped: list[dict]) -> set[str]:
    """Rebuild the metrics from an earlier run's rows; returns the image ids already done."""
    if path is None:
        raise ValueError("--resume needs --per-image FILE: the rows of the run to continue")
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return set()
    done: set[str] = set()
    for row in _read_rows(path, header):
        if row["image_id"] in done:
            continue
        done.add(row["image_id"])
        _account(row, metrics, skipped)
    return done


def _read_rows(path: Path, header: dict) -> Iterator[dict]:
    with open(path, newline="") as f:
        first = f.readline()
        prefix = "# camloc evaluate "
        if not first.startswith(prefix):
            raise ValueError(f"{path}:1: not a camloc evaluate per-image file")
        earlier = json.loads(first[len(prefix) :])
        if earlier != json.loads(json.dumps(header, sort_keys=True)):
            diff = {k: (earlier.get(k), header.get(k)) for k in set(earlier) | set(header) if earlier.get(k) != header.get(k)}
            raise ValueError(f"{path}:1: written by a run with other settings {diff}; cannot resume it")
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # a row cut off by the interruption: computed again
        with open(path, "r+", newline="") as f:  # drop it from the file too, so rows stay well-formed
            f.seek(0)
            keep = f.readline() + "".join(lines)
            f.seek(0)
            f.write(keep)
            f.truncate()
    yield from csv.DictReader(lines)
