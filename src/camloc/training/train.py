"""`camloc train`: fit a GAP classifier on image labels alone, then measure how well its CAM localizes.

Reproducible and resumable by construction: the shuffling order and every augmentation draw of
epoch ``e`` come from a generator seeded with ``(seed, e)`` (:mod:`.sources`), the learning rate is
a pure function of the step (:mod:`.loop`), and the model file written after each epoch holds the
optimizer state and torch's RNG state (:mod:`.checkpoint`). Resuming after epoch ``e`` therefore
continues exactly as the uninterrupted run would have.

Under ``torchrun --nproc-per-node N`` each process takes its part of every global batch of
``N x batch_size`` images (:mod:`.parallel`), the model is wrapped in DistributedDataParallel, whose
all-reduce makes each step's gradient that of the whole global batch, and rank 0 writes the model
file. BatchNorm layers in training mode normalize by their own process's images (SyncBatchNorm
needs CUDA), so only a network without them trains exactly as one process with the global batch would.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..datasets.base import Dataset, Sample, hold_out
from ..distributed import World, all_gather, world
from ..errors import InvalidArgument, OutputExists
from ..evaluation.assess import assess
from ..evaluation.assess import inference_batch as inference_batch
from ..evaluation.weak_labels import BoxSettings, box_input, calibrate_threshold
from ..maps.cam import CAM
from ..models.build import build_model
from ..models.graph import split_at
from ..models.info import ModelInfo
from .checkpoint import TrainState, restore, save
from .config import AUGMENTS as AUGMENTS  # these four and AUTO, inference_batch: importable from here as in 0.2
from .config import AUTO as AUTO
from .config import FROZEN_STAGE as FROZEN_STAGE
from .config import OPTIMIZERS as OPTIMIZERS
from .config import SCHEDULES as SCHEDULES
from .config import TrainConfig
from .loop import Loop, freeze_up_to, learning_rate, make_optimizer
from .parallel import gathered, parallel, steps_per_epoch
from .sources import Batch as Batch  # importable from here as in 0.2
from .sources import Decoded, FrozenMaps, Images, Source
from .wsol import Bgc, BgcNet, bgc_options

__all__ = ["TrainConfig", "TrainResult", "assess", "choose_box_threshold", "learning_rate", "train"]

log = logging.getLogger(__name__)

DECODED_CACHE_BYTES = 2 << 30  # decoded training images kept in memory (the generated shapes: 98 MB)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model, in eval mode.
        path: the model file written after every epoch.
        history: one entry per epoch (all epochs of the run, resumed ones included): loss, accuracy,
            lr, images, seconds, images/s.
        skipped: one ``{"image_id", "path", "error"}`` per unreadable training image.
        seconds: wall time of the epochs run in this call.
        held_out: the images ``config.calibrate`` set apart (None when it is 0).
        prepare_seconds: the part of ``seconds`` spent computing the frozen layers' output before
            the first epoch (``augment="features"``).
        boxes: the box threshold recorded in the model file (:func:`choose_box_threshold`), or None.
    """

    model: nn.Module
    path: Path
    history: list[dict]
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    held_out: Dataset | None = None
    prepare_seconds: float = 0.0
    boxes: dict | None = None


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

    Under torchrun (:func:`camloc.distributed.join` first) every process calls this with the same
    arguments; ``batch_size`` is then per process, and only rank 0 writes ``out``.

    Args:
        config: the run's configuration.
        train_set: labelled images (``config.calibrate`` of each class are held out of training).
        out: the model file, rewritten after every epoch.
        resume: continue the run recorded in ``out`` (same data and configuration).
        progress: progress bars (None: when the output is a terminal).
        stop_after: end after that many epochs in total, as if interrupted (the file is then resumable).
        device: where the model trains.
        cache_bytes: decoded training images are kept in memory up to this many bytes of pixels.

    Raises:
        OutputExists: ``out`` exists and ``resume`` is False.
        ResumeError: ``out`` records another run.
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
    frozen = freeze_up_to(model, config.freeze)
    if here.rank:  # its own dropout masks; rank 0 draws what a single process draws
        torch.manual_seed(config.seed * 1_000_003 + here.rank)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    state = TrainState(config, num_classes, None if class_names is None else list(class_names))
    if resume:
        state = restore(out, state, model, optimizer, here)
        log.info("resuming %s after epoch %d/%d", out, state.epoch, config.epochs)
    elif out.exists():
        raise OutputExists(f"{out}: exists; pass resume=True to continue that run, or remove it")

    start_epoch, restored = state.epoch, state.skipped
    end_epoch = config.epochs if stop_after is None else min(config.epochs, stop_after)
    show = progress if here.is_main else False
    began = time.perf_counter()
    with ThreadPoolExecutor(max(1, config.workers)) as pool:
        source, net = _source(model, samples, config, pool, cache_bytes, show, here)
        steps = steps_per_epoch(source.count, config.batch_size * here.size, here.size)
        criterion = None
        if config.wsol_loss is not None:  # "bgc", the one there is
            options = bgc_options(config.wsol_options, config.arch)
            start = config.freeze if config.augment == "features" else None  # where the source's batches enter
            net, criterion = BgcNet(model, options, start), Bgc(options, config.epochs, config.label_smoothing)
        loop = Loop(model, parallel(net, here), frozen, optimizer, config, steps, here, show, criterion)
        for epoch in range(start_epoch, end_epoch):
            stats = loop.epoch(source, epoch)
            terms = "".join(f", {name} {value:.4f}" for name, value in stats.get("terms", {}).items())
            log.info(
                "epoch %d/%d: loss %.4f%s, accuracy %.2f %%, lr %.4g, %.0f img/s, %.1f s",
                epoch + 1, config.epochs, stats["loss"], terms, stats["accuracy"], stats["lr"], stats["images_per_s"],
                stats["seconds"],
            )  # fmt: skip
            state.epoch = epoch + 1
            state.history.append(stats)
            state.skipped = gathered(_merged(restored, source.skipped))
            rng_states = all_gather(torch.get_rng_state())
            if here.is_main:
                save(out, state, model, optimizer, rng_states)
    skipped = gathered(_merged(restored, source.skipped))
    model.eval()
    if state.epoch == config.epochs and config.box_images and state.boxes is None:
        state.boxes = choose_box_threshold(model, train_set, config, show)  # the same on every rank
        if state.boxes is not None:
            rng_states = all_gather(torch.get_rng_state())
            if here.is_main:
                save(out, state, model, optimizer, rng_states)
    prepared = source.seconds if start_epoch < end_epoch else 0.0
    seconds = time.perf_counter() - began
    return TrainResult(model, out, state.history, list(skipped.values()), seconds, held_out, prepared, state.boxes)


