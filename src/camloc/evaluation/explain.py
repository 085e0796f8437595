"""``explain``: maps of the top-k (or chosen) classes, paper boxes and a JSON for a list of images; resumable.

Boxes follow the paper's rule on each map in the original image's pixels: pixels >= ``threshold`` x
the map's maximum, the largest 8-connected component (:func:`camloc.boxes.paper_box`).

Each image's record is journalled as it is made (:class:`~camloc.evaluation.run.Run`, JSON lines
beside the results JSON, synced per batch; its maps and picture are written before it), and the
JSON is written once, at the end, from the journal: a run killed at any point and resumed
(``resume=True``) writes the JSON of an uninterrupted run. Pictures are not drawn here (evaluation
sits below reports): ``draw=`` takes a hook, and :mod:`camloc.reports.grids` has camloc's grids
(``camloc.explain`` and ``camloc explain`` draw them).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor, nn

from ..boxes.paper import paper_box
from ..distributed import all_gather, rank_file, shard
from ..errors import BadImage, InvalidArgument
from ..images import Batch, Geometry, Preprocess, load_batch
from ..maps.core import CamOutput, MapMethod, choose_classes, class_scores
from ..maps.frames import to_image_frame
from ..models.info import ModelInfo
from ..utils import atomic_path, is_image_file, versions, write_json
from ..utils import progress as progress_bar
from .run import Run, legacy_arguments, map_preprocess, method_info, pinned, stages

__all__ = [
    "Draw",
    "ExplainResult",
    "Picture",
    "collect_images",
    "describe",
    "explain",
    "explain_settings",
    "journal_path",
    "maps_at_two_sizes",
]

log = logging.getLogger(__name__)

BOX_RULE = "paper: pixels >= threshold x the map's max, box of the largest 8-connected component"


@dataclass
class ExplainResult:
    """Per image read, its record (the JSON's ``images`` entries); per file not read, its error; files written."""

    records: list[dict] = field(default_factory=list)  # one per image that was read
    errors: list[BadImage] = field(default_factory=list)  # one per file that was not
    grids: list[Path] = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # what the maps and boxes were made with


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files below each directory (sorted).

    Missing paths are kept, so that reading them reports them by name.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)))
        else:
            files.append(p)
    return files


@dataclass
class Picture:
    """What an ``explain`` drawing hook gets for one image (see ``draw=`` of :func:`explain`).

    ``original`` is the decoded file, ``maps`` its maps in the image's pixels (``Tensor[k, height,
    width]``, not normalized, NaN where the model saw nothing), ``record`` the image's JSON record
    (predictions with their boxes, ``window``), ``name`` a file stem unique among the run's inputs,
    ``settings`` the run's settings (:func:`explain_settings`).
    """

    original: Image.Image
    maps: Tensor
    record: dict[str, Any]
    name: str
    settings: dict


#: A drawing hook: draws one image's :class:`Picture` to a file and returns its path (None: nothing drawn).
Draw = Callable[[Picture], "Path | None"]


