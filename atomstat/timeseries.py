"""Time series of tracked features: one row per (particle, frame), and angle helpers.

Dumbbell angles live modulo 180 degrees: a dumbbell at 179.5 degrees that
turns by one degree reads 0.5. :func:`unwrap_angles` makes each track
continuous, :func:`wrap_angles` puts a set of angles in one half-turn window
around their axial mean (so a distribution near 0/180 is not split in two),
and :func:`axial_mean` is the mean of such angles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._checks import number

__all__ = [
    "angle_centre",
    "axial_mean",
    "frame_summary",
    "time_series",
    "unwrap_angles",
    "wrap_angles",
]

_IDS = ("particle", "frame", "atom_a", "atom_b")


def time_series(
    tracks: pd.DataFrame, columns=None, *, min_frames: int = 1, unwrap: bool = True
) -> pd.DataFrame:
    """Tidy table of tracked features: one row per (particle, frame).

    Parameters
    ----------
    tracks : pandas.DataFrame
        Output of :func:`atomstat.track` (``particle``, ``frame``, ``x``,
        ``y`` and any descriptors).
    columns : sequence of str, optional
        Descriptors to keep (``angle``, ``area``, ``intensity``...); by
        default every numeric column.
    min_frames : int
        Keep only particles seen in at least this many frames.
    unwrap : bool
        Add ``angle_unwrapped``: each particle's angle made continuous
        across the 0/180 wrap (see :func:`unwrap_angles`).

    Returns
    -------
    series : pandas.DataFrame
        Columns ``particle``, ``frame``, ``x``, ``y``, ``x_aligned``,
        ``y_aligned`` (positions with the drift taken out, when ``tracks``
        carries one), then the descriptors; sorted by particle and frame.
        ``attrs`` is that of ``tracks``.

    Raises
    ------
    ValueError
        If ``tracks`` has no ``particle`` column, or a column is unknown.

    Examples
    --------
    >>> tracks = pd.DataFrame({"particle": [0, 0, 0, 1], "frame": [0, 1, 2, 0],
    ...                        "x": [1.0, 2, 3, 9], "y": [0.0, 0, 0, 9],
    ...                        "angle": [178.0, 1.0, 3.0, 90.0]})
    >>> series = time_series(tracks, ["angle"], min_frames=2)
    >>> series[["particle", "frame", "angle", "angle_unwrapped"]].to_numpy().tolist()
    [[0.0, 0.0, 178.0, 178.0], [0.0, 1.0, 1.0, 181.0], [0.0, 2.0, 3.0, 183.0]]
    """
    from .table import validate_atoms

    validate_atoms(tracks, required=("particle", "frame", "x", "y"))
    if not (isinstance(min_frames, int | np.integer) and min_frames >= 1):
        raise ValueError(f"min_frames must be a positive integer, got {min_frames!r}")
    if columns is None:
        columns = [
            c
            for c in tracks.columns
            if c not in (*_IDS, "x", "y") and pd.api.types.is_numeric_dtype(tracks[c])
        ]
    columns = [columns] if isinstance(columns, str) else list(columns)
    unknown = [c for c in columns if c not in tracks.columns]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the tracks table; it has {list(tracks)}")
    seen = tracks.groupby("particle")["frame"].transform("size")
    keep = ["particle", "frame", "x", "y", *[c for c in columns if c not in ("x", "y")]]
    out = tracks.loc[seen >= min_frames, keep].sort_values(["particle", "frame"], kind="stable")
    out = out.reset_index(drop=True)
    out = _aligned(out, tracks.attrs.get("drift"))
    if unwrap and "angle" in out:
        out["angle_unwrapped"] = out.groupby("particle")["angle"].transform(unwrap_angles)
    out.attrs.update(tracks.attrs)
    return out


def unwrap_angles(angles, period: float = 180.0) -> np.ndarray:
    """Make a sequence of angles continuous across the wrap at ``period``.

    Each step is taken as the shortest turn (at most half a period), so the
    result may leave [0, period). NaN entries stay NaN and are skipped.

    Examples
    --------
    >>> unwrap_angles([170.0, 178.0, 2.0, 9.0, np.nan, 175.0]).tolist()
    [170.0, 178.0, 182.0, 189.0, nan, 175.0]
    """
    period = number("period", period, low=0, low_open=True)
    angles = np.asarray(angles, float)
    out = np.full(angles.shape, np.nan)
    ok = np.isfinite(angles)
    if ok.any():
        out[ok] = np.unwrap(angles[ok], period=period)
    return out


def axial_mean(angles, period: float = 180.0) -> float:
    """Mean direction of angles defined modulo ``period`` (degrees in [0, period)).

    Examples
    --------
    >>> round(axial_mean([10.0, 20.0]), 6), round(axial_mean([176.0, 2.0]), 6)
    (15.0, 179.0)
    """
    angles = np.asarray(angles, float)
    angles = angles[np.isfinite(angles)]
    if not len(angles):
        return float("nan")
    t = np.deg2rad(angles) * (360.0 / period)
    mean = np.arctan2(np.sin(t).mean(), np.cos(t).mean())
    return float(np.rad2deg(mean) * period / 360.0 % period)


def angle_centre(angles, period: float = 180.0) -> float:
    """The :func:`axial_mean` taken in [-period/4, 3 period/4): where to centre a display.

    Angles near 0/180 are centred on 0 (so -2 and 2 read as such), angles
    near 90 on 90.

    Examples
    --------
    >>> round(angle_centre([179.0, 3.0]), 6), round(angle_centre([88.0, 94.0]), 6)
    (1.0, 91.0)
    """
    return (axial_mean(angles, period) + period / 4) % period - period / 4


def wrap_angles(angles, centre: float | None = None, period: float = 180.0) -> np.ndarray:
    """Angles moved by whole periods into [centre - period/2, centre + period/2).

    ``centre`` defaults to :func:`angle_centre`, so a distribution
    straddling 0/180 comes back in one piece.

    Examples
    --------
    >>> wrap_angles([178.0, 2.0, 4.0]).round(6).tolist()
    [-2.0, 2.0, 4.0]
    """
    angles = np.asarray(angles, float)
    centre = angle_centre(angles, period) if centre is None else float(centre)
    return (angles - centre + period / 2) % period + centre - period / 2


def frame_summary(table: pd.DataFrame, column: str = "angle") -> pd.DataFrame:
    """Per-frame statistics of an angle column: count, axial mean, spread.

    Returns a table indexed by ``frame`` with ``count``, ``mean`` (axial
    mean, degrees, in the half-turn around :func:`angle_centre` of the
    whole table, so that frames near 0/180 read alike), ``std`` (standard
    deviation of the angles wrapped around that mean), and ``p5``,
    ``median``, ``p95`` of the wrapped angles.

    Examples
    --------
    >>> table = pd.DataFrame({"frame": [0, 0, 1, 1], "angle": [177.0, 1.0, 178.0, 4.0]})
    >>> frame_summary(table)[["count", "mean", "std"]].round(3).to_numpy().tolist()
    [[2.0, -1.0, 2.828], [2.0, 1.0, 4.243]]
    """
    if column not in table or "frame" not in table:
        raise ValueError(f"table needs 'frame' and {column!r} columns; it has {list(table)}")
    rows = {}
    centre = angle_centre(table[column])
    for frame, values in table.groupby("frame")[column]:
        mean = float(wrap_angles([axial_mean(values)], centre)[0])
        wrapped = wrap_angles(values.to_numpy(), mean)
        rows[frame] = {
            "count": len(wrapped),
            "mean": mean,
            "std": float(np.std(wrapped, ddof=1)) if len(wrapped) > 1 else np.nan,
            "p5": float(np.percentile(wrapped, 5)),
            "median": float(np.median(wrapped)),
            "p95": float(np.percentile(wrapped, 95)),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("frame")


def _aligned(series, drift):
    """Add positions with the drift taken out, when the tracks carry a drift."""
    if not drift:
        return series
    shift = pd.DataFrame({"dx": drift["dx"], "dy": drift["dy"]}, index=drift["frame"])
    frames = series["frame"].to_numpy()
    series.insert(4, "x_aligned", series["x"].to_numpy() - shift["dx"].reindex(frames).to_numpy())
    series.insert(5, "y_aligned", series["y"].to_numpy() - shift["dy"].reindex(frames).to_numpy())
    return series
