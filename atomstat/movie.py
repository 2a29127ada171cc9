"""Simulated STEM movies of Si[110]-like dumbbells, with exact ground truth.

The sample is a centred rectangular lattice of dumbbells (two columns
``separation`` px apart). Every dumbbell has its own angle, which random-walks
from frame to frame; the whole sample drifts by about ``drift`` px per frame
in a slowly turning direction, so dumbbells leave the field of view on one
side and enter on the other. Frames are rendered with
:func:`atomstat.gaussians.render` and imaged like :class:`atomstat.simulate.Stem`
(background, optional blur, Poisson noise at ``dose`` counts per column peak).

The truth comes back in the atoms-table style: one row per dumbbell per frame
(``frame``, ``x``, ``y``, ``angle``, ``separation``, the true id
``dumbbell`` and the two column positions), one row per column per frame,
and the sample drift of every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._checks import number
from .gaussians import render
from .imaging import stem_image
from .lattices import _check_count, _generator, _shape
from .simulate import _DOSE, Stem
from .table import make_atoms

__all__ = ["Movie", "dumbbell_lattice", "simulate_movie"]

#: Si[110]: the cell's c/a ratio ([001] over [1-10]) and a over the dumbbell separation.
SI_ASPECT = np.sqrt(2.0)
SI_SPACING_PER_SEPARATION = 3.84 / 1.36

#: The sample may drift at most this many frame widths (``drift * (n_frames - 1)`` over the
#: larger side): the simulated sample covers the whole path.
MAX_DRIFT_WIDTHS = 10


@dataclass
class Movie:
    """A simulated dumbbell movie and its truth.

    Attributes
    ----------
    frames : ndarray of shape (T, H, W), float32
        Noisy frames in counts.
    dumbbells : pandas.DataFrame
        One row per dumbbell per frame whose centre lies in the image:
        ``frame``, ``x``, ``y`` (centre, px), ``angle`` (degrees in [0, 180),
        counter-clockwise as displayed, of the vector from column a to
        column b), ``separation`` (px), ``dumbbell`` (true id, the same in
        every frame), ``x_a``, ``y_a``, ``x_b``, ``y_b`` (column centres) and
        ``inside`` (both columns at least one ``sigma`` inside the image).
    atoms : pandas.DataFrame
        The columns as an atoms table (one row per column per frame whose
        centre lies in the image), with ``dumbbell`` and ``column``
        (0 for a, 1 for b).
    drift : pandas.DataFrame
        Index ``frame``; ``dx``, ``dy``: where a fixed point of the sample is
        in frame t minus where it is in frame 0 (px).
    clean : ndarray of shape (T, H, W), float32
        The noise-free frames (column peak 1, no background).
    """

    frames: np.ndarray
    dumbbells: pd.DataFrame
    atoms: pd.DataFrame
    drift: pd.DataFrame
    clean: np.ndarray


def simulate_movie(
    n_frames: int = 20,
    *,
    shape=(256, 256),
    separation: float = 12.0,
    spacing: float = 40.0,
    sigma: float = 3.0,
    dose: float = 100.0,
    background: float = 0.15,
    angle: float = 90.0,
    angle_spread: float = 3.0,
    angle_step: float = 2.0,
    rotation: float = 0.0,
    drift: float = 12.0,
    drift_max: float = 17.0,
    turn: float = 6.0,
    jitter: float = 0.1,
    rng=None,
) -> Movie:
    """Simulate a Si[110]-like dumbbell movie with known angles, drift and noise.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : tuple of int
        (H, W) of a frame in px, both at least 16.
    separation : float
        Distance between the two columns of a dumbbell (px).
    spacing : float
        Lattice constant ``a`` along [1-10] (px); the cell is ``a`` by
        ``a * sqrt(2)`` with two dumbbells. Si itself has
        ``spacing = 2.82 * separation``; the default 40 px gives about 58
        dumbbells in 256 x 256 px, about 35 px apart.
    sigma : float
        Gaussian width of a column (px), at most half the smaller side.
    dose : float
        Counts at a column's peak (Poisson noise), in (0, 1e9].
    background : float
        Background as a fraction of the column peak, in [0, 1000].
    angle : float
        Mean dumbbell angle (degrees, counter-clockwise as displayed) before
        the lattice rotation; 90 puts the dumbbells along [001], vertical.
    angle_spread : float
        Standard deviation of the dumbbells' own angles in frame 0 (degrees).
    angle_step : float
        Standard deviation of each dumbbell's angle change per frame (degrees).
    rotation : float
        Lattice rotation (degrees, counter-clockwise as displayed).
    drift : float
        Typical drift per frame (px); each step is drawn around it. The total,
        ``drift * (n_frames - 1)``, may be at most :data:`MAX_DRIFT_WIDTHS` (10)
        times the frame's larger side.
    drift_max : float
        Largest drift in one frame (px).
    turn : float
        Typical turn of the drift direction per frame (degrees).
    jitter : float
        Random displacement of each dumbbell centre per frame (px).
    rng : None, int or numpy.random.Generator

    Returns
    -------
    Movie

    Raises
    ------
    ValueError
        Naming the parameter: ``n_frames`` below 1; a shape that is not two integers
        of at least 16 px; a number that is NaN or infinite; a separation, sigma or dose
        that is not positive (sigma at most half the smaller side, dose at most 1e9); a
        spacing not above twice the separation; a negative background, angle_spread,
        angle_step, turn or jitter (or a jitter above the spacing); a drift outside
        [0, drift_max]; a total drift of more than ``MAX_DRIFT_WIDTHS`` frame widths; a
        spacing so small that the sample would exceed ``lattices.MAX_POINTS`` dumbbells
        (times frames).
    TypeError
        When a number is not a number (``n_frames`` not an integer) or ``rng`` is not
        None, an int or a Generator.

    Examples
    --------
    >>> movie = simulate_movie(3, shape=(96, 96), rng=0)
    >>> movie.frames.shape
    (3, 96, 96)
    >>> sorted(movie.dumbbells.columns[:6])
    ['angle', 'dumbbell', 'frame', 'separation', 'x', 'y']
    """
    shape = _check(
        n_frames,
        shape,
        separation=separation,
        spacing=spacing,
        sigma=sigma,
        dose=dose,
        background=background,
        angle=angle,
        angle_spread=angle_spread,
        angle_step=angle_step,
        rotation=rotation,
        drift=drift,
        drift_max=drift_max,
        turn=turn,
        jitter=jitter,
    )
    rng = _generator(rng)
    steps = _drift_steps(n_frames, drift, drift_max, turn, rng)
    offsets = np.vstack([np.zeros(2), np.cumsum(steps, axis=0)])  # (T, 2)
    h, w = shape
    margin = separation + 4 * sigma + 5 * jitter
    low, high = offsets.min(axis=0), offsets.max(axis=0)
    size = (h + high[1] - low[1] + 2 * margin, w + high[0] - low[0] + 2 * margin)
    # Sample coordinates covering every view: sample point p is at p + offsets[t] in frame t.
    centres = dumbbell_lattice(size, spacing, rotation=rotation, rng=rng) - (high + margin)
    n = len(centres)
    _check_count(
        n * n_frames,
        f"{n} dumbbells over {n_frames} frames",
        "raise spacing, or lower n_frames, shape or drift",
    )
    angles = (angle + rotation + rng.normal(0, angle_spread, n))[None, :] + np.cumsum(
        np.vstack([np.zeros(n), rng.normal(0, angle_step, (n_frames - 1, n))]), axis=0
    )
    shake = rng.normal(0, jitter, (n_frames, n, 2))
    imaging = Stem(dose=dose, background=background)
    frames, clean, rows = [], [], []
    for t in range(n_frames):
        xy = centres + offsets[t] + shake[t]
        cols = _columns(xy, angles[t], separation)
        img = render(cols.reshape(-1, 2), shape, 1.0, sigma, sigma, 0.0)
        clean.append(img.astype(np.float32))
        frames.append(stem_image(img, imaging, rng))
        rows.append(_truth_rows(t, xy, angles[t], cols, separation))
    every = pd.concat(rows, ignore_index=True)
    truth = every[_inside(every.x, every.y, shape, 0.0)].reset_index(drop=True)
    truth["inside"] = _inside(truth.x_a, truth.y_a, shape, sigma) & _inside(
        truth.x_b, truth.y_b, shape, sigma
    )
    truth = truth.rename_axis("dumbbell_id")
    truth.attrs.update({"pixel_size": 1.0, "units": "px", "source": "simulate_movie"})
    drift_table = pd.DataFrame(offsets, columns=["dx", "dy"]).rename_axis("frame")
    return Movie(
        np.stack(frames).astype(np.float32),
        truth,
        _column_table(every, shape, sigma),
        drift_table,
        np.stack(clean),
    )


def dumbbell_lattice(size, spacing: float, *, rotation: float = 0.0, rng=None) -> np.ndarray:
    """Dumbbell centres of a Si[110]-like centred rectangular lattice covering ``size``.

    Parameters
    ----------
    size : tuple of float
        (H, W) of the area to cover, from (0, 0).
    spacing : float
        Lattice constant ``a`` (px); the cell is ``a`` by ``a * sqrt(2)``.
    rotation : float
        Degrees, counter-clockwise as displayed.
    rng : None, int or numpy.random.Generator
        Draws the lattice's origin.

    Returns
    -------
    centres : ndarray of shape (N, 2)
        (x, y) in px.

    Raises
    ------
    ValueError
        When a side of ``size`` or ``spacing`` is not a finite positive number, the
        rotation is not finite, or the spacing is so small for the area that the
        lattice would exceed ``lattices.MAX_POINTS`` points.

    Examples
    --------
    >>> pts = dumbbell_lattice((100, 100), 40.0, rng=0)
    >>> bool(len(pts) >= 2 * 100 * 100 / (40 * 40 * 1.42))
    True
    """
    rng = _generator(rng)
    h, w = size
    for name, value in (("size[0]", h), ("size[1]", w), ("spacing", spacing)):
        number(name, value, low=0, low_open=True)
    number("rotation", rotation)
    a, c = spacing, spacing * SI_ASPECT
    t = np.deg2rad(-rotation)  # y points down: negate for "counter-clockwise as displayed"
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    reach = int(np.ceil(np.hypot(h, w) / min(a, c))) + 2
    _check_count(
        2 * (2 * reach + 1) ** 2,
        f"a dumbbell lattice of spacing {spacing:g} px over {h:g} x {w:g} px",
        "raise spacing",
    )
    i, j = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1))
    cells = np.column_stack([i.ravel() * a, j.ravel() * c])
    pts = np.concatenate([cells, cells + [a / 2, c / 2]]) + rng.uniform(0, 1, 2) * [a, c]
    pts = pts @ rot.T + [w / 2, h / 2]
    keep = (pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)
    return pts[keep]


def _check(n_frames, shape, **values):
    """Check the arguments of :func:`simulate_movie`; return the shape as two ints."""
    number("n_frames", n_frames, low=1, integer=True)
    shape = _shape(shape, 16)
    half = min(shape) / 2
    positive = {"low": 0, "low_open": True}
    ranges = {
        "separation": positive,
        "spacing": positive,
        "sigma": positive | {"high": half, "note": " (half the smaller side)"},
        "dose": _DOSE,
        "background": {"low": 0, "high": 1e3},
        "angle": {},
        "angle_spread": {"low": 0},
        "angle_step": {"low": 0},
        "rotation": {},
        "drift": {"low": 0},
        "drift_max": {"low": 0},
        "turn": {"low": 0},
        "jitter": {"low": 0, "high": values["spacing"], "note": " (the spacing)"},
    }
    for name, limits in ranges.items():
        number(name, values[name], **limits)
    separation, spacing = values["separation"], values["spacing"]
    drift, drift_max = values["drift"], values["drift_max"]
    if not spacing > 2 * separation:
        raise ValueError(
            f"spacing must exceed twice the separation ({2 * separation:g} px), got {spacing!r}"
        )
    if not drift <= drift_max:
        raise ValueError(
            f"drift must be between 0 and drift_max, got drift={drift!r}, drift_max={drift_max!r}"
        )
    total, widest = drift * (n_frames - 1), MAX_DRIFT_WIDTHS * max(shape)
    if total > widest:
        raise ValueError(
            f"drift {drift:g} px per frame over {n_frames} frames moves the sample {total:g} px: "
            f"at most {MAX_DRIFT_WIDTHS} frame widths ({widest} px) are allowed; "
            "lower drift or n_frames"
        )
    return shape


def _drift_steps(n_frames, drift, drift_max, turn, rng):
    """(T-1, 2) drift steps: speeds around ``drift`` up to ``drift_max``, heading turning slowly."""
    n = n_frames - 1
    speed = np.clip(rng.normal(drift, drift / 6, n), 0, drift_max)
    rate = rng.choice([-1, 1]) * turn * rng.uniform(0.5, 1.5)
    heading = rng.uniform(0, 2 * np.pi) + np.deg2rad(np.cumsum(rate + rng.normal(0, turn / 3, n)))
    return np.column_stack([speed * np.cos(heading), speed * np.sin(heading)])


def _columns(xy, angles, separation):
    """(N, 2, 2): the two columns (a, b) of each dumbbell."""
    t = np.deg2rad(angles)
    half = separation / 2 * np.column_stack([np.cos(t), -np.sin(t)])  # y points down
    return np.stack([xy - half, xy + half], axis=1)


def _truth_rows(t, xy, angles, cols, separation):
    return pd.DataFrame(
        {
            "frame": t,
            "x": xy[:, 0],
            "y": xy[:, 1],
            "angle": np.mod(angles, 180.0),
            "separation": float(separation),
            "dumbbell": np.arange(len(xy)),
            "x_a": cols[:, 0, 0],
            "y_a": cols[:, 0, 1],
            "x_b": cols[:, 1, 0],
            "y_b": cols[:, 1, 1],
        }
    )


def _inside(x, y, shape, margin):
    h, w = shape
    x, y = np.asarray(x), np.asarray(y)
    return (x > margin - 0.5) & (x < w - 0.5 - margin) & (y > margin - 0.5) & (y < h - 0.5 - margin)


def _column_table(truth, shape, sigma):
    """The columns of the dumbbells as an atoms table (those whose centre lies in the image)."""
    n = len(truth)
    cols = {
        "frame": np.repeat(truth.frame.to_numpy(), 2),
        "x": np.column_stack([truth.x_a, truth.x_b]).ravel(),
        "y": np.column_stack([truth.y_a, truth.y_b]).ravel(),
        "dumbbell": np.repeat(truth.dumbbell.to_numpy(), 2),
        "column": np.tile([0, 1], n),
        "sigma": np.full(2 * n, float(sigma)),
    }
    atoms = make_atoms(cols, attrs={"source": "simulate_movie"})
    return (
        atoms[_inside(atoms.x, atoms.y, shape, 0.0)].reset_index(drop=True).rename_axis("atom_id")
    )
