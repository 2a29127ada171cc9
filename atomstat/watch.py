"""Live mode: follow the folder a microscope writes into and analyse what lands there.

``watchdog`` reports the files as they are written (a polling observer
replaces it on network shares, where change events do not arrive), and a
rescan every few seconds catches anything an event missed. What is followed:

- a file directly in the folder (any format :func:`atomstat.load` reads),
  analysed once it is complete: no lock file beside it (``NAME.lock``,
  ``.NAME.lock``, ``STEM.lock`` or ``NAME.lck``) and its size and time
  unchanged for ``settle`` seconds. A ``.npy`` file says in its header how
  many bytes it needs, so it is complete as soon as they are there;
- a ``.npy`` stack (T, H, W) that grows as frames are appended to it: each
  frame is analysed as soon as its bytes are written;
- a sub-folder of numbered frames (``frame_0001.tif``, ``frame_0002.tif``...):
  one stack, each file its frame, followed frame by frame.

The rows go to the Parquet dataset at ``out`` (:mod:`atomstat.dataset`), with
the anomaly flags (fitted frame by frame) and the defects. What is written is
never analysed again: a restart, after a crash or not, reads the dataset and
goes on from there. A file that cannot be read is logged, recorded in
``out/watch_failures.json`` and skipped until it changes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .batch import analyze_files, find_defects
from .dataset import Dataset, source_id, source_record
from .distributed import ModelLoader, Settings, analyze_frames

__all__ = ["Watcher", "watch"]

log = logging.getLogger(__name__)

_SKIP = (".tmp", ".part", ".partial", ".crdownload", ".lock", ".lck", "~", ".json", ".txt")
_NUMBER = re.compile(r"(\d+)(?=\.[^.]+$)")


class Watcher:
    """Follow ``folder`` and write what lands there into the dataset at ``out``.

    Parameters
    ----------
    folder, out : str or Path
        The folder the microscope writes into, and the dataset's folder.
    settings : Settings, optional
        The analysis settings (default: anomaly flags by one-class SVM).
    material : str, optional
        The library's tag for everything analysed.
    settle : float
        Seconds a file's size must stay unchanged before it is taken as
        complete (formats other than ``.npy``).
    rescan : float
        Seconds between full scans of the folder.
    polling : bool
        Use watchdog's polling observer (network shares) instead of the
        operating system's change events.
    """

    def __init__(self, folder, out, *, settings=None, material=None, settle=1.0, rescan=5.0,
                 polling=False):  # fmt: skip
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise NotADirectoryError(f"cannot watch {folder}: it is not a folder")
        self.ds = Dataset(out)
        self.settings = settings or Settings(anomalies="ocsvm")
        self.material, self.settle, self.rescan, self.polling = material, settle, rescan, polling
        self.failures_path = self.ds.root / "watch_failures.json"
        self.failures = _read_json(self.failures_path)
        self._seen: dict = {}  # path -> (size, mtime_ns, time that state was first seen)
        self._runs: dict = {}  # stack path -> (frame count, prepared Run)
        self._dirty: set = set()
        self._lock = threading.Lock()  # the observer's thread adds to _dirty
        self._wake = threading.Event()
        self.written = 0  # frames written by this watcher

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> int:
        """Watch until ``stop`` is set (or, with ``once``, until everything present is
        analysed); return the number of frames written."""
        stop = stop or threading.Event()
        ModelLoader([self.settings.model]).setup()  # the first frame should not wait for this
        if not once:  # a live run: the first file should not wait for the first calls either
            self._warm_up()
        observer = None if once else self._observe()
        try:
            last_scan = 0.0
            while not stop.is_set():
                if time.monotonic() - last_scan >= self.rescan:
                    self._mark(self._candidates())
                    last_scan = time.monotonic()
                waiting = self.step()
                if once and not waiting:
                    break
                self._wake.wait(0.1 if waiting else self.rescan)
                self._wake.clear()
        finally:
            if observer is not None:
                observer.stop()
                observer.join()
        return self.written

    def _warm_up(self) -> None:
        """Analyse a small simulated lattice into a scratch dataset, the way every file is
        analysed, so that the first file from the microscope does not pay for the first
        calls (HyperSpy's import, the network at a new size, the anomaly fit, Parquet).
        A failure here is logged, and watching goes on."""
        import tempfile

        from .simulate import simulate_lattice

        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="atomstat-warm-up-") as scratch:
                path = Path(scratch) / "warm-up.npy"
                sim = simulate_lattice("hexagonal", shape=(128, 128), spacing=12.0, rng=0)
                np.save(path, sim.image)
                analyze_files([path], Path(scratch) / "results", settings=self.settings)
        except Exception as exc:  # noqa: BLE001 - the watch itself must not stop for this
            log.warning("warm-up failed (the first file will take longer): %s", exc)
            return
        log.debug("warmed up in %.1f s", time.perf_counter() - started)

    def step(self) -> bool:
        """Look at every path that changed; analyse what is ready. True while some path is
        still being written (to look again soon)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        waiting = set()
        for path in sorted(dirty):
            try:
                if self._visit(path):
                    waiting.add(path)
            except OSError as exc:  # gone, or unreadable: look again when it changes
                log.debug("%s: %s", path, exc)
        self._mark(waiting)
        return bool(waiting)

    def _mark(self, paths) -> None:
        with self._lock:
            self._dirty.update(paths)

    def _observe(self):
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.event_type in ("opened", "closed_no_write"):
                    return  # reads, the watcher's own among them
                for name in (event.src_path, getattr(event, "dest_path", "")):
                    if name:
                        watcher._mark(watcher._sources_of(Path(name)))
                watcher._wake.set()

        observer = PollingObserver(timeout=1.0) if self.polling else Observer()
        observer.schedule(Handler(), str(self.folder), recursive=True)
        observer.start()
        return observer

    # ------------------------------------------------------------------ sources
    def _candidates(self):
        out = set()
        for path in self.folder.iterdir():
            out.update(self._sources_of(path))
        return out

    def _sources_of(self, path: Path):
        """The source(s) a changed path belongs to: the file, or its frames folder."""
        path = Path(path)
        if self.ds.root.resolve() in (path, *path.parents):
            return set()
        if path.parent == self.folder:
            if path.is_dir() and not path.name.startswith("."):
                return {path}
            return {path} if _wanted(path) else set()
        if path.parent.parent == self.folder and not path.parent.name.startswith("."):
            return {path.parent}
        return set()

    def _visit(self, path: Path) -> bool:
        if path.is_dir():
            return self._follow_folder(path)
        if not path.is_file():
            return False
        stat = path.stat()
        if self._failed_before(path, stat):
            return False
        if path.suffix.lower() == ".npy":
            return self._follow_npy(path, stat)
        if not self._settled(path, stat):
            return True
        self._analyse_file(path)
        return False

    def _settled(self, path, stat) -> bool:
        """No lock, and the same size and time for ``settle`` seconds."""
        if _locked(path):
            return False
        now = time.monotonic()
        state = (stat.st_size, stat.st_mtime_ns)
        if self._seen.get(path, (None, None, 0))[:2] != state:
            self._seen[path] = (*state, now)
        return now - self._seen[path][2] >= self.settle

    # ------------------------------------------------------------------ files
    def _analyse_file(self, path: Path) -> None:
        """A complete file: analysed by the batch code (which skips what is written)."""
        before = len(self.ds.done_frames(source_id(path)))
        report = analyze_files([path], self.ds.root, settings=self.settings, material=self.material)
        if report.failed:
            self._fail(path, "; ".join(f["error"] for f in report.failed))
            return
        self.failures.pop(str(path), None)
        if report.frames:
            self.written += report.frames
            log.info("wrote %s: %d new frame(s) (%d before)", path.name, report.frames, before)

    def _follow_npy(self, path: Path, stat) -> bool:
        """A .npy file: the frames whose bytes are written; the whole file once complete."""
        try:
            shape, dtype, offset = _npy_header(path)
        except ValueError as exc:
            if stat.st_size < 128 or not self._settled(path, stat):  # header still coming
                return True
            self._fail(path, str(exc))
            return False
        frame_bytes = int(np.prod(shape[1:] if len(shape) == 3 else shape)) * dtype.itemsize
        available = max(0, (stat.st_size - offset) // max(frame_bytes, 1))
        complete = available >= (shape[0] if len(shape) == 3 else 1) and not _locked(path)
        if complete:
            self._analyse_file(path)
            self._runs.pop(path, None)
            return False
        if len(shape) == 3 and available:
            self._write_stack_frames(path, _memmap(path, shape, dtype, offset, available))
        return True

    def _write_stack_frames(self, path: Path, frames) -> None:
        """Analyse and write the frames of a growing stack that are not yet written."""
        sid = source_id(path)
        todo = sorted(set(range(len(frames))) - self.ds.done_frames(sid))
        if not todo:
            return
        run = self._run(path, frames)
        for frame in todo:
            self._write_frame(sid, path, run, frame, len(frames))

    def _run(self, path, frames):
        """The prepared run of a stack, its atom width from frame 0 (kept between frames)."""
        from .pipeline import prepare

        if path not in self._runs:
            self._runs[path] = prepare(_signal(frames, path), **self.settings.analyze_kwargs())
        return replace(self._runs[path], frames=frames)

    def _write_frame(self, sid, path, run, frame, n_frames):
        attrs = {**run.attrs, "anomalies": self.settings.anomalies}
        record = source_record(sid, path, attrs, frames=n_frames, shape=run.frames.shape[1:],
                               material=self.material, complete=False, sha256=None)  # fmt: skip
        atoms = analyze_frames(run, frame, frame + 1, anomalies=self.settings.anomalies)
        defects = find_defects(atoms, run.frames, frame, frame + 1)
        self.ds.write_source(record)
        self.ds.write_chunk(sid, frame, frame + 1, atoms, defects=defects, meta=record)
        self.written += 1
        log.info("wrote %s frame %d: %d atoms", Path(path).name, frame, len(atoms))

    # ------------------------------------------------------------------ folders of frames
    def _follow_folder(self, folder: Path) -> bool:
        """A folder of numbered frames: each complete frame file, in number order."""
        frames = _numbered(folder)
        sid = source_id(folder)
        done = self.ds.done_frames(sid)
        waiting = False
        for number, path in frames:
            if number in done or self._failed_before(path, path.stat()):
                continue
            if not (_npy_complete(path) or self._settled(path, path.stat())):
                waiting = True  # frames are analysed in their order: wait for this one
                break
            try:
                self._write_numbered(folder, sid, number, path, frames[0][1])
            except Exception as exc:  # unreadable frame file: reported, the rest goes on
                self._fail(path, f"{type(exc).__name__}: {exc}")
        return waiting

    def _write_numbered(self, folder, sid, number, path, first):
        """Analyse one frame file; the atom width comes from the folder's first frame."""
        from .io import load
        from .pipeline import prepare

        image = load(path)
        if image.data.ndim != 2:
            raise ValueError(f"a frame file must hold one image, got shape {image.data.shape}")
        if folder not in self._runs:
            start = image if first == path else load(first)
            self._runs[folder] = prepare(start, **self.settings.analyze_kwargs())
        run = replace(self._runs[folder], frames=_OneFrame(image.data, number))
        run.attrs.update(source=str(folder))
        n_frames = max(self.ds.done_frames(sid) | {number}) + 1
        self._write_frame(sid, folder, run, number, n_frames)

    # ------------------------------------------------------------------ failures
    def _failed_before(self, path, stat) -> bool:
        seen = self.failures.get(str(path))
        return bool(seen) and seen["size"] == stat.st_size and seen["mtime_ns"] == stat.st_mtime_ns

    def _fail(self, path: Path, error: str) -> None:
        stat = path.stat()
        log.error("skipped %s: %s", path, error)
        self.failures[str(path)] = {
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "error": error,
        }  # fmt: skip
        self.failures_path.write_text(json.dumps(self.failures, indent=1))


def watch(folder, out, *, stop=None, once=False, **kwargs) -> int:
    """Follow ``folder`` into the dataset ``out`` (see :class:`Watcher`); return the
    number of frames written."""
    return Watcher(folder, out, **kwargs).run(stop, once=once)


class _OneFrame:
    """Frame ``number`` of a numbered-frames folder, indexed as if it were in a stack."""

    def __init__(self, image, number):
        self.image, self.number = np.asarray(image, np.float32), number
        self.shape = (number + 1, *self.image.shape)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice) and key.start == self.number and key.stop == self.number + 1:
            return self.image[None]
        if isinstance(key, int) and key == self.number:
            return self.image
        raise IndexError(f"only frame {self.number} of this folder is loaded, not {key}")


def _wanted(path: Path) -> bool:
    from .io import EXTENSIONS

    name = path.name.lower()
    return (
        not name.startswith(".") and not name.endswith(_SKIP) and path.suffix.lower() in EXTENSIONS
    )


def _locked(path: Path) -> bool:
    names = (f"{path.name}.lock", f".{path.name}.lock", f"{path.stem}.lock", f"{path.name}.lck")
    return any((path.parent / n).exists() for n in names)


def _numbered(folder: Path):
    """The frame files of a folder as (number, path), in number order."""
    frames = []
    for path in folder.iterdir():
        match = _NUMBER.search(path.name)
        if match and path.is_file() and _wanted(path) and not _locked(path):
            frames.append((int(match[1]), path))
    return sorted(frames)


def _npy_header(path: Path):
    """(shape, dtype, data offset) of a .npy file; ValueError if the header is not whole."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            reader = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
            shape, fortran, dtype = reader(f)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"not a readable .npy file ({exc})") from None
        if fortran:
            raise ValueError("Fortran-ordered .npy stacks cannot be followed frame by frame")
        return shape, dtype, f.tell()


def _npy_complete(path: Path) -> bool:
    if path.suffix.lower() != ".npy" or _locked(path):
        return False
    try:
        shape, dtype, offset = _npy_header(path)
    except ValueError:
        return False
    return path.stat().st_size >= offset + int(np.prod(shape)) * dtype.itemsize


def _memmap(path, shape, dtype, offset, n):
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(n, *shape[1:]))


def _signal(frames, path: Path):
    """The frames as a Signal2D, calibrated from the JSON sidecar if there is one."""
    import hyperspy.api as hs

    from .calibration import calibrate, read_sidecar

    signal = hs.signals.Signal2D(frames)
    calibrate(signal, {path.with_suffix(".json"): read_sidecar(path)}, path)
    signal.metadata.General.original_filename = str(path)
    return signal


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
