"""Pixels and colours for the views: 8-bit PNG images, label colours. No widgets.

Large images go to the browser as one 8-bit PNG, block-averaged so that the
longer side is at most ``max_side`` px; the extent returned keeps the pixel
coordinates of the full image, so overlays drawn in image px stay in place.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image as PILImage

__all__ = [
    "COLORMAPS",
    "UNLABELLED",
    "auto_limits",
    "display_png",
    "label_colors",
    "line_rows",
    "reduce",
]

UNLABELLED = "#ffffff"
PROB_COLOR = np.array([0.0, 0.85, 1.0])  # cyan: the probability in the blend
MAX_SIDE = 2048  # image px shown 1:1 up to 2048^2, so a zoom shows the recorded pixels
COLORMAPS = ("gray", "inferno", "viridis", "magma", "cividis", "gray_r")


def reduce(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, int]:
    """Block-average ``image`` by the smallest whole factor that fits ``max_side``.

    Returns the reduced image and the factor ``k``: reduced pixel ``(i, j)``
    covers full pixels ``k*i .. k*i + k - 1`` (the edge is padded by
    repetition).

    Examples
    --------
    >>> small, k = reduce(np.ones((2048, 1000)), 1024)
    >>> small.shape, k
    ((1024, 500), 2)
    """
    image = np.asarray(image, np.float32)
    k = int(np.ceil(max(image.shape) / max_side))
    if k <= 1:
        return image, 1
    h, w = image.shape
    padded = np.pad(image, ((0, -h % k), (0, -w % k)), mode="edge")
    return padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).mean(axis=(1, 3)), k


def auto_limits(image: np.ndarray) -> tuple[float, float]:
    """Contrast limits: the 0.5 and 99.5 percentiles of the finite pixels.

    Examples
    --------
    >>> auto_limits(np.arange(1001.0))
    (5.0, 995.0)
    """
    finite = np.asarray(image)[np.isfinite(image)]
    if not finite.size:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(high)


def _stretch(image: np.ndarray, limits=None) -> np.ndarray:
    low, high = auto_limits(image) if limits is None else limits
    out = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def _lut(cmap: str) -> np.ndarray:
    if cmap not in COLORMAPS:
        raise ValueError(f"cmap must be one of {COLORMAPS}, got {cmap!r}")
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def display_png(
    image: np.ndarray,
    prob: np.ndarray | None = None,
    mode: str = "raw",
    max_side: int = MAX_SIDE,
    *,
    limits: tuple[float, float] | None = None,
    cmap: str = "gray",
) -> tuple[bytes, tuple[float, float], tuple[float, float]]:
    """The PNG the image view shows, and its x and y extents in full-image px.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    prob : ndarray of shape (H, W), optional
    mode : {"raw", "probability", "blend"}
        The raw image (grey, stretched between its 0.5 and 99.5 percentiles),
        the probability map (grey, 0 to 1), or the raw image with the
        probability laid over it in cyan.
    max_side : int
        Longest side of the PNG.
    limits : (float, float), optional
        Pixel values shown as the darkest and the brightest colour of the
        raw image (default: :func:`auto_limits`).
    cmap : str
        One of :data:`COLORMAPS`, for the raw image (the probability map is
        always grey).

    Returns
    -------
    png : bytes
    x_extent, y_extent : (float, float)
        Where the PNG's outer pixel edges lie, in px of the full image
        (``y`` from bottom to top edge, for a y axis pointing down).
    """
    if mode not in ("raw", "probability", "blend"):
        raise ValueError(f"mode must be 'raw', 'probability' or 'blend', got {mode!r}")
    if mode != "raw" and prob is None:
        mode = "raw"
    small, k = reduce(image, max_side)
    if mode == "raw":
        pixels = (_stretch(small, limits) * 255).astype(np.uint8)
        pixels = pixels if cmap == "gray" else _lut(cmap)[pixels]
    elif mode == "probability":
        pixels = (np.clip(reduce(prob, max_side)[0], 0, 1) * 255).astype(np.uint8)
    else:
        grey = _stretch(small, limits)[..., None]
        alpha = 0.65 * np.clip(reduce(prob, max_side)[0], 0, 1)[..., None]
        pixels = ((grey * (1 - alpha) + PROB_COLOR * alpha) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    h, w = small.shape
    return buffer.getvalue(), (-0.5, w * k - 0.5), (h * k - 0.5, -0.5)


def label_colors(labels: pd.Series, classes: dict[str, str], default: str = UNLABELLED) -> list:
    """Hex colour of every row: its class colour, ``default`` where unlabelled.

    Examples
    --------
    >>> labels = pd.Series(pd.Categorical(["a", None], categories=["a"]))
    >>> label_colors(labels, {"a": "#ff0000"})
    ['#ff0000', '#ffffff']
    """
    values = labels.astype(object).to_numpy()
    return [classes.get(v, default) if isinstance(v, str) else default for v in values]


def line_rows(xs: list, ys: list) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Stack lines of different lengths into the 2-D ``x``, ``y`` of one bqplot Lines mark.

    Trailing NaNs are dropped and each line is padded by repeating its last
    point (bqplot places a line's label at its last point, which must be
    finite). NaNs inside a line stay: they break it into pieces. Lines with
    no finite point are left out; ``kept`` lists the lines that remain.

    Examples
    --------
    >>> x, y, kept = line_rows([[0.0, 1.0, np.nan], [np.nan], [5.0]], [[0, 0, 0], [1], [1]])
    >>> x.tolist(), y.tolist(), kept
    ([[0.0, 1.0], [5.0, 5.0]], [[0.0, 0.0], [1.0, 1.0]], [0, 2])
    """
    cut, kept = [], []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        if len(ok):
            cut.append((x[: ok[-1] + 1], y[: ok[-1] + 1]))
            kept.append(i)
    if not cut:
        return np.zeros((0, 0)), np.zeros((0, 0)), kept
    width = max(len(x) for x, _ in cut)

    def pad(a):
        return np.pad(a, (0, width - len(a)), mode="edge")

    return np.array([pad(x) for x, _ in cut]), np.array([pad(y) for _, y in cut]), kept
