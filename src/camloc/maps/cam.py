"""Class activation mapping (Zhou et al., CVPR 2016): one forward pass, top-k classes, maps on the model's device."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import HeadNotFound, InvalidArgument
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
    finish_maps,
    output_tensor,
    prepare_input,
    score_targets,
    split_targets,
)
from .frames import normalize_maps
from .targets import linear_form

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
        _refuse_segmentation(model)
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
            targets: instead of ``classes``: one target for every image, or per image one target or an
                equal-length list of them, each a class (an int, a :class:`~camloc.maps.ClassTarget`,
                pytorch-grad-cam's ``ClassifierOutputTarget``) or a weighted sum of class logits
                (:class:`~camloc.maps.ClassesTarget`, :class:`~camloc.maps.NegativeTarget`, pytorch-grad-cam's
                ``BinaryClassifierOutputTarget``), whose map is the same sum of the classes' maps (CAM
                is linear in the class weights: exact). Any other callable is an
                :class:`~camloc.errors.InvalidArgument` (a gradient method explains any score).
            upsample: also give the maps upsampled to ``(H, W)``.

        Returns:
            :class:`~camloc.maps.CamOutput` with ``raw`` ``Tensor[N, k, h, w]`` and ``maps``
            ``Tensor[N, k, H, W]`` (None without ``upsample``). For targets that are not all classes,
            ``classes`` is -1 for the sums and ``scores`` holds each target's score.
        """
        classes, lists = split_targets(targets, classes, images.shape[0])
        if lists is not None:
            _check_linear(lists)
        x = prepare_input(images, self.device, self.channels_last)
        with torch.no_grad():
            with autocast(x.device, self.amp):
                features, output = self.adapter(x)
            # the maps in float32, whatever the forward's type
            features, logits = features.float(), output_tensor(output).float()
            if lists is None:
                chosen, scores = choose_classes(logits, topk, classes)
            else:
                chosen, scores, _ = score_targets(lists, logits)
        if lists is None:
            raw = self.raw_maps(features, chosen)
        else:
            raw = self._relu(self._weighted_maps(features, self._sum_weights(features, lists)))
        raw, maps = finish_maps(raw, x.shape[-2:] if upsample else None, self.upsample_mode, self.normalize)
        return CamOutput(logits, chosen, scores, raw, maps, features)

    def class_scores(self, images: Tensor) -> Tensor:
        """``Tensor[N, num_classes]`` float32 scores for ``images``: the forward pass of the maps, without maps."""
        x = prepare_input(images, self.device, self.channels_last)
        with torch.no_grad(), autocast(x.device, self.amp):
            _, output = self.adapter(x)
        return output_tensor(output).float()

    def _sum_weights(self, features: Tensor, lists: list[list]) -> Tensor:
        """``Tensor[N, k, C]`` channel weights of weighted sums of classes: the sums of the classes' weights."""
        forms = [[linear_form(t) or ([], []) for t in row] for row in lists]
        width = max(len(c) for row in forms for c, _ in row)  # classes per target, padded with class 0, weight 0
        classes = torch.tensor([[[*c, *[0] * (width - len(c))] for c, _ in row] for row in forms])
        factors = torch.tensor([[[*a, *[0.0] * (width - len(a))] for _, a in row] for row in forms])
        n, k = classes.shape[:2]
        weights = self.adapter.weights(features, classes.view(n, k * width).to(features.device))  # (N, k * J, C)
        return (weights.view(n, k, width, -1) * factors.to(weights)[..., None]).sum(dim=2)

    def raw_maps(self, features: Tensor, classes: Tensor) -> Tensor:
        """``Tensor[N, k, h, w]`` maps of ``classes`` (``Tensor[N, k]``) from a feature map, before normalization."""
        weights = self.adapter.weights(features, classes.to(features.device))  # (N, k, C)
        return self._relu(self._weighted_maps(features, weights))

    @staticmethod
    def _weighted_maps(features: Tensor, weights: Tensor) -> Tensor:
        """``Tensor[N, k, h, w]``: channel weights ``Tensor[N, k, C]`` times ``features`` ``Tensor[N, C, h, w]``."""
        with torch.no_grad():
            n, c, h, w = features.shape
            return torch.bmm(weights.to(features.dtype), features.reshape(n, c, h * w)).view(n, -1, h, w)

    def _relu(self, raw: Tensor) -> Tensor:
        return raw.relu() if self.relu else raw

    def more_maps(self, output: CamOutput, images: Tensor, classes: Tensor) -> Tensor:
        """More classes' raw maps from the same forward pass (``images`` is not needed)."""
        return normalize_maps(self.raw_maps(output.features, classes.to(output.features.device)), self.normalize)


def _check_linear(lists: list[list]) -> None:
    """Refuse, in one line, a target CAM cannot explain: one that is not a weighted sum of class logits."""
    other = next((t for row in lists for t in row if linear_form(t) is None), None)
    if other is not None:
        raise InvalidArgument(
            "targets",
            f"targets=: CAM explains classes only (ints, ClassTarget) and weighted sums of them (ClassesTarget, "
            f"NegativeTarget), not {other!r}; a gradient method such as gradcam explains any score of the output",
            arguments=["targets"],
        )


def _refuse_segmentation(model: nn.Module) -> None:
    """Refuse, in one line, a segmentation model: its output is per pixel, and it has no GAP + linear head."""
    names = [cls.__name__ for cls in type(model).__mro__]
    if any("Segmentation" in name or name == "LRASPP" for name in names):
        raise HeadNotFound(
            f"{type(model).__name__} is a segmentation model: CAM needs a classifier ending in global average "
            "pooling + linear; use a gradient method such as gradcam with camloc.SegmentationTarget"
        )
