"""`camloc report` and `evaluate --report`: what the page holds, read back from the HTML, and its errors."""

import contextlib
import html
import io
import json
import re

import pytest

from camloc.cli import main
from camloc.datasets import open_dataset
from camloc.datasets.synthetic import generate
from camloc.evaluation.journal import read_results
from camloc.reports.analysis import GALLERIES, choose_galleries, read_records

# A small GAP net with fixed random weights: its maps and boxes are arbitrary, which gives every gallery work.
FACTORY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 8),
    )
"""


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """24 generated images evaluated by `camloc evaluate --per-image --report` with a small net."""
    root = tmp_path_factory.mktemp("report")
    _, test = generate(root / "shapes", "shapes", train=1, test=24, seed=2)
    factory = root / "net.py"
    factory.write_text(FACTORY)
    out = root / "out"
    args = ["evaluate", str(root / "shapes" / "test"), "--model", f"{factory}:build", "--size", "64"]
    args += ["--json", str(out / "results.json"), "--per-image", str(out / "rows.csv"), "--report", str(out / "r.html")]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    return {"data": test.root, "factory": factory, "out": out, "printed": printed.getvalue()}


def _gallery_ids(page: str) -> dict[str, list[str]]:
    """Each gallery's image ids, in the order the page shows them."""
    found = {}
    for key, body in re.findall(r'<section class="gallery" id="gallery-(\w+)">(.*?)</section>', page, re.S):
        found[key] = [html.unescape(i) for i in re.findall(r'<span class="id">([^<]*)</span>', body)]
    return found


def test_evaluate_report_holds_the_json_metrics_and_the_chosen_galleries(evaluated):
    out = evaluated["out"]
    page = (out / "r.html").read_text()
    results = json.loads((out / "results.json").read_text())
    assert f"camloc: report in {out / 'r.html'}" in evaluated["printed"]
    # every metric of the JSON, as printed by the summary table
    for key in ("cls_top1", "cls_top5", "top1_loc", "gt_known_loc", "max_box_acc", "max_box_acc_v2"):
        assert f'<td class="num">{results[key]:.2f}</td>' in page
    assert f'<td class="num">{results["images"]}</td>' in page
    # the galleries are the images choose_galleries picks from the rows, each linked to its row
    _, records = read_records(out / "rows.csv", open_dataset(evaluated["data"]))
    chosen = choose_galleries(records, 8)
    assert _gallery_ids(page) == {k: [r.result.image_id for r in chosen[k]] for k in GALLERIES}
    for record in {r.line: r for items in chosen.values() for r in items}.values():
        assert f'href="#row-{record.line}"' in page and f'<tr id="row-{record.line}">' in page
    pictures = re.findall(r'<img src="data:image/jpeg;base64,', page)
    assert len(pictures) == sum(len(v) for v in chosen.values()) > 0
    # offline: no address but data: URIs and anchors, and a policy that forbids any request
    assert re.findall(r'(?:src|href)="(?!data:|#)', page) == []
    assert "default-src 'none'" in page and "http" not in page.replace("http-equiv", "")


def test_report_reloads_model_data_and_rows_from_the_json(evaluated, capsys):
    out = evaluated["out"]
    assert main(["report", str(out / "results.json"), "--gallery", "3"]) == 0
    assert f"camloc: report in {out / 'results.html'}" in capsys.readouterr().out
    page = (out / "results.html").read_text()
    assert max(len(v) for v in _gallery_ids(page).values()) == 3
    settings, rows = read_results(out / "rows.csv")
    assert settings["model"].endswith("net.py:build") and len(rows) == 24
    # the per-class table: one row per label among the 24 images, with its image count
    counts = {}
    for _, r in rows:
        counts[r.label] = counts.get(r.label, 0) + 1
    table = re.search(r'<table class="sortable" id="class-table">(.*?)</table>', page, re.S).group(1)
    found = re.findall(
        r'<td class="num" data-v="(\d+)">\d+</td><td>[^<]*</td>\s*<td class="num" data-v="(\d+)">', table
    )
    assert {int(label): int(n) for label, n in found} == counts


