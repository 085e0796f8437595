"""`camloc boxes` (weak labels to COCO, VOC, YOLO files) against `camloc evaluate` on the same images, and its memory.

    .venv/bin/python benchmarks/bench_boxes.py [--repeats 9] [--threads 2] [--json FILE] [--skip-memory]
    .venv/bin/python benchmarks/bench_boxes.py --pool RUN1.json RUN2.json ...

In one process, after a warm-up, three runs side by side, in turns (the order reversed every other
time, so that a drift of the machine cancels): ``export_boxes`` as ``camloc boxes`` runs by default
(COCO, images linked), ``export_boxes`` writing all three formats (COCO, VOC, YOLO: a VOC XML and a
YOLO text file more per image), and ``evaluate --protocol paper`` (the same forward pass, the same
resize and box rule). Both exports use the paper rule at 0.2 on images squashed to 224 as evaluate
squashes them, count CorLoc and skip COCO AP. Over the 725 ImageNet images of
../shared/data/imagenet-val-boxes (boxes of the labelled class) and the 471 CUB test images of
../shared/data/cub-200-2011-50 (an ImageNet model there: its top-1 class is boxed; speed does not
depend on it). Reported per export: images/s and the ratio to evaluate (target >= 0.95), by wall
time (the medians' ratio, and the median ratio of the runs side by side, with a 90 % bootstrap
interval of that median) and by the process's CPU time. ``--pool`` prints the paired ratios of
several runs' JSON files taken together. Then one run each with COCO AP scored by pycocotools
(work evaluate does not do) and on the whole photo (``--resize full``, camloc boxes' default).
Then, in fresh processes, the peak RSS of boxing the ImageNet images once and ten times over
(7,250 files, linked under distinct names, squashed as above), which must stay flat.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

import camloc
from camloc.datasets import Dataset, open_dataset
from camloc.evaluation import evaluate
from camloc.evaluation.weak_labels import BoxSettings, export_boxes
from camloc.runtime import keep_freed_memory

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGENET = SHARED / "imagenet-val-boxes"
CUB = SHARED / "cub-200-2011-50"
ALL_FORMATS = ("coco", "voc", "yolo")


def timed(run) -> tuple[float, float, dict]:
    """(wall seconds, CPU seconds of this process, the run's summary)."""
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run()
    return time.perf_counter() - wall, time.process_time() - cpu, summary


def time_boxes(data: Dataset, cam, info, preprocess, scratch: Path, use_labels: bool, formats=("coco",), ap=False):
    out = Path(tempfile.mkdtemp(dir=scratch))
    settings = BoxSettings(use_labels=use_labels)

    def run() -> dict:
        return export_boxes(
            data, cam, info=info, out_dir=out, settings=settings, formats=formats, preprocess=preprocess, ap=ap
        ).summary

    return timed(run)


def time_evaluate(data: Dataset, cam, info) -> tuple[float, float, dict]:
    return timed(lambda: evaluate(data, cam, info.preprocess, protocol="paper", progress=False).summary)


def peak_memory(repeat: int, scratch: Path) -> float:
    """Peak RSS (MiB, VmHWM) of a fresh process boxing the ImageNet images ``repeat`` times over."""
    links = scratch / f"links{repeat}"
    links.mkdir()
    for k in range(repeat):
        for image in sorted((IMAGENET / "images").iterdir()):
            (links / f"{k}_{image.name}").symlink_to(image)
    code = (
        "import camloc\nfrom camloc.evaluation.weak_labels import export_boxes\n"
        "from camloc.runtime import keep_freed_memory\nkeep_freed_memory()\n"
        "m = camloc.load_model('mobilenet_v2')\n"
        f"paths = sorted(__import__('pathlib').Path({str(links)!r}).iterdir())\n"
        "squash = camloc.model_info(m).preprocess.with_mode('squash')\n"
        f"r = export_boxes(paths, m, out_dir={str(scratch / f'out{repeat}')!r}, formats=['coco', 'voc', 'yolo'], "
        "preprocess=squash)\n"
        "hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "print(r.summary['images'], int(hwm.split()[1]) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[1])


def paired_summary(ratios: list[float]) -> dict:
    """Median of paired ratios, its 90 % bootstrap interval (4,000 resamples, seeded) and the geometric mean."""
    rng = random.Random(0)
    boots = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(4000))
    return {
        "pairs": len(ratios),
        "median": statistics.median(ratios),
        "ci90": [boots[200], boots[3799]],
        "geometric_mean": statistics.geometric_mean(ratios),
    }


def pool(paths: list[Path]) -> None:
    """Print the paired ratios of several runs of this script (their ``--json`` files) taken together."""
    runs = [json.loads(p.read_text()) for p in paths]
    for name in ("imagenet", "cub"):
        for key in ("boxes", "boxes_3_formats"):
            ratios = [
                e / b for run in runs for e, b in zip(run[name]["evaluate_s"], run[name][key]["wall_s"], strict=True)
            ]
            s = paired_summary(ratios)
            low, high = s["ci90"]
            print(f"{name} {key}: {s['pairs']} pairs, median ratio {s['median']:.3f} "
                  f"(90 % interval {low:.3f}-{high:.3f}), geometric mean {s['geometric_mean']:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--pool", type=Path, nargs="+", metavar="RUN.json", help="summarize earlier runs, run nothing")
    args = parser.parse_args()
    if args.pool:
        pool(args.pool)
        return
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    model = camloc.load_model("mobilenet_v2")
    info, cam = camloc.model_info(model), camloc.CAM(model)
    squash = info.preprocess.with_mode("squash")
    sets = {"imagenet": (open_dataset(IMAGENET), True), "cub": (open_dataset(CUB, split="test"), False)}
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        warm = dataclasses.replace(sets["imagenet"][0], samples=sets["imagenet"][0].samples[:64])
        time_boxes(warm, cam, info, squash, scratch, True, ALL_FORMATS)
        time_evaluate(warm, cam, info)
        for name, (data, labels) in sets.items():
            runs = {
                "boxes": partial(time_boxes, data, cam, info, squash, scratch, labels),
                "boxes_3_formats": partial(time_boxes, data, cam, info, squash, scratch, labels, ALL_FORMATS),
                "evaluate": partial(time_evaluate, data, cam, info),
            }
            times: dict[str, list] = {k: [] for k in runs}
            for k in range(args.repeats):
                for key in list(runs) if k % 2 == 0 else list(runs)[::-1]:
                    times[key].append(runs[key]())
            scored = time_boxes(data, cam, info, squash, scratch, labels, ALL_FORMATS, ap=True)
            full = time_boxes(data, cam, info, info.preprocess.with_mode("full"), scratch, labels)
            n = len(data)
            wall_e, cpu_e = (statistics.median(r[j] for r in times["evaluate"]) for j in (0, 1))
            entry: dict = {
                "images": n,
                "evaluate_images_per_s": n / wall_e,
                "evaluate_s": [r[0] for r in times["evaluate"]],
            }
            line = f"{name} ({n} images): evaluate {n / wall_e:6.1f} img/s"
            for key in ("boxes", "boxes_3_formats"):
                wall_b, cpu_b = (statistics.median(r[j] for r in times[key]) for j in (0, 1))
                pairs = paired_summary([e[0] / b[0] for b, e in zip(times[key], times["evaluate"], strict=True)])
                paired = pairs["median"]
                entry[key] = {
                    "images_per_s": n / wall_b,
                    "ratio": wall_e / wall_b,
                    "paired_ratio": paired,
                    "paired_ratio_ci90": pairs["ci90"],
                    "cpu_ratio": cpu_e / cpu_b,
                    "wall_s": [r[0] for r in times[key]],
                    "cpu_s": [r[1] for r in times[key]],
                }
                line += (f"; {key} {n / wall_b:6.1f} img/s, ratio {wall_e / wall_b:.2f} by wall time "
                         f"({paired:.2f} paired, 90 % interval {pairs['ci90'][0]:.2f}-{pairs['ci90'][1]:.2f}), "
                         f"{cpu_e / cpu_b:.2f} by CPU time")  # fmt: skip
            entry.update(
                boxes_3_formats_with_ap_images_per_s=n / scored[0],
                boxes_full_photo_images_per_s=n / full[0],
                corloc=scored[2]["corloc"],
                ap50=scored[2]["ap50"],
            )
            report[name] = entry
            print(f"{line} (target >= 0.95); 3 formats + COCO AP {n / scored[0]:6.1f} img/s; "
                  f"whole photo {n / full[0]:6.1f} img/s")  # fmt: skip
        if not args.skip_memory:
            once, ten = peak_memory(1, scratch), peak_memory(10, scratch)
            report.update(peak_rss_mib_725=once, peak_rss_mib_7250=ten)
            print(f"peak RSS: {once:.0f} MiB for 725 images, {ten:.0f} MiB for 7,250 images")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