def explain(
    paths: Sequence[str | os.PathLike],
    method: MapMethod | nn.Module,
    *legacy: ModelInfo,
    info: ModelInfo | None = None,
    preprocess: Preprocess | None = None,
    topk: int = 5,
    classes: Sequence[int] | None = None,
    json_path: str | os.PathLike | None = None,
    maps_dir: str | os.PathLike | None = None,
    draw: Draw | None = None,
    batch_size: int = 16,
    threshold: float | None = None,
    resume: bool = False,
    config: dict | None = None,
    progress: bool | None = None,
    overlap: bool = True,
    out_dir: str | os.PathLike | None = None,
    map_size: int | None = None,
) -> ExplainResult:
    """Explain each image: per class its name, score and paper box in the image's own pixels.

    Args:
        paths: image files.
        method: any :class:`~camloc.maps.MapMethod`, or a model (then CAM of it).
        *legacy: camloc 0.2's positional ``info``: ``explain(paths, method, info)`` is still accepted.
        info: the model's class names and preprocessing (None: what ``load_model`` attached to the model).
        preprocess: instead of ``info.preprocess``; in ``full`` mode each image is its own batch
            (images of different shapes cannot be stacked).
        topk: how many of each image's best classes, when ``classes`` is None.
        classes: these class indices for every image instead of the top-k.
        json_path: the results JSON, written once at the end. While the run goes, each image's
            record is journalled beside it (``STEM.journal.jsonl``, synced per batch, removed at the end).
        maps_dir: one ``.npy`` per image here: ``float32[k, height, width]``, the maps resampled to
            the image's pixels, not normalized (NaN where the model saw nothing).
        draw: called with each image's :class:`Picture` as it is computed; the file it returns is the
            record's ``grid`` (:func:`camloc.reports.grids.grid_drawer` draws camloc's grids).
        batch_size: images per forward pass.
        threshold: the paper rule's fraction of each map's maximum (None: the model's, ``info.paper_threshold``).
        resume: continue the run journalled beside ``json_path``: the images it recorded are not
            computed again, and the JSON is the one an uninterrupted run writes.
        config: more settings that a resumed run must share (where the pictures go, ...).
        progress: show a progress bar (None: when stderr is a terminal).
        overlap: decode, forward pass and per-image work of consecutive batches at once.
        out_dir: not drawn here (this layer draws nothing): use :func:`camloc.explain` for grids.
        map_size: read the maps at this input side, the classes and scores at the preprocessing's: each
            batch runs twice (None: ``info.map_size``, else one input for both).

    Unreadable files are collected in ``errors`` and skipped. Under torchrun each process explains
    the files ``rank, rank + N, ...`` with its own journal; at the end every process gets the whole
    result, in the order of ``paths``, and rank 0 writes ``json_path``.
    """
    method, info = method_info(method, *legacy_arguments("explain", legacy, {"info": info}))
    if out_dir is not None:
        raise InvalidArgument("out_dir", "camloc.evaluation.explain draws nothing: use camloc.explain(out_dir=...)")
    pre, threshold = preprocess or info.preprocess, info.paper_threshold if threshold is None else threshold
    mapping = map_preprocess(pre, map_size or info.map_size)
    step = 1 if pre.mode == "full" else batch_size
    settings = explain_settings(method, info, pre, topk, classes, threshold, map_size=mapping.size)
    journal = _journal(json_path, resume)
    run = Run(journal, "explain", _journal_settings(settings, paths, maps_dir, config), resume=resume)
    mine = shard(list(enumerate(paths)), run.world)
    entries: list[dict] = []  # this process's journal entries, when there is no journal
    done = {entry["i"] for entry in run.done()}
    todo = [(i, p) for i, p in mine if i not in done]
    chunks = [todo[start : start + step] for start in range(0, len(todo), step)]
    names = _unique_stems(paths)
    bar = progress_bar(len(mine), initial=len(done), enabled=progress if run.world.is_main else False)

    def decode(chunk: list[tuple[int, str | os.PathLike]]) -> tuple[list, Batch]:
        also = None if mapping is pre else pre  # the classifying size, from the same decode
        return chunk, pinned(load_batch([p for _, p in chunk], mapping, draw is not None, also=also), method)

    def forward(decoded: tuple[list, Batch]) -> CamOutput | None:
        batch = decoded[1]
        wanted = None if classes is None else [list(classes)] * len(batch.paths)
        return maps_at_two_sizes(method, batch.images, batch.also, topk, wanted) if batch.paths else None

    def finish(decoded: tuple[list, Batch], out: CamOutput | None) -> None:
        chunk, batch = decoded
        read = iter(range(len(batch.paths)))  # the chunk's files that were read, in order
        failed = {e.path: e for e in batch.errors}
        for i, path in chunk:
            if str(path) in failed:
                log.warning("skipping %s", failed[str(path)])
                entry = {"i": i, "error": {"path": str(path), "error": failed[str(path)].reason}}
            else:
                assert out is not None
                made = _record(out, next(read), batch, names[str(path)], info, threshold, settings, maps_dir, draw)
                entry = {"i": i, "record": made}
            run.write(entry)  # without a journal: nothing written, kept in memory
            if journal is None:
                entries.append(entry)
        run.flush()
        bar.update(len(chunk))

    with bar, run:
        for _ in stages(chunks, decode, forward, finish, overlap=overlap):
            pass
    return _finished(run, entries, len(paths), settings, json_path)


def maps_at_two_sizes(
    method: MapMethod, images: Tensor, to_classify: Tensor | None, topk: int, wanted: list[list[int]] | None
) -> CamOutput:
    """The maps of ``images`` (``Tensor[N, 3, H, W]``) for their top-k classes, or ``wanted``.

    The classes and scores come from ``to_classify`` (the same images at the classifying size) where
    it is given, else from ``images``.
    """
    if to_classify is None:
        return method(images, topk=topk, classes=wanted, upsample=False)
    logits = class_scores(method, to_classify)
    chosen, scores = choose_classes(logits, topk, wanted)
    out = method(images, classes=chosen, upsample=False)
    return dataclasses.replace(out, logits=logits, scores=scores)


def _journal(json_path: str | os.PathLike | None, resume: bool) -> Path | None:
    """The run's journal (None without a JSON); a fresh run drops an earlier one (it rewrites everything)."""
    if resume and json_path is None:
        raise InvalidArgument("resume", "resume=True needs json_path=FILE: its journal is the run to continue")
    journal = None if json_path is None else journal_path(json_path)
    if journal is not None and not resume:
        for stale in {journal, rank_file(journal)}:
            stale.unlink(missing_ok=True)
    return journal


def journal_path(json_path: str | os.PathLike) -> Path:
    """Where ``explain`` journals the records of a run whose results go to ``json_path``: ``STEM.journal.jsonl``."""
    json_path = Path(json_path)
    return json_path.with_name(f"{json_path.stem}.journal.jsonl")


def _journal_settings(settings: dict, paths: Sequence, maps_dir: str | os.PathLike | None, config: dict | None) -> dict:
    """What a resumed explain must share: the settings (versions aside), the inputs, where the maps go."""
    inputs = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()
    same = {k: v for k, v in settings.items() if k != "versions"}
    return {**same, "inputs": len(paths), "inputs_sha256": inputs, "maps_dir": maps_dir and str(maps_dir),
            **(config or {})}  # fmt: skip