def test_without_rows_the_report_has_the_summary_and_says_what_is_missing(evaluated, tmp_path):
    results = json.loads((evaluated["out"] / "results.json").read_text())
    results["per_image"] = None
    (tmp_path / "bare.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path / "bare.json"), "--out", str(tmp_path / "bare.html")]) == 0
    page = (tmp_path / "bare.html").read_text()
    assert "No per-image file was given" in page and 'id="gallery-' not in page
    assert f"{results['max_box_acc']:.2f}" in page and "<svg" in page  # the curves


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "results.json: results file not found"),
        ("{not json", "results.json: not a JSON file"),
        ('{"images": 3, "per_image": "nowhere.csv"}', "nowhere.csv: per-image file not found"),
    ],
)
def test_bad_results_files_are_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_json_that_does_not_say_how_to_load_its_model_needs_one(evaluated, tmp_path, capsys):
    results = json.loads((evaluated["out"] / "results.json").read_text())
    del results["arguments"]  # as camloc 0.2 wrote it
    (tmp_path / "old.json").write_text(json.dumps(results))
    assert main(["report", str(tmp_path / "old.json"), "--out", str(tmp_path / "o.html")]) == 2
    assert "does not record how to load its model; pass --model" in capsys.readouterr().err
    args = ["report", str(tmp_path / "old.json"), "--out", str(tmp_path / "o.html")]
    assert main([*args, "--model", f"{evaluated['factory']}:build", "--size", "64"]) == 0
    assert main([*args, "--no-maps"]) == 0


def test_the_report_opens_in_a_browser_without_errors_or_requests(evaluated, browser):
    page_file = evaluated["out"] / "r.html"
    expected = len(re.findall(r'<figure class="shot">', page_file.read_text()))
    page = browser.new_page()
    problems, requests = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith("data:") else None)
    page.goto(page_file.as_uri())
    shown = page.locator("figure.shot img")
    assert shown.count() == expected > 0
    assert page.eval_on_selector_all("figure.shot img", "(imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0)")
    assert problems == [] and requests == [page_file.as_uri()]
    # the per-class table sorts by a click: images, descending on the second click
    header = page.locator("#class-table thead th", has_text="images")
    header.click()
    header.click()
    counts = [int(v) for v in page.locator("#class-table tbody tr td:nth-child(3)").all_inner_texts()]
    assert counts == sorted(counts, reverse=True) and header.get_attribute("aria-sort") == "descending"
    page.close()


def test_evaluate_report_without_per_image_keeps_no_rows(evaluated, tmp_path):
    args = ["evaluate", str(evaluated["data"]), "--model", f"{evaluated['factory']}:build", "--size", "64"]
    assert main([*args, "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "rows that were not kept" in page and len(re.findall(r'<figure class="shot">', page)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json", "r.png"]
    assert json.loads((tmp_path / "r.json").read_text())["per_image"] is None


# --------------------------------------------------------------------------------------------
# the maps judged: camloc metrics and camloc sanity in the report


@pytest.fixture(scope="module")
def judged(evaluated):
    """`camloc metrics` and `camloc sanity` of the same net on the same images."""
    out = evaluated["out"]
    common = [str(evaluated["data"]), "--model", f"{evaluated['factory']}:build", "--size", "64"]
    common += ["--methods", "cam,gradcam"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["metrics", *common, "--road-percentiles", "50", "--json", str(out / "metrics.json")]) == 0
        assert main(["sanity", *common, "--limit", "6", "--out", str(out / "sanity")]) == 0
    return {"metrics": out / "metrics.json", "sanity": out / "sanity" / "sanity.json"}


def _table(page: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table class="sortable" id="{table_id}">(.*?)</table>', page, re.S).group(1)
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)[1:]]


