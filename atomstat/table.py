"""The atoms table: the one interchange format between every pipeline stage.

One row per atom (or blob) per frame. The index, ``atom_id``, is a stable
integer id that selections and labels key on. Later stages add columns
(``anomaly``, ``cluster``, ``particle``, ``label``...) and never drop rows
silently.

Coordinates are in pixels: ``x`` is the column and ``y`` the row, and the
centre of the top-left pixel is ``(0, 0)``. ``orientation`` is in degrees in
``[0, 180)``, counter-clockwise from +x as the image is displayed (row 0 at
the top). Calibration lives in ``atoms.attrs``: ``pixel_size``, ``units`` and
``source``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ATOM_COLUMNS",
    "DEFECT_COLUMNS",
    "DEFECT_KINDS",
    "INDEX_NAME",
    "STAGE_COLUMNS",
    "empty_atoms",
    "make_atoms",
    "make_defects",
    "validate_atoms",
]

INDEX_NAME = "atom_id"

#: Column name -> dtype, in display order. The single definition of the schema.
ATOM_COLUMNS: dict[str, str] = {
    "frame": "int64",
    "x": "float64",
    "y": "float64",
    "area": "float64",
    "perimeter": "float64",
    "circularity": "float64",
    "orientation": "float64",
    "axis_major": "float64",
    "axis_minor": "float64",
    "eccentricity": "float64",
    "intensity": "float64",
    "nn_distance": "float64",
    "nnn_distance": "float64",
    "confidence": "float32",
    "edge": "bool",
}

#: Columns that later stages add (not part of every table): name -> dtype.
#: ``sublattice`` is -1 for an atom on no site (:func:`atomstat.sublattices`).
STAGE_COLUMNS: dict[str, str] = {
    "sublattice": "int64",
    "site_distance": "float64",
    "sublattice_nn_distance": "float64",
    "intensity_relative": "float64",
    "anomaly": "bool",
    "anomaly_score": "float64",
}

#: The defects table of :func:`atomstat.find_defects`: one row per defect per frame.
#: ``kind`` is one of ``DEFECT_KINDS``; ``atom_id`` is the atom's id in the atoms table
#: (-1 for a vacancy or an image feature); ``size`` the feature's width (px, NaN for atoms).
DEFECT_COLUMNS: dict[str, str] = {
    "frame": "int64",
    "x": "float64",
    "y": "float64",
    "kind": "object",
    "score": "float64",
    "sublattice": "int64",
    "size": "float64",
    "atom_id": "int64",
}
DEFECT_KINDS = ("vacancy", "adatom", "anomaly", "bright", "dark")

DEFAULT_ATTRS = {"pixel_size": 1.0, "units": "px", "source": None}


def empty_atoms(attrs: dict | None = None) -> pd.DataFrame:
    """Return an atoms table with every column and no rows.

    Examples
    --------
    >>> atoms = empty_atoms()
    >>> len(atoms), list(atoms.columns[:3])
    (0, ['frame', 'x', 'y'])
    """
    return make_atoms({}, attrs=attrs)


def make_atoms(columns: dict, *, attrs: dict | None = None, start_id: int = 0) -> pd.DataFrame:
    """Build an atoms table from a mapping of column name to 1-D array.

    Missing schema columns are filled (NaN for floats, 0 for ``frame``,
    False for ``edge``); extra columns are kept after the schema columns.

    Parameters
    ----------
    columns : dict of str to array-like
        Columns; all must have the same length.
    attrs : dict, optional
        Calibration and provenance (``pixel_size``, ``units``, ``source``...).
    start_id : int
        First ``atom_id``.

    Returns
    -------
    atoms : pandas.DataFrame
    """
    lengths = {len(np.atleast_1d(v)) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"all columns must have the same length, got lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    data = {}
    for name, dtype in ATOM_COLUMNS.items():
        if name in columns:
            data[name] = np.asarray(columns[name]).astype(dtype, copy=False)
        elif dtype == "bool":
            data[name] = np.zeros(n, bool)
        elif dtype.startswith("int"):
            data[name] = np.zeros(n, dtype)
        else:
            data[name] = np.full(n, np.nan, dtype)
    for name, values in columns.items():
        if name not in ATOM_COLUMNS:
            data[name] = np.asarray(values)
    index = pd.RangeIndex(start_id, start_id + n, name=INDEX_NAME)
    atoms = pd.DataFrame(data, index=index)
    atoms.attrs.update(DEFAULT_ATTRS)
    if attrs:
        atoms.attrs.update(attrs)
    return atoms


def make_defects(columns: dict | None = None, *, attrs: dict | None = None) -> pd.DataFrame:
    """Build a defects table (:data:`DEFECT_COLUMNS`, in that order) from a mapping of
    column name to 1-D array; missing columns are filled (NaN, -1 for ``sublattice`` and
    ``atom_id``, 0 for ``frame``).

    Examples
    --------
    >>> d = make_defects({"x": [3.0], "y": [4.0], "kind": ["vacancy"]})
    >>> d.kind.tolist(), d.sublattice.tolist(), d.atom_id.tolist()
    (['vacancy'], [-1], [-1])
    """
    columns = columns or {}
    n = len(next(iter(columns.values()))) if columns else 0
    fill = {"frame": 0, "sublattice": -1, "atom_id": -1, "kind": ""}
    data = {}
    for name, dtype in DEFECT_COLUMNS.items():
        if name in columns:
            data[name] = np.asarray(columns[name]).astype(dtype, copy=False)
        else:
            data[name] = np.full(n, fill.get(name, np.nan)).astype(dtype)
    out = pd.DataFrame(data)
    out.index.name = "defect_id"
    out.attrs.update(attrs or {})
    return out


def validate_atoms(atoms: pd.DataFrame, *, required=("frame", "x", "y"), finite=()) -> pd.DataFrame:
    """Check that ``atoms`` is an atoms table with at least ``required`` columns,
    and no NaN or infinite value in the columns ``finite``.

    Raises
    ------
    TypeError
        If ``atoms`` is not a DataFrame.
    ValueError
        If a required column is missing (the message lists what is missing),
        or a ``finite`` column holds NaN or infinite values (see :func:`check_finite`).
    """
    if not isinstance(atoms, pd.DataFrame):
        raise TypeError(f"expected an atoms table (pandas DataFrame), got {type(atoms).__name__}")
    missing = [c for c in required if c not in atoms.columns]
    if missing:
        raise ValueError(f"the atoms table lacks column(s) {missing}; it has {list(atoms.columns)}")
    return check_finite(atoms, finite, "table")


def check_finite(frame: pd.DataFrame, columns, name: str) -> pd.DataFrame:
    """Refuse NaN or inf in ``columns`` of the DataFrame ``frame`` (called ``name``).

    Raises
    ------
    ValueError
        Naming the column, how many rows and the first one, or saying that the
        column does not hold numbers.
    """
    for column in columns:
        try:
            values = frame[column].to_numpy(float)
        except (TypeError, ValueError):
            raise ValueError(
                f"{name} column {column!r} must hold numbers, got dtype {frame[column].dtype}"
            ) from None
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"{name} column {column!r} holds NaN or inf in {int(bad.sum())} of {len(values)} "
                f"rows (first at index {frame.index[bad][0]!r}); drop or fix those rows first"
            )
    return frame
