"""Selections as rules: what was brushed, not which rows it hit.

A selection is a sequence of steps, each a rule combined with the selection
so far by a mode: ``replace``, ``add``, ``intersect`` or ``remove``. Because
the rule is kept (a range on two columns, an interval on one, a lasso
polygon, or a list of atom ids), the selection is re-applied to a new atoms
table after a threshold change, and it can be saved and undone. No widgets
here: the views turn selector traits into these rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.path import Path as _Polygon

__all__ = [
    "MODES",
    "IdsRule",
    "IntervalRule",
    "PolygonRule",
    "RangeRule",
    "Selection",
    "rule_from_dict",
]

MODES = ("replace", "add", "intersect", "remove")


def _column(atoms: pd.DataFrame, name: str) -> np.ndarray:
    if name not in atoms:
        return np.full(len(atoms), np.nan)
    return pd.to_numeric(atoms[name], errors="coerce").to_numpy(float)


@dataclass(frozen=True)
class IntervalRule:
    """``low <= atoms[column] <= high`` (an interval brush on a histogram)."""

    column: str
    low: float
    high: float

    def mask(self, atoms: pd.DataFrame) -> np.ndarray:
        v = _column(atoms, self.column)
        return (v >= min(self.low, self.high)) & (v <= max(self.low, self.high))

    def describe(self) -> str:
        return f"{self.low:.4g} <= {self.column} <= {self.high:.4g}"


@dataclass(frozen=True)
class RangeRule:
    """A rectangle in the plane of two columns (a brush on a scatter plot)."""

    x: str
    y: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def mask(self, atoms: pd.DataFrame) -> np.ndarray:
        return IntervalRule(self.x, *self.x_range).mask(atoms) & IntervalRule(
            self.y, *self.y_range
        ).mask(atoms)

    def describe(self) -> str:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return f"{x0:.4g} <= {self.x} <= {x1:.4g} and {y0:.4g} <= {self.y} <= {y1:.4g}"


@dataclass(frozen=True)
class PolygonRule:
    """Inside a polygon in the plane of two columns (a lasso)."""

    x: str
    y: str
    vertices: tuple[tuple[float, float], ...]

    def mask(self, atoms: pd.DataFrame) -> np.ndarray:
        if len(self.vertices) < 3 or not len(atoms):
            return np.zeros(len(atoms), bool)
        pts = np.column_stack([_column(atoms, self.x), _column(atoms, self.y)])
        ok = np.isfinite(pts).all(axis=1)
        inside = np.zeros(len(atoms), bool)
        inside[ok] = _Polygon(np.asarray(self.vertices, float)).contains_points(pts[ok])
        return inside

    def describe(self) -> str:
        return f"lasso of {len(self.vertices)} points on ({self.x}, {self.y})"


@dataclass(frozen=True)
class IdsRule:
    """These atom ids (a click on the image)."""

    ids: tuple[int, ...]

    def mask(self, atoms: pd.DataFrame) -> np.ndarray:
        return atoms.index.isin(self.ids)

    def describe(self) -> str:
        shown = ", ".join(map(str, self.ids[:5])) + (" ..." if len(self.ids) > 5 else "")
        return f"atom {shown}" if len(self.ids) == 1 else f"atoms {shown}"


_RULES = {cls.__name__: cls for cls in (IntervalRule, RangeRule, PolygonRule, IdsRule)}


def rule_from_dict(data: dict):
    """Rebuild a rule from ``{"kind": ..., **fields}`` (as :meth:`Selection.to_dict` writes)."""
    data = dict(data)
    cls = _RULES.get(data.pop("kind", None))
    if cls is None:
        raise ValueError(f"unknown selection rule {data!r}")
    for key in ("x_range", "y_range", "ids"):
        if key in data:
            data[key] = tuple(data[key])
    if "vertices" in data:
        data["vertices"] = tuple(tuple(map(float, v)) for v in data["vertices"])
    return cls(**data)


@dataclass(frozen=True)
class Selection:
    """Rules combined in order; the empty selection selects nothing.

    Examples
    --------
    >>> atoms = pd.DataFrame({"area": [1.0, 2, 3, 4], "circularity": [0.9, 0.8, 0.9, 0.5]})
    >>> sel = Selection().combine(IntervalRule("area", 2, 4), "replace")
    >>> sel = sel.combine(IntervalRule("circularity", 0.85, 1), "intersect")
    >>> atoms.index[sel.mask(atoms)].tolist()
    [2]
    """

    steps: tuple = field(default=())

    def combine(self, rule, mode: str = "replace") -> Selection:
        """A new selection: this one combined with ``rule`` by ``mode``."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "replace":
            return Selection(((mode, rule),))
        return Selection((*self.steps, (mode, rule)))

    def mask(self, atoms: pd.DataFrame) -> np.ndarray:
        """Boolean mask over the rows of ``atoms``."""
        out = np.zeros(len(atoms), bool)
        for mode, rule in self.steps:
            hit = np.asarray(rule.mask(atoms), bool)
            if mode == "replace":
                out = hit
            elif mode == "add":
                out = out | hit
            elif mode == "intersect":
                out = out & hit
            else:
                out = out & ~hit
        return out

    def describe(self) -> str:
        """One line for the status area."""
        if not self.steps:
            return "nothing selected"
        return "; ".join(f"{mode} {rule.describe()}" for mode, rule in self.steps)

    def to_dict(self) -> list:
        """JSON-ready steps."""
        out = []
        for mode, rule in self.steps:
            fields = {k: _plain(v) for k, v in rule.__dict__.items()}
            out.append({"mode": mode, "rule": {"kind": type(rule).__name__, **fields}})
        return out

    @classmethod
    def from_dict(cls, steps: list) -> Selection:
        return cls(tuple((s["mode"], rule_from_dict(s["rule"])) for s in steps or ()))


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
