"""``evaluate_faithfulness``: the faithfulness metrics of several map methods on a dataset's images.

The metrics themselves (deletion / insertion AUC, average drop / increase) are in
:mod:`camloc.metrics.faithfulness`, with their definitions and sources. With a ``journal``, every
image's scores are journalled as a batch is done (:class:`~camloc.evaluation.run.Run`, JSON lines), so
a killed run resumes (``resume=True``): the journalled batches are added up again as they were, and the
means equal an uninterrupted run's exactly.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import torch

from ..distributed import all_gather, shard, world
from ..errors import InvalidArgument
from ..images import Preprocess, load_batch
from ..maps.core import MapMethod, output_tensor
from ..metrics.faithfulness import (
    RISE_BASELINES,
    Baseline,
    FaithfulnessMetrics,
    Model,
    baseline_pair,
    faithfulness_scores,
)
from ..utils import model_device
from ..utils import progress as progress_bar
from .run import Run

__all__ = ["FaithfulnessResult", "evaluate_faithfulness"]


@dataclass
class FaithfulnessResult:
    """What :func:`evaluate_faithfulness` returns.

    Attributes:
        summary: method name -> its metrics (:meth:`FaithfulnessMetrics.compute`).
        config: the run's settings (target, steps, baselines, masking, number of images).
        skipped: one ``{"image_id", "path", "error"}`` per file that could not be read.
    """

    summary: dict[str, dict]  # method -> FaithfulnessMetrics.compute()
    config: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # {"image_id", "path", "error"}

    def to_json(self) -> dict:
        """The JSON report: the config's keys, ``"methods"`` (the summary) and ``"skipped"``."""
        return {**self.config, "methods": self.summary, "skipped": self.skipped}


def evaluate_faithfulness(
    samples: Iterable,
    model: Model,
    methods: Mapping[str, MapMethod],
    preprocess: Preprocess,
    *,
    target: Literal["predicted", "label"] = "predicted",
    steps: int = 50,
    baseline: Baseline | tuple[Baseline, Baseline] = RISE_BASELINES,
    batch_size: int = 16,
    chunk: int = 64,
    workers: int = 2,
    progress: bool | None = None,
    journal: str | os.PathLike | None = None,
    resume: bool = False,
    config: dict | None = None,
) -> FaithfulnessResult:
    """Faithfulness of every method's maps on dataset samples.

    The samples are anything with ``.path``, ``.label`` and optionally ``.image_id``.
    Each batch is decoded once; ``target="predicted"`` explains the model's top-1 class (as the RISE
    and Grad-CAM++ evaluations), ``"label"`` the sample's label; every method explains the same
    class of an image. A method is called ``method(images, classes=...)`` and must return a
    :class:`~camloc.maps.CamOutput` with upsampled ``maps``. Unreadable files are skipped and listed.
    Each method has a progress bar with its rate and ETA: deletion and insertion cost
    ``2 * (steps + 1)`` forward passes per image and method, Score-CAM one more per channel.
    Under torchrun each process scores the samples ``rank, rank + N, ...`` and the metrics' sums are
    added up across the processes (the means agree with a single process's to float rounding).
    ``journal`` / ``resume``: see the module docstring; a resumed run must have the same settings and
    ``config`` (the caller's: model, data, ...), else a ResumeError.
    """
    if target not in ("predicted", "label"):
        raise InvalidArgument("target", f"target must be 'predicted' or 'label', not {target!r}")
    everyone = list(samples)
    mine = shard(list(enumerate(everyone)))
    metrics = {name: FaithfulnessMetrics() for name in methods}
    skipped: list[tuple[int, dict]] = []
    del_base, ins_base = baseline_pair(baseline)
    settings = {"target": target, "steps": steps, "baselines": [del_base, ins_base], "batch_size": batch_size,
                "chunk": chunk, "methods": list(methods), "images": len(everyone), **(config or {})}  # fmt: skip
    run = Run(journal, "faithfulness", settings, resume=resume, exists_hint="choose another file")
    done = _replay(run, metrics, skipped)
    here = world()
    bars = {
        name: progress_bar(len(mine), desc=f"{name:>10}", enabled=progress if here.is_main else False, position=i)
        for i, name in enumerate(methods)
    }
    device = model_device(model)
    with run, ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(mine), batch_size):
            chunk_samples = mine[start : start + batch_size]
            if start in done:
                for bar in bars.values():
                    bar.update(len(chunk_samples))
                continue
            batch = load_batch([s.path for _, s in chunk_samples], preprocess, executor=pool)
            by_path = {str(s.path): (i, s) for i, s in chunk_samples}
            for err in batch.errors:
                i, s = by_path[err.path]
                entry = {"image_id": getattr(s, "image_id", err.path), "path": err.path, "error": err.reason}
                skipped.append((i, entry))
                run.write({"b": start, "i": i, "skip": entry})
            scored: dict[str, dict] = {}
            if batch.paths:
                images = batch.images.to(device)
                if target == "label":
                    classes = torch.tensor([by_path[p][1].label for p in batch.paths], device=device)
                else:
                    with torch.no_grad():
                        classes = output_tensor(model(images)).argmax(dim=1)
                for name, method in methods.items():
                    out = method(images, classes=classes[:, None])
                    assert out.maps is not None  # upsampled: the call asks for them
                    scores = faithfulness_scores(
                        model, images, out.maps[:, 0], classes, steps=steps, baseline=baseline, chunk=chunk
                    )
                    metrics[name].update(**scores)
                    scored[name] = scores
                    bars[name].update(len(chunk_samples))
                for k, path in enumerate(batch.paths):
                    values = {name: {key: _item(v, k) for key, v in scores.items()} for name, scores in scored.items()}
                    run.write({"b": start, "i": by_path[path][0], "s": values})
            else:
                for bar in bars.values():
                    bar.update(len(chunk_samples))
            run.flush()
    for bar in bars.values():
        bar.close()
    for m in metrics.values():
        m.sync()
    skipped = sorted((e for part in all_gather(skipped) for e in part), key=lambda t: t[0])
    config = {
        "target": target,
        "steps": steps,
        "baselines": {"deletion": del_base, "insertion": ins_base},
        "masking": "normalized input x min-max map",
        "images": len(everyone) - len(skipped),
    }
    return FaithfulnessResult({name: m.compute() for name, m in metrics.items()}, config, [e for _, e in skipped])


def _item(value: torch.Tensor | None, k: int) -> float | None:
    """Image ``k``'s score of a batch's ``Tensor[N]`` (None: the metric was not computed)."""
    return None if value is None else float(torch.as_tensor(value).reshape(-1)[k].double())


def _replay(run: Run, metrics: Mapping[str, FaithfulnessMetrics], skipped: list[tuple[int, dict]]) -> set[int]:
    """Add the journalled batches to ``metrics`` as they were added (one update a batch); their starts."""
    done = set()
    for start, group in itertools.groupby(run.done(), key=lambda record: record["b"]):
        records = list(group)
        done.add(start)
        skipped += [(r["i"], r["skip"]) for r in records if "skip" in r]
        scored = [r["s"] for r in records if "s" in r]
        for name in metrics if scored else ():
            keys = scored[0][name]
            metrics[name].update(
                **{
                    key: None
                    if keys[key] is None
                    else torch.tensor([s[name][key] for s in scored], dtype=torch.float64)
                    for key in keys
                }
            )
    return done
