"""The probe's shape as the image shows it: a Gaussian core and, for a real probe, a skirt.

An aberration-corrected STEM probe is not a Gaussian: around the core lies a
skirt, long and faint, that a Lorentzian describes well. Between two close
columns (a dumbbell) the skirt of one lies under the other, so a refinement
that removes each neighbour as a Gaussian leaves its skirt behind and pulls
the pair together (or, with the neighbour's light over-counted, pushes it
apart). :mod:`atomstat.refine` measures the skirt on the image's own atoms
with :func:`fit_skirt` and removes the neighbours with it.

A probe *form* is the quadratic form ``(a, b, c)`` of the core's inverse
covariance (``q = a dx^2 + 2 b dx dy + c dy^2``, the core ``exp(-q / 2)``), or
``(a, b, c, f, k)`` with a skirt: a share ``f`` of the peak in the Lorentzian
``1 / (1 + q / k^2)``, whose half width is ``k`` core widths::

    profile(q) = (1 - f) exp(-q / 2) + f / (1 + q / k^2)

so the profile is 1 at the centre and an amplitude is a peak height.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["SAMPLE", "fit_skirt", "profile", "skirt", "slope"]

#: Most atoms on which the skirt is measured.
SAMPLE = 200
#: A skirt is modelled when it holds at least this share of the peak.
_SHARE = 0.03
#: Core widths (times the Gaussian's measured width) and skirt half widths (in core
#: widths) tried.
_CORE = np.array([0.8, 0.85, 0.9, 0.95, 1.0])
_HALF_WIDTHS = (1.0, 1.5, 2.0, 3.0, 4.0)
#: Radial bins (in core widths) of the measured profiles.
_BIN = 0.2


def profile(q, form):
    """The probe's profile (1 at the centre) at quadratic-form values ``q``."""
    if len(form) == 3:
        return np.exp(-0.5 * q)
    share, k = form[3], form[4]
    return (1 - share) * np.exp(-0.5 * q) + share / (1 + q / (k * k))


def slope(q, form):
    """``-2 d(profile) / dq``: the model's gradient in its centre is ``amp * slope * M d``."""
    if len(form) == 3:
        return np.exp(-0.5 * q)
    share, k = form[3], form[4]
    return (1 - share) * np.exp(-0.5 * q) + 2 * share / (k * k) / (1 + q / (k * k)) ** 2


def skirt(xy, shape, amp, form):
    """Sum of Lorentzians ``amp / (1 + q)`` (``q`` the quadratic form ``form``) on an
    (H, W) grid.

    The centres are spread bilinearly on a grid padded by the reach (which keeps
    each one's centroid), and the grid is convolved with one Lorentzian cut at 5
    half widths. The skirt is smooth over a pixel, so this matches the direct
    sum (:func:`atomstat.gaussians.render` with ``profile="lorentzian"``) within
    about 3 % of one skirt's peak, at a fraction of the cost of its wide windows.
    """
    from scipy import fft

    h, w = shape
    kernel = _kernel(tuple(float(v) for v in form[:3]), (h, w))
    reach = (kernel.shape[0] - 1) // 2
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    size = (h + 2 * reach, w + 2 * reach)
    grid = np.zeros(size)
    corners = ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy))
    for ox, oy, wt in (*corners, (1, 1, fx * fy)):
        gx, gy = x0 + ox + reach, y0 + oy + reach
        ok = (gx >= 0) & (gx < size[1]) & (gy >= 0) & (gy < size[0])
        np.add.at(grid, (gy[ok], gx[ok]), (amp * wt)[ok])
    full = tuple(
        fft.next_fast_len(n + k, real=True) for n, k in zip(size, kernel.shape, strict=True)
    )
    spectrum = _kernel_spectrum(tuple(float(v) for v in form[:3]), (h, w), full)
    out = fft.irfft2(fft.rfft2(grid, full) * spectrum, full)
    return out[2 * reach : 2 * reach + h, 2 * reach : 2 * reach + w]


