"""`camloc faithfulness --out DIR`: the table and the JSON in the run's folder; 0.2's `--out FILE.md` the same files."""

import json

from camloc.cli import main
from tests.evaluation.test_evaluate import IDENTITY
from tests.evaluation.test_weak_labels import _objects


def test_out_is_a_folder_or_the_tables_file(tmp_path, capsys):
    data = _objects(tmp_path / "d", n=3, size=(32, 32))
    args = ["faithfulness", str(data), "--methods", "cam", "--steps", "2", *IDENTITY]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", "results.md"]
    assert main([*args, "--out", str(tmp_path / "old" / "table.md")]) == 0  # camloc 0.2's form
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["table.json", "table.md"]
    assert (tmp_path / "run" / "results.md").read_text() == (tmp_path / "old" / "table.md").read_text()
    new, old = (json.loads(p.read_text()) for p in (tmp_path / "run" / "results.json", tmp_path / "old" / "table.json"))
    assert new == old and new["methods"]["cam"]["images"] == 3
    assert "| cam | 3 |" in capsys.readouterr().out
