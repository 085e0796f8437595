"""Which models camloc explains: CAM and Grad-CAM on one small model of every timm family and on Hugging Face classes.

    .venv/bin/python benchmarks/survey_models.py [--families REGEX] [--limit N] [--out docs/models.md]
        [--results out/survey_models.jsonl] [--timeout 300] [--threads 1] [--fresh] [--list]

A timm family is the name's leading letters, with a version suffix kept (``resnet50d`` -> resnet,
``resnetv2_50`` -> resnetv2, ``mobilenetv4_conv_small`` -> mobilenetv4), ``tf_`` / ``legacy_``
dropped (the same architecture with other weights) and ``test_`` models left out; a prefix whose
models come from several timm modules is one family per module (``inception`` -> inception_v3,
inception_next, ...). Each family is represented by its smallest model by parameter count, counted
on the meta device (nothing allocated, no weights). Models get random weights (``pretrained=False``)
and a batch of 2 random images at the model's own default input size (timm's pretrained_cfg). The Hugging Face
classes are built with ``AutoModelForImageClassification.from_config`` from small configs.

Per model, ``camloc.CAM(m)(x)`` and ``camloc.GradCAM(m)(x)`` are judged (``survey_verdicts.py``): CAM
exact / linearized / refused / crashed / wrong, Grad-CAM ok / refused / crashed / wrong, with the grid
of the maps and the time per image (CPU, ``--threads``).

Each model runs in a worker subprocess with a timeout, so a hang or a crash of one model costs only
that model. Results are appended to the ``--results`` JSON-lines file as they come; a rerun skips
the models already there (``--fresh`` starts over). The table ``--out`` is rewritten atomically
from the whole results file at the end of each run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import torch
from bench_cam import cpu_name
from survey_verdicts import (
    CAM_OUTCOMES,
    GRADCAM_OUTCOMES,
    Outcome,
    classify_cam,
    classify_gradcam,
    one_line,
    show_grids,
)
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parent.parent
READY = "ready"  # the worker's first line, once its imports are done
STARTUP_TIMEOUT = 300  # seconds for a worker to import torch, timm, transformers and camloc


# ---------------------------------------------------------------------------------------------------
# The models: timm families, their smallest members, Hugging Face classes


def family_of(name: str) -> str:
    """The name's leading letters and version (``resnetv2_50`` -> ``resnetv2``), without ``tf_`` / ``legacy_``."""
    stem = re.sub(r"^(tf|legacy)_", "", name)
    match = re.match(r"[a-z]+?(?:v\d+)?(?=[_\d]|$)", stem)
    return match.group(0) if match else stem


def timm_families() -> dict[str, list[str]]:
    """Family name -> its timm model names (no ``test_`` models; a prefix over several modules split by module)."""
    import timm

    module_of = {n: m for m in timm.list_modules() for n in timm.list_models(module=m)}
    by_prefix: dict[str, list[str]] = defaultdict(list)
    for name in timm.list_models():
        if not name.startswith("test_"):
            by_prefix[family_of(name)].append(name)
    families: dict[str, list[str]] = {}
    for prefix, names in by_prefix.items():
        modules = sorted({module_of.get(n, "") for n in names})
        for module in modules:
            key = prefix if len(modules) == 1 else f"{prefix} ({module})"
            families[key] = [n for n in names if module_of.get(n, "") == module]
    return dict(sorted(families.items()))


def meta_parameters(name: str) -> int | None:
    """The parameter count of a timm model built on the meta device (no memory, no weights), None if it fails."""
    import timm

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = timm.create_model(name, pretrained=False)
        return sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - a model that will not build on meta is just not a candidate
        return None


def smallest(names: list[str]) -> tuple[str, int | None]:
    """The family member with the fewest parameters (ties: the shorter name); the first name if none builds on meta."""
    counted = [(p, len(n), n) for n in names if (p := meta_parameters(n)) is not None]
    if not counted:
        return sorted(names, key=len)[0], None
    p, _, name = min(counted)
    return name, p


