"""Work from stored probability maps: run the network once, re-threshold many times.

:func:`atomstat.analyze` streams a movie through the network and keeps only
the atoms table. An interactive tool wants the probability map too, so that a
new contour ``threshold`` gives a new table at once, without the network:

- :func:`analyze_maps` does what :func:`atomstat.analyze` does and also
  returns the probability map;
- :func:`relocate` turns a stored map into the atoms table at any threshold,
  exactly as :func:`atomstat.analyze` would have at that threshold;
- :func:`blob_contours` gives each atom's contour polygon, for drawing;
- :func:`match_ids` says which atom of the new table is which of the old one,
  so that labels follow the atoms to the new table.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from skimage.measure import find_contours

from .locate import PEAK_MARGIN, concat_frames, locate
from .metrics import match_points
from .pipeline import _refine_sigma, prepare

__all__ = ["analyze_maps", "blob_contours", "match_ids", "relocate"]


def analyze_maps(
    data,
    *,
    threshold: float = 0.5,
    model=None,
    split: bool | None = None,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`atomstat.analyze`, returning the probability map as well.

    Parameters
    ----------
    data : ndarray or hyperspy Signal2D
        An image (H, W) or a stack (T, H, W).
    threshold : float in (0, 1)
        Probability level of the blob contours.
    model : None, str, Path or keras.Model
        As for :func:`atomstat.analyze`: None picks the shipped model from
        the data (``stm`` for scanning-probe files, else ``universal``).
    split : bool or None
        As for :func:`atomstat.analyze` (None: on for STM).
    callback : callable, optional
        Called as ``callback(frames_done, n_frames)`` after every chunk of
        frames (a progress bar for stacks).

    Returns
    -------
    atoms : pandas.DataFrame
        The atoms table, as :func:`atomstat.analyze` returns it.
    prob : ndarray of float32, the shape of ``data``
        The network's probability map.

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("square", shape=(96, 96), spacing=16, rng=0)
    >>> atoms, prob = analyze_maps(sim.image)
    >>> prob.shape, len(atoms) == len(relocate(prob, sim.image, attrs=atoms.attrs))
    ((96, 96), True)
    """
    run = prepare(data, threshold=threshold, model=model, split=split)
    prob = np.empty((run.n_frames, *np.shape(run.frames)[1:]), np.float32)
    tables = []
    for start, chunk, p, atoms in run.chunks():
        prob[start : start + len(chunk)] = p
        tables.append(atoms)
        if callback is not None:
            callback(start + len(chunk), run.n_frames)
    atoms = concat_frames(tables)
    atoms.attrs.update(run.attrs)
    return atoms, prob[0] if run.single else prob


def relocate(prob, image, *, threshold: float = 0.5, attrs: dict | None = None) -> pd.DataFrame:
    """The atoms table of a stored probability map at a new contour threshold.

    Parameters
    ----------
    prob : ndarray of shape (H, W) or (T, H, W)
        A probability map from :func:`analyze_maps` or :func:`atomstat.segment`.
    image : ndarray or Signal2D of the same shape
        The raw image the map came from (centres are refined on it).
    threshold : float in (0, 1)
        The new contour level.
    attrs : dict, optional
        The ``attrs`` of the table the map came with (calibration, model,
        ``sigma``); they are copied, with ``threshold`` updated. ``sigma``
        sizes the centre refinement, ``peak_margin`` drops the noise
        fragments and ``split`` splits blobs holding several atoms, as in
        :func:`atomstat.analyze`.

    Returns
    -------
    atoms : pandas.DataFrame
        What :func:`atomstat.analyze` returns at ``threshold``.
    """
    attrs = dict(attrs or {})
    sigma = attrs.get("sigma")
    sigma = _refine_sigma(sigma) if sigma is not None else None
    margin = float(attrs.get("peak_margin", PEAK_MARGIN))
    split = bool(attrs.get("split", False))
    atoms = locate(prob, image, threshold=threshold, peak_margin=margin, sigma=sigma, split=split)
    counts = {k: atoms.attrs[k] for k in ("fragments", "split_blobs") if k in atoms.attrs}
    atoms.attrs.update(attrs)
    atoms.attrs.update(counts, threshold=threshold)  # this run's counts, not the map's first
    return atoms


