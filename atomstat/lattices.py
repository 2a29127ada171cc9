"""Lattice geometry: atom positions of the lattice kinds, with no hard periodic constraint.

Also the argument checks that the simulators (:mod:`atomstat.simulate`, :mod:`atomstat.movie`,
:mod:`atomstat.molecule_scenes`) share: each error names the argument and what was wrong.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._checks import number

__all__ = ["LATTICES", "lattice_points"]

#: Most points a simulator lays out at once (about 2 GB of scratch memory); more means a
#: spacing far too small for the area, and is refused rather than run out of memory.
MAX_POINTS = 20_000_000

LATTICES = (
    "square",
    "rectangular",
    "hexagonal",
    "honeycomb",
    "centered_rectangular",
    "oblique",
    "dumbbell",
    "amorphous",
)


# ------------------------------------------------------------------ argument checks
# Shared by the simulators (simulate, movie, molecule_scenes): each names what it refuses.


def _shape(shape, smallest):
    """``shape`` as (H, W) Python ints, both at least ``smallest`` px.

    Raises
    ------
    ValueError
        When ``shape`` is not two integers (64.5 is refused) or a side is too small.
    """
    try:
        sides = tuple(shape)
    except TypeError:
        sides = ()
    if not (
        len(sides) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in sides)
        and min(sides) >= smallest
    ):
        raise ValueError(
            f"shape must be (H, W), two integers both at least {smallest} px, got {shape!r}"
        )
    return int(sides[0]), int(sides[1])


def _generator(rng):
    """``numpy.random.default_rng(rng)``, refusing what is not a seed.

    Raises
    ------
    TypeError
        When ``rng`` is not None, a non-negative int, a Generator (or a SeedSequence or
        BitGenerator).
    """
    seeds = np.random.Generator | np.random.BitGenerator | np.random.SeedSequence
    fine = rng is None or isinstance(rng, seeds)
    fine |= isinstance(rng, numbers.Integral) and not isinstance(rng, bool | np.bool_) and rng >= 0
    if not fine:
        raise TypeError(
            f"rng must be None, an int (>= 0) or a numpy Generator, got {rng!r} "
            f"({type(rng).__name__})"
        )
    return np.random.default_rng(rng)


def _check_count(n, what, advice):
    """Refuse to lay out more than :data:`MAX_POINTS` points (``what`` says which)."""
    if n > MAX_POINTS:
        raise ValueError(
            f"{what} would hold about {n:.2g} points, more than {MAX_POINTS:.0e}: {advice}"
        )


# ------------------------------------------------------------------ geometry
def _rot(deg):
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def _basis(kind, a, rng):
    """Primitive vectors (2x2, rows) and basis offsets (k x 2) for a lattice kind."""
    if kind == "square":
        return np.array([[a, 0], [0, a]]), np.zeros((1, 2))
    if kind == "rectangular":
        return np.array([[a, 0], [0, a * rng.uniform(1.2, 1.8)]]), np.zeros((1, 2))
    if kind == "hexagonal":
        return np.array([[a, 0], [a / 2, a * np.sqrt(3) / 2]]), np.zeros((1, 2))
    if kind == "honeycomb":
        c = a * np.sqrt(3)
        vecs = np.array([[c, 0], [c / 2, c * np.sqrt(3) / 2]])
        return vecs, np.array([[0, 0], [c / 2, c / (2 * np.sqrt(3))]])
    if kind == "centered_rectangular":
        r = rng.uniform(1.25, 1.7)
        vecs = np.array([[a * 1.2, 0], [0, a * 1.2 * r]])
        return vecs, np.array([[0, 0], [a * 0.6, a * 0.6 * r]])
    if kind == "oblique":
        g = np.deg2rad(rng.uniform(62, 80))
        b = a * rng.uniform(1.1, 1.5)
        return np.array([[a, 0], [b * np.cos(g), b * np.sin(g)]]), np.zeros((1, 2))
    if kind == "dumbbell":
        # Si[110]-like: dumbbells on a centred rectangular lattice.
        sep = a
        vecs = np.array([[sep * 3.0, 0], [0, sep * 4.2]])
        d = sep * _rot(90.0)[:, 0] / 2
        centres = np.array([[0, 0], [sep * 1.5, sep * 2.1]])
        return vecs, np.concatenate([centres - d, centres + d])
    raise ValueError(f"unknown lattice kind {kind!r}; choose from {LATTICES}")


def lattice_points(kind, shape, spacing, *, rotation=0.0, rng=None, margin=None, sites=False):
    """Atom positions of a lattice covering an image, in (x, y) pixels.

    Parameters
    ----------
    kind : str
        One of :data:`LATTICES`.
    shape : tuple of int
        (H, W) of the image to cover.
    spacing : float
        Nearest-neighbour distance in px (for ``dumbbell``, the column
        separation within a dumbbell).
    rotation : float
        Degrees, counter-clockwise as displayed.
    rng : None, int or numpy.random.Generator
    margin : float, optional
        Extra border covered outside the image (default ``2 * spacing``).
    sites : bool
        Also return the basis site (0, 1, ...) of each point: the sublattice.

    Returns
    -------
    points : ndarray of shape (N, 2)
    site : ndarray of shape (N,), only when ``sites`` is True

    Raises
    ------
    ValueError
        For an unknown kind, a shape that is not two positive integers, a spacing that is
        not a finite positive number, a rotation that is not finite, a negative margin,
        or a spacing so small for the area that the lattice would exceed
        :data:`MAX_POINTS` points.
    TypeError
        When a number or ``rng`` is of the wrong type.

    Examples
    --------
    >>> pts = lattice_points("square", (64, 64), 16.0, rng=0)
    >>> bool(((pts > -33) & (pts < 97)).all())
    True
    """
    rng = _generator(rng)
    h, w = _shape(shape, 1)
    number("spacing", spacing, low=0, low_open=True)
    number("rotation", rotation)
    margin = 2 * spacing if margin is None else number("margin", margin, low=0)
    if kind not in LATTICES:
        raise ValueError(f"unknown lattice kind {kind!r}; choose from {LATTICES}")
    what = f"the {kind} lattice of spacing {spacing:g} px over {h} x {w} px (margin {margin:g})"
    advice = "raise spacing (or lower margin)"
    if kind == "amorphous":
        step = 0.85 * spacing * 1.05
        _check_count((h + 2 * margin) / step * (w + 2 * margin) / step, what, advice)
        pts = _poisson_disc((h + 2 * margin, w + 2 * margin), 0.85 * spacing, rng) - margin
        return (pts, np.zeros(len(pts), int)) if sites else pts
    vecs, offsets = _basis(kind, spacing, rng)
    # Image-plane vectors: flip y so that "counter-clockwise as displayed" holds.
    rot = _rot(-rotation)
    vecs = vecs @ rot.T
    offsets = offsets @ rot.T
    radius = np.hypot(h, w) / 2 + margin
    nmax = int(np.ceil(radius / min(np.linalg.norm(vecs, axis=1) * 0.5))) + 2
    _check_count((2 * nmax + 1) ** 2 * len(offsets), what, advice)
    i, j = np.meshgrid(np.arange(-nmax, nmax + 1), np.arange(-nmax, nmax + 1), indexing="ij")
    cells = i.reshape(-1, 1) * vecs[0] + j.reshape(-1, 1) * vecs[1]
    pts = (cells[:, None, :] + offsets[None, :, :]).reshape(-1, 2)
    site = np.tile(np.arange(len(offsets)), len(cells))
    pts += np.array([w / 2, h / 2]) + rng.uniform(0, 1, 2) @ vecs
    keep = ((pts[:, 0] > -margin) & (pts[:, 0] < w + margin) & (pts[:, 1] > -margin)) & (
        pts[:, 1] < h + margin
    )
    return (pts[keep], site[keep]) if sites else pts[keep]


def _poisson_disc(shape, rmin, rng):
    """Random points with a minimum distance (dart throwing on a jittered grid)."""
    h, w = shape
    step = rmin * 1.05
    gy, gx = np.mgrid[0:h:step, 0:w:step]
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(float)
    pts += rng.uniform(-0.5, 0.5, pts.shape) * step * 0.9
    pts = pts[rng.permutation(len(pts))]
    from scipy.spatial import cKDTree

    keep = np.ones(len(pts), bool)
    tree = cKDTree(pts)
    for i, j in sorted(tree.query_pairs(rmin)):
        if keep[i] and keep[j]:
            keep[j] = False
    return pts[keep]
