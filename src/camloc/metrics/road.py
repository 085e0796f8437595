"""ROAD, remove and debias (Rong et al., "A consistent and efficient evaluation strategy ...", ICML 2022).

ROAD removes pixels by *noisy linear imputation* instead of a fixed colour, so that the shape of the
removed region does not itself tell the model what was there. camloc computes it as
pytorch-grad-cam 1.5.7 does (``pytorch_grad_cam.metrics.road``, itself from the authors'
``road_evaluation``), in torch on the model's device, batched over images and percentiles.

Which pixels go, for a percentile p (pytorch-grad-cam's ``RemoveMostRelevantFirst``)
    With t the p-th percentile of the map's values (numpy's default "linear" percentile), the pixels
    kept are those with ``map < t``; the others (the top ``100 - p`` percent, ties at t included)
    are imputed. *MoRF* (most relevant first) uses the map, *LeRF* (least relevant first) the map
    ``1 - map`` (so LeRF at p imputes the lowest ``100 - p`` percent). The map is float32 and at the
    input's resolution (resized bilinearly if it is not).

Noisy linear imputation (``NoisyLinearImputer``)
    Each imputed pixel is the weighted mean of its 8 neighbours inside the image, weight 1/6 for the
    4 direct and 1/12 for the 4 diagonal neighbours, known or imputed alike: one sparse linear
    system per image and channel, which pytorch-grad-cam solves with ``scipy.sparse.linalg.spsolve``
    on the CPU. camloc solves it on a GPU by conjugate gradients in float64, all images and
    channels at once (the system is symmetric positive definite when any pixel is kept), to a
    relative residual of ``tol``; on the CPU, where CG needs thousands of iterations for the large
    holes of a 224 px map (about 25x slower than a factorization), by a sparse LU factorization
    (SuperLU through scipy, as spsolve) per image. Then Gaussian noise of
    standard deviation ``noise`` (0.01, in normalized-input units) is added to the imputed pixels.
    The noise is drawn as pytorch-grad-cam draws it (one ``(C, M)`` tensor per image, M imputed pixels, on
    the CPU, images in batch order, percentiles in the order given, LeRF before MoRF in
    :func:`road`), so with the same seed of the global generator the two give the same images.

The score (``PerturbationConfidenceMetric``)
    The target's score on the imputed image minus its score on the original; the target is the
    class logit (pytorch-grad-cam's ``ClassifierOutputTarget``) or, with ``score="probability"``,
    its softmax (``ClassifierOutputSoftmaxTarget``). ``ROADMostRelevantFirstAverage`` and
    ``ROADLeastRelevantFirstAverage`` average it over the percentiles 10, 20, ..., 90 and
    ``ROADCombined`` is ``(LeRF - MoRF) / 2``: higher is better for it and for LeRF, lower for MoRF.

Where camloc differs: a map that keeps no pixel at all (a constant map, MoRF at p = 0) has no
solution; spsolve returns NaN there (with a warning) and camloc imputes 0 plus the noise.
pytorch-grad-cam's ``percentile="auto"`` (an Otsu threshold) is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InvalidArgument
from ..maps.core import output_tensor
from .faithfulness import Model, check_images, class_vector, device_dtype, maps_like

__all__ = ["ROAD_PERCENTILES", "linear_imputation", "road", "road_curves", "road_keep_masks"]

ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # pytorch-grad-cam's ROADCombined
Order = Literal["morf", "lerf"]
Score = Literal["logit", "probability"]

# The neighbour weights of the imputation: 1/6 for the 4 direct neighbours, 1/12 for the diagonals.
_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))


def road_keep_masks(maps: Tensor, percentiles: Sequence[float], order: Order) -> Tensor:
    """Which pixels each percentile keeps (True) and imputes (False): ``bool[P, N, H, W]``.

    Args:
        maps: ``Tensor[N, H, W]``, used as float32 (as pytorch-grad-cam's numpy maps).
        percentiles: the percentiles p in [0, 100].
        order: ``"morf"`` keeps ``map < percentile(map, p)``; ``"lerf"`` the same of ``1 - map``.

    Example:
        >>> road_keep_masks(torch.tensor([[[0.0, 1.0], [2.0, 3.0]]]), [50], "morf").int().tolist()
        [[[[1, 1], [0, 0]]]]
    """
    if order not in ("morf", "lerf"):
        raise InvalidArgument("order", f"order must be 'morf' or 'lerf', not {order!r}")
    values = maps.float() if order == "morf" else 1 - maps.float()
    flat = values.flatten(1)
    ordered = flat.sort(dim=1).values
    n = flat.shape[1]
    keep = []
    for p in percentiles:
        if not 0 <= p <= 100:
            raise InvalidArgument("percentiles", f"percentiles must be in [0, 100], got {p}")
        # numpy's "linear" percentile, float32 arithmetic with a float64 weight, as np.percentile on float32.
        position = (n - 1) * (p / 100)
        lo = int(position // 1)
        hi = min(lo + 1, n - 1)
        t = position - lo
        a, b = ordered[:, lo], ordered[:, hi]
        if t < 0.5:
            threshold = a + (b - a) * torch.tensor(t, dtype=torch.float32)
        else:
            threshold = b - (b - a) * torch.tensor(1 - t, dtype=torch.float32)
        keep.append(values < threshold[:, None, None])
    return torch.stack(keep)


Solver = Literal["auto", "cg", "direct"]


def linear_imputation(
    images: Tensor, keep: Tensor, *, solver: Solver = "auto", tol: float = 1e-10, max_iter: int | None = None
) -> Tensor:
    """The images with every pixel not kept replaced by the weighted mean of its neighbours (no noise).

    Args:
        images: ``Tensor[N, C, H, W]``.
        keep: ``bool[N, H, W]``, the pixels that keep their value.
        solver: ``"cg"``: conjugate gradients in float64, all images and channels at once, on the
            images' device; ``"direct"``: a sparse LU factorization per image on the CPU (SuperLU,
            through scipy, as pytorch-grad-cam), much faster there for large holes; ``"auto"``:
            ``"direct"`` for CPU tensors, ``"cg"`` otherwise.
        tol: ``"cg"`` stops when every system's residual is below ``tol`` times its right-hand side's.
        max_iter: ``"cg"`` stops after this many iterations at most (default: ``40 * (H + W) + 1000``).

    Returns:
        ``Tensor[N, C, H, W]`` float64, on the images' device.
    """
    if solver not in ("auto", "cg", "direct"):
        raise InvalidArgument("solver", f"solver must be 'auto', 'cg' or 'direct', not {solver!r}")
    keep = keep.to(images.device)
    if solver == "direct" or (solver == "auto" and images.device.type == "cpu"):
        return _solve_direct(images.double(), keep)
    return _solve_cg(images.double(), keep, tol, max_iter)


def _kernel(device: torch.device) -> Tensor:
    return torch.tensor(_WEIGHTS, dtype=torch.float64, device=device).view(1, 1, 3, 3)


def _solve_cg(x: Tensor, keep: Tensor, tol: float, max_iter: int | None) -> Tensor:
    n, c, h, w = x.shape
    kernel = _kernel(x.device)

    def spread(u: Tensor) -> Tensor:  # sum over in-image neighbours of weight * value, per channel
        return F.conv2d(u.reshape(n * c, 1, h, w), kernel, padding=1).view(n, c, h, w)

    missing = (~keep)[:, None].double()  # (N, 1, H, W)
    total = F.conv2d(torch.ones(1, 1, h, w, dtype=torch.float64, device=x.device), kernel, padding=1)
    rhs = spread(x * (1 - missing)) * missing

    def operator(u: Tensor) -> Tensor:  # (D - W) restricted to the missing pixels
        return (total * u - spread(u)) * missing

    tiny = torch.finfo(torch.float64).tiny
    u = torch.zeros_like(x)
    r = rhs.clone()
    p = r.clone()
    rs = (r * r).sum(dim=(2, 3), keepdim=True)
    goal = (tol**2) * rs.clamp(min=tiny)
    for step in range(max_iter if max_iter is not None else 40 * (h + w) + 1000):
        ap = operator(p)
        curvature = (p * ap).sum(dim=(2, 3), keepdim=True)
        alpha = torch.where(curvature > 0, rs / curvature.clamp(min=tiny), 0.0)
        u = u + alpha * p
        r = r - alpha * ap
        rs_next = (r * r).sum(dim=(2, 3), keepdim=True)
        if step % 10 == 9 and bool((rs_next <= goal).all()):  # a host sync every 10 steps only
            break
        p = r + torch.where(rs > 0, rs_next / rs.clamp(min=tiny), 0.0) * p
        rs = rs_next
    return torch.where(missing > 0, u, x)


def _solve_direct(x: Tensor, keep: Tensor) -> Tensor:
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    n, c, h, w = x.shape
    out = x.detach().cpu().clone()
    weights = _kernel(torch.device("cpu"))[0, 0]
    total = F.conv2d(torch.ones(1, 1, h, w, dtype=torch.float64), weights.view(1, 1, 3, 3), padding=1)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i in range(n):
        missing = ~keep[i].cpu()
        count = int(missing.sum())
        if count == 0:
            continue
        index = torch.full((h, w), -1, dtype=torch.long)
        index[missing] = torch.arange(count)  # row-major numbering of the unknowns
        my, mx = ys[missing], xs[missing]
        rows, cols, vals = [torch.arange(count)], [torch.arange(count)], [total[missing]]
        rhs = torch.zeros(count, c, dtype=torch.float64)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                ny, nx = my + dy, mx + dx
                inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
                eq, ny, nx = torch.arange(count)[inside], ny[inside], nx[inside]
                neighbour = index[ny, nx]
                unknown = neighbour >= 0
                rows.append(eq[unknown])
                cols.append(neighbour[unknown])
                vals.append(torch.full((int(unknown.sum()),), -float(weights[dy + 1, dx + 1]), dtype=torch.float64))
                known = ~unknown
                rhs.index_add_(0, eq[known], float(weights[dy + 1, dx + 1]) * out[i][:, ny[known], nx[known]].T)
        matrix = coo_matrix(
            (torch.cat(vals).numpy(), (torch.cat(rows).numpy(), torch.cat(cols).numpy())), (count, count)
        )
        try:
            solution = splu(matrix.tocsc()).solve(rhs.numpy())
        except RuntimeError:  # nothing kept: a singular system (see the module doc)
            solution = torch.zeros(count, c, dtype=torch.float64).numpy()
        out[i][:, missing] = torch.from_numpy(solution).T
    return out.to(x.device)


def _noise(keep: Tensor, channels: int, generator: torch.Generator | None) -> Tensor:
    """(N, C, H, W) float32 noise on the imputed pixels, drawn on the CPU as pytorch-grad-cam draws it."""
    n, h, w = keep.shape
    out = torch.zeros(n, channels, h * w)
    missing = ~keep.cpu().reshape(n, -1)
    for i in range(n):
        where = missing[i].nonzero()[:, 0]  # row-major, as its np.argwhere
        # Its torch.randn_like(res.t()): spsolve's (M, C) solution is column-major, so res.t() is a contiguous (C, M).
        drawn = torch.randn(channels, len(where), generator=generator)
        out[i][:, where] = drawn
    return out.view(n, channels, h, w)


@torch.no_grad()
def _scores(model: Model, images: Tensor, classes: Tensor, score: Score, chunk: int) -> Tensor:
    out = []
    for start in range(0, len(images), chunk):
        logits = output_tensor(model(images[start : start + chunk])).float()
        if score == "probability":
            logits = logits.softmax(dim=1)
        out.append(logits.gather(1, classes[start : start + chunk, None])[:, 0])
    return torch.cat(out)


def road_curves(
    model: Model,
    images: Tensor,
    maps: Tensor,
    classes: int | Sequence[int] | Tensor,
    *,
    order: Order = "morf",
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    score: Score = "logit",
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    chunk: int = 64,
    solver: Solver = "auto",
    tol: float = 1e-10,
) -> Tensor:
    """The score change after ROAD imputation at each percentile, ``Tensor[N, P]``.

    ``road_curves(..., order="morf", percentiles=[80])`` is pytorch-grad-cam's
    ``ROADMostRelevantFirst(80)``, and the mean over the percentiles its ``...Average``.

    Args:
        model: the classifier (eval mode is the caller's business; no gradients are kept).
        images: ``Tensor[N, C, H, W]``, the normalized model input.
        maps: ``Tensor[N, H, W]`` (or ``N, 1, H, W``), resized to the images if needed.
        classes: the explained class, one for all or one per image.
        order: ``"morf"`` (most relevant first) or ``"lerf"``.
        percentiles: the percentiles of the map at which pixels are removed (see the module doc).
        score: ``"logit"`` or ``"probability"`` of the class.
        noise: the standard deviation of the noise added to imputed pixels.
        generator: the CPU generator the noise is drawn from (default: torch's global one).
        chunk: images per forward pass.
        solver: how the imputation is solved (:func:`linear_imputation`): ``"auto"`` is a sparse
            direct solve on the CPU and conjugate gradients on a GPU.
        tol: the relative residual at which conjugate gradients stop.

    Returns:
        ``Tensor[N, P]`` float32: score(imputed) - score(original).
    """
    check_images(images)
    if score not in ("logit", "probability"):
        raise InvalidArgument("score", f"score must be 'logit' or 'probability', not {score!r}")
    if chunk < 1:
        raise InvalidArgument("chunk", f"chunk must be at least 1, got {chunk}")
    device, dtype = device_dtype(model, images)
    x = images.to(device)
    n, c, _, _ = x.shape
    cls = class_vector(classes, n, device)
    keep = road_keep_masks(maps_like(maps, x), percentiles, order)  # (P, N, H, W)
    before = _scores(model, x.to(dtype), cls, score, chunk)
    changes = []
    for masks in keep:  # percentile by percentile, images in order: the noise comes out as pytorch-grad-cam's
        imputed = linear_imputation(x, masks, solver=solver, tol=tol).float()
        if noise:
            imputed = imputed + noise * _noise(masks, c, generator).to(device)
        changes.append(_scores(model, imputed.to(dtype), cls, score, chunk) - before)
    return torch.stack(changes, dim=1) if changes else torch.zeros(n, 0, device=device)


def road(
    model: Model,
    images: Tensor,
    maps: Tensor,
    classes: int | Sequence[int] | Tensor,
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    score: Score = "logit",
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    chunk: int = 64,
    solver: Solver = "auto",
    tol: float = 1e-10,
) -> dict[str, Tensor]:
    """ROAD's three per-image scores, each ``Tensor[N]``: ``road_morf``, ``road_lerf``, ``road_combined``.

    ``road_morf`` / ``road_lerf`` are the score changes averaged over ``percentiles``
    (pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage``) and
    ``road_combined`` is ``(road_lerf - road_morf) / 2`` (its ``ROADCombined``). LeRF is computed
    first, as ``ROADCombined`` does, so that the noise draws match. The arguments are
    :func:`road_curves`'.
    """
    means = {}
    for order in ("lerf", "morf"):
        curves = road_curves(
            model, images, maps, classes, order=order, percentiles=percentiles, score=score, noise=noise,
            generator=generator, chunk=chunk, solver=solver, tol=tol,
        )  # fmt: skip
        means[order] = curves.mean(dim=1)
    lerf, morf = means["lerf"], means["morf"]
    return {"road_morf": morf, "road_lerf": lerf, "road_combined": (lerf - morf) / 2}
