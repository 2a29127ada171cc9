"""A partitioned Parquet dataset of atoms tables: one folder of results for many files.

Layout under the dataset's root folder::

    atoms/<source_id>/frames-000000-000015.parquet   one partition per chunk of frames
    defects/<source_id>/frames-000000-000015.parquet the defects found in those frames
    sources/<source_id>.parquet                      one row per source file

Every partition holds the atoms table's columns plus ``source_id`` and
``atom`` (the atom's number within its frame), so each file stands alone:
pandas (``pd.read_parquet(root / "atoms")``), pyarrow, DuckDB
(``read_parquet('root/atoms/*/*.parquet')``) and Dask all read the folder.
Each file's Parquet metadata (key ``atomstat``) holds the calibration and
provenance as JSON, as :func:`atomstat.write_table` writes them; the
``sources`` table holds the same per file: path, content hash (SHA-256),
material tag, model, settings, calibration, frame count and shape.

Partitions are written atomically (a temporary file renamed into place), so
an interrupted run leaves whole partitions only, and a re-run skips the
frames that are already written (:meth:`Dataset.done_frames`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .export import _jsonable, atomic_path, table_metadata
from .table import ATOM_COLUMNS, INDEX_NAME, make_atoms

__all__ = ["Dataset", "file_hash", "read_atoms", "source_id"]

log = logging.getLogger(__name__)

_PART = re.compile(r"frames-(\d+)-(\d+)\.parquet$")
_META_KEY = b"atomstat"
#: Settings that must match for a partly written source to be resumed.
SETTINGS = ("model", "threshold", "peak_margin", "split", "preprocess", "anomalies", "sigma")


def source_id(path) -> str:
    """A short stable id of a source file or folder: SHA-1 of its absolute path, 16 hex digits.

    Examples
    --------
    >>> len(source_id("/data/run1/image.dm4"))
    16
    """
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]


def file_hash(path, *, block: int = 2**22) -> str:
    """SHA-256 of a file's bytes, or for a folder of frames of its files' names and bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for name in files:
        if path.is_dir():
            digest.update(name.name.encode())
        with open(name, "rb") as f:
            while chunk := f.read(block):
                digest.update(chunk)
    return digest.hexdigest()


