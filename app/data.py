"""Where the dashboard's data comes from: a confined data folder, uploads, examples.

No widgets here. Every path the page receives is resolved by :func:`inside`,
which refuses anything that leaves the data folder (``..``, absolute paths,
symbolic links pointing out).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomstat
from atomstat.examples import examples
from atomstat.serve import upload_limit_bytes
from atomstat.simulate import Defects

__all__ = [
    "DEFAULT_UPLOAD_LIMIT",
    "Example",
    "PathError",
    "data_dir_from_env",
    "example_catalogue",
    "inside",
    "list_folder",
    "save_upload",
    "session_path",
    "upload_name",
    "writable_folder",
]

log = logging.getLogger(__name__)

#: Largest upload accepted, bytes (``ATOMSTAT_UPLOAD_LIMIT_MB`` changes it; the server
#: reads the same variable to size its websocket frames).
DEFAULT_UPLOAD_LIMIT = upload_limit_bytes()
SESSION_SUFFIX = ".atomstat.json"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_UNSAFE_CHARS = re.compile(r"[^\w.-]+")  # \w keeps letters of every script: 試料.npy stays
_MAX_NAME_BYTES = 200  # file systems allow 255 bytes; room for "-123"


class PathError(ValueError):
    """A path the page asked for is outside the data folder, or unusable."""


def data_dir_from_env(default: str | Path | None = None) -> Path:
    """The data folder: ``$ATOMSTAT_DATA_DIR``, else ``default``, else ``~/atomstat-data``.

    It is made if missing. One that cannot be made (a read-only disk) is
    returned as it is, with a warning: opening files may still work.
    """
    chosen = os.environ.get("ATOMSTAT_DATA_DIR") or default or Path.home() / "atomstat-data"
    path = Path(chosen).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("cannot make the data folder %s: %s", path, exc.strerror or exc)
    return path


def writable_folder(data_dir: str | Path, name: str) -> Path:
    """The folder ``data_dir/name`` (made if missing), for writing uploads or exports.

    Raises
    ------
    PathError
        If it cannot be made or written to, e.g. on a read-only data folder;
        the message names the folder and says what still works.
    """
    folder = Path(data_dir).resolve() / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".atomstat-write-test-{os.getpid()}", "wb") as probe:
            probe.close()
        (folder / probe.name).unlink()
    except OSError as exc:
        raise PathError(_cannot_write(folder, exc)) from None
    return folder


def _cannot_write(where: Path, exc: OSError) -> str:
    why = "it is read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else None
    why = why or ("the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc))
    return (
        f"cannot write to {where}: {why}. Files in the data folder can still be opened and "
        "analysed; ask for a writable data folder to save uploads, exports and labels."
    )


def inside(data_dir: str | Path, relative: str | Path) -> Path:
    """Resolve ``relative`` within ``data_dir``; refuse any path that leaves it.

    Symbolic links are followed before the check, so a link inside the folder
    that points outside it is refused too.

    Raises
    ------
    PathError
        If the path is absolute, climbs out with ``..``, or resolves outside.
    """
    root = Path(data_dir).resolve()
    text = str(relative)
    if not text or text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text):
        raise PathError(f"path must be relative to the data folder, got {text!r}")
    if ".." in Path(text).parts:
        raise PathError(f"path must not contain '..': {text!r}")
    path = (root / text).resolve()
    if path != root and root not in path.parents:
        raise PathError(f"{text!r} leads outside the data folder")
    return path


def list_folder(data_dir: str | Path, relative: str = ".") -> list[str]:
    """Entries of a folder inside ``data_dir``: sub-folders (ending in ``/``) then files.

    Hidden entries, session files and entries that resolve outside the data
    folder (symbolic links out) are left out.
    """
    folder = inside(data_dir, relative) if relative not in ("", ".") else Path(data_dir).resolve()
    if not folder.is_dir():
        raise PathError(f"{relative!r} is not a folder in the data folder")
    dirs, files = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith(".") or entry.name.endswith(SESSION_SUFFIX):
            continue
        try:
            inside(data_dir, entry.relative_to(Path(data_dir).resolve()))
        except PathError:
            continue
        (dirs if entry.is_dir() else files).append(entry.name + ("/" if entry.is_dir() else ""))
    return dirs + files


def upload_name(name: str, content: bytes) -> str:
    """A safe file name for an upload called ``name``.

    The last path part is kept, in Unicode NFC form, with letters and digits
    of every script; runs of other characters become ``_``, leading dots are
    dropped and long names are cut. A name left without a stem (``$$.npy``)
    becomes ``upload-<first 12 hex digits of the content's SHA-256>``.

    Examples
    --------
    >>> upload_name("試料 1.npy", b""), upload_name("../../etc/x.npy", b"")
    ('試料_1.npy', 'x.npy')
    """
    base = unicodedata.normalize("NFC", str(name).replace("\\", "/").rsplit("/", 1)[-1])
    safe = _UNSAFE_CHARS.sub("_", base).lstrip(".")
    stem, dot, suffix = safe.rpartition(".") if "." in safe else (safe, "", "")
    suffix = _SAFE_NAME.sub("", suffix)[:16]
    if not stem.strip("_"):
        stem = "upload-" + hashlib.sha256(content).hexdigest()[:12]
    while len(stem.encode()) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    return f"{stem}.{suffix}" if dot and suffix else stem


def save_upload(data_dir: str | Path, name: str, content: bytes, *, limit: int) -> Path:
    """Write an uploaded file into ``data_dir/uploads`` under a safe, unused name.

    A file is never overwritten: a name already taken by other bytes gets
    ``-2``, ``-3``, ... before its extension, so the labels of one upload never
    pass to another. The same bytes uploaded under the same name again open
    the file already there.

    Raises
    ------
    PathError
        If the file is larger than ``limit`` bytes (the message gives both
        sizes), or if the uploads folder cannot be written (read-only, full).
    """
    content = bytes(content)
    size = len(content)
    if size > limit:
        raise PathError(
            f"{name} is {size / 2**20:.1f} MB; uploads are limited to {limit / 2**20:.1f} MB. "
            "Put large files in the data folder on the server instead."
        )
    folder = writable_folder(data_dir, "uploads")
    safe = upload_name(name, content)
    stem, suffix = Path(safe).stem, Path(safe).suffix
    for number in range(1, 10_000):
        path = folder / (safe if number == 1 else f"{stem}-{number}{suffix}")
        try:
            with open(path, "xb") as sink:  # x: fails if the name exists, even in a race
                sink.write(content)
            return path
        except FileExistsError:
            if path.is_file() and path.stat().st_size == size and path.read_bytes() == content:
                log.info("upload %s: the same bytes are already in %s", name, path.name)
                return path
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise PathError(_cannot_write(folder, exc)) from None
    raise PathError(f"uploads/ already holds 9999 files named like {safe}; rename the file")


def session_path(data_dir: str | Path, source: str) -> Path:
    """Where the session of ``source`` autosaves: ``<file>.atomstat.json`` beside a file
    of the data folder, ``<data_dir>/examples/<name>.atomstat.json`` for an example."""
    if source.startswith("example:"):
        name = _SAFE_NAME.sub("_", source.removeprefix("example:"))
        folder = Path(data_dir).resolve() / "examples"
        with contextlib.suppress(OSError):  # read-only: the autosave says it failed
            folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}{SESSION_SUFFIX}"
    return Path(source).with_name(Path(source).name + SESSION_SUFFIX)


@dataclass(frozen=True)
class Example:
    """A bundled example: a file shipped with atomstat or a simulation with a fixed seed."""

    name: str
    description: str
    path: Path | None = None
    kind: str | None = None  # simulated: "lattice:<kind>", "movie"

    def load(self):
        """The example's data: a Signal2D (file) or ``(frames, pixel_size, units)``."""
        if self.path is not None:
            return atomstat.load(self.path)
        if self.kind == "movie":
            movie = atomstat.simulate_movie(12, shape=(256, 256), drift=4.0, rng=5)
            return movie.frames, 1.0, "px"
        lattice = self.kind.removeprefix("lattice:")
        defects = Defects(vacancies=0.02, dopants=0.03, dopant_ratio=0.55, adatoms=0.01)
        sim = atomstat.simulate_lattice(
            lattice, shape=(512, 512), spacing=18, sigma=2.4, defects=defects, rng=11
        )
        return sim.image[None].astype(np.float32), 1.0, "px"


def example_catalogue() -> dict[str, Example]:
    """Bundled examples by display name: the shipped images and three simulations."""
    out = {
        name.replace("_", " "): Example(
            name.replace("_", " "), "real image (see ATTRIBUTION)", path
        )
        for name, path in examples().items()
    }
    for kind in ("hexagonal", "square"):
        name = f"Simulated {kind} lattice with dopants"
        out[name] = Example(name, "simulated, seed 11", kind=f"lattice:{kind}")
    out["Simulated dumbbell movie"] = Example(
        "Simulated dumbbell movie", "12 frames, simulate_movie seed 5", kind="movie"
    )
    return out
