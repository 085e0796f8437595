"""`camloc train`: fit a GAP classifier on image labels alone, then measure how well its CAM localizes.

Reproducible and resumable by construction: the shuffling order and every augmentation draw of
epoch ``e`` come from a generator seeded with ``(seed, e)``, the learning rate is a pure function
of the step, and the model file written after each epoch holds the optimizer state and torch's RNG
state. Resuming after epoch ``e`` therefore continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..datasets.base import Dataset, Sample
from ..errors import BadImage, InvalidArgument, OutputExists, ResumeError
from ..evaluation.evaluate import evaluate
from ..images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, open_image
from ..maps.cam import CAM
from ..models.build import build_model
from ..models.files import read_model_file, save_checkpoint
from ..models.nets import ARCHS
from ..utils import TarMember, model_device
from ..utils import progress as progress_bar

__all__ = ["TrainConfig", "TrainResult", "assess", "learning_rate", "train"]

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
DECODED_CACHE_BYTES = 2 << 30  # decoded training images kept in memory (the generated shapes: 98 MB)


@dataclass
class TrainConfig:
    """Everything that defines a training run (a run resumes only with the same values, ``workers`` aside).

    Attributes:
        arch: ``"gapnet"`` (camloc's small GAP net), a torchvision name, or ``"timm:<name>"``.
        pretrained: start from the architecture's pretrained weights (all but the classifier).
        weights: or from this weight file.
        convert_gap: :func:`camloc.models.gap.convert` arguments: train the paper's "-GAP" variant.
        epochs: epochs of the run (the default gapnet run on the generated shapes: 3-6 min on 2 cores).
        batch_size: images per step (at least 2).
        optimizer: ``"sgd"`` (Nesterov momentum when ``momentum > 0``) or ``"adamw"``.
        lr: the base learning rate; None: 0.1 for SGD from scratch, 0.01 SGD fine-tuning, 1e-3 AdamW.
        momentum: SGD's momentum.
        weight_decay: applied to weights only, not to biases and BatchNorm parameters.
        schedule: ``"cosine"`` (to zero), ``"step"`` (x0.1 at 1/2 and 3/4 of the run) or ``"constant"``.
        warmup_epochs: linear warm-up from lr/10, so a large from-scratch lr does not diverge.
        size: input side (images are squashed, as the WSOL protocol evaluates them); None: 64 for
            camloc's own nets, 224 for torchvision / timm ones.
        min_scale: random-resized-crop area range ``[min_scale, 1]``.
        hflip: mirror each training image with probability 1/2 (drawn per epoch).
        seed: seeds the initialization, the shuffling and every augmentation draw.
        workers: threads decoding images.
        mean: the normalization's per-channel mean.
        std: the normalization's per-channel standard deviation.
    """

    arch: str = "gapnet"
    pretrained: bool = False  # start from the architecture's pretrained weights (all but the classifier)
    weights: str | None = None  # or from this weight file
    convert_gap: dict | None = None  # camloc.gap.convert arguments: train the paper's "-GAP" variant
    epochs: int = 20  # the default gapnet run on the generated shapes: 3-6 min on 2 cores
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None  # default: 0.1 for SGD from scratch, 0.01 SGD fine-tuning, 1e-3 AdamW
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine: to zero; step: x0.1 at 1/2 and 3/4 of the run
    warmup_epochs: float = 1.0  # linear warm-up from lr/10, so a large from-scratch lr does not diverge
    size: int | None = None  # input side (images are squashed, as the WSOL protocol evaluates them);
    # default: 64 for camloc's own nets, 224 for torchvision / timm ones
    min_scale: float = 0.35  # random-resized-crop area range [min_scale, 1]
    hflip: bool = True
    seed: int = 0
    workers: int = 2
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgument(
                "optimizer", f"optimizer= must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}"
            )
        if self.schedule not in SCHEDULES:
            raise InvalidArgument("schedule", f"schedule= must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if self.size is None:
            self.size = 64 if self.arch in ARCHS else 224
        if self.epochs < 1 or self.batch_size < 2 or self.size < 16:
            raise InvalidArgument("epochs", "epochs= must be >= 1, batch_size= >= 2 and size= >= 16")
        if not 0.0 < self.min_scale <= 1.0:
            raise InvalidArgument("min_scale", f"min_scale= must be in (0, 1], got {self.min_scale}")
        # lists after a JSON / checkpoint round trip
        self.mean = (float(self.mean[0]), float(self.mean[1]), float(self.mean[2]))
        self.std = (float(self.std[0]), float(self.std[1]), float(self.std[2]))

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
    """

    model: nn.Module
    path: Path
    history: list[dict]  # one entry per epoch: loss, accuracy, lr, images/s, seconds
    skipped: list[dict] = field(default_factory=list)  # unreadable training images
    seconds: float = 0.0  # wall time of the epochs run in this call


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
    """
    out = Path(out)
    class_names = train_set.class_names
    num_classes = len(class_names) if class_names else 1 + max(s.label for s in train_set.samples)
    samples = list(train_set.samples)
    if len(samples) < 2:
        raise InvalidArgument(
            "train_set", f"{train_set.root}: a training set needs at least 2 images, found {len(samples)}"
        )
    torch.manual_seed(config.seed)
    model = build_model(
        config.arch, num_classes, pretrained=config.pretrained, weights=config.weights, convert_gap=config.convert_gap
    )
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    history: list[dict] = []
    bad: dict[str, dict] = {}
    start_epoch = 0
    if resume:
        start_epoch, history, bad = _restore(out, config, model, optimizer, num_classes)
        log.info("resuming %s after epoch %d/%d", out, start_epoch, config.epochs)
    elif out.exists():
        raise OutputExists(f"{out}: exists; pass resume=True to continue that run, or remove it")

    steps_per_epoch = _batches(len(samples), config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    began = time.perf_counter()
    decoded = _Decoded(cache_bytes)
    with ThreadPoolExecutor(max(1, config.workers)) as pool:
        for epoch in range(start_epoch, end_epoch):
            stats = _train_epoch(
                model, optimizer, samples, config, epoch, steps_per_epoch, total_steps, pool, decoded, bad, progress
            )
            history.append(stats)
            log.info(
                "epoch %d/%d: loss %.4f, accuracy %.2f %%, lr %.4g, %.0f img/s, %.1f s",
                epoch + 1, config.epochs, stats["loss"], stats["accuracy"], stats["lr"], stats["images_per_s"],
                stats["seconds"],
            )  # fmt: skip
            _save(out, model, config, num_classes, class_names, optimizer, epoch + 1, history, bad)
    model.eval()
    return TrainResult(model, out, history, list(bad.values()), time.perf_counter() - began)


def _batches(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)  # a 1-image batch would break BatchNorm's training statistics


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and BatchNorm parameters (standard practice; they set scale, not capacity).
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
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
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    samples: Sequence[Sample],
    config: TrainConfig,
    epoch: int,
    steps_per_epoch: int,
    total_steps: int,
    pool: ThreadPoolExecutor,
    decoded: _Decoded,
    bad: dict[str, dict],
    show: bool | None,
) -> dict:
    model.train()
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(samples))
    # Every augmentation draw is made here, up front, so it does not depend on thread timing.
    crops = rng.random((len(samples), 4))
    flips = rng.random(len(samples)) < 0.5 if config.hflip else np.zeros(len(samples), bool)
    preprocess = config.preprocess()
    seen = correct = 0
    loss_sum = 0.0
    began = time.perf_counter()
    bar = progress_bar(
        steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", enabled=show, leave=False
    )

    def load(b: int) -> tuple[np.ndarray, list]:
        idx = order[b * config.batch_size : (b + 1) * config.batch_size]
        return idx, [pool.submit(_augmented, decoded, samples[i], crops[i], flips[i], config, preprocess) for i in idx]

    pending = load(0)
    for b in range(steps_per_epoch):
        idx, loading = pending
        if b + 1 < steps_per_epoch:
            pending = load(b + 1)  # prepared while this batch trains
        images, labels = [], []
        for i, item in zip(idx, (f.result() for f in loading), strict=True):
            if isinstance(item, BadImage):
                bad.setdefault(
                    samples[i].image_id,
                    {"image_id": samples[i].image_id, "path": str(samples[i].path), "error": item.reason},
                )
                continue
            images.append(item)
            labels.append(samples[i].label)
        if len(images) < 2:
            bar.update()
            continue
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, epoch * steps_per_epoch + b, total_steps, steps_per_epoch)
        x = torch.stack(images).to(model_device(model)).contiguous(memory_format=torch.channels_last)
        y = torch.tensor(labels, device=x.device)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += loss.item() * len(labels)
        bar.update()
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
    bar.close()
    seconds = time.perf_counter() - began
    return {
        "epoch": epoch + 1,
        "loss": loss_sum / max(1, seen),
        "accuracy": 100.0 * correct / max(1, seen),
        "lr": optimizer.param_groups[0]["lr"],
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds if seconds else 0.0,
    }


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


def _save(out, model, config, num_classes, class_names, optimizer, epoch, history, bad) -> None:
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
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "skipped": list(bad.values()),
            }
        },
    )


def _gap_spec(model: nn.Module, config: TrainConfig) -> dict | None:
    if config.convert_gap is None:
        return None
    return dict(getattr(model, "camloc_gap", config.convert_gap))


def _restore(out: Path, config: TrainConfig, model: nn.Module, optimizer, num_classes: int) -> tuple[int, list, dict]:
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
    model.load_state_dict(record["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), list(state["history"]), {s["image_id"]: s for s in state.get("skipped", [])}


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def assess(
    model: nn.Module, test_set: Dataset, preprocess: Preprocess, *, batch_size: int = 64, workers: int = 2
) -> dict:
    """Classification and localization of a trained model on ``test_set`` (wsol protocol), next to the best centred box.

    Returns ``{"cam": summary, "center": summary}``, the second for the best fixed centred box.
    """
    cam = CAM(model)
    return {
        "cam": evaluate(test_set, cam, preprocess, batch_size=batch_size, workers=workers, progress=False).summary,
        "center": evaluate(
            test_set, cam, preprocess, baseline="center", batch_size=batch_size, workers=workers, progress=False
        ).summary,
    }
