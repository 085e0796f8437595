"""Weak labels: a classifier's maps turned into scored boxes, written as COCO, Pascal VOC or YOLO annotations.

Classes. Each image's boxes are of its labelled classes when the data has labels (and
``use_labels``), else of the model's ``topk`` best classes whose probability is at least
``min_score``. An image file is one image of the run however many samples a reader made of it (COCO,
VOC and YOLO give one sample per class of an image): its labelled classes are those samples' classes.

Frames. The box rule (:mod:`camloc.boxes.rules`) runs on each map in one pixel frame and the boxes
are then given in the image file's pixels, whatever the resize mode. ``squash`` (the WSOL protocol,
as ``evaluate``): the raw map resized bicubically to the model's ``size`` x ``size`` input, as
``evaluate`` resizes it, the box then mapped onto the file's pixels it covers. ``full`` and
``crop`` (as ``explain``): the map resampled onto the file's own pixels (NaN outside the window the
model saw in ``crop`` mode).

Score. A box of class ``c`` scores ``p(c) x mean over the box of max(M, 0) / max(M)``: the class's
softmax probability times how much of the box the map fills (:func:`camloc.boxes.rules.box_score`).
An image's boxes are ranked by it.

Quality, when the ground truth is known (the data's own boxes, or ``ground_truth=``). CorLoc: for
labelled classes, the share of (image, labelled class) pairs with a ground-truth box of that class
whose top-scored box of that class has IoU >= 0.5 with one of them; for the model's classes, the
share of images with a ground-truth box whose top-scored box has IoU >= 0.5 with a ground-truth box
of its class. Judged in the frame the rule ran in, the ground truth scaled into it as ``evaluate``
scales it (so ``resize="squash"``, ``rule="paper"`` gives exactly ``evaluate --protocol paper``'s
GT-known localization, which judges each (image, class) sample alike). COCO AP / AP50 / AP75:
pycocotools' COCOeval of every box, in the files' pixels, against the ground truth written as a
COCO file (:func:`camloc.metrics.detection.coco_ap`).

Runs. :func:`export_boxes` writes ``journal.jsonl`` (one line per image, synced after every batch)
as it goes, feeds the writers, and ends with ``summary.json``; ``resume=True`` replays the journal
into fresh writers and goes on, so a killed run ends with the same files as an uninterrupted one.
Unreadable images are listed in the summary and skipped.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..boxes.box import Box, scale_box
from ..boxes.rules import BOX_RULES, box_score, check_rule, rule_boxes
from ..boxes.wsol import wsol_resized, wsol_resized_batch
from ..datasets.base import Dataset, Sample, file_image_id
from ..datasets.coco import write_coco, write_coco_results
from ..datasets.labels import Detection, ImageBoxes, OutputNames
from ..datasets.registry import open_writers
from ..distributed import World, all_gather, all_sum, barrier, rank_file, shard, world
from ..errors import InvalidArgument, OutputExists, ResumeError
from ..images import Batch, Geometry, Preprocess, load_batch
from ..maps.cam import CAM
from ..maps.core import MapMethod
from ..maps.frames import to_image_frame
from ..metrics.detection import CorLoc, coco_ap
from ..metrics.localization import calibrated_threshold
from ..models.info import ModelInfo, model_info
from ..utils import atomic_path, versions, write_json
from ..utils import progress as progress_bar
from . import pipeline
from .evaluate import pinned
from .journal import LineJournal, journal_lines
from .pipeline import background_pool, overlapped

__all__ = [
    "BoxSettings",
    "BoxedImage",
    "BoxesResult",
    "Calibration",
    "boxes_for",
    "calibrate_threshold",
    "export_boxes",
    "threshold_from",
]

log = logging.getLogger(__name__)

SCORE_FORMULA = "p(class) x mean over the box of max(M, 0) / max(M)"


@dataclass(frozen=True)
class BoxSettings:
    """How maps become boxes.

    Attributes:
        rule: a rule of :data:`camloc.boxes.rules.BOX_RULES`.
        threshold: tau of the rule (a fraction of the map's max; of its min-max range for ``wsol``).
        min_area: ``all`` only: the smallest component boxed, as a fraction of the map.
        topk: how many of the model's best classes, for images without a label (or ``use_labels=False``).
        min_score: the smallest class probability boxed, for the model's classes.
        use_labels: box the labelled class of images that have one.
    """

    rule: str = "paper"
    threshold: float = 0.2
    min_area: float = 0.01
    topk: int = 1
    min_score: float = 0.0
    use_labels: bool = True

    def __post_init__(self) -> None:
        check_rule(self.rule, self.threshold, self.min_area)
        if self.topk < 1:
            raise InvalidArgument("topk", f"topk must be at least 1, not {self.topk}")
        if not 0.0 <= self.min_score <= 1.0:
            raise InvalidArgument("min_score", f"min_score must lie in [0, 1], not {self.min_score}")


@dataclass
class BoxedImage:
    """One image of a run: its boxes in the file's pixels, best first, or why it could not be read.

    Attributes:
        index: its position in the run, from 0.
        image_id: the dataset's id of it (its path for plain image lists).
        path: the image file.
        width: its width in pixels, as decoded (0 when unread).
        height: its height.
        detections: its boxes, best first.
        hits: CorLoc's verdicts: one per labelled class of the image that has ground-truth boxes (its
            top box of that class), or, for the model's classes, one on its top box; None without
            ground truth.
        error: why it could not be read ("" when it was).
    """

    index: int
    image_id: str
    path: str
    width: int = 0
    height: int = 0
    detections: list[Detection] = field(default_factory=list)
    hits: list[bool] | None = None
    error: str = ""

    def image_boxes(self) -> ImageBoxes:
        """The boxes as the writers take them."""
        return ImageBoxes(self.index, self.path, self.width, self.height, self.detections)

    def record(self) -> dict:
        """The journal's line."""
        dets = [[d.label, *d.box, d.score] for d in self.detections]
        return {"i": self.index, "id": self.image_id, "p": self.path, "w": self.width, "h": self.height,
                "d": dets, "hits": self.hits, "e": self.error}  # fmt: skip

    @classmethod
    def from_record(cls, r: dict) -> BoxedImage:
        """The image a journal line records."""
        dets = [Detection(int(d[0]), (int(d[1]), int(d[2]), int(d[3]), int(d[4])), float(d[5])) for d in r["d"]]
        hits = r["hits"] if "hits" in r else None if r.get("hit") is None else [r["hit"]]  # "hit": older journals
        return cls(r["i"], r["id"], r["p"], r["w"], r["h"], dets, hits, r["e"])


