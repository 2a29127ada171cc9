"""Elongation arrows: the direction in which each (anomalous) blob is stretched.

The LCMO figure of the paper (Fig. 6e): charge-ordered sites show as blobs
stretched along one direction; an arrow on each flagged blob points along its
long axis, and its length grows with how stretched the blob is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .atoms import show_image

__all__ = ["elongation_vectors", "plot_elongation"]


def elongation_vectors(atoms: pd.DataFrame, *, length: float | None = None) -> pd.DataFrame:
    """Arrow components for each blob: ``u``, ``v`` in px in image coordinates (x to
    the right, y down, as the table's ``x``, ``y``) and ``stretch``.

    The arrow lies along the blob's long axis (``orientation``, degrees
    counter-clockwise from +x as displayed; an axis, so the arrow is drawn with
    u >= 0) and its length is ``length * stretch`` px, where ``stretch = 1 -
    axis_minor / axis_major`` (0 for a round blob, towards 1 for a line).
    ``length`` defaults to twice the median ``axis_major``.
    """
    for column in ("orientation", "axis_major", "axis_minor"):
        if column not in atoms.columns:
            raise ValueError(f"the atoms table has no column '{column}' (atomstat.locate adds it)")
    major = atoms["axis_major"].to_numpy(float)
    minor = atoms["axis_minor"].to_numpy(float)
    stretch = np.clip(1 - np.divide(minor, major, out=np.ones_like(major), where=major > 0), 0, 1)
    if length is None:
        length = 2 * float(np.nanmedian(major)) if len(major) else 1.0
    phi = np.deg2rad(atoms["orientation"].to_numpy(float) % 180.0)
    # As displayed the row axis points down: counter-clockwise means -y in array coordinates.
    u, v = np.cos(phi), -np.sin(phi)
    flip = u < 0
    u[flip], v[flip] = -u[flip], -v[flip]
    size = length * stretch
    return pd.DataFrame({"u": u * size, "v": v * size, "stretch": stretch}, index=atoms.index)


def plot_elongation(
    image,
    atoms: pd.DataFrame,
    mask=None,
    *,
    ax=None,
    length: float | None = None,
    color: str = "#d55e00",
    others: str | None = "#56b4e9",
):
    """Draw the image with an arrow along the long axis of each selected blob.

    Parameters
    ----------
    image : ndarray (H, W)
    atoms : DataFrame
        The atoms table of this image (frame 0 of a stack is used).
    mask : array-like of bool or str, optional
        The blobs that get arrows: a boolean array/Series aligned with
        ``atoms`` or a boolean column name; by default the ``anomaly`` column
        when there is one, else every blob.
    length : float, optional
        Arrow length in px for a fully stretched blob (see
        :func:`elongation_vectors`); default twice the median blob length.
    color : str
        Arrow colour.
    others : str or None
        Colour of small dots on the blobs without arrows (None: not drawn).

    Returns
    -------
    ax : matplotlib Axes
        The arrows are the ``matplotlib.quiver.Quiver`` in ``ax.collections``,
        with U, V in px in the image's coordinates (x right, y down), as
        :func:`elongation_vectors` gives them.
    """
    if "frame" in atoms.columns and atoms["frame"].nunique() > 1:
        atoms = atoms[atoms["frame"] == atoms["frame"].min()]
    if mask is None:
        mask = atoms["anomaly"] if "anomaly" in atoms.columns else np.ones(len(atoms), bool)
    elif isinstance(mask, str):
        mask = atoms[mask]
    mask = np.asarray(mask, bool)
    if mask.shape != (len(atoms),):
        raise ValueError(f"mask must have one value per atom ({len(atoms)}), got {mask.shape}")
    _, ax = show_image(image, ax=ax)
    arrows = elongation_vectors(atoms, length=length)
    chosen = atoms[mask]
    if others is not None and (~mask).any():
        rest = atoms[~mask]
        ax.plot(rest["x"], rest["y"], ".", color=others, markersize=2, alpha=0.6)
    # angles="xy": the arrows follow the data coordinates, whose y points down on the image.
    ax.quiver(
        chosen["x"].to_numpy(),
        chosen["y"].to_numpy(),
        arrows["u"].to_numpy()[mask],
        arrows["v"].to_numpy()[mask],
        color=color,
        angles="xy",
        scale_units="xy",
        scale=1,
        pivot="middle",
        width=0.004,
        headwidth=3,
        headlength=3.5,
    )
    ax.set_axis_off()
    ax.set_title(f"elongation of {int(mask.sum())} of {len(atoms)} blobs")
    return ax
