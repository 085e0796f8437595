"""Where the shared data lives: ``../shared/data`` beside the repository (never copied into it)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
VAL_BOXES = SHARED_DATA / "imagenet-val-boxes"
CUB_50 = SHARED_DATA / "cub-200-2011-50"
