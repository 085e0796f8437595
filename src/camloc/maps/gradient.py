"""Gradient methods: channel or pixel weights from the gradients of the class score at the target layer."""

from __future__ import annotations

import torch
from torch import Tensor

from .traced import Target, TracedMethod, weighted_sum

__all__ = ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM"]


class GradCAM(TracedMethod):
    """Selvaraju et al. (ICCV 2017): channel weights = spatial mean of the gradients."""

    name = "gradcam"

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """Grad-CAM: ``w_c = mean_ij dS/dA_c[i, j]``, ``map = sum_c w_c A_c``.

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: ``Tensor[N, C, h, w]`` the gradients of each image's target score ``S``.
            x: the model input (unused).
            targets: one target per image (unused).

        Returns:
            ``Tensor[N, h, w]`` maps.
        """
        assert grads is not None  # gradient methods always get them
        return weighted_sum(grads.mean(dim=(2, 3)), activations)


class GradCAMPlusPlus(TracedMethod):
    """Chattopadhyay et al. (WACV 2018), eq. 19 with the exponential trick: higher powers of the gradient."""

    name = "gradcam++"

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """Grad-CAM++: ``alpha = g^2 / (2 g^2 + (sum_ij A_c) g^3 + 1e-6)`` (0 where ``g = 0``), ``g = dS/dA_c``.

        Then ``w_c = sum_ij alpha relu(g)`` and ``map = sum_c w_c A_c``.

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: ``Tensor[N, C, h, w]`` the gradients ``g`` of each image's target score ``S``.
            x: the model input (unused).
            targets: one target per image (unused).

        Returns:
            ``Tensor[N, h, w]`` maps.
        """
        assert grads is not None  # gradient methods always get them
        g2 = grads.pow(2)
        g3 = g2 * grads
        total = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + total * g3 + 1e-6)
        alpha = torch.where(grads.ne(0), alpha, torch.zeros_like(alpha))
        return weighted_sum((grads.relu() * alpha).sum(dim=(2, 3)), activations)


class XGradCAM(TracedMethod):
    """Fu et al. (BMVC 2020): gradients weighted by the normalized activations."""

    name = "xgradcam"

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """XGrad-CAM: ``w_c = sum_ij g_c A_c / (sum_ij A_c + 1e-7)`` with ``g = dS/dA``, ``map = sum_c w_c A_c``.

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: ``Tensor[N, C, h, w]`` the gradients ``g`` of each image's target score ``S``.
            x: the model input (unused).
            targets: one target per image (unused).

        Returns:
            ``Tensor[N, h, w]`` maps.
        """
        assert grads is not None  # gradient methods always get them
        total = activations.sum(dim=(2, 3), keepdim=True)
        return weighted_sum((grads * activations / (total + 1e-7)).sum(dim=(2, 3)), activations)


class HiResCAM(TracedMethod):
    """Draelos & Carin (2020): element-wise gradient x activation, summed over channels."""

    name = "hirescam"

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """HiResCAM: ``map = sum_c g_c * A_c`` element-wise, with ``g = dS/dA`` (no spatial averaging).

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: ``Tensor[N, C, h, w]`` the gradients ``g`` of each image's target score ``S``.
            x: the model input (unused).
            targets: one target per image (unused).

        Returns:
            ``Tensor[N, h, w]`` maps.
        """
        assert grads is not None  # gradient methods always get them
        return (grads * activations).sum(dim=1)


class LayerCAM(TracedMethod):
    """Jiang et al. (TIP 2021): positive gradients as per-location weights."""

    name = "layercam"

    def combine(self, activations: Tensor, grads: Tensor | None, x: Tensor, targets: list[Target]) -> Tensor:
        """LayerCAM: ``map = sum_c relu(g_c) * A_c`` element-wise, with ``g = dS/dA``.

        Args:
            activations: ``Tensor[N, C, h, w]`` the target layer's output ``A``.
            grads: ``Tensor[N, C, h, w]`` the gradients ``g`` of each image's target score ``S``.
            x: the model input (unused).
            targets: one target per image (unused).

        Returns:
            ``Tensor[N, h, w]`` maps.
        """
        assert grads is not None  # gradient methods always get them
        return (grads.relu() * activations).sum(dim=1)
