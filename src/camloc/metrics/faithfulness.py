"""Faithfulness of saliency maps: does the model's confidence follow the pixels a map ranks first?

Batched, pure torch, on the model's device. Everything works on the *normalized* model input (the
tensor the model is fed), as the reference implementations do.

Deletion / insertion (Petsiuk et al., "RISE", BMVC 2018)
    Pixels are ranked by saliency, highest first; equal saliencies keep index order (row-major
    position, first pixel first), NaN ranks last. Step ``i`` of ``steps`` (``i = 0 .. steps``) changes
    the first ``floor(i * H * W / steps)`` ranked pixels, all channels of a pixel together: step 0
    changes nothing, step ``steps`` changes every pixel. *Deletion* starts from the image and
    replaces pixels by a baseline; *insertion* starts from the baseline and puts the image's pixels
    back. The curve is the softmax probability of the explained class at the ``steps + 1`` points
    and its AUC is the trapezoid rule over x = i / steps in [0, 1]. Deletion: lower is better;
    insertion: higher is better.

    Baselines, as in the RISE authors' code (``evaluation.py`` / ``Evaluation.ipynb``, whose
    substrates act on the normalized tensor): deletion uses ``"zero"`` (zeros of the normalized input,
    i.e. the normalization mean colour) and insertion ``"blur"`` (the image convolved with an 11x11
    Gaussian of sigma 5, channel by channel, zero padding, as their ``conv2d(x, gkern(11, 5),
    padding=5)``; here the kernel is the sampled Gaussian normalized to sum 1). ``"mean"`` is each
    image's own per-channel mean. The RISE code steps by a fixed pixel count (224 px, 224 steps at
    224x224) and ranks with a reversed ``argsort`` (ties in reverse index order); here ``steps``
    equal fractions of the image and ties in index order.

Average drop / increase in confidence (Chattopadhyay et al., "Grad-CAM++", WACV 2018)
    The explanation map E is the map upsampled to the input and min-max normalized per map to
    [0, 1] (a constant map becomes all zeros, NaNs count as 0); the masked input is ``x * E``,
    multiplied in normalized-input space (so E = 0 gives the mean colour, as the "zero" baseline,
    and as Score-CAM's masking in :mod:`camloc.methods`). With Y the class probability on the image
    and O on the masked image: ``drop = max(0, Y - O) / Y`` and ``increase = O > Y``. Average drop
    (lower is better) and increase in confidence (higher is better) are their means x 100.

Which class: the callers choose. The RISE code explains and scores the model's top-1 class, and so
do Grad-CAM++'s objective tests: :func:`camloc.evaluation.evaluate_faithfulness` defaults to the predicted class and
can use the dataset label instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgument
from ..maps.core import output_tensor
from ..maps.frames import normalize_maps
from .state import Metric

__all__ = [
    "BASELINES",
    "RISE_BASELINES",
    "FaithfulnessMetrics",
    "average_drop_increase",
    "baseline_images",
    "check_images",
    "class_vector",
    "device_dtype",
    "maps_like",
    "deletion_insertion",
    "baseline_pair",
    "deletion_insertion_curves",
    "faithfulness_scores",
    "pixel_ranks",
    "trapezoid_auc",
]

Baseline = Literal["blur", "zero", "mean"]
BASELINES = ("blur", "zero", "mean")
RISE_BASELINES: tuple[Baseline, Baseline] = ("zero", "blur")  # (deletion, insertion), as the RISE code
BLUR_SIZE, BLUR_SIGMA = 11, 5.0
Model = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# building blocks


def device_dtype(model: Model, images: Tensor) -> tuple[torch.device, torch.dtype]:
    """Where and in which float type ``model`` runs: its first parameter's, else the images'."""
    if isinstance(model, nn.Module):
        p = next(model.parameters(), None)
        if p is not None:
            return p.device, (p.dtype if p.dtype.is_floating_point else images.dtype)
    return images.device, images.dtype


def class_vector(classes: int | Sequence[int] | Tensor, n: int, device: torch.device) -> Tensor:
    """``Tensor[n]`` of class indices from one index, n indices or an (n, 1) tensor."""
    t = torch.as_tensor(classes, dtype=torch.long).to(device)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise InvalidArgument(
            "classes", f"classes must be one index or one index per image ({n} images), got shape {tuple(t.shape)}"
        )
    return t


def maps_like(maps: Tensor, images: Tensor) -> Tensor:
    """(N, H, W) float maps at the images' resolution, from (N, H', W') or (N, 1, H', W')."""
    n, _, h, w = images.shape
    m = maps.to(images.device)
    if m.ndim == 4:
        if m.shape[1] != 1:
            raise InvalidArgument("maps", f"maps must hold one map per image, got shape {tuple(maps.shape)}")
        m = m[:, 0]
    if m.ndim != 3 or m.shape[0] != n:
        raise InvalidArgument(
            "maps", f"maps must be (N, H, W) or (N, 1, H, W) with N = {n}, got shape {tuple(maps.shape)}"
        )
    m = m.float()
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
    return m


