"""The model file of a training run, written after every epoch: the weights, and what resuming needs.

Beside what every camloc model file holds (architecture, classes, preprocessing, weights), it keeps
under ``"train"`` the configuration, the epochs done, the optimizer's state, every process's torch
RNG state, the history and the unreadable images: a run resumed from it continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..distributed import World
from ..errors import ResumeError
from ..models.files import read_model_file, save_checkpoint
from .config import TrainConfig

__all__ = ["TrainState", "restore", "save"]

# The settings a run may resume with changed: they change no weight.
NO_WEIGHT = ("workers", "box_images")


@dataclass
class TrainState:
    """A training run so far.

    Attributes:
        config: its configuration.
        num_classes: the model's outputs.
        class_names: the names of its classes, or None.
        epoch: the epochs done.
        history: one entry per epoch done: loss, accuracy, lr, images, seconds, images/s.
        skipped: the unreadable training images met: image id -> ``{"image_id", "path", "error"}``.
        boxes: the paper rule's threshold chosen after the last epoch (``config.box_images``):
            ``{"rule", "threshold", "corloc", "images", "input"}``, or None.
    """

    config: TrainConfig
    num_classes: int
    class_names: list[str] | None
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    skipped: dict[str, dict] = field(default_factory=dict)
    boxes: dict | None = None


def save(
    path: Path, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer, rng_states: list[torch.Tensor]
) -> None:
    """Write the model file of ``state``; ``rng_states``: every process's torch RNG state, in rank order."""
    config = state.config
    save_checkpoint(
        path,
        model,
        arch=config.arch,
        num_classes=state.num_classes,
        class_names=state.class_names,
        preprocess=config.preprocess(),
        convert_gap=_gap_spec(model, config),
        map_size=config.separate_map_size,
        box_threshold=None if state.boxes is None else state.boxes["threshold"],
        extra={
            "train": {
                "config": dataclasses.asdict(config),
                "epoch": state.epoch,
                "optimizer": optimizer.state_dict(),
                "torch_rng": rng_states[0],
                "torch_rng_ranks": rng_states,
                "processes": len(rng_states),
                "history": state.history,
                "skipped": list(state.skipped.values()),
                "boxes": state.boxes,
            }
        },
    )


def restore(
    path: Path, state: TrainState, model: nn.Module, optimizer: torch.optim.Optimizer, here: World
) -> TrainState:
    """Load the run recorded in ``path`` into ``model``, ``optimizer`` and torch's RNG; the state it had reached.

    Raises:
        ResumeError: ``path`` holds no training state, or one of another configuration (``workers``
            aside), number of classes or number of processes.
    """
    record = read_model_file(path)
    saved = record.get("train")
    if saved is None:
        raise ResumeError(f"{path}: holds no training state to resume")
    theirs = dict(saved["config"])
    mine = dataclasses.asdict(state.config)
    differ = [k for k in mine if k not in NO_WEIGHT and _normal(theirs.get(k)) != _normal(mine[k])]
    if differ:
        k = differ[0]
        raise ResumeError(
            f"{path}: was trained with {k}={theirs.get(k)!r}, not {mine[k]!r}; resume with the same settings"
        )
    if record["num_classes"] != state.num_classes:
        raise ResumeError(f"{path}: has {record['num_classes']} classes, the dataset {state.num_classes}")
    processes = int(saved.get("processes", 1))
    if processes != here.size:  # the global batch, and so every step, depends on it
        raise ResumeError(f"{path}: was trained by {processes} process(es), not {here.size}; resume with as many")
    model.load_state_dict(record["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved.get("torch_rng_ranks", [saved["torch_rng"]])[here.rank])
    skipped = {s["image_id"]: s for s in saved.get("skipped", [])}
    return dataclasses.replace(
        state, epoch=int(saved["epoch"]), history=list(saved["history"]), skipped=skipped, boxes=saved.get("boxes")
    )


def _gap_spec(model: nn.Module, config: TrainConfig) -> dict | None:
    """The ``-GAP`` conversion the model file records: the model's own record of it, else the configuration's."""
    if config.convert_gap is None:
        return None
    return dict(getattr(model, "camloc_gap", config.convert_gap))


def _normal(value: Any) -> Any:
    """Tuples as lists, as they come back from a model file."""
    return list(value) if isinstance(value, tuple) else value
