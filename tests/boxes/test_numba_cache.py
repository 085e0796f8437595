"""The compiled box kernels run where numba can cache nowhere of its own (a read-only install, no writable home)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camloc.boxes.sweep import numba_cache_dir

SRC = Path(__file__).resolve().parents[2] / "src"
RUN = """
import numpy as np
from camloc.boxes.sweep import wsol_best_ious
gray = np.zeros((8, 8), np.uint8)
gray[2:5, 3:6] = 200
v1, v2 = wsol_best_ious(gray, np.array([0, 100]), np.array([[3, 2, 5, 4]]))
print(v1.tolist(), v2.tolist())
"""


def test_a_user_with_nowhere_to_write_gets_a_cache_folder_in_the_temp_folder(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nothing can be made under a file, whoever runs the test (root included)
    writable = tmp_path / "cache"
    uid = os.getuid()
    assert numba_cache_dir(str(blocked / "src"), str(blocked / "home"), "/t") == f"/t/camloc-numba-{uid}"
    assert numba_cache_dir(str(writable), str(blocked / "home"), "/t") is None  # beside the source: numba's own
    assert numba_cache_dir(str(blocked / "src"), str(writable), "/t") is None  # the user's cache: numba's own


@pytest.mark.slow
def test_kernels_compile_and_cache_with_an_unwritable_source_folder_and_home(tmp_path):
    """The state of a read-only install run by a user without a home, made real for root too."""
    copy = tmp_path / "site"
    shutil.copytree(SRC / "camloc", copy / "camloc", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "camloc" / "boxes" / "__pycache__").write_text("")  # numba cannot cache beside the source
    (tmp_path / "home").write_text("")  # nor in the user's cache folder
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "PYTHONPATH": str(copy),
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "home" / "cache"),
        "TMPDIR": str(temp),
    }
    here = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, check=True).stdout.strip()
    for _ in range(2):  # the second run loads what the first cached
        result = subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == here
    cached = list((temp / f"camloc-numba-{os.getuid()}").rglob("*.nbi"))
    assert cached, "no kernel was cached in the temp folder"
