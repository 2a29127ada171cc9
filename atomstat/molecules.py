"""Molecules: blobs grouped into molecules, each fitted to a template for its orientation.

In STM images of molecules (sumanene on gold in the paper) the network finds
several blobs per molecule, maxima of the charge density. Three steps turn
the atoms table into a molecules table:

1. **Group** (:func:`group_molecules`). Blobs closer than a cut distance are
   linked, and the connected groups (``scipy.sparse.csgraph``) are the
   molecules. The cut needs no setting: the distances between the blobs of
   one molecule form a tight short mode, well apart from the distances
   between molecules, and the cut is put in the middle of the density valley
   (log scale) between the median nearest-neighbour distance and twice it.
2. **Template.** The typical molecule's blob count (the most common group
   size) sets the template size. The template is learned from the image's
   own complete molecules (each aligned to the current mean by a rigid
   Procrustes fit with the best blob assignment, iterated), made n-fold
   symmetric, and turned so that its first blob points along +x; or it is
   given.
3. **Fit** (:func:`fit_molecules`). Every molecule is fitted to the template
   by a rotation and a translation (blob assignment by
   ``scipy.optimize.linear_sum_assignment``). Its ``orientation`` is the
   rotation, modulo the symmetry; ``residual`` the rms distance between its
   blobs and the fitted template. A molecule is a ``misfit`` when its blob
   count differs from the template's or its residual exceeds
   ``median + misfit * MAD`` of the complete molecules: a molecule that
   switched conformation or rotated while the tip scanned over it.

Angles are degrees counter-clockwise from +x as displayed (row 0 on top), as
``orientation`` of the atoms table and ``angle`` of the dumbbells: a molecule
has orientation ``phi`` when its template, turned by ``phi``, fits it. For a
learned template that is the azimuth of one of its blobs, in
``[0, 360 / symmetry)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._checks import number
from .molecule_fit import (
    candidate_fits,
    canonical,
    find_symmetry,
    learn_template,
    radius_of,
    rotation,
    symmetrize,
    to_up,
)
from .table import validate_atoms

__all__ = ["MOLECULE_COLUMNS", "find_molecules", "fit_molecules", "group_molecules"]

#: Column name -> dtype of the molecules table, in display order.
MOLECULE_COLUMNS: dict[str, str] = {
    "frame": "int64",
    "x": "float64",
    "y": "float64",
    "orientation": "float64",
    "n_blobs": "int64",
    "residual": "float64",
    "misfit": "bool",
    "edge": "bool",
}


def find_molecules(
    atoms: pd.DataFrame,
    *,
    max_distance: float | None = None,
    template=None,
    symmetry: int | None = None,
    misfit: float = 6.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group the blobs of an atoms table into molecules and fit each one.

    :func:`group_molecules` then :func:`fit_molecules`; see them for the
    parameters.

    Returns
    -------
    atoms : pandas.DataFrame
        A copy of ``atoms`` with a ``molecule`` column (the molecule id).
    molecules : pandas.DataFrame
        One row per molecule, index ``molecule_id``; see :func:`fit_molecules`.
        ``attrs["max_distance"]`` adds the grouping cut (px).

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> r, a = 6.0, np.deg2rad([10, 130, 250, 40, 160, 280])
    >>> x = np.r_[20 + r * np.cos(a[:3]), 50 + r * np.cos(a[3:])]
    >>> y = np.r_[20 - r * np.sin(a[:3]), 30 - r * np.sin(a[3:])]
    >>> atoms, molecules = find_molecules(make_atoms({"x": x, "y": y}))
    >>> atoms["molecule"].tolist()
    [0, 0, 0, 1, 1, 1]
    >>> molecules[["x", "y", "orientation", "n_blobs"]].round(3).to_numpy().tolist()
    [[20.0, 20.0, 10.0, 3.0], [50.0, 30.0, 40.0, 3.0]]
    """
    atoms = atoms.copy()
    groups = group_molecules(atoms, max_distance=max_distance)
    atoms["molecule"] = groups
    molecules = fit_molecules(atoms, template=template, symmetry=symmetry, misfit=misfit)
    molecules.attrs["max_distance"] = groups.attrs["max_distance"]
    return atoms, molecules


