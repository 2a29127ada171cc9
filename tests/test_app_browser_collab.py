"""Two collaborators in a real browser: both label one file, each sees the other's labels
without reloading, nothing is lost after both reload, and a reload shows the analysis
from the cache without running the network.

The test serves the dashboard with Voila (data folder in a temporary directory) and
drives Debian's chromium with Playwright, in two browser contexts (two people: each
has its own localStorage, so its own name). Set ``ATOMSTAT_SCREENSHOT_DIR`` to keep the
screenshots of both tabs (1366 x 768).
"""

from __future__ import annotations

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
from pathlib import Path

import pytest

from app.explorer import SCATTER_MARGIN

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "app" / "dashboard.ipynb"
CHROMIUM = os.environ.get("ATOMSTAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
EXAMPLE = "MoS2 V-doped HAADF 9nm"
VIEWPORT = {"width": 1366, "height": 768}
FOUND = re.compile(r"(\d+) atoms found in ([\d.]+) s")
RESTORED = re.compile(r"(\d+) rows: restored the last analysis in ([\d.]+) s \(no network run\)")
FAILED = re.compile(r"failed: |Error: ")
SEEN_WITHIN = 2.0  # seconds for a label to reach the other tab (the poll runs every 1 s)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def voila(tmp_path_factory):
    """Serve the dashboard (kernel culling on); yield (url, data folder)."""
    port, data_dir = _free_port(), tmp_path_factory.mktemp("data")
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    command = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", "--MappingKernelManager.cull_idle_timeout=120",
               "--MappingKernelManager.cull_interval=30"]  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": EXAMPLE}
    with log.open("w") as sink:
        server = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180  # a busy machine starts voila slowly
        while True:  # a static file: every GET of the page starts a kernel
            try:
                with urllib.request.urlopen(url + "voila/static/voila.js", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"voila did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.25)
        yield url, data_dir
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _tab(browser, errors: list[str]):
    """One collaborator: a browser context of its own (its own localStorage)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()

    def stub(route):  # the lab template's Font Awesome CDN; nothing else may leave
        if route.request.url.startswith("https://cdn.jsdelivr.net/npm/@fortawesome/"):
            route.fulfill(status=200, content_type="text/css", body="")
        else:
            errors.append(f"external request: {route.request.url}")
            route.abort()

    page.route(re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"), stub)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return page


def _status(page, pattern: re.Pattern, timeout: float = 180_000) -> re.Match:
    line = page.locator(".atomstat-status").filter(has_text=re.compile(
        f"{pattern.pattern}|{FAILED.pattern}"))  # fmt: skip
    line.wait_for(timeout=timeout)
    text = line.inner_text()
    match = pattern.search(text)
    if match is None:
        pytest.fail(f"the page reports: {text}\n{page.locator('.atomstat-errors').inner_text()}")
    return match


def _open(page, url: str, pattern: re.Pattern) -> tuple[re.Match, float]:
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    match = _status(page, pattern)
    return match, time.perf_counter() - start


def _name(page, name: str) -> None:
    box = page.locator(".atomstat-user input")
    box.wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('.atomstat-user input').value !== ''")
    box.fill(name)
    box.press("Enter")
    box.blur()


def _brush(page, start: tuple, stop: tuple) -> int:
    """Drag across the descriptor scatter; the selected count it gives."""
    box = page.locator(".atomstat-scatter").first.bounding_box()
    m = SCATTER_MARGIN  # the scatter's fig_margin
    left, top = box["x"] + m["left"], box["y"] + m["top"]
    width = box["width"] - m["left"] - m["right"]
    height = box["height"] - m["top"] - m["bottom"]
    page.mouse.move(left + start[0] * width, top + start[1] * height)
    page.mouse.down()
    page.mouse.move(left + stop[0] * width, top + stop[1] * height, steps=8)
    page.mouse.up()
    counter = page.locator(".atomstat-selected-count").filter(
        has_text=re.compile(r"[1-9]\d* selected")
    )
    counter.wait_for(timeout=30_000)
    return int(re.search(r"(\d+) selected", counter.inner_text()).group(1))


def _label(page, name: str) -> None:
    page.get_by_placeholder("class name").fill(name)
    page.get_by_role("button", name="Label selection", exact=True).click()


def _counts(page, text: str, timeout: float = 30_000) -> None:
    page.locator(".atomstat-label-counts").filter(has_text=text).wait_for(timeout=timeout)


def _seen_after(page, text: str, start: float) -> float:
    _counts(page, text, timeout=30_000)
    return time.perf_counter() - start


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    return _keep(path)


def _keep(path: Path) -> Path:
    keep = os.environ.get("ATOMSTAT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def test_two_collaborators_label_one_file(voila, tmp_path):
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make chromium` (Debian package)")
    from playwright.sync_api import sync_playwright

    url, data_dir = voila
    errors: list[str] = []
    figures = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ana, ben = _tab(browser, errors), _tab(browser, errors)
            found, figures["first view, network run (s)"] = _open(ana, url, FOUND)
            n_atoms = int(found.group(1))
            _name(ana, "ana")
            restored, figures["second visitor, cached (s)"] = _open(ben, url, RESTORED)
            assert int(restored.group(1)) == n_atoms  # the same analysis, without the network
            figures["network run, in the kernel (s)"] = float(found.group(2))
            figures["second visitor's cache read, in the kernel (s)"] = float(restored.group(2))
            _name(ben, "ben")

            n_large = _brush(ana, (0.55, 0.02), (0.99, 0.98))
            start = time.perf_counter()
            _label(ana, "large")
            _counts(ana, f"large: {n_large}")
            figures["ana's label seen by ben (s)"] = _seen_after(ben, f"large: {n_large}", start)

            n_small = _brush(ben, (0.01, 0.02), (0.45, 0.98))
            start = time.perf_counter()
            _label(ben, "small")
            figures["ben's label seen by ana (s)"] = _seen_after(ana, f"small: {n_small}", start)
            _counts(ben, f"large: {n_large}")  # ben keeps ana's labels, and his own
            _counts(ana, f"large: {n_large}")
            for page in (ana, ben):  # who did what, newest first, in both tabs
                history = page.locator(".atomstat-history")
                history.filter(has_text=re.compile(r"ben: manual 'small'")).wait_for(timeout=10_000)
                assert "ana: manual 'large'" in history.inner_text()
            _shot(ana, tmp_path, "collab_ana.png")
            _shot(ben, tmp_path, "collab_ben.png")
            panel = ben.locator(".atomstat-history").locator("xpath=../..")
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=str(tmp_path / "collab_panel_ben.png"))
            _keep(tmp_path / "collab_panel_ben.png")
            colours = ana.locator(".atomstat-label-counts span").evaluate_all(
                "spans => spans.map(s => s.style.color)"
            )

            for who, page in (("ana", ana), ("ben", ben)):
                start = time.perf_counter()
                page.reload(timeout=120_000)
                match = _status(page, RESTORED)
                figures[f"{who}'s reload to analysis (s)"] = time.perf_counter() - start
                figures[f"{who}'s reload, cache read in the kernel (s)"] = float(match.group(2))
                _counts(page, f"large: {n_large}")
                _counts(page, f"small: {n_small}")
                page.wait_for_function(
                    "n => document.querySelector('.atomstat-user input').value === n", arg=who
                )  # the name was kept in the browser
            ana.get_by_text("probability", exact=True).first.click()  # the map came back too
            ana.wait_for_timeout(1500)
            _shot(ana, tmp_path, "collab_ana_reloaded_probability.png")
        finally:
            browser.close()

    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    assert 0 < n_large < n_atoms and 0 < n_small < n_atoms
    assert len(colours) == 2 and colours[0] != colours[1]  # each class its own colour
    assert figures["ana's label seen by ben (s)"] < SEEN_WITHIN + 1.5  # + the click's round trip
    assert figures["ben's label seen by ana (s)"] < SEEN_WITHIN + 1.5
    db = sqlite3.connect(data_dir / ".atomstat" / "labels.sqlite")
    rows = db.execute(
        "SELECT a.user, c.value, count(*) FROM changes c JOIN actions a USING (action_id)"
        " WHERE c.layer = 'manual' GROUP BY a.user, c.value"
    ).fetchall()
    assert sorted(rows) == [("ana", '"large"', n_large), ("ben", '"small"', n_small)]
    assert list(data_dir.glob(".atomstat/cache/*-map.npz"))
    assert errors == []
