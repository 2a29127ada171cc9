"""Per-atom descriptors that need more than the blob itself: neighbours and intensity."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

__all__ = [
    "add_intensity",
    "add_neighbours",
    "add_relative_intensity",
    "add_strain",
    "add_sublattice_neighbours",
]


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


def add_relative_intensity(atoms: pd.DataFrame, *, k: int = 6, by="auto") -> pd.DataFrame:
    """Fill ``intensity_relative``: intensity over the median intensity of the k nearest atoms.

    A substitutional dopant lighter than its host sits below 1, a heavier one
    above; a uniform drift of brightness across the image (thickness, scan
    gain) cancels out. Neighbours are taken in the same frame and, where the
    table has a ``sublattice`` column, on the same sublattice (a faint S2
    column is measured against S2 columns, not against Mo). NaN where the
    group has fewer than ``k + 1`` atoms, the intensity is missing, or the
    atom is on no site (sublattice -1).

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table, with ``intensity``.
    k : int
        Number of neighbours (6 is the first shell of a trigonal lattice;
        in a honeycomb lattice it reaches the second shell).
    by : "auto", str or None
        The column whose groups are compared apart: "auto" takes
        ``sublattice`` where present; None compares with every atom.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> xy = np.array([(i, j) for j in range(4) for i in range(4)], float)
    >>> level = np.full(16, 100.0)
    >>> level[5] = 50.0
    >>> atoms = make_atoms({"x": xy[:, 0], "y": xy[:, 1], "intensity": level})
    >>> add_relative_intensity(atoms, k=4)["intensity_relative"].iloc[[5, 0]].tolist()
    [0.5, 1.0]
    """
    if not _is_count(k):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    atoms = atoms.copy()
    out = np.full(len(atoms), np.nan)
    intensity = atoms["intensity"].to_numpy(np.float64)
    for rows, xy in _frames(atoms, min_atoms=k + 1, by=_by(atoms, by)):
        _, idx = cKDTree(xy).query(xy, k=k + 1)
        ref = np.median(intensity[rows][idx[:, 1:]], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[rows] = np.where(ref > 0, intensity[rows] / ref, np.nan)
    atoms["intensity_relative"] = out
    return atoms


def add_strain(atoms: pd.DataFrame, *, reference=None, shell: float = 1.25) -> pd.DataFrame:
    """Fill the local lattice strain from an affine fit to each atom's neighbours.

    Each atom's first-shell neighbour vectors ``v`` (neighbours closer than
    ``shell`` times the median nearest-neighbour distance) are paired with
    the closest ideal vectors ``r`` of the lattice, and the 2x2 deformation
    ``F`` minimising ``sum |v - F r|^2`` gives ``strain_xx``, ``strain_yy``,
    ``strain_xy`` (the symmetric part of ``F - I``, in image axes: x right,
    y down) and ``lattice_rotation`` (degrees, counter-clockwise as
    displayed). NaN where fewer than two non-parallel neighbours pair up.

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table (``x``, ``y``, ``frame``).
    reference : array-like of shape (m, 2), optional
        The ideal first-shell neighbour vectors (px). By default they are
        learned from each frame as the most common neighbour vectors, so the
        strain is relative to the frame's own average lattice.
    shell : float
        Neighbour cut-off in units of the median nearest-neighbour distance.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> xy = np.array([(i, j) for j in range(6) for i in range(6)], float) * 10
    >>> atoms = make_atoms({"x": xy[:, 0] * 1.02, "y": xy[:, 1]})
    >>> ideal = [(10, 0), (-10, 0), (0, 10), (0, -10)]
    >>> out = add_strain(atoms, reference=ideal)
    >>> round(float(out.strain_xx.median()), 4), round(float(out.strain_yy.median()), 4)
    (0.02, 0.0)
    """
    if not (np.isfinite(shell) and shell > 1):
        raise ValueError(f"shell must be a number above 1, got {shell!r}")
    ref = None if reference is None else np.asarray(reference, float)
    if ref is not None and (ref.ndim != 2 or ref.shape[1] != 2 or len(ref) < 2):
        raise ValueError(f"reference must be an array of shape (m >= 2, 2), got {np.shape(ref)}")
    atoms = atoms.copy()
    cols = {c: np.full(len(atoms), np.nan) for c in STRAIN_COLUMNS}
    for rows, xy in _frames(atoms, min_atoms=3):
        vec, ok, d0 = _shell_vectors(xy, shell)
        frame_ref = _common_vectors(vec[ok], d0, len(xy)) if ref is None else ref
        for name, values in _affine_strain(vec, ok, frame_ref, d0).items():
            cols[name][rows] = values
    for name, values in cols.items():
        atoms[name] = values
    return atoms


STRAIN_COLUMNS = ("strain_xx", "strain_yy", "strain_xy", "lattice_rotation")


def _is_count(k):
    return isinstance(k, int | np.integer) and not isinstance(k, bool) and k >= 1


def add_sublattice_neighbours(atoms: pd.DataFrame) -> pd.DataFrame:
    """Fill ``sublattice_nn_distance``: the distance (px) to the closest atom of the same
    sublattice in the same frame; NaN on no site (-1) or alone on its sublattice.

    Raises
    ------
    ValueError
        If the table has no ``sublattice`` column (see :func:`atomstat.sublattices`).

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [0.0, 1.0, 4.0, 9.0], "y": [0.0] * 4,
    ...                     "sublattice": [0, 1, 0, 1]})
    >>> add_sublattice_neighbours(atoms)["sublattice_nn_distance"].tolist()
    [4.0, 8.0, 4.0, 8.0]
    """
    if "sublattice" not in atoms:
        raise ValueError(
            "the atoms table has no 'sublattice' column: run atomstat.sublattices first"
        )
    atoms = atoms.copy()
    out = np.full(len(atoms), np.nan)
    for rows, xy in _frames(atoms, min_atoms=2, by="sublattice"):
        out[rows] = cKDTree(xy).query(xy, k=2)[0][:, 1]
    atoms["sublattice_nn_distance"] = out
    return atoms


def _by(atoms, by):
    if by == "auto":
        return "sublattice" if "sublattice" in atoms else None
    if by is not None and by not in atoms:
        raise ValueError(f"by must be 'auto', None or a column of the atoms table, got {by!r}")
    return by


def _frames(atoms, *, min_atoms, by=None):
    """(row positions, xy array) of each frame (and group of ``by``, leaving out group -1)
    with at least ``min_atoms`` atoms."""
    frames = atoms["frame"].to_numpy() if "frame" in atoms else np.zeros(len(atoms), int)
    xy_all = atoms[["x", "y"]].to_numpy(np.float64)
    groups = np.zeros(len(atoms), int) if by is None else atoms[by].to_numpy()
    for f in np.unique(frames):
        for g in np.unique(groups[frames == f]):
            if by is not None and g == -1:
                continue
            rows = np.flatnonzero((frames == f) & (groups == g))
            if len(rows) >= min_atoms:
                yield rows, xy_all[rows]


def _shell_vectors(xy, shell, k_max=8):
    """Neighbour vectors (n, k, 2), a mask of those within the first shell, and the nn distance."""
    k = min(k_max, len(xy) - 1)
    d, idx = cKDTree(xy).query(xy, k=k + 1)
    d0 = float(np.median(d[:, 1]))
    vec = xy[idx[:, 1:]] - xy[:, None, :]
    return vec, d[:, 1:] < shell * d0, d0


def _common_vectors(vectors, d0, n_atoms):
    """The ideal neighbour vectors: centres of the dense groups of all neighbour vectors."""
    from sklearn.cluster import DBSCAN

    if len(vectors) < 3:
        return np.empty((0, 2))
    min_samples = max(3, n_atoms // 20)
    groups = DBSCAN(eps=0.12 * d0, min_samples=min_samples).fit_predict(vectors)
    return np.array([np.median(vectors[groups == g], axis=0) for g in np.unique(groups) if g >= 0])


def _affine_strain(vec, ok, ref, d0):
    """Least-squares F with v ~ F r per atom; strain and rotation from F."""
    n = len(vec)
    nan = {c: np.full(n, np.nan) for c in STRAIN_COLUMNS}
    if len(ref) < 2:
        return nan
    gap = np.linalg.norm(vec[:, :, None, :] - ref[None, None, :, :], axis=-1)
    r = ref[np.argmin(gap, axis=2)]  # (n, k, 2): the closest ideal vector to each neighbour
    w = (ok & (gap.min(axis=2) < 0.35 * d0)).astype(float)
    A = np.einsum("nk,nki,nkj->nij", w, r, r)  # sum r r^T
    B = np.einsum("nk,nki,nkj->nij", w, vec, r)  # sum v r^T
    det = np.linalg.det(A)
    good = det > 1e-3 * d0**4
    F = np.full((n, 2, 2), np.nan)
    F[good] = B[good] @ np.linalg.inv(A[good])
    return {
        "strain_xx": F[:, 0, 0] - 1,
        "strain_yy": F[:, 1, 1] - 1,
        "strain_xy": (F[:, 0, 1] + F[:, 1, 0]) / 2,
        # y points down, so a rotation that is counter-clockwise as displayed has F[1, 0] < 0
        "lattice_rotation": np.degrees(
            np.arctan2(F[:, 0, 1] - F[:, 1, 0], F[:, 0, 0] + F[:, 1, 1])
        ),
    }
