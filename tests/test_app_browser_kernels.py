"""Kernels of closed and reloaded tabs are freed, and uploads past Tornado's 10 MiB frame work.

The server is started as ``atomstat dashboard`` starts it (``atomstat.serve_app``,
default orphan timeout) and driven with Debian's chromium through Playwright.
Kernels are counted through the server's ``/atomstat/api/kernels`` and each
tab's own kernel is looked up at ``/api/kernels/<id>`` (404 once it is gone).

Plain Voila (``python -m voila``) fails this test: the beacon a tab sends on
``beforeunload`` is refused with a 403 for want of an ``_xsrf`` cookie
(voila#1458), so reloaded and closed tabs keep their kernel until the idle
cull; a closing tab may not send it at all (headless Chromium fires no
``beforeunload`` on close: the server's page adds a beacon on ``pagehide``),
and a crashed tab, or a GET without a browser, never sends one.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from _process import stop

from atomstat.serve import dashboard_command

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "app" / "dashboard.ipynb"
CHROMIUM = os.environ.get("ATOMSTAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
ORPHAN_TIMEOUT = 30  # the default of atomstat dashboard
FIRST_CONNECT_TIMEOUT = 40  # 120 by default; shorter here, for the GET without a browser
UPLOAD_LIMIT_MB = 16  # above Tornado's default frame limit of 10 MiB
BEACON_SECONDS = 15  # a beacon frees the kernel long before the orphan timeout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 10):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard served as ``atomstat dashboard`` serves it; yields (url, log path, data)."""
    port, log = _free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    data = tmp_path_factory.mktemp("data")
    command = dashboard_command(NOTEBOOK, port=port, orphan_timeout=ORPHAN_TIMEOUT)
    command.append(f"--AtomstatVoila.first_connect_timeout={FIRST_CONNECT_TIMEOUT}")
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data),
           "ATOMSTAT_UPLOAD_LIMIT_MB": str(UPLOAD_LIMIT_MB)}  # fmt: skip
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while _status(url + "voila/static/voila.js") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, log, data
    finally:
        stop(proc)


def _status(url: str) -> int | None:
    try:
        return _get(url, timeout=2)[0]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _kernels(url: str) -> dict:
    status, body = _get(url + "atomstat/api/kernels")
    assert status == 200, body
    return json.loads(body)


def _seconds_until_gone(url: str, kernel_id: str, start: float, limit: float) -> float:
    """Seconds from ``start`` until the kernel's API answers 404 (fails after ``limit``)."""
    while _get(f"{url}api/kernels/{kernel_id}")[0] != 404:
        if time.monotonic() - start > limit:
            pytest.fail(f"kernel {kernel_id} still runs {limit:.0f} s after its tab went")
        time.sleep(0.5)
    return time.monotonic() - start


def _open(browser, url: str):
    """A page with the dashboard rendered and its kernel connected; (page, kernel id)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    offline = re.compile(r"^(?!http://127\.0\.0\.1:)\w+://")  # the lab template's CDN CSS
    page.route(offline, lambda route: route.fulfill(status=200, content_type="text/css", body=""))
    page.goto(url, timeout=180_000)
    _wait_rendered(page)
    return page, _kernel_id(page)


def _wait_rendered(page) -> None:
    """Wait for the dashboard's controls; on failure keep a screenshot and say what shows."""
    try:
        page.get_by_role("button", name="Find atoms", exact=True).wait_for(timeout=180_000)
    except Exception:
        shot = Path(os.environ.get("ATOMSTAT_SCREENSHOT_DIR", "/tmp")) / "kernels-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        pytest.fail(
            f"the dashboard did not render (screenshot {shot}): {page.inner_text('body')[:800]}"
        )


def _kernel_id(page) -> str:
    return page.evaluate(
        "JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId"
    )


def _upload(page, name: str, content: bytes) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator(".widget-upload").first.click()
    chooser.value.set_files(files=[{"name": name, "mimeType": "application/octet-stream",
                                    "buffer": content}])  # fmt: skip


def _npy(shape) -> bytes:
    import io

    buffer = io.BytesIO()
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    np.save(buffer, image)
    return buffer.getvalue()