@dataclass
class BoxesResult:
    """What a run of :func:`export_boxes` gave: its summary, the images it skipped, the files it wrote."""

    summary: dict
    skipped: list[dict]
    files: dict[str, str]


@dataclass
class Calibration:
    """The threshold chosen on labelled data: the one of highest CorLoc (the middle one on ties).

    ``images``: how many verdicts CorLoc counted (images, or image-class pairs where an image has
    labelled boxes of several classes).
    """

    threshold: float
    corloc: float | None
    images: int
    thresholds: list[float]
    curve: list[float]  # CorLoc (percent) at each threshold


@dataclass
class _Item:
    """One image file of a run: the dataset's samples of one file (one per labelled class) become one item."""

    index: int
    sample: Sample  # the file's first sample: its path and size
    image_id: str
    labels: list[int]  # its labelled classes, in the dataset's order (none: unlabelled)
    truths: list[tuple[int, Box]]  # the ground truth's (class, box), in the frame of sample.size


# --------------------------------------------------------------------------------------------
# the run


def _items(source: Dataset | Sequence[str | os.PathLike], ground_truth: Dataset | None) -> list[_Item]:
    """One item per image file, in the order the files first appear.

    Readers give an image with boxes of several classes as one sample per class (COCO, VOC, YOLO):
    those samples become one item, so that each file gets one set of output files holding every class.
    """
    if isinstance(source, Dataset):
        samples = list(source.samples)
    else:
        samples = [Sample(str(p), Path(p), -1, (), None) for p in source]
    files: dict[str, list[Sample]] = {}
    for s in samples:
        files.setdefault(str(s.path), []).append(s)
    truths: dict[Path, list[tuple[int, Box]]] = {}
    for s in ground_truth.samples if ground_truth is not None else ():
        truths.setdefault(Path(s.path).resolve(), []).extend((s.label, b) for b in s.boxes)
    items = []
    for i, group in enumerate(files.values()):
        first = group[0]
        labels = list(dict.fromkeys(s.label for s in group if s.label >= 0))
        if ground_truth is None:
            own = [(s.label, b) for s in group for b in s.boxes]
        else:
            own = truths.get(Path(first.path).resolve(), [])
        items.append(_Item(i, first, file_image_id(group), labels, own))
    return items


