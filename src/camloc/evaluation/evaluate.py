"""``evaluate``: localization metrics of a map method on a dataset, streaming and resumable.

Each batch runs in three phases that each use every core in turn (decode in threads, the forward
pass in torch's threads, box post-processing in threads) rather than overlapping: on a small CPU,
decoding or post-processing running beside the forward pass slows torch's own threads far more than
it saves.

Each image's :class:`~camloc.evaluation.protocols.ImageResult` goes to the metrics and, when a
per-image file is given, to the journal (:mod:`camloc.evaluation.journal`), which is synced after
every batch; ``resume`` rebuilds the metrics from the journal, so an interrupted run ends with
exactly the JSON of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..datasets.base import Dataset, Sample
from ..errors import InvalidArgument, OutputExists
from ..images import Preprocess, load_batch
from ..maps.core import MapMethod
from ..metrics.localization import LocalizationMetrics, calibrated_accuracy
from ..utils import progress as progress_bar
from .journal import Journal, read_journal
from .protocols import BoxProtocol, ImageResult, make_protocol

__all__ = ["EvalResult", "calibrate", "evaluate"]


@dataclass
class EvalResult:
    """The summary of an evaluation (percentages; None where undefined), its curves and the skipped images."""

    summary: dict
    curves: dict[str, list[float]]
    cam_thresholds: list[float]
    skipped: list[dict] = field(default_factory=list)  # {"image_id", "path", "error"}

    def to_json(self) -> dict:
        """The summary, the skipped images, the thresholds and the accuracy-vs-threshold curves."""
        return {**self.summary, "skipped": self.skipped, "cam_thresholds": self.cam_thresholds, "curves": self.curves}


def evaluate(
    dataset: Dataset,
    method: MapMethod,
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
    """Evaluate ``method``'s maps of each sample's labelled class with a box ``protocol``.

    Args:
        dataset: the images with their labels and boxes (or masks).
        method: any :class:`~camloc.maps.MapMethod` (CAM, Grad-CAM, ...).
        preprocess: the model's preprocessing; images are squashed to ``preprocess.size`` (the WSOL protocol).
        protocol: ``"wsol"``, ``"paper"`` or ``"authors"`` (:mod:`camloc.evaluation.protocols`).
        batch_size: images per forward pass.
        workers: threads for decoding and box work.
        step: the CAM threshold step of the sweep (thresholds ``np.arange(0, 1, step)``).
        threshold: the paper rule's threshold.
        per_image: a CSV file that gets one row per image as it is computed.
        resume: continue the run recorded in ``per_image``.
        config: more settings that a resumed run must share (model, data, ...).
        progress: show a progress bar (None: when stderr is a terminal).
        baseline: ``"center"`` scores fixed centred boxes instead of the maps.
    """
    preprocess = dataclasses.replace(preprocess, mode="squash")
    plan = make_protocol(protocol, step=step, threshold=threshold, size=preprocess.size, baseline=baseline)
    metrics = LocalizationMetrics(plan.thresholds)
    skipped: list[dict] = []
    header = {**plan.settings(), **(config or {})}
    if resume and per_image is None:
        raise InvalidArgument("resume", "resume=True needs per_image=FILE: the rows of the run to continue")
    if per_image is not None and not resume and Path(per_image).exists() and Path(per_image).stat().st_size:
        raise OutputExists(f"{per_image}: exists; pass resume=True to continue that run, or remove it")
    done: set[str] = set()
    if resume and Path(per_image).exists() and Path(per_image).stat().st_size:  # type: ignore[arg-type]
        for result in read_journal(per_image, header, len(plan.thresholds)):  # type: ignore[arg-type]
            if result.image_id not in done:
                done.add(result.image_id)
                _account(result, metrics, skipped)
    todo = [s for s in dataset.samples if s.image_id not in done]
    bar = progress_bar(len(dataset.samples), initial=len(done), enabled=progress)
    with bar, Journal(per_image, header) as journal, ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            for result in _evaluate_batch(chunk, method, preprocess, plan, pool):
                journal.write(result)
                _account(result, metrics, skipped)
            journal.flush()
            bar.update(len(chunk))
    return EvalResult(metrics.compute(), metrics.accuracy_curves(), plan.thresholds.tolist(), skipped)


def _account(result: ImageResult, metrics: LocalizationMetrics, skipped: list[dict]) -> None:
    if result.outcome is None:
        skipped.append({"image_id": result.image_id, "path": result.path, "error": result.error})
    else:
        metrics.update(result.outcome)


def _evaluate_batch(
    chunk: list[Sample], method: MapMethod, preprocess: Preprocess, plan: BoxProtocol, pool: ThreadPoolExecutor
) -> list[ImageResult]:
    batch = load_batch([s.path for s in chunk], preprocess, executor=pool)  # phase 1: decode
    by_path = {str(s.path): s for s in chunk}
    results = [_failed(by_path[e.path], e.reason) for e in batch.errors]
    if not batch.paths:
        return results
    samples = [by_path[p] for p in batch.paths]
    labels = torch.tensor([[s.label] for s in samples])
    out = method(batch.images, classes=labels, upsample=False)  # phase 2: forward
    top5 = out.logits.topk(min(5, out.logits.shape[1]), dim=1).indices.cpu()
    gt_maps = out.raw[:, 0].double().cpu().numpy()
    top3 = None
    if plan.wants_top3:
        top3 = method.more_maps(out, batch.images, top5[:, :3]).double().cpu().numpy()

    def judge(i: int) -> ImageResult:  # phase 3: boxes, one image per task (OpenCV and the sweep release the GIL)
        sample, geo = samples[i], batch.geometries[i]
        original = sample.size or (geo.width, geo.height)
        return plan.judge(sample, original, top5[i].tolist(), gt_maps[i], None if top3 is None else top3[i])

    return results + list(pool.map(judge, range(len(samples))))


def _failed(sample: Sample, reason: str) -> ImageResult:
    return ImageResult(sample.image_id, str(sample.path), sample.label, error=reason)


def calibrate(test: EvalResult, val: EvalResult) -> dict:
    """Test accuracy at the CAM thresholds chosen on a validation set (Choe et al.'s protocol).

    ``test`` and ``val`` are two evaluations of the same maps and protocol; the result is
    :func:`camloc.metrics.localization.calibrated_accuracy` of their curves plus ``images``: the
    number of validation images. Put it in ``test.summary["calibrated"]`` to have it reported.
    """
    if test.cam_thresholds != val.cam_thresholds:
        raise InvalidArgument("step", "the validation and test evaluations must use the same CAM thresholds (step=)")
    return {"images": val.summary["images"], **calibrated_accuracy(val.curves, test.curves, test.cam_thresholds)}