def blob_contours(prob: np.ndarray, threshold: float, atoms: pd.DataFrame) -> pd.DataFrame:
    """Contour polygons of the blobs of one map, each given to the closest atom.

    Parameters
    ----------
    prob : ndarray of shape (H, W)
        One frame's probability map.
    threshold : float in (0, 1)
        The contour level (that of ``atoms``).
    atoms : pandas.DataFrame
        The atoms of this frame (``x``, ``y``).

    Returns
    -------
    vertices : pandas.DataFrame
        One row per contour vertex: ``x``, ``y`` (px) and ``atom_id`` (the
        index of the atom whose centre is closest to the contour's centroid,
        -1 when no atom lies within the contour's own size). Each contour is
        closed and followed by one row of NaN coordinates with the same
        ``atom_id``, so that a selection of whole contours drawn as one line
        breaks between them.

    Examples
    --------
    >>> prob = np.zeros((30, 30), np.float32)
    >>> prob[5:10, 5:10] = prob[20:25, 18:26] = 1.0
    >>> atoms = pd.DataFrame({"x": [7.0, 21.5], "y": [7.0, 22.0]}, index=[4, 9])
    >>> v = blob_contours(prob, 0.5, atoms)
    >>> sorted(set(v.atom_id)), int(v.x.isna().sum())
    ([4, 9], 2)
    """
    prob = np.asarray(prob)
    if prob.ndim != 2:
        raise ValueError(f"prob must be one map (H, W), got shape {prob.shape}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold!r}")
    padded = np.pad(prob.astype(np.float32, copy=False), 1)
    contours = [c - 1.0 for c in find_contours(padded, threshold) if len(c) > 2]
    if not contours or not len(atoms):
        return pd.DataFrame({"x": [], "y": [], "atom_id": np.zeros(0, np.int64)})
    centroid = np.array([c.mean(axis=0)[::-1] for c in contours])
    size = np.array([np.ptp(c, axis=0).max() for c in contours])
    dist, nearest = cKDTree(atoms[["x", "y"]].to_numpy(float)).query(centroid)
    owner = np.where(dist <= np.maximum(size, 1.0), atoms.index.to_numpy()[nearest], -1)
    lengths = np.array([len(c) + 1 for c in contours])
    gap = np.full((1, 2), np.nan)
    pts = np.concatenate([np.vstack([c, gap]) for c in contours])
    return pd.DataFrame(
        {"x": pts[:, 1], "y": pts[:, 0], "atom_id": np.repeat(owner, lengths).astype(np.int64)}
    )


def match_ids(old: pd.DataFrame, new: pd.DataFrame, *, tol: float | None = None) -> dict:
    """Pair the atoms of two tables of the same data (one to one, frame by frame).

    Parameters
    ----------
    old, new : pandas.DataFrame
        Atoms tables (``frame``, ``x``, ``y``), e.g. before and after a
        threshold change.
    tol : float, optional
        Largest distance (px) between paired centres; by default half the
        median ``nn_distance`` of ``old`` (2 px without it).

    Returns
    -------
    mapping : dict of int to int
        Old atom id -> new atom id, for every atom found in both.

    Examples
    --------
    >>> old = pd.DataFrame({"frame": 0, "x": [1.0, 20.0], "y": [1.0, 5.0]}, index=[10, 11])
    >>> new = pd.DataFrame({"frame": 0, "x": [20.3, 50.0], "y": [5.1, 5.0]}, index=[0, 1])
    >>> match_ids(old, new)
    {11: 0}
    """
    if tol is None:
        nn = old["nn_distance"].median() if "nn_distance" in old and len(old) else np.nan
        tol = 0.5 * float(nn) if np.isfinite(nn) else 2.0
    if not tol > 0:
        raise ValueError(f"tol must be a positive distance in px, got {tol!r}")
    mapping = {}
    frames_new = dict(tuple(new.groupby("frame"))) if "frame" in new else {0: new}
    for frame, a in old.groupby("frame") if "frame" in old else [(0, old)]:
        b = frames_new.get(frame)
        if b is None or not len(b):
            continue
        ia, ib, _ = match_points(a[["x", "y"]].to_numpy(float), b[["x", "y"]].to_numpy(float), tol)
        mapping.update(zip(a.index[ia].tolist(), b.index[ib].tolist(), strict=True))
    return mapping
