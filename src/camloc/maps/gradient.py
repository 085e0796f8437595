"""Gradient methods: channel or pixel weights from the gradients of the class score at the target layer."""

from __future__ import annotations

import torch

from .traced import TracedMethod, weighted_sum

__all__ = ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM"]


class GradCAM(TracedMethod):
    """Selvaraju et al. (ICCV 2017): channel weights = spatial mean of the gradients."""

    name = "gradcam"

    def combine(self, activations, grads, x, targets):
        return weighted_sum(grads.mean(dim=(2, 3)), activations)


class GradCAMPlusPlus(TracedMethod):
    """Chattopadhyay et al. (WACV 2018), eq. 19 with the exponential trick: higher powers of the gradient."""

    name = "gradcam++"

    def combine(self, activations, grads, x, targets):
        g2 = grads.pow(2)
        g3 = g2 * grads
        total = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + total * g3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return weighted_sum((grads.relu() * alpha).sum(dim=(2, 3)), activations)


class XGradCAM(TracedMethod):
    """Fu et al. (BMVC 2020): gradients weighted by the normalized activations."""

    name = "xgradcam"

    def combine(self, activations, grads, x, targets):
        total = activations.sum(dim=(2, 3), keepdim=True)
        return weighted_sum((grads * activations / (total + 1e-7)).sum(dim=(2, 3)), activations)


class HiResCAM(TracedMethod):
    """Draelos & Carin (2020): element-wise gradient x activation, summed over channels."""

    name = "hirescam"

    def combine(self, activations, grads, x, targets):
        return (grads * activations).sum(dim=1)


class LayerCAM(TracedMethod):
    """Jiang et al. (TIP 2021): positive gradients as per-location weights."""

    name = "layercam"

    def combine(self, activations, grads, x, targets):
        return (grads.relu() * activations).sum(dim=1)
