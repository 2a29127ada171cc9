"""Figures: the image with its atoms drawn on top. The only module that draws.

Functions take ``ax=None`` and return the axes; they never show or print.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "add_scale_bar",
    "annotated_figure",
    "label_groups",
    "nice_length",
    "plot_atoms",
    "plot_descriptors",
    "plot_labels",
    "save_overlay",
]


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
    import matplotlib.pyplot as plt

    image = np.asarray(image, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8 * image.shape[0] / image.shape[1]))
    low, high = np.nanpercentile(image, [0.5, 99.8])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
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
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    h, w = np.shape(image)
    fig, ax = plt.subplots(figsize=(8, 8 * h / w))
    try:
        plot_atoms(image, atoms, ax=ax)
        if title:
            ax.set_title(title, fontsize=9)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


# ------------------------------------------------------------------ labelled figures

_UNLABELLED_COLOR = "#bdbdbd"
_FIG_WIDTH = 7.0  # inches: a two-column figure in most journals
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
        class.

    Returns
    -------
    names : pandas.Series of object
        Class name per atom (None for no class), aligned to ``atoms.index``.
    colors : dict
        Class name -> colour, in legend order.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [0.0, 1.0, 2.0], "y": [0.0, 0.0, 0.0]})
    >>> atoms["cluster"] = [0, 1, -1]
    >>> names, colors = label_groups(atoms, "cluster")
    >>> names.tolist(), list(colors)
    (['cluster 0', 'cluster 1', None], ['cluster 0', 'cluster 1'])
    """
    from .labels import PALETTE, LabelSet

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
    elif pd.api.types.is_integer_dtype(labels):
        names = labels.map(lambda v: None if pd.isna(v) or v < 0 else f"{title} {v}")
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
    import matplotlib.pyplot as plt

    if style not in ("markers", "ellipses", "contours"):
        raise ValueError(f"style must be 'markers', 'ellipses' or 'contours', got {style!r}")
    if style == "contours" and prob is None:
        raise ValueError("style='contours' needs the probability map: pass prob=")
    image = np.asarray(image, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(_FIG_WIDTH * 0.6, _FIG_WIDTH * 0.6 * _aspect(image)))
    low, high = np.nanpercentile(image, [0.5, 99.8])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
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
    """
    import matplotlib.pyplot as plt

    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
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


def _aspect(image):
    h, w = np.shape(image)[:2]
    return h / w


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


# ------------------------------------------------------------------ movies: dumbbells, tracks

__all__ += ["plot_angle_distribution", "plot_angle_series", "plot_drift", "plot_dumbbells"]


def plot_dumbbells(
    image: np.ndarray,
    dumbbells: pd.DataFrame,
    *,
    ax=None,
    numbers: bool = True,
    highlight=None,
    color: str = "#ff3b30",
    length: float | None = None,
):
    """Draw an image with every dumbbell as a bar along its angle, numbered by track.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    dumbbells : pandas.DataFrame
        Dumbbells of this frame (:func:`atomstat.pair_dumbbells`, or tracks
        from :func:`atomstat.track`): ``x``, ``y``, ``angle``,
        ``separation``; ``particle`` numbers the bars. Angles are measured
        from ``attrs["reference"]`` (degrees, 0 when absent).
    ax : matplotlib Axes, optional
    numbers : bool
        Write each dumbbell's ``particle`` number beside it.
    highlight : sequence of int, optional
        Particles drawn circled, in another colour (the ones of the angle plot).
    color : str
    length : float, optional
        Bar length in px; by default 1.6 times the separation.

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(_FIG_WIDTH * 0.6, _FIG_WIDTH * 0.6 * _aspect(image)))
    low, high = np.nanpercentile(image, [0.5, 99.8])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    theta = np.deg2rad(dumbbells["angle"].to_numpy(float) + dumbbells.attrs.get("reference", 0))
    sep = dumbbells["separation"].to_numpy(float)
    half = (1.6 * sep if length is None else np.full(len(sep), float(length))) / 2
    x, y = dumbbells["x"].to_numpy(float), dumbbells["y"].to_numpy(float)
    dx, dy = half * np.cos(theta), -half * np.sin(theta)  # row 0 on top
    segments = np.stack([np.column_stack([x - dx, y - dy]), np.column_stack([x + dx, y + dy])], 1)
    ax.add_collection(LineCollection(segments, colors=color, linewidths=1.5))
    ids = dumbbells["particle"].to_numpy() if "particle" in dumbbells else None
    if highlight is not None and ids is not None:
        sel = np.isin(ids, list(highlight))
        ax.plot(x[sel], y[sel], "o", ms=14, mfc="none", mec="#ff9f0a", mew=1.5)
    if numbers and ids is not None:
        for xi, yi, pi in zip(x, y, ids, strict=True):
            ax.text(xi + 0.5 * np.median(sep), yi, str(pi), color="#ffd60a", fontsize=6)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    return ax


