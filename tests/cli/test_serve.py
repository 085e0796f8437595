"""`camloc serve` from the command line: it serves, says where, refuses what it must, names missing packages."""

import subprocess
import sys
import time

import httpx
import pytest

from camloc.cli import main


@pytest.mark.slow
@pytest.mark.pretrained
def test_serve_prints_its_address_and_answers(tmp_path):
    command = [sys.executable, "-m", "camloc", "serve", "--port", "0", "--images", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # printed once the model is loaded and the socket listens
        assert line.startswith("camloc: serving mobilenet_v2 (IMAGENET1K_V1) on http://127.0.0.1:"), line
        url = line.split(" on ", 1)[1].split()[0]
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(url)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
        assert page.status_code == 200 and "camloc viewer" in page.text
        assert httpx.get(url + "api/images").json() == {"images": []}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_missing_folder_and_names_missing_packages(tmp_path, capsys, monkeypatch):
    assert main(["serve", "--images", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err == f"camloc: error: {tmp_path / 'none'}: no such folder (--images)\n"
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "multipart", None)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "camloc serve needs uvicorn, python-multipart: pip install 'camloc[serve]'" in err and err.count("\n") == 1
