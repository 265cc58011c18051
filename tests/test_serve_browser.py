"""``ailut serve`` end to end in a real browser: Debian's headless ``chromium`` driven by
playwright (``executable_path``; playwright downloads no browser), the server started by the
``ailut`` command with the authors' FiveK sRGB checkpoint, the authors' photo uploaded through
the page's file input, and the files the page downloads checked against ``ailut enhance``.

Needs ``apt-get install chromium`` (.ci/run installs it) and the test extra.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import _models
import numpy as np
import pytest

from ailut_jax.cli import main
from ailut_jax.cube import apply_cube_numpy, read_cube
from ailut_jax.imageio import read_image_raw

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("AILUT_CHROMIUM", "/usr/bin/chromium")
# Model loading and the first compile on a 2-core machine, then a 6-megapixel photo.
STARTUP_S, RESULT_MS = 300, 300_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    pytest.importorskip("torch", reason="the authors' .pth needs the convert extra (torch)")
    return _models.official_file(_models.SRGB_NAME)


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """``ailut serve`` in its own process; yields its URL, and checks it stops cleanly."""
    pytest.importorskip("uvicorn", reason="the serve extra: pip install -e '.[serve]'")
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ailut_jax.cli", "serve", "--checkpoint", str(checkpoint),
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S  # a bound against hanging, not a measurement
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/config", timeout=5) as response:
                assert response.status == 200
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"ailut serve did not start:\n{log.read_text()}")
            time.sleep(0.5)
    yield url
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert text.rstrip().endswith("ailut serve: stopped"), text
    assert "Traceback" not in text, text
    # The server said where it keeps uploads and results; that folder is gone now.
    folder = re.search(r"uploads and results go to (\S+)", text)
    assert folder is not None, text
    assert not Path(folder.group(1)).exists()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra: playwright")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def enhanced(checkpoint, tmp_path_factory) -> Path:
    """``ailut enhance``'s 8-bit output for the authors' photo."""
    out = tmp_path_factory.mktemp("enhanced")
    assert main(["enhance", str(_models.official_file(_models.PHOTO_NAME)),
                 "--checkpoint", str(checkpoint), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    return out / "a4739.png"


def _download(page, selector: str, target: Path) -> Path:
    with page.expect_download(timeout=RESULT_MS) as info:
        page.click(selector)
    info.value.save_as(target)
    return target


def _set_strength(page, value: int) -> None:
    # What dragging the slider does: a new value and an input event.
    page.eval_on_selector(
        "#strength", "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value
    )
    page.wait_for_function(
        f"document.querySelector('.card a.png').href.includes('strength={value}&')"
    )


def test_upload_compare_and_download_in_chromium(server, browser, enhanced, tmp_path):
    photo = _models.official_file(_models.PHOTO_NAME)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.wait_for_function("document.querySelector('#limits').textContent.includes('MB')")
    page.set_input_files("#files", str(photo))
    card = page.wait_for_selector(".card[data-state=done]", timeout=RESULT_MS)
    assert "3008 × 2000" in card.inner_text()
    # The before and after previews and the vertices plot are on the page.
    page.wait_for_function(
        "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert page.locator(".card .vertices polyline").count() == 3

    # 100 %: the downloaded PNG is ailut enhance's output, pixel for pixel.
    got = read_image_raw(_download(page, ".card a.png", tmp_path / "full.png"))
    np.testing.assert_array_equal(got, read_image_raw(enhanced))

    # The .cube of the same LUT parses and, applied to the photo, gives that output
    # up to the resampling of the learned lattice onto a uniform one.
    cube = read_cube(_download(page, ".card a.cube", tmp_path / "look.cube"))
    assert cube.size == 33
    original = read_image_raw(photo)
    applied = np.rint(np.clip(apply_cube_numpy(original / 255.0, cube), 0, 1) * 255)
    psnr = 10 * np.log10(255.0**2 / np.mean((applied - got) ** 2))
    assert psnr > 40, psnr  # about 48 dB; the identity LUT would give about 20

    # 0 %: the input comes back.
    _set_strength(page, 0)
    zero = read_image_raw(_download(page, ".card a.png", tmp_path / "zero.png"))
    np.testing.assert_array_equal(zero, original)

    # A file that is not an image gets a message in the page, and the server goes on.
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page.set_input_files("#files", str(notes))
    error = page.wait_for_selector(".card[data-state=error] .error", timeout=RESULT_MS)
    assert "notes.txt" in error.inner_text() and "not an image" in error.inner_text()
    assert error.is_visible() and page.locator(".card[data-state=error] .result").is_hidden()
    with urllib.request.urlopen(f"{server}/api/config", timeout=10) as response:
        assert response.status == 200
    assert not errors, errors
    page.close()
