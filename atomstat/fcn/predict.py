"""Inference: probability maps for images and stacks of any size.

Each frame is normalised on its own, resampled so that its atoms have the
width the network was trained on, cut into overlapping tiles when it is
large, and run in batches. The probability map comes back at the input's
shape with no seams.
"""

from __future__ import annotations

import functools
import logging
import weakref
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from .._arrays import as_array
from .._checks import number
from ..scale import estimate_scale
from .normalize import normalize, normalize_levels

__all__ = [
    "CANONICAL_SIGMA",
    "RESOLUTIONS",
    "block_factor",
    "check_resolution",
    "check_sigma",
    "choose_block",
    "load_model",
    "model_path",
    "resample_factor",
    "segment",
    "warm",
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
#: ``resolution="auto"``: atoms at least ``MIN_BLOCKED_SIGMA`` px wide are segmented on
#: ``b x b`` block means, ``b`` the largest that leaves them ``BLOCK_SIGMA`` px wide or
#: more as the network sees them. Measured (bench/bench_blocks.py, lattices and drawn
#: elliptical atoms, against the full map): with the guided upsampling, the blob area
#: stays within 10 % and the circularity within 5 % where the network sees 0.85-1.15 px,
#: the orientation error within 0.15 deg of the full map's (1.9 vs 1.8 deg at 2.2 px,
#: 1.4 vs 1.3 at 3.0 px); at 0.73 px the area grows 25-60 %, at 1.3-1.7 px it shrinks
#: 15-20 %, and atoms narrower than 2 px (0.9 px blocked) grow 11-19 %. Columns closer
#: than about 3.5 widths merge (7 px dumbbells): :func:`choose_block` checks for that.
BLOCK_SIGMA, MIN_BLOCKED_SIGMA = 0.85, 1.95
#: The guided filter that brings a block-averaged map back (:func:`guided_upsample`):
#: window radius in blocks, and the regularisation (the guide is normalised to 0-1).
GUIDE_RADIUS, GUIDE_EPS = 2, 1e-2
#: ``resolution="auto"`` checks the blocks on the image before using them: on a central
#: ``PROBE_SIDE`` px square the network runs at every pixel and on the block means, and
#: the blocks are kept only where they find at least ``PROBE_KEEP`` of the blobs that
#: every pixel finds (columns closer than about 3.5 widths merge in blocks: 7 px
#: dumbbells lost 90 % of their columns). Costs one full pass over 256^2 px.
PROBE_SIDE, PROBE_KEEP = 256, 0.97
#: What ``segment(resolution=...)`` takes besides a whole number of pixels per block.
RESOLUTIONS = ("auto", "full")
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

    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras model file (not a zip archive)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many kinds for a bad file
        raise ValueError(f"could not load the model file {path}: {exc}") from None
    check_model_shapes(model, path)
    return model, _traced(model)


@functools.lru_cache(maxsize=4)
def _load_lite(lite_path: str, keras_path: str):
    from .lite import LiteCall, LiteModel

    return LiteModel(Path(keras_path), Path(lite_path)), LiteCall(Path(lite_path))


#: keras.Model -> its traced call, for models passed in as objects (a file's model is
#: cached by :func:`_load`); weak, so that a model the caller drops is freed.
_TRACED = weakref.WeakKeyDictionary()


def _traced(model):
    """One ``tf.function`` per model, traced once for every image size: its input
    signature leaves batch, height and width free, so a new size does not retrace."""
    try:
        return _TRACED[model]
    except (KeyError, TypeError):
        pass
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 1], tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    try:
        _TRACED[model] = call
    except TypeError:  # not weakly referenceable: trace per call site
        pass
    return call


def warm(model=None) -> float:
    """Load ``model`` (as :func:`load_model` takes it) and trace its network on a 32 x 32
    image, so that the first real image pays neither; returns the seconds it took.

    The trace serves every later image size (the input signature leaves height and
    width free), so a dashboard or a worker can warm up once, on the smallest input.
    """
    import time

    start = time.perf_counter()
    _, call = load_model(model)
    call(np.zeros((1, 32, 32, 1), np.float32))
    return time.perf_counter() - start


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


