"""Simulated atomically resolved images with exact ground truth.

Lattices have no hard periodic constraint: any of the kinds in
:data:`LATTICES`, rotated, strained, with vacancies, substitutional dopants
(Z contrast, intensity about Z**1.7), adatoms, interfaces, holes and
amorphous patches. Imaging is STEM HAADF (probe blur, Poisson noise at a dose,
scan-line jitter, drift distortion) or STM-like (broad blobs, charge
modulation, line scars, tilt, tip changes).

Every function takes ``rng`` (None, int or Generator). The ground truth comes
back as an atoms table in the same schema that :func:`atomstat.locate`
produces, so tests read "find these known things".
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from . import artefacts as _art
from ._checks import number
from .artefacts import Artefacts, random_artefacts
from .gaussians import render
from .imaging import render_truth, stem_image, stm_clean, stm_image, target_mask
from .lattices import (
    LATTICES,
    _generator,
    _poisson_disc,
    _rot,
    _shape,
    lattice_points,
)
from .table import make_atoms

__all__ = [
    "LATTICES",
    "Artefacts",
    "Defects",
    "Regions",
    "Simulation",
    "Stem",
    "Stm",
    "lattice_points",
    "random_scene",
    "real_scene",
    "render",
    "simulate_lattice",
]


SPECIES = ("host", "dopant", "adatom", "host2")

# Ranges of the settings' fields (keyword arguments of ``lattices._number``).
_FRACTION = {"low": 0, "high": 1}
_NONNEGATIVE = {"low": 0}
_COUNT = {"low": 0, "integer": True}
#: Intensity ratios (to the host column), the dose and the background are bounded so that
#: the Poisson draw stays far inside what numpy can draw.
_RATIO = {"low": 0, "high": 1e3, "low_open": True}
_DOSE = {"low": 0, "high": 1e9, "low_open": True}
_WIDTH = {"low": 0, "high": 5, "low_open": True}


def _check_fields(settings, **ranges):
    """Check the numeric fields of a settings dataclass; a field whose default is None may
    also be None.

    Raises
    ------
    TypeError, ValueError
        Naming the class and the field, e.g. ``Stem.dose must be a finite number in
        (0, 1e+09], got 0``.
    """
    optional = {f.name for f in fields(settings) if f.default is None}
    for name, limits in ranges.items():
        value = getattr(settings, name)
        if not (value is None and name in optional):
            number(f"{type(settings).__name__}.{name}", value, **limits)


@dataclass
class Simulation:
    """A simulated image and its truth.

    Attributes
    ----------
    image : ndarray of shape (H, W), float32
        The noisy image in counts (STEM) or arbitrary height units (STM).
    atoms : pandas.DataFrame
        Truth, one row per atom whose centre lies inside the image: ``x``,
        ``y``, ``species``, ``amplitude``, ``sigma`` (mean width, px),
        ``sigma_x``, ``sigma_y``, ``theta`` (degrees).
    mask : ndarray of shape (H, W), uint8
        Training target: 1 where a pixel belongs to an atom's blob. Blob size
        follows the atom's brightness relative to the typical atom, and
        touching blobs are kept one pixel apart.
    clean : ndarray of shape (H, W), float32
        The noise-free image (with the optics' artefacts and the overlay).
    overlay : ndarray of shape (H, W), float32, or None
        What :class:`Artefacts` put on the sample (contamination, clusters), in
        host-column peaks; None without them.
    """

    image: np.ndarray
    atoms: pd.DataFrame
    mask: np.ndarray
    clean: np.ndarray
    overlay: np.ndarray | None = None


# --------------------------------------------------------------------------- scene
@dataclass
class Defects:
    """Defect settings of a simulated lattice (fractions are of lattice sites).

    ``dopant_ratio`` is the dopant/host intensity ratio (about (Z_d/Z_h)**1.7);
    None draws 0.45-0.7 (lighter) or 1.4-2.0 (heavier) per image.
    ``dopant_width`` scales the dopant blob width. Adatoms sit off the lattice
    sites, dim (``adatom_ratio``) and broad (``adatom_width``).
    ``strain`` is the amplitude of a smooth displacement field, as a fraction
    of the spacing; ``jitter`` the per-atom random displacement in px.

    Raises
    ------
    ValueError
        Unless ``vacancies``, ``dopants``, ``adatoms`` and ``strain`` are in [0, 1], the
        ratios in (0, 1000] (``dopant_ratio`` may be None), the widths in (0, 5] and
        ``jitter`` a finite number >= 0.
    TypeError
        When a field is not a number.
    """

    vacancies: float = 0.02
    dopants: float = 0.02
    dopant_ratio: float | None = None
    dopant_width: float = 1.0
    adatoms: float = 0.0
    adatom_ratio: float = 0.45
    adatom_width: float = 1.6
    strain: float = 0.0
    jitter: float = 0.3

    def __post_init__(self):
        _check_fields(
            self,
            vacancies=_FRACTION,
            dopants=_FRACTION,
            dopant_ratio=_RATIO,
            dopant_width=_WIDTH,
            adatoms=_FRACTION,
            adatom_ratio=_RATIO,
            adatom_width=_WIDTH,
            strain=_FRACTION,
            jitter=_NONNEGATIVE,
        )


@dataclass
class Stem:
    """HAADF-STEM imaging: host peak = ``dose`` counts, Poisson noise.

    ``background`` is a fraction of the host peak; ``blur`` an extra probe
    blur (px); ``scan_jitter`` the rms row shift (px); ``drift`` the size of a
    linear drift distortion (shear and stretch, as fractions).

    Raises
    ------
    ValueError
        Unless ``dose`` is in (0, 1e9], ``background`` in [0, 1000], ``drift`` in
        [0, 1] and ``blur`` and ``scan_jitter`` finite numbers >= 0 (at most half the
        image's smaller side, checked by :func:`simulate_lattice`).
    TypeError
        When a field is not a number.
    """

    dose: float = 100.0
    background: float = 0.15
    blur: float = 0.0
    scan_jitter: float = 0.0
    drift: float = 0.0

    def __post_init__(self):
        _check_fields(
            self,
            dose=_DOSE,
            background={"low": 0, "high": 1e3},
            blur=_NONNEGATIVE,
            scan_jitter=_NONNEGATIVE,
            drift=_FRACTION,
        )


@dataclass
class Stm:
    """STM-like imaging: broad blobs on a tilted, noisy, scarred surface.

    ``noise`` is the rms white noise relative to the host height;
    ``charge`` the amplitude of a smooth charge-density modulation; ``scars``
    the number of streaks; ``tilt`` the plane slope over the image relative
    to the host height; ``tip_change`` the row fraction after which the tip
    is blunter (None for no change).

    Raises
    ------
    ValueError
        Unless ``noise`` and ``tilt`` are finite numbers >= 0, ``charge`` is in [0, 1]
        (heights stay positive), ``scars`` an integer >= 0 and ``tip_change`` None or in
        [0, 1].
    TypeError
        When a field is not a number (``scars`` not an integer).
    """

    noise: float = 0.1
    charge: float = 0.2
    scars: int = 4
    tilt: float = 1.0
    tip_change: float | None = None

    def __post_init__(self):
        _check_fields(
            self,
            noise=_NONNEGATIVE,
            charge=_FRACTION,
            scars=_COUNT,
            tilt=_NONNEGATIVE,
            tip_change=_FRACTION,
        )


@dataclass
class Regions:
    """Non-lattice regions: a second phase across a straight interface,
    vacuum holes or an edge, and amorphous patches.

    ``interface`` is the lattice kind of the second phase (one of :data:`LATTICES`, None
    for none); ``holes`` and ``amorphous`` are numbers of patches; ``edge`` cuts the
    sample along a random line.

    Raises
    ------
    ValueError
        When ``interface`` is not None or a lattice kind, or a count is negative.
    TypeError
        When a count is not an integer or ``edge`` is not a bool.
    """

    interface: str | None = None
    holes: int = 0
    edge: bool = False
    amorphous: int = 0

    def __post_init__(self):
        if self.interface is not None and (
            not isinstance(self.interface, str) or self.interface not in LATTICES
        ):
            raise ValueError(
                f"Regions.interface must be None or a lattice kind {LATTICES}, "
                f"got {self.interface!r}"
            )
        if not isinstance(self.edge, bool | np.bool_):
            raise TypeError(f"Regions.edge must be True or False, got {self.edge!r}")
        _check_fields(self, holes=_COUNT, amorphous=_COUNT)


def simulate_lattice(
    kind="square",
    *,
    shape=(256, 256),
    spacing=16.0,
    sigma=2.0,
    rotation=None,
    ellipticity=0.0,
    sublattice_ratio=1.0,
    defects=None,
    imaging=None,
    regions=None,
    artefacts=None,
    rng=None,
) -> Simulation:
    """Simulate an atomically resolved image with its exact ground truth.

    Parameters
    ----------
    kind : str
        Lattice kind, one of :data:`LATTICES`.
    shape : tuple of int
        (H, W) in px, both at least 8.
    spacing : float
        Nearest-neighbour distance (px); for ``dumbbell`` the separation of
        the two columns of a dumbbell.
    sigma : float
        Gaussian width of a host column (px), at most half the smaller side.
    rotation : float, optional
        Lattice rotation in degrees; random when None.
    ellipticity : float
        Column ellipticity in (-1, 1): sigma_x = sigma * (1 + e),
        sigma_y = sigma / (1 + e).
    sublattice_ratio : float
        Intensity of the second basis site relative to the first, for lattices
        with two sites (honeycomb, centred rectangular, dumbbell): about
        (Z2/Z1)**1.7, e.g. 0.38 for the S2 and Mo columns of MoS2.
    defects : Defects, optional
    imaging : Stem or Stm, optional
        Default ``Stem()``.
    regions : Regions, optional
    artefacts : Artefacts, optional
        What real microscopes add (contamination, clusters, probe tails, tilt
        smear, scan wobble, line noise, JPEG, a scale bar); none by default.
        Atoms hidden under contamination, clusters or the scale bar stay in
        ``atoms`` but leave the mask.
    rng : None, int or numpy.random.Generator

    Returns
    -------
    Simulation

    Raises
    ------
    ValueError
        Naming the parameter: an unknown kind; a shape that is not two integers of at
        least 8 px; a spacing that is not finite and positive (or so small that the
        lattice would exceed ``lattices.MAX_POINTS`` points); a sigma outside
        (0, min(shape) / 2]; a rotation that is not finite; an ellipticity outside
        (-1, 1); a sublattice_ratio outside (0, 1000]; columns (sigma times the
        ellipticity and the dopant or adatom widths) or a STEM blur or scan jitter wider
        than half the smaller side; a ``Defects.jitter`` above the spacing.
    TypeError
        When ``defects``, ``imaging`` or ``regions`` is not a :class:`Defects`,
        :class:`Stem` or :class:`Stm`, :class:`Regions` (or None), a number is not a
        number, or ``rng`` is not None, an int or a Generator.

    Examples
    --------
    >>> sim = simulate_lattice("hexagonal", shape=(128, 128), spacing=14, rng=1)
    >>> sim.image.shape, sim.image.dtype.name
    ((128, 128), 'float32')
    >>> bool(len(sim.atoms) > 50)
    True
    """
    rng = _generator(rng)
    if not isinstance(kind, str) or kind not in LATTICES:
        raise ValueError(f"unknown lattice kind {kind!r}; choose from {LATTICES}")
    shape = _shape(shape, 8)
    half = min(shape) / 2
    number("spacing", spacing, low=0, low_open=True)
    number("sigma", sigma, low=0, high=half, low_open=True, note=" (half the smaller side)")
    if rotation is not None:
        number("rotation", rotation)
    number("ellipticity", ellipticity, low=-1, high=1, low_open=True, high_open=True)
    number("sublattice_ratio", sublattice_ratio, **_RATIO)
    defects = _settings("defects", defects, Defects)
    imaging = _settings("imaging", imaging, Stem | Stm, Stem)
    regions = _settings("regions", regions, Regions)
    art = _settings("artefacts", artefacts, Artefacts)
    _check_scene(half, spacing, sigma, ellipticity, defects, imaging)
    rotation = rng.uniform(0, 180) if rotation is None else rotation
    truth = _place_atoms(
        kind, shape, spacing, sigma, rotation, ellipticity, sublattice_ratio, defects, regions, rng
    )
    truth = _art.wobble(truth, shape, art, rng)
    if isinstance(imaging, Stem):
        truth = _drift_distort(truth, shape, imaging.drift, rng)
        clean, peak, who = render_truth(truth, shape)
        mask = target_mask(truth, peak, who)
    else:
        clean, mask = stm_clean(truth, shape, imaging, rng)
    clean = _art.optics(clean, sigma, art, rng)
    extra = None
    if art.contamination or art.clusters:
        extra = _art.overlay(shape, spacing, sigma, art, rng)
        clean, mask = clean + extra, _art.hide(mask, extra)
    if isinstance(imaging, Stem):
        image, unit = stem_image(clean, imaging, rng), imaging.dose
    else:
        image, unit = stm_image(clean, imaging, rng), 1.0
    image, covered = _art.scan_and_file(image, unit, art, rng)
    mask = np.where(covered, 0, mask)
    inside = (truth.x > -0.5) & (truth.x < shape[1] - 0.5) & (truth.y > -0.5)
    inside &= truth.y < shape[0] - 0.5
    atoms = make_atoms({c: truth[c].to_numpy() for c in truth.columns if c != "id"})
    atoms = atoms[inside.to_numpy()].reset_index(drop=True).rename_axis("atom_id")
    atoms.attrs.update({"pixel_size": 1.0, "units": "px", "source": f"simulate_lattice({kind})"})
    atoms.attrs["scene"] = {
        "kind": kind,
        "spacing": float(spacing),
        "sigma": float(sigma),
        "sublattice_ratio": float(sublattice_ratio),
        "imaging": dict(vars(imaging), mode="stem" if isinstance(imaging, Stem) else "stm"),
        "artefacts": dict(vars(art)),
    }
    return Simulation(
        image.astype(np.float32),
        atoms,
        mask.astype(np.uint8),
        clean.astype(np.float32),
        None if extra is None else extra.astype(np.float32),
    )


def _settings(name, value, kind, default=None):
    """``value``, or a default ``kind()`` for None; TypeError naming the class otherwise."""
    if value is None:
        return (default or kind)()
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in getattr(kind, "__args__", (kind,)))
        raise TypeError(f"{name} must be a {names} instance or None, got {type(value).__name__}")
    return value


def _check_scene(half, spacing, sigma, ellipticity, defects, imaging):
    """Refuse blobs and blurs wider than half the image (the render windows and filters
    grow with them: a sigma of 1e4 px asks for tens of GB) and a jitter above the spacing
    (it scatters the atoms out of the image)."""
    number("Defects.jitter", defects.jitter, low=0, high=spacing, note=" (the spacing)")
    widths = [1.0]
    widths += [defects.dopant_width] if defects.dopants > 0 else []
    widths += [defects.adatom_width] if defects.adatoms > 0 else []
    e = 1.0 + ellipticity
    widest = sigma * max(e, 1 / e) * max(widths)
    if widest > half:
        raise ValueError(
            f"the widest column would be {widest:g} px (sigma {sigma:g} times the ellipticity "
            f"{ellipticity:g} and the dopant or adatom width): at most half the smaller side, "
            f"{half:g} px"
        )
    if isinstance(imaging, Stem):
        for name in ("blur", "scan_jitter"):
            number(
                f"Stem.{name}",
                getattr(imaging, name),
                low=0,
                high=half,
                note=" (half the smaller side)",
            )


def _place_atoms(kind, shape, spacing, sigma, rotation, ellipticity, ratio, defects, regions, rng):
    pts, site = lattice_points(kind, shape, spacing, rotation=rotation, rng=rng, sites=True)
    n = len(pts)
    species = np.full(n, "host", dtype=object)
    amp = np.where(site > 0, float(ratio), 1.0)
    width = np.full(n, float(sigma))
    if regions.interface:
        pts, species, amp, width = _add_phase(
            pts, species, amp, width, shape, spacing, sigma, regions.interface, rng
        )
        n = len(pts)
    pts = pts + _strain_field(pts, shape, defects.strain * spacing, rng)
    pts = pts + rng.normal(0, defects.jitter, pts.shape)
    keep = rng.random(n) >= defects.vacancies
    dop = (rng.random(n) < defects.dopants) & (species == "host")
    ratio = defects.dopant_ratio
    if ratio is None:
        ratio = rng.uniform(0.45, 0.7) if rng.random() < 0.6 else rng.uniform(1.4, 2.0)
    species[dop] = "dopant"
    amp[dop] *= ratio
    width[dop] *= defects.dopant_width
    pts, species, amp, width = pts[keep], species[keep], amp[keep], width[keep]
    pts, species, amp, width = _apply_regions(
        pts, species, amp, width, shape, spacing, sigma, regions, rng
    )
    n_ad = rng.binomial(max(len(pts), 1), defects.adatoms) if defects.adatoms > 0 else 0
    if n_ad:
        ad = _off_site(pts, n_ad, shape, spacing, rng)
        pts = np.concatenate([pts, ad])
        species = np.concatenate([species, np.full(len(ad), "adatom", dtype=object)])
        amp = np.concatenate([amp, np.full(len(ad), defects.adatom_ratio)])
        width = np.concatenate([width, np.full(len(ad), sigma * defects.adatom_width)])
    e = 1.0 + ellipticity
    theta = rng.uniform(0, 180) + rng.normal(0, 3, len(pts))
    return pd.DataFrame(
        {
            "x": pts[:, 0],
            "y": pts[:, 1],
            "species": pd.Categorical(species, categories=SPECIES),
            "amplitude": amp,
            "sigma": width,
            "sigma_x": width * e,
            "sigma_y": width / e,
            "theta": theta % 180,
        }
    )


def _strain_field(pts, shape, amplitude, rng):
    if amplitude <= 0:
        return np.zeros_like(pts)
    out = np.zeros_like(pts)
    for _ in range(3):
        k = rng.normal(0, 1, 2) * 2 * np.pi / max(shape) * rng.uniform(0.5, 2.0)
        phase = rng.uniform(0, 2 * np.pi)
        direction = rng.normal(0, 1, 2)
        direction /= np.linalg.norm(direction)
        out += amplitude / 3 * np.sin(pts @ k + phase)[:, None] * direction
    return out


def _add_phase(pts, species, amp, width, shape, spacing, sigma, kind2, rng):
    """Replace the lattice on one side of a random line by another phase."""
    h, w = shape
    normal = _rot(rng.uniform(0, 180))[:, 0]
    centre = np.array([w, h]) * rng.uniform(0.35, 0.65, 2)
    side_a = (pts - centre) @ normal < 0
    spacing2 = spacing * rng.uniform(0.85, 1.3)
    pts2 = lattice_points(kind2, shape, spacing2, rotation=rng.uniform(0, 180), rng=rng)
    pts2 = pts2[(pts2 - centre) @ normal >= 0]
    from scipy.spatial import cKDTree

    a = pts[side_a]
    if len(a) and len(pts2):
        d, _ = cKDTree(a).query(pts2)
        pts2 = pts2[d > 0.8 * min(spacing, spacing2)]
    n2 = len(pts2)
    amp2 = rng.uniform(0.6, 1.6)
    return (
        np.concatenate([a, pts2]),
        np.concatenate([species[side_a], np.full(n2, "host2", dtype=object)]),
        np.concatenate([amp[side_a], np.full(n2, amp2)]),
        np.concatenate([width[side_a], np.full(n2, sigma * rng.uniform(0.85, 1.2))]),
    )


def _apply_regions(pts, species, amp, width, shape, spacing, sigma, regions, rng):
    h, w = shape
    keep = np.ones(len(pts), bool)
    for _ in range(regions.holes):
        c = rng.uniform([0, 0], [w, h])
        r = rng.uniform(1.5, 4) * spacing
        keep &= np.hypot(*(pts - c).T) > r
    if regions.edge:
        normal = _rot(rng.uniform(0, 360))[:, 0]
        keep &= (pts - np.array([w, h]) * rng.uniform(0.3, 0.7, 2)) @ normal < 0
    pts, species, amp, width = pts[keep], species[keep], amp[keep], width[keep]
    for _ in range(regions.amorphous):
        c = rng.uniform([0, 0], [w, h])
        r = rng.uniform(2, 4) * spacing
        inside = np.hypot(*(pts - c).T) < r
        patch = _poisson_disc((2 * r, 2 * r), 0.9 * spacing, rng) + c - r
        patch = patch[np.hypot(*(patch - c).T) < r - 0.5 * spacing]
        pts = np.concatenate([pts[~inside], patch])
        species = np.concatenate([species[~inside], np.full(len(patch), "host", dtype=object)])
        amp = np.concatenate([amp[~inside], rng.uniform(0.7, 1.2, len(patch))])
        width = np.concatenate([width[~inside], np.full(len(patch), float(sigma))])
    return pts, species, amp, width


def _off_site(pts, n, shape, spacing, rng):
    """Adatom positions at least 0.45 spacing from every lattice atom."""
    from scipy.spatial import cKDTree

    tree = cKDTree(pts) if len(pts) else None
    cand = rng.uniform([0, 0], [shape[1], shape[0]], (n * 30, 2))
    if tree is not None:
        d, _ = tree.query(cand)
        cand = cand[d > 0.45 * spacing]
    return cand[:n]


def _drift_distort(truth, shape, drift, rng):
    if drift <= 0:
        return truth
    shear, stretch = rng.normal(0, drift, 2)
    h = shape[0]
    truth = truth.copy()
    truth["x"] = truth.x + shear * (truth.y - h / 2)
    truth["y"] = truth.y + stretch * (truth.y - h / 2)
    return truth


def random_scene(
    rng=None,
    shape=(128, 128),
    *,
    mode=None,
    sigma=(1.3, 3.4),
    dose=(8.0, 400.0),
    stm_spacing=(3.3, 5.9),
    real=0.0,
) -> Simulation:
    """Draw one training or test scene with random lattice, defects and imaging.

    The scenes cover every lattice kind, interfaces, holes, edges, amorphous
    patches, STEM doses from 8 to 400 counts and STM-like imaging, with atom
    widths in ``sigma`` (px) and spacings of 4 to 14 widths (2.4 to 5 for the
    columns of a dumbbell).

    Parameters
    ----------
    rng : None, int or numpy.random.Generator
    shape : tuple of int
    mode : {None, "stem", "stm"}
        Imaging mode; None draws STEM with probability 0.75.
    sigma : tuple of float
        Range of host column widths (px).
    dose : tuple of float
        Range of STEM doses (host peak counts), drawn log-uniformly.
    stm_spacing : tuple of float
        Range of STM lattice spacings in atom widths (the inverse is drawn
        uniformly, so dense lattices are favoured).
    real : float in [0, 1]
        Fraction of scenes made to look like real frames (:func:`real_scene`):
        microscope artefacts, weak sublattices and very low dose light-element
        lattices. At 0 (default) the scenes, and the draws from ``rng``, are
        those of earlier versions, so held-out sets stay the same.

    Returns
    -------
    Simulation

    Examples
    --------
    >>> sim = random_scene(3, shape=(64, 64))
    >>> sim.mask.shape
    (64, 64)
    """
    if not 0 < stm_spacing[0] <= stm_spacing[1]:
        raise ValueError(f"stm_spacing must be (low, high) in atom widths, got {stm_spacing!r}")
    rng = _generator(rng)
    number("real", real, low=0, high=1, note=" (a fraction)")
    mode = mode or ("stem" if rng.random() < 0.75 else "stm")
    if mode not in ("stem", "stm"):
        raise ValueError(f"mode must be 'stem' or 'stm', got {mode!r}")
    if real > 0 and rng.random() < real:
        return real_scene(rng, shape, mode=mode, sigma=sigma, stm_spacing=stm_spacing)
    kind = LATTICES[rng.integers(len(LATTICES))]
    s = float(np.exp(rng.uniform(np.log(sigma[0]), np.log(sigma[1]))))
    if kind == "dumbbell":
        spacing = s * rng.uniform(2.4, 5.0)
    elif mode == "stm":
        spacing = s / rng.uniform(1 / stm_spacing[1], 1 / stm_spacing[0])
    else:
        spacing = s * float(np.exp(rng.uniform(np.log(4.0), np.log(14.0))))
    defects = Defects(
        vacancies=rng.uniform(0, 0.05),
        dopants=rng.uniform(0, 0.05),
        dopant_width=rng.uniform(0.8, 1.05),
        adatoms=rng.uniform(0, 0.02) * (rng.random() < 0.5),
        strain=rng.uniform(0, 0.05) * (rng.random() < 0.3),
        jitter=rng.uniform(0, 0.5),
    )
    regions = Regions(
        interface=LATTICES[rng.integers(6)] if rng.random() < 0.15 else None,
        holes=int(rng.random() < 0.12),
        edge=bool(rng.random() < 0.08),
        amorphous=int(rng.random() < 0.1),
    )
    if mode == "stem":
        imaging = Stem(
            dose=float(np.exp(rng.uniform(np.log(dose[0]), np.log(dose[1])))),
            background=rng.uniform(0, 0.4),
            blur=rng.uniform(0, 1.0) * (rng.random() < 0.5),
            scan_jitter=rng.uniform(0, 0.3) * (rng.random() < 0.3),
            drift=rng.uniform(0, 0.03) * (rng.random() < 0.3),
        )
    else:
        imaging = Stm(
            noise=rng.uniform(0.03, 0.3),
            charge=rng.uniform(0, 0.4),
            scars=int(rng.integers(0, 9)),
            tilt=rng.uniform(0, 3),
            tip_change=rng.uniform(0.2, 0.8) if rng.random() < 0.3 else None,
        )
    return simulate_lattice(
        kind,
        shape=shape,
        spacing=spacing,
        sigma=s,
        ellipticity=rng.uniform(0, 0.25),
        defects=defects,
        imaging=imaging,
        regions=regions,
        rng=rng,
    )


#: Lattices with a second basis site that can be made a weak sublattice.
_TWO_SITE = ("honeycomb", "centered_rectangular", "dumbbell")


def real_scene(
    rng=None, shape=(128, 128), *, mode="stem", sigma=(1.3, 3.4), stm_spacing=(3.3, 5.9)
):
    """A scene that looks like a real frame: artefacts, weak sublattices, very low dose.

    A random scene (:func:`random_scene`'s lattices and imaging) with
    :func:`atomstat.artefacts.random_artefacts`; in a third of the STEM scenes a
    two-site lattice whose second site is weak (0.1-0.5 of the first: S2 in MoS2,
    B sites, O columns); in a fifth a light-element honeycomb (graphene) at 1-5
    counts per host peak on a bright background.

    Examples
    --------
    >>> sim = real_scene(3, shape=(96, 96))
    >>> sim.image.shape, sim.mask.dtype.name
    ((96, 96), 'uint8')
    """
    rng = _generator(rng)
    s = float(np.exp(rng.uniform(np.log(sigma[0]), np.log(sigma[1]))))
    kind, ratio, dose = LATTICES[rng.integers(len(LATTICES))], 1.0, None
    if mode == "stem" and rng.random() < 0.2:  # graphene at a few counts per atom
        kind, dose = "honeycomb", float(rng.uniform(1, 5))
    elif mode == "stem" and rng.random() < 0.35:
        kind, ratio = _TWO_SITE[rng.integers(len(_TWO_SITE))], float(rng.uniform(0.1, 0.5))
    if kind == "dumbbell":
        spacing = s * rng.uniform(2.4, 5.0)
    elif mode == "stm":
        spacing = s / rng.uniform(1 / stm_spacing[1], 1 / stm_spacing[0])
    else:
        spacing = s * float(np.exp(rng.uniform(np.log(4.0), np.log(12.0))))
    if mode == "stem":
        imaging = Stem(
            dose=dose or float(np.exp(rng.uniform(np.log(3), np.log(300)))),
            background=rng.uniform(0.3, 1.5) if dose else rng.uniform(0, 0.4),
            blur=rng.uniform(0, 1.0) * (rng.random() < 0.5),
            drift=rng.uniform(0, 0.03) * (rng.random() < 0.3),
        )
    else:
        imaging = Stm(
            noise=rng.uniform(0.03, 0.3),
            charge=rng.uniform(0, 0.4),
            scars=int(rng.integers(0, 12)),
            tilt=rng.uniform(0, 3),
            tip_change=rng.uniform(0.2, 0.8) if rng.random() < 0.3 else None,
        )
    return simulate_lattice(
        kind,
        shape=shape,
        spacing=spacing,
        sigma=s,
        ellipticity=rng.uniform(0, 0.25),
        sublattice_ratio=ratio,
        defects=Defects(vacancies=rng.uniform(0, 0.05), dopants=rng.uniform(0, 0.04)),
        imaging=imaging,
        artefacts=random_artefacts(rng, mode),
        rng=rng,
    )
