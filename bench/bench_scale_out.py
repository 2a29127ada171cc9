"""Scale-out: frames per second with 1 and 2 local Dask workers against one process,
the memory per worker, and the peak memory of a short and a long lazy movie.

    python bench/bench_scale_out.py                      # 200 x 1024^2, then 200 vs 2000 x 512^2
    python bench/bench_scale_out.py --frames 40 --size 512 --lazy-frames 100 1000 --lazy-size 256

The movie is written to a temporary .npy file (distinct simulated frames,
shifted a little from frame to frame) and read lazily, as a microscope's
movie would be. The single-process path is ``atomstat.analyze`` on the lazy
movie (TensorFlow uses every core); each worker has one task thread and an
equal share of the cores. Each cluster is warmed up (model loaded, graph
traced) before it is timed. The load average is printed: on a shared
machine the ratios, not the absolute rates, are the figures to read.

The memory section runs the same batch on a short and a long lazy movie and
prints each worker's peak RSS and the peak RSS of this process (the client
and, for a LocalCluster, the scheduler) sampled during the run: neither may
grow with the number of frames. (It did, by the size of the movie, while
``atomstat.load(lazy=True)`` handed the memory map to ``dask.from_array``,
which copies what it is given.)
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def write_movie(path: Path, n_frames: int, size: int, distinct: int = 8) -> Path:
    """A (n_frames, size, size) float32 .npy movie written frame by frame (bounded memory)."""
    from atomstat.simulate import Defects, simulate_lattice

    base = [
        simulate_lattice(
            "hexagonal", shape=(size, size), spacing=12, sigma=1.8,
            defects=Defects(dopants=0.01, dopant_ratio=2.0), rng=seed,
        ).image
        for seed in range(min(distinct, n_frames))
    ]  # fmt: skip
    movie = np.lib.format.open_memmap(path, "w+", np.float32, (n_frames, size, size))
    for i in range(n_frames):
        movie[i] = np.roll(base[i % len(base)], (i // len(base)) % 12, axis=1)
    movie.flush()
    del movie
    return path


def _peak_rss_mb() -> float:
    """This process's own peak RSS (MB): VmHWM on Linux. Not ru_maxrss: Linux carries a
    process's high-water mark over exec, so a spawned worker's ru_maxrss starts at the RSS
    of the process it was forked from (here the one that wrote the movie)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def single_process(path: Path) -> dict:
    import atomstat

    atomstat.analyze(np.load(path, mmap_mode="r")[:2])  # warm up: model, graph
    start = time.perf_counter()
    atoms = atomstat.analyze(atomstat.load(path, lazy=True))
    seconds = time.perf_counter() - start
    n = int(atoms["frame"].max()) + 1
    return {"frames": n, "seconds": seconds, "atoms": len(atoms)}


def on_cluster(path: Path, workers: int, out: Path) -> dict:
    from atomstat.batch import analyze_files
    from atomstat.distributed import close, local_cluster

    client = local_cluster(workers, dashboard=False)
    try:
        warm = path.with_name("warm.npy")
        np.save(warm, np.load(path, mmap_mode="r")[: 2 * workers])
        analyze_files([warm], out / "warm", client=client, frames_per_task=1, defects=False)
        start = time.perf_counter()
        report = analyze_files(
            [path], out / f"w{workers}", client=client, frames_per_task=4, defects=False
        )  # the same work as atomstat.analyze: no defect finder
        seconds = time.perf_counter() - start
        rss = client.run(_rss_mb)
        peak = client.run(_peak_rss_mb)
    finally:
        close(client)
    if report.failed:
        raise RuntimeError(report.summary())
    return {"frames": report.frames, "seconds": seconds, "rss": rss, "peak": peak}


def throughput(args, folder: Path) -> None:
    path = write_movie(folder / "movie.npy", args.frames, args.size)
    print(f"\n## Throughput: {args.frames} frames of {args.size}^2 (load average "
          f"{_load()} at the start)\n")  # fmt: skip
    print("| path | frames/s | ratio to one process | memory per worker (RSS now / peak, MB) |")
    print("|---|---|---|---|")
    base = single_process(path)
    rate = base["frames"] / base["seconds"]
    print(f"| one process (atomstat.analyze, lazy) | {rate:.2f} | 1.00 | "
          f"{_rss_mb():.0f} / {_peak_rss_mb():.0f} (this process) |")  # fmt: skip
    for workers in args.workers:
        got = on_cluster(path, workers, folder)
        r = got["frames"] / got["seconds"]
        mem = ", ".join(f"{got['rss'][w]:.0f} / {got['peak'][w]:.0f}" for w in sorted(got["rss"]))
        print(f"| LocalCluster, {workers} worker(s) | {r:.2f} | {r / rate:.2f} | {mem} |")
    print(f"\nload average at the end: {_load()}")
    path.unlink()


class _Sampler:
    """The highest RSS of this process (the client, and the scheduler of a LocalCluster)
    while it runs, sampled every 50 ms."""

    def __enter__(self):
        import threading

        self.peak, self._stop = _rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def bounded_memory(args, folder: Path) -> None:
    print(f"\n## Memory: lazy movies of {args.lazy_size}^2, {args.lazy_workers} workers "
          f"(load average {_load()})\n")  # fmt: skip
    print("| frames | movie (MB) | seconds | frames/s | worker peak RSS (MB) | "
          "client peak RSS during the run (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    peaks = []
    for n in args.lazy_frames:
        path = write_movie(folder / f"lazy{n}.npy", n, args.lazy_size)
        with _Sampler() as client:
            got = on_cluster(path, args.lazy_workers, folder / f"lazy{n}")
        peak = ", ".join(f"{got['peak'][w]:.0f}" for w in sorted(got["peak"]))
        peaks.append((max(got["peak"].values()), client.peak))
        print(f"| {n} | {path.stat().st_size / 2**20:.0f} | {got['seconds']:.1f} | "
              f"{got['frames'] / got['seconds']:.2f} | {peak} | {client.peak:.0f} |")  # fmt: skip
        path.unlink()
    (w0, c0), (w1, c1) = peaks[0], peaks[-1]
    print(
        f"\npeak growth from {args.lazy_frames[0]} to {args.lazy_frames[-1]} frames: "
        f"workers {w1 - w0:+.0f} MB, client {c1 - c0:+.0f} MB (load average {_load()})"
    )


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lazy-frames", type=int, nargs="+", default=[200, 2000])
    p.add_argument("--lazy-size", type=int, default=512)
    p.add_argument("--lazy-workers", type=int, default=2)
    p.add_argument("--skip", choices=("throughput", "memory"), default=None)
    args = p.parse_args()
    print(f"# bench_scale_out ({os.cpu_count()} cores; full size is 200 x 1024^2 and "
          f"200 vs 2000 x 512^2)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="atomstat-scale-") as tmp:
        if args.skip != "throughput":
            throughput(args, Path(tmp))
        if args.skip != "memory":
            bounded_memory(args, Path(tmp))


if __name__ == "__main__":
    main()
