"""Dashboard benchmark: kernel-side redraw times, first render in a browser, kernel culling.

1. Kernel side (no browser): the page of ``app.page.make_page`` on a simulated
   hexagonal lattice (1024^2 with about 2000 atoms, 2048^2 with about 5000),
   after the shipped network has run once. For a threshold change, a brush on
   the descriptor scatter and a label of the selection, the time from the user
   action (the widget trait the browser would set) until every view has
   copied the state into its marks. For the threshold change, the share spent
   in :func:`atomstat.maps.relocate` (the library re-extracting the blobs) is
   given too. Median of 3.
2. First render: Voila serving ``app/dashboard.ipynb`` (the bundled MoS2 image
   opened), Debian Chromium via Playwright: time from the page request until
   the image and the "Find atoms" button are on screen. Median of 2 loads
   (each load starts a kernel).
3. Culling: a server with ``cull_idle_timeout=10 s``, ``cull_interval=2 s``;
   one page load, the browser closed, then the kernel processes still alive
   are counted until none is left (or 60 s).

Run: ``.venv/bin/python bench/bench_dashboard.py`` (about 3 minutes).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.page import make_page  # noqa: E402
from app.selection import IdsRule  # noqa: E402
from atomstat.maps import relocate  # noqa: E402
from atomstat.simulate import simulate_lattice  # noqa: E402
from bench._serving import free_port, start  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
CASES = (("1024^2", 1024, 24.0), ("2048^2", 2048, 30.8))


def _median_time(action, repeats=3) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kernel_side(side: int, spacing: float) -> dict:
    sim = simulate_lattice("hexagonal", shape=(side, side), spacing=spacing, sigma=2.4, rng=3)
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / "image.npy", sim.image)
        page = make_page(data_dir=folder, example="")
        state = page.state
        state.open_file("image.npy")
        state.detect()
        n_atoms = len(state.table)
        levels = (0.45, 0.55, 0.5)
        threshold = _median_time(lambda i: setattr(page.detection.threshold, "value", levels[i]))
        relocating = _median_time(
            lambda i: relocate(
                state.prob[0], state.frames[0], threshold=0.5, attrs=state.atoms.attrs
            )
        )
        table, brush = state.table, page.explorer.brush

        def do_brush(i):
            brush.brushing = True
            brush.selected_x = [float(table.area.quantile(0.5 + 0.1 * i)), 1e9]
            brush.selected_y = [0.0, 1.0]
            brush.brushing = False

        brushing = _median_time(do_brush)
        n_selected = len(state.selected)
        labelling = _median_time(lambda i: state.label_selection(f"class {i}"))
        state.select(IdsRule(()))
    return {"atoms": n_atoms, "threshold": threshold, "relocate": relocating,
            "brush": brushing, "selected": n_selected, "label": labelling}  # fmt: skip


def _serve(data_dir: str, cull: tuple[int, int] | None, log):
    port = free_port()
    command = [sys.executable, "-m", "voila", str(ROOT / "app" / "dashboard.ipynb"),
               "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]  # fmt: skip
    if cull:
        command += [f"--MappingKernelManager.cull_idle_timeout={cull[0]}",
                    f"--MappingKernelManager.cull_interval={cull[1]}",
                    "--MappingKernelManager.cull_connected=True"]  # fmt: skip
    env = {**os.environ, "ATOMSTAT_DATA_DIR": data_dir}
    return start(command, port, env, log, seconds=60)


def _kernels(server) -> int:
    import psutil

    count = 0
    for child in psutil.Process(server.pid).children(recursive=True):
        try:  # a culled kernel is a zombie until the server reaps it: it no longer counts
            alive = child.status() != psutil.STATUS_ZOMBIE
            count += alive and "ipykernel" in " ".join(child.cmdline())
        except psutil.NoSuchProcess:  # ZombieProcess included: it ended while we looked
            continue
    return count


def _load(browser, url) -> float:
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.route("https://**", lambda route: route.fulfill(status=200, body=""))
    start = time.perf_counter()
    page.goto(url, timeout=120_000)
    page.get_by_role("button", name="Find atoms", exact=True).wait_for(timeout=120_000)
    page.locator(".atomstat-image image").first.wait_for(state="attached", timeout=120_000)
    seconds = time.perf_counter() - start
    page.close()
    return seconds


def browser_side() -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "voila.log", "w") as log:
        for cull in (None, (10, 2)):
            server, url = _serve(folder, cull, log)
            try:
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    loads = [_load(browser, url) for _ in range(1 if cull else 2)]
                    browser.close()
                if cull is None:
                    out["first_render"] = statistics.median(loads)
                    out["renders"] = loads
                    continue
                out["kernels_after_close"] = _kernels(server)
                start = time.perf_counter()
                while _kernels(server) and time.perf_counter() - start < 60:
                    time.sleep(1)
                out["kernels_after_cull"] = _kernels(server)
                out["cull_seconds"] = time.perf_counter() - start
            finally:
                server.terminate()
                server.wait(timeout=30)
    return out


def main() -> None:
    rows = []
    for name, side, spacing in CASES:
        r = kernel_side(side, spacing)
        rows.append(
            f"| {name} | {r['atoms']} | {r['threshold']:.3f} ({r['relocate']:.3f} relocate, "
            f"{r['threshold'] - r['relocate']:.3f} views) | {r['brush']:.3f} ({r['selected']} "
            f"selected) | {r['label']:.3f} |"
        )
    print("Kernel side, every view redrawn (median of 3, s):\n")
    print("| image | atoms | threshold change | brush | label (incl. autosave) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    b = browser_side()
    print("\nVoila + Chromium:\n")
    print("| measure | value |")
    print("|---|---|")
    renders = ", ".join(f"{s:.1f}" for s in b["renders"])
    print(f"| first render, request to image on screen (median of 2) | {b['first_render']:.1f} s "
          f"({renders}) |")  # fmt: skip
    print(f"| kernels right after the tab closed (cull 10 s / every 2 s) | "
          f"{b['kernels_after_close']} |")  # fmt: skip
    print(
        f"| kernels after culling | {b['kernels_after_cull']} (after {b['cull_seconds']:.0f} s) |"
    )


if __name__ == "__main__":
    main()
