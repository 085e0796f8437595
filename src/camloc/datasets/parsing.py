"""Checked parsing of metadata files.

Every problem is a one-line :class:`~camloc.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..box import Box
from ..errors import DatasetError

__all__ = ["check_box", "check_size", "parse_float", "parse_int", "read_lines", "split_fields"]


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of each non-blank line of a UTF-8 text file."""
    if not path.is_file():
        raise DatasetError("missing metadata file", path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DatasetError("not valid UTF-8 text", path, n) from None
        if text:
            yield n, text


def parse_int(text: str, what: str, path: str | os.PathLike, line: int | None) -> int:
    """``int(text)``, or a :class:`DatasetError` naming the field ``what`` at ``path``, ``line``."""
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{what} is not an integer: {text!r}", path, line) from None


def parse_float(text: str, what: str, path: Path, line: int) -> float:
    """``float(text)`` when finite, or a :class:`DatasetError` naming the field ``what`` at ``path``, ``line``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise DatasetError(f"{what} is not a number: {text!r}", path, line)
    return value


def split_fields(
    text: str, sep: str | None, count: int, layout: str, path: Path, line: int, rest: bool = False
) -> list[str]:
    """Split ``text`` into exactly ``count`` stripped fields, or raise a :class:`DatasetError`.

    With ``rest`` the last field takes the rest of the line (a name or path with spaces). ``sep``
    is the separator (None: runs of whitespace) and ``layout`` describes the expected fields in the message.
    """
    parts = text.split(sep, count - 1) if rest else text.split(sep)
    parts = [p.strip() for p in parts]
    if len(parts) != count:
        raise DatasetError(f"expected {count} fields ({layout}), got {len(parts)}", path, line)
    return parts


def check_box(box: Box, size: tuple[int, int] | None, path: str | os.PathLike, line: int | None) -> None:
    """Raise a :class:`DatasetError` for a box that is invalid, or lies outside an image of ``size``.

    A box with a negative coordinate is rejected; so is one with ``x1 < x0`` or ``y1 < y0``, unless
    its start already lies outside the image of known ``size`` (then it is reported as outside).

    Args:
        box: ``(x0, y0, x1, y1)``, inclusive.
        size: the image's ``(width, height)``, or None when unknown (then only the box itself is checked).
        path: the metadata file, for the message.
        line: its line, or None.
    """
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0:
        raise DatasetError(f"box {box} starts outside the image (negative coordinate)", path, line)
    if x1 < x0 or y1 < y0:
        if size is None or (x0 < size[0] and y0 < size[1]):
            raise DatasetError(f"box {box} has x1 < x0 or y1 < y0", path, line)
    if size is not None:
        w, h = size
        if max(x0, x1) >= w or max(y0, y1) >= h:
            raise DatasetError(
                f"box {box} lies outside the {w}x{h} image (inclusive coordinates: x1 <= {w - 1}, y1 <= {h - 1})",
                path,
                line,
            )


def check_size(w: int, h: int, path: str | os.PathLike, line: int | None) -> tuple[int, int]:
    """``(w, h)`` when both are positive, else a :class:`DatasetError` at ``path``, ``line``."""
    if w <= 0 or h <= 0:
        raise DatasetError(f"image size {w}x{h} is not positive", path, line)
    return w, h
