"""Pixel calibration: length units to nm, and calibration hints from JSON metadata.

Used by :mod:`atomstat.io`; works on HyperSpy axes without importing HyperSpy.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

__all__ = ["NM_PER_UNIT", "calibrate", "check_pixel_size", "parse_json", "read_sidecar"]

log = logging.getLogger(__name__)

NM_PER_UNIT = {
    unit: nm
    for nm, units in [
        (1e-3, "pm"),
        (0.1, "å a ang angstrom angstroms"),  # "Å" (U+00C5 or U+212B) lower-cases to "å"
        (1.0, "nm"),
        (1e3, "um µm μm micron microns"),  # micro sign U+00B5 and Greek mu U+03BC
        (1e6, "mm"),
        (1e7, "cm"),
        (1e9, "m"),
    ]
    for unit in units.split()
}
"""Length units understood in files and sidecars (lower case) and their size in nm."""

_NO_UNIT = {"", "<undefined>", "undefined", "none", "px", "pixel", "pixels"}


def check_pixel_size(value, units: str = "nm") -> tuple[float, str]:
    """A pixel size and its unit, checked, as ``(size, "nm")`` or ``(size, "px")``.

    Parameters
    ----------
    value : float or str
        The size of one pixel: a positive, finite number.
    units : str, optional
        A length unit (``pm``, ``Å``, ``nm``, ``µm``, ...; see ``NM_PER_UNIT``),
        or ``px`` for an uncalibrated image.

    Returns
    -------
    size, units : float, str
        The size converted to nm (``units`` ``"nm"``), or as given in px.

    Raises
    ------
    ValueError
        If the size is 0, negative, infinite, NaN or not a number, or the unit
        is not a length; the message says which and what is allowed.

    Examples
    --------
    >>> check_pixel_size(0.25, "Å")
    (0.025, 'nm')
    """
    try:
        size = float(value)
    except (TypeError, ValueError):
        size = math.nan
    if not (math.isfinite(size) and size > 0):
        raise ValueError(f"pixel size must be a positive, finite number, got {value!r}")
    unit = str(units).strip()
    if unit.lower() in ("px", "pixel", "pixels"):
        return size, "px"
    factor = NM_PER_UNIT.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"unit {unit!r} is not a length unit; use one of pm, Å, nm, µm, mm, m (or px)"
        )
    return size * factor, "nm"


def parse_json(value) -> dict:
    """Return ``value`` parsed as a JSON object, or {} if it is not one."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def read_sidecar(path: Path) -> dict:
    """Return the JSON sidecar ``<stem>.json`` beside ``path`` as a dict ({} if none).

    A sidecar that cannot be read, or that is not a JSON object, is ignored
    with a warning.
    """
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        parsed = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8 or not JSON
        log.warning("Ignored the sidecar %s: it is not readable JSON (%s)", sidecar, exc)
        return {}
    if not isinstance(parsed, dict):
        held = json.dumps(parsed)
        log.warning("Ignored the sidecar %s: it holds %.40s, not a JSON object", sidecar, held)
        return {}
    return parsed


def _flatten(tree, out=None) -> dict:
    """Flatten nested dicts into {normalised key: value}, the first occurrence winning."""
    out = {} if out is None else out
    for key, value in tree.items():
        if isinstance(value, dict):
            _flatten(value, out)
        else:
            out.setdefault(re.sub(r"[\s\-]+", "_", str(key).strip().lower()), value)
    return out


def _number(value) -> tuple[float, str] | None:
    """Parse ``0.5``, ``"0.5"`` or ``"0.5 nm"`` as (number, unit); None if not a finite number."""
    if isinstance(value, bool | dict | list):  # JSON true/false, or nested values
        return None
    match = re.fullmatch(r"\s*([-+.\deE]+)\s*(\S*)\s*", str(value))
    try:
        number = float(match.group(1)) if match else math.nan
    except ValueError:
        return None
    return (number, match.group(2)) if math.isfinite(number) else None


