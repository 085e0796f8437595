"""``evaluate``: localization metrics of a map method on a dataset, streaming, resumable, overlapped, sharded.

Batches go through :func:`~camloc.evaluation.pipeline.overlapped`: the next batch is decoded and the
last one's boxes are made while a batch is in the forward pass (``overlap=False``: one phase after
the other). Each image's :class:`~camloc.evaluation.protocols.ImageResult` goes to the metrics and,
when a per-image file is given, to the journal (:mod:`camloc.evaluation.journal`), which is synced
after every batch; ``resume`` rebuilds the metrics from the journal, so an interrupted run ends
with exactly the JSON of an uninterrupted one.

Under torchrun (``torchrun --nproc-per-node N -m camloc evaluate ...``) each process takes the
images ``rank, rank + N, ...`` (:func:`camloc.distributed.shard`) and keeps its own journal
(``ROWS.rank<r>-of-<N>``); the metrics' counts are added up across the processes
(:meth:`~camloc.metrics.state.Metric.sync`), and rank 0 merges the journals into the per-image
file in the dataset's order. The summary, curves and per-image file equal a single process's.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..datasets.base import Dataset, Sample
from ..distributed import all_gather, shard
from ..errors import InvalidArgument
from ..images import Batch, Preprocess, load_batch
from ..maps.core import MapMethod, class_scores
from ..metrics.localization import LocalizationMetrics, calibrated_accuracy
from ..models.info import ModelInfo
from ..utils import progress as progress_bar
from .journal import COLUMNS, decode, encode
from .protocols import BoxProtocol, ImageResult, make_protocol
from .run import Run, legacy_arguments, map_preprocess, method_info, pinned, stages, worker_pool

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
    method: MapMethod | nn.Module,
    *legacy: Preprocess,
    info: ModelInfo | None = None,
    preprocess: Preprocess | None = None,
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
    overlap: bool = True,
    map_size: int | None = None,
) -> EvalResult:
    """Evaluate ``method``'s maps of each sample's labelled class with a box ``protocol``.

    Args:
        dataset: the images with their labels and boxes (or masks).
        method: any :class:`~camloc.maps.MapMethod` (CAM, Grad-CAM, ...), or a model (then CAM of it).
        *legacy: camloc 0.2's positional ``preprocess``: ``evaluate(dataset, method, preprocess)`` still works.
        info: the model's preprocessing (None: what ``load_model`` attached to the model).
        preprocess: instead of ``info.preprocess``; images are squashed to ``preprocess.size`` (the WSOL protocol).
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
        overlap: decode and box work beside the forward pass (False: one phase after the other).
        map_size: the input side the maps are read at, when it differs from the one that classifies
            (``preprocess.size``): each batch then runs twice, at each size (None: ``info.map_size``,
            which ``camloc train`` records in its model files, else ``preprocess.size``).
    """
    (preprocess,) = legacy_arguments("evaluate", legacy, {"preprocess": preprocess})
    method, info = method_info(method, info)
    preprocess = dataclasses.replace(preprocess or info.preprocess, mode="squash")
    mapping = map_preprocess(preprocess, map_size or info.map_size)
    plan = make_protocol(protocol, step=step, threshold=threshold, size=mapping.size, baseline=baseline)
    metrics = LocalizationMetrics(plan.thresholds)
    if resume and per_image is None:
        raise InvalidArgument("resume", "resume=True needs per_image=FILE: the rows of the run to continue")
    sizes = {} if mapping is preprocess else {"classify_size": preprocess.size}
    run = Run(per_image, "evaluate", {**plan.settings(), **sizes, **(config or {})}, columns=COLUMNS, resume=resume)
    here = run.world
    samples = dataset.samples  # may be lazy (read when asked for): only indices are kept here
    mine = shard(range(len(samples)), here)
    skipped: list[tuple[int, dict]] = []
    done: set[str] = set()
    index_of: dict[str, int] | None = None
    for row in run.done():  # streamed: flat memory
        if index_of is None:  # only when there is a row (lazy samples are read to build it)
            index_of = {samples[i].image_id: i for i in mine}
        if row["image_id"] not in done:
            done.add(row["image_id"])
            _account(index_of[row["image_id"]], decode(row, len(plan.thresholds)), metrics, skipped)
    todo = [i for i in mine if samples[i].image_id not in done] if done else mine
    chunks = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    bar = progress_bar(len(mine), initial=len(done), enabled=progress if here.is_main else False)
    with bar, run, worker_pool(workers, overlap) as pool:

        def decode_batch(indices: list[int]) -> tuple[list[tuple[int, Sample]], Batch]:
            chunk = [(i, samples[i]) for i in indices]
            also = None if mapping is preprocess else preprocess  # the classifying size, from the same decode
            return chunk, pinned(load_batch([s.path for _, s in chunk], mapping, executor=pool, also=also), method)

        def finish(decoded: tuple[list[tuple[int, Sample]], Batch], maps: _Maps | None) -> None:
            chunk, batch = decoded
            for index, result in _judge(chunk, batch, maps, plan, pool):
                if per_image is not None:
                    run.write(encode(result))
                _account(index, result, metrics, skipped)
            if per_image is not None:
                run.flush()
            bar.update(len(chunk))

        def forward(decoded: tuple[list[tuple[int, Sample]], Batch]) -> _Maps | None:
            chunk, batch = decoded
            return _forward(chunk, batch, method, plan)

        for _ in stages(chunks, decode_batch, forward, finish, overlap=overlap):
            pass
    metrics.sync()
    skipped = sorted((item for part in all_gather(skipped) for item in part), key=lambda t: t[0])
    if per_image is not None and here.distributed:
        position = {s.image_id: i for i, s in enumerate(samples)}
        run.merge(key=lambda row: position[row["image_id"]], expected=len(samples))
    return EvalResult(metrics.compute(), metrics.accuracy_curves(), plan.thresholds.tolist(), [e for _, e in skipped])


def _account(index: int, result: ImageResult, metrics: LocalizationMetrics, skipped: list) -> None:
    if result.outcome is None:
        skipped.append((index, {"image_id": result.image_id, "path": result.path, "error": result.error}))
    else:
        metrics.update(result.outcome)


@dataclass
class _Maps:
    """What the forward pass gives the box work: per image read, its top-5 classes and its maps."""

    samples: list[tuple[int, Sample]]
    top5: torch.Tensor  # (n, 5)
    gt_maps: np.ndarray  # (n, h, w) float64: the labelled class's raw map
    top3: np.ndarray | None  # (n, 3, h, w) float64, for protocols that want the top-3 classes' maps


def _forward(chunk: list[tuple[int, Sample]], batch: Batch, method: MapMethod, plan: BoxProtocol) -> _Maps | None:
    """The maps of ``batch.images``; the classes from ``batch.also`` (the classifying size) where it is there."""
    failed = {e.path for e in batch.errors}
    samples = [(i, s) for i, s in chunk if str(s.path) not in failed]  # batch.paths' order; a file may hold several
    if not samples:
        return None
    out = method(batch.images, classes=torch.tensor([[s.label] for _, s in samples]), upsample=False)
    logits = out.logits if batch.also is None else class_scores(method, batch.also)
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu()
    top3 = None
    if plan.wants_top3:
        top3 = method.more_maps(out, batch.images, top5[:, :3].to(out.logits.device)).double().cpu().numpy()
    gt_maps = plan.gpu_resize(out.raw[:, 0])
    return _Maps(samples, top5, gt_maps.double().cpu().numpy(), top3)


def _judge(
    chunk: list[tuple[int, Sample]], batch: Batch, maps: _Maps | None, plan: BoxProtocol, pool: ThreadPoolExecutor
) -> list[tuple[int, ImageResult]]:
    """Each image's result, in the chunk's order (an unreadable file's with its error)."""
    reasons = {e.path: e.reason for e in batch.errors}
    results = {i: _failed(s, reasons[str(s.path)]) for i, s in chunk if str(s.path) in reasons}
    if maps is not None:

        def judge(k: int) -> ImageResult:  # one image per task (OpenCV and the sweep release the GIL)
            sample, geo = maps.samples[k][1], batch.geometries[k]
            original = sample.size or (geo.width, geo.height)
            top3 = None if maps.top3 is None else maps.top3[k]
            return plan.judge(sample, original, maps.top5[k].tolist(), maps.gt_maps[k], top3)

        for (i, _), result in zip(maps.samples, pool.map(judge, range(len(maps.samples))), strict=True):
            results[i] = result
    return [(i, results[i]) for i, _ in chunk]


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
