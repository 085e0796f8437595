"""Sanity checks for maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018).

A map that explains the model must change when the model does. The *model parameter randomisation
test* re-initialises the model's layers and compares each map with the map of the randomised model:
**cascading** from the head down (the head, then the head and the layer below, ... until every layer
is random) or **independently** (one layer at a time, the others trained). The *data randomisation
test* compares the maps of a model with those of the same architecture trained on shuffled labels.
Similar maps after randomisation are a failed check.

The similarities (one value per image, ``Tensor[N]`` float64), as the authors' code computes them:

``spearman_abs``
    Spearman rank correlation of the absolute maps (``scipy.stats.spearmanr``: average ranks for
    ties, Pearson correlation of the ranks).
``spearman``
    The same, signs kept.
``ssim``
    Structural similarity of the maps min-max normalized to [0, 1] (a constant map becomes 0):
    ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, data_range=1)``, a
    Gaussian window of standard deviation 1.5 (11 x 11 pixels) and skimage's other defaults;
    maps need at least 11 pixels a side.
``hog``
    Spearman rank correlation of the histograms of oriented gradients of the normalized maps,
    ``skimage.feature.hog(m, pixels_per_cell=(16, 16))`` (9 orientations, 3 x 3 cell blocks,
    L2-Hys); NaN for a map under 48 pixels a side (no block).

A correlation with a constant map (or constant HOG features) is undefined: NaN, as scipy gives.

Which layers, and how they are re-initialised (as Quantus 0.6's ``MPRT``)
    A layer is a module with a ``reset_parameters`` method (convolutions, linear layers, norms),
    in ``named_modules()`` order, randomised from the last (the head) to the first. Each is re-drawn
    by its own ``reset_parameters()`` (its initial distribution; a BatchNorm goes back to weight 1,
    bias 0, mean 0, variance 1) with torch's generator seeded with ``seed`` for every layer (Quantus
    seeds ``seed + 1``: its default 42 is camloc's default, 43), inside :func:`torch.random.fork_rng`,
    so the caller's random state is left as it was. (A network initialised under the same seed gets
    its initial weights back: seed it differently.) With ``depth=k`` the modules whose names share their first
    k dot-separated parts form one layer (``depth=2``: torchvision's blocks, ``features.17``,
    ``layer4.2``), re-drawn together after one seeding; ``depth=None`` takes every module alone, as
    Quantus. Everything happens on a deep copy of the model, in eval mode: the caller's model is
    never changed.

Checked against: Quantus 0.6's ``MPRT`` (``abs=True`` and ``abs=False`` with its default
``correlation_spearman``, cascading and independent, on a small CNN with BatchNorm: equal), scipy's
``spearmanr``, skimage's ``structural_similarity`` and ``hog``. Quantus' own ``ssim`` uses a 7 x 7
uniform window and the two maps' joint range, and its ``MPRT`` flattens the maps first (a 1-D SSIM):
camloc follows the paper's code instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgument
from ..maps.core import MapMethod

__all__ = [
    "ORDERS",
    "SEED",
    "SIMILARITIES",
    "data_randomisation",
    "hog_similarity",
    "map_similarities",
    "model_randomisation",
    "randomisation_layers",
    "randomised_models",
    "spearman",
    "ssim",
]

#: The similarity measures, in the order of the paper's figures.
SIMILARITIES = ("spearman_abs", "spearman", "ssim", "hog")
#: The orders of the model parameter randomisation test.
ORDERS = ("cascading", "independent")
#: The default seed of the re-initialisations: the one Quantus' ``MPRT`` uses by default (its ``seed=42``, plus 1).
SEED = 43

MethodFactory = Callable[[nn.Module], MapMethod]

_SIGMA, _TRUNCATE = 1.5, 3.5  # skimage's Gaussian SSIM window: radius int(3.5 * 1.5 + 0.5) = 5
_HOG_CELL, _HOG_BLOCK = 16, 3


def _pairs(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape or a.ndim < 2:
        raise InvalidArgument(
            "maps", f"expected two (N, ...) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a.flatten(1), b.flatten(1)


def _average_ranks(x: Tensor) -> Tensor:
    """``Tensor[N, P]`` float64 ranks (1..P) of each row, ties given their mean rank (scipy's ``rankdata``)."""
    n, p = x.shape
    values, order = x.sort(dim=1)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = starts.cumsum(dim=1) - 1  # each sorted position's tie group
    position = torch.arange(p, device=x.device, dtype=torch.float64).expand(n, p)
    first = torch.zeros(n, p, device=x.device, dtype=torch.float64).scatter_reduce(
        1, group, position, "amin", include_self=False
    )
    last = torch.zeros_like(first).scatter_reduce(1, group, position, "amax", include_self=False)
    mean_rank = ((first + last) / 2 + 1).gather(1, group)
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    den = (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()
    r = (a * b).sum(dim=1) / den
    return torch.where(den > 0, r.clamp(-1, 1), torch.full_like(r, torch.nan))


def spearman(a: Tensor, b: Tensor, absolute: bool = False) -> Tensor:
    """Spearman rank correlation of each pair of maps, ``Tensor[N]`` float64 (NaN for a constant map).

    Args:
        a: ``Tensor[N, ...]`` maps (or any values), flattened per item.
        b: the same shape.
        absolute: rank the absolute values (the paper's "absolute value" variant).

    Example:
        >>> spearman(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1.0, 3.0, 2.0, 4.0]])).tolist()
        [0.8]
        >>> spearman(torch.tensor([[-3.0, 1.0, 2.0]]), torch.tensor([[3.0, 1.0, 2.0]]), absolute=True).tolist()
        [1.0]
    """
    a, b = _pairs(a, b)
    if absolute:
        a, b = a.abs(), b.abs()
    nan = a.isnan().any(dim=1) | b.isnan().any(dim=1)
    r = _pearson(_average_ranks(a), _average_ranks(b))
    return torch.where(nan, torch.full_like(r, torch.nan), r)


def _unit(maps: Tensor) -> Tensor:
    """Each map min-max normalized to [0, 1] in float64; a constant map becomes 0."""
    m = maps.double()
    low = m.flatten(1).min(dim=1).values[:, None, None]
    span = m.flatten(1).max(dim=1).values[:, None, None] - low
    return torch.where(span > 0, (m - low) / span.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(m))


def _gaussian_window(device: torch.device) -> Tensor:
    radius = int(_TRUNCATE * _SIGMA + 0.5)
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    w = torch.exp(-0.5 * x**2 / _SIGMA**2)
    return w / w.sum()


def _check_maps(a: Tensor, b: Tensor) -> None:
    if a.ndim != 3 or a.shape != b.shape:
        raise InvalidArgument(
            "maps", f"expected two (N, H, W) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """SSIM of each pair of maps after min-max normalization to [0, 1], ``Tensor[N]`` float64.

    skimage's ``structural_similarity(a, b, gaussian_weights=True, data_range=1)``: Gaussian window
    (sigma 1.5, 11 x 11), K1 = 0.01, K2 = 0.03, sample covariances, averaged over the pixels whose
    window lies inside the map.

    Args:
        a: ``Tensor[N, H, W]``, H and W at least 11.
        b: the same shape.

    Example:
        >>> m = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> [round(v, 9) for v in ssim(m, m * 3 + 1).tolist()]
        [1.0, 1.0]
    """
    _check_maps(a, b)
    w = _gaussian_window(a.device)
    k = len(w)
    if min(a.shape[1:]) < k:
        raise InvalidArgument("maps", f"SSIM needs maps of at least {k} x {k} pixels, got {tuple(a.shape[1:])}")
    x, y = _unit(a)[:, None], _unit(b)[:, None]

    def smooth(t: Tensor) -> Tensor:  # the Gaussian filter where the whole window fits
        return F.conv2d(F.conv2d(t, w.view(1, 1, k, 1)), w.view(1, 1, 1, k))

    ux, uy, uxx, uyy, uxy = (
        smooth(torch.cat([x, y, x * x, y * y, x * y], dim=1).flatten(0, 1)[:, None])
        .view(len(x), 5, *(s - k + 1 for s in a.shape[1:]))
        .unbind(dim=1)
    )
    cov = k * k / (k * k - 1)  # sample covariance, skimage's default
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def _hog(maps: Tensor) -> np.ndarray | None:
    from skimage.feature import hog

    unit = _unit(maps).cpu().numpy()
    if min(maps.shape[1:]) < _HOG_CELL * _HOG_BLOCK:
        return None
    return np.stack([hog(m, pixels_per_cell=(_HOG_CELL, _HOG_CELL), cells_per_block=(_HOG_BLOCK,) * 2) for m in unit])


def hog_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of the HOG features of each pair of normalized maps, ``Tensor[N]`` float64.

    Args:
        a: ``Tensor[N, H, W]``; NaN for maps under 48 pixels a side.
        b: the same shape.
    """
    _check_maps(a, b)
    ha, hb = _hog(a), _hog(b)
    if ha is None or hb is None:
        return torch.full((len(a),), torch.nan, dtype=torch.float64, device=a.device)
    return spearman(torch.from_numpy(ha), torch.from_numpy(hb)).to(a.device)


def map_similarities(a: Tensor, b: Tensor) -> dict[str, Tensor]:
    """Every similarity of :data:`SIMILARITIES` of each pair of maps ``Tensor[N, H, W]``: name -> ``Tensor[N]``."""
    _check_maps(a, b)
    return {
        "spearman_abs": spearman(a, b, absolute=True),
        "spearman": spearman(a, b),
        "ssim": ssim(a, b),
        "hog": hog_similarity(a, b),
    }


def randomisation_layers(model: nn.Module, depth: int | None = 2) -> list[tuple[str, list[str]]]:
    """The layers the randomisation test re-draws, from the head down: ``(name, module names)`` each.

    Args:
        model: the network.
        depth: modules whose names share their first ``depth`` parts form one layer; None: each alone.

    Example:
        >>> net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.ReLU(), nn.Linear(4, 2))
        >>> randomisation_layers(net, depth=1)
        [('2', ['2']), ('0', ['0.0', '0.1'])]
        >>> [name for name, _ in randomisation_layers(net, depth=None)]
        ['2', '0.1', '0.0']
    """
    if depth is not None and depth < 1:
        raise InvalidArgument("depth", f"depth must be at least 1 (or None: every module), got {depth}")
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if hasattr(module, "reset_parameters"):
            key = name if depth is None else ".".join(name.split(".")[:depth])
            groups.setdefault(key, []).append(name)
    if not groups:
        raise InvalidArgument("model", f"{type(model).__name__} has no layer with reset_parameters() to randomise")
    return list(groups.items())[::-1]


def _reset(model: nn.Module, names: Sequence[str], seed: int) -> None:
    modules = dict(model.named_modules())
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            modules[name].reset_parameters()


def _steps(random: nn.Module, layers: list[tuple[str, list[str]]], order: str, seed: int) -> Iterator[str]:
    """Re-draw the layers of ``random`` in place, one step per layer; yields each layer's name after its step."""
    if order not in ORDERS:
        raise InvalidArgument("order", f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    modules = dict(random.named_modules())
    saved: dict[str, dict] = {}
    for layer, names in layers:
        for name, state in saved.items():  # independent: the previous layer trained again
            modules[name].load_state_dict(state)
        saved = {n: copy.deepcopy(modules[n].state_dict()) for n in names} if order == "independent" else {}
        _reset(random, names, seed)
        yield layer


def randomised_models(
    model: nn.Module, order: str = "cascading", *, seed: int = SEED, depth: int | None = 2
) -> Iterator[tuple[str, nn.Module]]:
    """A deep copy of ``model`` (in eval mode) with its layers re-drawn, one step per layer from the head down.

    Each step yields ``(layer name, the copy)``: the *same* copy, changed in place, so use it before
    asking for the next step. ``cascading``: the layers so far are all random; ``independent``: only
    this layer is (the previous one is restored first). ``model`` itself is never changed.

    Args:
        model: the trained network.
        order: ``"cascading"`` or ``"independent"``.
        seed: torch's seed before each layer's ``reset_parameters()``.
        depth: how modules group into layers (:func:`randomisation_layers`).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> [(name, bool((m[2].weight != net[2].weight).all())) for name, m in randomised_models(net)]
        [('2', True), ('0', True)]
    """
    layers = randomisation_layers(model, depth)
    random = copy.deepcopy(model).eval()
    for layer in _steps(random, layers, order, seed):
        yield layer, random


def _factories(
    methods: Sequence[str] | Mapping[str, MethodFactory], target_layer: str | None
) -> dict[str, MethodFactory]:
    from ..maps.registry import create_method

    if isinstance(methods, Mapping):
        return dict(methods)
    if isinstance(methods, str):
        methods = [methods]
    return {name: partial(create_method, name, target_layer=target_layer) for name in methods}


def _maps(method: MapMethod, images: Tensor, classes: Tensor) -> Tensor:
    out = method(images, classes=classes[:, None])
    assert out.maps is not None  # upsampled by default
    return out.maps[:, 0].detach().float()


def _explained(model: nn.Module, factories: Mapping[str, MethodFactory]) -> tuple[nn.Module, dict[str, MapMethod]]:
    """A deep copy of ``model`` in eval mode and the methods built on it."""
    mine = copy.deepcopy(model).eval()
    return mine, {name: make(mine) for name, make in factories.items()}


def model_randomisation(
    model: nn.Module,
    methods: Sequence[str] | Mapping[str, MethodFactory],
    images: Tensor,
    classes: Tensor,
    *,
    order: str = "cascading",
    seed: int = SEED,
    depth: int | None = 2,
    target_layer: str | None = None,
) -> dict[str, dict[str, dict[str, Tensor]]]:
    """The model parameter randomisation test of each method on a batch.

    Args:
        model: the trained classifier (never changed: the test randomises a deep copy).
        methods: method names (:data:`~camloc.maps.registry.METHOD_NAMES`), or name -> a function
            that makes the method for a model.
        images: ``Tensor[N, 3, H, W]`` model input.
        classes: ``Tensor[N]``: the class whose map each image gets, from every model.
        order: ``"cascading"`` or ``"independent"``.
        seed: the seed of every layer's re-initialisation.
        depth: how modules group into layers (:func:`randomisation_layers`).
        target_layer: the gradient methods' layer, by name (None: each method's default).

    Returns:
        method -> layer (from the head down) -> similarity (:data:`SIMILARITIES`) -> ``Tensor[N]``,
        between the map of the trained model and that of the randomised one.
    """
    layers = randomisation_layers(model, depth)
    random, built = _explained(model, _factories(methods, target_layer))
    # the trained maps from the same methods on the copy, before its first change
    original = {name: _maps(method, images, classes) for name, method in built.items()}
    out: dict[str, dict[str, dict[str, Tensor]]] = {name: {} for name in built}
    for layer in _steps(random, layers, order, seed):
        for name, method in built.items():
            out[name][layer] = map_similarities(original[name], _maps(method, images, classes))
    return out


def data_randomisation(
    model: nn.Module,
    random_model: nn.Module,
    methods: Sequence[str] | Mapping[str, MethodFactory],
    images: Tensor,
    classes: Tensor,
    *,
    target_layer: str | None = None,
) -> dict[str, dict[str, Tensor]]:
    """The data randomisation test: each method's maps of ``model`` against those of ``random_model``.

    Args:
        model: the trained classifier.
        random_model: the same architecture trained on shuffled labels (both are used through deep
            copies in eval mode).
        methods: method names, or name -> a function that makes the method for a model.
        images: ``Tensor[N, 3, H, W]`` model input.
        classes: ``Tensor[N]``: the class whose map each image gets, from both models.
        target_layer: the gradient methods' layer, by name (None: each method's default).

    Returns:
        method -> similarity (:data:`SIMILARITIES`) -> ``Tensor[N]``.
    """
    factories = _factories(methods, target_layer)
    _, trained = _explained(model, factories)
    _, shuffled = _explained(random_model, factories)
    return {
        name: map_similarities(_maps(trained[name], images, classes), _maps(shuffled[name], images, classes))
        for name in factories
    }
