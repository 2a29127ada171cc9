"""Write atoms tables to disk with their calibration and provenance."""

from __future__ import annotations

import io
import json
import numbers
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from .table import validate_atoms

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

    Any table with unique string column names can be written (atoms, tracks,
    drift); the file is written atomically (see :func:`atomic_path`).

    Raises
    ------
    TypeError
        If ``atoms`` is not a DataFrame.
    ValueError
        If column names repeat or are not strings.
    FileNotFoundError
        If the folder of ``path`` does not exist.

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
    _check_table(atoms, required=())
    path = Path(path)
    header = "".join(f"# {k}: {json.dumps(v, default=str)}\n" for k, v in atoms.attrs.items())
    with atomic_path(path) as tmp:  # a crash never leaves half a table
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(header)
            atoms.to_csv(f)
    return path


def read_csv(path) -> pd.DataFrame:
    """Read a table written by :func:`write_csv`, restoring ``attrs`` and the index.

    Any table :func:`write_csv` wrote is read back (atoms, tracks, drift);
    :func:`read_table` also checks that it is an atoms table.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not such a CSV: binary, empty, or with a damaged
        ``# key: value`` header; the message says which.
    """
    path = Path(path)
    _check_file(path)
    try:
        return _read_csv(path)
    except ValueError as exc:
        raise _not_a_table(path, "csv", exc) from None


def _read_csv(path: Path) -> pd.DataFrame:
    """The CSV of :func:`write_csv`; a ValueError gives the reason it is not one."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines(keepends=True)
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text (a binary file?)") from None
    n_header = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    attrs = dict(_header_entry(line, i + 1) for i, line in enumerate(lines[:n_header]))
    body = "".join(lines[n_header:])
    if not body.strip():
        raise ValueError("it is empty" if not n_header else "it has header lines but no table")
    try:  # not pd.read_csv(comment="#"): that would cut values such as "#d55e00" or "a#b"
        atoms = pd.read_csv(io.StringIO(body), index_col=0)
    except pd.errors.ParserError as exc:
        raise ValueError(f"it is not CSV ({str(exc).strip()})") from None
    atoms.attrs.update(attrs)
    return atoms


def _header_entry(line: str, number: int) -> tuple[str, object]:
    """One ``# key: value`` header line (the value is JSON) as ``(key, value)``."""
    key, sep, value = line[2:].partition(": ") if line.startswith("# ") else ("", "", "")
    if not (key and sep):
        raise ValueError(f"header line {number} is not '# key: value': {line.strip()[:60]!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"header line {number} ({key}) holds no JSON value ({exc.msg}): {value.strip()[:60]!r}"
        ) from None


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
    _check_folder(path)
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


def _check_folder(path: Path) -> None:
    """Refuse, naming the folder, a path whose folder is missing or that is a folder itself."""
    folder = path.parent
    if not folder.is_dir():
        error = NotADirectoryError if folder.exists() else FileNotFoundError
        what = "is not a folder" if folder.exists() else "does not exist"
        raise error(f"cannot write {path.name}: the folder {folder} {what}")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")


