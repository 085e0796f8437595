"""Plain-text summaries of results, as the command line prints them."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["FAITHFULNESS_COLUMNS", "METRIC_NAMES", "format_boxes_summary", "format_summary", "format_table"]

#: Summary key -> its name in tables, in the order they are shown.
METRIC_NAMES = {
    "cls_top1": "classification top-1",
    "cls_top5": "classification top-5",
    "top1_loc": "top-1 localization",
    "top5_loc": "top-5 localization",
    "gt_known_loc": "GT-known localization",
    "max_box_acc": "MaxBoxAcc (IoU 0.5)",
    "max_box_acc_v2": "MaxBoxAccV2 (IoU .3/.5/.7)",
    "best_threshold": "best CAM threshold",
    "pxap": "PxAP",
}


def format_summary(summary: dict, title: str, *, baseline: bool = False) -> str:
    """A table of the metrics of an evaluation summary that are defined, one per line, in percent.

    Args:
        summary: ``EvalResult.summary``.
        title: the first line.
        baseline: the summary is of ``baseline="center"``: its rows that depend on the model's
            classes are left out, and its best threshold t, the centred box of (1 - t) times the
            image's sides, is shown as that fraction.

    Example:
        >>> print(format_summary({"images": 2, "cls_top1": 50.0, "max_box_acc": 50.0, "max_box_acc_v2": 40.0,
        ...     "max_box_acc_v2_per_iou": {"30": 60.0, "50": 50.0, "70": 10.0}}, "demo"))
        demo
          images                             2
          classification top-1           50.00
          MaxBoxAcc (IoU 0.5)            50.00
          MaxBoxAccV2 (IoU .3/.5/.7)     40.00
            at IoU 30 / 50 / 70          60.00 / 50.00 / 10.00
    """
    names = dict(METRIC_NAMES)
    if baseline:
        for key in ("cls_top1", "cls_top5", "top1_loc", "top5_loc"):
            del names[key]
        if summary.get("best_threshold") is not None:
            names["best_threshold"] = "best box side (of the image)"
            summary = {**summary, "best_threshold": 1.0 - summary["best_threshold"]}
    lines = [title, f"  {'images':<28}{summary['images']:>8}"]
    per_iou = summary.get("max_box_acc_v2_per_iou")
    for key, name in names.items():
        value = summary.get(key)
        if value is not None:
            lines.append(f"  {name:<28}{value:>8.2f}")
        if key == "max_box_acc_v2" and per_iou:
            lines.append(
                f"  {'  at IoU 30 / 50 / 70':<28}{per_iou['30']:>8.2f} / {per_iou['50']:.2f} / {per_iou['70']:.2f}"
            )
    calibrated = summary.get("calibrated")
    if calibrated and calibrated.get("box_acc") is not None:
        lines += _calibrated_lines(calibrated, baseline)
    return "\n".join(lines)


def _calibrated_lines(calibrated: dict, baseline: bool) -> list[str]:
    """The test accuracies at thresholds chosen on validation images (``evaluation.evaluate.calibrate``)."""
    tau = calibrated["thresholds"]["v1_50"]
    chosen = f"box side {1.0 - tau:.2f}" if baseline else f"threshold {tau:.2f}"
    lines = [
        f"  thresholds chosen on {calibrated['images']} validation images:",
        f"  {'  BoxAcc (IoU 0.5)':<28}{calibrated['box_acc']:>8.2f}   ({chosen})",
    ]
    per_iou = calibrated.get("box_acc_v2_per_iou")
    if per_iou:
        lines.append(f"  {'  BoxAccV2 (IoU .3/.5/.7)':<28}{calibrated['box_acc_v2']:>8.2f}")
        lines.append(
            f"  {'    at IoU 30 / 50 / 70':<28}{per_iou['30']:>8.2f} / {per_iou['50']:.2f} / {per_iou['70']:.2f}"
        )
    return lines


def format_boxes_summary(summary: dict, title: str) -> str:
    """The counts of a ``boxes`` run and, where the ground truth was known, its quality in percent.

    Example:
        >>> print(format_boxes_summary({"images": 4, "images_with_boxes": 3, "boxes": 5, "gt_images": 4,
        ...     "corloc": 75.0, "ap": 30.5, "ap50": 70.0, "ap75": None}, "demo"))
        demo
          images                             4
          images with boxes                  3
          boxes                              5
          images with ground truth           4
          CorLoc (top box, IoU 0.5)      75.00
          COCO AP (IoU .50:.95)          30.50
          COCO AP50                      70.00
    """
    lines = [title]
    for key, name in (("images", "images"), ("images_with_boxes", "images with boxes"), ("boxes", "boxes")):
        lines.append(f"  {name:<28}{summary[key]:>8}")
    if summary.get("gt_images"):
        lines.append(f"  {'images with ground truth':<28}{summary['gt_images']:>8}")
    if summary.get("corloc_verdicts", 0) > summary.get("gt_images", 0):  # images labelled with several classes
        lines.append(f"  {'(image, class) pairs judged':<28}{summary['corloc_verdicts']:>8}")
    names = {
        "corloc": "CorLoc (top box, IoU 0.5)",
        "ap": "COCO AP (IoU .50:.95)",
        "ap50": "COCO AP50",
        "ap75": "COCO AP75",
    }
    lines += [f"  {name:<28}{summary[key]:>8.2f}" for key, name in names.items() if summary.get(key) is not None]
    return "\n".join(lines)


#: Faithfulness summary key -> its column in :func:`format_table` and its number format.
FAITHFULNESS_COLUMNS = (
    ("deletion_auc", "Deletion AUC (lower is better)", "{:.4f}"),
    ("insertion_auc", "Insertion AUC (higher is better)", "{:.4f}"),
    ("average_drop", "Average drop % (lower is better)", "{:.2f}"),
    ("increase_in_confidence", "Increase in confidence % (higher is better)", "{:.2f}"),
)


def format_table(summary: Mapping[str, Mapping], title: str | None = None) -> str:
    """A markdown table of a faithfulness summary (``FaithfulnessResult.summary``), one row per method."""
    lines = [f"{title}", ""] if title else []
    lines.append("| Method | Images | " + " | ".join(name for _, name, _ in FAITHFULNESS_COLUMNS) + " |")
    lines.append("|---|---:|" + "---:|" * len(FAITHFULNESS_COLUMNS))
    for method, row in summary.items():
        cells = ["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in FAITHFULNESS_COLUMNS]
        lines.append(f"| {method} | {row.get('images', 0)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
