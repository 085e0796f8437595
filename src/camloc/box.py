"""Boxes: ``(x0, y0, x1, y1)`` with inclusive, 0-based pixel coordinates, everywhere in camloc.

The type and its two helpers sit at the bottom of the package, importing nothing heavy, so that the
dataset readers can name a box without depending on the box rules (:mod:`camloc.boxes`) above them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["Box", "enclosing_box", "scale_box"]

Box = tuple[int, int, int, int]


def scale_box(box: Sequence[float], size: tuple[int, int], to: tuple[int, int]) -> Box:
    """A box from an image of ``size`` (w, h) into a ``to`` (w, h) frame, truncating as wsolevaluation does.

    Example:
        >>> scale_box((10, 20, 99, 149), (100, 150), (224, 224))
        (22, 29, 221, 222)
    """
    (w, h), (tw, th) = size, to
    x0, y0, x1, y1 = (float(v) for v in box)
    return int(x0 * tw / w), int(y0 * th / h), int(x1 * tw / w), int(y1 * th / h)


def enclosing_box(boxes: Iterable[Sequence[int]]) -> Box | None:
    """The smallest box holding every box of ``boxes``; None when there is none.

    Example:
        >>> enclosing_box([(5, 5, 10, 10), (0, 7, 6, 20)])
        (0, 5, 10, 20)
    """
    items = [tuple(int(v) for v in b) for b in boxes]
    if not items:
        return None
    return min(b[0] for b in items), min(b[1] for b in items), max(b[2] for b in items), max(b[3] for b in items)
