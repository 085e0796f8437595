"""The CAM authors' released box generator, re-implemented from its source.

Zhou et al. (CVPR 2016) describe their boxes as "the box covering the largest connected component
of the regions above 20 % of the CAM's max". The code they released for the ILSVRC numbers
(repository zhoubolei/CAM) does something else, and this module follows that code:

* ``ILSVRC_generate_heatmap.m`` / ``mergeTenCrop.m``: heat map = sum over the ten crops of |CAM|,
  resized to the image size, divided by its max (no min subtraction), written as a uint8 JPEG
  by ``imwrite``  -> :func:`authors_heatmap`.
* ``bboxgenerator/dt_box.cpp`` + ``bboxgenerator/dt.c``, called as ``dt_box heat.jpg 20 100 110 out.txt``
  by ``generate_bbox.m`` and ``ILSVRC_evaluate_bbox.m``  -> :func:`authors_rects` (the numbers
  ``dt_box`` prints) and :func:`authors_boxes` (the same, as (x0, y0, x1, y1)).
* ``ILSVRC_evaluate_bbox.m``, ``predictionResult_bboxCombine`` (the "heuristics" top-5 entry):
  boxes 1 and 2 of class 1, boxes 1 and 2 of class 2, box 1 of class 3  -> :func:`authors_top5`.

The rules, as found in the source (``dt_box.cpp`` unless said otherwise):

1. Three thresholds, ``20 100 110`` from the MATLAB scripts (``dt_box``'s built-in defaults are
   ``30 90 150``; ``main`` keeps the command-line values only when ``0 < t0 < t1 < t2 < 255``,
   otherwise silently uses the defaults -- reproduced here, with a warning). For each threshold
   ``cvThreshold(gray, b, t, 255, CV_THRESH_BINARY)``: a pixel is foreground when ``gray > t``
   (strictly greater).
2. ``dt_binary`` (``dt.c``): foreground pixels start at ``INF = 1e20``, background at 0, then
   Felzenszwalb & Huttenlocher's separable lower-envelope transform (columns first, then rows) gives
   the squared Euclidean distance to the nearest *background pixel*; the image edge is NOT
   background (a blob touching the edge is not eroded from that side). ``sqrt``; then
   ``double_to_image`` rescales with ``scale = 255 / (max - min)``, ``t = (int)(d * scale + 0.5)``,
   clamped to 0..255 (``d`` is not shifted by ``min``; ``min`` is 0 whenever there is background).
   If ``max == min`` the 8-bit image is left untouched (still the 0/255 binary map).
3. ``cvThreshold(b, b, 10, 255, CV_THRESH_BINARY)``: keep pixels whose rescaled distance is > 10,
   i.e. ``round(255 d / d_max) >= 11``, ``d >= 10.5/255 d_max`` (about 4.1 % of the deepest
   pixel of that threshold's map -- all blobs of a map share one ``d_max``). The erosion is relative:
   with ``d_max <= 24.28`` no pixel is removed (d = 1 still maps to >= 10.5).
4. ``cv::findContours(b, RETR_CCOMP, CHAIN_APPROX_SIMPLE)`` and ``cv::boundingRect`` of *every*
   contour of every threshold, hole contours included (a hole's rectangle is the hole grown by one
   pixel on each side).
5. Clamping (``getBBox``, ``LIMIT(v, L, R) = v < L ? L : (v > R ? R : v)``)::

       x = LIMIT(bx, 0, W-5)      w = LIMIT(bw, 0, W - bx - 5)
       y = LIMIT(by, 0, H-5)      h = LIMIT(bh, 0, H - by - 5)

   The width limit uses the unclamped ``bx``; when ``bx > W-5`` the upper limit is negative and
   wins, so ``w`` (``h``) comes out NEGATIVE. ``ILSVRC_evaluate_bbox.m`` repairs that with
   ``[min(x, x+w), min(y, y+h), max(x, x+w), max(y, y+h)]``.
6. ``rankBBox``: ``std::sort`` by ``w*h`` (clamped values), largest first.
7. ``mergeBBox``: for i = 0, 1, ...: for j = i+1, ...: if ``big_overlap(i, j)`` erase j -- and the
   loop's ``++j`` then skips the box that slid into slot j, so that box is not compared with i in
   this pass. ``big_overlap``: ``overlap > (int)(0.5 * max(area_i, area_j))`` (strictly greater),
   with ``overlap = max(0, min(x+w) - max(x)) * max(0, min(y+h) - max(y))`` on half-open
   rectangles. Consequence: three identical boxes (one blob seen at all three thresholds) leave TWO
   identical boxes, and a box right after a removed one survives even if it overlaps box i.
8. Output: ``x y w h`` per box in that order (0-based OpenCV pixel coordinates, ``w``/``h`` as in
   ``cv::Rect``); MATLAB turns each into ``[x, y, x+w, y+h]`` (min/max repaired) and hands those
   numbers unchanged to the ILSVRC devkit, whose IoU is pixel-inclusive.

Where cv2 differs from the OpenCV the authors built against (``cvLoadImage``, IplImage: OpenCV 2.x,
before 3.2):

* OpenCV <= 3.1 ``cvStartFindContours`` zeroed the 1-pixel frame of the image ("make zero borders")
  before tracing, so foreground on the first/last row/column was ignored; since 3.2 (opencv PR
  #7516) ``cv::findContours`` pads with zeros instead. ``zero_border=True`` (default) clears the frame
  ourselves to get the old behaviour.
* ``std::sort`` is not stable (libstdc++ insertion-sorts ranges of <= 16, which is stable, and
  introsorts longer ones); equal-area boxes keep their contour order here (stable sort), and the
  contour order itself may differ between OpenCV versions. Only equal-area, overlapping, non-identical
  boxes can be affected.
* ``(int)`` of a double beyond ``INT_MAX`` is undefined in C (x86-64 ``cvttsd2si`` gives ``INT_MIN``,
  which ``BOUND_8U`` maps to 0); we reproduce the x86-64 result, but it does not arise: with at least
  one background pixel the distances are exact small integers' square roots, and with none every
  pixel keeps exactly 1e20 (its own parabola), ``max == min``, and the layer stays all 255 -- one box
  for the whole frame (checked on all-foreground maps up to 3000 px a side). The transform below
  repeats dt.c's double arithmetic operation for operation.
* The authors' heat maps went through JPEG (``imwrite(..., '.jpg')``, MATLAB's default quality 75)
  before ``dt_box`` read them back with ``cvLoadImage(file, 0)``; :func:`authors_heatmap` can emulate
  that with ``jpeg_quality=75`` (OpenCV's libjpeg, not MATLAB's: values may differ slightly).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from ..errors import InvalidArgument
from .box import Box

__all__ = [
    "AUTHORS_THRESHOLDS",
    "DT_BOX_DEFAULT_THRESHOLDS",
    "authors_boxes",
    "authors_heatmap",
    "authors_layers",
    "authors_rects",
    "authors_top5",
    "rect_to_box",
]

Rect = tuple[int, int, int, int]  # x, y, w, h as dt_box prints them

#: ``bbox_threshold = [20, 100, 110]`` in generate_bbox.m and ILSVRC_evaluate_bbox.m.
AUTHORS_THRESHOLDS: tuple[int, int, int] = (20, 100, 110)
#: ``static int g_Ths[SCALE_NUM] = {30, 90, 150}`` in dt_box.cpp (used when the given ones are rejected).
DT_BOX_DEFAULT_THRESHOLDS: tuple[int, int, int] = (30, 90, 150)

_INT_MIN = -(2**31)


# --------------------------------------------------------------------------------------------
# heat map (ILSVRC_generate_heatmap.m, mergeTenCrop.m)


def authors_heatmap(cam: np.ndarray, jpeg_quality: int | None = None) -> np.ndarray:
    """The uint8 heat map ``dt_box`` reads, from a float map already at the image size.

    ``ILSVRC_generate_heatmap.m``: ``alignImgMean = single(...)``, ``imresize`` to the image size,
    ``alignImgMean ./ max(alignImgMean(:))`` -- max only, no min subtraction -- then ``imwrite`` to a
    JPEG. ``imwrite`` of single data clips to [0, 1] and scales by 255 rounding half up (im2uint8),
    so negative values become 0; NaN becomes 0 (MATLAB's uint8(NaN)). The authors' maps are
    non-negative by construction: ``mergeTenCrop.m`` sums ``abs`` of the crops' CAMs before the
    resize, so only bicubic undershoot is clipped there; pass ``|CAM|`` to follow them.
    The division is done in float32 (MATLAB single). A map whose max is not positive and finite has
    no MATLAB answer worth copying (division by 0 or a sign flip); it gives zeros here.

    ``jpeg_quality``: if given, round-trip the uint8 map through OpenCV's JPEG codec at that quality
    (MATLAB's ``imwrite`` default is 75) to mimic the file ``dt_box`` actually read.
    """
    a = np.asarray(cam, dtype=np.float32)
    if a.ndim != 2:
        raise InvalidArgument("cam", f"authors_heatmap takes one (H, W) map, got shape {a.shape}")
    finite = a[np.isfinite(a)]
    top = float(finite.max()) if finite.size else 0.0
    if not top > 0.0:
        out = np.zeros(a.shape, dtype=np.uint8)
    else:
        x = a / np.float32(top)
        x = np.where(np.isnan(x), np.float32(0.0), x)
        x = np.clip(x, 0.0, 1.0).astype(np.float64)
        out = np.floor(x * 255.0 + 0.5).astype(np.uint8)
    if jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", out, [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out = np.asarray(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE), dtype=np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# distance transform (bboxgenerator/dt.c)


def _dt_binary(b: np.ndarray) -> np.ndarray:
    """dt.c ``dt_binary`` on a 0/255 uint8 map: returns the new uint8 map (rescaled distances)."""
    foreground = b > 0
    if foreground.all() or not foreground.any():  # dt.c's map is constant: double_to_image writes nothing
        return b.copy()
    # dt.c's lower-envelope transform gives exactly the squared Euclidean distance to the nearest
    # background pixel (tests/dt_reference.py ports it and checks this); scipy computes the same.
    m = ndimage.distance_transform_edt(foreground)
    mi, ma = float(m.min()), float(m.max())
    scale = 255.0 / (ma - mi)
    s = m * scale + 0.5
    with np.errstate(invalid="ignore"):
        t = np.where(s >= 2.0**31, _INT_MIN, np.trunc(s))  # (int)(s + 0.5), x86-64 overflow -> INT_MIN
    return np.clip(t, 0, 255).astype(np.uint8)  # BOUND_8U


# --------------------------------------------------------------------------------------------
# dt_box.cpp


def _check_thresholds(thresholds: Sequence[int]) -> tuple[int, int, int]:
    if len(thresholds) != 3:
        raise InvalidArgument("thresholds", f"dt_box takes exactly three thresholds (SCALE_NUM 3), got {thresholds!r}")
    t0, t1, t2 = (int(t) for t in thresholds)  # atoi
    if 0 < t0 < t1 < t2 < 255:
        return t0, t1, t2
    warnings.warn(
        f"dt_box ignores thresholds {thresholds!r} (it needs 0 < t0 < t1 < t2 < 255) and uses its "
        f"defaults {DT_BOX_DEFAULT_THRESHOLDS}",
        stacklevel=3,
    )
    return DT_BOX_DEFAULT_THRESHOLDS


def _as_gray(heatmap_u8: np.ndarray) -> np.ndarray:
    g = np.asarray(heatmap_u8)
    if g.ndim != 2 or g.dtype != np.uint8:
        raise InvalidArgument(
            "heatmap_u8", f"dt_box reads one 8-bit gray image: need a (H, W) uint8 array, got {g.dtype} {g.shape}"
        )
    return g


def authors_layers(heatmap_u8: np.ndarray, thresholds: Sequence[int] = AUTHORS_THRESHOLDS) -> list[np.ndarray]:
    """``fromDT``: for each threshold t, ``gray > t`` (0/255), ``dt_binary``, then ``> 10`` (0/255)."""
    g = _as_gray(heatmap_u8)
    out = []
    for t in _check_thresholds(thresholds):
        b = np.where(g > t, 255, 0).astype(np.uint8)
        b = _dt_binary(b)
        out.append(np.where(b > 10, 255, 0).astype(np.uint8))
    return out


def _limit(v: int, lo: int, hi: int) -> int:
    return lo if v < lo else (hi if v > hi else v)


def _clamped_rects(layers: list[np.ndarray], zero_border: bool) -> list[Rect]:
    """``getBBox``: bounding rectangles of all RETR_CCOMP contours of all layers, clamped."""
    rects: list[Rect] = []
    for layer in layers:
        h_img, w_img = layer.shape
        a = layer.copy()
        if zero_border:  # OpenCV <= 3.1 cvStartFindContours: "make zero borders"
            a[0, :] = 0
            a[-1, :] = 0
            a[:, 0] = 0
            a[:, -1] = 0
        contours, _ = cv2.findContours(a, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            bx, by, bw, bh = (int(u) for u in cv2.boundingRect(c))
            rects.append(
                (
                    _limit(bx, 0, w_img - 5),
                    _limit(by, 0, h_img - 5),
                    _limit(bw, 0, w_img - bx - 5),
                    _limit(bh, 0, h_img - by - 5),
                )
            )
    return rects


def _big_overlap(a: Rect, b: Rect) -> bool:
    """dt_box.cpp ``big_overlap``: overlap area > (int)(0.5 * larger area), half-open rectangles."""
    t = int(float(max(a[2] * a[3], b[2] * b[3])) * 0.5)  # C cast truncates toward 0
    x11, y11, x12, y12 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    x21, y21, x22, y22 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    xo = max(0, min(x12, x22) - max(x11, x21))
    yo = max(0, min(y12, y22) - max(y11, y21))
    return xo * yo > t


def _rank_and_merge(rects: list[Rect]) -> list[Rect]:
    """``rankBBox`` (by w*h, largest first; stable here) then ``mergeBBox`` with its skip-after-erase."""
    out = sorted(rects, key=lambda r: -(r[2] * r[3]))
    i = 0
    while i < len(out):
        j = i + 1
        while j < len(out):
            if _big_overlap(out[i], out[j]):
                del out[j]
            j += 1  # the for loop's ++j runs after the erase as well
        i += 1
    return out


def authors_rects(
    heatmap_u8: np.ndarray, thresholds: Sequence[int] = AUTHORS_THRESHOLDS, *, zero_border: bool = True
) -> list[Rect]:
    """The ``x y w h`` quadruples ``dt_box`` writes, in its output order.

    0-based; w, h may be 0 or negative after its clamping. See the module docstring for every rule.
    """
    layers = authors_layers(heatmap_u8, thresholds)
    return _rank_and_merge(_clamped_rects(layers, zero_border))


def rect_to_box(rect: Rect, convention: str = "devkit") -> Box:
    """One ``dt_box`` rectangle as (x0, y0, x1, y1), inclusive, 0-based.

    ``"devkit"``: ``ILSVRC_evaluate_bbox.m``'s numbers ``[min(x, x+w), min(y, y+h), max(x, x+w),
    max(y, y+h)]`` exactly; the ILSVRC devkit (and camloc) read them as inclusive pixel coordinates,
    so the evaluated box is one pixel wider and taller than the OpenCV rectangle -- this is what the
    authors scored. ``"pixels"``: the pixels the rectangle covers, x1 = x + w - 1 (for a clamped
    width <= 0, the span [x+w, x) shrunk to at least one pixel).
    """
    x, y, w, h = rect
    x0, x1 = min(x, x + w), max(x, x + w)
    y0, y1 = min(y, y + h), max(y, y + h)
    if convention == "devkit":
        return x0, y0, x1, y1
    if convention == "pixels":
        return x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)
    raise InvalidArgument("convention", f"convention must be 'devkit' or 'pixels', got {convention!r}")


def authors_boxes(
    heatmap_u8: np.ndarray,
    thresholds: Sequence[int] = AUTHORS_THRESHOLDS,
    *,
    zero_border: bool = True,
    convention: str = "devkit",
) -> list[Box]:
    """``dt_box``'s boxes, in its output order (largest first, after suppression), as inclusive (x0, y0, x1, y1).

    0-based. See :func:`rect_to_box` for ``convention`` and the module docstring for
    the rules. ``heatmap_u8`` is the (H, W) uint8 map (:func:`authors_heatmap`).
    """
    return [rect_to_box(r, convention) for r in authors_rects(heatmap_u8, thresholds, zero_border=zero_border)]


# --------------------------------------------------------------------------------------------
# ILSVRC_evaluate_bbox.m


_TOP5_PLAN = ((0, 0), (0, 1), (1, 0), (1, 1), (2, 0))


def authors_top5(boxes_per_class: Sequence[Sequence[Box]], *, missing: Box | None = None) -> list[tuple[int, Box]]:
    """The "heuristics" (``predictionResult_bboxCombine``) top-5 guesses of ``ILSVRC_evaluate_bbox.m``.

    For each predicted class j = 1..5 the script appends box 1 then box 2 of that class's ``dt_box``
    output, then keeps the first 5 tuples: (class 1, box 1), (class 1, box 2), (class 2, box 1),
    (class 2, box 2), (class 3, box 1). Returned as ``[(class_rank, box), ...]`` with class_rank
    0-based (index into ``boxes_per_class``, ordered by score); boxes are passed through unchanged.

    Fewer boxes than needed: the script has no rule -- ``boxData_formulate(2,:)`` with one box, or
    ``dlmread`` of an empty file, stops MATLAB with an error. Here a class with a single box repeats
    it as its second guess; a class with no box uses ``missing`` if given, else ValueError.
    """
    if len(boxes_per_class) < 3:
        raise InvalidArgument("boxes_per_class", f"need the box lists of the top-3 classes, got {len(boxes_per_class)}")
    out: list[tuple[int, Box]] = []
    for c, i in _TOP5_PLAN:
        boxes = boxes_per_class[c]
        if len(boxes) == 0:
            if missing is None:
                raise InvalidArgument("missing", f"class rank {c} has no box and no 'missing' box was given")
            out.append((c, _as_box(missing)))
        else:
            out.append((c, _as_box(boxes[min(i, len(boxes) - 1)])))
    return out


def _as_box(b: Sequence[int]) -> Box:
    x0, y0, x1, y1 = b
    return x0, y0, x1, y1