def check_images(images: Tensor) -> None:
    """Refuse anything but an (N, C, H, W) batch."""
    if images.ndim != 4:
        raise InvalidArgument("images", f"images must be (N, C, H, W), got shape {tuple(images.shape)}")


def pixel_ranks(maps: Tensor) -> Tensor:
    """(N, H*W) rank of every pixel, 0 = most salient; ties in index order, NaN last."""
    flat = maps.flatten(1)
    flat = torch.where(torch.isnan(flat), torch.full_like(flat, -torch.inf), flat)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def _gaussian_blur(images: Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(images.device, images.dtype)
    c = images.shape[1]
    out = F.conv2d(images, g.view(1, 1, 1, size).expand(c, 1, 1, size), padding=(0, size // 2), groups=c)
    return F.conv2d(out, g.view(1, 1, size, 1).expand(c, 1, size, 1), padding=(size // 2, 0), groups=c)


def baseline_images(images: Tensor, baseline: Baseline) -> Tensor:
    """The substrate that removed pixels take: ``blur``, ``zero`` or ``mean`` (see the module doc)."""
    if baseline == "zero":
        return torch.zeros_like(images)
    if baseline == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images).clone()
    if baseline == "blur":
        return _gaussian_blur(images)
    raise InvalidArgument("baseline", f"baseline must be one of {', '.join(BASELINES)}, not {baseline!r}")


def baseline_pair(baseline: Baseline | tuple[Baseline, Baseline]) -> tuple[Baseline, Baseline]:
    """``(deletion, insertion)`` substrates from one name or a pair."""
    if isinstance(baseline, str):
        return baseline, baseline
    pair = tuple(baseline)
    if len(pair) != 2:
        raise InvalidArgument(
            "baseline", f"baseline must be one name or a (deletion, insertion) pair, got {baseline!r}"
        )
    return pair


def trapezoid_auc(curves: Tensor) -> Tensor:
    """Area under (..., steps + 1) curves sampled at x = 0, 1/steps, ..., 1 (trapezoid rule)."""
    steps = curves.shape[-1] - 1
    if steps < 1:
        raise InvalidArgument("curves", "a curve needs at least two points")
    return (curves.sum(-1) - (curves[..., 0] + curves[..., -1]) / 2) / steps


@torch.no_grad()
def _probabilities(
    model: Model, count: int, build: Callable[[Tensor], tuple[Tensor, Tensor]], chunk: int, device
) -> Tensor:
    """Class probabilities of ``count`` inputs made ``chunk`` at a time: ``build(indices) -> (x, classes)``."""
    out = torch.empty(count, dtype=torch.float32, device=device)
    for start in range(0, count, chunk):
        idx = torch.arange(start, min(start + chunk, count), device=device)
        x, classes = build(idx)
        probs = output_tensor(model(x)).float().softmax(dim=1)  # .logits of Hugging Face outputs, too
        out[start : start + len(idx)] = probs.gather(1, classes[:, None])[:, 0]
    return out


# --------------------------------------------------------------------------------------------
# the metrics


def deletion_insertion_curves(
    model: Model,
    images: Tensor,
    maps: Tensor,
    classes: int | Sequence[int] | Tensor,
    *,
    steps: int = 50,
    baseline: Baseline | tuple[Baseline, Baseline] = RISE_BASELINES,
    chunk: int = 64,
) -> tuple[Tensor, Tensor]:
    """Deletion and insertion curves, each ``Tensor[N, steps + 1]``, of the class probability.

    Each point is the class probability after 0, 1, ..., ``steps`` equal fractions of the pixels
    are removed (deletion) or inserted (insertion).

    ``baseline``: one substrate for both games, or a (deletion, insertion) pair; the default is
    RISE's (``"zero"``, ``"blur"``). All steps of all images go through the model in batches of
    ``chunk`` (eval mode is the caller's business; no gradients are kept).
    """
    check_images(images)
    if steps < 1:
        raise InvalidArgument("steps", f"steps must be at least 1, got {steps}")
    if chunk < 1:
        raise InvalidArgument("chunk", f"chunk must be at least 1, got {chunk}")
    del_base, ins_base = baseline_pair(baseline)
    device, dtype = device_dtype(model, images)
    x = images.to(device, dtype)
    n, c, h, w = x.shape
    cls = class_vector(classes, n, device)
    ranks = pixel_ranks(maps_like(maps, x))  # (N, HW)
    counts = torch.arange(steps + 1, device=device) * (h * w) // steps  # pixels changed at each step
    with torch.no_grad():
        starts = torch.cat([x, baseline_images(x, ins_base)]).flatten(2)  # rows: deletion then insertion
        finishes = torch.cat([baseline_images(x, del_base), x]).flatten(2)
    points = steps + 1

    def build(idx: Tensor) -> tuple[Tensor, Tensor]:
        row, step = idx // points, idx % points
        image = row % n
        changed = (ranks[image] < counts[step][:, None])[:, None]  # (k, 1, HW)
        return torch.where(changed, finishes[row], starts[row]).view(-1, c, h, w), cls[image]

    probs = _probabilities(model, 2 * n * points, build, chunk, device).view(2, n, points)
    return probs[0], probs[1]


def deletion_insertion(
    model: Model,
    images: Tensor,
    maps: Tensor,
    classes: int | Sequence[int] | Tensor,
    *,
    steps: int = 50,
    baseline: Baseline | tuple[Baseline, Baseline] = RISE_BASELINES,
    chunk: int = 64,
) -> tuple[Tensor, Tensor]:
    """(deletion AUC (N,), insertion AUC (N,)) of :func:`deletion_insertion_curves`."""
    deletion, insertion = deletion_insertion_curves(
        model, images, maps, classes, steps=steps, baseline=baseline, chunk=chunk
    )
    return trapezoid_auc(deletion), trapezoid_auc(insertion)


def average_drop_increase(
    model: Model, images: Tensor, maps: Tensor, classes: int | Sequence[int] | Tensor, *, chunk: int = 64
) -> tuple[Tensor, Tensor]:
    """(drop ``Tensor[N]``, increase ``bool[N]``): ``max(0, Y - O) / Y`` and ``O > Y``.

    Y is the class probability on the image and O on ``image * E`` (E: the map min-max normalized
    to [0, 1] at the input's resolution, multiplied in normalized-input space). Drop is a
    fraction, not percent.
    """
    check_images(images)
    device, dtype = device_dtype(model, images)
    x = images.to(device, dtype)
    n = x.shape[0]
    cls = class_vector(classes, n, device)
    e = normalize_maps(maps_like(maps, x), "minmax").nan_to_num(0.0)
    with torch.no_grad():
        both = torch.cat([x, x * e[:, None].to(dtype)])

    def build(idx: Tensor) -> tuple[Tensor, Tensor]:
        return both[idx], cls[idx % n]

    probs = _probabilities(model, 2 * n, build, max(1, chunk), device)
    y, o = probs[:n], probs[n:]
    drop = torch.where(y > 0, (y - o).clamp(min=0) / torch.where(y > 0, y, torch.ones_like(y)), torch.zeros_like(y))
    return drop, o > y


def faithfulness_scores(
    model: Model,
    images: Tensor,
    maps: Tensor,
    classes: int | Sequence[int] | Tensor,
    *,
    steps: int = 50,
    baseline: Baseline | tuple[Baseline, Baseline] = RISE_BASELINES,
    chunk: int = 64,
) -> dict[str, Tensor]:
    """All four per-image scores, keyed as :meth:`FaithfulnessMetrics.update` takes them."""
    deletion, insertion = deletion_insertion(model, images, maps, classes, steps=steps, baseline=baseline, chunk=chunk)
    drop, increase = average_drop_increase(model, images, maps, classes, chunk=chunk)
    return {"deletion_auc": deletion, "insertion_auc": insertion, "average_drop": drop, "increase": increase}


class FaithfulnessMetrics(Metric):
    """Streaming means over batches: ``update(**faithfulness_scores(...))`` per batch, then ``compute()``.

    ``compute()`` gives ``images``, ``deletion_auc`` and ``insertion_auc`` (mean AUCs in [0, 1]),
    ``average_drop`` and ``increase_in_confidence`` (percent); None for a metric with no images yet.
    """

    KEYS = ("deletion_auc", "insertion_auc", "average_drop", "increase")

    def __init__(self) -> None:
        super().__init__()
        self.sums: np.ndarray  # per KEYS, float64
        self.counts: np.ndarray  # per KEYS
        self.add_state("sums", np.zeros(len(self.KEYS), dtype=np.float64))
        self.add_state("counts", np.zeros(len(self.KEYS), dtype=np.int64))

    def update(
        self,
        deletion_auc: Tensor | None = None,
        insertion_auc: Tensor | None = None,
        average_drop: Tensor | None = None,
        increase: Tensor | None = None,
    ) -> None:
        """Add one batch's per-image scores (each ``Tensor[N]``); a score given as None is left out.

        Args:
            deletion_auc: deletion AUCs in [0, 1].
            insertion_auc: insertion AUCs in [0, 1].
            average_drop: drops, as fractions (:func:`average_drop_increase`).
            increase: whether the confidence increased, bool or 0/1.
        """
        for k, value in enumerate((deletion_auc, insertion_auc, average_drop, increase)):
            if value is None:
                continue
            v = torch.as_tensor(value).detach().reshape(-1).double().cpu()
            self.sums[k] += float(v.sum())
            self.counts[k] += v.numel()

    def _mean(self, key: str, scale: float = 1.0) -> float | None:
        k = self.KEYS.index(key)
        return float(self.sums[k]) / int(self.counts[k]) * scale if self.counts[k] else None

    def compute(self) -> dict:
        """The means so far: the keys are in the class docstring (``images``: the largest count of any metric)."""
        return {
            "images": int(self.counts.max()),
            "deletion_auc": self._mean("deletion_auc"),
            "insertion_auc": self._mean("insertion_auc"),
            "average_drop": self._mean("average_drop", 100.0),
            "increase_in_confidence": self._mean("increase", 100.0),
        }
