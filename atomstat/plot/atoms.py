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
    """Write the image with its atoms marked to ``path`` (PNG, SVG or PDF by suffix).

    The picture is :func:`plot_atoms`' on an 8 inch wide figure at ``dpi``. A PNG
    (or JPEG, TIFF) is drawn with Pillow, the same picture without matplotlib's
    import and layout (1.6 s of a one-file CLI run); SVG and PDF with matplotlib.
    """
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        return _raster_overlay(path, image, atoms, title=title, dpi=dpi)
    from matplotlib.figure import Figure  # not pyplot: no backend, no global figure (faster)

    h, w = np.shape(image)
    fig = Figure(figsize=(8, 8 * h / w))
    ax = fig.subplots()
    plot_atoms(image, atoms, ax=ax)
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return None


_RED = (255, 59, 48)  # plot_atoms' default colour


def _raster_overlay(path, image, atoms, *, title, dpi):
    """:func:`save_overlay` with Pillow: the grey image (0.5-99.8 percentiles, nearest
    neighbour), filled dots on the atoms, rings on those cut by the border, the title
    above."""
    from PIL import Image, ImageDraw, ImageFont

    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    h, w = image.shape
    low, high = np.nanpercentile(image, [0.5, 99.8]) if np.isfinite(image).any() else (0, 1)
    grey = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    grey = (np.nan_to_num(grey) * 255).astype(np.uint8)
    scale = 8.0 * dpi / w  # px of the picture per image px, as the 8 inch figure
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    picture = Image.fromarray(grey).resize(size, Image.Resampling.NEAREST).convert("RGBA")
    dots = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(dots)
    radius = float(np.clip(2000 / max(h, w), 1.5, 12)) * dpi / 72 / 2  # marker points -> px
    edge = atoms["edge"].to_numpy(bool) if "edge" in atoms else np.zeros(len(atoms), bool)
    x = (atoms["x"].to_numpy(float) + 0.5) * scale
    y = (atoms["y"].to_numpy(float) + 0.5) * scale
    ring = max(1, round(dpi / 72))
    for cx, cy, cut in zip(x, y, edge, strict=True):
        if not (np.isfinite(cx) and np.isfinite(cy)):
            continue
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if cut:
            draw.ellipse(box, outline=(*_RED, 255), width=ring)
        else:
            draw.ellipse(box, fill=(*_RED, 217))  # alpha 0.85
    picture = Image.alpha_composite(picture, dots).convert("RGB")
    if title:
        font = ImageFont.load_default(size=max(10, round(9 * dpi / 72)))
        left, top, right, bottom = font.getbbox(title)
        strip = bottom + round(0.6 * (bottom - top)) + 4
        framed = Image.new("RGB", (size[0], size[1] + strip), "white")
        framed.paste(picture, (0, strip))
        ImageDraw.Draw(framed).text(
            ((size[0] - (right - left)) / 2, 2), title, fill="black", font=font
        )
        picture = framed
    picture.save(path)


# ------------------------------------------------------------------ labelled figures
