"""The run harness: journals (settings checked at once, a cut last line dropped, lines streamed), resume, merge."""

import csv
import json
from types import SimpleNamespace

import pytest

from camloc.distributed import World
from camloc.errors import ResumeError
from camloc.evaluation import run
from camloc.evaluation.run import LineJournal, Run, journal_lines


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
    run._drop_cut_line(path, block)
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


COLUMNS = ["image_id", "score", "note"]
NOTE = 'a, "quoted"\nnote'  # quoted by the csv module, over two lines
ROWS = [{"image_id": f"im{i}", "score": f"{i / 4:.2f}", "note": NOTE if i == 2 else ""} for i in range(7)]


def _write(path, records, *, columns=COLUMNS, where=None, settings=None):
    with Run(path, "evaluate", settings or {"step": 0.5}, columns=columns, where=where) as journal:
        for r in records:
            journal.write(r)
        journal.flush()
    return path


def test_a_csv_journal_is_plain_csv_with_its_settings_beside_it(tmp_path):
    import pandas

    path = _write(tmp_path / "rows.csv", ROWS)
    assert b"\r\n" not in path.read_bytes()
    assert path.read_text().startswith("image_id,score,note\n")
    assert json.loads((tmp_path / "rows.csv.json").read_text()) == {"camloc": "evaluate", "settings": {"step": 0.5}}
    with open(path, newline="") as f:
        assert list(csv.DictReader(f)) == ROWS
    frame = pandas.read_csv(path, keep_default_na=False, dtype=str)
    assert list(frame.columns) == COLUMNS and frame.to_dict("records") == ROWS


def test_resume_reads_back_the_rows_and_drops_a_cut_one(tmp_path):
    path = _write(tmp_path / "rows.csv", ROWS[:3])
    whole = path.read_bytes()
    path.write_bytes(whole + b"im3,0.7")  # killed mid-row
    with pytest.raises(FileExistsError, match="rows.csv: exists; pass resume=True to continue that run, or remove it"):
        Run(path, "evaluate", {"step": 0.5}, columns=COLUMNS)
    again = Run(path, "evaluate", {"step": 0.5}, columns=COLUMNS, resume=True)
    assert list(again.done()) == ROWS[:3] and path.read_bytes() == whole
    with again:
        for r in ROWS[3:]:
            again.write(r)
    assert path.read_bytes() == _write(tmp_path / "one.csv", ROWS).read_bytes()
    other = r"rows.csv.json: written by a run with other settings \{'step': \(0.5, 0.1\)"
    with pytest.raises(ResumeError, match=other):
        Run(path, "evaluate", {"step": 0.1}, columns=COLUMNS, resume=True).done()
    (tmp_path / "rows.csv.json").unlink()
    with pytest.raises(ResumeError, match="rows.csv.json: missing; it holds the settings of rows.csv's run"):
        Run(path, "evaluate", {"step": 0.5}, columns=COLUMNS, resume=True).done()


def test_a_csv_journal_of_camloc_0_2_resumes_and_is_converted(tmp_path):
    one = _write(tmp_path / "one.csv", ROWS)
    old = tmp_path / "old.csv"  # 0.2's form: the settings line, then CRLF rows (the csv module's default)
    with open(old, "w", newline="") as f:
        f.write('# camloc evaluate {"step": 0.5}\n')
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(ROWS[:4])
        f.write("im4,1.")  # and cut off
    with pytest.raises(ResumeError, match=r"old.csv:1: written by a run with other settings"):
        Run(old, "evaluate", {"step": 0.1}, columns=COLUMNS, resume=True).done()
    again = Run(old, "evaluate", {"step": 0.5}, columns=COLUMNS, resume=True)
    assert list(again.done()) == ROWS[:4]
    with again:
        for r in ROWS[4:]:
            again.write(r)
    assert old.read_bytes() == one.read_bytes()
    assert (tmp_path / "old.csv.json").read_text() == (tmp_path / "one.csv.json").read_text()


