"""Per-atom descriptors that need more than the blob itself: neighbours and intensity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

__all__ = ["add_intensity", "add_neighbours"]


def add_neighbours(atoms: pd.DataFrame) -> pd.DataFrame:
    """Fill ``nn_distance`` and ``nnn_distance`` (px), frame by frame.

    ``nn_distance`` is the distance to the closest other atom of the same
    frame and ``nnn_distance`` to the second closest; NaN where a frame has
    too few atoms.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [0.0, 3.0, 0.0], "y": [0.0, 0.0, 4.0]})
    >>> add_neighbours(atoms)[["nn_distance", "nnn_distance"]].to_numpy().tolist()
    [[3.0, 4.0], [3.0, 5.0], [4.0, 5.0]]
    """
    atoms = atoms.copy()
    nn = np.full(len(atoms), np.nan)
    nnn = np.full(len(atoms), np.nan)
    frames = atoms["frame"].to_numpy()
    for f in np.unique(frames):
        rows = np.flatnonzero(frames == f)
        if len(rows) < 2:
            continue
        xy = atoms[["x", "y"]].to_numpy()[rows]
        k = min(3, len(rows))
        d, _ = cKDTree(xy).query(xy, k=k)
        nn[rows] = d[:, 1]
        if k == 3:
            nnn[rows] = d[:, 2]
    atoms["nn_distance"] = nn
    atoms["nnn_distance"] = nnn
    return atoms


def add_intensity(atoms: pd.DataFrame, image: np.ndarray, *, half_width: int = 2) -> pd.DataFrame:
    """Fill ``intensity``: the raw image summed over a (2k+1)^2 box around each centre.

    Box pixels outside the image are left out. ``image`` is (H, W) for one
    frame or (T, H, W) indexed by the ``frame`` column.
    """
    atoms = atoms.copy()
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[None]
    t, h, w = image.shape
    if len(atoms) == 0:
        return atoms
    off = np.arange(-half_width, half_width + 1)
    ox, oy = np.meshgrid(off, off)
    cx = np.round(atoms["x"].to_numpy()).astype(int)[:, None] + ox.ravel()
    cy = np.round(atoms["y"].to_numpy()).astype(int)[:, None] + oy.ravel()
    frames = np.clip(atoms["frame"].to_numpy(), 0, t - 1)[:, None]
    ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    vals = image[frames, np.clip(cy, 0, h - 1), np.clip(cx, 0, w - 1)]
    atoms["intensity"] = np.where(ok, vals, 0.0).sum(axis=1)
    return atoms
