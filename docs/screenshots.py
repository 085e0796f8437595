"""Redraw docs/viewer.png and docs/report.png: the viewer on scikit-image's cat, and the report of the 725 images.

    .venv/bin/camloc evaluate ../shared/data/imagenet-val-boxes --per-image out/ev/rows.csv --report out/ev/report.html
    .venv/bin/python docs/screenshots.py out/ev/report.html

Needs /usr/bin/chromium (apt-get install chromium). The viewports are kept small (about 0.5 MB a picture).
"""

import io
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright
from skimage import data

import camloc
from camloc.viewer import Explainer, create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.browser import CHROMIUM, CHROMIUM_FLAGS, LiveServer  # noqa: E402

DOCS = Path(__file__).resolve().parent


def save_small(png: bytes, path: Path) -> None:
    """A screenshot saved as an RGB PNG, compressed as far as PNG goes."""
    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").save(path, optimize=True)
    print(f"{path}: {path.stat().st_size / 1e3:.0f} kB")


def main(report: Path) -> None:
    """The viewer on the cat at threshold 0.5, then the report's galleries."""
    model = camloc.load_model("mobilenet_v2")
    info = camloc.model_info(model)
    explainer = Explainer(model, info, preprocess=info.preprocess.with_mode("full"))
    server = LiveServer(create_app(explainer))
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as p:
        cat = Path(scratch) / "chelsea.png"
        Image.fromarray(data.chelsea()).save(cat)
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1180, "height": 720})
        page.goto(server.url)
        page.wait_for_selector("#method option", state="attached")
        page.set_input_files("#file", str(cat))
        page.wait_for_selector('figure[data-rank="5"] .box:has-text("box")')
        page.fill("#threshold", "0.5")
        page.wait_for_timeout(300)
        save_small(page.screenshot(), DOCS / "viewer.png")
        page = browser.new_page(viewport={"width": 1180, "height": 560})
        page.goto(report.resolve().as_uri())
        page.locator("#gallery-worst").scroll_into_view_if_needed()
        page.evaluate("() => document.getElementById('galleries').scrollIntoView()")
        save_small(page.screenshot(), DOCS / "report.png")
        browser.close()
    server.stop()
    explainer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
