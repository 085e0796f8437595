"""``explain``: top-k maps, paper boxes, grids and JSON for a list of images."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..boxes.paper import paper_box
from ..errors import BadImage
from ..figures import topk_grid
from ..images import load_batch
from ..maps.core import MapMethod
from ..maps.frames import normalize_maps, to_image_frame
from ..models.info import ModelInfo
from ..utils import is_image_file, write_json
from ..utils import progress as progress_bar

__all__ = ["ExplainResult", "collect_images", "explain"]

log = logging.getLogger(__name__)


@dataclass
class ExplainResult:
    """Per image read, its record (the JSON's ``images`` entries); per file not read, its error; the grids written."""

    records: list[dict] = field(default_factory=list)  # one per image that was read
    errors: list[BadImage] = field(default_factory=list)  # one per file that was not
    grids: list[Path] = field(default_factory=list)


def collect_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the image files below each directory (sorted). Missing paths are kept,
    so that reading them reports them by name.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)))
        else:
            files.append(p)
    return files


def explain(
    paths: Sequence[str | os.PathLike],
    method: MapMethod,
    info: ModelInfo,
    *,
    topk: int = 5,
    out_dir: str | os.PathLike | None = None,
    json_path: str | os.PathLike | None = None,
    batch_size: int = 16,
    threshold: float = 0.2,
    alpha: float = 0.5,
    progress: bool | None = None,
) -> ExplainResult:
    """Explain each image's top-k classes: class, score and paper box in the image's own pixels.

    Writes one grid PNG per image into ``out_dir`` (if given) as it goes, and the JSON (if a path
    is given) after every batch, so an interrupted run keeps what it computed. Unreadable files
    are collected in ``errors`` and skipped.
    """
    result = ExplainResult()
    names = _unique_stems(paths)
    bar = progress_bar(len(paths), enabled=progress)
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            batch = load_batch(chunk, info.preprocess, keep_originals=out_dir is not None)
            for err in batch.errors:
                log.warning("skipping %s", err)
            result.errors.extend(batch.errors)
            if batch.paths:
                out = method(batch.images, topk=topk, upsample=False)
                for i, path in enumerate(batch.paths):
                    heats = (
                        normalize_maps(to_image_frame(out.raw[i].float(), batch.geometries[i]), "minmax").cpu().numpy()
                    )
                    boxes = [paper_box(h, threshold) for h in heats]
                    predictions = [
                        {
                            "rank": r + 1,
                            "index": int(c),
                            "name": info.class_name(int(c)),
                            "score": round(float(s), 6),
                            "box": list(b) if b is not None else None,
                        }
                        for r, (c, s, b) in enumerate(zip(out.classes[i].tolist(), out.scores[i].tolist(), boxes))
                    ]
                    geo = batch.geometries[i]
                    record = {"path": path, "width": geo.width, "height": geo.height, "predictions": predictions}
                    if out_dir is not None:
                        titles = [f"{p['name']}\n{p['score']:.3f}" for p in predictions]
                        grid = topk_grid(
                            batch.originals[i], heats, titles, boxes, Path(out_dir) / f"{names[path]}.png", alpha=alpha
                        )
                        record["grid"] = str(grid)
                        result.grids.append(grid)
                    result.records.append(record)
            bar.update(len(chunk))
            if json_path is not None:
                _write(result, info, json_path)
    finally:
        bar.close()
        if json_path is not None:
            _write(result, info, json_path)
    return result


def _write(result: ExplainResult, info: ModelInfo, json_path: str | os.PathLike) -> None:
    write_json(
        {
            "model": info.name,
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
