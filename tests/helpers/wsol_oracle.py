"""The plain per-threshold OpenCV implementation of wsolevaluation's box rule: the tests' oracle.

Written from the protocol's definition (Choe et al., CVPR 2020): for each threshold, keep pixels of
the uint8 map strictly greater than int(tau * max), find contours with RETR_TREE +
CHAIN_APPROX_SIMPLE, box each with boundingRect as [x, y, x + w, y + h] clipped to W-1 / H-1.
V1 keeps the contour of largest cv2.contourArea (first on ties, as Python's max does); V2 keeps
every contour, holes included. No contour gives the box [0, 0, 0, 0].
"""

import cv2
import numpy as np


def levels(gray: np.ndarray, step: float = 0.01) -> np.ndarray:
    """int(tau * max(gray)) for tau in np.arange(0, 1, step), as wsolevaluation computes them."""
    top = np.max(gray)
    return np.array([int(t * top) for t in np.arange(0, 1, step)], dtype=np.int64)


def iou(box, gt) -> float:
    """Pixel-inclusive IoU, as wsolevaluation's calculate_multiple_iou (degenerate -> 0)."""
    iw = max(0, min(box[2], gt[2]) - max(box[0], gt[0]) + 1)
    ih = max(0, min(box[3], gt[3]) - max(box[1], gt[1]) + 1)
    inter = iw * ih
    union = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) + (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1) - inter
    return 0.0 if union <= 0 else inter / union


def boxes_at(gray: np.ndarray, level: int) -> tuple[list, list]:
    """(V1 boxes, V2 boxes) at one threshold level."""
    h, w = gray.shape
    _, binary = cv2.threshold(gray, level, 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]], [[0, 0, 0, 0]]

    def box(c):
        x, y, bw, bh = cv2.boundingRect(c)
        return [x, y, min(x + bw, w - 1), min(y + bh, h - 1)]

    return [box(max(contours, key=cv2.contourArea))], [box(c) for c in contours]


def best_ious(gray: np.ndarray, level_list, gt_boxes) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold level: the best IoU with any GT box of the V1 box, and of any V2 box."""
    v1, v2 = [], []
    for level in level_list:
        b1, b2 = boxes_at(gray, int(level))
        v1.append(max(iou(b, g) for b in b1 for g in gt_boxes))
        v2.append(max(iou(b, g) for b in b2 for g in gt_boxes))
    return np.array(v1), np.array(v2)
