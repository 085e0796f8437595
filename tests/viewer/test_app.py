"""The viewer's API over real HTTP: answers equal `explain`'s, 20 concurrent uploads, bad requests, limits."""

import asyncio
import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import camloc
from camloc.evaluation.explain import explain
from camloc.viewer import Explainer, create_app
from camloc.viewer.inference import QueueFull
from camloc.viewer.server import LOOPBACK_NAMES
from tests.helpers.browser import LiveServer


def _run(coroutine_function):
    """``asyncio.run`` in a thread of its own: Playwright's sync API may keep a loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_function())).result()


class CountingExplainer(Explainer):
    """An Explainer that records how many images it explains at the same time, and in which order."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.active = self.most = 0
        self.done_at: list[float] = []

    def explain(self, image, **options):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            return super().explain(image, **options)
        finally:
            with self.lock:
                self.active -= 1
                self.done_at.append(time.monotonic())


@pytest.fixture(scope="module")
def served(mobilenet, photos):
    info = camloc.model_info(mobilenet)
    explainer = CountingExplainer(mobilenet, info, preprocess=info.preprocess.with_mode("full"))
    app = create_app(explainer, images=photos, max_bytes=2_000_000, max_pixels=40_000_000, allowed_hosts=LOOPBACK_NAMES)
    server = LiveServer(app)
    yield server, explainer
    server.stop()
    explainer.close()


@pytest.fixture(scope="module")
def expected(mobilenet, photos):
    """`camloc.explain`'s records of the photos (top-5, whole photo): the answers the server must give."""
    info = camloc.model_info(mobilenet)
    names = ["chelsea.png", "coffee.jpg", "astronaut.tif", "sub/rocket.jpg"]
    result = explain(
        [photos / n for n in names], camloc.CAM(mobilenet), info, preprocess=info.preprocess.with_mode("full")
    )
    return dict(zip(names, result.records, strict=True))


def _same(answer: dict, record: dict) -> None:
    assert (answer["width"], answer["height"]) == (record["width"], record["height"])
    got, want = answer["predictions"], record["predictions"]
    assert [(p["index"], p["name"], p["box"]) for p in got] == [(p["index"], p["name"], p["box"]) for p in want]
    assert [p["score"] for p in got] == pytest.approx([p["score"] for p in want], rel=1e-5)


@pytest.mark.slow
def test_answers_equal_explain_and_carry_the_raw_maps(served, expected, photos, mobilenet):
    server, _ = served
    with httpx.Client(base_url=server.url) as client:
        for name, record in expected.items():
            answer = client.post("/api/explain", files={"image": (name, (photos / name).read_bytes())}).json()
            _same(answer, record)
        answer = client.post("/api/explain", data={"path": "chelsea.png", "topk": "3", "method": "gradcam"}).json()
    assert answer["settings"]["method"] == "gradcam" and answer["image"] == {"name": "chelsea.png", "format": "PNG"}
    k, h, w = answer["maps"]["shape"]
    raw = np.frombuffer(base64.b64decode(answer["maps"]["data"]), dtype="<f4").reshape(k, h, w)
    info = camloc.model_info(mobilenet)
    x, _ = info.preprocess.with_mode("full")(camloc.open_image(photos / "chelsea.png"))
    out = camloc.GradCAM(mobilenet)(x[None], topk=3, upsample=False)
    assert np.allclose(raw, out.raw[0].numpy(), rtol=1e-4, atol=1e-6)
    assert [p["index"] for p in answer["predictions"]] == out.classes[0].tolist()


