"""What the survey makes of one method on one model: exact / linearized / ok, refused, crashed or wrong.

Used by ``benchmarks/survey_models.py`` (and tested by ``tests/test_survey_models.py``): the verdict
comes from the method's output alone, through camloc's public API (``camloc.CAM``, ``camloc.GradCAM``,
``CamOutput.raw`` / ``.logits``, ``camloc.errors.CamlocError``), so it holds for any version of camloc.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

CAM_OUTCOMES = ("exact", "linearized", "refused", "crashed", "wrong", "skipped")
GRADCAM_OUTCOMES = ("ok", "refused", "crashed", "wrong", "skipped")
# Relative to the largest logit. An affine head leaves float32 noise of ~1e-7 (timm CNNs, Swin, ViT, MaxViT on 224x224);
# the least nonlinear head seen, MobileNetV3's conv + hardswish after pooling, 1.5e-4.
TOLERANCE = 1e-5
DISTINCT = 1e-2  # logits of two images further apart than this (relative) tell an affine head from a nonlinear one


@dataclass
class Outcome:
    """One method on one model: the verdict, its one-line reason, the grid of the maps, the time per image."""

    outcome: str
    detail: str = ""
    grid: tuple[int, int] | None = None
    ms_per_image: float | None = None


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an unexpected exception; the message alone for a refusal."""
    from camloc.errors import CamlocError

    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return text if isinstance(error, CamlocError) else f"{type(error).__name__}: {text}".rstrip(": ")


def failed(error: BaseException) -> Outcome:
    """``refused`` for a :class:`camloc.errors.CamlocError` (camloc said no, in one line), else ``crashed``."""
    from camloc.errors import CamlocError

    return Outcome("refused" if isinstance(error, CamlocError) else "crashed", one_line(error))


def grid_problem(raw: Tensor, batch: int, k: int, expected: Iterable[tuple[int, int]] | None) -> str | None:
    """Why ``raw`` is not ``Tensor[batch, k, h, w]`` of finite values on one of the ``expected`` grids (None: it is)."""
    if raw.ndim != 4 or tuple(raw.shape[:2]) != (batch, k):
        return f"raw maps of shape {tuple(raw.shape)}, not ({batch}, {k}, h, w)"
    if not torch.isfinite(raw).all():
        return "raw maps with NaN or infinite values"
    grids = list(expected) if expected is not None else None
    grid = tuple(raw.shape[-2:])
    if grids and grid not in grids:
        return f"raw maps of shape {tuple(raw.shape)}: grid {grid[0]}x{grid[1]}, the last stage is {show_grids(grids)}"
    return None


def show_grids(grids: Iterable[tuple[int, int]]) -> str:
    return " or ".join(f"{h}x{w}" for h, w in grids)


def ms_per_image(fn: Callable[[], object], batch: int) -> float | None:
    """Milliseconds per image of one call of ``fn`` on a batch, None if it fails this time.

    The caller has already run it once: tracing and first-call costs are not timed.
    """
    t0 = time.perf_counter()
    try:
        fn()
    except Exception:  # noqa: BLE001 - the verdict came from the first call; no time then
        return None
    return (time.perf_counter() - t0) * 1000 / batch


def classify_cam(
    model: nn.Module, x: Tensor, expected: Iterable[tuple[int, int]] | None, *, classes: int = 3, timing: bool = True
) -> Outcome:
    """``camloc.CAM(model)(x)`` judged: exact, linearized, refused, crashed or wrong.

    Exact means the head is linear (affine) after pooling: for every image and class the spatial
    mean of the raw map plus one per-class constant (the classifier's bias) is the logit. So the
    offset ``logit - mean(map)`` must be the same for every image of the batch (a linearized head,
    e.g. a LayerNorm before the classifier, gives a different offset per image). Random weights can
    make two images' logits nearly equal, and then every offset too: in that case the offset must
    also equal the bias of the model's last ``nn.Linear`` with one output per class (an affine head
    such as BatchNorm + Linear is then called linearized). Maps on another grid than ``expected``
    (or of another shape, or not finite) are wrong.
    """
    import camloc

    n = x.shape[0]
    try:
        cam = camloc.CAM(model)
        chosen = [list(range(classes))] * n
        out = cam(x, classes=chosen)
    except Exception as e:  # noqa: BLE001 - every failure is a verdict here
        return failed(e)
    problem = grid_problem(out.raw, n, classes, expected)
    if problem is not None:
        return Outcome("wrong", problem, tuple(out.raw.shape[-2:]) if out.raw.ndim == 4 else None)
    grid = (int(out.raw.shape[-2]), int(out.raw.shape[-1]))
    ms = ms_per_image(lambda: cam(x, classes=chosen), n) if timing else None
    offset = out.logits.gather(1, out.classes) - out.raw.mean(dim=(2, 3))  # (N, k): the bias, if exact
    scale = max(1.0, float(out.logits.abs().max()))
    spread = float((offset - offset[:1]).abs().max()) / scale  # one offset for every image?
    if spread > TOLERANCE:
        return Outcome("linearized", f"logit - mean(map) differs between images by {spread:.1e} (relative)", grid, ms)
    bias = classifier_bias(model, out.logits.shape[1])
    off_bias = None if bias is None else float((offset - bias.to(offset)[out.classes]).abs().max()) / scale
    if float((out.logits - out.logits[:1]).abs().max()) / scale > DISTINCT:
        # The images' logits differ, the offset does not: the head is affine after pooling.
        detail = (
            "" if off_bias is None or off_bias <= TOLERANCE else "an affine head: the offset is not the Linear's bias"
        )
    elif off_bias is None:
        detail = "not checked: the images' logits are the same and no Linear layer was found"
    elif off_bias > TOLERANCE:  # the same logits for both images (random weights): the bias must tell
        return Outcome("linearized", f"logit - mean(map) is not the last Linear's bias ({off_bias:.1e})", grid, ms)
    else:
        detail = ""
    if not out.raw.any():
        detail = "all maps are zero"
    return Outcome("exact", detail, grid, ms)


def classifier_bias(model: nn.Module, num_classes: int) -> Tensor | None:
    """The bias of the model's last ``nn.Linear`` with ``num_classes`` outputs (zeros without one), if there is one."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not linears:
        return None
    last = linears[-1]
    return last.bias.detach() if last.bias is not None else torch.zeros(num_classes)


def classify_gradcam(
    model: nn.Module, x: Tensor, expected: Iterable[tuple[int, int]] | None, *, timing: bool = True
) -> Outcome:
    """``camloc.GradCAM(model)(x)`` judged: ok, refused, crashed or wrong (maps not on the last stage's grid)."""
    import camloc

    n = x.shape[0]
    try:
        method = camloc.GradCAM(model)
        out = method(x, classes=0)
    except Exception as e:  # noqa: BLE001 - every failure is a verdict here
        return failed(e)
    layer = f"layer {getattr(method, 'target_layer', None)}"
    problem = grid_problem(out.raw, n, 1, expected)
    if problem is not None:
        return Outcome("wrong", f"{problem} ({layer})", tuple(out.raw.shape[-2:]) if out.raw.ndim == 4 else None)
    ms = ms_per_image(lambda: method(x, classes=0), n) if timing else None
    return Outcome("ok", layer, (int(out.raw.shape[-2]), int(out.raw.shape[-1])), ms)