def _check_file(path: Path) -> None:
    """Refuse, naming it, a path that is missing or is a folder."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file():
        raise IsADirectoryError(f"{path} is a folder, not a table file")


def _check_table(atoms, *, required=("x", "y")) -> None:
    """A DataFrame with ``required`` columns and unique string column names."""
    validate_atoms(atoms, required=required)
    names = atoms.columns
    odd = [c for c in names if not isinstance(c, str)]
    if odd:
        raise ValueError(f"column names must be strings, got {odd[:5]}: rename them first")
    repeated = sorted(set(names[names.duplicated()]))
    if repeated:
        raise ValueError(f"the table has repeated column names {repeated}: rename or drop them")


def _not_a_table(path, kind, reason) -> ValueError:
    return ValueError(f"{path} is not an atomstat table ({kind}): {reason}")


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

    Raises
    ------
    TypeError
        If ``atoms`` is not a DataFrame or ``metadata`` not a dict.
    ValueError
        If ``atoms`` lacks ``x`` or ``y``, its column names repeat or are
        not strings, or (Parquet) a column mixes value types; the message
        names the column.
    FileNotFoundError
        If the folder of ``path`` does not exist.

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
    _check_table(atoms)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
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
    """Read a table written by :func:`write_table`, with its dtypes, index and ``attrs``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not an atomstat table: not of the format its suffix
        says, damaged, without the ``atoms`` group (HDF5), or without ``x``
        and ``y`` columns. The message names the file and the reason.
    """
    path = Path(path)
    kind = _table_format(path)
    _check_file(path)
    try:
        if kind == "csv":
            atoms = _read_csv(path)
        else:
            atoms, meta = (_read_parquet if kind == "parquet" else _read_hdf5)(path)
            if not isinstance(meta, dict):
                raise ValueError(f"its metadata is not a JSON object: {str(meta)[:60]!r}")
            for key in ("atomstat_version", "dtypes", "index", "categories"):
                meta.pop(key, None)
            atoms.attrs.update(meta)
        validate_atoms(atoms, required=("x", "y"))
    except ValueError as exc:
        raise _not_a_table(path, kind, exc) from None
    return atoms


def write_figure(path, image, atoms: pd.DataFrame, labels=None, *, dpi: int = 300, **kwargs):
    """Write the annotated figure (see :func:`atomstat.plot.annotated_figure`).

    PNG, SVG or PDF by suffix, at ``dpi`` (300 by default, for print).
    Keyword arguments go to :func:`~atomstat.plot.annotated_figure`.

    Raises
    ------
    ValueError
        If the suffix is not one of these, ``dpi`` is not a positive number,
        or ``atoms`` lacks ``x`` or ``y``.
    TypeError
        If ``atoms`` is not a DataFrame or ``labels`` is not one of the kinds
        :func:`~atomstat.plot.label_groups` takes.
    FileNotFoundError
        If the folder of ``path`` does not exist (checked before drawing).
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise ValueError(f"figure path must end in one of {FIGURE_FORMATS}, got {path.name!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not 0 < dpi < np.inf:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    _check_folder(path)
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

    try:
        table = pa.Table.from_pandas(atoms, preserve_index=True)
    except pa.ArrowException as exc:
        raise ValueError(_parquet_refusal(atoms, exc)) from None
    schema_meta = {**(table.schema.metadata or {}), _META_KEY.encode(): meta.encode()}
    pq.write_table(table.replace_schema_metadata(schema_meta), tmp)


def _parquet_refusal(atoms, exc) -> str:
    """Why pyarrow refused the table, naming the column it could not convert."""
    import pyarrow as pa

    reason = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    for name in atoms.columns:
        try:
            pa.Array.from_pandas(atoms[name])
        except pa.ArrowException:
            kinds = sorted({type(v).__name__ for v in atoms[name] if not _missing(v)})
            what = f"mixes value types ({', '.join(kinds)})" if len(kinds) > 1 else reason
            return (
                f"column {name!r} {what}, which Parquet cannot store: give it one type "
                f"(e.g. atoms[{name!r}].astype(str)), or write CSV or HDF5"
            )
    return f"Parquet cannot store this table: {reason}"


def _read_parquet(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        atoms = table.to_pandas()
    except pa.ArrowException as exc:
        raise ValueError(f"it is not a readable Parquet file ({exc})") from None
    raw = (table.schema.metadata or {}).get(_META_KEY.encode(), b"{}")
    atoms.attrs = {}
    try:
        meta = json.loads(raw)
    except ValueError as exc:  # also bad UTF-8
        raise ValueError(f"its {_META_KEY!r} metadata is not JSON ({exc})") from None
    return atoms, meta


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

    if not h5py.is_hdf5(path):
        raise ValueError("it is not an HDF5 file")
    with h5py.File(path, "r") as f:
        group = f.get("atoms")
        if not isinstance(group, h5py.Group):
            raise ValueError(f"it has no 'atoms' group (it holds {sorted(f)[:10]})")
        if _META_KEY not in group.attrs:
            raise ValueError(f"its 'atoms' group has no {_META_KEY!r} attribute (metadata)")
        try:
            meta = json.loads(group.attrs[_META_KEY])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"its {_META_KEY!r} attribute is not JSON ({exc})") from None
        dtypes = meta.get("dtypes", {}) if isinstance(meta, dict) else None
        if not isinstance(dtypes, dict):
            raise ValueError(f"its {_META_KEY!r} attribute lists no column dtypes")
        cats = meta.get("categories")
        cats = cats if isinstance(cats, dict) else {}
        data = {}
        for name in ["atom_id", *dtypes]:
            if not isinstance(group.get(name), h5py.Dataset):
                raise ValueError(f"its 'atoms' group has no dataset {name!r}")
        for name, dtype in dtypes.items():
            try:
                data[name] = _hdf5_restore(group[name][()], dtype, cats.get(name))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"column {name!r} cannot be restored as {dtype} ({exc})") from None
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
