"""Movie figures: numbered dumbbells, angle distributions and series, drift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .atoms import _FIG_WIDTH, show_image

__all__ = [
    "movie_figure",
    "plot_angle_distribution",
    "plot_angle_series",
    "plot_drift",
    "plot_dumbbells",
]


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
    from matplotlib.collections import LineCollection

    image, ax = show_image(image, ax=ax)
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

    from ..timeseries import angle_centre, wrap_angles

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

    from ..timeseries import angle_centre, unwrap_angles, wrap_angles

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


def movie_figure(
    image: np.ndarray,
    tracks: pd.DataFrame,
    picked=None,
    *,
    frame: int = 0,
    pixel_size: float = 1.0,
    units: str = "px",
    title: str | None = None,
):
    """One frame with its dumbbells, the angles of every frame, and the picked tracks' angles.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        The frame shown.
    tracks : pandas.DataFrame
        Tracked dumbbells (``frame``, ``particle``, ``x``, ``y``, ``angle``,
        ``separation``).
    picked : sequence of int, optional
        Tracks circled on the image and drawn in the angle series; by default
        the six longest.
    frame : int
        The frame of ``image``.
    pixel_size, units : float, str
        The calibration: the image's axes are in ``units``.
    title : str, optional

    Returns
    -------
    fig : matplotlib Figure
        Three panels, every axis labelled with its unit.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    if not np.isfinite(pixel_size) or pixel_size <= 0:
        raise ValueError(f"pixel_size must be a finite number above 0, got {pixel_size!r}")
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(_FIG_WIDTH * 1.6, 3.4),
                                     gridspec_kw={"width_ratios": [1.1, 1, 1]})  # fmt: skip
    rows = tracks[tracks["frame"] == frame]
    picked = None if picked is None or not len(picked) else [int(p) for p in picked]
    plot_dumbbells(image, rows, ax=a0, highlight=picked, numbers=False)
    a0.set_axis_on()
    scaled = FuncFormatter(lambda v, _: f"{v * pixel_size:.3g}")
    a0.xaxis.set_major_formatter(scaled)
    a0.yaxis.set_major_formatter(scaled)
    a0.set_xlabel(f"x ({units})", fontsize=8)
    a0.set_ylabel(f"y ({units})", fontsize=8)
    a0.tick_params(labelsize=7)
    a0.set_title(f"frame {frame}", fontsize=8)
    plot_angle_distribution(tracks, ax=a1)
    a1.set_title("angles in every frame", fontsize=8)
    plot_angle_series(tracks, picked, ax=a2)
    a2.set_title("picked dumbbells" if picked else "longest tracks", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
