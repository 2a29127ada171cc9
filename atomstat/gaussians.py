"""Sums of elliptical Gaussians (or Lorentzians) on a pixel grid, rendered in local windows.

Used to draw simulated images and, during refinement, the fitted model of
each atom's neighbours: a Gaussian core and, for a real probe, its Lorentzian skirt.
"""

from __future__ import annotations

import numpy as np

__all__ = ["render"]


#: Window radius in widths: a Gaussian is below 3e-4 of its peak at 4, a Lorentzian 1/26 at 5.
_REACH = {"gaussian": 4.0, "lorentzian": 5.0}


def render(points, shape, amplitude, sigma_x, sigma_y, theta, *, owner=False, profile="gaussian"):
    """Sum of elliptical Gaussians on an (H, W) grid, rendered in local windows.

    Parameters
    ----------
    points : ndarray of shape (N, 2)
        Centres (x, y) in px.
    shape : tuple of int
    amplitude, sigma_x, sigma_y, theta : array-like of shape (N,)
        Peak height, widths along the principal axes (px) and the angle of
        the x principal axis (degrees, counter-clockwise as displayed).
    owner : bool
        Also return, per pixel, the largest single contribution and the index
        of the atom that gives it (-1 where nothing contributes).
    profile : {"gaussian", "lorentzian"}
        ``exp(-rho^2 / 2)``, or ``1 / (1 + rho^2)`` (a probe's skirt: the
        widths are then its half widths at half maximum), where ``rho`` is the
        distance in widths. The window reaches 4 widths (a Gaussian) or 5 (a
        Lorentzian, cut where it falls to 1/26 of its peak).

    Returns
    -------
    image : ndarray of shape (H, W), float64
    peak, who : ndarrays of shape (H, W), only when ``owner`` is True
    """
    h, w = shape
    n = len(points)
    amplitude, sigma_x, sigma_y, theta = (
        np.broadcast_to(np.asarray(v, float), (n,)) for v in (amplitude, sigma_x, sigma_y, theta)
    )
    image = np.zeros(h * w)
    peak = np.zeros(h * w) if owner else None
    who = np.full(h * w, -1) if owner else None
    if n == 0:
        out = image.reshape(shape)
        return (out, peak.reshape(shape), who.reshape(shape)) if owner else out
    if profile not in _REACH:
        raise ValueError(f"profile must be one of {tuple(_REACH)}, got {profile!r}")
    r = int(np.ceil(_REACH[profile] * max(sigma_x.max(), sigma_y.max())))
    off = np.arange(-r, r + 1)
    ox, oy = np.meshgrid(off, off)
    ox, oy = ox.ravel(), oy.ravel()
    for chunk in np.array_split(np.arange(n), max(1, n * ox.size // 2_000_000)):
        px = np.round(points[chunk, 0]).astype(int)[:, None] + ox
        py = np.round(points[chunk, 1]).astype(int)[:, None] + oy
        dx = px - points[chunk, 0:1]
        dy = py - points[chunk, 1:2]
        t = np.deg2rad(theta[chunk])[:, None]
        # theta is counter-clockwise as displayed: the row axis points down.
        u = dx * np.cos(t) - dy * np.sin(t)
        v = dx * np.sin(t) + dy * np.cos(t)
        rho2 = (u / sigma_x[chunk, None]) ** 2 + (v / sigma_y[chunk, None]) ** 2
        shape_ = np.exp(-0.5 * rho2) if profile == "gaussian" else 1.0 / (1.0 + rho2)
        val = amplitude[chunk, None] * shape_
        inside = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        flat = (py * w + px)[inside]
        vals = val[inside]
        image += np.bincount(flat, vals, minlength=h * w)  # (a sum: atoms may share pixels)
        if owner:
            ids = np.broadcast_to(chunk[:, None], val.shape)[inside]
            np.maximum.at(peak, flat, vals)
            win = vals >= peak[flat]
            who[flat[win]] = ids[win]
    image = image.reshape(shape)
    return (image, peak.reshape(shape), who.reshape(shape)) if owner else image
