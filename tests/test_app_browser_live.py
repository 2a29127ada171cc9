"""The Live view in a real browser, beside a real ``atomstat watch``, seen by two people.

Voila serves the dashboard (data folder in a temporary directory) and
``atomstat watch incoming --out results`` runs as its own process on that
folder, as it would beside a microscope. Two Chromium tabs at 1366x768 (two
collaborators, two kernels) open "Live run and library" and press
"Follow live"; the page must scroll itself so that the buttons and the whole
live frame are on screen. Two simulated lattices then land in ``incoming`` one after the
other (the first written slowly, in pieces, the way an acquisition program
writes). Each tab must show each newest frame, its pixels drawn (its dark
lattice background fills the plot) and its atoms drawn on it, and
the running totals, and the numbers on screen must be the ones the dataset
holds and within 3 % of the lattice's true atom count. The time from a file
landing to its atoms in both tabs is printed. Set ``ATOMSTAT_SCREENSHOT_DIR``
to keep the screenshot.
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
import pandas as pd
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

from atomstat.simulate import simulate_lattice

EXAMPLE = "MoS2 V-doped HAADF 9nm"
VIEWPORT = {"width": 1366, "height": 768}
TITLE = re.compile(r"(\S+), frame (\d+): (\d+) atoms")
TOTALS = re.compile(r"(\d+) frames, (\d+) atoms")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """Voila and ``atomstat watch`` on one data folder: (url, data folder, watch log)."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "incoming").mkdir()
    logs = tmp_path_factory.mktemp("logs")
    port = _free_port()
    voila_cmd = [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}",
                 "--Voila.ip=127.0.0.1", "--MappingKernelManager.cull_idle_timeout=300",
                 "--MappingKernelManager.cull_interval=60"]  # fmt: skip
    watch_cmd = [sys.executable, "-m", "atomstat", "watch", str(data_dir / "incoming"),
                 "--out", str(data_dir / "results"), "--polling"]  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": EXAMPLE}
    voila_log, watch_log = logs / "voila.log", logs / "watch.log"
    with voila_log.open("w") as sink:
        server = subprocess.Popen(voila_cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                  env=env)  # fmt: skip
    with watch_log.open("w") as sink:
        watcher = subprocess.Popen(watch_cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                   env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_ready(url, server, voila_log)
        yield url, data_dir, watch_log
    finally:
        stop(watcher)
        stop(server)


def _lattice(seed):
    sim = simulate_lattice("hexagonal", shape=(256, 256), spacing=14, sigma=2.0, rng=seed)
    return sim.image.astype(np.float32), len(sim.atoms)


def _land_slowly(path: Path, image: np.ndarray) -> None:
    """Write a .npy in four pieces, 0.3 s apart, as a slow writer would."""
    from numpy.lib import format as npformat

    with path.open("wb") as sink:
        npformat.write_array_header_1_0(sink, npformat.header_data_from_array_1_0(image))
        sink.flush()
        raw = image.tobytes()
        step = -(-len(raw) // 4)
        for start in range(0, len(raw), step):
            time.sleep(0.3)
            sink.write(raw[start : start + step])
            sink.flush()


def _follow(page, url, errors) -> None:
    page.route(re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"),
               lambda route: _stub_external(route, errors))  # fmt: skip
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.goto(url, timeout=120_000)
    found = page.locator(".atomstat-found").filter(has_text=re.compile(r"\d+ atoms at threshold"))
    found.wait_for(timeout=180_000)  # the example, analysed as the page opened
    page.get_by_text("Live run and library", exact=True).click()
    page.get_by_role("button", name="Follow live").click()
    waiting = page.locator(".bqplot .mainheading").filter(has_text="waiting")
    waiting.wait_for(timeout=30_000)  # nothing written yet
    # The page scrolled itself to the live view: its buttons and its whole frame on screen
    live = page.locator(".bqplot").filter(has=page.locator(".mainheading", has_text="waiting"))
    button = page.get_by_role("button", name="Follow live")
    deadline = time.monotonic() + 10
    while not (_on_screen(live) and _on_screen(button)):
        assert time.monotonic() < deadline, (live.bounding_box(), button.bounding_box())
        time.sleep(0.1)


def _on_screen(locator) -> bool:
    box = locator.bounding_box()
    return (box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]
            and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"])  # fmt: skip


def _frame_drawn(page, name: str) -> float:
    """Share of the Live view's plot area that is dark grey: the frame's lattice
    background, drawn under the atoms (a blank frame is white, its dots blue)."""
    from io import BytesIO

    from PIL import Image

    title = page.locator(".mainheading", has_text=f"{name}, frame 0:")
    figure = page.locator(".bqplot").filter(has=title).first
    plot = figure.locator(".plotarea_background").first
    rgb = np.asarray(Image.open(BytesIO(plot.screenshot())).convert("RGB")).astype(int)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return float(((rgb.max(axis=2) < 80) & (spread < 12)).mean())


def _shown(page, name: str, timeout: float = 90_000) -> tuple[int, int, int]:
    """(atoms of the newest frame, frames, atoms) once the tab shows ``name``."""
    title = page.locator(".bqplot .mainheading").filter(has_text=f"{name}, frame 0:")
    title.wait_for(timeout=timeout)
    newest = int(TITLE.search(title.first.text_content()).group(3))
    totals = TOTALS.search(page.get_by_text(TOTALS).first.inner_text())
    return newest, int(totals.group(1)), int(totals.group(2))


def _written(results: Path, name: str, timeout: float = 90) -> int:
    """Wait for the watcher to write ``name``'s source record and atoms; their partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in (results / "sources").glob("*.parquet"):
            try:
                row = pd.read_parquet(record)
            except (OSError, ValueError):  # being written
                continue
            parts = list((results / "atoms" / record.stem).glob("frames-*.parquet"))
            if (row["name"] == name).any() and parts:
                return len(parts)
        time.sleep(0.05)
    raise AssertionError(f"the watcher wrote nothing for {name} in {timeout} s")


def _dots(page) -> int:
    """Atoms drawn on the Live view's frame (its scatter's markers)."""
    return page.evaluate(
        """() => {
          for (const fig of document.querySelectorAll('.bqplot')) {
            const t = fig.querySelector('.mainheading');
            const live = t && / frame \\d+: /.test(t.textContent);
            if (live) return fig.querySelectorAll('.dot').length;
          }
          return -1;
        }"""
    )


def test_two_viewers_follow_a_watched_folder(live_server, tmp_path):
    url, data_dir, watch_log = live_server
    chromium = _require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_page(viewport=VIEWPORT) for _ in range(2)]
            for page in pages:
                _follow(page, url, errors)
            expected_frames, expected_atoms = 0, 0
            for name, seed, slow in (("first.npy", 1, True), ("second.npy", 2, False)):
                image, truth = _lattice(seed)
                landed = time.perf_counter()
                if slow:
                    _land_slowly(data_dir / "incoming" / name, image)
                else:  # all at once, the way a copy lands: written aside, then renamed
                    np.save(data_dir / f".{name}", image)
                    os.replace(data_dir / f".{name}", data_dir / "incoming" / name)
                written = _written(data_dir / "results", name)
                stored = time.perf_counter() - landed
                seen = [_shown(page, name) for page in pages]
                latency = time.perf_counter() - landed
                print(
                    f"\n{name}: in the dataset {stored:.1f} s, on both screens {latency:.1f} s "
                    f"after it started to land ({written} partition)"
                )
                results = data_dir / "results"
                rows = pd.read_parquet(results / "atoms")
                sources = pd.read_parquet(results / "sources")
                sid = sources.loc[sources["name"] == name, "source_id"].item()
                mine = len(pd.read_parquet(results / "atoms" / sid))
                expected_frames += 1
                expected_atoms = len(rows)
                assert abs(mine - truth) <= 0.03 * truth, (name, mine, truth)
                for page, (newest, frames, atoms) in zip(pages, seen, strict=True):
                    assert newest == mine  # the newest frame, as the dataset holds it
                    assert (frames, atoms) == (expected_frames, expected_atoms)
                    assert _dots(page) == mine  # every atom drawn on the frame
                    dark = _frame_drawn(page, name)
                    assert dark > 0.3, f"the frame under the atoms is not drawn ({dark:.0%} dark)"
            shot = tmp_path / "live_1366x768.png"
            pages[1].screenshot(path=str(shot))
            keep = os.environ.get("ATOMSTAT_SCREENSHOT_DIR")
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, Path(keep) / shot.name)
            for page in pages:
                assert page.locator(".atomstat-errors").inner_text().strip() == ""
        finally:
            browser.close()
    assert errors == [], errors
    log = watch_log.read_text()
    assert "first.npy" in log and "second.npy" in log, log[-2000:]