def load_model(model=None, *, engine=None):
    """Return ``(model, fast_call)`` for a shipped name, a path or a model.

    ``model`` may be None (the shipped ``universal`` model), the name of a
    shipped model, a path to a ``.keras`` file, or a ``keras.Model``.

    ``engine`` (default ``ATOMSTAT_ENGINE``, else ``"auto"``) runs a shipped
    model, named, on LiteRT where its ``.tflite`` (made from this very
    ``.keras``) and ``ai-edge-litert`` are there (:mod:`atomstat.fcn.lite`:
    no TensorFlow to import, the same maps to 1e-5), and everything else on
    TensorFlow; ``"tensorflow"`` always takes TensorFlow (the Keras model comes
    first), ``"litert"`` insists on LiteRT for a shipped model. The call takes
    (B, H, W, 1) float32 and gives (B, H, W, 2) probabilities either way.
    """
    from . import lite

    engine = lite.check_engine(engine)
    if model is None or (isinstance(model, str) and not model.endswith(".keras")):
        path = model_path(model or "universal")
        if engine != "tensorflow":
            found = lite.usable(path) if lite.available() else None
            if found is not None:
                return _load_lite(str(found), str(path))
            if engine == "litert":
                raise ValueError(
                    f"engine 'litert' needs ai-edge-litert and {path.with_suffix('.tflite')} "
                    f"made from {path.name} (python -m atomstat.fcn.lite {path})"
                )
        return _load(str(path))
    if engine == "litert":
        raise ValueError("engine 'litert' runs only the shipped models (by name)")
    if isinstance(model, str | Path):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return _load(str(path.resolve()))
    if hasattr(model, "predict") and hasattr(model, "output_shape"):
        check_model_shapes(model, getattr(model, "name", "given"))
        return model, _traced(model)
    raise TypeError(
        f"model must be None, a name, a .keras path or a keras.Model, got {type(model).__name__}"
    )


def resample_factor(sigma: float) -> float:
    """Zoom factor that brings atoms of width ``sigma`` to the network's scale (1 = none)."""
    if not np.isfinite(sigma) or NATIVE_SIGMA[0] <= sigma <= NATIVE_SIGMA[1]:
        return 1.0
    return CANONICAL_SIGMA / sigma


def check_resolution(resolution):
    """``resolution`` as ``segment`` takes it: ``"auto"``, ``"full"`` or a whole number of
    pixels per block side (1 is the full map).

    Raises
    ------
    ValueError
        Naming what was given and what is taken.
    """
    if isinstance(resolution, str) and resolution in RESOLUTIONS:
        return resolution
    if isinstance(resolution, int | np.integer) and not isinstance(resolution, bool | np.bool_):
        if 1 <= resolution <= 16:
            return int(resolution)
    raise ValueError(
        f"resolution must be 'auto' (block-average where the atoms are wide enough), 'full' "
        f"(the network on every pixel) or a whole number of pixels per block from 1 to 16, "
        f"got {resolution!r}"
    )


