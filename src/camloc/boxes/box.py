"""Boxes: ``(x0, y0, x1, y1)`` with inclusive, 0-based pixel coordinates, everywhere in camloc.

Defined in :mod:`camloc.box`, below the dataset readers; named here too, beside the rules that draw boxes.
"""

from ..box import Box, enclosing_box, scale_box

__all__ = ["Box", "enclosing_box", "scale_box"]
