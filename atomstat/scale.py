"""Estimate the scale of an image: the lattice's own period and the width of its atoms.

Two independent readings are taken and checked against each other:

- the **lattice period**, from the strongest pair of non-collinear peaks of the
  power spectrum (:func:`lattice_period`): it needs a resolved 2-D lattice, and
  ignores what is not periodic (contamination, clusters, a few adsorbates);
- the **blob width**, from the central lobe of the autocorrelation
  (:func:`estimate_sigma`): it needs no lattice, but every bright feature adds to it.

:func:`estimate_scale` combines them into the atom width the network is run at, and
says in plain words what it did whenever the two disagree, no lattice is resolved or
an estimate fails, so a wrong scale never passes silently.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize

__all__ = [
    "Lattice",
    "Scale",
    "clip_bright",
    "estimate_scale",
    "estimate_sigma",
    "lattice_period",
]

_MAX_SIDE = 512  # enough periods for spacings up to about 60 px
_FFT_SIDE = 1024  # the lattice period is read on at most this centre crop
#: The streaks that scan lines and JPEG blocks leave along the axes of the power
#: spectrum: a wedge of this slope (6 degrees) either side of each axis is left out.
_STREAK = 0.105
#: A peak stands at least this many times above its neighbours 6 px away (streaks: 1-2).
_ISOLATION = 4.0
#: ... and holds at least this share of the power (junk near Nyquist holds far less;
#: the faintest real lattice here, graphene at a few counts per atom, 6e-4).
_SHARE = 2e-4
#: Fourier peaks considered for the lattice pair (streaks can hold hundreds of maxima).
_CANDIDATES = 1000
_SMOOTH = 0.7
#: A power-spectrum peak is significant when it stands this many times above the
#: median of its ring (measured: Poisson, correlated and line noise reach 4-9 once
#: streaks are left out; the faintest real lattice here, graphene at a few counts per
#: atom, has its two peaks at 16 and 10.5).
PEAK_RATIO = 10.0
#: Period / atom width that the blob estimate must lie within to be believed
#: (the training scenes hold nearest-neighbour spacings of 3.3-14 widths, and the
#: cells of dumbbell lattices up to about 20; real lattices here read 3.3-7.7).
RATIO_RANGE = (2.5, 24.0)
#: Period / width used when only the period can be trusted (the median of the
#: real lattices measured).
PERIOD_PER_SIGMA = 5.0
#: Widths (px) the blob estimate is believed without a lattice to confirm it: a
#: narrower one is pixel noise (JPEG blocks, scan lines), and would make the image be
#: upsampled many times for nothing; a wider one cannot be resampled 16x to the
#: network's scale. Widths from the lattice period are kept within it too.
BLOB_RANGE = (0.7, 35.0)
#: The width used when nothing can be measured: the network's own scale (no resampling).
FALLBACK_SIGMA = 2.2


@dataclass
class Lattice:
    """The two strongest non-collinear periodicities of an image.

    ``periods`` (px) and ``angles`` (degrees) are those of the two Fourier
    peaks (a period is the spacing of the lattice planes); ``cell_area`` (px^2)
    is the area of the cell they span; ``strength`` the smaller of the two
    peaks' heights over their background.
    """

    periods: tuple
    angles: tuple
    cell_area: float
    strength: float

    @property
    def period(self) -> float:
        """The larger of the two plane spacings (px)."""
        return float(max(self.periods))


@dataclass
class Scale:
    """The atom width to use, with the readings it came from and what was doubtful.

    ``sigma`` (px) is always a finite width that :func:`atomstat.segment` takes;
    ``source`` says where it came from (``"blob"``, ``"lattice"``, ``"fallback"``
    or ``"user"``); ``blob_sigma`` is the autocorrelation estimate (may be NaN);
    ``lattice`` the Fourier reading (None when no lattice is resolved);
    ``warnings`` plain sentences, empty when both readings agree.
    """

    sigma: float
    source: str
    blob_sigma: float
    lattice: Lattice | None
    warnings: list = field(default_factory=list)

    @property
    def period(self) -> float:
        """The lattice period (px), NaN when no lattice is resolved."""
        return self.lattice.period if self.lattice is not None else float("nan")


def estimate_scale(image: np.ndarray) -> Scale:
    """Atom width (px) for an image, checked against the lattice period.

    Both are read after :func:`clip_bright`, so that a bright patch does not set
    them. The blob estimate is used when a lattice confirms it (period / width within
    :data:`RATIO_RANGE`), and kept with a warning when it is narrower than the
    lattice suggests (the lattice read may be a superstructure). When it is NaN,
    wider than the lattice allows (clusters, contamination) or below
    :data:`BLOB_RANGE`, the width is the period over :data:`PERIOD_PER_SIGMA`. With no
    lattice resolved, the blob estimate is used only within :data:`BLOB_RANGE`; else the
    network's own
    scale (:data:`FALLBACK_SIGMA`, no resampling). Every such case adds a warning
    that says what to pass instead (``sigma=``).

    Parameters
    ----------
    image : ndarray of shape (H, W)

    Returns
    -------
    Scale

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("square", shape=(256, 256), spacing=20, sigma=3.0, rng=0)
    >>> scale = estimate_scale(sim.image)
    >>> 2.5 < scale.sigma < 3.5, round(scale.period), scale.warnings
    (True, 20, [])
    """
    image = clip_bright(image)
    blob = estimate_sigma(image)
    lattice = lattice_period(image)
    if lattice is None:
        return _without_lattice(blob)
    period = lattice.period
    lo, hi = period / RATIO_RANGE[1], period / RATIO_RANGE[0]
    if np.isfinite(blob) and lo <= blob <= hi:
        return Scale(blob, "blob", blob, lattice)
    if np.isfinite(blob) and BLOB_RANGE[0] <= blob < lo:
        # A finer lattice than the one read (a superstructure, a moire) may hold these atoms.
        msg = (
            f"the blobs ({blob:.2f} px wide) are narrow for the lattice period "
            f"({period:.1f} px), which may be a superstructure; the blob width is kept. {_HINT}"
        )
        return Scale(blob, "blob", blob, lattice, [msg])
    sigma = float(np.clip(period / PERIOD_PER_SIGMA, *BLOB_RANGE))
    if not np.isfinite(blob):
        why = "the blob-width estimate failed (NaN)"
    elif blob > hi:
        why = (
            f"the blobs ({blob:.2f} px wide) are too wide for the lattice period "
            f"({period:.1f} px): clusters, contamination or a blurred region dominate them"
        )
    else:
        why = f"the blob-width estimate ({blob:.2f} px) is below what can be resolved"
    msg = f"{why}; the atom width is taken from the lattice period as {sigma:.2f} px. {_HINT}"
    return Scale(sigma, "lattice", blob, lattice, [msg])


_HINT = "If the atoms look wrong, pass the atom width in px as sigma= (--sigma in the CLI)."


def clip_bright(image: np.ndarray, *, tiles: int = 8) -> np.ndarray:
    """The image with what is far brighter than its typical region clipped.

    The image is cut into ``tiles`` x ``tiles`` regions; the median of their 1st
    and 99th percentiles gives the typical background and atom level, and values
    more than twice that range above the background are clipped. A bright patch
    covering less than half of the regions (contamination, a cluster, a scale bar)
    then neither sets the blob width nor swamps the lattice's Fourier peaks.

    Examples
    --------
    >>> img = np.tile([0.0, 1.0], (64, 32)); img[:16, :16] = 50.0
    >>> float(clip_bright(img).max())
    2.0
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    ny, nx = max(1, min(tiles, h // 16)), max(1, min(tiles, w // 16))
    rows = np.array_split(np.arange(h), ny)
    cols = np.array_split(np.arange(w), nx)
    levels = np.array(
        [
            np.percentile(img[r[0] : r[-1] + 1, c[0] : c[-1] + 1], [1, 99])
            for r in rows
            for c in cols
        ]
    )
    lo, hi = np.median(levels, axis=0)
    if not hi > lo:
        return img
    return np.minimum(img, lo + 2 * (hi - lo))


def _without_lattice(blob):
    head = "no atomic lattice is resolved in the image (no pair of Fourier peaks)"
    if np.isfinite(blob) and BLOB_RANGE[0] <= blob <= BLOB_RANGE[1]:
        msg = (
            f"{head}; the atom width {blob:.2f} px comes from the blob size alone and "
            f"may belong to clusters or adsorbates rather than atoms. {_HINT}"
        )
        return Scale(blob, "blob", blob, None, [msg])
    got = "failed (NaN)" if not np.isfinite(blob) else f"gave {blob:.2f} px, out of range"
    msg = (
        f"{head}, and the blob-width estimate {got}; the image is analysed at the "
        f"network's own scale (atoms about {FALLBACK_SIGMA} px wide), without resampling. "
        f"{_HINT}"
    )
    return Scale(FALLBACK_SIGMA, "fallback", blob, None, [msg])


def lattice_period(image: np.ndarray, *, min_ratio: float = PEAK_RATIO) -> Lattice | None:
    """The lattice's two strongest non-collinear Fourier peaks, or None.

    The centre crop (at most 1024 px) has its outliers clipped (0.5-99.5 %), its
    scan lines levelled and its slow background removed, then a Hann window. Each
    pixel of the power spectrum is compared with the median of its ring, and each
    peak with its neighbours 6 px away along the ring and the radius (a streak is
    not a peak); 6 degree
    wedges about the axes (the streaks of scan lines and JPEG blocks) and the harmonics
    of 8 px JPEG blocks are left out, and so are peaks that hold less than 2e-4 of the
    power. Peaks of period 3 px to a
    quarter of the crop that stand ``min_ratio`` above their background are
    candidates; the pair that is non-collinear (25-155 degrees apart), with
    periods within a factor 2, and whose less isolated peak is the most isolated,
    is the lattice.

    Returns
    -------
    Lattice or None
        None when no such pair exists (no lattice resolved, a flat image).

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("hexagonal", shape=(256, 256), spacing=16, sigma=2.0, rng=0)
    >>> round(lattice_period(sim.image).period)  # plane spacing 16 * sqrt(3) / 2 = 13.9
    14
    """
    power, ratio, k, angle = _peak_ratio(np.asarray(image, dtype=np.float64))
    if ratio is None:
        return None
    peaks = (ratio == ndimage.maximum_filter(ratio, 5)) & (ratio >= min_ratio)
    peaks &= (angle >= 0) & (angle < 180)  # one of each pair k, -k
    idx = np.flatnonzero(peaks)
    idx = idx[np.argsort(ratio.flat[idx])[::-1][:_CANDIDATES]]
    iso = _isolation(power, idx)
    keep = (iso >= _ISOLATION) & (power.flat[idx] >= _SHARE * power[ratio > 0].sum())
    idx, iso = idx[keep], iso[keep]
    kk, aa = k.flat[idx], angle.flat[idx]
    apart = np.abs(aa[:, None] - aa[None, :]) % 180
    close = np.maximum(kk[:, None], kk[None, :]) <= 2 * np.minimum(kk[:, None], kk[None, :])
    score = np.where((apart >= 25) & (apart <= 155) & close, np.minimum.outer(iso, iso), 0)
    if not score.any():
        return None
    i, j = np.unravel_index(np.argmax(score), score.shape)
    strength = min(ratio.flat[idx[i]], ratio.flat[idx[j]])
    area = 1 / (kk[i] * kk[j] * abs(np.sin(np.radians(aa[i] - aa[j]))))
    return Lattice(
        (float(1 / kk[i]), float(1 / kk[j])),
        (float(aa[i] % 180), float(aa[j] % 180)),
        float(area),
        float(strength),
    )


def _peak_ratio(img):
    """Power spectrum over its local background; with |k| (cycles/px) and angle (deg)."""
    h, w = img.shape
    s = min(_FFT_SIDE, h, w)
    s -= s % 2
    y0, x0 = (h - s) // 2, (w - s) // 2
    img = img[y0 : y0 + s, x0 : x0 + s]
    lo, hi = np.percentile(img, [0.5, 99.5])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-6 * max(abs(hi), abs(lo), 1e-30):
        return None, None, None, None
    img = img - np.median(img, axis=1, keepdims=True)  # level the scan lines
    img = np.clip(img, *np.percentile(img, [0.5, 99.5]))
    img = img - ndimage.uniform_filter(img, s // 8)
    win = np.outer(np.hanning(s), np.hanning(s))
    power = np.abs(np.fft.fftshift(np.fft.fft2(img * win))) ** 2
    power = ndimage.gaussian_filter(power, _SMOOTH)
    r, rings, left_out, angle = _spectrum_grid(s)
    ring = _ring_median(power, rings)
    ratio = power / np.maximum(ring, 1e-30)
    ratio[left_out] = 0
    return power, ratio, r / s, angle


@functools.lru_cache(maxsize=4)
def _spectrum_grid(s):
    """For an ``s`` px spectrum: |k| in px, its integer rings, what is left out, angles.

    Left out: wedges about both axes (scan lines leave streaks along k_y, JPEG blocks
    and column noise along k_x), periods under 3 px or over a quarter of the crop, and
    2.5 px around the harmonics of the 8 px blocks of JPEG compression.
    """
    c = s // 2
    yy, xx = np.mgrid[-c : s - c, -c : s - c]
    r = np.hypot(yy, xx)
    wedge = np.maximum(1.5, _STREAK * r)
    left_out = (np.abs(xx) <= wedge) | (np.abs(yy) <= wedge) | (r < 4) | (r > s / 3)
    for n in range(1, 8):
        for y, x in ((0, n * s / 8), (n * s / 8, 0)):
            left_out |= np.hypot(np.abs(yy) - y, np.abs(xx) - x) < 2.5
    for a in (r, left_out):
        a.flags.writeable = False
    rings = np.round(r).astype(int)
    angle = np.degrees(np.arctan2(-yy, xx))
    rings.flags.writeable = angle.flags.writeable = False
    return r, rings, left_out, angle


def _ring_median(power, rings):
    """The median of ``power`` over each integer ring, at every pixel.

    Read as the geometric mean times exp(Euler's gamma) ln 2, which is the median
    for the exponential distribution of noise power (and cheaper than sorting).
    """
    labels = rings.ravel()
    counts = np.maximum(np.bincount(labels), 1)
    logmean = np.bincount(labels, np.log(np.maximum(power.ravel(), 1e-300))) / counts
    return (np.exp(logmean) * (np.exp(np.euler_gamma) * np.log(2)))[rings]


def _isolation(power, idx, step=6.0):
    """Each peak over its neighbours ``step`` px away along its ring and along its radius
    (nearer for peaks close to k = 0, at most a third of their radius).

    A lattice peak stands above both; a scan-line streak (radial) or a fan of them
    does not.
    """
    if len(idx) == 0:
        return np.zeros(0)
    h, w = power.shape
    y, x = np.unravel_index(idx, power.shape)
    vy, vx = y - h // 2, x - w // 2
    norm = np.maximum(np.hypot(vy, vx), 1e-9)
    uy, ux = vy / norm, vx / norm
    step = np.clip(norm / 3, 2.5, step)  # inside the slow background near k = 0
    levels = []
    for dy, dx in ((uy, ux), (ux, -uy)):  # radial, then tangential
        pair = [
            power[
                np.round(y + sign * step * dy).astype(int) % h,
                np.round(x + sign * step * dx).astype(int) % w,
            ]
            for sign in (-1, 1)
        ]
        levels.append(np.mean(pair, axis=0))
    return power.flat[idx] / np.maximum(np.maximum(*levels), 1e-30)


def estimate_sigma(image: np.ndarray) -> float:
    """Estimate the Gaussian width (px) of the atoms in an image.

    The image autocorrelation has a central lobe that is the blob's own
    autocorrelation, a Gaussian of width ``sigma * sqrt(2)``; white noise
    (Poisson or Gaussian) only adds to lag zero, which is left out. The
    lobe's radial profile is fitted up to its first minimum. This reading
    needs no lattice but is pulled by every bright feature; prefer
    :func:`estimate_scale`, which checks it against the lattice period.

    Parameters
    ----------
    image : ndarray of shape (H, W)

    Returns
    -------
    sigma : float
        Estimated width in px (nan when the image has no structure).

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("square", shape=(256, 256), spacing=20, sigma=3.0, rng=0)
    >>> 2.5 < estimate_sigma(sim.image) < 3.5
    True
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    if h > _MAX_SIDE or w > _MAX_SIDE:  # the scale is the same everywhere: use the centre
        y0, x0 = (h - min(h, _MAX_SIDE)) // 2, (w - min(w, _MAX_SIDE)) // 2
        img = img[y0 : y0 + _MAX_SIDE, x0 : x0 + _MAX_SIDE]
    profile = _radial_acf(img)
    return _fit_lobe(profile)


def _radial_acf(img):
    h, w = img.shape
    img = img - ndimage.uniform_filter(img, size=max(h, w) // 4 or 1, mode="reflect")
    win = np.outer(np.hanning(h), np.hanning(w))
    f = np.fft.rfft2(img * win, s=(2 * h, 2 * w))
    acf = np.fft.fftshift(np.fft.irfft2(np.abs(f) ** 2, s=(2 * h, 2 * w)))
    cy, cx = h, w
    rmax = min(h, w) // 3
    yy, xx = np.mgrid[-rmax : rmax + 1, -rmax : rmax + 1]
    r = np.hypot(yy, xx)
    sub = acf[cy - rmax : cy + rmax + 1, cx - rmax : cx + rmax + 1]
    bins = np.round(r * 2).astype(int)  # half-pixel radial bins
    sums = np.bincount(bins.ravel(), sub.ravel())
    counts = np.bincount(bins.ravel())
    full = counts > 0  # some half-pixel radii hold no pixel at all
    return np.flatnonzero(full) / 2.0, sums[full] / counts[full]


def _fit_lobe(profile):
    r, p = profile
    ok = (r >= 1) & (r <= r.max() * 0.9)
    r, p = r[ok], p[ok]
    if len(p) < 4 or not np.isfinite(p).all() or p[0] <= 0:
        return float("nan")
    smooth = ndimage.uniform_filter1d(p, 3)
    d = np.diff(smooth)
    stop = np.argmax(d > 0) if (d > 0).any() else len(p) - 1
    stop = max(stop, 3)
    rr, pp = r[: stop + 1], p[: stop + 1]

    def model(x, a, s, c):
        return a * np.exp(-(x**2) / (4 * s**2)) + c

    s0 = max(rr[np.argmin(np.abs(pp - (pp[0] + pp[-1]) / 2))] / 1.18, 0.5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            (a, s, c), _ = optimize.curve_fit(
                model, rr, pp, p0=(pp[0] - pp[-1], s0, pp[-1]), maxfev=2000
            )
    except RuntimeError:
        return float("nan")
    return float(abs(s)) if a > 0 and 0.2 < abs(s) < 100 else float("nan")
