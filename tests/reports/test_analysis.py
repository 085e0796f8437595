"""Failure kinds and per-image records read back from a journal, in the frame the protocol judged the box in."""

from pathlib import Path

import pytest

from camloc.datasets.base import Dataset, Sample
from camloc.errors import DatasetError
from camloc.evaluation.journal import Journal, read_results
from camloc.evaluation.protocols import ImageResult
from camloc.metrics.localization import ImageOutcome
from camloc.reports.analysis import box_failure, read_records


@pytest.mark.parametrize(
    "box, truths, kind",
    [
        ((0, 0, 9, 9), [(0, 0, 9, 19)], None),  # IoU exactly 0.5: localized
        ((0, 0, 9, 9), [(0, 0, 9, 20)], "too_small"),  # IoU 100 / 210; all of the box on the object
        ((0, 0, 19, 19), [(5, 5, 14, 14)], "too_large"),  # holds it; 25 % of the box on it
        ((0, 0, 9, 9), [(6, 0, 25, 9)], "elsewhere"),  # 40 shared pixels: 40 % of the box, 20 % of the truth
        ((0, 0, 9, 9), [(4, 0, 23, 9)], "too_small"),  # 60 shared: 60 % of the box on it, covers 30 %
        (None, [(0, 0, 9, 9)], "elsewhere"),  # no box at all
        ((0, 0, 9, 9), [], "elsewhere"),  # no ground truth
        ((0, 0, 49, 49), [(60, 60, 70, 70), (0, 0, 9, 9)], "too_large"),  # judged against the box it shares most with
    ],
)
def test_box_failures(box, truths, kind):
    assert box_failure(box, truths) == kind


def _journal(path: Path, protocol: str, results: list[ImageResult]) -> Path:
    with Journal(path, {"protocol": protocol, "size": 224, "step": 0.5, "threshold": 0.2}) as journal:
        for r in results:
            journal.write(r)
    return path


def _result(image_id: str, box, iou: float, top1: bool = True) -> ImageResult:
    outcome = ImageOutcome(top1, True, iou >= 0.5, curves={"v1_50": [True, False]})
    return ImageResult(image_id, f"images/{image_id}", 3, [3 if top1 else 4, 3], iou, box, outcome)


def test_records_judge_boxes_in_the_protocols_frame(tmp_path):
    # a 448 x 224 photo whose object is its left quarter; the protocol's box is the whole 224 x 224 square
    sample = Sample("a.png", tmp_path / "a.png", 3, ((0, 0, 111, 223),), (448, 224))
    unread = Sample("b.png", tmp_path / "b.png", 3, ((0, 0, 9, 9),), (20, 20))
    dataset = Dataset("d", "csv", tmp_path, [sample, unread], None)
    results = [_result("a.png", (0, 0, 223, 223), 0.25), ImageResult("b.png", "images/b.png", 3, error="broken")]
    settings, records = read_records(_journal(tmp_path / "wsol.csv", "wsol", results), dataset)
    assert settings["protocol"] == "wsol" and [r.line for r in records] == [2, 3]
    # squashed to 224 x 224 the object is (0, 0, 55, 223): a box four times its size
    assert records[0].truths == ((0, 0, 55, 223),) and records[0].failure == "too_large"
    assert records[1].result.outcome is None and records[1].failure is None
    # the authors' protocol judges boxes in the photo's own pixels, where the same box is half on the object
    _, records = read_records(_journal(tmp_path / "authors.csv", "authors", results), dataset)
    assert records[0].truths == ((0, 0, 111, 223),) and records[0].failure is None


def test_rows_read_back_as_written_and_a_cut_row_is_left_out(tmp_path):
    path = _journal(tmp_path / "rows.csv", "wsol", [_result("a.png", (1, 2, 3, 4), 0.75, top1=False)])
    with open(path, "a") as f:
        f.write("b.png,images/b.png,3,3 1")  # a row cut off by a kill: no newline
    settings, rows = read_results(path)
    assert len(rows) == 1 and rows[0][0] == 2
    result = rows[0][1]
    assert (result.box, result.iou, result.top5, result.outcome.cls_top1) == ((1, 2, 3, 4), 0.75, [4, 3], False)
    assert list(result.outcome.curves["v1_50"]) == [True, False]
    other = Dataset("d", "csv", tmp_path, [], None)
    with pytest.raises(DatasetError, match="1 image\\(s\\) of this file are not in the dataset"):
        read_records(path, other)
    (tmp_path / "x.csv").write_text("image_id,path\n")
    with pytest.raises(DatasetError, match="x.csv.json: missing; it holds the settings of x.csv's run"):
        read_results(tmp_path / "x.csv")
