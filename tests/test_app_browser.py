"""End-to-end test of the dashboard in a real browser.

The test starts the Voila server on a free port (data folder in a temporary
directory), drives Debian's chromium with Playwright (never ``playwright
install``: it downloads a browser and fails on machines without network), and
walks the dashboard as a user would: find the atoms of the bundled MoS2
image, brush the descriptor scatter with the mouse, check that the selected
count and the rings on the image agree, label the selection, download the
PNG figure, then open the dumbbell movie, track it, pick dumbbells and step a
frame. Set ``ATOMSTAT_SCREENSHOT_DIR`` to keep the screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.explorer import SCATTER_MARGIN

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "app" / "dashboard.ipynb"
CHROMIUM = os.environ.get("ATOMSTAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Polled for readiness: a static file, because every GET of the page starts a kernel.
READY_PATH = "voila/static/voila.js"
EXAMPLE = "MoS2 V-doped HAADF 9nm"
# Voila's lab template links Font Awesome from this CDN. The test answers it with an
# empty stylesheet so that it runs offline; any other request off this machine fails it.
ALLOWED_EXTERNAL = ("https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@",)
MOVIE = "Simulated dumbbell movie"
STATUS = re.compile(r"(\d+) atoms found in ([\d.]+) s, pixel size (\S+) (\S+)")
PAIRS = r"\d+ dumbbells \(\d+ atoms\) found in"
# The image view draws the atoms as one PNG layer (the second <image> of the figure).
LAYER = "document.querySelectorAll('.atomstat-image image')[1].getAttribute('href')"
FAILED = re.compile(r"failed: |Error: ")  # how app.state reports a failed step in the status line


@dataclass
class Server:
    url: str
    log: Path
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"voila exited with code {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + READY_PATH, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    pytest.fail(f"voila did not serve {READY_PATH} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    """Serve the dashboard with kernel culling on; shut it down (and its kernels) afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    data_dir = tmp_path_factory.mktemp("data")
    command = [
        sys.executable,
        "-m",
        "voila",
        str(NOTEBOOK),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--MappingKernelManager.cull_idle_timeout=120",
        "--MappingKernelManager.cull_interval=30",
        "--MappingKernelManager.cull_connected=False",
    ]
    with log.open("w") as sink:
        env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": EXAMPLE}
        server = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, server, log)
        yield Server(url, log, data_dir)
    finally:
        server.terminate()  # voila stops its kernels on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _require_chromium() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make chromium` (Debian package)")
    return CHROMIUM


def _save_screenshot(page, tmp_path: Path, name: str = "screenshot.png") -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("ATOMSTAT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def _stub_external(route, errors: list[str]) -> None:
    """Answer allowed CDN requests with an empty body; record and abort any other."""
    url = route.request.url
    if url.startswith(ALLOWED_EXTERNAL):
        route.fulfill(status=200, content_type="text/css", body="")
    else:
        errors.append(f"external request: {url}")
        route.abort()


def _wait_status(page, pattern: str, tmp_path: Path, timeout: float = 60_000) -> str:
    """Wait until the status line matches ``pattern`` (or reports a failure)."""
    done = re.compile(f"{pattern}|{FAILED.pattern}")
    status = page.locator(".atomstat-status").filter(has_text=done)
    status.wait_for(timeout=timeout)
    text = status.inner_text()
    if not re.search(pattern, text):
        _save_screenshot(page, tmp_path)
        details = page.locator(".atomstat-errors").inner_text()
        pytest.fail(f"the page reports: {text}\n{details}")
    return text


def _drag(page, selector: str, start: tuple, stop: tuple) -> None:
    """Drag the mouse across a figure, between fractions of its plot area."""
    box = page.locator(selector).first.bounding_box()
    m = SCATTER_MARGIN  # the scatter's fig_margin
    left, top = box["x"] + m["left"], box["y"] + m["top"]
    width = box["width"] - m["left"] - m["right"]
    height = box["height"] - m["top"] - m["bottom"]
    page.mouse.move(left + start[0] * width, top + start[1] * height)
    page.mouse.down()
    page.mouse.move(left + stop[0] * width, top + stop[1] * height, steps=8)
    page.mouse.up()


def _selected(page) -> int:
    """The selected count, once the brush has selected something."""
    counter = page.locator(".atomstat-selected-count").filter(
        has_text=re.compile(r"[1-9]\d* selected")
    )
    counter.wait_for(timeout=20_000)
    return int(re.search(r"(\d+) selected", counter.inner_text()).group(1))


def _open_browser(playwright, chromium, errors):
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1600, "height": 1250}, accept_downloads=True)
    page.route(
        re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"), lambda route: _stub_external(route, errors)
    )
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
    return browser, page


