"""MaxBoxAcc of CAM, PC1 and Eigen-CAM (each sign rule) with the pretrained MobileNetV2 on the shared ImageNet images.

The same evaluation as ``camloc evaluate DATA --method NAME --size S`` (wsol protocol, labelled class,
images squashed to S x S), run for each variant in one process, one after the other:

- ``cam``, ``pc1``, ``eigencam`` (``sign="border"``, the default), ``eigencam sign=svd`` (pytorch-grad-cam's);
- ``pc1, authors' frame``: PC1 with the authors' border test instead of camloc's (their frame is rows and
  columns 0, s-2 and s-1 of an s x s map, counted over 4(s-1) cells), to show what that departure moves.

    .venv/bin/python benchmarks/bench_pc1.py [--sizes 224,448] [--variants cam,pc1,...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch import Tensor

import camloc
import camloc.maps.pc1 as pc1_module
from camloc.runtime import keep_freed_memory

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenet-val-boxes"
VARIANTS = ("cam", "pc1", "pc1-authors-frame", "eigencam", "eigencam-svd")


def authors_border_sign(maps: Tensor) -> Tensor:
    """The authors' border test on square maps: frame rows / columns 0, s-2, s-1, share of 4(s-1) cells > 0.5."""
    s = maps.shape[-1]
    flat = maps.flatten(-2)
    largest = flat.gather(-1, flat.abs().argmax(-1, keepdim=True))
    maps = torch.where(largest < 0, -flat, flat).view_as(maps)
    frame = maps > maps.mean((-2, -1), keepdim=True)
    frame[..., 1 : s - 2, 1 : s - 2] = False
    flip = frame.sum((-2, -1)) / (4 * (s - 1)) > 0.5
    return torch.where(flip[..., None, None], -maps, maps)


def make(variant: str, model: torch.nn.Module):
    """The map method of one variant (the PC1 sign rule is swapped module-wide for the authors' frame)."""
    pc1_module.border_sign = authors_border_sign if variant == "pc1-authors-frame" else _BORDER_SIGN
    if variant == "eigencam-svd":
        return camloc.EigenCAM(model, sign="svd")
    return camloc.create_method(variant.removesuffix("-authors-frame"), model)


_BORDER_SIGN = pc1_module.border_sign


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--sizes", default="224,448")
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    keep_freed_memory()
    dataset = camloc.open_dataset(args.data)
    model = camloc.load_model("mobilenet_v2")
    base = camloc.model_info(model).preprocess
    print("| size | method | MaxBoxAcc | MaxBoxAccV2 (IoU 30 / 50 / 70) | GT-known loc | best threshold | s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        pre = dataclasses.replace(base, size=size, resize_size=round(size * base.resize_size / base.size))
        for variant in args.variants.split(","):
            began = time.perf_counter()
            s = camloc.evaluate(dataset, make(variant, model), preprocess=pre, progress=False).summary
            iou = " / ".join(f"{v:.2f}" for v in s["max_box_acc_v2_per_iou"].values())
            print(
                f"| {size} | {variant} | {s['max_box_acc']:.2f} | {s['max_box_acc_v2']:.2f} ({iou}) "
                f"| {s['gt_known_loc']:.2f} | {s['best_threshold']:.2f} | {time.perf_counter() - began:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
