"""Scanning-probe (STM) files: Nanonis ``.sxm`` and WSxM images.

:func:`atomstat.load` dispatches here for the extensions in
:data:`STM_EXTENSIONS`. Each file holds several channels (Nanonis: Z,
Current, ...; WSxM: one channel per file), each scanned forward and/or
backward; ``channel`` and ``direction`` pick one image.

* **Nanonis .sxm** is read with ``xarray-nanonis`` (PyPI), which also puts
  every scan (up or down, forward or backward) in the same frame. atomstat
  then turns it so that row 0 is the top of the scan frame, as Nanonis shows
  it, and a backward image lies exactly on its forward image.
* **WSxM** (``.top``, ``.stp``, ``.tom``: an ASCII header, then the binary
  image) has no maintained reader on PyPI without a heavy dependency tree
  (SciFiReaders pulls in sidpy, numba, dask-ml, ...), so atomstat reads it
  itself, following the format as Gwyddion's ``wsxmfile`` module reads it:
  little-endian int16 (``short``/``integer``), ``float`` or ``double``
  values stored with both axes reversed, the height scaled so that the data
  range equals the header's ``Z Amplitude``.

Lateral lengths are in nm (the rest of atomstat's convention); heights given
in a length unit are converted to nm too. The returned signal is marked as
a scanning-probe image (``metadata.Signal.signal_type == "STM"``):
:func:`imaging_mode` reads that mark, and :func:`atomstat.analyze` picks the
STM model from it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from .calibration import NM_PER_UNIT
from .errors import LoadError

__all__ = ["DIRECTIONS", "STM_EXTENSIONS", "WSXM_EXTENSIONS", "imaging_mode", "read_stm"]

log = logging.getLogger(__name__)

WSXM_EXTENSIONS = frozenset({".top", ".stp", ".tom"})
STM_EXTENSIONS = frozenset({".sxm"}) | WSXM_EXTENSIONS
"""File extensions read by this module (lower case, with the dot)."""
DIRECTIONS = ("forward", "backward")
STM_SIGNAL_TYPE = "STM"
_DEFAULT_CHANNELS = ("z", "topography", "topo", "height")


def imaging_mode(data) -> str | None:
    """``"stm"`` for a signal loaded from a scanning-probe file, else None.

    Reads ``metadata.Signal.signal_type``; plain arrays give None.
    """
    metadata = getattr(data, "metadata", None)
    if metadata is None:
        return None
    kind = str(metadata.get_item("Signal.signal_type", "") or "")
    return "stm" if kind.upper() == STM_SIGNAL_TYPE else None


def read_stm(path: Path, *, channel: str | None = None, direction: str | None = None):
    """Read one channel and direction of a Nanonis or WSxM file as a Signal2D (axes in nm)."""
    if direction is not None and str(direction).lower() not in DIRECTIONS:
        raise _refuse(path, f"direction must be 'forward' or 'backward', got {direction!r}")
    direction = None if direction is None else str(direction).lower()
    if path.suffix.lower() == ".sxm":
        image, info = _read_sxm(path, channel, direction)
    else:
        image, info = _read_wsxm(path, channel, direction)
    return _signal(image, info)


# --------------------------------------------------------------------------- shared


def _refuse(path: Path, problem: str) -> LoadError:
    return LoadError(f"Cannot load {path}: {problem}.")


def _length_nm(text: str, what: str, path: Path) -> float:
    """Parse '12.5 nm' (or Å, pm, µm, m) into nm."""
    match = re.fullmatch(r"\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*(\S+)\s*", str(text))
    factor = NM_PER_UNIT.get(match.group(2).lower()) if match else None
    if factor is None or float(match.group(1)) <= 0:
        raise _refuse(path, f"its {what} '{text}' is not a positive length")
    return float(match.group(1)) * factor


def _pick_channel(names: list[str], channel: str | None, path: Path, listing: str) -> int:
    """Index of the channel named ``channel`` (exact, then unique substring; case-insensitive).

    By default the topography (Z) channel, else the first.
    """
    lower = [n.lower() for n in names]
    if channel is None:
        for name in _DEFAULT_CHANNELS:
            if name in lower:
                return lower.index(name)
        return 0
    wanted = str(channel).strip().lower()
    if wanted in lower:
        return lower.index(wanted)
    partial = [i for i, n in enumerate(lower) if wanted in n]
    if len(partial) == 1:
        return partial[0]
    why = "several channels match" if partial else "there is no such channel"
    raise _refuse(path, f"{why} '{channel}'; the file holds the channels {listing}")


def _height(values: np.ndarray, unit: str) -> tuple[np.ndarray, str]:
    """Heights in a length unit become nm; other quantities keep their unit ("A" is amperes)."""
    factor = NM_PER_UNIT.get(unit.strip().lower())
    if factor is None or unit.strip() in ("A", "a"):
        return values, unit
    return values * factor, "nm"


def _signal(image: np.ndarray, info: dict):
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(np.ascontiguousarray(image, dtype=np.float32))
    for axis, name, scale in zip(
        signal.axes_manager.signal_axes, ("x", "y"), info["pixel_nm"], strict=True
    ):
        axis.name, axis.scale, axis.offset, axis.units = name, scale, 0.0, "nm"
    signal.metadata.set_item("Signal.signal_type", STM_SIGNAL_TYPE)
    signal.metadata.set_item("Signal.quantity", f"{info['channel']} ({info['unit']})")
    signal.metadata.set_item("General.title", f"{info['channel']} {info['direction']}")
    signal.metadata.set_item("Acquisition_instrument.STM", info["acquisition"])
    signal.original_metadata.add_dictionary({"header": info["header"]})
    return signal


# --------------------------------------------------------------------------- Nanonis


def _read_sxm(path: Path, channel: str | None, direction: str | None):
    nx, ny, names, dirs = _sxm_layout(path)
    listing = ", ".join(
        f"'{n}' ({'forward, backward' if d == 'both' else d})"
        for n, d in zip(names, dirs, strict=True)
    )
    index = _pick_channel(names, channel, path, listing)
    available = list(DIRECTIONS) if dirs[index] == "both" else [dirs[index]]
    direction = direction or available[0]
    if direction not in available:
        raise _refuse(
            path, f"channel '{names[index]}' was only scanned {available[0]}; channels: {listing}"
        )
    reader = _sxm_read(path)
    header = reader.header
    range_x, range_y = (float(v) for v in header["SCAN_RANGE"].split())
    if range_x <= 0 or range_y <= 0:
        raise _refuse(path, f"its scan range is {range_x} x {range_y} m")
    # xarray-nanonis: (dir, y, x) with forward and backward in one frame, row 0 at the bottom.
    cube = np.asarray(reader.dataset[names[index]].values, np.float64)
    image = cube[DIRECTIONS.index(direction) if dirs[index] == "both" else 0][::-1]
    image, unit = _height(image, reader.units.get(names[index], ""))
    acquisition = {
        "format": "Nanonis sxm",
        "scan_direction": str(header.get("SCAN_DIR", "")),
        "bias_V": _float(header.get("BIAS")),
        "scan_angle_deg": _float(header.get("SCAN_ANGLE")),
    }
    info = {
        "channel": names[index],
        "direction": direction,
        "unit": unit,
        "pixel_nm": (range_x * 1e9 / nx, range_y * 1e9 / ny),
        "acquisition": {k: v for k, v in acquisition.items() if v not in (None, "")},
        "header": _plain(header),
    }
    return image, info


def _float(text):
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def _plain(tree):
    """The header as plain str/dict values (xarray-nanonis gives tuples in tables)."""
    if isinstance(tree, dict):
        return {str(k): _plain(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [str(v) for v in tree]
    return str(tree)


_SXM_END = b":SCANIT_END:"


def _sxm_layout(path: Path):
    """Pixels, channel names and directions from the header, after checking the data size.

    A quick look of atomstat's own, so that a wrong or truncated file gets a
    clear message before the reader runs.
    """
    raw = path.read_bytes()
    if not raw.startswith(b":NANONIS_VERSION:"):
        raise _refuse(path, "it is not a Nanonis scan file (no ':NANONIS_VERSION:' header)")
    end = raw.find(_SXM_END)
    if end < 0:
        raise _refuse(path, "its Nanonis header has no ':SCANIT_END:' (truncated file?)")
    text = raw[:end].decode("latin-1")
    fields = dict(re.findall(r"^:([^:\n]+):\s*\n(.*?)(?=^:|\Z)", text, re.M | re.S))
    try:
        nx, ny = (int(v) for v in fields["SCAN_PIXELS"].split())
        rows = [r.split("\t") for r in fields["DATA_INFO"].strip("\n").splitlines() if r.strip()]
        columns = [c.strip() for c in rows[0] if c.strip()]
        table = [[c.strip() for c in r if c.strip()] for r in rows[1:]]
        names = [r[columns.index("Name")] for r in table]
        dirs = [r[columns.index("Direction")].lower() for r in table]
    except (KeyError, ValueError, IndexError) as exc:
        problem = f"its Nanonis header lacks a valid SCAN_PIXELS or DATA_INFO ({exc})"
        raise _refuse(path, problem) from None
    if nx <= 0 or ny <= 0 or not names:
        raise _refuse(path, f"its header gives {nx}x{ny} pixels and {len(names)} channels")
    if len(set(dirs)) > 1:
        raise _refuse(path, "its channels were scanned in different directions (unsupported)")
    expected = sum(2 if d == "both" else 1 for d in dirs) * nx * ny
    start = raw.find(b"\x1a\x04", end)  # the data follow the bytes 1A 04
    found = 0 if start < 0 else (len(raw) - start - 2) // 4
    if found < expected:
        raise _refuse(
            path,
            f"it holds {found} data values where its header announces {expected} "
            f"({len(names)} channels of {nx}x{ny} px; truncated file?)",
        )
    return nx, ny, names, dirs


def _sxm_read(path: Path):
    """Read the file with xarray-nanonis (``.header``, ``.dataset``, ``.units``)."""
    try:
        from xarray_nanonis.nanonis import Read_NanonisScanFile
    except ImportError as exc:
        raise _refuse(path, "reading .sxm files needs the package 'xarray-nanonis'") from exc
    if path.suffix != ".sxm":
        raise _refuse(path, "the Nanonis reader needs the extension '.sxm' in lower case")
    try:
        return Read_NanonisScanFile(path)
    except Exception as exc:  # the reader's own errors
        raise _refuse(
            path, f"its Nanonis data cannot be read ({type(exc).__name__}: {exc})"
        ) from exc


# --------------------------------------------------------------------------- WSxM

_WSXM_MAGIC = b"WSxM file copyright "
_WSXM_END = b"[Header end]"
# Image Data Type -> NumPy dtype(s), little-endian. "integer" is 2 bytes in the files
# Gwyddion reads and 4 in some others: the data size decides.
_WSXM_TYPES = {
    "short": ("<i2",),
    "short-data": ("<i2",),
    "integer": ("<i2", "<i4"),
    "integer-data": ("<i4",),
    "signedinteger": ("<i4",),
    "unsignedshort": ("<u2",),
    "float": ("<f4",),
    "float-data": ("<f4",),
    "double": ("<f8",),
}


def _read_wsxm(path: Path, channel: str | None, direction: str | None):
    raw = path.read_bytes()
    lines = raw[:512].splitlines()
    if not raw.startswith(_WSXM_MAGIC) or len(lines) < 2 or lines[1].strip() != b"SxM Image file":
        raise _refuse(
            path, "it is not a WSxM image file (no 'WSxM file copyright ... SxM Image file' header)"
        )
    end = raw.find(_WSXM_END)
    if end < 0:
        raise _refuse(path, "its WSxM header has no '[Header end]' marker (truncated file?)")
    start = raw.find(b"\n", end) + 1 if raw.find(b"\n", end) >= 0 else len(raw)
    header = _wsxm_header(raw[:end].decode("latin-1"))
    general, control = header.get("General Info", {}), header.get("Control", {})
    try:
        cols, rows = int(general["Number of columns"]), int(general["Number of rows"])
    except (KeyError, ValueError):
        raise _refuse(path, "its WSxM header lacks a valid 'Number of columns/rows'") from None
    if cols <= 0 or rows <= 0:
        raise _refuse(path, f"its WSxM header gives an image of {cols}x{rows} pixels")
    kind = general.get("Image Data Type", "short").strip().lower()
    if kind not in _WSXM_TYPES:
        raise _refuse(path, f"its WSxM data type '{kind}' is unknown")
    size = len(raw) - start
    dtypes = [np.dtype(t) for t in _WSXM_TYPES[kind]]
    fitting = [t for t in dtypes if size == rows * cols * t.itemsize] or [
        t for t in dtypes if size >= rows * cols * t.itemsize
    ]
    if not fitting:
        need = rows * cols * dtypes[0].itemsize
        raise _refuse(
            path,
            f"it holds {size} bytes of image data where its header announces {rows}x{cols} "
            f"'{kind}' values ({need} bytes; truncated file?)",
        )
    data = np.frombuffer(raw, dtype=fitting[0], count=rows * cols, offset=start)
    image = data.reshape(rows, cols)[::-1, ::-1].astype(np.float64)  # stored rotated by 180°
    name = general.get("Acquisition channel", "").strip() or "Topography"
    scanned = general.get("X scanning direction", "").strip().lower() or "forward"
    listing = f"'{name}' ({scanned}; WSxM keeps each channel and direction in its own file)"
    _pick_channel([name], channel, path, listing)
    if direction is not None and direction != scanned:
        raise _refuse(path, f"it holds the {scanned} scan only; the file holds {listing}")
    image, unit = _wsxm_height(image, general.get("Z Amplitude", ""))
    width = _length_nm(control.get("X Amplitude", ""), "X Amplitude", path)
    height = _length_nm(control.get("Y Amplitude", control.get("X Amplitude", "")), "Y", path)
    acquisition = {
        "format": "WSxM",
        "bias": control.get("Bias", ""),
        "head": general.get("Head type", ""),
    }
    info = {
        "channel": name,
        "direction": scanned,
        "unit": unit,
        "pixel_nm": (width / cols, height / rows),
        "acquisition": {k: v for k, v in acquisition.items() if v},
        "header": header,
    }
    return image, info


def _wsxm_header(text: str) -> dict:
    """``{section: {key: value}}`` from the WSxM header text."""
    header, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            header.setdefault(section, {})
        elif section is not None and ":" in line:
            key, value = line.split(":", 1)
            header[section][key.strip()] = value.strip()
    return header


def _wsxm_height(image: np.ndarray, amplitude: str) -> tuple[np.ndarray, str]:
    """Scale the raw values so their range equals the header's Z Amplitude (as Gwyddion does)."""
    match = re.fullmatch(r"\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*(.*?)\s*", amplitude)
    span = float(np.ptp(image)) if image.size else 0.0
    if not match or float(match.group(1)) <= 0 or span == 0:
        return image, "a.u."
    image = image * (float(match.group(1)) / span)
    return _height(image, match.group(2) or "a.u.")