def block_factor(sigma: float, resolution="auto", shape=None) -> int:
    """Pixels per block side at which ``segment`` runs the network (1 = every pixel).

    ``"auto"`` takes, for atoms at least :data:`MIN_BLOCKED_SIGMA` px wide, the
    largest whole ``b`` that leaves them :data:`BLOCK_SIGMA` px wide or more as the
    network sees them (``b = 2`` for 1.95-2.5 px, 3 for 2.55-3.35 px); ``"full"``
    gives 1 and a number is taken as it is. Atoms outside :data:`NATIVE_SIGMA`, which are
    resampled to the network's scale instead, give 1. With ``shape``, ``b`` is
    capped so that the block-averaged image keeps 16 px a side.

    Examples
    --------
    >>> block_factor(2.2), block_factor(2.6), block_factor(1.8), block_factor(2.2, "full")
    (2, 3, 1, 1)
    """
    resolution = check_resolution(resolution)
    if resolution == "full" or resample_factor(sigma) != 1:
        b = 1
    elif resolution == "auto":
        wide = np.isfinite(sigma) and sigma >= MIN_BLOCKED_SIGMA
        b = max(1, int(sigma / BLOCK_SIGMA + 1e-9)) if wide else 1
    else:
        b = resolution
    if shape is not None:
        b = max(1, min(b, min(shape) // 16))
    return b


def choose_block(image, sigma: float, resolution="auto", *, model=None) -> int:
    """:func:`block_factor`, and for ``"auto"`` checked on ``image`` itself.

    A block factor above 1 is kept only if the blocks find, on a central
    :data:`PROBE_SIDE` px square, at least :data:`PROBE_KEEP` of the blobs that
    the network finds there at every pixel; otherwise 1 (the full map). A
    number or ``"full"`` is taken as :func:`block_factor` gives it.

    Examples
    --------
    >>> from atomstat.simulate import simulate_lattice
    >>> pairs = simulate_lattice("dumbbell", shape=(256, 256), spacing=7, sigma=2.2, rng=0)
    >>> hexagonal = simulate_lattice("hexagonal", shape=(256, 256), spacing=14, sigma=2.2, rng=0)
    >>> block_factor(2.2), choose_block(pairs.image, 2.2), choose_block(hexagonal.image, 2.2)
    (2, 1, 2)
    """
    image = np.asarray(image, np.float32)
    b = block_factor(sigma, resolution, image.shape)
    if b == 1 or check_resolution(resolution) != "auto":
        return b
    _, call = load_model(model)
    h, w = image.shape
    side_y, side_x = min(PROBE_SIDE, h), min(PROBE_SIDE, w)
    y0, x0 = (h - side_y) // 2, (w - side_x) // 2
    crop = image[y0 : y0 + side_y, x0 : x0 + side_x]
    full = _run(call, _prepare(crop, 1.0)[None])[0]
    x, levels = _prepare_blocks(crop, b)
    blocked = guided_upsample(_run(call, x[None])[0], crop, b, guide=x, levels=levels)
    n_full, n_blocked = (_blobs(p, sigma) for p in (full, blocked))
    keep = n_blocked >= PROBE_KEEP * n_full
    log.debug("blocks of %d: %d of %d blobs on the probe; %s", b, n_blocked, n_full,
              "kept" if keep else "full map instead")  # fmt: skip
    return b if keep else 1


def _blobs(prob, sigma) -> int:
    """Blobs of ``prob >= 0.5`` of at least a quarter of an atom's area (``pi sigma^2``)."""
    labels, n = ndimage.label(prob >= 0.5)
    if not n:
        return 0
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= 0.25 * np.pi * sigma**2).sum())


def segment(data, *, model=None, sigma=None, resolution="full") -> np.ndarray:
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
    resolution : "full", "auto" or int
        ``"full"`` (default here; :func:`atomstat.analyze` defaults to ``"auto"``)
        runs the network on every pixel. ``"auto"`` runs it on ``b x b`` block
        means where the atoms are wide enough and the blocks keep the columns
        apart (:func:`choose_block`, checked on the first frame) and brings the
        map back to every pixel with a guided filter: about ``b**2`` times fewer
        network pixels. A number sets ``b``.

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
    block = choose_block(frames[0], sigma, resolution, model=model)
    log.debug("atom width %.2f px: resampling by %.3f, blocks of %d", sigma, factor, block)
    out = np.empty((len(frames), *frames.shape[1:]), np.float32)
    for start, stop in _chunks(len(frames), frames.shape[1:], factor / block):
        images = [np.asarray(frames[i], np.float32) for i in range(start, stop)]
        if block > 1:
            prepared = [_prepare_blocks(image, block) for image in images]
            batch = [x for x, _ in prepared]
        else:
            batch = [_prepare(image, factor) for image in images]
        probs = _run(call, np.stack(batch))
        for k, (i, p) in enumerate(zip(range(start, stop), probs, strict=True)):
            if block > 1:
                x, levels = prepared[k]
                out[i] = guided_upsample(p, images[k], block, guide=x, levels=levels)
            else:
                out[i] = p if factor == 1 else _resize(p, out.shape[1:], order=1)
    return out[0] if _ndim(data) == 2 else out


