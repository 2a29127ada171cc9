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

import collections
import hashlib
import itertools
import logging
import threading

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ._checks import number
from .describe import add_relative_intensity, add_sublattice_neighbours
from .table import validate_atoms

__all__ = ["SUBLATTICE", "complete_sublattices", "fit_lattice", "sublattices"]

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
    level = None if level is None else np.asarray(level, np.float64)
    # the same atoms are fitted twice per frame (the completion of the sublattices, then
    # sublattices()); the second fit is the first's result (0.08 s for 8,000 atoms)
    key = hashlib.blake2b(xy.tobytes(), digest_size=16)
    key.update(b"-" if level is None else level.tobytes())
    key = (xy.shape, key.digest())
    with _FITS_LOCK:
        if key in _FITS:
            _FITS.move_to_end(key)
            fit = _FITS[key]
            return None if fit is None else (fit[0].copy(), fit[1].copy())
    fit = _fit_lattice(xy, level)
    with _FITS_LOCK:
        _FITS[key] = None if fit is None else (fit[0].copy(), fit[1].copy())
        while len(_FITS) > _FITS_KEPT:
            _FITS.popitem(last=False)
    return fit


_FITS: collections.OrderedDict = collections.OrderedDict()  # the last fits, by their inputs
_FITS_KEPT = 4
_FITS_LOCK = threading.Lock()


def _fit_lattice(xy, level):
    tree = cKDTree(xy)
    # a cell of many sites (two columns of each of two sublattices) reaches beyond the 12
    # closest neighbours: then the 24 closest are pooled
    for k in (_K, 2 * _K):
        d, idx = tree.query(xy, k=min(k, len(xy) - 1) + 1)
        nn = float(np.median(d[:, 1]))
        if not nn > 0:
            return None
        candidates = _candidate_vectors(xy[idx[:, 1:]] - xy[:, None, :], nn, len(xy))
        shifts = _translations(xy, tree, candidates, nn, level)
        basis = _basis_from(shifts, nn)
        if basis is not None:
            return basis, shifts
        if k >= len(xy) - 1:
            break
    return None


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
    keys, inverse, counts = _unique_cells(grid)
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


