"""Load microscope images and image stacks as validated HyperSpy signals.

This and :mod:`atomstat.io_stm` are the only modules in atomstat that import
HyperSpy. :func:`load` reads every format HyperSpy (RosettaSciIO) reads, plus
``.npy`` (NumPy), 8/16-bit PNG and JPEG (Pillow), plain HDF5 files that hold
one image dataset, and Nanonis/WSxM scanning-probe files (:mod:`atomstat.io_stm`). It
returns a float32 ``Signal2D`` that is either one image ``(H, W)`` or a stack
``(T, H, W)`` whose navigation axis is the frame (time) axis, or refuses the
file with a :class:`~atomstat.errors.LoadError` that says what the file is and
why it was refused.

Decisions on calibration (the pixel size of the two image axes):

* A length unit in the file (pm, nm, um/µm, Å, m, mm, ...) is converted to nm.
* Without a length unit in the file, a JSON sidecar (``image.json`` beside
  ``image.npy``) or JSON metadata inside a plain HDF5 file may give a pixel
  size or a field of view (e.g. ``field_of_view_x``/``_y`` with
  ``field_of_view_units``, ``fov``, ``scan size``); a field of view is divided
  by the image width/height. Values given without a unit are taken as nm. A
  sidecar that is not a JSON object, or a value that is not a positive length,
  is ignored with a logged warning that names the sidecar (or file) and key.
* Otherwise an axis with scale 1 gets units ``"px"``. An axis with another
  scale but no unit keeps its scale and gets units ``"unknown"`` (with a
  logged warning): atomstat does not guess the unit.
* A unit that is not a length (e.g. ``1/nm``) is kept as it is, with a warning.

Decisions on data: RGB(A) becomes grayscale luminance (ITU-R BT.601 weights),
every dtype (integers, float16, float64) becomes float32, the precision the
models run in. NaN/inf pixels are replaced by the median of the finite pixels
of their frame (with a warning); a frame without any finite pixel is refused
(with ``lazy=True`` it is filled with 0 when computed, with a warning).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import hyperspy.api as hs
import numpy as np
from rsciio import IO_PLUGINS

from atomstat.calibration import NM_PER_UNIT, calibrate, parse_json, read_sidecar
from atomstat.errors import LoadError
from atomstat.io_safety import check_before_reading, check_regular
from atomstat.io_stm import STM_EXTENSIONS, read_stm

__all__ = ["EXTENSIONS", "MIN_SIDE", "NM_PER_UNIT", "load"]

log = logging.getLogger(__name__)

MIN_SIDE = 16
"""Smallest image side, in pixels, that atomstat analyses."""

_FRAME_CHUNKS = (16,)  # lazy stacks: frames per chunk, as atomstat.analyze reads them
_RGB_FIELDS = {"R", "G", "B"}  # the fields of HyperSpy's rgb8/rgb16/rgba8/rgba16 dtypes
_DTYPE_KINDS = {"U": "text", "S": "bytes", "M": "date/time", "m": "time interval", "O": "object"}

_PILLOW_EXTENSIONS = {".png", ".jpg", ".jpeg"}
_HDF5_EXTENSIONS = {".h5", ".hdf5"}
_IMAGE_DATASET_NAMES = ("image", "image_data", "images", "data", "frames", "stack")
_NEEDS_IMAGE = "atomstat needs one 2-D image (H, W) or one stack of images (T, H, W)"
_LUMA = (0.299, 0.587, 0.114)

EXTENSIONS = frozenset(
    {"." + ext.lower() for plugin in IO_PLUGINS for ext in plugin["file_extensions"]}
    | {".npy"}
    | _PILLOW_EXTENSIONS
    | _HDF5_EXTENSIONS
    | STM_EXTENSIONS
)
"""File extensions :func:`load` accepts (lower case, with the dot)."""


def load(path, *, lazy=False, channel=None, direction=None):
    """Load a microscope image or image stack as a calibrated float32 Signal2D.

    Parameters
    ----------
    path : str or path-like
        An image file: any format HyperSpy reads (dm3, dm4, emd, ser/emi, mrc,
        tif, hspy, zspy, ...), ``.npy``, 8/16-bit PNG or JPEG, a plain HDF5
        file holding one image dataset, or a scanning-probe file: Nanonis
        ``.sxm`` or WSxM ``.top``/``.stp``/``.tom`` (see
        :mod:`atomstat.io_stm`). A JSON sidecar with the same stem may give the
        calibration of files that have none.
    lazy : bool, optional
        Return a lazy (dask-backed) signal that reads frames only when they are
        computed, for stacks larger than memory.
    channel : str, optional
        For files that hold several signals (e.g. an EMD file with several
        detectors): pick the signal whose title contains this text
        (case-insensitive). By default the first image signal is picked.
        For scanning-probe files: the channel name (e.g. ``"Z"``,
        ``"Current"``; exact, else a unique part of it, case-insensitive); by
        default the topography (Z). A wrong name raises a LoadError that
        lists the file's channels (or signals). So does any name for a file
        that holds one signal under another title or none (``.npy``,
        PNG/JPEG, plain HDF5): the channel asked for is not there.
    direction : {None, "forward", "backward"}, optional
        Scanning-probe files only: the scan direction (default forward). A
        backward image is flipped to lie on its forward image.

    Returns
    -------
    signal : hyperspy.signals.Signal2D
        float32 data of shape (H, W) or (T, H, W). The two image axes are in nm
        when the file is calibrated (else ``"px"``, see the module notes); a
        stack's navigation axis keeps the file's time calibration and is named
        ``"frame"`` when unnamed. ``metadata.General.original_filename`` holds
        the source path. Scanning-probe files are marked with
        ``metadata.Signal.signal_type == "STM"`` (see
        :func:`atomstat.io_stm.imaging_mode`).

    Raises
    ------
    LoadError
        If the file is missing, empty, corrupt, of an unknown type, or not an
        image: a single number, a spectrum, a 4-D dataset, complex data, data
        that are not numbers (text, dates, records other than R, G, B), a
        stack without frames, or an image with a side shorter than
        ``MIN_SIDE`` pixels; or if ``channel`` names no signal of the file.
    TypeError
        If ``path`` is not a path (e.g. an array: pass arrays to
        :func:`atomstat.analyze`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "image.npy"
    ...     np.save(path, np.zeros((64, 48), dtype=np.uint16))
    ...     signal = load(path)
    >>> signal.data.shape, signal.data.dtype
    ((64, 48), dtype('float32'))
    >>> signal.axes_manager.signal_axes[0].units  # a .npy holds no calibration
    'px'
    """
    path = _check_file(path)
    check_before_reading(path, lazy=lazy)  # HDF5 links out, sizes past memory (io_safety)
    signal, hints = _read(path, lazy=lazy, channel=channel, direction=direction)
    signal = _validate(signal, path)
    signal.data = _to_float32(signal.data)
    _fill_nonfinite(signal, path)
    hints = {path.with_suffix(".json"): read_sidecar(path), path: hints}  # the sidecar wins
    calibrate(signal, hints, path)
    _describe_source(signal, path)
    if lazy and not signal._lazy:
        signal = signal.as_lazy()
    return signal


def _refuse(path: Path, problem: str) -> LoadError:
    """Return the LoadError for ``path`` (the caller raises it)."""
    return LoadError(f"Cannot load {path}: {problem}.")


def _check_file(path) -> Path:
    """Return ``path`` as a Path after checking it names a non-empty file of a known type."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"load() takes a file path, not {type(path).__name__}; pass arrays to analyze()"
        )
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if not path.exists():
        raise _refuse(path, "there is no such file")
    if path.is_dir() and suffix != ".zspy":  # a .zspy file is a zarr directory
        raise _refuse(path, "it is a directory, not an image file")
    check_regular(path)  # a FIFO would block the reader
    if path.is_file() and path.stat().st_size == 0:
        raise _refuse(path, "it is an empty file (0 bytes)")
    if suffix not in EXTENSIONS:
        raise _refuse(
            path,
            f"it has the unknown extension '{path.suffix}'; atomstat reads .npy, .png, .jpg, "
            ".h5, Nanonis .sxm, WSxM .top/.stp/.tom and every format HyperSpy reads (.dm3, "
            ".dm4, .emd, .ser, .emi, .mrc, .tif, .hspy, .zspy, ...; see atomstat.io.EXTENSIONS)",
        )
    return path