@pytest.mark.slow
def test_twenty_concurrent_uploads_are_answered_right_one_at_a_time(served, expected, photos):
    server, explainer = served
    names = list(expected) * 5

    async def storm() -> tuple[list[httpx.Response], float, float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            uploads = [client.post("/api/explain", files={"image": (n, (photos / n).read_bytes())}) for n in names]
            started = asyncio.gather(*uploads)
            await asyncio.sleep(0.05)  # the uploads are queued for the model now
            page = await client.get("/")
            script = await client.get("/static/viewer.js")
            assert page.status_code == script.status_code == 200
            page_done = time.monotonic()
            return await started, page_done, time.monotonic()

    explainer.most, explainer.done_at = 0, []
    answers, page_done, _ = _run(storm)
    for name, response in zip(names, answers, strict=True):
        assert response.status_code == 200
        _same(response.json(), expected[name])
    assert explainer.most == 1  # the model explained one image at a time
    assert page_done < max(explainer.done_at)  # and the page was served while uploads still waited for it
    assert httpx.get(server.url + "/api/info").json()["model"].startswith("mobilenet_v2")


def test_queue_full_turns_requests_away(mobilenet, photos):
    info = camloc.model_info(mobilenet)
    explainer = Explainer(mobilenet, info, preprocess=info.preprocess.with_mode("full"), queue=1)
    image = camloc.open_image(photos / "chelsea.png")

    async def two() -> list:
        return await asyncio.gather(explainer.submit(image, topk=1), explainer.submit(image), return_exceptions=True)

    first, second = _run(two)
    explainer.close()
    assert first["predictions"][0]["index"] == 285
    assert isinstance(second, QueueFull) and "1 requests are waiting for the model" in str(second)
    assert explainer.waiting == 0


@pytest.mark.parametrize(
    "upload, form, status, message",
    [
        (("notes.jpg", "notes.jpg"), {}, 415, "notes.jpg: not a readable image"),  # a text file named .jpg
        (("bomb.png", "bomb.png"), {}, 413, "bomb.png: 9000x9000 pixels is over the limit"),
        (("big.jpg", b"\xff" * 2_100_000), {}, 413, "over the limit of 2,000,000 bytes"),
        (("strip.png", "strip.png"), {}, 413, "a 12000x20 image reaches the model as 153600x256"),
        (None, {"path": "../outside/secret.png"}, 403, "outside the images folder"),
        (None, {"path": "link.png"}, 403, "outside the images folder"),
        (None, {"path": "nope.png"}, 404, "nope.png: no such image in the images folder"),
        (None, {"path": "chelsea.png", "method": "magic"}, 400, "method='magic': unknown map method"),
        (None, {"path": "chelsea.png", "topk": "0"}, 400, "topk must be between 1 and 20"),
        (None, {"path": "chelsea.png", "topk": "five"}, 400, "topk must be a number, not 'five'"),
        (None, {"path": "chelsea.png", "classes": "5000"}, 400, "classes must lie in [0, 1000)"),
        (None, {"path": "chelsea.png", "threshold": "2"}, 400, "threshold must lie in [0, 1]"),
        (None, {"method": "cam"}, 400, "send an image file"),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_server_goes_on(served, photos, upload, form, status, message):
    server, _ = served
    files = None
    if upload is not None:
        name, content = upload
        files = {"image": (name, (photos / content).read_bytes() if isinstance(content, str) else content)}
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/explain", files=files, data=form)
        error = response.json()["error"]
        assert response.status_code == status and message in error and "\n" not in error
        assert response.headers["x-content-type-options"] == "nosniff"
        answer = client.post("/api/explain", data={"path": "coffee.jpg", "topk": "1"}).json()
        assert answer["predictions"][0]["index"] == 967


def test_the_folder_the_files_and_foreign_hosts(served, photos):
    server, _ = served
    with httpx.Client(base_url=server.url) as client:
        assert "sub/rocket.jpg" in client.get("/api/images").json()["images"]
        jpeg = client.get("/api/image", params={"path": "coffee.jpg"})
        assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content == (photos / "coffee.jpg").read_bytes()
        tiff = client.get("/api/image", params={"path": "astronaut.tif"})  # a browser cannot show TIFF: PNG
        assert tiff.headers["content-type"] == "image/png" and tiff.content.startswith(b"\x89PNG")
        assert client.get("/api/image", params={"path": "../outside/secret.png"}).status_code == 403
        assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400  # DNS rebinding
        assert client.get("/", headers={"Host": "localhost:1234"}).status_code == 200
        info = client.get("/api/info").json()
        assert len(info["classes"]) == 1000 and info["methods"][0] == "cam" and len(info["colormap"]) == 256


def test_a_body_without_a_length_is_cut_off_at_the_limit(served):
    server, _ = served
    chunks = iter(
        [b"--b\r\nContent-Disposition: form-data; name=image; filename=x.png\r\n\r\n"] + [b"\0" * 500_000] * 5
    )
    with httpx.Client(base_url=server.url) as client:
        response = client.post(
            "/api/explain", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"}
        )
        assert "content-length" not in response.request.headers  # sent chunked
        assert response.status_code == 413 and "over the limit of 2,000,000 bytes" in response.json()["error"]
        assert client.get("/api/info").status_code == 200


def test_a_models_map_size_reaches_the_viewer(mobilenet, photos):
    """The viewer's answer for a model whose file asks for larger maps equals explain's with the same map size."""
    import dataclasses

    info = dataclasses.replace(camloc.model_info(mobilenet), map_size=320)
    full = info.preprocess.with_mode("full")
    explainer = Explainer(mobilenet, info, preprocess=full)
    try:
        answer = explainer.explain(camloc.open_image(photos / "coffee.jpg"), topk=3)
    finally:
        explainer.close()
    record = explain([photos / "coffee.jpg"], camloc.CAM(mobilenet), info=info, preprocess=full, topk=3).records[0]
    _same(answer, record)
    assert answer["settings"]["map_size"] == 320 and answer["geometry"]["input_width"] > 320
    plain = explain([photos / "coffee.jpg"], camloc.CAM(mobilenet), info=info, preprocess=full, topk=3, map_size=224)
    assert [p["index"] for p in plain.records[0]["predictions"]] == [p["index"] for p in answer["predictions"]]