@pytest.mark.parametrize("columns", [COLUMNS, None], ids=["csv", "json-lines"])
def test_two_ranks_files_merge_into_one_process_file(tmp_path, columns):
    records = ROWS if columns else [{"i": i, "name": r["note"] or r["image_id"]} for i, r in enumerate(ROWS)]
    key = (lambda r: int(r["image_id"][2:])) if columns else (lambda r: r["i"])
    one = _write(tmp_path / "one" / "rows", records, columns=columns)
    path = tmp_path / "two" / "rows"
    for rank in (0, 1):
        _write(path, records[rank::2], columns=columns, where=World(rank, 2))
    assert sorted(p.name for p in path.parent.iterdir()) == (
        ["rows.rank0-of-2", "rows.rank0-of-2.json", "rows.rank1-of-2", "rows.rank1-of-2.json"]
        if columns
        else ["rows.rank0-of-2", "rows.rank1-of-2"]
    )
    run = Run(path, "evaluate", {"step": 0.5}, columns=columns, resume=True, where=World(0, 2))
    run.merge(key, expected=len(records))
    assert sorted(p.name for p in path.parent.iterdir()) == (["rows", "rows.json"] if columns else ["rows"])
    assert path.read_bytes() == one.read_bytes()
    if columns:
        assert (path.parent / "rows.json").read_bytes() == (one.parent / "rows.json").read_bytes()
    assert list(run.records()) == records


def test_a_merge_refuses_ranks_out_of_order_or_incomplete(tmp_path):
    path = tmp_path / "rows.csv"
    _write(path, [ROWS[2], ROWS[0]], where=World(0, 2))
    _write(path, [ROWS[1], ROWS[3]], where=World(1, 2))
    run = Run(path, "evaluate", {"step": 0.5}, columns=COLUMNS, resume=True, where=World(0, 2))
    with pytest.raises(ResumeError, match=r"rows.csv.rank0-of-2: its records are not rank 0's images in the run's"):
        run.merge(lambda r: int(r["image_id"][2:]))
    assert not path.exists() and not (tmp_path / "rows.csv.json").exists()  # nothing half-merged
    path.with_name("rows.csv.rank0-of-2").unlink()
    _write(path, [ROWS[0], ROWS[2]], where=World(0, 2))
    with pytest.raises(ResumeError, match="rows.csv: the ranks' journals record 4 images of 5"):
        run.merge(lambda r: int(r["image_id"][2:]), expected=5)
    run.merge(lambda r: int(r["image_id"][2:]), expected=4)
    assert list(run.records()) == ROWS[:4]


def test_maps_on_a_gpu_are_resized_there_by_the_protocols_that_resize_to_a_square(monkeypatch):
    import torch

    from camloc.evaluation import protocols

    calls = []
    monkeypatch.setattr(protocols, "wsol_resized_batch", lambda maps, size: calls.append(size) or "resized")
    on_gpu = SimpleNamespace(device=torch.device("cuda", 0))  # the protocol looks at the device only
    on_cpu = torch.zeros(2, 7, 7)
    for name in ("wsol", "paper"):
        plan = protocols.make_protocol(name, step=0.5, threshold=0.2, size=64)
        assert plan.gpu_resize(on_cpu) is on_cpu  # judge resizes on the CPU, as 0.2 did
        assert plan.gpu_resize(on_gpu) == "resized"
    authors = protocols.make_protocol("authors", step=0.5, threshold=0.2, size=64)
    assert authors.gpu_resize(on_gpu) is on_gpu  # its maps are resized to each image, not to a square
    assert calls == [(64, 64), (64, 64)]


def test_resume_says_what_it_continues_from_and_when_there_is_nothing_to_continue(tmp_path, caplog):
    caplog.set_level("INFO", logger="camloc.evaluation.run")
    path = _write(tmp_path / "rows.csv", ROWS[:3])
    assert list(Run(path, "evaluate", {"step": 0.5}, columns=COLUMNS, resume=True).done()) == ROWS[:3]
    assert [r.getMessage() for r in caplog.records] == [f"{path}: resumed after 3 record(s) already done"]
    caplog.clear()
    missing = tmp_path / "none.csv"
    assert list(Run(missing, "evaluate", {"step": 0.5}, columns=COLUMNS, resume=True).done()) == []
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"{missing}: no journal to resume; starting afresh")
    ]
    caplog.clear()
    assert list(Run(missing, "evaluate", {"step": 0.5}, columns=COLUMNS).done()) == []  # no resume asked: quiet
    assert caplog.records == []
