"""The Library view in a real browser: two people brush and label one campaign's defects.

A simulated campaign (two honeycomb "graphene" images with Si-like dopants
three times as bright as carbon, analysed into ``results`` with their
material tag) sits in the data folder that Voila serves. Two Chromium tabs at
1366x768 (two collaborators, two kernels) open "Live run and library" and
press "Open library"; the page must scroll itself so that the buttons and the
gallery are on screen. Picking the material and "brighter (> 1.5x)" must show
exactly the planted dopants, one crop each. One tab brushes part of the
scatter and labels the selection "Si dopant": the store must hold exactly the
brushed atoms under that label, and the other tab, reopening the library,
must show the label on exactly those crops. Each step is timed and printed.
Set ``ATOMSTAT_SCREENSHOT_DIR`` to keep the screenshot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _process import stop
from scipy.spatial import cKDTree
from test_app_browser import (
    CHROMIUM_ARGS,
    NOTEBOOK,
    ROOT,
    _free_port,
    _require_chromium,
    _stub_external,
    _wait_ready,
)

from atomstat.batch import analyze_files
from atomstat.simulate import Defects, simulate_lattice

EXAMPLE = "MoS2 V-doped HAADF 9nm"
VIEWPORT = {"width": 1366, "height": 768}
SHAPE = (160, 160)
MARGIN = 6  # px: dopants this close to the border are left out of the truth
DOPED = Defects(vacancies=0.0, dopants=0.05, dopant_ratio=3.0, jitter=0.1)
LABEL = "Si dopant"
# the library scatter's fig_margin (app/library_view.py)
SCATTER_MARGIN = {"top": 15, "bottom": 45, "left": 65, "right": 15}


@pytest.fixture(scope="module")
def campaign_server(tmp_path_factory):
    """Voila on a data folder holding an analysed campaign: (url, data folder, truth)."""
    data_dir = tmp_path_factory.mktemp("data")
    files, truth = [], {}
    for seed in (1, 2):
        sim = simulate_lattice("honeycomb", shape=SHAPE, spacing=12.0, sigma=1.8,
                               defects=DOPED, rng=seed)  # fmt: skip
        path = data_dir / f"graphene_{seed}.npy"
        np.save(path, sim.image)
        files.append(path)
        dopants = sim.atoms[sim.atoms.species == "dopant"]
        inside = dopants.x.between(MARGIN, SHAPE[1] - 1 - MARGIN)
        inside &= dopants.y.between(MARGIN, SHAPE[0] - 1 - MARGIN)
        truth[path.name] = (dopants[["x", "y"]].to_numpy(), dopants[inside][["x", "y"]].to_numpy())
    report = analyze_files(files, data_dir / "results", material="graphene", anomalies="ocsvm")
    assert report.failed == []
    port = _free_port()
    log = tmp_path_factory.mktemp("logs") / "voila.log"
    command = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", "--MappingKernelManager.cull_idle_timeout=300",
               "--MappingKernelManager.cull_interval=60"]  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": EXAMPLE}
    with log.open("w") as sink:
        server = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                  env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, server, log)
        yield url, data_dir, truth
    finally:
        stop(server)


def _on_screen(locator) -> bool:
    box = locator.bounding_box()
    return (box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]
            and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"])  # fmt: skip


def _open_library(page, url, errors) -> float:
    """Open the page and the library; the seconds from the click to the gallery."""
    page.route(re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"),
               lambda route: _stub_external(route, errors))  # fmt: skip
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.goto(url, timeout=120_000)
    found = page.locator(".atomstat-found").filter(has_text=re.compile(r"\d+ atoms at threshold"))
    found.wait_for(timeout=180_000)  # the example, analysed as the page opened
    page.get_by_text("Live run and library", exact=True).click()
    return _press_open(page)


def _press_open(page) -> float:
    """Press "Open library"; the seconds until the new view's status shows (the old view,
    if any, gone from the page first)."""
    before = page.locator(".atomstat-library-status")
    old = before.element_handle() if before.count() else None
    start = time.perf_counter()
    page.get_by_role("button", name="Open library").click()
    if old is not None:
        old.wait_for_element_state("hidden", timeout=30_000)  # detached counts as hidden
    page.locator(".atomstat-library-status").filter(has_text=" selected").wait_for(timeout=30_000)
    return time.perf_counter() - start


def _pick(page, material: str, kind: str) -> tuple[int, int]:
    """Choose the material and the kind; (crops shown, hits) once the gallery shows them."""
    page.locator(".widget-dropdown", has_text="material").locator("select").select_option(
        label=material
    )
    page.locator(".widget-dropdown", has_text="kind").locator("select").select_option(label=kind)
    return _status(page, rf"(\d+) of (\d+) selected \({re.escape(kind)}, {material}\)")


def _status(page, pattern: str) -> tuple[int, ...]:
    status = page.locator(".atomstat-library-status").filter(has_text=re.compile(pattern))
    status.wait_for(timeout=30_000)
    return tuple(int(v) for v in re.search(pattern, status.inner_text()).groups())


def _crops(page) -> list[str]:
    """The captions of the gallery's crops, in order."""
    return page.locator(".atomstat-gallery figure figcaption").all_inner_texts()


