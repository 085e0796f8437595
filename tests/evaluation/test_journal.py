"""The line journal of long runs: settings checked at once, a cut last line dropped, lines streamed."""

import json

import pytest

from camloc.errors import ResumeError
from camloc.evaluation import journal
from camloc.evaluation.journal import LineJournal, journal_lines


def _journal(path, records):
    with LineJournal(path, "boxes", {"rule": "paper"}) as j:
        for r in records:
            j.write(r)
    return path


@pytest.mark.parametrize("block", [1 << 16, 7])  # 7 bytes: the cut line is found across several blocks
def test_a_cut_last_line_is_dropped_from_the_file_and_the_rest_streamed(tmp_path, block):
    path = _journal(tmp_path / "j.jsonl", [{"i": i, "p": "x" * 40} for i in range(3)])
    whole = path.read_text()
    path.write_text(whole + '{"i": 3, "p": "xxxxxxxxxxxxxxxxxxxxxxxxxx')  # killed mid-line
    journal._drop_cut_line(path, block)
    assert path.read_text() == whole
    path.write_text(whole + '{"i": 3, "p": "xx')
    lines = journal_lines(path, "boxes", {"rule": "paper"})
    assert path.read_text() == whole  # dropped by the call itself
    assert not isinstance(lines, list)  # read as asked for
    assert [json.loads(line)["i"] for line in lines] == [0, 1, 2]


def test_only_the_header_left(tmp_path):
    path = _journal(tmp_path / "j.jsonl", [])
    header = path.read_text()
    path.write_text(header + '{"i": 0')
    assert list(journal_lines(path, "boxes", {"rule": "paper"})) == []
    assert path.read_text() == header


def test_other_settings_or_another_kind_are_refused_at_once(tmp_path):
    path = _journal(tmp_path / "j.jsonl", [{"i": 0}])
    other = r"j.jsonl:1: written by a run with other settings \{'rule': \('paper', 'all'\)"
    with pytest.raises(ResumeError, match=other):
        journal_lines(path, "boxes", {"rule": "all"})  # raised by the call, not when the lines are read
    with pytest.raises(ResumeError, match="j.jsonl:1: not a camloc evaluate per-image file"):
        journal_lines(path, "evaluate", {"rule": "paper"})
