"""A library of atoms and defects across images: the Parquet dataset, queried with DuckDB.

Every file analysed into a dataset (:func:`atomstat.batch.analyze_files`,
``atomstat analyze --workers``, ``atomstat watch``) is in it, with its source
hash, calibration, material tag and model. DuckDB reads the partitions in
place; these views are defined:

``sources``
    One row per file: ``source_id``, ``path``, ``name``, ``sha256``,
    ``material``, ``model``, ``pixel_size``, ``units``, ``frames``,
    ``height``, ``width``, the settings, ``analysed_at``, ``complete``.
``atoms``
    One row per atom per frame: the atoms table's columns, ``source_id``,
    ``atom`` (its number in the frame), ``atom_id`` (its row in the file's
    atoms table, as :func:`atomstat.analyze` numbers it and the label store
    keys it), the ``anomaly`` flags where they were fitted, and from
    ``sources`` the ``material``, ``name``, ``sha256``, ``pixel_size`` and
    ``units``; plus ``intensity_rel``, the intensity over the median of its
    frame, and ``nn_distance_phys`` in ``units``.
``defects``
    The defects found in each frame (``source_id``, ``frame``, ``x``, ``y``,
    ``kind``...), empty where no defect finder ran.

Examples
--------
>>> import tempfile
>>> lib = Library(tempfile.mkdtemp())
>>> lib.query("select count(*) as n from atoms")["n"].tolist()
[0]
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import Dataset
from .table import ATOM_COLUMNS

__all__ = ["Library", "crops", "find", "query"]

#: Columns every hit has (besides those asked for).
HIT_COLUMNS = ("source_id", "name", "material", "sha256", "frame", "atom", "atom_id", "x", "y")
_EMPTY_SOURCES = (
    "select * from (values (null::varchar, null::varchar, null::varchar, null::varchar, "
    "null::varchar, null::double, null::varchar, null::bigint, null::bigint, null::bigint)) "
    "t(source_id, path, name, sha256, material, pixel_size, units, frames, height, width) "
    "where false"
)
_EMPTY_DEFECTS = (
    "select * from (values (null::varchar, null::bigint, null::double, null::double, "
    "null::varchar)) t(source_id, frame, x, y, kind) where false"
)


class Library:
    """The atoms and defects of a dataset, ready for SQL.

    Parameters
    ----------
    root : str or Path
        The dataset's folder (see :mod:`atomstat.dataset`).
    """

    def __init__(self, root):
        import duckdb

        self.root = Path(root)
        self.dataset = Dataset(self.root)
        self.con = duckdb.connect()
        self.refresh()

    def refresh(self) -> None:
        """Define the views anew (after more files were analysed into the dataset)."""
        root = self.root.resolve()
        sources = _glob(root / "sources", "*.parquet", _EMPTY_SOURCES)
        self.con.execute(f"create or replace view sources as {sources}")
        defects = _glob(root / "defects", "*/*.parquet", _EMPTY_DEFECTS)
        self.con.execute(f"create or replace view defects as {defects}")
        raw = _glob(root / "atoms", "*/*.parquet", _empty_atoms())
        self.con.execute(
            f"""create or replace view atoms as
            select a.*, s.material, s.name, s.pixel_size, s.units, s.height, s.width,
                   s.sha256, row_number() over (partition by a.source_id
                       order by a.frame, a.atom) - 1 as atom_id,
                   a.intensity / nullif(median(a.intensity)
                       over (partition by a.source_id, a.frame), 0) as intensity_rel,
                   a.nn_distance * s.pixel_size as nn_distance_phys
            from ({raw}) a left join sources s using (source_id)"""
        )

    def query(self, sql: str, params=None) -> pd.DataFrame:
        """Run ``sql`` (DuckDB's dialect, over the views above); return a DataFrame.

        Raises
        ------
        ValueError
            If DuckDB refuses the query; the message is DuckDB's.
        """
        import duckdb

        try:
            return self.con.execute(sql, params or []).df()
        except duckdb.Error as exc:
            raise ValueError(f"the library query failed: {exc}") from None

    def materials(self) -> list[str]:
        """The material tags in the library."""
        found = self.query("select distinct material from sources where material is not null")
        return sorted(found["material"])

    def find(self, *, material=None, kind=None, anomaly=None, brighter=None, dimmer=None,
             edge=False, where=None, columns=("area", "nn_distance", "nnn_distance")):  # fmt: skip
        """The atoms that match every condition given, across every image.

        Parameters
        ----------
        material : str or list of str, optional
            Only these material tags.
        kind : str, optional
            Only atoms at a defect of this kind (within 1 px of it, in the
            ``defects`` view).
        anomaly : bool, optional
            Only flagged (True) or unflagged (False) atoms.
        brighter, dimmer : float, optional
            Only atoms whose intensity is more (less) than this many times the
            median of their frame: ``brighter=1.5`` finds heavier dopants
            (Si in graphene), ``dimmer=0.7`` lighter ones or vacancies' neighbours.
        edge : bool or None
            False (default) leaves out atoms cut by the image border; None keeps all.
        where : str, optional
            More SQL on the ``atoms`` view's columns, e.g. ``"area > 20"``.
        columns : sequence of str
            Descriptors to return besides the position and the source.

        Returns
        -------
        hits : pandas.DataFrame
            One row per atom: ``source_id``, ``name``, ``material``, ``sha256``
            (the file's content key in the label store), ``frame``, ``atom``,
            ``atom_id``, ``x``, ``y``, ``intensity_rel``, ``columns``.
        """
        conditions, params = [], []
        if material is not None:
            names = [material] if isinstance(material, str) else list(material)
            conditions.append(f"a.material in ({', '.join('?' * len(names))})")
            params += names
        if anomaly is not None:
            conditions.append("a.anomaly" if anomaly else "not coalesce(a.anomaly, false)")
        if brighter is not None:
            conditions.append("a.intensity_rel > ?")
            params.append(float(brighter))
        if dimmer is not None:
            conditions.append("a.intensity_rel < ?")
            params.append(float(dimmer))
        if edge is not None:
            conditions.append("a.edge" if edge else "not a.edge")
        if kind is not None:
            conditions.append(
                "exists (select 1 from defects d where d.source_id = a.source_id and "
                "d.frame = a.frame and d.kind = ? and (d.x - a.x)^2 + (d.y - a.y)^2 <= 1)"
            )
            params.append(str(kind))
        if where:
            conditions.append(f"({where})")
        wanted = [*HIT_COLUMNS, "intensity_rel", *[c for c in columns if c not in HIT_COLUMNS]]
        sql = (
            f"select {', '.join('a.' + c for c in dict.fromkeys(wanted))} from atoms a"
            + (" where " + " and ".join(conditions) if conditions else "")
            + " order by a.source_id, a.frame, a.atom"
        )
        return self.query(sql, params)

    def tag(self, source, material: str) -> None:
        """Set the material tag of a source (its id, path or file name)."""
        record = self._record(source)
        self.dataset.write_source({**record, "material": str(material)})
        self.refresh()

    def crops(self, hits: pd.DataFrame, *, size: int = 32) -> np.ndarray:
        """An image crop of ``size`` x ``size`` px around each hit (NaN beyond the border).

        ``hits`` needs ``source_id``, ``frame``, ``x`` and ``y`` (as
        :meth:`find` returns). The images are read from the sources' paths.

        Returns
        -------
        crops : ndarray of shape (len(hits), size, size), float32
        """
        if not isinstance(size, int | np.integer) or size < 2:
            raise ValueError(f"size must be an integer >= 2, got {size!r}")
        missing = [c for c in ("source_id", "frame", "x", "y") if c not in hits]
        if missing:
            raise ValueError(f"hits lack column(s) {missing}; take them from Library.find()")
        out = np.full((len(hits), size, size), np.nan, np.float32)
        paths = self.query("select source_id, path from sources").set_index("source_id")["path"]
        for i, (sid, frame, x, y) in enumerate(hits[["source_id", "frame", "x", "y"]].itertuples(
            index=False
        )):  # fmt: skip
            image = _frame(paths.get(sid), int(frame))
            out[i] = _crop(image, x, y, size)
        return out

    def _record(self, source):
        table = self.query("select * from sources")
        key = str(source)
        for column in ("source_id", "path", "name"):
            rows = table[table[column] == (str(Path(key).resolve()) if column == "path" else key)]
            if len(rows) == 1:
                return rows.iloc[0].to_dict()
        raise KeyError(f"no source {source!r} in the library at {self.root}")


def query(sql: str, root=None) -> pd.DataFrame:
    """Run ``sql`` over the library at ``root`` (default: ``$ATOMSTAT_LIBRARY``)."""
    return _library(root).query(sql)


def find(root=None, **conditions) -> pd.DataFrame:
    """:meth:`Library.find` on the library at ``root`` (default: ``$ATOMSTAT_LIBRARY``)."""
    return _library(root).find(**conditions)


def crops(hits: pd.DataFrame, root=None, *, size: int = 32) -> np.ndarray:
    """:meth:`Library.crops` on the library at ``root`` (default: ``$ATOMSTAT_LIBRARY``)."""
    return _library(root).crops(hits, size=size)


def _library(root) -> Library:
    root = root or os.environ.get("ATOMSTAT_LIBRARY")
    if not root:
        raise ValueError("give the dataset's folder, or set ATOMSTAT_LIBRARY to it")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"the library folder {root} does not exist")
    return Library(root)


def _glob(folder: Path, pattern: str, empty: str | None) -> str:
    if empty is not None and not any(folder.glob(pattern)):
        return empty
    return f"select * from read_parquet('{folder}/{pattern}', union_by_name = true)"


def _empty_atoms() -> str:
    """A query with the columns of an atoms partition and no rows."""
    kinds = {"int64": "bigint", "float64": "double", "float32": "float", "bool": "boolean"}
    columns = {"source_id": "varchar", "atom": "bigint", "anomaly": "boolean",
               "anomaly_score": "double"}  # fmt: skip
    columns.update({name: kinds[dtype] for name, dtype in ATOM_COLUMNS.items()})
    values = ", ".join(f"null::{kind}" for kind in columns.values())
    return f"select * from (values ({values})) t({', '.join(columns)}) where false"


@functools.lru_cache(maxsize=8)
def _opened(path: str):
    from .io import load

    return load(path, lazy=True)


def _frame(path, frame: int) -> np.ndarray:
    """Frame ``frame`` of a source file (or of a folder of numbered frames)."""
    if path is None:
        raise KeyError("a hit's source_id is not in the library's sources")
    source = Path(path)
    if source.is_dir():
        from .io import load
        from .watch import _numbered

        files = dict(_numbered(source))
        if frame not in files:
            raise FileNotFoundError(f"{source} has no frame file numbered {frame}")
        return np.asarray(load(files[frame]).data, np.float32)
    if source.suffix.lower() == ".npy":
        return _npy_frame(source, frame)
    data = _opened(str(source)).data
    image = data if data.ndim == 2 else data[frame]
    return np.asarray(image, np.float32)


def _npy_frame(source: Path, frame: int) -> np.ndarray:
    """Frame ``frame`` of a .npy image or stack, read on its own. A stack that is still
    being written (its header gives the final number of frames, the file holds fewer) is
    read as far as it is: a frame that is whole is returned, one that is not raises."""
    from .watch import _npy_header

    try:
        shape, dtype, offset = _npy_header(source)
        if len(shape) not in (2, 3):
            raise ValueError(f"a .npy of shape {shape} is not an image or a stack")
        pixels = int(np.prod(shape[-2:]))
        index = 0 if len(shape) == 2 else int(frame)
        if not 0 <= index < (shape[0] if len(shape) == 3 else 1):
            raise ValueError(f"no frame {frame} in a stack of shape {shape}")
        with open(source, "rb") as f:
            f.seek(offset + index * pixels * dtype.itemsize)
            raw = f.read(pixels * dtype.itemsize)
    except (OSError, ValueError) as exc:
        raise FileNotFoundError(f"cannot read {source}: {exc}") from exc
    if len(raw) < pixels * dtype.itemsize:
        raise FileNotFoundError(f"frame {frame} of {source} is not written yet")
    return np.frombuffer(raw, dtype).reshape(shape[-2:]).astype(np.float32)


def _crop(image, x, y, size):
    """``size`` x ``size`` px of ``image`` centred on (x, y), NaN outside it."""
    out = np.full((size, size), np.nan, np.float32)
    r0, c0 = int(round(y)) - size // 2, int(round(x)) - size // 2
    rows = slice(max(r0, 0), min(r0 + size, image.shape[0]))
    cols = slice(max(c0, 0), min(c0 + size, image.shape[1]))
    out[rows.start - r0 : rows.stop - r0, cols.start - c0 : cols.stop - c0] = image[rows, cols]
    return out
