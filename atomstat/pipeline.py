"""``analyze``: load, segment, locate, describe in one call.

This is the one entry point the CLI and the app use. Stacks are processed in
chunks of frames so memory stays bounded however long the movie is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ._arrays import as_array
from .fcn.predict import load_model, segment
from .locate import concat_frames, locate
from .scale import estimate_sigma

__all__ = ["analyze", "calibration"]

log = logging.getLogger(__name__)

_FRAMES_PER_CHUNK = 16


def analyze(data, *, threshold: float = 0.5, model=None, progress: bool = False) -> pd.DataFrame:
    """Find every atom in an image or a movie and describe it.

    Parameters
    ----------
    data : str, Path, ndarray or hyperspy Signal2D
        A file (anything :func:`atomstat.load` reads), or an image (H, W) or
        stack (T, H, W).
    threshold : float in (0, 1)
        Probability level of the blob contours.
    model : None, str, Path or keras.Model
        None uses the shipped ``universal`` model.
    progress : bool
        Show a progress bar over the frames of a stack.

    Returns
    -------
    atoms : pandas.DataFrame
        The atoms table. ``attrs`` holds ``pixel_size``, ``units``,
        ``source``, ``model``, ``threshold`` and ``sigma`` (the estimated
        atom width in px).

    Raises
    ------
    atomstat.LoadError
        If ``data`` is a file that cannot be read as an image.
    ValueError
        If ``threshold`` is out of range or the array is not an image.

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("square", shape=(128, 128), spacing=16, rng=0)
    >>> atoms = analyze(sim.image)
    >>> abs(len(atoms) - len(sim.atoms)) <= 4
    True
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1 (exclusive), got {threshold!r}")
    if isinstance(data, str | Path):
        from .io import load

        data = load(data)
    attrs = calibration(data)
    frames = as_array(data)
    frames = frames if getattr(frames, "ndim", 0) != 2 else frames[None]
    load_model(model)  # fail early on a bad model, before any work
    first = np.asarray(frames[0], np.float32)
    if first.ndim != 2:
        raise ValueError(
            f"expected an image (H, W) or a stack (T, H, W), got shape {np.shape(frames)}"
        )
    sigma = estimate_sigma(first) if min(first.shape) >= 16 else float("nan")
    tables = []
    bar = _progress(progress, len(frames))
    for start in range(0, len(frames), _FRAMES_PER_CHUNK):
        chunk = np.asarray(frames[start : start + _FRAMES_PER_CHUNK], np.float32)
        prob = segment(chunk, model=model, sigma=_refine_sigma(sigma))
        atoms = locate(prob, chunk, threshold=threshold, sigma=_refine_sigma(sigma))
        atoms["frame"] += start
        tables.append(atoms)
        bar.update(len(chunk))
    bar.close()
    atoms = concat_frames(tables)
    atoms.attrs.update(attrs)
    atoms.attrs.update({"model": _model_name(model), "threshold": threshold, "sigma": sigma})
    return atoms


def calibration(data) -> dict:
    """Pixel size, units and source file of a Signal2D (1 px for a plain array)."""
    axes = getattr(data, "axes_manager", None)
    if axes is None:
        return {"pixel_size": 1.0, "units": "px", "source": None}
    x = axes.signal_axes[0]
    units = x.units if isinstance(x.units, str) and x.units not in ("", "<undefined>") else "px"
    source = data.metadata.get_item("General.original_filename", None)
    return {"pixel_size": float(x.scale), "units": units, "source": source}


def _refine_sigma(sigma):
    return float(sigma) if np.isfinite(sigma) else None


def _model_name(model):
    if model is None:
        return "universal"
    if isinstance(model, str | Path):
        return str(model)
    return getattr(model, "name", type(model).__name__)


def _progress(enabled, total):
    """A progress bar over the frames (disabled for single images or when not asked)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="frames", unit="frame", disable=not enabled or total < 2)
