"""Molecules drawn on their image: coloured by orientation, misfits circled."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .atoms import show_image

__all__ = ["plot_molecules"]


def plot_molecules(
    image: np.ndarray,
    molecules: pd.DataFrame,
    atoms: pd.DataFrame | None = None,
    *,
    ax=None,
    cmap: str = "hsv",
    misfit_color: str = "#ff3b30",
    colorbar: bool = True,
):
    """Draw an image with every molecule coloured by its orientation and the misfits circled.

    Each molecule gets a bar from its centre along its orientation (the
    direction of its template's first blob) and, with ``atoms``, a dot on
    each of its blobs, in a cyclic colour of the orientation over
    ``[0, 360 / symmetry)``. Molecules flagged ``misfit`` (switching during
    the scan) are circled in ``misfit_color`` and drawn without a bar;
    ``edge`` molecules are drawn faint.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    molecules : pandas.DataFrame
        From :func:`atomstat.find_molecules` (``x``, ``y``, ``orientation``,
        ``misfit``, ``edge``; ``attrs["symmetry"]`` and ``attrs["template"]``
        set the colour period and the bar length).
    atoms : pandas.DataFrame, optional
        The atoms table with its ``molecule`` column.
    ax : matplotlib Axes, optional
    cmap : str
        A cyclic colormap.
    misfit_color : str
    colorbar : bool
        Add a colour bar of the orientation (degrees).

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.patches import Circle

    image, ax = show_image(image, ax=ax, width=7.0)
    period = 360.0 / (molecules.attrs.get("symmetry") or 1)
    template = np.asarray(molecules.attrs.get("template") or [[4.0, 0.0]], float)
    length = float(np.hypot(*template.T).max()) or 4.0
    norm = plt.Normalize(0.0, period)
    colours = plt.get_cmap(cmap)(norm(molecules["orientation"].fillna(0).to_numpy()))
    alpha = np.where(molecules["edge"].to_numpy(bool), 0.35, 1.0)
    colours[:, 3] = alpha
    if atoms is not None and len(atoms) and "molecule" in atoms:
        where = molecules.index.get_indexer(atoms["molecule"].to_numpy())
        shown = where >= 0
        ax.scatter(atoms["x"][shown], atoms["y"][shown], s=9, c=colours[where[shown]], lw=0)
    calm = ~molecules["misfit"].to_numpy(bool) & molecules["orientation"].notna().to_numpy()
    x, y = molecules["x"].to_numpy(float), molecules["y"].to_numpy(float)
    theta = np.deg2rad(molecules["orientation"].to_numpy(float))
    tip = np.column_stack([x + length * np.cos(theta), y - length * np.sin(theta)])  # row 0 on top
    segments = np.stack([np.column_stack([x, y]), tip], axis=1)[calm]
    ax.add_collection(LineCollection(segments, colors=colours[calm], linewidths=1.6))
    bad = molecules["misfit"].to_numpy(bool)
    rings = [Circle((xi, yi), 1.7 * length) for xi, yi in zip(x[bad], y[bad], strict=True)]
    ax.add_collection(PatchCollection(rings, facecolor="none", edgecolor=misfit_color, lw=1.4))
    if colorbar:
        mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        bar = ax.figure.colorbar(mappable, ax=ax, fraction=0.04, pad=0.01)
        bar.set_label("orientation (degrees)")
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return ax
