"""The printed summary: MaxBoxAccV2's per-IoU line beside it; a fixed-box baseline shows no class rows."""

from camloc.reports.summary import format_summary

SUMMARY = {
    "images": 4, "cls_top1": 75.0, "cls_top5": 100.0, "top1_loc": 25.0, "top5_loc": 50.0, "gt_known_loc": 50.0,
    "max_box_acc": 50.0, "max_box_acc_v2": 40.0, "max_box_acc_v2_per_iou": {"30": 75.0, "50": 50.0, "70": 0.0},
    "best_threshold": 0.25, "pxap": None,
}  # fmt: skip


def test_per_iou_line_follows_max_box_acc_v2():
    lines = format_summary(SUMMARY, "t").splitlines()
    v2 = next(i for i, line in enumerate(lines) if "MaxBoxAccV2" in line)
    assert lines[v2 + 1].split() == ["at", "IoU", "30", "/", "50", "/", "70", "75.00", "/", "50.00", "/", "0.00"]
    assert "best CAM threshold" in lines[v2 + 2] and lines[v2 + 2].endswith("0.25")


def test_the_centred_box_baseline_prints_no_classification_rows():
    text = format_summary(SUMMARY, "t", baseline=True)
    assert "classification" not in text and "top-1 localization" not in text and "top-5 localization" not in text
    assert "GT-known localization" in text and "best box side (of the image)" in text and text.endswith("0.75")
