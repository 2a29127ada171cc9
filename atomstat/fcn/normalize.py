"""Intensity normalisation shared by training and inference."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["normalize"]


def normalize(image: np.ndarray, *, low: float = 1.0, high: float = 99.9) -> np.ndarray:
    """Scale an image so its background is near 0 and its atoms near 1.

    The percentiles are taken on a lightly smoothed copy (sigma 1 px), so that
    single noisy pixels at low dose do not set the scale; the raw image is
    then scaled with them. A flat image maps to zeros.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    low, high : float
        Percentiles mapped to 0 and 1.

    Returns
    -------
    ndarray of shape (H, W), float32

    Examples
    --------
    >>> img = np.zeros((32, 32)); img[10:14, 10:14] = 5.0
    >>> out = normalize(img)
    >>> float(out.min()), bool(out.max() > 0.9)
    (0.0, True)
    """
    image = np.asarray(image, dtype=np.float32)
    smooth = ndimage.gaussian_filter(image, 1.0)
    lo, hi = np.percentile(smooth, [low, high])
    # Flat: no range left beside the rounding of the values themselves (relative, so
    # that an image in amperes with 1e-15 contrast still counts as an image).
    if not np.isfinite(hi - lo) or hi - lo <= 1e-6 * max(abs(hi), abs(lo)):
        return np.zeros_like(image)
    return (image - lo) / (hi - lo)
