"""The viewer under load and abuse: many clients at once, bad and oversized requests, slow clients; it keeps answering.

A tiny 8-class net (``tests/faults/nets.py``) stands in for a real model, so the test is about the server:
every request gets its right status, none a 500, memory stays bounded, and half-sent requests of slow
clients (slowloris) do not keep others from being answered.
"""

import random
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from camloc.images import Preprocess
from camloc.models.info import ModelInfo, with_info
from camloc.viewer import Explainer, create_app
from camloc.viewer.server import LOOPBACK_NAMES
from tests.faults.nets import CLASSES, tiny
from tests.helpers.browser import LiveServer

# Real subprocesses and servers: seconds each, so outside `make test-fast` (they run in `make test` and CI).
pytestmark = pytest.mark.slow

pytest.importorskip("uvicorn")
LIMIT = 200_000


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("load-images")
    rng = random.Random(0)
    for i in range(4):
        Image.new("RGB", (40 + 8 * i, 32), (rng.randrange(256), 90, 40)).save(folder / f"im{i}.png")
    info = ModelInfo("tiny", [f"c{k}" for k in range(CLASSES)], Preprocess(size=32))
    explainer = Explainer(with_info(tiny(), info), info, queue=256)
    app = create_app(explainer, images=folder, max_bytes=LIMIT, max_pixels=1_000_000, allowed_hosts=LOOPBACK_NAMES)
    live = LiveServer(app)
    yield live, folder
    live.stop()
    explainer.close()


def _png(folder: Path) -> bytes:
    return (folder / "im1.png").read_bytes()


# (name, how to send it, the status it must get)
def _requests(folder: Path) -> list:
    boundary = {"content-type": "multipart/form-data; boundary=xyz"}
    return [
        ("explain a file", lambda c: c.post("/api/explain", data={"path": "im0.png", "topk": "2"}), 200),
        ("upload", lambda c: c.post("/api/explain", files={"image": ("a.png", _png(folder))}), 200),
        ("info", lambda c: c.get("/api/info"), 200),
        ("folder", lambda c: c.get("/api/images"), 200),
        ("unknown path", lambda c: c.get("/no/such/page"), 404),
        ("unknown api", lambda c: c.post("/api/nothing", content=b"x"), 404),
        ("traversal", lambda c: c.get("/api/image", params={"path": "../../etc/passwd"}), 403),
        ("traversal in explain", lambda c: c.post("/api/explain", data={"path": "../x.png"}), 403),
        ("over the cap", lambda c: c.post("/api/explain", files={"image": ("b.png", b"\0" * (LIMIT + 1))}), 413),
        ("malformed multipart", lambda c: c.post("/api/explain", content=b"--xyz\r\nbroken", headers=boundary), 400),
        ("not multipart", lambda c: c.post("/api/explain", content=b"{}", headers={"content-type": "x/y"}), 400),
        ("not an image", lambda c: c.post("/api/explain", files={"image": ("c.png", b"text")}), 415),
    ]


def test_many_concurrent_clients_good_and_bad_all_get_their_answer(server):
    live, folder = server
    kinds = _requests(folder)
    order = [kinds[i % len(kinds)] for i in range(360)]
    random.Random(1).shuffle(order)

    def one(item):
        name, call, status = item
        with httpx.Client(base_url=live.url, timeout=120) as client:
            response = call(client)
            error = response.json().get("error", "") if response.status_code != 200 else ""
            return name, status, response.status_code, error

    before = _rss_kb()
    with ThreadPoolExecutor(48) as pool:
        answers = list(pool.map(one, order))
    wrong = [a for a in answers if a[1] != a[2]]
    assert not wrong, wrong[:5]
    assert all("\n" not in a[3] for a in answers)
    assert _rss_kb() - before < 300_000  # kB: 360 requests (120 of them bodies over the cap) keep nothing
    with httpx.Client(base_url=live.url) as client:
        assert client.get("/api/info").status_code == 200


def test_slow_clients_do_not_block_the_others(server):
    live, folder = server
    host, port = live.url.removeprefix("http://").split(":")
    slow = []
    try:
        for i in range(40):  # each sends half a request and then nothing
            sock = socket.create_connection((host, int(port)))
            part = b"POST /api/explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n--"
            sock.sendall(part if i % 2 else b"GET /api/info HTTP/1.1\r\nHost: 127.")
            slow.append(sock)
        with httpx.Client(base_url=live.url, timeout=60) as client:
            for _ in range(5):
                answer = client.post("/api/explain", data={"path": "im2.png", "topk": "1"})
                assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    finally:
        for sock in slow:
            sock.close()


def test_a_burst_of_uploads_from_threads_is_answered_in_full(server):
    live, folder = server
    results: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=live.url, timeout=120) as c:
            for _ in range(3):
                response = c.post("/api/explain", files={"image": ("a.png", _png(folder))}, data={"topk": "3"})
                with lock:
                    results.append(len(response.json()["predictions"]) if response.status_code == 200 else -1)

    threads = [threading.Thread(target=client) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [3] * 90
