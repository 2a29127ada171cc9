"""Analysis on a Dask cluster: frames, chunks of frames or tiles of a huge frame as tasks.

The cluster is any ``dask.distributed`` scheduler: a :func:`local_cluster` on
this machine, a scheduler address, or a dask-jobqueue cluster on SLURM/PBS.
Workers read the frames themselves (from the file's path, which they must
see), so only settings and small tables cross the network, and each worker
loads the model once (:class:`ModelLoader`, then the cache of
:func:`atomstat.fcn.predict.load_model`).

Every frame is analysed with the settings and the atom width that the
single-process :func:`atomstat.analyze` would use (the width is estimated
once, on frame 0), so the tables are the same row for row.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import WorkerPlugin

from ._arrays import as_array, is_signal
from .locate import PEAK_MARGIN, concat_frames

__all__ = [
    "ChunkError",
    "ModelLoader",
    "Settings",
    "analyze",
    "connect",
    "local_cluster",
    "locate_dumbbells",
    "worker_env",
]

log = logging.getLogger(__name__)

#: Frames per task: small enough to balance the workers, large enough to batch the network.
FRAMES_PER_TASK = 8
TILE, TILE_MARGIN = 2048, 64


class ChunkError(RuntimeError):
    """A task failed; the message names the file and the frames (or tile)."""


@dataclass(frozen=True)
class Settings:
    """The analysis settings a task needs (all picklable, the model by name or path)."""

    threshold: float = 0.5
    peak_margin: float = PEAK_MARGIN
    model: str | None = None
    preprocess: str | None = None
    split: bool | None = None
    resolution: object = "auto"  # "auto", "full" or pixels per block (see atomstat.segment)
    anomalies: str | None = None  # a find_anomalies method, applied frame by frame
    defects: bool = True  # run atomstat.find_defects (where it exists) on each frame of a batch
    channel: str | None = None
    direction: str | None = None

    def __post_init__(self):
        if self.model is not None and not isinstance(self.model, str | os.PathLike):
            raise TypeError(
                "on a cluster the model must be a shipped name or a .keras path that the "
                f"workers can read, got a {type(self.model).__name__}; save it with model.save()"
            )
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", str(Path(self.model).resolve()))
        from .fcn.predict import check_resolution

        object.__setattr__(self, "resolution", check_resolution(self.resolution))

    def analyze_kwargs(self) -> dict:
        keys = ("threshold", "peak_margin", "model", "preprocess", "split", "resolution")
        return {k: asdict(self)[k] for k in keys}


# --------------------------------------------------------------------------- the cluster
def worker_env(threads: int) -> dict:
    """Environment of a worker process: its math libraries and TensorFlow use ``threads``
    threads, so that workers sharing a machine do not oversubscribe its cores."""
    n = str(max(1, int(threads)))
    return {
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def local_cluster(n_workers: int = 2, *, memory_limit="auto", dashboard: bool = True):
    """Start a ``LocalCluster`` of ``n_workers`` processes on this machine; return its Client.

    Each worker has one task thread and an equal share of the cores for the
    network's math. The dashboard gets a free port (``client.dashboard_link``).
    """
    import dask
    from distributed import Client, LocalCluster

    if not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    cores = os.cpu_count() or 1
    settings = worker_config()
    # the Nanny reads the pre-spawn environment from the global config as it starts; the
    # worker's own config (the profiler) travels with it, also to a worker it restarts
    with dask.config.set(settings):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=":0" if dashboard else None,
            env=worker_env(max(1, cores // n_workers)),
            config=settings,
        )
    return Client(cluster)


def worker_config() -> dict:
    """Dask settings for the workers that :func:`local_cluster` starts (README, "Scale-out").

    Measured on a 4-frame task of 1024^2 (one worker, 2 cores): 9.1 s in a worker with
    Dask's defaults against 5.4 s in one process, 5.9 s with these. Two defaults cost it:

    - ``MALLOC_TRIM_THRESHOLD_=65536`` (set before a worker starts, to hand freed memory
      back to the system) also turns off glibc's adaptive mmap threshold, so every large
      numpy temporary was mapped and faulted in afresh: 852,000 page faults a task against
      4,000 in one process. It is left out; the worker's memory is still bounded (the
      Nanny's limit, and the 200 / 2,000-frame measure in bench_scale_out.py).
    - the statistical profiler samples each task thread's stack every 10 ms.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.worker.profile.enabled": False,
    }