def _unique_cells(grid):
    """``np.unique(grid, axis=0, return_inverse=True, return_counts=True)`` for integer
    (n, 2) cells, in the same order, through one 1-D code (sorting rows is 10x slower)."""
    if not len(grid):
        return grid.reshape(0, 2), np.zeros(0, np.int64), np.zeros(0, np.int64)
    low = grid.min(axis=0)
    span = int(grid[:, 1].max() - low[1]) + 1
    code = (grid[:, 0] - low[0]) * span + (grid[:, 1] - low[1])
    codes, inverse, counts = np.unique(code, return_inverse=True, return_counts=True)
    keys = np.column_stack([codes // span + low[0], codes % span + low[1]])
    return keys, inverse.ravel(), counts


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


# --------------------------------------------------------------------------- weak sites

#: A site of the cell holds columns when its contrast (an atom-sized Gaussian-weighted
#: mean against the ring around it), averaged over the cells, is this many standard
#: errors above zero ...
WEAK_Z = 6.0
#: ... and at least this share of the strongest site's contrast.
WEAK_RATIO = 0.05
#: The share of a site's positions expected to be empty (vacancies): a missed column is
#: added where its own contrast is more likely under the site's columns (their median
#: contrast and spread) than under an empty site (no contrast, the same spread), with
#: this prior. A clear site (contrast far above the noise) adds a column only where it
#: shows one; a faint one adds them wherever the lattice predicts a site.
WEAK_EMPTY = 0.05
_MIN_CELLS = 20  # reference atoms (cells) needed to average the cell
_NEIGHBOURHOOD = 9  # predicted positions of a site whose mean contrast must show it
_SUPPORT = 0.7  # share of the atoms around a predicted position that sit on a site


def complete_sublattices(atoms: pd.DataFrame, image, *, sigma: float | None = None):
    """Add the columns of a sublattice that the finder missed, where the lattice predicts them.

    The lattice and its sites come from :func:`sublattices`. The image is
    averaged over every unit cell (sampled around each atom of the most
    populated site, the local origin, so that strain does not blur the
    average); each peak of that average (every known site, and any new one
    more than 0.5 nearest-neighbour distances and 2.5 sigma from them) is a
    site of columns when its contrast (a Gaussian-weighted mean within 1.2
    sigma against the mean of the ring 1.5-2.5 sigma around it), over the
    cells, is :data:`WEAK_Z` standard errors above zero and at least
    :data:`WEAK_RATIO` of the strongest site's. At every predicted position of
    such a site that holds no atom (none within 0.4 nearest-neighbour
    distances), an atom is added where its own contrast is more likely under
    the site's columns than under an empty site (a vacancy), with
    :data:`WEAK_EMPTY` of the sites empty a priori, and centred on the image
    (a Gaussian-weighted centroid, moving at most the site tolerance). A
    position is searched only where the lattice holds (70 % of the atoms
    within 1.5 cell lengths on its sites) and the mean contrast of the site's 9
    closest positions reaches half the site's (a second phase, a grain or a
    mirror domain whose site lies elsewhere gains nothing). A site that the
    finder found nearly whole (all but ``2 * WEAK_EMPTY`` of its positions) is
    left as it is: its few gaps are more likely vacancies than misses.

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table of one or more frames (``intensity`` helps to find the
        lattice, see :func:`sublattices`).
    image : ndarray of shape (H, W) or (T, H, W)
        The raw image (frames as in ``atoms["frame"]``).
    sigma : float, optional
        Atom width (px); default ``atoms.attrs["sigma"]``, else 0.2 of the
        nearest-neighbour distance.

    Returns
    -------
    atoms : pandas.DataFrame
        The table with the added atoms appended (new ``atom_id`` values after
        the others; shape descriptors and ``confidence`` NaN: the network did
        not see them; ``intensity``, ``nn_distance`` and ``nnn_distance``
        recomputed for all). ``attrs["lattice_sites_added"]`` counts them.
    """
    from .describe import add_intensity, add_neighbours
    from .table import make_atoms

    validate_atoms(atoms, finite=("x", "y"))
    frames = np.asarray(image, np.float64)
    frames = frames[None] if frames.ndim == 2 else frames
    if frames.ndim != 3:
        raise ValueError(f"image must be (H, W) or (T, H, W), got shape {np.shape(image)}")
    if sigma is None:
        sigma = atoms.attrs.get("sigma")
    if sigma is not None:
        sigma = number("sigma", sigma, low=0, low_open=True)
    out = atoms.copy()
    added = []
    level = _log_intensity(atoms)
    for f in np.unique(atoms["frame"].to_numpy()):
        if not 0 <= f < len(frames):
            continue
        rows = np.flatnonzero(atoms["frame"].to_numpy() == f)
        xy = atoms[["x", "y"]].to_numpy(np.float64)[rows]
        new = _weak_frame(xy, None if level is None else level[rows], frames[f], sigma)
        if len(new):
            frame = np.full(len(new), f)
            added.append(make_atoms({"frame": frame, "x": new[:, 0], "y": new[:, 1]}))
    n_added = int(sum(len(a) for a in added))
    if n_added:
        new = pd.concat(added, ignore_index=True)
        start = int(out.index.max()) + 1 if len(out) else 0
        new.index = pd.RangeIndex(start, start + n_added, name=out.index.name or "atom_id")
        attrs = dict(out.attrs)
        out = pd.concat([out, new[[c for c in out.columns if c in new]]])
        out = out.sort_values(["frame"], kind="stable")
        out = add_neighbours(out)
        width = sigma if sigma is not None else 2.0
        out = add_intensity(out, frames, half_width=max(1, round(width)))
        out.attrs.update(attrs)
    out.attrs["lattice_sites_added"] = n_added
    return out


def _weak_frame(xy, level, image, sigma):
    """Positions (n, 2) of the missed columns of one frame."""
    lattice = fit_lattice(xy, level)
    none = np.empty((0, 2))
    if lattice is None:
        return none
    basis, shifts = lattice
    tree = cKDTree(xy)
    nn = float(np.median(tree.query(xy, k=2)[0][:, 1]))
    sigma = float(sigma) if sigma is not None else 0.2 * nn
    inv = np.linalg.inv(basis)
    cell = float(np.linalg.norm(basis, axis=1).min())
    ref = _reference_component(xy, tree, shifts, 0.25 * nn, cell)
    local = _local_fraction(xy, inv, ref)
    sites = _site_peaks(local, basis, nn, 0.22, 0.08)
    label, dist = _nearest_site(local, sites, basis)
    tol = max(0.22 * nn, 1.0)
    occupied = max(tol, 0.4 * nn)  # an atom this close fills the site
    label[dist > tol] = -1
    counts = np.bincount(label[label >= 0], minlength=len(sites))
    if not len(counts) or counts.max() < _MIN_CELLS:
        return none
    r = int(np.argmax(counts))
    origin = xy[label == r] - sites[r] @ basis  # each cell's local origin
    probe = _Contrast(image, sigma)
    candidates = np.concatenate([sites, _cell_peaks(image, origin, basis, sites, nn, sigma)])
    strong = None
    kept = []
    for k, s in enumerate(candidates):
        c = probe(origin + s @ basis)
        c = c[np.isfinite(c)]
        if len(c) < _MIN_CELLS:
            continue
        med = float(np.median(c))
        spread = 1.4826 * float(np.median(np.abs(c - med)))
        strong = med if strong is None else max(strong, med)
        kept.append((k, s, med, spread, med / (1.253 * max(spread, 1e-12) / np.sqrt(len(c)))))
    if strong is None or not strong > 0:
        return none
    found = []
    for k, s, med, spread, z in kept:
        log.debug("site %s: contrast %.4g (strongest %.4g), %.1f standard errors",
                  np.round(s, 3), med, strong, z)  # fmt: skip
        if z < WEAK_Z or med < WEAK_RATIO * strong:
            continue
        guess = origin + s @ basis
        # from the atoms of the other sites too (cells whose reference atom is missing)
        for j in range(len(sites)):
            if j == r or j == k:
                continue
            more = xy[label == j] + (s - sites[j]) @ basis
            guess = np.concatenate([guess, more[cKDTree(guess).query(more)[0] > tol]])
        # only where the lattice holds: most atoms around the position sit on its sites
        # (not in a second phase or grain, where a few atoms fall on a site by chance)
        around = tree.query_ball_point(guess, 1.5 * float(np.linalg.norm(basis, axis=1).max()))
        guess = guess[_supported(around, label >= 0)]
        empty = tree.query(guess)[0] > occupied
        if found:
            empty &= cKDTree(np.concatenate(found)).query(guess)[0] > occupied
        # present (mean med) against empty (mean 0), both of sd spread, prior WEAK_EMPTY
        level = med / 2 - spread**2 / med * np.log((1 - WEAK_EMPTY) / WEAK_EMPTY)
        ok = probe.inside(guess)  # where the contrast is measured (finite)
        if ok.any() and 1 - empty[ok].mean() >= 1 - 2 * WEAK_EMPTY:
            continue  # the finder found this site nearly whole: its few gaps are vacancies
        c = probe(guess)
        ok &= np.isfinite(c)
        keep = empty & ok & (c >= level)
        # and the site's columns around it show (a domain where the site lies elsewhere,
        # a mirror twin, holds none): the mean contrast of the 9 closest predicted
        # positions reaches half the site's
        if ok.sum() >= _NEIGHBOURHOOD:
            _, near = cKDTree(guess[ok]).query(guess, k=_NEIGHBOURHOOD)
            keep &= c[ok][near].mean(axis=1) >= med / 2
        if keep.any():
            found.append(_dedupe_points(guess[keep], tol))
    if not found:
        return none
    new = np.concatenate(found)
    h, w = image.shape
    new = new[(new[:, 0] >= 0) & (new[:, 0] <= w - 1) & (new[:, 1] >= 0) & (new[:, 1] <= h - 1)]
    if not len(new):
        return none
    fitted = probe.centre(new, max_shift=tol)
    clear = tree.query(fitted)[0] > max(sigma, occupied)
    return fitted[clear]


def _supported(around, on_site):
    """For each neighbour list: at least 3 atoms, and :data:`_SUPPORT` of them on a site."""
    lengths = np.fromiter(map(len, around), np.int64, count=len(around))
    if not lengths.sum():
        return np.zeros(len(around), bool)
    flat = np.fromiter(itertools.chain.from_iterable(around), np.int64, count=int(lengths.sum()))
    hits = np.bincount(np.repeat(np.arange(len(around)), lengths), on_site[flat], len(around))
    return (lengths >= 3) & (hits >= _SUPPORT * np.maximum(lengths, 1))


def _dedupe_points(points, reach):
    """One point per group of points closer than ``reach`` (the first of each group)."""
    if len(points) < 2:
        return points
    keep = np.ones(len(points), bool)
    for i, j in sorted(cKDTree(points).query_pairs(reach)):
        if keep[i] and keep[j]:
            keep[j] = False
    return points[keep]


class _Contrast:
    """Gaussian-weighted mean (width sigma, out to 1.2 sigma) less the mean of the ring
    1.5-2.5 sigma around each position (bilinear samples; NaN where the ring leaves the
    image)."""

    def __init__(self, image, sigma):
        self.image, self.sigma = image, float(sigma)
        step = max(0.5, sigma / 4)
        r = np.arange(-2.5 * sigma, 2.5 * sigma + step / 2, step)
        gx, gy = np.meshgrid(r, r)
        d = np.hypot(gx, gy)
        core = d <= 1.2 * sigma
        self.disc = np.column_stack([gx[core], gy[core]])
        self.disc_weight = np.exp(-(d[core] ** 2) / (2 * sigma**2))
        self.disc_weight /= self.disc_weight.sum()
        ring = (d >= 1.5 * sigma) & (d <= 2.5 * sigma)
        self.ring = np.column_stack([gx[ring], gy[ring]])
        self.window = np.column_stack([gx[d <= 1.5 * sigma], gy[d <= 1.5 * sigma]])

    def _mean(self, xy, offsets, weight=None):
        pts = xy[:, None, :] + offsets[None]
        vals = ndimage.map_coordinates(
            self.image, [pts[..., 1].ravel(), pts[..., 0].ravel()], order=1, cval=np.nan
        ).reshape(len(xy), -1)
        return vals.mean(axis=1) if weight is None else vals @ weight

    def inside(self, xy):
        """Where every sample lies on the image (the contrast is finite on a finite image)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        low, high = self.ring.min(axis=0), self.ring.max(axis=0)
        h, w = self.image.shape
        return (
            (xy[:, 0] + low[0] >= 0) & (xy[:, 0] + high[0] <= w - 1)
            & (xy[:, 1] + low[1] >= 0) & (xy[:, 1] + high[1] <= h - 1)
        )  # fmt: skip

    def __call__(self, xy):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        if not len(xy):
            return np.empty(0)
        return self._mean(xy, self.disc, self.disc_weight) - self._mean(xy, self.ring)

    def centre(self, xy, *, max_shift, iterations=6):
        """Centres refined by a Gaussian-weighted centroid (width sigma, out to 1.5 sigma)
        of the image less the ring's mean; a centre never moves more than ``max_shift``."""
        start = np.asarray(xy, np.float64).reshape(-1, 2)
        out = start.copy()
        off, sigma = self.window, self.sigma
        weight = np.exp(-(off**2).sum(axis=1) / (2 * sigma**2))
        for _ in range(iterations):
            pts = out[:, None, :] + off[None]
            vals = ndimage.map_coordinates(
                self.image, [pts[..., 1].ravel(), pts[..., 0].ravel()], order=1, cval=np.nan
            ).reshape(len(out), -1)
            w = np.clip(vals - self._mean(out, self.ring)[:, None], 0, None) * weight
            total = np.nansum(w, axis=1)
            ok = total > 0
            shift = np.zeros_like(out)
            shift[ok] = np.nansum(w[ok, :, None] * off[None], axis=1) / total[ok, None]
            out = out + shift
            moved = out - start
            far = np.hypot(*moved.T) > max_shift
            out[far] = start[far] + moved[far] * (max_shift / np.hypot(*moved[far].T))[:, None]
        return np.where(np.isfinite(out), out, start)


def _cell_peaks(image, origin, basis, sites, nn, sigma):
    """Offsets (fractions) of the peaks of the unit-cell average more than 0.5 nn (and
    2.5 sigma) from every known site."""
    from skimage.feature import peak_local_max

    sides = np.linalg.norm(basis, axis=1)
    n = np.clip(np.ceil(sides / 0.75), 12, 64).astype(int)
    u = (np.arange(n[0]) + 0.5) / n[0]
    v = (np.arange(n[1]) + 0.5) / n[1]
    fu, fv = np.meshgrid(u, v, indexing="ij")
    frac = np.column_stack([fu.ravel(), fv.ravel()])
    use = origin[:: max(1, len(origin) // 400)]
    pts = use[:, None, :] + (frac @ basis)[None]
    vals = ndimage.map_coordinates(
        image, [pts[..., 1].ravel(), pts[..., 0].ravel()], order=1, cval=np.nan
    ).reshape(len(use), -1)
    whole = np.isfinite(vals).all(axis=1)
    if whole.sum() < _MIN_CELLS:
        return np.empty((0, 2))
    mean = vals[whole].mean(axis=0).reshape(n)
    px = sides / n
    smooth = ndimage.gaussian_filter(mean, np.maximum(0.5, 0.3 * sigma / px), mode="wrap")
    pad = n // 4
    tiled = np.pad(smooth, [(pad[0], pad[0]), (pad[1], pad[1])], mode="wrap")
    peaks = peak_local_max(tiled, min_distance=1, exclude_border=False) - pad
    inside = (peaks >= 0).all(axis=1) & (peaks < n).all(axis=1)
    peaks = peaks[inside]
    order = np.argsort(-smooth[peaks[:, 0], peaks[:, 1]])
    reach = max(0.5 * nn, 2.5 * sigma)
    out = []
    for p in peaks[order]:
        f = (p + 0.5) / n
        if all(_cell_distance(f, s, basis) > reach for s in list(sites) + out):
            out.append(f)
        if len(out) >= 4:
            break
    return np.array(out).reshape(-1, 2)