def group_molecules(atoms: pd.DataFrame, *, max_distance: float | None = None) -> pd.Series:
    """Molecule id of every blob: blobs closer than ``max_distance`` are one molecule.

    Parameters
    ----------
    atoms : pandas.DataFrame
        An atoms table (``frame``, ``x``, ``y``), one row per blob.
    max_distance : float, optional
        Largest distance (px) between linked blobs of one molecule. By
        default the middle of the valley in the distribution of blob-pair
        distances between the median nearest-neighbour distance ``m`` (the
        blobs of one molecule) and ``2 m``.

    Returns
    -------
    molecule : pandas.Series of int64
        Aligned to ``atoms``, named ``molecule``; ids run from 0 over the
        frames in order. ``attrs["max_distance"]`` keeps the cut used.

    Raises
    ------
    ValueError
        If ``max_distance`` is not a positive number or a column is missing.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [0.0, 5.0, 2.5, 30.0, 35.0], "y": [0.0, 0.0, 4.0, 0.0, 0.0]})
    >>> group_molecules(atoms).tolist()
    [0, 0, 0, 1, 1]
    """
    validate_atoms(atoms, required=("frame", "x", "y"))
    if max_distance is not None:
        max_distance = number("max_distance", max_distance, low=0, low_open=True)
    frames = atoms["frame"].to_numpy()
    xy = atoms[["x", "y"]].to_numpy(float)
    if not np.isfinite(xy).all():
        raise ValueError("the atoms table has non-finite x or y")
    cut = float(max_distance) if max_distance is not None else _cut_distance(xy, frames)
    ids = np.zeros(len(atoms), np.int64)
    start = 0
    for f in np.unique(frames):
        rows = np.flatnonzero(frames == f)
        tree = cKDTree(xy[rows])
        graph = tree.sparse_distance_matrix(tree, cut, output_type="coo_matrix")
        n, labels = connected_components(graph, directed=False)
        ids[rows] = start + _first_seen_order(labels)
        start += n
    out = pd.Series(ids, index=atoms.index, name="molecule")
    out.attrs["max_distance"] = cut
    return out


def _first_seen_order(labels):
    """Relabel components so that ids follow the order of their first blob."""
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[labels]


def _cut_distance(xy, frames) -> float:
    """The density valley of the blob-pair distances between the median nn distance m
    and 2 m: distances histogrammed on a log scale (1 % bins, smoothed over 3 %), the
    run of bins within 2 % of the peak above the lowest, and its centre."""
    groups = [xy[frames == f] for f in np.unique(frames)]
    nn = [cKDTree(p).query(p, k=2)[0][:, 1] for p in groups if len(p) >= 2]
    if not nn:
        return 1.0  # no pairs at all: every blob is its own molecule
    m = float(np.median(np.concatenate(nn)))
    if m <= 0:
        raise ValueError("the atoms table has blobs at identical positions")
    d = np.concatenate([_pair_distances(p, 3 * m) for p in groups])
    edges = np.arange(np.log(m) - 0.7, np.log(3 * m) + 0.005, 0.01)
    density = ndimage.gaussian_filter1d(np.histogram(np.log(d), edges)[0].astype(float), 3)
    centres = (edges[:-1] + edges[1:]) / 2
    search = np.flatnonzero((centres >= np.log(m)) & (centres <= np.log(2 * m)))
    low = search[np.argmin(density[search])]
    near = density[search] <= density[low] + 0.02 * density.max()
    runs = np.split(search[near], np.flatnonzero(np.diff(search[near]) > 1) + 1)
    run = next(r for r in runs if low in r)
    return float(np.exp(centres[run].mean()))


def _pair_distances(pts, limit):
    if len(pts) < 2:
        return np.empty(0)
    tree = cKDTree(pts)
    pairs = tree.sparse_distance_matrix(tree, limit, output_type="ndarray")
    return pairs["v"][pairs["i"] < pairs["j"]]


