"""`camloc evaluate` end to end vs a bare forward pass, and its peak memory against the image count.

    .venv/bin/python benchmarks/bench_evaluate.py [--repeats 3] [--threads 2] [--json FILE]

In one process, after a warm-up (model load, compilation, first batches): runs of the wsol protocol
over the 725 images of ../shared/data/imagenet-val-boxes, overlapped (decode and box work beside the
forward pass, the default) and serial (``overlap=False``: one phase after the other), alternate with
bare forward passes of the same model over the same, already decoded, images (batch 32,
channels_last input, freed memory kept by the allocator: its best plain configuration here). Steady
state: each evaluate rate is of the last four fifths, time(all 725) - time(first 145), both timed.
Reported: images/s and the ratio to the bare forward (target >= 0.9). Then, in fresh subprocesses,
the peak RSS of evaluating the list once and repeated ten times (7,250 images), which must stay flat.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import camloc
from camloc.datasets import Dataset, open_dataset
from camloc.evaluation import evaluate, pipeline
from camloc.runtime import keep_freed_memory

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-boxes"


def bare_forward(model, images: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            model(images[i : i + batch].contiguous(memory_format=torch.channels_last))
    return time.perf_counter() - start


def run_evaluate(dataset: Dataset, cam, preprocess, batch: int, overlap: bool = True) -> tuple[float, dict]:
    start = time.perf_counter()
    result = evaluate(
        dataset, cam, preprocess, protocol="wsol", batch_size=batch, workers=2, progress=False, overlap=overlap
    )
    return time.perf_counter() - start, result.summary


def peak_memory(repeat: int) -> float:
    """Peak RSS (MiB) of a fresh process evaluating the dataset ``repeat`` times over.

    Read from /proc/self/status (VmHWM): ru_maxrss would include this parent's peak, which a child
    inherits across fork + exec on Linux."""
    code = (
        "import dataclasses, camloc\n"
        "from camloc.datasets import open_dataset\nfrom camloc.evaluation import evaluate\n"
        "from camloc.runtime import keep_freed_memory\nkeep_freed_memory()\n"
        f"d = open_dataset({str(DATA)!r})\n"
        f"d = dataclasses.replace(d, samples=[dataclasses.replace(s, image_id=f'{{k}}/{{s.image_id}}') "
        f"for k in range({repeat}) for s in d.samples])\n"
        "m = camloc.load_model('mobilenet_v2')\n"
        "r = evaluate(d, camloc.CAM(m), camloc.model_info(m).preprocess, progress=False)\n"
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "print(r.summary['images'], int(hwm.split()[1]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--priorities", default="5", help="background priorities to try, comma-separated: nice values or idle"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()

    dataset = open_dataset(DATA)
    model = camloc.load_model("mobilenet_v2")
    preprocess = camloc.model_info(model).preprocess
    cam = camloc.CAM(model)
    squash = camloc.Preprocess(mode="squash")
    images = camloc.load_batch([s.path for s in dataset.samples], squash).images  # decoded once, outside the timing

    warm = Dataset(dataset.name, dataset.format, dataset.root, dataset.samples[:64], dataset.class_names)
    run_evaluate(warm, cam, preprocess, args.batch)
    bare_forward(model, images[:64], args.batch)

    fifth = Dataset(
        dataset.name, dataset.format, dataset.root, dataset.samples[: len(dataset) // 5], dataset.class_names
    )
    steady = len(dataset) - len(fifth)
    variants: dict[str, tuple[bool, int | str]] = {"serial": (False, 0)}
    for priority in args.priorities.split(","):
        variants[f"overlapped, background {priority}"] = (True, priority if priority == "idle" else int(priority))
    times: dict[str, list[float]] = {name: [] for name in [*variants, "bare"]}
    summary: dict = {}
    for _ in range(args.repeats):
        for name, (overlap, priority) in variants.items():
            pipeline.BACKGROUND = priority
            seconds, summary = run_evaluate(dataset, cam, preprocess, args.batch, overlap)
            times[name].append(seconds - run_evaluate(fifth, cam, preprocess, args.batch, overlap)[0])
        times["bare"].append(bare_forward(model, images[len(fifth) :], args.batch))
    rates = {name: steady / statistics.median(t) for name, t in times.items()}
    default = f"overlapped, background {args.priorities.split(',')[0]}"
    report = {
        "images": len(dataset),
        "steady_images": steady,
        "images_per_s": rates,
        "ratio": rates[default] / rates["bare"],
        "ratios": {name: rate / rates["bare"] for name, rate in rates.items()},
        "seconds": times,
        "max_box_acc": summary["max_box_acc"],
        "max_box_acc_v2": summary["max_box_acc_v2"],
    }
    print(f"steady state, the last {steady} of {len(dataset)} images, median of {args.repeats}:")
    for name, rate in rates.items():
        print(f"  {name:32s} {rate:6.1f} img/s = {rate / rates['bare']:.2f} x bare forward")
    ok = "PASS" if report["ratio"] >= 0.9 else "FAIL"
    print(f"ratio {report['ratio']:.2f} ({default}; target >= 0.9: {ok})")
    if not args.skip_memory:
        once, ten = peak_memory(1), peak_memory(10)
        report.update(peak_rss_mib_725=once, peak_rss_mib_7250=ten)
        n = len(dataset)
        print(f"peak RSS: {once:.0f} MiB for {n} images, {ten:.0f} MiB for {10 * n} images")
    print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
