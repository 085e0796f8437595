"""The harness of every run over data (``evaluate``, ``explain``, ``boxes``): journal, resume, torchrun, stages.

A run writes one record per image to a **journal** as it goes, synced after every batch, so a run
that is killed loses at most the batch in flight and ``resume=True`` continues it. Two journal
forms, one API (records are dicts):

* **CSV** (``columns=`` given; ``evaluate``'s per-image file): a plain CSV file, column names first,
  LF line endings, one row per record (values are strings), so ``pandas.read_csv`` and
  ``csv.DictReader`` read it as it is. The settings a resumed run must share are in a sidecar,
  ``FILE.json`` (``{"camloc": kind, "settings": {...}}``), written atomically before the first
  row. A file of camloc 0.2, whose first line was ``# camloc <kind> {settings}``, still resumes:
  it is converted to this form (atomically) when it is resumed.
* **JSON lines** (``columns=None``; ``boxes`` and ``explain``): the first line is
  ``# camloc <kind> {settings}``, then one JSON object a line (camloc 0.2's form, unchanged).

Under torchrun (:mod:`camloc.distributed`) each process writes its own journal,
``FILE.rank<r>-of-<N>`` (its settings also record ``rank`` and ``world_size``), and
:meth:`Run.merge` makes the single process's file from them at the end, in the run's order.

Typical use (the decode -> forward -> finish loop is :func:`stages`)::

    run = Run(path, "evaluate", settings, columns=COLUMNS, resume=resume)
    done = {record["image_id"] for record in run.done()}
    with run, worker_pool(workers, overlap) as pool:
        for records in stages(chunks, decode, forward, finish, overlap=overlap):
            for record in records:
                run.write(record)
            run.flush()
    run.merge(key=lambda record: position[record["image_id"]])
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import io
import json
import logging
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from ..distributed import World, barrier, rank_file, world
from ..errors import InvalidArgument, OutputExists, ResumeError
from ..utils import atomic_path, model_device, naming, write_json
from . import pipeline
from .pipeline import background_pool, overlapped

if TYPE_CHECKING:
    from torch import nn

    from ..images import Batch, Preprocess
    from ..maps.core import MapMethod
    from ..models.info import ModelInfo

__all__ = [
    "CsvJournal",
    "LineJournal",
    "Run",
    "csv_settings",
    "journal_lines",
    "method_info",
    "pinned",
    "legacy_arguments",
    "map_preprocess",
    "sidecar",
    "stages",
    "worker_pool",
    "written",
]

log = logging.getLogger(__name__)

C = TypeVar("C")
D = TypeVar("D")
F = TypeVar("F")
R = TypeVar("R")


def written(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists with something in it (an empty file is as good as none)."""
    path = Path(path)
    return path.exists() and path.stat().st_size > 0


