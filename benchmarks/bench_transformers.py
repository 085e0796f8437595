"""CPU throughput of camloc's CAM and Grad-CAM on timm transformers, against a bare forward and pytorch-grad-cam.

    .venv/bin/python benchmarks/bench_transformers.py [--batch 32] [--repeats 5] [--threads 2] [--quick] [--json FILE]

Models (random weights, eval mode): timm ``vit_small_patch16_224`` with ``global_pool="avg"``
(ViT-S/16 averaging its patch tokens), ``deit_small_patch16_224`` (class token) and
``swin_tiny_patch4_window7_224``; one batch of random-normal 224x224 images (fixed seed), CPU.

Variants per model, each explaining the top-1 class of every image:
- bare forward under ``torch.inference_mode``;
- camloc CAM and camloc Grad-CAM with their defaults (``camloc.CAM(m)(x)``, ``camloc.GradCAM(m)(x)``);
- pytorch-grad-cam 1.5's ``GradCAM`` on the last block of the last stage (ViT/DeiT ``blocks.11``, Swin
  ``layers.3``) with the ``reshape_transform`` its users write: the tokens without the class token
  as a 14x14 grid, the NHWC map permuted to NCHW;
- camloc Grad-CAM with ``target_layer=`` that same layer, when its default layer is another one.

camloc's Grad-CAM on that layer is also compared with pytorch-grad-cam's maps (min-max normalized
at the input's size): the shape of camloc's raw maps and the largest difference are printed.

A variant that camloc refuses (DeiT's class token is no GAP head: no CAM) or that fails is recorded
with its one-line error and not timed. All variants of all models run in one process, interleaved:
after a warm-up round, every timed round runs each variant once; each reports the median. With
``--quick`` (a check that everything runs: batch 2, one timed round) the numbers mean nothing.

Nothing here asserts; the exit status is 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_cam import cpu_name, time_round_robin

MODELS = {
    "vit_s16_avg": ("vit_small_patch16_224", {"global_pool": "avg"}),
    "deit_s16": ("deit_small_patch16_224", {}),
    "swin_t": ("swin_tiny_patch4_window7_224", {}),
}
LABELS = {
    "bare": "bare forward",
    "camloc_cam": "camloc CAM",
    "camloc_gradcam": "camloc Grad-CAM",
    "camloc_gradcam_same": "camloc Grad-CAM on pytorch-grad-cam's layer",
    "gradcam": "pytorch-grad-cam GradCAM + reshape_transform",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per variant (median is reported)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of: " + ", ".join(MODELS))
    p.add_argument("--quick", action="store_true", help="batch 2, one timed round: only checks that all runs")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file (- for stdout)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.repeats = 2, 1
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def one_line(error: BaseException) -> str:
    """A refusal's own message (camloc said no), or ``crashed: Type: message`` for anything else."""
    from camloc.errors import CamlocError

    text = (str(error).strip().splitlines() or [""])[0]
    return f"refused: {text}" if isinstance(error, CamlocError) else f"crashed: {type(error).__name__}: {text}"


def grad_cam_layer(model: torch.nn.Module, name: str) -> tuple[torch.nn.Module, Callable]:
    """pytorch-grad-cam's target layer and reshape_transform for a timm ViT/DeiT or Swin, as its users write them."""
    if name.startswith("swin"):
        return model.layers[-1], lambda t: t.permute(0, 3, 1, 2)  # (N, 7, 7, C) -> (N, C, 7, 7)
    prefix = model.num_prefix_tokens
    h, w = model.patch_embed.grid_size

    def tokens_to_grid(t: torch.Tensor) -> torch.Tensor:  # (N, prefix + h*w, C) -> (N, C, h, w)
        return t[:, prefix:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)

    return model.blocks[-1], tokens_to_grid


def build_variants(
    key: str, model: torch.nn.Module, x: torch.Tensor
) -> tuple[dict[str, Callable[[], object]], dict[str, str]]:
    """Zero-argument callables per variant of one model, and a note per variant (its layer, or why it is left out)."""
    from pytorch_grad_cam import GradCAM

    import camloc

    fns: dict[str, Callable[[], object]] = {}
    notes: dict[str, str] = {}

    def bare():
        with torch.inference_mode():
            return model(x)

    fns["bare"] = bare
    gc_model = copy.deepcopy(model)  # pytorch-grad-cam leaves hooks on the model it is given
    layer, reshape = grad_cam_layer(gc_model, MODELS[key][0])
    layer_name = next(n for n, m in gc_model.named_modules() if m is layer)
    makers: dict[str, Callable] = {
        "camloc_cam": camloc.CAM,
        "camloc_gradcam": camloc.GradCAM,
        "camloc_gradcam_same": lambda m: camloc.GradCAM(m, target_layer=layer_name),
    }
    for variant, make in makers.items():
        try:
            method = make(model)
            method(x)  # refusals may come with the first call
        except Exception as e:  # noqa: BLE001 - recorded, not timed
            notes[variant] = one_line(e)
            continue
        fns[variant] = lambda method=method: method(x)
        notes[variant] = f"layer {method.target_layer}" if method.target_layer else "the pooled feature map"

    if notes["camloc_gradcam"] == f"layer {layer_name}":  # the default is that layer: the same variant twice
        fns.pop("camloc_gradcam_same", None)
        notes["camloc_gradcam_same"] = "the default layer (above)"
    gradcam = GradCAM(model=gc_model, target_layers=[layer], reshape_transform=reshape)
    fns["gradcam"] = lambda: gradcam(input_tensor=x, targets=None)
    notes["gradcam"] = f"layer {layer_name}"
    return fns, notes


