"""Class tables: ``classes.txt`` of the csv layout and the ``classes=`` file of any format, read by one rule.

When every line is ``INDEX REST`` the indices must run 0..n-1 and REST is ``WNID NAME`` (WNID like
``n01440764``), a bare WNID, or a NAME (which may contain spaces and commas); otherwise each line, in
index order, is ``WNID [NAME]`` (e.g. ImageNet's ``LOC_synset_mapping.txt``) or a bare name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError, InvalidArgument
from .parsing import read_lines

__all__ = ["WNID", "ClassTable", "check_label", "load_class_table", "parse_class_table", "read_class_table"]

WNID = re.compile(r"n\d{8}")
_INDEXED = re.compile(r"(\d+)\s+(\S.*)")


@dataclass
class ClassTable:
    """A class table read by the module's rule.

    Attributes:
        names: the class names in index order (a class given by a bare WNID is named by it).
        wnids: each class's WordNet id, or None where the table gives none.
        source: where the table came from (a file path, or ``"classes="`` for a list of names), for messages.
    """

    names: list[str]
    wnids: list[str | None]
    source: str

    def index(self) -> dict[str, int]:
        """Name or WNID -> index; a key shared by two classes maps to -1 (ambiguous)."""
        out: dict[str, int] = {}
        for i, (name, wnid) in enumerate(zip(self.names, self.wnids, strict=True)):
            for key in {k for k in (name, wnid) if k is not None}:
                out[key] = -1 if key in out and out[key] != i else i
        return out

    @property
    def all_wnids(self) -> list[str] | None:
        """The WordNet ids of all classes, or None when some class has none."""
        return None if any(w is None for w in self.wnids) else list(self.wnids)  # type: ignore[arg-type]


def _split_entry(rest: str) -> tuple[str, str | None]:
    """``WNID NAME`` | ``WNID`` | ``NAME`` -> (name, wnid)."""
    head = rest.split(None, 1)[0]
    tail = rest[len(head) :].strip()
    if WNID.fullmatch(head):
        return (tail or head), head
    return rest.strip(), None


def parse_class_table(lines: list[tuple[int, str]], source: str, path: Path | None) -> ClassTable:
    """A class table from the lines of a class file, by the module's rule.

    Args:
        lines: ``(line number, stripped text)`` of each non-blank line, as
            :func:`~camloc.datasets.parsing.read_lines` gives them.
        source: the table's origin, kept as :attr:`ClassTable.source`.
        path: the file, for error messages.

    Raises:
        DatasetError: for an indexed table whose indices repeat or fall outside 0..n-1.
    """
    if lines and all(_INDEXED.fullmatch(text) for _, text in lines):
        entries: dict[int, tuple[str, str | None]] = {}
        for n, text in lines:
            m = _INDEXED.fullmatch(text)
            assert m is not None
            i = int(m.group(1))
            if i in entries:
                raise DatasetError(f"class index {i} appears twice", path, n)
            if i >= len(lines):
                raise DatasetError(f"class index {i} is outside 0..{len(lines) - 1}", path, n)
            entries[i] = _split_entry(m.group(2))
        pairs = [entries[i] for i in range(len(lines))]
    else:
        pairs = [_split_entry(text) for _, text in lines]
    return ClassTable([p[0] for p in pairs], [p[1] for p in pairs], source)


def load_class_table(classes: str | Path | Sequence[str]) -> ClassTable:
    """A class table from a class file, or from a list of entries (each ``WNID NAME``, ``WNID`` or ``NAME``).

    Raises:
        DatasetError: for an unreadable or malformed class file.
        InvalidArgument: for a list holding an empty name.
    """
    if isinstance(classes, (str, Path)):
        path = Path(classes)
        return parse_class_table(list(read_lines(path)), str(path), path)
    items = [str(c).strip() for c in classes]
    if any(not c for c in items):
        raise InvalidArgument("classes", "classes= holds an empty class name")
    pairs = [_split_entry(c) for c in items]
    return ClassTable([p[0] for p in pairs], [p[1] for p in pairs], "classes=")


def read_class_table(path: str | Path) -> tuple[list[str], list[str] | None]:
    """A class file read by the module's rule: (names in index order, WNIDs or None)."""
    table = load_class_table(Path(path))
    return table.names, table.all_wnids


def check_label(label: int, table: ClassTable | None, path: str | os.PathLike, line: int | None) -> None:
    """Raise a :class:`DatasetError` (at ``path``, ``line``) for a negative label or one outside ``table``."""
    if label < 0:
        raise DatasetError(f"class label {label} is negative", path, line)
    if table is not None and label >= len(table.names):
        raise DatasetError(
            f"unknown class: label {label} is outside 0..{len(table.names) - 1} ({table.source})", path, line
        )