def _read(path: Path, *, lazy: bool, channel: str | None, direction: str | None = None):
    """Read ``path`` with the right reader; return (signal, calibration hints)."""
    suffix = path.suffix.lower()
    if suffix in STM_EXTENSIONS:
        return read_stm(path, channel=channel, direction=direction), {}
    if direction is not None:
        raise _refuse(path, "direction= applies to scanning-probe files (.sxm, WSxM) only")
    if suffix == ".npy":
        signal, hints = _array_signal(_read_numpy(path, lazy), path), {}
    elif suffix in _PILLOW_EXTENSIONS:
        signal, hints = _array_signal(_read_pillow(path), path), {}
    elif suffix in _HDF5_EXTENSIONS and not _is_hyperspy_hdf5(path):
        data, hints = _read_plain_hdf5(path, lazy)
        signal = _array_signal(data, path)
    else:
        file_format = "HSPY" if suffix in _HDF5_EXTENSIONS else None
        return _read_hyperspy(path, lazy, channel, file_format), {}
    if channel is not None:  # these files hold one signal, without a title to match
        raise _refuse(
            path,
            f"there is no channel '{channel}': it holds one signal without channel names "
            f"({_what(signal)}); leave channel out",
        )
    return signal, hints


def _unreadable(path: Path, exc: BaseException) -> LoadError:
    """Wrap a reader's exception into a short LoadError."""
    if isinstance(exc, ImportError) and exc.name:
        package = exc.name.split(".")[0]
        return _refuse(path, f"reading this format needs the package '{package}', not installed")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return _refuse(path, f"it is not a readable image: {reason} (truncated or corrupt file?)")