@functools.lru_cache(maxsize=8)
def _kernel(form, shape):
    """One Lorentzian ``1 / (1 + q)`` on a square grid cut at 5 half widths."""
    a, b, c = form
    widest = 1 / np.sqrt(np.linalg.eigvalsh([[a, b], [b, c]])[0])
    reach = int(min(np.ceil(5 * widest), max(shape)))
    off = np.arange(-reach, reach + 1)
    kx, ky = np.meshgrid(off, off)
    return 1.0 / (1.0 + a * kx * kx + 2 * b * kx * ky + c * ky * ky)


@functools.lru_cache(maxsize=8)
def _kernel_spectrum(form, shape, full):
    from scipy import fft

    return fft.rfft2(_kernel(form, shape), full)


def fit_skirt(q, ok, data, form):
    """The probe's form measured on atoms' windows: ``form`` itself, or with a skirt.

    Parameters
    ----------
    q : ndarray (N, P)
        Quadratic-form values (of ``form``) at each window pixel.
    ok : ndarray (N, P)
        1 where the pixel is in the image and in the window, else 0.
    data : ndarray (N, P)
        The pixels, with every other atom's model removed.
    form : ndarray of 3
        The Gaussian's form (see the module).

    Returns
    -------
    ndarray of 3 or 5
        Each window's radial profile (bins of 0.2 core widths) is fitted with a
        per-atom amplitude, share and background, a core ``s`` times the
        Gaussian's width and a skirt of half width ``k`` core widths, for a
        grid of (s, k) shared by all; the pair with the least residual wins,
        and the share is the median over the atoms. The skirt is kept only when
        that share reaches 0.03 and the residual falls below the Gaussian's by
        more than a free value per atom would take from noise.
    """
    r = np.sqrt(np.maximum(q, 0))
    nbins = int(np.ceil(r[ok > 0].max() / _BIN)) + 1 if (ok > 0).any() else 0
    if nbins < 6:
        return form
    which = np.minimum((r / _BIN).astype(int), nbins - 1)
    rows = np.broadcast_to(np.arange(len(q))[:, None], q.shape)
    count = np.zeros((len(q), nbins))
    np.add.at(count, (rows, which), ok)
    mean = np.zeros_like(count)
    qbin = np.zeros_like(count)
    np.add.at(mean, (rows, which), data * ok)
    np.add.at(qbin, (rows, which), q * ok)
    filled = count > 0
    mean[filled] /= count[filled]
    qbin[filled] /= count[filled]
    gauss, _ = _binned_fit(mean, count, [np.exp(-0.5 * qbin)])
    fits = [
        (_binned_fit(mean, count, [np.exp(-0.5 * qbin / s2), 1 / (1 + qbin / (k * k))]), s2, k)
        for s2 in _CORE**2
        for k in _HALF_WIDTHS
    ]
    (rss, share), s2, k = min(fits, key=lambda t: t[0][0])
    per_atom = filled.sum() / len(q)  # bins per atom: one more free value among them
    if not (share >= _SHARE and rss < gauss * (1 - 2 / per_atom)):
        return form
    return np.concatenate([np.asarray(form, float)[:3] / s2, [share, k / np.sqrt(s2)]])


def _binned_fit(mean, count, basis):
    """Weighted least squares of each row of ``mean`` on ``basis`` + a constant; the total
    residual and, for two basis functions, the median share of the second at the peak."""
    cols = [*basis, np.ones_like(mean)]
    a = np.stack([[(count * u * v).sum(axis=1) for v in cols] for u in cols]).transpose(2, 0, 1)
    y = np.stack([(count * u * mean).sum(axis=1) for u in cols], axis=1)
    good = np.abs(np.linalg.det(a)) > 1e-9 * np.abs(a).max()
    if not good.any():
        return np.inf, 0.0
    coef = np.linalg.solve(a[good], y[good][..., None])[..., 0]
    fit = sum(coef[:, i : i + 1] * cols[i][good] for i in range(len(cols)))
    rss = float((count[good] * (mean[good] - fit) ** 2).sum())
    if len(basis) < 2:
        return rss, 0.0
    peak = coef[:, 0] + coef[:, 1]
    share = coef[:, 1][peak > 0] / peak[peak > 0]
    return rss, float(np.clip(np.median(share), 0, 0.9)) if len(share) else 0.0