def _record(
    out: CamOutput,
    k: int,
    batch: Batch,
    name: str,
    info: ModelInfo,
    threshold: float,
    settings: dict,
    maps_dir: str | os.PathLike | None,
    draw: Draw | None,
) -> dict[str, Any]:
    """Image ``k`` of the batch's record; its maps and picture written first (a journalled record is complete)."""
    described, maps = describe(out, k, batch.geometries[k], info, threshold)
    record: dict[str, Any] = {"path": batch.paths[k], **described}
    if maps_dir is not None:
        target = Path(maps_dir) / f"{name}.npy"
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, maps.numpy().astype(np.float32))
        record["maps"] = str(target)
    if draw is not None:
        assert batch.originals is not None
        drawn = draw(Picture(batch.originals[k], maps, record, name, settings))
        if drawn is not None:
            record["grid"] = str(drawn)
    return record


def _finished(
    run: Run, entries: list[dict], count: int, settings: dict, json_path: str | os.PathLike | None
) -> ExplainResult:
    """The whole run's result, in the order of the inputs, on every process; rank 0 writes the JSON."""
    result = None
    if run.path is None:
        gathered = sorted((e for part in all_gather(entries) for e in part), key=lambda e: e["i"])
        result = _result(gathered, settings)
    else:
        run.merge(key=lambda entry: entry["i"], expected=count if run.world.distributed else None)
        if run.world.is_main:
            result = _result(list(run.records()), settings)
            assert json_path is not None
            _write(result, json_path)
            run.path.unlink()
        result = all_gather(result)[0]
    assert result is not None
    return result


def _result(entries: list[dict], settings: dict) -> ExplainResult:
    result = ExplainResult(settings=settings)
    result.records = [e["record"] for e in entries if "record" in e]
    result.errors = [BadImage(e["error"]["path"], e["error"]["error"]) for e in entries if "error" in e]
    result.grids = [Path(r["grid"]) for r in result.records if "grid" in r]
    return result


def describe(
    out: CamOutput, i: int, geometry: Geometry, info: ModelInfo, threshold: float
) -> tuple[dict[str, Any], Tensor]:
    """Image ``i`` of ``out`` as ``explain``'s JSON records it, and its maps in the image's pixels.

    Args:
        out: a map method's output (``upsample=False`` is enough).
        i: the image's index in ``out``.
        geometry: where the model's input lies in that image.
        info: the model's class names.
        threshold: the paper rule's fraction of each map's maximum.

    Returns:
        ``({"width", "height", "predictions"[, "window"]}, Tensor[k, height, width])``: per class its
        rank, index, name, score and paper box (None when the rule keeps nothing); the maps are not
        normalized (NaN where the model saw nothing).
    """
    maps = to_image_frame(out.raw[i].float(), geometry).cpu()
    boxes = [paper_box(m, threshold) for m in maps.numpy()]
    predictions = [
        {
            "rank": r + 1,
            "index": int(c),
            "name": info.class_name(int(c)),
            "score": float(s),
            "box": list(b) if b is not None else None,
        }
        for r, (c, s, b) in enumerate(zip(out.classes[i].tolist(), out.scores[i].tolist(), boxes, strict=True))
    ]
    record: dict[str, Any] = {"width": geometry.width, "height": geometry.height, "predictions": predictions}
    if not geometry.covers_image:
        window = geometry.box_to_original((0, 0, geometry.input_width - 1, geometry.input_height - 1))
        record["window"] = list(window)
    return record, maps


def explain_settings(
    method: MapMethod,
    info: ModelInfo,
    pre: Preprocess,
    topk: int,
    classes: Sequence[int] | None,
    threshold: float,
    *,
    map_size: int | None = None,
) -> dict:
    """What explain's maps and boxes were made with, as its JSON records it (``settings``).

    ``map_size``: the side the maps were read at; recorded where it differs from ``pre.size``.
    """
    separate = {} if map_size in (None, pre.size) else {"map_size": map_size}
    return {
        "model": info.name,
        "method": method.name,
        "target_layer": method.target_layer,
        "classes": "top-k" if classes is None else [int(c) for c in classes],
        "topk": topk if classes is None else len(classes),
        "box_rule": BOX_RULE,
        "threshold": threshold,
        "resize": pre.mode,
        "size": pre.size,
        "resize_size": pre.resize_size,
        **separate,
        "versions": versions(),
    }


def _write(result: ExplainResult, json_path: str | os.PathLike) -> None:
    write_json(
        {
            "model": result.settings.get("model"),
            "settings": result.settings,
            "images": result.records,
            "errors": [{"path": e.path, "error": e.reason} for e in result.errors],
        },
        json_path,
    )


def _unique_stems(paths: Sequence[str | os.PathLike]) -> dict[str, str]:
    """Output names: the file stem, numbered where two inputs share one."""
    seen: dict[str, int] = {}
    names = {}
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names[str(p)] = stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"
    return names