def connect(scheduler: str | None = None, workers: int | None = None):
    """A Client for ``scheduler`` (an address such as ``tcp://host:8786`` or a
    scheduler file), else a :func:`local_cluster` of ``workers``; None for neither."""
    from distributed import Client

    if scheduler and workers:
        raise ValueError("give a scheduler address or a number of workers, not both")
    if scheduler:
        if scheduler.endswith(".json"):
            return Client(scheduler_file=scheduler)
        return Client(scheduler)
    return local_cluster(workers) if workers else None


def close(client) -> None:
    """Close ``client`` and, if it started it, its local cluster."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None and type(cluster).__name__ == "LocalCluster":
        cluster.close()


class ModelLoader(WorkerPlugin):
    """Worker plugin: each worker loads (and warms up) the models once, when it starts.

    Register it with ``client.register_plugin(ModelLoader(["universal"]))``;
    a worker that joins later or is restarted loads them too. Tasks then get
    the models from the worker's cache (:func:`atomstat.fcn.predict.load_model`).
    """

    idempotent = True  # registering it again (each batch does) changes nothing

    def __init__(self, models=("universal",)):
        self.models = tuple(None if m in (None, "auto") else str(m) for m in models)
        self.name = "atomstat-models-" + "-".join(map(str, self.models))

    def setup(self, worker=None):
        from .fcn.predict import load_model

        for model in self.models:
            _, call = load_model(model)
            call(np.zeros((1, 64, 64, 1), np.float32))  # trace the graph once
        log.debug("worker %s: loaded models %s", getattr(worker, "address", "?"), self.models)


def load_counts(client) -> dict:
    """How many model files each worker has loaded (a check that they load once)."""
    return client.run(_load_count)


def _load_count():
    from .fcn.predict import _load, _load_lite

    return _load.cache_info().misses + _load_lite.cache_info().misses


def register_models(client, settings: Settings, *, imaging=("stem", "stm")) -> None:
    """Install the :class:`ModelLoader` for the model(s) ``settings`` can pick."""
    from .pipeline import choose_model

    models = {choose_model(settings.model, kind) for kind in imaging}
    client.register_plugin(ModelLoader(sorted(models)))


# --------------------------------------------------------------------------- tasks
def reading_here():
    """Inside a task, read lazy frames in the task's own thread. Without it, dask would hand
    the read of a lazy (memory-mapped) file back to the cluster: the whole file would be
    pickled and sent to the scheduler (measured: 4x slower, 1.5 GB more per worker)."""
    import dask

    return dask.config.set(scheduler="synchronous")


@functools.lru_cache(maxsize=8)
def _opened(path: str, stamp, channel=None, direction=None):
    """The file, loaded lazily, once per worker and version of the file."""
    from .io import load

    return load(path, lazy=True, channel=channel, direction=direction)


def open_source(path, settings: Settings):
    """The lazily loaded signal of ``path`` (cached while the file is unchanged)."""
    stat = os.stat(path)
    return _opened(
        str(path), (stat.st_size, stat.st_mtime_ns), settings.channel, settings.direction
    )


@functools.lru_cache(maxsize=8)
def _prepared(path: str, stamp, settings: Settings):
    from .pipeline import prepare

    signal = _opened(path, stamp, settings.channel, settings.direction)
    return prepare(signal, **settings.analyze_kwargs())


def prepared_run(path, settings: Settings):
    """The :class:`atomstat.pipeline.Run` of ``path`` (cached per worker)."""
    stat = os.stat(path)
    return _prepared(str(path), (stat.st_size, stat.st_mtime_ns), settings)


def analyze_frames(run, start: int, stop: int, *, anomalies: str | None = None) -> pd.DataFrame:
    """Analyse frames ``start`` to ``stop - 1`` of the prepared ``run``: the atoms table
    :func:`atomstat.analyze` gives for those frames, ``frame`` counted in the whole stack."""
    part = replace(run, frames=run.frames[start:stop])
    tables = []
    for _, _, _, atoms in part.chunks():
        atoms["frame"] += start
        tables.append(atoms)
    atoms = concat_frames(tables)
    atoms.attrs.update(run.attrs)
    if anomalies:
        atoms = flag_frames(atoms, anomalies)
    return atoms


def flag_frames(atoms: pd.DataFrame, method: str) -> pd.DataFrame:
    """Anomaly flags fitted frame by frame (so a frame's flags do not depend on the
    others, nor on how the frames were split into tasks)."""
    from .outliers import add_anomalies

    out = atoms.copy()
    out["anomaly"] = False
    out["anomaly_score"] = np.nan
    for frame, rows in atoms.groupby("frame", sort=True):
        try:
            flagged = add_anomalies(rows, method=method)
        except ValueError as exc:  # too few atoms to fit, for one
            log.warning("frame %d: no anomaly flags (%s)", frame, exc)
            continue
        out.loc[rows.index, "anomaly"] = flagged["anomaly"].to_numpy()
        out.loc[rows.index, "anomaly_score"] = flagged["anomaly_score"].to_numpy()
    return out


def plan(path, settings: Settings) -> dict:
    """Task: open ``path`` and set up its analysis; return its frame count, frame shape,
    whether it is one image, and the table's ``attrs`` (with the atom width ``sigma``)."""
    try:
        with reading_here():
            run = prepared_run(path, settings)
    except Exception as exc:
        raise ChunkError(f"{path}: cannot set up the analysis: {exc}") from exc
    shape = tuple(int(n) for n in run.frames.shape[1:])
    return {"frames": run.n_frames, "shape": shape, "single": run.single, "attrs": run.attrs}