def _lengths_nm(flat: dict, key: str, source) -> tuple[float, float] | None:
    """Return the (x, y) lengths in nm stored under ``key`` in ``flat``, or None.

    A value that is there but is not a positive length is ignored with a
    warning that names ``source`` (the sidecar or the file) and the key.
    """
    unit = flat.get(f"{key}_units", flat.get(f"{key}_unit"))
    bare = flat.get("units", flat.get("unit"))  # {"pixel_size": 10, "units": "pm"}
    if unit is None and str(bare).strip().lower() in NM_PER_UNIT:
        unit = bare
    if f"{key}_nm" in flat:
        name, unit = f"{key}_nm", "nm"
        values = flat[name]
    elif f"{key}_x" in flat:
        name = f"{key}_x"
        values = [flat[name], flat.get(f"{key}_y", flat[name])]
    elif key in flat:
        name, values = key, flat[key]
    else:
        return None
    values = list(values) if isinstance(values, list | tuple) else [values]
    parsed = [_number(value) for value in values]
    if not parsed or None in parsed:
        value = json.dumps(flat[name], default=str)
        log.warning("%s: ignored the calibration %s=%s: not a number", source, name, value)
        return None
    parsed = (parsed * 2)[:2]
    numbers = [number for number, _ in parsed]
    unit = str(unit or parsed[0][1] or "nm").strip()
    factor = NM_PER_UNIT.get(unit.lower())
    if factor is None or min(numbers) <= 0:
        why = "not a length unit" if factor is None else "not positive"
        log.warning("%s: ignored the calibration %s=%s %s: %s", source, name, values, unit, why)
        return None
    return numbers[0] * factor, numbers[1] * factor


def _scales_from_hints(hints: dict, width: int, height: int, source) -> tuple[float, float] | None:
    """Return the (x, y) pixel size in nm given by the metadata ``hints`` of ``source``, or None."""
    flat = _flatten(hints)
    for key in ("pixel_size", "pixelsize", "pixel_spacing"):
        lengths = _lengths_nm(flat, key, source)
        if lengths:
            return lengths
    for key in ("field_of_view", "fov", "scan_size", "image_size"):
        lengths = _lengths_nm(flat, key, source)
        if lengths:
            return lengths[0] / width, lengths[1] / height
    return None


def calibrate(signal, hints: dict, path: Path) -> None:
    """Put the image axes in nm when the file or ``hints`` allow, else 'px' or 'unknown'.

    Parameters
    ----------
    signal : hyperspy.signals.Signal2D
        The image or stack read from ``path``; its image axes are changed in place.
    hints : dict
        Metadata that may give the calibration, as {source: metadata dict}, the
        source (e.g. the sidecar's path) being named in warnings. The first
        source that gives a pixel size or field of view wins.
    path : pathlib.Path
        The file, named in warnings.
    """
    axes = signal.axes_manager.signal_axes  # (x, y)
    from_hints = None
    for source, metadata in hints.items():
        if metadata and from_hints is None:
            from_hints = _scales_from_hints(metadata, axes[0].size, axes[1].size, source)
    for axis in axes:
        if not (math.isfinite(axis.scale) and axis.scale > 0):
            log.warning(
                "%s: the file's pixel size %g %s is not a positive, finite length; read as "
                "uncalibrated (px)", path, axis.scale, axis.units,
            )  # fmt: skip
            axis.scale, axis.offset, axis.units = 1.0, 0.0, "px"
    for axis, hinted in zip(axes, from_hints or (None, None), strict=True):
        unit = str(axis.units).strip().lower()
        if unit in NM_PER_UNIT:
            factor = NM_PER_UNIT[unit]
            axis.scale, axis.offset, axis.units = axis.scale * factor, axis.offset * factor, "nm"
        elif unit in _NO_UNIT and hinted is not None:
            axis.scale, axis.offset, axis.units = hinted, 0.0, "nm"
        elif unit in _NO_UNIT:
            axis.units = "px" if axis.scale == 1 else "unknown"
    units = {str(axis.units) for axis in axes} - {"nm", "px"}
    if units == {"unknown"}:
        scale = axes[0].scale
        log.warning(
            "%s: pixel size %g has no unit in the file; units set to 'unknown'", path, scale
        )
    elif units:
        log.warning("%s: the image units %s are not lengths; kept as they are", path, units)
