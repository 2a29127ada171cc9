"""Image formation for simulated scenes: STEM HAADF and STM-like images, and the
training target (one blob per atom) drawn from the same truth."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .gaussians import render

__all__ = ["render_truth", "stem_image", "stm_clean", "stm_image", "target_mask"]


def render_truth(truth, shape):
    pts = truth[["x", "y"]].to_numpy()
    return render(
        pts,
        shape,
        truth.amplitude.to_numpy(),
        truth.sigma_x.to_numpy(),
        truth.sigma_y.to_numpy(),
        truth.theta.to_numpy(),
        owner=True,
    )


def target_mask(truth, peak, who, tau=0.35):
    """Blob mask: an atom owns the pixels where its own contribution is the
    largest; it covers those above min(tau * typical amplitude, 0.6 * its
    amplitude), so dimmer atoms give smaller blobs and every atom gives one.
    Pixels touching another atom's blob are cleared to keep blobs apart."""
    if len(truth) == 0:
        return np.zeros(peak.shape, np.uint8)
    amp = truth.amplitude.to_numpy()
    ref = (
        np.median(amp[(truth.species == "host").to_numpy()])
        if (truth.species == "host").any()
        else np.median(amp)
    )
    level = np.maximum(np.minimum(tau * ref, 0.6 * amp), amp * np.exp(-0.5 * 1.6**2))
    inside = (who >= 0) & (peak >= level[np.maximum(who, 0)])
    lab = np.pad(np.where(inside, who, -1), 1, constant_values=-1)  # no wrap-around
    clash = np.zeros(lab.shape, bool)
    for a, b in ((lab[1:, :], lab[:-1, :]), (lab[:, 1:], lab[:, :-1])):
        diff = (a >= 0) & (b >= 0) & (a != b)
        if a.shape[0] < lab.shape[0]:
            clash[1:, :] |= diff
            clash[:-1, :] |= diff
        else:
            clash[:, 1:] |= diff
            clash[:, :-1] |= diff
    clash = clash[1:-1, 1:-1]
    return (inside & ~clash).astype(np.uint8)


def stem_image(clean, imaging, rng):
    img = clean + imaging.background
    if imaging.blur > 0:
        img = ndimage.gaussian_filter(img, imaging.blur)
    if imaging.scan_jitter > 0:
        h, w = img.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(float)
        xx += rng.normal(0, imaging.scan_jitter, (h, 1))
        img = ndimage.map_coordinates(img, [yy, xx], order=1, mode="reflect")
    return rng.poisson(np.clip(img, 0, None) * imaging.dose).astype(np.float32)


def stm_clean(truth, shape, imaging, rng):
    truth = truth.copy()
    if imaging.charge > 0:
        field = ndimage.gaussian_filter(rng.normal(0, 1, shape), min(shape) / 10)
        field /= field.std() + 1e-12
        yi = np.clip(np.round(truth.y).astype(int), 0, shape[0] - 1)
        xi = np.clip(np.round(truth.x).astype(int), 0, shape[1] - 1)
        truth["amplitude"] = truth.amplitude * (1 + imaging.charge * np.tanh(field[yi, xi]))
    clean, peak, who = render_truth(truth, shape)
    mask = target_mask(truth, peak, who)
    if imaging.tip_change is not None:
        row = int(imaging.tip_change * shape[0])
        blunt = truth.copy()
        for c in ("sigma", "sigma_x", "sigma_y"):
            blunt[c] = blunt[c] * 1.25
        blunt["amplitude"] = blunt.amplitude * 0.8
        clean2, peak2, who2 = render_truth(blunt, shape)
        clean[row:] = clean2[row:]
        mask[row:] = target_mask(blunt, peak2, who2)[row:]
    return clean, mask


def stm_image(clean, imaging, rng):
    h, w = clean.shape
    img = clean + imaging.noise * rng.normal(0, 1, clean.shape)
    img += imaging.noise * ndimage.gaussian_filter(rng.normal(0, 3, clean.shape), 3)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img += imaging.tilt * (rng.normal() * xx + rng.normal() * yy)
    for _ in range(imaging.scars):
        r = rng.integers(0, h)
        c0 = rng.integers(0, w)
        length = rng.integers(w // 8, w)
        img[r, c0 : c0 + length] += rng.choice([-1, 1]) * rng.uniform(0.3, 1.0)
    img += 0.5 * imaging.noise * rng.normal(0, 1, (h, 1))  # line-to-line offsets
    return img