def _brush(page, start: tuple, stop: tuple) -> None:
    box = page.locator(".atomstat-library-scatter").first.bounding_box()
    m = SCATTER_MARGIN
    left, top = box["x"] + m["left"], box["y"] + m["top"]
    width = box["width"] - m["left"] - m["right"]
    height = box["height"] - m["top"] - m["bottom"]
    page.mouse.move(left + start[0] * width, top + start[1] * height)
    page.mouse.down()
    page.mouse.move(left + stop[0] * width, top + stop[1] * height, steps=8)
    page.mouse.up()


def test_two_people_brush_and_label_the_library(campaign_server, tmp_path):
    from atomstat.library import Library
    from atomstat.store import LabelStore, store_path

    url, data_dir, truth = campaign_server
    hits = Library(data_dir / "results").find(material="graphene", brighter=1.5)
    planted = sum(len(every) for every, _ in truth.values())
    # the truth of the gallery, from the library itself: every hit a planted dopant, and
    # every planted dopant away from the border a hit
    for name, (every, interior) in truth.items():
        mine = hits[hits["name"] == name][["x", "y"]].to_numpy()
        assert len(mine) and (cKDTree(every).query(mine)[0] <= 2.0).all(), name
        assert (cKDTree(mine).query(interior)[0] <= 2.0).all(), name
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_page(viewport=VIEWPORT) for _ in range(2)]
            opened = [_open_library(page, url, errors) for page in pages]
            for page in pages:  # the page scrolled to the library: buttons and gallery
                deadline = time.monotonic() + 10
                while not (_on_screen(page.get_by_role("button", name="Open library"))
                           and _on_screen(page.locator(".atomstat-library-scatter"))):  # fmt: skip
                    assert time.monotonic() < deadline, "the library is not on screen"
                    time.sleep(0.1)
            start = time.perf_counter()
            shown = [_pick(page, "graphene", "brighter (> 1.5x)") for page in pages]
            picked = time.perf_counter() - start
            for (selected, n), page in zip(shown, pages, strict=True):
                assert selected == n == len(hits)  # one crop per hit, all planted dopants
                assert len(_crops(page)) == n
            ana, ben = pages
            start = time.perf_counter()
            _brush(ana, (0.01, 0.01), (0.55, 0.99))  # the left part of the area axis
            fewer = rf"(\d+) of ({n}) selected"
            deadline = time.monotonic() + 20
            while (brushed := _status(ana, fewer)[0]) == n:  # until the brush reaches the kernel
                if time.monotonic() > deadline:
                    ana.screenshot(path=str(tmp_path / "brush.png"))
                    raise AssertionError(f"the brush selected nothing new ({tmp_path})")
                time.sleep(0.1)
            assert 0 < brushed < n
            ana.get_by_placeholder("label, e.g. Si dopant").fill(LABEL)
            ana.get_by_role("button", name="label selected").click()
            (labelled,) = _status(ana, rf"labelled (\d+) as '{LABEL}'")
            took = time.perf_counter() - start
            assert labelled == brushed
            assert sum(LABEL in c for c in _crops(ana)) == brushed
            # the store holds exactly the brushed atoms under the label
            store = LabelStore(store_path(data_dir))
            stored = {
                (key, atom)
                for key in set(hits["sha256"])
                for atom, name in dict(store.state(key)["manual"]).items()
                if name == LABEL
            }
            keys = list(zip(hits["sha256"], hits["atom_id"].astype(int), strict=True))
            in_store = np.array([k in stored for k in keys])
            assert len(stored) == in_store.sum() == brushed
            # a brush from the left edge of the area axis, over every intensity: the smallest
            assert hits["area"][in_store].max() <= hits["area"][~in_store].min()
            # the other person sees them on reopening the library
            start = time.perf_counter()
            _press_open(ben)  # the same pick as before
            assert _status(ben, r"(\d+) of (\d+) selected \(brighter \(> 1.5x\), graphene\)")
            deadline = time.monotonic() + 20
            while (seen := sum(LABEL in c for c in _crops(ben))) != brushed:
                if time.monotonic() > deadline:
                    ben.screenshot(path=str(tmp_path / "other.png"))
                    raise AssertionError(f"the other tab shows {seen} labels ({tmp_path})")
                time.sleep(0.1)
            again = time.perf_counter() - start
            print(
                f"\nlibrary: open {max(opened):.1f} s, pick material and kind (both tabs) "
                f"{picked:.1f} s, brush + label {took:.1f} s, reopen in the other tab "
                f"{again:.1f} s; {n} hits, {planted} planted, {brushed} labelled"
            )
            shot = tmp_path / "library_1366x768.png"
            ben.screenshot(path=str(shot))
            keep = os.environ.get("ATOMSTAT_SCREENSHOT_DIR")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / shot.name)
            for page in pages:
                assert page.locator(".atomstat-errors").inner_text().strip() == ""
        finally:
            browser.close()
    assert errors == [], errors
