"""The image with its atoms drawn on top; overlay files."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_atoms", "save_overlay", "show_image"]

_FIG_WIDTH = 7.0  # inches: a two-column figure in most journals


def _aspect(image):
    h, w = np.shape(image)[:2]
    return h / w


def show_image(image: np.ndarray, *, ax=None, width: float = _FIG_WIDTH * 0.6):
    """Draw a 2-D image in grey, stretched between its 0.5 and 99.8 percentiles.

    Returns ``(image, ax)``: the image as a float array and the axes (a new
    figure ``width`` inches wide when ``ax`` is None).
    """
    import matplotlib.pyplot as plt

    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(width, width * _aspect(image)))
    low, high = np.nanpercentile(image, [0.5, 99.8])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    return image, ax


def plot_atoms(
    image: np.ndarray,
    atoms: pd.DataFrame,
    *,
    ax=None,
    color="#ff3b30",
    size: float | None = None,
    show_edge: bool = True,
):
    """Draw an image in grey with a marker on every atom centre.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    atoms : pandas.DataFrame
        The atoms table (``x``, ``y``; ``edge`` atoms are drawn hollow).
    ax : matplotlib Axes, optional
    color : str
    size : float, optional
        Marker size in points; by default it follows the image size.
    show_edge : bool
        Draw atoms cut by the border as hollow markers.

    Returns
    -------
    ax : matplotlib Axes
    """
    image, ax = show_image(image, ax=ax, width=8.0)
    size = size or float(np.clip(2000 / max(image.shape), 1.5, 12))
    inner = atoms[~atoms["edge"]] if show_edge and "edge" in atoms else atoms
    ax.plot(inner["x"], inner["y"], "o", ms=size, mfc=color, mec="none", alpha=0.85)
    if show_edge and "edge" in atoms and atoms["edge"].any():
        edge = atoms[atoms["edge"]]
        ax.plot(edge["x"], edge["y"], "o", ms=size, mfc="none", mec=color, mew=1)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return ax


def save_overlay(
    path, image: np.ndarray, atoms: pd.DataFrame, *, title: str | None = None, dpi: int = 150
) -> None:
    """Write the image with its atoms marked to ``path`` (PNG, SVG or PDF by suffix)."""
    from matplotlib.figure import Figure  # not pyplot: no backend, no global figure (faster)

    h, w = np.shape(image)
    fig = Figure(figsize=(8, 8 * h / w))
    ax = fig.subplots()
    plot_atoms(image, atoms, ax=ax)
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


# ------------------------------------------------------------------ labelled figures