def file_frames(path, settings: Settings, start: int, stop: int, sigma: float) -> pd.DataFrame:
    """Task: the atoms of frames ``start`` to ``stop - 1`` of the file ``path``."""
    try:
        with reading_here():
            run = replace(prepared_run(path, settings), sigma=sigma)
            return analyze_frames(run, start, stop, anomalies=settings.anomalies)
    except Exception as exc:
        raise ChunkError(f"{path} frames {start}-{stop - 1}: {type(exc).__name__}: {exc}") from exc


def file_tile(path, settings: Settings, sigma: float, window, core) -> pd.DataFrame:
    """Task: the atoms whose centre lies in the ``core`` of one tile of a huge frame."""
    try:
        with reading_here():
            run = replace(prepared_run(path, settings), sigma=sigma)
            pixels = np.asarray(run.frames[0][window], np.float32)
            return tile_atoms(run, pixels, (window[0].start, window[1].start), core, settings)
    except Exception as exc:
        raise ChunkError(f"{path} tile {core}: {type(exc).__name__}: {exc}") from exc


def _array_frames(run, frames, start, anomalies):
    """Task on frames sent from the client (in memory, or a lazy array's chunk)."""
    atoms = analyze_frames(
        replace(run, frames=np.asarray(frames)), 0, len(frames), anomalies=anomalies
    )
    atoms["frame"] += start
    return atoms


def tile_atoms(run, window, origin, core, settings: Settings) -> pd.DataFrame:
    """Analyse one tile of a huge frame; keep the atoms whose centre lies in its core."""
    atoms = analyze_frames(replace(run, frames=window[None]), 0, 1, anomalies=settings.anomalies)
    atoms["x"] += origin[1]
    atoms["y"] += origin[0]
    (r0, r1), (c0, c1) = core
    keep = atoms["x"].between(c0 - 0.5, c1 - 0.5, inclusive="left")
    keep &= atoms["y"].between(r0 - 0.5, r1 - 0.5, inclusive="left")
    return atoms[keep]


def tiles(shape, tile: int = TILE, margin: int = TILE_MARGIN):
    """Cut a frame of ``shape`` into cores of at most ``tile`` px and windows ``margin`` px
    wider (clipped at the border): a list of ``(window_slices, core_ranges)``.

    Examples
    --------
    >>> [core for _, core in tiles((300, 100), tile=200, margin=10)]
    [((0, 150), (0, 100)), ((150, 300), (0, 100))]
    """
    parts = []
    for rows in _spans(shape[0], tile):
        for cols in _spans(shape[1], tile):
            window = tuple(
                slice(max(0, a - margin), min(n, b + margin))
                for (a, b), n in zip((rows, cols), shape, strict=True)
            )
            parts.append((window, (rows, cols)))
    return parts