def _decoded(
    chunk: list[_Item], preprocess: Preprocess, pool: ThreadPoolExecutor
) -> tuple[list[tuple[list[_Item], Batch]], list[tuple[_Item, str]]]:
    """A chunk's decoded batches (one per input shape in ``full`` mode) and the items that could not be read."""
    if preprocess.mode != "full":
        batch = load_batch([it.sample.path for it in chunk], preprocess, executor=pool)
        singles = [(batch, chunk)]
    else:  # images of other shapes cannot share a tensor: decode one by one, then stack each shape's
        singles = [
            (load, [it])
            for load, it in zip(
                pool.map(lambda it: load_batch([it.sample.path], preprocess), chunk), chunk, strict=True
            )
        ]
    failed: list[tuple[_Item, str]] = []
    groups: dict[tuple, tuple[list[_Item], list[Batch]]] = {}
    for batch, items in singles:
        reasons = {e.path: e.reason for e in batch.errors}
        failed += [(it, reasons[str(it.sample.path)]) for it in items if str(it.sample.path) in reasons]
        good = [it for it in items if str(it.sample.path) not in reasons]  # in the order of batch.paths
        if good:
            group = groups.setdefault(tuple(batch.images.shape[1:]), ([], []))
            group[0].extend(good)
            group[1].append(batch)
    out = []
    for items, batches in groups.values():
        if len(batches) == 1:  # squash and crop: the chunk's one batch (a copy of it would cost ~0.2 ms an image)
            out.append((items, batches[0]))
            continue
        merged = Batch(
            torch.cat([b.images for b in batches]),
            [p for b in batches for p in b.paths],
            [g for b in batches for g in b.geometries],
            [],
        )
        out.append((items, merged))
    return out, failed


def _maps(
    items: list[_Item], batch: Batch, method: MapMethod, settings: BoxSettings, preprocess: Preprocess
) -> list[tuple[list[int], list[float], torch.Tensor, bool]]:
    """Per image: the classes to box, their probabilities, their maps ``Tensor[k, h, w]``, and whether labelled.

    Labelled: the classes are the image's labelled classes (else the model's best).

    On a GPU the maps are resized there: to the model's square for ``squash`` (then on the CPU), and
    for the whole photo they stay on the GPU for :func:`_frames`; on the CPU they are the raw maps.
    """
    labelled = settings.use_labels and all(it.labels for it in items)
    if labelled:  # one tensor of classes: an image with fewer labels repeats its last (its maps are dropped below)
        k = max(len(it.labels) for it in items)
        wanted = [it.labels + it.labels[-1:] * (k - len(it.labels)) for it in items]
        out = method(batch.images, classes=wanted, upsample=False)
    else:
        out = method(batch.images, topk=settings.topk, upsample=False)
    raw = out.raw.detach().float()
    if raw.device.type == "cuda" and preprocess.mode == "squash":  # _frames' resize of a map that size is a copy
        side = preprocess.size
        raw = wsol_resized_batch(raw.flatten(0, 1), (side, side)).view(*raw.shape[:2], side, side)
    if preprocess.mode == "squash" or raw.device.type != "cuda":
        raw = raw.cpu()
    per_image = []
    for it, classes, probs, maps in zip(items, out.classes.cpu().tolist(), out.scores.cpu().tolist(), raw, strict=True):
        if labelled:
            keep = list(range(len(it.labels)))
        else:
            keep = [j for j, p in enumerate(probs) if p >= settings.min_score]
        per_image.append(([classes[j] for j in keep], [probs[j] for j in keep], maps[keep], labelled))
    return per_image


