"""camloc on one GPU: CAM, evaluate and training throughput against bare passes, GPU utilisation, AMP's effect.

    python3 benchmarks/bench_gpu.py --data DIR [--weights FILE] [--device cuda] [--json FILE]

Run by ``benchmarks/gpu_check.sh`` on a machine with a GPU (it also runs on the CPU, small, to check
the script). Sections, each timed with the device synchronized, GPU utilisation sampled every 0.1 s
(NVML) while it runs:

1. CAM: a bare forward pass of MobileNetV2 (batch 256, 224², channels_last) in float32 and in bf16
   autocast, against ``camloc.CAM`` top-1 with ``amp=None`` and ``amp="bf16"``.
2. AMP's map difference: the CAMs of the ImageNet images' labelled classes in bf16 / fp16 against
   float32 (the largest difference over a map's range), and evaluate's numbers with each.
3. evaluate: the wsol protocol over the ImageNet images (DIR, the shared ``imagenet-val-boxes``),
   batch 128, overlapped and serial, fp32 and bf16, steady state (all images minus the first fifth),
   against a bare forward over the same images already on the GPU.
4. train: ``camloc.training.train`` on generated shapes images against a bare forward + backward +
   step on tensors on the GPU, same architecture, batch and input size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import camloc
from camloc.datasets import Dataset, open_dataset
from camloc.datasets.synthetic import generate
from camloc.evaluation import evaluate
from camloc.runtime import keep_freed_memory
from camloc.training import TrainConfig, train


class Utilisation:
    """GPU utilisation (percent) sampled every 0.1 s while the block runs; None off a GPU or without NVML."""

    def __init__(self, device: torch.device) -> None:
        self.samples: list[int] = []
        self.handle = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
                self.nvml = pynvml
            except Exception:  # noqa: BLE001 - no NVML: no utilisation figures
                self.handle = None

    def __enter__(self) -> Utilisation:
        self.running = True

        def sample() -> None:
            while self.running:
                self.samples.append(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
                time.sleep(0.1)

        self.thread = threading.Thread(target=sample, daemon=True) if self.handle is not None else None
        if self.thread is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        if self.thread is not None:
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def synced(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, run, repeats: int) -> tuple[float, float | None]:
    """(median seconds of ``run()``, mean GPU utilisation), after one warm-up call."""
    run()
    seconds = []
    with Utilisation(device) as use:
        for _ in range(repeats):
            synced(device)
            start = time.perf_counter()
            run()
            synced(device)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), use.mean


def cam_section(model, device, batch: int, repeats: int) -> dict:
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)

    def bare(amp: str | None):
        def run() -> None:
            with torch.inference_mode(), camloc.maps.core.autocast(device, amp):
                model(x)

        return run

    def cam(amp: str | None):
        method = camloc.CAM(model, amp=amp)
        return lambda: method(x, topk=1, upsample=False)

    out = {}
    for name, run in (
        ("bare_fp32", bare(None)),
        ("bare_bf16", bare("bf16")),
        ("cam_fp32", cam(None)),
        ("cam_bf16", cam("bf16")),
    ):
        seconds, use = timed(device, run, repeats)
        out[name] = {"images_per_s": batch / seconds, "gpu_util": use}
        print(f"  {name:10s} {batch / seconds:9.1f} img/s  GPU {use if use is None else round(use)} %", flush=True)
    return out


def amp_section(model, device, data: Dataset, batch: int) -> dict:
    pre = camloc.model_info(model).preprocess.with_mode("squash")
    images = camloc.load_batch([s.path for s in data.samples[:batch]], pre).images
    labels = [[s.label] for s in data.samples[:batch]]
    reference = camloc.CAM(model)(images, classes=labels, upsample=False).raw
    out = {}
    for amp in ("bf16", "fp16"):
        raw = camloc.CAM(model, amp=amp)(images, classes=labels, upsample=False).raw
        span = (reference.amax(dim=(2, 3)) - reference.amin(dim=(2, 3))).clamp_min(1e-12)
        worst = ((raw - reference).abs().amax(dim=(2, 3)) / span).max().item()
        out[amp] = {"max_difference_of_range": worst}
        print(f"  CAM {amp} vs float32: largest difference {100 * worst:.2f} % of a map's range", flush=True)
    return out


def evaluate_section(model, device, data: Dataset, batch: int, repeats: int) -> dict:
    pre = camloc.model_info(model).preprocess
    fifth = dataclasses.replace(data, samples=data.samples[: len(data) // 5])
    steady = len(data) - len(fifth)
    decoded = camloc.load_batch([s.path for s in data.samples[len(fifth) :]], pre.with_mode("squash")).images
    on_device = decoded.to(device).contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        with torch.inference_mode():
            for i in range(0, len(on_device), batch):
                model(on_device[i : i + batch])

    bare_s, bare_use = timed(device, bare, repeats)
    out: dict = {"bare_forward_images_per_s": steady / bare_s, "bare_gpu_util": bare_use}
    print(f"  bare forward   {steady / bare_s:9.1f} img/s  GPU {bare_use if bare_use is None else round(bare_use)} %")
    for amp in (None, "bf16"):
        method = camloc.CAM(model, amp=amp)
        for overlap in (True, False):
            summaries: list[dict] = []

            def run(subset: Dataset, method=method, overlap=overlap, summaries=summaries) -> None:
                result = evaluate(subset, method, pre, batch_size=batch, workers=8, progress=False, overlap=overlap)
                summaries.append(result.summary)

            all_s, use = timed(device, lambda: run(data), repeats)
            fifth_s, _ = timed(device, lambda: run(fifth), repeats)
            rate = steady / (all_s - fifth_s)
            name = f"evaluate_{amp or 'fp32'}_{'overlapped' if overlap else 'serial'}"
            s = summaries[repeats]  # a run of all the images
            metrics = {k: s[k] for k in ("max_box_acc", "max_box_acc_v2", "gt_known_loc")}
            out[name] = {"images_per_s": rate, "ratio": rate * bare_s / steady, "gpu_util": use, **metrics}
            print(
                f"  {name:28s} {rate:8.1f} img/s = {out[name]['ratio']:.2f} x bare  GPU "
                f"{use if use is None else round(use)} %  MaxBoxAcc {s['max_box_acc']:.2f} V2 "
                f"{s['max_box_acc_v2']:.2f}",
                flush=True,
            )
    return out


def train_section(device, images: int, batch: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data, _ = generate(Path(tmp) / "shapes", train=images, test=8, seed=0)
        config = TrainConfig(arch="mobilenet_v2", epochs=2, batch_size=batch, size=224, workers=8)
        model = camloc.build_model("mobilenet_v2", num_classes=len(data.class_names)).to(device)
        model = model.to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, len(data.class_names), (batch,), device=device)

        def step() -> None:
            for _ in range(10):
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        bare_s, bare_use = timed(device, step, repeats)
        with Utilisation(device) as use:
            result = train(config, data, Path(tmp) / "m.pt", device=device, progress=False)
        rate = result.history[-1]["images_per_s"] if result.history and "images_per_s" in result.history[-1] else None
        out = {"bare_images_per_s": 10 * batch / bare_s, "bare_gpu_util": bare_use, "train_images_per_s": rate,
               "train_gpu_util": use.mean}  # fmt: skip
        print(f"  bare step {10 * batch / bare_s:9.1f} img/s; camloc train {rate} img/s  GPU {use.mean}", flush=True)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the imagenet-val-boxes folder")
    parser.add_argument("--weights", help="mobilenet_v2-b0353104.pth (default: the installed package's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, help="use the first N images (a quick check on the CPU)")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    keep_freed_memory()
    device = torch.device(args.device)
    model = camloc.load_model("mobilenet_v2", args.weights, device=args.device)
    data = open_dataset(args.data)
    if args.limit:
        data = dataclasses.replace(data, samples=data.samples[: args.limit])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {len(data)} images", flush=True)
    report: dict = {"device": name, "torch": torch.__version__}
    print("1. CAM vs bare forward", flush=True)
    report["cam"] = cam_section(model, device, args.batch, args.repeats)
    print("2. AMP's map difference", flush=True)
    report["amp"] = amp_section(model, device, data, min(args.batch, len(data)))
    print("3. evaluate end to end", flush=True)
    report["evaluate"] = evaluate_section(model, device, data, min(args.batch, 128), max(1, args.repeats // 2))
    print("4. training", flush=True)
    report["train"] = train_section(device, args.train_images, min(args.batch, 64), args.repeats)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