def _spans(n, tile):
    k = -(-n // tile)
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


# --------------------------------------------------------------------------- analyze
def analyze(
    data,
    *,
    client,
    settings: Settings | None = None,
    frames_per_task: int = FRAMES_PER_TASK,
    tile: int = TILE,
    tile_margin: int = TILE_MARGIN,
    **kwargs,
) -> pd.DataFrame:
    """:func:`atomstat.analyze` on a cluster: chunks of frames, or tiles of one huge
    frame, run as tasks on the workers of ``client``.

    Parameters
    ----------
    data : str, Path, ndarray, dask array or Signal2D (lazy or not)
        A file path (the workers read it), or frames. A signal loaded from a
        file is read by the workers from that file; other arrays are sent.
    client : distributed.Client
    settings : Settings, optional
        Or the same as keyword arguments (``threshold``, ``model``, ...).
    frames_per_task : int
        Frames in one task.
    tile, tile_margin : int
        A single frame with a side over ``tile`` px is cut into tiles; each is
        analysed with ``tile_margin`` px of its neighbours around it (at least
        a few lattice spacings), and keeps the atoms whose centre is its own.

    Returns
    -------
    atoms : pandas.DataFrame
        The atoms table, in the order :func:`atomstat.analyze` gives.
    """
    settings = settings or Settings(**kwargs)
    register_models(client, settings)
    path = _source_path(data)
    if path is None:
        return _analyze_array(data, client, settings, frames_per_task, tile, tile_margin)
    path = str(path.resolve())
    setup = client.submit(plan, path, settings, pure=False).result()
    sigma = setup["attrs"]["sigma"]
    shape = setup["shape"]
    if setup["single"] and max(shape) > tile:
        futures = [
            client.submit(file_tile, path, settings, sigma, w, core, retries=1, pure=False)
            for w, core in tiles(shape, tile, tile_margin)
        ]
    else:
        futures = [
            client.submit(file_frames, path, settings, s,
                          min(s + frames_per_task, setup["frames"]), sigma, retries=1, pure=False)
            for s in range(0, setup["frames"], frames_per_task)
        ]  # fmt: skip
    atoms = concat_frames(client.gather(futures))
    atoms.attrs.update(setup["attrs"])
    return atoms


def _analyze_array(data, client, settings, frames_per_task, tile, tile_margin):
    """Frames that are not read from a file: chunks of them go with the tasks (a lazy
    array's chunks are computed on the workers)."""
    import dask

    from .pipeline import prepare

    run = prepare(data, **settings.analyze_kwargs())
    frames = as_array(data)
    frames = frames[None] if run.single else frames
    plain = replace(run, frames=None)
    shape = tuple(frames.shape[1:])
    if run.single and max(shape) > tile:
        image = np.asarray(frames[0], np.float32)
        tasks = [
            dask.delayed(tile_atoms)(plain, image[w], (w[0].start, w[1].start), core, settings)
            for w, core in tiles(shape, tile, tile_margin)
        ]
    else:
        tasks = [
            dask.delayed(_array_frames)(plain, frames[s : s + frames_per_task], s,
                                        settings.anomalies)
            for s in range(0, run.n_frames, frames_per_task)
        ]  # fmt: skip
    atoms = concat_frames(client.gather(client.compute(tasks, retries=1)))
    atoms.attrs.update(run.attrs)
    return atoms


def _source_path(data):
    """The file to read on the workers: a path, or the source of a signal loaded from one."""
    if isinstance(data, str | os.PathLike):
        return Path(data)
    if is_signal(data):
        name = data.metadata.get_item("General.original_filename", None)
        if name and Path(name).is_file():
            return Path(name)
    return None


# --------------------------------------------------------------------------- dumbbells
def locate_dumbbells(
    data, *, client, method="columns", model=None, threshold=None, separation=None,
    frames_per_task: int = FRAMES_PER_TASK,
) -> pd.DataFrame:  # fmt: skip
    """The columns (or merged blobs) of :func:`atomstat.find_dumbbells`, chunks of
    frames as tasks on the workers of ``client``; the caller pairs them.

    The atom width is estimated here on frame 0 and, for the blob route, the
    contour level and smoothing are chosen by one task on frame 0, as the
    single-process path chooses them; every chunk then uses them.
    """
    from .dumbbell_finder import first_sigma
    from .io import load
    from .pipeline import calibration

    if not isinstance(frames_per_task, int) or frames_per_task < 1:
        raise ValueError(f"frames_per_task must be an integer >= 1, got {frames_per_task!r}")
    model = Settings(model=model).model  # a name or a path the workers can read
    client.register_plugin(ModelLoader([model]))
    if isinstance(data, str | os.PathLike):
        data = load(data, lazy=True)
    path = _source_path(data)
    frames = as_array(data)
    frames = frames[None] if np.ndim(frames) == 2 else frames
    if np.ndim(frames) != 3:
        raise ValueError(f"find_dumbbells takes an image or a stack, got shape {np.shape(frames)}")
    source = str(path.resolve()) if path is not None else None
    with reading_here():
        sigma = first_sigma(frames)
    smoothing = None
    if method == "blob":
        first = source if source is not None else np.asarray(frames[:1])
        rule = client.submit(_dumbbell_rule, first, model, sigma, separation, threshold, pure=False)
        smoothing, threshold, separation = rule.result()
    params = {"model": model, "method": method, "threshold": threshold, "sigma": sigma,
              "smoothing": smoothing}  # fmt: skip
    n = len(frames)
    spans = [(s, min(s + frames_per_task, n)) for s in range(0, n, frames_per_task)]
    if source is not None:
        futures = [
            client.submit(_dumbbell_frames, source, a, b, params, retries=1, pure=False)
            for a, b in spans
        ]
    else:
        import dask

        futures = client.compute(
            [dask.delayed(_dumbbell_frames)(frames[a:b], a, b, params) for a, b in spans],
            retries=1,
        )
    atoms = concat_frames(client.gather(futures))
    del futures
    atoms.attrs.update(calibration(data))
    atoms.attrs.update({"threshold": threshold, "sigma": sigma, "separation": separation})
    return atoms


def _read_span(source, start, stop):
    """Frames ``start`` to ``stop - 1``: read from the file ``source`` here, on the worker,
    or ``source`` itself (the chunk sent with the task)."""
    if isinstance(source, str):
        frames = as_array(open_source(source, Settings()))
        frames = frames[None] if np.ndim(frames) == 2 else frames
        return np.asarray(frames[start:stop], np.float32)
    return np.asarray(source, np.float32)


def _dumbbell_rule(source, model, sigma, separation, threshold):
    """Task: the blob route's (smoothing, level, separation), read from frame 0."""
    from .dumbbell_finder import blob_rule
    from .fcn.predict import segment

    try:
        with reading_here():
            frame = _read_span(source, 0, 1)
        prob = segment(frame, model=model, sigma=sigma)
        return blob_rule(prob[0], separation, threshold)
    except Exception as exc:
        where = source if isinstance(source, str) else "the stack"
        raise ChunkError(f"{where} frame 0: {type(exc).__name__}: {exc}") from exc


def _dumbbell_frames(source, start, stop, params) -> pd.DataFrame:
    """Task: the columns (or merged blobs) of frames ``start`` to ``stop - 1``."""
    from .dumbbell_finder import chunk_atoms
    from .fcn.predict import segment

    try:
        with reading_here():
            chunk = _read_span(source, start, stop)
        prob = segment(chunk, model=params["model"], sigma=params["sigma"])
        atoms = chunk_atoms(prob, chunk, params["method"], params["threshold"],
                            params["sigma"], params["smoothing"])  # fmt: skip
    except Exception as exc:
        where = source if isinstance(source, str) else "the stack"
        raise ChunkError(f"{where} frames {start}-{stop - 1}: {type(exc).__name__}: {exc}") from exc
    atoms["frame"] += start
    return atoms
