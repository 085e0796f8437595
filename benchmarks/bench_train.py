"""`camloc train`'s throughput vs a bare training step on tensors already in memory.

    .venv/bin/python benchmarks/bench_train.py [--images 640] [--rounds 5] [--threads 2] [--json FILE]
    .venv/bin/python benchmarks/bench_train.py --recipe [--images 320] [--size 448] [--rounds 3] [--wsol-loss bgc]

Both train gapnet (camloc's default architecture) at its default 64² input, batch 64, SGD with
momentum, channels_last. The bare step is forward + cross-entropy + backward + optimizer step on one
random batch, over and over: no decoding, no augmentation, no checkpoint. camloc's is the second
epoch of a two-epoch `camloc.training.train` run over generated shapes images (images decoded once and
kept, random crop, flip and normalization in two threads while the previous batch trains), its
rate read off the run's own history (writing the model file after the epoch is not in it). The two
alternate, round after round, in one process; reported are the medians and their ratio, i.e. how
much of the bare speed the data pipeline leaves; a third variant turns the decoded-image cache off.

``--recipe``: the fine-tuning recipe instead (pretrained MobileNetV2, ``features.13`` and all before
it frozen, their output for the squashed image and its mirror image computed once, epochs of crops
of it with Hide-and-Seek; with ``--wsol-loss bgc`` BGC's loss instead, today's default) on the first
``--images`` CUB-200-2011 training images of
../shared/data/cub-200-2011-50. The bare step runs the layers after the cut (forward,
cross-entropy, backward, SGD step of their parameters, frozen BatchNorm in eval mode) on random
tensors of the frozen output's shape, cropped to the same side as camloc's batches (one side per
batch, as the recipe draws them). Also reported: the one-off cost of the frozen layers' output and
the process's peak memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from camloc.datasets.synthetic import generate
from camloc.models.nets import gapnet
from camloc.runtime import keep_freed_memory
from camloc.training import TrainConfig, train


def bare_rate(config: TrainConfig, num_classes: int, steps: int) -> float:
    torch.manual_seed(0)
    model = gapnet(num_classes).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(config.batch_size, 3, config.size, config.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (config.batch_size,))
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * config.batch_size / (time.perf_counter() - start)


def recipe(args: argparse.Namespace) -> None:
    import numpy as np

    from camloc.datasets.registry import open_train_test
    from camloc.models import build_model
    from camloc.models.graph import split_at
    from camloc.training.loop import freeze_up_to, make_optimizer

    cub = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub-200-2011-50"
    full, _ = open_train_test(cub)
    train_set = dataclasses.replace(full, samples=list(full.samples)[: args.images])
    loss = None if args.wsol_loss == "none" else args.wsol_loss
    config = TrainConfig(arch="mobilenet_v2", pretrained=True, epochs=2, calibrate=0, size=args.size, wsol_loss=loss)
    classes = len(full.class_names)
    model = build_model("mobilenet_v2", classes, pretrained=True)
    frozen = freeze_up_to(model, config.freeze)
    model = model.to(memory_format=torch.channels_last).train()
    first, tail = split_at(model, config.freeze)
    with torch.no_grad():
        shape = first(torch.zeros(1, 3, config.size, config.size)).shape[1:]
    for m in frozen:  # frozen layers stay in eval mode, as in train()
        m.eval()
    optimizer = make_optimizer(model, config)
    rng = np.random.default_rng(0)
    bare, camloc_rates, prepare = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):  # round 0 warms both up
            steps = args.images // config.batch_size
            sides = np.sqrt(config.min_scale) + (1 - np.sqrt(config.min_scale)) * rng.random(steps + 2)
            start = 0.0
            for i, side in enumerate(sides):
                if i == 2:
                    start = time.perf_counter()
                h = max(1, round(shape[1] * side))
                x = torch.randn(config.batch_size, shape[0], h, h).contiguous(memory_format=torch.channels_last)
                loss = F.cross_entropy(tail(x), torch.randint(0, classes, (config.batch_size,)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            rate = steps * config.batch_size / (time.perf_counter() - start)
            result = train(config, train_set, Path(tmp) / f"m{r}.pt", progress=False)
            if r:
                bare.append(rate)
                camloc_rates.append(result.history[1]["images_per_s"])
                prepare.append(result.prepare_seconds)
                print(f"round {r}: bare {rate:.1f} img/s, camloc train {camloc_rates[-1]:.1f} img/s, "
                      f"frozen layers' output {prepare[-1]:.1f} s")  # fmt: skip
    results = {
        "recipe": True,
        "wsol_loss": config.wsol_loss,
        "hide": config.hide,
        "threads": args.threads,
        "images": args.images,
        "size": config.size,
        "batch_size": config.batch_size,
        "bare_images_per_s": statistics.median(bare),
        "camloc_images_per_s": statistics.median(camloc_rates),
        "prepare_seconds": statistics.median(prepare),
        "peak_rss_mib": peak_rss_mib(),
        "rounds": {"bare": bare, "camloc": camloc_rates, "prepare": prepare},
    }
    results["ratio"] = results["camloc_images_per_s"] / results["bare_images_per_s"]
    print(
        f"median: bare step {results['bare_images_per_s']:.1f} img/s, camloc train {results['camloc_images_per_s']:.1f}"
        f" img/s (ratio {results['ratio']:.2f}); frozen layers' output {results['prepare_seconds']:.1f} s for "
        f"{args.images} images; peak RSS {results['peak_rss_mib']:.0f} MiB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, help="training images (default: 640 generated, 320 CUB with --recipe)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", action="store_true", help="the fine-tuning recipe on CUB-200-2011 images")
    parser.add_argument("--size", type=int, default=448, help="--recipe: input side (default: %(default)s)")
    parser.add_argument(
        "--wsol-loss", default="none", choices=["none", "bgc"], help="--recipe: the loss (default: %(default)s)"
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the CLI does
    if args.recipe:
        args.images = args.images or 320
        return recipe(args)
    args.images = args.images or 640
    config = TrainConfig(epochs=2)
    bare, camloc_rates, uncached = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        train_set, _ = generate(Path(tmp) / "data", "shapes", train=args.images, test=1, seed=0)
        classes = len(train_set.class_names)
        steps = args.images // config.batch_size
        for r in range(args.rounds + 1):  # round 0 warms both up
            rate = bare_rate(config, classes, steps)
            result = train(config, train_set, Path(tmp) / f"m{r}.pt", progress=False)
            plain = train(config, train_set, Path(tmp) / f"u{r}.pt", progress=False, cache_bytes=0)
            if r:
                bare.append(rate)
                camloc_rates.append(result.history[1]["images_per_s"])  # the second epoch: steady state
                uncached.append(plain.history[1]["images_per_s"])
                print(
                    f"round {r}: bare {rate:.1f} img/s, camloc train {camloc_rates[-1]:.1f}, "
                    f"without the decoded-image cache {uncached[-1]:.1f}"
                )
    results = {
        "threads": args.threads,
        "images": args.images,
        "batch_size": config.batch_size,
        "size": config.size,
        "bare_images_per_s": statistics.median(bare),
        "camloc_images_per_s": statistics.median(camloc_rates),
        "uncached_images_per_s": statistics.median(uncached),
        "rounds": {"bare": bare, "camloc": camloc_rates, "uncached": uncached},
    }
    results["ratio"] = results["camloc_images_per_s"] / results["bare_images_per_s"]
    results["uncached_ratio"] = results["uncached_images_per_s"] / results["bare_images_per_s"]
    print(
        f"median: bare step {results['bare_images_per_s']:.1f} img/s, "
        f"camloc train {results['camloc_images_per_s']:.1f} img/s "
        f"(ratio {results['ratio']:.2f}), without the cache {results['uncached_images_per_s']:.1f} img/s "
        f"(ratio {results['uncached_ratio']:.2f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
