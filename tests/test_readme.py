"""The README's Python example runs as written (on scikit-image's cat photo) and its comments hold."""

import re
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from camloc.reports.figures import save_image

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.pretrained
def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"## Python\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    save_image(data.chelsea(), tmp_path / "cat.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert tuple(scope["x"].shape) == (3, 256, 384) and tuple(scope["out"].raw.shape) == (1, 5, 8, 12)
    assert tuple(scope["out"].maps.shape) == (1, 5, 256, 384) and tuple(scope["maps"].shape) == (5, 300, 451)
    for shape in ("Tensor[3, 256, 384]", "Tensor[1, 5, 8, 12]", "Tensor[1, 5, 256, 384]", "Tensor[5, 300, 451]"):
        assert shape in code
    printed = capsys.readouterr().out
    assert printed.startswith("Egyptian cat ") and str(scope["box"]) in printed
    with Image.open(tmp_path / "cat-cam.png") as im:
        assert im.size == (451, 300)
