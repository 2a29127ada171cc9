"""Sublattices: which site of the unit cell each atom sits on.

The unit cell is learned from the atoms themselves, frame by frame:

1. Neighbour vectors (to the 12 closest atoms) are pooled and grouped; each
   group's median is a candidate translation.
2. A candidate is a lattice translation when most atoms have a partner at
   that vector (three quarters of the share of the best candidate) *and*
   the partners are as bright as the atoms themselves. The
   vector from a Mo column to an S2 column of MoS2 is present for every Mo
   atom but not for the S2 atoms (the reverse vector is another one); the
   vector from an A to a B column of a perovskite is present for both, but
   joins a bright atom to a faint one. Neither is a translation.
3. The two shortest independent translations, refined by least squares over
   all translations, are the basis. Each atom's position in the cell is then
   measured against the nearest atoms of the largest set of atoms joined by
   translations (a local origin, so that strain and scan distortion do not
   add up across the image; a grain or domain shifted by a fraction of a cell
   gets its own), and the positions are grouped on the torus of the cell.

Sites are numbered by their median intensity, 0 the brightest (by count
where no intensity is measured); atoms that sit on no site (adatoms,
interstitials, atoms of another phase) get -1.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ._checks import number
from .describe import add_relative_intensity, add_sublattice_neighbours
from .table import validate_atoms

__all__ = ["SUBLATTICE", "fit_lattice", "sublattices"]

log = logging.getLogger(__name__)

SUBLATTICE = "sublattice"
_K = 12  # neighbour vectors pooled per atom
_BINS = 40  # histogram of positions in the cell, per cell side
_MIN_DOMAIN = 30  # atoms in a domain of its own
#: A translation is shared by at least this share of the atoms that the best one joins: an
#: A-B vector of a honeycomb joins half of them (only the A atoms), a translation all.
_PRESENCE = 0.75
_MAX_TOLERANCE = 0.4  # in nn: a hexagon centre of a honeycomb lattice is 1 nn from every site


def sublattices(
    atoms: pd.DataFrame,
    *,
    tolerance: float = 0.22,
    min_share: float = 0.08,
    use_intensity: bool = True,
) -> pd.DataFrame:
    """Assign every atom to a sublattice: a copy of ``atoms`` with a ``sublattice`` column.

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table (``frame``, ``x``, ``y``; ``intensity`` where measured).
    tolerance : float
        Smallest tolerance on an atom's distance from its site, in units of
        the median nearest-neighbour distance; atoms farther from every site
        get -1. Where the lattice scatters more (noise, scan distortion), the
        tolerance grows to twice the 90th percentile of the distances of
        the most connected site's atoms, up to 0.4.
    min_share : float in (0, 1)
        A site needs at least this share of the atoms of the most populated
        site (a weak sublattice that the finder half missed still counts).
    use_intensity : bool
        Refuse translations that join atoms of different brightness (needed
        where two sublattices share one geometric lattice, as A and B columns
        of a perovskite in [001]). Off where ``intensity`` is missing.

    Returns
    -------
    atoms : pandas.DataFrame
        A copy with ``sublattice`` (int64: 0 the brightest site, -1 on no
        site), ``site_distance`` (px from the closest ideal site, NaN where
        no lattice was found) and ``sublattice_nn_distance`` (px to the
        closest atom of the same sublattice); where ``intensity`` is
        measured, ``intensity_relative`` is recomputed against the
        neighbours of the same sublattice
        (:func:`atomstat.describe.add_relative_intensity`).
        ``attrs["sublattices"]`` holds, per frame, the basis vectors (px,
        rows), the site offsets (fractions of the basis), each site's median
        intensity and count, and ``nn`` (the median nearest-neighbour
        distance, px) and ``tolerance`` (px).

    Raises
    ------
    TypeError, ValueError
        For a table without ``frame``, ``x``, ``y`` or NaN positions, or an
        option out of range.

    Examples
    --------
    >>> from atomstat.simulate import Defects, simulate_lattice
    >>> sim = simulate_lattice("honeycomb", shape=(160, 160), spacing=12,
    ...                        sublattice_ratio=0.4, defects=Defects(0, 0), rng=0)
    >>> truth = sim.atoms.assign(intensity=sim.atoms.amplitude)
    >>> out = sublattices(truth)
    >>> sorted(out.sublattice.unique().tolist())
    [0, 1]
    >>> bool((out.sublattice == (truth.amplitude < 1)).all())
    True
    """
    validate_atoms(atoms, finite=("x", "y"))
    number("tolerance", tolerance, low=0, high=0.5, low_open=True)
    number("min_share", min_share, low=0, high=1, low_open=True, high_open=True)
    out = atoms.copy()
    labels = np.full(len(atoms), -1, np.int64)
    dist = np.full(len(atoms), np.nan)
    found = []
    frames = atoms["frame"].to_numpy()
    xy_all = atoms[["x", "y"]].to_numpy(np.float64)
    level = _log_intensity(atoms) if use_intensity else None
    for f in np.unique(frames):
        rows = np.flatnonzero(frames == f)
        lev = None if level is None else level[rows]
        res = _assign_frame(xy_all[rows], lev, tolerance, min_share)
        if res is None:
            log.warning("frame %d: no lattice found among %d atoms; sublattice -1", f, len(rows))
            found.append({"frame": int(f), "basis": None, "sites": []})
            continue
        labels[rows], dist[rows], info = res
        found.append({"frame": int(f), **info})
    out[SUBLATTICE] = labels
    out["site_distance"] = dist
    out = add_sublattice_neighbours(out)
    if level is not None or _log_intensity(atoms) is not None:
        out = add_relative_intensity(out, by=SUBLATTICE)
    out.attrs["sublattices"] = found
    return out


def fit_lattice(xy, level=None) -> tuple[np.ndarray, np.ndarray] | None:
    """The lattice of a set of atom positions: its basis and its translations, or None.

    Parameters
    ----------
    xy : ndarray of shape (n, 2)
        Atom positions (px).
    level : ndarray of shape (n,), optional
        Log intensity per atom: translations joining bright atoms to faint
        ones are then refused (see :func:`sublattices`).

    Returns
    -------
    basis : ndarray of shape (2, 2)
        The two primitive vectors (rows, px), refined on all translations.
    translations : ndarray of shape (m, 2)
        Every lattice translation among the atoms' 12 closest neighbours.
    """
    xy = np.asarray(xy, np.float64)
    if len(xy) < 8:
        return None
    tree = cKDTree(xy)
    d, idx = tree.query(xy, k=min(_K, len(xy) - 1) + 1)
    nn = float(np.median(d[:, 1]))
    if not nn > 0:
        return None
    candidates = _candidate_vectors(xy[idx[:, 1:]] - xy[:, None, :], nn, len(xy))
    shifts = _translations(xy, tree, candidates, nn, level)
    basis = _basis_from(shifts, nn)
    return None if basis is None else (basis, shifts)


# --------------------------------------------------------------------------- lattice


def _log_intensity(atoms):
    if "intensity" not in atoms:
        return None
    v = atoms["intensity"].to_numpy(np.float64)
    ok = np.isfinite(v) & (v > 0)
    if not len(v) or ok.mean() < 0.9:
        return None
    return np.where(ok, np.log(np.where(ok, v, 1.0)), np.nan)


def _candidate_vectors(vectors, nn, n_atoms):
    """Centres of the dense groups of neighbour vectors."""
    v = vectors.reshape(-1, 2)
    v = v[np.isfinite(v).all(axis=1)]
    grid = np.round(v / (0.12 * nn)).astype(np.int64)
    keys, inverse, counts = np.unique(grid, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    order = np.argsort(-counts)
    need = max(3, 0.15 * n_atoms)
    centres = []
    taken = np.zeros(len(keys), bool)
    for k in order:
        if counts[k] < need / 3:
            break
        if taken[k]:
            continue
        near = np.abs(keys - keys[k]).max(axis=1) <= 1
        taken |= near
        members = v[near[inverse]]
        if len(members) >= need:
            centres.append(np.median(members, axis=0))
    return np.array(centres).reshape(-1, 2)


def _translations(xy, tree, candidates, nn, level):
    """The candidates that are lattice translations (presence, then brightness)."""
    if not len(candidates):
        return candidates
    tol = 0.25 * nn
    presence, spread = [], []
    for t in candidates:
        d, j = tree.query(xy + t, distance_upper_bound=tol)
        hit = np.isfinite(d)
        presence.append(hit.mean())
        if level is None or hit.sum() < 3:
            spread.append(np.nan)
        else:
            diff = level[j[hit]] - level[hit]
            spread.append(np.nanmedian(np.abs(diff - np.nanmedian(diff))) + abs(np.nanmedian(diff)))
    presence, spread = np.array(presence), np.array(spread)
    keep = presence >= _PRESENCE * presence.max()
    if level is not None and np.isfinite(spread[keep]).any():
        base = np.nanmin(spread[keep])
        keep &= ~(spread > 1.6 * base + 0.02)
    return candidates[keep]


def _basis_from(shifts, nn):
    """Two shortest independent translations, refined on all translations by least squares."""
    if len(shifts) < 2:
        return None
    order = np.argsort(np.hypot(*shifts.T))
    a1 = shifts[order[0]]
    a2 = None
    for k in order[1:]:
        t = shifts[k]
        sin = abs(np.cross(a1, t)) / (np.linalg.norm(a1) * np.linalg.norm(t))
        if sin > 0.3:
            a2 = t
            break
    if a2 is None:
        return None
    basis = np.array([a1, a2])
    ints = np.round(shifts @ np.linalg.inv(basis))
    good = np.abs(shifts @ np.linalg.inv(basis) - ints).max(axis=1) < 0.15
    if good.sum() >= 2 and np.linalg.matrix_rank(ints[good]) == 2:
        basis = np.linalg.lstsq(ints[good], shifts[good], rcond=None)[0]
    if abs(np.linalg.det(basis)) < 0.2 * nn**2:
        return None
    return basis


# --------------------------------------------------------------------------- sites


def _assign_frame(xy, level, tolerance, min_share):
    lattice = fit_lattice(xy, level)
    if lattice is None:
        return None
    basis, shifts = lattice
    tree = cKDTree(xy)
    nn = float(np.median(tree.query(xy, k=2)[0][:, 1]))
    inv = np.linalg.inv(basis)
    cell = float(np.linalg.norm(basis, axis=1).min())
    ref = _reference_component(xy, tree, shifts, 0.25 * nn, cell)
    local = _local_fraction(xy, inv, ref)
    sites = _site_peaks(local, basis, nn, tolerance, min_share)
    label, dist = _nearest_site(local, sites, basis)
    # noisy or distorted lattices scatter about their sites more: the tolerance covers
    # twice the 90th percentile of the reference atoms' distances, up to 0.4 nn
    spread = 2 * np.percentile(dist[ref >= 0], 90) if (ref >= 0).sum() >= 8 else 0.0
    tol = float(np.clip(spread, tolerance * nn, max(tolerance, _MAX_TOLERANCE) * nn))
    label[dist > tol] = -1
    order = _site_order(label, level, len(sites))
    remap = np.full(len(sites) + 1, -1)
    remap[order] = np.arange(len(order))
    label = remap[label]
    info = _site_info(basis, sites[order], label, level)
    info.update({"nn": round(nn, 4), "tolerance": round(tol, 4)})
    return label, dist, info


def _reference_component(xy, tree, shifts, tol, cell):
    """Per atom, the id of its domain's reference set, -1 for the others.

    A reference set is a set of atoms joined by lattice translations (one site,
    followed locally however the lattice bends): the largest, and every other
    large one lying apart from those already taken (a grain or a domain shifted
    by a fraction of a cell), not one interleaved with them (another sublattice).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(xy)
    rows, cols = [], []
    for t in shifts:
        d, j = tree.query(xy + t, distance_upper_bound=tol)
        hit = np.isfinite(d)
        rows.append(np.flatnonzero(hit))
        cols.append(j[hit])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    order = np.argsort(-sizes)
    out = np.where(comp == order[0], order[0], -1)
    for c in order[1:]:
        if sizes[c] < max(_MIN_DOMAIN, 0.05 * n):
            break
        mine = comp == c
        gap, _ = cKDTree(xy[out >= 0]).query(xy[mine])
        if np.median(gap) > 1.5 * cell:
            out[mine] = c
    return out