def block_mean(image: np.ndarray, b: int) -> np.ndarray:
    """Means of ``b x b`` blocks, the last partial row and column of blocks padded by
    mirroring; block ``(i, j)`` is centred on pixel ``(i * b + (b - 1) / 2, j * b + ...)``."""
    h, w = image.shape
    ph, pw = -h % b, -w % b
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)), mode="symmetric")
    hh, ww = image.shape
    return image.reshape(hh // b, b, ww // b, b).mean(axis=(1, 3), dtype=np.float32)


def upsample(prob: np.ndarray, b: int, shape) -> np.ndarray:
    """Bilinear interpolation of a map of ``b x b`` block means back to ``shape``: the
    inverse of :func:`block_mean`'s geometry (values at block centres, clamped at the
    borders)."""
    rows = _axis_weights(prob.shape[0], b, shape[0])
    cols = _axis_weights(prob.shape[1], b, shape[1])
    (r0, r1, wr), (c0, c1, wc) = rows, cols
    top = prob[r0] * (1 - wr)[:, None] + prob[r1] * wr[:, None]
    out = top[:, c0] * (1 - wc) + top[:, c1] * wc
    return out.astype(np.float32, copy=False)


def guided_upsample(prob, image, b, *, guide=None, levels=None, radius=None, eps=None):
    """The map of ``b x b`` block means brought back to every pixel of ``image``, guided
    by the image: a guided filter (He, Sun and Tang 2013) fitted on the block grid.

    In each window of ``2 * radius + 1`` blocks, the map is fitted as an affine
    function ``a * x + c`` of the network's input ``x`` (the block means, normalised:
    ``x = (means - background) / span``, :func:`~atomstat.fcn.normalize.normalize_levels`);
    ``a`` and ``c`` are averaged over the windows, folded with the levels into an
    affine function of the image itself, interpolated to every pixel
    (:func:`upsample`) and applied to the image smoothed by 0.7 px. The blob outlines
    then follow the atoms' own shape in the raw image, where plain interpolation of
    a coarse map rounds them and makes them grow (bench/bench_blocks.py).

    ``guide`` and ``levels`` (``(background, span)`` on the block grid) are computed
    from ``image`` when not given; a flat image gives the plain interpolation.
    """
    radius = GUIDE_RADIUS if radius is None else radius
    eps = GUIDE_EPS if eps is None else eps
    if guide is None or levels is None:
        guide, *levels = normalize_levels(block_mean(image, b))
    background, span = levels
    if background is None:
        return upsample(prob, b, image.shape)
    size = 2 * radius + 1

    def box(a):
        return ndimage.uniform_filter(a, size, mode="reflect")

    mean_x, mean_p = box(guide), box(prob)
    cov = box(guide * prob) - mean_x * mean_p
    var = box(guide * guide) - mean_x * mean_x
    a = cov / (var + eps)
    a, c = box(a), box(mean_p - a * mean_x)
    gain = (a / span).astype(np.float32)
    offset = (c - gain * background).astype(np.float32)
    smooth = ndimage.gaussian_filter(image, 0.7, truncate=2.0)
    out = upsample(gain, b, image.shape) * smooth + upsample(offset, b, image.shape)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def _axis_weights(n, b, size):
    c = (np.arange(size) + 0.5) / b - 0.5
    c = np.clip(c, 0, n - 1)
    i0 = np.floor(c).astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, (c - i0).astype(np.float32)


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


def _resize(image, shape, **kwargs):
    from skimage.transform import resize  # 0.3 s to import: only where atoms are resampled

    return resize(image, shape, **kwargs)


def _prepare(image, factor):
    _check_finite(image)
    if factor != 1:
        shape = np.maximum(np.round(np.array(image.shape) * factor).astype(int), 16)
        image = _resize(image, shape, order=1, anti_aliasing=factor < 1)
    out = normalize(image)
    if not out.any():
        log.warning("the image is flat (all pixels %.4g): no atoms to find", float(image.flat[0]))
    return out


def _prepare_blocks(image, block):
    """The network's input for ``block x block`` means of ``image``, and the levels that
    normalised it (for :func:`guided_upsample`)."""
    _check_finite(image)
    out, background, span = normalize_levels(block_mean(image, block))
    if background is None:
        log.warning("the image is flat (all pixels %.4g): no atoms to find", float(image.flat[0]))
    return out, (background, span)


def _check_finite(image):
    if not np.isfinite(image).all():
        raise ValueError(
            "the image holds NaN or infinite pixels; atomstat.load repairs them, "
            "or replace them yourself"
        )


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
