"""Atom-level scores against known truth: one-to-one matching, precision, recall, F1, RMSE."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["detection_scores", "match_points"]


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
    ti, fi, dist = [], [], []
    n_t = len(truth)
    graph = coo_matrix(
        (np.ones(pairs.nnz), (pairs.row, pairs.col + n_t)), shape=(n_t + len(found),) * 2
    )
    _, comp = connected_components(graph, directed=False)
    for c in np.unique(comp[pairs.row]):  # solve each cluster of candidates on its own
        sel = comp[pairs.row] == c
        rows, cols, d = pairs.row[sel], pairs.col[sel], pairs.data[sel]
        ur, uc = np.unique(rows), np.unique(cols)
        cost = np.full((len(ur), len(uc)), 1e6)
        cost[np.searchsorted(ur, rows), np.searchsorted(uc, cols)] = d
        r, k = linear_sum_assignment(cost)
        ok = cost[r, k] < 1e6
        ti.append(ur[r[ok]])
        fi.append(uc[k[ok]])
        dist.append(cost[r[ok], k[ok]])
    return np.concatenate(ti), np.concatenate(fi), np.concatenate(dist)


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