def _wrap(frac):
    return frac - np.floor(frac)


def _site_peaks(frac, basis, nn, tolerance, min_share):
    """Site positions (fractions in [0, 1)): peaks of a smoothed periodic histogram at
    least ``tolerance * nn`` px apart, each holding ``min_share`` of the largest's atoms."""
    from skimage.feature import peak_local_max

    hist, _, _ = np.histogram2d(frac[:, 0], frac[:, 1], bins=_BINS, range=[[0, 1], [0, 1]])
    width = 0.08 * nn * _BINS / np.linalg.norm(basis, axis=1)  # 0.08 nn, in bins
    smooth = ndimage.gaussian_filter(hist, np.maximum(width, 0.7), mode="wrap")
    pad = _BINS // 4
    tiled = np.pad(smooth, pad, mode="wrap")
    peaks = peak_local_max(tiled, min_distance=1, threshold_abs=min_share * smooth.max())
    peaks = peaks - pad
    inside = ((peaks >= 0) & (peaks < _BINS)).all(axis=1)
    peaks = np.unique(peaks[inside], axis=0)
    if not len(peaks):
        peaks = np.array([np.unravel_index(smooth.argmax(), smooth.shape)])
    height = smooth[peaks[:, 0], peaks[:, 1]]
    sites = _refine_peaks(frac, (peaks[np.argsort(-height)] + 0.5) / _BINS)
    kept = []
    for s in sites:  # strongest first; a weaker peak within the tolerance of a kept one merges
        if all(_cell_distance(s, k, basis) > tolerance * nn for k in kept):
            kept.append(s)
    sites = np.array(kept)
    label, dist = _nearest_site(frac, sites, basis)
    counts = np.bincount(label[dist <= tolerance * nn], minlength=len(sites))
    return sites[counts >= max(3, min_share * counts.max())]


