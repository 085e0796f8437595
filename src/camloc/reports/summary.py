"""Plain-text summaries of results, as the command line prints them."""

from __future__ import annotations

__all__ = ["format_summary"]

_NAMES = {
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
        baseline: the summary is of ``baseline="center"``, whose best threshold t is the centred box
            of (1 - t) times the image's sides: it is shown as that fraction.
    """
    names = dict(_NAMES)
    if baseline and summary.get("best_threshold") is not None:
        names["best_threshold"] = "best box side (of the image)"
        summary = {**summary, "best_threshold": 1.0 - summary["best_threshold"]}
    lines = [title, f"  {'images':<28}{summary['images']:>8}"]
    for key, name in names.items():
        value = summary.get(key)
        if value is not None:
            lines.append(f"  {name:<28}{value:>8.2f}")
    per_iou = summary.get("max_box_acc_v2_per_iou")
    if per_iou:
        lines.append(f"  {'  at IoU 30 / 50 / 70':<28}" + " / ".join(f"{per_iou[k]:.2f}" for k in ("30", "50", "70")))
    return "\n".join(lines)
