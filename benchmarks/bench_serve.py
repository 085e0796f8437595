"""`camloc serve`: one explain request against the CLI's per-image work; `camloc report` on the 725-image evaluation.

    .venv/bin/python benchmarks/bench_serve.py [--repeats 30] [--threads 2] [--results DIR] [--json FILE]

1. Explain latency. A `camloc serve` process (MobileNetV2, CPU, --threads torch threads like this
   process) and this process alternate, one request at a time: a POST of a 500x375 ILSVRC JPEG to
   /api/explain (top-5, CAM, whole photo), timed from the client until its JSON is parsed; and the
   same work through the library as `camloc explain` does it per image (read, preprocess, forward,
   top-5 maps in the image's pixels, paper boxes; `camloc.evaluation.explain.explain` without grids
   or JSON). Medians and their ratio (target <= 1.3). The CLI's own per-image cost with its PNG
   grid is measured too, as the difference between `camloc explain` runs over 11 and 1 copies.
2. Report time. `camloc evaluate ../shared/data/imagenet-val-boxes --per-image rows.csv` (or the
   results in --results DIR), then `camloc report` on it, end to end in a fresh process (start-up,
   model load, 725 rows, the galleries' maps, HTML), and in this process with the model loaded.
   Then reading and sorting 50,750 rows (the 725 repeated 70 times): what grows with the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from bench_cam import cpu_jiffies, cpu_name, foreign_cpu_s

import camloc
from camloc.datasets import open_dataset
from camloc.evaluation.explain import explain
from camloc.evaluation.journal import read_results
from camloc.reports.analysis import ImageRecord, choose_galleries, per_class
from camloc.reports.html import write_report
from camloc.runtime import keep_freed_memory

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-val-boxes"
PHOTO = DATA / "images" / "ILSVRC2012_val_00004646.JPEG"  # 500 x 375


def start_server() -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "camloc", "serve", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)  # OMP_NUM_THREADS: as set in main()
    line = server.stdout.readline()
    if not line.startswith("camloc: serving"):
        server.kill()
        raise RuntimeError(f"camloc serve did not start: {line!r}")
    return server, line.split(" on ", 1)[1].split()[0]


def request(client: httpx.Client, url: str, data: bytes) -> float:
    start = time.perf_counter()
    answer = client.post(url + "api/explain", files={"image": (PHOTO.name, data)}, data={"topk": "5"}).json()
    assert len(answer["predictions"]) == 5, answer
    return time.perf_counter() - start


def library(method, info, preprocess) -> float:
    start = time.perf_counter()
    explain([PHOTO], method, info, topk=5, preprocess=preprocess, progress=False)
    return time.perf_counter() - start


def cli_explain(copies: int, out: Path) -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "camloc", "explain", *[str(PHOTO)] * copies, "--out", str(out), "--topk", "5"]
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def process_cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def latency(repeats: int) -> dict:
    model = camloc.load_model("mobilenet_v2")
    info = camloc.model_info(model)
    full = info.preprocess.with_mode("full")
    method = camloc.CAM(model)
    data = PHOTO.read_bytes()
    server, url = start_server()
    try:
        with httpx.Client(timeout=120) as client:
            for _ in range(3):  # warm-up: first calls, allocator, fx tracing
                request(client, url, data)
                library(method, info, full)
            served, direct = [], []
            start, server_cpu, wall = cpu_jiffies(), process_cpu_s(server.pid), time.perf_counter()
            for _ in range(repeats):
                served.append(request(client, url, data))
                direct.append(library(method, info, full))
            foreign = foreign_cpu_s(start, cpu_jiffies())
            server_cpu = process_cpu_s(server.pid) - server_cpu
            wall = time.perf_counter() - wall
    finally:
        server.terminate()
        server.wait()
    with tempfile.TemporaryDirectory() as scratch:
        one = min(cli_explain(1, Path(scratch) / "a") for _ in range(2))
        eleven = min(cli_explain(11, Path(scratch) / "b") for _ in range(2))
    result = {
        "request_s": statistics.median(served),
        "request_min_max_s": [min(served), max(served)],
        "library_s": statistics.median(direct),
        "library_min_max_s": [min(direct), max(direct)],
        "cli_with_grid_s": (eleven - one) / 10,
        "timed_s": wall,
        "other_cpu_s": None if foreign is None else max(0.0, foreign[0] - server_cpu),
    }
    result["ratio"] = result["request_s"] / result["library_s"]
    return result


def report_times(results_dir: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if results_dir is None:
            results_dir = work
            command = [sys.executable, "-m", "camloc", "evaluate", str(DATA), "--per-image", str(work / "rows.csv")]
            subprocess.run([*command, "--json", str(work / "results.json")], check=True, capture_output=True)
        results, rows = results_dir / "results.json", results_dir / "rows.csv"
        start = time.perf_counter()
        command = [sys.executable, "-m", "camloc", "report", str(results), "--per-image", str(rows)]
        subprocess.run([*command, "--out", str(work / "cli.html"), "--model", "mobilenet_v2"], check=True)
        cli = time.perf_counter() - start

        model = camloc.load_model("mobilenet_v2")
        dataset = open_dataset(DATA)
        start = time.perf_counter()
        report = write_report(
            results, work / "lib.html", per_image=rows, dataset=dataset, method=camloc.CAM(model),
            preprocess=camloc.model_info(model).preprocess, class_names=dataset.class_names,
        )  # fmt: skip
        in_process = time.perf_counter() - start

        many = work / "many.csv"
        lines = rows.read_text().splitlines(keepends=True)
        many.with_name("many.csv.json").write_bytes(rows.with_name(rows.name + ".json").read_bytes())  # settings
        with open(many, "w") as f:
            f.writelines(lines[:1])  # the column names
            for k in range(70):
                f.writelines(f"{k}/{line}" for line in lines[1:])
        start = time.perf_counter()
        _, read = read_results(many)
        records = [ImageRecord.of(line, r, ()) for line, r in read]
        choose_galleries(records, 8)
        per_class(records)
        scaling = time.perf_counter() - start
        return {
            "report_cli_s": cli,
            "report_in_process_s": in_process,
            "report_mb": report.bytes / 1e6,
            "pictures": sum(report.galleries.values()),
            "rows_50750_s": scaling,
            "rows_50750": len(records),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, help="a folder with results.json and rows.csv of the 725 images")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the same for the server and the CLI runs
    keep_freed_memory()
    print(f"{cpu_name()}, {os.cpu_count()} CPUs | torch threads {args.threads}")
    out = {"latency": latency(args.repeats), "report": report_times(args.results)}
    lat, rep = out["latency"], out["report"]
    print(
        f"explain request (HTTP, 500x375 JPEG, top-5): median {lat['request_s'] * 1000:.0f} ms "
        f"({lat['request_min_max_s'][0] * 1000:.0f}-{lat['request_min_max_s'][1] * 1000:.0f})"
    )
    print(
        f"same work through the library:            median {lat['library_s'] * 1000:.0f} ms "
        f"({lat['library_min_max_s'][0] * 1000:.0f}-{lat['library_min_max_s'][1] * 1000:.0f})"
    )
    print(
        f"ratio {lat['ratio']:.2f} (target <= 1.3); camloc explain per image with its PNG grid: "
        f"{lat['cli_with_grid_s'] * 1000:.0f} ms"
    )
    if lat["other_cpu_s"] is not None:
        print(f"other processes used {lat['other_cpu_s']:.1f} CPU-s in the {lat['timed_s']:.1f} s of timed requests")
    print(
        f"camloc report, 725 images: {rep['report_cli_s']:.1f} s end to end, {rep['report_in_process_s']:.1f} s "
        f"with the model loaded; {rep['report_mb']:.2f} MB, {rep['pictures']} gallery pictures"
    )
    print(f"reading + analysing {rep['rows_50750']} rows: {rep['rows_50750_s']:.1f} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
