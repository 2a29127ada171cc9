"""End-to-end test of the dashboard in a real browser.

The test starts the Voila server on a free port, drives Debian's chromium with
Playwright (never ``playwright install``: it downloads a browser and fails on
machines without network), finds the atoms of the bundled MoS2 image and checks
what the page shows. Set ``ATOMSTAT_SCREENSHOT_DIR`` to keep the screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

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
STATUS = re.compile(r"(\d+) atoms found in ([\d.]+) s, pixel size (\S+) (\S+)")
FAILED = re.compile(r"failed: ")  # how app.state reports a failed step in the status line


@dataclass
class Server:
    url: str
    log: Path


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
        server = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, server, log)
        yield Server(url, log)
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


def _save_screenshot(page, tmp_path: Path) -> Path:
    path = tmp_path / "dashboard.png"
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


def test_find_atoms_in_browser(voila, tmp_path):
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.route(
                re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"),
                lambda route: _stub_external(route, errors),
            )
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"),
            )
            page.goto(voila.url, timeout=60_000)
            button = page.get_by_role("button", name="Find atoms")
            button.wait_for(timeout=60_000)
            page.locator(".bqplot image").first.wait_for(state="attached", timeout=30_000)
            page.locator("select").select_option(label=EXAMPLE)

            button.click()
            done = re.compile(f"{STATUS.pattern}|{FAILED.pattern}")
            status = page.locator(".atomstat-status").filter(has_text=done)
            status.wait_for(timeout=60_000)
            match = STATUS.search(status.inner_text())
            if match is None:
                _save_screenshot(page, tmp_path)
                details = page.locator(".atomstat-errors").inner_text()
                pytest.fail(f"the page reports: {status.inner_text()}\n{details}")
            n_atoms = int(match.group(1))
            page.wait_for_function(
                "n => document.querySelectorAll('.bqplot .dot').length === n", arg=n_atoms
            )
            screenshot = _save_screenshot(page, tmp_path)
        finally:
            browser.close()

    assert n_atoms > 100, match.group(0)
    pixel_size, units = float(match.group(3)), match.group(4)
    assert (units, round(pixel_size, 5)) == ("nm", round(9.0 / 512, 5))  # from the .json sidecar
    assert screenshot.stat().st_size > 10_000
    assert errors == []
    assert "Culling kernels with idle durations > 120 seconds" in voila.log.read_text()
