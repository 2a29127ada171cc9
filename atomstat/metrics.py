"""Atom-level scores against known truth: one-to-one matching, precision, recall, F1, RMSE."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["detection_scores", "match_points"]

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