@contextlib.contextmanager
def _quiet_hyperspy() -> Iterator[None]:
    """Drop HyperSpy's 'please report this error' log line: atomstat raises its own error."""
    logger = logging.getLogger("hyperspy.io")

    def drop(record: logging.LogRecord) -> bool:
        return "report this error" not in record.getMessage()

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _read_hyperspy(path: Path, lazy: bool, channel: str | None, file_format: str | None):
    """Read a file with HyperSpy and pick one signal from it."""
    try:
        with _quiet_hyperspy():
            result = hs.load(path, lazy=lazy, file_format=file_format)
    except Exception as exc:  # every reader has its own exceptions
        raise _unreadable(path, exc) from exc
    signals = result if isinstance(result, list) else [result]
    if not signals:
        raise _refuse(path, "it holds no signal")
    if len(signals) == 1 and channel is None:
        return signals[0]
    return _pick_signal(signals, channel, path)  # a single signal must match ``channel`` too


def _is_image_like(signal) -> bool:
    """True if ``signal`` can be read as one image or a stack of images."""
    sig_dim = signal.axes_manager.signal_dimension
    return sig_dim != 1 and signal.data.ndim in (2, 3)


def _pick_signal(signals: list, channel: str | None, path: Path):
    """Pick the signal named by ``channel``, else the first image, from a file's signals."""
    titles = [str(s.metadata.General.title) for s in signals]
    named = [f"'{t}'" if t else "an untitled signal" for t in titles]
    listing = ", ".join(f"{n} ({_what(s)})" for n, s in zip(named, signals, strict=True))
    if channel is not None:
        wanted = str(channel).lower()
        found = [s for t, s in zip(titles, signals, strict=True) if wanted in t.lower()]
        if not found:
            raise _refuse(path, f"no signal title contains '{channel}'; it holds {listing}")
        images = [s for s in found if _is_image_like(s)]
        return (images or found)[0]
    images = [(t, s) for t, s in zip(titles, signals, strict=True) if _is_image_like(s)]
    if not images:
        raise _refuse(path, f"it holds no image, only {listing}; {_NEEDS_IMAGE}")
    log.info("%s holds %d signals: %s; using '%s'", path, len(signals), listing, images[0][0])
    return images[0][1]


