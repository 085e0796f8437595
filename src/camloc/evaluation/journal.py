"""The per-image journal of an evaluation: one CSV row per image, appended and synced as the run goes.

A plain CSV file (column names first; the columns are described in docs/per-image.md); the run's
settings, which a resumed run must share, are in the sidecar ``FILE.json``
(:class:`~camloc.evaluation.run.CsvJournal`). Rows hold each image's classes, single box and
outcome; per-threshold hit curves are packed into hex bits, PxAP histograms into sparse ``i=v``
text. The text form lives here only:
:func:`encode` turns an :class:`~camloc.evaluation.protocols.ImageResult` into a row and
:func:`decode` turns a row back into the same result, so a resumed run's metrics equal an
uninterrupted run's. A row cut off by a kill (no final newline) is dropped from the file and
computed again.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..metrics.localization import ImageOutcome
from .protocols import CURVES, ImageResult
from .run import CsvJournal, LineJournal, csv_settings, journal_lines

__all__ = ["COLUMNS", "Journal", "LineJournal", "decode", "encode", "journal_lines", "read_journal", "read_results"]

COLUMNS = [
    "image_id", "path", "label", "top5", "cls_top1", "cls_top5", "iou", "box",
    "located", "top1_located", "top5_located", *CURVES, "pxap_fg", "pxap_bg", "error",
]  # fmt: skip


def encode(result: ImageResult) -> dict[str, str]:
    """The journal row of one image's result."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(image_id=result.image_id, path=result.path, label=str(result.label), error=result.error)
    o = result.outcome
    if o is None:
        return row
    row.update(
        top5=" ".join(map(str, result.top5)),
        cls_top1=str(int(o.cls_top1)),
        cls_top5=str(int(o.cls_top5)),
        iou="" if result.iou is None else f"{result.iou:.6f}",
        box="" if result.box is None else " ".join(map(str, result.box)),
    )
    for key in ("located", "top1_located", "top5_located"):
        value = getattr(o, key)
        row[key] = "" if value is None else str(int(value))
    for name, hits in o.curves.items():
        row[name] = np.packbits(np.asarray(hits, dtype=bool)).tobytes().hex()
    if o.pxap is not None:
        row["pxap_fg"], row["pxap_bg"] = (_sparse(h) for h in o.pxap)
    return row


def decode(row: dict[str, str], n_thresholds: int) -> ImageResult:
    """The result a journal row records (``n_thresholds``: the length of its hit curves)."""
    result = ImageResult(row["image_id"], row["path"], int(row["label"]), error=row.get("error") or "")
    if result.error:
        return result

    def flag(key: str) -> bool | None:
        return None if row[key] in ("", None) else bool(int(row[key]))

    curves = {
        c: np.unpackbits(np.frombuffer(bytes.fromhex(row[c]), dtype=np.uint8))[:n_thresholds].astype(bool)
        for c in CURVES
        if row.get(c)
    }
    pxap = (_unsparse(row["pxap_fg"]), _unsparse(row["pxap_bg"])) if row.get("pxap_fg") else None
    result.top5 = [int(c) for c in row["top5"].split()]
    result.iou = float(row["iou"]) if row.get("iou") else None
    result.box = tuple(int(v) for v in row["box"].split()) if row.get("box") else None  # type: ignore[assignment]
    result.outcome = ImageOutcome(
        cls_top1=bool(int(row["cls_top1"])),
        cls_top5=bool(int(row["cls_top5"])),
        located=flag("located"),
        top1_located=flag("top1_located"),
        top5_located=flag("top5_located"),
        curves=curves,
        pxap=pxap,
    )
    return result


def _sparse(hist: np.ndarray) -> str:
    return f"{len(hist)}:" + " ".join(f"{i}={v}" for i, v in enumerate(hist.tolist()) if v)


def _unsparse(text: str) -> np.ndarray:
    size, _, items = text.partition(":")
    hist = np.zeros(int(size), dtype=np.int64)
    for item in items.split():
        i, v = item.split("=")
        hist[int(i)] = int(v)
    return hist


class Journal(CsvJournal):
    """Appends evaluate's per-image rows (:func:`encode` of each result) to a plain CSV, settings in ``FILE.json``.

    With ``path=None`` it writes nothing. Use as a context manager; :meth:`flush` makes the rows
    written so far durable (fsync), so a kill loses at most the batch in flight.
    """

    def __init__(self, path: str | os.PathLike | None, header: dict) -> None:
        super().__init__(path, "evaluate", header, COLUMNS)

    def __enter__(self) -> Journal:
        super().__enter__()
        return self

    def write(self, result: ImageResult | dict) -> None:
        """Append one image's row (a result, or a row already encoded)."""
        super().write(result if isinstance(result, dict) else encode(result))


def read_journal(path: str | os.PathLike, header: dict, n_thresholds: int) -> Iterator[ImageResult]:
    """The results an earlier run recorded, in order, for resuming it; a run with other settings is refused.

    A row cut off by an interruption is dropped from the file (so rows stay well-formed) and not
    returned: the image is computed again. A camloc 0.2 file is converted to the plain form.
    """
    for row in CsvJournal.read(Path(path), "evaluate", header, COLUMNS):
        yield decode(row, n_thresholds)


def read_results(path: str | os.PathLike) -> tuple[dict, list[tuple[int, ImageResult]]]:
    """The settings a per-image file records and each complete row's result, with its line number in the file.

    For reading a finished (or running) evaluation: any settings are accepted, the file is not
    changed, and a last row cut off by an interruption is left out. Reads both forms: the plain CSV
    with its ``FILE.json`` sidecar, and camloc 0.2's file with the settings on its first line. The
    hit curves' length comes from the recorded ``step``.
    """
    path = Path(path)
    header, old = csv_settings(path, "evaluate", DatasetError)
    with open(path, newline="") as f:
        if old:
            f.readline()
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    n_thresholds = len(np.arange(0, 1, header["step"])) if "step" in header else 0
    first = 3 if old else 2  # after the column names (and 0.2's settings line)
    try:
        return header, [(i + first, decode(row, n_thresholds)) for i, row in enumerate(csv.DictReader(lines))]
    except (KeyError, ValueError, TypeError) as err:
        raise DatasetError(f"not a well-formed per-image row ({type(err).__name__}: {err})", path) from None
