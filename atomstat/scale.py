"""Estimate the size of the atoms in an image, so the network can see them at its own scale."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage, optimize

__all__ = ["estimate_sigma"]

_MAX_SIDE = 512  # enough periods for spacings up to about 60 px


def estimate_sigma(image: np.ndarray) -> float:
    """Estimate the Gaussian width (px) of the atoms in an image.

    The image autocorrelation has a central lobe that is the blob's own
    autocorrelation, a Gaussian of width ``sigma * sqrt(2)``; white noise
    (Poisson or Gaussian) only adds to lag zero, which is left out. The
    lobe's radial profile is fitted up to its first minimum.

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
