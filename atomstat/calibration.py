"""Pixel calibration: length units to nm, and calibration hints from JSON metadata.

Used by :mod:`atomstat.io`; works on HyperSpy axes without importing HyperSpy.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

__all__ = ["NM_PER_UNIT", "calibrate", "parse_json", "read_sidecar"]

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
    """Return the JSON sidecar ``<stem>.json`` beside ``path`` as a dict ({} if none)."""
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        return {}
    try:
        return parse_json(sidecar.read_text(encoding="utf-8"))
    except OSError as exc:
        log.warning("Ignored the sidecar %s: %s", sidecar, exc)
        return {}


def _flatten(tree, out=None) -> dict:
    """Flatten nested dicts into {normalised key: value}, the first occurrence winning."""
    out = {} if out is None else out
    for key, value in tree.items():
        if isinstance(value, dict):
            _flatten(value, out)
        else:
            out.setdefault(re.sub(r"[\s\-]+", "_", str(key).strip().lower()), value)
    return out


def _lengths_nm(flat: dict, key: str) -> tuple[float, float] | None:
    """Return the (x, y) lengths in nm stored under ``key`` in ``flat``, or None."""
    unit = flat.get(f"{key}_units", flat.get(f"{key}_unit"))
    bare = flat.get("units", flat.get("unit"))  # {"pixel_size": 10, "units": "pm"}
    if unit is None and str(bare).strip().lower() in NM_PER_UNIT:
        unit = bare
    if f"{key}_nm" in flat:
        values, unit = flat[f"{key}_nm"], "nm"
    elif f"{key}_x" in flat:
        values = [flat[f"{key}_x"], flat.get(f"{key}_y", flat[f"{key}_x"])]
    elif key in flat:
        values = flat[key]
    else:
        return None
    values = list(values) if isinstance(values, list | tuple) else [values]
    try:
        parsed = [re.fullmatch(r"\s*([-+.\deE]+)\s*(\S*)\s*", str(v)).groups() for v in values]
        parsed = (parsed * 2)[:2]
        numbers = [float(number) for number, _ in parsed]
    except (AttributeError, ValueError):
        return None
    if not numbers:
        return None
    unit = str(unit or parsed[0][1] or "nm").strip()
    factor = NM_PER_UNIT.get(unit.lower())
    if factor is None or min(numbers) <= 0:
        log.warning("Ignored the calibration %s=%s %s: not a length", key, values, unit)
        return None
    return numbers[0] * factor, numbers[1] * factor


def _scales_from_hints(hints: dict, width: int, height: int) -> tuple[float, float] | None:
    """Return the (x, y) pixel size in nm given by metadata ``hints``, or None."""
    flat = _flatten(hints)
    for key in ("pixel_size", "pixelsize", "pixel_spacing"):
        lengths = _lengths_nm(flat, key)
        if lengths:
            return lengths
    for key in ("field_of_view", "fov", "scan_size", "image_size"):
        lengths = _lengths_nm(flat, key)
        if lengths:
            return lengths[0] / width, lengths[1] / height
    return None


def calibrate(signal, hints: dict, path: Path) -> None:
    """Put the image axes in nm when the file or ``hints`` allow, else 'px' or 'unknown'."""
    axes = signal.axes_manager.signal_axes  # (x, y)
    from_hints = _scales_from_hints(hints, axes[0].size, axes[1].size) if hints else None
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