def _first_view_is_analysed(page) -> None:
    """The example opens analysed: atoms in the image layer, the scatter and the histograms."""
    found = page.locator(".atomstat-found").filter(has_text=re.compile(r"\d+ atoms at threshold"))
    found.wait_for(timeout=180_000)  # no button pressed
    n = int(found.inner_text().split()[0])
    assert n > 100
    dots = "document.querySelectorAll('.atomstat-scatter .dot').length"
    # columns added on the lattice (locate's complete_sublattices) have no blob, so no area
    # or circularity to plot: the scatter shows every other atom
    page.wait_for_function(f"n => {dots} >= n", arg=n // 2, timeout=20_000)
    bars = "document.querySelectorAll('.atomstat-histogram .bargroup rect').length"
    page.wait_for_function(f"() => {bars} > 20", timeout=20_000)
    page.wait_for_function(f"() => ({LAYER} || '').startsWith('blob:')", timeout=20_000)


def _find_brush_label(page, tmp_path):
    """Find the atoms, brush the large ones, check the rings, label them."""
    # The page analyses the example as it opens; Find atoms again takes the cached result.
    page.get_by_role("button", name="Find atoms", exact=True).click(timeout=180_000)
    match = STATUS.search(_wait_status(page, STATUS.pattern, tmp_path))
    n_atoms = int(match.group(1))
    page.locator(".atomstat-found").filter(has_text=f"{n_atoms} atoms at").wait_for()
    layer = page.evaluate(LAYER)
    _drag(page, ".atomstat-scatter", (0.55, 0.02), (0.99, 0.98))
    n_selected = _selected(page)
    # The image view redraws its atom layer with the rings of the selection.
    page.wait_for_function(f"b => {LAYER} !== b", arg=layer, timeout=20_000)
    page.get_by_placeholder("class name").fill("large")
    page.get_by_role("button", name="Label selection", exact=True).click()
    counts = page.locator(".atomstat-label-counts").filter(has_text=f"large: {n_selected}")
    counts.wait_for(timeout=20_000)
    return match, n_atoms, n_selected


def _download_png(page, tmp_path):
    page.get_by_role("tab", name="Export").click()
    page.get_by_role("button", name="Export figure", exact=True).click()
    link = page.locator("a.atomstat-download")
    link.wait_for(timeout=60_000)
    with page.expect_download(timeout=30_000) as info:
        link.click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    return target


def _movie_step(page, tmp_path, errors):
    """Open the dumbbell movie, find and track dumbbells, pick them, step one frame."""
    page.get_by_role("tab", name="Data").click()
    page.get_by_label("Example").select_option(label=MOVIE)
    _wait_status(page, f"{MOVIE}: 256 x 256 px, 12 frames", tmp_path)
    page.get_by_role("tab", name="Detection").click()
    page.get_by_label("Dumbbell mode").check()
    page.get_by_role("button", name="Find atoms", exact=True).click()
    _wait_status(page, PAIRS, tmp_path)
    page.get_by_role("button", name="Track", exact=True).click()
    _wait_status(page, r"\d+ tracks over 12 frames", tmp_path)
    _drag(page, ".atomstat-scatter", (0.01, 0.01), (0.99, 0.99))
    assert _selected(page) > 5
    lines = "document.querySelectorAll('.atomstat-angles path.line')"
    try:
        page.wait_for_function(f"() => {lines}.length > 5", timeout=20_000)
    except Exception:
        page.locator(".atomstat-angles").scroll_into_view_if_needed()
        _save_screenshot(page, tmp_path, "failure.png")
        n = page.evaluate(f"() => {lines}.length")
        pytest.fail(f"{n} angle lines: {page.locator('.atomstat-errors').inner_text()} {errors}")
    before = page.evaluate(f"() => Array.from({lines}).map(p => p.getAttribute('d'))")
    handle = page.locator(".atomstat-frame .noUi-handle").first
    handle.hover()
    handle.focus()  # the slider's handle takes the arrow keys
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"b => JSON.stringify(Array.from({lines}).map(p => p.getAttribute('d'))) !== b",
        arg=json.dumps(before),
        timeout=20_000,
    )


def test_dashboard_in_browser(voila, tmp_path):
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser, page = _open_browser(playwright, chromium, errors)
        try:
            page.goto(voila.url, timeout=60_000)
            page.get_by_role("button", name="Find atoms", exact=True).wait_for(timeout=60_000)
            _first_view_is_analysed(page)
            match, n_atoms, n_selected = _find_brush_label(page, tmp_path)
            downloaded = _download_png(page, tmp_path)
            screenshot = _save_screenshot(page, tmp_path)
            _movie_step(page, tmp_path, errors)
        finally:
            browser.close()

    assert n_atoms > 100 and 0 < n_selected < n_atoms
    pixel_size, units = float(match.group(3)), match.group(4)
    assert (units, round(pixel_size, 5)) == ("nm", round(9.0 / 512, 5))  # from the .json sidecar
    assert downloaded.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_server = voila.data_dir / "exports" / downloaded.name
    assert downloaded.read_bytes() == on_server.read_bytes()
    store = sqlite3.connect(voila.data_dir / ".atomstat" / "labels.sqlite")  # the shared labels
    query = "SELECT count(*) FROM current WHERE layer = 'manual' AND value = '\"large\"'"
    assert store.execute(query).fetchone()[0] == n_selected
    assert screenshot.stat().st_size > 50_000
    assert errors == []
    assert "Culling kernels with idle durations > 120 seconds" in voila.log.read_text()
