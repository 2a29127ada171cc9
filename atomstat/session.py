"""Sessions: one JSON file that reopens an analysis exactly.

A session file holds the atoms table itself (every column, dtype and the
``atom_id`` index, values stored exactly), its ``attrs`` (calibration, source,
model, threshold, the anomaly settings that :func:`atomstat.add_anomalies`
records), free-form ``params`` (method parameters, dashboard state), the
labels with both their layers, and the SHA-256 of the source file, so a
changed or different raw file is noticed on reopening. Storing the table
(rather than re-running the analysis) makes reopening instant and exact,
whatever model version is installed later.

The file is standard JSON (NaN is written as ``null``) and is written
atomically: to a temporary file first, then renamed over the target, so a
crash never leaves half a session.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AtomstatError
from .export import _jsonable, _missing, atomic_path
from .labels import LabelSet

__all__ = [
    "Session",
    "SourceMismatch",
    "file_sha256",
    "load_session",
    "save_session",
    "verify_source",
]

log = logging.getLogger(__name__)

FORMAT = "atomstat-session"
VERSION = 1


@dataclass
class Session:
    """An analysis read back by :func:`load_session`.

    Attributes
    ----------
    atoms : pandas.DataFrame
        The atoms table, as saved (``attrs`` included).
    labels : LabelSet
        The labels, automatic and manual (an empty set if none were saved).
    params : dict
        The parameters saved with the session.
    source : dict
        ``path``, ``sha256`` and ``size`` of the source file (None if unknown).
    source_changed : bool or None
        True if the source file exists but its content differs from the one
        analysed, False if it matches, None if it could not be checked.
    saved : str
        When the session was written (ISO 8601, UTC).
    """

    atoms: pd.DataFrame
    labels: LabelSet
    params: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    source_changed: bool | None = None
    saved: str = ""


class SourceMismatch(AtomstatError, ValueError):
    """A session was saved for another file (or the file changed since)."""


def file_sha256(path) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_session(
    path, atoms: pd.DataFrame, labels: LabelSet | None = None, *, params=None, source=None
) -> Path:
    """Write the atoms table, its labels and parameters to one JSON session file.

    Parameters
    ----------
    path : str or Path
        The session file (``.json``).
    atoms : pandas.DataFrame
        The atoms table.
    labels : LabelSet, optional
    params : dict, optional
        JSON-ready parameters to keep (thresholds, method settings...).
    source : str or Path, optional
        The raw image file; by default ``atoms.attrs["source"]``. Its
        SHA-256 is stored when the file can be read.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile, os
    >>> from atomstat.table import make_atoms
    >>> atoms = make_atoms({"x": [1.0, 2.0], "y": [3.0, np.nan]}, attrs={"units": "nm"})
    >>> labels = LabelSet()
    >>> labels.set_manual([1], "adatom")
    >>> path = save_session(os.path.join(tempfile.mkdtemp(), "s.json"), atoms, labels)
    >>> back = load_session(path)
    >>> back.atoms.equals(atoms), back.labels == labels, back.atoms.attrs["units"]
    (True, True, 'nm')
    """
    if not isinstance(atoms, pd.DataFrame):
        raise TypeError(f"atoms must be the atoms table (DataFrame), got {type(atoms).__name__}")
    if labels is not None and not isinstance(labels, LabelSet):
        raise TypeError(f"labels must be a LabelSet or None, got {type(labels).__name__}")
    from . import __version__

    doc = {
        "format": FORMAT,
        "version": VERSION,
        "atomstat_version": __version__,
        "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "source": _source_record(source if source is not None else atoms.attrs.get("source")),
        "params": _jsonable(params or {}),
        "attrs": _jsonable(atoms.attrs),
        "labels": (labels or LabelSet()).to_dict(),
        "table": _table_to_json(atoms),
    }
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def load_session(path, *, check_source: bool = True, source=None) -> Session:
    """Read a session written by :func:`save_session`: the same table and labels.

    With ``check_source``, the source file (if it is still there) is hashed
    and compared with the stored hash; a mismatch is logged as a warning and
    reported in ``Session.source_changed``.

    Parameters
    ----------
    path : str or Path
    check_source : bool
    source : str or Path, optional
        The file the session is to be applied to. Its SHA-256 must be the one
        the session was saved for (see :func:`verify_source`).

    Raises
    ------
    SourceMismatch
        If ``source`` is given and is not the file the session was saved for.
    ValueError
        If the file is not an atomstat session, or is a damaged one (a
        missing table, a column without dtype or of an unknown dtype,
        columns of other lengths than the index...); the message names the
        file and what is wrong.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a session file (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not an atomstat session file")
    version = doc.get("version", 0)
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise ValueError(f"{path} has session version {version}; this atomstat reads {VERSION}")
    try:
        session = _session_from_json(doc)
    except ValueError as exc:
        raise ValueError(f"{path} is a damaged atomstat session: {exc}") from None
    if check_source:
        session.source_changed = _source_changed(session.source)
    if session.source_changed:
        log.warning(
            "the source file %s changed since the session was saved", session.source.get("path")
        )
    if source is not None:
        verify_source(session, source, name=Path(path).name)
    return session


def verify_source(session: Session, source, *, name: str = "the session") -> bool:
    """Refuse to apply ``session`` to ``source`` unless it is the file the session was saved for.

    Parameters
    ----------
    session : Session
    source : str or Path
        The file about to be opened with the session.
    name : str
        What to call the session in the message (its file name).

    Returns
    -------
    bool
        True if the hashes agree; False if the session recorded no hash (it
        cannot be checked: a warning is logged).

    Raises
    ------
    SourceMismatch
        If the file's SHA-256 differs from the one stored in the session: the
        file changed, or it is another file. The session's atoms would not
        lie on its atoms.
    """
    expected = (session.source or {}).get("sha256")
    if not expected:
        log.warning("%s records no hash of its source file; %s is not checked", name, source)
        return False
    actual = file_sha256(source)
    if actual != expected:
        saved_for = Path(str(session.source.get("path") or "an unknown file")).name
        raise SourceMismatch(
            f"{name} was saved for {saved_for} (SHA-256 {expected[:12]}...); "
            f"{Path(source).name} has SHA-256 {actual[:12]}..., so it changed or is another "
            f"file. The session's {len(session.atoms)} atoms would not match it: not applied."
        )
    return True


def _session_from_json(doc: dict) -> Session:
    """The session in a parsed session file; a ValueError says what is damaged."""
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"'version' must be an integer, got {version!r}")
    if "table" not in doc:
        raise ValueError("it holds no 'table'")
    atoms = _table_from_json(doc["table"])
    attrs = doc.get("attrs") or {}
    source = doc.get("source") or {}
    for key, value in (("attrs", attrs), ("source", source)):
        if not isinstance(value, dict):
            raise ValueError(f"{key!r} must be a JSON object, got {type(value).__name__}")
    atoms.attrs.update(attrs)
    labels = LabelSet.from_dict(doc.get("labels") or {"classes": {}, "auto": [], "manual": []})
    return Session(
        atoms=atoms,
        labels=labels,
        params=doc.get("params", {}),
        source=source,
        saved=doc.get("saved", ""),
    )