def fit_molecules(
    atoms: pd.DataFrame, *, template=None, symmetry: int | None = None, misfit: float = 6.0
) -> pd.DataFrame:
    """Fit every molecule to a template: centre, orientation, residual, misfit flag.

    Parameters
    ----------
    atoms : pandas.DataFrame
        An atoms table with a ``molecule`` column (:func:`group_molecules`);
        an ``edge`` column, when present, marks blobs cut by the border.
    template : array-like of shape (K, 2), optional
        Blob positions (x, y in px, row axis down) of one molecule in its
        reference orientation; it is centred on its centroid. By default
        it is learned from the image's complete molecules (those with the
        most common blob count), and its first blob then points along +x.
        ``molecules.attrs["template"]`` holds the template used.
    symmetry : int, optional
        Rotational symmetry (n-fold) of the template: orientations are
        modulo ``360 / symmetry``. By default the largest n that maps the
        template's ring of blobs onto itself (3 for sumanene). A learned
        template is made exactly n-fold symmetric.
    misfit : float
        A complete molecule is a misfit when its residual exceeds the
        median residual of the complete molecules plus ``misfit`` times their
        robust spread (1.4826 MAD, at least 1 % of the template radius).

    Returns
    -------
    molecules : pandas.DataFrame
        Index ``molecule_id`` (the ``molecule`` ids of ``atoms``); columns
        :data:`MOLECULE_COLUMNS`: ``frame``, ``x``, ``y`` (centre, px),
        ``orientation`` (degrees in [0, 360 / symmetry), counter-clockwise
        as displayed; NaN for a single blob), ``n_blobs``, ``residual``
        (rms blob-to-template distance, px), ``misfit`` (wrong blob count
        or residual above the threshold; never for ``edge`` molecules) and
        ``edge`` (a blob cut by the border, or template blobs missing
        beyond, or within half the template radius of, the frame's
        outermost blobs). ``attrs`` keeps
        the atoms' calibration and adds ``template`` (list of [x, y]),
        ``symmetry`` and ``residual_threshold``.

    Raises
    ------
    ValueError
        If a column is missing, ``template`` is not (K, 2) finite points,
        ``symmetry`` does not fit the template, ``misfit`` is not positive,
        or no molecule has the template's blob count to learn it from.
    TypeError
        If ``symmetry`` is not an integer.
    """
    validate_atoms(atoms, required=("frame", "x", "y", "molecule"))
    if not (np.isfinite(misfit) and misfit > 0):
        raise ValueError(f"misfit must be a positive number of MADs, got {misfit!r}")
    if symmetry is not None and (
        isinstance(symmetry, bool) or not isinstance(symmetry, int | np.integer)
    ):
        raise TypeError(f"symmetry must be an integer (n-fold), got {symmetry!r}")
    if symmetry is not None and symmetry < 1:
        raise ValueError(f"symmetry must be at least 1, got {symmetry!r}")
    given = None if template is None else _check_template(template)
    if len(atoms) == 0:
        return _make_table({}, atoms.attrs, given, symmetry, np.nan)
    groups = _groups(atoms)
    if given is None:
        tmpl = learn_template([g["pts"] for g in groups if not g["edge"]])
    else:
        tmpl = given
    symmetry = find_symmetry(tmpl, symmetry)
    if given is None:
        tmpl = canonical(symmetrize(tmpl, symmetry))
    rows = [_fit_group(g, tmpl, symmetry) for g in groups]
    table = pd.DataFrame(rows).set_index("molecule_id")
    threshold = _threshold(table, len(tmpl), radius_of(tmpl), misfit)
    table["misfit"] = ~table["edge"] & (
        (table["n_blobs"] != len(tmpl)) | ~(table["residual"] <= threshold)
    )
    return _make_table(table, atoms.attrs, tmpl, symmetry, threshold)


# ----------------------------------------------------------------- helpers
# Points are (x, up) with up = -y here, so that angles are counter-clockwise as displayed.


