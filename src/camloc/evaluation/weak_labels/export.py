"""Weak-labels runs: every image boxed in batches, in memory or written as annotation files resumably.

:func:`boxes_for` returns each image's scored boxes (:class:`~.boxing.BoxedImage`);
:func:`export_boxes` writes them as COCO, Pascal VOC or YOLO annotations.

Runs. :func:`export_boxes` writes ``journal.jsonl`` (one line per image, synced after every batch)
as it goes, feeds the writers, and ends with ``summary.json``; ``resume=True`` replays the journal
into fresh writers and goes on, so a killed run ends with the same files as an uninterrupted one.
Unreadable images are listed in the summary and skipped. Under torchrun each process boxes its share
of the images into a journal of its own; rank 0 merges them into one at the end.

Quality, when the ground truth is known (the data's own boxes, or ``ground_truth=``). CorLoc: for
labelled classes, the share of (image, labelled class) pairs with a ground-truth box of that class
whose top-scored box of that class has IoU >= 0.5 with one of them; for the model's classes, the
share of images with a ground-truth box whose top-scored box has IoU >= 0.5 with a ground-truth box
of its class (:func:`~.boxing.corloc_verdicts`; so ``resize="squash"``, ``rule="paper"`` gives exactly
``evaluate --protocol paper``'s GT-known localization, which judges each (image, class) sample alike).
COCO AP / AP50 / AP75: pycocotools' COCOeval of every box, in the files' pixels, against the ground
truth written as a COCO file (:func:`camloc.metrics.detection.coco_ap`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from ...boxes.box import scale_box
from ...datasets.base import Dataset
from ...datasets.coco import write_coco, write_coco_results
from ...datasets.labels import BoxWriter, Detection, ImageBoxes, OutputNames
from ...datasets.registry import open_writers
from ...distributed import all_gather, shard, world
from ...errors import ResumeError
from ...images import Preprocess
from ...maps.core import MapMethod
from ...metrics.detection import CorLoc, coco_ap
from ...models.info import ModelInfo
from ...utils import progress as progress_bar
from ...utils import versions, write_json
from ..run import Run, legacy_arguments, method_info, pinned, stages, worker_pool
from .boxing import (
    SCORE_FORMULA,
    BoxedImage,
    BoxSettings,
    Work,
    box_work,
    class_maps,
    decode_chunk,
    frame_for,
)
from .items import Item, image_items, val_split

__all__ = ["BoxesResult", "boxes_for", "export_boxes", "run_chunks"]


@dataclass
class BoxesResult:
    """What a run of :func:`export_boxes` gave: its summary, the images it skipped, the files it wrote."""

    summary: dict
    skipped: list[dict]
    files: dict[str, str]


def run_chunks(
    items: list[Item],
    method: MapMethod,
    preprocess: Preprocess,
    settings: BoxSettings,
    work: Work,
    failure: Callable[[Item, str], object],
    *,
    batch_size: int,
    pool: ThreadPoolExecutor,
    consume: Callable[[list], None] | None = None,
    overlap: bool = True,
) -> Iterator[list]:
    """Per chunk of ``batch_size`` items, in order: ``work``'s result per image read, ``failure``'s per image not.

    Decoding and ``work`` (maps onto frames, boxes) run in ``pool``'s threads, beside the forward pass
    of the next chunk (:func:`~camloc.evaluation.run.stages`); ``consume`` is called with each
    chunk's results in the same background thread, in order (writing files there keeps them off the
    forward pass's path).
    """
    frame = frame_for(preprocess)

    def decode(chunk: list[Item]):
        groups, failed = decode_chunk(chunk, preprocess, pool)
        return [(items, pinned(batch, method)) for items, batch in groups], failed

    def forward(decoded) -> list:
        return [class_maps(group, batch, method, settings, frame) for group, batch in decoded[0]]

    def finish(decoded, chosen_per_group: list) -> list:
        groups, failed = decoded
        results = [(it.index, failure(it, reason)) for it, reason in failed]
        for (group, batch), chosen in zip(groups, chosen_per_group, strict=True):

            def one(i: int, group=group, batch=batch, chosen=chosen) -> tuple[int, object]:
                classes, probs, raw, labelled = chosen[i]
                geo = batch.geometries[i]
                return group[i].index, work(group[i], frame.place(raw, geo), classes, probs, geo, labelled)

            results += pool.map(one, range(len(group)))
        ordered = [r for _, r in sorted(results, key=lambda t: t[0])]
        if consume is not None:
            consume(ordered)
        return ordered

    chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
    yield from stages(chunks, decode, forward, finish, overlap=overlap)


def boxes_for(
    source: Dataset | Sequence[str | os.PathLike],
    method: MapMethod | nn.Module,
    *legacy: Any,
    info: ModelInfo | None = None,
    preprocess: Preprocess | None = None,
    settings: BoxSettings | None = None,
    ground_truth: Dataset | None = None,
    batch_size: int = 16,
    workers: int = 2,
) -> list[BoxedImage]:
    """The scored boxes of every image, in memory (for a run that writes files, see :func:`export_boxes`).

    Args:
        source: a dataset (its labels choose the classes when ``settings.use_labels``) or image files.
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        *legacy: camloc 0.2's positional ``info, settings``: ``boxes_for(source, method, info)`` still works.
        info: the model's preprocessing (and class names); default: what ``load_model`` attached to it.
        preprocess: default ``info.preprocess`` in ``full`` mode (the whole photo); its ``mode`` sets the rule's
            frame (see :mod:`camloc.evaluation.weak_labels.boxing`).
        settings: the rule, its threshold and the class choice (default: the paper rule at ``info.paper_threshold``).
        ground_truth: boxes to judge CorLoc by (default: the dataset's own).
        batch_size: images per forward pass.
        workers: threads for decoding and box work.

    Returns:
        One :class:`BoxedImage` per image file, in the order the files first appear (a dataset's
        samples of one file, one per class, are one image; unreadable files with their ``error``).
    """
    if legacy:  # camloc 0.2's boxes_for(source, method, info, settings)
        info, settings = legacy_arguments("boxes_for", legacy, {"info": info, "settings": settings})
    method, info = method_info(method, info)
    settings = settings or BoxSettings(threshold=info.paper_threshold)
    work, failure = box_work(settings)
    items = image_items(source, ground_truth)
    with worker_pool(workers) as pool:
        chunks = run_chunks(
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
    *legacy: Any,
    info: ModelInfo | None = None,
    preprocess: Preprocess | None = None,
    out_dir: str | os.PathLike | None = None,
    settings: BoxSettings | None = None,
    formats: Sequence[str] = ("coco",),
    ground_truth: Dataset | None = None,
    batch_size: int = 32,
    workers: int = 2,
    resume: bool = False,
    images: str = "link",
    val_fraction: float = 0.1,
    seed: int = 0,
    link_images: bool | None = None,
    ap: bool = True,
    class_name: str | None = None,
    config: dict | None = None,
    progress: bool | None = None,
) -> BoxesResult:
    """Write every image's boxes as annotation files under ``out_dir``, streaming and resumably.

    Args:
        source: a dataset or image files, as for :func:`boxes_for`.
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        *legacy: camloc 0.2's positional ``info, out_dir, settings`` (``export_boxes(source, method, info, out)``).
        info: the model's preprocessing and class names (None: what ``load_model`` attached to the model).
        preprocess: default ``info.preprocess`` in ``full`` mode (the whole photo).
        out_dir: gets ``journal.jsonl``, ``summary.json`` and a folder per format (required).
        settings: the rule, its threshold and the class choice (default: the paper rule at ``info.paper_threshold``).
        formats: names of :data:`camloc.datasets.BOX_FORMATS`.
        ground_truth: boxes to judge CorLoc and COCO AP by (default: the dataset's own).
        batch_size: images per forward pass.
        workers: threads for decoding and box work.
        resume: continue the run recorded in ``out_dir/journal.jsonl``.
        images: how each format's folder holds the images: ``link`` (relative where the data is on the
            output's filesystem), ``copy``, or ``none`` (:func:`camloc.datasets.labels.place_image`).
        val_fraction: the share of images in ``val`` (:func:`~.items.val_split`; 0: all in ``train``).
        seed: chooses the ``val`` images.
        link_images: camloc 0.2's switch: False means ``images="none"``.
        ap: score COCO AP when the ground truth is known (pycocotools; about 1.5 ms an image on ImageNet).
        class_name: write every box as this one class (``"bird"``); COCO AP is then scored as one class.
        config: more settings that a resumed run must share (model, data, ...), recorded in the summary.
        progress: show a progress bar (None: when stderr is a terminal).

    Returns:
        The summary (also in ``summary.json``), the skipped images, and the files written.
    """
    if legacy:  # camloc 0.2's export_boxes(source, method, info, out_dir, settings)
        given = {"info": info, "out_dir": out_dir, "settings": settings}
        info, out_dir, settings = legacy_arguments("export_boxes", legacy, given)
    if out_dir is None:
        raise TypeError("export_boxes() needs out_dir=, the folder to write the annotations in")
    images = "none" if link_images is False else images
    method, info = method_info(method, info)
    settings = settings or BoxSettings(threshold=info.paper_threshold)
    pre = preprocess or info.preprocess.with_mode("full")
    out = Path(out_dir)
    class_names, written = _output_classes(info, class_name)
    header = _header(settings, formats, pre, images=images, val_fraction=val_fraction, seed=seed,
                     class_name=class_name, config=config)  # fmt: skip
    here = world()
    items = image_items(source, ground_truth)
    file_names, splits = _names_and_splits(items, val_fraction, seed)
    run = Run(out / "journal.jsonl", "boxes", header, resume=resume, exists_hint="choose another out_dir")
    done = {record["i"] for record in run.done()}
    mine = shard(items, here)
    todo = [it for it in mine if it.index not in done]
    work, failure = box_work(settings)
    # Each image's files as it is boxed, by its process; the whole set's (COCO, data.yaml, ...) by rank 0, at the end.
    writers = open_writers(formats, out, class_names, images=images, whole_set=False)
    bar = progress_bar(len(mine), initial=len(done), enabled=progress if here.is_main else False)
    with bar, run, worker_pool(workers) as pool:

        def consume(images: list[BoxedImage]) -> None:
            for image in images:
                if not image.error:  # files first: a journal line says they are complete
                    boxes = written(image.image_boxes())
                    for writer in writers:
                        writer.write(boxes, file_names[image.index], splits[image.index])
                run.write(image.record())
            run.flush()
            bar.update(len(images))

        for _ in run_chunks(
            todo, method, pre, settings, work, failure, batch_size=batch_size, pool=pool, consume=consume
        ):
            pass
    run.merge(key=lambda record: record["i"], expected=len(items))  # under torchrun: one journal, on rank 0
    result = None
    if here.is_main:

        def journal() -> Iterator[BoxedImage]:
            return (BoxedImage.from_record(record) for record in run.records())

        finals = open_writers(formats, out, class_names, images=images, per_image=False)
        result = _finish_run(out, header, journal, items, file_names, splits, finals, class_names, ap, written)
    return all_gather(result)[0]


def _header(settings: BoxSettings, formats: Sequence[str], pre: Preprocess, **more: Any) -> dict:
    """The run's settings, as its journal and summary record them (a resumed run must share them)."""
    config, class_name = more.pop("config") or {}, more.pop("class_name")
    return {**asdict(settings), "formats": list(dict.fromkeys(formats)), "resize": pre.mode, "size": pre.size,
            "resize_size": pre.resize_size, **more, **({"class_name": class_name} if class_name is not None else {}),
            **config}  # fmt: skip


def _names_and_splits(items: list[Item], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Each image's output name and split, over all images: no two processes share a name, all agree on splits."""
    names = OutputNames()
    file_names = [names(it.sample.path) for it in items]
    return file_names, val_split(file_names, val_fraction, seed)


def _finish_run(
    out: Path,
    header: dict,
    journal: Callable[[], Iterator[BoxedImage]],
    items: list[Item],
    file_names: list[str],
    splits: list[str],
    finals: list[BoxWriter],
    class_names: list[str] | None,
    ap: bool,
    written: Callable[[ImageBoxes], ImageBoxes],
) -> BoxesResult:
    """The whole set's files, from the journal: COCO's JSON, VOC's list, data.yaml, the quality and summary.json.

    ``journal``: the run's images as its journal records them, in order (each call reads it afresh);
    ``finals``: the writers of the whole set's files; ``written``: an image's boxes as the files hold them.
    """
    corloc, counts, skipped = CorLoc(), {"images": 0, "images_with_boxes": 0, "boxes": 0, "gt_images": 0}, []
    seen = 0
    for image in journal():
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
        boxes = written(image.image_boxes())
        for writer in finals:
            writer.write(boxes, file_names[image.index], splits[image.index])
    if seen != len(items):
        raise ResumeError(f"{out / 'journal.jsonl'}: records {seen} images of {len(items)}; the run is not complete")
    for writer in finals:
        writer.close()
    files = {w.format: str(out / w.format) for w in finals}  # VOC: the folder holding VOCdevkit/
    coco = next((w.out_dir for w in finals if w.format == "coco"), None)
    no_ap = dict.fromkeys(("ap", "ap50", "ap75"))
    quality = _quality(journal, items, file_names, class_names, coco, written) if ap else no_ap
    counts["val_images"] = sum(w.counts["val"] for w in finals[:1])
    summary = {**counts, "corloc_verdicts": int(corloc.images), "corloc": corloc.compute(), **quality}
    files["summary"] = str(write_json({"settings": header, "score": SCORE_FORMULA, **summary, "skipped": skipped,
                                       "files": files, "versions": versions()}, out / "summary.json"))  # fmt: skip
    return BoxesResult(summary, skipped, files)


def _quality(
    journal: Callable[[], Iterator[BoxedImage]],
    items: list[Item],
    file_names: list[str],
    class_names: list[str] | None,
    coco: Path | None,
    written: Callable[[ImageBoxes], ImageBoxes],
) -> dict:
    """COCO AP, AP50, AP75 of the journal's boxes against the items' ground truth (None without any).

    ``coco``: the folder where the run's ``results.json`` is, and where ``ground_truth.json`` goes
    (None: both are written to a scratch folder). ``written``: the boxes as the files hold them (the
    ground truth is relabelled alike: one class where the run writes one).
    """
    if not any(it.truths for it in items):
        return {"ap": None, "ap50": None, "ap75": None}

    def images() -> Iterator[BoxedImage]:
        return (image for image in journal() if not image.error)

    def truths() -> Iterable[tuple[ImageBoxes, str]]:
        for image in images():
            item = items[image.index]
            size = item.sample.size or (image.width, image.height)
            boxes = [Detection(c, scale_box(b, size, (image.width, image.height))) for c, b in item.truths]
            yield (
                written(ImageBoxes(image.index, Path(image.path), image.width, image.height, boxes)),
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
            write_coco_results(where / "results.json", (written(image.image_boxes()) for image in images()))
        return coco_ap(gt, where / "results.json")


def _output_classes(
    info: ModelInfo, class_name: str | None
) -> tuple[list[str] | None, Callable[[ImageBoxes], ImageBoxes]]:
    """The class names the files hold, and an image's boxes as they hold them: the model's, or one ``class_name``."""
    if class_name is not None:
        return [class_name], _one_class
    return (None if info.class_names is None else list(info.class_names)), _as_boxed


def _as_boxed(boxes: ImageBoxes) -> ImageBoxes:
    """The boxes as they are: each of its class."""
    return boxes


def _one_class(boxes: ImageBoxes) -> ImageBoxes:
    """The boxes as one class (``class_name``): every label 0."""
    return replace(boxes, detections=[replace(d, label=0) for d in boxes.detections])
