"""The analysis cache: probability maps and atoms tables kept beside the data.

Running the network is the slow step of an analysis. The cache keeps its
result, the probability map, as ``<hash>-<model>-<settings>-map.npz``, and
the atoms table found in it as ``<hash>-<model>-<settings>-atoms.parquet``,
in ``<data_dir>/.atomstat/cache/``. Keys are the file's content hash, the
model (its name and version, or the SHA-256 of a ``.keras`` file) and a digest
of the settings, so a changed file, model or setting never reads a stale
result. A reload, or a second person opening the same file, gets the analysis
at once.

Files are written atomically (a temporary file renamed into place), so
several processes can fill the cache at once. A damaged entry is a miss (and
is removed); the cache keeps its total size under a limit, dropping the
least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .export import atomic_path, read_table, write_table

__all__ = ["AnalysisCache", "cache_dir", "model_key"]

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 2 * 2**30  # bytes


def cache_dir(data_dir) -> Path:
    """Where a data folder's analyses are cached: ``<data_dir>/.atomstat/cache``."""
    return Path(data_dir) / ".atomstat" / "cache"


def model_key(model=None) -> str:
    """A short name for a model: ``universal-<atomstat version>``, or a ``.keras`` file's hash.

    Examples
    --------
    >>> model_key(None).startswith("universal-")
    True
    """
    if model is None or str(model) in ("", "universal", "stm"):
        from . import __version__

        return f"{model or 'universal'}-{__version__}"
    from .session import file_sha256

    path = Path(model)
    return f"{path.stem[:24]}-{file_sha256(path)[:12]}"


class AnalysisCache:
    """Probability maps and atoms tables, keyed by file hash, model and settings.

    Parameters
    ----------
    folder : str or Path
        The cache folder (made when the first entry is written).
    limit : int
        Bytes the cache may hold; older entries go when it is exceeded.

    Examples
    --------
    >>> import tempfile
    >>> from atomstat.table import make_atoms
    >>> cache = AnalysisCache(tempfile.mkdtemp())
    >>> atoms = make_atoms({"x": [1.0], "y": [2.0]}, attrs={"units": "nm"})
    >>> _ = cache.save("ab12", "universal-1", {"threshold": 0.5}, atoms=atoms)
    >>> cache.load_atoms("ab12", "universal-1", {"threshold": 0.5}).attrs["units"]
    'nm'
    >>> cache.load_atoms("ab12", "universal-1", {"threshold": 0.6}) is None
    True
    """

    def __init__(self, folder, *, limit: int = DEFAULT_LIMIT):
        self.folder = Path(folder)
        self.limit = int(limit)

    def _stem(self, file_key: str, model: str, settings: Mapping) -> str:
        text = json.dumps(dict(settings), sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        safe_model = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(model))
        return f"{str(file_key)[:32]}-{safe_model}-{digest}"

    def map_path(self, file_key: str, model: str, settings: Mapping = ()) -> Path:
        return self.folder / f"{self._stem(file_key, model, dict(settings))}-map.npz"

    def atoms_path(self, file_key: str, model: str, settings: Mapping) -> Path:
        return self.folder / f"{self._stem(file_key, model, settings)}-atoms.parquet"

    def save(
        self, file_key: str, model: str, settings: Mapping, *, atoms=None, prob=None,
        map_settings: Mapping = (),
    ) -> list[Path]:  # fmt: skip
        """Keep ``atoms`` (under all ``settings``) and ``prob`` (under ``map_settings``).

        The map depends only on what the network saw (``map_settings``: the
        preprocessing, for example), not on the threshold. Returns the files
        written (a map already cached is not written again); a folder that
        cannot be written is logged and skipped.
        """
        written = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.map_path(file_key, model, map_settings)
            if prob is not None and not path.is_file():  # same key, same map: written once
                with atomic_path(path) as tmp, open(tmp, "wb") as f:
                    np.savez(f, prob=np.asarray(prob, np.float32))
                written.append(path)
            if atoms is not None:
                written.append(write_table(atoms, self.atoms_path(file_key, model, settings)))
        except (OSError, ValueError) as exc:
            log.warning("analysis cache %s not written: %s", self.folder, exc)
        self.prune()
        return written

    def load_map(self, file_key: str, model: str, map_settings: Mapping = ()):
        """The cached probability map (float32), or None."""
        path = self.map_path(file_key, model, map_settings)
        return self._read(path, lambda p: np.load(p)["prob"])

    def load_atoms(self, file_key: str, model: str, settings: Mapping):
        """The cached atoms table (``attrs`` included), or None."""
        return self._read(self.atoms_path(file_key, model, settings), read_table)

    def _read(self, path: Path, reader):
        if not path.is_file():
            return None
        try:
            value = reader(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("cached analysis %s is unreadable (%s); it is removed", path.name, exc)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recently used: pruned last
        return value

    def prune(self) -> int:
        """Remove the least recently used entries beyond :attr:`limit`; return how many."""
        try:
            files = [*self.folder.glob("*-map.npz"), *self.folder.glob("*-atoms.parquet")]
            entries = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in files)
        except OSError:
            return 0
        total, removed = sum(size for _, size, _ in entries), 0
        for _, size, path in entries:
            if total <= self.limit:
                break
            path.unlink(missing_ok=True)
            total, removed = total - size, removed + 1
        return removed
