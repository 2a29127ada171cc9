"""``find_dumbbells``: segment, locate and pair the dumbbells of an image or a movie.

The one call for dumbbell movies. Frames are processed 16 at a time (a lazy
stack is read chunk by chunk), the network runs once per frame, and then:

- ``method="columns"``: every column is located and refined on the raw
  frame, and the columns are paired (:func:`atomstat.pair_dumbbells`);
- ``method="blob"``: the probability map is contoured at a lower level, and
  smoothed if need be, so that the two columns' blobs merge, and each merged
  blob's ellipse gives the angle (the paper's route). How far to go is read
  from the first frame: of the levels 0.5 to 0.05 and the smoothings 0 to a
  quarter of the column separation, the least change that merges the most
  columns in pairs, each pair in a blob of its own, wins. Columns 3 widths
  apart (Si[110] on a real probe) merge at 0.2 with no smoothing; the shipped
  network keeps columns 4 widths apart down to 0.01, which takes the smoothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from ._arrays import as_array
from ._checks import number
from .dumbbells import METHODS, _frames, _typical_separation, pair_dumbbells

__all__ = ["find_dumbbells"]

log = logging.getLogger(__name__)

_FRAMES_PER_CHUNK = 16
#: Contour levels and smoothings (in column separations) tried for merging the pairs,
#: in order of preference.
_MERGE_LEVELS = (0.5, 0.4, 0.3, 0.2, 0.1, 0.05)
_MERGE_SMOOTHING = (0.0, 0.125, 0.25)
_REFINE_ITERATIONS = 3


def find_dumbbells(
    data,
    *,
    method: str = "columns",
    model=None,
    threshold: float | None = None,
    reference=None,
    separation: float | None = None,
    tolerance: float = 0.3,
    progress: bool = False,
    client=None,
    frames_per_task: int | None = None,
) -> pd.DataFrame:
    """Find the dumbbells of an image or a movie: segment, locate, pair.

    Parameters
    ----------
    data : str, Path, ndarray, dask array or hyperspy Signal2D
        A file, an image (H, W) or a stack (T, H, W); stacks (lazy ones
        too) are processed 16 frames at a time.
    method : {"columns", "blob"}
        See :func:`pair_dumbbells`.
    model : None, str, Path or keras.Model
        None uses the shipped ``universal`` model.
    threshold : float, optional
        Contour level: 0.5 for ``"columns"``; for ``"blob"`` by default the
        level (and smoothing) that merges the most column pairs on the first
        frame (see the module), else that level with the smoothing chosen.
    reference, separation, tolerance
        See :func:`pair_dumbbells`.
    progress : bool
        Show a progress bar over the frames.
    client : distributed.Client, optional
        Run chunks of frames as tasks on this Dask cluster (each worker loads
        the model once); the columns are then paired here, on the whole
        table, which is the same row for row. ``model`` must then be a
        shipped name or a ``.keras`` path the workers can read. A file (or a
        lazy signal loaded from one) is read by the workers themselves.
    frames_per_task : int, optional
        Frames in one task with ``client`` (default 8).

    Returns
    -------
    dumbbells : pandas.DataFrame
        See :func:`pair_dumbbells`.

    Examples
    --------
    >>> from atomstat.movie import simulate_movie
    >>> movie = simulate_movie(1, shape=(128, 128), rng=0)
    >>> found = find_dumbbells(movie.frames[0])
    >>> abs(len(found) - int(movie.dumbbells.inside.sum())) <= 3
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if threshold is not None or method == "columns":
        threshold = 0.5 if threshold is None else threshold
        threshold = number("threshold", threshold, low=0, high=1, low_open=True, high_open=True)
    if data is None:
        raise TypeError("find_dumbbells takes an image, a stack, a Signal2D or a path; got None")
    if client is not None:
        from .distributed import FRAMES_PER_TASK, locate_dumbbells

        atoms = locate_dumbbells(
            data, client=client, method=method, model=model, threshold=threshold,
            separation=separation, frames_per_task=frames_per_task or FRAMES_PER_TASK,
        )  # fmt: skip
    else:
        if isinstance(data, str | Path):
            from .io import load

            data = load(data)
        atoms = _locate_frames(data, model, threshold, method, separation, progress)
    return pair_dumbbells(
        atoms,
        method=method,
        reference=reference,
        separation=separation or atoms.attrs.get("separation"),
        tolerance=tolerance,
    )


def _locate_frames(data, model, threshold, method, separation, progress):
    """Columns (refined) or merged blobs of every frame, 16 frames at a time."""
    from .fcn.predict import load_model, segment
    from .locate import concat_frames
    from .pipeline import calibration

    load_model(model)  # fail early on a bad model
    frames = as_array(data)
    frames = frames if np.ndim(frames) != 2 else frames[None]
    sigma = first_sigma(frames)
    tables, smoothing = [], None
    for start in _progress(range(0, len(frames), _FRAMES_PER_CHUNK), progress, len(frames)):
        chunk = np.asarray(frames[start : start + _FRAMES_PER_CHUNK], np.float32)
        prob = segment(chunk, model=model, sigma=sigma)
        if method == "blob" and smoothing is None:  # chosen on the first frame, for the movie
            smoothing, threshold, separation = blob_rule(prob[0], separation, threshold)
        atoms = chunk_atoms(prob, chunk, method, threshold, sigma, smoothing)
        atoms["frame"] += start
        tables.append(atoms)
    atoms = concat_frames(tables)
    atoms.attrs.update(calibration(data))
    atoms.attrs.update({"threshold": threshold, "sigma": sigma, "separation": separation})
    return atoms


