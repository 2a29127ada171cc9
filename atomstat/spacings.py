"""How precisely the columns of a dumbbell lattice are placed: the spread of their spacings.

A crystal's columns lie on a lattice, so the scatter of distances that the
lattice fixes measures the localisation precision on a real image, where no
true positions are known. Two measures, both per direction and in the
image's units (:func:`spacing_spread` reports both):

``"separation"`` (the one quoted for Si[110] in issue 13)
    The vector from a dumbbell's column ``a`` to its column ``b`` (136 pm in
    Si[110]) resolved along the dumbbells' mean axis (``[001]`` in Si[110])
    and across it (``[1-10]``): the standard deviation of each component.
    Both columns are measured in the same few scan lines, so slow scan
    distortion cancels, and a refinement that pushes the two columns apart
    (or lets them slide together) shows directly. On the real Si[110] image
    (``Si110_dumbbells_HAADF_5nm.png``) the published FCN (AtomSegNet) gives
    7.14/6.78 pm.
``"neighbours"``
    The distances between same-type columns (``a`` to ``a``, ``b`` to ``b``)
    of neighbouring dumbbells along the lattice's two shortest independent
    vectors, found from the dumbbell centres. They also carry the image's
    distortion between the two dumbbells (scan-line jitter moves whole rows
    of the Si[110] image by up to 5 px), so they read well above the
    separation's spread on fast scans.

Dumbbells touching the border (``edge``) are left out of both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

__all__ = ["lattice_vectors", "spacing_spread"]

#: Neighbour vectors within this share of the nearest-neighbour distance form one cluster.
_CLUSTER = 0.12
#: A lattice vector's cluster holds at least this share of the points.
_SUPPORT = 0.3
#: A neighbour is accepted within this share of the lattice vector's length of where it should be.
_TOLERANCE = 0.2


def spacing_spread(dumbbells: pd.DataFrame, *, pixel_size: float | None = None) -> pd.DataFrame:
    """Spread of the spacings of a dumbbell lattice's columns, per direction.

    Parameters
    ----------
    dumbbells : pandas.DataFrame
        A dumbbells table (:func:`atomstat.pair_dumbbells` or
        :func:`atomstat.find_dumbbells`) of one frame.
    pixel_size : float, optional
        Size of a pixel in the units wanted (e.g. 8.85 for pm); by default the
        table's ``attrs["pixel_size"]`` (1 for px).

    Returns
    -------
    pandas.DataFrame
        One row per measure and direction: ``measure`` (``"separation"`` or
        ``"neighbours"``, see the module), ``direction`` (``"along"`` /
        ``"across"`` the dumbbell axis for the separation, ``"v1"`` / ``"v2"``
        for the lattice vectors), ``angle`` (degrees, counter-clockwise as
        displayed), ``n`` (spacings measured), ``mean`` and ``std`` (px), and
        ``std_units`` (``std`` times ``pixel_size``).

    Raises
    ------
    ValueError
        If the table holds several frames or fewer than 8 whole dumbbells.

    Examples
    --------
    >>> from atomstat.dumbbells import pair_dumbbells
    >>> from atomstat.table import make_atoms
    >>> cells = [(30.0 * i + 15 * (j % 2), 24.0 * j) for i in range(6) for j in range(6)]
    >>> xy = np.array([(x + dx, y) for x, y in cells for dx in (-6.0, 6.0)])
    >>> found = pair_dumbbells(make_atoms({"x": xy[:, 0], "y": xy[:, 1]}))
    >>> spread = spacing_spread(found)
    >>> spread[["measure", "direction", "std"]].round(3).values.tolist()[:2]
    [['separation', 'along', 0.0], ['separation', 'across', 0.0]]
    """
    if "frame" in dumbbells and dumbbells["frame"].nunique() > 1:
        raise ValueError(
            "spacing_spread measures one frame: select one (dumbbells[dumbbells.frame == t])"
        )
    whole = dumbbells[~dumbbells["edge"].to_numpy(bool)] if "edge" in dumbbells else dumbbells
    if len(whole) < 8:
        raise ValueError(f"spacing_spread needs at least 8 whole dumbbells, got {len(whole)}")
    if pixel_size is None:
        pixel_size = float(dumbbells.attrs.get("pixel_size", 1.0))
    centre = whole[["x", "y"]].to_numpy(float)
    theta = np.radians(whole["angle"].to_numpy(float) + whole.attrs.get("reference", 0.0))
    half = (
        whole["separation"].to_numpy(float)[:, None]
        / 2
        * np.column_stack(
            [np.cos(theta), -np.sin(theta)]  # y points down
        )
    )
    rows = _separation_rows(2 * half) + _neighbour_rows(centre - half, centre + half, centre)
    out = pd.DataFrame(rows, columns=["measure", "direction", "angle", "n", "mean", "std"])
    out["std_units"] = out["std"] * pixel_size
    return out


def lattice_vectors(xy: np.ndarray) -> np.ndarray:
    """The two shortest independent lattice vectors (px) of a set of points.

    The vectors to each point's six nearest neighbours, folded into one half
    plane, are clustered; of the clusters that hold at least 30 % of the
    points, the shortest vector and then the shortest one not parallel to it
    (more than 18 degrees apart) are returned, as rows (dx, dy).

    Raises
    ------
    ValueError
        If the points do not form a lattice (no two such clusters).
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    if len(xy) < 8:
        raise ValueError(f"a lattice needs at least 8 points, got {len(xy)}")
    _, j = cKDTree(xy).query(xy, k=7)
    v = (xy[j[:, 1:]] - xy[:, None]).reshape(-1, 2)
    flip = (v[:, 1] < 0) | ((v[:, 1] == 0) & (v[:, 0] < 0))
    v[flip] *= -1
    length = np.hypot(*v.T)
    tree = cKDTree(v)
    counts = np.array(
        [len(c) for c in tree.query_ball_point(v, _CLUSTER * np.min(length[length > 0]))]
    )
    found = []
    for i in np.argsort(length, kind="stable"):
        if counts[i] < _SUPPORT * len(xy):
            continue
        members = tree.query_ball_point(v[i], _CLUSTER * length[i])
        vec = np.median(v[members], axis=0)
        if all(
            abs(np.dot(vec, f)) < np.cos(np.radians(18)) * np.hypot(*vec) * np.hypot(*f)
            for f in found
        ):
            found.append(vec)
        if len(found) == 2:
            return np.array(found)
    raise ValueError("the points do not form a lattice: no two independent neighbour vectors")


