"""Follow features (atoms or dumbbells) through a movie, whatever the drift.

Plain nearest-neighbour linking fails once the sample drifts by half a
lattice spacing per frame: every feature then sits closer to its
neighbour's old place than to its own. :func:`track` therefore registers
every frame on the previous one first (:func:`atomstat.register.estimate_drift`:
cross-correlation of the frames, or a point-set match, refined on the
features), and links the drift-corrected positions with ``trackpy.link``,
with ``memory`` so that a feature missed in a frame or two keeps its
identity. The drift comes back with the tracks (:func:`get_drift`).
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pandas as pd

from ._checks import number
from .register import _spacing, check_drift, estimate_drift

__all__ = ["get_drift", "track"]

log = logging.getLogger(__name__)

_SEARCH = 0.35  # default search range, as a fraction of the feature spacing


def track(
    table: pd.DataFrame,
    *,
    images=None,
    search_range: float | None = None,
    memory: int = 2,
    drift: pd.DataFrame | None = None,
    client=None,
) -> pd.DataFrame:
    """Link features across frames after registering every frame on the previous one.

    Parameters
    ----------
    table : pandas.DataFrame
        Features with ``frame``, ``x``, ``y``: an atoms table or a dumbbells
        table (:func:`atomstat.pair_dumbbells`).
    images : ndarray of shape (T, H, W) or Signal2D, optional
        The movie, indexed by ``frame``; frames are read one at a time, so a
        lazy stack works. Without it, frames are registered on the features.
    search_range : float, optional
        Largest move (px) of a feature between frames after the drift is
        taken out; by default 0.35 times the median distance between
        neighbouring features.
    memory : int
        Frames a feature may go missing and keep its identity.
    drift : pandas.DataFrame, optional
        A known drift (``dx``, ``dy`` indexed by ``frame``, as from
        :func:`estimate_drift`); estimated when None.
    client : distributed.Client, optional
        Cross-correlate the frames for the drift as tasks on this Dask cluster
        (see :func:`estimate_drift`); the linking runs here, on the whole table.

    Returns
    -------
    tracks : pandas.DataFrame
        ``table`` with a ``particle`` column (int, numbered from 0 in order
        of first appearance, then top to bottom). ``attrs["drift"]`` holds
        the drift of every frame (read it with :func:`get_drift`), and
        ``attrs["search_range"]`` and ``attrs["memory"]`` the settings.

    Raises
    ------
    ValueError
        If a column is missing, ``x``, ``y`` or the drift hold NaN or inf,
        ``search_range`` or ``memory`` is invalid or ``search_range`` is too
        large for the density of features, or ``images`` does not cover the
        frames.

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> rng = np.random.default_rng(1)
    >>> pts = rng.uniform(0, 100, (30, 2))  # drift of 40 px per frame, many spacings
    >>> moved = np.concatenate([pts, pts + [40.0, 5.0], pts + [80.0, 12.0]])
    >>> table = make_atoms({"frame": np.repeat([0, 1, 2], 30), "x": moved[:, 0],
    ...                     "y": moved[:, 1]})
    >>> tracks = track(table)
    >>> tracks.groupby("particle").size().value_counts().to_dict()  # all 30 in all 3 frames
    {3: 30}
    >>> get_drift(tracks).round(2).to_numpy().tolist()
    [[0.0, 0.0], [40.0, 5.0], [80.0, 12.0]]
    """
    from .table import validate_atoms

    validate_atoms(table, finite=("x", "y"))
    memory = number("memory", memory, low=0, integer=True)
    if search_range is not None:
        search_range = number("search_range", search_range, low=0, low_open=True)
    if search_range is None:
        search_range = _SEARCH * _spacing(table)
    search_range = float(search_range)
    if drift is None:
        drift = estimate_drift(table, images, client=client)
    drift = check_drift(drift, table["frame"].unique())
    particle = _link(table, drift, search_range, int(memory))
    tracks = table.copy()
    tracks["particle"] = particle
    tracks.attrs["drift"] = {
        "frame": drift.index.tolist(),
        "dx": drift["dx"].tolist(),
        "dy": drift["dy"].tolist(),
    }
    tracks.attrs.update({"search_range": search_range, "memory": int(memory)})
    return tracks


def get_drift(tracks: pd.DataFrame) -> pd.DataFrame:
    """The drift stored by :func:`track`: ``dx``, ``dy`` indexed by ``frame``.

    Raises
    ------
    ValueError
        If ``tracks`` carries no drift (it did not come from :func:`track`).
    """
    stored = getattr(tracks, "attrs", {}).get("drift")
    if not stored:
        raise ValueError("tracks has no drift in attrs['drift']; it must come from track()")
    out = pd.DataFrame({"dx": stored["dx"], "dy": stored["dy"]}, dtype=float)
    out.index = pd.Index(stored["frame"], name="frame", dtype="int64")
    return out


# ------------------------------------------------------------------ linking


def _link(table, drift, search_range, memory):
    """trackpy.link on drift-corrected positions; particle ids for the rows of ``table``."""
    import trackpy
    from trackpy.linking import SubnetOversizeException

    frames = table["frame"].to_numpy()
    dx = drift["dx"].reindex(frames).to_numpy()
    dy = drift["dy"].reindex(frames).to_numpy()
    aligned = pd.DataFrame(
        {"x": table["x"].to_numpy() - dx, "y": table["y"].to_numpy() - dy, "frame": frames}
    )
    if not len(aligned):
        return np.empty(0, np.int64)
    try:
        with _quiet_trackpy():
            # A crowded subnet shrinks the search range for itself instead of failing.
            linked = trackpy.link(
                aligned,
                search_range,
                memory=memory,
                t_column="frame",
                adaptive_stop=0.1 * search_range,
                adaptive_step=0.9,
            )
    except SubnetOversizeException:
        raise ValueError(
            f"search_range {search_range:g} px is too large for these features (spacing "
            f"{_spacing(table, required=False):.3g} px): each one has too many candidates "
            "to link to; pass a search_range below the spacing, or None for the default"
        ) from None
    particle = linked["particle"].reindex(aligned.index).to_numpy()
    return _renumber(particle, aligned)


def _renumber(particle, aligned):
    """Particle ids 0, 1, ... in order of first frame, then of first y and x."""
    order = aligned.assign(particle=particle).sort_values(["frame", "y", "x"])
    first = order.drop_duplicates("particle")
    mapping = pd.Series(np.arange(len(first)), index=first["particle"].to_numpy())
    return mapping.reindex(particle).to_numpy(np.int64)


@contextlib.contextmanager
def _quiet_trackpy():
    """Silence trackpy's per-frame log lines for one call, restoring its level after."""
    logger = logging.getLogger("trackpy")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