def first_sigma(frames):
    """The atom width (px) estimated on frame 0 of a stack, None where it cannot be."""
    from .scale import estimate_sigma

    sigma = estimate_sigma(np.asarray(frames[0], np.float32))
    return float(sigma) if np.isfinite(sigma) else None


def blob_rule(prob, separation, threshold):
    """(smoothing px, level, separation) of the blob route, read from one frame's map."""
    columns = _blob_table(prob)
    separation = separation or _typical_separation(columns)
    smoothing, threshold = _merge_rule(prob, columns, separation, threshold)
    return smoothing, threshold, separation


def chunk_atoms(prob, chunk, method, threshold, sigma, smoothing):
    """The columns (refined) or merged blobs of a chunk of frames and their maps;
    ``frame`` counted from the chunk's first."""
    if method == "columns":
        return _columns(prob, chunk, threshold, sigma)
    return _merged(prob, chunk, threshold, smoothing)


def _columns(prob, chunk, threshold, sigma):
    """The columns of a chunk of frames, refined on the raw frames.

    The refinement is :func:`atomstat.analyze`'s (up to eight rounds of
    neighbour subtraction) with 3 centroid iterations per round instead of
    10: on dumbbell movies (bench/bench_movies.py) the centres come out the
    same (angle error median 0.266 against 0.265 degrees, separation 11.87
    px both) in 40 % of the time.
    """
    from .describe import add_intensity, add_neighbours
    from .locate import locate
    from .refine import refine_centres

    atoms = locate(prob, chunk, threshold=threshold, sigma=sigma, refine=False)
    if not len(atoms):
        return atoms
    sigma = sigma or float(np.sqrt(np.nanmedian(atoms["area"]) / np.pi) / 1.45)
    xy = atoms[["x", "y"]].to_numpy(float, copy=True)
    for rows, start in _frames(atoms):
        frame = int(atoms["frame"].iloc[rows[0]])
        xy[rows] = refine_centres(chunk[frame], start, sigma, iterations=_REFINE_ITERATIONS)
    h, w = chunk.shape[1:]
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)
    atoms = atoms.assign(x=xy[:, 0], y=xy[:, 1])[inside]
    atoms = add_neighbours(atoms)
    return add_intensity(atoms, chunk, half_width=max(1, round(sigma)))


def _merged(prob, chunk, threshold, smoothing):
    """Blobs of the probability map smoothed over ``smoothing`` px, at ``threshold``."""
    from .locate import locate

    smooth = ndimage.gaussian_filter(prob, (0, smoothing, smoothing)) if smoothing else prob
    return locate(smooth, chunk, threshold=threshold, refine=False)


def _merge_rule(prob, columns, separation, threshold=None):
    """(smoothing px, level) that merge the most columns in pairs on one frame.

    A blob holding exactly two columns (the centres of the blobs at 0.5), no
    further apart than 1.3 separations, is a merged pair. Of the levels (only
    ``threshold`` when given) and smoothings tried, in order of preference,
    the first to reach 95 % of the most pairs any reaches wins.
    """
    xy = columns[["x", "y"]].to_numpy()
    px = np.clip(np.round(xy).astype(int), 0, np.array(prob.shape[::-1]) - 1)
    levels = _MERGE_LEVELS if threshold is None else (threshold,)
    tried = []
    for share in _MERGE_SMOOTHING:
        smooth = ndimage.gaussian_filter(prob, share * separation) if share else prob
        for level in levels:
            labels, _ = ndimage.label(smooth >= level)
            tried.append((_merged_pairs(labels[px[:, 1], px[:, 0]], xy, separation), share, level))
    most = max(t[0] for t in tried)
    pairs, share, level = next(t for t in tried if t[0] >= 0.95 * most)
    log.info(
        "blob route: %d column pairs merge at level %.2f, smoothing %.3g px",
        pairs,
        level,
        share * separation,
    )
    return share * separation, level


def _merged_pairs(owner, xy, separation):
    """How many blobs hold exactly two of the columns, at most 1.3 separations apart."""
    inside = owner > 0
    ids, count = np.unique(owner[inside], return_counts=True)
    two = ids[count == 2]
    if not len(two):
        return 0
    rows = np.flatnonzero(inside)
    order = np.argsort(owner[rows], kind="stable")
    grouped = rows[order][np.isin(owner[rows][order], two)].reshape(-1, 2)
    d = np.hypot(*(xy[grouped[:, 0]] - xy[grouped[:, 1]]).T)
    return int((d <= 1.3 * separation).sum())


def _progress(iterable, enabled, total):
    if not enabled or total <= _FRAMES_PER_CHUNK:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=f"chunks of {_FRAMES_PER_CHUNK} frames", unit="chunk")


def _blob_table(prob):
    """Blobs of one probability map at 0.5 (their centroids), for the column separation."""
    from .locate import blob_shapes
    from .table import make_atoms

    shapes = blob_shapes(prob, 0.5)
    return make_atoms({"x": shapes["x"], "y": shapes["y"]})
