"""The per-image journal of an evaluation: one CSV row per image, appended and synced as the run goes.

The first line records the run's settings (``# camloc evaluate {...}``); a resumed run must have
the same. Rows hold each image's classes, single box and outcome; per-threshold hit curves are
packed into hex bits, PxAP histograms into sparse ``i=v`` text. The text form lives here only:
:func:`encode` turns an :class:`~camloc.evaluation.protocols.ImageResult` into a row and
:func:`decode` turns a row back into the same result, so a resumed run's metrics equal an
uninterrupted run's. A row cut off by a kill (no final newline) is dropped from the file and
computed again.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from ..errors import DatasetError, ResumeError
from ..metrics.localization import ImageOutcome
from .protocols import CURVES, ImageResult

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


class _JournalFile:
    """An append-only text file whose first line records a run's settings: ``# camloc <kind> {settings}``.

    ``path=None``: nothing is written. Use as a context manager; :meth:`flush` makes the lines
    written so far durable (fsync), so a kill loses at most the batch in flight; :func:`journal_lines`
    reads the file back for a resumed run.
    """

    def __init__(self, path: str | os.PathLike | None, kind: str, header: dict) -> None:
        self.path, self.kind, self.header = (Path(path) if path else None), kind, header
        self.file: TextIO | None = None
        self.fresh = False

    def __enter__(self) -> _JournalFile:
        if self.path is not None:
            self.fresh = not self.path.exists() or self.path.stat().st_size == 0
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a", newline="")  # noqa: SIM115 - closed in __exit__
            if self.fresh:
                self.file.write(f"# camloc {self.kind} {json.dumps(self.header, sort_keys=True)}\n")
        return self

    def flush(self) -> None:
        """Make the lines written so far durable."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


class LineJournal(_JournalFile):
    """A journal of one JSON object a line (see :class:`_JournalFile`)."""

    def __enter__(self) -> LineJournal:
        super().__enter__()
        return self

    def write(self, record: dict) -> None:
        """Append one record."""
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")


class Journal(_JournalFile):
    """Appends per-image rows to a CSV whose first line records the run's settings (``header``).

    With ``path=None`` it writes nothing. Use as a context manager; :meth:`flush` makes the rows
    written so far durable (fsync), so a kill loses at most the batch in flight.
    """

    def __init__(self, path: str | os.PathLike | None, header: dict) -> None:
        super().__init__(path, "evaluate", header)
        self.writer: csv.DictWriter | None = None

    def __enter__(self) -> Journal:
        super().__enter__()
        if self.file is not None:
            self.writer = csv.DictWriter(self.file, fieldnames=COLUMNS, extrasaction="ignore")
            if self.fresh:
                self.writer.writeheader()
        return self

    def write(self, result: ImageResult) -> None:
        """Append one image's row."""
        if self.writer is not None:
            self.writer.writerow(encode(result))


def read_journal(path: str | os.PathLike, header: dict, n_thresholds: int) -> Iterator[ImageResult]:
    """The results an earlier run recorded, in order; a run with other settings is refused.

    A row cut off by an interruption is dropped from the file (so rows stay well-formed) and not
    returned: the image is computed again.
    """
    for row in csv.DictReader(journal_lines(path, "evaluate", header)):
        yield decode(row, n_thresholds)


def journal_lines(path: str | os.PathLike, kind: str, header: dict) -> Generator[str, None, None]:
    """The lines after the header of a ``# camloc <kind> {...}`` journal written with the settings ``header``.

    Refuses (:class:`~camloc.errors.ResumeError`) a file of another kind or of other settings, at
    once. A last line cut off by an interruption (no final newline) is removed from the file, at
    once, and not returned. The lines are then read as they are asked for (memory stays flat
    however long the journal), so take them before anything appends to the file.
    """
    path = Path(path)
    with open(path, newline="") as f:
        earlier = _settings_line(path, f.readline(), kind, ResumeError)
    if earlier != json.loads(json.dumps(header, sort_keys=True)):
        keys = set(earlier) | set(header)
        diff = {k: (earlier.get(k), header.get(k)) for k in sorted(keys) if earlier.get(k) != header.get(k)}
        raise ResumeError(f"{path}:1: written by a run with other settings {diff}; cannot resume it")
    _drop_cut_line(path)
    return _lines_after_header(path)


def _drop_cut_line(path: Path, block: int = 1 << 16) -> None:
    """Truncate the file after its last newline (the header line always ends with one)."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - 1))
        if f.read(1) == b"\n":
            return
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            end = start


def _lines_after_header(path: Path) -> Generator[str, None, None]:
    with open(path, newline="") as f:
        f.readline()
        yield from f


def read_results(path: str | os.PathLike) -> tuple[dict, list[tuple[int, ImageResult]]]:
    """The settings a per-image file records and each complete row's result, with its line number in the file.

    For reading a finished (or running) evaluation: any settings are accepted, the file is not
    changed, and a last row cut off by an interruption is left out. The hit curves' length comes
    from the recorded ``step``.
    """
    path = Path(path)
    with open(path, newline="") as f:
        header = _settings_line(path, f.readline(), "evaluate", DatasetError)
        lines = f.read().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    n_thresholds = len(np.arange(0, 1, header["step"])) if "step" in header else 0
    try:
        # line 1 holds the settings, line 2 the column names: the first row is line 3
        return header, [(i + 3, decode(row, n_thresholds)) for i, row in enumerate(csv.DictReader(lines))]
    except (KeyError, ValueError, TypeError) as err:
        raise DatasetError(f"not a well-formed per-image row ({type(err).__name__}: {err})", path) from None


def _settings_line(path: Path, first: str, kind: str, error: type[Exception]) -> dict:
    prefix = f"# camloc {kind} "
    if not first.startswith(prefix):
        raise error(f"{path}:1: not a camloc {kind} " + ("per-image file" if kind == "evaluate" else "journal"))
    try:
        return json.loads(first[len(prefix) :])
    except json.JSONDecodeError:
        raise error(f"{path}:1: the settings line is not JSON") from None