@dataclass
class _Frames:
    """One image's maps in the frame its rule runs in, and how that frame maps onto the file's pixels."""

    maps: list[np.ndarray]
    size: tuple[int, int]  # (width, height) of the frame
    to_file: Callable[[Box], Box]


def _frames(raw: torch.Tensor, geo: Geometry, preprocess: Preprocess) -> _Frames:
    """``raw``: ``Tensor[k, h, w]`` of one image."""
    if preprocess.mode == "squash":  # as evaluate: float64 bicubic (OpenCV) onto the model's square
        side = (preprocess.size, preprocess.size)
        return _Frames([wsol_resized(m, side) for m in raw.double().numpy()], side, geo.box_to_original)
    maps = to_image_frame(raw, geo).cpu().numpy() if len(raw) else np.empty((0, geo.height, geo.width), np.float32)
    return _Frames(list(maps), (geo.width, geo.height), lambda b: b)


def _ranked(
    frames: _Frames, classes: list[int], probs: list[float], settings: BoxSettings
) -> list[tuple[float, int, Box]]:
    """``(score, class, frame box)`` of every box the rule draws, best first."""
    found = [
        (p * box_score(m, b), c, b)
        for c, p, m in zip(classes, probs, frames.maps, strict=True)
        for b in rule_boxes(m, settings.rule, settings.threshold, settings.min_area)
    ]
    return sorted(found, key=lambda t: -t[0])


def _truths_in(item: _Item, geo: Geometry, frame_size: tuple[int, int]) -> list[tuple[int, Box]]:
    """The item's ground truth in the rule's frame, scaled as ``evaluate`` scales it."""
    original = item.sample.size or (geo.width, geo.height)
    return [(c, scale_box(b, original, frame_size)) for c, b in item.truths]


def _verdicts(
    found: list[tuple[float, int, Box]], truths: list[tuple[int, Box]], labels: list[int] | None
) -> list[bool] | None:
    """CorLoc's verdicts on an image's ranked boxes (None without ground truth).

    ``labels``: the image's labelled classes, each judged by its own top box against the ground
    truth of its class (so an image labelled with one class is judged as ``evaluate`` judges it);
    None: the model's classes, the image's top box judged once.
    """
    if labels is None:
        hit = CorLoc.hit([(c, b) for _, c, b in found], truths)
        return None if hit is None else [hit]
    verdicts = []
    for label in labels:
        hit = CorLoc.hit([(c, b) for _, c, b in found if c == label], [t for t in truths if t[0] == label])
        if hit is not None:
            verdicts.append(hit)
    return verdicts or None


Work = Callable[[_Item, _Frames, list[int], list[float], Geometry, bool], object]


def _iterate(
    items: list[_Item],
    method: MapMethod,
    preprocess: Preprocess,
    settings: BoxSettings,
    work: Work,
    failure: Callable[[_Item, str], object],
    *,
    batch_size: int,
    pool: ThreadPoolExecutor,
    consume: Callable[[list], None] | None = None,
    overlap: bool = True,
) -> Iterator[list]:
    """Per chunk of ``batch_size`` items, in order: ``work``'s result per image read, ``failure``'s per image not.

    Decoding and ``work`` (maps onto frames, boxes) run in ``pool``'s threads, beside the forward pass
    of the next chunk (:func:`~camloc.evaluation.pipeline.overlapped`); ``consume`` is called with each
    chunk's results in the same background thread, in order (writing files there keeps them off the
    forward pass's path).
    """

    def decode(chunk: list[_Item]):
        groups, failed = _decoded(chunk, preprocess, pool)
        return [(items, pinned(batch, method)) for items, batch in groups], failed

    def forward(decoded) -> list:
        return [_maps(group, batch, method, settings, preprocess) for group, batch in decoded[0]]

    def finish(decoded, chosen_per_group: list) -> list:
        groups, failed = decoded
        results = [(it.index, failure(it, reason)) for it, reason in failed]
        for (group, batch), chosen in zip(groups, chosen_per_group, strict=True):

            def one(i: int, group=group, batch=batch, chosen=chosen) -> tuple[int, object]:
                classes, probs, raw, labelled = chosen[i]
                geo = batch.geometries[i]
                return group[i].index, work(group[i], _frames(raw, geo, preprocess), classes, probs, geo, labelled)

            results += pool.map(one, range(len(group)))
        ordered = [r for _, r in sorted(results, key=lambda t: t[0])]
        if consume is not None:
            consume(ordered)
        return ordered

    chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    if overlap:
        yield from overlapped(chunks, decode, forward, finish, nice=pipeline.BACKGROUND)
    else:
        for chunk in chunks:
            decoded = decode(chunk)
            yield finish(decoded, forward(decoded))


