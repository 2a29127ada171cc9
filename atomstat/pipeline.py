"""``analyze``: load, segment, locate, describe in one call.

This is the one entry point the CLI and the app use. Stacks are processed in
chunks of frames so memory stays bounded however long the movie is.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import polarity
from ._arrays import as_array
from ._checks import flag, number
from .fcn.predict import (
    _as_frames,
    check_resolution,
    check_sigma,
    choose_block,
    load_model,
    segment,
)
from .io_stm import imaging_mode
from .locate import PEAK_MARGIN, concat_frames, locate
from .preprocess import get_preprocessor, invert
from .scale import Scale, estimate_scale

__all__ = ["analyze", "calibration", "choose_model"]

log = logging.getLogger(__name__)

_FRAMES_PER_CHUNK = 16
#: Peak memory of analysing one frame, bytes per pixel (measured: 1.03 GB above
#: the loaded library for a 4096^2 frame), and of each further frame held in a
#: chunk (the frame and its probability map, float32).
_BYTES_PER_PIXEL = 64
_BYTES_PER_HELD_PIXEL = 8


def analyze(
    data,
    *,
    threshold: float = 0.5,
    peak_margin: float = PEAK_MARGIN,
    model=None,
    preprocess=None,
    split: bool | None = None,
    sigma: float | None = None,
    resolution="auto",
    progress: bool = False,
    client=None,
) -> pd.DataFrame:
    """Find every atom in an image or a movie and describe it.

    Parameters
    ----------
    data : str, Path, ndarray or hyperspy Signal2D
        A file (anything :func:`atomstat.load` reads), or an image (H, W) or
        stack (T, H, W).
    threshold : float in (0, 1)
        Probability level of the blob contours.
    peak_margin : float in [0, 1)
        A blob is an atom only if its peak probability reaches
        ``threshold + peak_margin``; the others are noise fragments (see
        :func:`atomstat.locate`).
    model : None, str, Path or keras.Model
        None (or ``"auto"``) picks the shipped model from the data: ``stm``
        for scanning-probe files (``metadata.Signal.signal_type == "STM"``,
        set by :func:`atomstat.load` for Nanonis and WSxM files), else
        ``universal``. A shipped name (``"universal"``, ``"stm"``), a
        ``.keras`` path or a ``keras.Model`` overrides the choice.
    preprocess : None, "none", "stm", "plane", "invert" or callable
        Clean each frame before the network sees it: ``"stm"`` removes a
        plane background, levels the scan lines and repairs scars
        (:func:`atomstat.preprocess.stm`), ``"plane"`` only removes the
        background (safe for blob shapes), ``"invert"`` makes dark atoms
        (ABF, bright field) bright; a function of one image (H, W)
        returning an image of the same shape is applied as it is. None
        (default) analyses the data as recorded, unless the network reads the
        first frame with doubt as recorded and with far more confidence
        inverted (dark atoms): then it is analysed inverted, with a warning
        (:mod:`atomstat.polarity`; never for scanning-probe files).
        ``"none"`` analyses the data as recorded with no such check.
        Positions are unchanged; the intensity descriptors are measured on
        the cleaned image.
    split : bool or None
        Split blobs that hold several atoms (see :func:`atomstat.locate`).
        None (default) splits for STM data (``imaging == "stm"``) or the
        ``stm`` model: close, blurred STM atoms often share a blob, while on
        STEM a split is more often a distorted column cut in two.
    sigma : float or None
        The atom width in px (the Gaussian sigma of a column). None (default)
        estimates it from the first frame (:func:`atomstat.scale.estimate_scale`:
        the blob width checked against the lattice period). Pass it when
        ``attrs["warnings"]`` says the estimate is doubtful.
    resolution : "auto", "full" or int
        ``"auto"`` (default) runs the network on ``b x b`` block means where the
        atoms are wide enough (``b = 2`` for atoms 1.95-2.5 px wide, see
        :func:`atomstat.fcn.predict.block_factor`) and brings its map back to every
        pixel with a guided filter on the raw image; the centres are still refined
        on the raw image. The blocks are first checked on a 256 px crop of the first
        frame (:func:`atomstat.fcn.predict.choose_block`): where they find fewer
        blobs than every pixel does (columns closer than about 3.5 widths, such as
        7 px dumbbells, merge in blocks), the full map is used. About ``b**2`` times
        fewer network pixels, the same F1 and RMSE on the accuracy benchmark.
        ``"full"`` runs the network on every pixel; a number sets ``b``.
        ``attrs["resolution"]`` says which ``b`` ran.
    progress : bool
        Show a progress bar over the frames of a stack.
    client : distributed.Client, optional
        Run chunks of frames, or tiles of a huge frame, as tasks on this Dask
        cluster (see :func:`atomstat.distributed.analyze`); the table is the
        same row for row. ``model`` must then be a name or a path.

    Returns
    -------
    atoms : pandas.DataFrame
        The atoms table. ``attrs`` holds ``pixel_size``, ``units``,
        ``source``, ``model`` (the model used), ``imaging`` (``"stm"`` or
        ``"stem"``, from the metadata), ``preprocess``, ``threshold``,
        ``peak_margin``, ``split``, ``resolution`` (the pixels per block side the
        network ran at, 1 for the full map), ``sigma`` (the atom width in px the image
        was analysed at, always finite), ``sigma_source`` (``"blob"``,
        ``"lattice"``, ``"fallback"`` or ``"user"``), ``lattice_period`` (px,
        NaN when no lattice is resolved), ``warnings`` (a list of sentences:
        what was doubtful about the atom width and what to pass instead; empty
        when nothing was), ``fragments`` (blobs dropped as noise) and
        ``split_blobs``.

    Raises
    ------
    atomstat.LoadError
        If ``data`` is a file that cannot be read as an image.
    ValueError
        If ``threshold`` or ``sigma`` is out of range or the array is not an image.

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("square", shape=(128, 128), spacing=16, rng=0)
    >>> atoms = analyze(sim.image)
    >>> abs(len(atoms) - len(sim.atoms)) <= 4
    True
    """
    if client is not None:
        from .distributed import analyze as on_cluster

        if sigma is not None:
            raise ValueError("sigma= cannot be given with client= yet: the workers estimate it")
        return on_cluster(
            data, client=client, threshold=threshold, peak_margin=peak_margin, model=model,
            preprocess=preprocess, split=split, resolution=resolution,
        )  # fmt: skip
    run = prepare(
        data,
        threshold=threshold,
        peak_margin=peak_margin,
        model=model,
        preprocess=preprocess,
        split=split,
        sigma=sigma,
        resolution=resolution,
    )
    tables = []
    bar = _progress(progress, run.n_frames)
    for _, chunk, _, atoms in run.chunks():
        tables.append(atoms)
        bar.update(len(chunk))
    bar.close()
    atoms = concat_frames(tables)
    atoms.attrs.update(run.attrs)
    return atoms


@dataclass
class Run:
    """One analysis, set up: the frames, the cleaning, the model, the atom width.

    :func:`analyze` keeps only the tables; :func:`atomstat.maps.analyze_maps`
    also keeps the probability maps. Both read the chunks from :meth:`chunks`,
    so they cannot drift apart.
    """

    frames: object  # (T, H, W) array-like, possibly lazy
    clean: object  # None or a function of one frame
    model: object
    threshold: float
    peak_margin: float
    sigma: float
    attrs: dict
    single: bool = False  # the data was one image, not a stack
    chunk: int = _FRAMES_PER_CHUNK  # frames read, segmented and located together
    split: bool = False  # split blobs holding several atoms
    resolution: object = "full"  # "full", "auto" or pixels per block (see segment)
    check_polarity: bool = False  # try the first frame inverted if it finds too few atoms

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def chunks(self):
        """Yield ``(start, frames, prob, atoms)`` for every chunk of frames, in order."""
        for start in range(0, self.n_frames, self.chunk):
            raw = np.asarray(self.frames[start : start + self.chunk], np.float32)
            chunk, prob, atoms = self._find(raw)
            if start == 0 and self.check_polarity:
                chunk, prob, atoms = self._polarity(raw, chunk, prob, atoms)
            atoms["frame"] += start
            yield start, chunk, prob, atoms

    def _find(self, raw):
        """The cleaned frames, their probability maps and their atoms."""
        width = _refine_sigma(self.sigma)
        chunk = raw
        if self.clean is not None:
            chunk = np.stack([_clean(frame, self.clean) for frame in raw])
        prob = segment(chunk, model=self.model, sigma=width, resolution=self.resolution)
        atoms = locate(
            prob,
            chunk,
            threshold=self.threshold,
            peak_margin=self.peak_margin,
            sigma=width,
            split=self.split,
        )
        return chunk, prob, atoms

    def _polarity(self, raw, chunk, prob, atoms):
        """Keep the first chunk as found, or its inverted reading when the network reads
        the first frame with far more confidence inverted (see :mod:`atomstat.polarity`);
        an inverted reading then holds for every frame."""
        confidence = polarity.median_confidence(atoms)
        found = int((atoms["frame"] == 0).sum())
        if not polarity.doubtful(confidence, found):
            return chunk, prob, atoms
        self.clean = invert
        trial = self._find(raw[:1])
        inverted = polarity.median_confidence(trial[2])
        n_inverted = int((trial[2]["frame"] == 0).sum())
        if not polarity.prefer_inverted(confidence, inverted, found, n_inverted):
            self.clean = None
            return chunk, prob, atoms
        message = polarity.inverted_warning(confidence, inverted)
        log.warning("%s", message)
        self.attrs["preprocess"] = "invert"
        self.attrs["warnings"] = [*self.attrs.get("warnings", []), message]
        return self._find(raw) if len(raw) > 1 else trial


def prepare(
    data,
    *,
    threshold: float = 0.5,
    peak_margin: float = PEAK_MARGIN,
    model=None,
    preprocess=None,
    split: bool | None = None,
    sigma: float | None = None,
    resolution="auto",
) -> Run:
    """Check the arguments of :func:`analyze`, load the data and the model, estimate the
    atom width on the first (cleaned) frame; return the :class:`Run`."""
    threshold = number("threshold", threshold, low=0, high=1, low_open=True, high_open=True)
    peak_margin = number("peak_margin", peak_margin, low=0, high=1, high_open=True)
    resolution = check_resolution(resolution)
    if isinstance(data, str | Path):
        from .io import load

        data = load(data)
    _check_input(data)
    attrs = calibration(data)
    imaging = imaging_mode(data) or "stem"
    model = choose_model(model, imaging)
    if split is None:
        split = imaging == "stm" or _model_name(model) == "stm"
    split = flag("split", split)
    clean = get_preprocessor(preprocess)
    frames = as_array(data)
    single = getattr(frames, "ndim", 0) == 2
    frames = frames[None] if single else frames
    load_model(model)  # fail early on a bad model, before any work
    first = _clean(np.asarray(frames[0], np.float32), clean)
    if first.ndim != 2:
        raise ValueError(
            f"expected an image (H, W) or a stack (T, H, W), got shape {np.shape(frames)}"
        )
    chunk = frames_per_chunk(first.shape, len(frames))
    scale = _scale(first, sigma)
    for message in scale.warnings:
        log.warning("%s", message)
    sigma = scale.sigma
    block = choose_block(first, sigma, resolution, model=model)
    attrs.update(
        {
            "model": _model_name(model),
            "imaging": imaging,
            "preprocess": _preprocess_name(preprocess),
            "threshold": threshold,
            "peak_margin": peak_margin,
            "split": bool(split),
            "resolution": block,
            "sigma": sigma,
            "sigma_source": scale.source,
            "lattice_period": scale.period,
            "warnings": list(scale.warnings),
        }
    )
    return Run(
        frames, clean, model, threshold, peak_margin, sigma, attrs, single, chunk, bool(split),
        block, check_polarity=preprocess is None and imaging != "stm",
    )  # fmt: skip


def _scale(first, sigma) -> Scale:
    """The atom width given (checked) or estimated on the first frame."""
    if sigma is not None:
        return Scale(check_sigma(sigma), "user", float("nan"), None)
    return estimate_scale(first)


def _check_input(data):
    """Refuse what is not an image or a stack of images, saying what it is."""
    if data is None or isinstance(data, pd.DataFrame | pd.Series | dict):
        raise TypeError(
            "analyze takes an image array, a HyperSpy Signal2D or a file path; "
            f"got {type(data).__name__}"
        )
    axes = getattr(data, "axes_manager", None)
    if axes is not None and axes.signal_dimension != 2:
        raise ValueError(
            f"expected an image (a Signal2D); got a {type(data).__name__} with "
            f"{axes.signal_dimension} signal dimension(s), such as a spectrum or a spectrum map"
        )
    _as_frames(data)  # the shape, the size, complex values


def frames_per_chunk(shape, n_frames: int, available: float | None = None) -> int:
    """How many frames of ``shape`` to analyse together within the memory available.

    Raises
    ------
    MemoryError
        If even one frame needs more than 80 % of the available memory; the
        message gives both figures and says what to do.
    """
    pixels = float(np.prod(shape))
    budget = 0.8 * (available_memory() if available is None else available)
    one = _BYTES_PER_PIXEL * pixels
    if np.isfinite(budget) and one > budget:
        h, w = shape
        raise MemoryError(
            f"a {h} x {w} px frame needs about {one / 1e9:.1f} GB to analyse and "
            f"{budget / 0.8 / 1e9:.1f} GB are available: crop the image or bin it first "
            "(image[::2, ::2] quarters the memory)"
        )
    if not np.isfinite(budget):
        return min(_FRAMES_PER_CHUNK, n_frames)
    more = int((budget - one) // (_BYTES_PER_HELD_PIXEL * pixels))
    return max(1, min(_FRAMES_PER_CHUNK, n_frames, 1 + more))


def available_memory() -> float:
    """Memory available to this process in bytes (Linux ``MemAvailable``; inf if unknown)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def calibration(data) -> dict:
    """Pixel size, units and source file of a Signal2D (1 px for a plain array)."""
    axes = getattr(data, "axes_manager", None)
    if axes is None:
        return {"pixel_size": 1.0, "units": "px", "source": None}
    x = axes.signal_axes[0]
    units = x.units if isinstance(x.units, str) and x.units not in ("", "<undefined>") else "px"
    source = data.metadata.get_item("General.original_filename", None)
    return {"pixel_size": float(x.scale), "units": units, "source": source}


def choose_model(model, imaging: str | None = None):
    """The model to run: ``model`` itself, or for None/``"auto"`` the shipped model for
    ``imaging`` (``"stm"`` -> ``stm``, else ``universal``)."""
    if model is None or (isinstance(model, str) and model == "auto"):
        return "stm" if imaging == "stm" and _shipped("stm") else "universal"
    return model


def _shipped(name):
    from .fcn.predict import model_path

    try:
        return model_path(name).is_file()
    except FileNotFoundError:
        return False


def _clean(image, clean):
    """Apply the preprocessing ``clean`` to one frame and check what it returns."""
    if clean is None:
        return image
    out = np.asarray(clean(image), np.float32)
    if out.shape != image.shape:
        raise ValueError(f"preprocess returned shape {out.shape} for an image of {image.shape}")
    return out


def _preprocess_name(preprocess):
    if preprocess is None or isinstance(preprocess, str):
        return preprocess
    return getattr(preprocess, "__name__", type(preprocess).__name__)


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
