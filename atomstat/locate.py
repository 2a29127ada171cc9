"""Probability map -> atoms table: blobs, their contours, and sub-pixel centres.

Each blob is the connected region where the probability reaches
``threshold``. Its contour is traced at that level with sub-pixel marching
squares, and the shape descriptors come from the contour polygon's moments
(Green's theorem), so they are not biased by the pixel grid: a disc's
circularity is close to 1 even for small blobs. The centre is then refined on
the raw image by :func:`atomstat.refine.refine_centres` when an image is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.measure import find_contours

from ._arrays import as_array
from ._checks import flag, number
from .describe import add_intensity, add_neighbours
from .refine import refine_centres
from .table import empty_atoms, make_atoms

__all__ = ["blob_shapes", "locate"]


#: How far a blob's peak probability must rise above the contour level. A blob
#: whose peak only grazes the level is a noise fragment: on the real MoS2 image,
#: 84 of the 94 blobs smaller than 15% of the typical blob peak below 0.7, where
#: the 10th percentile of the S2 columns is 0.86; on simulated images (doses
#: 10-100) no true atom peaks below 0.8.
PEAK_MARGIN = 0.2


def locate(
    prob,
    image=None,
    *,
    threshold: float = 0.5,
    peak_margin: float = PEAK_MARGIN,
    sigma: float | None = None,
    refine: bool = True,
    split: bool = False,
    lattice: bool = True,
) -> pd.DataFrame:
    """Find the atoms in a probability map.

    Parameters
    ----------
    prob : ndarray of shape (H, W) or (T, H, W)
        Output of :func:`atomstat.segment`.
    image : ndarray or Signal2D of the same shape, optional
        The raw image. With it, centres are refined on the raw intensities
        and ``intensity`` is filled; without it the contour centroid is used.
    threshold : float in (0, 1)
        Probability level of the blob contours.
    peak_margin : float in [0, 1)
        A blob is an atom only if its peak probability reaches
        ``threshold + peak_margin`` (at most 1): a hysteresis threshold that
        drops the noise fragments whose peak barely crosses the contour level.
        How many were dropped is in ``attrs["fragments"]``.
    sigma : float, optional
        Atom width (px) used to size the refinement window; by default it
        follows from the typical blob area.
    refine : bool
        Refine centres on the raw image (needs ``image``).
    split : bool
        Split the blobs that hold several atoms: a blob much larger than the
        typical one is re-contoured at higher levels inside its outline, and
        where two or more sub-blobs each rise ``SPLIT_MARGIN`` (0.1) above
        their level they replace it (with the descriptors of that level's
        contours). It helps
        on dense, blurred lattices (STM); on STEM columns it may cut a
        distorted column in two, so :func:`atomstat.analyze` turns it on for
        STM only. Without it, only a blob that plainly holds two atoms is
        split: more than 1.8 times the median area, in parts at least 2.5
        atom widths apart (a dumbbell that the map merged). How many blobs
        were split is in ``attrs["split_blobs"]``.
    lattice : bool
        With ``image`` and ``refine``: add the columns of a sublattice that the
        map missed where the lattice of the found atoms predicts them and the
        image, averaged over the unit cells, shows them
        (:func:`atomstat.sublattices.complete_sublattices`: the faint B sites of
        a perovskite, the S2 columns of MoS2). They have NaN shape descriptors
        and ``confidence``; ``attrs["lattice_sites_added"]`` counts them.

    Returns
    -------
    atoms : pandas.DataFrame
        The atoms table (see :mod:`atomstat.table`), one row per blob, with
        ``edge`` True for blobs cut by the image border. With ``image``, a
        border blob whose refined centre falls outside the image is the tail
        of an atom beyond the field of view and is not reported, and blobs
        refined to within one atom width of each other are one atom (at their
        mean centre, with the most confident blob's descriptors;
        ``attrs["duplicates"]`` counts the others).

    Examples
    --------
    >>> yy, xx = np.mgrid[:40, :40]
    >>> prob = np.exp(-((xx - 20.3) ** 2 + (yy - 10.0) ** 2) / 18).astype(np.float32)
    >>> atoms = locate(prob)
    >>> len(atoms), round(float(atoms.x.iloc[0]), 1)
    (1, 20.3)
    """
    if isinstance(prob, str | Path):
        raise TypeError("locate() takes the probability map from segment(), not a file path")
    prob = np.asarray(as_array(prob))
    if prob.ndim not in (2, 3):
        raise ValueError(f"prob must be a map (H, W) or a stack (T, H, W), got shape {prob.shape}")
    _check_probabilities(prob)
    threshold = number("threshold", threshold, low=0, high=1, low_open=True, high_open=True)
    peak_margin = number("peak_margin", peak_margin, low=0, high=1, high_open=True)
    if sigma is not None:
        sigma = number("sigma", sigma, low=0, high=min(prob.shape[-2:]) / 4, low_open=True)
    refine, split = flag("refine", refine), flag("split", split)
    lattice = flag("lattice", lattice)
    levels = (threshold, min(threshold + peak_margin, 1.0))
    raw = None if image is None else as_array(image)
    if raw is not None:
        if np.iscomplexobj(raw):
            raise ValueError("image holds complex values; pass np.abs(image) or its real part")
        raw = np.asarray(raw, dtype=np.float32)
        if raw.shape != prob.shape:
            raise ValueError(f"image shape {raw.shape} differs from prob shape {prob.shape}")
        if not np.isfinite(raw).all():
            raise ValueError(
                "image holds NaN or infinite pixels; atomstat.load repairs them, "
                "or replace them yourself"
            )
    if prob.ndim == 2:
        return _locate_frame(prob, raw, levels, sigma, refine, split, frame=0, lattice=lattice)
    tables = [
        _locate_frame(
            p, None if raw is None else raw[t], levels, sigma, refine, split, t, lattice=lattice
        )
        for t, p in enumerate(prob)
    ]
    return concat_frames(tables)


def _check_probabilities(prob):
    """Refuse a map that is not probabilities: complex, NaN, or values outside [0, 1]."""
    if np.iscomplexobj(prob):
        raise ValueError("prob holds complex values; it must be the output of segment()")
    if prob.size == 0:
        raise ValueError(f"prob is empty (shape {prob.shape})")
    low, high = float(np.min(prob)), float(np.max(prob))
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            "prob must be the output of segment(): finite values in [0, 1], "
            f"got {low:.4g} to {high:.4g} (to find atoms in an image, use analyze())"
        )


def concat_frames(tables):
    """Concatenate per-frame atoms tables, renumbering ``atom_id`` from 0."""
    if not tables:
        return empty_atoms()
    out = pd.concat(tables, ignore_index=True).rename_axis("atom_id")
    out.attrs.update(tables[0].attrs)
    for key in ("fragments", "split_blobs", "duplicates", "lattice_sites_added"):
        if any(key in t.attrs for t in tables):
            out.attrs[key] = int(sum(t.attrs.get(key, 0) for t in tables))
    return out


def _locate_frame(prob, raw, levels, sigma, refine, split, frame, lattice=False):
    threshold, peak = levels
    shapes, labels = _blob_shapes(prob, threshold)
    if not len(shapes["x"]):
        return empty_atoms()
    strong = shapes["confidence"] >= np.float32(peak)
    fragments = int((~strong).sum())
    # Without ``split`` only the blobs that plainly hold two atoms are split: twice
    # the typical area, in parts at least 2.5 widths apart (a merged dumbbell).
    rule = (_SPLIT_AREA, 0.0)
    if not split and strong.any():
        rule = (_MERGED_AREA, _MERGED_APART * (sigma or _blob_sigma(shapes["area"][strong])))
    shapes, strong, n_split = _split_merged(
        prob, labels, shapes, strong, threshold, SPLIT_MARGIN, *rule
    )
    shapes = {k: v[strong] for k, v in shapes.items()}
    if not len(shapes["x"]):
        out = empty_atoms()
        out.attrs.update(fragments=fragments, split_blobs=n_split)
        return out
    shapes["frame"] = np.full(len(shapes["x"]), frame)
    if sigma is None:
        sigma = _blob_sigma(shapes["area"])
    duplicates = 0
    if raw is not None and refine:
        xy = refine_centres(raw, np.column_stack([shapes["x"], shapes["y"]]), sigma)
        shapes["x"], shapes["y"] = xy[:, 0], xy[:, 1]
        shapes = _inside(shapes, raw.shape)
        shapes, duplicates = _dedupe(shapes, DUPLICATE * sigma)
    atoms = make_atoms(shapes)
    atoms = add_neighbours(atoms)
    if raw is not None:
        atoms = add_intensity(atoms, raw, half_width=max(1, round(sigma)))
    added = 0
    if raw is not None and refine and lattice and len(atoms) >= _LATTICE_ATOMS:
        from .sublattices import complete_sublattices

        atoms = complete_sublattices(atoms.assign(frame=0), raw, sigma=sigma)
        atoms["frame"] = frame
        added = atoms.attrs.pop("lattice_sites_added", 0)
    atoms.attrs.update(
        fragments=fragments, split_blobs=n_split, duplicates=duplicates, lattice_sites_added=added
    )
    return atoms


def _dedupe(shapes, reach):
    """One atom for every group of atoms refined to within ``reach`` px of each other.

    Two blobs on one column (a column the map cut in two, a fragment beside its
    atom) are refined as two overlapping atoms, which settle on either side of
    the column's centre. The group keeps the most confident blob's descriptors
    and the mean of its centres. Returns the shapes and how many were dropped.
    """
    xy = np.column_stack([shapes["x"], shapes["y"]])
    pairs = cKDTree(xy).query_pairs(reach, output_type="ndarray") if len(xy) > 1 else []
    if not len(pairs):
        return shapes, 0
    n = len(xy)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    order = np.lexsort((-shapes["confidence"], group))  # by group, most confident first
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    size = np.bincount(group)
    out = {k: v[first] for k, v in shapes.items()}
    for axis, name in enumerate(("x", "y")):
        out[name] = np.bincount(group, xy[:, axis])[group[first]] / size[group[first]]
    return out, n - len(first)


def _blob_sigma(area):
    """Atom width from the typical blob area: a host blob reaches about 1.45 widths
    (see simulate._target_mask)."""
    return float(np.sqrt(np.median(area) / np.pi) / 1.45)


def _inside(shapes, shape):
    """Keep the blobs whose refined centre lies in the image: the others are the
    tails of atoms centred beyond the border, which the image does not hold."""
    h, w = shape
    x, y = shapes["x"], shapes["y"]
    keep = (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
    return {k: v[keep] for k, v in shapes.items()}


def blob_shapes(prob: np.ndarray, threshold: float = 0.5) -> dict:
    """Contour descriptors of every blob of a 2-D probability map.

    Returns a dict of 1-D arrays, one entry per blob: ``x``, ``y`` (contour
    centroid), ``area``, ``perimeter``, ``circularity``, ``orientation``
    (degrees in [0, 180), counter-clockwise as displayed), ``axis_major``,
    ``axis_minor`` (full lengths of the equivalent ellipse), ``eccentricity``,
    ``confidence`` (peak probability) and ``edge``.

    The contours are the map's ``threshold`` level lines, found with
    sub-pixel marching squares; area and moments are those of the polygons.
    On a smooth map (the network's output) the polygon follows the blob's
    true outline, and its length is the perimeter. On a hard-edged map
    (two values only, such as a binary mask) marching squares cuts every
    pixel corner at 45 degrees, which makes a disc's outline about 5% too
    long; there the perimeter is measured on the mask blurred by 0.8 px,
    which is within 3% on pixelated discs of radius 3 px and more (and their
    circularity at least 0.95), where the Crofton estimate scatters by up
    to 10% with the disc's position on the pixel grid.
    """
    return _blob_shapes(prob, threshold)[0]


#: A blob is examined for merged atoms when its area exceeds this many times the median.
_SPLIT_AREA = 1.6
#: Two refined atoms closer than this many atom widths are one atom found twice: two
#: columns so close cannot be told apart, and two blobs on one column settle about
#: 0.6 widths apart.
DUPLICATE = 1.0
#: Without ``split``, a blob is split only when it is this many times the median area
#: and its parts lie this many atom widths apart: two columns that the map merged.
_MERGED_AREA = 1.8
_MERGED_APART = 2.5
#: How far each part of a split blob must rise above the level where it separates.
#: Chosen on held-out STM images that the benchmark does not use (bench_stm seeds
#: 40-99; stm model, preprocess="stm"): F1 0.9715 with 0.1, 0.9712 with 0.15, 0.9693
#: with 0.2 (the whole-blob margin).
SPLIT_MARGIN = 0.1


def _split_merged(prob, labels, shapes, strong, threshold, margin, area=_SPLIT_AREA, apart=0.0):
    """Split the blobs that hold several atoms.

    Two close atoms can share one blob at the contour level while the map
    still shows two peaks. A blob larger than ``area`` times the typical one
    is re-contoured at higher levels (threshold + 0.1, + 0.2, ...) inside its
    own outline; where that gives two or more sub-blobs that each rise
    ``margin`` above their level (a hysteresis like a whole blob's) and lie
    at least ``apart`` px from one another, they replace it; the level
    giving the most such sub-blobs wins. Their descriptors are those of that
    level's contours. Returns the shapes, the mask of atoms among them, and
    how many blobs were split.
    """
    if strong.sum() < 5:
        return shapes, strong, 0
    typical = np.median(shapes["area"][strong])
    big = np.flatnonzero(strong & (shapes["area"] > area * typical))
    if not len(big):
        return shapes, strong, 0
    boxes = ndimage.find_objects(labels)
    pieces = []
    for i in big:
        box = boxes[i]
        crop = np.pad(np.where(labels[box] == i + 1, prob[box], 0), 1)
        best = None
        for level in np.arange(threshold + 0.1, 1.0 - margin + 1e-6, 0.1):
            sub = _blob_shapes(crop, float(level))[0]
            if not len(sub["x"]):
                break
            keep = sub["confidence"] >= np.float32(min(level + margin, 1.0))
            if apart > 0 and keep.sum() >= 2:
                keep &= _nearest_other(sub["x"], sub["y"], keep) >= apart
            if keep.sum() >= 2 and (best is None or keep.sum() > best[1].sum()):
                best = (sub, keep)
        if best is None:
            continue
        sub, keep = best
        sub = {k: v[keep] for k, v in sub.items()}
        sub["x"] = sub["x"] + box[1].start - 1
        sub["y"] = sub["y"] + box[0].start - 1
        sub["edge"] = np.full(len(sub["x"]), shapes["edge"][i])
        pieces.append(sub)
        strong = strong.copy()
        strong[i] = False
    if not pieces:
        return shapes, strong, 0
    merged = {k: np.concatenate([v] + [p[k] for p in pieces]) for k, v in shapes.items()}
    n_new = sum(len(p["x"]) for p in pieces)
    return merged, np.concatenate([strong, np.ones(n_new, bool)]), len(pieces)


def _nearest_other(x, y, keep):
    """Distance from each sub-blob to the nearest other kept one (inf for the dropped)."""
    xy = np.column_stack([x, y])
    d = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1))
    d[~keep] = np.inf
    d[:, ~keep] = np.inf
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def _blob_shapes(prob, threshold):
    labels, n = ndimage.label(prob >= threshold)
    if n == 0:
        return {"x": np.empty(0)}, labels
    m = _polygon_moments(prob, labels, n, threshold)
    if _hard_edged(prob):
        m["perimeter"] = _hard_edge_perimeters(labels, n)
    area = m["area"]
    ok = area > 0
    cx = np.divide(m["sx"], area, out=np.zeros(n), where=ok)
    cy = np.divide(m["sy"], area, out=np.zeros(n), where=ok)
    mu20 = np.divide(m["sxx"], area, out=np.zeros(n), where=ok) - cx**2
    mu02 = np.divide(m["syy"], area, out=np.zeros(n), where=ok) - cy**2
    mu11 = np.divide(m["sxy"], area, out=np.zeros(n), where=ok) - cx * cy
    half = np.sqrt(((mu20 - mu02) / 2) ** 2 + mu11**2)
    lam1 = np.maximum((mu20 + mu02) / 2 + half, 0)
    lam2 = np.maximum((mu20 + mu02) / 2 - half, 0)
    # y points down, so the clockwise image angle is negated for "counter-clockwise as displayed".
    orientation = np.degrees(-0.5 * np.arctan2(2 * mu11, mu20 - mu02)) % 180.0
    border = np.zeros(n + 1, bool)
    border[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
    perim = m["perimeter"]
    shapes = {
        "x": cx,
        "y": cy,
        "area": area,
        "perimeter": perim,
        "circularity": np.clip(
            np.divide(4 * np.pi * area, perim**2, out=np.zeros(n), where=perim > 0), 0, 1
        ),
        "orientation": orientation,
        "axis_major": 4 * np.sqrt(lam1),
        "axis_minor": 4 * np.sqrt(lam2),
        "eccentricity": np.sqrt(1 - np.divide(lam2, lam1, out=np.ones(n), where=lam1 > 0)),
        "confidence": _peaks(prob, labels, n),
        "edge": border[1:],
    }
    return shapes, labels


#: Atoms in a frame before its lattice is searched for missed columns.
_LATTICE_ATOMS = 40
_EDGE_BLUR = 0.8  # px: removes the pixel staircase of a hard-edged blob


def _hard_edged(prob) -> bool:
    """True when the map holds two values only (a binary mask drawn or thresholded)."""
    values = np.asarray(prob)
    if values.dtype == bool:
        return True
    low, high = np.nanmin(values), np.nanmax(values)
    return bool(np.all((values == low) | (values == high)))


def _hard_edge_perimeters(labels, n):
    """Perimeter of each labelled blob of a hard-edged map.

    The blob's mask is blurred by a Gaussian of ``_EDGE_BLUR`` px and the
    length of its half level line is taken: the blur removes the pixel
    staircase (marching squares on the mask itself is ~5% long on a disc)
    while it shortens a disc of radius r by only ``_EDGE_BLUR**2 / (2 r)``.
    """
    out = np.zeros(n)
    pad = 3
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        mask = np.pad((labels[box] == i + 1).astype(np.float64), pad)
        smooth = ndimage.gaussian_filter(mask, _EDGE_BLUR)
        out[i] = sum(_length(c) for c in find_contours(smooth, 0.5))
    return out


def _length(contour):
    return float(np.hypot(*np.diff(contour, axis=0).T).sum())


def _peaks(prob, labels, n):
    """Peak probability of each blob (only blob pixels are visited)."""
    inside = labels > 0
    peak = np.zeros(n + 1, np.float32)
    np.maximum.at(peak, labels[inside], prob[inside])
    return peak[1:]


def _polygon_moments(prob, labels, n, level):
    """Area, first and second moments and perimeter of each label's contours."""
    part = _segment_moments(prob, labels, level)
    return {
        k: np.bincount(part["owner"] - 1, v, minlength=n) for k, v in part.items() if k != "owner"
    }


def _segment_moments(prob, labels, level):
    """Moments of the marching-squares segments, with the label that owns each.

    Green's theorem needs the oriented edges of the contours, not their order:
    summing over the segments (:func:`_segments`) gives the same moments as
    summing over the assembled contours, without the assembly (a Python loop
    that took 60 % of ``locate`` on a 1024^2 map).
    """
    padded = np.pad(np.asarray(prob, np.float64), 1)
    flat = _segments(padded, float(level))
    owner = _owners(flat[:, 0], padded, labels, level)
    # A vertex that marching squares put on a pixel (value within rounding of the
    # level) may miss the blob's pixels: the segment's other end then decides.
    lost = owner == 0
    owner[lost] = _owners(flat[lost, 1], padded, labels, level)
    keep = owner > 0
    pts = flat[keep] - 1.0  # back to unpadded pixel coordinates
    y, x, y1, x1 = pts[:, 0, 0], pts[:, 0, 1], pts[:, 1, 0], pts[:, 1, 1]
    part = _green_terms(x, y, x1, y1)
    if part["area"].sum() < 0:  # orientation convention of the segments
        part = {k: -v for k, v in part.items()}
    part["perimeter"] = np.hypot(x1 - x, y1 - y)
    part["owner"] = owner[keep]
    return part


def _green_terms(x, y, x1, y1):
    """Area and first and second moments of polygon edges (x, y) -> (x1, y1), by Green."""
    cross = x * y1 - x1 * y
    return {
        "area": cross / 2,
        "sx": (x + x1) * cross / 6,
        "sy": (y + y1) * cross / 6,
        "sxx": (x * x + x * x1 + x1 * x1) * cross / 12,
        "syy": (y * y + y * y1 + y1 * y1) * cross / 12,
        "sxy": (x * y1 + 2 * x * y + 2 * x1 * y1 + x1 * y) * cross / 24,
    }


# Marching squares: for each case (bit 1 upper left, 2 upper right, 4 lower left, 8 lower
# right above the level) the oriented segments between the square's edges (0 top, 1 bottom,
# 2 left, 3 right), as skimage.measure.find_contours draws them (saddles 6 and 9 joined
# low, its default), so that the blob lies on the same side of every segment.
_CASE_EDGES = {1: [(0, 2)], 2: [(3, 0)], 3: [(3, 2)], 4: [(2, 1)], 5: [(0, 1)],
               6: [(3, 0), (2, 1)], 7: [(3, 1)], 8: [(1, 3)], 9: [(0, 2), (1, 3)],
               10: [(1, 0)], 11: [(1, 2)], 12: [(2, 3)], 13: [(0, 3)], 14: [(2, 0)]}  # fmt: skip
_SEGMENT_START = np.full((16, 2), -1)
_SEGMENT_END = np.full((16, 2), -1)
for _case, _pairs in _CASE_EDGES.items():
    for _k, (_s, _e) in enumerate(_pairs):
        _SEGMENT_START[_case, _k], _SEGMENT_END[_case, _k] = _s, _e


def _segments(image, level):
    """Every marching-squares segment of ``image`` at ``level``: (n, 2, 2) of (start, end)
    (row, col), the segments of skimage's find_contours before it assembles them into
    contours (tests/test_locate.py compares them), vectorised over the squares."""

    def fraction(a, b):
        d = b - a
        return np.where(d != 0, (level - a) / np.where(d != 0, d, 1), 0.0)

    above = image > level
    case = above[:-1, :-1] + 2 * above[:-1, 1:] + 4 * above[1:, :-1] + 8 * above[1:, 1:]
    r, c = np.nonzero((case > 0) & (case < 15))
    kind = case[r, c]
    ul, ur = image[r, c], image[r, c + 1]
    ll, lr = image[r + 1, c], image[r + 1, c + 1]
    rows, cols = r.astype(np.float64), c.astype(np.float64)
    edge = np.empty((len(r), 4, 2))
    edge[:, 0, 0], edge[:, 0, 1] = rows, cols + fraction(ul, ur)  # top
    edge[:, 1, 0], edge[:, 1, 1] = rows + 1, cols + fraction(ll, lr)  # bottom
    edge[:, 2, 0], edge[:, 2, 1] = rows + fraction(ul, ll), cols  # left
    edge[:, 3, 0], edge[:, 3, 1] = rows + fraction(ur, lr), cols + 1  # right
    out = []
    for j in (0, 1):  # the first segment of every square, then the saddles' second
        start, end = _SEGMENT_START[kind, j], _SEGMENT_END[kind, j]
        has = np.flatnonzero(start >= 0)
        out.append(np.stack([edge[has, start[has]], edge[has, end[has]]], axis=1))
    return np.concatenate(out)


def _owners(vertices, padded, labels, level):
    """Label of the above-level pixel next to each contour's first vertex.

    Marching-squares vertices lie on a grid edge: one coordinate is whole and
    the other falls between two pixels, one above the level and one below.
    """
    r, c = vertices[:, 0], vertices[:, 1]
    on_row = r == np.floor(r)  # the vertex lies between two pixels of one row
    r0 = np.where(on_row, r, np.floor(r)).astype(int)
    c0 = np.where(on_row, np.floor(c), c).astype(int)
    r1, c1 = np.where(on_row, r0, r0 + 1), np.where(on_row, c0 + 1, c0)
    first_inside = padded[r0, c0] >= level
    rr, cc = np.where(first_inside, r0, r1) - 1, np.where(first_inside, c0, c1) - 1
    ok = (rr >= 0) & (rr < labels.shape[0]) & (cc >= 0) & (cc < labels.shape[1])
    out = np.zeros(len(vertices), int)
    out[ok] = labels[rr[ok], cc[ok]]
    return out
