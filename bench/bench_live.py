"""Live mode latency: from a file landing in the watched folder to its rows in the dataset.

    python bench/bench_live.py                 # 1024^2 frames, 8 files each way
    python bench/bench_live.py --size 512 --files 4

A watcher (``atomstat.watch.Watcher``, watchdog events, anomaly flags by
one-class SVM as ``atomstat watch`` does) follows a temporary folder. Files
land in three ways: renamed into place (how acquisition software should
write), written in one go (``np.save``), and appended as the next frame of a
growing ``.npy`` stack. The latency is the time from the last byte landing
to the partition holding the file's atoms appearing in the dataset; the
analysis alone (``atomstat.analyze`` on the same frame, same process) is
printed beside it. The load average is printed too: on a shared machine
the figures are inflated.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


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


def _land(folder: Path, out: Path, how: str, i: int, frame, stack) -> float:
    from atomstat.dataset import source_id

    if how == "stack":
        path = folder / "movie.npy"
        stack.write(frame.tobytes())
        stack.flush()
        start = time.perf_counter()
        part = out / "atoms" / source_id(path) / f"frames-{i:06d}-{i:06d}.parquet"
        return _wait_for(part) - start
    path = folder / f"{how}_{i:03d}.npy"
    if how == "rename":
        tmp = folder / f".{path.stem}.partial.npy"  # hidden while it is written
        np.save(tmp, frame)
        start = time.perf_counter()
        os.replace(tmp, path)
    else:
        np.save(path, frame)
        start = time.perf_counter()
    return _wait_for(out / "atoms" / source_id(path) / "frames-000000-000000.parquet") - start


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
        try:
            results = _measure(folder, out, frames, args.files)
        finally:
            stop.set()
            thread.join()
    print("| how the file lands | median (s) | max (s) | analysis alone, median (s) |")
    print("|---|---|---|---|")
    for how, seconds in results.items():
        print(f"| {how} | {np.median(seconds):.2f} | {np.max(seconds):.2f} | "
              f"{np.median(analysis[1:]):.2f} |")  # fmt: skip
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _measure(folder: Path, out: Path, frames, n: int) -> dict:
    _land(folder, out, "rename", 999, frames[-1], None)  # the first one warms the watcher up
    results = {"renamed into place": [], "written in one go (np.save)": [],
               "next frame of a growing .npy stack": []}  # fmt: skip
    for i in range(n):
        results["renamed into place"].append(_land(folder, out, "rename", i, frames[i], None))
        time.sleep(0.2)
        results["written in one go (np.save)"].append(
            _land(folder, out, "save", i, frames[i], None)
        )
        time.sleep(0.2)
    stack = np.stack(frames[:n])
    with open(folder / "movie.npy", "wb") as f:
        header = np.lib.format.header_data_from_array_1_0(stack)
        np.lib.format.write_array_header_1_0(f, header)
        for i in range(n):
            results["next frame of a growing .npy stack"].append(
                _land(folder, out, "stack", i, stack[i], f)
            )
            time.sleep(0.2)
    return results


if __name__ == "__main__":
    main()
