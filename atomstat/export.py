"""Write atoms tables to disk with their calibration and provenance."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "atomic_path",
    "read_csv",
    "read_table",
    "table_metadata",
    "write_csv",
    "write_figure",
    "write_table",
]


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


# ------------------------------------------------------------------ atomic files, tables

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".h5": "hdf5"}
TABLE_FORMATS[".hdf5"] = "hdf5"
FIGURE_FORMATS = (".png", ".svg", ".pdf")
_META_KEY = "atomstat"


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    A crash or an exception leaves the old file (or no file), never half a
    file: the data is written to the temporary file, flushed to disk, then
    renamed over ``path`` with :func:`os.replace`.

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "note.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> open(target).read()
    'done'
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def table_metadata(atoms: pd.DataFrame, metadata: dict | None = None) -> dict:
    """What a table file records beside the data: ``atoms.attrs`` (calibration,
    source, model, thresholds, anomaly settings...), ``metadata``, the column
    dtypes and the atomstat version."""
    from . import __version__

    meta = {**_jsonable(atoms.attrs), **_jsonable(metadata or {})}
    meta["atomstat_version"] = __version__
    meta["dtypes"] = {c: str(t) for c, t in atoms.dtypes.items()}
    meta["index"] = atoms.index.name
    meta["categories"] = {
        c: {"values": _jsonable(list(t.categories)), "ordered": bool(t.ordered)}
        for c, t in atoms.dtypes.items()
        if isinstance(t, pd.CategoricalDtype)
    }
    return meta


def write_table(atoms: pd.DataFrame, path, *, metadata: dict | None = None) -> Path:
    """Write the atoms table as CSV, Parquet or HDF5 (by suffix) with its metadata.

    Parameters
    ----------
    atoms : pandas.DataFrame
        The atoms table; its ``attrs`` (pixel size, units, source, model,
        parameters) go into the file's metadata.
    path : str or Path
        ``.csv``, ``.parquet`` (or ``.pq``), ``.h5`` (or ``.hdf5``).
    metadata : dict, optional
        More JSON-ready entries for the metadata (e.g. method parameters).

    Returns
    -------
    path : Path

    Notes
    -----
    Parquet keeps the metadata as JSON under the ``atomstat`` key of the
    schema metadata. HDF5 (written with h5py, readable by any HDF5 tool)
    holds a group ``atoms`` with one dataset per column plus ``atom_id``;
    the group's ``atomstat`` attribute is the metadata as JSON, and
    ``pixel_size`` and ``units`` are plain attributes as well.

    Examples
    --------
    >>> import tempfile, os
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [1.5], "y": [2.0]}, attrs={"pixel_size": 0.02, "units": "nm"})
    >>> path = write_table(atoms, os.path.join(tempfile.mkdtemp(), "atoms.parquet"))
    >>> back = read_table(path)
    >>> float(back.x.iloc[0]), back.attrs["units"]
    (1.5, 'nm')
    """
    path = Path(path)
    kind = _table_format(path)
    if kind == "csv":
        out = atoms.copy()
        out.attrs = {**atoms.attrs, **_jsonable(metadata or {})}
        return write_csv(out, path)
    meta = json.dumps(table_metadata(atoms, metadata))
    with atomic_path(path) as tmp:
        (_write_parquet if kind == "parquet" else _write_hdf5)(atoms, tmp, meta)
    return path


def read_table(path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`, with its dtypes, index and ``attrs``."""
    path = Path(path)
    kind = _table_format(path)
    if kind == "csv":
        return read_csv(path)
    atoms, meta = (_read_parquet if kind == "parquet" else _read_hdf5)(path)
    for key in ("atomstat_version", "dtypes", "index", "categories"):
        meta.pop(key, None)
    atoms.attrs.update(meta)
    return atoms


def write_figure(path, image, atoms: pd.DataFrame, labels=None, *, dpi: int = 300, **kwargs):
    """Write the annotated figure (see :func:`atomstat.plot.annotated_figure`).

    PNG, SVG or PDF by suffix, at ``dpi`` (300 by default, for print).
    Keyword arguments go to :func:`~atomstat.plot.annotated_figure`.
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise ValueError(f"figure path must end in one of {FIGURE_FORMATS}, got {path.name!r}")
    import matplotlib.pyplot as plt

    from .plot import annotated_figure

    fig = annotated_figure(image, atoms, labels, **kwargs)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix[1:].lower(), bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _table_format(path):
    kind = TABLE_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"table path must end in one of {sorted(TABLE_FORMATS)}, got {path.name!r}"
        )
    return kind


def _jsonable(value):
    """A JSON-ready copy: numpy scalars and arrays to Python, paths and others to str,
    NaN and infinities to None."""
    text = json.dumps(value, default=_json_default)
    return json.loads(text, parse_constant=lambda _: None)


def _missing(value) -> bool:
    """True for None, NaN and pd.NA (not for lists or other containers)."""
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _write_parquet(atoms, tmp, meta):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(atoms, preserve_index=True)
    schema_meta = {**(table.schema.metadata or {}), _META_KEY.encode(): meta.encode()}
    pq.write_table(table.replace_schema_metadata(schema_meta), tmp)


def _read_parquet(path):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(_META_KEY.encode(), b"{}")
    atoms = table.to_pandas()
    atoms.attrs = {}
    return atoms, json.loads(raw)


def _write_hdf5(atoms, tmp, meta):
    import h5py

    with h5py.File(tmp, "w") as f:
        group = f.create_group("atoms")
        group.attrs[_META_KEY] = meta
        for key in ("pixel_size", "units"):
            if atoms.attrs.get(key) is not None:
                group.attrs[key] = atoms.attrs[key]
        group.create_dataset("atom_id", data=atoms.index.to_numpy())
        for name in atoms.columns:
            group.create_dataset(str(name), data=_hdf5_column(atoms[name]))


def _hdf5_column(column: pd.Series):
    """Numbers and booleans as they are; categories as integer codes; objects as JSON text."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy()
    if column.dtype.kind == "O":  # object and str columns
        import h5py

        text = [json.dumps(None if _missing(v) else v, default=_json_default) for v in column]
        return np.array(text, dtype=h5py.string_dtype())
    return column.to_numpy()


def _read_hdf5(path):
    import h5py

    with h5py.File(path, "r") as f:
        group = f["atoms"]
        meta = json.loads(group.attrs[_META_KEY])
        cats = meta.get("categories", {})
        data = {}
        for name, dtype in meta.get("dtypes", {}).items():
            data[name] = _hdf5_restore(group[name][()], dtype, cats.get(name))
        index = pd.Index(group["atom_id"][()], name=meta.get("index"))
    meta.pop("categories", None)
    return pd.DataFrame(data, index=index), meta


def _hdf5_restore(raw, dtype, categories):
    if dtype == "category":
        cats, ordered = categories["values"], categories["ordered"]
        return pd.Categorical.from_codes(raw.astype(int), categories=cats, ordered=ordered)
    if raw.dtype.kind == "O":  # JSON text of an object or str column
        return pd.array([json.loads(v) for v in raw], dtype=dtype)
    return raw.astype(dtype)