def choose_box_threshold(
    model: nn.Module, train_set: Dataset, config: TrainConfig, progress: bool | None = None
) -> dict | None:
    """The paper box rule's threshold of highest CorLoc on ``config.box_images`` training images with boxes.

    The images are drawn by ``config.seed`` among ``train_set``'s with boxes (which training never
    reads) and boxed as ``camloc boxes`` boxes them by default: the whole photo at
    :func:`~camloc.evaluation.weak_labels.box_input`'s side, each image's labelled class.

    Returns:
        ``{"rule": "paper", "threshold", "corloc", "images", "input"}``; None when no training image has a box.
    """
    boxed = sorted((s for s in train_set.samples if s.boxes), key=lambda s: s.image_id)
    if not boxed:
        log.info("no training image has a box: the model file records no box threshold")
        return None
    rng = np.random.default_rng(config.seed)
    picked = sorted(rng.choice(len(boxed), min(config.box_images, len(boxed)), replace=False))
    chosen = dataclasses.replace(train_set, samples=[boxed[i] for i in picked])
    pre = box_input(config.preprocess())
    names = None if train_set.class_names is None else tuple(train_set.class_names)
    info = ModelInfo("training", names, pre)
    found = calibrate_threshold(
        chosen, CAM(model), info=info, preprocess=pre, settings=BoxSettings(rule="paper"),
        batch_size=inference_batch(pre.resize_size), workers=config.workers, progress=progress,
    )  # fmt: skip
    return {"rule": "paper", "threshold": round(float(found.threshold), 4), "corloc": found.corloc,
            "images": found.images, "input": f"whole photo, shorter side {pre.resize_size}"}  # fmt: skip


def _source(
    model: nn.Module,
    samples: Sequence[Sample],
    config: TrainConfig,
    pool: ThreadPoolExecutor,
    cache_bytes: int,
    show: bool | None,
    here: World,
) -> tuple[Source, nn.Module]:
    """The run's batches, and the network that takes them: ``model``, or its layers after ``config.freeze``."""
    if config.augment != "features":
        return Images(samples, config, pool, Decoded(cache_bytes), here), model
    if config.freeze is None:
        raise InvalidArgument("augment", "augment='features' needs freeze=: the layers whose output is kept")
    first, rest = split_at(model, config.freeze)
    return FrozenMaps(first, samples, config, pool, show, here), rest


def _merged(restored: dict[str, dict], found: dict[str, dict]) -> dict[str, dict]:
    """The unreadable images recorded before a resume, then those found since (by image id, each once)."""
    return {**restored, **{k: v for k, v in found.items() if k not in restored}}
