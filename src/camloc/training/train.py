"""`camloc train`: fit a GAP classifier on image labels alone, then measure how well its CAM localizes.

Reproducible and resumable by construction: the shuffling order and every augmentation draw of
epoch ``e`` come from a generator seeded with ``(seed, e)``, the learning rate is a pure function
of the step, and the model file written after each epoch holds the optimizer state and torch's RNG
state. Resuming after epoch ``e`` therefore continues exactly as the uninterrupted run would have.

Under ``torchrun --nproc-per-node N`` each process takes its part of every global batch of
``N x batch_size`` images (the global order and augmentation draws are those one process makes), the
model is wrapped in DistributedDataParallel, whose all-reduce makes each step's gradient that of the
whole global batch, and rank 0 writes the model file. BatchNorm layers in training mode normalize by
their own process's images (SyncBatchNorm needs CUDA), so only a network without them trains exactly
as one process with the global batch would.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..datasets.base import Dataset, Sample, hold_out
from ..distributed import World, all_gather, all_sum, world
from ..errors import BadImage, InvalidArgument, OutputExists, ResumeError
from ..evaluation.evaluate import calibrate, evaluate
from ..images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, load_batch, open_image
from ..maps.cam import CAM
from ..models.build import build_model
from ..models.files import read_model_file, save_checkpoint
from ..models.graph import split_at
from ..models.nets import ARCHS
from ..utils import TarMember, model_device
from ..utils import progress as progress_bar

__all__ = ["TrainConfig", "TrainResult", "assess", "learning_rate", "train"]

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
AUGMENTS = ("images", "features")
SCHEDULES = ("cosine", "step", "constant")
# A TrainConfig field left at AUTO gets the default of its kind of run in __post_init__.
AUTO: Any = None
# The fine-tuning recipe for pretrained backbones (docs/experiments.md, "Real birds"): the stages up to
# stride 16 stay frozen and run once per image, the rest is fine-tuned at 448 px with Hide-and-Seek.
FROZEN_STAGE = {"mobilenet_v2": "features.13"}
DECODED_CACHE_BYTES = 2 << 30  # decoded training images kept in memory (the generated shapes: 98 MB)


@dataclass
class TrainConfig:
    """Everything that defines a training run (a run resumes only with the same values, ``workers`` aside).

    Fields left at ``AUTO`` take the defaults of the kind of run: from scratch, fine-tuning a
    pretrained network, or the fine-tuning recipe (:attr:`recipe`: a pretrained architecture of
    :data:`FROZEN_STAGE`, not ``-GAP`` converted), which freezes the stages up to stride 16, keeps
    their output for 448-pixel images in memory and fine-tunes the rest with Hide-and-Seek
    (measured on CUB-200-2011 in docs/experiments.md).

    Attributes:
        arch: ``"gapnet"`` (camloc's small GAP net), a torchvision name, or ``"timm:<name>"``.
        pretrained: start from the architecture's pretrained weights (all but the classifier).
        weights: or from this weight file.
        convert_gap: :func:`camloc.models.gap.convert` arguments: train the paper's "-GAP" variant.
        epochs: epochs of the run; AUTO: 10 for the recipe, else 30 (gapnet on the generated shapes:
            3-4 min on 2 cores, robust over the generator's seeds).
        batch_size: images per step (at least 2).
        optimizer: ``"sgd"`` (Nesterov momentum when ``momentum > 0``) or ``"adamw"``.
        lr: the base learning rate; None: 0.1 for SGD from scratch, 0.01 SGD fine-tuning, 1e-3 AdamW.
        momentum: SGD's momentum.
        weight_decay: applied to weights only, not to biases and BatchNorm parameters; AUTO: 1e-4
            fine-tuning, 5e-4 from scratch.
        schedule: ``"cosine"`` (to zero), ``"step"`` (x0.1 at 1/2 and 3/4 of the run) or ``"constant"``.
        warmup_epochs: linear warm-up from lr/10, so a large from-scratch lr does not diverge.
        size: input side (images are squashed, as the WSOL protocol evaluates them); AUTO: 64 for
            camloc's own nets, 448 for the recipe, 224 otherwise.
        min_scale: the crops' area range ``[min_scale, 1]``; AUTO: 0.35, 0.5 with ``augment="features"``.
        hflip: mirror each training image with probability 1/2 (drawn per epoch).
        freeze: a module name (``"features.13"``): its parameters and every parameter registered
            before it stay as they start, their BatchNorm layers use their running statistics, and
            no gradient flows through them (a cheaper step). None: train everything; ``"auto"``:
            the recipe's :data:`FROZEN_STAGE`, else None.
        new_lr_scale: the learning rate of the parameters that start from random weights (the
            classifier, a ``-GAP`` head) is ``lr`` times this when the rest is pretrained; AUTO: 10
            fine-tuning (as wsolevaluation), else 1.
        label_smoothing: cross-entropy's label smoothing.
        hide: Hide-and-Seek (Singh and Lee, ICCV 2017): each cell of a ``hide_grid`` x ``hide_grid``
            grid over the input is set to zero (the mean colour, after normalization; with
            ``augment="features"``, over the frozen layers' output) with this probability, drawn
            per image and epoch, so that the classifier cannot rely on the most telling part alone
            and the CAM spreads over the whole object. AUTO: 0.5 for the recipe, else 0.
        hide_grid: the cells per side of that grid.
        augment: ``"images"``: every epoch, a random crop (area in ``[min_scale, 1]``) of each image,
            squashed to ``size`` and maybe mirrored. ``"features"`` (needs ``freeze``): the frozen
            layers run once on each image squashed whole (and mirrored), and every epoch takes a
            random crop of their output (see ``_FrozenMaps``): far cheaper when the frozen part is
            most of the network. AUTO: ``"features"`` for the recipe, else ``"images"``.
        calibrate: images of each class (with boxes) held out of training, on which :func:`assess`
            chooses the CAM thresholds it reports the test accuracy at (drawn by ``seed``); AUTO: 2
            for the recipe, else 0.
        seed: seeds the initialization, the shuffling and every augmentation draw.
        workers: threads decoding images.
        mean: the normalization's per-channel mean.
        std: the normalization's per-channel standard deviation.
    """

    arch: str = "gapnet"
    pretrained: bool = False  # start from the architecture's pretrained weights (all but the classifier)
    weights: str | None = None  # or from this weight file
    convert_gap: dict | None = None  # camloc.gap.convert arguments: train the paper's "-GAP" variant
    epochs: int = AUTO  # None: 30 from scratch (3-4 min on the generated shapes), 10 for the recipe
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None  # default: 0.1 for SGD from scratch, 0.01 SGD fine-tuning, 1e-3 AdamW
    momentum: float = 0.9
    weight_decay: float = AUTO  # None: 5e-4 from scratch, 1e-4 fine-tuning
    schedule: str = "cosine"  # cosine: to zero; step: x0.1 at 1/2 and 3/4 of the run
    warmup_epochs: float = 1.0  # linear warm-up from lr/10, so a large from-scratch lr does not diverge
    size: int = AUTO  # input side (images are squashed, as the WSOL protocol evaluates them)
    min_scale: float = AUTO  # crop area range [min_scale, 1]; None: 0.35 (images), 0.5 (features)
    hflip: bool = True
    freeze: str | None = "auto"  # the last module kept frozen (its parameters and all registered before it)
    new_lr_scale: float = AUTO  # learning-rate factor of the fresh layers; None: 10 fine-tuning, else 1
    label_smoothing: float = 0.0
    hide: float = AUTO  # Hide-and-Seek: probability of blanking each cell of a hide_grid x hide_grid grid
    hide_grid: int = 4
    augment: str = AUTO  # "images": crops and flips of the images; "features": of the frozen layers' output
    calibrate: int = AUTO  # images per class held out of training, to choose the CAM thresholds on
    seed: int = 0
    workers: int = 2
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

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
        if self.calibrate < 0:
            raise InvalidArgument("calibrate", f"calibrate= must be >= 0, got {self.calibrate}")
        if self.epochs < 1 or self.batch_size < 2 or self.size < 16:
            raise InvalidArgument("epochs", "epochs= must be >= 1, batch_size= >= 2 and size= >= 16")
        if self.new_lr_scale <= 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise InvalidArgument("new_lr_scale", "new_lr_scale= must be positive and label_smoothing= in [0, 1)")
        if not 0.0 < self.min_scale <= 1.0:
            raise InvalidArgument("min_scale", f"min_scale= must be in (0, 1], got {self.min_scale}")
        if self.augment == "features" and self.freeze is None:
            raise InvalidArgument("augment", "augment='features' needs freeze=: the layers whose output is kept")
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
        if self.hide is None:
            self.hide = 0.5 if self.recipe else 0.0
        if self.calibrate is None:
            self.calibrate = 2 if self.recipe else 0

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


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model, in eval mode.
        path: the model file written after every epoch.
        history: one entry per epoch (all epochs of the run, resumed ones included): loss, accuracy,
            lr, images/s, seconds.
        skipped: one ``{"image_id", "path", "error"}`` per unreadable training image.
        seconds: wall time of the epochs run in this call.
        held_out: the images ``config.calibrate`` set apart (None when it is 0).
        prepare_seconds: the part of ``seconds`` spent computing the frozen layers' output before
            the first epoch (``augment="features"``).
    """

    model: nn.Module
    path: Path
    history: list[dict]  # one entry per epoch: loss, accuracy, lr, images/s, seconds
    skipped: list[dict] = field(default_factory=list)  # unreadable training images
    seconds: float = 0.0  # wall time of the epochs run in this call
    held_out: Dataset | None = None
    prepare_seconds: float = 0.0  # of seconds: computing the frozen layers' output (augment="features")


def train(
    config: TrainConfig,
    train_set: Dataset,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    stop_after: int | None = None,
    device: str | torch.device = "cpu",
    cache_bytes: int = DECODED_CACHE_BYTES,
) -> TrainResult:
    """Train on ``train_set`` and write the model file ``out`` after every epoch.

    ``resume``: continue the run recorded in ``out`` (same data and configuration). ``stop_after``:
    end after that many epochs in total, as if interrupted (the file is then resumable).
    ``cache_bytes``: decoded training images are kept in memory up to this many bytes of pixels.
    Under torchrun (:func:`camloc.distributed.join` first) every process calls this with the same
    arguments; ``batch_size`` is then per process, and only rank 0 writes ``out``.
    """
    here = world()
    out = Path(out)
    class_names = train_set.class_names
    num_classes = len(class_names) if class_names else 1 + max(s.label for s in train_set.samples)
    held_out = None
    if config.calibrate:
        train_set, held_out = hold_out(train_set, config.calibrate, config.seed)
    samples = list(train_set.samples)
    if len(samples) < 2:
        raise InvalidArgument(
            "train_set", f"{train_set.root}: a training set needs at least 2 images, found {len(samples)}"
        )
    torch.manual_seed(config.seed)
    model = build_model(
        config.arch, num_classes, pretrained=config.pretrained, weights=config.weights, convert_gap=config.convert_gap
    )
    frozen = _freeze(model, config.freeze)
    if here.rank:  # its own dropout masks; rank 0 draws what a single process draws
        torch.manual_seed(config.seed * 1_000_003 + here.rank)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    history: list[dict] = []
    bad: dict[str, dict] = {}
    start_epoch = 0
    if resume:
        start_epoch, history, bad = _restore(out, config, model, optimizer, num_classes, here)
        log.info("resuming %s after epoch %d/%d", out, start_epoch, config.epochs)
    elif out.exists():
        raise OutputExists(f"{out}: exists; pass resume=True to continue that run, or remove it")

    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    began = time.perf_counter()
    with ThreadPoolExecutor(max(1, config.workers)) as pool:
        source: _Images | _FrozenMaps
        if config.augment == "features":
            source = _FrozenMaps(model, samples, config, pool, bad, progress if here.is_main else False, here)
        else:
            source = _Images(samples, config, pool, _Decoded(cache_bytes), bad, model, here)
        steps_per_epoch = _batches(source.count, config.batch_size * here.size, here.size)
        total_steps = steps_per_epoch * config.epochs
        net = _parallel(source.net, here)
        for epoch in range(start_epoch, end_epoch):
            stats = _train_epoch(
                source, net, model, frozen, optimizer, config, epoch, steps_per_epoch, total_steps,
                progress if here.is_main else False, here,
            )  # fmt: skip
            history.append(stats)
            log.info(
                "epoch %d/%d: loss %.4f, accuracy %.2f %%, lr %.4g, %.0f img/s, %.1f s",
                epoch + 1, config.epochs, stats["loss"], stats["accuracy"], stats["lr"], stats["images_per_s"],
                stats["seconds"],
            )  # fmt: skip
            bad = _gathered(bad)
            rng_states = all_gather(torch.get_rng_state())
            if here.is_main:
                _save(out, model, config, num_classes, class_names, optimizer, epoch + 1, history, bad, rng_states)
    bad = _gathered(bad)
    model.eval()
    prepared = source.seconds if start_epoch < end_epoch else 0.0
    return TrainResult(model, out, history, list(bad.values()), time.perf_counter() - began, held_out, prepared)


def inference_batch(size: int) -> int:
    """Images per forward pass without gradients at input side ``size``: as many pixels as 64 images of 224².

    Memory then stays what it is at 224 px (a batch of 64 at 448 px needs 1.2 GB for one
    activation of MobileNetV2's second stage alone).
    """
    return max(1, 64 * 224 * 224 // (size * size))


def _batches(n: int, batch_size: int, processes: int = 1) -> int:
    full, rest = divmod(n, batch_size)
    # a 1-image batch would break BatchNorm's training statistics: each process needs 2
    return full + (1 if rest >= 2 * processes else 0)


def _parallel(net: nn.Module, here: World) -> nn.Module:
    """``net`` in DistributedDataParallel when this is one of several processes, else ``net``."""
    if not here.distributed:
        return net
    device = model_device(net)
    ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def _gathered(bad: dict[str, dict]) -> dict[str, dict]:
    """Every process's unreadable images, in one dict (a single process: ``bad`` itself)."""
    parts = all_gather(bad)
    if len(parts) == 1:
        return bad
    return {k: v for part in parts for k, v in sorted(part.items())}


def _agree(kept: int, here: World) -> tuple[int, bool]:
    """The images of this step over all processes, and whether every process has the 2 that BatchNorm needs."""
    if not here.distributed:
        return kept, kept >= 2
    kept_and_short = all_sum({"counts": np.array([kept, int(kept < 2)])})["counts"]  # one all-reduce a step
    return int(kept_and_short[0]), not int(kept_and_short[1])


def _part(idx: np.ndarray, here: World) -> np.ndarray:
    """This process's part of a global batch: the ``rank``-th of ``size`` nearly equal runs."""
    return np.array_split(idx, here.size)[here.rank] if here.distributed else idx


def _freeze(model: nn.Module, last: str | None) -> list[nn.Module]:
    """Stop training ``last`` and every parameter registered before it; the modules left without a trainable one.

    Those modules are switched back to eval mode at every epoch's start (BatchNorm keeps its
    running statistics), so that they compute exactly what they computed before training.
    """
    if last is None:
        return []
    names = [name for name, _ in model.named_parameters()]
    inside = [i for i, name in enumerate(names) if name.startswith(last + ".")]
    if not inside:
        near = [name for name, _ in model.named_modules() if name.endswith("." + last)]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise InvalidArgument(
            "freeze", f"freeze={last!r}: {type(model).__name__} has no module of that name with parameters{hint}"
        )
    stop = set(names[: inside[-1] + 1])
    for name, p in model.named_parameters():
        p.requires_grad_(name not in stop)
    return [
        m
        for m in model.modules()
        if any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters())
    ]


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters, in groups: fresh or pretrained, with or without weight decay.

    Each group's ``lr_scale`` multiplies the schedule's learning rate: ``new_lr_scale`` for the
    parameters that start from random weights when the rest is pretrained (wsolevaluation trains
    those at 10x), 1 otherwise. No weight decay on biases and BatchNorm parameters (standard
    practice; they set scale, not capacity).
    """
    fresh = set(getattr(model, "camloc_new", ())) if config.pretrained or config.weights else set()
    groups = []
    for new in (False, True):
        for decay in (True, False):
            params = [
                p
                for n, p in model.named_parameters()
                if p.requires_grad and (n in fresh) == new and (p.ndim > 1) == decay
            ]
            if params:
                groups.append({
                    "params": params,
                    "weight_decay": config.weight_decay if decay else 0.0,
                    "lr_scale": config.new_lr_scale if new else 1.0,
                })  # fmt: skip
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.base_lr)
    return torch.optim.SGD(groups, lr=config.base_lr, momentum=config.momentum, nesterov=config.momentum > 0)


def learning_rate(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate at ``step`` (0-based) of ``total_steps``: a pure function of the step.

    A linear warm-up from ``base_lr / 10`` over ``warmup_epochs * steps_per_epoch`` steps, then
    ``config.schedule`` over the remaining steps: cosine to zero, x0.1 at 1/2 and 3/4, or constant.
    """
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return config.base_lr * (0.1 + 0.9 * step / warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    if config.schedule == "cosine":
        return config.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return config.base_lr * (0.1 ** ((progress >= 0.5) + (progress >= 0.75)))
    return config.base_lr


def _train_epoch(
    source: _Images | _FrozenMaps,
    net: nn.Module,
    model: nn.Module,
    frozen: list[nn.Module],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    steps_per_epoch: int,
    total_steps: int,
    show: bool | None,
    here: World,
) -> dict:
    """One epoch; ``net`` runs the batches (``source.net``, maybe in DistributedDataParallel)."""
    model.train()
    for m in frozen:
        m.eval()
    device = model_device(model)
    seen = correct = 0
    loss_sum = 0.0
    began = time.perf_counter()
    bar = progress_bar(
        steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", enabled=show, leave=False
    )
    lr = learning_rate(config, epoch * steps_per_epoch, total_steps, steps_per_epoch)
    for b, batch in enumerate(source.batches(epoch, steps_per_epoch)):
        bar.update()
        total, enough = _agree(0 if batch is None else len(batch[1]), here)
        if batch is None or not enough:  # every process skips the step together
            continue
        lr = learning_rate(config, epoch * steps_per_epoch + b, total_steps, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        x = batch[0].to(device).contiguous(memory_format=torch.channels_last)
        y = batch[1].to(device)
        logits = net(x)
        summed = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing, reduction="sum")
        # the mean over the global batch: DistributedDataParallel averages the processes' gradients
        loss = summed * (here.size / total)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += summed.item()
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
    bar.close()
    if here.distributed:
        sums = all_sum({"seen": seen, "correct": correct, "loss_sum": loss_sum})
        seen, correct, loss_sum = int(sums["seen"]), int(sums["correct"]), float(sums["loss_sum"])
    seconds = time.perf_counter() - began
    return {
        "epoch": epoch + 1,
        "loss": loss_sum / max(1, seen),
        "accuracy": 100.0 * correct / max(1, seen),
        "lr": lr,
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds else 0.0,
    }


Batch = tuple[torch.Tensor, torch.Tensor] | None  # (inputs, labels), or None for a step with fewer than 2 images


class _Images:
    """Training batches of augmented images: a random crop and flip of every image, drawn anew every epoch.

    The next batch is decoded (or taken from ``decoded``), cropped and normalized in ``pool``'s
    threads while the current one trains. Unreadable images are left out of their batch and
    recorded in ``bad``.
    """

    seconds = 0.0  # no preparation before the first epoch

    def __init__(
        self,
        samples: Sequence[Sample],
        config: TrainConfig,
        pool: ThreadPoolExecutor,
        decoded: _Decoded,
        bad: dict[str, dict],
        model: nn.Module,
        here: World,
    ) -> None:
        self.samples, self.config, self.pool, self.decoded, self.bad = samples, config, pool, decoded, bad
        self.net, self.here = model, here
        self.count = len(samples)
        self.preprocess = config.preprocess()

    def batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        config, samples = self.config, self.samples
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(len(samples))
        # Every augmentation draw is made here, up front, so it does not depend on thread timing.
        crops = rng.random((len(samples), 4))
        flips = rng.random(len(samples)) < 0.5 if config.hflip else np.zeros(len(samples), bool)
        shown = _hide_draws(rng, len(samples), config)

        size = config.batch_size * self.here.size  # the global batch

        def load(b: int) -> tuple[np.ndarray, list]:
            idx = _part(order[b * size : (b + 1) * size], self.here)
            return idx, [
                self.pool.submit(_augmented, self.decoded, samples[i], crops[i], flips[i], config, self.preprocess)
                for i in idx
            ]

        pending = load(0)
        for b in range(steps):
            idx, loading = pending
            if b + 1 < steps:
                pending = load(b + 1)  # prepared while this batch trains
            images, labels, kept = [], [], []
            for i, item in zip(idx, (f.result() for f in loading), strict=True):
                if isinstance(item, BadImage):
                    sample = samples[i]
                    self.bad.setdefault(
                        sample.image_id, {"image_id": sample.image_id, "path": str(sample.path), "error": item.reason}
                    )
                    continue
                images.append(item)
                labels.append(samples[i].label)
                kept.append(i)
            if len(images) < 2:
                yield None
                continue
            yield _hidden(torch.stack(images), shown, kept), torch.tensor(labels)


class _FrozenMaps:
    """Training batches of the frozen layers' output, computed once per image (``augment="features"``).

    Every training image is squashed to the input size and, with ``hflip``, mirrored; the frozen
    part of the network (up to ``config.freeze``) runs once on each, in eval mode, and its output is
    kept in memory as float16. An epoch then takes, per image, one of its views and a random crop
    of it (a window of ``[sqrt(min_scale), 1]`` of each side, one size per batch) and runs only the
    layers after the cut: the frozen part costs one forward pass per image and view instead of one
    per image and epoch.
    """

    def __init__(
        self,
        model: nn.Module,
        samples: Sequence[Sample],
        config: TrainConfig,
        pool: ThreadPoolExecutor,
        bad: dict[str, dict],
        show: bool | None,
        here: World,
    ) -> None:
        if config.freeze is None:
            raise InvalidArgument("augment", "augment='features' needs freeze=: the layers whose output is kept")
        began = time.perf_counter()
        first, self.net = split_at(model, config.freeze)
        self.config, self.here = config, here
        preprocess = config.preprocess()
        device = model_device(model)
        was_training = model.training
        model.eval()
        parts: list[tuple[int, torch.Tensor, list[int]]] = []  # (first sample, maps, labels) of each chunk
        size = min(config.batch_size, inference_batch(config.size))  # images per forward pass
        starts = range(0, len(samples), size)[here.rank :: here.size]  # this process's chunks
        try:
            with torch.no_grad(), progress_bar(len(samples), desc="frozen layers", enabled=show, leave=False) as bar:
                for start in starts:
                    chunk = samples[start : start + size]
                    batch = load_batch([s.path for s in chunk], preprocess, executor=pool)
                    by_path = {str(s.path): s for s in chunk}
                    for err in batch.errors:
                        sample = by_path[err.path]
                        bad.setdefault(
                            sample.image_id, {"image_id": sample.image_id, "path": err.path, "error": err.reason}
                        )
                    if batch.paths:
                        x = batch.images.to(device).contiguous(memory_format=torch.channels_last)
                        views = [x, x.flip(-1)] if config.hflip else [x]
                        chunk_maps = torch.stack([first(v).half() for v in views], dim=1).cpu()
                        parts.append((start, chunk_maps, [by_path[p].label for p in batch.paths]))
                    bar.update(len(chunk) * here.size)
        finally:
            model.train(was_training)
        if here.distributed:  # every process keeps all of them, in the order one process makes
            parts = sorted((part for rank_parts in all_gather(parts) for part in rank_parts), key=lambda p: p[0])
        maps = [m for _, m, _ in parts]
        labels = [label for _, _, chunk_labels in parts for label in chunk_labels]
        if len(labels) < 2:
            raise InvalidArgument("train_set", f"a training set needs at least 2 readable images, found {len(labels)}")
        self.maps = torch.cat(maps)  # [N, views, C, h, w]
        self.labels = torch.tensor(labels)
        self.count = len(labels)
        self.seconds = time.perf_counter() - began
        log.info(
            "frozen layers up to %s: %d images x %d views, %.0f MiB, %.1f s",
            config.freeze, self.count, self.maps.shape[1], self.maps.numel() * 2 / 2**20, self.seconds,
        )  # fmt: skip

    def batches(self, epoch: int, steps: int) -> Iterator[Batch]:
        config = self.config
        n, views, _, h, w = self.maps.shape
        rng = np.random.default_rng([config.seed, epoch])
        order = rng.permutation(n)
        view = rng.integers(0, views, n)
        sides = np.sqrt(config.min_scale) + (1.0 - np.sqrt(config.min_scale)) * rng.random(steps)
        offsets = rng.random((n, 2))
        shown = _hide_draws(rng, n, config)
        size = config.batch_size * self.here.size  # the global batch
        for b in range(steps):
            idx = _part(order[b * size : (b + 1) * size], self.here)
            ch, cw = max(1, round(h * sides[b])), max(1, round(w * sides[b]))
            tops = (offsets[idx, 0] * (h - ch + 1)).astype(int)
            lefts = (offsets[idx, 1] * (w - cw + 1)).astype(int)
            crops = [
                self.maps[i, v, :, t : t + ch, left : left + cw]
                for i, v, t, left in zip(idx, view[idx], tops, lefts, strict=True)
            ]
            yield _hidden(torch.stack(crops).float(), shown, idx), self.labels[idx]


def _hide_draws(rng: np.random.Generator, n: int, config: TrainConfig) -> np.ndarray | None:
    """Which cells of each image's hide grid stay visible this epoch (``bool[n, g, g]``), None without hiding."""
    if not config.hide:
        return None
    return rng.random((n, config.hide_grid, config.hide_grid)) >= config.hide


def _hidden(x: torch.Tensor, shown: np.ndarray | None, rows: Sequence[int] | np.ndarray) -> torch.Tensor:
    """``x`` (``Tensor[N, C, H, W]``) with the hidden cells of its images' grids (``shown[rows]``) set to zero."""
    if shown is None:
        return x
    keep = torch.from_numpy(shown[np.asarray(rows)]).to(x.dtype)[:, None]
    return x * F.interpolate(keep, size=x.shape[-2:], mode="nearest")


class _Decoded:
    """Training images decoded once and kept while they fit in ``budget`` bytes (as RGB pixels).

    A training set that fits is read from disk once, not once per epoch.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.used = budget, 0
        self.images: dict[str, Image.Image | BadImage] = {}
        self.lock = threading.Lock()

    def get(self, path: Path | TarMember) -> Image.Image | BadImage:
        key = str(path)
        item = self.images.get(key)
        if item is None:
            try:
                item = open_image(path)
            except BadImage as err:
                item = err
            size = 0 if isinstance(item, BadImage) else 3 * item.width * item.height
            with self.lock:
                if key not in self.images and self.used + size <= self.budget:
                    self.images[key] = item
                    self.used += size
        return item


def _augmented(
    decoded: _Decoded, sample: Sample, draw: np.ndarray, flip: bool, config: TrainConfig, preprocess: Preprocess
) -> torch.Tensor | BadImage:
    """A random crop (area in [min_scale, 1], aspect in [3/4, 4/3]) squashed to size, maybe mirrored."""
    im = decoded.get(sample.path)
    if isinstance(im, BadImage):
        return im
    w, h = im.size
    area = w * h * (config.min_scale + (1.0 - config.min_scale) * draw[0])
    aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draw[1])
    cw = min(w, max(1, round(math.sqrt(area * aspect))))
    ch = min(h, max(1, round(math.sqrt(area / aspect))))
    left = int(draw[2] * (w - cw + 1))
    top = int(draw[3] * (h - ch + 1))
    side = preprocess.size
    im = im.resize((side, side), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
    if flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return preprocess.to_tensor(im)


def _save(out, model, config, num_classes, class_names, optimizer, epoch, history, bad, rng_states) -> None:
    """The model file of the run so far; ``rng_states``: every process's torch RNG state, in rank order."""
    save_checkpoint(
        out,
        model,
        arch=config.arch,
        num_classes=num_classes,
        class_names=class_names,
        preprocess=config.preprocess(),
        convert_gap=_gap_spec(model, config),
        extra={
            "train": {
                "config": dataclasses.asdict(config),
                "epoch": epoch,
                "optimizer": optimizer.state_dict(),
                "torch_rng": rng_states[0],
                "torch_rng_ranks": rng_states,
                "processes": len(rng_states),
                "history": history,
                "skipped": list(bad.values()),
            }
        },
    )


def _gap_spec(model: nn.Module, config: TrainConfig) -> dict | None:
    if config.convert_gap is None:
        return None
    return dict(getattr(model, "camloc_gap", config.convert_gap))


def _restore(
    out: Path, config: TrainConfig, model: nn.Module, optimizer, num_classes: int, here: World
) -> tuple[int, list, dict]:
    record = read_model_file(out)
    state = record.get("train")
    if state is None:
        raise ResumeError(f"{out}: holds no training state to resume")
    saved = dict(state["config"])
    mine = dataclasses.asdict(config)
    differ = [k for k in mine if k not in ("workers",) and _normal(saved.get(k)) != _normal(mine[k])]
    if differ:
        k = differ[0]
        raise ResumeError(
            f"{out}: was trained with {k}={saved.get(k)!r}, not {mine[k]!r}; resume with the same settings"
        )
    if record["num_classes"] != num_classes:
        raise ResumeError(f"{out}: has {record['num_classes']} classes, the dataset {num_classes}")
    processes = int(state.get("processes", 1))
    if processes != here.size:  # the global batch, and so every step, depends on it
        raise ResumeError(f"{out}: was trained by {processes} process(es), not {here.size}; resume with as many")
    model.load_state_dict(record["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state.get("torch_rng_ranks", [state["torch_rng"]])[here.rank])
    return int(state["epoch"]), list(state["history"]), {s["image_id"]: s for s in state.get("skipped", [])}


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def assess(
    model: nn.Module,
    test_set: Dataset,
    preprocess: Preprocess,
    *,
    batch_size: int | None = None,
    workers: int = 2,
    held_out: Dataset | None = None,
) -> dict:
    """Classification and localization of a trained model on ``test_set`` (wsol protocol), next to the best centred box.

    Returns ``{"cam": summary, "center": summary}``, the second for the best fixed centred box.
    With ``held_out`` (labelled images the model was not trained on) each summary also holds
    ``"calibrated"``: the test accuracy at the thresholds (box sizes) chosen on those images.
    ``batch_size``: images per forward pass (default: :func:`inference_batch` of the input side).
    """
    cam = CAM(model)
    batch_size = batch_size or inference_batch(preprocess.size)
    options: dict[str, Any] = {"batch_size": batch_size, "workers": workers, "progress": False}
    out = {}
    for name, baseline in (("cam", None), ("center", "center")):
        result = evaluate(test_set, cam, preprocess, baseline=baseline, **options)
        if held_out is not None and len(held_out):
            val = evaluate(held_out, cam, preprocess, baseline=baseline, **options)
            result.summary["calibrated"] = calibrate(result, val)
        out[name] = result.summary
    return out