def test_the_report_shows_the_map_metrics_and_the_sanity_checks_it_is_given(evaluated, judged, tmp_path):
    results = evaluated["out"] / "results.json"
    page_file = tmp_path / "r.html"
    args = ["report", str(results), "--out", str(page_file), "--no-maps"]
    assert main([*args, "--metrics", str(judged["metrics"]), "--sanity", str(judged["sanity"])]) == 0
    page = page_file.read_text()
    metrics = json.loads(judged["metrics"].read_text())
    keys = [k for k in metrics["methods"]["cam"] if k != "images"]
    assert len(keys) == 8  # pointing games, energy, relevance mass / rank, ROAD's three
    rows = {row[0]: row[1:] for row in _table(page, "map-metrics-table")}
    for method, means in metrics["methods"].items():
        assert rows[method] == [str(means["images"])] + ["–" if means[k] is None else f"{means[k]:.4f}" for k in keys]
    sanity = json.loads(judged["sanity"].read_text())
    tables = re.findall(
        r"<h3>([^<]*)</h3>\s*<div class=\"scroll\">\s*<table class=\"sortable sanity-table\">(.*?)</table>", page, re.S
    )
    assert [t for t, _ in tables] == ["cascading randomisation", "independent randomisation"]
    head, last = sanity["layers"][0], sanity["layers"][-1]
    cascading = tables[0][1]
    for method in ("cam", "gradcam"):
        expected = [sanity["results"]["cascading"][method][layer][k] for layer in (head, last)
                    for k in ("spearman_abs", "spearman", "ssim", "hog")]  # fmt: skip
        cells = re.search(rf"<tr><td>{method}</td>(.*?)</tr>", cascading, re.S).group(1)
        assert re.findall(r">([^<]*)</td>", cells) == ["–" if v is None else f"{v:.3f}" for v in expected]
    assert re.search(r'<section id="sanity">.*?</section>', page, re.S).group(0).count("<svg") == 1  # the curves
    # the evaluation's own summary is still there
    assert f"{json.loads(results.read_text())['max_box_acc']:.2f}" in page


def test_a_sanity_or_metrics_json_alone_makes_a_page_of_its_own(judged, tmp_path, capsys):
    assert main(["report", str(judged["sanity"]), "--out", str(tmp_path / "s.html")]) == 0
    page = (tmp_path / "s.html").read_text()
    assert 'id="sanity"' in page and 'id="summary"' not in page and "No per-image file" not in page
    assert main(["report", str(judged["metrics"]), "--out", str(tmp_path / "m.html")]) == 0
    page = (tmp_path / "m.html").read_text()
    assert 'id="map-metrics"' in page and 'id="sanity"' not in page and "maps judged</h1>" in page
    # a file of another command where a sanity file belongs: one line
    assert (
        main(["report", str(judged["metrics"]), "--sanity", str(judged["metrics"]), "--out", str(tmp_path / "x.html")])
        == 2
    )
    err = capsys.readouterr().err
    assert "metrics.json: not a results file of camloc sanity" in err and err.count("\n") == 1


def test_the_judged_report_opens_in_a_browser_and_its_tables_sort(evaluated, judged, browser, tmp_path):
    page_file = tmp_path / "j.html"
    args = ["report", str(judged["sanity"]), "--metrics", str(judged["metrics"]), "--out", str(page_file)]
    assert main(args) == 0
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(page_file.as_uri())
    assert page.locator("#sanity svg").count() == 1 and page.locator("#map-metrics-table tbody tr").count() == 2
    header = page.locator("#map-metrics-table thead th", has_text="method")
    header.click()
    header.click()
    assert page.locator("#map-metrics-table tbody tr td:first-child").all_inner_texts() == ["gradcam", "cam"]
    assert problems == []
    page.close()
