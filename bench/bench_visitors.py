"""Visitors benchmark: N dashboard visitors at once, their kernels' memory, how fast freed.

The dashboard is served as ``atomstat dashboard`` serves it (``atomstat.serve_app``,
the bundled MoS2 image opened). N visitors (default 10) request the page at
the same moment in Debian Chromium (Playwright, one browser, one context each;
``--one-by-one``: each once the one before has rendered), keep it open, and
all press "Find atoms" at once (unless ``--no-analyse``). Each page must show
its controls (its websocket connected) and then the atoms; the seconds from
the first request are given, and what a page that never got there showed.
Then, for every kernel process (a child of the server running ``ipykernel``):

* RSS, the resident memory the system reports, which counts the shared
  libraries (TensorFlow, NumPy, ...) in every process that maps them;
* USS, the memory unique to that process: what one more visitor costs;

once all are analysed, and again once every kernel's warm-up has loaded the
network's engine (LiteRT or TensorFlow; ``--settle``: up to 600 s), and the
server's own RSS. Then every tab is closed and the seconds until the server
holds no kernel are given, as counted by ``/atomstat/api/kernels``. The load average and the memory
available before and during the run are printed: the browsers run on the
same machine as the server here, which real visitors do not.

Run: ``.venv/bin/python bench/bench_visitors.py [--visitors 10] [--no-analyse]
[--one-by-one] [--keep DIR]`` (about 10 minutes for 10 on 2 busy cores). It
refuses to start when the machine has less than 1.3 GB of available memory
per visitor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from atomstat.serve import dashboard_command  # noqa: E402
from bench._serving import free_port, start  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip
STATUS = re.compile(r"\d+ atoms found in")
MB = 2**20
#: How long a page may take to show its controls.
PAGE_SECONDS = 600


def _serve(folder: Path, log):
    port = free_port()
    command = dashboard_command(ROOT / "app" / "dashboard.ipynb", port=port)
    env = {**os.environ, "ATOMSTAT_DATA_DIR": str(folder)}
    return start(command, port, env, log, seconds=150)


def _count(url: str) -> dict:
    with urllib.request.urlopen(url + "atomstat/api/kernels", timeout=10) as response:
        return json.loads(response.read())


def _kernel_memory(server) -> list[dict]:
    out = []
    for child in psutil.Process(server.pid).children(recursive=True):
        try:
            if "ipykernel" not in " ".join(child.cmdline()):
                continue
            info = child.memory_full_info()
            maps = Path(f"/proc/{child.pid}/maps")
            text = maps.read_text() if maps.is_file() else ""
            tf = "libtensorflow" in text or "ai_edge_litert" in text  # the network's engine
            out.append({"rss": info.rss / MB, "uss": info.uss / MB, "tf": tf})
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    return out


def _settled(server, seconds: float) -> tuple[list[dict], float]:
    """The kernels' memory once every one has loaded the network's engine (its warm-up:
    LiteRT for the shipped model, TensorFlow for a .keras file), or after ``seconds``;
    and the seconds waited."""
    start = time.perf_counter()
    kernels = _kernel_memory(server)
    while not all(k["tf"] for k in kernels) and time.perf_counter() - start < seconds:
        time.sleep(5)
        kernels = _kernel_memory(server)
    return kernels, time.perf_counter() - start


def _visit(playwright, url: str, n: int, analyse: bool, at_once: bool, shots: Path | None):
    """Open ``n`` tabs, all requested at once (``at_once``) or one after another (each
    rendered before the next is asked for), keep them all open, then press Find atoms in
    every one at once. Returns the seconds from the first request to each page's
    controls and to its atoms, and the pages that never got there."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    pages, rendered, failed = [], {}, {}
    start = time.perf_counter()

    def wait_rendered(i, page):
        try:
            page.get_by_role("button", name="Find atoms", exact=True).wait_for(
                timeout=max(1_000, int(1000 * (PAGE_SECONDS - (time.perf_counter() - start))))
            )
            rendered[i] = time.perf_counter() - start
            print(f"visitor {i + 1} rendered at {rendered[i]:.0f} s {_count(url)}", flush=True)
        except Exception as exc:  # noqa: BLE001 (reported below, with what the page shows)
            failed[i] = f"{type(exc).__name__}: {page.inner_text('body')[:300]!r}"
            if shots:
                page.screenshot(path=str(shots / f"visitor-{i + 1}.png"))
            print(f"visitor {i + 1} did not render: {failed[i]}", flush=True)

    for i in range(n):
        page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
        page.route("https://**", lambda route: route.fulfill(status=200, body=""))
        page.goto(url, wait_until="commit" if at_once else "load", timeout=600_000)
        pages.append(page)
        if not at_once:
            wait_rendered(i, page)
    if at_once:
        for i, page in enumerate(pages):
            wait_rendered(i, page)
    analysed = {}
    if analyse:
        live = [(i, p) for i, p in enumerate(pages) if i not in failed]
        for _, page in live:
            page.get_by_role("button", name="Find atoms", exact=True).click()
        for i, page in live:
            try:
                page.locator(".atomstat-status").filter(has_text=STATUS).wait_for(timeout=900_000)
                analysed[i] = time.perf_counter() - start
            except Exception as exc:  # noqa: BLE001
                failed[i] = f"not analysed: {type(exc).__name__}"
    return browser, pages, rendered, analysed, failed