def plot_angle_distribution(
    table: pd.DataFrame,
    *,
    column: str = "angle",
    ax=None,
    centre: float | None = None,
    kind: str = "violin",
):
    """The distribution of angles in every frame (the paper's Fig. 5b).

    Parameters
    ----------
    table : pandas.DataFrame
        Dumbbells or tracks with ``frame`` and ``column``.
    column : str
        The angle column (degrees, modulo 180).
    ax : matplotlib Axes, optional
    centre : float, optional
        Angles are shown in the half-turn around this angle; by default
        around their axial mean (:func:`atomstat.timeseries.angle_centre`),
        so a distribution at 0/180 stays whole.
    kind : {"violin", "box"}

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .timeseries import angle_centre, wrap_angles

    if kind not in ("violin", "box"):
        raise ValueError(f"kind must be 'violin' or 'box', got {kind!r}")
    if column not in table or "frame" not in table:
        raise ValueError(f"table needs 'frame' and {column!r} columns; it has {list(table)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(_FIG_WIDTH * 0.6, 2.6))
    centre = angle_centre(table[column]) if centre is None else centre
    groups = []
    for frame, values in table.groupby("frame")[column]:
        values = wrap_angles(values.to_numpy(float), centre)
        if np.isfinite(values).sum() > 1:
            groups.append((frame, values[np.isfinite(values)]))
    if groups:
        frames, values = zip(*groups, strict=True)
        if kind == "violin":
            parts = ax.violinplot(values, positions=frames, widths=0.8, showmedians=True)
            for body in parts["bodies"]:
                body.set_facecolor("#0a84ff")
                body.set_alpha(0.5)
        else:
            ax.boxplot(values, positions=frames, widths=0.6, showfliers=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel(f"{column} (deg)", fontsize=8)
    ax.tick_params(labelsize=7)
    return ax


def plot_angle_series(
    series: pd.DataFrame, particles=None, *, column: str = "angle", ax=None, n: int = 6
):
    """Angle against frame for chosen tracks (the paper's Fig. 5c).

    Parameters
    ----------
    series : pandas.DataFrame
        Tracks or a time series (:func:`atomstat.timeseries.time_series`)
        with ``particle``, ``frame`` and ``column``.
    particles : sequence of int, optional
        The tracks to draw; by default the ``n`` longest.
    column : str
        The angle column; each track is unwrapped across 0/180 and starts
        in the half-turn around the axial mean of the drawn angles
        (:func:`atomstat.timeseries.angle_centre`).
    ax : matplotlib Axes, optional
    n : int
        Number of tracks drawn when ``particles`` is None.

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from .timeseries import angle_centre, unwrap_angles, wrap_angles

    for name in ("particle", "frame", column):
        if name not in series:
            raise ValueError(f"series needs a {name!r} column; it has {list(series)}")
    if particles is None:
        sizes = series.groupby("particle").size()
        particles = sizes.sort_values(ascending=False, kind="stable").index[:n]
    missing = sorted(set(particles) - set(series["particle"]))
    if missing:
        raise ValueError(f"particle {missing[0]!r} is not in the series")
    chosen = series[series["particle"].isin(particles)]
    centre = angle_centre(chosen[column])
    if ax is None:
        _, ax = plt.subplots(figsize=(_FIG_WIDTH * 0.6, 2.6))
    for p in particles:
        track = chosen[chosen["particle"] == p].sort_values("frame")
        angle = unwrap_angles(track[column].to_numpy(float))
        angle = angle - angle[0] + wrap_angles(angle[:1], centre)[0]
        ax.plot(track["frame"], angle, "o-", ms=3, lw=1, label=f"#{p}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel(f"{column} (deg)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=3, loc="best")
    return ax


def plot_drift(drift: pd.DataFrame, *, ax=None, pixel_size: float = 1.0, units: str = "px"):
    """The sample's path through the movie: drift of every frame, numbered.

    Parameters
    ----------
    drift : pandas.DataFrame
        ``dx``, ``dy`` indexed by frame (:func:`atomstat.track.get_drift`).
    ax : matplotlib Axes, optional
    pixel_size, units : float, str
        Calibration of the axes.

    Returns
    -------
    ax : matplotlib Axes
    """
    import matplotlib.pyplot as plt

    if not {"dx", "dy"} <= set(drift.columns):
        raise ValueError(f"drift needs 'dx' and 'dy' columns; it has {list(drift.columns)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3.0, 3.0))
    x, y = drift["dx"].to_numpy() * pixel_size, drift["dy"].to_numpy() * pixel_size
    ax.plot(x, y, "o-", ms=3, lw=1, color="#0a84ff")
    for f, xi, yi in zip(drift.index, x, y, strict=True):
        ax.annotate(str(f), (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(f"drift x ({units})", fontsize=8)
    ax.set_ylabel(f"drift y ({units})", fontsize=8)
    ax.invert_yaxis()  # as displayed: row 0 on top
    ax.set_aspect("equal", adjustable="datalim")
    ax.tick_params(labelsize=7)
    return ax
