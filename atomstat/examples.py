"""Example images shipped with atomstat (real data, with attribution in data/ATTRIBUTION.md)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["example_path", "examples"]

_SUFFIXES = (".npy", ".dm3", ".dm4", ".tif", ".tiff", ".hspy", ".emd", ".png")


def examples() -> dict[str, Path]:
    """The shipped example images, keyed by name (the file stem).

    Examples
    --------
    >>> "MoS2_V-doped_HAADF_9nm" in examples()
    True
    """
    folder = Path(str(files("atomstat").joinpath("data")))
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in _SUFFIXES}


def example_path(name: str) -> Path:
    """Path of a shipped example image; ``name`` is a key of :func:`examples`."""
    found = examples()
    if name not in found:
        raise KeyError(f"no example named {name!r}; examples: {sorted(found)}")
    return found[name]