def _boxed(settings: BoxSettings) -> tuple[Work, Callable[[_Item, str], BoxedImage]]:
    def work(
        item: _Item, frames: _Frames, classes: list[int], probs: list[float], geo: Geometry, labelled: bool
    ) -> BoxedImage:
        found = _ranked(frames, classes, probs, settings)
        hits = _verdicts(found, _truths_in(item, geo, frames.size), item.labels if labelled else None)
        detections = [Detection(c, frames.to_file(b), s) for s, c, b in found]
        return BoxedImage(item.index, item.image_id, str(item.sample.path), geo.width, geo.height, detections, hits)

    def failure(item: _Item, reason: str) -> BoxedImage:
        return BoxedImage(item.index, item.image_id, str(item.sample.path), error=reason)

    return work, failure


def _method_info(method: MapMethod | nn.Module, info: ModelInfo | None) -> tuple[MapMethod, ModelInfo]:
    """A method and the model's info: a bare model gets CAM, and the info ``load_model`` attached to it."""
    if isinstance(method, nn.Module):
        method = CAM(method)
    return method, info if info is not None else model_info(method.model)


def boxes_for(
    source: Dataset | Sequence[str | os.PathLike],
    method: MapMethod | nn.Module,
    info: ModelInfo | None = None,
    settings: BoxSettings | None = None,
    *,
    preprocess: Preprocess | None = None,
    ground_truth: Dataset | None = None,
    batch_size: int = 16,
    workers: int = 2,
) -> list[BoxedImage]:
    """The scored boxes of every image, in memory (for a run that writes files, see :func:`export_boxes`).

    Args:
        source: a dataset (its labels choose the classes when ``settings.use_labels``) or image files.
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        info: the model's preprocessing (and class names); default: what ``load_model`` attached to it.
        settings: the rule, its threshold and the class choice (default :class:`BoxSettings`).
        preprocess: default ``info.preprocess`` in ``full`` mode (the whole photo); its ``mode`` sets the rule's
            frame (see the module docstring).
        ground_truth: boxes to judge CorLoc by (default: the dataset's own).
        batch_size: images per forward pass.
        workers: threads for decoding and box work.

    Returns:
        One :class:`BoxedImage` per image file, in the order the files first appear (a dataset's
        samples of one file, one per class, are one image; unreadable files with their ``error``).
    """
    settings = settings or BoxSettings()
    method, info = _method_info(method, info)
    work, failure = _boxed(settings)
    items = _items(source, ground_truth)
    with background_pool(workers, pipeline.BACKGROUND) as pool:
        chunks = _iterate(
            items,
            method,
            preprocess or info.preprocess.with_mode("full"),
            settings,
            work,
            failure,
            batch_size=batch_size,
            pool=pool,
        )
        return [r for chunk in chunks for r in chunk]


