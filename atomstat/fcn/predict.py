"""Inference: probability maps for images and stacks of any size.

Each frame is normalised on its own, resampled so that its atoms have the
width the network was trained on, cut into overlapping tiles when it is
large, and run in batches. The probability map comes back at the input's
shape with no seams.
"""

from __future__ import annotations

import functools
import logging
import zipfile
from pathlib import Path

import numpy as np
from skimage.transform import resize

from .._arrays import as_array
from .._checks import number
from ..scale import estimate_scale
from .normalize import normalize

__all__ = [
    "CANONICAL_SIGMA",
    "check_sigma",
    "load_model",
    "model_path",
    "resample_factor",
    "segment",
]

log = logging.getLogger(__name__)

#: Atom width (px) at which the network sees every image.
CANONICAL_SIGMA = 2.2
#: Estimated atom widths (px) the network handles without resampling. The
#: network was trained on widths 1.3-3.4 px (and on upsampled 0.7-1.3 px atoms),
#: and the estimate reads 5-10 % low. Upsampling turns white noise into smooth
#: atom-sized blobs, so the image is only resampled when it must be. Measured on
#: held-out lattices of width 0.8-1.2 px (6 kinds, doses 10 and 40), the native
#: map is as good or better (F1 0.992-0.999 against 0.954-0.999 resampled,
#: the gap at dose 10); and on STM images, line-correlated noise can halve the
#: width estimate, where resampling cost up to 0.1 in F1.
NATIVE_SIGMA = (0.7, 3.6)
#: Atom widths (px) that ``segment`` takes: resampling by more than 16 either way
#: leaves nothing the network was trained on.
MIN_SIGMA, MAX_SIGMA = CANONICAL_SIGMA / 16, CANONICAL_SIGMA * 16
TILE = 1024
MARGIN = 24  # > half the receptive field (about 37 px wide)
_BATCH_PIXELS = 2**21
_MODELS = Path(__file__).resolve().parent.parent / "models"


def model_path(name: str = "universal") -> Path:
    """Path of a shipped model, e.g. ``model_path("universal")``."""
    path = _MODELS / f"{name}.keras"
    if not path.exists():
        shipped = sorted(p.stem for p in _MODELS.glob("*.keras") if ".ckpt" not in p.name)
        raise FileNotFoundError(f"no shipped model named {name!r}; shipped models: {shipped}")
    return path


@functools.lru_cache(maxsize=4)
def _load(path: str):
    import keras
    import tensorflow as tf

    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras model file (not a zip archive)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many kinds for a bad file
        raise ValueError(f"could not load the model file {path}: {exc}") from None
    check_model_shapes(model, path)
    spec = tf.TensorSpec([None, None, None, 1], tf.float32)
    return model, tf.function(lambda x: model(x, training=False), input_signature=[spec])


def check_model_shapes(model, source) -> None:
    """Refuse a model that does not map (N, H, W, 1) images to (N, H, W, C >= 2) maps.

    Raises
    ------
    ValueError
        Naming ``source`` (the file), the model's shape and the shape needed.
    """
    inputs, outputs = getattr(model, "input_shape", None), getattr(model, "output_shape", None)
    if not (isinstance(inputs, tuple) and len(inputs) == 4 and inputs[3] == 1):
        raise ValueError(
            f"the model {source} has the input {inputs}; atomstat needs (None, H, W, 1): "
            "a batch of one-channel images (H and W None, for any size)"
        )
    if not (isinstance(outputs, tuple) and len(outputs) == 4 and (outputs[3] or 0) >= 2):
        raise ValueError(
            f"the model {source} has the output {outputs}; atomstat needs (None, H, W, C) with "
            "C >= 2: a probability map per class, the atoms in channel 1"
        )


def load_model(model=None):
    """Return ``(keras_model, fast_call)`` for a shipped name, a path or a model.

    ``model`` may be None (the shipped ``universal`` model), the name of a
    shipped model, a path to a ``.keras`` file, or a ``keras.Model``.
    """
    if model is None or (isinstance(model, str) and not model.endswith(".keras")):
        return _load(str(model_path(model or "universal")))
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return _load(str(path.resolve()))
    if hasattr(model, "predict") and hasattr(model, "output_shape"):
        check_model_shapes(model, getattr(model, "name", "given"))
        return model, lambda x: model(x, training=False)
    raise TypeError(
        f"model must be None, a name, a .keras path or a keras.Model, got {type(model).__name__}"
    )


def resample_factor(sigma: float) -> float:
    """Zoom factor that brings atoms of width ``sigma`` to the network's scale (1 = none)."""
    if not np.isfinite(sigma) or NATIVE_SIGMA[0] <= sigma <= NATIVE_SIGMA[1]:
        return 1.0
    return CANONICAL_SIGMA / sigma


