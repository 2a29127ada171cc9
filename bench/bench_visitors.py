"""Visitors benchmark: memory of N dashboard kernels at once, and how fast they are freed.

The dashboard is served as ``atomstat dashboard`` serves it (``atomstat.serve_app``,
the bundled MoS2 image opened). N visitors (default 10) open the page one
after another in Debian Chromium (Playwright, one browser, one context each)
and keep it open, then all press "Find atoms" at once (unless
``--no-analyse``). Then, for every kernel
process (a child of the server running ``ipykernel``):

* RSS, the resident memory the system reports, which counts the shared
  libraries (TensorFlow, NumPy, ...) in every process that maps them;
* USS, the memory unique to that process: what one more visitor costs;

and the server's own RSS. Then every tab is closed and the seconds until the
server holds no kernel are given, as counted by ``/atomstat/api/kernels``.

Run: ``.venv/bin/python bench/bench_visitors.py [--visitors 10] [--no-analyse]``
(about 10 minutes for 10 on 2 busy cores). It refuses to start when the
machine has less than 1.3 GB of available memory per visitor.
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
            out.append({"rss": info.rss / MB, "uss": info.uss / MB})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _visit(playwright, url: str, n: int, analyse: bool):
    """Open ``n`` tabs one after another (each rendered before the next is asked for: ten
    requests at once on 2 cores left every page without its scripts for minutes), keep them
    all open, then press Find atoms in every one at once."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    pages = []
    start = time.perf_counter()
    for i in range(n):
        page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        page.route("https://**", lambda route: route.fulfill(status=200, body=""))
        page.goto(url, timeout=600_000)
        page.get_by_role("button", name="Find atoms", exact=True).wait_for(timeout=600_000)
        pages.append(page)
        print(f"visitor {i + 1} rendered at {time.perf_counter() - start:.0f} s", flush=True)
    rendered = time.perf_counter() - start
    if analyse:
        for page in pages:
            page.get_by_role("button", name="Find atoms", exact=True).click()
        for page in pages:
            page.locator(".atomstat-status").filter(has_text=STATUS).wait_for(timeout=900_000)
    return browser, pages, rendered, time.perf_counter() - start


def _close(pages, url: str) -> float:
    start = time.perf_counter()
    for page in pages:
        page.unroute_all(behavior="ignoreErrors")  # Playwright drops intercepted beacons
        page.close(run_before_unload=True)
    while _count(url)["kernels"] and time.perf_counter() - start < 120:
        time.sleep(0.5)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=10)
    parser.add_argument("--no-analyse", dest="analyse", action="store_false")
    args = parser.parse_args()
    need = args.visitors * 1.3 * 2**30
    if psutil.virtual_memory().available < need:
        sys.exit(f"needs {need / 2**30:.0f} GB of available memory for {args.visitors} visitors")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "serve.log", "w") as log:
        server, url = _serve(Path(folder), log)
        try:
            idle = _count(url)
            server_idle = psutil.Process(server.pid).memory_info().rss / MB
            with sync_playwright() as playwright:
                browser, pages, rendered, ready = _visit(playwright, url, args.visitors,
                                                         args.analyse)  # fmt: skip
                counted = _count(url)
                kernels = _kernel_memory(server)
                server_busy = psutil.Process(server.pid).memory_info().rss / MB
                freed = _close(pages, url)
                browser.close()
            after = _count(url)
        finally:
            server.terminate()
            server.wait(timeout=60)
    _report(args, idle, counted, after, kernels, server_idle, server_busy, rendered, ready, freed)


def _report(args, idle, counted, after, kernels, server_idle, server_busy, rendered, ready, freed):
    rss = [k["rss"] for k in kernels]
    uss = [k["uss"] for k in kernels]
    what = "all pages open, Find atoms run in each" if args.analyse else "all pages open"
    print(f"\n{args.visitors} visitors at once ({what}); machine: {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GB\n")  # fmt: skip
    print("| quantity | value |")
    print("|---|---|")
    print(f"| kernels before / with visitors (connected) / after closing | {idle['kernels']} / "
          f"{counted['kernels']} ({counted['connected']}) / {after['kernels']} |")  # fmt: skip
    print(
        f"| all pages rendered (one after another) / analysed | {rendered:.0f} s / {ready:.0f} s |"
    )
    print(f"| kernel RSS per visitor, min-max (mean) | {min(rss):.0f}-{max(rss):.0f} MB "
          f"({sum(rss) / len(rss):.0f} MB) |")  # fmt: skip
    print(f"| kernel USS per visitor, min-max (mean) | {min(uss):.0f}-{max(uss):.0f} MB "
          f"({sum(uss) / len(uss):.0f} MB) |")  # fmt: skip
    print(
        f"| all kernels: RSS sum / USS sum | {sum(rss) / 1024:.1f} GB / {sum(uss) / 1024:.1f} GB |"
    )
    print(f"| server RSS idle / with visitors | {server_idle:.0f} MB / {server_busy:.0f} MB |")
    print(f"| seconds from closing every tab to no kernel | {freed:.1f} s |")


if __name__ == "__main__":
    main()
