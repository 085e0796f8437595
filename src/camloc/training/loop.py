"""The training loop: frozen layers, the optimizer's parameter groups, the learning-rate schedule, one epoch.

The learning rate is a pure function of the step, so an epoch depends only on the model, the
optimizer's state and the batches: what a resumed run needs to continue exactly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import World, all_sum
from ..errors import InvalidArgument
from ..utils import model_device
from ..utils import progress as progress_bar
from .config import TrainConfig
from .parallel import agree
from .sources import Source
from .wsol import Bgc

__all__ = ["Loop", "freeze_up_to", "learning_rate", "make_optimizer"]


def freeze_up_to(model: nn.Module, last: str | None) -> list[nn.Module]:
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


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
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


@dataclass
class Loop:
    """What every epoch of a run steps with.

    Attributes:
        model: the whole model (trained in place).
        net: what runs the batches: ``model``, or its layers after the frozen ones (their output is
            what the source gives), maybe in DistributedDataParallel.
        frozen: the modules without a trainable parameter, kept in eval mode.
        optimizer: from :func:`make_optimizer`.
        config: the run's configuration.
        steps_per_epoch: the (global) batches of an epoch.
        here: this process's place among the run's processes.
        show: a progress bar per epoch (None: when the output is a terminal).
        criterion: the loss of ``net``'s output (a :class:`~camloc.training.wsol.Bgc`); None:
            ``net`` gives logits and the loss is the cross-entropy.
    """

    model: nn.Module
    net: nn.Module
    frozen: list[nn.Module]
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    steps_per_epoch: int
    here: World
    show: bool | None = None
    criterion: Bgc | None = None

    def epoch(self, source: Source, epoch: int) -> dict:
        """Train one epoch (0-based) on ``source``'s batches; its entry of the history (over all processes)."""
        config, here, optimizer, steps = self.config, self.here, self.optimizer, self.steps_per_epoch
        total_steps = steps * config.epochs
        self.model.train()
        for m in self.frozen:
            m.eval()
        device = model_device(self.model)
        seen = correct = 0
        loss_sum = 0.0
        term_sums: dict[str, float] = {}
        began = time.perf_counter()
        bar = progress_bar(
            steps, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", enabled=self.show, leave=False
        )
        lr = learning_rate(config, epoch * steps, total_steps, steps)
        for b, batch in enumerate(source.batches(epoch, steps)):
            bar.update()
            total, enough = agree(0 if batch is None else len(batch[1]), here)
            if batch is None or not enough:  # every process skips the step together
                continue
            lr = learning_rate(config, epoch * steps + b, total_steps, steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            x = batch[0].to(device).contiguous(memory_format=torch.channels_last)
            y = batch[1].to(device)
            if self.criterion is None:
                logits = self.net(x)
                summed = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing, reduction="sum")
            else:
                logits, summed, terms = self.criterion(self.net(x), y, epoch)
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + value
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
            sums = all_sum({"seen": seen, "correct": correct, "loss_sum": loss_sum, **term_sums})
            seen, correct, loss_sum = int(sums["seen"]), int(sums["correct"]), float(sums["loss_sum"])
            term_sums = {name: float(sums[name]) for name in term_sums}
        seconds = time.perf_counter() - began
        stats: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": loss_sum / max(1, seen),
            "accuracy": 100.0 * correct / max(1, seen),
            "lr": lr,
            "images": seen,
            "seconds": seconds,
            "images_per_s": seen / seconds if seconds else 0.0,
        }
        if term_sums:
            stats["terms"] = {name: value / max(1, seen) for name, value in term_sums.items()}
        return stats
