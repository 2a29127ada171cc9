"""Ctrl+Z / Ctrl+Y work page-wide, and the movie section shows only for a movie, in a browser.

The server is started as ``atomstat dashboard`` starts it (``atomstat.serve_app``)
with the bundled MoS2 image, which opens analysed; Debian's chromium (Playwright,
1366 x 768) brushes the scatter and labels the selection, then, with the mouse
over the page's heading (off the image and the scatter), Ctrl+Z takes the label
back and Ctrl+Y puts it back; Ctrl+Z typed in the class-name box is the box's own
text undo and leaves the labels alone. The movie plots are not on the page for
the single image, are once the dumbbell movie is open, and go again when a
single image is opened after it.

``ATOMSTAT_SCREENSHOT_DIR`` keeps the screenshots; ``ATOMSTAT_README_SCREENSHOT``
(a path) writes the README's screenshot there: the labelled selection at
1366 x 768, with the status line as a user sees it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _process import stop
from test_app_browser import CHROMIUM_ARGS, ROOT, _free_port, _require_chromium, _wait_ready

from atomstat.serve import dashboard_command

EXAMPLE = "MoS2 V-doped HAADF 9nm"
MOVIE = "Simulated dumbbell movie"
SINGLE = "Simulated square lattice with dopants"
SIZE = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    data_dir = tmp_path_factory.mktemp("data")
    command = dashboard_command(ROOT / "app" / "dashboard.ipynb", port=port)
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": EXAMPLE}
    with log.open("w") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, proc, log, timeout=120)
        yield url
    finally:
        stop(proc)


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    keep = os.environ.get("ATOMSTAT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def _brush(page) -> None:
    """Brush the right part of the descriptor scatter (the larger atoms)."""
    box = page.locator(".atomstat-scatter").first.bounding_box()
    left, top = box["x"] + 55, box["y"] + 10  # the scatter's fig_margin
    width, height = box["width"] - 65, box["height"] - 45
    page.mouse.move(left + 0.55 * width, top + 0.02 * height)
    page.mouse.down()
    page.mouse.move(left + 0.99 * width, top + 0.98 * height, steps=8)
    page.mouse.up()


def _counts(page) -> str:
    return page.locator(".atomstat-label-counts").inner_text()


def _wait_counts(page, pattern: str, present: bool = True) -> None:
    """Wait until the label counts show (or no longer show) ``pattern``."""
    page.wait_for_function(
        """([pattern, present]) => {
          const el = document.querySelector('.atomstat-label-counts');
          return !!el && new RegExp(pattern).test(el.innerText) === present;
        }""",
        arg=[pattern, present],
        timeout=30_000,
    )


def _movie_section_visible(page) -> bool:
    return page.locator(".atomstat-angles").first.is_visible()


def _open_example(page, name: str, status: str) -> None:
    page.get_by_role("tab", name="Data").click()
    page.get_by_label("Example").select_option(label=name)
    page.locator(".atomstat-status").filter(has_text=status).wait_for(timeout=120_000)


def test_undo_redo_keys_page_wide_and_movie_section(server, tmp_path):
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=SIZE)
        page.route("https://**", lambda route: route.fulfill(status=200, body=""))
        page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
        try:
            page.goto(server, timeout=180_000)
            found = page.locator(".atomstat-found").filter(has_text="atoms at threshold")
            found.wait_for(timeout=240_000)  # analysed as it opened
            assert not _movie_section_visible(page)  # a single image: no empty movie plots
            assert page.locator(".atomstat-movie").first.bounding_box()["height"] <= 1

            _brush(page)
            counter = page.locator(".atomstat-selected-count").filter(
                has_text=re.compile(r"[1-9]\d* selected")
            )
            counter.wait_for(timeout=30_000)
            n = int(re.search(r"(\d+) selected", counter.inner_text()).group(1))
            name = page.get_by_placeholder("class name")
            name.fill("large")
            page.get_by_role("button", name="Label selection", exact=True).click()
            _wait_counts(page, f"large: {n}\\b")
            page.wait_for_timeout(1500)  # the image layer redraws the rings
            readme = os.environ.get("ATOMSTAT_README_SCREENSHOT")
            if readme:
                page.mouse.move(5, 5)  # no hover readout
                page.screenshot(path=readme)
            _shot(page, tmp_path, "shortcuts-labelled.png")

            # The mouse over the heading, off the image and the scatter.
            page.locator("h2").first.hover()
            page.keyboard.press("Control+z")
            _wait_counts(page, f"large: {n}\\b", present=False)
            _shot(page, tmp_path, "shortcuts-undone.png")
            page.keyboard.press("Control+y")
            _wait_counts(page, f"large: {n}\\b")

            # In the class-name box, Ctrl+Z undoes the box's own typing, not a label.
            name.click()
            name.press("End")
            page.keyboard.type("z")
            assert name.input_value() == "largez"
            page.keyboard.press("Control+z")
            page.wait_for_timeout(3000)  # time for a (wrong) undo to reach the page
            assert re.search(f"large: {n}\\b", _counts(page)), _counts(page)
            assert name.input_value() == "large"  # the browser's text undo took the "z" back
            page.keyboard.type("r")
            assert name.input_value() == "larger"  # typing still reaches the box

            _open_example(page, MOVIE, f"{MOVIE}: 256 x 256 px, 12 frames")
            page.locator(".atomstat-angles").first.wait_for(state="visible", timeout=30_000)
            page.locator(".atomstat-movie").first.scroll_into_view_if_needed()
            _shot(page, tmp_path, "shortcuts-movie.png")
            _open_example(page, SINGLE, f"{SINGLE}:")
            page.locator(".atomstat-angles").first.wait_for(state="hidden", timeout=30_000)
            _shot(page, tmp_path, "shortcuts-single-after-movie.png")
            assert page.locator(".atomstat-errors").inner_text().strip() == ""
        finally:
            browser.close()
    assert errors == []
