"""Labelled figures: classes in colour, descriptor scatter, scale bar, the annotated figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..table import validate_atoms
from .atoms import _FIG_WIDTH, _aspect, show_image

__all__ = [
    "add_scale_bar",
    "annotated_figure",
    "label_groups",
    "nice_length",
    "plot_descriptors",
    "plot_labels",
]

_UNLABELLED_COLOR = "#bdbdbd"
_LENGTHS = ("perimeter", "axis_major", "axis_minor", "nn_distance", "nnn_distance")


def label_groups(atoms: pd.DataFrame, labels=None) -> tuple[pd.Series, dict]:
    """Per-atom class names and a colour per class, from any kind of labels.

    Parameters
    ----------
    atoms : pandas.DataFrame
    labels : None, LabelSet, str or pandas.Series
        A :class:`~atomstat.labels.LabelSet` (its names and colours); the name
        of a column (``"anomaly"``, ``"cluster"``, ``"label"``...); or a
        Series aligned on the atom ids. Booleans give one class named after
        the Series; integers (clusters) give ``"<name> <k>"`` with -1 as no
        class; text gives one class per name. Floats are classes only when
        they are whole numbers (integers with gaps).

    Returns
    -------
    names : pandas.Series of object
        Class name per atom (None for no class), aligned to ``atoms.index``.
    colors : dict
        Class name -> colour, in legend order.

    Raises
    ------
    TypeError
        If ``atoms`` is not a DataFrame, ``labels`` is none of these kinds,
        or it holds measurements (floats such as ``"x"``) rather than classes.
    ValueError
        If ``labels`` names no column of ``atoms``.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [0.0, 1.0, 2.0], "y": [0.0, 0.0, 0.0]})
    >>> atoms["cluster"] = [0, 1, -1]
    >>> names, colors = label_groups(atoms, "cluster")
    >>> names.tolist(), list(colors)
    (['cluster 0', 'cluster 1', None], ['cluster 0', 'cluster 1'])
    """
    from ..labels import PALETTE, LabelSet

    validate_atoms(atoms, required=())
    if labels is None:
        return pd.Series(None, index=atoms.index, dtype=object), {}
    if isinstance(labels, LabelSet):
        names = labels.labels(atoms.index).astype(object)
        names = names.where(names.notna(), None)
        return names, labels.classes
    if isinstance(labels, str):
        if labels not in atoms.columns:
            raise ValueError(f"labels names no column of the atoms table: {labels!r}")
        labels = atoms[labels]
    if not isinstance(labels, pd.Series):
        raise TypeError(
            f"labels must be None, a LabelSet, a column name or a Series, got {labels!r}"
        )
    labels = labels.reindex(atoms.index)
    title = labels.name if isinstance(labels.name, str) else "label"
    if pd.api.types.is_bool_dtype(labels):
        names = labels.map({True: title, False: None})
    elif pd.api.types.is_integer_dtype(labels) or _whole_floats(labels, title):
        names = labels.map(lambda v: None if pd.isna(v) or v < 0 else f"{title} {int(v)}")
    else:
        names = labels.astype(object).map(lambda v: None if pd.isna(v) else str(v))
    names = names.astype(object).where(names.notna(), None)
    order = sorted(set(names.dropna()), key=_natural)
    colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(order)}
    return names, colors


def plot_labels(
    image: np.ndarray,
    atoms: pd.DataFrame,
    labels=None,
    *,
    ax=None,
    style: str = "markers",
    prob: np.ndarray | None = None,
    threshold: float = 0.5,
    unlabelled: str | None = "unlabelled",
    legend: bool = True,
    scale_bar: bool = True,
):
    """Draw the image with every atom marked in the colour of its class.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    atoms : pandas.DataFrame
        The atoms table of this image (one frame).
    labels : None, LabelSet, str or pandas.Series
        See :func:`label_groups`.
    ax : matplotlib Axes, optional
    style : {"markers", "ellipses", "contours"}
        Rings around the centres; the blobs' equivalent ellipses; or the
        blob contours traced on ``prob`` at ``threshold``.
    prob : ndarray of shape (H, W), optional
        The probability map (needed for ``style="contours"``).
    threshold : float
    unlabelled : str or None
        Legend entry for atoms without a class; None hides them.
    legend, scale_bar : bool
        Draw a legend; draw a scale bar in ``atoms.attrs`` units.

    Returns
    -------
    ax : matplotlib Axes
    """

    if style not in ("markers", "ellipses", "contours"):
        raise ValueError(f"style must be 'markers', 'ellipses' or 'contours', got {style!r}")
    if style == "contours" and prob is None:
        raise ValueError("style='contours' needs the probability map: pass prob=")
    validate_atoms(atoms, required=("x", "y"))
    image, ax = show_image(image, ax=ax)
    names, colors = label_groups(atoms, labels)
    ring = _ring_diameter(atoms)
    groups = [(None, _UNLABELLED_COLOR, unlabelled)] if unlabelled is not None else []
    groups += [(n, c, n) for n, c in colors.items()]
    handles = []
    for key, color, text in groups:
        members = atoms[names.isna()] if key is None else atoms[names == key]
        if not len(members):
            continue
        faint = key is None
        _marks(ax, members, color, faint, style=style, ring=ring, prob=prob, threshold=threshold)
        handles.append(_legend_handle(color, key is None, f"{text} ({len(members)})"))
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if legend and handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85)
    if scale_bar:
        add_scale_bar(ax, atoms.attrs.get("pixel_size", 1.0), atoms.attrs.get("units", "px"))
    return ax


def plot_descriptors(
    atoms: pd.DataFrame,
    x: str = "area",
    y: str = "circularity",
    labels=None,
    *,
    ax=None,
    unlabelled: str | None = "unlabelled",
    physical: bool = True,
):
    """Scatter two descriptors of every atom, coloured by class (the paper's Fig. 3c).

    Lengths and areas are shown in ``atoms.attrs`` units when ``physical``.
    Atoms cut by the border are left out.

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt

    validate_atoms(atoms, required=())
    for name in (x, y):
        if name not in atoms.columns:
            raise ValueError(f"no column {name!r} in the atoms table")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3.0))
    names, colors = label_groups(atoms, labels)
    keep = ~atoms["edge"].to_numpy(bool) if "edge" in atoms else np.ones(len(atoms), bool)
    xs, xlabel = _physical(atoms, x, physical)
    ys, ylabel = _physical(atoms, y, physical)
    if unlabelled is not None:
        sel = keep & names.isna().to_numpy()
        ax.scatter(xs[sel], ys[sel], s=4, c=_UNLABELLED_COLOR, lw=0, label=unlabelled)
    for key, color in colors.items():
        sel = keep & (names == key).to_numpy()
        ax.scatter(xs[sel], ys[sel], s=14, c=color, lw=0.3, edgecolors="k", label=key)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return ax


