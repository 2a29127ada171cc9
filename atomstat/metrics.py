"""Atom-level scores against known truth: one-to-one matching, precision, recall, F1, RMSE,
and the Cramer-Rao bound that no unbiased position estimate can beat."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["detection_scores", "match_points", "position_bound"]

_NO_EDGE = 1e6  # a missing pair costs more than any set of real ones: most pairs win


def match_points(truth: np.ndarray, found: np.ndarray, tol: float = 2.0):
    """Match true to found points one to one, within ``tol`` px, minimising total distance.

    Returns
    -------
    ti, fi : ndarray of int
        Indices of matched pairs in ``truth`` and ``found``.
    dist : ndarray
        Their distances.

    Examples
    --------
    >>> ti, fi, d = match_points(np.array([[0, 0], [10, 0]]), np.array([[10.5, 0], [0.2, 0]]))
    >>> ti.tolist(), fi.tolist(), np.round(d, 2).tolist()
    ([0, 1], [1, 0], [0.2, 0.5])
    """
    truth = np.asarray(truth, float).reshape(-1, 2)
    found = np.asarray(found, float).reshape(-1, 2)
    empty = np.empty(0, int)
    if not len(truth) or not len(found):
        return empty, empty, np.empty(0)
    pairs = cKDTree(truth).sparse_distance_matrix(cKDTree(found), tol, output_type="coo_matrix")
    if pairs.nnz == 0:
        return empty, empty, np.empty(0)
    rows, cols, dist = pairs.row, pairs.col, pairs.data
    n_t = len(truth)
    graph = coo_matrix((np.ones(pairs.nnz), (rows, cols + n_t)), shape=(n_t + len(found),) * 2)
    _, comp = connected_components(graph, directed=False)
    order = np.argsort(comp[rows], kind="stable")  # candidate pairs grouped by cluster
    splits = np.flatnonzero(np.diff(comp[rows][order])) + 1
    out = []
    for group in np.split(order, splits):  # solve each cluster of candidates on its own
        r, c, d = rows[group], cols[group], dist[group]
        if len(group) == 1:
            out.append((r[0], c[0], d[0]))
            continue
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        cost = np.full((len(ur), len(uc)), _NO_EDGE)
        cost[ri, ci] = d
        a, b = linear_sum_assignment(cost)
        keep = cost[a, b] < _NO_EDGE
        out.extend(zip(ur[a[keep]], uc[b[keep]], cost[a[keep], b[keep]], strict=True))
    out = np.array(out, float).reshape(-1, 3)
    return out[:, 0].astype(int), out[:, 1].astype(int), out[:, 2]


def detection_scores(truth, found, *, tol: float = 2.0, shape=None, margin: float = 0.0) -> dict:
    """Precision, recall, F1 and localisation RMSE (2-D, px) of found against true centres.

    With ``shape`` and ``margin``, points within ``margin`` px of the image
    border are left out of both sets first.
    """
    truth = np.asarray(truth, float).reshape(-1, 2)
    found = np.asarray(found, float).reshape(-1, 2)
    if shape is not None and margin > 0:
        truth, found = _interior(truth, shape, margin), _interior(found, shape, margin)
    ti, _, dist = match_points(truth, found, tol)
    n_t, n_f, n_m = len(truth), len(found), len(ti)
    recall = n_m / n_t if n_t else 1.0
    precision = n_m / n_f if n_f else 1.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    rmse = float(np.sqrt(np.mean(dist**2))) if n_m else float("nan")
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "rmse": rmse,
        "n_true": n_t,
        "n_found": n_f,
    }


def _interior(xy, shape, margin):
    h, w = shape
    keep = (xy[:, 0] >= margin) & (xy[:, 0] <= w - 1 - margin)
    keep &= (xy[:, 1] >= margin) & (xy[:, 1] <= h - 1 - margin)
    return xy[keep]


def position_bound(truth, shape, *, dose: float, background: float = 0.0) -> np.ndarray:
    """Cramer-Rao bound of each atom's position in a simulated STEM image (px, 2-D).

    The image is Poisson counts with mean ``dose * (background + sum_k A_k G_k)``,
    as :func:`atomstat.simulate.simulate_lattice` draws it with ``Stem`` imaging
    (no extra blur or scan jitter): ``G_k`` is atom k's elliptical Gaussian,
    sampled at the pixel centres within ``ceil(4 sigma)`` px as
    :func:`atomstat.gaussians.render` draws it. The unknowns are every atom's
    ``x``, ``y`` and amplitude, fitted jointly, so close neighbours raise each
    other's bound; the background is taken as known, and so are atoms centred
    outside the image (their light still counts in the noise).

    No unbiased estimate of the centres has a smaller error: an estimator
    that reaches below the bound on average is biased (it shrinks toward
    something other than the data).

    Parameters
    ----------
    truth : DataFrame
        ``x``, ``y``, ``amplitude``, ``sigma_x``, ``sigma_y`` and ``theta`` of
        every atom, as a simulation's ``atoms`` table gives them.
    shape : tuple of int
        (H, W) of the image.
    dose : float
        Counts at a peak of amplitude 1.
    background : float
        Background level, in units of that peak.

    Returns
    -------
    ndarray of shape (N,)
        ``sqrt(var x + var y)`` of the best unbiased estimate of each atom's
        centre; NaN for atoms centred outside the image.

    Examples
    --------
    An isolated round atom with no background: the bound is
    ``sqrt(2) * sigma / sqrt(counts)``, with ``2 pi sigma^2 * dose`` counts.

    >>> import pandas as pd
    >>> atom = pd.DataFrame({"x": [20.3], "y": [19.6], "amplitude": [1.0],
    ...                      "sigma_x": [2.0], "sigma_y": [2.0], "theta": [0.0]})
    >>> bound = position_bound(atom, (40, 40), dose=100)
    >>> expected = np.sqrt(2) * 2.0 / np.sqrt(2 * np.pi * 2.0**2 * 100)
    >>> bool(abs(bound[0] / expected - 1) < 0.01)
    True
    """
    if not (np.isfinite(dose) and dose > 0):
        raise ValueError(f"dose must be a positive number of counts, got {dose!r}")
    if not (np.isfinite(background) and background >= 0):
        raise ValueError(f"background must be >= 0, got {background!r}")
    h, w = shape
    pts = truth[["x", "y"]].to_numpy(float)
    amp, sx, sy, theta = (
        truth[c].to_numpy(float) for c in ("amplitude", "sigma_x", "sigma_y", "theta")
    )
    n = len(pts)
    out = np.full(n, np.nan)
    if n == 0:
        return out
    r = int(np.ceil(4 * max(sx.max(), sy.max())))
    off = np.arange(-r, r + 1)
    ox, oy = (a.ravel() for a in np.meshgrid(off, off))
    px = np.round(pts[:, :1]).astype(int) + ox
    py = np.round(pts[:, 1:]).astype(int) + oy
    dx, dy = px - pts[:, :1], py - pts[:, 1:]
    t = np.deg2rad(theta)[:, None]
    c, s = np.cos(t), np.sin(t)
    u, v = dx * c - dy * s, dx * s + dy * c
    g = np.exp(-0.5 * ((u / sx[:, None]) ** 2 + (v / sy[:, None]) ** 2))
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    flat = np.where(inside, py * w + px, 0)
    lam = dose * (
        background + np.bincount(flat[inside], (amp[:, None] * g)[inside], minlength=h * w)
    )
    # d(mean)/d(x_c, y_c, A) of each atom on its window's pixels
    gu, gv = u / sx[:, None] ** 2, v / sy[:, None] ** 2
    dxc = dose * amp[:, None] * g * (gu * c + gv * s)
    dyc = dose * amp[:, None] * g * (-gu * s + gv * c)
    damp = dose * g
    free = np.flatnonzero(
        (pts[:, 0] > -0.5) & (pts[:, 0] < w - 0.5) & (pts[:, 1] > -0.5) & (pts[:, 1] < h - 0.5)
    )
    if not len(free):
        return out
    cols, rows, vals = [], [], []
    for j, deriv in enumerate((dxc, dyc, damp)):
        keep = inside[free] & (lam[flat[free]] > 0)
        rows.append(flat[free][keep])
        cols.append((3 * np.arange(len(free))[:, None] + j + np.zeros_like(flat[free]))[keep])
        vals.append(deriv[free][keep])
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    d = csr_matrix((vals / np.sqrt(lam[rows]), (rows, cols)), shape=(h * w, 3 * len(free)))
    var = _position_variances(csr_matrix(d.T @ d))
    out[free] = np.sqrt(var.sum(axis=1))
    return out


#: Correlation below which two atoms' parameters are treated as uncoupled: its effect
#: on a variance is of the order of its square (1e-5).
_COUPLED = 3e-3


def _position_variances(info):
    """Variances of (x, y) of each atom from the joint (3N, 3N) Fisher information.

    Atoms whose parameters correlate by more than ``_COUPLED`` are grouped (a
    dumbbell's pair, a cluster of close neighbours), and each group's block
    is inverted exactly: far cheaper than inverting the whole matrix, and the
    same to a part in 10^5.
    """
    n = info.shape[0] // 3
    scale = 1 / np.sqrt(info.diagonal())
    corr = info.tocoo()
    strong = np.abs(corr.data * scale[corr.row] * scale[corr.col]) > _COUPLED
    a, b = corr.row[strong] // 3, corr.col[strong] // 3
    links = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, comp = connected_components(links, directed=False)
    var = np.empty((n, 2))
    dense = info.toarray() if n <= 1500 else None
    order = np.argsort(comp, kind="stable")
    for group in np.split(order, np.flatnonzero(np.diff(comp[order])) + 1):
        idx = (3 * group[:, None] + np.arange(3)).ravel()
        block = dense[np.ix_(idx, idx)] if dense is not None else info[idx][:, idx].toarray()
        inv = np.linalg.inv(block)
        var[group, 0] = np.diagonal(inv)[0::3]
        var[group, 1] = np.diagonal(inv)[1::3]
    return var
