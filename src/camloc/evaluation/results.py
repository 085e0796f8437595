"""Readers of finished runs' results: what a results file records, for a later run to take up.

:func:`threshold_from` reads the threshold (and its rule) of ``evaluate --protocol wsol``'s results
JSON or of a ``boxes`` run's ``summary.json``, for ``camloc boxes --threshold-from``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..boxes.rules import BOX_RULES
from ..errors import InvalidArgument

__all__ = ["threshold_from"]


def threshold_from(path: str | os.PathLike) -> tuple[float, str]:
    """``(threshold, rule)`` recorded in a results file.

    ``evaluate --protocol wsol``'s results JSON gives its best threshold (MaxBoxAcc's) with the rule
    it was found with, ``wsol``; the ``summary.json`` of a ``boxes`` run gives its rule and threshold.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgument("threshold_from", f"threshold_from={path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidArgument("threshold_from", f"threshold_from={path}: not a JSON file") from None
    if isinstance(data, dict) and data.get("protocol") == "wsol" and isinstance(data.get("best_threshold"), float):
        return data["best_threshold"], "wsol"
    settings = data.get("settings") if isinstance(data, dict) else None
    if isinstance(settings, dict) and settings.get("rule") in BOX_RULES and "threshold" in settings:
        return float(settings["threshold"]), settings["rule"]
    raise InvalidArgument(
        "threshold_from",
        f"threshold_from={path}: holds no threshold (expected camloc evaluate --protocol wsol's results JSON, "
        "or the summary.json of camloc boxes)",
    )
