"""The per-image file as CSV readers see it: docs/per-image.md's pandas example gives the metrics' own curve."""

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

from camloc.evaluation.journal import COLUMNS, Journal, read_results
from camloc.evaluation.protocols import CURVES, ImageResult
from camloc.metrics.localization import ImageOutcome, LocalizationMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "per-image.md"
THRESHOLDS = np.arange(0, 1, 0.01)


def _results() -> list[ImageResult]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(9):
        if i == 4:
            out.append(ImageResult(f"im{i}", f"images/im{i}, copy.png", 2, error="not a readable image"))
            continue
        # image 0 hits at no threshold: its bitmask is digits only ("0000..."), which pandas would read as a number
        curves = {c: (rng.random(len(THRESHOLDS)) < 0.5) & (i != 0) for c in CURVES}
        outcome = ImageOutcome(i % 2 == 0, True, i % 3 == 0, i % 3 == 0, True, curves=curves)
        out.append(ImageResult(f"im{i}", f"images/im{i}, copy.png", 2, [2, 1, 0, 3, 4], 0.5, (1, 2, 30, 40), outcome))
    return out


def test_the_docs_pandas_example_reads_the_curves_the_metrics_count(tmp_path, monkeypatch, capsys):
    results = _results()
    with Journal(tmp_path / "rows.csv", {"protocol": "wsol", "step": 0.01, "size": 224, "threshold": 0.2}) as j:
        for r in results:
            j.write(r)
    metrics = LocalizationMetrics(THRESHOLDS)
    for r in results:
        if r.outcome is not None:
            metrics.update(r.outcome)
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    assert scope["curve"].tolist() == metrics.accuracy_curves()["v1_50"]
    summary = metrics.compute()
    assert capsys.readouterr().out == (
        f"MaxBoxAcc {summary['max_box_acc']:.2f} at CAM threshold {summary['best_threshold']:.2f}\n"
    )
    assert scope["rows"]["v1_50"][0] == "0" * 26


def test_csv_readers_get_the_columns_and_the_values_read_results_decodes(tmp_path):
    results = _results()
    path = tmp_path / "rows.csv"
    with Journal(path, {"protocol": "wsol", "step": 0.01}) as j:
        for r in results:
            j.write(r)
    assert b"\r" not in path.read_bytes()
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == COLUMNS and frame.to_dict("records") == rows
    assert rows[1]["path"] == "images/im1, copy.png" and rows[1]["box"] == "1 2 30 40" and rows[4]["error"]
    settings, decoded = read_results(path)
    assert settings == {"protocol": "wsol", "step": 0.01}
    assert [line for line, _ in decoded] == list(range(2, 11))  # line 1: the column names
    for (_, got), want in zip(decoded, results, strict=True):
        assert (got.image_id, got.path, got.box, got.top5, got.error) == (want.image_id, want.path, want.box,
                                                                          want.top5, want.error)  # fmt: skip
        if want.outcome is not None:
            for c in CURVES:
                assert np.array_equal(got.outcome.curves[c], want.outcome.curves[c])
