"""Clean-up for scanning-probe (STM) images: background, scan lines, scars.

STM images are recorded line by line: the tip's height drifts between lines
(line offsets), the sample is tilted (a plane, or a slow curved background),
and a tip that picks something up for part of a line leaves a streak (a
scar). None of these is needed for STEM images, and atomstat does not apply
them unless asked: :func:`atomstat.analyze` takes ``preprocess="stm"``
(:func:`stm`: background, then line levelling, then scar repair) or any
function of one image.

Every function takes one image (H, W) and returns a float32 image of the
same shape; rows are the fast scan lines. Positions are never moved.

Caveat, measured: line levelling cannot tell a line offset from a row of
atoms that runs along the scan lines. On a lattice whose rows are parallel to
the scan, it flattens the atoms across the rows and bends their shapes (the
orientation of stretched blobs went from 1 to 6-7 degrees median error on a
simulated charge-ordered surface). For shape descriptors (area, circularity,
orientation) use ``preprocess="plane"`` (:func:`plane`, the background only)
or none; the network copes with tilt by itself.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "PREPROCESSORS",
    "get_preprocessor",
    "invert",
    "level_lines",
    "remove_background",
    "remove_scars",
    "plane",
    "stm",
]

_MAD = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise


def _image(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"expected one image (H, W), got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("the image holds NaN or infinite pixels")
    return image


def _robust_sigma(values) -> float:
    values = np.asarray(values, np.float64).ravel()
    return float(_MAD * np.median(np.abs(values - np.median(values))))


def remove_background(image, order: int = 1, *, iterations: int = 5) -> np.ndarray:
    """Subtract a polynomial surface (order 1: a plane) fitted robustly.

    The fit is repeated ``iterations`` times, each time leaving out the
    pixels more than 2.5 robust standard deviations away from the surface,
    so atoms and scars do not pull it.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:64, 0:64]
    >>> flat = remove_background(0.3 * xx - 0.1 * yy + 5)
    >>> bool(np.abs(flat).max() < 1e-4)
    True
    """
    image = _image(image)
    if not isinstance(order, int | np.integer) or order < 0:
        raise ValueError(f"order must be a non-negative integer, got {order!r}")
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    x, y = (xx.ravel() / max(w - 1, 1) - 0.5) * 2, (yy.ravel() / max(h - 1, 1) - 0.5) * 2
    terms = np.stack([x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)], 1)
    values = image.ravel()
    keep = np.ones(values.size, bool)
    for _ in range(max(1, iterations)):
        coef, *_ = np.linalg.lstsq(terms[keep], values[keep], rcond=None)
        residual = values - terms @ coef
        sigma = _robust_sigma(residual[keep])
        if sigma == 0:
            break
        keep = np.abs(residual - np.median(residual[keep])) < 2.5 * sigma
    return (values - terms @ coef).reshape(h, w).astype(np.float32)


def level_lines(image, method: str = "median", *, order: int = 1) -> np.ndarray:
    """Remove the offset (or slope) of each scan line.

    Parameters
    ----------
    method : {"median", "diff", "poly"}
        ``"median"`` subtracts each row's median; ``"diff"`` shifts each row
        by the median of its difference to the row above (robust where
        features fill much of a row), then removes the slow drift that the
        running sum picks up with a robust quadratic in y; ``"poly"``
        subtracts a robust polynomial of ``order`` fitted to each row.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> offsets = rng.normal(0, 1, (48, 1))
    >>> image = rng.normal(0, 0.01, (48, 64)) + offsets
    >>> bool(np.std(level_lines(image).mean(axis=1)) < 0.01)
    True
    """
    image = _image(image)
    if method == "median":
        out = image - np.median(image, axis=1, keepdims=True)
    elif method == "diff":
        steps = np.median(np.diff(image, axis=0), axis=1)
        offsets = np.concatenate([[0.0], np.cumsum(steps)])
        rows = np.arange(len(offsets), dtype=float)
        drift = np.polyval(np.polyfit(rows, offsets, 2), rows)
        out = image - (offsets - drift)[:, None]
        out -= np.median(out)
    elif method == "poly":
        out = np.empty_like(image)
        cols = np.linspace(-1, 1, image.shape[1])
        for r, row in enumerate(image):
            keep = np.ones(row.size, bool)
            for _ in range(3):
                coef = np.polyfit(cols[keep], row[keep], order)
                residual = row - np.polyval(coef, cols)
                sigma = _robust_sigma(residual[keep])
                if sigma == 0:
                    break
                keep = np.abs(residual) < 2.5 * sigma
            out[r] = residual
    else:
        raise ValueError(f"method must be 'median', 'diff' or 'poly', got {method!r}")
    return out.astype(np.float32)


def remove_scars(
    image, *, threshold: float = 4.0, min_length: int = 12, smooth: int = 9
) -> np.ndarray:
    """Repair scars: short horizontal streaks where one scan line jumps.

    A scar shows as a run of pixels in one row that all differ, in the same
    direction, from the mean of the rows above and below. That difference is
    averaged along the row over ``smooth`` px (atoms are round, so they
    average out; a streak does not) and compared with ``threshold`` robust
    standard deviations. Runs of at least ``min_length`` px are repaired by
    subtracting the streak's offset, so an atom crossed by a scar keeps its
    shape; every other pixel is left exactly as it was.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> image = rng.normal(0, 0.05, (64, 64))
    >>> scarred = image.copy(); scarred[20, 10:50] += 1.0
    >>> bool(np.abs(remove_scars(scarred) - image).max() < 0.2)
    True
    """
    image = _image(image)
    if image.shape[0] < 3:
        return image.astype(np.float32)
    out = image.copy()
    for _ in range(20):  # a repaired scar no longer hides a weaker one beside it
        runs = _scar_runs(out, threshold, min_length, smooth)
        if not runs:
            break
        for r, c0, c1, inside, offset in runs:
            out[r, c0:c1][inside] -= offset
    return out.astype(np.float32)


def _scar_runs(image, threshold, min_length, smooth):
    """Scars to repair: (row, first col, end col, pixels of the streak, offset).

    A scar in row r also makes rows r +- 1 look like weaker scars of the
    other sign (half as strong); the strongest run wins and its echoes beside
    it are left for the next round.
    """
    neighbours = np.empty_like(image)
    neighbours[1:-1] = (image[:-2] + image[2:]) / 2
    neighbours[0], neighbours[-1] = image[1], image[-2]
    deviation = image - neighbours
    along = ndimage.uniform_filter1d(deviation, size=max(1, smooth), axis=1, mode="nearest")
    sigma = _robust_sigma(along)
    if sigma == 0:
        return []
    candidates = []
    for sign in (1, -1):
        flagged = sign * along > threshold * sigma
        flagged = ndimage.binary_closing(flagged, structure=np.ones((1, 3), bool))
        labels, n = ndimage.label(flagged, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
        for found in ndimage.find_objects(labels):
            rows, cols = found
            if cols.stop - cols.start < min_length:
                continue
            r = rows.start
            # widen by half the smoothing window: the filter blurs the streak's ends
            c0 = max(0, cols.start - smooth // 2)
            c1 = min(image.shape[1], cols.stop + smooth // 2)
            offset = float(np.median(deviation[r, cols.start : cols.stop]))
            # the run shrunk by half the window is all scar; at its ends, pixels that jump like it
            inside = sign * deviation[r, c0:c1] > sign * offset / 2
            inside[cols.start - c0 + smooth // 2 : cols.stop - c0 - smooth // 2] = True
            candidates.append((abs(offset), r, c0, c1, inside, offset))
    accepted = []
    for _, r, c0, c1, inside, offset in sorted(candidates, key=lambda c: -c[0]):
        if any(abs(r - r2) == 1 and c0 < e2 and c2 < c1 for r2, c2, e2, *_ in accepted):
            continue
        accepted.append((r, c0, c1, inside, offset))
    return accepted


def stm(image) -> np.ndarray:
    """The STM clean-up: plane background, then median line levelling, then scar repair."""
    return remove_scars(level_lines(remove_background(image, 1), "median"))


def plane(image) -> np.ndarray:
    """Only the plane background: safe for blob shapes (see the module notes)."""
    return remove_background(image, 1)


def invert(image) -> np.ndarray:
    """Dark atoms on a bright background (annular bright field, bright-field TEM) made bright.

    The network was trained on bright atoms (HAADF-like). Intensities are
    mirrored about the image's own range, ``max + min - image``, so the
    values stay in the same range and the background stays positive.

    Examples
    --------
    >>> invert(np.array([[1.0, 5.0], [2.0, 3.0]])).tolist()
    [[5.0, 1.0], [4.0, 3.0]]
    """
    img = _image(image)
    return (img.max() + img.min() - img).astype(np.float32)


PREPROCESSORS = {"stm": stm, "plane": plane, "invert": invert}
"""Named preprocessing for :func:`atomstat.analyze` (``preprocess="stm"``)."""


def get_preprocessor(preprocess):
    """None, ``"none"``, a name in :data:`PREPROCESSORS` or a function of one image -> a
    function or None (``"none"``: the data as recorded, as None, but with no polarity check
    in :func:`atomstat.analyze`; see :mod:`atomstat.polarity`)."""
    if preprocess is None or callable(preprocess):
        return preprocess
    if preprocess == "none":
        return None
    if isinstance(preprocess, str) and preprocess in PREPROCESSORS:
        return PREPROCESSORS[preprocess]
    raise ValueError(
        f"preprocess must be None, 'none', {', '.join(map(repr, PREPROCESSORS))} or a "
        f"function of one image, got {preprocess!r}"
    )
