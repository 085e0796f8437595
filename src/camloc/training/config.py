"""What defines a training run: :class:`TrainConfig`, its fields documented once (the command line's help too)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..errors import InvalidArgument, did_you_mean
from ..images import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from ..models.nets import ARCHS
from .wsol import WSOL_LOSSES, bgc_options

__all__ = [
    "AUGMENTS",
    "AUTO",
    "FROZEN_STAGE",
    "OPTIMIZERS",
    "RECIPE_BOX_IMAGES",
    "SCHEDULES",
    "TrainConfig",
    "field_help",
    "recipe_map_size",
]

OPTIMIZERS = ("sgd", "adamw")
AUGMENTS = ("images", "features")
SCHEDULES = ("cosine", "step", "constant")
# A TrainConfig field left at AUTO gets the default of its kind of run in __post_init__.
AUTO: Any = None
# The fine-tuning recipe for pretrained backbones (docs/experiments.md, "Real birds" and (e)): the stages up
# to stride 16 stay frozen and run once per image, the rest is fine-tuned at 448 px with BGC's loss, and the
# model file asks for maps read at 640 px.
FROZEN_STAGE = {"mobilenet_v2": "features.13"}
# Training images whose boxes choose the recipe's box threshold: on CUB, 400 give the curve of the test
# images (docs/weak-labels.md); the 100 held-out images alone are too few (a point an image).
RECIPE_BOX_IMAGES = 400


@dataclass
class TrainConfig:
    """Everything that defines a training run (it resumes only with the same values but ``workers``, ``box_images``).

    Fields left at ``AUTO`` (None) take the defaults of the kind of run: from scratch, fine-tuning a
    pretrained network, or the fine-tuning recipe (:attr:`recipe`: a pretrained architecture of
    :data:`FROZEN_STAGE`, not ``-GAP`` converted), which freezes the stages up to stride 16, keeps
    their output for 448-pixel images in memory and fine-tunes the rest with BGC's loss
    (measured on CUB-200-2011 in docs/experiments.md). The attributes' descriptions below are
    also ``camloc train``'s help (:func:`field_help`): the one place they are written.

    Attributes:
        arch: ``"gapnet"`` (camloc's small GAP net), a torchvision name, or ``"timm:<name>"``.
        pretrained: start from the architecture's pretrained weights (all but the classifier; offline).
        weights: start from this weight file instead.
        convert_gap: :func:`camloc.models.gap.convert` arguments: train the paper's "-GAP" variant.
        epochs: passes over the training set; by default 10 for the recipe, else 30 (gapnet on the
            generated shapes: 3-4 min on 2 cores, robust over the generator's seeds).
        batch_size: images per step (at least 2; per process under torchrun).
        optimizer: ``"sgd"`` (Nesterov momentum when ``momentum > 0``) or ``"adamw"``.
        lr: the peak learning rate; by default 0.1 for SGD from scratch, 0.01 for SGD fine-tuning,
            1e-3 for AdamW.
        momentum: SGD's momentum.
        weight_decay: applied to weights only, not to biases and BatchNorm parameters; by default 1e-4
            fine-tuning, 5e-4 from scratch.
        schedule: the learning rate's schedule: ``"cosine"`` (to zero), ``"step"`` (x0.1 at 1/2 and 3/4
            of the run) or ``"constant"``.
        warmup_epochs: linear warm-up from lr/10, so a large from-scratch lr does not diverge.
        size: input side in pixels (images are squashed, as the WSOL protocol evaluates them); by
            default 64 for camloc's own nets, 448 for the recipe, else 224.
        min_scale: the smallest crop area, a fraction of the image (of the frozen layers' output with
            ``augment="features"``); by default 0.35, 0.5 with ``augment="features"``.
        hflip: mirror each training image with probability 1/2 (drawn per epoch).
        freeze: a module name (``"features.13"``): its parameters and every parameter registered
            before it stay as they start, their BatchNorm layers use their running statistics, and
            no gradient flows through them (a cheaper step). None (``none`` on the command line):
            train everything; by default (``"auto"``) the recipe's stage of :data:`FROZEN_STAGE`,
            else None.
        new_lr_scale: the learning-rate factor of the parameters that start from random weights (the
            classifier, a ``-GAP`` head) when the rest is pretrained; by default 10 fine-tuning (as
            wsolevaluation), else 1.
        label_smoothing: cross-entropy's label smoothing.
        hide: Hide-and-Seek (Singh and Lee, ICCV 2017): each cell of a ``hide_grid`` x ``hide_grid``
            grid over the input is set to zero (the mean colour, after normalization; with
            ``augment="features"``, over the frozen layers' output) with this probability, drawn
            per image and epoch, so that the classifier cannot rely on the most telling part alone
            and the CAM spreads over the whole object; by default 0.5 for the recipe without a
            ``wsol_loss`` (BGC's attentive dropout does that job), else 0.
        hide_grid: the cells per side of that grid.
        augment: ``"images"``: every epoch, a random crop (area in ``[min_scale, 1]``) of each image,
            squashed to ``size`` and maybe mirrored. ``"features"`` (needs ``freeze``): the frozen
            layers run once on each image squashed whole (and mirrored), and every epoch takes a
            random crop of their output: far cheaper when the frozen part is most of the network.
            By default ``"features"`` for the recipe, else ``"images"``.
        calibrate: images of each class (with boxes) held out of training, drawn by ``seed``; the
            test accuracy is also reported at the CAM thresholds chosen on them; by default 2 for
            the recipe, else 0.
        box_images: how many training images with boxes (drawn by ``seed``; their boxes are never
            used in training) choose the paper box rule's threshold that the model file records for
            ``camloc boxes``, ``camloc explain`` and the viewer: the threshold of highest CorLoc,
            in ``camloc boxes``' frame (:func:`camloc.evaluation.weak_labels.box_input`); by default
            400 for the recipe, else 0 (none recorded: those commands use 0.2).
        seed: seeds the initialization, the shuffling and the augmentation draws.
        workers: threads decoding images.
        mean: the normalization's per-channel mean.
        std: the normalization's per-channel standard deviation.
        wsol_loss: a localization loss added to the cross-entropy that keeps plain CAM at inference:
            ``"bgc"`` (Kim et al., CVPR 2022: feature-direction alignment, feature-norm and
            attentive-dropout consistency terms; docs/methods.md); None (``none`` on the command
            line): cross-entropy alone; by default (``"auto"``) ``"bgc"`` for the recipe, else None.
        wsol_options: the loss's weights and thresholds by name (``bgc``: sim, norm, drop, fg, bg,
            drop_threshold, drop_prob, warm, layer; :class:`~camloc.training.wsol.BgcOptions`).
        map_size: the input side the model file tells ``camloc evaluate`` (and :func:`camloc.evaluate`)
            to read the maps at, while it classifies at ``size``: a larger input gives finer maps
            and a classifier trained at ``size`` classifies best at it; None (``none``): ``size``;
            by default (``"auto"``) :func:`recipe_map_size` of ``size`` for the recipe, else None.
    """

    arch: str = "gapnet"
    pretrained: bool = False
    weights: str | None = None
    convert_gap: dict | None = None
    epochs: int = AUTO
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = AUTO
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    size: int = AUTO
    min_scale: float = AUTO
    hflip: bool = True
    freeze: str | None = "auto"
    new_lr_scale: float = AUTO
    label_smoothing: float = 0.0
    hide: float = AUTO
    hide_grid: int = 4
    augment: str = AUTO
    calibrate: int = AUTO
    box_images: int = AUTO
    seed: int = 0
    workers: int = 2
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    wsol_loss: str | None = "auto"
    wsol_options: dict | None = None
    map_size: int | str | None = "auto"

    @property
    def recipe(self) -> bool:
        """Whether the fine-tuning recipe's defaults apply: a pretrained architecture of :data:`FROZEN_STAGE`."""
        return bool(self.pretrained or self.weights) and self.convert_gap is None and self.arch in FROZEN_STAGE

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgument(
                "optimizer", f"optimizer= must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise InvalidArgument("schedule", f"schedule= must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        self._fill_defaults()
        if self.augment not in AUGMENTS:
            raise InvalidArgument("augment", f"augment= must be one of {', '.join(AUGMENTS)}, not {self.augment!r}")
        if not 0.0 <= self.hide < 1.0 or self.hide_grid < 1:
            raise InvalidArgument(
                "hide", f"hide= must be in [0, 1) and hide_grid= >= 1, got {self.hide}, {self.hide_grid}"
            )
        if self.map_size is not None and (not isinstance(self.map_size, int) or self.map_size < 16):
            raise InvalidArgument("map_size", f"map_size= must be None or at least 16, got {self.map_size!r}")
        if self.calibrate < 0:
            raise InvalidArgument("calibrate", f"calibrate= must be >= 0, got {self.calibrate}")
        if self.box_images < 0:
            raise InvalidArgument("box_images", f"box_images= must be >= 0, got {self.box_images}")
        if self.epochs < 1 or self.batch_size < 2 or self.size < 16:
            raise InvalidArgument("epochs", "epochs= must be >= 1, batch_size= >= 2 and size= >= 16")
        if self.new_lr_scale <= 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise InvalidArgument("new_lr_scale", "new_lr_scale= must be positive and label_smoothing= in [0, 1)")
        if not 0.0 < self.min_scale <= 1.0:
            raise InvalidArgument("min_scale", f"min_scale= must be in (0, 1], got {self.min_scale}")
        if self.augment == "features" and self.freeze is None:
            raise InvalidArgument("augment", "augment='features' needs freeze=: the layers whose output is kept")
        if self.wsol_loss is not None:
            if self.wsol_loss not in WSOL_LOSSES:
                raise InvalidArgument(
                    "wsol_loss",
                    f"wsol_loss= must be one of {', '.join(WSOL_LOSSES)}, not {self.wsol_loss!r}"
                    + did_you_mean(self.wsol_loss, WSOL_LOSSES),
                )
            bgc_options(self.wsol_options, self.arch)  # names, values and the drop layer checked now
        # lists after a JSON / checkpoint round trip
        self.mean = (float(self.mean[0]), float(self.mean[1]), float(self.mean[2]))
        self.std = (float(self.std[0]), float(self.std[1]), float(self.std[2]))

    def _fill_defaults(self) -> None:
        """Resolve every None (and ``freeze="auto"``) to the defaults of this kind of run (class docstring)."""
        tuned = bool(self.pretrained or self.weights)
        if self.freeze == "auto":
            self.freeze = FROZEN_STAGE[self.arch] if self.recipe else None
        if self.augment is None:
            self.augment = "features" if self.recipe else "images"
        if self.size is None:
            self.size = 64 if self.arch in ARCHS else 448 if self.recipe else 224
        if self.epochs is None:
            self.epochs = 10 if self.recipe else 30
        if self.weight_decay is None:
            self.weight_decay = 1e-4 if tuned else 5e-4
        if self.min_scale is None:
            self.min_scale = 0.5 if self.augment == "features" else 0.35
        if self.new_lr_scale is None:
            self.new_lr_scale = 10.0 if tuned else 1.0
        if self.wsol_loss == "auto":
            self.wsol_loss = "bgc" if self.recipe else None
        if self.hide is None:
            self.hide = 0.5 if self.recipe and self.wsol_loss is None else 0.0
        if self.map_size == "auto":
            self.map_size = recipe_map_size(self.size) if self.recipe else None
        if self.calibrate is None:
            self.calibrate = 2 if self.recipe else 0
        if self.box_images is None:
            self.box_images = RECIPE_BOX_IMAGES if self.recipe else 0

    @property
    def separate_map_size(self) -> int | None:
        """``map_size`` where the maps are read at another side than ``size``, else None (one input for both)."""
        side = self.map_size
        return side if isinstance(side, int) and side != self.size else None

    @property
    def base_lr(self) -> float:
        """``lr``, or its default: 1e-3 for AdamW, 0.01 for SGD from pretrained weights, 0.1 for SGD from scratch."""
        if self.lr is not None:
            return self.lr
        if self.optimizer == "adamw":
            return 1e-3
        return 0.01 if (self.pretrained or self.weights) else 0.1

    def preprocess(self) -> Preprocess:
        """The evaluation preprocessing of the trained model: squashed to ``size``, normalized by ``mean``, ``std``."""
        assert self.size is not None  # set in __post_init__
        return Preprocess(size=self.size, resize_size=self.size, mode="squash", mean=self.mean, std=self.std)


def recipe_map_size(size: int) -> int:
    """The recipe's map size for a model trained at ``size``: 10/7 of it, to a multiple of 32.

    Measured on CUB (docs/experiments.md (e)): maps read at 640 px from a model trained at 448 px.

    >>> recipe_map_size(448), recipe_map_size(224), recipe_map_size(32)
    (640, 320, 32)
    """
    return max(32, round(size * 10 / 7 / 32) * 32)


def field_help(name: str) -> str:
    """The description of :class:`TrainConfig`'s field ``name`` (its docstring's entry) as plain text.

    Example:
        >>> field_help("hide_grid")
        'the cells per side of that grid.'
        >>> field_help("optimizer")
        'sgd (Nesterov momentum when momentum > 0) or adamw.'
    """
    return _attributes()[name]


@cache
def _attributes() -> dict[str, str]:
    """Each entry of the docstring's ``Attributes:`` section, its lines joined, Sphinx markup dropped."""
    lines = inspect.cleandoc(TrainConfig.__doc__ or "").splitlines()
    entries: dict[str, list[str]] = {}
    for line in lines[lines.index("Attributes:") + 1 :]:
        entry = re.fullmatch(r" {4}(\w+): (.*)", line)
        if entry:
            entries[entry[1]] = [entry[2]]
        elif line.startswith(" " * 8):
            entries[list(entries)[-1]].append(line.strip())
    return {name: _plain(" ".join(words)) for name, words in entries.items()}


def _plain(text: str) -> str:
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)  # :func:`x` -> x
    return re.sub(r"``([^`]+)``", lambda code: _unquoted(code[1]), text)


def _unquoted(code: str) -> str:
    """``"sgd"`` -> sgd, but ``augment="features"`` stays as it is."""
    return code[1:-1] if len(code) > 1 and code[0] == code[-1] == '"' and code.count('"') == 2 else code