def sidecar(path: str | os.PathLike) -> Path:
    """Where a CSV journal's settings are: ``FILE.json`` beside ``FILE``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def map_preprocess(preprocess: Preprocess, map_size: int | None) -> Preprocess:
    """The preprocessing of the maps' input: ``preprocess`` itself, or the same at side ``map_size`` where that differs.

    The runners that take ``map_size=`` classify at ``preprocess`` and read the maps from a second
    forward pass at this one (the crop's resize side scales with it, so that both see the same window).
    """
    if map_size is None or map_size == preprocess.size:
        return preprocess
    if map_size < 16:
        raise InvalidArgument("map_size", f"map_size= must be at least 16 pixels, got {map_size}")
    resize = round(map_size * preprocess.resize_size / preprocess.size)
    return dataclasses.replace(preprocess, size=map_size, resize_size=resize)


def pinned(batch: Batch, model: nn.Module | Any) -> Batch:
    """``batch`` with its images in page-locked memory when ``model`` (or a map method's ``.model``) is on a GPU.

    The copy to the GPU then overlaps other work. Returns the same batch object.
    """
    module = getattr(model, "model", model)
    if model_device(module).type == "cuda" and len(batch.images):
        batch.images = batch.images.pin_memory()
        batch.also = None if batch.also is None else batch.also.pin_memory()
    return batch


def method_info(method: MapMethod | nn.Module, info: ModelInfo | None = None) -> tuple[MapMethod, ModelInfo]:
    """A runner's method and model info: a bare model gets CAM, and ``info`` defaults to what ``load_model`` attached.

    Every runner takes ``(source, method, *, info=None, preprocess=None, ...)`` through this.
    """
    from torch import nn

    from ..maps.cam import CAM
    from ..models.info import model_info

    if isinstance(method, nn.Module):
        method = CAM(method)
    return method, info if info is not None else model_info(method.model)


def legacy_arguments(runner: str, legacy: tuple, given: dict[str, Any]) -> list[Any]:
    """The values of ``given`` (arguments by name) with camloc 0.2's positional ones, ``legacy``, in their place.

    0.2's runners took more than ``(source, method)`` positionally; ``given``'s keys name those
    arguments after ``method``, in 0.2's order, so old calls keep working.

    >>> legacy_arguments("evaluate", ("pre",), {"preprocess": None})
    ['pre']
    >>> legacy_arguments("explain", (), {"info": "info"})
    ['info']

    Raises:
        TypeError: more positional arguments than 0.2 took, or one given both ways.
    """
    if len(legacy) > len(given):
        raise TypeError(f"{runner}() takes source and method positionally; pass {', '.join(given)}, ... by name")
    values = dict(given)
    for name, value in zip(given, legacy, strict=False):
        if values[name] is not None:
            raise TypeError(f"{runner}() got {name} both by position and by name")
        values[name] = value
    return list(values.values())


def worker_pool(workers: int, overlap: bool = True) -> ThreadPoolExecutor:
    """The threads for per-image work (decoding, boxes); below the forward pass's priority when ``overlap``."""
    return background_pool(workers, pipeline.BACKGROUND if overlap else 0)


def stages(
    chunks: Iterable[C],
    decode: Callable[[C], D],
    forward: Callable[[D], F],
    finish: Callable[[D, F], R],
    *,
    overlap: bool = True,
) -> Iterator[R]:
    """``finish(d, forward(d))`` for ``d = decode(chunk)`` of each chunk, in order.

    ``overlap=True``: the three stages of consecutive chunks run at once
    (:func:`~camloc.evaluation.pipeline.overlapped`: ``forward`` in the calling thread, ``decode`` and
    ``finish`` each in a background thread); ``False``: one after the other, all in the calling thread.
    Either way the results are the same, in the same order.
    """
    if overlap:
        yield from overlapped(chunks, decode, forward, finish, nice=pipeline.BACKGROUND)
    else:
        for chunk in chunks:
            decoded = decode(chunk)
            yield finish(decoded, forward(decoded))


# --- journal files ---------------------------------------------------------------------------------------------


class _JournalFile:
    """An append-only journal of records; ``path=None``: nothing is written (see the module docstring).

    Records are gathered in memory and written by :meth:`flush` (once a batch) in one write, then
    synced; a write that fails (a full disk) is undone, the file cut back to its last flush. So the
    file holds whole batches: a resumed run makes the same batches, hence the same floats, as an
    uninterrupted one (a kill during the write itself may leave part of a batch; a cut line is dropped).
    """

    def __init__(self, path: str | os.PathLike | None, kind: str, settings: dict) -> None:
        self.path, self.kind, self.settings = (Path(path) if path else None), kind, settings
        self.file: BinaryIO | None = None
        self.pending = io.StringIO(newline="")
        self.fresh = False

    def __enter__(self) -> Any:
        if self.path is not None:
            self.fresh = not written(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.fresh:
                self._start()
            self.file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in __exit__
            if self.fresh:
                self._first_lines()
                self.flush()
        return self

    def _start(self) -> None:
        """Before a fresh file is opened."""

    def _first_lines(self) -> None:
        """What a fresh file starts with (written to ``self.pending``)."""

    def write(self, record: dict) -> None:
        """Add one record (written by the next :meth:`flush`)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Write the records added since the last flush and make them durable (fsync); all or none of them."""
        if self.file is None:
            self.pending = io.StringIO(newline="")
            return
        data = self.pending.getvalue().encode()
        self.pending = io.StringIO(newline="")
        self._reset_writer()
        end = self.file.seek(0, os.SEEK_END)
        with naming(self.path or ""):
            try:
                view = memoryview(data)
                while view:
                    view = view[self.file.write(view) or 0 :]
                os.fsync(self.file.fileno())
            except OSError:
                self.file.truncate(end)  # needs no space: the batch is written again on resume
                raise

    def _reset_writer(self) -> None:
        """After ``self.pending`` is replaced."""

    def _added(self) -> None:
        """After a record is added: a flush once the records held pass 4 MB (a merge writes whole journals)."""
        if self.pending.tell() > 1 << 22:
            self.flush()

    def __exit__(self, *exc: object) -> None:
        """Write and sync what was added, then close; a run stopped by an error or a signal drops its batch in flight.

        The batch in flight is computed again on resume, in the same batch as an uninterrupted run.
        """
        if self.file is None:
            return
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self.pending = io.StringIO(newline="")
            self.file.close()
            self.file = None


class LineJournal(_JournalFile):
    """A journal of one JSON object a line after a ``# camloc <kind> {settings}`` line."""

    def _first_lines(self) -> None:
        self.pending.write(f"# camloc {self.kind} {json.dumps(self.settings, sort_keys=True)}\n")

    def write(self, record: dict) -> None:
        """Add one record."""
        if self.file is not None:
            self.pending.write(json.dumps(record) + "\n")
            self._added()

    @staticmethod
    def read(path: Path, kind: str, settings: dict) -> Iterator[dict]:
        """The records of the journal at ``path``, checked against ``settings`` (see :func:`journal_lines`)."""
        return (json.loads(line) for line in journal_lines(path, kind, settings))


class CsvJournal(_JournalFile):
    """A plain CSV journal (``columns`` first, LF line endings), its settings in the sidecar ``FILE.json``."""

    def __init__(self, path: str | os.PathLike | None, kind: str, settings: dict, columns: Sequence[str]) -> None:
        super().__init__(path, kind, settings)
        self.columns = list(columns)
        self.writer: csv.DictWriter | None = None

    def _start(self) -> None:
        assert self.path is not None
        write_json({"camloc": self.kind, "settings": self.settings}, sidecar(self.path))

    def __enter__(self) -> CsvJournal:
        super().__enter__()
        self._reset_writer()
        return self

    def _reset_writer(self) -> None:
        if self.file is not None:
            self.writer = csv.DictWriter(
                self.pending, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n"
            )

    def _first_lines(self) -> None:
        csv.writer(self.pending, lineterminator="\n").writerow(self.columns)

    def write(self, record: dict) -> None:
        """Add one row (values as strings; missing columns empty)."""
        if self.writer is not None:
            self.writer.writerow(record)
            self._added()

    @staticmethod
    def read(path: Path, kind: str, settings: dict, columns: Sequence[str]) -> Iterator[dict[str, str]]:
        """The rows of the journal at ``path``, for resuming it.

        Refuses (:class:`~camloc.errors.ResumeError`) a file of another kind or other settings, at
        once; drops a last row cut off by an interruption from the file; converts a camloc 0.2 file
        (settings on its first line) to the plain form. The rows are then read as they are asked for.
        """
        earlier, old = csv_settings(path, kind, ResumeError)
        _same_settings(f"{path}:1" if old else str(sidecar(path)), earlier, settings)
        _drop_cut_line(path)
        if old:
            _convert(path, kind, earlier, columns)
        return _csv_rows(path)


def csv_settings(path: str | os.PathLike, kind: str, error: type[Exception] = ResumeError) -> tuple[dict, bool]:
    """The settings of the CSV journal at ``path`` and whether it is in camloc 0.2's form (settings on line 1).

    Raises ``error`` when neither the file's first line nor its sidecar records a ``kind`` run.
    """
    path = Path(path)
    with open(path, newline="") as f:
        first = f.readline()
    if first.startswith("# camloc "):
        return _settings_line(path, first, kind, error), True
    side = sidecar(path)
    try:
        recorded = json.loads(side.read_text())
    except FileNotFoundError:
        raise error(f"{side}: missing; it holds the settings of {path.name}'s run") from None
    except json.JSONDecodeError:
        raise error(f"{side}: not JSON") from None
    ours = isinstance(recorded, dict) and recorded.get("camloc") == kind and isinstance(recorded.get("settings"), dict)
    if not ours:
        raise error(f"{side}: not the settings of a camloc {kind} run")
    return recorded["settings"], False


def _csv_rows(path: Path) -> Generator[dict[str, str], None, None]:
    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def _convert(path: Path, kind: str, settings: dict, columns: Sequence[str]) -> None:
    """Rewrite a camloc 0.2 CSV journal in the plain form: the sidecar first, then the rows, each atomically.

    A kill between the two leaves the old file, still recognized as such, so the conversion is redone.
    """
    write_json({"camloc": kind, "settings": settings}, sidecar(path))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as out:
            writer = csv.writer(out, lineterminator="\n")
            with open(path, newline="") as f:
                f.readline()  # the settings line
                for row in csv.reader(f):
                    writer.writerow(row)
            out.flush()
            os.fsync(out.fileno())


# Settings that say where another setting came from, not what it is: a run resumes whatever they say
# (a threshold given as --threshold 0.13 is the model file's own 0.13).
PROVENANCE = ("threshold_source",)


def _same_settings(where: str, earlier: dict, settings: dict) -> None:
    """Refuse to resume the run recorded at ``where`` (a file, or a file's line) when its settings differ."""
    keys = (set(earlier) | set(settings)) - set(PROVENANCE)
    now = json.loads(json.dumps(settings, sort_keys=True))
    diff = {k: (earlier.get(k), now.get(k)) for k in sorted(keys) if earlier.get(k) != now.get(k)}
    if diff:
        raise ResumeError(f"{where}: written by a run with other settings {diff}; cannot resume it")


def journal_lines(path: str | os.PathLike, kind: str, settings: dict) -> Generator[str, None, None]:
    """The lines after the first of a ``# camloc <kind> {...}`` journal written with ``settings``.

    Refuses (:class:`~camloc.errors.ResumeError`) a file of another kind or of other settings, at
    once. A last line cut off by an interruption (no final newline) is removed from the file, at
    once, and not returned. The lines are then read as they are asked for (memory stays flat
    however long the journal), so take them before anything appends to the file.
    """
    path = Path(path)
    with open(path, newline="") as f:
        earlier = _settings_line(path, f.readline(), kind, ResumeError)
    _same_settings(f"{path}:1", earlier, settings)
    _drop_cut_line(path)
    return _lines_after_first(path)


def _lines_after_first(path: Path) -> Generator[str, None, None]:
    with open(path, newline="") as f:
        f.readline()
        yield from f


def _settings_line(path: Path, first: str, kind: str, error: type[Exception]) -> dict:
    prefix = f"# camloc {kind} "
    if not first.startswith(prefix):
        raise error(f"{path}:1: not a camloc {kind} " + ("per-image file" if kind == "evaluate" else "journal"))
    try:
        return json.loads(first[len(prefix) :])
    except json.JSONDecodeError:
        raise error(f"{path}:1: the settings line is not JSON") from None


def _drop_cut_line(path: Path, block: int = 1 << 16) -> None:
    """Truncate the file after its last newline (a record cut off by a kill is computed again)."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - 1))
        if end == 0 or f.read(1) == b"\n":
            return
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            end = start
        f.truncate(0)


# --- the run ---------------------------------------------------------------------------------------------------


def _counted(records: Iterator[dict], path: Path) -> Iterator[dict]:
    """``records`` as they are, saying once they are all read how many the resumed run continues after."""
    count = 0
    for count, record in enumerate(records, 1):  # noqa: B007 - the count is read after the loop
        yield record
    log.info("%s: resumed after %d record(s) already done", path, count)


class Run:
    """One run's journal under torchrun or not: where it goes, what resume finds, the merge of the ranks' files.

    Args:
        path: the journal as a single process writes it (``rows.csv``, ``out/journal.jsonl``);
            None: no journal (nothing written, nothing to resume).
        kind: the run's name, recorded with its settings (``"evaluate"``, ``"boxes"``, ``"explain"``).
        settings: what a resumed run must share with the run it continues (JSON values).
        columns: a CSV journal with these columns; None: a JSON-lines journal.
        resume: continue the run recorded at ``path``; False: ``path`` must not hold a run yet.
        where: the torchrun world (default: this process's, :func:`camloc.distributed.world`).
        exists_hint: what the :class:`~camloc.errors.OutputExists` message suggests besides ``resume=True``.

    Raises:
        InvalidArgument: ``resume=True`` without a ``path``.
        OutputExists: ``resume=False`` and ``path`` (or this rank's journal) already holds records.

    Use it as a context manager around the writes: :meth:`done` (before entering), then
    :meth:`write` / :meth:`flush` per batch inside, then :meth:`merge` after leaving (every rank).
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        kind: str,
        settings: dict,
        *,
        columns: Sequence[str] | None = None,
        resume: bool = False,
        where: World | None = None,
        exists_hint: str = "remove it",
    ) -> None:
        self.path = None if path is None else Path(path)
        self.kind, self.settings, self.resume = kind, settings, resume
        self.columns = None if columns is None else list(columns)
        self.world = where or world()
        if resume and self.path is None:
            raise InvalidArgument("resume", f"resume=True needs a file to continue ({kind} writes no journal here)")
        if self.path is not None and not resume and (written(self.path) or written(rank_file(self.path, self.world))):
            raise OutputExists(f"{self.path}: exists; pass resume=True to continue that run, or {exists_hint}")
        self._journal: _JournalFile | None = None

    @property
    def rank_path(self) -> Path | None:
        """This process's journal: ``path`` itself, or ``path.rank<r>-of-<N>`` under torchrun."""
        return None if self.path is None else rank_file(self.path, self.world)

    def rank_settings(self, rank: int | None = None) -> dict:
        """The settings a rank's journal records: ``settings``, plus ``rank`` and ``world_size`` under torchrun."""
        if not self.world.distributed:
            return self.settings
        return {**self.settings, "rank": self.world.rank if rank is None else rank, "world_size": self.world.size}

    def done(self) -> Iterator[dict]:
        """The records this process's journal already holds (none unless ``resume``), in the order written.

        Checks the settings at once (:class:`~camloc.errors.ResumeError` if they differ) and drops a
        record cut off by a kill; the records are read as they are asked for. Call before entering.
        """
        part = self.rank_path
        if not self.resume or part is None:
            return iter(())
        if not written(part):
            log.warning("%s: no journal to resume; starting afresh", part)
            return iter(())
        return _counted(self._read(part, self.rank_settings()), part)

    def _read(self, path: Path, settings: dict) -> Iterator[dict]:
        if self.columns is None:
            return LineJournal.read(path, self.kind, settings)
        return CsvJournal.read(path, self.kind, settings, self.columns)

    def _open(self, path: Path | None, settings: dict) -> _JournalFile:
        if self.columns is None:
            return LineJournal(path, self.kind, settings)
        return CsvJournal(path, self.kind, settings, self.columns)

    def __enter__(self) -> Run:
        self._journal = self._open(self.rank_path, self.rank_settings()).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._journal is not None:
            self._journal.__exit__(*exc)
            self._journal = None

    def write(self, record: dict) -> None:
        """Append one record to this process's journal (inside the ``with`` block)."""
        assert self._journal is not None, "write() inside `with run:`"
        self._journal.write(record)

    def flush(self) -> None:
        """Make the records written so far durable (fsync): call once per batch."""
        assert self._journal is not None, "flush() inside `with run:`"
        self._journal.flush()

    def merge(self, key: Callable[[dict], int], expected: int | None = None) -> None:
        """Under torchrun: wait for every rank, then rank 0 writes ``path`` from the ranks' journals (then removed).

        Each rank's records are in the run's order, ``key`` (a record -> its position in the run);
        the merged file holds them all in that order, as one process writes it, atomically. In a
        world of one (or without a ``path``) this does nothing. Call on every rank.

        Raises:
            ResumeError: a rank's records are out of order, or (with ``expected``, the run's number of
                records) some are missing: the ranks' files are then left as they are.
        """
        if self.path is None or not self.world.distributed:
            return
        barrier()
        if not self.world.is_main:
            return
        size = self.world.size
        parts = [rank_file(self.path, World(r, size)) for r in range(size)]

        def tagged(r: int) -> Iterator[tuple[int, int, dict]]:
            return ((key(record), r, record) for record in self._read(parts[r], self.rank_settings(r)))

        streams = [tagged(r) for r in range(size)]
        count, last = 0, -1
        with atomic_path(self.path) as tmp:
            try:
                with self._open(tmp, self.settings) as merged:
                    for position, r, record in heapq.merge(*streams, key=lambda t: t[0]):
                        if position <= last:
                            raise ResumeError(f"{parts[r]}: its records are not rank {r}'s images in the run's order")
                        count, last = count + 1, position
                        merged.write(record)
                    if expected is not None and count != expected:
                        raise ResumeError(f"{self.path}: the ranks' journals record {count} images of {expected}")
                    merged.flush()
                if self.columns is not None:  # the settings before the rows, as a fresh journal has them
                    os.replace(sidecar(tmp), sidecar(self.path))
            finally:
                sidecar(tmp).unlink(missing_ok=True)
        for part in parts:
            part.unlink()
            sidecar(part).unlink(missing_ok=True)

    def records(self) -> Iterator[dict]:
        """The records of the whole run's journal at ``path`` (after :meth:`merge`; rank 0), in order."""
        if self.path is None or not written(self.path):
            return iter(())
        return self._read(self.path, self.settings)
