"""Intensity normalisation shared by training and inference.

The network needs its atoms near 1 and the background near 0. One global
scale cannot give that on real frames: a bright dopant, a contamination patch
or an adsorbate cluster sets the top of the range and the lattice sinks into
the noise. :func:`normalize` therefore scales each neighbourhood by its own
background and peak levels (``method="local"``, the default); the global
percentile scaling of earlier versions stays available as
``method="percentile"``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["METHOD", "normalize", "normalize_levels"]

#: Side (px, at the network's scale, where atoms are about 2.2 px wide and lattices
#: 9-30 px apart) of the neighbourhood whose background and peaks set the local scale.
WINDOW = 48
#: Output range: a region brighter than its surroundings (a heavy dopant, a cluster)
#: saturates here instead of setting everyone's scale.
CLIP = (-1.0, 2.0)
#: A neighbourhood's range is at least this fraction of the median range, so that flat
#: vacuum or a saturated patch is not stretched into atoms.
FLOOR = 0.25
#: What the shipped models were trained with (written into the model cards).
METHOD = (
    f"local: background and peak levels from {WINDOW} px minimum and maximum filters of "
    f"the image smoothed by 1 px, each smoothed over {WINDOW} px; range at least "
    f"{FLOOR} of its median; clipped to {CLIP}"
)


def normalize(
    image: np.ndarray,
    *,
    method: str = "local",
    window: int = WINDOW,
    low: float = 1.0,
    high: float = 99.9,
) -> np.ndarray:
    """Scale an image so its background is near 0 and its atoms near 1.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    method : {"local", "percentile"}
        ``"local"``: each pixel is scaled by the background (a smoothed
        minimum filter) and the peak level (a smoothed maximum filter) of the
        ``window`` px around it, of a copy smoothed by 1 px (so single noisy
        pixels at low dose do not set the scale); the result is clipped to
        :data:`CLIP`. ``"percentile"``: the percentiles ``low`` and ``high``
        of the smoothed copy map to 0 and 1 over the whole image.
    window : int
        Side of the neighbourhood (px), for ``"local"``.
    low, high : float
        Percentiles, for ``"percentile"``.

    Returns
    -------
    ndarray of shape (H, W), float32
        Zeros for a flat image.

    Examples
    --------
    >>> img = np.zeros((160, 160)); img[20:24, 20:24] = 5.0; img[120:124, 120:124] = 500.0
    >>> out = normalize(img)  # each atom at the scale of its own neighbourhood
    >>> float(out.min()), round(float(out[21, 21]), 1), round(float(out[121, 121]), 1)
    (0.0, 1.1, 1.2)
    >>> round(float(normalize(img, method="percentile")[21, 21]), 2)  # sunk by the bright one
    0.05
    """
    image = np.asarray(image, dtype=np.float32)
    smooth = ndimage.gaussian_filter(image, 1.0)
    lo, hi = np.percentile(smooth, [low, high])
    # Flat: no range left beside the rounding of the values themselves (relative, so
    # that an image in amperes with 1e-15 contrast still counts as an image).
    if not np.isfinite(hi - lo) or hi - lo <= 1e-6 * max(abs(hi), abs(lo)):
        return np.zeros_like(image)
    if method == "percentile":
        return (image - lo) / (hi - lo)
    if method != "local":
        raise ValueError(f"method must be 'local' or 'percentile', got {method!r}")
    return _local(image, smooth, int(window))


def _local(image, smooth, window):
    return _local_levels(image, smooth, window)[0]


def _local_levels(image, smooth, window):
    window = max(3, min(window, *image.shape))
    background = ndimage.uniform_filter(ndimage.minimum_filter(smooth, window), window)
    peak = ndimage.uniform_filter(ndimage.maximum_filter(smooth, window), window)
    span = peak - background
    span = np.maximum(span, FLOOR * float(np.median(span)))
    span = np.maximum(span, np.finfo(np.float32).tiny)
    out = (image - background) / span
    return np.clip(out, *CLIP).astype(np.float32), background, span


def normalize_levels(image: np.ndarray, *, window: int = WINDOW):
    """:func:`normalize` (``method="local"``) and the levels it used: ``(out, background,
    span)`` with ``out = clip((image - background) / span)``; ``background`` and ``span``
    are None for a flat image (``out`` is then zeros)."""
    image = np.asarray(image, dtype=np.float32)
    smooth = ndimage.gaussian_filter(image, 1.0)
    lo, hi = np.percentile(smooth, [1.0, 99.9])
    if not np.isfinite(hi - lo) or hi - lo <= 1e-6 * max(abs(hi), abs(lo)):
        return np.zeros_like(image), None, None
    return _local_levels(image, smooth, int(window))
