"""The dashboard's layout in a real browser, at 1366x768 and 1920x1080.

Voila serves the dashboard with the bundled MoS2 image, which is analysed as
the page opens. Chromium (Debian's, through Playwright) then checks what a
user saw go wrong: the three columns (controls, image, explorer) must not
overlap or leave the window, the image must be whole and square, the
threshold readout must read "0.50" inside its panel (it read "0"), and a long
selection rule must wrap inside the explorer instead of widening it.
Screenshots go to ``ATOMSTAT_SCREENSHOT_DIR`` when it is set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _process import stop
from test_app_browser import (
    CHROMIUM_ARGS,
    NOTEBOOK,
    ROOT,
    _free_port,
    _require_chromium,
    _stub_external,
    _wait_ready,
)

EXAMPLE = "MoS2 V-doped HAADF 9nm"
SIZES = ((1366, 768), (1920, 1080))
SLACK = 1.0  # px: rounding of bounding boxes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("voila") / "voila.log"
    data_dir = tmp_path_factory.mktemp("data")
    command = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", "--MappingKernelManager.cull_idle_timeout=120",
               "--MappingKernelManager.cull_interval=30"]  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": EXAMPLE}
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        stop(proc)


def _box(page, selector: str) -> dict:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not on the page"
    return box


def _right(box) -> float:
    return box["x"] + box["width"]


def _brush_three_times(page) -> None:
    """Three brushes added together: a selection rule of three long clauses."""
    box = _box(page, ".atomstat-scatter")
    left, top = box["x"] + 55, box["y"] + 10
    width, height = box["width"] - 65, box["height"] - 45
    page.get_by_role("button", name="add", exact=True).click()
    for x0, y0 in ((0.6, 0.05), (0.3, 0.4), (0.05, 0.7)):
        page.mouse.move(left + x0 * width, top + y0 * height)
        page.mouse.down()
        page.mouse.move(left + (x0 + 0.3) * width, top + (y0 + 0.25) * height, steps=4)
        page.mouse.up()
        page.wait_for_timeout(800)
    counter = page.locator(".atomstat-selected-count").filter(has_text=re.compile(r"; add .*; add"))
    counter.wait_for(timeout=20_000)


# The ancestors that cut off part of an element (overflow not visible, element outside).
_CLIPPED_JS = """
(el) => {
  const r = el.getBoundingClientRect(), out = [];
  for (let a = el.parentElement; a; a = a.parentElement) {
    const style = getComputedStyle(a);
    if (style.overflowX === "visible" && style.overflowY === "visible") continue;
    const b = a.getBoundingClientRect();
    if (r.left < b.left - 1 || r.right > b.right + 1) out.push(a.className || a.tagName);
  }
  return out;
}
"""


def _clipped(page, selector: str) -> list[str]:
    return page.locator(selector).first.evaluate(_CLIPPED_JS)


def _check_layout(page, width: int, height: int) -> None:
    left, image = _box(page, ".atomstat-left"), _box(page, ".atomstat-image")
    explorer = _box(page, ".atomstat-explorer")
    assert _right(left) <= image["x"] + SLACK, "the controls run under the image"
    assert _right(image) <= explorer["x"] + SLACK, "the explorer covers the image"
    assert _right(explorer) <= width + SLACK, "the explorer leaves the window"
    assert abs(image["width"] - image["height"]) <= 2 and image["width"] >= 400
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The image's plot area is drawn whole: its picture is as wide as the axes.
    picture = _box(page, ".atomstat-image image")
    assert _right(picture) <= _right(image) + SLACK and picture["width"] >= 0.8 * image["width"]
    readout = page.locator(".atomstat-threshold .widget-readout").first
    assert readout.inner_text().strip() == "0.50"
    assert _clipped(page, ".atomstat-threshold .widget-readout") == [], "the readout is cut"
    for name in (".atomstat-image", ".atomstat-scatter", ".atomstat-selected-count"):
        assert _clipped(page, name) == [], f"{name} is cut"
    count = _box(page, ".atomstat-selected-count")
    assert _right(count) <= _right(explorer) + SLACK and count["height"] > 20  # wraps
    for name in (".atomstat-scatter", ".atomstat-histogram"):
        assert _right(_box(page, name)) <= _right(explorer) + SLACK


def test_layout_holds_at_1366_and_1920(server, tmp_path):
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": SIZES[0][0], "height": SIZES[0][1]})
        page.route(re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"),
                   lambda route: _stub_external(route, errors))  # fmt: skip
        try:
            page.goto(server, timeout=120_000)
            found = page.locator(".atomstat-found").filter(has_text="atoms at threshold 0.50")
            found.wait_for(timeout=180_000)  # analysed as it opened: no button pressed
            _brush_three_times(page)
            for width, height in SIZES:
                page.set_viewport_size({"width": width, "height": height})
                page.wait_for_timeout(1500)  # bqplot relayouts on resize
                shot = tmp_path / f"layout_{width}x{height}.png"
                page.screenshot(path=str(shot))
                keep = os.environ.get("ATOMSTAT_SCREENSHOT_DIR")
                if keep:
                    Path(keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(shot, Path(keep) / shot.name)
                _check_layout(page, width, height)
            assert page.locator(".atomstat-errors").inner_text().strip() == ""
        finally:
            browser.close()
    assert errors == []