def hf_configs() -> dict[str, Callable[[], object]]:
    """Small configs (random weights, 10 labels, 224x224 unless said) of the Hugging Face classes surveyed."""
    import transformers as tr

    cnn = {"hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "num_labels": 10}
    vit = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    swin = {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "window_size": 7, "num_labels": 10}
    return {
        "ResNet": lambda: tr.ResNetConfig(embedding_size=16, **cnn),
        "ConvNeXt": lambda: tr.ConvNextConfig(**cnn),
        "ConvNeXtV2": lambda: tr.ConvNextV2Config(**cnn),
        "Swin": lambda: tr.SwinConfig(image_size=224, patch_size=4, **swin),
        "Swinv2": lambda: tr.Swinv2Config(image_size=224, patch_size=4, **swin),
        "ViT": lambda: tr.ViTConfig(image_size=224, patch_size=16, num_labels=10, **vit),
        "DeiT": lambda: tr.DeiTConfig(
            image_size=224, patch_size=16, architectures=["DeiTForImageClassification"], num_labels=10, **vit
        ),
        "BEiT": lambda: tr.BeitConfig(image_size=224, patch_size=16, num_labels=10, **vit),
        "Dinov2": lambda: tr.Dinov2Config(image_size=224, patch_size=14, num_labels=10, **vit),
        "EfficientNet": lambda: tr.EfficientNetConfig(
            image_size=224, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, num_labels=10
        ),
        "RegNet": lambda: tr.RegNetConfig(embedding_size=16, groups_width=8, **cnn),
        "MobileViT": lambda: tr.MobileViTConfig(image_size=256, num_labels=10),
        "PVT": lambda: tr.PvtConfig(image_size=224, depths=[1, 1, 1, 1], num_labels=10),
        # as on the hub (facebook/levit-128S): the class and distillation heads, their logits averaged
        "LeViT": lambda: tr.LevitConfig(
            image_size=224, architectures=["LevitForImageClassificationWithTeacher"], num_labels=10
        ),
    }


def hf_expected_grid(config: object, size: int) -> tuple[int, int]:
    """The last stage's grid of a Hugging Face model, from its config (patch grid, or strides of the stages)."""
    kind = type(config).__name__
    if kind in ("ViTConfig", "DeiTConfig", "BeitConfig", "Dinov2Config"):
        g = size // config.patch_size  # type: ignore[attr-defined]
    elif kind in ("SwinConfig", "Swinv2Config"):
        g = size // config.patch_size // 2 ** (len(config.depths) - 1)  # type: ignore[attr-defined]
    elif kind == "LevitConfig":
        g = size // 16
        for _ in range(2):  # two stride-2 subsampling stages after the 16-pixel patches
            g = (g - 1) // 2 + 1
    else:  # the CNNs and PVT: stride 32
        g = math.ceil(size / 32)
    return (g, g)


# ---------------------------------------------------------------------------------------------------
# One model, in the worker


def timm_input_size(model: nn.Module) -> tuple[int, int]:
    """The model's own default input size (halo attention runs at 256 only), else 224x224."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if cfg.get("input_size"):
        return tuple(cfg["input_size"][-2:])  # type: ignore[return-value]
    return (224, 224)


def timm_expected_grids(model: nn.Module, x: Tensor) -> list[tuple[int, int]] | None:
    """The grid of the model's last stage on ``x``, read from ``forward_features`` and its ``num_features`` channels.

    NCHW or NHWC by where the channels are; tokens ``(N, L, C)`` on the reduction's grid with
    ``h * w`` = L minus the prefix tokens. Without a readable ``forward_features`` output: the input
    over ``feature_info[-1]["reduction"]``, rounded down or up (odd sizes).
    """
    by_reduction = reduction_grids(model, tuple(x.shape[-2:]))
    try:
        with torch.inference_mode():
            f = model.forward_features(x)  # type: ignore[operator]
    except Exception:  # noqa: BLE001 - no forward_features: the reduction alone
        return by_reduction
    channels = getattr(model, "num_features", None)
    if not isinstance(f, Tensor) or not isinstance(channels, int):
        return by_reduction
    if f.ndim == 4 and f.shape[1] == channels:
        return [(int(f.shape[2]), int(f.shape[3]))]
    if f.ndim == 4 and f.shape[3] == channels:
        return [(int(f.shape[1]), int(f.shape[2]))]
    if f.ndim == 3 and f.shape[2] == channels and by_reduction:
        patches = f.shape[1] - int(getattr(model, "num_prefix_tokens", 0) or 0)
        return [g for g in by_reduction if g[0] * g[1] == patches] or by_reduction
    return by_reduction


def reduction_grids(model: nn.Module, size: tuple[int, int]) -> list[tuple[int, int]] | None:
    """The input size over ``feature_info[-1]["reduction"]``, rounded down or up, per side (None: no feature_info)."""
    info = getattr(model, "feature_info", None)
    try:
        reduction = info[-1]["reduction"]  # type: ignore[index]
    except (TypeError, IndexError, KeyError):
        return None
    if not reduction:
        return None
    hs = sorted({math.floor(size[0] / reduction), math.ceil(size[0] / reduction)})
    ws = sorted({math.floor(size[1] / reduction), math.ceil(size[1] / reduction)})
    return [(h, w) for h in hs for w in ws]


def images(size: tuple[int, int]) -> Tensor:
    """Two random images ``Tensor[2, 3, H, W]`` of different statistics (unit normal; mean 1, std 2), so that
    a random-weight model's two outputs differ."""
    x = torch.randn(2, 3, *size)
    x[1] = 2 * x[1] + 1
    return x


def randomize_zero_classifier(model: nn.Module, num_classes: int) -> bool:
    """Give a zero-initialized classifier (timm's Hiera-det, Sequencer, ...) random weights, so that maps are not all 0.

    With a zero classifier every CAM is zero and trivially "exact"; the survey wants maps that can be wrong.
    """
    zero = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    zero = [m for m in zero if not m.weight.detach().any()]
    with torch.no_grad():
        for linear in zero:
            linear.weight.normal_(0, 0.02)
    return bool(zero)


def build(job: dict) -> tuple[nn.Module, Tensor, list[tuple[int, int]] | None]:
    """The job's model (eval mode, random weights), a batch of 2 inputs and the grids its last stage may have."""
    if job["source"] == "hf":
        from transformers import AutoModelForImageClassification

        config = hf_configs()[job["model"].removeprefix("hf:")]()
        model = AutoModelForImageClassification.from_config(config).eval()
        randomize_zero_classifier(model, config.num_labels)
        size = int(getattr(config, "image_size", 224))
        return model, images((size, size)), [hf_expected_grid(config, size)]
    import timm

    model = timm.create_model(job["model"], pretrained=False).eval()
    randomize_zero_classifier(model, model.num_classes)
    x = images(timm_input_size(model))
    return model, x, timm_expected_grids(model, x)


def survey_one(job: dict) -> dict:
    """The record of one model: its CAM and Grad-CAM outcomes, grids and times."""
    t0 = time.perf_counter()
    record = dict(job)
    torch.manual_seed(0)
    try:
        model, x, expected = build(job)
    except Exception as e:  # noqa: BLE001
        skipped = Outcome("skipped", f"the model does not build: {one_line(e)}")
        return {**record, "cam": asdict(skipped), "gradcam": asdict(skipped), "seconds": time.perf_counter() - t0}
    batch = x.shape[0]
    record.update(input=list(x.shape[-2:]), expected=[list(g) for g in expected] if expected else None)
    record["params"] = record.get("params") or sum(p.numel() for p in model.parameters())
    try:
        with torch.inference_mode():
            model(x)
            t0 = time.perf_counter()
            model(x)
            record["forward_ms"] = (time.perf_counter() - t0) * 1000 / batch
    except Exception as e:  # noqa: BLE001 - the model's own forward fails: not camloc's doing
        skipped = Outcome("skipped", f"the model's own forward fails: {one_line(e)}")
        return {**record, "cam": asdict(skipped), "gradcam": asdict(skipped), "seconds": time.perf_counter() - t0}
    record["cam"] = asdict(classify_cam(model, x, expected))
    record["gradcam"] = asdict(classify_gradcam(model, x, expected))
    record["seconds"] = time.perf_counter() - t0
    return record


def worker(threads: int) -> None:
    """Read jobs (JSON lines) on stdin, answer one record per job on the original stdout."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything a model prints must not reach the answers
    import timm  # noqa: F401 - imported before the first job, so that no model's timeout pays for it

    import camloc.maps  # noqa: F401

    with contextlib.suppress(ImportError):
        import transformers  # noqa: F401
    answer.write(READY + "\n")
    answer.flush()
    for line in sys.stdin:
        job = json.loads(line)
        print(f"--- {job['model']}", file=sys.stderr, flush=True)
        try:
            record = survey_one(job)
        except Exception as e:  # noqa: BLE001 - a bug of the survey itself: say so, go on with the next model
            record = gone(job, f"survey error: {type(e).__name__}: {e}")
        answer.write(json.dumps(record) + "\n")
        answer.flush()


# ---------------------------------------------------------------------------------------------------
# The parent: jobs, a worker with a timeout, the results file, the table


class Worker:
    """A ``--worker`` subprocess, restarted after a timeout or a death."""

    def __init__(self, threads: int, log: Path) -> None:
        self.threads, self.log = threads, log
        self.proc: subprocess.Popen | None = None
        self.answers: queue.Queue[str | None] = queue.Queue()

    def _start(self) -> subprocess.Popen:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--threads", str(self.threads)]
        with open(self.log, "a") as err:  # the worker imports the same camloc as this process: same environment
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
            )
        answers = self.answers = queue.Queue()

        def read(stream=proc.stdout) -> None:
            for line in stream:
                answers.put(line)
            answers.put(None)  # the worker is gone

        threading.Thread(target=read, daemon=True).start()
        return proc

    def run(self, job: dict, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
            try:
                first = self.answers.get(timeout=STARTUP_TIMEOUT)
            except queue.Empty:
                first = None
            if first is None or first.strip() != READY:
                self.stop()
                return gone(job, f"WorkerDied: the worker did not start (see {self.log})")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.stop()
            return gone(job, "WorkerDied: the worker was gone before the job")
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            return gone(job, f"TimeoutError: no result in {timeout:.0f} s (killed)")
        if line is None:
            code = self.proc.wait()
            self.proc = None
            return gone(job, f"WorkerDied: the process ended with status {code} (out of memory, or a native crash?)")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)  # the worker's own session: nothing else
            self.proc.wait()
        self.proc = None


def gone(job: dict, why: str) -> dict:
    crashed = asdict(Outcome("crashed", why))
    return {**job, "cam": crashed, "gradcam": crashed, "seconds": None}


def read_results(path: Path) -> dict[str, dict]:
    """The records of a results file by model (the last one of a model wins; a torn last line is ignored)."""
    records: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                rec = json.loads(line)
                records[rec["model"]] = rec
    return records


def append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def jobs(families: dict[str, list[str]], pattern: re.Pattern, done: dict[str, dict]) -> Iterable[dict]:
    """The timm families then the Hugging Face classes matching ``pattern``, skipping those already done."""
    done_families = {r["family"] for r in done.values()}
    for family, names in families.items():
        if pattern.search(family):
            if family in done_families:
                yield {"done": True}
                continue
            name, params = smallest(names)
            yield {"source": "timm", "family": family, "model": name, "params": params, "variants": len(names)}
    for name in hf_configs():
        family = f"hf:{name}"
        if pattern.search(family):
            yield {"done": True} if family in done_families else {"source": "hf", "family": family, "model": family}


def versions() -> str:
    import importlib.metadata as md

    import camloc

    parts = [f"camloc {camloc.__version__}", f"torch {torch.__version__}"]
    for dist in ("timm", "transformers"):
        with contextlib.suppress(md.PackageNotFoundError):
            parts.append(f"{dist} {md.version(dist)}")
    return ", ".join(parts)


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def show_outcome(o: dict) -> str:
    return o["outcome"] + (f" {o['grid'][0]}x{o['grid'][1]}" if o.get("grid") else "")


def shows_detail(o: dict) -> bool:
    """Whether the table gives the outcome's detail: the reasons of failures, the caveats of an exact CAM."""
    return bool(o["detail"]) and o["outcome"] not in ("ok", "linearized")


def shorten(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


LEGEND = """
CAM is **exact** when the spatial mean of every map plus the class bias is the logit (checked: `logit - mean(map)`
is the same for both images and, where the model has a Linear layer with one output per class, equals the last
one's bias); **linearized** when it is not (a nonlinear head, e.g. a norm between pooling and the classifier,
linearized at each image). **wrong**: maps not on the last stage's grid (timm: the map `forward_features` returns,
or the input over `feature_info[-1]['reduction']`; Hugging Face: the patch grid or the stages' stride), of another
shape, or not finite. **refused**: camloc's own one-line error (a `CamlocError`); **crashed**: any other exception;
**skipped**: the model itself does not build or run. A classifier initialized to zeros gets random weights (or
every CAM would be zero). The grid is the one of the maps camloc returned (`raw`). Times are milliseconds per image
(the second call of each, batch of 2) on the CPU (torch threads: see above).
"""


def render(records: list[dict], *, command: str, run_note: str) -> str:
    """docs/models.md: how it was made, the counts per outcome, one row per model."""
    sources = (("timm", "timm families"), ("hf", "Hugging Face classes"))
    lines = [
        "# Supported models",
        "",
        "Generated by `benchmarks/survey_models.py` (do not edit by hand): one small model of every timm family",
        "(its smallest variant by parameter count) and small configs of the Hugging Face image classifiers,",
        "random weights, a batch of 2 random images (timm: at the model's default input size; Hugging Face: 224x224),",
        "run through `camloc.CAM(model)(x)` and `camloc.GradCAM(model)(x)` with camloc's defaults.",
        "",
        f"- Command: `{command}`",
        f"- Machine: {cpu_name()}, {os.cpu_count()} vCPUs; {versions()}; {datetime.date.today().isoformat()}.",
        f"- {run_note}",
        "",
        *LEGEND.strip().splitlines(),
        "",
        "## Summary",
        "",
        "| models | count | "
        + " | ".join([*(f"CAM {o}" for o in CAM_OUTCOMES), *(f"Grad-CAM {o}" for o in GRADCAM_OUTCOMES)])
        + " |",
        "|---|--:|" + "--:|" * (len(CAM_OUTCOMES) + len(GRADCAM_OUTCOMES)),
    ]
    for source, label in sources:
        rows = [r for r in records if r["source"] == source]
        cam, grad = Counter(r["cam"]["outcome"] for r in rows), Counter(r["gradcam"]["outcome"] for r in rows)
        lines.append(
            f"| {label} | {len(rows)} | "
            + " | ".join(str(cam[o]) for o in CAM_OUTCOMES)
            + " | "
            + " | ".join(str(grad[o]) for o in GRADCAM_OUTCOMES)
            + " |"
        )
    for source, label in sources:
        rows = sorted((r for r in records if r["source"] == source), key=lambda r: r["family"])
        if not rows:
            continue
        lines += [
            "",
            f"## {label}",
            "",
            "| family | model | params (M) | input | CAM | Grad-CAM | last stage "
            "| ms/img forward / CAM / Grad-CAM | why |",
            "|---|---|--:|---|---|---|---|---|---|",
        ]
        for r in rows:
            why = "; ".join(f"{k}: {r[k]['detail']}" for k in ("cam", "gradcam") if shows_detail(r[k]))
            params = f"{r['params'] / 1e6:.{1 if r['params'] >= 1e6 else 2}f}" if r.get("params") else ""
            size = "x".join(map(str, r["input"])) if r.get("input") else ""
            expected = show_grids(map(tuple, r["expected"])) if r.get("expected") else "?"
            times = " / ".join(
                ms(v) for v in (r.get("forward_ms"), r["cam"].get("ms_per_image"), r["gradcam"].get("ms_per_image"))
            )
            lines.append(
                f"| {cell(r['family'])} | `{cell(r['model'])}` | {params} | {size} | {show_outcome(r['cam'])} | "
                f"{show_outcome(r['gradcam'])} | {expected} | {times} | {cell(shorten(why))} |"
            )
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--families", default="", help="regular expression: only families it finds (e.g. '^(vit|swin)'; hf:ViT)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many models in this run")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "models.md", help="the markdown table")
    p.add_argument(
        "--results", type=Path, default=ROOT / "out" / "survey_models.jsonl", help="JSON lines, one per model"
    )
    p.add_argument("--timeout", type=float, default=300, help="seconds per model before its worker is killed")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the worker")
    p.add_argument("--fresh", action="store_true", help="forget the results file's records and start over")
    p.add_argument("--list", action="store_true", help="print the model chosen for each family, run nothing")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args.threads)
        return
    if args.list:
        for job in jobs(timm_families(), re.compile(args.families), {}):
            params = f"{job['params'] / 1e6:8.2f} M" if job.get("params") else f"{'?':>10}"
            print(f"{job['family']:<36} {job['model']:<44} {params}  ({job.get('variants', 1)} models)", flush=True)
        return
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        args.results.unlink(missing_ok=True)
    done = read_results(args.results)
    pattern = re.compile(args.families)
    start, count = time.perf_counter(), 0
    runner = Worker(args.threads, args.results.with_suffix(".log"))
    try:
        for job in jobs(timm_families(), pattern, done):
            if job.get("done"):
                continue
            if args.limit is not None and count >= args.limit:
                break
            record = runner.run(job, args.timeout)
            append(args.results, record)
            count += 1
            print(
                f"{count:4d} {record['family']:<28} {record['model']:<40} CAM {show_outcome(record['cam']):<16} "
                f"Grad-CAM {show_outcome(record['gradcam']):<12} {record.get('seconds') or 0:6.1f} s",
                flush=True,
            )
    finally:
        runner.stop()
    elapsed = time.perf_counter() - start
    records = list(read_results(args.results).values())
    total = sum(r.get("seconds") or 0 for r in records)
    command = shlex.join(["python", "benchmarks/survey_models.py", *(argv if argv is not None else sys.argv[1:])])
    note = f"{len(records)} models; the worker's time on them adds up to {total / 60:.1f} min"
    if count:
        note += f"; the last run surveyed {count} of them in {elapsed / 60:.1f} min (choosing the models included)"
    note += f", {args.threads} torch thread(s) per model."
    write_atomic(args.out, render(records, command=command, run_note=note))
    print(f"{count} models surveyed in {elapsed:.0f} s; {len(records)} in {args.results}; wrote {args.out}")


if __name__ == "__main__":
    main()