def _cell_distance(a, b, basis):
    d = _wrap(np.asarray(a) - b + 0.5) - 0.5
    return float(np.linalg.norm(d @ basis))


def _refine_peaks(frac, sites):
    """Each site at the median of the positions close to it."""
    d = _wrap(frac[:, None, :] - sites[None, :, :] + 0.5) - 0.5
    near = np.argmin(np.abs(d).max(axis=2), axis=1)
    out = sites.copy()
    for s in range(len(sites)):
        mine = d[near == s, s]
        if len(mine):
            close = mine[np.abs(mine).max(axis=1) < 0.1]
            if len(close):
                out[s] = _wrap(sites[s] + np.median(close, axis=0))
    return out


def _nearest_site(frac, sites, basis):
    """Index of the closest site (minimum image on the cell) and its distance in px."""
    d = _wrap(frac[:, None, :] - sites[None, :, :] + 0.5) - 0.5
    px = np.linalg.norm(d @ basis, axis=2)
    label = np.argmin(px, axis=1)
    return label, px[np.arange(len(frac)), label]


def _local_fraction(xy, inv, ref, k=4):
    """Position in the cell relative to the k nearest atoms of the reference set of the
    closest domain."""
    if (ref >= 0).sum() < k + 1:
        return _wrap(xy @ inv)
    _, near = cKDTree(xy[ref >= 0]).query(xy)
    domain = ref[ref >= 0][near]
    out = np.empty((len(xy), 2))
    for c in np.unique(domain):
        refs = xy[ref == c]
        mine = domain == c
        _, idx = cKDTree(refs).query(xy[mine], k=min(k, len(refs)))
        idx = idx.reshape(mine.sum(), -1)
        rel = _wrap((xy[mine][:, None, :] - refs[idx]) @ inv)
        angle = 2 * np.pi * rel
        mean = np.arctan2(np.sin(angle).mean(axis=1), np.cos(angle).mean(axis=1))
        out[mine] = _wrap(mean / (2 * np.pi))
    return out


def _site_order(label, level, n_sites):
    """Sites by median brightness (then by count), brightest first."""
    counts = np.bincount(label[label >= 0], minlength=n_sites)
    bright = np.zeros(n_sites)
    if level is not None:
        for s in range(n_sites):
            vals = level[label == s]
            bright[s] = np.nanmedian(vals) if np.isfinite(vals).any() else -np.inf
    return np.lexsort((-counts, -bright))


def _site_info(basis, sites, label, level):
    stats = []
    for s, offset in enumerate(sites):
        mine = label == s
        med = np.nanmedian(np.exp(level[mine])) if level is not None and mine.any() else np.nan
        stats.append(
            {"offset": offset.round(4).tolist(), "atoms": int(mine.sum()), "intensity": float(med)}
        )
    return {"basis": basis.round(4).tolist(), "sites": stats, "off_site": int((label < 0).sum())}