class Dataset:
    """A folder of partitioned results (see the module docstring for the layout).

    Parameters
    ----------
    root : str or Path
        The dataset's folder; made if missing.

    Examples
    --------
    >>> import tempfile
    >>> from atomstat.table import make_atoms
    >>> ds = Dataset(tempfile.mkdtemp())
    >>> atoms = make_atoms({"frame": [0, 0, 1], "x": [1.0, 5.0, 2.0], "y": [1.0, 1.0, 3.0]})
    >>> _ = ds.write_chunk("abc", 0, 2, atoms)
    >>> sorted(ds.done_frames("abc")), len(ds.read_atoms("abc"))
    ([0, 1], 3)
    """

    def __init__(self, root):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"the dataset folder {self.root} is a file")
        for name in ("atoms", "defects", "sources"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ writing
    def write_chunk(self, source: str, start: int, stop: int, atoms, *, defects=None, meta=None):
        """Write the atoms of frames ``start`` to ``stop - 1`` of ``source`` as one partition.

        ``atoms`` is an atoms table whose ``frame`` column counts from the
        source's first frame. ``defects`` (a table with ``frame``, ``x``,
        ``y``, ``kind``...) goes into its own partition first, so that a
        written atoms partition always has its defects. Returns the path.
        """
        if stop <= start:
            raise ValueError(f"empty frame range {start}..{stop}")
        outside = atoms["frame"].lt(start) | atoms["frame"].ge(stop)
        if outside.any():
            raise ValueError(
                f"the table holds frames {sorted(set(atoms['frame'][outside]))[:5]} outside "
                f"the partition's range {start}..{stop - 1}"
            )
        name = f"frames-{start:06d}-{stop - 1:06d}.parquet"
        if defects is not None:
            self._write(self.root / "defects" / source / name, _keyed(defects, source), meta)
        return self._write(self.root / "atoms" / source / name, _keyed(atoms, source), meta)

    def write_source(self, record: dict) -> Path:
        """Write (or replace) the one-row record of a source: its path, hash, material,
        model, settings, calibration and shape (see :func:`source_record`)."""
        row = pd.DataFrame([_jsonable(record)])
        return self._write(self.root / "sources" / f"{record['source_id']}.parquet", row, record)

    def clear(self, source: str) -> None:
        """Remove everything written for ``source`` (before analysing it anew)."""
        for name in ("atoms", "defects"):
            shutil.rmtree(self.root / name / source, ignore_errors=True)
        (self.root / "sources" / f"{source}.parquet").unlink(missing_ok=True)

    def _write(self, path: Path, table: pd.DataFrame, meta) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        info = json.dumps(table_metadata(table, _jsonable(meta or {})))
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), _META_KEY: info})
        with atomic_path(path) as tmp:
            pq.write_table(arrow, tmp)
        return path

    # ------------------------------------------------------------------ reading
    def done_frames(self, source: str) -> set[int]:
        """The frames of ``source`` whose atoms are written."""
        done: set[int] = set()
        for part in (self.root / "atoms" / source).glob("frames-*.parquet"):
            match = _PART.search(part.name)
            if match:
                done.update(range(int(match[1]), int(match[2]) + 1))
        return done

    def record(self, source: str) -> dict | None:
        """The source's record (a dict), or None if none is written."""
        path = self.root / "sources" / f"{source}.parquet"
        if not path.is_file():
            return None
        return pd.read_parquet(path).iloc[0].to_dict()

    def sources(self) -> pd.DataFrame:
        """Every source's record, one row each (an empty table if none)."""
        parts = sorted((self.root / "sources").glob("*.parquet"))
        if not parts:
            return pd.DataFrame(columns=["source_id", "path", "sha256", "material", "complete"])
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)

    def read_atoms(self, source: str | None = None) -> pd.DataFrame:
        """The atoms of one source as an atoms table (ordered by frame, ``atom_id`` from
        0, ``attrs`` from its record), or of every source (with ``source_id``)."""
        folder = self.root / "atoms" / (source or "")
        parts = sorted(folder.rglob("frames-*.parquet"))
        if not parts:
            return make_atoms({}, attrs=self.record(source) if source else None)
        table = pd.concat([_read_part(p) for p in parts], ignore_index=True)
        table = table.sort_values(["source_id", "frame", "atom"], kind="stable")
        table = table.reset_index(drop=True).rename_axis(INDEX_NAME)
        if source is not None:
            table = table.drop(columns=["source_id", "atom"])
            table.attrs.update(_calibration(self.record(source)))
        return table

    def read_defects(self, source: str | None = None) -> pd.DataFrame:
        """The defects of one source, or of every source; an empty table if none."""
        folder = self.root / "defects" / (source or "")
        parts = sorted(folder.rglob("frames-*.parquet"))
        if not parts:
            return pd.DataFrame(columns=["source_id", "frame", "x", "y", "kind"])
        return pd.concat([_read_part(p) for p in parts], ignore_index=True)


def read_atoms(root, source=None) -> pd.DataFrame:
    """Read the atoms of ``source`` (an id, or the path of the analysed file), or of every
    source, from the dataset at ``root``."""
    root = Path(root)
    if not (root / "atoms").is_dir():
        raise FileNotFoundError(f"{root} is not an atomstat dataset (it has no atoms/ folder)")
    if source is not None and not re.fullmatch(r"[0-9a-f]{16}", str(source)):
        source = source_id(source)
    return Dataset(root).read_atoms(source)


def source_record(source: str, path, attrs: dict, *, frames: int, shape, **more) -> dict:
    """The record of a source: what the ``sources`` table holds for one file."""
    from . import __version__

    record = {
        "source_id": source,
        "path": str(Path(path).resolve()),
        "name": Path(path).name,
        "frames": int(frames),
        "height": int(shape[0]),
        "width": int(shape[1]),
        "pixel_size": float(attrs.get("pixel_size", 1.0)),
        "units": str(attrs.get("units", "px")),
        "imaging": attrs.get("imaging"),
        "atomstat_version": __version__,
        "analysed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record.update({k: attrs.get(k) for k in SETTINGS})
    record.update(more)
    return record


def _keyed(table: pd.DataFrame, source: str) -> pd.DataFrame:
    """The table with ``source_id`` and ``atom`` (number within the frame) columns and no
    index, ready to be a partition."""
    out = table.reset_index(drop=True)
    out.insert(0, "source_id", source)
    if "frame" in out:
        out.insert(2, "atom", out.groupby("frame").cumcount().astype("int64"))
    return out


def _read_part(path: Path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    for name, dtype in ATOM_COLUMNS.items():
        if name in table and str(table[name].dtype) != dtype:
            table[name] = table[name].astype(dtype)
    return table


def _calibration(record: dict | None) -> dict:
    """The atoms table's ``attrs`` from a source record."""
    if record is None:
        return {}
    attrs = {k: v for k, v in record.items() if not _blank(v)}
    attrs["source"] = record.get("path")
    return attrs


def _blank(value) -> bool:
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))
