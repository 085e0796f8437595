"""Boxes from maps: the paper's rule, wsolevaluation's threshold sweep, and the CAM authors' generator.

Boxes are ``(x0, y0, x1, y1)`` with inclusive, 0-based pixel coordinates (:mod:`camloc.box`).
:func:`boxes` is the front door: one box per map of a ``Tensor[N, k, h, w]`` batch, by rule name,
in the photo's pixels when given the geometry (:mod:`camloc.boxes.api`). Its one-map forms:
:func:`paper_box` (the paper's rule), :func:`minmax_box`, :func:`wsol_box`, and :func:`rule_boxes`
(which also draws several boxes per map). :mod:`camloc.boxes.wsol` and :mod:`camloc.boxes.sweep` are
wsolevaluation's protocol (every threshold of a map in one pass); :mod:`camloc.boxes.authors` is the
box generator the CAM authors released.
"""

from typing import TYPE_CHECKING

from ..utils import lazy_exports

_EXPORTS = {
    "ONE_BOX_RULES": ".api",
    "boxes": ".api",
    "Box": ".box",
    "enclosing_box": ".box",
    "scale_box": ".box",
    "minmax_box": ".paper",
    "paper_box": ".paper",
    "paper_boxes": ".paper",
    "wsol_gray": ".wsol",
    "wsol_levels": ".wsol",
    "wsol_minmax": ".wsol",
    "wsol_resized": ".wsol",
    "wsol_scoremap": ".wsol",
    "wsol_best_ious": ".sweep",
    "wsol_best_ious_batch": ".sweep",
    "authors_boxes": ".authors",
    "authors_heatmap": ".authors",
    "authors_top5": ".authors",
    "BOX_RULES": ".rules",
    "box_score": ".rules",
    "component_boxes": ".rules",
    "rule_boxes": ".rules",
    "wsol_box": ".rules",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .api import ONE_BOX_RULES as ONE_BOX_RULES
    from .api import boxes as boxes
    from .authors import authors_boxes as authors_boxes
    from .authors import authors_heatmap as authors_heatmap
    from .authors import authors_top5 as authors_top5
    from .box import Box as Box
    from .box import enclosing_box as enclosing_box
    from .box import scale_box as scale_box
    from .paper import minmax_box as minmax_box
    from .paper import paper_box as paper_box
    from .paper import paper_boxes as paper_boxes
    from .rules import BOX_RULES as BOX_RULES
    from .rules import box_score as box_score
    from .rules import component_boxes as component_boxes
    from .rules import rule_boxes as rule_boxes
    from .rules import wsol_box as wsol_box
    from .sweep import wsol_best_ious as wsol_best_ious
    from .sweep import wsol_best_ious_batch as wsol_best_ious_batch
    from .wsol import wsol_gray as wsol_gray
    from .wsol import wsol_levels as wsol_levels
    from .wsol import wsol_minmax as wsol_minmax
    from .wsol import wsol_resized as wsol_resized
    from .wsol import wsol_scoremap as wsol_scoremap
