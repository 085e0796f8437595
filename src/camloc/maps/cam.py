"""Class activation mapping (Zhou et al., CVPR 2016): one forward pass, top-k classes, maps on the model's device."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InvalidArgument
from ..models.adapter import CamAdapter, adapt
from ..utils import model_device
from .core import (
    CamOutput,
    Classes,
    Normalize,
    Targets,
    autocast,
    check_amp,
    choose_classes,
    class_of,
    finish_maps,
    prepare_input,
    target_classes,
    target_lists,
)
from .frames import normalize_maps

__all__ = ["CAM"]


class CAM:
    """Class activation maps ``M_c = sum_k w_k^c f_k`` of a classifier ending in GAP + linear.

    No bias and no ReLU unless asked: the spatial mean of a raw map plus the class bias is the
    class logit. Constructing a CAM finds the feature map and the head statically; it runs nothing
    and attaches nothing to the model.

    Args:
        model: the classifier (see :func:`camloc.models.adapt` for what it may be).
        relu: apply a ReLU to the maps (other tools do; the paper does not).
        normalize: ``"none"``, ``"minmax"`` or ``"max"``, applied to ``raw`` and, separately, to the
            upsampled ``maps`` (each from its own extremes, as wsolevaluation normalizes after resizing).
        upsample_mode: ``F.interpolate`` mode for ``maps``.
        channels_last: run the model on channels_last input (default: on the CPU only, where it is faster).
        fuse_batchnorm: in eval mode, run a copy of the model with BatchNorm folded into the
            convolutions (exact, and faster); False runs the model's own modules.
        amp: ``"bf16"`` or ``"fp16"``: the forward pass under ``torch.autocast`` in that type, the
            features, logits and maps in float32 (None: all in float32).

    Example::

        cam = camloc.CAM(model)
        out = cam(images, topk=5)   # out.raw: Tensor[N, 5, 7, 7]; out.maps: Tensor[N, 5, 224, 224]
    """

    name = "cam"
    target_layer: str | None = None
    reuses_forward = True

    def __init__(
        self,
        model: nn.Module,
        *,
        relu: bool = False,
        normalize: Normalize = "none",
        upsample_mode: str = "bilinear",
        channels_last: bool | None = None,
        fuse_batchnorm: bool = True,
        amp: str | None = None,
    ) -> None:
        if normalize not in ("none", "minmax", "max"):
            raise InvalidArgument("normalize", f"normalize must be 'none', 'minmax' or 'max', not {normalize!r}")
        self.model = model
        self.adapter: CamAdapter = adapt(model, fuse_batchnorm=fuse_batchnorm)
        self.relu = relu
        self.normalize = normalize
        self.upsample_mode = upsample_mode
        self.channels_last = channels_last
        self.amp = check_amp(amp)

    @property
    def fuse_batchnorm(self) -> bool:
        """Whether the forward pass runs the copy with BatchNorm folded (in eval mode; traced models only)."""
        return self.adapter.fuse_batchnorm

    @property
    def device(self) -> torch.device:
        """The model's device, where the maps are computed."""
        return model_device(self.model)

    def __call__(
        self,
        images: Tensor,
        topk: int = 1,
        classes: Classes | None = None,
        *,
        targets: Targets | None = None,
        upsample: bool = True,
    ) -> CamOutput:
        """Maps of the ``topk`` best classes of each image, or of ``classes``, from one forward pass.

        Args:
            images: ``Tensor[N, 3, H, W]`` normalized model input.
            topk: how many of the best classes, when neither ``classes`` nor ``targets`` is given.
            classes: one index for every image, one index per image, or an equal-length list per image.
            targets: instead of ``classes``: per image, one target or an equal-length list of them,
                each a class (an int, a :class:`~camloc.maps.ClassTarget`, pytorch-grad-cam's
                ``ClassifierOutputTarget``). CAM's maps are those of classes: any other callable is
                an :class:`~camloc.errors.InvalidArgument` (a gradient method explains any score).
            upsample: also give the maps upsampled to ``(H, W)``.

        Returns:
            :class:`~camloc.maps.CamOutput` with ``raw`` ``Tensor[N, k, h, w]`` and ``maps``
            ``Tensor[N, k, H, W]`` (None without ``upsample``).
        """
        if targets is not None:
            classes = self._classes_of(targets, images.shape[0], classes)
        x = prepare_input(images, self.device, self.channels_last)
        with torch.no_grad():
            with autocast(x.device, self.amp):
                features, logits = self.adapter(x)
            features, logits = features.float(), logits.float()  # the maps in float32, whatever the forward's type
            chosen, scores = choose_classes(logits, topk, classes)
        raw = self.raw_maps(features, chosen)
        raw, maps = finish_maps(raw, x.shape[-2:] if upsample else None, self.upsample_mode, self.normalize)
        return CamOutput(logits, chosen, scores, raw, maps, features)

    @staticmethod
    def _classes_of(targets: Targets, n: int, classes: Classes | None) -> list[list[int]]:
        if classes is not None:
            raise InvalidArgument(
                "targets", "targets=: give classes= or targets=, not both", arguments=["targets", "classes"]
            )
        lists = target_lists(targets, n)
        chosen = target_classes(lists)
        if chosen is None:
            other = next(t for row in lists for t in row if class_of(t) is None)
            raise InvalidArgument(
                "targets",
                f"targets=: CAM explains classes only (ints or ClassTarget), not {other!r}; "
                "a gradient method such as gradcam explains any score of the output",
                arguments=["targets"],
            )
        return chosen

    def raw_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        """``Tensor[N, k, h, w]`` maps of ``classes`` (``Tensor[N, k]``) from a feature map, before normalization."""
        weights = self.adapter.weights(features, classes.to(features.device))  # (N, k, C)
        with torch.no_grad():
            n, c, h, w = features.shape
            raw = torch.bmm(weights.to(features.dtype), features.reshape(n, c, h * w)).view(n, -1, h, w)
            return raw.relu() if self.relu else raw

    def more_maps(self, output: CamOutput, images: Tensor, classes: Tensor) -> Tensor:
        """More classes' raw maps from the same forward pass (``images`` is not needed)."""
        return normalize_maps(self.raw_maps(output.features, classes.to(output.features.device)), self.normalize)