def annotated_figure(
    image: np.ndarray,
    atoms: pd.DataFrame,
    labels=None,
    *,
    scatter: tuple[str, str] | None = ("area", "circularity"),
    title: str | None = None,
    **kwargs,
):
    """The publication figure: the labelled image and, beside it, a descriptor scatter.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    atoms : pandas.DataFrame
        The atoms of this image (frame 0 of a stack is used if there are more).
    labels : None, LabelSet, str or pandas.Series
        See :func:`label_groups`.
    scatter : (str, str) or None
        The two descriptors of the scatter; None for the image alone.
    title : str, optional
    **kwargs
        Passed to :func:`plot_labels` (``style``, ``prob``, ``unlabelled``...).

    Returns
    -------
    fig : matplotlib Figure

    Raises
    ------
    TypeError
        If ``atoms`` is not a DataFrame or ``labels`` is none of the kinds
        :func:`label_groups` takes.
    ValueError
        If ``image`` is not 2-D or ``atoms`` lacks ``x`` or ``y``.
    """
    import matplotlib.pyplot as plt

    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    validate_atoms(atoms, required=("x", "y"))
    label_groups(atoms, labels)  # refuse bad labels before a figure is made
    if "frame" in atoms and atoms["frame"].nunique() > 1:
        atoms = atoms[atoms["frame"] == atoms["frame"].min()]
    if scatter is None:
        fig, ax = plt.subplots(figsize=(_FIG_WIDTH * 0.6, _FIG_WIDTH * 0.6 * _aspect(image)))
        plot_labels(image, atoms, labels, ax=ax, **kwargs)
    else:
        side = _FIG_WIDTH * 0.58
        ratios = [1.0 / _aspect(image), 0.85]
        fig, (ax, ax2) = plt.subplots(
            1, 2, figsize=(_FIG_WIDTH, side * _aspect(image)), width_ratios=ratios
        )
        plot_labels(image, atoms, labels, ax=ax, **kwargs)
        plot_descriptors(
            atoms, *scatter, labels, ax=ax2, unlabelled=kwargs.get("unlabelled", "unlabelled")
        )
        ax2.set_box_aspect(1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def add_scale_bar(ax, pixel_size: float, units: str, *, fraction: float = 0.2, color="white"):
    """Draw a scale bar of a round length (1, 2 or 5 x 10^k units) in the lower right.

    Its length is about ``fraction`` of the image width (the x limits of ``ax``).

    Returns
    -------
    length : float
        The bar's length in ``units``.
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number, got {pixel_size!r}")
    x0, x1 = sorted(ax.get_xlim())
    length = nice_length((x1 - x0) * pixel_size * fraction)
    bar = AnchoredSizeBar(
        ax.transData,
        length / pixel_size,
        f"{length:g} {units or 'px'}",
        "lower right",
        pad=0.6,
        borderpad=0.8,
        sep=3,
        color=color,
        frameon=False,
        size_vertical=max((x1 - x0) / 150, 1.0),
        fontproperties={"size": 8, "weight": "bold"},
    )
    ax.add_artist(bar)
    return length


def nice_length(target: float) -> float:
    """The largest of 1, 2, 5 x 10^k that does not exceed ``target``.

    Examples
    --------
    >>> nice_length(0.73), nice_length(180.0), nice_length(0.04)
    (0.5, 100.0, 0.02)
    """
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive number, got {target!r}")
    power = 10.0 ** np.floor(np.log10(target))
    step = max(s for s in (1, 2, 5) if s * power <= target * (1 + 1e-9))
    return float(round(step * power, 12))


def _whole_floats(labels: pd.Series, title: str) -> bool:
    """True for floats that are whole numbers (class numbers, NaN for none); refuse others."""
    if not pd.api.types.is_float_dtype(labels):
        return False
    values = labels.to_numpy(float)
    values = values[np.isfinite(values)]
    if np.any(values != np.round(values)):
        raise TypeError(
            f"labels {title!r} holds measurements (floats such as {values[0]:g}), not classes: "
            "pass a LabelSet, None, or a column of booleans, integers or names"
        )
    return True


def _natural(name):
    parts = str(name).rsplit(" ", 1)
    if len(parts) == 2 and parts[1].lstrip("-").isdigit():
        return (parts[0], int(parts[1]))
    return (str(name), -1)


def _physical(atoms, column, physical):
    values = atoms[column].to_numpy(float)
    size, units = atoms.attrs.get("pixel_size", 1.0), atoms.attrs.get("units", "px")
    p = 2 if column == "area" else int(column in _LENGTHS)
    if not physical or p == 0 or units in (None, "", "px"):
        unit = {1: " (px)", 2: " (px$^2$)"}.get(p, "")
        return values, f"{column}{unit}"
    return values * size**p, f"{column} ({units}{'$^2$' if p == 2 else ''})"


def _ring_diameter(atoms):
    nn = atoms["nn_distance"].to_numpy(float) if "nn_distance" in atoms else np.array([np.nan])
    return float(0.6 * np.nanmedian(nn)) if np.isfinite(nn).any() else 6.0


def _marks(ax, members, color, faint, *, style, ring, prob, threshold):
    """Rings (filled dots when faint), equivalent ellipses, or contours of one class."""
    from matplotlib.collections import EllipseCollection

    if style == "contours":
        return _contours(ax, members, color, faint, prob, threshold)
    n = len(members)
    if style == "markers":
        d = np.full(n, ring * (0.3 if faint else 1.0))
        widths, heights, angles = d, d, np.zeros(n)
    else:  # orientation turns counter-clockwise as displayed; matplotlib's angles turn
        # clockwise on screen when the y axis points down (row 0 on top)
        widths, heights = members["axis_major"].to_numpy(), members["axis_minor"].to_numpy()
        angles = -members["orientation"].to_numpy()
    fill = faint and style == "markers"
    coll = EllipseCollection(
        widths,
        heights,
        angles,
        units="xy",
        offsets=members[["x", "y"]].to_numpy(float),
        offset_transform=ax.transData,
        facecolors=color if fill else "none",
        edgecolors="none" if fill else color,
        linewidths=0.6 if faint else 1.2,
        alpha=0.55 if faint else 1.0,
    )
    ax.add_collection(coll)


def _contours(ax, members, color, faint, prob, threshold):
    from scipy import ndimage

    prob = np.asarray(prob, dtype=float)
    blobs, _n = ndimage.label(prob >= threshold)
    h, w = blobs.shape
    r = np.clip(np.round(members["y"].to_numpy(float)).astype(int), 0, h - 1)
    c = np.clip(np.round(members["x"].to_numpy(float)).astype(int), 0, w - 1)
    ids = np.unique(blobs[r, c])
    mask = np.isin(blobs, ids[ids > 0])
    if mask.any():
        ax.contour(
            mask.astype(float), levels=[0.5], colors=[color], linewidths=0.5 if faint else 1.0
        )


def _legend_handle(color, faint, text):
    from matplotlib.lines import Line2D

    if faint:
        return Line2D([], [], ls="none", marker="o", ms=4, mfc=color, mec="none", label=text)
    return Line2D([], [], ls="none", marker="o", ms=7, mfc="none", mec=color, mew=1.5, label=text)
