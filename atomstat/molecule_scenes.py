"""Simulated STM scenes of n-fold molecules (sumanene on Au(111)) with exact ground truth.

Each molecule is drawn as ``fold`` blobs on a circle of radius ``radius``
around its centre, at an azimuth ``phi`` (the angle of its first blob,
degrees counter-clockwise from +x as displayed, row 0 on top), optionally
with a weaker blob at the centre. The molecules sit on a jittered hexagonal
monolayer with random azimuths, over a weak substrate lattice, and the image
is formed like an STM image (:func:`atomstat.imaging.stm_image`: white and
correlated noise, line offsets, tilt, scars).

A fraction of the molecules switch part-way through the scan. The image is
written row by row from the top, so above a molecule's switching row it has
one state and from that row on another: rotated by 30-90 degrees
(``"rotate"``) or with its blobs pulled in and dimmed, as a bowl inversion
changes the molecule's appearance (``"conform"``). The switching row is drawn
between the blobs of the two states, so every switch shows in the image.

Default sizes are assumptions at the scale of the paper's figure of sumanene on
gold (scale bar 2 nm), at 0.04 nm per pixel: molecules about 1.1 nm apart (27 px), blobs on a
circle of 0.24 nm (6 px; 0.42 nm between the blobs of a molecule), blob
width 0.1 nm (2.4 px) and an Au(111) lattice of 0.288 nm (7.2 px). The paper
gives no sizes; blobs 4.3 widths apart are well inside what the network resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._checks import number
from .gaussians import render
from .imaging import stm_image
from .lattices import _generator, _shape, lattice_points
from .simulate import Stm
from .table import make_atoms

__all__ = ["MoleculeScene", "SWITCH_KINDS", "simulate_molecules"]

SWITCH_KINDS = ("rotate", "conform", "mixed")


@dataclass
class MoleculeScene:
    """A simulated molecule image and its truth.

    Attributes
    ----------
    image : ndarray of shape (H, W), float32
        The STM-like image (arbitrary height units, blob peak about 1).
    molecules : pandas.DataFrame
        One row per molecule (index ``molecule_id``): ``x``, ``y`` (centre,
        px), ``azimuth`` (degrees in [0, 360 / fold): the first state for a
        switching molecule), ``switching`` (bool), ``switch_row`` (first row
        drawn in the second state, -1 for none), ``kind`` ("rotate",
        "conform" or ""), ``azimuth_after`` (NaN unless rotated) and ``edge``
        (a blob of the molecule within 2 widths of the border or outside:
        the molecules that the image shows only in part).
    blobs : pandas.DataFrame
        The visible blobs (centre inside the image) as an atoms table
        (``frame``, ``x``, ``y``...) with ``molecule`` (the id of its
        molecule), ``state`` (0, or 1 for the blobs drawn below a switching
        row) and ``amplitude``.
    clean : ndarray of shape (H, W), float32
        The noise-free image.
    """

    image: np.ndarray
    molecules: pd.DataFrame
    blobs: pd.DataFrame
    clean: np.ndarray


def simulate_molecules(
    shape=(256, 256),
    *,
    fold: int = 3,
    spacing: float = 27.0,
    radius: float = 6.0,
    sigma: float = 2.4,
    centre: float = 0.0,
    switching: float = 0.1,
    switch: str = "mixed",
    jitter: float = 0.5,
    substrate: float = 0.08,
    substrate_spacing: float = 7.2,
    imaging: Stm | None = None,
    rng=None,
) -> MoleculeScene:
    """Simulate an STM image of n-fold molecules, some switching during the scan.

    Parameters
    ----------
    shape : tuple of int
        (H, W) in px, both at least 16.
    fold : int
        Blobs on the circle of each molecule (its rotational symmetry).
    spacing : float
        Distance between neighbouring molecule centres (px).
    radius : float
        Radius of the circle of blobs (px), at most half the smaller side.
    sigma : float
        Gaussian width of a blob (px), at most half the smaller side.
    centre : float
        Amplitude of a blob at each molecule's centre relative to the others
        (0 for none).
    switching : float in [0, 1]
        Fraction of molecules that switch during the scan.
    switch : {"mixed", "rotate", "conform"}
        How they switch; ``"mixed"`` draws one of the two per molecule.
    jitter : float
        Rms displacement of the molecule centres from the lattice (px).
    substrate : float
        Height of the substrate lattice relative to a blob (0 for none).
    substrate_spacing : float
        Substrate lattice spacing (px).
    imaging : Stm, optional
        Noise, tilt and scars; default ``Stm(noise=0.08, scars=3, tilt=1.0)``.
        ``charge`` and ``tip_change`` are not used here.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    MoleculeScene

    Raises
    ------
    ValueError
        Naming the parameter: a shape that is not two integers of at least 16 px; a
        fold below 1; a number that is NaN or infinite; a spacing, sigma or
        substrate_spacing that is not positive; a negative radius, centre, jitter or
        substrate; a radius or sigma above half the smaller side; switching outside
        [0, 1]; an unknown switch; a spacing so small that the lattice would exceed
        ``lattices.MAX_POINTS`` points.
    TypeError
        When ``imaging`` is not an :class:`~atomstat.simulate.Stm`, a number is not a
        number (``fold`` not an integer) or ``rng`` is not None, an int or a Generator.

    Examples
    --------
    >>> scene = simulate_molecules((128, 128), rng=0)
    >>> scene.image.shape, list(scene.molecules.columns[:4])
    ((128, 128), ['x', 'y', 'azimuth', 'switching'])
    >>> inner = scene.molecules.index[~scene.molecules.edge]
    >>> bool((scene.blobs.groupby("molecule").size()[inner] == 3).all())
    True
    """
    rng = _generator(rng)
    shape = _check(
        shape,
        switch,
        fold=fold,
        spacing=spacing,
        radius=radius,
        sigma=sigma,
        centre=centre,
        switching=switching,
        jitter=jitter,
        substrate=substrate,
        substrate_spacing=substrate_spacing,
    )
    imaging = Stm(noise=0.08, scars=3, tilt=1.0) if imaging is None else imaging
    if not isinstance(imaging, Stm):
        raise TypeError(f"imaging must be an Stm instance, got {type(imaging).__name__}")
    molecules = _place_molecules(shape, fold, spacing, radius, sigma, jitter, rng)
    molecules = _draw_switches(molecules, fold, radius, switching, switch, rng)
    clean, blobs = _render_scene(shape, molecules, fold, radius, sigma, centre, rng)
    if substrate > 0:
        turn = rng.uniform(0, 60)
        pts = lattice_points("hexagonal", shape, substrate_spacing, rotation=turn, rng=rng)
        clean += render(pts, shape, substrate, substrate_spacing / 4, substrate_spacing / 4, 0.0)
    image = stm_image(clean, imaging, rng)
    molecules = molecules.drop(columns=["_phi_b", "_scale_b"])
    return MoleculeScene(image.astype(np.float32), molecules, blobs, clean.astype(np.float32))


def _check(shape, switch, **values):
    """Check the arguments of :func:`simulate_molecules`; return the shape as two ints."""
    shape = _shape(shape, 16)
    positive = {"low": 0, "low_open": True}
    within = {"high": min(shape) / 2, "note": " (half the smaller side)"}
    ranges = {
        "fold": {"low": 1, "integer": True},
        "spacing": positive,
        "radius": {"low": 0} | within,
        "sigma": positive | within,
        "centre": {"low": 0},
        "switching": {"low": 0, "high": 1},
        "jitter": {"low": 0},
        "substrate": {"low": 0},
        "substrate_spacing": positive,
    }
    for name, limits in ranges.items():
        number(name, values[name], **limits)
    if not isinstance(switch, str) or switch not in SWITCH_KINDS:
        raise ValueError(f"switch must be one of {SWITCH_KINDS}, got {switch!r}")
    return shape


def _place_molecules(shape, fold, spacing, radius, sigma, jitter, rng):
    """Jittered hexagonal monolayer over the whole image: every molecule with a blob inside."""
    pts = lattice_points("hexagonal", shape, spacing, rotation=rng.uniform(0, 60), rng=rng)
    pts = pts + rng.normal(0, jitter, pts.shape)
    azimuth = rng.uniform(0, 360.0 / fold, len(pts))
    h, w = shape
    keep = np.zeros(len(pts), bool)
    for i, (x, y) in enumerate(pts):
        ring = _ring(x, y, azimuth[i], fold, radius)
        keep[i] = _inside(ring, shape).any()
    pts, azimuth = pts[keep], azimuth[keep]
    n = len(pts)
    return pd.DataFrame(
        {
            "x": pts[:, 0],
            "y": pts[:, 1],
            "azimuth": azimuth,
            "switching": np.zeros(n, bool),
            "switch_row": np.full(n, -1, np.int64),
            "kind": np.full(n, "", object),
            "azimuth_after": np.full(n, np.nan),
            "edge": np.zeros(n, bool),
            "_phi_b": np.full(n, np.nan),
            "_scale_b": np.ones(n),
        },
        index=pd.RangeIndex(n, name="molecule_id"),
    )


def _inside(pts, shape, margin=0.0):
    h, w = shape
    x, y = pts[:, 0], pts[:, 1]
    return (x > margin - 0.5) & (x < w - 0.5 - margin) & (y > margin - 0.5) & (y < h - 0.5 - margin)


def _ring(x, y, phi, fold, radius):
    """Blob centres (fold, 2) of a molecule at azimuth phi (degrees, ccw as displayed)."""
    t = np.deg2rad(phi + 360.0 * np.arange(fold) / fold)
    return np.column_stack([x + radius * np.cos(t), y - radius * np.sin(t)])


def _draw_switches(molecules, fold, radius, switching, switch, rng):
    """Pick the switching molecules, their second state and a row that shows the switch."""
    n = len(molecules)
    chosen = rng.choice(n, size=int(round(switching * n)), replace=False) if n else []
    period = 360.0 / fold
    for i in chosen:
        row = molecules.iloc[i]
        kind = switch if switch != "mixed" else ("rotate", "conform")[rng.integers(2)]
        phi_b, scale_b = row.azimuth, 1.0
        if kind == "rotate":
            step = rng.uniform(0.25, 0.75) * period * rng.choice([-1, 1])
            phi_b = (row.azimuth + step) % period
        else:
            scale_b = 0.6
        ya = _ring(row.x, row.y, row.azimuth, fold, radius)[:, 1]
        yb = _ring(row.x, row.y, phi_b, fold, scale_b * radius)[:, 1]
        lo = max(ya.min(), yb.min()) + 0.5  # some blob of each state on either side
        hi = min(ya.max(), yb.max()) - 0.5
        if hi <= lo:  # degenerate (one blob per state): switch at the centre
            lo = hi = row.y
        cols = ["switching", "switch_row", "kind", "_phi_b", "_scale_b"]
        molecules.loc[i, cols] = [True, int(np.ceil(rng.uniform(lo, hi))), kind, phi_b, scale_b]
        if kind == "rotate":
            molecules.loc[i, "azimuth_after"] = phi_b
    molecules["switch_row"] = molecules["switch_row"].astype(np.int64)
    molecules["switching"] = molecules["switching"].astype(bool)
    return molecules


def _states(row, fold, radius, centre):
    """Blob centres and amplitudes of the first and second state of one molecule."""
    out = []
    for phi, scale, amp in ((row.azimuth, 1.0, 1.0), (row._phi_b, row._scale_b, 1.0)):
        if np.isnan(phi):
            break
        pts = _ring(row.x, row.y, phi, fold, scale * radius)
        amps = np.full(fold, amp * (0.7 if scale < 1 else 1.0))
        if centre > 0:
            pts = np.vstack([pts, [[row.x, row.y]]])
            amps = np.append(amps, centre)
        out.append((pts, amps))
    return out


def _render_scene(shape, molecules, fold, radius, sigma, centre, rng):
    """Clean image, rendered molecule by molecule; each switching one split at its row."""
    h, w = shape
    clean = np.zeros(shape)
    rows = []
    half = int(np.ceil(radius + 4 * sigma)) + 1
    edge = np.zeros(len(molecules), bool)
    for k, (mid, row) in enumerate(molecules.iterrows()):
        x0, y0 = round(row.x) - half, round(row.y) - half
        xa, ya, xb, yb = (
            max(x0, 0),
            max(y0, 0),
            min(x0 + 2 * half + 1, w),
            min(y0 + 2 * half + 1, h),
        )
        split = row.switch_row if row.switching else h
        for s, (pts, amps) in enumerate(_states(row, fold, radius, centre)):
            edge[k] |= not _inside(pts, shape, 2 * sigma).all()
            amps = amps * rng.uniform(0.9, 1.1, len(amps))
            patch = render(pts - [x0, y0], (2 * half + 1,) * 2, amps, sigma, sigma, 0.0)
            rr = np.arange(ya, yb)
            drawn = (rr < split) if s == 0 else (rr >= split)
            clean[ya:yb, xa:xb] += patch[ya - y0 : yb - y0, xa - x0 : xb - x0] * drawn[:, None]
            seen = (np.round(pts[:, 1]) < split) if s == 0 else (np.round(pts[:, 1]) >= split)
            seen &= _inside(pts, shape)
            rows += [(p[0], p[1], mid, s, a) for p, a, v in zip(pts, amps, seen, strict=True) if v]
    molecules["edge"] = edge
    x, y, mol, state, amp = (np.array(c) for c in zip(*rows, strict=True)) if rows else [[]] * 5
    columns = {"x": x, "y": y, "molecule": np.asarray(mol, np.int64)}
    columns |= {"state": np.asarray(state, np.int64), "amplitude": np.asarray(amp, float)}
    blobs = make_atoms(columns)
    blobs.attrs["source"] = "simulate_molecules"
    return clean, blobs
