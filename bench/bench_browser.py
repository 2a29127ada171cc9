"""Dashboard latencies measured in the browser: zoom, pan, threshold step, brush.

Voila serves ``app/dashboard.ipynb``; Debian Chromium (Playwright, never
``playwright install``) opens it at 1600x1000. For each simulated hexagonal
lattice (``atomstat.simulate_lattice``: 1024^2 with about 2,000 atoms and
2048^2 with about 8,000, saved as ``.npy`` in the data folder) the page opens
the file, finds the atoms and then times, from the user's input event until
the last change it causes has been painted:

- **zoom**: one wheel step over the image (pan/zoom tool);
- **pan**: one 40 px mouse-drag step over the image;
- **threshold**: one step (0.05) of the threshold slider with the arrow key,
  until every view (image, scatter, histograms, counters) has redrawn;
- **brush**: a rectangle dragged on the descriptor scatter, from the mouse's
  release (the drag itself lasts as long as the hand makes it; in the browser's
  4-step drag here, 90-230 ms) until the image and the other views show the
  selection.

"Painted" is the first animation frame after the last DOM change in the
dashboard, once no change has come for ``QUIET`` s; the quiet wait itself is
not counted. Medians of ``REPEATS`` steps (first step dropped as warm-up).

Run: ``.venv/bin/python bench/bench_browser.py [--sizes 1024 2048] [--only brush]
[--data DIR]`` (about 3 minutes; timings on a loaded 2-core machine are
inflated). ``--data`` keeps the images and the dashboard's analysis cache in
``DIR``, so that a second run (say, of another version of the app, for a
before/after comparison) skips the network; ``--only`` times some steps.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atomstat.simulate import simulate_lattice  # noqa: E402
from bench._serving import free_port, start  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
SPACING = {1024: 24.0, 2048: 24.3}  # about 2,000 and 8,000 atoms
REPEATS = 6
QUIET = 0.4

# In the page: time from now until the first paint after the last DOM change (quiet QUIET s).
_SETTLE_JS = """
async ([quiet, timeout]) => {
  const root = document.body;
  const t0 = window.__atomstat_t0 ?? performance.now();
  let last = t0, painted = t0;
  const obs = new MutationObserver(() => {
    last = performance.now();
    requestAnimationFrame(() => { painted = performance.now(); });
  });
  obs.observe(root, {subtree: true, childList: true, attributes: true, characterData: true});
  const start = performance.now();
  while (performance.now() - last < quiet * 1000 && performance.now() - start < timeout * 1000) {
    await new Promise(r => setTimeout(r, 20));
  }
  obs.disconnect();
  return Math.max(painted, last) - t0;
}
"""
_ARM_JS = """
() => {
  window.__atomstat_t0 = performance.now();
  window.__atomstat_changes = 0;
  if (!window.__atomstat_obs) {
    window.__atomstat_obs = new MutationObserver(() => {
      window.__atomstat_last = performance.now();
      requestAnimationFrame(() => { window.__atomstat_paint = performance.now(); });
    });
    window.__atomstat_obs.observe(document.body,
      {subtree: true, childList: true, attributes: true, characterData: true});
  }
  window.__atomstat_last = window.__atomstat_t0;
  window.__atomstat_paint = window.__atomstat_t0;
}
"""
_WAIT_JS = """
async ([quiet, timeout, selector, text, differs]) => {
  const start = performance.now();
  const now = () => document.querySelector(selector)?.textContent ?? "";
  const seen = () => !selector || (differs ? now() !== text : now().includes(text));
  while (!seen() && performance.now() - start < timeout * 1000) {
    await new Promise(r => setTimeout(r, 10));
  }
  if (!seen()) return -1;
  while (performance.now() - window.__atomstat_last < quiet * 1000
         && performance.now() - start < timeout * 1000) {
    await new Promise(r => setTimeout(r, 20));
  }
  await new Promise(r => requestAnimationFrame(r));
  return Math.max(window.__atomstat_paint, window.__atomstat_last) - window.__atomstat_t0;
}
"""


def serve(data_dir: Path, log):
    """Start Voila on the dashboard; return the process and its URL once it serves."""
    port = free_port()
    command = [sys.executable, "-m", "voila", str(ROOT / "app" / "dashboard.ipynb"),
               "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
               "--MappingKernelManager.cull_idle_timeout=600",
               "--MappingKernelManager.cull_interval=60"]  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(data_dir), "ATOMSTAT_EXAMPLE": ""}
    return start(command, port, env, log, seconds=120)


def make_images(data_dir: Path, sizes) -> dict[int, int]:
    """Write one simulated lattice per size (unless there); return the true number of atoms."""
    out = {}
    for side in sizes:
        sim = simulate_lattice("hexagonal", shape=(side, side), spacing=SPACING[side], sigma=2.4,
                               rng=3)  # fmt: skip
        path = data_dir / f"lattice_{side}.npy"
        if not path.exists():  # the same bytes: a kept analysis cache still applies
            np.save(path, sim.image.astype(np.float32))
        out[side] = len(sim.atoms)
    return out


def _timed(page, action, selector: str = "", text: str = "", *, differs=False) -> float:
    """Seconds from ``action()`` (input events) until its last change is painted.

    With ``selector``, the change must first show ``text`` in that element
    (with ``differs``: until its text is no longer ``text``).
    """
    page.evaluate(_ARM_JS)
    action()
    ms = page.evaluate(_WAIT_JS, [QUIET, 60, selector, text, differs])
    if ms < 0:
        raise RuntimeError(f"{selector} never showed {text!r}")
    return ms / 1000


def _settle(page) -> None:
    page.evaluate(_ARM_JS)
    page.evaluate(_WAIT_JS, [1.0, 60, "", "", False])


def _plot_box(page, selector: str, margin=(50, 10, 10, 40)) -> dict:
    box = page.locator(selector).first.bounding_box()
    left, top, right, bottom = margin
    return {"x": box["x"] + left, "y": box["y"] + top,
            "w": box["width"] - left - right, "h": box["height"] - top - bottom}  # fmt: skip


def _open_and_find(page, name: str) -> int:
    page.get_by_role("tab", name="Data").click()
    page.locator(".atomstat-files select").select_option(name)
    page.get_by_role("button", name="Open", exact=True).click()
    page.locator(".atomstat-status").filter(has_text=name).wait_for(timeout=120_000)
    page.get_by_role("tab", name="Detection").click()
    page.get_by_role("button", name="Find atoms", exact=True).click()
    done = re.compile(r"(\d+) atoms found|failed|Error")
    status = page.locator(".atomstat-status").filter(has_text=done)
    status.wait_for(timeout=300_000)
    found = re.search(r"(\d+) atoms found", status.inner_text())
    if not found:
        raise RuntimeError(status.inner_text())
    _settle(page)
    return int(found.group(1))


def _zoom_and_pan(page) -> tuple[list[float], list[float]]:
    page.get_by_role("button", name="pan / zoom", exact=True).click()
    box = _plot_box(page, ".atomstat-image")
    cx, cy = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    page.mouse.move(cx, cy)
    zooms = []
    for i in range(REPEATS + 1):
        delta = -100 if i % 2 == 0 else 100  # in, out, in, ...: the view stays near full
        zooms.append(_timed(page, lambda d=delta: page.mouse.wheel(0, d)))
    page.mouse.wheel(0, -200)  # zoomed in, so that a pan moves the view
    _settle(page)
    pans = []
    page.mouse.move(cx, cy)
    page.mouse.down()
    for i in range(REPEATS + 1):
        dx = 40 if i % 2 == 0 else -40
        x = cx + (dx if i % 2 == 0 else 0)
        pans.append(_timed(page, lambda x=x: page.mouse.move(x, cy)))
    page.mouse.up()
    page.get_by_role("button", name="Full view", exact=True).click()
    page.get_by_role("button", name="click atoms", exact=True).click()
    return zooms[1:], pans[1:]


def _threshold_steps(page) -> list[float]:
    handle = page.locator(".atomstat-threshold .noUi-handle").first
    handle.hover()  # off the image, whose shortcut listener takes the keys under the mouse
    handle.focus()
    times = []
    for i in range(REPEATS + 1):
        now = float(page.locator(".atomstat-threshold .widget-readout").first.inner_text())
        key, level = ("ArrowRight", now + 0.05) if i % 2 == 0 else ("ArrowLeft", now - 0.05)
        action = lambda k=key: page.keyboard.press(k)  # noqa: E731
        times.append(_timed(page, action, ".atomstat-found", f"threshold {level:.2f}"))
    return times[1:]


def _brushes(page) -> list[float]:
    box = _plot_box(page, ".atomstat-scatter", margin=(55, 10, 10, 35))
    times = []
    for i in range(REPEATS + 1):
        x0 = 0.3 + 0.05 * (i % 3)

        page.get_by_role("button", name="Clear", exact=True).click()  # a fresh brush
        _settle(page)
        before = page.locator(".atomstat-selected-count").text_content()
        page.mouse.move(box["x"] + x0 * box["w"], box["y"] + 0.02 * box["h"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.98 * box["w"], box["y"] + 0.98 * box["h"], steps=4)
        # timed from the release: the drag lasts as long as the hand that makes it
        times.append(_timed(page, page.mouse.up, ".atomstat-selected-count", before, differs=True))
    return times[1:]


STEPS = ("zoom", "pan", "threshold", "brush")


def measure(url: str, names: dict[int, str], only=STEPS) -> list[dict]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        css = {"status": 200, "content_type": "text/css", "body": ""}
        page.route(re.compile(r"^(?!http://127\.0\.0\.1:)\w+://"), lambda r: r.fulfill(**css))
        page.goto(url, timeout=180_000)
        page.get_by_role("button", name="Find atoms", exact=True).wait_for(timeout=180_000)
        for side, name in names.items():
            row = {"image": f"{side}^2", "atoms": _open_and_find(page, name)}
            if "zoom" in only or "pan" in only:
                row["zoom"], row["pan"] = _zoom_and_pan(page)
            if "threshold" in only:
                row["threshold"] = _threshold_steps(page)
            if "brush" in only:
                row["brush"] = _brushes(page)
            rows.append(row)
        browser.close()
    return rows


def _fmt(times: list[float] | None, target: float) -> str:
    if not times:
        return "-"
    med = statistics.median(times)
    mark = "ok" if med <= target else "SLOW"
    return f"{med * 1000:.0f} ({max(times) * 1000:.0f}) {mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--data", type=Path, help="keep images and analysis cache here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(args.data or folder)
        data_dir.mkdir(parents=True, exist_ok=True)
        truth = make_images(data_dir, args.sizes)
        with open(data_dir / "voila.log", "w") as log:
            server, url = serve(data_dir, log)
            try:
                rows = measure(url, {s: f"lattice_{s}.npy" for s in args.sizes}, args.only)
            finally:
                server.terminate()
                server.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"Voila + Chromium 1600x1000, load average {load:.1f} on {os.cpu_count()} cores.")
    print(f"Median (max) of {REPEATS} steps, ms, input event to last paint:\n")
    print("| image | atoms (true) | zoom step (<150) | pan step (<150) | threshold step (<500) "
          "| brush (<300) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for side, r in zip(args.sizes, rows, strict=True):
        cells = [_fmt(r.get("zoom"), 0.15), _fmt(r.get("pan"), 0.15),
                 _fmt(r.get("threshold"), 0.5), _fmt(r.get("brush"), 0.3)]  # fmt: skip
        print(f"| {r['image']} | {r['atoms']} ({truth[side]}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