def export_boxes(
    source: Dataset | Sequence[str | os.PathLike],
    method: MapMethod | nn.Module,
    info: ModelInfo | None,
    out_dir: str | os.PathLike,
    settings: BoxSettings | None = None,
    *,
    formats: Sequence[str] = ("coco",),
    preprocess: Preprocess | None = None,
    ground_truth: Dataset | None = None,
    batch_size: int = 32,
    workers: int = 2,
    resume: bool = False,
    link_images: bool = True,
    ap: bool = True,
    config: dict | None = None,
    progress: bool | None = None,
) -> BoxesResult:
    """Write every image's boxes as annotation files under ``out_dir``, streaming and resumably.

    Args:
        source: a dataset or image files, as for :func:`boxes_for`.
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        info: the model's preprocessing and class names (None: what ``load_model`` attached to the model).
        settings: the rule, its threshold and the class choice (default :class:`BoxSettings`).
        preprocess: default ``info.preprocess`` in ``full`` mode (the whole photo).
        ground_truth: boxes to judge CorLoc and COCO AP by (default: the dataset's own).
        batch_size: images per forward pass.
        workers: threads for decoding and box work.
        out_dir: gets ``journal.jsonl``, ``summary.json`` and a folder per format.
        formats: names of :data:`camloc.datasets.BOX_FORMATS`.
        resume: continue the run recorded in ``out_dir/journal.jsonl``.
        link_images: give each format's folder links to the images.
        ap: score COCO AP when the ground truth is known (pycocotools; about 1.5 ms an image on ImageNet).
        config: more settings that a resumed run must share (model, data, ...), recorded in the summary.
        progress: show a progress bar (None: when stderr is a terminal).

    Returns:
        The summary (also in ``summary.json``), the skipped images, and the files written.
    """
    settings = settings or BoxSettings()
    method, info = _method_info(method, info)
    pre = preprocess or info.preprocess.with_mode("full")
    out = Path(out_dir)
    class_names = None if info.class_names is None else list(info.class_names)
    header = {**asdict(settings), "formats": list(dict.fromkeys(formats)), "resize": pre.mode, "size": pre.size,
              "resize_size": pre.resize_size, "link_images": link_images, **(config or {})}  # fmt: skip
    here = world()
    journal_path = rank_file(out / "journal.jsonl", here)
    journal_header = {**header, "rank": here.rank, "world_size": here.size} if here.distributed else header
    if not resume and any(_written(p) for p in {out / "journal.jsonl", journal_path}):
        raise OutputExists(
            f"{out / 'journal.jsonl'}: exists; pass resume=True to continue that run, or choose another out_dir"
        )
    done = {
        json.loads(line)["i"] for line in journal_lines(journal_path, "boxes", journal_header)
    } if resume and _written(journal_path) else set()  # fmt: skip
    items = _items(source, ground_truth)
    names = OutputNames()
    file_names = [names(it.sample.path) for it in items]  # over all images: no two processes share a name
    mine = shard(items, here)
    todo = [it for it in mine if it.index not in done]
    work, failure = _boxed(settings)
    # The images' own files are written as they are boxed, each by the process boxing it; the files of
    # the whole set (COCO's JSON, VOC's list, data.yaml, the summary) by rank 0 at the end, from the journals.
    writers = open_writers(formats, out, class_names, link_images=link_images, whole_set=False)
    bar = progress_bar(len(mine), initial=len(done), enabled=progress if here.is_main else False)
    with (
        bar,
        LineJournal(journal_path, "boxes", journal_header) as journal,
        background_pool(workers, pipeline.BACKGROUND) as pool,
    ):

        def consume(images: list[BoxedImage]) -> None:
            for image in images:
                if not image.error:  # files first: a journal line says they are complete
                    boxes = image.image_boxes()
                    for writer in writers:
                        writer.write(boxes, file_names[image.index])
                journal.write(image.record())
            journal.flush()
            bar.update(len(images))

        for _ in _iterate(
            todo, method, pre, settings, work, failure, batch_size=batch_size, pool=pool, consume=consume
        ):
            pass
    barrier()
    result = None
    if here.is_main:
        result = _finish_run(out, header, items, file_names, here.size, formats, class_names, link_images, ap)
    return all_gather(result)[0]


