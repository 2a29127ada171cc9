"""Dashboard state: the image on screen and the atoms found in it.

No widget imports here, so the state can be driven and checked in pytest
without a browser. Views observe the traits and redraw; the analysis itself is
one call to :func:`atomstat.analyze`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import traitlets

import atomstat
from atomstat.examples import examples

__all__ = ["AppState", "bundled_examples", "format_status"]


def bundled_examples() -> dict[str, Path]:
    """Return the example images shipped with atomstat, keyed by display name."""
    return {name.replace("_", " "): path for name, path in examples().items()}


def format_status(n_atoms: int, seconds: float, pixel_size: float, units: str) -> str:
    """Return the one-line summary shown under the image.

    Examples
    --------
    >>> format_status(1234, 0.5, 0.0176, "nm")
    '1234 atoms found in 0.50 s, pixel size 0.0176 nm'
    """
    return f"{n_atoms} atoms found in {seconds:.2f} s, pixel size {pixel_size:.4g} {units}"


def _calibration(signal) -> tuple[float, str]:
    """Return (pixel size, unit) of the last signal axis, ``(1.0, "px")`` if unset."""
    axis = signal.axes_manager[-1]
    units = axis.units if isinstance(axis.units, str) and axis.units else "px"
    if units == "<undefined>":
        units = "px"
    return float(axis.scale), units


class AppState(traitlets.HasTraits):
    """What the dashboard shows: one image, its calibration and its atoms table."""

    source = traitlets.Unicode(None, allow_none=True, help="path of the open image")
    image = traitlets.Any(None, help="2-D ndarray on screen (frame 0 of a stack)")
    pixel_size = traitlets.Float(1.0)
    units = traitlets.Unicode("px")
    atoms = traitlets.Any(None, help="atoms table from atomstat.analyze, None until found")
    busy = traitlets.Bool(False)
    status = traitlets.Unicode("")

    def open(self, path: str | Path) -> None:
        """Load ``path`` with :func:`atomstat.load` and show it; forget earlier atoms."""
        try:
            signal = atomstat.load(path)
        except Exception as exc:
            self.status = f"Opening {Path(path).name} failed: {exc}"
            raise
        image = np.asarray(signal.data)
        if image.ndim == 3:
            image = image[0]
        pixel_size, units = _calibration(signal)
        with self.hold_trait_notifications():
            self.source = str(path)
            self.atoms = None
            self.pixel_size, self.units = pixel_size, units
            self.image = image
            height, width = image.shape
            size = f"{width} x {height} px, pixel size {pixel_size:.4g} {units}"
            self.status = f"{Path(path).name}: {size}"

    def find_atoms(self) -> None:
        """Run :func:`atomstat.analyze` on the open image and store the atoms table."""
        if self.source is None:
            self.status = "Finding atoms failed: no image is open"
            raise ValueError("no image is open: choose an example first")
        self.busy = True
        self.status = "Finding atoms..."
        try:
            start = time.perf_counter()
            atoms = atomstat.analyze(self.source)
            seconds = time.perf_counter() - start
        except Exception as exc:
            self.status = f"Finding atoms failed: {exc}"
            raise
        finally:
            self.busy = False
        pixel_size = float(atoms.attrs.get("pixel_size", self.pixel_size))
        units = str(atoms.attrs.get("units", self.units))
        self.atoms = atoms
        self.status = format_status(len(atoms), seconds, pixel_size, units)