def agreement(fns: dict[str, Callable[[], object]], notes: dict[str, str]) -> dict | None:
    """camloc's Grad-CAM against pytorch-grad-cam's on the same layer: camloc's grid and the max |difference| of the
    min-max normalized maps at the input's size (None: no camloc Grad-CAM on that layer)."""
    same = "camloc_gradcam_same" if "camloc_gradcam_same" in fns else "camloc_gradcam"
    if same not in fns or notes[same] != notes["gradcam"]:
        return None
    import camloc

    theirs = torch.as_tensor(fns["gradcam"]())  # (N, H, W) numpy, min-max normalized, resized by OpenCV
    raw = fns[same]().raw  # type: ignore[attr-defined]
    result: dict = {"camloc_raw_shape": list(raw.shape), "max_abs_diff": None, "max": float(theirs.max())}
    if raw.ndim == 4 and raw.shape[:2] == (theirs.shape[0], 1):
        # pytorch-grad-cam min-max normalizes, resizes, and min-max normalizes again: camloc's maps at the input's size
        up = camloc.normalize_maps(F.interpolate(raw, size=theirs.shape[-2:], mode="bilinear"), "minmax")[:, 0]
        result["max_abs_diff"] = float((up - theirs).abs().max())
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import timm

    from camloc.runtime import keep_freed_memory

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")

    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed))
    fns: dict[str, Callable[[], object]] = {}
    notes: dict[str, dict[str, str]] = {}
    agree: dict[str, dict | None] = {}
    for key in keys:
        name, kwargs = MODELS[key]
        torch.manual_seed(args.seed)
        model = timm.create_model(name, pretrained=False, **kwargs).eval()
        model_fns, notes[key] = build_variants(key, model, x)
        agree[key] = agreement(model_fns, notes[key])
        fns.update({f"{key}/{v}": fn for v, fn in model_fns.items()})

    print(
        f"CPU: {cpu_name()} ({os.cpu_count()} logical CPUs), torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; batch {args.batch}, 1 warm-up + {args.repeats} interleaved rounds",
        flush=True,
    )
    times, rounds = time_round_robin(fns, args.repeats, lambda s: print(s, flush=True))
    result = report(keys, notes, agree, times, rounds, args)
    if args.json is not None:
        text = json.dumps(result, indent=2)
        if str(args.json) == "-":
            print(text)
        else:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n")
            print(f"wrote {args.json}")


def report(keys, notes, agree, times, rounds, args) -> dict:
    """Print images/s and the ratio to the bare forward per model and variant; return the same as a dict."""
    import importlib.metadata as md

    results: dict[str, dict] = {}
    print(f"\nimages/s, median of {args.repeats} rounds, batch {args.batch} (ratio: throughput / bare forward's)")
    for key in keys:
        bare = statistics.median(times[f"{key}/bare"])
        print(f"\n{MODELS[key][0]} {MODELS[key][1] or ''}".rstrip())
        results[key] = {
            "model": MODELS[key][0],
            "kwargs": MODELS[key][1],
            "gradcam_agreement": agree[key],
            "variants": {},
        }
        for variant, label in LABELS.items():
            ts = times.get(f"{key}/{variant}")
            entry: dict = {"label": label, "note": notes[key].get(variant, "")}
            if ts:
                med = statistics.median(ts)
                entry.update(median_s=med, images_per_s=args.batch / med, vs_bare=bare / med, times_s=ts)
                print(f"  {label:<46} {args.batch / med:8.1f} img/s  {bare / med:5.2f}x  {entry['note']}")
            else:
                print(f"  {label:<46} {'-':>8}        {'-':>5}   {entry['note']}")
            results[key]["variants"][variant] = entry
        if agree[key] is not None:
            diff, shape = agree[key]["max_abs_diff"], agree[key]["camloc_raw_shape"]
            zero = " (pytorch-grad-cam's maps are all zero: a weak check)" if agree[key]["max"] == 0 else ""
            print(
                f"  camloc Grad-CAM vs pytorch-grad-cam on the same layer: camloc's raw maps {shape}"
                + (f", min-max maps differ by at most {diff:.2e}{zero}" if diff is not None else "")
            )
    other = [r["other_cpu_s"] for r in rounds if r["other_cpu_s"] is not None]
    wall = sum(r["wall_s"] for r in rounds)
    if other and sum(other) > 0.05 * wall:
        print(f"\nWARNING: other processes used {sum(other):.1f} CPU-s during {wall:.1f} s of timed rounds: contended")
    if args.quick:
        print("\n--quick: a check that every variant runs; these numbers are not measurements")
    env = {
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "argv": sys.argv[1:],
    }
    for dist in ("torch", "timm", "grad-cam", "camloc"):
        try:
            env[dist] = md.version(dist)
        except md.PackageNotFoundError:
            env[dist] = None
    return {"environment": env, "batch": args.batch, "repeats": args.repeats, "models": results, "rounds": rounds}


if __name__ == "__main__":
    main()
