"""Write atoms tables to disk with their calibration and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["read_csv", "write_csv"]


def write_csv(atoms: pd.DataFrame, path) -> Path:
    """Write the atoms table as CSV, with ``attrs`` as ``# key: value`` header lines.

    Examples
    --------
    >>> import tempfile, os
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [1.5], "y": [2.0]}, attrs={"pixel_size": 0.02, "units": "nm"})
    >>> path = write_csv(atoms, os.path.join(tempfile.mkdtemp(), "atoms.csv"))
    >>> back = read_csv(path)
    >>> float(back.x.iloc[0]), back.attrs["units"]
    (1.5, 'nm')
    """
    path = Path(path)
    header = "".join(f"# {k}: {json.dumps(v, default=str)}\n" for k, v in atoms.attrs.items())
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        f.write(header)
        atoms.to_csv(f)
    tmp.replace(path)  # atomic: a crash never leaves half a table
    return path


def read_csv(path) -> pd.DataFrame:
    """Read a table written by :func:`write_csv`, restoring ``attrs`` and the index."""
    attrs = {}
    with open(path) as f:
        for line in f:
            if not line.startswith("# "):
                break
            key, _, value = line[2:].partition(": ")
            attrs[key] = json.loads(value)
    atoms = pd.read_csv(path, comment="#", index_col=0)
    atoms.attrs.update(attrs)
    return atoms
