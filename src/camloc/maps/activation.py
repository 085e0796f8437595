"""Methods without gradients: the activations' principal component, and input masking by each channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .traced import TracedMethod, weighted_sum

__all__ = ["EigenCAM", "ScoreCAM"]


class EigenCAM(TracedMethod):
    """Muhammad & Yahya (IJCNN 2020): the activations projected on their first principal component."""

    name = "eigencam"
    needs_gradients = False

    def combine(self, activations, grads, x, targets):
        n, c, h, w = activations.shape
        flat = activations.float().reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
        centred = flat - flat.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        return (centred @ vh[:, 0, :, None]).reshape(n, h, w).to(activations.dtype)


class ScoreCAM(TracedMethod):
    """Wang et al. (CVPRW 2020): each channel, upsampled and min-max normalized, masks the input;
    the softmax over channels of the masked inputs' target scores weights the channels.
    """

    name = "scorecam"
    needs_gradients = False

    def __init__(self, *args, chunk: int = 64, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.chunk = chunk

    def combine(self, activations, grads, x, targets):
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
                    _, out = self._forward(x[i : i + 1] * masks)
                    weights[i, start : start + self.chunk] = torch.stack([targets[i](o) for o in out]).float()
        return weighted_sum(weights.softmax(dim=1).to(activations.dtype), activations)