def _check_uploads(page, data: Path) -> None:
    """An 11.6 MB file (over Tornado's 10 MiB frame) arrives; a file over the limit is refused."""
    page.get_by_role("tab", name="Data").click()
    content = _npy((1700, 1700))
    assert 10 * 2**20 < len(content) < UPLOAD_LIMIT_MB * 2**20
    _upload(page, "big.npy", content)
    page.locator(".atomstat-status").filter(has_text="1700 x 1700").wait_for(timeout=60_000)
    assert (data / "uploads" / "big.npy").read_bytes() == content
    _upload(page, "huge.npy", _npy((2100, 2100)))  # 17.6 MB
    refused = page.locator(".atomstat-upload-refused")
    refused.wait_for(timeout=10_000)
    if os.environ.get("ATOMSTAT_SCREENSHOT_DIR"):
        shot = Path(os.environ["ATOMSTAT_SCREENSHOT_DIR"]) / "upload-refused.png"
        page.screenshot(path=str(shot), clip=refused.bounding_box() | {"x": 0, "width": 900})
    assert "huge.npy is 16.8 MB; uploads are limited to 16.0 MB" in refused.inner_text()
    assert not (data / "uploads" / "huge.npy").exists()


def _crash_renderers() -> None:
    """Kill this test's Chromium renderer processes, as a crash of the tab would."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "--type=renderer" in child.cmdline():
                child.kill()
        except psutil.NoSuchProcess:
            continue


def _get_page_without_browser(url: str, out: dict) -> None:
    """What a crawler or a DNS-rebinding GET does: render the page, never connect."""
    out["status"], body = _get(url, timeout=240)
    out["kernel"] = re.search(rb'"kernelId": "([0-9a-f-]{36})"', body).group(1).decode()
    out["done"] = time.monotonic()


def test_kernels_of_closed_and_reloaded_tabs_are_freed(server, capsys):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"chromium not found at {CHROMIUM}: run `make chromium` (Debian package)")
    from playwright.sync_api import sync_playwright

    url, log, data = server
    assert _kernels(url) == {"kernels": 0, "connected": 0}
    timings = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page, first = _open(browser, url)
            assert _kernels(url) == {"kernels": 1, "connected": 1}
            _check_uploads(page, data)
            start = time.monotonic()
            page.reload(wait_until="commit", timeout=180_000)  # the beacon went before
            timings["reload"] = _seconds_until_gone(url, first, start, BEACON_SECONDS)
            _wait_rendered(page)
            second = _kernel_id(page)
            assert second != first
            # Playwright drops the beacons of a closing page it intercepts requests of.
            page.unroute_all(behavior="ignoreErrors")
            start = time.monotonic()
            page.close(run_before_unload=True)  # a tab closed by its user: the beacon is sent
            timings["close"] = _seconds_until_gone(url, second, start, BEACON_SECONDS)

            crawler: dict = {}
            thread = threading.Thread(target=_get_page_without_browser, args=(url, crawler))
            thread.start()
            page, third = _open(browser, url)
            start = time.monotonic()
            _crash_renderers()  # no unload event, no beacon: the websocket just drops
            timings["crash"] = _seconds_until_gone(url, third, start, 60)
            thread.join(timeout=240)
            assert crawler["status"] == 200
            timings["get"] = _seconds_until_gone(url, crawler["kernel"], crawler["done"], 60)
        finally:
            browser.close()
    assert _kernels(url) == {"kernels": 0, "connected": 0}  # an idle server holds none
    text = log.read_text()
    assert "403 POST /voila/api/shutdown" not in text
    assert timings["crash"] > ORPHAN_TIMEOUT - 10  # the clock starts at the last heartbeat
    assert timings["get"] > FIRST_CONNECT_TIMEOUT - 5
    with capsys.disabled():
        print("\nseconds until the kernel was gone:", {k: round(v, 1) for k, v in timings.items()})


class _Manager:
    """A kernel manager with kernels in given states, for the reaper."""

    def __init__(self, **kernels):
        self.models = {k: {"connections": c, "execution_state": s} for k, (c, s) in kernels.items()}
        self.stopped = []

    def list_kernel_ids(self):
        return list(self.models)

    def kernel_model(self, kernel_id):
        return self.models[kernel_id]

    async def shutdown_kernel(self, kernel_id):
        self.stopped.append(kernel_id)
        del self.models[kernel_id]


def test_orphan_reaper_rules():
    import asyncio

    from atomstat.serve_app import OrphanReaper

    manager = _Manager(tab=(1, "idle"), render=(0, "busy"), crawler=(0, "idle"))
    reaper = OrphanReaper(manager, timeout=30, interval=5, first_timeout=120)

    def at(t):
        return asyncio.run(reaper.reap(now=t))

    assert at(0) == []
    manager.models["tab"]["connections"] = 0  # the tab closed without a beacon
    manager.models["render"]["execution_state"] = "idle"  # the render ended; no page yet
    assert at(20) == []
    reaper.attended["render"] = 100  # its page's heartbeat
    assert at(31) == ["tab"]  # 31 s after it was last seen connected
    assert at(119) == []
    assert at(121) == ["crawler"]  # never connected: 120 s
    assert at(219) == [] and at(221) == ["render"]
    assert manager.stopped == ["tab", "crawler", "render"] and reaper.attended == {}
