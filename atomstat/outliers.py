"""Anomalies and clusters in the descriptor space of the atoms table.

Every function works on columns you choose (any numeric column of the atoms
table), normalised robustly: each descriptor minus its median, divided by its
interquartile range (``sklearn.preprocessing.RobustScaler``), so a handful of
odd atoms cannot stretch the scale that is meant to find them.

Rows whose chosen descriptors are not all finite (for example ``nn_distance``
of a lone atom) are never anomalies and get no cluster. Atoms cut by the image
border (``edge``) are left out of the fit by default and never flagged: their
blob shape is an artefact of the crop, not of the physics.

How many atoms are anomalous
----------------------------
Each method ranks the atoms by an outlier score. The share that is flagged,
``contamination``, is by default estimated from the data itself: the fraction
of atoms that lie more than ``fence`` interquartile ranges from the median in
at least one normalised descriptor (Tukey's "far out" rule, made stricter).
A clean lattice then gives no anomaly at all, and a lattice with 3% dopants
gives about 3%, without tuning. Pass a number to fix the share instead.

The defaults
------------
``method="zscore"`` on ``("intensity", "area")``, each atom compared with its
own sublattice where the table has a ``sublattice`` column
(:func:`atomstat.sublattices`), fences 4.5 interquartile ranges for intensity
and 7 for the blob area. They were chosen on simulated lattices (trigonal
with light dopants and adatoms; low-dose graphene with Si; MoS2-like with a
weak S2 sublattice and dopants; bench/bench_anomalies.py): precision 0.94-0.96
at the recall of the atom finder, where the one-class SVM on area,
circularity and intensity reached 0.88, 0.92 and, on MoS2, 0.17 (the faint S2
columns were the "anomalies"). Circularity costs precision on every one of
these sets, so it is not a default: pass it where blob shape is the physics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._checks import number
from .table import validate_atoms

__all__ = [
    "ANOMALY_METHODS",
    "CLUSTER_METHODS",
    "add_anomalies",
    "anomaly_scores",
    "cluster",
    "find_anomalies",
]

log = logging.getLogger(__name__)

ANOMALY_METHODS = ("ocsvm", "iforest", "lof", "zscore")
CLUSTER_METHODS = ("gmm", "kmeans", "dbscan")
DEFAULT_COLUMNS = ("intensity", "area")
#: Without a measured intensity (a table located without the raw image): the paper's.
SHAPE_COLUMNS = ("area", "circularity")
DEFAULT_FENCE = 5.0
INTENSITY_FENCE = 4.5
SHAPE_FENCE = 7.0
_MAX_AUTO_CLUSTERS = 6
_GMM = {"init_params": "k-means++"}
#: Most atoms the one-class SVM is fitted on (a seeded random sample; every atom is
#: scored): its fit grows with the square of the atoms (8,000 atoms: 0.38 s, 3,000: 0.06 s).
SVM_FIT_MOST = 3000


def anomaly_scores(
    atoms: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    method: str = "zscore",
    contamination: float | str = "auto",
    fence: float | dict | None = None,
    exclude_edge: bool = True,
    by: str | None = "auto",
    rng=None,
    **params,
) -> pd.Series:
    """Outlier score of every atom: positive for an anomaly, NaN where not scored.

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table.
    columns : sequence of str, optional
        Numeric descriptor columns, e.g. ``("area", "circularity")`` as in the
        paper, or with ``"intensity_relative"`` and ``"nn_distance"``. By
        default ``("intensity", "area")``, or ``("area", "circularity")``
        where the table has no intensity or none is measured (a table from
        :func:`atomstat.locate` without the raw image). Area and circularity
        alone miss most dim, broad adatoms: their blobs have the hosts' shape
        (bench/bench_anomalies.py measures both sets).
    method : {"zscore", "ocsvm", "iforest", "lof"}
        "zscore" (default): the atoms whose normalised descriptors lie more
        than ``fence`` interquartile ranges from their group's median in at
        least one descriptor; the score is the largest distance in fences,
        less 1 (with a numeric ``contamination``: the share with the largest
        distances). Or the one-class SVM (the paper's method), isolation
        forest or local outlier factor, all from scikit-learn.
    contamination : "auto" or float in (0, 0.5]
        Share of the scored atoms to flag; "auto" estimates it with ``fence``.
    fence : None, float or dict
        For "auto": an atom counts towards the share when one of its
        normalised descriptors lies more than its fence in interquartile
        ranges from the median (4.5 IQR is about 6 standard deviations of a
        normal distribution). One number for every column, or a dict by
        column; None (default) and columns missing from the dict take 4.5
        for the intensity columns, and 7 for the others beside an intensity
        column, 5 without one.
    exclude_edge : bool
        Leave atoms cut by the border out of the fit and never flag them.
    by : "auto", str or None
        Compare each atom with the atoms of its own group: every descriptor is
        scaled by the median and interquartile range of the group (a faint
        B-site column is then measured against the other B sites, not
        against the bright A sites). "auto" groups by ``sublattice`` where
        the table has that column (see :func:`atomstat.sublattices`), else
        not at all; None never groups. Rows of group -1 (on no site) and of
        groups with fewer than 8 atoms are scaled on all atoms.
    rng : None, int or numpy.random.Generator
        Randomness of the isolation forest, and of the sample the one-class
        SVM is fitted on when there are more than :data:`SVM_FIT_MOST` atoms
        (seed 0 when None: the same table gets the same scores).
    **params
        Passed to the scikit-learn estimator, overriding the defaults:
        ``OneClassSVM(nu=0.2, gamma=0.06 / n_columns)``,
        ``IsolationForest(n_estimators=100)``,
        ``LocalOutlierFactor(n_neighbors=clip(n / 20, 20, 200))``.

    Returns
    -------
    score : pandas.Series of float, named ``anomaly_score``
        Aligned to ``atoms.index``; an atom is an anomaly where the score is
        above 0. ``score.attrs`` records the method, columns, parameters, the
        contamination used and the raw threshold.

    Raises
    ------
    ValueError
        If ``method``, ``columns``, ``contamination`` or ``fence`` is invalid.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> rng = np.random.default_rng(0)
    >>> area = np.r_[rng.normal(20, 1, 300), [8.0, 7.5, 8.5]]
    >>> atoms = make_atoms({"x": np.arange(303.0), "y": np.zeros(303), "area": area,
    ...                     "circularity": rng.normal(0.96, 0.01, 303)})
    >>> score = anomaly_scores(atoms)
    >>> int((score > 0).sum()), bool(score.iloc[-3:].gt(0).all())
    (3, True)
    """
    method = _check_choice(method, ANOMALY_METHODS, "method")
    group = _group_column(atoms, by)
    X, fit_rows, names = _features(atoms, columns, exclude_edge, group)
    fences = _fences(fence, names) if contamination == "auto" else None
    share = _contamination(contamination, fences, X[fit_rows])
    score = np.full(len(atoms), np.nan)
    settings = {"method": method, "columns": names, "contamination": share, "by": group}
    settings.update(
        {"fence": None if fences is None else dict(zip(names, fences.tolist(), strict=True))}
    )
    settings["params"] = {}
    n_fit = int(fit_rows.sum())
    if n_fit >= 3 and method == "zscore":
        raw = np.abs(X[fit_rows] / (1.0 if fences is None else fences)).max(axis=1)
        threshold = 1.0 if fences is not None else _threshold(raw, share)
        score[fit_rows] = raw - threshold
        settings.update({"threshold": float(threshold)})
    elif n_fit >= 3:
        with _one_thread():
            raw, used = _raw_scores(method, X[fit_rows], rng, params)
        threshold = _threshold(raw, share)
        score[fit_rows] = raw - threshold
        settings.update({"params": used, "threshold": float(threshold)})
    elif n_fit:
        log.warning("only %d atom(s) to score; need at least 3, none scored", n_fit)
    elif len(atoms):
        log.warning("no atom has finite values in all of %s: none scored", names)
    out = pd.Series(score, index=atoms.index, name="anomaly_score")
    out.attrs.update(settings)
    return out


def find_anomalies(
    atoms: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    method: str = "zscore",
    **params,
) -> pd.Series:
    """Flag the anomalous atoms.

    Takes the same arguments as :func:`anomaly_scores` and returns
    ``anomaly_scores(...) > 0``: a boolean Series named ``anomaly``, aligned to
    ``atoms.index``, False for atoms that were not scored (edge atoms, rows
    with missing descriptors). ``attrs`` records the settings. Use
    :func:`add_anomalies` to get both columns from one fit.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> area = np.r_[np.linspace(19, 21, 200), 6.0]
    >>> atoms = make_atoms({"x": np.arange(201.0), "y": np.zeros(201), "area": area,
    ...                     "circularity": np.full(201, 0.95)})
    >>> flags = find_anomalies(atoms, method="iforest", rng=0)
    >>> flags.name, int(flags.sum()), bool(flags.iloc[-1])
    ('anomaly', 1, True)
    """
    score = anomaly_scores(atoms, columns, method=method, **params)
    flags = (score > 0).rename("anomaly")
    flags.attrs.update(score.attrs)
    return flags


def add_anomalies(
    atoms: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    method: str = "zscore",
    **params,
) -> pd.DataFrame:
    """Return a copy of ``atoms`` with the ``anomaly`` and ``anomaly_score`` columns.

    The arguments are those of :func:`anomaly_scores`. The settings used are
    kept in ``attrs["anomalies"]`` so that exports and sessions record them.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": np.arange(50.0), "y": np.zeros(50),
    ...                     "area": np.r_[np.linspace(19, 21, 49), 3.0],
    ...                     "circularity": np.full(50, 0.95)})
    >>> out = add_anomalies(atoms)
    >>> out.index[out.anomaly].tolist(), out.attrs["anomalies"]["method"]
    ([49], 'zscore')
    """
    score = anomaly_scores(atoms, columns, method=method, **params)
    out = atoms.copy()
    out["anomaly"] = (score > 0).to_numpy()
    out["anomaly_score"] = score.to_numpy()
    out.attrs["anomalies"] = dict(score.attrs)
    return out


def cluster(
    atoms: pd.DataFrame,
    columns: Sequence[str],
    *,
    method: str = "gmm",
    n_clusters: int | str = 2,
    exclude_edge: bool = True,
    rng=None,
    **params,
) -> pd.Series:
    """Group the atoms by their normalised descriptors.

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table, or any subset of it (for example the anomalies).
    columns : sequence of str
        Numeric descriptor columns.
    method : {"gmm", "kmeans", "dbscan"}
        Gaussian mixture, k-means or DBSCAN (scikit-learn).
    n_clusters : int or "auto"
        Number of clusters for "gmm" and "kmeans". "auto" picks it from 1 to
        6 by the Bayesian information criterion (gmm) or from 2 to 6 by the
        silhouette score (kmeans), with at least about 5 atoms per cluster.
        DBSCAN finds its own number.
    exclude_edge : bool
        Leave atoms cut by the border out (cluster -1).
    rng : None, int or numpy.random.Generator
    **params
        Passed to the estimator (e.g. ``eps`` and ``min_samples`` for DBSCAN,
        in interquartile-range units; defaults 0.5 and 5).

    Returns
    -------
    labels : pandas.Series of int64, named ``cluster``
        Aligned to ``atoms.index``. Clusters are numbered by size, 0 the
        largest; -1 means no cluster (left out, or DBSCAN noise).

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> area = np.r_[np.linspace(19, 21, 40), np.linspace(9, 10, 10)]
    >>> atoms = make_atoms({"x": np.arange(50.0), "y": np.zeros(50), "area": area})
    >>> labels = cluster(atoms, ["area"], rng=0)
    >>> labels.tolist() == [0] * 40 + [1] * 10
    True
    """
    method = _check_choice(method, CLUSTER_METHODS, "method")
    if not (n_clusters == "auto" or (_is_int(n_clusters) and n_clusters >= 1)):
        raise ValueError(f"n_clusters must be a positive integer or 'auto', got {n_clusters!r}")
    X, rows, _ = _features(atoms, columns, exclude_edge)
    labels = np.full(len(atoms), -1, np.int64)
    if rows.any():
        with _one_thread():
            found = _fit_clusters(method, X[rows], n_clusters, rng, params)
        labels[rows] = _by_size(found)
    return pd.Series(labels, index=atoms.index, name="cluster")


# --------------------------------------------------------------------------- helpers


def _one_thread():
    """One BLAS/OpenMP thread: these tables are small, and extra threads only contend."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _is_int(value):
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _group_column(atoms, by):
    """The column to group by (None for no grouping), checked."""
    if by == "auto":
        return "sublattice" if isinstance(atoms, pd.DataFrame) and "sublattice" in atoms else None
    if by is None:
        return None
    if not isinstance(by, str) or not isinstance(atoms, pd.DataFrame) or by not in atoms:
        have = list(atoms.columns) if isinstance(atoms, pd.DataFrame) else []
        raise ValueError(
            f"by must be 'auto', None or a column of the atoms table {have}, got {by!r}"
        )
    return by


