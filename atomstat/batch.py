"""A batch of files into a Parquet dataset, in one process or on a Dask cluster.

Each file is set up by one task (opened, hashed, atom width estimated on
frame 0), then its frames are analysed in chunks, one task each, and every
chunk is written as a partition of the dataset by the task that analysed it
(see :mod:`atomstat.dataset`). A failed task is retried once; if it fails
again, the rest of the batch goes on and the report names the file and the
frames. Re-running a batch skips the files that are complete and the chunks
that are written, so an interrupted batch resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dataset import SETTINGS, Dataset, file_hash, source_id, source_record
from .distributed import FRAMES_PER_TASK, Settings, analyze_frames, plan, prepared_run

__all__ = ["BatchReport", "analyze_files"]

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """What a batch did: the dataset, the files completed and skipped, the failures
    (one dict per failed task: ``file``, ``frames``, ``error``) and the frames analysed."""

    dataset: Path
    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    frames: int = 0

    def summary(self) -> str:
        """One paragraph for the log: counts, then each failure on its own line."""
        text = (
            f"{len(self.written)} file(s) analysed ({self.frames} frames), "
            f"{len(self.skipped)} already complete, {len(self.failed)} task(s) failed -> "
            f"{self.dataset}"
        )
        for fail in self.failed:
            frames = f" frames {fail['frames']}" if fail["frames"] else ""
            text += f"\n  FAILED {fail['file']}{frames}: {fail['error']}"
        return text


def plan_source(path, settings: Settings) -> dict:
    """Task: :func:`atomstat.distributed.plan` plus the file's size, time and SHA-256."""
    setup = plan(path, settings)
    stat = os.stat(path)
    setup.update(sha256=file_hash(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    return setup


def write_frames(root, source, path, settings: Settings, start, stop, sigma, meta) -> int:
    """Task: analyse frames ``start`` to ``stop - 1`` of ``path`` and write them as one
    partition of the dataset at ``root`` (with their defects, where
    ``atomstat.defects`` is installed); return the number of atoms."""
    from dataclasses import replace

    from .distributed import ChunkError, reading_here

    try:
        with reading_here():
            run = replace(prepared_run(path, settings), sigma=sigma)
            atoms = analyze_frames(run, start, stop, anomalies=settings.anomalies)
            defects = find_defects(atoms, run.frames, start, stop) if settings.defects else None
    except Exception as exc:
        raise ChunkError(f"{path} frames {start}-{stop - 1}: {type(exc).__name__}: {exc}") from exc
    Dataset(root).write_chunk(source, start, stop, atoms, defects=defects, meta=meta)
    return len(atoms)


def find_defects(atoms, frames, start, stop):
    """The defects of the frames, from :func:`atomstat.find_defects` when it exists
    (None otherwise: the anomaly flags are then all the dataset has). ``atom_id`` in the
    defects is the atom's number within its frame (the dataset's ``atom`` column)."""
    try:
        from .defects import find_defects as finder
    except ImportError:
        return None
    import pandas as pd

    tables = []
    for frame in range(start, stop):
        rows = atoms[atoms["frame"] == frame].reset_index(drop=True).assign(frame=0)
        try:
            found = finder(rows, np.asarray(frames[frame], np.float32))
        except (ValueError, TypeError, np.linalg.LinAlgError) as exc:  # e.g. too few atoms
            log.warning("frame %d: no defects (%s)", frame, exc)
            continue
        tables.append(found.assign(frame=frame))
    return pd.concat(tables, ignore_index=True) if tables else None


def analyze_files(
    files,
    out,
    *,
    client=None,
    material: str | None = None,
    settings: Settings | None = None,
    frames_per_task: int = FRAMES_PER_TASK,
    progress: bool = False,
    **kwargs,
) -> BatchReport:
    """Analyse ``files`` into the Parquet dataset at ``out``.

    Parameters
    ----------
    files : list of str or Path
        Images or stacks that :func:`atomstat.load` reads (and that the
        workers can read at the same paths).
    out : str or Path
        The dataset's folder (see :mod:`atomstat.dataset`).
    client : distributed.Client, optional
        Run the tasks on this cluster; None runs them one after another here.
    material : str, optional
        A tag for the library (``"graphene"``, ``"MoS2"``...), kept per file.
    settings : Settings, optional
        The analysis settings, or give them as keyword arguments.
    frames_per_task : int
        Frames analysed and written together (one partition).
    progress : bool
        Show a tqdm bar over the frames.

    Returns
    -------
    BatchReport
    """
    settings = settings or Settings(**kwargs)
    if not isinstance(frames_per_task, int) or frames_per_task < 1:
        raise ValueError(f"frames_per_task must be an integer >= 1, got {frames_per_task!r}")
    batch = _Batch(Dataset(out), settings, material, frames_per_task, client, progress)
    if client is not None:
        from .distributed import register_models

        register_models(client, settings)
    return batch.run([Path(f) for f in files])


class _Batch:
    """The state of one batch: which tasks are out, what each file still needs."""

    def __init__(self, dataset, settings, material, per_task, client, progress):
        from tqdm.auto import tqdm

        self.ds, self.settings, self.material, self.per_task = dataset, settings, material, per_task
        self.client = client
        self.report = BatchReport(dataset.root)
        self.pending: dict = {}  # source id -> chunks not yet written
        self.failed_sources: set = set()
        self.bar = tqdm(total=0, desc="frames", unit="frame", disable=not progress)

    def run(self, paths) -> BatchReport:
        queue = _Queue(self.client)
        for path in paths:
            if self._complete(path):
                self.report.skipped.append(str(path))
                continue
            queue.submit(("plan", path), plan_source, str(path.resolve()), self.settings)
        for key, result, error in queue:
            if error is not None:
                self._failed(key, error)
            elif key[0] == "plan":
                self._planned(queue, key[1], result)
            else:
                self._written(key, result)
        self.bar.close()
        return self.report

    def _complete(self, path) -> bool:
        record = self.ds.record(source_id(path))
        if record is None or not record.get("complete"):
            return False
        try:
            stat = os.stat(path)
        except OSError:
            return False
        same = record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns
        return same and _same_settings(record, self.settings)

    def _planned(self, queue, path, setup):
        sid = source_id(path)
        attrs = {**setup["attrs"], "anomalies": self.settings.anomalies}
        record = self.ds.record(sid)
        if record is not None and (
            record.get("sha256") not in (None, setup["sha256"]) or not _same_attrs(record, attrs)
        ):
            log.warning("%s changed (contents or settings) since it was analysed: anew", path)
            self.ds.clear(sid)
        more = {k: setup[k] for k in ("sha256", "size", "mtime_ns")}
        new = source_record(sid, path, attrs, frames=setup["frames"], shape=setup["shape"],
                            material=self.material, complete=False, **more)  # fmt: skip
        self.ds.write_source(new)
        todo = _ranges(
            sorted(set(range(setup["frames"])) - self.ds.done_frames(sid)), self.per_task
        )
        self.pending[sid] = (new, set(todo))
        self.bar.total += sum(b - a for a, b in todo)
        self.bar.refresh()
        for start, stop in todo:
            args = (str(self.ds.root.resolve()), sid, str(Path(path).resolve()), self.settings)
            queue.submit(("frames", path, sid, start, stop), write_frames,
                         *args, start, stop, attrs["sigma"], new)  # fmt: skip
        self._finish(sid, path)

    def _written(self, key, n_atoms):
        _, path, sid, start, stop = key
        self.pending[sid][1].discard((start, stop))
        self.report.frames += stop - start
        self.bar.update(stop - start)
        self._finish(sid, path)

    def _failed(self, key, error):
        path = key[1]
        frames = f"{key[3]}-{key[4] - 1}" if key[0] == "frames" else None
        text = str(error) if str(error) else type(error).__name__
        log.error("%s%s failed: %s", path, f" frames {frames}" if frames else "", text)
        self.report.failed.append({"file": str(path), "frames": frames, "error": text})
        if key[0] == "frames":
            self.failed_sources.add(key[2])

    def _finish(self, sid, path):
        record, todo = self.pending[sid]
        if todo or sid in self.failed_sources:
            return
        self.ds.write_source({**record, "complete": True})
        self.report.written.append(str(path))


class _Queue:
    """Tasks on a Dask client (retried once, yielded as they finish), or run here in order."""

    def __init__(self, client):
        self.client = client
        self.local: list = []
        if client is not None:
            from distributed import as_completed

            self.done = as_completed([], with_results=False)
            self.keys: dict = {}

    def submit(self, key, fn, *args):
        if self.client is None:
            self.local.append((key, fn, args))
            return
        future = self.client.submit(fn, *args, retries=1, pure=False, key=_task_name(key))
        self.keys[future.key] = key
        self.done.add(future)

    def __iter__(self):
        if self.client is None:
            while self.local:
                key, fn, args = self.local.pop(0)
                try:
                    yield key, fn(*args), None
                except Exception as exc:  # the batch goes on; the report names it
                    yield key, None, exc
            return
        for future in self.done:
            key = self.keys.pop(future.key)
            if future.status == "finished":
                yield key, future.result(), None
            else:
                yield key, None, future.exception()
            future.release()


def _task_name(key) -> str:
    """A task key that names the file and the frames (shown on the Dask dashboard)."""
    import uuid

    where = Path(key[1]).name
    what = f"frames-{key[3]}-{key[4] - 1}" if key[0] == "frames" else "plan"
    return f"atomstat-{what}-{where}-{uuid.uuid4().hex[:8]}"


def _ranges(frames, size):
    """Consecutive runs of ``frames`` cut into pieces of at most ``size``: [(start, stop)]."""
    out = []
    for frame in frames:
        if out and out[-1][1] == frame and out[-1][1] - out[-1][0] < size:
            out[-1][1] = frame + 1
        else:
            out.append([frame, frame + 1])
    return [tuple(r) for r in out]


def _same_settings(record, settings: Settings) -> bool:
    wanted = {
        "threshold": settings.threshold,
        "peak_margin": settings.peak_margin,
        "preprocess": settings.preprocess,
        "anomalies": settings.anomalies,
    }
    if settings.model is not None and str(settings.model) != record.get("model"):
        return False
    return all(_equal(record.get(k), v) for k, v in wanted.items())


def _same_attrs(record, attrs) -> bool:
    return all(_equal(record.get(k), attrs.get(k)) for k in SETTINGS)


def _equal(a, b) -> bool:
    import pandas as pd

    if (a is None or (np.ndim(a) == 0 and pd.isna(a))) and (
        b is None or (np.ndim(b) == 0 and pd.isna(b))
    ):
        return True
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0))
    return a == b
