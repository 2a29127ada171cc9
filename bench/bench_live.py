"""Live mode latency: from a file landing in the watched folder to its rows in the dataset,
and to the dashboard's Live view showing them.

    python bench/bench_live.py                 # 1024^2 frames, 8 files each way
    python bench/bench_live.py --size 512 --files 4

A watcher (``atomstat.watch.Watcher``, watchdog events, anomaly flags by
one-class SVM as ``atomstat watch`` does) follows a temporary folder. Files
land in three ways: renamed into place (how acquisition software should
write), written in one go (``np.save``), and appended as the next frame of a
growing ``.npy`` stack. The latency is the time from the last byte landing
to the partition holding the file's atoms appearing in the dataset; the
analysis alone (``atomstat.analyze`` on the same frame, same process) is
printed beside it. A Live view (``app.live_view.LiveView`` on the same
dataset, refreshed as often as the dashboard's, ``app.runs_panel.LIVE_INTERVAL``,
in this process) runs
beside the watcher: the second latency is from the last byte landing to the
view having drawn the file's frame, atoms and counts (what the kernel sends;
the browser's own drawing is timed in tests/test_app_browser_live.py). The
load average is printed too: on a shared machine the figures are inflated.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _frames(size: int, n: int) -> list:
    from atomstat.simulate import simulate_lattice

    return [
        simulate_lattice("hexagonal", shape=(size, size), spacing=12, sigma=1.8, rng=s).image
        for s in range(n)
    ]


def _wait_for(path: Path, timeout: float = 120.0) -> float:
    deadline = time.perf_counter() + timeout
    while not path.exists():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{path} did not appear in {timeout} s")
        time.sleep(0.005)
    return time.perf_counter()


class _Screen:
    """A Live view on the dataset, refreshed as often as the dashboard's in a thread, with
    the time each file's frame was first drawn."""

    def __init__(self, out: Path):
        import sys

        sys.path.insert(0, str(ROOT))
        from app.live_view import LiveFeed, LiveView
        from app.runs_panel import LIVE_INTERVAL

        self.interval = LIVE_INTERVAL  # the dashboard's
        self.view = LiveView(LiveFeed(out), interval=self.interval)
        self.drawn: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.view.refresh():
                sid, frame = self.view.feed.newest_key
                self.drawn.setdefault((sid, frame), time.perf_counter())

    def wait(self, sid: str, frame: int, timeout: float = 120.0) -> float:
        deadline = time.perf_counter() + timeout
        while (sid, frame) not in self.drawn:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the view did not draw {sid} frame {frame} in {timeout} s")
            time.sleep(0.005)
        return self.drawn[(sid, frame)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _land(folder: Path, out: Path, how: str, i: int, frame, stack, screen) -> tuple:
    """(seconds to the dataset, seconds to the Live view) for one file landing."""
    from atomstat.dataset import source_id

    if how == "stack":
        path = folder / "movie.npy"
        stack.write(frame.tobytes())
        stack.flush()
        start = time.perf_counter()
        part = out / "atoms" / source_id(path) / f"frames-{i:06d}-{i:06d}.parquet"
        stored = _wait_for(part) - start
        return stored, screen.wait(source_id(path), i) - start
    path = folder / f"{how}_{i:03d}.npy"
    if how == "rename":
        tmp = folder / f".{path.stem}.partial.npy"  # hidden while it is written
        np.save(tmp, frame)
        start = time.perf_counter()
        os.replace(tmp, path)
    else:
        np.save(path, frame)
        start = time.perf_counter()
    stored = _wait_for(out / "atoms" / source_id(path) / "frames-000000-000000.parquet") - start
    return stored, screen.wait(source_id(path), 0) - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--files", type=int, default=8)
    args = p.parse_args()
    import atomstat
    from atomstat.watch import Watcher

    frames = _frames(args.size, args.files + 1)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# bench_live: {args.size}^2 frames, {args.files} per way (load average {load}; "
          "target <= 2 s at 1024^2)\n")  # fmt: skip
    analysis = []
    for frame in frames[:3]:
        start = time.perf_counter()
        atomstat.add_anomalies(atomstat.analyze(frame))
        analysis.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory(prefix="atomstat-live-") as tmp:
        folder, out = Path(tmp) / "microscope", Path(tmp) / "results"
        folder.mkdir()
        stop = threading.Event()
        watcher = Watcher(folder, out, settle=1.0)
        thread = threading.Thread(target=watcher.run, args=(stop,))
        thread.start()
        screen = _Screen(out)
        try:
            results = _measure(folder, out, frames, args.files, screen)
        finally:
            stop.set()
            thread.join()
            screen.close()
    print("| how the file lands | to the dataset: median (s) | max (s) | "
          "to the Live view: median (s) | max (s) | analysis alone, median (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for how, pairs in results.items():
        stored, shown = np.array(pairs).T
        print(f"| {how} | {np.median(stored):.2f} | {np.max(stored):.2f} | "
              f"{np.median(shown):.2f} | {np.max(shown):.2f} | "
              f"{np.median(analysis[1:]):.2f} |")  # fmt: skip
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _measure(folder: Path, out: Path, frames, n: int, screen) -> dict:
    _land(folder, out, "rename", 999, frames[-1], None, screen)  # warms the watcher up
    results = {"renamed into place": [], "written in one go (np.save)": [],
               "next frame of a growing .npy stack": []}  # fmt: skip
    for i in range(n):
        results["renamed into place"].append(
            _land(folder, out, "rename", i, frames[i], None, screen)
        )
        time.sleep(0.2)
        results["written in one go (np.save)"].append(
            _land(folder, out, "save", i, frames[i], None, screen)
        )
        time.sleep(0.2)
    stack = np.stack(frames[:n])
    with open(folder / "movie.npy", "wb") as f:
        header = np.lib.format.header_data_from_array_1_0(stack)
        np.lib.format.write_array_header_1_0(f, header)
        for i in range(n):
            results["next frame of a growing .npy stack"].append(
                _land(folder, out, "stack", i, stack[i], f, screen)
            )
            time.sleep(0.2)
    return results


if __name__ == "__main__":
    main()