def _separation_rows(vec):
    """The a -> b vectors resolved along and across their mean axis."""
    doubled = np.arctan2(-vec[:, 1], vec[:, 0]) * 2  # axial mean, as displayed
    axis = 0.5 * np.arctan2(np.sin(doubled).mean(), np.cos(doubled).mean())
    u = np.array([np.cos(axis), -np.sin(axis)])
    along = vec @ u
    sign = np.where(along < 0, -1.0, 1.0)  # a few pairs may be labelled b -> a
    across = sign * (vec @ np.array([-u[1], u[0]]))
    angle = float(np.degrees(axis) % 180)
    return [
        (
            "separation",
            "along",
            angle,
            len(vec),
            float(np.mean(np.abs(along))),
            float(np.std(np.abs(along))),
        ),
        (
            "separation",
            "across",
            (angle + 90) % 180,
            len(vec),
            float(np.mean(across)),
            float(np.std(across)),
        ),
    ]


def _neighbour_rows(col_a, col_b, centre):
    """Same-type column distances of neighbouring dumbbells along the two lattice vectors."""
    tree = cKDTree(centre)
    rows = []
    for name, vec in zip(("v1", "v2"), lattice_vectors(centre), strict=True):
        reach = np.hypot(*vec)
        d, j = tree.query(centre + vec, distance_upper_bound=_TOLERANCE * reach)
        i = np.flatnonzero(np.isfinite(d))
        j = j[i]
        dist = np.concatenate(
            [np.hypot(*(col_a[j] - col_a[i]).T), np.hypot(*(col_b[j] - col_b[i]).T)]
        )
        angle = float(np.degrees(np.arctan2(-vec[1], vec[0])) % 180)
        std = float(np.std(dist)) if len(dist) else float("nan")
        mean = float(np.mean(dist)) if len(dist) else float("nan")
        rows.append(("neighbours", name, angle, len(dist), mean, std))
    return rows
