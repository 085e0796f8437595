"""The viewer in Chromium: upload, top-5, boxes that follow the slider as camloc draws them, errors, downloads."""

import base64
import dataclasses
import io
import json

import numpy as np
import pytest
from PIL import Image

import camloc
from camloc.evaluation.explain import explain
from camloc.viewer import Explainer, create_app
from camloc.viewer.server import LOOPBACK_NAMES
from tests.helpers.browser import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def viewer(mobilenet, photos):
    info = camloc.model_info(mobilenet)
    explainer = Explainer(mobilenet, info, preprocess=info.preprocess.with_mode("full"))
    server = LiveServer(create_app(explainer, images=photos, allowed_hosts=LOOPBACK_NAMES))
    yield server
    server.stop()
    explainer.close()


def _reference(mobilenet, path, threshold):
    """camloc's own top-5 names and paper boxes of the whole photo at ``threshold``."""
    info = camloc.model_info(mobilenet)
    full = info.preprocess.with_mode("full")
    record = explain([path], camloc.CAM(mobilenet), info, preprocess=full, threshold=threshold).records[0]
    return [p["name"] for p in record["predictions"]], [p["box"] for p in record["predictions"]]


def _shown(page) -> tuple[list[str], list[list[int] | None]]:
    names = page.locator("figure[data-rank] .name").all_inner_texts()
    boxes = []
    for text in page.locator("figure[data-rank] .box").all_inner_texts():
        boxes.append(None if text == "no box" else [int(v) for v in text.removeprefix("box ").split(", ")])
    return names, boxes


def _wait_for(page, image_name: str) -> None:
    page.wait_for_function(
        "(name) => document.getElementById('status').textContent.startsWith(name + ':')"
        " && document.querySelector('figure[data-rank] .box').textContent !== ''",
        arg=image_name,
    )


def test_the_viewer_in_a_real_browser(viewer, browser, mobilenet, photos, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, foreign = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "request", lambda r: foreign.append(r.url) if not r.url.startswith((viewer.url, "data:", "blob:")) else None
    )
    page.goto(viewer.url)
    page.wait_for_selector("#method option[value=gradcam]", state="attached")

    # an upload: the top-5 names and boxes are camloc's, computed here in the browser from the raw maps
    page.set_input_files("#file", str(photos / "chelsea.png"))
    _wait_for(page, "chelsea.png")
    names, boxes = _reference(mobilenet, photos / "chelsea.png", 0.2)
    assert _shown(page) == (names, boxes)

    # the slider redraws the boxes by the same rule at its threshold, with no request
    page.fill("#threshold", "0.55")
    page.wait_for_function("() => document.getElementById('threshold-value').textContent === '0.55'")
    _, moved = _reference(mobilenet, photos / "chelsea.png", 0.55)
    shown = _shown(page)[1]
    assert shown == moved and shown[0] != boxes[0]
    x0, y0, x1, y1 = shown[0]
    edge = page.evaluate(
        "([x, y]) => Array.from(document.querySelector('figure[data-rank=\"1\"] canvas')"
        ".getContext('2d').getImageData(x, y, 1, 1).data)",
        [x0, (y0 + y1) // 2],
    )
    assert edge == [0, 255, 0, 255]  # the box's left edge, drawn where the caption says

    # the page is not blank: a photo with heat maps over it
    with Image.open(io.BytesIO(page.screenshot())) as shot:
        pixels = np.asarray(shot.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5000 and pixels.std() > 30

    # downloads: the JSON holds the boxes shown; the PNG is the selected panel at the image's size
    with page.expect_download() as download:
        page.click("#download-json")
    saved = json.loads(open(download.value.path()).read())
    assert saved["settings"]["threshold"] == 0.55
    assert [p["box"] for p in saved["images"][0]["predictions"]] == moved
    with page.expect_download() as download:
        page.click("#download-png")
    with Image.open(download.value.path()) as png:
        assert (png.format, png.size) == ("PNG", (451, 300))

    # any class by name
    page.fill("#class", "tabby")
    page.dispatch_event("#class", "change")
    page.wait_for_function("() => document.querySelectorAll('figure[data-rank]').length === 1")
    assert page.get_attribute("figure[data-rank]", "data-index") == "281"

    # a text file: a clear error in the page; the server goes on
    page.fill("#class", "")
    page.set_input_files("#file", str(photos / "notes.jpg"))
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error").startswith("notes.jpg: not a readable image")
    errors = [e for e in errors if "status of 415" not in e]  # the browser logs the refused upload itself

    # a file of the images folder (TIFF: sent back as a JPEG preview), then a dropped image
    page.select_option("#images", "astronaut.tif")
    _wait_for(page, "astronaut.tif")
    assert page.is_hidden("#error") and _shown(page)[0] == _reference(mobilenet, photos / "astronaut.tif", 0.55)[0]
    dropped = base64.b64encode((photos / "coffee.jpg").read_bytes()).decode()
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer }));
        }""",
        dropped,
    )
    _wait_for(page, "dropped.jpg")
    assert _shown(page) == _reference(mobilenet, photos / "coffee.jpg", 0.55)
    assert errors == [] and foreign == []
    page.close()


def test_the_slider_starts_at_the_models_own_threshold(browser, mobilenet, photos):
    # a model file's box_threshold (camloc train chooses it): the page starts there, and its boxes are explain's
    info = dataclasses.replace(camloc.model_info(mobilenet), box_threshold=0.35)
    explainer = Explainer(mobilenet, info, preprocess=info.preprocess.with_mode("full"))
    server = LiveServer(create_app(explainer, images=photos, allowed_hosts=LOOPBACK_NAMES))
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server.url)
        page.wait_for_function("() => document.getElementById('threshold-value').textContent === '0.35'")
        assert page.input_value("#threshold") == "0.35"
        page.set_input_files("#file", str(photos / "chelsea.png"))
        _wait_for(page, "chelsea.png")
        names, boxes = _reference(mobilenet, photos / "chelsea.png", 0.35)
        assert _shown(page) == (names, boxes) and boxes != _reference(mobilenet, photos / "chelsea.png", 0.2)[1]
        page.close()
    finally:
        server.stop()
        explainer.close()
