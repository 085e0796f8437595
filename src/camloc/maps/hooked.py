"""The target layer cut out of the autograd graph by a forward hook, for models torch.fx cannot trace.

:class:`HookedForward` runs the model's own ``forward`` (control flow, ``len`` of tensors and all)
with a forward hook on the target module that returns a detached leaf in place of the module's
output: gradients flow from the scores down to that layer and stop there, as in the traced path.
The parameters are passed detached, so no graph is recorded for them and none of them ever gets a
gradient. The hook lives for one call only: it is removed in a ``finally``, also when the forward
raises.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import HeadNotFound

__all__ = ["HookedForward", "leaf"]


class HookedForward:
    """``x -> (target layer output as a leaf, logits)`` through the model's own forward and a hook.

    Args:
        model: the classifier.
        layer: the qualified name of the target module; when it runs more than once in a forward
            pass, its last call is the one explained (as in the traced path).
        channels: the layer's channel count, to pick the output among the tensors of a module that
            returns a tuple or list (the first one otherwise).
    """

    def __init__(self, model: nn.Module, layer: str, channels: int | None = None) -> None:
        self.model = model
        self.layer = layer
        self.channels = channels
        self.module = model.get_submodule(layer)

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(output of the layer Tensor[N, ...], logits Tensor[N, num_classes])`` of the input ``x``.

        Raises:
            HeadNotFound: the layer did not run, or returned no tensor of the batch.
        """
        leaves: list[Tensor] = []

        def cut(module: nn.Module, args: Any, output: Any) -> Any:
            if isinstance(output, Tensor):
                leaves.append(leaf(output))
                return leaves[-1]
            if isinstance(output, tuple | list):
                i = self._pick(output, len(x))
                leaves.append(leaf(output[i]))
                items = list(output)
                items[i] = leaves[-1]
                if isinstance(output, list):
                    return items
                return type(output)(*items) if hasattr(output, "_fields") else tuple(items)  # a named tuple too
            raise HeadNotFound(
                f"{type(self.model).__name__}: target_layer={self.layer!r} returns a {type(output).__name__}, "
                "not a tensor"
            )

        params = {k: v.detach() for k, v in self.model.named_parameters()}
        handle = self.module.register_forward_hook(cut)
        try:
            logits = functional_call(self.model, params, (x,), strict=False)
        finally:
            handle.remove()
        if not leaves:
            raise HeadNotFound(
                f"{type(self.model).__name__}: target_layer={self.layer!r} did not run in forward; name another layer"
            )
        return leaves[-1], logits

    def _pick(self, items: tuple | list, batch: int) -> int:
        """The index of the output among a module's tuple/list: the first batch tensor with the layer's channels."""
        tensors = [i for i, t in enumerate(items) if isinstance(t, Tensor) and t.ndim >= 3 and t.shape[0] == batch]
        widths = {i: (items[i].shape[1], items[i].shape[-1]) for i in tensors}
        fitting = [i for i in tensors if self.channels is None or self.channels in widths[i]]
        if not fitting:
            raise HeadNotFound(
                f"{type(self.model).__name__}: target_layer={self.layer!r} returns {len(items)} items, none of them "
                "a feature map of the batch" + (f" with {self.channels} channels" if self.channels else "")
            )
        return fitting[0]


def leaf(t: Tensor) -> Tensor:
    """The layer's output cut from the graph: a leaf that wants gradients when they are being recorded.

    The traced path inserts the same call after the target layer's node.
    """
    return t.detach().requires_grad_(torch.is_grad_enabled())