def _read_numpy(path: Path, lazy: bool):
    """Read a .npy file (memory-mapped and wrapped in dask if ``lazy``)."""
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    if not lazy:
        return data
    import dask.array as da
    from dask.base import tokenize

    # Not the memory map itself: dask copies an array it is given (and hashes it), so the
    # whole file would be read into memory (2 GB for 2,000 frames of 512^2), in every
    # process that opens it, and pickled with the graph. The array is named by the file
    # and its version instead.
    stat = path.stat()
    name = "npy-" + tokenize(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return da.from_array(_NpyFile(path, data), chunks=_frame_chunks(data.ndim), name=name)


class _NpyFile:
    """A .npy file that reads the frames asked for, when asked, with plain file reads (no
    memory map stays resident); it pickles as its path and layout."""

    def __init__(self, path, mapped):
        self.path, self.shape, self.dtype = str(path), mapped.shape, mapped.dtype
        self.ndim, self.offset = mapped.ndim, int(mapped.offset)
        self.fortran = mapped.ndim > 1 and not mapped.flags.c_contiguous

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key else slice(None)
        if self.fortran or not isinstance(first, slice) or first.step not in (None, 1):
            mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
            return np.array(mapped[key])
        start, stop, _ = first.indices(self.shape[0])
        n = max(0, stop - start)
        row = int(np.prod(self.shape[1:], dtype=np.int64))
        with open(self.path, "rb") as file:
            file.seek(self.offset + start * row * self.dtype.itemsize)
            block = np.fromfile(file, dtype=self.dtype, count=n * row)
        if block.size != n * row:
            raise OSError(f"{self.path} is shorter than its header says (truncated?)")
        return block.reshape((n, *self.shape[1:]))[(slice(None), *key[1:])]


def _is_dask(data) -> bool:
    """True if ``data`` is a dask array; dask is not imported for the test (a dask
    array cannot exist before dask is imported)."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(data, dask_array.Array)


def _frame_chunks(ndim: int):
    """Dask chunks of whole frames for an image or stack; dask's choice for other shapes.

    Data of other dimensions are refused later, with a message that says what they are.
    """
    return _FRAME_CHUNKS[: ndim - 2] + (-1, -1) if ndim in (2, 3) else "auto"


def _read_pillow(path: Path) -> np.ndarray:
    """Read a PNG or JPEG with Pillow as a (H, W) or (H, W, 3|4) array."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "LA":
                image = image.getchannel("L")
            elif image.mode not in {"L", "I", "F", "RGB", "RGBA"} and not image.mode.startswith(
                "I;16"
            ):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            return np.array(image)
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _is_hyperspy_hdf5(path: Path) -> bool:
    """True if an HDF5 file was written by HyperSpy."""
    try:
        with h5py.File(path, "r") as file:
            return "Experiments" in file or file.attrs.get("file_format") == "HyperSpy"
    except Exception:
        return False  # _read_plain_hdf5 reports why it cannot be read


def _read_plain_hdf5(path: Path, lazy: bool):
    """Read the image dataset and any JSON metadata of a plain HDF5 file."""
    try:
        file = h5py.File(path, "r")
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    numeric, hints = {}, {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biufc" and obj.ndim:
            numeric[name] = obj
        elif isinstance(obj, h5py.Dataset) and obj.shape == ():
            hints.update(parse_json(obj[()]))

    file.visititems(visit)
    for value in file.attrs.values():
        hints.update(parse_json(value))
    try:
        dataset = _pick_dataset(numeric, path)
    except LoadError:
        file.close()
        raise
    if lazy:
        import dask.array as da

        return da.from_array(dataset, chunks=_frame_chunks(dataset.ndim)), hints
    with file:
        return dataset[()], hints


def _pick_dataset(numeric: dict, path: Path):
    """Pick the one image dataset of a plain HDF5 file."""
    images = {name: ds for name, ds in numeric.items() if ds.ndim >= 2}
    if len(images) != 1:
        named = {
            n: ds for n, ds in images.items() if n.split("/")[-1].lower() in _IMAGE_DATASET_NAMES
        }
        images = named if len(named) == 1 else images
    if len(images) == 1:
        return next(iter(images.values()))
    listing = ", ".join(f"'{n}' {ds.shape}" for n, ds in numeric.items()) or "none"
    count = "no" if not images else "several"
    raise _refuse(
        path,
        f"it is an HDF5 file with {count} 2-D/3-D numeric datasets (numeric datasets: {listing}); "
        f"atomstat needs exactly one, or one named {'/'.join(_IMAGE_DATASET_NAMES)}",
    )


def _array_signal(data, path: Path):
    """Wrap a NumPy or dask array (RGB(A) made gray) read from ``path`` in a HyperSpy signal."""
    _check_dtype(data.dtype, path)
    if data.ndim == 0:  # HyperSpy would make it a 1-D signal of one channel
        raise _refuse(path, f"it is a single number (0-D), not an image; {_NEEDS_IMAGE}")
    if data.ndim in (3, 4) and data.shape[-1] in (3, 4) and data.dtype.kind in "biuf":
        data = _luminance(data[..., 0], data[..., 1], data[..., 2])
    signal = hs.signals.BaseSignal(data)
    return signal.as_lazy() if _is_dask(data) else signal


def _check_dtype(dtype: np.dtype, path: Path) -> None:
    """Refuse data that are not numbers: text, dates, objects, records other than R, G, B."""
    if dtype.names is not None:
        if _RGB_FIELDS <= set(dtype.names):
            return
        fields = ", ".join(f"'{name}'" for name in dtype.names)
        raise _refuse(
            path,
            f"it holds records with the fields {fields} ({dtype}), not numbers; atomstat "
            "reads records only as colour pixels with the fields 'R', 'G' and 'B'",
        )
    if dtype.kind not in "biufc":
        kind = _DTYPE_KINDS.get(dtype.kind, "non-numeric")
        raise _refuse(path, f"it holds {kind} values ({dtype}), not numbers")


def _luminance(red, green, blue):
    """Return the float32 luminance of three colour planes."""
    planes = (red, green, blue)
    gray = sum(
        weight * plane.astype(np.float32) for weight, plane in zip(_LUMA, planes, strict=True)
    )
    return gray.astype(np.float32)


def _what(signal) -> str:
    """Describe what ``signal`` is, e.g. 'a 1-D spectrum of 1024 channels (EELS)'."""
    data, am = signal.data, signal.axes_manager
    shape = tuple(data.shape)
    if np.issubdtype(data.dtype, np.complexfloating):
        return f"complex data ({data.dtype}) of shape {shape}"
    if am.signal_dimension == 1 or data.ndim <= 1:
        kind = signal.metadata.get_item("Signal.signal_type") or ""
        kind = f" ({kind})" if kind else ""
        if data.ndim == 0:
            return "a single number"
        if data.ndim == 1:
            return f"a 1-D spectrum of {shape[-1]} channels{kind}"
        return (
            f"{int(np.prod(shape[:-1]))} 1-D spectra of {shape[-1]} channels{kind}, shape {shape}"
        )
    if data.ndim > 3:
        return f"a {data.ndim}-D dataset of shape {shape}"
    if data.ndim == 3:
        return f"a stack of {shape[0]} frames of {shape[2]}x{shape[1]} pixels"
    return f"an image of {shape[1]}x{shape[0]} pixels"


def _validate(signal, path: Path):
    """Refuse what is not one image or one stack; return it as a Signal2D."""
    data, sig_dim = signal.data, signal.axes_manager.signal_dimension
    _check_dtype(data.dtype, path)
    what = _what(signal)
    if np.issubdtype(data.dtype, np.complexfloating):
        raise _refuse(path, f"it is {what}; atomstat needs real intensities, e.g. the modulus")
    if sig_dim == 1 or data.ndim <= 1 or data.ndim > 3:
        raise _refuse(path, f"it is {what}; {_NEEDS_IMAGE}")
    if data.ndim == 3 and data.shape[0] == 0:
        raise _refuse(path, "it is a stack with zero frames; there is nothing to analyse")
    if min(data.shape[-2:]) < MIN_SIDE:
        raise _refuse(path, f"it is {what}; atomstat needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if sig_dim != 2 or not isinstance(signal, hs.signals.Signal2D):
        signal = signal.transpose(signal_axes=2)
    return signal


def _to_float32(data):
    """Return ``data`` (NumPy or dask, HyperSpy RGB dtypes included) as float32 gray."""
    if data.dtype.names:  # HyperSpy rgb8/rgb16/rgba8/rgba16
        return _luminance(data["R"], data["G"], data["B"])
    return data if data.dtype == np.float32 else data.astype(np.float32)


def _fill_frames(frames: np.ndarray) -> tuple[np.ndarray, int, list[int]]:
    """Replace non-finite pixels of (N, H, W) ``frames`` by their frame's finite median.

    Returns the filled frames, the number of pixels replaced and the frames
    without any finite pixel (filled with 0).
    """
    bad = ~np.isfinite(frames)
    if not bad.any():
        return frames, 0, []
    frames, empty = frames.copy(), []
    for index in np.flatnonzero(bad.any(axis=(1, 2))):
        finite = frames[index][~bad[index]]
        empty += [] if finite.size else [int(index)]
        frames[index][bad[index]] = np.median(finite) if finite.size else 0.0
    return frames, int(bad.sum()), empty


def _fill_block(block: np.ndarray, path: str) -> np.ndarray:
    """Dask block function: fill the non-finite pixels of whole frames, with a warning."""
    frames, count, empty = _fill_frames(block.reshape((-1, *block.shape[-2:])))
    if count:
        log.warning(
            "%s: replaced %d NaN/inf pixels by their frame's median; %d frames had no finite "
            "pixel and were set to 0",
            path,
            count,
            len(empty),
        )
    return frames.reshape(block.shape)


def _fill_nonfinite(signal, path: Path) -> None:
    """Replace NaN/inf pixels by the median of the finite pixels of their frame."""
    data = signal.data
    if _is_dask(data):
        whole_frames = {data.ndim - 2: -1, data.ndim - 1: -1, **({0: 16} if data.ndim == 3 else {})}
        signal.data = data.rechunk(whole_frames).map_blocks(
            _fill_block, path=str(path), dtype=np.float32
        )
        return
    frames, count, empty = _fill_frames(data.reshape((-1, *data.shape[-2:])))
    if empty:
        where = "it is an image" if data.ndim == 2 else f"frame {empty[0]} is an image"
        raise _refuse(path, f"{where} with no finite pixel (all NaN or inf); nothing to analyse")
    if count:
        log.warning(
            "%s: replaced %d NaN/inf pixels by the median of the finite pixels of their frame",
            path,
            count,
        )
        signal.data = frames.reshape(data.shape)


def _describe_source(signal, path: Path) -> None:
    """Name unnamed axes (frame, y, x) and record the source file in the metadata."""
    am = signal.axes_manager
    names = ("frame",) * am.navigation_dimension + ("x", "y")
    for axis, name in zip((*am.navigation_axes, *am.signal_axes), names, strict=True):
        if str(axis.name) in ("", "<undefined>", "None"):
            axis.name = name
    general = signal.metadata.General
    title = str(general.get_item("title") or "").strip()
    general.original_filename = str(path)
    general.title = f"{path.name}: {title}" if title and title != path.stem else path.name