def _source_record(source) -> dict:
    if source is None:
        return {"path": None, "sha256": None, "size": None}
    p = Path(str(source))
    if not p.is_file():
        return {"path": str(source), "sha256": None, "size": None}
    return {"path": str(p.resolve()), "sha256": file_sha256(p), "size": p.stat().st_size}


def _source_changed(source):
    path, digest = source.get("path"), source.get("sha256")
    if not path or not digest or not Path(path).is_file():
        return None
    return file_sha256(path) != digest


def _table_to_json(atoms: pd.DataFrame) -> dict:
    """Columns as exact JSON lists: floats (NaN as null), ints, bools, categories, strings."""
    columns = []
    for name in atoms.columns:
        col = atoms[name]
        entry = {"name": str(name), "dtype": str(col.dtype)}
        if isinstance(col.dtype, pd.CategoricalDtype):
            entry["categories"] = _jsonable(list(col.cat.categories))
            entry["ordered"] = bool(col.cat.ordered)
            entry["values"] = col.cat.codes.tolist()
        else:
            entry["values"] = _column_values(col)
        columns.append(entry)
    index = {"name": atoms.index.name, "dtype": str(atoms.index.dtype)}
    index["values"] = _column_values(pd.Series(atoms.index))
    return {"index": index, "columns": columns}


def _column_values(col: pd.Series) -> list:
    kind = col.dtype.kind
    if kind == "f":
        values = col.to_numpy(np.float64)
        return [None if np.isnan(v) else (str(v) if np.isinf(v) else float(v)) for v in values]
    if kind in "iub":
        return col.tolist()
    if kind == "O":  # object and str columns
        return _jsonable([None if _missing(v) else v for v in col.tolist()])
    raise TypeError(f"column {col.name!r} has dtype {col.dtype}, which a session cannot store")


def _table_from_json(table) -> pd.DataFrame:
    """The table of :func:`_table_to_json`; a ValueError names the damaged part."""
    if not (
        isinstance(table, dict)
        and isinstance(table.get("index"), dict)
        and isinstance(table.get("columns"), list)
    ):
        raise ValueError("'table' must hold an 'index' and a list of 'columns'")
    index = pd.Index(_restore(table["index"], "the index"), name=table["index"].get("name"))
    data = {}
    for i, entry in enumerate(table["columns"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"column {i} has no name")
        if name in data:
            raise ValueError(f"column {name!r} appears twice")
        values = _restore(entry, f"column {name!r}")
        if len(values) != len(index):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(index)} atoms")
        data[name] = values
    return pd.DataFrame(data, index=index)


def _restore(entry: dict, what: str):
    """The values of one stored column (or the index); a ValueError names ``what``."""
    if not isinstance(entry.get("dtype"), str) or not isinstance(entry.get("values"), list):
        raise ValueError(f"{what} needs a 'dtype' and a list of 'values'")
    dtype, values = entry["dtype"], entry["values"]
    try:
        if dtype == "category":
            cats, ordered = entry["categories"], entry.get("ordered", False)
            return pd.Categorical.from_codes(values, categories=cats, ordered=ordered)
        kind = pd.api.types.pandas_dtype(dtype).kind
        if kind == "O":  # object and str columns
            return pd.array(values, dtype=dtype)
        if kind == "f":
            return np.array([np.nan if v is None else float(v) for v in values], dtype=dtype)
        return np.array(values, dtype=dtype)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{what} ({dtype}) cannot be restored: {exc}") from None