def _features(atoms, columns, exclude_edge, group=None):
    """Robustly scaled descriptor matrix, and the rows that take part in the fit."""
    validate_atoms(atoms, required=())
    if columns is None:
        # a table located without the raw image has no intensity (absent or all NaN)
        measured = "intensity" in atoms.columns and atoms["intensity"].notna().any()
        columns = DEFAULT_COLUMNS if measured else SHAPE_COLUMNS
    if isinstance(columns, str) or not isinstance(columns, Sequence) or not len(columns):
        raise ValueError(f"columns must be a non-empty sequence of column names, got {columns!r}")
    names = list(columns)
    missing = [c for c in names if c not in atoms.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the atoms table {list(atoms.columns)}")
    bad = [c for c in names if not pd.api.types.is_numeric_dtype(atoms[c])]
    if bad:
        raise ValueError(f"columns must be numeric; {bad} are not")
    X = atoms[names].to_numpy(dtype=np.float64, na_value=np.nan)
    rows = np.isfinite(X).all(axis=1)
    if exclude_edge and "edge" in atoms.columns:
        rows &= ~atoms["edge"].to_numpy(dtype=bool)
    if rows.any():
        X = _robust_scale(X, rows, None if group is None else atoms[group].to_numpy())
    return X, rows, names


_MIN_GROUP = 8


def _robust_scale(X, rows, groups=None):
    """Each column minus its median over ``rows``, over its interquartile range; with
    ``groups``, per group (groups -1 and those under 8 fitted rows: on all rows)."""
    out = _scale_on(X, rows)
    if groups is None:
        return out
    for g in pd.unique(groups):
        mine = groups == g
        if (isinstance(g, int | np.integer) and g < 0) or (mine & rows).sum() < _MIN_GROUP:
            continue
        out[mine] = _scale_on(X, mine & rows)[mine]
    return out


def _scale_on(X, rows):
    from sklearn.preprocessing import RobustScaler

    scaler = RobustScaler().fit(X[rows])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # a constant column stays at 0
    return (X - scaler.center_) / scale


def _fences(fence, names):
    """The fence of each column: one number for all, or a dict by column (others at the
    default for their kind)."""
    if isinstance(fence, dict):
        for k, v in fence.items():
            number(f"fence[{k!r}]", v, low=0, low_open=True)
        return np.array([float(fence.get(c, _default_fence(c, names))) for c in names])
    if fence is None:
        return np.array([_default_fence(c, names) for c in names])
    return np.full(len(names), number("fence", fence, low=0, low_open=True))


def _default_fence(column, names):
    """4.5 for intensities; 7 for other columns beside an intensity (a second opinion
    must be sure), 5 without one."""
    if column.startswith("intensity"):
        return INTENSITY_FENCE
    with_intensity = any(c.startswith("intensity") for c in names)
    return SHAPE_FENCE if with_intensity else DEFAULT_FENCE


def _contamination(contamination, fences, Xfit):
    if contamination == "auto":
        if not len(Xfit):
            return 0.0
        return float(np.mean((np.abs(Xfit) > fences).any(axis=1)))
    try:
        return number("contamination", contamination, low=0, high=0.5, low_open=True)
    except ValueError:
        raise ValueError(
            f"contamination must be 'auto' or in (0, 0.5], got {contamination!r}"
        ) from None


def _raw_scores(method, X, rng, params):
    """Fit ``method`` and return scores (higher = more anomalous) and the parameters used."""
    n, d = X.shape
    if method == "ocsvm":
        from sklearn.svm import OneClassSVM

        used = {"nu": 0.2, "gamma": 0.06 / d, **params}
        fit = X
        if n > SVM_FIT_MOST:  # seeded: the same table gets the same flags
            pick = np.random.default_rng(0 if rng is None else rng)
            fit = X[np.sort(pick.choice(n, SVM_FIT_MOST, replace=False))]
        return -OneClassSVM(**used).fit(fit).decision_function(X), used
    if method == "iforest":
        from sklearn.ensemble import IsolationForest

        seed = int(np.random.default_rng(rng).integers(2**31 - 1))
        used = {"n_estimators": 100, **params}
        est = IsolationForest(random_state=seed, **used).fit(X)
        return -est.score_samples(X), used
    from sklearn.neighbors import LocalOutlierFactor

    used = {"n_neighbors": int(np.clip(n // 20, 20, 200)), **params}
    used["n_neighbors"] = min(used["n_neighbors"], n - 1)
    return -LocalOutlierFactor(**used).fit(X).negative_outlier_factor_, used


def _threshold(raw, share):
    """Score between the ``share`` highest and the rest (above the maximum when none)."""
    n_flag = int(round(share * len(raw)))
    ordered = np.sort(raw)[::-1]
    if n_flag <= 0:
        return ordered[0] + max(1e-9, 1e-9 * abs(ordered[0]))
    if n_flag >= len(raw):
        return ordered[-1] - 1e-9
    return (ordered[n_flag - 1] + ordered[n_flag]) / 2


def _fit_clusters(method, X, n_clusters, rng, params):
    seed = int(np.random.default_rng(rng).integers(2**31 - 1))
    n = len(X)
    if method == "dbscan":
        from sklearn.cluster import DBSCAN

        return DBSCAN(**{"eps": 0.5, "min_samples": 5, **params}).fit_predict(X)
    if n_clusters != "auto" and n_clusters > n:
        raise ValueError(f"n_clusters={n_clusters} exceeds the {n} atoms to cluster")
    if n == 1:
        return np.zeros(1, int)
    k_max = max(1, min(_MAX_AUTO_CLUSTERS, n // 5))  # at least about 5 atoms per cluster
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        auto = n_clusters == "auto"
        ks = range(1, k_max + 1) if auto else [n_clusters]
        settings = {**_GMM, "n_init": 1 if auto else 2, **params}  # one start per k keeps auto fast
        models = [GaussianMixture(k, random_state=seed, **settings).fit(X) for k in ks]
        return min(models, key=lambda m: m.bic(X)).predict(X)
    from sklearn.cluster import KMeans

    def kmeans(k):
        return KMeans(k, random_state=seed, **{"n_init": 4, **params}).fit(X)

    if n_clusters != "auto":
        return kmeans(n_clusters).labels_
    return _best_silhouette([kmeans(k) for k in range(2, k_max + 1)], X, n)


def _best_silhouette(models, X, n):
    from sklearn.metrics import silhouette_score

    if not models:
        return np.zeros(n, int)

    def score(m):  # a sample keeps this cheap on large tables
        if len(set(m.labels_)) < 2:
            return -1.0
        return silhouette_score(X, m.labels_, sample_size=min(n, 1000), random_state=0)

    scores = [score(m) for m in models]
    return models[int(np.argmax(scores))].labels_


def _by_size(found):
    """Renumber cluster labels by size, 0 the largest; -1 (noise) stays -1."""
    out = np.full(len(found), -1, np.int64)
    ids, counts = np.unique(found[found >= 0], return_counts=True)
    for new, old in enumerate(ids[np.lexsort((ids, -counts))]):
        out[found == old] = new
    return out
