"""Defects: what breaks the lattice, including what is not an atom.

Two kinds of evidence, one table (:data:`atomstat.table.DEFECT_COLUMNS`):

- **The lattice** (``method="lattice"``), where atoms are resolved. The unit
  cell and every atom's site come from :func:`atomstat.sublattices`. Every
  site that the neighbours of a sublattice expect, and that holds no atom, is
  a candidate *vacancy*; with the image it is kept only where the image there
  is darker than the sublattice's atoms by ``z`` robust standard deviations
  (a column the finder missed is as bright as the others: it is not a
  vacancy). Atoms on no site are *adatoms* (or interstitials), and atoms
  that :func:`atomstat.find_anomalies` flags against their own sublattice are
  *anomalies* (dopants, distorted columns).
- **The image** (``method="blobs"``), where the lattice is not resolved (STM
  frames of 100-1000 nm), or where the defects are larger than an atom (the
  depressions and protrusions of STM). :func:`find_blobs` runs a
  scale-normalised Laplacian of Gaussian over a range of scales, each scale's
  response in robust z-scores of that scale's own background, and keeps the
  extrema beyond ``z``: *bright* and *dark* features.

With ``method="auto"``, STM data (``atoms.attrs["imaging"] == "stm"``) or a
table in which no lattice is found gives the image features; STEM data with a
lattice gives the lattice defects.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ._checks import number
from .sublattices import SUBLATTICE, sublattices
from .table import make_defects, validate_atoms

__all__ = ["DEFECT_METHODS", "find_blobs", "find_defects"]

log = logging.getLogger(__name__)

DEFECT_METHODS = ("auto", "lattice", "blobs", "both")
#: z-score of a blob against its scale's background (chosen on the WSe2 dev set and on
#: simulated STM frames; bench/bench_real.py).
BLOB_Z = 6.0
#: How much darker than its sublattice's atoms an empty site must be (robust sd).
VACANCY_Z = 3.0
_SCALE_STEP = 1.35  # ratio between successive blob scales
_LEVEL_Z = 2.0  # a feature's smoothed contrast to the background, in robust sd
_ROUNDNESS = 0.3  # smaller over larger curvature (Hessian eigenvalues) of a feature
_MERGE = 1.5  # a weaker feature within this many widths of a stronger one is the same


def find_defects(
    atoms: pd.DataFrame | None,
    image=None,
    *,
    method: str = "auto",
    z: float | None = None,
    scales: tuple[float, float] | None = None,
    anomalies: bool = True,
) -> pd.DataFrame:
    """Find vacancies, adatoms, anomalous atoms and bright or dark image features.

    Parameters
    ----------
    atoms : pandas.DataFrame or None
        The atoms table (from :func:`atomstat.analyze`); with a
        ``sublattice`` column it is used as it is, else
        :func:`atomstat.sublattices` is run. None: image features only.
    image : ndarray of shape (H, W) or (T, H, W), or Signal2D, optional
        The raw image (frames as in ``atoms["frame"]``). Needed for the image
        features and to tell a vacancy from a missed atom.
    method : {"auto", "lattice", "blobs", "both"}
        Which evidence to use (see the module notes).
    z : float, optional
        Threshold in robust standard deviations: for vacancies (default 3)
        with ``"lattice"``, for image features (default 6) with ``"blobs"``.
    scales : (float, float), optional
        Smallest and largest feature width (LoG sigma, px) searched. By
        default 0.3-1.5 nm (:data:`FEATURE_NM`) where the calibration is
        known (``atoms.attrs`` or the Signal2D's axes in nm, pm, Å or µm);
        else from 0.8 lattice spacings (1.5 px where no lattice is found) to
        a twelfth of the frame's smaller side.
    anomalies : bool
        Also report the atoms that :func:`atomstat.find_anomalies` flags with
        its defaults (kind ``"anomaly"``).

    Returns
    -------
    defects : pandas.DataFrame
        One row per defect (:data:`atomstat.table.DEFECT_COLUMNS`):
        ``frame``, ``x``, ``y``, ``kind`` (``"vacancy"``, ``"adatom"``,
        ``"anomaly"``, ``"bright"``, ``"dark"``), ``score`` (z-score of an
        image feature or a vacancy's darkness; an adatom's distance from
        the closest site in site tolerances; an anomaly's score),
        ``sublattice`` (-1 where none), ``size`` (a feature's LoG sigma, px)
        and ``atom_id`` (-1 where the defect is no atom). ``attrs`` holds the
        method used per frame and the settings.

    Raises
    ------
    TypeError, ValueError
        For a table that is not an atoms table, an image of the wrong shape,
        an unknown method, or neither atoms nor image.

    Examples
    --------
    >>> yy, xx = np.mgrid[:96, :96]
    >>> image = np.random.default_rng(0).normal(0, 1, (96, 96))
    >>> image += 12 * np.exp(-((xx - 30) ** 2 + (yy - 60) ** 2) / (2 * 3.0**2))
    >>> d = find_defects(None, image)
    >>> d[["kind", "x", "y"]].round().values.tolist()
    [['bright', 30.0, 60.0]]
    """
    if method not in DEFECT_METHODS:
        raise ValueError(f"method must be one of {DEFECT_METHODS}, got {method!r}")
    if z is not None:
        number("z", z, low=0, low_open=True)
    frames = _frames(image)
    if atoms is None and frames is None:
        raise ValueError("find_defects needs an atoms table, an image, or both")
    if atoms is not None:
        validate_atoms(atoms, finite=("x", "y"))
        if SUBLATTICE not in atoms:
            atoms = sublattices(atoms)
    n_frames = (
        len(frames) if frames is not None else int(atoms["frame"].max()) + 1 if len(atoms) else 0
    )
    tables, used = [], []
    attrs = dict(getattr(atoms, "attrs", {}) or {}) if atoms is not None else {}
    attrs.update(_calibration(image))
    for f in range(n_frames):
        mine = None if atoms is None else atoms[atoms["frame"] == f]
        img = None if frames is None else frames[f]
        how = _choose(method, mine, img, atoms.attrs if atoms is not None else {})
        used.append(how)
        if how in ("lattice", "both"):
            tables.append(_lattice_defects(mine, img, f, z or VACANCY_Z, anomalies, atoms))
        if how in ("blobs", "both"):
            lo, hi = scales or _default_scales(mine, img, _nm_per_px(attrs))
            blobs = find_blobs(img, z=z or BLOB_Z, scales=(lo, hi))
            tables.append(blobs.assign(frame=f))
    out = _concat(tables)
    out.attrs.update({"method": used, "z": z, "scales": scales})
    if atoms is not None:
        out.attrs.update(
            {k: atoms.attrs[k] for k in ("pixel_size", "units", "source") if k in atoms.attrs}
        )
    return out


def find_blobs(image, *, z: float = BLOB_Z, scales: tuple[float, float] = (1.5, 32.0)):
    """Bright and dark features of an image against its own background.

    At each scale sigma (from ``scales[0]`` to ``scales[1]``, in steps of
    1.35) the scale-normalised Laplacian of Gaussian of the line-levelled
    image (each row less its median: STM scan lines) is divided by 1.4826
    times its median absolute deviation over the image: a z-score of that
    scale's background, so that neither the noise nor the contrast of the
    image sets the threshold. Extrema beyond ``z`` are features; a weaker one
    within 1.5 widths of a stronger one is the same feature.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    z : float
        Threshold in robust standard deviations.
    scales : (float, float)
        Smallest and largest LoG sigma (px). Large scales are computed on a
        block-averaged image (cost stays near that of the smallest scale).

    Returns
    -------
    blobs : pandas.DataFrame
        The defects table: ``kind`` ``"bright"`` or ``"dark"``, ``score``
        (z), ``size`` (sigma, px), ``frame`` 0.
    """
    image = np.asarray(image, np.float64)
    if image.ndim != 2 or min(image.shape) < 8:
        raise ValueError(f"image must be (H, W) with both sides >= 8 px, got shape {image.shape}")
    if not np.isfinite(image).all():
        image = np.where(np.isfinite(image), image, np.nanmedian(image))
    lo, hi = (number("scales[0]", scales[0], low=0.5), number("scales[1]", scales[1], low=0.5))
    hi = max(lo, min(hi, min(image.shape) / 4))
    levelled = _clean(image)
    sigmas = lo * _SCALE_STEP ** np.arange(int(np.log(hi / lo) / np.log(_SCALE_STEP)) + 1)
    background = _background(levelled, 4 * sigmas[-1])
    rows = []
    for kind, sign in (("bright", 1.0), ("dark", -1.0)):
        best = np.full(image.shape, -np.inf, np.float32)
        size = np.zeros(image.shape, np.float32)
        level = np.zeros(image.shape, np.float32)
        round_ = np.zeros(image.shape, np.float32)
        for sigma in sigmas:
            r, smooth, roundness = _log_z(levelled, sigma, sign)
            better = sign * r > best
            best[better] = sign * r[better]
            size[better] = sigma
            round_[better] = roundness[better]
            contrast = smooth - background
            spread = 1.4826 * np.median(np.abs(contrast - np.median(contrast)))
            level[better] = sign * contrast[better] / max(spread, 1e-12)
        # a feature is clearly brighter (darker) than the background itself, not only
        # than its surround (the ring the LoG draws around a strong feature is not one),
        # and round: a streak along a scan line is noise
        best[(level < _LEVEL_Z) | (round_ < _ROUNDNESS)] = 0
        rows += _peaks(best, size, z, kind)
    return _suppress(pd.DataFrame(rows, columns=["x", "y", "score", "size", "kind"]))


# --------------------------------------------------------------------------- image features


def _clean(image):
    """Scan lines levelled (each row less its median) and scars repaired."""
    from .preprocess import remove_scars

    return remove_scars(image - np.median(image, axis=1, keepdims=True)).astype(np.float64)


def _log_z(image, sigma, sign):
    """-sigma^2 LoG(image) in robust z-scores, the image smoothed at sigma, and the
    roundness (smaller over larger Hessian eigenvalue, 0 unless both have the feature's
    curvature); on a block-averaged image for large sigma."""
    small, k = _blocks(image, max(1, int(sigma // 3)))
    s = sigma / k
    smooth = ndimage.gaussian_filter(small, s, mode="reflect")
    hxx = ndimage.gaussian_filter(small, s, order=(0, 2), mode="reflect")
    hyy = ndimage.gaussian_filter(small, s, order=(2, 0), mode="reflect")
    hxy = ndimage.gaussian_filter(small, s, order=(1, 1), mode="reflect")
    r = -(s**2) * (hxx + hyy)
    mad = np.median(np.abs(r - np.median(r)))
    r = (r - np.median(r)) / (1.4826 * mad) if mad > 0 else np.zeros_like(r)
    half = np.sqrt(((hxx - hyy) / 2) ** 2 + hxy**2)
    mean = -sign * (hxx + hyy) / 2  # positive for the feature's curvature
    low, high = mean - half, mean + half
    roundness = np.where(high > 0, np.clip(low, 0, None) / np.where(high > 0, high, 1), 0.0)
    shape = image.shape
    return _unblock(r, k, shape), _unblock(smooth, k, shape), _unblock(roundness, k, shape)


def _blocks(image, k):
    if k <= 1:
        return image, 1
    h, w = (image.shape[0] // k) * k, (image.shape[1] // k) * k
    return image[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3)), k


def _unblock(small, k, shape):
    if k <= 1:
        return small.astype(np.float32)
    big = ndimage.zoom(small, k, order=1, mode="nearest", grid_mode=True)
    pad = ((0, shape[0] - big.shape[0]), (0, shape[1] - big.shape[1]))
    return np.pad(big, pad, mode="edge").astype(np.float32)


def _background(image, window):
    """A robust background: the median over ``window`` px (on a block-averaged image)."""
    k = max(1, int(window // 16))
    small, k = _blocks(image, k)
    size = max(3, int(round(window / k)) | 1)
    return _unblock(ndimage.median_filter(small, size=size, mode="reflect"), k, image.shape)


def _peaks(best, size, z, kind):
    from skimage.feature import peak_local_max

    found = peak_local_max(best, min_distance=2, threshold_abs=z, exclude_border=False)
    # a peak on the outermost 2 px is the mirror image of a ramp into the border (the
    # filters reflect the image there), not a feature
    h, w = best.shape
    inside = (found[:, 0] >= 2) & (found[:, 0] < h - 2) & (found[:, 1] >= 2) & (found[:, 1] < w - 2)
    return [
        (float(c), float(r), float(best[r, c]), float(size[r, c]), kind) for r, c in found[inside]
    ]


def _suppress(blobs):
    """Keep the strongest of features closer than 1.5 widths of the wider one, of either
    kind: the dark ring that the LoG draws around a bright feature (and the reverse) is
    not a feature."""
    if not len(blobs):
        return make_defects()
    blobs = blobs.sort_values("score", ascending=False, ignore_index=True)
    xy = blobs[["x", "y"]].to_numpy()
    size = blobs["size"].to_numpy()
    keep = np.ones(len(blobs), bool)
    tree = cKDTree(xy)
    reach = _MERGE * size.max()
    for i in range(len(blobs)):
        if not keep[i]:
            continue
        near = np.array(tree.query_ball_point(xy[i], reach), int)
        near = near[near > i]
        gap = np.hypot(*(xy[near] - xy[i]).T)
        keep[near[gap < _MERGE * np.maximum(size[near], size[i])]] = False
    return make_defects({c: blobs[c].to_numpy()[keep] for c in blobs.columns})


#: Widths (LoG sigma, nm) of the point defects searched where the calibration is known:
#: features 1.5-7.5 nm across (STM point defects and their charge halos).
FEATURE_NM = (0.3, 1.5)
_TO_NM = {"nm": 1.0, "pm": 1e-3, "Å": 0.1, "A": 0.1, "angstrom": 0.1, "um": 1e3, "µm": 1e3}


def _calibration(image):
    """Pixel size and units of a Signal2D (nothing for an array)."""
    axes = getattr(image, "axes_manager", None)
    if axes is None:
        return {}
    x = axes.signal_axes[0]
    return {"pixel_size": float(x.scale), "units": str(x.units)}


def _nm_per_px(attrs):
    factor = _TO_NM.get(str(attrs.get("units", "px")))
    size = attrs.get("pixel_size")
    if factor is None or not isinstance(size, int | float) or not size > 0:
        return None
    return float(size) * factor


def _default_scales(atoms, image, nm_per_px=None):
    """:data:`FEATURE_NM` where the calibration is known; else from 0.8 lattice spacings
    (the atoms' lattice, else the image's Fourier peaks; 1.5 px where neither shows one)
    to a twelfth of the frame."""
    shape = image.shape
    if nm_per_px is not None:
        lo, hi = FEATURE_NM[0] / nm_per_px, FEATURE_NM[1] / nm_per_px
        return max(1.0, lo), max(1.0, lo, min(hi, min(shape) / 4))
    spacing = np.nan
    if atoms is not None and len(atoms) and SUBLATTICE in atoms:
        if (atoms[SUBLATTICE] >= 0).mean() >= 0.5:
            spacing = _spacing(atoms)
    if not np.isfinite(spacing):
        from .scale import lattice_period

        found = lattice_period(image)
        spacing = found.period if found is not None else np.nan
    lo = max(1.5, 0.8 * spacing) if np.isfinite(spacing) else 1.5
    return lo, max(lo, min(shape) / 12)


def _spacing(atoms):
    d = (
        atoms["sublattice_nn_distance"]
        if "sublattice_nn_distance" in atoms
        else atoms.get("nn_distance")
    )
    return float(np.nanmedian(d)) if d is not None and np.isfinite(d).any() else np.nan


# --------------------------------------------------------------------------- lattice defects


def _lattice_defects(atoms, image, frame, z, anomalies, table):
    info = _frame_info(table, frame)
    if info is None or not len(atoms):
        return make_defects()
    basis = np.asarray(info["basis"])
    tol = float(info["tolerance"])
    xy = atoms[["x", "y"]].to_numpy(np.float64)
    label = atoms[SUBLATTICE].to_numpy()
    edge = atoms["edge"].to_numpy(bool) if "edge" in atoms else np.zeros(len(atoms), bool)
    parts = [_vacancies(xy, label, basis, tol, image, z, info["nn"])]
    off = (label < 0) & ~edge
    parts.append(
        make_defects(
            {
                "x": xy[off, 0],
                "y": xy[off, 1],
                "kind": np.full(off.sum(), "adatom", object),
                "score": atoms["site_distance"].to_numpy()[off] / tol,
                "atom_id": atoms.index.to_numpy()[off],
            }
        )
    )
    if anomalies:
        parts.append(_anomalies(atoms, label))
    return _concat(parts).assign(frame=frame)


def _frame_info(table, frame):
    for info in table.attrs.get("sublattices", []):
        if info.get("frame") == frame and info.get("basis") is not None:
            return info
    return None


def _anomalies(atoms, label):
    from .outliers import anomaly_scores

    on = atoms[label >= 0]
    if len(on) < 3:
        return make_defects()
    score = anomaly_scores(on)
    hit = score.to_numpy() > 0
    return make_defects(
        {
            "x": on["x"].to_numpy()[hit],
            "y": on["y"].to_numpy()[hit],
            "kind": np.full(hit.sum(), "anomaly", object),
            "score": score.to_numpy()[hit],
            "sublattice": on[SUBLATTICE].to_numpy()[hit],
            "atom_id": on.index.to_numpy()[hit],
        }
    )


def _vacancies(xy, label, basis, tol, image, z, nn):
    """Expected sites of each sublattice holding no atom (and, with the image, dark)."""
    steps = np.array([[1, 0], [0, 1], [1, 1], [1, -1]], float) @ basis
    steps = np.concatenate([steps, -steps])
    everyone = cKDTree(xy)
    rows = []
    for s in np.unique(label[label >= 0]):
        mine = xy[label == s]
        if len(mine) < 4:
            continue
        guess = (mine[:, None, :] + steps[None]).reshape(-1, 2)
        d, _ = everyone.query(guess)
        guess = guess[d > tol]
        # a site within half a spacing of the border (of the image, else of the atoms'
        # extent) is not seen whole
        lo, hi = _extent(image, xy)
        m = 0.5 * nn
        guess = guess[((guess > lo + m) & (guess < hi - m)).all(axis=1)]
        for centre, votes in _merge(guess, tol):
            if votes >= 2:
                rows.append((centre[0], centre[1], s, votes))
    if not rows:
        return make_defects()
    found = np.array(rows)
    score = found[:, 3] / len(steps)
    if image is not None:
        score = _darkness(image, found[:, :2], xy, label, found[:, 2].astype(int), nn)
        keep = score >= z
        found, score = found[keep], score[keep]
    return make_defects(
        {
            "x": found[:, 0],
            "y": found[:, 1],
            "kind": np.full(len(found), "vacancy", object),
            "score": score,
            "sublattice": found[:, 2].astype(int),
        }
    )


def _extent(image, xy):
    if image is not None:
        h, w = image.shape
        return np.array([-0.5, -0.5]), np.array([w - 0.5, h - 0.5])
    return xy.min(axis=0), xy.max(axis=0)


def _merge(points, tol):
    """Groups of points within ``tol`` of each other: (mean position, count) per group."""
    if not len(points):
        return []
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(points).query_pairs(tol, output_type="ndarray")
    from scipy.sparse import coo_matrix

    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    counts = np.bincount(comp)
    centres = np.stack([np.bincount(comp, points[:, i]) / counts for i in range(2)], 1)
    return list(zip(centres, counts, strict=True))


def _darkness(image, sites, xy, label, site_label, nn):
    """How much darker each site is than its sublattice's atoms (robust z)."""
    half = int(np.clip(round(0.15 * nn), 1, 6))
    at_sites = _box_sums(image, sites, half)
    at_atoms = _box_sums(image, xy, half)
    out = np.zeros(len(sites))
    for s in np.unique(site_label):
        ref = at_atoms[label == s]
        med = np.median(ref)
        sd = 1.4826 * np.median(np.abs(ref - med))
        sd = sd if sd > 0 else max(abs(med) * 0.05, 1e-12)
        out[site_label == s] = (med - at_sites[site_label == s]) / sd
    return out


def _box_sums(image, xy, half):
    h, w = image.shape
    off = np.arange(-half, half + 1)
    ox, oy = np.meshgrid(off, off)
    cx = np.clip(np.round(xy[:, 0]).astype(int)[:, None] + ox.ravel(), 0, w - 1)
    cy = np.clip(np.round(xy[:, 1]).astype(int)[:, None] + oy.ravel(), 0, h - 1)
    return image[cy, cx].sum(axis=1)


# --------------------------------------------------------------------------- helpers


def _frames(image):
    if image is None:
        return None
    data = getattr(image, "data", image)
    arr = np.asarray(data, np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or min(arr.shape[1:]) < 8:
        raise ValueError(f"image must be (H, W) or (T, H, W) with sides >= 8 px, got {arr.shape}")
    return arr


def _choose(method, atoms, image, attrs):
    if method != "auto":
        if method in ("blobs", "both") and image is None:
            raise ValueError(f"method={method!r} needs the image")
        if method in ("lattice", "both") and atoms is None:
            raise ValueError(f"method={method!r} needs the atoms table")
        return method
    if atoms is None:
        return "blobs"
    has_lattice = len(atoms) > 0 and (atoms[SUBLATTICE] >= 0).mean() >= 0.5
    if attrs.get("imaging") == "stm" or not has_lattice:
        return "blobs" if image is not None else "lattice"
    return "lattice"


def _concat(tables):
    tables = [t for t in tables if len(t)]
    if not tables:
        return make_defects()
    out = pd.concat(tables, ignore_index=True)
    out.index.name = "defect_id"
    return out
