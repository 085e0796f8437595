"""Grad-CAM, Grad-CAM++ and Score-CAM: camloc vs pytorch-grad-cam vs torchcam, same model, batch, layer.

    .venv/bin/python benchmarks/bench_methods.py [--batch 8] [--repeats 5] [--size 224] [--json FILE]

Pretrained MobileNetV2 on the CPU, target layer `features.18` (the last feature map), the top-1 class
of each image, maps upsampled to the input. Variants run interleaved in one process (after a warm-up
round), median of the repeats. Peak memory: each variant once in a fresh subprocess, ru_maxrss.
Score-CAM runs 1,280 masked forward passes per image, so it uses a smaller batch (`--score-batch`).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import camloc
from camloc.maps import METHODS
from camloc.runtime import keep_freed_memory


def variants(model, size: int) -> dict:
    import pytorch_grad_cam as pgc
    import torchcam.methods as tc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = model.features[-1]

    def ours(name):
        method = METHODS[name](model)
        return lambda x: method(x, topk=1).maps

    def theirs(cls):
        def run(x):
            with torch.no_grad():
                top1 = model(x).argmax(1).tolist()
            with cls(model=model, target_layers=[layer]) as extractor:
                return extractor(x, targets=[ClassifierOutputTarget(c) for c in top1])

        return run

    def torchcam(cls, **kw):
        def run(x):
            with cls(model, target_layer="features.18", **kw) as extractor:
                with torch.enable_grad() if cls is not tc.ScoreCAM else torch.no_grad():
                    scores = model(x)
                maps = extractor(scores.argmax(1).tolist(), scores)[0]
            return F.interpolate(maps[:, None], size=(size, size), mode="bilinear", align_corners=False)

        return run

    return {
        "gradcam": {
            "camloc": ours("gradcam"),
            "pytorch-grad-cam": theirs(pgc.GradCAM),
            "torchcam": torchcam(tc.GradCAM),
        },
        "gradcam++": {
            "camloc": ours("gradcam++"),
            "pytorch-grad-cam": theirs(pgc.GradCAMPlusPlus),
            "torchcam": torchcam(tc.GradCAMpp),
        },
        "scorecam": {
            "camloc": ours("scorecam"),
            "pytorch-grad-cam": theirs(pgc.ScoreCAM),
            "torchcam": torchcam(tc.ScoreCAM, batch_size=64),
        },
    }


def time_all(runs: dict, x: torch.Tensor, repeats: int) -> dict:
    for fn in runs.values():  # warm-up
        fn(x)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_rss(method: str, library: str, batch: int, size: int) -> float:
    code = (
        "import resource, sys, torch\n"
        f"sys.argv = ['x']\nsys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})\n"
        "import bench_methods as b, camloc\nfrom camloc.runtime import keep_freed_memory\nkeep_freed_memory()\n"
        "m = camloc.load_model('mobilenet_v2')\ntorch.manual_seed(0)\n"
        f"x = torch.randn({batch}, 3, {size}, {size})\n"
        "def hwm():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024\n"
        "base = hwm()\n"
        f"b.variants(m, {size})[{method!r}][{library!r}](x)\n"
        "print(hwm() - base)\n"
    )
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--score-batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    model = camloc.load_model("mobilenet_v2")
    torch.manual_seed(0)
    report = {}
    print(f"MobileNetV2, features.18, top-1 class, {args.size}px, {args.threads} threads; median of {args.repeats}")
    print(
        f"{'method':<10} {'library':<17} {'batch':>5} {'s/batch':>9} {'img/s':>8} "
        f"{'camloc speed-up':>16} {'peak MiB':>9}"
    )
    for method, runs in variants(model, args.size).items():
        batch = args.score_batch if method == "scorecam" else args.batch
        x = torch.randn(batch, 3, args.size, args.size)
        medians = time_all(runs, x, args.repeats if method != "scorecam" else max(1, args.repeats // 2))
        for library, seconds in medians.items():
            memory = None if args.skip_memory else peak_rss(method, library, batch, args.size)
            speedup = seconds / medians["camloc"]
            report.setdefault(method, {})[library] = {
                "seconds": seconds,
                "images_per_s": batch / seconds,
                "peak_mib": memory,
            }
            mem = f"{memory:9.0f}" if memory is not None else f"{'-':>9}"
            print(f"{method:<10} {library:<17} {batch:>5} {seconds:9.3f} {batch / seconds:8.1f} {speedup:15.2f}x {mem}")
        faster_peer = min(s for lib, s in medians.items() if lib != "camloc")
        target = 1.5 if method != "scorecam" else 1.0
        verdict = "PASS" if faster_peer / medians["camloc"] >= target else "FAIL"
        print(f"  camloc vs the faster peer: {faster_peer / medians['camloc']:.2f}x (target >= {target}x: {verdict})")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