def _close(pages, url: str) -> float:
    start = time.perf_counter()
    for page in pages:
        page.unroute_all(behavior="ignoreErrors")  # Playwright drops intercepted beacons
        page.close(run_before_unload=True)
    while _count(url)["kernels"] and time.perf_counter() - start < 120:
        time.sleep(0.5)
    return time.perf_counter() - start


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    mem = psutil.virtual_memory()
    return (f"load average {one:.1f} / {five:.1f} / {fifteen:.1f}, "
            f"{mem.available / 2**30:.1f} of {mem.total / 2**30:.0f} GB available")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--no-analyse", dest="analyse", action="store_false")
    parser.add_argument("--one-by-one", dest="at_once", action="store_false",
                        help="request each page once the one before has rendered")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="keep the server log and screenshots here")
    parser.add_argument("--settle", type=float, default=600.0,
                        help="then wait up to this long (s) for every kernel's warm-up "
                        "(TensorFlow loaded) and measure again (0: do not)")  # fmt: skip
    args = parser.parse_args()
    need = args.visitors * 1.3 * 2**30
    if psutil.virtual_memory().available < need:
        sys.exit(f"needs {need / 2**30:.0f} GB of available memory for {args.visitors} visitors")
    from playwright.sync_api import sync_playwright

    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    before = _load()
    with tempfile.TemporaryDirectory() as folder:
        log_path = (args.keep or Path(folder)) / "serve.log"
        with open(log_path, "w") as log:
            server, url = _serve(Path(folder), log)
            try:
                idle = _count(url)
                server_idle = psutil.Process(server.pid).memory_info().rss / MB
                with sync_playwright() as playwright:
                    browser, pages, rendered, analysed, failed = _visit(
                        playwright, url, args.visitors, args.analyse, args.at_once, args.keep
                    )
                    counted = _count(url)
                    kernels = _kernel_memory(server)
                    server_busy = psutil.Process(server.pid).memory_info().rss / MB
                    during = _load()
                    settled = _settled(server, args.settle) if args.settle > 0 else None
                    freed = _close(pages, url)
                    browser.close()
                after = _count(url)
            finally:
                server.terminate()
                server.wait(timeout=60)
    _report(args, idle, counted, after, kernels, server_idle, server_busy, rendered, analysed,
            failed, freed, (before, during), settled)  # fmt: skip


def _span(values: dict) -> str:
    if not values:
        return "none"
    return f"{min(values.values()):.0f}-{max(values.values()):.0f} s"


def _memory_rows(kernels: list[dict], when: str) -> None:
    rss = [k["rss"] for k in kernels] or [0.0]
    uss = [k["uss"] for k in kernels] or [0.0]
    tf = sum(k["tf"] for k in kernels)
    print(f"| kernel RSS per visitor, {when}, min-max (mean) | {min(rss):.0f}-{max(rss):.0f} MB "
          f"({sum(rss) / len(rss):.0f} MB) |")  # fmt: skip
    print(f"| kernel USS per visitor, {when}, min-max (mean) | {min(uss):.0f}-{max(uss):.0f} MB "
          f"({sum(uss) / len(uss):.0f} MB) |")  # fmt: skip
    print(
        f"| all kernels, {when}: RSS sum / USS sum (kernels with the engine loaded) | "
        f"{sum(rss) / 1024:.1f} GB / {sum(uss) / 1024:.1f} GB ({tf} of {len(kernels)}) |"
    )


def _report(args, idle, counted, after, kernels, server_idle, server_busy, rendered, analysed,
            failed, freed, loads, settled):  # fmt: skip
    what = "all pages open, Find atoms run in each" if args.analyse else "all pages open"
    how = "requested at once" if args.at_once else "requested one after another"
    print(f"\n{args.visitors} visitors ({how}; {what}); machine: {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GB; before: {loads[0]}; "
          f"with the visitors: {loads[1]}\n")  # fmt: skip
    print("| quantity | value |")
    print("|---|---|")
    print(f"| pages rendered / analysed / failed | {len(rendered)} / {len(analysed)} / "
          f"{len(failed)} of {args.visitors} |")  # fmt: skip
    print(f"| kernels before / with visitors (connected) / after closing | {idle['kernels']} / "
          f"{counted['kernels']} ({counted['connected']}) / {after['kernels']} |")  # fmt: skip
    print(f"| seconds from the first request to the controls / to the atoms | {_span(rendered)} "
          f"/ {_span(analysed)} |")  # fmt: skip
    _memory_rows(kernels, "analysed")
    if settled is not None:
        _memory_rows(settled[0], f"warm-ups done ({settled[1]:.0f} s later)")
    print(f"| server RSS idle / with visitors | {server_idle:.0f} MB / {server_busy:.0f} MB |")
    print(f"| seconds from closing every tab to no kernel | {freed:.1f} s |")
    for i, why in sorted(failed.items()):
        print(f"visitor {i + 1}: {why}")


if __name__ == "__main__":
    main()