def _check_template(template):
    tmpl = np.asarray(template, float)
    if tmpl.ndim != 2 or tmpl.shape[1] != 2 or len(tmpl) < 1 or not np.isfinite(tmpl).all():
        raise ValueError(
            f"template must be finite (x, y) points of shape (K, 2), got shape {tmpl.shape}"
        )
    tmpl = to_up(tmpl)
    return tmpl - tmpl.mean(axis=0)


def _groups(atoms):
    """One dict per molecule: id, frame, blob points (up coordinates), edge, frame box."""
    ids = atoms["molecule"].to_numpy()
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"the molecule column must hold integer ids, got dtype {ids.dtype}")
    frames = atoms["frame"].to_numpy()
    pts = to_up(atoms[["x", "y"]].to_numpy(float))
    edge = atoms["edge"].to_numpy(bool) if "edge" in atoms else np.zeros(len(atoms), bool)
    boxes = {f: (pts[frames == f].min(0), pts[frames == f].max(0)) for f in np.unique(frames)}
    order = np.argsort(ids, kind="stable")
    splits = np.flatnonzero(np.diff(ids[order])) + 1
    out = []
    for rows in np.split(order, splits):
        f = frames[rows[0]]
        out.append(
            {"id": ids[rows[0]], "frame": f, "pts": pts[rows], "edge": edge[rows].any()}
            | {"box": boxes[f]}
        )
    return out


def _fit_group(group, tmpl, symmetry):
    """One row of the molecules table (misfit is set later, from all residuals)."""
    p = group["pts"]
    row = {"molecule_id": group["id"], "frame": group["frame"], "n_blobs": len(p)}
    low, high = group["box"]
    if len(p) < 2 or len(tmpl) < 2:  # no orientation; near the border, the rest may be outside
        centre, orientation, rms = p.mean(axis=0), np.nan, np.nan
        reach = 2 * radius_of(tmpl) if len(tmpl) > len(p) else 0.0
        outside = bool(((centre - low < reach) | (high - centre < reach)).any())
    else:
        fits = candidate_fits(p, tmpl)
        rms, theta, centre, _, _ = min(fits, key=lambda fit: fit[0])
        orientation = np.degrees(theta) % (360.0 / symmetry)
        outside = len(p) < len(tmpl) and _lost_at_border(fits, rms, tmpl, low, high)
    row |= {"x": centre[0], "y": -centre[1], "orientation": orientation, "residual": rms}
    return row | {"misfit": False, "edge": bool(group["edge"] or outside)}


def _lost_at_border(fits, rms, tmpl, low, high):
    """Could the blobs missing from an incomplete molecule lie at the frame's border?

    Every fit about as good as the best counts (two blobs of a triangle fit
    either way round); a missing template blob is at the border when it lies
    beyond, or within half the template radius of, the frame's outermost blobs.
    """
    band = 0.5 * radius_of(tmpl)
    for fit_rms, theta, centre, _, j in fits:
        if fit_rms <= rms + 0.1 * band:
            lost = np.delete(tmpl, j, axis=0) @ rotation(theta).T + centre
            if ((lost < low + band) | (lost > high - band)).any():
                return True
    return False


def _threshold(table, size, radius, k):
    """median + k * max(1.4826 MAD, 1 % of the radius) of the complete molecules' residuals."""
    ok = (table["n_blobs"] == size) & ~table["edge"] & np.isfinite(table["residual"])
    r = table.loc[ok, "residual"].to_numpy()
    if not len(r):
        return np.nan
    med = float(np.median(r))
    spread = max(1.4826 * float(np.median(np.abs(r - med))), 0.01 * radius)
    return med + k * spread


def _make_table(table, attrs, tmpl, symmetry, threshold):
    data = {}
    for name, dtype in MOLECULE_COLUMNS.items():
        values = table[name] if len(table) else []
        data[name] = np.asarray(values).astype(dtype)
    index = table.index.astype("int64") if len(table) else pd.RangeIndex(0)
    out = pd.DataFrame(data, index=pd.Index(index, name="molecule_id"))
    out.attrs.update(attrs)
    template = None if tmpl is None else (to_up(tmpl)).round(6).tolist()
    out.attrs.update({"template": template, "symmetry": symmetry, "residual_threshold": threshold})
    return out
