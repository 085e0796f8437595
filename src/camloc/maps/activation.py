"""Methods without gradients: the activations' principal component, and input masking by each channel."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InvalidArgument
from .core import output_tensor, target_score
from .pc1 import border_sign
from .traced import Target, TracedMethod, weighted_sum

__all__ = ["EigenCAM", "ScoreCAM"]


class EigenCAM(TracedMethod):
    """Muhammad & Yahya (IJCNN 2020): the activations projected on their first principal component.

    A principal component's sign is arbitrary: on many images the SVD's sign makes the object the
    *low* region, which a single box thresholded from the top then misses.

    Args:
        model: the classifier.
        target_layer: as :class:`~camloc.maps.traced.TracedMethod`: a name, the module, or None.
        sign: ``"border"``: negate a map whose border cells lie mostly above its mean
            (:func:`camloc.maps.pc1.border_sign`, as PC1 does); ``"svd"``: the sign as the SVD returns it
            (pytorch-grad-cam's ``EigenCAM``).
        **options: as :class:`~camloc.maps.traced.TracedMethod`: ``relu``, ``normalize``,
            ``upsample_mode``, ``channels_last``, ``fuse_batchnorm``, ``amp``.
    """

    name = "eigencam"
    needs_gradients = False

    def __init__(
        self, model: nn.Module, target_layer: str | nn.Module | None = None, *, sign: str = "border", **options: Any
    ) -> None:
        if sign not in ("border", "svd"):
            raise InvalidArgument("sign", f"sign={sign!r}: expected 'border' or 'svd'", arguments=["sign"])
        super().__init__(model, target_layer, **options)
        self.sign = sign

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """Eigen-CAM: ``map = (A - mean_ij A) v_1``, ``v_1`` the first right singular vector of the centred activations.

        Each image's activations are flattened to ``float32[h*w, C]`` (positions x channels) and centred
        over the positions; the map is their projection on the first principal direction, signed
        by the border (``sign="border"``) or as the SVD returns it (``sign="svd"``).

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: None (the method needs no gradients; unused).
            x: the model input (unused).
            targets: one target per image (unused: the map is the same for every class).

        Returns:
            ``Tensor[N, h, w]`` maps, in the activations' dtype.
        """
        n, c, h, w = activations.shape
        flat = activations.float().reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        maps = (centred @ vh[:, 0, :, None]).reshape(n, h, w)
        return (border_sign(maps) if self.sign == "border" else maps).to(activations.dtype)


class ScoreCAM(TracedMethod):
    """Wang et al. (CVPRW 2020): channel weights from the target scores of the input masked by each channel.

    Each channel, upsampled and min-max normalized, masks the input;
    the softmax over channels of the masked inputs' target scores weights the channels.

    Args:
        model: the classifier.
        target_layer: as :class:`~camloc.maps.traced.TracedMethod`: a name, the module, or None.
        chunk: how many channels' masked inputs go through the model in one batch (memory stays at
            ``chunk`` upsampled channels).
        **options: as :class:`~camloc.maps.traced.TracedMethod`: ``relu``, ``normalize``,
            ``upsample_mode``, ``channels_last``, ``fuse_batchnorm``, ``amp``.
    """

    name = "scorecam"
    needs_gradients = False

    def __init__(
        self, model: nn.Module, target_layer: str | nn.Module | None = None, *, chunk: int = 64, **options: Any
    ) -> None:
        super().__init__(model, target_layer, **options)
        self.chunk = chunk

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """Score-CAM: ``w = softmax_c S(x * norm(up(A_c)))``, ``map = sum_c w_c A_c``.

        ``up`` upsamples a channel to the input size (bilinear, ``align_corners=True``), ``norm``
        min-max normalizes it to [0, 1], and ``S`` is the image's target score of the masked input;
        the model runs once per ``chunk`` channels of each image.

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: None (the method needs no gradients; unused).
            x: ``Tensor[N, 3, H, W]`` the model input that is masked.
            targets: one target per image, scoring the masked inputs.

        Returns:
            ``Tensor[N, h, w]`` maps, in the activations' dtype.
        """
        n, c = activations.shape[:2]
        weights = torch.empty(n, c, device=x.device)
        with torch.no_grad():
            for i in range(n):
                for start in range(0, c, self.chunk):
                    # Upsample and normalize one chunk of channels at a time: memory stays at chunk size.
                    up = F.interpolate(
                        activations[i : i + 1, start : start + self.chunk],
                        size=x.shape[-2:],
                        mode="bilinear",
                        align_corners=True,
                    )[0]
                    flat = up.flatten(1)
                    lo, hi = flat.amin(-1)[:, None, None], flat.amax(-1)[:, None, None]
                    masks = ((up - lo) / (hi - lo + 1e-8))[:, None]  # (k, 1, H, W)
                    out = output_tensor(self._forward(x[i : i + 1] * masks)[1])
                    weights[i, start : start + self.chunk] = torch.stack(
                        [target_score(targets[i], o) for o in out]
                    ).float()
        return weighted_sum(weights.softmax(dim=1).to(activations.dtype), activations)