def segment(data, *, model=None, sigma=None) -> np.ndarray:
    """Probability that each pixel belongs to an atom.

    Parameters
    ----------
    data : ndarray or hyperspy Signal2D
        One image (H, W) or a stack (T, H, W). Any size from 16 px up.
    model : None, str, Path or keras.Model
        None uses the shipped ``universal`` model.
    sigma : float, optional
        Atom width in px. Estimated from the image when None
        (:func:`atomstat.scale.estimate_scale`: the blob width checked against
        the lattice period; what was doubtful is logged as a warning); stacks
        use one width for all frames.

    Returns
    -------
    prob : ndarray, float32, the shape of ``data``

    Raises
    ------
    ValueError
        If the data is not 2-D or 3-D, is smaller than 16x16, or holds NaN
        or infinite values; if ``sigma`` is not a width that can be resampled
        to the network's scale (the message gives the range).

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> sim = simulate_lattice("hexagonal", shape=(96, 96), spacing=14, rng=0)
    >>> segment(sim.image).shape
    (96, 96)
    """
    frames = _as_frames(data)
    _, call = load_model(model)
    if sigma is None:
        scale = estimate_scale(np.asarray(frames[0], dtype=np.float32))
        for message in scale.warnings:
            log.warning("%s", message)
        sigma = scale.sigma
    else:
        sigma = check_sigma(sigma)
    factor = resample_factor(sigma)
    log.debug("atom width %.2f px: resampling by %.3f", sigma, factor)
    out = np.empty((len(frames), *frames.shape[1:]), np.float32)
    for start, stop in _chunks(len(frames), frames.shape[1:], factor):
        batch = [_prepare(np.asarray(frames[i], np.float32), factor) for i in range(start, stop)]
        probs = _run(call, np.stack(batch))
        for i, p in zip(range(start, stop), probs, strict=True):
            out[i] = p if factor == 1 else resize(p, out.shape[1:], order=1)
    return out[0] if _ndim(data) == 2 else out


def check_sigma(sigma) -> float:
    """``sigma`` as a float, refused unless an atom width that ``segment`` can resample.

    Raises
    ------
    ValueError
        Saying what sigma is, the range and what to pass instead.
    atomstat._checks.ArgumentTypeError
        When ``sigma`` is not a number (a TypeError and a ValueError).

    Examples
    --------
    >>> check_sigma(3)
    3.0
    >>> check_sigma(81.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: sigma is the atom width in px and must be a finite number in [0.1375, 35.2] ...
    """
    if isinstance(sigma, int | float | np.number) and not isinstance(sigma, bool | np.bool_):
        if MIN_SIGMA <= sigma <= MAX_SIGMA:  # NaN fails too
            return float(sigma)
    else:
        number("sigma", sigma)  # the type error, by the shared wording
    raise ValueError(
        f"sigma is the atom width in px and must be a finite number in [{MIN_SIGMA:g}, "
        f"{MAX_SIGMA:g}] (the network sees atoms {CANONICAL_SIGMA:g} px wide and resamples by "
        f"at most 16x either way), got {sigma!r}; pass sigma=None to estimate it from the "
        "image, or bin or crop the image first"
    )


def _ndim(data):
    return np.ndim(as_array(data))


def _as_frames(data):
    if isinstance(data, str | Path):
        raise TypeError(f"expected an image array, got the path {str(data)!r}: use atomstat.load")
    arr = as_array(data)
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
        arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an image (H, W) or a stack (T, H, W), got shape {arr.shape}")
    if min(arr.shape[-2:]) < 16:
        raise ValueError(
            f"image of {arr.shape[-2]}x{arr.shape[-1]} px is too small; "
            "atomstat needs at least 16x16"
        )
    if np.iscomplexobj(arr):
        raise ValueError("complex data cannot be segmented; pass np.abs(data) or the real part")
    frames = arr if arr.ndim == 3 else arr[None]
    if len(frames) == 0:
        raise ValueError("the stack has no frames")
    return frames


def _prepare(image, factor):
    if not np.isfinite(image).all():
        raise ValueError(
            "the image holds NaN or infinite pixels; atomstat.load repairs them, "
            "or replace them yourself"
        )
    if factor != 1:
        shape = np.maximum(np.round(np.array(image.shape) * factor).astype(int), 16)
        image = resize(image, shape, order=1, anti_aliasing=factor < 1)
    out = normalize(image)
    if not out.any():
        log.warning("the image is flat (all pixels %.4g): no atoms to find", float(image.flat[0]))
    return out


def _chunks(n, shape, factor):
    pixels = max(1, int(np.prod(shape) * factor**2))
    per = max(1, _BATCH_PIXELS // pixels)
    return [(i, min(i + per, n)) for i in range(0, n, per)]


def _run(call, batch):
    """Run the network over (B, H, W) images, tiling large ones; returns (B, H, W)."""
    b, h, w = batch.shape
    if h <= TILE + 2 * MARGIN and w <= TILE + 2 * MARGIN:
        # Mirror the borders by MARGIN as the tiles are, so a map does not depend on tiling.
        pad_h, pad_w = -(h + 2 * MARGIN) % 4, -(w + 2 * MARGIN) % 4
        x = np.pad(
            batch, ((0, 0), (MARGIN, MARGIN + pad_h), (MARGIN, MARGIN + pad_w)), mode="reflect"
        )
        return np.asarray(call(x[..., None]))[:, MARGIN : MARGIN + h, MARGIN : MARGIN + w, 1]
    return np.stack([_run_tiled(call, img) for img in batch])


def _run_tiled(call, image):
    h, w = image.shape
    ny, nx = -(-h // TILE), -(-w // TILE)
    padded = np.pad(
        image, ((MARGIN, ny * TILE - h + MARGIN), (MARGIN, nx * TILE - w + MARGIN)), mode="reflect"
    )
    out = np.empty((ny * TILE, nx * TILE), np.float32)
    size = TILE + 2 * MARGIN
    corners = [(i * TILE, j * TILE) for i in range(ny) for j in range(nx)]
    per = max(1, _BATCH_PIXELS // size**2)
    for k in range(0, len(corners), per):
        group = corners[k : k + per]
        tiles = np.stack([padded[y : y + size, x : x + size] for y, x in group])
        probs = np.asarray(call(tiles[..., None]))[..., 1]
        for (y, x), p in zip(group, probs, strict=True):
            out[y : y + TILE, x : x + TILE] = p[MARGIN:-MARGIN, MARGIN:-MARGIN]
    return out[:h, :w]