def _written(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _journal_records(out: Path, header: dict, size: int) -> Iterator[BoxedImage]:
    """The images every rank's journal records, in the run's order (rank r has the images r, r + size, ...)."""
    if size == 1:
        return (
            BoxedImage.from_record(json.loads(line)) for line in journal_lines(out / "journal.jsonl", "boxes", header)
        )
    parts = [
        (
            json.loads(line)
            for line in journal_lines(
                rank_file(out / "journal.jsonl", World(r, size)), "boxes", {**header, "rank": r, "world_size": size}
            )
        )
        for r in range(size)
    ]
    return (BoxedImage.from_record(r) for r in heapq.merge(*parts, key=lambda r: r["i"]))


def _finish_run(
    out: Path,
    header: dict,
    items: list[_Item],
    file_names: list[str],
    size: int,
    formats: Sequence[str],
    class_names: list[str] | None,
    link_images: bool,
    ap: bool,
) -> BoxesResult:
    """The whole set's files, from the journals: COCO's JSON, VOC's list, data.yaml, the quality and summary.json."""
    corloc, counts, skipped = CorLoc(), {"images": 0, "images_with_boxes": 0, "boxes": 0, "gt_images": 0}, []
    finals = open_writers(formats, out, class_names, link_images=link_images, per_image=False)
    if size > 1:  # one journal, as a single process writes it
        with atomic_path(out / "journal.jsonl") as tmp, LineJournal(tmp, "boxes", header) as merged:
            for image in _journal_records(out, header, size):
                merged.write(image.record())
        for r in range(size):
            rank_file(out / "journal.jsonl", World(r, size)).unlink()
    seen = 0
    for image in _journal_records(out, header, 1):
        seen += 1
        if image.error:
            skipped.append({"image_id": image.image_id, "path": image.path, "error": image.error})
            continue
        counts["images"] += 1
        counts["images_with_boxes"] += int(bool(image.detections))
        counts["boxes"] += len(image.detections)
        counts["gt_images"] += int(bool(image.hits))
        for hit in image.hits or ():
            corloc.update(hit)
        boxes = image.image_boxes()
        for writer in finals:
            writer.write(boxes, file_names[image.index])
    if seen != len(items):
        raise ResumeError(f"{out / 'journal.jsonl'}: records {seen} images of {len(items)}; the run is not complete")
    for writer in finals:
        writer.close()
    files = {w.format: str(w.out_dir) for w in finals}
    coco = next((w.out_dir for w in finals if w.format == "coco"), None)
    quality = (
        _quality(out, header, items, file_names, class_names, coco) if ap else dict.fromkeys(("ap", "ap50", "ap75"))
    )
    summary = {**counts, "corloc_verdicts": int(corloc.images), "corloc": corloc.compute(), **quality}
    files["summary"] = str(write_json({"settings": header, "score": SCORE_FORMULA, **summary, "skipped": skipped,
                                       "files": files, "versions": versions()}, out / "summary.json"))  # fmt: skip
    return BoxesResult(summary, skipped, files)


def _quality(
    out: Path, header: dict, items: list[_Item], file_names: list[str], class_names: list[str] | None, coco: Path | None
) -> dict:
    """COCO AP, AP50, AP75 of the journal's boxes against the items' ground truth (None without any).

    ``coco``: the folder where the run's ``results.json`` is, and where ``ground_truth.json`` goes
    (None: both are written to a scratch folder).
    """
    if not any(it.truths for it in items):
        return {"ap": None, "ap50": None, "ap75": None}

    def images() -> Iterator[BoxedImage]:
        return (image for image in _journal_records(out, header, 1) if not image.error)

    def truths() -> Iterable[tuple[ImageBoxes, str]]:
        for image in images():
            item = items[image.index]
            size = item.sample.size or (image.width, image.height)
            boxes = [Detection(c, scale_box(b, size, (image.width, image.height))) for c, b in item.truths]
            yield (
                ImageBoxes(image.index, Path(image.path), image.width, image.height, boxes),
                file_names[image.index] + Path(image.path).suffix,
            )

    if class_names is None:
        top = max((c for it in items for c, _ in it.truths), default=0)
        top = max([top, *(d.label for image in images() for d in image.detections)])
        class_names = [str(i) for i in range(top + 1)]
    with tempfile.TemporaryDirectory() as scratch:
        where = coco or Path(scratch)
        gt = write_coco(where / "ground_truth.json", truths, class_names, scores=False, description="ground truth")
        if coco is None:
            write_coco_results(where / "results.json", (image.image_boxes() for image in images()))
        return coco_ap(gt, where / "results.json")


def threshold_from(path: str | os.PathLike) -> tuple[float, str]:
    """``(threshold, rule)`` recorded in a results file.

    ``evaluate --protocol wsol``'s results JSON gives its best threshold (MaxBoxAcc's) with the rule
    it was found with, ``wsol``; the ``summary.json`` of a ``boxes`` run gives its rule and threshold.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument("threshold_from", f"threshold_from={path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidArgument("threshold_from", f"threshold_from={path}: not a JSON file") from None
    if isinstance(data, dict) and data.get("protocol") == "wsol" and isinstance(data.get("best_threshold"), float):
        return data["best_threshold"], "wsol"
    settings = data.get("settings") if isinstance(data, dict) else None
    if isinstance(settings, dict) and settings.get("rule") in BOX_RULES and "threshold" in settings:
        return float(settings["threshold"]), settings["rule"]
    raise InvalidArgument(
        "threshold_from",
        f"threshold_from={path}: holds no threshold (expected camloc evaluate --protocol wsol's results JSON, "
        "or the summary.json of camloc boxes)",
    )


def calibrate_threshold(
    dataset: Dataset,
    method: MapMethod | nn.Module,
    info: ModelInfo | None = None,
    settings: BoxSettings | None = None,
    *,
    step: float = 0.01,
    preprocess: Preprocess | None = None,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool | None = None,
) -> Calibration:
    """The threshold of ``settings.rule`` with the highest CorLoc on a labelled dataset with boxes.

    Where several thresholds share the highest CorLoc (a small set gives flat tops), the middle one
    of them (:func:`camloc.metrics.localization.calibrated_threshold`, as ``evaluate`` calibrates).

    Every image's maps are computed once and boxed at each threshold of ``np.arange(0, 1, step)``,
    with the classes ``settings`` chooses, in the frame ``preprocess`` gives, as :func:`export_boxes`
    would box them.
    """
    settings = settings or BoxSettings()
    method, info = _method_info(method, info)
    if settings.rule == "authors":
        raise InvalidArgument(
            "rule", "the authors rule has fixed thresholds (20, 100, 110 of 255): nothing to calibrate"
        )
    if not 0 < step <= 0.5:
        raise InvalidArgument("step", f"step must lie in (0, 0.5], not {step}")
    thresholds = np.arange(0, 1, step)
    items = [it for it in _items(dataset, None) if it.truths]
    if not items:
        raise InvalidArgument("calibrate", f"calibrate: {dataset.name} has no image with a ground-truth box")
    items = shard(items)  # under torchrun each process boxes its share; the hits are added up

    def work(
        item: _Item, frames: _Frames, classes: list[int], probs: list[float], geo: Geometry, labelled: bool
    ) -> tuple[np.ndarray, int]:
        """Per threshold, how many of the image's verdicts are hits; and how many verdicts it has."""
        truths = _truths_in(item, geo, frames.size)
        hits, judged = np.zeros(len(thresholds), dtype=np.int64), 0
        for k, tau in enumerate(thresholds):
            at = BoxSettings(
                settings.rule, float(tau), settings.min_area, settings.topk, settings.min_score, settings.use_labels
            )
            verdicts = _verdicts(_ranked(frames, classes, probs, at), truths, item.labels if labelled else None) or []
            hits[k], judged = sum(verdicts), len(verdicts)
        return hits, judged

    total, read = np.zeros(len(thresholds), dtype=np.int64), 0
    pre = preprocess or info.preprocess.with_mode("full")
    bar = progress_bar(len(items), desc="calibrating", enabled=progress)
    with bar, background_pool(workers, pipeline.BACKGROUND) as pool:
        for chunk in _iterate(
            items, method, pre, settings, work, lambda it, why: None, batch_size=batch_size, pool=pool
        ):
            for result in chunk:
                if result is not None:
                    total += result[0]
                    read += result[1]
            bar.update(len(chunk))
    sums = all_sum({"hits": total, "read": read})
    total, read = sums["hits"], int(sums["read"])
    if read == 0:
        raise InvalidArgument("calibrate", f"calibrate: no image of {dataset.name} could be read")
    curve = (total * 100.0 / read).tolist()
    best = calibrated_threshold(curve, thresholds)  # the middle of a flat top, as evaluate's calibration
    return Calibration(best, max(curve), read, thresholds.tolist(), curve)
